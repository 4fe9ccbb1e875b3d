"""Compile bpf/*.c with BCC and hand back the BPF object.

The C files are one program (they share the ring buffer and the maps); they
are concatenated in a fixed order after the build-time macros.
"""

from __future__ import annotations

import os
from pathlib import Path

BPF_FILES = ("common.h", "ssl.c", "syscalls.c", "sched.c")
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
    head = "".join(f"#define {k} {v}\n" for k, v in macros.items())
    d = bpf_dir()
    return head + "\n".join((d / f).read_text() for f in BPF_FILES)


def compile_program(max_capture_bytes: int, header_tree: str):
    """Compile and load (not attach). Needs root."""
    os.environ["BCC_KERNEL_SOURCE"] = header_tree
    from bcc import BPF  # the only import of BCC in agtap
    return BPF(text=program_text(max_capture_bytes), cflags=["-Wno-unused-function", "-Wno-unused-variable"])
