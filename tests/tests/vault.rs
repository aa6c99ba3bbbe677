//! End to end against a real OpenBao server (`bao server -dev`): the `psstd` binary serving
//! `vault:` references from KV v2, logging in with a token, a token file or AppRole, renewing its
//! token, and seeing versions written with the `bao` CLI, as users write them.

use std::time::Duration;

use psst_client::{proto as pb, proto::watch_event::Kind, Code, Secret};
use psst_tests::{
    aws::{Fault, FaultProxy},
    describe, next_event as next,
    openbao::{OpenBao, ROOT_TOKEN},
    Agent, Mode,
};
use serde_json::{json, Value};

const POLICY: &str = r#"
[[rule]]
name = "root"
caller = { uid = [0] }
allow = { read = ["vault:**"], list = ["vault:**"], write = ["vault:**"], watch = ["vault:**"], rotate = ["vault:**"], admin = ["vault:**"] }
"#;

/// What the agent may do in OpenBao in the tests that give it a token of its own: read and
/// list everything under secret/app/, nothing else.
const AGENT_HCL: &str = r#"
path "secret/data/app/*" { capabilities = ["read"] }
path "secret/metadata/app/*" { capabilities = ["read", "list"] }
"#;

/// An agent serving `vault:` from `address`; `backend_extra` lands in its `[[backend]]`,
/// `config_extra` at the top.
fn agent(address: &str, backend_extra: &str, config_extra: &str, env: &[(&str, &str)]) -> Agent {
    agent_with_policy(address, backend_extra, config_extra, env, POLICY)
}

fn agent_with_policy(
    address: &str,
    backend_extra: &str,
    config_extra: &str,
    env: &[(&str, &str)],
    policy: &str,
) -> Agent {
    let config = format!(
        "{config_extra}\n[log]\nlevel = \"psstd=debug,warn\"\n[policy]\nfile = \"{{dir}}/policy.toml\"\n\
         [[backend]]\ntype = \"vault\"\naddress = \"{address}\"\n{backend_extra}\n"
    );
    Agent::start(
        Mode::Config {
            config: &config,
            policy,
        },
        env,
    )
}

/// An agent logged in as the dev server's root token (from the environment, as VAULT_TOKEN).
fn root_agent(bao: &OpenBao, backend_extra: &str, config_extra: &str) -> Agent {
    agent(
        &bao.address(),
        backend_extra,
        config_extra,
        &[("VAULT_TOKEN", ROOT_TOKEN)],
    )
}

fn get_text(agent: &Agent, reference: &str) -> String {
    let out = agent.psst(&["get", reference], None);
    assert!(out.status.success(), "{reference}: {}", describe(&out));
    String::from_utf8(out.stdout).unwrap()
}

