"""cost_usd from tokens and a dated price table (agtap/data/prices.json).

Model ids match table keys by longest prefix at a word boundary, so dated and
versioned ids find their family: claude-sonnet-4-5-20250929, claude-sonnet-4-5@20250929
(Vertex), gpt-4o-2024-08-06, models/gemini-2.5-flash-001. Unknown model -> None
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
from importlib import resources

DEFAULT_OVERRIDE = "/etc/agtap/prices.json"


def load_prices(override: str | None = DEFAULT_OVERRIDE) -> dict[str, dict]:
    """The packaged table, with models from `override` (if the file exists) replacing or adding entries.

    Raises ValueError/OSError for an override file that cannot be read as a price table."""
    with resources.files("agtap").joinpath("data", "prices.json").open("rb") as f:
        models = dict(json.load(f)["models"])
    if override and os.path.exists(override):
        with open(override, "rb") as f:
            extra = json.load(f)
        extra = extra.get("models", extra) if isinstance(extra, dict) else None
        if not isinstance(extra, dict) or not all(isinstance(v, dict) for v in extra.values()):
            raise ValueError(f"{override}: expected {{\"models\": {{name: {{\"input\": ..., \"output\": ...}}}}}}")
        models.update(extra)
    return models


class PriceTable:
    def __init__(self, models: dict[str, dict] | None = None, override: str | None = DEFAULT_OVERRIDE):
        self.error: str | None = None   # why the override file was not used, for the service to log
        if models is None:
            try:
                models = load_prices(override)
            except (OSError, ValueError) as e:
                # A broken override must not stop tracing: fall back to the packaged prices.
                self.error = str(e)
                models = load_prices(None)
        self.models = models
        self._keys = sorted(self.models, key=len, reverse=True)
        self._cache: dict[str, dict | None] = {}

    def lookup(self, model: str | None) -> dict | None:
        if not model:
            return None
        hit = self._cache.get(model, False)
        if hit is not False:
            return hit
        m = model.lower()
        for pre in ("models/", "publishers/google/models/", "openai/", "anthropic/", "google/"):
            if m.startswith(pre):
                m = m[len(pre):]
        found = None
        for k in self._keys:
            if m.startswith(k) and (len(m) == len(k) or m[len(k)] in "-@:."):
                if m[len(k):len(k) + 1] == "." and m[len(k) + 1:len(k) + 2].isdigit():
                    continue  # gpt-5 must not price gpt-5.1: a version digit follows
                found = self.models[k]
                break
        if len(self._cache) < 4096:
            self._cache[model] = found
        return found

    def cost(self, call) -> float | None:
        price = self.lookup(call.response_model) or self.lookup(call.model)
        if price is None or (call.input_tokens is None and call.output_tokens is None):
            return None
        inp = call.input_tokens or 0
        out = call.output_tokens or 0
        cread = call.cache_read_input_tokens or 0
        cwrite = call.cache_creation_input_tokens or 0
        model = (call.response_model or call.model or "").lower()
        if call.provider == "anthropic" or "claude" in model:   # Claude on Vertex counts tokens the same way
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
