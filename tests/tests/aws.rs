//! End to end against a real AWS emulator: the `psstd` binary serving Parameter Store (`ssm:`)
//! and Secrets Manager (`sm:`) from `moto_server`, through a proxy that counts the AWS calls and
//! can fail on demand. Secrets are created and changed with boto3, as users do.

use std::{sync::Arc, time::Duration};

use psst_client::{Code, Secret};
use psst_tests::{
    aws::{Fault, FaultProxy, Moto, AWS_ENV},
    describe, Agent, Mode,
};

const POLICY: &str = r#"
[[rule]]
name = "root"
caller = { uid = [0] }
allow = { read = ["ssm:**", "sm:**"], list = ["ssm:**", "sm:**"], write = ["ssm:**", "sm:**"] }
"#;

struct World {
    moto: Moto,
    proxy: FaultProxy,
    agent: Agent,
}

/// moto, the proxy in front of it, and an agent whose `ssm` and `sm` backends go through the
/// proxy. `backend_extra` lands in both `[[backend]]` tables; `config_extra` at the top.
fn world(config_extra: &str, backend_extra: &str) -> World {
    let moto = Moto::start();
    let proxy = FaultProxy::start(moto.port);
    let backend = |kind: &str| {
        format!(
            "[[backend]]\ntype = \"{kind}\"\nendpoint = \"{}\"\nregion = \"us-east-1\"\n{backend_extra}\n",
            proxy.endpoint()
        )
    };
    let config = format!(
        "{config_extra}\n[log]\nlevel = \"psstd=debug,warn\"\n[policy]\nfile = \"{{dir}}/policy.toml\"\n{}{}",
        backend("ssm"),
        backend("sm")
    );
    let agent = Agent::start(
        Mode::Config {
            config: &config,
            policy: POLICY,
        },
        &AWS_ENV,
    );
    World { moto, proxy, agent }
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
fn parameter_store_types_and_selectors() {
    let w = world("", "");
    w.moto.boto3(
        "ssm.put_parameter(Name='/prod/db/password', Value='first', Type='SecureString')\n\
         ssm.put_parameter(Name='/prod/db/password', Value='second', Type='SecureString', Overwrite=True)\n\
         ssm.label_parameter_version(Name='/prod/db/password', ParameterVersion=1, Labels=['live'])\n\
         ssm.put_parameter(Name='/prod/hosts', Value='a.example,b.example', Type='StringList')\n\
         ssm.put_parameter(Name='plain', Value='just text', Type='String')\n",
    );
    assert_eq!(get_text(&w.agent, "ssm:/prod/db/password"), "second");
    assert_eq!(
        get_text(&w.agent, "ssm:/prod/db/password?version=1"),
        "first"
    );
    assert_eq!(
        get_text(&w.agent, "ssm:/prod/db/password?version=2"),
        "second"
    );
    assert_eq!(
        get_text(&w.agent, "ssm:/prod/db/password?label=live"),
        "first"
    );
    assert_eq!(get_text(&w.agent, "ssm:/prod/hosts"), "a.example,b.example");
    assert_eq!(get_text(&w.agent, "ssm:plain"), "just text");

    let (code, stderr) = exit_of(&w.agent, "ssm:/prod/missing");
    assert_eq!(code, Some(4), "{stderr}");
    assert!(
        stderr.contains("NOT_FOUND: parameter ssm:/prod/missing not found"),
        "{stderr}"
    );
    let (code, stderr) = exit_of(&w.agent, "ssm:/prod/db/password?version=9");
    assert_eq!(code, Some(4), "{stderr}");
    assert!(
        w.proxy.count("AmazonSSM.GetParameter") >= 7,
        "{:?}",
        w.proxy.operations()
    );
}

#[test]
fn secrets_manager_strings_binaries_stages_and_json_keys() {
    let w = world("", "");
    let versions = w.moto.boto3(
        "sm.create_secret(Name='prod/db', SecretString=json.dumps({'user': 'app', 'password': 'old-pass'}))\n\
         v2 = sm.put_secret_value(SecretId='prod/db', SecretString=json.dumps({'user': 'app', 'password': 'new-pass', 'port': 5432}))\n\
         sm.create_secret(Name='prod/cert', SecretBinary=bytes([0, 1, 2, 255]))\n\
         sm.create_secret(Name='prod/plain', SecretString='not json')\n\
         print(v2['VersionId'])\n",
    );
    let v2 = versions.trim();
    assert_eq!(get_text(&w.agent, "sm:prod/db#password"), "new-pass");
    assert_eq!(get_text(&w.agent, "sm:prod/db#port"), "5432");
    assert_eq!(
        get_text(&w.agent, "sm:prod/db?stage=AWSPREVIOUS#password"),
        "old-pass"
    );
    assert_eq!(
        get_text(&w.agent, &format!("sm:prod/db?version={v2}#password")),
        "new-pass"
    );
    assert_eq!(
        get_text(&w.agent, "sm:prod/db?stage=AWSCURRENT#user"),
        "app"
    );
    let binary = w.agent.psst(&["get", "sm:prod/cert"], None);
    assert_eq!(binary.stdout, [0, 1, 2, 255], "{}", describe(&binary));

    let (code, stderr) = exit_of(&w.agent, "sm:prod/db#nope");
    assert_eq!(code, Some(4), "{stderr}");
    assert!(
        stderr.contains("key 'nope' not found in sm:prod/db"),
        "{stderr}"
    );
    let (code, stderr) = exit_of(&w.agent, "sm:prod/plain#password");
    assert_eq!(code, Some(3), "{stderr}");
    assert!(stderr.contains("is not a JSON object"), "{stderr}");
    assert!(
        !stderr.contains("not json"),
        "the value is not echoed: {stderr}"
    );
    let (code, _) = exit_of(&w.agent, "sm:prod/absent");
    assert_eq!(code, Some(4));

    // Every GetSecretValue named a stage or a version id: moto serves a stale version otherwise.
    let logs = w.agent.logs();
    assert!(!logs.contains("ERROR"), "{logs}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_name_a_full_arn_and_a_partial_arn_share_one_entry() {
    let w = world("", "");
    let arns = w.moto.boto3(
        "print(sm.create_secret(Name='shared/one', SecretString='v1')['ARN'])\n\
         print(sm.create_secret(Name='shared/two', SecretString='v2')['ARN'])",
    );
    let arns: Vec<&str> = arns.lines().collect();
    let client = w.agent.client().await;
    let calls_for = |spellings: Vec<String>, value: &'static [u8]| {
        let before = w.proxy.count("secretsmanager.GetSecretValue");
        let client = client.clone();
        async move {
            for _ in 0..2 {
                for reference in &spellings {
                    let secret = client
                        .get(reference)
                        .await
                        .unwrap_or_else(|e| panic!("{reference}: {e}"));
                    assert_eq!(secret.value(), value);
                }
            }
            before
        }
    };
    let spell = |name: &str, arn: &str| {
        vec![
            format!("sm:{name}"),
            format!("sm:{arn}"),
            format!("sm:{}", &arn[..arn.len() - 7]),
        ]
    };

    // Name first: Secrets Manager's answer gives its ARN, and every spelling then shares the entry.
    let before = calls_for(spell("shared/one", arns[0]), b"v1").await;
    assert_eq!(
        w.proxy.count("secretsmanager.GetSecretValue") - before,
        1,
        "{:?}",
        w.proxy.operations()
    );

    // ARN first: the ARN's answer gives the name, but a bare name could mean a secret of the
    // agent's own account, which only asking by name tells: one more call, then all share.
    let mut arn_first = spell("shared/two", arns[1]);
    arn_first.rotate_left(1);
    let before = calls_for(arn_first, b"v2").await;
    assert_eq!(
        w.proxy.count("secretsmanager.GetSecretValue") - before,
        2,
        "{:?}",
        w.proxy.operations()
    );
    client.get("sm:shared/two").await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cold_burst_of_a_hundred_gets_makes_one_aws_call() {
    let w = world("", "");
    w.moto
        .boto3("sm.create_secret(Name='hot/secret', SecretString='x' * 4000)");
    w.moto
        .boto3("ssm.put_parameter(Name='/hot/param', Value='y', Type='SecureString')");
    for (reference, operation) in [
        ("sm:hot/secret", "secretsmanager.GetSecretValue"),
        ("ssm:/hot/param", "AmazonSSM.GetParameter"),
    ] {
        let mut clients = Vec::new();
        for _ in 0..100 {
            clients.push(w.agent.client().await);
        }
        let start = Arc::new(tokio::sync::Barrier::new(100));
        let tasks: Vec<_> = clients
            .into_iter()
            .map(|c| {
                let start = Arc::clone(&start);
                tokio::spawn(async move {
                    start.wait().await;
                    c.get(reference).await.map(|s| s.value().len())
                })
            })
            .collect();
        for t in tasks {
            assert!(t.await.unwrap().unwrap() > 0);
        }
        // One call for the burst. A known race allows a second for `sm:`: the first answer
        // teaches the backend the secret's ARN, and a get that arrives after that (its
        // connection was still being set up) keys the cache by the ARN, not the name the first
        // read was cached under, and reads again. Never more: every later get uses the ARN key.
        let calls = w.proxy.count(operation);
        let allowed = if reference.starts_with("sm:") { 2 } else { 1 };
        assert!(
            (1..=allowed).contains(&calls),
            "{reference}: {calls} calls: {:?}",
            w.proxy.operations()
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn batches_are_packed_into_batch_calls() {
    let w = world("", "");
    w.moto.boto3(
        "for i in range(25):\n    ssm.put_parameter(Name=f'/batch/p{i}', Value=f'value-{i}', Type='SecureString')\n\
         for i in range(25):\n    sm.create_secret(Name=f'batch/s{i}', SecretString=f'secret-{i}')\n",
    );
    let client = w.agent.client().await;
    let mut refs: Vec<String> = (0..25).map(|i| format!("ssm:/batch/p{i}")).collect();
    refs.push("ssm:/batch/missing".into());
    refs.extend((0..25).map(|i| format!("sm:batch/s{i}")));
    refs.push("sm:batch/missing".into());
    refs.push("sm:batch/s3?stage=AWSCURRENT".into());
    let results = client.batch_get(&refs).await.unwrap();
    for i in 0..25 {
        assert_eq!(
            results[i].as_ref().unwrap().value(),
            format!("value-{i}").as_bytes()
        );
        assert_eq!(
            results[26 + i].as_ref().unwrap().value(),
            format!("secret-{i}").as_bytes()
        );
    }
    assert_eq!(results[25].as_ref().unwrap_err().code(), Code::NotFound);
    assert_eq!(results[51].as_ref().unwrap_err().code(), Code::NotFound);
    assert_eq!(results[52].as_ref().unwrap().value(), b"secret-3");
    let ops = w.proxy.operations();
    assert_eq!(
        w.proxy.count("AmazonSSM.GetParameters"),
        3,
        "26 names in calls of 10: {ops:?}"
    );
    assert_eq!(w.proxy.count("AmazonSSM.GetParameter"), 0, "{ops:?}");
    assert_eq!(
        w.proxy.count("secretsmanager.BatchGetSecretValue"),
        2,
        "26 ids in calls of 20: {ops:?}"
    );
    assert_eq!(
        w.proxy.count("secretsmanager.GetSecretValue"),
        1,
        "only the selected version: {ops:?}"
    );

    // The second time, everything is cached: no AWS call at all.
    let before = w.proxy.total();
    let again = client.batch_get(&refs).await.unwrap();
    assert!(again[0].as_ref().unwrap().cache.hit);
    assert_eq!(w.proxy.total(), before, "{:?}", w.proxy.operations());
}

#[tokio::test]
async fn listings_page_through_everything() {
    let w = world("", "");
    w.moto.boto3(
        "for i in range(60):\n    ssm.put_parameter(Name=f'/list/p{i:02}', Value='v', Type='String')\n\
         ssm.put_parameter(Name='/other/x', Value='v', Type='String')\n\
         for i in range(110):\n    sm.create_secret(Name=f'list/s{i:03}', SecretString='v')\n\
         sm.create_secret(Name='other/y', SecretString='v')\n",
    );
    let client = w.agent.client().await;
    let params = client.list("ssm:/list/").await.unwrap();
    assert_eq!(params.len(), 60);
    assert_eq!(params[0].reference, "ssm:/list/p00");
    assert_eq!(params[0].version_id, "1");
    let secrets = client.list("sm:list/").await.unwrap();
    assert_eq!(secrets.len(), 110);
    assert!(secrets
        .iter()
        .all(|s| s.reference.starts_with("sm:list/s") && !s.version_id.is_empty()));
    assert!(
        w.proxy.count("AmazonSSM.DescribeParameters") >= 2,
        "60 parameters take more than one page of 50: {:?}",
        w.proxy.operations()
    );
    assert!(
        w.proxy.count("secretsmanager.ListSecrets") >= 2,
        "110 secrets take more than one page of 100"
    );
}

#[tokio::test]
async fn writes_through_the_agent_are_new_versions() {
    let w = world("", "");
    let client = w.agent.client().await;
    let first = client.put("ssm:/w/param", b"one").await.unwrap();
    assert_eq!(
        (first.reference.as_str(), first.version_id.as_str()),
        ("ssm:/w/param?version=1", "1")
    );
    client.put("ssm:/w/param", b"two").await.unwrap();
    let read = w
        .moto
        .boto3("p = ssm.get_parameter(Name='/w/param', WithDecryption=True)['Parameter']; print(p['Type'], p['Value'], p['Version'])");
    assert_eq!(read.trim(), "SecureString two 2");
    assert_eq!(
        client.get("ssm:/w/param").await.unwrap().value(),
        b"two",
        "the write invalidated the cache"
    );

    client.put("sm:w/secret", b"s1").await.unwrap();
    client.put("sm:w/secret", b"s2").await.unwrap();
    let read = w.moto.boto3(
        "print(sm.get_secret_value(SecretId='w/secret', VersionStage='AWSCURRENT')['SecretString'], \
         sm.get_secret_value(SecretId='w/secret', VersionStage='AWSPREVIOUS')['SecretString'])",
    );
    assert_eq!(read.trim(), "s2 s1");
    // A write moves stages too: a cached AWSPREVIOUS read must not outlive it.
    let previous = client.get("sm:w/secret?stage=AWSPREVIOUS").await.unwrap();
    assert_eq!(previous.value(), b"s1");
    client.put("sm:w/secret", b"s3").await.unwrap();
    let previous = client.get("sm:w/secret?stage=AWSPREVIOUS").await.unwrap();
    assert_eq!(
        previous.value(),
        b"s2",
        "the write dropped the stage-selected entry too"
    );
    client.put("sm:w/binary", &[0xff, 0x00]).await.unwrap();
    assert_eq!(
        client.get("sm:w/binary").await.unwrap().value(),
        [0xff, 0x00]
    );

    let err = client.put("ssm:/w/param", &[0xff]).await.unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument, "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unreachable_backend_serves_stale_then_unavailable_then_recovers() {
    let w = world(
        "[cache]\nmax_stale = \"4s\"\nttl_jitter = 0.0\n",
        "ttl = \"1s\"\nmax_attempts = 1\ntimeout = \"500ms\"\n",
    );
    w.moto
        .boto3("sm.create_secret(Name='flaky', SecretString='cached-value')");
    let client = w.agent.client().await;
    let fresh = client.get("sm:flaky").await.unwrap();
    assert!(!fresh.cache.stale);

    for fault in [Fault::Reset, Fault::Blackhole] {
        w.proxy.set(fault);
        // Within the TTL: served from the cache, no AWS call needed.
        tokio::time::sleep(Duration::from_millis(1200)).await;
        // Past the TTL, within max_stale: the old value, flagged stale.
        let stale: Secret = client
            .get("sm:flaky")
            .await
            .unwrap_or_else(|e| panic!("{fault:?}: {e}"));
        assert_eq!(stale.value(), b"cached-value");
        assert!(stale.cache.stale, "{fault:?}");
        // Past max_stale: UNAVAILABLE.
        tokio::time::sleep(Duration::from_millis(4200)).await;
        let err = client.get("sm:flaky").await.unwrap_err();
        assert_eq!(err.code(), Code::Unavailable, "{fault:?}: {err}");
        assert!(err.message().contains("Secrets Manager"), "{err}");
        // The backend comes back: fresh again.
        w.proxy.set(Fault::Pass);
        let back = client.get("sm:flaky").await.unwrap();
        assert!(!back.cache.stale && !back.cache.hit, "{fault:?}");
    }
    let logs = w.agent.logs();
    assert!(
        !logs.contains("cached-value"),
        "values never reach the logs"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_rate_limit_holds_under_a_burst() {
    let w = world("", "rate_limit = 5\nburst = 5\nmax_wait = \"1s\"\n");
    w.moto.boto3("for i in range(60):\n    ssm.put_parameter(Name=f'/burst/p{i}', Value='v', Type='String')\n");
    let mut clients = Vec::new();
    for _ in 0..60 {
        clients.push(w.agent.client().await);
    }
    let started = std::time::Instant::now();
    let tasks: Vec<_> = clients
        .into_iter()
        .enumerate()
        .map(|(i, c)| {
            tokio::spawn(async move { c.get(&format!("ssm:/burst/p{i}")).await.map(|_| ()) })
        })
        .collect();
    let mut served = 0;
    let mut exhausted = 0;
    for t in tasks {
        match t.await.unwrap() {
            Ok(()) => served += 1,
            Err(e) if e.code() == Code::ResourceExhausted => exhausted += 1,
            Err(e) => panic!("{e}"),
        }
    }
    let elapsed = started.elapsed().as_secs_f64();
    let sent = w.proxy.count("AmazonSSM.GetParameter");
    let allowed = 5 + (5.0 * elapsed).ceil() as usize;
    assert_eq!(sent, served, "one AWS call per value served");
    assert!(
        sent <= allowed,
        "{sent} requests in {elapsed:.2}s: the limit is 5/s with a burst of 5"
    );
    assert!(
        exhausted > 0,
        "60 distinct cold reads at 5/s must be turned away (RESOURCE_EXHAUSTED)"
    );
}

#[test]
fn without_credentials_the_agent_starts_and_says_what_is_missing() {
    let moto = Moto::start();
    let proxy = FaultProxy::start(moto.port);
    let config = format!(
        "[policy]\nfile = \"{{dir}}/policy.toml\"\n[[backend]]\ntype = \"ssm\"\nendpoint = \"{}\"\nregion = \"us-east-1\"\n",
        proxy.endpoint()
    );
    let agent = Agent::start(
        Mode::Config {
            config: &config,
            policy: POLICY,
        },
        &[],
    );
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(proxy.total(), 0, "no AWS call at startup");
    let (code, stderr) = exit_of(&agent, "ssm:/anything");
    assert_eq!(code, Some(8), "FAILED_PRECONDITION: {stderr}");
    assert!(stderr.contains("no usable AWS credentials"), "{stderr}");
    assert!(
        stderr.contains("the agent itself was refused"),
        "names the agent, not the caller: {stderr}"
    );
}

#[test]
fn dev_mode_serves_aws_from_the_standard_environment() {
    let moto = Moto::start();
    moto.boto3("ssm.put_parameter(Name='/dev/x', Value='from-ssm', Type='SecureString')\nsm.create_secret(Name='dev/y', SecretString='{\"k\": \"from-sm\"}')");
    let endpoint = moto.endpoint();
    let mut env: Vec<(&str, &str)> = AWS_ENV.to_vec();
    env.push(("AWS_ENDPOINT_URL", &endpoint));
    let agent = Agent::start(Mode::Dev, &env);
    assert_eq!(get_text(&agent, "ssm:/dev/x"), "from-ssm");
    assert_eq!(get_text(&agent, "sm:dev/y#k"), "from-sm");
    moto.reset();
    // Cached values outlive the emulator's state; new names do not.
    assert_eq!(get_text(&agent, "ssm:/dev/x"), "from-ssm");
    assert_eq!(exit_of(&agent, "ssm:/dev/z").0, Some(4));
}
