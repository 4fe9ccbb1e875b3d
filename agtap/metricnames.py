"""Every metric agtap exports: names, label sets and bucket boundaries, defined once.

The Prometheus sink (agtap/sinks/prometheus.py) and the OpenTelemetry sink
(agtap/sinks/otel.py) read their names from here; docs and dashboards should
too. Bucket boundaries are the OpenTelemetry GenAI semantic conventions'
advisory buckets, which fit LLM latencies (10 ms .. 80 s) and token counts
(1 .. 67M).
"""

from __future__ import annotations

from agtap.call import OUTCOMES

# --- bucket boundaries (GenAI semconv advisory buckets) ---
DURATION_BUCKETS_S: tuple[float, ...] = (
    0.01, 0.02, 0.04, 0.08, 0.16, 0.32, 0.64, 1.28, 2.56, 5.12, 10.24, 20.48, 40.96, 81.92,
)
TOKEN_BUCKETS: tuple[float, ...] = (
    1, 4, 16, 64, 256, 1024, 4096, 16384, 65536, 262144, 1048576, 4194304, 16777216, 67108864,
)
TTFT_BUCKETS_S: tuple[float, ...] = (
    0.001, 0.005, 0.01, 0.02, 0.04, 0.06, 0.08, 0.1, 0.25, 0.5, 0.75, 1.0, 2.5, 5.0, 7.5, 10.0,
)
# request/response sizes on the wire: 256 B .. 64 MiB, by powers of 4
BYTES_BUCKETS: tuple[float, ...] = tuple(float(256 * 4**i) for i in range(10))

# --- label values ---
LABEL_OVERFLOW = "other"       # value beyond the cardinality limit, or outside a closed set
LABEL_UNKNOWN = "unknown"      # the call did not say (e.g. no model in the request)
DEFAULT_LABEL_LIMIT = 200      # distinct values kept per open label (model, process)
MAX_LABEL_LEN = 128            # longer values are cut
STATUS_VALUES = OUTCOMES        # the `status` label: Call.outcome()
# the `token_type` label -> the Call field it counts
TOKEN_FIELDS = {
    "input": "input_tokens",
    "output": "output_tokens",
    "cache_read": "cache_read_input_tokens",
    "cache_creation": "cache_creation_input_tokens",
}
TOKEN_TYPES = tuple(TOKEN_FIELDS)

# --- Prometheus: agtap_* ---
PROM_PREFIX = "agtap"
# name -> (type, help, labels). Counters are given without the `_total`
# suffix (prometheus_client adds it); the exposed name is in the help text.
PROM_REQUEST_DURATION = "agtap_request_duration_seconds"
PROM_TOKEN_COUNT = "agtap_token_count"
PROM_TTFT = "agtap_time_to_first_token_seconds"
PROM_REQUESTS = "agtap_requests"                   # exposed as agtap_requests_total
PROM_REQUEST_BYTES = "agtap_request_bytes"
PROM_RESPONSE_BYTES = "agtap_response_bytes"
PROM_COST = "agtap_cost_usd"                       # exposed as agtap_cost_usd_total
PROM_LABEL_OVERFLOW = "agtap_label_overflow"       # exposed as agtap_label_overflow_total
PROM_LOST_RECORDS = "agtap_lost_records_total"
PROM_CUT_RECORDS = "agtap_cut_records_total"
PROM_PARSE_ERRORS = "agtap_parse_errors_total"
PROM_TARGETS = "agtap_targets"
PROM_BUILD_INFO = "agtap_build_info"
PROM_SINK_ERRORS = "agtap_metrics_sink_errors"     # exposed as agtap_metrics_sink_errors_total
PROM_SINK_COUNTER = "agtap_sink_events_total"      # a sink's own counters, by sink and counter
PROM_SINK_GAUGE = "agtap_sink_level"               # a sink's own levels (files kept, queue length)
LABELS_SINK = ("sink", "stat")

LABELS_DURATION = ("model", "provider", "platform", "process", "kind", "streaming")
LABELS_TOKENS = ("model", "provider", "platform", "process", "kind", "streaming", "token_type")
LABELS_TTFT = ("model", "provider", "platform", "process", "kind")
LABELS_REQUESTS = ("provider", "platform", "process", "kind", "streaming", "status")
LABELS_BYTES = ("provider", "platform", "process", "kind")
LABELS_COST = ("model", "provider", "platform", "process")
LABELS_OVERFLOW = ("label",)
LABELS_BUILD_INFO = ("version", "python")

