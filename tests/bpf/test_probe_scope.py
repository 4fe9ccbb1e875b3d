"""Per-process probes (issue 15), judged by the kernel's state, not the tracer's word.

A uprobe is a breakpoint (int3, 0xcc) the kernel writes into a process's memory at the
probed instruction: /proc/PID/mem shows whether a process pays for a probe. Each test
runs the real Tracer in this process (root, real BPF) and real programs: `openssl
s_server` (a TLS server that is not an agent runtime) and a Python TLS client making a
request (a POST: what the kernel captures) every 0.1 s.

Both load a private copy of libssl (LD_LIBRARY_PATH, through a symlink whose target is
not named like a libssl): other agtap processes on the host (other test runs) neither
find nor probe it, so what is in these processes' memory is this tracer's doing only.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import shutil
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from agtap.capture import probepoints
from agtap.capture.chunk import Chunk
from agtap.capture.elfsyms import symbol_addrs
from agtap.capture.records import W_LATE, W_PENDING
from agtap.capture.targets import ldconfig_libssl
from agtap.capture.tracer import Tracer
from agtap.config import Config
from tests.support.agtapd import wait_until
from tests.support.breakpoints import file_offset, first_bytes  # noqa: F401  (test_refctr imports them from here)

SERVER = r"""
import socket, ssl, sys
ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
ctx.load_cert_chain(sys.argv[1], sys.argv[2])
s = socket.create_server(("127.0.0.1", 0))
print(s.getsockname()[1], flush=True)
while True:
    c, _ = s.accept()
    try:
        with ctx.wrap_socket(c, server_side=True) as t:
            t.recv(65536)
            t.sendall(b"HTTP/1.0 200 OK\r\nContent-Length: 2\r\n\r\nok")
    except (ssl.SSLError, OSError):
        pass
"""

CLIENT = r"""
import ctypes, socket, ssl, sys, time
ctypes.CDLL(None).prctl(15, sys.argv[3].encode(), 0, 0, 0)     # PR_SET_NAME: the filter's name for it
ctx = ssl.create_default_context(cafile=sys.argv[2])
print("ready", flush=True)
while True:
    with socket.create_connection(("127.0.0.1", int(sys.argv[1])), timeout=0.3) as s:
        with ctx.wrap_socket(s, server_hostname="localhost") as t:
            t.sendall(b"POST /v1/messages HTTP/1.0\r\nHost: localhost\r\nContent-Length: 2\r\n\r\n{}")
            try:
                while t.recv(65536):
                    pass
            except (ssl.SSLError, OSError):
                pass   # s_server -www answers GET only: it may say nothing (the timeout) or close
    time.sleep(0.1)
