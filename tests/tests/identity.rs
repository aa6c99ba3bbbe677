//! Caller identity end to end, against the real `psstd`: real processes put into cgroups named
//! the way systemd, Docker, ECS and the kubelet name them (on this machine's cgroup v2 mount),
//! run as users made with `useradd`, asking through the real `psst` CLI.
//!
//! No kubelet, ECS agent or dockerd runs here: stand-in servers (Python's standard library, so
//! they are real HTTP/TLS servers) serve each platform's documents, shaped as the platforms'
//! API references show them: the kubelet's `/pods` PodList over HTTPS with a bearer token and a
//! test CA made with the `openssl` CLI, the ECS agent's `/v1/metadata` and
//! `/v1/tasks?dockerid=`, and the Docker Engine's `/containers/<id>/json` on a Unix socket.
//!
//! The tests run as root (they create cgroups and users) and remove what they create.

use std::{
    fs,
    os::unix::fs::PermissionsExt,
    path::{Path, PathBuf},
    process::{Child, Command, Output, Stdio},
    time::{Duration, Instant},
};

use nix::sys::signal::Signal;
use psst_tests::{describe, ensure_user, eventually, psst_bin, uid_of, Agent};

const POD_ORDERS: &str = "8a3d2c1b-4e5f-6789-abcd-ef0123456789";
const POD_WEB: &str = "1b2c3d4e-5f60-7182-93a4-b5c6d7e8f901";
const CONTAINER_ORDERS: &str = "3f1e2d9c8b7a6f5e4d3c2b1a0f9e8d7c6b5a4f3e2d1c0b9a8f7e6d5c4b3a2f1e";
const CONTAINER_WEB: &str = "a1b2c3d4e5f60718293a4b5c6d7e8f90a1b2c3d4e5f60718293a4b5c6d7e8f90";

// === cgroups ===

/// The cgroup v2 mount (`/sys/fs/cgroup` on a unified host, `/sys/fs/cgroup/unified` on a
/// hybrid one).
fn cgroup2_root() -> PathBuf {
    let mounts = fs::read_to_string("/proc/self/mounts").unwrap();
    mounts
        .lines()
        .find_map(|line| {
            let fields: Vec<&str> = line.split_whitespace().collect();
            (fields.get(2) == Some(&"cgroup2")).then(|| PathBuf::from(fields[1]))
        })
        .expect("a cgroup v2 mount")
}

/// A cgroup created for a test, removed (deepest first) when dropped; its processes must be
/// gone by then.
struct Cgroup {
    /// The path as `/proc/<pid>/cgroup` shows it.
    path: String,
    created: Vec<PathBuf>,
}

impl Cgroup {
    fn create(path: &str) -> Self {
        let root = cgroup2_root();
        let mut created = Vec::new();
        // Tests run in parallel and share parent cgroups: another test's cleanup may remove an
        // empty parent between our look and our mkdir, so start over when that happens.
        'attempt: for attempt in 0..20 {
            let mut dir = root.clone();
            for component in path.split('/').filter(|c| !c.is_empty()) {
                dir.push(component);
                match fs::create_dir(&dir) {
                    Ok(()) => created.push(dir.clone()),
                    Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound && attempt < 19 => {
                        std::thread::sleep(Duration::from_millis(10));
                        continue 'attempt;
                    }
                    Err(e) => panic!("mkdir {}: {e}", dir.display()),
                }
            }
            break;
        }
        Self {
            path: path.to_owned(),
            created,
        }
    }

    fn dir(&self) -> PathBuf {
        cgroup2_root().join(self.path.trim_start_matches('/'))
    }
}

impl Drop for Cgroup {
    fn drop(&mut self) {
        for dir in self.created.iter().rev() {
            // Cgroups a test user made below ours go first.
            remove_tree(dir);
        }
    }
}

