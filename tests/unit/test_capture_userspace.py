"""The capture layer's userspace, without BPF: records, connection naming, /proc facts, headers, recordings."""

from __future__ import annotations

import os
import struct
from pathlib import Path

import pytest

from agtap.capture import headers, procinfo
from agtap.capture.chunk import Chunk, ConnClosed, Direction, Transport
from agtap.capture.connid import ConnId
from agtap.capture.conns import HOLD_NS, ConnMapper
from agtap.capture.elfsyms import exported
from agtap.capture.recording import Recorder, RecordingError, encode, read
from agtap.capture.records import (F_CUT, F_LAST, HDR_SIZE, K_CLOSE, K_EXIT, K_GO_CLOSE, K_GO_READ, K_GO_WRITE,
                                   K_H2_START, K_SOCK_READ, K_SOCK_WRITE, K_TLS_READ, K_TLS_WRITE, S_EGRESS_ONLY, S_NEVER,
                                   KEY_GOTLS, RawRecord, decode)
from tests.support.harness import chunk


def raw(kind, pid, conn_id, data=b"", flags=F_LAST, ts=1_000, comm="agent"):
    return RawRecord(ts, conn_id, len(data), 0, pid, pid, kind, flags, comm, data)


# --- the ring-buffer record layout (bpf/common.h struct record_t) ---

def test_record_header_is_64_bytes_and_decodes_every_field():
    assert HDR_SIZE == 64   # 4 u64 + 3 u32 + 2 u8 + 2 pad + comm[16]
    payload = b"POST /v1/messages HTTP/1.1\r\n"
    buf = struct.pack("<QQQQIIIBB2x16s", 123456789, 0x7F00DEAD, 4096, 16384, 42, 43, len(payload),
                      K_TLS_WRITE, F_CUT | F_LAST, b"python3\0") + payload + b"garbage past len"
    r = decode(buf)
    assert (r.ts_ns, r.conn_id, r.total, r.offset, r.pid, r.tid) == (123456789, 0x7F00DEAD, 4096, 16384, 42, 43)
    assert r.kind == K_TLS_WRITE and r.flags == F_CUT | F_LAST and r.comm == "python3"
    assert r.data == payload and r.is_tls and r.is_write


# --- a fake /proc: symlinks may point at any string, as /proc/PID/fd/N do ---

class FakeProc:
    def __init__(self, root: Path):
        self.root = root

    def add(self, pid, comm="python3", ppid=1, exe="/usr/bin/python3.11",
            cgroup="0::/system.slice/my-agent.service\n", children=()):
        d = self.root / str(pid)
        (d / "fd").mkdir(parents=True)
        (d / "fdinfo").mkdir()
        (d / "task" / str(pid)).mkdir(parents=True)
        (d / "comm").write_text(comm + "\n")
        (d / "cgroup").write_text(cgroup)
        (d / "stat").write_text(f"{pid} ({comm}) S {ppid} {pid} {pid} 0 -1\n")
        (d / "task" / str(pid) / "children").write_text(" ".join(map(str, children)))
        os.symlink(exe, d / "exe")

    def fd(self, pid, fd, target, flags="02"):
        os.symlink(target, self.root / str(pid) / "fd" / str(fd))
        (self.root / str(pid) / "fdinfo" / str(fd)).write_text(f"pos:\t0\nflags:\t{flags}\n")


@pytest.fixture
def fake_proc(tmp_path):
    return FakeProc(tmp_path)


