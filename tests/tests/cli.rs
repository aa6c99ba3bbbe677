//! End to end: every `psst` command, its output formats and exit codes, against a live agent.

use std::{
    fs,
    io::{BufRead, BufReader},
    process::{Command, Output, Stdio},
    sync::mpsc,
    time::Duration,
};

use base64::Engine as _;
use nix::{
    sys::signal::{kill, Signal},
    unistd::Pid,
};
use psst_tests::{describe, eventually, psst_bin, run_psst_at, Agent};
use serde_json::{json, Value};

const DENIED_USER: &str = "psst-e2e-denied";

/// A dev agent holding a text secret, a JSON secret and a binary one.
fn agent_with_secrets() -> Agent {
    let agent = Agent::dev();
    for (reference, value) in [
        ("local:demo/pw", &b"hunter2"[..]),
        ("local:demo/db", br#"{"user":"app","password":"pa55"}"#),
        ("local:demo/bin", b"\x00\xff\n"),
    ] {
        let put = agent.psst(&["put", reference], Some(value));
        assert!(put.status.success(), "{}", describe(&put));
    }
    agent
}

fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

fn json_lines(out: &Output) -> Vec<Value> {
    stdout(out)
        .lines()
        .map(|line| {
            serde_json::from_str(line)
                .unwrap_or_else(|e| panic!("not JSON ({e}): {line}\n{}", describe(out)))
        })
        .collect()
}

fn assert_exit(out: &Output, code: i32, says: &str) {
    assert_eq!(out.status.code(), Some(code), "{}", describe(out));
    assert!(
        stderr(out).contains(says),
        "stderr should say {says:?}\n{}",
        describe(out)
    );
}

fn is_rfc3339(value: &Value) -> bool {
    value.as_str().is_some_and(|t| {
        t.len() >= 20 && t.as_bytes()[4] == b'-' && t.as_bytes()[10] == b'T' && t.ends_with('Z')
    })
}

// === get, batch, put, ls, whoami, health ===

#[test]
fn get_prints_the_raw_value_and_with_json_the_secret_and_its_metadata() {
    let agent = agent_with_secrets();
    assert_eq!(
        agent.psst(&["get", "local:demo/bin"], None).stdout,
        b"\x00\xff\n"
    );
    assert_eq!(
        agent.psst(&["get", "local:demo/db#user"], None).stdout,
        b"app"
    );

    let out = agent.psst(&["get", "--json", "local:demo/pw"], None);
    assert!(out.status.success(), "{}", describe(&out));
    let [secret] = json_lines(&out).try_into().expect("one line");
    assert_eq!(secret["reference"], "local:demo/pw");
    assert_eq!(secret["value"], "hunter2");
    assert_eq!(secret["value_encoding"], "utf8");
    assert_eq!(secret["version_id"], "1");
    assert_eq!(secret["stages"], json!([]));
    assert!(is_rfc3339(&secret["created_at"]), "{secret}");
    assert_eq!(secret["cache"]["stale"], false);
    assert!(secret["cache"]["hit"].is_boolean(), "{secret}");
    assert!(is_rfc3339(&secret["cache"]["fetched_at"]), "{secret}");
    assert!(is_rfc3339(&secret["cache"]["expires_at"]), "{secret}");

    // Bytes that are not UTF-8 come back as base64, and say so.
    let out = agent.psst(&["--output", "json", "get", "local:demo/bin"], None);
    let [binary] = json_lines(&out).try_into().expect("one line");
    assert_eq!(binary["value_encoding"], "base64");
    assert_eq!(binary["value"], "AP8K");

    let out = agent.psst(&["get", "local:demo/db#password", "--json"], None);
    let [key] = json_lines(&out).try_into().expect("one line");
    assert_eq!(key["reference"], "local:demo/db#password");
    assert_eq!(key["value"], "pa55");
}

#[test]
fn batch_prints_one_line_per_reference_and_fails_with_the_first_failed_item() {
    let agent = agent_with_secrets();
    let ok = agent.psst(&["batch", "local:demo/pw", "local:demo/db#user"], None);
    assert!(ok.status.success(), "{}", describe(&ok));
    assert_eq!(stdout(&ok), "hunter2\napp\n");

    let refs = [
        "batch",
        "local:demo/pw",
        "local:missing",
        "local:a?stage=AWSCURRENT",
        "local:demo/db#password",
    ];
    let text = agent.psst(&refs, None);
    assert_exit(
        &text,
        4,
        "psst: local:missing: NOT_FOUND: secret local:missing not found",
    );
    assert!(stderr(&text).contains("local:a?stage=AWSCURRENT: INVALID_ARGUMENT"));
    assert_eq!(
        stdout(&text),
        "hunter2\n\n\npa55\n",
        "failed items keep their line"
    );

    let mut args = refs.to_vec();
    args.push("--json");
    let out = agent.psst(&args, None);
    assert_eq!(out.status.code(), Some(4), "{}", describe(&out));
    let lines = json_lines(&out);
    assert_eq!(lines.len(), 4, "{}", describe(&out));
    assert_eq!(lines[0]["value"], "hunter2");
    assert_eq!(
        lines[1],
        json!({"reference": "local:missing",
               "error": {"code": "NOT_FOUND", "message": "secret local:missing not found"}})
    );
    assert_eq!(lines[2]["reference"], "local:a?stage=AWSCURRENT");
    assert_eq!(lines[2]["error"]["code"], "INVALID_ARGUMENT");
    assert_eq!(lines[3]["reference"], "local:demo/db#password");
    assert_eq!(lines[3]["value"], "pa55");

    // A multi-line value cannot be one line of text; JSON carries it.
    let multi = agent.psst(&["batch", "local:demo/bin"], None);
    assert_exit(&multi, 3, "use --json");
    let out = agent.psst(&["batch", "--json", "local:demo/bin"], None);
    assert!(out.status.success(), "{}", describe(&out));
    assert_eq!(json_lines(&out)[0]["value"], "AP8K");
}

#[test]
fn put_reads_stdin_or_a_file_and_stores_the_bytes_exactly() {
    let agent = Agent::dev();
    let file = agent.path("key.pem");
    let bytes = b"-----BEGIN KEY-----\n\x00\x01\xfe\n-----END KEY-----\n";
    fs::write(&file, bytes).unwrap();
    let file = file.to_str().unwrap();

    let put = agent.psst(
        &["put", "local:tls/key", "--from-file", file],
        Some(b"ignored"),
    );
    assert!(put.status.success(), "{}", describe(&put));
    assert_eq!(stdout(&put), "local:tls/key?version=1\n");
    assert_eq!(agent.psst(&["get", "local:tls/key"], None).stdout, bytes);

    let put = agent.psst(&["put", "--json", "local:tls/key"], Some(b"v2"));
    let [written] = json_lines(&put).try_into().expect("one line");
    assert_eq!(written["reference"], "local:tls/key?version=2");
    assert_eq!(written["version_id"], "2");
    assert!(is_rfc3339(&written["created_at"]), "{written}");
    assert_eq!(agent.psst(&["get", "local:tls/key"], None).stdout, b"v2");

    let missing = agent.path("nothing.pem");
    let out = agent.psst(
        &[
            "put",
            "local:tls/key",
            "--from-file",
            missing.to_str().unwrap(),
        ],
        None,
    );
    assert_exit(
        &out,
        1,
        &format!("reading the value from {}", missing.display()),
    );
    assert_eq!(agent.psst(&["get", "local:tls/key"], None).stdout, b"v2");
}

#[test]
fn ls_whoami_and_health_in_text_and_json() {
    let agent = agent_with_secrets();
    let ls = agent.psst(&["ls", "local:demo/", "-l"], None);
    assert_eq!(
        stdout(&ls),
        "local:demo/bin\t1\nlocal:demo/db\t1\nlocal:demo/pw\t1\n"
    );
    let ls = agent.psst(&["ls", "--json", "local:demo/"], None);
    let lines = json_lines(&ls);
    let references: Vec<&str> = lines
        .iter()
        .map(|l| l["reference"].as_str().unwrap())
        .collect();
    assert_eq!(
        references,
        ["local:demo/bin", "local:demo/db", "local:demo/pw"]
    );
    assert!(lines
        .iter()
        .all(|l| l["version_id"] == "1" && is_rfc3339(&l["updated_at"])));

    let who = agent.psst(&["whoami", "--json"], None);
    let [who] = json_lines(&who).try_into().expect("one line");
    assert_eq!(who["caller"]["uid"], nix::unistd::getuid().as_raw());
    assert_eq!(who["caller"]["identity_source"], "process");
    assert_eq!(
        who["caller"]["executable"],
        psst_bin().to_str().unwrap(),
        "{who}"
    );
    assert!(who["grants"]
        .as_array()
        .unwrap()
        .contains(&json!({"operation": "read", "patterns": ["*:**"]})));

    let health = agent.psst(&["health", "--json"], None);
    assert!(health.status.success(), "{}", describe(&health));
    assert_eq!(json_lines(&health), [json!({"status": "SERVING"})]);
    let down = run_psst_at(&agent.path("nothing.sock"), &["health"]);
    assert_exit(&down, 6, "UNAVAILABLE: cannot connect to the psst agent");
}

#[test]
fn every_command_maps_failures_to_the_documented_exit_codes() {
    let agent = agent_with_secrets();
    let exec = |reference: &str| {
        vec![
            "exec".to_owned(),
            "--env".to_owned(),
            format!("X={reference}"),
            "--".to_owned(),
            "true".to_owned(),
        ]
    };
    let call = |reference: &str| {
        vec![
            "call".to_owned(),
            "GetSecret".to_owned(),
            format!("{{\"reference\": \"{reference}\"}}"),
        ]
    };
    let single = |command: &str, reference: &str| vec![command.to_owned(), reference.to_owned()];
    // (reference, exit code, what stderr says)
    let cases = [
        (
            "local:missing",
            4,
            "NOT_FOUND: secret local:missing not found",
        ),
        ("nobackend", 3, "INVALID_ARGUMENT: invalid reference"),
        (
            "vault:secret/prod/db",
            8,
            "FAILED_PRECONDITION: the vault backend is off in dev mode: set VAULT_ADDR",
        ),
    ];
    for (reference, code, says) in cases {
        for args in [
            single("get", reference),
            single("batch", reference),
            exec(reference),
            call(reference),
        ] {
            let args: Vec<&str> = args.iter().map(String::as_str).collect();
            let out = agent.psst(&args, None);
            assert_eq!(
                out.status.code(),
                Some(code),
                "{args:?}: {}",
                describe(&out)
            );
            assert!(stderr(&out).contains(says), "{args:?}: {}", describe(&out));
        }
    }

    // Denied: the policy grants the other user nothing.
    for args in [
        single("get", "local:demo/pw"),
        single("batch", "local:demo/pw"),
        single("ls", "local:"),
        exec("local:demo/pw"),
        call("local:demo/pw"),
    ] {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let out = agent.psst_as(DENIED_USER, &args);
        assert_exit(&out, 5, "PERMISSION_DENIED");
    }

    // Usage: clap's own code.
    for args in [
        &["get"][..],
        &["frobnicate"],
        &["exec", "--", "true"],
        &["put", "local:a", "value"],
    ] {
        let out = agent.psst(args, None);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {}", describe(&out));
    }
}

// === exec ===

#[test]
fn exec_puts_the_secrets_in_the_programs_environment() {
    let agent = agent_with_secrets();
    let out = agent
        .psst_command(&[
            "exec",
            "--env",
            "DB_PASSWORD=local:demo/pw",
            "--env",
            "DB_USER=local:demo/db#user",
            "--",
            "sh",
            "-c",
            "printf '%s|%s|%s' \"$DB_PASSWORD\" \"$DB_USER\" \"$INHERITED\"",
        ])
        .env("INHERITED", "from-psst")
        .env("DB_USER", "overridden")
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", describe(&out));
    assert_eq!(stdout(&out), "hunter2|app|from-psst");
}

#[test]
fn exec_reads_an_env_file_and_pristine_passes_only_the_secrets() {
    let agent = agent_with_secrets();
    let file = agent.path("app.secrets");
    fs::write(
        &file,
        "# the database\nDB_USER=local:demo/db#user\n\n  DB_PASSWORD = local:demo/db#password\nTOKEN=local:demo/missing\n",
    )
    .unwrap();
    let out = agent
        .psst_command(&[
            "exec",
            "--pristine",
            "--env-file",
            file.to_str().unwrap(),
            // The command line replaces the file's TOKEN, which does not exist.
            "--env",
            "TOKEN=local:demo/pw",
            "--",
            "env",
        ])
        .env("SHOULD_NOT_LEAK", "1")
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", describe(&out));
    let mut lines: Vec<String> = stdout(&out).lines().map(str::to_owned).collect();
    lines.sort();
    assert_eq!(lines, ["DB_PASSWORD=pa55", "DB_USER=app", "TOKEN=hunter2"]);

    fs::write(&file, "A=local:demo/pw\nnot a mapping\nA=local:demo/db\n").unwrap();
    let out = agent.psst(
        &["exec", "--env-file", file.to_str().unwrap(), "--", "true"],
        None,
    );
    assert_exit(
        &out,
        3,
        "line 2: 'not a mapping' is not NAME=REF; line 3: A is already set on line 1",
    );
}

#[test]
fn exec_exits_with_the_programs_code_and_128_plus_a_killing_signal() {
    let agent = agent_with_secrets();
    let env = ["exec", "--env", "A=local:demo/pw", "--"];
    let run = |tail: &[&str]| agent.psst(&[&env[..], tail].concat(), None);
    assert_eq!(run(&["sh", "-c", "exit 7"]).status.code(), Some(7));
    assert_eq!(run(&["sh", "-c", "exit 0"]).status.code(), Some(0));
    assert_eq!(
        run(&["sh", "-c", "kill -KILL $$"]).status.code(),
        Some(128 + 9)
    );
    let missing = run(&["no-such-program-psst-e2e"]);
    assert_exit(&missing, 127, "cannot run no-such-program-psst-e2e");
}

#[test]
fn exec_does_not_start_the_program_when_a_secret_cannot_be_read() {
    let agent = agent_with_secrets();
    let marker = agent.path("started");
    let touch = format!("touch {}", marker.display());
    let out = agent.psst(
        &[
            "exec",
            "--env",
            "A=local:demo/pw",
            "--env",
            "B=local:demo/missing",
            "--",
            "sh",
            "-c",
            &touch,
        ],
        None,
    );
    assert_exit(
        &out,
        4,
        "psst: not starting the program: B=local:demo/missing: NOT_FOUND: secret local:demo/missing not found",
    );
    assert!(!marker.exists(), "the program must not have started");

    let out = agent.psst(
        &[
            "exec",
            "--env",
            "A=local:demo/bin",
            "--",
            "sh",
            "-c",
            &touch,
        ],
        None,
    );
    assert_exit(
        &out,
        3,
        "A=local:demo/bin: INVALID_ARGUMENT: the value contains a NUL byte",
    );
    assert!(!marker.exists(), "the program must not have started");
}

#[test]
fn exec_forwards_termination_signals_to_the_program() {
    let agent = agent_with_secrets();
    for (signal, name) in [
        (Signal::SIGTERM, "TERM"),
        (Signal::SIGINT, "INT"),
        (Signal::SIGHUP, "HUP"),
        (Signal::SIGQUIT, "QUIT"),
    ] {
        let ready = agent.path(&format!("ready-{name}"));
        let marker = agent.path(&format!("got-{name}"));
        // The program records the signal (and that it had its secret) and exits 42.
        let script = format!(
            "trap 'echo \"$A\" > {marker}; exit 42' {name}; touch {ready}; while :; do sleep 0.05; done",
            marker = marker.display(),
            ready = ready.display()
        );
        let mut child = psst_with_signals(
            &agent,
            &["--default-signal=INT,QUIT,HUP,TERM"],
            &[
                "exec",
                "--env",
                "A=local:demo/pw",
                "--",
                "sh",
                "-c",
                &script,
            ],
        )
        .spawn()
        .unwrap();
        assert!(
            eventually(Duration::from_secs(10), || ready.exists()),
            "the program did not start"
        );
        kill(Pid::from_raw(child.id() as i32), signal).unwrap();
        let status = wait_timeout(&mut child, Duration::from_secs(10));
        assert_eq!(
            status.code(),
            Some(42),
            "{name}: psst exits with the program's code"
        );
        assert_eq!(fs::read_to_string(&marker).unwrap(), "hunter2\n", "{name}");
    }
}

#[test]
fn exec_leaves_a_signal_it_was_started_with_ignored_to_the_program_ignored() {
    let agent = agent_with_secrets();
    let ready = agent.path("ready");
    let hup = agent.path("got-hup");
    let script = format!(
        "trap 'touch {hup}' HUP; trap 'exit 42' TERM; touch {ready}; while :; do sleep 0.05; done",
        hup = hup.display(),
        ready = ready.display()
    );
    // As under nohup: SIGHUP ignored from the start.
    let mut child = psst_with_signals(
        &agent,
        &["--ignore-signal=HUP", "--default-signal=TERM"],
        &[
            "exec",
            "--env",
            "A=local:demo/pw",
            "--",
            "sh",
            "-c",
            &script,
        ],
    )
    .spawn()
    .unwrap();
    assert!(
        eventually(Duration::from_secs(10), || ready.exists()),
        "the program did not start"
    );
    let pid = Pid::from_raw(child.id() as i32);
    kill(pid, Signal::SIGHUP).unwrap();
    std::thread::sleep(Duration::from_millis(300));
    assert!(
        child.try_wait().unwrap().is_none(),
        "SIGHUP must not end psst"
    );
    kill(pid, Signal::SIGTERM).unwrap();
    let status = wait_timeout(&mut child, Duration::from_secs(10));
    assert_eq!(status.code(), Some(42));
    assert!(!hup.exists(), "the program must not have been sent SIGHUP");
}

/// `psst ARGS` started by env(1) with these signal dispositions, so a test does not depend on
/// the ones its runner was started with.
fn psst_with_signals(agent: &Agent, dispositions: &[&str], args: &[&str]) -> Command {
    let mut command = Command::new("env");
    command
        .args(dispositions)
        .arg(psst_bin())
        .args(args)
        .env("PSST_SOCKET", &agent.socket)
        .stdin(Stdio::null());
    command
}

fn wait_timeout(child: &mut std::process::Child, timeout: Duration) -> std::process::ExitStatus {
    let mut status = None;
    let done = eventually(timeout, || {
        status = child.try_wait().unwrap();
        status.is_some()
    });
    if !done {
        let _ = child.kill();
        panic!("psst did not exit in time");
    }
    status.unwrap()
}

// === call ===

#[test]
fn call_sends_json_and_prints_the_response_as_json() {
    let agent = agent_with_secrets();
    for method in [
        "psst.v1.Secrets/GetSecret",
        "Secrets/GetSecret",
        "GetSecret",
    ] {
        let out = agent.psst(&["call", method, r#"{"reference": "local:demo/pw"}"#], None);
        assert!(out.status.success(), "{method}: {}", describe(&out));
        let [response] = json_lines(&out).try_into().expect("one line");
        assert_eq!(response["reference"], "local:demo/pw");
        assert_eq!(response["versionId"], "1");
        let value = base64::engine::general_purpose::STANDARD
            .decode(response["value"].as_str().unwrap())
            .unwrap();
        assert_eq!(value, b"hunter2", "bytes are base64 in proto3 JSON");
    }

    // A request from stdin, and a write that lands.
    let out = agent.psst(
        &["call", "PutSecret", "-"],
        Some(br#"{"reference": "local:demo/new", "value": "c2VjcmV0"}"#),
    );
    assert!(out.status.success(), "{}", describe(&out));
    assert_eq!(json_lines(&out)[0]["reference"], "local:demo/new?version=1");
    assert_eq!(
        agent.psst(&["get", "local:demo/new"], None).stdout,
        b"secret"
    );

    // No request: an empty message.
    let out = agent.psst(&["call", "psst.v1.Secrets/WhoAmI"], None);
    assert!(out.status.success(), "{}", describe(&out));
    assert_eq!(json_lines(&out)[0]["caller"]["identitySource"], "process");
}

#[test]
fn call_refuses_bad_json_and_unknown_fields_before_sending_anything() {
    let agent = agent_with_secrets();
    let cases = [
        (
            r#"{"reference": "local:demo/new", "value": "c2VjcmV0", "colour": 1}"#,
            "the request is not a valid psst.v1.PutSecretRequest: unrecognized field name 'colour'",
        ),
        (
            r#"{"reference": "local:demo/new", "value": "c2VjcmV0""#,
            "the request is not valid JSON: EOF while parsing an object",
        ),
        (
            r#"{"reference": "local:demo/new", "value": 12}"#,
            "the request is not a valid psst.v1.PutSecretRequest",
        ),
    ];
    for (request, says) in cases {
        let out = agent.psst(&["call", "PutSecret", request], None);
        assert_exit(&out, 3, says);
        assert!(out.stdout.is_empty(), "{}", describe(&out));
        assert!(
            !String::from_utf8_lossy(&out.stderr).contains("`12`"),
            "the value is not quoted back: {}",
            describe(&out)
        );
    }
    let get = agent.psst(&["get", "local:demo/new"], None);
    assert_eq!(
        get.status.code(),
        Some(4),
        "nothing was written: {}",
        describe(&get)
    );

    let out = agent.psst(&["call", "NoSuchMethod"], None);
    assert_exit(
        &out,
        4,
        "no service of the agent has a method 'NoSuchMethod'",
    );
    let out = agent.psst(&["call", "psst.v1.Secrets/Nope"], None);
    assert_exit(&out, 4, "psst.v1.Secrets has no method 'Nope'");
    let out = agent.psst(&["call", "a/b/c"], None);
    assert_exit(&out, 3, "'a/b/c' is not a method name");
}

#[test]
fn call_follows_a_server_stream_line_by_line() {
    let agent = agent_with_secrets();
    let mut child = agent
        .psst_command(&["call", "grpc.health.v1.Health/Watch", "{}"])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let out = child.stdout.take().unwrap();
    let (lines_tx, lines_rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(out).lines() {
            if lines_tx.send(line).is_err() {
                return;
            }
        }
    });
    // Watch never ends by itself: the first message must arrive while the stream stays open.
    let first = lines_rx.recv_timeout(Duration::from_secs(10));
    let still_running = child.try_wait().unwrap().is_none();
    child.kill().unwrap();
    child.wait().unwrap();
    let first = first.expect("a first message within 10s").unwrap();
    assert_eq!(
        serde_json::from_str::<Value>(&first).unwrap(),
        json!({"status": "SERVING"})
    );
    assert!(
        still_running,
        "the stream stays open after the first message"
    );
}

#[test]
fn call_lists_and_describes_what_the_agent_serves() {
    let agent = Agent::dev();
    let out = agent.psst(&["call", "--list"], None);
    assert!(out.status.success(), "{}", describe(&out));
    assert_eq!(
        stdout(&out),
        "grpc.health.v1.Health\ngrpc.reflection.v1.ServerReflection\npsst.v1.Admin\npsst.v1.Secrets\n"
    );

    let out = agent.psst(&["call", "--list", "psst.v1.Secrets"], None);
    assert_eq!(
        stdout(&out),
        "psst.v1.Secrets/GetSecret\npsst.v1.Secrets/BatchGetSecrets\npsst.v1.Secrets/ListSecrets\n\
         psst.v1.Secrets/PutSecret\npsst.v1.Secrets/WhoAmI\npsst.v1.Secrets/WatchSecrets\n\
         psst.v1.Secrets/RotateSecret\npsst.v1.Secrets/GeneratePassword\n"
    );
    let out = agent.psst(&["call", "--list", "Health"], None);
    assert_eq!(
        stdout(&out),
        "grpc.health.v1.Health/Check\ngrpc.health.v1.Health/Watch\n"
    );

    let out = agent.psst(&["call", "--describe", "psst.v1.Secrets"], None);
    assert!(out.status.success(), "{}", describe(&out));
    let text = stdout(&out);
    assert!(text.contains("service Secrets {\n"), "{text}");
    assert!(
        text.contains("  rpc GetSecret(psst.v1.GetSecretRequest) returns (psst.v1.Secret);\n"),
        "{text}"
    );
    let out = agent.psst(&["call", "--describe", "grpc.health.v1.Health/Watch"], None);
    assert!(
        stdout(&out).contains(
            "rpc Watch(grpc.health.v1.HealthCheckRequest) returns (stream grpc.health.v1.HealthCheckResponse);"
        ),
        "{}",
        describe(&out)
    );
    let out = agent.psst(&["call", "--describe", "psst.v1.Secret"], None);
    assert!(
        stdout(&out).contains("  bytes value = 2;\n"),
        "{}",
        describe(&out)
    );

    let out = agent.psst(&["call", "--describe", "psst.v1.Nothing"], None);
    assert_exit(&out, 4, "knows no symbol 'psst.v1.Nothing'");
}

// === help, completions, man ===

#[test]
fn help_documents_exit_codes_and_every_command_has_examples() {
    let out = run_psst_at(std::path::Path::new("/nonexistent"), &["--help"]);
    let help = stdout(&out);
    for line in [
        "Exit codes:",
        "0  ok",
        "2  usage",
        "3  invalid argument",
        "4  not found",
        "5  permission denied",
        "6  unavailable",
        "7  unauthenticated",
        "8  failed precondition",
    ] {
        assert!(help.contains(line), "{line:?} missing from:\n{help}");
    }
    for command in [
        "get",
        "batch",
        "ls",
        "put",
        "whoami",
        "health",
        "exec",
        "call",
        "completions",
        "man",
    ] {
        let out = run_psst_at(std::path::Path::new("/nonexistent"), &[command, "--help"]);
        assert!(out.status.success(), "{command}: {}", describe(&out));
        assert!(
            stdout(&out).contains("Examples:\n  "),
            "{command}: {}",
            describe(&out)
        );
    }
}

#[test]
fn completions_are_valid_scripts_and_the_man_page_renders() {
    let nowhere = std::path::Path::new("/nonexistent");
    let dir = tempfile::tempdir().unwrap();
    let bash = run_psst_at(nowhere, &["completions", "bash"]);
    assert!(bash.status.success(), "{}", describe(&bash));
    let script = dir.path().join("psst.bash");
    fs::write(&script, &bash.stdout).unwrap();
    let check = std::process::Command::new("bash")
        .arg("-n")
        .arg(&script)
        .output()
        .unwrap();
    assert!(check.status.success(), "bash -n: {}", describe(&check));
    let bash = stdout(&bash);
    assert!(bash.contains("complete -F _psst"), "{bash}");
    for command in ["exec", "call", "batch", "completions"] {
        assert!(bash.contains(command), "{command} missing");
    }
    let zsh = stdout(&run_psst_at(nowhere, &["completions", "zsh"]));
    assert!(zsh.starts_with("#compdef psst"), "{zsh}");
    let fish = stdout(&run_psst_at(nowhere, &["completions", "fish"]));
    assert!(fish.contains("complete -c psst"), "{fish}");

    let man = run_psst_at(nowhere, &["man"]);
    assert!(man.status.success(), "{}", describe(&man));
    let page = stdout(&man);
    assert!(page.contains(".TH psst 1"), "{page}");
    assert!(page.contains("Exit codes:"), "{page}");
    let pages = dir.path().join("man1");
    let out = run_psst_at(nowhere, &["man", "--dir", pages.to_str().unwrap()]);
    assert!(out.status.success(), "{}", describe(&out));
    for page in ["psst.1", "psst-exec.1", "psst-call.1", "psst-get.1"] {
        let text = fs::read_to_string(pages.join(page)).unwrap_or_default();
        assert!(text.contains(".TH"), "{page} missing or empty");
    }
}

#[test]
fn watch_rotate_and_gen_from_the_shell() {
    use std::io::BufRead;
    let agent = Agent::dev();
    assert!(agent
        .psst(&["put", "local:rot/x"], Some(b"first"))
        .status
        .success());
    let mut watch = std::process::Command::new(psst_bin())
        .args(["watch", "--with-values", "local:rot/x"])
        .env("PSST_SOCKET", &agent.socket)
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let (lines_tx, lines) = std::sync::mpsc::channel();
    let stdout_pipe = watch.stdout.take().unwrap();
    std::thread::spawn(move || {
        for line in std::io::BufReader::new(stdout_pipe).lines() {
            if lines_tx.send(line.unwrap()).is_err() {
                break;
            }
        }
    });
    // Dev mode polls every 2 s (jittered): a rotation shows up well within 10 s.
    let next = || -> Value {
        serde_json::from_str(
            &lines
                .recv_timeout(std::time::Duration::from_secs(10))
                .expect("an event"),
        )
        .unwrap()
    };
    let current = next();
    assert_eq!(
        (current["kind"].as_str(), current["version_id"].as_str()),
        (Some("CURRENT"), Some("1"))
    );
    assert_eq!(current["secret"]["value"], "first");

    let rotated = agent.psst(
        &[
            "rotate",
            "local:rot/x",
            "--length",
            "12",
            "--exclude-punctuation",
        ],
        None,
    );
    assert!(rotated.status.success(), "{}", describe(&rotated));
    assert_eq!(stdout(&rotated), "local:rot/x?version=2\n");
    let event = next();
    assert_eq!(event["kind"], "NEW_VERSION");
    assert_eq!(
        (
            event["version_id"].as_str(),
            event["previous_version_id"].as_str()
        ),
        (Some("2"), Some("1"))
    );
    let value = event["secret"]["value"].as_str().unwrap().to_owned();
    assert_eq!(value.len(), 12);
    assert!(value.chars().all(|c| c.is_ascii_alphanumeric()), "{value}");
    assert_eq!(
        agent.psst(&["get", "local:rot/x"], None).stdout,
        value.as_bytes()
    );
    let _ = watch.kill();
    let _ = watch.wait();

    let generated = agent.psst(
        &[
            "gen",
            "--length",
            "20",
            "--exclude-lowercase",
            "--exclude-uppercase",
            "--exclude-punctuation",
        ],
        None,
    );
    let text = stdout(&generated);
    assert_eq!(text.trim_end().len(), 20, "{text}");
    assert!(
        text.trim_end().chars().all(|c| c.is_ascii_digit()),
        "{text}"
    );
    let impossible = agent.psst(&["gen", "--length", "2"], None);
    assert_eq!(
        impossible.status.code(),
        Some(3),
        "{}",
        describe(&impossible)
    );
    let missing = agent.psst(&["watch", "local:rot/none"], None);
    assert_eq!(missing.status.code(), Some(4), "{}", describe(&missing));
}

#[test]
fn exec_restarts_the_program_when_a_secret_rotates() {
    let agent = Agent::dev();
    assert!(agent
        .psst(&["put", "local:svc/token"], Some(b"token-v1"))
        .status
        .success());
    let log = agent.path("seen.log");
    let script = format!(
        "echo \"$TOKEN\" >> {}; trap 'exit 0' TERM; while :; do sleep 0.1; done",
        log.display()
    );
    let mut exec = std::process::Command::new(psst_bin())
        .args([
            "exec",
            "--restart-on-rotate",
            "--restart-grace",
            "2s",
            "--env",
            "TOKEN=local:svc/token",
            "--",
            "sh",
            "-c",
            &script,
        ])
        .env("PSST_SOCKET", &agent.socket)
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let seen = || std::fs::read_to_string(&log).unwrap_or_default();
    assert!(
        eventually(std::time::Duration::from_secs(10), || seen()
            == "token-v1\n"),
        "{}",
        seen()
    );
    assert!(agent
        .psst(&["put", "local:svc/token"], Some(b"token-v2"))
        .status
        .success());
    // Dev mode polls every 2 s: the program is started again with the new value.
    assert!(
        eventually(std::time::Duration::from_secs(15), || seen()
            == "token-v1\ntoken-v2\n"),
        "{}",
        seen()
    );
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(exec.id() as i32),
        nix::sys::signal::Signal::SIGTERM,
    )
    .unwrap();
    let status = exec.wait().unwrap();
    assert_eq!(
        status.code(),
        Some(0),
        "the program's own exit code after the forwarded SIGTERM"
    );
    assert_eq!(seen(), "token-v1\ntoken-v2\n", "started exactly twice");
}

#[test]
fn put_refuses_a_terminal_so_the_value_is_not_echoed() {
    let agent = agent_with_secrets();
    // `script` gives psst a pseudo-terminal as stdin, as an interactive shell would.
    let out = std::process::Command::new("script")
        .args(["-qec"])
        .arg(format!(
            "PSST_SOCKET={} {} put local:demo/typed",
            agent.socket.display(),
            psst_tests::psst_bin().display()
        ))
        .arg("/dev/null")
        .stdin(std::process::Stdio::null())
        .output()
        .expect("script(1) from util-linux");
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(3), "{}", describe(&out));
    assert!(text.contains("stdin, which is a terminal"), "{text}");
    let missing = agent.psst(&["get", "local:demo/typed"], None);
    assert_eq!(missing.status.code(), Some(4), "nothing was written");
}
