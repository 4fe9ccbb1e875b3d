"""BusClient and Link against a real private dbus-daemon and a stand-in agtap service process.

The stand-in (tests/support/tui/fake_service.py) has the interface from the issue;
test_tui_e2e.py does the same against the real service when it is there.
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from agtap import busnames
from agtap.busclient import AccessDenied, BusClient, BusUnavailable, NotRunning, ServiceError
from agtap.tui.link import Link
from agtap.tui.model import NOT_RUNNING, RUNNING, Model
from tests.support.tui import events
from tests.support.tui.busdaemon import BusDaemon

ROOT = Path(__file__).resolve().parents[2]


class Service:
    """The stand-in service as a child process (so it can be stopped and started again)."""

    def __init__(self, address: str, *flags: str):
        self.address, self.flags, self.proc = address, flags, None

    def start(self) -> "Service":
        self.proc = subprocess.Popen([sys.executable, "-m", "tests.support.tui.fake_service", self.address,
                                      *self.flags], cwd=ROOT, stdout=subprocess.PIPE, text=True)
        assert self.proc.stdout.readline().strip() == "ready"
        return self

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(5)

    def emit(self, ev: dict) -> None:
        subprocess.run(["busctl", f"--address={self.address}", "call", busnames.BUS_NAME, busnames.OBJECT_PATH,
                        "io.agtap.Test", "Emit", "s", json.dumps(ev)], check=True, capture_output=True)


@pytest.fixture
def bus():
    with BusDaemon() as b:
        yield b


async def _until(pred, timeout=3.0):
    t = 0.0
    while not pred():
        await asyncio.sleep(0.02)
        t += 0.02
        if t > timeout:
            raise AssertionError("condition not met in time")


def test_reads_and_signals(bus, aloop):
    svc = Service(bus.address).start()
    try:
        first = events.llm(0)
        svc.emit(first)
        got = []

        async def go():
            c = BusClient("session", bus.address)
            c.on_call(got.append)
            await c.connect()
            assert await c.service_running() is True
            props = await c.properties()
            assert props["Version"] == "0.1.0-test" and props["Capturing"] is True
            assert props["Filters"] == ["comm=python3"]
            stats = await c.get_stats()
            assert stats["calls"] == 1 and stats["input_tokens"] == 1200 and stats["lost_records"] == 3
            recent = await c.recent_calls(10)
            assert [e["id"] for e in recent] == [first["id"]]
            assert recent[0]["model"] == "claude-sonnet-4-5"
            second = events.llm(1, model="gpt-4o")
            await asyncio.to_thread(svc.emit, second)
            await _until(lambda: got)
            assert got[0]["id"] == second["id"] and got[0]["model"] == "gpt-4o"
            bodies = await c.call_bodies(first["id"])
            assert bodies["response"]["content"][0]["text"] == "Hi!\nSecond line"
            with pytest.raises(ServiceError) as e:
                await c.call_bodies("0" * 32)
            assert e.value.name == busnames.ERROR_NOT_FOUND
            await c.stop()
            assert (await c.properties())["Capturing"] is False
            await c.start()
            assert (await c.properties())["Capturing"] is True
            c.close()

        aloop.run_until_complete(go())
    finally:
        svc.stop()


def test_signals_from_another_sender_are_ignored(bus, aloop):
    svc = Service(bus.address).start()
    try:
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
            await asyncio.to_thread(svc.emit, events.llm(1, model="real"))
            await _until(lambda: got)
            await asyncio.sleep(0.2)
            assert [e["model"] for e in got] == ["real"]
            c.close()

        aloop.run_until_complete(go())
    finally:
        svc.stop()


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


def test_access_denied_is_its_own_error(bus, aloop):
    svc = Service(bus.address, "--deny-read", "--deny-control").start()
    try:
        async def go():
            c = BusClient("session", bus.address)
            await c.connect()
            with pytest.raises(AccessDenied):
                await c.get_stats()
            with pytest.raises(AccessDenied):
                await c.start()
            c.close()

        aloop.run_until_complete(go())
    finally:
        svc.stop()


def test_link_follows_the_service_going_away_and_coming_back(bus, aloop):
    svc = Service(bus.address).start()
    first = events.llm(0)
    svc.emit(first)
    m = Model()
    link = Link(BusClient("session", bus.address), m, poll=0.5, stats_interval=0.3)

    async def go():
        task = asyncio.ensure_future(link.run())
        await _until(lambda: m.state == RUNNING)
        assert [e["id"] for e in m.calls] == [first["id"]]
        assert m.props["Version"] == "0.1.0-test" and m.stats["calls"] == 1
        await asyncio.to_thread(svc.stop)
        await _until(lambda: m.state == NOT_RUNNING, 2.0)
        await asyncio.to_thread(svc.start)
        await _until(lambda: m.state == RUNNING, 3.0)
        ev = events.llm(5, model="after-restart")
        await asyncio.to_thread(svc.emit, ev)
        await _until(lambda: len(m.calls) == 2, 2.0)
        assert m.calls[-1]["model"] == "after-restart"
        task.cancel()
        link.client.close()

    try:
        aloop.run_until_complete(go())
    finally:
        svc.stop()


def test_agtap_tui_exits_4_with_one_line_when_denied(bus):
    svc = Service(bus.address, "--deny-read").start()
    try:
        r = subprocess.run([sys.executable, "-m", "agtap.tui.app", "--bus", "session", "--address", bus.address],
                           cwd=ROOT, capture_output=True, text=True, timeout=20,
                           env={**os.environ, "TERM": "xterm"}, stdin=subprocess.DEVNULL)
    finally:
        svc.stop()
    assert r.returncode == 4, (r.stdout, r.stderr)
    assert r.stderr == ("agtap-tui: access denied: add yourself to group agtap: "
                        "sudo usermod -aG agtap $USER, then log in again\n")
    assert r.stdout == ""


def test_200_calls_per_second_over_the_bus_into_the_app(bus, aloop):
    """600 CallCaptured signals in 3 s through dbus-next into the real App: all arrive, rows are
    capped, the screen is drawn ≤ ~10 times a second."""
    from agtap.tui.app import App
    from tests.support.tui.render import CountingScreen

    svc = Service(bus.address).start()
    try:
        m = Model(max_rows=400)
        app = App(BusClient("session", bus.address), m, bus="session")
        scr = CountingScreen((80, 24))
        aloop.run_until_complete(app.preflight())
        assert m.state == RUNNING
        loop = app.make_loop(aloop, scr)
        app._spawn(app.link.run())

        async def drive():
            t0 = aloop.time()
            await asyncio.to_thread(subprocess.run, [
                "busctl", f"--address={bus.address}", "call", busnames.BUS_NAME, busnames.OBJECT_PATH,
                "io.agtap.Test", "Burst", "uu", "600", "200"], check=True)
            await _until(lambda: m.received == 600, 10)
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
        assert m.view()[0]["id"] == f"{599:032x}" and m.view()[-1]["id"] == f"{200:032x}"
        assert elapsed < 5, elapsed
        assert 3 <= scr.draws <= 10 * elapsed + 3, (scr.draws, elapsed)
    finally:
        svc.stop()
