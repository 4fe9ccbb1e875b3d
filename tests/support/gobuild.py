"""Go programs built at test time from their source in tests/go/<name>/, with Debian's Go.

    path = go_binary("tlsget")                                  # Debian 12's Go 1.19, the host's
    path = go_binary("tlsget", stripped=True)                   # -ldflags="-s -w"
    path = go_binary("tlsget", release="trixie")                # Debian 13's Go 1.24
    path = go_binary("tlsget", pie=True)                        # -buildmode=pie

bookworm builds with the host's `go` (golang-go, setup/apt.txt [test]); trixie in a
debootstrapped Debian 13 root with its golang-go (tests/go/make-go-rootfs.sh, cached under
$AGTAP_TEST_CACHE/go-rootfs-trixie), run with systemd-nspawn (root only). Every build is
static unless external=True (CGO_ENABLED=0: a trixie-built program runs on the Debian 12 host), -trimpath, and
standard library only (GOPROXY=off). Binaries are cached under
$AGTAP_TEST_CACHE/go-bin (or ~/.cache/agtap-test/go-bin when that is not writable), keyed by
a hash of the program's source, the Go version and the flags: a rerun builds nothing.
"""

from __future__ import annotations

import fcntl
import hashlib
import os
import shutil
import subprocess
from pathlib import Path

from tests.support.paths import REPO

SOURCES = REPO / "tests" / "go"
ROOTFS_SCRIPT = SOURCES / "make-go-rootfs.sh"
CACHE_ROOT = Path(os.environ.get("AGTAP_TEST_CACHE", "/var/cache/agtap-test"))
CACHE = CACHE_ROOT / "go-bin"
if not os.access(CACHE if CACHE.exists() else CACHE_ROOT if CACHE_ROOT.exists() else "/var/cache", os.W_OK):
    CACHE = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "agtap-test" / "go-bin"
RELEASES = {"bookworm": "Debian 12", "trixie": "Debian 13"}
HOST_RELEASE = "bookworm"
PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"


class GoBuildError(RuntimeError):
    pass


