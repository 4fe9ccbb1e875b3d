"""AWS Bedrock Runtime answers: Converse, ConverseStream, InvokeModel(+WithResponseStream).

Shapes follow the API reference:
  Converse         https://docs.aws.amazon.com/bedrock/latest/APIReference/API_runtime_Converse.html
  ConverseStream   .../API_runtime_ConverseStream.html (an AWS event stream: messageStart,
                   contentBlockStart (tools), contentBlockDelta, contentBlockStop, messageStop,
                   metadata; failures as `:message-type: exception` messages)
  InvokeModel      .../API_runtime_InvokeModel.html: the model's own body (Anthropic Messages,
                   Titan / Cohere embeddings) and the X-Amzn-Bedrock-*-Token-Count headers
  InvokeModelWithResponseStream  `chunk` events, {"bytes": base64 of one Messages stream event};
                   message_stop carries "amazon-bedrock-invocationMetrics"
  errors           https://docs.aws.amazon.com/bedrock/latest/APIReference/CommonErrors.html:
                   {"message"} with the type in x-amzn-ErrorType
"""

from __future__ import annotations

import json
from typing import Any

from . import eventstream, shapes_anthropic
from .reply import Planned, Reply, dumps

EVENTSTREAM = "application/vnd.amazon.eventstream"
ERRORS = {400: "ValidationException", 403: "AccessDeniedException", 404: "ResourceNotFoundException",
          424: "ModelErrorException", 429: "ThrottlingException", 500: "InternalServerException",
          503: "ServiceUnavailableException"}


def _request_id(seq: int) -> list[tuple[str, str]]:
    return [("x-amzn-RequestId", f"fake-{seq:08d}-0000-0000-0000-000000000000")]


def error(reply: Reply, seq: int) -> Planned:
    etype = reply.error_type or ERRORS.get(reply.status, "InternalServerException")
    headers = _request_id(seq) + [("x-amzn-ErrorType", f"{etype}:http://internal.amazon.com/coral/com.amazon.bedrock/")]
    return Planned(reply.status, "application/json", body=dumps({"message": reply.error_message}, pretty=False),
                   headers=headers)


def _stop(reply: Reply) -> str:
    return reply.stop_reason or ("tool_use" if reply.tool_calls else "end_turn")


def _usage(reply: Reply) -> dict[str, Any]:
    return {"inputTokens": reply.input_tokens, "outputTokens": reply.output_tokens,
            "totalTokens": reply.input_tokens + reply.output_tokens,
            "cacheReadInputTokens": reply.cache_read_input_tokens,
            "cacheWriteInputTokens": reply.cache_creation_input_tokens}


def converse(reply: Reply, seq: int, stream: bool) -> Planned:
    if reply.status != 200:
        return error(reply, seq)
    tool_ids = [t.id or f"tooluse_fake{seq:06d}_{i}" for i, t in enumerate(reply.tool_calls)]
    text = reply.full_text()
    if not stream:
        content: list[dict[str, Any]] = [{"text": text}] if text or not reply.tool_calls else []
        content += [{"toolUse": {"toolUseId": tid, "name": t.name, "input": t.arguments}}
                    for t, tid in zip(reply.tool_calls, tool_ids)]
        body = {"output": {"message": {"role": "assistant", "content": content}}, "stopReason": _stop(reply),
                "usage": _usage(reply), "metrics": {"latencyMs": 321}}
        return Planned(200, "application/json", body=dumps(body, pretty=False), headers=_request_id(seq))
    ev = eventstream.event
    events = [ev("messageStart", {"role": "assistant", "p": "abcd"})]
    index = 0
    if text or not reply.tool_calls:
        events += [ev("contentBlockDelta", {"contentBlockIndex": 0, "delta": {"text": piece}, "p": "ab"})
                   for piece in reply.text_pieces()]
        if reply.stream_error:
            events.append(eventstream.exception(reply.error_type or "modelStreamErrorException",
                                                reply.error_message))
            return Planned(200, EVENTSTREAM, events=events, headers=_request_id(seq))
        events.append(ev("contentBlockStop", {"contentBlockIndex": 0}))
        index = 1
    for i, (tool, tid) in enumerate(zip(reply.tool_calls, tool_ids), start=index):
        events.append(ev("contentBlockStart", {"contentBlockIndex": i,
                                               "start": {"toolUse": {"toolUseId": tid, "name": tool.name}}}))
        args = tool.arguments_json()
        half = len(args) // 2
        for part in (args[:half], args[half:]):
            events.append(ev("contentBlockDelta", {"contentBlockIndex": i, "delta": {"toolUse": {"input": part}}}))
        events.append(ev("contentBlockStop", {"contentBlockIndex": i}))
    events.append(ev("messageStop", {"stopReason": _stop(reply)}))
    events.append(ev("metadata", {"usage": _usage(reply), "metrics": {"latencyMs": 321}}))
    return Planned(200, EVENTSTREAM, events=events, headers=_request_id(seq))


