
/*
 * Copyright (C) The ngx_segura_module authors
 */


/*
 * Unit tests of ngx_segura_ws.c: the RFC 6455 frame parser with exact
 * close codes, chunking independence, UTF-8 edge cases, the encoder and
 * the handshake helpers, then a seeded random-input loop (SEGURA_SEED
 * repeats a run; the seed is printed on failure).
 */


#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <cmocka.h>

#include "ngx_segura_ws.h"


#define MAX_RECS    512
#define REC_PARTIAL 0x100  /* ERROR record: data of the unfinished message */

#define FIN         0x80


typedef struct {
    int             type;
    unsigned        opcode;
    unsigned        flags;
    unsigned        code;
    unsigned char  *data;
    size_t          len;
} rec_t;


typedef struct {
    rec_t           recs[MAX_RECS];
    size_t          n;
    int             in_msg;
    unsigned        msg_op;
    unsigned char  *msg;
    size_t          msg_len;
    size_t          msg_cap;
    size_t          consumed;      /* total bytes consumed */
} result_t;


static unsigned  seed;


#define CHECK(x)                                                             \
    do {                                                                     \
        if (!(x)) {                                                          \
            fail_msg("%s:%d: %s (SEGURA_SEED=%u)", __FILE__, __LINE__, #x,   \
                     seed);                                                  \
        }                                                                    \
    } while (0)


/* xorshift32: deterministic for a seed, independent of libc's rand() */

static uint32_t  rnd_state;


static uint32_t
rnd(void)
{
    uint32_t  x;

    x = rnd_state;
    x ^= x << 13;
    x ^= x >> 17;
    x ^= x << 5;
    rnd_state = x;

    return x;
}


static uint32_t
rnd_below(uint32_t n)
{
    return n ? rnd() % n : 0;
}


/*
 * Builds a client frame: b0 is FIN | RSV | opcode, form forces the length
 * encoding (7, 16 or 64; 0 picks the minimal one), key NULL sends it
 * unmasked.
 */

static size_t
frame(unsigned char *out, unsigned b0, int form, const unsigned char *key,
    const void *payload, uint64_t len)
{
    size_t                i, n;
    const unsigned char  *pl;

    pl = payload;
    n = 0;
    out[n++] = (unsigned char) b0;

    if (form == 0) {
        form = len < 126 ? 7 : (len < 65536 ? 16 : 64);
    }

    if (form == 7) {
        out[n++] = (unsigned char) len;

    } else if (form == 16) {
        out[n++] = 126;
        out[n++] = (unsigned char) (len >> 8);
        out[n++] = (unsigned char) len;

    } else {
        out[n++] = 127;

        for (i = 0; i < 8; i++) {
            out[n++] = (unsigned char) (len >> (56 - 8 * i));
        }
    }

    if (key != NULL) {
        out[1] |= 0x80;
        memcpy(out + n, key, 4);
        n += 4;
    }

    if (pl != NULL) {
        for (i = 0; i < len; i++) {
            out[n + i] = key ? pl[i] ^ key[i & 3] : pl[i];
        }

        n += len;
    }

    return n;
}


static const unsigned char  key1[4] = { 0x37, 0xfa, 0x21, 0x3d };
static const unsigned char  key2[4] = { 0x00, 0xff, 0x81, 0x7e };


static void
result_free(result_t *r)
{
    size_t  i;

    for (i = 0; i < r->n; i++) {
        free(r->recs[i].data);
    }

    free(r->msg);
    free(r);
}


static void
rec_add(result_t *r, int type, unsigned opcode, unsigned flags,
    unsigned code, const unsigned char *data, size_t len)
{
    rec_t  *rec;

    CHECK(r->n < MAX_RECS);

    rec = &r->recs[r->n++];
    rec->type = type;
    rec->opcode = opcode;
    rec->flags = flags;
    rec->code = code;
    rec->len = len;
    rec->data = malloc(len + 1);
    CHECK(rec->data != NULL);

    if (len) {
        memcpy(rec->data, data, len);
    }
}


static void
msg_append(result_t *r, const unsigned char *p, size_t n)
{
    if (r->msg_len + n > r->msg_cap) {
        r->msg_cap = (r->msg_len + n) * 2 + 64;
        r->msg = realloc(r->msg, r->msg_cap);
        CHECK(r->msg != NULL);
    }

    if (n) {
        memcpy(r->msg + r->msg_len, p, n);
    }

    r->msg_len += n;
}


/*
 * Handles one event, checking the invariants every caller may rely on.
 * Returns 1 when the parser is done (ERROR).
 */

static int
on_event(result_t *r, ngx_segura_ws_parser_t *ws, int rc,
    ngx_segura_ws_event_t *ev, unsigned char *p, size_t len, size_t n)
{
    unsigned char  *ctl;

    CHECK(n <= len);
    CHECK(rc == (int) ev->type);

    r->consumed += n;

    ctl = (unsigned char *) ws;

    switch (rc) {

    case NGX_SEGURA_WS_NEED_MORE:
        CHECK(n == len);
        return 0;

    case NGX_SEGURA_WS_DATA:
        CHECK(ev->data >= p);
        CHECK(ev->data + ev->len == p + n);
        CHECK(ev->len > 0 || (ev->flags & NGX_SEGURA_WS_LAST));
        CHECK(ev->opcode == NGX_SEGURA_WS_OP_TEXT
              || ev->opcode == NGX_SEGURA_WS_OP_BINARY);
        CHECK((ev->flags & ~(NGX_SEGURA_WS_FIRST | NGX_SEGURA_WS_LAST)) == 0);
        CHECK(!!(ev->flags & NGX_SEGURA_WS_FIRST) == !r->in_msg);

        if (r->in_msg) {
            CHECK(ev->opcode == r->msg_op);
        }

        r->in_msg = 1;
        r->msg_op = ev->opcode;
        msg_append(r, ev->data, ev->len);

        if (ev->flags & NGX_SEGURA_WS_LAST) {

            if (ev->opcode == NGX_SEGURA_WS_OP_TEXT) {
                CHECK(ngx_segura_ws_utf8_valid(r->msg, r->msg_len));
            }

            rec_add(r, rc, ev->opcode, 0, 0, r->msg, r->msg_len);
            r->in_msg = 0;
            r->msg_len = 0;
        }

        return 0;

    case NGX_SEGURA_WS_PING:
    case NGX_SEGURA_WS_PONG:
    case NGX_SEGURA_WS_CLOSE:
        CHECK(n > 0);
        CHECK(ev->len <= NGX_SEGURA_WS_CONTROL_MAX);
        CHECK(ev->len == 0
              || (ev->data >= ctl
                  && ev->data + ev->len <= ctl + sizeof(*ws)));

        if (rc == NGX_SEGURA_WS_CLOSE) {
            CHECK(ev->opcode == NGX_SEGURA_WS_OP_CLOSE);

            if (ev->len == 0) {
                CHECK(ev->code == NGX_SEGURA_WS_CLOSE_NO_STATUS);
                CHECK(ev->reason_len == 0);

            } else {
                CHECK(ngx_segura_ws_close_code_valid(ev->code));
                CHECK(ev->reason_len == ev->len - 2);
                CHECK(ev->reason == (const char *) ev->data + 2);
                CHECK(ngx_segura_ws_utf8_valid(
                          (const unsigned char *) ev->reason,
                          ev->reason_len));
            }

        } else {
            CHECK(ev->opcode == (rc == NGX_SEGURA_WS_PING
                                 ? NGX_SEGURA_WS_OP_PING
                                 : NGX_SEGURA_WS_OP_PONG));
        }

        rec_add(r, rc, ev->opcode, 0, ev->code, ev->data, ev->len);
        return 0;

    case NGX_SEGURA_WS_ERROR:
        CHECK(ev->code == 1002 || ev->code == 1007 || ev->code == 1009);
        CHECK(ev->reason != NULL && ev->reason_len > 0);
        CHECK(strlen(ev->reason) == ev->reason_len);

        rec_add(r, rc, 0, r->in_msg ? REC_PARTIAL : 0, ev->code, r->msg,
                r->in_msg ? r->msg_len : 0);

        /* the error state is sticky */

        {
            size_t                 n2;
            unsigned char          b;
            ngx_segura_ws_event_t  ev2;

            b = 0x82;
            CHECK(ngx_segura_ws_parse(ws, &b, 1, &n2, &ev2)
                  == NGX_SEGURA_WS_ERROR);
            CHECK(n2 == 0);
            CHECK(ev2.code == ev->code);
            CHECK(b == 0x82);
        }

        return 1;

    default:
        CHECK(0);
        return 1;
    }
}


