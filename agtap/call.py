"""The call event: the one definition of what agtap records per call.

Every sink (JSONL, journal, D-Bus, Prometheus, OpenTelemetry, the TUI) reads
these fields and nothing else. The first twenty are the original tool's schema,
kept name for name and meaning: `provider` is the API family (PROVIDERS), `id`
the API's own response id (msg_..., chatcmpl-..., resp_..., Gemini's
responseId). agtap's own id for a call is `event_id`; it names the body file.
Where the call was served is `platform` (agtap/providers/platforms.py).
"""

from __future__ import annotations

import dataclasses
import datetime as _dt
import re
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

KIND_LLM = "llm_call"
KIND_MCP = "mcp_call"

# The API families, as the original tool documents `provider`. Where a call was
# served (Vertex AI, Groq, a local server, ...) is `platform`, not the provider.
PROVIDERS = ("anthropic", "openai", "google", "aws_bedrock", "ollama", "mcp")

# --- the event id: agtap's own, never from the wire ---
# 32 lowercase hex digits (a uuid4). It names the call's body file, so every
# place that makes or checks one uses these two functions.
EVENT_ID_RE = re.compile(r"[0-9a-f]{32}")
EVENT_ID_FORMAT = "32 lowercase hex digits"


def new_event_id() -> str:
    return uuid.uuid4().hex


def is_event_id(value: Any) -> bool:
    return isinstance(value, str) and EVENT_ID_RE.fullmatch(value) is not None


# --- how a call ended: the one answer to "is this call an error?" ---
# error       the other side said no: HTTP status >= 400, a provider error body,
#             a JSON-RPC error or an MCP tool result with isError (the providers
#             record those as error_type and stop_reason "error:<type>")
# incomplete  no error seen, but the call did not finish (cut, closed, process exit,
#             parse error); an error wins over incomplete
# ok          everything else
# Every sink and view asks outcome()/is_error(): the journal's priority, the
# Prometheus `status` label, the OpenTelemetry span status and error.type, the
# TUI's colour.
OUTCOME_OK, OUTCOME_ERROR, OUTCOME_INCOMPLETE = "ok", "error", "incomplete"
OUTCOMES = (OUTCOME_OK, OUTCOME_ERROR, OUTCOME_INCOMPLETE)
ERROR_STOP_PREFIX = "error:"


def _outcome(error_type: Any, http_status: Any, stop_reason: Any, incomplete: Any) -> str:
    if (error_type
            or (isinstance(http_status, int) and not isinstance(http_status, bool) and http_status >= 400)
            or (isinstance(stop_reason, str) and stop_reason.startswith(ERROR_STOP_PREFIX))):
        return OUTCOME_ERROR
    return OUTCOME_INCOMPLETE if incomplete else OUTCOME_OK


def event_outcome(ev: Mapping[str, Any]) -> str:
    """The outcome of a call given as its event (an event read back from the bus or a log)."""
    return _outcome(ev.get("error_type"), ev.get("http_status"), ev.get("stop_reason"), ev.get("incomplete"))


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


# The event key that held the response id before `id` did (agtap 0.1.0): written for
# one more release as a copy of `id`, then dropped. README "Changes".
RESPONSE_ID_ALIAS = "response_id"


@dataclass(slots=True)
class Call:
    # --- the original tool's fields, in its order ---
    ts: str                                  # RFC 3339 UTC, first request byte
    id: str | None                           # the API's response id (msg_..., chatcmpl-...), None if it gave none
    pid: int
    proc: str                                # process name
    provider: str                            # the API family: one of PROVIDERS
    server_address: str                      # Host header / :authority, "" for stdio
    kind: str                                # KIND_LLM or KIND_MCP
    model: str | None = None                 # request model (LLM) or JSON-RPC method (MCP)
    input_tokens: int | None = None
    output_tokens: int | None = None
    cache_creation_input_tokens: int | None = None
    cache_read_input_tokens: int | None = None
    latency_ms: float | None = None          # first request byte written -> last response byte read
    stop_reason: str | None = None           # provider's reason, or ERROR_STOP_PREFIX + error_type
    tools: list[str] = field(default_factory=list)  # tool names called (tool_use, tool_calls, functionCall, tools/call)
    streaming: bool = False
    ttft_ms: float | None = None             # first request byte -> first content-bearing event
    body_path: str | None = None
    request_bytes: int = 0                   # bytes on the wire (after TLS, before decoding)
    response_bytes: int = 0
    # --- agtap's additions ---
    event_id: str = field(default_factory=new_event_id)  # agtap's own id: names the body file
    platform: str = ""                       # where it was served (providers/platforms.py): vertex_ai, groq, local, ...
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
    server_port: int | None = None
    thoughts_tokens: int | None = None       # Gemini thoughtsTokenCount / OpenAI reasoning tokens
    error_type: str | None = None
    mcp_session_id: str | None = None
    jsonrpc_id: str | None = None
    http_version: str | None = None          # "1.1" | "2": the HTTP the call went over (LLM and MCP); None over stdio
    # monotonic timing, for sinks that need exact span times (not serialised)
    start_ns: int = 0
    end_ns: int = 0
    wall_start_ns: int = 0
    bodies: CallBodies | None = None

    _PRIVATE = ("start_ns", "end_ns", "wall_start_ns", "bodies")

    @property
    def response_id(self) -> str | None:
        """Deprecated alias of `id` (what agtap called the response id before `id` became it)."""
        return self.id

    def to_dict(self) -> dict[str, Any]:
        """The event as written to JSONL, the journal and D-Bus (no bodies, no monotonic times)."""
        d = {}
        for name in _EVENT_FIELDS:
            d[name] = getattr(self, name)
            if name == "response_model":
                d[RESPONSE_ID_ALIAS] = self.id   # kept for one release; read `id`
        if d["cost_usd"] is None:
            del d["cost_usd"]
        if not d["incomplete"]:
            del d["incomplete_reason"]
        return d

    def outcome(self) -> str:
        """OUTCOME_OK | OUTCOME_ERROR | OUTCOME_INCOMPLETE (see OUTCOMES above)."""
        return _outcome(self.error_type, self.http_status, self.stop_reason, self.incomplete)

    def is_error(self) -> bool:
        return self.outcome() == OUTCOME_ERROR


# The event's fields in order, found once (dataclasses.fields() per call was a third of to_dict).
_EVENT_FIELDS = tuple(f.name for f in dataclasses.fields(Call) if f.name not in Call._PRIVATE)


def rfc3339(wall_ns: int) -> str:
    """Wall-clock ns -> '2026-11-26T23:37:25.123456Z'."""
    t = _dt.datetime.fromtimestamp(wall_ns / 1e9, tz=_dt.timezone.utc)
    return t.strftime("%Y-%m-%dT%H:%M:%S.%fZ")
