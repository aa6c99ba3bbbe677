//! The deployment files in `deploy/` against the real binaries.
//!
//! `deploy/check_manifests.py` parses every manifest, validates it against its schema where the
//! validator is installed (`deploy/check-deps.sh`), and lists what must agree with the agent:
//! socket paths, `psst`/`psstd` command lines, and the config bundles a deployment shows psstd.
//! This suite then checks those against the real `psst` and `psstd`: every command line parses,
//! every config passes `psstd check-config` at the path the deployment mounts it, every socket
//! is the agent's default. It also runs the systemd units through `systemd-analyze verify`, proves
//! the uid-only identity of callers in a PID namespace the agent cannot see (what a sidecar
//! without `shareProcessNamespace` gets), and runs the guide's local-store re-encryption steps.
//!
//! Runs as root, like the other end-to-end suites: it uses `unshare` for private mount and PID
//! namespaces. A check that cannot run here says so on stderr (`SKIPPED ...`), uncaptured.

use std::{
    collections::{BTreeMap, BTreeSet},
    fs,
    io::Write,
    os::unix::fs::PermissionsExt,
    path::{Path, PathBuf},
    process::{Child, Command, Output, Stdio},
    time::{Duration, Instant},
};

use nix::{
    sys::signal::{kill, Signal},
    unistd::Pid,
};
use psst_tests::{describe, eventually, psst_bin, psstd_bin, Agent};

/// Where every deployment installs the binaries (deploy/container/Dockerfile, psstd.service).
const INSTALL_DIR: &str = "/usr/local/bin";

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// Says on the terminal, past the test harness's capture, that a check did not run and why.
fn skipped(check: &str, reason: &str) {
    let _ = writeln!(std::io::stderr(), "SKIPPED {check}: {reason}");
}

fn is_root() -> bool {
    nix::unistd::geteuid().is_root()
}

// === the manifest checker ===

/// What `deploy/check_manifests.py` found.
struct Manifests {
    /// Keeps the extracted bundles alive for the test.
    _out: tempfile::TempDir,
    sockets: Vec<(String, String)>,
    socket_dirs: Vec<(String, String)>,
    /// Bundle id -> (directory with the files, where the deployment mounts them).
    bundles: BTreeMap<String, (PathBuf, PathBuf)>,
    /// psst render bundle id -> (directory with its config and templates, where the deployment
    /// mounts them, the memory-backed directories its files go to).
    renders: BTreeMap<String, (PathBuf, PathBuf, BTreeSet<PathBuf>)>,
    commands: Vec<CommandLine>,
}

struct CommandLine {
    origin: String,
    bundle: Option<String>,
    argv: Vec<String>,
}

/// Runs the checker. `report_skips`: print the checks it could not run (one test does, so that
/// the notice appears once).
fn check_manifests(report_skips: bool) -> Manifests {
    let out = tempfile::tempdir().unwrap();
    let run = Command::new("python3")
        .arg(repo().join("deploy/check_manifests.py"))
        .arg(out.path())
        .output()
        .expect(
            "python3 runs deploy/check_manifests.py (deploy/check-deps.sh installs its modules)",
        );
    let stdout = String::from_utf8_lossy(&run.stdout).into_owned();
    let errors: Vec<&str> = stdout
        .lines()
        .filter(|l| l.starts_with("error\t"))
        .collect();
    assert!(
        run.status.success() && errors.is_empty(),
        "deploy/check_manifests.py found problems:\n{}\n{}",
        errors.join("\n"),
        describe(&run)
    );
    let mut manifests = Manifests {
        _out: out,
        sockets: Vec::new(),
        socket_dirs: Vec::new(),
        bundles: BTreeMap::new(),
        renders: BTreeMap::new(),
        commands: Vec::new(),
    };
    for line in stdout.lines() {
        let fields: Vec<&str> = line.split('\t').collect();
        match fields.as_slice() {
            ["socket", origin, path] => manifests
                .sockets
                .push((origin.to_string(), path.to_string())),
            ["socketdir", origin, dir] => manifests
                .socket_dirs
                .push((origin.to_string(), dir.to_string())),
            ["bundle", id, host, mount] => {
                manifests
                    .bundles
                    .insert(id.to_string(), (PathBuf::from(host), PathBuf::from(mount)));
            }
            ["render", id, host, mount] => {
                manifests.renders.insert(
                    id.to_string(),
                    (PathBuf::from(host), PathBuf::from(mount), BTreeSet::new()),
                );
            }
            ["dest", id, dir] => {
                manifests
                    .renders
                    .get_mut(*id)
                    .expect("dest after its render record")
                    .2
                    .insert(PathBuf::from(dir));
            }
            ["command", origin, bundle, argv] => manifests.commands.push(CommandLine {
                origin: origin.to_string(),
                bundle: (*bundle != "-").then(|| bundle.to_string()),
                argv: argv.split('\x1f').map(str::to_owned).collect(),
            }),
            ["skip", check, reason] => {
                if report_skips {
                    skipped(check, reason)
                }
            }
            _ => panic!("unexpected line from check_manifests.py: {line:?}"),
        }
    }
    manifests
}

