"""One Anthropic Messages call with nothing but Python's standard library (http.client + ssl).

python py_stdlib.py --base-url URL [--wait-go]   (key from $AGTAP_TEST_API_KEY, CA from $SSL_CERT_FILE)
Runs from the container test roots, which have no SDK but the interpreter's own libssl.
Prints {"client", "pid", "results": [{"status", "body"}]}; --wait-go waits for a line on
stdin after `import ssl` (libssl mapped) and before the call.
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import ssl
import sys
from urllib.parse import urlsplit

parser = argparse.ArgumentParser()
parser.add_argument("--base-url", required=True)
parser.add_argument("--model", default="claude-sonnet-5")
parser.add_argument("--wait-go", action="store_true")
args = parser.parse_args()
if args.wait_go:
    print(json.dumps({"ready": os.getpid()}), flush=True)
    sys.stdin.readline()
u = urlsplit(args.base_url)
conn = http.client.HTTPSConnection(u.hostname, u.port,
                                   context=ssl.create_default_context(cafile=os.environ.get("SSL_CERT_FILE")))
body = json.dumps({"model": args.model, "max_tokens": 64,
                   "messages": [{"role": "user", "content": "Say hello."}]})
conn.request("POST", "/v1/messages", body=body, headers={
    "content-type": "application/json", "anthropic-version": "2023-06-01",
    "x-api-key": os.environ.get("AGTAP_TEST_API_KEY", "sk-agtap-test-key")})
r = conn.getresponse()
print(json.dumps({"client": "python-stdlib", "pid": os.getpid(),
                  "results": [{"status": r.status, "body": r.read().decode()}]}), flush=True)