fn exit_of(agent: &Agent, reference: &str) -> (Option<i32>, String) {
    let out = agent.psst(&["get", reference], None);
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn fields_whole_objects_versions_and_what_is_missing() {
    let bao = OpenBao::start();
    bao.bao(&[
        "kv",
        "put",
        "secret/app/db",
        "password=first-pass",
        "user=app",
    ]);
    bao.bao(&[
        "kv",
        "put",
        "secret/app/db",
        "password=second-pass",
        "user=app",
        "port=5432",
    ]);
    let agent = root_agent(&bao, "", "");

    assert_eq!(
        get_text(&agent, "vault:secret/app/db#password"),
        "second-pass"
    );
    assert_eq!(get_text(&agent, "vault:secret/app/db#port"), "5432");
    let whole: Value = serde_json::from_str(&get_text(&agent, "vault:secret/app/db")).unwrap();
    assert_eq!(
        whole,
        json!({"password": "second-pass", "user": "app", "port": "5432"})
    );
    assert_eq!(
        get_text(&agent, "vault:secret/app/db?version=1#password"),
        "first-pass"
    );
    let out = agent.psst(&["--json", "get", "vault:secret/app/db?version=2"], None);
    assert!(out.status.success(), "{}", describe(&out));
    let meta: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(meta["version_id"], "2", "{meta}");

    let (code, stderr) = exit_of(&agent, "vault:secret/app/missing");
    assert_eq!(code, Some(4), "{stderr}");
    assert!(
        stderr.contains("NOT_FOUND") && stderr.contains("vault:secret/app/missing not found"),
        "{stderr}"
    );
    let (code, stderr) = exit_of(&agent, "vault:secret/app/db#nope");
    assert_eq!(code, Some(4), "{stderr}");
    assert!(stderr.contains("key 'nope' not found"), "{stderr}");
    let (code, stderr) = exit_of(&agent, "vault:secret/app/db?version=7");
    assert_eq!(code, Some(4), "{stderr}");
    // No engine mounted there: Vault answers 404 ("no handler for route").
    let (code, stderr) = exit_of(&agent, "vault:nomount/app/db");
    assert_eq!(code, Some(4), "{stderr}");
    assert!(stderr.contains("vault:nomount/app/db"), "{stderr}");

    // A soft-deleted version says so.
    bao.bao(&["kv", "put", "secret/app/gone", "k=v1"]);
    bao.bao(&["kv", "put", "secret/app/gone", "k=v2"]);
    bao.bao(&["kv", "delete", "-versions=1", "secret/app/gone"]);
    let (code, stderr) = exit_of(&agent, "vault:secret/app/gone?version=1");
    assert_eq!(code, Some(4), "{stderr}");
    assert!(stderr.contains("was deleted"), "{stderr}");
    assert_eq!(get_text(&agent, "vault:secret/app/gone#k"), "v2");

    let logs = agent.logs();
    for value in ["first-pass", "second-pass", ROOT_TOKEN] {
        assert!(!logs.contains(value), "{value} reached the logs");
    }
}

#[tokio::test]
async fn batches_mix_paths_fields_and_failures() {
    let bao = OpenBao::start();
    bao.bao(&["kv", "put", "secret/batch/one", "value=one-value"]);
    bao.bao(&["kv", "put", "secret/batch/two", "user=u2", "password=p2"]);
    bao.bao(&["kv", "put", "secret/batch/deep/three", "value=three-value"]);
    let agent = root_agent(&bao, "", "");
    let client = agent.client().await;
    let refs = [
        "vault:secret/batch/one#value",
        "vault:secret/batch/two#password",
        "vault:secret/batch/deep/three",
        "vault:secret/batch/missing",
        "vault:secret/batch/two#nope",
    ];
    let results = client.batch_get(&refs).await.unwrap();
    assert_eq!(results.len(), refs.len());
    let ok = |i: usize| -> &Secret {
        results[i]
            .as_ref()
            .unwrap_or_else(|e| panic!("{}: {e}", refs[i]))
    };
    assert_eq!(ok(0).value(), b"one-value");
    assert_eq!(ok(1).value(), b"p2");
    assert_eq!(ok(2).value(), br#"{"value":"three-value"}"#);
    assert_eq!(
        results[3].as_ref().unwrap_err().code(),
        Code::NotFound,
        "{:?}",
        results[3]
    );
    assert_eq!(results[4].as_ref().unwrap_err().code(), Code::NotFound);

    let out = agent.psst(&["batch", refs[0], refs[1]], None);
    assert!(out.status.success(), "{}", describe(&out));
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(text.contains("one-value") && text.contains("p2"), "{text}");
}

#[tokio::test]
async fn listings_walk_nested_directories_by_prefix() {
    let bao = OpenBao::start();
    for path in [
        "secret/list/a",
        "secret/list/b/c",
        "secret/list/b/d/e",
        "secret/listing-other",
        "secret/other/x",
    ] {
        bao.bao(&["kv", "put", path, "k=v"]);
    }
    bao.bao(&["kv", "put", "secret/list/a", "k=v2"]);
    let agent = root_agent(&bao, "", "");
    let client = agent.client().await;

    let listed = client.list("vault:secret/list/").await.unwrap();
    let refs: Vec<&str> = listed.iter().map(|l| l.reference.as_str()).collect();
    assert_eq!(
        refs,
        [
            "vault:secret/list/a",
            "vault:secret/list/b/c",
            "vault:secret/list/b/d/e"
        ]
    );
    assert_eq!(listed[0].version_id, "2");
    assert_eq!(listed[1].version_id, "1");

    let listed = client.list("vault:secret/list").await.unwrap();
    let refs: Vec<&str> = listed.iter().map(|l| l.reference.as_str()).collect();
    assert_eq!(
        refs,
        [
            "vault:secret/list/a",
            "vault:secret/list/b/c",
            "vault:secret/list/b/d/e",
            "vault:secret/listing-other"
        ]
    );
    let listed = client.list("vault:secret/list/b/d").await.unwrap();
    assert_eq!(listed.len(), 1, "{listed:?}");
    assert_eq!(listed[0].reference, "vault:secret/list/b/d/e");
    assert_eq!(client.list("vault:secret").await.unwrap().len(), 5);
    assert!(client
        .list("vault:secret/nothing/")
        .await
        .unwrap()
        .is_empty());

    let out = agent.psst(&["ls", "vault:secret/list/b/"], None);
    assert!(out.status.success(), "{}", describe(&out));
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(
        text.contains("vault:secret/list/b/c") && !text.contains("vault:secret/list/a"),
        "{text}"
    );
}

#[tokio::test]
async fn writes_through_the_agent_are_new_versions_bao_sees() {
    let bao = OpenBao::start();
    let agent = root_agent(&bao, "", "");
    let out = agent.psst(
        &["put", "vault:secret/w/app"],
        Some(br#"{"password":"p-one","user":"app"}"#),
    );
    assert!(out.status.success(), "{}", describe(&out));
    let read = bao.bao_json(&["kv", "get", "-format=json", "secret/w/app"]);
    assert_eq!(
        read["data"]["data"],
        json!({"password": "p-one", "user": "app"})
    );
    assert_eq!(read["data"]["metadata"]["version"], 1);
    assert_eq!(get_text(&agent, "vault:secret/w/app#password"), "p-one");

    let client = agent.client().await;
    let written = client
        .put(
            "vault:secret/w/app",
            br#"{"password":"p-two","user":"app"}"#,
        )
        .await
        .unwrap();
    assert_eq!(written.version_id, "2");
    assert_eq!(written.reference, "vault:secret/w/app?version=2");
    let read = bao.bao_json(&["kv", "get", "-format=json", "secret/w/app"]);
    assert_eq!(read["data"]["data"]["password"], "p-two");
    assert_eq!(read["data"]["metadata"]["version"], 2);
    assert_eq!(
        client
            .get("vault:secret/w/app#password")
            .await
            .unwrap()
            .value(),
        b"p-two",
        "the write invalidated the cached value"
    );

    // KV values are objects of fields: a bare value is refused, and nothing is written.
    let err = client
        .put("vault:secret/w/app", b"bare-secret-text")
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument, "{err}");
    assert!(err.message().contains("JSON object of fields"), "{err}");
    assert!(!err.message().contains("bare-secret-text"), "{err}");
    let read = bao.bao_json(&["kv", "get", "-format=json", "secret/w/app"]);
    assert_eq!(read["data"]["metadata"]["version"], 2);
    assert!(!agent.logs().contains("p-two"));
}

#[tokio::test]
async fn rotating_a_field_keeps_the_others() {
    let bao = OpenBao::start();
    bao.bao(&[
        "kv",
        "put",
        "secret/rot/db",
        "user=app",
        "password=old-pass",
    ]);
    let agent = root_agent(&bao, "", "");
    let client = agent.client().await;
    let options = pb::GeneratorOptions {
        length: 24,
        exclude_punctuation: true,
        ..Default::default()
    };
    let rotated = client
        .rotate(
            "vault:secret/rot/db",
            Some(options.clone()),
            Some("password"),
        )
        .await
        .unwrap();
    assert_eq!(
        (
            rotated.version_id.as_str(),
            rotated.previous_version_id.as_str()
        ),
        ("2", "1")
    );
    let read = bao.bao_json(&["kv", "get", "-format=json", "secret/rot/db"]);
    assert_eq!(read["data"]["data"]["user"], "app");
    let password = read["data"]["data"]["password"]
        .as_str()
        .unwrap()
        .to_owned();
    assert_eq!(password.len(), 24);
    assert_ne!(password, "old-pass");
    assert_eq!(
        client
            .get("vault:secret/rot/db#password")
            .await
            .unwrap()
            .value(),
        password.as_bytes()
    );
    assert_eq!(
        client
            .get("vault:secret/rot/db?version=1#password")
            .await
            .unwrap()
            .value(),
        b"old-pass"
    );

    // The CLI does the same.
    let out = agent.psst(
        &[
            "rotate",
            "vault:secret/rot/db",
            "--json-key",
            "password",
            "--length",
            "30",
        ],
        None,
    );
    assert!(out.status.success(), "{}", describe(&out));
    let read = bao.bao_json(&["kv", "get", "-format=json", "secret/rot/db"]);
    assert_eq!(read["data"]["metadata"]["version"], 3);
    assert_eq!(read["data"]["data"]["password"].as_str().unwrap().len(), 30);
    assert_eq!(read["data"]["data"]["user"], "app");

    // A whole generated value is not an object of fields: say which key to rotate.
    let err = client
        .rotate("vault:secret/rot/db", Some(options), None)
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument, "{err}");
    assert!(err.message().contains("JSON object of fields"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn watchers_see_versions_written_with_bao() {
    let bao = OpenBao::start();
    bao.bao(&["kv", "put", "secret/app/watched", "password=one"]);
    let agent = root_agent(&bao, "", "[watch]\ninterval = \"500ms\"\njitter = 0.2\n");
    let client = agent.client().await;
    let mut watch = client.watch(&["vault:secret/app/watched#password"]);
    let within = Duration::from_secs(4);
    let current = next(&mut watch, within).await;
    assert_eq!(current.kind, Kind::Current);
    assert_eq!(current.secret.as_ref().unwrap().version_id, "1");
    assert_eq!(current.secret.as_ref().unwrap().value(), b"one");

    bao.bao(&["kv", "put", "secret/app/watched", "password=two"]);
    let rotated = next(&mut watch, within).await;
    assert_eq!(rotated.kind, Kind::NewVersion);
    assert_eq!(rotated.secret.as_ref().unwrap().version_id, "2");
    assert_eq!(rotated.previous_version_id, "1");
    assert_eq!(rotated.secret.as_ref().unwrap().value(), b"two");
}

#[tokio::test]
async fn a_revoked_token_serves_stale_within_max_stale_then_is_a_clear_failed_precondition() {
    let bao = OpenBao::start();
    bao.write_policy("psst-agent", AGENT_HCL);
    bao.bao(&["kv", "put", "secret/app/db", "password=pass-before"]);
    bao.bao(&[
        "kv",
        "put",
        "secret/private/db",
        "password=not-for-the-agent",
    ]);
    let token = bao.create_token(&["psst-agent"], &[]);
    let agent = agent(
        &bao.address(),
        "token_file = \"{dir}/vault-token\"\nttl = \"1s\"\n",
        "[cache]\nttl_jitter = 0.0\nmax_stale = \"3s\"\n",
        &[],
    );
    std::fs::write(agent.path("vault-token"), format!("{token}\n")).unwrap();
    assert_eq!(
        get_text(&agent, "vault:secret/app/db#password"),
        "pass-before"
    );

    // Outside the token's Vault policy: the agent, not the caller, was refused.
    let (code, stderr) = exit_of(&agent, "vault:secret/private/db#password");
    assert_eq!(code, Some(8), "{stderr}");
    assert!(
        stderr.contains("FAILED_PRECONDITION")
            && stderr.contains("refused the agent's token (permission denied)"),
        "{stderr}"
    );

    bao.bao(&["token", "revoke", &token]);
    let revoked = std::time::Instant::now();
    std::thread::sleep(Duration::from_millis(1300));
    // Past the TTL, within max_stale: callers keep the value they had, flagged stale.
    let out = agent.psst(
        &["get", "vault:secret/app/db#password", "--output", "json"],
        None,
    );
    let text = describe(&out);
    assert!(out.status.success(), "{text}");
    assert!(
        text.contains("pass-before") && text.contains("\"stale\":true"),
        "{text}"
    );
    // Past max_stale: the clear error naming the agent's token.
    std::thread::sleep(
        Duration::from_secs(4).saturating_sub(revoked.elapsed()) + Duration::from_millis(500),
    );
    let (code, stderr) = exit_of(&agent, "vault:secret/app/db#password");
    assert_eq!(code, Some(8), "{stderr}");
    assert!(stderr.contains("the agent's token"), "{stderr}");

    // A new token in the file is picked up without a restart.
    let new_token = bao.create_token(&["psst-agent"], &[]);
    std::fs::write(agent.path("vault-token"), format!("{new_token}\n")).unwrap();
    assert_eq!(
        get_text(&agent, "vault:secret/app/db#password"),
        "pass-before"
    );
    let logs = agent.logs();
    for t in [&token, &new_token] {
        assert!(!logs.contains(t.as_str()), "a token reached the logs");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_short_lived_token_is_renewed_before_it_expires() {
    let bao = OpenBao::start();
    bao.write_policy("psst-agent", AGENT_HCL);
    bao.bao(&["kv", "put", "secret/app/db", "password=renewed"]);
    // Lives 3s unless renewed; renewals may keep it up to a minute.
    let token = bao.create_token(&["psst-agent"], &["-ttl=3s", "-explicit-max-ttl=60s"]);
    let agent = agent(
        &bao.address(),
        "token_file = \"{dir}/vault-token\"\nttl = \"1s\"\n",
        "[cache]\nttl_jitter = 0.0\nmax_stale = \"0s\"\n",
        &[],
    );
    std::fs::write(agent.path("vault-token"), &token).unwrap();
    let client = agent.client().await;
    assert_eq!(
        client
            .get("vault:secret/app/db#password")
            .await
            .unwrap()
            .value(),
        b"renewed"
    );
    // Well past the token's 3s TTL, with no request meanwhile.
    tokio::time::sleep(Duration::from_secs(7)).await;
    let again = client.get("vault:secret/app/db#password").await.unwrap();
    assert!(
        !again.cache.hit,
        "past the cache TTL: read from Vault again"
    );
    assert_eq!(again.value(), b"renewed");
    // The read above went to Vault 7 s into a 3 s token: it was renewed. The token's own record
    // says so too (its remaining TTL is not asserted: on a loaded machine the lookup can land in
    // the last instant before the next renewal).
    let lookup = bao.bao_json(&["token", "lookup", "-format=json", &token]);
    assert!(
        lookup["data"]["last_renewal_time"].as_u64().is_some(),
        "the token was renewed: {lookup}"
    );
    assert!(agent.logs().contains("renewed the agent's Vault token"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_token_at_its_max_ttl_stops_being_renewed_and_then_says_so() {
    let bao = OpenBao::start();
    bao.write_policy("psst-agent", AGENT_HCL);
    bao.bao(&["kv", "put", "secret/app/db", "password=short-lived"]);
    let token = bao.create_token(&["psst-agent"], &["-ttl=3s", "-explicit-max-ttl=5s"]);
    let agent = agent(
        &bao.address(),
        "token_file = \"{dir}/vault-token\"\nttl = \"1s\"\n",
        "[cache]\nttl_jitter = 0.0\nmax_stale = \"0s\"\n",
        &[],
    );
    std::fs::write(agent.path("vault-token"), &token).unwrap();
    let client = agent.client().await;
    assert_eq!(
        client
            .get("vault:secret/app/db#password")
            .await
            .unwrap()
            .value(),
        b"short-lived"
    );
    // Past the 5s max TTL: renewal could not keep it, and was not tried over and over.
    tokio::time::sleep(Duration::from_secs(7)).await;
    let logs = agent.logs();
    assert!(logs.contains("reached its max TTL"), "{logs}");
    let renewals = logs.matches("renewed the agent's Vault token").count();
    assert!((1..=3).contains(&renewals), "{renewals} renewals:\n{logs}");
    let err = client
        .get("vault:secret/app/db#password")
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::FailedPrecondition, "{err}");
    assert!(err.message().contains("the agent's token"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn approle_logs_in_and_logs_in_again_at_max_ttl() {
    let bao = OpenBao::start();
    bao.write_policy("psst-agent", AGENT_HCL);
    bao.bao(&["auth", "enable", "approle"]);
    bao.bao(&[
        "write",
        "auth/approle/role/psst",
        "token_policies=psst-agent",
        "token_ttl=3s",
        "token_max_ttl=5s",
    ]);
    let role_id = bao.bao_json(&["read", "-format=json", "auth/approle/role/psst/role-id"])["data"]
        ["role_id"]
        .as_str()
        .unwrap()
        .to_owned();
    let secret_id = bao.bao_json(&[
        "write",
        "-f",
        "-format=json",
        "auth/approle/role/psst/secret-id",
    ])["data"]["secret_id"]
        .as_str()
        .unwrap()
        .to_owned();
    bao.bao(&["kv", "put", "secret/app/db", "password=via-approle"]);
    let agent = agent(
        &bao.address(),
        &format!("role_id = \"{role_id}\"\nsecret_id_file = \"{{dir}}/secret-id\"\nttl = \"1s\"\n"),
        "[cache]\nttl_jitter = 0.0\nmax_stale = \"0s\"\n",
        &[],
    );
    std::fs::write(agent.path("secret-id"), &secret_id).unwrap();
    let client = agent.client().await;
    assert_eq!(
        client
            .get("vault:secret/app/db#password")
            .await
            .unwrap()
            .value(),
        b"via-approle"
    );
    // Past the 5s max TTL of the first token: renewal alone cannot keep it.
    for _ in 0..4 {
        tokio::time::sleep(Duration::from_secs(2)).await;
        let secret = client
            .get("vault:secret/app/db#password")
            .await
            .unwrap_or_else(|e| panic!("{e}\n{}", agent.logs()));
        assert_eq!(secret.value(), b"via-approle");
    }
    let logs = agent.logs();
    assert!(
        logs.contains("logged in to Vault again (AppRole)"),
        "{logs}"
    );
    assert!(!logs.contains(&secret_id), "the secret id reached the logs");

    // A wrong secret id is the agent's problem, said clearly.
    let wrong = agent_with_secret_id(&bao, &role_id, "not-the-secret-id");
    let (code, stderr) = exit_of(&wrong, "vault:secret/app/db#password");
    assert_eq!(code, Some(8), "{stderr}");
    assert!(stderr.contains("AppRole login"), "{stderr}");
}

fn agent_with_secret_id(bao: &OpenBao, role_id: &str, secret_id: &str) -> Agent {
    let agent = agent(
        &bao.address(),
        &format!("role_id = \"{role_id}\"\nsecret_id_file = \"{{dir}}/secret-id\"\n"),
        "",
        &[],
    );
    std::fs::write(agent.path("secret-id"), secret_id).unwrap();
    agent
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unreachable_vault_serves_stale_then_unavailable_then_recovers() {
    let bao = OpenBao::start();
    bao.bao(&["kv", "put", "secret/app/flaky", "password=cached-value"]);
    let proxy = FaultProxy::start(bao.port);
    let agent = agent(
        &proxy.endpoint(),
        "ttl = \"1s\"\nmax_attempts = 1\ntimeout = \"500ms\"\n",
        "[cache]\nmax_stale = \"4s\"\nttl_jitter = 0.0\n",
        &[("VAULT_TOKEN", ROOT_TOKEN)],
    );
    let client = agent.client().await;
    let fresh = client.get("vault:secret/app/flaky#password").await.unwrap();
    assert!(!fresh.cache.stale);
    for fault in [Fault::Reset, Fault::Blackhole] {
        proxy.set(fault);
        tokio::time::sleep(Duration::from_millis(1200)).await;
        let stale = client
            .get("vault:secret/app/flaky#password")
            .await
            .unwrap_or_else(|e| panic!("{fault:?}: {e}"));
        assert_eq!(stale.value(), b"cached-value");
        assert!(stale.cache.stale, "{fault:?}");
        tokio::time::sleep(Duration::from_millis(4200)).await;
        let err = client
            .get("vault:secret/app/flaky#password")
            .await
            .unwrap_err();
        assert_eq!(err.code(), Code::Unavailable, "{fault:?}: {err}");
        let says = match fault {
            Fault::Reset => "cannot reach Vault at",
            _ => "did not answer within",
        };
        assert!(err.message().contains(says), "{fault:?}: {err}");
        proxy.set(Fault::Pass);
        let back = client.get("vault:secret/app/flaky#password").await.unwrap();
        assert!(!back.cache.stale && !back.cache.hit, "{fault:?}");
    }
    assert!(!agent.logs().contains("cached-value"));
}

#[test]
fn a_caller_the_policy_denies_never_reaches_vault() {
    // OpenBao's own audit log: every request it receives, with its path in clear.
    let bao = OpenBao::start_audited();
    bao.bao(&["kv", "put", "secret/app/db", "password=allowed"]);
    bao.bao(&["kv", "put", "secret/private/db", "password=denied"]);
    let agent = agent_with_policy(
        &bao.address(),
        "",
        "",
        &[("VAULT_TOKEN", ROOT_TOKEN)],
        "[[rule]]\nname = \"app only\"\ncaller = { uid = [0] }\nallow = { read = [\"vault:secret/app/**\"] }\n",
    );
    // The seeding wrote both paths: count what comes after it.
    let requests_for = |path: &str| bao.audit_log().matches(path).count();
    let (app_before, private_before) = (
        requests_for("\"secret/data/app/db\""),
        requests_for("\"secret/data/private/db\""),
    );
    let (code, stderr) = exit_of(&agent, "vault:secret/private/db#password");
    assert_eq!(code, Some(5), "{stderr}");
    assert!(stderr.contains("PERMISSION_DENIED"), "{stderr}");
    assert_eq!(get_text(&agent, "vault:secret/app/db#password"), "allowed");
    assert!(
        requests_for("\"secret/data/app/db\"") > app_before,
        "the allowed read is in OpenBao's audit log"
    );
    assert_eq!(
        requests_for("\"secret/data/private/db\""),
        private_before,
        "the denied read never reached OpenBao"
    );
}

#[test]
fn tls_is_verified_against_the_configured_ca() {
    let bao = OpenBao::start_tls();
    bao.bao(&["kv", "put", "secret/tls/db", "password=over-tls"]);
    let ca = bao.ca_file().unwrap();
    let trusting = agent(
        &bao.address(),
        &format!("ca_file = \"{}\"\n", ca.display()),
        "",
        &[("VAULT_TOKEN", ROOT_TOKEN)],
    );
    assert!(bao.address().starts_with("https://"));
    assert_eq!(
        get_text(&trusting, "vault:secret/tls/db#password"),
        "over-tls"
    );

    // The system roots do not include the dev server's CA: the connection is refused.
    let untrusting = agent(
        &bao.address(),
        "max_attempts = 1\n",
        "",
        &[("VAULT_TOKEN", ROOT_TOKEN)],
    );
    let (code, stderr) = exit_of(&untrusting, "vault:secret/tls/db#password");
    assert_eq!(code, Some(6), "{stderr}");
    assert!(stderr.contains("certificate"), "{stderr}");
    assert!(!untrusting.logs().contains(ROOT_TOKEN));
}

#[test]
fn the_agent_starts_while_vault_is_down_and_dev_mode_uses_the_environment() {
    // Nothing listens there: the agent still starts (no call at startup) and says UNAVAILABLE.
    let port = psst_tests::aws::free_port();
    let down = agent(
        &format!("http://127.0.0.1:{port}"),
        "max_attempts = 1\ntimeout = \"500ms\"\n",
        "",
        &[("VAULT_TOKEN", "some-token")],
    );
    let (code, stderr) = exit_of(&down, "vault:secret/app/db");
    assert_eq!(code, Some(6), "{stderr}");

    let bao = OpenBao::start();
    bao.bao(&["kv", "put", "secret/dev/db", "password=dev-pass"]);
    let dev = Agent::start(
        Mode::Dev,
        &[("BAO_ADDR", &bao.address()), ("BAO_TOKEN", ROOT_TOKEN)],
    );
    assert_eq!(get_text(&dev, "vault:secret/dev/db#password"), "dev-pass");
    let plain = Agent::dev();
    let (code, stderr) = exit_of(&plain, "vault:secret/dev/db#password");
    assert_eq!(code, Some(8), "{stderr}");
    assert!(
        stderr.contains("vault backend is off in dev mode: set VAULT_ADDR"),
        "{stderr}"
    );
}
