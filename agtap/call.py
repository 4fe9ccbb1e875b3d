"""The call event: the one definition of what agtap records per call.

Every sink (JSONL, journal, D-Bus, Prometheus, OpenTelemetry, the TUI) reads
these fields and nothing else. Fields are added, never renamed: the first
twenty are the original tool's schema, kept name for name.
"""

from __future__ import annotations

import dataclasses
import datetime as _dt
from dataclasses import dataclass, field
from typing import Any

KIND_LLM = "llm_call"
KIND_MCP = "mcp_call"

PROVIDERS = ("anthropic", "openai", "gemini", "vertex_ai", "mcp")


@dataclass(slots=True)
class CallBodies:
    """What the bodies sink stores for a call. Never serialised into the event."""

    request_headers: list[tuple[str, str]] = field(default_factory=list)
    request_target: str = ""          # method and path+query, e.g. "POST /v1/messages"
    request_body: bytes = b""         # decoded (Content-Encoding undone)
    response_status: int = 0
    response_headers: list[tuple[str, str]] = field(default_factory=list)
    response_body: bytes = b""        # decoded; SSE kept as its event text
    response_events: list[dict[str, Any]] = field(default_factory=list)  # JSON-RPC messages


@dataclass(slots=True)
class Call:
    # --- the original tool's fields, in its order ---
    ts: str                                  # RFC 3339 UTC, first request byte
    id: str                                  # agtap's own id for the call (uuid4 hex)
    pid: int
    proc: str                                # process name
    provider: str                            # one of PROVIDERS
    server_address: str                      # Host header / :authority, "" for stdio
    kind: str                                # KIND_LLM or KIND_MCP
    model: str | None = None                 # request model (LLM) or JSON-RPC method (MCP)
    input_tokens: int | None = None
    output_tokens: int | None = None
    cache_creation_input_tokens: int | None = None
    cache_read_input_tokens: int | None = None
    latency_ms: float | None = None          # first request byte written -> last response byte read
    stop_reason: str | None = None           # provider's reason, or "error:<type>"
    tools: list[str] = field(default_factory=list)  # tool names called (tool_use, tool_calls, functionCall, tools/call)
    streaming: bool = False
    ttft_ms: float | None = None             # first request byte -> first content-bearing event
    body_path: str | None = None
    request_bytes: int = 0                   # bytes on the wire (after TLS, before decoding)
    response_bytes: int = 0
    # --- agtap's additions ---
    unit: str = ""                           # systemd unit of the process
    container_id: str = ""
    exe: str = ""
    transport: str = ""                      # tls | socket | pipe
    cost_usd: float | None = None            # absent for models without a price
    incomplete: bool = False
    incomplete_reason: str | None = None     # "process_exit", "connection_closed", "cut", "parse_error: ..."
    http_status: int | None = None
    operation: str | None = None             # chat | generate_content | responses | MCP method
    response_model: str | None = None
    response_id: str | None = None
    server_port: int | None = None
    thoughts_tokens: int | None = None       # Gemini thoughtsTokenCount / OpenAI reasoning tokens
    error_type: str | None = None
    mcp_session_id: str | None = None
    jsonrpc_id: str | None = None
    # monotonic timing, for sinks that need exact span times (not serialised)
    start_ns: int = 0
    end_ns: int = 0
    wall_start_ns: int = 0
    bodies: CallBodies | None = None

    _PRIVATE = ("start_ns", "end_ns", "wall_start_ns", "bodies")

    def to_dict(self) -> dict[str, Any]:
        """The event as written to JSONL, the journal and D-Bus (no bodies, no monotonic times)."""
        d = {f.name: getattr(self, f.name) for f in dataclasses.fields(self) if f.name not in self._PRIVATE}
        if d["cost_usd"] is None:
            del d["cost_usd"]
        if not d["incomplete"]:
            del d["incomplete_reason"]
        return d


def rfc3339(wall_ns: int) -> str:
    """Wall-clock ns -> '2026-11-26T23:37:25.123456Z'."""
    t = _dt.datetime.fromtimestamp(wall_ns / 1e9, tz=_dt.timezone.utc)
    return t.strftime("%Y-%m-%dT%H:%M:%S.%fZ")
