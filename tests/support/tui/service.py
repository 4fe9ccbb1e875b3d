"""The real agtap service for the TUI tests: agtap.service.daemon.run with the FakeTracer (no
BPF; tests.support.dbus.run_daemon) on a private session-type bus, run as the test's own uid.

    with PrivateBus(session=True) as bus:
        svc = Service(bus).start()           # ready: READY=1, io.agtap.Agtap1 owned
        svc.feed(model="m", proc="evil")     # one more call through the real pipeline -> CallCaptured
        svc.stop(); svc.start()              # goes away, comes back (a new process, fresh state)

Access control needs users, the system-type bus and root: test_tui_e2e.py.
"""

from __future__ import annotations

import shutil
import tempfile
import time

from tests.support.dbus.bus import PrivateBus
from tests.support.dbus.procs import Daemon


class Service:
    def __init__(self, bus: PrivateBus, *args: str):
        self.bus, self.args = bus, args
        self.daemon: Daemon | None = None
        self._dirs: list[str] = []

    def start(self) -> "Service":
        d = tempfile.mkdtemp(prefix="agtap-tui-svc-")
        self._dirs.append(d)
        self.daemon = Daemon(d, {"DBUS_SESSION_BUS_ADDRESS": self.bus.address}, "--bus", "session",
                             *self.args).ready()
        return self

    def feed(self, n: int = 1, rate: float = 0, *, wait: bool = False, **exchange) -> None:
        """n more calls (tests.support.dbus.fakes.anthropic_exchange's keywords), see Daemon.feed.
        wait: return once they are in the service's event log (so signals for them are gone)."""
        before = len(self.daemon.events())
        self.daemon.feed(n, rate, **exchange)
        deadline = time.monotonic() + 10 + n / (rate or 100)
        while wait and len(self.daemon.events()) < before + n:
            assert time.monotonic() < deadline, "the service did not log the calls it was fed"
            time.sleep(0.02)

    def stop(self) -> None:
        if self.daemon is not None and self.daemon.proc.poll() is None:
            assert self.daemon.stop() == 0, self.daemon.err

    def close(self) -> None:
        if self.daemon is not None:
            self.daemon.stop()
        for d in self._dirs:
            shutil.rmtree(d, ignore_errors=True)

    def __enter__(self) -> "Service":
        return self

    def __exit__(self, *exc) -> None:
        self.close()
