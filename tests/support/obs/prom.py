"""A real Prometheus server for tests: scrapes one target every second, answers PromQL.

    with start_prometheus("127.0.0.1:9464", tmp_path) as prom:
        prom.wait_for_scrape()
        prom.query_value('sum(agtap_requests_total{provider="anthropic"})')  # -> 3.0

Runs Debian's /usr/bin/prometheus (package `prometheus`) on a free loopback
port with its data in `workdir`; the package's own service plays no part.
Also `promtool_check_metrics(text)` runs `promtool check metrics` on an exposition.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import socket
import subprocess
import time
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Any

PROMETHEUS = os.environ.get("AGTAP_TEST_PROMETHEUS", "/usr/bin/prometheus")
PROMTOOL = os.environ.get("AGTAP_TEST_PROMTOOL", "/usr/bin/promtool")


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket() as s:
        s.bind((host, 0))
        return s.getsockname()[1]


def http_get(url: str, timeout: float = 5.0) -> bytes:
    with urllib.request.urlopen(url, timeout=timeout) as r:  # noqa: S310 - loopback test URL
        return r.read()


def scraped(port: int, name: str) -> float:
    """The value of an unlabelled series in the daemon's /metrics on 127.0.0.1:port (fails if absent)."""
    text = http_get(f"http://127.0.0.1:{port}/metrics").decode()
    m = re.search(rf"^{re.escape(name)} (\S+)$", text, re.M)
    assert m, f"{name} not in /metrics"
    return float(m.group(1))


class Prometheus:
    def __init__(self, proc: subprocess.Popen, url: str, log_path: Path, job: str):
        self.proc = proc
        self.url = url
        self.log_path = log_path
        self.job = job

    def query(self, promql: str) -> list[dict[str, Any]]:
        """Instant query through the HTTP API; returns data.result (vector samples)."""
        q = urllib.parse.urlencode({"query": promql})
        body = json.loads(http_get(f"{self.url}/api/v1/query?{q}"))
        if body.get("status") != "success":
            raise AssertionError(f"PromQL {promql!r} failed: {body}")
        return body["data"]["result"]

    def query_value(self, promql: str) -> float | None:
        """The single value of a query returning one sample (None when empty)."""
        result = self.query(promql)
        if not result:
            return None
        if len(result) != 1:
            raise AssertionError(f"PromQL {promql!r}: expected one sample, got {result}")
        return float(result[0]["value"][1])

    def targets(self) -> list[dict[str, Any]]:
        return json.loads(http_get(f"{self.url}/api/v1/targets"))["data"]["activeTargets"]

    def wait_for_scrape(self, timeout: float = 30.0) -> None:
        """Until the target has been scraped successfully at least once."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                if any(t.get("health") == "up" for t in self.targets()):
                    return
            except OSError:
                pass
            time.sleep(0.2)
        raise AssertionError(f"prometheus never scraped its target: {self.targets()}\n{self.log()}")

    def wait_for_value(self, promql: str, expected: float, timeout: float = 30.0) -> float | None:
        """Poll an instant query until it equals `expected`; returns the last value seen."""
        deadline = time.monotonic() + timeout
        value = None
        while time.monotonic() < deadline:
            value = self.query_value(promql)
            if value is not None and abs(value - expected) < 1e-9:
                return value
            time.sleep(0.25)
        return value

    def log(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-4000:]
        except OSError:
            return ""

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()

    def __enter__(self) -> "Prometheus":
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def start_prometheus(target: str, workdir: Path, *, job: str = "agtap", metrics_path: str = "/metrics",
                     timeout: float = 30.0) -> Prometheus:
    """Start Prometheus scraping `target` ("host:port") every second; ready when this returns."""
    if not os.access(PROMETHEUS, os.X_OK):
        raise AssertionError(f"{PROMETHEUS} missing: apt install prometheus (setup/apt.txt)")
    workdir = Path(workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    config = workdir / "prometheus.yml"
    config.write_text(
        "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\n"
        f"scrape_configs:\n  - job_name: {job}\n    metrics_path: {metrics_path}\n"
        f"    scrape_interval: 1s\n    scrape_timeout: 1s\n    static_configs:\n      - targets: ['{target}']\n"
    )
    port = free_port()
    log_path = workdir / "prometheus.log"
    data = workdir / "data"
    shutil.rmtree(data, ignore_errors=True)
    proc = subprocess.Popen(
        [PROMETHEUS, f"--config.file={config}", f"--storage.tsdb.path={data}",
         f"--web.listen-address=127.0.0.1:{port}", "--log.level=warn",
         # no /usr/share/prometheus console files needed
         f"--web.console.templates={workdir}", f"--web.console.libraries={workdir}"],
        stdout=open(log_path, "wb"), stderr=subprocess.STDOUT, cwd=workdir,
    )
    prom = Prometheus(proc, f"http://127.0.0.1:{port}", log_path, job)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise AssertionError(f"prometheus exited with {proc.returncode}:\n{prom.log()}")
        try:
            if http_get(f"{prom.url}/-/ready", timeout=1).strip():
                return prom
        except OSError:
            time.sleep(0.2)
    prom.stop()
    raise AssertionError(f"prometheus not ready in {timeout}s:\n{prom.log()}")


def promtool_check_metrics(exposition: bytes | str) -> subprocess.CompletedProcess:
    """`promtool check metrics` on an exposition text; returncode 0 and empty output mean clean."""
    data = exposition.encode() if isinstance(exposition, str) else exposition
    return subprocess.run([PROMTOOL, "check", "metrics"], input=data, capture_output=True, timeout=30)
