"""OpenTelemetry sink: one CLIENT span per call plus GenAI metrics, sent over OTLP/HTTP.

    sink = OtelSink("http://collector:4318")   # base URL -> /v1/traces, /v1/metrics
    sink.write(call)                           # never blocks on the network, never raises
    sink.close()                               # bounded: gives up after close_timeout seconds

Spans follow the GenAI semantic conventions (`chat claude-sonnet-4-5`) and the
MCP ones (`tools/call add`); they start and end at the captured times, not at
export time. Metrics: gen_ai.client.operation.duration, gen_ai.client.token.usage,
gen_ai.server.time_to_first_token (LLM calls) and mcp.client.operation.duration
(MCP calls), with the advisory buckets from agtap/metricnames.py.

With `endpoint=None` the URL comes from OTEL_EXPORTER_OTLP_TRACES_ENDPOINT /
OTEL_EXPORTER_OTLP_METRICS_ENDPOINT / OTEL_EXPORTER_OTLP_ENDPOINT; headers,
timeout, compression and certificates always come from the OTEL_EXPORTER_OTLP_*
variables, resource attributes from OTEL_RESOURCE_ATTRIBUTES.

Export runs on the SDK's worker threads. The span queue is bounded
(`max_queue_size`); a dead collector costs at most that many spans of memory,
and every span that never reached the collector is counted in
stats()["otel_dropped_spans"] (queue full or failed export), every failed
export request in stats()["otel_export_failures"].
"""

from __future__ import annotations

import datetime as _dt
import logging
import os
import socket
import threading
import time
from typing import Any, Sequence

from agtap import __version__
from agtap import metricnames as mn
from agtap.call import ERROR_STOP_PREFIX, KIND_MCP, Call
from agtap.providers.platforms import otel_provider_name

log = logging.getLogger(__name__)

PIP_PACKAGES = "opentelemetry-sdk opentelemetry-exporter-otlp-proto-http"

try:
    from opentelemetry.exporter.otlp.proto.http.metric_exporter import OTLPMetricExporter
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
    from opentelemetry.sdk.metrics import MeterProvider
    from opentelemetry.sdk.metrics.export import MetricExportResult, PeriodicExportingMetricReader
    from opentelemetry.sdk.metrics.view import ExplicitBucketHistogramAggregation, View
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExportResult
    from opentelemetry.trace import SpanKind, Status, StatusCode
except ImportError as e:  # pragma: no cover - depends on the host
    _IMPORT_ERROR: ImportError | None = e
else:
    _IMPORT_ERROR = None


# --- pure mapping: Call -> span name, attributes, timing ---

def error_type(call: Call) -> str | None:
    """error.type, set exactly when call.is_error(): the provider's error type, else the HTTP status."""
    if not call.is_error():
        return None
    if call.error_type:
        return call.error_type
    if (call.stop_reason or "").startswith(ERROR_STOP_PREFIX):
        return call.stop_reason[len(ERROR_STOP_PREFIX):] or "_OTHER"
    return str(call.http_status)


def operation_name(call: Call) -> str:
    """gen_ai.operation.name (LLM) or mcp.method.name (MCP)."""
    if call.kind == KIND_MCP:
        return call.operation or call.model or "unknown"
    op = call.operation
    if op in (None, "", "responses", "messages", "chat_completions"):
        return "generate_content" if call.provider == "google" else "chat"
    return op


def mcp_target(call: Call) -> str | None:
    """The tool (tools/call) or prompt (prompts/get) an MCP request names."""
    if operation_name(call) in ("tools/call", "prompts/get") and call.tools:
        return call.tools[0]
    return None


def span_name(call: Call) -> str:
    op = operation_name(call)
    target = mcp_target(call) if call.kind == KIND_MCP else call.model
    return f"{op} {target}" if target else op


def input_tokens_total(call: Call) -> int | None:
    """gen_ai.usage.input_tokens includes cached tokens; Anthropic reports them apart."""
    if call.input_tokens is None:
        return None
    if call.provider == "anthropic":
        return call.input_tokens + (call.cache_read_input_tokens or 0) + (call.cache_creation_input_tokens or 0)
    return call.input_tokens


def network_transport(call: Call) -> str:
    return "pipe" if call.transport == "pipe" else "tcp"


