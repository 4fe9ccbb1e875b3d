"""The platform table (agtap/providers/platforms.py): who served a call, and its OTel name.

Expected values are from each service's documented base URL (api.groq.com/openai/v1,
api.deepseek.com, api.mistral.ai/v1, api.x.ai/v1, openrouter.ai/api/v1, api.together.xyz/v1,
Vertex AI's {region}-aiplatform.googleapis.com) and the OpenTelemetry semantic
conventions' gen_ai.provider.name list.
"""

from __future__ import annotations

import pytest

from agtap.call import PROVIDERS
from agtap.providers import platforms
from agtap.providers.platforms import LOCAL, OTHER, otel_provider_name, platform_for
from tests.support.harness import Run, request, response

VERTEX = "/v1/projects/p/locations/us-central1/publishers/google/models/gemini-2.5-flash:generateContent"


@pytest.mark.parametrize("host,path,transport,want", [
    ("api.anthropic.com", "/v1/messages", "tls", "anthropic"),
    ("api.openai.com", "/v1/chat/completions", "tls", "openai"),
    ("generativelanguage.googleapis.com", "/v1beta/models/gemini-2.5-flash:generateContent", "tls", "gemini"),
    ("us-central1-aiplatform.googleapis.com", VERTEX, "tls", "vertex_ai"),
    ("aiplatform.googleapis.com", "/v1beta1/publishers/google/models/gemini-2.5-flash:generateContent", "tls",
     "vertex_ai"),
    ("litellm.internal", VERTEX, "tls", "vertex_ai"),       # a Vertex path through a proxy is still Vertex AI
    ("127.0.0.1", VERTEX, "socket", "vertex_ai"),
    ("api.groq.com", "/openai/v1/chat/completions", "tls", "groq"),
    ("API.GROQ.COM.", "/openai/v1/chat/completions", "tls", "groq"),   # DNS names: any case, trailing dot
    ("api.deepseek.com", "/chat/completions", "tls", "deepseek"),
    ("api.mistral.ai", "/v1/chat/completions", "tls", "mistral"),
    ("api.x.ai", "/v1/responses", "tls", "xai"),
    ("openrouter.ai", "/api/v1/chat/completions", "tls", "openrouter"),
    ("api.together.xyz", "/v1/chat/completions", "tls", "together"),
    ("api.perplexity.ai", "/chat/completions", "tls", "perplexity"),
    ("localhost", "/v1/chat/completions", "socket", LOCAL),
    ("127.0.0.1", "/v1/messages", "tls", LOCAL),
    ("127.1.2.3", "/v1/messages", "socket", LOCAL),
    ("::1", "/v1/messages", "socket", LOCAL),
    ("", "", "pipe", LOCAL),                                 # stdio MCP
    ("", "", "socket", LOCAL),                               # JSON-RPC on a socketpair
    ("10.0.0.5", "/v1/chat/completions", "socket", OTHER),   # another machine: not "local"
    ("evil-api.anthropic.com.example", "/v1/messages", "tls", OTHER),
    ("notapi.openai.com", "/v1/chat/completions", "tls", OTHER),
    ("groq.com", "/openai/v1/chat/completions", "tls", OTHER),
    ("", "/v1/messages", "tls", OTHER),
    ("bedrock-runtime.us-east-1.amazonaws.com", "/model/anthropic.claude-3-5-haiku-20241022-v1%3A0/converse", "tls",
     "aws_bedrock"),
    ("127.0.0.1", "/model/amazon.titan-embed-text-v2%3A0/invoke", "tls", "aws_bedrock"),   # a Bedrock path anywhere
    ("bedrock-runtime.eu-west-1.amazonaws.com", "/openai/v1/chat/completions", "tls", "aws_bedrock"),
    ("bedrock-runtime-fips.us-east-1.amazonaws.com", "/openai/v1/chat/completions", "tls", "aws_bedrock"),
    ("bedrock-runtime.amazonaws.com", "/v1/chat/completions", "tls", OTHER),       # "*" is at least one label
    ("runtime.sagemaker.us-east-1.amazonaws.com", "/endpoints/x/invocations", "tls", OTHER),
    ("my-res.openai.azure.com", "/openai/v1/chat/completions", "tls", "azure_openai"),
    ("my-res.cognitiveservices.azure.com", "/openai/v1/responses", "tls", "azure_openai"),
    ("127.0.0.1", "/openai/deployments/gpt4o/chat/completions", "tls", "azure_openai"),
    ("127.0.0.1", "/openai/responses", "tls", "azure_openai"),      # where AzureOpenAI sends Responses calls
    ("127.0.0.1", "/openai/v1/responses", "tls", LOCAL),            # Groq's path too: only an Azure host says Azure
    ("127.0.0.1", "/api/chat", "socket", "ollama"),
    ("ollama.com", "/api/generate", "tls", "ollama"),
    ("127.0.0.1", "/api/chat/completions", "socket", LOCAL),       # Open WebUI's OpenAI-style path: not Ollama's
    ("127.0.0.1", "/v1/chat/completions", "socket", LOCAL),        # Ollama's OpenAI-compatible API: nothing says so
])
def test_platform_for(host, path, transport, want):
    assert platform_for(host, path, transport) == want
    assert platform_for(host, path, transport) == want     # asked again: the remembered answer is the same


