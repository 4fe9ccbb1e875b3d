"""JsonlSink on real files: whole lines always, rotation without loss, ENOSPC survived, safe modes."""

import contextlib
import json
import os
import stat
import subprocess
import threading
import uuid

import pytest

from agtap.call import KIND_LLM, Call
from agtap.sinks.jsonl import JsonlSink, event_line

KB = 1 / 1024  # max_size_mb is in MB


def make_call(n: int = 0, model: str = "claude-sonnet-4-5", **kw) -> Call:
    return Call(
        ts="2026-11-26T23:37:25.123456Z", id="msg_01", pid=1234, proc="python3",
        provider="anthropic", server_address="api.anthropic.com", kind=KIND_LLM, model=model,
        input_tokens=n, output_tokens=340, latency_ms=1820.5, stop_reason="end_turn", tools=["get_weather"], **kw,
    )


def read_lines(path) -> list[dict]:
    data = open(path, "rb").read()
    assert data == b"" or data.endswith(b"\n"), f"{path} ends mid-line"
    return [json.loads(line) for line in data.splitlines()]


def all_files(path) -> list[str]:
    d = os.path.dirname(path)
    return sorted(os.path.join(d, f) for f in os.listdir(d) if f.startswith(os.path.basename(path)))


def test_line_is_compact_utf8_json_of_to_dict():
    c = make_call(7, model="gpt-4o ✓ 模型")
    line = event_line(c)
    assert line.endswith(b"\n") and line.count(b"\n") == 1
    assert b", " not in line and b": " not in line
    assert "✓ 模型".encode() in line
    assert json.loads(line) == c.to_dict()


def test_line_has_the_original_schema_then_event_id_platform_and_the_response_id_alias():
    c = make_call(platform="vertex_ai")
    c.provider = "google"
    ev = json.loads(event_line(c))
    keys = list(ev)
    # the original tool's first twenty, in order, with its meanings: id is the API's id
    assert keys[:8] == ["ts", "id", "pid", "proc", "provider", "server_address", "kind", "model"]
    assert keys[20:22] == ["event_id", "platform"]
    assert (ev["id"], ev["provider"], ev["platform"]) == ("msg_01", "google", "vertex_ai")
    assert len(ev["event_id"]) == 32 and int(ev["event_id"], 16) >= 0
    assert ev["response_id"] == "msg_01"                      # alias for one release
    assert keys.index("response_id") == keys.index("response_model") + 1
    c.id = None
    ev = json.loads(event_line(c))
    assert ev["id"] is None and ev["response_id"] is None   # no id from the API: null, not agtap's


def test_line_escapes_terminal_controls():
    c = make_call(model="a\x1b]0;t\x07b\x9bc\u2028d\x7f")
    line = event_line(c)
    assert not any(b in line for b in (b"\x1b", b"\x07", "\x9b".encode(), "\u2028".encode(), b"\x7f"))
    assert json.loads(line)["model"] == "a\x1b]0;t\x07b\x9bc\u2028d\x7f"  # escaped, not lost


def test_lone_surrogate_falls_back_to_ascii_escapes():
    c = make_call(model="bad\udcff")
    line = event_line(c)
    assert line.isascii() and json.loads(line)["model"] == "bad\udcff"


def test_writes_lines_with_safe_modes(tmp_path):
    path = str(tmp_path / "log" / "events.jsonl")
    sink = JsonlSink(path, 100, 5, group="daemon")
    calls = [make_call(i) for i in range(3)]
    for c in calls:
        sink.write(c)
    sink.close()
    assert [d["event_id"] for d in read_lines(path)] == [c.event_id for c in calls]
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o640
    assert stat.S_IMODE(os.stat(tmp_path / "log").st_mode) == 0o750
    if os.geteuid() == 0:
        assert os.stat(path).st_gid == 1  # daemon
    assert sink.stats()["lines"] == 3 and sink.stats()["write_errors"] == 0


def test_20k_lines_rotating_every_few_kb_lose_nothing(tmp_path):
    path = str(tmp_path / "events.jsonl")
    sink = JsonlSink(path, 64 * KB, max_files=10_000)
    for i in range(20_000):
        sink.write(make_call(i))
    sink.close()
    files = all_files(path)
    assert len(files) == sink.stats()["rotations"] + 1 > 100
    seen = []
    for f in files:
        assert os.path.getsize(f) <= 64 * 1024
        assert stat.S_IMODE(os.stat(f).st_mode) == 0o640
        seen += [d["input_tokens"] for d in read_lines(f)]
    assert sorted(seen) == list(range(20_000))


