"""What every benchmark needs: the bench server, the tracers (agtap, sslsniff, agtap
record) as processes of their own, clients run with their rusage, and small statistics."""

from __future__ import annotations

import json
import os
import re
import resource
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
PY = str(REPO / ".venv" / "bin" / "python") if (REPO / ".venv" / "bin" / "python").exists() else sys.executable
AGTAP = [PY, "-m", "agtap.cli"]
NODE = shutil.which("node") or "/usr/bin/node"
SSLSNIFF = shutil.which("sslsniff-bpfcc") or "/usr/sbin/sslsniff-bpfcc"
CLK_TCK = os.sysconf("SC_CLK_TCK")

# Every tracer and server this process starts, so an interrupted run leaves none behind.
_LIVE: list = []


def _cleanup() -> None:
    for p in _LIVE:
        if p.poll() is None:
            try:
                p.send_signal(signal.SIGTERM)
                p.wait(10)
            except Exception:
                p.kill()


import atexit  # noqa: E402
atexit.register(_cleanup)


# ---------------------------------------------------------------- statistics
def summary(xs: list[float]) -> dict:
    xs = [float(x) for x in xs]
    if not xs:
        return {"n": 0}
    q = statistics.quantiles(xs, n=4) if len(xs) >= 2 else [xs[0]] * 3
    return {"n": len(xs), "median": statistics.median(xs), "min": min(xs), "max": max(xs),
            "q1": q[0], "q3": q[2]}


def ratios(a: list[float], b: list[float]) -> list[float]:
    """Per-round ratios a[i]/b[i] (configurations run back to back in the same round)."""
    return [x / y for x, y in zip(a, b) if y]


def pct(xs: list[float], p: float) -> float:
    xs = sorted(xs)
    if not xs:
        return float("nan")
    k = (len(xs) - 1) * p / 100
    f = int(k)
    c = min(f + 1, len(xs) - 1)
    return xs[f] + (xs[c] - xs[f]) * (k - f)


