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

import glob
import os
import shlex
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]
CACHE = Path(os.environ.get("AGTAP_TEST_CACHE", "/var/cache/agtap-test"))
RELEASES = os.environ.get("AGTAP_TEST_RELEASES", "bookworm trixie").split()   # Debian 12, Debian 13
GUEST_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
HOST_PATH = "/usr/sbin:/usr/bin:/sbin:/bin"


def pytest_configure(config):
    config.addinivalue_line("markers", "needs_daemon: needs `agtap serve` (agtap/service, agtap/cli.py) in the .deb")


class Failed(AssertionError):
    pass


def _need(cond: bool, what: str) -> None:
    # A tier that cannot run where it should fails; it does not skip (docs/DESIGN.md).
    if not cond:
        raise Failed(f"system tier cannot run: {what}")


class Container:
    """One booted container; `sh()` runs a shell script inside as root or as a user."""

    def __init__(self, rootfs: Path, logdir: Path, name: str = "agtap-test"):
        self.rootfs, self.logdir, self.name = rootfs, logdir, name
        self.release = rootfs.name.replace("rootfs-", "", 1)    # bookworm, trixie
        self.proc: subprocess.Popen | None = None
        self.leader: int | None = None
        self.console = logdir / "console.log"

    # -- life cycle -------------------------------------------------------
    def boot(self, timeout: float = 90) -> "Container":
        # one archive cache per release (rootfs-bookworm -> apt-archives-bookworm)
        archives = CACHE / self.rootfs.name.replace("rootfs-", "apt-archives-", 1)
        archives.joinpath("partial").mkdir(parents=True, exist_ok=True)
        cmd = [
            "systemd-nspawn", "--boot", "--register=no", "--keep-unit", "--quiet",
            f"--directory={self.rootfs}", f"--machine={self.name}",
            "--volatile=overlay", "--console=passive", "--capability=all",
            "--system-call-filter=bpf perf_event_open",
            # downloaded .debs are kept across runs: apt still resolves and verifies
            # everything from Debian, it just does not fetch the same file twice
            f"--bind={archives}:/var/cache/apt/archives",
        ]
        t0 = time.monotonic()
        out = open(self.console, "wb")
        self.proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,
                                     start_new_session=True, env={"PATH": HOST_PATH, "SYSTEMD_LOG_LEVEL": "info"})
        deadline = t0 + timeout
        while self.leader is None:
            if self.proc.poll() is not None:
                raise Failed(f"systemd-nspawn exited {self.proc.returncode}:\n{self.console.read_text(errors='replace')[-3000:]}")
            if time.monotonic() > deadline:
                raise Failed("container PID 1 did not appear")
            self.leader = self._find_leader()
            time.sleep(0.05)
        # Wait for systemd to finish booting (running, or degraded: say which unit failed).
        state = ""
        while time.monotonic() < deadline:
            r = self.sh("systemctl is-system-running", check=False, timeout=10)
            state = r.stdout.strip()
            if state in ("running", "degraded"):
                break
            time.sleep(0.1)
        else:
            raise Failed(f"container did not finish booting (state {state!r})\n{self.console.read_text(errors='replace')[-3000:]}")
        self.boot_seconds = time.monotonic() - t0
        self.boot_state = state
        return self

    def _find_leader(self) -> int | None:
        for kids in glob.glob(f"/proc/{self.proc.pid}/task/*/children"):
            try:
                pids = Path(kids).read_text().split()
            except OSError:
                continue
            for pid in pids:
                try:
                    status = Path(f"/proc/{pid}/status").read_text()
                except OSError:
                    continue
                nspid = [ln for ln in status.splitlines() if ln.startswith("NSpid:")]
                if nspid and nspid[0].split()[-1] == "1":
                    comm = Path(f"/proc/{pid}/comm").read_text().strip()
                    if comm == "systemd":
                        return int(pid)
        return None

    def stop(self, timeout: float = 30) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        try:
            # nspawn turns SIGTERM into a clean shutdown of the container (SIGRTMIN+3 to PID 1)
            self.proc.send_signal(signal.SIGTERM)
            self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(10)

    # -- running things inside ---------------------------------------------
    def sh(self, script: str, *, user: str | None = None, check: bool = True, timeout: float = 120,
           input: str | None = None, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
        assert self.leader, "container not booted"
        e = {"PATH": GUEST_PATH, "LANG": "C.UTF-8", "TERM": "xterm-256color",
             "DEBIAN_FRONTEND": "noninteractive", "SYSTEMD_PAGER": "", "SYSTEMD_COLORS": "0"}
        e.update(env or {})
        inner = ["env", "-i"] + [f"{k}={v}" for k, v in e.items()]
        if user and user != "root":
            # runuser: a real login-less user process (uid, gid, supplementary groups from /etc/group)
            inner = ["runuser", "-u", user, "--"] + inner + [f"HOME=/home/{user}", f"USER={user}"]
        else:
            inner += ["HOME=/root", "USER=root"]
        cmd = ["nsenter", "-t", str(self.leader), "-a", "--"] + inner + ["/bin/bash", "-c", script]
        try:
            r = subprocess.run(cmd, input=input, text=True, capture_output=True, timeout=timeout,
                               env={"PATH": HOST_PATH})
        except subprocess.TimeoutExpired as ex:
            raise Failed(f"timed out after {timeout}s in the container: {script}\n{ex.stdout}\n{ex.stderr}")
        if check and r.returncode != 0:
            raise Failed(f"[{user or 'root'}] {script}\n-> exit {r.returncode}\nstdout:\n{r.stdout[-4000:]}\nstderr:\n{r.stderr[-4000:]}")
        return r

    def path(self, p: str) -> Path:
        """A path inside the container, seen from the host (through PID 1's root)."""
        return Path(f"/proc/{self.leader}/root") / p.lstrip("/")

    def put(self, src: Path | str, dest: str, mode: int = 0o644) -> None:
        d = self.path(dest)
        d.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(src, d)
        os.chmod(d, mode)

    def write(self, dest: str, text: str, mode: int = 0o644) -> None:
        d = self.path(dest)
        d.parent.mkdir(parents=True, exist_ok=True)
        d.write_text(text)
        os.chmod(d, mode)

    def journal_dump(self, unit: str = "agtap", n: int = 200) -> str:
        r = self.sh(f"journalctl -u {shlex.quote(unit)} --no-pager -n {n} -o short-precise", check=False)
        return r.stdout + r.stderr

    def wait_for(self, script: str, timeout: float = 30, interval: float = 0.3, user: str | None = None,
                 what: str = "") -> subprocess.CompletedProcess:
        deadline = time.monotonic() + timeout
        while True:
            r = self.sh(script, check=False, user=user)
            if r.returncode == 0:
                return r
            if time.monotonic() > deadline:
                raise Failed(f"waited {timeout}s for {what or script}\nlast stdout:\n{r.stdout[-2000:]}\nstderr:\n{r.stderr[-2000:]}")
            time.sleep(interval)

    # -- the package ---------------------------------------------------------
    def install_deb(self, deb: Path) -> float:
        self.put(deb, f"/root/{deb.name}")
        t0 = time.monotonic()
        self.sh(f"apt-get -q -o DPkg::Lock::Timeout=300 install -y /root/{deb.name}", timeout=900)
        return time.monotonic() - t0


# -- fixtures -----------------------------------------------------------------

@pytest.fixture(scope="session")
def host_ready() -> None:
    _need(os.geteuid() == 0, "must run as root (systemd-nspawn, debootstrap): sudo make test-system")
    for tool, pkg in (("systemd-nspawn", "systemd-container"), ("debootstrap", "debootstrap"), ("nsenter", "util-linux")):
        _need(shutil.which(tool, path=HOST_PATH) is not None, f"{tool} missing: apt-get install {pkg}")


@pytest.fixture(scope="session", params=RELEASES)
def rootfs(request, host_ready) -> Path:
    """The cached rootfs of one Debian release; every test using it runs once per release."""
    release = request.param
    path = CACHE / f"rootfs-{release}"
    t0 = time.monotonic()
    r = subprocess.run([str(HERE / "make-rootfs.sh"), release, str(path)], capture_output=True, text=True,
                       env={"PATH": HOST_PATH}, timeout=1800)
    _need(r.returncode == 0, f"building the {release} rootfs failed:\n{r.stdout[-3000:]}\n{r.stderr[-3000:]}")
    print(f"\nrootfs {release}: {r.stdout.strip().splitlines()[-1]} ({time.monotonic() - t0:.1f}s)")
    return path


@pytest.fixture(scope="session")
def deb(host_ready) -> Path:
    """The package under test: $AGTAP_DEB, else built now from this tree (setup/build-deb.sh)."""
    if os.environ.get("AGTAP_DEB"):
        p = Path(os.environ["AGTAP_DEB"])
        _need(p.is_file(), f"AGTAP_DEB={p} does not exist")
        return p
    t0 = time.monotonic()
    r = subprocess.run([str(REPO / "setup/build-deb.sh")], capture_output=True, text=True,
                       env={"PATH": HOST_PATH, "LINTIAN": "0"}, timeout=900)
    _need(r.returncode == 0, f"setup/build-deb.sh failed:\n{r.stdout[-3000:]}\n{r.stderr[-5000:]}")
    debs = sorted(REPO.glob("dist/agtap_*_amd64.deb"), key=lambda p: p.stat().st_mtime)
    _need(bool(debs), "setup/build-deb.sh made no dist/agtap_*_amd64.deb")
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


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def make_cert(dirpath: Path, host: str) -> tuple[Path, Path]:
    """A self-signed certificate for `host` (the client verifies it against this file)."""
    key, crt = dirpath / "key.pem", dirpath / "cert.pem"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2",
                    "-subj", f"/CN={host}", "-addext", f"subjectAltName=DNS:{host}",
                    "-keyout", str(key), "-out", str(crt)], check=True, capture_output=True,
                   env={"PATH": HOST_PATH})
    return key, crt
