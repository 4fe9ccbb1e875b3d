"""Run the real daemon (agtap.service.daemon.run) with the FakeTracer, for the service tests.

    python -m tests.support.dbus.run_daemon --dir DIR [--mode foreground|service] [--bus system|none]
                                            [--calls N] [--open N] [--config-file F] [--comm NAME]
                                            [--feed FIFO]

DIR gets events.jsonl and bodies/. N crafted Anthropic exchanges are replayed
right after the probes "attach"; each SIGUSR1 replays one more. Each JSON line written to
the FIFO replays more, as the test describes them (procs.Daemon.feed):
{"n": count, "rate": per second (0: at once), ...anthropic_exchange's keywords}; "{i}" in a
string value becomes the exchange's index (0 .. n-1).
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys
import threading
import time

from agtap.capture.connid import ConnId
from agtap.config import Config
from agtap.service import daemon
from tests.support.dbus.fakes import FakeTracer, anthropic_exchange


def main() -> int:
    p = argparse.ArgumentParser()
    p.add_argument("--dir", required=True)
    p.add_argument("--mode", default="foreground")
    p.add_argument("--bus", default="system")
    p.add_argument("--calls", type=int, default=0)
    p.add_argument("--config-file")
    p.add_argument("--comm", action="append", default=[])
    p.add_argument("--fail-start")
    p.add_argument("--fail-exit-status", type=int)
    p.add_argument("--metrics-addr")
    p.add_argument("--start-delay", type=float, default=0.0)
    p.add_argument("--stop-delay", type=float, default=0.0)
    p.add_argument("--open", type=int, default=0, help="requests left without a response")
    p.add_argument("--feed", help="a FIFO: JSON lines, each asking for more exchanges")
    a = p.parse_args()
    cfg = Config(event_log=os.path.join(a.dir, "events.jsonl"), bodies_dir=os.path.join(a.dir, "bodies"),
                 runtime_dir=a.dir, bus=a.bus, stdout=False, comms=a.comm, verbose=True,
                 metrics_addr=a.metrics_addr)
    FakeTracer.fail_start = a.fail_start
    FakeTracer.fail_exit_status = a.fail_exit_status
    FakeTracer.start_delay = a.start_delay
    FakeTracer.stop_delay = a.stop_delay
    n = [0]

    def factory(config, on_item, log):
        t = FakeTracer(config, on_item, log)
        items = []
        for _ in range(a.calls):
            n[0] += 1
            items += anthropic_exchange(conn=ConnId.tls(4242, n[0]))
        for i in range(a.open):
            items += anthropic_exchange(conn=ConnId.tls(4243, i))[:1]
        t.feed(items)
        return t

    def more(*_):
        if FakeTracer.instances:
            n[0] += 1
            FakeTracer.instances[-1].feed(anthropic_exchange(conn=ConnId.tls(4242, n[0])))
    signal.signal(signal.SIGUSR1, more)

    def feeder(path):
        while True:
            with open(path) as f:                 # blocks until the test opens it to write
                for line in f:
                    spec = json.loads(line)
                    count, rate, pid = spec.pop("n", 1), spec.pop("rate", 0), spec.pop("pid", 4242)
                    t0 = time.monotonic()
                    for i in range(count):
                        if rate and (delay := t0 + i / rate - time.monotonic()) > 0:
                            time.sleep(delay)
                        n[0] += 1
                        kw = {k: v.replace("{i}", str(i)) if isinstance(v, str) else v for k, v in spec.items()}
                        FakeTracer.instances[-1].feed(anthropic_exchange(conn=ConnId.tls(pid, n[0]), pid=pid, **kw))
    if a.feed:
        threading.Thread(target=feeder, args=(a.feed,), daemon=True).start()
    flags = {"comms": a.comm} if a.comm else {}
    return daemon.run(cfg, a.mode, tracer_factory=factory, config_file=a.config_file, flags=flags)


if __name__ == "__main__":
    sys.exit(main())
