"""Fixtures for the service tests: a private system-type bus with the shipped policy, and the
real daemon (agtap.service.daemon.run with the FakeTracer: loading BPF is the bpf tier's job) on it.

All module-scoped: a module that needs another bus (polkit's, a fresh one per test) overrides
`bus`, and `daemon` then runs on that one.
"""

from __future__ import annotations

import os
import tempfile

import pytest

from tests.support.dbus.bus import PrivateBus, ensure_users
from tests.support.dbus.procs import Daemon, env_for


@pytest.fixture(scope="session")
def users():
    """As root: the test users (agtap-tester in group agtap, agtap-outsider) exist."""
    if os.geteuid() == 0:
        ensure_users()


@pytest.fixture(scope="module")
def bus(users):
    """A private dbus-daemon configured like the system bus (and, as root, the test users)."""
    with PrivateBus() as b:
        yield b


@pytest.fixture(scope="module")
def env(bus) -> dict[str, str]:
    """The environment a client process needs to reach `bus` (and import agtap and tests)."""
    return env_for(bus.env())


@pytest.fixture(scope="module")
def daemon(bus):
    """The service on `bus`, ready (READY=1, name owned), having captured 3 calls; it must exit 0."""
    with tempfile.TemporaryDirectory() as d:
        os.chmod(d, 0o755)       # the test users read what it writes
        dm = Daemon(d, bus.env(), "--calls", "3").ready()
        yield dm
        assert dm.stop() == 0, dm.err
