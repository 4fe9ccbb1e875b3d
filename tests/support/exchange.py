"""Exchange: one HTTP request and its response as they crossed the FakeApi's socket."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from .reply import Reply


@dataclass
class Exchange:
    """One request and its response, as they crossed the wire."""

    seq: int  # 1-based order of arrival over this FakeApi
    conn: int  # connection number; equal for requests reusing a keep-alive connection
    client_port: int
    method: str = ""
    target: str = ""  # request-target as sent, with the query string
    path: str = ""
    query: dict[str, list[str]] = field(default_factory=dict)
    headers: list[tuple[str, str]] = field(default_factory=list)  # as received: order and case kept
    body: bytes = b""  # request body (de-chunked)
    raw_request: bytes = b""  # every byte read for this request: head, framing, body
    status: int = 0
    response_headers: list[tuple[str, str]] = field(default_factory=list)
    response_body: bytes = b""  # entity as the client sees it after un-gzip and de-chunking
    raw_response: bytes = b""  # every byte written for this response (gzip/chunked included)
    events: list[bytes] = field(default_factory=list)  # SSE events / JSON-array pieces as framed
    gzipped: bool = False
    dropped: bool = False  # the server cut the connection mid-response (Reply.drop_after)
    client_gone: str | None = None  # the write error, if the client vanished mid-response
    reply: Reply | None = None  # the scripted reply used, for LLM routes
    http_version: str = "1.1"  # "2": a stream of an HTTP/2 connection (h2serve.py)
    t_request: float = 0.0  # time.time() when the request was fully read
    t_first_byte: float = 0.0  # ... when the response's first byte was written
    t_done: float = 0.0  # ... when the last byte was written
    # The same instants on CLOCK_MONOTONIC (time.monotonic_ns), the clock BPF's
    # bpf_ktime_get_ns() reads, plus when the request's first byte arrived: to check
    # latency_ms / ttft_ms against what the server saw.
    ns_request_start: int = 0
    ns_request: int = 0
    ns_first_byte: int = 0
    ns_first_event: int = 0  # first SSE event / stream piece written (0: not a stream)
    ns_done: int = 0

    def header(self, name: str) -> str | None:
        name = name.lower()
        return next((v for k, v in self.headers if k.lower() == name), None)

    def response_header(self, name: str) -> str | None:
        name = name.lower()
        return next((v for k, v in self.response_headers if k.lower() == name), None)

    def json(self) -> Any:
        return json.loads(self.body)

    def response_json(self) -> Any:
        return json.loads(self.response_body)

    def sse_data(self) -> list[Any]:
        """The `data:` payloads of the response's SSE events, JSON-decoded ("[DONE]" kept as str)."""
        out: list[Any] = []
        for event in self.events:
            for line in event.decode().splitlines():
                if line.startswith("data: "):
                    payload = line[len("data: "):]
                    out.append(payload if payload == "[DONE]" else json.loads(payload))
        return out
