"""Every uprobe agtap holds, host-wide or for one process: one place that attaches and detaches.

A probe is a BPF program on one address of one file, on entry or on return. Attached
with pid -1 (HOST) it fires in every process that maps the file (the kernel writes the
breakpoint into each): BCC's perf-event uprobe. With a pid, only in that process and the
children it forks from then on (perfevent.py: the kernel writes the breakpoint into
that process's memory alone, also when the process maps the file only later, since a
uprobe belongs to the file's inode).

Each probe held is one perf event file descriptor (and each probe point probed per
process one more, its holder). The table keeps its own count against `limit` (BCC's
quota, 1000 by default, counts only what goes through BPF.attach_uprobe, which this
does not use): `attach` raises ProbeLimit rather than go past it, and the caller
decides what to do instead (scope.py falls back to host-wide probes for that file).

Detaching a host-wide probe waits for RCU grace periods in the kernel (~100-450 ms on a
busy machine): `detach_many` runs those closes concurrently (the ctypes calls release
the GIL). A per-process one closes at once.
"""

from __future__ import annotations

import ctypes
import errno
import itertools
import os
import threading
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

from agtap.capture import perfevent

HOST = -1   # pid of a host-wide probe


class ProbeLimit(Exception):
    """Attaching would go past the table's limit."""


class PointRefused(OSError):
    """A probe point cannot be probed per process here (its tracefs event or holder was refused)."""


@dataclass(frozen=True, slots=True)
class Probe:
    addr: int            # ELF address (a virtual address; BCC turns it into the file offset)
    fn: str              # BPF program
    ret: bool = False    # on return (uretprobe)


class ProbeTable:
    def __init__(self, bpf, limit: int):
        self._bpf = bpf
        self.limit = limit
        self._lock = threading.Lock()
        # (path, pid, probe) -> (event name for BCC's HOST attach or "", fd)
        self._fds: dict[tuple[str, int, Probe], tuple[bytes, int]] = {}
        self._offsets: dict[tuple[str, int], int] = {}    # (path, ELF address) -> file offset
        self._events: dict[tuple[str, Probe], tuple[str, int, int]] = {}   # -> (tracefs name, id, holder fd)
        self._serial = itertools.count()
        perfevent.remove_stale_events()

    def __len__(self) -> int:
        with self._lock:
            return len(self._fds) + len(self._events)

    def has(self, path: str, pid: int) -> bool:
        with self._lock:
            return any(k[0] == path and k[1] == pid for k in self._fds)

    def pids(self) -> set[int]:
        with self._lock:
            return {k[1] for k in self._fds if k[1] != HOST}

    def _offset(self, path: str, addr: int) -> int:
        off = self._offsets.get((path, addr))
        if off is None:
            from bcc import BPF
            _, off = BPF._check_path_symbol(path.encode(), b"", addr, -1)
            self._offsets[(path, addr)] = off
        return off

    def _event(self, path: str, p: Probe) -> int:
        """The tracefs uprobe event of one probe point, made (with its holder) the first time."""
        ev = self._events.get((path, p))
        if ev is None:
            try:
                ev = self._make_event(path, p, self._offset(path, p.addr))
            except OSError as e:
                if e.errno == errno.EINVAL:
                    raise PointRefused(e.errno, f"the kernel refused a probe at {p.addr:#x} (EINVAL): another "
                                       "tracer holds a uprobe there with a reference counter offset (dmesg: "
                                       "'ref_ctr_offset mismatch'; BCC 0.26's Python binding sets one by "
                                       "mistake)") from None
                raise PointRefused(e.errno, f"cannot make a probe at {p.addr:#x}: {e}") from None
            self._events[(path, p)] = ev
        return ev[1]

    def _make_event(self, path: str, p: Probe, off: int) -> tuple[str, int, int]:
        from bcc import BPF
        name = f"{'r' if p.ret else 'p'}{os.getpid()}_{next(self._serial)}"
        event_id = perfevent.create_event(name, path, off, p.ret)
        try:
            holder = perfevent.open_event(event_id, os.getpid(), inherit=False)
            try:
                perfevent.set_bpf(holder, self._bpf.load_func(p.fn, BPF.KPROBE).fd)
            except OSError:
                os.close(holder)
                raise
        except OSError:
            perfevent.remove_event(name)
            raise
        return name, event_id, holder

    def _open(self, path: str, p: Probe, pid: int) -> tuple[bytes, int]:
        if pid != HOST:
            return b"", perfevent.open_event(self._event(path, p), pid, inherit=True)
        return attach_host(self._bpf, path, p.addr, p.fn, ret=p.ret), BCC_OWNED

    def attach(self, path: str, probes: list[Probe], pid: int = HOST) -> int:
        """Attach every probe on `path` for `pid` (HOST: every process). All or none: on a
        failure the ones just attached are closed again and the error is raised. Returns how
        many were attached (probes already held are skipped)."""
        with self._lock:
            todo = [p for p in probes if (path, pid, p) not in self._fds]
            new_events = 0 if pid == HOST else len({p for p in todo if (path, p) not in self._events})
            if len(self._fds) + len(self._events) + len(todo) + new_events > self.limit:
                raise ProbeLimit(f"{len(self._fds) + len(self._events)} uprobes held, {len(todo) + new_events} "
                                 f"more would pass the limit {self.limit}")
            done: list[tuple[str, int, Probe]] = []
            try:
                for p in todo:
                    self._fds[(path, pid, p)] = self._open(path, p, pid)
                    done.append((path, pid, p))
            except BaseException:
                self.detach_many([self._fds.pop(k) for k in done])
                raise
            return len(todo)

    def take(self, *, path: str | None = None, pid: int | None = None) -> list[tuple[bytes, int]]:
        """Forget the probes on `path` and/or for `pid` (None: any); returns them for detach_many."""
        with self._lock:
            keys = [k for k in self._fds if (path is None or k[0] == path) and (pid is None or k[1] == pid)]
            return [self._fds.pop(k) for k in keys]

    def detach(self, *, path: str | None = None, pid: int | None = None) -> int:
        """Detach (and wait for) the probes on `path` and/or for `pid`. Returns how many."""
        taken = self.take(path=path, pid=pid)
        self.detach_many(taken)
        return len(taken)

    def close(self) -> None:
        self.detach_many(self.take())
        with self._lock:
            events, self._events = list(self._events.values()), {}
        self.detach_many([(b"", holder) for _, _, holder in events])
        for name, _, _ in events:
            perfevent.remove_event(name)

    def _close(self, name: bytes, fd: int) -> None:
        if fd != BCC_OWNED:
            os.close(fd)   # a per-process event: no grace period while its holder keeps the uprobe
            return
        try:
            self._bpf.detach_uprobe_event(name)
        except Exception:
            pass   # BPF.cleanup() at stop retries what is left

    def detach_many(self, events: list[tuple[bytes, int]], workers: int = 16) -> None:
        """Close perf events; host-wide ones concurrently (each close waits for the kernel's grace period)."""
        if not events:
            return
        if len(events) <= 8 and all(fd != BCC_OWNED for _, fd in events):
            for e in events:
                self._close(*e)
            return
        with ThreadPoolExecutor(max_workers=min(workers, len(events))) as ex:
            list(ex.map(lambda e: self._close(*e), events))


