"""The BoringSSL locator on the real Bun and Claude Code binaries' bytes (no root, no BPF).

The binaries come from npm (pinned, cached: tests/support/npmbins.py). Expected addresses
were read by hand off `objdump -d` listings of each binary: SSL_write is the function whose
error sites report, in source order, ERR_R_SHOULD_NOT_HAVE_BEEN_CALLED (0x42),
SSL_R_UNINITIALIZED (0xe2), SSL_R_SSL_HANDSHAKE_FAILURE (0xd7) and SSL_R_BAD_LENGTH (0x6f)
with ssl_lib.cc's address; SSL_read begins with the QUIC check (cmpq $0,..(%rdi), then
0x42) and calls ssl_read_impl. test_objdump_agrees checks the same with GNU objdump, a
disassembler the locator does not use.
"""

from __future__ import annotations

import functools
import logging
import os
import re
import shutil
import subprocess

import pytest

from agtap.capture import boringcache, boringssl
from tests.support import npmbins

EXPECTED = {   # binary -> (SSL_write, SSL_read, the SSL destructor ~ssl_st)
    ("bun", "1.1.30"): (0x5931A40, 0x5930D80, 0x592F070),
    ("bun", "1.2.15"): (0x5E89EC0, 0x5E89200, 0x5E87570),
    ("bun", "1.4.5"): (0x2607C30, 0x2586500, 0x25B5910),
    ("claude", npmbins.CLAUDE_CODE): (0x3531300, 0x35314B0, 0x356E0A0),
}
# SSL_new (its error site: `mov $0xb9,%e(s|d)x`, SSL_R_NULL_SSL_CTX) and how far into it, by
# objdump, its failure path calls the destructor (the UniquePtr<SSL>'s deleter, inlined)
SSL_NEW = {
    ("bun", "1.1.30"): (0x592FB60, 0x80F),
    ("bun", "1.2.15"): (0x5E87FC0, 0x968),
    ("bun", "1.4.5"): (0x2568EE0, 0x7E3),
    ("claude", npmbins.CLAUDE_CODE): (0x34EED10, 0x7CA),
}


def binary(which: tuple[str, str]):
    return npmbins.bun(which[1]) if which[0] == "bun" else npmbins.claude(which[1])


@functools.lru_cache(maxsize=None)
def located(which: tuple[str, str]) -> boringssl.Located:
    return boringssl.locate(str(binary(which)))


@pytest.mark.parametrize("which", EXPECTED, ids=[f"{a}-{b}" for a, b in EXPECTED])
def test_locates_ssl_write_and_ssl_read(which):
    loc = located(which)
    assert (loc.write, loc.read, loc.free) == EXPECTED[which]
    assert loc.how.startswith("ssl_lib.cc error sites")
    assert f"SSL destructor at {loc.free:#x} (called by SSL_new at {SSL_NEW[which][0]:#x}" in loc.how
    assert loc.symbols == {"SSL_write": loc.write, "SSL_read": loc.read, "SSL_free": loc.free}
    assert boringssl.has_marker(str(binary(which)))


def _objdump(path, start: int, length: int) -> list[str]:
    out = subprocess.run(["objdump", "-d", "--no-show-raw-insn", f"--start-address={start:#x}",
                          f"--stop-address={start + length:#x}", str(path)],
                         capture_output=True, text=True, check=True).stdout
    return [ln.split("\t", 1)[1] for ln in out.splitlines() if re.match(r"\s+[0-9a-f]+:\t", ln)]


def objdump_agrees_on_write_and_read(path, write: int, read: int) -> None:
    w = _objdump(path, write, 0x1A0)
    assert w[0].startswith("push   %rbp"), w[:3]
    # the immediates of SSL_write's four OPENSSL_PUT_ERROR(SSL, ...) calls, in source order
    imms = [int(m.group(1), 16) for ln in w if (m := re.match(r"mov\s+\$0x([0-9a-f]+),%e(?:dx|si)$", ln))]
    reasons = [i for i in imms if i in (0x42, 0xE2, 0xD7, 0x6F)]
    assert sorted(set(reasons)) == [0x42, 0x6F, 0xD7, 0xE2], w
    r = _objdump(path, read, 0x40)
    assert r[0].startswith("push   %rbp")
    quic = next(ln for ln in r if ln.startswith("cmpq"))
    assert re.match(r"cmpq\s+\$0x0,0x[0-9a-f]+\(%rdi\)$", quic), quic
    assert any(re.match(r"mov\s+\$0x42,%e(?:dx|si)$", ln) for ln in r), r


