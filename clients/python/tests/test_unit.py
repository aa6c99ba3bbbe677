"""Unit tests against an in-process fake agent (grpc server on a temp Unix socket)."""

from __future__ import annotations

import logging
import os
import pickle
import socket
import threading
import time

import grpc
import hpack
import pytest
from grpc_health.v1 import health_pb2

import psst
from conftest import CREATED, SECRET_VALUE, FakeServer

ERROR_CASES = [
    (grpc.StatusCode.INVALID_ARGUMENT, psst.InvalidArgument),
    (grpc.StatusCode.PERMISSION_DENIED, psst.PermissionDenied),
    (grpc.StatusCode.NOT_FOUND, psst.NotFound),
    (grpc.StatusCode.UNAVAILABLE, psst.Unavailable),
    (grpc.StatusCode.UNAUTHENTICATED, psst.Unauthenticated),
    (grpc.StatusCode.FAILED_PRECONDITION, psst.FailedPrecondition),
    (grpc.StatusCode.RESOURCE_EXHAUSTED, psst.ResourceExhausted),
    (grpc.StatusCode.DATA_LOSS, psst.DataLoss),
]
ERROR_CLASSES = [cls for _, cls in ERROR_CASES]


def test_get_maps_every_field(fake):
    with psst.Client(fake.sock) as c:
        s = c.get("local:app/db")
    assert s.value == SECRET_VALUE
    assert s.text() == SECRET_VALUE.decode()
    assert s.reference == "local:app/db"
    assert s.version_id == "7"
    assert s.stages == ("AWSCURRENT",)
    assert s.created_at == CREATED
    assert s.cache.hit is True and s.cache.stale is False
    assert s.cache.fetched_at == CREATED.replace(minute=5)
    assert s.cache.expires_at is None
    assert fake.agent.calls == 1


def test_secret_never_shows_its_value(fake, caplog):
    with psst.Client(fake.sock) as c:
        s = c.get("local:app/db")
        batch = c.batch_get(["local:app/db"])
    caplog.set_level(logging.DEBUG)
    log = logging.getLogger("psst-test")
    log.info("got %s", s)
    log.info("got %r", s)
    log.info("batch %s", batch)
    outputs = [
        repr(s),
        str(s),
        f"{s}",
        f"{s!r}",
        f"{s:>200}",
        "%s %r" % (s, s),
        format(s),
        repr([s]),
        str({"k": s}),
        repr(batch),
        str(batch),
        caplog.text,
    ]
    value_text = SECRET_VALUE.decode()
    for out in outputs:
        assert value_text not in out
        assert "hunter2" not in out
        assert SECRET_VALUE.hex() not in out
    assert f"<redacted {len(SECRET_VALUE)} bytes>" in repr(s)
    assert "'local:app/db'" in repr(s) and "'7'" in repr(s)
    assert "local:app/db" in caplog.text
    # No __dict__ to dump, no pickling, and the value cannot be reassigned by accident.
    assert not hasattr(s, "__dict__")
    with pytest.raises(TypeError):
        pickle.dumps(s)
    with pytest.raises(AttributeError):
        s.value = b"x"  # type: ignore[misc]


@pytest.mark.parametrize("code,cls", ERROR_CASES, ids=[c.name for c, _ in ERROR_CASES])
def test_error_mapping(fake, code, cls):
    ref = f"local:err/{code.name}"
    fake.agent.errors[ref] = (code, f"because {code.name}")
    with psst.Client(fake.sock, retry_timeout=0) as c:
        with pytest.raises(psst.PsstError) as info:
            c.get(ref)
        err = info.value
        assert type(err) is cls
        assert err.code == code and err.code_name == code.name
        assert err.message == f"because {code.name}"
        assert str(err) == f"{code.name}: because {code.name}"
        for other in ERROR_CLASSES:
            assert isinstance(err, other) == (other is cls)

        # The same code as a batch item, next to a good one: the batch does not fail.
        items = c.batch_get([ref, "local:ok", "empty"])
    assert len(items) == 3
    assert type(items[0]) is cls and items[0].code == code
    assert items[0].reference == ref and items[0].message == f"because {code.name}"
    assert isinstance(items[1], psst.Secret) and items[1].value == SECRET_VALUE
    assert isinstance(items[2], psst.PsstError) and items[2].code == grpc.StatusCode.INTERNAL