fn remove_tree(dir: &Path) {
    if let Ok(entries) = fs::read_dir(dir) {
        for entry in entries.flatten() {
            if entry.file_type().is_ok_and(|t| t.is_dir()) {
                remove_tree(&entry.path());
            }
        }
    }
    let deadline = Instant::now() + Duration::from_secs(5);
    while fs::remove_dir(dir).is_err() && dir.exists() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// `psst ARGS` as `user`, its process placed in `cgroup` first: root moves the shell in, then
/// `runuser` (whose children stay in the cgroup) runs the CLI.
fn psst_in(agent: &Agent, cgroup: &Cgroup, user: &str, args: &[&str]) -> Output {
    ensure_user(user);
    let script = format!(
        "echo $$ > {procs} && exec runuser -u {user} -- \"$@\"",
        procs = cgroup.dir().join("cgroup.procs").display()
    );
    Command::new("sh")
        .args(["-c", &script, "sh"])
        .arg(psst_bin())
        .args(args)
        .env("PSST_SOCKET", &agent.socket)
        .stdin(Stdio::null())
        .output()
        .unwrap()
}

fn stdout(output: &Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned()
}

fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

fn put(agent: &Agent, reference: &str, value: &str) {
    let out = agent.psst(&["put", reference], Some(value.as_bytes()));
    assert!(out.status.success(), "put {reference}: {}", describe(&out));
}

// === a stand-in kubelet ===

/// A CA and a server certificate for 127.0.0.1 made with the `openssl` CLI.
struct Pki {
    dir: tempfile::TempDir,
}

impl Pki {
    fn new() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let run = |args: &[&str]| {
            let out = Command::new("openssl")
                .args(args)
                .current_dir(dir.path())
                .output()
                .unwrap();
            assert!(out.status.success(), "openssl {args:?}: {}", describe(&out));
        };
        for ca in ["ca", "other-ca"] {
            run(&[
                "req",
                "-x509",
                "-newkey",
                "ec",
                "-pkeyopt",
                "ec_paramgen_curve:P-256",
                "-nodes",
                "-keyout",
                &format!("{ca}.key"),
                "-out",
                &format!("{ca}.crt"),
                "-days",
                "2",
                "-subj",
                &format!("/CN=psst test {ca}"),
            ]);
        }
        run(&[
            "req",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
            "-nodes",
            "-keyout",
            "kubelet.key",
            "-out",
            "kubelet.csr",
            "-subj",
            "/CN=node-1",
        ]);
        fs::write(
            dir.path().join("san.ext"),
            "subjectAltName=IP:127.0.0.1,DNS:node-1\n",
        )
        .unwrap();
        run(&[
            "x509",
            "-req",
            "-in",
            "kubelet.csr",
            "-CA",
            "ca.crt",
            "-CAkey",
            "ca.key",
            "-CAcreateserial",
            "-out",
            "kubelet.crt",
            "-days",
            "2",
            "-extfile",
            "san.ext",
        ]);
        fs::write(dir.path().join("token"), "test-service-account-token\n").unwrap();
        Self { dir }
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }
}

/// Serves `{dir}/pods.json` at `/pods` over HTTPS to requests carrying the bearer token, and
/// counts the requests in `{dir}/requests`.
const KUBELET: &str = r#"
import http.server, ssl, sys, os
d = sys.argv[1]
class H(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        with open(os.path.join(d, "requests"), "a") as f:
            f.write(self.path + "\n")
        if self.headers.get("Authorization") != "Bearer test-service-account-token":
            self.send_response(401); self.end_headers(); return
        if self.path != "/pods":
            self.send_response(404); self.end_headers(); return
        body = open(os.path.join(d, "pods.json"), "rb").read()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)
    def log_message(self, *args):
        pass
server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), H)
ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
ctx.load_cert_chain(os.path.join(d, "kubelet.crt"), os.path.join(d, "kubelet.key"))
server.socket = ctx.wrap_socket(server.socket, server_side=True)
print(server.server_address[1], flush=True)
server.serve_forever()
"#;

struct StandIn {
    child: Child,
    port: u16,
}

impl StandIn {
    fn start(script: &str, dir: &Path) -> Self {
        Self::start_with(script, dir, &[])
    }
}

impl Drop for StandIn {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// One pod as the kubelet lists it (core/v1 Pod, the fields a kubelet fills in, trimmed of
/// volumes and conditions).
fn pod_json(
    uid: &str,
    name: &str,
    service_account: &str,
    labels: &str,
    container_id: &str,
) -> String {
    format!(
        r#"{{
      "metadata": {{
        "name": "{name}", "namespace": "shop", "uid": "{uid}",
        "resourceVersion": "4711", "creationTimestamp": "2026-12-06T01:00:00Z",
        "labels": {labels}
      }},
      "spec": {{
        "containers": [{{"name": "app", "image": "registry.example/{name}:1.4", "imagePullPolicy": "IfNotPresent"}}],
        "restartPolicy": "Always", "serviceAccountName": "{service_account}",
        "serviceAccount": "{service_account}", "nodeName": "node-1"
      }},
      "status": {{
        "phase": "Running", "hostIP": "10.0.0.5", "podIP": "10.1.2.3",
        "startTime": "2026-12-06T01:00:00Z",
        "containerStatuses": [{{
          "name": "app", "state": {{"running": {{"startedAt": "2026-12-06T01:00:02Z"}}}},
          "ready": true, "restartCount": 0,
          "image": "registry.example/{name}:1.4",
          "imageID": "registry.example/{name}@sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef",
          "containerID": "containerd://{container_id}", "started": true
        }}]
      }}
    }}"#
    )
}

fn write_pods(pki: &Pki, pods: &[String]) {
    let list = format!(
        r#"{{"kind": "PodList", "apiVersion": "v1", "metadata": {{}}, "items": [{}]}}"#,
        pods.join(",")
    );
    // Renamed into place: the stand-in never serves half a file.
    fs::write(pki.path("pods.json.new"), list).unwrap();
    fs::rename(pki.path("pods.json.new"), pki.path("pods.json")).unwrap();
}

fn kubelet_requests(pki: &Pki) -> usize {
    fs::read_to_string(pki.path("requests"))
        .map(|s| s.lines().count())
        .unwrap_or(0)
}

/// A systemd-driver pod cgroup, as the kubelet with containerd names it.
fn pod_cgroup(pod: &str, container: &str) -> Cgroup {
    Cgroup::create(&format!(
        "/kubepods.slice/kubepods-besteffort.slice/kubepods-besteffort-pod{}.slice/cri-containerd-{container}.scope",
        pod.replace('-', "_")
    ))
}

