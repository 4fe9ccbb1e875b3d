"""The service's state and verbs, with no D-Bus and no event loop in it.

The Controller owns the tracer (made by a factory, so tests and `agtap replay`
need no BPF), the pipeline and the sinks. Items from the tracer's poll thread
are queued and handed to the owner's thread through `schedule` (the daemon
passes a `loop.call_soon_threadsafe` wrapper); everything else — feeding the
pipeline, writing sinks, notifying subscribers — runs on that one thread.

`clean()` removes captured data from disk and memory: every stored body file
under `bodies_dir`, the rotated event logs (`event_log.1` ... `.N`), the
current event log's contents (truncated in place; the JSONL sink appends with
O_APPEND, so it keeps writing at the new end), and the recent-events buffer.
Counters (stats) are kept.
"""

from __future__ import annotations

import collections
import dataclasses
import itertools
import json
import logging
import re
import threading
import time
from typing import Any, Callable, Iterable

from agtap.call import Call
from agtap.capture.chunk import CaptureStats, Chunk, ConnClosed
from agtap.capture.connid import ConnId
from agtap.config import Config
from agtap.service import storage
from agtap.service.errors import ControllerError, Failed, InvalidArgument, NotFound

__all__ = ["Controller", "validate_filter", "ControllerError", "Failed", "InvalidArgument", "NotFound"]

RECENT_MAX = 5000
# Bytes of captured chunks waiting for the pipeline. Past this (the loop cannot keep
# up with a flood) new chunks are dropped and counted as lost, and their
# connection's current call ends incomplete ("lost"): memory stays bounded. 32 MiB is
# several seconds of a 300 calls/s load (bench 4) and keeps the daemon (~95 MB idle)
# under its 200 MB budget when overloaded; at 64 MiB bench 4's overload step reached 205 MB.
INBOX_MAX_BYTES = 32 << 20
# What a queued item costs beyond its payload (the Chunk and its strings): a
# 125-byte SSE chunk takes ~300 more bytes of Python objects (measured), so the
# cap counts both and bounds memory, not just payload.
ITEM_OVERHEAD = 300
MAX_FILTER_ENTRIES = 1024
PID_MAX = 4194304                      # the kernel's PID_MAX_LIMIT
COMM_MAX_BYTES = 15                    # TASK_COMM_LEN - 1
_COMM_OK = re.compile(r"[\x20-\x7e]+")


def validate_filter(pids: Iterable[Any], comms: Iterable[Any]) -> tuple[list[int], list[str]]:
    """Checked, de-duplicated copies of a filter; InvalidArgument names the bad entry."""
    pids, comms = list(pids), list(comms)
    if len(pids) > MAX_FILTER_ENTRIES or len(comms) > MAX_FILTER_ENTRIES:
        raise InvalidArgument(f"at most {MAX_FILTER_ENTRIES} pids and {MAX_FILTER_ENTRIES} process names")
    out_pids: list[int] = []
    for p in pids:
        if isinstance(p, bool) or not isinstance(p, int) or not 0 < p <= PID_MAX:
            raise InvalidArgument(f"pid {p!r}: must be a whole number from 1 to {PID_MAX}")
        if p not in out_pids:
            out_pids.append(p)
    out_comms: list[str] = []
    for c in comms:
        if not isinstance(c, str) or not _COMM_OK.fullmatch(c) or len(c.encode()) > COMM_MAX_BYTES:
            raise InvalidArgument(
                f"process name {c!r}: must be 1 to {COMM_MAX_BYTES} printable ASCII characters "
                "(the kernel's comm, as `ps -o comm` shows it)")
        if c not in out_comms:
            out_comms.append(c)
    return out_pids, out_comms


def _default_pipeline(emit, ignore_conn):
    from agtap.pipeline import Pipeline
    return Pipeline(emit, ignore_conn=ignore_conn)


