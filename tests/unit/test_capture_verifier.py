"""A refused BPF program is one clear line and an exit status systemd does not restart on.

The logs under tests/fixtures/verifier/ are real: what libbcc printed on fd 2 when
the kernel's verifier refused agtap's programs (the first from Debian 13's BCC 0.31
+ LLVM 19 on the copy loop before copy_len, the issue-18 refusal, as the journal of
agtap.service showed it in a booted Debian 13 container on this kernel). Loading a program
the verifier refuses needs root and a kernel; here the BCC calls are replaced by
functions that print that log on fd 2 and raise BCC's exception, so the Tracer's
own path (fd 2 captured, the one line, the log file, the exit status) runs as is.
"""

from __future__ import annotations

import configparser
import os
from pathlib import Path

import pytest

from agtap import cli
from agtap.capture import loader, verifier
from agtap.capture.headers import HeaderTree
from agtap.capture.tracer import BpfRefused, CaptureError, Tracer
from agtap.config import Config

REPO = Path(__file__).resolve().parents[2]
FIXTURES = REPO / "tests" / "fixtures" / "verifier"
TRIXIE_LOG = (FIXTURES / "trixie-copy-loop.log").read_text()
TRIXIE_ERROR = "Failed to load BPF program b'tracepoint__syscalls__sys_exit_read': Permission denied"


def test_the_reason_is_the_verifiers_last_lines_not_the_instructions():
    assert verifier.reason_lines(TRIXIE_LOG) == [
        "invalid access to map value, value_size=16448 off=64 size=32767",
        "R1 min value is outside of the allowed memory range",
    ]


def test_the_program_is_named_from_bccs_exception():
    assert verifier.program_name(TRIXIE_ERROR) == "tracepoint__syscalls__sys_exit_read"
    assert verifier.program_name("Failed to load BPF program cont_kprobe: Permission denied") == "cont_kprobe"
    assert verifier.program_name("Failed to compile BPF module <text>") is None


def test_one_line_names_program_reason_versions_and_the_log_file():
    tools = "BCC 0.31.0, LLVM 19, kernel 6.12.48+deb13-amd64"
    line = verifier.refusal_line(TRIXIE_ERROR, TRIXIE_LOG, tools, "/var/log/agtap/bpf-load.log")
    assert "\n" not in line
    assert line == ("the kernel's BPF verifier refused program tracepoint__syscalls__sys_exit_read: "
                    "invalid access to map value, value_size=16448 off=64 size=32767 | "
                    "R1 min value is outside of the allowed memory range — this is a bug in agtap: "
                    "please report it (https://agtap.io) with BCC 0.31.0, LLVM 19, kernel 6.12.48+deb13-amd64; "
                    "the whole log is in /var/log/agtap/bpf-load.log")
    assert len(line) < len(TRIXIE_LOG) / 10


def test_a_compile_error_says_clangs_first_errors():
    log = ("/virtual/main.c:300:9: error: use of undeclared identifier 'nn'\n"
           "        nn = 0;\n        ^\n"
           "/virtual/main.c:310:5: error: expected ';' after expression\n"
           "/virtual/main.c:320:5: error: third\n3 errors generated.\n")
    line = verifier.refusal_line("Failed to compile BPF module <text>", log, "BCC 0.26.0", None)
    assert line.startswith("BCC could not compile the BPF programs: /virtual/main.c:300:9: error: use of "
                           "undeclared identifier 'nn' | /virtual/main.c:310:5: error: expected ';'")
    assert "third" not in line and "whole log" not in line


def test_a_log_with_no_verdict_falls_back_to_bccs_message():
    line = verifier.refusal_line(TRIXIE_ERROR, "", "BCC 0.26.0", None)
    assert ("refused program tracepoint__syscalls__sys_exit_read: Failed to load BPF program "
            "b'tracepoint__syscalls__sys_exit_read': Permission denied") in line


def test_llvm_version_from_the_mapped_library():
    assert verifier.llvm_version("7f00-7f10 r-xp 0 08:01 1 /usr/lib/x86_64-linux-gnu/libLLVM-14.so.1\n") == "14"
    assert verifier.llvm_version("7f00-7f10 r-xp 0 08:01 1 /usr/lib/x86_64-linux-gnu/libLLVM.so.19.1\n") == "19"
    assert verifier.llvm_version("7f00-7f10 r-xp 0 08:01 1 /usr/lib/x86_64-linux-gnu/libclang-cpp.so.19.1\n") == "19"


def test_stderr_to_file_takes_what_c_code_writes_on_fd_2():
    with verifier.stderr_to_file() as out:
        os.write(2, b"written on fd 2\n")
    assert out.text == "written on fd 2\n"


@pytest.fixture
def refusing_bcc(monkeypatch):
    """compile_program/load_every_program replaced: the compile succeeds, loading prints
    the real Debian 13 verifier log on fd 2 and raises BCC's exception, as libbcc does."""
    class FakeBPF:
        cleaned = False

        def cleanup(self):
            FakeBPF.cleaned = True

    def load(b):
        os.write(2, TRIXIE_LOG.encode())
        raise Exception(TRIXIE_ERROR)

    monkeypatch.setattr(loader, "compile_program", lambda *a: FakeBPF())
    monkeypatch.setattr(loader, "load_every_program", load)
    return FakeBPF


def test_the_tracer_turns_a_refusal_into_bpf_refused_and_keeps_the_log(refusing_bcc, tmp_path, capfd):
    t = Tracer(Config(event_log=str(tmp_path / "events.jsonl")), on_item=lambda item: None)
    t.header_tree = HeaderTree(str(tmp_path), "test", True)
    with pytest.raises(BpfRefused) as ei:
        t._compile_and_load()
    e = ei.value
    assert isinstance(e, CaptureError) and e.exit_status == verifier.EXIT_BPF_REFUSED
    assert e.message.startswith("the kernel's BPF verifier refused program tracepoint__syscalls__sys_exit_read: "
                                "invalid access to map value")
    assert f"the whole log is in {tmp_path}/bpf-load.log" in e.message
    assert (tmp_path / "bpf-load.log").read_text() == TRIXIE_LOG
    assert refusing_bcc.cleaned, "the tracepoints BCC attached while compiling are detached"
    assert TRIXIE_LOG.splitlines()[0] not in capfd.readouterr().err, "the log went to the journal"


def test_exit_status_3_everywhere_it_is_named():
    unit = configparser.ConfigParser(strict=False, interpolation=None)
    unit.read(REPO / "systemd" / "agtap.service")
    assert unit["Service"]["RestartPreventExitStatus"].split() == [str(verifier.EXIT_BPF_REFUSED)]
    assert unit["Service"]["Restart"] == "on-failure"
    assert cli.EXIT_BPF_REFUSED == verifier.EXIT_BPF_REFUSED == 3
    assert BpfRefused("x").exit_status == 3 and CaptureError("x").exit_status == 1