fn kubernetes_config(pki: &Pki, port: u16, ca: &str) -> String {
    format!(
        "[identity.kubernetes]\nkubelet_url = \"https://127.0.0.1:{port}\"\nca_file = \"{}\"\ntoken_file = \"{}\"\ntimeout = \"2s\"\nrefresh_interval = \"100ms\"\n",
        pki.path(ca).display(),
        pki.path("token").display()
    )
}

const K8S_POLICY: &str = r#"
[[rule]]
name = "root administers"
caller = { uid = [0] }
allow = { write = ["local:**"], read = ["local:**"] }

[[rule]]
name = "orders in shop"
caller = { k8s_namespace = ["shop"], k8s_service_account = ["orders"] }
allow = { read = ["local:orders/*"] }

[[rule]]
name = "backend tier"
caller = { k8s_pod_label = ["tier=backend", "app=orders"], k8s_container_name = ["app"], k8s_container_image = ["registry.example/orders-*@sha256:*"] }
allow = { read = ["local:backend/*"] }
"#;

#[test]
fn service_accounts_decide_between_two_pods_of_one_uid() {
    let pki = Pki::new();
    write_pods(
        &pki,
        &[pod_json(
            POD_ORDERS,
            "orders-7d4b9c-x2x9k",
            "orders",
            r#"{"app": "orders", "tier": "backend"}"#,
            CONTAINER_ORDERS,
        )],
    );
    let kubelet = StandIn::start(KUBELET, pki.dir.path());
    let agent = Agent::with_policy(K8S_POLICY, &kubernetes_config(&pki, kubelet.port, "ca.crt"));
    put(&agent, "local:orders/db", "orders-password");
    put(&agent, "local:backend/key", "backend-key");

    let orders = pod_cgroup(POD_ORDERS, CONTAINER_ORDERS);
    let out = psst_in(&agent, &orders, "psst-pods", &["get", "local:orders/db"]);
    assert!(out.status.success(), "{}", describe(&out));
    assert_eq!(stdout(&out).trim(), "orders-password");
    let out = psst_in(&agent, &orders, "psst-pods", &["get", "local:backend/key"]);
    assert_eq!(
        stdout(&out).trim(),
        "backend-key",
        "the label selector: {}",
        describe(&out)
    );
    let who = psst_in(&agent, &orders, "psst-pods", &["whoami", "--json"]);
    let who: serde_json::Value = serde_json::from_slice(&who.stdout).unwrap();
    let k8s = &who["caller"]["kubernetes"];
    assert_eq!(k8s["namespace"], "shop");
    assert_eq!(k8s["service_account"], "orders");
    assert_eq!(k8s["pod_name"], "orders-7d4b9c-x2x9k");
    assert_eq!(k8s["labels"]["tier"], "backend");
    assert_eq!(k8s["container_name"], "app");

    // A pod created after the agent started (and after its first look at the list): found by
    // one refresh, not on a timer.
    let before = kubelet_requests(&pki);
    write_pods(
        &pki,
        &[
            pod_json(
                POD_ORDERS,
                "orders-7d4b9c-x2x9k",
                "orders",
                r#"{"app": "orders", "tier": "backend"}"#,
                CONTAINER_ORDERS,
            ),
            pod_json(
                POD_WEB,
                "web-5f6d7-abcde",
                "web",
                r#"{"app": "orders", "tier": "frontend"}"#,
                CONTAINER_WEB,
            ),
        ],
    );
    let web = pod_cgroup(POD_WEB, CONTAINER_WEB);
    let who = psst_in(&agent, &web, "psst-pods", &["whoami", "--json"]);
    let who: serde_json::Value = serde_json::from_slice(&who.stdout).unwrap();
    assert_eq!(
        who["caller"]["kubernetes"]["service_account"], "web",
        "{who}"
    );
    assert_eq!(
        kubelet_requests(&pki),
        before + 1,
        "one refresh for the new pod"
    );

    // Same uid, another service account: denied, and a missing secret looks the same.
    let denied = psst_in(&agent, &web, "psst-pods", &["get", "local:orders/db"]);
    let missing = psst_in(&agent, &web, "psst-pods", &["get", "local:orders/nope"]);
    assert!(!denied.status.success());
    assert_eq!(denied.status.code(), Some(5), "{}", describe(&denied));
    assert_eq!(
        stderr(&denied).replace("orders/db", "X"),
        stderr(&missing).replace("orders/nope", "X"),
        "an existing and a missing secret must be indistinguishable"
    );
    assert_eq!(denied.status.code(), missing.status.code());
    let label_denied = psst_in(&agent, &web, "psst-pods", &["get", "local:backend/key"]);
    assert!(
        !label_denied.status.success(),
        "tier=frontend: {}",
        describe(&label_denied)
    );

    // Known pods cost no lookups: many connections, no more requests to the kubelet.
    let before = kubelet_requests(&pki);
    for _ in 0..5 {
        let out = psst_in(&agent, &orders, "psst-pods", &["get", "local:orders/db"]);
        assert!(out.status.success());
    }
    assert_eq!(kubelet_requests(&pki), before, "cached by pod UID");
}

