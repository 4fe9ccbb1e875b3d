"""OpenAI Responses API: POST .../responses (also Azure OpenAI's /openai/deployments/{d}/responses and /openai/v1/responses).

Shapes: https://platform.openai.com/docs/api-reference/responses/object
(status completed|incomplete|failed, output items incl. function_call with name,
usage input_tokens / output_tokens / input_tokens_details.cached_tokens /
output_tokens_details.reasoning_tokens, incomplete_details.reason, error.code) and
/responses-streaming (response.created, response.output_item.added,
response.output_text.delta, response.function_call_arguments.delta,
response.completed / response.incomplete / response.failed, error).
"""

from __future__ import annotations

from agtap.providers.base import add_tool, content_at, copy_strings, set_error
from agtap.providers.openai_chat import azure_deployment, azure_model, error_kind, usage

NAME = "openai"
STREAM_JSON_ARRAY = False   # streams are SSE
_TOOL_ITEMS = ("function_call", "custom_tool_call")


def match(req) -> bool:
    return req.method == "POST" and req.path.endswith("/responses")


class _State:
    __slots__ = ("tools_from_stream",)

    def __init__(self):
        self.tools_from_stream = False


def begin(req, call):
    body = req.json_obj()
    m = body.get("model")
    call.model = azure_deployment(req.path) or (m if isinstance(m, str) else None)
    call.streaming = body.get("stream") is True
    call.operation = "responses"
    return _State()


def _response(state, call, r) -> None:
    if not isinstance(r, dict):
        return
    copy_strings(call, r, (("id", "id"), ("model", "response_model")))
    status = r.get("status")
    if status == "failed" or (isinstance(r.get("error"), dict) and r["error"]):
        set_error(call, error_kind(r.get("error")) or "failed")
    elif status == "incomplete":
        d = r.get("incomplete_details")
        reason = d.get("reason") if isinstance(d, dict) else None
        call.stop_reason = reason if isinstance(reason, str) else "incomplete"
    elif isinstance(status, str) and status not in ("in_progress", "queued"):
        call.stop_reason = status
    usage(call, r.get("usage"), "input", "output")
    out = r.get("output")
    if isinstance(out, list) and not state.tools_from_stream:
        for item in out:
            if isinstance(item, dict) and item.get("type") in _TOOL_ITEMS:
                add_tool(call, item.get("name"))


def fast(state, call, event, data, ts) -> bool:
    """Delta events (text, arguments, reasoning) only time the first token: no parse needed."""
    if event.endswith(".delta") and event.startswith("response."):
        content_at(call, ts)
        return True
    return False


def stream_end(event, data: bytes) -> bool:
    """response.completed / .incomplete / .failed (or an `error` event) end a Responses stream."""
    return event in ("response.completed", "response.incomplete", "response.failed", "error")


def feed(state, call, event, obj, ts) -> None:
    if not isinstance(obj, dict):
        return
    t = obj.get("type") or event
    if not isinstance(t, str):
        t = ""
    if t.endswith(".delta"):
        content_at(call, ts)
    elif t == "response.output_item.added":
        item = obj.get("item")
        if isinstance(item, dict) and item.get("type") in _TOOL_ITEMS:
            state.tools_from_stream = True
            add_tool(call, item.get("name"))
    elif t.startswith("response."):
        _response(state, call, obj.get("response"))
    elif t == "error":
        set_error(call, error_kind(obj) or "error")
    elif "error" in obj and obj.get("error") and "output" not in obj:
        set_error(call, error_kind(obj["error"]))
    elif obj.get("object") == "response" or "output" in obj:
        _response(state, call, obj)


def finish(state, call) -> None:
    azure_model(call)
