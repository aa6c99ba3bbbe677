//! The TCP listener of the HTTP front door (`[http] tcp_listen`), and how its callers are
//! identified: TCP carries no peer credentials, but on one host the kernel knows both ends of a
//! loopback connection. The client's socket is looked up by its address pair through
//! `NETLINK_SOCK_DIAG` (`/proc/net/tcp` and `tcp6` when netlink is refused): that gives the uid
//! that created it and its inode. The first process of that uid holding the inode among its
//! open files (`/proc/<pid>/fd`) is the caller, identified as a Unix-socket caller is; when no
//! process is visible (another PID namespace, `hidepid`), the caller is known by uid alone.
//!
//! What this proves, and what not (SECURITY.md): the uid is the kernel's. The pid is found after
//! the accept with no pidfd; the identity resolver refuses a process started after the accept, so
//! a pid reused in between is not mistaken for the caller, but a socket shared by several
//! processes (inherited, passed) is attributed to the first one found.

use std::{
    fs, io,
    net::{IpAddr, SocketAddr},
    os::{fd::AsRawFd, unix::fs::MetadataExt},
    time::Duration,
};

use nix::sys::socket::{
    recv, sendto, socket, AddressFamily, MsgFlags, NetlinkAddr, SockFlag, SockProtocol, SockType,
};

use crate::identity::{boot_time, Binding, IdentityError, PeerCred};

/// A TCP caller as the socket tables show it.
#[derive(Clone, Debug)]
pub struct TcpPeer {
    pub uid: u32,
    pub inode: u64,
    accepted_at: Option<Duration>,
}

/// The gid of a caller whose process is not visible: no group rule can match it.
pub const UNKNOWN_GID: u32 = u32::MAX;

impl TcpPeer {
    /// The owner of the client socket of an accepted connection (`local` is the agent's end,
    /// `peer` the client's). None when the kernel shows no such socket on this host.
    pub fn lookup(local: SocketAddr, peer: SocketAddr) -> Option<Self> {
        let accepted_at = boot_time();
        let (uid, inode) = match sock_diag(peer, local) {
            Ok(found) => found,
            Err(e) => {
                tracing::debug!(error = %e, "sock_diag lookup failed; reading /proc/net/tcp");
                proc_net_tcp(peer, local)
            }
        }?;
        Some(Self {
            uid,
            inode,
            accepted_at,
        })
    }

    /// Peer credentials for the identity resolver: the process holding the socket, if visible.
    pub async fn credentials(&self) -> Result<PeerCred, IdentityError> {
        let (uid, inode) = (self.uid, self.inode);
        let found = tokio::task::spawn_blocking(move || holder(uid, inode))
            .await
            .ok()
            .flatten();
        Ok(match found {
            Some((pid, gid)) => PeerCred {
                uid,
                gid,
                pid: Some(pid),
                binding: Binding::StartTime,
                accepted_at: self.accepted_at,
            },
            None => PeerCred {
                uid,
                gid: UNKNOWN_GID,
                pid: None,
                binding: Binding::Exited,
                accepted_at: self.accepted_at,
            },
        })
    }
}

const SOCK_DIAG_BY_FAMILY: u16 = 20;
const NLM_F_REQUEST: u16 = 1;
const NLMSG_ERROR: u16 = 2;
const IPPROTO_TCP: u8 = 6;
const HEADER: usize = 16;

/// The `inet_diag_sockid` of a socket: ports in network order, addresses as their bytes.
fn sock_id(src: SocketAddr, dst: SocketAddr) -> Vec<u8> {
    let mut id = Vec::with_capacity(48);
    id.extend_from_slice(&src.port().to_be_bytes());
    id.extend_from_slice(&dst.port().to_be_bytes());
    for address in [src.ip(), dst.ip()] {
        let mut bytes = [0u8; 16];
        match address {
            IpAddr::V4(v4) => bytes[..4].copy_from_slice(&v4.octets()),
            IpAddr::V6(v6) => bytes.copy_from_slice(&v6.octets()),
        }
        id.extend_from_slice(&bytes);
    }
    id.extend_from_slice(&0u32.to_ne_bytes()); // any interface
    id.extend_from_slice(&[0xff; 8]); // INET_DIAG_NOCOOKIE
    id
}

