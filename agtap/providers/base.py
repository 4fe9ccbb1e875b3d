"""What every provider module shares: the protocol, the request view, the call template, field helpers."""

from __future__ import annotations

import math

from typing import Any, Protocol, runtime_checkable

from agtap.call import ERROR_STOP_PREFIX, Call, CallBodies, rfc3339
from agtap.providers.platforms import platform_for
from agtap.wire.http1 import header_value
from agtap.wire.jsontext import loads


@runtime_checkable
class LlmProvider(Protocol):
    """The entry points every LLM provider module has (see agtap/providers/__init__.py).

    A module, not a class, satisfies it: `isinstance(anthropic, LlmProvider)`.
    """

    NAME: str
    STREAM_JSON_ARRAY: bool

    def match(self, req: "Request") -> bool: ...
    def begin(self, req: "Request", call: Call) -> Any: ...
    def fast(self, state: Any, call: Call, event: str | None, data: bytes, ts: int) -> bool: ...
    def feed(self, state: Any, call: Call, event: str | None, obj: Any, ts: int) -> None: ...
    def stream_end(self, event: str | None, data: bytes) -> bool: ...
    def finish(self, state: Any, call: Call) -> None: ...


class Request:
    """An HTTP request as providers see it: head plus the (decoded) body."""

    __slots__ = ("method", "target", "path", "query", "headers", "body", "body_complete", "_json")

    def __init__(self, method: str, target: str, headers: list[tuple[str, str]], body: bytes = b"",
                 body_complete: bool = True):
        self.method = method
        self.target = target
        path, _, query = target.partition("?")
        self.path = path
        self.query = query
        self.headers = headers
        self.body = body
        self.body_complete = body_complete
        self._json: Any = None

    def header(self, name: str) -> str | None:
        return header_value(self.headers, name)

    def json(self) -> Any:
        """The body as JSON, or None if it is not JSON (parsed once)."""
        if self._json is None:
            try:
                self._json = loads(self.body) if self.body else False
            except (ValueError, UnicodeDecodeError):
                self._json = False
        return self._json if self._json is not False else None

    def json_obj(self) -> dict:
        j = self.json()
        return j if isinstance(j, dict) else {}


class Origin:
    """Who made the call: copied from the chunk that carried the first request byte."""

    __slots__ = ("pid", "proc", "exe", "unit", "container_id", "transport")

    def __init__(self, pid: int = 0, proc: str = "", exe: str = "", unit: str = "", container_id: str = "",
                 transport: str = ""):
        self.pid, self.proc, self.exe, self.unit = pid, proc, exe, unit
        self.container_id, self.transport = container_id, transport

    @classmethod
    def of(cls, chunk) -> "Origin":
        t = chunk.transport
        return cls(chunk.pid, chunk.proc, chunk.exe, chunk.unit, chunk.container_id,
                   t.value if hasattr(t, "value") else str(t))


def split_host(host: str | None, transport: str) -> tuple[str, int | None]:
    """Host header -> (address, port); default port by transport (443 for TLS, 80 for plain)."""
    default = 443 if transport == "tls" else 80
    if not host:
        return "", None if transport == "pipe" else default
    host = host.strip()
    if host.startswith("["):  # [v6]:port
        end = host.find("]")
        addr, rest = host[1:end], host[end + 1:]
        port = rest[1:] if rest.startswith(":") else ""
    else:
        addr, _, port = host.partition(":")
    try:
        return addr, int(port) if port else default
    except ValueError:
        return addr, default


def never(*_args) -> bool:
    """`fast` and `stream_end` of a provider whose answers are one JSON body (embeddings):
    nothing to skip, no stream to end."""
    return False


def new_call(origin: Origin, provider: str, kind: str, start_ns: int, wall_ns: int) -> Call:
    return Call(
        ts=rfc3339(wall_ns) if wall_ns else "", id=None, pid=origin.pid, proc=origin.proc,
        provider=provider, server_address="", kind=kind, unit=origin.unit, container_id=origin.container_id,
        exe=origin.exe, transport=origin.transport, start_ns=start_ns, wall_start_ns=wall_ns, bodies=CallBodies(),
    )


def served_by(call: Call, host: str, port: int | None, path: str = "") -> None:
    """Where the call went: server_address/port from the Host header, platform from host and path."""
    call.server_address, call.server_port = host, port
    call.platform = platform_for(host, path, call.transport)


def content_at(call: Call, ts_ns: int) -> None:
    """The first content-bearing event arrived at ts_ns (sets ttft once)."""
    if call.ttft_ms is None and call.start_ns:
        call.ttft_ms = round(max(0, ts_ns - call.start_ns) / 1e6, 3)


def set_error(call: Call, etype: Any) -> None:
    etype = str(etype) if etype not in (None, "") else "unknown"
    call.stop_reason = ERROR_STOP_PREFIX + etype
    call.error_type = etype


def as_int(v: Any) -> int | None:
    if isinstance(v, bool):
        return None
    if isinstance(v, int):
        return v
    if isinstance(v, float):
        return int(v) if math.isfinite(v) else None      # JSON 1e999 is inf; NaN is accepted by json
    if isinstance(v, str) and v.isascii() and v.isdigit():  # '²'.isdigit() is True, int('²') fails
        return int(v)
    return None


def copy_strings(call: Call, obj: Any, fields) -> None:
    """call.<field> = obj[<key>] for each (key, field) whose value is a string; obj may be anything."""
    if isinstance(obj, dict):
        for key, field in fields:
            v = obj.get(key)
            if isinstance(v, str):
                setattr(call, field, v)


def copy_counts(call: Call, obj: Any, fields) -> None:
    """call.<field> = obj[<key>] for each (key, field) whose value is a whole count (as_int); obj may be anything."""
    if isinstance(obj, dict):
        for key, field in fields:
            v = as_int(obj.get(key))
            if v is not None:
                setattr(call, field, v)


def add_tool(call: Call, name: Any) -> None:
    if isinstance(name, str) and name:
        call.tools.append(name)
