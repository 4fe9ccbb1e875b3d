"""Compile bpf/*.c with BCC and hand back the BPF object.

The C files are one program (they share the ring buffer and the maps); they
are concatenated in a fixed order after the build-time macros and the
numbers they share with userspace (agtap/capture/records.py).
"""

from __future__ import annotations

import ctypes
import os
from dataclasses import dataclass, field
from pathlib import Path

from agtap.capture import records

BPF_FILES = ("common.h", "h2.h", "copy.h", "ssl.c", "gotls.c", "syscalls.c", "sched.c")
SEG_SIZE = 16384          # payload bytes per ring-buffer record
RINGBUF_PAGES = 4096      # 16 MiB of ring buffer
PROC_PID_INIT_INO = 0xEFFFFFFC   # the initial PID namespace's inode


def bpf_dir() -> Path:
    """bpf/ next to the package in a checkout, /usr/share/agtap/bpf when installed."""
    candidates = []
    if os.environ.get("AGTAP_BPF_DIR"):
        candidates.append(Path(os.environ["AGTAP_BPF_DIR"]))
    candidates += [Path(__file__).resolve().parents[2] / "bpf", Path("/usr/share/agtap/bpf")]
    for c in candidates:
        if (c / "common.h").exists():
            return c
    raise FileNotFoundError("agtap's BPF sources are missing (looked in: "
                            + ", ".join(map(str, candidates)) + "). Fix: reinstall agtap")


def pidns_macros() -> dict[str, int]:
    st = os.stat("/proc/self/ns/pid")
    in_init = st.st_ino == PROC_PID_INIT_INO
    return {"USE_NS_PIDS": 0 if in_init else 1, "PIDNS_DEV": st.st_dev, "PIDNS_INO": st.st_ino}


def program_text(max_capture_bytes: int) -> str:
    segs = max(1, -(-max_capture_bytes // SEG_SIZE))
    macros = {"SEG_SIZE": SEG_SIZE, "MAX_SEGS": segs, "RINGBUF_PAGES": RINGBUF_PAGES, **pidns_macros()}
    head = "".join(f"#define {k} {v}\n" for k, v in macros.items()) + records.c_defines()
    d = bpf_dir()
    return head + "\n".join((d / f).read_text() for f in BPF_FILES)


def compile_program(max_capture_bytes: int, header_tree: str):
    """Compile and load (not attach). Needs root."""
    os.environ["BCC_KERNEL_SOURCE"] = header_tree
    from bcc import BPF  # BCC is imported in agtap/capture only: here to compile, tracer.py, doctor.py
    return BPF(text=program_text(max_capture_bytes).encode(), cflags=["-Wno-unused-function", "-Wno-unused-variable"])


def load_every_program(b) -> int:
    """Load (verify) every program in the object now, so a refusal shows at start,
    not at the first attach. BCC keeps each loaded program; attaching reuses it.
    Returns how many programs there are."""
    from bcc import BPF, lib
    n = lib.bpf_num_functions(b.module)
    for i in range(n):
        name = lib.bpf_function_name(b.module, i)
        tracepoint = name.startswith(b"tracepoint__") or name in (b"cont_tracepoint", b"cont_h2_tracepoint")
        b.load_func(name, BPF.TRACEPOINT if tracepoint else BPF.KPROBE)
    return n


MADV_DONTNEED = 4
COMPILER_LIBS = ("libLLVM", "libclang")


def release_compiler_memory() -> int:
    """Give back what the compile left resident; returns the bytes of RSS released.

    BCC runs clang/LLVM in this process once per start. Afterwards their code pages
    (~80 MB touched) and the heap the compile freed stay counted in the daemon's RSS
    though nothing runs them again. malloc_trim returns the free heap; MADV_DONTNEED
    drops this process's mappings of the libraries' pages. Only mappings that are not
    writable and hold no private (copy-on-write) pages are dropped: their content is
    exactly the file's, so if LLVM runs again (the next start) it faults back in unchanged.
    """
    libc = ctypes.CDLL(None, use_errno=True)
    libc.madvise.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int]
    libc.malloc_trim.argtypes = [ctypes.c_size_t]
    before = _rss_bytes()
    libc.malloc_trim(0)
    for start, end in _clean_compiler_mappings():
        libc.madvise(start, end - start, MADV_DONTNEED)
    return max(0, before - _rss_bytes())


def _rss_bytes() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


@dataclass(slots=True)
class Mapping:
    """One mapping of /proc/PID/smaps: its range, permissions, path and kB fields (Rss, Anonymous …)."""
    start: int
    end: int
    perms: str
    path: str
    kb: dict[str, int] = field(default_factory=dict)

    @property
    def is_compiler(self) -> bool:
        return any(lib in os.path.basename(self.path) for lib in COMPILER_LIBS)


def smaps(text: str | None = None) -> list[Mapping]:
    """The mappings in smaps `text` (default: this process's)."""
    if text is None:
        with open("/proc/self/smaps") as f:
            text = f.read()
    out: list[Mapping] = []
    for line in text.splitlines():
        head = line.split(None, 5)
        if not head:
            continue
        if "-" in head[0] and not head[0].endswith(":"):
            a, z = head[0].split("-")
            out.append(Mapping(int(a, 16), int(z, 16), head[1], head[5].strip() if len(head) > 5 else ""))
        elif out and head[0].endswith(":") and len(head) > 1 and head[1].isdigit():
            out[-1].kb[head[0][:-1]] = int(head[1])
    return out


def _clean_compiler_mappings(text: str | None = None) -> list[tuple[int, int]]:
    """(start, end) of each clang/LLVM mapping whose pages are exactly the file's:
    not writable and no copy-on-write page (smaps' Anonymous: 0 kB)."""
    return [(m.start, m.end) for m in smaps(text)
            if m.is_compiler and "w" not in m.perms and m.kb.get("Anonymous", 1) == 0]
