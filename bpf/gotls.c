/* agtap: TLS plaintext of Go programs, at crypto/tls.(*Conn).Write and Read.
 *
 * Go does TLS in its own crypto/tls, not OpenSSL. agtap/capture/golocate.py finds
 * (*Conn).Write, Read and Close in a Go executable (symbol table, or .gopclntab when
 * stripped) and every RET of each; goprobes.py places the probes; the tracer attaches:
 *   probe_gotls_write     uprobe at Write's stack check: copies the buffer
 *   probe_gotls_read      uprobe at Read's stack check: saves the arguments
 *   probe_gotls_read_ret  uprobe at EACH RET of Read: copies what was read (never a
 *                         uretprobe: it replaces the return address on the goroutine's
 *                         stack, and Go moves stacks when they grow or shrink: the
 *                         program would crash)
 *   probe_gotls_close     uprobe at Close's stack check
 * "At the stack check": on the `jbe` of `cmp rsp|r12, [r14+0x10]; jbe morestack`, the
 * prologue of each. When a goroutine's stack is too small for the function, the jump
 * goes to runtime.morestack, which copies the stack and restarts the function from its
 * first instruction, so the probe is hit twice for one call: the first time, with the
 * jump about to be taken (CF or ZF set by the cmp), the programs return at once
 * (gotls_call). Every argument register and RSP are as at entry there.
 *
 * Go's register ABI (Go >= 1.17, amd64; older Go is refused by the locator):
 *   at entry   RAX = receiver (*tls.Conn), RBX = b's pointer, RCX = len(b)
 *   at a RET   RAX = n, RBX/RCX = err (an interface: itab, data)
 *   always     R14 = the current goroutine's g (runtime.g), RSP = the goroutine's stack
 * A goroutine may move between threads while Read waits for data (it blocks in the
 * netpoller, and any thread may resume it), so Read's entry and return are paired by
 * goroutine: (tgid, g), not by thread.
 *
 * Connection identity is (tgid, *tls.Conn): conn_key_t.is_tls = KEY_GOTLS.
 * Write is copied at entry, before a byte is sent: the caller has filled the buffer,
 * and the answer (read by another goroutine, maybe on another CPU) can then never
 * reach the ring buffer before its request. A Write that fails was still attempted.
 * Read is copied at return, `n` bytes from the buffer pointer saved at entry. If the
 * buffer is on the goroutine's own stack and the runtime moved that stack during Read
 * (copystack: the stack grew, or the GC shrank it while Read waited), the buffer moved
 * with it by the same distance as the frame: RSP at the RET minus RSP at entry. The
 * buffer is on the stack when it lies between RSP and g.stack.hi at entry (runtime.g
 * begins with `stack struct{lo, hi uintptr}`, unchanged since Go 1.4). Write's buffer
 * is never on a stack (the compiler moves it to the heap: Write lets it escape).
 */

struct go_key_t {
    u64 g;            /* runtime.g of the goroutine (R14) */
    u32 tgid;
    u32 pad;
};

struct go_read_t {
    u64 conn;         /* *tls.Conn */
    u64 buf;          /* b's pointer at entry */
    u64 len;          /* len(b) */
    u64 sp;           /* RSP at entry (points at the return address) */
    u64 stack_hi;     /* g.stack.hi at entry */
};

/* Reads in progress, by goroutine. Written by probe_gotls_read, read and deleted by
 * probe_gotls_read_ret. LRU: a goroutine that never returns from Read (it panicked,
 * the process exited) leaves an entry that later ones push out. */
BPF_TABLE("lru_hash", struct go_key_t, struct go_read_t, go_reads, 16384);

#define G_STACK_HI 8  /* offsetof(runtime.g, stack.hi) */
#define FLAGS_CF 0x01
#define FLAGS_ZF 0x40

/* The start of every program at a stack check: 1 if the call is to be looked at, with
 * the task's ids. The jump about to be taken (CF or ZF set by the cmp) means morestack,
 * then the function again from its entry, probe included. */
static __always_inline int gotls_call(struct pt_regs *ctx, u32 *tgid, u32 *tid) {
    if (ctx->flags & (FLAGS_CF | FLAGS_ZF))
        return 0;   /* the stack grows first: the call is seen when it starts again */
    if (!current_ids(tgid, tid))
        return 0;   /* a task outside the daemon's PID namespace */
    return 1;
}

