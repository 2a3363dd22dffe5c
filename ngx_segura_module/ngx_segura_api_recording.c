
/*
 * Copyright (C) ngx_segura_module authors
 */


/*
 * GET /api/sessions/<id>/recording: a session's recording (written by
 * ngx_segura_recorder.c, sql/017) as asciicast v2, or with ?format=raw
 * its output bytes alone.  Who may: ngx_segura_audit.h; anyone else is
 * told there is no such session, and the attempt is an audit_log row
 * (session_replay_denied).  Every replay is an audit_log row, written
 * before anything is read.  A live session answers with what is stored so
 * far (the last second may be missing); an expired one (retention) is 404.
 *
 * The chunks are read in batches, opened with the master key whose id the
 * chunk names, decompressed and written out; the response is built in
 * memory, so it is capped: a recording whose response would pass
 * NGX_SEGURA_RECORDING_MAX_RESPONSE is answered 413 too_large
 * (docs/recording.md).  Pool threads only.
 */


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>
#include "ngx_segura.h"
#include "ngx_segura_api.h"
#include "ngx_segura_audit.h"
#include "ngx_segura_recorder.h"
#include "ngx_segura_vault.h"

#include <openssl/crypto.h>
#include <zstd.h>


#define NGX_SEGURA_RECORDING_MAX_RESPONSE  (64 * 1024 * 1024)
#define NGX_SEGURA_RECORDING_BATCH         32
#define NGX_SEGURA_RECORDING_PLAIN_MAX     (NGX_SEGURA_RECORDER_CHUNK + 1024)


typedef struct {
    u_char                        *data;      /* malloc()ed */
    size_t                         len;
    size_t                         cap;
    unsigned                       overflow:1;
} ngx_segura_recording_out_t;


typedef struct {
    ngx_segura_recording_out_t     out;
    ngx_uint_t                     raw;
    u_char                        *scratch;   /* carry + an event */
    u_char                         carry[2][4];   /* o, i: a cut UTF-8 */
    size_t                         ncarry[2];
    uint32_t                       last;
} ngx_segura_recording_t;


static ngx_int_t ngx_segura_recording_chunk(ngx_segura_api_ctx_t *ctx,
    ngx_segura_recording_t *rc, const char *id, uint32_t seq,
    u_char *blob, size_t blob_len, u_char *plain, u_char *events);
static ngx_int_t ngx_segura_recording_events(ngx_segura_recording_t *rc,
    u_char *p, size_t len);
static ngx_int_t ngx_segura_recording_event(ngx_segura_recording_t *rc,
    u_char type, uint32_t time, u_char *data, size_t len);
static ngx_int_t ngx_segura_recording_text(ngx_segura_recording_t *rc,
    ngx_uint_t stream, u_char *data, size_t len, ngx_uint_t final);
static u_char *ngx_segura_recording_reserve(ngx_segura_recording_out_t *out,
    size_t n);


