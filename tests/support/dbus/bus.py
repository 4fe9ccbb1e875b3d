"""A private dbus-daemon configured like the system bus, and the test users.

The bus config is modelled on /usr/share/dbus-1/system.conf (deny own and
method calls by default, allow Hello and the bus driver, EXTERNAL auth) and
includes the real dbus/io.agtap.Agtap1.conf, so the tests exercise the policy
that ships. It runs as root (no <user>) and listens on a socket in a 0755
directory so the unprivileged test users can reach it.
"""

from __future__ import annotations

import grp
import os
import pwd
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

from agtap import busnames
from tests.support.paths import REPO

POLICY = REPO / "dbus" / "io.agtap.Agtap1.conf"
TESTER = "agtap-tester"        # member of group agtap
OUTSIDER = "agtap-outsider"    # not a member
GROUP = busnames.GROUP

# dbus-daemon(1) configuration: a bus of {type} type on the socket {sock}, then {policy}
CONFIG = """<!DOCTYPE busconfig PUBLIC "-//freedesktop//DTD D-Bus Bus Configuration 1.0//EN"
 "http://www.freedesktop.org/standards/dbus/1.0/busconfig.dtd">
<busconfig>
  <type>{type}</type>
  <listen>unix:path={sock}</listen>
  <auth>EXTERNAL</auth>
{policy}</busconfig>
"""

# like /usr/share/dbus-1/system.conf; {includes}: the policy files under test
SYSTEM_POLICY = """  <policy context="default">
    <allow user="*"/>
    <deny own="*"/>
    <deny send_type="method_call"/>
    <allow send_type="signal"/>
    <allow send_requested_reply="true" send_type="method_return"/>
    <allow send_requested_reply="true" send_type="error"/>
    <allow receive_type="method_call"/>
    <allow receive_type="method_return"/>
    <allow receive_type="error"/>
    <allow receive_type="signal"/>
    <allow send_destination="org.freedesktop.DBus" send_interface="org.freedesktop.DBus"/>
    <allow send_destination="org.freedesktop.DBus" send_interface="org.freedesktop.DBus.Introspectable"/>
    <allow send_destination="org.freedesktop.DBus" send_interface="org.freedesktop.DBus.Properties"/>
    <deny send_destination="org.freedesktop.DBus" send_interface="org.freedesktop.DBus"
          send_member="UpdateActivationEnvironment"/>
  </policy>
  <policy user="root">
    <allow send_destination="org.freedesktop.DBus" send_interface="org.freedesktop.DBus.Monitoring"/>
  </policy>
{includes}
"""

SESSION_POLICY = """  <policy context="default">
    <allow send_destination="*" eavesdrop="true"/>
    <allow eavesdrop="true"/>
    <allow own="*"/>
  </policy>
"""


def ensure_users() -> None:
    """Group agtap, agtap-tester in it, agtap-outsider not (created once, kept: harmless system users)."""
    if os.geteuid() != 0:
        raise RuntimeError("the D-Bus access tests need root (they create users and switch to them)")
    try:
        grp.getgrnam(GROUP)
    except KeyError:
        subprocess.run(["groupadd", "--system", GROUP], check=True)
    for user, groups in ((TESTER, [GROUP]), (OUTSIDER, [])):
        try:
            pwd.getpwnam(user)
        except KeyError:
            cmd = ["useradd", "--system", "--no-create-home", "--shell", "/usr/sbin/nologin"]
            if groups:
                cmd += ["--groups", ",".join(groups)]
            subprocess.run(cmd + [user], check=True)


class PrivateBus:
    def __init__(self, includes: list[str | Path] = (POLICY,), *, session: bool = False):
        """session: a session-type bus (only the uid that runs it may connect; no policy file)."""
        self.dir = tempfile.mkdtemp(prefix="agtap-bus-")
        os.chmod(self.dir, 0o755)
        self.sock = os.path.join(self.dir, "system_bus_socket")
        self.address = f"unix:path={self.sock}"
        inc = "\n".join(f"  <include>{p}</include>" for p in includes)
        self.config = os.path.join(self.dir, "bus.conf")
        policy = SESSION_POLICY if session else SYSTEM_POLICY.format(includes=inc)
        text = CONFIG.format(type="session" if session else "system", sock=self.sock, policy=policy)
        Path(self.config).write_text(text)
        self.proc: subprocess.Popen | None = None

    def start(self) -> "PrivateBus":
        self.proc = subprocess.Popen(["dbus-daemon", f"--config-file={self.config}", "--nofork",
                                      "--nopidfile", "--print-address"],
                                     stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        line = self.proc.stdout.readline()
        if not line.strip():
            raise RuntimeError(f"dbus-daemon did not start: {self.proc.stderr.read()}")
        deadline = time.monotonic() + 5
        while not os.path.exists(self.sock) and time.monotonic() < deadline:
            time.sleep(0.01)
        return self

    def env(self) -> dict[str, str]:
        return {"DBUS_SYSTEM_BUS_ADDRESS": self.address}

    def stop(self) -> None:
        if self.proc is not None:
            self.proc.terminate()
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
            self.proc = None
        shutil.rmtree(self.dir, ignore_errors=True)

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()
