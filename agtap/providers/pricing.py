"""cost_usd from tokens and a dated price table (agtap/data/prices.json).

The table has the first parties' prices ("models") and, by platform, the prices of
clouds serving OpenAI-compatible APIs ("platforms": groq, deepseek, xai, mistral): a
call is priced from its platform's table first (the same open model costs differently
on each cloud), then from "models" (Claude on Vertex AI, a model through OpenRouter,
a proxy). /etc/agtap/prices.json overrides both, in the same shape.

Model ids match table keys by longest prefix at a word boundary, so dated and
versioned ids find their family: claude-sonnet-4-5-20250929, claude-sonnet-4-5@20250929
(Vertex), anthropic.claude-sonnet-4-5-20250929-v1:0 (Bedrock), gpt-4o-2024-08-06,
models/gemini-2.5-flash-001, amazon.titan-embed-text-v2:0. Unknown model -> None
(the event then has no cost_usd, rather than a wrong one).

How counts are billed differs by provider, and the table's prices assume:
- anthropic (and Claude on Vertex AI): input_tokens excludes cache reads/writes, each billed at its own price;
- openai, google (Gemini API and Vertex AI): input_tokens includes cached tokens (cache_read_input_tokens)
  and OpenAI's cache writes (cache_creation_input_tokens), billed at cache_read / cache_creation instead of input;
- google: thoughts_tokens are billed as output, on top of candidates (output_tokens);
  OpenAI's reasoning tokens are already inside completion/output tokens.
"""

from __future__ import annotations

import json
import os
import re
from importlib import resources

DEFAULT_OVERRIDE = "/etc/agtap/prices.json"


def _models_of(table, where: str) -> dict[str, dict]:
    if not isinstance(table, dict) or not all(isinstance(v, dict) for v in table.values()):
        raise ValueError(f"{where}: expected {{\"models\": {{name: {{\"input\": ..., \"output\": ...}}}}}}")
    return {k: v for k, v in table.items() if not k.startswith("_")}


def load_tables(override: str | None = DEFAULT_OVERRIDE) -> tuple[dict[str, dict], dict[str, dict[str, dict]]]:
    """(models, {platform: models}): the packaged table, with `override` (if the file exists)
    replacing or adding entries, model by model.

    Raises ValueError/OSError for an override file that cannot be read as a price table."""
    with resources.files("agtap").joinpath("data", "prices.json").open("rb") as f:
        packaged = json.load(f)
    models = dict(packaged["models"])
    platforms = {name: dict(p["models"]) for name, p in packaged.get("platforms", {}).items()}
    if override and os.path.exists(override):
        with open(override, "rb") as f:
            extra = json.load(f)
        if not isinstance(extra, dict):
            raise ValueError(f"{override}: expected a JSON object")
        models.update(_models_of(extra.get("models", {} if "platforms" in extra else extra), override))
        extra_platforms = extra.get("platforms", {})
        if not isinstance(extra_platforms, dict):
            raise ValueError(f"{override}: \"platforms\" must map a platform to {{\"models\": ...}}")
        for name, p in extra_platforms.items():
            table = p.get("models") if isinstance(p, dict) else None
            platforms.setdefault(name, {}).update(_models_of(table, f"{override}: platforms.{name}"))
    return models, platforms


def load_prices(override: str | None = DEFAULT_OVERRIDE) -> dict[str, dict]:
    """The first parties' models table (see load_tables)."""
    return load_tables(override)[0]


_CLAUDE_DOTS = re.compile(r"(?<=\d)\.(?=\d)")
_VENDOR_PREFIXES = ("models/", "publishers/google/models/", "openai/", "anthropic/", "google/")


def _prefix_match(m: str, keys: list[str], models: dict[str, dict]) -> dict | None:
    for k in keys:
        if m.startswith(k) and (len(m) == len(k) or m[len(k)] in "-@:."):
            if m[len(k):len(k) + 1] == "." and m[len(k) + 1:len(k) + 2].isdigit():
                continue  # gpt-5 must not price gpt-5.1: a version digit follows
            return models[k]
    return None


