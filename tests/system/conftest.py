"""The system tier: the built .deb in Debian 12 and Debian 13, each booted with systemd-nspawn.

systemd is PID 1 in the container, with its own journald, system D-Bus and
polkit; the package is installed with apt, which fetches its dependencies from
Debian. Commands run inside through nsenter into the container's namespaces
(machinectl needs --register=yes and a host systemd, which CI machines may lack).

    rootfs   session, one per release (bookworm = Debian 12, trixie = Debian 13; every
             test using it runs on both): debootstrap once, cached in
             /var/cache/agtap-test/rootfs-<release> (tests/system/make-rootfs.sh; its hash
             and the release are the cache key). AGTAP_TEST_RELEASES="trixie" narrows it.
    deb      session: setup/build-deb.sh -> dist/agtap_*_amd64.deb (or $AGTAP_DEB)
    boot     function: a fresh container (--volatile=overlay: the cached tree is
             read-only, every write goes to a tmpfs, nothing leaks between tests)

What BPF needs inside: --capability=all, and bpf + perf_event_open added to
nspawn's system call allow-list (without them every service in the container
gets EPERM from bpf(2): "could not open bpf map"). /sys/kernel/tracing is
visible in nspawn's /sys already; kernel headers come from Debian's
linux-headers packages, installed as the .deb's Recommends.

This tier fails, never skips, when it cannot run (not root, no nspawn...):
docs/DESIGN.md, "Tests".
"""

from __future__ import annotations

import os
import shutil
import subprocess
import time
from pathlib import Path

import pytest

from tests.support.nspawn import CACHE, HERE, HOST_PATH, RELEASES, REPO, Container, need


def pytest_configure(config):
    config.addinivalue_line("markers", "needs_daemon: needs `agtap serve` (agtap/service, agtap/cli.py) in the .deb")


# -- fixtures -----------------------------------------------------------------

@pytest.fixture(scope="session")
def host_ready() -> None:
    need(os.geteuid() == 0, "must run as root (systemd-nspawn, debootstrap): sudo make test-system")
    for tool, pkg in (("systemd-nspawn", "systemd-container"), ("debootstrap", "debootstrap"), ("nsenter", "util-linux")):
        need(shutil.which(tool, path=HOST_PATH) is not None, f"{tool} missing: apt-get install {pkg}")


@pytest.fixture(scope="session", params=RELEASES)
def rootfs(request, host_ready) -> Path:
    """The cached rootfs of one Debian release; every test using it runs once per release."""
    release = request.param
    path = CACHE / f"rootfs-{release}"
    t0 = time.monotonic()
    r = subprocess.run([str(HERE / "make-rootfs.sh"), release, str(path)], capture_output=True, text=True,
                       env={"PATH": HOST_PATH}, timeout=1800)
    need(r.returncode == 0, f"building the {release} rootfs failed:\n{r.stdout[-3000:]}\n{r.stderr[-3000:]}")
    print(f"\nrootfs {release}: {r.stdout.strip().splitlines()[-1]} ({time.monotonic() - t0:.1f}s)")
    return path


@pytest.fixture(scope="session")
def deb(host_ready) -> Path:
    """The package under test: $AGTAP_DEB, else built now from this tree (setup/build-deb.sh)."""
    if os.environ.get("AGTAP_DEB"):
        p = Path(os.environ["AGTAP_DEB"])
        need(p.is_file(), f"AGTAP_DEB={p} does not exist")
        return p
    t0 = time.monotonic()
    r = subprocess.run([str(REPO / "setup/build-deb.sh")], capture_output=True, text=True,
                       env={"PATH": HOST_PATH, "LINTIAN": "0"}, timeout=900)
    need(r.returncode == 0, f"setup/build-deb.sh failed:\n{r.stdout[-3000:]}\n{r.stderr[-5000:]}")
    debs = sorted(REPO.glob("dist/agtap_*_amd64.deb"), key=lambda p: p.stat().st_mtime)
    need(bool(debs), "setup/build-deb.sh made no dist/agtap_*_amd64.deb")
    print(f"\ndeb: {debs[-1]} ({time.monotonic() - t0:.1f}s)")
    return debs[-1]


@pytest.fixture
def boot(rootfs, tmp_path_factory):
    """A function that boots a fresh container; all are stopped at the end of the test."""
    made: list[Container] = []

    def _boot() -> Container:
        c = Container(rootfs, tmp_path_factory.mktemp("nspawn"))
        made.append(c)
        return c.boot()

    yield _boot
    for c in made:
        c.stop()


@pytest.fixture
def box(boot) -> Container:
    return boot()