def test_tls_records_become_chunks_with_process_facts(fake_proc):
    fake_proc.add(100, comm="python3")
    m = ConnMapper(proc_root=str(fake_proc.root))
    [c] = m.map(raw(K_TLS_WRITE, 100, 0xABC, b"POST / HTTP/1.1\r\n", comm="httpx-worker"))
    assert isinstance(c, Chunk)
    assert c.conn == ConnId.tls(100, 0xABC) and c.direction is Direction.EGRESS and c.transport is Transport.TLS
    assert c.comm == "httpx-worker" and c.proc == "python3"     # thread name vs process name
    assert c.unit == "my-agent.service" and c.exe == "/usr/bin/python3.11" and c.fd == -1
    [r] = m.map(raw(K_TLS_READ, 100, 0xABC, b"HTTP/1.1 200 OK\r\n", flags=F_LAST | F_CUT))
    assert r.direction is Direction.INGRESS and r.cut
    assert m.map(raw(K_EXIT, 100, 0)) == [ConnClosed(ConnId.tls(100, 0xABC), 1_000, "process_exit")]


def test_go_tls_records_are_a_connection_of_their_own_named_by_the_tls_conn(fake_proc):
    fake_proc.add(150, comm="llmclient", exe="/usr/local/bin/llmclient")
    m = ConnMapper(proc_root=str(fake_proc.root))
    [w] = m.map(raw(K_GO_WRITE, 150, 0xC000180000, b"POST /v1/messages HTTP/1.1\r\n"))
    [r] = m.map(raw(K_GO_READ, 150, 0xC000180000, b"HTTP/1.1 200 OK\r\n"))
    assert w.conn == r.conn == ConnId.gotls(150, 0xC000180000) != ConnId.tls(150, 0xC000180000)
    assert (w.direction, r.direction) == (Direction.EGRESS, Direction.INGRESS)
    assert w.transport is r.transport is Transport.TLS and w.fd == -1 and w.exe == "/usr/local/bin/llmclient"
    # an SSL_free-style K_CLOSE of the same number is not this connection's end; Close is
    assert m.map(raw(K_CLOSE, 150, 0xC000180000)) == []
    assert m.map(raw(K_GO_CLOSE, 150, 0xC000180000)) == [ConnClosed(ConnId.gotls(150, 0xC000180000), 1_000,
                                                                    "closed")]
    assert m.map(raw(K_GO_CLOSE, 150, 0xC000180000)) == []      # closed once
    assert m.map(raw(K_GO_CLOSE, 150, 0xC000999000)) == []      # never delivered: nothing to end
    m.map(raw(K_GO_WRITE, 150, 0xC000180000, b"POST /v1/messages HTTP/1.1\r\n"))   # the address reused
    assert m.map(raw(K_EXIT, 150, 0)) == [ConnClosed(ConnId.gotls(150, 0xC000180000), 1_000, "process_exit")]
def test_an_http2_connections_generation_is_kept_until_it_closes(fake_proc):
    """K_H2_START (bpf/copy.h) names a walked HTTP/2 connection: `total` its generation (the
    h2_drop keys of its streams), `offset` its key's is_tls. Tracer.ignore_stream reads it here."""
    fake_proc.add(100)
    m = ConnMapper(proc_root=str(fake_proc.root))
    start = lambda conn_id, gen, space: RawRecord(1, conn_id, gen, space, 100, 100, K_H2_START, F_LAST, "a", b"")
    assert m.map(start(0xABC, 111, 1)) == [] and m.map(start(7, 222, 0)) == [] and m.map(start(0xC0, 9, KEY_GOTLS)) == []
    assert ConnId.tls(100, 0xABC).kernel_key() == (100, 1, 0xABC)
    assert m.h2_gen((100, 1, 0xABC)) == 111 and m.h2_gen((100, 0, 7)) == 222
    assert m.h2_gen(ConnId.gotls(100, 0xC0).kernel_key()) == 9
    assert m.h2_gen((100, 0, 0xABC)) is None                # the same number as an fd: another connection
    m.map(start(0xABC, 333, 1))                             # the SSL* reused by a new connection
    assert m.h2_gen((100, 1, 0xABC)) == 333
    m.map(RawRecord(2, 0xABC, 0, 1, 100, 100, K_CLOSE, F_LAST, "a", b""))
    m.map(RawRecord(2, 0xC0, 0, KEY_GOTLS, 100, 100, K_GO_CLOSE, F_LAST, "a", b""))
    assert m.h2_gen((100, 1, 0xABC)) is None and m.h2_gen((100, KEY_GOTLS, 0xC0)) is None
    assert m.h2_gen((100, 0, 7)) == 222
    m.map(raw(K_EXIT, 100, 0))
    assert m.h2_gen((100, 0, 7)) is None


