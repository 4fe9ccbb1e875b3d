"""Runs INSIDE the container: one Anthropic Messages call with urllib (python3's ssl -> libssl).

    python3 client_call.py PORT CAFILE MODEL     prints the response body, plus "client_pid":
                                                  this process's PID as the container sees it
"""
import json
import os
import ssl
import sys
import urllib.request

port, cafile, model = sys.argv[1], sys.argv[2], sys.argv[3]
ctx = ssl.create_default_context(cafile=cafile)
req = urllib.request.Request(
    f"https://api.anthropic.com:{port}/v1/messages",
    data=json.dumps({"model": model, "max_tokens": 64,
                     "messages": [{"role": "user", "content": "Say hello."}]}).encode(),
    headers={"content-type": "application/json", "anthropic-version": "2023-06-01",
             "x-api-key": "sk-ant-systest-SECRET-0123456789"})
with urllib.request.urlopen(req, context=ctx, timeout=20) as r:
    body = json.loads(r.read().decode())
body["client_pid"] = os.getpid()
print(json.dumps(body))
