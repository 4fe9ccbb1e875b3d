"""The Tracer: BPF programs loaded, probes attached, records turned into Chunks.

See agtap/capture/__init__.py for the API. One Tracer may be started and
stopped many times (D-Bus Start/Stop): stop() detaches every probe and frees
the maps; start() compiles and attaches again.
"""

from __future__ import annotations

import ctypes
import heapq
import logging
import os
import sys
import threading
import time
from typing import Callable

from agtap.capture import headers, loader, verifier
from agtap.capture.chunk import CaptureStats
from agtap.capture.connid import ConnId
from agtap.capture.conns import ConnMapper
from agtap.capture.demotion import DemotePolicy
from agtap.capture.probetable import Probe, ProbeTable
from agtap.capture.records import (COUNTER_NAMES, COUNTER_SLOTS, K_CLIENT, K_EXEC, K_EXIT, K_FORK, K_SERVER, S_H2,
                                   S_IGNORE, decode, layout_problems)
from agtap.capture.scope import HostScope, ProcessScope
from agtap.capture.targets import Target, TargetSet
from agtap.capture.watchpolicy import WatchPolicy
from agtap.config import Config

# when to look again at a new process's mapped libraries (seconds after exec)
RESCAN_DELAYS = (0.05, 0.5, 3.0)


class CaptureError(Exception):
    """Capture cannot start: `message` says what is missing, `fix` the command that fixes it."""

    def __init__(self, message: str, fix: str = ""):
        super().__init__(message + (f"\n  fix: {fix}" if fix else ""))
        self.message = message
        self.fix = fix

    exit_status = 1   # agtap serve's exit status when capture cannot start


class BpfRefused(CaptureError):
    """BCC could not compile the programs or the verifier refused one: the same at every
    start, so the service exits with a status systemd does not restart on."""
    exit_status = verifier.EXIT_BPF_REFUSED


def _raise_fd_limit(want: int) -> None:
    """Every uprobe is a perf event fd: let this process hold `want` more than it has."""
    import resource
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    need = want + 1024
    if soft != resource.RLIM_INFINITY and soft < need:
        resource.setrlimit(resource.RLIMIT_NOFILE, (need if hard == resource.RLIM_INFINITY else min(need, hard), hard))


def _detach_all(b) -> None:
    """Detach every tracepoint at once (the uprobes: ProbeTable.close, the same way). Each
    detach waits for an RCU grace period in the kernel (~100 ms on a busy 2-core machine);
    BCC does them one by one. The waits overlap when the detaches run concurrently (BCC's
    ctypes calls release the GIL), which keeps SIGTERM-to-exit under 2 s."""
    from concurrent.futures import ThreadPoolExecutor
    jobs = [(b.detach_uprobe_event, k) for k in list(b.uprobe_fds)]
    jobs += [(b.detach_tracepoint, k) for k in list(b.tracepoint_fds)]

    def run(job):
        try:
            job[0](job[1])
        except Exception:
            pass   # cleanup() below retries whatever is left

    with ThreadPoolExecutor(max_workers=max(1, len(jobs))) as ex:
        list(ex.map(run, jobs))


