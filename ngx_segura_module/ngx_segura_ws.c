
/*
 * Copyright (C) The ngx_segura_module authors
 */


/*
 * RFC 6455 framing: the incremental parser of client frames, the encoder
 * of server frame headers and close payloads, and the handshake helpers.
 * Plain C on caller-owned memory, no globals but const tables: any thread
 * may call it, one thread at a time per parser.
 */


#include <string.h>

#include <openssl/evp.h>

#include "ngx_segura_ws.h"


#define NGX_SEGURA_WS_GUID  "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"

#define ngx_segura_ws_is_control(op)  ((op) & 0x8)


typedef enum {
    ngx_segura_ws_st_hdr0 = 0,
    ngx_segura_ws_st_hdr1,
    ngx_segura_ws_st_length,
    ngx_segura_ws_st_mask,
    ngx_segura_ws_st_payload,
    ngx_segura_ws_st_error
} ngx_segura_ws_state_e;


static ngx_segura_ws_event_e ngx_segura_ws_fail(ngx_segura_ws_parser_t *ws,
    unsigned code, const char *reason);
static ngx_segura_ws_event_e ngx_segura_ws_error_event(
    ngx_segura_ws_parser_t *ws, ngx_segura_ws_event_t *ev);
static int ngx_segura_ws_header0(ngx_segura_ws_parser_t *ws, unsigned b);
static int ngx_segura_ws_length_done(ngx_segura_ws_parser_t *ws);
static ngx_segura_ws_event_e ngx_segura_ws_control_done(
    ngx_segura_ws_parser_t *ws, ngx_segura_ws_event_t *ev);
static ngx_segura_ws_event_e ngx_segura_ws_data(ngx_segura_ws_parser_t *ws,
    unsigned char *p, size_t n, ngx_segura_ws_event_t *ev);
static size_t ngx_segura_ws_utf8(unsigned char *need, unsigned char *lo,
    unsigned char *hi, const unsigned char *p, size_t n);


static const char  ngx_segura_ws_b64[] =
    "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";


void
ngx_segura_ws_parser_init(ngx_segura_ws_parser_t *ws, uint64_t max_message)
{
    memset(ws, 0, sizeof(ngx_segura_ws_parser_t));

    ws->max_message = max_message;
    ws->state = ngx_segura_ws_st_hdr0;
}


ngx_segura_ws_event_e
ngx_segura_ws_parse(ngx_segura_ws_parser_t *ws, unsigned char *buf,
    size_t len, size_t *consumed, ngx_segura_ws_event_t *ev)
{
    size_t                 n;
    unsigned               b;
    unsigned char         *p, *last;
    ngx_segura_ws_event_e  rc;

    memset(ev, 0, sizeof(ngx_segura_ws_event_t));

    p = buf;
    last = buf + len;
    rc = NGX_SEGURA_WS_NEED_MORE;

    for ( ;; ) {

        switch (ws->state) {

        case ngx_segura_ws_st_hdr0:

            if (p == last) {
                goto done;
            }

            b = *p++;

            if (ngx_segura_ws_header0(ws, b) != 0) {
                rc = NGX_SEGURA_WS_ERROR;
                goto done;
            }

            ws->state = ngx_segura_ws_st_hdr1;
            break;

        case ngx_segura_ws_st_hdr1:

            if (p == last) {
                goto done;
            }

            b = *p++;

            /* RFC 6455 5.1: a client masks every frame it sends */

            if ((b & 0x80) == 0) {
                ngx_segura_ws_fail(ws, NGX_SEGURA_WS_CLOSE_PROTOCOL,
                                   "unmasked client frame");
                rc = NGX_SEGURA_WS_ERROR;
                goto done;
            }

            b &= 0x7f;

            if (ngx_segura_ws_is_control(ws->opcode) && b > 125) {
                ngx_segura_ws_fail(ws, NGX_SEGURA_WS_CLOSE_PROTOCOL,
                                   "control frame too long");
                rc = NGX_SEGURA_WS_ERROR;
                goto done;
            }

            ws->remaining = 0;

            if (b == 126 || b == 127) {
                ws->need = (b == 126) ? 2 : 8;
                ws->ext = ws->need;
                ws->state = ngx_segura_ws_st_length;
                break;
            }

            ws->remaining = b;
            ws->ext = 0;

            if (ngx_segura_ws_length_done(ws) != 0) {
                rc = NGX_SEGURA_WS_ERROR;
                goto done;
            }

            break;

        case ngx_segura_ws_st_length:

            if (p == last) {
                goto done;
            }

            ws->remaining = (ws->remaining << 8) | *p++;

            if (--ws->need != 0) {
                break;
            }

            if (ngx_segura_ws_length_done(ws) != 0) {
                rc = NGX_SEGURA_WS_ERROR;
                goto done;
            }

            break;

        case ngx_segura_ws_st_mask:

            if (p == last) {
                goto done;
            }

            ws->mask[4 - ws->need] = *p++;

            if (--ws->need != 0) {
                break;
            }

            ws->mask_pos = 0;
            ws->control_len = 0;
            ws->state = ngx_segura_ws_st_payload;
            break;

        case ngx_segura_ws_st_payload:

            n = (size_t) (last - p);

            if ((uint64_t) n > ws->remaining) {
                n = (size_t) ws->remaining;
            }

            if (ngx_segura_ws_is_control(ws->opcode)) {

                while (n--) {
                    ws->control[ws->control_len++] =
                                               *p++ ^ ws->mask[ws->mask_pos];
                    ws->mask_pos = (ws->mask_pos + 1) & 3;
                    ws->remaining--;
                }

                if (ws->remaining != 0) {
                    goto done;
                }

                ws->state = ngx_segura_ws_st_hdr0;
                rc = ngx_segura_ws_control_done(ws, ev);
                goto done;
            }

            if (n == 0 && ws->remaining != 0) {
                goto done;
            }

            rc = ngx_segura_ws_data(ws, p, n, ev);

            p += ev->len;

            if (rc != NGX_SEGURA_WS_NEED_MORE) {
                goto done;
            }

            /* an empty frame that does not end its message */

            break;

        default: /* ngx_segura_ws_st_error */

            rc = NGX_SEGURA_WS_ERROR;
            goto done;
        }
    }

done:

    *consumed = (size_t) (p - buf);

    if (rc == NGX_SEGURA_WS_ERROR) {
        return ngx_segura_ws_error_event(ws, ev);
    }

    ev->type = rc;

    return rc;
}


