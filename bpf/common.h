/* agtap: what every hook family shares — the record sent to userspace, the
 * maps that say which connections are captured, the filters, the counters.
 *
 * Loaded by agtap/capture/loader.py, which concatenates this file with
 * h2.h (HTTP/2), copy.h (copying buffers into records, classifying writes),
 * ssl.c, syscalls.c and sched.c and defines these macros first:
 *   SEG_SIZE     bytes of payload per ring-buffer record (power of two)
 *   MAX_SEGS     records one SSL/syscall buffer may produce (cap = SEG_SIZE*MAX_SEGS)
 *   RINGBUF_PAGES ring buffer size in pages
 *   USE_NS_PIDS  1 when the daemon runs in a non-initial PID namespace
 *   PIDNS_DEV, PIDNS_INO  that namespace, for bpf_get_ns_current_pid_tgid
 * and the numbers userspace reads back, defined once in
 * agtap/capture/records.py (BPF_CONSTANTS, each with its meaning):
 *   K_*          record kinds (K_TLS_WRITE .. K_EXIT)
 *   F_CUT, F_LAST  record flags
 *   S_*          connection states in the conns map (S_CAPTURE .. S_NEVER)
 *   C_*, N_COUNTERS  slots of the counters array
 * struct record_t is read by records.RECORD_HEADER; Tracer.start checks the
 * two agree (records.layout_problems) before it captures anything.
 *
 * Nothing here reads a kernel struct field: only helpers, syscall arguments
 * and user memory, so any linux-headers tree compiles it (see docs/DESIGN.md,
 * "The kernel facts the BPF side rests on").
 */
#include <uapi/linux/ptrace.h>
/* no kernel headers beyond ptrace.h: nothing here reads kernel structs */

struct record_t {
    u64 ts_ns;        /* bpf_ktime_get_ns(): CLOCK_MONOTONIC */
    u64 conn_id;      /* SSL* for TLS, fd for syscalls */
    u64 total;        /* bytes in the whole buffer (before the cap) */
    u64 offset;       /* where this record's bytes start in the buffer */
    u32 pid;          /* tgid, in the daemon's PID namespace */
    u32 tid;
    u32 len;          /* payload bytes in data[] */
    u8  kind;
    u8  flags;
    u8  pad[2];
    char comm[16];    /* thread name */
    char data[SEG_SIZE];
};
#define HDR_SIZE (sizeof(struct record_t) - SEG_SIZE)
_Static_assert((SEG_SIZE & (SEG_SIZE - 1)) == 0, "SEG_SIZE must be a power of two (copy_len)");

/* The size argument of every variable-length copy, bounded by construction.
 * `len` is 1..size by the caller's logic, but the verifier checks the copy
 * against the bounds it can see in the register passed: a bound the compiler
 * can prove redundant it drops (clang 19 removed a `> SEG_SIZE` check and kept
 * only a wider mask; the verifier refused the program on Debian 13). So `len`
 * is hidden from the optimiser (an empty asm that may change it) and rebuilt
 * as ((len - 1) & (size - 1)) + 1: 1..size whatever the compiler knew, with
 * the mask in the register that reaches the helper. `size` is the size of the
 * destination, a power of two. Call it at the copy, not before. */
static __always_inline u32 copy_len(u64 len, u32 size) {
    asm volatile("" : "+r"(len));
    return (((u32)len - 1) & (size - 1)) + 1;
}

struct conn_key_t {
    u32 pid;
    u32 is_tls;
    u64 id;           /* SSL* or fd */
};

struct comm_key_t {
    char name[16];
};

struct conn_val_t {
    u32 state;
    u32 pad;
};

/* Buffer arguments stashed at entry, used at return when the byte count is known. */
struct args_t {
    u64 conn_id;
    u64 buf;          /* user buffer, or iovec array for the vector forms */
    u64 len_ptr;      /* SSL_*_ex: size_t * that receives the count */
    u32 iovcnt;       /* 0 = plain buffer; >0 = iovec array of that many entries */
    u32 kind;
};

/* The records. Written by every hook, read by the loader's poll thread. */
BPF_RINGBUF_OUTPUT(records, RINGBUF_PAGES);

/* Scratch space for one record (too big for the stack). Written and read by
 * the hook that fills it, on this CPU only. */
BPF_PERCPU_ARRAY(scratch, struct record_t, 1);

/* Connection states. Written by the hooks (new request line, HTTP/2 preface,
 * close) and by userspace (ignore_conn, S_EGRESS_ONLY/S_NEVER after resolving the fd);
 * read by every data hook. */
BPF_HASH(conns, struct conn_key_t, struct conn_val_t, 65536);

/* Arguments between entry and return probes, by pid_tgid. Written at entry,
 * read and deleted at return, by the same thread. */
BPF_HASH(tls_args, u64, struct args_t, 16384);
BPF_HASH(sys_args, u64, struct args_t, 16384);

/* Filters. Written by userspace (-p/-c, D-Bus SetFilter) and by the exec hook
 * (tgids whose process name matches a comm filter); read by every hook. */
