"""Raw records -> Chunk / ConnClosed values: naming connections and their direction.

TLS connections are (tgid, SSL*). Syscall connections are (tgid, fd), and
what the fd is decides how its bytes are named:
  - a TCP (or other non-unix) socket: "sock:<tgid>:<fd>", both directions;
  - a pipe or unix socket carrying JSON-RPC (MCP stdio): both processes'
    writes are captured, so the conversation is named after its two
    processes, "ipc:<client>:<server>", the client being the one that spawned
    the other (found by who holds the other end of the channel among the
    writer's ancestors and descendants). The client's writes are requests
    (EGRESS), the server's answers (INGRESS). Reads are not needed (the
    peer's writes carry the same bytes) and are stopped in the kernel;
  - a file, tty or anything else: never a connection (stopped in the kernel).
"""

from __future__ import annotations

import time
from collections import OrderedDict
from dataclasses import dataclass
from typing import Callable

from agtap.capture import procinfo
from agtap.capture.chunk import Chunk, ConnClosed, Direction, Transport
from agtap.capture.records import (K_CLOSE, K_EXEC, K_EXIT, K_SOCK_READ, K_TLS_READ, K_TLS_WRITE, S_EGRESS_ONLY,
                                   S_NEVER, F_CUT, RawRecord)

MAX_FD_CACHE = 65536
MAX_PROCS = 32768


@dataclass(slots=True)
class FdInfo:
    conn: str             # "" when the fd is not a connection
    transport: Transport
    ipc: bool             # JSON-RPC over a pipe/unix socket: writes only
    server_side: bool     # the writer is the server of the conversation: its writes are INGRESS


