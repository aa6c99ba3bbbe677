//! The transport: a Unix socket, created here or handed over by systemd (`LISTEN_FDS`), in a
//! directory no other user can write to, and the accept loop's side of it ([`Acceptor`]), which
//! hands out connections with the kernel's peer credentials. gRPC handlers find the caller in
//! the request's extensions (`ConnectedCaller`).

use std::{
    fs, io,
    os::unix::fs::{DirBuilderExt, FileTypeExt, MetadataExt},
    path::{Path, PathBuf},
    sync::Arc,
    time::{Duration, Instant},
};

use futures::FutureExt;
use nix::{
    fcntl::{AtFlags, AT_FDCWD},
    sys::stat::Mode,
};
use tokio::net::{UnixListener, UnixStream};

use crate::{
    config::ServerConfig,
    identity::{Caller, IdentityError, PeerCred},
};

/// The caller behind a connection, or why it could not be identified. Shared by every request
/// on the connection.
pub(crate) type ConnectedCaller = Arc<Result<Caller, IdentityError>>;

#[derive(Debug, thiserror::Error)]
pub(crate) enum TransportError {
    #[error("{path} exists and is not a socket; refusing to replace it")]
    NotASocket { path: PathBuf },
    #[error("another agent is already listening on {path}")]
    InUse { path: PathBuf },
    #[error("cannot {action} {path}: {source}")]
    Io {
        action: &'static str,
        path: PathBuf,
        source: io::Error,
    },
    #[error("socket group '{0}' does not exist")]
    NoSuchGroup(String),
    #[error("systemd passed a socket that is not a Unix stream listener: {0}")]
    Activation(io::Error),
    #[error(
        "{dir} is writable by other users, who could replace the socket with their own: make it 0755 (or 0750) and owned by the agent's user or root"
    )]
    UnsafeDirectory { dir: PathBuf },
    #[error(
        "{dir} is owned by uid {owner}, who could replace the socket: it must be owned by the agent's user or root"
    )]
    ForeignDirectory { dir: PathBuf, owner: u32 },
    #[error(
        "{path} exists in a directory every user may write to; refusing to replace what may be another user's file"
    )]
    SharedDirectory { path: PathBuf },
}

/// What kind of directory the socket is created in.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Directory {
    /// Only the agent's user (or root) can add or remove entries.
    Private,
    /// Sticky, owned by root, writable by all (like /tmp): others cannot remove our socket, but
    /// what is already there may be theirs.
    Shared,
}

/// Refuses a directory where another user could replace the socket with their own (and
/// collect what clients send to it).
fn check_directory(dir: &Path) -> Result<Directory, TransportError> {
    let meta = fs::metadata(dir).map_err(|source| TransportError::Io {
        action: "inspect",
        path: dir.to_owned(),
        source,
    })?;
    let me = nix::unistd::geteuid().as_raw();
    let owner = meta.uid();
    let mode = meta.mode();
    let sticky = mode & 0o1000 != 0;
    if owner != me && owner != 0 {
        return Err(TransportError::ForeignDirectory {
            dir: dir.to_owned(),
            owner,
        });
    }
    if mode & 0o022 == 0 {
        return Ok(Directory::Private);
    }
    if sticky && owner == 0 {
        return Ok(Directory::Shared);
    }
    Err(TransportError::UnsafeDirectory {
        dir: dir.to_owned(),
    })
}

/// A bound listener, and the socket path to remove at exit (None when systemd owns it).
pub(crate) struct Bound {
    pub listener: UnixListener,
    pub path: Option<PathBuf>,
}

