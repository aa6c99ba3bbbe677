"""The client: one gRPC channel to the agent's Unix socket, and a method per API call."""

from __future__ import annotations

import os
import random
import time
from collections.abc import Callable, Iterable, Sequence
from typing import Any, TypeVar

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from . import _peer
from ._errors import InvalidArgument, PsstError, Unavailable, error_for, from_rpc_error
from ._types import Identity, Secret, SecretMetadata, Written, _time
from ._watch import Watch, WatchStatus
from .v1 import psst_pb2, psst_pb2_grpc

__all__ = [
    "Client",
    "socket_path",
    "DEFAULT_SOCKET",
    "SOCKET_ENV",
    "DEFAULT_CALL_TIMEOUT",
    "DEFAULT_WATCH_MAX_BACKOFF",
    "MAX_WATCH_BACKOFF",
]

#: Where the agent listens unless told otherwise.
DEFAULT_SOCKET = "/run/psst/psst.sock"
#: The environment variable naming the agent's socket.
SOCKET_ENV = "PSST_SOCKET"
#: Seconds a call may take, waiting for the agent included, unless it says otherwise.
DEFAULT_CALL_TIMEOUT = 10.0
DEFAULT_INITIAL_BACKOFF = 0.05
DEFAULT_MAX_BACKOFF = 1.0
#: The cap of a watch's reconnect backoff, by default and at most.
DEFAULT_WATCH_MAX_BACKOFF = 5.0
MAX_WATCH_BACKOFF = 30.0

#: Seconds a passed peer check is relied on before the next call checks again (besides every
#: put, every watch connect, and any call after one that lost its connection).
PEER_RECHECK_INTERVAL = 1.0

# A call failing with one of these may have lost its connection: the next call checks the peer.
_CONNECTION_TROUBLE = frozenset(
    {
        grpc.StatusCode.UNAVAILABLE,
        grpc.StatusCode.DEADLINE_EXCEEDED,
        grpc.StatusCode.UNKNOWN,
        grpc.StatusCode.INTERNAL,
        grpc.StatusCode.CANCELLED,
    }
)

# What a call whose connection broke under it ends with (grpc versions differ: older ones say
# CANCELLED): a read is sent again when, besides, the socket no longer accepts.
_BROKE_UNDER_CALL = _CONNECTION_TROUBLE - {grpc.StatusCode.DEADLINE_EXCEEDED}

# The HTTP/2 :authority of every request. Stock HTTP/2 servers reject a socket path there
# (RST_STREAM PROTOCOL_ERROR), which is what grpc would otherwise derive from a unix: target;
# psstd's patched h2 ignores one (third_party/h2/PSST-PATCH.md). localhost works with either.
_AUTHORITY = "localhost"

T = TypeVar("T")


def socket_path() -> str:
    """The socket a client uses when none is given: ``$PSST_SOCKET`` when set and not empty,
    else ``/run/psst/psst.sock``."""
    return os.environ.get(SOCKET_ENV) or DEFAULT_SOCKET


