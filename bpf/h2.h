/* agtap: HTTP/2 in the kernel — recognising a connection by its preface, and
 * not copying the DATA of streams userspace has no interest in.
 *
 * An HTTP/2 connection carries many exchanges (streams) at once, so "ignore
 * the rest of this exchange" cannot stop copying the connection as it does
 * for HTTP/1.1. Instead the read hooks walk the frames of what the server
 * sends (RFC 9113, 4.1: a 9-byte header, then `length` bytes): a DATA frame of
 * a stream userspace put in h2_drop (Tracer.ignore_stream: its request matched
 * no provider) reaches userspace as its header alone, rewritten to length 0
 * (and not PADDED), and its payload is not copied. Every other frame is copied
 * unchanged, so the stream of frames userspace decodes stays well formed and
 * its HPACK state exact: HEADERS are never dropped, and an LLM call's stream
 * is never in h2_drop. Only what the server sends is walked (downloads are
 * what costs); the client's writes are copied whole.
 *
 * When the walk can no longer be trusted (a read through iovecs, a header
 * that breaks the rules, a buffer cut at the cap, a 9-byte header cut across
 * reads with fewer than 3 bytes after the cut) the connection's walk is given
 * up (C_H2_LOST): from then on it is copied whole, which costs but loses nothing.
 * After `Upgrade: h2c` the server's frames follow a 101 at an offset the kernel
 * does not know: the walk starts at the read after the client's preface, and
 * only if that read starts with a plausible frame header (h2_load, `unsure`).
 *
 * Joining late: a connection whose preface was written before agtap started
 * has no state here; when a write on it opens an HTTP/2 request (h2_late),
 * it is captured as S_H2_LATE and walked from the server's next read on
 * (at a frame boundary unless a read was in flight when agtap started: that
 * read's first bytes are checked as after an Upgrade, and userspace too sees
 * no frame there and stops decoding that direction).
 */

/* Is this the HTTP/2 client connection preface, "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"
 * (RFC 9113, 3.4)? `h` holds the first n bytes of the write. Compared as three
 * little-endian words, like http_request_start reads its bytes. A client
 * sends it first on every HTTP/2 connection: over TLS after ALPN "h2", in
 * cleartext with prior knowledge (h2c), and after a 101 answering
 * `Upgrade: h2c`. The 24 bytes in pieces of several writes are not
 * recognised (no client seen does that). */
#define H2_PREFACE_LEN 24
#define H2_HDR 9            /* an HTTP/2 frame header's size */
static __always_inline int h2_preface(const char *h, u32 n) {
    if (n < H2_PREFACE_LEN)
        return 0;
    u64 w[3];
    __builtin_memcpy(w, h, sizeof(w));
    return w[0] == 0x5448202a20495250ULL &&   /* "PRI * HT" */
           w[1] == 0x0a0d302e322f5054ULL &&   /* "TP/2.0\r\n" */
           w[2] == 0x0a0d0a0d4d530a0dULL;     /* "\r\nSM\r\n\r\n" */
}

/* Is this 9-byte header a frame of RFC 9113 (4.1, 6) on its kind of stream:
 * a known type, the reserved bit clear, a length within 1 MiB
 * (agtap/wire/http2.looks_like_frames, which userspace applies to the same
 * bytes, uses the same bound), stream 0 exactly for the connection's frames?
 * Returns the frame's type + 1, or 0. Two callers:
 * - `client` (h2_late: a write joined late, which must open a request): also
 *   the lengths and flags RFC 9113 gives the type, and never PUSH_PROMISE
 *   (only a server sends one).
 * - not `client` (h2_load: the first read of a server-side walk that may start
 *   inside a frame): the kind of stream only; PUSH_PROMISE is admitted. */
