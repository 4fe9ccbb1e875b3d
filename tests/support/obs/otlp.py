"""An OTLP/HTTP receiver for tests: decodes protobuf exports with opentelemetry-proto.

    with OtlpReceiver() as rx:                 # listens on 127.0.0.1:<free port>
        sink = OtelSink(rx.endpoint)           # http://127.0.0.1:<port>
        ...
        spans = rx.wait_for_spans(3)           # list[Span] with .attrs (dict) and .resource (dict)
        rx.metric_names()                      # {"gen_ai.client.operation.duration", ...}

Handles POST /v1/traces and /v1/metrics (gzip or plain bodies); any other path
gets 404. `status` can be set to make it answer e.g. 503 (counted, body kept).
"""

from __future__ import annotations

import gzip
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import (
    ExportMetricsServiceRequest,
    ExportMetricsServiceResponse,
)
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)


def any_value(v: Any) -> Any:
    """opentelemetry.proto.common.v1.AnyValue -> Python value."""
    kind = v.WhichOneof("value")
    if kind == "array_value":
        return [any_value(x) for x in v.array_value.values]
    if kind == "kvlist_value":
        return {kv.key: any_value(kv.value) for kv in v.kvlist_value.values}
    return getattr(v, kind) if kind else None


def attrs(kvs: Any) -> dict[str, Any]:
    return {kv.key: any_value(kv.value) for kv in kvs}


def _scoped(resources: Any, scopes: str, items: str) -> Iterator[tuple[dict[str, Any], Any, Any]]:
    """(resource attributes, instrumentation scope, span or metric) for each item of an export:
    traces and metrics nest the same way (resource -> scope -> items), under different names."""
    for r in resources:
        res = attrs(r.resource.attributes)
        for sc in getattr(r, scopes):
            for item in getattr(sc, items):
                yield res, sc.scope, item


@dataclass
class Span:
    name: str
    kind: int                  # proto enum: 3 = SPAN_KIND_CLIENT
    start_ns: int
    end_ns: int
    attrs: dict[str, Any]
    resource: dict[str, Any]
    status_code: int           # 0 unset, 1 ok, 2 error
    status_message: str
    scope: str


@dataclass
class Point:
    metric: str
    unit: str
    attrs: dict[str, Any]
    count: int
    sum: float
    bounds: list[float]
    bucket_counts: list[int]
    resource: dict[str, Any] = field(default_factory=dict)


class OtlpReceiver:
    def __init__(self, host: str = "127.0.0.1", port: int = 0):
        self.spans: list[Span] = []
        self.points: list[Point] = []
        self.requests: list[tuple[str, int, dict[str, str]]] = []    # (path, body size, headers)
        self.status = 200
        self._cv = threading.Condition()
        rx = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *a: Any) -> None:
                pass

            def do_POST(self) -> None:  # noqa: N802 - http.server API
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                if self.headers.get("Content-Encoding") == "gzip":
                    body = gzip.decompress(body)
                if self.path not in ("/v1/traces", "/v1/metrics"):
                    self.send_response(404)
                    self.end_headers()
                    return
                with rx._cv:
                    rx.requests.append((self.path, len(body), {k.lower(): v for k, v in self.headers.items()}))
                status = rx.status
                if status == 200:
                    if self.path == "/v1/traces":
                        rx._traces(body)
                        reply = ExportTraceServiceResponse().SerializeToString()
                    else:
                        rx._metrics(body)
                        reply = ExportMetricsServiceResponse().SerializeToString()
                else:
                    reply = b""
                self.send_response(status)
                self.send_header("Content-Type", "application/x-protobuf")
                self.send_header("Content-Length", str(len(reply)))
                self.end_headers()
                self.wfile.write(reply)

        self.server = ThreadingHTTPServer((host, port), Handler)
        self.server.daemon_threads = True
        self.port = self.server.server_address[1]
        self.endpoint = f"http://{host}:{self.port}"
        self._thread = threading.Thread(target=self.server.serve_forever, name="otlp-receiver", daemon=True)
        self._thread.start()

    def _traces(self, body: bytes) -> None:
        req = ExportTraceServiceRequest.FromString(body)
        self._keep(self.spans, [
            Span(s.name, s.kind, s.start_time_unix_nano, s.end_time_unix_nano, attrs(s.attributes),
                 res, s.status.code, s.status.message, scope.name)
            for res, scope, s in _scoped(req.resource_spans, "scope_spans", "spans")])

    def _metrics(self, body: bytes) -> None:
        req = ExportMetricsServiceRequest.FromString(body)
        self._keep(self.points, [
            Point(m.name, m.unit, attrs(p.attributes), p.count, p.sum, list(p.explicit_bounds),
                  list(p.bucket_counts), res)
            for res, _, m in _scoped(req.resource_metrics, "scope_metrics", "metrics")
            if m.WhichOneof("data") == "histogram"
            for p in m.histogram.data_points])

    def _keep(self, into: list, got: list) -> None:
        with self._cv:
            into.extend(got)
            self._cv.notify_all()

    def wait_for_spans(self, n: int, timeout: float = 20.0) -> list[Span]:
        deadline = time.monotonic() + timeout
        with self._cv:
            while len(self.spans) < n and (left := deadline - time.monotonic()) > 0:
                self._cv.wait(left)
            return list(self.spans)

    def wait_for_metrics(self, names: set[str], timeout: float = 20.0) -> list[Point]:
        deadline = time.monotonic() + timeout
        with self._cv:
            while not names <= {p.metric for p in self.points} and (left := deadline - time.monotonic()) > 0:
                self._cv.wait(left)
            return list(self.points)

    def metric_names(self) -> set[str]:
        with self._cv:
            return {p.metric for p in self.points}

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self._thread.join(timeout=5)

    def __enter__(self) -> "OtlpReceiver":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
