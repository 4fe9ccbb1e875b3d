"""Ollama's native API: POST /api/chat, /api/generate, /api/embed (and the older /api/embeddings).

Shapes: https://github.com/ollama/ollama/blob/main/docs/api.md. Chat and generate
stream by default ("stream": false asks for one JSON body): the stream is NDJSON
(`application/x-ndjson`, framed by the exchange), one object per line, each with
"done": false and a piece of message.content (chat) or response (generate); the
last has "done": true, done_reason ("stop", "length", "load"), prompt_eval_count
(input tokens) and eval_count (output tokens). Tool calls come whole in
message.tool_calls[].function.name. /api/embed answers {"embeddings": [...],
"prompt_eval_count": n}. Errors: an HTTP status with {"error": "<message>"}, or an
{"error": ...} line inside a stream. Ollama answers with no response id.
"""

from __future__ import annotations

from agtap.providers.base import add_tool, content_at, copy_counts, set_error

NAME = "ollama"
STREAM_JSON_ARRAY = False   # streams are NDJSON, framed by the exchange
_OPS = {"/api/chat": "chat", "/api/generate": "text_completion", "/api/embed": "embeddings",
        "/api/embeddings": "embeddings"}
_USAGE = (("prompt_eval_count", "input_tokens"), ("eval_count", "output_tokens"))


def _op(path: str) -> str | None:
    for suffix, op in _OPS.items():
        if path.endswith(suffix):
            return op
    return None


def match(req) -> bool:
    return req.method == "POST" and _op(req.path) is not None


class _State:
    __slots__ = ("stream_error",)

    def __init__(self):
        self.stream_error = False   # an {"error": ...} object arrived in a 200 answer


def begin(req, call):
    body = req.json_obj()
    m = body.get("model")
    call.model = m if isinstance(m, str) else None
    call.operation = _op(req.path)
    # Ollama streams unless told not to; embeddings never stream.
    call.streaming = call.operation != "embeddings" and body.get("stream") is not False
    return _State()


def fast(state, call, event, data, ts) -> bool:
    """A plain content line of a stream only times the first token: no parse needed."""
    if b'"done":false' not in data or b'"tool_calls"' in data or b'"error"' in data:
        return False
    empty = b'"content":""' in data or b'"response":""' in data
    if not empty or (b'"thinking":"' in data and b'"thinking":""' not in data):
        content_at(call, ts)
    return True


def stream_end(event, data: bytes) -> bool:
    """The line with "done": true is the last of an Ollama stream."""
    return b'"done":true' in data or b'"done": true' in data


def feed(state, call, event, obj, ts) -> None:
    if not isinstance(obj, dict):
        return
    if "error" in obj:
        state.stream_error = True
        return
    if isinstance(obj.get("model"), str):
        call.response_model = obj["model"]
    msg = obj.get("message")
    tcs = msg.get("tool_calls") if isinstance(msg, dict) else None
    if isinstance(tcs, list):
        for tc in tcs:
            fn = tc.get("function") if isinstance(tc, dict) else None
            add_tool(call, fn.get("name") if isinstance(fn, dict) else None)
    if call.streaming and (tcs or (msg.get("content") or msg.get("thinking") if isinstance(msg, dict)
                                   else obj.get("response"))):
        content_at(call, ts)   # a streamed piece (time to first token means nothing for one body)
    if obj.get("done") is True and isinstance(obj.get("done_reason"), str):
        call.stop_reason = obj["done_reason"]
    copy_counts(call, obj, _USAGE)


def finish(state, call) -> None:
    # A failed HTTP status is the exchange's to report (error:http_<status>); an error
    # inside a 200 stream is only visible here.
    if state.stream_error and call.error_type is None and not (call.http_status or 0) >= 400:
        set_error(call, "stream_error")
