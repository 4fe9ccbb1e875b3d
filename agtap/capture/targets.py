"""Target discovery: every file whose SSL_read/SSL_write agtap must probe.

Sources: `ldconfig -p` (libssl of the host), the libssl files mapped by
running processes (/proc/*/maps: venvs, vendored OpenSSL), and executables
exporting the symbols statically (node: Debian's, nvm's, official tarballs').
A new process (exec) is checked for its executable at once and for newly
mapped libraries shortly after (they are mapped after exec by ld.so or dlopen).
One file is probed once, whatever its path: files are keyed by (dev, inode).
"""

from __future__ import annotations

import logging
import os
import re
import subprocess
from dataclasses import dataclass, field
from typing import Callable

from agtap.capture.elfsyms import SSL_SYMBOLS, symbol_addrs

_LIBSSL_RE = re.compile(r"/libssl[^/]*\.so[^/]*$")


@dataclass(slots=True)
class Target:
    path: str
    symbols: dict[str, int] = field(default_factory=dict)   # name -> ELF address

    @property
    def usable(self) -> bool:
        return set(SSL_SYMBOLS) <= self.symbols.keys() or {"SSL_write", "SSL_read"} <= self.symbols.keys()


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


def mapped_libssl(pid: int, proc_root: str = "/proc") -> list[str]:
    paths = []
    try:
        with open(f"{proc_root}/{pid}/maps") as f:
            for line in f:
                p = line.rstrip("\n").split(None, 5)
                if len(p) == 6 and _LIBSSL_RE.search(p[5]):
                    paths.append(p[5])
    except OSError:
        pass
    return paths


def all_pids(proc_root: str = "/proc") -> list[int]:
    return [int(d) for d in os.listdir(proc_root) if d.isdigit()]


def exe_of(pid: int, proc_root: str = "/proc") -> str:
    try:
        return os.readlink(f"{proc_root}/{pid}/exe")
    except OSError:
        return ""


class TargetSet:
    """Keeps the attached files; `attach(path, symbols)` does the probing (BCC, in the tracer)."""

    def __init__(self, attach: Callable[[str, dict[str, int]], None], log: logging.Logger,
                 proc_root: str = "/proc"):
        self._attach = attach
        self._log = log
        self._proc_root = proc_root
        self._seen: set[tuple[int, int]] = set()      # (dev, ino) of every file looked at
        self.attached: list[str] = []
        self.failed: dict[str, str] = {}

    def consider(self, path: str, *, exe: bool = False) -> bool:
        """Look at one file; attach if it exports the SSL functions. True if newly attached."""
        if not path or path.endswith(" (deleted)"):
            return False
        real = f"{self._proc_root}/root{path}" if self._proc_root != "/proc" else path
        try:
            st = os.stat(real)
        except OSError:
            return False
        key = (st.st_dev, st.st_ino)
        if key in self._seen:
            return False
        self._seen.add(key)
        t = Target(path, symbol_addrs(real))
        if not t.usable:
            if not exe or t.symbols:
                self._log.info("no SSL symbols: %s (exports %s)", path, sorted(t.symbols) or "none")
            return False
        try:
            self._attach(path, t.symbols)
        except Exception as e:  # BCC raises plain Exception
            self.failed[path] = str(e)
            self._log.warning("could not attach to %s: %s", path, e)
            return False
        self.attached.append(path)
        self._log.info("attached: %s (%s)", path, ", ".join(sorted(t.symbols)))
        return True

    def scan_host(self) -> None:
        for p in ldconfig_libssl():
            self.consider(p)
        for pid in all_pids(self._proc_root):
            self.scan_process(pid)

    def scan_process(self, pid: int) -> None:
        exe = exe_of(pid, self._proc_root)
        if exe:
            self.consider(exe, exe=True)
        for p in mapped_libssl(pid, self._proc_root):
            self.consider(p)