def bedrock_claude(m: str) -> str:
    """Bedrock's ids for Claude -> the Claude API's: 'anthropic.claude-3-5-haiku-20241022-v1:0',
    'us.anthropic.claude-sonnet-4-5-...' (a cross-region inference profile), or an ARN ending in one."""
    if m.startswith("arn:"):
        m = m.rsplit("/", 1)[-1]
    i = m.find("anthropic.claude")
    if i == 0 or (i > 0 and m[i - 1] == "." and "." not in m[:i - 1]):
        return m[i + len("anthropic."):]
    return m


class PriceTable:
    def __init__(self, models: dict[str, dict] | None = None, override: str | None = DEFAULT_OVERRIDE,
                 platforms: dict[str, dict[str, dict]] | None = None):
        self.error: str | None = None   # why the override file was not used, for the service to log
        if models is None:
            try:
                models, loaded = load_tables(override)
            except (OSError, ValueError) as e:
                # A broken override must not stop tracing: fall back to the packaged prices.
                self.error = str(e)
                models, loaded = load_tables(None)
            platforms = loaded if platforms is None else platforms
        self.models = models
        self.platforms = platforms or {}
        self._keys = sorted(self.models, key=len, reverse=True)
        self._platform_keys = {name: sorted(t, key=len, reverse=True) for name, t in self.platforms.items()}
        self._cache: dict[tuple[str, str], dict | None] = {}

    def lookup(self, model: str | None, platform: str = "") -> dict | None:
        """The price of `model` as served by `platform`: its table first, then the first parties'."""
        if not model:
            return None
        hit = self._cache.get((model, platform), False)
        if hit is not False:
            return hit
        m = model.lower()
        found = None
        if platform in self.platforms:   # the platform's own ids, vendor prefix and all (openai/gpt-oss-120b)
            found = _prefix_match(m, self._platform_keys[platform], self.platforms[platform])
        if found is None:
            m = bedrock_claude(m)
            for pre in _VENDOR_PREFIXES:
                if m.startswith(pre):
                    m = m[len(pre):]
            found = _prefix_match(m, self._keys, self.models)
            if found is None and m.startswith("claude-"):
                # OpenRouter spells Claude's versions with dots (anthropic/claude-sonnet-4.5, claude-3.5-haiku)
                found = _prefix_match(_CLAUDE_DOTS.sub("-", m), self._keys, self.models)
        if len(self._cache) < 4096:
            self._cache[(model, platform)] = found
        return found

    def cost(self, call) -> float | None:
        platform = getattr(call, "platform", "")
        price = self.lookup(call.response_model, platform) or self.lookup(call.model, platform)
        if price is None or (call.input_tokens is None and call.output_tokens is None):
            return None
        inp = call.input_tokens or 0
        out = call.output_tokens or 0
        cread = call.cache_read_input_tokens or 0
        cwrite = call.cache_creation_input_tokens or 0
        model = (call.response_model or call.model or "").lower()
        # Anthropic's usage (on any platform) leaves cache reads/writes out of input_tokens; so does
        # Claude in other native APIs (Bedrock). An OpenAI-shaped answer (OpenRouter's Claude) counts them in.
        if call.provider == "anthropic" or ("claude" in model and call.provider != "openai"):
            prompt_size = inp + cread + cwrite
        else:
            prompt_size = inp
            inp = max(0, inp - cread - cwrite)   # both are inside OpenAI's and Gemini's input count
            if call.provider == "google":
                out += call.thoughts_tokens or 0
        if "above_tokens" in price and prompt_size > price["above_tokens"]:
            price = {**price, **price.get("above", {})}
        p_in = price.get("input", 0.0)
        usd = (inp * p_in + out * price.get("output", 0.0)
               + cread * price.get("cache_read", p_in)
               + cwrite * price.get("cache_creation", p_in)) / 1e6
        return round(usd, 8)
