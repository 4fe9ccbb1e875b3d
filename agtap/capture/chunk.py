"""The values the capture layer hands down: plain data, no BCC.

Everything below `capture` (wire, providers, sinks, service) sees only these
types, so the whole pipeline runs from a recording without root or BPF.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import Enum

from agtap.capture.connid import ConnId


class Direction(str, Enum):
    EGRESS = "egress"    # bytes the traced process wrote (requests, for a client)
    INGRESS = "ingress"  # bytes the traced process read (responses, for a client)


class Transport(str, Enum):
    TLS = "tls"        # plaintext at SSL_read/SSL_write
    SOCKET = "socket"  # plain TCP or unix socket, from syscall tracepoints
    PIPE = "pipe"      # anonymous pipe or fifo (MCP stdio)


@dataclass(slots=True)
class Chunk:
    """One run of bytes that one process wrote to or read from one connection.

    `conn` names the conversation the bytes belong to (see agtap.capture.connid):
    one process's TLS session or socket, or for local IPC carrying JSON-RPC,
    the client:server pair shared by both processes of the conversation.
    """

    conn: ConnId
    direction: Direction
    ts_ns: int            # CLOCK_MONOTONIC ns at the probe
    wall_ns: int          # wall-clock ns (time.time_ns()) of the same instant
    pid: int              # tgid, as seen from the daemon's PID namespace
    tid: int
    comm: str             # thread name at the probe
    proc: str             # process name (main thread's comm)
    data: bytes
    transport: Transport
    cut: bool = False     # the buffer was longer than what was copied
    exe: str = ""         # /proc/PID/exe at first sight
    unit: str = ""        # systemd unit from the cgroup path, e.g. "my-agent.service"
    container_id: str = ""
    fd: int = -1          # the fd for syscall captures, -1 for TLS


@dataclass(slots=True)
class ConnClosed:
    """The connection ended (close(2) on its fd, or its process exited)."""

    conn: ConnId
    ts_ns: int
    reason: str = "closed"     # "closed" | "process_exit" | "evicted"


@dataclass(slots=True)
class CaptureStats:
    """Counters the capture layer keeps; nothing is dropped without a count here.

    Every int field reaches GetStats and the metrics (Controller.get_stats).
    """

    chunks: int = 0             # records delivered by the ring buffer
    bytes: int = 0              # their payload bytes
    lost_records: int = 0       # ring-buffer records that could not be written (buffer full)
    lost_bytes: int = 0         # the payload bytes of those
    cut_records: int = 0        # buffers longer than the per-call cap (the rest not copied)
    read_failed_bytes: int = 0  # bytes the kernel could not read from the process (page not present)
    conn_table_full: int = 0    # connections not tracked: the kernel's conns map was full
    skipped_bytes: int = 0      # bytes on connections marked not interesting (by design: not copied)
    dropped_reads: int = 0      # reads on local IPC not used: the peer's writes carry the same bytes
    h2_connections: int = 0     # HTTP/2 connections captured (client preface seen)
    # BoringSSL binaries (Bun, Claude Code) before their probes went live (first scan of a build):
    boringssl_unprobed_processes: int = 0    # processes that exited before: every call of theirs missed
    boringssl_unprobed_connections: int = 0  # TCP connections open then: calls on them until then missed
    go_unprobed_processes: int = 0    # the same for a Go executable, found at its first exec and located
    go_unprobed_connections: int = 0  # while its first processes ran
    late_attach: int = 0        # processes that wrote TLS application data before their probes were live
    probe_fallbacks: int = 0    # files whose data probes went host-wide: the uprobe limit was reached
    h2_dropped_bytes: int = 0   # DATA payload of HTTP/2 streams of no interest, not copied (by design)
    h2_walks_lost: int = 0      # HTTP/2 connections the kernel stopped walking: copied whole from then on
    h2_late_joins: int = 0      # HTTP/2 connections captured without their preface (opened before agtap started)
    demoted: int = 0            # watched processes demoted: no LLM call after --demote-after-* ignored traffic
    held_opens: int = 0         # opens of a probed file held until the opener's probes were live (opengate.py)
    hold_timeouts: int = 0      # ... let through after --hold-ms before they were: its first call may be late
    watched_processes: int = 0  # gauge: processes with data probes of their own (per-process scope)
    uprobes: int = 0            # gauge: uprobes held (perf event fds)
    targets: list[str] = field(default_factory=list)
    probe_scope: str = ""       # "process" | "host"

    COUNTERS = ("chunks", "bytes", "lost_records", "lost_bytes", "cut_records", "read_failed_bytes",
                "conn_table_full", "skipped_bytes", "dropped_reads", "h2_connections",
                "boringssl_unprobed_processes", "boringssl_unprobed_connections", "go_unprobed_processes",
                "go_unprobed_connections", "late_attach", "probe_fallbacks",
                "h2_dropped_bytes", "h2_walks_lost", "h2_late_joins", "demoted", "held_opens", "hold_timeouts")
    GAUGES = ("watched_processes", "uprobes")   # levels of the running tracer, not summed over restarts