def _token_headers(reply: Reply) -> list[tuple[str, str]]:
    return [("X-Amzn-Bedrock-Input-Token-Count", str(reply.input_tokens)),
            ("X-Amzn-Bedrock-Output-Token-Count", str(reply.output_tokens)),
            ("X-Amzn-Bedrock-Invocation-Latency", "321")]


def invoke(reply: Reply, model: str, request: dict[str, Any], seq: int, stream: bool) -> Planned:
    if reply.status != 200:
        return error(reply, seq)
    if "anthropic_version" in request:
        return _invoke_anthropic(reply, model, request, seq, stream)
    if "texts" in request:           # Cohere Embed: counts only in the headers
        body = {"id": f"fake-embed-{seq:06d}", "response_type": "embeddings_floats",
                "embeddings": [[0.25, -0.5, 0.125] for _ in request["texts"]], "texts": request["texts"]}
        return Planned(200, "application/json", body=dumps(body, pretty=False),
                       headers=_request_id(seq) + _token_headers(Reply(input_tokens=reply.input_tokens,
                                                                       output_tokens=0)))
    if "inputText" in request:       # Amazon Titan Text Embeddings
        body = {"embedding": [0.25, -0.5, 0.125], "inputTextTokenCount": reply.input_tokens}
        return Planned(200, "application/json", body=dumps(body, pretty=False),
                       headers=_request_id(seq) + _token_headers(Reply(input_tokens=reply.input_tokens,
                                                                       output_tokens=0)))
    return Planned(400, "application/json", body=dumps({"message": "fake Bedrock: unknown body"}, pretty=False),
                   headers=[("x-amzn-ErrorType", "ValidationException:")])


def _invoke_anthropic(reply: Reply, model: str, request: dict[str, Any], seq: int, stream: bool) -> Planned:
    inner = shapes_anthropic.messages(reply, {**request, "model": reply.model or model}, seq, stream)
    headers = _request_id(seq)
    if not stream:
        # Bedrock returns the Messages body as is (its id is msg_bdrk_...), with the counts as headers too
        body = json.loads(inner.body)
        body["id"] = f"msg_bdrk_fake{seq:06d}"
        return Planned(200, "application/json", body=dumps(body, pretty=False), headers=headers + _token_headers(reply))
    events = []
    for raw in inner.events or []:
        data = next(line[6:] for line in raw.decode().splitlines() if line.startswith("data: "))
        obj = json.loads(data)
        if obj["type"] == "ping":
            continue
        if obj["type"] == "message_start":
            obj["message"]["id"] = f"msg_bdrk_fake{seq:06d}"
        if obj["type"] == "message_stop":
            obj["amazon-bedrock-invocationMetrics"] = {
                "inputTokenCount": reply.input_tokens, "outputTokenCount": reply.output_tokens,
                "invocationLatency": 321, "firstByteLatency": 123}
        if obj["type"] == "error":   # a failure inside the stream is an AWS exception message
            events.append(eventstream.exception(reply.error_type or "modelStreamErrorException", reply.error_message))
            continue
        events.append(eventstream.chunk(obj))
    return Planned(200, EVENTSTREAM, events=events, headers=headers + [("X-Amzn-Bedrock-Content-Type", "application/json")])
