//! Who is calling: the kernel's peer credentials of the connection (uid, gid, pid and a pidfd),
//! enriched from `/proc/<pid>` (executable, user and group names, supplementary groups, cgroup,
//! and what the cgroup says: container id, Kubernetes pod UID, systemd unit), then by the
//! configured workload attestors (Kubernetes, ECS, Docker), which look the pod or container up by
//! the ids the caller's own cgroup names.
//!
//! A caller is identified once per connection, in the connection's own task (never in the accept
//! loop), bounded by `identity.timeout`. `peer.rs` says how the identity stays bound to the
//! process that connected; `process.rs` reads `/proc` on the blocking pool; user and group names
//! come from NSS, which may ask the network, so they are bounded by `identity.nss_timeout`.

pub(crate) mod cgroup;
pub(crate) mod config;
mod peer;
mod process;
pub(crate) mod workload;

use std::{fmt, path::PathBuf, sync::Arc, time::Duration};

pub(crate) use peer::{boot_time, Binding, PeerCred};
pub(crate) use workload::{Attestors, Workload};

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

/// The front door a caller came in by: named in audit records and metrics.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum Frontend {
    /// gRPC over HTTP/2 on the agent's Unix socket.
    #[default]
    Grpc,
    /// The AWS agents' HTTP/1.1 API on the agent's Unix socket (`http/`).
    HttpUnix,
    /// The AWS agents' HTTP/1.1 API on the TCP listener (`[http] tcp_listen`).
    HttpTcp,
}

impl Frontend {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Grpc => "grpc",
            Self::HttpUnix => "http_unix",
            Self::HttpTcp => "http_tcp",
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
    /// The executable's path, only when that path names the same file for the agent.
    pub executable: Option<String>,
    pub cgroup: Option<String>,
    pub container_id: Option<String>,
    pub pod_uid: Option<String>,
    pub systemd_unit: Option<String>,
    pub source: IdentitySource,
    /// What the platform attestors said (or why they could not).
    pub workload: Workload,
    /// The front door the request came in by (not a policy selector).
    pub via: Frontend,
}

impl Caller {
    /// A caller known only by uid and gid, without names.
    pub fn uid_only(uid: u32, gid: u32) -> Self {
        Self {
            uid,
            gid,
            pid: 0,
            user: None,
            group: None,
            supplementary_gids: Vec::new(),
            groups: Vec::new(),
            executable: None,
            cgroup: None,
            container_id: None,
            pod_uid: None,
            systemd_unit: None,
            source: IdentitySource::Uid,
            workload: Workload::default(),
            via: Frontend::Grpc,
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
    #[error("process {0} started after the connection was made: it is not the caller")]
    StartedAfterConnect(i32),
    #[error("identifying the caller took longer than {0:?}")]
    TimedOut(Duration),
}

/// Turns a connection's peer credentials into a `Caller`. The composition root picks the
/// implementation; tests use a fake `/proc`.
#[async_trait::async_trait]
pub trait IdentityResolver: Send + Sync + 'static {
    async fn resolve(&self, peer: PeerCred) -> Result<Caller, IdentityError>;
}

/// How long an NSS lookup (user and group names) may take before the names are left out.
pub(crate) const DEFAULT_NSS_TIMEOUT: Duration = Duration::from_secs(1);

/// Resolves callers from a procfs mount (normally `/proc`), then asks the attestors.
pub(crate) struct ProcResolver {
    proc_root: PathBuf,
    nss_timeout: Duration,
    attestors: Arc<Attestors>,
}

impl ProcResolver {
    pub(crate) fn new(
        proc_root: impl Into<PathBuf>,
        nss_timeout: Duration,
        attestors: Attestors,
    ) -> Self {
        Self {
            proc_root: proc_root.into(),
            nss_timeout,
            attestors: Arc::new(attestors),
        }
    }