void
ngx_segura_api_recording(ngx_segura_api_ctx_t *ctx, PGconn **conn,
    const char *id)
{
    char                    seq[NGX_INT64_LEN + 1], fmt[16];
    char                   *line;
    u_char                 *blob, *plain, *events, *p;
    size_t                  blob_len, n;
    uint32_t                next;
    json_t                 *header, *detail;
    PGresult               *res;
    ngx_int_t               rc, i, rows;
    const char             *params[2];
    ngx_segura_recording_t  rec;

    if (!(ctx->method & (NGX_HTTP_GET|NGX_HTTP_HEAD))) {
        ngx_segura_api_fail(ctx, NGX_SEGURA_ERR_METHOD, NULL, NULL);
        return;
    }

    ngx_memzero(&rec, sizeof(ngx_segura_recording_t));

    switch (ngx_segura_api_arg(ctx, "format", fmt, sizeof(fmt))) {

    case NGX_DECLINED:
        break;

    case NGX_OK:
        if (ngx_strcmp(fmt, "raw") == 0) {
            rec.raw = 1;
            break;
        }

        if (ngx_strcmp(fmt, "asciicast") == 0) {
            break;
        }

        /* fall through */

    default:
        ngx_segura_api_fail(ctx, NGX_SEGURA_ERR_INVALID_FIELD, "format",
                            "Must be asciicast or raw");
        return;
    }

    /* nobody who may not see it learns that the session exists */

    if (ngx_segura_api_may_audit(ctx, conn, id) != NGX_OK) {
        if (ctx->err == NGX_SEGURA_ERR_NOT_FOUND) {
            detail = json_pack("{s:s}", "format",
                               rec.raw ? "raw" : "asciicast");
            (void) ngx_segura_api_audit(ctx, conn, "session_replay_denied",
                                        "ssh_session", id, detail);
            json_decref(detail);
        }

        return;
    }

    params[0] = id;

    res = ngx_segura_api_query_retry(ctx, conn,
              "select r.width, r.height,"
              " extract(epoch from r.started_at)::bigint,"
              " s.username || '@' || s.device_name,"
              " (select coalesce(sum(c.plain_size), 0)"
              "  from ssh_session_chunks c where c.session_id = r.session_id),"
              " r.expired_at is not null"
              " from ssh_session_recordings r"
              " join ssh_sessions s on s.id = r.session_id"
              " where r.session_id = $1::uuid", 1, params);
    if (ngx_segura_api_one(ctx, res) != NGX_OK) {
        return;
    }

    if (PQgetvalue(res, 0, 5)[0] == 't') {
        PQclear(res);
        ngx_segura_api_fail(ctx, NGX_SEGURA_ERR_NOT_FOUND, NULL,
                            "The recording has expired: "
                            "segura_recording_retention deleted it");
        return;
    }

    if (ngx_atoof((u_char *) PQgetvalue(res, 0, 4),
                  ngx_strlen(PQgetvalue(res, 0, 4)))
        > NGX_SEGURA_RECORDING_MAX_RESPONSE)
    {
        PQclear(res);
        ngx_segura_api_fail(ctx, NGX_SEGURA_ERR_TOO_LARGE, NULL,
                            "The recording is larger than the 64 MiB a "
                            "replay may answer with");
        return;
    }

    header = json_pack("{s:i, s:i, s:i, s:I, s:s}",
                       "version", 2,
                       "width", atoi(PQgetvalue(res, 0, 0)),
                       "height", atoi(PQgetvalue(res, 0, 1)),
                       "timestamp",
                       (json_int_t) strtoll(PQgetvalue(res, 0, 2), NULL, 10),
                       "title", PQgetvalue(res, 0, 3));
    PQclear(res);

    /* the replay is audited before a byte of it is read */

    detail = json_pack("{s:s}", "format", rec.raw ? "raw" : "asciicast");

    rc = ngx_segura_api_audit(ctx, conn, "session_replay", "ssh_session",
                              id, detail);
    json_decref(detail);

    if (rc != NGX_OK || header == NULL) {
        json_decref(header);
        if (ctx->err == NGX_SEGURA_ERR_OK) {
            ngx_segura_api_fail(ctx, NGX_SEGURA_ERR_INTERNAL, NULL, NULL);
        }
        return;
    }

    line = json_dumps(header, JSON_COMPACT);
    json_decref(header);

    plain = malloc(NGX_SEGURA_RECORDING_PLAIN_MAX);
    events = malloc(NGX_SEGURA_RECORDING_PLAIN_MAX);
    rec.scratch = malloc(NGX_SEGURA_RECORDING_PLAIN_MAX + 8);

    if (line == NULL || plain == NULL || events == NULL
        || rec.scratch == NULL)
    {
        ngx_segura_api_fail(ctx, NGX_SEGURA_ERR_INTERNAL, NULL, NULL);
        goto done;
    }

    if (!rec.raw) {
        n = ngx_strlen(line);
        p = ngx_segura_recording_reserve(&rec.out, n + 1);
        if (p == NULL) {
            goto failed;
        }

        p = ngx_cpymem(p, line, n);
        *p++ = '\n';
        rec.out.len += n + 1;
    }

    next = 0;

    for ( ;; ) {
        ngx_snprintf((u_char *) seq, sizeof(seq), "%uD%Z", next);
        params[1] = seq;

        res = ngx_segura_api_query_retry(ctx, conn,
                  "select seq, data from ssh_session_chunks"
                  " where session_id = $1::uuid and seq >= $2::int"
                  " order by seq limit 32", 2, params);
        if (res == NULL) {
            goto done;
        }

        rows = PQntuples(res);

        for (i = 0; i < rows; i++) {
            next = (uint32_t) strtoul(PQgetvalue(res, i, 0), NULL, 10);

            blob = PQunescapeBytea((u_char *) PQgetvalue(res, i, 1),
                                   &blob_len);
            if (blob == NULL) {
                PQclear(res);
                ngx_segura_api_fail(ctx, NGX_SEGURA_ERR_INTERNAL, NULL, NULL);
                goto done;
            }

            rc = ngx_segura_recording_chunk(ctx, &rec, id, next, blob,
                                            blob_len, plain, events);
            PQfreemem(blob);

            if (rc != NGX_OK) {
                PQclear(res);
                goto failed;
            }

            next++;
        }

        PQclear(res);

        if (rows < NGX_SEGURA_RECORDING_BATCH) {
            break;
        }
    }

    if (ngx_segura_recording_text(&rec, 0, NULL, 0, 1) != NGX_OK
        || ngx_segura_recording_text(&rec, 1, NULL, 0, 1) != NGX_OK)
    {
        goto failed;
    }

    /* the body may hold NULs (raw): its length is given */

    if (rec.out.data == NULL) {
        rec.out.data = malloc(1);
        if (rec.out.data == NULL) {
            ngx_segura_api_fail(ctx, NGX_SEGURA_ERR_INTERNAL, NULL, NULL);
            goto done;
        }
    }

    free(ctx->json);
    ctx->json = (char *) rec.out.data;
    ctx->json_len = rec.out.len;
    ctx->content_type = rec.raw ? "application/octet-stream"
                                : "application/x-asciicast";
    ctx->status = 200;
    rec.out.data = NULL;

    goto done;

failed:

    if (ctx->err == NGX_SEGURA_ERR_OK) {
        if (rec.out.overflow) {
            ngx_segura_api_fail(ctx, NGX_SEGURA_ERR_TOO_LARGE, NULL,
                                "The recording is larger than the 64 MiB a "
                                "replay may answer with");
        } else {
            ngx_segura_api_fail(ctx, NGX_SEGURA_ERR_INTERNAL, NULL, NULL);
        }
    }

done:

    free(line);

    if (plain != NULL) {
        OPENSSL_cleanse(plain, NGX_SEGURA_RECORDING_PLAIN_MAX);
        free(plain);
    }

    if (events != NULL) {
        OPENSSL_cleanse(events, NGX_SEGURA_RECORDING_PLAIN_MAX);
        free(events);
    }

    if (rec.scratch != NULL) {
        OPENSSL_cleanse(rec.scratch, NGX_SEGURA_RECORDING_PLAIN_MAX + 8);
        free(rec.scratch);
    }

    free(rec.out.data);
}


