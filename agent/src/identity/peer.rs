//! The kernel's word on who is at the other end of an accepted connection: the peer credentials
//! (`SO_PEERCRED`, captured by the kernel when the peer called `connect()`), a pidfd for the
//! connecting process (`SO_PEERPIDFD`, Linux 6.5 and later), and when the agent accepted it.
//!
//! The pidfd is what makes `/proc/<pid>` trustworthy: it names the process that connected, not
//! whichever process holds the pid now. After the agent reads `/proc/<pid>`, the pidfd tells
//! whether that process is still alive under that pid; while it is, the pid cannot have been
//! reused, so everything read belonged to it.

use std::{
    fs,
    os::fd::{AsFd, AsRawFd, OwnedFd},
    path::Path,
    sync::Arc,
    time::Duration,
};

use nix::{
    errno::Errno,
    sys::socket::{getsockopt, sockopt},
    time::{clock_gettime, ClockId},
};

/// What the kernel says about the peer of a Unix socket.
#[derive(Clone, Debug)]
pub struct PeerCred {
    pub uid: u32,
    pub gid: u32,
    /// None or 0 when the peer's process is not visible in our PID namespace.
    pub pid: Option<i32>,
    pub binding: Binding,
    /// `CLOCK_BOOTTIME` when the agent accepted the connection: the connecting process started
    /// before it. None for callers made up by tests.
    pub accepted_at: Option<Duration>,
}

/// How the agent can tell that `/proc/<pid>` still shows the process that connected.
#[derive(Clone, Debug)]
pub enum Binding {
    /// A pidfd for the connecting process.
    Pidfd(Arc<OwnedFd>),
    /// The kernel refused a pidfd because the connecting process has already exited: its pid
    /// may belong to another process by now.
    Exited,
    /// No `SO_PEERPIDFD` (a kernel before 6.5): the process start time is compared before and
    /// after reading `/proc` instead, which catches a pid reused during the reads but not one
    /// reused between `connect()` and accept unless the new process started after the accept.
    StartTime,
}

impl PeerCred {
    /// The credentials of an accepted connection's peer.
    pub fn of(stream: &impl AsFd) -> Result<Self, Errno> {
        let accepted_at = boot_time();
        let cred = getsockopt(stream, sockopt::PeerCredentials)?;
        let binding = match getsockopt(stream, sockopt::PeerPidfd) {
            Ok(fd) => Binding::Pidfd(Arc::new(fd)),
            Err(Errno::ESRCH) => Binding::Exited,
            // ENOPROTOOPT: the kernel has no SO_PEERPIDFD; anything else: no pidfd to be had.
            Err(_) => Binding::StartTime,
        };
        let pid = cred.pid();
        Ok(Self {
            uid: cred.uid(),
            gid: cred.gid(),
            pid: (pid > 0).then_some(pid),
            binding,
            accepted_at,
        })
    }

    /// Peer credentials with no process binding, as a test or a fake transport would give them.
    pub fn unbound(uid: u32, gid: u32, pid: Option<i32>) -> Self {
        Self {
            uid,
            gid,
            pid,
            binding: Binding::StartTime,
            accepted_at: None,
        }
    }
}

/// The time since boot, on the clock `/proc/<pid>/stat` dates process starts with.
pub(crate) fn boot_time() -> Option<Duration> {
    clock_gettime(ClockId::CLOCK_BOOTTIME)
        .ok()
        .map(Duration::from)
}

/// What a pidfd says now: the pid of its process in our namespace, or None when the process has
/// exited (and been reaped) or the kernel does not say.
pub(super) fn pidfd_pid(proc_root: &Path, pidfd: &OwnedFd) -> PidfdState {
    let fdinfo = proc_root
        .join("self/fdinfo")
        .join(pidfd.as_raw_fd().to_string());
    let Ok(text) = fs::read_to_string(fdinfo) else {
        return PidfdState::Unknown;
    };
    match text
        .lines()
        .find_map(|line| line.strip_prefix("Pid:"))
        .and_then(|pid| pid.trim().parse::<i32>().ok())
    {
        Some(pid) if pid > 0 => PidfdState::Alive(pid),
        Some(_) => PidfdState::Exited,
        None => PidfdState::Unknown,
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum PidfdState {
    Alive(i32),
    Exited,
    /// A kernel whose fdinfo has no `Pid:` line.
    Unknown,
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::net::UnixStream;

    #[test]
    fn a_connected_pair_carries_a_live_pidfd() {
        let (a, _b) = UnixStream::pair().unwrap();
        let peer = PeerCred::of(&a).unwrap();
        assert_eq!(peer.pid, Some(std::process::id() as i32));
        assert_eq!(peer.uid, nix::unistd::getuid().as_raw());
        assert!(peer.accepted_at.is_some());
        let Binding::Pidfd(fd) = &peer.binding else {
            panic!(
                "this kernel supports SO_PEERPIDFD (6.5+): {:?}",
                peer.binding
            );
        };
        assert_eq!(
            pidfd_pid(Path::new("/proc"), fd),
            PidfdState::Alive(std::process::id() as i32)
        );
    }

    #[test]
    fn a_pidfd_of_an_exited_process_says_so() {
        // A real connection from another process, which then exits.
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s");
        let listener = std::os::unix::net::UnixListener::bind(&path).unwrap();
        let mut connector = std::process::Command::new("python3")
            .args([
                "-c",
                "import socket,sys; s=socket.socket(socket.AF_UNIX); s.connect(sys.argv[1])",
                path.to_str().unwrap(),
            ])
            .spawn()
            .unwrap();
        let (accepted, _) = listener.accept().unwrap();
        let peer = PeerCred::of(&accepted).unwrap();
        assert_eq!(peer.pid, Some(connector.id() as i32));
        connector.wait().unwrap();
        match &peer.binding {
            Binding::Pidfd(fd) => {
                assert_eq!(pidfd_pid(Path::new("/proc"), fd), PidfdState::Exited)
            }
            // The connector may have exited before the agent asked for its pidfd.
            Binding::Exited => {}
            Binding::StartTime => panic!("this kernel supports SO_PEERPIDFD"),
        }
    }
}
