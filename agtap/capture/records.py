"""The ring-buffer record as bpf/common.h lays it out (struct record_t), decoded."""

from __future__ import annotations

import struct
from dataclasses import dataclass

# kinds and flags: the same numbers as bpf/common.h
K_TLS_WRITE, K_TLS_READ, K_SOCK_WRITE, K_SOCK_READ, K_CLOSE, K_EXEC, K_EXIT = range(1, 8)
F_CUT, F_LAST = 1, 2
# connection states (the conns map)
S_CAPTURE, S_IGNORE, S_EGRESS_ONLY, S_NEVER = 1, 2, 3, 4
# counters
C_LOST, C_CUT, C_RECORDS, C_BYTES, C_CONN_FULL, C_READ_FAIL, C_SKIPPED, C_LOST_RECS = range(8)
COUNTER_NAMES = ("lost_bytes", "cut_buffers", "records", "bytes", "conn_table_full", "read_failed_bytes",
                 "skipped_bytes", "lost_records")

_HDR = struct.Struct("<QQQQIIIBB2x16s")
HDR_SIZE = _HDR.size   # 64


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
        return self.kind in (K_TLS_WRITE, K_TLS_READ)

    @property
    def is_write(self) -> bool:
        return self.kind in (K_TLS_WRITE, K_SOCK_WRITE)


def decode(buf: bytes) -> RawRecord:
    ts, conn, total, off, pid, tid, ln, kind, flags, comm = _HDR.unpack_from(buf, 0)
    data = bytes(buf[HDR_SIZE:HDR_SIZE + ln])
    return RawRecord(ts, conn, total, off, pid, tid, kind, flags,
                     comm.split(b"\0", 1)[0].decode("utf-8", "replace"), data)