PROM_HELP = {
    PROM_REQUEST_DURATION: "Call latency, first request byte to last response byte, seconds",
    PROM_TOKEN_COUNT: f"Tokens per call by token_type ({', '.join(TOKEN_TYPES)})",
    PROM_TTFT: "Time to first token of streamed calls, seconds",
    PROM_REQUESTS: f"Calls seen, by status ({', '.join(STATUS_VALUES)})",
    PROM_REQUEST_BYTES: "Request size on the wire, bytes",
    PROM_RESPONSE_BYTES: "Response size on the wire, bytes",
    PROM_COST: "Estimated cost of calls with a known price, USD",
    PROM_LABEL_OVERFLOW: "Label values collapsed to 'other' past the cardinality limit",
    PROM_TARGETS: "Attached capture targets (libssl files, node binaries)",
    PROM_BUILD_INFO: "agtap build information",
    PROM_SINK_ERRORS: "Calls the metrics sink failed to record",
    PROM_SINK_COUNTER: "Each sink's own counters (GetStats 'sinks'): lines, files, drops, failures",
    PROM_SINK_GAUGE: "Each sink's own levels (GetStats 'sinks'): files and bytes kept, queue length",
}

# The service's counters (Controller.get_stats, D-Bus GetStats) as Prometheus metrics, read
# at every scrape: GetStats key -> (metric name, "counter" | "gauge", help). Every integer
# in GetStats is here, in STATS_PER_CALL, or under "sinks" (tests/unit/test_stats.py).
PROM_STATS: dict[str, tuple[str, str, str]] = {
    "lost_records": (PROM_LOST_RECORDS, "counter", "Capture records lost (ring buffer full, or the daemon's backlog)"),
    "cut_records": (PROM_CUT_RECORDS, "counter", "Capture records cut at the per-call copy cap"),
    "parse_errors": (PROM_PARSE_ERRORS, "counter", "Exchanges that failed to parse"),
    "chunks": ("agtap_capture_records_total", "counter", "Capture records delivered by the ring buffer"),
    "capture_bytes": ("agtap_capture_bytes_total", "counter", "Payload bytes delivered by the ring buffer"),
    "lost_bytes": ("agtap_lost_bytes_total", "counter",
                   "Payload bytes lost with the records the ring buffer had no room for"),
    "lost_in_backlog": ("agtap_backlog_lost_records_total", "counter",
                        "Capture records dropped because the daemon's backlog was full (also in lost_records)"),
    "lost_in_backlog_bytes": ("agtap_backlog_lost_bytes_total", "counter",
                              "Bytes (payload and overhead) of the records dropped from the full backlog"),
    "read_failed_bytes": ("agtap_read_failed_bytes_total", "counter",
                          "Bytes the kernel could not read from the traced process (page not present)"),
    "conn_table_full": ("agtap_conn_table_full_total", "counter",
                        "Connections not tracked because the kernel's connection map was full"),
    "skipped_bytes": ("agtap_skipped_bytes_total", "counter",
                      "Bytes on connections of no interest, not copied (by design)"),
    "dropped_reads": ("agtap_ipc_reads_dropped_total", "counter",
                      "Reads on local IPC not used: the peer's writes carry the same bytes"),
    "h2_connections": ("agtap_http2_connections_total", "counter",
                       "HTTP/2 connections captured (the client preface was written)"),
    "boringssl_unprobed_processes": ("agtap_boringssl_unprobed_processes_total", "counter",
                                     "Processes of a BoringSSL binary (Bun, Claude Code) that exited before its "
                                     "probes went live (its first scan): their calls were not seen"),
    "boringssl_unprobed_connections": ("agtap_boringssl_unprobed_connections_total", "counter",
                                       "TCP connections a BoringSSL binary's processes held when its probes went "
                                       "live: calls written on them before then were not seen"),
    "go_unprobed_processes": ("agtap_go_unprobed_processes_total", "counter",
                              "Processes of a Go executable that exited before its probes went live (found at "
                              "its first exec, located meanwhile): their calls were not seen"),
    "go_unprobed_connections": ("agtap_go_unprobed_connections_total", "counter",
                                "TCP connections a Go executable's processes held when its probes went live: "
                                "calls written on them before then were not seen"),
    "late_attach": ("agtap_late_attach_total", "counter",
                    "Processes that wrote TLS application data before their per-process probes were live "
                    "(their first request may be missing)"),
    "probe_fallbacks": ("agtap_probe_fallbacks_total", "counter",
                        "Files whose data probes went host-wide because the uprobe limit was reached"),
    "demoted": ("agtap_demoted_processes_total", "counter",
                "Watched processes demoted (--demote-after-*): probes detached after ignored traffic and no LLM or "
                "MCP call; a later call of theirs is not seen"),
    "held_opens": ("agtap_held_opens_total", "counter",
                   "Opens of a probed library or executable by a starting runtime, held until its per-process "
                   "probes were live (its first call is seen)"),
    "hold_timeouts": ("agtap_hold_timeouts_total", "counter",
                      "Held opens let through after --hold-ms before the probes were live (that process's first "
                      "call may be missed; see late_attach)"),
    "watched_processes": ("agtap_watched_processes", "gauge", "Processes with TLS data probes of their own"),
    "uprobes": ("agtap_uprobes", "gauge", "Uprobes held (one perf event file descriptor each)"),
    "h2_dropped_bytes": ("agtap_http2_dropped_bytes_total", "counter",
                         "DATA bytes of HTTP/2 streams of no interest, not copied (by design)"),
    "h2_walks_lost": ("agtap_http2_walks_lost_total", "counter",
                      "HTTP/2 connections whose frames the kernel stopped following: copied whole from then on"),
    "h2_late_joins": ("agtap_http2_late_joins_total", "counter",
                      "HTTP/2 connections captured without their preface (opened before agtap started): "
                      "header blocks naming HPACK entries sent before are not guessed (h2_headers_unknown)"),
    "conns_open": ("agtap_connections_open", "gauge", "Connections the pipeline holds state for"),
    "conns_evicted": ("agtap_connections_evicted_total", "counter",
                      "Connections dropped for new ones past the connection limit (their call ends incomplete)"),
    "conns_expired": ("agtap_connections_expired_total", "counter",
                      "Connections idle past the timeout (their call ends incomplete)"),
    "ignored_exchanges": ("agtap_ignored_exchanges_total", "counter", "Requests no provider matched"),
    "unmatched_responses": ("agtap_unmatched_responses_total", "counter",
                            "Answers (HTTP, JSON-RPC) whose request was not seen: attached mid-stream, or missed"),
    "h2_headers_unknown": ("agtap_http2_headers_unknown_total", "counter",
                           "HTTP/2 header blocks that name HPACK entries sent before capture began "
                           "(not guessed: the exchange is dropped or ends incomplete)"),
    "bodies_truncated": ("agtap_bodies_truncated_total", "counter", "Bodies kept only up to the body cap"),
    "decompression_capped": ("agtap_decompression_capped_total", "counter",
                             "Bodies whose decoding stopped at the decompression cap"),
    "internal_errors": ("agtap_internal_errors_total", "counter",
                        "Exceptions caught in the pipeline (the connection's call ends incomplete)"),
    "emit_errors": ("agtap_emit_errors_total", "counter", "Finished calls the service failed to take"),
    "poll_errors": ("agtap_poll_errors_total", "counter", "Ring-buffer polls that failed"),
    "sink_errors": ("agtap_sink_errors_total", "counter", "Exceptions raised by a sink writing a call"),
    "signals_dropped": ("agtap_signals_dropped_total", "counter",
                        "CallCaptured signals not sent because the bus was not draining"),
    "log_write_errors": ("agtap_log_write_errors_total", "counter", "Event-log writes that failed"),
    "body_write_errors": ("agtap_body_write_errors_total", "counter", "Body-file writes that failed"),
}
# GetStats keys the per-call metrics (agtap_requests_total, agtap_token_count, ...) already count
STATS_PER_CALL = ("calls", "incomplete", "input_tokens", "output_tokens", "cache_creation_input_tokens",
                  "cache_read_input_tokens", "request_bytes", "response_bytes")