class Tracer:
    def __init__(self, config: Config, on_item: Callable, log: logging.Logger | None = None):
        self.config = config
        self.on_item = on_item
        self.log = log or logging.getLogger("agtap.capture")
        self._bpf = None
        self._lock = threading.RLock()
        self._mapper: ConnMapper | None = None
        self._targets: TargetSet | None = None
        self._scope: HostScope | ProcessScope | None = None
        self._rescans: list[tuple[float, int]] = []   # (due monotonic s, pid)
        self._pids = list(config.pids)
        self._comms = list(config.comms)
        self.header_tree: headers.HeaderTree | None = None
        self.started_at: float | None = None
        self.released_bytes = 0   # RSS given back after the last compile (loader.release_compiler_memory)

    # --- lifecycle ---
    @property
    def capturing(self) -> bool:
        return self._bpf is not None

    @property
    def targets(self) -> list[str]:
        return list(self._targets.attached) if self._targets else []

    @property
    def boringssl(self) -> dict:
        """Every executable with BoringSSL seen since start -> its boringcache.Verdict."""
        return dict(self._targets.boringssl) if self._targets else {}

    def start(self) -> None:
        with self._lock:
            if self._bpf is not None:
                return
            if os.geteuid() != 0:
                raise CaptureError("loading BPF programs needs root", "sudo agtap")
            try:
                headers.ensure_tracefs()
                self.header_tree = headers.find_header_tree(self.config.runtime_dir)
            except headers.HeadersNotFound as e:
                raise CaptureError(str(e), headers.HEADERS_PACKAGE_HINT) from None
            self.log.info("kernel headers: %s (%s)", self.header_tree.path, self.header_tree.source)
            try:
                from bcc import BPF  # noqa: F401  (Debian's python3-bpfcc)
            except ImportError:
                raise CaptureError("BCC's Python module is missing", "sudo apt-get install python3-bpfcc") from None
            b = self._compile_and_load()
            problems = layout_problems(b["scratch"].sLeaf)    # per-CPU: sLeaf is one CPU's value
            if problems:
                b.cleanup()
                raise CaptureError("bpf/common.h and agtap/capture/records.py disagree on the record layout: "
                                   + "; ".join(problems), "reinstall agtap (its BPF sources do not match its Python)")
            from bcc import BPF
            for fn_name, arr, idx, ptype in (("cont_kprobe", "cont_kprobe_progs", 0, BPF.KPROBE),
                                             ("cont_h2_kprobe", "cont_kprobe_progs", 1, BPF.KPROBE),
                                             ("cont_tracepoint", "cont_tp_progs", 0, BPF.TRACEPOINT),
                                             ("cont_h2_tracepoint", "cont_tp_progs", 1, BPF.TRACEPOINT)):
                fn = b.load_func(fn_name, ptype)
                b[arr][ctypes.c_int(idx)] = ctypes.c_int(fn.fd)
            self._bpf = b
            self._mapper = ConnMapper(self._set_state)
            self._apply_filter()
            _raise_fd_limit(self.config.max_uprobes)
            table = ProbeTable(b, self.config.max_uprobes)
            if self.config.probe_scope == "host":
                self._scope = HostScope(table, self.log)
            else:
                policy = WatchPolicy(self.config.agent_runtimes)
                policy.set_filter(self._pids, self._comms)
                self._scope = ProcessScope(table, b, self.log, policy, hold_ms=self.config.hold_ms)
                self._scope.demotion = DemotePolicy(self.config.demote_after_requests, self.config.demote_after_mib)
            self._targets = TargetSet(self._attach_file, self.log, cache_dir=self.config.cache_dir,
                                      attach_go=self._attach_go)
            if isinstance(self._scope, ProcessScope):
                self._scope.locate = self._examine
            self._targets.scan_host()
            self._scope.start()
            b["records"].open_ring_buffer(self._on_record)
            self.released_bytes = loader.release_compiler_memory()
            self.log.debug("released %d MB the BPF compile left resident", self.released_bytes >> 20)
            self.started_at = time.time()
            self.log.info("capturing: %d targets, syscall tracepoints attached, probes %s", len(self._targets.attached),
                          "host-wide" if self._scope.name == "host" else "per process")

    def _compile_and_load(self):
        """Compile, then load every program; the compiler's and verifier's output (fd 2) is
        kept out of the journal: on failure it becomes one line and a file (verifier.py)."""
        error, b = None, None
        with verifier.stderr_to_file() as out:
            try:
                b = loader.compile_program(self.config.max_capture_bytes, self.header_tree.path)
                loader.load_every_program(b)
            except Exception as e:
                error = e
                if b is not None:
                    b.cleanup()   # the tracepoints BCC attached while compiling
        if error is None:
            if out.text.strip():
                sys.stderr.write(out.text)   # warnings: passed on as they were
            return b
        text = str(error)
        if "Failed to load BPF program" in text or "Failed to compile BPF" in text:
            where = verifier.save_log(out.text, os.path.dirname(self.config.event_log) or ".")
            raise BpfRefused(verifier.refusal_line(text, out.text, verifier.toolchain(), where)) from None
        if out.text.strip():
            sys.stderr.write(out.text)
        raise CaptureError(f"the BPF programs did not load: {error}",
                           "run 'agtap doctor' to see what this kernel lacks") from None

    def stop(self) -> None:
        with self._lock:
            if self._bpf is None:
                return
            if self._targets:
                self._targets.close()
            if self._scope:
                self._scope.close()
                self._scope = None
            _detach_all(self._bpf)
            self._deliver(self._mapper.flush_all())   # client chunks still waiting for their server
            self._bpf.cleanup()
            self._bpf = None
            self._rescans.clear()
            self.log.info("capture stopped: every probe detached")

    # --- probes ---
    def _attach_file(self, path: str, target: Target) -> None:
        """Probe one file (target.symbols: name -> ELF address, elfsyms.symbol_addrs), as the
        probe scope says: host-wide, or per watched process (scope.py). Called from the poll
        thread and from the BoringSSL worker (targets.py)."""
        with self._lock:
            if self._bpf is None or self._scope is None:
                raise RuntimeError("capture stopped")
            self._scope.add_file(path, target)

    def _examine(self, path: str):
        """For the attach thread (a new executable held at its exec): TargetSet.examine under the
        tracer's lock (the poll thread's order: this lock, then the target set); False if the lock
        is not had within a second (capture starting or stopping): not looked at."""
        if not self._lock.acquire(timeout=1.0):
            return False
        try:
            return self._targets.examine(path) if self._targets is not None else None
        finally:
            self._lock.release()

    def _attach_go(self, path: str, probes: list) -> None:
        """Probe one Go executable's crypto/tls (goprobes.plan: each function's stack check, and
        every RET of Read; never a uretprobe on Go code, bpf/gotls.c says why), entry probes
        only, all or nothing, as the probe scope says: per process, its processes are watched
        by executable (Go has no sentinel). Called from the locate worker (targets.py)."""
        with self._lock:
            if self._bpf is None or self._scope is None:
                raise RuntimeError("capture stopped")
            self._scope.add_file(path, Target(path), probes=[Probe(p.addr, p.program) for p in probes],
                                 what=f"{len(probes)} uprobes ({', '.join(sorted({p.what.split()[0] for p in probes}))})")

    # --- the poll thread ---
    def poll(self, timeout_ms: int = 100) -> None:
        """Drain the ring buffer once (blocks up to timeout_ms). Run it in a thread of its own."""
        with self._lock:
            if self._bpf is None:
                time.sleep(timeout_ms / 1000)
                return
            self._bpf.ring_buffer_poll(timeout_ms)
            self._deliver(self._mapper.flush_due(time.monotonic_ns()))
            self._run_rescans()

    def _on_record(self, ctx, data, size) -> None:
        try:
            rec = decode(ctypes.string_at(data, size))
            if rec.kind == K_CLIENT:
                self._scope.on_client(rec.pid, rec.ts_ns)
                return
            if rec.kind == K_FORK:
                self._scope.on_fork(rec.conn_id, rec.ts_ns)
                return
            if rec.kind == K_SERVER:
                self._scope.on_server(rec.pid)
                return
            if rec.kind == K_EXEC:
                self._on_exec(rec.pid, rec.ts_ns)
            elif rec.kind == K_EXIT:
                self._scope.on_exit(rec.pid)
            self._deliver(self._mapper.map(rec))
        except Exception:   # a bad record must not stop the capture
            self.log.exception("record dropped")

    def _deliver(self, items: list) -> None:
        for item in items:
            self.on_item(item)

    def _on_exec(self, pid: int, ts_ns: int = 0) -> None:
        now = time.monotonic()
        for d in RESCAN_DELAYS:
            heapq.heappush(self._rescans, (now + d, pid))
        if self._targets:
            self._targets.scan_process(pid)
        self._scope.on_exec(pid, ts_ns)

    def _run_rescans(self) -> None:
        now = time.monotonic()
        while self._rescans and self._rescans[0][0] <= now:
            _, pid = heapq.heappop(self._rescans)
            if self._targets and os.path.exists(f"/proc/{pid}"):
                self._targets.scan_process(pid)
                self._scope.on_scan(pid)

    # --- maps ---
    def _set_state(self, pid: int, is_tls: int, ident: int, state: int) -> None:
        if self._bpf is None:
            return
        try:
            conns = self._bpf["conns"]      # key and value types: BCC's, from struct conn_key_t/conn_val_t
            conns[conns.Key(pid, int(is_tls), ident)] = conns.Leaf(state, 0)
        except Exception:
            pass   # map full: counted in the kernel

    def ignore_conn(self, conn: ConnId) -> None:
        """Stop copying the connection until its next request line, unless it is HTTP/2 by now.

        An HTTP/1.1 driver asks this when an exchange is of no interest, also for
        the `101 Switching Protocols` that answers `Upgrade: h2c`; by the time it
        has parsed that, the client may have written its HTTP/2 preface, and the
        kernel marked the connection S_H2: it stays so (many streams share it,
        an LLM call may be the next one). The check and the update are two map
        operations, so a preface written between them is still lost: the HTTP/1.1
        driver does not ask for a 101 that switches to h2c (drivers/httpconn.py);
        this check covers the answers it has not parsed yet when the preface goes out.
        A connection joined late (S_H2_LATE: no preface, its writes looked like frames)
        may be ignored: userspace asks when its bytes turn out not to be frames."""
        key = conn.kernel_key()
        state = self._state(*key) if key is not None else None
        if key is None or state == S_H2:
            return
        if key[1] and state != S_IGNORE and isinstance(self._scope, ProcessScope):
            self._scope.demotion.note_ignored(conn.pid)   # a TLS request the kernel copied, of no interest
        self._set_state(*key, S_IGNORE)

    def note_call(self, pid: int) -> None:
        """An LLM or MCP call of this process was seen: it is never demoted (demotion.py)."""
        if isinstance(self._scope, ProcessScope):
            self._scope.demotion.note_call(pid)

    def ignore_stream(self, conn: ConnId, stream_id: int) -> None:
        """No interest in one stream of an HTTP/2 connection: the kernel stops copying the payload
        of its DATA frames (their headers still come, with length 0: bpf/h2.h). A connection the
        kernel does not walk (no K_H2_START seen: `Upgrade: h2c`, or its walk given up) is left as is."""
        key = conn.kernel_key()
        gen = self._mapper.h2_gen(key) if key is not None and self._mapper is not None else None
        if gen is None or self._bpf is None:
            return
        try:
            drop = self._bpf["h2_drop"]
            drop[drop.Key(gen, stream_id, 0)] = ctypes.c_uint8(1)
        except Exception:
            pass   # an LRU map makes room; anything else: the stream's DATA is copied (costs, loses nothing)

    def _state(self, pid: int, is_tls: bool, ident: int) -> int | None:
        if self._bpf is None:
            return None
        conns = self._bpf["conns"]
        try:
            return conns[conns.Key(pid, int(is_tls), ident)].state
        except KeyError:
            return None

    def set_filter(self, pids: list[int], comms: list[str]) -> None:
        self._pids = [int(p) for p in pids]
        self._comms = [str(c)[:15] for c in comms]
        with self._lock:
            self._apply_filter()
            if self._scope:
                self._scope.set_filter(self._pids, self._comms)

    def _apply_filter(self) -> None:
        b = self._bpf
        if b is None:
            return
        cfg, fp, fc, ct = b["filter_cfg"], b["filter_pids"], b["filter_comms"], b["comm_tgids"]
        fp.clear()
        fc.clear()
        ct.clear()
        for p in self._pids:
            fp[ctypes.c_uint32(p)] = ctypes.c_uint8(1)
        for c in self._comms:
            fc[fc.Key(c.encode()[:15])] = ctypes.c_uint8(1)
        # processes already running whose name matches: their renamed threads count too
        if self._comms:
            for d in os.listdir("/proc"):
                if not d.isdigit():
                    continue
                try:
                    with open(f"/proc/{d}/comm") as f:
                        if f.read().strip() in self._comms:
                            ct[ctypes.c_uint32(int(d))] = ctypes.c_uint8(1)
                except OSError:
                    pass
        cfg[ctypes.c_int(0)] = ctypes.c_uint32(1 if self._pids else 0)
        cfg[ctypes.c_int(1)] = ctypes.c_uint32(1 if self._comms else 0)
        cfg[ctypes.c_int(2)] = ctypes.c_uint32(1)   # written: the hooks select from now on (bpf/common.h)

    @property
    def filters(self) -> tuple[list[int], list[str]]:
        return list(self._pids), list(self._comms)

    def counters(self) -> dict[str, int]:
        out = dict.fromkeys(COUNTER_NAMES, 0)
        b = self._bpf
        if b is None:
            return out
        for name, slot in COUNTER_SLOTS.items():
            try:
                out[name] = sum(b["counters"][ctypes.c_int(slot)])
            except Exception:
                pass
        return out

    def stats(self) -> CaptureStats:
        c = self.counters()
        scope = self._scope
        gate = getattr(scope, "gate", None)
        return CaptureStats(chunks=c["records"], bytes=c["bytes"], lost_records=c["lost_records"],
                            lost_bytes=c["lost_bytes"], cut_records=c["cut_buffers"],
                            read_failed_bytes=c["read_failed_bytes"], conn_table_full=c["conn_table_full"],
                            skipped_bytes=c["skipped_bytes"], h2_connections=c["h2_connections"],
                            late_attach=c["late_attach"],
                            h2_dropped_bytes=c["h2_dropped_bytes"], h2_walks_lost=c["h2_walks_lost"],
                            h2_late_joins=c["h2_late_joins"],
                            dropped_reads=self._mapper.dropped_reads if self._mapper else 0, targets=self.targets,
                            boringssl_unprobed_processes=self._targets.unprobed_processes if self._targets else 0,
                            boringssl_unprobed_connections=self._targets.unprobed_connections if self._targets else 0,
                            go_unprobed_processes=self._targets.go_unprobed_processes if self._targets else 0,
                            go_unprobed_connections=self._targets.go_unprobed_connections if self._targets else 0,
                            probe_fallbacks=scope.fallbacks if scope else 0,
                            demoted=scope.demoted if scope else 0,
                            held_opens=gate.held if gate else 0, hold_timeouts=gate.hold_timeouts if gate else 0,
                            watched_processes=scope.watched() if scope else 0,
                            uprobes=len(scope.table) if scope else 0,
                            probe_scope=scope.name if scope else self.config.probe_scope)
