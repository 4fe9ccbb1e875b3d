"""The repository stands alone: its design doc is inside it and shipped in the .deb.

A clone has no shared folder beside it: nothing tracked may point there (the strings are built
here so this file does not match itself).
"""

from __future__ import annotations

import subprocess
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
OUTSIDE = ("../" + "shared", "shared/" + "DESIGN")


def tracked_files() -> list[Path]:
    out = subprocess.run(["git", "ls-files", "-z"], cwd=REPO, capture_output=True, check=True).stdout
    return [REPO / p for p in out.decode().split("\0") if p]


def test_nothing_tracked_points_outside_the_repository():
    files = tracked_files()
    assert len(files) > 100, "git ls-files listed the tree"
    hits = []
    for f in files:
        if not f.is_file() or f.is_symlink():
            continue
        text = f.read_bytes().decode("utf-8", "replace")
        hits += [f"{f.relative_to(REPO)}: {s}" for s in OUTSIDE if s in text]
    assert hits == []


def test_design_doc_is_in_the_repository_and_in_the_package_docs():
    design = REPO / "docs/DESIGN.md"
    assert design.read_text().startswith("# agtap — design")
    assert "docs/DESIGN.md" in (REPO / "debian/agtap.docs").read_text().split()
    for cite in ("README.md", "bpf/common.h", "bpf/syscalls.c", "tests/system/conftest.py"):
        assert "docs/DESIGN.md" in (REPO / cite).read_text(), cite
