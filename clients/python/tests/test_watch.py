"""Unit tests of ``client.watch`` against the in-process fake agent, whose WatchSecrets streams
each test scripts (``fake.agent.watch_handlers``)."""

from __future__ import annotations

import logging
import pickle
import queue
import threading
import time

import grpc
import pytest

import psst
from conftest import CREATED, SECRET_VALUE, FakeServer, ts
from psst._watch import _fold
from psst.v1 import psst_pb2

K = psst_pb2.WatchEvent.Kind
SETTLING = 0.3  # for events sent to reach the client before the test reads


def event(ref: str, kind: int, version: str = "", previous: str = "") -> psst_pb2.WatchEvent:
    e = psst_pb2.WatchEvent(
        reference=ref, kind=kind, previous_version_id=previous, observed_at=ts(CREATED)
    )
    if kind in (K.CURRENT, K.NEW_VERSION):
        e.secret.CopyFrom(
            psst_pb2.Secret(reference=ref, value=f"value-{version}".encode(), version_id=version)
        )
    elif kind == K.PENDING_VERSION:
        e.pending_version_id = version
    return e


def script(first=(), steps: queue.Queue | None = None, end=None):
    """A handler: headers (as the agent sends them at once), the ``first`` events, then each
    list put on ``steps``; ``None`` on steps ends the stream, with ``end`` = (code, details)
    when given. Without steps it stays open until cancelled."""

    def handler(request, context):
        context.send_initial_metadata(())
        yield from first
        while context.is_active():
            if steps is None:
                time.sleep(0.05)
                continue
            try:
                item = steps.get(timeout=0.05)
            except queue.Empty:
                continue
            if item is None:
                if end is not None:
                    context.abort(*end)
                return
            yield from item

    return handler


def refuse(code: grpc.StatusCode, details: str):
    def handler(request, context):
        context.abort(code, details)
        yield  # pragma: no cover  (a generator, like the real handlers)

    return handler


def describe(e: psst.WatchEvent) -> str:
    """``ref KIND version<-previous``, the value checked against the version."""
    s = f"{e.reference} {e.kind.name}"
    if e.secret is not None:
        assert e.secret.text() == f"value-{e.secret.version_id}", e
        s += f" {e.secret.version_id}"
    if e.pending_version_id:
        s += f" pending {e.pending_version_id}"
    return f"{s}<-{e.previous_version_id}"


def expect(watch: psst.Watch, *want: str) -> None:
    got = [describe(watch.next_event(timeout=5)) for _ in want]
    assert got == list(want)


def expect_quiet(watch: psst.Watch, seconds: float) -> None:
    with pytest.raises(TimeoutError):
        e = watch.next_event(timeout=seconds)
        pytest.fail(f"unexpected event {describe(e)}")


def known(req: psst_pb2.WatchSecretsRequest) -> dict[str, str]:
    return dict(req.known_versions)


@pytest.fixture
def client(fake):
    with psst.Client(fake.sock, initial_backoff=0.01, max_backoff=0.05) as c:
        yield c


def test_watch_maps_every_field(fake, client):
    fake.agent.watch_handlers.put(script([event("local:a", K.CURRENT, "1")]))
    with client.watch(["local:a", "local:b"]) as w:
        e = w.next_event(timeout=5)
        assert e.reference == "local:a" and e.kind is psst.WatchEventKind.CURRENT
        assert e.secret.value == b"value-1" and e.secret.version_id == "1"
        assert e.secret.reference == "local:a"
        assert e.observed_at == CREATED and e.previous_version_id == "" == e.pending_version_id
        assert w.references == ("local:a", "local:b") and not w.closed
    assert w.closed
    (req,) = fake.agent.watch_requests
    assert list(req.references) == ["local:a", "local:b"] and known(req) == {}
    assert str(psst.WatchEventKind.NEW_VERSION) == "NEW_VERSION"
    assert psst.WatchEventKind(99) is psst.WatchEventKind.UNSPECIFIED
    with pytest.raises(TypeError):
        client.watch("local:a")
    with pytest.raises(psst.InvalidArgument):
        client.watch([])