/// One `SOCK_DIAG_BY_FAMILY` request for the socket bound to `src` and connected to `dst`:
/// its uid and inode. Ok(None) when the kernel has no such socket.
fn sock_diag(src: SocketAddr, dst: SocketAddr) -> io::Result<Option<(u32, u64)>> {
    let family = match src {
        SocketAddr::V4(_) => nix::libc::AF_INET as u8,
        SocketAddr::V6(_) => nix::libc::AF_INET6 as u8,
    };
    let mut request = Vec::with_capacity(HEADER + 56);
    request.extend_from_slice(&((HEADER + 56) as u32).to_ne_bytes());
    request.extend_from_slice(&SOCK_DIAG_BY_FAMILY.to_ne_bytes());
    request.extend_from_slice(&NLM_F_REQUEST.to_ne_bytes());
    request.extend_from_slice(&1u32.to_ne_bytes()); // sequence
    request.extend_from_slice(&0u32.to_ne_bytes()); // port id: the kernel fills it in
    request.extend_from_slice(&[family, IPPROTO_TCP, 0, 0]);
    request.extend_from_slice(&u32::MAX.to_ne_bytes()); // every state
    request.extend_from_slice(&sock_id(src, dst));
    let fd = socket(
        AddressFamily::Netlink,
        SockType::Datagram,
        SockFlag::SOCK_CLOEXEC,
        SockProtocol::NetlinkSockDiag,
    )?;
    // The kernel answers at once; the timeout only guards against a kernel that never does.
    nix::sys::socket::setsockopt(
        &fd,
        nix::sys::socket::sockopt::ReceiveTimeout,
        &nix::sys::time::TimeVal::new(1, 0),
    )?;
    sendto(
        fd.as_raw_fd(),
        &request,
        &NetlinkAddr::new(0, 0),
        MsgFlags::empty(),
    )?;
    let mut answer = [0u8; 8192];
    let n = recv(fd.as_raw_fd(), &mut answer, MsgFlags::empty())?;
    parse_diag_answer(&answer[..n])
}

fn u32_at(bytes: &[u8], at: usize) -> Option<u32> {
    Some(u32::from_ne_bytes(bytes.get(at..at + 4)?.try_into().ok()?))
}

fn parse_diag_answer(answer: &[u8]) -> io::Result<Option<(u32, u64)>> {
    let malformed = || io::Error::new(io::ErrorKind::InvalidData, "malformed sock_diag answer");
    let kind = u16::from_ne_bytes(
        answer
            .get(4..6)
            .ok_or_else(malformed)?
            .try_into()
            .map_err(|_| malformed())?,
    );
    let payload = &answer[HEADER.min(answer.len())..];
    if kind == NLMSG_ERROR {
        let code = u32_at(payload, 0).ok_or_else(malformed)? as i32;
        return match -code {
            0 | nix::libc::ENOENT => Ok(None),
            errno => Err(io::Error::from_raw_os_error(errno)),
        };
    }
    if kind != SOCK_DIAG_BY_FAMILY {
        return Err(malformed());
    }
    // inet_diag_msg: 4 bytes, the 48-byte id, expires, rqueue, wqueue, uid, inode.
    let uid = u32_at(payload, 64).ok_or_else(malformed)?;
    let inode = u32_at(payload, 68).ok_or_else(malformed)?;
    Ok(Some((uid, u64::from(inode))))
}

/// The same lookup in `/proc/net/tcp` (IPv4) or `tcp6`: the line whose local address is `src`
/// and remote address `dst`.
fn proc_net_tcp(src: SocketAddr, dst: SocketAddr) -> Option<(u32, u64)> {
    let file = match src {
        SocketAddr::V4(_) => "/proc/net/tcp",
        SocketAddr::V6(_) => "/proc/net/tcp6",
    };
    let text = fs::read_to_string(file).ok()?;
    find_in_proc_net_tcp(&text, src, dst)
}