/*
 * Feeds in[0 .. len) as chunks of the given sizes (repeating the last one;
 * a size of 0 means "the rest"), each copied to a buffer of its exact size
 * so that ASan catches reads past it.
 */

static result_t *
feed(const unsigned char *in, size_t len, uint64_t max_message,
    const size_t *sizes, size_t nsizes)
{
    int                     rc;
    size_t                  off, csize, n, k;
    result_t               *r;
    unsigned char          *chunk, *p;
    ngx_segura_ws_event_t   ev;
    ngx_segura_ws_parser_t  ws;

    r = calloc(1, sizeof(result_t));
    CHECK(r != NULL);

    ngx_segura_ws_parser_init(&ws, max_message);

    off = 0;
    k = 0;

    while (off < len) {
        csize = sizes[k < nsizes ? k : nsizes - 1];
        k++;

        if (csize == 0 || csize > len - off) {
            csize = len - off;
        }

        chunk = malloc(csize);
        CHECK(chunk != NULL);
        memcpy(chunk, in + off, csize);
        off += csize;

        p = chunk;

        for ( ;; ) {
            rc = ngx_segura_ws_parse(&ws, p, csize - (p - chunk), &n, &ev);

            if (on_event(r, &ws, rc, &ev, p, csize - (p - chunk), n)) {
                free(chunk);
                return r;
            }

            /* bytes past the consumed ones are untouched */

            CHECK(memcmp(p + n, in + off - csize + (p - chunk) + n,
                         csize - (p - chunk) - n) == 0);

            p += n;

            if (rc == NGX_SEGURA_WS_NEED_MORE) {
                break;
            }
        }

        free(chunk);
    }

    return r;
}


static result_t *
feed_all(const unsigned char *in, size_t len, uint64_t max_message)
{
    size_t  all;

    all = 0;

    return feed(in, len, max_message, &all, 1);
}


static void
result_same(const result_t *a, const result_t *b)
{
    size_t  i;

    if (a->n != b->n) {
        for (i = 0; i < a->n || i < b->n; i++) {
            print_error("%zu: %d/%u/%u/%zu  %d/%u/%u/%zu\n", i,
                        i < a->n ? a->recs[i].type : -1,
                        i < a->n ? a->recs[i].opcode : 0,
                        i < a->n ? a->recs[i].code : 0,
                        i < a->n ? a->recs[i].len : 0,
                        i < b->n ? b->recs[i].type : -1,
                        i < b->n ? b->recs[i].opcode : 0,
                        i < b->n ? b->recs[i].code : 0,
                        i < b->n ? b->recs[i].len : 0);
        }
    }

    CHECK(a->n == b->n);

    for (i = 0; i < a->n; i++) {
        CHECK(a->recs[i].type == b->recs[i].type);
        CHECK(a->recs[i].opcode == b->recs[i].opcode);
        CHECK(a->recs[i].flags == b->recs[i].flags);
        CHECK(a->recs[i].code == b->recs[i].code);
        CHECK(a->recs[i].len == b->recs[i].len);
        CHECK(a->recs[i].len == 0
              || memcmp(a->recs[i].data, b->recs[i].data, a->recs[i].len)
                 == 0);
    }

    CHECK(a->in_msg == b->in_msg);
    CHECK(a->msg_len == b->msg_len);
}


/* all at once, 1 byte at a time, and split at every offset: same result */

static result_t *
feed_every_way(const unsigned char *in, size_t len, uint64_t max_message)
{
    size_t     one, sizes[2];
    result_t  *all, *r;

    all = feed_all(in, len, max_message);

    one = 1;
    r = feed(in, len, max_message, &one, 1);
    result_same(all, r);
    result_free(r);

    for (sizes[0] = 1; sizes[0] < len; sizes[0]++) {
        sizes[1] = 0;
        r = feed(in, len, max_message, sizes, 2);
        result_same(all, r);
        result_free(r);
    }

    return all;
}


static void
expect_error(const unsigned char *in, size_t len, uint64_t max_message,
    unsigned code)
{
    result_t  *r;

    r = feed_every_way(in, len, max_message);

    CHECK(r->n > 0);
    CHECK(r->recs[r->n - 1].type == NGX_SEGURA_WS_ERROR);

    if (r->recs[r->n - 1].code != code) {
        fail_msg("close code %u, expected %u", r->recs[r->n - 1].code, code);
    }

    result_free(r);
}


static void
expect_rec(const result_t *r, size_t i, int type, unsigned opcode,
    const void *data, size_t len)
{
    CHECK(i < r->n);
    assert_int_equal(r->recs[i].type, type);
    assert_int_equal(r->recs[i].opcode, opcode);
    assert_int_equal(r->recs[i].len, len);

    if (len) {
        assert_memory_equal(r->recs[i].data, data, len);
    }
}


/* valid messages */


static void
test_text_one_frame(void **state)
{
    size_t                  n, len;
    unsigned char           buf[64];
    ngx_segura_ws_event_t   ev;
    ngx_segura_ws_parser_t  ws;

    (void) state;

    /* per session: thousands must fit in a few pages */
    assert_true(sizeof(ngx_segura_ws_parser_t) <= 192);

    len = frame(buf, FIN | NGX_SEGURA_WS_OP_TEXT, 0, key1, "Hello", 5);
    assert_int_equal(len, 11);

    ngx_segura_ws_parser_init(&ws, 1024);

    assert_int_equal(ngx_segura_ws_parse(&ws, buf, len, &n, &ev),
                     NGX_SEGURA_WS_DATA);
    assert_int_equal(n, len);
    assert_int_equal(ev.opcode, NGX_SEGURA_WS_OP_TEXT);
    assert_int_equal(ev.flags, NGX_SEGURA_WS_FIRST | NGX_SEGURA_WS_LAST);
    assert_ptr_equal(ev.data, buf + 6);
    assert_int_equal(ev.len, 5);
    assert_memory_equal(ev.data, "Hello", 5);

    assert_int_equal(ngx_segura_ws_parse(&ws, buf + n, 0, &n, &ev),
                     NGX_SEGURA_WS_NEED_MORE);
    assert_int_equal(n, 0);
}


static void
test_rfc_examples(void **state)
{
    result_t  *r;

    /* RFC 6455 5.7 */
    static const unsigned char  masked[] = {
        0x81, 0x85, 0x37, 0xfa, 0x21, 0x3d, 0x7f, 0x9f, 0x4d, 0x51, 0x58
    };
    static const unsigned char  fragmented[] = {
        0x01, 0x83, 0, 0, 0, 0, 0x48, 0x65, 0x6c,
        0x80, 0x82, 0, 0, 0, 0, 0x6c, 0x6f
    };
    static const unsigned char  ping[] = {
        0x89, 0x85, 0x37, 0xfa, 0x21, 0x3d, 0x7f, 0x9f, 0x4d, 0x51, 0x58
    };

    (void) state;

    r = feed_every_way(masked, sizeof(masked), 1024);
    assert_int_equal(r->n, 1);
    expect_rec(r, 0, NGX_SEGURA_WS_DATA, NGX_SEGURA_WS_OP_TEXT, "Hello", 5);
    result_free(r);

    r = feed_every_way(fragmented, sizeof(fragmented), 1024);
    assert_int_equal(r->n, 1);
    expect_rec(r, 0, NGX_SEGURA_WS_DATA, NGX_SEGURA_WS_OP_TEXT, "Hello", 5);
    result_free(r);

    r = feed_every_way(ping, sizeof(ping), 1024);
    assert_int_equal(r->n, 1);
    expect_rec(r, 0, NGX_SEGURA_WS_PING, NGX_SEGURA_WS_OP_PING, "Hello", 5);
    result_free(r);
}