def objdump_agrees_on_the_destructor(path, free: int) -> None:
    d = _objdump(path, free, 0x80)
    assert d[0].startswith("push   %rbp"), d[:3]                  # emulated by the kernel: no step
    this = re.match(r"mov\s+%rdi,%(r\w+)$", next(ln for ln in d if ln.startswith("mov    %rdi,")))
    assert this, d
    body = _objdump(path, free, 0x100)
    reg = this.group(1)
    k = next(i for i, ln in enumerate(body) if re.match(r"call\s+\*0x10\(%rax\)$", ln))
    assert body[k - 1] == f"mov    %{reg},%rdi" and f"mov    (%{reg}),%rax" in body[k - 4:k], body[k - 4:k + 1]


NEED_OBJDUMP = pytest.mark.skipif(shutil.which("objdump") is None, reason="binutils missing: make setup installs it")


@NEED_OBJDUMP
@pytest.mark.parametrize("which", EXPECTED, ids=[f"{a}-{b}" for a, b in EXPECTED])
def test_objdump_agrees(which):
    write, read, _ = EXPECTED[which]
    objdump_agrees_on_write_and_read(binary(which), write, read)


@NEED_OBJDUMP
@pytest.mark.parametrize("which", EXPECTED, ids=[f"{a}-{b}" for a, b in EXPECTED])
def test_objdump_agrees_on_the_ssl_destructor(which):
    free = EXPECTED[which][2]
    new, call_at = SSL_NEW[which]
    path = binary(which)
    objdump_agrees_on_the_destructor(path, free)
    n = _objdump(path, new, call_at + 5)
    assert re.match(rf"call\s+{free:x} ", n[-1]), n[-3:]           # SSL_new's failure path calls it
    assert any(re.match(r"mov\s+\$0xb9,%e(?:si|dx)$", ln) for ln in n), n[:24]


@NEED_OBJDUMP
@pytest.mark.parametrize("version", npmbins.claude_versions())
def test_every_claude_code_the_suite_has_is_located_and_objdump_agrees(version):
    # the pinned release, and the newest one when setup could ask the registry (network):
    # its addresses are not known in advance, so they are checked with objdump, not compared
    loc = located(("claude", version))
    assert loc.free, loc.how
    objdump_agrees_on_write_and_read(npmbins.claude(version), loc.write, loc.read)
    objdump_agrees_on_the_destructor(npmbins.claude(version), loc.free)


def _damaged(tmp_path, old: bytes, new: bytes, at: int | None = None):
    src = npmbins.bun("1.4.5")
    dst = tmp_path / "bun-damaged"
    shutil.copyfile(src, dst)
    with open(dst, "r+b") as f:
        if at is None:
            data = f.read()
            at = data.index(old)
        f.seek(at)
        f.write(new)
    return dst


def test_a_damaged_path_string_is_refused(tmp_path):
    p = _damaged(tmp_path, b"/ssl/ssl_lib.cc\0", b"/ssl/ssl_lib.cX\0")
    assert boringssl.has_marker(str(p))            # BoringSSL is still there...
    with pytest.raises(boringssl.Refusal, match="no ssl_lib.cc path string"):
        boringssl.locate(str(p))                    # ...but not located: no probe


def test_a_prologue_that_is_not_a_push_is_refused(tmp_path):
    # SSL_write's first byte (push %rbp) replaced by a nop: a probe there would be stepped,
    # and the function no longer looks like what the error sites say
    import mmap
    write, _, _ = EXPECTED[("bun", "1.4.5")]
    with open(npmbins.bun("1.4.5"), "rb") as f, mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) as m:
        seg = next(s for s in boringssl.Elf(m).loads if s.vaddr <= write < s.vaddr + s.size)
    p = _damaged(tmp_path, b"", b"\x90", at=seg.offset + write - seg.vaddr)
    with pytest.raises(boringssl.Refusal, match="SSL_write"):
        boringssl.locate(str(p))


def test_without_ssl_new_the_connection_end_is_not_located_but_reads_and_writes_are(tmp_path):
    # SSL_new's NULL_SSL_CTX reason (0xb9 in `mov $0xb9,%edx` at 0x25690d9) changed: no
    # function is known to be SSL_new, so no destructor is guessed; SSL_read/SSL_write still are
    import mmap
    at = 0x25690D9 + 1
    with open(npmbins.bun("1.4.5"), "rb") as f, mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) as m:
        seg = next(s for s in boringssl.Elf(m).loads if s.vaddr <= at < s.vaddr + s.size)
        assert m[seg.offset + at - seg.vaddr] == 0xB9
    p = _damaged(tmp_path, b"", b"\xba", at=seg.offset + at - seg.vaddr)
    loc = boringssl.locate(str(p))
    assert (loc.write, loc.read, loc.free) == EXPECTED[("bun", "1.4.5")][:2] + (0,)
    assert "connection end not located (0 functions report only SSL_new's error" in loc.how
    assert "SSL_free" not in loc.symbols


