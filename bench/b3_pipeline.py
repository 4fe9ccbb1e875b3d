"""Bench 3: pipeline throughput on one core, from synthetic recordings (bench/synth.py).

Three levels, each on CPU 0 only (sched_setaffinity):
  replay   `agtap replay FILE > /dev/null` as a process (includes reading the recording:
           JSON + base64 per item, and printing each event)
  pipeline Pipeline.feed() on decoded items (wire -> providers -> Call), events discarded
  daemon   the daemon's own per-item path: Controller.feed() with the daemon's sinks
           (bodies + JSONL to a temp dir) — what `agtap` does per item after the ring buffer
  daemon_tmpfs / daemon_nobodies: what-ifs (see _daemon): the same with the sinks' directory on
           tmpfs (no disk), and without the bodies sink
Workloads: non-streaming calls, streamed calls (~200 SSE events, one chunk each), the same
streamed calls over HTTP/2 (frames, HPACK; many streams a connection), MCP stdio
sessions (initialize, tools/list, 5 tools/call). Then cProfile of the daemon level on the
streamed workload: the functions that dominate.

The bodies sink creates one file per call. What that costs the kernel depends on the
filesystem's state, not on agtap: on this machine's ext4 (no journal) creating a file has
been seen to cost from ~15 us to ~0.8 ms of system CPU, because the inode allocator passes
over every inode freed in the last 12 hours (ext4 recently_deleted(), dirtytime_expire_seconds)
and test suites create and delete many files. So the cost of one file creation in the sinks'
directory (and on tmpfs) is measured before and after the rounds and kept (file_create_us),
and daemon_tmpfs shows the daemon path without the disk.
"""

from __future__ import annotations

import cProfile
import io
import os
import pstats
import shutil
import statistics
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


TMPFS = Path("/dev/shm")


def file_create_us(where: Path, n: int = 200) -> float:
    """Median µs to create, write (2 KB) and rename one file in `where`, as BodiesSink._store does."""
    d = Path(tempfile.mkdtemp(prefix="create-", dir=where))
    ts = []
    try:
        for i in range(n):
            tmp, final = d / f".{i:032x}.tmp", d / f"{i:032x}.json"
            t0 = time.perf_counter()
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o640)
            os.write(fd, b"x" * 2048)
            os.close(fd)
            os.rename(tmp, final)
            ts.append(time.perf_counter() - t0)
    finally:
        shutil.rmtree(d, ignore_errors=True)
    return statistics.median(ts) * 1e6


def _daemon(items, tmp: Path, variant: str = "") -> tuple[float, int]:
    """variant "" : as shipped, sinks writing under `tmp` (the bench's work directory, on disk).
    What-ifs: "tmpfs": the same with the sinks' files on tmpfs (what the disk's file creation costs);
    "nobodies": no bodies sink at all (JSONL + journal only)."""
    from agtap.config import Config
    from agtap.service.controller import Controller
    from agtap.service.daemon import build_sinks
    d = Path(tempfile.mkdtemp(dir=TMPFS if variant == "tmpfs" else tmp))
    cfg = Config(event_log=str(d / "events.jsonl"), bodies_dir=str(d / "bodies"), stdout=False, bus="none",
                 runtime_dir=str(d / "rt"))
    sinks = build_sinks(cfg, "foreground")
    if variant == "nobodies":
        for s in [s for s in sinks if getattr(s, "name", "") == "bodies"]:
            s.close()
            sinks.remove(s)
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
        if variant == "tmpfs":
            shutil.rmtree(d, ignore_errors=True)   # tmpfs is memory
    return dt, calls


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
           "bodies_sink_fsyncs": "fsync" in inspect.getsource(BodiesSink._store),
           "sinks_dir": str(work.parent), "file_create_us": {"before": {"sinks_dir": file_create_us(work),
                                                                  "tmpfs": file_create_us(TMPFS)}}}
    files = {}
    for name, items in workloads.items():
        f = work / f"synth-{name}.jsonl"
        files[name] = (f, write(f, items))
    for name, items in workloads.items():
        nbytes = _items_bytes(items)
        levels = {"replay": [], "pipeline": [], "daemon": [], "daemon_tmpfs": [], "daemon_nobodies": []}
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
            for lvl, variant in (("daemon", ""), ("daemon_tmpfs", "tmpfs"), ("daemon_nobodies", "nobodies")):
                dt, calls[lvl] = _daemon(items, work, variant)
                levels[lvl].append(dt)
        res = {"items": len(items), "payload_bytes": nbytes, "recording_bytes": files[name][1], "calls": calls}
        for lvl, ts in levels.items():
            c = calls[lvl] or 1
            res[lvl] = {"seconds": summary(ts), "calls_per_s": summary([c / t for t in ts]),
                        "payload_MB_per_s": summary([nbytes / t / 1e6 for t in ts])}
        out["workloads"][name] = res
    out["file_create_us"]["after"] = {"sinks_dir": file_create_us(work), "tmpfs": file_create_us(TMPFS)}
    # profiles: the daemon path on the streamed workload, as shipped and with its sinks on tmpfs
    out["profiles"] = {}
    for variant in ("", "tmpfs"):
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
