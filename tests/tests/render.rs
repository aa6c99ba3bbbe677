//! End to end: `psst render` — the real `psst` CLI against the real `psstd`, with the local store
//! and Secrets Manager in moto (rotated with boto3). Rendered files go to temp dirs in /dev/shm,
//! a tmpfs, as `psst render` wants; one test shows it refusing a disk directory.
//!
//! Runs as root, like the other end-to-end suites: it sets owners and creates (then removes) an
//! unprivileged user for the attack test.

use std::{
    fs,
    os::unix::fs::{MetadataExt, PermissionsExt},
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    sync::{
        atomic::{AtomicBool, Ordering},
        Arc,
    },
    time::{Duration, Instant},
};

use nix::sys::signal::Signal;
use psst_tests::{
    aws::{Moto, AWS_ENV},
    describe, eventually, Agent, Mode,
};

/// root may read, write and watch everything; nothing else is allowed.
const ROOT_ALL: &str = r#"
[[rule]]
name = "root"
caller = { uid = [0] }
allow = { read = ["*:**"], list = ["*:**"], write = ["*:**"], watch = ["*:**"] }
"#;

/// How long a watched change may take to reach a file: the agent's poll (500ms), the debounce,
/// a render, on a loaded 2-core machine.
const WITHIN: Duration = Duration::from_secs(15);

/// An agent with the local store, and `sm` on `moto` when given; watch interval 500ms.
fn agent(moto: Option<&Moto>, policy: &str) -> Agent {
    let sm = moto.map_or(String::new(), |m| {
        format!(
            "[[backend]]\ntype = \"sm\"\nendpoint = \"{}\"\nregion = \"us-east-1\"\n",
            m.endpoint()
        )
    });
    let config = format!(
        "[watch]\ninterval = \"500ms\"\njitter = 0.0\n[server]\nsocket = \"{{dir}}/psst.sock\"\ngrace_period = \"2s\"\n\
         [policy]\nfile = \"{{dir}}/policy.toml\"\nwatch_interval = \"200ms\"\n\
         [[backend]]\ntype = \"local\"\ndir = \"{{dir}}/store\"\n{sm}"
    );
    Agent::start(
        Mode::Config {
            config: &config,
            policy,
        },
        &AWS_ENV,
    )
}

/// A directory on a tmpfs for the rendered files.
fn shm() -> tempfile::TempDir {
    tempfile::Builder::new()
        .prefix("psst-render-e2e-")
        .tempdir_in("/dev/shm")
        .expect("/dev/shm is a tmpfs here")
}

fn put(agent: &Agent, reference: &str, value: &str) {
    let out = agent.psst(&["put", reference], Some(value.as_bytes()));
    assert!(out.status.success(), "{}", describe(&out));
}

fn read(path: &Path) -> String {
    fs::read_to_string(path).unwrap_or_default()
}

/// A `psst render --watch` running in the background; killed on drop. Its stderr goes to a file
/// so a test can read what it reported.
struct Watcher {
    child: Child,
    log: PathBuf,
}

impl Watcher {
    fn start(agent: &Agent, dir: &Path, args: &[&str]) -> Self {
        let log = dir.join("render.log");
        let child = agent
            .psst_command(&[&["render", "--watch"], args].concat())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(fs::File::create(&log).unwrap())
            .spawn()
            .expect("spawn psst render");
        Watcher { child, log }
    }

    fn log(&self) -> String {
        read(&self.log)
    }

    fn assert_running(&mut self) {
        assert!(
            self.child.try_wait().unwrap().is_none(),
            "psst render --watch exited:\n{}",
            self.log()
        );
    }
}

