"""Prometheus sink: per-call histograms and counters, served on /metrics.

    sink = PrometheusSink("127.0.0.1:9464")        # or ":9464", "[::1]:9464"
    sink.write(call)                               # never raises, never blocks on scrapes
    sink.close()

Names, labels and buckets live in agtap/metricnames.py. The sink keeps its own
CollectorRegistry (nothing global), and bounds label cardinality: at most
`label_limit` distinct models and processes each (default 200); later values
are recorded as "other" and counted in agtap_label_overflow_total{label=...}.

The service's counters (capture, pipeline, sinks: everything D-Bus GetStats
shows) belong to the daemon. It plugs them in with one line, read at every scrape:

    sink.set_stats_source(stats=controller.get_stats)

`stats()` returns a mapping as agtap.service.controller.Controller.get_stats
does: each key of metricnames.PROM_STATS becomes its metric, "targets" (a list
or a count) the agtap_targets gauge, and "sinks" ({sink: {stat: n}}) the
agtap_sink_events_total / agtap_sink_level families. A source that fails
keeps the last values. Or push values instead:

    sink.set_capture_stats(lost=..., cut=..., parse_errors=..., targets=...)
"""

from __future__ import annotations

import logging
import platform
import socket
import threading
import time
from socketserver import ThreadingMixIn
from typing import Any, Callable, Iterator
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

from agtap import __version__
from agtap import metricnames as mn
from agtap.call import KIND_LLM, KIND_MCP, PROVIDERS, Call
from agtap.providers import platforms

log = logging.getLogger(__name__)

try:
    from prometheus_client import CollectorRegistry, Counter, Histogram, make_wsgi_app
    from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
except ImportError as e:  # pragma: no cover - depends on the host
    _IMPORT_ERROR: ImportError | None = e
else:
    _IMPORT_ERROR = None


def parse_addr(addr: str) -> tuple[str, int]:
    """'host:port', ':port' (all interfaces), '[::1]:port' -> (host, port)."""
    host, sep, port = addr.rpartition(":")
    if not sep or not port.isdigit():
        raise ValueError(f"metrics address {addr!r}: expected host:port")
    host = host.strip("[]") or "0.0.0.0"
    return host, int(port)


class LabelLimiter:
    """Keeps the first `limit` distinct values of an open label; later ones become 'other'."""

    def __init__(self, limit: int, on_overflow: Callable[[], None]):
        self.limit = limit
        self._seen: set[str] = set()
        self._on_overflow = on_overflow
        self._lock = threading.Lock()

    def __call__(self, value: str | None) -> str:
        v = (value or mn.LABEL_UNKNOWN)[: mn.MAX_LABEL_LEN]
        with self._lock:
            if v in self._seen:
                return v
            if len(self._seen) < self.limit:
                self._seen.add(v)
                return v
        self._on_overflow()
        return mn.LABEL_OVERFLOW

    def __len__(self) -> int:
        return len(self._seen)


class _ThreadingWSGIServer(ThreadingMixIn, WSGIServer):
    daemon_threads = True


