"""The harness itself, and what the package and unit promise without the daemon running.

None of these needs `agtap serve` to work: they prove the container boots with
real systemd/journald/D-Bus/polkit, that BCC can load BPF inside it under
agtap.service's sandbox, and that the .deb installs with apt and puts every
file where it belongs.
"""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

import pytest

from tests.support.nspawn import HERE, REPO, Container

UNIT = REPO / "systemd" / "agtap.service"


def test_container_boots_with_systemd_journald_dbus_polkit(box):
    assert box.boot_state == "running", box.sh("systemctl --failed --no-legend", check=False).stdout
    assert box.boot_seconds < 60
    assert box.sh("cat /proc/1/comm").stdout.strip() == "systemd"
    # journald: a tagged line goes in and comes back out
    box.sh("echo agtap-harness-ping | systemd-cat -t agtap-harness")
    box.wait_for("journalctl -t agtap-harness --no-pager -o cat | grep -qx agtap-harness-ping", what="journald")
    # the system bus, with systemd on it
    names = box.sh("busctl list --no-legend --acquired").stdout
    assert "org.freedesktop.systemd1" in names
    # polkit answers (bus-activated)
    box.sh("pkaction --action-id org.freedesktop.policykit.exec >/dev/null")
    print(f"\nboot: {box.boot_seconds:.2f}s to '{box.boot_state}'")


def _hardening_unit(script: str, env: dict[str, str]) -> str:
    """agtap.service's [Service] sandbox around another ExecStart (Type=oneshot)."""
    service = UNIT.read_text().split("[Service]", 1)[1].split("[Install]", 1)[0]
    drop = ("Type=", "BusName=", "ExecStart=", "ExecReload=", "Restart", "WatchdogSec=")
    keep = [ln for ln in service.splitlines() if ln.strip() and not ln.startswith("#") and not ln.startswith(drop)]
    envs = "".join(f"Environment={k}={v}\n" for k, v in env.items())
    return f"[Service]\nType=oneshot\n{envs}ExecStart=/usr/bin/python3 {script}\n" + "\n".join(keep) + "\n"


@pytest.fixture(scope="module")
def installed(rootfs, deb, tmp_path_factory):
    """One container per release with the .deb installed by apt (an install is minutes on a
    busy machine): the tests below share it, and the last one removes and purges it."""
    box = Container(rootfs, tmp_path_factory.mktemp("nspawn-deb"))
    try:
        box.boot()
        box.install_seconds = box.install_deb(deb)
        yield box
    finally:
        box.stop()


def test_bcc_loads_uprobes_under_the_unit_sandbox(installed):
    """The unit's hardening (capabilities, ProtectSystem=strict, syscall filter...) leaves BCC what it needs.
    Independent of agtap's code: its own probe script, with Debian's BCC and headers (there
    as the .deb's dependencies; the install below is then a no-op)."""
    box = installed
    box.sh("apt-get -q -o DPkg::Lock::Timeout=300 install -y python3-bpfcc linux-headers-amd64 openssl",
           timeout=900)
    box.sh("getent group agtap || groupadd --system agtap")
    box.put(HERE / "guest" / "bcc_probe.py", "/usr/local/lib/agtap-test/bcc_probe.py")
    box.write("/etc/systemd/system/agtap-bccprobe.service",
              _hardening_unit("/usr/local/lib/agtap-test/bcc_probe.py", {"KDIR": "/run/agtap/kernel"}))
    box.sh("systemctl daemon-reload")
    r = box.sh("systemctl start agtap-bccprobe.service", check=False, timeout=300)
    log = box.journal_dump("agtap-bccprobe")
    assert r.returncode == 0, f"BCC under the agtap.service sandbox failed:\n{log}"
    assert "uprobes:" in log and "SSL calls seen" in log, log
    print("\n" + "\n".join(ln for ln in log.splitlines() if re.search(r"bcc:|proc:|uprobes:", ln)))


def test_security_exposure_score(installed):
    """`systemd-analyze security agtap`: captured for the report; must stay below 'EXPOSED'."""
    box = installed
    out = box.sh("systemd-analyze security --no-pager agtap.service", check=False).stdout
    m = re.search(r"Overall exposure level for agtap\.service:\s*([\d.]+)\s+(\w+)", out)
    assert m, out
    score = float(m.group(1))
    (REPO / "dist").mkdir(exist_ok=True)
    (REPO / "dist" / f"systemd-analyze-security-{box.release}.txt").write_text(out)
    print(f"\nsystemd-analyze security agtap ({box.release}): {score} {m.group(2)}")
    assert score < 7.0, out