static void
test_binary_one_frame_and_fragmented(void **state)
{
    size_t          len;
    result_t       *r;
    unsigned char   buf[128];

    static const unsigned char  bin[] = { 0x00, 0xff, 0x80, 0xc0, 0x01 };

    (void) state;

    len = frame(buf, FIN | NGX_SEGURA_WS_OP_BINARY, 0, key1, bin, 5);

    r = feed_every_way(buf, len, 1024);
    assert_int_equal(r->n, 1);
    expect_rec(r, 0, NGX_SEGURA_WS_DATA, NGX_SEGURA_WS_OP_BINARY, bin, 5);
    result_free(r);

    len = frame(buf, NGX_SEGURA_WS_OP_BINARY, 0, key1, bin, 2);
    len += frame(buf + len, NGX_SEGURA_WS_OP_CONT, 0, key2, NULL, 0);
    len += frame(buf + len, NGX_SEGURA_WS_OP_CONT, 0, key2, bin + 2, 2);
    len += frame(buf + len, FIN | NGX_SEGURA_WS_OP_CONT, 0, key1, bin + 4, 1);

    r = feed_every_way(buf, len, 1024);
    assert_int_equal(r->n, 1);
    expect_rec(r, 0, NGX_SEGURA_WS_DATA, NGX_SEGURA_WS_OP_BINARY, bin, 5);
    result_free(r);
}


static void
test_fragment_flags(void **state)
{
    size_t                  n, len;
    unsigned char           buf[128], *p;
    ngx_segura_ws_event_t   ev;
    ngx_segura_ws_parser_t  ws;

    (void) state;

    /* empty first frame: FIRST goes with the first data delivered */

    len = frame(buf, NGX_SEGURA_WS_OP_TEXT, 0, key1, NULL, 0);
    len += frame(buf + len, NGX_SEGURA_WS_OP_CONT, 0, key2, "ab", 2);
    len += frame(buf + len, FIN | NGX_SEGURA_WS_OP_CONT, 0, key1, NULL, 0);

    ngx_segura_ws_parser_init(&ws, 1024);
    p = buf;

    assert_int_equal(ngx_segura_ws_parse(&ws, p, len, &n, &ev),
                     NGX_SEGURA_WS_DATA);
    assert_int_equal(ev.flags, NGX_SEGURA_WS_FIRST);
    assert_int_equal(ev.len, 2);
    assert_memory_equal(ev.data, "ab", 2);
    p += n;
    len -= n;

    assert_int_equal(ngx_segura_ws_parse(&ws, p, len, &n, &ev),
                     NGX_SEGURA_WS_DATA);
    assert_int_equal(ev.flags, NGX_SEGURA_WS_LAST);
    assert_int_equal(ev.opcode, NGX_SEGURA_WS_OP_TEXT);
    assert_int_equal(ev.len, 0);
    assert_int_equal(n, len);

    /* an empty message */

    len = frame(buf, FIN | NGX_SEGURA_WS_OP_BINARY, 0, key1, NULL, 0);
    assert_int_equal(ngx_segura_ws_parse(&ws, buf, len, &n, &ev),
                     NGX_SEGURA_WS_DATA);
    assert_int_equal(ev.flags, NGX_SEGURA_WS_FIRST | NGX_SEGURA_WS_LAST);
    assert_int_equal(ev.opcode, NGX_SEGURA_WS_OP_BINARY);
    assert_int_equal(ev.len, 0);
    assert_int_equal(n, len);
}


static void
test_lengths(void **state)
{
    size_t          i, k, len;
    result_t       *r, *r1;
    unsigned char  *pl, *buf;
    size_t          one = 1;

    static const size_t  sizes[] = { 0, 1, 125, 126, 127, 65535, 65536,
                                     70000 };

    (void) state;

    pl = malloc(70000);
    buf = malloc(70000 + 14);
    assert_non_null(pl);
    assert_non_null(buf);

    for (i = 0; i < 70000; i++) {
        pl[i] = (unsigned char) (i * 7 + 3);
    }

    for (k = 0; k < sizeof(sizes) / sizeof(sizes[0]); k++) {
        len = frame(buf, FIN | NGX_SEGURA_WS_OP_BINARY, 0, key1, pl, sizes[k]);

        assert_int_equal(len, sizes[k] + 4
                              + (sizes[k] < 126 ? 2
                                 : sizes[k] < 65536 ? 4 : 10));

        r = feed_all(buf, len, 1 << 20);
        assert_int_equal(r->n, 1);
        expect_rec(r, 0, NGX_SEGURA_WS_DATA, NGX_SEGURA_WS_OP_BINARY, pl,
                   sizes[k]);

        r1 = feed(buf, len, 1 << 20, &one, 1);
        result_same(r, r1);
        result_free(r1);
        result_free(r);
    }

    /* the 64-bit form for a length that needs it, fed header-first */

    len = frame(buf, FIN | NGX_SEGURA_WS_OP_BINARY, 64, key2, pl, 65536);
    assert_int_equal(len, 65536 + 14);
    r = feed_every_way(buf, 20, 1 << 20);
    assert_int_equal(r->n, 0);
    assert_int_equal(r->msg_len, 6);
    result_free(r);

    free(pl);
    free(buf);
}


static void
test_control_between_fragments(void **state)
{
    size_t          len;
    result_t       *r;
    unsigned char   buf[256], close[32];

    (void) state;

    len = frame(buf, NGX_SEGURA_WS_OP_TEXT, 0, key1, "caf", 3);
    len += frame(buf + len, FIN | NGX_SEGURA_WS_OP_PING, 0, key2, "p1", 2);
    len += frame(buf + len, NGX_SEGURA_WS_OP_CONT, 0, key1, "\xc3", 1);
    len += frame(buf + len, FIN | NGX_SEGURA_WS_OP_PONG, 0, key2, NULL, 0);
    len += frame(buf + len, FIN | NGX_SEGURA_WS_OP_CONT, 0, key1, "\xa9!", 2);

    close[0] = 0x03;
    close[1] = 0xe8;
    memcpy(close + 2, "bye \xe2\x82\xac", 7);
    len += frame(buf + len, FIN | NGX_SEGURA_WS_OP_CLOSE, 0, key2, close, 9);
    len += frame(buf + len, FIN | NGX_SEGURA_WS_OP_CLOSE, 0, key1, NULL, 0);

    r = feed_every_way(buf, len, 1024);

    assert_int_equal(r->n, 5);
    expect_rec(r, 0, NGX_SEGURA_WS_PING, NGX_SEGURA_WS_OP_PING, "p1", 2);
    expect_rec(r, 1, NGX_SEGURA_WS_PONG, NGX_SEGURA_WS_OP_PONG, NULL, 0);
    expect_rec(r, 2, NGX_SEGURA_WS_DATA, NGX_SEGURA_WS_OP_TEXT,
               "caf\xc3\xa9!", 6);
    expect_rec(r, 3, NGX_SEGURA_WS_CLOSE, NGX_SEGURA_WS_OP_CLOSE, close, 9);
    assert_int_equal(r->recs[3].code, 1000);
    expect_rec(r, 4, NGX_SEGURA_WS_CLOSE, NGX_SEGURA_WS_OP_CLOSE, NULL, 0);
    assert_int_equal(r->recs[4].code, NGX_SEGURA_WS_CLOSE_NO_STATUS);

    result_free(r);
}


static void
test_close_event(void **state)
{
    size_t                  n, len;
    unsigned char           buf[256], pl[130];
    ngx_segura_ws_event_t   ev;
    ngx_segura_ws_parser_t  ws;

    (void) state;

    pl[0] = 0x0f;
    pl[1] = 0xa0;  /* 4000 */
    memset(pl + 2, 'x', 123);

    len = frame(buf, FIN | NGX_SEGURA_WS_OP_CLOSE, 0, key1, pl, 125);

    ngx_segura_ws_parser_init(&ws, 0);

    assert_int_equal(ngx_segura_ws_parse(&ws, buf, len, &n, &ev),
                     NGX_SEGURA_WS_CLOSE);
    assert_int_equal(n, len);
    assert_int_equal(ev.code, 4000);
    assert_int_equal(ev.len, 125);
    assert_int_equal(ev.reason_len, 123);
    assert_memory_equal(ev.reason, pl + 2, 123);
}


/* protocol errors */


static void
test_unmasked(void **state)
{
    size_t         len;
    unsigned char  buf[64];

    (void) state;

    len = frame(buf, FIN | NGX_SEGURA_WS_OP_TEXT, 0, NULL, "Hello", 5);
    expect_error(buf, len, 1024, 1002);

    len = frame(buf, FIN | NGX_SEGURA_WS_OP_PING, 0, NULL, NULL, 0);
    expect_error(buf, len, 1024, 1002);

    /* detected at the second byte, before anything else arrives */
    expect_error(buf, 2, 1024, 1002);
}


