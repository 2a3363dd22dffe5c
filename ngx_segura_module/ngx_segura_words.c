
/*
 * Copyright (C) ngx_segura_module authors
 */


/*
 * The word scanner of the recordings' search: terminal output in, the
 * words a person reads on the screen out (the rules: ngx_segura_words.h).
 * It runs on the event loop for every output byte a session records
 * (ngx_segura_index.c) and in pool threads when a search shows its hits
 * (ngx_segura_api_search.c), so it is table-driven: a run of word
 * characters costs one table look-up per byte, and only its first
 * NGX_SEGURA_WORDS_MAX bytes are copied.  Plain C: any thread, no state
 * outside the scanner it is given.
 */


#include <string.h>

#if (defined __SSE2__)
#include <emmintrin.h>
#endif

#include "ngx_segura_words.h"


/* byte classes */
#define W_WORD   0    /* letters, digits, '_', >= 0x80 */
#define W_JOIN   1    /* - . / : @ */
#define W_SEP    2    /* other printable ASCII */
#define W_CTRL   3    /* C0 controls but those below, DEL */
#define W_EOL    4    /* CR, LF, VT, FF */
#define W_ESC    5
#define W_BEL    6
#define W_CAN    7    /* CAN, SUB: abort a sequence */

/* states */
#define S_GROUND     0
#define S_ESC        1    /* after ESC */
#define S_ESC_INTER  2    /* ESC 0x20-0x2f ...: waits for its final */
#define S_CSI        3    /* ESC [ ...: waits for a final 0x40-0x7e */
#define S_STR        4    /* OSC, DCS, SOS, PM, APC: to BEL or ST */
#define S_STR_ESC    5    /* ESC inside a string: '\' ends it */

/* upper case, lower case and digits in 12 bytes or more: base64, a token */
#define ngx_segura_words_random(len, mix)                                   \
    ((len) >= NGX_SEGURA_WORDS_RANDOM && (mix) == 7)


static const unsigned char *ngx_segura_words_run(const unsigned char *q,
    const unsigned char *end);
static void ngx_segura_words_cut(ngx_segura_words_t *ws);
static void ngx_segura_words_join(ngx_segura_words_t *ws, unsigned char c);
static void ngx_segura_words_part_end(ngx_segura_words_t *ws);


static const unsigned char  ngx_segura_words_class[256] = {
    /* 0x00 */ 3, 3, 3, 3, 3, 3, 3, 6, 3, 3, 4, 4, 4, 4, 3, 3,
    /* 0x10 */ 3, 3, 3, 3, 3, 3, 3, 3, 7, 3, 7, 5, 3, 3, 3, 3,
    /* 0x20 */ 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 1, 1, 1,
    /* 0x30 */ 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 2, 2, 2, 2, 2,
    /* 0x40 */ 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    /* 0x50 */ 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 2, 2, 2, 2, 0,
    /* 0x60 */ 2, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    /* 0x70 */ 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 2, 2, 2, 2, 3,
    /* 0x80 - 0xff: UTF-8 is passed through as word characters */
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0
};


/* what a byte adds to a word's mix: 1 upper case, 2 lower case, 4 digit */
static const unsigned char  ngx_segura_words_mix[256] = {
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 0, 0, 0, 0, 0, 0,
    0, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1,
    1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 0, 0, 0, 0, 0,
    0, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2,
    2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 0, 0, 0, 0, 0,
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0
};