#[test]
fn an_unreachable_kubelet_denies_with_a_reason_and_spares_other_callers() {
    let pki = Pki::new();
    // A port nothing listens on.
    let closed = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let agent = Agent::with_policy(K8S_POLICY, &kubernetes_config(&pki, closed, "ca.crt"));
    put(&agent, "local:orders/db", "orders-password");
    let orders = pod_cgroup(POD_ORDERS, CONTAINER_ORDERS);
    let started = Instant::now();
    let out = psst_in(&agent, &orders, "psst-pods", &["get", "local:orders/db"]);
    assert!(!out.status.success(), "{}", describe(&out));
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "bounded by the timeout"
    );
    assert!(
        eventually(Duration::from_secs(5), || agent
            .logs()
            .contains("kubernetes: cannot reach the kubelet")),
        "the audit record says why: {}",
        agent.logs()
    );
    // Root, outside any pod, is not held up.
    let started = Instant::now();
    let out = agent.psst(&["get", "local:orders/db"], None);
    assert!(out.status.success(), "{}", describe(&out));
    assert!(started.elapsed() < Duration::from_secs(2));
}

#[test]
fn concurrent_first_connections_of_a_new_pod_share_one_refresh() {
    let pki = Pki::new();
    write_pods(&pki, &[]);
    let kubelet = StandIn::start(KUBELET, pki.dir.path());
    let agent = Agent::with_policy(K8S_POLICY, &kubernetes_config(&pki, kubelet.port, "ca.crt"));
    put(&agent, "local:orders/db", "orders-password");
    // The agent has fetched the (empty) list once, for a pod it did not find.
    let orders = pod_cgroup(POD_ORDERS, CONTAINER_ORDERS);
    let out = psst_in(&agent, &orders, "psst-pods", &["get", "local:orders/db"]);
    assert_eq!(out.status.code(), Some(5), "{}", describe(&out));
    let before = kubelet_requests(&pki);
    write_pods(
        &pki,
        &[pod_json(
            POD_ORDERS,
            "orders-7d4b9c-x2x9k",
            "orders",
            "{}",
            CONTAINER_ORDERS,
        )],
    );
    ensure_user("psst-pods");
    let script = format!(
        "echo $$ > {procs} && exec runuser -u psst-pods -- \"$@\"",
        procs = orders.dir().join("cgroup.procs").display()
    );
    let callers: Vec<Child> = (0..8)
        .map(|_| {
            Command::new("sh")
                .args(["-c", &script, "sh"])
                .arg(psst_bin())
                .args(["get", "local:orders/db"])
                .env("PSST_SOCKET", &agent.socket)
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
                .unwrap()
        })
        .collect();
    for caller in callers {
        let out = caller.wait_with_output().unwrap();
        assert_eq!(stdout(&out).trim(), "orders-password", "{}", describe(&out));
    }
    let refreshes = kubelet_requests(&pki) - before;
    // Connections that arrive while a refresh runs wait for it; one that arrives after it finds
    // the pod cached. At most one more refresh can start if a connection read the cache just
    // before the list changed.
    assert!(
        (1..=2).contains(&refreshes),
        "{refreshes} refreshes for 8 connections"
    );
}

#[test]
fn a_kubelet_that_never_answers_delays_only_its_own_callers() {
    let pki = Pki::new();
    // Accepts connections and says nothing: not even the TLS handshake completes.
    let silent = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = silent.local_addr().unwrap().port();
    let held = std::thread::spawn(move || {
        let mut held = Vec::new();
        for stream in silent.incoming().take(4) {
            held.push(stream);
        }
        std::thread::sleep(Duration::from_secs(10));
    });
    let config = kubernetes_config(&pki, port, "ca.crt");
    let agent = Agent::with_policy(K8S_POLICY, &config);
    put(&agent, "local:orders/db", "orders-password");
    let orders = pod_cgroup(POD_ORDERS, CONTAINER_ORDERS);
    let socket = agent.socket.clone();
    let orders_dir = orders.dir();
    let pod_caller = std::thread::spawn(move || {
        let started = Instant::now();
        let out = Command::new("sh")
            .args([
                "-c",
                &format!(
                    "echo $$ > {}/cgroup.procs && exec \"$@\"",
                    orders_dir.display()
                ),
                "sh",
            ])
            .arg(psst_bin())
            .args(["get", "local:orders/db"])
            .env("PSST_SOCKET", &socket)
            .output()
            .unwrap();
        (started.elapsed(), out)
    });
    // While the pod's caller waits on the kubelet, root (outside any pod) is served at once.
    std::thread::sleep(Duration::from_millis(300));
    let started = Instant::now();
    let out = agent.psst(&["get", "local:orders/db"], None);
    let root_took = started.elapsed();
    assert_eq!(stdout(&out).trim(), "orders-password", "{}", describe(&out));
    let (pod_took, pod_out) = pod_caller.join().unwrap();
    assert!(
        root_took < Duration::from_millis(1500),
        "root waited {root_took:?} behind a silent kubelet"
    );
    // Root in the pod's cgroup: the root rule grants read, so the connection was served after
    // the kubelet timed out, with the reason in the audit record.
    assert!(pod_out.status.success(), "{}", describe(&pod_out));
    assert!(
        pod_took >= Duration::from_secs(2) && pod_took < Duration::from_secs(5),
        "the pod's caller waited for the kubelet's timeout: {pod_took:?}"
    );
    assert!(
        agent
            .logs()
            .contains("the kubelet did not answer within 2s"),
        "{}",
        agent.logs()
    );
    drop(held);
}

