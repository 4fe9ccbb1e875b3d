"""Bench 6: latency of the record — last response byte read by the client -> its JSONL
line in the event log.

Method: bench.loadgen at 50 calls/s (one process, 4 threads, the provider/stream mix of
bench 4) tags each call with its own model name and notes time.time_ns() right after its
last read. A thread in this process polls the event log every 1 ms and notes
time.time_ns() when each complete line is first readable; lines are matched to calls by
model name. So the figure is "client has the last byte" -> "line readable in the file",
with up to ~1 ms of polling granularity added (an overestimate, never an underestimate).
For reference: client's last read minus the event's own end (ts + latency_ms, from the
probe's kernel timestamps), i.e. how close the capture's view of the end is to the client's.
The daemon runs with -c agtap-bench-lg: only the load generator's calls (shared machine).
"""

from __future__ import annotations

import datetime
import json
import threading
import time
from pathlib import Path

from bench.harness import Agtap, Server, client_env, pct, summary
from bench.b4_load import load
from bench.loadgen import COMM


class Tail:
    def __init__(self, path: Path):
        self.path, self.seen, self._stop = path, {}, False
        self.t = threading.Thread(target=self._run, daemon=True)
        self.t.start()

    def _run(self):
        f, buf = None, b""
        while not self._stop:
            if f is None:
                try:
                    f = open(self.path, "rb")
                except FileNotFoundError:
                    time.sleep(0.001)
                    continue
            d = f.read()
            if d:
                now = time.time_ns()
                buf += d
                *lines, buf = buf.split(b"\n")
                for ln in lines:
                    try:
                        e = json.loads(ln)
                    except ValueError:
                        continue
                    self.seen.setdefault(e.get("model"), (now, e))
            else:
                time.sleep(0.001)

    def stop(self):
        self._stop = True
        self.t.join(2)


def _wall_ns(ts: str) -> int:
    dt = datetime.datetime.fromisoformat(ts.replace("Z", "+00:00"))
    return int(dt.timestamp() * 1e9)


def run(work: Path, quick: bool) -> dict:
    duration = 10 if quick else 60
    rate = 50
    srv = Server(work, procs=2)
    env = client_env(srv.ca)
    try:
        d = Agtap(work, "-c", COMM)   # only the load generator's calls (shared machine)
        tail = Tail(d.log)
        calls_out = work / "latency-calls"
        from bench import b4_load
        saved = (b4_load.PROCS, b4_load.THREADS)
        b4_load.PROCS, b4_load.THREADS = 1, 4
        try:
            gens = load(srv, rate, duration, env, ["--tag-model"], calls_out)
        finally:
            b4_load.PROCS, b4_load.THREADS = saved
        deadline = time.monotonic() + 60
        calls = [json.loads(x) for x in open(f"{calls_out}.0")]
        while time.monotonic() < deadline and sum(1 for c in calls if c["model"] in tail.seen) < len(calls):
            time.sleep(0.2)
        time.sleep(0.2)
        tail.stop()
        d.stop()
    finally:
        srv.stop()
    lat, kern, by_kind = [], [], {}
    missing = 0
    for c in calls:
        hit = tail.seen.get(c["model"])
        if hit is None:
            missing += 1
            continue
        t_seen, e = hit
        ms = (t_seen - c["t_last_ns"]) / 1e6
        lat.append(ms)
        by_kind.setdefault(f"{c['provider']}-{'stream' if c['stream'] else 'json'}", []).append(ms)
        try:
            kern.append((c["t_last_ns"] - (_wall_ns(e["ts"]) + int(e["latency_ms"] * 1e6))) / 1e6)
        except (KeyError, TypeError, ValueError):
            pass
    res = {"rate": rate, "duration_s": duration, "calls": len(calls), "matched": len(lat), "missing": missing,
           "made": gens[0]["made"], "errors": gens[0]["errors"],
           "latency_ms": {**summary(lat), "p50": pct(lat, 50), "p90": pct(lat, 90), "p99": pct(lat, 99)},
           "by_kind_p50_p99_ms": {k: [pct(v, 50), pct(v, 99)] for k, v in sorted(by_kind.items())},
           "client_last_read_minus_event_end_ms": {**summary(kern), "p50": pct(kern, 50), "p99": pct(kern, 99)},
           "method": "client time.time_ns() after its last read -> line first readable in the event log "
                     "(1 ms polling); matched by per-call model name"}
    return res
