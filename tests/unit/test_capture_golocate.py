"""The Go crypto/tls locator on real Go binaries built at test time (no BPF).

tests/go/tlsget is built by Debian 12's Go 1.19 (the host's golang-go) and by Debian 13's
Go 1.24 (in a debootstrapped trixie root: root only, cached; tests/support/gobuild.py),
each with and without `-ldflags="-s -w"`. What the locator finds is checked by other
means than its own: Go's own `go tool objdump` (Go 1.19: its symbols and its RETs), GNU
objdump (RETs, any version), the unstripped build's symbol table for the stripped build
(the code is byte-for-byte the same: checked), and BCC's own address translation for the
file offsets.
"""

from __future__ import annotations

import mmap
import os
import re
import shutil
import struct
import subprocess

import pytest

from agtap.capture import golocate
from agtap.capture.elfsyms import sections
from tests.support import gobuild

NAMES = {"write": "crypto/tls.(*Conn).Write", "read": "crypto/tls.(*Conn).Read",
         "close": "crypto/tls.(*Conn).Close"}


def _trixie_ok() -> None:
    # Debian 13's Go needs its root; building that needs root. CI runs as root: never skipped there.
    if os.geteuid() != 0 and not (gobuild.CACHE_ROOT / "go-rootfs-trixie/.agtap-rootfs-stamp").is_file() \
            and not os.environ.get("CI"):
        pytest.skip("Go 1.24 builds need root once (debootstrap of Debian 13): sudo make test-unit")


# (release, stripped, PIE): PIE puts the table inside .data.rel.ro, without a section
BUILDS = [(r, s, p) for r in ("bookworm", "trixie") for s in (False, True) for p in (False, True)]
IDS = [f"{r}-{'stripped' if s else 'symbols'}{'-pie' if p else ''}" for r, s, p in BUILDS]


def build(release: str, stripped: bool, pie: bool = False):
    if release == "trixie":
        _trixie_ok()
    return gobuild.go_binary("tlsget", release=release, stripped=stripped, pie=pie)


def _objdump_rets(path, start: int, end: int) -> list[int]:
    """Addresses of `ret` in [start, end), by GNU objdump (not capstone)."""
    out = subprocess.run(["objdump", "-d", "--no-show-raw-insn", f"--start-address={start:#x}",
                          f"--stop-address={end:#x}", str(path)], capture_output=True, text=True,
                         check=True).stdout
    return [int(m.group(1), 16) for m in re.finditer(r"^\s+([0-9a-f]+):\s+ret\s*$", out, re.M)]


def _objdump_lines(path, start: int, end: int) -> list[tuple[int, str]]:
    """(address, instruction) in [start, end), by GNU objdump."""
    out = subprocess.run(["objdump", "-d", "--no-show-raw-insn", f"--start-address={start:#x}",
                          f"--stop-address={end:#x}", str(path)], capture_output=True, text=True,
                         check=True).stdout
    return [(int(m.group(1), 16), m.group(2)) for m in re.finditer(r"^\s+([0-9a-f]+):\s+(.+?)\s*$", out, re.M)]


def _go_objdump(path) -> dict[str, tuple[int, list[int]]]:
    """name -> (entry, RET addresses), from Go 1.19's `go tool objdump` (Go's disassembler)."""
    out = subprocess.run(["go", "tool", "objdump", "-s", r"^crypto/tls\.\(\*Conn\)\.(Write|Read|Close)$",
                          str(path)], capture_output=True, text=True, check=True).stdout
    funcs: dict[str, tuple[int, list[int]]] = {}
    name = None
    for ln in out.splitlines():
        if ln.startswith("TEXT "):
            name = ln.split()[1].removesuffix("(SB)")
            continue
        cols = ln.split("\t")
        addrs = [c for c in cols if c.startswith("0x")]
        if name and addrs:
            a = int(addrs[0], 16)
            entry, rets = funcs.setdefault(name, (a, []))
            if cols[-1].strip() == "RET" or re.search(r"\sRET\s*$", ln):
                rets.append(a)
    return funcs