def test_a_socket_that_is_not_unix_is_named_by_pid_and_fd(fake_proc):
    fake_proc.add(200)
    fake_proc.fd(200, 5, "socket:[4000000001]")    # no such unix socket: sock_diag says so
    m = ConnMapper(proc_root=str(fake_proc.root))
    [w] = m.map(raw(K_SOCK_WRITE, 200, 5, b"POST /v1/chat/completions HTTP/1.1\r\n"))
    [r] = m.map(raw(K_SOCK_READ, 200, 5, b"HTTP/1.1 200 OK\r\n"))
    assert (w.conn, w.direction, r.conn, r.direction) == (ConnId.sock(200, 5), Direction.EGRESS,
                                                          ConnId.sock(200, 5), Direction.INGRESS)
    assert m.map(raw(K_CLOSE, 200, 5)) == [ConnClosed(ConnId.sock(200, 5), 1_000, "closed")]
    assert m.map(raw(K_CLOSE, 200, 5)) == []        # closed once


def test_a_file_is_never_a_connection_and_the_kernel_is_told(fake_proc):
    fake_proc.add(300)
    fake_proc.fd(300, 3, "/var/log/app.log")
    states = []
    m = ConnMapper(lambda *a: states.append(a), proc_root=str(fake_proc.root))
    assert m.map(raw(K_SOCK_WRITE, 300, 3, b'{"jsonrpc":"2.0","id":1,"method":"x"}\n')) == []
    assert states == [(300, False, 3, S_NEVER)]


def test_mcp_stdio_over_pipes_is_one_conversation_named_after_client_and_server(fake_proc):
    # client 400 spawned server 401: client writes pipe 7001 (server's stdin), server writes pipe 7002
    fake_proc.add(400, children=[401])
    fake_proc.add(401, ppid=400)
    fake_proc.fd(400, 9, "pipe:[7001]", flags="01")     # write end
    fake_proc.fd(400, 10, "pipe:[7002]", flags="00")    # read end of the server's stdout
    fake_proc.fd(401, 0, "pipe:[7001]", flags="00")
    fake_proc.fd(401, 7, "pipe:[7002]", flags="01")     # the server answers through fd 7, not fd 1
    states = []
    m = ConnMapper(lambda *a: states.append(a), proc_root=str(fake_proc.root))
    # the client's chunks wait for the server's first write, which names the conversation
    assert m.map(raw(K_SOCK_WRITE, 400, 9, b'{"jsonrpc":"2.0","id":1,"method":"initialize"}\n')) == []
    [req, resp] = m.map(raw(K_SOCK_WRITE, 401, 7, b'{"jsonrpc":"2.0","id":1,"result":{}}\n'))
    assert req.conn == resp.conn == ConnId.ipc(400, 401)
    [req2] = m.map(raw(K_SOCK_WRITE, 400, 9, b'{"jsonrpc":"2.0","id":2,"method":"ping"}\n'))
    assert req2.conn == ConnId.ipc(400, 401)
    assert req.direction is Direction.EGRESS and resp.direction is Direction.INGRESS
    assert req.transport is Transport.PIPE
    assert (400, False, 9, S_EGRESS_ONLY) in states and (401, False, 7, S_EGRESS_ONLY) in states


