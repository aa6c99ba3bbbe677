//! How the agent fails, end to end: a dead backend past the TTL, a Secrets Manager secret
//! deleted and recreated, an empty policy written on reload, a full disk under the audit file,
//! and what a core dump of the agent holds after values went through it. Real `psstd`, real
//! `moto_server` behind the fault proxy of `tests/src/aws.rs`, real boto3.

use std::{
    io::Write,
    time::{Duration, Instant},
};

use psst_tests::{
    aws::{free_port, Fault, FaultProxy, Moto, AWS_ENV},
    sample, scrape, Agent, Mode,
};

const AWS_POLICY: &str = r#"
[[rule]]
name = "root"
caller = { uid = [0] }
allow = { read = ["sm:**"], write = ["sm:**"] }
"#;

/// An agent whose `sm` backend goes to moto through the fault proxy, with metrics on.
fn sm_agent(moto: &Moto, proxy: &FaultProxy, metrics_port: u16, cache: &str) -> Agent {
    let config = format!(
        "[metrics]\nlisten = \"127.0.0.1:{metrics_port}\"\n[cache]\nttl_jitter = 0.0\n{cache}\n\
         [log]\nlevel = \"psstd=debug,warn\"\n[policy]\nfile = \"{{dir}}/policy.toml\"\n\
         [[backend]]\ntype = \"sm\"\nendpoint = \"{}\"\nregion = \"us-east-1\"\nttl = \"1s\"\n\
         timeout = \"2s\"\n",
        proxy.endpoint()
    );
    let _ = moto;
    Agent::start(
        Mode::Config {
            config: &config,
            policy: AWS_POLICY,
        },
        &AWS_ENV,
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn past_the_ttl_a_dead_backend_costs_readers_milliseconds_and_aws_one_probe() {
    let moto = Moto::start();
    let proxy = FaultProxy::start(moto.port);
    let port = free_port();
    let agent = sm_agent(&moto, &proxy, port, "max_stale = \"5m\"\n");
    moto.boto3("sm.create_secret(Name='steady', SecretString='old-but-good')");
    let client = agent.client().await;
    assert!(!client.get("sm:steady").await.unwrap().cache.stale);
    // What a cached read costs on this machine right now (a busy CI machine adds to every
    // read): the stale reads below may take the 25 ms stale deadline and 25 ms more than that.
    let mut floor = Duration::ZERO;
    for _ in 0..20 {
        let started = Instant::now();
        assert!(client.get("sm:steady").await.unwrap().cache.hit);
        floor = floor.max(started.elapsed());
    }
    let bound = Duration::from_millis(50) + floor;
    let circuit = "psst_backend_circuit{backend=\"sm\",service=\"Secrets Manager\",state=";

    for fault in [Fault::Blackhole, Fault::Reset] {
        proxy.set(fault);
        tokio::time::sleep(Duration::from_millis(1100)).await;
        let calls_before = proxy.count("secretsmanager.GetSecretValue");
        // Readers every 100 ms for 8 s: each answered at once with the old value, flagged stale.
        let mut slowest = Duration::ZERO;
        for i in 0..80 {
            let started = Instant::now();
            let read = client.get("sm:steady").await.unwrap();
            slowest = slowest.max(started.elapsed());
            assert!(
                slowest < bound,
                "{fault:?}: read {i} took {slowest:?} (a cached read: at most {floor:?})"
            );
            assert!(read.cache.stale, "{fault:?}");
            assert_eq!(read.value(), b"old-but-good");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        // The first refresh's three attempts opened the circuit; then one probe per 5 s.
        let sent = proxy.count("secretsmanager.GetSecretValue") - calls_before;
        assert!(sent <= 3 + 2, "{fault:?}: {sent} calls during the outage");
        let metrics = scrape(port);
        assert_eq!(
            sample(&metrics, &format!("{circuit}\"closed\"}}")),
            0.0,
            "{fault:?}: {metrics}"
        );
        assert!(agent.logs().contains("circuit opened"));

        // Back: within a cooldown a probe gets through, the circuit closes, values are fresh.
        proxy.set(Fault::Pass);
        let deadline = Instant::now() + Duration::from_secs(15);
        let recovered = loop {
            let read = client.get("sm:steady").await.unwrap();
            if !read.cache.stale || Instant::now() > deadline {
                break !read.cache.stale;
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        };
        assert!(recovered, "{fault:?}: fresh again after the outage");
        assert_eq!(
            sample(&scrape(port), &format!("{circuit}\"closed\"}}")),
            1.0
        );
    }
    assert!(!agent.logs().contains("old-but-good"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_secret_deleted_and_created_again_is_found_again_after_the_ttl() {
    let moto = Moto::start();
    let proxy = FaultProxy::start(moto.port);
    let agent = sm_agent(&moto, &proxy, free_port(), "");
    let old_arn = moto.boto3(
        "print(sm.create_secret(Name='phoenix', SecretString='first-life')['ARN'], end='')\n\
         sm.create_secret(Name='phoenix-batch', SecretString='first-batch')",
    );
    let client = agent.client().await;
    // Read by name twice (the second is keyed by the ARN learned from the first), and in a batch.
    for _ in 0..2 {
        assert_eq!(
            client.get("sm:phoenix").await.unwrap().value(),
            b"first-life"
        );
        let batch = client.batch_get(&["sm:phoenix-batch"]).await.unwrap();
        assert_eq!(batch[0].as_ref().unwrap().value(), b"first-batch");
    }

    moto.boto3(
        "for name in ['phoenix', 'phoenix-batch']:\n\
         \x20   sm.delete_secret(SecretId=name, ForceDeleteWithoutRecovery=True)\n\
         sm.create_secret(Name='phoenix', SecretString='second-life')\n\
         sm.create_secret(Name='phoenix-batch', SecretString='second-batch')",
    );
    tokio::time::sleep(Duration::from_millis(1100)).await;
    // Past the TTL the new secret is found (a read racing the refresh may get the old value,
    // flagged stale, for the stale deadline's few milliseconds: never unflagged, never NOT_FOUND).
    let deadline = Instant::now() + Duration::from_secs(3);
    loop {
        let read = client.get("sm:phoenix").await.unwrap();
        let batch = client.batch_get(&["sm:phoenix-batch"]).await.unwrap();
        let batched = batch[0].as_ref().unwrap();
        if read.value() == b"second-life" && batched.value() == b"second-batch" {
            break;
        }
        assert!(read.value() == b"second-life" || read.cache.stale);
        assert!(batched.value() == b"second-batch" || batched.cache.stale);
        assert!(
            Instant::now() < deadline,
            "still the deleted secret's value"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // And keeps finding it, from the cache, under its new ARN.
    let again = client.get("sm:phoenix").await.unwrap();
    assert_eq!(again.value(), b"second-life");
    assert!(again.cache.hit);
    // The old ARN names the deleted secret: still NOT_FOUND, never the new one's value.
    let err = client.get(&format!("sm:{old_arn}")).await.unwrap_err();
    assert_eq!(err.code(), psst_client::Code::NotFound, "{err}");
}

#[test]
fn an_empty_policy_written_on_reload_is_refused_and_the_previous_one_stays() {
    let allow_root = "[[rule]]\nname = \"root\"\ncaller = { uid = [0] }\nallow = { read = [\"local:**\"], write = [\"local:**\"] }\n";
    let agent = Agent::with_policy(allow_root, "");
    assert!(agent
        .psst(&["put", "local:kept"], Some(b"v"))
        .status
        .success());

    // The file emptied (as `> policy.toml` leaves it), noticed by the file watch and by SIGHUP.
    std::fs::write(agent.path("policy.toml"), "").unwrap();
    agent.signal(nix::sys::signal::Signal::SIGHUP);
    assert!(
        psst_tests::eventually(Duration::from_secs(5), || agent
            .logs()
            .contains("no rules, so it would deny every caller")),
        "{}",
        agent.logs()
    );
    assert!(agent.logs().contains("the previous policy stays in force"));
    let get = agent.psst(&["get", "local:kept"], None);
    assert!(
        get.status.success(),
        "the previous policy stays: {}",
        psst_tests::describe(&get)
    );

    // Meant: the empty policy is taken, and denies.
    std::fs::write(agent.path("policy.toml"), "allow_empty = true\n").unwrap();
    assert!(
        psst_tests::eventually(Duration::from_secs(5), || agent
            .psst(&["get", "local:kept"], None)
            .status
            .code()
            == Some(5)),
        "{}",
        agent.logs()
    );
}

/// A small tmpfs, unmounted when dropped: a disk that fills up.
struct SmallDisk {
    dir: tempfile::TempDir,
}

impl SmallDisk {
    fn mount(size: &str) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let out = std::process::Command::new("mount")
            .args([
                "-t",
                "tmpfs",
                "-o",
                &format!("size={size},mode=0700"),
                "tmpfs",
            ])
            .arg(dir.path())
            .output()
            .unwrap();
        assert!(out.status.success(), "{}", psst_tests::describe(&out));
        Self { dir }
    }

    fn path(&self) -> &std::path::Path {
        self.dir.path()
    }
}

impl Drop for SmallDisk {
    fn drop(&mut self) {
        let _ = std::process::Command::new("umount")
            .arg("-l")
            .arg(self.dir.path())
            .status();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_local_store_says_so_without_saying_where_it_is() {
    let disk = SmallDisk::mount("64k");
    let store = disk.path().join("store");
    let config = format!(
        "[policy]\nfile = \"{{dir}}/policy.toml\"\n[[backend]]\ntype = \"local\"\ndir = \"{}\"\n",
        store.display()
    );
    let policy = "[[rule]]\nname = \"root\"\ncaller = { uid = [0] }\nallow = { read = [\"local:**\"], write = [\"local:**\"] }\n";
    let agent = Agent::start(
        Mode::Config {
            config: &config,
            policy,
        },
        &[],
    );
    let client = agent.client().await;
    let value = vec![b'x'; 16 * 1024];
    let mut full = None;
    for i in 0..16 {
        if let Err(e) = client.put(&format!("local:fill/{i}"), &value).await {
            full = Some(e);
            break;
        }
    }
    let err = full.expect("a 64 KiB disk fills up");
    assert_eq!(err.code(), psst_client::Code::Unavailable, "{err}");
    assert!(err.message().contains("No space left on device"), "{err}");
    let root = disk.path().to_str().unwrap();
    assert!(
        !err.message().contains(root),
        "the store's path reached the caller: {err}"
    );
    assert!(!err.message().contains("/@versions"), "{err}");
    // The operator's log has the path.
    assert!(agent.logs().contains(root));
}

/// A raw gRPC call on HTTP/2, as `tests/tests/wire.rs` makes them: (grpc-status, message).
async fn raw_call(agent: &Agent, method: &str, message: &[u8]) -> (String, String) {
    let io = tokio::net::UnixStream::connect(&agent.socket)
        .await
        .unwrap();
    let (sender, connection) = h2::client::handshake(io).await.unwrap();
    tokio::spawn(connection);
    let mut sender = sender.ready().await.unwrap();
    let mut body = vec![0u8];
    body.extend_from_slice(&(message.len() as u32).to_be_bytes());
    body.extend_from_slice(message);
    let request = http::Request::post(format!("http://localhost/{method}"))
        .header("content-type", "application/grpc")
        .header("te", "trailers")
        .body(())
        .unwrap();
    let (response, mut send) = sender.send_request(request, false).unwrap();
    send.send_data(bytes::Bytes::from(body), true).unwrap();
    let response = response.await.unwrap();
    let mut headers = response.headers().clone();
    let mut body = response.into_body();
    while let Some(chunk) = body.data().await {
        let _ = chunk.unwrap();
    }
    if let Some(trailers) = body.trailers().await.unwrap() {
        headers.extend(trailers);
    }
    let text = |name: &str| {
        headers
            .get(name)
            .map(|v| v.to_str().unwrap().to_owned())
            .unwrap_or_default()
    };
    (text("grpc-status"), text("grpc-message"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn undecodable_requests_and_dot_mounts_are_invalid_arguments() {
    let agent = Agent::dev();
    // Field 1 (a string) holding bytes that are not UTF-8.
    let not_utf8: &[u8] = &[0x0a, 0x02, 0xff, 0xfe];
    for method in [
        "psst.v1.Secrets/GetSecret",
        "psst.v1.Secrets/BatchGetSecrets",
        "psst.v1.Secrets/ListSecrets",
        "psst.v1.Secrets/PutSecret",
    ] {
        let (status, message) = raw_call(&agent, method, not_utf8).await;
        // 3 = INVALID_ARGUMENT (13 = INTERNAL before).
        assert_eq!(status, "3", "{method}: {message}");
    }
    // A wrong wire type for a field is as bad.
    let (status, message) =
        raw_call(&agent, "psst.v1.Secrets/GetSecret", &[0x0d, 1, 2, 3, 4]).await;
    assert_eq!(status, "3", "{message}");

    let client = agent.client().await;
    for reference in [
        "vault:../sys/seal-status",
        "vault:./secret/a",
        "vault:secret/../sys",
    ] {
        let err = client.get(reference).await.unwrap_err();
        assert_eq!(
            err.code(),
            psst_client::Code::InvalidArgument,
            "{reference}: {err}"
        );
        assert!(err.message().contains("'.' or '..'"), "{err}");
    }
}

/// Fills `dir`'s file system: a file of zeros written until ENOSPC. Removing it frees the space.
fn fill(dir: &std::path::Path) -> std::path::PathBuf {
    let filler = dir.join("filler");
    let mut file = std::fs::File::create(&filler).unwrap();
    let block = [0u8; 4096];
    loop {
        if let Err(e) = file.write_all(&block) {
            assert_eq!(e.raw_os_error(), Some(28), "{e}");
            break;
        }
    }
    filler
}

/// An agent writing its audit trail to a 64 KiB disk, with metrics on.
fn audited_agent(disk: &SmallDisk, metrics_port: u16, fail_closed: bool) -> Agent {
    let config = format!(
        "[audit]\nfile = \"{}/audit.jsonl\"\n{}\
         [metrics]\nlisten = \"127.0.0.1:{metrics_port}\"\n\
         [policy]\nfile = \"{{dir}}/policy.toml\"\n[[backend]]\ntype = \"local\"\ndir = \"{{dir}}/store\"\n",
        disk.path().display(),
        // Left out when false: the default.
        if fail_closed {
            "fail_closed = true\n"
        } else {
            ""
        }
    );
    let policy = "[[rule]]\nname = \"root\"\ncaller = { uid = [0] }\nallow = { read = [\"local:**\"], write = [\"local:**\"] }\n";
    Agent::start(
        Mode::Config {
            config: &config,
            policy,
        },
        &[],
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_disk_under_the_audit_file_is_counted_logged_and_by_default_not_fatal() {
    let disk = SmallDisk::mount("64k");
    let port = free_port();
    let agent = audited_agent(&disk, port, false);
    let client = agent.client().await;
    client.put("local:audited", b"v").await.unwrap();
    assert_eq!(
        sample(&scrape(port), "psst_audit_write_failures_total"),
        0.0
    );
    let audit_file = disk.path().join("audit.jsonl");
    let lines = || {
        std::fs::read_to_string(&audit_file)
            .unwrap_or_default()
            .lines()
            .count()
    };
    // Records are written in batches, at most `audit.flush_interval` after their request.
    assert!(psst_tests::eventually(Duration::from_secs(5), || lines() == 1));

    let filler = fill(disk.path());
    // The audit file's last page still takes a few records; then the writer's batches fail.
    let mut requests = 0;
    while sample(&scrape(port), "psst_audit_failing") == 0.0 {
        client.get("local:audited").await.unwrap();
        requests += 1;
        assert!(requests < 500, "the audit file never filled up");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert!(sample(&scrape(port), "psst_audit_write_failures_total") >= 1.0);
    for _ in 0..20 {
        // Served: fail open is the default.
        assert_eq!(client.get("local:audited").await.unwrap().value(), b"v");
    }
    assert_eq!(sample(&scrape(port), "psst_audit_failing"), 1.0);
    let logs = agent.logs();
    assert!(logs.contains("cannot write audit records"), "{logs}");
    assert!(logs.contains("No space left on device"), "{logs}");
    assert_eq!(
        logs.matches("cannot write audit records").count(),
        1,
        "rate-limited: one line for every failed batch"
    );

    // Space again: the records kept in the journal meanwhile are written, none lost.
    std::fs::remove_file(filler).unwrap();
    client.get("local:audited").await.unwrap();
    assert!(psst_tests::eventually(Duration::from_secs(5), || sample(
        &scrape(port),
        "psst_audit_failing"
    ) == 0.0));
    assert!(agent.logs().contains("audit records are written again"));
    let expected = 1 + requests + 20 + 1;
    assert!(
        psst_tests::eventually(Duration::from_secs(5), || lines() == expected),
        "{} of {expected} records",
        lines()
    );
    let written = std::fs::read_to_string(&audit_file).unwrap();
    assert!(
        written
            .lines()
            .all(|l| l.starts_with("{\"timestamp\"") && l.ends_with("\"target\":\"audit\"}")),
        "no torn record:\n{written}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_fail_closed_nothing_is_served_while_the_audit_file_cannot_be_written() {
    let disk = SmallDisk::mount("64k");
    let port = free_port();
    let agent = audited_agent(&disk, port, true);
    let client = agent.client().await;
    client.put("local:guarded", b"v").await.unwrap();
    client.get("local:guarded").await.unwrap();

    let filler = fill(disk.path());
    // The audit file's last page still takes a few records. The request whose record fails is
    // served (its record is the one that failed); from then on, nothing is.
    let mut requests = 0;
    while client.get("local:guarded").await.is_ok() {
        requests += 1;
        assert!(requests < 100, "the audit file never filled up");
    }
    for _ in 0..5 {
        let err = client.get("local:guarded").await.unwrap_err();
        assert_eq!(err.code(), psst_client::Code::Unavailable, "{err}");
        assert!(err.message().contains("audit"), "{err}");
        let err = client.put("local:guarded", b"w").await.unwrap_err();
        assert_eq!(err.code(), psst_client::Code::Unavailable, "{err}");
    }
    assert_eq!(sample(&scrape(port), "psst_audit_failing"), 1.0);
    assert!(agent
        .logs()
        .contains("requests are refused (audit.fail_closed)"));

    // Space again: the next request's record is written, and it is served.
    std::fs::remove_file(filler).unwrap();
    assert_eq!(client.get("local:guarded").await.unwrap().value(), b"v");
    assert_eq!(sample(&scrape(port), "psst_audit_failing"), 0.0);
}

/// Takes a core of the running agent with gdb's `gcore`, as an attacker with ptrace (or a crash
/// with core dumps on) would, and returns its bytes.
fn core_of(agent: &Agent) -> Vec<u8> {
    let dir = tempfile::tempdir().unwrap();
    let prefix = dir.path().join("core");
    let out = std::process::Command::new("gcore")
        .arg("-o")
        .arg(&prefix)
        .arg(agent.pid().to_string())
        .output()
        .expect("gdb's gcore (apt-get install gdb)");
    assert!(out.status.success(), "{}", psst_tests::describe(&out));
    std::fs::read(format!("{}.{}", prefix.display(), agent.pid())).unwrap()
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    memchr::memmem::find(haystack, needle).is_some()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_core_of_the_agent_holds_no_value_put_rejected_evicted_or_cached() {
    let policy = "[[rule]]\nname = \"root\"\ncaller = { uid = [0] }\nallow = { read = [\"local:keep/**\"], write = [\"local:keep/**\"], admin = [\"local:**\"] }\n";
    let agent = Agent::with_policy(policy, "");
    let unique = std::process::id();
    let canary = |what: &str| format!("psst-canary-{what}-{unique}-7f3a9c").into_bytes();
    let (evicted, denied, malformed, cached, json) = (
        canary("evicted"),
        canary("denied"),
        canary("malformed"),
        canary("cached"),
        canary("jsonkey"),
    );
    let client = agent.client().await;

    // Written, read, then evicted from the cache.
    client.put("local:keep/evicted", &evicted).await.unwrap();
    assert_eq!(
        client.get("local:keep/evicted").await.unwrap().value(),
        &evicted[..]
    );
    // Rejected PutSecret bodies: denied by policy, and a malformed reference.
    let err = client.put("local:other/denied", &denied).await.unwrap_err();
    assert_eq!(err.code(), psst_client::Code::PermissionDenied, "{err}");
    let err = client.put("local:keep/../x", &malformed).await.unwrap_err();
    assert_eq!(err.code(), psst_client::Code::InvalidArgument, "{err}");
    // A value still cached, and a JSON key picked out of one.
    client.put("local:keep/cached", &cached).await.unwrap();
    client.get("local:keep/cached").await.unwrap();
    let document = format!("{{\"password\":\"{}\"}}", String::from_utf8_lossy(&json));
    client
        .put("local:keep/doc", document.as_bytes())
        .await
        .unwrap();
    let picked = client.get("local:keep/doc#password").await.unwrap();
    assert_eq!(picked.value(), &json[..]);
    client.invalidate("local:keep/evicted", "").await.unwrap();
    drop(client);
    tokio::time::sleep(Duration::from_millis(200)).await;

    let core = core_of(&agent);
    assert!(core.len() > 1 << 20, "a real core: {} bytes", core.len());
    // The test's own control: text the agent holds that is not a secret is found.
    assert!(
        contains(&core, b"keep/cached"),
        "the cache key (a name, not a value) is there"
    );
    for (what, value) in [
        ("evicted", &evicted),
        ("denied", &denied),
        ("malformed", &malformed),
        ("cached", &cached),
        ("json key", &json),
    ] {
        if contains(&core, value) {
            let _ = std::fs::write("/tmp/psst-failure-core", &core);
        }
        assert!(!contains(&core, value), "the {what} value is in the core");
    }
}
