"""Containers: clients with their own libssl (chroot, systemd-nspawn, Podman) are seen.

The clients run from debootstrapped Debian 12 and 13 roots (tests/bpf/make-client-rootfs.sh,
cached under /var/cache/agtap-test/client-rootfs-SUITE): OpenSSL 3.0 and 3.5, files that
agtap's own view of /usr/lib/x86_64-linux-gnu/libssl.so.3 does not reach. One daemon (-v)
runs for the module. Two clients start before it: a chroot whose libssl was deleted and
replaced after it was mapped (only /proc/PID/map_files reaches it), and an nspawn container
(its own mount namespace). The others start after it. Each call is exactly one event,
selected by a model name of its own (or the client's pid as the daemon sees it).

Neither chroot nor `systemd-nspawn --register=no --keep-unit` puts the client in a cgroup
of its own, so their events have no container_id; Podman's (libpod-ID) do.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import time
import uuid
from pathlib import Path

import pytest

from agtap.capture import probepoints
from agtap.capture.elfsyms import symbol_addrs
from agtap.capture.procinfo import children
from tests.support.agtapd import AGTAP, Agtapd
from tests.support import Reply

HERE = Path(__file__).resolve().parent
CLIENTS = HERE.parent / "clients"
CACHE = Path(os.environ.get("AGTAP_TEST_CACHE", "/var/cache/agtap-test"))
SUITES = ("bookworm", "trixie")
LIBSSL = "usr/lib/x86_64-linux-gnu/libssl.so.3"
KEY = "sk-ant-agtap-test-container-5c1f"
SETTLE = 0.7
NODE = shutil.which("node") or "/usr/bin/node"
STARTED: list[int] = []   # the daemon's pid of every chroot and nspawn client started here


@pytest.fixture(scope="module")
def roots(_need_root) -> dict[str, Path]:
    """The client roots, built side by side the first time (debootstrap waits on the network)."""
    t0 = time.monotonic()
    script = str(HERE / "make-client-rootfs.sh")
    builds = {suite: subprocess.Popen([script, suite, str(CACHE / f"client-rootfs-{suite}")],
                                      stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
              for suite in SUITES}
    for suite, b in builds.items():
        out, err = b.communicate(timeout=1800)
        assert b.returncode == 0, f"building the {suite} client root failed:\n{out[-2000:]}\n{err[-2000:]}"
        print(f"\n{out.strip().splitlines()[-1]} ({time.monotonic() - t0:.1f}s)")
    return {suite: CACHE / f"client-rootfs-{suite}" for suite in SUITES}


class Root:
    """A directory of this test run inside a client root (/agtap-test/ID as the client sees it)."""

    def __init__(self, suite: str, root: Path, ca: Path):
        self.suite, self.root = suite, root
        self.inside = f"/agtap-test/{uuid.uuid4().hex[:12]}"
        self.dir = root / self.inside.lstrip("/")
        self.dir.mkdir(parents=True)
        for name in ("py_stdlib.py", "py_mcp_stdlib.py", "py_anthropic.py", "pyclient_common.py", "node_https.mjs"):
            shutil.copy(CLIENTS / name, self.dir / name)
        shutil.copy(ca, self.dir / "ca.pem")

    def argv(self, runtime: str, script: str, *args: str, env: dict[str, str] | None = None) -> list[str]:
        envs = dict(PATH="/usr/bin:/bin", SSL_CERT_FILE=f"{self.inside}/ca.pem", AGTAP_TEST_API_KEY=KEY,
                    NODE_EXTRA_CA_CERTS=f"{self.inside}/ca.pem", PYTHONDONTWRITEBYTECODE="1",
                    PYTHONUNBUFFERED="1", NO_PROXY="127.0.0.1", **(env or {}))
        interpreter = f"{self.inside}/node" if script.endswith(".mjs") else "python3"
        tail = ["env", "-i", *(f"{k}={v}" for k, v in envs.items()),
                interpreter, f"{self.inside}/{script}", *args]
        if runtime == "chroot":
            return ["chroot", str(self.root), *tail]
        if runtime == "nspawn":
            # a machine name of its own and --read-only (a shared lock on the directory): two
            # containers of one root may run at once
            return ["systemd-nspawn", "--quiet", "--register=no", "--keep-unit", "--pipe", "--read-only",
                    f"--machine=agtap-{uuid.uuid4().hex[:8]}", f"--directory={self.root}", *tail]
        if runtime == "podman":
            return [*PODMAN, "run", "--rm", "-i", "--network=host", *PODMAN_ULIMITS,
                    f"--cidfile={self.dir}/cid-{uuid.uuid4().hex[:8]}", f"--volume={self.dir}:{self.inside}:ro",
                    podman_image(self.suite, self.root), *tail]
        raise ValueError(runtime)

    def remove(self) -> None:
        shutil.rmtree(self.dir, ignore_errors=True)


# runc, not Debian 12's default crun (1.8), which refuses this machine's hybrid cgroup v1/v2
# hierarchy; rlimits no higher than the caller's, as root here lacks CAP_SYS_RESOURCE
PODMAN = ["podman", "--runtime=runc"]
PODMAN_ULIMITS = ["--ulimit=nofile=1024:1024", "--ulimit=nproc=1024:1024"]


def podman_image(suite: str, root: Path) -> str:
    """The client root imported as a local image (no registry), tagged with its build stamp."""
    image = f"localhost/agtap-test-client-{suite}:{(root / '.agtap-rootfs-stamp').read_text().strip()}"
    if subprocess.run([*PODMAN, "image", "exists", image]).returncode != 0:
        tar = subprocess.Popen(["tar", "-C", str(root), "--exclude=./agtap-test", "-c", "."], stdout=subprocess.PIPE)
        r = subprocess.run([*PODMAN, "import", "-q", "-", image], stdin=tar.stdout, capture_output=True, text=True)
        tar.wait()
        assert r.returncode == 0 and tar.returncode == 0, r.stderr
    return image


def host_pid(launcher: int, inner: int, timeout: float = 10) -> int:
    """The daemon's pid of a descendant of `launcher` that calls itself `inner` (NSpid's last)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        todo = [launcher]
        while todo:
            p = todo.pop()
            try:
                with open(f"/proc/{p}/status") as f:
                    nspid = next(line.split()[1:] for line in f if line.startswith("NSpid:"))
            except (OSError, StopIteration):
                nspid = []
            if nspid and int(nspid[-1]) == inner:
                return p
            todo += children(p)
        time.sleep(0.05)
    raise AssertionError(f"no descendant of {launcher} is pid {inner} in its namespace")


