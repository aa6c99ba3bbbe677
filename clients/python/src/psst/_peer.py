"""Who serves the socket: the server's uid (SO_PEERCRED) against the uid the client expects.

grpc's Python API dials the socket itself and cannot be handed a connected socket, so the
check runs on a separate connection to the same path (see ``Client``'s docstring for when, and
for the gap that leaves).
"""

from __future__ import annotations

import errno
import os
import socket
import struct

from ._errors import Unauthenticated

__all__ = ["UntrustedAgent", "EXPECTED_UID_ENV"]

#: The environment variable naming the uid the agent must run as.
EXPECTED_UID_ENV = "PSST_EXPECTED_UID"

_UCRED = struct.Struct("3i")  # struct ucred: pid, uid, gid

# What a connect to the socket raises when no agent is there (missing, refusing, not a socket):
# the agent is unreachable, which callers retry; anything else is a real error.
_NOT_THERE = frozenset(
    {errno.ENOENT, errno.ECONNREFUSED, errno.ENOTSOCK, errno.EAGAIN, errno.ENOTDIR}
)


class UntrustedAgent(Unauthenticated):
    """The process serving the socket does not run as the expected uid: nothing was sent."""


class AgentNotThere(Exception):
    """Nothing accepts connections on the socket (yet): retried until the call's deadline."""


def expected_uid_from_env() -> int | None:
    raw = os.environ.get(EXPECTED_UID_ENV, "")
    if not raw:
        return None
    try:
        uid = int(raw)
    except ValueError:
        uid = -1
    if uid < 0:
        raise ValueError(f"psst: {EXPECTED_UID_ENV}={raw!r} is not a uid")
    return uid


def expected(path: str, configured: int | None) -> tuple[int, str]:
    """The uid the server must run as, and where that came from: ``expected_uid`` (or
    ``$PSST_EXPECTED_UID``), else the socket file's owner, looked up now since the agent
    recreates its socket."""
    if configured is not None:
        return configured, "expected_uid"
    try:
        return os.stat(path).st_uid, "the socket file's owner"
    except FileNotFoundError as e:
        raise AgentNotThere(str(e)) from None


def peer_uid(sock: socket.socket) -> int:
    raw = sock.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, _UCRED.size)
    return _UCRED.unpack(raw)[1]


def verify(path: str, uid: int, want: int, source: str) -> None:
    if uid != want:
        raise UntrustedAgent(
            f"refusing the psst agent at {path}: it runs as uid {uid}, expected uid {want} ({source})"
        )


def check(path: str, configured: int | None, timeout: float) -> None:
    """Connects once to ``path`` and checks the server's uid. Raises ``AgentNotThere`` when no
    server accepts, ``UntrustedAgent`` when the wrong one does."""
    want, source = expected(path, configured)
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
        s.settimeout(max(timeout, 0.001))
        try:
            s.connect(path)
        except OSError as e:
            if e.errno in _NOT_THERE or isinstance(e, TimeoutError):
                raise AgentNotThere(os.strerror(e.errno) if e.errno else str(e)) from None
            raise
        verify(path, peer_uid(s), want, source)


async def check_async(path: str, configured: int | None) -> None:
    """``check`` without blocking the event loop."""
    import asyncio

    want, source = expected(path, configured)
    loop = asyncio.get_running_loop()
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
        s.setblocking(False)
        try:
            await loop.sock_connect(s, path)
        except OSError as e:
            if e.errno in _NOT_THERE:
                raise AgentNotThere(os.strerror(e.errno)) from None
            raise
        verify(path, peer_uid(s), want, source)
