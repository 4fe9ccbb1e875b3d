"""Hostile bytes from the wire: attacker-chosen names, bombs, endless framing, deep JSON, bad UTF-8.

A traced process, or the API server it talks to, controls every byte agtap parses.
None of it may name a file, break a log line or a journal entry, reach a terminal
as a control sequence, cost unbounded memory, or raise out of Pipeline.feed.
Everything here goes through the real Pipeline and the real sinks.

Memory is measured with tracemalloc around the feeding (Python allocations: bytes
objects, lists, dicts — what a parser that buffers too much would grow).
"""

from __future__ import annotations

import json
import os
import re
import time
import tracemalloc
import zlib

import pytest

from agtap.capture.chunk import Direction, Transport
from agtap.config import Config
from agtap.pipeline import Limits
from agtap.service.controller import Controller
from agtap.sinks.bodies import BodiesSink
from agtap.sinks.journal import journal_fields, journal_message
from agtap.sinks.jsonl import JsonlSink, event_line
from agtap.textsafe import printable
from tests.support.harness import Run, chunk, chunk_frame, fixture, request, response, response_head

MiB = 1 << 20
SSE = {"Content-Type": "text/event-stream", "Transfer-Encoding": "chunked"}

# Names a hostile process or server picks. Path traversal, NUL, CSI "clear screen", an OSC
# that retitles the terminal, a bidi override, the 8-bit CSI, and a line break.
EVIL_MODEL = "../../etc/passwd\x00\x1b[2J\x1b]0;owned\x07\u202eevil\x9b31m\r\nX"
EVIL_ID = "../../../../tmp/agtap-hostile-id"
EVIL_TOOL = "/etc/shadow\x1b[31m\x00;rm -rf ~\n"
CONTROL_BYTES = re.compile(rb"[\x00-\x08\x0a-\x1f\x7f]|\xc2[\x80-\x9f]|\xe2\x80[\xa8\xa9]")   # C0, DEL, C1, U+2028/9
BIDI_BYTES = re.compile(rb"\xe2\x80[\xaa-\xae]|\xe2\x81[\xa6-\xa9]")       # U+202A-E, U+2066-9 (UTF-8)
CONTROL_CHARS = re.compile("[\x00-\x08\x0a-\x1f\x7f-\x9f\u2028\u2029\u202a-\u202e\u2066-\u2069]")


def _evil_exchange(r: Run, t0: float = 0, conn: str | None = None) -> None:
    body = {"model": EVIL_MODEL, "max_tokens": 10, "messages": [{"role": "user", "content": "hi"}]}
    r.out(request("/v1/messages", body), t0, conn=conn)
    resp = {"id": EVIL_ID, "type": "message", "role": "assistant", "model": EVIL_MODEL,
            "content": [{"type": "tool_use", "id": "toolu_../../x", "name": EVIL_TOOL, "input": {}}],
            "stop_reason": "tool_use\x1b[2J", "usage": {"input_tokens": 7, "output_tokens": 3}}
    r.inn(response(resp), t0 + 50, conn=conn)


def test_attacker_names_are_carried_exactly_but_never_name_a_file(tmp_path):
    r = Run()
    _evil_exchange(r)
    call = r.one()
    assert call.model == EVIL_MODEL and call.id == EVIL_ID and call.tools == [EVIL_TOOL]
    assert call.response_model == EVIL_MODEL and call.input_tokens == 7

    bodies_dir = tmp_path / "bodies"
    bodies = BodiesSink(str(bodies_dir), 100, 24, group=None)
    bodies.write(call)
    written = sorted(p for p in tmp_path.rglob("*") if p.is_file())
    assert len(written) == 1 and written[0] == __import__("pathlib").Path(call.body_path)
    # <bodies>/<YYYY-MM-DD>/<agtap's own hex id>.json: nothing from the wire in the name
    assert written[0].parent.parent == bodies_dir
    assert re.fullmatch(r"\d{4}-\d{2}-\d{2}", written[0].parent.name)
    assert re.fullmatch(r"[0-9a-f]{32}\.json", written[0].name) and written[0].stem == call.event_id
    assert not os.path.lexists("/tmp/agtap-hostile-id")
    doc = written[0].read_bytes()
    assert doc.isascii() and CONTROL_BYTES.search(doc.rstrip(b"\n")) is None   # escaped, not raw
    assert json.loads(doc)["request"]["body"]["model"] == EVIL_MODEL          # ... and exact


