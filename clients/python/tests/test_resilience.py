"""Outages longer than any retry budget, the Source, the asyncio client, load_env, the
pydantic-settings source and the peer-uid check, against the in-process fake agent."""

from __future__ import annotations

import asyncio
import os
import queue
import socket
import threading
import time

import grpc
import pytest
from pydantic import Field, SecretStr
from pydantic_settings import BaseSettings

import psst
import psst.aio
from conftest import SECRET_VALUE, FakeServer
from psst.settings import PsstSettingsSource
from test_watch import K, event, expect, expect_quiet, refuse, script


def wait_for(predicate, seconds: float = 5.0) -> None:
    deadline = time.monotonic() + seconds
    while not predicate():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.01)


# --- resilience ---------------------------------------------------------------------------


def test_watch_outlives_a_long_outage_and_reports_it(sock_dir):
    path = os.path.join(sock_dir, "psst.sock")
    srv = FakeServer(path).start()
    statuses: list[psst.WatchStatus] = []
    with psst.Client(path, initial_backoff=0.01, watch_max_backoff=0.3) as c:
        srv.agent.watch_handlers.put(script([event("a", K.CURRENT, "1")]))
        with c.watch(["a"], on_status=statuses.append) as w:
            expect(w, "a CURRENT 1<-")
            srv.stop()
            wait_for(lambda: statuses)
            assert not statuses[0].reachable and isinstance(statuses[0].error, psst.Unavailable)
            assert not w.status.reachable
            expect_quiet(w, 2.5)  # neither an event nor an end, past the old 5 s budget's pace
            srv2 = FakeServer(path).start()
            try:
                srv2.agent.watch_handlers.put(script([event("a", K.NEW_VERSION, "2", "1")]))
                expect(w, "a NEW_VERSION 2<-1")
                wait_for(lambda: len(statuses) == 2)
                assert statuses[1].reachable and w.status.reachable
                assert dict(srv2.agent.watch_requests[0].known_versions) == {"a": "1"}
            finally:
                srv2.stop()


def test_every_call_waits_for_the_agent_within_its_deadline(sock_dir):
    path = os.path.join(sock_dir, "psst.sock")
    srv = FakeServer(path).start()
    with psst.Client(path, initial_backoff=0.01, max_backoff=0.1) as c:
        assert c.get("local:x").value == SECRET_VALUE
        for _ in range(2):
            srv.stop()
            wait_for(lambda: not os.path.exists(path) or _refuses(path))
            later = FakeServer(path)
            timer = threading.Timer(0.7, later.start)
            timer.start()
            start = time.monotonic()
            try:
                assert c.get("local:x", timeout=10).value == SECRET_VALUE
                assert time.monotonic() - start >= 0.6
            finally:
                timer.join()
            srv = later
        # A put waits too, and is sent once.
        srv.stop()
        later = FakeServer(path, srv.agent)
        timer = threading.Timer(0.5, later.start)
        timer.start()
        try:
            c.put("local:x", b"v", timeout=10)
            assert len(later.agent.put_requests) == 1
        finally:
            timer.join()
            later.stop()


def _refuses(path: str) -> bool:
    with socket.socket(socket.AF_UNIX) as s:
        try:
            s.connect(path)
        except OSError:
            return True
    return False


# --- Source -------------------------------------------------------------------------------


def test_source_follows_rotations_and_keeps_the_last_good_value(fake):
    steps: queue.Queue = queue.Queue()
    fake.agent.watch_handlers.put(
        script([event("a", K.CURRENT, "1"), event("b", K.CURRENT, "7")], steps)
    )
    seen: list[tuple[str, str]] = []
    with psst.Client(fake.sock, initial_backoff=0.01) as c:
        with psst.Source(c, ["a", "b", "a"], on_update=lambda r, s: seen.append((r, s.text()))) as src:
            assert src.get("a").text() == "value-1" and src.get("b").text() == "value-7"
            with pytest.raises(psst.InvalidArgument):
                src.get("c")
            steps.put([event("a", K.NEW_VERSION, "2", "1")])
            assert src.wait_for_update(timeout=5)
            assert src.get("a").text() == "value-2"
            wait_for(lambda: seen == [("a", "value-2")])
            # Neither a staged version nor a deletion replaces a value.
            steps.put([event("a", K.PENDING_VERSION, "3", "2"), event("b", K.DELETED, "", "7")])
            assert not src.wait_for_update(timeout=0.5)
            assert src.get("a").text() == "value-2" and src.get("b").text() == "value-7"
            # The agent gone: the values stay, the status says so.
            fake.stop()
            wait_for(lambda: not src.status.reachable)
            assert src.get("a").text() == "value-2" and src.error is None