static const unsigned char  ngx_segura_words_lower[256] = {
    0x00, 0x01, 0x02, 0x03, 0x04, 0x05, 0x06, 0x07,
    0x08, 0x09, 0x0a, 0x0b, 0x0c, 0x0d, 0x0e, 0x0f,
    0x10, 0x11, 0x12, 0x13, 0x14, 0x15, 0x16, 0x17,
    0x18, 0x19, 0x1a, 0x1b, 0x1c, 0x1d, 0x1e, 0x1f,
    0x20, 0x21, 0x22, 0x23, 0x24, 0x25, 0x26, 0x27,
    0x28, 0x29, 0x2a, 0x2b, 0x2c, 0x2d, 0x2e, 0x2f,
    0x30, 0x31, 0x32, 0x33, 0x34, 0x35, 0x36, 0x37,
    0x38, 0x39, 0x3a, 0x3b, 0x3c, 0x3d, 0x3e, 0x3f,
    0x40, 0x61, 0x62, 0x63, 0x64, 0x65, 0x66, 0x67,
    0x68, 0x69, 0x6a, 0x6b, 0x6c, 0x6d, 0x6e, 0x6f,
    0x70, 0x71, 0x72, 0x73, 0x74, 0x75, 0x76, 0x77,
    0x78, 0x79, 0x7a, 0x5b, 0x5c, 0x5d, 0x5e, 0x5f,
    0x60, 0x61, 0x62, 0x63, 0x64, 0x65, 0x66, 0x67,
    0x68, 0x69, 0x6a, 0x6b, 0x6c, 0x6d, 0x6e, 0x6f,
    0x70, 0x71, 0x72, 0x73, 0x74, 0x75, 0x76, 0x77,
    0x78, 0x79, 0x7a, 0x7b, 0x7c, 0x7d, 0x7e, 0x7f,
    0x80, 0x81, 0x82, 0x83, 0x84, 0x85, 0x86, 0x87,
    0x88, 0x89, 0x8a, 0x8b, 0x8c, 0x8d, 0x8e, 0x8f,
    0x90, 0x91, 0x92, 0x93, 0x94, 0x95, 0x96, 0x97,
    0x98, 0x99, 0x9a, 0x9b, 0x9c, 0x9d, 0x9e, 0x9f,
    0xa0, 0xa1, 0xa2, 0xa3, 0xa4, 0xa5, 0xa6, 0xa7,
    0xa8, 0xa9, 0xaa, 0xab, 0xac, 0xad, 0xae, 0xaf,
    0xb0, 0xb1, 0xb2, 0xb3, 0xb4, 0xb5, 0xb6, 0xb7,
    0xb8, 0xb9, 0xba, 0xbb, 0xbc, 0xbd, 0xbe, 0xbf,
    0xc0, 0xc1, 0xc2, 0xc3, 0xc4, 0xc5, 0xc6, 0xc7,
    0xc8, 0xc9, 0xca, 0xcb, 0xcc, 0xcd, 0xce, 0xcf,
    0xd0, 0xd1, 0xd2, 0xd3, 0xd4, 0xd5, 0xd6, 0xd7,
    0xd8, 0xd9, 0xda, 0xdb, 0xdc, 0xdd, 0xde, 0xdf,
    0xe0, 0xe1, 0xe2, 0xe3, 0xe4, 0xe5, 0xe6, 0xe7,
    0xe8, 0xe9, 0xea, 0xeb, 0xec, 0xed, 0xee, 0xef,
    0xf0, 0xf1, 0xf2, 0xf3, 0xf4, 0xf5, 0xf6, 0xf7,
    0xf8, 0xf9, 0xfa, 0xfb, 0xfc, 0xfd, 0xfe, 0xff
};


void
ngx_segura_words_init(ngx_segura_words_t *ws, ngx_segura_words_word_pt word,
    ngx_segura_words_text_pt text, void *data)
{
    memset(ws, 0, sizeof(ngx_segura_words_t));

    ws->word = word;
    ws->text = text;
    ws->data = data;
    ws->state = S_GROUND;
}


