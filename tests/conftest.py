"""Shared pytest fixtures for every tier: the throwaway CA, the local fake LLM API, a UTC
clock and a fresh asyncio loop.

tests/ is the package `tests`: pyproject.toml's `pythonpath = ["."]` puts the repository
root on sys.path, so helpers import as `tests.support...` (tests/support/__init__.py has the
harness API). Fixtures for the D-Bus service tests are in tests/unit/conftest.py, the BPF
tier's in tests/bpf/conftest.py.
"""

from __future__ import annotations

import asyncio
import time

import pytest

from tests.support.certs import CertPaths, make_certs
from tests.support.fakeapi import FakeApi


@pytest.fixture(scope="session")
def certs(tmp_path_factory: pytest.TempPathFactory) -> CertPaths:
    """One CA + localhost certificate per test session."""
    return make_certs(tmp_path_factory.mktemp("agtap-certs"))


@pytest.fixture
def fake_api(certs: CertPaths):
    """A started TLS FakeApi on 127.0.0.1:<ephemeral>; stopped after the test."""
    with FakeApi(certs) as api:
        yield api


@pytest.fixture
def fake_api_plain():
    """The same fake API over plain HTTP (no TLS): for syscall-tracepoint capture tests."""
    with FakeApi(tls=False) as api:
        yield api


@pytest.fixture
def utc(monkeypatch):
    """Local time is UTC for the test (times on screen and in files are then fixed strings).

    A module takes it for every test with `pytestmark = pytest.mark.usefixtures("utc")`."""
    monkeypatch.setenv("TZ", "UTC")
    time.tzset()
    yield
    monkeypatch.undo()
    time.tzset()


@pytest.fixture
def aloop():
    """A new asyncio event loop, set as the current one, closed after the test."""
    loop = asyncio.new_event_loop()
    asyncio.set_event_loop(loop)
    yield loop
    loop.close()