static ngx_segura_ws_event_e
ngx_segura_ws_fail(ngx_segura_ws_parser_t *ws, unsigned code,
    const char *reason)
{
    ws->state = ngx_segura_ws_st_error;
    ws->err_code = (uint16_t) code;
    ws->err_reason = reason;

    return NGX_SEGURA_WS_ERROR;
}


static ngx_segura_ws_event_e
ngx_segura_ws_error_event(ngx_segura_ws_parser_t *ws,
    ngx_segura_ws_event_t *ev)
{
    memset(ev, 0, sizeof(ngx_segura_ws_event_t));

    ev->type = NGX_SEGURA_WS_ERROR;
    ev->code = ws->err_code;
    ev->reason = ws->err_reason;
    ev->reason_len = strlen(ws->err_reason);

    return NGX_SEGURA_WS_ERROR;
}


static int
ngx_segura_ws_header0(ngx_segura_ws_parser_t *ws, unsigned b)
{
    unsigned  op;

    op = b & 0x0f;

    ws->fin = (b & 0x80) ? 1 : 0;
    ws->opcode = (unsigned char) op;

    /* RFC 6455 5.2: no extension was negotiated, so RSV1-3 are 0 */

    if (b & 0x70) {
        ngx_segura_ws_fail(ws, NGX_SEGURA_WS_CLOSE_PROTOCOL,
                           "reserved bits set");
        return -1;
    }

    switch (op) {

    case NGX_SEGURA_WS_OP_CONT:

        if (ws->message == 0) {
            ngx_segura_ws_fail(ws, NGX_SEGURA_WS_CLOSE_PROTOCOL,
                               "continuation without a message");
            return -1;
        }

        return 0;

    case NGX_SEGURA_WS_OP_TEXT:
    case NGX_SEGURA_WS_OP_BINARY:

        if (ws->message != 0) {
            ngx_segura_ws_fail(ws, NGX_SEGURA_WS_CLOSE_PROTOCOL,
                               "new message inside a fragmented one");
            return -1;
        }

        return 0;

    case NGX_SEGURA_WS_OP_CLOSE:
    case NGX_SEGURA_WS_OP_PING:
    case NGX_SEGURA_WS_OP_PONG:

        /* RFC 6455 5.5: control frames are never fragmented */

        if (!ws->fin) {
            ngx_segura_ws_fail(ws, NGX_SEGURA_WS_CLOSE_PROTOCOL,
                               "fragmented control frame");
            return -1;
        }

        return 0;

    default:
        ngx_segura_ws_fail(ws, NGX_SEGURA_WS_CLOSE_PROTOCOL,
                           "unknown opcode");
        return -1;
    }
}


