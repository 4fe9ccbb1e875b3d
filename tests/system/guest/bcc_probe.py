"""Runs INSIDE the container, as a unit with agtap.service's sandbox: can BCC work there?

Compiles a BPF program (ring buffer, uprobe + uretprobe on libssl's SSL_write_ex /
SSL_read_ex, syscall and sched tracepoints), attaches it, reads other processes'
/proc/PID/{fd,maps}, makes one TLS exchange with a local openssl s_server and checks
the uprobes saw it. Exit 0 only if all of that worked. Independent of agtap's own
code: it proves the unit's hardening leaves BCC what it needs.

Kernel headers: Debian splits them into linux-headers-X-common and -X-<flavour>;
BCC wants one tree (BCC_KERNEL_SOURCE needs include/linux/kconfig.h and the
generated headers side by side), so they are joined with symlinks under $KDIR
(the unit's RuntimeDirectory, /run/agtap: writable under ProtectSystem=strict).
"""
import glob
import os
import shutil
import subprocess
import sys
import tempfile
import time

flavoured = [d for d in sorted(glob.glob("/usr/src/linux-headers-*")) if not d.endswith("-common")]
if not flavoured:
    sys.exit("no /usr/src/linux-headers-* tree")
arch = flavoured[-1]
common = arch.rsplit("-", 2)[0] + "-common"
if not os.path.isdir(common):
    common = arch.rsplit("-", 1)[0] + "-common"
kd = os.environ.get("KDIR", "/run/agtap/kernel")
shutil.rmtree(kd, ignore_errors=True)


def merge(dst, srcs):
    os.makedirs(dst, exist_ok=True)
    for n in sorted({n for s in srcs for n in os.listdir(s)}):
        have = [f"{s}/{n}" for s in srcs if os.path.lexists(f"{s}/{n}")]
        dirs = [h for h in have if os.path.isdir(h)]
        if len(dirs) > 1:
            merge(f"{dst}/{n}", dirs)
        else:
            os.symlink(os.path.realpath(have[0]), f"{dst}/{n}")


merge(kd, [arch, common])
os.environ["BCC_KERNEL_SOURCE"] = kd
from bcc import BPF  # noqa: E402

prog = r"""
BPF_RINGBUF_OUTPUT(events, 8);
int on_ssl(struct pt_regs *ctx) { u32 x = 1; events.ringbuf_output(&x, sizeof(x), 0); return 0; }
TRACEPOINT_PROBE(syscalls, sys_enter_write) { return 0; }
TRACEPOINT_PROBE(sched, sched_process_exec) { return 0; }
"""
t = time.time()
b = BPF(text=prog)
lib = (glob.glob("/usr/lib/*-linux-gnu/libssl.so.3") + glob.glob("/lib/*-linux-gnu/libssl.so.3"))[0]


def attach(sym, ret):
    """BCC's attach_uprobe, but calling libbcc with its real prototype: BCC 0.26's binding passes
    six of bpf_attach_uprobe's seven arguments, and the seventh, the reference counter offset,
    is stack garbage. 0 (none); where the kernel holds the point with another offset (a uprobe
    leaked by an earlier run on this machine: the cached rootfs's libssl is one file for every
    run), the one its log names for it, as agtap does (agtap/capture/refctr.py)."""
    import ctypes
    import re
    f = ctypes.CDLL("libbcc.so.0", use_errno=True).bpf_attach_uprobe
    f.restype = ctypes.c_int
    f.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_char_p, ctypes.c_char_p, ctypes.c_ulonglong, ctypes.c_int,
                  ctypes.c_uint32]
    path, off = BPF._check_path_symbol(lib.encode(), sym.encode(), 0, -1)
    fn = b.load_func(b"on_ssl", BPF.KPROBE)
    ev = b._get_uprobe_evname(b"r" if ret else b"p", path, off, -1)
    fd = f(fn.fd, int(ret), ev, path, off, -1, 0)
    if fd < 0:
        libc = ctypes.CDLL(None, use_errno=True)
        buf = ctypes.create_string_buffer(1 << 20)
        n = libc.klogctl(3, buf, len(buf))      # SYSLOG_ACTION_READ_ALL: the unit must allow it (CAP_SYSLOG)
        if n < 0:
            sys.exit(f"bcc: {sym} refused, and the kernel log is unreadable: {os.strerror(ctypes.get_errno())}")
        held = re.findall(rf"ref_ctr_offset mismatch\. inode: {os.stat(lib).st_ino:#x} offset: {off:#x} "
                          r"ref_ctr_offset\(old\): 0x([0-9a-f]+) ref_ctr_offset\(new\): 0x0\b", buf.raw[:n].decode())
        if not held:
            sys.exit(f"bcc: {sym} refused and no mismatch line for it in the kernel log")
        print(f"bcc: the kernel holds {sym} with reference counter offset 0x{held[-1]}", flush=True)
        fd = f(fn.fd, int(ret), ev, path, off, -1, int(held[-1], 16))
    if fd < 0:
        sys.exit(f"bcc: cannot attach to {sym}: {os.strerror(ctypes.get_errno())}")
    b._add_uprobe_fd(ev, fd)


attach("SSL_write_ex", False)
attach("SSL_read_ex", True)
print(f"bcc: compiled and attached in {time.time() - t:.1f}s against {arch} + {common}", flush=True)

seen = 0
for pid in os.listdir("/proc"):
    if pid.isdigit() and int(pid) != os.getpid():
        try:
            os.listdir(f"/proc/{pid}/fd")
            open(f"/proc/{pid}/maps").read()
            seen += 1
        except FileNotFoundError:
            pass
        except OSError as e:
            sys.exit(f"/proc/{pid}: {e}")
print(f"proc: read fd/ and maps of {seen} other processes", flush=True)

got = []
b["events"].open_ring_buffer(lambda c, d, s: got.append(1))
d = tempfile.mkdtemp()
subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-subj", "/CN=localhost",
                "-keyout", f"{d}/k.pem", "-out", f"{d}/c.pem", "-days", "1"], check=True, capture_output=True)
port = int(os.environ.get("PROBE_PORT", "14443"))
srv = subprocess.Popen(["openssl", "s_server", "-quiet", "-www", "-accept", f"127.0.0.1:{port}",
                        "-key", f"{d}/k.pem", "-cert", f"{d}/c.pem"],
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
try:
    for _ in range(50):
        r = subprocess.run([sys.executable, "-c", f"""
import socket, ssl
c = ssl.create_default_context(cafile="{d}/c.pem"); c.check_hostname = False
t = c.wrap_socket(socket.create_connection(("127.0.0.1", {port})))
t.write(b"GET / HTTP/1.0\\r\\n\\r\\n"); t.read(100)
"""], capture_output=True, text=True)
        if r.returncode == 0:
            break
        time.sleep(0.1)
    else:
        sys.exit(f"TLS client failed: {r.stderr}")
finally:
    srv.kill()
b.ring_buffer_poll(1000)
print(f"uprobes: {len(got)} SSL calls seen", flush=True)
sys.exit(0 if got else 1)
