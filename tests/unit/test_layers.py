"""The one way through: capture -> wire -> providers -> drivers -> pipeline -> sinks/service.

A module imports only from the layers before its own (docs/DESIGN.md, "Shape"); shared
leaf modules (agtap.call, agtap.config, agtap.textsafe, ...) are outside the order.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

AGTAP = Path(__file__).resolve().parents[2] / "agtap"
ORDER = ["agtap.capture", "agtap.wire", "agtap.providers", "agtap.drivers", "agtap.pipeline",
         "agtap.sinks", "agtap.service"]


def layer_of(module: str) -> int | None:
    for i, prefix in enumerate(ORDER):
        if module == prefix or module.startswith(prefix + "."):
            return i
    return None


def imports_of(path: Path) -> set[str]:
    out = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            out.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            out.add(node.module)
            out.update(f"{node.module}.{a.name}" for a in node.names)
    return out


MODULES = sorted(p for p in AGTAP.rglob("*.py") if layer_of(
    ".".join(("agtap",) + p.relative_to(AGTAP).with_suffix("").parts)) is not None)


@pytest.mark.parametrize("path", MODULES, ids=lambda p: str(p.relative_to(AGTAP)))
def test_a_module_imports_only_from_layers_before_its_own(path):
    name = ".".join(("agtap",) + path.relative_to(AGTAP).with_suffix("").parts)
    mine = layer_of(name)
    later = sorted(m for m in imports_of(path) if (layer_of(m) or -1) > mine)
    assert not later, f"{name} ({ORDER[mine]}) imports {later}"


def test_the_check_sees_a_backward_import(tmp_path):
    p = tmp_path / "x.py"
    p.write_text("from agtap.pipeline import Pipeline\nimport agtap.drivers.httpconn\n")
    assert {m for m in imports_of(p) if layer_of(m) == ORDER.index("agtap.pipeline")} == \
        {"agtap.pipeline", "agtap.pipeline.Pipeline"}
    assert layer_of("agtap.drivers.httpconn") > layer_of("agtap.providers.base")
    assert len(MODULES) > 40
