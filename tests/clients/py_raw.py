"""A plain HTTP/1.1 POST/GET with `requests` or `httpx` (no LLM SDK): the "hand-written client" case.

python tests/clients/py_raw.py --lib requests|httpx --url URL [--method POST] [--body TEXT | --body-file F]
    [--header 'Name: value' ...] [--repeat N] [--wait-go]
Trusts $SSL_CERT_FILE explicitly (requests reads REQUESTS_CA_BUNDLE, httpx does not read env
CAs at all), so both get verify=<that file>. Prints {"client","pid","results":[{"status","body",...}]}.
"""

from __future__ import annotations

import argparse
import json
import os
import ssl
import sys

parser = argparse.ArgumentParser()
parser.add_argument("--lib", choices=["requests", "httpx"], required=True)
parser.add_argument("--url", required=True)
parser.add_argument("--method", default="POST")
parser.add_argument("--body", default=None)
parser.add_argument("--body-file", default=None, help="read the body from this file (large bodies)")
parser.add_argument("--header", action="append", default=[])
parser.add_argument("--repeat", type=int, default=1)
parser.add_argument("--wait-go", action="store_true")
args = parser.parse_args()

headers = dict(h.split(": ", 1) for h in args.header)
body = args.body.encode() if args.body is not None else None
if args.body_file:
    with open(args.body_file, "rb") as f:
        body = f.read()
ca = os.environ.get("SSL_CERT_FILE")
results = []

if args.lib == "requests":
    import requests

    session = requests.Session()  # one Session: keep-alive across --repeat calls

    def call() -> dict:
        r = session.request(args.method, args.url, data=body, headers=headers, verify=ca or True)
        # r.text would guess the charset of a body without one (application/octet-stream) with
        # chardet when that is importable (Debian's python3-chardet comes with python3-botocore),
        # which reads the 2-byte UTF-8 of the echo body as Latin-1: every body here is UTF-8.
        return {"status": r.status_code, "body": r.content.decode("utf-8", "replace"),
                "content_encoding": r.headers.get("content-encoding")}
else:
    import httpx

    session = httpx.Client(verify=ssl.create_default_context(cafile=ca) if ca else True, http2=False)

    def call() -> dict:
        r = session.request(args.method, args.url, content=body, headers=headers)
        return {"status": r.status_code, "body": r.text, "http_version": r.http_version,
                "content_encoding": r.headers.get("content-encoding")}

if args.wait_go:
    print(json.dumps({"ready": os.getpid()}), flush=True)
    sys.stdin.readline()
for _ in range(args.repeat):
    results.append(call())
print(json.dumps({"client": f"python-{args.lib}", "mode": "raw", "pid": os.getpid(), "results": results}))
