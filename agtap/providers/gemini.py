"""Google Gemini generateContent / streamGenerateContent, Google AI and Vertex AI.

Paths: Google AI `/v1beta/models/{model}:generateContent` (also /v1/, and
tunedModels/), Vertex AI `/v1/projects/{p}/locations/{l}/publishers/google/models/{model}:...`
and express mode `/v1beta1/publishers/google/models/{model}:...` (provider "google" for both;
platform "vertex_ai" or "gemini", agtap/providers/platforms.py). Streams are SSE with `?alt=sse`, else one JSON array
whose elements arrive over time. Shapes: https://ai.google.dev/api/generate-content
(GenerateContentResponse: candidates[].content.parts[] with text / functionCall{name},
finishReason, usageMetadata{promptTokenCount, candidatesTokenCount,
cachedContentTokenCount, thoughtsTokenCount}, modelVersion, responseId).
Errors: https://ai.google.dev/gemini-api/docs/troubleshooting ({"error":{"code","message","status"}}).

Enums as integers: Google's generated REST clients ask for `?$alt=json;enum-encoding=int`
(the aiplatform SDK always does), and then finishReason and blockReason are numbers. They
are written as their names, by the proto each service publishes: Vertex AI's
google.cloud.aiplatform.v1 (Candidate.FinishReason, PromptFeedback.BlockedReason) and the
Gemini API's google.ai.generativelanguage.v1beta, whose numbering differs from 5 on (its
LANGUAGE is 6, OTHER 5). A number neither table knows is kept as its digits.
"""

from __future__ import annotations


from agtap.providers.base import add_tool, content_at, copy_counts, copy_strings, set_error
from agtap.wire.jsontext import loads

NAME = "google"
STREAM_JSON_ARRAY = True   # without ?alt=sse a stream is one JSON array whose elements arrive over time
_OPS = {"generateContent": False, "streamGenerateContent": True}

# enum-encoding=int: number -> name, per service (see the module docstring)
_COMMON = ("FINISH_REASON_UNSPECIFIED", "STOP", "MAX_TOKENS", "SAFETY", "RECITATION", "OTHER")
FINISH_VERTEX = _COMMON + ("BLOCKLIST", "PROHIBITED_CONTENT", "SPII", "MALFORMED_FUNCTION_CALL", "MODEL_ARMOR",
                           "IMAGE_SAFETY", "IMAGE_PROHIBITED_CONTENT", "IMAGE_RECITATION", "IMAGE_OTHER",
                           "UNEXPECTED_TOOL_CALL", "NO_IMAGE")
FINISH_GEMINI_API = _COMMON + ("LANGUAGE", "BLOCKLIST", "PROHIBITED_CONTENT", "SPII", "MALFORMED_FUNCTION_CALL",
                               "IMAGE_SAFETY", "UNEXPECTED_TOOL_CALL")
BLOCK_VERTEX = ("BLOCKED_REASON_UNSPECIFIED", "SAFETY", "OTHER", "BLOCKLIST", "PROHIBITED_CONTENT")
BLOCK_GEMINI_API = BLOCK_VERTEX + ("IMAGE_SAFETY",)
_USAGE = (("promptTokenCount", "input_tokens"), ("candidatesTokenCount", "output_tokens"),
          ("cachedContentTokenCount", "cache_read_input_tokens"), ("thoughtsTokenCount", "thoughts_tokens"))


def _split(path: str) -> tuple[str, str] | None:
    """'/v1beta/models/gemini-2.5-flash:streamGenerateContent' -> ('gemini-2.5-flash', 'streamGenerateContent')."""
    colon = path.rfind(":")
    if colon < 0:
        return None
    op = path[colon + 1:]
    if op not in _OPS:
        return None
    i = path.rfind("/models/", 0, colon)
    if i < 0:
        return None
    return path[i + 8:colon], op


def match(req) -> bool:
    return req.method == "POST" and _split(req.path) is not None


class _State:
    __slots__ = ("deferred", "finish_names", "block_names")

    def __init__(self, vertex: bool = False):
        self.deferred: bytes | None = None   # latest skipped event, parsed at finish for its usage
        self.finish_names = FINISH_VERTEX if vertex else FINISH_GEMINI_API
        self.block_names = BLOCK_VERTEX if vertex else BLOCK_GEMINI_API


def enum_name(value, names: tuple[str, ...]) -> str | None:
    """A finishReason/blockReason as its name: the string as sent, or an integer looked up in `names`."""
    if isinstance(value, str):
        return value
    if isinstance(value, int) and not isinstance(value, bool):
        return names[value] if 0 <= value < len(names) else str(value)
    return None


def begin(req, call):
    model, op = _split(req.path)
    call.model = model
    call.streaming = _OPS[op]
    call.operation = "generate_content"
    return _State(vertex=call.platform == "vertex_ai")   # platform: set from host and path before begin


_NEEDS_PARSE = (b"functionCall", b"finishReason", b'"error"', b"promptFeedback")


def fast(state, call, event, data, ts) -> bool:
    """After the first token, a plain text chunk only moves the cumulative usage on: keep its
    bytes and parse just the last one at finish, instead of every chunk."""
    if call.ttft_ms is None or data[:1] != b"{":
        return False
    for marker in _NEEDS_PARSE:
        if marker in data:
            return False
    state.deferred = data
    return True


def stream_end(event, data: bytes) -> bool:
    """The chunk carrying a candidate's finishReason is the last of a Gemini stream."""
    return b'"finishReason"' in data


def api_error(call, obj: dict) -> bool:
    """A google.rpc.Status body ({"error": {"code", "message", "status"}}) is the call's error: True if obj is one."""
    err = obj.get("error")
    if isinstance(err, dict):
        set_error(call, err.get("status") or err.get("code"))
        return True
    return False


def feed(state, call, event, obj, ts) -> None:
    state.deferred = None   # this event's usage is newer than any skipped one
    if isinstance(obj, list):  # a non-streamed array body, or an SSE data line holding one
        for o in obj:
            feed(state, call, event, o, ts)
        return
    if not isinstance(obj, dict) or api_error(call, obj):
        return
    copy_strings(call, obj, (("responseId", "id"), ("modelVersion", "response_model")))
    cands = obj.get("candidates")
    if isinstance(cands, list):
        for cand in cands:
            if not isinstance(cand, dict):
                continue
            content = cand.get("content")
            parts = content.get("parts") if isinstance(content, dict) else None
            if isinstance(parts, list):
                for part in parts:
                    if not isinstance(part, dict):
                        continue
                    if "functionCall" in part:
                        fc = part["functionCall"]
                        add_tool(call, fc.get("name") if isinstance(fc, dict) else None)
                        content_at(call, ts)
                    elif part.get("text"):
                        content_at(call, ts)
            reason = enum_name(cand.get("finishReason"), state.finish_names)
            if reason is not None:
                call.stop_reason = reason
    fb = obj.get("promptFeedback")
    block = enum_name(fb.get("blockReason"), state.block_names) if isinstance(fb, dict) else None
    if block is not None:
        call.stop_reason = "blocked:" + block
    # cumulative in a stream: the last one wins
    copy_counts(call, obj.get("usageMetadata"), _USAGE)


def finish(state, call) -> None:
    if state.deferred is not None:
        try:
            obj = loads(state.deferred)
        except ValueError:
            return
        feed(state, call, None, obj, call.end_ns)
