"""Target discovery (agtap/capture/targets.py): files named by what a process maps, opened
through the process's own view, one attach per file. Runs on a /proc tree built in tmp
(a container with its own copy of the host's libssl) and on this very process."""

from __future__ import annotations

import logging
import os
import shutil
import ssl  # noqa: F401  (maps libssl into this process)
from pathlib import Path

import pytest

from agtap.capture import targets
from agtap.capture.procfiles import Mapping, parse_maps_line
from agtap.capture.targets import TargetSet

HOST_LIBSSL = next(p for p in ("/usr/lib/x86_64-linux-gnu/libssl.so.3", "/lib/x86_64-linux-gnu/libssl.so.3")
                   if os.path.exists(p))
CID = "c0ffee" + "0" * 58


def maps_line(path: str, st: os.stat_result, span: str = "7f0000000000-7f0000001000", deleted=False) -> str:
    dev = f"{os.major(st.st_dev):02x}:{os.minor(st.st_dev):02x}"
    return f"{span} r-xp 00000000 {dev} {st.st_ino}                 {path}{' (deleted)' if deleted else ''}\n"


@pytest.mark.parametrize("line,want", [
    ("7f1-7f2 r--p 00000000 fe:00 339380   /usr/lib/x86_64-linux-gnu/libssl.so.3\n",
     Mapping("/usr/lib/x86_64-linux-gnu/libssl.so.3", (os.makedev(0xfe, 0), 339380), "7f1-7f2", False)),
    ("7f1-7f2 r-xp 00000000 103:02 12   /srv/lib/libssl.so.3 (deleted)\n",
     Mapping("/srv/lib/libssl.so.3", (os.makedev(0x103, 2), 12), "7f1-7f2", True)),
    ("7f1-7f2 rw-p 00000000 00:00 0 \n", None),
    ("7f1-7f2 rw-p 00000000 00:00 0   [heap]\n", None),
    ("7f1-7f2 r-xp 00000000 00:00 0   [vdso]\n", None),
])
def test_maps_lines(line, want):
    assert parse_maps_line(line) == want


class Recorder:
    def __init__(self):
        self.calls: list[str] = []

    def __call__(self, path, target):
        assert {"SSL_read", "SSL_write"} <= target.symbols.keys()
        self.calls.append(path)


def test_this_process_libssl_is_the_host_file_and_attached_once():
    rec = Recorder()
    ts = TargetSet(rec, logging.getLogger("test"))
    ts.scan_process(os.getpid())
    ts.scan_process(os.getpid())
    assert len(rec.calls) == 1 and os.path.samefile(rec.calls[0], HOST_LIBSSL)
    assert ts.targets[0].where == "host" and ts.attached == [ts.targets[0].path]
    assert not ts.consider(HOST_LIBSSL)    # the same inode by another route
    assert len(rec.calls) == 1


@pytest.fixture
def container(tmp_path: Path):
    """/proc/4242 of a Docker container whose root holds its own libssl (a copy: another
    inode at the host's path), which the process maps."""
    root = tmp_path / "rootfs"
    lib = root / "usr/lib/x86_64-linux-gnu"
    lib.mkdir(parents=True)
    shutil.copy(HOST_LIBSSL, lib / "libssl.so.3")
    os.symlink("libssl.so.3", lib / "libssl.so")
    proc = tmp_path / "proc" / "4242"
    proc.mkdir(parents=True)
    os.symlink(root, proc / "root")
    (proc / "cgroup").write_text(f"0::/system.slice/docker-{CID}.scope\n")
    st = os.stat(lib / "libssl.so.3")
    (proc / "maps").write_text(maps_line("/usr/lib/x86_64-linux-gnu/libssl.so.3", st))
    return tmp_path / "proc", root, proc