impl Drop for Watcher {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// An unprivileged user that exists for one test and is removed afterwards.
struct TempUser {
    name: &'static str,
    uid: u32,
}

impl TempUser {
    fn create(name: &'static str) -> Self {
        let uid = psst_tests::uid_of(name);
        TempUser { name, uid }
    }
}

impl Drop for TempUser {
    fn drop(&mut self) {
        let _ = Command::new("userdel").arg(self.name).status();
    }
}

#[test]
fn local_and_sm_secrets_render_with_their_mode_and_owner() {
    let moto = Moto::start();
    let agent = agent(Some(&moto), ROOT_ALL);
    let version = moto.boto3(
        "print(sm.create_secret(Name='app/db', SecretString='{\"user\": \"app\", \"password\": \"p=ss:w#rd \\u00e9\"}')['VersionId'])",
    );
    put(&agent, "local:app/api-key", "it's $HOME");
    let dir = shm();
    let template = dir.path().join("app.properties.tmpl");
    fs::write(
        &template,
        "db.user={{ secret('sm:app/db#user') }}\n\
         db.password={{ secret('sm:app/db#password') | properties_escape }}\n\
         db.version={{ secret_metadata('sm:app/db').version }}\n\
         api.key={{ secret('local:app/api-key') | shell_quote }}\n",
    )
    .unwrap();
    let owner = TempUser::create("psst-render-own");
    let dest = dir.path().join("out/application.properties");
    fs::create_dir(dest.parent().unwrap()).unwrap();
    let out = agent.psst(
        &[
            "render",
            "--once",
            "--template",
            &format!("{}:{}", template.display(), dest.display()),
            "--mode",
            "0640",
            "--owner",
            owner.name,
            "--group",
            "0",
        ],
        None,
    );
    assert!(out.status.success(), "{}", describe(&out));
    assert_eq!(
        read(&dest),
        format!(
            "db.user=app\ndb.password=p\\=ss\\:w\\#rd \\u00E9\ndb.version={}\napi.key='it'\\''s $HOME'\n",
            version.trim()
        )
    );
    let meta = fs::metadata(&dest).unwrap();
    assert_eq!(meta.mode() & 0o7777, 0o640);
    assert_eq!((meta.uid(), meta.gid()), (owner.uid, 0));
    // Nothing but the file: no temporary file left beside it.
    assert_eq!(fs::read_dir(dest.parent().unwrap()).unwrap().count(), 1);

    // The default mode is 0600, and the same output again is not rewritten.
    let private = dir.path().join("out/private");
    let args = [
        "render",
        "--template",
        &format!("{}:{}", template.display(), private.display()),
    ];
    assert!(agent.psst(&args, None).status.success());
    assert_eq!(fs::metadata(&private).unwrap().mode() & 0o7777, 0o600);
    let inode = fs::metadata(&private).unwrap().ino();
    let again = agent.psst(&args, None);
    assert!(again.status.success(), "{}", describe(&again));
    assert_eq!(fs::metadata(&private).unwrap().ino(), inode);
    assert!(
        !String::from_utf8_lossy(&again.stderr).contains("wrote"),
        "{}",
        describe(&again)
    );
}

#[test]
fn a_rotation_rerenders_and_the_change_command_runs_exactly_once() {
    let moto = Moto::start();
    let agent = agent(Some(&moto), ROOT_ALL);
    moto.boto3(
        "sm.create_secret(Name='app/db', SecretString='{\"user\": \"app\", \"password\": \"one\"}')",
    );
    let dir = shm();
    let counter = dir.path().join("reloads");
    // Two files with the same reload command, reading two keys of one secret: one rotation
    // changes both files and must reload once.
    let config = dir.path().join("render.toml");
    fs::write(
        &config,
        format!(
            r#"
debounce = "500ms"

[[template]]
contents = "*:*:*:{{{{ secret('sm:app/db#user') }}}}:{{{{ secret('sm:app/db#password') }}}}\n"
destination = "{dir}/.pgpass"
command = "echo reload >> {counter}"

[[template]]
contents = "password={{{{ secret('sm:app/db#password') | ini_quote }}}}\n"
destination = "{dir}/app.ini"
mode = "0640"
command = "echo reload >> {counter}"
"#,
            dir = dir.path().display(),
            counter = counter.display()
        ),
    )
    .unwrap();
    let mut watcher = Watcher::start(&agent, dir.path(), &["--config", config.to_str().unwrap()]);
    let pgpass = dir.path().join(".pgpass");
    assert!(
        eventually(WITHIN, || read(&pgpass) == "*:*:*:app:one\n"),
        "first render: {}",
        watcher.log()
    );
    // Let the watch start and deliver its current versions: they change nothing.
    std::thread::sleep(Duration::from_secs(2));
    assert!(
        !counter.exists(),
        "files created for the first time reload nothing"
    );

    moto.boto3(
        "sm.put_secret_value(SecretId='app/db', SecretString='{\"user\": \"app\", \"password\": \"two\"}')",
    );
    assert!(
        eventually(WITHIN, || read(&pgpass) == "*:*:*:app:two\n"
            && read(&dir.path().join("app.ini")) == "password=\"two\"\n"),
        "rotation: {}",
        watcher.log()
    );
    // Several poll intervals more: no second reload arrives late.
    std::thread::sleep(Duration::from_secs(3));
    assert_eq!(read(&counter), "reload\n", "{}", watcher.log());
    watcher.assert_running();
}

#[test]
fn a_denied_secret_leaves_the_old_file_and_says_which_and_why() {
    let agent = agent(None, ROOT_ALL);
    put(&agent, "local:app/key", "k1");
    put(&agent, "local:other/key", "o1");
    fs::write(
        agent.path("policy.toml"),
        r#"
[[rule]]
name = "root, not other/"
caller = { uid = [0] }
allow = { read = ["local:app/**"], write = ["local:**"], watch = ["local:app/**"] }
"#,
    )
    .unwrap();
    agent.signal(Signal::SIGHUP);
    std::thread::sleep(Duration::from_millis(500));

    let dir = shm();
    let template = dir.path().join("t");
    let dest = dir.path().join("key");
    let flag = format!("{}:{}", template.display(), dest.display());
    fs::write(&template, "key={{ secret('local:app/key') }}\n").unwrap();
    let out = agent.psst(&["render", "--once", "--template", &flag], None);
    assert!(out.status.success(), "{}", describe(&out));
    assert_eq!(read(&dest), "key=k1\n");

    // One-shot: the template now also reads a denied secret.
    fs::write(
        &template,
        "key={{ secret('local:app/key') }}\nother={{ secret('local:other/key') }}\n",
    )
    .unwrap();
    let out = agent.psst(&["render", "--once", "--template", &flag], None);
    assert_eq!(out.status.code(), Some(5), "{}", describe(&out));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("local:other/key") && stderr.contains("PERMISSION_DENIED"),
        "{stderr}"
    );
    assert!(stderr.contains("the previous file is kept"), "{stderr}");
    assert_eq!(read(&dest), "key=k1\n", "the previous file is untouched");