def rootfs(release: str) -> Path:
    """The Debian root whose Go builds for `release` (built once, root only; one builder at
    a time, and never replaced under a build: both hold its lock)."""
    if release == HOST_RELEASE:
        return Path("/")
    dest = CACHE_ROOT / f"go-rootfs-{release}"
    if _stamp_ok(dest, release):
        return dest
    if os.geteuid() != 0:
        raise GoBuildError(f"Go for {release} needs the root {dest}: building it needs root "
                           f"(sudo {ROOTFS_SCRIPT} {release})")
    CACHE_ROOT.mkdir(parents=True, exist_ok=True)
    with open(CACHE_ROOT / f"go-rootfs-{release}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not _stamp_ok(dest, release):
            r = subprocess.run([str(ROOTFS_SCRIPT), release, str(dest)], capture_output=True, text=True,
                               env={"PATH": PATH, **{k: v for k, v in os.environ.items() if k.startswith("AGTAP_TEST_")}},
                               timeout=1800)
            if r.returncode != 0:
                raise GoBuildError(f"{ROOTFS_SCRIPT.name} {release} failed:\n{r.stdout[-3000:]}\n{r.stderr[-3000:]}")
    return dest


def _stamp_ok(dest: Path, release: str) -> bool:
    """The script's own test (its stamp: a hash of the script and the suite), without running it."""
    want = hashlib.sha256(ROOTFS_SCRIPT.read_bytes() + release.encode() + b"\n").hexdigest()[:16]
    try:
        return (dest / ".agtap-rootfs-stamp").read_text().strip() == want
    except OSError:
        return False


def go_version(release: str = HOST_RELEASE) -> str:
    """"go1.19.8": the Go that builds for `release` (from its GOROOT's VERSION file)."""
    f = rootfs(release) / "usr/lib/go/VERSION"
    try:
        return f.read_text().split()[0]
    except (OSError, IndexError):
        raise GoBuildError(f"no Go in {f.parent} (golang-go missing: apt-get install golang-go)") from None


def _source_hash(name: str) -> str:
    src = SOURCES / name
    h = hashlib.sha256()
    files = sorted(p for p in src.rglob("*") if p.is_file())
    if not files:
        raise GoBuildError(f"no Go program {src}")
    for p in files:
        h.update(str(p.relative_to(src)).encode() + b"\0" + p.read_bytes() + b"\0")
    return h.hexdigest()[:16]


def go_binary(name: str, *, release: str = HOST_RELEASE, stripped: bool = False, pie: bool = False,
              goexperiment: str = "", external: bool = False) -> Path:
    """tests/go/<name> built by `release`'s Go (stripped: -ldflags="-s -w"; pie:
    -buildmode=pie; goexperiment: GOEXPERIMENT; external: cgo on and linked by gcc,
    -linkmode=external, host only, dynamically linked to the host's libc); cached."""
    if external and release != HOST_RELEASE:
        raise GoBuildError("external linking is built on the host only (the Go roots have no gcc)")
    if release not in RELEASES:
        raise GoBuildError(f"unknown release {release!r} (one of {', '.join(RELEASES)})")
    version = go_version(release)
    ldflags = " ".join((["-linkmode=external"] if external else []) + (["-s -w"] if stripped else []))
    flags = ["-trimpath", "-buildvcs=false"] + ([f"-ldflags={ldflags}"] if ldflags else []) + \
        (["-buildmode=pie"] if pie else [])
    key = hashlib.sha256(f"{_source_hash(name)} {version} {release} {flags} {goexperiment}".encode()).hexdigest()[:16]
    kind = ("stripped" if stripped else "symbols") + ("-pie" if pie else "") + ("-external" if external else "") + \
        (f"-{goexperiment.replace(',', '-')}" if goexperiment else "")
    out = CACHE / f"{name}-{version}-{kind}-{key}" / name
    if out.is_file():
        return out
    CACHE.mkdir(parents=True, exist_ok=True)
    with open(CACHE / ".lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)          # one build at a time (and one nspawn per root)
        if out.is_file():
            return out
        tmp = out.parent.with_name(out.parent.name + f".tmp{os.getpid()}")
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir(parents=True)
        try:
            _build(name, release, flags, tmp, goexperiment, external)
            os.replace(tmp, out.parent)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
    return out


def _build(name: str, release: str, flags: list[str], outdir: Path, goexperiment: str, external: bool) -> None:
    env = {"PATH": PATH, "HOME": "/nonexistent", "CGO_ENABLED": "1" if external else "0", "GOFLAGS": "-mod=mod",
           "GOPROXY": "off", "GOTOOLCHAIN": "local", "GO111MODULE": "on", "GOTELEMETRY": "off"}
    if goexperiment:
        env["GOEXPERIMENT"] = goexperiment
    gocache = CACHE / f"gocache-{release}"
    gocache.mkdir(parents=True, exist_ok=True)
    if release == HOST_RELEASE:
        if shutil.which("go") is None:
            raise GoBuildError("go is missing: sudo apt-get install golang-go (make setup does)")
        env.update(GOCACHE=str(gocache), GOPATH=str(CACHE / "gopath"))
        cmd = ["go", "build", *flags, "-o", str(outdir / name), "."]
        cwd = SOURCES / name
    else:
        env.update(GOCACHE="/agtap/gocache", GOPATH="/tmp/gopath")
        cmd = ["systemd-nspawn", "--quiet", "--register=no", "--keep-unit", "--console=pipe",
               f"--machine=agtap-gobuild-{os.getpid()}",
               f"--directory={rootfs(release)}", "--read-only", "--tmpfs=/tmp",
               f"--bind-ro={SOURCES / name}:/agtap/src", f"--bind={outdir}:/agtap/out",
               f"--bind={gocache}:/agtap/gocache", "--chdir=/agtap/src", *[f"--setenv={k}={v}" for k, v in env.items()],
               "go", "build", *flags, "-o", f"/agtap/out/{name}", "."]
        cwd = None
    r = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=900,
                       stdin=subprocess.DEVNULL)
    if r.returncode != 0 or not (outdir / name).is_file():
        raise GoBuildError(f"go build of {name} for {release} failed ({' '.join(cmd)}):\n{r.stdout[-3000:]}\n{r.stderr[-3000:]}")


OLD_SUITES = {"bullseye": "Debian 11 (Go 1.15)"}


def debian_file(suite: str, package: str, relpath: str) -> Path:
    """`relpath` of Debian package `package` from another release `suite` (bullseye's
    programs were built by Go 1.15, before the register ABI), fetched with apt-get using a
    private configuration (the host's apt sources are not touched) and unpacked once under
    the cache."""
    if suite not in OLD_SUITES:
        raise GoBuildError(f"unknown suite {suite!r}")
    top = CACHE.parent / f"debs-{suite}"
    out = top / package / relpath.lstrip("/")
    if out.is_file():
        return out
    state, cache = top / ".apt" / "state", top / ".apt" / "cache"
    for d in (state / "lists" / "partial", cache / "archives" / "partial"):
        d.mkdir(parents=True, exist_ok=True)
    sources = top / ".apt" / "sources.list"
    sources.write_text(f"deb {os.environ.get('AGTAP_TEST_MIRROR', 'http://deb.debian.org/debian')} {suite} main\n")
    opts = [f"-oDir::Etc::SourceList={sources}", "-oDir::Etc::SourceParts=/nonexistent",
            f"-oDir::State={state}", f"-oDir::Cache={cache}", "-oAPT::Architecture=amd64",
            "-oDebug::NoLocking=1", "-oAPT::Sandbox::User=" + ("root" if os.geteuid() == 0 else os.environ.get("USER", ""))]
    with open(top / ".lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if out.is_file():
            return out
        dl = top / ".apt" / "dl"
        dl.mkdir(exist_ok=True)
        for cmd, cwd in ((["apt-get", *opts, "update"], None), (["apt-get", *opts, "download", package], dl)):
            r = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, timeout=600, env={"PATH": PATH})
            if r.returncode != 0:
                raise GoBuildError(f"{' '.join(cmd[:1] + cmd[-2:])} for {suite} failed:\n{r.stdout[-2000:]}\n{r.stderr[-2000:]}")
        deb = max(dl.glob(f"{package}_*.deb"), key=lambda p: p.stat().st_mtime)
        tmp = top / f"{package}.tmp{os.getpid()}"
        shutil.rmtree(tmp, ignore_errors=True)
        subprocess.run(["dpkg-deb", "-x", str(deb), str(tmp)], check=True, env={"PATH": PATH})
        shutil.rmtree(top / package, ignore_errors=True)
        os.replace(tmp, top / package)
    return out
