"""Demotion (--demote-after-requests / --demote-after-mib): the policy, and what the per-process
scope does with it, on fake BPF maps (the kernel side: tests/bpf/test_probe_scope.py)."""

from __future__ import annotations

import logging
import os
import shutil
import subprocess
from collections import namedtuple
from types import SimpleNamespace

import pytest

from agtap.capture.demotion import MIB, DemotePolicy
from agtap.capture.records import S_CAPTURE, S_IGNORE, W_DEMOTED, W_LIVE
from agtap.capture.scope import ProcessScope
from agtap.capture.watchpolicy import WatchPolicy


def test_off_by_default():
    p = DemotePolicy()
    assert not p.enabled
    p.note_ignored(1)
    assert p.verdict(1, 10**6, 10**12) == ""


def test_requests_count_the_kernels_and_the_pipelines():
    p = DemotePolicy(after_requests=5)
    assert p.verdict(7, 4, 0) == ""
    p.note_ignored(7)                       # a POST no provider wanted
    assert p.verdict(7, 4, 0).startswith("5 ignored requests")
    assert p.verdict(8, 4, 0) == ""         # another process's count is its own


def test_mib_threshold():
    p = DemotePolicy(after_mib=2.5)
    assert p.verdict(7, 1, int(2.4 * MIB)) == ""
    assert "2.5 MiB ignored" in p.verdict(7, 1, int(2.5 * MIB))
    assert DemotePolicy(after_requests=100).verdict(7, 1, 10**12) == ""   # bytes do not count for a requests-only policy


def test_a_process_that_made_a_call_is_never_demoted_until_it_is_forgotten():
    p = DemotePolicy(after_requests=1)
    p.note_call(7)
    p.note_ignored(7)
    assert p.verdict(7, 1000, 10**12) == ""
    p.forget(7)                             # exec or exit: a new image
    assert p.verdict(7, 1, 0) != ""


# --- the scope, on fake maps ---
class FakeMap(dict):
    """A BCC table as the scope uses it: ctypes keys and values, Leaf(), items()."""

    def __init__(self, leaf=None):
        super().__init__()
        self.Leaf = leaf

    @staticmethod
    def _k(k):
        return getattr(k, "value", k)

    def __setitem__(self, k, v):
        super().__setitem__(self._k(k), getattr(v, "value", v))

    def __getitem__(self, k):
        return super().__getitem__(self._k(k))

    def __delitem__(self, k):
        super().__delitem__(self._k(k))


class FakeTable:
    def __init__(self):
        self.detached: list = []

    def attach(self, path, probes, pid):
        return len(probes)

    def take(self, path=None, pid=None):
        return []

    def detach_many(self, taken):
        self.detached += taken

    def close(self):
        pass

    def __len__(self):
        return 0


RUNTIME = "agtap-dmt-sleep"   # a runtime no other process on the host runs (the scope looks at them all)


@pytest.fixture
def sleeper(tmp_path):
    exe = tmp_path / RUNTIME
    shutil.copy("/bin/sleep", exe)
    return str(exe)


@pytest.fixture
def proc(sleeper):
    p = subprocess.Popen([sleeper, "60"])
    yield p.pid
    p.kill()
    p.wait()


ConnKey = namedtuple("ConnKey", "pid is_tls id")   # struct conn_key_t


def scope_with(maps_conns=()):
    conns = FakeMap()
    for pid, state in maps_conns:
        conns[ConnKey(pid, 1, 0x1000)] = SimpleNamespace(state=state)
    bpf = {"watch_state": FakeMap(), "watch_cost": FakeMap(lambda r, b: SimpleNamespace(requests=r, bytes=b)),
           "conns": conns}
    s = ProcessScope(FakeTable(), bpf, logging.getLogger("test"), WatchPolicy(runtimes=(RUNTIME,)))
    s.demotion = DemotePolicy(after_requests=3)
    return s, bpf


def check_now(s):
    s._next_check = 0.0
    s._check_demotion()


def test_a_watched_process_is_demoted_after_n_ignored_requests(proc):
    s, bpf = scope_with()
    s._watch(proc, "runtime")
    assert bpf["watch_state"][proc] == W_LIVE
    assert bpf["watch_cost"][proc].requests == 0      # the kernel counts from here
    bpf["watch_cost"][proc] = SimpleNamespace(requests=2, bytes=5 * MIB)
    check_now(s)
    assert s.watched() == 1 and s.demoted == 0
    bpf["watch_cost"][proc] = SimpleNamespace(requests=3, bytes=5 * MIB)
    check_now(s)
    assert s.watched() == 0 and s.demoted == 1
    assert bpf["watch_state"][proc] == W_DEMOTED      # the sentinel leaves it alone
    assert proc not in bpf["watch_cost"]
    s._do_client(proc, 0)                             # a sentinel record already on its way: not watched again
    s._rewatch(initial=False)                         # a filter change that names nobody: neither
    assert s.watched() == 0
    s._do_exec(proc, 0)                               # a new image: judged anew (a runtime here)
    assert s.watched() == 1 and proc not in s._demoted


def test_not_demoted_while_an_exchange_is_in_flight_or_after_a_call(proc):
    s, bpf = scope_with([(proc, S_CAPTURE)])
    s._watch(proc, "runtime")
    bpf["watch_cost"][proc] = SimpleNamespace(requests=10, bytes=0)
    check_now(s)
    assert s.watched() == 1 and s.demoted == 0        # a connection being copied: maybe an LLM call
    bpf["conns"] = FakeMap()
    bpf["conns"][ConnKey(proc, 1, 0x1000)] = SimpleNamespace(state=S_IGNORE)
    s.demotion.note_call(proc)
    check_now(s)
    assert s.watched() == 1 and s.demoted == 0        # it made a call: never


def test_a_process_the_filter_names_is_never_demoted(proc):
    s, bpf = scope_with()
    s.policy.set_filter([proc], [])
    s._watch(proc, "filter")
    bpf["watch_cost"][proc] = SimpleNamespace(requests=10, bytes=0)
    check_now(s)
    assert s.watched() == 1 and s.demoted == 0


def test_a_filter_that_names_a_demoted_process_watches_it_again(proc):
    s, bpf = scope_with()
    s._watch(proc, "runtime")
    bpf["watch_cost"][proc] = SimpleNamespace(requests=3, bytes=0)
    check_now(s)
    assert s.demoted == 1 and s.watched() == 0
    s._do_filter([proc], [])
    assert s.watched() == 1 and s._watched[proc].reason == "filter"


def test_the_child_of_a_demoted_process_is_not_watched_at_fork(sleeper):
    s, bpf = scope_with()
    s._demoted.add(os.getpid())                      # the test process plays the demoted parent...
    child = subprocess.Popen([sleeper, "60"])        # ...whose child this is
    try:
        s._do_fork(child.pid, 0)
        assert s.watched() == 0
        s._demoted.clear()
        s._do_fork(child.pid, 0)
        assert s.watched() == 1
    finally:
        child.kill()
        child.wait()
