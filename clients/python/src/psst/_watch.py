"""``client.watch(refs)``: follows secrets, reconnecting and resuming when the agent restarts."""

from __future__ import annotations

import dataclasses
import enum
import random
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING

import grpc

from . import _peer
from ._errors import PsstError, Unavailable, error_for, from_rpc_error
from ._types import Secret, _time
from .v1 import psst_pb2

if TYPE_CHECKING:
    from ._client import Client

__all__ = ["Watch", "WatchEvent", "WatchEventKind", "WatchStatus"]

# A stream that ends with one of these broke with its connection (the agent restarting, or a
# reset): reconnect and resume. Any other code ends the watch.
_BROKEN = frozenset(
    {
        grpc.StatusCode.UNAVAILABLE,
        grpc.StatusCode.UNKNOWN,
        grpc.StatusCode.INTERNAL,
        grpc.StatusCode.CANCELLED,
    }
)


class WatchEventKind(enum.Enum):
    """What a ``WatchEvent`` reports (the proto's ``WatchEvent.Kind``)."""

    #: Not set (an agent newer than this client sent a kind it does not know).
    UNSPECIFIED = 0
    #: The state when the watch starts: ``secret`` holds the current version.
    CURRENT = 1
    #: A new current version: ``secret`` holds it, ``previous_version_id`` the one you had.
    NEW_VERSION = 2
    #: A version is staged but not current yet (a rotation started): ``pending_version_id``.
    PENDING_VERSION = 3
    #: The secret no longer exists.
    DELETED = 4

    @classmethod
    def _missing_(cls, value: object) -> WatchEventKind:
        return cls.UNSPECIFIED

    def __str__(self) -> str:
        return self.name


_CARRIES_VALUE = (WatchEventKind.CURRENT, WatchEventKind.NEW_VERSION)


@dataclass(frozen=True, slots=True, repr=False)
class WatchEvent:
    """One change a ``Watch`` reports. ``repr()`` and ``str()`` never show the value."""

    #: The watched reference, as passed to ``watch``.
    reference: str
    kind: WatchEventKind
    #: The new current version for ``CURRENT`` and ``NEW_VERSION``, else ``None``.
    secret: Secret | None = None
    #: For ``NEW_VERSION``, the version you had before this one (when events were folded
    #: together, the one before the first of them). For ``PENDING_VERSION``, the current one.
    previous_version_id: str = ""
    #: The staged version of a ``PENDING_VERSION``.
    pending_version_id: str = ""
    #: When the agent saw the change (UTC), or ``None`` when it does not say.
    observed_at: datetime | None = None

    def __repr__(self) -> str:
        parts = [f"reference={self.reference!r}", f"kind={self.kind.name}"]
        if self.secret is not None:
            parts.append(f"version_id={self.secret.version_id!r}")
        if self.previous_version_id:
            parts.append(f"previous_version_id={self.previous_version_id!r}")
        if self.pending_version_id:
            parts.append(f"pending_version_id={self.pending_version_id!r}")
        if self.secret is not None:
            parts.append(f"value=<redacted {len(self.secret.value)} bytes>")
        return f"WatchEvent({', '.join(parts)})"

    __str__ = __repr__

    def __format__(self, spec: str) -> str:
        return format(repr(self), spec)

    @classmethod
    def _from_proto(cls, p: psst_pb2.WatchEvent) -> WatchEvent:
        return cls(
            reference=p.reference,
            kind=WatchEventKind(p.kind),
            secret=Secret._from_proto(p.secret) if p.HasField("secret") else None,
            previous_version_id=p.previous_version_id,
            pending_version_id=p.pending_version_id,
            observed_at=_time(p, "observed_at"),
        )


@dataclass(frozen=True, slots=True)
class WatchStatus:
    """Whether a watch reaches the agent. ``reachable`` is False when the stream broke and
    reconnecting failed: the watch keeps trying (unless ``give_up_after`` ends it) and the
    values you have may be out of date; True again once the agent took the watch back."""

    reachable: bool
    #: Why the agent is unreachable (an ``Unavailable``), else ``None``.
    error: PsstError | None = None
    #: When this status began (``time.monotonic()``).
    since: float = 0.0


