"""The single definitions in agtap/call.py: a call's outcome (is it an error?) and the call id.

Each sink and view used to answer "is this call an error?" its own way (the
journal counted any stop reason starting "error", OTel only "error:", the TUI
ignored HTTP status and error_type). Now all four ask Call.outcome() or
event_outcome(); these tests pin the cases and check each consumer agrees.
"""

from __future__ import annotations

import json
import uuid

import pytest

from agtap import metricnames as mn
from agtap.call import (
    EVENT_ID_RE, OUTCOME_ERROR, OUTCOME_INCOMPLETE, OUTCOME_OK, OUTCOMES, CallBodies, event_outcome, is_event_id,
    new_event_id,
)
from agtap.capture.chunk import Transport
from agtap.providers.base import set_error
from agtap.sinks.journal import PRIORITY_INFO, PRIORITY_WARNING, journal_fields
from agtap.sinks.otel import error_type, span_attributes
from agtap.sinks.prometheus import PrometheusSink
from agtap.tui import fmt
from tests.support.harness import Run
from tests.support.obs.calls import llm_call, mcp_call


def _provider_error(etype):
    c = llm_call(stop_reason=None, http_status=200)
    set_error(c, etype)               # what every provider does with an error body
    return c


def _mcp(**kw):
    c = mcp_call()
    for k, v in kw.items():
        setattr(c, k, v)
    return c


# (case, call, expected outcome) — worked out by hand from the rule in agtap/call.py
CASES = [
    ("plain answer", llm_call(), OUTCOME_OK),
    ("HTTP 200, provider stop reason", llm_call(stop_reason="max_tokens"), OUTCOME_OK),
    ("HTTP 399 is not an error", llm_call(http_status=399), OUTCOME_OK),
    ("HTTP 400", llm_call(http_status=400, stop_reason=None), OUTCOME_ERROR),
    ("HTTP 529 after a stop reason", llm_call(http_status=529, stop_reason="end_turn"), OUTCOME_ERROR),
    ("error_type alone", llm_call(error_type="overloaded_error", stop_reason=None), OUTCOME_ERROR),
    ("stop reason error:", llm_call(stop_reason="error:rate_limit_error", http_status=None), OUTCOME_ERROR),
    ("stop reason 'error' without the colon is the provider's word", llm_call(stop_reason="error_budget"),
     OUTCOME_OK),
    ("provider error body (set_error)", _provider_error("invalid_request_error"), OUTCOME_ERROR),
    ("set_error with no type", _provider_error(None), OUTCOME_ERROR),
    ("Gemini blocked prompt is an answer", llm_call("google", "gemini-2.5-flash", stop_reason="blocked:SAFETY"),
     OUTCOME_OK),
    ("incomplete", _mcp(incomplete=True, incomplete_reason="process_exit"), OUTCOME_INCOMPLETE),
    ("incomplete and HTTP 500: the error wins", _mcp(incomplete=True, incomplete_reason="cut", http_status=500),
     OUTCOME_ERROR),
    ("MCP JSON-RPC error", _mcp(stop_reason="error:-32601", error_type="-32601"), OUTCOME_ERROR),
    ("MCP tool result isError", _mcp(stop_reason="error:tool_error", error_type="tool_error"), OUTCOME_ERROR),
    ("MCP notification, HTTP 202", _mcp(http_status=202, jsonrpc_id=None), OUTCOME_OK),
]
IDS = [c[0] for c in CASES]


@pytest.mark.parametrize("case,call,want", CASES, ids=IDS)
def test_outcome(case, call, want):
    assert call.outcome() == want
    assert call.is_error() == (want == OUTCOME_ERROR)
    assert want in OUTCOMES


@pytest.mark.parametrize("case,call,want", CASES, ids=IDS)
def test_event_outcome_reads_the_event_the_same_way(case, call, want):
    """The TUI sees the event as JSON from the bus, not a Call."""
    assert event_outcome(json.loads(json.dumps(call.to_dict()))) == want


@pytest.mark.parametrize("ev,want", [
    ({}, OUTCOME_OK),
    ({"http_status": "500"}, OUTCOME_OK),         # a string is not a status
    ({"http_status": True}, OUTCOME_OK),          # nor is a bool (an int in Python)
    ({"stop_reason": 7, "incomplete": 1}, OUTCOME_INCOMPLETE),
    ({"error_type": "", "http_status": None, "incomplete": False}, OUTCOME_OK),
])
def test_event_outcome_of_odd_events(ev, want):
    assert event_outcome(ev) == want


