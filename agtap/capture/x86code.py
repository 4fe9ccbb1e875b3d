"""Searching the code of a big x86-64 executable without symbols: vectorised byte searches
(numpy over 16 MB chunks, never a Python loop per byte), where functions begin and end,
and their instructions (capstone). Used by the BoringSSL locator (boringssl.py, boringend.py).

Function starts are the targets of direct calls (`e8 rel32`). Searching every 0xE8 byte
also yields targets that no real call has (the byte inside another instruction), so a
target counts as a function start only where something ends just before it: the int3
padding the linker puts between functions, a `ret`, or - in builds that pack functions
without padding (Claude Code) - a call, when the target begins with the frame-pointer
prologue `push %rbp; mov %rsp,%rbp` every function of these builds has.
"""

from __future__ import annotations

MAX_FUNCTION = 8192        # bytes of a function disassembled at most
CHUNK = 16 << 20           # bytes of code searched at a time (numpy)
FRAME_PROLOGUE = b"\x55\x48\x89\xe5"     # push %rbp; mov %rsp,%rbp


def chunks(n: int):
    """(start, end) pieces of CHUNK bytes covering n, each overlapping the next by 4: the
    numpy temporaries stay a few times CHUNK, not a few times a 200 MB code segment."""
    for start in range(0, n, CHUNK):
        yield start, min(n, start + CHUNK + 4)


def find_u32(text, values: list[int]) -> list[int]:
    """Offsets in text of every little-endian 4-byte occurrence of any of `values`: four
    vectorised passes per chunk, one per alignment (numpy), not a byte-by-byte search."""
    import numpy as np
    want = np.array(values, dtype="<u4")
    out: set[int] = set()
    for lo, hi in chunks(len(text)):
        for k in range(4):
            words = np.frombuffer(text[lo:hi], dtype="<u4", offset=k, count=(hi - lo - k) // 4)
            out.update((np.flatnonzero(np.isin(words, want)) * 4 + lo + k).tolist())
            del words
    return sorted(out)


def call_targets(text):
    """Sorted unique targets of every `e8 rel32` in the code that lands inside it (numpy)."""
    import numpy as np
    found = []
    for lo, hi in chunks(len(text)):
        with text[lo:hi] as piece:
            a = np.frombuffer(piece, dtype=np.uint8)
            pos = np.flatnonzero(a[:-4] == 0xE8)
            pos = pos[pos < CHUNK]          # the overlap is the next chunk's
            rel = np.zeros(len(pos), dtype=np.int64)
            for k in range(4):
                rel |= a[pos + 1 + k].astype(np.int64) << (8 * k)
            del a
        rel = np.where(rel >= 1 << 31, rel - (1 << 32), rel)
        tgt = pos + lo + 5 + rel
        found.append(np.unique(tgt[(tgt >= 0) & (tgt < len(text))]))
    return np.unique(np.concatenate(found)) if found else np.zeros(0, dtype=np.int64)


def is_function_start(text, t: int) -> bool:
    """Whether the call target at offset t begins a function (see the module's docstring)."""
    if t == 0 or text[t - 1] in (0xCC, 0xC3):
        return True
    return t >= 5 and text[t - 5] == 0xE8 and bytes(text[t:t + 4]) == FRAME_PROLOGUE


def function_start(text, base: int, starts, site: int) -> int | None:
    """The function containing address `site`: the nearest function start at or below it."""
    import numpy as np
    off = site - base
    i = int(np.searchsorted(starts, off, side="right")) - 1
    while i >= 0 and off - int(starts[i]) <= MAX_FUNCTION:
        if is_function_start(text, int(starts[i])):
            return base + int(starts[i])
        i -= 1
    return None


def extent(text, base: int, func: int, starts) -> int:
    """Bytes of the function at address `func`: up to the next function start, at most MAX_FUNCTION."""
    import numpy as np
    off = func - base
    end = min(off + MAX_FUNCTION, len(text))
    k = int(np.searchsorted(starts, off, side="right"))
    while k < len(starts) and int(starts[k]) < end:
        if is_function_start(text, int(starts[k])):
            return int(starts[k]) - off
        k += 1
    return end - off


def disasm(text, base: int, func: int, starts, md) -> list:
    """The instructions of the function at address `func`, linearly, to its end or its first int3."""
    off = func - base
    out = []
    for ins in md.disasm(bytes(text[off:off + extent(text, base, func, starts)]), func):
        if ins.bytes == b"\xcc":
            break
        out.append(ins)
    return out