/*
 * Called once the payload length is known (ws->ext says how many bytes of
 * extended length it had): checks it and opens the message of a data frame.
 */

static int
ngx_segura_ws_length_done(ngx_segura_ws_parser_t *ws)
{
    uint64_t  len;

    len = ws->remaining;

    /* RFC 6455 5.2: the minimal number of bytes must be used */

    if ((ws->ext == 2 && len < 126)
        || (ws->ext == 8 && len < 65536))
    {
        ngx_segura_ws_fail(ws, NGX_SEGURA_WS_CLOSE_PROTOCOL,
                           "non-minimal frame length");
        return -1;
    }

    if (len & 0x8000000000000000ULL) {
        ngx_segura_ws_fail(ws, NGX_SEGURA_WS_CLOSE_PROTOCOL,
                           "frame length with the high bit set");
        return -1;
    }

    if (!ngx_segura_ws_is_control(ws->opcode)) {

        /* message_size <= max_message holds, so this cannot overflow */

        if (len > ws->max_message - ws->message_size) {
            ngx_segura_ws_fail(ws, NGX_SEGURA_WS_CLOSE_TOO_BIG,
                               "message too big");
            return -1;
        }

        ws->message_size += len;

        if (ws->opcode != NGX_SEGURA_WS_OP_CONT) {
            ws->message = ws->opcode;
            ws->first = 1;
            ws->utf8_need = 0;
        }
    }

    ws->need = 4;
    ws->state = ngx_segura_ws_st_mask;

    return 0;
}


static ngx_segura_ws_event_e
ngx_segura_ws_control_done(ngx_segura_ws_parser_t *ws,
    ngx_segura_ws_event_t *ev)
{
    size_t         n;
    unsigned       code;
    unsigned char  need, lo, hi;

    ev->opcode = ws->opcode;
    ev->data = ws->control;
    ev->len = ws->control_len;

    switch (ws->opcode) {

    case NGX_SEGURA_WS_OP_PING:
        return NGX_SEGURA_WS_PING;

    case NGX_SEGURA_WS_OP_PONG:
        return NGX_SEGURA_WS_PONG;

    default: /* NGX_SEGURA_WS_OP_CLOSE */
        break;
    }

    /* RFC 6455 5.5.1: empty, or a 2-byte code and a UTF-8 reason */

    if (ws->control_len == 0) {
        ev->code = NGX_SEGURA_WS_CLOSE_NO_STATUS;
        ev->reason = (const char *) ws->control;
        return NGX_SEGURA_WS_CLOSE;
    }

    if (ws->control_len == 1) {
        return ngx_segura_ws_fail(ws, NGX_SEGURA_WS_CLOSE_PROTOCOL,
                                  "close frame of one byte");
    }

    code = ((unsigned) ws->control[0] << 8) | ws->control[1];

    if (!ngx_segura_ws_close_code_valid(code)) {
        return ngx_segura_ws_fail(ws, NGX_SEGURA_WS_CLOSE_PROTOCOL,
                                  "invalid close code");
    }

    n = ws->control_len - 2;
    need = 0;
    lo = 0;
    hi = 0;

    if (ngx_segura_ws_utf8(&need, &lo, &hi, ws->control + 2, n) != n
        || need != 0)
    {
        return ngx_segura_ws_fail(ws, NGX_SEGURA_WS_CLOSE_BAD_DATA,
                                  "close reason is not UTF-8");
    }

    ev->code = code;
    ev->reason = (const char *) ws->control + 2;
    ev->reason_len = n;

    return NGX_SEGURA_WS_CLOSE;
}


/*
 * Unmasks (and for text, validates) the n payload bytes at p, which may be
 * none only when the frame has no payload left.  Fills ev->len with the
 * bytes consumed and returns DATA, or NEED_MORE for an empty frame that is
 * not the last of its message, or ERROR.  When invalid UTF-8 follows valid
 * data, the valid part is delivered first and the error comes on the next
 * call, so the events do not depend on chunking.
 */

