"""Find a linux-headers tree for BCC, and the tracing filesystems it needs.

The running kernel often has no headers package (cloud and custom kernels).
agtap's BPF code reads no kernel struct fields, so any reasonably recent
headers tree compiles it correctly. Debian splits a tree in two
(`linux-headers-X-common` with the sources' include/ and arch/*/include/, and
`linux-headers-X-<flavour>` with the generated headers and .config); BCC
expects one directory, so agtap joins them with symlinks in a directory of
its own (never under /lib/modules) and points BCC_KERNEL_SOURCE at it.
"""

from __future__ import annotations

import os
import platform
import re
from dataclasses import dataclass
from pathlib import Path

HEADERS_PACKAGE_HINT = "sudo apt-get install linux-headers-$(dpkg --print-architecture)  # or linux-headers-cloud-amd64"


class HeadersNotFound(Exception):
    pass


@dataclass(frozen=True)
class HeaderTree:
    path: str            # what BCC_KERNEL_SOURCE points at
    source: str          # where it came from, for the log and `agtap doctor`
    exact: bool          # built for the running kernel


def _arch_dir() -> str:
    m = platform.machine()
    return {"x86_64": "x86", "aarch64": "arm64", "armv7l": "arm", "ppc64le": "powerpc",
            "s390x": "s390", "riscv64": "riscv"}.get(m, m)


def _version_key(name: str) -> tuple[int, ...]:
    return tuple(int(x) for x in re.findall(r"\d+", name)[:4])


def _is_complete(tree: Path, arch: str) -> bool:
    return (tree / "include/linux/kconfig.h").exists() and (tree / "include/generated/autoconf.h").exists() \
        and (tree / "arch" / arch / "include").is_dir()


def _flavour_pairs(src_root: Path) -> list[tuple[Path, Path]]:
    """Debian split trees: (flavour dir with generated headers, its -common dir), newest first."""
    pairs = []
    for d in src_root.glob("linux-headers-*"):
        if d.name.endswith("-common") or not (d / "include/generated/autoconf.h").exists():
            continue
        common = None
        mk = d / "Makefile"
        try:
            m = re.search(r"include\s+(\S+)/Makefile", mk.read_text())
            if m:
                common = (d / m.group(1)).resolve() if not m.group(1).startswith("/") else Path(m.group(1))
        except OSError:
            pass
        if common is None or not common.is_dir():
            base = re.match(r"(linux-headers-[\d.]+-\d+)", d.name)
            common = src_root / f"{base.group(1)}-common" if base else None
        if common is not None and common.is_dir():
            pairs.append((d, common))
    pairs.sort(key=lambda p: _version_key(p[0].name), reverse=True)
    return pairs


def _join(flavour: Path, common: Path, dest: Path, arch: str) -> None:
    """Symlink the two halves of a Debian headers tree into one at dest."""
    tmp = dest.with_name(dest.name + ".tmp")
    if tmp.exists():
        _rmtree_links(tmp)
    (tmp / "include").mkdir(parents=True)
    (tmp / "arch" / arch / "include").mkdir(parents=True)
    for half in (common, flavour):
        for e in (half / "include").iterdir():
            link = tmp / "include" / e.name
            if not link.exists():
                link.symlink_to(e)
        ai = half / "arch" / arch / "include"
        if ai.is_dir():
            for e in ai.iterdir():
                link = tmp / "arch" / arch / "include" / e.name
                if not link.exists():
                    link.symlink_to(e)
    for f in (".config", "Module.symvers"):
        if (flavour / f).exists():
            (tmp / f).symlink_to(flavour / f)
    (tmp / "Makefile").symlink_to(common / "Makefile")
    if dest.exists():
        _rmtree_links(dest)
    tmp.rename(dest)


def _rmtree_links(p: Path) -> None:
    for root, dirs, files in os.walk(p, topdown=False):
        for f in files:
            os.unlink(os.path.join(root, f))
        for d in dirs:
            full = os.path.join(root, d)
            if os.path.islink(full):
                os.unlink(full)
            else:
                os.rmdir(full)
    os.rmdir(p)


def find_header_tree(runtime_dir: str, *, release: str | None = None,
                     modules_root: str = "/lib/modules", src_root: str = "/usr/src",
                     prepare: bool = True) -> HeaderTree:
    """The tree BCC should compile against; raises HeadersNotFound with the fix."""
    release = release or platform.release()
    arch = _arch_dir()
    env = os.environ.get("BCC_KERNEL_SOURCE")
    if env and Path(env).is_dir():
        return HeaderTree(env, "BCC_KERNEL_SOURCE", exact=False)
    build = Path(modules_root) / release / "build"
    if build.is_dir():
        return HeaderTree(str(build), str(build), exact=True)
    for d in sorted(Path(src_root).glob("linux-headers-*"), key=lambda d: _version_key(d.name), reverse=True):
        if _is_complete(d, arch):
            return HeaderTree(str(d), str(d), exact=d.name == f"linux-headers-{release}")
    pairs = _flavour_pairs(Path(src_root))
    if pairs:
        flavour, common = pairs[0]
        dest = Path(runtime_dir) / "kernel-headers" / flavour.name
        if prepare:
            dest.parent.mkdir(parents=True, exist_ok=True, mode=0o755)
            if not _is_complete(dest, arch):
                _join(flavour, common, dest, arch)
        return HeaderTree(str(dest), f"{flavour} + {common}", exact=flavour.name == f"linux-headers-{release}")
    raise HeadersNotFound(
        f"no kernel headers: {build} is missing and no linux-headers tree is under {src_root}. "
        f"Fix: {HEADERS_PACKAGE_HINT}")


TRACEFS_CANDIDATES = ("/sys/kernel/tracing", "/sys/kernel/debug/tracing")


def tracefs_path() -> str | None:
    for p in TRACEFS_CANDIDATES:
        if os.path.exists(os.path.join(p, "events")):
            return p
    return None


def ensure_tracefs() -> str:
    """BCC attaches tracepoints and uprobes through tracefs; mount it if nobody did.

    systemd mounts it (sys-kernel-tracing.mount); minimal hosts and containers may not.
    """
    p = tracefs_path()
    if p:
        return p
    import ctypes
    libc = ctypes.CDLL(None, use_errno=True)
    for target, fstype in (("/sys/kernel/tracing", b"tracefs"), ("/sys/kernel/debug", b"debugfs")):
        if os.path.isdir(target):
            libc.mount(fstype, target.encode(), fstype, 0, None)
    p = tracefs_path()
    if not p:
        raise HeadersNotFound("tracefs is not mounted and could not be mounted. "
                              "Fix: sudo mount -t tracefs tracefs /sys/kernel/tracing")
    return p
