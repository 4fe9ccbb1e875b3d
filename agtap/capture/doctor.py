"""`agtap doctor`: can capture work on this machine, and if not, what fixes it.

Each check is a line: a verdict (ok / warn / FAIL), what was found, and for
anything not ok the command that fixes it. Runs without root (some checks
then say they need it).
"""

from __future__ import annotations

import functools
import os
import platform
import shutil
from dataclasses import dataclass

from agtap.capture import boringcache, golocate, headers, refctr
from agtap.capture import probepoints
from agtap.capture.elfsyms import SSL_SYMBOLS, exported, file_offset, symbol_addrs
from agtap.capture.targets import LIBSSL_NAME, Target, TargetSet, all_pids, exe_of


@dataclass
class Check:
    verdict: str     # "ok" | "warn" | "FAIL"
    what: str
    detail: str
    fix: str = ""

    def line(self) -> str:
        s = f"{self.verdict:<4}  {self.what}: {self.detail}"
        return s + (f"\n      fix: {self.fix}" if self.fix and self.verdict != "ok" else "")


def _kernel() -> Check:
    rel = platform.release()
    try:
        major, minor = (int(x) for x in rel.split(".")[:2])
    except ValueError:
        return Check("warn", "kernel", rel + " (version not understood)")
    ok = (major, minor) >= (5, 8)   # BPF ring buffer
    return Check("ok" if ok else "FAIL", "kernel", rel + ("" if ok else ": the BPF ring buffer needs 5.8 or later"),
                 "boot a kernel 5.8 or later")


def _btf() -> Check:
    ok = os.path.exists("/sys/kernel/btf/vmlinux")
    return Check("ok" if ok else "warn", "BTF", "/sys/kernel/btf/vmlinux " + ("present" if ok else "absent (not needed by agtap)"))


def _tracefs() -> Check:
    p = headers.tracefs_path()
    if p:
        return Check("ok", "tracefs", f"mounted at {p}")
    return Check("warn", "tracefs", "not mounted (agtap mounts it when it starts as root)",
                 "sudo mount -t tracefs tracefs /sys/kernel/tracing")


def _events() -> list[Check]:
    p = headers.tracefs_path()
    if not p:
        return []
    out = []
    for ev in ("syscalls/sys_enter_write", "syscalls/sys_exit_read", "sched/sched_process_exec"):
        ok = os.path.isdir(os.path.join(p, "events", ev))
        out.append(Check("ok" if ok else "FAIL", "tracepoint", ev + (" available" if ok else " missing"),
                         "a kernel with CONFIG_FTRACE_SYSCALLS"))
    up = os.path.exists(os.path.join(p, "uprobe_events"))
    out.append(Check("ok" if up else "FAIL", "uprobes", "uprobe_events " + ("available" if up else "missing"),
                     "a kernel with CONFIG_UPROBE_EVENTS"))
    kp = os.path.exists(os.path.join(p, "kprobe_events"))
    out.append(Check("ok", "kprobes", ("available" if kp else "absent") + " (agtap does not use them)"))
    return out


def _headers(runtime_dir: str) -> Check:
    try:
        t = headers.find_header_tree(runtime_dir, prepare=False)
    except headers.HeadersNotFound as e:
        return Check("FAIL", "kernel headers", str(e).split(". Fix:")[0], headers.HEADERS_PACKAGE_HINT)
    note = "" if t.exact else " (not the running kernel's: fine, agtap's BPF reads no kernel structs)"
    return Check("ok", "kernel headers", f"{t.source}{note}")


def _bcc() -> Check:
    try:
        import bcc  # noqa: F401
    except ImportError:
        return Check("FAIL", "BCC", "python3-bpfcc is not importable", "sudo apt-get install python3-bpfcc")
    return Check("ok", "BCC", f"python3-bpfcc {getattr(bcc, '__version__', '')}".strip())


def _http2() -> Check:
    """HTTP/2 is decoded with hyperframe and hpack (agtap/wire/http2.py): without them nothing starts."""
    try:
        import hpack
        import hyperframe
    except ImportError as e:
        return Check("FAIL", "HTTP/2", f"{e.name or 'hpack/hyperframe'} is not importable",
                     "sudo apt-get install python3-hpack python3-hyperframe")
    return Check("ok", "HTTP/2", f"hyperframe {hyperframe.__version__}, hpack {hpack.__version__}")


def _botocore() -> Check:
    # Not needed for capture: only AWS Bedrock's streamed answers are read with it (wire/eventstream.py).
    import importlib.util
    if importlib.util.find_spec("botocore") is None:
        return Check("warn", "botocore", "not importable: AWS Bedrock's streamed answers (ConverseStream, "
                     "InvokeModelWithResponseStream) are not read", "sudo apt-get install python3-botocore")
    return Check("ok", "botocore", "AWS event streams (Bedrock) are read with botocore")


def _found() -> TargetSet:
    """Every file capture would probe, found as the tracer finds them (without attaching)."""
    import logging
    found = TargetSet(lambda path, target: None, logging.getLogger("agtap.doctor.targets"))
    found.scan_host()
    return found


