"""BodiesSink on real files: layout, redaction, atomic writes, size cap, retention, disk full."""

import base64
import datetime as dt
import json
import os
import stat
import time
import uuid

import pytest

from agtap.call import KIND_LLM, KIND_MCP, Call, CallBodies
from agtap.sinks.bodies import BodiesSink, body_document, encode_body

from test_sink_jsonl import fill, small_tmpfs

WALL = int(dt.datetime(2026, 11, 26, 23, 37, 25, tzinfo=dt.timezone.utc).timestamp() * 1e9)
REQ = {"model": "claude-sonnet-4-5", "max_tokens": 64, "messages": [{"role": "user", "content": "héllo ✓"}]}
RESP = {"id": "msg_01", "content": [{"type": "text", "text": "hi"}], "stop_reason": "end_turn"}


def make_call(event_id=None, request_body=None, response_body=None, **kw) -> Call:
    bodies = CallBodies(
        request_headers=[("Host", "api.anthropic.com"), ("x-api-key", "fake-secret-1"), ("content-type", "application/json")],
        request_target="POST /v1/messages?beta=true",
        request_body=json.dumps(REQ).encode() if request_body is None else request_body,
        response_status=200,
        response_headers=[("content-type", "application/json"), ("set-cookie", "fake-secret-2")],
        response_body=json.dumps(RESP).encode() if response_body is None else response_body,
    )
    kw.setdefault("wall_start_ns", WALL)
    return Call(
        ts="2026-11-26T23:37:25.000000Z", id="msg_01", event_id=uuid.uuid4().hex if event_id is None else event_id, pid=1,
        proc="python3", provider="anthropic", server_address="api.anthropic.com", kind=KIND_LLM,
        bodies=bodies, **kw,
    )


def test_file_layout_content_and_modes(tmp_path):
    sink = BodiesSink(str(tmp_path / "bodies"), 10, 24, group="daemon")
    c = make_call(platform="anthropic")
    sink.write(c)
    expected = tmp_path / "bodies" / "2026-11-26" / f"{c.event_id}.json"
    assert c.body_path == str(expected)
    doc = json.loads(expected.read_bytes())
    assert (doc["event_id"], doc["id"], doc["provider"], doc["platform"]) == (c.event_id, "msg_01", "anthropic",
                                                                              "anthropic")
    assert doc["request"] == {
        "target": "POST /v1/messages?beta=true",
        "headers": [["Host", "api.anthropic.com"], ["x-api-key", "[REDACTED]"], ["content-type", "application/json"]],
        "body": REQ,
        "body_encoding": "json",
    }
    assert doc["response"] == {
        "status": 200,
        "headers": [["content-type", "application/json"], ["set-cookie", "[REDACTED]"]],
        "body": RESP,
        "body_encoding": "json",
    }
    assert stat.S_IMODE(os.stat(expected).st_mode) == 0o640
    for d in (tmp_path / "bodies", expected.parent):
        assert stat.S_IMODE(os.stat(d).st_mode) == 0o750
    if os.geteuid() == 0:
        assert (os.stat(expected).st_uid, os.stat(expected).st_gid) == (0, 1)
    assert [p.name for p in expected.parent.iterdir()] == [expected.name]  # no temp file left
    assert sink.stats()["files"] == 1 and sink.stats()["bytes"] == expected.stat().st_size


def test_body_encodings():
    assert encode_body(b"") == (None, "empty")
    assert encode_body(b'{"a": 1}') == ({"a": 1}, "json")
    sse = b"event: message_start\ndata: {\"type\":\"message_start\"}\n\n"
    assert encode_body(sse) == (sse.decode(), "text")
    raw = b"\x1f\x8b\x08\x00\xff"
    assert encode_body(raw) == (base64.b64encode(raw).decode(), "base64")


def test_mcp_events_are_stored_and_scrubbed():
    c = make_call(request_body=b"", response_body=b"")
    c.kind = KIND_MCP
    c.bodies.response_events = [{"jsonrpc": "2.0", "id": 1, "result": {"token": "Bearer abcdefgh12345678XYZ"}}]
    doc = json.loads(body_document(c, c.bodies))
    assert doc["response"]["events"] == [{"jsonrpc": "2.0", "id": 1, "result": {"token": "Bearer [REDACTED]"}}]
    assert doc["request"]["body_encoding"] == "empty"


def test_document_is_ascii_and_escapes_controls():
    c = make_call(request_body='{"content": "\\u001b]0;x\\u0007 模型"}'.encode())
    data = body_document(c, c.bodies)
    assert data.isascii() and b"\x1b" not in data
    assert json.loads(data)["request"]["body"]["content"] == "\x1b]0;x\x07 模型"
    # raw control bytes are not valid JSON: kept as text, still escaped in the file
    c = make_call(request_body='{"content": "\x1b[2J"}'.encode())
    data = body_document(c, c.bodies)
    assert data.isascii() and b"\x1b" not in data
    req = json.loads(data)["request"]
    assert (req["body"], req["body_encoding"]) == ('{"content": "\x1b[2J"}', "text")


@pytest.mark.parametrize("bad", ["../../etc/passwd", "msg_01ABC", "", "a" * 15, "ABCDEF0123456789", "0123456789abcdef/x"])
def test_only_hex_ids_name_files(tmp_path, bad):
    sink = BodiesSink(str(tmp_path / "b"), 10, 24)
    c = make_call(event_id=bad)
    sink.write(c)
    assert c.body_path is None
    assert sink.stats()["bad_ids"] == 1 and sink.stats()["files"] == 0
    assert [p for p in tmp_path.rglob("*") if p.is_file()] == []


