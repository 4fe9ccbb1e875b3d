/* agtap: copying a buffer into records (the cursor of common.h, STEPS
 * records per program, continued by tail calls), the payload-less records,
 * and the decision, at each write, whether a connection is captured. */

/* One record of the next n bytes (1..SEG_SIZE) at the cursor, and advance it. */
static __always_inline void emit_range(struct record_t *r, struct cursor_t *c, u64 n, u64 cap) {
    r->offset = c->copied;
    r->total = c->total;
    r->flags = 0;
    if (c->total_left == n)
        r->flags = F_LAST;
    else if (c->copied + n >= cap)
        r->flags = F_LAST | F_CUT;
    u32 nn = copy_len(n, sizeof(r->data));
    if (bpf_probe_read_user(r->data, nn, (void *)c->buf)) {
        count(C_READ_FAIL, nn);
        r->len = 0;
        nn = 0;
    } else {
        r->len = nn;
    }
    if (records.ringbuf_output(r, HDR_SIZE + nn, 0)) {
        count(C_LOST, n);
        count(C_LOST_RECS, 1);
    } else {
        count(C_RECORDS, 1);
        count(C_BYTES, nn);
    }
    c->buf += n;
    c->seg_left -= n;
    c->total_left -= n;
    c->copied += n;
}

/* Emit up to STEPS records from the cursor. Returns 1 if bytes remain. */
static __always_inline int emit_steps(void) {
    u32 zero = 0;
    struct record_t *r = scratch.lookup(&zero);
    struct cursor_t *c = cursors.lookup(&zero);
    if (!r || !c)
        return 0;   /* cannot happen: a per-CPU array always has slot 0 */
    u64 cap = (u64)SEG_SIZE * MAX_SEGS;
#pragma unroll
    for (int i = 0; i < STEPS; i++) {
        if (c->total_left == 0)
            return 0;   /* all copied */
        if (c->copied >= cap)
            return 0;   /* the cap: the last record was flagged F_CUT, start_copy counted it */
        if (c->seg_left == 0) {
            /* next iovec */
            if (!c->iov || c->iov_idx >= c->iov_cnt || c->iov_idx >= 64)
                return 0;   /* no more buffers */
            struct iovec_user v = {};
            if (bpf_probe_read_user(&v, sizeof(v), (void *)(c->iov + (u64)c->iov_idx * sizeof(v)))) {
                count(C_READ_FAIL, c->total_left);
                return 0;   /* unreadable iovec array */
            }
            c->iov_idx++;
            c->buf = v.base;
            c->seg_left = v.len < c->total_left ? v.len : c->total_left;
            continue;
        }
        u64 n = c->seg_left < SEG_SIZE ? c->seg_left : SEG_SIZE;
        if (c->copied + n > cap)
            n = cap - c->copied;
        /* n is 1..SEG_SIZE: seg_left > 0, and copied < cap */
        emit_range(r, c, n, cap);
    }
    return c->total_left > 0 && c->copied < cap;
}

/* The same for a read whose HTTP/2 frames are walked (a plain buffer; bpf/h2.h):
 * runs only in the cont_h2_* programs, so the walk's cost to the verifier is
 * paid by them alone. Returns 1 if bytes remain. */
static __always_inline int emit_steps_h2(void) {
    u32 zero = 0;
    struct record_t *r = scratch.lookup(&zero);
    struct cursor_t *c = cursors.lookup(&zero);
    if (!r || !c)
        return 0;   /* cannot happen: a per-CPU array always has slot 0 */
    u64 cap = (u64)SEG_SIZE * MAX_SEGS;
#pragma unroll
    for (int i = 0; i < STEPS_H2; i++) {
        if (c->total_left == 0 || c->copied >= cap || c->seg_left == 0)
            break;   /* all copied, or the cap (start_copy counted it) */
        u64 n = c->seg_left < SEG_SIZE ? c->seg_left : SEG_SIZE;
        if (c->copied + n > cap)
            n = cap - c->copied;
        u64 left = c->total_left < cap - c->copied ? c->total_left : cap - c->copied;
        u64 spare = c->steps + 2 < H2_STEP_BUDGET ? H2_STEP_BUDGET - c->steps - 2 : 0;
        if (c->walk && c->skip_to <= c->copied && left > spare * SEG_SIZE)
            h2_lose(c);   /* walking on could run out of tail calls (many small frames): the rest is copied whole */
        c->steps++;
        if (c->walk) {
            /* stop before the header of a DATA frame to drop */
            u64 end = h2_walk_to(c, r, c->copied + n);
            if (!end)
                continue;   /* this step skipped dropped bytes, or sent a dropped frame's header */
            n = end - c->copied;
        }
        emit_range(r, c, n, cap);
    }
    if (c->total_left > 0 && c->copied < cap && c->seg_left > 0)
        return 1;
    h2_save(c);   /* the read is done: the walk keeps its place for the next one */
    return 0;
}

/* A tail call failed: the rest of the buffer is not copied (and an HTTP/2
 * walk no longer knows where the frames are). */
