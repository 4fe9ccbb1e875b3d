"""Raw records -> Chunk / ConnClosed values: naming connections and their direction.

Every connection gets a `ConnId` (agtap.capture.connid). TLS connections are
(tgid, SSL*), or (tgid, *tls.Conn) in a Go program. Syscall connections are (tgid, fd), and what the fd is decides
how its bytes are named:
  - a TCP (or other non-unix) socket: ConnId.sock(tgid, fd), both directions;
  - a pipe or unix socket carrying JSON-RPC (MCP stdio): both processes'
    writes are captured, so the conversation is named after its two
    processes, ConnId.ipc(client, server), the client being the one that spawned
    the other (found by who holds the other end of the channel among the
    writer's ancestors and descendants). The client's writes are requests
    (EGRESS), the server's answers (INGRESS). Reads are not needed (the
    peer's writes carry the same bytes) and are stopped in the kernel;
  - a file, tty or anything else: never a connection (stopped in the kernel).

The server of a conversation is certain only once it writes: when the client
writes first (initialize), the process holding the channel's other end may
still be a wrapper (`sh -c`, npx, uvx) that has not started the server yet, or
a `sleep` before it. So the client's first chunks are held back until the
server's first write names the conversation (or HOLD_NS passes, the channel
closes, the client exits); the server side always joins the client's
conversation, so requests and answers pair whatever the timing.
"""

from __future__ import annotations

import time
from collections import OrderedDict
from dataclasses import dataclass
from typing import Callable

from agtap.capture import procinfo
from agtap.capture.chunk import Chunk, ConnClosed, Direction, Transport
from agtap.capture.connid import ConnId
from agtap.capture.records import (K_CLOSE, K_EXEC, K_EXIT, K_GO_CLOSE, K_H2_START, K_SOCK_READ, S_EGRESS_ONLY,
                                   S_NEVER, F_CUT, RawRecord)

MAX_FD_CACHE = 65536
MAX_PROCS = 32768
HOLD_NS = 30_000_000_000       # longest a client's chunks wait for its server's first write (npx can take 5 s to start it)
MAX_HELD_BYTES = 1 << 20       # per channel: past this the chunks go on under the name found so far


@dataclass(slots=True)
class FdInfo:
    conn: ConnId | None   # None when the fd is not a connection
    transport: Transport
    ipc: bool             # JSON-RPC over a pipe/unix socket: writes only
    server_side: bool     # the writer is the server of the conversation: its writes are INGRESS
    # client side of an IPC conversation: what its server holds (the pipe's read end,
    # the peer socket), and whether the server is still unconfirmed (chunks held)
    peer_target: str = ""
    read_end: bool = False
    provisional: bool = False


@dataclass(slots=True)
class _Held:
    """A client's chunks waiting for its server's first write."""
    chunks: list
    first_ts: int
    size: int = 0


