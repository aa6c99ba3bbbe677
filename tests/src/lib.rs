//! The end-to-end harness: starts the real `psstd` binary on a temp-dir socket, runs the real
//! `psst` CLI against it (as this user or another one), and reads what the agent logged.
//!
//! The binaries come from the same `target/` directory as the test executable, so build them
//! first: `cargo build --workspace --bins` (the README's test command does).

use std::{
    fs,
    io::Write,
    os::unix::fs::PermissionsExt,
    path::{Path, PathBuf},
    process::{Child, Command, ExitStatus, Output, Stdio},
    sync::Mutex,
    time::{Duration, Instant},
};

use nix::{
    sys::signal::{kill, Signal},
    unistd::Pid,
};

pub mod aws;
pub mod openbao;

/// AWS settings the agent could pick up from the test's environment; each test gives its own.
const AWS_ENV_VARS: [&str; 12] = [
    "AWS_ACCESS_KEY_ID",
    "AWS_SECRET_ACCESS_KEY",
    "AWS_SESSION_TOKEN",
    "AWS_PROFILE",
    "AWS_REGION",
    "AWS_DEFAULT_REGION",
    "AWS_ENDPOINT_URL",
    "AWS_CONFIG_FILE",
    "AWS_SHARED_CREDENTIALS_FILE",
    "AWS_WEB_IDENTITY_TOKEN_FILE",
    "AWS_CONTAINER_CREDENTIALS_FULL_URI",
    "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI",
];

/// Vault / OpenBao settings the agent could pick up from the test's environment.
const VAULT_ENV_VARS: [&str; 8] = [
    "VAULT_ADDR",
    "VAULT_TOKEN",
    "VAULT_CACERT",
    "VAULT_NAMESPACE",
    "BAO_ADDR",
    "BAO_TOKEN",
    "BAO_CACERT",
    "BAO_NAMESPACE",
];

/// How long an agent may take to start listening.
pub const START_TIMEOUT: Duration = Duration::from_secs(15);

/// The directory holding the workspace's binaries (`target/debug` or `target/release`).
pub fn bin_dir() -> PathBuf {
    let exe = std::env::current_exe().expect("current exe");
    // target/<profile>/deps/<test binary>
    let dir = exe
        .parent()
        .and_then(Path::parent)
        .expect("target/<profile>")
        .to_owned();
    for bin in ["psstd", "psst"] {
        assert!(
            dir.join(bin).exists(),
            "{} is missing: run `cargo build --workspace --bins` before the end-to-end tests",
            dir.join(bin).display()
        );
    }
    dir
}

pub fn psstd_bin() -> PathBuf {
    bin_dir().join("psstd")
}

pub fn psst_bin() -> PathBuf {
    bin_dir().join("psst")
}

/// A running `psstd` in its own temporary directory. Stopped (SIGTERM, then SIGKILL) on drop.
pub struct Agent {
    pub dir: tempfile::TempDir,
    pub socket: PathBuf,
    child: Option<Child>,
    log: PathBuf,
    // How it was started, to start it again (restart tests).
    args: Vec<std::ffi::OsString>,
    env: Vec<(String, String)>,
}

/// How to start an agent.
pub enum Mode<'a> {
    /// `psstd --dev` with `PSST_STATE_DIR` in the temp dir.
    Dev,
    /// `psstd --config` with this config body; `{dir}` in it is replaced by the temp dir, and
    /// the policy text is written to `{dir}/policy.toml`.
    Config { config: &'a str, policy: &'a str },
}

impl Agent {
    pub fn dev() -> Self {
        Self::start(Mode::Dev, &[])
    }

    /// A config with a local store, a policy file, and the socket, all in the temp dir.
    pub fn with_policy(policy: &str, extra_config: &str) -> Self {
        let config = format!(
            "{extra_config}\n[policy]\nfile = \"{{dir}}/policy.toml\"\nwatch_interval = \"200ms\"\n\n[[backend]]\ntype = \"local\"\ndir = \"{{dir}}/store\"\n"
        );
        Self::start(
            Mode::Config {
                config: &config,
                policy,
            },
            &[],
        )
    }