@pytest.mark.parametrize("release,stripped,pie", BUILDS, ids=IDS)
def test_locates_write_read_close_and_every_ret(release, stripped, pie):
    path = build(release, stripped, pie)
    with open(path, "rb") as f:
        assert f.read(18)[16] == (3 if pie else 2)          # e_type: ET_DYN, ET_EXEC
    assert golocate.is_go_binary(str(path))
    loc = golocate.locate_go_tls(str(path))
    want_minor = {"bookworm": 19, "trixie": 24}[release]
    assert golocate.go_minor(loc.go_version) == want_minor, loc.go_version
    assert loc.go_version == gobuild.go_version(release)
    assert loc.method == ("pclntab" if stripped else "symtab")
    if not stripped:
        assert loc.checked.startswith("agrees with .gopclntab"), loc.checked
    assert set(loc.functions) == {"write", "read", "close"}
    for key, f in loc.functions.items():
        assert f.rets and all(f.entry < r < f.entry + f.size for r in f.rets)
        assert f.rets == tuple(_objdump_rets(path, f.entry, f.entry + f.size)), key
        # the register-ABI prologue: a stack-bound check against g (R14) comes first or second
        assert re.match(r"(cmp rsp, qword ptr \[r14 \+ 0x10\]|lea r12, \[rsp - 0x[0-9a-f]+\])$", f.first), f.first
        # body: after `[lea] cmp; jbe` (4- or 5-byte lea, 4-byte cmp, 2- or 6-byte jbe), by objdump
        lines = _objdump_lines(path, f.entry, f.body + 1)
        assert [ln[1].split()[0] for ln in lines[:-1]] == (["lea"] if "lea" in f.first else []) + ["cmp", "jbe"]
        assert lines[-1][0] == f.body and lines[-2][0] == f.check and lines[-2][1].startswith("jbe")


@pytest.mark.parametrize("release,pie", [(r, p) for r in ("bookworm", "trixie") for p in (False, True)])
def test_stripped_build_agrees_with_the_symbol_table_of_the_same_code(release, pie):
    """-s -w drops the symbol table, not code: same bytes at the same addresses, so the
    unstripped build's symbols say where the stripped build's functions are."""
    full, bare = build(release, False, pie), build(release, True, pie)
    a, b = golocate.locate_go_tls(str(full)), golocate.locate_go_tls(str(bare))
    assert (a.method, b.method) == ("symtab", "pclntab")
    with open(full, "rb") as f1, open(bare, "rb") as f2:
        for key in NAMES:
            fa, fb = a.functions[key], b.functions[key]
            f1.seek(fa.entry_offset)
            f2.seek(fb.entry_offset)
            assert f1.read(fa.size) == f2.read(fa.size), key
            assert fb.entry == fa.entry and fb.rets == fa.rets
            # pclntab ends a function at the next one's entry: the symbol's size, plus int3 padding
            assert fb.size >= fa.size


def test_go_tool_objdump_agrees():
    """Go 1.19's own disassembler (it reads the symbol table): same entries, same RETs."""
    if shutil.which("go") is None:
        pytest.fail("go missing: make setup installs golang-go")
    path = build("bookworm", False)
    loc = golocate.locate_go_tls(str(path))
    theirs = _go_objdump(path)
    for key, name in NAMES.items():
        entry, rets = theirs[name]
        assert loc.functions[key].entry == entry
        assert list(loc.functions[key].rets) == rets


@pytest.mark.parametrize("release,stripped,pie", BUILDS, ids=IDS)
def test_entries_translate_like_bcc_does(release, stripped, pie):
    """GoFunc.entry/.rets are what BCC's attach_uprobe(addr=) takes: BCC turns them into
    the file offsets GoFunc.entry_offset/.ret_offsets (checked with BCC itself, no root)."""
    bcc = pytest.importorskip("bcc", reason="python3-bpfcc missing: make setup")
    path = build(release, stripped, pie)
    loc = golocate.locate_go_tls(str(path))
    for f in loc.functions.values():
        for addr, off in zip((f.entry, f.body, *f.rets), (f.entry_offset, f.body_offset, *f.ret_offsets)):
            assert bcc.BPF._check_path_symbol(str(path).encode(), b"", addr, -1)[1] == off
        with open(path, "rb") as fh:
            fh.seek(f.ret_offsets[0])
            assert fh.read(1) == b"\xc3"


