"""Bench 7: locating BoringSSL in Bun and Claude Code binaries (agtap/capture/boringssl.py).

Each pinned binary (tests/support/npmbins.py, fetched once from npm) is located in a
fresh process per round (cold imports of capstone and numpy included, as in the
daemon's first scan), then looked up in a filled cache (what every later start of the
same build costs). CPU time is the process's user+system time; wall time depends on
the machine's load, which the report states.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from bench.harness import REPO

PROBE = r"""
import json, os, resource, sys, time
t0 = time.monotonic()
from agtap.capture import boringcache
path, cache = sys.argv[1], sys.argv[2]
v = boringcache.verdict(path, cache)
wall = time.monotonic() - t0
r = resource.getrusage(resource.RUSAGE_SELF)
print(json.dumps({"located": v.located, "cached": v.cached, "write": v.write, "read": v.read, "free": v.free,
                  "wall_s": wall, "cpu_s": r.ru_utime + r.ru_stime, "maxrss_mb": r.ru_maxrss / 1024}))
"""


def _one(path: Path, cache: Path) -> dict:
    out = subprocess.run([sys.executable, "-c", PROBE, str(path), str(cache)], cwd=REPO, check=True,
                         capture_output=True, text=True, timeout=600).stdout
    return json.loads(out.splitlines()[-1])


def run(work: Path, quick: bool) -> dict:
    from tests.support import npmbins          # bench runs as python -m bench.run from the repository
    bins = {f"bun {v}": npmbins.bun(v) for v in npmbins.BUN_RELEASES}
    bins[f"claude {npmbins.CLAUDE_CODE}"] = npmbins.claude()
    rounds = 1 if quick else 3
    out = {}
    for name, path in bins.items():
        scans, hits = [], []
        for i in range(rounds):
            cache = work / f"cache-{name.replace(' ', '-')}-{i}"
            scans.append(_one(path, cache))     # empty cache: a full scan
            hits.append(_one(path, cache))      # the verdict just stored
        assert all(s["located"] and not s["cached"] for s in scans), scans
        assert all(h["cached"] for h in hits), hits
        out[name] = {"size_mb": round(os.path.getsize(path) / 2**20), "scan": scans, "cached": hits}
    return {"rounds": rounds, "binaries": out}
