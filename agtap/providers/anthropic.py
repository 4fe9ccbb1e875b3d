"""Anthropic Messages API: POST [prefix]/v1/messages, plain JSON or SSE.

Shapes: https://docs.anthropic.com/en/api/messages (Message object, usage with
cache_creation_input_tokens / cache_read_input_tokens) and
https://docs.anthropic.com/en/docs/build-with-claude/streaming (message_start,
content_block_start/delta/stop, message_delta with cumulative usage, message_stop,
ping, error). Errors: {"type":"error","error":{"type":"rate_limit_error",...}}.
"""

from __future__ import annotations

from agtap.providers.base import add_tool, content_at, copy_counts, copy_strings, set_error

NAME = "anthropic"
STREAM_JSON_ARRAY = False   # streams are SSE


_VERTEX_OPS = (":rawPredict", ":streamRawPredict")


def match(req) -> bool:
    if req.method != "POST":
        return False
    p = req.path
    # Claude on Vertex AI: .../publishers/anthropic/models/{model}:streamRawPredict, Messages API body.
    return p.endswith("/v1/messages") or ("/publishers/anthropic/models/" in p and p.endswith(_VERTEX_OPS))


class _State:
    __slots__ = ()


_STATE = _State()


def begin(req, call):
    body = req.json_obj()
    m = body.get("model")
    call.model = m if isinstance(m, str) else None
    if "/publishers/anthropic/models/" in req.path:
        # Claude served (and billed) by Vertex AI: provider stays "anthropic", platform "vertex_ai"
        if call.model is None:
            call.model = req.path.rsplit("/models/", 1)[1].split(":", 1)[0]
    call.streaming = body.get("stream") is True
    call.operation = "chat"
    return _STATE


_USAGE = tuple((k, k) for k in ("input_tokens", "output_tokens", "cache_creation_input_tokens",
                                 "cache_read_input_tokens"))


def _usage(call, u) -> None:
    # message_delta usage is cumulative; input-side counts may repeat message_start's.
    copy_counts(call, u, _USAGE)


def _message(call, msg) -> None:
    if not isinstance(msg, dict):
        return
    copy_strings(call, msg, (("id", "id"), ("model", "response_model"), ("stop_reason", "stop_reason")))
    _usage(call, msg.get("usage"))
    content = msg.get("content")
    if isinstance(content, list):
        for block in content:
            if isinstance(block, dict) and block.get("type") in ("tool_use", "server_tool_use"):
                add_tool(call, block.get("name"))


def fast(state, call, event, data, ts) -> bool:
    """Events that need no JSON parse: text/tool deltas (just timing) and pings. True if handled."""
    if event == "content_block_delta":
        content_at(call, ts)
        return True
    return event == "ping"


def stream_end(event, data: bytes) -> bool:
    """`event: message_stop` ends a Messages stream (an `error` event ends it too)."""
    return event in ("message_stop", "error")


def feed(state, call, event, obj, ts) -> None:
    if not isinstance(obj, dict):
        return
    t = obj.get("type")
    if t == "content_block_delta":
        content_at(call, ts)
    elif t == "message_start":
        _message(call, obj.get("message"))
    elif t == "content_block_start":
        block = obj.get("content_block")
        if isinstance(block, dict) and block.get("type") in ("tool_use", "server_tool_use"):
            add_tool(call, block.get("name"))
    elif t == "message_delta":
        delta = obj.get("delta")
        if isinstance(delta, dict) and isinstance(delta.get("stop_reason"), str):
            call.stop_reason = delta["stop_reason"]
        _usage(call, obj.get("usage"))
    elif t == "message":
        _message(call, obj)
    elif t == "error":
        err = obj.get("error")
        set_error(call, err.get("type") if isinstance(err, dict) else None)


def finish(state, call) -> None:
    pass