#define H2_LATE_MAX_LEN (1 << 20)
static __always_inline u32 h2_frame(const u8 *h, int client) {
    u64 len = ((u64)h[0] << 16) | ((u64)h[1] << 8) | h[2];
    u32 type = h[3], flags = h[4];
    u32 sid = ((u32)h[5] << 24) | ((u32)h[6] << 16) | ((u32)h[7] << 8) | h[8];
    if (len > H2_LATE_MAX_LEN || (sid & 0x80000000) || type > 9)
        return 0;   /* longer than a frame looked for, reserved bit set, or a type RFC 9113 does not define */
    if (type == 4 || type == 6 || type == 7) {
        if (sid)
            return 0;   /* SETTINGS, PING, GOAWAY: the connection's, never a stream's */
    } else if (type != 8 && !sid) {
        return 0;   /* DATA, HEADERS, PRIORITY, RST_STREAM, PUSH_PROMISE, CONTINUATION: a stream's (WINDOW_UPDATE: either) */
    }
    if (!client)
        return type + 1;   /* a server's frame: any of these, PUSH_PROMISE too (its length and flags are not looked at) */
    int ok = 0;
    switch (type) {
    case 0:   /* DATA */
        ok = !(flags & ~0x9);
        break;
    case 1:   /* HEADERS */
        ok = len && !(flags & ~0x2d);
        break;
    case 2:   /* PRIORITY */
        ok = len == 5;
        break;
    case 3:   /* RST_STREAM */
        ok = len == 4;
        break;
    case 4:   /* SETTINGS (an ACK is empty) */
        ok = !(flags & ~0x1) && (flags ? len == 0 : len % 6 == 0);
        break;
    case 6:   /* PING */
        ok = len == 8 && !(flags & ~0x1);
        break;
    case 7:   /* GOAWAY */
        ok = len >= 8;
        break;
    case 8:   /* WINDOW_UPDATE */
        ok = len == 4;
        break;
    case 9:   /* CONTINUATION */
        ok = !(flags & ~0x4);
        break;
    }   /* PUSH_PROMISE (5) stays 0: a client never sends one */
    return ok ? type + 1 : 0;   /* 0: a length or flag this type never has from a client */
}

/* Is the HEADERS frame whose header is at h[0..8] (its payload following in
 * h) a client's request that carries a body? A client opens odd streams; a
 * request with a body (every LLM call is a POST) has no END_STREAM on its
 * HEADERS, which tells it from trailers (always END_STREAM); and its block
 * starts with a pseudo-header (RFC 9113, 8.3): the first representation names
 * :authority, :method, :path or :scheme (static indexes 1..7) or a dynamic
 * entry (62 on), never :status (8..14: an answer) nor another static name.
 * Looked at: the block's first byte, after the pad length and priority fields.
 * This is what keeps servers out: every frame type a server writes can come
 * from a client too, but a server never writes this. */
static __always_inline int h2_late_request(const u8 *h, u32 have) {
    u32 flags = h[4];
    u32 sid = ((u32)h[5] << 24) | ((u32)h[6] << 16) | ((u32)h[7] << 8) | h[8];
    if (h[3] != 1 || !(sid & 1) || (flags & 0x1))
        return 0;   /* not HEADERS on a client's stream, or no body follows */
    u32 off = H2_HDR + ((flags & 0x8) ? 1 : 0) + ((flags & 0x20) ? 5 : 0);
    if (off >= have)
        return 0;
    /* read at constant indexes, then chosen (h is on the stack: no offset computed on it) */
    u32 b9 = h[9], b10 = h[10], b14 = h[14], b15 = h[15];
    asm volatile("" : "+r"(b9), "+r"(b10), "+r"(b14), "+r"(b15));   /* else clang selects the address */
    u32 b = (flags & 0x8) ? ((flags & 0x20) ? b15 : b10) : ((flags & 0x20) ? b14 : b9);
    u32 idx;
    if (b & 0x80)
        idx = b & 0x7f;            /* indexed field */
    else if (b & 0x40)
        idx = b & 0x3f;            /* literal, incremental indexing: the name's index */
    else if (b & 0x20)
        return 1;                  /* a table size update first: the field after it is not looked at */
    else
        idx = b & 0x0f;            /* literal without indexing / never indexed */
    if (idx >= 1 && idx <= 7)
        return 1;
    /* a dynamic entry (62 on), or a name index past the 4-bit prefix (15 on: not told apart) */
    return idx >= 62 || (!(b & 0xc0) && idx == 0x0f);
}

