"""capture: the kernel side. The only layer that imports BCC.

Public API (used by the service and the CLI):

    tracer = Tracer(settings, on_item, log)   # on_item(Chunk | ConnClosed), called from the poll thread
    tracer.start()                            # find headers, compile bpf/*.c, attach; raises CaptureError
    tracer.poll(timeout_ms)                   # drain the ring buffer (run it in a thread of its own)
    tracer.set_filter(pids, comms)            # live, through BPF maps
    tracer.ignore_conn(conn)                  # stop copying this connection until its next request line
    tracer.stats() -> CaptureStats
    tracer.targets -> list[str]               # attached libssl files / node binaries
    tracer.stop()                             # detach every probe

`CaptureError(message, fix)` says what is missing and the command that fixes it.
"""
