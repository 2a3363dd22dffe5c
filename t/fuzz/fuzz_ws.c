
/*
 * Copyright (C) The ngx_segura_module authors
 */


/*
 * libFuzzer target for the frame parser of ngx_segura_ws.c.
 *
 * Input: byte 0 picks max_message, byte 1 the number n (0-15) of chunk
 * sizes that follow, then n bytes of chunk sizes (each + 1, used in turn),
 * then the client byte stream.  The stream is parsed all at once and in
 * those chunks; both must give the same events and data.  Every delivered
 * payload is encoded again with the server-side encoder, masked, and fed
 * to a second parser, which must return it unchanged.  Any broken
 * invariant aborts.
 */


#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/evp.h>

#include "ngx_segura_ws.h"


#define ASSERT(x)                                                            \
    do {                                                                     \
        if (!(x)) {                                                          \
            fprintf(stderr, "%s:%d: assertion \"%s\" failed\n",             \
                    __FILE__, __LINE__, #x);                                 \
            abort();                                                         \
        }                                                                    \
    } while (0)


typedef struct {
    unsigned char          *buf;
    size_t                  len;
    size_t                  cap;
} fuzz_bytes_t;


typedef struct {
    fuzz_bytes_t            log;      /* normalized events */
    fuzz_bytes_t            msg;      /* data of the open message */
    int                     in_msg;
    unsigned                msg_op;
    int                     done;
    ngx_segura_ws_parser_t  ws;
    ngx_segura_ws_parser_t  echo;     /* parses what we encode again */
} fuzz_run_t;


static const uint64_t  fuzz_max[] = {
    0, 1, 2, 125, 126, 127, 1000, 65535, 65536, 65537, 1 << 20, UINT64_MAX
};

static const unsigned char  fuzz_key[4] = { 0xa5, 0x01, 0xff, 0x5a };


static void
fuzz_append(fuzz_bytes_t *b, const void *p, size_t n)
{
    if (b->len + n > b->cap) {
        b->cap = (b->len + n) * 2 + 256;
        b->buf = realloc(b->buf, b->cap);
        ASSERT(b->buf != NULL);
    }

    if (n) {
        memcpy(b->buf + b->len, p, n);
    }

    b->len += n;
}


static void
fuzz_record(fuzz_run_t *r, unsigned type, unsigned opcode, unsigned code,
    const unsigned char *data, size_t len)
{
    unsigned char  h[12];

    h[0] = (unsigned char) type;
    h[1] = (unsigned char) opcode;
    h[2] = (unsigned char) (code >> 8);
    h[3] = (unsigned char) code;
    memcpy(h + 4, &len, sizeof(size_t) < 8 ? sizeof(size_t) : 8);

    fuzz_append(&r->log, h, sizeof(h));
    fuzz_append(&r->log, data, len);
}


/*
 * Encodes an event again as a server would send it, masks it as a client
 * would, and checks that the echo parser gives the same event back.
 */

static void
fuzz_echo(fuzz_run_t *r, ngx_segura_ws_event_t *ev)
{
    size_t                 hlen, flen, i, n;
    unsigned               op, fin, b1;
    uint64_t               len;
    unsigned char         *f;
    ngx_segura_ws_event_t  e;
    ngx_segura_ws_event_e  rc;

    if (ev->type == NGX_SEGURA_WS_DATA) {
        op = (ev->flags & NGX_SEGURA_WS_FIRST) ? ev->opcode
                                               : NGX_SEGURA_WS_OP_CONT;
        fin = (ev->flags & NGX_SEGURA_WS_LAST) ? 1 : 0;

    } else {
        op = ev->opcode;
        fin = 1;
    }

    f = malloc(NGX_SEGURA_WS_HEADER_MAX + 4 + ev->len);
    ASSERT(f != NULL);

    hlen = ngx_segura_ws_frame_header(f, op, fin, ev->len);

    /* the header round trip */

    ASSERT(hlen == (ev->len < 126 ? 2 : ev->len < 65536 ? 4 : 10));
    ASSERT(f[0] == ((fin ? 0x80 : 0) | op));

    b1 = f[1];
    len = b1;

    if (b1 == 126) {
        len = ((uint64_t) f[2] << 8) | f[3];

    } else if (b1 == 127) {
        len = 0;

        for (i = 2; i < 10; i++) {
            len = (len << 8) | f[i];
        }
    }

    ASSERT(len == ev->len);

    /* as a client would send it */

    f[1] |= 0x80;
    memcpy(f + hlen, fuzz_key, 4);

    for (i = 0; i < ev->len; i++) {
        f[hlen + 4 + i] = ev->data[i] ^ fuzz_key[i & 3];
    }

    flen = hlen + 4 + ev->len;

    rc = ngx_segura_ws_parse(&r->echo, f, flen, &n, &e);

    ASSERT(rc == ev->type);
    ASSERT(n == flen);
    ASSERT(e.len == ev->len);
    ASSERT(e.len == 0 || memcmp(e.data, ev->data, e.len) == 0);
    ASSERT(e.opcode == ev->opcode);
    ASSERT(e.flags == ev->flags);
    ASSERT(e.code == ev->code);

    free(f);
}


/* checks one event's invariants and logs it; returns 1 after ERROR */

static int
fuzz_event(fuzz_run_t *r, ngx_segura_ws_event_e rc, ngx_segura_ws_event_t *ev,
    unsigned char *p, size_t len, size_t n, const unsigned char *orig)
{
    size_t                 n2;
    unsigned char          b, out[NGX_SEGURA_WS_CONTROL_MAX];
    unsigned char         *ctl;
    ngx_segura_ws_event_t  ev2;

    ASSERT(n <= len);
    ASSERT(rc == ev->type);

    /* bytes past the consumed ones are as they came */
    ASSERT(memcmp(p + n, orig + n, len - n) == 0);

    ctl = (unsigned char *) &r->ws;

    switch (rc) {

    case NGX_SEGURA_WS_NEED_MORE:
        ASSERT(n == len);
        return 0;

    case NGX_SEGURA_WS_DATA:
        ASSERT(n > 0 || len == 0);
        ASSERT(ev->data >= p && ev->data + ev->len == p + n);
        ASSERT(ev->len > 0 || (ev->flags & NGX_SEGURA_WS_LAST));
        ASSERT(ev->opcode == NGX_SEGURA_WS_OP_TEXT
               || ev->opcode == NGX_SEGURA_WS_OP_BINARY);
        ASSERT((ev->flags & ~(NGX_SEGURA_WS_FIRST | NGX_SEGURA_WS_LAST))
               == 0);
        ASSERT(!!(ev->flags & NGX_SEGURA_WS_FIRST) == !r->in_msg);
        ASSERT(!r->in_msg || ev->opcode == r->msg_op);

        fuzz_echo(r, ev);

        r->in_msg = 1;
        r->msg_op = ev->opcode;
        fuzz_append(&r->msg, ev->data, ev->len);

        if (ev->flags & NGX_SEGURA_WS_LAST) {
            ASSERT(ev->opcode != NGX_SEGURA_WS_OP_TEXT
                   || ngx_segura_ws_utf8_valid(r->msg.buf, r->msg.len));

            fuzz_record(r, rc, ev->opcode, 0, r->msg.buf, r->msg.len);
            r->in_msg = 0;
            r->msg.len = 0;
        }

        return 0;

    case NGX_SEGURA_WS_PING:
    case NGX_SEGURA_WS_PONG:
    case NGX_SEGURA_WS_CLOSE:
        ASSERT(n > 0);
        ASSERT(ev->len <= NGX_SEGURA_WS_CONTROL_MAX);
        ASSERT(ev->len == 0
               || (ev->data >= ctl
                   && ev->data + ev->len <= ctl + sizeof(r->ws)));

        if (rc == NGX_SEGURA_WS_CLOSE) {
            ASSERT(ev->opcode == NGX_SEGURA_WS_OP_CLOSE);

            if (ev->len == 0) {
                ASSERT(ev->code == NGX_SEGURA_WS_CLOSE_NO_STATUS);
                ASSERT(ev->reason_len == 0);

            } else {
                ASSERT(ev->len >= 2);
                ASSERT(ngx_segura_ws_close_code_valid(ev->code));
                ASSERT(ev->reason == (const char *) ev->data + 2);
                ASSERT(ev->reason_len == ev->len - 2);

                /* the close payload encoder gives the same bytes */
                ASSERT(ngx_segura_ws_close_payload(out, ev->code,
                           (const unsigned char *) ev->reason,
                           ev->reason_len)
                       == ev->len);
                ASSERT(memcmp(out, ev->data, ev->len) == 0);
            }

        } else {
            ASSERT(ev->opcode == (rc == NGX_SEGURA_WS_PING
                                  ? NGX_SEGURA_WS_OP_PING
                                  : NGX_SEGURA_WS_OP_PONG));
        }

        fuzz_record(r, rc, ev->opcode, ev->code, ev->data, ev->len);
        fuzz_echo(r, ev);
        return 0;

    case NGX_SEGURA_WS_ERROR:
        ASSERT(ev->code == 1002 || ev->code == 1007 || ev->code == 1009);
        ASSERT(ev->reason != NULL && ev->reason_len > 0);
        ASSERT(strlen(ev->reason) == ev->reason_len);

        fuzz_record(r, rc, r->in_msg, ev->code, r->msg.buf,
                    r->in_msg ? r->msg.len : 0);

        /* the error state is sticky and consumes nothing */
        b = 0x81;
        ASSERT(ngx_segura_ws_parse(&r->ws, &b, 1, &n2, &ev2)
               == NGX_SEGURA_WS_ERROR);
        ASSERT(n2 == 0 && b == 0x81 && ev2.code == ev->code);

        r->done = 1;
        return 1;

    default:
        ASSERT(0);
        return 1;
    }
}


/* parses one chunk (a buffer of its own) to NEED_MORE or ERROR */

static void
fuzz_chunk(fuzz_run_t *r, const unsigned char *in, size_t len)
{
    size_t                 n, events;
    unsigned char         *buf, *p;
    ngx_segura_ws_event_t  ev;
    ngx_segura_ws_event_e  rc;

    buf = malloc(len ? len : 1);
    ASSERT(buf != NULL);
    memcpy(buf, in, len);

    p = buf;
    events = 0;

    for ( ;; ) {
        rc = ngx_segura_ws_parse(&r->ws, p, len - (p - buf), &n, &ev);

        if (fuzz_event(r, rc, &ev, p, len - (p - buf), n,
                       in + (p - buf)))
        {
            break;
        }

        p += n;

        if (rc == NGX_SEGURA_WS_NEED_MORE) {
            break;
        }

        /* each event but ERROR consumes a byte: no endless loop */
        ASSERT(++events <= len + 1);
    }

    free(buf);
}


/*
 * The helpers that take whole strings: a frame header for a length from
 * the input, the close payload with the input as reason, and the
 * handshake helpers with the input as header value.
 */

static void
fuzz_helpers(const unsigned char *in, size_t size)
{
    size_t         i, hlen, n;
    uint64_t       len, back;
    unsigned char  h[NGX_SEGURA_WS_HEADER_MAX], out[NGX_SEGURA_WS_CONTROL_MAX];
    unsigned char  raw[20], b64[32], accept[NGX_SEGURA_WS_ACCEPT_LEN];

    len = 0;

    for (i = 0; i < 8 && i < size; i++) {
        len = (len << 8) | in[i];
    }

    len >>= (size & 7) * 8;

    hlen = ngx_segura_ws_frame_header(h, NGX_SEGURA_WS_OP_BINARY, size & 1,
                                      len);

    if (len & 0x8000000000000000ULL) {
        ASSERT(hlen == 0);

    } else {
        ASSERT(hlen == (len < 126 ? 2 : len < 65536 ? 4 : 10));

        back = h[1];

        if (hlen == 4) {
            back = ((uint64_t) h[2] << 8) | h[3];

        } else if (hlen == 10) {
            back = 0;

            for (i = 2; i < 10; i++) {
                back = (back << 8) | h[i];
            }
        }

        ASSERT(back == len);
        ASSERT(h[0] == (((size & 1) ? 0x80 : 0) | NGX_SEGURA_WS_OP_BINARY));
    }

    /* a close payload keeps a whole-character UTF-8 prefix of the reason */

    n = ngx_segura_ws_close_payload(out, 1000, in, size);
    ASSERT(n >= 2 && n <= NGX_SEGURA_WS_CONTROL_MAX);
    ASSERT(n - 2 <= size && memcmp(out + 2, in, n - 2) == 0);
    ASSERT(ngx_segura_ws_utf8_valid(out + 2, n - 2));

    /* and the longest one */

    for (i = n - 2 + 1; i <= size && i <= NGX_SEGURA_WS_CONTROL_MAX - 2; i++) {
        ASSERT(!ngx_segura_ws_utf8_valid(in, i));
    }

    /* a valid key is canonical base64 of 16 bytes */

    if (ngx_segura_ws_key_valid(in, size)) {
        ASSERT(size == NGX_SEGURA_WS_KEY_LEN);
        ASSERT(EVP_DecodeBlock(raw, in, (int) size) == 18);
        ASSERT(EVP_EncodeBlock(b64, raw, 16) == 24);
        ASSERT(memcmp(b64, in, 24) == 0);
        ASSERT(ngx_segura_ws_accept(accept, in, size) == 0);
    }

    if (ngx_segura_ws_token_list_has(in, size, "upgrade")) {
        ASSERT(size >= 7);
    }
}


static void
fuzz_run_init(fuzz_run_t *r, uint64_t max_message)
{
    memset(r, 0, sizeof(fuzz_run_t));
    ngx_segura_ws_parser_init(&r->ws, max_message);
    ngx_segura_ws_parser_init(&r->echo, UINT64_MAX);
}


static void
fuzz_run_free(fuzz_run_t *r)
{
    free(r->log.buf);
    free(r->msg.buf);
}


int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    size_t           nsizes, off, k, csize;
    uint64_t         max;
    fuzz_run_t       all, chunked;
    const uint8_t   *sizes, *in;

    if (size < 2) {
        return 0;
    }

    max = fuzz_max[data[0] % (sizeof(fuzz_max) / sizeof(fuzz_max[0]))];
    nsizes = data[1] & 0x0f;

    if (size < 2 + nsizes) {
        return 0;
    }

    sizes = data + 2;
    in = data + 2 + nsizes;
    size -= 2 + nsizes;

    fuzz_helpers(in, size);

    /* all at once */

    fuzz_run_init(&all, max);
    fuzz_chunk(&all, in, size);

    /* in chunks */

    fuzz_run_init(&chunked, max);

    off = 0;
    k = 0;

    while (off < size && !chunked.done) {
        csize = nsizes ? (size_t) sizes[k++ % nsizes] + 1 : 1;

        if (csize > size - off) {
            csize = size - off;
        }

        fuzz_chunk(&chunked, in + off, csize);
        off += csize;
    }

    /* an empty call changes nothing */

    if (!chunked.done) {
        fuzz_chunk(&chunked, in, 0);
    }

    ASSERT(all.done == chunked.done);
    ASSERT(all.in_msg == chunked.in_msg);
    ASSERT(all.msg.len == chunked.msg.len);
    ASSERT(all.log.len == chunked.log.len);
    ASSERT(all.log.len == 0
           || memcmp(all.log.buf, chunked.log.buf, all.log.len) == 0);

    fuzz_run_free(&all);
    fuzz_run_free(&chunked);

    return 0;
}
