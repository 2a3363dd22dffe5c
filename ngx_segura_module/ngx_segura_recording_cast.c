
/*
 * Copyright (C) ngx_segura_module authors
 */


/*
 * A recording's events (the plaintext of its chunks, written by
 * ngx_segura_recorder.c) as asciicast v2 or, raw, as the output bytes
 * alone; for a window of the recording, the output before the window
 * replayed as its first event (docs/recording.md, "Seeking").  Memory
 * only, no I/O: any thread (the API's pool tasks call it).
 */


#include <ngx_config.h>
#include <ngx_core.h>
#include "ngx_segura.h"
#include "ngx_segura_recording_cast.h"

#include <jansson.h>
#include <openssl/crypto.h>


/* the restoring event and a chunk's events are copied here */
#define NGX_SEGURA_CAST_SCRATCH      (NGX_SEGURA_CAST_RESTORE + 16)


static ngx_int_t ngx_segura_cast_event(ngx_segura_cast_t *cast, u_char type,
    uint32_t time, u_char *data, size_t len);
static ngx_int_t ngx_segura_cast_before(ngx_segura_cast_t *cast,
    u_char type, u_char *data, size_t len);
static size_t ngx_segura_cast_redraw(u_char *p, size_t len);
static ngx_int_t ngx_segura_cast_text(ngx_segura_cast_t *cast,
    ngx_uint_t stream, u_char *data, size_t len, ngx_uint_t final);
static u_char *ngx_segura_cast_reserve(ngx_segura_cast_buf_t *b, size_t n);
static void ngx_segura_cast_wipe(ngx_segura_cast_buf_t *b);


ngx_int_t
ngx_segura_cast_init(ngx_segura_cast_t *cast)
{
    cast->scratch = malloc(NGX_SEGURA_CAST_SCRATCH);

    return (cast->scratch == NULL) ? NGX_ERROR : NGX_OK;
}


void
ngx_segura_cast_free(ngx_segura_cast_t *cast)
{
    /* all of it is the session's output */

    ngx_segura_cast_wipe(&cast->out);
    ngx_segura_cast_wipe(&cast->restore);

    if (cast->scratch != NULL) {
        OPENSSL_cleanse(cast->scratch, NGX_SEGURA_CAST_SCRATCH);
        free(cast->scratch);
        cast->scratch = NULL;
    }

    OPENSSL_cleanse(cast->carry, sizeof(cast->carry));
}


static void
ngx_segura_cast_wipe(ngx_segura_cast_buf_t *b)
{
    if (b->data != NULL) {
        OPENSSL_cleanse(b->data, b->cap);
        free(b->data);
    }

    b->data = NULL;
    b->len = 0;
    b->cap = 0;
}


ngx_int_t
ngx_segura_cast_start(ngx_segura_cast_t *cast)
{
    u_char     *p, *data;
    char       *line;
    size_t      n, off;
    json_t     *header;
    ngx_int_t   rc;

    if (cast->started) {
        return NGX_OK;
    }

    cast->started = 1;

    if (cast->raw) {
        return NGX_OK;
    }

    /* the members in this order: the file of a whole recording is as it
     * always was */

    header = json_pack("{s:i, s:i, s:i, s:I, s:s}",
                       "version", 2,
                       "width", (int) cast->cols,
                       "height", (int) cast->rows,
                       "timestamp",
                       (json_int_t) (cast->timestamp
                                     + (cast->window ? cast->from / 1000 : 0)),
                       "title", cast->title);
    if (header == NULL) {
        return NGX_ERROR;
    }

    line = json_dumps(header, JSON_COMPACT);
    json_decref(header);

    if (line == NULL) {
        return NGX_ERROR;
    }

    n = ngx_strlen(line);
    p = ngx_segura_cast_reserve(&cast->out, n + 1);

    if (p == NULL) {
        free(line);
        return NGX_ERROR;
    }

    p = ngx_cpymem(p, line, n);
    *p = '\n';
    cast->out.len += n + 1;
    free(line);

    if (!cast->window || cast->restore.len == 0) {
        return NGX_OK;
    }

    /* the screen at from: the output since the last full redraw */

    data = cast->restore.data;
    off = ngx_segura_cast_redraw(data, cast->restore.len);

    rc = ngx_segura_cast_event(cast, NGX_SEGURA_REC_OUTPUT, cast->from,
                               data + off, cast->restore.len - off);

    ngx_segura_cast_wipe(&cast->restore);

    return rc;
}