    // Watching: the grant is revoked mid-watch. The file stays, psst render says why and keeps
    // trying; once the grant is back, the change made meanwhile arrives.
    fs::write(&template, "key={{ secret('local:app/key') }}\n").unwrap();
    let mut watcher = Watcher::start(
        &agent,
        dir.path(),
        &["--template", &flag, "--debounce", "100ms"],
    );
    std::thread::sleep(Duration::from_secs(1));
    fs::write(
        agent.path("policy.toml"),
        "[[rule]]\nname = \"root writes only\"\ncaller = { uid = [0] }\nallow = { write = [\"local:**\"] }\n",
    )
    .unwrap();
    agent.signal(Signal::SIGHUP);
    assert!(
        eventually(WITHIN, || watcher.log().contains("PERMISSION_DENIED")),
        "{}",
        watcher.log()
    );
    put(&agent, "local:app/key", "k2");
    std::thread::sleep(Duration::from_secs(1));
    assert_eq!(read(&dest), "key=k1\n", "denied: the previous file is kept");
    watcher.assert_running();
    fs::write(agent.path("policy.toml"), ROOT_ALL).unwrap();
    agent.signal(Signal::SIGHUP);
    assert!(
        eventually(Duration::from_secs(40), || read(&dest) == "key=k2\n"),
        "{}",
        watcher.log()
    );
}

