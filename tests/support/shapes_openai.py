"""OpenAI answers: Chat Completions (POST /v1/chat/completions) and Responses (POST /v1/responses).

Shapes follow the API reference:
  chat object          https://platform.openai.com/docs/api-reference/chat/object
  chat chunk object    https://platform.openai.com/docs/api-reference/chat-streaming/streaming
                       (`data: {chunk}` lines, a final chunk with empty `choices` and the
                       usage when stream_options.include_usage, then `data: [DONE]`)
  response object      https://platform.openai.com/docs/api-reference/responses/object
  response events      https://platform.openai.com/docs/api-reference/responses-streaming
                       (`event: <type>` + `data: {..., "sequence_number": n}`)
  errors               https://platform.openai.com/docs/guides/error-codes
"""

from __future__ import annotations

from typing import Any

from .reply import OPENAI_ERRORS, Planned, Reply, dumps, sse

CREATED = 1_764_000_000  # fixed "created" timestamp: keeps bodies reproducible


def error(reply: Reply, seq: int) -> Planned:
    err_type, code = OPENAI_ERRORS.get(reply.status, ("server_error", None))
    body = {"error": {"message": reply.error_message, "type": reply.error_type or err_type,
                      "param": None, "code": code}}
    headers = [("x-request-id", f"req_fake{seq:06d}"), ("x-should-retry", "false")]
    return Planned(reply.status, "application/json", body=dumps(body), headers=headers)


def _tool_ids(reply: Reply, seq: int) -> list[str]:
    return [t.id or f"call_fake{seq:06d}_{i}" for i, t in enumerate(reply.tool_calls)]


# ---------------------------------------------------------------- chat completions

def _chat_usage(reply: Reply) -> dict[str, Any]:
    return {
        "prompt_tokens": reply.input_tokens,
        "completion_tokens": reply.output_tokens,
        "total_tokens": reply.input_tokens + reply.output_tokens,
        "prompt_tokens_details": {"cached_tokens": reply.cache_read_input_tokens, "audio_tokens": 0},
        "completion_tokens_details": {"reasoning_tokens": 0, "audio_tokens": 0,
                                      "accepted_prediction_tokens": 0,
                                      "rejected_prediction_tokens": 0},
    }


def chat(reply: Reply, request: dict[str, Any], seq: int, stream: bool) -> Planned:
    if reply.status != 200:
        return error(reply, seq)
    model = reply.model or request.get("model") or "gpt-fake"
    finish = reply.stop_reason or ("tool_calls" if reply.tool_calls else "stop")
    chat_id = f"chatcmpl-fake{seq:06d}"
    tool_ids = _tool_ids(reply, seq)
    headers = [("x-request-id", f"req_fake{seq:06d}"), ("openai-processing-ms", "7")]
    base = {"id": chat_id, "created": CREATED, "model": model, "system_fingerprint": "fp_fake"}
    if not stream:
        text = reply.full_text()
        message: dict[str, Any] = {"role": "assistant",
                                   "content": text if (text or not reply.tool_calls) else None,
                                   "refusal": None, "annotations": []}
        if reply.tool_calls:
            message["tool_calls"] = [
                {"id": tid, "type": "function",
                 "function": {"name": t.name, "arguments": t.arguments_json()}}
                for t, tid in zip(reply.tool_calls, tool_ids)
            ]
        body = {**base, "object": "chat.completion",
                "choices": [{"index": 0, "message": message, "logprobs": None, "finish_reason": finish}],
                "usage": _chat_usage(reply), "service_tier": "default"}
        return Planned(200, "application/json", body=dumps(body), headers=headers)

    include_usage = bool((request.get("stream_options") or {}).get("include_usage"))

    def chunk(delta: dict[str, Any], finish_reason: str | None = None) -> bytes:
        obj: dict[str, Any] = {**base, "object": "chat.completion.chunk", "service_tier": "default",
                               "choices": [{"index": 0, "delta": delta, "logprobs": None,
                                            "finish_reason": finish_reason}]}
        if include_usage:
            obj["usage"] = None  # the API sends "usage": null on every chunk but the last
        return sse(obj)

    events = [chunk({"role": "assistant", "content": "", "refusal": None})]
    text = reply.full_text()
    if text or not reply.tool_calls:
        events += [chunk({"content": piece}) for piece in reply.text_pieces()]
    if reply.stream_error:
        # What the API sends when a stream fails after it started; the SDKs raise APIError.
        events.append(sse({"error": {"message": reply.error_message, "type": reply.error_type or "server_error",
                                     "param": None, "code": None}}))
        return Planned(200, "text/event-stream; charset=utf-8", events=events, headers=headers)
    for i, (tool, tid) in enumerate(zip(reply.tool_calls, tool_ids)):
        events.append(chunk({"tool_calls": [{"index": i, "id": tid, "type": "function",
                                             "function": {"name": tool.name, "arguments": ""}}]}))
        args = tool.arguments_json()
        half = len(args) // 2
        for part in (args[:half], args[half:]):
            events.append(chunk({"tool_calls": [{"index": i, "function": {"arguments": part}}]}))
    events.append(chunk({}, finish))
    if include_usage:
        events.append(sse({**base, "object": "chat.completion.chunk", "service_tier": "default",
                           "choices": [], "usage": _chat_usage(reply)}))
    events.append(sse("[DONE]"))
    return Planned(200, "text/event-stream; charset=utf-8", events=events, headers=headers)


