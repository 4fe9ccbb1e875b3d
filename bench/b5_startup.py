"""Bench 5: start-up and memory.

Time from exec to READY=1 on a NOTIFY_SOCKET this bench listens on (agtap foreground,
full pipeline, as DaemonRun starts it), RSS idle 3 s after READY, and the time from
SIGTERM to exit. sslsniff-bpfcc's time to attach is measured alongside (interleaved) for
scale. RSS under load is bench 4's (max per step).
"""

from __future__ import annotations

import time
from pathlib import Path

from bench.harness import Agtap, Sslsniff, summary


def run(work: Path, quick: bool) -> dict:
    rounds = 2 if quick else 5
    ready, idle, hwm, stop_s, sniff = [], [], [], [], []
    for r in range(rounds):
        for cfg in (("agtap", "sslsniff") if r % 2 == 0 else ("sslsniff", "agtap")):
            if cfg == "agtap":
                d = Agtap(work)
                ready.append(d.ready_s)
                time.sleep(3)
                idle.append(d.rss_mb())
                from bench.harness import proc_hwm_mb
                hwm.append(proc_hwm_mb(d.p.pid))
                t0 = time.monotonic()
                d.stop()
                stop_s.append(time.monotonic() - t0)
            else:
                s = Sslsniff(work)
                sniff.append(s.ready_s)
                s.stop()
            time.sleep(0.5)
    return {"rounds": rounds, "agtap_ready_s": summary(ready), "agtap_idle_rss_mb": summary(idle),
            "agtap_peak_rss_mb_at_idle": summary(hwm), "agtap_sigterm_to_exit_s": summary(stop_s),
            "sslsniff_attach_s": summary(sniff),
            "samples": {"ready_s": ready, "idle_rss_mb": idle, "hwm_mb": hwm, "stop_s": stop_s, "sslsniff_s": sniff}}