static void
test_rsv_and_opcodes(void **state)
{
    size_t         len;
    unsigned       op, rsv;
    unsigned char  buf[64];

    (void) state;

    for (rsv = 0x10; rsv <= 0x40; rsv <<= 1) {
        len = frame(buf, FIN | rsv | NGX_SEGURA_WS_OP_TEXT, 0, key1, "a", 1);
        expect_error(buf, len, 1024, 1002);
        expect_error(buf, 1, 1024, 1002);

        len = frame(buf, FIN | rsv | NGX_SEGURA_WS_OP_PING, 0, key1, NULL, 0);
        expect_error(buf, len, 1024, 1002);
    }

    for (op = 0; op < 16; op++) {
        if (op <= 2 || (op >= 8 && op <= 10)) {
            continue;
        }

        len = frame(buf, FIN | op, 0, key1, "a", 1);
        expect_error(buf, len, 1024, 1002);
    }
}


static void
test_control_rules(void **state)
{
    size_t          len;
    unsigned        op;
    result_t       *r;
    unsigned char   buf[256], pl[126];

    (void) state;

    memset(pl, 'a', sizeof(pl));

    for (op = NGX_SEGURA_WS_OP_CLOSE; op <= NGX_SEGURA_WS_OP_PONG; op++) {

        /* not FIN */
        len = frame(buf, op, 0, key1, NULL, 0);
        expect_error(buf, len, 1024, 1002);

        /* 126 bytes, 7-bit form cannot say it: 16-bit form */
        len = frame(buf, FIN | op, 0, key1, pl, 126);
        expect_error(buf, len, 1024, 1002);
        expect_error(buf, 2, 1024, 1002);

        /* 125 in the 16-bit form: too long a form for a control frame */
        len = frame(buf, FIN | op, 16, key1, pl, 125);
        expect_error(buf, len, 1024, 1002);

        /* 125 is fine; close needs a valid payload */
        if (op != NGX_SEGURA_WS_OP_CLOSE) {
            len = frame(buf, FIN | op, 0, key1, pl, 125);
            r = feed_every_way(buf, len, 1024);
            assert_int_equal(r->n, 1);
            expect_rec(r, 0, op == NGX_SEGURA_WS_OP_PING
                             ? NGX_SEGURA_WS_PING : NGX_SEGURA_WS_PONG,
                       op, pl, 125);
            result_free(r);
        }
    }

    /* control frames do not count toward the message size */

    len = frame(buf, NGX_SEGURA_WS_OP_BINARY, 0, key1, pl, 4);
    len += frame(buf + len, FIN | NGX_SEGURA_WS_OP_PING, 0, key2, pl, 100);
    len += frame(buf + len, FIN | NGX_SEGURA_WS_OP_CONT, 0, key1, pl, 4);
    r = feed_every_way(buf, len, 8);
    assert_int_equal(r->n, 2);
    expect_rec(r, 1, NGX_SEGURA_WS_DATA, NGX_SEGURA_WS_OP_BINARY, pl, 8);
    result_free(r);
}


static void
test_fragmentation_rules(void **state)
{
    size_t         len;
    unsigned char  buf[256];

    (void) state;

    /* continuation without a message */
    len = frame(buf, FIN | NGX_SEGURA_WS_OP_CONT, 0, key1, "a", 1);
    expect_error(buf, len, 1024, 1002);

    len = frame(buf, NGX_SEGURA_WS_OP_CONT, 0, key1, "a", 1);
    expect_error(buf, len, 1024, 1002);

    /* continuation after a finished message */
    len = frame(buf, FIN | NGX_SEGURA_WS_OP_TEXT, 0, key1, "a", 1);
    len += frame(buf + len, FIN | NGX_SEGURA_WS_OP_CONT, 0, key1, "a", 1);
    expect_error(buf, len, 1024, 1002);

    /* a new data frame while a message is open */
    len = frame(buf, NGX_SEGURA_WS_OP_TEXT, 0, key1, "a", 1);
    len += frame(buf + len, FIN | NGX_SEGURA_WS_OP_TEXT, 0, key1, "b", 1);
    expect_error(buf, len, 1024, 1002);

    len = frame(buf, NGX_SEGURA_WS_OP_BINARY, 0, key1, "a", 1);
    len += frame(buf + len, FIN | NGX_SEGURA_WS_OP_PING, 0, key1, NULL, 0);
    len += frame(buf + len, NGX_SEGURA_WS_OP_BINARY, 0, key1, "b", 1);
    expect_error(buf, len, 1024, 1002);
}


static void
test_length_rules(void **state)
{
    size_t          len;
    unsigned char  *buf, *pl;

    (void) state;

    buf = calloc(1, 70000);
    pl = calloc(1, 70000);
    assert_non_null(buf);
    assert_non_null(pl);

    /* non-minimal 16-bit */
    len = frame(buf, FIN | NGX_SEGURA_WS_OP_BINARY, 16, key1, pl, 125);
    expect_error(buf, len, 1 << 20, 1002);
    len = frame(buf, FIN | NGX_SEGURA_WS_OP_BINARY, 16, key1, pl, 0);
    expect_error(buf, len, 1 << 20, 1002);
    expect_error(buf, 4, 1 << 20, 1002);

    /* non-minimal 64-bit */
    len = frame(buf, FIN | NGX_SEGURA_WS_OP_BINARY, 64, key1, pl, 65535);
    expect_error(buf, len, 1 << 20, 1002);
    len = frame(buf, FIN | NGX_SEGURA_WS_OP_BINARY, 64, key1, pl, 126);
    expect_error(buf, len, 1 << 20, 1002);
    expect_error(buf, 10, 1 << 20, 1002);

    /* the most significant bit */
    len = frame(buf, FIN | NGX_SEGURA_WS_OP_BINARY, 64, key1, NULL,
                0x8000000000000000ULL);
    expect_error(buf, len, UINT64_MAX, 1002);
    len = frame(buf, FIN | NGX_SEGURA_WS_OP_BINARY, 64, key1, NULL,
                0xffffffffffffffffULL);
    expect_error(buf, len, UINT64_MAX, 1002);

    /* the largest valid length passes the header with no limit */
    len = frame(buf, FIN | NGX_SEGURA_WS_OP_BINARY, 64, key1, NULL,
                0x7fffffffffffffffULL);
    {
        result_t  *r;

        r = feed_every_way(buf, len, UINT64_MAX);
        assert_int_equal(r->n, 0);
        assert_int_equal(r->consumed, len);
        result_free(r);
    }

    free(buf);
    free(pl);
}


static void
test_max_message(void **state)
{
    size_t          len;
    result_t       *r;
    unsigned char   buf[256], pl[32];

    (void) state;

    memset(pl, 'z', sizeof(pl));

    /* one frame over the limit: 1009 from the two header bytes alone */
    len = frame(buf, FIN | NGX_SEGURA_WS_OP_TEXT, 0, key1, pl, 11);
    expect_error(buf, len, 10, 1009);
    expect_error(buf, 2, 10, 1009);

    /* exactly the limit, twice: the size is per message */
    len = frame(buf, FIN | NGX_SEGURA_WS_OP_TEXT, 0, key1, pl, 10);
    len += frame(buf + len, NGX_SEGURA_WS_OP_BINARY, 0, key1, pl, 4);
    len += frame(buf + len, FIN | NGX_SEGURA_WS_OP_CONT, 0, key2, pl, 6);
    r = feed_every_way(buf, len, 10);
    assert_int_equal(r->n, 2);
    expect_rec(r, 0, NGX_SEGURA_WS_DATA, NGX_SEGURA_WS_OP_TEXT, pl, 10);
    expect_rec(r, 1, NGX_SEGURA_WS_DATA, NGX_SEGURA_WS_OP_BINARY, pl, 10);
    result_free(r);

    /* fragments adding up past it: 1009 at the header of the third */
    len = frame(buf, NGX_SEGURA_WS_OP_BINARY, 0, key1, pl, 4);
    len += frame(buf + len, NGX_SEGURA_WS_OP_CONT, 0, key2, pl, 4);
    len += frame(buf + len, FIN | NGX_SEGURA_WS_OP_CONT, 0, key2, pl, 3);
    expect_error(buf, len, 10, 1009);
    expect_error(buf, len - 7, 10, 1009);

    r = feed_all(buf, len, 10);
    assert_int_equal(r->n, 1);
    assert_int_equal(r->recs[0].flags, REC_PARTIAL);
    assert_int_equal(r->recs[0].len, 8);
    assert_int_equal(r->consumed, len - 7);
    result_free(r);

    /* 16-bit and 64-bit lengths against the default 1 MiB */
    len = frame(buf, FIN | NGX_SEGURA_WS_OP_BINARY, 64, key1, NULL,
                (1 << 20) + 1);
    expect_error(buf, len, 1 << 20, 1009);

    len = frame(buf, FIN | NGX_SEGURA_WS_OP_BINARY, 0, key1, NULL, 300);
    expect_error(buf, len, 299, 1009);

    /* a limit of 0 allows only empty messages */
    len = frame(buf, FIN | NGX_SEGURA_WS_OP_BINARY, 0, key1, NULL, 0);
    r = feed_every_way(buf, len, 0);
    assert_int_equal(r->n, 1);
    result_free(r);
}