def test_source_ends_on_a_revoked_grant_but_keeps_values(fake):
    steps: queue.Queue = queue.Queue()
    fake.agent.watch_handlers.put(
        script([event("a", K.CURRENT, "1")], steps, end=(grpc.StatusCode.PERMISSION_DENIED, "revoked"))
    )
    with psst.Client(fake.sock) as c, psst.Source(c, ["a"]) as src:
        steps.put(None)
        wait_for(lambda: src.error is not None)
        assert isinstance(src.error, psst.PermissionDenied)
        assert src.get("a").text() == "value-1"


def test_source_refused_at_open(fake):
    fake.agent.watch_handlers.put(refuse(grpc.StatusCode.PERMISSION_DENIED, "no watch grant"))
    with psst.Client(fake.sock) as c, pytest.raises(psst.PermissionDenied):
        psst.Source(c, ["a"])


# --- asyncio ------------------------------------------------------------------------------


async def test_aio_calls_do_not_block_the_loop(sock_dir):
    path = os.path.join(sock_dir, "psst.sock")
    srv = FakeServer(path)
    ticks = 0

    async def ticker() -> None:
        nonlocal ticks
        while True:
            ticks += 1
            await asyncio.sleep(0.01)

    t = asyncio.get_running_loop().create_task(ticker())
    threading.Timer(0.5, srv.start).start()
    try:
        async with psst.aio.Client(path, initial_backoff=0.01, max_backoff=0.05) as c:
            start = time.monotonic()
            s = await c.get("local:x")
            assert s.value == SECRET_VALUE and time.monotonic() - start >= 0.4
            assert ticks >= 20, f"the loop ran {ticks} times while the call waited"
            assert (await c.health()) == "SERVING"
            assert (await c.whoami()).caller.uid == 1000
            assert [m.reference for m in await c.list("local:p/")] == ["local:p/a", "local:p/b"]
            assert (await c.put("local:x", b"v")).version_id == "3"
            items = await c.batch_get(["local:a", "empty"])
            assert items[0].value == SECRET_VALUE and isinstance(items[1], psst.PsstError)
            srv.agent.errors["local:nope"] = (grpc.StatusCode.NOT_FOUND, "no such secret")
            with pytest.raises(psst.NotFound):
                await c.get("local:nope")
    finally:
        t.cancel()
        srv.stop()


async def test_aio_watch_and_source(fake):
    steps: queue.Queue = queue.Queue()
    fake.agent.watch_handlers.put(script([event("a", K.CURRENT, "1")], steps))
    async with psst.aio.Client(fake.sock, initial_backoff=0.01) as c:
        updates: list[str] = []

        async def on_update(ref: str, secret: psst.Secret) -> None:
            updates.append(secret.text())

        async with psst.aio.Source(c, ["a"], on_update=on_update) as src:
            assert src.get("a").text() == "value-1"
            stream = src.updates()
            steps.put([event("a", K.NEW_VERSION, "2", "1")])
            ref, secret = await asyncio.wait_for(stream.__anext__(), 5)
            assert (ref, secret.text()) == ("a", "value-2") and src.get("a").text() == "value-2"
            assert updates == ["value-2"]
            await stream.aclose()
        fake.agent.watch_handlers.put(script([event("b", K.CURRENT, "5")]))
        async with c.watch(["b"]) as w:
            e = await w.next_event(timeout=5)
            assert e.kind is psst.WatchEventKind.CURRENT and e.secret.text() == "value-5"
        fake.agent.watch_handlers.put(refuse(grpc.StatusCode.PERMISSION_DENIED, "no"))
        with pytest.raises(psst.PermissionDenied):
            await psst.aio.Source.open(c, ["x"])


# --- load_env and pydantic-settings ---------------------------------------------------------


