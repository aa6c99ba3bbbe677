//! End to end: the real `psstd` and `psst` binaries, a temp-dir socket, the local store.

use std::{
    io::Read,
    os::unix::fs::{FileTypeExt, PermissionsExt},
    sync::Arc,
    time::{Duration, Instant},
};

use nix::sys::signal::Signal;
use psst_client::{Code, ErrorKind};
use psst_tests::{describe, eventually, psstd_bin, uid_of, Agent, Mode};

const DENIED_USER: &str = "psst-e2e-denied";

/// A second agent on the same state dir refuses to start: it says why once, and prints no
/// "listening on" banner first.
#[test]
fn a_second_dev_agent_refuses_once_without_a_banner() {
    let agent = Agent::dev();
    let second = std::process::Command::new(psstd_bin())
        .arg("--dev")
        .env("PSST_STATE_DIR", agent.dir.path().join("state"))
        .output()
        .unwrap();
    let out = describe(&second);
    assert!(!second.status.success(), "{out}");
    let stderr = String::from_utf8_lossy(&second.stderr);
    assert_eq!(
        stderr.matches("another agent is already listening").count(),
        1,
        "{out}"
    );
    assert!(
        !String::from_utf8_lossy(&second.stdout).contains("listening on"),
        "{out}"
    );
    // With the log off, the reason is still printed, once.
    let quiet = std::process::Command::new(psstd_bin())
        .arg("--dev")
        .env("PSST_STATE_DIR", agent.dir.path().join("state"))
        .env("PSST_LOG", "off")
        .output()
        .unwrap();
    assert!(!quiet.status.success(), "{}", describe(&quiet));
    assert_eq!(
        String::from_utf8_lossy(&quiet.stderr)
            .matches("another agent is already listening")
            .count(),
        1,
        "{}",
        describe(&quiet)
    );
    // The first agent still serves.
    assert!(agent.psst(&["health"], None).status.success());
}

/// Dev mode without AWS credentials or a Vault server in the environment (the harness removes
/// them) leaves `ssm:`, `sm:`, `s3:` and `vault:` off: it says why at start-up, and a read says
/// how to turn the backend on instead of pointing at a config file dev mode does not have.
#[test]
fn dev_mode_says_why_a_backend_is_off() {
    let agent = Agent::dev();
    for (reference, says) in [
        ("sm:prod/db", "AWS_ACCESS_KEY_ID"),
        ("ssm:/prod/db", "AWS_PROFILE"),
        ("s3:bucket/key", "PSST_DEV_AWS=1"),
        ("vault:secret/db", "VAULT_ADDR"),
    ] {
        let out = agent.psst(&["get", reference], None);
        let text = describe(&out);
        assert!(!out.status.success(), "{text}");
        assert!(text.contains("off in dev mode"), "{reference}: {text}");
        assert!(text.contains(says), "{reference}: {text}");
        assert!(!text.contains("[[backend]]"), "{reference}: {text}");
    }
    let logs = agent.logs();
    for backend in ["ssm", "sm", "s3", "vault"] {
        assert!(
            logs.lines()
                .any(|l| l.contains(&format!("backend={backend}")) && l.contains("off in dev mode")),
            "{backend}: {logs}"
        );
    }
    // Nothing went to AWS: no SDK warnings about credentials.
    assert!(
        !logs.contains("aws_config") && !logs.contains("aws_smithy"),
        "{logs}"
    );
}

/// Without a config file, psstd says how to start without one.
#[test]
fn a_missing_default_config_points_at_dev_mode() {
    if std::path::Path::new("/etc/psst/psstd.toml").exists() {
        return; // a machine with psst installed: nothing to show.
    }
    let out = std::process::Command::new(psstd_bin())
        .env_remove("PSST_CONFIG")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(64), "{}", describe(&out));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("psstd --dev"),
        "{}",
        describe(&out)
    );
}

