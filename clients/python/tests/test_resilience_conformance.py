"""The shared resilience and Source scenarios (tests/conformance/restart-scenarios.json and
source-scenarios.json; tests/conformance/README.md defines each step), run with the sync client
and with ``psst.aio`` against the live agent of tests/conformance/with-agent, which exports the
files and the commands that stop, start and restart the agent and rotate a secret with boto3."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import threading
import time

import pytest

import psst
import psst.aio

pytestmark = pytest.mark.live

RESTART_KEYS = {
    "name", "call", "watch", "expect_current", "get", "expect_get", "getters",
    "get_deadline_seconds", "short_get_deadline_seconds", "expect_short_get_error",
    "down_seconds", "put_after", "expect_after", "give_up_after_seconds", "expect_error",
    "expect_error_within_seconds",
}
SOURCE_STEPS = {
    "expect_open_error", "expect_value", "aws_put", "expect_update", "stop_agent",
    "start_agent", "expect_unreachable",
}


def _load(env: str) -> list[dict]:
    path = os.environ.get(env)
    if not path:
        return []
    with open(path, encoding="utf-8") as f:
        return json.load(f)["scenarios"]


def need(env: str) -> None:
    if not os.environ.get(env):
        msg = f"{env} is not set: run under tests/conformance/with-agent (see test.sh)"
        if os.environ.get("PSST_REQUIRE_AGENT"):
            pytest.fail(msg)
        pytest.skip(msg)


RESTART = _load("PSST_CONFORMANCE_RESTART")
SOURCE = _load("PSST_CONFORMANCE_SOURCE")


def run(env: str, *args: str) -> None:
    subprocess.run([os.environ[env], *args], check=True)


def check_event(e: psst.WatchEvent, want: dict) -> None:
    assert e.kind.name == want["kind"], e
    assert e.secret is not None and e.secret.text() == want["value"], e
    assert e.secret.version_id == want["version_id"], e
    assert e.previous_version_id == want.get("previous_version_id", ""), e


def test_scenarios_loaded():
    need("PSST_CONFORMANCE_RESTART")
    need("PSST_CONFORMANCE_SOURCE")
    assert RESTART and SOURCE
    for sc in RESTART:
        assert set(sc) <= RESTART_KEYS, f"teach this runner {set(sc) - RESTART_KEYS}"
        assert sc["call"] in ("restart", "give_up"), sc["call"]
    for sc in SOURCE:
        assert sc["call"] == "source"
        for step in sc["steps"]:
            assert len(step) == 1 and set(step) <= SOURCE_STEPS, f"teach this runner {step}"


@pytest.mark.parametrize("sc", RESTART, ids=[s["name"] for s in RESTART])
def test_restart_sync(sc):
    need("PSST_CONFORMANCE_RESTART")
    statuses: list[psst.WatchStatus] = []
    if sc["call"] == "give_up":
        with psst.Client() as c, c.watch([sc["watch"]], give_up_after=sc["give_up_after_seconds"]) as w:
            check_event(w.next_event(timeout=10), sc["expect_current"])
            restart = subprocess.Popen([os.environ["PSST_RESTART_AGENT"], str(sc["down_seconds"])])
            start = time.monotonic()
            try:
                with pytest.raises(psst.PsstError) as info:
                    w.next_event(timeout=sc["expect_error_within_seconds"])
                assert info.value.code.name == sc["expect_error"], info.value
                assert time.monotonic() - start <= sc["expect_error_within_seconds"]
            finally:
                assert restart.wait() == 0
        return

    with psst.Client() as c, c.watch([sc["watch"]], on_status=statuses.append) as w:
        check_event(w.next_event(timeout=10), sc["expect_current"])
        run("PSST_STOP_AGENT")
        down = time.monotonic()
        results: list[tuple[str | None, BaseException | None, float]] = []

        def getter() -> None:
            t0 = time.monotonic()
            try:
                v = c.get(sc["get"], timeout=sc["get_deadline_seconds"]).text()
                results.append((v, None, time.monotonic() - t0))
            except BaseException as e:  # noqa: BLE001 - reported below
                results.append((None, e, time.monotonic() - t0))

        threads = [threading.Thread(target=getter) for _ in range(sc["getters"])]
        for t in threads:
            t.start()
        t0 = time.monotonic()
        with pytest.raises(psst.PsstError) as info:
            c.get(sc["get"], timeout=sc["short_get_deadline_seconds"])
        assert time.monotonic() - t0 <= sc["short_get_deadline_seconds"] + 2
        assert info.value.code.name in sc["expect_short_get_error"], info.value
        deadline = down + 10
        while not statuses and time.monotonic() < deadline:
            time.sleep(0.05)
        assert statuses and not statuses[0].reachable, statuses
        time.sleep(max(0.0, down + sc["down_seconds"] - time.monotonic()))
        run("PSST_START_AGENT")
        for t in threads:
            t.join()
        assert len(results) == sc["getters"]
        for value, err, took in results:
            assert err is None and value == sc["expect_get"]["value"], (err, took)
        assert any(took > sc["down_seconds"] / 2 for _, _, took in results), "no get waited"
        c.put(sc["watch"], sc["put_after"].encode(), timeout=10)
        check_event(w.next_event(timeout=15), sc["expect_after"])
        assert statuses[-1].reachable, statuses


# The aio runs need an agent of their own (test.sh runs them in a second with-agent session):
# a scenario changes what it follows, so it runs once per session.
@pytest.mark.aio_live
@pytest.mark.parametrize("sc", RESTART, ids=[s["name"] for s in RESTART])
async def test_restart_aio(sc):
    need("PSST_CONFORMANCE_RESTART")
    statuses: list[psst.WatchStatus] = []
    async with psst.aio.Client() as c:
        if sc["call"] == "give_up":
            async with c.watch([sc["watch"]], give_up_after=sc["give_up_after_seconds"]) as w:
                check_event(await w.next_event(timeout=10), sc["expect_current"])
                restart = await asyncio.create_subprocess_exec(
                    os.environ["PSST_RESTART_AGENT"], str(sc["down_seconds"])
                )
                try:
                    with pytest.raises(psst.PsstError) as info:
                        await w.next_event(timeout=sc["expect_error_within_seconds"])
                    assert info.value.code.name == sc["expect_error"], info.value
                finally:
                    assert await restart.wait() == 0
            return

        async with c.watch([sc["watch"]], on_status=statuses.append) as w:
            check_event(await w.next_event(timeout=10), sc["expect_current"])
            stop = await asyncio.create_subprocess_exec(os.environ["PSST_STOP_AGENT"])
            assert await stop.wait() == 0
            down = time.monotonic()

            async def getter() -> float:
                t0 = time.monotonic()
                s = await c.get(sc["get"], timeout=sc["get_deadline_seconds"])
                assert s.text() == sc["expect_get"]["value"]
                return time.monotonic() - t0

            getters = [asyncio.ensure_future(getter()) for _ in range(sc["getters"])]
            t0 = time.monotonic()
            with pytest.raises(psst.PsstError) as info:
                await c.get(sc["get"], timeout=sc["short_get_deadline_seconds"])
            assert time.monotonic() - t0 <= sc["short_get_deadline_seconds"] + 2
            assert info.value.code.name in sc["expect_short_get_error"], info.value
            while not statuses and time.monotonic() < down + 10:
                await asyncio.sleep(0.05)
            assert statuses and not statuses[0].reachable, statuses
            await asyncio.sleep(max(0.0, down + sc["down_seconds"] - time.monotonic()))
            start = await asyncio.create_subprocess_exec(os.environ["PSST_START_AGENT"])
            assert await start.wait() == 0
            took = await asyncio.gather(*getters)
            assert any(t > sc["down_seconds"] / 2 for t in took), "no get waited"
            await c.put(sc["watch"], sc["put_after"].encode(), timeout=10)
            check_event(await w.next_event(timeout=15), sc["expect_after"])
            assert statuses[-1].reachable, statuses


@pytest.mark.parametrize("sc", SOURCE, ids=[s["name"] for s in SOURCE])
def test_source_sync(sc):
    need("PSST_CONFORMANCE_SOURCE")
    ref = sc["reference"]
    with psst.Client() as c:
        steps = sc["steps"]
        if "expect_open_error" in steps[0]:
            with pytest.raises(psst.PsstError) as info:
                psst.Source(c, [ref], timeout=15)
            assert info.value.code.name == steps[0]["expect_open_error"]
            return
        with psst.Source(c, [ref], timeout=15) as src:
            for step in steps:
                if "expect_value" in step:
                    assert src.get(ref).text() == step["expect_value"]
                elif "aws_put" in step:
                    run("PSST_AWS_PUT", ref, step["aws_put"])
                elif "expect_update" in step:
                    deadline = time.monotonic() + 15
                    while src.get(ref).text() != step["expect_update"]:
                        left = deadline - time.monotonic()
                        assert left > 0, f"no update to {step['expect_update']!r} within 15s"
                        src.wait_for_update(left)
                        assert src.error is None, src.error
                elif "stop_agent" in step:
                    run("PSST_STOP_AGENT")
                elif "start_agent" in step:
                    run("PSST_START_AGENT")
                elif "expect_unreachable" in step:
                    deadline = time.monotonic() + 10
                    while src.status.reachable:
                        assert time.monotonic() < deadline, "the source did not report the agent unreachable"
                        time.sleep(0.05)
                else:
                    pytest.fail(f"unknown step {step}: teach this runner")


@pytest.mark.aio_live
@pytest.mark.parametrize("sc", SOURCE, ids=[s["name"] for s in SOURCE])
async def test_source_aio(sc):
    need("PSST_CONFORMANCE_SOURCE")
    ref = sc["reference"]

    async def command(env: str, *args: str) -> None:
        p = await asyncio.create_subprocess_exec(os.environ[env], *args)
        assert await p.wait() == 0

    async with psst.aio.Client() as c:
        steps = sc["steps"]
        if "expect_open_error" in steps[0]:
            with pytest.raises(psst.PsstError) as info:
                await psst.aio.Source.open(c, [ref], timeout=15)
            assert info.value.code.name == steps[0]["expect_open_error"]
            return
        async with psst.aio.Source(c, [ref], timeout=15) as src:
            updates = src.updates()
            for step in steps:
                if "expect_value" in step:
                    assert src.get(ref).text() == step["expect_value"]
                elif "aws_put" in step:
                    await command("PSST_AWS_PUT", ref, step["aws_put"])
                elif "expect_update" in step:
                    async def until() -> None:
                        async for r, secret in updates:
                            if r == ref and secret.text() == step["expect_update"]:
                                return
                        pytest.fail(f"the source ended: {src.error}")

                    await asyncio.wait_for(until(), 15)
                elif "stop_agent" in step:
                    await command("PSST_STOP_AGENT")
                elif "start_agent" in step:
                    await command("PSST_START_AGENT")
                elif "expect_unreachable" in step:
                    deadline = time.monotonic() + 10
                    while src.status.reachable:
                        assert time.monotonic() < deadline, "the source did not report the agent unreachable"
                        await asyncio.sleep(0.05)
                else:
                    pytest.fail(f"unknown step {step}: teach this runner")
            await updates.aclose()