def test_a_wrapper_between_client_and_server_is_skipped(fake_proc):
    # client 500 -> wrapper 501 (npx, holds the inherited pipes) -> server 502
    fake_proc.add(500, children=[501])
    fake_proc.add(501, ppid=500, children=[502])
    fake_proc.add(502, ppid=501)
    fake_proc.fd(500, 4, "pipe:[8001]", flags="01")
    fake_proc.fd(500, 5, "pipe:[8002]", flags="00")
    for pid in (501, 502):
        fake_proc.fd(pid, 0, "pipe:[8001]", flags="00")
        fake_proc.fd(pid, 1, "pipe:[8002]", flags="01")
    m = ConnMapper(proc_root=str(fake_proc.root))
    [resp] = m.map(raw(K_SOCK_WRITE, 502, 1, b'{"jsonrpc":"2.0","id":1,"result":{}}\n'))
    # the wrapper holds only the write end of 8002: the client is the reader
    assert resp.conn == ConnId.ipc(500, 502) and resp.direction is Direction.INGRESS
    [req] = m.map(raw(K_SOCK_WRITE, 500, 4, b'{"jsonrpc":"2.0","id":1,"method":"ping"}\n'))
    # the wrapper 501 also holds 8001's read end: the deepest holder is the server
    assert req.direction is Direction.EGRESS and req.conn == ConnId.ipc(500, 502)


def _slow_wrapper(fake_proc):
    # client 700 ran `sh -c 'sleep 0.3; exec server'`: sh 701 is sleeping in its child 702
    fake_proc.add(700, children=[701])
    fake_proc.add(701, comm="sh", ppid=700, children=[702])
    fake_proc.add(702, comm="sleep", ppid=701)
    fake_proc.fd(700, 4, "pipe:[8101]", flags="01")
    fake_proc.fd(700, 5, "pipe:[8102]", flags="00")
    for pid in (701, 702):
        fake_proc.fd(pid, 0, "pipe:[8101]", flags="00")
        fake_proc.fd(pid, 1, "pipe:[8102]", flags="01")


def _sleep_ends_and_sh_execs_the_server(fake_proc):
    import shutil
    shutil.rmtree(fake_proc.root / "702")
    (fake_proc.root / "701" / "comm").write_text("python3\n")
    (fake_proc.root / "701" / "task" / "701" / "children").write_text("")


INIT = b'{"method":"initialize","params":{},"jsonrpc":"2.0","id":0}\n'


def test_a_request_written_before_the_server_exists_waits_for_its_name(fake_proc):
    # initialize is written while the only other holder of the channel is `sleep`
    _slow_wrapper(fake_proc)
    m = ConnMapper(proc_root=str(fake_proc.root))
    assert m.map(raw(K_SOCK_WRITE, 700, 4, INIT)) == []
    _sleep_ends_and_sh_execs_the_server(fake_proc)
    [req, resp] = m.map(raw(K_SOCK_WRITE, 701, 1, b'{"jsonrpc":"2.0","id":0,"result":{}}\n'))
    assert req.conn == resp.conn == ConnId.ipc(700, 701)
    assert (req.direction, resp.direction) == (Direction.EGRESS, Direction.INGRESS)
    assert req.data == INIT
    assert m.map(raw(K_EXIT, 700, 0)) == [ConnClosed(ConnId.ipc(700, 701), 1_000, "process_exit")]


def test_held_requests_go_on_after_a_while_under_the_deepest_holder_then(fake_proc):
    _slow_wrapper(fake_proc)
    m = ConnMapper(proc_root=str(fake_proc.root))
    assert m.map(raw(K_SOCK_WRITE, 700, 4, INIT, ts=1_000)) == []
    assert m.flush_due(1_000 + HOLD_NS - 1) == []
    _sleep_ends_and_sh_execs_the_server(fake_proc)
    [req] = m.flush_due(1_000 + HOLD_NS)
    assert req.conn == ConnId.ipc(700, 701) and req.data == INIT
    # the server answering later joins the same conversation
    [resp] = m.map(raw(K_SOCK_WRITE, 701, 1, b'{"jsonrpc":"2.0","id":0,"result":{}}\n'))
    assert resp.conn == ConnId.ipc(700, 701)