#[test]
fn dev_mode_put_get_ls_whoami_health_as_the_readme_shows() {
    let agent = Agent::dev();
    // The banner comes once the agent serves, a moment after its socket appears.
    let export = format!("export PSST_SOCKET={}", agent.socket.display());
    let shown = eventually(Duration::from_secs(5), || agent.logs().contains(&export));
    assert!(shown, "{}", agent.logs());

    let put = agent.psst(&["put", "local:demo/db-password"], Some(b"hunter2"));
    assert!(put.status.success(), "{}", describe(&put));
    assert_eq!(
        String::from_utf8_lossy(&put.stdout),
        "local:demo/db-password?version=1\n"
    );

    let get = agent.psst(&["get", "local:demo/db-password"], None);
    assert!(get.status.success(), "{}", describe(&get));
    assert_eq!(get.stdout, b"hunter2", "the value, byte for byte");

    agent.psst(
        &["put", "local:demo/db"],
        Some(br#"{"user":"app","password":"pa55"}"#),
    );
    let key = agent.psst(&["get", "local:demo/db#password"], None);
    assert_eq!(key.stdout, b"pa55", "{}", describe(&key));

    let ls = agent.psst(&["ls", "local:demo/"], None);
    assert_eq!(
        String::from_utf8_lossy(&ls.stdout),
        "local:demo/db\nlocal:demo/db-password\n"
    );

    let whoami = agent.psst(&["whoami"], None);
    let text = String::from_utf8_lossy(&whoami.stdout);
    assert!(text.contains("identity  process"), "{text}");
    assert!(
        text.contains(&format!("exe       {}", psst_tests::psst_bin().display())),
        "{text}"
    );
    assert!(text.contains("read      *:**"), "{text}");

    let health = agent.psst(&["health"], None);
    assert_eq!(String::from_utf8_lossy(&health.stdout), "SERVING\n");
}

#[test]
fn exit_codes_differ_for_invalid_not_found_and_unavailable() {
    let agent = Agent::dev();
    let cases: [(&[&str], i32, &str); 4] = [
        (
            &["get", "demo/no-prefix"],
            3,
            "INVALID_ARGUMENT: invalid reference: 'demo/no-prefix' has no backend prefix",
        ),
        (
            &["get", "local:a?stage=AWSCURRENT"],
            3,
            "does not apply to local",
        ),
        (
            &["get", "local:missing"],
            4,
            "NOT_FOUND: secret local:missing not found",
        ),
        (
            &["get", "vault:secret/prod/db"],
            8,
            // Dev mode says how to turn it on (a configured agent: "not enabled").
            "FAILED_PRECONDITION: the vault backend is off in dev mode: set VAULT_ADDR",
        ),
    ];
    for (args, code, says) in cases {
        let out = agent.psst(args, None);
        assert_eq!(
            out.status.code(),
            Some(code),
            "{args:?}: {}",
            describe(&out)
        );
        assert!(
            String::from_utf8_lossy(&out.stderr).contains(says),
            "{args:?}: {}",
            describe(&out)
        );
    }
    let gone = psst_tests::run_psst_at(&agent.path("nothing.sock"), &["get", "local:x"]);
    assert_eq!(gone.status.code(), Some(6), "{}", describe(&gone));
}

#[test]
fn another_uid_is_denied_alike_for_existing_and_missing_secrets() {
    let agent = Agent::dev();
    agent.psst(&["put", "local:team/token"], Some(b"t0ken-value"));
    let existing = agent.psst_as(DENIED_USER, &["get", "local:team/token"]);
    let missing = agent.psst_as(DENIED_USER, &["get", "local:team/nothing-here"]);
    for out in [&existing, &missing] {
        assert_eq!(out.status.code(), Some(5), "{}", describe(out));
    }
    let scrub = |out: &std::process::Output, name: &str| {
        String::from_utf8_lossy(&out.stderr).replace(name, "NAME")
    };
    assert_eq!(
        scrub(&existing, "token"),
        scrub(&missing, "nothing-here"),
        "denials must not reveal existence"
    );
    assert!(!String::from_utf8_lossy(&existing.stdout).contains("t0ken"));

    let ls = agent.psst_as(DENIED_USER, &["ls", "local:"]);
    assert_eq!(ls.status.code(), Some(5), "{}", describe(&ls));
    let put = agent.psst_as(DENIED_USER, &["whoami"]);
    let text = String::from_utf8_lossy(&put.stdout);
    assert!(
        text.contains(&format!("uid       {}", uid_of(DENIED_USER))),
        "{text}"
    );
    assert!(text.contains("(none: everything is denied)"), "{text}");

    // Records are written in batches, at most `audit.flush_interval` after the request.
    let denials = || {
        agent
            .logs()
            .lines()
            .filter(|l| l.contains("decision=\"deny\""))
            .count()
    };
    eventually(Duration::from_secs(5), || denials() >= 3);
    assert_eq!(
        denials(),
        3,
        "one audit record per denial:\n{}",
        agent.logs()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hundred_concurrent_gets_of_an_uncached_secret_read_the_store_once() {
    let agent = Agent::start(
        Mode::Config {
            config: "[log]\nlevel = \"psstd=debug,warn\"\n[policy]\nfile = \"{dir}/policy.toml\"\n[[backend]]\ntype = \"local\"\ndir = \"{dir}/store\"\n",
            policy: "[[rule]]\nname = \"me\"\ncaller = { uid = [0] }\nallow = { read = [\"local:**\"], write = [\"local:**\"] }\n",
        },
        &[],
    );
    // A large value makes the one store read (file read and two AES-GCM opens) take long enough
    // for the concurrent requests to arrive while it is in flight.
    let value = vec![b'x'; 60 * 1024];
    agent
        .client()
        .await
        .put("local:hot/secret", &value)
        .await
        .unwrap();

    // Separate connections, so the requests really arrive side by side.
    let mut clients = Vec::new();
    for _ in 0..100 {
        clients.push(agent.client().await);
    }
    let start = Arc::new(tokio::sync::Barrier::new(100));
    let tasks: Vec<_> = clients
        .into_iter()
        .map(|client| {
            let start = Arc::clone(&start);
            tokio::spawn(async move {
                start.wait().await;
                client
                    .get("local:hot/secret")
                    .await
                    .map(|s| s.value().len())
            })
        })
        .collect();
    for task in tasks {
        assert_eq!(task.await.unwrap().unwrap(), 60 * 1024);
    }
    let logs = agent.logs();
    let reads = logs
        .lines()
        .filter(|l| l.contains("backend fetch") && l.contains("local:hot/secret"))
        .count();
    assert_eq!(
        reads, 1,
        "100 concurrent gets must cause one store read:\n{logs}"
    );
}

#[tokio::test]
async fn malformed_references_are_invalid_argument_over_grpc() {
    let agent = Agent::dev();
    let client = agent.client().await;
    for reference in [
        "",
        "nobackend",
        "gcp:x",
        "local:../etc/passwd",
        "local:a?version=zero",
        "local:a#",
    ] {
        let err = client.get(reference).await.unwrap_err();
        assert_eq!(err.code(), Code::InvalidArgument, "{reference:?}: {err}");
        assert!(err.message().starts_with("invalid reference: "), "{err}");
    }
    let batch = client
        .batch_get(&["local:nope", "bad", "local:also-nope"])
        .await
        .unwrap();
    let codes: Vec<_> = batch
        .iter()
        .map(|r| r.as_ref().err().map(|e| e.code()))
        .collect();
    assert_eq!(
        codes,
        [
            Some(Code::NotFound),
            Some(Code::InvalidArgument),
            Some(Code::NotFound)
        ]
    );
}

#[tokio::test]
async fn oversized_requests_are_refused_and_change_nothing() {
    let agent = Agent::with_policy(
        "[[rule]]\nname = \"me\"\ncaller = { uid = [0] }\nallow = { read = [\"local:**\"], write = [\"local:**\"] }\n",
        "[limits]\nmax_value_bytes = 4096\n",
    );
    let client = agent.client().await;
    client.put("local:a", b"original").await.unwrap();
    let too_big_value = client.put("local:a", &vec![1u8; 4097]).await.unwrap_err();
    assert_eq!(
        too_big_value.code(),
        Code::InvalidArgument,
        "{too_big_value}"
    );
    // Past the transport's limit (server.max_message_bytes, 1 MiB by default) the message is
    // refused before it is decoded.
    let too_big_message = client
        .put("local:a", &vec![1u8; 2 * 1024 * 1024])
        .await
        .unwrap_err();
    assert!(
        matches!(
            too_big_message.code(),
            Code::OutOfRange | Code::ResourceExhausted
        ),
        "{too_big_message}"
    );
    let still = client.get("local:a").await.unwrap();
    assert_eq!(
        (still.value(), still.version_id.as_str()),
        (&b"original"[..], "1")
    );
}

#[test]
fn a_broken_policy_reload_keeps_the_old_policy() {
    let allow_root = "[[rule]]\nname = \"root\"\ncaller = { uid = [0] }\nallow = { read = [\"local:**\"], write = [\"local:**\"] }\n";
    let agent = Agent::with_policy(allow_root, "");
    assert!(agent.psst(&["put", "local:p"], Some(b"v")).status.success());

    std::fs::write(
        agent.path("policy.toml"),
        "[[rule]]\nname = \"broken\"\ncaller = {}\n",
    )
    .unwrap();
    agent.signal(Signal::SIGHUP);
    assert!(
        eventually(Duration::from_secs(5), || agent
            .logs()
            .contains("policy not reloaded")),
        "{}",
        agent.logs()
    );
    let get = agent.psst(&["get", "local:p"], None);
    assert!(
        get.status.success(),
        "the old policy stays in force: {}",
        describe(&get)
    );

    // A valid policy that no longer grants root is picked up from the file change alone.
    std::fs::write(
        agent.path("policy.toml"),
        "[[rule]]\nname = \"someone else\"\ncaller = { uid = [4242] }\nallow = { read = [\"local:**\"] }\n",
    )
    .unwrap();
    assert!(
        eventually(Duration::from_secs(5), || agent
            .psst(&["get", "local:p"], None)
            .status
            .code()
            == Some(5)),
        "{}",
        agent.logs()
    );
}

#[test]
fn sigterm_with_open_connections_exits_within_the_grace_period() {
    let mut agent = Agent::with_policy(
        "[[rule]]\nname = \"root\"\ncaller = { uid = [0] }\nallow = { read = [\"local:**\"] }\n",
        "[server]\nsocket = \"{dir}/psst.sock\"\ngrace_period = \"1s\"\n",
    );
    // One connection that never speaks HTTP/2, and one idle gRPC connection.
    let mut silent = std::os::unix::net::UnixStream::connect(&agent.socket).unwrap();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let _idle = runtime.block_on(agent.client());

    let started = Instant::now();
    agent.signal(Signal::SIGTERM);
    let status = agent
        .wait_exit(Duration::from_secs(5))
        .expect("psstd exits");
    let took = started.elapsed();
    assert!(status.success(), "{status}\n{}", agent.logs());
    assert!(
        took < Duration::from_millis(2500),
        "took {took:?} with a 1s grace period"
    );
    assert!(!agent.socket.exists(), "the socket is removed on exit");
    let mut buf = [0u8; 64];
    // The silent connection was closed by the agent (EOF or reset, not a hang).
    silent
        .set_read_timeout(Some(Duration::from_secs(2)))
        .unwrap();
    let read = silent.read(&mut buf);
    assert!(
        !matches!(&read, Err(e) if e.kind() == std::io::ErrorKind::WouldBlock),
        "{read:?}"
    );
}

#[test]
fn secret_values_never_reach_the_logs_at_the_most_verbose_level() {
    const VALUE: &str = "Zq9-UNMISTAKABLE-SECRET-4711";
    let mut agent = Agent::start(
        Mode::Config {
            config: "[log]\nlevel = \"trace\"\n[audit]\nfile = \"{dir}/audit.jsonl\"\n[policy]\nfile = \"{dir}/policy.toml\"\n[[backend]]\ntype = \"local\"\ndir = \"{dir}/store\"\n",
            policy: "[[rule]]\nname = \"me\"\ncaller = { uid = [0] }\nallow = { read = [\"local:**\"], write = [\"local:**\"], list = [\"local:**\"] }\n",
        },
        &[],
    );
    let json = format!(r#"{{"password":"{VALUE}","user":"app"}}"#);
    assert!(agent
        .psst(&["put", "local:leak/check"], Some(json.as_bytes()))
        .status
        .success());
    assert!(agent
        .psst(&["put", "local:leak/raw"], Some(VALUE.as_bytes()))
        .status
        .success());
    for args in [
        &["get", "local:leak/check"][..],
        &["get", "local:leak/check#password"],
        &["get", "local:leak/raw#password"],
        &["get", "local:leak/check?version=1"],
        &["ls", "local:"],
    ] {
        agent.psst(args, None);
    }
    agent.stop();
    let logs = agent.logs();
    assert!(logs.contains("TRACE"), "trace logging was on");
    let audit = std::fs::read_to_string(agent.path("audit.jsonl")).unwrap();
    assert_eq!(
        audit.lines().count(),
        7,
        "one audit record per decision:\n{audit}"
    );
    for (what, text) in [("log", &logs), ("audit", &audit)] {
        assert!(
            !text.contains(VALUE),
            "the secret value appears in the {what}"
        );
        assert!(
            !text.contains("UNMISTAKABLE"),
            "part of the secret value appears in the {what}"
        );
    }
    // Nor on disk in the store.
    for entry in walk(&agent.path("store")) {
        let bytes = std::fs::read(&entry).unwrap();
        assert!(
            !bytes.windows(12).any(|w| w == b"UNMISTAKABLE"),
            "{} holds plaintext",
            entry.display()
        );
    }
}

#[test]
fn check_config_accepts_the_reference_config_and_lists_every_problem() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let dir = tempfile::tempdir().unwrap();
    let reference = std::fs::read_to_string(root.join("deploy/config/psstd.toml")).unwrap();
    let policy = root.join("deploy/config/policy.toml");
    let config = reference.replace("/etc/psst/policy.toml", policy.to_str().unwrap());
    std::fs::write(dir.path().join("ok.toml"), config).unwrap();
    let ok = std::process::Command::new(psstd_bin())
        .args(["check-config"])
        .arg(dir.path().join("ok.toml"))
        .output()
        .unwrap();
    assert!(ok.status.success(), "{}", describe(&ok));

    std::fs::write(
        dir.path().join("bad.toml"),
        "[server]\nsocket = \"relative\"\ncolour = \"red\"\n[[backend]]\ntype = \"local\"\nttl = \"0s\"\n",
    )
    .unwrap();
    let bad = std::process::Command::new(psstd_bin())
        .args(["check-config"])
        .arg(dir.path().join("bad.toml"))
        .output()
        .unwrap();
    assert_eq!(bad.status.code(), Some(64), "{}", describe(&bad));
    let stderr = String::from_utf8_lossy(&bad.stderr);
    for says in ["unknown field `colour`", "ttl must be more than 0"] {
        assert!(stderr.contains(says), "{says}: {stderr}");
    }
    // The agent itself refuses to start on it, with the same report.
    let start = std::process::Command::new(psstd_bin())
        .arg("--config")
        .arg(dir.path().join("bad.toml"))
        .output()
        .unwrap();
    assert_eq!(start.status.code(), Some(64), "{}", describe(&start));

    // The change feed: both topologies named in the report, their problems listed.
    let policy_line = format!("[policy]\nfile = \"{}\"\n", policy.display());
    let check_feed = |feed: &str| {
        let path = dir.path().join("feed.toml");
        let local = "[[backend]]\ntype = \"local\"\ndir = \"/var/lib/psst/store\"\n";
        std::fs::write(&path, format!("{policy_line}[feed]\n{feed}\n{local}")).unwrap();
        std::process::Command::new(psstd_bin())
            .args(["check-config"])
            .arg(path)
            .output()
            .unwrap()
    };
    for (feed, says) in [
        (
            "queue_url = \"https://sqs.us-east-1.amazonaws.com/1/psst-web-1\"",
            "change feed from https://sqs.us-east-1.amazonaws.com/1/psst-web-1",
        ),
        (
            "create = true\ntopic_arn = \"arn:aws:sns:us-east-1:1:psst-changes\"",
            "change feed from a per-host queue on arn:aws:sns:us-east-1:1:psst-changes",
        ),
    ] {
        let ok = check_feed(feed);
        assert!(ok.status.success(), "{}", describe(&ok));
        assert!(
            String::from_utf8_lossy(&ok.stdout).contains(says),
            "{}",
            describe(&ok)
        );
    }
    let bad = check_feed("create = true\nhealthy_interval = \"1s\"");
    assert_eq!(bad.status.code(), Some(64), "{}", describe(&bad));
    let stderr = String::from_utf8_lossy(&bad.stderr);
    for says in [
        "feed: create = true needs topic_arn",
        "feed: healthy_interval must be at least watch.interval",
    ] {
        assert!(stderr.contains(says), "{says}: {stderr}");
    }
}

#[test]
fn refuses_to_replace_a_path_that_is_not_a_socket() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("psst.sock");
    std::fs::write(&path, b"precious").unwrap();
    std::fs::write(dir.path().join("policy.toml"), "allow_empty = true\n").unwrap();
    std::fs::write(
        dir.path().join("psstd.toml"),
        format!(
            "[server]\nsocket = \"{0}/psst.sock\"\n[policy]\nfile = \"{0}/policy.toml\"\n[[backend]]\ntype = \"local\"\ndir = \"{0}/store\"\n",
            dir.path().display()
        ),
    )
    .unwrap();
    let out = std::process::Command::new(psstd_bin())
        .arg("--config")
        .arg(dir.path().join("psstd.toml"))
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("is not a socket; refusing to replace it"),
        "{}",
        describe(&out)
    );
    assert_eq!(std::fs::read(&path).unwrap(), b"precious");
}

#[test]
fn serves_a_socket_passed_by_systemd() {
    use std::os::fd::AsRawFd;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("activated.sock");
    let listener = std::os::unix::net::UnixListener::bind(&path).unwrap();
    // Hand the listener to the child as fd 3, the way systemd does (LISTEN_FDS=1,
    // LISTEN_PID=the agent's pid): the shell moves it to fd 3 and execs psstd in its own pid.
    // bash, not sh: dash cannot redirect from a descriptor above 9.
    let fd = listener.as_raw_fd();
    nix::fcntl::fcntl(
        &listener,
        nix::fcntl::FcntlArg::F_SETFD(nix::fcntl::FdFlag::empty()),
    )
    .unwrap();
    std::fs::write(
        dir.path().join("policy.toml"),
        "[[rule]]\nname = \"me\"\ncaller = { uid = [0] }\nallow = { read = [\"local:**\"] }\n",
    )
    .unwrap();
    std::fs::write(
        dir.path().join("psstd.toml"),
        format!(
            "[server]\nsocket = \"{0}/unused.sock\"\n[policy]\nfile = \"{0}/policy.toml\"\n[[backend]]\ntype = \"local\"\ndir = \"{0}/store\"\n",
            dir.path().display()
        ),
    )
    .unwrap();
    let mut child = std::process::Command::new("bash")
        .arg("-c")
        .arg(format!(
            "exec 3<&{fd}; export LISTEN_FDS=1 LISTEN_PID=$$; exec {} --config {}/psstd.toml",
            psstd_bin().display(),
            dir.path().display()
        ))
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    drop(listener);
    let out = psst_tests::run_psst_at(&path, &["health"]);
    let _ = nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(child.id() as i32),
        Signal::SIGTERM,
    );
    let status = child.wait().unwrap();
    let mut stderr = String::new();
    child
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut stderr)
        .unwrap();
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        "SERVING\n",
        "{}\n{stderr}",
        describe(&out)
    );
    assert!(status.success(), "{stderr}");
    assert!(
        !dir.path().join("unused.sock").exists(),
        "the configured path is not used"
    );
    assert!(
        path.symlink_metadata().unwrap().file_type().is_socket(),
        "systemd's socket is left for systemd"
    );
}

