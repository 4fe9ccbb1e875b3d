"""Run a FakeApi as its own process: for manual runs, demos and benchmarks.

    .venv/bin/python -m tests.support.serve [--plain] [--http2] [--port N] [--certs DIR]
        [--reply JSON] [--record FILE] [--stop-on-eof]

Prints one JSON line {"base_url", "port", "pid", "ca"} when it is listening, then serves
until SIGTERM/SIGINT (or stdin closes, with --stop-on-eof). --reply sets the default Reply (JSON object of Reply
fields, e.g. '{"events": 100, "event_size": 512}'). --record writes each exchange as one
JSON line on exit (bytes fields base64-encoded).

In-process FakeApi (the fixtures) is what tests use; this exists so the server's own TLS
traffic can live in a process of its own, e.g. `sudo make run` in one terminal, this in a
second, a client in a third:
    curl --http1.1 --cacert "$CA" https://127.0.0.1:$PORT/v1/messages -d '{"stream":true}'
"""

from __future__ import annotations

import argparse
import base64
import dataclasses
import json
import os
import signal
import sys
import tempfile
import threading

from .certs import make_certs
from .fakeapi import FakeApi
from .reply import Reply, ToolCall


def exchange_record(ex) -> dict:
    out = {}
    for f in dataclasses.fields(ex):
        value = getattr(ex, f.name)
        if isinstance(value, bytes):
            value = base64.b64encode(value).decode()
        elif f.name == "events":
            value = [base64.b64encode(e).decode() for e in value]
        elif f.name == "reply":
            value = dataclasses.asdict(value) if value is not None else None
        out[f.name] = value
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.support.serve")
    parser.add_argument("--plain", action="store_true", help="plain HTTP instead of TLS")
    parser.add_argument("--http2", action="store_true",
                        help="also HTTP/2 (ALPN h2, h2c prior knowledge, Upgrade: h2c); bodies of /bulk/ not kept")
    parser.add_argument("--port", type=int, default=0, help="0: ephemeral")
    parser.add_argument("--certs", help="directory for ca.pem/cert.pem/key.pem (made if missing)")
    parser.add_argument("--reply", help="default Reply as a JSON object of its fields")
    parser.add_argument("--record", help="write exchanges as JSON lines here on exit")
    parser.add_argument("--stop-on-eof", action="store_true",
                        help="also stop when stdin closes (when a parent process drives it)")
    args = parser.parse_args(argv)

    certs = None
    if not args.plain:
        certs = make_certs(args.certs or tempfile.mkdtemp(prefix="agtap-fakeapi-"))
    api = FakeApi(certs, tls=not args.plain, port=args.port, http2=args.http2)
    api.keep_bulk = not args.http2   # a benchmark's downloads are not held in memory
    if args.reply:
        fields = json.loads(args.reply)
        fields["tool_calls"] = [ToolCall(**t) for t in fields.get("tool_calls", [])]
        api.default = Reply(**fields)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    if args.stop_on_eof:
        threading.Thread(target=lambda: (sys.stdin.read(), stop.set()), daemon=True).start()
    with api:
        print(json.dumps({"base_url": api.base_url, "port": api.port, "pid": os.getpid(),
                          "ca": str(certs.ca) if certs else None}), flush=True)
        stop.wait()
    if args.record:
        with open(args.record, "w") as out:
            for ex in api.wait_for(0):
                out.write(json.dumps(exchange_record(ex)) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
