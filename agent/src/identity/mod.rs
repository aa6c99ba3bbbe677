//! Who is calling: the kernel's peer credentials of the connection (uid, gid, pid), enriched
//! from `/proc/<pid>`: executable, user and group names, supplementary groups, cgroup, and what
//! the cgroup says (container id, Kubernetes pod UID, systemd unit).
//!
//! A caller is identified once per connection, at accept. To defend against PID reuse (the
//! caller exits and another process takes its pid while we read `/proc`), the process start time
//! is read before and after enrichment and must match.

pub mod cgroup;

use std::{
    fmt, fs,
    path::{Path, PathBuf},
};

/// What the kernel says about the peer of a Unix socket (`SO_PEERCRED`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PeerCred {
    pub uid: u32,
    pub gid: u32,
    /// None or 0 when the peer's process is not visible in our PID namespace.
    pub pid: Option<i32>,
}

/// How much of the caller the agent could see.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum IdentitySource {
    /// From `/proc/<pid>`: every selector can match.
    Process,
    /// Only uid and gid: the caller's process is in a PID namespace the agent cannot see, so
    /// rules that select on executable, cgroup, container, pod or unit do not match it.
    Uid,
}

impl IdentitySource {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Process => "process",
            Self::Uid => "uid",
        }
    }
}

/// The calling process, as policy sees it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Caller {
    pub uid: u32,
    pub gid: u32,
    pub pid: i32,
    pub user: Option<String>,
    pub group: Option<String>,
    pub supplementary_gids: Vec<u32>,
    /// Supplementary group names, where they resolve.
    pub groups: Vec<String>,
    pub executable: Option<String>,
    pub cgroup: Option<String>,
    pub container_id: Option<String>,
    pub pod_uid: Option<String>,
    pub systemd_unit: Option<String>,
    pub source: IdentitySource,
}

impl Caller {
    /// A caller known only by uid and gid.
    pub fn uid_only(uid: u32, gid: u32) -> Self {
        Self {
            uid,
            gid,
            pid: 0,
            user: user_name(uid),
            group: group_name(gid),
            supplementary_gids: Vec::new(),
            groups: Vec::new(),
            executable: None,
            cgroup: None,
            container_id: None,
            pod_uid: None,
            systemd_unit: None,
            source: IdentitySource::Uid,
        }
    }
}

impl fmt::Display for Caller {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "uid={} pid={}", self.uid, self.pid)?;
        if let Some(exe) = &self.executable {
            write!(f, " exe={exe}")?;
        }
        Ok(())
    }
}

#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum IdentityError {
    #[error("the connection carries no peer credentials")]
    NoCredentials,
    #[error("calling process {0} exited before it could be identified")]
    Gone(i32),
    #[error("calling process {0} was replaced while being identified (pid reuse)")]
    PidReused(i32),
    #[error("the caller could not be identified in time")]
    TimedOut,
}

/// Turns a connection's peer credentials into a `Caller`. The composition root picks the
/// implementation; tests use a fake `/proc`.
pub trait IdentityResolver: Send + Sync + 'static {
    fn resolve(&self, peer: PeerCred) -> Result<Caller, IdentityError>;
}

/// Resolves callers from a procfs mount (normally `/proc`).
#[derive(Clone, Debug)]
pub struct ProcResolver {
    proc_root: PathBuf,
}

impl ProcResolver {
    pub fn new(proc_root: impl Into<PathBuf>) -> Self {
        Self {
            proc_root: proc_root.into(),
        }
    }
}

impl Default for ProcResolver {
    fn default() -> Self {
        Self::new("/proc")
    }
}

impl IdentityResolver for ProcResolver {
    fn resolve(&self, peer: PeerCred) -> Result<Caller, IdentityError> {
        let pid = match peer.pid {
            Some(pid) if pid > 0 => pid,
            _ => return Ok(Caller::uid_only(peer.uid, peer.gid)),
        };
        let dir = self.proc_root.join(pid.to_string());
        let started = start_time(&dir).ok_or(IdentityError::Gone(pid))?;

        let supplementary_gids = fs::read_to_string(dir.join("status"))
            .map(|s| supplementary_gids(&s))
            .unwrap_or_default();
        let executable = fs::read_link(dir.join("exe"))
            .ok()
            .map(|p| p.to_string_lossy().into_owned());
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

        match start_time(&dir) {
            Some(again) if again == started => {}
            Some(_) => return Err(IdentityError::PidReused(pid)),
            None => return Err(IdentityError::Gone(pid)),
        }
        Ok(Caller {
            uid: peer.uid,
            gid: peer.gid,
            pid,
            user: user_name(peer.uid),
            group: group_name(peer.gid),
            groups: supplementary_gids
                .iter()
                .filter_map(|g| group_name(*g))
                .collect(),
            supplementary_gids,
            executable,
            cgroup,
            container_id,
            pod_uid,
            systemd_unit,
            source: IdentitySource::Process,
        })
    }
}

/// Field 22 of `/proc/<pid>/stat`: the process start time in clock ticks since boot.
fn start_time(dir: &Path) -> Option<u64> {
    let stat = fs::read_to_string(dir.join("stat")).ok()?;
    parse_start_time(&stat)
}