void
ngx_segura_words_feed(ngx_segura_words_t *ws, const unsigned char *p,
    size_t len, uint32_t t)
{
    size_t                n, k, room;
    unsigned              cls, mix;
    unsigned char         c, *dst;
    const unsigned char  *end, *q;

    end = p + len;

    while (p < end) {
        c = *p;
        cls = ngx_segura_words_class[c];

        switch (ws->state) {

        case S_GROUND:

            if (cls == W_WORD) {

                /* the hot path: a run of word characters */

                q = ngx_segura_words_run(p + 1, end);
                n = q - p;

                if (ws->part_len == 0) {
                    ws->part_t = t;

                    if (ws->comp_len == 0 && !ws->comp_over) {
                        ws->comp_t = t;
                    }
                }

                if (ws->comp_trail) {
                    ws->comp_joined = 1;
                    ws->comp_trail = 0;
                    ws->comp_trail_stored = 0;
                }

                if (!ws->comp_over) {
                    if (ws->comp_len + n <= NGX_SEGURA_WORDS_MAX) {
                        dst = ws->buf + ws->comp_len;
                        mix = 0;

                        for (k = 0; k < n; k++) {
                            dst[k] = ngx_segura_words_lower[p[k]];
                            mix |= ngx_segura_words_mix[p[k]];
                        }

                        ws->part_mix |= mix;
                        ws->comp_mix |= mix;

                        ws->comp_len += n;
                        ws->part_len += n;

                        goto text;
                    }

                    /* the compound is too long: the part alone goes on */

                    ws->comp_over = 1;

                    if (ws->part_len) {
                        memmove(ws->buf, ws->buf + ws->part_off,
                                ws->part_len);
                    }

                    ws->part_off = 0;
                }

                if (ws->part_len < NGX_SEGURA_WORDS_MAX) {
                    room = NGX_SEGURA_WORDS_MAX - ws->part_len;
                    room = (n < room) ? n : room;
                    dst = ws->buf + ws->part_len;
                    mix = 0;

                    for (k = 0; k < room; k++) {
                        dst[k] = ngx_segura_words_lower[p[k]];
                        mix |= ngx_segura_words_mix[p[k]];
                    }

                    ws->part_mix |= mix;
                }

                ws->part_len += n;

            text:

                if (ws->text != NULL) {
                    for (k = 0; k < n; k++) {
                        ws->text(ws->data, p[k]);
                    }
                }

                p = q;
                continue;
            }

            if (cls == W_SEP && ws->text == NULL && ws->part_len == 0
                && ws->comp_len == 0 && !ws->comp_over)
            {
                /* nothing to end: spaces between words */
                p++;
                continue;
            }

            switch (cls) {

            case W_JOIN:
                ngx_segura_words_join(ws, c);

                if (ws->text != NULL) {
                    ws->text(ws->data, c);
                }

                break;

            case W_ESC:
                ws->state = S_ESC;
                break;

            case W_EOL:
                ngx_segura_words_cut(ws);

                if (ws->text != NULL) {
                    ws->text(ws->data, NGX_SEGURA_WORDS_EOL);
                }

                break;

            case W_SEP:
                ngx_segura_words_cut(ws);

                if (ws->text != NULL) {
                    ws->text(ws->data, c);
                }

                break;

            default: /* controls: backspace, tab, bell... */
                ngx_segura_words_cut(ws);

                if (ws->text != NULL) {
                    ws->text(ws->data, ' ');
                }
            }

            p++;
            continue;

        case S_ESC:

            switch (c) {
            case '[':
                ws->state = S_CSI;
                break;
            case ']': case 'P': case 'X': case '^': case '_':
                ws->state = S_STR;
                break;
            case 0x1b:
                break;
            default:
                if (c >= 0x20 && c <= 0x2f) {
                    /* ESC ( B and the like: no cut */
                    ws->state = S_ESC_INTER;
                    break;
                }

                ws->state = S_GROUND;

                if (c < 0x20) {
                    /* a control ends the escape and is itself read */
                    continue;
                }

                /* ESC 7, ESC M...: the cursor may move */
                ngx_segura_words_cut(ws);
            }

            p++;
            continue;

        case S_ESC_INTER:

            if (c >= 0x20 && c <= 0x2f) {
                p++;
                continue;
            }

            ws->state = S_GROUND;

            if (c >= 0x30 && c <= 0x7e) {
                p++;
            }

            continue;

        case S_CSI:

            if (c >= 0x40 && c <= 0x7e) {
                /* a colour leaves the word whole, all else moves */
                if (c != 'm') {
                    ngx_segura_words_cut(ws);
                }

                ws->state = S_GROUND;

            } else if (cls == W_CAN || cls == W_ESC) {
                ws->state = (cls == W_ESC) ? S_ESC : S_GROUND;
                ngx_segura_words_cut(ws);
            }

            p++;
            continue;

        case S_STR:

            if (cls == W_BEL || cls == W_CAN) {
                ws->state = S_GROUND;

            } else if (cls == W_ESC) {
                ws->state = S_STR_ESC;
            }

            p++;
            continue;

        default: /* S_STR_ESC */

            if (c == '\\') {
                ws->state = S_GROUND;
                p++;
                continue;
            }

            /* the string ended; this ESC begins a sequence */
            ws->state = S_ESC;
            continue;
        }
    }
}


