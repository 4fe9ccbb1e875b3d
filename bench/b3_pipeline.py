"""Bench 3: pipeline throughput on one core, from synthetic recordings (bench/synth.py).

Three levels, each on CPU 0 only (sched_setaffinity):
  replay   `agtap replay FILE > /dev/null` as a process (includes reading the recording:
           JSON + base64 per item, and printing each event)
  pipeline Pipeline.feed() on decoded items (wire -> providers -> Call), events discarded
  daemon   the daemon's own per-item path: Controller.feed() with the daemon's sinks
           (bodies + JSONL to a temp dir) — what `agtap` does per item after the ring buffer
  daemon_nofsync / daemon_nobodies: what-ifs for a proposed change (see _daemon)
Workloads: non-streaming calls, streamed calls (~200 SSE events, one chunk each), the same
streamed calls over HTTP/2 (frames, HPACK; many streams a connection), MCP stdio
sessions (initialize, tools/list, 5 tools/call). Then cProfile of the daemon level on the
streamed workload: the functions that dominate.
"""

from __future__ import annotations

import cProfile
import io
import os
import pstats
import subprocess
import tempfile
import time
from pathlib import Path

from bench.harness import PY, REPO, summary
from bench.synth import Gen, write


# `agtap replay FILE` is cli.cmd_replay(FILE, chunks=False). Called directly: at the time of
# writing, `agtap replay FILE` without --chunks fails (argparse.SUPPRESS leaves args.chunks
# unset -> AttributeError in cli.main); the function run is the same.
REPLAY = [PY, "-c", "import sys; from agtap.cli import cmd_replay; sys.exit(cmd_replay(sys.argv[1], False))"]


def _items_bytes(items) -> int:
    return sum(len(getattr(i, "data", b"")) for i in items)


def _pipeline(items) -> tuple[float, int]:
    from agtap.pipeline import Pipeline
    n = [0]

    def emit(call):
        n[0] += 1
    p = Pipeline(emit)
    t0 = time.perf_counter()
    for it in items:
        p.feed(it)
    p.flush()
    return time.perf_counter() - t0, n[0]


def _daemon(items, tmp: Path, variant: str = "") -> tuple[float, int]:
    """variant "" : as shipped. What-ifs, to measure a proposed change:
    "nofsync": the bodies sink without its two fsync() per call (file, then directory);
    "nobodies": no bodies sink at all (JSONL + journal only)."""
    from agtap.config import Config
    from agtap.service.controller import Controller
    from agtap.service.daemon import build_sinks
    from agtap.sinks import bodies as bodies_mod
    d = Path(tempfile.mkdtemp(dir=tmp))
    cfg = Config(event_log=str(d / "events.jsonl"), bodies_dir=str(d / "bodies"), stdout=False, bus="none",
                 runtime_dir=str(d / "rt"))
    sinks = build_sinks(cfg, "foreground")
    if variant == "nobodies":
        for s in [s for s in sinks if getattr(s, "name", "") == "bodies"]:
            s.close()
            sinks.remove(s)
    real_fsync = bodies_mod.os.fsync
    if variant == "nofsync":
        bodies_mod.os = _NoFsyncOs()
    try:
        ctl = Controller(cfg, lambda *a: None, sinks=sinks)
        t0 = time.perf_counter()
        for it in items:
            ctl.feed(it)
        ctl._flush_pipeline()
        dt = time.perf_counter() - t0
        calls = ctl.calls
        ctl.finish()
    finally:
        bodies_mod.os = os
        assert os.fsync is real_fsync
    return dt, calls


class _NoFsyncOs:
    """os, minus fsync (for the "nofsync" what-if only)."""

    def __getattr__(self, name):
        return getattr(os, name)

    @staticmethod
    def fsync(fd):
        return None


def run(work: Path, quick: bool) -> dict:
    os.sched_setaffinity(0, {0})
    rounds = 3 if quick else 5
    sizes = {"nonstream": 300 if quick else 1000, "stream": 100 if quick else 300, "mcp": 30 if quick else 100}
    g = Gen()
    workloads = {"nonstream": g.http_calls(sizes["nonstream"], False),
                 "stream": g.http_calls(sizes["stream"], True),
                 "stream_h2": g.h2_calls(sizes["stream"]),
                 "mcp": g.mcp_sessions(sizes["mcp"])}
    import inspect
    from agtap.sinks.bodies import BodiesSink
    out = {"cpu_pinned": [0], "rounds": rounds, "workloads": {},
           "bodies_sink_fsyncs": "fsync" in inspect.getsource(BodiesSink._store)}
    files = {}
    for name, items in workloads.items():
        f = work / f"synth-{name}.jsonl"
        files[name] = (f, write(f, items))
    for name, items in workloads.items():
        nbytes = _items_bytes(items)
        levels = {"replay": [], "pipeline": [], "daemon": [], "daemon_nofsync": [], "daemon_nobodies": []}
        calls = {}
        for r in range(rounds):   # levels interleaved in each round
            f = files[name][0]
            t0 = time.perf_counter()
            p = subprocess.run(["taskset", "-c", "0", *REPLAY, str(f)], cwd=REPO,
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE)
            if p.returncode != 0:
                raise RuntimeError(f"replay exited {p.returncode}: {p.stderr.decode()[-1500:]}")
            levels["replay"].append(time.perf_counter() - t0)
            calls["replay"] = p.stdout.count(b"\n")
            dt, calls["pipeline"] = _pipeline(items)
            levels["pipeline"].append(dt)
            for lvl, variant in (("daemon", ""), ("daemon_nofsync", "nofsync"), ("daemon_nobodies", "nobodies")):
                dt, calls[lvl] = _daemon(items, work, variant)
                levels[lvl].append(dt)
        res = {"items": len(items), "payload_bytes": nbytes, "recording_bytes": files[name][1], "calls": calls}
        for lvl, ts in levels.items():
            c = calls[lvl] or 1
            res[lvl] = {"seconds": summary(ts), "calls_per_s": summary([c / t for t in ts]),
                        "payload_MB_per_s": summary([nbytes / t / 1e6 for t in ts])}
        out["workloads"][name] = res
    # profiles: the daemon path on the streamed workload, as shipped and without fsync
    out["profiles"] = {}
    for variant in ("", "nofsync"):
        out["profiles"][variant or "shipped"] = _profile(workloads["stream"], work, variant)
    return out


def _profile(items, work: Path, variant: str) -> dict:
    prof = cProfile.Profile()
    prof.enable()
    _daemon(items, work, variant)
    prof.disable()
    st = pstats.Stats(prof)
    total = st.total_tt
    rows = []
    for (fn_file, line, fn), (cc, nc, tt, ct, _) in st.stats.items():
        rows.append({"function": f"{Path(fn_file).name}:{line}({fn})" if line else fn,
                     "file": fn_file.replace(str(REPO) + "/", ""),
                     "calls": nc, "tottime_s": tt, "cumtime_s": ct, "tottime_pct": 100 * tt / total,
                     "cumtime_pct": 100 * ct / total})
    by_tt = sorted(rows, key=lambda r: -r["tottime_s"])
    by_ct = sorted([r for r in rows if r["file"].startswith("agtap/")], key=lambda r: -r["cumtime_s"])
    return {"total_s": total, "top_tottime": by_tt[:20], "top_cumtime_agtap": by_ct[:25]}