class Client:
    """A client started with --wait-go: ready once its libssl is mapped, calls on go()."""

    def __init__(self, argv: list[str]):
        self.popen = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                      stderr=subprocess.PIPE, text=True)
        line = self.popen.stdout.readline()
        if not line:
            raise AssertionError(f"{argv} did not start: {self.popen.stderr.read()}")
        cidfile = next((a.split("=", 1)[1] for a in argv if a.startswith("--cidfile=")), None)
        self.container_id = Path(cidfile).read_text().strip() if cidfile else ""
        if self.container_id:   # podman: the container's process is conmon's child, not ours
            self.pid = int(subprocess.run([*PODMAN, "inspect", "-f", "{{.State.Pid}}", self.container_id],
                                          capture_output=True, text=True, check=True).stdout)
        else:
            self.pid = host_pid(self.popen.pid, json.loads(line)["ready"])
            STARTED.append(self.pid)

    def go(self) -> dict:
        out, err = self.popen.communicate("go\n", timeout=60)
        assert self.popen.returncode == 0, err
        return json.loads(out.strip().splitlines()[-1])


def run(root: Root, runtime: str, script: str, *args: str) -> tuple[int, dict]:
    c = Client(root.argv(runtime, script, *args, "--wait-go"))
    return c.pid, c.go()


def events(daemon: Agtapd, n: int, **match) -> list[dict]:
    """The logged events whose fields equal `match`, once at least n arrived and SETTLE passed."""
    def select():
        return [e for e in daemon.events() if all(e.get(k) == v for k, v in match.items())]
    deadline = time.monotonic() + 15
    while len(select()) < n and time.monotonic() < deadline:
        time.sleep(0.1)
    time.sleep(SETTLE)
    return select()


# --- clients started before the daemon, then the daemon ---

@pytest.fixture(scope="module")
def dirs(roots, certs):
    made = {suite: Root(suite, path, certs.ca) for suite, path in roots.items()}
    yield made
    for r in made.values():
        r.remove()


