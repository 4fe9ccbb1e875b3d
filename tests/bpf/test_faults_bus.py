"""A slow system bus: the daemon keeps tracing, and its D-Bus interface must survive.

dbus-daemon stops reading for a few seconds (SIGSTOP here; CPU starvation under load in real life:
tests/bpf/test_faults.py's ring-buffer flood did it) while calls are captured, so the daemon's
socket to the bus fills with CallCaptured signals. The daemon under test is the real one
(agtap.service.daemon) with the fake tracer of tests/support/dbus (no BPF needed, but the bus
policy setup needs root, like the rest of this tier).
"""

from __future__ import annotations

import asyncio
import os
import signal
import time

import pytest

from agtap import busnames as B

CALLS = 1500


async def _get_stats(address: str, timeout: float = 10):
    from dbus_next import Message
    from dbus_next.aio import MessageBus
    bus = await MessageBus(bus_address=address).connect()
    try:
        reply = await asyncio.wait_for(bus.call(Message(destination=B.BUS_NAME, path=B.OBJECT_PATH,
                                                        interface=B.READ_INTERFACE, member="GetStats")), timeout)
        return reply.message_type.name, reply.body
    except asyncio.TimeoutError:
        return "TIMEOUT", None
    finally:
        bus.disconnect()


@pytest.fixture(scope="module")
def stalled_bus_run(tmp_path_factory, _need_root):
    """Start the daemon, stall the bus while CALLS calls are captured, resume it; returns what was seen."""
    from tests.support.dbus.bus import PrivateBus
    from tests.support.dbus.procs import Daemon
    with PrivateBus() as bus:
        d = Daemon(str(tmp_path_factory.mktemp("stalled-bus")), bus.env()).ready(30)
        try:
            before = asyncio.run(_get_stats(bus.address))
            os.kill(bus.proc.pid, signal.SIGSTOP)
            try:
                d.feed(n=CALLS, rate=500)              # exactly CALLS calls captured, in 3 s
                deadline = time.monotonic() + 60
                while len(d.events()) < CALLS and time.monotonic() < deadline:
                    time.sleep(0.2)
                stalled_events = len(d.events())      # logged while the bus still sleeps
            finally:
                os.kill(bus.proc.pid, signal.SIGCONT)
            time.sleep(1)
            events = len(d.events())
            after = asyncio.run(_get_stats(bus.address))
        finally:
            rc = d.stop()
    return {"before": before, "after": after, "events": events, "stalled_events": stalled_events, "rc": rc,
            "stderr": d.err}


def test_tracing_goes_on_while_the_bus_is_stalled(stalled_bus_run):
    r = stalled_bus_run
    assert r["before"][0] == "METHOD_RETURN"
    assert r["stalled_events"] == CALLS, r         # every call logged while the bus was not read
    assert r["events"] == CALLS and r["rc"] == 0, r


def test_the_bus_interface_survives_a_stalled_bus(stalled_bus_run):
    kind, body = stalled_bus_run["after"]
    assert kind == "METHOD_RETURN", stalled_bus_run["after"]
    stats = {k: v.value for k, v in body[0].items()}
    assert stats["calls"] == CALLS and stats["lost_records"] == 0, stats