def test_a_late_server_joins_the_name_its_client_settled_on(fake_proc):
    _slow_wrapper(fake_proc)
    m = ConnMapper(proc_root=str(fake_proc.root))
    m.map(raw(K_SOCK_WRITE, 700, 4, INIT, ts=1_000))
    [req] = m.flush_due(1_000 + HOLD_NS)        # still sleeping: named after `sleep`
    assert req.conn == ConnId.ipc(700, 702)
    _sleep_ends_and_sh_execs_the_server(fake_proc)
    [resp] = m.map(raw(K_SOCK_WRITE, 701, 1, b'{"jsonrpc":"2.0","id":0,"result":{}}\n'))
    assert resp.conn == ConnId.ipc(700, 702)          # paired all the same


def test_held_requests_go_on_when_the_channel_closes_or_the_capture_stops(fake_proc):
    _slow_wrapper(fake_proc)
    m = ConnMapper(proc_root=str(fake_proc.root))
    m.map(raw(K_SOCK_WRITE, 700, 4, INIT))
    [req, closed] = m.map(raw(K_CLOSE, 700, 4))
    assert req.data == INIT and closed == ConnClosed(req.conn, 1_000, "closed")
    m.map(raw(K_SOCK_WRITE, 700, 4, INIT))     # the fd number again, a new channel
    assert [c.data for c in m.flush_all()] == [INIT] and m.flush_all() == []


def test_reads_on_local_ipc_are_dropped(fake_proc):
    fake_proc.add(600, children=[601])
    fake_proc.add(601, ppid=600)
    fake_proc.fd(600, 3, "pipe:[9001]", flags="01")
    fake_proc.fd(601, 0, "pipe:[9001]", flags="00")
    m = ConnMapper(proc_root=str(fake_proc.root))
    m.map(raw(K_SOCK_WRITE, 600, 3, b'{"jsonrpc":"2.0","id":1,"method":"x"}\n'))
    assert m.map(raw(K_SOCK_READ, 600, 3, b"anything")) == []
    assert m.dropped_reads == 1


def test_connection_ids_give_the_kernel_key_of_one_end_and_none_for_ipc():
    assert ConnId.tls(12, 0x7F00DEAD).kernel_key() == (12, True, 0x7F00DEAD)
    assert ConnId.sock(12, 5).kernel_key() == (12, False, 5)
    assert ConnId.gotls(12, 0xC000180000).kernel_key() == (12, KEY_GOTLS, 0xC000180000)
    assert ConnId.ipc(1, 2).kernel_key() is None
    assert ConnId.ipc_channel(7001).kernel_key() is None and ConnId.ipc_fd(3, 4).kernel_key() is None
    assert ConnId.ipc(1, 2).is_ipc and ConnId.ipc_fd(3, 4).is_ipc and not ConnId.sock(1, 2).is_ipc


@pytest.mark.parametrize("cid,text", [
    (ConnId.tls(12, 0x7F00DEAD), "tls:12:7f00dead"),
    (ConnId.gotls(12, 0xC000180000), "gotls:12:c000180000"),
    (ConnId.sock(12, 5), "sock:12:5"),
    (ConnId.ipc(400, 401), "ipc:400:401"),
    (ConnId.ipc_channel(81234), "ipc:81234"),
    (ConnId.ipc_fd(77, 4), "ipcfd:77:4"),
])
def test_connection_id_string_form_round_trips(cid, text):
    assert str(cid) == text and ConnId.parse(text) == cid


@pytest.mark.parametrize("text", ["garbage", "", "tls:12", "tls:12:zz", "sock:1:0x5", "sock:-1:5", "udp:1:2",
                                  "ipc:", "ipc:1:2:3", "sock:\uff11:2"])
def test_a_string_that_names_no_connection_is_refused(text):
    with pytest.raises(ValueError, match="not a connection id"):
        ConnId.parse(text)


