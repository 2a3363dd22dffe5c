
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


/*
 * a byte lowercased (low 8 bits) and what it adds to a word's mix (1 upper
 * case, 2 lower case, 4 digit, above): one look-up per byte copied
 */
static const unsigned short  ngx_segura_words_fold[256] = {
    0x0000, 0x0001, 0x0002, 0x0003, 0x0004, 0x0005, 0x0006, 0x0007,
    0x0008, 0x0009, 0x000a, 0x000b, 0x000c, 0x000d, 0x000e, 0x000f,
    0x0010, 0x0011, 0x0012, 0x0013, 0x0014, 0x0015, 0x0016, 0x0017,
    0x0018, 0x0019, 0x001a, 0x001b, 0x001c, 0x001d, 0x001e, 0x001f,
    0x0020, 0x0021, 0x0022, 0x0023, 0x0024, 0x0025, 0x0026, 0x0027,
    0x0028, 0x0029, 0x002a, 0x002b, 0x002c, 0x002d, 0x002e, 0x002f,
    0x0430, 0x0431, 0x0432, 0x0433, 0x0434, 0x0435, 0x0436, 0x0437,
    0x0438, 0x0439, 0x003a, 0x003b, 0x003c, 0x003d, 0x003e, 0x003f,
    0x0040, 0x0161, 0x0162, 0x0163, 0x0164, 0x0165, 0x0166, 0x0167,
    0x0168, 0x0169, 0x016a, 0x016b, 0x016c, 0x016d, 0x016e, 0x016f,
    0x0170, 0x0171, 0x0172, 0x0173, 0x0174, 0x0175, 0x0176, 0x0177,
    0x0178, 0x0179, 0x017a, 0x005b, 0x005c, 0x005d, 0x005e, 0x005f,
    0x0060, 0x0261, 0x0262, 0x0263, 0x0264, 0x0265, 0x0266, 0x0267,
    0x0268, 0x0269, 0x026a, 0x026b, 0x026c, 0x026d, 0x026e, 0x026f,
    0x0270, 0x0271, 0x0272, 0x0273, 0x0274, 0x0275, 0x0276, 0x0277,
    0x0278, 0x0279, 0x027a, 0x007b, 0x007c, 0x007d, 0x007e, 0x007f,
    0x0080, 0x0081, 0x0082, 0x0083, 0x0084, 0x0085, 0x0086, 0x0087,
    0x0088, 0x0089, 0x008a, 0x008b, 0x008c, 0x008d, 0x008e, 0x008f,
    0x0090, 0x0091, 0x0092, 0x0093, 0x0094, 0x0095, 0x0096, 0x0097,
    0x0098, 0x0099, 0x009a, 0x009b, 0x009c, 0x009d, 0x009e, 0x009f,
    0x00a0, 0x00a1, 0x00a2, 0x00a3, 0x00a4, 0x00a5, 0x00a6, 0x00a7,
    0x00a8, 0x00a9, 0x00aa, 0x00ab, 0x00ac, 0x00ad, 0x00ae, 0x00af,
    0x00b0, 0x00b1, 0x00b2, 0x00b3, 0x00b4, 0x00b5, 0x00b6, 0x00b7,
    0x00b8, 0x00b9, 0x00ba, 0x00bb, 0x00bc, 0x00bd, 0x00be, 0x00bf,
    0x00c0, 0x00c1, 0x00c2, 0x00c3, 0x00c4, 0x00c5, 0x00c6, 0x00c7,
    0x00c8, 0x00c9, 0x00ca, 0x00cb, 0x00cc, 0x00cd, 0x00ce, 0x00cf,
    0x00d0, 0x00d1, 0x00d2, 0x00d3, 0x00d4, 0x00d5, 0x00d6, 0x00d7,
    0x00d8, 0x00d9, 0x00da, 0x00db, 0x00dc, 0x00dd, 0x00de, 0x00df,
    0x00e0, 0x00e1, 0x00e2, 0x00e3, 0x00e4, 0x00e5, 0x00e6, 0x00e7,
    0x00e8, 0x00e9, 0x00ea, 0x00eb, 0x00ec, 0x00ed, 0x00ee, 0x00ef,
    0x00f0, 0x00f1, 0x00f2, 0x00f3, 0x00f4, 0x00f5, 0x00f6, 0x00f7,
    0x00f8, 0x00f9, 0x00fa, 0x00fb, 0x00fc, 0x00fd, 0x00fe, 0x00ff
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
    unsigned              cls, mix, f;
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
                            f = ngx_segura_words_fold[p[k]];
                            dst[k] = (unsigned char) f;
                            mix |= f;
                        }

                        mix >>= 8;

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
                        f = ngx_segura_words_fold[p[k]];
                        dst[k] = (unsigned char) f;
                        mix |= f;
                    }

                    mix >>= 8;

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