static ngx_segura_ws_event_e
ngx_segura_ws_data(ngx_segura_ws_parser_t *ws, unsigned char *p, size_t n,
    ngx_segura_ws_event_t *ev)
{
    size_t         i, valid;
    unsigned       flags, op;
    unsigned char  m;

    op = ws->message;
    m = ws->mask_pos;

    for (i = 0; i < n; i++) {
        p[i] ^= ws->mask[m];
        m = (m + 1) & 3;
    }

    valid = n;

    if (ws->message == NGX_SEGURA_WS_OP_TEXT) {
        valid = ngx_segura_ws_utf8(&ws->utf8_need, &ws->utf8_lo, &ws->utf8_hi,
                                   p, n);
    }

    if (valid < n) {

        /* remask the bytes not consumed: the caller's buffer is as given */

        m = (ws->mask_pos + valid) & 3;

        for (i = valid; i < n; i++) {
            p[i] ^= ws->mask[m];
            m = (m + 1) & 3;
        }

        ngx_segura_ws_fail(ws, NGX_SEGURA_WS_CLOSE_BAD_DATA,
                           "invalid UTF-8 in text message");

        if (valid == 0) {
            return NGX_SEGURA_WS_ERROR;
        }

        n = valid;
        flags = 0;
        goto deliver;
    }

    ws->mask_pos = m;
    ws->remaining -= n;
    flags = 0;

    if (ws->remaining == 0 && ws->fin) {

        if (ws->utf8_need != 0) {

            /* RFC 6455 8.1: the text ends inside a character */

            ngx_segura_ws_fail(ws, NGX_SEGURA_WS_CLOSE_BAD_DATA,
                               "text message ends inside a character");

            if (n == 0) {
                return NGX_SEGURA_WS_ERROR;
            }

            goto deliver;
        }

        flags = NGX_SEGURA_WS_LAST;
        ws->message = 0;
        ws->message_size = 0;
        ws->state = ngx_segura_ws_st_hdr0;

    } else if (ws->remaining == 0) {
        ws->state = ngx_segura_ws_st_hdr0;

        if (n == 0) {
            return NGX_SEGURA_WS_NEED_MORE;
        }
    }

deliver:

    if (ws->first) {
        flags |= NGX_SEGURA_WS_FIRST;
        ws->first = 0;
    }

    ev->opcode = op;
    ev->flags = flags;
    ev->data = p;
    ev->len = n;

    return NGX_SEGURA_WS_DATA;
}


/*
 * Validates UTF-8 (RFC 3629) incrementally: *need continuation bytes are
 * still due, the next one within [*lo, *hi].  The narrower ranges after
 * E0, ED, F0 and F4 reject overlong forms, surrogates and code points past
 * U+10FFFF at their second byte.  Returns the length of the valid prefix.
 */

static size_t
ngx_segura_ws_utf8(unsigned char *need, unsigned char *lo, unsigned char *hi,
    const unsigned char *p, size_t n)
{
    size_t    i;
    unsigned  c;

    for (i = 0; i < n; i++) {
        c = p[i];

        if (*need) {

            if (c < *lo || c > *hi) {
                return i;
            }

            (*need)--;
            *lo = 0x80;
            *hi = 0xbf;
            continue;
        }

        if (c < 0x80) {
            continue;
        }

        *lo = 0x80;
        *hi = 0xbf;

        if (c >= 0xc2 && c <= 0xdf) {
            *need = 1;

        } else if (c >= 0xe0 && c <= 0xef) {
            *need = 2;

            if (c == 0xe0) {
                *lo = 0xa0;

            } else if (c == 0xed) {
                *hi = 0x9f;
            }

        } else if (c >= 0xf0 && c <= 0xf4) {
            *need = 3;

            if (c == 0xf0) {
                *lo = 0x90;

            } else if (c == 0xf4) {
                *hi = 0x8f;
            }

        } else {
            return i;
        }
    }

    return n;
}


int
ngx_segura_ws_utf8_valid(const unsigned char *p, size_t len)
{
    unsigned char  need, lo, hi;

    need = 0;
    lo = 0;
    hi = 0;

    return ngx_segura_ws_utf8(&need, &lo, &hi, p, len) == len && need == 0;
}


int
ngx_segura_ws_close_code_valid(unsigned code)
{
    /* RFC 6455 7.4: 1004-1006 and 1015 are never sent in a frame */

    return (code >= 1000 && code <= 1003)
           || (code >= 1007 && code <= 1011)
           || (code >= 3000 && code <= 4999);
}


size_t
ngx_segura_ws_frame_header(unsigned char *buf, unsigned opcode, unsigned fin,
    uint64_t len)
{
    int  i;

    switch (opcode) {

    case NGX_SEGURA_WS_OP_CONT:
    case NGX_SEGURA_WS_OP_TEXT:
    case NGX_SEGURA_WS_OP_BINARY:

        if (len & 0x8000000000000000ULL) {
            return 0;
        }

        break;

    case NGX_SEGURA_WS_OP_CLOSE:
    case NGX_SEGURA_WS_OP_PING:
    case NGX_SEGURA_WS_OP_PONG:

        if (!fin || len > NGX_SEGURA_WS_CONTROL_MAX) {
            return 0;
        }

        break;

    default:
        return 0;
    }

    buf[0] = (unsigned char) ((fin ? 0x80 : 0) | opcode);

    if (len < 126) {
        buf[1] = (unsigned char) len;
        return 2;
    }

    if (len < 65536) {
        buf[1] = 126;
        buf[2] = (unsigned char) (len >> 8);
        buf[3] = (unsigned char) len;
        return 4;
    }

    buf[1] = 127;

    for (i = 9; i >= 2; i--) {
        buf[i] = (unsigned char) len;
        len >>= 8;
    }

    return 10;
}