/// Every deployment must be represented: a checker that silently found nothing proves nothing.
fn assert_covers_every_deployment(what: &str, origins: impl Iterator<Item = String>) {
    let origins: Vec<String> = origins.collect();
    for area in ["systemd", "kubernetes", "ecs", "compose", "container"] {
        assert!(
            origins
                .iter()
                .any(|o| o.starts_with(&format!("deploy/{area}/"))),
            "no {what} found in deploy/{area}/: {origins:?}"
        );
    }
}

#[test]
fn every_manifest_parses_and_validates() {
    let manifests = check_manifests(true);
    // Each deployment's config was found (its server.socket is recorded as `WHERE:NAME.toml`).
    assert_covers_every_deployment(
        "psstd config",
        manifests
            .sockets
            .iter()
            .filter(|(origin, _)| origin.ends_with(".toml"))
            .map(|(origin, _)| origin.clone()),
    );
}

// === socket paths ===

#[test]
fn every_manifest_uses_the_agents_default_socket() {
    let manifests = check_manifests(false);
    let default = Path::new(psst_client::DEFAULT_SOCKET);
    // The reference config documents the default, and the agent's default is the client's.
    let reference = fs::read_to_string(repo().join("deploy/config/psstd.toml")).unwrap();
    assert!(
        reference.contains(&format!("socket = \"{}\"", default.display())),
        "deploy/config/psstd.toml documents another default socket than {}",
        default.display()
    );
    assert_covers_every_deployment(
        "socket path",
        manifests.sockets.iter().map(|(o, _)| o.clone()),
    );
    let wrong: Vec<_> = manifests
        .sockets
        .iter()
        .filter(|(_, path)| Path::new(path) != default)
        .collect();
    assert!(
        wrong.is_empty(),
        "socket paths other than {}: {wrong:#?}",
        default.display()
    );
    let dir = default.parent().unwrap();
    assert_covers_every_deployment(
        "socket directory",
        manifests.socket_dirs.iter().map(|(o, _)| o.clone()),
    );
    let wrong: Vec<_> = manifests
        .socket_dirs
        .iter()
        .filter(|(_, d)| Path::new(d) != dir)
        .collect();
    assert!(
        wrong.is_empty(),
        "socket directories other than {}: {wrong:#?}",
        dir.display()
    );
}

// === command lines and configs ===

