"""Streamed JSON array elements (Gemini streamGenerateContent without alt=sse)."""

from __future__ import annotations

from agtap.wire.jsonarray import JsonArrayStream
from tests.support.harness import fixture


def test_elements_appear_when_complete_at_any_split():
    data = fixture("gemini_stream_array.json")
    for i in range(0, len(data) + 1, 7):
        s = JsonArrayStream()
        first = s.feed(data[:i])
        rest = s.feed(data[i:]) + s.finish()
        got = first + rest
        assert [len(o["candidates"]) for o in got] == [1, 1, 1], i
        assert s.error is None
        # an element is reported as soon as its closing brace has arrived, not later
        end_first = data.index(b"\r\n,") 
        assert bool(first) == (i >= end_first), i


def test_strings_with_brackets_and_unicode_split_inside_a_character():
    data = '[{"t": "a } ] , [ \\" {"}, {"t": "é€😀"}]'.encode()
    for i in range(len(data) + 1):
        s = JsonArrayStream()
        got = s.feed(data[:i]) + s.feed(data[i:]) + s.finish()
        assert got == [{"t": 'a } ] , [ " {'}, {"t": "é€😀"}], i


def test_single_object_body_and_errors():
    s = JsonArrayStream()
    assert s.feed(b'{"error": {"code": 4') == []
    assert s.feed(b'29}}') == [] and s.finish() == [{"error": {"code": 429}}]
    bad = JsonArrayStream()
    bad.feed(b'[{"a": 1}, {"b": ')
    assert bad.finish() == [] and bad.error
    cut = JsonArrayStream()
    assert cut.feed(b'[{"a": 1}') == [{"a": 1}]
    assert cut.finish() == [] and cut.error == "unterminated json array"
