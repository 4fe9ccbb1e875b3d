"""`sudo make bench`: every benchmark, interleaved configurations, results in
bench/results/<name>.json and the tables in docs/PERFORMANCE.md.

    .venv/bin/python -m bench.run [--quick] [--only NAME[,NAME]] [--no-doc]

NAMEs: tls_overhead, unrelated, pipeline, load, startup, latency, boringssl, gotls, probe_scope, hold. --quick: a smoke run
(fewer rounds, shorter steps) that still exercises every path.
"""

from __future__ import annotations

import argparse
import datetime
import importlib
import json
import os
import shlex
import shutil
import sys
import tempfile
import time
import traceback
from pathlib import Path

from bench.harness import REPO, machine

BENCHES = {   # name -> module (run(work, quick) -> dict)
    "tls_overhead": "bench.b1_tls",
    "unrelated": "bench.b2_unrelated",
    "pipeline": "bench.b3_pipeline",
    "load": "bench.b4_load",
    "startup": "bench.b5_startup",
    "latency": "bench.b6_latency",
    "boringssl": "bench.b7_boringssl",
    "gotls": "bench.b8_gotls",
    "probe_scope": "bench.b9_scope",
    "hold": "bench.b10_hold",
}
ROOT_ONLY = {"tls_overhead", "unrelated", "load", "startup", "latency", "gotls", "probe_scope", "hold"}
RESULTS = REPO / "bench" / "results"


def main(argv: list[str] | None = None) -> int:
    import signal
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))   # atexit then stops tracers and servers
    p = argparse.ArgumentParser(prog="python -m bench.run")
    p.add_argument("--quick", action="store_true", help="smoke run: fewer rounds, short steps")
    p.add_argument("--only", help="comma-separated benchmark names: " + ", ".join(BENCHES))
    p.add_argument("--no-doc", action="store_true", help="do not rewrite docs/PERFORMANCE.md")
    p.add_argument("--results", default=str(RESULTS), help="where the JSON summaries go")
    args = p.parse_args(argv)
    names = list(BENCHES) if not args.only else [n.strip() for n in args.only.split(",") if n.strip()]
    for n in names:
        if n not in BENCHES:
            p.error(f"unknown benchmark {n!r}")
    if os.geteuid() != 0 and any(n in ROOT_ONLY for n in names):
        print("bench: the tracer loads BPF programs: run as root ('sudo make bench')", file=sys.stderr)
        return 4
    results = Path(args.results)
    results.mkdir(parents=True, exist_ok=True)
    cmd = "python -m bench.run " + " ".join(shlex.quote(a) for a in (argv if argv is not None else sys.argv[1:]))
    run_id = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
    try:
        import subprocess
        head = subprocess.run(["git", "-C", str(REPO), "rev-parse", "--short", "HEAD"], capture_output=True,
                              text=True).stdout.strip()
    except OSError:
        head = ""
    meta = {"run_id": run_id, "command": cmd.strip(), "quick": args.quick, "machine": machine(), "git_head": head}
    failed = []
    work = Path(tempfile.mkdtemp(prefix="agtap-bench-"))
    try:
        for n in names:
            t0 = time.monotonic()
            print(f"bench: {n} ...", file=sys.stderr, flush=True)
            try:
                data = importlib.import_module(BENCHES[n]).run(work, args.quick)
                status = "ok"
            except Exception as e:
                traceback.print_exc()
                data, status = {"error": f"{type(e).__name__}: {e}"}, "failed"
                failed.append(n)
            out = {"name": n, "status": status, "seconds": round(time.monotonic() - t0, 1),
                   "finished": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
                   **meta, **data}
            (results / f"{n}.json").write_text(json.dumps(out, indent=1, default=str) + "\n")
            print(f"bench: {n} {status} in {out['seconds']} s", file=sys.stderr, flush=True)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    if not args.no_doc:
        from bench import report
        report.write(results, REPO / "docs" / "PERFORMANCE.md")
    if failed:
        print(f"bench: failed: {', '.join(failed)}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