def test_build_info_versions_and_modinfo():
    path = build("bookworm", True)
    info = golocate.build_info(str(path))
    assert info.version == gobuild.go_version("bookworm")
    assert "path\ttlsget" in info.modinfo and "build\tCGO_ENABLED=0" in info.modinfo
    assert not info.modinfo.startswith("0w")          # the 16-byte sentinels are cut off


def test_a_go_binary_whatever_its_name(tmp_path):
    dst = tmp_path / "libnot-go.so.1"
    shutil.copyfile(build("bookworm", True), dst)
    assert golocate.is_go_binary(str(dst))
    assert golocate.locate_go_tls(str(dst)).method == "pclntab"


def test_non_go_files_are_not_go(tmp_path):
    assert not golocate.is_go_binary("/bin/sh")
    text = tmp_path / "magic.txt"
    text.write_bytes(b"\xff Go buildinf:" + b"\0" * 64)
    assert not golocate.is_go_binary(str(text))
    assert not golocate.is_go_binary(str(tmp_path / "absent"))
    with pytest.raises(golocate.GoRefused, match="not a Go executable"):
        golocate.locate_go_tls("/bin/sh")
    assert golocate.describe("/bin/sh").startswith("refused: no Go build info")


def test_go_program_without_tls_is_left_alone():
    path = gobuild.go_binary("notls", stripped=True)
    assert golocate.is_go_binary(str(path))
    with pytest.raises(golocate.GoNoTls, match=r"does not link crypto/tls\.\(\*Conn\)\.Write"):
        golocate.locate_go_tls(str(path))
    assert golocate.describe(str(path)).startswith("not probed: go1.19")


def _patched(tmp_path, name: str, edit) -> str:
    src = build("bookworm", True)
    dst = tmp_path / name
    shutil.copyfile(src, dst)
    with open(dst, "r+b") as f, mmap.mmap(f.fileno(), 0) as m:
        edit(m, sections(m))
    return str(dst)


def test_unknown_pclntab_layout_is_refused(tmp_path):
    def edit(m, secs):
        struct.pack_into("<I", m, secs[".gopclntab"].offset, 0xFFFFFFF9)
    path = _patched(tmp_path, "future-go", edit)
    with pytest.raises(golocate.GoRefused, match=r"magic 0xfffffff9 is not a layout agtap reads"):
        golocate.locate_go_tls(path)


def _old_style_buildinfo(version: bytes):
    """The Go < 1.18 build info: header, then pointers to two Go strings (ptr, len) - written
    into the section by hand, where Go 1.17's linker would have pointed into its data."""
    def edit(m, secs):
        s = secs[".go.buildinfo"]
        base, addr = s.offset, s.addr
        m[base + 14:base + 16] = bytes([8, 0])                           # pointer size 8, little-endian, no inline strings
        struct.pack_into("<QQ", m, base + 16, addr + 32, addr + 48)       # -> version, modinfo headers
        struct.pack_into("<QQ", m, base + 32, addr + 64, len(version))    # version string header
        struct.pack_into("<QQ", m, base + 48, addr + 64, 0)               # empty modinfo
        m[base + 64:base + 64 + len(version)] = version
    return edit


def test_pointer_format_build_info_of_go_1_17(tmp_path):
    path = _patched(tmp_path, "go117", _old_style_buildinfo(b"go1.17.13"))
    assert golocate.build_info(path) == golocate.BuildInfo("go1.17.13", "")
    loc = golocate.locate_go_tls(path)
    assert loc.go_version == "go1.17.13" and set(loc.functions) >= {"write", "read"}