/* Copy n bytes of a captured connection's buffer (a read passes its key: HTTP/2 walk, bpf/h2.h). */
static __always_inline int gotls_copy(struct pt_regs *ctx, u8 kind, u64 conn, u32 tgid, u32 tid,
                                      u64 buf, u64 n, struct conn_key_t *h2key) {
    mark_active(tgid);
    int more = start_copy(kind, conn, tgid, tid, buf, n, 0, h2key);
    if (!more)
        return 0;
    cont_kprobe_progs.call(ctx, more - 1);   /* more than STEPS records, or an HTTP/2 walk */
    cont_failed();   /* reached only if the tail call failed: the rest is not copied */
    return 0;
}

int probe_gotls_write(struct pt_regs *ctx) {
    u32 tgid, tid;
    if (!gotls_call(ctx, &tgid, &tid))
        return 0;   /* morestack first, or a task outside the daemon's PID namespace */
    if (!selected(tgid))
        return 0;   /* -p / -c filters */
    u64 conn = ctx->ax, buf = ctx->bx, len = ctx->cx;
    if ((s64)len <= 0)
        return 0;   /* an empty write: nothing to copy */
    struct conn_key_t key = {.pid = tgid, .is_tls = KEY_GOTLS, .id = conn};
    if (!classify_write(&key, (const char *)buf, len, 0))
        return 0;   /* not an exchange we capture */
    return gotls_copy(ctx, K_GO_WRITE, conn, tgid, tid, buf, len, 0);
}

int probe_gotls_read(struct pt_regs *ctx) {
    u32 tgid, tid;
    if (!gotls_call(ctx, &tgid, &tid))
        return 0;   /* morestack first, or a task outside the daemon's PID namespace */
    if (!selected(tgid))
        return 0;   /* -p / -c filters */
    /* Whether the connection is captured is decided at return, not here: net/http's
     * reader goroutine is already waiting in Read when the request is written. */
    struct go_read_t r = {.conn = ctx->ax, .buf = ctx->bx, .len = ctx->cx, .sp = ctx->sp};
    if ((s64)r.len <= 0)
        return 0;   /* an empty buffer: nothing to copy */
    struct go_key_t k = {.g = ctx->r14, .tgid = tgid};
    if (!k.g)
        return 0;   /* no goroutine in R14: not Go's register ABI */
    if (bpf_probe_read_user(&r.stack_hi, sizeof(r.stack_hi), (void *)(k.g + G_STACK_HI)))
        r.stack_hi = 0;   /* unreadable g: the buffer is taken as not on the stack */
    go_reads.update(&k, &r);
    return 0;
}

int probe_gotls_read_ret(struct pt_regs *ctx) {
    u32 tgid, tid;
    if (!current_ids(&tgid, &tid))
        return 0;   /* a task outside the daemon's PID namespace */
    struct go_key_t k = {.g = ctx->r14, .tgid = tgid};
    struct go_read_t *rp = go_reads.lookup(&k);
    if (!rp)
        return 0;   /* entry filtered out (or not seen: probes attached mid-call) */
    struct go_read_t r = *rp;
    go_reads.delete(&k);
    s64 n = ctx->ax;
    if (n <= 0)
        return 0;   /* nothing read (an error, EOF) */
    if ((u64)n > r.len)
        return 0;   /* more than the buffer holds: not Read's result (cannot happen) */
    struct conn_key_t key = {.pid = tgid, .is_tls = KEY_GOTLS, .id = r.conn};
    if (!read_wanted(&key, n))
        return 0;   /* reads follow a captured request only */
    u64 buf = r.buf;
    if (buf >= r.sp && buf < r.stack_hi)
        buf += ctx->sp - r.sp;   /* a buffer on a stack the runtime moved meanwhile */
    return gotls_copy(ctx, K_GO_READ, r.conn, tgid, tid, buf, n, &key);
}

/* (*Conn).Close: the connection is over; tell userspace if it was captured. */
int probe_gotls_close(struct pt_regs *ctx) {
    u32 tgid, tid;
    if (!gotls_call(ctx, &tgid, &tid))
        return 0;   /* morestack first, or a task outside the daemon's PID namespace */
    struct conn_key_t key = {.pid = tgid, .is_tls = KEY_GOTLS, .id = ctx->ax};
    if (!conns.lookup(&key))
        return 0;   /* never captured */
    conns.delete(&key);
    h2_walk.delete(&key);
    emit_event(K_GO_CLOSE, key.id, tgid, tid, 0, KEY_GOTLS);
    return 0;
}