class ConnMapper:
    """Turns RawRecords into pipeline items. `set_state(pid, is_tls, id, state)` updates the kernel map."""

    def __init__(self, set_state: Callable[[int, bool, int, int], None] | None = None,
                 proc_root: str = "/proc"):
        self._set_state = set_state or (lambda *a: None)
        self._proc_root = proc_root
        self._fds: OrderedDict[tuple[int, int], FdInfo] = OrderedDict()
        self._procs: OrderedDict[int, procinfo.ProcessInfo] = OrderedDict()
        self._conns_by_pid: dict[int, set[str]] = {}
        self.wall_offset_ns = time.time_ns() - time.monotonic_ns()
        self.dropped_reads = 0

    # --- processes ---
    def process(self, pid: int) -> procinfo.ProcessInfo:
        info = self._procs.get(pid)
        if info is None:
            info = procinfo.read_process(pid, self._proc_root)
            self._procs[pid] = info
            if len(self._procs) > MAX_PROCS:
                self._procs.popitem(last=False)
        return info

    def forget_process(self, pid: int) -> None:
        self._procs.pop(pid, None)
        for key in [k for k in self._fds if k[0] == pid]:
            del self._fds[key]

    # --- fds ---
    def _resolve_fd(self, rec: RawRecord) -> FdInfo:
        key = (rec.pid, rec.conn_id)
        info = self._fds.get(key)
        if info is not None:
            return info
        target = procinfo.fd_target(rec.pid, rec.conn_id, self._proc_root)
        fd = rec.conn_id
        if target.startswith("socket:"):
            ino = procinfo.inode_of(target)
            peer = procinfo.unix_peer(ino)
            jsonrpc = rec.data.lstrip()[:1] in (b"{", b"[")
            if peer is not None and jsonrpc:
                info = self._ipc_info(rec, f"socket:[{peer}]", False, ino, Transport.SOCKET)
            else:
                info = FdInfo(f"sock:{rec.pid}:{fd}", Transport.SOCKET, False, False)
        elif target.startswith("pipe:"):
            info = self._ipc_info(rec, target, True, procinfo.inode_of(target), Transport.PIPE)
        elif target == "" and rec.data.lstrip()[:1] == b"{":
            # the process is gone before we looked: keep its bytes under a name of their own
            info = FdInfo(f"ipc:{rec.pid}:{fd}", Transport.PIPE, True, False)
        elif target == "":
            info = FdInfo(f"sock:{rec.pid}:{fd}", Transport.SOCKET, False, False)
        else:
            info = FdInfo("", Transport.PIPE, False, False)   # a file, a tty: never a connection
            self._set_state(rec.pid, False, fd, S_NEVER)
        if info.ipc:
            self._set_state(rec.pid, False, fd, S_EGRESS_ONLY)
        self._fds[key] = info
        if len(self._fds) > MAX_FD_CACHE:
            self._fds.popitem(last=False)
        return info

    def _ipc_info(self, rec: RawRecord, peer_target: str, read_end: bool, ino: int,
                  transport: Transport) -> FdInfo:
        """Name a JSON-RPC conversation over a pipe or socketpair after its two processes.

        The peer is whoever holds the other end (the pipe's read end, the peer
        socket). The ancestor of the two is the client (it spawned the server):
        its writes are requests (EGRESS), the server's are answers (INGRESS).
        """
        found = procinfo.ipc_peer(rec.pid, peer_target, read_end=read_end, proc_root=self._proc_root)
        if found is None:
            return FdInfo(f"ipc:{ino}", transport, True, False)
        peer, peer_is_ancestor = found
        if peer_is_ancestor:
            return FdInfo(f"ipc:{peer}:{rec.pid}", transport, True, True)
        return FdInfo(f"ipc:{rec.pid}:{peer}", transport, True, False)

    # --- records ---
    def map(self, rec: RawRecord) -> list:
        """Pipeline items for one record (often one Chunk, sometimes none)."""
        if rec.kind == K_EXEC:
            self.forget_process(rec.pid)
            return []
        if rec.kind == K_EXIT:
            conns = self._conns_by_pid.pop(rec.pid, set())
            self.forget_process(rec.pid)
            return [ConnClosed(c, rec.ts_ns, "process_exit") for c in sorted(conns)]
        if rec.kind == K_CLOSE:
            return self._close(rec)
        if rec.is_tls:
            conn, transport = f"tls:{rec.pid}:{rec.conn_id:x}", Transport.TLS
            direction = Direction.EGRESS if rec.kind == K_TLS_WRITE else Direction.INGRESS
            fd = -1
        else:
            info = self._resolve_fd(rec)
            if not info.conn:
                return []
            if info.ipc and rec.kind == K_SOCK_READ:
                self.dropped_reads += 1   # the peer's writes carry these bytes
                return []
            conn, transport, fd = info.conn, info.transport, rec.conn_id
            if info.ipc:
                direction = Direction.INGRESS if info.server_side else Direction.EGRESS
            else:
                direction = Direction.INGRESS if rec.kind == K_SOCK_READ else Direction.EGRESS
        self._conns_by_pid.setdefault(rec.pid, set()).add(conn)
        p = self.process(rec.pid)
        return [Chunk(conn=conn, direction=direction, ts_ns=rec.ts_ns, wall_ns=rec.ts_ns + self.wall_offset_ns,
                      pid=rec.pid, tid=rec.tid, comm=rec.comm, proc=p.proc or rec.comm, data=rec.data,
                      transport=transport, cut=bool(rec.flags & F_CUT), exe=p.exe, unit=p.unit,
                      container_id=p.container_id, fd=fd)]

    def _close(self, rec: RawRecord) -> list:
        if rec.conn_id and f"tls:{rec.pid}:{rec.conn_id:x}" in self._conns_by_pid.get(rec.pid, ()):
            conn = f"tls:{rec.pid}:{rec.conn_id:x}"
        else:
            info = self._fds.pop((rec.pid, rec.conn_id), None)
            if info is None or not info.conn:
                return []
            conn = info.conn
        self._conns_by_pid.get(rec.pid, set()).discard(conn)
        return [ConnClosed(conn, rec.ts_ns, "closed")]

    @staticmethod
    def kernel_key(conn: str) -> tuple[int, bool, int] | None:
        """(pid, is_tls, id) of a connection name, for ignore_conn; None for IPC."""
        kind, _, rest = conn.partition(":")
        pid, _, ident = rest.partition(":")
        try:
            if kind == "tls":
                return int(pid), True, int(ident, 16)
            if kind == "sock":
                return int(pid), False, int(ident)
        except ValueError:
            pass
        return None
