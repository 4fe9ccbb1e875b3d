"""Which processes get the TLS data probes (per-process probe scope): the policy, without BCC.

A process is watched when
  1. the filter names it (-p, -c, `agtapctl filter`); while a filter is set, only those;
  2. it execs a known agent runtime (`agent_runtimes`: shell patterns matched against
     the executable's file name, the process name and the libraries the executable
     links, DT_NEEDED: libcurl.so* catches curl), or an executable whose TLS agtap can
     probe only by executable (BoringSSL located by its error sites, Go);
  3. it starts a TLS client connection (the sentinel, in the kernel: bpf/ssl.c);
  4. its parent is watched (fork), or it was already running at start and matches 1/2.
A process that only accepts TLS connections is watched only when the filter names it.
"""

from __future__ import annotations

import fnmatch
import os

from agtap.capture.elfsyms import needed
from agtap.capture.procfiles import key_of
from agtap.config import DEFAULT_RUNTIMES   # name patterns: the executable's file name, the process name



def _read(path: str) -> str:
    try:
        with open(path) as f:
            return f.read().strip()
    except OSError:
        return ""


def comm_of(pid: int, proc_root: str = "/proc") -> str:
    return _read(f"{proc_root}/{pid}/comm")


def exe_path(pid: int, proc_root: str = "/proc") -> str:
    try:
        exe = os.readlink(f"{proc_root}/{pid}/exe")
    except OSError:
        return ""
    return exe.removesuffix(" (deleted)")


def is_process(pid: int, proc_root: str = "/proc") -> bool:
    """A process (thread group leader), not one more thread of one (/proc lists both by id)."""
    for line in _read(f"{proc_root}/{pid}/status").splitlines():
        if line.startswith("Tgid:"):
            return line.split()[1] == str(pid)
    return False


def thread_comms(pid: int, proc_root: str = "/proc") -> set[str]:
    """The names of a process and of each of its threads (-c matches either)."""
    names = {comm_of(pid, proc_root)}
    try:
        tids = os.listdir(f"{proc_root}/{pid}/task")
    except OSError:
        tids = []
    for tid in tids:
        names.add(_read(f"{proc_root}/{pid}/task/{tid}/comm"))
    names.discard("")
    return names


class WatchPolicy:
    def __init__(self, runtimes: list[str] | tuple[str, ...] = DEFAULT_RUNTIMES, proc_root: str = "/proc"):
        self.runtimes = tuple(runtimes)
        self.proc_root = proc_root
        self.pids: set[int] = set()
        self.comms: set[str] = set()
        self._needed: dict[tuple, list[str]] = {}   # (dev, inode) of an executable -> its DT_NEEDED

    @property
    def filtered(self) -> bool:
        return bool(self.pids or self.comms)

    def set_filter(self, pids: list[int], comms: list[str]) -> None:
        self.pids = {int(p) for p in pids}
        self.comms = {str(c)[:15] for c in comms}

    def is_runtime(self, pid: int) -> bool:
        names = {os.path.basename(exe_path(pid, self.proc_root)), comm_of(pid, self.proc_root)} - {""}
        names.update(self.libraries(pid))
        return any(fnmatch.fnmatchcase(n, pat) for n in names for pat in self.runtimes)

    def is_runtime_file(self, path: str, opened: str = "") -> bool:
        """Would a process running `path` be a runtime (at exec, before it runs it): by the file's
        name and DT_NEEDED, and the process name the exec gives it (the file name, 15 bytes).
        `opened`: where to read it (else `path`)."""
        name = os.path.basename(path)
        names = {name, name[:15]} - {""}
        names.update(self._libraries_of(opened or path))
        return any(fnmatch.fnmatchcase(n, pat) for n in names for pat in self.runtimes)

    def named_at_exec(self, pid: int, path: str) -> bool:
        """Selected by the filter once it has exec'd `path` (its process name becomes the file name)."""
        return pid in self.pids or os.path.basename(path)[:15] in self.comms

    def libraries(self, pid: int) -> list[str]:
        """The DT_NEEDED names of the process's executable (read once per file)."""
        return self._libraries_of(f"{self.proc_root}/{pid}/exe")

    def _libraries_of(self, path: str) -> list[str]:
        """The DT_NEEDED names of the file at `path`, read once per (dev, inode)."""
        k = key_of(path)
        if k is None:
            return []
        if k not in self._needed:
            if len(self._needed) > 4096:
                self._needed.clear()
            self._needed[k] = needed(path)
        return self._needed[k]

    def named(self, pid: int) -> bool:
        """Selected by the filter (as bpf/common.h's selected(): the pid, or a process or thread name)."""
        return pid in self.pids or bool(self.comms and thread_comms(pid, self.proc_root) & self.comms)

    def allowed(self, pid: int) -> bool:
        """May this process be watched at all: with a filter set, only what it names."""
        return not self.filtered or self.named(pid)

    def at_start(self, pid: int, by_exe: bool = False) -> str:
        """Why a running process is watched when capture starts or the filter changes ("" = not).
        by_exe: its executable is probed by executable (BoringSSL, Go)."""
        if self.filtered:
            return "filter" if self.named(pid) else ""
        if by_exe:
            return "executable"
        return "runtime" if self.is_runtime(pid) else ""