#[tokio::test]
async fn whoami_and_list_over_grpc() {
    let agent = Agent::dev();
    let client = agent.client().await;
    client.put("local:x/one", b"1").await.unwrap();
    client.put("local:x/two", b"2").await.unwrap();
    client.put("local:x/two", b"22").await.unwrap();
    let listed = client.list("local:x/").await.unwrap();
    let got: Vec<_> = listed
        .iter()
        .map(|m| (m.reference.as_str(), m.version_id.as_str()))
        .collect();
    assert_eq!(got, [("local:x/one", "1"), ("local:x/two", "2")]);
    let who = client.whoami().await.unwrap();
    let caller = who.caller;
    assert_eq!(caller.pid as u32, std::process::id());
    assert_eq!(caller.identity_source, "process");
    let secret = client.get("local:x/two?version=1").await.unwrap();
    assert_eq!(secret.value(), b"2");
    assert!(!secret.cache.hit);
    let again = client.get("local:x/two?version=1").await.unwrap();
    assert!(again.cache.hit && !again.cache.stale);
    assert!(again.cache.expires_at > again.cache.fetched_at);
    assert_eq!(
        client.get("local:x/missing").await.unwrap_err().kind(),
        ErrorKind::NotFound
    );
}

fn walk(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut files = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            files.extend(walk(&path));
        } else {
            files.push(path);
        }
    }
    files
}