@pytest.fixture(scope="module")
def early(dirs, api):
    """Started before agtap: a chroot (bookworm) whose libssl was deleted and replaced once
    mapped, an nspawn container and a Podman container (trixie)."""
    b = dirs["bookworm"]
    private = b.dir / "lib"
    private.mkdir()
    shutil.copy(b.root / LIBSSL, private / "libssl.so.3")
    deleted = Client(b.argv("chroot", "py_stdlib.py", "--base-url", api.base_url, "--wait-go",
                            env={"LD_LIBRARY_PATH": f"{b.inside}/lib"}))
    shutil.copy(b.root / LIBSSL, private / "libssl.so.3.new")
    os.replace(private / "libssl.so.3.new", private / "libssl.so.3")   # the mapped inode is now "(deleted)"
    with open(f"/proc/{deleted.pid}/maps") as f:
        assert f"{b.inside}/lib/libssl.so.3 (deleted)" in f.read()
    nspawned = Client(dirs["trixie"].argv("nspawn", "py_stdlib.py", "--base-url", api.base_url, "--wait-go"))
    podman = Client(dirs["trixie"].argv("podman", "py_stdlib.py", "--base-url", api.base_url, "--model",
                                        "claude-podman-early", "--wait-go"))
    yield {"deleted": deleted, "nspawn": nspawned, "podman": podman}
    for c in (deleted, nspawned, podman):
        if c.popen.poll() is None:
            c.popen.kill()
            c.popen.wait()


@pytest.fixture(scope="module")
def daemon(early, tmp_path_factory, _need_root):
    d = Agtapd(tmp_path_factory.mktemp("agtapd-containers"), "-v")
    yield d
    if d.proc.poll() is None:
        d.stop()


@pytest.fixture(scope="module")
def api(certs):
    from tests.support import FakeApi
    with FakeApi(certs) as a:
        yield a


def attached_lines(daemon: Agtapd) -> list[str]:
    return [line for line in daemon.stderr_path.read_text().splitlines() if line.startswith("agtap: attached: ")]


def objdump(path: Path, addr: int) -> list[str]:
    """binutils' disassembly of the first instructions at addr (an endbr64 left out): an
    independent reading of the bytes probepoints.py decides on."""
    out = subprocess.run(["objdump", "-d", "--no-show-raw-insn", f"--start-address={addr:#x}",
                          f"--stop-address={addr + 24:#x}", str(path)], capture_output=True, text=True,
                         check=True).stdout
    insns = [line.split(":", 1)[1].strip() for line in out.splitlines() if line.startswith("  ") and ":" in line]
    return [i for i in insns if i != "endbr64"]


@pytest.mark.parametrize("suite", SUITES)
def test_probe_points_of_each_distros_libssl(roots, suite):
    """OpenSSL 3.0 (bookworm): SSL_read_ex and SSL_write_ex are `sub $8,%rsp; call T` wrappers
    of what SSL_read/SSL_write call too: one probe each on T. OpenSSL 3.5 (trixie): the same
    for reads, but SSL_write_ex moves its 4th argument to %r8 and jumps to SSL_write_ex2 (5
    arguments): no common callee with the same arguments, so the exported pair is probed."""
    lib = roots[suite] / LIBSSL
    syms = symbol_addrs(str(lib))
    points = {pt.covers: pt for pt in probepoints.plan(str(lib), syms)}
    read_ex = objdump(lib, syms["SSL_read_ex"])
    assert read_ex[0] == "sub    $0x8,%rsp" and read_ex[1].startswith("call "), read_ex
    assert points["SSL_read/SSL_read_ex"].addr == int(read_ex[1].split()[1], 16)
    assert not points["SSL_read/SSL_read_ex"].exported
    write_ex = objdump(lib, syms["SSL_write_ex"])
    if suite == "bookworm":
        assert write_ex[0] == "sub    $0x8,%rsp" and write_ex[1].startswith("call "), write_ex
        assert points["SSL_write/SSL_write_ex"].addr == int(write_ex[1].split()[1], 16)
        assert set(points) == {"SSL_read/SSL_read_ex", "SSL_write/SSL_write_ex"}
    else:
        assert write_ex[:3] == ["mov    %rcx,%r8", "xor    %ecx,%ecx", write_ex[2]], write_ex
        assert write_ex[2].startswith("jmp ") and "<SSL_write_ex2@plt>" in write_ex[2], write_ex
        assert points["SSL_write_ex"].addr == syms["SSL_write_ex"] and points["SSL_write_ex"].exported
        assert points["SSL_write"].addr == syms["SSL_write"] and points["SSL_write"].exported
        assert set(points) == {"SSL_read/SSL_read_ex", "SSL_write_ex", "SSL_write"}