#[test]
fn a_kubelet_certificate_from_another_ca_is_refused() {
    let pki = Pki::new();
    write_pods(
        &pki,
        &[pod_json(
            POD_ORDERS,
            "orders-7d4b9c-x2x9k",
            "orders",
            "{}",
            CONTAINER_ORDERS,
        )],
    );
    let kubelet = StandIn::start(KUBELET, pki.dir.path());
    let agent = Agent::with_policy(
        K8S_POLICY,
        &kubernetes_config(&pki, kubelet.port, "other-ca.crt"),
    );
    put(&agent, "local:orders/db", "orders-password");
    let orders = pod_cgroup(POD_ORDERS, CONTAINER_ORDERS);
    let out = psst_in(&agent, &orders, "psst-pods", &["get", "local:orders/db"]);
    assert!(!out.status.success(), "{}", describe(&out));
    let who = psst_in(&agent, &orders, "psst-pods", &["whoami", "--json"]);
    let who: serde_json::Value = serde_json::from_slice(&who.stdout).unwrap();
    assert!(who["caller"]["kubernetes"].is_null());
    let failures = who["caller"]["attestation_failures"].to_string();
    assert!(
        failures.contains("certificate") || failures.contains("UnknownIssuer"),
        "{failures}"
    );
}

#[test]
fn check_config_rejects_selectors_without_their_attestor() {
    let dir = tempfile::tempdir().unwrap();
    let policy = dir.path().join("policy.toml");
    fs::write(&policy, K8S_POLICY).unwrap();
    let config = dir.path().join("psstd.toml");
    fs::write(
        &config,
        format!(
            "[policy]\nfile = \"{}\"\n[[backend]]\ntype = \"local\"\ndir = \"{}\"\n",
            policy.display(),
            dir.path().join("store").display()
        ),
    )
    .unwrap();
    let out = Command::new(psst_tests::psstd_bin())
        .arg("check-config")
        .arg(&config)
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = stderr(&out);
    assert!(err.contains("rule 'orders in shop' selects on caller.k8s_namespace, caller.k8s_service_account but [identity.kubernetes] is not configured"), "{err}");

    fs::write(
        &config,
        format!("[policy]\nfile = \"{}\"\n[identity.kubernetes]\n[[backend]]\ntype = \"local\"\ndir = \"{}\"\n", policy.display(), dir.path().join("store").display()),
    )
    .unwrap();
    let out = Command::new(psst_tests::psstd_bin())
        .arg("check-config")
        .arg(&config)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", describe(&out));
}

// === Docker and ECS ===

/// The Docker Engine API on a Unix socket: `/containers/<id>/json` answers the
/// ContainerInspectResponse for the one container it knows, 404 otherwise.
const DOCKERD: &str = r#"
import http.server, socketserver, sys, os, json
d = sys.argv[1]
known = sys.argv[2]
class H(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        if self.path != "/containers/%s/json" % known:
            body = json.dumps({"message": "No such container: " + self.path}).encode()
            self.send_response(404)
        else:
            body = json.dumps({
                "Id": known, "Created": "2026-12-06T01:00:00.000000000Z",
                "Path": "/app", "Args": [], "State": {"Status": "running", "Running": True, "Pid": 4242},
                "Image": "sha256:" + "ab" * 32, "Name": "/billing-worker-1",
                "RestartCount": 0, "Driver": "overlay2",
                "Config": {"Hostname": known[:12], "User": "", "Env": ["PATH=/usr/bin"],
                           "Cmd": ["/app"], "Image": "registry.example/billing:2.1",
                           "Labels": {"com.docker.compose.service": "billing", "team": "payments"}},
                "NetworkSettings": {"Networks": {}}
            }).encode()
            self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)
    def address_string(self):
        return "unix"
    def log_message(self, *args):
        pass
class S(socketserver.ThreadingMixIn, socketserver.UnixStreamServer):
    daemon_threads = True
path = os.path.join(d, "docker.sock")
server = S(path, H)
print(0, flush=True)
server.serve_forever()
"#;