/* A write on a connection agtap has no state for: is it a client's HTTP/2
 * frames (a connection whose preface went out before agtap started)? `head`
 * holds the first n (4..64) bytes of the `len` written at `buf`. The write
 * must open a request (h2_late_request), first or behind one small control
 * frame (WINDOW_UPDATE, PING, SETTINGS ACK, PRIORITY, RST_STREAM); the first
 * frame must be whole in the write (clients write whole frames), and so must
 * the header of the frame after the request's HEADERS, if any, which must be
 * plausible too. A write that is not recognised costs nothing: the
 * connection's next write is looked at again. A false positive costs copies
 * only: the connection is copied (S_H2_LATE) until userspace, finding no
 * frames, ignores it. */
static __always_inline int h2_late(const char *head, u32 n, const char *buf, u64 len) {
    const u8 *h = (const u8 *)head;
    if (n < H2_HDR + 1)
        return 0;
    u32 first = h2_frame(h, 1);
    if (!first)
        return 0;
    if (first != 2) {
        /* a small control frame first: the request must follow it in head */
        u64 l1 = ((u64)h[0] << 16) | ((u64)h[1] << 8) | h[2];
        if (first == 1 || first > 9 || first == 8 || l1 > 8 || (first == 5 && !(h[4] & 0x1)))
            return 0;   /* DATA, GOAWAY, CONTINUATION, a non-ACK SETTINGS (a server's first write), or too long */
        u64 at = H2_HDR + l1;   /* where the request's HEADERS starts */
        u8 g[H2_HDR + 7] = {};
        if (at + sizeof(g) > len || bpf_probe_read_user(g, sizeof(g), buf + at))
            return 0;
        if (h2_frame(g, 1) != 2 || !h2_late_request(g, sizeof(g)))
            return 0;
        u64 glen = ((u64)g[0] << 16) | ((u64)g[1] << 8) | g[2];
        return at + H2_HDR + glen <= len;
    }
    if (!h2_late_request(h, n))
        return 0;
    u64 flen = H2_HDR + (((u64)h[0] << 16) | ((u64)h[1] << 8) | h[2]);
    if (flen > len)
        return 0;   /* not whole in this write */
    if (flen == len)
        return 1;
    if (flen + H2_HDR > len)
        return 0;   /* a piece of a header after the frame: not how frames are written */
    u8 nx[H2_HDR] = {};
    if (bpf_probe_read_user(nx, sizeof(nx), buf + flen))
        return 0;
    return h2_frame(nx, 1) != 0;
}

struct h2walk_t {
    u64 gen;          /* bpf_ktime_get_ns() at the preface: names the connection in h2_drop */
    u64 until_hdr;    /* bytes at the start of the next read before the next frame header */
    u32 skipping;     /* those bytes are the payload of a dropped DATA frame */
    u32 hdr_have;     /* 1..8: the next read starts inside a frame header, whose first bytes are: */
    u8  hdr[8];
    u64 unsure;       /* the walk starts at a read that may begin inside a frame (joined late, or
                       * after a 101 to h2c): its first bytes must be a plausible frame header */
};

struct h2drop_key_t {
    u64 gen;          /* h2walk_t.gen of the connection */
    u32 sid;          /* stream id */
    u32 pad;
};

/* Where each walked HTTP/2 connection's ingress is in its frames. Created by
 * classify_write at the preface, read and updated by the read hooks (copy.h),
 * deleted at close and when the walk is given up. */
BPF_HASH(h2_walk, struct conn_key_t, struct h2walk_t, 16384);

/* Streams whose DATA is not copied. Written by userspace (Tracer.ignore_stream),
 * read by the read hooks, deleted by them at the stream's END_STREAM. LRU:
 * streams that never end (reset, connection gone) age out; an entry evicted
 * early only means that stream's DATA is copied again. The generation in the
 * key keeps a new connection that reuses the fd or SSL* clear of them. */
