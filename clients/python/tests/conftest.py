"""Fixtures: an in-process fake agent on a temp Unix socket, and the live agent's gate."""

from __future__ import annotations

import os
import queue
import tempfile
import threading
from concurrent import futures
from datetime import datetime, timedelta, timezone

import grpc
import pytest
from google.protobuf.timestamp_pb2 import Timestamp
from grpc_health.v1 import health, health_pb2_grpc

from psst.v1 import psst_pb2, psst_pb2_grpc

SECRET_VALUE = b"hunter2-do-not-print"
CREATED = datetime(2026, 1, 2, 3, 4, 5, tzinfo=timezone.utc)

NEED_AGENT = "PSST_CONFORMANCE is not set: run under tests/conformance/with-agent (see test.sh)"


def need_agent() -> None:
    """Skips a test that needs the live agent with-agent starts; fails it instead when
    PSST_REQUIRE_AGENT is set (test.sh sets it, so the scenarios cannot be skipped silently)."""
    if not os.environ.get("PSST_CONFORMANCE"):
        if os.environ.get("PSST_REQUIRE_AGENT"):
            pytest.fail(NEED_AGENT)
        pytest.skip(NEED_AGENT)


def ts(dt: datetime) -> Timestamp:
    t = Timestamp()
    t.FromDatetime(dt)
    return t


class FakeAgent(psst_pb2_grpc.SecretsServicer):
    """Answers from a table: ``errors`` maps a reference (or prefix) to (code, message)."""

    def __init__(self) -> None:
        self.errors: dict[str, tuple[grpc.StatusCode, str]] = {}
        self.calls = 0
        self.put_requests: list[psst_pb2.PutSecretRequest] = []
        #: Every WatchSecrets request, and the handlers that serve them, one per call: a
        #: handler is a generator function (request, context) -> events; a call with none
        #: queued waits for one.
        self.watch_requests: list[psst_pb2.WatchSecretsRequest] = []
        self.watch_handlers: queue.Queue = queue.Queue()
        self._lock = threading.Lock()

    def _seen(self) -> None:
        with self._lock:
            self.calls += 1

    def _secret(self, ref: str) -> psst_pb2.Secret:
        return psst_pb2.Secret(
            reference=ref,
            value=SECRET_VALUE,
            version_id="7",
            stages=["AWSCURRENT"],
            created_at=ts(CREATED),
            cache=psst_pb2.CacheInfo(hit=True, fetched_at=ts(CREATED + timedelta(minutes=1))),
        )

    def GetSecret(self, request, context):
        self._seen()
        if request.reference in self.errors:
            context.abort(*self.errors[request.reference])
        return self._secret(request.reference)

    def BatchGetSecrets(self, request, context):
        self._seen()
        out = psst_pb2.BatchGetSecretsResponse()
        for ref in request.references:
            item = out.results.add(reference=ref)
            if ref == "empty":
                continue
            if ref in self.errors:
                code, msg = self.errors[ref]
                item.error.code = code.value[0]
                item.error.message = msg
            else:
                item.secret.CopyFrom(self._secret(ref))
        return out

    def ListSecrets(self, request, context):
        self._seen()
        if request.prefix in self.errors:
            context.abort(*self.errors[request.prefix])
        return psst_pb2.ListSecretsResponse(
            secrets=[
                psst_pb2.SecretMetadata(
                    reference=request.prefix + "a", version_id="1", updated_at=ts(CREATED)
                ),
                psst_pb2.SecretMetadata(reference=request.prefix + "b", version_id="2"),
            ]
        )

    def PutSecret(self, request, context):
        self._seen()
        if request.reference in self.errors:
            context.abort(*self.errors[request.reference])
        self.put_requests.append(request)
        return psst_pb2.PutSecretResponse(
            reference=request.reference + "?version=3", version_id="3", created_at=ts(CREATED)
        )

    def WatchSecrets(self, request, context):
        with self._lock:
            self.watch_requests.append(request)
        while context.is_active():
            try:
                handler = self.watch_handlers.get(timeout=0.05)
            except queue.Empty:
                continue
            yield from handler(request, context)
            return

    def WhoAmI(self, request, context):
        self._seen()
        return psst_pb2.WhoAmIResponse(
            caller=psst_pb2.Caller(
                uid=1000,
                gid=1001,
                pid=42,
                user="app",
                supplementary_gids=[5, 6],
                identity_source="process",
            ),
            grants=[psst_pb2.Grant(operation="read", patterns=["local:app/**"])],
            matched_rules=["app"],
        )


class FakeServer:
    def __init__(self, sock: str, agent: FakeAgent | None = None) -> None:
        self.sock = sock
        self.agent = agent if agent is not None else FakeAgent()
        self.health = health.HealthServicer()
        self.server: grpc.Server | None = None

    def start(self) -> FakeServer:
        self.server = grpc.server(futures.ThreadPoolExecutor(max_workers=8))
        psst_pb2_grpc.add_SecretsServicer_to_server(self.agent, self.server)
        health_pb2_grpc.add_HealthServicer_to_server(self.health, self.server)
        self.server.add_insecure_port("unix:" + self.sock)
        self.server.start()
        return self

    def stop(self) -> None:
        if self.server is not None:
            self.server.stop(0)


@pytest.fixture
def sock_dir():
    # Short paths: a Unix socket path must fit in 108 bytes.
    with tempfile.TemporaryDirectory(prefix="psst-py-") as d:
        yield d


@pytest.fixture
def fake(sock_dir):
    srv = FakeServer(os.path.join(sock_dir, "psst.sock")).start()
    yield srv
    srv.stop()


@pytest.fixture(autouse=True)
def _no_developer_socket(monkeypatch, request):
    """Unit tests must not pick up a developer's $PSST_SOCKET, unless they need the live agent."""
    if "live" not in request.keywords:
        monkeypatch.delenv("PSST_SOCKET", raising=False)