fn find_in_proc_net_tcp(text: &str, src: SocketAddr, dst: SocketAddr) -> Option<(u32, u64)> {
    text.lines().skip(1).find_map(|line| {
        let fields: Vec<&str> = line.split_whitespace().collect();
        if fields.len() < 10 || proc_address(fields[1])? != src || proc_address(fields[2])? != dst {
            return None;
        }
        Some((fields[7].parse().ok()?, fields[9].parse().ok()?))
    })
}

/// `0100007F:1F90` (IPv4) or 32 hex digits and a port (IPv6): the address as the kernel's
/// 32-bit words in host order.
fn proc_address(text: &str) -> Option<SocketAddr> {
    let (address, port) = text.split_once(':')?;
    let port = u16::from_str_radix(port, 16).ok()?;
    let mut bytes = Vec::with_capacity(16);
    for word in address.as_bytes().chunks(8) {
        let word = u32::from_str_radix(std::str::from_utf8(word).ok()?, 16).ok()?;
        bytes.extend_from_slice(&word.to_ne_bytes());
    }
    let ip = match bytes.len() {
        4 => IpAddr::from(<[u8; 4]>::try_from(bytes).ok()?),
        16 => IpAddr::from(<[u8; 16]>::try_from(bytes).ok()?),
        _ => return None,
    };
    Some(SocketAddr::new(ip, port))
}

/// The first process of `uid` that holds socket `inode` open, and its effective gid.
fn holder(uid: u32, inode: u64) -> Option<(i32, u32)> {
    let target = format!("socket:[{inode}]");
    let me = std::process::id() as i32;
    for entry in fs::read_dir("/proc").ok()?.flatten() {
        let Some(pid) = entry
            .file_name()
            .to_str()
            .and_then(|n| n.parse::<i32>().ok())
        else {
            continue;
        };
        if pid == me || entry.metadata().map(|m| m.uid()).ok() != Some(uid) {
            continue;
        }
        let Ok(fds) = fs::read_dir(entry.path().join("fd")) else {
            continue;
        };
        let holds = fds.flatten().any(|fd| {
            fs::read_link(fd.path()).is_ok_and(|link| link.as_os_str() == target.as_str())
        });
        if holds {
            let status = fs::read_to_string(entry.path().join("status")).ok()?;
            let gid = status
                .lines()
                .find_map(|l| l.strip_prefix("Gid:"))
                .and_then(|ids| ids.split_whitespace().nth(1))
                .and_then(|g| g.parse().ok())
                .unwrap_or(UNKNOWN_GID);
            return Some((pid, gid));
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use std::net::{TcpListener, TcpStream};

    use super::*;

    #[test]
    fn proc_net_tcp_lines_are_read() {
        let text = "  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode\n   0: 0100007F:0ACD 0100007F:A1B2 01 00000000:00000000 00:00000000 00000000  1000        0 4242 1 0 20 4 30 10 -1\n";
        let src: SocketAddr = "127.0.0.1:2765".parse().unwrap();
        let dst: SocketAddr = "127.0.0.1:41394".parse().unwrap();
        if cfg!(target_endian = "little") {
            assert_eq!(find_in_proc_net_tcp(text, src, dst), Some((1000, 4242)));
            assert_eq!(find_in_proc_net_tcp(text, dst, src), None);
        }
    }

    #[test]
    fn both_lookups_find_our_own_connection() {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let client = TcpStream::connect(listener.local_addr().unwrap()).unwrap();
        let (server, _) = listener.accept().unwrap();
        let (local, peer) = (server.local_addr().unwrap(), server.peer_addr().unwrap());
        let me = nix::unistd::geteuid().as_raw();
        let from_proc = proc_net_tcp(peer, local).expect("in /proc/net/tcp");
        assert_eq!(from_proc.0, me);
        if let Ok(found) = sock_diag(peer, local) {
            assert_eq!(found, Some(from_proc), "netlink and /proc agree");
        }
        let found = TcpPeer::lookup(local, peer).unwrap();
        assert_eq!((found.uid, found.inode), from_proc);
        assert_eq!(
            holder(me, found.inode),
            None,
            "our own process is never the caller"
        );
        // The agent's own end is not a client socket connected to it.
        assert!(TcpPeer::lookup(peer, local).is_none_or(|p| p.inode != found.inode));
        drop(client);
    }
}
