
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


#define ngx_segura_words_lower(c)                                           \
    (unsigned char) (((c) >= 'A' && (c) <= 'Z') ? ((c) | 0x20) : (c))


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
    unsigned              cls;
    unsigned char         c;
    const unsigned char  *end, *q;

    end = p + len;

    while (p < end) {
        c = *p;
        cls = ngx_segura_words_class[c];

        switch (ws->state) {

        case S_GROUND:

            if (cls == W_WORD) {

                /* the hot path: a run of word characters */

                q = p + 1;

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

                n = q - p;

                if (ws->part_len == 0) {
                    ws->part_t = t;
                }

                if (ws->comp_len == 0) {
                    ws->comp_t = t;
                }

                if (ws->comp_trail) {
                    ws->comp_joined = 1;
                    ws->comp_trail = 0;
                }

                if (ws->part_len < NGX_SEGURA_WORDS_MAX) {
                    room = NGX_SEGURA_WORDS_MAX - ws->part_len;
                    room = (n < room) ? n : room;

                    for (k = 0; k < room; k++) {
                        ws->part[ws->part_len + k] =
                                              ngx_segura_words_lower(p[k]);
                    }
                }

                if (ws->comp_len < NGX_SEGURA_WORDS_MAX) {
                    room = NGX_SEGURA_WORDS_MAX - ws->comp_len;
                    room = (n < room) ? n : room;

                    for (k = 0; k < room; k++) {
                        ws->comp[ws->comp_len + k] =
                                              ngx_segura_words_lower(p[k]);
                    }
                }

                ws->part_len += n;
                ws->comp_len += n;

                if (ws->text != NULL) {
                    for (k = 0; k < n; k++) {
                        ws->text(ws->data, p[k]);
                    }
                }

                p = q;
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
        && ws->part_len <= NGX_SEGURA_WORDS_MAX)
    {
        ws->word(ws->data, ws->part, ws->part_len, ws->part_t);
    }

    ws->part_len = 0;
}


static void
ngx_segura_words_join(ngx_segura_words_t *ws, unsigned char c)
{
    ngx_segura_words_part_end(ws);

    /* joiners before the first word character are not part of it */

    if (ws->comp_len == 0) {
        return;
    }

    if (ws->comp_len < NGX_SEGURA_WORDS_MAX) {
        ws->comp[ws->comp_len] = c;
    }

    ws->comp_len++;
    ws->comp_trail++;
}


static void
ngx_segura_words_cut(ngx_segura_words_t *ws)
{
    size_t  len;

    ngx_segura_words_part_end(ws);

    len = ws->comp_len - ws->comp_trail;

    if (ws->comp_joined && len >= NGX_SEGURA_WORDS_MIN
        && len <= NGX_SEGURA_WORDS_MAX)
    {
        ws->word(ws->data, ws->comp, len, ws->comp_t);
    }

    ws->comp_len = 0;
    ws->comp_trail = 0;
    ws->comp_joined = 0;
}
