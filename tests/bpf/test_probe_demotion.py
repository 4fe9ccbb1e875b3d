"""Demotion (--demote-after-requests): a watched process that makes only requests agtap ignores
loses its data probes, judged by the breakpoint bytes in its memory (test_probe_scope.py's Scene:
a private libssl copy, `openssl s_server`, a Python client POSTing every 0.1 s)."""

from __future__ import annotations

import ctypes
import subprocess
import sys
import time

import pytest

from agtap.capture.records import W_DEMOTED
from tests.bpf.test_probe_scope import Scene, polled_tracer
from tests.support.agtapd import wait_until

N = 5

GETTER = r"""
import ctypes, socket, ssl, sys, time
ctypes.CDLL(None).prctl(15, sys.argv[3].encode(), 0, 0, 0)     # PR_SET_NAME
ctx = ssl.create_default_context(cafile=sys.argv[2])
print("ready", flush=True)
while True:
    try:
        with socket.create_connection(("127.0.0.1", int(sys.argv[1])), timeout=5) as s:
            with ctx.wrap_socket(s, server_hostname="localhost") as t:
                t.sendall(b"GET / HTTP/1.0\r\nHost: localhost\r\n\r\n")   # s_server -www's status page: no LLM call
                while t.recv(65536):
                    pass
    except (ssl.SSLError, OSError):
        pass   # a busy machine: the next one
    time.sleep(0.1)
"""


def diagnose(tracer, pid: int) -> str:
    scope = tracer._scope
    try:
        c = tracer._bpf["watch_cost"][ctypes.c_uint32(pid)]
        cost = (c.requests, c.bytes)
    except KeyError:
        cost = None
    conns = [(k.pid, v.state) for k, v in tracer._bpf["conns"].items() if k.pid == pid]
    return (f"pid {pid}: watched {scope._watched.get(pid)}, demoted {pid in scope._demoted}, kernel cost {cost}, "
            f"its conns {conns}, stats {tracer.stats()}")


# by count (N requests), or by volume (s_server -www's status page is a few KiB: 16 KiB is a few requests)
POLICIES = {"requests": ({"demote_after_requests": N}, "ignored requests"),
            "mib": ({"demote_after_mib": 16 / 1024}, "MiB ignored in")}


@pytest.fixture(params=list(POLICIES))
def tracer(request, tmp_path, _need_root):
    with polled_tracer(tmp_path, **POLICIES[request.param][0]) as t:
        t.why = POLICIES[request.param][1]
        yield t


def test_a_client_making_only_ignored_requests_is_demoted_and_its_breakpoints_go(tmp_path, certs, tracer, caplog):
    scene = Scene(tmp_path, certs, tracer)
    getter = subprocess.Popen([sys.executable, "-c", GETTER, str(scene.port), str(scene.ca), "agtap-get"],
                              env=scene.env, stdout=subprocess.PIPE, text=True)
    try:
        assert getter.stdout.readline().strip() == "ready"
        scope = tracer._scope
        assert wait_until(lambda: scene.breakpoints(getter.pid) == len(scene.data) or getter.pid in scope._demoted, 10)
        # a runtime (python3): watched from its exec, so its first requests go through its probes...
        assert wait_until(lambda: getter.pid in scope._watched or getter.pid in scope._demoted, 10)
        # ...until N of them were ignored: demoted, its breakpoints gone, the reason logged and counted
        assert wait_until(lambda: getter.pid in scope._demoted, 15), diagnose(tracer, getter.pid)
        assert getter.pid not in scope._watched and tracer.stats().demoted >= 1
        said = [r.getMessage() for r in caplog.records if r.getMessage().startswith(f"demoted pid {getter.pid} ")]
        assert said and tracer.why in said[0], said        # logged, with why (the kernel's counts: watch_cost)
        assert wait_until(lambda: scene.breakpoints(getter.pid) == 0, 10), scene.breakpoints(getter.pid)
        assert tracer._bpf["watch_state"][ctypes.c_uint32(getter.pid)].value == W_DEMOTED
        time.sleep(1.0)                               # ~10 more connections: the sentinel does not bring it back
        assert scene.breakpoints(getter.pid) == 0 and getter.pid not in scope._watched
        assert scene.sentinel_in(getter.pid)          # (the host-wide sentinel is still there: one trap per connection)
        # the POSTing client (its requests are copied: not ignored) and the server are as before
        assert scene.breakpoints(scene.client.pid) == len(scene.data)
        assert scene.client.pid not in scope._demoted
        assert scene.breakpoints(scene.server.pid) == 0
        # a filter that names it watches it again
        tracer.set_filter([], ["agtap-get"])
        assert wait_until(lambda: scene.breakpoints(getter.pid) == len(scene.data), 10)
        assert getter.pid in scope._watched and getter.pid not in scope._demoted
    finally:
        getter.kill()
        getter.wait()
        scene.close()