def test_event_log_line_carries_them_escaped_on_one_line(tmp_path):
    r = Run()
    _evil_exchange(r)
    call = r.one()
    line = event_line(call)
    assert line.endswith(b"\n") and line.count(b"\n") == 1 and line.count(b"\r") == 0
    assert CONTROL_BYTES.search(line[:-1]) is None, line
    ev = json.loads(line)
    assert ev["model"] == EVIL_MODEL and ev["tools"] == [EVIL_TOOL] and ev["id"] == ev["response_id"] == EVIL_ID
    sink = JsonlSink(str(tmp_path / "events.jsonl"), 10, 2, group=None)
    sink.write(call)
    sink.write(call)
    sink.close()
    lines = (tmp_path / "events.jsonl").read_bytes().split(b"\n")
    assert lines[-1] == b"" and len(lines) == 3 and all(json.loads(x)["model"] == EVIL_MODEL for x in lines[:2])


def test_event_log_line_escapes_bidi_overrides():
    """Bidi overrides and isolates would reorder what `tail -f` shows (found here, fixed in jsonl.py)."""
    r = Run()
    _evil_exchange(r)
    line = event_line(r.one())
    assert BIDI_BYTES.search(line) is None, line


def test_journal_fields_are_single_clean_lines():
    r = Run()
    _evil_exchange(r)
    call = r.one()
    fields = journal_fields(call)
    for k, v in fields.items():
        assert isinstance(v, str) and CONTROL_CHARS.search(v) is None, (k, v)
        assert re.fullmatch(r"[A-Z0-9_]+", k) and not k.startswith("_")
    # the escape sequences are removed whole, the visible text stays
    assert fields["AGTAP_MODEL"].startswith("../../etc/passwd") and "[2J" not in fields["AGTAP_MODEL"]
    assert "owned" not in fields["AGTAP_MODEL"]   # the OSC payload went with its sequence
    assert "rm -rf" in fields["AGTAP_TOOLS"] and "\x00" not in fields["AGTAP_TOOLS"]
    assert CONTROL_CHARS.search(journal_message(call)) is None


def _null_tracer(config, on_item, log):
    raise AssertionError("not started in this test")


def test_dbus_replies_and_terminal_views_are_safe(tmp_path):
    """GetRecentCalls/GetCallBodies return the Controller's strings: valid UTF-8 JSON, no NUL or raw
    controls (D-Bus strings may not hold NUL). agtapctl and the TUI print only textsafe'd text."""
    cfg = Config(bodies_dir=str(tmp_path / "bodies"), event_log=str(tmp_path / "events.jsonl"))
    bodies = BodiesSink(cfg.bodies_dir, 100, 24, group=None)
    ctl = Controller(cfg, _null_tracer, sinks=[bodies])
    r = Run()
    ctl.pipeline = r.p
    r.p.emit = ctl._on_call
    _evil_exchange(r)
    (line,) = ctl.recent_calls(5)
    assert "\x00" not in line and CONTROL_CHARS.search(line) is None
    line.encode("utf-8")
    ev = json.loads(line)
    assert ev["model"] == EVIL_MODEL
    body = ctl.call_bodies(ev["event_id"])
    assert "\x00" not in body and CONTROL_CHARS.search(body.rstrip("\n")) is None
    assert json.loads(body)["response"]["body"]["content"][0]["name"] == EVIL_TOOL
    with pytest.raises(Exception):
        ctl.call_bodies(EVIL_ID)          # a path from the caller is never opened

    from agtap.ctl import call_line
    from agtap.tui.fmt import row_text
    from agtap.tui.model import clean
    from agtap.tui.views import field_lines
    shown = [call_line(ev), row_text(ev, 200), *field_lines(clean(ev)), printable(EVIL_MODEL)]
    for s in shown:
        assert "\x1b" not in s and "\x9b" not in s and "\x00" not in s and "\x07" not in s, repr(s)
        assert "\u202e" not in s and "\r" not in s, repr(s)
    assert "../../etc/passwd" in call_line(ev)


