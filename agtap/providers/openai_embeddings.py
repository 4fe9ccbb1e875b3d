"""OpenAI Embeddings: POST .../embeddings (OpenAI, Azure OpenAI, compatible servers).

Shapes: https://platform.openai.com/docs/api-reference/embeddings/create
({"object": "list", "data": [{"embedding": [...]}], "model", "usage": {"prompt_tokens",
"total_tokens"}}; no response id, never streamed). Azure:
/openai/deployments/{deployment}/embeddings, the model named by the deployment.
Errors as for chat completions.
"""

from __future__ import annotations

from agtap.providers.base import copy_counts, never, set_error
from agtap.providers.openai_chat import azure_deployment, azure_model, error_kind

NAME = "openai"
STREAM_JSON_ARRAY = False   # never streamed


def match(req) -> bool:
    # Ollama's older /api/embeddings is its own API (agtap.providers.ollama, matched first)
    return req.method == "POST" and req.path.endswith("/embeddings") and not req.path.endswith("/api/embeddings")


fast = stream_end = never   # answers are one JSON body


def begin(req, call):
    m = req.json_obj().get("model")
    call.model = azure_deployment(req.path) or (m if isinstance(m, str) else None)
    call.streaming = False
    call.operation = "embeddings"
    return None


def feed(state, call, event, obj, ts) -> None:
    if not isinstance(obj, dict):
        return
    if obj.get("error"):
        set_error(call, error_kind(obj["error"]))
        return
    if isinstance(obj.get("model"), str) and obj["model"]:
        call.response_model = obj["model"]
    copy_counts(call, obj.get("usage"), (("prompt_tokens", "input_tokens"),))


def finish(state, call) -> None:
    azure_model(call)
