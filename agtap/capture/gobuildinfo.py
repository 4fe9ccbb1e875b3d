"""A Go executable's build info: is this file Go, and which Go built it.

Go (1.13 and later) writes a build info blob into every executable, in a section of its own
(`.go.buildinfo`) or near the start of the first writable segment: the magic
"\\xff Go buildinf:", the pointer size, flags, then the Go version and the module/build
settings text (`go version -m`). Since Go 1.18 (flag bit 2) both are varint-prefixed strings
right after the 32-byte header; before, the header holds two pointers to Go string headers
(data pointer, length) elsewhere in the data. Read as Go's own debug/buildinfo does.
"""

from __future__ import annotations

import mmap
import re
import struct
from dataclasses import dataclass

from agtap.capture import boringssl
from agtap.capture.elfsyms import sections

BUILDINFO_MAGIC = b"\xff Go buildinf:"
BUILDINFO_ALIGN, BUILDINFO_HEADER = 16, 32
BUILDINFO_SEARCH = 64 << 10     # bytes of the data segment searched, as Go's debug/buildinfo does
PF_W = 2


@dataclass(frozen=True, slots=True)
class BuildInfo:
    version: str        # runtime.Version(): "go1.24.4", "devel go1.23-abc..."
    modinfo: str        # the module and build-settings text (`go version -m`)


def open_mapped(path: str):
    """(file, read-only mmap of it): close both (`with f, m:`)."""
    f = open(path, "rb")
    try:
        return f, mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ)
    except BaseException:
        f.close()
        raise


def is_go_binary(path: str) -> bool:
    """Whether `path` is an ELF file built by Go: build info, or (Go < 1.13) a .gopclntab.
    Cheap: the section headers, at most a 64 KiB search; never raises."""
    try:
        f, m = open_mapped(path)
    except (OSError, ValueError):
        return False
    with f, m:
        try:
            if m[:4] != b"\x7fELF":
                return False
            secs = sections(m)
            return buildinfo_at(m, boringssl.Elf(m), secs) is not None or ".gopclntab" in secs
        except (boringssl.Refusal, ValueError, struct.error, IndexError):
            return False


def build_info(path: str) -> BuildInfo | None:
    """The Go version and module info of `path`, None if it has no Go build info."""
    try:
        f, m = open_mapped(path)
    except (OSError, ValueError):
        return None
    with f, m:
        try:
            elf = boringssl.Elf(m)
            return read_buildinfo(m, elf, buildinfo_at(m, elf, sections(m)))
        except (boringssl.Refusal, ValueError, struct.error, IndexError, UnicodeDecodeError):
            return None


def buildinfo_at(m, elf: boringssl.Elf, secs) -> int | None:
    """File offset of the build info header: the .go.buildinfo section, else the first
    16-aligned magic in the first 64 KiB of the first writable segment (debug/buildinfo's rule)."""
    sec = secs.get(".go.buildinfo")
    if sec is not None and m[sec.offset:sec.offset + len(BUILDINFO_MAGIC)] == BUILDINFO_MAGIC:
        return sec.offset
    seg = next((s for s in elf.loads if s.flags & PF_W), None)
    if seg is None:
        return None
    at, end = seg.offset, seg.offset + min(seg.size, BUILDINFO_SEARCH)
    while (at := m.find(BUILDINFO_MAGIC, at, end)) >= 0:
        if (at - seg.offset) % BUILDINFO_ALIGN == 0 and at + BUILDINFO_HEADER <= end:
            return at
        at += 1
    return None


def read_buildinfo(m, elf: boringssl.Elf, at: int | None) -> BuildInfo | None:
    if at is None:
        return None
    ptr_size, flags = m[at + 14], m[at + 15]
    if flags & 2:      # Go >= 1.18: two varint-length strings after the header
        version, nxt = _varint_string(m, at + BUILDINFO_HEADER)
        modinfo, _ = _varint_string(m, nxt)
    else:              # Go < 1.18: pointers to two Go strings (data pointer, length)
        if ptr_size != 8 or flags & 1:
            return None
        vptr, mptr = struct.unpack_from("<QQ", m, at + 16)
        version, modinfo = _go_string(m, elf, vptr), _go_string(m, elf, mptr)
    if len(modinfo) >= 33 and modinfo[-17] == 0x0A:    # 16-byte sentinels around the text
        modinfo = modinfo[16:-16]
    return BuildInfo(version.decode("utf-8", "replace"), modinfo.decode("utf-8", "replace"))


def _varint_string(m, at: int) -> tuple[bytes, int]:
    n = shift = 0
    while True:
        b = m[at]
        at += 1
        n |= (b & 0x7F) << shift
        if b < 0x80:
            break
        shift += 7
        if shift > 63:
            raise ValueError("bad varint in build info")
    return bytes(m[at:at + n]), at + n


def _go_string(m, elf: boringssl.Elf, addr: int) -> bytes:
    hdr = elf.offset(addr)
    if hdr is None:
        return b""
    data, n = struct.unpack_from("<QQ", m, hdr)
    off = elf.offset(data)
    return b"" if off is None or n > 1 << 20 else bytes(m[off:off + n])


def go_minor(version: str) -> int | None:
    """17 for "go1.17.13", 23 for "devel go1.23-abc", None if not a Go 1.x version string."""
    mo = re.search(r"go1\.(\d+)", version)
    return int(mo.group(1)) if mo else None