#[test]
fn every_command_line_and_config_is_accepted_by_the_binaries() {
    if !is_root() {
        skipped(
            "deploy configs",
            "psstd check-config runs in a private mount namespace (unshare), which needs root",
        );
        return;
    }
    let manifests = check_manifests(false);
    assert_covers_every_deployment(
        "command line",
        manifests.commands.iter().map(|c| c.origin.clone()),
    );
    // psst command lines run against a live agent whose policy grants nothing: a command that
    // parses gets an answer (0 for health and whoami, 5 for a secret), a usage error is exit 2
    // and a malformed reference exit 3.
    let agent = Agent::with_policy("allow_empty = true\n", "");
    for command in &manifests.commands {
        let origin = &command.origin;
        let (program, args) = command.argv.split_first().expect("an argv");
        match program.strip_prefix(&format!("{INSTALL_DIR}/")) {
            Some("psst") => {
                let args: Vec<&str> = args.iter().map(String::as_str).collect();
                let out = match command
                    .bundle
                    .as_ref()
                    .and_then(|b| manifests.renders.get(b))
                {
                    Some(render) => psst_render_as_deployed(&agent, render, &args),
                    None => agent.psst(&args, None),
                };
                let stderr = String::from_utf8_lossy(&out.stderr);
                let answered = match out.status.code() {
                    Some(0) => true,
                    Some(5) => stderr.contains("PERMISSION_DENIED"),
                    _ => false,
                };
                assert!(
                    answered,
                    "{origin}: `{}` is not a command line psst accepts:\n{}",
                    command.argv.join(" "),
                    describe(&out)
                );
                if args == ["health"] {
                    assert_eq!(String::from_utf8_lossy(&out.stdout), "SERVING\n");
                }
            }
            Some("psstd") => {
                let help = Command::new(psstd_bin())
                    .args(args)
                    .arg("--help")
                    .output()
                    .unwrap();
                assert!(
                    help.status.success(),
                    "{origin}: psstd rejects `{}`:\n{}",
                    command.argv.join(" "),
                    describe(&help)
                );
                let bundle = command
                    .bundle
                    .as_ref()
                    .unwrap_or_else(|| panic!("{origin}: psstd runs without a known config"));
                let (host, mount) = &manifests.bundles[bundle];
                let config = config_path(args);
                assert!(
                    config.starts_with(mount),
                    "{origin}: psstd reads {} but the deployment mounts its config at {}",
                    config.display(),
                    mount.display()
                );
                let out = check_config(host, mount, &config);
                assert!(
                    out.status.success(),
                    "{origin}: psstd check-config {} fails as deployed:\n{}",
                    config.display(),
                    describe(&out)
                );
            }
            _ => panic!("{origin}: {program} is not {INSTALL_DIR}/psst or psstd"),
        }
    }

    // Every config and policy in every bundle, including those no command names.
    for (id, (host, mount)) in &manifests.bundles {
        let mut tomls = BTreeSet::new();
        let mut configs = BTreeSet::new();
        let mut policies = BTreeSet::new();
        for entry in fs::read_dir(host).unwrap() {
            let path = entry.unwrap().path();
            let name = path.file_name().unwrap().to_str().unwrap().to_owned();
            tomls.insert(name.clone());
            if fs::read_to_string(&path).unwrap().contains("[[backend]]") {
                configs.insert(name);
            }
        }
        assert!(
            !configs.is_empty(),
            "bundle {id}: no psstd config in {tomls:?}"
        );
        for name in &configs {
            let out = check_config(host, mount, &mount.join(name));
            let stdout = String::from_utf8_lossy(&out.stdout);
            assert!(
                out.status.success(),
                "bundle {id}: psstd check-config {name} fails:\n{}",
                describe(&out)
            );
            // "...: ok (N backend(s), policy /etc/psst/policy.toml with M rule(s))"
            let policy = stdout
                .split("policy ")
                .nth(1)
                .and_then(|rest| rest.split(" with ").next())
                .unwrap_or_else(|| panic!("unexpected check-config output: {stdout}"));
            let policy = Path::new(policy);
            assert_eq!(
                policy.parent(),
                Some(mount.as_path()),
                "bundle {id}: {name} names a policy outside its directory"
            );
            policies.insert(policy.file_name().unwrap().to_str().unwrap().to_owned());
        }
        let unchecked: Vec<_> = tomls
            .iter()
            .filter(|t| !configs.contains(*t) && !policies.contains(*t))
            .collect();
        assert!(
            unchecked.is_empty(),
            "bundle {id}: {unchecked:?} is neither a config nor a policy a config names"
        );
    }
}