def test_long_paths_are_judged_without_the_cache():
    """A key past _CACHED_KEY_MAX is not kept (memory), and is judged by the same table."""
    pad = "/x" * 400
    vertex = f"/v1/projects/p{pad}/locations/us-central1/publishers/google/models/gemini:generateContent"
    before = platforms._cached_platform.cache_info().currsize
    assert platform_for("example.com", vertex, "tls") == "vertex_ai"
    assert platform_for("127.0.0.1", pad + "/api/chat", "socket") == "ollama"
    assert platform_for("127.0.0.1", pad + "/api/chat/x", "socket") == LOCAL
    assert platform_for("api.anthropic.com", pad, "tls") == "anthropic"
    assert platforms._cached_platform.cache_info().currsize == before


# https://opentelemetry.io/docs/specs/semconv/registry/attributes/gen-ai/ (gen_ai.provider.name)
SEMCONV = {"anthropic", "aws.bedrock", "azure.ai.inference", "azure.ai.openai", "cohere", "deepseek", "gcp.gemini",
           "gcp.gen_ai", "gcp.vertex_ai", "groq", "ibm.watsonx.ai", "mistral_ai", "openai", "perplexity", "x_ai"}


def test_every_otel_name_is_a_semantic_conventions_value():
    assert {p.otel for p in platforms.PLATFORMS if p.otel} <= SEMCONV
    assert set(platforms.FAMILY_OTEL.values()) <= SEMCONV
    assert set(platforms.FAMILY_OTEL) <= set(PROVIDERS)
    names = [p.name for p in platforms.PLATFORMS]
    assert len(names) == len(set(names)) and LOCAL not in names and OTHER not in names


@pytest.mark.parametrize("provider,platform,want", [
    ("anthropic", "anthropic", "anthropic"),
    ("anthropic", "vertex_ai", "gcp.vertex_ai"),
    ("google", "vertex_ai", "gcp.vertex_ai"),
    ("google", "gemini", "gcp.gemini"),
    ("google", LOCAL, "gcp.gen_ai"),
    ("openai", "groq", "groq"),
    ("openai", "xai", "x_ai"),
    ("openai", "mistral", "mistral_ai"),
    ("openai", "openrouter", "openai"),     # not in the conventions: the API family's name
    ("openai", OTHER, "openai"),
    ("aws_bedrock", "aws_bedrock", "aws.bedrock"),
    ("anthropic", "aws_bedrock", "aws.bedrock"),     # Claude through InvokeModel
    ("openai", "azure_openai", "azure.ai.openai"),
    ("ollama", "ollama", None),                       # not in the conventions: the OTel sink writes "ollama"
    ("mcp", LOCAL, None),
])
def test_otel_provider_name(provider, platform, want):
    assert otel_provider_name(provider, platform) == want


def test_the_pipeline_sets_platform_from_the_host_header():
    r = Run()
    r.out(request("/openai/v1/chat/completions", {"model": "llama-3.3-70b-versatile"}, host="api.groq.com"), 0)
    r.inn(response({"id": "chatcmpl-9f", "object": "chat.completion", "model": "llama-3.3-70b-versatile",
                    "choices": [{"index": 0, "message": {"role": "assistant", "content": "hi"},
                                 "finish_reason": "stop"}],
                    "usage": {"prompt_tokens": 5, "completion_tokens": 1}}), 10)
    c = r.one()
    assert (c.provider, c.platform, c.server_address, c.id) == ("openai", "groq", "api.groq.com", "chatcmpl-9f")
    ev = c.to_dict()
    assert (ev["provider"], ev["platform"], ev["id"], ev["response_id"]) == ("openai", "groq", "chatcmpl-9f",
                                                                           "chatcmpl-9f")
    assert len(ev["event_id"]) == 32 and ev["event_id"] != ev["id"]
