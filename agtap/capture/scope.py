"""Where the TLS data probes sit: host-wide (--probe-scope=host), or per watched process.

Host scope (the old behaviour): every probed file gets its data probes for every process;
every process that maps it takes the trap on every SSL call.

Process scope (the default): each probed file gets only the sentinel host-wide (an
entry-only probe on SSL_set_connect_state: once per client connection, never per byte),
and the data probes are attached per process, for the processes watchpolicy.py
chooses. A process's probes go when it exits, or when a filter change leaves it out.
The attaching happens on a thread of its own (one attach is ~10-30 ms), so the poll
thread keeps draining the ring buffer.

Limits: every probe is one perf event fd; ProbeTable holds at most `max_uprobes`. When a
process's probes would pass it, the file in question falls back to host-wide probes (its
per-process ones are closed, one set serves every process), counted in `probe_fallbacks`
and logged. The per-process state in the kernel (watch_state) holds 65,536 processes.
"""

from __future__ import annotations

import errno
import itertools
import logging
import os
import queue
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

from agtap.capture import probepoints
from agtap.capture.elfsyms import is_shared_library
from agtap.capture.gobuildinfo import is_go_binary
from agtap.capture.demotion import CHECK_S, DemotePolicy, Demoting
from agtap.capture.opengate import GateUnavailable, OpenGate
from agtap.capture.probetable import HOST, PointRefused, Probe, ProbeLimit, ProbeTable
from agtap.capture.procfiles import Key, key_of, overlay_layers, path_keys
from agtap.capture.records import W_LIVE, W_PENDING
from agtap.capture.procfiles import parse_maps_line
from agtap.capture.targets import LIBSSL_NAME, Target, all_pids
from agtap.capture.watchpolicy import WatchPolicy, is_process

SCOPES = ("process", "host")
SWEEP_S = 5.0       # how often the attach thread checks that watched processes still exist
START_WAIT_S = 30.0  # start() waits at most this long for the running processes to be watched


def data_probes(path: str, symbols: dict[str, int]) -> tuple[list[Probe], list[probepoints.ProbePoint]]:
    """The probes that copy a file's TLS plaintext: entry and return of each probe point, SSL_free."""
    points = probepoints.plan(path, symbols)
    probes = [p for pt in points for p in (Probe(pt.addr, pt.enter), Probe(pt.addr, pt.ret, True))]
    if "SSL_free" in symbols:
        probes.append(Probe(symbols["SSL_free"], "probe_ssl_free"))
    return probes, points


def _end(symbols: dict[str, int]) -> str:
    """Where the connection end is probed: OpenSSL's SSL_free, or BoringSSL's SSL destructor (boringend.py)."""
    return f"; connection end at {symbols['SSL_free']:#x}" if "SSL_free" in symbols else ""


def _ppid(pid: int, proc_root: str = "/proc") -> int:
    try:
        with open(f"{proc_root}/{pid}/stat") as f:
            return int(f.read().rsplit(")", 1)[1].split()[1])
    except (OSError, IndexError, ValueError):
        return 0


def mapped_keys(pid: int, proc_root: str = "/proc") -> set[Key]:
    """(dev, inode) of every file the process maps."""
    try:
        with open(f"{proc_root}/{pid}/maps") as f:
            return {m.key for m in map(parse_maps_line, f) if m}
    except OSError:
        return set()


class HostScope:
    """Every probe host-wide: what agtap did before per-process probes."""
    name = "host"
    demoted = 0   # demotion is a per-process scope's (demotion.py)

    def __init__(self, table: ProbeTable, log: logging.Logger):
        self.table = table
        self.log = log
        self.fallbacks = 0

    def add_file(self, path: str, target: Target, probes: list[Probe] | None = None, what: str = "") -> None:
        if probes is None:
            probes, points = data_probes(path, target.symbols)
            what = "; ".join(pt.describe() for pt in points) + _end(target.symbols)
        self.table.attach(path, probes, HOST)
        self.log.info("probing %s: %s", path, what)

    def watched(self) -> int:
        return 0

    def on_exec(self, pid: int, ts_ns: int = 0) -> None: ...
    def on_fork(self, child: int, ts_ns: int = 0) -> None: ...
    def on_client(self, pid: int, ts_ns: int = 0) -> None: ...
    def on_exit(self, pid: int) -> None: ...
    def on_server(self, pid: int) -> None: ...
    def on_scan(self, pid: int) -> None: ...
    def set_filter(self, pids: list[int], comms: list[str]) -> None: ...
    def start(self) -> None: ...

    def close(self) -> None:
        self.table.close()