def test_watch_folds_events_that_arrived_together(fake, client):
    steps: queue.Queue = queue.Queue()
    fake.agent.watch_handlers.put(
        script(
            [
                event("a", K.CURRENT, "1"),
                event("a", K.NEW_VERSION, "2", "1"),
                event("b", K.CURRENT, "7"),
                event("a", K.NEW_VERSION, "3", "2"),
                event("b", K.PENDING_VERSION, "8", "7"),
            ],
            steps,
        )
    )
    with client.watch(["a", "b"]) as w:
        time.sleep(SETTLING)
        expect(w, "a CURRENT 3<-", "b CURRENT 7<-", "b PENDING_VERSION pending 8<-7")
        expect_quiet(w, 0.1)

        steps.put(
            [
                event("b", K.NEW_VERSION, "8", "7"),
                event("a", K.NEW_VERSION, "4", "3"),
                event("a", K.NEW_VERSION, "5", "4"),
                event("b", K.NEW_VERSION, "9", "8"),
            ]
        )
        time.sleep(SETTLING)
        expect(w, "b NEW_VERSION 9<-7", "a NEW_VERSION 5<-3")

        # A deletion between two versions is not folded over.
        steps.put(
            [
                event("a", K.NEW_VERSION, "6", "5"),
                event("a", K.DELETED),
                event("a", K.NEW_VERSION, "1"),
            ]
        )
        time.sleep(SETTLING)
        expect(w, "a NEW_VERSION 6<-5", "a DELETED<-", "a NEW_VERSION 1<-")
        expect_quiet(w, 0.1)

        # Read as they come, nothing is folded.
        for version, previous in (("2", "1"), ("3", "2")):
            steps.put([event("a", K.NEW_VERSION, version, previous)])
            expect(w, f"a NEW_VERSION {version}<-{previous}")


def test_watch_resumes_with_known_versions(fake, client):
    """The stream breaking (the agent shutting down, or going away) is reconnected, and the new
    request carries known_versions: what the reader has, plus what it received and has not read
    yet, so no version is delivered twice."""
    steps: queue.Queue = queue.Queue()
    # 1: the agent says it is shutting down (UNAVAILABLE on the stream).
    fake.agent.watch_handlers.put(
        script(
            [event("a", K.CURRENT, "1"), event("b", K.CURRENT, "7")],
            steps,
            end=(grpc.StatusCode.UNAVAILABLE, "the agent is shutting down"),
        )
    )
    sent = threading.Event()

    # 2: a change made meanwhile comes as a new version, which the client receives but the
    # reader does not read before the agent goes away altogether.
    def second(request, context):
        context.send_initial_metadata(())
        yield event("a", K.NEW_VERSION, "2", request.known_versions["a"])
        sent.set()
        while context.is_active():
            time.sleep(0.05)

    fake.agent.watch_handlers.put(second)
    with client.watch(["a", "b"]) as w:
        expect(w, "a CURRENT 1<-", "b CURRENT 7<-")
        steps.put(None)
        assert sent.wait(5), "the watch did not reconnect after UNAVAILABLE"
        time.sleep(SETTLING)
        fake.stop()

        # 3: a new agent on the same socket, after a while.
        time.sleep(0.2)
        agent2 = type(fake.agent)()
        agent2.watch_handlers.put(script())  # nothing new: the watch is up to date
        srv2 = FakeServer(fake.sock, agent2).start()
        try:
            expect(w, "a NEW_VERSION 2<-1")
            deadline = time.monotonic() + 5
            while not agent2.watch_requests and time.monotonic() < deadline:
                time.sleep(0.01)
            expect_quiet(w, 0.2)
        finally:
            w.close()
            srv2.stop()

    reqs = fake.agent.watch_requests + agent2.watch_requests
    assert [list(r.references) for r in reqs] == [["a", "b"]] * 3
    assert [known(r) for r in reqs] == [{}, {"a": "1", "b": "7"}, {"a": "2", "b": "7"}]


