"""Newline-delimited messages (MCP stdio transport: one JSON-RPC message per line, no embedded newlines)."""

from __future__ import annotations

from agtap.wire.ndjson import LineDecoder


def test_partial_lines_and_several_per_write():
    d = LineDecoder()
    assert d.feed(b'{"a":1}\n{"b"', 1) == [(b'{"a":1}', 1, 1)]
    assert d.feed(b':2}', 2) == []
    assert d.feed(b'\r\n\n{"c":3}\n', 3) == [(b'{"b":2}', 1, 3), (b'{"c":3}', 3, 3)]


def test_every_split_point():
    data = b'{"jsonrpc":"2.0","id":1}\n{"jsonrpc":"2.0","method":"x"}\n'
    for i in range(len(data) + 1):
        d = LineDecoder()
        got = [ln for ln, _, _ in d.feed(data[:i], 0) + d.feed(data[i:], 1)]
        assert got == [b'{"jsonrpc":"2.0","id":1}', b'{"jsonrpc":"2.0","method":"x"}'], i


def test_overlong_line_is_dropped_up_to_its_newline():
    d = LineDecoder(max_line=10)
    assert d.feed(b"x" * 8, 1) == []
    assert d.feed(b"y" * 8, 2) == []          # now 16 > 10: dropped
    assert d.feed(b"zz\n{}\n", 3) == [(b"{}", 3, 3)]
    assert d.overflows == 1
    assert d.feed(b"a" * 30 + b"\nok\n", 4) == [(b"ok", 4, 4)]
    assert d.overflows == 2