def test_hostile_gemini_model_in_the_url_and_mcp_tool_name(tmp_path):
    r = Run()
    path = "/v1beta/models/..%2F..%2Fetc%2Fpasswd%00%1b[2J:generateContent"
    r.out(request(path, {"contents": []}, host="generativelanguage.googleapis.com"), 0)
    r.inn(response(fixture("gemini_response.json")), 10)
    r2 = Run(conn="ipc:9", transport=Transport.PIPE)
    r2.out(json.dumps({"jsonrpc": "2.0", "id": "../x", "method": "tools/call",
                       "params": {"name": EVIL_TOOL, "arguments": {}}}).encode() + b"\n", 0)
    r2.inn(json.dumps({"jsonrpc": "2.0", "id": "../x", "result": {"content": []}}).encode() + b"\n", 5)
    r2.close(6)
    calls = r.calls + [c for c in r2.calls if c.model == "tools/call"]
    assert len(calls) == 2 and calls[1].tools == [EVIL_TOOL]
    sink = BodiesSink(str(tmp_path), 100, 24, group=None)
    for c in calls:
        sink.write(c)
        assert re.fullmatch(r"[0-9a-f]{32}\.json", os.path.basename(c.body_path))
        assert os.path.dirname(os.path.dirname(c.body_path)) == str(tmp_path)
        line = event_line(c)
        assert CONTROL_BYTES.search(line[:-1]) is None


# --- decompression bombs -----------------------------------------------------------------

def _bomb(encoding: str, mib: int) -> bytes:
    """`mib` MiB of zeros, compressed a MiB at a time (never all in memory here)."""
    zero = bytes(MiB)
    if encoding == "gzip":
        c = zlib.compressobj(9, zlib.DEFLATED, 31)
        return b"".join(c.compress(zero) for _ in range(mib)) + c.flush()
    if encoding == "br":
        import brotli
        c = brotli.Compressor(quality=5)
        return b"".join(c.process(zero) for _ in range(mib)) + c.finish()
    import zstandard
    c = zstandard.ZstdCompressor(level=3).compressobj()
    return b"".join(c.compress(zero) for _ in range(mib)) + c.flush()


def _feed_bomb(r: Run, encoding: str, bomb: bytes, streaming: bool) -> int:
    """Feed a response whose body is `bomb`; returns the tracemalloc peak in bytes."""
    tracemalloc.start()
    try:
        r.out(request("/v1/messages", {"model": "claude-bomb", "stream": streaming}), 0)
        headers = dict(SSE) if streaming else {"Content-Type": "application/json", "Content-Length": str(len(bomb))}
        headers["Content-Encoding"] = encoding
        r.inn(response_head(200, headers), 5)
        if streaming:
            bomb = b"".join(chunk_frame(bomb[i:i + 16384]) for i in range(0, len(bomb), 16384)) + b"0\r\n\r\n"
        for i in range(0, len(bomb), 16384):
            r.inn(bomb[i:i + 16384], 6)
        r.close(10)
        return tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


def test_gzip_bomb_past_64_mib_stops_at_the_default_cap():
    """80 MiB of zeros in 80 KB of gzip, default limits (64 MiB decoded per body)."""
    bomb = _bomb("gzip", 80)
    r = Run()
    peak = _feed_bomb(r, "gzip", bomb, streaming=False)
    call = r.one(clean=False)
    assert call.incomplete and call.incomplete_reason == "decompression_cap"
    assert r.p.stats.decompression_capped == 1 and r.p.stats.internal_errors == 0
    assert len(call.bodies.response_body) <= Limits().max_body
    # cap (64 MiB, one decoder output) + what is kept for the bodies sink (16 MiB) + slack
    assert peak < Limits().decompress_cap + Limits().max_body + 16 * MiB, peak / MiB


@pytest.mark.parametrize("encoding,streaming", [
    ("gzip", False), ("gzip", True), ("zstd", False), ("zstd", True), ("br", False), ("br", True)])
def test_bomb_memory_follows_the_cap_not_the_bomb(encoding, streaming):
    """A 256 MiB bomb against an 8 MiB cap: memory must stay a small multiple of the cap.

    (brotli 1.0.9 has no output limit: a 405-byte br body once decoded to the whole bomb in one
    call, 264 MiB; found here, fixed in encoding.py.)"""
    cap, keep = 8 * MiB, 1 * MiB
    bomb = _bomb(encoding, 256)
    r = Run(limits=Limits(decompress_cap=cap, max_body=keep))
    t = time.monotonic()
    peak = _feed_bomb(r, encoding, bomb, streaming)
    spent = time.monotonic() - t
    call = r.one(clean=False)
    assert call.incomplete_reason == "decompression_cap" and r.p.stats.decompression_capped == 1
    assert r.p.stats.internal_errors == 0 and not r.p.conns
    assert peak < 4 * cap + 4 * MiB, f"peak {peak / MiB:.0f} MiB for an {cap / MiB:.0f} MiB cap"
    assert spent < 60      # bounded work: decoding stops at the cap (generous: shared CI)


