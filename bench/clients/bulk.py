"""K sequential GET /bulk/N over one keep-alive TLS connection (bench 2: unrelated traffic).

python bench/clients/bulk.py HOST PORT CA K [N]   (N default 1 MiB)
Prints {"wall","cpu","bytes"} of the K downloads (getrusage; set-up excluded).
"""
import http.client
import json
import resource
import ssl
import sys
import time

host, port, ca, k = sys.argv[1], int(sys.argv[2]), sys.argv[3], int(sys.argv[4])
n = int(sys.argv[5]) if len(sys.argv) > 5 else 1 << 20
conn = http.client.HTTPSConnection(host, port, context=ssl.create_default_context(cafile=ca))


def get() -> int:
    conn.request("GET", f"/bulk/{n}")
    r = conn.getresponse()
    got = 0
    while True:
        b = r.read(65536)
        if not b:
            break
        got += len(b)
    return got


get()   # warm-up: handshake
r0, t0 = resource.getrusage(resource.RUSAGE_SELF), time.perf_counter()
total = sum(get() for _ in range(k))
t1, r1 = time.perf_counter(), resource.getrusage(resource.RUSAGE_SELF)
print(json.dumps({"wall": t1 - t0, "cpu": (r1.ru_utime - r0.ru_utime) + (r1.ru_stime - r0.ru_stime), "bytes": total}))