class Controller:
    def __init__(
        self,
        config: Config,
        tracer_factory: Callable[[Config, Callable[[Any], None], logging.Logger], Any],
        *,
        sinks: Iterable[Any] = (),
        pipeline_factory: Callable[..., Any] = _default_pipeline,
        schedule: Callable[[Callable[[], None]], None] | None = None,
        log: logging.Logger | None = None,
        recent_max: int = RECENT_MAX,
        poll_timeout_ms: int = 100,
    ):
        self.config = config
        self.log = log or logging.getLogger("agtap.service")
        self._tracer_factory = tracer_factory
        self.sinks = list(sinks)
        self._schedule = schedule or (lambda fn: fn())
        self._poll_timeout_ms = poll_timeout_ms
        self.pipeline = pipeline_factory(self._on_call, self._ignore_conn)
        if hasattr(self.pipeline, "ignore_stream"):
            self.pipeline.ignore_stream = self._ignore_stream
        price_error = getattr(getattr(self.pipeline, "prices", None), "error", None)
        if price_error:
            self.log.error("price overrides not used, packaged prices apply: %s", price_error)
        self.tracer: Any = None
        self.capturing = False
        self.pids, self.comms = validate_filter(config.pids, config.comms)
        self.recent: collections.deque[tuple[str, str]] = collections.deque(maxlen=recent_max)  # (id, JSON)
        self._ids: dict[str, str | None] = {}           # call id -> body_path, for the calls in `recent`
        self._subscribers: list[Callable[[dict[str, Any]], None]] = []
        self._inbox: collections.deque = collections.deque()
        self._inbox_bytes = 0
        self._inbox_lock = threading.Lock()
        self._lost_conns: set[ConnId] = set()             # conns whose chunks were dropped in this backlog
        self.inbox_dropped = 0                          # chunks dropped because the backlog was full
        self.inbox_dropped_bytes = 0
        self._drain_pending = False
        self._poll_thread: threading.Thread | None = None
        self._poll_stop = threading.Event()
        self._lock = threading.Lock()                    # start/stop may run in worker threads
        self.started_at = time.time()
        self._mono0 = time.monotonic()
        self.poll_errors = 0
        self.sink_errors = 0
        self.signals_dropped = 0                         # CallCaptured signals the bus adapter could not queue
        self._old_capture = CaptureStats()               # counts of tracers already stopped
        self.calls = 0
        self.calls_by_provider: collections.Counter[str] = collections.Counter()
        self.calls_by_kind: collections.Counter[str] = collections.Counter()
        self.incomplete = 0
        self.tokens = {"input": 0, "output": 0, "cache_creation_input": 0, "cache_read_input": 0}
        self.request_bytes = 0
        self.response_bytes = 0
        self.cost_usd = 0.0                              # sum over calls with a known price

    # --- capture ---------------------------------------------------------------------

    def start(self) -> None:
        """Attach the probes (blocking: BCC compiles; call it off the event loop). Failed on error."""
        with self._lock:
            if self.capturing:
                return
            cfg = dataclasses.replace(self.config, pids=list(self.pids), comms=list(self.comms))
            try:
                tracer = self._tracer_factory(cfg, self._on_item, logging.getLogger("agtap.capture"))
                tracer.start()
            except Exception as e:
                msg, fix = getattr(e, "message", None) or str(e), getattr(e, "fix", "")   # CaptureError
                raise Failed(msg + (f" (fix: {fix})" if fix else "")) from e
            self.tracer = tracer
            if (self.pids, self.comms) != (cfg.pids, cfg.comms):     # changed while the probes attached
                self.set_filter(self.pids, self.comms)
            self._poll_stop.clear()
            self._poll_thread = threading.Thread(target=self._poll_loop, args=(tracer,),
                                                 name="agtap-poll", daemon=True)
            self._poll_thread.start()
            self.capturing = True
            self.log.info("capturing: %d targets", len(self.targets))

    def stop(self) -> None:
        """Detach every probe; the service stays up. Open calls finish as incomplete."""
        with self._lock:
            if not self.capturing:
                return
            self._poll_stop.set()
            if self._poll_thread is not None:
                self._poll_thread.join(timeout=5)
                self._poll_thread = None
            tracer, self.tracer = self.tracer, None
            self.capturing = False
            try:
                st = tracer.stats()
                for f in CaptureStats.COUNTERS:
                    setattr(self._old_capture, f, getattr(self._old_capture, f) + getattr(st, f, 0))
            except Exception:
                self.log.exception("tracer stats at stop")
            try:
                tracer.stop()
            except Exception as e:
                raise Failed(f"detaching probes: {e}") from e
            finally:
                self._schedule(self._drain)
                self._schedule(self._flush_pipeline)
            self.log.info("capture stopped: probes detached")

    def shutdown(self) -> None:
        """stop(), finish every open call, close the sinks. Runs on the owner's thread."""
        try:
            self.stop()
        except Failed:
            self.log.exception("stopping the tracer")
        self.finish()

    def finish(self) -> None:
        """Finish every open call (incomplete "shutdown") and close the sinks; the probes are left as they are."""
        self._drain()
        self._flush_pipeline()
        for s in self.sinks:
            try:
                s.close()
            except Exception:
                self.log.exception("closing sink %s", getattr(s, "name", s))

    def _poll_loop(self, tracer) -> None:
        while not self._poll_stop.is_set():
            try:
                tracer.poll(self._poll_timeout_ms)
            except Exception:
                self.poll_errors += 1
                self.log.exception("tracer poll")
                self._poll_stop.wait(0.5)
            self._kick()

    def _kick(self) -> None:
        """Wake the owner's thread to drain the backlog: once per poll, not once per item
        (each wake is a write to the loop's self-pipe: a quarter of the daemon's CPU when
        it was done per chunk)."""
        if self._inbox and not self._drain_pending:
            self._drain_pending = True
            self._schedule(self._drain)

    def _on_item(self, item: Chunk | ConnClosed) -> None:
        """From the poll thread: queue (bounded), and wake the owner's thread once per batch."""
        size = len(item.data) + ITEM_OVERHEAD if isinstance(item, Chunk) else 0
        with self._inbox_lock:
            if size and self._inbox_bytes + size > INBOX_MAX_BYTES:
                self.inbox_dropped += 1
                self.inbox_dropped_bytes += size
                if item.conn not in self._lost_conns:
                    # end the connection's current call as incomplete rather than
                    # parse a stream with a hole in it
                    self._lost_conns.add(item.conn)
                    self._inbox.append(ConnClosed(item.conn, item.ts_ns, "lost"))
                return
            self._inbox_bytes += size
            self._inbox.append(item)
        if threading.current_thread() is not self._poll_thread:
            self._kick()      # from the poll thread, _poll_loop kicks once per poll

    def _drain(self) -> None:
        self._drain_pending = False
        while True:
            with self._inbox_lock:
                if not self._inbox:
                    self._lost_conns.clear()
                    return
                item = self._inbox.popleft()
                if isinstance(item, Chunk):
                    self._inbox_bytes -= len(item.data) + ITEM_OVERHEAD
            self.feed(item)

    def feed(self, item: Chunk | ConnClosed) -> None:
        try:
            self.pipeline.feed(item)
        except Exception:
            self.log.exception("pipeline feed")

    def expire(self) -> None:
        try:
            self.pipeline.expire(time.monotonic_ns())
        except Exception:
            self.log.exception("pipeline expire")

    def _flush_pipeline(self) -> None:
        try:
            self.pipeline.flush()
        except Exception:
            self.log.exception("pipeline flush")

    def _ignore_conn(self, conn: ConnId) -> None:
        if self.tracer is not None:
            try:
                self.tracer.ignore_conn(conn)
            except Exception:
                self.log.exception("ignore_conn")

    def _ignore_stream(self, conn: ConnId, stream_id: int) -> None:
        if self.tracer is not None and hasattr(self.tracer, "ignore_stream"):
            try:
                self.tracer.ignore_stream(conn, stream_id)
            except Exception:
                self.log.exception("ignore_stream")

    def _on_call(self, call: Call) -> None:
        if self.tracer is not None and hasattr(self.tracer, "note_call"):
            try:
                self.tracer.note_call(call.pid)   # a process with a call is never demoted
            except Exception:
                self.log.exception("note_call")
        for s in self.sinks:
            try:
                s.write(call)
            except Exception:
                self.sink_errors += 1
                self.log.exception("sink %s", getattr(s, "name", s))
        event = call.to_dict()
        self.calls += 1
        self.calls_by_provider[call.provider] += 1
        self.calls_by_kind[call.kind] += 1
        self.incomplete += bool(call.incomplete)
        for k in self.tokens:
            self.tokens[k] += getattr(call, k + "_tokens") or 0
        self.request_bytes += call.request_bytes or 0
        self.response_bytes += call.response_bytes or 0
        self.cost_usd += call.cost_usd or 0.0
        line = json.dumps(event, separators=(",", ":"), default=str)
        if len(self.recent) == self.recent.maxlen:
            self._ids.pop(self.recent[0][0], None)
        self.recent.append((call.event_id, line))
        self._ids[call.event_id] = call.body_path
        for cb in list(self._subscribers):
            try:
                cb(event)
            except Exception:
                self.log.exception("subscriber")

    def subscribe(self, callback: Callable[[dict[str, Any]], None]) -> Callable[[], None]:
        """callback(event dict) for every finished call; returns a function that unsubscribes."""
        self._subscribers.append(callback)
        return lambda: self._subscribers.remove(callback) if callback in self._subscribers else None

    # --- filters ---------------------------------------------------------------------

    def set_filter(self, pids: Iterable[Any], comms: Iterable[Any]) -> None:
        pids, comms = validate_filter(pids, comms)
        tracer = self.tracer
        if tracer is not None:
            try:
                tracer.set_filter(pids, comms)
            except Exception as e:
                raise Failed(f"setting the filter: {e}") from e
        self.pids, self.comms = pids, comms
        self.log.info("filter: pids=%s comms=%s", pids or "any", comms or "any")

    def clear_filter(self) -> None:
        self.set_filter([], [])

    # --- reading ---------------------------------------------------------------------

    @property
    def targets(self) -> list[str]:
        t = self.tracer
        if t is None:
            return []
        try:
            return [str(x) for x in t.targets]
        except Exception:
            return []

    def capture_stats(self) -> CaptureStats:
        old, out = self._old_capture, CaptureStats()
        st = None
        if self.tracer is not None:
            try:
                st = self.tracer.stats()
            except Exception:
                self.log.exception("tracer stats")
        for f in CaptureStats.COUNTERS:
            setattr(out, f, getattr(old, f) + (getattr(st, f, 0) if st else 0))
        for f in CaptureStats.GAUGES:
            setattr(out, f, getattr(st, f, 0) if st else 0)
        out.targets = self.targets
        out.probe_scope = getattr(st, "probe_scope", "") or self.config.probe_scope
        return out

    @property
    def uptime(self) -> float:
        return time.monotonic() - self._mono0

    def get_stats(self) -> dict[str, Any]:
        """Every counter the service keeps (GetStats, `agtapctl stats`, the Prometheus metrics):
        the capture's (CaptureStats), the pipeline's (PipelineStats), the controller's own,
        and each sink's counters under "sinks"."""
        cap = self.capture_stats()
        ps = getattr(self.pipeline, "stats", None)
        pipeline = {f.name: int(getattr(ps, f.name)) for f in dataclasses.fields(ps)} if ps is not None else {}
        return {
            "capturing": self.capturing,
            "uptime_s": round(self.uptime, 3),
            "started_at": self.started_at,
            "targets": cap.targets,
            "probe_scope": cap.probe_scope,
            "watched_processes": cap.watched_processes,
            "uprobes": cap.uprobes,
            "filter_pids": list(self.pids),
            "filter_comms": list(self.comms),
            "calls": self.calls,
            "calls_by_provider": dict(self.calls_by_provider),
            "calls_by_kind": dict(self.calls_by_kind),
            "incomplete": self.incomplete,
            "input_tokens": self.tokens["input"],
            "output_tokens": self.tokens["output"],
            "cache_creation_input_tokens": self.tokens["cache_creation_input"],
            "cache_read_input_tokens": self.tokens["cache_read_input"],
            "request_bytes": self.request_bytes,
            "response_bytes": self.response_bytes,
            "cost_usd": round(self.cost_usd, 6),
            "chunks": cap.chunks,
            "capture_bytes": cap.bytes,
            "lost_records": cap.lost_records + self.inbox_dropped,   # in the kernel + in the backlog
            "lost_in_backlog": self.inbox_dropped,
            "lost_in_backlog_bytes": self.inbox_dropped_bytes,
            "lost_bytes": cap.lost_bytes,
            "cut_records": cap.cut_records,
            "read_failed_bytes": cap.read_failed_bytes,
            "conn_table_full": cap.conn_table_full,
            "skipped_bytes": cap.skipped_bytes,
            "dropped_reads": cap.dropped_reads,
            "h2_connections": cap.h2_connections,
            "boringssl_unprobed_processes": cap.boringssl_unprobed_processes,
            "boringssl_unprobed_connections": cap.boringssl_unprobed_connections,
            "go_unprobed_processes": cap.go_unprobed_processes,
            "go_unprobed_connections": cap.go_unprobed_connections,
            "late_attach": cap.late_attach,
            "probe_fallbacks": cap.probe_fallbacks,
            "demoted": cap.demoted,
            "held_opens": cap.held_opens,
            "hold_timeouts": cap.hold_timeouts,
            "h2_dropped_bytes": cap.h2_dropped_bytes,
            "h2_walks_lost": cap.h2_walks_lost,
            "h2_late_joins": cap.h2_late_joins,
            **pipeline,
            "poll_errors": self.poll_errors,
            "sink_errors": self.sink_errors,
            "signals_dropped": self.signals_dropped,
            **self._sink_write_errors(),
            "sinks": self._sink_counters(),
        }

    # the stats key for each file sink's write failures (full disk, refused path)
    _WRITE_ERROR_KEYS = {"jsonl": "log_write_errors", "bodies": "body_write_errors"}

    def _sink_write_errors(self) -> dict[str, int]:
        out = {}
        for s in self.sinks:
            key = self._WRITE_ERROR_KEYS.get(getattr(s, "name", ""))
            if key:
                try:
                    out[key] = int(s.stats().get("write_errors", 0))
                except Exception:
                    pass
        return out

    def _sink_counters(self) -> dict[str, dict[str, int]]:
        """sink name -> its numeric stats (files, lines, drops, failures ...)."""
        out: dict[str, dict[str, int]] = {}
        for s in self.sinks:
            try:
                st = s.stats()
            except Exception:
                continue
            out[str(getattr(s, "name", type(s).__name__))] = {
                k: v for k, v in st.items() if isinstance(v, int) and not isinstance(v, bool) and v >= 0}
        return out

    def recent_calls(self, n: int) -> list[str]:
        """The last `n` events as JSON strings, newest last."""
        if isinstance(n, bool) or not isinstance(n, int) or n < 0:
            raise InvalidArgument(f"n {n!r}: must be a whole number ≥ 0")
        if n == 0:
            return []
        n = min(n, len(self.recent))
        return [line for _id, line in itertools.islice(self.recent, len(self.recent) - n, None)]

    def call_bodies(self, event_id: str) -> str:
        """The stored (redacted) body file of a call, as JSON text. The id is looked up, never used as a path."""
        return storage.read_body(self.config.bodies_dir, event_id,
                                 self._ids.get(event_id) if isinstance(event_id, str) else None)

    # --- housekeeping ----------------------------------------------------------------

    def clean(self) -> dict[str, int]:
        """Remove captured data (see the module doc). Returns what was removed."""
        removed = {"body_files": 0, "log_files": 0, "bytes": 0}
        for s in self.sinks:              # a sink that keeps an index or a size clears it itself first
            if hasattr(s, "clean"):
                try:
                    for k, v in (s.clean() or {}).items():
                        if k in removed:
                            removed[k] += int(v)
                except Exception:
                    self.log.exception("clean: sink %s", getattr(s, "name", s))
        for k, v in storage.remove_captured(self.config, self.log).items():
            removed[k] += v
        self.recent.clear()
        self._ids.clear()
        self.log.info("cleaned: %(body_files)d body files, %(log_files)d rotated logs, %(bytes)d bytes", removed)
        return removed

    def status_line(self) -> str:
        st = self.capture_stats()
        state = "capturing" if self.capturing else "stopped"
        scope = (f"probes per process, {st.watched_processes:,} watched" if st.probe_scope == "process"
                 else "probes host-wide")
        return (f"{state} · {len(st.targets)} targets · {scope} · {self.calls:,} calls · "
                f"{st.lost_records + self.inbox_dropped:,} lost · {st.late_attach:,} late attach")
