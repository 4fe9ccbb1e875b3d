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
import logging
import os
import threading
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

from agtap.capture import perfevent, refctr

log = logging.getLogger("agtap.capture.probes")
HOST = -1   # pid of a host-wide probe


class ProbeLimit(Exception):
    """Attaching would go past the table's limit."""


class PointRefused(OSError):
    """A probe point cannot be probed per process here (its tracefs event or holder was refused)."""


class _Refused(OSError):
    def __init__(self, err: int, msg: str, *, created: bool):
        super().__init__(err, msg)
        self.created = created   # the tracefs event was made (registering its uprobe was refused)


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
        self._held: dict[tuple[str, int], int] = {}   # (path, file offset) -> the counter offset learned there
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
            ev = self._events[(path, p)] = self._make_event_learning(path, p, self._offset(path, p.addr))
        return ev[1]

    def _make_event_learning(self, path: str, p: Probe, off: int) -> tuple[str, int, int]:
        """Make the event with no reference counter; if the kernel refuses it there (EINVAL), with
        the one it holds at that point (refctr.py), each offset tried once."""
        ref, tried, swept = self._held.get((path, off), 0), set(), False
        while True:
            tried.add(ref)
            try:
                ev = self._make_event(path, p, off, ref)
            except _Refused as e:
                if e.errno != errno.EINVAL:
                    raise PointRefused(e.errno, f"cannot make a probe at {p.addr:#x}: {e.strerror}") from None
                if not e.created and not swept:
                    swept = True
                    if remove_orphans(path, off, ref):
                        continue   # libbcc's leftovers made tracefs refuse it: once more without them
                try:
                    held = refctr.held_offset(path, off, ref, perfevent.tracefs(), created=e.created)
                except (refctr.Unlearned, OSError) as u:
                    raise PointRefused(errno.EINVAL, refused_line(path, off, ref, u)) from None
                if held in tried:
                    others = ", ".join(f"{g}/{n} ({r:#x})" for g, n, r in refctr.events_at(perfevent.tracefs(), path, off)
                                       if r != ref)
                    raise PointRefused(errno.EINVAL, refused_line(path, off, ref, "the kernel's uprobe there and tracefs "
                                                                  f"events of running tracers hold different offsets: "
                                                                  f"{others or hex(held)}"))
                ref = held
                continue
            if ref and (path, off) not in self._held:
                self._held[(path, off)] = ref
                log.info("%s at %#x: the kernel holds the probe point with reference counter offset %#x "
                         "(another tracer's, or a uprobe it leaked); probing with it", path, off, ref)
            return ev

    def _make_event(self, path: str, p: Probe, off: int, ref: int = 0) -> tuple[str, int, int]:
        from bcc import BPF
        name = f"{'r' if p.ret else 'p'}{os.getpid()}_{next(self._serial)}"
        try:
            event_id = perfevent.create_event(name, path, off, p.ret, ref)
        except OSError as e:
            raise _Refused(e.errno, str(e), created=False) from None
        try:
            holder = perfevent.open_event(event_id, os.getpid(), inherit=False)   # registers the uprobe
        except OSError as e:
            perfevent.remove_event(name)
            raise _Refused(e.errno, e.strerror or str(e), created=True) from None
        try:
            perfevent.set_bpf(holder, self._bpf.load_func(p.fn.encode(), BPF.KPROBE).fd)
        except OSError as e:
            os.close(holder)
            perfevent.remove_event(name)
            raise _Refused(None, f"attaching the program: {e}", created=True) from None
        return name, event_id, holder

    def _open(self, path: str, p: Probe, pid: int) -> tuple[bytes, int]:
        if pid != HOST:
            return b"", perfevent.open_event(self._event(path, p), pid, inherit=True)
        return attach_host(self._bpf, path, p.addr, p.fn, ret=p.ret, held=self._held), BCC_OWNED

    def prepare(self, path: str, probes: list[Probe]) -> int:
        """Make the per-process events of `path`'s probes now, while `path` still opens the file:
        a path through /proc/PID/ (a container's libssl) goes with that process, while an event,
        once made, holds the inode for every later process. All or none; raises ProbeLimit or
        PointRefused as attach does. Returns how many were made."""
        with self._lock:
            todo = list(dict.fromkeys(p for p in probes if (path, p) not in self._events))
            if len(self._fds) + len(self._events) + len(todo) > self.limit:
                raise ProbeLimit(f"{len(self._fds) + len(self._events)} uprobes held, {len(todo)} "
                                 f"more would pass the limit {self.limit}")
            try:
                for p in todo:
                    self._event(path, p)
            except OSError:
                for p in todo:
                    ev = self._events.pop((path, p), None)
                    if ev is not None:
                        os.close(ev[2])
                        perfevent.remove_event(ev[0])
                raise
            return len(todo)

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