/// Takes the socket from systemd if it passed one, else creates it at `config.socket`.
pub(crate) fn bind(config: &ServerConfig) -> Result<Bound, TransportError> {
    let mut fds = listenfd::ListenFd::from_env();
    if fds.len() > 0 {
        let std_listener = fds
            .take_unix_listener(0)
            .map_err(TransportError::Activation)?
            .ok_or_else(|| {
                TransportError::Activation(io::Error::other("LISTEN_FDS slot 0 is empty"))
            })?;
        std_listener
            .set_nonblocking(true)
            .map_err(TransportError::Activation)?;
        let listener = UnixListener::from_std(std_listener).map_err(TransportError::Activation)?;
        return Ok(Bound {
            listener,
            path: None,
        });
    }
    let path = &config.socket;
    let io_err = |action, source| TransportError::Io {
        action,
        path: path.clone(),
        source,
    };
    let parent = path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    fs::DirBuilder::new()
        .recursive(true)
        .mode(0o755)
        .create(parent)
        .map_err(|e| io_err("create the directory of", e))?;
    let directory = check_directory(parent)?;
    if directory == Directory::Shared && fs::symlink_metadata(path).is_ok() {
        // In a sticky directory anyone may write (like /tmp), whatever is at the path may be
        // another user's: never remove it.
        return Err(TransportError::SharedDirectory {
            path: path.to_owned(),
        });
    }
    remove_stale_socket(path)?;
    // The socket file gets its mode as bind creates it (umask), not by a chmod afterwards that
    // would follow a symlink swapped in between. The umask is process-wide: this runs at
    // start, before anything else creates files.
    let umask = Mode::from_bits_truncate(!config.socket_mode & 0o777);
    let previous = nix::sys::stat::umask(umask);
    let listener = UnixListener::bind(path);
    nix::sys::stat::umask(previous);
    let listener = listener.map_err(|e| io_err("bind", e))?;
    if let Some(group) = &config.socket_group {
        let gid = nix::unistd::Group::from_name(group)
            .ok()
            .flatten()
            .ok_or_else(|| TransportError::NoSuchGroup(group.clone()))?
            .gid;
        nix::unistd::fchownat(
            AT_FDCWD,
            path.as_path(),
            None,
            Some(gid),
            AtFlags::AT_SYMLINK_NOFOLLOW,
        )
        .map_err(|e| io_err("chown", e.into()))?;
    }
    Ok(Bound {
        listener,
        path: Some(path.clone()),
    })
}

/// A socket left by an agent that died is removed; a live one, or anything that is not a
/// socket, is left alone.
fn remove_stale_socket(path: &Path) -> Result<(), TransportError> {
    let meta = match fs::symlink_metadata(path) {
        Ok(meta) => meta,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
        Err(source) => {
            return Err(TransportError::Io {
                action: "inspect",
                path: path.to_owned(),
                source,
            })
        }
    };
    if !meta.file_type().is_socket() {
        return Err(TransportError::NotASocket {
            path: path.to_owned(),
        });
    }
    if std::os::unix::net::UnixStream::connect(path).is_ok() {
        return Err(TransportError::InUse {
            path: path.to_owned(),
        });
    }
    fs::remove_file(path).map_err(|source| TransportError::Io {
        action: "remove the stale socket",
        path: path.to_owned(),
        source,
    })
}

/// The accept loop's side of the socket: hands out connections and absorbs accept failures,
/// so that running out of file descriptors neither spins nor ends the agent.
pub(crate) struct Acceptor {
    listener: UnixListener,
    /// An open file kept for one purpose: when the process is out of descriptors, closing it
    /// frees one to accept the waiting connection and close it at once, so the caller gets a
    /// clean refusal instead of hanging in the backlog (and the loop does not spin on EMFILE).
    reserve: Option<fs::File>,
    refused: u64,
    backoff: Duration,
    last_report: Option<Instant>,
}

/// At most one log line per this long about refused connections.
const REPORT_EVERY: Duration = Duration::from_secs(10);
const MAX_BACKOFF: Duration = Duration::from_millis(100);

impl Acceptor {
    pub(crate) fn new(listener: UnixListener) -> Self {
        Self {
            listener,
            reserve: open_reserve(),
            refused: 0,
            backoff: Duration::ZERO,
            last_report: None,
        }
    }

    /// The next connection and its peer's credentials. Failures are handled here, never
    /// returned: out of descriptors, the connection is refused and the loop backs off.
    pub(crate) async fn accept(&mut self) -> (UnixStream, Option<PeerCred>) {
        loop {
            match self.listener.accept().await {
                Ok((stream, _)) => {
                    self.backoff = Duration::ZERO;
                    // Taken now: the pidfd names the process that connected, whatever
                    // happens to its pid before the connection is identified.
                    let peer = PeerCred::of(&stream).ok();
                    return (stream, peer);
                }
                Err(e) if is_out_of_descriptors(&e) => {
                    self.shed(&e);
                    self.backoff = (self.backoff * 2).clamp(Duration::from_millis(5), MAX_BACKOFF);
                    tokio::time::sleep(self.backoff).await;
                }
                // The peer gave up before we accepted (ECONNABORTED) and the like: nothing to do.
                Err(e) => tracing::debug!(error = %e, "accept failed"),
            }
        }
    }