# ---------------------------------------------------------------- processes
def proc_cpu(pid: int) -> float:
    """user+sys CPU seconds of a live process (and its reaped children: none here)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            parts = f.read().rsplit(")", 1)[1].split()
        return (int(parts[11]) + int(parts[12])) / CLK_TCK
    except (OSError, IndexError, ValueError):
        return float("nan")


def proc_cpu_clock(pid: int) -> float:
    """CPU seconds of a live process, every thread including exited ones, to the nanosecond (its
    CLOCK_PROCESS_CPUTIME_ID, read through clock_getcpuclockid): /proc/PID/stat counts 10 ms ticks."""
    import ctypes
    libc = ctypes.CDLL(None, use_errno=True)
    clk = ctypes.c_int()
    if libc.clock_getcpuclockid(pid, ctypes.byref(clk)) != 0:
        return float("nan")
    try:
        return time.clock_gettime(clk.value)
    except OSError:
        return float("nan")


def proc_rss_mb(pid: int) -> float:
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    return float("nan")


def proc_hwm_mb(pid: int) -> float:
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    return float("nan")


def run_measured(argv: list[str], env: dict | None = None, timeout: float = 300,
                 parse: bool = True) -> tuple[dict, dict]:
    """Run a client to completion: (its JSON line, {"wall", "cpu"} of the whole process from wait4)."""
    t0 = time.perf_counter()
    p = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env, cwd=REPO)
    out = err = b""
    # wait4 gives the rusage of this child alone
    deadline = time.monotonic() + timeout
    reader = threading.Thread(target=lambda: None)
    chunks, echunks = [], []

    def rd(stream, acc):
        for b in iter(lambda: stream.read(65536), b""):
            acc.append(b)

    ts = [threading.Thread(target=rd, args=(p.stdout, chunks), daemon=True),
          threading.Thread(target=rd, args=(p.stderr, echunks), daemon=True)]
    for t in ts:
        t.start()
    while True:
        pid, status, ru = os.wait4(p.pid, os.WNOHANG)
        if pid:
            break
        if time.monotonic() > deadline:
            p.kill()
            pid, status, ru = os.wait4(p.pid, 0)
            break
        time.sleep(0.005)
    wall = time.perf_counter() - t0
    p.returncode = os.waitstatus_to_exitcode(status)
    for t in ts:
        t.join(5)
    out, err = b"".join(chunks), b"".join(echunks)
    res = None
    for line in reversed(out.decode(errors="replace").splitlines()):
        try:
            res = json.loads(line)
            break
        except ValueError:
            continue
    if p.returncode != 0 or (parse and res is None):
        raise RuntimeError(f"{argv[:3]} exited {p.returncode}: {err.decode(errors='replace')[-2000:]}")
    del reader, deadline
    return res or {}, {"wall": wall, "cpu": ru.ru_utime + ru.ru_stime, "maxrss_mb": ru.ru_maxrss / 1024, "pid": p.pid}


class Server:
    """bench.server in a process of its own (its TLS work is not in the client's rusage)."""

    def __init__(self, workdir: Path, procs: int = 1, events: int = 200):
        self.certs = workdir / "certs"
        self.p = subprocess.Popen([PY, "-m", "bench.server", "--certs", str(self.certs), "--procs", str(procs),
                                   "--events", str(events)], stdout=subprocess.PIPE, cwd=REPO)
        _LIVE.append(self.p)
        info = json.loads(self.p.stdout.readline())
        self.port, self.ca, self.pids = info["port"], info["ca"], info["pids"]
        self.url = f"https://127.0.0.1:{self.port}"

    def cpu(self) -> float:
        return sum(proc_cpu(p) for p in self.pids)

    def cpu_clock(self) -> float:
        """As cpu(), to the nanosecond (proc_cpu_clock)."""
        return sum(proc_cpu_clock(p) for p in self.pids)

    def stop(self) -> None:
        self.p.send_signal(signal.SIGTERM)
        try:
            self.p.wait(10)
        except subprocess.TimeoutExpired:
            self.p.kill()
            self.p.wait()


STATUS_RE = re.compile(r"(\d[\d,]*) calls · (\d[\d,]*) lost")


class Agtap:
    """`agtap` in the foreground as Agtapd (tests/support/agtapd.py) starts it: full
    pipeline, JSONL to a file, bodies to a directory, no D-Bus. Ready at READY=1."""

    def __init__(self, workdir: Path, *flags: str, metrics_port: int | None = None):
        self.dir = Path(tempfile.mkdtemp(prefix="agtap-", dir=workdir))
        self.log = self.dir / "events.jsonl"
        self.bodies = self.dir / "bodies"
        sock = self.dir / "notify.sock"
        self.notify = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.notify.bind(str(sock))
        self.notify.settimeout(0.2)
        self.metrics_port = metrics_port
        extra = ["--metrics-addr", f"127.0.0.1:{metrics_port}"] if metrics_port else []
        env = dict(os.environ, NOTIFY_SOCKET=str(sock))
        self.stderr = open(self.dir / "stderr", "w")
        self.status = ""
        self.t_exec = time.monotonic()
        self.p = subprocess.Popen([*AGTAP, "--log", str(self.log), "--bodies-dir", str(self.bodies), "--bus", "none",
                                   "--no-stdout", *extra, *flags], cwd=REPO, env=env,
                                  stdout=subprocess.DEVNULL, stderr=self.stderr)
        _LIVE.append(self.p)
        self.ready_s = None
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and self.p.poll() is None:
            try:
                msg = self.notify.recv(4096).decode("utf-8", "replace")
            except socket.timeout:
                continue
            if "READY=1" in msg.split("\n"):
                self.ready_s = time.monotonic() - self.t_exec
                self._status(msg)
                break
        if self.ready_s is None:
            self.p.kill()
            raise RuntimeError("agtap never said READY=1: " + (self.dir / "stderr").read_text()[-2000:])
        self._stop = False
        threading.Thread(target=self._pump, daemon=True).start()

    def _status(self, msg: str) -> None:
        for line in msg.split("\n"):
            if line.startswith("STATUS="):
                self.status = line[7:]

    def _pump(self) -> None:
        while not self._stop:
            try:
                self._status(self.notify.recv(4096).decode("utf-8", "replace"))
            except (socket.timeout, OSError):
                continue

    def lost(self) -> int:
        m = STATUS_RE.search(self.status)
        return int(m.group(2).replace(",", "")) if m else -1

    def metrics(self) -> dict[str, float]:
        """agtap_* capture counters from /metrics (needs metrics_port)."""
        import urllib.request
        out: dict[str, float] = {}
        with urllib.request.urlopen(f"http://127.0.0.1:{self.metrics_port}/metrics", timeout=5) as r:
            for line in r.read().decode().splitlines():
                if line.startswith("#") or not line.startswith("agtap_"):
                    continue
                name, _, val = line.rpartition(" ")
                base = name.split("{", 1)[0]
                try:
                    out[base] = out.get(base, 0.0) + float(val)
                except ValueError:
                    pass
        return out

    def cpu(self) -> float:
        return proc_cpu(self.p.pid)

    def rss_mb(self) -> float:
        return proc_rss_mb(self.p.pid)

    def events(self) -> list[dict]:
        if not self.log.exists():
            return []
        out = []
        with open(self.log) as f:
            for line in f:
                try:
                    out.append(json.loads(line))
                except ValueError:
                    pass
        return out

    def stop(self, keep: bool = False) -> int:
        self._stop = True
        self.p.send_signal(signal.SIGTERM)
        try:
            rc = self.p.wait(30)
        except subprocess.TimeoutExpired:
            self.p.kill()
            rc = self.p.wait()
        self.notify.close()
        self.stderr.close()
        if not keep:
            shutil.rmtree(self.dir, ignore_errors=True)
        return rc


class Sslsniff:
    """bcc's sslsniff-bpfcc as the peer: libssl plus node's own OpenSSL (--extra-lib
    openssl:<node>), output to /dev/null.

    Two adjustments so it runs here at all, neither changing what it does: BCC is pointed at
    the same linux-headers tree agtap found (BCC_KERNEL_SOURCE; no headers package exists
    for this kernel), and its one `min(a, b)` is spelled as a conditional (the kernel
    headers' min() macro does not compile in BPF C with those headers). Ready when its
    perf-event fds (one per probe) stop growing. Note: sslsniff 0.26 hooks SSL_read/
    SSL_write only, not the _ex forms Python 3.10+ calls, so it sees node, not httpx."""

    def __init__(self, work: Path):
        from agtap.capture import headers
        tree = headers.find_header_tree(str(work / "rt"))
        script = work / "sslsniff-patched.py"
        if not script.exists():
            src = Path(SSLSNIFF).read_text()
            src = src.replace("u32 buf_copy_size = min((size_t)MAX_BUF_SIZE, (size_t)len);",
                              "u32 buf_copy_size = (size_t)len < (size_t)MAX_BUF_SIZE ? "
                              "(size_t)len : (size_t)MAX_BUF_SIZE;")
            script.write_text(src)
        node = os.path.realpath(NODE)
        env = dict(os.environ, BCC_KERNEL_SOURCE=tree.path)
        self.t_exec = time.monotonic()
        self.p = subprocess.Popen(["/usr/bin/python3", str(script), "--extra-lib", f"openssl:{node}"],
                                  stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=env)
        _LIVE.append(self.p)
        self.ready_s = None
        last, stable_since = -1, time.monotonic()
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline and self.p.poll() is None:
            n = self._perf_fds()
            now = time.monotonic()
            if n != last:
                last, stable_since = n, now
            elif n >= 4 and now - stable_since >= 1.0:
                self.ready_s = stable_since - self.t_exec
                break
            time.sleep(0.05)
        if self.ready_s is None:
            err = self.p.stderr.read().decode(errors="replace") if self.p.poll() is not None else ""
            self.stop()
            raise RuntimeError("sslsniff-bpfcc did not attach: " + err[-2000:])
        self.probes = last

    def _perf_fds(self) -> int:
        n = 0
        try:
            for fd in os.listdir(f"/proc/{self.p.pid}/fd"):
                try:
                    if "perf_event" in os.readlink(f"/proc/{self.p.pid}/fd/{fd}"):
                        n += 1
                except OSError:
                    pass
        except OSError:
            pass
        return n

    def cpu(self) -> float:
        return proc_cpu(self.p.pid)

    def stop(self) -> None:
        if self.p.poll() is None:
            self.p.send_signal(signal.SIGINT)
        try:
            self.p.wait(30)
        except subprocess.TimeoutExpired:
            self.p.kill()
            self.p.wait()


class Recorder:
    """`agtap record FILE`: what the tracer hands to userspace, item by item."""

    def __init__(self, path: Path):
        self.path = path
        self.p = subprocess.Popen([*AGTAP, "record", str(path)], cwd=REPO, stdout=subprocess.DEVNULL,
                                  stderr=subprocess.PIPE, text=True)
        _LIVE.append(self.p)
        self.lines: list[str] = []
        ready = threading.Event()

        def pump():
            for line in self.p.stderr:
                self.lines.append(line)
                if "recording to" in line:
                    ready.set()
            ready.set()
        threading.Thread(target=pump, daemon=True).start()
        if not ready.wait(120) or self.p.poll() is not None:
            self.p.kill()
            raise RuntimeError("agtap record did not start: " + "".join(self.lines))

    def stop(self) -> dict:
        time.sleep(0.5)
        self.p.send_signal(signal.SIGINT)
        self.p.wait(30)
        time.sleep(0.1)
        summary_line = next((ln for ln in self.lines if "items recorded" in ln), "")
        from agtap.capture.recording import read
        from agtap.capture.chunk import Chunk
        items = chunks = nbytes = 0
        for it in read(str(self.path)):
            items += 1
            if isinstance(it, Chunk):
                chunks += 1
                nbytes += len(it.data)
        m = re.search(r"lost records (\d+), cut buffers (\d+)", summary_line)
        return {"items": items, "chunks": chunks, "bytes": nbytes, "summary": summary_line.strip(),
                "lost_records": int(m.group(1)) if m else None, "cut_buffers": int(m.group(2)) if m else None}


def client_env(ca: str) -> dict:
    env = dict(os.environ, SSL_CERT_FILE=ca, NODE_EXTRA_CA_CERTS=ca, PYTHONDONTWRITEBYTECODE="1")
    for k in ("HTTPS_PROXY", "https_proxy", "HTTP_PROXY", "http_proxy"):
        env.pop(k, None)
    return env


def free_port() -> int:
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def machine() -> dict:
    cpu = ""
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    try:
        load = os.getloadavg()
    except OSError:
        load = None
    return {"nproc": os.cpu_count(), "kernel": os.uname().release, "cpu": cpu,
            "mem_gib": round(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30, 1),
            "python": sys.version.split()[0], "loadavg_at_start": load}


class BareUprobes:
    """The uprobe mechanism alone: an empty BPF program (return 0) on entry and return of
    the functions probed for SSL_write_ex and SSL_read_ex in libssl, in this process
    (bench 1's sslcalls only). at="agtap": where agtap probes (agtap.capture.probepoints:
    the functions both forms call, on Debian's libssl3); at="exported": SSL_write_ex and
    SSL_read_ex themselves (where agtap probed before, and where sslsniff-style tools do).
    Whatever agtap costs above the first is its own BPF code; up to it, the kernel's."""

    def __init__(self, work: Path, at: str = "agtap"):
        from agtap.capture import headers
        from agtap.capture.elfsyms import symbol_addrs
        from agtap.capture.probepoints import plan
        os.environ["BCC_KERNEL_SOURCE"] = headers.find_header_tree(str(work / "rt")).path
        from bcc import BPF
        self.b = BPF(text="int nothing(void *ctx) { return 0; }")
        lib = os.path.realpath("/usr/lib/x86_64-linux-gnu/libssl.so.3")
        syms = symbol_addrs(lib)
        if at == "agtap":
            addrs = [p.addr for p in plan(lib, syms) if p.covers.endswith("_ex")]
        else:
            addrs = [syms["SSL_write_ex"], syms["SSL_read_ex"]]
        self.addrs = addrs
        from agtap.capture.probetable import attach_host   # not BCC's attach_uprobe: a garbage counter offset (refctr.py)
        for a in addrs:
            attach_host(self.b, lib, a, "nothing", ret=False)
            attach_host(self.b, lib, a, "nothing", ret=True)

    def cpu(self) -> float:
        return 0.0

    def stop(self) -> None:
        self.b.cleanup()


def host_cpu() -> list[int]:
    """/proc/stat's cpu line: user nice system idle iowait irq softirq steal (jiffies, all CPUs)."""
    with open("/proc/stat") as f:
        return [int(x) for x in f.readline().split()[1:9]]


def host_cpu_pct(a: list[int], b: list[int]) -> dict:
    """Machine-wide CPU use between two host_cpu() readings, in % of all cores."""
    d = [y - x for x, y in zip(a, b)]
    tot = sum(d) or 1
    user, nice, system, idle, iowait, irq, softirq, steal = d
    return {"busy": 100 * (tot - idle - iowait) / tot, "iowait": 100 * iowait / tot, "steal": 100 * steal / tot,
            "system": 100 * (system + irq + softirq) / tot}