def test_error_for():
    assert type(psst.error_for(5, "m")) is psst.NotFound
    assert psst.error_for(5).code == grpc.StatusCode.NOT_FOUND
    assert type(psst.error_for(grpc.StatusCode.PERMISSION_DENIED)) is psst.PermissionDenied
    other = psst.error_for(grpc.StatusCode.INTERNAL, "boom")
    assert type(other) is psst.PsstError and other.code == grpc.StatusCode.INTERNAL
    assert str(other) == "INTERNAL: boom"
    assert psst.error_for(999).code == grpc.StatusCode.UNKNOWN
    assert psst.NotFound("x").code == grpc.StatusCode.NOT_FOUND
    assert "reference='local:a'" in repr(psst.error_for(5, "m", reference="local:a"))


def test_list_put_whoami(fake):
    fake.agent.errors["bad"] = (grpc.StatusCode.INVALID_ARGUMENT, "bad prefix")
    with psst.Client(fake.sock) as c:
        metas = c.list("local:app/")
        with pytest.raises(psst.InvalidArgument, match="bad prefix"):
            c.list("bad")
        written = c.put("local:app/db", b"\x00\x01\xff")
        with pytest.raises(TypeError):
            c.put("local:app/db", "text")  # type: ignore[arg-type]
        with pytest.raises(TypeError):
            c.batch_get("local:app/db")
        ident = c.whoami()
    assert metas == [
        psst.SecretMetadata("local:app/a", "1", CREATED),
        psst.SecretMetadata("local:app/b", "2", None),
    ]
    assert written == psst.Written("local:app/db?version=3", "3", CREATED)
    assert [(r.reference, r.value) for r in fake.agent.put_requests] == [
        ("local:app/db", b"\x00\x01\xff")
    ]
    assert ident.caller.uid == 1000 and ident.caller.gid == 1001 and ident.caller.pid == 42
    assert ident.caller.user == "app" and ident.caller.supplementary_gids == (5, 6)
    assert ident.caller.identity_source == "process"
    assert ident.grants == (psst.Grant("read", ("local:app/**",)),)
    assert ident.matched_rules == ("app",)


def test_health(fake):
    with psst.Client(fake.sock) as c:
        assert c.health() == "SERVING"
        fake.health.set("", health_pb2.HealthCheckResponse.NOT_SERVING)
        assert c.health() == "NOT_SERVING"


def test_socket_path_default_env_and_argument(monkeypatch, tmp_path):
    monkeypatch.delenv("PSST_SOCKET", raising=False)
    assert psst.socket_path() == "/run/psst/psst.sock" == psst.DEFAULT_SOCKET
    assert psst.Client().socket == "/run/psst/psst.sock"
    monkeypatch.setenv("PSST_SOCKET", "")
    assert psst.socket_path() == "/run/psst/psst.sock"
    monkeypatch.setenv("PSST_SOCKET", "/tmp/from-env.sock")
    assert psst.socket_path() == "/tmp/from-env.sock"
    assert psst.Client().socket == "/tmp/from-env.sock"
    assert psst.Client("/tmp/arg.sock").socket == "/tmp/arg.sock"
    assert psst.Client(tmp_path / "p.sock").socket == str(tmp_path / "p.sock")


def test_socket_from_env_is_dialled(fake, monkeypatch):
    monkeypatch.setenv("PSST_SOCKET", fake.sock)
    with psst.Client() as c:
        assert c.get("local:x").value == SECRET_VALUE


def test_closed_client(fake):
    with psst.Client(fake.sock) as c:
        c.get("local:x")
    with pytest.raises(ValueError):
        c.get("local:x")