static void
test_close_payload_rules(void **state)
{
    size_t          i, len;
    result_t       *r;
    unsigned char   buf[256], pl[8];

    static const unsigned  valid[] = {
        1000, 1001, 1002, 1003, 1007, 1008, 1009, 1010, 1011, 3000, 3999,
        4000, 4999
    };
    static const unsigned  invalid[] = {
        0, 1, 999, 1004, 1005, 1006, 1012, 1013, 1014, 1015, 1016, 1100,
        2000, 2999, 5000, 65535
    };

    (void) state;

    /* one byte */
    pl[0] = 0x03;
    len = frame(buf, FIN | NGX_SEGURA_WS_OP_CLOSE, 0, key1, pl, 1);
    expect_error(buf, len, 1024, 1002);

    for (i = 0; i < sizeof(valid) / sizeof(valid[0]); i++) {
        pl[0] = (unsigned char) (valid[i] >> 8);
        pl[1] = (unsigned char) valid[i];
        len = frame(buf, FIN | NGX_SEGURA_WS_OP_CLOSE, 0, key1, pl, 2);

        r = feed_every_way(buf, len, 1024);
        assert_int_equal(r->n, 1);
        assert_int_equal(r->recs[0].type, NGX_SEGURA_WS_CLOSE);
        assert_int_equal(r->recs[0].code, valid[i]);
        result_free(r);

        assert_true(ngx_segura_ws_close_code_valid(valid[i]));
    }

    for (i = 0; i < sizeof(invalid) / sizeof(invalid[0]); i++) {
        pl[0] = (unsigned char) (invalid[i] >> 8);
        pl[1] = (unsigned char) invalid[i];
        len = frame(buf, FIN | NGX_SEGURA_WS_OP_CLOSE, 0, key1, pl, 2);
        expect_error(buf, len, 1024, 1002);

        assert_false(ngx_segura_ws_close_code_valid(invalid[i]));
    }

    /* the reason must be UTF-8 */
    pl[0] = 0x03;
    pl[1] = 0xe8;
    memcpy(pl + 2, "a\xc0\x80", 3);
    len = frame(buf, FIN | NGX_SEGURA_WS_OP_CLOSE, 0, key1, pl, 5);
    expect_error(buf, len, 1024, 1007);

    memcpy(pl + 2, "a\xe2\x82", 3);
    len = frame(buf, FIN | NGX_SEGURA_WS_OP_CLOSE, 0, key1, pl, 5);
    expect_error(buf, len, 1024, 1007);

    memcpy(pl + 2, "\xf0\x9f\x98\x80", 4);
    len = frame(buf, FIN | NGX_SEGURA_WS_OP_CLOSE, 0, key1, pl, 6);
    r = feed_every_way(buf, len, 1024);
    assert_int_equal(r->n, 1);
    assert_int_equal(r->recs[0].type, NGX_SEGURA_WS_CLOSE);
    result_free(r);
}


static void
test_error_is_sticky(void **state)
{
    size_t                  n, len;
    unsigned char           buf[64];
    ngx_segura_ws_event_t   ev;
    ngx_segura_ws_parser_t  ws;

    (void) state;

    len = frame(buf, FIN | 0x40 | NGX_SEGURA_WS_OP_TEXT, 0, key1, "a", 1);

    ngx_segura_ws_parser_init(&ws, 1024);

    assert_int_equal(ngx_segura_ws_parse(&ws, buf, len, &n, &ev),
                     NGX_SEGURA_WS_ERROR);
    assert_int_equal(ev.type, NGX_SEGURA_WS_ERROR);
    assert_int_equal(ev.code, 1002);
    assert_non_null(ev.reason);
    assert_true(n <= len);

    len = frame(buf, FIN | NGX_SEGURA_WS_OP_TEXT, 0, key1, "a", 1);

    assert_int_equal(ngx_segura_ws_parse(&ws, buf, len, &n, &ev),
                     NGX_SEGURA_WS_ERROR);
    assert_int_equal(n, 0);
    assert_int_equal(ev.code, 1002);

    assert_int_equal(ngx_segura_ws_parse(&ws, buf, 0, &n, &ev),
                     NGX_SEGURA_WS_ERROR);
}


/* UTF-8 */


static void
utf8_ok(const char *s, size_t slen)
{
    size_t          len, cut;
    result_t       *r;
    unsigned char   buf[256];

    /* in one frame, every chunking */

    len = frame(buf, FIN | NGX_SEGURA_WS_OP_TEXT, 0, key1, s, slen);
    r = feed_every_way(buf, len, 1024);
    assert_int_equal(r->n, 1);
    expect_rec(r, 0, NGX_SEGURA_WS_DATA, NGX_SEGURA_WS_OP_TEXT, s, slen);
    result_free(r);

    /* split between two frames at every point, with a ping in between */

    for (cut = 0; cut <= slen; cut++) {
        len = frame(buf, NGX_SEGURA_WS_OP_TEXT, 0, key1, s, cut);
        len += frame(buf + len, FIN | NGX_SEGURA_WS_OP_PING, 0, key2, "x", 1);
        len += frame(buf + len, FIN | NGX_SEGURA_WS_OP_CONT, 0, key2,
                     s + cut, slen - cut);
        r = feed_every_way(buf, len, 1024);
        assert_int_equal(r->n, 2);
        expect_rec(r, 1, NGX_SEGURA_WS_DATA, NGX_SEGURA_WS_OP_TEXT, s, slen);
        result_free(r);
    }
}


static void
utf8_bad(const char *s, size_t slen, size_t valid)
{
    size_t          len, cut;
    result_t       *r;
    unsigned char   buf[256];

    len = frame(buf, FIN | NGX_SEGURA_WS_OP_TEXT, 0, key1, s, slen);
    r = feed_every_way(buf, len, 1024);
    assert_int_equal(r->n, 1);
    assert_int_equal(r->recs[0].type, NGX_SEGURA_WS_ERROR);
    assert_int_equal(r->recs[0].code, 1007);

    /* the valid prefix, no more: fail at the first invalid byte */
    assert_int_equal(r->recs[0].len, valid);
    assert_memory_equal(r->recs[0].data, s, valid);
    result_free(r);

    for (cut = 0; cut <= slen; cut++) {
        len = frame(buf, NGX_SEGURA_WS_OP_TEXT, 0, key1, s, cut);
        len += frame(buf + len, FIN | NGX_SEGURA_WS_OP_CONT, 0, key2,
                     s + cut, slen - cut);
        r = feed_every_way(buf, len, 1024);
        assert_int_equal(r->n, 1);
        assert_int_equal(r->recs[0].code, 1007);
        assert_int_equal(r->recs[0].len, valid);
        result_free(r);
    }

    assert_false(ngx_segura_ws_utf8_valid((const unsigned char *) s, slen));
}


static void
test_utf8_valid(void **state)
{
    (void) state;

    utf8_ok("", 0);
    utf8_ok("a\xc2\x80z", 4);                  /* U+0080 */
    utf8_ok("\xdf\xbf", 2);                     /* U+07FF */
    utf8_ok("a\xe0\xa0\x80z", 5);              /* U+0800 */
    utf8_ok("\xe2\x82\xac", 3);                 /* U+20AC */
    utf8_ok("\xed\x9f\xbf", 3);                 /* U+D7FF */
    utf8_ok("\xee\x80\x80", 3);                 /* U+E000 */
    utf8_ok("\xef\xbf\xbf", 3);                 /* U+FFFF */
    utf8_ok("a\xf0\x90\x80\x80z", 6);          /* U+10000 */
    utf8_ok("\xf0\x9f\x98\x80", 4);             /* U+1F600 */
    utf8_ok("\xf4\x8f\xbf\xbf", 4);             /* U+10FFFF */
    utf8_ok("\xce\xba\xe1\xbd\xb9\xcf\x83\xce\xbc\xce\xb5", 11);
}