/*
 * Where replaying the output before a window starts: at the last full
 * clear (ESC [ 2 J, with a cursor home just before it), reset (ESC c) or
 * switch to the alternate screen (ESC [ ? 1049 h) it holds; else, if
 * older output was left out, at the first line that starts in it (not in
 * the middle of an escape sequence); else at its start.
 */

static size_t
ngx_segura_cast_redraw(u_char *p, size_t len)
{
    size_t   i, k;
    u_char  *nl;

    for (i = len; i-- > 0; ) {
        if (p[i] != 0x1b) {
            continue;
        }

        if (len - i >= 4 && ngx_strncmp(p + i, "\x1b[2J", 4) == 0) {
            k = i;

            if (k >= 3 && ngx_strncmp(p + k - 3, "\x1b[H", 3) == 0) {
                k -= 3;
            }

            return k;
        }

        if ((len - i >= 2 && p[i + 1] == 'c')
            || (len - i >= 8 && ngx_strncmp(p + i, "\x1b[?1049h", 8) == 0))
        {
            return i;
        }
    }

    if (len < NGX_SEGURA_CAST_RESTORE) {
        return 0;
    }

    nl = ngx_strlchr(p, p + ngx_min(len, 4096), '\n');

    return (nl == NULL) ? 0 : (size_t) (nl + 1 - p);
}


ngx_int_t
ngx_segura_cast_events(ngx_segura_cast_t *cast, u_char *p, size_t len)
{
    u_char    type;
    uint32_t  time, n;

    while (len > 0 && !cast->over) {
        if (len < NGX_SEGURA_RECORDER_EVENT_HDR) {
            return NGX_ERROR;
        }

        type = p[0];
        time = p[1] | (p[2] << 8) | (p[3] << 16) | ((uint32_t) p[4] << 24);
        n = p[5] | (p[6] << 8) | (p[7] << 16) | ((uint32_t) p[8] << 24);

        p += NGX_SEGURA_RECORDER_EVENT_HDR;
        len -= NGX_SEGURA_RECORDER_EVENT_HDR;

        if (n > len) {
            return NGX_ERROR;
        }

        /* times never go back, whatever a chunk says */

        if (time < cast->last) {
            time = cast->last;
        }

        cast->last = time;

        if (cast->window && time < cast->from) {
            if (ngx_segura_cast_before(cast, type, p, n) != NGX_OK) {
                return NGX_ERROR;
            }

        } else if (cast->window && time >= cast->to) {
            cast->over = 1;

        } else {
            if (ngx_segura_cast_start(cast) != NGX_OK
                || ngx_segura_cast_event(cast, type, time, p, n) != NGX_OK)
            {
                return NGX_ERROR;
            }
        }

        p += n;
        len -= n;
    }

    return NGX_OK;
}


/* an event before a window: its output is kept, a resize sets the size */

static ngx_int_t
ngx_segura_cast_before(ngx_segura_cast_t *cast, u_char type, u_char *data,
    size_t len)
{
    u_char         *p, *x;
    ngx_int_t       cols, rows;
    ngx_segura_cast_buf_t  *b;

    if (type == NGX_SEGURA_REC_RESIZE) {
        x = ngx_strlchr(data, data + len, 'x');

        if (x != NULL) {
            cols = ngx_atoi(data, x - data);
            rows = ngx_atoi(x + 1, data + len - x - 1);

            if (cols > 0 && cols <= 1000 && rows > 0 && rows <= 1000) {
                cast->cols = (unsigned) cols;
                cast->rows = (unsigned) rows;
            }
        }

        return NGX_OK;
    }

    if (type != NGX_SEGURA_REC_OUTPUT || len == 0) {
        return NGX_OK;
    }

    b = &cast->restore;

    if (len >= NGX_SEGURA_CAST_RESTORE) {
        data += len - NGX_SEGURA_CAST_RESTORE;
        len = NGX_SEGURA_CAST_RESTORE;
        b->len = 0;

    } else if (b->len + len > NGX_SEGURA_CAST_RESTORE) {
        /* the last NGX_SEGURA_CAST_RESTORE bytes only */
        ngx_memmove(b->data, b->data + b->len + len
                             - NGX_SEGURA_CAST_RESTORE,
                    NGX_SEGURA_CAST_RESTORE - len);
        b->len = NGX_SEGURA_CAST_RESTORE - len;
    }

    p = ngx_segura_cast_reserve(b, len);
    if (p == NULL) {
        return NGX_ERROR;
    }

    ngx_memcpy(p, data, len);
    b->len += len;

    return NGX_OK;
}


