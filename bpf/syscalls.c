/* agtap: plain sockets and pipes, from syscall tracepoints (kprobes do not
 * exist on the kernels agtap targets; see docs/DESIGN.md).
 *
 * Connection identity is (tgid, fd); userspace resolves /proc/PID/fd/N to a
 * socket or pipe inode. Buffers are copied at syscall exit, when the number
 * of bytes really transferred is known (non-blocking writers retry partial
 * writes, and copying at entry would duplicate bytes).
 */

/* Stash the arguments of a write-like syscall if it will be captured. */
static __always_inline int sys_write_enter(u64 fd, u64 buf, u64 len, u32 iovcnt) {
    u32 tgid, tid;
    if (!current_ids(&tgid, &tid))
        return 0;   /* a task outside the daemon's PID namespace */
    if ((s64)fd < 0)
        return 0;   /* not an fd */
    if (!selected(tgid))
        return 0;   /* -p / -c filters */
    const char *first = (const char *)buf;
    u64 first_len = len;
    if (iovcnt) {
        struct iovec_user v = {};
        if (bpf_probe_read_user(&v, sizeof(v), (void *)buf))
            return 0;   /* unreadable iovec array */
        first = (const char *)v.base;
        first_len = v.len;
    }
    note_late_write(tgid, first, first_len);
    struct conn_key_t key = {.pid = tgid, .is_tls = 0, .id = fd};
    if (!classify_write(&key, first, first_len, 1))
        return 0;   /* not an HTTP request or JSON-RPC message on a captured fd */
    struct args_t a = {.conn_id = fd, .buf = buf, .iovcnt = iovcnt, .kind = K_SOCK_WRITE};
    u64 id = bpf_get_current_pid_tgid();
    sys_args.update(&id, &a);
    return 0;
}

/* Stash the arguments of a read-like syscall on a captured connection. */
static __always_inline int sys_read_enter(u64 fd, u64 buf, u32 iovcnt) {
    u32 tgid, tid;
    if (!current_ids(&tgid, &tid))
        return 0;   /* a task outside the daemon's PID namespace */
    struct conn_key_t key = {.pid = tgid, .is_tls = 0, .id = fd};
    if (!read_wanted(&key, 0))
        return 0;   /* reads follow a captured request only: the common case */
    struct args_t a = {.conn_id = fd, .buf = buf, .iovcnt = iovcnt, .kind = K_SOCK_READ};
    u64 id = bpf_get_current_pid_tgid();
    sys_args.update(&id, &a);
    return 0;
}

/* At exit: copy what was transferred. */
static __always_inline int sys_exit_copy(void *ctx, long ret) {
    u64 id = bpf_get_current_pid_tgid();
    struct args_t *ap = sys_args.lookup(&id);
    if (!ap)
        return 0;   /* entry did not select this call: the common case */
    struct args_t a = *ap;
    sys_args.delete(&id);
    if (ret <= 0)
        return 0;   /* error, EOF or would-block: nothing transferred */
    u32 tgid, tid;
    if (!current_ids(&tgid, &tid))
        return 0;   /* a task outside the daemon's PID namespace */
    mark_active(tgid);
    struct conn_key_t key = {.pid = tgid, .is_tls = 0, .id = a.conn_id};
    int more = start_copy(a.kind, a.conn_id, tgid, tid, a.buf, ret, a.iovcnt, a.kind == K_SOCK_READ ? &key : 0);
    if (!more)
        return 0;
    cont_tp_progs.call(ctx, more - 1);   /* more than STEPS records, or an HTTP/2 walk */
    cont_failed();   /* reached only if the tail call failed: the rest is not copied */
    return 0;
}

/* msghdr as user space lays it out (struct user_msghdr): msg_iov at 16, msg_iovlen at 24. */
static __always_inline int msg_iov(u64 msg, u64 *iov, u32 *cnt) {
    u64 v[2] = {};
    if (bpf_probe_read_user(v, sizeof(v), (void *)(msg + 16)))
        return 0;
    *iov = v[0];
    *cnt = v[1] > 64 ? 64 : (u32)v[1];   /* emit_steps walks at most 64 */
    return *cnt > 0;
}

TRACEPOINT_PROBE(syscalls, sys_enter_write) { return sys_write_enter(args->fd, (u64)args->buf, args->count, 0); }
TRACEPOINT_PROBE(syscalls, sys_exit_write) { return sys_exit_copy(args, args->ret); }
TRACEPOINT_PROBE(syscalls, sys_enter_writev) { return sys_write_enter(args->fd, (u64)args->vec, 0, args->vlen); }
TRACEPOINT_PROBE(syscalls, sys_exit_writev) { return sys_exit_copy(args, args->ret); }
TRACEPOINT_PROBE(syscalls, sys_enter_sendto) { return sys_write_enter(args->fd, (u64)args->buff, args->len, 0); }
TRACEPOINT_PROBE(syscalls, sys_exit_sendto) { return sys_exit_copy(args, args->ret); }
TRACEPOINT_PROBE(syscalls, sys_enter_sendmsg) {
    u64 iov; u32 cnt;
    if (!msg_iov((u64)args->msg, &iov, &cnt))
        return 0;   /* no iovecs (or unreadable msghdr) */
    return sys_write_enter(args->fd, iov, 0, cnt);
}
TRACEPOINT_PROBE(syscalls, sys_exit_sendmsg) { return sys_exit_copy(args, args->ret); }

TRACEPOINT_PROBE(syscalls, sys_enter_read) { return sys_read_enter(args->fd, (u64)args->buf, 0); }
TRACEPOINT_PROBE(syscalls, sys_exit_read) { return sys_exit_copy(args, args->ret); }
TRACEPOINT_PROBE(syscalls, sys_enter_readv) { return sys_read_enter(args->fd, (u64)args->vec, args->vlen); }
TRACEPOINT_PROBE(syscalls, sys_exit_readv) { return sys_exit_copy(args, args->ret); }
TRACEPOINT_PROBE(syscalls, sys_enter_recvfrom) { return sys_read_enter(args->fd, (u64)args->ubuf, 0); }
TRACEPOINT_PROBE(syscalls, sys_exit_recvfrom) { return sys_exit_copy(args, args->ret); }
TRACEPOINT_PROBE(syscalls, sys_enter_recvmsg) {
    u64 iov; u32 cnt;
    if (!msg_iov((u64)args->msg, &iov, &cnt))
        return 0;   /* no iovecs (or unreadable msghdr) */
    return sys_read_enter(args->fd, iov, cnt);
}
TRACEPOINT_PROBE(syscalls, sys_exit_recvmsg) { return sys_exit_copy(args, args->ret); }

TRACEPOINT_PROBE(syscalls, sys_enter_close) {
    u32 tgid, tid;
    if (!current_ids(&tgid, &tid))
        return 0;   /* a task outside the daemon's PID namespace */
    struct conn_key_t key = {.pid = tgid, .is_tls = 0, .id = (u64)args->fd};
    if (!conns.lookup(&key))
        return 0;   /* not a captured fd: the common case */
    conns.delete(&key);
    h2_walk.delete(&key);
    emit_event(K_CLOSE, key.id, tgid, tid, 0, 0);
    return 0;
}
