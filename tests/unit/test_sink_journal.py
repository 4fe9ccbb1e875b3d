"""Journal entries: the fields and the one-line message, with hostile strings made safe.

No journald runs on the development machine, so the real journal (journalctl
reading these entries back) is tested in the system tier (systemd-nspawn).
"""

import json
import os
import subprocess
import sys
import uuid

import pytest

from agtap.call import KIND_LLM, KIND_MCP, Call
from agtap.sinks.journal import FIELD_MAX, JournalSink, journal_fields, journal_message
from tests.support.paths import REPO

EVENT_ID = uuid.UUID(int=0x1234).hex


def make_call(**kw) -> Call:
    base = dict(
        ts="2026-11-26T23:37:25.000000Z", id="msg_01XYZ", event_id=EVENT_ID, pid=1234, proc="python3", provider="anthropic",
        platform="anthropic", server_address="api.anthropic.com", kind=KIND_LLM, model="claude-sonnet-4-5", input_tokens=1200,
        output_tokens=340, latency_ms=1820.0, stop_reason="end_turn", tools=["get_weather"],
        unit="my-agent.service", streaming=True, ttft_ms=410.25, cost_usd=0.0087, http_version="2",
    )
    base.update(kw)
    return Call(**base)


def test_message_is_one_human_line():
    assert journal_message(make_call()) == (
        "anthropic claude-sonnet-4-5 python3[1234] my-agent.service in=1200 out=340 1.82s end_turn tools=get_weather"
    )


def test_message_leaves_out_what_is_unknown():
    c = make_call(unit="", input_tokens=None, output_tokens=None, latency_ms=None, stop_reason=None, tools=[], model=None)
    assert journal_message(c) == "anthropic - python3[1234]"


def test_all_fields():
    assert journal_fields(make_call(body_path="/var/lib/agtap/bodies/2026-11-26/x.json")) == {
        "MESSAGE": "anthropic claude-sonnet-4-5 python3[1234] my-agent.service in=1200 out=340 1.82s end_turn tools=get_weather",
        "PRIORITY": "6",
        "SYSLOG_IDENTIFIER": "agtap",
        "AGTAP_EVENT_ID": EVENT_ID,
        "AGTAP_RESPONSE_ID": "msg_01XYZ",
        "AGTAP_PROVIDER": "anthropic",
        "AGTAP_PLATFORM": "anthropic",
        "AGTAP_KIND": "llm_call",
        "AGTAP_MODEL": "claude-sonnet-4-5",
        "AGTAP_PID": "1234",
        "AGTAP_PROC": "python3",
        "AGTAP_UNIT": "my-agent.service",
        "AGTAP_SERVER_ADDRESS": "api.anthropic.com",
        "AGTAP_INPUT_TOKENS": "1200",
        "AGTAP_OUTPUT_TOKENS": "340",
        "AGTAP_LATENCY_MS": "1820.0",
        "AGTAP_TTFT_MS": "410.2",
        "AGTAP_STOP_REASON": "end_turn",
        "AGTAP_TOOLS": "get_weather",
        "AGTAP_COST_USD": "0.008700",
        "AGTAP_HTTP_VERSION": "2",
        "AGTAP_STREAMING": "1",
        "AGTAP_BODY_PATH": "/var/lib/agtap/bodies/2026-11-26/x.json",
    }


def test_unknown_values_are_left_out_not_sent_as_none():
    f = journal_fields(make_call(model=None, input_tokens=None, cost_usd=None, ttft_ms=None, unit="", tools=[]))
    for k in ("AGTAP_MODEL", "AGTAP_INPUT_TOKENS", "AGTAP_COST_USD", "AGTAP_TTFT_MS", "AGTAP_UNIT", "AGTAP_TOOLS"):
        assert k not in f
    assert all(isinstance(v, str) for v in f.values())


@pytest.mark.parametrize(
    "kw",
    [
        dict(http_status=429, stop_reason="error:rate_limit_error", error_type="rate_limit_error"),
        dict(http_status=500),
        dict(incomplete=True, incomplete_reason="process_exit"),
    ],
)
def test_errors_are_warnings(kw):
    f = journal_fields(make_call(**kw))
    assert f["PRIORITY"] == "4"


def test_error_details_in_message():
    c = make_call(http_status=429, stop_reason="error:rate_limit_error", output_tokens=None, tools=[])
    assert journal_message(c).endswith("in=1200 1.82s error:rate_limit_error http=429")
    c = make_call(incomplete=True, incomplete_reason="process_exit", tools=[])
    assert journal_message(c).endswith("end_turn incomplete=process_exit")


def test_mcp_call():
    c = make_call(provider="mcp", kind=KIND_MCP, model="tools/call", tools=["read_file"], input_tokens=None,
                  output_tokens=None, stop_reason=None, server_address="", latency_ms=35.0)
    assert journal_message(c) == "mcp tools/call python3[1234] my-agent.service 0.04s tools=read_file"
    assert journal_fields(c)["AGTAP_KIND"] == "mcp_call"


