"""The BPF tier: the real tracer on the real kernel, as root.

`tracer_run(*flags)` starts `agtap record FILE` (the real daemon binary, a
process of its own) and returns a handle; `.stop()` sends SIGINT and returns
the recorded items. `agtapd(*flags, **kw)` starts the real daemon in the
foreground; `daemon` is one shared by a module. Both classes are in
tests/support/agtapd.py. Tests then run official clients against the fake API
of tests/support and compare what the tracer saw with what crossed the wire.

This tier does not skip: not root (or BPF not loadable) is a failure.
"""

from __future__ import annotations

import os

import pytest

from tests.support.agtapd import Agtapd, TracerRun


@pytest.fixture(scope="session")
def _need_root():
    if os.geteuid() != 0:
        pytest.fail("the BPF tier needs root: run 'sudo make test-bpf'")


@pytest.fixture
def tracer_run(tmp_path, _need_root):
    runs: list[TracerRun] = []

    def start(*flags: str) -> TracerRun:
        r = TracerRun(list(flags), tmp_path)
        runs.append(r)
        return r

    yield start
    for r in runs:
        if r.proc.poll() is None:
            r.proc.kill()
            r.proc.wait()


@pytest.fixture
def agtapd(tmp_path, _need_root):
    """agtapd(*flags, log=, bodies=, env=, stdout=, expect_ready=) -> a started Agtapd, killed after the test."""
    started: list[Agtapd] = []

    def start(*flags: str, **kw) -> Agtapd:
        d = Agtapd(tmp_path, *flags, **kw)
        started.append(d)
        return d
    yield start
    for d in started:
        d.close()


@pytest.fixture(scope="module")
def daemon(tmp_path_factory, _need_root):
    """One daemon (no flags) for the whole module; it must exit 0 on SIGTERM."""
    d = Agtapd(tmp_path_factory.mktemp("agtapd"))
    yield d
    if d.proc.poll() is None:
        assert d.stop() == 0, d.stderr()