class Jobs:
    """The attach thread's queue. What the kernel reports (exec, fork, a client's first
    connection, exit) and the files it needs come first, in order: a watch at exec races the
    process's first call. Re-watching what runs already (start, a filter change, the running
    processes of a new executable) waits behind them: one such job may take seconds when the
    kernel's event_mutex is contended (another tracer detaching), and used to hold up the exec
    of a client started meanwhile until after its call."""
    LATER = frozenset({"start", "filter", "executables", "mark"})

    def __init__(self):
        self._q: queue.PriorityQueue = queue.PriorityQueue()
        self._serial = itertools.count()

    def put(self, job: tuple | None) -> None:
        # a process held at the open gate waits for its job: before everything; None (close): after everything
        rank = 2 if job is None else 1 if job[0] in self.LATER else -1 if job[0] in ("gate", "locate") else 0
        self._q.put((rank, next(self._serial), job))

    def get(self, timeout: float) -> tuple | None:
        return self._q.get(timeout=timeout)[2]


@dataclass(slots=True)
class ProbeFile:
    path: str                 # as attached (agtap's view)
    probes: list[Probe]       # its data probes
    library: bool             # a libssl (any process of its root may map it later), not an executable
    roots: set[Key]           # the root directories that hold it (found in one; others: _learn_root)
    inside: str               # its path inside those roots
    keys: set[Key]            # every (dev, inode) it is known by
    sentinel: bool            # the sentinel sits on it: its clients are found by their first connection
    host_wide: bool = False   # fell back to host-wide data probes (the limit)


@dataclass(slots=True)
class Watch:
    reason: str
    since: float = field(default_factory=time.monotonic)
    files: set[str] = field(default_factory=set)


