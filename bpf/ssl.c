/* agtap: TLS plaintext at OpenSSL's SSL_write/SSL_read and their _ex forms.
 *
 * Attached (by agtap/capture/targets.py) to every libssl the host uses and to
 * every binary exporting these symbols statically (node). Connection identity
 * is (tgid, SSL*). The plaintext is copied at return, once the byte count is
 * known: SSL_write/SSL_read return it; the _ex forms return 1/0 and write it
 * through their fourth argument (size_t *). Where the _ex form is a bare
 * wrapper (Debian's libssl3), the _ex programs are attached to the function
 * both forms call instead (agtap/capture/probepoints.py): same arguments,
 * > 0 on success with the count through the fourth argument.
 */

static __always_inline int ssl_enter(struct pt_regs *ctx, u32 kind, int ex) {
    u32 tgid, tid;
    if (!current_ids(&tgid, &tid))
        return 0;   /* a task outside the daemon's PID namespace */
    if (!selected(tgid))
        return 0;   /* -p / -c filters */
    struct args_t a = {};
    a.conn_id = PT_REGS_PARM1(ctx);
    a.buf = PT_REGS_PARM2(ctx);
    a.len_ptr = ex ? PT_REGS_PARM4(ctx) : 0;
    a.kind = kind;
    u64 id = bpf_get_current_pid_tgid();
    tls_args.update(&id, &a);
    return 0;
}

static __always_inline int ssl_return(struct pt_regs *ctx, int ex) {
    u64 id = bpf_get_current_pid_tgid();
    struct args_t *a = tls_args.lookup(&id);
    if (!a)
        return 0;   /* entry was filtered out, or the map was full */
    struct args_t args = *a;
    tls_args.delete(&id);
    /* the functions return int: take the low 32 bits, sign and all */
    int ret = (int)PT_REGS_RC(ctx);
    u64 n = 0;
    if (ex) {
        if (ret <= 0)
            return 0;   /* failed or would block: nothing transferred */
        size_t cnt = 0;
        if (bpf_probe_read_user(&cnt, sizeof(cnt), (void *)args.len_ptr))
            return 0;   /* count unreadable */
        n = cnt;
    } else {
        if (ret <= 0)
            return 0;   /* error or would-block: nothing transferred */
        n = ret;
    }
    u32 tgid, tid;
    if (!current_ids(&tgid, &tid))
        return 0;   /* a task outside the daemon's PID namespace */
    struct conn_key_t key = {.pid = tgid, .is_tls = 1, .id = args.conn_id};
    if (args.kind == K_TLS_WRITE) {
        if (!classify_write(&key, (const char *)args.buf, n, 0))
            return 0;   /* not an HTTP/1.x exchange we capture */
    } else if (!read_wanted(&key, n)) {
        return 0;   /* reads follow a captured request only */
    }
    mark_active(tgid);
    int more = start_copy(args.kind, args.conn_id, tgid, tid, args.buf, n, 0,
                          args.kind == K_TLS_READ ? &key : 0);
    if (!more)
        return 0;
    cont_kprobe_progs.call(ctx, more - 1);   /* more than STEPS records, or an HTTP/2 walk */
    cont_failed();   /* reached only if the tail call failed: the rest is not copied */
    return 0;
}

int probe_ssl_write_enter(struct pt_regs *ctx) { return ssl_enter(ctx, K_TLS_WRITE, 0); }
int probe_ssl_write_return(struct pt_regs *ctx) { return ssl_return(ctx, 0); }
int probe_ssl_write_ex_enter(struct pt_regs *ctx) { return ssl_enter(ctx, K_TLS_WRITE, 1); }
int probe_ssl_write_ex_return(struct pt_regs *ctx) { return ssl_return(ctx, 1); }
int probe_ssl_read_enter(struct pt_regs *ctx) { return ssl_enter(ctx, K_TLS_READ, 0); }
int probe_ssl_read_return(struct pt_regs *ctx) { return ssl_return(ctx, 0); }
int probe_ssl_read_ex_enter(struct pt_regs *ctx) { return ssl_enter(ctx, K_TLS_READ, 1); }
int probe_ssl_read_ex_return(struct pt_regs *ctx) { return ssl_return(ctx, 1); }

/* SSL_free (OpenSSL), or ssl_st::~ssl_st (BoringSSL without symbols: boringend.py),
 * both with the SSL* first: the connection is over; tell userspace if it was captured. */
int probe_ssl_free(struct pt_regs *ctx) {
    u32 tgid, tid;
    if (!current_ids(&tgid, &tid))
        return 0;   /* a task outside the daemon's PID namespace */
    struct conn_key_t key = {.pid = tgid, .is_tls = 1, .id = PT_REGS_PARM1(ctx)};
    if (!conns.lookup(&key))
        return 0;   /* never captured */
    conns.delete(&key);
    h2_walk.delete(&key);
    emit_event(K_CLOSE, key.id, tgid, tid, 0, 1);
    return 0;
}

/* The sentinel (per-process probe scope): attached host-wide, entry only, at
 * SSL_set_connect_state, which every OpenSSL client connection goes through
 * (SSL_connect calls it when the caller did not) and a server never calls.
 * Once per client connection, never per byte: a process not watched yet is
 * marked pending and named to userspace, which attaches its data probes. */
int probe_ssl_client_start(struct pt_regs *ctx) {
    u32 tgid, tid;
    if (!current_ids(&tgid, &tid))
        return 0;   /* a task outside the daemon's PID namespace */
    u8 one = 1;
    client_tgids.update(&tgid, &one);
    if (watch_state.lookup(&tgid))
        return 0;   /* watched already, or its probes are on their way */
    if (!selected(tgid))
        return 0;   /* -p / -c filters: not to be watched */
    u8 pending = W_PENDING;
    if (watch_state.insert(&tgid, &pending))
        return 0;   /* another thread of it got here first, or the map is full */
    emit_event(K_CLIENT, PT_REGS_PARM1(ctx), tgid, tid, 0, 1);
    return 0;
}

/* Its counterpart on SSL_set_accept_state, which every OpenSSL server connection goes
 * through (SSL_accept calls it when the caller did not): a process watched because of
 * what it runs (a Python web app is a runtime) that serves TLS and has never been a
 * client is named to userspace, which stops watching it. Once per accepted connection
 * of a watched process only. */
int probe_ssl_server_start(struct pt_regs *ctx) {
    u32 tgid, tid;
    if (!current_ids(&tgid, &tid))
        return 0;   /* a task outside the daemon's PID namespace */
    if (!watch_state.lookup(&tgid))
        return 0;   /* not watched: the common case for a server */
    if (client_tgids.lookup(&tgid))
        return 0;   /* a client too (a proxy, an agent serving MCP): stays watched */
    u32 k0 = 0, k1 = 1;
    u32 *pid_on = filter_cfg.lookup(&k0);
    u32 *comm_on = filter_cfg.lookup(&k1);
    if ((pid_on && *pid_on) || (comm_on && *comm_on))
        return 0;   /* a filter is set: what is watched is what it names */
    emit_event(K_SERVER, PT_REGS_PARM1(ctx), tgid, tid, 0, 1);
    return 0;
}