def test_stack_abi_go_is_refused(tmp_path):
    path = _patched(tmp_path, "go116", _old_style_buildinfo(b"go1.16.15"))
    with pytest.raises(golocate.GoRefused, match=r"go1\.16\.15: Go older than 1\.17 passes arguments on the stack"):
        golocate.locate_go_tls(path)


def test_symtab_and_pclntab_disagreeing_is_refused(tmp_path):
    """A symbol that points elsewhere than .gopclntab says: nothing is probed."""
    src = build("bookworm", False)
    dst = tmp_path / "liar"
    shutil.copyfile(src, dst)
    loc = golocate.locate_go_tls(str(src))
    with open(dst, "r+b") as f, mmap.mmap(f.fileno(), 0) as m:
        symtab = sections(m)[".symtab"]
        at = next(symtab.offset + i for i in range(0, symtab.size, 24)     # Elf64_Sym: value at +8
                  if struct.unpack_from("<Q", m, symtab.offset + i + 8)[0] == loc.functions["write"].entry
                  and m[symtab.offset + i + 4] & 0xF == 2) + 8
        struct.pack_into("<Q", m, at, loc.functions["write"].entry + 0x10)
    with pytest.raises(golocate.GoRefused, match=r"symbol table puts crypto/tls\.\(\*Conn\)\.Write"):
        golocate.locate_go_tls(str(dst))


def test_describe_says_version_and_method():
    line = golocate.describe(str(build("bookworm", True)))
    assert re.match(r"go1\.19\.\d+: crypto/tls \(\*Conn\) found in the \.gopclntab \(no symbol table\): "
                    r"Write at 0x[0-9a-f]+ \(\d+ RET\), Read at 0x[0-9a-f]+ \(\d+ RET\), Close at", line), line


def test_doctor_lists_running_go_programs():
    """`agtap doctor` names each running Go executable once, with its verdict."""
    import socket
    from agtap.capture import doctor
    tls, notls = build("bookworm", True), gobuild.go_binary("notls", stripped=True)
    with socket.socket() as srv:                 # accepts, never answers: tlsget waits in its handshake
        srv.bind(("127.0.0.1", 0))
        srv.listen(4)
        procs = [subprocess.Popen([str(tls), f"https://127.0.0.1:{srv.getsockname()[1]}/"]),
                 subprocess.Popen([str(notls), "30"], stdout=subprocess.DEVNULL),
                 subprocess.Popen([str(notls), "30"], stdout=subprocess.DEVNULL)]
        conn = None
        try:
            conn, _ = srv.accept()
            lines = [c.line() for c in doctor._go()]
        finally:
            if conn:
                conn.close()
            for p in procs:
                p.kill()
                p.wait()
    mine = [ln for ln in lines if str(tls) in ln or str(notls) in ln]
    assert len(mine) == 2, lines                  # notls runs twice: one line
    assert re.match(rf"ok    go: {re.escape(str(tls))} \(pid {procs[0].pid}\): go1\.19\.\d+: crypto/tls \(\*Conn\) "
                    r"found in the \.gopclntab", mine[0] if str(tls) in mine[0] else mine[1])
    assert any(re.match(rf"ok    go: {re.escape(str(notls))} \(pid \d+\): not probed: go1\.19\.\d+: does not link",
                        ln) for ln in mine), mine


def test_a_real_go_1_15_program_is_refused():
    """Debian 11's fzf, built by Go 1.15 (pointer-format build info, stack ABI, the Go
    1.2-1.15 function table): recognised as Go, its version read, refused with the reason.
    Its version, checked by hand with `go version` (Go 1.19's reader): go1.15.9."""
    path = str(gobuild.debian_file("bullseye", "fzf", "usr/bin/fzf"))
    assert golocate.is_go_binary(path)
    assert golocate.build_info(path).version == "go1.15.9"
    with pytest.raises(golocate.GoRefused, match=r"^go1\.15\.9: Go older than 1\.17 passes arguments on the stack"):
        golocate.locate_go_tls(path)
    # its function table is the Go 1.2-1.15 layout (magic 0xfffffffb): unknown, refused by name
    from agtap.capture import boringssl, gopclntab
    with open(path, "rb") as f, mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) as m:
        with pytest.raises(gopclntab.PclntabError, match=r"magic 0xfffffffb is not a layout agtap reads"):
            gopclntab.find_pclntab(m, boringssl.Elf(m), sections(m))


