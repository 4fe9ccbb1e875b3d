"""Ollama's native API answers: POST /api/chat, /api/generate, /api/embed.

Shapes follow https://github.com/ollama/ollama/blob/main/docs/api.md: a stream (the default;
"stream": false for one body) is NDJSON (`application/x-ndjson`), one compact JSON object per
line, "done": false with a piece of message.content (chat) / response (generate), then a last
line with "done": true, done_reason, prompt_eval_count, eval_count and the durations (ns).
Tool calls come whole in message.tool_calls. Errors: {"error": "..."} with an HTTP status, or
as a line inside a stream.
"""

from __future__ import annotations

import json
from typing import Any

from .reply import Planned, Reply

NDJSON = "application/x-ndjson"
CREATED = "2026-11-30T12:00:00.000000Z"


def _line(obj: dict[str, Any]) -> bytes:
    return json.dumps(obj, separators=(",", ":"), ensure_ascii=False).encode() + b"\n"


def error(reply: Reply) -> Planned:
    text = reply.error_message if reply.status != 404 else "model \"x\" not found, try pulling it first"
    return Planned(reply.status, "application/json; charset=utf-8", body=_line({"error": text}))


def _final(reply: Reply) -> dict[str, Any]:
    return {"done": True, "done_reason": reply.stop_reason or "stop", "total_duration": 912345678,
            "load_duration": 1234567, "prompt_eval_count": reply.input_tokens, "prompt_eval_duration": 2345678,
            "eval_count": reply.output_tokens, "eval_duration": 345678901}


def generate(reply: Reply, path: str, request: dict[str, Any], stream: bool) -> Planned:
    """/api/chat (chat=True) or /api/generate."""
    if reply.status != 200:
        return error(reply)
    chat = path.endswith("/api/chat")
    model = reply.model or request.get("model") or "llama-fake"
    base = {"model": model, "created_at": CREATED}
    calls = [{"function": {"name": t.name, "arguments": t.arguments}} for t in reply.tool_calls]

    def piece(text: str, tool_calls: list | None = None) -> dict[str, Any]:
        if chat:
            msg: dict[str, Any] = {"role": "assistant", "content": text}
            if tool_calls:
                msg["tool_calls"] = tool_calls
            return {**base, "message": msg}
        return {**base, "response": text}

    if not stream:
        body = {**piece(reply.full_text(), calls), **_final(reply)}
        return Planned(200, "application/json; charset=utf-8", body=_line(body)[:-1])
    lines = [_line({**piece(p), "done": False}) for p in reply.text_pieces()]
    if reply.stream_error:
        lines.append(_line({"error": reply.error_message}))
        return Planned(200, NDJSON, events=lines)
    if calls:   # Ollama sends tool calls whole, in a line of their own
        lines.append(_line({**piece("", calls), "done": False}))
    lines.append(_line({**piece(""), **_final(reply)}))
    return Planned(200, NDJSON, events=lines)


def embed(reply: Reply, request: dict[str, Any]) -> Planned:
    if reply.status != 200:
        return error(reply)
    inputs = request.get("input")
    n = len(inputs) if isinstance(inputs, list) else 1
    body = {"model": reply.model or request.get("model") or "embed-fake",
            "embeddings": [[0.25, -0.5, 0.125] for _ in range(n)],
            "total_duration": 14143917, "load_duration": 1019500, "prompt_eval_count": reply.input_tokens}
    return Planned(200, "application/json; charset=utf-8", body=_line(body)[:-1])
