"""The shared watch conformance scenarios (tests/conformance/watch-scenarios.json), run through
``client.watch`` against the live agent that tests/conformance/with-agent starts; with-agent
exports PSST_CONFORMANCE_WATCH (the file) and PSST_RESTART_AGENT (restarts the agent)."""

from __future__ import annotations

import json
import os
import subprocess

import grpc
import pytest

import psst

pytestmark = pytest.mark.live

#: How long an expect_event (or expect_error) step waits.
EVENT_WAIT = 10.0
SCENARIO_KEYS = {"name", "call", "reference", "steps"}
STEP_KEYS = {"expect_event", "put", "restart_agent", "expect_error"}
EVENT_KEYS = {"kind", "value", "version_id", "previous_version_id"}
NEED_WATCH = (
    "PSST_CONFORMANCE_WATCH is not set: run under tests/conformance/with-agent (see test.sh)"
)


def need_watch() -> None:
    """Skips without the watch scenarios; fails instead when PSST_REQUIRE_AGENT is set (test.sh
    sets it, so they cannot be skipped silently)."""
    if not os.environ.get("PSST_CONFORMANCE_WATCH"):
        if os.environ.get("PSST_REQUIRE_AGENT"):
            pytest.fail(NEED_WATCH)
        pytest.skip(NEED_WATCH)


def _load() -> list[dict]:
    path = os.environ.get("PSST_CONFORMANCE_WATCH")
    if not path:
        return []
    with open(path, encoding="utf-8") as f:
        return json.load(f)["scenarios"]


SCENARIOS = _load()


@pytest.fixture
def client():
    need_watch()
    with psst.Client() as c:  # $PSST_SOCKET, as an application would
        assert c.health(timeout=30) == "SERVING"
        yield c


def test_watch_scenarios_loaded():
    need_watch()
    assert SCENARIOS, "PSST_CONFORMANCE_WATCH has no scenarios"
    names = [s["name"] for s in SCENARIOS]
    assert len(names) == len(set(names)), "scenario names must be unique"


def _step(client: psst.Client, watch: psst.Watch, ref: str, i: int, step: dict) -> None:
    assert len(step) == 1 and set(step) <= STEP_KEYS, (
        f"step {i}: unknown step {step}: teach this test about it"
    )
    if "expect_event" in step:
        want = step["expect_event"]
        unknown = set(want) - EVENT_KEYS
        assert not unknown, f"step {i}: unknown expectation keys {unknown}"
        try:
            e = watch.next_event(timeout=EVENT_WAIT)
        except TimeoutError:
            pytest.fail(f"step {i}: no event within {EVENT_WAIT}s, want {want['kind']}")
        except psst.PsstError as err:
            pytest.fail(f"step {i}: the watch ended with {err!r}, want a {want['kind']} event")
        assert e.kind.name == want["kind"], f"step {i}: {e!r}"
        assert e.reference == ref, f"step {i}: {e!r}"
        if "value" in want or "version_id" in want:
            assert e.secret is not None, f"step {i}: {e!r} has no secret"
        if "value" in want:
            assert e.secret.text() == want["value"], f"step {i}: {e!r}"
        if "version_id" in want:
            assert e.secret.version_id == want["version_id"], f"step {i}: {e!r}"
        if "previous_version_id" in want:
            assert e.previous_version_id == want["previous_version_id"], f"step {i}: {e!r}"
    elif "put" in step:
        client.put(ref, step["put"].encode())
    elif "restart_agent" in step:
        restart = os.environ.get("PSST_RESTART_AGENT")
        if not restart:
            pytest.fail("PSST_RESTART_AGENT is not set: run under tests/conformance/with-agent")
        done = subprocess.run(restart, shell=True, capture_output=True, text=True, timeout=60)
        assert done.returncode == 0, f"restarting the agent: {done.stdout}{done.stderr}"
    elif "expect_error" in step:
        name = step["expect_error"]
        try:
            code = grpc.StatusCode[name]
        except KeyError:
            pytest.fail(f"step {i}: the scenario names an unknown code {name!r}")
        try:
            e = watch.next_event(timeout=EVENT_WAIT)
        except TimeoutError:
            pytest.fail(f"step {i}: the watch did not end within {EVENT_WAIT}s, want {name}")
        except psst.PsstError as err:
            assert err.code == code, f"step {i}: {err!r}, want {name}"
            assert err.code_name == name
        else:
            pytest.fail(f"step {i}: got {e!r}, want the watch to end with {name}")


@pytest.mark.parametrize(
    "scenario", SCENARIOS or [None], ids=[s["name"] for s in SCENARIOS] or ["no-agent"]
)
def test_watch_scenario(client, scenario):
    unknown = set(scenario) - SCENARIO_KEYS
    assert not unknown, f"unknown scenario keys {unknown}: teach this test about them"
    assert scenario["call"] == "watch", f"unknown call {scenario['call']!r}"
    assert scenario["steps"], "scenario without steps"
    ref = scenario["reference"]
    with client.watch([ref]) as watch:
        for i, step in enumerate(scenario["steps"]):
            _step(client, watch, ref, i, step)