def _fold(queue: list[WatchEvent], event: WatchEvent) -> None:
    """Adds ``event`` to the events not yet read, in place. A new version of a reference whose
    last unread event also carries a version replaces that event: the reader gets the newest
    version, with the previous version it actually had (and CURRENT stays CURRENT). Other events
    are kept in order."""
    if event.kind in _CARRIES_VALUE:
        for i in range(len(queue) - 1, -1, -1):
            earlier = queue[i]
            if earlier.reference != event.reference:
                continue
            if earlier.kind in _CARRIES_VALUE:
                queue[i] = dataclasses.replace(
                    event,
                    previous_version_id=earlier.previous_version_id,
                    kind=(
                        WatchEventKind.CURRENT
                        if earlier.kind is WatchEventKind.CURRENT
                        else event.kind
                    ),
                )
                return
            break
    queue.append(event)


class Watch:
    """A running watch: iterate it for ``WatchEvent``s; use it as a context manager (or call
    ``close()``) to stop it. Made by ``Client.watch``.

    Events are received by a background thread and folded until read, so a slow reader gets
    the latest version of each reference, never a backlog. The watch reconnects and resumes by
    itself when the agent restarts; see ``Client.watch``.
    """

    def __init__(
        self,
        client: Client,
        references: Sequence[str],
        *,
        give_up_after: float | None,
        on_status: Callable[[WatchStatus], None] | None,
        initial_backoff: float,
        max_backoff: float,
    ) -> None:
        self._client = client
        self._references = tuple(references)
        self._give_up_after = give_up_after if give_up_after and give_up_after > 0 else None
        self._on_status = on_status
        self._status = WatchStatus(reachable=True, since=time.monotonic())
        self._initial_backoff = initial_backoff
        self._max_backoff = max_backoff
        self._cond = threading.Condition()
        self._queue: list[WatchEvent] = []  # received, folded, not yet read
        self._known: dict[str, str] = {}  # reference -> version last received
        self._error: PsstError | None = None  # ends the watch once the queue is read
        self._closed = False
        self._call: grpc.Call | None = None
        self._stop = threading.Event()
        self._thread = threading.Thread(
            target=self._run, name=f"psst-watch-{self._references[0]}", daemon=True
        )
        self._thread.start()

    @property
    def references(self) -> tuple[str, ...]:
        return self._references

    @property
    def closed(self) -> bool:
        return self._closed

    @property
    def status(self) -> WatchStatus:
        """The latest ``WatchStatus`` (reachable until a reconnect has failed)."""
        return self._status

    def _set_status(self, status: WatchStatus) -> None:
        self._status = status
        if self._on_status is not None:
            try:
                self._on_status(status)
            except Exception:  # noqa: BLE001 - the app's callback must not end the watch
                pass

    def __repr__(self) -> str:
        state = "closed" if self._closed else "ended" if self._error else "running"
        return f"psst.Watch(references={list(self._references)!r}, {state})"

    # --- reading ---------------------------------------------------------------------------

    def __iter__(self) -> Iterator[WatchEvent]:
        return self

    def __next__(self) -> WatchEvent:
        return self.next_event()

    def next_event(self, timeout: float | None = None) -> WatchEvent:
        """``next(watch)`` with a timeout: the next event, waiting up to ``timeout`` seconds
        (``None``: no limit). Raises ``TimeoutError`` when none came in time (the watch goes
        on), the ``PsstError`` that ended the watch (again on every later call), or
        ``StopIteration`` once the watch is closed."""
        deadline = None if timeout is None else time.monotonic() + timeout
        with self._cond:
            while True:
                if self._queue:
                    return self._queue.pop(0)
                if self._closed:
                    raise StopIteration
                if self._error is not None:
                    # A fresh exception each time, so tracebacks do not pile up on one.
                    raise type(self._error)(self._error.message, code=self._error.code) from None
                remaining = None if deadline is None else deadline - time.monotonic()
                if remaining is not None and remaining <= 0:
                    raise TimeoutError(f"no watch event within {timeout}s")
                self._cond.wait(remaining)

    # --- stopping --------------------------------------------------------------------------

    def close(self) -> None:
        """Stops the watch: the stream is cancelled, the background thread ends, and iterating
        stops (``StopIteration``). Safe to call more than once, from any thread."""
        with self._cond:
            if self._closed:
                return
            self._closed = True
            self._queue.clear()
            call = self._call
            self._cond.notify_all()
        self._stop.set()
        if call is not None:
            call.cancel()
        if threading.current_thread() is not self._thread:
            self._thread.join(timeout=10)

    def __enter__(self) -> Watch:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # --- the background thread -------------------------------------------------------------

    def _end(self, error: PsstError) -> None:
        with self._cond:
            self._error = error
            self._cond.notify_all()

    def _run(self) -> None:
        failing_since: float | None = None
        attempts = 0
        delay = self._initial_backoff
        while True:
            with self._cond:
                if self._closed:
                    return
                request = psst_pb2.WatchSecretsRequest(
                    references=self._references, known_versions=self._known
                )
            err: grpc.RpcError | None = None
            reason = ""
            try:
                # Who serves the socket, before the request goes (see Client).
                _peer.check(self._client.socket, self._client._expected_uid, 2.0)
                call = self._client._secrets.WatchSecrets(request)
                with self._cond:
                    if self._closed:
                        call.cancel()
                        return
                    self._call = call
                call.initial_metadata()  # headers, or the end of a refused call
                if not call.done():
                    # The agent took the watch: failures are counted afresh from here.
                    failing_since, attempts = None, 0
                    if not self._status.reachable:
                        self._set_status(WatchStatus(reachable=True, since=time.monotonic()))
                for p in call:
                    event = WatchEvent._from_proto(p)
                    failing_since, attempts, delay = None, 0, self._initial_backoff
                    with self._cond:
                        if event.secret is not None:
                            self._known[event.reference] = event.secret.version_id
                        _fold(self._queue, event)
                        self._cond.notify_all()
            except _peer.AgentNotThere as e:
                reason = str(e)
            except PsstError as e:  # UntrustedAgent
                self._end(e)
                return
            except grpc.RpcError as e:
                err = e
                reason = e.details() or ""
            except ValueError:  # "Cannot invoke RPC on closed channel!"
                self._end(error_for(grpc.StatusCode.CANCELLED, "watch: the client was closed"))
                return
            finally:
                with self._cond:
                    self._call = None
            if self._closed:
                return
            if err is not None and err.code() not in _BROKEN:
                self._end(from_rpc_error(err))
                return

            # The stream broke, ended without a status, or nothing accepts on the socket:
            # reconnect, and resume from what was received (known_versions).
            now = time.monotonic()
            attempts += 1
            first = failing_since is None
            if failing_since is None:
                failing_since = now
            reason = reason or "the stream ended"
            if (
                self._give_up_after is not None
                and not first
                and now - failing_since >= self._give_up_after
            ):
                self._end(
                    Unavailable(
                        f"watch: cannot reach the psst agent at {self._client.socket} "
                        f"({attempts} attempts in {now - failing_since:.1f}s): {reason}"
                    )
                )
                return
            if first:
                continue  # the first attempt after a break is immediate
            if self._status.reachable:
                self._set_status(
                    WatchStatus(
                        reachable=False,
                        error=Unavailable(
                            f"watch: cannot reach the psst agent at {self._client.socket}: {reason}"
                        ),
                        since=failing_since,
                    )
                )
            pause = delay * random.uniform(0.8, 1.2)
            if self._give_up_after is not None:
                pause = min(pause, max(0.0, failing_since + self._give_up_after - now))
            if self._stop.wait(pause):
                return
            delay = min(delay * 2, self._max_backoff)