def test_the_register_abi_is_checked_on_the_code():
    """GOEXPERIMENT=noregabi is recorded in the build settings, but Go 1.19 ignores it on
    amd64 (its code still keeps g in R14: `go tool objdump` shows `CMPQ 0x10(R14), SP` and
    the receiver in AX), so the code decides: accepted. A function whose stack check does
    not use R14 (an ABI0 function loads g from TLS) is refused."""
    path = gobuild.go_binary("tlsget", stripped=True, goexperiment="noregabi")
    assert "GOEXPERIMENT=noregabi" in golocate.build_info(str(path)).modinfo
    assert set(golocate.locate_go_tls(str(path)).functions) == {"write", "read", "close"}


def test_a_stack_check_without_r14_is_refused(tmp_path):
    read = golocate.locate_go_tls(str(build("bookworm", True))).functions["read"]
    assert read.first == "cmp rsp, qword ptr [r14 + 0x10]"

    def edit(m, secs):
        assert m[read.entry_offset:read.entry_offset + 4] == bytes.fromhex("493b6610")
        m[read.entry_offset:read.entry_offset + 4] = bytes.fromhex("483b6110")    # cmp rsp, [rcx+0x10]
    path = _patched(tmp_path, "abi0", edit)
    with pytest.raises(golocate.GoRefused, match=r"crypto/tls\.\(\*Conn\)\.Read begins `cmp rsp, qword ptr "
                                                 r"\[rcx \+ 0x10\]; .*not the register ABI"):
        golocate.locate_go_tls(path)


def test_verdicts_are_kept_per_file_whatever_the_path(tmp_path, monkeypatch):
    """One read per file: another name for it (a link, /proc/PID/exe) and a refusal come
    from the kept verdict; a rewritten file is read again."""
    calls = []
    real = golocate._verdict
    monkeypatch.setattr(golocate, "_verdict", lambda p: calls.append(p) or real(p))
    src = tmp_path / "a"
    shutil.copyfile(build("bookworm", True), src)
    (tmp_path / "b").symlink_to(src)
    first = golocate.locate_go_tls(str(src))
    second = golocate.locate_go_tls(str(tmp_path / "b"))
    assert second.path == str(tmp_path / "b") and second.functions == first.functions
    notls = tmp_path / "n"
    shutil.copyfile(gobuild.go_binary("notls", stripped=True), notls)
    for _ in range(3):
        with pytest.raises(golocate.GoNoTls):
            golocate.locate_go_tls(str(notls))
    assert calls == [str(src), str(notls)]
    shutil.copyfile(build("bookworm", False), src)      # replaced in place: size and mtime change
    assert golocate.locate_go_tls(str(src)).method == "symtab"
    assert calls[-1] == str(src) and len(calls) == 3


EXTERNAL = [(False, False), (True, False), (True, True)]      # (stripped, PIE), linked by gcc


@pytest.mark.parametrize("stripped,pie", EXTERNAL, ids=["symbols", "stripped", "stripped-pie"])
def test_externally_linked_cgo_builds(stripped, pie):
    """cgo programs linked by gcc (-linkmode=external): C start-up code comes first in .text,
    and a gcc PIE keeps the table in .data.rel.ro like Go's own PIE (found by search, text
    start from its relocation). Same functions as the unstripped build's symbol table, RETs
    as GNU objdump lists them, file offsets as BCC computes them."""
    bcc = pytest.importorskip("bcc", reason="python3-bpfcc missing: make setup")
    if shutil.which("gcc") is None:
        pytest.fail("gcc missing (external linking): apt-get install gcc")
    path = gobuild.go_binary("tlsget", stripped=stripped, pie=pie, external=True)
    loc = golocate.locate_go_tls(str(path))
    assert loc.method == ("pclntab" if stripped else "symtab")
    ref = golocate.locate_go_tls(str(gobuild.go_binary("tlsget", pie=pie, external=True)))
    for key, f in loc.functions.items():
        assert f.rets == tuple(_objdump_rets(path, f.entry, f.entry + f.size)), key
        for addr, off in zip((f.entry, *f.rets), (f.entry_offset, *f.ret_offsets)):
            assert bcc.BPF._check_path_symbol(str(path).encode(), b"", addr, -1)[1] == off
        # -s -w changes no code: the unstripped build's symbols say where the functions are
        assert (f.entry, f.rets) == (ref.functions[key].entry, ref.functions[key].rets)