@pytest.mark.parametrize(
    "code", [grpc.StatusCode.INTERNAL, grpc.StatusCode.UNKNOWN, grpc.StatusCode.CANCELLED]
)
def test_watch_reconnects_after_a_reset(fake, client, code):
    steps: queue.Queue = queue.Queue()
    fake.agent.watch_handlers.put(
        script([event("a", K.CURRENT, "1")], steps, end=(code, "stream reset"))
    )
    fake.agent.watch_handlers.put(script([event("a", K.NEW_VERSION, "2", "1")]))
    with client.watch(["a"]) as w:
        expect(w, "a CURRENT 1<-")
        steps.put(None)
        expect(w, "a NEW_VERSION 2<-1")
    assert [known(r) for r in fake.agent.watch_requests] == [{}, {"a": "1"}]


def test_watch_gives_up_when_asked_to(fake, client):
    fake.agent.watch_handlers.put(script([event("a", K.CURRENT, "1")]))
    with client.watch(["a"], give_up_after=0.4) as w:
        expect(w, "a CURRENT 1<-")
        fake.stop()
        start = time.monotonic()
        with pytest.raises(psst.Unavailable) as info:
            w.next_event(timeout=10)
        elapsed = time.monotonic() - start
        assert 0.4 <= elapsed < 4, elapsed
        assert fake.sock in str(info.value) and "attempts" in str(info.value)
        # The end is sticky, for iteration too.
        with pytest.raises(psst.Unavailable):
            next(w)
        with pytest.raises(psst.Unavailable):
            for _ in w:
                pass


ERRORS = [
    (grpc.StatusCode.PERMISSION_DENIED, psst.PermissionDenied),
    (grpc.StatusCode.NOT_FOUND, psst.NotFound),
    (grpc.StatusCode.INVALID_ARGUMENT, psst.InvalidArgument),
    (grpc.StatusCode.UNAUTHENTICATED, psst.Unauthenticated),
]


@pytest.mark.parametrize("code,cls", ERRORS, ids=[c.name for c, _ in ERRORS])
def test_watch_errors_end_it(fake, client, code, cls):
    """Errors other than a broken stream end the watch at once, after the events before them."""
    # At the start.
    fake.agent.watch_handlers.put(refuse(code, "no"))
    with client.watch(["a"]) as w:
        with pytest.raises(cls) as info:
            next(w)
        assert info.value.code == code and str(info.value) == f"{code.name}: no"
    # Mid-stream (a revoked grant): the events received before it come first.
    steps: queue.Queue = queue.Queue()
    fake.agent.watch_handlers.put(
        script([event("a", K.CURRENT, "1")], steps, end=(code, "revoked"))
    )
    with client.watch(["a"]) as w:
        steps.put([event("a", K.NEW_VERSION, "2", "1")])
        steps.put(None)
        time.sleep(SETTLING)
        got = []
        with pytest.raises(cls, match="revoked"):
            for e in w:
                got.append(describe(e))
        assert got == ["a CURRENT 2<-"]
    time.sleep(0.1)
    assert len(fake.agent.watch_requests) == 2, "the watch reconnected after " + code.name


def test_watch_close_and_timeouts(fake, client):
    for _ in range(2):
        fake.agent.watch_handlers.put(script([event("a", K.CURRENT, "1")]))
    w = client.watch(["a"])
    expect(w, "a CURRENT 1<-")
    # A timeout bounds one wait; the watch goes on.
    with pytest.raises(TimeoutError):
        w.next_event(timeout=0.05)
    assert not w.closed

    # close() from another thread ends a blocked iteration.
    got: list = []
    t = threading.Thread(target=lambda: got.extend(w))
    t.start()
    time.sleep(0.1)
    w.close()
    t.join(5)
    assert not t.is_alive() and got == []
    with pytest.raises(StopIteration):
        w.next_event(timeout=1)
    w.close()  # twice is fine
    assert "closed" in repr(w)

    # Closing the client ends its watches.
    w2 = client.watch(["a"])
    expect(w2, "a CURRENT 1<-")
    client.close()
    with pytest.raises(psst.PsstError) as info:
        w2.next_event(timeout=5)
    assert info.value.code == grpc.StatusCode.CANCELLED
    w2.close()


