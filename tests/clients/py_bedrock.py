"""AWS Bedrock Runtime's official Python clients against the fake API, one call per name in --calls.

boto3 `bedrock-runtime` (endpoint_url = the fake API, fake temporary credentials, so it signs
with SigV4 and sends X-Amz-Security-Token) and anthropic's AnthropicBedrock (the same signing,
through botocore). The CA comes from $AWS_CA_BUNDLE (boto3) and $SSL_CERT_FILE (httpx).

Calls (in the order given; each one a request, errors recorded, not raised):
  converse, converse-tools, converse-stream, converse-stream-tools, converse-error,
  invoke-claude, invoke-claude-stream, invoke-titan-embed, invoke-cohere-embed   (boto3)
  anthropic, anthropic-stream, anthropic-tools, anthropic-error                  (AnthropicBedrock)
Prints {"client": "python-bedrock", "pid", "results": [{"call", ...what the SDK parsed}]}.
"""

from __future__ import annotations

import json
import os

from pyclient_common import parse_calls_args, run_calls

CLAUDE = "anthropic.claude-3-5-haiku-20241022-v1:0"
WEATHER = {"name": "get_weather", "description": "Weather for a city",
           "schema": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}

args = parse_calls_args()
calls = args.calls.split(",")
creds = dict(aws_access_key_id="ASIAAGTAPTESTFAKE0001", aws_secret_access_key="agtap/test/secret/key",
             aws_session_token=os.environ.get("AGTAP_TEST_API_KEY", "agtap-test-session-token"))

import boto3  # noqa: E402  (after argument parsing: --help stays fast)
from botocore.config import Config  # noqa: E402
from botocore.exceptions import ClientError, EventStreamError  # noqa: E402

bedrock = boto3.client("bedrock-runtime", region_name="us-east-1", endpoint_url=args.base_url,
                       config=Config(retries={"total_max_attempts": 1, "mode": "standard"}), **creds)
claude = None
if any(c.startswith("anthropic") for c in calls):
    import anthropic
    claude = anthropic.AnthropicBedrock(aws_region="us-east-1", base_url=args.base_url, max_retries=0,
                                        aws_access_key=creds["aws_access_key_id"],
                                        aws_secret_key=creds["aws_secret_access_key"],
                                        aws_session_token=creds["aws_session_token"])
MESSAGES = [{"role": "user", "content": [{"text": "Weather in Paris?"}]}]
TOOLS = {"tools": [{"toolSpec": {"name": WEATHER["name"], "description": WEATHER["description"],
                                 "inputSchema": {"json": WEATHER["schema"]}}}]}


def converse(name: str) -> dict:
    kw = {"modelId": CLAUDE, "messages": MESSAGES}
    if name.endswith("tools"):
        kw["toolConfig"] = TOOLS
    if "stream" not in name:
        r = bedrock.converse(**kw)
        return {"stop_reason": r["stopReason"], "usage": r["usage"],
                "tools": [b["toolUse"]["name"] for b in r["output"]["message"]["content"] if "toolUse" in b]}
    out = {"tools": [], "text": ""}
    for ev in bedrock.converse_stream(**kw)["stream"]:
        if "contentBlockStart" in ev and "toolUse" in ev["contentBlockStart"]["start"]:
            out["tools"].append(ev["contentBlockStart"]["start"]["toolUse"]["name"])
        elif "contentBlockDelta" in ev:
            out["text"] += ev["contentBlockDelta"]["delta"].get("text", "")
        elif "messageStop" in ev:
            out["stop_reason"] = ev["messageStop"]["stopReason"]
        elif "metadata" in ev:
            out["usage"] = ev["metadata"]["usage"]
    return out


def invoke(name: str) -> dict:
    if name.startswith("invoke-claude"):
        body = {"anthropic_version": "bedrock-2023-05-31", "max_tokens": 256,
                "messages": [{"role": "user", "content": "Say hello."}]}
        if name.endswith("stream"):
            r = bedrock.invoke_model_with_response_stream(modelId=CLAUDE, body=json.dumps(body))
            types = [json.loads(e["chunk"]["bytes"])["type"] for e in r["body"] if "chunk" in e]
            return {"types": types}
        r = bedrock.invoke_model(modelId=CLAUDE, body=json.dumps(body))
        return json.loads(r["body"].read())
    if name == "invoke-titan-embed":
        r = bedrock.invoke_model(modelId="amazon.titan-embed-text-v2:0", body=json.dumps({"inputText": "hello"}))
    else:
        r = bedrock.invoke_model(modelId="cohere.embed-english-v3",
                                 body=json.dumps({"texts": ["hello", "world"], "input_type": "search_document"}))
    return {"body": json.loads(r["body"].read()),
            "input_tokens": r["ResponseMetadata"]["HTTPHeaders"].get("x-amzn-bedrock-input-token-count")}


def messages(name: str) -> dict:
    kw = {"model": CLAUDE, "max_tokens": 256, "messages": [{"role": "user", "content": "Weather in Paris?"}]}
    if name.endswith("tools"):
        kw["tools"] = [{"name": WEATHER["name"], "description": WEATHER["description"],
                        "input_schema": WEATHER["schema"]}]
    if name.endswith("stream"):
        with claude.messages.stream(**kw) as stream:
            text = "".join(stream.text_stream)
            msg = stream.get_final_message()
        return {"id": msg.id, "text": text, "stop_reason": msg.stop_reason, "output_tokens": msg.usage.output_tokens}
    msg = claude.messages.create(**kw)
    return {"id": msg.id, "stop_reason": msg.stop_reason, "output_tokens": msg.usage.output_tokens,
            "tools": [b.name for b in msg.content if b.type == "tool_use"]}


def one(name: str) -> dict:
    try:
        if name.startswith("converse"):
            return {"call": name, **converse(name)}
        if name.startswith("invoke"):
            return {"call": name, **invoke(name)}
        return {"call": name, **messages(name)}
    except (ClientError, EventStreamError) as e:   # an HTTP error, or an exception inside a stream
        return {"call": name, "error": e.response.get("Error", {})}
    except Exception as e:
        if claude is None or isinstance(e, anthropic.APIConnectionError) or not isinstance(e, anthropic.APIError):
            raise   # the harness is broken (CA, port): fail the script
        return {"call": name, "error": {"status": getattr(e, "status_code", None), "type": type(e).__name__}}


run_calls("python-bedrock", args, one)
