"""Embeddings through the whole pipeline: OpenAI /v1/embeddings (and Azure's), Gemini
:embedContent / :batchEmbedContents, Vertex AI :predict. (Bedrock's Titan and Cohere are in
test_provider_bedrock, Ollama's /api/embed in test_provider_ollama.)"""

from __future__ import annotations

from tests.support.harness import Run, fixture, request, response


def test_openai_embeddings():
    r = Run()
    r.out(request("/v1/embeddings", {"model": "text-embedding-3-small", "input": "The food was delicious"},
                  host="api.openai.com"), 0)
    r.inn(response(fixture("openai_embeddings.json")), 25)
    c = r.one()
    assert (c.provider, c.platform, c.operation, c.model, c.response_model, c.streaming) == \
        ("openai", "openai", "embeddings", "text-embedding-3-small", "text-embedding-3-small", False)
    assert (c.input_tokens, c.output_tokens, c.stop_reason, c.ttft_ms) == (8, None, None, None)
    assert c.cost_usd == round(8 * 0.02 / 1e6, 8)     # $0.02 per million input tokens


def test_azure_embeddings_name_the_model_by_the_answer_else_the_deployment():
    r = Run()
    r.out(request("/openai/deployments/emb-small/embeddings?api-version=2024-10-21", {"input": ["x"]},
                  host="x.openai.azure.com", headers={"api-key": "azure-secret"}), 0)
    r.inn(response(fixture("openai_embeddings.json")), 25)
    c = r.one()
    assert (c.model, c.operation, c.input_tokens, c.platform) == ("text-embedding-3-small", "embeddings", 8,
                                                                  "azure_openai")
    r2 = Run()
    r2.out(request("/openai/deployments/emb-small/embeddings?api-version=2024-10-21", {"input": ["x"]},
                   host="x.openai.azure.com"), 0)
    r2.inn(response({"error": {"code": "DeploymentNotFound", "message": "no"}}, status=404), 5)
    c2 = r2.one()
    assert c2.model == "emb-small" and c2.stop_reason == "error:DeploymentNotFound"


def test_ollama_s_older_embeddings_path_is_ollama_s():
    r = Run()
    r.out(request("/api/embeddings", {"model": "all-minilm", "prompt": "x"}, host="127.0.0.1:11434"), 0)
    r.inn(response({"embedding": [0.1, 0.2]}), 5)
    c = r.one()
    assert (c.provider, c.platform, c.operation, c.input_tokens) == ("ollama", "ollama", "embeddings", None)


def test_gemini_batch_embed_contents():
    r = Run()
    body = {"requests": [{"model": "models/gemini-embedding-001", "content": {"parts": [{"text": "a"}]}},
                         {"model": "models/gemini-embedding-001", "content": {"parts": [{"text": "b"}]}}]}
    r.out(request("/v1beta/models/gemini-embedding-001:batchEmbedContents", body,
                  host="generativelanguage.googleapis.com"), 0)
    r.inn(response(fixture("gemini_batch_embed.json")), 30)
    c = r.one()
    assert (c.operation, c.model, c.input_tokens, c.streaming) == ("embeddings", "gemini-embedding-001", 9, False)
    assert (c.provider, c.platform) == ("google", "gemini")
    assert c.cost_usd == round(9 * 0.15 / 1e6, 8)


def test_gemini_embed_content_and_its_error():
    r = Run()
    r.out(request("/v1beta/models/gemini-embedding-001:embedContent", {"content": {"parts": [{"text": "a"}]}},
                  host="generativelanguage.googleapis.com"), 0)
    r.inn(response({"embedding": {"values": [0.1]}}), 10)      # no usageMetadata: no count, no cost
    c = r.one()
    assert (c.operation, c.input_tokens, c.cost_usd) == ("embeddings", None, None)
    r2 = Run()
    r2.out(request("/v1beta/models/gemini-embedding-001:embedContent", {}, host="generativelanguage.googleapis.com"), 0)
    r2.inn(response(fixture("gemini_error_429.json"), status=429), 10)
    assert r2.one().stop_reason == "error:RESOURCE_EXHAUSTED"


def test_vertex_predict_for_a_text_embedding_model():
    path = "/v1/projects/p/locations/us-central1/publishers/google/models/text-embedding-005:predict"
    r = Run()
    r.out(request(path, {"instances": [{"content": "a"}, {"content": "b"}]},
                  host="us-central1-aiplatform.googleapis.com"), 0)
    r.inn(response(fixture("vertex_predict_embed.json")), 10)
    c = r.one()
    assert (c.operation, c.model, c.input_tokens) == ("embeddings", "text-embedding-005", 10)   # 6 + 4
    assert (c.provider, c.platform) == ("google", "vertex_ai")
    # :predict of a model that is not an embedding model is not taken for one
    r2 = Run()
    r2.out(request("/v1/projects/p/locations/l/publishers/google/models/imagen-3.0:predict", {}), 0)
    r2.inn(response({"predictions": []}), 10)
    assert r2.calls == []
