"""Bun and Claude Code: TLS inside binaries that link BoringSSL statically, without symbols.

Real binaries from npm (pinned: tests/support/npmbins.py), the real daemon with a cache
directory of its own, the local TLS fake API. Each binary is first started once
so that the daemon locates its SSL_read/SSL_write (a scan of seconds,
off the poll thread) before the calls that are counted.
"""

from __future__ import annotations

import json
import subprocess
import time

import pytest

from tests.bpf.conftest import DaemonRun
from tests.support import Reply
from tests.support.clients import CLIENTS_DIR
from tests.support.npmbins import BUN_RELEASES, bun

SETTLE = 0.7
BUN_KEY = "sk-ant-agtap-test-bun-5d20"


@pytest.fixture(scope="module")
def bdaemon(tmp_path_factory, _need_root_module):
    tmp = tmp_path_factory.mktemp("agtapd-boringssl")
    d = DaemonRun(["-v"], tmp, env={"AGTAP_CACHE_DIR": str(tmp / "cache")})
    d.cache = tmp / "cache"
    yield d
    if d.proc.poll() is None:
        d.stop()


def located(daemon, binary, *argv: str) -> str:
    """Run the binary once, alive long enough for the daemon to open it through /proc,
    and wait until the daemon has located and probed it."""
    p = subprocess.Popen([str(binary), *argv], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        return daemon.wait_stderr(f"attached: {binary}")
    finally:
        p.kill()
        p.wait()


def one_event(daemon, pid: int) -> dict:
    evs = daemon.events(pid, n=1, timeout=15)
    time.sleep(SETTLE)
    evs = daemon.events(pid)
    assert len(evs) == 1, evs
    return evs[0]


# mode -> (scripted reply, expected event fields)
BUN_CASES = {
    "anthropic": dict(provider="anthropic", streaming=False, stop_reason="end_turn", model="claude-bun-test"),
    "anthropic-stream": dict(provider="anthropic", streaming=True, stop_reason="end_turn", model="claude-bun-test"),
    "openai": dict(provider="openai", streaming=False, stop_reason="stop", model="gpt-bun-test"),
    "openai-stream": dict(provider="openai", streaming=True, stop_reason="stop", model="gpt-bun-test"),
}


@pytest.mark.parametrize("version", BUN_RELEASES)
def test_bun_fetch_is_one_event_per_call(bdaemon, fake_api, certs, version):
    binary = bun(version)
    line = located(bdaemon, binary, str(CLIENTS_DIR / "bun_fetch.js"), "wait", "30")
    assert "BoringSSL located by ssl_lib.cc error sites" in line and "build-id" in line, line
    for mode, want in BUN_CASES.items():
        fake_api.reset()
        fake_api.script(Reply(text="Hi from the fake.", input_tokens=21, output_tokens=5))
        out = subprocess.run([str(binary), str(CLIENTS_DIR / "bun_fetch.js"), fake_api.base_url, mode],
                             capture_output=True, text=True, timeout=60,
                             env={"AGTAP_TEST_CA": str(certs.ca), "AGTAP_TEST_API_KEY": BUN_KEY,
                                  "PATH": "/usr/bin:/bin", "HOME": str(bdaemon.dir)})
        assert out.returncode == 0, out.stderr
        res = json.loads(out.stdout.splitlines()[-1])
        assert res["status"] == 200, res
        assert len(fake_api.wait_for(1)) == 1
        ev = one_event(bdaemon, res["pid"])
        for k, v in want.items():
            assert ev[k] == v, (mode, k, ev)
        assert ev["input_tokens"] == 21 and ev["output_tokens"] == 5, ev
        assert ev["kind"] == "llm_call" and ev["transport"] == "tls", ev
        assert ev["http_status"] == 200 and not ev["incomplete"], ev
        if ev["streaming"]:
            assert 0 < ev["ttft_ms"] <= ev["latency_ms"], ev
