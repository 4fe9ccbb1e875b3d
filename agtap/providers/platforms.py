"""Where a call was served: the `platform`, from the request's host and path. The one table.

`provider` is the API family the request speaks (anthropic, openai, google, mcp);
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

LOCAL = "local"     # loopback (localhost, 127.0.0.0/8, ::1), and JSON-RPC over pipes and sockets (stdio MCP)
OTHER = "other"     # a host the table does not name


@dataclass(frozen=True, slots=True)
class Platform:
    name: str                         # the event's `platform`
    otel: str | None                  # gen_ai.provider.name; None: the family's (FAMILY_OTEL)
    hosts: tuple[str, ...] = ()       # exact host names, or ".suffix" (matches the name and any under it)
    paths: tuple[str, ...] = ()       # path fragments that name the platform on any host (proxies, tests)


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
FAMILY_OTEL = {"anthropic": "anthropic", "openai": "openai", "google": "gcp.gen_ai"}

NAMES: tuple[str, ...] = tuple(p.name for p in PLATFORMS) + (LOCAL, OTHER)
_BY_NAME = {p.name: p for p in PLATFORMS}


def _host_matches(host: str, pattern: str) -> bool:
    if pattern.startswith("."):
        return host.endswith(pattern) or host == pattern[1:]
    return host == pattern


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
    for p in PLATFORMS:
        if any(frag in path for frag in p.paths):
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