#[test]
fn rendering_goes_on_across_an_agent_restart() {
    let mut agent = agent(None, ROOT_ALL);
    put(&agent, "local:app/token", "t1");
    let dir = shm();
    let template = dir.path().join("t");
    fs::write(&template, "token={{ secret('local:app/token') }}\n").unwrap();
    let dest = dir.path().join("token");
    let counter = dir.path().join("reloads");
    let flag = format!("{}:{}", template.display(), dest.display());
    let command = format!("echo reload >> {}", counter.display());
    let mut watcher = Watcher::start(
        &agent,
        dir.path(),
        &[
            "--template",
            &flag,
            "--debounce",
            "100ms",
            "--command",
            &command,
        ],
    );
    assert!(
        eventually(WITHIN, || read(&dest) == "token=t1\n"),
        "{}",
        watcher.log()
    );
    std::thread::sleep(Duration::from_secs(1));

    // Down for longer than the client's own reconnect window (5s): psst render keeps trying.
    agent.restart_after(Duration::from_secs(7));
    watcher.assert_running();
    put(&agent, "local:app/token", "t2");
    assert!(
        eventually(Duration::from_secs(40), || read(&dest) == "token=t2\n"),
        "{}",
        watcher.log()
    );
    assert!(
        eventually(WITHIN, || read(&counter) == "reload\n"),
        "{}",
        watcher.log()
    );
    // A second restart, a quick one this time.
    agent.restart();
    put(&agent, "local:app/token", "t3");
    assert!(
        eventually(Duration::from_secs(40), || read(&dest) == "token=t3\n"),
        "{}",
        watcher.log()
    );
    watcher.assert_running();
}

#[test]
fn a_reader_never_sees_a_partial_or_empty_file_during_many_rerenders() {
    let agent = agent(None, ROOT_ALL);
    put(&agent, "local:app/blob", "v0");
    let dir = shm();
    let template = dir.path().join("t");
    // About 64 KiB, so a write takes more than one system call and a torn file would show.
    fs::write(
        &template,
        "{% for i in range(8000) %}{{ secret('local:app/blob') }}-{{ i % 10 }}\n{% endfor %}END\n",
    )
    .unwrap();
    let dest = dir.path().join("blob");
    let flag = format!("{}:{}", template.display(), dest.display());
    let watcher = Watcher::start(
        &agent,
        dir.path(),
        &["--template", &flag, "--debounce", "20ms"],
    );
    assert!(
        eventually(WITHIN, || read(&dest).starts_with("v0-0\n")),
        "{}",
        watcher.log()
    );

    let stop = Arc::new(AtomicBool::new(false));
    let reader = {
        let (stop, dest) = (Arc::clone(&stop), dest.clone());
        std::thread::spawn(move || {
            let (mut reads, mut versions) = (0u64, std::collections::BTreeSet::new());
            while !stop.load(Ordering::Relaxed) {
                let text = fs::read_to_string(&dest).expect("the file is always there");
                assert!(
                    text.ends_with("END\n"),
                    "a partial file ({} bytes)",
                    text.len()
                );
                let version = text.split('-').next().unwrap().to_owned();
                assert!(
                    text.lines()
                        .filter(|l| *l != "END")
                        .all(|l| l.starts_with(&format!("{version}-"))),
                    "a file mixing two versions"
                );
                versions.insert(version);
                reads += 1;
            }
            (reads, versions.len())
        })
    };
    let rounds = 30;
    let started = Instant::now();
    for n in 1..=rounds {
        put(&agent, "local:app/blob", &format!("v{n}"));
        let expected = format!("v{n}-0\n");
        assert!(
            eventually(WITHIN, || read(&dest).starts_with(&expected)),
            "round {n}: {}",
            watcher.log()
        );
    }
    stop.store(true, Ordering::Relaxed);
    let (reads, versions) = reader.join().expect("the reader saw only whole files");
    eprintln!(
        "{rounds} re-renders in {:?}; the reader read the file {reads} times, saw {versions} versions",
        started.elapsed()
    );
    assert!(versions > rounds / 2, "the reader saw {versions} versions");

    // Stopped as a sidecar is (SIGTERM): exit 0, no temporary file left beside the file.
    let mut watcher = watcher;
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(watcher.child.id() as i32),
        Signal::SIGTERM,
    )
    .unwrap();
    let status = watcher.child.wait().unwrap();
    assert_eq!(status.code(), Some(0), "{}", watcher.log());
    let names: Vec<String> = fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert!(
        !names.iter().any(|n| n.starts_with(".psst-render-")),
        "{names:?}"
    );
}