def test_hostile_strings_are_made_safe_and_bounded():
    c = make_call(
        model="evil\x00model\nAGTAP_FAKE=1\x1b]0;pwn\x07",
        proc="py\x1b[2Jthon",
        tools=["t1\x00", "t2\r\nMESSAGE=forged", "x" * 1000],
        stop_reason="end\x9b2J_turn" + "s" * 500,
        unit="u\x7f.service",
    )
    f = journal_fields(c)
    for k, v in f.items():
        assert not any(ord(ch) < 0x20 or 0x7F <= ord(ch) < 0xA0 for ch in v), k
    assert f["AGTAP_MODEL"] == "evilmodel AGTAP_FAKE=1"
    assert f["AGTAP_PROC"] == "python"
    assert f["AGTAP_UNIT"] == "u.service"
    assert f["AGTAP_STOP_REASON"].startswith("end_turnsss") and len(f["AGTAP_STOP_REASON"]) == FIELD_MAX
    assert f["AGTAP_TOOLS"].startswith("t1,t2 MESSAGE=forged,xxx")
    assert len(f["AGTAP_TOOLS"]) <= 1000 and len(f["MESSAGE"]) < 1000


def test_sink_sends_each_call_and_counts_failures():
    sent = []

    def send(message, **fields):  # same signature as systemd.journal.send
        sent.append((message, fields))

    sink = JournalSink(True, send=send)
    sink.write(make_call())
    assert sent[0][0].startswith("anthropic claude-sonnet-4-5 python3[1234]")
    assert sent[0][1]["AGTAP_EVENT_ID"] == EVENT_ID and "MESSAGE" not in sent[0][1]

    def broken(message, **fields):
        raise OSError(11, "Resource temporarily unavailable")

    sink = JournalSink(True, send=broken)
    sink.write(make_call())  # must not raise
    assert sink.stats() == {"enabled": True, "entries": 0, "write_errors": 1, "unavailable": None}


def test_disabled_sink_sends_nothing():
    sent = []
    sink = JournalSink(False, send=lambda m, **f: sent.append(m))
    sink.write(make_call())
    assert sent == [] and sink.stats()["enabled"] is False


# A journald stand-in: a datagram socket at journald's fixed path, in a mount namespace of its
# own (a tmpfs on /run that only this process sees), read back in the journal's native protocol
# (https://systemd.io/JOURNAL_NATIVE_PROTOCOL/). The real journald (journalctl reading the
# entries back) is the system tier's.
JOURNALD = r"""
import json, os, socket, struct, subprocess, sys
subprocess.run(["mount", "-t", "tmpfs", "tmpfs", "/run"], check=True)
os.makedirs("/run/systemd/journal")
server = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
server.bind("/run/systemd/journal/socket")
server.settimeout(10)
from agtap.call import KIND_LLM, Call
from agtap.sinks.journal import JournalSink
sink = JournalSink(True)                          # python3-systemd's real send
sink.write(Call(ts="2026-11-26T23:37:25.000000Z", id="msg_01", event_id="%032x" % 0x1234, pid=1234, proc="python3",
                provider="google", platform="vertex_ai", server_address="api.anthropic.com", kind=KIND_LLM, model="m\x00odel\nx",
                input_tokens=1200, output_tokens=340, latency_ms=1820.0, stop_reason="end_turn"))
data, entry = server.recv(1 << 20), {}
while data:
    line, _, data = data.partition(b"\n")
    if b"=" in line:                              # KEY=value
        k, _, v = line.partition(b"=")
    else:                                         # KEY \n le64 size, value, \n (values with newlines)
        (n,) = struct.unpack("<Q", data[:8])
        k, v, data = line, data[8:8 + n], data[9 + n:]
    entry[k.decode()] = v.decode("utf-8", "backslashreplace")
print(json.dumps({"stats": sink.stats(), "entry": entry}))
"""


def test_real_systemd_journal_send_delivers_the_fields_to_journald():
    pytest.importorskip("systemd.journal")
    ns = ["unshare", "--mount", "--propagation", "private"] if os.geteuid() == 0 else ["unshare", "-rm"]
    r = subprocess.run([*ns, sys.executable, "-c", JOURNALD], capture_output=True, text=True, timeout=60, cwd=REPO)
    assert r.returncode == 0, r.stderr
    got = json.loads(r.stdout)
    assert got["stats"]["entries"] == 1 and got["stats"]["write_errors"] == 0, got
    e = got["entry"]
    # NUL dropped, the newline a space: one line, whatever the model name holds
    assert e["MESSAGE"] == "google model x python3[1234] in=1200 out=340 1.82s end_turn", e
    assert (e["PRIORITY"], e["SYSLOG_IDENTIFIER"], e["AGTAP_EVENT_ID"]) == ("6", "agtap", "%032x" % 0x1234)
    assert (e["AGTAP_PROVIDER"], e["AGTAP_PLATFORM"], e["AGTAP_RESPONSE_ID"]) == ("google", "vertex_ai", "msg_01")
    assert e["AGTAP_MODEL"] == "model x" and e["AGTAP_INPUT_TOKENS"] == "1200" and e["AGTAP_PID"] == "1234"
    assert "AGTAP_UNIT" not in e and "AGTAP_TOOLS" not in e
