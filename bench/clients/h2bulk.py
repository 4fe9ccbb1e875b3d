"""K sequential GET /bulk/N over one HTTP/2 TLS connection (bench 2: unrelated traffic over h2).

python bench/clients/h2bulk.py URL K [N] [--wait-go]   (N default 1 MiB; CA from $SSL_CERT_FILE)
httpx2 with http2=True (python3-h2), the client the SDKs take as http_client. Prints
{"wall","cpu","bytes","http_version"} of the K downloads (getrusage; set-up excluded).
"""
import json
import resource
import sys
import time

import httpx2

args = [a for a in sys.argv[1:] if a != "--wait-go"]
url, k = args[0].rstrip("/"), int(args[1])
n = int(args[2]) if len(args) > 2 else 1 << 20
client = httpx2.Client(http2=True)


def get() -> tuple[int, str]:
    got = 0
    with client.stream("GET", f"{url}/bulk/{n}") as r:
        for b in r.iter_raw(65536):
            got += len(b)
        return got, r.http_version


get()   # warm-up: handshake
if "--wait-go" in sys.argv:   # bench 2's delivered pass starts a tracer for this pid first
    print(json.dumps({"ready": True}), flush=True)
    sys.stdin.readline()
r0, t0 = resource.getrusage(resource.RUSAGE_SELF), time.perf_counter()
total, version = 0, ""
for _ in range(k):
    got, version = get()
    total += got
t1, r1 = time.perf_counter(), resource.getrusage(resource.RUSAGE_SELF)
print(json.dumps({"wall": t1 - t0, "cpu": (r1.ru_utime - r0.ru_utime) + (r1.ru_stime - r0.ru_stime), "bytes": total,
                  "http_version": version}))
