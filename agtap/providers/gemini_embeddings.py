"""Google embeddings: :embedContent, :batchEmbedContents (Gemini API and Vertex AI) and
Vertex AI's :predict for text-embedding models.

Shapes: https://ai.google.dev/api/embeddings (EmbedContentResponse {"embedding": {"values"}},
BatchEmbedContentsResponse {"embeddings": [...]}, with usageMetadata.promptTokenCount
when the API reports it) and Vertex AI's
https://cloud.google.com/vertex-ai/generative-ai/docs/model-reference/text-embeddings-api
(:predict -> {"predictions": [{"embeddings": {"values", "statistics": {"token_count"}}}]}),
which google-genai's embed_content calls on Vertex. Never streamed, no response id.
Errors as for generateContent ({"error": {"code", "message", "status"}}). Provider "google",
platform "gemini" or "vertex_ai" (agtap/providers/platforms.py), as for generateContent.
"""

from __future__ import annotations

from agtap.providers.base import as_int, copy_counts, never
from agtap.providers.gemini import api_error

NAME = "google"
STREAM_JSON_ARRAY = False   # never streamed
_OPS = (":embedContent", ":batchEmbedContents")


def _model(path: str) -> str | None:
    """The model of an embeddings path, or None if the path is not one."""
    colon = path.rfind(":")
    i = path.rfind("/models/", 0, colon)
    if colon < 0 or i < 0:
        return None
    model, op = path[i + 8:colon], path[colon:]
    if op in _OPS or (op == ":predict" and "/publishers/google/" in path and "embed" in model):
        return model
    return None


def match(req) -> bool:
    return req.method == "POST" and _model(req.path) is not None


fast = stream_end = never   # answers are one JSON body


def begin(req, call):
    call.model = _model(req.path)
    call.streaming = False
    call.operation = "embeddings"
    return None


def feed(state, call, event, obj, ts) -> None:
    if not isinstance(obj, dict) or api_error(call, obj):
        return
    copy_counts(call, obj.get("usageMetadata"), (("promptTokenCount", "input_tokens"),))
    preds = obj.get("predictions")
    if isinstance(preds, list) and call.input_tokens is None:   # Vertex :predict
        counts = [_token_count(p) for p in preds]
        if counts and None not in counts:
            call.input_tokens = sum(counts)


def _token_count(prediction) -> int | None:
    e = prediction.get("embeddings") if isinstance(prediction, dict) else None
    s = e.get("statistics") if isinstance(e, dict) else None
    return as_int(s.get("token_count")) if isinstance(s, dict) else None


def finish(state, call) -> None:
    pass