"""


def host_libssl() -> str:
    return next(os.path.realpath(p) for p in ldconfig_libssl() if os.path.basename(p) == "libssl.so.3")


class Scene:
    """A private libssl copy, a TLS server and a TLS client using it, and the tracer."""

    def __init__(self, tmp: Path, certs, tracer: Tracer):
        self.tmp, self.tracer = tmp, tracer
        self.lib = str(tmp / "private-crypto.bin")          # not named like a libssl: nobody else finds it
        shutil.copy(host_libssl(), self.lib)
        (tmp / "libs").mkdir()
        os.symlink(self.lib, tmp / "libs" / "libssl.so.3")
        syms = symbol_addrs(self.lib)
        self.data = [pt.addr for pt in probepoints.plan(self.lib, syms)] + [syms["SSL_free"]]
        self.sentinel = syms[probepoints.SENTINEL]
        self.n_probes = 2 * (len(self.data) - 1) + 1            # entry and return of each point, SSL_free
        self.ca, self.env = certs.ca, None
        env = self.env = dict(os.environ, LD_LIBRARY_PATH=str(tmp / "libs"))
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = self.port = s.getsockname()[1]
        self.server = subprocess.Popen(["openssl", "s_server", "-accept", f"127.0.0.1:{port}", "-cert", str(certs.cert),
                                        "-key", str(certs.key), "-www", "-quiet"], env=env,
                                       stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        time.sleep(0.5)
        try:
            self.client = self.start_client("agtap-scli")
            assert tracer._targets.consider(self.lib)    # this tracer probes the copy (the sentinel, and per process)
        except BaseException:
            self.server.kill()
            self.server.wait()
            if hasattr(self, "client"):
                self.client.kill()
                self.client.wait()
            raise

    def start_client(self, name: str) -> subprocess.Popen:
        c = subprocess.Popen([sys.executable, "-c", CLIENT, str(self.port), str(self.ca), name], env=self.env,
                             stdout=subprocess.PIPE, text=True)
        assert c.stdout.readline().strip() == "ready"
        return c

    def breakpoints(self, pid: int) -> int:
        """How many of the copy's data probe points carry a breakpoint in `pid`'s memory."""
        return sum(b == 0xCC for b in first_bytes(pid, self.lib, self.data).values())

    def sentinel_in(self, pid: int) -> bool:
        return first_bytes(pid, self.lib, [self.sentinel]).get(self.sentinel) == 0xCC

    def close(self):
        for p in (self.client, self.server):
            p.kill()
            p.wait()


@contextlib.contextmanager
def polled_tracer(tmp_path: Path, **config):
    """A started Tracer under per-process scope, its ring buffer polled by a thread; `items`: what it gave."""
    items: list = []
    t = Tracer(Config(runtime_dir=str(tmp_path / "run"), event_log=str(tmp_path / "events.jsonl"),
                      cache_dir=str(tmp_path / "cache"), probe_scope="process", **config), items.append)
    t.start()
    stop = threading.Event()

    def poll():
        while not stop.is_set():
            t.poll(50)
    th = threading.Thread(target=poll, daemon=True)
    th.start()
    t.items = items
    try:
        yield t
    finally:
        stop.set()
        th.join()
        t.stop()


@pytest.fixture
def tracer(tmp_path, _need_root):
    with polled_tracer(tmp_path, comms=["agtap-nomatch"]) as t:
        yield t


@pytest.fixture
def scene(tmp_path, certs, tracer):
    s = Scene(tmp_path, certs, tracer)
    yield s
    s.close()


def test_a_server_and_a_filtered_out_client_carry_no_breakpoint_and_a_filter_change_moves_them(scene, tracer):
    server, client = scene.server.pid, scene.client.pid
    scope = tracer._scope
    time.sleep(1.0)                                   # the client has made several connections
    scope.wait_idle()
    assert scene.sentinel_in(server) and scene.sentinel_in(client)    # the copy is probed: its sentinel, host-wide
    assert scene.breakpoints(server) == 0 and scene.breakpoints(client) == 0   # the filter names neither

    tracer.set_filter([], ["agtap-scli"])             # the client, by name: it gets its probes, live
    assert wait_until(lambda: scene.breakpoints(client) == len(scene.data), 10), scene.breakpoints(client)
    assert scene.breakpoints(server) == 0
    assert wait_until(lambda: any(isinstance(i, Chunk) and i.pid == client for i in tracer.items), 10)

    tracer.set_filter([], [])                         # no filter: the default policy; a server is never probed
    scope.wait_idle()
    time.sleep(0.5)
    assert scene.breakpoints(client) == len(scene.data) and scene.breakpoints(server) == 0
    assert tracer.stats().probe_scope == "process" and tracer.stats().watched_processes >= 1

    tracer.set_filter([], ["agtap-nomatch"])          # a filter that leaves it out: detached from it
    assert wait_until(lambda: scene.breakpoints(client) == 0, 10), scene.breakpoints(client)
    assert scene.breakpoints(server) == 0


def test_a_tls_client_is_watched_from_its_first_connection_and_its_exit_detaches(scene, tracer):
    """No filter, a TLS client that is not an agent runtime (openssl s_client, in a loop): the
    sentinel names it at its first connection; when it exits, its probes go."""
    tracer.set_filter([], [])
    tracer._scope.wait_idle(60)
    c = subprocess.Popen(["openssl", "s_client", "-connect", f"127.0.0.1:{scene.port}", "-quiet"], env=scene.env,
                         stdin=subprocess.PIPE, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        assert wait_until(lambda: scene.breakpoints(c.pid) == len(scene.data), 10)
        assert c.pid in tracer._scope._watched and tracer._scope._watched[c.pid].reason == "client"
    finally:
        c.kill()
        c.wait()
    assert wait_until(lambda: c.pid not in tracer._scope._watched, 10)
    assert scene.breakpoints(scene.server.pid) == 0


def test_late_attach_is_counted_once_per_process(scene, tracer):
    """A process marked pending (its probes not live yet) that writes TLS application data:
    counted once, whatever it writes next."""
    client = scene.client.pid
    b = tracer._bpf
    tracer.set_filter([], ["agtap-scli"])             # the write hooks look at selected processes only
    assert wait_until(lambda: scene.breakpoints(client) == len(scene.data), 10)
    tracer._scope.wait_idle()
    before = tracer.counters()["late_attach"]
    b["watch_state"][ctypes.c_uint32(client)] = ctypes.c_uint8(W_PENDING)
    assert wait_until(lambda: tracer.counters()["late_attach"] == before + 1, 10)
    time.sleep(0.5)                                   # more requests: still once
    assert tracer.counters()["late_attach"] == before + 1
    assert b["watch_state"][ctypes.c_uint32(client)].value == W_LATE
    assert tracer.stats().late_attach == before + 1
    assert scene.breakpoints(scene.server.pid) == 0   # the server's writes are not the client's


def test_past_the_uprobe_limit_a_library_goes_host_wide_counted(scene, tracer):
    table = tracer._scope.table
    before = len(table)    # the copy's holders among them: made when it was found
    tracer.set_filter([], ["agtap-scli", "agtap-scli2"])
    assert wait_until(lambda: scene.breakpoints(scene.client.pid) == len(scene.data), 10)
    assert tracer._scope.wait_idle()
    # room for less than a second process's probes (the copy's, and the host libssl's where that is per process)
    table.limit = len(table) + (len(table) - before) - 1
    second = scene.start_client("agtap-scli2")       # named by the filter once it renames itself: the sentinel
    try:
        assert wait_until(lambda: tracer.stats().probe_fallbacks >= 1, 15), tracer.stats()
        # host-wide now: every process mapping the copy carries the breakpoints, the server too
        assert wait_until(lambda: scene.breakpoints(scene.server.pid) == len(scene.data), 10)
        assert len(table) <= table.limit
    finally:
        second.kill()
        second.wait()


def test_a_runtime_that_serves_tls_and_is_no_client_stops_being_watched(scene, tracer, certs):
    """A Python TLS server is a runtime, watched from its exec; its first accepted connection
    (the second sentinel, on SSL_set_accept_state) ends that."""
    tracer.set_filter([], [])
    tracer._scope.wait_idle(60)
    srv = subprocess.Popen([sys.executable, "-c", SERVER, str(certs.cert), str(certs.key)], env=scene.env,
                           stdout=subprocess.PIPE, text=True)
    try:
        port = int(srv.stdout.readline())
        assert wait_until(lambda: scene.breakpoints(srv.pid) == len(scene.data), 10)   # watched: python3*
        assert tracer._scope._watched[srv.pid].reason == "runtime"
        ctx = __import__("ssl").create_default_context(cafile=str(certs.ca))
        with socket.create_connection(("127.0.0.1", port)) as s, ctx.wrap_socket(s, server_hostname="localhost") as t:
            t.sendall(b"GET / HTTP/1.0\r\n\r\n")
            t.recv(100)
        assert wait_until(lambda: scene.breakpoints(srv.pid) == 0, 10), scene.breakpoints(srv.pid)
        assert srv.pid not in tracer._scope._watched
    finally:
        srv.kill()
        srv.wait()