def span_attributes(call: Call) -> dict[str, Any]:
    a: dict[str, Any] = {}
    if call.kind == KIND_MCP:
        method = operation_name(call)
        a["mcp.method.name"] = method
        if method == "tools/call":
            a["gen_ai.operation.name"] = "execute_tool"
            a["gen_ai.tool.name"] = mcp_target(call)
        elif method == "prompts/get":
            a["gen_ai.prompt.name"] = mcp_target(call)
        a["jsonrpc.request.id"] = call.jsonrpc_id
        a["mcp.session.id"] = call.mcp_session_id
        a["network.transport"] = network_transport(call)
    else:
        a["gen_ai.operation.name"] = operation_name(call)
        a["gen_ai.provider.name"] = otel_provider_name(call.provider, call.platform) or call.provider
        a["gen_ai.request.model"] = call.model
        a["gen_ai.response.model"] = call.response_model
        a["gen_ai.response.id"] = call.id
        if call.stop_reason and not call.is_error():
            a["gen_ai.response.finish_reasons"] = [call.stop_reason]
        a["gen_ai.usage.input_tokens"] = input_tokens_total(call)
        a["gen_ai.usage.output_tokens"] = call.output_tokens
        a["gen_ai.usage.cache_read.input_tokens"] = call.cache_read_input_tokens
        a["gen_ai.usage.cache_creation.input_tokens"] = call.cache_creation_input_tokens
        a["gen_ai.request.stream"] = call.streaming
    a["error.type"] = error_type(call)
    if call.server_address:
        a["server.address"] = call.server_address
        a["server.port"] = call.server_port
    if call.http_status:
        a["http.response.status_code"] = call.http_status
    if call.http_version:
        a["network.protocol.name"], a["network.protocol.version"] = "http", call.http_version
    a["process.pid"] = call.pid
    a["process.executable.name"] = os.path.basename(call.exe) if call.exe else call.proc
    a.update({
        "agtap.event_id": call.event_id, "agtap.platform": call.platform or None, "agtap.pid": call.pid, "agtap.process": call.proc, "agtap.kind": call.kind,
        "agtap.streaming": call.streaming, "agtap.tools": list(call.tools), "agtap.ttft_ms": call.ttft_ms,
        "agtap.request_bytes": call.request_bytes, "agtap.response_bytes": call.response_bytes,
        "agtap.transport": call.transport or None, "agtap.cost_usd": call.cost_usd,
        "agtap.incomplete_reason": call.incomplete_reason if call.incomplete else None,
        "agtap.body_path": call.body_path, "agtap.unit": call.unit or None,
        "agtap.container_id": call.container_id or None,
    })
    return {k: v for k, v in a.items() if v is not None}


def span_times(call: Call) -> tuple[int, int]:
    """(start, end) in wall-clock ns: the captured start, plus the monotonic duration."""
    start = call.wall_start_ns
    if not start and call.ts:
        try:
            t = _dt.datetime.strptime(call.ts, "%Y-%m-%dT%H:%M:%S.%fZ").replace(tzinfo=_dt.timezone.utc)
            start = int(t.timestamp()) * 1_000_000_000 + t.microsecond * 1000
        except ValueError:
            start = 0
    if call.end_ns and call.start_ns and call.end_ns >= call.start_ns:
        duration = call.end_ns - call.start_ns
    elif call.latency_ms is not None:
        duration = int(call.latency_ms * 1e6)
    else:
        duration = 0
    if not start:
        start = time.time_ns() - duration
    return start, start + duration


# --- export with counting ---

class _OncePerMinute(logging.Filter):
    """A dead collector must not flood the journal: one SDK message a minute per logger."""

    last = -1e9

    def filter(self, record: logging.LogRecord) -> bool:
        if time.monotonic() - self.last < 60:
            return False
        self.last = time.monotonic()
        return True


def _quiet_sdk_loggers() -> None:
    for name in ("opentelemetry.exporter.otlp.proto.http.trace_exporter", "opentelemetry.sdk._shared_internal",
                 "opentelemetry.exporter.otlp.proto.http.metric_exporter", "opentelemetry.sdk.metrics._internal.export"):
        lg = logging.getLogger(name)
        if not any(isinstance(f, _OncePerMinute) for f in lg.filters):
            lg.addFilter(_OncePerMinute())