class ConnMapper:
    """Turns RawRecords into pipeline items. `set_state(pid, is_tls, id, state)` updates the kernel map."""

    def __init__(self, set_state: Callable[[int, bool, int, int], None] | None = None,
                 proc_root: str = "/proc"):
        self._set_state = set_state or (lambda *a: None)
        self._proc_root = proc_root
        self._fds: OrderedDict[tuple[int, int], FdInfo] = OrderedDict()
        self._procs: OrderedDict[int, procinfo.ProcessInfo] = OrderedDict()
        self._conns_by_pid: dict[int, set[ConnId]] = {}
        self._ipc_clients: dict[int, set[int]] = {}        # client pid -> its fds on IPC conversations
        self._ipc_servers: dict[int, dict[int, ConnId]] = {}  # client pid -> {server pid: conversation}
        self._held: dict[tuple[int, int], _Held] = {}       # (client pid, fd) -> chunks held back
        self._released: list = []   # chunks the last _resolve_fd let go (they precede its own)
        self.wall_offset_ns = time.time_ns() - time.monotonic_ns()
        self.dropped_reads = 0
        # HTTP/2 connections the kernel walks: kernel key (pid, is_tls, id) -> generation (K_H2_START)
        self._h2_gens: OrderedDict[tuple[int, int, int], int] = OrderedDict()

    # --- processes ---
    def process(self, pid: int) -> procinfo.ProcessInfo:
        info = self._procs.get(pid)
        if info is None:
            info = procinfo.read_process(pid, self._proc_root)
            self._procs[pid] = info
            if len(self._procs) > MAX_PROCS:
                self._procs.popitem(last=False)
        return info

    def h2_gen(self, key: tuple[int, int, int]) -> int | None:
        """The generation the kernel gave this HTTP/2 connection (None: it does not walk it).
        Records are handled in order: a connection that reuses the key later has not
        replaced it yet while the old one's chunks are being decoded."""
        return self._h2_gens.get(key)

    def forget_process(self, pid: int) -> None:
        self._procs.pop(pid, None)
        for key in [k for k in self._h2_gens if k[0] == pid]:
            del self._h2_gens[key]
        self._ipc_clients.pop(pid, None)
        self._ipc_servers.pop(pid, None)
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
                info = FdInfo(ConnId.sock(rec.pid, fd), Transport.SOCKET, False, False)
        elif target.startswith("pipe:"):
            info = self._ipc_info(rec, target, True, procinfo.inode_of(target), Transport.PIPE)
        elif target == "" and rec.data.lstrip()[:1] == b"{":
            # the process is gone before we looked: keep its bytes under a name of their own
            info = FdInfo(ConnId.ipc_fd(rec.pid, fd), Transport.PIPE, True, False)
        elif target == "":
            info = FdInfo(ConnId.sock(rec.pid, fd), Transport.SOCKET, False, False)
        else:
            info = FdInfo(None, Transport.PIPE, False, False)   # a file, a tty: never a connection
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
            return FdInfo(ConnId.ipc_channel(ino), transport, True, False)
        peer, peer_is_ancestor = found
        if peer_is_ancestor:
            return self._server_info(rec, peer, transport)
        # the client's side: join the conversation its server already named, if one did
        self._ipc_clients.setdefault(rec.pid, set()).add(rec.conn_id)
        for server, conn in self._ipc_servers.get(rec.pid, {}).items():
            if procinfo.holds(server, peer_target, read_end=read_end, proc_root=self._proc_root):
                return FdInfo(conn, transport, True, False, peer_target, read_end)
        return FdInfo(ConnId.ipc(rec.pid, peer), transport, True, False, peer_target, read_end, provisional=True)

    def _server_info(self, rec: RawRecord, client: int, transport: Transport) -> FdInfo:
        """The server's side: the conversation of the client's channel that this process reads.

        A client whose chunks are held was waiting for exactly this: its
        conversation is named after this server now. One already named (held
        past HOLD_NS) keeps its name, and this side joins it.
        """
        conn = ConnId.ipc(client, rec.pid)
        for fd in sorted(self._ipc_clients.get(client, ())):
            info = self._fds.get((client, fd))
            if info is None or info.server_side or not info.peer_target:
                continue
            if not procinfo.holds(rec.pid, info.peer_target, read_end=info.read_end, proc_root=self._proc_root):
                continue
            if info.provisional:
                info.conn, info.provisional = conn, False
                self._released += self._release((client, fd))
            else:
                conn = info.conn
            break
        self._ipc_servers.setdefault(client, {})[rec.pid] = conn
        return FdInfo(conn, transport, True, True)

    # --- held chunks ---
    def _release(self, key: tuple[int, int]) -> list:
        """The held chunks of a client channel, under its name as it is now."""
        held = self._held.pop(key, None)
        info = self._fds.get(key)
        if held is None:
            return []
        for c in held.chunks:
            if info is not None:
                c.conn = info.conn
            self._conns_by_pid.setdefault(c.pid, set()).add(c.conn)
        return held.chunks

    def _settle(self, key: tuple[int, int]) -> list:
        """Stop waiting for this channel's server: name it after the deepest holder now."""
        info = self._fds.get(key)
        if info is not None and info.provisional:
            info.provisional = False
            found = procinfo.ipc_peer(key[0], info.peer_target, read_end=info.read_end, proc_root=self._proc_root)
            if found is not None and not found[1]:
                info.conn = ConnId.ipc(key[0], found[0])
        return self._release(key)

    def flush_due(self, now_ns: int) -> list:
        """Chunks held longer than HOLD_NS (call it now and then: the poll loop does)."""
        out: list = []
        for key in [k for k, h in self._held.items() if now_ns - h.first_ts >= HOLD_NS]:
            out += self._settle(key)
        return out

    def flush_all(self) -> list:
        """Every held chunk (the capture stops)."""
        out: list = []
        for key in list(self._held):
            out += self._settle(key)
        return out

    def _settle_pid(self, pid: int) -> list:
        out: list = []
        for key in [k for k in self._held if k[0] == pid]:
            out += self._settle(key)
        return out

    # --- records ---
    def map(self, rec: RawRecord) -> list:
        """Pipeline items for one record (often one Chunk, sometimes none)."""
        if rec.kind == K_EXEC:
            out = self._settle_pid(rec.pid)
            self.forget_process(rec.pid)
            return out
        if rec.kind == K_EXIT:
            out = self._settle_pid(rec.pid)
            conns = self._conns_by_pid.pop(rec.pid, set())
            self.forget_process(rec.pid)
            return out + [ConnClosed(c, rec.ts_ns, "process_exit") for c in sorted(conns)]
        if rec.kind == K_CLOSE:
            self._h2_gens.pop((rec.pid, int(rec.offset), rec.conn_id), None)
            return self._settle((rec.pid, rec.conn_id)) + self._close(rec)
        if rec.kind == K_GO_CLOSE:
            self._h2_gens.pop((rec.pid, int(rec.offset), rec.conn_id), None)
            conn = ConnId.gotls(rec.pid, rec.conn_id)
            if conn not in self._conns_by_pid.get(rec.pid, ()):
                return []   # none of its bytes was delivered (a GET the kernel did not copy)
            return self._closed(rec, conn)
        if rec.kind == K_H2_START:
            self._h2_gens[(rec.pid, int(rec.offset), rec.conn_id)] = rec.total
            if len(self._h2_gens) > MAX_FD_CACHE:
                self._h2_gens.popitem(last=False)
            return []
        before: list = []
        if rec.is_tls:
            conn = (ConnId.gotls if rec.is_go else ConnId.tls)(rec.pid, rec.conn_id)
            transport = Transport.TLS
            direction = Direction.EGRESS if rec.is_write else Direction.INGRESS
            fd = -1
        else:
            self._released = []
            info = self._resolve_fd(rec)
            before = self._released
            if info.conn is None:
                return before
            if info.ipc and rec.kind == K_SOCK_READ:
                self.dropped_reads += 1   # the peer's writes carry these bytes
                return before
            conn, transport, fd = info.conn, info.transport, rec.conn_id
            if info.ipc:
                direction = Direction.INGRESS if info.server_side else Direction.EGRESS
            else:
                direction = Direction.INGRESS if rec.kind == K_SOCK_READ else Direction.EGRESS
        p = self.process(rec.pid)
        chunk = Chunk(conn=conn, direction=direction, ts_ns=rec.ts_ns, wall_ns=rec.ts_ns + self.wall_offset_ns,
                      pid=rec.pid, tid=rec.tid, comm=rec.comm, proc=p.proc or rec.comm, data=rec.data,
                      transport=transport, cut=bool(rec.flags & F_CUT), exe=p.exe, unit=p.unit,
                      container_id=p.container_id, fd=fd)
        if not rec.is_tls and info.provisional:
            key = (rec.pid, rec.conn_id)
            held = self._held.setdefault(key, _Held([], rec.ts_ns))
            held.chunks.append(chunk)
            held.size += len(rec.data)
            return before + (self._settle(key) if held.size > MAX_HELD_BYTES else [])
        self._conns_by_pid.setdefault(rec.pid, set()).add(conn)
        return before + [chunk]

    def _close(self, rec: RawRecord) -> list:
        tls = ConnId.tls(rec.pid, rec.conn_id)
        if rec.conn_id and tls in self._conns_by_pid.get(rec.pid, ()):
            conn = tls
        else:
            info = self._fds.pop((rec.pid, rec.conn_id), None)
            if info is None or info.conn is None:
                return []
            conn = info.conn
        return self._closed(rec, conn)

    def _closed(self, rec: RawRecord, conn: ConnId) -> list:
        self._conns_by_pid.get(rec.pid, set()).discard(conn)
        return [ConnClosed(conn, rec.ts_ns, "closed")]
