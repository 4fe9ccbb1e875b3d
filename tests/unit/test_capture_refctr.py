"""refctr.py: learning the reference counter offset the kernel holds at a probe point, from
what the kernel says (its log lines, tracefs's uprobe_events), never from a guess."""

from __future__ import annotations

import os
import struct

import pytest

from agtap.capture import refctr

# as syslog(2)/dmesg -r gives them, and as /dev/kmsg does (this host's kernel 6.18)
KLOG = "<4>[23141.697253] ref_ctr_offset mismatch. inode: 0x52fbc offset: 0x355a0 ref_ctr_offset(old): 0x6 ref_ctr_offset(new): 0x0"
KMSG = "4,51234,23141697253,-;ref_ctr_offset mismatch. inode: 0x52fbc offset: 0x355a0 ref_ctr_offset(old): 0x6 ref_ctr_offset(new): 0x0"
INODE, OFF = 339900, 0x355a0    # 0x52fbc: the host libssl.so.3 these lines were about


def test_a_mismatch_line_of_the_point_says_the_held_offset_in_both_log_formats():
    assert refctr.parse_log([KLOG], INODE, OFF, 0) == 6
    assert refctr.parse_log([KMSG], INODE, OFF, 0) == 6


def test_the_newest_line_of_the_point_wins():
    newer = KLOG.replace("(old): 0x6", "(old): 0x1a8")
    assert refctr.parse_log([KLOG, newer], INODE, OFF, 0) == 0x1A8
    assert refctr.parse_log([newer, KLOG], INODE, OFF, 0) == 6


def test_lines_of_another_inode_offset_or_tried_offset_say_nothing():
    assert refctr.parse_log([KLOG], INODE + 1, OFF, 0) is None                   # another file
    assert refctr.parse_log([KLOG], INODE, 0x35290, 0) is None                   # another point of it
    assert refctr.parse_log([KLOG], INODE, OFF, 6) is None                       # not what was just tried
    other = KLOG.replace("inode: 0x52fbc", "inode: 0x1954be")
    assert refctr.parse_log([KLOG, other], INODE, OFF, 0) == 6                   # a newer line of another file is not it


def test_no_line_or_only_tracefs_line_says_nothing():
    assert refctr.parse_log([], INODE, OFF, 0) is None
    assert refctr.parse_log(["<4>[23141.697746] trace_uprobe: Reference counter offset mismatch.",
                             "<6>[1.0] uprobe: python:11043 failed to unregister, leaking uprobe"], INODE, OFF, 0) is None
    assert refctr.parse_log([KLOG[:-5]], INODE, OFF, 0) is None                  # cut short (a rotated buffer's first line)


def test_uprobe_events_lines():
    text = ("p:uprobes/p__lib_x86_64_linux_gnu_libssl_so_3_0x355a0_bcc_12219 /lib/x86_64-linux-gnu/libssl.so.3:0x00000000000355a0\n"
            "r:agtap/r7162_18 /proc/8517/root/node:0x000000000166bb20\n"
            "p:agtapforeign/h1 /tmp/x/private-crypto.bin:0x00000000000355a0(0x12)\n"
            "garbage\n")
    assert refctr.parse_events(text) == [
        ("uprobes", "p__lib_x86_64_linux_gnu_libssl_so_3_0x355a0_bcc_12219", "/lib/x86_64-linux-gnu/libssl.so.3", 0x355A0, 0),
        ("agtap", "r7162_18", "/proc/8517/root/node", 0x166BB20, 0),
        ("agtapforeign", "h1", "/tmp/x/private-crypto.bin", 0x355A0, 0x12)]


def test_an_event_is_orphaned_when_its_bcc_process_is_gone_or_is_not_bcc(tmp_path):
    (tmp_path / "100").mkdir()
    (tmp_path / "100" / "maps").write_text("7f00-7f10 r-xp 0 08:01 5 /usr/lib/x86_64-linux-gnu/libbcc.so.0.26.0\n")
    (tmp_path / "200").mkdir()
    (tmp_path / "200" / "maps").write_text("7f00-7f10 r-xp 0 08:01 6 /usr/bin/bash\n")
    assert not refctr.orphaned("uprobes", "p__lib_libssl_so_3_0x355a0_bcc_100", str(tmp_path))   # runs, with libbcc
    assert refctr.orphaned("uprobes", "p__lib_libssl_so_3_0x355a0_bcc_200", str(tmp_path))       # its pid reused
    assert refctr.orphaned("uprobes", "p__lib_libssl_so_3_0x355a0_bcc_300", str(tmp_path))       # gone
    assert not refctr.orphaned("agtap", "p300_1", str(tmp_path))                                 # not libbcc's
    assert not refctr.orphaned("uprobes", "mine", str(tmp_path))                                 # no pid in its name


@pytest.fixture
def elf(tmp_path):
    """An ELF64 header and two PT_LOADs: read-only file bytes 0-0x1000, writable 0x2010-0x2110."""
    ph = struct.pack("<IIQQQQQQ", 1, 4, 0, 0, 0, 0x1000, 0x1000, 0x1000)
    ph += struct.pack("<IIQQQQQQ", 1, 6, 0x2010, 0x3010, 0x3010, 0x100, 0x200, 0x1000)
    head = b"\x7fELF\x02\x01\x01" + bytes(9) + struct.pack("<HHIQQQIHHHHHH", 3, 62, 1, 0, 64, 0, 0, 64, 56, 2, 64, 0, 0)
    p = tmp_path / "lib.so"
    p.write_bytes(head + ph + bytes(0x3000))
    return str(p)


