//! What `/proc/<pid>` says about the connecting process, read on the blocking pool, and the checks
//! that it is the process that connected: it started no later than the connection was accepted,
//! and it still holds its pid once everything has been read (through its pidfd when the kernel
//! gives one, else by its start time).

use std::{
    fs,
    os::unix::fs::MetadataExt,
    path::{Path, PathBuf},
    time::Duration,
};

use super::{
    cgroup,
    peer::{pidfd_pid, Binding, PidfdState},
    IdentityError,
};

/// The facts about one process that policy can select on, before name lookups and attestation.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct ProcessFacts {
    pub supplementary_gids: Vec<u32>,
    pub executable: Option<String>,
    pub cgroup: Option<String>,
    pub container_id: Option<String>,
    pub pod_uid: Option<String>,
    pub systemd_unit: Option<String>,
}

/// Reads `/proc/<pid>` under `proc_root` for the process `binding` names.
pub(super) fn read(
    proc_root: &Path,
    pid: i32,
    binding: &Binding,
    accepted_at: Option<Duration>,
) -> Result<ProcessFacts, IdentityError> {
    if matches!(binding, Binding::Exited) {
        return Err(IdentityError::Gone(pid));
    }
    let dir = proc_root.join(pid.to_string());
    let started = start_time(&dir).ok_or(IdentityError::Gone(pid))?;
    // A process cannot have connected before it existed: one that started after the accept holds
    // a pid the connecting process gave up. (Start times are whole clock ticks, rounded down, so
    // this never refuses the real caller.)
    if let Some(accepted) = accepted_at {
        if started > ticks(accepted) {
            return Err(IdentityError::StartedAfterConnect(pid));
        }
    }

    let supplementary_gids = fs::read_to_string(dir.join("status"))
        .map(|s| supplementary_gids(&s))
        .unwrap_or_default();
    let executable = verified_executable(&dir);
    let cgroup = fs::read_to_string(dir.join("cgroup"))
        .ok()
        .and_then(|c| cgroup::cgroup_path(&c));
    let (container_id, pod_uid, systemd_unit) = match &cgroup {
        Some(path) => (
            cgroup::container_id(path),
            cgroup::pod_uid(path),
            cgroup::systemd_unit(path),
        ),
        None => (None, None, None),
    };

    confirm_same_process(proc_root, &dir, pid, binding, started)?;
    Ok(ProcessFacts {
        supplementary_gids,
        executable,
        cgroup,
        container_id,
        pod_uid,
        systemd_unit,
    })
}

/// Everything read above belonged to the process that connected: with a pidfd, that process is
/// alive and holds `pid` (so the pid was never free to be reused); without one, the start time
/// is unchanged.
fn confirm_same_process(
    proc_root: &Path,
    dir: &Path,
    pid: i32,
    binding: &Binding,
    started: u64,
) -> Result<(), IdentityError> {
    if let Binding::Pidfd(fd) = binding {
        match pidfd_pid(proc_root, fd) {
            PidfdState::Alive(now) if now == pid => return Ok(()),
            PidfdState::Alive(_) => return Err(IdentityError::PidReused(pid)),
            PidfdState::Exited => return Err(IdentityError::Gone(pid)),
            PidfdState::Unknown => {}
        }
    }
    match start_time(dir) {
        Some(again) if again == started => Ok(()),
        Some(_) => Err(IdentityError::PidReused(pid)),
        None => Err(IdentityError::Gone(pid)),
    }
}

/// The executable's path as the process sees it, if the same path names the same file (device
/// and inode) for the agent. A process in another mount namespace (a container, or a user that
/// bind-mounted another binary over an allowed path with `unshare -Urm`) shows a path that
/// need not be what the agent sees there: such a caller has no executable and matches no
/// `executable` rule.
fn verified_executable(dir: &Path) -> Option<String> {
    let exe = dir.join("exe");
    let path: PathBuf = fs::read_link(&exe).ok()?;
    // stat through the magic link reaches the very file the process runs, whatever its mounts.
    let running = fs::metadata(&exe).ok()?;
    let named = fs::metadata(&path).ok()?;
    if running.dev() != named.dev() || running.ino() != named.ino() {
        tracing::debug!(
            path = %path.display(),
            "the caller's executable is another file than its path names here"
        );
        return None;
    }
    Some(path.to_string_lossy().into_owned())
}

/// Field 22 of `/proc/<pid>/stat`: the process start time in clock ticks since boot.
pub(super) fn start_time(dir: &Path) -> Option<u64> {
    let stat = fs::read_to_string(dir.join("stat")).ok()?;
    parse_start_time(&stat)
}

pub(super) fn parse_start_time(stat: &str) -> Option<u64> {
    // The command name (field 2) is in parentheses and may itself contain ") ", so count fields
    // from the last ')'. Field 3 is the first after it; starttime is field 22.
    let after = &stat[stat.rfind(')')? + 1..];
    after.split_whitespace().nth(22 - 3)?.parse().ok()
}

/// A time since boot in the clock ticks `/proc/<pid>/stat` counts, rounded down.
fn ticks(since_boot: Duration) -> u64 {
    let per_second = nix::unistd::sysconf(nix::unistd::SysconfVar::CLK_TCK)
        .ok()
        .flatten()
        .and_then(|t| u64::try_from(t).ok())
        .unwrap_or(100);
    (since_boot.as_nanos() * u128::from(per_second) / 1_000_000_000) as u64
}