size_t
ngx_segura_ws_close_payload(unsigned char *buf, unsigned code,
    const unsigned char *reason, size_t reason_len)
{
    size_t         i, n, whole;
    unsigned char  need, lo, hi;

    if (code == 0) {
        return 0;
    }

    buf[0] = (unsigned char) (code >> 8);
    buf[1] = (unsigned char) code;

    n = reason_len;

    if (n > NGX_SEGURA_WS_CONTROL_MAX - 2) {
        n = NGX_SEGURA_WS_CONTROL_MAX - 2;
    }

    /* keep the valid prefix up to the end of its last whole character */

    need = 0;
    lo = 0;
    hi = 0;
    whole = 0;

    for (i = 0; i < n; i++) {

        if (ngx_segura_ws_utf8(&need, &lo, &hi, reason + i, 1) != 1) {
            break;
        }

        if (need == 0) {
            whole = i + 1;
        }
    }

    if (whole) {
        memcpy(buf + 2, reason, whole);
    }

    return 2 + whole;
}


int
ngx_segura_ws_key_valid(const unsigned char *key, size_t len)
{
    size_t         i;
    unsigned char  out[20];

    if (len != NGX_SEGURA_WS_KEY_LEN || key[22] != '=' || key[23] != '=') {
        return 0;
    }

    for (i = 0; i < 22; i++) {
        if (key[i] == '\0' || strchr(ngx_segura_ws_b64, key[i]) == NULL) {
            return 0;
        }
    }

    /*
     * 16 bytes leave 4 unused bits in the last character before "==";
     * canonical base64 has them zero
     */

    if ((strchr(ngx_segura_ws_b64, key[21]) - ngx_segura_ws_b64) & 0x0f) {
        return 0;
    }

    /* EVP_DecodeBlock() counts the padding: 18 bytes out for 24 in */

    return EVP_DecodeBlock(out, key, (int) len) == 18;
}


int
ngx_segura_ws_accept(unsigned char *out, const unsigned char *key,
    size_t len)
{
    unsigned int   n;
    unsigned char  md[EVP_MAX_MD_SIZE];
    unsigned char  b64[NGX_SEGURA_WS_ACCEPT_LEN + 1];
    unsigned char  buf[64 + sizeof(NGX_SEGURA_WS_GUID) - 1];

    if (len > 64) {
        return -1;
    }

    memcpy(buf, key, len);
    memcpy(buf + len, NGX_SEGURA_WS_GUID, sizeof(NGX_SEGURA_WS_GUID) - 1);

    if (EVP_Digest(buf, len + sizeof(NGX_SEGURA_WS_GUID) - 1, md, &n,
                   EVP_sha1(), NULL)
        != 1
        || n != 20)
    {
        return -1;
    }

    if (EVP_EncodeBlock(b64, md, 20) != NGX_SEGURA_WS_ACCEPT_LEN) {
        return -1;
    }

    memcpy(out, b64, NGX_SEGURA_WS_ACCEPT_LEN);

    return 0;
}


int
ngx_segura_ws_token_list_has(const unsigned char *list, size_t len,
    const char *token)
{
    size_t                tlen, i;
    unsigned              a, b;
    const unsigned char  *p, *last, *start, *end;

    tlen = strlen(token);
    p = list;
    last = list + len;

    while (p < last) {

        start = p;

        while (p < last && *p != ',') {
            p++;
        }

        end = p;

        if (p < last) {
            p++;  /* the comma */
        }

        while (start < end && (*start == ' ' || *start == '\t')) {
            start++;
        }

        while (end > start && (end[-1] == ' ' || end[-1] == '\t')) {
            end--;
        }

        if ((size_t) (end - start) != tlen) {
            continue;
        }

        for (i = 0; i < tlen; i++) {
            a = start[i];
            b = (unsigned char) token[i];

            if (a >= 'A' && a <= 'Z') {
                a |= 0x20;
            }

            if (b >= 'A' && b <= 'Z') {
                b |= 0x20;
            }

            if (a != b) {
                break;
            }
        }

        if (i == tlen) {
            return 1;
        }
    }

    return 0;
}
