"""Agent binaries from npm, pinned, fetched once into a cache that reruns reuse.

    bun = npm_binary("@oven/bun-linux-x64", "1.2.15", "bin/bun")

setup/agents.txt pins each; `sudo make setup` installs it into the agent cache
(tests/support/agents.py: $AGTAP_AGENT_CACHE/<package>@<version>). Where that has not
run (a unit run without root), `npm pack` downloads the tarball into a cache of our
own (/var/cache/agtap-test/npm if writable, else ~/.cache/agtap-test/npm) and it is
unpacked next to it, once. The Claude Code binary is ~400 MB: fetched once per
machine, never per test run.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import tarfile
from pathlib import Path

from .agents import CACHE as AGENT_CACHE

CACHE = Path(os.environ.get("AGTAP_TEST_CACHE", "/var/cache/agtap-test")) / "npm"
if not os.access(CACHE if CACHE.exists() else CACHE.parent if CACHE.parent.exists() else "/var/cache", os.W_OK):
    CACHE = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "agtap-test" / "npm"

BUN_RELEASES = ("1.1.30", "1.2.15", "1.4.5")        # Oct 2024, Jun 2025, 2026: over a year apart
CLAUDE_CODE = "2.1.332"
CLAUDE_PACKAGE = "@anthropic-ai/claude-code-linux-x64"
# the newest Claude Code release, as setup resolved and installed it when it could reach npm
CLAUDE_NEWEST = AGENT_CACHE / "claude-code-newest"


def claude_versions() -> tuple[str, ...]:
    """The Claude Code releases the suite tests: the pinned one, and the newest one if setup
    found it (network) and installed it; offline, setup removes the record: pinned alone."""
    try:
        newest = CLAUDE_NEWEST.read_text().strip()
    except OSError:
        newest = ""
    installed = AGENT_CACHE / f"{CLAUDE_PACKAGE}@{newest}" / ".agtap-installed"
    if re.fullmatch(r"\d+\.\d+\.\d+", newest) and newest != CLAUDE_CODE and installed.is_file():
        return (CLAUDE_CODE, newest)
    return (CLAUDE_CODE,)


def npm_binary(package: str, version: str, relpath: str) -> Path:
    """The file `relpath` of npm package `package`@`version`, unpacked under CACHE."""
    installed = AGENT_CACHE / f"{package}@{version}"
    if (installed / ".agtap-installed").is_file():
        return installed / "node_modules" / package / relpath
    stem = package.lstrip("@").replace("/", "-") + f"-{version}"
    out = CACHE / stem / "package" / relpath
    if out.is_file():
        return out
    CACHE.mkdir(parents=True, exist_ok=True)
    tgz = CACHE / f"{stem}.tgz"
    if not tgz.is_file():
        npm = shutil.which("npm")
        if npm is None:
            raise RuntimeError("npm is missing: sudo apt-get install npm")
        subprocess.run([npm, "pack", "--silent", f"{package}@{version}"], cwd=CACHE, check=True,
                       stdout=subprocess.DEVNULL, timeout=1800)
    tmp = CACHE / f"{stem}.tmp{os.getpid()}"
    with tarfile.open(tgz) as t:
        members = [m for m in t.getmembers() if m.name.startswith("package/") and ".." not in m.name.split("/")]
        t.extractall(tmp, members=members)
    (CACHE / stem).mkdir(exist_ok=True)
    try:
        (tmp / "package").rename(CACHE / stem / "package")
    except OSError:
        pass   # another run unpacked it first
    shutil.rmtree(tmp, ignore_errors=True)
    return out


def bun(version: str) -> Path:
    return npm_binary("@oven/bun-linux-x64", version, "bin/bun")


def claude(version: str = CLAUDE_CODE) -> Path:
    return npm_binary(CLAUDE_PACKAGE, version, "claude")