if _IMPORT_ERROR is None:

    class _CountingSpanExporter(OTLPSpanExporter):
        def __init__(self, owner: "OtelSink", **kw: Any):
            super().__init__(**kw)
            self._owner = owner

        def export(self, spans: Sequence[Any]) -> "SpanExportResult":
            try:
                result = super().export(spans)
            except Exception:
                result = SpanExportResult.FAILURE
            self._owner._exported(len(spans), result == SpanExportResult.SUCCESS)
            return result

    class _CountingMetricExporter(OTLPMetricExporter):
        def __init__(self, owner: "OtelSink", **kw: Any):
            super().__init__(**kw)
            self._owner = owner

        def export(self, metrics_data: Any, timeout_millis: float | None = 10_000, **kw: Any) -> "MetricExportResult":
            try:
                result = super().export(metrics_data, timeout_millis=timeout_millis, **kw)
            except Exception:
                result = MetricExportResult.FAILURE
            self._owner._add("otel_metric_exports" if result == MetricExportResult.SUCCESS
                             else "otel_metric_export_failures")
            return result

    class _BoundedSpanProcessor(BatchSpanProcessor):
        """BatchSpanProcessor that counts spans dropped because its queue was full."""

        def __init__(self, owner: "OtelSink", exporter: Any, close_timeout_ms: int, **kw: Any):
            super().__init__(exporter, **kw)
            self._owner = owner
            self._close_timeout_ms = close_timeout_ms
            self.max_queue_size = kw.get("max_queue_size") or 2048

        def queue_len(self) -> int:
            q = getattr(getattr(self, "_batch_processor", None), "_queue", None)
            return len(q) if q is not None else 0

        def on_end(self, span: Any) -> None:
            if self.queue_len() >= self.max_queue_size:
                self._owner._queue_dropped()
            super().on_end(span)

        def shutdown(self) -> None:  # TracerProvider calls it without a timeout: bound it here
            self._batch_processor.shutdown(timeout_millis=self._close_timeout_ms)


