"""Bench 8: what agtap costs a Go program calling an LLM API (crypto/tls probes, bpf/gotls.c).

The bpf tier's Go client (tests/go/llmclient: net/http only, built by Debian 12's Go 1.19,
stripped as a shipped Go binary usually is) makes N sequential Anthropic calls over one
keep-alive TLS connection to bench.server (alternating: streamed, ~200 SSE events read
line by line; and JSON), untraced and under agtap, in rotated order each round. Under agtap
the binary is run once first and the daemon's "attached" line awaited, so every measured
call goes through the probes (Write, Read and each of Read's RETs, Close). Measured: the
client's own wall and user+sys CPU time for the N calls (getrusage; set-up excluded), and
the tracer's CPU per call.
"""

from __future__ import annotations

import time
from pathlib import Path

from bench.harness import Agtap, Server, client_env, ratios, run_measured, summary

CONFIGS = ("untraced", "agtap")


def _wait_attached(tracer: Agtap, binary: Path, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if f"attached: {binary} (" in (tracer.dir / "stderr").read_text(errors="replace"):
            return
        time.sleep(0.1)
    raise RuntimeError(f"agtap did not probe {binary}: " + (tracer.dir / "stderr").read_text()[-2000:])


def run(work: Path, quick: bool) -> dict:
    from tests.support.gobuild import go_binary, go_version   # bench runs from the repository
    rounds = 2 if quick else 5
    n = 40 if quick else 200
    binary = go_binary("llmclient", stripped=True)
    srv = Server(work)
    env = client_env(srv.ca)
    argv = [str(binary), "-url", srv.url, "-mode", "anthropic-stream,anthropic", "-n", str(n // 2), "-timing"]
    samples: list[dict] = []
    try:
        run_measured(argv, env)   # warm the page cache and the server, untraced
        for r in range(rounds):
            for cfg in CONFIGS[r % 2:] + CONFIGS[:r % 2]:
                tracer = None
                if cfg == "agtap":
                    tracer = Agtap(work, "-v")   # -v: its "attached" line says when the binary is probed
                    run_measured(argv[:-3] + ["-n", "1"], env)       # exec'd once: located and probed
                    _wait_attached(tracer, binary)
                tcpu0 = tracer.cpu() if tracer else 0.0
                res, proc = run_measured(argv, env)
                assert all(x["status"] == 200 for x in res["results"]), res["results"][:3]
                s = {"round": r, "config": cfg, "wall": res["wall"], "cpu": res["cpu"], "proc_cpu": proc["cpu"],
                     "pid": proc["pid"], "tracer_cpu": (tracer.cpu() - tcpu0) if tracer else 0.0}
                if tracer:
                    deadline = time.monotonic() + 30
                    while time.monotonic() < deadline:
                        evs = [e for e in tracer.events() if e.get("pid") == proc["pid"]]
                        if len(evs) >= n + 1:
                            break
                        time.sleep(0.2)
                    s["events"] = len(evs)
                    s["tracer_cpu"] = tracer.cpu() - tcpu0
                    tracer.stop()
                samples.append(s)
    finally:
        srv.stop()
    by = {cfg: [s for s in samples if s["config"] == cfg] for cfg in CONFIGS}
    res: dict = {}
    for metric in ("wall", "cpu", "proc_cpu"):
        vals = {cfg: [s[metric] for s in by[cfg]] for cfg in CONFIGS}
        res[metric] = {cfg: summary(vals[cfg]) for cfg in CONFIGS}
        res[metric]["agtap/untraced"] = summary(ratios(vals["agtap"], vals["untraced"]))
        res[metric + "_per_call_us"] = {cfg: summary([1e6 * v / n for v in vals[cfg]]) for cfg in CONFIGS}
        res[metric + "_added_per_call_us"] = summary([1e6 * (a - u) / n for a, u in zip(vals["agtap"], vals["untraced"])])
    res["tracer_cpu_per_call_ms"] = summary([1000 * s["tracer_cpu"] / n for s in by["agtap"]])
    res["events_logged_per_run"] = [s.get("events") for s in by["agtap"]]
    return {"calls_per_run": n, "rounds": rounds, "go": go_version(), "binary": "llmclient (stripped)",
            "configs": list(CONFIGS), "samples": samples, "results": res}