static ngx_int_t
ngx_segura_cast_event(ngx_segura_cast_t *cast, u_char type, uint32_t time,
    u_char *data, size_t len)
{
    u_char       *p;
    ngx_uint_t    stream;
    const char   *code, *prefix;

    if (cast->raw) {
        if (type != NGX_SEGURA_REC_OUTPUT || len == 0) {
            return NGX_OK;
        }

        p = ngx_segura_cast_reserve(&cast->out, len);
        if (p == NULL) {
            return NGX_ERROR;
        }

        ngx_memcpy(p, data, len);
        cast->out.len += len;
        return NGX_OK;
    }

    stream = 0;
    prefix = "";

    switch (type) {
    case NGX_SEGURA_REC_OUTPUT:
        code = "o";
        break;
    case NGX_SEGURA_REC_INPUT:
        code = "i";
        stream = 1;
        break;
    case NGX_SEGURA_REC_RESIZE:
        code = "r";
        break;
    case NGX_SEGURA_REC_MARKER:
        code = "m";
        break;
    case NGX_SEGURA_REC_EXIT:
        code = "m";
        prefix = "exit ";
        break;
    default:
        /* a type of a later version: skipped */
        return NGX_OK;
    }

    if (cast->window) {
        time -= cast->from;
    }

    p = ngx_segura_cast_reserve(&cast->out, 64);
    if (p == NULL) {
        return NGX_ERROR;
    }

    p = ngx_sprintf(p, "[%uD.%03uD, \"%s\", \"%s", time / 1000, time % 1000,
                    code, prefix);
    cast->out.len = p - cast->out.data;

    if (type == NGX_SEGURA_REC_OUTPUT || type == NGX_SEGURA_REC_INPUT) {
        if (ngx_segura_cast_text(cast, stream, data, len, 0) != NGX_OK) {
            return NGX_ERROR;
        }

    } else {
        /* resizes, markers, exits are ours: no cut sequence */

        if (ngx_segura_cast_text(cast, 2, data, len, 1) != NGX_OK) {
            return NGX_ERROR;
        }
    }

    p = ngx_segura_cast_reserve(&cast->out, 3);
    if (p == NULL) {
        return NGX_ERROR;
    }

    ngx_memcpy(p, "\"]\n", 3);
    cast->out.len += 3;

    return NGX_OK;
}


ngx_int_t
ngx_segura_cast_finish(ngx_segura_cast_t *cast)
{
    if (ngx_segura_cast_start(cast) != NGX_OK
        || ngx_segura_cast_text(cast, 0, NULL, 0, 1) != NGX_OK
        || ngx_segura_cast_text(cast, 1, NULL, 0, 1) != NGX_OK)
    {
        return NGX_ERROR;
    }

    return NGX_OK;
}


/*
 * Bytes as a JSON string's contents: UTF-8 as it is, escaped where JSON
 * needs it, a byte that is not UTF-8 as U+FFFD; a sequence cut at the end
 * of an event waits for the next event of its stream (stream 2: none).
 */

