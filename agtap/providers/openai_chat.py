"""OpenAI Chat Completions: POST .../chat/completions (OpenAI, Azure, compatible servers).

OpenAI-compatible clouds add their own usage shapes: DeepSeek counts its context-cache
hits as usage.prompt_cache_hit_tokens (https://api-docs.deepseek.com/guides/kv_cache), and
Groq streams usage in the finish chunk, copied under x_groq.usage (older Groq: only there).

Shapes: https://platform.openai.com/docs/api-reference/chat/object and
/chat/streaming (chat.completion.chunk; tool_calls deltas keyed by index with
the name in the first delta; a final chunk with empty choices and usage when
stream_options.include_usage; `data: [DONE]`). usage.prompt_tokens_details.cached_tokens,
usage.completion_tokens_details.reasoning_tokens, usage.prompt_tokens_details.cache_write_tokens. Errors: {"error":{"message","type","param","code"}}.
"""

from __future__ import annotations

from agtap.providers.base import add_tool, content_at, copy_counts, copy_strings, set_error

NAME = "openai"
STREAM_JSON_ARRAY = False   # streams are SSE


def match(req) -> bool:
    return req.method == "POST" and req.path.endswith("/chat/completions")


class _State:
    __slots__ = ("tool_index",)

    def __init__(self):
        self.tool_index: set = set()   # (choice, tool index) whose name was recorded


def azure_deployment(path: str) -> str | None:
    """Azure OpenAI's /openai/deployments/{deployment}/...: the deployment, else None."""
    if "/deployments/" not in path:
        return None
    return path.split("/deployments/", 1)[1].split("/", 1)[0] or None


def begin(req, call):
    body = req.json_obj()
    m = body.get("model")
    deployment = azure_deployment(req.path)
    # Azure: the deployment (in the path) names the model; the SDK may repeat it in the body
    call.model = deployment or (m if isinstance(m, str) else None)
    call.streaming = body.get("stream") is True
    call.operation = "chat"
    return _State()


def error_kind(err) -> str | None:
    """OpenAI errors carry both: `code` is the specific one (rate_limit_exceeded), `type` the class."""
    if not isinstance(err, dict):
        return str(err) if isinstance(err, str) else None
    code = err.get("code")
    if isinstance(code, str) and code:
        return code
    t = err.get("type")
    return t if isinstance(t, str) and t else (str(code) if code is not None else None)


def usage(call, u, inp: str = "prompt", out: str = "completion") -> None:
    """OpenAI usage: <inp>_tokens, <out>_tokens and their _details (cached, reasoning).

    Chat Completions says prompt/completion, the Responses API input/output.
    """
    if not isinstance(u, dict):
        return
    copy_counts(call, u, ((inp + "_tokens", "input_tokens"), (out + "_tokens", "output_tokens")))
    # cache_write_tokens: newer, counted inside <inp>_tokens like cached_tokens (0 when nothing was cached)
    copy_counts(call, u.get(inp + "_tokens_details"), (("cached_tokens", "cache_read_input_tokens"),
                                                       ("cache_write_tokens", "cache_creation_input_tokens")))
    copy_counts(call, u.get(out + "_tokens_details"), (("reasoning_tokens", "thoughts_tokens"),))


def fast(state, call, event, data, ts) -> bool:
    """Skip parsing a chunk that can only be a plain content delta once the first token was timed.

    Conservative: any mention of tools, a finish reason, usage, an error or an id change
    falls through to the full parse (compact JSON as OpenAI writes it; spaced JSON always parses)."""
    if call.ttft_ms is None or data[:1] != b"{":
        return False
    return (b'"finish_reason":null' in data and b'"finish_reason":"' not in data
            and b'"tool_calls"' not in data and b'"usage":{' not in data
            and b'"error"' not in data and b'"refusal":"' not in data)


def stream_end(event, data: bytes) -> bool:
    """`data: [DONE]` ends a chat completions stream."""
    return data == b"[DONE]"


def feed(state, call, event, obj, ts) -> None:
    if not isinstance(obj, dict):
        return  # `[DONE]`
    if "error" in obj and obj.get("error"):
        set_error(call, error_kind(obj["error"]))
        return
    copy_strings(call, obj, (("id", "id"),))
    if isinstance(obj.get("model"), str) and obj["model"]:
        call.response_model = obj["model"]
    choices = obj.get("choices")
    if isinstance(choices, list):
        for ch in choices:
            if not isinstance(ch, dict):
                continue
            if isinstance(ch.get("finish_reason"), str):
                call.stop_reason = ch["finish_reason"]
            delta = ch.get("delta")
            if isinstance(delta, dict):
                if delta.get("content") or delta.get("tool_calls") or delta.get("refusal") \
                        or delta.get("reasoning_content"):
                    content_at(call, ts)
                _tool_deltas(state, call, ch.get("index", 0), delta.get("tool_calls"))
            msg = ch.get("message")
            if isinstance(msg, dict) and isinstance(msg.get("tool_calls"), list):
                for tc in msg["tool_calls"]:
                    if isinstance(tc, dict) and isinstance(tc.get("function"), dict):
                        add_tool(call, tc["function"].get("name"))
    u = obj.get("usage")
    if not isinstance(u, dict):
        xg = obj.get("x_groq")
        u = xg.get("usage") if isinstance(xg, dict) else None
    usage(call, u)
    if isinstance(u, dict):   # DeepSeek: inside prompt_tokens, like cached_tokens
        copy_counts(call, u, (("prompt_cache_hit_tokens", "cache_read_input_tokens"),))


def _tool_deltas(state, call, choice, tool_calls) -> None:
    if not isinstance(tool_calls, list):
        return
    for tc in tool_calls:
        if not isinstance(tc, dict):
            continue
        key = (choice, tc.get("index", 0))
        fn = tc.get("function")
        if key not in state.tool_index and isinstance(fn, dict) and fn.get("name"):
            state.tool_index.add(key)
            add_tool(call, fn.get("name"))


def finish(state, call) -> None:
    azure_model(call)


def azure_model(call) -> None:
    """Azure OpenAI (platform azure_openai): the model is the one that answered (a deployment
    is a name the user chose), else the deployment."""
    if call.platform == "azure_openai" and call.response_model:
        call.model = call.response_model
