//! An unprivileged local user against the agent's availability: floods of idle connections,
//! request bodies that never end, connect/close churn, idle TCP on the metrics port, streams past
//! the per-uid share, a stalled body, and the file-descriptor limit systemd gives by default.
//! Each attack runs as a user created for the purpose (`psst-attack` under `runuser`), bounded
//! in count and time, while root's canary `GetSecret`s on fresh connections must keep being
//! answered fast; the agent's memory, CPU and log volume must stay bounded.
//!
//! The tests run one at a time (they measure latency and CPU): see `ONE_AT_A_TIME`.

use std::{
    process::{Command, Output, Stdio},
    sync::Mutex,
    time::{Duration, Instant},
};

use psst_tests::{aws::free_port, bin_dir, describe, scrape, Agent, Mode, TempUser};

const ATTACKER: &str = "psst-e2e-attacker";

static ONE_AT_A_TIME: Mutex<()> = Mutex::new(());

const POLICY: &str = r#"
[[rule]]
name = "root reads and writes the canary"
caller = { uid = [0] }
allow = { read = ["local:**"], write = ["local:**"], list = ["local:**"] }

[[rule]]
name = "the attacker may watch one secret"
caller = { user = ["psst-e2e-attacker"] }
allow = { watch = ["local:attack/**"] }
"#;

fn agent(extra: &str) -> Agent {
    let config = format!(
        "{extra}\n[log]\nlevel = \"info\"\n[policy]\nfile = \"{{dir}}/policy.toml\"\nwatch_interval = \"1s\"\n\n[[backend]]\ntype = \"local\"\ndir = \"{{dir}}/store\"\n"
    );
    let agent = Agent::start(
        Mode::Config {
            config: &config,
            policy: POLICY,
        },
        &[],
    );
    for (reference, value) in [("local:canary/value", "tweet"), ("local:attack/none", "x")] {
        let out = agent.psst(&["put", reference], Some(value.as_bytes()));
        assert!(out.status.success(), "{}", describe(&out));
    }
    agent
}

/// Starts `psst-attack ARGS` as the attacker; `finish` waits for its JSON report.
fn attack(user: &TempUser, args: &[&str]) -> std::process::Child {
    Command::new("runuser")
        .args(["-u", user.name(), "--"])
        .arg("prlimit")
        .arg("--nofile=8192:8192")
        .arg(bin_dir().join("psst-attack"))
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run psst-attack as the attacker")
}

fn finish(child: std::process::Child) -> serde_json::Value {
    let out: Output = child.wait_with_output().unwrap();
    assert!(out.status.success(), "psst-attack: {}", describe(&out));
    serde_json::from_slice(&out.stdout).unwrap_or_else(|_| panic!("{}", describe(&out)))
}

/// Root's `GetSecret`s on fresh connections every 20 ms for `during`: their latencies, sorted.
fn canary(agent: &Agent, during: Duration) -> Vec<Duration> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        let mut latencies = Vec::new();
        let end = Instant::now() + during;
        while Instant::now() < end {
            let started = Instant::now();
            let client = psst_client::Client::connect(&agent.socket)
                .await
                .expect("the canary connects");
            let secret = client
                .get("local:canary/value")
                .await
                .expect("the canary is answered");
            assert_eq!(secret.value(), b"tweet");
            latencies.push(started.elapsed());
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        latencies.sort();
        latencies
    })
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    sorted[((sorted.len() - 1) as f64 * p).round() as usize]
}

/// The canary's figures must show the attack cost other callers nothing that matters: the
/// median and p90 well within 50 ms and no call past half a second — or, on a machine so busy
/// that even an unattacked agent misses those marks, within 4× of `floor`: the same agent's
/// canary measured just before the attack began (same machine, same minute). An attack that
/// stalls the agent misses both.
fn assert_canary_fast(floor: &[Duration], latencies: &[Duration], what: &str) {
    assert!(
        latencies.len() >= 10,
        "{what}: only {} canary calls",
        latencies.len()
    );
    let figures = |l: &[Duration]| (percentile(l, 0.5), percentile(l, 0.9), *l.last().unwrap());
    let (p50, p90, max) = figures(latencies);
    let (floor50, floor90, floor_max) = figures(floor);
    eprintln!(
        "{what}: canary p50 {p50:?} p90 {p90:?} max {max:?} over {} calls; \
         before the attack p50 {floor50:?} p90 {floor90:?} max {floor_max:?}",
        latencies.len()
    );
    let bound = |absolute: u64, floor: Duration| Duration::from_millis(absolute).max(floor * 4);
    assert!(
        p50 < bound(50, floor50),
        "{what}: canary p50 {p50:?} (before the attack {floor50:?})"
    );
    assert!(
        p90 < bound(50, floor90),
        "{what}: canary p90 {p90:?} (before the attack {floor90:?})"
    );
    assert!(
        max < bound(500, floor_max),
        "{what}: canary max {max:?} (before the attack {floor_max:?})"
    );
}