#[test]
fn once_exit_codes() {
    let agent = agent(None, ROOT_ALL);
    put(&agent, "local:app/key", "k");
    let dir = shm();
    let dest = dir.path().join("out");
    let run = |template: &str, extra: &[&str]| {
        let path = dir.path().join("t");
        fs::write(&path, template).unwrap();
        let flag = format!("{}:{}", path.display(), dest.display());
        agent.psst(
            &[&["render", "--once", "--template", &flag], extra].concat(),
            None,
        )
    };
    let ok = run("{{ secret('local:app/key') }}", &[]);
    assert_eq!(ok.status.code(), Some(0), "{}", describe(&ok));

    let missing = run("{{ secret('local:app/nope') }}", &[]);
    assert_eq!(missing.status.code(), Some(4), "{}", describe(&missing));
    assert!(String::from_utf8_lossy(&missing.stderr).contains("local:app/nope"));

    let syntax = run("{{ secret('local:app/key') ", &[]);
    assert_eq!(syntax.status.code(), Some(3), "{}", describe(&syntax));
    assert!(String::from_utf8_lossy(&syntax.stderr).contains("syntax error"));

    let not_pem = run("{{ secret('local:app/key') | pem }}", &[]);
    assert_eq!(not_pem.status.code(), Some(3), "{}", describe(&not_pem));
    assert_eq!(read(&dest), "k", "every failure left the first file");

    let bad_config = agent.psst(&["render", "--config", "/nonexistent/render.toml"], None);
    assert_eq!(
        bad_config.status.code(),
        Some(3),
        "{}",
        describe(&bad_config)
    );

    // Unreachable agent: 6.
    let path = dir.path().join("t");
    let down = psst_tests::run_psst_at(
        &dir.path().join("no-agent.sock"),
        &[
            "render",
            "--template",
            &format!("{}:{}", path.display(), dest.display()),
        ],
    );
    assert_eq!(down.status.code(), Some(6), "{}", describe(&down));

    // A destination on disk: refused (3) unless --allow-disk, and nothing is written.
    let disk = tempfile::Builder::new()
        .prefix("psst-render-disk-")
        .tempdir_in(env!("CARGO_TARGET_TMPDIR"))
        .unwrap();
    let on_disk = disk.path().join("out");
    let flag = format!("{}:{}", path.display(), on_disk.display());
    fs::write(&path, "{{ secret('local:app/key') }}").unwrap();
    let refused = agent.psst(&["render", "--template", &flag], None);
    assert_eq!(refused.status.code(), Some(3), "{}", describe(&refused));
    assert!(String::from_utf8_lossy(&refused.stderr).contains("--allow-disk"));
    assert!(!on_disk.exists());
    let allowed = agent.psst(&["render", "--template", &flag, "--allow-disk"], None);
    assert_eq!(allowed.status.code(), Some(0), "{}", describe(&allowed));
    assert!(String::from_utf8_lossy(&allowed.stderr).contains("warning"));
    assert_eq!(read(&on_disk), "k");

    // A destination that cannot be written: 1.
    let flag = format!(
        "{}:{}",
        path.display(),
        dir.path().join("no/such/dir/out").display()
    );
    let unwritable = agent.psst(&["render", "--template", &flag], None);
    assert_eq!(
        unwritable.status.code(),
        Some(1),
        "{}",
        describe(&unwritable)
    );
}