/// `psst render ARGS` with its config and templates where the deployment mounts them and a
/// fresh tmpfs directory at each destination directory, in a private mount namespace. `--watch`
/// becomes `--once`: it renders the same way first, then would follow the secrets forever
/// (tests/tests/render.rs tests the following). The agent's policy grants nothing, so a command
/// line that parses, finds its templates and passes the tmpfs check ends in PERMISSION_DENIED.
fn psst_render_as_deployed(
    agent: &Agent,
    (host, mount, dest_dirs): &(PathBuf, PathBuf, BTreeSet<PathBuf>),
    args: &[&str],
) -> Output {
    let scratch: Vec<tempfile::TempDir> = dest_dirs
        .iter()
        .map(|_| tempfile::tempdir_in("/dev/shm").expect("/dev/shm is a tmpfs"))
        .collect();
    let targets: Vec<(&Path, &Path)> = std::iter::once((host.as_path(), mount.as_path()))
        .chain(
            scratch
                .iter()
                .map(|d| d.path())
                .zip(dest_dirs.iter().map(PathBuf::as_path)),
        )
        .collect();
    // in_mount_namespace creates a missing target only in a parent that exists: an empty
    // directory goes first at each missing ancestor (/etc/psst for /etc/psst/render).
    let empty = tempfile::tempdir().unwrap();
    let mut ancestors: Vec<&Path> = targets
        .iter()
        .flat_map(|(_, target)| target.ancestors().skip(1))
        .filter(|a| !a.exists() && a.parent().is_some_and(Path::exists))
        .collect();
    ancestors.sort();
    ancestors.dedup();
    let mut mounts: Vec<(&Path, &Path)> =
        ancestors.into_iter().map(|a| (empty.path(), a)).collect();
    mounts.extend(targets);
    let psst = psst_bin();
    let mut argv: Vec<&std::ffi::OsStr> = vec![
        psst.as_os_str(),
        "--socket".as_ref(),
        agent.socket.as_os_str(),
    ];
    argv.extend(
        args.iter()
            .map(|a| if *a == "--watch" { "--once" } else { *a })
            .map(std::ffi::OsStr::new),
    );
    in_mount_namespace(&mounts, &argv)
}

/// The config a psstd command line reads: `check-config PATH`, else `--config`/`-c`, else the
/// default. (No manifest sets PSST_CONFIG.)
fn config_path(args: &[String]) -> PathBuf {
    if args.first().map(String::as_str) == Some("check-config") {
        return PathBuf::from(&args[1]);
    }
    let mut iter = args.iter();
    while let Some(arg) = iter.next() {
        if arg == "--config" || arg == "-c" {
            return PathBuf::from(iter.next().expect("a value after --config"));
        }
        if let Some(value) = arg.strip_prefix("--config=") {
            return PathBuf::from(value);
        }
    }
    PathBuf::from("/etc/psst/psstd.toml")
}

/// `psstd check-config CONFIG` with the bundle's files at `mount`, as the deployment shows them,
/// so the config is checked unchanged and its policy path resolves as it would there.
fn check_config(host: &Path, mount: &Path, config: &Path) -> Output {
    in_mount_namespace(
        &[(host, mount)],
        &[
            psstd_bin().as_os_str(),
            "check-config".as_ref(),
            config.as_os_str(),
        ],
    )
}

/// Runs `argv` in a private mount namespace where each `(source, target)` directory is
/// bind-mounted. A missing target is created on a throwaway overlay of its parent, so nothing
/// outside the namespace changes.
fn in_mount_namespace(mounts: &[(&Path, &Path)], argv: &[&std::ffi::OsStr]) -> Output {
    const SCRIPT: &str = r#"set -eu
scratch=$1; shift
count=$1; shift
mount -t tmpfs psst-test "$scratch"
i=0
while [ "$i" -lt "$count" ]; do
  src=$1; dst=$2; shift 2
  if [ ! -d "$dst" ]; then
    parent=$(dirname "$dst")
    mkdir "$scratch/upper$i" "$scratch/work$i"
    mount -t overlay psst-test -o "lowerdir=$parent,upperdir=$scratch/upper$i,workdir=$scratch/work$i" "$parent"
    mkdir "$dst"
  fi
  mount --bind "$src" "$dst"
  i=$((i + 1))
done
exec "$@"
"#;
    let scratch = tempfile::tempdir().unwrap();
    let mut command = Command::new("unshare");
    command
        .args([
            "--mount",
            "--propagation",
            "private",
            "--",
            "sh",
            "-c",
            SCRIPT,
            "sh",
        ])
        .arg(scratch.path())
        .arg(mounts.len().to_string());
    for (source, target) in mounts {
        command.arg(source).arg(target);
    }
    command.args(argv).stdin(Stdio::null());
    let out = command.output().expect("unshare (util-linux)");
    assert_ne!(
        out.status.code(),
        Some(127),
        "in_mount_namespace: command not found:\n{}",
        describe(&out)
    );
    out
}

// === systemd ===