/// User plus system CPU time of the agent, in clock ticks.
fn cpu_ticks(agent: &Agent) -> u64 {
    let stat = std::fs::read_to_string(format!("/proc/{}/stat", agent.pid())).unwrap();
    let after = &stat[stat.rfind(')').unwrap() + 2..];
    let fields: Vec<&str> = after.split_whitespace().collect();
    // utime and stime are fields 14 and 15; `after` starts at field 3.
    fields[11].parse::<u64>().unwrap() + fields[12].parse::<u64>().unwrap()
}

fn set_fd_limit(agent: &Agent, limit: u64) {
    let status = Command::new("prlimit")
        .arg(format!("--pid={}", agent.pid()))
        .arg(format!("--nofile={limit}:{limit}"))
        .status()
        .unwrap();
    assert!(status.success());
}

#[test]
fn two_thousand_idle_connections_from_one_user_leave_others_served() {
    let _one = ONE_AT_A_TIME.lock().unwrap_or_else(|p| p.into_inner());
    let attacker = TempUser::new(ATTACKER);
    let agent = agent("");
    // The canary before any attack: what "fast" means on this machine right now.
    let floor = canary(&agent, Duration::from_secs(1));
    // systemd's default limit, as the issue's attack had it: 1,024 descriptors.
    set_fd_limit(&agent, 1024);
    let rss_before = agent.rss_kib();
    let log_before = agent.logs().len();
    let cpu_before = cpu_ticks(&agent);

    let socket = agent.socket.to_str().unwrap().to_owned();
    let flood = attack(&attacker, &["idle", &socket, "2000", "4000"]);
    std::thread::sleep(Duration::from_millis(500));
    let latencies = canary(&agent, Duration::from_secs(3));
    let report = finish(flood);

    assert_canary_fast(&floor, &latencies, "idle flood");
    // The default per-uid share: 256 connections; the rest are closed as they arrive.
    let held = report["held"].as_u64().unwrap();
    assert!(
        held <= 256,
        "the attacker held {held} connections: {report}"
    );
    assert!(held >= 200, "the attack did not take place: {report}");
    let rss_growth = agent.rss_kib().saturating_sub(rss_before);
    assert!(rss_growth < 32 * 1024, "RSS grew {rss_growth} KiB");
    let logged = non_audit_log(&agent.logs()[log_before..]);
    assert!(
        logged.len() < 4 * 1024,
        "{} bytes of log for one flood:\n{logged}",
        logged.len()
    );
    // No accept loop spinning: well under one core over the ~4.5 s of the attack.
    let cpu = cpu_ticks(&agent) - cpu_before;
    assert!(cpu < 250, "{cpu} ticks of CPU");
    // Once the attacker is gone, its share is free again.
    let again = finish(attack(&attacker, &["idle", &socket, "100", "200"]));
    assert_eq!(again["held"], 100, "{again}");
}

#[test]
fn out_of_descriptors_the_agent_refuses_cleanly_without_spinning() {
    let _one = ONE_AT_A_TIME.lock().unwrap_or_else(|p| p.into_inner());
    let attacker = TempUser::new(ATTACKER);
    let agent = agent("");
    // The canary before any attack: what "fast" means on this machine right now.
    let floor = canary(&agent, Duration::from_secs(1));
    // Fewer descriptors than the attacker's share: accept fails with EMFILE.
    set_fd_limit(&agent, 128);
    let cpu_before = cpu_ticks(&agent);
    let log_before = agent.logs().len();
    let socket = agent.socket.to_str().unwrap().to_owned();
    let report = finish(attack(&attacker, &["idle", &socket, "600", "3000"]));
    let cpu = cpu_ticks(&agent) - cpu_before;
    assert!(
        cpu < 150,
        "{cpu} ticks of CPU while out of descriptors: {report}"
    );
    let held = report["held"].as_u64().unwrap();
    assert!(held < 128, "{report}");
    let logs = non_audit_log(&agent.logs()[log_before..]);
    let lines = logs
        .lines()
        .filter(|l| l.contains("refusing connections"))
        .count();
    assert!((1..=3).contains(&lines), "{lines} lines:\n{logs}");
    assert!(logs.contains("Too many open files"), "{logs}");
    // The attacker gone, everyone is served again.
    let latencies = canary(&agent, Duration::from_secs(1));
    assert_canary_fast(&floor, &latencies, "after descriptor exhaustion");
}