def test_rotation_keeps_max_files_newest_first(tmp_path):
    path = str(tmp_path / "events.jsonl")
    sink = JsonlSink(path, 4 * KB, max_files=3)
    for i in range(2_000):
        sink.write(make_call(i))
    sink.close()
    assert all_files(path) == [path, path + ".1", path + ".2", path + ".3"]
    # oldest .3 -> .2 -> .1 -> current: one contiguous run ending at the last write
    seq = [d["input_tokens"] for f in (".3", ".2", ".1", "") for d in read_lines(path + f)]
    assert seq == list(range(seq[0], 2_000))
    assert seq[0] > 0  # older files were dropped


def test_rotation_with_zero_kept_files(tmp_path):
    path = str(tmp_path / "events.jsonl")
    sink = JsonlSink(path, 2 * KB, max_files=0)
    for i in range(200):
        sink.write(make_call(i))
    assert all_files(path) == [path]
    assert read_lines(path)[-1]["input_tokens"] == 199


def test_threads_never_interleave_lines(tmp_path):
    path = str(tmp_path / "events.jsonl")
    sink = JsonlSink(path, 64 * KB, max_files=1000)
    long_model = "m" * 3000  # lines larger than a pipe buffer page

    def writer(base):
        for i in range(500):
            sink.write(make_call(base + i, model=long_model))

    threads = [threading.Thread(target=writer, args=(k * 1000,)) for k in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    seen = sorted(d["input_tokens"] for f in all_files(path) for d in read_lines(f))
    assert seen == sorted(k * 1000 + i for k in range(4) for i in range(500))


def test_log_deleted_or_moved_away_is_recreated(tmp_path):
    path = str(tmp_path / "events.jsonl")
    sink = JsonlSink(path, 100, 5)
    sink.write(make_call(1))
    os.rename(path, path + ".moved")
    sink._next_check = 0  # as if a second had passed
    sink.write(make_call(2))
    os.unlink(path)
    sink._next_check = 0
    sink.write(make_call(3))
    assert [d["input_tokens"] for d in read_lines(path + ".moved")] == [1]
    assert [d["input_tokens"] for d in read_lines(path)] == [3]
    assert sink.stats()["write_errors"] == 0


def test_stdout_gets_every_line(tmp_path, capsys):
    sink = JsonlSink(str(tmp_path / "events.jsonl"), 100, 5, stdout=True)
    calls = [make_call(i) for i in range(3)]
    for c in calls:
        sink.write(c)
    out = capsys.readouterr().out.splitlines()
    assert [json.loads(line)["event_id"] for line in out] == [c.event_id for c in calls]


def test_stdout_only(capsys):
    sink = JsonlSink(None, 100, 5, stdout=True)
    sink.write(make_call(1))
    assert json.loads(capsys.readouterr().out)["input_tokens"] == 1


def test_unsafe_path_is_counted_not_raised(tmp_path):
    (tmp_path / "elsewhere").write_bytes(b"")
    (tmp_path / "events.jsonl").symlink_to(tmp_path / "elsewhere")
    sink = JsonlSink(str(tmp_path / "events.jsonl"), 100, 5)
    sink.write(make_call())
    assert sink.stats()["write_errors"] == 2  # the open at start and the write
    assert (tmp_path / "elsewhere").read_bytes() == b""


@contextlib.contextmanager
def small_tmpfs(where, size="256k"):
    if os.geteuid() != 0:
        if os.environ.get("CI"):
            pytest.fail("CI must run as root: a real ENOSPC needs a tmpfs mount")
        pytest.skip("mounting a tmpfs to make a real ENOSPC needs root")
    where.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(where)], check=True)
    try:
        yield where
    finally:
        subprocess.run(["umount", "-l", str(where)], check=True)


def fill(path, chunk=4096):
    """Write zeros until the filesystem is full; returns the filler's path."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT, 0o600)
    try:
        while os.write(fd, b"\0" * chunk) == chunk:
            pass
    except OSError:
        pass
    finally:
        os.close(fd)
    return path


def test_disk_full_is_counted_lines_stay_whole_and_writes_recover(tmp_path):
    with small_tmpfs(tmp_path / "small") as mnt:
        path = str(mnt / "log" / "events.jsonl")
        sink = JsonlSink(path, 100, 5)
        model = "x" * 1500  # lines of ~1.8 KB: some will be cut at a page boundary
        for i in range(50):
            sink.write(make_call(i, model=model))
        filler = fill(mnt / "filler")
        for i in range(50, 250):
            sink.write(make_call(i, model=model))  # must not raise
        st = sink.stats()
        assert st["write_errors"] > 0
        assert st["short_writes"] >= 1  # a line was cut by the full disk, then taken back off
        written = read_lines(path)  # every line parses: nothing torn
        assert len(written) == st["lines"] < 250
        assert [d["input_tokens"] for d in written][:50] == list(range(50))

        os.unlink(filler)
        for i in range(250, 260):
            sink.write(make_call(i, model=model))
        assert sink.stats()["write_errors"] == st["write_errors"]
        after = read_lines(path)
        assert [d["input_tokens"] for d in after[-10:]] == list(range(250, 260))
        sink.close()