def test_a_position_independent_executable_with_chromiums_boringssl_is_refused_clearly(tmp_path):
    # Chromium (Debian's chromium 156, and Electron, which embeds it) keeps BoringSSL under
    # third_party/boringssl/src/ and is a PIE: "present, not located", never "no BoringSSL".
    # A PIE (/bin/ls) carrying Chromium's path string stands in for its 297 MB binary here.
    p = tmp_path / "pie-with-chromium-boringssl"
    p.write_bytes(open(os.path.realpath("/bin/ls"), "rb").read() + b"../../third_party/boringssl/src/ssl/ssl_lib.cc\0")
    assert boringssl.has_marker(str(p))
    v = boringcache.verdict(str(p), str(tmp_path / "cache"))
    assert not v.located and not v.symbols
    assert v.line().startswith("BoringSSL present, not located: position-independent executable"), v.line()


def test_a_binary_without_boringssl_has_no_marker():
    assert not boringssl.has_marker(os.path.realpath("/bin/ls"))
    with pytest.raises(boringssl.Refusal, match="no ssl_lib.cc path string|position-independent"):
        boringssl.locate(os.path.realpath("/bin/ls"))


# --- the cache of verdicts ---

def test_verdict_is_cached_per_build_and_reused(tmp_path, monkeypatch):
    path = str(npmbins.bun("1.4.5"))
    v = boringcache.verdict(path, str(tmp_path))
    assert v.located and not v.cached and (v.write, v.read, v.free) == EXPECTED[("bun", "1.4.5")]
    files = list((tmp_path / "boringssl").iterdir())
    assert [f.name for f in files] == [f"{v.build_id}-{os.path.getsize(path)}.json"]
    monkeypatch.setattr(boringssl, "locate", lambda p: pytest.fail("scanned again despite the cache"))
    again = boringcache.verdict(path, str(tmp_path))
    assert again.cached and (again.write, again.read, again.free) == (v.write, v.read, v.free)
    assert "build-id " + v.build_id in again.line()
    assert [x.path for x in boringcache.seen(str(tmp_path))] == [path]


def test_doctor_still_lists_an_entry_written_before_the_destructor_was_located(tmp_path):
    import json
    path = str(npmbins.bun("1.4.5"))
    boringcache.verdict(path, str(tmp_path))
    f = next((tmp_path / "boringssl").iterdir())
    d = json.loads(f.read_text())
    del d["free"]
    d["format"] = 1
    f.write_text(json.dumps(d))
    [v] = boringcache.seen(str(tmp_path))                       # listed (agtap doctor)...
    assert v.path == path and v.located and v.free == 0
    assert boringcache.load(str(tmp_path), path, os.stat(path), v.build_id) is None   # ...but never used


@pytest.mark.parametrize("spoil", ["corrupt", "mtime", "not-a-push", "free-not-a-push", "old-format", "other-build"])
def test_a_corrupt_or_foreign_entry_is_ignored(tmp_path, spoil):
    import json
    path = str(npmbins.bun("1.4.5"))
    v = boringcache.verdict(path, str(tmp_path))
    f = next((tmp_path / "boringssl").iterdir())
    d = json.loads(f.read_text())
    if spoil == "corrupt":
        f.write_text(f.read_text()[:40])
    elif spoil == "mtime":
        d["mtime_ns"] += 1
        f.write_text(json.dumps(d))
    elif spoil == "not-a-push":
        d["write"] += 1            # inside the prologue: never probed
        f.write_text(json.dumps(d))
    elif spoil == "free-not-a-push":
        d["free"] += 1
        f.write_text(json.dumps(d))
    elif spoil == "old-format":
        d["format"] = 1            # before the destructor was located: scanned again
        f.write_text(json.dumps(d))
    else:
        d["build_id"] = "0" * 40
        f.write_text(json.dumps(d))
    assert boringcache.load(str(tmp_path), path, os.stat(path), v.build_id) is None


# --- the worker thread of targets.TargetSet ---

def _worker_set(tmp_path):
    from agtap.capture.targets import TargetSet
    attached = []
    ts = TargetSet(lambda path, t: attached.append((path, dict(t.symbols))), logging.getLogger("test"),
                   cache_dir=str(tmp_path))
    return ts, attached