def test_retry_then_unavailable_on_missing_socket(sock_dir):
    missing = os.path.join(sock_dir, "nobody-here.sock")
    c = psst.Client(missing, retry_timeout=0.4, initial_backoff=0.02, max_backoff=0.1)
    start = time.monotonic()
    with pytest.raises(psst.Unavailable) as info:
        c.get("local:x")
    elapsed = time.monotonic() - start
    assert 0.4 <= elapsed < 3, elapsed
    assert info.value.code == grpc.StatusCode.UNAVAILABLE
    assert missing in str(info.value) and "attempts" in str(info.value)

    # No retry: one quick attempt.
    start = time.monotonic()
    with pytest.raises(psst.Unavailable):
        psst.Client(missing, retry_timeout=0).health()
    assert time.monotonic() - start < 1

    # The call's timeout bounds the retries too: DEADLINE_EXCEEDED, saying what it waited for.
    start = time.monotonic()
    with pytest.raises(psst.PsstError) as info:
        psst.Client(missing).get("local:x", timeout=0.15)
    assert time.monotonic() - start < 2
    assert info.value.code == grpc.StatusCode.DEADLINE_EXCEEDED
    assert missing in str(info.value) and "attempts" in str(info.value)

    # So does the client's default deadline, for a call that gives none.
    start = time.monotonic()
    with pytest.raises(psst.PsstError) as info:
        psst.Client(missing, timeout=0.3).get("local:x")
    assert 0.3 <= time.monotonic() - start < 2
    assert info.value.code == grpc.StatusCode.DEADLINE_EXCEEDED


def test_retry_until_the_agent_starts(sock_dir):
    srv = FakeServer(os.path.join(sock_dir, "psst.sock"))
    timer = threading.Timer(0.3, srv.start)
    timer.start()
    try:
        c = psst.Client(srv.sock, initial_backoff=0.01, max_backoff=0.05)
        start = time.monotonic()
        assert c.get("local:late").value == SECRET_VALUE
        assert time.monotonic() - start >= 0.25
    finally:
        timer.join()
        srv.stop()


def test_agent_unavailable_is_not_retried(fake):
    """An UNAVAILABLE the agent answers itself reached it: no retry, so a put is never sent
    twice."""
    fake.agent.errors["local:down"] = (grpc.StatusCode.UNAVAILABLE, "backend unreachable")
    with psst.Client(fake.sock) as c:
        start = time.monotonic()
        with pytest.raises(psst.Unavailable, match="backend unreachable"):
            c.put("local:down", b"v")
    assert fake.agent.calls == 1
    assert time.monotonic() - start < 3


def _read_request_headers(conn: socket.socket) -> dict[str, str]:
    """Plays an HTTP/2 server just long enough to decode the client's first HEADERS frame."""
    buf = b""

    def need(n: int) -> bytes:
        nonlocal buf
        while len(buf) < n:
            chunk = conn.recv(65536)
            if not chunk:
                raise EOFError("client closed")
            buf += chunk
        out, buf = buf[:n], buf[n:]
        return out

    assert need(24) == b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"
    conn.sendall(b"\x00\x00\x00\x04\x00\x00\x00\x00\x00")  # our (empty) SETTINGS
    block = b""
    while True:
        head = need(9)
        length = int.from_bytes(head[:3], "big")
        ftype, flags = head[3], head[4]
        payload = need(length)
        if ftype == 0x4 and not flags & 0x1:  # their SETTINGS: ack it
            conn.sendall(b"\x00\x00\x00\x04\x01\x00\x00\x00\x00")
        elif ftype in (0x1, 0x9):  # HEADERS, CONTINUATION
            if ftype == 0x1:
                pad = payload[0] if flags & 0x8 else 0
                payload = payload[1 if flags & 0x8 else 0 :]
                if flags & 0x20:  # PRIORITY
                    payload = payload[5:]
                payload = payload[: len(payload) - pad]
            block += payload
            if flags & 0x4:  # END_HEADERS
                return dict(hpack.Decoder().decode(block))


def test_authority_is_localhost(sock_dir):
    """The agent's HTTP/2 server rejects a socket path as :authority; the client sends
    localhost."""
    path = os.path.join(sock_dir, "raw.sock")
    lis = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    lis.bind(path)
    lis.listen(1)
    lis.settimeout(10)
    got: dict[str, str] = {}

    def serve() -> None:
        # The client's peer check connects first and closes without a byte; then grpc.
        while not got:
            conn, _ = lis.accept()
            with conn:
                conn.settimeout(10)
                try:
                    got.update(_read_request_headers(conn))
                except EOFError:
                    continue

    t = threading.Thread(target=serve)
    t.start()
    with psst.Client(path, retry_timeout=0) as c:
        with pytest.raises(psst.PsstError):
            c.get("local:x", timeout=2)
    t.join()
    lis.close()
    assert got[":path"] == "/psst.v1.Secrets/GetSecret"
    assert got[":authority"] == "localhost"