#[test]
fn systemd_units_pass_systemd_analyze_verify() {
    let Some(analyze) = which("systemd-analyze") else {
        skipped(
            "systemd-analyze verify",
            "systemd-analyze is not installed (apt-get install systemd; deploy/check-deps.sh)",
        );
        return;
    };
    if !is_root() {
        skipped(
            "systemd-analyze verify",
            "verify checks that ExecStart's binary exists; showing the built psstd at /usr/local/bin needs a private mount namespace (root)",
        );
        return;
    }
    let units = repo().join("deploy/systemd");
    // A template unit is verified as an instance: the one deploy/render/nginx.toml serves.
    let instances = tempfile::tempdir().unwrap();
    let render_unit = instances.path().join("psst-render@nginx.service");
    fs::copy(units.join("psst-render@.service"), &render_unit).unwrap();
    // The units run /usr/local/bin/psstd: show the binaries just built there, in the namespace.
    let bin = tempfile::tempdir().unwrap();
    for name in ["psstd", "psst"] {
        std::os::unix::fs::symlink(psst_tests::bin_dir().join(name), bin.path().join(name))
            .unwrap();
    }
    let out = in_mount_namespace(
        &[(bin.path(), Path::new(INSTALL_DIR))],
        &[
            analyze.as_os_str(),
            "verify".as_ref(),
            units.join("psstd.socket").as_os_str(),
            units.join("psstd.service").as_os_str(),
            render_unit.as_os_str(),
        ],
    );
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    // verify exits 0 on warnings (an unknown key, a bad value): any line about our units fails.
    let ours: Vec<&str> = text
        .lines()
        .filter(|l| l.contains("psstd.") || l.contains("psst-render@"))
        .collect();
    assert!(
        out.status.success() && ours.is_empty(),
        "systemd-analyze verify:\n{}",
        describe(&out)
    );
    // The unit with the drop-in that puts psstd in the AWS agent's place (README), installed
    // as the guide says: psstd.service.d/aws-agent-api.conf beside the unit.
    let with_dropin = tempfile::tempdir().unwrap();
    for unit in ["psstd.service", "psstd.socket"] {
        fs::copy(units.join(unit), with_dropin.path().join(unit)).unwrap();
    }
    let dropin_dir = with_dropin.path().join("psstd.service.d");
    fs::create_dir(&dropin_dir).unwrap();
    fs::copy(
        units.join("psstd-aws-agent-api.conf"),
        dropin_dir.join("aws-agent-api.conf"),
    )
    .unwrap();
    let out = in_mount_namespace(
        &[(bin.path(), Path::new(INSTALL_DIR))],
        &[
            analyze.as_os_str(),
            "verify".as_ref(),
            with_dropin.path().join("psstd.socket").as_os_str(),
            with_dropin.path().join("psstd.service").as_os_str(),
        ],
    );
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        out.status.success() && !text.contains("psstd.") && !text.contains("aws-agent-api"),
        "systemd-analyze verify with the AWS-agent drop-in:\n{}",
        describe(&out)
    );
}

fn which(program: &str) -> Option<PathBuf> {
    std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|dir| dir.join(program))
            .find(|path| path.is_file())
    })
}

// === identity across PID namespaces ===

/// psstd in a PID namespace of its own (`unshare --pid`): callers outside it are invisible to
/// it, as an app container is to a sidecar without `shareProcessNamespace`.
struct NamespacedAgent {
    dir: tempfile::TempDir,
    socket: PathBuf,
    /// The `unshare` process; psstd is its child, pid 1 of the new namespace.
    unshare: Child,
}