class OtelSink:
    name = "otel"

    def __init__(self, endpoint: str | None = None, *, max_queue_size: int = 2048,
                 max_export_batch_size: int = 512, schedule_delay_ms: int = 1000,
                 metric_interval_ms: int = 10_000, close_timeout: float = 5.0,
                 timeout: float | None = None):
        if _IMPORT_ERROR is not None:
            raise RuntimeError(f"the OpenTelemetry sink needs the OpenTelemetry SDK: pip install {PIP_PACKAGES} "
                               f"({_IMPORT_ERROR})")
        _quiet_sdk_loggers()
        self._lock = threading.Lock()
        self._c = dict.fromkeys(("otel_spans", "otel_exported_spans", "otel_dropped_spans", "otel_queue_full_drops",
                                 "otel_export_failures", "otel_metric_exports", "otel_metric_export_failures",
                                 "errors"), 0)
        self._last_log = 0.0
        base = endpoint.rstrip("/") if endpoint else None
        self.traces_url = f"{base}/v1/traces" if base else None
        self.metrics_url = f"{base}/v1/metrics" if base else None

        self.resource = Resource.create({"service.name": os.environ.get("OTEL_SERVICE_NAME") or mn.SERVICE_NAME,
                                         "service.version": __version__, "host.name": socket.gethostname()})
        close_ms = self._close_ms = int(close_timeout * 1000)
        span_exporter = _CountingSpanExporter(self, endpoint=self.traces_url, timeout=timeout)
        self.traces_url = getattr(span_exporter, "_endpoint", self.traces_url)
        self._processor = _BoundedSpanProcessor(
            self, span_exporter, close_ms, max_queue_size=max_queue_size,
            max_export_batch_size=min(max_export_batch_size, max_queue_size), schedule_delay_millis=schedule_delay_ms)
        self._tracer_provider = TracerProvider(resource=self.resource)
        self._tracer_provider.add_span_processor(self._processor)
        self._tracer = self._tracer_provider.get_tracer("agtap", __version__)

        metric_exporter = _CountingMetricExporter(self, endpoint=self.metrics_url, timeout=timeout)
        self.metrics_url = getattr(metric_exporter, "_endpoint", self.metrics_url)
        self._reader = PeriodicExportingMetricReader(metric_exporter, export_interval_millis=metric_interval_ms,
                                                     export_timeout_millis=close_ms)
        views = [View(instrument_name=name, aggregation=ExplicitBucketHistogramAggregation(list(b)))
                 for name, b in mn.OTEL_BUCKETS.items()]
        self._meter_provider = MeterProvider(resource=self.resource, metric_readers=[self._reader], views=views)
        meter = self._meter_provider.get_meter("agtap", __version__)

        def hist(name: str) -> Any:
            return meter.create_histogram(name, unit=mn.OTEL_UNITS[name], description=mn.OTEL_DESCRIPTIONS[name])

        self._duration = hist(mn.OTEL_DURATION)
        self._tokens = hist(mn.OTEL_TOKEN_USAGE)
        self._ttft = hist(mn.OTEL_TTFT)
        self._mcp_duration = hist(mn.OTEL_MCP_DURATION)
        self._closed = False

    # --- counters fed by the export threads ---
    def _add(self, key: str, n: int = 1) -> None:
        with self._lock:
            self._c[key] += n

    def _exported(self, n: int, ok: bool) -> None:
        with self._lock:
            if ok:
                self._c["otel_exported_spans"] += n
            else:
                self._c["otel_dropped_spans"] += n
                self._c["otel_export_failures"] += 1

    def _queue_dropped(self) -> None:
        with self._lock:
            self._c["otel_dropped_spans"] += 1
            self._c["otel_queue_full_drops"] += 1


    # --- Sink ---
    def write(self, call: Call) -> None:
        if self._closed:
            return
        try:
            self._span(call)
            self._record_metrics(call)
            self._add("otel_spans")
        except Exception:
            self._add("errors")
            now = time.monotonic()
            if now - self._last_log > 60:
                self._last_log = now
                log.exception("otel: failed to record call %s", getattr(call, "event_id", "?"))

    def _span(self, call: Call) -> None:
        start, end = span_times(call)
        attrs = span_attributes(call)
        span = self._tracer.start_span(span_name(call), kind=SpanKind.CLIENT, attributes=attrs, start_time=start)
        if call.is_error():
            span.set_status(Status(StatusCode.ERROR, call.stop_reason or error_type(call)))
        span.end(end_time=end)

    def _record_metrics(self, call: Call) -> None:
        err = error_type(call)
        if call.kind == KIND_MCP:
            attrs = {"mcp.method.name": operation_name(call), "network.transport": network_transport(call)}
            if mcp_target(call) and operation_name(call) == "tools/call":
                attrs["gen_ai.tool.name"] = mcp_target(call)
            if err:
                attrs["error.type"] = err
            if call.latency_ms is not None:
                self._mcp_duration.record(call.latency_ms / 1000.0, attrs)
            return
        attrs = {
            "gen_ai.operation.name": operation_name(call),
            "gen_ai.provider.name": otel_provider_name(call.provider, call.platform) or call.provider,
            "gen_ai.request.model": call.model,
            "gen_ai.response.model": call.response_model,
            "server.address": call.server_address or None,
            "server.port": call.server_port,
        }
        attrs = {k: v for k, v in attrs.items() if v is not None}
        if call.latency_ms is not None:
            self._duration.record(call.latency_ms / 1000.0, {**attrs, "error.type": err} if err else attrs)
        for token_type, n in ((mn.OTEL_TOKEN_INPUT, input_tokens_total(call)),
                              (mn.OTEL_TOKEN_OUTPUT, call.output_tokens)):
            if n is not None:
                self._tokens.record(n, {**attrs, "gen_ai.token.type": token_type})
        if call.ttft_ms is not None and not err:
            self._ttft.record(call.ttft_ms / 1000.0, attrs)

    def queue_len(self) -> int:
        return self._processor.queue_len()

    def flush(self, timeout: float = 10.0) -> bool:
        """Export what is queued now (blocks; for tests and shutdown)."""
        ok = self._tracer_provider.force_flush(int(timeout * 1000))
        return self._meter_provider.force_flush(int(timeout * 1000)) and ok

    def stats(self) -> dict[str, Any]:
        with self._lock:
            d = dict(self._c)
        d["otel_queue"] = self.queue_len()
        d["otel_endpoint"] = self.traces_url
        return d

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        for shut in (self._tracer_provider.shutdown,
                     lambda: self._meter_provider.shutdown(timeout_millis=self._close_ms)):
            try:
                shut()
            except Exception:
                log.exception("otel: shutdown failed")