def test_deb_installs_with_apt_and_places_every_file(installed, deb):
    """Last of the three: it ends by removing and purging the package."""
    box = installed
    print(f"\napt install {deb.name} (deps from Debian, {box.release}): {box.install_seconds:.1f}s")
    box.sh("dpkg-query -W -f='${Status}' agtap | grep -qx 'install ok installed'")
    # group from sysusers, unit enabled by dh_installsystemd
    box.sh("getent group agtap")
    assert box.sh("systemctl is-enabled agtap").stdout.strip() == "enabled"
    for path in ("/usr/bin/agtap", "/usr/bin/agtapctl", "/usr/bin/agtap-tui",
                 "/lib/systemd/system/agtap.service", "/usr/lib/sysusers.d/agtap.conf",
                 "/usr/lib/tmpfiles.d/agtap.conf", "/etc/agtap/agtap.toml",
                 "/usr/share/dbus-1/system.d/io.agtap.Agtap1.conf",
                 "/usr/share/polkit-1/actions/io.agtap.policy",
                 "/usr/share/doc/agtap/README.Debian"):
        box.sh(f"test -e {path}")
    bpf_host = sorted(p.name for p in (REPO / "bpf").glob("*.[ch]"))
    bpf_guest = sorted(box.sh("ls /usr/share/agtap/bpf").stdout.split())
    assert bpf_guest == bpf_host
    assert "/etc/agtap/agtap.toml" in box.sh("cat /var/lib/dpkg/info/agtap.conffiles").stdout
    for page in ("agtap.8", "agtapctl.1", "agtap-tui.1"):
        name, sec = page.rsplit(".", 1)
        box.sh(f"man -w {sec} {name} && MANWIDTH=80 man --warnings {sec} {name} 2>&1 >/dev/null | (! grep .)")
    # polkit knows the action, dbus accepted the policy file (it reloads on install)
    box.sh("pkaction --action-id io.agtap.manage")
    # directories exist before the first start, 0750 root:agtap (tmpfiles)
    for d in ("/var/lib/agtap", "/var/log/agtap"):
        assert box.sh(f"stat -c '%a %U %G' {d}").stdout.split() == ["750", "root", "agtap"]
    # the unit as installed is valid
    r = box.sh("systemd-analyze verify /lib/systemd/system/agtap.service", check=False)
    assert r.returncode == 0 and not r.stderr.strip(), r.stdout + r.stderr
    # the python package imports with Debian's python3 and Debian's dependencies
    box.sh("python3 -c 'import agtap, agtap.config, agtap.busnames, bcc, dbus_next, systemd.journal, sdnotify'")
    # removal stops and disables; purge removes the conffile
    box.sh("apt-get -q remove -y agtap && test -e /etc/agtap/agtap.toml && ! systemctl is-enabled agtap")
    box.sh("apt-get -q purge -y agtap && ! test -e /etc/agtap/agtap.toml")


def test_example_config_names_every_key(host_ready):
    """etc/agtap.toml documents every file key, and every one parses as the daemon reads it."""
    import dataclasses

    from agtap.config import Config
    from agtap.service.configfile import ALIASES, NOT_IN_FILE, load_config_file

    text = (REPO / "etc" / "agtap.toml").read_text()
    assert tomllib.loads(text) == {}, "the shipped file must change nothing: every setting commented out"
    lines = [ln[1:] for ln in text.splitlines() if re.match(r"#[a-z_]+ = ", ln)]
    keys = {ln.split(" = ")[0] for ln in lines}
    fields = {f.name for f in dataclasses.fields(Config)} - set(NOT_IN_FILE)
    flag_names = {({v: k for k, v in ALIASES.items()}).get(f, f) for f in fields}
    assert keys == flag_names, f"undocumented: {flag_names - keys}; unknown: {keys - flag_names}"
    p = Path(__import__("tempfile").mkdtemp()) / "agtap.toml"
    p.write_text("\n".join(lines) + "\n")
    loaded = load_config_file(str(p), missing_ok=False)
    assert set(loaded) == fields
