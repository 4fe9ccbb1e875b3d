"""N sequential Anthropic calls over one keep-alive connection with httpx (bench 1).

python bench/clients/httpx_calls.py URL CA N [MODE]   MODE: mixed (default) | stream | json
Streams are read line by line (iter_lines), as an SDK's SSE parser does. Prints one JSON
line: wall seconds and user+sys CPU seconds of the N calls (getrusage, imports excluded).
"""
import json
import resource
import ssl
import sys
import time

import httpx

url, ca, n = sys.argv[1], sys.argv[2], int(sys.argv[3])
mode = sys.argv[4] if len(sys.argv) > 4 else "mixed"
hdrs = {"x-api-key": "sk-ant-bench", "anthropic-version": "2023-06-01", "content-type": "application/json"}
msgs = [{"role": "user", "content": "Say hello."}]
client = httpx.Client(verify=ssl.create_default_context(cafile=ca), http2=False)


def body(stream):
    return json.dumps({"model": "claude-sonnet-4-5", "max_tokens": 256, "messages": msgs, "stream": stream})


# one warm-up call: TLS handshake and connection set-up are not what is measured
client.post(url + "/v1/messages", content=body(False), headers=hdrs).read()
r0, t0 = resource.getrusage(resource.RUSAGE_SELF), time.perf_counter()
lines = 0
for i in range(n):
    stream = mode == "stream" or (mode == "mixed" and i % 2 == 0)
    if stream:
        with client.stream("POST", url + "/v1/messages", content=body(True), headers=hdrs) as r:
            for _ in r.iter_lines():
                lines += 1
    else:
        client.post(url + "/v1/messages", content=body(False), headers=hdrs).json()
t1, r1 = time.perf_counter(), resource.getrusage(resource.RUSAGE_SELF)
print(json.dumps({"wall": t1 - t0, "cpu": (r1.ru_utime - r0.ru_utime) + (r1.ru_stime - r0.ru_stime),
                  "user": r1.ru_utime - r0.ru_utime, "sys": r1.ru_stime - r0.ru_stime, "calls": n, "lines": lines}))
