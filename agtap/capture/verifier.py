"""When BCC cannot compile agtap's BPF programs or the kernel's verifier refuses one: one line.

libbcc prints the compiler's errors and the verifier's log (hundreds of lines
of instructions) on file descriptor 2 and raises a bare "Failed to load BPF
program b'NAME': Permission denied". Under systemd that log would fill the
journal on every restart, and the reason is lost in it. So the compile and the
loads run with fd 2 sent to a file (`stderr_to_file`); on failure the daemon
says, in one line, which program, the verifier's last lines (its reason) and
what to report (`refusal_line`), and keeps the whole log in a file.

A refusal is deterministic: the same programs, toolchain and kernel give the
same verdict at every start. The daemon exits with EXIT_BPF_REFUSED and the
unit's RestartPreventExitStatus= stops systemd from restarting it in a loop.
No BCC import here: the formatting is tested without root.
"""

from __future__ import annotations

import ctypes
import glob
import os
import re
import sys
import tempfile
from contextlib import contextmanager
from typing import Iterator

EXIT_BPF_REFUSED = 3       # the unit's RestartPreventExitStatus= (systemd/agtap.service)
REPORT_URL = "https://agtap.io"   # debian/control Homepage
LOG_NAME = "bpf-load.log"  # the whole compiler/verifier output, next to the event log

# a verifier instruction line ("1253: (57) r2 &= 32767"), a source line BCC
# interleaves ("; if (...) @ main.c:334"), a state dump ("1253: R1=... R2=...")
_INSN = re.compile(r"^\d+: (\(|R\d|frame)")
# summary lines the verifier adds after its verdict, and BCC's hints
_TRAILER = re.compile(r"^(processed \d+ insns|verification time|stack depth|HINT:|bpf: |"
                      r"-- END PROG LOAD LOG --|\s*$)")
_PROGRAM = re.compile(r"Failed to load BPF program b?'?([A-Za-z0-9_]+)'?")


class Captured:
    text = ""


@contextmanager
def stderr_to_file() -> Iterator[Captured]:
    """Send file descriptor 2 to a temporary file for the block; `.text` holds what was written."""
    out = Captured()
    sys.stderr.flush()
    saved = os.dup(2)
    with tempfile.TemporaryFile() as tmp:
        os.dup2(tmp.fileno(), 2)
        try:
            yield out
        finally:
            try:
                ctypes.CDLL(None).fflush(None)   # libbcc writes with C stdio
            except OSError:
                pass
            os.dup2(saved, 2)
            os.close(saved)
            tmp.seek(0)
            out.text = tmp.read().decode("utf-8", "replace")


def program_name(error: str) -> str | None:
    """The program BCC names in its exception, or None (a compile error names none)."""
    m = _PROGRAM.search(error)
    return m.group(1) if m else None


def reason_lines(log: str, n: int = 2) -> list[str]:
    """The verifier's verdict: the last `n` lines of its log that are not instructions,
    source lines, register states or the summary it prints after the verdict."""
    lines = [ln.strip() for ln in log.splitlines()]
    while lines and _TRAILER.match(lines[-1]):
        lines.pop()
    reason: list[str] = []
    for ln in reversed(lines):
        if not ln or _INSN.match(ln) or ln.startswith(";"):
            break
        reason.insert(0, ln)
    return reason[-n:]


def compile_errors(log: str, n: int = 2) -> list[str]:
    """clang's first `n` error lines ("main.c:12:5: error: ...")."""
    return [ln.strip() for ln in log.splitlines() if ": error: " in ln][:n]


def toolchain() -> str:
    """'BCC 0.31.0, LLVM 19, kernel 6.12.48-amd64': what a bug report needs."""
    try:
        from bcc.version import __version__ as bcc_version   # Debian's python3-bpfcc
    except ImportError:
        bcc_version = "?"
    return f"BCC {bcc_version}, LLVM {llvm_version()}, kernel {os.uname().release}"


def llvm_version(maps: str | None = None) -> str:
    """The major version of the LLVM libbcc runs, from this process's mappings (libLLVM-14.so.1,
    libLLVM.so.19.1, libclang-cpp.so.19), else from the libLLVM files installed; '?' if neither."""
    if maps is None:
        try:
            with open("/proc/self/maps") as f:
                maps = f.read()
        except OSError:
            maps = ""
    pat = re.compile(r"lib(?:LLVM|clang-cpp)[-.](?:so\.)?(\d+)")
    found = pat.findall(maps)
    if not found:
        found = pat.findall(" ".join(glob.glob("/usr/lib/*-linux-gnu/libLLVM*.so*")))
    return max(found, key=int) if found else "?"


def refusal_line(error: str, log: str, tools: str, log_path: str | None) -> str:
    """One line for the journal: which program, why, what to report."""
    prog = program_name(error)
    if prog:
        why = reason_lines(log) or [error.strip()]
        head = f"the kernel's BPF verifier refused program {prog}: {' | '.join(why)}"
    else:
        why = compile_errors(log) or [error.strip().splitlines()[0] if error.strip() else "unknown error"]
        head = f"BCC could not compile the BPF programs: {' | '.join(why)}"
    where = f"; the whole log is in {log_path}" if log_path else ""
    return f"{head} — this is a bug in agtap: please report it ({REPORT_URL}) with {tools}{where}"


def save_log(text: str, directory: str) -> str | None:
    """Keep the whole output for the report; its path, or None if it cannot be written."""
    path = os.path.join(directory, LOG_NAME)
    try:
        with open(path, "w") as f:
            f.write(text)
    except OSError:
        return None
    return path