def test_an_executed_bun_is_located_off_the_calling_thread_and_attached_once(tmp_path):
    path = str(npmbins.bun("1.4.5"))
    ts, attached = _worker_set(tmp_path)
    assert ts.consider(path, exe=True) is False      # returns at once: the worker does the rest
    assert ts.consider(path, exe=True) is False      # the same file again: not queued twice
    ts._work.join()
    write, read, free = EXPECTED[("bun", "1.4.5")]
    assert attached == [(path, {"SSL_write": write, "SSL_read": read, "SSL_free": free})]
    assert ts.boringssl[path].located and ts.attached == [path]
    ts.close()


def test_a_scan_that_ends_after_capture_stopped_probes_nothing(tmp_path, monkeypatch):
    path = str(npmbins.bun("1.4.5"))
    ts, attached = _worker_set(tmp_path)
    real = boringcache.verdict

    def slow_verdict(p, cache_dir):
        ts.close()                                    # capture stops while the binary is scanned
        return real(p, cache_dir)

    monkeypatch.setattr(boringcache, "verdict", slow_verdict)
    ts.consider(path, exe=True)
    ts._work.join()
    assert attached == [] and ts.attached == []


def test_processes_and_connections_before_the_probes_went_live_are_counted(tmp_path, monkeypatch):
    # Two processes run a binary while its first scan runs (held here): one exits before the
    # probes go live (every call of its missed), the other holds one TCP connection then
    # (calls written on it until then missed). The binary is python itself, the scan a stand-in:
    # what is tested is the counting around the worker, not the locator.
    import socket
    import sys
    import threading
    from agtap.capture.procfiles import key_of
    srv = socket.socket()
    srv.bind(("127.0.0.1", 0))
    srv.listen(4)
    hold = (f"import socket, time; s = socket.create_connection(('127.0.0.1', {srv.getsockname()[1]})); "
            "print('up', flush=True); time.sleep(60)")
    live = subprocess.Popen([sys.executable, "-c", hold], stdout=subprocess.PIPE, text=True)
    brief = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    go = threading.Event()

    def held_verdict(path, cache_dir):
        go.wait(30)
        return boringcache.Verdict(path, "", 0, 0, True, "a stand-in", 0x1000, 0x2000)

    monkeypatch.setattr(boringssl, "has_marker", lambda p: True)
    monkeypatch.setattr(boringcache, "verdict", held_verdict)
    ts, attached = _worker_set(tmp_path)
    ts._roots.add(key_of("/"))          # the host's libssl files are not what this is about
    try:
        assert live.stdout.readline() == "up\n"
        ts.scan_process(live.pid)        # queued: the scan starts
        ts.scan_process(brief.pid)       # the same binary while it runs
        brief.kill()
        brief.wait()                     # gone before the probes go live
        assert (ts.unprobed_processes, ts.unprobed_connections) == (0, 0)
        go.set()
        ts._work.join()
        assert len(attached) == 1
        assert (ts.unprobed_processes, ts.unprobed_connections) == (1, 1)
        ts.scan_process(live.pid)        # probed now: nothing more is counted
        assert (ts.unprobed_processes, ts.unprobed_connections) == (1, 1)
    finally:
        for p in (live, brief):
            p.kill()
            p.wait()
        srv.close()
        ts.close()


def test_a_go_executables_processes_before_its_probes_went_live_are_counted_too(tmp_path, monkeypatch):
    """Go as BoringSSL above: a Go executable found at its first exec is located off the poll
    thread while its first processes run; those that exited meanwhile are counted, apart."""
    import subprocess
    import sys
    import threading
    from agtap.capture import golocate, goprobes
    from agtap.capture.procfiles import key_of
    from agtap.capture.targets import TargetSet
    brief = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    go = threading.Event()

    class Located:
        def describe(self):
            return "a stand-in"

    def held_locate(path):
        go.wait(30)
        return Located()
    monkeypatch.setattr(golocate, "is_go_binary", lambda p: True)
    monkeypatch.setattr(golocate, "locate_go_tls", held_locate)
    monkeypatch.setattr(goprobes, "plan", lambda loc: [])
    attached = []
    ts = TargetSet(lambda path, t: None, logging.getLogger("test"), attach_go=lambda path, probes: attached.append(path))
    ts._roots.add(key_of("/"))
    try:
        ts.scan_process(brief.pid)       # queued: the location starts
        brief.kill()
        brief.wait()                     # gone before the probes go live
        go.set()
        ts._work.join()
        assert len(attached) == 1
        assert (ts.go_unprobed_processes, ts.unprobed_processes) == (1, 0)
    finally:
        brief.kill()
        brief.wait()
        ts.close()
