"""`agtap record` masks secrets: a recording may be attached to a bug report.

The recording writer overwrites API keys, cookies, key= parameters and
credential-shaped strings with '*' byte for byte, wherever the capture cut the
bytes, so the file holds no secret and still replays the same calls.
"""

from __future__ import annotations

import json

from agtap.capture.chunk import Chunk, ConnClosed, Direction, Transport
from agtap.capture.connid import ConnId
from agtap.capture.recording import Recorder, read
from agtap.pipeline import Pipeline

KEY = "sk-ant-api03-Zx8bq2Lw9TmR4vYk"
GOOGLE_KEY = "AIzaSyD4k8Xq0mTn3Rw7Yb2Lc5Hp9Jv1Fs6GdQe"
COOKIE = "session=agtapcookie8f3e1d"
BODY_KEY = "sk-proj-Qm4Rt7Yw2Ub5Ie8Op1As3Df6Gh"
SECRETS = (KEY, GOOGLE_KEY, COOKIE, BODY_KEY, "agtapcookie8f3e1d")

BODY = json.dumps({"model": "claude-rec", "max_tokens": 5,
                   "messages": [{"role": "user", "content": f"is {BODY_KEY} a key? risk-free"}]}).encode()
REQUEST = (b"POST /v1/messages?beta=true&key=" + GOOGLE_KEY.encode() + b" HTTP/1.1\r\n"
           b"Host: api.anthropic.com\r\nx-api-key: " + KEY.encode() + b"\r\n"
           b"Cookie: " + COOKIE.encode() + b"\r\nAuthorization: Bearer " + KEY.encode() + b"\r\n"
           b"Content-Type: application/json\r\nContent-Length: " + str(len(BODY)).encode() + b"\r\n\r\n" + BODY)
RESP_BODY = (b'{"id":"msg_rec","type":"message","role":"assistant","model":"claude-rec",'
             b'"content":[{"type":"text","text":"ok"}],"stop_reason":"end_turn",'
             b'"usage":{"input_tokens":21,"output_tokens":3}}')
RESPONSE = (b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nSet-Cookie: " + COOKIE.encode()
            + b"\r\nContent-Length: " + str(len(RESP_BODY)).encode() + b"\r\n\r\n" + RESP_BODY)


def chunk(direction: Direction, data: bytes, ts: int) -> Chunk:
    return Chunk(conn=ConnId.tls(9, 0x1F), direction=direction, ts_ns=ts, wall_ns=1_795_000_000_000_000_000 + ts, pid=9,
                 tid=9, comm="python3", proc="python3", data=data, transport=Transport.TLS)


def items_cut_at(cut: int) -> list:
    r = min(cut, len(RESPONSE))
    return [chunk(Direction.EGRESS, REQUEST[:cut], 1_000_000), chunk(Direction.EGRESS, REQUEST[cut:], 2_000_000),
            chunk(Direction.INGRESS, RESPONSE[:r], 9_000_000), chunk(Direction.INGRESS, RESPONSE[r:], 9_500_000),
            ConnClosed(ConnId.tls(9, 0x1F), 10_000_000, "closed")]


def record(tmp_path, items) -> list:
    path = tmp_path / "r.jsonl"
    rec = Recorder(str(path))
    for i in items:
        rec.write(i)
    rec.close()
    text = path.read_text()
    for s in SECRETS:
        assert s not in text
    return list(read(str(path)))


def calls(items) -> list[dict]:
    out: list[dict] = []
    p = Pipeline(lambda c: out.append(c.to_dict()))
    for i in items:
        p.feed(i)
    p.flush()
    return out


def test_no_secret_reaches_the_file_wherever_the_capture_cut_the_bytes(tmp_path):
    for cut in range(0, len(REQUEST) + 1):
        got = record(tmp_path, items_cut_at(cut))
        egress = b"".join(i.data for i in got if isinstance(i, Chunk) and i.direction is Direction.EGRESS)
        ingress = b"".join(i.data for i in got if isinstance(i, Chunk) and i.direction is Direction.INGRESS)
        assert len(egress) == len(REQUEST) and len(ingress) == len(RESPONSE), cut
        for s in SECRETS:
            # not even a 7-byte piece of a secret's own part
            tail = s.split("-", 3)[-1] if s.startswith("sk-") else s[4:] if s.startswith("AIza") else s
            for k in range(len(tail) - 6):
                assert tail[k:k + 7].encode() not in egress + ingress, (cut, s, egress)


def test_the_masked_recording_replays_the_same_call(tmp_path):
    items = items_cut_at(97)
    [orig] = calls(items)
    [masked] = calls(record(tmp_path, items))
    for k in ("event_id", "ts", "body_path"):
        orig.pop(k), masked.pop(k)
    assert masked == orig
    assert (masked["model"], masked["input_tokens"], masked["output_tokens"], masked["stop_reason"],
            masked["request_bytes"], masked["response_bytes"]) == \
        ("claude-rec", 21, 3, "end_turn", len(REQUEST), len(RESPONSE))


def test_what_is_masked_and_what_is_kept(tmp_path):
    [req, _, resp, _, close] = record(tmp_path, items_cut_at(len(REQUEST)))
    head, _, body = req.data.partition(b"\r\n\r\n")
    lines = head.split(b"\r\n")
    assert lines[0] == b"POST /v1/messages?beta=true&key=" + b"*" * len(GOOGLE_KEY) + b" HTTP/1.1"
    assert lines[1] == b"Host: api.anthropic.com"
    assert lines[2] == b"x-api-key: " + b"*" * len(KEY)
    assert lines[3] == b"Cookie: " + b"*" * len(COOKIE)
    assert lines[4] == b"Authorization: " + b"*" * len(b"Bearer " + KEY.encode())
    assert json.loads(body)["messages"][0]["content"] == "is " + "*" * len(BODY_KEY) + " a key? risk-free"
    assert b"Set-Cookie: " + b"*" * len(COOKIE) + b"\r\n" in resp.data
    assert resp.data.endswith(RESP_BODY)
    assert close == ConnClosed(ConnId.tls(9, 0x1F), 10_000_000, "closed")


def test_streams_are_masked_apart(tmp_path):
    """A secret header cut at the end of one connection's piece is not completed by another's."""
    a = Chunk(conn=ConnId.tls(1, 0xA), direction=Direction.EGRESS, ts_ns=1, wall_ns=1, pid=1, tid=1, comm="c", proc="c",
              data=b"POST / HTTP/1.1\r\nx-api-key: sk-ant-", transport=Transport.TLS)
    b = Chunk(conn=ConnId.tls(2, 0xB), direction=Direction.EGRESS, ts_ns=2, wall_ns=2, pid=2, tid=2, comm="c", proc="c",
              data=b"plain text\r\n", transport=Transport.TLS)
    got = record(tmp_path, [a, b])
    assert got[0].data == b"POST / HTTP/1.1\r\nx-api-key: *******"
    assert got[1].data == b"plain text\r\n"