def test_load_env(fake, tmp_path):
    env_file = tmp_path / "app.secrets"
    env_file.write_text("# comment\n\nDB_PASSWORD=local:db#password\nTOKEN=local:token\n")
    environ = {"TOKEN": "kept"}
    with psst.Client(fake.sock) as c:
        got = psst.load_env(
            {"API": "local:api"}, env_file=env_file, client=c, environ=environ, override=False
        )
        assert got == {"DB_PASSWORD": SECRET_VALUE.decode(), "TOKEN": SECRET_VALUE.decode(), "API": SECRET_VALUE.decode()}
        assert environ == {"TOKEN": "kept", "DB_PASSWORD": SECRET_VALUE.decode(), "API": SECRET_VALUE.decode()}
        # One failure: raised, nothing set.
        fake.agent.errors["local:denied"] = (grpc.StatusCode.PERMISSION_DENIED, "no grant")
        environ = {}
        with pytest.raises(psst.PermissionDenied):
            psst.load_env({"A": "local:a", "B": "local:denied"}, client=c, environ=environ)
        assert environ == {}
    env_file.write_text("NO_EQUALS_SIGN\n")
    with pytest.raises(psst.InvalidArgument, match="app.secrets:1"):
        psst.read_env_file(env_file)


def test_pydantic_settings_source(fake):
    with psst.Client(fake.sock) as c:

        class Settings(BaseSettings):
            db_password: SecretStr = Field(json_schema_extra={"psst": "local:db#password"})
            api_key: str = "default"
            plain: str = "untouched"

            @classmethod
            def settings_customise_sources(cls, settings_cls, init_settings, env_settings, dotenv_settings, file_secret_settings):
                return (init_settings, PsstSettingsSource(settings_cls, {"api_key": "local:api"}, client=c))

        s = Settings()
        assert s.db_password.get_secret_value() == SECRET_VALUE.decode()
        assert s.api_key == SECRET_VALUE.decode() and s.plain == "untouched"
        assert SECRET_VALUE.decode() not in repr(s.db_password)
        fake.agent.errors["local:api"] = (grpc.StatusCode.NOT_FOUND, "gone")
        with pytest.raises(psst.NotFound):
            Settings()


# --- the peer-uid check ---------------------------------------------------------------------


def test_peer_uid_mismatch_refuses_every_call(fake, monkeypatch):
    other = os.getuid() + 4242
    with psst.Client(fake.sock, expected_uid=other) as c:
        for call in (lambda: c.put("local:x", b"never sent"), lambda: c.get("local:x")):
            start = time.monotonic()
            with pytest.raises(psst.UntrustedAgent, match="expected uid") as info:
                call()
            assert info.value.code is grpc.StatusCode.UNAUTHENTICATED
            assert time.monotonic() - start < 2, "a refusal must not be retried"
        with c.watch(["local:x"]) as w, pytest.raises(psst.UntrustedAgent):
            w.next_event(timeout=5)
    assert fake.agent.calls == 0 and fake.agent.put_requests == [] and fake.agent.watch_requests == []
    monkeypatch.setenv(psst.EXPECTED_UID_ENV, str(os.getuid()))
    with psst.Client(fake.sock) as c:
        assert c.get("local:x").value == SECRET_VALUE
    monkeypatch.setenv(psst.EXPECTED_UID_ENV, "nobody")
    with pytest.raises(ValueError, match=psst.EXPECTED_UID_ENV):
        psst.Client(fake.sock)


async def test_aio_peer_uid_mismatch(fake):
    async with psst.aio.Client(fake.sock, expected_uid=os.getuid() + 4242) as c:
        with pytest.raises(psst.UntrustedAgent):
            await c.put("local:x", b"never sent")
    assert fake.agent.put_requests == []


def test_fake_agent_of_another_user_gets_nothing(monkeypatch):
    """tests/conformance/with-fake-agent: a server run by a throwaway user on a socket file
    owned by the runner's uid."""
    sock = os.environ.get("PSST_FAKE_SOCKET")
    if not sock:
        msg = "PSST_FAKE_SOCKET is not set: run under tests/conformance/with-fake-agent (as root)"
        if os.environ.get("PSST_REQUIRE_FAKE_AGENT"):
            pytest.fail(msg)
        pytest.skip(msg)

    def received() -> int:
        with open(os.environ["PSST_FAKE_RECEIVED"]) as f:
            return int(f.read().strip() or 0)

    for kw in ({}, {"expected_uid": os.getuid()}):
        with psst.Client(sock, **kw) as c, pytest.raises(psst.UntrustedAgent):
            c.put("local:x", b"for the agent only")
    time.sleep(0.2)
    assert received() == 0
    # Control: told to trust the fake user, the client does send (the fake never answers).
    monkeypatch.setenv(psst.EXPECTED_UID_ENV, os.environ["PSST_FAKE_UID"])
    with psst.Client(sock) as c, pytest.raises(psst.PsstError):
        c.put("local:x", b"control", timeout=1)
    wait_for(lambda: received() > 0, 3)
