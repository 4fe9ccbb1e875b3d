"""Call records as the pipeline produces them, for sink tests.

Field values follow what the providers layer fills in for each API (see
agtap/call.py): model from the request, tokens from the usage block, monotonic
start/end plus the wall-clock start of the first request byte.
"""

from __future__ import annotations

import time
import uuid

from agtap.call import KIND_LLM, KIND_MCP, Call, rfc3339


def _times(latency_ms: float, wall_start_ns: int | None) -> tuple[int, int, int]:
    wall = time.time_ns() - int(latency_ms * 1e6) if wall_start_ns is None else wall_start_ns
    start = time.monotonic_ns() - int(latency_ms * 1e6)
    return wall, start, start + int(latency_ms * 1e6)


def llm_call(provider: str = "anthropic", model: str = "claude-sonnet-4-5", *, proc: str = "python3",
             pid: int = 4242, input_tokens: int | None = 100, output_tokens: int | None = 20,
             cache_read: int | None = None, cache_creation: int | None = None, latency_ms: float = 1234.5,
             ttft_ms: float | None = None, streaming: bool = False, stop_reason: str | None = "end_turn",
             tools: list[str] | None = None, wall_start_ns: int | None = None, cost_usd: float | None = None,
             http_status: int | None = 200, error_type: str | None = None, platform: str | None = None) -> Call:
    """provider: the API family; platform defaults to the family's first party (google: the Gemini API)."""
    wall, start, end = _times(latency_ms, wall_start_ns)
    platform = platform or {"google": "gemini"}.get(provider, provider)
    host = {
        "anthropic": "api.anthropic.com",
        "openai": "api.openai.com",
        "gemini": "generativelanguage.googleapis.com",
        "vertex_ai": "us-central1-aiplatform.googleapis.com",
        "groq": "api.groq.com",
    }[platform]
    operation = "generate_content" if provider == "google" else "chat"
    response_id = {"anthropic": "msg_01", "openai": "chatcmpl-"}.get(provider, "") + uuid.uuid4().hex[:20]
    return Call(
        ts=rfc3339(wall), id=response_id, pid=pid, proc=proc, provider=provider, platform=platform,
        server_address=host,
        kind=KIND_LLM, model=model, input_tokens=input_tokens, output_tokens=output_tokens,
        cache_creation_input_tokens=cache_creation, cache_read_input_tokens=cache_read, latency_ms=latency_ms,
        stop_reason=stop_reason, tools=list(tools or []), streaming=streaming, ttft_ms=ttft_ms,
        request_bytes=812, response_bytes=2048, exe=f"/usr/bin/{proc}", transport="tls", cost_usd=cost_usd,
        http_status=http_status, operation=operation, response_model=model + "-20250929" if provider == "anthropic" and model else model,
        server_port=443, error_type=error_type,
        start_ns=start, end_ns=end, wall_start_ns=wall,
    )


def mcp_call(method: str = "tools/call", tool: str | None = "add", *, proc: str = "node", pid: int = 777,
             latency_ms: float = 12.5, jsonrpc_id: str = "3", session_id: str | None = None,
             transport: str = "pipe", stop_reason: str | None = None, wall_start_ns: int | None = None) -> Call:
    wall, start, end = _times(latency_ms, wall_start_ns)
    return Call(
        ts=rfc3339(wall), id=None, pid=pid, proc=proc, provider="mcp", platform="local",  # stdio, or 127.0.0.1
        server_address="" if transport == "pipe" else "127.0.0.1", kind=KIND_MCP, model=method,
        latency_ms=latency_ms, stop_reason=stop_reason, tools=[tool] if tool else [], request_bytes=120,
        response_bytes=90, exe=f"/usr/bin/{proc}", transport=transport, operation=method,
        server_port=None if transport == "pipe" else 8000, jsonrpc_id=jsonrpc_id, mcp_session_id=session_id,
        start_ns=start, end_ns=end, wall_start_ns=wall,
    )