def test_damaged_binaries_are_refused_never_raise():
    """Random bytes changed in the build info, the function table's header, its table and
    records, and the functions' code (seeded, 400 cases): the verdict is a location whose
    every probe address lies inside its function, or a refusal; nothing else escapes."""
    import random
    path = build("bookworm", True)
    base = bytearray(path.read_bytes())
    secs = sections(base)
    loc = golocate.locate_go_tls(str(path))
    pcln, info = secs[".gopclntab"], secs[".go.buildinfo"]
    words = struct.unpack_from("<8Q", base, pcln.offset + 8)
    regions = [(info.offset, 64), (pcln.offset, 72),
               (pcln.offset + words[7], 1 << 16),                      # function table
               (pcln.offset + words[3], 1 << 16)]                      # name table
    regions += [(f.entry_offset, f.size) for f in loc.functions.values()]
    rng = random.Random(14)
    outcomes = {"located": 0, "refused": 0}
    for _ in range(400):
        m = bytearray(base)
        start, length = rng.choice(regions)
        for _ in range(rng.randint(1, 4)):
            m[start + rng.randrange(length)] = rng.randrange(256)
        v = golocate.judge("damaged", m)
        assert isinstance(v, (golocate.GoTlsLocation, golocate.GoRefused)), v
        if isinstance(v, golocate.GoRefused):
            outcomes["refused"] += 1
            assert v.reason and v.reason.isprintable() and len(v.reason) < 400, v.reason
            continue
        outcomes["located"] += 1
        for f in v.functions.values():
            assert all(f.entry < r < f.entry + f.size for r in f.rets) and f.entry < f.body < f.entry + f.size
    assert outcomes["refused"] > 20 and outcomes["located"] > 20, outcomes


def _inline_buildinfo(version: bytes):
    """Go >= 1.18 build info with another version string (varint length, bytes), no modinfo."""
    def edit(m, secs):
        s = secs[".go.buildinfo"]
        blob = bytes([len(version)]) + version + b"\0"
        assert len(version) < 128 and 32 + len(blob) <= s.size
        m[s.offset + 32:s.offset + 32 + len(blob)] = blob
    return edit


def test_toolchain_version_strings():
    """Vendor toolchains write longer versions (seen on this machine in Google Cloud SDK's Go
    programs: 'go1.22-20231128-RC02 cl/586117301 +6111acc8e6 X:fieldtrack,boringcrypto');
    a version that is not printable is refused, as it would go into log lines."""
    assert golocate.go_minor("go1.22-20231128-RC02 cl/586117301 +6111acc8e6 X:fieldtrack,boringcrypto") == 22
    assert golocate.go_minor("devel go1.25-abcdef") == 25 and golocate.go_minor("gox") is None


def test_long_vendor_version_is_accepted_and_a_control_character_refused(tmp_path):
    long = b"go1.22-20231128-RC02 cl/586117301 +6111acc8e6 X:fieldtrack,boringcrypto"
    loc = golocate.locate_go_tls(_patched(tmp_path, "vendor", _inline_buildinfo(long)))
    assert loc.go_version == long.decode()
    with pytest.raises(golocate.GoRefused, match=r"unrecognised Go version string 'go1\.22\\n"):
        golocate.locate_go_tls(_patched(tmp_path, "ctl", _inline_buildinfo(b"go1.22\nINJECTED")))
