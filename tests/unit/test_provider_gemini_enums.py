"""Gemini / Vertex AI answers with enums as integers (`?$alt=json;enum-encoding=int`).

Google's generated REST clients (the aiplatform SDK, google-ai-generativelanguage's REST
transport) ask for integer enums: `"finishReason": 1` instead of `"STOP"`. agtap writes the
name, by the proto of the service that answered: google.cloud.aiplatform.v1 for Vertex AI
(Candidate.FinishReason: 1 STOP, 2 MAX_TOKENS, 6 BLOCKLIST, 9 MALFORMED_FUNCTION_CALL, 10
MODEL_ARMOR; PromptFeedback.BlockedReason: 1 SAFETY, 4 PROHIBITED_CONTENT) and
google.ai.generativelanguage.v1beta for the Gemini API (5 OTHER, 6 LANGUAGE, 7 BLOCKLIST).
The bodies below are written for these tests in the documented shape
(https://cloud.google.com/vertex-ai/generative-ai/docs/reference/rest/v1/GenerateContentResponse).
"""

from __future__ import annotations

import json

import pytest

from agtap.providers import gemini
from tests.support.harness import Run, chunk_frame, end_chunked, request, response, response_head

VERTEX_HOST = "us-central1-aiplatform.googleapis.com"
INT_ENUMS = "?%24alt=json%3Benum-encoding%3Dint"          # what the aiplatform SDK sends, URL-encoded
VERTEX = "/v1/projects/p/locations/us-central1/publishers/google/models/gemini-2.5-pro"
GEMINI_API_HOST = "generativelanguage.googleapis.com"
BODY = {"contents": [{"role": "user", "parts": [{"text": "Say this is a test"}]}]}


def element(text=None, finish=None, usage=None, call=None, **extra) -> dict:
    parts = ([{"text": text}] if text else []) + ([{"functionCall": {"name": call, "args": {}}}] if call else [])
    cand = {"content": {"role": "model", "parts": parts}, "index": 0}
    if finish is not None:
        cand["finishReason"] = finish
    out = {"candidates": [cand], "modelVersion": "gemini-2.5-pro", "responseId": "Rv8xaPyHL4e1nvgPkqTZ8QM", **extra}
    if usage:
        out["usageMetadata"] = {"promptTokenCount": usage[0], "candidatesTokenCount": usage[1],
                                "totalTokenCount": sum(usage), "trafficType": 1,
                                "promptTokensDetails": [{"modality": 1, "tokenCount": usage[0]}]}
    return out


def test_json_body_integer_finish_reason_is_its_name():
    r = Run()
    r.out(request(VERTEX + ":generateContent" + INT_ENUMS, BODY, host=VERTEX_HOST), 0)
    r.inn(response(json.dumps(element("This is a test.", 1, (5, 5)), indent=2).encode()), 400)
    c = r.one()
    assert (c.provider, c.platform, c.model) == ("google", "vertex_ai", "gemini-2.5-pro")
    assert c.stop_reason == "STOP"                   # 0.1.0 wrote null here
    assert (c.input_tokens, c.output_tokens, c.id) == (5, 5, "Rv8xaPyHL4e1nvgPkqTZ8QM")
    assert not c.streaming and not c.incomplete and c.outcome() == "ok"


def test_json_array_stream_integer_finish_reason():
    """streamGenerateContent without alt=sse: one JSON array whose elements arrive over time."""
    r = Run()
    r.out(request(VERTEX + ":streamGenerateContent" + INT_ENUMS, BODY, host=VERTEX_HOST), 0)
    r.inn(response_head(200, {"Content-Type": "application/json; charset=UTF-8", "Transfer-Encoding": "chunked"}), 50)
    els = [element("Once", usage=(9, 1)), element(" upon a", usage=(9, 3)), element(" time", 2, (9, 4))]
    r.inn(chunk_frame(b"[" + json.dumps(els[0]).encode()), 100)
    r.inn(chunk_frame(b",\r\n" + json.dumps(els[1]).encode()), 120)
    r.inn(chunk_frame(b",\r\n" + json.dumps(els[2]).encode() + b"]"), 140)
    end_chunked(r, 141)
    c = r.one()
    assert c.streaming and c.ttft_ms == 100.0 and c.latency_ms == 141.0
    assert c.stop_reason == "MAX_TOKENS" and (c.input_tokens, c.output_tokens) == (9, 4)
    assert not c.incomplete