def _libssl(found: TargetSet) -> list[Check]:
    """Every libssl capture would probe, per container, with where each probe would sit."""
    out = []
    for t in sorted(found.targets, key=lambda t: t.where != "host"):
        points = "; ".join(pt.describe() for pt in probepoints.plan(t.opened or t.path, t.symbols))
        what = "libssl" if LIBSSL_NAME.search(t.path) else "executable"
        out.append(Check("ok", what, f"{t.describe()}: probes {points}"))
    for t in found.unusable:
        if LIBSSL_NAME.search(t.path):
            missing = [s for s in SSL_SYMBOLS if s not in t.symbols]
            out.append(Check("warn", "libssl",
                             f"{t.describe()}: no SSL symbols ({', '.join(missing)} missing; not OpenSSL?)"))
    if not any(c.verdict == "ok" for c in out):
        out.append(Check("warn", "libssl", "no OpenSSL libssl found: TLS from dynamically linked programs is not seen",
                         "sudo apt-get install libssl3"))
    if os.geteuid() != 0:
        out.append(Check("warn", "libssl", "not root: other users' processes and containers were not looked at",
                         "sudo agtap doctor"))
    return out


@functools.lru_cache(maxsize=None)
def _package_of(path: str) -> str:
    """The Debian package that ships `path` on this host ("" if none says so). Cached: a held
    file is named by each of its held points (libssl 3, node 5), and each asked dpkg again."""
    import subprocess
    try:
        r = subprocess.run(["dpkg", "-S", os.path.realpath(path)], capture_output=True, text=True, timeout=20)
    except (OSError, subprocess.SubprocessError):
        return ""
    return r.stdout.split(":", 1)[0].strip() if r.returncode == 0 else ""


def _probed_files(found: TargetSet) -> list[Target]:
    """What capture would probe: the files found, and the node binary on PATH (probed when it starts)."""
    targets = list(found.targets)
    node = shutil.which("node")
    if node and not any(os.path.realpath(t.opened or t.path) == os.path.realpath(node) for t in targets):
        targets.append(Target(node, symbol_addrs(node)))
    return targets


def _held_points(targets: list[Target]) -> list[Check]:
    """The probe points the kernel holds with a reference counter offset (refctr.py): found by
    registering a uprobe at each with none, for this process, and unregistering it at once."""
    if os.geteuid() != 0:
        return [Check("warn", "probe points", "not root: not checked for uprobes held with a reference counter "
                      "offset", "sudo agtap doctor")]
    if not headers.tracefs_path():
        return []
    points = []
    for t in targets:
        if not t.usable:
            continue
        path = t.opened or t.path
        where = [(pt.addr, pt.covers) for pt in probepoints.plan(path, t.symbols)]
        for addr, covers in where + [(t.symbols["SSL_free"], "SSL_free")] * ("SSL_free" in t.symbols):
            off = file_offset(path, addr)
            if off is not None:
                points.append((t, path, covers, off))

    def check(i: int):
        t, path, _, off = points[i]
        try:
            return refctr.test_register(path, off, 900_000 + i), ""
        except refctr.Unlearned as e:
            return None, str(e)
        except OSError as e:
            return -1, str(e)

    from concurrent.futures import ThreadPoolExecutor
    with ThreadPoolExecutor(max_workers=8) as ex:   # each unregistering waits for the kernel's grace period
        results = list(ex.map(check, range(len(points))))
    out = []
    for (t, path, covers, off), (held, why) in zip(points, results):
        if held == 0:
            continue
        where = f"{t.describe()} at {off:#x} ({covers})"
        pkg = _package_of(path) if t.where == "host" else ""
        clear = ("reboot (a uprobe the kernel leaked goes with it), or " +
                 (f"`sudo apt-get install --reinstall {pkg}`" if pkg else "reinstall the package that ships the file"
                  + ("" if t.where == "host" else f" in {t.where}")) +
                 ": the file gets a new inode, and processes started afterwards map a file no probe holds")
        if held == -1:
            out.append(Check("warn", "probe point", f"{where}: not checked: {why}"))
        elif held:
            out.append(Check("warn", "probe point", f"{where}: the kernel holds it with reference counter offset "
                             f"{held:#x}: another tracer's (BCC 0.26's Python binding sets a garbage one), or a uprobe "
                             "the kernel leaked (dmesg: 'failed to unregister, leaking uprobe'). agtap probes it anyway, "
                             "with that offset", "nothing is needed; to clear it, " + clear))
        else:
            out.append(Check("FAIL", "probe point", f"{where}: the kernel refuses probes there without a reference "
                             f"counter offset, and the one it holds cannot be learned: {why}. Per-process probes on "
                             "this file fall back to host-wide ones, and those are refused: its calls are not seen",
                             clear))
    if not out:
        out.append(Check("ok", "probe points", f"{len(points)} checked: none held by another tracer with a reference "
                     "counter offset"))
    return out