# ---------------------------------------------------------------- responses

def _responses_usage(reply: Reply) -> dict[str, Any]:
    return {
        "input_tokens": reply.input_tokens,
        "input_tokens_details": {"cached_tokens": reply.cache_read_input_tokens},
        "output_tokens": reply.output_tokens,
        "output_tokens_details": {"reasoning_tokens": 0},
        "total_tokens": reply.input_tokens + reply.output_tokens,
    }


def _response_object(reply: Reply, request: dict[str, Any], seq: int, status: str,
                     output: list[dict[str, Any]], usage: dict[str, Any] | None) -> dict[str, Any]:
    return {
        "id": f"resp_fake{seq:06d}", "object": "response", "created_at": CREATED,
        "status": status, "background": False, "error": None, "incomplete_details": None,
        "instructions": request.get("instructions"), "max_output_tokens": None,
        "model": reply.model or request.get("model") or "gpt-fake",
        "output": output, "parallel_tool_calls": True, "previous_response_id": None,
        "reasoning": {"effort": None, "summary": None}, "service_tier": "default",
        "store": True, "temperature": 1.0, "text": {"format": {"type": "text"}},
        "tool_choice": "auto", "tools": request.get("tools") or [], "top_p": 1.0,
        "truncation": "disabled", "usage": usage, "user": None, "metadata": {},
    }


def _output_items(reply: Reply, seq: int) -> list[dict[str, Any]]:
    items: list[dict[str, Any]] = []
    text = reply.full_text()
    if text or not reply.tool_calls:
        items.append({"id": f"msg_fake{seq:06d}", "type": "message", "status": "completed",
                      "role": "assistant",
                      "content": [{"type": "output_text", "text": text, "annotations": [],
                                   "logprobs": []}]})
    for i, (tool, call_id) in enumerate(zip(reply.tool_calls, _tool_ids(reply, seq))):
        items.append({"id": f"fc_fake{seq:06d}_{i}", "type": "function_call", "status": "completed",
                      "call_id": call_id, "name": tool.name, "arguments": tool.arguments_json()})
    return items


def responses(reply: Reply, request: dict[str, Any], seq: int, stream: bool) -> Planned:
    if reply.status != 200:
        return error(reply, seq)
    headers = [("x-request-id", f"req_fake{seq:06d}"), ("openai-processing-ms", "7")]
    items = _output_items(reply, seq)
    final = _response_object(reply, request, seq, reply.stop_reason or "completed", items,
                             _responses_usage(reply))
    if not stream:
        return Planned(200, "application/json", body=dumps(final), headers=headers)

    events: list[bytes] = []

    def emit(kind: str, **fields: Any) -> None:
        events.append(sse({"type": kind, "sequence_number": len(events), **fields}, kind))

    started = _response_object(reply, request, seq, "in_progress", [], None)
    emit("response.created", response=started)
    emit("response.in_progress", response=started)
    for out_index, item in enumerate(items):
        if item["type"] == "message":
            emit("response.output_item.added", output_index=out_index,
                 item={**item, "status": "in_progress", "content": []})
            empty_part = {"type": "output_text", "text": "", "annotations": [], "logprobs": []}
            emit("response.content_part.added", item_id=item["id"], output_index=out_index,
                 content_index=0, part=empty_part)
            for piece in reply.text_pieces():
                emit("response.output_text.delta", item_id=item["id"], output_index=out_index,
                     content_index=0, delta=piece, logprobs=[])
            emit("response.output_text.done", item_id=item["id"], output_index=out_index,
                 content_index=0, text=reply.full_text(), logprobs=[])
            emit("response.content_part.done", item_id=item["id"], output_index=out_index,
                 content_index=0, part=item["content"][0])
        else:
            emit("response.output_item.added", output_index=out_index,
                 item={**item, "status": "in_progress", "arguments": ""})
            args = item["arguments"]
            half = len(args) // 2
            for part in (args[:half], args[half:]):
                emit("response.function_call_arguments.delta", item_id=item["id"],
                     output_index=out_index, delta=part)
            emit("response.function_call_arguments.done", item_id=item["id"],
                 output_index=out_index, name=item["name"], arguments=args)
        emit("response.output_item.done", output_index=out_index, item=item)
    emit("response.completed", response=final)
    return Planned(200, "text/event-stream; charset=utf-8", events=events, headers=headers)



# ---------------------------------------------------------------- embeddings

def embeddings(reply: Reply, request: dict[str, Any], seq: int) -> Planned:
    """https://platform.openai.com/docs/api-reference/embeddings/object: a list, the usage, no id."""
    if reply.status != 200:
        return error(reply, seq)
    inputs = request.get("input")
    n = len(inputs) if isinstance(inputs, list) and not all(isinstance(i, int) for i in inputs) else 1
    # encoding_format "base64" (what the Python SDK asks for): 3 float32 as base64
    b64 = request.get("encoding_format") == "base64"
    vector: Any = "AACAPgAAAL8AAAA+" if b64 else [0.25, -0.5, 0.125]
    body = {"object": "list",
            "data": [{"object": "embedding", "index": i, "embedding": vector} for i in range(n)],
            "model": reply.model or request.get("model") or "text-embedding-fake",
            "usage": {"prompt_tokens": reply.input_tokens, "total_tokens": reply.input_tokens}}
    return Planned(200, "application/json", body=dumps(body),
                   headers=[("x-request-id", f"req_fake{seq:06d}"), ("openai-processing-ms", "7")])
