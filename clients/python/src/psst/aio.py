"""asyncio client of the psst agent, on ``grpc.aio``: nothing here blocks the event loop.

    import psst.aio

    async with psst.aio.Client() as client:
        secret = await client.get("local:demo/db-password")
        async with psst.aio.Source(client, ["sm:prod/db"]) as source:
            password = source.get("sm:prod/db").text()     # from memory
            async for reference, secret in source.updates():
                await pool.reconnect(secret.text())

Same behaviour as ``psst.Client`` (default deadline, waiting for an agent that restarts, the
peer-uid check, watches that reconnect for as long as they are open); the same types and
errors.
"""

from __future__ import annotations

import asyncio
import os
import random
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Sequence
from typing import Any, TypeVar

import grpc
import grpc.aio
from grpc_health.v1 import health_pb2, health_pb2_grpc

from . import _peer
from ._client import (
    _AUTHORITY,
    DEFAULT_CALL_TIMEOUT,
    DEFAULT_INITIAL_BACKOFF,
    DEFAULT_MAX_BACKOFF,
    DEFAULT_WATCH_MAX_BACKOFF,
    MAX_WATCH_BACKOFF,
    socket_path,
)
from ._errors import InvalidArgument, PsstError, Unavailable, error_for, from_rpc_error
from ._source import _unique
from ._types import Identity, Secret, SecretMetadata, Written, _time
from ._watch import _BROKEN, _CARRIES_VALUE, WatchEvent, WatchStatus, _fold
from .v1 import psst_pb2, psst_pb2_grpc

__all__ = ["Client", "Watch", "Source", "Updates"]

T = TypeVar("T")


