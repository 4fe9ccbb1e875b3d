"""Target discovery: every file whose SSL_read/SSL_write agtap must probe.

Sources: `ldconfig -p` (libssl of the host), the libssl files mapped by
running processes (/proc/*/maps: venvs, vendored OpenSSL, containers), and
executables exporting the symbols statically (node: Debian's, nvm's, official
tarballs'). A new process (exec) is checked for its executable at once and for
newly mapped libraries shortly after (ld.so or dlopen maps them after exec).

Containers (chroot, systemd-nspawn, Docker, Podman) have their own libssl: a
mapped file is named and opened through its process's view (procfiles.py), and
a root filesystem seen for the first time has its libssl files probed at once,
before its first process maps them. A uprobe sits on the inode, not on the path
it was attached by: it outlives the process whose /proc entry named it and
fires in every later process mapping the same file. One file is probed once:
every key it is known by (maps line, stat, overlay layer) is remembered.

An executable without the symbols goes to a worker thread, so that a scan of a
big binary never holds up the poll thread. There it is either a Go program
(its build info says so, whatever its name: golocate.py finds crypto/tls's
(*Conn).Write/Read/Close and their RETs) or one that may link BoringSSL
statically (Bun, Claude Code: boringssl.py); what is located is probed.
"""

from __future__ import annotations

import glob
import logging
import os
import queue
import re
import subprocess
import threading
from dataclasses import dataclass, field
from typing import Callable

from agtap.capture import boringcache, boringssl, golocate, goprobes
from agtap.capture.elfsyms import SSL_SYMBOLS, symbol_addrs
from agtap.capture.procinfo import tcp_connections
from agtap.capture.procfiles import (DELETED, Key, Mapping, key_of, overlay_layers, parse_maps_line, path_keys,
                                     resolve, where_of)

LIBSSL_NAME = re.compile(r"/libssl[^/]*\.so[^/]*$")
# where a root filesystem keeps its libssl (Debian's multiarch dirs, Alpine's /lib, RPM distros' lib64)
ROOT_LIB_GLOBS = ("usr/lib/*-linux-gnu*/libssl.so*", "usr/lib/libssl.so*", "usr/lib64/libssl.so*",
                  "usr/local/lib/libssl.so*", "lib/*-linux-gnu*/libssl.so*", "lib/libssl.so*", "lib64/libssl.so*")


@dataclass(slots=True)
class Target:
    path: str                 # the file as its process names it (the host's path for host files)
    symbols: dict[str, int] = field(default_factory=dict)   # name -> ELF address
    opened: str = ""          # the path agtap reads and attaches by ("" = path)
    pid: int = 0              # the process it was found in (0: ldconfig)
    where: str = "host"       # "host", "container ID", "root DIR", "mount namespace N"

    @property
    def usable(self) -> bool:
        return set(SSL_SYMBOLS) <= self.symbols.keys() or {"SSL_write", "SSL_read"} <= self.symbols.keys()

    def describe(self) -> str:
        """One line for logs, doctor and the D-Bus Targets list."""
        if self.where == "host":
            return self.path
        via = f", via {self.opened}" if self.opened and self.opened != self.path else ""
        return f"{self.path} [{self.where}, pid {self.pid}{via}]"


def ldconfig_libssl() -> list[str]:
    try:
        out = subprocess.run(["ldconfig", "-p"], capture_output=True, text=True, timeout=10).stdout
    except (OSError, subprocess.SubprocessError):
        out = ""
    paths = []
    for line in out.splitlines():
        if "=>" in line and "libssl" in line.split("=>")[0]:
            paths.append(line.split("=>", 1)[1].strip())
    return paths


def mapped_files(pid: int, proc_root: str = "/proc", *, exe: str = "") -> list[Mapping]:
    """The distinct libssl files `pid` maps, and its executable (named `exe`) if given."""
    out: dict[Key, Mapping] = {}
    try:
        with open(f"{proc_root}/{pid}/maps") as f:
            for line in f:
                m = parse_maps_line(line)
                if m and m.key not in out and (LIBSSL_NAME.search(m.path) or (exe and m.path == exe)):
                    out[m.key] = m
    except OSError:
        pass
    return list(out.values())