static __always_inline void cont_failed(void) {
    u32 zero = 0;
    struct cursor_t *c = cursors.lookup(&zero);
    if (c)
        h2_lose(c);
    count(C_CUT, 1);
}

/* Start copying `len` bytes: from buf, or (iov_cnt > 0) from the iovec array
 * at buf. A read passes its connection's key (h2key), so the HTTP/2 walk of
 * the connection, if any, is taken up. Returns what the caller tail-calls in
 * its continuation array: 0 nothing, 1 cont_* (more than STEPS records),
 * 2 cont_h2_* (a walked HTTP/2 read: all of it is copied there). */
static __always_inline int start_copy(u8 kind, u64 conn_id, u32 tgid, u32 tid,
                                      u64 buf, u64 len, u32 iov_cnt, struct conn_key_t *h2key) {
    u32 zero = 0;
    struct record_t *r = scratch.lookup(&zero);
    struct cursor_t *c = cursors.lookup(&zero);
    if (!r || !c)
        return 0;   /* cannot happen: a per-CPU array always has slot 0 */
    r->ts_ns = bpf_ktime_get_ns();
    r->conn_id = conn_id;
    r->pid = tgid;
    r->tid = tid;
    r->kind = kind;
    bpf_get_current_comm(&r->comm, sizeof(r->comm));
    if (len > (u64)SEG_SIZE * MAX_SEGS)
        count(C_CUT, 1);
    c->total = len;
    c->total_left = len;
    c->copied = 0;
    c->iov_idx = 0;
    if (iov_cnt) {
        c->iov = buf;
        c->iov_cnt = iov_cnt;
        c->seg_left = 0;
        c->buf = 0;
    } else {
        c->iov = 0;
        c->iov_cnt = 0;
        c->buf = buf;
        c->seg_left = len;
    }
    c->walk = 0;
    c->steps = 0;
    if (h2key && h2_load(c, h2key, buf, len, iov_cnt))
        return 2;
    return emit_steps();
}

/* Continuation programs: index 0 copies on (emit_steps), index 1 walks HTTP/2 (emit_steps_h2). */
int cont_kprobe(struct pt_regs *ctx) {
    if (emit_steps())
        cont_kprobe_progs.call(ctx, 0);
    else
        return 0;
    cont_failed();   /* reached only if the tail call failed */
    return 0;
}

int cont_tracepoint(void *ctx) {
    if (emit_steps())
        cont_tp_progs.call(ctx, 0);
    else
        return 0;
    cont_failed();   /* reached only if the tail call failed */
    return 0;
}

int cont_h2_kprobe(struct pt_regs *ctx) {
    if (emit_steps_h2())
        cont_kprobe_progs.call(ctx, 1);
    else
        return 0;
    cont_failed();   /* reached only if the tail call failed */
    return 0;
}

int cont_h2_tracepoint(void *ctx) {
    if (emit_steps_h2())
        cont_tp_progs.call(ctx, 1);
    else
        return 0;
    cont_failed();   /* reached only if the tail call failed */
    return 0;
}

/* A record with no payload: close, exec, exit, HTTP/2 start (`value` in
 * `total`, `offset` 1 for a TLS connection). */
static __always_inline void emit_event(u8 kind, u64 conn_id, u32 tgid, u32 tid, u64 value, u64 is_tls) {
    u32 zero = 0;
    struct record_t *r = scratch.lookup(&zero);
    if (!r)
        return;   /* cannot happen: a per-CPU array always has slot 0 */
    r->ts_ns = bpf_ktime_get_ns();
    r->conn_id = conn_id;
    r->total = value;
    r->offset = is_tls;
    r->pid = tgid;
    r->tid = tid;
    r->len = 0;
    r->kind = kind;
    r->flags = F_LAST;
    bpf_get_current_comm(&r->comm, sizeof(r->comm));
    if (records.ringbuf_output(r, HDR_SIZE, 0))
        count(C_LOST_RECS, 1);
    else
        count(C_RECORDS, 1);
}

/* A watched process's traffic that is not copied: counted for demotion (watch_cost). */
static __always_inline void note_ignored(u32 tgid, u64 requests, u64 bytes) {
    struct watch_cost_t *c = watch_cost.lookup(&tgid);
    if (!c)
        return;   /* not watched, or demotion off: the common case */
    if (requests)
        __sync_fetch_and_add(&c->requests, requests);
    if (bytes)
        __sync_fetch_and_add(&c->bytes, bytes);
}

/* Decide, from the first bytes of a write, whether it is captured.
 * Returns 1 to copy the buffer. Updates the connection's state. */