    /// Names for the uid, gid and supplementary gids, as far as NSS answers in time. A name that
    /// does not come is left out, so rules naming it do not match (fail closed).
    async fn names(&self, uid: u32, gid: u32, gids: Vec<u32>) -> Names {
        let lookup = tokio::task::spawn_blocking(move || Names {
            user: user_name(uid),
            group: group_name(gid),
            groups: gids.iter().filter_map(|g| group_name(*g)).collect(),
        });
        match tokio::time::timeout(self.nss_timeout, lookup).await {
            Ok(Ok(names)) => names,
            Ok(Err(_)) | Err(_) => {
                tracing::warn!(uid, gid, timeout = ?self.nss_timeout, "user and group names did not resolve in time");
                Names::default()
            }
        }
    }
}

impl Default for ProcResolver {
    fn default() -> Self {
        Self::new("/proc", DEFAULT_NSS_TIMEOUT, Attestors::default())
    }
}

#[derive(Default)]
struct Names {
    user: Option<String>,
    group: Option<String>,
    groups: Vec<String>,
}

#[async_trait::async_trait]
impl IdentityResolver for ProcResolver {
    async fn resolve(&self, peer: PeerCred) -> Result<Caller, IdentityError> {
        let pid = match peer.pid {
            Some(pid) if pid > 0 => pid,
            _ => {
                let names = self.names(peer.uid, peer.gid, Vec::new()).await;
                return Ok(Caller {
                    user: names.user,
                    group: names.group,
                    ..Caller::uid_only(peer.uid, peer.gid)
                });
            }
        };
        let proc_root = self.proc_root.clone();
        let binding = peer.binding.clone();
        let facts = tokio::task::spawn_blocking(move || {
            process::read(&proc_root, pid, &binding, peer.accepted_at)
        })
        .await
        .map_err(|_| IdentityError::Gone(pid))??;
        let names = self
            .names(peer.uid, peer.gid, facts.supplementary_gids.clone())
            .await;
        let workload = self.attestors.attest(&facts).await;
        Ok(Caller {
            uid: peer.uid,
            gid: peer.gid,
            pid,
            user: names.user,
            group: names.group,
            groups: names.groups,
            supplementary_gids: facts.supplementary_gids,
            executable: facts.executable,
            cgroup: facts.cgroup,
            container_id: facts.container_id,
            pod_uid: facts.pod_uid,
            systemd_unit: facts.systemd_unit,
            source: IdentitySource::Process,
            workload,
            via: Frontend::Grpc,
        })
    }
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

    fn fake_proc() -> tempfile::TempDir {
        let root = tempfile::tempdir().unwrap();
        let dir = root.path().join("42");
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(
            dir.join("stat"),
            "42 (app) S 1 42 42 0 -1 4194560 100 0 0 0 1 2 0 0 20 0 1 0 777 12345 67",
        )
        .unwrap();
        std::fs::write(dir.join("status"), "Name:\tapp\nGroups:\t0 \n").unwrap();
        std::fs::write(
            dir.join("cgroup"),
            format!("0::/system.slice/docker-{CONTAINER}.scope\n"),
        )
        .unwrap();
        std::os::unix::fs::symlink("/bin/sh", dir.join("exe")).unwrap();
        root
    }

    fn resolver(root: &std::path::Path) -> ProcResolver {
        ProcResolver::new(root, DEFAULT_NSS_TIMEOUT, Attestors::default())
    }

    #[tokio::test]
    async fn enriches_from_proc() {
        let proc_root = fake_proc();
        let caller = resolver(proc_root.path())
            .resolve(PeerCred::unbound(0, 0, Some(42)))
            .await
            .unwrap();
        assert_eq!(caller.pid, 42);
        assert_eq!(caller.source, IdentitySource::Process);
        assert_eq!(caller.user.as_deref(), Some("root"));
        assert_eq!(caller.groups, vec!["root".to_owned()]);
        assert_eq!(caller.executable.as_deref(), Some("/bin/sh"));
        assert_eq!(caller.container_id.as_deref(), Some(CONTAINER));
        assert_eq!(
            caller.systemd_unit.as_deref(),
            Some(format!("docker-{CONTAINER}.scope").as_str())
        );
        assert_eq!(caller.workload, Workload::default());
    }

    #[tokio::test]
    async fn an_invisible_pid_falls_back_to_uid() {
        let resolver = resolver(std::path::Path::new("/nonexistent"));
        for pid in [None, Some(0)] {
            let caller = resolver
                .resolve(PeerCred::unbound(0, 0, pid))
                .await
                .unwrap();
            assert_eq!(caller.source, IdentitySource::Uid);
            assert_eq!(caller.user.as_deref(), Some("root"));
            assert_eq!(caller.executable, None);
        }
    }

    #[tokio::test]
    async fn a_vanished_process_is_not_identified() {
        let err = resolver(std::path::Path::new("/nonexistent"))
            .resolve(PeerCred::unbound(0, 0, Some(42)))
            .await
            .unwrap_err();
        assert_eq!(err, IdentityError::Gone(42));
    }

    #[tokio::test]
    async fn resolves_a_real_connection() {
        let (a, _b) = std::os::unix::net::UnixStream::pair().unwrap();
        let peer = PeerCred::of(&a).unwrap();
        assert!(matches!(peer.binding, Binding::Pidfd(_)));
        let caller = ProcResolver::default().resolve(peer).await.unwrap();
        let exe = std::env::current_exe().unwrap();
        assert_eq!(caller.pid, std::process::id() as i32);
        assert_eq!(caller.executable.as_deref(), exe.to_str());
        assert!(caller.cgroup.is_some());
    }
}
