"""Anthropic Messages API answers (POST /v1/messages), JSON and SSE.

Shapes follow https://docs.anthropic.com/en/api/messages (response object),
https://docs.anthropic.com/en/docs/build-with-claude/streaming (event flow: message_start,
content_block_start / ping / content_block_delta / content_block_stop per block,
message_delta carrying stop_reason and the final usage, message_stop) and
https://docs.anthropic.com/en/api/errors (error body).
"""

from __future__ import annotations

from typing import Any

from .reply import ANTHROPIC_ERRORS, Planned, Reply, dumps, sse


def _ids(reply: Reply, seq: int) -> tuple[str, list[str]]:
    msg_id = f"msg_fake{seq:06d}"
    tool_ids = [t.id or f"toolu_fake{seq:06d}_{i}" for i, t in enumerate(reply.tool_calls)]
    return msg_id, tool_ids


def _usage(reply: Reply, output_tokens: int) -> dict[str, Any]:
    return {
        "input_tokens": reply.input_tokens,
        "cache_creation_input_tokens": reply.cache_creation_input_tokens,
        "cache_read_input_tokens": reply.cache_read_input_tokens,
        "output_tokens": output_tokens,
    }


def _stop_reason(reply: Reply) -> str:
    if reply.stop_reason is not None:
        return reply.stop_reason
    return "tool_use" if reply.tool_calls else "end_turn"


def error(reply: Reply, seq: int) -> Planned:
    body = {
        "type": "error",
        "error": {
            "type": reply.error_type or ANTHROPIC_ERRORS.get(reply.status, "api_error"),
            "message": reply.error_message,
        },
        "request_id": f"req_fake{seq:06d}",
    }
    headers = [("x-should-retry", "false")]
    if reply.status == 429:
        headers.append(("retry-after", "1"))
    return Planned(reply.status, "application/json", body=dumps(body, pretty=False), headers=headers)


def messages(reply: Reply, request: dict[str, Any], seq: int, stream: bool) -> Planned:
    if reply.status != 200:
        return error(reply, seq)
    model = reply.model or request.get("model") or "claude-fake"
    msg_id, tool_ids = _ids(reply, seq)
    headers = [("request-id", f"req_fake{seq:06d}"), ("anthropic-organization-id", "fake-org")]
    if not stream:
        content: list[dict[str, Any]] = []
        if reply.full_text() or not reply.tool_calls:
            content.append({"type": "text", "text": reply.full_text()})
        for tool, tool_id in zip(reply.tool_calls, tool_ids):
            content.append({"type": "tool_use", "id": tool_id, "name": tool.name, "input": tool.arguments})
        body = {
            "id": msg_id,
            "type": "message",
            "role": "assistant",
            "model": model,
            "content": content,
            "stop_reason": _stop_reason(reply),
            "stop_sequence": None,
            "usage": _usage(reply, reply.output_tokens),
        }
        return Planned(200, "application/json", body=dumps(body, pretty=False), headers=headers)

    events = [
        sse({
            "type": "message_start",
            "message": {
                "id": msg_id, "type": "message", "role": "assistant", "model": model,
                "content": [], "stop_reason": None, "stop_sequence": None,
                # The real API reports a provisional output count here; the final one
                # comes in message_delta.
                "usage": _usage(reply, 1),
            },
        }, "message_start"),
    ]
    index = 0
    pieces = reply.text_pieces()
    if "".join(pieces) or not reply.tool_calls:
        events.append(sse({"type": "content_block_start", "index": index,
                           "content_block": {"type": "text", "text": ""}}, "content_block_start"))
        events.append(sse({"type": "ping"}, "ping"))
        for piece in pieces:
            events.append(sse({"type": "content_block_delta", "index": index,
                               "delta": {"type": "text_delta", "text": piece}}, "content_block_delta"))
        if reply.stream_error:
            # https://docs.anthropic.com/en/docs/build-with-claude/streaming#error-events
            events.append(sse({"type": "error", "error": {
                "type": reply.error_type or "overloaded_error", "message": reply.error_message}}, "error"))
            return Planned(200, "text/event-stream; charset=utf-8", events=events, headers=headers)
        events.append(sse({"type": "content_block_stop", "index": index}, "content_block_stop"))
        index += 1
    for tool, tool_id in zip(reply.tool_calls, tool_ids):
        events.append(sse({"type": "content_block_start", "index": index,
                           "content_block": {"type": "tool_use", "id": tool_id, "name": tool.name,
                                             "input": {}}}, "content_block_start"))
        args = tool.arguments_json()
        # The API streams tool input as partial JSON strings; cut it in two to exercise joining.
        half = len(args) // 2
        for part in ("", args[:half], args[half:]):
            events.append(sse({"type": "content_block_delta", "index": index,
                               "delta": {"type": "input_json_delta", "partial_json": part}},
                              "content_block_delta"))
        events.append(sse({"type": "content_block_stop", "index": index}, "content_block_stop"))
        index += 1
    events.append(sse({
        "type": "message_delta",
        "delta": {"stop_reason": _stop_reason(reply), "stop_sequence": None},
        "usage": {"output_tokens": reply.output_tokens},
    }, "message_delta"))
    events.append(sse({"type": "message_stop"}, "message_stop"))
    return Planned(200, "text/event-stream; charset=utf-8", events=events, headers=headers)