def test_a_counter_in_writable_pages_is_data_outside_it_is_not(elf, tmp_path):
    assert not refctr.writes_data(elf, 6)          # the ELF header (what BCC's garbage points at)
    assert not refctr.writes_data(elf, 0x1800)
    assert refctr.writes_data(elf, 0x2000)         # the page the writable segment starts in
    assert refctr.writes_data(elf, 0x2100)
    assert not refctr.writes_data(elf, 0x3000)     # past its last page
    (tmp_path / "text").write_text("not an ELF")
    assert refctr.writes_data(str(tmp_path / "text"), 6)     # cannot tell: as if it were


def test_held_offset_from_the_log(elf, monkeypatch, tmp_path):
    ino = os.stat(elf).st_ino
    line = f"<4>[5.0] ref_ctr_offset mismatch. inode: {ino:#x} offset: 0x1040 ref_ctr_offset(old): 0x6 ref_ctr_offset(new): 0x0"
    monkeypatch.setattr(refctr, "kernel_log", lambda: [line])
    assert refctr.held_offset(elf, 0x1040, 0, str(tmp_path), created=True) == 6
    with pytest.raises(refctr.Unlearned, match="no 'ref_ctr_offset mismatch' line"):
        refctr.held_offset(elf, 0x1050, 0, str(tmp_path), created=True)
    monkeypatch.setattr(refctr, "kernel_log", lambda: [line.replace("(old): 0x6", "(old): 0x2020")])
    with pytest.raises(refctr.Unlearned, match="writable data"):
        refctr.held_offset(elf, 0x1040, 0, str(tmp_path), created=True)

    def denied():
        raise OSError(1, "Operation not permitted")
    monkeypatch.setattr(refctr, "kernel_log", denied)
    with pytest.raises(refctr.Unlearned, match="not permitted.*CAP_SYSLOG"):
        refctr.held_offset(elf, 0x1040, 0, str(tmp_path), created=True)


def test_held_offset_from_tracefs_events(elf, tmp_path):
    other = tmp_path / "other.so"
    other.write_bytes(b"x")
    (tmp_path / "uprobe_events").write_text(
        f"p:foreign/a {elf}:0x0000000000001040(0x6)\n"
        f"p:foreign/b {other}:0x0000000000001040(0x8)\n"          # another file
        f"p:foreign/c {elf}:0x0000000000001050(0xa)\n")           # another point
    assert refctr.held_offset(elf, 0x1040, 0, str(tmp_path), created=False) == 6
    with pytest.raises(refctr.Unlearned, match="none other"):
        refctr.held_offset(elf, 0x1040, 6, str(tmp_path), created=False)   # nothing else there: not a counter clash


def test_doctor_lines_for_held_unlearned_and_free_points(monkeypatch):
    """agtap doctor's probe-point lines, the kernel's answers stood in for (registering a
    uprobe needs root and BPF: tests/bpf/test_refctr.py does it for real)."""
    from agtap.capture import doctor, headers
    from agtap.capture.elfsyms import symbol_addrs
    from agtap.capture.targets import Target
    lib = os.path.realpath("/usr/lib/x86_64-linux-gnu/libssl.so.3")
    monkeypatch.setattr(os, "geteuid", lambda: 0)
    monkeypatch.setattr(headers, "tracefs_path", lambda: "/sys/kernel/tracing")
    answers = {}

    def register(path, off, serial):
        a = answers.get(off, 0)
        if isinstance(a, Exception):
            raise a
        return a
    monkeypatch.setattr(refctr, "test_register", register)
    targets = [Target(lib, symbol_addrs(lib))]
    free = doctor._held_points(targets)
    assert [c.verdict for c in free] == ["ok"] and free[0].detail.startswith("3 checked")   # write, read, SSL_free

    from agtap.capture.elfsyms import file_offset
    from agtap.capture.probepoints import plan
    write, read = (file_offset(lib, pt.addr) for pt in plan(lib, targets[0].symbols))   # 0x355a0, 0x35290 on Debian 12
    answers.update({write: 6, read: refctr.Unlearned("the kernel log has no 'ref_ctr_offset mismatch' line for it")})
    checks = doctor._held_points(targets)
    assert [(c.verdict, c.detail.split(":")[0]) for c in checks] == [("warn", f"{lib} at {write:#x} (SSL_write/SSL_write_ex)"),
                                                                      ("FAIL", f"{lib} at {read:#x} (SSL_read/SSL_read_ex)")]
    assert "reference counter offset 0x6" in checks[0].detail and "probes it anyway" in checks[0].detail
    assert "apt-get install --reinstall libssl3" in checks[0].fix and "reboot" in checks[0].fix
    assert "cannot be learned" in checks[1].detail and "not seen" in checks[1].detail
    monkeypatch.setattr(os, "geteuid", lambda: 1000)
    assert [c.verdict for c in doctor._held_points(targets)] == ["warn"]   # not root: not checked, said


def test_nothing_attaches_through_bccs_garbage_call():
    """BCC 0.26's attach_uprobe/attach_uretprobe pass a garbage reference counter offset
    (refctr.py): agtap, bench/ and tests/ call libbcc with the real prototype instead."""
    import re
    from pathlib import Path
    root = Path(__file__).resolve().parents[2]
    call = re.compile(r"\.attach_u(?:ret)?probe" + r"\(")
    found = [f"{p.relative_to(root)}:{n}" for d in ("agtap", "bench", "tests") for p in (root / d).rglob("*.py")
             for n, line in enumerate(p.read_text(errors="replace").splitlines(), 1) if call.search(line)]
    assert found == []
