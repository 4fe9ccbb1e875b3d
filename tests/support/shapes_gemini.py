"""Google Gemini API answers: POST /v1beta/models/{model}:generateContent and :streamGenerateContent.

Shapes follow https://ai.google.dev/api/generate-content (GenerateContentResponse:
candidates[].content.parts[] with text / functionCall, finishReason, usageMetadata with
promptTokenCount / candidatesTokenCount / totalTokenCount / cachedContentTokenCount,
modelVersion, responseId). Streaming with `?alt=sse` (what google-genai uses) sends
`data: {GenerateContentResponse}` events separated by CRLF CRLF, as the real endpoint does;
without alt=sse the endpoint streams one JSON array, `[{...}\\n,\\r\\n{...}\\n]`.
Errors: https://ai.google.dev/gemini-api/docs/troubleshooting#error-codes (google.rpc.Status).
"""

from __future__ import annotations

import json
from typing import Any

from .reply import GEMINI_ERRORS, Planned, Reply, dumps, sse


def error(reply: Reply) -> Planned:
    body = {"error": {"code": reply.status, "message": reply.error_message,
                      "status": reply.error_type or GEMINI_ERRORS.get(reply.status, "UNKNOWN")}}
    return Planned(reply.status, "application/json; charset=UTF-8", body=dumps(body))


def _usage(reply: Reply, output_tokens: int | None) -> dict[str, Any]:
    usage: dict[str, Any] = {"promptTokenCount": reply.input_tokens}
    if output_tokens is not None:
        usage["candidatesTokenCount"] = output_tokens
    usage["totalTokenCount"] = reply.input_tokens + (output_tokens or 0)
    if reply.cache_read_input_tokens:
        usage["cachedContentTokenCount"] = reply.cache_read_input_tokens
    usage["promptTokensDetails"] = [{"modality": "TEXT", "tokenCount": reply.input_tokens}]
    return usage


def _chunk(reply: Reply, model: str, seq: int, parts: list[dict[str, Any]],
           finish: str | None, output_tokens: int | None) -> dict[str, Any]:
    candidate: dict[str, Any] = {"content": {"parts": parts, "role": "model"}}
    if finish:
        candidate["finishReason"] = finish
    candidate["index"] = 0
    return {"candidates": [candidate], "usageMetadata": _usage(reply, output_tokens),
            "modelVersion": model, "responseId": f"fakeresp{seq:06d}"}


def generate(reply: Reply, model_in_path: str, seq: int, stream: bool, alt_sse: bool) -> Planned:
    if reply.status != 200:
        return error(reply)
    model = reply.model or model_in_path or "gemini-fake"
    finish = reply.stop_reason or "STOP"
    calls = [{"functionCall": {"name": t.name, "args": t.arguments}} for t in reply.tool_calls]
    text = reply.full_text()
    if not stream:
        parts = ([{"text": text}] if text or not calls else []) + calls
        body = _chunk(reply, model, seq, parts, finish, reply.output_tokens)
        return Planned(200, "application/json; charset=UTF-8", body=dumps(body))

    objects: list[dict[str, Any]] = []
    pieces = reply.text_pieces() if (text or not calls) else []
    # Like the real API, intermediate chunks carry usage without candidatesTokenCount; the
    # last chunk has the finish reason, the function calls and the full usage.
    for piece in pieces[:-1]:
        objects.append(_chunk(reply, model, seq, [{"text": piece}], None, None))
    last_parts = ([{"text": pieces[-1]}] if pieces else []) + calls
    objects.append(_chunk(reply, model, seq, last_parts, finish, reply.output_tokens))

    if alt_sse:
        events = [sse(o, newline="\r\n") for o in objects]
        return Planned(200, "text/event-stream", events=events)
    # JSON-array form: "[" first piece, ",\r\n" between, "]" closing.
    texts = [json.dumps(o, indent=2, ensure_ascii=False) for o in objects]
    events = [("[" if i == 0 else "\n,\r\n").encode() + t.encode() for i, t in enumerate(texts)]
    events.append(b"\n]")
    return Planned(200, "application/json; charset=UTF-8", events=events)


def embed(reply: Reply, op: str, request: dict[str, Any]) -> Planned:
    """:embedContent -> {"embedding": {"values"}}; :batchEmbedContents -> {"embeddings": [...]}
    (https://ai.google.dev/api/embeddings), with usageMetadata.promptTokenCount."""
    if reply.status != 200:
        return error(reply)
    values = {"values": [0.25, -0.5, 0.125]}
    usage = {"promptTokenCount": reply.input_tokens, "totalTokenCount": reply.input_tokens}
    if op == "embedContent":
        body: dict[str, Any] = {"embedding": values, "usageMetadata": usage}
    else:
        body = {"embeddings": [values for _ in request.get("requests") or [None]], "usageMetadata": usage}
    return Planned(200, "application/json; charset=UTF-8", body=dumps(body))