class ProcessScope(Demoting):
    name = "process"

    def __init__(self, table: ProbeTable, bpf, log: logging.Logger, policy: WatchPolicy,
                 proc_root: str = "/proc", hold_ms: int = 0):
        self.table = table
        self._bpf = bpf
        self.log = log
        self.policy = policy
        self._proc_root = proc_root
        self._files: dict[str, ProbeFile] = {}
        self._files_lock = threading.Lock()
        self._watched: dict[int, Watch] = {}     # by the attach thread only
        self._roots_checked: dict[Key, int] = {}  # root directory -> how many files it was checked against
        self._jobs = Jobs()
        self._thread: threading.Thread | None = None
        self._detacher = ThreadPoolExecutor(max_workers=2, thread_name_prefix="agtap-detach")
        self.fallbacks = 0
        self.attach_ms: list[float] = []         # decision-to-live latency of each watch (the last 1000)
        self.demotion = DemotePolicy()           # off unless the tracer sets thresholds (demotion.py)
        self.demoted = 0                         # processes demoted since start
        self._demoted: set[int] = set()          # demoted and still running (by the attach thread only)
        self._next_check = 0.0
        self.locate = None   # the tracer's: path -> an Event set once a new executable is looked at (or None)
        self._no_tls: set[Key] = set()           # Go executables looked at on exec, found without crypto/tls
        self.gate: OpenGate | None = None        # holds a starting runtime until its probes are live
        if hold_ms > 0:
            try:
                self.gate = OpenGate(self.on_open, log, hold_ms)
            except GateUnavailable as e:
                log.warning("cannot hold starting processes until their probes are live (%s; the kernel needs "
                            "CONFIG_FANOTIFY_ACCESS_PERMISSIONS, agtap CAP_SYS_ADMIN): the first call of a "
                            "client that calls within milliseconds of its start may be unseen", e.strerror)

    # --- called from the poll thread (and the BoringSSL worker): queued ---
    def add_file(self, path: str, target: Target, probes: list[Probe] | None = None, what: str = "") -> None:
        """A file whose data probes go on watched processes. `probes`/`what`: a probe family with
        its own probe points (Go: entry and every RET) gives them; default: OpenSSL's (plan())."""
        if probes is None:
            probes, points = data_probes(path, target.symbols)
            what = "; ".join(pt.describe() for pt in points) + _end(target.symbols)
        sentinel = probepoints.sentinel_point(path, target.symbols)
        root = key_of(f"{self._proc_root}/{target.pid}/root/" if target.pid else "/")
        layers = overlay_layers(target.pid, self._proc_root) if target.pid else []   # the layer file's key too
        library = bool(LIBSSL_NAME.search(target.path)) or is_shared_library(path)
        f = ProbeFile(path, probes, library, {root} if root else set(), target.path,
                      path_keys(path, layers, target.path), sentinel is not None)
        try:
            # now: `path` may lead through /proc/PID/ (a container's file), gone with that process
            self.table.prepare(path, probes)
        except (ProbeLimit, PointRefused) as e:
            if not self._host_wide(f, str(e)):
                raise RuntimeError(f"neither per-process nor host-wide probes: {e}") from None
        server = probepoints.sentinel_point(path, target.symbols, probepoints.SERVER_SENTINEL)
        for point, fn in ((sentinel, "probe_ssl_client_start"), (server, "probe_ssl_server_start")):
            if point is not None:
                addr, emulated = point
                self.table.attach(path, [Probe(addr, fn)], HOST)
                if not emulated:
                    self.log.info("%s of %s at %#x is single-stepped (one more trap per connection)", fn, path, addr)
        with self._files_lock:
            self._files[path] = f
        if self.gate is not None:   # a library: held at its open (ld.so, dlopen); an executable: at its exec
            self.gate.mark(path, at_exec=not f.library)
        self.log.info("probing %s per process: %s%s", path, what,
                      "; sentinel at SSL_set_connect_state" if sentinel else "; its processes watched by executable")
        self._jobs.put(("file", path))

    def on_exec(self, pid: int, ts_ns: int = 0) -> None:
        self._jobs.put(("exec", pid, ts_ns))

    # --- called from the open gate's thread (opengate.py): decided at once, attached on the attach thread ---
    def on_open(self, pid: int, key: Key, path: str, at_exec: bool, done, opened: str = "") -> bool:
        """`pid` waits in open() of a probed file (`at_exec`: it is exec'ing it, still in its old
        image). done() at once if it is not to be watched (or is, with that file's probes); else
        once the attach thread has watched it. True: an exec of a file of no interest (its later
        execs need not be held). `opened`: a path that reads the file (the gate's fd), else `path`."""
        opened = opened or path
        reason = self._open_reason(pid, key, path, at_exec, opened)
        if reason == "locate":   # a Go program not seen before: looked at, then watched, before it runs
            self._jobs.put(("locate", pid, key, path, done))
            return False
        if not reason:
            done()
            return at_exec and self._of_no_interest(key)
        self._jobs.put(("gate", pid, key if at_exec else None, reason, done))
        return False

    def _file_by_key(self, key: Key) -> ProbeFile | None:
        with self._files_lock:
            return next((f for f in self._files.values() if key in f.keys), None)

    def _of_no_interest(self, key: Key) -> bool:
        """An executable _open_reason found no reason to hold at its exec (no runtime, no Go program
        to look at) whose execs need never be held again: not a probed file (their execs are
        judged each time), and never while a filter is set (a later one may name it)."""
        if self.policy.filtered:
            return False
        return self._file_by_key(key) is None

    def _open_reason(self, pid: int, key: Key, path: str, at_exec: bool, opened: str) -> str:
        f = self._file_by_key(key)
        w = self._watched.get(pid)
        if w is not None and (f is not None or not at_exec):
            return "" if f is None or f.host_wide or f.path in w.files else w.reason
        if f is not None and f.host_wide:
            return ""   # probed host-wide: nothing to wait for
        if at_exec:   # judged by what it is about to run (watched or not: a file not seen before)
            if self.policy.filtered:
                return "filter" if self.policy.named_at_exec(pid, path) else ""
            if f is not None and not f.sentinel:
                return "executable"
            if self.policy.is_runtime_file(path, opened):
                return "runtime"
            if f is None and self.locate is not None and key not in self._no_tls and is_go_binary(opened):
                return "locate"
            return ""
        return "" if pid in self._demoted else self._running_reason(pid)

    def on_fork(self, child: int, ts_ns: int = 0) -> None:
        self._jobs.put(("fork", child, ts_ns))

    def on_client(self, pid: int, ts_ns: int = 0) -> None:
        self._jobs.put(("client", pid, ts_ns))

    def on_exit(self, pid: int) -> None:
        self._jobs.put(("exit", pid))

    def on_server(self, pid: int) -> None:
        self._jobs.put(("server", pid))

    def on_scan(self, pid: int) -> None:
        """A process's mapped files were looked at again (rescans after exec)."""
        self._jobs.put(("scan", pid))

    def set_filter(self, pids: list[int], comms: list[str]) -> None:
        self._jobs.put(("filter", list(pids), list(comms)))

    def watched(self) -> int:
        return len(self._watched)

    def start(self) -> None:
        """Watch what is running already, before returning: once capture says it has started, a
        running agent's next call is seen (its first after the start raced the attach thread,
        unseen, when the service said READY=1 at once). Then follow exec, fork, the sentinel, exit."""
        self._thread = threading.Thread(target=self._run, name="agtap-attach", daemon=True)
        self._thread.start()
        self._jobs.put(("start",))
        t0 = time.monotonic()
        if not self.wait_idle(START_WAIT_S):
            self.log.warning("watching the running processes took over %.0f s: capture starts before "
                             "all of them are probed", START_WAIT_S)
        self.log.info("watching %d running processes (%.0f ms)", len(self._watched), (time.monotonic() - t0) * 1000)
        if self.gate is not None and self.locate is not None:
            n = self.gate.mark_filesystems()
            self.log.info("holding the execs on %d filesystems: a program not seen before is looked at before it "
                          "runs", n)

    def close(self) -> None:
        if self.gate is not None:
            self.gate.close()   # nothing waits for the attach thread any more
            self.gate = None
        if self._thread is not None:
            self._jobs.put(None)
            self._thread.join()
            self._thread = None
        self._detacher.shutdown(wait=True)
        self.table.close()

    def wait_idle(self, timeout: float = 10.0) -> bool:
        """Until every queued job is done (tests, and the first status after start)."""
        done = threading.Event()
        self._jobs.put(("mark", done))
        return done.wait(timeout)

    # --- the attach thread ---
    def _run(self) -> None:
        while True:
            try:
                job = self._jobs.get(timeout=CHECK_S if self.demotion.enabled else SWEEP_S)
            except queue.Empty:
                self._sweep()
                self._check_demotion()
                continue
            if job is None:
                return
            try:
                getattr(self, "_do_" + job[0])(*job[1:])
            except Exception:   # one odd process must not end the attaching for the others
                self.log.exception("per-process probes: %s failed", job[0])
            self._check_demotion()   # also while jobs keep coming

    def _do_mark(self, done: threading.Event) -> None:
        done.set()

    def _do_start(self) -> None:
        self._rewatch(initial=True)

    def _do_filter(self, pids: list[int], comms: list[str]) -> None:
        self.policy.set_filter(pids, comms)
        self._rewatch(initial=False)

    def _rewatch(self, initial: bool) -> None:
        """Watch what the policy chooses among running processes; with a filter, stop watching
        everything it does not name."""
        if not initial:
            for pid in list(self._watched):
                if not self.policy.allowed(pid):
                    self._unwatch(pid, "filter")
        for pid in all_pids(self._proc_root):
            if pid == os.getpid() or pid in self._watched:
                continue
            if pid in self._demoted and not self.policy.filtered:
                continue   # demoted: back only when a filter names it, or at its next exec
            reason = self.policy.at_start(pid, self._by_exe(pid))
            if reason:
                self._watch(pid, reason)

    def _do_gate(self, pid: int, exe: Key | None, reason: str, done) -> None:
        """A process held at the open gate: watch it (`exe`: the executable it is exec'ing), then let it go."""
        try:
            if exe is not None and pid in self._demoted:   # a new image, judged anew
                self._demoted.discard(pid)
                self.demotion.forget(pid)
            if pid in self._watched:
                self._attach_files(pid, exe)
            else:
                self._watch(pid, reason, exe=exe)
        finally:
            done()

    def _do_locate(self, pid: int, key: Key, path: str, done) -> None:
        """A Go program exec'd for the first time, held at the gate: have it looked at (the
        tracer's locate worker), then watch the process like any by-executable one."""
        try:
            ev = self.locate(path)
            if ev is False:
                return   # not looked at (capture starting or stopping): found at its exec as before
            if ev is not None and not ev.wait(self.gate.hold_s if self.gate else 1.0):
                return   # still being looked at: let go (its first calls are counted, go_unprobed_*)
            if self._file_by_key(key) is None:
                self._no_tls.add(key)
                return
            if pid in self._watched:
                self._attach_files(pid, key)
            elif os.path.exists(f"{self._proc_root}/{pid}"):
                self._watch(pid, "executable", exe=key)
        finally:
            done()

    def _do_exec(self, pid: int, ts_ns: int) -> None:
        if pid in self._demoted:   # a new image, judged anew (the kernel's exec hook cleared W_DEMOTED)
            self._demoted.discard(pid)
            self.demotion.forget(pid)
        if pid in self._watched:
            self._attach_files(pid)   # a new image: its executable may be a probed file
            return
        reason = self._running_reason(pid)
        if reason:
            self._watch(pid, reason, ts_ns)

    def _running_reason(self, pid: int) -> str:
        """Why a process in its current image is watched ("" = not): the filter names it, a runtime,
        an executable probed by executable. Its exec (here) and its open of a probed file (the gate)."""
        if not self.policy.allowed(pid):
            return ""
        if self.policy.filtered:
            return "filter"
        return "runtime" if self.policy.is_runtime(pid) else "executable" if self._by_exe(pid) else ""

    def _do_fork(self, child: int, ts_ns: int) -> None:
        if self._demoted and _ppid(child, self._proc_root) in self._demoted and not self.policy.filtered:
            return   # the child of a demoted process runs the same program: left to its exec and the sentinel
        if child not in self._watched and is_process(child, self._proc_root) and self.policy.allowed(child):
            self._watch(child, "child", ts_ns)

    def _do_client(self, pid: int, ts_ns: int) -> None:
        if pid in self._demoted:
            return   # named before its demotion reached the kernel
        if pid in self._watched:
            self._attach_files(pid)   # a library it mapped since its exec, that its root did not show then
            self._set_state(pid, W_LIVE)
        else:
            self._watch(pid, "client", ts_ns)

    def _do_server(self, pid: int) -> None:
        """A TLS server (and never a client) watched for what it runs: not watched any more."""
        w = self._watched.get(pid)
        if w is not None and w.reason != "client" and not self.policy.filtered:
            self._unwatch(pid, "a TLS server")

    def _do_exit(self, pid: int) -> None:
        self._demoted.discard(pid)
        self.demotion.forget(pid)
        if pid in self._watched:
            self._unwatch(pid, "exit", kernel_state=False)

    def _do_scan(self, pid: int) -> None:
        if pid in self._watched:
            self._attach_files(pid)

    def _do_file(self, path: str) -> None:
        with self._files_lock:
            f = self._files.get(path)
        if f is None:
            return
        for pid in list(self._watched):
            self._attach_files(pid)
        if not f.sentinel:
            self._jobs.put(("executables", path))

    def _do_executables(self, path: str) -> None:
        """Watch the running processes of a file probed by executable (BoringSSL, Go)."""
        with self._files_lock:
            f = self._files.get(path)
        if f is None:
            return
        for pid in all_pids(self._proc_root):
            if pid not in self._watched and pid not in self._demoted and pid != os.getpid() \
                    and self.policy.allowed(pid) and self._exe_key(pid) in f.keys:
                self._watch(pid, "executable")

    def _sweep(self) -> None:
        for pid in list(self._watched):
            if not os.path.exists(f"{self._proc_root}/{pid}"):
                self._unwatch(pid, "gone", kernel_state=False)
        for pid in list(self._demoted):
            if not os.path.exists(f"{self._proc_root}/{pid}"):
                self._demoted.discard(pid)
                self.demotion.forget(pid)

    # --- watching ---
    def _exe_key(self, pid: int) -> Key | None:
        return key_of(f"{self._proc_root}/{pid}/exe")

    def _by_exe(self, pid: int) -> bool:
        """Its executable is a probed file without the sentinel (BoringSSL, Go)."""
        k = self._exe_key(pid)
        with self._files_lock:
            return k is not None and any(not f.sentinel and k in f.keys for f in self._files.values())

    def _files_for(self, pid: int, exe: Key | None = None) -> list[ProbeFile]:
        """The probed files this process maps, or may map: the libssl files of its root
        directory (before it maps one: a runtime at exec), its executable, what it maps;
        `exe`: the executable it is exec'ing (held at the open gate, still in its old image)."""
        root = key_of(f"{self._proc_root}/{pid}/root/")
        keys = mapped_keys(pid, self._proc_root)
        for k in (self._exe_key(pid), exe):
            if k is not None:
                keys.add(k)
        with self._files_lock:
            files = list(self._files.values())
        if root is not None and self._roots_checked.get(root) != len(files):
            self._learn_root(pid, root, files)
        return [f for f in files if (f.library and root in f.roots) or f.keys & keys]

    def _learn_root(self, pid: int, root: Key, files: list[ProbeFile]) -> None:
        """Which probed libraries a root directory not seen before holds (once per root, again when
        files were added): a container of an image whose libssl was found through another container
        has a root of its own, and at exec its runtime has mapped nothing yet. Matched by the
        file's keys (on overlayfs: the layer file's, shared by every container of the image)."""
        if len(self._roots_checked) > 4096:
            self._roots_checked.clear()
        self._roots_checked[root] = len(files)
        layers = overlay_layers(pid, self._proc_root)
        for f in files:
            if f.library and root not in f.roots and f.inside.startswith("/") and \
                    path_keys(f"{self._proc_root}/{pid}/root{f.inside}", layers, f.inside) & f.keys:
                f.roots.add(root)

    def _set_state(self, pid: int, state: int) -> None:
        import ctypes
        try:
            self._bpf["watch_state"][ctypes.c_uint32(pid)] = ctypes.c_uint8(state)
        except Exception:
            pass   # the map is full: the sentinel keeps naming this process; nothing else depends on it

    def _watch(self, pid: int, reason: str, ts_ns: int = 0, exe: Key | None = None) -> None:
        t0 = time.monotonic()
        self._watched[pid] = Watch(reason)
        self._demoted.discard(pid)
        if self.demotion.enabled:
            self._zero_cost(pid)
        if reason == "child":
            self._set_state(pid, W_LIVE)      # its parent's probes were inherited at the fork (perfevent.py)
        elif reason != "client":
            self._set_state(pid, W_PENDING)   # the sentinel has set it (or W_LATE since) for a client
        n = self._attach_files(pid, exe)
        if not os.path.exists(f"{self._proc_root}/{pid}"):
            self._unwatch(pid, f"gone {(time.monotonic_ns() - ts_ns) / 1e6:.1f} ms after the event", kernel_state=True)
            return
        self._set_state(pid, W_LIVE)
        ms = (time.monotonic() - t0) * 1000
        since = (time.monotonic_ns() - ts_ns) / 1e6 if ts_ns else ms   # from the kernel's event: exec, fork, sentinel
        self.attach_ms = self.attach_ms[-999:] + [since]
        self.log.info("watching pid %d (%s): %d probes in %.1f ms, live %.1f ms after the event", pid, reason, n, ms,
                      since)

    def _attach_files(self, pid: int, exe: Key | None = None) -> int:
        w = self._watched[pid]
        n = 0
        for f in self._files_for(pid, exe):
            if f.path in w.files or f.host_wide:
                continue
            try:
                n += self.table.attach(f.path, f.probes, pid)
            except (ProbeLimit, PointRefused) as e:
                self._fall_back(f, str(e))
                continue
            except OSError as e:
                if e.errno != errno.ESRCH and os.path.exists(f"{self._proc_root}/{pid}"):   # ESRCH: exiting
                    self.log.warning("pid %d: %s", pid, e)
                continue
            w.files.add(f.path)
        return n

    def _fall_back(self, f: ProbeFile, why: str) -> None:
        """Too many probes: this file's data probes go host-wide, its per-process ones are closed."""
        taken = [e for pid in list(self._watched) for e in self.table.take(path=f.path, pid=pid)]
        self._host_wide(f, why)
        for w in self._watched.values():
            w.files.discard(f.path)
        self.table.detach_many(taken)

    def _host_wide(self, f: ProbeFile, why: str) -> bool:
        """The file's data probes host-wide (counted in `fallbacks`); False if that failed too."""
        self.fallbacks += 1
        try:
            self.table.attach(f.path, f.probes, HOST)
        except Exception as e:   # ProbeLimit, OSError, or BCC's plain Exception (a path gone meanwhile)
            self.log.error("%s: cannot fall back to host-wide probes either (%s): its calls are not seen", f.path, e)
            return False
        f.host_wide = True
        self.log.warning("%s: %s; its data probes are host-wide from now on (every process mapping it "
                         "pays the probes)", f.path, why)
        return True

    def _unwatch(self, pid: int, why: str, kernel_state: bool = True) -> None:
        self._watched.pop(pid, None)
        if self.demotion.enabled:
            try:
                import ctypes
                del self._bpf["watch_cost"][ctypes.c_uint32(pid)]
            except Exception:
                pass   # not there
        if kernel_state:
            try:
                import ctypes
                del self._bpf["watch_state"][ctypes.c_uint32(pid)]
            except (KeyError, Exception):
                pass   # not there (exited: the exit hook deleted it)
        taken = self.table.take(pid=pid)
        if taken:
            self._detacher.submit(self.table.detach_many, taken)   # each close waits for a grace period: off this thread
        self.log.info("not watching pid %d any more (%s): %d probes detached", pid, why, len(taken))