def _node() -> list[Check]:
    seen, out = set(), []
    cands = [shutil.which("node") or ""] + [exe_of(pid) for pid in all_pids()]
    for exe in cands:
        if not exe or exe in seen or not os.path.basename(exe).startswith("node"):
            continue
        seen.add(exe)
        syms = exported(exe)
        ok = all(s in syms for s in SSL_SYMBOLS)
        out.append(Check("ok" if ok else "warn", "node", f"{exe}: " + ("exports the SSL symbols" if ok else
                                                                       "no SSL symbols (built against a shared libssl?)")))
    if not out:
        out.append(Check("ok", "node", "no node binary found (new ones are found when they start)"))
    return out


def _boringssl(cache_dir: str) -> list[Check]:
    """Every executable with statically linked BoringSSL (Bun, Claude Code) the tracer has
    seen, from its cache of verdicts."""
    d = os.path.join(cache_dir, "boringssl")
    if os.path.isdir(d) and not os.access(d, os.R_OK | os.X_OK):
        return [Check("warn", "boringssl", f"{d} is not readable: the verdicts on Bun/BoringSSL binaries "
                                           "are not shown", "sudo agtap doctor")]
    out = []
    for v in boringcache.seen(cache_dir):
        gone = "" if os.path.exists(v.path) else " [file since removed or replaced]"
        out.append(Check("ok" if v.located else "warn", "boringssl", f"{v.path}: {v.line()}{gone}",
                         "" if v.located else "its TLS is not seen; report the binary's version to agtap"))
    if not out:
        out.append(Check("ok", "boringssl", f"no Bun/BoringSSL binary seen yet ({d} is empty; "
                                            "they are looked at when they start)"))
    return out


def _go() -> list[Check]:
    """Every Go executable running now (one line per file, however many processes run it):
    its Go version and where its crypto/tls functions are, or why they are not probed."""
    seen, out = set(), []
    for pid in sorted(all_pids()):
        exe = f"/proc/{pid}/exe"
        try:
            st = os.stat(exe)           # the file itself, also inside another mount namespace
        except OSError:
            continue
        if (st.st_dev, st.st_ino) in seen:
            continue
        seen.add((st.st_dev, st.st_ino))
        if not golocate.is_go_binary(exe):
            continue
        try:
            line, verdict, fix = golocate.locate_go_tls(exe).describe(), "ok", ""
        except golocate.GoNoTls as e:
            line, verdict, fix = f"not probed: {e.reason}", "ok", ""
        except golocate.GoRefused as e:
            line, verdict, fix = f"refused: {e.reason}", "warn", "its TLS is not seen; report the binary's Go version to agtap"
        out.append(Check(verdict, "go", f"{exe_of(pid)} (pid {pid}): {line}", fix))
    if not out:
        out.append(Check("ok", "go", "no Go program running (each is looked at when it starts)"))
    elif os.geteuid() != 0:
        out.append(Check("warn", "go", "not root: other users' Go programs were not looked at", "sudo agtap doctor"))
    return out


def _open_gate() -> Check:
    """Can a starting runtime be held at its open of libssl until its probes are live (opengate.py)?"""
    import ctypes
    from agtap.capture import opengate
    if os.geteuid() != 0:
        return Check("warn", "open gate", "not root: not checked (fanotify permission events need CAP_SYS_ADMIN)",
                     "sudo agtap doctor")
    libc = ctypes.CDLL(None, use_errno=True)
    fd = libc.fanotify_init(opengate.FAN_CLOEXEC | opengate.FAN_CLASS_CONTENT, os.O_RDONLY | os.O_CLOEXEC)
    if fd < 0:
        return Check("warn", "open gate", f"fanotify permission events unavailable ({os.strerror(ctypes.get_errno())}): "
                     "with --probe-scope process, a runtime that calls within milliseconds of its start may have its "
                     "first call unseen (late_attach counts it)",
                     "a kernel built with CONFIG_FANOTIFY_ACCESS_PERMISSIONS=y, or: sudo agtap --probe-scope host")
    os.close(fd)
    return Check("ok", "open gate", "fanotify permission events available: a starting runtime is held at its open of "
                 "a probed file until its probes are live (--hold-ms)")


def _root() -> Check:
    if os.geteuid() == 0:
        return Check("ok", "privileges", "root")
    return Check("warn", "privileges", "not root: capture needs root", "sudo agtap")


def run_checks(runtime_dir: str, cache_dir: str) -> list[Check]:
    found = _found()
    return [_kernel(), _btf(), _tracefs(), *_events(), _headers(runtime_dir), _bcc(), _http2(), _botocore(),
            *_libssl(found), *_held_points(_probed_files(found)), *_node(), *_boringssl(cache_dir), *_go(), _open_gate(), _root()]


def main(runtime_dir: str, cache_dir: str) -> int:
    checks = run_checks(runtime_dir, cache_dir)
    for c in checks:
        print(c.line())
    return 1 if any(c.verdict == "FAIL" for c in checks) else 0
