"""Calls beyond the shared scenarios, against the live agent that with-agent starts. Writes go
under local:scratch/ so they never change what the scenarios list or read."""

from __future__ import annotations

import json
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
    # The grants the conformance agent's policy gives: the one rule in scenarios.json.
    with open(os.environ["PSST_CONFORMANCE"], encoding="utf-8") as f:
        want = tuple(json.load(f)["policy"]["allow"]["read"])
    assert want and grants["read"] == want