def test_a_containers_libssl_is_found_in_its_root_and_named_by_its_container(container):
    proc_root, root, proc = container
    rec = Recorder()
    ts = TargetSet(rec, logging.getLogger("test"), proc_root=str(proc_root))
    ts.scan_process(4242)
    assert rec.calls == [f"{proc}/root/usr/lib/x86_64-linux-gnu/libssl.so.3"]   # not the host's file
    t = ts.targets[0]
    assert (t.path, t.where, t.pid) == ("/usr/lib/x86_64-linux-gnu/libssl.so.3", f"container {CID[:12]}", 4242)
    assert ts.attached == [f"/usr/lib/x86_64-linux-gnu/libssl.so.3 [container {CID[:12]}, pid 4242, "
                           f"via {proc}/root/usr/lib/x86_64-linux-gnu/libssl.so.3]"]
    ts.scan_process(4242)                      # its maps line names the same (dev, inode)
    assert len(rec.calls) == 1


def test_a_mapped_file_deleted_and_replaced_is_opened_through_map_files(container, tmp_path):
    proc_root, root, proc = container
    old = tmp_path / "old-libssl.so.3"          # what the process still maps
    shutil.copy(HOST_LIBSSL, old)
    private = root / "opt/app/lib"
    private.mkdir(parents=True)
    shutil.copy(HOST_LIBSSL, private / "libssl.so.3")   # what the path names now: another inode
    span = "7f0000100000-7f0000200000"
    (proc / "maps").write_text(maps_line("/opt/app/lib/libssl.so.3", os.stat(old), span, deleted=True))
    (proc / "map_files").mkdir()
    os.symlink(old, proc / "map_files" / span)
    rec = Recorder()
    ts = TargetSet(rec, logging.getLogger("test"), proc_root=str(proc_root))
    ts.scan_process(4242)
    assert f"{proc}/map_files/{span}" in rec.calls
    assert f"{proc}/root/opt/app/lib/libssl.so.3" not in rec.calls
    assert len(rec.calls) == 2                 # the root's own libssl, found by path, and the deleted one


def test_a_process_gone_before_its_files_are_opened_attaches_nothing(container):
    proc_root, root, proc = container
    os.unlink(proc / "root")
    rec = Recorder()
    ts = TargetSet(rec, logging.getLogger("test"), proc_root=str(proc_root))
    ts.scan_process(4242)
    assert rec.calls == []


def test_root_lib_globs_cover_debian_alpine_and_rpm_layouts():
    import fnmatch
    for path in ("usr/lib/x86_64-linux-gnu/libssl.so.3", "lib/libssl.so.3", "usr/lib64/libssl.so.3",
                 "usr/lib/aarch64-linux-gnu/libssl.so.3"):
        assert any(fnmatch.fnmatch(path, g) for g in targets.ROOT_LIB_GLOBS), path


# --- Go executables: recognised by their build info, located off the calling thread ---

def test_an_executed_go_program_is_located_by_the_worker_and_probed_once(tmp_path):
    from agtap.capture import golocate, goprobes
    from tests.support.gobuild import go_binary
    client, notls = str(go_binary("llmclient", stripped=True)), str(go_binary("notls"))
    plain = tmp_path / "stripped-true"           # neither Go nor OpenSSL: no probe, no search
    shutil.copyfile("/bin/true", plain)
    got = []
    ts = TargetSet(lambda path, syms: got.append(("ssl", path)), logging.getLogger("test"),
                   attach_go=lambda path, probes: got.append(("go", path, probes)))
    for p in (client, client, notls, str(plain)):
        assert ts.consider(p, exe=True) is False      # at once: the worker does the rest
    ts._work.join()
    [(kind, path, probes)] = got
    loc = golocate.locate_go_tls(client)
    assert (kind, path, loc.method) == ("go", client, "pclntab")
    assert probes == goprobes.plan(loc)
    assert ts.attached == [client] and ts.go[client] == loc.describe()
    assert ts.go[notls].startswith("not probed: go1.") and "no crypto/tls use" in ts.go[notls]
    assert str(plain) not in ts.go
    ts.close()


def test_without_a_go_attach_function_go_programs_are_not_looked_at():
    from tests.support.gobuild import go_binary
    ts = TargetSet(lambda path, syms: None, logging.getLogger("test"))    # as `agtap doctor` builds it
    assert ts.consider(str(go_binary("llmclient")), exe=True) is False
    assert ts._worker is None and ts.go == {}