class _QuietHandler(WSGIRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - stdlib signature
        pass


def _count(targets: Any) -> int:
    return len(targets) if isinstance(targets, (list, tuple, set)) else int(targets or 0)


def _int(v: Any) -> int | None:
    return v if isinstance(v, int) and not isinstance(v, bool) else None


class _CaptureCollector:
    """Reads the daemon's counters (GetStats) at scrape time."""

    def __init__(self) -> None:
        self.values: dict[str, int] = {}
        self.targets = 0
        self.sinks: dict[str, dict[str, int]] = {}
        self.stats: Callable[[], Any] | None = None
        self._failed_at = -1e9

    def _read(self) -> None:
        if self.stats is None:
            return
        d = self.stats()
        values = {k: v for k in mn.PROM_STATS if (v := _int(d.get(k))) is not None}
        targets = _count(d.get("targets", 0))
        sinks = {str(s): {str(k): v for k, x in st.items() if (v := _int(x)) is not None}
                 for s, st in (d.get("sinks") or {}).items() if isinstance(st, dict)}
        self.values, self.targets, self.sinks = values, targets, sinks

    def collect(self) -> Iterator[Any]:
        try:
            self._read()
        except Exception:  # a scrape must not fail because a stats source did: keep the last values
            if time.monotonic() - self._failed_at > 60:
                self._failed_at = time.monotonic()
                log.exception("prometheus: stats source failed")
        for key, (name, kind, help_) in mn.PROM_STATS.items():
            family = CounterMetricFamily if kind == "counter" else GaugeMetricFamily
            yield family(name, help_, value=self.values.get(key, 0))
        counters = CounterMetricFamily(mn.PROM_SINK_COUNTER, mn.PROM_HELP[mn.PROM_SINK_COUNTER], labels=mn.LABELS_SINK)
        gauges = GaugeMetricFamily(mn.PROM_SINK_GAUGE, mn.PROM_HELP[mn.PROM_SINK_GAUGE], labels=mn.LABELS_SINK)
        for sink, st in sorted(self.sinks.items()):
            for k, v in sorted(st.items()):
                (gauges if k in mn.SINK_GAUGES else counters).add_metric([sink, k], v)
        yield counters
        yield gauges
        yield GaugeMetricFamily(mn.PROM_TARGETS, mn.PROM_HELP[mn.PROM_TARGETS], value=self.targets)
        info = GaugeMetricFamily(mn.PROM_BUILD_INFO, mn.PROM_HELP[mn.PROM_BUILD_INFO], labels=mn.LABELS_BUILD_INFO)
        info.add_metric([__version__, platform.python_version()], 1)
        yield info


class PrometheusSink:
    name = "prometheus"

    def __init__(self, addr: str | None = None, *, label_limit: int = mn.DEFAULT_LABEL_LIMIT):
        if _IMPORT_ERROR is not None:
            raise RuntimeError(
                "the Prometheus sink needs prometheus_client: apt install python3-prometheus-client "
                f"(or pip install prometheus-client): {_IMPORT_ERROR}"
            )
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        H = mn.PROM_HELP
        self._duration = Histogram(mn.PROM_REQUEST_DURATION, H[mn.PROM_REQUEST_DURATION], mn.LABELS_DURATION,
                                   buckets=mn.DURATION_BUCKETS_S, registry=r)
        self._tokens = Histogram(mn.PROM_TOKEN_COUNT, H[mn.PROM_TOKEN_COUNT], mn.LABELS_TOKENS,
                                 buckets=mn.TOKEN_BUCKETS, registry=r)
        self._ttft = Histogram(mn.PROM_TTFT, H[mn.PROM_TTFT], mn.LABELS_TTFT, buckets=mn.TTFT_BUCKETS_S, registry=r)
        self._requests = Counter(mn.PROM_REQUESTS, H[mn.PROM_REQUESTS], mn.LABELS_REQUESTS, registry=r)
        self._req_bytes = Histogram(mn.PROM_REQUEST_BYTES, H[mn.PROM_REQUEST_BYTES], mn.LABELS_BYTES,
                                    buckets=mn.BYTES_BUCKETS, registry=r)
        self._resp_bytes = Histogram(mn.PROM_RESPONSE_BYTES, H[mn.PROM_RESPONSE_BYTES], mn.LABELS_BYTES,
                                     buckets=mn.BYTES_BUCKETS, registry=r)
        self._cost = Counter(mn.PROM_COST, H[mn.PROM_COST], mn.LABELS_COST, registry=r)
        self._overflow = Counter(mn.PROM_LABEL_OVERFLOW, H[mn.PROM_LABEL_OVERFLOW], mn.LABELS_OVERFLOW, registry=r)
        self._errors_metric = Counter(mn.PROM_SINK_ERRORS, H[mn.PROM_SINK_ERRORS], registry=r)
        self._capture = _CaptureCollector()
        r.register(self._capture)
        self._overflow_count = 0
        self._models = LabelLimiter(label_limit, lambda: self._count_overflow("model"))
        self._procs = LabelLimiter(label_limit, lambda: self._count_overflow("process"))
        self._calls = 0
        self._errors = 0
        self._last_log = 0.0
        self._server: WSGIServer | None = None
        self._thread: threading.Thread | None = None
        self.address: tuple[str, int] | None = None
        if addr:
            self._serve(addr)

    # --- daemon hooks ---
    def set_stats_source(self, stats: Callable[[], Any] | None = None) -> None:
        """Read the service's counters (a GetStats mapping) at every scrape (see module doc)."""
        self._capture.stats = stats

    def set_capture_stats(self, lost: int, cut: int, parse_errors: int, targets: int) -> None:
        """Push the current totals (used when no stats source is set)."""
        c = self._capture
        c.values.update(lost_records=int(lost), cut_records=int(cut), parse_errors=int(parse_errors))
        c.targets = int(targets)

    # --- serving ---
    def _serve(self, addr: str) -> None:
        host, port = parse_addr(addr)

        class Server(_ThreadingWSGIServer):
            address_family = socket.AF_INET6 if ":" in host else socket.AF_INET

        self._server = make_server(host, port, make_wsgi_app(self.registry), Server, handler_class=_QuietHandler)
        self.address = (host, self._server.server_address[1])
        self._thread = threading.Thread(target=self._server.serve_forever, name="agtap-metrics", daemon=True)
        self._thread.start()

    @property
    def url(self) -> str | None:
        if self.address is None:
            return None
        host, port = self.address
        host = "127.0.0.1" if host == "0.0.0.0" else host
        return f"http://{'[' + host + ']' if ':' in host else host}:{port}/metrics"

    # --- Sink ---
    def _count_overflow(self, label: str) -> None:
        self._overflow_count += 1
        self._overflow.labels(label).inc()

    def write(self, call: Call) -> None:
        try:
            self._record(call)
            self._calls += 1
        except Exception:
            self._errors += 1
            self._errors_metric.inc()
            now = time.monotonic()
            if now - self._last_log > 60:
                self._last_log = now
                log.exception("prometheus: failed to record call %s", getattr(call, "event_id", "?"))

    def _record(self, call: Call) -> None:
        provider = call.provider if call.provider in PROVIDERS else mn.LABEL_OVERFLOW
        platform = call.platform if call.platform in platforms.NAMES else mn.LABEL_OVERFLOW
        kind = call.kind if call.kind in (KIND_LLM, KIND_MCP) else mn.LABEL_OVERFLOW
        model = self._models(call.model)
        proc = self._procs(call.proc)
        streaming = "true" if call.streaming else "false"
        self._requests.labels(provider, platform, proc, kind, streaming, call.outcome()).inc()
        if call.latency_ms is not None and call.latency_ms >= 0:
            self._duration.labels(model, provider, platform, proc, kind, streaming).observe(call.latency_ms / 1000.0)
        if call.ttft_ms is not None and call.ttft_ms >= 0:
            self._ttft.labels(model, provider, platform, proc, kind).observe(call.ttft_ms / 1000.0)
        for token_type, field in mn.TOKEN_FIELDS.items():
            n = getattr(call, field)
            if n is not None:
                self._tokens.labels(model, provider, platform, proc, kind, streaming, token_type).observe(n)
        self._req_bytes.labels(provider, platform, proc, kind).observe(call.request_bytes)
        self._resp_bytes.labels(provider, platform, proc, kind).observe(call.response_bytes)
        if call.cost_usd:
            self._cost.labels(model, provider, platform, proc).inc(call.cost_usd)

    def stats(self) -> dict[str, Any]:
        return {
            "calls": self._calls,
            "errors": self._errors,
            "label_overflow": self._overflow_count,
            "models": len(self._models),
            "processes": len(self._procs),
            "address": "" if self.address is None else f"{self.address[0]}:{self.address[1]}",
        }

    def close(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None