def test_gzip_bomb_in_a_request_body_is_capped():
    cap = 4 * MiB
    bomb = _bomb("gzip", 64)
    r = Run(limits=Limits(decompress_cap=cap))
    head = (b"POST /v1/messages HTTP/1.1\r\nHost: api.anthropic.com\r\nContent-Type: application/json\r\n"
            b"Content-Encoding: gzip\r\nContent-Length: %d\r\n\r\n" % len(bomb))
    tracemalloc.start()
    r.out(head + bomb, 0)
    r.inn(response(fixture("anthropic_message_tool.json")), 10)
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    call = r.one(clean=False)
    assert call.incomplete_reason == "decompression_cap"
    assert call.output_tokens is not None          # the answer is still read
    assert len(call.bodies.request_body) <= cap and peak < 4 * cap + 4 * MiB


# --- endless framing ----------------------------------------------------------------------

def _peak(fn) -> int:
    tracemalloc.start()
    try:
        fn()
        return tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


def test_huge_request_head_is_a_parse_error_and_the_connection_recovers():
    """10 MB of header lines (past the 64 KiB head limit), then a normal call on the same connection."""
    r = Run()

    def go():
        r.out(b"POST /v1/messages HTTP/1.1\r\nHost: api.anthropic.com\r\n", 0)
        for _ in range(10_000):
            r.out(b"X-Junk: " + b"a" * 1000 + b"\r\n", 1)
        r.out(b"Content-Length: 2\r\n\r\n{}", 2)
        r.out(request("/v1/messages", {"model": "claude-after"}), 3)
        r.inn(response(fixture("anthropic_message_tool.json")), 4)
    peak = _peak(go)
    assert peak < 4 * MiB, peak
    assert r.p.stats.parse_errors >= 1 and r.p.stats.internal_errors == 0
    assert [c.model for c in r.calls] == ["claude-after"] and not r.calls[0].incomplete


@pytest.mark.parametrize("header_line", [False, True], ids=["many-lines", "one-10MB-line"])
def test_huge_response_head_ends_the_call_as_a_parse_error(header_line):
    r = Run()

    def go():
        r.out(request("/v1/messages", {"model": "claude-x"}), 0)
        r.inn(b"HTTP/1.1 200 OK\r\n", 1)
        if header_line:
            r.inn(b"X-A: " + b"a" * (10 * MiB), 2)     # one write of 10 MiB, no CRLF
        else:
            for _ in range(10_000):
                r.inn(b"X-Junk: " + b"a" * 1000 + b"\r\n", 2)
        r.close(5)
    peak = _peak(go)
    call = r.one(clean=False)
    assert call.incomplete_reason == "parse_error: header_too_large"
    assert r.p.stats.parse_errors == 1 and r.p.stats.internal_errors == 0 and not r.p.conns
    assert peak < (3 * 10 * MiB if header_line else 4 * MiB), peak   # one 10 MiB write is held, never grown


def test_endless_chunked_body_keeps_only_the_cap():
    """256 MiB of chunked body, then the process dies: memory follows max_body, the call is reported."""
    keep = 4 * MiB
    r = Run(limits=Limits(max_body=keep))
    blob = chunk_frame(b"x" * 65536) * 16

    def go():
        r.out(request("/v1/messages", {"model": "claude-x"}), 0)
        r.inn(response_head(200, {"Content-Type": "application/json", "Transfer-Encoding": "chunked"}), 1)
        for i in range(256):
            r.inn(blob, 2 + i)
        r.close(300, "process_exit")
    peak = _peak(go)
    call = r.one(clean=False)
    assert call.incomplete_reason == "process_exit" and len(call.bodies.response_body) == keep
    assert r.p.stats.bodies_truncated == 1 and call.response_bytes > 256 * MiB
    assert peak < 4 * keep + 4 * MiB, peak / MiB


def test_endless_chunk_size_line_is_a_parse_error():
    r = Run()

    def go():
        r.out(request("/v1/messages", {"model": "claude-x"}), 0)
        r.inn(response_head(200, {"Content-Type": "application/json", "Transfer-Encoding": "chunked"}), 1)
        for i in range(64):
            r.inn(b"0" * MiB, 2 + i)
        r.close(100)
    peak = _peak(go)
    call = r.one(clean=False)
    assert call.incomplete_reason == "parse_error: chunk_size_line_too_long"
    assert r.p.stats.parse_errors == 1 and peak < 4 * MiB


