"""An in-process stand-in for BusClient (same methods), for App tests that need no bus.

The real BusClient is tested against a real dbus-daemon in test_tui_busclient.py.
"""

from __future__ import annotations

from agtap.busclient import AccessDenied, NotRunning


class StubClient:
    def __init__(self, bodies=None, deny_bodies=False, deny_control=False, running=True):
        self.bodies = bodies if bodies is not None else {"request": {"messages": [{"content": "hi"}]}}
        self.deny_bodies, self.deny_control, self.running = deny_bodies, deny_control, running
        self.connected = False
        self.capturing = True
        self.calls_cb = []
        self.body_requests: list[str] = []

    def on_call(self, cb):
        self.calls_cb.append(cb)

    def on_service_change(self, cb):
        pass

    def on_disconnect(self, cb):
        pass

    async def connect(self):
        self.connected = True

    async def service_running(self):
        return self.running

    async def properties(self):
        if not self.running:
            raise NotRunning("x", "not running")
        return {"Version": "0.1.0", "Capturing": self.capturing, "Filters": {"pids": [], "comms": []}}

    async def get_stats(self):
        return {"calls": 0, "uptime_s": 5}

    async def recent_calls(self, n):
        return []

    async def call_bodies(self, event_id):
        self.body_requests.append(event_id)
        if self.deny_bodies:
            raise AccessDenied("io.agtap.Error.AccessDenied", "bodies are for root")
        return self.bodies

    async def start(self):
        if self.deny_control:
            raise AccessDenied("io.agtap.Error.AccessDenied", "needs polkit")
        self.capturing = True

    async def stop(self):
        if self.deny_control:
            raise AccessDenied("io.agtap.Error.AccessDenied", "needs polkit")
        self.capturing = False

    def close(self):
        self.connected = False

    def emit(self, ev):
        for cb in self.calls_cb:
            cb(ev)
