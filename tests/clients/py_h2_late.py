"""One HTTP/2 connection kept open across a pause, for the late-join test (tests/bpf/test_http2_late.py).

python3-h2's client over a socket of its own (TLS with ALPN "h2", or h2c with prior knowledge), so
the test chooses what each request's header block holds: `--plan` is a JSON list of calls and the
word "wait". At "wait" the client prints {"ready": pid} and blocks until a line on stdin (the test
starts its tracer meanwhile); the connection stays open. A call:

    {"path": "/v1/messages", "body": {...}, "headers": [[name, value], ...], "reset_table": false}

reset_table: the block starts with dynamic table size updates to 0 and back to 4096 (RFC 7541
§4.2: both tables emptied), so it names no entry sent before. The client's own headers are
indexed as h2 does by default (content-type, the key, :path, ... are named by index afterwards).
Prints {"pid", "results": [{"status", "bytes"}]} at the end.
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import ssl
import sys

import h2.config
import h2.connection
import h2.events


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--cafile", help="TLS with this CA (else h2c with prior knowledge)")
    ap.add_argument("--plan", required=True)
    a = ap.parse_args()
    raw = socket.create_connection((a.host, a.port), timeout=30)
    if a.cafile:
        ctx = ssl.create_default_context(cafile=a.cafile)
        ctx.set_alpn_protocols(["h2"])
        sock = ctx.wrap_socket(raw, server_hostname=a.host)
        assert sock.selected_alpn_protocol() == "h2", sock.selected_alpn_protocol()
    else:
        sock = raw
    conn = h2.connection.H2Connection(h2.config.H2Configuration(client_side=True, header_encoding="utf-8"))
    conn.initiate_connection()
    sock.sendall(conn.data_to_send())
    authority = f"{a.host}:{a.port}"
    results = []
    for step in json.loads(a.plan):
        if step == "wait":
            print(json.dumps({"ready": os.getpid()}), flush=True)
            sys.stdin.readline()
            continue
        body = json.dumps(step["body"]).encode()
        if step.get("reset_table"):
            conn.encoder.header_table_size = 0
            conn.encoder.header_table_size = 4096
        sid = conn.get_next_available_stream_id()
        headers = [(":method", "POST"), (":scheme", "https" if a.cafile else "http"), (":authority", authority),
                   (":path", step["path"]), ("content-type", "application/json"),
                   ("content-length", str(len(body))), *[tuple(h) for h in step.get("headers", [])]]
        conn.send_headers(sid, headers)
        conn.send_data(sid, body, end_stream=True)
        sock.sendall(conn.data_to_send())
        status, got, done = 0, 0, False
        while not done:
            data = sock.recv(65536)
            if not data:
                raise SystemExit("the server closed the connection")
            for ev in conn.receive_data(data):
                if isinstance(ev, h2.events.ResponseReceived) and ev.stream_id == sid:
                    status = int(dict(ev.headers)[":status"])
                elif isinstance(ev, h2.events.DataReceived):
                    conn.acknowledge_received_data(ev.flow_controlled_length, ev.stream_id)
                    if ev.stream_id == sid:
                        got += len(ev.data)
                elif isinstance(ev, h2.events.StreamEnded) and ev.stream_id == sid:
                    done = True
                elif isinstance(ev, h2.events.StreamReset) and ev.stream_id == sid:
                    raise SystemExit(f"stream {sid} reset")
            out = conn.data_to_send()
            if out:
                sock.sendall(out)
        results.append({"status": status, "bytes": got})
    conn.close_connection()
    sock.sendall(conn.data_to_send())
    sock.close()
    print(json.dumps({"pid": os.getpid(), "results": results}), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