    pub fn start(mode: Mode<'_>, env: &[(&str, &str)]) -> Self {
        let dir = tempfile::Builder::new()
            .prefix("psst-e2e-")
            .tempdir()
            .expect("temp dir");
        // Other users (the denied-uid tests) must reach the socket inside.
        fs::set_permissions(dir.path(), fs::Permissions::from_mode(0o755)).unwrap();
        let log = dir.path().join("agent.log");
        let mut command = Command::new(psstd_bin());
        let socket = match mode {
            Mode::Dev => {
                command
                    .arg("--dev")
                    .env("PSST_STATE_DIR", dir.path().join("state"));
                dir.path().join("state/psst.sock")
            }
            Mode::Config { config, policy } => {
                let dir_text = dir.path().to_str().unwrap();
                let mut config = config.replace("{dir}", dir_text);
                if !config.contains("[server]") {
                    config = format!("[server]\nsocket = \"{dir_text}/psst.sock\"\n{config}");
                }
                fs::write(dir.path().join("psstd.toml"), config).unwrap();
                fs::write(dir.path().join("policy.toml"), policy).unwrap();
                command.arg("--config").arg(dir.path().join("psstd.toml"));
                dir.path().join("psst.sock")
            }
        };
        let args: Vec<std::ffi::OsString> = command.get_args().map(|a| a.to_owned()).collect();
        let mut agent_env: Vec<(String, String)> = command
            .get_envs()
            .filter_map(|(k, v)| Some((k.to_str()?.to_owned(), v?.to_str()?.to_owned())))
            .collect();
        agent_env.extend(env.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())));
        let mut agent = Agent {
            dir,
            socket,
            child: None,
            log,
            args,
            env: agent_env,
        };
        agent.spawn();
        agent
    }

    fn spawn(&mut self) {
        let mut command = Command::new(psstd_bin());
        command.args(&self.args);
        let log_file = fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)
            .unwrap();
        command.env_remove("PSST_LOG");
        for var in AWS_ENV_VARS.iter().chain(&VAULT_ENV_VARS) {
            command.env_remove(var);
        }
        // No shared config files or instance metadata unless a test asks.
        command
            .env("AWS_CONFIG_FILE", "/nonexistent/psst-test-aws-config")
            .env(
                "AWS_SHARED_CREDENTIALS_FILE",
                "/nonexistent/psst-test-aws-credentials",
            )
            .env("AWS_EC2_METADATA_DISABLED", "true")
            .envs(self.env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
            .stdin(Stdio::null())
            .stdout(log_file.try_clone().unwrap())
            .stderr(log_file);
        self.child = Some(command.spawn().expect("spawn psstd"));
        self.wait_ready();
    }

    /// Stops the agent (SIGTERM) and starts it again with the same config, state and socket.
    pub fn restart(&mut self) {
        let status = self.stop();
        assert!(status.success(), "{status}");
        self.spawn();
    }

    /// Stops the agent, leaves it down for `down`, and starts it again with the same config,
    /// state and socket: longer than a client's own reconnect window, for clients that must
    /// never give up.
    pub fn restart_after(&mut self, down: Duration) {
        let status = self.stop();
        assert!(status.success(), "{status}");
        std::thread::sleep(down);
        self.spawn();
    }

    /// Kills the agent with SIGKILL (no clean-up of any kind, as the OOM killer would) and
    /// waits until it is gone; `start_again` brings it back.
    pub fn kill(&mut self) {
        self.signal(Signal::SIGKILL);
        let status = self
            .wait_exit(Duration::from_secs(20))
            .expect("psstd dies on SIGKILL");
        assert!(!status.success(), "{status}");
    }

    /// Starts the agent again after `kill` or `stop`, with the same config, state and socket.
    pub fn start_again(&mut self) {
        assert!(self.child.is_none(), "the agent is still running");
        self.spawn();
    }

    fn wait_ready(&mut self) {
        let deadline = Instant::now() + START_TIMEOUT;
        while Instant::now() < deadline {
            if let Some(status) = self.child.as_mut().unwrap().try_wait().unwrap() {
                panic!("psstd exited at start ({status}):\n{}", self.logs());
            }
            if std::os::unix::net::UnixStream::connect(&self.socket).is_ok() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        panic!(
            "psstd did not listen on {} in time:\n{}",
            self.socket.display(),
            self.logs()
        );
    }

    /// The agent's resident memory (VmRSS), in KiB.
    pub fn rss_kib(&self) -> u64 {
        self.status_kib("VmRSS:")
    }

    /// A figure in KiB from the agent's `/proc/PID/status` (`VmRSS:`, `VmHWM:`, ...).
    pub fn status_kib(&self, key: &str) -> u64 {
        let status = fs::read_to_string(format!("/proc/{}/status", self.pid())).unwrap();
        status
            .lines()
            .find_map(|l| l.strip_prefix(key))
            .and_then(|v| v.split_whitespace().next())
            .and_then(|v| v.parse().ok())
            .unwrap_or_else(|| panic!("{key} in /proc/PID/status"))
    }

    pub fn pid(&self) -> Pid {
        Pid::from_raw(self.child.as_ref().expect("running").id() as i32)
    }

    pub fn signal(&self, signal: Signal) {
        kill(self.pid(), signal).expect("signal psstd");
    }

    /// Everything the agent wrote to stdout and stderr so far.
    pub fn logs(&self) -> String {
        fs::read_to_string(&self.log).unwrap_or_default()
    }

    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// Waits for the agent to exit, up to `timeout`.
    pub fn wait_exit(&mut self, timeout: Duration) -> Option<ExitStatus> {
        let deadline = Instant::now() + timeout;
        let child = self.child.as_mut().expect("running");
        while Instant::now() < deadline {
            if let Some(status) = child.try_wait().unwrap() {
                self.child = None;
                return Some(status);
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        None
    }

    /// Stops the agent with SIGTERM and returns its exit status.
    pub fn stop(&mut self) -> ExitStatus {
        self.signal(Signal::SIGTERM);
        self.wait_exit(Duration::from_secs(20))
            .expect("psstd exits on SIGTERM")
    }

    /// A client connected to this agent.
    pub async fn client(&self) -> psst_client::Client {
        psst_client::Client::connect(&self.socket)
            .await
            .expect("connect")
    }

    /// Runs `psst ARGS` against this agent as the current user.
    pub fn psst(&self, args: &[&str], stdin: Option<&[u8]>) -> Output {
        run(
            Command::new(psst_bin())
                .args(args)
                .env("PSST_SOCKET", &self.socket),
            stdin,
        )
    }

    /// `psst ARGS` against this agent, to be run by the caller: for a `psst` that must be
    /// signalled or read from while it runs (`exec`, streaming `call`).
    pub fn psst_command(&self, args: &[&str]) -> Command {
        let mut command = Command::new(psst_bin());
        command.args(args).env("PSST_SOCKET", &self.socket);
        command
    }

    /// Runs `psst ARGS` against this agent as another user (created if missing).
    pub fn psst_as(&self, user: &str, args: &[&str]) -> Output {
        ensure_user(user);
        run(
            Command::new("runuser")
                .args(["-u", user, "--"])
                .arg(psst_bin())
                .args(args)
                .env("PSST_SOCKET", &self.socket),
            None,
        )
    }
}

impl Drop for Agent {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = kill(Pid::from_raw(child.id() as i32), Signal::SIGTERM);
            let deadline = Instant::now() + Duration::from_secs(5);
            while Instant::now() < deadline {
                if child.try_wait().ok().flatten().is_some() {
                    return;
                }
                std::thread::sleep(Duration::from_millis(10));
            }
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// Runs `psst ARGS` against whatever listens (or not) at `socket`.
pub fn run_psst_at(socket: &Path, args: &[&str]) -> Output {
    run(
        Command::new(psst_bin())
            .args(args)
            .env("PSST_SOCKET", socket),
        None,
    )
}

fn run(command: &mut Command, stdin: Option<&[u8]>) -> Output {
    let mut child = command
        .stdin(if stdin.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn");
    if let Some(input) = stdin {
        child.stdin.take().unwrap().write_all(input).unwrap();
    }
    child.wait_with_output().unwrap()
}

/// The users this test process created, removed when it exits.
static USERS: Mutex<Vec<String>> = Mutex::new(Vec::new());

extern "C" fn remove_created_users() {
    let users = USERS.lock().unwrap_or_else(|p| p.into_inner());
    for name in users.iter() {
        // Their processes are gone: every test waits for what it started. A `TempUser` may
        // have removed it already.
        if nix::unistd::User::from_name(name).ok().flatten().is_some() {
            let _ = Command::new("userdel").arg(name).status();
        }
    }
}

/// Creates a system user for the denied-caller tests (as in CI, the tests run as root). A user
/// this process creates is removed when the process exits, so the suites leave none behind.
pub fn ensure_user(name: &str) {
    let mut created = USERS.lock().unwrap_or_else(|p| p.into_inner());
    if nix::unistd::User::from_name(name).ok().flatten().is_some() {
        return;
    }
    if created.is_empty() {
        // SAFETY: registers a plain function with the C library, to run at `exit`, which the
        // test harness calls once every test has finished.
        unsafe { libc::atexit(remove_created_users) };
    }
    let status = Command::new("useradd")
        .args([
            "--system",
            "--no-create-home",
            "--shell",
            "/usr/sbin/nologin",
            name,
        ])
        .status()
        .expect("useradd (the end-to-end tests run as root)");
    // 9: the user exists (another test process created it meanwhile).
    assert!(
        status.success() || status.code() == Some(9),
        "useradd {name}: {status}"
    );
    if status.success() && !created.iter().any(|u| u == name) {
        created.push(name.to_owned());
    }
}

/// A user that exists while any `TempUser` of its name is alive in this test process, then is
/// removed (`userdel`), so the suites leave no users behind.
pub struct TempUser {
    name: String,
}

static TEMP_USERS: Mutex<Vec<String>> = Mutex::new(Vec::new());

impl TempUser {
    pub fn new(name: &str) -> Self {
        ensure_user(name);
        TEMP_USERS
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(name.to_owned());
        Self {
            name: name.to_owned(),
        }
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    pub fn uid(&self) -> u32 {
        uid_of(&self.name)
    }
}

impl Drop for TempUser {
    fn drop(&mut self) {
        let mut users = TEMP_USERS.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(i) = users.iter().position(|u| *u == self.name) {
            users.swap_remove(i);
        }
        if !users.contains(&self.name) {
            // Its processes are gone (each test waits for them); -f is not needed.
            let _ = Command::new("userdel").arg(&self.name).status();
        }
    }
}

pub fn uid_of(name: &str) -> u32 {
    ensure_user(name);
    nix::unistd::User::from_name(name)
        .unwrap()
        .unwrap()
        .uid
        .as_raw()
}

/// Stdout and stderr as text, for assertion messages.
pub fn describe(output: &Output) -> String {
    format!(
        "exit {:?}\nstdout: {}\nstderr: {}",
        output.status.code(),
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    )
}

/// The next event of a watch, which must come within `within` and be no error.
pub async fn next_event(
    watch: &mut psst_client::Watch,
    within: Duration,
) -> psst_client::WatchEvent {
    tokio::time::timeout(within, watch.next())
        .await
        .unwrap_or_else(|_| panic!("no event within {within:?}"))
        .expect("stream open")
        .unwrap_or_else(|e| panic!("watch error: {e}"))
}

/// Polls `check` until it holds or `timeout` passes.
pub fn eventually(timeout: Duration, mut check: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + timeout;
    loop {
        if check() {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// The virtualenv holding the stock gRPC tools (grpcurl, Python grpcio and grpcio-tools),
/// installed by `tests/stock-tools/setup.sh` on first use; the script is idempotent and CI runs it
/// before the suites.
pub fn stock_tools() -> PathBuf {
    static VENV: std::sync::OnceLock<PathBuf> = std::sync::OnceLock::new();
    VENV.get_or_init(|| {
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("stock-tools/setup.sh");
        let out = Command::new("bash")
            .arg(&script)
            .stdin(Stdio::null())
            .output()
            .expect("run tests/stock-tools/setup.sh");
        assert!(
            out.status.success(),
            "{} failed:\n{}",
            script.display(),
            describe(&out)
        );
        let stdout = String::from_utf8(out.stdout).expect("a UTF-8 path");
        PathBuf::from(stdout.lines().last().expect("the virtualenv's path").trim())
    })
    .clone()
}

/// `GET /metrics` from the agent's metrics listener on `port`: the whole HTTP response, which
/// must be a 200.
pub fn scrape(port: u16) -> String {
    use std::io::Read;
    let mut stream = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    stream
        .write_all(b"GET /metrics HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
        .unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).unwrap();
    assert!(response.starts_with("HTTP/1.1 200"), "{response}");
    response
}

/// The value of the sample line that starts with `series` (name and labels).
pub fn sample(text: &str, series: &str) -> f64 {
    text.lines()
        .find(|l| l.starts_with(series) && l[series.len()..].starts_with(' '))
        .unwrap_or_else(|| panic!("no sample {series} in:\n{text}"))
        .rsplit(' ')
        .next()
        .unwrap()
        .parse()
        .unwrap()
}

/// A protobuf message with its gRPC length prefix (uncompressed), as a request body.
pub fn grpc_frame(message: &impl prost::Message) -> bytes::Bytes {
    let body = message.encode_to_vec();
    let mut out = bytes::BytesMut::with_capacity(5 + body.len());
    out.extend_from_slice(&[0]);
    out.extend_from_slice(&(body.len() as u32).to_be_bytes());
    out.extend_from_slice(&body);
    out.freeze()
}

/// A gRPC unary call over a raw h2 connection, below any client library: `chunks` are the
/// body's DATA frames (the last one ends the stream). Returns the response's headers, its data
/// (flow-control capacity released as it is read), and its trailers (for a trailers-only
/// answer, its headers).
pub async fn h2_unary(
    sender: &h2::client::SendRequest<bytes::Bytes>,
    method: &str,
    chunks: &[bytes::Bytes],
) -> (http::HeaderMap, bytes::Bytes, http::HeaderMap) {
    let request = http::Request::post(format!("http://localhost{method}"))
        .header("content-type", "application/grpc")
        .header("te", "trailers")
        .body(())
        .unwrap();
    let (response, mut send) = sender.clone().send_request(request, false).unwrap();
    for (i, chunk) in chunks.iter().enumerate() {
        send.send_data(chunk.clone(), i + 1 == chunks.len())
            .unwrap();
        tokio::task::yield_now().await;
    }
    let response = response.await.unwrap();
    assert_eq!(response.status(), 200);
    let headers = response.headers().clone();
    let mut body = response.into_body();
    let mut data = bytes::BytesMut::new();
    while let Some(chunk) = body.data().await {
        let chunk = chunk.unwrap();
        let _ = body.flow_control().release_capacity(chunk.len());
        data.extend_from_slice(&chunk);
    }
    let trailers = body
        .trailers()
        .await
        .unwrap()
        .unwrap_or_else(|| headers.clone());
    (headers, data.freeze(), trailers)
}