# sink stats that are levels, not counters (the rest of each sink's integers are counters)
SINK_GAUGES = frozenset({"files", "bytes", "models", "processes", "otel_queue"})

# --- OpenTelemetry: GenAI / MCP semantic conventions ---
OTEL_DURATION = "gen_ai.client.operation.duration"
OTEL_TOKEN_USAGE = "gen_ai.client.token.usage"
OTEL_TTFT = "gen_ai.server.time_to_first_token"
OTEL_MCP_DURATION = "mcp.client.operation.duration"
# gen_ai.token.type values (semconv): "input" counts cached input too (see otel.input_tokens_total)
OTEL_TOKEN_INPUT, OTEL_TOKEN_OUTPUT = "input", "output"
OTEL_UNITS = {OTEL_DURATION: "s", OTEL_TOKEN_USAGE: "{token}", OTEL_TTFT: "s", OTEL_MCP_DURATION: "s"}
OTEL_BUCKETS = {
    OTEL_DURATION: DURATION_BUCKETS_S,
    OTEL_TOKEN_USAGE: TOKEN_BUCKETS,
    OTEL_TTFT: TTFT_BUCKETS_S,
    OTEL_MCP_DURATION: DURATION_BUCKETS_S,
}
OTEL_DESCRIPTIONS = {
    OTEL_DURATION: "GenAI operation duration",
    OTEL_TOKEN_USAGE: "Number of input and output tokens used",
    OTEL_TTFT: "Time to generate first token for successful responses",
    OTEL_MCP_DURATION: "Duration of the MCP request as observed by the sender",
}
# gen_ai.provider.name comes from the platform table (agtap/providers/platforms.py)
SERVICE_NAME = "agtap"