static void
test_utf8_invalid(void **state)
{
    (void) state;

    utf8_bad("\xc0\x80", 2, 0);                 /* overlong NUL */
    utf8_bad("ab\xc1\xbf", 4, 2);               /* overlong */
    utf8_bad("\xe0\x9f\xbf", 3, 1);             /* overlong 3-byte */
    utf8_bad("\xf0\x8f\xbf\xbf", 4, 1);         /* overlong 4-byte */
    utf8_bad("\xed\xa0\x80", 3, 1);             /* surrogate U+D800 */
    utf8_bad("x\xed\xbf\xbf", 4, 2);            /* surrogate U+DFFF */
    utf8_bad("\xf4\x90\x80\x80", 4, 1);         /* U+110000 */
    utf8_bad("\xf5\x80\x80\x80", 4, 0);
    utf8_bad("\xff", 1, 0);
    utf8_bad("\x80", 1, 0);                     /* lone continuation */
    utf8_bad("\xc2\x41", 2, 1);                 /* bad continuation */
    utf8_bad("\xe2\x82\x41", 3, 2);
    utf8_bad("\xf0\x9f\x98\xc0", 4, 3);

    /* ends inside a character */
    utf8_bad("\xc2", 1, 1);
    utf8_bad("a\xe2\x82", 3, 3);
    utf8_bad("\xf0\x9f\x98", 3, 3);
}


static void
test_utf8_fail_fast(void **state)
{
    size_t                  n, len;
    unsigned char           buf[64];
    ngx_segura_ws_event_t   ev;
    ngx_segura_ws_parser_t  ws;

    (void) state;

    /* a 20-byte frame of which only "ab\xc0" has arrived */

    len = frame(buf, FIN | NGX_SEGURA_WS_OP_TEXT, 0, key1,
                "ab\xc0\x80xxxxxxxxxxxxxxxx", 20);
    assert_int_equal(len, 26);

    ngx_segura_ws_parser_init(&ws, 1024);

    assert_int_equal(ngx_segura_ws_parse(&ws, buf, 9, &n, &ev),
                     NGX_SEGURA_WS_DATA);
    assert_int_equal(n, 8);
    assert_int_equal(ev.flags, NGX_SEGURA_WS_FIRST);
    assert_memory_equal(ev.data, "ab", 2);

    /* the invalid byte is left as it came, masked */
    assert_int_equal(buf[8], 0xc0 ^ key1[2]);

    assert_int_equal(ngx_segura_ws_parse(&ws, buf + n, 1, &n, &ev),
                     NGX_SEGURA_WS_ERROR);
    assert_int_equal(ev.code, 1007);
    assert_int_equal(n, 0);
}


/* encoder */


static void
test_frame_header(void **state)
{
    size_t                  n, len;
    result_t               *r;
    unsigned char           buf[NGX_SEGURA_WS_HEADER_MAX + 8];

    static const unsigned char  h10[] = {
        0x82, 127, 0, 0, 0, 0, 0, 1, 0, 0
    };

    (void) state;

    n = ngx_segura_ws_frame_header(buf, NGX_SEGURA_WS_OP_TEXT, 1, 5);
    assert_int_equal(n, 2);
    assert_int_equal(buf[0], 0x81);
    assert_int_equal(buf[1], 5);

    n = ngx_segura_ws_frame_header(buf, NGX_SEGURA_WS_OP_BINARY, 0, 125);
    assert_int_equal(n, 2);
    assert_int_equal(buf[0], 0x02);
    assert_int_equal(buf[1], 125);

    n = ngx_segura_ws_frame_header(buf, NGX_SEGURA_WS_OP_CONT, 1, 126);
    assert_int_equal(n, 4);
    assert_int_equal(buf[0], 0x80);
    assert_int_equal(buf[1], 126);
    assert_int_equal(buf[2], 0);
    assert_int_equal(buf[3], 126);

    n = ngx_segura_ws_frame_header(buf, NGX_SEGURA_WS_OP_BINARY, 1, 65535);
    assert_int_equal(n, 4);
    assert_int_equal(buf[2], 0xff);
    assert_int_equal(buf[3], 0xff);

    n = ngx_segura_ws_frame_header(buf, NGX_SEGURA_WS_OP_BINARY, 1, 65536);
    assert_int_equal(n, 10);
    assert_memory_equal(buf, h10, 10);

    n = ngx_segura_ws_frame_header(buf, NGX_SEGURA_WS_OP_BINARY, 1,
                                   0x7fffffffffffffffULL);
    assert_int_equal(n, 10);
    assert_int_equal(buf[2], 0x7f);
    assert_int_equal(buf[9], 0xff);

    n = ngx_segura_ws_frame_header(buf, NGX_SEGURA_WS_OP_PING, 1, 125);
    assert_int_equal(n, 2);
    assert_int_equal(buf[0], 0x89);

    n = ngx_segura_ws_frame_header(buf, NGX_SEGURA_WS_OP_CLOSE, 1, 0);
    assert_int_equal(n, 2);
    assert_int_equal(buf[0], 0x88);
    assert_int_equal(buf[1], 0);

    /* no frame has these */
    assert_int_equal(ngx_segura_ws_frame_header(buf, 3, 1, 0), 0);
    assert_int_equal(ngx_segura_ws_frame_header(buf, 0xb, 1, 0), 0);
    assert_int_equal(ngx_segura_ws_frame_header(buf, 0x12, 1, 0), 0);
    assert_int_equal(ngx_segura_ws_frame_header(buf, NGX_SEGURA_WS_OP_PING,
                                                0, 0), 0);
    assert_int_equal(ngx_segura_ws_frame_header(buf, NGX_SEGURA_WS_OP_PONG,
                                                1, 126), 0);
    assert_int_equal(ngx_segura_ws_frame_header(buf, NGX_SEGURA_WS_OP_BINARY,
                                                1, 0x8000000000000000ULL),
                     0);

    /* what it writes, masked by a client, parses back */

    n = ngx_segura_ws_frame_header(buf, NGX_SEGURA_WS_OP_TEXT, 1, 3);
    buf[1] |= 0x80;
    memset(buf + n, 0, 4);
    memcpy(buf + n + 4, "abc", 3);
    len = n + 7;
    r = feed_every_way(buf, len, 1024);
    assert_int_equal(r->n, 1);
    expect_rec(r, 0, NGX_SEGURA_WS_DATA, NGX_SEGURA_WS_OP_TEXT, "abc", 3);
    result_free(r);
}


static void
test_close_payload(void **state)
{
    size_t         n, i;
    unsigned char  out[NGX_SEGURA_WS_CONTROL_MAX], reason[200];

    (void) state;

    assert_int_equal(ngx_segura_ws_close_payload(out, 0, NULL, 0), 0);

    n = ngx_segura_ws_close_payload(out, 1000, NULL, 0);
    assert_int_equal(n, 2);
    assert_int_equal(out[0], 0x03);
    assert_int_equal(out[1], 0xe8);

    n = ngx_segura_ws_close_payload(out, 4001,
                                    (const unsigned char *) "auth_rejected",
                                    13);
    assert_int_equal(n, 15);
    assert_int_equal(out[0], 0x0f);
    assert_int_equal(out[1], 0xa1);
    assert_memory_equal(out + 2, "auth_rejected", 13);

    /* ASCII is cut at 123 bytes */
    memset(reason, 'r', sizeof(reason));
    n = ngx_segura_ws_close_payload(out, 1011, reason, sizeof(reason));
    assert_int_equal(n, 125);

    /* 3-byte characters: 41 fit exactly */
    for (i = 0; i + 3 <= sizeof(reason); i += 3) {
        memcpy(reason + i, "\xe2\x82\xac", 3);
    }

    n = ngx_segura_ws_close_payload(out, 1011, reason, 198);
    assert_int_equal(n, 2 + 123);
    assert_true(ngx_segura_ws_utf8_valid(out + 2, n - 2));

    /* after one ASCII byte the 41st is cut by the limit: dropped whole */
    reason[0] = 'a';
    memmove(reason + 1, reason + 3, 195);
    n = ngx_segura_ws_close_payload(out, 1011, reason, 196);
    assert_int_equal(n, 2 + 121);
    assert_true(ngx_segura_ws_utf8_valid(out + 2, n - 2));

    /* 4-byte characters: 30 of them are 120 bytes, the 31st does not fit */
    for (i = 0; i + 4 <= sizeof(reason); i += 4) {
        memcpy(reason + i, "\xf0\x9f\x98\x80", 4);
    }

    n = ngx_segura_ws_close_payload(out, 1011, reason, 200);
    assert_int_equal(n, 2 + 120);
    assert_true(ngx_segura_ws_utf8_valid(out + 2, n - 2));

    /* shifted by one: a lead byte just before the limit */
    memmove(reason + 1, reason, 199);
    reason[0] = 'a';
    n = ngx_segura_ws_close_payload(out, 1011, reason, 200);
    assert_int_equal(n, 2 + 121);
    assert_true(ngx_segura_ws_utf8_valid(out + 2, n - 2));

    /* an invalid reason keeps its valid prefix */
    n = ngx_segura_ws_close_payload(out, 1000,
                                    (const unsigned char *) "ok\xc0\x80", 4);
    assert_int_equal(n, 4);
}