def test_mcp_errors_from_the_wire_are_errors():
    """The real path: a JSON-RPC error and an isError tool result, parsed by the MCP provider."""
    r = Run(conn="ipc:1", transport=Transport.PIPE)
    line = lambda o: json.dumps(o).encode() + b"\n"  # noqa: E731
    r.out(line({"jsonrpc": "2.0", "id": 1, "method": "resources/read", "params": {}}), 0)
    r.inn(line({"jsonrpc": "2.0", "id": 1, "error": {"code": -32601, "message": "no"}}), 1)
    r.out(line({"jsonrpc": "2.0", "id": 2, "method": "tools/call", "params": {"name": "t"}}), 2)
    r.inn(line({"jsonrpc": "2.0", "id": 2, "result": {"content": [], "isError": True}}), 3)
    r.out(line({"jsonrpc": "2.0", "id": 3, "method": "tools/list"}), 4)
    r.inn(line({"jsonrpc": "2.0", "id": 3, "result": {"tools": []}}), 5)
    assert [c.outcome() for c in r.calls] == [OUTCOME_ERROR, OUTCOME_ERROR, OUTCOME_OK]


@pytest.mark.parametrize("case,call,want", CASES, ids=IDS)
def test_every_consumer_agrees(case, call, want):
    # journal: a warning unless ok
    prio = int(journal_fields(call)["PRIORITY"])
    assert prio == (PRIORITY_INFO if want == OUTCOME_OK else PRIORITY_WARNING)
    # OpenTelemetry: error.type (and so the span's error status) exactly for errors
    assert (error_type(call) is not None) == (want == OUTCOME_ERROR)
    assert (span_attributes(call).get("error.type") is not None) == (want == OUTCOME_ERROR)
    # TUI: the error colour unless ok
    assert fmt.row_attr(call.to_dict()) == ("row" if want == OUTCOME_OK else "error")
    # Prometheus: the status label is the outcome
    sink = PrometheusSink(None)
    sink.write(call)
    labels = {s.labels["status"] for m in sink.registry.collect() if m.name == mn.PROM_REQUESTS
              for s in m.samples if s.name.endswith("_total")}
    assert labels == {want}


def test_prometheus_status_values_are_the_outcomes():
    assert mn.STATUS_VALUES == OUTCOMES


# --- the event id ---

def test_new_ids_are_valid_and_distinct():
    ids = {new_event_id() for _ in range(1000)}
    assert len(ids) == 1000 and all(is_event_id(i) for i in ids)
    assert all(len(i) == 32 for i in ids)


@pytest.mark.parametrize("value,ok", [
    (uuid.uuid4().hex, True),
    ("0" * 32, True),
    ("0" * 31, False), ("0" * 33, False), ("a" * 16, False), ("a" * 64, False),
    ("ABCDEF0123456789" * 2, False),                 # upper case is not agtap's
    ("../../etc/passwd", False), ("0" * 31 + "/", False), ("0" * 32 + "\n", False),
    ("", False), (None, False), (b"0" * 32, False), (32, False),
])
def test_is_event_id(value, ok):
    assert is_event_id(value) is ok


def test_the_pipeline_makes_valid_ids():
    from agtap.providers.base import Origin, new_call
    c = new_call(Origin(pid=1, proc="p", transport="tls"), "anthropic", "llm_call", 1, 1)
    assert is_event_id(c.event_id) and EVENT_ID_RE.fullmatch(c.event_id)
    assert c.id is None          # the API's response id, set from the response


def test_sinks_and_service_use_the_one_definition(tmp_path):
    """The bodies sink names files only with valid ids, and GetCallBodies refuses what is_event_id refuses."""
    from agtap.service.errors import InvalidArgument
    from agtap.service.storage import read_body
    from agtap.sinks.bodies import BodiesSink

    sink = BodiesSink(str(tmp_path / "b"), 10, 24, group=None)
    for cid in ("a" * 16, "a" * 64, new_event_id()):
        c = llm_call()
        c.event_id = cid
        c.bodies = CallBodies(request_body=b"{}")
        sink.write(c)
        assert (c.body_path is not None) == is_event_id(cid)
        if is_event_id(cid):
            assert json.loads(read_body(str(tmp_path / "b"), cid))
        else:
            with pytest.raises(InvalidArgument, match="32 lowercase hex digits"):
                read_body(str(tmp_path / "b"), cid)