def sse(*events: dict) -> bytes:
    # Google's servers separate SSE events with CRLF pairs
    return b"".join(b"data: " + json.dumps(e).encode() + b"\r\n\r\n" for e in events)


def test_sse_stream_integer_finish_reason_and_tool_call():
    r = Run()
    r.out(request(VERTEX + ":streamGenerateContent?alt=sse&%24alt=json%3Benum-encoding%3Dint", BODY,
                  host=VERTEX_HOST), 0)
    r.inn(response_head(200, {"Content-Type": "text/event-stream", "Transfer-Encoding": "chunked"}), 50)
    r.inn(chunk_frame(sse(element("Checking", usage=(20, 2)))), 60)
    r.inn(chunk_frame(sse(element(call="get_weather", finish=1, usage=(20, 9)))), 80)
    end_chunked(r, 90)
    c = r.one()
    assert c.streaming and c.ttft_ms == 60.0
    assert c.tools == ["get_weather"] and c.stop_reason == "STOP" and (c.input_tokens, c.output_tokens) == (20, 9)
    assert not c.incomplete


@pytest.mark.parametrize("number,vertex,gemini_api", [
    (0, "FINISH_REASON_UNSPECIFIED", "FINISH_REASON_UNSPECIFIED"),
    (2, "MAX_TOKENS", "MAX_TOKENS"),
    (5, "OTHER", "OTHER"),
    (6, "BLOCKLIST", "LANGUAGE"),               # the two protos part ways here
    (9, "MALFORMED_FUNCTION_CALL", "SPII"),
    (10, "MODEL_ARMOR", "MALFORMED_FUNCTION_CALL"),
    (15, "UNEXPECTED_TOOL_CALL", "15"),         # a number the table does not know stays a number
    (99, "99", "99"),
])
def test_each_service_by_its_own_proto(number, vertex, gemini_api):
    for path, host, want in [(VERTEX + ":streamGenerateContent?alt=sse", VERTEX_HOST, vertex),
                             ("/v1beta/models/gemini-2.5-flash:streamGenerateContent?alt=sse", GEMINI_API_HOST,
                              gemini_api)]:
        r = Run()
        r.out(request(path, BODY, host=host), 0)
        r.inn(response_head(200, {"Content-Type": "text/event-stream", "Transfer-Encoding": "chunked"}), 10)
        r.inn(chunk_frame(sse(element("x", number, (3, 1)))), 20)
        end_chunked(r, 30)
        assert r.one().stop_reason == want, (host, number)


@pytest.mark.parametrize("host,path,block,want", [
    (VERTEX_HOST, VERTEX + ":generateContent" + INT_ENUMS, 1, "blocked:SAFETY"),
    (VERTEX_HOST, VERTEX + ":generateContent" + INT_ENUMS, 4, "blocked:PROHIBITED_CONTENT"),
    (VERTEX_HOST, VERTEX + ":generateContent" + INT_ENUMS, 5, "blocked:5"),
    (GEMINI_API_HOST, "/v1beta/models/gemini-2.5-flash:generateContent", 5, "blocked:IMAGE_SAFETY"),
    (GEMINI_API_HOST, "/v1beta/models/gemini-2.5-flash:generateContent", "OTHER", "blocked:OTHER"),
])
def test_block_reason_integer(host, path, block, want):
    r = Run()
    r.out(request(path, BODY, host=host), 0)
    r.inn(response({"promptFeedback": {"blockReason": block}, "usageMetadata": {"promptTokenCount": 7},
                    "modelVersion": "gemini-2.5-flash"}), 40)
    c = r.one()
    assert c.stop_reason == want and c.input_tokens == 7 and c.outcome() == "ok"


@pytest.mark.parametrize("value,want", [(True, None), (1.0, None), (None, None), ([1], None), ({"v": 1}, None),
                                        (-1, "-1"), ("STOP", "STOP"), (1, "STOP")])
def test_enum_name(value, want):
    assert gemini.enum_name(value, gemini.FINISH_VERTEX) == want


def test_tables_start_unspecified_and_name_each_value_once():
    for names in (gemini.FINISH_VERTEX, gemini.FINISH_GEMINI_API, gemini.BLOCK_VERTEX, gemini.BLOCK_GEMINI_API):
        assert names[0].endswith("_UNSPECIFIED") and len(set(names)) == len(names)
    assert (gemini.FINISH_VERTEX[1], gemini.FINISH_GEMINI_API[1]) == ("STOP", "STOP")