#[test]
fn unfinished_request_bodies_are_bounded() {
    let _one = ONE_AT_A_TIME.lock().unwrap_or_else(|p| p.into_inner());
    let attacker = TempUser::new(ATTACKER);
    let agent = agent("[limits]\nbody_timeout = \"3s\"\n");
    // The canary before any attack: what "fast" means on this machine right now.
    let floor = canary(&agent, Duration::from_secs(1));
    let rss_before = agent.rss_kib();
    let socket = agent.socket.to_str().unwrap().to_owned();
    // 2 connections × 1,000 streams, each announcing a 1 MiB message and sending 64 KiB.
    let flood = attack(&attacker, &["bodies", &socket, "2", "1000", "2000"]);
    std::thread::sleep(Duration::from_millis(500));
    let latencies = canary(&agent, Duration::from_secs(2));
    let rss_peak = agent.rss_kib();
    let report = finish(flood);
    assert_canary_fast(&floor, &latencies, "unfinished bodies");
    // At most the uid's byte share (8 MiB) is buffered, plus h2's windows.
    let growth = rss_peak.saturating_sub(rss_before);
    assert!(growth < 48 * 1024, "RSS grew {growth} KiB: {report}");
    assert!(report["refused"].as_u64().unwrap() > 0, "{report}");
    // The attacker has no write grant anyway: nothing was stored.
    let out = agent.psst(&["ls", "local:canary/"], None);
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        "local:canary/value"
    );
}

#[test]
fn a_connect_close_flood_does_not_grow_the_agent() {
    let _one = ONE_AT_A_TIME.lock().unwrap_or_else(|p| p.into_inner());
    let attacker = TempUser::new(ATTACKER);
    let agent = agent("");
    // The canary before any attack: what "fast" means on this machine right now.
    let floor = canary(&agent, Duration::from_secs(1));
    let rss_before = agent.rss_kib();
    let socket = agent.socket.to_str().unwrap().to_owned();
    let flood = attack(&attacker, &["churn", &socket, "20000"]);
    let latencies = canary(&agent, Duration::from_secs(2));
    let report = finish(flood);
    assert_canary_fast(&floor, &latencies, "connect/close flood");
    std::thread::sleep(Duration::from_millis(500));
    let growth = agent.rss_kib().saturating_sub(rss_before);
    assert!(growth < 16 * 1024, "RSS grew {growth} KiB after {report}");
}

#[test]
fn idle_tcp_connections_do_not_take_the_metrics_listener_down() {
    let _one = ONE_AT_A_TIME.lock().unwrap_or_else(|p| p.into_inner());
    let attacker = TempUser::new(ATTACKER);
    let port = free_port();
    let agent = agent(&format!("[metrics]\nlisten = \"127.0.0.1:{port}\"\n"));
    // The canary before any attack: what "fast" means on this machine right now.
    let floor = canary(&agent, Duration::from_secs(1));
    let address = format!("127.0.0.1:{port}");
    let flood = attack(&attacker, &["tcp-idle", &address, "1000", "3000"]);
    std::thread::sleep(Duration::from_millis(500));
    let latencies = canary(&agent, Duration::from_secs(2));
    let report = finish(flood);
    assert_canary_fast(&floor, &latencies, "idle metrics connections");
    // 16 connections at most are kept; the rest are closed as they arrive.
    let held = report["held"].as_u64().unwrap();
    assert!(held <= 16, "{report}");
    // And the listener is still there once they are gone.
    assert!(scrape(port).contains("psst_policy_decisions"));
}