def test_a_recording_in_the_string_format_replays(tmp_path):
    """Recordings hold the string form; one written before ids were typed reads back the same ids."""
    path = tmp_path / "old.jsonl"
    path.write_text(
        '{"agtap_recording": 1, "version": "0.9.0", "kernel": "6.1", "host": "h", "started": 1.0}\n'
        '{"type": "chunk", "conn": "tls:7:ab", "direction": "egress", "ts_ns": 1, "wall_ns": 2, "pid": 7,'
        ' "tid": 7, "comm": "c", "proc": "p", "data": "", "transport": "tls", "cut": false}\n'
        '{"type": "chunk", "conn": "ipc:81234", "direction": "egress", "ts_ns": 3, "wall_ns": 4, "pid": 8,'
        ' "tid": 8, "comm": "c", "proc": "p", "data": "e30K", "transport": "pipe"}\n'
        '{"type": "close", "conn": "ipc:40:41", "ts_ns": 5, "reason": "closed"}\n'
        '{"type": "close", "conn": "sock:9:3", "ts_ns": 6}\n')
    items = list(read(str(path)))
    assert [i.conn for i in items] == [ConnId.tls(7, 0xAB), ConnId.ipc_channel(81234), ConnId.ipc(40, 41),
                                       ConnId.sock(9, 3)]
    assert items[1].data == b"{}\n" and items[3].reason == "closed"
    bad = tmp_path / "bad.jsonl"
    bad.write_text(path.read_text().splitlines()[0] + '\n{"type": "close", "conn": "tls:x", "ts_ns": 5}\n')
    with pytest.raises(RecordingError, match=r"bad\.jsonl:2: bad item: not a connection id"):
        list(read(str(bad)))


@pytest.mark.parametrize("text,unit,container", [
    ("0::/system.slice/my-agent.service\n", "my-agent.service", ""),
    ("0::/user.slice/user-1000.slice/session-3.scope\n", "session-3.scope", ""),
    ("0::/system.slice/docker-" + "a" * 64 + ".scope\n", "docker-" + "a" * 64 + ".scope", "a" * 64),
    ("12:pids:/docker/" + "b" * 64 + "\n1:name=systemd:/docker/" + "b" * 64 + "\n", "", "b" * 64),
    ("0::/machine.slice/libpod-" + "c" * 64 + ".scope/container\n", "libpod-" + "c" * 64 + ".scope", "c" * 64),
    ("0::/libpod_parent/libpod-" + "d" * 64 + "\n", "", "d" * 64),     # podman, cgroupfs manager
    ("0::/machine.slice/machine-agtap\\x2dtest.scope/payload/system.slice/x.service\n", "x.service",
     "agtap-test"),                                                    # systemd-nspawn, registered
    ("0::/\n", "", ""),
    ("0::/init.scope\n", "", ""),
])
def test_unit_and_container_from_cgroup(text, unit, container):
    assert procinfo.unit_and_container(text) == (unit, container)


def test_unix_peer_of_a_real_socketpair():
    import socket
    a, b = socket.socketpair()
    ia, ib = os.fstat(a.fileno()).st_ino, os.fstat(b.fileno()).st_ino
    assert procinfo.unix_peer(ia) == ib and procinfo.unix_peer(ib) == ia
    r, w = os.pipe()
    assert procinfo.unix_peer(os.fstat(r).st_ino) is None     # a pipe is not a socket
    for s in (a, b):
        s.close()
    os.close(r), os.close(w)


# --- headers ---

def make_split_tree(src: Path, ver="6.1.0-56", flavour="cloud-amd64") -> None:
    common = src / f"linux-headers-{ver}-common"
    flav = src / f"linux-headers-{ver}-{flavour}"
    (common / "include/linux").mkdir(parents=True)
    (common / "include/linux/kconfig.h").write_text("")
    (common / "arch/x86/include/asm").mkdir(parents=True)
    (common / "Makefile").write_text("")
    (flav / "include/generated").mkdir(parents=True)
    (flav / "include/generated/autoconf.h").write_text("")
    (flav / "arch/x86/include/generated").mkdir(parents=True)
    (flav / ".config").write_text("CONFIG_X=y\n")
    (flav / "Makefile").write_text(f"include {src}/linux-headers-{ver}-common/Makefile\n")


