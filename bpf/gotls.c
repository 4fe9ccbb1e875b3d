/* agtap: TLS plaintext of Go programs, at crypto/tls.(*Conn).Write and Read.
 *
 * Go does TLS in its own crypto/tls, not OpenSSL. agtap/capture/golocate.py finds
 * (*Conn).Write, (*Conn).Read and (*Conn).Close in a Go executable (symbol table, or
 * .gopclntab when stripped) and every RET instruction of each; the tracer attaches:
 *   probe_gotls_write, probe_gotls_read           uprobes at Write's and Read's entry
 *   probe_gotls_write_ret, probe_gotls_read_ret   uprobes at EACH of their RETs (never a
 *        uretprobe: it replaces the return address on the goroutine's stack, and Go
 *        moves stacks when they grow or shrink: the program would crash)
 *   probe_gotls_close                             uprobe at Close's entry
 *
 * Go's register ABI (Go >= 1.17, amd64; older Go is refused by the locator):
 *   at entry   RAX = receiver (*tls.Conn), RBX = b's pointer, RCX = len(b)
 *   at a RET   RAX = n, RBX/RCX = err (an interface: itab, data)
 *   always     R14 = the current goroutine's g (runtime.g), RSP = the goroutine's stack
 * A goroutine may move between threads while Read waits for data (it blocks in the
 * netpoller, and any thread may resume it), so entry and return are paired by goroutine:
 * (tgid, g), not by thread.
 *
 * Connection identity is (tgid, *tls.Conn): conn_key_t.is_tls = KEY_GOTLS.
 * Both directions are copied at a RET, `n` bytes from the buffer pointer saved at
 * entry, as OpenSSL's are (ssl.c): n is what was really written or read. Not at
 * Write's entry: when a call finds its goroutine's stack too small, the function's
 * prologue calls runtime.morestack, which copies the stack and restarts the function
 * from its first instruction; an entry probe fires twice for that one call (the
 * second time with the moved arguments). Saving the arguments twice is harmless;
 * copying them twice would duplicate a request.
 * If the buffer is on the goroutine's own stack and the runtime moved that stack
 * during the call (copystack: the stack grew, or the GC shrank it while Read waited),
 * the buffer moved with it by the same distance as the frame: RSP at the RET minus
 * RSP at entry. The buffer is on the stack when it lies between RSP and g.stack.hi
 * at entry (runtime.g begins with `stack struct{lo, hi uintptr}`, unchanged since
 * Go 1.4).
 */

struct go_key_t {
    u64 g;            /* runtime.g of the goroutine (R14) */
    u32 tgid;
    u32 kind;         /* K_GO_WRITE or K_GO_READ */
};

struct go_call_t {
    u64 conn;         /* *tls.Conn */
    u64 buf;          /* b's pointer at entry */
    u64 len;          /* len(b) */
    u64 sp;           /* RSP at entry (points at the return address) */
    u64 stack_hi;     /* g.stack.hi at entry */
};

/* Calls in progress, by goroutine. Written by the entry probes, read and deleted by
 * the RET probes. LRU: a goroutine that never returns (it panicked, the process
 * exited) leaves an entry that later ones push out. */
BPF_TABLE("lru_hash", struct go_key_t, struct go_call_t, go_calls, 16384);

#define G_STACK_HI 8  /* offsetof(runtime.g, stack.hi) */

static __always_inline int gotls_enter(struct pt_regs *ctx, u32 kind) {
    u32 tgid, tid;
    if (!current_ids(&tgid, &tid))
        return 0;   /* a task outside the daemon's PID namespace */
    if (!selected(tgid))
        return 0;   /* -p / -c filters */
    /* Whether the connection is captured is decided at return, not here: net/http's
     * reader goroutine is already waiting in Read when the request is written. */
    struct go_call_t c = {.conn = ctx->ax, .buf = ctx->bx, .len = ctx->cx, .sp = ctx->sp};
    if ((s64)c.len <= 0)
        return 0;   /* an empty buffer: nothing to copy */
    struct go_key_t k = {.g = ctx->r14, .tgid = tgid, .kind = kind};
    if (!k.g)
        return 0;   /* no goroutine in R14: not Go's register ABI */
    if (bpf_probe_read_user(&c.stack_hi, sizeof(c.stack_hi), (void *)(k.g + G_STACK_HI)))
        c.stack_hi = 0;   /* unreadable g: the buffer is taken as not on the stack */
    go_calls.update(&k, &c);
    return 0;
}

static __always_inline int gotls_return(struct pt_regs *ctx, u32 kind) {
    u32 tgid, tid;
    if (!current_ids(&tgid, &tid))
        return 0;   /* a task outside the daemon's PID namespace */
    struct go_key_t k = {.g = ctx->r14, .tgid = tgid, .kind = kind};
    struct go_call_t *cp = go_calls.lookup(&k);
    if (!cp)
        return 0;   /* entry filtered out (or not seen: probes attached mid-call) */
    struct go_call_t c = *cp;
    go_calls.delete(&k);
    s64 n = ctx->ax;
    if (n <= 0)
        return 0;   /* nothing transferred (an error, EOF) */
    if ((u64)n > c.len)
        return 0;   /* more than the buffer holds: not the function's result (cannot happen) */
    u64 buf = c.buf;
    if (buf >= c.sp && buf < c.stack_hi)
        buf += ctx->sp - c.sp;   /* a buffer on a stack the runtime moved meanwhile */
    struct conn_key_t key = {.pid = tgid, .is_tls = KEY_GOTLS, .id = c.conn};
    if (kind == K_GO_WRITE) {
        if (!classify_write(&key, (const char *)buf, n, 0))
            return 0;   /* not an HTTP/1.x exchange we capture */
    } else if (!read_wanted(&key)) {
        return 0;   /* reads follow a captured request only */
    }
    mark_active(tgid);
    if (start_copy(kind, c.conn, tgid, tid, buf, n, 0))
        cont_kprobe_progs.call(ctx, 0);   /* more than STEPS records: continue */
    else
        return 0;
    count(C_CUT, 1);   /* reached only if the tail call failed: the rest is not copied */
    return 0;
}

int probe_gotls_write(struct pt_regs *ctx) { return gotls_enter(ctx, K_GO_WRITE); }
int probe_gotls_write_ret(struct pt_regs *ctx) { return gotls_return(ctx, K_GO_WRITE); }
int probe_gotls_read(struct pt_regs *ctx) { return gotls_enter(ctx, K_GO_READ); }
int probe_gotls_read_ret(struct pt_regs *ctx) { return gotls_return(ctx, K_GO_READ); }

/* (*Conn).Close: the connection is over; tell userspace if it was captured. A second
 * entry after morestack finds the key gone. */
int probe_gotls_close(struct pt_regs *ctx) {
    u32 tgid, tid;
    if (!current_ids(&tgid, &tid))
        return 0;   /* a task outside the daemon's PID namespace */
    struct conn_key_t key = {.pid = tgid, .is_tls = KEY_GOTLS, .id = ctx->ax};
    if (!conns.lookup(&key))
        return 0;   /* never captured */
    conns.delete(&key);
    emit_event(K_GO_CLOSE, key.id, tgid, tid);
    return 0;
}