static ngx_int_t
ngx_segura_recording_chunk(ngx_segura_api_ctx_t *ctx,
    ngx_segura_recording_t *rc, const char *id, uint32_t seq, u_char *blob,
    size_t blob_len, u_char *plain, u_char *events)
{
    int                       key_id;
    char                      aad[NGX_SEGURA_RECORDER_AAD_LEN];
    size_t                    aad_len, plain_len, n;
    unsigned long long        size;
    ngx_segura_vault_err_e    err;
    ngx_segura_master_key_t  *key;

    key_id = ngx_segura_vault_key_id(blob, blob_len);
    key = (key_id < 0) ? NULL
                       : ngx_http_segura_find_key(ctx->smcf,
                                                  (ngx_uint_t) key_id);

    if (key == NULL
        || ngx_segura_vault_opened_size(blob_len)
           > NGX_SEGURA_RECORDING_PLAIN_MAX)
    {
        ctx->log_level = NGX_LOG_ERR;
        (void) ngx_snprintf((u_char *) ctx->log, sizeof(ctx->log),
                            "recording %s chunk %uD: no master key %d, or "
                            "too long%Z", id, seq, key_id);
        return NGX_ERROR;
    }

    aad_len = ngx_segura_recorder_aad(aad, sizeof(aad), id, seq);
    plain_len = NGX_SEGURA_RECORDING_PLAIN_MAX;

    if (ngx_segura_vault_open(key->key, (unsigned) key->id, aad, aad_len,
                              blob, blob_len, plain, &plain_len, &err)
        != 0)
    {
        ctx->log_level = NGX_LOG_ERR;
        (void) ngx_snprintf((u_char *) ctx->log, sizeof(ctx->log),
                            "recording %s chunk %uD cannot be opened: %s%Z",
                            id, seq, ngx_segura_vault_strerror(err));
        return NGX_ERROR;
    }

    size = ZSTD_getFrameContentSize(plain, plain_len);

    if (size == ZSTD_CONTENTSIZE_ERROR || size == ZSTD_CONTENTSIZE_UNKNOWN
        || size > NGX_SEGURA_RECORDING_PLAIN_MAX)
    {
        goto bad;
    }

    n = ZSTD_decompress(events, NGX_SEGURA_RECORDING_PLAIN_MAX, plain,
                        plain_len);

    if (ZSTD_isError(n) || n != size) {
        goto bad;
    }

    if (ngx_segura_recording_events(rc, events, n) == NGX_OK) {
        return NGX_OK;
    }

    if (rc->out.overflow) {
        return NGX_ERROR;
    }

bad:

    ctx->log_level = NGX_LOG_ERR;
    (void) ngx_snprintf((u_char *) ctx->log, sizeof(ctx->log),
                        "recording %s chunk %uD is malformed%Z", id, seq);
    return NGX_ERROR;
}