class Client:
    """``psst.Client`` for asyncio (see its docstring): every method is a coroutine, waits
    with ``asyncio.sleep``, and checks the server's uid with a non-blocking connect. Make it
    inside the event loop that uses it; ``async with`` or ``await close()``."""

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
        self._channel = grpc.aio.insecure_channel(
            "unix:" + self._socket,
            options=[
                ("grpc.default_authority", _AUTHORITY),
                ("grpc.initial_reconnect_backoff_ms", int(self._initial_backoff * 1000)),
                ("grpc.min_reconnect_backoff_ms", int(self._initial_backoff * 1000)),
                ("grpc.max_reconnect_backoff_ms", int(self._max_backoff * 1000)),
                *options,
            ],
        )
        self._secrets = psst_pb2_grpc.SecretsStub(self._channel)
        self._health = health_pb2_grpc.HealthStub(self._channel)
        # True while the channel stays READY on a connection whose server was checked; the
        # tracker task clears it whenever the channel leaves READY.
        self._trusted = False
        self._tracker: asyncio.Task[None] | None = None

    @property
    def socket(self) -> str:
        return self._socket

    @property
    def channel(self) -> grpc.aio.Channel:
        return self._channel

    async def __aenter__(self) -> Client:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def close(self) -> None:
        if self._tracker is not None:
            self._tracker.cancel()
        await self._channel.close()

    def __repr__(self) -> str:
        return f"psst.aio.Client(socket={self._socket!r})"

    # --- the API -------------------------------------------------------------------------

    async def get(self, reference: str, *, timeout: float | None = None) -> Secret:
        resp = await self._invoke(
            self._secrets.GetSecret, psst_pb2.GetSecretRequest(reference=reference), timeout
        )
        return Secret._from_proto(resp)

    async def batch_get(
        self, references: Iterable[str], *, timeout: float | None = None
    ) -> list[Secret | PsstError]:
        if isinstance(references, str):
            raise TypeError("batch_get takes a list of references, not one string")
        req = psst_pb2.BatchGetSecretsRequest(references=list(references))
        resp = await self._invoke(self._secrets.BatchGetSecrets, req, timeout)
        out: list[Secret | PsstError] = []
        for item in resp.results:
            kind = item.WhichOneof("result")
            if kind == "secret":
                out.append(Secret._from_proto(item.secret))
            elif kind == "error":
                out.append(error_for(item.error.code, item.error.message, reference=item.reference))
            else:
                out.append(
                    error_for(
                        grpc.StatusCode.INTERNAL,
                        "the agent sent an empty batch result",
                        reference=item.reference,
                    )
                )
        return out

    async def list(self, prefix: str, *, timeout: float | None = None) -> list[SecretMetadata]:
        resp = await self._invoke(
            self._secrets.ListSecrets, psst_pb2.ListSecretsRequest(prefix=prefix), timeout
        )
        return [
            SecretMetadata(
                reference=m.reference, version_id=m.version_id, updated_at=_time(m, "updated_at")
            )
            for m in resp.secrets
        ]

    async def put(self, reference: str, value: bytes, *, timeout: float | None = None) -> Written:
        if isinstance(value, str):
            raise TypeError("put takes bytes; encode text first, e.g. value.encode()")
        req = psst_pb2.PutSecretRequest(reference=reference, value=bytes(value))
        resp = await self._invoke(self._secrets.PutSecret, req, timeout, fresh_check=True)
        return Written(
            reference=resp.reference,
            version_id=resp.version_id,
            created_at=_time(resp, "created_at"),
        )

    async def whoami(self, *, timeout: float | None = None) -> Identity:
        resp = await self._invoke(self._secrets.WhoAmI, psst_pb2.WhoAmIRequest(), timeout)
        return Identity._from_proto(resp)

    async def health(self, *, timeout: float | None = None) -> str:
        resp = await self._invoke(self._health.Check, health_pb2.HealthCheckRequest(), timeout)
        return health_pb2.HealthCheckResponse.ServingStatus.Name(resp.status)

    def watch(
        self,
        references: Iterable[str],
        *,
        give_up_after: float | None = None,
        on_status: Callable[[WatchStatus], None] | None = None,
    ) -> Watch:
        """``psst.Client.watch`` as an async iterator: ``async for event in watch``. Runs as
        a task of the current loop; ``async with`` (or ``await watch.aclose()``) stops it."""
        if isinstance(references, str):
            raise TypeError("watch takes a list of references, not one string")
        refs = list(references)
        if not refs:
            raise InvalidArgument("watch at least one reference")
        return Watch(self, refs, give_up_after=give_up_after, on_status=on_status)

    # --- plumbing ------------------------------------------------------------------------

    async def _invoke(
        self,
        rpc: Callable[..., Awaitable[T]],
        request: object,
        timeout: float | None,
        *,
        fresh_check: bool = False,
    ) -> T:
        start = time.monotonic()
        timeout = self._timeout if timeout is None else timeout
        deadline = None if timeout is None else start + timeout
        await self._wait_for_trusted_agent(start, deadline, fresh_check)
        remaining = None if deadline is None else max(0.0, deadline - time.monotonic())
        try:
            return await rpc(request, timeout=remaining, wait_for_ready=True)
        except grpc.aio.AioRpcError as e:
            raise from_rpc_error(e) from None

    def _start_tracker(self) -> None:
        if self._tracker is None or self._tracker.done():
            self._tracker = asyncio.get_running_loop().create_task(self._track())

    async def _track(self) -> None:
        state = self._channel.get_state()
        while True:
            await self._channel.wait_for_state_change(state)
            state = self._channel.get_state()
            if state is not grpc.ChannelConnectivity.READY:
                self._trusted = False

    async def _wait_for_trusted_agent(
        self, start: float, deadline: float | None, fresh: bool
    ) -> None:
        self._start_tracker()
        if self._trusted and not fresh:
            return
        give_up = deadline
        if self._retry_timeout is not None:
            cap = start + self._retry_timeout
            give_up = cap if give_up is None else min(give_up, cap)
        delay = self._initial_backoff
        attempts = 0
        while True:
            attempts += 1
            try:
                await _peer.check_async(self._socket, self._expected_uid)
                self._trusted = self._channel.get_state() is grpc.ChannelConnectivity.READY
                return
            except _peer.AgentNotThere as e:
                reason = str(e)
            now = time.monotonic()
            left = None if give_up is None else give_up - now
            if left is not None and left <= 0:
                if deadline is not None and give_up is not None and give_up >= deadline:
                    raise error_for(
                        grpc.StatusCode.DEADLINE_EXCEEDED,
                        f"cannot reach the psst agent at {self._socket} before the call's "
                        f"deadline ({attempts} attempts in {now - start:.1f}s): {reason}",
                    )
                tried = f" ({attempts} attempts in {now - start:.1f}s)" if attempts > 1 else ""
                raise Unavailable(f"cannot reach the psst agent at {self._socket}{tried}: {reason}")
            pause = delay * random.uniform(0.8, 1.2)
            await asyncio.sleep(pause if left is None else min(left, pause))
            delay = min(delay * 2, self._max_backoff)


