"""bcc's conventions: an `examples:` section in --help whose lines are real commands,
and a hidden --ebpf that prints the BPF program agtap would load, then exits."""

from __future__ import annotations

import re
import shlex
import subprocess
import sys

from agtap import cli, ctl
from agtap.capture.loader import BPF_FILES, program_text


def example_argvs(epilog: str, prog: str) -> list[list[str]]:
    block = epilog.split("examples:\n", 1)[1].split("\n\n", 1)[0]
    out = []
    for line in block.splitlines():
        words = shlex.split(line.split("#", 1)[0])
        if words and words[0] == "sudo":
            words = words[1:]
        assert words[0] == prog, line
        out.append(words[1:])
    return out


def test_agtap_examples_parse():
    argvs = example_argvs(cli.EXAMPLES, "agtap")
    assert len(argvs) >= 5
    for argv in argvs:
        cli.parser().parse_args(argv)   # SystemExit(2) on a bad example


def test_agtapctl_examples_parse():
    argvs = example_argvs(ctl.EPILOG, "agtapctl")
    assert len(argvs) >= 5
    for argv in argvs:
        ctl.parser().parse_args([a if a != "ID" else "0" * 32 for a in argv])


def test_help_shows_the_examples_and_hides_ebpf():
    for mod in ("agtap.cli", "agtap.ctl"):
        out = subprocess.run([sys.executable, "-m", mod, "--help"], capture_output=True, text=True, timeout=60)
        assert out.returncode == 0 and "\nexamples:\n" in out.stdout, mod
        assert "--ebpf" not in out.stdout


def test_ebpf_prints_the_program_and_exits_without_loading_it():
    out = subprocess.run([sys.executable, "-m", "agtap.cli", "--ebpf", "--max-capture-bytes", "65536"],
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert out.stdout == program_text(65536)
    assert re.search(r"^#define MAX_SEGS 4$", out.stdout, re.M)    # 64 KiB / 16 KiB records
    assert "TRACEPOINT_PROBE(syscalls, sys_enter_write)" in out.stdout and "int probe_ssl_free(" in out.stdout
    assert "int probe_gotls_read_ret(" in out.stdout
    assert len(BPF_FILES) == 7


def test_cache_dir_flag_wins_over_the_environment(monkeypatch):
    # The BoringSSL offsets cache is a setting like the others: flag > file > env > default.
    from agtap import cli
    from agtap.config import DEFAULT_CACHE_DIR
    monkeypatch.delenv("AGTAP_CACHE_DIR", raising=False)
    cfg, _ = cli.build_config(cli.parser().parse_args(["serve"]))
    assert cfg.cache_dir == DEFAULT_CACHE_DIR == "/var/cache/agtap"
    monkeypatch.setenv("AGTAP_CACHE_DIR", "/srv/env-cache")
    cfg, _ = cli.build_config(cli.parser().parse_args(["serve"]))
    assert cfg.cache_dir == "/srv/env-cache"
    cfg, _ = cli.build_config(cli.parser().parse_args(["--cache-dir", "/srv/flag-cache", "serve"]))
    assert cfg.cache_dir == "/srv/flag-cache"
    cfg, _ = cli.build_config(cli.parser().parse_args(["doctor", "--cache-dir", "/srv/doctor-cache"]))
    assert cfg.cache_dir == "/srv/doctor-cache"
