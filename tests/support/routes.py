"""Which answer a request gets: the FakeApi's routes, matched by path like the real APIs.

LLM routes take the next scripted Reply (take_reply) and hand it to the provider's shape
module; /echo and /bulk/{n} answer without one.
"""

from __future__ import annotations

import json
import re
from typing import Callable

from urllib.parse import unquote

from . import shapes_anthropic, shapes_bedrock, shapes_gemini, shapes_ollama, shapes_openai
from .exchange import Exchange
from .reply import Planned, Reply

# Google AI /v1beta/models/M:op, Vertex AI /v1/projects/P/locations/L/publishers/google/models/M:op,
# Vertex express mode /v1beta1/publishers/google/models/M:op.
GEMINI_PATH = re.compile(r"^/v1\w*/(?:[^:]*/)?models/([^/:]+):(generateContent|streamGenerateContent)$")
# Claude on Vertex AI: https://docs.anthropic.com/en/api/claude-on-vertex-ai (the Messages
# body without "model", at :rawPredict; :streamRawPredict answers with the same SSE).
VERTEX_ANTHROPIC_PATH = re.compile(
    r"^/v1\w*/projects/[^/]+/locations/[^/]+/publishers/anthropic/models/([^/:]+):(rawPredict|streamRawPredict)$")
# Azure OpenAI: /openai/deployments/{deployment}/chat/completions?api-version=...
# (https://learn.microsoft.com/azure/ai-services/openai/reference), same bodies as OpenAI.
# Also .../responses and .../embeddings, and the deployment-less /openai/v1/... and
# /openai/responses (where AzureOpenAI sends Responses calls, the deployment in the body) forms.
AZURE_PATH = re.compile(r"^/openai/(?:deployments/([^/]+)/|v1/|)(chat/completions|responses|embeddings)$")
GEMINI_EMBED_PATH = re.compile(r"^/v1\w*/(?:[^:]*/)?models/([^/:]+):(embedContent|batchEmbedContents)$")
# AWS Bedrock Runtime: /model/{modelId}/{operation}, the model id percent-encoded by the SDKs.
BEDROCK_PATH = re.compile(r"^/model/([^/]+)/(converse|converse-stream|invoke|invoke-with-response-stream)$")
OLLAMA_PATHS = ("/api/chat", "/api/generate", "/api/embed")


def _take(ex: Exchange, take_reply: Callable[[str], Reply]) -> tuple[Reply, dict]:
    """The scripted reply for this LLM request (kept in ex.reply) and the request's JSON body
    ({} when it has none or it is not JSON)."""
    reply = ex.reply = take_reply(ex.target)
    try:
        return reply, json.loads(ex.body or b"{}")
    except ValueError:
        return reply, {}


def _streams(reply: Reply, asked: bool) -> bool:
    """Whether to stream: Reply.stream when the test says, else what the request asked for."""
    return asked if reply.stream is None else reply.stream


def _other_api(ex: Exchange, take_reply: Callable[[str], Reply]) -> tuple[Planned, bool] | None:
    """Bedrock, Ollama and the embeddings endpoints (None: not one of theirs)."""
    path = ex.path
    bedrock, gem_embed = BEDROCK_PATH.match(path), GEMINI_EMBED_PATH.match(path)
    if not (bedrock or gem_embed or path in OLLAMA_PATHS or path == "/v1/embeddings"):
        return None
    reply, request = _take(ex, take_reply)
    if bedrock:
        model, op = unquote(bedrock.group(1)), bedrock.group(2)
        stream = _streams(reply, op.endswith("stream"))
        if op.startswith("converse"):
            return shapes_bedrock.converse(reply, ex.seq, stream), stream
        return shapes_bedrock.invoke(reply, model, request, ex.seq, stream), stream
    if gem_embed:
        return shapes_gemini.embed(reply, gem_embed.group(2), request), False
    if path == "/v1/embeddings":
        return shapes_openai.embeddings(reply, request, ex.seq), False
    if path == "/api/embed":
        return shapes_ollama.embed(reply, request), False
    # Ollama streams unless the request says "stream": false
    stream = _streams(reply, request.get("stream") is not False)
    return shapes_ollama.generate(reply, path, request, stream), stream


def plan(ex: Exchange, take_reply: Callable[[str], Reply]) -> tuple[Planned, bool]:
    """(answer, streamed?) for the request in `ex`; sets ex.reply for LLM routes."""
    path, method = ex.path, ex.method
    if method == "POST" and path == "/echo":
        ctype = ex.header("content-type") or "application/octet-stream"
        return Planned(200, ctype, body=ex.body), False
    if method == "GET" and (m := re.fullmatch(r"/bulk/(\d+)", path)):
        n = int(m.group(1))
        filler = (b"agtap-bulk-filler-" * (n // 18 + 1))[:n]
        return Planned(200, "application/octet-stream", body=filler), False
    if method == "POST" and (other := _other_api(ex, take_reply)) is not None:
        return other
    gem = GEMINI_PATH.match(path)
    vertex_claude = VERTEX_ANTHROPIC_PATH.match(path)
    azure = AZURE_PATH.match(path)
    if method != "POST" or not (gem or vertex_claude or azure or path in (
            "/v1/messages", "/v1/chat/completions", "/v1/responses")):
        body = json.dumps({"error": {"message": f"fake API: no route {method} {path}"}}).encode()
        return Planned(404, "application/json", body=body), False
    reply, request = _take(ex, take_reply)
    if gem:
        stream = _streams(reply, gem.group(2) == "streamGenerateContent")
        alt_sse = ex.query.get("alt") == ["sse"]
        return shapes_gemini.generate(reply, gem.group(1), ex.seq, stream, alt_sse), stream
    if vertex_claude:
        stream = _streams(reply, vertex_claude.group(2) == "streamRawPredict" or bool(request.get("stream")))
        request.setdefault("model", vertex_claude.group(1))
        return shapes_anthropic.messages(reply, request, ex.seq, stream), stream
    stream = _streams(reply, bool(request.get("stream")))
    if azure:
        if azure.group(1):
            request.setdefault("model", azure.group(1))
        shape = {"chat/completions": shapes_openai.chat, "responses": shapes_openai.responses}.get(azure.group(2))
        if shape is None:
            return shapes_openai.embeddings(reply, request, ex.seq), False
        return shape(reply, request, ex.seq, stream), stream
    shape = {"/v1/messages": shapes_anthropic.messages, "/v1/chat/completions": shapes_openai.chat,
             "/v1/responses": shapes_openai.responses}[path]
    return shape(reply, request, ex.seq, stream), stream