def test_watch_event_never_shows_its_value(fake, client, caplog):
    def handler(request, context):
        e = event("local:app/db", K.CURRENT, "3")
        e.secret.value = SECRET_VALUE
        yield e

    fake.agent.watch_handlers.put(handler)
    with client.watch(["local:app/db"]) as w:
        e = w.next_event(timeout=5)
    caplog.set_level(logging.DEBUG)
    logging.getLogger("psst-test").info("changed %s %r", e, e)
    outputs = [repr(e), str(e), f"{e}", f"{e!r}", f"{e:>300}", repr([e]), str({"k": e})]
    outputs.append(caplog.text)
    for out in outputs:
        assert "hunter2" not in out and SECRET_VALUE.hex() not in out, out
    assert repr(e) == (
        "WatchEvent(reference='local:app/db', kind=CURRENT, version_id='3', "
        f"value=<redacted {len(SECRET_VALUE)} bytes>)"
    )
    assert e.secret.value == SECRET_VALUE
    with pytest.raises(TypeError):
        pickle.dumps(e)


def _ev(ref: str, kind: str, version: str = "", previous: str = "") -> psst.WatchEvent:
    k = psst.WatchEventKind[kind]
    secret = None
    if k in (psst.WatchEventKind.CURRENT, psst.WatchEventKind.NEW_VERSION):
        secret = psst.Secret(ref, f"value-{version}".encode(), version)
    return psst.WatchEvent(
        ref,
        k,
        secret,
        previous,
        version if k is psst.WatchEventKind.PENDING_VERSION else "",
    )


FOLD_CASES = {
    "a later version replaces an unread one and keeps its previous version": (
        [
            ("a", "NEW_VERSION", "2", "1"),
            ("a", "NEW_VERSION", "3", "2"),
            ("a", "NEW_VERSION", "4", "3"),
        ],
        ["a NEW_VERSION 4<-1"],
    ),
    "an unread CURRENT stays CURRENT": (
        [("a", "CURRENT", "1"), ("a", "NEW_VERSION", "2", "1")],
        ["a CURRENT 2<-"],
    ),
    "references fold separately and keep their order": (
        [
            ("a", "CURRENT", "1"),
            ("b", "CURRENT", "7"),
            ("a", "NEW_VERSION", "2", "1"),
            ("b", "NEW_VERSION", "8", "7"),
            ("c", "CURRENT", "1"),
        ],
        ["a CURRENT 2<-", "b CURRENT 8<-", "c CURRENT 1<-"],
    ),
    "a deletion in between is not folded over": (
        [("a", "NEW_VERSION", "2", "1"), ("a", "DELETED"), ("a", "NEW_VERSION", "1")],
        ["a NEW_VERSION 2<-1", "a DELETED<-", "a NEW_VERSION 1<-"],
    ),
    "a pending version in between is kept in order": (
        [
            ("a", "CURRENT", "1"),
            ("a", "PENDING_VERSION", "2", "1"),
            ("a", "NEW_VERSION", "2", "1"),
            ("a", "NEW_VERSION", "3", "2"),
        ],
        ["a CURRENT 1<-", "a PENDING_VERSION pending 2<-1", "a NEW_VERSION 3<-1"],
    ),
    "another reference's events in between do not stop folding": (
        [("a", "NEW_VERSION", "2", "1"), ("b", "DELETED"), ("a", "NEW_VERSION", "3", "2")],
        ["a NEW_VERSION 3<-1", "b DELETED<-"],
    ),
}


@pytest.mark.parametrize("name", list(FOLD_CASES))
def test_fold(name):
    events, want = FOLD_CASES[name]
    q: list[psst.WatchEvent] = []
    for args in events:
        _fold(q, _ev(*args))
    assert [describe(e) for e in q] == want
