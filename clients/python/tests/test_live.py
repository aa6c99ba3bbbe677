"""Calls beyond the shared scenarios, against the live agent that with-agent starts. Writes go
under local:scratch/ so they never change what the scenarios list or read."""

from __future__ import annotations

import os
import time

import pytest

import psst
from conftest import need_agent

pytestmark = pytest.mark.live


@pytest.fixture
def client():
    need_agent()
    with psst.Client() as c:
        yield c


def test_put_then_policy(client):
    ref = f"local:scratch/py-{time.time_ns():x}"
    w = client.put(ref, b"written by the python client")
    assert w.version_id == "1"
    assert w.reference == ref + "?version=1"
    assert w.created_at is not None
    assert client.put(ref, b"second").version_id == "2"
    # The conformance policy grants write on local:** but read only on local:conf/**.
    with pytest.raises(psst.PermissionDenied):
        client.get(ref)
    with pytest.raises(psst.InvalidArgument):
        client.put(ref + "?version=1", b"x")


def test_whoami_and_health(client):
    assert client.health() == "SERVING"
    ident = client.whoami()
    assert ident.caller.uid == os.getuid()
    assert ident.caller.pid == os.getpid()
    assert ident.matched_rules == ("conformance runner",)
    grants = {g.operation: g.patterns for g in ident.grants}
    assert grants["read"] == (
        "local:conf/**",
        "sm:conf/**",
        "ssm:/conf/**",
        "s3:psst-conformance/conf/**",
        "vault:secret/conf/**",
    )