BPF_TABLE("lru_hash", struct h2drop_key_t, u8, h2_drop, 16384);

#define H2_DATA 0
#define H2_END_STREAM 0x1
#define H2_PADDED 0x8
#define H2_SCAN 16          /* frame headers looked at per record emitted */
/* DATA frames shorter than this are copied even on a dropped stream: they cost
 * little, and each dropped frame takes a step of STEPS_H2 x 33 tail calls per
 * read (a 1 MiB read of 4 KiB frames is 256 steps of the 528). Bulk senders fill
 * frames to the 16 KiB default maximum. */
#define H2_DROP_MIN 4096

/* Stop walking this connection: from now on it is copied whole. */
static __always_inline void h2_lose(struct cursor_t *c) {
    if (c->walk) {
        h2_walk.delete(&c->wkey);
        count(C_H2_LOST, 1);
    }
    c->walk = 0;
}

/* A new HTTP/2 connection: walk its ingress from the next read; returns the
 * generation (0: not walked, the map is full). `unsure`: that read may begin
 * inside a frame (the preface is not where the connection began). */
static __always_inline u64 h2_start(struct conn_key_t *key, int unsure) {
    struct h2walk_t w = {.gen = bpf_ktime_get_ns(), .unsure = unsure};
    if (h2_walk.update(key, &w))
        return 0;   /* full: this connection is copied whole */
    return w.gen;
}

/* A read starts: take up the connection's walk (plain buffers only).
 * Returns 1 when the read is walked. */
static __always_inline int h2_load(struct cursor_t *c, struct conn_key_t *key, u64 buf, u64 len, u32 iov_cnt) {
    c->walk = 0;
    c->skip_to = 0;
    struct h2walk_t *w = h2_walk.lookup(key);
    if (!w)
        return 0;   /* not walked: not an HTTP/2 connection that began with the preface, or given up */
    c->wkey = *key;
    c->gen = w->gen;
    c->walk = 1;
    if (iov_cnt) {
        h2_lose(c);   /* readv/recvmsg: the frames are not walked across iovecs */
        return 0;
    }
    if (w->hdr_have) {
        /* the previous read ended inside a frame header: its length's
         * missing bytes open this one; that frame is copied whole */
        u8 nb[4] = {};
        u32 have = w->hdr_have;
        if (len < 3 || have > 8 || bpf_probe_read_user(nb, 3, (void *)buf)) {
            h2_lose(c);
            return 0;
        }
        u32 b0 = w->hdr[0], b1, b2;
        if (have == 1) {
            b1 = nb[0];
            b2 = nb[1];
        } else if (have == 2) {
            b1 = w->hdr[1];
            b2 = nb[0];
        } else {
            b1 = w->hdr[1];
            b2 = w->hdr[2];
        }
        c->next_hdr = (H2_HDR - have) + ((b0 << 16) | (b1 << 8) | b2);
    } else {
        c->next_hdr = w->until_hdr;
        if (w->skipping)
            c->skip_to = w->until_hdr;
    }
    if (w->unsure) {
        /* the first read of a walk that may start inside a frame: walked only
         * if it starts with a plausible frame header (else copied whole) */
        u8 h[H2_HDR] = {};
        w->unsure = 0;
        if (len < H2_HDR || bpf_probe_read_user(h, sizeof(h), (void *)buf) || !h2_frame(h, 0)) {
            h2_lose(c);
            return 0;
        }
    }
    return 1;
}

/* The read is copied: save where the next one starts in the frames. */
static __always_inline void h2_save(struct cursor_t *c) {
    if (!c->walk)
        return;
    c->walk = 0;
    struct h2walk_t *w = h2_walk.lookup(&c->wkey);
    if (!w)
        return;   /* closed meanwhile */
    if (c->total_left) {
        c->walk = 1;
        h2_lose(c);   /* cut at the cap, or bytes not read: the position is unknown */
        return;
    }
    w->hdr_have = 0;
    w->skipping = 0;
    w->until_hdr = 0;
    if (c->next_hdr >= c->total) {
        w->until_hdr = c->next_hdr - c->total;
        w->skipping = c->skip_to > c->total;
        return;
    }
    /* a frame header cut by the end of the read: keep its first bytes */
    u64 have = c->total - c->next_hdr;   /* 1..8: a whole header would have been looked at */
    if (have > 8 || bpf_probe_read_user(w->hdr, copy_len(have, 8), (void *)(c->buf - have))) {
        c->walk = 1;
        h2_lose(c);
        return;
    }
    w->hdr_have = have;
}

