"""A probe point another tracer holds with a reference counter offset: agtap probes it anyway.

The kernel keeps one uprobe per probe point (inode, file offset) with one reference
counter offset, and refuses (EINVAL) every probe there with another one; BCC 0.26's
Python binding registers its uprobes with a garbage one (6 here), and the kernel has
been seen to leak such uprobes until reboot (agtap/capture/refctr.py). Here a "foreign
tracer" holds the SSL_write/SSL_write_ex probe point of a PRIVATE copy of libssl (a new
inode: no other tracer on the host touches it) with offset 6, in the two ways the kernel
knows: a tracefs uprobe event "PATH:0xOFF(0x6)" (tracefs itself then refuses agtap's
event with offset 0) and a perf uprobe-PMU event (the uprobe refuses the registration,
the kernel log says which offset it holds). agtap's ProbeTable then attaches there, per
process and host-wide; judged by the kernel's state: the breakpoint (0xcc) in the traced
process's memory at that address, and its program run by a real TLS call through the
copy (a BPF hash counts runs by pid).
"""

from __future__ import annotations

import ctypes
import os
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from agtap.capture import headers, perfevent, probepoints
from agtap.capture.elfsyms import symbol_addrs
from agtap.capture.probetable import HOST, Probe, ProbeTable
from tests.bpf.test_probe_scope import CLIENT, SERVER, first_bytes, host_libssl
from tests.support.agtapd import wait_until

HELD = 0x12   # not 6, what BCC 0.26's binding passes here: its own call cannot pass by luck (in the ELF header: the kernel writes nothing there)
GROUP = "agtapforeign"

PROGRAM = b"""
BPF_HASH(runs, u32, u64);   // written by hit() on every probe hit, read by the test: runs by pid
int hit(struct pt_regs *ctx) { u32 pid = bpf_get_current_pid_tgid() >> 32; runs.increment(pid); return 0; }
"""


class ForeignHolder:
    """Another tracer holding the probe point with reference counter offset HELD, for this
    process only (it does not map the copy: no breakpoint of its own in the processes below)."""

    def __init__(self, kind: str, path: str, offset: int):
        self.kind, self.name, self.fd = kind, f"h{os.getpid()}", -1
        if kind == "tracefs":
            perfevent._write_events(f"p:{GROUP}/{self.name} {path}:{offset:#x}({HELD:#x})")
            with open(os.path.join(perfevent.tracefs(), "events", GROUP, self.name, "id")) as f:
                self.fd = perfevent.open_event(int(f.read()), os.getpid(), inherit=False)
        else:   # the uprobe PMU, as libbcc's bpf_attach_uprobe uses it: config = ref_ctr_offset << 32
            with open("/sys/bus/event_source/devices/uprobe/type") as f:
                pmu = int(f.read())
            self._path = ctypes.create_string_buffer(path.encode())
            attr = perfevent.PerfEventAttr(type=pmu, size=ctypes.sizeof(perfevent.PerfEventAttr), config=HELD << 32,
                                           sample_period=1, wakeup_events=1,
                                           config1=ctypes.addressof(self._path), config2=offset)
            fd = perfevent._libc.syscall(ctypes.c_long(perfevent.SYS_PERF_EVENT_OPEN), ctypes.byref(attr),
                                         ctypes.c_long(os.getpid()), ctypes.c_long(-1), ctypes.c_long(-1),
                                         ctypes.c_long(perfevent.PERF_FLAG_FD_CLOEXEC))
            assert fd >= 0, os.strerror(ctypes.get_errno())
            self.fd = fd

    def close(self) -> None:
        if self.fd >= 0:
            os.close(self.fd)
        if self.kind == "tracefs":
            perfevent._write_events(f"-:{GROUP}/{self.name}")


