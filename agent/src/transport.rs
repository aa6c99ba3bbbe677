//! The transport: a Unix socket, created here or handed over by systemd (`LISTEN_FDS`), and a
//! stream of accepted connections, each tagged with the peer credentials the kernel gives at
//! accept (uid, gid, pid and a pidfd). Who the caller is gets worked out later, in the
//! connection's own task (`server.rs`), so a slow `/proc`, NSS or platform lookup holds up no
//! other connection. gRPC handlers find the caller in the request's extensions
//! (`ConnectedCaller`).

use std::{
    fs, io,
    os::unix::fs::{DirBuilderExt, FileTypeExt, PermissionsExt},
    path::{Path, PathBuf},
    pin::Pin,
    sync::Arc,
    task::{Context, Poll},
};

use futures::{Stream, StreamExt};
use tokio::{
    io::{AsyncRead, AsyncWrite, ReadBuf},
    net::{UnixListener, UnixStream},
};
use tokio_stream::wrappers::UnixListenerStream;

use crate::{
    config::ServerConfig,
    identity::{Caller, IdentityError, PeerCred},
};

/// The caller behind a connection, or why it could not be identified. Shared by every request
/// on the connection.
pub type ConnectedCaller = Arc<Result<Caller, IdentityError>>;

#[derive(Debug, thiserror::Error)]
pub enum TransportError {
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
}

/// A bound listener, and the socket path to remove at exit (None when systemd owns it).
pub struct Bound {
    pub listener: UnixListener,
    pub path: Option<PathBuf>,
    pub activated: bool,
}

/// Takes the socket from systemd if it passed one, else creates it at `config.socket`.
pub fn bind(config: &ServerConfig) -> Result<Bound, TransportError> {
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
            activated: true,
        });
    }
    let path = &config.socket;
    let io_err = |action, source| TransportError::Io {
        action,
        path: path.clone(),
        source,
    };
    if let Some(parent) = path.parent() {
        fs::DirBuilder::new()
            .recursive(true)
            .mode(0o755)
            .create(parent)
            .map_err(|e| io_err("create the directory of", e))?;
    }
    remove_stale_socket(path)?;
    let listener = UnixListener::bind(path).map_err(|e| io_err("bind", e))?;
    fs::set_permissions(path, fs::Permissions::from_mode(config.socket_mode))
        .map_err(|e| io_err("chmod", e))?;
    if let Some(group) = &config.socket_group {
        let gid = nix::unistd::Group::from_name(group)
            .ok()
            .flatten()
            .ok_or_else(|| TransportError::NoSuchGroup(group.clone()))?
            .gid;
        nix::unistd::chown(path.as_path(), None, Some(gid))
            .map_err(|e| io_err("chown", e.into()))?;
    }
    Ok(Bound {
        listener,
        path: Some(path.clone()),
        activated: false,
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

/// Accepted connections, each with its peer's credentials, taken as it is accepted (the pidfd
/// then names the process that connected, whatever happens to its pid later).
pub fn incoming(listener: UnixListener) -> impl Stream<Item = io::Result<PeerStream>> {
    UnixListenerStream::new(listener).map(|accepted| {
        let io = accepted?;
        let peer = PeerCred::of(&io).map_err(|_| IdentityError::NoCredentials);
        Ok(PeerStream { io, peer })
    })
}

/// An accepted connection and the kernel's word on who is on the other end.
pub struct PeerStream {
    io: UnixStream,
    peer: Result<PeerCred, IdentityError>,
}

impl PeerStream {
    pub fn peer(&self) -> Result<PeerCred, IdentityError> {
        self.peer.clone()
    }
}

impl AsyncRead for PeerStream {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_read(cx, buf)
    }
}

impl AsyncWrite for PeerStream {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.io).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.io).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
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
}