def _sse_without_newline(r: Run, total_mib: int) -> None:
    r.out(request("/v1/messages", {"model": "claude-x", "stream": True}), 0)
    r.inn(response_head(200, SSE), 1)
    r.inn(chunk_frame(b"event: message_start\ndata: "), 2)
    blob = chunk_frame(b"y" * MiB)
    for i in range(total_mib):
        r.inn(blob, 3 + i)
    r.inn(b"0\r\n\r\n", 5 + total_mib)


def test_sse_line_without_newline_is_bounded():
    """128 MiB of one SSE line that never ends: the decoder drops it past its event cap."""
    r = Run()
    peak = _peak(lambda: _sse_without_newline(r, 128))
    call = r.one(clean=False)
    assert call.model == "claude-x" and r.p.stats.internal_errors == 0
    assert peak < 64 * MiB, peak / MiB      # 16 MiB event cap + 16 MiB kept body, never the 128 MiB


def test_sse_line_without_newline_is_counted():
    """An SSE event dropped past the decoder's max_event is a counted parse error that marks the call."""
    r = Run()
    _sse_without_newline(r, 24)
    call = r.one(clean=False)
    assert r.p.stats.parse_errors >= 1
    assert call.incomplete and call.incomplete_reason.startswith("parse_error")


# --- deep JSON, invalid UTF-8 -------------------------------------------------------------

def _nested(n: int) -> bytes:
    return b"[" * n + b"]" * n


def _deep_cases():
    deep = _nested(100_000)
    anth = fixture("anthropic_message_tool.json")

    def response_body(r):
        r.out(request("/v1/messages", {"model": "claude-x"}), 0)
        r.inn(response(deep), 10)

    def request_body(r):
        r.out(request("/v1/messages", b'{"model":"claude-x","messages":' + deep + b"}"), 0)
        r.inn(response(anth), 10)

    def sse_event(r):
        r.out(request("/v1/messages", {"model": "claude-x", "stream": True}), 0)
        r.inn(response_head(200, SSE), 5)
        r.inn(chunk_frame(b'event: message_start\ndata: {"type":"message_start","x":' + deep + b"}\n\n"), 6)
        r.inn(b"0\r\n\r\n", 7)

    def mcp_stdio(r):
        r.conn = "ipc:5"
        r.out(b'{"jsonrpc":"2.0","id":1,"method":"tools/call","params":' + deep + b"}\n", 0)
        r.inn(b'{"jsonrpc":"2.0","id":1,"result":' + deep + b"}\n", 1)
        r.close(2)
    return {"response-body": response_body, "request-body": request_body, "sse-event": sse_event,
            "mcp-stdio": mcp_stdio}


@pytest.mark.parametrize("where", list(_deep_cases()))
def test_json_nested_100k_deep_is_a_parse_error(where):
    """json.loads raises RecursionError (not ValueError) on 100k-deep JSON. It once went to Pipeline.feed's
    safety net (internal_errors; a non-streaming call lost); now a parse error like any bad JSON."""
    r = Run()
    _deep_cases()[where](r)
    r.p.flush()
    assert r.p.stats.internal_errors == 0
    assert r.p.stats.parse_errors >= 1
    if where != "mcp-stdio":          # an MCP request that cannot be read names no method: no call
        assert r.calls, "the call is still reported"


@pytest.mark.parametrize("where", list(_deep_cases()))
def test_json_nested_100k_deep_never_raises(where):
    """What holds today: nothing escapes feed, no state is left behind."""
    r = Run()
    _deep_cases()[where](r)
    r.p.flush()
    assert r.p.stats.parse_errors >= 1 and not r.p.conns


