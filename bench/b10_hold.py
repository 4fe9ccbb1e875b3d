"""Bench 10: what the open gate costs a starting program (opengate.py, --hold-ms).

Under --probe-scope process (the default) a runtime waits at its exec (or its open of a
probed libssl) until its per-process probes are live, so its first call is seen. That wait
is paid once per process start, by runtimes only. Measured here: the wall time of a short program
from exec to exit, K runs each, per configuration, configurations interleaved per round,
order rotated:
  none              no agtap
  gate              agtap (process scope, --hold-ms 1000: the default)
  no_gate           agtap (process scope, --hold-ms 0: not held, first calls may race)
Programs: `python3 -c "import ssl"` (a runtime: watched, held at its libssl open),
`curl -sV` (links libcurl: a runtime, held at the loader's libssl open), `ls /` (no TLS:
never held; the floor: what an agtap running costs a program that opens nothing of it).
Medians of the per-run wall times (ms); held_opens / hold_timeouts from /metrics.
"""

from __future__ import annotations

import statistics
import subprocess
import time
from pathlib import Path

from bench.harness import Agtap, summary

CONFIGS = {"none": None, "gate": ("--hold-ms", "1000"), "no_gate": ("--hold-ms", "0")}
PROGRAMS = {"python3_import_ssl": ["/usr/bin/python3", "-c", "import ssl"], "curl_version": ["curl", "-sV"], "ls": ["ls", "/"]}


def _times(argv: list[str], k: int) -> list[float]:
    out = []
    for _ in range(k):
        t0 = time.perf_counter()
        subprocess.run(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=True)
        out.append((time.perf_counter() - t0) * 1000)
    return out


def run(work: Path, quick: bool) -> dict:
    rounds, k = (1, 10) if quick else (4, 40)
    ms: dict[str, dict[str, list[float]]] = {c: {p: [] for p in PROGRAMS} for c in CONFIGS}
    held: dict[str, list[float]] = {"held_opens": [], "hold_timeouts": []}
    order = list(CONFIGS)
    for r in range(rounds):
        for cfg in order[r % len(order):] + order[:r % len(order)]:
            flags = CONFIGS[cfg]
            d = Agtap(work, "--probe-scope", "process", *flags, metrics_port=19310) if flags else None
            try:
                time.sleep(1.0)   # the running processes watched, the machine settled
                before = d.metrics() if d else {}
                for name, argv in PROGRAMS.items():
                    ms[cfg][name] += _times(argv, k)
                if cfg == "gate":
                    after = d.metrics()
                    for m in held:
                        held[m].append(after.get(f"agtap_{m}_total", 0) - before.get(f"agtap_{m}_total", 0))
            finally:
                if d:
                    d.stop()
    med = {c: {p: statistics.median(v) for p, v in progs.items()} for c, progs in ms.items()}
    return {"rounds": rounds, "runs_per_program": k,
            "median_ms": med,
            "added_ms": {c: {p: med[c][p] - med["none"][p] for p in PROGRAMS} for c in ("gate", "no_gate")},
            "wall_ms": {c: {p: summary(v) for p, v in progs.items()} for c, progs in ms.items()},
            "held_opens_per_round": held["held_opens"], "hold_timeouts_per_round": held["hold_timeouts"]}