    /// Out of descriptors: refuse the connections waiting in the backlog, one at a time on the
    /// descriptor the reserve frees, so callers get a clean end instead of a hang and the
    /// backlog does not fill up behind the refused ones.
    fn shed(&mut self, error: &io::Error) {
        if self.reserve.take().is_some() {
            while let Some(Ok((stream, _))) = self.listener.accept().now_or_never() {
                drop(stream);
                self.refuse(error);
            }
            self.reserve = open_reserve();
        } else {
            self.refuse(error);
        }
    }

    /// Counts a refused connection and logs why, at most once per [`REPORT_EVERY`] however
    /// many are refused: a flood of connections cannot become a flood of log lines.
    pub(crate) fn refuse(&mut self, why: &dyn std::fmt::Display) {
        self.refused += 1;
        let now = Instant::now();
        if self.last_report.is_none_or(|at| now - at >= REPORT_EVERY) {
            tracing::warn!(
                refused = self.refused,
                latest = %why,
                "refusing connections"
            );
            self.refused = 0;
            self.last_report = Some(now);
        }
    }
}

fn open_reserve() -> Option<fs::File> {
    fs::File::open("/dev/null").ok()
}

fn is_out_of_descriptors(e: &io::Error) -> bool {
    matches!(
        e.raw_os_error(),
        Some(code) if code == nix::libc::EMFILE || code == nix::libc::ENFILE
    )
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::PermissionsExt;

    use super::*;

    fn config(path: &Path) -> ServerConfig {
        ServerConfig {
            socket: path.to_owned(),
            socket_mode: 0o660,
            ..ServerConfig::default()
        }
    }

    #[tokio::test]
    async fn creates_the_directory_and_sets_the_mode() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("run/psst/psst.sock");
        let bound = bind(&config(&path)).unwrap();
        assert_eq!(bound.path.as_deref(), Some(path.as_path()));
        let mode = fs::metadata(&path).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o660);
    }

    #[tokio::test]
    async fn replaces_a_stale_socket_but_not_a_live_one_or_a_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("psst.sock");
        let live = bind(&config(&path)).unwrap();
        assert!(matches!(
            bind(&config(&path)),
            Err(TransportError::InUse { .. })
        ));
        drop(live);
        bind(&config(&path)).expect("a dead socket is replaced");

        let file = dir.path().join("not-a-socket");
        fs::write(&file, b"keep me").unwrap();
        assert!(matches!(
            bind(&config(&file)),
            Err(TransportError::NotASocket { .. })
        ));
        assert_eq!(fs::read(&file).unwrap(), b"keep me");
    }

    #[tokio::test]
    async fn a_directory_others_can_write_is_refused() {
        for mode in [0o777, 0o775, 0o1777] {
            let dir = tempfile::tempdir().unwrap();
            fs::set_permissions(dir.path(), fs::Permissions::from_mode(mode)).unwrap();
            let path = dir.path().join("psst.sock");
            // A sticky directory owned by root is the one exception: see the next test.
            if mode == 0o1777 && nix::unistd::geteuid().is_root() {
                continue;
            }
            let err = bind(&config(&path)).err().expect("refused");
            assert!(
                matches!(err, TransportError::UnsafeDirectory { .. }),
                "{mode:o}: {err}"
            );
            assert!(!path.exists());
        }
    }

    #[tokio::test]
    async fn in_a_shared_sticky_directory_nothing_is_replaced() {
        if !nix::unistd::geteuid().is_root() {
            return; // needs a root-owned sticky directory, as /tmp is
        }
        let dir = tempfile::tempdir().unwrap();
        fs::set_permissions(dir.path(), fs::Permissions::from_mode(0o1777)).unwrap();
        let path = dir.path().join("psst.sock");
        let bound = bind(&config(&path)).expect("a new socket may be made there");
        drop(bound);
        // Now a (stale) socket is there, and might be another user's.
        assert!(matches!(
            bind(&config(&path)),
            Err(TransportError::SharedDirectory { .. })
        ));
    }
}