#[test]
fn docker_containers_are_selected_by_name_and_label() {
    let dir = tempfile::tempdir().unwrap();
    let id = CONTAINER_ORDERS;
    let _dockerd = StandIn::start_with(DOCKERD, dir.path(), &[id]);
    let policy = r#"
[[rule]]
name = "root administers"
caller = { uid = [0] }
allow = { write = ["local:**"] }

[[rule]]
name = "billing container"
caller = { container_name = ["billing-worker-1"], container_label = ["team=payments"], container_image = ["registry.example/billing:*"] }
allow = { read = ["local:billing/*"] }
"#;
    let config = format!(
        "[identity.docker]\nsocket = \"{}\"\n",
        dir.path().join("docker.sock").display()
    );
    let agent = Agent::with_policy(policy, &config);
    put(&agent, "local:billing/db", "billing-password");

    let billing = Cgroup::create(&format!("/system.slice/docker-{id}.scope"));
    let out = psst_in(&agent, &billing, "psst-pods", &["get", "local:billing/db"]);
    assert_eq!(
        stdout(&out).trim(),
        "billing-password",
        "{}",
        describe(&out)
    );
    let who = psst_in(&agent, &billing, "psst-pods", &["whoami", "--json"]);
    let who: serde_json::Value = serde_json::from_slice(&who.stdout).unwrap();
    assert_eq!(
        who["caller"]["container"]["name"], "billing-worker-1",
        "{who}"
    );

    // Another container the engine does not know: no attributes, denied, and the reason.
    let other = Cgroup::create(&format!("/system.slice/docker-{CONTAINER_WEB}.scope"));
    let out = psst_in(&agent, &other, "psst-pods", &["get", "local:billing/db"]);
    assert!(!out.status.success());
    let who = psst_in(&agent, &other, "psst-pods", &["whoami", "--json"]);
    let who: serde_json::Value = serde_json::from_slice(&who.stdout).unwrap();
    assert!(
        who["caller"]["attestation_failures"]
            .to_string()
            .contains("404"),
        "{who}"
    );
}

/// The ECS agent's introspection API: `/v1/metadata` and `/v1/tasks?dockerid=` for the one
/// container it knows.
const ECS_AGENT: &str = r#"
import http.server, sys, json
known = sys.argv[2]
class H(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        if self.path == "/v1/metadata":
            doc = {"Cluster": "prod", "ContainerInstanceArn": "arn:aws:ecs:us-west-2:012345678910:container-instance/prod/6f1c2b3a", "Version": "Amazon ECS Agent - v1.89.0 (d2f5e6a1)"}
        elif self.path == "/v1/tasks?dockerid=" + known:
            doc = {"Arn": "arn:aws:ecs:us-west-2:012345678910:task/prod/090eff9b1ce34db6848aa8d14064fd24",
                   "DesiredStatus": "RUNNING", "KnownStatus": "RUNNING", "Family": "orders", "Version": "5",
                   "Containers": [{"DockerId": known, "DockerName": "ecs-orders-5-api-ccccb9f49db0dfe0d901", "Name": "api"}]}
        else:
            self.send_response(404); self.end_headers(); return
        body = json.dumps(doc).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)
    def log_message(self, *args):
        pass
server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), H)
print(server.server_address[1], flush=True)
server.serve_forever()
"#;

#[test]
fn ecs_tasks_are_selected_by_family_and_revision() {
    let dir = tempfile::tempdir().unwrap();
    let id = CONTAINER_ORDERS;
    let ecs = StandIn::start_with(ECS_AGENT, dir.path(), &[id]);
    let policy = r#"
[[rule]]
name = "root administers"
caller = { uid = [0] }
allow = { write = ["local:**"] }

[[rule]]
name = "orders api, revision 5"
caller = { ecs_cluster = ["prod"], ecs_task_family = ["orders:5"], ecs_container_name = ["api"] }
allow = { read = ["local:orders/*"] }

[[rule]]
name = "orders revision 6 only"
caller = { ecs_task_family = ["orders:6"] }
allow = { read = ["local:next/*"] }
"#;
    let config = format!(
        "[identity.ecs]\nagent_url = \"http://127.0.0.1:{}\"\n",
        ecs.port
    );
    let agent = Agent::with_policy(policy, &config);
    put(&agent, "local:orders/db", "orders-password");
    put(&agent, "local:next/db", "next-password");
    // The ECS agent's cgroupfs layout: /ecs/<task id>/<container id>.
    let task = Cgroup::create(&format!("/ecs/090eff9b1ce34db6848aa8d14064fd24/{id}"));
    let out = psst_in(&agent, &task, "psst-pods", &["get", "local:orders/db"]);
    assert_eq!(stdout(&out).trim(), "orders-password", "{}", describe(&out));
    let out = psst_in(&agent, &task, "psst-pods", &["get", "local:next/db"]);
    assert!(
        !out.status.success(),
        "another revision: {}",
        describe(&out)
    );
    let who = psst_in(&agent, &task, "psst-pods", &["whoami", "--json"]);
    let who: serde_json::Value = serde_json::from_slice(&who.stdout).unwrap();
    assert_eq!(who["caller"]["ecs"]["task_family"], "orders", "{who}");
    assert_eq!(who["caller"]["ecs"]["cluster"], "prod");
}

impl StandIn {
    fn start_with(script: &str, dir: &Path, args: &[&str]) -> Self {
        let mut child = Command::new("python3")
            .args(["-c", script])
            .arg(dir)
            .args(args)
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap();
        let mut line = String::new();
        std::io::BufRead::read_line(
            &mut std::io::BufReader::new(child.stdout.as_mut().unwrap()),
            &mut line,
        )
        .unwrap();
        let port = line.trim().parse().unwrap_or(0);
        Self { child, port }
    }
}

// === attacks on the process identity ===

