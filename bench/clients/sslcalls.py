"""Per-call cost of a probed SSL function: K round trips of 100 bytes between two
in-memory TLS endpoints (ssl.MemoryBIO + SSLObject, no sockets, no syscalls), so each
iteration is one SSL_write_ex + one SSL_read_ex (Python 3.10+ calls the _ex forms) and
nothing else the tracer hooks. Prints {"wall","cpu","iters","ns_per_iter"}.

python bench/clients/sslcalls.py CERT KEY CA K
"""
import json
import resource
import ssl
import sys
import time

cert, key, ca, k = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
sctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
sctx.load_cert_chain(cert, key)
cctx = ssl.create_default_context(cafile=ca)
c_in, c_out, s_in, s_out = ssl.MemoryBIO(), ssl.MemoryBIO(), ssl.MemoryBIO(), ssl.MemoryBIO()
c = cctx.wrap_bio(c_in, c_out, server_hostname="localhost")
s = sctx.wrap_bio(s_in, s_out, server_side=True)


def pump():
    moved = True
    while moved:
        moved = False
        d = c_out.read()
        if d:
            s_in.write(d)
            moved = True
        d = s_out.read()
        if d:
            c_in.write(d)
            moved = True


for _ in range(20):   # handshake
    for obj in (c, s):
        try:
            obj.do_handshake()
        except ssl.SSLWantReadError:
            pass
    pump()
msg = b"x" * 100
r0, t0 = resource.getrusage(resource.RUSAGE_SELF), time.perf_counter()
for _ in range(k):
    c.write(msg)
    s_in.write(c_out.read())
    s.read(4096)
t1, r1 = time.perf_counter(), resource.getrusage(resource.RUSAGE_SELF)
print(json.dumps({"wall": t1 - t0, "cpu": (r1.ru_utime - r0.ru_utime) + (r1.ru_stime - r0.ru_stime), "iters": k,
                  "ns_per_iter": (t1 - t0) / k * 1e9}))
