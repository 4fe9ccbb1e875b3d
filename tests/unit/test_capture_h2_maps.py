"""What the Tracer writes into the kernel's maps for HTTP/2, on stand-in maps (BCC's table
objects need root and a loaded program; these keep the same Key/Leaf/item interface).

An HTTP/2 connection (S_H2) is never cut off by ignore_conn (the 101 to h2c, a late HTTP/1.1
answer); ignore_stream writes (generation, stream id) keys, and nothing for a connection the
kernel does not walk.
"""

from __future__ import annotations

from collections import namedtuple

from agtap.capture.conns import ConnMapper
from agtap.capture.connid import ConnId
from agtap.capture.records import F_LAST, K_H2_START, S_CAPTURE, S_H2, S_H2_LATE, S_IGNORE, RawRecord
from agtap.capture.tracer import Tracer
from agtap.config import Config


class FakeMap(dict):
    def __init__(self, key_fields, leaf_fields):
        super().__init__()
        self.Key = namedtuple("Key", key_fields)
        self.Leaf = namedtuple("Leaf", leaf_fields) if leaf_fields else (lambda v: v)


def tracer():
    t = Tracer(Config(), lambda item: None)
    t._bpf = {"conns": FakeMap(["pid", "is_tls", "id"], ["state", "pad"]),
              "h2_drop": FakeMap(["gen", "sid", "pad"], None)}
    t._mapper = ConnMapper(proc_root="/nonexistent")
    return t


def test_ignore_conn_leaves_an_http2_connection_alone():
    t = tracer()
    conns = t._bpf["conns"]
    h1, h2 = ConnId.tls(10, 0xA), ConnId.tls(10, 0xB)
    conns[conns.Key(10, 1, 0xA)] = conns.Leaf(S_CAPTURE, 0)
    conns[conns.Key(10, 1, 0xB)] = conns.Leaf(S_H2, 0)
    t.ignore_conn(h1)
    t.ignore_conn(h2)
    assert conns[conns.Key(10, 1, 0xA)].state == S_IGNORE
    assert conns[conns.Key(10, 1, 0xB)].state == S_H2


def test_ignore_conn_stops_a_late_joined_connection():
    # joined late on bytes that looked like a request (S_H2_LATE): if they are not frames after all,
    # userspace must be able to stop the copying (an S_H2 connection began with the preface: never)
    t = tracer()
    conns = t._bpf["conns"]
    conns[conns.Key(10, 0, 7)] = conns.Leaf(S_H2_LATE, 0)
    t.ignore_conn(ConnId.sock(10, 7))
    assert conns[conns.Key(10, 0, 7)].state == S_IGNORE


def test_a_late_connection_whose_client_bytes_are_not_frames_is_ignored():
    from tests.support.harness import Run
    r = Run(conn="sock:9:3")
    # a HEADERS frame header as the kernel's h2_late wants it, then bytes that are no frame at all
    r.out(bytes.fromhex("000005010400000001") + bytes([0x83, 0x86, 0x84, 0x41, 0x00]), 0)
    r.out(bytes.fromhex("000000040000000001"), 10)   # SETTINGS on a stream: not HTTP/2 (hyperframe refuses it)
    assert r.ignored == ["sock:9:3"] and r.p.stats.parse_errors == 1


def test_ignore_stream_keys_by_the_connections_generation():
    t = tracer()
    drop = t._bpf["h2_drop"]
    walked, other = ConnId.sock(10, 5), ConnId.tls(10, 0xC)
    t._mapper.map(RawRecord(1, 5, 777, 0, 10, 10, K_H2_START, F_LAST, "c", b""))
    t.ignore_stream(walked, 3)
    t.ignore_stream(other, 3)          # no K_H2_START: not walked (Upgrade: h2c), nothing written
    assert list(drop) == [drop.Key(777, 3, 0)]