static ngx_int_t
ngx_segura_recording_events(ngx_segura_recording_t *rc, u_char *p,
    size_t len)
{
    u_char    type;
    uint32_t  time, n;

    while (len > 0) {
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

        if (time < rc->last) {
            time = rc->last;
        }

        rc->last = time;

        if (ngx_segura_recording_event(rc, type, time, p, n) != NGX_OK) {
            return NGX_ERROR;
        }

        p += n;
        len -= n;
    }

    return NGX_OK;
}


static ngx_int_t
ngx_segura_recording_event(ngx_segura_recording_t *rc, u_char type,
    uint32_t time, u_char *data, size_t len)
{
    u_char       *p;
    ngx_uint_t    stream;
    const char   *code, *prefix;

    if (rc->raw) {
        if (type != NGX_SEGURA_REC_OUTPUT || len == 0) {
            return NGX_OK;
        }

        p = ngx_segura_recording_reserve(&rc->out, len);
        if (p == NULL) {
            return NGX_ERROR;
        }

        ngx_memcpy(p, data, len);
        rc->out.len += len;
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

    p = ngx_segura_recording_reserve(&rc->out, 64);
    if (p == NULL) {
        return NGX_ERROR;
    }

    p = ngx_sprintf(p, "[%uD.%03uD, \"%s\", \"%s", time / 1000, time % 1000,
                    code, prefix);
    rc->out.len = p - rc->out.data;

    if (type == NGX_SEGURA_REC_OUTPUT || type == NGX_SEGURA_REC_INPUT) {
        if (ngx_segura_recording_text(rc, stream, data, len, 0) != NGX_OK) {
            return NGX_ERROR;
        }

    } else {
        /* resizes, markers, exits are ours: no cut sequence */

        if (ngx_segura_recording_text(rc, 2, data, len, 1) != NGX_OK) {
            return NGX_ERROR;
        }
    }

    p = ngx_segura_recording_reserve(&rc->out, 3);
    if (p == NULL) {
        return NGX_ERROR;
    }

    p = ngx_cpymem(p, "\"]\n", 3);
    rc->out.len += 3;

    return NGX_OK;
}


/*
 * Bytes as a JSON string's contents: UTF-8 as it is, escaped where JSON
 * needs it, a byte that is not UTF-8 as U+FFFD; a sequence cut at the end
 * of an event waits for the next event of its stream (stream 2: none).
 */

static ngx_int_t
ngx_segura_recording_text(ngx_segura_recording_t *rc, ngx_uint_t stream,
    u_char *data, size_t len, ngx_uint_t final)
{
    u_char        *p, *s, *end, c;
    size_t         k, need, i;
    static u_char  hex[] = "0123456789abcdef";

    s = rc->scratch;
    k = 0;

    if (stream < 2) {
        ngx_memcpy(s, rc->carry[stream], rc->ncarry[stream]);
        k = rc->ncarry[stream];
        rc->ncarry[stream] = 0;
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

        p = ngx_segura_recording_reserve(&rc->out, 64 + 6 * len);
        if (p == NULL) {
            return NGX_ERROR;
        }

        p = ngx_sprintf(p, "[%uD.%03uD, \"%s\", \"", rc->last / 1000,
                        rc->last % 1000, stream ? "i" : "o");
        rc->out.len = p - rc->out.data;

        if (ngx_segura_recording_text(rc, 2, s, len, 1) != NGX_OK) {
            return NGX_ERROR;
        }

        p = ngx_segura_recording_reserve(&rc->out, 3);
        if (p == NULL) {
            return NGX_ERROR;
        }

        ngx_memcpy(p, "\"]\n", 3);
        rc->out.len += 3;
        return NGX_OK;
    }

    p = ngx_segura_recording_reserve(&rc->out, 6 * len);
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
                ngx_memcpy(rc->carry[stream], s, end - s);
                rc->ncarry[stream] = end - s;
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

    rc->out.len = p - rc->out.data;

    return NGX_OK;
}


static u_char *
ngx_segura_recording_reserve(ngx_segura_recording_out_t *out, size_t n)
{
    u_char  *p;
    size_t   cap;

    if (out->len + n <= out->cap) {
        return out->data + out->len;
    }

    if (out->len + n > NGX_SEGURA_RECORDING_MAX_RESPONSE) {
        out->overflow = 1;
        return NULL;
    }

    cap = out->cap ? out->cap : 65536;

    while (cap < out->len + n) {
        cap *= 2;
    }

    if (cap > NGX_SEGURA_RECORDING_MAX_RESPONSE) {
        cap = NGX_SEGURA_RECORDING_MAX_RESPONSE;
    }

    p = realloc(out->data, cap);
    if (p == NULL) {
        return NULL;
    }

    out->data = p;
    out->cap = cap;

    return p + out->len;
}