class Client:
    """A connection to the psst agent. Thread-safe; share one per process.

    ``socket`` defaults to ``$PSST_SOCKET``, else ``/run/psst/psst.sock``. Connecting is lazy: the
    first call connects. Every call has a deadline: its ``timeout`` argument (seconds), else the
    client's ``timeout`` (default 10). While the agent cannot be reached (it is starting or
    restarting), every call waits for it, retrying with exponential backoff and jitter, until
    that deadline (then ``PsstError`` with code ``DEADLINE_EXCEEDED``) or, when set, for at most
    ``retry_timeout`` seconds (then ``Unavailable``; ``retry_timeout=0`` makes one attempt).
    Whether the agent is there is told by the socket refusing connections, never by grpc's
    error text.

    The client checks who serves the socket: the server's uid (``SO_PEERCRED``) must be
    ``expected_uid`` (else ``$PSST_EXPECTED_UID``, else the socket file's owner), or calls raise
    ``UntrustedAgent`` without sending anything. grpc's Python API dials by itself, so the check
    runs on its own connection to the same path: before a call when the last check is more than
    ``PEER_RECHECK_INTERVAL`` (1 s) old or a call lost its connection, immediately before every
    ``put``, and at each watch (re)connect. A server swapped in between that check and grpc's
    own connect is not caught (the agent narrows this from its side by refusing a socket
    directory others can write); the Go client checks the very connection it uses.

    Use it as a context manager, or call ``close()``.
    """

    def __init__(
        self,
        socket: str | os.PathLike[str] | None = None,
        *,
        timeout: float | None = DEFAULT_CALL_TIMEOUT,
        retry_timeout: float | None = None,
        initial_backoff: float = DEFAULT_INITIAL_BACKOFF,
        max_backoff: float = DEFAULT_MAX_BACKOFF,
        watch_max_backoff: float = DEFAULT_WATCH_MAX_BACKOFF,
        expected_uid: int | None = None,
        options: Sequence[tuple[str, Any]] = (),
    ) -> None:
        self._socket = os.fspath(socket) if socket is not None else socket_path()
        if not self._socket:
            raise ValueError("psst: empty socket path")
        self._timeout = None if timeout is None or timeout <= 0 else float(timeout)
        self._retry_timeout = None if retry_timeout is None else max(0.0, float(retry_timeout))
        self._initial_backoff = max(0.001, float(initial_backoff))
        self._max_backoff = max(self._initial_backoff, float(max_backoff))
        self._watch_max_backoff = min(
            max(self._initial_backoff, float(watch_max_backoff)), MAX_WATCH_BACKOFF
        )
        self._expected_uid = (
            expected_uid if expected_uid is not None else _peer.expected_uid_from_env()
        )
        # When the server last passed the peer check (time.monotonic()); 0 after a failed call.
        self._checked_at = 0.0
        channel_options = [
            ("grpc.default_authority", _AUTHORITY),
            # grpc-core's own reconnect backoff starts at 1s; keep it in step with ours.
            ("grpc.initial_reconnect_backoff_ms", int(self._initial_backoff * 1000)),
            ("grpc.min_reconnect_backoff_ms", int(self._initial_backoff * 1000)),
            ("grpc.max_reconnect_backoff_ms", int(self._max_backoff * 1000)),
            *options,
        ]
        self._channel = grpc.insecure_channel("unix:" + self._socket, options=channel_options)
        self._secrets = psst_pb2_grpc.SecretsStub(self._channel)
        self._health = health_pb2_grpc.HealthStub(self._channel)

    @property
    def socket(self) -> str:
        """The socket path this client uses."""
        return self._socket

    @property
    def channel(self) -> grpc.Channel:
        """The underlying gRPC channel, for calls the wrapper does not cover."""
        return self._channel

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        """Closes the channel. Calls after this fail."""
        self._channel.close()

    def __repr__(self) -> str:
        return f"psst.Client(socket={self._socket!r})"

    # --- the API -------------------------------------------------------------------------

    def get(self, reference: str, *, timeout: float | None = None) -> Secret:
        """Returns one secret. A reference is ``BACKEND:NAME[?SELECTOR][#KEY]``, e.g.
        ``local:demo/db-password``, ``local:a?version=2``, ``sm:prod/db#password``."""
        resp = self._invoke(
            self._secrets.GetSecret, psst_pb2.GetSecretRequest(reference=reference), timeout
        )
        return Secret._from_proto(resp)

    def batch_get(
        self, references: Iterable[str], *, timeout: float | None = None
    ) -> list[Secret | PsstError]:
        """One item per reference, in order: a ``Secret``, or the ``PsstError`` (with
        ``.reference`` set) for that item. A bad item does not fail the batch; an error for the
        call as a whole is raised."""
        if isinstance(references, str):
            raise TypeError("batch_get takes a list of references, not one string")
        req = psst_pb2.BatchGetSecretsRequest(references=list(references))
        resp = self._invoke(self._secrets.BatchGetSecrets, req, timeout)
        out: list[Secret | PsstError] = []
        for item in resp.results:
            kind = item.WhichOneof("result")
            if kind == "secret":
                out.append(Secret._from_proto(item.secret))
            elif kind == "error":
                out.append(
                    error_for(item.error.code, item.error.message, reference=item.reference)
                )
            else:
                out.append(
                    error_for(
                        grpc.StatusCode.INTERNAL,
                        "the agent sent an empty batch result",
                        reference=item.reference,
                    )
                )
        return out

    def list(self, prefix: str, *, timeout: float | None = None) -> list[SecretMetadata]:
        """The secrets under ``prefix`` (e.g. ``local:demo/``; ``local:`` is the whole backend)
        that the caller may list: metadata only, never values."""
        resp = self._invoke(
            self._secrets.ListSecrets, psst_pb2.ListSecretsRequest(prefix=prefix), timeout
        )
        return [
            SecretMetadata(
                reference=m.reference,
                version_id=m.version_id,
                updated_at=_time(m, "updated_at"),
            )
            for m in resp.secrets
        ]

    def put(self, reference: str, value: bytes, *, timeout: float | None = None) -> Written:
        """Writes ``value`` as a new version of the secret (a reference without selector or
        key)."""
        if isinstance(value, str):
            raise TypeError("put takes bytes; encode text first, e.g. value.encode()")
        req = psst_pb2.PutSecretRequest(reference=reference, value=bytes(value))
        resp = self._invoke(self._secrets.PutSecret, req, timeout, write=True)
        return Written(
            reference=resp.reference,
            version_id=resp.version_id,
            created_at=_time(resp, "created_at"),
        )

    def whoami(self, *, timeout: float | None = None) -> Identity:
        """How the agent sees the calling process and what the policy grants it."""
        resp = self._invoke(self._secrets.WhoAmI, psst_pb2.WhoAmIRequest(), timeout)
        return Identity._from_proto(resp)

    def watch(
        self,
        references: Iterable[str],
        *,
        give_up_after: float | None = None,
        on_status: Callable[[WatchStatus], None] | None = None,
    ) -> Watch:
        """Follows secrets: for each reference the current secret first (``CURRENT``), then one
        event per change (``NEW_VERSION``, ``PENDING_VERSION``, ``DELETED``). Returns a running
        ``Watch`` at once; iterate it, and close it (``with``) when done::

            with client.watch(["local:demo/db-password"]) as watch:
                for event in watch:
                    ...

        What the agent refuses ends the iteration with its ``PsstError``: ``PermissionDenied``
        (also when a policy reload takes the grant away), ``NotFound`` (the secret does not
        exist when the watch starts), ``InvalidArgument``.

        The watch reconnects by itself when the agent restarts or the stream breaks
        (UNAVAILABLE, or UNKNOWN, INTERNAL, CANCELLED from a reset) for as long as it is open: at
        once, then with exponential backoff and jitter capped at the client's
        ``watch_max_backoff`` (default 5 s, at most 30). ``on_status`` is called (on the watch's
        thread) with a ``WatchStatus`` when the agent becomes unreachable and when it is back;
        ``watch.status`` is the latest. ``give_up_after`` (seconds) opts in to ending the watch
        with ``Unavailable`` after failing that long in a row. It resumes from the version last
        received per reference (``known_versions``), so no version is delivered twice.

        Events that arrived before you read them are folded: several versions of a reference
        come as one event for the newest, whose ``previous_version_id`` is the version you had.
        """
        if isinstance(references, str):
            raise TypeError("watch takes a list of references, not one string")
        refs = list(references)
        if not refs:
            raise InvalidArgument("watch at least one reference")
        return Watch(
            self,
            refs,
            give_up_after=give_up_after,
            on_status=on_status,
            initial_backoff=self._initial_backoff,
            max_backoff=self._watch_max_backoff,
        )

    def health(self, *, timeout: float | None = None) -> str:
        """The agent's gRPC health status name: ``"SERVING"`` when it answers requests (or
        ``"NOT_SERVING"``, ...). Raises ``Unavailable`` when the agent cannot be reached."""
        resp = self._invoke(self._health.Check, health_pb2.HealthCheckRequest(), timeout)
        return health_pb2.HealthCheckResponse.ServingStatus.Name(resp.status)

    # --- plumbing ------------------------------------------------------------------------

    def _invoke(
        self,
        rpc: Callable[..., T],
        request: object,
        timeout: float | None,
        *,
        write: bool = False,
    ) -> T:
        """Runs one unary call within its deadline, waiting first for an agent that is not
        there yet (see the class docstring). A write (put) is checked afresh and sent once, never
        repeated. A read whose connection broke under it (UNAVAILABLE, or CANCELLED, UNKNOWN,
        INTERNAL from a reset, and the socket no longer accepts) waits for the agent again and
        is re-sent. An UNAVAILABLE the agent answers
        itself (a backend it cannot reach; the socket still accepts) is raised at once."""
        start = time.monotonic()
        timeout = self._timeout if timeout is None else timeout
        deadline = None if timeout is None else start + timeout
        fresh = write
        while True:
            self._wait_for_trusted_agent(start, deadline, fresh)
            remaining = None if deadline is None else max(0.0, deadline - time.monotonic())
            try:
                # wait_for_ready: a connection grpc is still making (it saw the agent just now)
                # is waited for instead of failing the call.
                return rpc(request, timeout=remaining, wait_for_ready=True)
            except grpc.RpcError as e:
                if e.code() in _CONNECTION_TROUBLE:
                    self._checked_at = 0.0  # the connection may be new next time: check again
                if write or e.code() not in _BROKE_UNDER_CALL or self._agent_there():
                    raise from_rpc_error(e) from None
                fresh = True

    def _agent_there(self) -> bool:
        """Whether a trusted server accepts on the socket right now (one attempt)."""
        try:
            _peer.check(self._socket, self._expected_uid, 1.0)
        except _peer.AgentNotThere:
            return False
        return True

    def _wait_for_trusted_agent(self, start: float, deadline: float | None, fresh: bool) -> None:
        """Returns once a server that passes the peer check accepts on the socket; retries
        while nothing does, until the deadline or ``retry_timeout``."""
        if not fresh and time.monotonic() - self._checked_at < PEER_RECHECK_INTERVAL:
            return
        give_up = deadline
        if self._retry_timeout is not None:
            cap = start + self._retry_timeout
            give_up = cap if give_up is None else min(give_up, cap)
        delay = self._initial_backoff
        attempts = 0
        while True:
            attempts += 1
            now = time.monotonic()
            try:
                _peer.check(
                    self._socket,
                    self._expected_uid,
                    1.0 if deadline is None else max(0.001, deadline - now),
                )
                self._checked_at = time.monotonic()
                return
            except _peer.AgentNotThere as e:
                reason = str(e)
            now = time.monotonic()
            left = None if give_up is None else give_up - now
            if left is not None and left <= 0:
                if deadline is not None and give_up >= deadline:
                    raise error_for(
                        grpc.StatusCode.DEADLINE_EXCEEDED,
                        f"cannot reach the psst agent at {self._socket} before the call's "
                        f"deadline ({attempts} attempts in {now - start:.1f}s): {reason}",
                    )
                raise self._unreachable(reason, attempts, now - start)
            pause = delay * random.uniform(0.8, 1.2)
            time.sleep(pause if left is None else min(left, pause))
            delay = min(delay * 2, self._max_backoff)

    def _unreachable(self, reason: str, attempts: int, elapsed: float) -> Unavailable:
        tried = f" ({attempts} attempts in {elapsed:.1f}s)" if attempts > 1 else ""
        return Unavailable(f"cannot reach the psst agent at {self._socket}{tried}: {reason}")
