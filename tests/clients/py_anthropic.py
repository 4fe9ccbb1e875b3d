"""Official `anthropic` Python SDK against the fake API.

Modes: stream, nonstream, tools, tools-stream; vertex-stream and vertex use the SDK's
AnthropicVertex client (Claude on Vertex AI: :streamRawPredict / :rawPredict, the key
sent as an OAuth access token in Authorization: Bearer).
"""

from __future__ import annotations

import anthropic

from pyclient_common import api_key, exit_now, http_client, parse_args, run, tool_schema, wait_go

args = parse_args(["stream", "nonstream", "tools", "tools-stream", "vertex-stream", "vertex"],
                  "claude-sonnet-5")
# max_retries=0: a scripted 429 must reach the script as one request, not be retried.
if args.mode.startswith("vertex"):
    client = anthropic.AnthropicVertex(region="us-east5", project_id="agtap-test", access_token=api_key(),
                                       base_url=args.base_url.rstrip("/") + "/v1", max_retries=0)
else:
    client = anthropic.Anthropic(api_key=api_key(), base_url=args.base_url, max_retries=0,
                                 http_client=http_client(args))
params = {"model": args.model, "max_tokens": 256,
          "messages": [{"role": "user", "content": args.prompt}]}
if args.mode.startswith("tools"):
    params["tools"] = [{"name": "get_weather", "description": "Weather for a city",
                        "input_schema": tool_schema()}]


def summarize(msg: anthropic.types.Message, streamed_text: str | None = None) -> dict:
    u = msg.usage
    return {
        "id": msg.id, "model": msg.model, "stop_reason": msg.stop_reason,
        "text": "".join(b.text for b in msg.content if b.type == "text"),
        "streamed_text": streamed_text,
        "tool_calls": [{"id": b.id, "name": b.name, "arguments": b.input}
                       for b in msg.content if b.type == "tool_use"],
        "input_tokens": u.input_tokens, "output_tokens": u.output_tokens,
        "cache_creation_input_tokens": u.cache_creation_input_tokens,
        "cache_read_input_tokens": u.cache_read_input_tokens,
    }


def call() -> dict:
    try:
        if args.mode in ("stream", "tools-stream", "vertex-stream"):
            with client.messages.stream(**params) as stream:
                pieces = []
                for piece in stream.text_stream:
                    pieces.append(piece)
                    if len(pieces) == args.exit_after:
                        exit_now("python-anthropic", args, {"text": "".join(pieces)})
                return summarize(stream.get_final_message(), "".join(pieces))
        return summarize(client.messages.create(**params))
    except anthropic.APIConnectionError:
        raise  # the harness is broken (CA, port): fail the script
    except anthropic.APIError as e:  # HTTP error status, or `event: error` inside a stream
        body = e.body if isinstance(e.body, dict) else {}
        return {"error": {"status": getattr(e, "status_code", None),
                          "type": (body.get("error") or {}).get("type"),
                          "message": (body.get("error") or {}).get("message")}}


wait_go(args)
run("python-anthropic", args, call)