#[test]
fn another_user_can_neither_read_the_file_nor_redirect_the_write() {
    let agent = agent(None, ROOT_ALL);
    put(&agent, "local:app/key", "topsecret");
    let evil = TempUser::create("psst-render-evl");
    let dir = shm();
    // A directory the other user may write in (as a shared emptyDir would be).
    let shared = dir.path().join("shared");
    fs::create_dir(&shared).unwrap();
    fs::set_permissions(&shared, fs::Permissions::from_mode(0o777)).unwrap();
    fs::set_permissions(dir.path(), fs::Permissions::from_mode(0o755)).unwrap();
    let dest = shared.join("key");
    let bait = shared.join("bait");
    // The other user plants a symlink where the file will go, to a file of their own.
    let as_evil = |script: &str| {
        Command::new("runuser")
            .args(["-u", evil.name, "--", "sh", "-c", script])
            .output()
            .unwrap()
    };
    let planted = as_evil(&format!(
        "touch {bait} && chmod 666 {bait} && ln -s {bait} {dest}",
        bait = bait.display(),
        dest = dest.display()
    ));
    assert!(planted.status.success(), "{}", describe(&planted));

    let template = dir.path().join("t");
    fs::write(&template, "{{ secret('local:app/key') }}\n").unwrap();
    let out = agent.psst(
        &[
            "render",
            "--template",
            &format!("{}:{}", template.display(), dest.display()),
        ],
        None,
    );
    assert!(out.status.success(), "{}", describe(&out));
    assert_eq!(read(&bait), "", "the write did not follow the symlink");
    let meta = fs::symlink_metadata(&dest).unwrap();
    assert!(meta.is_file(), "the symlink was replaced by the file");
    assert_eq!((meta.uid(), meta.mode() & 0o7777), (0, 0o600));

    let peek = as_evil(&format!("cat {}", dest.display()));
    assert!(!peek.status.success(), "{}", describe(&peek));
    assert!(!String::from_utf8_lossy(&peek.stdout).contains("topsecret"));
}

#[test]
fn the_example_templates_in_deploy_render_produce_the_files_their_programs_read() {
    let moto = Moto::start();
    let agent = agent(Some(&moto), ROOT_ALL);
    let cert = "-----BEGIN CERTIFICATE-----\nMIIBszCCAVmgAwIBAgIUQ\n-----END CERTIFICATE-----\n";
    let key = "-----BEGIN PRIVATE KEY-----\nMIGHAgEAMBMGByqGSM49\n-----END PRIVATE KEY-----\n";
    // The certificate as a web form stores it (CRLF), the key with its line breaks escaped.
    let tls = serde_json::json!({
        "certificate": cert.replace('\n', "\r\n"),
        "private_key": key.trim_end().replace('\n', "\\n"),
    });
    let db = serde_json::json!({
        "host": "db.internal", "port": 5432, "username": "orders", "password": "p:w\\d=\u{e9}",
    });
    let version = moto.boto3(&format!(
        "sm.create_secret(Name='prod/web/tls', SecretString={tls:?})\n\
         print(sm.create_secret(Name='prod/orders/db', SecretString={db:?})['VersionId'])",
        tls = tls.to_string(),
        db = db.to_string(),
    ));
    let examples = Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy/render");
    let dir = shm();
    let config = dir.path().join("render.toml");
    let entry = |source: &str, dest: &str| {
        format!(
            "[[template]]\nsource = \"{}\"\ndestination = \"{}\"\n",
            examples.join(source).display(),
            dir.path().join(dest).display()
        )
    };
    fs::write(
        &config,
        [
            entry("nginx-tls.crt.tmpl", "tls.crt"),
            entry("nginx-tls.key.tmpl", "tls.key"),
            entry("pgpass.tmpl", ".pgpass"),
            entry("application.properties.tmpl", "application.properties"),
        ]
        .concat(),
    )
    .unwrap();
    let out = agent.psst(&["render", "--config", config.to_str().unwrap()], None);
    assert!(out.status.success(), "{}", describe(&out));
    assert_eq!(read(&dir.path().join("tls.crt")), cert);
    assert_eq!(read(&dir.path().join("tls.key")), key);
    assert_eq!(
        read(&dir.path().join(".pgpass")),
        "db.internal:5432:*:orders:p\\:w\\\\d=\u{e9}\n"
    );
    assert_eq!(
        read(&dir.path().join("application.properties")),
        format!(
            "# Rendered by psst render from sm:prod/orders/db version {}.\n\
             spring.datasource.url=jdbc\\:postgresql\\://db.internal\\:5432/orders\n\
             spring.datasource.username=orders\n\
             spring.datasource.password=p\\:w\\\\d\\=\\u00E9\n",
            version.trim()
        )
    );
}