/* handshake */


static void
test_accept(void **state)
{
    unsigned char  out[NGX_SEGURA_WS_ACCEPT_LEN];

    static const char  key[] = "dGhlIHNhbXBsZSBub25jZQ==";

    (void) state;

    assert_true(ngx_segura_ws_key_valid((const unsigned char *) key, 24));

    assert_int_equal(ngx_segura_ws_accept(out, (const unsigned char *) key,
                                          24), 0);
    /* RFC 6455 1.3 */
    assert_memory_equal(out, "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=", 28);

    assert_int_equal(ngx_segura_ws_accept(out, (const unsigned char *) key,
                                          65), -1);
}


static void
test_key_valid(void **state)
{
    size_t         i;
    unsigned char  k[32];

    static const char  *good[] = {
        "dGhlIHNhbXBsZSBub25jZQ==",
        "AAAAAAAAAAAAAAAAAAAAAA==",
        "/////////////////////w==",
        "+/+/+/+/+/+/+/+/+/+/+g==",
    };
    static const char  *bad[] = {
        "",
        "dGhlIHNhbXBsZSBub25jZQ=",          /* 23 */
        "dGhlIHNhbXBsZSBub25jZQ===",        /* 25 */
        "dGhlIHNhbXBsZSBub25jZQ",           /* no padding */
        "dGhlIHNhbXBsZSBub25j",             /* 15 bytes */
        "dGhlIHNhbXBsZSBub25jZQA=",         /* 17 bytes */
        "dGhlIHNhbXBsZSBub25jZQAB",         /* 18 bytes */
        "dGhlIHNhbXBsZSBub25jZR==",         /* non-zero unused bits */
        "dGhlIHNhbXBsZSBub25jZ===",
        "dGhlIHNhbXBs-SBub25jZQ==",         /* base64url */
        "dGhlIHNhbXBs_SBub25jZQ==",
        "dGhlIHNhbXBs SBub25jZQ==",
        "dGhlIHNhbXBs*SBub25jZQ==",
        "dGhlIHNhbXBs=SBub25jZQ==",
        "dGhlIHNhbXBs\xc3\xa9SBub25jZQ=",
    };

    (void) state;

    for (i = 0; i < sizeof(good) / sizeof(good[0]); i++) {
        assert_true(ngx_segura_ws_key_valid((const unsigned char *) good[i],
                                            strlen(good[i])));
    }

    for (i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        if (ngx_segura_ws_key_valid((const unsigned char *) bad[i],
                                    strlen(bad[i])))
        {
            fail_msg("key \"%s\" accepted", bad[i]);
        }
    }

    /* a NUL inside */
    memcpy(k, good[0], 24);
    k[5] = '\0';
    assert_false(ngx_segura_ws_key_valid(k, 24));
}


static void
test_token_list(void **state)
{
    size_t  i;

    static const struct {
        const char  *list;
        int          has;
    } cases[] = {
        { "Upgrade", 1 },
        { "upgrade", 1 },
        { "UPGRADE", 1 },
        { "keep-alive, Upgrade", 1 },
        { "keep-alive,Upgrade", 1 },
        { "Upgrade, keep-alive", 1 },
        { "  upgrade\t ,close", 1 },
        { ",,upgrade,,", 1 },
        { "keep-alive,\tUpGrAdE\t", 1 },
        { "", 0 },
        { ",", 0 },
        { "keep-alive", 0 },
        { "Upgrade2", 0 },
        { "Upgrad", 0 },
        { "xUpgrade", 0 },
        { "keep-alive Upgrade", 0 },
        { "\"Upgrade\"", 0 },
        { "Upgrade;q=1", 0 },
    };

    (void) state;

    for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        if (ngx_segura_ws_token_list_has((const unsigned char *) cases[i].list,
                                         strlen(cases[i].list), "upgrade")
            != cases[i].has)
        {
            fail_msg("\"%s\": expected %d", cases[i].list, cases[i].has);
        }
    }

    /* the length bounds the search, not a NUL */
    assert_false(ngx_segura_ws_token_list_has(
                     (const unsigned char *) "upgrade", 6, "upgrade"));
}


/* chunking */


static size_t
multi_frame_input(unsigned char *buf)
{
    size_t         len;
    unsigned char  close[4];

    len = frame(buf, FIN | NGX_SEGURA_WS_OP_TEXT, 0, key1,
                "{\"type\":\"resize\",\"cols\":80,\"rows\":24}", 37);
    len += frame(buf + len, NGX_SEGURA_WS_OP_BINARY, 0, key2, "ls -l", 5);
    len += frame(buf + len, FIN | NGX_SEGURA_WS_OP_PING, 0, key1, "hi", 2);
    len += frame(buf + len, FIN | NGX_SEGURA_WS_OP_CONT, 0, key1, "\r", 1);
    len += frame(buf + len, NGX_SEGURA_WS_OP_TEXT, 0, key2,
                 "\xe2\x82", 2);
    len += frame(buf + len, NGX_SEGURA_WS_OP_CONT, 0, key1, NULL, 0);
    len += frame(buf + len, FIN | NGX_SEGURA_WS_OP_PONG, 0, key1, NULL, 0);
    len += frame(buf + len, FIN | NGX_SEGURA_WS_OP_CONT, 0, key2,
                 "\xac \xf0\x9f\x98\x80", 6);
    len += frame(buf + len, FIN | NGX_SEGURA_WS_OP_BINARY, 0, key1, NULL, 0);

    close[0] = 0x03;
    close[1] = 0xe9;
    close[2] = 'b';
    close[3] = 'y';
    len += frame(buf + len, FIN | NGX_SEGURA_WS_OP_CLOSE, 0, key2, close, 4);

    return len;
}


static void
test_every_chunking(void **state)
{
    size_t          len, a, b, sizes[3];
    result_t       *all, *r;
    unsigned char   buf[512];

    (void) state;

    len = multi_frame_input(buf);

    all = feed_every_way(buf, len, 1024);

    assert_int_equal(all->n, 7);
    expect_rec(all, 0, NGX_SEGURA_WS_DATA, NGX_SEGURA_WS_OP_TEXT,
               "{\"type\":\"resize\",\"cols\":80,\"rows\":24}", 37);
    expect_rec(all, 1, NGX_SEGURA_WS_PING, NGX_SEGURA_WS_OP_PING, "hi", 2);
    expect_rec(all, 2, NGX_SEGURA_WS_DATA, NGX_SEGURA_WS_OP_BINARY,
               "ls -l\r", 6);
    expect_rec(all, 3, NGX_SEGURA_WS_PONG, NGX_SEGURA_WS_OP_PONG, NULL, 0);
    expect_rec(all, 4, NGX_SEGURA_WS_DATA, NGX_SEGURA_WS_OP_TEXT,
               "\xe2\x82\xac \xf0\x9f\x98\x80", 8);
    expect_rec(all, 5, NGX_SEGURA_WS_DATA, NGX_SEGURA_WS_OP_BINARY, NULL, 0);
    expect_rec(all, 6, NGX_SEGURA_WS_CLOSE, NGX_SEGURA_WS_OP_CLOSE,
               "\x03\xe9" "by", 4);
    assert_int_equal(all->recs[6].code, 1001);
    assert_int_equal(all->consumed, len);

    /* every pair of split points */

    for (a = 1; a < len; a++) {
        for (b = 1; a + b < len; b += 3) {
            sizes[0] = a;
            sizes[1] = b;
            sizes[2] = 0;
            r = feed(buf, len, 1024, sizes, 3);
            result_same(all, r);
            result_free(r);
        }
    }

    result_free(all);
}


