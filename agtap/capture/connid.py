"""Connection ids: which conversation a run of bytes belongs to.

The capture layer names every connection with a `ConnId`; the pipeline keys its
per-connection state by it, and `ignore_conn` hands it back so the tracer can
find the kernel's map key. A string form exists only where text is needed
(recordings, logs); `str(cid)` writes it and `ConnId.parse` reads it back,
including recordings written before the id was typed (same strings).

    kind    pid                 ident                string
    tls     tgid                SSL* address         "tls:<tgid>:<ssl-hex>"
    gotls   tgid                Go *tls.Conn address "gotls:<tgid>:<conn-hex>"
    sock    tgid                fd                   "sock:<tgid>:<fd>"
    ipc     client tgid         server tgid          "ipc:<client>:<server>"
    ipc     0                   channel inode        "ipc:<inode>"  (the peer was not found)
    ipcfd   tgid                fd                   "ipcfd:<tgid>:<fd>"  (the writer was gone
                                                      before /proc could say what the fd was)

tls, gotls and sock ids are one process's end (the kernel keys its state by them);
ipc ids name a JSON-RPC conversation over a pipe or socketpair shared by its
two processes: both processes' writes carry the same id.
"""

from __future__ import annotations

from typing import NamedTuple

from agtap.capture.records import KEY_GOTLS

TLS, GOTLS, SOCK, IPC, IPC_FD = "tls", "gotls", "sock", "ipc", "ipcfd"
_KINDS = (TLS, GOTLS, SOCK, IPC, IPC_FD)
_HEX = (TLS, GOTLS)
# conn_key_t.is_tls in the kernel, by kind: what the key's id is
_KEY_SPACE = {SOCK: 0, TLS: 1, GOTLS: KEY_GOTLS}


class ConnId(NamedTuple):
    kind: str
    pid: int
    ident: int

    @classmethod
    def tls(cls, pid: int, ssl: int) -> "ConnId":
        return cls(TLS, pid, ssl)

    @classmethod
    def gotls(cls, pid: int, conn: int) -> "ConnId":
        """A Go program's crypto/tls connection, named by its *tls.Conn."""
        return cls(GOTLS, pid, conn)

    @classmethod
    def sock(cls, pid: int, fd: int) -> "ConnId":
        return cls(SOCK, pid, fd)

    @classmethod
    def ipc(cls, client: int, server: int) -> "ConnId":
        return cls(IPC, client, server)

    @classmethod
    def ipc_channel(cls, inode: int) -> "ConnId":
        return cls(IPC, 0, inode)

    @classmethod
    def ipc_fd(cls, pid: int, fd: int) -> "ConnId":
        return cls(IPC_FD, pid, fd)

    @property
    def is_ipc(self) -> bool:
        """Local IPC carrying JSON-RPC: either process may speak first."""
        return self.kind == IPC or self.kind == IPC_FD

    def kernel_key(self) -> tuple[int, int, int] | None:
        """(tgid, is_tls, id): the key of the kernel's per-connection state (is_tls: 0 fd,
        1 SSL*, 2 Go *tls.Conn); None for IPC (not one key)."""
        space = _KEY_SPACE.get(self.kind)
        return None if space is None else (self.pid, space, self.ident)

    def __str__(self) -> str:
        if self.kind in _HEX:
            return f"{self.kind}:{self.pid}:{self.ident:x}"
        if self.kind == IPC and self.pid == 0:
            return f"ipc:{self.ident}"
        return f"{self.kind}:{self.pid}:{self.ident}"

    @classmethod
    def parse(cls, text: str) -> "ConnId":
        """The id a string form names; ValueError if it names none.

        Recordings made before ids were typed used the same strings, except
        that an ipc id of a vanished writer was "ipc:<tgid>:<fd>": it reads as
        an ipc pair, which names the same conversation for replay.
        """
        kind, sep, rest = text.partition(":")
        if not sep or kind not in _KINDS:
            raise ValueError(f"not a connection id: {text!r}")
        first, sep, second = rest.partition(":")
        if not sep:
            if kind != IPC:
                raise ValueError(f"not a connection id: {text!r}")
            return cls(IPC, 0, _number(first, 10, text))
        return cls(kind, _number(first, 10, text), _number(second, 16 if kind in _HEX else 10, text))


def _number(s: str, base: int, text: str) -> int:
    if not s or not s.isascii() or not s.isalnum():
        raise ValueError(f"not a connection id: {text!r}")
    try:
        n = int(s, base)
    except ValueError:
        raise ValueError(f"not a connection id: {text!r}") from None
    return n