#[test]
fn streams_past_the_uid_share_are_refused_and_others_still_served() {
    let _one = ONE_AT_A_TIME.lock().unwrap_or_else(|p| p.into_inner());
    let attacker = TempUser::new(ATTACKER);
    let agent = agent("[limits]\nrequests_in_flight_per_uid = 50\n");
    // The canary before any attack: what "fast" means on this machine right now.
    let floor = canary(&agent, Duration::from_secs(1));
    let socket = agent.socket.to_str().unwrap().to_owned();
    let flood = attack(&attacker, &["streams", &socket, "80", "1500"]);
    let latencies = canary(&agent, Duration::from_secs(1));
    let report = finish(flood);
    assert_canary_fast(&floor, &latencies, "streams past the share");
    // 50 watches stay open; the 30 past the uid's share are refused RESOURCE_EXHAUSTED (8).
    let codes = &report["codes"];
    assert_eq!(codes["open"], 50, "{report}");
    assert_eq!(codes["8"], 30, "{report}");
}

#[test]
fn a_body_that_never_ends_times_out() {
    let _one = ONE_AT_A_TIME.lock().unwrap_or_else(|p| p.into_inner());
    let attacker = TempUser::new(ATTACKER);
    let agent = agent("[limits]\nbody_timeout = \"1s\"\n");
    let socket = agent.socket.to_str().unwrap().to_owned();
    let report = finish(attack(&attacker, &["stall", &socket]));
    // DEADLINE_EXCEEDED (4), after the timeout and not much later.
    assert_eq!(report["status"], "4", "{report}");
    let ms = report["ms"].as_u64().unwrap();
    assert!((900..3000).contains(&ms), "{report}");
}

#[test]
fn a_connection_that_never_speaks_http2_is_closed() {
    let _one = ONE_AT_A_TIME.lock().unwrap_or_else(|p| p.into_inner());
    let attacker = TempUser::new(ATTACKER);
    let agent = agent("[connections]\nhandshake_timeout = \"1s\"\n");
    let socket = agent.socket.to_str().unwrap().to_owned();
    let report = finish(attack(&attacker, &["idle", &socket, "10", "2000"]));
    assert_eq!(report["held"], 0, "{report}");
    let report = finish(attack(&attacker, &["idle", &socket, "10", "300"]));
    assert_eq!(report["held"], 10, "{report}");
}

#[test]
fn the_request_rate_of_one_uid_is_limited() {
    let _one = ONE_AT_A_TIME.lock().unwrap_or_else(|p| p.into_inner());
    let agent = agent("[limits]\nrequests_per_second_per_uid = 2\nrequest_burst_per_uid = 5\n");
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let codes: Vec<String> = runtime.block_on(async {
        let client = psst_client::Client::connect(&agent.socket).await.unwrap();
        let mut codes = Vec::new();
        for _ in 0..10 {
            codes.push(match client.get("local:canary/value").await {
                Ok(_) => "OK".to_owned(),
                Err(e) => format!("{:?}: {}", e.code(), e.message()),
            });
        }
        codes
    });
    // The burst of 5 (connecting may take one), then refusals: 2 per second refill few.
    assert!(codes[..4].iter().all(|c| c == "OK"), "{codes:?}");
    let refused = codes
        .iter()
        .filter(|c| c.starts_with("ResourceExhausted") && c.contains("over its request rate"))
        .count();
    assert!(refused >= 3, "{codes:?}");
}

#[test]
fn a_socket_directory_others_can_write_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let open = dir.path().join("open");
    std::fs::create_dir(&open).unwrap();
    std::fs::set_permissions(&open, std::os::unix::fs::PermissionsExt::from_mode(0o777)).unwrap();
    let config = dir.path().join("psstd.toml");
    std::fs::write(
        &config,
        format!(
            "[server]\nsocket = \"{}/psst.sock\"\n[policy]\nfile = \"{}/policy.toml\"\n[[backend]]\ntype = \"local\"\ndir = \"{}/store\"\n",
            open.display(),
            dir.path().display(),
            dir.path().display()
        ),
    )
    .unwrap();
    std::fs::write(dir.path().join("policy.toml"), POLICY).unwrap();
    let out = Command::new(bin_dir().join("psstd"))
        .arg("--config")
        .arg(&config)
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert!(!out.status.success(), "{}", describe(&out));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("writable by other users"),
        "{}",
        describe(&out)
    );
    assert!(!open.join("psst.sock").exists());
}

/// The agent's log lines other than audit records (the canary's reads are audited).
fn non_audit_log(log: &str) -> String {
    log.lines()
        .filter(|l| !l.contains(" audit: "))
        .map(|l| format!("{l}\n"))
        .collect()
}
