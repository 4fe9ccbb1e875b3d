"""AWS Bedrock Runtime through the whole pipeline: Converse(+Stream), InvokeModel(+stream), errors.

Expected values are read off the fixtures in tests/fixtures/providers (bedrock_*), whose
shapes follow the Bedrock API reference (see the provider modules' docstrings).
"""

from __future__ import annotations

import json

from tests.support import eventstream
from tests.support.harness import (Run, chunk_frame, end_chunked, fixture, request, response,
                                   response_head)

HOST = "bedrock-runtime.us-east-1.amazonaws.com"
HAIKU = "anthropic.claude-3-5-haiku-20241022-v1:0"
HAIKU_PATH = "anthropic.claude-3-5-haiku-20241022-v1%3A0"    # as botocore sends it
SIGV4 = {"Authorization": "AWS4-HMAC-SHA256 Credential=ASIAFAKE/20261130/us-east-1/bedrock/aws4_request, "
                          "SignedHeaders=host;x-amz-date, Signature=0123abcd",
         "X-Amz-Security-Token": "FwoGZXIvYXdzEFAKESESSIONTOKEN", "X-Amz-Date": "20261130T120000Z"}
CONVERSE = {"messages": [{"role": "user", "content": [{"text": "Weather in Paris?"}]}],
            "toolConfig": {"tools": [{"toolSpec": {"name": "get_weather", "inputSchema": {"json": {}}}}]}}
ANTHROPIC_BODY = {"anthropic_version": "bedrock-2023-05-31", "max_tokens": 256,
                  "messages": [{"role": "user", "content": "hi"}]}


def stream_events(run: Run, messages: list[bytes], t0: float, step: float = 10.0) -> None:
    run.inn(response_head(200, {"Content-Type": "application/vnd.amazon.eventstream",
                                "Transfer-Encoding": "chunked"}), t0)
    for i, m in enumerate(messages):
        run.inn(chunk_frame(m), t0 + i * step)


def test_converse_with_a_tool_call():
    r = Run()
    r.out(request(f"/model/{HAIKU_PATH}/converse", CONVERSE, host=HOST, headers=SIGV4), 0)
    r.inn(response(fixture("bedrock_converse_tool.json"), headers={"x-amzn-RequestId": "7c1e-req"}), 80)
    c = r.one()
    assert (c.provider, c.platform, c.model, c.operation, c.streaming) == ("aws_bedrock", "aws_bedrock", HAIKU,
                                                                           "chat", False)
    assert (c.input_tokens, c.output_tokens, c.cache_read_input_tokens, c.cache_creation_input_tokens) == \
        (375, 64, 128, 0)
    assert c.stop_reason == "tool_use" and c.tools == ["top_song"] and c.latency_ms == 80.0
    assert c.ttft_ms is None and c.server_address == HOST


def test_converse_stream_with_a_tool_call():
    r = Run()
    r.out(request(f"/model/{HAIKU_PATH}/converse-stream", CONVERSE, host=HOST, headers=SIGV4), 0)
    events = json.loads(fixture("bedrock_converse_stream_tool.json"))
    stream_events(r, [eventstream.event(name, payload) for name, payload in events], 100)
    end_chunked(r, 200)
    c = r.one()
    assert c.streaming and c.stop_reason == "tool_use" and c.tools == ["get_weather"]
    assert (c.input_tokens, c.output_tokens, c.cache_read_input_tokens, c.cache_creation_input_tokens) == \
        (412, 57, 0, 256)
    assert c.ttft_ms == 110.0        # messageStart at 100, the first contentBlockDelta at 110
    assert c.latency_ms == 200.0


def test_converse_stream_ends_at_metadata_even_if_the_client_leaves_early():
    r = Run()
    r.out(request(f"/model/{HAIKU_PATH}/converse-stream", CONVERSE, host=HOST), 0)
    events = json.loads(fixture("bedrock_converse_stream_tool.json"))
    stream_events(r, [eventstream.event(n, p) for n, p in events], 100)
    r.close(300)                     # no chunked terminator: boto3 stopped reading after metadata
    assert not r.one().incomplete


def test_an_exception_inside_a_stream_is_the_call_s_error():
    r = Run()
    r.out(request(f"/model/{HAIKU_PATH}/converse-stream", CONVERSE, host=HOST), 0)
    stream_events(r, [eventstream.event("messageStart", {"role": "assistant"}),
                      eventstream.event("contentBlockDelta", {"contentBlockIndex": 0, "delta": {"text": "Hi"}}),
                      eventstream.exception("throttlingException", "Too many tokens, please wait.")], 50)
    end_chunked(r, 90)
    c = r.one(clean=False)
    assert c.stop_reason == "error:throttlingException" and c.error_type == "throttlingException"
    assert c.is_error() and c.http_status == 200 and c.ttft_ms == 60.0