BPF_ARRAY(filter_cfg, u32, 3);                 /* [0]: pid filter on, [1]: comm filter on,
                                                  [2]: the filters are written (until then no hook selects anything) */
BPF_HASH(filter_pids, u32, u8, 4096);          /* tgids to capture */
BPF_HASH(filter_comms, struct comm_key_t, u8, 256);
BPF_HASH(comm_tgids, u32, u8, 65536);          /* tgids whose main thread's comm matched */

/* Tgids that own a captured connection, so exit is reported only for them.
 * Written by the data hooks, read and deleted by the exit hook. */
BPF_HASH(active_tgids, u32, u8, 65536);

/* Per-process probe scope (agtap/capture/scope.py): tgid -> W_PENDING | W_LIVE | W_LATE.
 * Written by userspace (a process it decided to watch: pending, then live once
 * its data probes are attached; deleted when it stops watching it), by the
 * sentinel (a TLS client start: pending) and by the write hooks (W_LATE); read
 * by the sentinel, the write hooks and the exit hook. Empty with --probe-scope=host. */
BPF_HASH(watch_state, u32, u8, 65536);

/* What a watched process did that no provider wants (demotion, --demote-after-*,
 * agtap/capture/demotion.py): HTTP requests the kernel itself left uncopied (not
 * POST) and payload bytes of ignored TLS connections. An entry is created by
 * userspace for each process it watches while demotion is on and deleted when it
 * stops watching it; the data hooks only add to entries that exist (so nothing
 * is counted for anyone else); read by userspace about once a second. */
struct watch_cost_t {
    u64 requests;
    u64 bytes;
};
BPF_HASH(watch_cost, u32, struct watch_cost_t, 65536);

/* Tgids that started a TLS client connection. Written by the client sentinel,
 * read by the server sentinel, deleted by the exit hook. */
BPF_HASH(client_tgids, u32, u8, 65536);

/* Counters: written by every hook, read by userspace. */
BPF_PERCPU_ARRAY(counters, u64, N_COUNTERS);

static __always_inline void count(u32 idx, u64 n) {
    u64 *v = counters.lookup(&idx);
    if (v)
        *v += n;
}

/* tgid and tid as the daemon sees them. Returns 0 when the task is outside
 * the daemon's PID namespace (it cannot be named there). */
static __always_inline int current_ids(u32 *tgid, u32 *tid) {
#if USE_NS_PIDS
    struct bpf_pidns_info ns = {};
    if (bpf_get_ns_current_pid_tgid(PIDNS_DEV, PIDNS_INO, &ns, sizeof(ns)))
        return 0;
    *tgid = ns.tgid;
    *tid = ns.pid;
#else
    u64 id = bpf_get_current_pid_tgid();
    *tgid = id >> 32;
    *tid = (u32)id;
#endif
    return 1;
}

/* Is this process selected by the -p / -c filters? Both off: everything is.
 * Both on: either one selects (a union, as with repeated -p). */
static __always_inline int selected(u32 tgid) {
    u32 k0 = 0, k1 = 1, k2 = 2;
    u32 *written = filter_cfg.lookup(&k2);
    if (!written || !*written)
        return 0;   /* loading: the tracepoints run from the moment BCC attaches them,
                     * before userspace has written -p/-c (a -p daemon would copy everyone) */
    u32 *pid_on = filter_cfg.lookup(&k0);
    u32 *comm_on = filter_cfg.lookup(&k1);
    int pon = pid_on && *pid_on;
    int con = comm_on && *comm_on;
    if (!pon && !con)
        return 1;
    if (pon && filter_pids.lookup(&tgid))
        return 1;
    if (con) {
        struct comm_key_t c = {};
        bpf_get_current_comm(&c.name, sizeof(c.name));
        if (filter_comms.lookup(&c))
            return 1;
        /* the thread may be renamed (HTTP client threads often are):
         * the process name matched at exec or when the filter was set */
        if (comm_tgids.lookup(&tgid))
            return 1;
    }
    return 0;
}

#define UP(c) ((c) >= 'A' && (c) <= 'Z')

/* Does a buffer start like an HTTP/1.x request line: an upper-case method,
 * a space, then '/', '*' or an absolute URI? Returns 2 for POST (the only
 * method provider APIs use), 1 for any other method, 0 for neither. */
static __always_inline int http_request_start(const char *h) {
    /* bytes are taken out of two words by shifts, so the compiler cannot turn
     * the checks into a computed stack index (the verifier refuses those) */
    u64 w0, w1;
    __builtin_memcpy(&w0, h, 8);
    __builtin_memcpy(&w1, h + 8, 8);
#define B(k) ((char)(((k) < 8 ? (w0 >> (8 * (k))) : (w1 >> (8 * ((k) - 8)))) & 0xff))
    if (B(0) == 'P' && B(1) == 'O' && B(2) == 'S' && B(3) == 'T' && B(4) == ' ' &&
        (B(5) == '/' || B(5) == 'h'))
        return 2;
    /* method: 3 to 7 upper-case letters, then a space */
    char n;
    if (!UP(B(0)) || !UP(B(1)) || !UP(B(2)))
        return 0;
    if (B(3) == ' ')
        n = B(4);
    else if (!UP(B(3)))
        return 0;
    else if (B(4) == ' ')
        n = B(5);
    else if (!UP(B(4)))
        return 0;
    else if (B(5) == ' ')
        n = B(6);
    else if (!UP(B(5)))
        return 0;
    else if (B(6) == ' ')
        n = B(7);
    else if (!UP(B(6)))
        return 0;
    else if (B(7) == ' ')
        n = B(8);
    else
        return 0;
#undef B
    /* after the space: origin-form, asterisk-form or absolute-form */
    return (n == '/' || n == '*' || n == 'h') ? 1 : 0;
}

