"""Per-process uprobes that attach and detach in about a millisecond, and follow fork.

BCC's attach_uprobe(pid=N) goes through the kernel's uprobe PMU: every attach creates
a uprobe of its own, and every detach unregisters it, waiting for RCU grace periods
while it holds the kernel's event_mutex (100-450 ms here, during which no other probe
can be attached anywhere: a process exiting delays the probes of one starting). It
also leaves a tracefs event behind when the process exits during the attach.

Here each probe point is one uprobe event, made once in tracefs (uprobe_events, group
"agtap"), with a holder: a perf event on it for agtap's own process, which carries the
BPF program (the kernel runs a uprobe event's programs on every hit its filter lets
through, whichever perf event they were attached by). Watching a process is then one
perf_event_open of that event for the process (the kernel adds the process to the
uprobe's filter and writes the breakpoint into its memory alone, now or when it maps
the file); closing it takes the breakpoint out again, and no grace period is waited
for while the holder keeps the event registered. `inherit` makes the kernel give every
child the process forks (and every thread) an event of its own at the fork itself:
a watched process's children are probed before they run.

Events of an agtap that was killed are removed at the next start (their names carry
the pid of the agtap that made them).
"""

from __future__ import annotations

import ctypes
import os
import re

from agtap.capture import headers

GROUP = "agtap"
PERF_TYPE_TRACEPOINT = 2
PERF_FLAG_FD_CLOEXEC = 8
PERF_EVENT_IOC_ENABLE = 0x2400
PERF_EVENT_IOC_SET_BPF = 0x40042408
SYS_PERF_EVENT_OPEN = 298        # x86_64
ATTR_DISABLED, ATTR_INHERIT = 1 << 0, 1 << 1
NAME = re.compile(r"^[pr](\d+)_\d+$")


class PerfEventAttr(ctypes.Structure):
    """struct perf_event_attr up to config2 (PERF_ATTR_SIZE_VER1: 72 bytes)."""
    _fields_ = [("type", ctypes.c_uint32), ("size", ctypes.c_uint32), ("config", ctypes.c_uint64),
                ("sample_period", ctypes.c_uint64), ("sample_type", ctypes.c_uint64),
                ("read_format", ctypes.c_uint64), ("flags", ctypes.c_uint64),
                ("wakeup_events", ctypes.c_uint32), ("bp_type", ctypes.c_uint32),
                ("config1", ctypes.c_uint64), ("config2", ctypes.c_uint64)]


_libc = ctypes.CDLL(None, use_errno=True)
_libc.syscall.restype = ctypes.c_long


def tracefs() -> str:
    return headers.ensure_tracefs()


def _write_events(line: str) -> None:
    fd = os.open(os.path.join(tracefs(), "uprobe_events"), os.O_WRONLY | os.O_APPEND)
    try:
        os.write(fd, line.encode() + b"\n")
    finally:
        os.close(fd)


def create_event(name: str, path: str, offset: int, ret: bool, ref_ctr: int = 0) -> int:
    """Make the uprobe event agtap/NAME at `offset` of `path` (a file offset), with the
    reference counter offset `ref_ctr` if not 0 (refctr.py: the one the kernel holds there); its id."""
    if any(c.isspace() for c in path) or ":" in path or "(" in path:
        raise OSError(f"cannot name {path!r} in uprobe_events (a blank, colon or parenthesis in it)")
    _write_events(f"{'r' if ret else 'p'}:{GROUP}/{name} {path}:{offset:#x}" + (f"({ref_ctr:#x})" if ref_ctr else ""))
    with open(os.path.join(tracefs(), "events", GROUP, name, "id")) as f:
        return int(f.read())


def remove_event(name: str, group: str = GROUP) -> bool:
    try:
        _write_events(f"-:{group}/{name}")
        return True
    except OSError:
        return False   # gone already, or still open (then removed at the next start)


def remove_stale_events() -> int:
    """Remove the events of agtap processes that no longer run; how many."""
    n = 0
    try:
        names = os.listdir(os.path.join(tracefs(), "events", GROUP))
    except OSError:
        return 0
    for name in names:
        m = NAME.match(name)
        if m and int(m.group(1)) != os.getpid() and not os.path.exists(f"/proc/{m.group(1)}"):
            remove_event(name)
            n += 1
    return n


def open_event(event_id: int, pid: int, *, inherit: bool) -> int:
    """A perf event on tracepoint `event_id` for process `pid` (all CPUs); its fd."""
    attr = PerfEventAttr(type=PERF_TYPE_TRACEPOINT, size=ctypes.sizeof(PerfEventAttr), config=event_id,
                         sample_period=1, wakeup_events=1, flags=ATTR_INHERIT if inherit else 0)
    # syscall() is variadic: every argument as a full long (a 32-bit int leaves the upper half undefined)
    fd = _libc.syscall(ctypes.c_long(SYS_PERF_EVENT_OPEN), ctypes.byref(attr), ctypes.c_long(pid), ctypes.c_long(-1),
                       ctypes.c_long(-1), ctypes.c_long(PERF_FLAG_FD_CLOEXEC))
    if fd < 0:
        e = ctypes.get_errno()
        raise OSError(e, f"perf_event_open for pid {pid}: {os.strerror(e)}")
    return fd


def set_bpf(fd: int, prog_fd: int) -> None:
    import fcntl
    fcntl.ioctl(fd, PERF_EVENT_IOC_SET_BPF, prog_fd)
    fcntl.ioctl(fd, PERF_EVENT_IOC_ENABLE, 0)