static __always_inline int classify_write(struct conn_key_t *key, const char *buf, u64 len,
                                          int allow_jsonrpc) {
    struct conn_val_t *cv = conns.lookup(key);
    if (cv && cv->state == S_NEVER)
        return 0;   /* userspace resolved it to a file or tty */
    if (cv && (cv->state == S_H2 || cv->state == S_H2_LATE))
        return 1;   /* HTTP/2: every write is frames, copied; nothing here starts an exchange */
    char head[64] = {};
    u32 n = len < 64 ? (u32)len : 64;
    if (n < 4)
        goto known;   /* too short to start anything: only continues a capture */
    if (bpf_probe_read_user(head, copy_len(n, sizeof(head)), buf))   /* n is 4..64 */
        goto known;   /* unreadable: treat as a continuation */
    if (h2_preface(head, n)) {
        /* An HTTP/2 connection: many exchanges (streams) share it, so it is
         * copied whole from here on, whatever it was before (an
         * `Upgrade: h2c` request, captured or ignored, precedes the preface). */
        struct conn_val_t v = {.state = S_H2};
        if (conns.update(key, &v)) {
            count(C_CONN_FULL, 1);
            return 0;
        }
        count(C_H2_CONNS, 1);
        /* Walk the server's frames from its next read; tell userspace the
         * generation of this connection. From the first byte, the first read
         * starts at a frame; after a 101 to h2c (cv: the Upgrade request), at
         * whatever follows what the client read of the 101 and the frames
         * behind it: checked at that read (h2_load). */
        u64 gen = h2_start(key, cv != 0);
        if (gen)
            emit_event(K_H2_START, key->id, key->pid, 0, gen, key->is_tls);
        return 1;
    }
    int http = http_request_start(head);
    if (http) {
        /* A new request: POST exchanges are captured (every provider API
         * call is a POST); any other method's exchange is not copied. */
        struct conn_val_t v = {.state = http == 2 ? S_CAPTURE : S_IGNORE};
        if (cv && cv->state == S_EGRESS_ONLY && http == 2)
            v.state = S_EGRESS_ONLY;
        if (conns.update(key, &v))
            count(C_CONN_FULL, 1);
        if (http != 2 && key->is_tls)
            note_ignored(key->pid, 1, len);   /* a TLS request agtap does not copy */
        return http == 2;
    }
    if (!cv && h2_late(head, n, buf, len)) {
        /* HTTP/2 frames on a connection never seen before: its preface went
         * out before agtap started. Captured from here; the server's frames
         * are walked from its next read (userspace decodes what it can: its
         * HPACK state is unknown, bpf/h2.h). */
        struct conn_val_t v = {.state = S_H2_LATE};
        if (conns.update(key, &v)) {
            count(C_CONN_FULL, 1);
            return 0;
        }
        count(C_H2_LATE, 1);
        u64 gen = h2_start(key, 1);
        if (gen)
            emit_event(K_H2_START, key->id, key->pid, 0, gen, key->is_tls);
        return 1;
    }
    if (!cv && allow_jsonrpc && jsonrpc_start(head, buf, len)) {
        struct conn_val_t v = {.state = S_CAPTURE};
        if (conns.update(key, &v)) {
            count(C_CONN_FULL, 1);
            return 0;
        }
        return 1;
    }
known:
    if (!cv)
        return 0;   /* not a connection we capture: the common case */
    if (cv->state == S_CAPTURE || cv->state == S_EGRESS_ONLY)
        return 1;
    count(C_SKIPPED, len);
    if (key->is_tls)
        note_ignored(key->pid, 0, len);
    return 0;
}

/* A process whose data probes are not attached yet writes to a socket: if the
 * bytes start a TLS application-data record (17 03 03), its first request may
 * have gone unseen. Counted once per process (C_LATE_ATTACH). A client's own
 * handshake flights start 16 (handshake) or 14 (change_cipher_spec, TLS 1.3's
 * compatibility mode, ahead of its encrypted Finished), so they do not count. */
static __always_inline void note_late_write(u32 tgid, const char *buf, u64 len) {
    u8 *w = watch_state.lookup(&tgid);
    if (!w || *w != W_PENDING)
        return;   /* not waiting for its probes: the common case */
    if (len < 5)
        return;   /* shorter than a TLS record header */
    u8 h[3] = {};
    if (bpf_probe_read_user(h, sizeof(h), buf))
        return;   /* unreadable */
    if (h[0] != 0x17 || h[1] != 0x03 || h[2] != 0x03)
        return;   /* not TLS application data */
    u8 late = W_LATE;
    watch_state.update(&tgid, &late);
    count(C_LATE_ATTACH, 1);
}

/* Should a read on this connection be copied? `len`: the bytes read (0 at a
 * syscall's entry, where it is not known yet): counted for demotion when not. */
static __always_inline int read_wanted(struct conn_key_t *key, u64 len) {
    struct conn_val_t *cv = conns.lookup(key);
    if (!cv)
        return 0;   /* not a connection we capture: the common case */
    if (cv->state == S_CAPTURE || cv->state == S_H2 || cv->state == S_H2_LATE)
        return 1;
    if (cv->state == S_IGNORE && len && key->is_tls)
        note_ignored(key->pid, 0, len);
    return 0;
}

/* Note a tgid that owns a captured connection (so its exit is reported). */
static __always_inline void mark_active(u32 tgid) {
    u8 one = 1;
    active_tgids.update(&tgid, &one);
}
