"""What the fake API is told to answer: one `Reply` per LLM call, in provider-neutral terms.

Each provider module (shapes_anthropic, shapes_openai, shapes_gemini) turns a Reply into
that provider's own wire format, so one script drives any SDK and a test can compare the
tracer's event (model, tokens, stop reason, tools) with the Reply it scripted.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from typing import Any


@dataclass
class ToolCall:
    """A tool the fake model asks the client to call."""

    name: str
    arguments: dict[str, Any] = field(default_factory=dict)
    id: str | None = None  # default: a provider-style id derived from the exchange number

    def arguments_json(self) -> str:
        return json.dumps(self.arguments, separators=(",", ":"))


@dataclass
class Reply:
    """One scripted answer. Defaults give a short, successful text completion."""

    text: str = "Hello from the fake API."
    model: str | None = None  # None: echo the model the request named
    input_tokens: int = 12
    output_tokens: int = 6
    cache_creation_input_tokens: int = 0  # Anthropic only
    cache_read_input_tokens: int = 0  # Anthropic cache_read; OpenAI cached_tokens; Gemini cachedContentTokenCount
    # Provider-native stop reason; None picks the natural one ("end_turn"/"tool_use",
    # "stop"/"tool_calls", "STOP") from whether tool_calls is empty.
    stop_reason: str | None = None
    tool_calls: list[ToolCall] = field(default_factory=list)
    stream: bool | None = None  # None: stream exactly when the request asked to
    # Streaming shape: the text is cut into `events` text-delta events (None: one per word).
    events: int | None = None
    # If set, the text is replaced by `events` (default 1) pieces of exactly this many
    # ASCII characters each: for tests about large or many SSE events.
    event_size: int | None = None
    # Stream events per socket write: 1 = each event its own write (and TLS record); N > 1
    # packs N events (the last batch with the final chunk) into one write, like buffering servers.
    batch: int = 1
    delay: float = 0.0  # seconds before the response's first byte (latency tests)
    event_delay: float = 0.0  # seconds between SSE events (time-to-first-token tests)
    status: int = 200  # != 200: answer with the provider's error body instead
    error_type: str | None = None  # provider error type; None: derived from status
    error_message: str = "Fake API scripted error."
    # gzip the response body when the client sent Accept-Encoding: gzip. None: gzip
    # non-streaming bodies only (what real APIs do); True: streams too; False: never.
    gzip: bool | None = None
    headers: dict[str, str] = field(default_factory=dict)  # extra response headers
    close: bool = False  # answer with Connection: close and close the connection
    # Cut the connection mid-response, like a dying server or proxy: streams stop after this
    # many events (no final chunk, no message_stop); other bodies after half their bytes.
    drop_after: int | None = None
    # Only requests whose path contains this take the reply (e.g. "/v1/messages",
    # ":streamGenerateContent"); None: any LLM route. For clients of several providers at once.
    route: str | None = None
    # Streams only: after the text deltas, end with the provider's in-stream error instead of
    # a normal finish (Anthropic `event: error`; OpenAI chat `data: {"error": ...}`), using
    # error_type (default overloaded_error / server_error) and error_message.
    stream_error: bool = False

    def text_pieces(self) -> list[str]:
        """The text as it is cut into stream deltas; "".join() gives the full text."""
        if self.event_size is not None:
            n = self.events if self.events is not None else 1
            letters = "abcdefghijklmnopqrstuvwxyz"
            return [letters[i % 26] * self.event_size for i in range(n)]
        if self.events is not None:
            n = max(1, self.events)
            size = -(-len(self.text) // n) if self.text else 0
            pieces = [self.text[i * size:(i + 1) * size] for i in range(n)]
            return pieces
        return re.findall(r"\S+\s*|\s+", self.text) or [""]

    def full_text(self) -> str:
        return "".join(self.text_pieces())


@dataclass
class Planned:
    """A provider's answer, ready for the HTTP layer: either `body` or a list of `events`."""

    status: int
    content_type: str
    body: bytes | None = None
    events: list[bytes] | None = None  # each already framed (SSE event or JSON-array piece)
    headers: list[tuple[str, str]] = field(default_factory=list)


def sse(data: Any, event: str | None = None, newline: str = "\n") -> bytes:
    """One Server-Sent Event (https://html.spec.whatwg.org/multipage/server-sent-events.html)."""
    # ensure_ascii=False: the APIs send UTF-8 as is, so multi-byte characters reach the
    # tracer raw (and may straddle TLS records), as in real traffic.
    payload = data if isinstance(data, str) else json.dumps(data, separators=(",", ":"), ensure_ascii=False)
    head = f"event: {event}{newline}" if event else ""
    return f"{head}data: {payload}{newline}{newline}".encode()


def dumps(obj: Any, pretty: bool = True) -> bytes:
    """JSON body. OpenAI and Gemini send theirs pretty-printed (2 spaces), Anthropic compact."""
    if pretty:
        return json.dumps(obj, indent=2, ensure_ascii=False).encode()
    return json.dumps(obj, separators=(",", ":"), ensure_ascii=False).encode()


# HTTP status -> error type, per provider docs:
#   https://docs.anthropic.com/en/api/errors
#   https://platform.openai.com/docs/guides/error-codes
#   https://ai.google.dev/gemini-api/docs/troubleshooting#error-codes
ANTHROPIC_ERRORS = {
    400: "invalid_request_error", 401: "authentication_error", 403: "permission_error",
    404: "not_found_error", 413: "request_too_large", 429: "rate_limit_error",
    500: "api_error", 529: "overloaded_error",
}
OPENAI_ERRORS = {
    400: ("invalid_request_error", None), 401: ("invalid_request_error", "invalid_api_key"),
    403: ("invalid_request_error", "unsupported_country_region_territory"),
    404: ("invalid_request_error", "model_not_found"),
    429: ("requests", "rate_limit_exceeded"), 500: ("server_error", None),
    503: ("server_error", None),
}
GEMINI_ERRORS = {
    400: "INVALID_ARGUMENT", 403: "PERMISSION_DENIED", 404: "NOT_FOUND",
    429: "RESOURCE_EXHAUSTED", 500: "INTERNAL", 503: "UNAVAILABLE", 504: "DEADLINE_EXCEEDED",
}
