"""A private dbus-daemon for tests: session-type by default, or with a given config file."""

from __future__ import annotations

import os
import signal
import subprocess
import tempfile
from pathlib import Path

SESSION_CONF = """<!DOCTYPE busconfig PUBLIC "-//freedesktop//DTD D-Bus Bus Configuration 1.0//EN"
 "http://www.freedesktop.org/standards/dbus/1.0/busconfig.dtd">
<busconfig>
  <type>session</type>
  <listen>unix:path={sock}</listen>
  <auth>EXTERNAL</auth>
  <policy context="default">
    <allow send_destination="*" eavesdrop="true"/>
    <allow eavesdrop="true"/>
    <allow own="*"/>
    <allow user="*"/>
  </policy>
</busconfig>
"""


class BusDaemon:
    """`with BusDaemon() as bus: bus.address` — a dbus-daemon of our own, killed by its pid."""

    def __init__(self, config_text: str | None = None, directory: str | None = None):
        self._tmp = None if directory else tempfile.TemporaryDirectory(prefix="agtap-tui-bus-")
        self.dir = Path(directory or self._tmp.name)
        self.sock = self.dir / "bus.sock"
        self.config = self.dir / "bus.conf"
        self.config.write_text((config_text or SESSION_CONF).format(sock=self.sock))
        self.proc: subprocess.Popen | None = None
        self.address = f"unix:path={self.sock}"

    def start(self) -> "BusDaemon":
        self.proc = subprocess.Popen(["dbus-daemon", "--nofork", "--nopidfile", "--print-address=1",
                                      f"--config-file={self.config}"], stdout=subprocess.PIPE, text=True)
        line = self.proc.stdout.readline().strip()
        if not line:
            raise RuntimeError("dbus-daemon did not start")
        os.chmod(self.dir, 0o755)
        return self

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        if self._tmp:
            self._tmp.cleanup()

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()
