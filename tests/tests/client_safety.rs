//! End to end: the client checks who serves the socket before sending anything (SO_PEERCRED
//! against the expected uid: `--expect-uid`, `$PSST_EXPECTED_UID`, else the socket file's owner).
//!
//! The impostor is a plain Unix-socket server (Python) run by an unprivileged user created with
//! `useradd` for the test (run with `runuser`, removed afterwards); it counts the bytes it
//! receives, so a test sees whether anything reached it. Runs as root, like the other suites.

use std::{
    fs,
    os::unix::{fs::PermissionsExt, process::CommandExt},
    path::{Path, PathBuf},
    process::{Child, Command, Output, Stdio},
    time::Duration,
};

use nix::{
    sys::signal::{killpg, Signal},
    unistd::Pid,
};
use psst_tests::{describe, eventually, psst_bin, Agent};

const IMPOSTOR: &str = "psst-impostor";

/// Accepts connections on a Unix socket, reads until the client closes, and writes the total
/// number of bytes received so far to a file after each connection.
const FAKE_SERVER: &str = r#"
import socket, sys
path, out = sys.argv[1], sys.argv[2]
server = socket.socket(socket.AF_UNIX)
server.bind(path)
server.listen(8)
total = 0
while True:
    conn, _ = server.accept()
    conn.settimeout(2.0)
    try:
        while True:
            data = conn.recv(65536)
            if not data:
                break
            total += len(data)
    except socket.timeout:
        pass
    conn.close()
    with open(out + ".tmp", "w") as f:
        f.write(str(total))
    import os
    os.rename(out + ".tmp", out)
"#;

/// The impostor's server, killed (with its whole process group) on drop, and its user removed.
struct Impostor {
    child: Child,
    socket: PathBuf,
    received: PathBuf,
    uid: u32,
    _dir: tempfile::TempDir,
}

impl Impostor {
    fn start() -> Self {
        let uid = psst_tests::uid_of(IMPOSTOR);
        let dir = tempfile::Builder::new()
            .prefix("psst-impostor-")
            .tempdir()
            .unwrap();
        fs::set_permissions(dir.path(), fs::Permissions::from_mode(0o755)).unwrap();
        let own = dir.path().join("srv");
        fs::create_dir(&own).unwrap();
        nix::unistd::chown(&own, Some(nix::unistd::Uid::from_raw(uid)), None).unwrap();
        let socket = own.join("psst.sock");
        let received = own.join("received");
        let child = Command::new("runuser")
            .args(["-u", IMPOSTOR, "--", "python3", "-c", FAKE_SERVER])
            .arg(&socket)
            .arg(&received)
            .stdin(Stdio::null())
            .process_group(0)
            .spawn()
            .expect("runuser");
        assert!(
            eventually(Duration::from_secs(10), || socket.exists()),
            "the impostor did not listen"
        );
        Impostor {
            child,
            socket,
            received,
            uid,
            _dir: dir,
        }
    }

    /// Bytes received over every connection so far; waits for the first connection to end.
    fn received(&self) -> usize {
        assert!(
            eventually(Duration::from_secs(10), || self.received.exists()),
            "no connection reached the impostor"
        );
        fs::read_to_string(&self.received).unwrap().parse().unwrap()
    }
}

impl Drop for Impostor {
    fn drop(&mut self) {
        let _ = killpg(Pid::from_raw(self.child.id() as i32), Signal::SIGKILL);
        let _ = self.child.wait();
        let _ = Command::new("userdel").arg(IMPOSTOR).status();
    }
}

fn psst_at(socket: &Path, args: &[&str], env: &[(&str, &str)], stdin: &[u8]) -> Output {
    let mut child = Command::new("timeout")
        .arg("20")
        .arg(psst_bin())
        .args(args)
        .env("PSST_SOCKET", socket)
        .env_remove("PSST_EXPECTED_UID")
        .envs(env.iter().copied())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    std::io::Write::write_all(&mut child.stdin.take().unwrap(), stdin).unwrap();
    child.wait_with_output().unwrap()
}

fn assert_refused(out: &Output, impostor: &Impostor) {
    assert_eq!(out.status.code(), Some(7), "{}", describe(out));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("refusing to talk to the server")
            && stderr.contains(&format!("runs as uid {}", impostor.uid)),
        "{stderr}"
    );
    assert!(!stderr.contains("hunter2"), "{stderr}");
}

#[test]
fn put_sends_nothing_to_a_server_run_by_another_user() {
    let impostor = Impostor::start();
    let put = ["put", "local:app/db-password"];

    // The expected uid given on the command line.
    let out = psst_at(
        &impostor.socket,
        &[&put[..], &["--expect-uid", "0"]].concat(),
        &[],
        b"hunter2",
    );
    assert_refused(&out, &impostor);
    assert_eq!(impostor.received(), 0, "not a byte reached the impostor");

    // ... or in the environment.
    let out = psst_at(
        &impostor.socket,
        &put,
        &[("PSST_EXPECTED_UID", "0")],
        b"hunter2",
    );
    assert_refused(&out, &impostor);
    assert_eq!(impostor.received(), 0);

    // By default, the socket file's owner: root owns the socket (as the agent's is), another
    // user serves it.
    nix::unistd::chown(&impostor.socket, Some(nix::unistd::Uid::from_raw(0)), None).unwrap();
    let out = psst_at(&impostor.socket, &put, &[], b"hunter2");
    assert_refused(&out, &impostor);
    assert_eq!(impostor.received(), 0);

    // The control: expecting the impostor's own uid, the client does talk to it (health sends
    // no value), so it is the check above that kept the value from it.
    let uid = impostor.uid.to_string();
    let _ = psst_at(
        &impostor.socket,
        &["health", "--expect-uid", &uid],
        &[],
        b"",
    );
    assert!(
        impostor.received() > 0,
        "the check passed, so the client spoke"
    );
}

#[test]
fn the_real_agent_passes_the_check_and_a_wrong_expectation_fails_it() {
    let agent = Agent::dev();
    let out = agent.psst(&["put", "local:demo/a"], Some(b"v"));
    assert!(
        out.status.success(),
        "default (socket owner): {}",
        describe(&out)
    );
    let out = agent.psst(&["put", "local:demo/a", "--expect-uid", "0"], Some(b"v"));
    assert!(out.status.success(), "{}", describe(&out));
    let out = agent.psst(&["get", "local:demo/a", "--expect-uid", "4242"], None);
    assert_eq!(out.status.code(), Some(7), "{}", describe(&out));
    assert!(String::from_utf8_lossy(&out.stderr).contains("must run as uid 4242"));
    let out = agent.psst(&["get", "local:demo/a"], None);
    assert_eq!(out.stdout, b"v");
    let bad = Command::new(psst_bin())
        .args(["get", "local:demo/a"])
        .env("PSST_SOCKET", &agent.socket)
        .env("PSST_EXPECTED_UID", "root")
        .output()
        .unwrap();
    assert_eq!(
        bad.status.code(),
        Some(2),
        "not a number: {}",
        describe(&bad)
    );
}