static ngx_int_t
ngx_segura_cast_text(ngx_segura_cast_t *cast, ngx_uint_t stream,
    u_char *data, size_t len, ngx_uint_t final)
{
    u_char        *p, *s, *end, c;
    size_t         k, need, i;
    uint32_t       time;
    static u_char  hex[] = "0123456789abcdef";

    if (cast->raw) {
        return NGX_OK;
    }

    s = cast->scratch;
    k = 0;

    if (stream < 2) {
        ngx_memcpy(s, cast->carry[stream], cast->ncarry[stream]);
        k = cast->ncarry[stream];
        cast->ncarry[stream] = 0;
    }

    if (len && s + k != data) {
        ngx_memmove(s + k, data, len);
    }

    len += k;
    end = s + len;

    if (len == 0) {
        return NGX_OK;
    }

    if (final && stream < 2) {
        /* a cut sequence at the very end: an event of its own */

        p = ngx_segura_cast_reserve(&cast->out, 64 + 6 * len);
        if (p == NULL) {
            return NGX_ERROR;
        }

        time = cast->last;

        if (cast->window) {
            /* within the window, whatever event ended it */
            time = ngx_min(time, cast->to - 1);
            time = (time >= cast->from) ? time - cast->from : 0;
        }

        p = ngx_sprintf(p, "[%uD.%03uD, \"%s\", \"", time / 1000,
                        time % 1000, stream ? "i" : "o");
        cast->out.len = p - cast->out.data;

        if (ngx_segura_cast_text(cast, 2, s, len, 1) != NGX_OK) {
            return NGX_ERROR;
        }

        p = ngx_segura_cast_reserve(&cast->out, 3);
        if (p == NULL) {
            return NGX_ERROR;
        }

        ngx_memcpy(p, "\"]\n", 3);
        cast->out.len += 3;
        return NGX_OK;
    }

    p = ngx_segura_cast_reserve(&cast->out, 6 * len);
    if (p == NULL) {
        return NGX_ERROR;
    }

    while (s < end) {
        c = *s;

        if (c < 0x80) {
            switch (c) {
            case '"':  *p++ = '\\'; *p++ = '"'; break;
            case '\\': *p++ = '\\'; *p++ = '\\'; break;
            case '\n': *p++ = '\\'; *p++ = 'n'; break;
            case '\r': *p++ = '\\'; *p++ = 'r'; break;
            case '\t': *p++ = '\\'; *p++ = 't'; break;
            default:
                if (c < 0x20 || c == 0x7f) {
                    p = ngx_cpymem(p, "\\u00", 4);
                    *p++ = hex[c >> 4];
                    *p++ = hex[c & 0xf];

                } else {
                    *p++ = c;
                }
            }

            s++;
            continue;
        }

        if (c >= 0xc2 && c <= 0xdf) {
            need = 2;

        } else if (c >= 0xe0 && c <= 0xef) {
            need = 3;

        } else if (c >= 0xf0 && c <= 0xf4) {
            need = 4;

        } else {
            goto invalid;
        }

        for (i = 1; i < need && s + i < end; i++) {
            if ((s[i] & 0xc0) != 0x80
                || (i == 1 && ((c == 0xe0 && s[1] < 0xa0)
                               || (c == 0xed && s[1] > 0x9f)
                               || (c == 0xf0 && s[1] < 0x90)
                               || (c == 0xf4 && s[1] > 0x8f))))
            {
                goto invalid;
            }
        }

        if (i < need) {
            /* cut at the end: the rest comes with the next event */
            if (stream < 2 && !final) {
                ngx_memcpy(cast->carry[stream], s, end - s);
                cast->ncarry[stream] = end - s;
                break;
            }

            goto invalid;
        }

        p = ngx_cpymem(p, s, need);
        s += need;
        continue;

    invalid:

        /* U+FFFD, as UTF-8 */
        *p++ = 0xef;
        *p++ = 0xbf;
        *p++ = 0xbd;
        s++;
    }

    cast->out.len = p - cast->out.data;

    return NGX_OK;
}


static u_char *
ngx_segura_cast_reserve(ngx_segura_cast_buf_t *b, size_t n)
{
    u_char  *p;
    size_t   cap;

    if (b->len + n <= b->cap) {
        return b->data + b->len;
    }

    cap = b->cap ? b->cap : 65536;

    while (cap < b->len + n) {
        cap *= 2;
    }

    /* not realloc(): what moves is wiped */

    p = malloc(cap);
    if (p == NULL) {
        return NULL;
    }

    if (b->data != NULL) {
        ngx_memcpy(p, b->data, b->len);
        OPENSSL_cleanse(b->data, b->cap);
        free(b->data);
    }

    b->data = p;
    b->cap = cap;

    return p + b->len;
}
