"""AWS Bedrock Runtime InvokeModel: POST /model/{modelId}/invoke and /invoke-with-response-stream.

The body is the model vendor's own. What agtap reads:
- Anthropic Claude (`anthropic_version` in the body): the Messages API inside
  (https://docs.aws.amazon.com/bedrock/latest/userguide/model-parameters-anthropic-claude-messages.html),
  read by agtap.providers.anthropic: provider "anthropic". The stream is an AWS event
  stream of `chunk` events whose payload is {"bytes": base64 of one Messages stream
  event}; the last (message_stop) carries "amazon-bedrock-invocationMetrics"
  {inputTokenCount, outputTokenCount, ...}.
- Embeddings (operation "embeddings"): Amazon Titan Text Embeddings
  (`inputText`; response {"embedding": [...], "inputTextTokenCount": n}) and Cohere Embed
  (`texts`; response {"embeddings": ..., "id": ...}).
- Any other model: the token counts Bedrock puts in the response headers of every
  InvokeModel (`X-Amzn-Bedrock-Input-Token-Count`, `X-Amzn-Bedrock-Output-Token-Count`),
  which also fill what a body left out.
https://docs.aws.amazon.com/bedrock/latest/APIReference/API_runtime_InvokeModel.html,
API_runtime_InvokeModelWithResponseStream.html. Errors as for Converse (bedrock_converse).
"""

from __future__ import annotations

import base64
import binascii

from agtap.providers import anthropic
from agtap.providers.base import as_int, never, content_at, copy_counts, copy_strings, set_error
from agtap.providers.bedrock_converse import aws_error_type, model_and_op, stream_error
from agtap.wire.jsontext import loads

NAME = "aws_bedrock"
STREAM_JSON_ARRAY = False   # streams are AWS event streams, framed by the exchange
_OPS = {"invoke": False, "invoke-with-response-stream": True}
_METRICS = (("inputTokenCount", "input_tokens"), ("outputTokenCount", "output_tokens"),
            ("cacheReadInputTokenCount", "cache_read_input_tokens"),
            ("cacheWriteInputTokenCount", "cache_creation_input_tokens"))
_HEADERS = {"x-amzn-bedrock-input-token-count": "input_tokens",
            "x-amzn-bedrock-output-token-count": "output_tokens",
            "x-amzn-bedrock-cache-read-input-token-count": "cache_read_input_tokens",
            "x-amzn-bedrock-cache-write-input-token-count": "cache_creation_input_tokens"}


class _State:
    __slots__ = ("body",)

    def __init__(self, body: str):
        self.body = body      # "anthropic" | "embeddings" | "other": whose format the body is


def match(req) -> bool:
    mo = model_and_op(req.path)
    return req.method == "POST" and mo is not None and mo[1] in _OPS


def begin(req, call):
    model, op = model_and_op(req.path)
    body = req.json_obj()
    call.model = model
    call.streaming = _OPS[op]
    if "anthropic_version" in body or ("anthropic." in model and "messages" in body):
        call.provider = "anthropic"     # the Messages API, served by Bedrock
        call.operation = "chat"
        return _State("anthropic")
    if "embed" in model.lower() or "texts" in body:   # amazon.titan-embed-*, cohere.embed-*
        call.operation = "embeddings"
        return _State("embeddings")
    call.operation = "chat"
    return _State("other")


def _chunk(obj):
    """The JSON inside a `chunk` event ({"bytes": base64}), or None."""
    raw = obj.get("bytes") if isinstance(obj, dict) else None
    if not isinstance(raw, str):
        return None
    try:
        return loads(base64.b64decode(raw, validate=True))
    except (ValueError, binascii.Error):
        return None


fast = never   # every chunk's payload is base64: nothing to tell without decoding it


def stream_end(event, data: bytes) -> bool:
    """The chunk carrying message_stop ends an Anthropic stream; an exception ends any."""
    if (event or "").startswith(("exception:", "error:")):
        return True
    if event != "chunk":
        return False
    try:
        inner = _chunk(loads(data))
    except ValueError:
        return False
    return isinstance(inner, dict) and inner.get("type") == "message_stop"


def feed(state, call, event, obj, ts) -> None:
    if event and stream_error(call, event, obj):
        return
    if event == "chunk":
        inner = _chunk(obj)
        if isinstance(inner, dict):
            if state.body == "anthropic":
                anthropic.feed(None, call, None, inner, ts)
            else:
                content_at(call, ts)
            # the last chunk: Bedrock's own count of the whole invocation
            copy_counts(call, inner.get("amazon-bedrock-invocationMetrics"), _METRICS)
        return
    if not isinstance(obj, dict):
        return
    if call.http_status and call.http_status >= 400:
        set_error(call, aws_error_type(call) or obj.get("__type") or f"http_{call.http_status}")
    elif state.body == "anthropic":
        anthropic.feed(None, call, None, obj, ts)
    elif state.body == "embeddings":
        copy_counts(call, obj, (("inputTextTokenCount", "input_tokens"),))
        copy_strings(call, obj, (("id", "id"),))
    else:
        for key in ("stop_reason", "completionReason", "finish_reason"):
            if isinstance(obj.get(key), str):
                call.stop_reason = obj[key]


def finish(state, call) -> None:
    if call.http_status and call.http_status >= 400 and call.error_type is None:
        etype = aws_error_type(call)
        if etype:
            set_error(call, etype)
    for name, value in call.bodies.response_headers if call.bodies is not None else ():
        field = _HEADERS.get(name.lower())
        n = as_int(value.strip()) if field else None
        if n is not None and getattr(call, field) is None:
            setattr(call, field, n)
