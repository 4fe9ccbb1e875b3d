"""Hold a starting process at the open of a probed file until its probes are live (fanotify).

Per-process probes are attached from userspace, after the kernel said a runtime exec'd:
~10-40 ms later, or seconds while another tracer holds the kernel's event_mutex. A
client that connects to a near server calls in less (curl: ~5 ms from exec to its first
request), so its first call raced the attach and was lost.

The gate closes that race with fanotify permission events, the kernel's own way of
making an opener wait for a decision (what on-access virus scanners use): agtap marks
each probed library (libssl) for FAN_OPEN_PERM and each probed executable (node, bun,
a Go binary) for FAN_OPEN_EXEC_PERM. A process opening one (the dynamic loader mapping
libssl, Python importing ssl, an exec of node) waits in open() while agtap decides; if
it is to be watched, its probes are attached first (the kernel writes the breakpoints
when it maps the file, a moment later), then the open is allowed. Nothing is ever
denied, nothing is visible to the process but a slower open, and only opens of those
few files wait; a process not to be watched is let through at once.

Bounds: the wait is at most `hold_ms` (then the open is allowed and the process counted
in `hold_timeouts`; its first call may then be late, and is counted in late_attach when
the sentinel saw it). If agtap dies, the kernel allows every pending and later open (the
marks go with the fanotify file). agtap's own opens are let through at once.
"""

from __future__ import annotations

import ctypes
import logging
import os
import select
import struct
import subprocess
import threading
import time
from typing import Callable

FAN_CLOEXEC, FAN_NONBLOCK, FAN_CLASS_CONTENT, FAN_UNLIMITED_MARKS = 0x1, 0x2, 0x4, 0x20
FAN_MARK_ADD, FAN_MARK_REMOVE, FAN_MARK_IGNORED_MASK, FAN_MARK_FILESYSTEM = 0x1, 0x2, 0x20, 0x100
FAN_OPEN_PERM, FAN_OPEN_EXEC_PERM = 0x10000, 0x40000
FAN_ALLOW = 0x1
FAN_Q_OVERFLOW = 0x4000
AT_FDCWD = -100
METADATA = struct.Struct("=IBBHQii")   # struct fanotify_event_metadata (24 bytes)
RESPONSE = struct.Struct("=iI")        # struct fanotify_response

_libc = ctypes.CDLL(None, use_errno=True)
_libc.fanotify_mark.argtypes = [ctypes.c_int, ctypes.c_uint, ctypes.c_uint64, ctypes.c_int, ctypes.c_char_p]

# decide(pid, key, path, at_exec, done, opened=): called on the gate's thread for a process to be held;
# it must call done() once the process may go on (at once, or once its probes are live), and
# returns True when the execs of that file need never be held again (of no interest)
Decide = Callable[..., bool]
# where executables live: the filesystems whose execs are held (not proc, sysfs, cgroup...)
EXEC_FS = frozenset({"ext2", "ext3", "ext4", "xfs", "btrfs", "tmpfs", "overlay", "zfs", "f2fs", "bcachefs",
                     "squashfs", "erofs", "vfat", "fuseblk"})


class GateUnavailable(OSError):
    """The kernel has no fanotify permission events here (CONFIG_FANOTIFY_ACCESS_PERMISSIONS), or no CAP_SYS_ADMIN."""


