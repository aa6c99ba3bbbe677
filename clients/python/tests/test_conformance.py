"""The shared client conformance scenarios (tests/conformance/scenarios.json), run through this
client against a live agent. Run under tests/conformance/with-agent, which starts the agent,
seeds the secrets and exports PSST_SOCKET and PSST_CONFORMANCE:

    ../../tests/conformance/with-agent python -m pytest
"""

from __future__ import annotations

import json
import os

import grpc
import pytest

import psst
from conftest import need_agent

pytestmark = pytest.mark.live

SCENARIO_KEYS = {"name", "call", "reference", "references", "prefix", "expect"}
EXPECT_KEYS = {"code", "value", "version_id", "references", "results"}


def _load() -> list[dict]:
    path = os.environ.get("PSST_CONFORMANCE")
    if not path:
        return []
    with open(path, encoding="utf-8") as f:
        return json.load(f)["scenarios"]


SCENARIOS = _load()


@pytest.fixture(scope="module")
def client():
    need_agent()
    with psst.Client() as c:  # $PSST_SOCKET, as an application would
        assert c.health(timeout=30) == "SERVING"
        yield c


def _code(name: str) -> grpc.StatusCode:
    try:
        return grpc.StatusCode[name]
    except KeyError:
        pytest.fail(f"the scenario names an unknown code {name!r}")


def _check_expect_keys(expect: dict) -> None:
    unknown = set(expect) - EXPECT_KEYS
    assert not unknown, f"unknown expectation keys {unknown}: teach this test about them"
    for item in expect.get("results", []):
        _check_expect_keys(item)


def _check_one(want: dict, got: psst.Secret | psst.PsstError) -> None:
    """A get (or a batch item) against an expectation: a code, or a value (and version id)."""
    if "code" in want:
        assert isinstance(got, psst.PsstError), f"got {got!r}, want {want['code']}"
        assert got.code == _code(want["code"]), f"got {got!r}, want {want['code']}"
        assert got.code_name == want["code"]
        return
    assert "value" in want, f"expectation {want} has neither code nor value"
    assert isinstance(got, psst.Secret), f"got {got!r}, want value {want['value']!r}"
    assert got.text() == want["value"]
    assert got.value == want["value"].encode()
    if "version_id" in want:
        assert got.version_id == want["version_id"]


def test_scenarios_loaded():
    need_agent()
    assert SCENARIOS, "PSST_CONFORMANCE has no scenarios"
    names = [s["name"] for s in SCENARIOS]
    assert len(names) == len(set(names)), "scenario names must be unique"


@pytest.mark.parametrize(
    "scenario", SCENARIOS or [None], ids=[s["name"] for s in SCENARIOS] or ["no-agent"]
)
def test_scenario(client, scenario):
    unknown = set(scenario) - SCENARIO_KEYS
    assert not unknown, f"unknown scenario keys {unknown}: teach this test about them"
    expect = scenario["expect"]
    _check_expect_keys(expect)
    call = scenario["call"]

    if call == "get":
        try:
            got: psst.Secret | psst.PsstError = client.get(scenario["reference"])
        except psst.PsstError as e:
            got = e
        _check_one(expect, got)

    elif call == "batch_get":
        refs = scenario["references"]
        assert "results" in expect, "batch_get scenario without expect.results"
        items = client.batch_get(refs)
        assert len(items) == len(expect["results"])
        for ref, want, got in zip(refs, expect["results"], items):
            _check_one(want, got)
            assert got.reference == ref

    elif call == "list":
        prefix = scenario["prefix"]
        if "code" in expect:
            with pytest.raises(psst.PsstError) as info:
                client.list(prefix)
            assert info.value.code == _code(expect["code"])
            return
        assert "references" in expect, "list scenario without expect.references or code"
        metas = client.list(prefix)
        assert [m.reference for m in metas] == expect["references"]
        assert all(m.version_id for m in metas)

    else:
        pytest.fail(f"unknown call {call!r}: teach this test about it")