def test_invalid_utf8_everywhere_never_raises_and_lines_stay_json(tmp_path):
    r = Run()
    bad = b"\xff\xfe\xc3(\xed\xa0\x80\xf4\x90\x80\x80"
    r.out(request("/v1/messages", b'{"model":"claude-' + bad + b'","stream":true}',
                  headers={"X-Bad": bad.decode("latin-1")}), 0)
    r.inn(response_head(200, {**SSE, "X-Bad": bad.decode("latin-1")}), 1)
    r.inn(chunk_frame(b'event: message_start\ndata: {"type":"message_start","message":{"model":"m' + bad
                      + b'","usage":{"input_tokens":5,"output_tokens":1}}}\n\n'), 2)
    r.inn(chunk_frame(b"event: " + bad + b"\ndata: " + bad + b"\n\n"), 3)
    r.inn(chunk_frame(b'event: message_delta\ndata: {"type":"message_delta","delta":{"stop_reason":"end_turn"},'
                      b'"usage":{"output_tokens":9}}\n\n'), 4)
    r.inn(b"0\r\n\r\n", 5)
    r2 = Run(conn="ipc:3", transport=Transport.PIPE)
    r2.out(b'{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"t' + bad + b'"}}\n', 0)
    r2.inn(b'{"jsonrpc":"2.0","id":1,"result":{"x":"' + bad + b'"}}\n', 1)
    r2.inn(bad + b"\n", 2)
    r2.close(3)
    calls = r.calls + r2.calls
    assert r.p.stats.internal_errors == 0 and r2.p.stats.internal_errors == 0
    # JSON must be UTF-8: the message_start event with bad bytes is a counted parse error (its
    # input_tokens are lost); the valid events around it still count.
    assert len(r.calls) == 1 and r.calls[0].output_tokens == 9 and r.calls[0].stop_reason == "end_turn"
    assert r.p.stats.parse_errors >= 1 and r.calls[0].incomplete_reason.startswith("parse_error")
    sink = BodiesSink(str(tmp_path / "b"), 100, 24, group=None)
    for c in calls:
        line = event_line(c)
        json.loads(line)
        line.decode("utf-8")
        sink.write(c)
        if c.body_path:
            json.loads(open(c.body_path, "rb").read())


def test_interleaved_hostile_connections_leave_no_state():
    """Many connections at once, each cut somewhere hostile, then closed: the pipeline holds nothing."""
    r = Run()
    for i in range(300):
        conn = f"tls:{i}:ff"
        r.out(request("/v1/messages", {"model": f"m{i}", "stream": True}), i, conn=conn)
        if i % 3 == 0:
            r.inn(response_head(200, SSE) + chunk_frame(b"data: " + b"{" * 1000), i + 1, conn=conn)
        elif i % 3 == 1:
            r.inn(b"HTTP/1.1 200 OK\r\n" + b"X: y\r\n" * 100, i + 1, conn=conn)
    assert len(r.p.conns) == 300
    for i in range(300):
        r.close(400 + i, "process_exit" if i % 2 else "closed", conn=f"tls:{i}:ff")
    assert not r.p.conns and r.p.stats.conns_open == 0 and r.p.stats.internal_errors == 0
    assert len(r.calls) == 300 and all(c.incomplete for c in r.calls)


def test_chunk_objects_from_capture_are_not_retained():
    """Feeding must not keep references to the chunks' data past what the limits allow."""
    r = Run(limits=Limits(max_body=64 * 1024))
    r.out(request("/v1/messages", {"model": "claude-x"}), 0)
    r.inn(response_head(200, {"Content-Type": "application/json", "Transfer-Encoding": "chunked"}), 1)
    tracemalloc.start()
    base = tracemalloc.get_traced_memory()[0]
    for i in range(2000):
        r.p.feed(chunk(Direction.INGRESS, chunk_frame(b"z" * 8192), 10**12 + i, conn=r.conn, wall_ns=0, proc="c"))
    held = tracemalloc.get_traced_memory()[0] - base
    tracemalloc.stop()
    assert held < 2 * MiB, held      # 16 MB went through; at most the 64 KiB body cap (+ bookkeeping) stays


# --- numbers from the wire -----------------------------------------------------------------

@pytest.mark.parametrize("value", [b"1e999", b"-1e999", b"NaN", b'"\xc2\xb2"'], ids=["inf", "-inf", "nan", "superscript"])
def test_hostile_token_counts_are_ignored_not_fatal(value):
    """JSON 1e999 is inf, NaN is accepted by json.loads, and '²'.isdigit() is true but int('²') fails:
    none is a token count (found by fuzz/run.py: as_int raised, the call went to the safety net)."""
    r = Run()
    r.out(request("/v1/chat/completions", {"model": "gpt-4o"}, host="api.openai.com"), 0)
    body = (b'{"id":"c","object":"chat.completion","model":"gpt-4o","choices":[{"index":0,"message":'
            b'{"role":"assistant","content":"hi"},"finish_reason":"stop"}],"usage":{"prompt_tokens":' + value
            + b',"completion_tokens":3,"prompt_tokens_details":{"cached_tokens":' + value + b"}}}")
    r.inn(response(body), 10)
    assert r.p.stats.internal_errors == 0
    call = r.one(clean=False)
    assert call.output_tokens == 3 and call.stop_reason == "stop"
    json.loads(event_line(call))