impl NamespacedAgent {
    fn start(policy: &str) -> Self {
        let dir = tempfile::Builder::new()
            .prefix("psst-deploy-")
            .tempdir()
            .unwrap();
        fs::set_permissions(dir.path(), fs::Permissions::from_mode(0o755)).unwrap();
        let d = dir.path().display();
        fs::write(
            dir.path().join("psstd.toml"),
            format!(
                "[server]\nsocket = \"{d}/psst.sock\"\n[audit]\nfile = \"{d}/audit.jsonl\"\n\
                 [policy]\nfile = \"{d}/policy.toml\"\n[[backend]]\ntype = \"local\"\ndir = \"{d}/store\"\n"
            ),
        )
        .unwrap();
        fs::write(dir.path().join("policy.toml"), policy).unwrap();
        let log = fs::File::create(dir.path().join("agent.log")).unwrap();
        let unshare = Command::new("unshare")
            .args(["--pid", "--fork", "--mount-proc", "--kill-child", "--"])
            .arg(psstd_bin())
            .arg("--config")
            .arg(dir.path().join("psstd.toml"))
            .env_remove("PSST_LOG")
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .expect("unshare (util-linux)");
        let socket = dir.path().join("psst.sock");
        let mut agent = NamespacedAgent {
            dir,
            socket,
            unshare,
        };
        let deadline = Instant::now() + psst_tests::START_TIMEOUT;
        while std::os::unix::net::UnixStream::connect(&agent.socket).is_err() {
            if let Some(status) = agent.unshare.try_wait().unwrap() {
                panic!("psstd under unshare exited ({status}):\n{}", agent.logs());
            }
            assert!(
                Instant::now() < deadline,
                "psstd did not listen:\n{}",
                agent.logs()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        agent
    }

    fn logs(&self) -> String {
        fs::read_to_string(self.dir.path().join("agent.log")).unwrap_or_default()
    }

    /// psstd's pid as seen from here (outside its namespace).
    fn psstd_pid(&self) -> Pid {
        let id = self.unshare.id();
        let children = fs::read_to_string(format!("/proc/{id}/task/{id}/children")).unwrap();
        let pid = children.split_whitespace().next().expect("psstd runs");
        Pid::from_raw(pid.parse().unwrap())
    }

    /// `psst ARGS` from this PID namespace, where psstd cannot see the caller.
    fn psst_outside(&self, args: &[&str], stdin: Option<&[u8]>) -> Output {
        run(
            Command::new(psst_bin())
                .args(args)
                .env("PSST_SOCKET", &self.socket),
            stdin,
        )
    }

    /// `psst ARGS` from inside psstd's PID namespace, where it can.
    fn psst_inside(&self, args: &[&str]) -> Output {
        run(
            Command::new("nsenter")
                .arg("--target")
                .arg(self.psstd_pid().to_string())
                .arg("--pid")
                .arg("--")
                .arg(psst_bin())
                .args(args)
                .env("PSST_SOCKET", &self.socket),
            None,
        )
    }
}

impl Drop for NamespacedAgent {
    fn drop(&mut self) {
        if let Ok(None) = self.unshare.try_wait() {
            let _ = kill(self.psstd_pid(), Signal::SIGTERM);
            let deadline = Instant::now() + Duration::from_secs(5);
            while Instant::now() < deadline {
                if let Ok(Some(_)) = self.unshare.try_wait() {
                    return;
                }
                std::thread::sleep(Duration::from_millis(10));
            }
            // --kill-child takes psstd down with unshare.
            let _ = self.unshare.kill();
            let _ = self.unshare.wait();
        }
    }
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

#[test]
fn a_caller_in_a_pid_namespace_the_agent_cannot_see_is_known_by_uid_only() {
    if !is_root() {
        skipped(
            "pid-namespace fallback",
            "unshare --pid needs root (CAP_SYS_ADMIN)",
        );
        return;
    }
    let uid = nix::unistd::getuid().as_raw();
    let psst = fs::canonicalize(psst_bin()).unwrap();
    let agent = NamespacedAgent::start(&format!(
        r#"
[[rule]]
name = "by uid"
caller = {{ uid = [{uid}] }}
allow = {{ read = ["local:by-uid/*"], write = ["local:**"] }}

[[rule]]
name = "by executable"
caller = {{ executable = ["{}"] }}
allow = {{ read = ["local:by-exe/*"] }}
"#,
        psst.display()
    ));
    for name in ["local:by-uid/token", "local:by-exe/token"] {
        let put = agent.psst_outside(&["put", name], Some(b"s3cret"));
        assert!(put.status.success(), "{name}: {}", describe(&put));
    }

    // From outside: the kernel reports pid 0, the agent falls back to uid/gid.
    let whoami = agent.psst_outside(&["whoami"], None);
    let text = String::from_utf8_lossy(&whoami.stdout);
    assert!(whoami.status.success(), "{}", describe(&whoami));
    assert!(text.contains("identity  uid"), "{text}");
    assert!(text.contains("pid       0\n"), "{text}");
    assert!(
        !text.contains("exe "),
        "no executable without a pid: {text}"
    );
    assert!(
        text.contains("rules     by uid\n"),
        "only the uid rule matches: {text}"
    );

    let by_uid = agent.psst_outside(&["get", "local:by-uid/token"], None);
    assert_eq!(by_uid.stdout, b"s3cret", "{}", describe(&by_uid));
    let by_exe = agent.psst_outside(&["get", "local:by-exe/token"], None);
    assert_eq!(
        by_exe.status.code(),
        Some(5),
        "an executable rule never matches a uid-only caller: {}",
        describe(&by_exe)
    );

    // The control: from inside psstd's PID namespace the same binary is seen in full, and the
    // executable rule matches (so the denial above is the namespace, not a wrong path).
    let inside = agent.psst_inside(&["whoami"]);
    let text = String::from_utf8_lossy(&inside.stdout);
    assert!(text.contains("identity  process"), "{}", describe(&inside));
    assert!(
        text.contains(&format!("exe       {}", psst.display())),
        "{text}"
    );
    let by_exe = agent.psst_inside(&["get", "local:by-exe/token"]);
    assert_eq!(by_exe.stdout, b"s3cret", "{}", describe(&by_exe));

    let audit_file = agent.dir.path().join("audit.jsonl");
    assert!(
        eventually(Duration::from_secs(5), || fs::read_to_string(&audit_file)
            .is_ok_and(|a| a.lines().count() >= 5)),
        "audit records:\n{}",
        fs::read_to_string(&audit_file).unwrap_or_default()
    );
    let audit = fs::read_to_string(&audit_file).unwrap();
    let denied = audit
        .lines()
        .find(|l| l.contains("\"decision\":\"deny\""))
        .unwrap_or_else(|| panic!("no denial audited:\n{audit}"));
    for field in [
        "\"identity\":\"uid\"",
        "\"pid\":0",
        "\"reference\":\"local:by-exe/token\"",
    ] {
        assert!(denied.contains(field), "{field} missing from {denied}");
    }
    assert!(
        audit.contains("\"identity\":\"process\""),
        "the control call is audited with its process identity:\n{audit}"
    );
}

// === the operations guide's re-encryption of the local store ===

/// The shell block after `<!-- test: rekey -->` in deploy/README.md, run as written against two
/// real agents: every current secret of the old store ends up, byte for byte, in a new store
/// under a new master key.
#[test]
fn the_guides_local_store_reencryption_steps_work() {
    let guide = fs::read_to_string(repo().join("deploy/README.md")).unwrap();
    let block = guide
        .split("<!-- test: rekey -->")
        .nth(1)
        .and_then(|rest| rest.split("```sh\n").nth(1))
        .and_then(|rest| rest.split("```").next())
        .expect("deploy/README.md has a ```sh block after <!-- test: rekey -->");

    let policy = format!(
        "[[rule]]\nname = \"operator\"\ncaller = {{ uid = [{}] }}\nallow = {{ read = [\"local:**\"], list = [\"local:**\"], write = [\"local:**\"] }}\n",
        nix::unistd::getuid()
    );
    let old = Agent::with_policy(&policy, "");
    let new = Agent::with_policy(&policy, "");
    let binary = b"line one\nline two\0\xff trailing newline\n";
    let secrets: [(&str, &[u8]); 3] = [
        ("local:app/db-password", b"hunter2"),
        ("local:app/tls/key.pem", binary),
        ("local:other/token", b"t0ken"),
    ];
    for (name, value) in secrets {
        let put = old.psst(&["put", name], Some(value));
        assert!(put.status.success(), "{}", describe(&put));
    }
    // A newer version: only the current one is carried over.
    old.psst(&["put", "local:app/db-password"], Some(b"hunter3"));

    let bin = psst_tests::bin_dir();
    let path = format!(
        "{}:{}",
        bin.display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let out = Command::new("bash")
        .args(["-euo", "pipefail", "-c", block])
        .env("PATH", path)
        .env("OLD_SOCKET", &old.socket)
        .env("NEW_SOCKET", &new.socket)
        .env_remove("PSST_SOCKET")
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "the guide's steps:\n{block}\n{}",
        describe(&out)
    );

    for (name, value) in [
        ("local:app/db-password", &b"hunter3"[..]),
        ("local:app/tls/key.pem", binary),
        ("local:other/token", b"t0ken"),
    ] {
        let get = new.psst(&["get", name], None);
        assert_eq!(get.stdout, value, "{name}: {}", describe(&get));
    }
    let listed = new.psst(&["ls", "local:", "-l"], None);
    assert_eq!(
        String::from_utf8_lossy(&listed.stdout),
        "local:app/db-password\t1\nlocal:app/tls/key.pem\t1\nlocal:other/token\t1\n",
        "every secret, at version 1 in the new store: {}",
        describe(&listed)
    );
    let key = |agent: &Agent| fs::read(agent.path("store/master.key")).unwrap();
    assert_ne!(key(&old), key(&new), "the new store has its own master key");
}