def test_debian_split_headers_are_joined_outside_lib_modules(tmp_path, monkeypatch):
    monkeypatch.delenv("BCC_KERNEL_SOURCE", raising=False)
    monkeypatch.setattr(headers, "_arch_dir", lambda: "x86")
    src = tmp_path / "src"
    make_split_tree(src)
    t = headers.find_header_tree(str(tmp_path / "run"), release="9.9.9-test", modules_root=str(tmp_path / "mods"),
                                 src_root=str(src))
    p = Path(t.path)
    assert p.is_relative_to(tmp_path / "run") and not t.exact
    assert (p / "include/linux/kconfig.h").exists() and (p / "include/generated/autoconf.h").exists()
    assert (p / "arch/x86/include/asm").is_dir() and (p / "arch/x86/include/generated").is_dir()
    assert "cloud-amd64" in t.source and "common" in t.source
    # prepared once: a second call reuses it
    assert headers.find_header_tree(str(tmp_path / "run"), release="9.9.9-test", modules_root=str(tmp_path / "mods"),
                                    src_root=str(src)).path == t.path


def test_no_headers_names_the_package_to_install(tmp_path, monkeypatch):
    monkeypatch.delenv("BCC_KERNEL_SOURCE", raising=False)
    (tmp_path / "src").mkdir()
    with pytest.raises(headers.HeadersNotFound, match="apt-get install linux-headers"):
        headers.find_header_tree(str(tmp_path / "run"), release="9.9.9", modules_root=str(tmp_path / "m"),
                                 src_root=str(tmp_path / "src"))


def test_lib_modules_build_wins_when_present(tmp_path, monkeypatch):
    monkeypatch.delenv("BCC_KERNEL_SOURCE", raising=False)
    (tmp_path / "m/9.9.9/build").mkdir(parents=True)
    t = headers.find_header_tree(str(tmp_path / "run"), release="9.9.9", modules_root=str(tmp_path / "m"),
                                 src_root=str(tmp_path / "src"))
    assert t.exact and t.path.endswith("9.9.9/build")


# --- ELF symbols ---

def test_exported_ssl_symbols_of_the_system_libssl():
    lib = next((p for p in ("/lib/x86_64-linux-gnu/libssl.so.3", "/usr/lib/x86_64-linux-gnu/libssl.so.3")
                if os.path.exists(p)), None)
    assert lib, "libssl3 is a dependency of python3 on Debian"
    assert {"SSL_write", "SSL_write_ex", "SSL_read", "SSL_read_ex", "SSL_free"} <= exported(lib)
    assert exported("/bin/sh") == set()
    assert exported("/etc/hostname") == set()      # not ELF


# --- recordings ---

def test_recording_round_trip_is_exact(tmp_path):
    items = [chunk(Direction.EGRESS, bytes(range(256)), 10, conn=ConnId.tls(1, 0xFF), wall_ns=20, pid=1, tid=2, comm="c",
                   proc="p", cut=True, exe="/x", unit="u.service", container_id="", fd=-1),
             ConnClosed(ConnId.tls(1, 0xFF), 30, "process_exit")]
    path = tmp_path / "r.jsonl"
    rec = Recorder(str(path))
    for i in items:
        rec.write(i)
    rec.close()
    assert list(read(str(path))) == items
    assert path.read_text().splitlines()[1:] == [encode(i) for i in items]


def test_a_file_that_is_not_a_recording_is_refused(tmp_path):
    p = tmp_path / "x"
    p.write_text('{"hello": 1}\n')
    with pytest.raises(RecordingError, match="not an agtap recording"):
        list(read(str(p)))