static __always_inline void h2_advance(struct cursor_t *c, u64 n) {
    c->buf += n;
    c->seg_left -= n;
    c->total_left -= n;
    c->copied += n;
}

/* Before copying up to offset `limit`: walk the frame headers in the way.
 * Returns where this record must end (<= limit), or 0 when the step was used
 * here: dropped payload skipped, or a dropped frame's header sent rewritten. */
static __always_inline u64 h2_walk_to(struct cursor_t *c, struct record_t *r, u64 limit) {
    if (c->skip_to > c->copied) {
        u64 s = c->skip_to - c->copied;
        if (s > c->total_left)
            s = c->total_left;
        h2_advance(c, s);
        count(C_H2_DROPPED, s);
        return 0;
    }
#pragma clang loop unroll(disable)
    for (int j = 0; j < H2_SCAN; j++) {
        if (c->next_hdr >= limit)
            return limit;   /* no header before the limit */
        if (c->next_hdr + H2_HDR > c->total)
            return limit;   /* a header cut by the end of the read: h2_save keeps it */
        u8 h[H2_HDR + 7] = {};
        if (bpf_probe_read_user(h, H2_HDR, (void *)(c->buf + (c->next_hdr - c->copied)))) {
            h2_lose(c);
            return limit;
        }
        u64 len = ((u64)h[0] << 16) | ((u64)h[1] << 8) | h[2];
        u32 sid = ((u32)h[5] << 24) | ((u32)h[6] << 16) | ((u32)h[7] << 8) | h[8];
        if (sid & 0x80000000) {
            h2_lose(c);     /* the reserved bit is never sent: these are not frames */
            return limit;
        }
        if (h[3] == H2_DATA && sid) {
            struct h2drop_key_t k = {.gen = c->gen, .sid = sid};
            if (h2_drop.lookup(&k)) {
                if (h[4] & H2_END_STREAM)
                    h2_drop.delete(&k);   /* the stream's last DATA */
                if (len >= H2_DROP_MIN) {
                    if (c->next_hdr > c->copied)
                        return c->next_hdr;   /* copy what precedes it first */
                    /* at the header: it goes alone, with length 0 and no padding */
                    r->offset = c->copied;
                    r->total = c->total;
                    r->flags = c->total_left <= H2_HDR + len ? F_LAST : 0;
                    r->len = H2_HDR;
                    r->data[0] = 0;
                    r->data[1] = 0;
                    r->data[2] = 0;
                    r->data[3] = h[3];
                    r->data[4] = h[4] & ~H2_PADDED;
                    r->data[5] = h[5];
                    r->data[6] = h[6];
                    r->data[7] = h[7];
                    r->data[8] = h[8];
                    if (records.ringbuf_output(r, HDR_SIZE + H2_HDR, 0)) {
                        count(C_LOST, H2_HDR);
                        count(C_LOST_RECS, 1);
                    } else {
                        count(C_RECORDS, 1);
                        count(C_BYTES, H2_HDR);
                    }
                    c->skip_to = c->copied + H2_HDR + len;
                    c->next_hdr = c->skip_to;
                    h2_advance(c, H2_HDR);
                    u64 s = len < c->total_left ? len : c->total_left;   /* and its payload, in this step */
                    h2_advance(c, s);
                    count(C_H2_DROPPED, s);
                    return 0;
                }
            }
        }
        c->next_hdr += H2_HDR + len;
    }
    return c->next_hdr < limit ? c->next_hdr : limit;   /* H2_SCAN headers looked at: copy up to the last */
}