const SPOOF_POLICY: &str = r#"
[[rule]]
name = "root administers"
caller = { uid = [0] }
allow = { write = ["local:**"] }

[[rule]]
name = "billing unit"
caller = { systemd_unit = ["billing.service"] }
allow = { read = ["local:billing/*"] }

[[rule]]
name = "any docker container"
caller = { container_id = ["*"] }
allow = { read = ["local:containers/*"] }

[[rule]]
name = "the orders pod"
caller = { pod_uid = ["8a3d2c1b-4e5f-6789-abcd-ef0123456789"] }
allow = { read = ["local:pods/*"] }
"#;

/// A user's delegated subtree, as systemd hands `user@UID.service` to the user's manager: the
/// directory and its control files belong to the user.
fn delegated_subtree(user: &str) -> Cgroup {
    let uid = uid_of(user);
    let cgroup = Cgroup::create(&format!("/user.slice/user-{uid}.slice/user@{uid}.service"));
    let dir = cgroup.dir();
    let owner = Some(nix::unistd::Uid::from_raw(uid));
    nix::unistd::chown(&dir, owner, None).unwrap();
    for file in ["cgroup.procs", "cgroup.subtree_control", "cgroup.threads"] {
        nix::unistd::chown(&dir.join(file), owner, None).unwrap();
    }
    cgroup
}

#[test]
fn cgroups_a_user_names_in_their_own_subtree_are_not_trusted() {
    let agent = Agent::with_policy(SPOOF_POLICY, "");
    for reference in ["local:billing/db", "local:containers/db", "local:pods/db"] {
        put(&agent, reference, "top-secret");
    }
    let user = "psst-mallory";
    let delegated = delegated_subtree(user);
    let base = delegated.dir();
    let pod = POD_ORDERS.replace('-', "_");
    for (spoof, reference) in [
        ("app.slice/billing.service".to_owned(), "local:billing/db"),
        (format!("app.slice/docker-{CONTAINER_ORDERS}.scope"), "local:containers/db"),
        (
            format!("kubepods.slice/kubepods-besteffort.slice/kubepods-besteffort-pod{pod}.slice/cri-containerd-{CONTAINER_ORDERS}.scope"),
            "local:pods/db",
        ),
    ] {
        // Root puts the shell into the user's subtree; from there on, the user alone makes the
        // cgroups and moves into them, as any user can under their own manager.
        let script = format!(
            "echo $$ > {base}/cgroup.procs && exec runuser -u {user} -- sh -c 'mkdir -p {base}/{spoof} && echo $$ > {base}/{spoof}/cgroup.procs && cat /proc/self/cgroup && exec \"$0\" get {reference}' {psst}",
            base = base.display(),
            psst = psst_bin().display(),
        );
        let out = Command::new("sh")
            .args(["-c", &script])
            .env("PSST_SOCKET", &agent.socket)
            .output()
            .unwrap();
        assert!(
            stdout(&out).contains(&spoof),
            "the user could create and enter {spoof}: {}",
            describe(&out)
        );
        assert!(!stdout(&out).contains("top-secret"), "{spoof} was trusted: {}", describe(&out));
        assert_eq!(out.status.code(), Some(5), "denied: {}", describe(&out));
    }

    // The same name made by root, outside any user's subtree, is trusted: the selector works.
    let billing = Cgroup::create("/system.slice/billing.service");
    let out = psst_in(&agent, &billing, user, &["get", "local:billing/db"]);
    assert_eq!(stdout(&out).trim(), "top-secret", "{}", describe(&out));
}

#[test]
fn a_binary_bind_mounted_over_an_allowed_path_is_not_that_binary() {
    // The allowed binary: a root-owned copy of the CLI at a path of its own.
    let dir = tempfile::tempdir().unwrap();
    fs::set_permissions(dir.path(), fs::Permissions::from_mode(0o755)).unwrap();
    let allowed = dir.path().join("allowed-client");
    fs::copy(psst_bin(), &allowed).unwrap();
    // The user's own copy, which they may run under any name they can mount.
    let theirs = dir.path().join("users-client");
    fs::copy(psst_bin(), &theirs).unwrap();
    let policy = format!(
        "[[rule]]\nname = \"root administers\"\ncaller = {{ uid = [0] }}\nallow = {{ write = [\"local:**\"] }}\n\n[[rule]]\nname = \"the allowed client\"\ncaller = {{ executable = [\"{}\"] }}\nallow = {{ read = [\"local:app/*\"] }}\n",
        allowed.display()
    );
    let agent = Agent::with_policy(&policy, "");
    put(&agent, "local:app/db", "app-password");
    let user = "psst-mallory";
    ensure_user(user);

    let honest = Command::new("runuser")
        .args(["-u", user, "--"])
        .arg(&allowed)
        .args(["get", "local:app/db"])
        .env("PSST_SOCKET", &agent.socket)
        .output()
        .unwrap();
    assert_eq!(
        stdout(&honest).trim(),
        "app-password",
        "{}",
        describe(&honest)
    );

    let script = format!(
        "mount --bind {theirs} {allowed} && exec {allowed} get local:app/db",
        theirs = theirs.display(),
        allowed = allowed.display()
    );
    let attack = Command::new("runuser")
        .args(["-u", user, "--", "unshare", "-Urm", "sh", "-c", &script])
        .env("PSST_SOCKET", &agent.socket)
        .output()
        .unwrap();
    assert!(
        !stdout(&attack).contains("app-password"),
        "{}",
        describe(&attack)
    );
    assert_eq!(
        attack.status.code(),
        Some(5),
        "the attack ran and was denied: {}",
        describe(&attack)
    );
}

