"""The runtime dependencies are written three times, for three installers: pyproject.toml
(pip names, each with its Debian package in a comment), debian/control (apt, for the
.deb) and setup/apt.txt's [run] section (`sudo make run`). They must name the same
packages; and what pyproject.toml names must be what agtap imports."""

from __future__ import annotations

import re
import tomllib
from importlib.metadata import version
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
# BCC's Python module: Debian's python3-bpfcc, not on PyPI (pyproject.toml says why)
NOT_ON_PYPI = {"python3-bpfcc"}


def pyproject_deps() -> dict[str, str]:
    """PyPI name -> the Debian package named in its comment."""
    text = (REPO / "pyproject.toml").read_text()
    block = re.search(r"^dependencies = \[\n(.*?)^\]", text, re.M | re.S).group(1)
    out = {}
    for line in block.splitlines():
        m = re.match(r'\s*"([A-Za-z0-9_.\-]+)[^"]*",\s*#\s*(\S+)\s*$', line)
        assert m, f"pyproject.toml: a dependency without its Debian package in a comment: {line!r}"
        out[m.group(1)] = m.group(2)
    names = {re.match(r"[A-Za-z0-9_.\-]+", d).group(0) for d in tomllib.loads(text)["project"]["dependencies"]}
    assert set(out) == names, "every dependency, and only those, has its line with a comment"
    return out


def control_python_depends() -> set[str]:
    text = (REPO / "debian/control").read_text()
    binary = text[text.index("\nPackage: agtap"):]
    depends = re.search(r"^Depends:(.*?)(?=^\S)", binary, re.M | re.S).group(1)
    return {d.strip().split()[0] for d in depends.split(",") if d.strip().startswith("python3-")}


def apt_section(name: str) -> set[str]:
    out, section = set(), None
    for line in (REPO / "setup/apt.txt").read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if line.startswith("[") and line.endswith("]"):
            section = line[1:-1]
        elif line and section == name:
            out.add(line)
    return out


def test_pyproject_control_and_apt_run_name_the_same_runtime_packages():
    debian = set(pyproject_deps().values())
    assert debian == control_python_depends() - NOT_ON_PYPI
    assert control_python_depends() <= apt_section("run")
    assert NOT_ON_PYPI <= control_python_depends()


def test_pyproject_dependencies_are_what_agtap_imports():
    imports = {"dbus-next": "dbus_next", "sdnotify": "sdnotify", "systemd-python": "systemd",
               "prometheus-client": "prometheus_client", "urwid": "urwid", "Brotli": "brotli",
               "zstandard": "zstandard", "capstone": "capstone", "numpy": "numpy",
               "hyperframe": "hyperframe", "hpack": "hpack",
               "botocore": "botocore"}
    assert set(pyproject_deps()) == set(imports)
    sources = "".join(p.read_text() for p in (REPO / "agtap").rglob("*.py"))
    for dist, module in imports.items():
        assert re.search(rf"^\s*(import|from) {module}\b", sources, re.M), module
        assert version(dist)   # the Debian package provides this distribution name


def test_the_test_stack_is_not_in_the_run_section():
    run = apt_section("run")
    assert run and apt_section("test")
    assert not run & {"bpfcc-tools", "curl", "tmux", "prometheus", "debootstrap", "nodejs", "npm", "lintian"}
    setup = (REPO / "setup/setup.sh").read_text()
    # requirements-test.txt and npm only in the test branch of setup.sh
    run_part = setup[:setup.index('if [ "$what" = test ]; then\n  stamp')]
    assert "requirements-test" not in run_part and "npm install" not in run_part


def test_license_is_apache_2_everywhere():
    assert "Apache License" in (REPO / "LICENSE").read_text() and "Version 2.0" in (REPO / "LICENSE").read_text()
    assert tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["license"] == {"text": "Apache-2.0"}
    assert "License: Apache-2.0" in (REPO / "debian/copyright").read_text()
    assert "LICENSE" in (REPO / "README.md").read_text()


def test_the_group_is_defined_once_and_the_shipped_files_name_it():
    from agtap import busnames
    g = busnames.GROUP
    assert f"\nGroup={g}\n" in (REPO / "systemd/agtap.service").read_text()
    assert re.search(rf"^g {g}\b", (REPO / "systemd/agtap.sysusers").read_text(), re.M)
    assert all(line.split()[4] == g for line in (REPO / "systemd/agtap.tmpfiles").read_text().splitlines()
               if line.startswith("d "))
    assert f'<policy group="{g}">' in (REPO / "dbus/io.agtap.Agtap1.conf").read_text()
    # the hint lives in busnames only: no other module spells it out
    spelled = [p.relative_to(REPO) for p in (REPO / "agtap").rglob("*.py")
               if "usermod" in p.read_text() and p.name != "busnames.py"]
    assert spelled == []


def test_bcc_and_dbus_are_imported_only_where_the_comments_say():
    """loader.py and service/__init__.py say who imports BCC and D-Bus; keep that true."""
    def importers(module: str) -> set[str]:
        pat = re.compile(rf"^\s*(import|from) {module}\b", re.M)
        return {str(p.relative_to(REPO / "agtap")) for p in (REPO / "agtap").rglob("*.py") if pat.search(p.read_text())}
    assert importers("bcc") and all(p.startswith("capture/") for p in importers("bcc")), importers("bcc")
    assert importers("dbus_next") and all(p.startswith("service/") or p == "busclient.py"
                                          for p in importers("dbus_next")), importers("dbus_next")


def test_readme_debian_says_what_happens_without_the_otel_sdk():
    from agtap.sinks import otel
    text = " ".join((REPO / "debian/README.Debian").read_text().split())
    assert "refuses to start" in text and otel.PIP_PACKAGES in text.replace(" \\ ", " ")
