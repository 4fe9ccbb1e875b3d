"""Control through polkit: a real polkitd on the private bus, the shipped action file, a real rule.

polkitd reads actions only from /usr/share/polkit-1/actions and rules from
/etc/polkit-1/rules.d, so the test installs dbus/io.agtap.policy (as the .deb
does) and a rule granting io.agtap.manage to agtap-tester, and removes both
afterwards. Without a session (no logind here) polkit applies `allow_any`
(auth_admin_keep): with no authentication agent, everyone else is refused.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import time
from pathlib import Path

import pytest

from agtap import busnames as B
from tests.support.dbus.bus import OUTSIDER, POLICY, REPO, TESTER, PrivateBus, ensure_users
from tests.support.dbus.procs import client_calls, ctl, env_for

POLKITD = "/usr/lib/polkit-1/polkitd"
ACTION = Path("/usr/share/polkit-1/actions/io.agtap.policy")
RULE = Path(f"/etc/polkit-1/rules.d/49-agtap-test-{os.getpid()}.rules")
POLKIT_BUS_POLICY = "/usr/share/dbus-1/system.d/org.freedesktop.PolicyKit1.conf"

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="needs root: runs polkitd, creates users")


@pytest.fixture(scope="module")
def bus():
    """This module's bus: with polkitd on it (the shared `daemon` fixture then runs here)."""
    if not os.path.exists(POLKITD):
        pytest.fail("polkitd missing: apt-get install polkitd")
    ensure_users()
    installed_action = not ACTION.exists()
    if installed_action:
        shutil.copy(REPO / "dbus" / "io.agtap.policy", ACTION)
    RULE.write_text('polkit.addRule(function(action, subject) {\n'
                    f'  if (action.id == "{B.POLKIT_ACTION_MANAGE}" && subject.user == "{TESTER}")\n'
                    '    return polkit.Result.YES;\n});\n')
    bus = PrivateBus(includes=[POLICY, POLKIT_BUS_POLICY]).start()
    # polkitd starts as root and switches to user polkitd itself.
    pk = subprocess.Popen([POLKITD, "--no-debug"], env=env_for(bus.env()),
                          stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 10
        while True:
            r = subprocess.run(["dbus-send", "--system", "--print-reply", "--dest=org.freedesktop.DBus",
                                "/org/freedesktop/DBus", "org.freedesktop.DBus.NameHasOwner",
                                "string:org.freedesktop.PolicyKit1"], env=env_for(bus.env()),
                               capture_output=True, text=True)
            if "boolean true" in r.stdout:
                break
            if time.monotonic() > deadline or pk.poll() is not None:
                pytest.fail(f"polkitd did not come up: {r.stderr} {pk.stderr.read() if pk.poll() else ''}")
            time.sleep(0.1)
        yield bus
    finally:
        pk.terminate()
        pk.wait(5)
        bus.stop()
        RULE.unlink(missing_ok=True)
        if installed_action:
            ACTION.unlink(missing_ok=True)


C = B.CONTROL_INTERFACE
SPEC = [[C, "SetFilter", "auas", [[1], ["python3"]]], [C, "ClearFilter", "", []],
        [C, "Stop", "", []], [C, "Start", "", []], [C, "Clean", "", []]]


def test_polkit_grants_control_to_the_user_its_rule_names(daemon, env):
    res = client_calls(TESTER, SPEC, env)
    assert all(r["ok"] for r in res), res


def test_polkit_refuses_others_without_an_agent(daemon, env):
    t0 = time.monotonic()
    res = client_calls(OUTSIDER, SPEC, env)
    assert [r.get("error") for r in res] == [B.ERROR_ACCESS_DENIED] * len(res), res
    assert time.monotonic() - t0 < 10                  # no hang waiting for an agent


def test_agtapctl_control_through_polkit(daemon, env):
    assert ctl(TESTER, ["filter", "--comm", "node"], env).returncode == 0
    r = ctl(OUTSIDER, ["stop"], env)
    assert r.returncode == 4 and "io.agtap.manage" in r.stderr
    # polkit grants control, not reading: the outsider still cannot read.
    assert ctl(OUTSIDER, ["status"], env).returncode == 4
