"""The client: one gRPC channel to the agent's Unix socket, and a method per API call."""

from __future__ import annotations

import os
import random
import time
from collections.abc import Callable, Iterable, Sequence
from typing import Any, TypeVar

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from ._errors import InvalidArgument, PsstError, Unavailable, error_for, from_rpc_error
from ._types import Identity, Secret, SecretMetadata, Written, _time
from ._watch import Watch
from .v1 import psst_pb2, psst_pb2_grpc

__all__ = [
    "Client",
    "socket_path",
    "DEFAULT_SOCKET",
    "SOCKET_ENV",
    "DEFAULT_RETRY_TIMEOUT",
]

#: Where the agent listens unless told otherwise.
DEFAULT_SOCKET = "/run/psst/psst.sock"
#: The environment variable naming the agent's socket.
SOCKET_ENV = "PSST_SOCKET"
#: Seconds a call keeps retrying while the agent cannot be reached.
DEFAULT_RETRY_TIMEOUT = 5.0
DEFAULT_INITIAL_BACKOFF = 0.05
DEFAULT_MAX_BACKOFF = 1.0

# The HTTP/2 :authority of every request. The agent's HTTP/2 server rejects a socket path there
# (RST_STREAM PROTOCOL_ERROR), which is what grpc would otherwise derive from a unix: target.
_AUTHORITY = "localhost"

# What grpc-core says when a fail-fast call found no connection: the request never left this
# process, so it is safe to retry any call, a put included.
_NOT_CONNECTED = "failed to connect to all addresses"

T = TypeVar("T")


def socket_path() -> str:
    """The socket a client uses when none is given: ``$PSST_SOCKET`` when set and not empty,
    else ``/run/psst/psst.sock``."""
    return os.environ.get(SOCKET_ENV) or DEFAULT_SOCKET


class Client:
    """A connection to the psst agent. Thread-safe; share one per process.

    ``socket`` defaults to ``$PSST_SOCKET``, else ``/run/psst/psst.sock``. Connecting is lazy: the
    first call connects, and every call retries with exponential backoff and jitter for up to
    ``retry_timeout`` seconds while the agent cannot be reached (it is starting or restarting),
    then raises ``Unavailable``. ``retry_timeout=0`` makes one attempt. Every method takes an
    optional ``timeout`` (seconds) for the whole call, retries included.

    Use it as a context manager, or call ``close()``.
    """

    def __init__(
        self,
        socket: str | os.PathLike[str] | None = None,
        *,
        retry_timeout: float = DEFAULT_RETRY_TIMEOUT,
        initial_backoff: float = DEFAULT_INITIAL_BACKOFF,
        max_backoff: float = DEFAULT_MAX_BACKOFF,
        options: Sequence[tuple[str, Any]] = (),
    ) -> None:
        self._socket = os.fspath(socket) if socket is not None else socket_path()
        if not self._socket:
            raise ValueError("psst: empty socket path")
        self._retry_timeout = max(0.0, float(retry_timeout))
        self._initial_backoff = max(0.001, float(initial_backoff))
        self._max_backoff = max(self._initial_backoff, float(max_backoff))
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
        resp = self._invoke(self._secrets.PutSecret, req, timeout)
        return Written(
            reference=resp.reference,
            version_id=resp.version_id,
            created_at=_time(resp, "created_at"),
        )

    def whoami(self, *, timeout: float | None = None) -> Identity:
        """How the agent sees the calling process and what the policy grants it."""
        resp = self._invoke(self._secrets.WhoAmI, psst_pb2.WhoAmIRequest(), timeout)
        return Identity._from_proto(resp)

    def watch(self, references: Iterable[str], *, retry_timeout: float | None = None) -> Watch:
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
        (UNAVAILABLE, or UNKNOWN, INTERNAL, CANCELLED from a reset): at once, then with the
        client's backoff, for up to ``retry_timeout`` seconds (default: the client's) of failed
        attempts in a row, then raises ``Unavailable``. It resumes from the version last
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
            retry_timeout=self._retry_timeout if retry_timeout is None else retry_timeout,
            initial_backoff=self._initial_backoff,
            max_backoff=self._max_backoff,
        )

    def health(self, *, timeout: float | None = None) -> str:
        """The agent's gRPC health status name: ``"SERVING"`` when it answers requests (or
        ``"NOT_SERVING"``, ...). Raises ``Unavailable`` when the agent cannot be reached."""
        resp = self._invoke(self._health.Check, health_pb2.HealthCheckRequest(), timeout)
        return health_pb2.HealthCheckResponse.ServingStatus.Name(resp.status)

    # --- plumbing ------------------------------------------------------------------------

    def _invoke(self, rpc: Callable[..., T], request: object, timeout: float | None) -> T:
        """Runs one unary call, retrying while the agent cannot be reached.

        Only failures where the request never reached the agent are retried (no connection to
        the socket), so a put is never sent twice; an UNAVAILABLE the agent answers itself (a
        backend it cannot reach) is raised at once.
        """
        start = time.monotonic()
        deadline = None if timeout is None else start + timeout
        give_up = start + self._retry_timeout
        if deadline is not None:
            give_up = min(give_up, deadline)
        delay = self._initial_backoff
        attempts = 0
        while True:
            attempts += 1
            remaining = None if deadline is None else max(0.0, deadline - time.monotonic())
            try:
                return rpc(request, timeout=remaining)
            except grpc.RpcError as e:
                if not _never_reached_agent(e):
                    raise from_rpc_error(e) from None
                left = give_up - time.monotonic()
                if left <= 0:
                    raise self._unreachable(e, attempts, time.monotonic() - start) from None
            time.sleep(min(left, delay * random.uniform(0.8, 1.2)))
            delay = min(delay * 2, self._max_backoff)

    def _unreachable(self, err: grpc.RpcError, attempts: int, elapsed: float) -> Unavailable:
        tried = f" ({attempts} attempts in {elapsed:.1f}s)" if attempts > 1 else ""
        return Unavailable(
            f"cannot reach the psst agent at {self._socket}{tried}: {err.details()}"
        )


def _never_reached_agent(err: grpc.RpcError) -> bool:
    code = err.code() if hasattr(err, "code") else None
    details = (err.details() if hasattr(err, "details") else "") or ""
    return code == grpc.StatusCode.UNAVAILABLE and _NOT_CONNECTED in details