#[test]
fn a_replaced_file_signals_the_pid_files_process_and_reloads_the_unit_once_each() {
    let agent = agent(None, ROOT_ALL);
    put(&agent, "local:app/cfg", "a");
    let dir = shm();
    let template = dir.path().join("t");
    fs::write(&template, "{{ secret('local:app/cfg') }}\n").unwrap();
    // systemctl is not usable in this container: a stand-in on PATH records how it was called.
    let bin = dir.path().join("bin");
    fs::create_dir(&bin).unwrap();
    let calls = dir.path().join("systemctl-calls");
    fs::write(
        bin.join("systemctl"),
        format!("#!/bin/sh\necho \"$@\" >> {}\n", calls.display()),
    )
    .unwrap();
    fs::set_permissions(bin.join("systemctl"), fs::Permissions::from_mode(0o755)).unwrap();
    let path = format!(
        "{}:{}",
        bin.display(),
        std::env::var("PATH").unwrap_or_default()
    );
    // A daemon that re-reads its config on SIGHUP, and says so.
    let hups = dir.path().join("hups");
    let mut daemon = Command::new("sh");
    daemon.arg("-c").arg(format!(
        "trap 'echo hup >> {}' HUP; while :; do sleep 0.05; done",
        hups.display()
    ));
    // A shell cannot trap a signal that was ignored when it started (POSIX): under `nohup`,
    // as a CI runner may start the suites, SIGHUP would be, and the daemon would never say so.
    // SAFETY: between fork and exec only `sigaction`, which is async-signal-safe, is called.
    unsafe {
        std::os::unix::process::CommandExt::pre_exec(&mut daemon, || {
            nix::sys::signal::signal(Signal::SIGHUP, nix::sys::signal::SigHandler::SigDfl)
                .map(|_| ())
                .map_err(std::io::Error::from)
        });
    }
    let mut daemon = daemon.spawn().unwrap();
    let pid_file = dir.path().join("daemon.pid");
    fs::write(&pid_file, format!("{}\n", daemon.id())).unwrap();

    let config = dir.path().join("render.toml");
    fs::write(
        &config,
        format!(
            "[[template]]\nsource = \"{t}\"\ndestination = \"{d}/a.conf\"\nsignal = \"SIGHUP\"\npid_file = \"{p}\"\n\
             [[template]]\nsource = \"{t}\"\ndestination = \"{d}/b.conf\"\nreload_unit = \"app.service\"\n\
             [[template]]\nsource = \"{t}\"\ndestination = \"{d}/c.conf\"\nreload_unit = \"app.service\"\n",
            t = template.display(),
            d = dir.path().display(),
            p = pid_file.display()
        ),
    )
    .unwrap();
    let render = || {
        let out = agent
            .psst_command(&["render", "--config", config.to_str().unwrap()])
            .env("PATH", &path)
            .output()
            .unwrap();
        assert!(out.status.success(), "{}", describe(&out));
    };
    render();
    std::thread::sleep(Duration::from_millis(300));
    assert!(
        !hups.exists() && !calls.exists(),
        "created files reload nothing"
    );
    render();
    assert!(!calls.exists(), "unchanged files reload nothing");

    put(&agent, "local:app/cfg", "b");
    render();
    assert!(eventually(Duration::from_secs(5), || read(&hups) == "hup\n"));
    assert_eq!(
        read(&calls),
        "reload -- app.service\n",
        "two files, one unit: one reload"
    );
    let _ = daemon.kill();
    let _ = daemon.wait();
}