@pytest.fixture(scope="module")
def copy(tmp_path_factory, certs, _need_root):
    """The private libssl copy, a TLS server (host libssl) and two processes mapping the copy:
    a TLS client using it, and a bystander that only loads it."""
    tmp = tmp_path_factory.mktemp("refctr")
    lib = str(tmp / "private-crypto.bin")            # not named like a libssl: nobody else finds it
    shutil.copy(host_libssl(), lib)
    (tmp / "libs").mkdir()
    os.symlink(lib, tmp / "libs" / "libssl.so.3")
    env = dict(os.environ, LD_LIBRARY_PATH=str(tmp / "libs"))
    procs = []
    try:
        server = subprocess.Popen([sys.executable, "-c", SERVER, str(certs.cert), str(certs.key)],
                                  stdout=subprocess.PIPE, text=True)
        procs.append(server)
        port = int(server.stdout.readline())
        client = subprocess.Popen([sys.executable, "-c", CLIENT, str(port), str(certs.ca), "agtap-refctr"], env=env,
                                  stdout=subprocess.PIPE, text=True)
        procs.append(client)
        assert client.stdout.readline().strip() == "ready"
        bystander = subprocess.Popen([sys.executable, "-c", "import ssl, time; time.sleep(600)"], env=env)
        procs.append(bystander)
        write = next(pt.addr for pt in probepoints.plan(lib, symbol_addrs(lib)) if pt.covers.startswith("SSL_write"))
        assert wait_until(lambda: write in first_bytes(bystander.pid, lib, [write]), 10)   # it maps the copy
        os.environ["BCC_KERNEL_SOURCE"] = headers.find_header_tree(str(tmp / "rt")).path
        from bcc import BPF
        b = BPF(text=PROGRAM)
        yield type("Copy", (), dict(lib=lib, write=write, client=client.pid, bystander=bystander.pid, bpf=b))
        b.cleanup()
    finally:
        for p in procs:
            p.kill()
            p.wait()


def file_offset(lib: str, addr: int) -> int:
    from bcc import BPF
    return BPF._check_path_symbol(lib.encode(), b"", addr, -1)[1]


def runs(b, pid: int) -> int:
    v = b[b"runs"].get(ctypes.c_uint32(pid))
    return v.value if v else 0


@pytest.mark.parametrize("holder", ["tracefs", "pmu"])
@pytest.mark.parametrize("scope", ["process", "host"])
def test_a_point_held_with_another_counter_offset_is_probed_with_it(copy, holder, scope, caplog):
    off = file_offset(copy.lib, copy.write)
    foreign = ForeignHolder(holder, copy.lib, off)
    table = ProbeTable(copy.bpf, 100)
    try:
        at = lambda pid: first_bytes(pid, copy.lib, [copy.write]).get(copy.write)   # noqa: E731
        assert at(copy.client) != 0xCC and at(copy.bystander) != 0xCC   # the holder's breakpoints are its own process's
        caplog.set_level("INFO", logger="agtap.capture.probes")
        before = runs(copy.bpf, copy.client)
        table.attach(copy.lib, [Probe(copy.write, "hit"), Probe(copy.write, "hit", True)],
                     copy.client if scope == "process" else HOST)
        assert caplog.text.count(f"reference counter offset {HELD:#x}") == 1   # learned once for the point, and said
        assert at(copy.client) == 0xCC                                     # the breakpoint is in
        assert (at(copy.bystander) == 0xCC) == (scope == "host")           # per process: the traced one only
        assert wait_until(lambda: runs(copy.bpf, copy.client) >= before + 4, 10)   # real TLS writes ran the program
        events = open(os.path.join(perfevent.tracefs(), "uprobe_events")).read()
        if scope == "process":   # agtap's own event carries the held offset
            assert any(line.startswith(f"p:{perfevent.GROUP}/p{os.getpid()}_") and f"({HELD:#x})" in line
                       for line in events.splitlines()), events
    finally:
        table.close()
        foreign.close()
    time.sleep(0.2)
    assert at(copy.client) != 0xCC                                         # and gone again
    events = open(os.path.join(perfevent.tracefs(), "uprobe_events")).read()
    assert f"{GROUP}/" not in events and f" {copy.lib}:" not in events     # nothing left registered


@pytest.mark.parametrize("holder", ["tracefs", "pmu"])
def test_doctor_names_the_held_point_and_leaves_nothing_registered(copy, holder):
    from agtap.capture import doctor
    from agtap.capture.targets import Target
    off = file_offset(copy.lib, copy.write)
    found = [Target(copy.lib, symbol_addrs(copy.lib))]
    free = doctor._held_points(found)
    assert [c.verdict for c in free] == ["ok"] and "none held" in free[0].detail, free
    foreign = ForeignHolder(holder, copy.lib, off)
    try:
        checks = doctor._held_points(found)
        held = [c for c in checks if f"at {off:#x} (SSL_write" in c.detail]
        assert len(held) == 1 and held[0].verdict == "warn", checks
        assert f"reference counter offset {HELD:#x}" in held[0].detail and "probes it anyway" in held[0].detail
        assert "reboot" in held[0].fix and "reinstall" in held[0].fix
        assert len(checks) == 1                       # the copy's other points are free
    finally:
        foreign.close()
    events = open(os.path.join(perfevent.tracefs(), "uprobe_events")).read()
    assert f"p:{perfevent.GROUP}/p{os.getpid()}_9" not in events and f" {copy.lib}:" not in events   # nothing left
    assert first_bytes(copy.client, copy.lib, [copy.write])[copy.write] != 0xCC