/* random input */


static size_t
random_utf8(unsigned char *p, size_t max)
{
    size_t    n;
    uint32_t  cp;

    n = 0;

    while (n + 4 <= max && rnd_below(8) != 0) {

        switch (rnd_below(4)) {
        case 0:
            p[n++] = (unsigned char) rnd_below(0x80);
            break;

        case 1:
            cp = 0x80 + rnd_below(0x800 - 0x80);
            p[n++] = (unsigned char) (0xc0 | (cp >> 6));
            p[n++] = (unsigned char) (0x80 | (cp & 0x3f));
            break;

        case 2:
            do {
                cp = 0x800 + rnd_below(0x10000 - 0x800);
            } while (cp >= 0xd800 && cp <= 0xdfff);

            p[n++] = (unsigned char) (0xe0 | (cp >> 12));
            p[n++] = (unsigned char) (0x80 | ((cp >> 6) & 0x3f));
            p[n++] = (unsigned char) (0x80 | (cp & 0x3f));
            break;

        default:
            cp = 0x10000 + rnd_below(0x110000 - 0x10000);
            p[n++] = (unsigned char) (0xf0 | (cp >> 18));
            p[n++] = (unsigned char) (0x80 | ((cp >> 12) & 0x3f));
            p[n++] = (unsigned char) (0x80 | ((cp >> 6) & 0x3f));
            p[n++] = (unsigned char) (0x80 | (cp & 0x3f));
            break;
        }
    }

    return n;
}


/*
 * A random valid stream of messages with random fragmentation, control
 * frames between fragments and random mask keys; the expected records go
 * to exp.
 */

static size_t
random_stream(unsigned char *out, size_t max, result_t *exp)
{
    size_t          len, mlen, off, flen, clen;
    unsigned        op, b0, nframes;
    unsigned char   key[4], msg[600], ctl[125];
    uint32_t        r;

    len = 0;

    while (len + 2048 < max && exp->n + 8 < MAX_RECS && rnd_below(16) != 0) {

        op = rnd_below(2) ? NGX_SEGURA_WS_OP_TEXT : NGX_SEGURA_WS_OP_BINARY;

        if (op == NGX_SEGURA_WS_OP_TEXT) {
            mlen = random_utf8(msg, rnd_below(sizeof(msg)));

        } else {
            mlen = rnd_below(sizeof(msg));

            for (off = 0; off < mlen; off++) {
                msg[off] = (unsigned char) rnd();
            }
        }

        off = 0;
        nframes = 0;

        do {
            /* the last frame and a control frame always fit */

            flen = (rnd_below(4) && len + 1024 < max)
                   ? rnd_below(mlen - off + 1) : mlen - off;

            r = rnd();
            memcpy(key, &r, 4);

            b0 = (nframes++ == 0) ? op : NGX_SEGURA_WS_OP_CONT;
            b0 |= (off + flen == mlen) ? FIN : 0;

            len += frame(out + len, b0, 0, key, msg + off, flen);
            off += flen;

            /* between fragments, and after a message */

            if (rnd_below(4) == 0 && exp->n + 4 < MAX_RECS) {
                if (off == mlen) {
                    rec_add(exp, NGX_SEGURA_WS_DATA, op, 0, 0, msg, mlen);
                    op = 0;
                }

                clen = rnd_below(126);

                for (b0 = 0; b0 < clen; b0++) {
                    ctl[b0] = (unsigned char) rnd();
                }

                b0 = rnd_below(2) ? NGX_SEGURA_WS_OP_PING
                                  : NGX_SEGURA_WS_OP_PONG;

                r = rnd();
                memcpy(key, &r, 4);
                len += frame(out + len, FIN | b0, 0, key, ctl, clen);

                rec_add(exp, b0 == NGX_SEGURA_WS_OP_PING ? NGX_SEGURA_WS_PING
                                                         : NGX_SEGURA_WS_PONG,
                        b0, 0, 0, ctl, clen);
            }

        } while (off < mlen);

        if (op != 0) {
            rec_add(exp, NGX_SEGURA_WS_DATA, op, 0, 0, msg, mlen);
        }
    }

    return len;
}


static void
random_sizes(size_t *sizes, size_t n, size_t len)
{
    size_t  i, style;

    style = rnd_below(4);

    for (i = 0; i < n; i++) {
        switch (style) {
        case 0:
            sizes[i] = 1;
            break;
        case 1:
            sizes[i] = 1 + rnd_below(8);
            break;
        case 2:
            sizes[i] = 1 + rnd_below(len / 4 + 1);
            break;
        default:
            sizes[i] = 1 + rnd_below(len + 1);
            break;
        }
    }
}


static void
test_random(void **state)
{
    int              iter, iters;
    size_t           len, i, sizes[64];
    uint64_t         max;
    result_t        *exp, *r, *all;
    const char      *env;
    unsigned char   *buf;

    (void) state;

    env = getenv("SEGURA_SEED");
    seed = env ? (unsigned) strtoul(env, NULL, 10) : (unsigned) time(NULL);
    if (seed == 0) {
        seed = 1;
    }

    rnd_state = seed;
    print_message("test_random: SEGURA_SEED=%u\n", seed);

    env = getenv("SEGURA_ITERATIONS");
    iters = env ? atoi(env) : 300;

    buf = malloc(65536);
    assert_non_null(buf);

    for (iter = 0; iter < iters; iter++) {

        /* a valid stream reproduces exactly */

        exp = calloc(1, sizeof(result_t));
        assert_non_null(exp);

        len = random_stream(buf, 65536, exp);
        random_sizes(sizes, 64, len);

        r = feed(buf, len, 1024, sizes, 64);
        result_same(exp, r);
        CHECK(r->consumed == len);
        result_free(r);

        /* a damaged copy: any chunking gives what all at once gives */

        for (i = rnd_below(4); i > 0 && len > 0; i--) {
            buf[rnd_below(len)] ^= (unsigned char) (1 + rnd_below(255));
        }

        max = 1 + rnd_below(1024);
        all = feed_all(buf, len, max);
        random_sizes(sizes, 64, len);
        r = feed(buf, len, max, sizes, 64);
        result_same(all, r);
        result_free(r);

        result_free(all);
        result_free(exp);

        /* random bytes */

        len = rnd_below(4096);

        for (i = 0; i < len; i++) {
            buf[i] = (unsigned char) rnd();

            /* mostly masked, to get past the second byte */
            if (i == 1 && rnd_below(4)) {
                buf[i] |= 0x80;
            }
        }

        random_sizes(sizes, 64, len);
        r = feed(buf, len, 1 + rnd_below(4096), sizes, 64);
        result_free(r);
    }

    free(buf);
}


int
main(void)
{
    const struct CMUnitTest  tests[] = {
        cmocka_unit_test(test_text_one_frame),
        cmocka_unit_test(test_rfc_examples),
        cmocka_unit_test(test_binary_one_frame_and_fragmented),
        cmocka_unit_test(test_fragment_flags),
        cmocka_unit_test(test_lengths),
        cmocka_unit_test(test_control_between_fragments),
        cmocka_unit_test(test_close_event),
        cmocka_unit_test(test_unmasked),
        cmocka_unit_test(test_rsv_and_opcodes),
        cmocka_unit_test(test_control_rules),
        cmocka_unit_test(test_fragmentation_rules),
        cmocka_unit_test(test_length_rules),
        cmocka_unit_test(test_max_message),
        cmocka_unit_test(test_close_payload_rules),
        cmocka_unit_test(test_error_is_sticky),
        cmocka_unit_test(test_utf8_valid),
        cmocka_unit_test(test_utf8_invalid),
        cmocka_unit_test(test_utf8_fail_fast),
        cmocka_unit_test(test_frame_header),
        cmocka_unit_test(test_close_payload),
        cmocka_unit_test(test_accept),
        cmocka_unit_test(test_key_valid),
        cmocka_unit_test(test_token_list),
        cmocka_unit_test(test_every_chunking),
        cmocka_unit_test(test_random),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