BCC_OWNED = -1   # the fd of a host-wide probe: BCC's BPF object holds it (detached by its event name)
_bpf_attach_uprobe = None


def attach_host(b, path: str, addr: int, fn_name: str, *, ret: bool) -> bytes:
    """A host-wide probe: BCC's attach_uprobe/attach_uretprobe, calling libbcc with its real
    prototype; returns BCC's event name (the BPF object holds the fd, so cleanup() works).

    BCC 0.26's Python binding declares six arguments for bpf_attach_uprobe, which takes
    seven: the last, the uprobe's reference counter ("semaphore") offset, is then whatever
    the stack holds (6 on this machine; dmesg says "ref_ctr_offset mismatch ... old: 0x6").
    The kernel adds to a 16-bit counter at that offset of the probed file in every process
    that maps it writable there, and refuses (EINVAL) every later probe at the same place
    with another offset. Passed as 0 here: no counter."""
    global _bpf_attach_uprobe
    from bcc import BPF
    if _bpf_attach_uprobe is None:
        f = ctypes.CDLL("libbcc.so.0", use_errno=True).bpf_attach_uprobe   # a handle of its own: BCC's is left as is
        f.restype = ctypes.c_int
        f.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_char_p, ctypes.c_char_p, ctypes.c_ulonglong, ctypes.c_int,
                      ctypes.c_uint32]
        _bpf_attach_uprobe = f
    bpath, off = BPF._check_path_symbol(path.encode(), b"", addr, -1)
    b._check_probe_quota(1)
    fn = b.load_func(fn_name.encode(), BPF.KPROBE)
    ev_name = b._get_uprobe_evname(b"r" if ret else b"p", bpath, off, -1)
    fd = _bpf_attach_uprobe(fn.fd, 1 if ret else 0, ev_name, bpath, off, -1, 0)
    if fd < 0:
        # The kernel keeps one offset per probe point and refuses (EINVAL) another: a tracer built
        # on the binding's call holds this one (or left it behind: seen to outlive every process
        # here). Probing there at all then takes BCC's own call, which passes the same garbage.
        (b.attach_uretprobe if ret else b.attach_uprobe)(name=path.encode(), addr=addr, fn_name=fn_name.encode())
        return ev_name
    b._add_uprobe_fd(ev_name, fd)
    return ev_name