def test_started_before_agtap_with_its_libssl_deleted_and_replaced(daemon, early, api):
    c = early["deleted"]
    out = c.go()
    assert out["results"][0]["status"] == 200
    evs = events(daemon, 1, pid=c.pid)
    assert len(evs) == 1, evs
    assert evs[0]["provider"] == "anthropic" and evs[0]["transport"] == "tls" and evs[0]["container_id"] == ""
    mine = [line for line in attached_lines(daemon) if f"/proc/{c.pid}/map_files/" in line]
    assert len(mine) == 1 and "/lib/libssl.so.3 [root " in mine[0], attached_lines(daemon)


def test_started_before_agtap_in_an_nspawn_container(daemon, early, api):
    c = early["nspawn"]
    assert c.go()["results"][0]["status"] == 200
    evs = events(daemon, 1, pid=c.pid)
    assert len(evs) == 1, evs
    assert evs[0]["model"] == "claude-sonnet-5" and evs[0]["container_id"] == ""


@pytest.mark.parametrize("runtime", ["chroot", "nspawn"])
@pytest.mark.parametrize("suite", SUITES)
def test_stdlib_call_from_a_container_started_after_agtap(daemon, dirs, api, suite, runtime):
    model = f"claude-{suite}-{runtime}-{uuid.uuid4().hex[:6]}"
    pid, out = run(dirs[suite], runtime, "py_stdlib.py", "--base-url", api.base_url, "--model", model)
    assert out["results"][0]["status"] == 200
    evs = events(daemon, 1, model=model)
    assert len(evs) == 1, evs
    assert evs[0]["pid"] == pid and evs[0]["container_id"] == "" and evs[0]["http_status"] == 200
    assert evs[0]["server_port"] == api.port


@pytest.mark.parametrize("runtime", ["nspawn", "chroot"])   # nspawn first: agtap's view of its path is no file
def test_a_node_binary_inside_a_container(daemon, dirs, api, runtime):
    """node links OpenSSL statically and exports its symbols: a copy of it inside the root
    (another inode than the host's node) is probed at its exec, once for both runtimes."""
    trixie = dirs["trixie"]
    if not (trixie.dir / "node").exists():
        shutil.copy(NODE, trixie.dir / "node")
    model = f"claude-node-{runtime}-{uuid.uuid4().hex[:6]}"
    pid, out = run(trixie, runtime, "node_https.mjs", "--base-url", api.base_url, "--model", model)
    assert out["results"][0]["status"] == 200
    evs = events(daemon, 1, model=model)
    assert len(evs) == 1, evs
    assert evs[0]["pid"] == pid and evs[0]["provider"] == "anthropic"
    node_lines = [line for line in attached_lines(daemon) if line.startswith(f"agtap: attached: {trixie.inside}/node ")
                  or line.startswith(f"agtap: attached: {trixie.dir}/node ")]
    assert len(node_lines) == 1, attached_lines(daemon)


@pytest.mark.parametrize("suite", SUITES)
def test_official_sdk_in_an_nspawn_container(daemon, dirs, api, suite):
    model = f"claude-sdk-{suite}-{uuid.uuid4().hex[:6]}"
    api.script(Reply(text="Hi from the container.", input_tokens=21, output_tokens=5))
    pid, out = run(dirs[suite], "nspawn", "py_anthropic.py", "--base-url", api.base_url, "--mode", "nonstream",
                   "--model", model)
    assert out["results"][0]["text"] == "Hi from the container."
    evs = events(daemon, 1, model=model)
    assert len(evs) == 1, evs
    assert evs[0]["pid"] == pid and (evs[0]["input_tokens"], evs[0]["output_tokens"]) == (21, 5)