class Watch:
    """A running watch for asyncio (see ``psst.Client.watch``): ``async for event in watch``;
    ``await watch.next_event(timeout)``; ``status``; ``async with`` to stop it. Events are
    folded until read, as in the sync watch."""

    def __init__(
        self,
        client: Client,
        references: Sequence[str],
        *,
        give_up_after: float | None,
        on_status: Callable[[WatchStatus], None] | None,
    ) -> None:
        self._client = client
        self._references = tuple(references)
        self._give_up_after = give_up_after if give_up_after and give_up_after > 0 else None
        self._on_status = on_status
        self._status = WatchStatus(reachable=True, since=time.monotonic())
        self._queue: list[WatchEvent] = []
        self._known: dict[str, str] = {}
        self._error: PsstError | None = None
        self._closed = False
        self._changed = asyncio.Event()
        self._task = asyncio.get_running_loop().create_task(self._run())

    @property
    def references(self) -> tuple[str, ...]:
        return self._references

    @property
    def status(self) -> WatchStatus:
        return self._status

    def __aiter__(self) -> AsyncIterator[WatchEvent]:
        return self

    async def __anext__(self) -> WatchEvent:
        try:
            return await self.next_event()
        except _Closed:
            raise StopAsyncIteration from None

    async def next_event(self, timeout: float | None = None) -> WatchEvent:
        """The next event, waiting up to ``timeout`` seconds: raises ``TimeoutError`` when none
        came (the watch goes on), or the ``PsstError`` that ended the watch."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            if self._queue:
                return self._queue.pop(0)
            if self._closed:
                raise _Closed()
            if self._error is not None:
                raise type(self._error)(self._error.message, code=self._error.code) from None
            self._changed.clear()
            left = None if deadline is None else deadline - time.monotonic()
            if left is not None and left <= 0:
                raise TimeoutError(f"no watch event within {timeout}s")
            try:
                await asyncio.wait_for(self._changed.wait(), left)
            except asyncio.TimeoutError:
                raise TimeoutError(f"no watch event within {timeout}s") from None

    async def aclose(self) -> None:
        self._closed = True
        self._queue.clear()
        self._changed.set()
        self._task.cancel()
        try:
            await self._task
        except (asyncio.CancelledError, Exception):  # noqa: BLE001 - it is stopping
            pass

    async def __aenter__(self) -> Watch:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    def _set_status(self, status: WatchStatus) -> None:
        self._status = status
        if self._on_status is not None:
            try:
                self._on_status(status)
            except Exception:  # noqa: BLE001 - the app's callback must not end the watch
                pass

    async def _run(self) -> None:
        client = self._client
        failing_since: float | None = None
        attempts = 0
        delay = client._initial_backoff
        while not self._closed:
            request = psst_pb2.WatchSecretsRequest(
                references=self._references, known_versions=self._known
            )
            err: grpc.aio.AioRpcError | None = None
            reason = ""
            try:
                await _peer.check_async(client.socket, client._expected_uid)
                call = client._secrets.WatchSecrets(request)
                await call.initial_metadata()
                if not call.done():
                    failing_since, attempts = None, 0
                    if not self._status.reachable:
                        self._set_status(WatchStatus(reachable=True, since=time.monotonic()))
                async for p in call:
                    event = WatchEvent._from_proto(p)
                    failing_since, attempts, delay = None, 0, client._initial_backoff
                    if event.secret is not None:
                        self._known[event.reference] = event.secret.version_id
                    _fold(self._queue, event)
                    self._changed.set()
            except _peer.AgentNotThere as e:
                reason = str(e)
            except PsstError as e:  # UntrustedAgent
                self._error = e
                self._changed.set()
                return
            except grpc.aio.AioRpcError as e:
                err = e
                reason = e.details() or ""
            except grpc.aio.UsageError:  # the channel was closed
                self._error = error_for(grpc.StatusCode.CANCELLED, "watch: the client was closed")
                self._changed.set()
                return
            if self._closed:
                return
            if err is not None and err.code() not in _BROKEN:
                self._error = from_rpc_error(err)
                self._changed.set()
                return
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
                self._error = Unavailable(
                    f"watch: cannot reach the psst agent at {client.socket} "
                    f"({attempts} attempts in {now - failing_since:.1f}s): {reason}"
                )
                self._changed.set()
                return
            if first:
                continue
            if self._status.reachable:
                self._set_status(
                    WatchStatus(
                        reachable=False,
                        error=Unavailable(
                            f"watch: cannot reach the psst agent at {client.socket}: {reason}"
                        ),
                        since=failing_since,
                    )
                )
            pause = delay * random.uniform(0.8, 1.2)
            if self._give_up_after is not None:
                pause = min(pause, max(0.0, failing_since + self._give_up_after - now))
            await asyncio.sleep(pause)
            delay = min(delay * 2, client._watch_max_backoff)


class Updates:
    """What ``Source.updates()`` returns: an async iterator of ``(reference, secret)``."""

    def __init__(self, source: Source, queue: asyncio.Queue[tuple[str, Secret] | None]) -> None:
        self._source = source
        self._queue = queue
        self._done = False

    def __aiter__(self) -> Updates:
        return self

    async def __anext__(self) -> tuple[str, Secret]:
        if self._done:
            raise StopAsyncIteration
        item = await self._queue.get()
        if item is None:
            self._done = True
            raise StopAsyncIteration
        return item

    async def aclose(self) -> None:
        self._done = True
        if self._queue in self._source._subscribers:
            self._source._subscribers.remove(self._queue)


class _Closed(Exception):
    """The watch was closed: iteration stops."""


class Source:
    """``psst.Source`` for asyncio: ``async with psst.aio.Source(client, refs) as source``
    (or ``source = await psst.aio.Source.open(client, refs)``) reads every reference once, then
    follows them; ``source.get(ref)`` answers from memory; ``async for reference, secret in
    source.updates()`` yields each new value; ``on_update`` may be a function or a coroutine
    function. Errors never replace a good value; ``status`` and ``error`` as in ``psst.Source``.
    """

    def __init__(
        self,
        client: Client,
        references: Iterable[str],
        *,
        on_update: Callable[[str, Secret], Any] | None = None,
        on_status: Callable[[WatchStatus], None] | None = None,
        timeout: float | None = None,
    ) -> None:
        self._client = client
        self._references = _unique(references)
        self._on_update = on_update
        self._on_status = on_status
        self._timeout = client._timeout if timeout is None else timeout
        self._values: dict[str, Secret] = {}
        self._error: PsstError | None = None
        self._subscribers: list[asyncio.Queue[tuple[str, Secret] | None]] = []
        self._watch: Watch | None = None
        self._task: asyncio.Task[None] | None = None

    @classmethod
    async def open(cls, client: Client, references: Iterable[str], **kw: Any) -> Source:
        source = cls(client, references, **kw)
        await source._open()
        return source

    async def __aenter__(self) -> Source:
        await self._open()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    async def _open(self) -> None:
        self._watch = self._client.watch(self._references, on_status=self._on_status)
        deadline = None if self._timeout is None else time.monotonic() + self._timeout
        try:
            while len(self._values) < len(self._references):
                left = None if deadline is None else max(0.0, deadline - time.monotonic())
                self._apply(await self._watch.next_event(left))
        except BaseException:
            await self._watch.aclose()
            raise
        self._task = asyncio.get_running_loop().create_task(self._follow())

    def get(self, reference: str) -> Secret:
        try:
            return self._values[reference]
        except KeyError:
            raise InvalidArgument(f"the source does not follow {reference}") from None

    def updates(self) -> Updates:
        """Each new value from the moment of this call, as ``(reference, secret)``, for
        ``async for``; ends when the source stops following (``error`` says why) or is closed.
        Every update is queued (one per rotation: few); ``aclose()`` it when done early."""
        queue: asyncio.Queue[tuple[str, Secret] | None] = asyncio.Queue()
        if self._task is None or self._task.done():
            queue.put_nowait(None)
        else:
            self._subscribers.append(queue)
        return Updates(self, queue)

    @property
    def status(self) -> WatchStatus:
        assert self._watch is not None
        return self._watch.status

    @property
    def error(self) -> PsstError | None:
        return self._error

    async def aclose(self) -> None:
        if self._watch is not None:
            await self._watch.aclose()
        if self._task is not None:
            await self._task

    def _apply(self, event: WatchEvent) -> bool:
        if event.kind not in _CARRIES_VALUE or event.secret is None:
            return False
        self._values[event.reference] = event.secret
        return True

    async def _follow(self) -> None:
        assert self._watch is not None
        try:
            async for event in self._watch:
                if not self._apply(event) or event.secret is None:
                    continue
                for q in self._subscribers:
                    q.put_nowait((event.reference, event.secret))
                if self._on_update is not None:
                    try:
                        result = self._on_update(event.reference, event.secret)
                        if asyncio.iscoroutine(result):
                            await result
                    except Exception:  # noqa: BLE001 - the app's callback must not end it
                        pass
        except PsstError as e:
            self._error = e
        finally:
            for q in self._subscribers:
                q.put_nowait(None)
            self._subscribers.clear()