/// With the agent stopped (its accept stalled), a process connects and exits, and another
/// process takes its pid before the agent accepts: the connection is not that process's.
#[test]
fn a_pid_reused_between_connect_and_accept_is_refused() {
    let agent = Agent::with_policy(SPOOF_POLICY, "");
    agent.signal(Signal::SIGSTOP);
    ensure_user("psst-mallory");
    // The connector sends the HTTP/2 preface (the agent identifies a caller once it speaks
    // HTTP/2), keeps the connection open in a child, prints its own pid and exits.
    let connector = r#"
import os, socket, sys, time
s = socket.socket(socket.AF_UNIX); s.connect(sys.argv[1])
s.sendall(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n" + b"\x00\x00\x00\x04\x00\x00\x00\x00\x00")
if os.fork() == 0:
    null = os.open(os.devnull, os.O_RDWR)
    os.dup2(null, 1); os.dup2(null, 2); os.setsid(); time.sleep(20); sys.exit(0)
print(os.getpid(), flush=True)
"#;
    let out = Command::new("runuser")
        .args(["-u", "psst-mallory", "--", "python3", "-c", connector])
        .arg(&agent.socket)
        .output()
        .unwrap();
    let freed: i32 = stdout(&out)
        .trim()
        .parse()
        .unwrap_or_else(|_| panic!("{}", describe(&out)));
    // Take the freed pid: ask the kernel for it as the next one, retrying while other
    // processes on the machine race for it.
    let mut taker = None;
    for _ in 0..200 {
        fs::write("/proc/sys/kernel/ns_last_pid", (freed - 1).to_string()).unwrap();
        let child = Command::new("sleep").arg("30").spawn().unwrap();
        if child.id() as i32 == freed {
            taker = Some(child);
            break;
        }
        let mut child = child;
        let _ = child.kill();
        let _ = child.wait();
    }
    let mut taker = taker.expect("took the freed pid");
    agent.signal(Signal::SIGCONT);
    let refused = eventually(Duration::from_secs(5), || {
        let logs = agent.logs();
        logs.contains("connection from an unidentified caller")
            && logs.contains(&format!("process {freed} "))
    });
    let _ = taker.kill();
    let _ = taker.wait();
    assert!(refused, "{}", agent.logs());
}

/// BENCHMARKS.md's figure: how long a new pod's first connection takes to be attested (one
/// refresh of the stand-in kubelet's list over HTTPS), against a pod the cache knows and against
/// the same agent's callers outside any pod. Run it by hand:
/// `cargo test -p psst-tests --test identity -- --ignored --nocapture new_pod_first_connection`.
#[test]
#[ignore = "a measurement, not a check: run by hand for BENCHMARKS.md"]
fn new_pod_first_connection_attestation_time() {
    const ROUNDS: usize = 25;
    let pki = Pki::new();
    write_pods(&pki, &[]);
    let kubelet = StandIn::start(KUBELET, pki.dir.path());
    let agent = Agent::with_policy(K8S_POLICY, &kubernetes_config(&pki, kubelet.port, "ca.crt"));
    let time = |cgroup: &Cgroup| {
        let started = Instant::now();
        let out = psst_in(&agent, cgroup, "psst-pods", &["whoami", "--json"]);
        let elapsed = started.elapsed();
        let who: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        (elapsed, who)
    };
    let plain = Cgroup::create("/system.slice/psst-bench.service");
    let (mut new_pod, mut known_pod, mut no_pod) = (Vec::new(), Vec::new(), Vec::new());
    let mut pods = Vec::new();
    for round in 0..ROUNDS {
        let uid = format!("00000000-0000-4000-8000-{round:012}");
        let container = format!("{round:064x}");
        pods.push(pod_json(
            &uid,
            &format!("bench-{round}"),
            "orders",
            "{}",
            &container,
        ));
        write_pods(&pki, &pods);
        let cgroup = pod_cgroup(&uid, &container);
        let (first, who) = time(&cgroup);
        assert_eq!(
            who["caller"]["kubernetes"]["pod_name"],
            format!("bench-{round}")
        );
        new_pod.push(first);
        known_pod.push(time(&cgroup).0);
        no_pod.push(time(&plain).0);
        drop(cgroup);
    }
    let median = |v: &mut Vec<Duration>| {
        v.sort();
        v[v.len() / 2]
    };
    assert_eq!(
        kubelet_requests(&pki),
        ROUNDS,
        "one refresh per new pod, none for known ones"
    );
    println!(
        "psst whoami, median of {ROUNDS}: new pod {:?}, known pod {:?}, outside any pod {:?}",
        median(&mut new_pod),
        median(&mut known_pod),
        median(&mut no_pod)
    );
}