def test_agtap_replay_prints_one_event_per_call(tmp_path):
    """`agtap replay FILE` with no root: the recording goes through the real pipeline."""
    import json as _json
    import subprocess
    import sys
    body = b'{"model":"claude-replay","max_tokens":5,"messages":[{"role":"user","content":"hi"}]}'
    req = (b"POST /v1/messages HTTP/1.1\r\nHost: api.anthropic.com\r\nContent-Type: application/json\r\n"
           b"Content-Length: " + str(len(body)).encode() + b"\r\n\r\n" + body)
    # shape: https://docs.anthropic.com/en/api/messages (non-streaming response)
    resp_body = (b'{"id":"msg_1","type":"message","role":"assistant","model":"claude-replay",'
                 b'"content":[{"type":"text","text":"Hello"}],"stop_reason":"end_turn",'
                 b'"usage":{"input_tokens":9,"output_tokens":2}}')
    resp = (b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: "
            + str(len(resp_body)).encode() + b"\r\n\r\n" + resp_body)
    mk = lambda d, data, ts: chunk(d, data, ts, conn=ConnId.tls(7, 0xAB), wall_ns=1_795_000_000_000_000_000 + ts, pid=7,
                                   proc="python3")
    path = tmp_path / "r.jsonl"
    rec = Recorder(str(path))
    rec.write(mk(Direction.EGRESS, req, 1_000_000))
    rec.write(mk(Direction.INGRESS, resp, 251_000_000))
    rec.close()
    out = subprocess.run([sys.executable, "-m", "agtap.cli", "replay", str(path)], capture_output=True, text=True,
                         timeout=60)
    assert out.returncode == 0, out.stderr
    [ev] = [_json.loads(line) for line in out.stdout.splitlines()]
    assert (ev["provider"], ev["model"], ev["input_tokens"], ev["output_tokens"], ev["stop_reason"]) == \
        ("anthropic", "claude-replay", 9, 2, "end_turn")
    assert ev["latency_ms"] == 250.0 and ev["pid"] == 7
    bad = subprocess.run([sys.executable, "-m", "agtap.cli", "replay", str(tmp_path / "missing")],
                         capture_output=True, text=True, timeout=60)
    assert bad.returncode == 1 and "no such file" in bad.stderr


SMAPS = """\
7f0000000000-7f0000100000 r--p 00000000 fe:01 1234  /usr/lib/x86_64-linux-gnu/libLLVM-14.so.1
Rss:                1024 kB
Anonymous:             0 kB
7f0000100000-7f0002000000 r-xp 00100000 fe:01 1234  /usr/lib/x86_64-linux-gnu/libLLVM-14.so.1
Rss:               50000 kB
Anonymous:             0 kB
7f0002000000-7f0002100000 r--p 02000000 fe:01 1234  /usr/lib/x86_64-linux-gnu/libLLVM-14.so.1
Rss:                1024 kB
Anonymous:           900 kB
7f0002100000-7f0002200000 rw-p 02100000 fe:01 1234  /usr/lib/x86_64-linux-gnu/libLLVM-14.so.1
Rss:                1024 kB
Anonymous:             0 kB
7f0003000000-7f0003800000 r-xp 00000000 fe:01 99  /usr/lib/llvm-14/lib/libclang-cpp.so.14
Rss:               20000 kB
Anonymous:             0 kB
7f0004000000-7f0004100000 r-xp 00000000 fe:01 77  /usr/lib/x86_64-linux-gnu/libssl.so.3
Rss:                 600 kB
Anonymous:             0 kB
7f0005000000-7f0005100000 rw-p 00000000 00:00 0
Rss:                1024 kB
Anonymous:          1024 kB
"""


def test_compiler_memory_release_picks_only_clean_clang_llvm_mappings():
    from agtap.capture.loader import _clean_compiler_mappings
    got = _clean_compiler_mappings(SMAPS)
    # the two clean LLVM mappings and libclang's text; not the relocated (copy-on-write)
    # read-only part, not the writable data, not libssl (probed: uprobes COW its text), not anon
    assert got == [(0x7f0000000000, 0x7f0000100000), (0x7f0000100000, 0x7f0002000000),
                   (0x7f0003000000, 0x7f0003800000)]