fn parse_start_time(stat: &str) -> Option<u64> {
    // The command name (field 2) is in parentheses and may itself contain ") ", so count fields
    // from the last ')'. Field 3 is the first after it; starttime is field 22.
    let after = &stat[stat.rfind(')')? + 1..];
    after.split_whitespace().nth(22 - 3)?.parse().ok()
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

fn user_name(uid: u32) -> Option<String> {
    nix::unistd::User::from_uid(uid.into())
        .ok()
        .flatten()
        .map(|u| u.name)
}

fn group_name(gid: u32) -> Option<String> {
    nix::unistd::Group::from_gid(gid.into())
        .ok()
        .flatten()
        .map(|g| g.name)
}

#[cfg(test)]
mod tests {
    use super::*;

    const CONTAINER: &str = "3f1e2d9c8b7a6f5e4d3c2b1a0f9e8d7c6b5a4f3e2d1c0b9a8f7e6d5c4b3a2f1e";

    fn stat_line(comm: &str, start: u64) -> String {
        // pid (comm) state ppid pgrp session tty tpgid flags minflt cminflt majflt cmajflt utime
        // stime cutime cstime priority nice threads itrealvalue starttime ...
        format!("42 ({comm}) S 1 42 42 0 -1 4194560 100 0 0 0 1 2 0 0 20 0 1 0 {start} 12345 67")
    }

    fn fake_proc(pid: i32, comm: &str) -> tempfile::TempDir {
        let root = tempfile::tempdir().unwrap();
        let dir = root.path().join(pid.to_string());
        fs::create_dir_all(&dir).unwrap();
        fs::write(dir.join("stat"), stat_line(comm, 777)).unwrap();
        fs::write(dir.join("status"), "Name:\tapp\nGroups:\t4 24 27 \n").unwrap();
        fs::write(
            dir.join("cgroup"),
            format!("0::/system.slice/docker-{CONTAINER}.scope\n"),
        )
        .unwrap();
        std::os::unix::fs::symlink("/usr/bin/app", dir.join("exe")).unwrap();
        root
    }

    #[test]
    fn start_time_survives_hostile_command_names() {
        assert_eq!(parse_start_time(&stat_line("app", 99)), Some(99));
        assert_eq!(parse_start_time(&stat_line("a) S 1 2 3 (b", 99)), Some(99));
        assert_eq!(parse_start_time("garbage"), None);
    }

    #[test]
    fn enriches_from_proc() {
        let proc_root = fake_proc(42, "app");
        let caller = ProcResolver::new(proc_root.path())
            .resolve(PeerCred {
                uid: 0,
                gid: 0,
                pid: Some(42),
            })
            .unwrap();
        assert_eq!(caller.pid, 42);
        assert_eq!(caller.source, IdentitySource::Process);
        assert_eq!(caller.user.as_deref(), Some("root"));
        assert_eq!(caller.supplementary_gids, vec![4, 24, 27]);
        assert_eq!(caller.executable.as_deref(), Some("/usr/bin/app"));
        assert_eq!(caller.container_id.as_deref(), Some(CONTAINER));
        assert_eq!(
            caller.systemd_unit.as_deref(),
            Some(format!("docker-{CONTAINER}.scope").as_str())
        );
    }

    #[test]
    fn an_invisible_pid_falls_back_to_uid() {
        let resolver = ProcResolver::new("/nonexistent");
        for pid in [None, Some(0)] {
            let caller = resolver
                .resolve(PeerCred {
                    uid: 0,
                    gid: 0,
                    pid,
                })
                .unwrap();
            assert_eq!(caller.source, IdentitySource::Uid);
            assert_eq!(caller.executable, None);
        }
    }

    #[test]
    fn a_pid_reused_during_enrichment_is_refused() {
        let proc_root = fake_proc(42, "app");
        let dir = proc_root.path().join("42");
        // Make `status` a FIFO: the resolver blocks reading it after its first look at `stat`,
        // and this thread swaps in another process's start time before letting it go on.
        fs::remove_file(dir.join("status")).unwrap();
        nix::unistd::mkfifo(&dir.join("status"), nix::sys::stat::Mode::S_IRWXU).unwrap();
        let swapper = {
            let dir = dir.clone();
            std::thread::spawn(move || {
                use std::io::Write;
                // Opening a FIFO for writing waits for the reader: the resolver has read `stat`.
                let mut status = fs::OpenOptions::new()
                    .write(true)
                    .open(dir.join("status"))
                    .unwrap();
                fs::write(dir.join("stat"), stat_line("other", 778)).unwrap();
                status.write_all(b"Groups:\n").unwrap();
            })
        };
        let err = ProcResolver::new(proc_root.path())
            .resolve(PeerCred {
                uid: 0,
                gid: 0,
                pid: Some(42),
            })
            .unwrap_err();
        swapper.join().unwrap();
        assert_eq!(err, IdentityError::PidReused(42));
    }

    #[test]
    fn a_vanished_process_is_not_identified() {
        let err = ProcResolver::new("/nonexistent")
            .resolve(PeerCred {
                uid: 0,
                gid: 0,
                pid: Some(42),
            })
            .unwrap_err();
        assert_eq!(err, IdentityError::Gone(42));
    }

    #[test]
    fn resolves_the_live_test_process() {
        let me = std::process::id() as i32;
        let caller = ProcResolver::default()
            .resolve(PeerCred {
                uid: nix::unistd::getuid().as_raw(),
                gid: nix::unistd::getgid().as_raw(),
                pid: Some(me),
            })
            .unwrap();
        let exe = std::env::current_exe().unwrap();
        assert_eq!(caller.executable.as_deref(), exe.to_str());
        assert!(caller.cgroup.is_some());
    }
}