def test_an_error_answer_takes_its_type_from_x_amzn_errortype():
    r = Run()
    r.out(request(f"/model/{HAIKU_PATH}/converse", CONVERSE, host=HOST), 0)
    r.inn(response({"message": "The provided model identifier is invalid."}, status=400,
                   headers={"x-amzn-ErrorType": "ValidationException:http://internal.amazon.com/coral/com.amazon.bedrock/"}),
          30)
    c = r.one()
    assert c.stop_reason == "error:ValidationException" and c.http_status == 400
    # no header: the HTTP status says it
    r2 = Run()
    r2.out(request(f"/model/{HAIKU_PATH}/invoke", ANTHROPIC_BODY, host=HOST), 0)
    r2.inn(response({"message": "Internal error"}, status=500), 30)
    assert r2.one().stop_reason == "error:http_500"


def test_a_garbled_event_stream_is_a_parse_error_and_keeps_what_came_before():
    r = Run()
    r.out(request(f"/model/{HAIKU_PATH}/converse-stream", CONVERSE, host=HOST), 0)
    good = eventstream.event("contentBlockDelta", {"contentBlockIndex": 0, "delta": {"text": "Hi"}})
    stream_events(r, [eventstream.event("messageStart", {"role": "assistant"}), good, good[:-1] + b"\0", good], 50)
    end_chunked(r, 100)
    c = r.one(clean=False)
    assert c.incomplete and c.incomplete_reason == "parse_error: bad event stream message: ChecksumMismatch"
    assert c.ttft_ms == 60.0 and r.p.stats.parse_errors == 1


def test_invoke_model_with_an_anthropic_body():
    r = Run()
    r.out(request(f"/model/{HAIKU_PATH}/invoke", ANTHROPIC_BODY, host=HOST, headers=SIGV4), 0)
    r.inn(response(fixture("bedrock_invoke_anthropic_tool.json"),
                   headers={"X-Amzn-Bedrock-Input-Token-Count": "340", "X-Amzn-Bedrock-Output-Token-Count": "48"}), 40)
    c = r.one()
    assert (c.provider, c.platform, c.model, c.response_model, c.operation) == \
        ("anthropic", "aws_bedrock", HAIKU, "claude-3-5-haiku-20241022", "chat")
    assert (c.input_tokens, c.output_tokens) == (340, 48) and c.stop_reason == "tool_use"
    assert c.tools == ["get_weather"] and c.id == "msg_bdrk_01AbCdEf"
    # claude-3-5-haiku: $0.80 / $4.00 per million (agtap/data/prices.json)
    assert c.cost_usd == round((340 * 0.8 + 48 * 4.0) / 1e6, 8)


def test_invoke_model_with_response_stream_anthropic():
    r = Run()
    r.out(request(f"/model/{HAIKU_PATH}/invoke-with-response-stream", ANTHROPIC_BODY, host=HOST), 0)
    inner = json.loads(fixture("bedrock_invoke_anthropic_stream.json"))
    stream_events(r, [eventstream.chunk(e) for e in inner], 100)
    r.close(300)      # message_stop ended the stream: complete without the chunked terminator
    c = r.one()
    assert c.streaming and c.provider == "anthropic" and c.stop_reason == "end_turn"
    assert (c.input_tokens, c.output_tokens) == (21, 9) and c.id == "msg_bdrk_01Hx5yZ3"
    assert c.ttft_ms == 120.0        # message_start 100, content_block_start 110, first delta 120
    assert c.latency_ms == 160.0


def test_invoke_model_embeddings_titan_and_cohere():
    r = Run()
    r.out(request("/model/amazon.titan-embed-text-v2%3A0/invoke", {"inputText": "hello world"}, host=HOST), 0)
    r.inn(response(fixture("bedrock_titan_embed.json"), headers={"X-Amzn-Bedrock-Input-Token-Count": "11"}), 20)
    c = r.one()
    assert (c.provider, c.model, c.operation, c.input_tokens, c.output_tokens) == \
        ("aws_bedrock", "amazon.titan-embed-text-v2:0", "embeddings", 11, None)
    assert c.cost_usd == round(11 * 0.02 / 1e6, 8)      # Titan Text Embeddings V2: $0.02 per million
    r2 = Run()
    r2.out(request("/model/cohere.embed-english-v3/invoke",
                   {"texts": ["hello world", "good bye"], "input_type": "search_document"}, host=HOST), 0)
    r2.inn(response(fixture("bedrock_cohere_embed.json"),
                    headers={"X-Amzn-Bedrock-Input-Token-Count": "6", "X-Amzn-Bedrock-Output-Token-Count": "0"}), 20)
    c2 = r2.one()
    assert (c2.operation, c2.input_tokens, c2.output_tokens) == ("embeddings", 6, 0)
    assert c2.id == "4e5d2a1c-7b3f-4c1e-9a2b-0f1e2d3c4b5a"
    assert c2.cost_usd == round(6 * 0.10 / 1e6, 8)      # Cohere Embed 3: $0.10 per million


