"""A stand-in for the agtap service's D-Bus object, for TUI tests until/unless the real one is used.

Same names as agtap/busnames.py and the interface in the issue: properties
Version, Capturing, Filters, Targets, StartedAt; GetStats, GetRecentCalls,
GetCallBodies; signal CallCaptured; Control.Start/Stop. Plus a test-only
interface io.agtap.Test with Emit(s json) so a test can make a call appear.

    python -m tests.support.tui.fake_service ADDRESS [--deny-read] [--deny-control]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time

from dbus_next import BusType, DBusError, Variant
from dbus_next.aio import MessageBus
from dbus_next.service import PropertyAccess, ServiceInterface, dbus_property, method, signal

from agtap import busnames


class State:
    def __init__(self, deny_read=False, deny_control=False):
        self.deny_read, self.deny_control = deny_read, deny_control
        self.capturing = True
        self.calls: list[str] = []
        self.started = time.time()


def _deny():
    raise DBusError(busnames.ERROR_ACCESS_DENIED, "not in group agtap")


class Read(ServiceInterface):
    def __init__(self, st: State):
        super().__init__(busnames.READ_INTERFACE)
        self.st = st

    @method()
    def GetStats(self) -> "a{sv}":
        if self.st.deny_read:
            _deny()
        evs = [json.loads(s) for s in self.st.calls]
        return {"calls": Variant("t", len(evs)),
                "input_tokens": Variant("t", sum(e.get("input_tokens") or 0 for e in evs)),
                "output_tokens": Variant("t", sum(e.get("output_tokens") or 0 for e in evs)),
                "cost_usd": Variant("d", float(sum(e.get("cost_usd") or 0 for e in evs))),
                "lost_records": Variant("t", 3), "cut_records": Variant("t", 1),
                "parse_errors": Variant("t", 0), "uptime_s": Variant("d", time.time() - self.st.started)}

    @method()
    def GetRecentCalls(self, n: "u") -> "as":
        if self.st.deny_read:
            _deny()
        return self.st.calls[-n:] if n else []

    @method()
    def GetCallBodies(self, call_id: "s") -> "s":
        if self.st.deny_read:
            _deny()
        if not any(json.loads(s).get("id") == call_id for s in self.st.calls):
            raise DBusError(busnames.ERROR_NOT_FOUND, "no such call")
        return json.dumps({"request": {"model": "claude-sonnet-4-5", "messages": [
            {"role": "user", "content": "hello\x1b]0;pwn\x07 there"}]},
            "response": {"content": [{"type": "text", "text": "Hi!\nSecond line"}]}})

    @signal()
    def CallCaptured(self, s) -> "s":
        return s

    @dbus_property(access=PropertyAccess.READ)
    def Version(self) -> "s":
        return "0.1.0-test"

    @dbus_property(access=PropertyAccess.READ)
    def Capturing(self) -> "b":
        return self.st.capturing

    @dbus_property(access=PropertyAccess.READ)
    def Filters(self) -> "as":
        return ["comm=python3"]

    @dbus_property(access=PropertyAccess.READ)
    def Targets(self) -> "as":
        return ["/usr/lib/x86_64-linux-gnu/libssl.so.3"]

    @dbus_property(access=PropertyAccess.READ)
    def StartedAt(self) -> "t":
        return int(self.st.started)


class Control(ServiceInterface):
    def __init__(self, st: State):
        super().__init__(busnames.CONTROL_INTERFACE)
        self.st = st

    @method()
    def Start(self):
        if self.st.deny_control:
            _deny()
        self.st.capturing = True

    @method()
    def Stop(self):
        if self.st.deny_control:
            _deny()
        self.st.capturing = False


class Test(ServiceInterface):
    def __init__(self, st: State, read: Read):
        super().__init__("io.agtap.Test")
        self.st, self.read = st, read

    @method()
    def Emit(self, s: "s"):
        self.st.calls.append(s)
        self.read.CallCaptured(s)

    @method()
    def Burst(self, n: "u", rate: "u"):
        """Emit n calls at `rate` per second (returns at once; the calls follow)."""
        asyncio.ensure_future(self._burst(n, rate))

    async def _burst(self, n: int, rate: int):
        from tests.support.tui import events
        loop = asyncio.get_running_loop()
        t0 = loop.time()
        for i in range(n):
            delay = t0 + i / rate - loop.time()
            if delay > 0:
                await asyncio.sleep(delay)
            self.Emit(json.dumps(events.llm(i / rate, id=f"{i:032x}")))


async def serve(address: str | None, bus: str, st: State, ready=None) -> MessageBus:
    b = await MessageBus(bus_address=address, bus_type=BusType.SYSTEM if bus == "system" else BusType.SESSION).connect()
    read = Read(st)
    b.export(busnames.OBJECT_PATH, read)
    b.export(busnames.OBJECT_PATH, Control(st))
    b.export(busnames.OBJECT_PATH, Test(st, read))
    await b.request_name(busnames.BUS_NAME)
    return b


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("address")
    p.add_argument("--deny-read", action="store_true")
    p.add_argument("--deny-control", action="store_true")
    a = p.parse_args()
    loop = asyncio.new_event_loop()
    asyncio.set_event_loop(loop)
    b = loop.run_until_complete(serve(a.address, "session", State(a.deny_read, a.deny_control)))
    print("ready", flush=True)
    loop.run_until_complete(b.wait_for_disconnect())


if __name__ == "__main__":
    main()
