"""Stop one thread of another process, leaving its other threads running.

SIGSTOP stops a whole process; a daemon whose event loop is stuck still has
its other threads (the tracer's poll thread, workers) running. ptrace can
stop just one: PTRACE_SEIZE the thread (tid), PTRACE_INTERRUPT it, wait for
the stop; PTRACE_DETACH lets it go on. The daemon's asyncio loop runs in its
main thread, whose tid is the pid. Needs CAP_SYS_PTRACE (the tests run as root).
"""

from __future__ import annotations

import contextlib
import ctypes
import os

PTRACE_DETACH = 17
PTRACE_SEIZE = 0x4206
PTRACE_INTERRUPT = 0x4207
WALL = 0x40000000          # __WALL: wait for a thread that is not our child

_libc = ctypes.CDLL(None, use_errno=True)
_libc.ptrace.argtypes = [ctypes.c_long, ctypes.c_long, ctypes.c_void_p, ctypes.c_void_p]
_libc.ptrace.restype = ctypes.c_long


def _ptrace(req: int, tid: int) -> None:
    if _libc.ptrace(req, tid, None, None) == -1:
        e = ctypes.get_errno()
        raise OSError(e, f"ptrace({req:#x}, {tid}): {os.strerror(e)}")


def thread_state(pid: int, tid: int) -> str:
    """The thread's state letter from /proc (R, S, t = stopped by a tracer ...)."""
    with open(f"/proc/{pid}/task/{tid}/stat") as f:
        return f.read().rsplit(")", 1)[1].split()[0]


@contextlib.contextmanager
def thread_stopped(pid: int, tid: int | None = None):
    """Inside the block, thread `tid` (default: the main thread) of `pid` is stopped."""
    tid = pid if tid is None else tid
    _ptrace(PTRACE_SEIZE, tid)
    try:
        _ptrace(PTRACE_INTERRUPT, tid)
        os.waitpid(tid, WALL)
        assert thread_state(pid, tid) == "t", thread_state(pid, tid)
        yield
    finally:
        _ptrace(PTRACE_DETACH, tid)