def all_pids(proc_root: str = "/proc") -> list[int]:
    return [int(d) for d in os.listdir(proc_root) if d.isdigit()]


def exe_of(pid: int, proc_root: str = "/proc") -> str:
    try:
        exe = os.readlink(f"{proc_root}/{pid}/exe")
    except OSError:
        return ""
    return exe[:-len(DELETED)] if exe.endswith(DELETED) else exe


class TargetSet:
    """Keeps the attached files; `attach(path, target)` does the probing of OpenSSL/BoringSSL,
    `attach_go(path, probes)` that of a Go executable (goprobes.plan; BCC, in the tracer)."""

    def __init__(self, attach: Callable[[str, Target], None], log: logging.Logger,
                 proc_root: str = "/proc", cache_dir: str | None = None,
                 attach_go: Callable[[str, list[goprobes.GoProbe]], None] | None = None):
        self._attach = attach
        self._attach_go = attach_go      # None: Go executables are not looked at
        self._log = log
        self._proc_root = proc_root
        self._cache_dir = cache_dir      # None: no BoringSSL search
        self.boringssl: dict[str, boringcache.Verdict] = {}   # described path -> verdict, by the worker
        self.go: dict[str, str] = {}     # described path -> how its crypto/tls was found, or why not
        # calls that BoringSSL binaries made before their probes went live (see _count_unprobed)
        self.unprobed_processes = 0     # ran the binary and exited before: every call of theirs missed
        self.unprobed_connections = 0   # TCP connections open then: calls on them before then missed
        self.go_unprobed_processes = 0     # the same for Go executables (found at their first exec,
        self.go_unprobed_connections = 0   # located while their first processes ran)
        self._pending: dict[Key, set[int]] = {}   # a queued binary's keys -> the pids seen running it
        self._pending_lock = threading.Lock()
        self._locating: dict[Key, threading.Event] = {}   # a queued executable's keys -> set when looked at
        self._work: queue.Queue[tuple[Target, str, set[Key]] | None] = queue.Queue()
        self._worker: threading.Thread | None = None
        self._closed = threading.Event()
        self._seen: set[Key] = set()      # every key of every file looked at
        self._roots: set[Key] = set()     # root directories whose libssl files were looked at
        self.targets: list[Target] = []       # attached
        self.unusable: list[Target] = []      # libssl files (or executables with some) lacking the SSL functions
        self.failed: dict[str, str] = {}

    @property
    def attached(self) -> list[str]:
        return [t.describe() for t in self.targets]

    def consider(self, path: str, *, exe: bool = False) -> bool:
        """Look at one host file (by its path); attach if it exports the SSL functions."""
        if not path or path.endswith(DELETED):
            return False
        keys = path_keys(path)
        return bool(keys) and self._consider(Target(path), keys, exe=exe)

    def examine(self, path: str) -> threading.Event | None:
        """Look at an executable a process is about to run (held at its exec by the open gate):
        None when that is done (attached, or nothing to probe); else an Event the locate worker
        sets once it is through with the file (Go, BoringSSL)."""
        keys = path_keys(path)
        if not keys:
            return None
        if not keys & self._seen:
            self._consider(Target(path), keys, exe=True)
        with self._pending_lock:
            return next((self._locating[k] for k in keys if k in self._locating), None)

    def consider_mapping(self, pid: int, m: Mapping, *, exe: bool = False) -> bool:
        """Look at one file a process maps, through the process's own view of it."""
        if m.key in self._seen:
            if exe:
                self._note_pending(pid, {m.key})
            return False
        opened, keys = resolve(pid, m, self._proc_root)
        if not opened:
            if not keys & self._seen:
                self._log.info("cannot open %s mapped by pid %d (gone, or no access to its map_files)",
                               m.path, pid)
            return False
        where = where_of(pid, self._proc_root)
        if opened == m.path and where.startswith("mount namespace"):
            where = "host"   # e.g. a service with ProtectSystem=: its own namespace, the host's file
        return self._consider(Target(m.path, opened=opened, pid=pid, where=where), keys, exe=exe)

    def _consider(self, t: Target, keys: set[Key], *, exe: bool) -> bool:
        if keys & self._seen:
            self._seen |= keys
            if exe and t.pid:
                self._note_pending(t.pid, keys)
            return False
        self._seen |= keys
        opened = t.opened or t.path
        t.symbols = symbol_addrs(opened)
        if not t.usable:
            if not exe or t.symbols:
                self.unusable.append(t)
                self._log.info("no SSL symbols: %s (exports %s)", t.describe(), sorted(t.symbols) or "none")
            elif self._cache_dir is not None or self._attach_go is not None:
                self._queue(t, opened, keys)
            return False
        return self._attach_target(t, opened, ", ".join(sorted(t.symbols)))

    def _attach_target(self, t: Target, opened: str, what: str, go: list[goprobes.GoProbe] | None = None) -> bool:
        try:
            if go is not None:
                self._attach_go(opened, go)
            else:
                self._attach(opened, t)
        except Exception as e:  # BCC raises plain Exception
            self.failed[t.describe()] = str(e)
            self._log.warning("could not attach to %s: %s", t.describe(), e)
            return False
        self.targets.append(t)
        self._log.info("attached: %s (%s)", t.describe(), what)
        return True

    # --- Go and statically linked BoringSSL, off the poll thread ---
    def _queue(self, t: Target, opened: str, keys: set[Key]) -> None:
        if self._worker is None:
            self._worker = threading.Thread(target=self._work_loop, name="agtap-locate", daemon=True)
            self._worker.start()
        pids = {t.pid} if t.pid else set()
        looked_at = threading.Event()
        with self._pending_lock:
            for k in keys:
                self._pending[k] = pids
                self._locating[k] = looked_at
        self._work.put((t, opened, keys))

    def _note_pending(self, pid: int, keys: set[Key]) -> None:
        """A process runs a binary that is still being scanned (poll thread)."""
        with self._pending_lock:
            for k in keys:
                if k in self._pending:
                    self._pending[k].add(pid)
                    return

    def _count_unprobed(self, t: Target, keys: set[Key], *, go: bool = False) -> None:
        """The binary's probes are live now (worker thread). Its processes seen until now ran
        unprobed since their exec: count those that exited (every call of theirs was missed)
        and the TCP connections the others hold (calls written on them before now were
        missed; later calls on the same connections are seen)."""
        with self._pending_lock:
            pids: set[int] = set()
            for k in keys:
                pids |= self._pending.pop(k, set())
        gone = [p for p in pids if not os.path.exists(f"{self._proc_root}/{p}")]
        conns = sum(tcp_connections(p, self._proc_root) for p in pids if p not in gone)
        if go:
            self.go_unprobed_processes += len(gone)
            self.go_unprobed_connections += conns
        else:
            self.unprobed_processes += len(gone)
            self.unprobed_connections += conns
        if gone or conns:
            self._log.warning("%s: %d process(es) exited and %d TCP connection(s) were open before its "
                              "%s probes went live: calls made on them until now were not seen",
                              t.describe(), len(gone), conns, "Go" if go else "BoringSSL")

    def _work_loop(self) -> None:
        while True:
            job = self._work.get()
            try:
                if job is None:
                    return   # close()
                self._look_inside(*job)
            except Exception:   # one odd binary must not end the search for the others
                self._log.exception("TLS search failed: %s", job[0].describe())
            finally:
                if job is not None:
                    with self._pending_lock:
                        evs = {self._locating.pop(k, None) for k in job[2]}
                    for ev in evs - {None}:
                        ev.set()
                self._work.task_done()

    def _look_inside(self, t: Target, opened: str, keys: set[Key]) -> None:
        """An executable without SSL symbols: a Go program, or one with BoringSSL inside."""
        if self._attach_go is not None and golocate.is_go_binary(opened):
            self._look_for_go(t, opened, keys)
        elif self._cache_dir is not None:
            self._look_for_boringssl(t, opened, keys)
        else:
            self._drop_pending(keys)

    def _look_for_go(self, t: Target, opened: str, keys: set[Key]) -> None:
        try:
            loc = golocate.locate_go_tls(opened)
            probes = goprobes.plan(loc)
        except golocate.GoRefused as e:
            self._drop_pending(keys)
            self.go[t.describe()] = ("not probed: " if isinstance(e, golocate.GoNoTls) else "refused: ") + e.reason
            log = self._log.info if isinstance(e, golocate.GoNoTls) else self._log.warning
            log("Go executable %s: %s", t.describe(), self.go[t.describe()])
            return
        if self._closed.is_set():
            return   # capture stopped meanwhile (a restart has a TargetSet of its own)
        self.go[t.describe()] = loc.describe()
        if self._attach_target(t, opened, loc.describe(), go=probes):
            self._count_unprobed(t, keys, go=True)
        else:
            self._drop_pending(keys)

    def _look_for_boringssl(self, t: Target, opened: str, keys: set[Key]) -> None:
        if not boringssl.has_marker(opened):
            self._drop_pending(keys)
            self._log.info("no SSL symbols, no BoringSSL: %s", t.describe())
            return
        v = boringcache.verdict(opened, self._cache_dir)
        if self._closed.is_set():
            return   # capture stopped during the scan (a restart has a TargetSet of its own)
        v.path = t.path
        self.boringssl[t.describe()] = v
        if not v.located:
            self._drop_pending(keys)
            self._log.warning("%s: %s; not probed", t.describe(), v.line())
            return
        t.symbols = v.symbols
        if self._attach_target(t, opened, v.line()):
            self._count_unprobed(t, keys)
        else:
            self._drop_pending(keys)

    def _drop_pending(self, keys: set[Key]) -> None:
        with self._pending_lock:
            for k in keys:
                self._pending.pop(k, None)

    def close(self) -> None:
        """End the locate worker (after what it is doing; it probes nothing more)."""
        self._closed.set()
        if self._worker is not None:
            self._work.put(None)
            self._worker = None

    def scan_host(self) -> None:
        root = key_of("/")
        if root is not None:
            self._roots.add(root)
        for p in ldconfig_libssl():
            self.consider(p)
        for pid in all_pids(self._proc_root):
            self.scan_process(pid)

    def scan_root(self, pid: int) -> None:
        """The first time a root filesystem (a chroot, a container) is seen, its libssl files,
        found by path: probed before its processes map them (a process started in a new
        container may make its first call before the rescans see the mapping)."""
        base = f"{self._proc_root}/{pid}/root"
        root = key_of(base + "/")
        if root is None or root in self._roots:
            return
        self._roots.add(root)
        where = where_of(pid, self._proc_root)
        layers = overlay_layers(pid, self._proc_root)
        for pattern in ROOT_LIB_GLOBS:
            for opened in sorted(glob.glob(f"{base}/{pattern}")):
                if os.path.islink(opened):
                    # libssl.so -> libssl.so.3: the file is found by its own name; and an absolute
                    # link target would be resolved in agtap's root, not in the container's
                    continue
                keys = path_keys(opened, layers, opened[len(base):])
                if keys:
                    self._consider(Target(opened[len(base):], opened=opened, pid=pid, where=where), keys,
                                   exe=False)

    def scan_process(self, pid: int) -> None:
        self.scan_root(pid)
        exe = exe_of(pid, self._proc_root)
        for m in mapped_files(pid, self._proc_root, exe=exe):
            self.consider_mapping(pid, m, exe=m.path == exe)