/*
 * The end of a run of word characters: 16 bytes at a time with SSE2 (a
 * long run, such as base64 without line breaks, costs under one
 * instruction per byte), then one table look-up per byte.
 */

static const unsigned char *
ngx_segura_words_run(const unsigned char *q, const unsigned char *end)
{
#if (defined __SSE2__)
    int      m;
    __m128i  v, t, w;

    while (end - q >= 16) {
        v = _mm_loadu_si128((const __m128i *) q);

        /* >= 0x80 */
        w = _mm_cmplt_epi8(v, _mm_setzero_si128());

        /* '0'..'9': v - '0' <= 9, unsigned */
        t = _mm_sub_epi8(v, _mm_set1_epi8('0'));
        w = _mm_or_si128(w, _mm_cmpeq_epi8(_mm_min_epu8(t, _mm_set1_epi8(9)),
                                           t));

        /* letters: (v | 0x20) - 'a' <= 25, unsigned */
        t = _mm_sub_epi8(_mm_or_si128(v, _mm_set1_epi8(0x20)),
                         _mm_set1_epi8('a'));
        w = _mm_or_si128(w, _mm_cmpeq_epi8(_mm_min_epu8(t, _mm_set1_epi8(25)),
                                           t));

        w = _mm_or_si128(w, _mm_cmpeq_epi8(v, _mm_set1_epi8('_')));

        m = _mm_movemask_epi8(w);

        if (m != 0xffff) {
            return q + __builtin_ctz(~m);
        }

        q += 16;
    }
#endif

    while (end - q >= 4
           && ngx_segura_words_class[q[0]] == W_WORD
           && ngx_segura_words_class[q[1]] == W_WORD
           && ngx_segura_words_class[q[2]] == W_WORD
           && ngx_segura_words_class[q[3]] == W_WORD)
    {
        q += 4;
    }

    while (q < end && ngx_segura_words_class[*q] == W_WORD) {
        q++;
    }

    return q;
}


void
ngx_segura_words_end(ngx_segura_words_t *ws)
{
    ngx_segura_words_cut(ws);
    ws->state = S_GROUND;
}


void
ngx_segura_words_wipe(ngx_segura_words_t *ws)
{
    volatile unsigned char  *p;
    size_t                   n;

    p = (volatile unsigned char *) ws;

    for (n = 0; n < sizeof(ngx_segura_words_t); n++) {
        p[n] = 0;
    }
}


static void
ngx_segura_words_part_end(ngx_segura_words_t *ws)
{
    if (ws->part_len >= NGX_SEGURA_WORDS_MIN
        && ws->part_len <= NGX_SEGURA_WORDS_MAX
        && !ngx_segura_words_random(ws->part_len, ws->part_mix))
    {
        ws->word(ws->data, ws->buf + ws->part_off, ws->part_len, ws->part_t);
    }

    ws->part_len = 0;
    ws->part_mix = 0;
}


static void
ngx_segura_words_join(ngx_segura_words_t *ws, unsigned char c)
{
    ngx_segura_words_part_end(ws);

    /* joiners before the first word character are not part of it */

    if (ws->comp_over) {
        return;
    }

    if (ws->comp_len == 0) {
        return;
    }

    if (ws->comp_len < NGX_SEGURA_WORDS_MAX) {
        ws->buf[ws->comp_len++] = c;
        ws->comp_trail_stored++;
    }

    /* a word character after this makes a compound too long */

    ws->comp_trail++;
    ws->part_off = ws->comp_len;
}


static void
ngx_segura_words_cut(ngx_segura_words_t *ws)
{
    size_t  len;

    ngx_segura_words_part_end(ws);

    if (ws->comp_joined && !ws->comp_over) {
        len = ws->comp_len - ws->comp_trail_stored;

        if (len >= NGX_SEGURA_WORDS_MIN
            && !ngx_segura_words_random(len, ws->comp_mix))
        {
            ws->word(ws->data, ws->buf, len, ws->comp_t);
        }
    }

    ws->part_off = 0;
    ws->comp_len = 0;
    ws->comp_trail = 0;
    ws->comp_trail_stored = 0;
    ws->comp_joined = 0;
    ws->comp_over = 0;
    ws->comp_mix = 0;
}