fn supplementary_gids(status: &str) -> Vec<u32> {
    status
        .lines()
        .find_map(|line| line.strip_prefix("Groups:"))
        .map(|groups| {
            groups
                .split_whitespace()
                .filter_map(|g| g.parse().ok())
                .collect()
        })
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    pub(super) const CONTAINER: &str =
        "3f1e2d9c8b7a6f5e4d3c2b1a0f9e8d7c6b5a4f3e2d1c0b9a8f7e6d5c4b3a2f1e";

    pub(super) fn stat_line(comm: &str, start: u64) -> String {
        // pid (comm) state ppid pgrp session tty tpgid flags minflt cminflt majflt cmajflt utime
        // stime cutime cstime priority nice threads itrealvalue starttime ...
        format!("42 ({comm}) S 1 42 42 0 -1 4194560 100 0 0 0 1 2 0 0 20 0 1 0 {start} 12345 67")
    }

    /// A fake `/proc` with process 42, started at tick 777, running `exe_target`.
    pub(super) fn fake_proc(exe_target: &Path) -> tempfile::TempDir {
        let root = tempfile::tempdir().unwrap();
        let dir = root.path().join("42");
        fs::create_dir_all(&dir).unwrap();
        fs::write(dir.join("stat"), stat_line("app", 777)).unwrap();
        fs::write(dir.join("status"), "Name:\tapp\nGroups:\t4 24 27 \n").unwrap();
        fs::write(
            dir.join("cgroup"),
            format!("0::/system.slice/docker-{CONTAINER}.scope\n"),
        )
        .unwrap();
        std::os::unix::fs::symlink(exe_target, dir.join("exe")).unwrap();
        root
    }

    fn read_42(root: &Path, accepted_at: Option<Duration>) -> Result<ProcessFacts, IdentityError> {
        read(root, 42, &Binding::StartTime, accepted_at)
    }

    #[test]
    fn start_time_survives_hostile_command_names() {
        assert_eq!(parse_start_time(&stat_line("app", 99)), Some(99));
        assert_eq!(parse_start_time(&stat_line("a) S 1 2 3 (b", 99)), Some(99));
        assert_eq!(parse_start_time("garbage"), None);
    }

    #[test]
    fn reads_the_facts() {
        let proc_root = fake_proc(Path::new("/bin/sh"));
        let facts = read_42(proc_root.path(), None).unwrap();
        assert_eq!(facts.supplementary_gids, vec![4, 24, 27]);
        assert_eq!(facts.executable.as_deref(), Some("/bin/sh"));
        assert_eq!(facts.container_id.as_deref(), Some(CONTAINER));
    }

    #[test]
    fn a_process_started_after_the_accept_is_refused() {
        let proc_root = fake_proc(Path::new("/bin/sh"));
        let tick = Duration::from_secs(1) / 100;
        // Started at tick 777: an accept during tick 776 is before it, one during 777 is not.
        let accepted_before = tick * 776 + tick / 2;
        assert_eq!(
            read_42(proc_root.path(), Some(accepted_before)).unwrap_err(),
            IdentityError::StartedAfterConnect(42)
        );
        assert!(read_42(proc_root.path(), Some(tick * 777)).is_ok());
    }

    #[test]
    fn an_exited_binding_is_refused_without_reading() {
        let proc_root = fake_proc(Path::new("/bin/sh"));
        assert_eq!(
            read(proc_root.path(), 42, &Binding::Exited, None).unwrap_err(),
            IdentityError::Gone(42)
        );
    }

    #[test]
    fn an_executable_path_naming_another_file_is_not_trusted() {
        // What `exe` reaches and what its path names here differ (the real case, a bind mount in
        // another mount namespace, is in tests/tests/identity.rs). In the fake, the link is
        // relative, so it reaches a file beside it while its text names nothing where the
        // agent runs.
        let name = "psst-test-binary-only-in-the-fake-proc";
        let proc_root = fake_proc(Path::new(name));
        fs::write(
            proc_root.path().join("42").join(name),
            b"the running binary",
        )
        .unwrap();
        assert!(!Path::new(name).exists());
        let facts = read_42(proc_root.path(), None);
        assert_eq!(facts.unwrap().executable, None);

        let same = tempfile::tempdir().unwrap();
        let binary = same.path().join("bin");
        fs::write(&binary, b"x").unwrap();
        let proc_root = fake_proc(&binary);
        assert_eq!(
            read_42(proc_root.path(), None)
                .unwrap()
                .executable
                .as_deref(),
            binary.to_str()
        );
    }

    #[test]
    fn a_pid_reused_during_the_reads_is_refused() {
        let proc_root = fake_proc(Path::new("/bin/sh"));
        let dir = proc_root.path().join("42");
        // Make `status` a FIFO: the reader blocks on it after its first look at `stat`, and this
        // thread swaps in another process's start time before letting it go on.
        fs::remove_file(dir.join("status")).unwrap();
        nix::unistd::mkfifo(&dir.join("status"), nix::sys::stat::Mode::S_IRWXU).unwrap();
        let swapper = {
            let dir = dir.clone();
            std::thread::spawn(move || {
                use std::io::Write;
                let mut status = fs::OpenOptions::new()
                    .write(true)
                    .open(dir.join("status"))
                    .unwrap();
                fs::write(dir.join("stat"), stat_line("other", 778)).unwrap();
                status.write_all(b"Groups:\n").unwrap();
            })
        };
        let err = read_42(proc_root.path(), None).unwrap_err();
        swapper.join().unwrap();
        assert_eq!(err, IdentityError::PidReused(42));
    }
}
