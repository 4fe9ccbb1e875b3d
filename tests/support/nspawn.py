"""The system tier's container: a Debian rootfs booted with systemd-nspawn (systemd as PID 1),
and commands run inside it through nsenter. tests/system/conftest.py has the fixtures and the
why of each nspawn setting; this module has the parts tests import.
"""

from __future__ import annotations

import glob
import os
import shlex
import shutil
import signal
import subprocess
import time
from pathlib import Path

from tests.support.paths import REPO

HERE = REPO / "tests" / "system"
CACHE = Path(os.environ.get("AGTAP_TEST_CACHE", "/var/cache/agtap-test"))
RELEASES = os.environ.get("AGTAP_TEST_RELEASES", "bookworm trixie").split()   # Debian 12, Debian 13
GUEST_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
HOST_PATH = "/usr/sbin:/usr/bin:/sbin:/bin"



class Failed(AssertionError):
    pass


def need(cond: bool, what: str) -> None:
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


def make_cert(dirpath: Path, host: str) -> tuple[Path, Path]:
    """A self-signed certificate for `host` (the client verifies it against this file)."""
    key, crt = dirpath / "key.pem", dirpath / "cert.pem"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2",
                    "-subj", f"/CN={host}", "-addext", f"subjectAltName=DNS:{host}",
                    "-keyout", str(key), "-out", str(crt)], check=True, capture_output=True,
                   env={"PATH": HOST_PATH})
    return key, crt