class OpenGate:
    def __init__(self, decide: Decide, log: logging.Logger, hold_ms: int = 1000):
        self._decide = decide
        self.log = log
        self.hold_s = hold_ms / 1000
        self.held = 0            # opens that waited for probes to be attached
        self.hold_timeouts = 0   # ... and were let through before they were
        self.hold_ms: list[float] = []   # how long each held open waited (the last 1000)
        self._marked: set[tuple[str, int]] = set()
        self.filesystems = 0     # filesystems whose execs are held (mark_filesystems)
        self.ignored = 0         # executables whose execs are no longer held (of no interest)
        fd = _libc.fanotify_init(FAN_CLOEXEC | FAN_NONBLOCK | FAN_CLASS_CONTENT | FAN_UNLIMITED_MARKS,
                                 os.O_RDONLY | os.O_LARGEFILE | os.O_CLOEXEC)
        if fd < 0:
            e = ctypes.get_errno()
            raise GateUnavailable(e, f"fanotify_init: {os.strerror(e)}")
        self._fd = fd
        # agtap's own children: a vfork parent keeps the GIL until its child has exec'd, so a
        # child exec'ing a held executable would wait for this thread, which waits for the GIL:
        # spawn with fork (the parent returns at once) from now on
        subprocess._USE_VFORK = False
        self._wake_r, self._wake_w = os.pipe2(os.O_CLOEXEC | os.O_NONBLOCK)
        self._thread = threading.Thread(target=self._run, name="agtap-gate", daemon=True)
        self._closing = False
        self._thread.start()

    def mark(self, path: str, at_exec: bool) -> bool:
        """Hold the opens of `path` (at_exec: only its opens for exec). False if the kernel refused."""
        mask = FAN_OPEN_EXEC_PERM if at_exec else FAN_OPEN_PERM
        if (path, mask) in self._marked:
            return True
        if self._fd < 0:
            return False   # the gate stopped
        # an ignore mark set when the file looked of no interest would hide its execs: gone (if any)
        _libc.fanotify_mark(self._fd, FAN_MARK_REMOVE | FAN_MARK_IGNORED_MASK, FAN_OPEN_EXEC_PERM, AT_FDCWD,
                            path.encode())
        if _libc.fanotify_mark(self._fd, FAN_MARK_ADD, mask, AT_FDCWD, path.encode()) < 0:
            e = ctypes.get_errno()
            self.log.warning("cannot hold the opens of %s until its probes are live (fanotify_mark: %s): a "
                             "process that starts and calls at once may have its first call unseen", path,
                             os.strerror(e))
            return False
        self._marked.add((path, mask))
        return True

    def mark_filesystems(self, mountinfo: str = "/proc/self/mountinfo") -> int:
        """Hold every exec on the local filesystems (FAN_MARK_FILESYSTEM): an executable not seen
        before (a Go program run for the first time) waits while agtap looks at it. Each file
        judged of no interest gets an ignore mark, so its later execs are not held: the kernel
        lets them through without asking. How many filesystems were marked."""
        seen: set[int] = set()
        try:
            lines = open(mountinfo).read().splitlines()
        except OSError:
            return 0
        for line in lines:
            left, _, right = line.partition(" - ")
            fields = left.split()
            if len(fields) < 6 or not right or right.split()[0] not in EXEC_FS or "noexec" in fields[5].split(","):
                continue
            mnt = fields[4].replace("\\040", " ")
            try:
                dev = os.stat(mnt).st_dev
            except OSError:
                continue
            if dev in seen:
                continue
            seen.add(dev)
            if _libc.fanotify_mark(self._fd, FAN_MARK_ADD | FAN_MARK_FILESYSTEM, FAN_OPEN_EXEC_PERM, AT_FDCWD,
                                   mnt.encode()) < 0:
                seen.discard(dev)
                self.log.info("cannot hold the execs on %s (%s): a program there agtap has not seen run is "
                              "found at its exec, not before", mnt, os.strerror(ctypes.get_errno()))
        self.filesystems = len(seen)
        return self.filesystems

    def close(self) -> None:
        """Stop holding (the kernel allows whatever still waits once the fanotify file is closed)."""
        self._closing = True
        try:
            os.write(self._wake_w, b"x")
        except OSError:
            pass
        self._thread.join(timeout=5)   # it closes the fanotify file as it ends
        for fd in (self._wake_r, self._wake_w):
            try:
                os.close(fd)
            except OSError:
                pass

    # --- the gate's thread: never blocks on a decision, so agtap's own opens always pass ---
    def _run(self) -> None:
        try:
            self._serve()
        except BaseException:
            self.log.exception("the open gate stopped: starting processes are no longer held")
        finally:
            # without this thread the kernel would keep every opener of a marked file waiting: once
            # the fanotify file is closed it lets them all through, and holds no more
            try:
                os.close(self._fd)
            except OSError:
                pass
            self._fd = -1

    def _serve(self) -> None:
        me = os.getpid()
        poller = select.poll()
        poller.register(self._fd, select.POLLIN)
        poller.register(self._wake_r, select.POLLIN)
        held: list[tuple[int, threading.Event, float]] = []   # (event fd, its decision, since)
        while not self._closing:
            timeout = None
            if held:
                timeout = max(0, int((min(t0 for _, _, t0 in held) + self.hold_s - time.monotonic()) * 1000) + 1)
            poller.poll(timeout)
            try:
                os.read(self._wake_r, 4096)
            except BlockingIOError:
                pass
            try:
                buf = os.read(self._fd, 64 * METADATA.size)
            except BlockingIOError:
                buf = b""
            except OSError as e:
                if not self._closing:
                    self.log.error("the open gate stopped (%s): starting processes are no longer held", e)
                for fd, _, _ in held:
                    self._allow(fd)
                return
            for off in range(0, len(buf), METADATA.size):
                _, _, _, _, mask, fd, pid = METADATA.unpack_from(buf, off)
                if mask & FAN_Q_OVERFLOW or fd < 0:
                    continue
                done = None if pid == me else self._ask(fd, pid, bool(mask & FAN_OPEN_EXEC_PERM))   # me: reading symbols
                if done is None:
                    self._allow(fd)
                else:
                    held.append((fd, done, time.monotonic()))
            now = time.monotonic()
            still = []
            for fd, done, t0 in held:
                if done.is_set() or now - t0 >= self.hold_s:
                    if not done.is_set():
                        self.hold_timeouts += 1
                    self._allow(fd)
                    self.held += 1
                    self.hold_ms = self.hold_ms[-999:] + [(now - t0) * 1000]
                else:
                    still.append((fd, done, t0))
            held = still
        for fd, _, _ in held:
            self._allow(fd)

    def _ask(self, fd: int, pid: int, at_exec: bool) -> threading.Event | None:
        """The decision about `pid` opening the file behind `fd`: None to let it through now."""
        try:
            st = os.fstat(fd)
            path = os.readlink(f"/proc/self/fd/{fd}")
        except OSError:
            return None
        done = threading.Event()

        def decided() -> None:
            done.set()
            try:
                os.write(self._wake_w, b"x")
            except OSError:
                pass   # closing
        try:
            # `path` names it (as agtap's mount namespace sees it); the fd reads it from any namespace
            of_no_interest = self._decide(pid, (st.st_dev, st.st_ino), path, at_exec, decided,
                                          opened=f"/proc/self/fd/{fd}")
        except Exception:
            self.log.exception("open gate: deciding about pid %d failed; let through", pid)
            return None
        if of_no_interest and at_exec and \
                _libc.fanotify_mark(self._fd, FAN_MARK_ADD | FAN_MARK_IGNORED_MASK, FAN_OPEN_EXEC_PERM, fd, None) == 0:
            self.ignored += 1   # (cleared by the kernel when the file is written: judged again)
        return None if done.is_set() else done

    def _allow(self, fd: int) -> None:
        try:
            os.write(self._fd, RESPONSE.pack(fd, FAN_ALLOW))
        except OSError:
            pass   # the opener is gone
        try:
            os.close(fd)
        except OSError:
            pass
