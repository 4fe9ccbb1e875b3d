"""What the BPF programs and userspace share: the numbers, and the ring-buffer record, decoded.

The numbers (record kinds, flags, connection states, counter slots) are
defined here only: agtap/capture/loader.py writes them as `#define`s ahead of
bpf/*.c, as it does SEG_SIZE. The structs are defined in C (bpf/common.h);
RECORD_HEADER below is how userspace reads struct record_t, and
`layout_problems` checks it, at every start, against the type BCC generated
from the C (Tracer.start refuses to capture when they disagree).
Map keys and values are written with BCC's own generated types, never a copy.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

# --- the numbers the C uses: name -> (value, meaning) ---
BPF_CONSTANTS: dict[str, tuple[int, str]] = {
    # record kinds
    "K_TLS_WRITE": (1, "SSL_write* on a captured connection"),
    "K_TLS_READ": (2, "SSL_read* on a captured connection"),
    "K_SOCK_WRITE": (3, "write/send/sendmsg on a captured fd"),
    "K_SOCK_READ": (4, "read/recv/recvmsg on a captured fd"),
    "K_CLOSE": (5, "close(fd) or SSL_free(ssl) on a captured connection"),
    "K_EXEC": (6, "a process exec'd: userspace looks for new SSL targets"),
    "K_EXIT": (7, "a process with captured connections, or a watched one, exited"),
    "K_GO_WRITE": (8, "Go crypto/tls.(*Conn).Write on a captured connection"),
    "K_GO_READ": (9, "Go crypto/tls.(*Conn).Read on a captured connection"),
    "K_GO_CLOSE": (10, "Go crypto/tls.(*Conn).Close on a captured connection"),
    # conn_key_t.is_tls: what the key's id is (0: an fd, 1: an SSL*)
    "KEY_GOTLS": (2, "the id is a Go *tls.Conn"),
    "K_CLIENT": (11, "a process not watched yet started a TLS client connection (the sentinel)"),
    "K_FORK": (12, "a watched process forked or cloned (conn_id: the child's pid or tid)"),
    "K_SERVER": (13, "a watched process, never a TLS client, accepted a TLS connection (not named by a filter)"),
    "K_H2_START": (14, "an HTTP/2 connection began with the preface, or was joined late (S_H2_LATE): `total` = "
                       "its generation (h2_drop keys), `offset` = its key's is_tls (0 fd, 1 SSL*, KEY_GOTLS)"),
    # record flags
    "F_CUT": (1, "the buffer was longer than the cap: the rest was not copied"),
    "F_LAST": (2, "last record of this buffer"),
    # connection states (the conns map)
    "S_CAPTURE": (1, "copy writes and reads"),
    "S_IGNORE": (2, "copy nothing until the next HTTP request line"),
    "S_EGRESS_ONLY": (3, "copy writes only (local IPC: the peer's writes are captured too)"),
    "S_NEVER": (4, "not a connection at all (a file, a tty): copy nothing ever"),
    "S_H2": (5, "HTTP/2 (client preface written): copy writes and reads until close; userspace never ignores it"),
    "S_H2_LATE": (6, "HTTP/2 joined late (a write on an unknown connection looked like frames): as S_H2, "
                     "but userspace may ignore it (its bytes may not be HTTP/2 after all)"),
    # a process's state in watch_state (per-process probe scope, agtap/capture/scope.py)
    "W_PENDING": (1, "to be watched: its data probes are not attached yet"),
    "W_LIVE": (2, "its data probes are attached"),
    "W_LATE": (3, "wrote TLS application data while pending: counted once in C_LATE_ATTACH"),
    "W_DEMOTED": (4, "demoted: its data probes detached, the sentinel leaves it alone until it execs"),
    # counter slots (per-CPU array `counters`, summed by userspace)
    "C_LOST": (0, "ring-buffer output failed: bytes lost"),
    "C_CUT": (1, "buffers cut at the cap"),
    "C_RECORDS": (2, "records delivered"),
    "C_BYTES": (3, "payload bytes delivered"),
    "C_CONN_FULL": (4, "conns map full: a connection could not be tracked"),
    "C_READ_FAIL": (5, "bpf_probe_read_user failed (page not present): bytes lost"),
    "C_SKIPPED": (6, "payload bytes seen on ignored connections (not copied)"),
    "C_LOST_RECS": (7, "ring-buffer records lost"),
    "C_H2_CONNS": (8, "HTTP/2 connections seen (client preface written)"),
    "C_LATE_ATTACH": (9, "processes that wrote TLS application data before their probes were live"),
    "C_H2_DROPPED": (10, "HTTP/2 DATA payload bytes of ignored streams, not copied (by design)"),
    "C_H2_LOST": (11, "HTTP/2 connections whose frames the kernel stopped walking (copied whole from then on)"),
    "C_H2_LATE": (12, "HTTP/2 connections joined late: no preface seen, a write looked like frames"),
    "N_COUNTERS": (13, "counter slots"),
}
_V = {k: v for k, (v, _) in BPF_CONSTANTS.items()}
K_TLS_WRITE, K_TLS_READ = _V["K_TLS_WRITE"], _V["K_TLS_READ"]
K_SOCK_WRITE, K_SOCK_READ = _V["K_SOCK_WRITE"], _V["K_SOCK_READ"]
K_CLOSE, K_EXEC, K_EXIT = _V["K_CLOSE"], _V["K_EXEC"], _V["K_EXIT"]
K_GO_WRITE, K_GO_READ, K_GO_CLOSE = _V["K_GO_WRITE"], _V["K_GO_READ"], _V["K_GO_CLOSE"]
KEY_GOTLS = _V["KEY_GOTLS"]
K_CLIENT, K_FORK, K_SERVER = _V["K_CLIENT"], _V["K_FORK"], _V["K_SERVER"]
W_PENDING, W_LIVE, W_LATE, W_DEMOTED = _V["W_PENDING"], _V["W_LIVE"], _V["W_LATE"], _V["W_DEMOTED"]
K_H2_START = _V["K_H2_START"]
F_CUT, F_LAST = _V["F_CUT"], _V["F_LAST"]
S_CAPTURE, S_IGNORE = _V["S_CAPTURE"], _V["S_IGNORE"]
S_EGRESS_ONLY, S_NEVER, S_H2, S_H2_LATE = _V["S_EGRESS_ONLY"], _V["S_NEVER"], _V["S_H2"], _V["S_H2_LATE"]
# the counters agtap reads, by slot: C_* -> the name Tracer.counters() gives it
COUNTERS = {
    "C_LOST": "lost_bytes", "C_CUT": "cut_buffers", "C_RECORDS": "records", "C_BYTES": "bytes",
    "C_CONN_FULL": "conn_table_full", "C_READ_FAIL": "read_failed_bytes", "C_SKIPPED": "skipped_bytes",
    "C_LOST_RECS": "lost_records", "C_H2_CONNS": "h2_connections", "C_LATE_ATTACH": "late_attach",
    "C_H2_DROPPED": "h2_dropped_bytes", "C_H2_LOST": "h2_walks_lost", "C_H2_LATE": "h2_late_joins",
}
COUNTER_SLOTS = {name: _V[c] for c, name in COUNTERS.items()}
COUNTER_NAMES = tuple(COUNTER_SLOTS)


def c_defines() -> str:
    """The constants as the C preamble loader.program_text puts ahead of bpf/*.c."""
    return "".join(f"#define {k} {v}\n" for k, (v, _) in BPF_CONSTANTS.items())


# --- struct record_t's header, as userspace reads it: (field, struct code), in order ---
RECORD_HEADER = (
    ("ts_ns", "Q"), ("conn_id", "Q"), ("total", "Q"), ("offset", "Q"),
    ("pid", "I"), ("tid", "I"), ("len", "I"), ("kind", "B"), ("flags", "B"), ("pad", "2x"), ("comm", "16s"),
)
_HDR = struct.Struct("<" + "".join(code for _, code in RECORD_HEADER))
HDR_SIZE = _HDR.size   # 64: sizeof(struct record_t) - SEG_SIZE


def header_offsets() -> dict[str, tuple[int, int]]:
    """field -> (offset, size) as _HDR reads it."""
    out, off = {}, 0
    for name, code in RECORD_HEADER:
        size = struct.calcsize("<" + code)
        out[name] = (off, size)
        off += size
    return out


def layout_problems(record_type) -> list[str]:
    """How struct record_t as compiled (a ctypes Structure: BCC's b["scratch"].sLeaf) differs
    from RECORD_HEADER; empty when they agree."""
    fields = [f[0] for f in record_type._fields_]
    want = [n for n, _ in RECORD_HEADER] + ["data"]
    if fields != want:
        return [f"struct record_t fields {fields}, userspace reads {want}"]
    problems = []
    for name, (off, size) in header_offsets().items():
        desc = getattr(record_type, name)
        if (desc.offset, desc.size) != (off, size):
            problems.append(f"record_t.{name} at {desc.offset} ({desc.size} bytes), userspace reads {off} ({size})")
    if record_type.data.offset != HDR_SIZE:
        problems.append(f"record_t.data at {record_type.data.offset}, userspace reads {HDR_SIZE}")
    return problems


@dataclass(slots=True)
class RawRecord:
    ts_ns: int
    conn_id: int
    total: int
    offset: int
    pid: int
    tid: int
    kind: int
    flags: int
    comm: str
    data: bytes

    @property
    def is_tls(self) -> bool:
        """Plaintext from a TLS library: OpenSSL/BoringSSL's or Go's crypto/tls."""
        return self.kind in (K_TLS_WRITE, K_TLS_READ, K_GO_WRITE, K_GO_READ)

    @property
    def is_go(self) -> bool:
        return self.kind in (K_GO_WRITE, K_GO_READ, K_GO_CLOSE)

    @property
    def is_write(self) -> bool:
        return self.kind in (K_TLS_WRITE, K_SOCK_WRITE, K_GO_WRITE)


def decode(buf: bytes) -> RawRecord:
    ts, conn, total, off, pid, tid, ln, kind, flags, comm = _HDR.unpack_from(buf, 0)
    data = bytes(buf[HDR_SIZE:HDR_SIZE + ln])
    return RawRecord(ts, conn, total, off, pid, tid, kind, flags,
                     comm.split(b"\0", 1)[0].decode("utf-8", "replace"), data)
