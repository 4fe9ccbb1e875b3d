"""Where a call was served: the `platform`, from the request's host and path. The one table.

`provider` is the API family the request speaks (anthropic, openai, google, aws_bedrock,
ollama, mcp);
`platform` is who answered it: the first party (api.anthropic.com -> "anthropic"),
a cloud that serves the same API (Vertex AI, Groq, OpenRouter ...), a server on
this host ("local"), or "other" (a proxy or gateway this table does not know).
Each row also carries the OpenTelemetry `gen_ai.provider.name` for calls served
there, from the semantic conventions' list
(https://opentelemetry.io/docs/specs/semconv/registry/attributes/gen-ai/):
platforms the list does not name take their family's value, as the conventions
say for an OpenAI-compatible API ("set to openai based on the instrumentation's
best knowledge").

Add a platform by adding a row: the event, the journal, the Prometheus label,
the OTel attribute and the TUI all follow.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass
from functools import lru_cache

LOCAL = "local"     # loopback (localhost, 127.0.0.0/8, ::1), and JSON-RPC over pipes and sockets (stdio MCP)
OTHER = "other"     # a host the table does not name


@dataclass(frozen=True, slots=True)
class Platform:
    name: str                         # the event's `platform`
    otel: str | None                  # gen_ai.provider.name; None: the family's (FAMILY_OTEL)
    hosts: tuple[str, ...] = ()       # exact host names, ".suffix" (matches the name and any under it),
                                      # or "a.*.b" ("*": one or more labels: bedrock-runtime.us-east-1.amazonaws.com)
    paths: tuple[str, ...] = ()       # path fragments that name the platform on any host (proxies, tests);
                                      # one ending in "$" must end the path (Ollama's /api/chat, not /api/chat/x)


# Order matters only for paths: the first row whose fragment is in the path wins,
# before any host is looked at (a Vertex AI path through a proxy is still Vertex AI).
PLATFORMS: tuple[Platform, ...] = (
    # Vertex AI: /v1/projects/{p}/locations/{l}/publishers/{google|anthropic}/models/...,
    # express mode /v1beta1/publishers/google/models/...
    Platform("vertex_ai", "gcp.vertex_ai", (".aiplatform.googleapis.com", "aiplatform.googleapis.com"),
             ("/publishers/", "/locations/")),
    Platform("anthropic", "anthropic", ("api.anthropic.com",)),
    Platform("openai", "openai", ("api.openai.com",)),
    Platform("gemini", "gcp.gemini", ("generativelanguage.googleapis.com",)),   # Gemini API (Google AI Studio)
    # AWS Bedrock Runtime: /model/{modelId}/converse|converse-stream|invoke|invoke-with-response-stream
    # (no other API puts "/model/" in its path), or its host (also its OpenAI-compatible endpoints)
    Platform("aws_bedrock", "aws.bedrock", ("bedrock-runtime.*.amazonaws.com", "bedrock-runtime-fips.*.amazonaws.com"),
             ("/model/",)),
    # Azure OpenAI: /openai/deployments/{d}/..., /openai/responses (the SDK's Responses path), or its hosts
    # (the deployment-less /openai/v1/... is Groq's path too: that form is named by the host)
    Platform("azure_openai", "azure.ai.openai",
             (".openai.azure.com", ".cognitiveservices.azure.com", ".services.ai.azure.com"),
             ("/openai/deployments/", "/openai/responses$")),
    # Ollama's native API, wherever it runs (a local server, ollama.com); its OpenAI-compatible
    # /v1/... on a local port is "local": nothing there says Ollama
    Platform("ollama", None, ("ollama.com",), ("/api/chat$", "/api/generate$", "/api/embed$", "/api/embeddings$")),
    # OpenAI-compatible clouds (provider "openai": recognised by path, named here by host)
    Platform("groq", "groq", ("api.groq.com",)),
    Platform("deepseek", "deepseek", ("api.deepseek.com",)),
    Platform("mistral", "mistral_ai", ("api.mistral.ai", "codestral.mistral.ai")),
    Platform("xai", "x_ai", ("api.x.ai",)),
    Platform("perplexity", "perplexity", ("api.perplexity.ai",)),
    Platform("openrouter", None, ("openrouter.ai",)),
    Platform("together", None, ("api.together.xyz", "api.together.ai")),
    Platform("fireworks", None, ("api.fireworks.ai",)),
    Platform("cerebras", None, ("api.cerebras.ai",)),
    Platform("deepinfra", None, ("api.deepinfra.com",)),
)

# gen_ai.provider.name for a family, where the platform's row names none
FAMILY_OTEL = {"anthropic": "anthropic", "openai": "openai", "google": "gcp.gen_ai", "aws_bedrock": "aws.bedrock"}

NAMES: tuple[str, ...] = tuple(p.name for p in PLATFORMS) + (LOCAL, OTHER)
_BY_NAME = {p.name: p for p in PLATFORMS}


def _host_matches(host: str, pattern: str) -> bool:
    if pattern.startswith("."):
        return host.endswith(pattern) or host == pattern[1:]
    if "*" in pattern:
        head, _, tail = pattern.partition("*")
        return len(host) > len(head) + len(tail) and host.startswith(head) and host.endswith(tail)
    return host == pattern


def _path_matches(path: str, fragment: str) -> bool:
    return path.endswith(fragment[:-1]) if fragment.endswith("$") else fragment in path


def is_loopback(host: str) -> bool:
    if not host:
        return False
    if host == "localhost" or host.endswith(".localhost"):
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def platform_for(host: str, path: str = "", transport: str = "") -> str:
    """The platform that served a request to `host` (no port) for `path`."""
    if len(host) + len(path) <= _CACHED_KEY_MAX:
        return _cached_platform(host, path, transport)
    return _platform(host, path, transport)


# Every call asks once; a host runs few distinct (host, path) pairs, and walking the table
# (path fragments, loopback parse, host patterns) cost ~30 µs a call, a quarter of a
# non-streamed call's pipeline time. Long keys (unusual, maybe hostile) are not kept.
_CACHED_KEY_MAX = 512


@lru_cache(maxsize=512)
def _cached_platform(host: str, path: str, transport: str) -> str:
    return _platform(host, path, transport)


def _platform(host: str, path: str, transport: str) -> str:
    for p in PLATFORMS:
        if any(_path_matches(path, frag) for frag in p.paths):
            return p.name
    if not host and transport in ("pipe", "socket"):
        return LOCAL    # JSON-RPC over a pipe or a socket with no HTTP: an MCP server on this host
    host = host.lower().rstrip(".")
    if is_loopback(host):
        return LOCAL
    for p in PLATFORMS:
        if any(_host_matches(host, pat) for pat in p.hosts):
            return p.name
    return OTHER


def otel_provider_name(provider: str, platform: str) -> str | None:
    """gen_ai.provider.name for a call of `provider` served by `platform` (None for MCP)."""
    row = _BY_NAME.get(platform)
    if row is not None and row.otel:
        return row.otel
    return FAMILY_OTEL.get(provider)
