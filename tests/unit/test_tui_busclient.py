"""BusClient and Link against a real private dbus-daemon and the real agtap service.

The service is agtap.service.daemon.run with the FakeTracer (tests/support/tui/service.py)
on a session-type bus, so no root is needed; its calls go through the real pipeline and
reach the dashboard as the real CallCaptured signal. Access control (the shipped policy,
users) needs root: the last test here, and test_tui_e2e.py.
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import time

import pytest

from agtap import __version__, busnames
from agtap.busclient import BusClient, BusUnavailable, NotRunning, ServiceError
from agtap.tui.link import Link
from agtap.tui.model import NOT_RUNNING, RUNNING, Model
from tests.support.dbus.bus import OUTSIDER, TESTER, PrivateBus
from tests.support.dbus.procs import PY, Daemon, as_user, env_for
from tests.support.tui import events
from tests.support.tui.service import Service


@pytest.fixture
def bus():
    with PrivateBus(session=True) as b:
        yield b


@pytest.fixture
def svc(bus):
    with Service(bus, "--comm", "python3") as s:
        yield s


async def _until(pred, timeout=5.0):
    deadline = time.monotonic() + timeout
    while not pred():
        if time.monotonic() > deadline:
            raise AssertionError("condition not met in time")
        await asyncio.sleep(0.02)


def test_reads_signals_bodies_and_control(svc, bus, aloop):
    svc.start()
    svc.feed(model="claude-first", in_tok=30, out_tok=4, wait=True)
    got = []

    async def go():
        c = BusClient("session", bus.address)
        c.on_call(got.append)
        await c.connect()
        assert await c.service_running() is True
        props = await c.properties()
        assert props["Version"] == __version__ and props["Capturing"] is True
        assert props["Filters"] == {"pids": [], "comms": ["python3"]}
        # StartedAt is µs since the epoch (not seconds, not ms)
        assert abs(props["StartedAt"] / 1e6 - time.time()) < 120, props["StartedAt"]
        recent = await c.recent_calls(10)
        assert [e["model"] for e in recent] == ["claude-first"]
        stats = await c.get_stats()
        assert stats["calls"] == 1 and stats["input_tokens"] == 30 and stats["output_tokens"] == 4
        assert stats["lost_records"] == 0
        # a call made now arrives as a signal, from the service
        await asyncio.to_thread(svc.feed, model="claude-second")
        await _until(lambda: got)
        assert [e["model"] for e in got] == ["claude-second"]
        assert got[0]["event_id"] != recent[0]["event_id"]
        bodies = await c.call_bodies(recent[0]["event_id"])
        assert "claude-first" in json.dumps(bodies) and "sk-ant-api03" not in json.dumps(bodies)
        with pytest.raises(ServiceError) as e:
            await c.call_bodies("0" * 32)
        assert e.value.name == busnames.ERROR_NOT_FOUND
        await c.stop()
        assert (await c.properties())["Capturing"] is False
        await c.start()
        assert (await c.properties())["Capturing"] is True
        c.close()

    aloop.run_until_complete(go())


def test_signals_from_another_sender_are_ignored(svc, bus, aloop):
    svc.start()
    got = []

    async def go():
        c = BusClient("session", bus.address)
        c.on_call(got.append)
        await c.connect()
        assert await c.service_running()
        # an impostor emits a CallCaptured on the same path and interface
        await asyncio.to_thread(subprocess.run, [
            "busctl", f"--address={bus.address}", "emit", busnames.OBJECT_PATH, busnames.READ_INTERFACE,
            "CallCaptured", "s", json.dumps(events.llm(0, model="spoofed"))], check=True)
        await asyncio.to_thread(svc.feed, model="real")
        await _until(lambda: got)
        await asyncio.sleep(0.2)
        assert [e["model"] for e in got] == ["real"]
        c.close()

    aloop.run_until_complete(go())


def test_not_running_and_no_bus(bus, aloop):
    async def go():
        c = BusClient("session", bus.address)
        await c.connect()
        assert await c.service_running() is False
        with pytest.raises(NotRunning):
            await c.get_stats()
        c.close()
        with pytest.raises(BusUnavailable):
            await BusClient("session", "unix:path=/nonexistent/bus").connect()

    aloop.run_until_complete(go())


def test_link_follows_the_service_going_away_and_coming_back(svc, bus, aloop):
    svc.start()
    svc.feed(model="before", wait=True)
    m = Model()
    link = Link(BusClient("session", bus.address), m, poll=0.5, stats_interval=0.3)

    async def go():
        task = asyncio.ensure_future(link.run())
        await _until(lambda: m.state == RUNNING and len(m.calls) == 1)
        assert [e["model"] for e in m.calls] == ["before"]
        await _until(lambda: m.stats.get("calls") == 1)
        assert m.props["Version"] == __version__
        await asyncio.to_thread(svc.stop)
        await _until(lambda: m.state == NOT_RUNNING, 3.0)
        await asyncio.to_thread(svc.start)
        await _until(lambda: m.state == RUNNING, 5.0)
        await asyncio.to_thread(svc.feed, model="after-restart")
        await _until(lambda: len(m.calls) == 2, 3.0)
        assert m.calls[-1]["model"] == "after-restart"
        task.cancel()
        link.client.close()

    aloop.run_until_complete(go())


def test_200_calls_per_second_over_the_bus_into_the_app(svc, bus, aloop):
    """600 calls in 3 s through the real pipeline and service, as CallCaptured signals through
    dbus-next into the real App: all arrive, rows are capped, the screen is drawn ≤ ~10 times a second."""
    from agtap.tui.app import App
    from tests.support.tui.render import CountingScreen

    svc.start()
    m = Model(max_rows=400)
    app = App(BusClient("session", bus.address), m, bus="session")
    scr = CountingScreen((80, 24))
    aloop.run_until_complete(app.preflight())
    assert m.state == RUNNING
    loop = app.make_loop(aloop, scr)
    app._spawn(app.link.run())

    async def drive():
        t0 = aloop.time()
        await asyncio.to_thread(svc.feed, n=600, rate=200, model="burst-{i}")
        await _until(lambda: m.received == 600, 15)
        await asyncio.sleep(0.3)
        return aloop.time() - t0

    loop.start()
    try:
        elapsed = aloop.run_until_complete(drive())
    finally:
        loop.stop()
        for t in list(app._tasks):
            t.cancel()
        app.client.close()
    assert m.received == 600 and len(m.calls) == 400
    assert m.view()[0]["model"] == "burst-599" and m.view()[-1]["model"] == "burst-200"
    assert 3 <= scr.draws <= 10 * elapsed + 3, (scr.draws, elapsed)


CLIENT = """
import asyncio, json, sys
from agtap.busclient import AccessDenied, BusClient

async def go():
    c = BusClient("system", sys.argv[1])
    await c.connect()
    out = {}
    for name, f in (("read", c.get_stats), ("control", c.stop)):
        try:
            await f()
            out[name] = "ok"
        except AccessDenied:
            out[name] = "denied"
    print(json.dumps(out))

asyncio.run(go())
"""


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root: the shipped policy, users to switch to")
def test_access_denied_is_its_own_error(tmp_path, users):
    """The real policy on a system-type bus: an outsider is refused reading and control, a member of
    group agtap may read but not control (no polkit here): both surface as AccessDenied."""
    os.chmod(tmp_path, 0o755)
    with PrivateBus() as b:
        dm = Daemon(str(tmp_path), b.env()).ready()
        try:
            seen = {u: as_user(u, [PY, "-c", CLIENT, b.address], env_for(b.env())) for u in (OUTSIDER, TESTER)}
        finally:
            assert dm.stop() == 0, dm.err
    for u, r in seen.items():
        assert r.returncode == 0, (u, r.stderr)
    assert json.loads(seen[OUTSIDER].stdout) == {"read": "denied", "control": "denied"}
    assert json.loads(seen[TESTER].stdout) == {"read": "ok", "control": "denied"}