def refused_line(path: str, off: int, ref: int, why) -> str:
    return (f"the kernel refused a probe at {off:#x} of {path} (EINVAL, reference counter offset {ref:#x}): "
            f"another tracer, or a uprobe the kernel leaked, holds that point with another offset "
            f"(dmesg: 'ref_ctr_offset mismatch'; `agtap doctor` says more), and it cannot be used: {why}")


def remove_orphans(path: str, off: int, ref: int) -> int:
    """Remove the uprobe events libbcc left at the point for processes that run no more, with a
    counter offset other than `ref` (tracefs refuses a new event beside them); how many."""
    n = 0
    for group, event, held in refctr.events_at(perfevent.tracefs(), path, off):
        if held != ref and refctr.orphaned(group, event):
            n += perfevent.remove_event(event, group)
    if n:
        log.info("%s at %#x: removed %d uprobe events left by BCC processes that run no more", path, off, n)
    return n


def _libbcc_attach(b, fn_fd: int, ret: bool, ev_name: bytes, bpath: bytes, off: int, ref: int) -> int:
    """libbcc's bpf_attach_uprobe with its real prototype (seven arguments); the fd, or -1.
    libbcc tries the uprobe PMU, then a tracefs event it does not remove when that fails too:
    removed here, so it cannot make tracefs refuse agtap's events at the point."""
    global _bpf_attach_uprobe
    if _bpf_attach_uprobe is None:
        f = ctypes.CDLL("libbcc.so.0", use_errno=True).bpf_attach_uprobe   # a handle of its own: BCC's is left as is
        f.restype = ctypes.c_int
        f.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_char_p, ctypes.c_char_p, ctypes.c_ulonglong, ctypes.c_int,
                      ctypes.c_uint32]
        _bpf_attach_uprobe = f
    fd = _bpf_attach_uprobe(fn_fd, 1 if ret else 0, ev_name, bpath, off, -1, ref)
    if fd < 0:
        perfevent.remove_event(ev_name.decode(), "uprobes")
    return fd


def attach_host(b, path: str, addr: int, fn_name: str, *, ret: bool, held: dict | None = None) -> bytes:
    """A host-wide probe, as BCC's attach_uprobe/attach_uretprobe makes it but calling libbcc with
    its real prototype; returns BCC's event name (the BPF object holds the fd, so cleanup() works).

    BCC 0.26's Python binding declares six arguments for bpf_attach_uprobe, which takes
    seven: the last, the uprobe's reference counter ("semaphore") offset, is then whatever
    the stack holds (6 on this machine). agtap passes 0 (no counter) and, where the kernel
    refuses that because it holds the point with another offset, the offset it holds
    (refctr.py); it never calls BCC's own attach_uprobe. Raises PointRefused when the held
    offset cannot be learned. `held`: (path, file offset) -> offsets learned before, tried
    first (and the one learned here is added)."""
    from bcc import BPF
    bpath, off = BPF._check_path_symbol(path.encode(), b"", addr, -1)
    b._check_probe_quota(1)
    fn = b.load_func(fn_name.encode(), BPF.KPROBE)
    ev_name = b._get_uprobe_evname(b"r" if ret else b"p", bpath, off, -1)
    known = (held or {}).get((path, off), 0)
    fd = _libbcc_attach(b, fn.fd, ret, ev_name, bpath, off, known)
    if fd < 0 and known:
        fd = _libbcc_attach(b, fn.fd, ret, ev_name, bpath, off, 0)   # the point is held so no more: start from none
    if fd < 0:
        err = ctypes.get_errno()
        try:
            ref = refctr.held_offset(path, off, 0, perfevent.tracefs(), created=True)
        except (refctr.Unlearned, OSError) as u:
            raise PointRefused(err or errno.EINVAL, refused_line(path, off, 0, u)) from None
        if ref == 0:
            raise PointRefused(err, f"cannot attach a probe at {off:#x} of {path}: {os.strerror(err)}")
        fd = _libbcc_attach(b, fn.fd, ret, ev_name, bpath, off, ref)
        if fd < 0:
            err = ctypes.get_errno()
            raise PointRefused(err, refused_line(path, off, ref, f"with {ref:#x} too: {os.strerror(err)}"))
        log.info("%s at %#x: the kernel holds the probe point with reference counter offset %#x "
                 "(another tracer's, or a uprobe it leaked); probing with it", path, off, ref)
        if held is not None:
            held[(path, off)] = ref
    b._add_uprobe_fd(ev_name, fd)
    return ev_name
