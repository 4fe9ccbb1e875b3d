"""AWS Bedrock Runtime Converse API: POST /model/{modelId}/converse and /converse-stream.

Shapes: https://docs.aws.amazon.com/bedrock/latest/APIReference/API_runtime_Converse.html
(output.message.content[] with text / toolUse{toolUseId, name, input}, stopReason,
usage{inputTokens, outputTokens, totalTokens, cacheReadInputTokens, cacheWriteInputTokens},
metrics.latencyMs) and API_runtime_ConverseStream.html: an AWS event stream
(agtap.wire.eventstream) of messageStart, contentBlockStart (start.toolUse.name),
contentBlockDelta, contentBlockStop, messageStop (stopReason), metadata (usage, metrics:
the last event), or an exception message (`:exception-type` throttlingException,
modelStreamErrorException, validationException, ...). Errors outside a stream: HTTP 4xx/5xx,
body {"message": ...}, the type in the `x-amzn-ErrorType` header ("ValidationException:http://...").
The modelId in the path is percent-encoded by the SDKs (`anthropic.claude-3-5-haiku-20241022-v1%3A0`,
inference-profile ARNs with %2F). The request is signed with SigV4 (`Authorization`,
`X-Amz-Security-Token`): agtap.redact strips both.
"""

from __future__ import annotations

from urllib.parse import unquote

from agtap.providers.base import add_tool, content_at, copy_counts, copy_strings, set_error

NAME = "aws_bedrock"
STREAM_JSON_ARRAY = False   # streams are AWS event streams, framed by the exchange
_OPS = {"converse": False, "converse-stream": True}
_USAGE = (("inputTokens", "input_tokens"), ("outputTokens", "output_tokens"),
          ("cacheReadInputTokens", "cache_read_input_tokens"),
          ("cacheWriteInputTokens", "cache_creation_input_tokens"))


def model_and_op(path: str) -> tuple[str, str] | None:
    """'/model/anthropic.claude-x-v1%3A0/converse' -> ('anthropic.claude-x-v1:0', 'converse')."""
    if not path.startswith("/model/"):
        return None
    model, _, op = path[7:].rpartition("/")
    return (unquote(model), op) if model else None


def match(req) -> bool:
    mo = model_and_op(req.path)
    return req.method == "POST" and mo is not None and mo[1] in _OPS


def begin(req, call):
    model, op = model_and_op(req.path)
    call.model = model
    call.streaming = _OPS[op]
    call.operation = "chat"
    return None


def aws_error_type(call) -> str | None:
    """The error type AWS puts in `x-amzn-ErrorType` ("ThrottlingException:http://..." -> "ThrottlingException")."""
    for name, value in call.bodies.response_headers if call.bodies is not None else ():
        if name.lower() == "x-amzn-errortype" and value:
            return value.split(":", 1)[0].strip() or None
    return None


def stream_error(call, event: str, obj) -> bool:
    """An `exception:<type>` / `error:<code>` event-stream message: the call's error. True if it was one."""
    if not event.startswith(("exception:", "error:")):
        return False
    set_error(call, event.split(":", 1)[1] or event.split(":", 1)[0])
    return True


def fast(state, call, event, data, ts) -> bool:
    """Content deltas (text, tool input, reasoning) only time the first token."""
    if event == "contentBlockDelta":
        content_at(call, ts)
        return True
    return False


def stream_end(event, data: bytes) -> bool:
    """`metadata` is the last event of a ConverseStream; an exception ends it too."""
    return event == "metadata" or (event or "").startswith(("exception:", "error:"))


def feed(state, call, event, obj, ts) -> None:
    if event and stream_error(call, event, obj):
        return
    if not isinstance(obj, dict):
        return
    if event is None:                      # a whole Converse response, or an error body
        _response(call, obj)
    elif event == "contentBlockStart":
        start = obj.get("start")
        tool = start.get("toolUse") if isinstance(start, dict) else None
        if isinstance(tool, dict):
            add_tool(call, tool.get("name"))
    elif event == "messageStop":
        copy_strings(call, obj, (("stopReason", "stop_reason"),))
    elif event == "metadata":
        copy_counts(call, obj.get("usage"), _USAGE)


def _response(call, obj) -> None:
    if "output" not in obj:
        if isinstance(obj.get("message"), str) or isinstance(obj.get("Message"), str):
            set_error(call, aws_error_type(call) or obj.get("__type") or f"http_{call.http_status}")
        return
    copy_strings(call, obj, (("stopReason", "stop_reason"),))
    copy_counts(call, obj.get("usage"), _USAGE)
    out = obj.get("output")
    msg = out.get("message") if isinstance(out, dict) else None
    content = msg.get("content") if isinstance(msg, dict) else None
    if isinstance(content, list):
        for block in content:
            if isinstance(block, dict) and isinstance(block.get("toolUse"), dict):
                add_tool(call, block["toolUse"].get("name"))


def finish(state, call) -> None:
    if call.http_status and call.http_status >= 400 and call.error_type is None:
        etype = aws_error_type(call)
        if etype:
            set_error(call, etype)