def test_calls_without_bodies_are_ignored(tmp_path):
    sink = BodiesSink(str(tmp_path / "b"), 10, 24)
    c = make_call()
    c.bodies = None
    sink.write(c)
    assert c.body_path is None and sink.stats()["files_written"] == 0


def test_size_cap_removes_oldest_first(tmp_path):
    one = len(body_document(make_call(), make_call().bodies))
    sink = BodiesSink(str(tmp_path / "b"), (one * 5 + one // 2) / 2**20, 24)  # room for 5 files
    calls = [make_call() for _ in range(12)]
    for c in calls:
        sink.write(c)
    on_disk = sorted(p.stem for p in (tmp_path / "b" / "2026-11-26").iterdir())
    assert on_disk == sorted(c.event_id for c in calls[-5:])
    st = sink.stats()
    assert st["files"] == 5 and st["files_removed"] == 7 and st["bytes"] <= one * 5 + one // 2


def test_a_single_body_larger_than_the_cap_is_skipped(tmp_path):
    sink = BodiesSink(str(tmp_path / "b"), 1 / 1024, 24)  # 1 KB
    c = make_call(request_body=b"x" * 4096)
    sink.write(c)
    assert c.body_path is None and sink.stats()["too_large"] == 1


def test_prune_removes_files_past_retention_and_empty_days(tmp_path):
    sink = BodiesSink(str(tmp_path / "b"), 10, retention_hours=1)
    old = make_call()
    sink.write(old)
    now = time.time()
    assert sink.prune(now) == 0
    newer = make_call(wall_start_ns=WALL + 86400 * 10**9)  # next day
    sink.write(newer)
    sink._index[old.body_path] = (now - 7200, sink._index[old.body_path][1])  # written two hours ago
    assert sink.prune(now) == 1
    assert not os.path.exists(old.body_path) and os.path.exists(newer.body_path)
    assert not (tmp_path / "b" / "2026-11-26").exists()  # emptied day dir removed
    assert sink.prune(now + 3601) == 1 and sink.stats()["files"] == 0


def test_restart_reloads_index_and_removes_leftover_temp_files(tmp_path):
    sink = BodiesSink(str(tmp_path / "b"), 10, 24)
    calls = [make_call() for _ in range(3)]
    for c in calls:
        sink.write(c)
    leftover = tmp_path / "b" / "2026-11-26" / f".{uuid.uuid4().hex}.tmp"
    leftover.write_bytes(b'{"half')  # as if SIGKILLed between write and rename
    again = BodiesSink(str(tmp_path / "b"), 10, 24)
    assert not leftover.exists()
    assert again.stats()["files"] == 3 and again.stats()["bytes"] == sink.stats()["bytes"]
    os.utime(calls[0].body_path, (1, 1))
    assert BodiesSink(str(tmp_path / "b"), 10, 24).prune() == 1  # mtime decides after a restart


def test_disk_full_is_counted_leaves_no_partial_file_and_recovers(tmp_path):
    with small_tmpfs(tmp_path / "small") as mnt:
        sink = BodiesSink(str(mnt / "bodies"), 10, 24)
        ok = make_call()
        sink.write(ok)
        filler = fill(mnt / "filler")
        big = make_call(request_body=json.dumps({"x": "y" * 20000}).encode())
        sink.write(big)  # must not raise
        assert big.body_path is None and sink.stats()["write_errors"] == 1
        day = mnt / "bodies" / "2026-11-26"
        assert sorted(p.name for p in day.iterdir()) == [f"{ok.event_id}.json"]  # no partial, no temp
        os.unlink(filler)
        sink.write(big)
        assert big.body_path and json.loads(open(big.body_path, "rb").read())["request"]["body"]["x"] == "y" * 20000
        assert sink.stats()["write_errors"] == 1


def test_clean_removes_every_body_and_resets_the_cap_accounting(tmp_path):
    import uuid
    from agtap.call import Call, CallBodies
    from agtap.sinks.bodies import BodiesSink
    sink = BodiesSink(str(tmp_path / "b"), max_store_mb=1, retention_hours=1)
    paths = []
    for _ in range(3):
        c = Call(ts="t", id=None, pid=1, proc="p", provider="anthropic", server_address="a",
                 kind="llm_call", bodies=CallBodies(request_body=b'{"a":1}', response_body=b'{"b":2}'))
        sink.write(c)
        paths.append(c.body_path)
    assert all(os.path.exists(p) for p in paths)
    removed = sink.clean()
    assert removed["body_files"] == 3 and removed["bytes"] > 0
    assert not any(os.path.exists(p) for p in paths)
    assert sink.stats()["files"] == 0 and sink.stats()["bytes"] == 0


def test_a_day_directory_swapped_for_a_symlink_is_refused_not_followed(tmp_path):
    """The day directory is checked once, then trusted (the sink no longer walks the path for
    every file); a symlink put in its place later is still seen and refused."""
    sink = BodiesSink(str(tmp_path / "bodies"), 10, 24)
    first = make_call()
    sink.write(first)
    day = tmp_path / "bodies" / "2026-11-26"
    victim = tmp_path / "victim"
    victim.mkdir()
    os.rename(day, tmp_path / "moved")
    os.symlink(victim, day)
    second = make_call()
    sink.write(second)
    assert list(victim.iterdir()) == []
    assert second.body_path is None
    assert sink.stats()["write_errors"] == 1