/* Is `"jsonrpc"` among the first n (at most 64) bytes of h, starting at or after `from`? */
static __always_inline int has_jsonrpc_member(const char *h, u32 n, int from) {
#pragma unroll
    for (int i = 0; i <= 64 - 9; i++) {
        if (i < from)
            continue;
        if (i + 9 > n)
            return 0;
        if (h[i] == '"' && h[i + 1] == 'j' && h[i + 2] == 's' && h[i + 3] == 'o' &&
            h[i + 4] == 'n' && h[i + 5] == 'r' && h[i + 6] == 'p' && h[i + 7] == 'c' &&
            h[i + 8] == '"')
            return 1;
    }
    return 0;
}

/* Does a buffer look like a JSON-RPC message (MCP stdio, newline-delimited):
 * '{' (after up to 3 blanks), and "jsonrpc" within its first 64 bytes or its
 * last 64? Members come in any order: Python's SDK writes "jsonrpc" first, the
 * Node SDK after "method" and "params" ({"method":"initialize","params":{...},
 * "jsonrpc":"2.0","id":0}), so a first message with large params has it only
 * near its end. `head` holds the first min(len, 64) bytes of buf. */
static __always_inline int jsonrpc_start(const char *head, const char *buf, u64 len) {
    int open = 0;
#pragma unroll
    for (int i = 0; i < 4; i++) {
        if (head[i] == '{') { open = 1; break; }
        if (head[i] != ' ' && head[i] != '\n' && head[i] != '\r' && head[i] != '\t')
            return 0;
    }
    if (!open)
        return 0;
    u32 n = len < 64 ? (u32)len : 64;
    if (has_jsonrpc_member(head, n, 1))
        return 1;
    if (len <= 64)
        return 0;   /* the whole buffer was in head */
    char tail[64] = {};
    if (bpf_probe_read_user(tail, sizeof(tail), buf + len - sizeof(tail)))
        return 0;   /* unreadable tail */
    return has_jsonrpc_member(tail, sizeof(tail), 0);
}

/* Copying a buffer: a cursor, advanced STEPS records at a time. A buffer
 * longer than STEPS records continues in a tail call to a program that runs
 * emit_steps() again (cont_kprobe / cont_tracepoint), so the verifier's work
 * does not grow with the cap: 34 programs x STEPS records x SEG_SIZE bytes
 * bound what one call can copy, and MAX_SEGS (from the cap) is below that. */
#define STEPS 8
#define STEPS_H2 8   /* an HTTP/2 read: a step per record, dropped frame or skipped run (bpf/h2.h) */
/* the steps of one read: STEPS_H2 in each of the 33 tail calls (MAX_TAIL_CALL_CNT), one spare */
#define H2_STEP_BUDGET (32 * STEPS_H2)

struct cursor_t {
    u64 buf;          /* where the next bytes come from */
    u64 seg_left;     /* bytes left in the current buffer (or iovec) */
    u64 total_left;   /* bytes left in the whole transfer */
    u64 copied;       /* bytes copied so far (the next record's offset) */
    u64 total;        /* bytes in the whole transfer */
    u64 iov;          /* iovec array, 0 for a plain buffer */
    u32 iov_idx;
    u32 iov_cnt;
    /* HTTP/2 ingress (bpf/h2.h): where the frames are in this buffer */
    u64 walk;         /* 1: the frames are walked (DATA of ignored streams is not copied) */
    u64 next_hdr;     /* offset of the next frame header not yet looked at (may be past the end) */
    u64 skip_to;      /* bytes before this offset are the payload of a dropped DATA frame */
    u64 gen;          /* the connection's generation: the h2_drop keys of its streams */
    u64 steps;        /* steps this read has taken (H2_STEP_BUDGET) */
    struct conn_key_t wkey;   /* its h2_walk entry, where the position is saved at the end */
};

/* The copy in progress on this CPU. Written by the hook that starts a copy and
 * by the continuation programs; read by the continuation programs. */
BPF_PERCPU_ARRAY(cursors, struct cursor_t, 1);

/* Continuation programs, one per program type (a tail call must stay within
 * its type). Filled by userspace at load; read by bpf_tail_call. */
BPF_PROG_ARRAY(cont_kprobe_progs, 2);   /* [0] cont_kprobe, [1] cont_h2_kprobe */
BPF_PROG_ARRAY(cont_tp_progs, 2);       /* [0] cont_tracepoint, [1] cont_h2_tracepoint */

struct iovec_user {
    u64 base;
    u64 len;
};