@pytest.mark.parametrize("suite,runtime", [("bookworm", "nspawn"), ("trixie", "chroot")])
def test_mcp_stdio_pair_in_a_container(daemon, dirs, suite, runtime):
    pid, out = run(dirs[suite], runtime, "py_mcp_stdlib.py")
    assert out["results"][0]["content"][0]["text"] == "5"
    evs = events(daemon, 4, pid=pid, kind="mcp_call")
    methods = sorted(e["model"] for e in evs)
    assert methods == sorted(["initialize", "notifications/initialized", "tools/list", "tools/call"]), methods
    assert next(e for e in evs if e["model"] == "tools/call")["tools"] == ["add"]


def test_podman_containers_of_one_image_carry_their_id_and_share_one_probe(daemon, early, dirs, api):
    """Three containers of one imported image, one started before agtap: overlayfs shows each
    its own inode of libssl, but all are the image layer's file, probed once (found through
    the first); each event names its container."""
    model = f"claude-podman-{uuid.uuid4().hex[:6]}"
    later = [Client(dirs["trixie"].argv("podman", "py_stdlib.py", "--base-url", api.base_url, "--model", model,
                                        "--wait-go")) for _ in range(2)]
    first = early["podman"]
    for c in [first, *later]:
        assert c.go()["results"][0]["status"] == 200
    assert [(e["pid"], e["container_id"]) for e in events(daemon, 1, model="claude-podman-early")] == \
        [(first.pid, first.container_id)]
    evs = events(daemon, 2, model=model)
    assert sorted((e["pid"], e["container_id"]) for e in evs) == sorted((c.pid, c.container_id) for c in later)
    lines = attached_lines(daemon)
    theirs = [line for line in lines if any(f"[container {c.container_id[:12]}," in line for c in [first, *later])]
    assert theirs == [line for line in lines if line.startswith(
        f"agtap: attached: /{LIBSSL} [container {first.container_id[:12]}, pid {first.pid}, via ")], lines
    assert len(theirs) == 1, lines


def test_each_container_libssl_is_attached_once(daemon, early, roots):
    """Each root's libssl is probed once, found through the first of its processes agtap saw
    (the two started before it); the processes started later, in chroot or nspawn, use the
    probes already on those inodes, though the first processes have exited."""
    lines = [line for line in attached_lines(daemon) if "/libssl.so" in line]
    mine = {pid: [line for line in lines if f", pid {pid}," in line or f", pid {pid}]" in line] for pid in STARTED}
    deleted, nspawned = early["deleted"].pid, early["nspawn"].pid
    assert len(mine.pop(deleted)) == 2, lines    # bookworm's libssl, and the deleted copy
    assert len(mine.pop(nspawned)) == 1, lines   # trixie's libssl
    assert not any(mine.values()), lines
    b = next(line for line in lines if f", pid {deleted}," in line and "map_files" not in line)
    assert b.startswith(f"agtap: attached: /{LIBSSL} [root {roots['bookworm']}, pid {deleted}, via /proc/")
    t = next(line for line in lines if f", pid {nspawned}," in line)
    assert t.startswith(f"agtap: attached: /{LIBSSL} [mount namespace "), t


def test_doctor_lists_the_libssl_of_each_container(daemon, dirs, api):
    c = Client(dirs["trixie"].argv("nspawn", "py_stdlib.py", "--base-url", api.base_url, "--wait-go"))
    try:
        r = subprocess.run([*AGTAP, "doctor"], capture_output=True, text=True, timeout=120, cwd=HERE.parents[1])
    finally:
        c.go()
    # the container's libssl line (probe-point lines about that file name the same pid: not counted here)
    mine = [line for line in r.stdout.splitlines() if f"pid {c.pid}" in line and " libssl: " in line[:14]]
    assert len(mine) == 1, r.stdout
    assert mine[0].startswith("ok    libssl: /usr/lib/x86_64-linux-gnu/libssl.so.3 [mount namespace ")
    assert "SSL_write_ex; SSL_write; SSL_read/SSL_read_ex via their common callee" in mine[0]


def test_no_api_key_in_any_file_agtap_wrote(daemon):
    """Runs last: every container client above sent KEY."""
    files = [p for p in daemon.dir.rglob("*") if p.is_file() and p.name != "notify.sock"]
    blob = b"".join(p.read_bytes() for p in files)
    assert b"claude-sonnet-5" in blob, "the daemon logged no container call"
    assert KEY.encode() not in blob
