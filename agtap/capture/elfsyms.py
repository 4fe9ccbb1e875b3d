"""Which of the SSL functions an ELF file exports (its .dynsym), without BCC.

Used by target discovery and by `agtap doctor` (which runs without root).
"""

from __future__ import annotations

import mmap
import struct

SSL_SYMBOLS = ("SSL_write", "SSL_write_ex", "SSL_read", "SSL_read_ex")
OPTIONAL_SYMBOLS = ("SSL_free",)
SHT_DYNSYM = 11


def exported(path: str, wanted: tuple[str, ...] = SSL_SYMBOLS + OPTIONAL_SYMBOLS) -> set[str]:
    """The names in `wanted` that `path` defines in its dynamic symbol table."""
    want = {w.encode() for w in wanted}
    found: set[str] = set()
    try:
        with open(path, "rb") as f, mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) as m:
            if m[:4] != b"\x7fELF" or m[4] != 2:   # ELF64 only (the targets agtap supports)
                return found
            endian = "<" if m[5] == 1 else ">"
            shoff, = struct.unpack_from(endian + "Q", m, 0x28)
            shentsize, shnum = struct.unpack_from(endian + "HH", m, 0x3A)
            secs = [struct.unpack_from(endian + "IIQQQQIIQQ", m, shoff + i * shentsize) for i in range(shnum)]
            for s in secs:
                if s[1] != SHT_DYNSYM:
                    continue
                off, size, link, entsize = s[4], s[5], s[6], s[9] or 24
                str_off = secs[link][4]
                for i in range(size // entsize):
                    name_off, info, other, shndx = struct.unpack_from(endian + "IBBH", m, off + i * entsize)
                    if shndx == 0 or (info & 0xF) != 2:   # undefined, or not a function
                        continue
                    start = str_off + name_off
                    if m[start:start + 4] != b"SSL_":
                        continue
                    end = m.find(b"\0", start)
                    name = m[start:end]
                    if name in want:
                        found.add(name.decode())
    except (OSError, ValueError, struct.error, IndexError):
        pass
    return found
