//! The audit trail's durability. Records wait in a journal (a shared memory map beside the
//! socket) and a writer thread writes them in batches; none of a request that was answered may
//! be lost when the agent stops, is killed, or its journal is tampered with.
//!
//! `flush_interval = "1h"` keeps the batches from being written while a test looks: after the
//! first record (which wakes the idle writer) every record stays in the journal until the agent
//! stops, is killed and restarted, or the journal fills.

use std::{
    os::unix::fs::{MetadataExt, PermissionsExt},
    process::{Command, Stdio},
    time::Duration,
};

use nix::sys::signal::Signal;
use psst_tests::{describe, eventually, psstd_bin, Agent, TempUser};

const POLICY: &str = "[[rule]]\nname = \"root\"\ncaller = { uid = [0] }\nallow = { read = [\"local:**\"], write = [\"local:**\"] }\n";
const CONFIG: &str = "[audit]\nfile = \"{dir}/audit.jsonl\"\nflush_interval = \"1h\"\n";
const READS: usize = 30;

/// The read records in `text`.
fn reads_in(text: &str) -> usize {
    text.lines()
        .filter(|l| l.contains("\"operation\":\"read\""))
        .count()
}

fn reads(agent: &Agent) -> usize {
    reads_in(&std::fs::read_to_string(agent.path("audit.jsonl")).unwrap_or_default())
}

/// Writes a secret, then reads it `READS` times, on a runtime of its own that is gone (with
/// its connection) when this returns.
fn read_many(agent: &Agent) {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        let client = agent.client().await;
        client.put("local:audited", b"v").await.unwrap();
        for _ in 0..READS {
            assert_eq!(client.get("local:audited").await.unwrap().value(), b"v");
        }
    });
}

#[test]
fn records_of_answered_requests_survive_the_agent_being_killed() {
    let mut agent = Agent::with_policy(POLICY, CONFIG);
    read_many(&agent);
    let journal = agent.path("psstd-audit.journal");
    assert_eq!(
        std::fs::metadata(&journal).unwrap().mode() & 0o777,
        0o600,
        "the journal is the agent's alone"
    );
    let before = reads(&agent);
    assert!(
        before < READS,
        "the records wait in the journal, not yet in the file ({before} written)"
    );
    agent.kill();
    assert_eq!(reads(&agent), before, "nothing wrote them on the way down");
    agent.start_again();
    // Written at start, before the socket accepts: every answered read has its record.
    assert_eq!(reads(&agent), READS, "{}", agent.logs());
    assert!(
        agent.logs().contains("an earlier run left in its journal"),
        "{}",
        agent.logs()
    );
    // And once only: a clean stop now writes nothing again.
    agent.stop();
    assert_eq!(reads(&agent), READS);
}

#[test]
fn a_clean_stop_writes_every_record_first() {
    let mut agent = Agent::with_policy(POLICY, CONFIG);
    read_many(&agent);
    assert!(reads(&agent) < READS);
    let status = agent.stop();
    assert!(status.success(), "{status}");
    assert_eq!(reads(&agent), READS, "{}", agent.logs());
    assert_eq!(
        std::fs::metadata(agent.path("psstd-audit.journal"))
            .unwrap()
            .len(),
        4096 + (1 << 20),
        "the journal keeps its size"
    );
}

#[test]
fn sighup_writes_the_waiting_records_to_the_file_being_rotated() {
    let agent = Agent::with_policy(POLICY, CONFIG);
    read_many(&agent);
    let audit = agent.path("audit.jsonl");
    let moved = agent.path("audit.jsonl.1");
    std::fs::rename(&audit, &moved).unwrap();
    agent.signal(Signal::SIGHUP);
    assert!(eventually(Duration::from_secs(5), || audit.exists()));
    let old = std::fs::read_to_string(&moved).unwrap();
    assert_eq!(
        reads_in(&old),
        READS,
        "the rotated file holds every record made before the signal"
    );
}

/// An unprivileged user who can write where the journal goes plants a link to a file of the
/// agent's user, or a journal of their own to read the records from: the agent refuses to
/// start, says why, and touches neither.
#[test]
fn a_journal_planted_by_another_user_is_refused() {
    let attacker = TempUser::new("psst-e2e-journal");
    let dir = tempfile::Builder::new()
        .prefix("psst-e2e-")
        .tempdir()
        .unwrap();
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    // A directory anyone may write to (as /tmp is), holding the configured journal path.
    let open_dir = dir.path().join("shared");
    std::fs::create_dir(&open_dir).unwrap();
    std::fs::set_permissions(&open_dir, std::fs::Permissions::from_mode(0o1777)).unwrap();
    let journal = open_dir.join("journal");
    let victim = dir.path().join("victim");
    std::fs::write(&victim, b"the agent's own file").unwrap();
    let d = dir.path().display();
    std::fs::write(dir.path().join("policy.toml"), POLICY).unwrap();
    std::fs::write(
        dir.path().join("psstd.toml"),
        format!(
            "[server]\nsocket = \"{d}/psst.sock\"\n[audit]\njournal = \"{}\"\n\
             [policy]\nfile = \"{d}/policy.toml\"\n[[backend]]\ntype = \"local\"\ndir = \"{d}/store\"\n",
            journal.display()
        ),
    )
    .unwrap();
    let as_attacker = |args: &[&str]| {
        let out = Command::new("runuser")
            .args(["-u", attacker.name(), "--"])
            .args(args)
            .output()
            .unwrap();
        assert!(out.status.success(), "{}", describe(&out));
    };
    let start = || {
        Command::new(psstd_bin())
            .arg("--config")
            .arg(dir.path().join("psstd.toml"))
            .stdin(Stdio::null())
            .output()
            .unwrap()
    };

    as_attacker(&[
        "ln",
        "-s",
        victim.to_str().unwrap(),
        journal.to_str().unwrap(),
    ]);
    let out = start();
    assert!(!out.status.success(), "{}", describe(&out));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("audit journal"), "{stderr}");
    assert_eq!(std::fs::read(&victim).unwrap(), b"the agent's own file");

    std::fs::remove_file(&journal).unwrap();
    as_attacker(&["sh", "-c", &format!("umask 077; : > {}", journal.display())]);
    let out = start();
    assert!(!out.status.success(), "{}", describe(&out));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains(&format!("owned by uid {}", attacker.uid())),
        "{stderr}"
    );
    assert_eq!(std::fs::metadata(&journal).unwrap().len(), 0, "not written");
}

/// The attacker cannot read the records waiting in the journal either.
#[test]
fn another_user_cannot_read_the_journal() {
    let agent = Agent::with_policy(POLICY, CONFIG);
    read_many(&agent);
    let reader = TempUser::new("psst-e2e-journal-reader");
    let out = Command::new("runuser")
        .args(["-u", reader.name(), "--", "cat"])
        .arg(agent.path("psstd-audit.journal"))
        .output()
        .unwrap();
    assert!(!out.status.success(), "{}", describe(&out));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("Permission denied"),
        "{}",
        describe(&out)
    );
}
