"""Official `google-genai` Python SDK against the fake API.

Modes: stream, nonstream, tools; vertex-stream and vertex use Vertex AI express mode
(vertexai=True with an API key: /v1beta1/publishers/google/models/M:op, x-goog-api-key).

The SDK is pointed at the fake API with http_options base_url + api_version, and trusts
the test CA through $SSL_CERT_FILE, which google-genai reads when it builds its own
ssl.SSLContext for httpx (google/genai/_api_client.py, _ensure_httpx_ssl_ctx). httpx
speaks HTTP/1.1 unless told http2=True, which nothing here does.
"""

from __future__ import annotations

from google import genai
from google.genai import types

from pyclient_common import api_key, exit_now, parse_args, run, tool_schema, wait_go

args = parse_args(["stream", "nonstream", "tools", "vertex-stream", "vertex"], "gemini-2.5-flash")
vertex = args.mode.startswith("vertex")
client = genai.Client(
    api_key=api_key(),  # sent as x-goog-api-key
    vertexai=vertex,
    http_options=types.HttpOptions(base_url=args.base_url, api_version="v1beta1" if vertex else "v1beta",
                                   retry_options=types.HttpRetryOptions(attempts=1)),
)
config = None
if args.mode == "tools":
    config = types.GenerateContentConfig(
        tools=[types.Tool(function_declarations=[types.FunctionDeclaration(
            name="get_weather", description="Weather for a city", parameters_json_schema=tool_schema())])],
        automatic_function_calling=types.AutomaticFunctionCallingConfig(disable=True),
    )


def summarize(r, streamed_text: str | None = None, usage=None) -> dict:
    usage = usage or r.usage_metadata
    cand = r.candidates[0] if r.candidates else None
    parts = (cand.content.parts or []) if cand and cand.content else []
    return {
        "id": r.response_id, "model": r.model_version,
        "stop_reason": cand.finish_reason.value if cand and cand.finish_reason else None,
        "text": "".join(p.text or "" for p in parts), "streamed_text": streamed_text,
        "tool_calls": [{"name": p.function_call.name, "arguments": p.function_call.args}
                       for p in parts if p.function_call],
        "input_tokens": usage.prompt_token_count, "output_tokens": usage.candidates_token_count,
        "cache_read_input_tokens": usage.cached_content_token_count or 0,
    }


def call() -> dict:
    try:
        if args.mode in ("stream", "vertex-stream"):
            text, last = [], None
            for chunk in client.models.generate_content_stream(model=args.model, contents=args.prompt,
                                                               config=config):
                text.append(chunk.text or "")
                last = chunk
                if len(text) == args.exit_after:
                    exit_now("python-google-genai", args, {"text": "".join(text)})
            out = summarize(last, "".join(text))
            out["text"] = out["streamed_text"]
            return out
        return summarize(client.models.generate_content(model=args.model, contents=args.prompt,
                                                        config=config))
    except genai.errors.APIError as e:
        return {"error": {"status": e.code, "type": e.status, "message": e.message}}


wait_go(args)
run("python-google-genai", args, call)
