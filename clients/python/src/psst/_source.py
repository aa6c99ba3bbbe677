"""``Source``: the always-current value of some secrets, kept in memory by a watch."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING

from ._errors import InvalidArgument, PsstError
from ._types import Secret
from ._watch import _CARRIES_VALUE, Watch, WatchEvent, WatchStatus

if TYPE_CHECKING:
    from ._client import Client

__all__ = ["Source"]

#: Called with the reference and its new secret after a rotation.
UpdateCallback = Callable[[str, Secret], None]


def _unique(references: Iterable[str]) -> list[str]:
    if isinstance(references, str):
        raise TypeError("Source takes a list of references, not one string")
    refs = list(dict.fromkeys(references))
    if not refs:
        raise InvalidArgument("a source follows at least one reference")
    return refs


class Source:
    """The always-current value of some secrets: each is read once when the source opens, then
    followed by a watch; ``get`` answers from memory. Errors never replace a good value: while
    the agent is unreachable, or after the watch ended (``error`` says why), ``get`` keeps
    returning the last value. A staged version or a deletion keeps the value too (credentials
    usually outlive their secret entry)::

        with psst.Source(client, ["sm:prod/db"], on_update=reconnect_pool) as source:
            password = source.get("sm:prod/db").text()

    ``on_update(reference, secret)`` and ``on_status(WatchStatus)`` run on the source's thread
    (keep them short; exceptions in them are ignored). Opening waits up to ``timeout`` seconds
    (default: the client's call timeout) for the first values, and raises the agent's
    ``PsstError`` when a reference is refused (``PermissionDenied`` to watch it, ``NotFound``).
    """

    def __init__(
        self,
        client: Client,
        references: Iterable[str],
        *,
        on_update: UpdateCallback | None = None,
        on_status: Callable[[WatchStatus], None] | None = None,
        timeout: float | None = None,
    ) -> None:
        self._references = _unique(references)
        self._listeners: list[UpdateCallback] = [on_update] if on_update else []
        self._cond = threading.Condition()
        self._values: dict[str, Secret] = {}
        self._generation = 0  # bumped on every new value, for wait_for_update
        self._error: PsstError | None = None
        self._watch: Watch = client.watch(self._references, on_status=on_status)
        wait = client._timeout if timeout is None else timeout
        deadline = None if wait is None else time.monotonic() + wait
        try:
            while len(self._values) < len(self._references):
                left = None if deadline is None else max(0.0, deadline - time.monotonic())
                self._apply(self._watch.next_event(left))
        except BaseException:
            self._watch.close()
            raise
        self._thread = threading.Thread(
            target=self._follow, name=f"psst-source-{self._references[0]}", daemon=True
        )
        self._thread.start()

    def get(self, reference: str) -> Secret:
        """The newest value of ``reference`` (one the source follows), from memory."""
        with self._cond:
            try:
                return self._values[reference]
            except KeyError:
                raise InvalidArgument(f"the source does not follow {reference}") from None

    def add_listener(self, callback: UpdateCallback) -> None:
        """Also calls ``callback(reference, secret)`` after each new value."""
        with self._cond:
            self._listeners.append(callback)

    def wait_for_update(self, timeout: float | None = None) -> bool:
        """Waits until a value changes (True) or ``timeout`` passes (False)."""
        with self._cond:
            seen = self._generation
            return self._cond.wait_for(
                lambda: self._generation != seen or self._error is not None, timeout
            ) and self._generation != seen

    @property
    def status(self) -> WatchStatus:
        """Whether the agent is reachable (the latest ``WatchStatus``)."""
        return self._watch.status

    @property
    def error(self) -> PsstError | None:
        """Why the source stopped following its secrets (a revoked grant, or ``give_up``), or
        ``None`` while it follows them. The last values stay."""
        return self._error

    @property
    def references(self) -> tuple[str, ...]:
        return tuple(self._references)

    def close(self) -> None:
        """Stops following. ``get`` keeps answering with the last values."""
        self._watch.close()
        if threading.current_thread() is not self._thread:
            self._thread.join(timeout=10)

    def __enter__(self) -> Source:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"psst.Source(references={self._references!r})"

    def _apply(self, event: WatchEvent) -> bool:
        if event.kind not in _CARRIES_VALUE or event.secret is None:
            return False
        with self._cond:
            self._values[event.reference] = event.secret
            self._generation += 1
            self._cond.notify_all()
        return True

    def _follow(self) -> None:
        try:
            for event in self._watch:
                if self._apply(event) and event.secret is not None:
                    with self._cond:
                        listeners = list(self._listeners)
                    for listener in listeners:
                        try:
                            listener(event.reference, event.secret)
                        except Exception:  # noqa: BLE001 - the app's callback must not end it
                            pass
        except PsstError as e:
            with self._cond:
                self._error = e
                self._cond.notify_all()