#[test]
fn sighup_reopens_the_audit_file_so_logrotate_can_move_it_away() {
    let agent = Agent::with_policy(
        "[[rule]]\nname = \"root\"\ncaller = { uid = [0] }\nallow = { read = [\"local:**\"], write = [\"local:**\"] }\n",
        "[audit]\nfile = \"{dir}/audit.jsonl\"\n",
    );
    let put = agent.psst(&["put", "local:rotated/a"], Some(b"v"));
    assert!(put.status.success(), "{}", describe(&put));
    let audit = agent.path("audit.jsonl");
    let moved = agent.path("audit.jsonl.1");
    std::fs::rename(&audit, &moved).unwrap();
    // Until SIGHUP, records follow the moved file (logrotate's window between rename and signal).
    agent.psst(&["get", "local:rotated/a"], None);
    agent.signal(Signal::SIGHUP);
    assert!(
        eventually(Duration::from_secs(5), || audit.exists()),
        "SIGHUP opened a new audit file:\n{}",
        agent.logs()
    );
    agent.psst(&["get", "local:rotated/missing"], None);
    eventually(Duration::from_secs(5), || {
        std::fs::read_to_string(&audit).is_ok_and(|new| !new.is_empty())
    });
    let old = std::fs::read_to_string(&moved).unwrap();
    let new = std::fs::read_to_string(&audit).unwrap();
    assert_eq!(old.lines().count(), 2, "put and the first get:\n{old}");
    assert!(
        old.contains("\"operation\":\"write\"") && old.contains("\"operation\":\"read\""),
        "{old}"
    );
    assert_eq!(new.lines().count(), 1, "the get after SIGHUP:\n{new}");
    assert!(new.contains("local:rotated/missing"), "{new}");
    let mode = std::fs::metadata(&audit).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o640);
}
