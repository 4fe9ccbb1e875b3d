"""Shared pytest fixtures for every tier: the throwaway CA and the local fake LLM API.

Makes `tests.support` importable (the repo root goes on sys.path) without turning
tests/ into a package. See tests/support/__init__.py for the harness API.
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from tests.support.certs import CertPaths, make_certs  # noqa: E402
from tests.support.fakeapi import FakeApi  # noqa: E402


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
