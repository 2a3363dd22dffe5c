
/*
 * Copyright (C) ngx_segura_module authors
 */


/*
 * GET /api/sessions/<id>/recording: a session's recording (written by
 * ngx_segura_recorder.c, sql/017 and 019) as asciicast v2, with
 * ?format=raw its output bytes alone, with ?format=index the JSON index
 * of the whole recording (duration, markers, chunks), and with ?from= and
 * ?to= (ms) a window of it as asciicast whose first event redraws the
 * screen at from (docs/recording.md).  Who may: ngx_segura_audit.h,
 * through ngx_segura_api_recording_allowed(); anyone else is told there is
 * no such session, and the attempt is an audit_log row
 * (session_replay_denied).  Every request is an audit_log row, written
 * before anything is read.  A live session answers with what is stored so
 * far (the last second may be missing); an expired one (retention) is 404.
 *
 * Streamed, without a cap: a pool pass reads a batch of chunks, opens,
 * decompresses and writes them out (ngx_segura_recording_cast.c) into the
 * stream's one buffer, and returns its connection; the event loop sends
 * that buffer, and only once the client has taken all of it posts the
 * next pass.  A slow client holds one batch in the worker and no database
 * connection.  The pool passes run ngx_segura_api_recording() (the first)
 * and ngx_segura_recording_step(); ngx_segura_recording_send() and the
 * write handler run on the event loop.
 */


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>
#include "ngx_segura.h"
#include "ngx_segura_api.h"
#include "ngx_segura_audit.h"
#include "ngx_segura_metrics.h"
#include "ngx_segura_recorder.h"
#include "ngx_segura_recording_cast.h"
#include "ngx_segura_vault.h"

#include <openssl/crypto.h>
#include <zstd.h>


/* chunks per pool pass: at most 1 MiB of events */
#define NGX_SEGURA_RECORDING_BATCH         16
#define NGX_SEGURA_RECORDING_MS_MAX        2147483647


typedef struct {
    ngx_segura_api_ctx_t          *ctx;
    ngx_segura_cast_t              cast;
    char                           id[37];
    uint32_t                       next;      /* the next chunk's seq */
    u_char                        *plain;     /* PLAIN_MAX each */
    u_char                        *events;
    ngx_buf_t                      buf;
    ngx_chain_t                    out;
    unsigned                       done:1;    /* the last batch is out */
    unsigned                       failed:1;
    unsigned                       headers:1;
} ngx_segura_recording_stream_t;


static ngx_int_t ngx_segura_api_recording_allowed(ngx_segura_api_ctx_t *ctx,
    PGconn **conn, const char *id);
static ngx_int_t ngx_segura_recording_ms(ngx_segura_api_ctx_t *ctx,
    const char *name, uint32_t *ms);
static void ngx_segura_recording_index(ngx_segura_api_ctx_t *ctx,
    PGconn **conn, const char *id);
static ngx_int_t ngx_segura_recording_audit(ngx_segura_api_ctx_t *ctx,
    PGconn **conn, const char *id, const char *format, ngx_int_t from,
    ngx_int_t to);
static ngx_int_t ngx_segura_recording_batch(ngx_segura_api_ctx_t *ctx,
    PGconn **conn, ngx_segura_recording_stream_t *st);
static ngx_int_t ngx_segura_recording_chunk(ngx_segura_api_ctx_t *ctx,
    ngx_segura_recording_stream_t *st, uint32_t seq, u_char *blob,
    size_t blob_len);
static void ngx_segura_recording_step(ngx_segura_api_ctx_t *ctx,
    PGconn **conn);
static void ngx_segura_recording_send(ngx_http_request_t *r,
    ngx_segura_api_ctx_t *ctx);
static ngx_int_t ngx_segura_recording_headers(ngx_http_request_t *r,
    ngx_segura_recording_stream_t *st);
static void ngx_segura_recording_write(ngx_http_request_t *r);
static void ngx_segura_recording_pump(ngx_http_request_t *r,
    ngx_segura_recording_stream_t *st);
static void ngx_segura_recording_end(ngx_http_request_t *r, ngx_int_t rc);
static void ngx_segura_recording_free(void *data);


/*
 * Who may replay, download or index session id's recording
 * (ngx_segura_audit.h).  NGX_DECLINED: ctx has failed with 404 (or the
 * database's error), so that nobody else learns a recording exists; pool
 * threads.
 */

static ngx_int_t
ngx_segura_api_recording_allowed(ngx_segura_api_ctx_t *ctx, PGconn **conn,
    const char *id)
{
    /* the rule of ngx_segura_audit.h; on NGX_DECLINED ctx has failed */

    return ngx_segura_api_may_audit(ctx, conn, id) == NGX_OK
           ? NGX_OK : NGX_DECLINED;
}


void
ngx_segura_api_recording(ngx_segura_api_ctx_t *ctx, PGconn **conn,
    const char *id)
{
    char                            fmt[16], seq[NGX_INT_T_LEN + 1],
                                    from[NGX_INT_T_LEN + 1],
                                    rest[NGX_INT_T_LEN + 1];
    uint32_t                        ms_from, ms_to;
    PGresult                       *res;
    ngx_int_t                       rc, has_from, has_to;
    ngx_uint_t                      raw, index;
    json_t                         *detail;
    const char                     *params[3];
    ngx_segura_recording_stream_t  *st;

    if (!(ctx->method & (NGX_HTTP_GET|NGX_HTTP_HEAD))) {
        ngx_segura_api_fail(ctx, NGX_SEGURA_ERR_METHOD, NULL, NULL);
        return;
    }

    raw = 0;
    index = 0;

    switch (ngx_segura_api_arg(ctx, "format", fmt, sizeof(fmt))) {

    case NGX_DECLINED:
        break;

    case NGX_OK:
        if (ngx_strcmp(fmt, "raw") == 0) {
            raw = 1;
            break;
        }

        if (ngx_strcmp(fmt, "index") == 0) {
            index = 1;
            break;
        }

        if (ngx_strcmp(fmt, "asciicast") == 0) {
            break;
        }

        /* fall through */

    default:
        ngx_segura_api_fail(ctx, NGX_SEGURA_ERR_INVALID_FIELD, "format",
                            "Must be asciicast, raw or index");
        return;
    }

    ms_from = 0;
    ms_to = NGX_SEGURA_RECORDING_MS_MAX;

    has_from = ngx_segura_recording_ms(ctx, "from", &ms_from);
    if (has_from == NGX_ERROR) {
        return;
    }

    has_to = ngx_segura_recording_ms(ctx, "to", &ms_to);
    if (has_to == NGX_ERROR) {
        return;
    }

    if (has_from == NGX_OK || has_to == NGX_OK) {
        if (raw || index) {
            ngx_segura_api_fail(ctx, NGX_SEGURA_ERR_INVALID_FIELD, "format",
                                "A window (from, to) is asciicast only");
            return;
        }

        if (ms_to <= ms_from) {
            ngx_segura_api_fail(ctx, NGX_SEGURA_ERR_INVALID_FIELD, "to",
                                "Must be later than from");
            return;
        }
    }

    /* nobody who may not see it learns that the session exists */

    if (ngx_segura_api_recording_allowed(ctx, conn, id) != NGX_OK) {
        if (ctx->err == NGX_SEGURA_ERR_NOT_FOUND) {
            detail = json_pack("{s:s}", "format",
                               raw ? "raw" : index ? "index" : "asciicast");
            (void) ngx_segura_api_audit(ctx, conn, "session_replay_denied",
                                        "ssh_session", id, detail);
            json_decref(detail);
        }

        return;
    }

    if (index) {
        ngx_segura_recording_index(ctx, conn, id);
        return;
    }

    /*
     * the header; for a window, the chunk to start reading at: the last
     * ones before from that hold NGX_SEGURA_CAST_RESTORE bytes of events
     */

    (void) ngx_snprintf((u_char *) from, sizeof(from), "%uD%Z", ms_from);
    (void) ngx_snprintf((u_char *) rest, sizeof(rest), "%d%Z",
                        NGX_SEGURA_CAST_RESTORE);

    params[0] = id;
    params[1] = from;
    params[2] = rest;

    res = ngx_segura_api_query_retry(ctx, conn,
              "select r.width, r.height,"
              " extract(epoch from r.started_at)::bigint,"
              " s.username || '@' || s.device_name,"
              " coalesce((select max(x.seq) from"
              "   (select c.seq, sum(c.plain_size) over (order by c.seq desc)"
              "    as acc from ssh_session_chunks c"
              "    where c.session_id = r.session_id"
              "    and c.t_first < $2::int) x"
              "   where x.acc >= $3::int), 0),"
              " r.expired_at is not null"
              " from ssh_session_recordings r"
              " join ssh_sessions s on s.id = r.session_id"
              " where r.session_id = $1::uuid", 3, params);
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

    st = calloc(1, sizeof(ngx_segura_recording_stream_t));
    if (st == NULL) {
        PQclear(res);
        ngx_segura_api_fail(ctx, NGX_SEGURA_ERR_INTERNAL, NULL, NULL);
        return;
    }

    st->ctx = ctx;
    ngx_memcpy(st->id, id, 36);
    st->cast.raw = raw;
    st->cast.cols = (unsigned) atoi(PQgetvalue(res, 0, 0));
    st->cast.rows = (unsigned) atoi(PQgetvalue(res, 0, 1));
    st->cast.timestamp = strtoll(PQgetvalue(res, 0, 2), NULL, 10);
    (void) ngx_cpystrn((u_char *) st->cast.title,
                       (u_char *) PQgetvalue(res, 0, 3),
                       sizeof(st->cast.title));

    if (has_from == NGX_OK || has_to == NGX_OK) {
        st->cast.window = 1;
        st->cast.from = ms_from;
        st->cast.to = ms_to;
        st->next = (uint32_t) strtoul(PQgetvalue(res, 0, 4), NULL, 10);
    }

    PQclear(res);

    if (st->next > 0) {

        /* the size when that chunk began (null: written before 019) */

        (void) ngx_snprintf((u_char *) seq, sizeof(seq), "%uD%Z", st->next);
        params[1] = seq;

        res = ngx_segura_api_query_retry(ctx, conn,
                  "select cols, rows from ssh_session_chunks"
                  " where session_id = $1::uuid and seq = $2::int"
                  " and cols is not null and rows is not null",
                  2, params);
        if (res == NULL) {
            goto failed;
        }

        if (PQntuples(res) == 1) {
            st->cast.cols = (unsigned) atoi(PQgetvalue(res, 0, 0));
            st->cast.rows = (unsigned) atoi(PQgetvalue(res, 0, 1));
        }

        PQclear(res);
    }

    /* audited before a byte of it is read */

    rc = ngx_segura_recording_audit(ctx, conn, id,
                                    raw ? "raw" : "asciicast",
                                    st->cast.window ? (ngx_int_t) ms_from
                                                    : -1,
                                    st->cast.window && has_to == NGX_OK
                                    ? (ngx_int_t) ms_to : -1);
    if (rc != NGX_OK) {
        goto failed;
    }

    st->plain = malloc(NGX_SEGURA_CAST_PLAIN_MAX);
    st->events = malloc(NGX_SEGURA_CAST_PLAIN_MAX);

    if (st->plain == NULL || st->events == NULL
        || ngx_segura_cast_init(&st->cast) != NGX_OK)
    {
        goto failed;
    }

    if (!st->cast.window && ngx_segura_cast_start(&st->cast) != NGX_OK) {
        goto failed;
    }

    /* the first batch: a failure here is still a JSON answer */

    if (ctx->method != NGX_HTTP_HEAD
        && ngx_segura_recording_batch(ctx, conn, st) != NGX_OK)
    {
        goto failed;
    }

    ctx->status = 200;
    ctx->content_type = raw ? "application/octet-stream"
                            : "application/x-asciicast";
    ctx->data = st;
    ctx->next = ngx_segura_recording_send;

    return;

failed:

    ngx_segura_recording_free(st);

    if (ctx->err == NGX_SEGURA_ERR_OK) {
        ngx_segura_api_fail(ctx, NGX_SEGURA_ERR_INTERNAL, NULL, NULL);
    }
}


/* ?name=<ms>: NGX_OK, NGX_DECLINED when absent, NGX_ERROR (failed: 422) */

static ngx_int_t
ngx_segura_recording_ms(ngx_segura_api_ctx_t *ctx, const char *name,
    uint32_t *ms)
{
    char       buf[16];
    size_t     len;
    ngx_int_t  rc, n;

    rc = ngx_segura_api_arg(ctx, name, buf, sizeof(buf));

    if (rc == NGX_DECLINED) {
        return NGX_DECLINED;
    }

    len = (rc == NGX_OK) ? ngx_strlen(buf) : 0;
    n = (len > 0 && len <= 10) ? ngx_atoi((u_char *) buf, len) : NGX_ERROR;

    if (n == NGX_ERROR || n > NGX_SEGURA_RECORDING_MS_MAX) {
        ngx_segura_api_fail(ctx, NGX_SEGURA_ERR_INVALID_FIELD,
                            ngx_strcmp(name, "from") == 0 ? "from" : "to",
                            "Must be milliseconds since the start, "
                            "0 to 2147483647");
        return NGX_ERROR;
    }

    *ms = (uint32_t) n;

    return NGX_OK;
}


static ngx_int_t
ngx_segura_recording_audit(ngx_segura_api_ctx_t *ctx, PGconn **conn,
    const char *id, const char *format, ngx_int_t from, ngx_int_t to)
{
    json_t     *detail;
    ngx_int_t   rc;

    detail = json_pack("{s:s}", "format", format);
    if (detail == NULL) {
        return NGX_ERROR;
    }

    if (from >= 0) {
        json_object_set_new(detail, "from", json_integer(from));
    }

    if (to >= 0) {
        json_object_set_new(detail, "to", json_integer(to));
    }

    rc = ngx_segura_api_audit(ctx, conn, "session_replay", "ssh_session",
                              id, detail);
    json_decref(detail);

    return rc;
}


/*
 * The index: what the Replay view needs to show the whole session and to
 * choose the windows it loads, from the rows' clear columns only (no
 * chunk is opened).  Times in ms since the start.
 */

static void
ngx_segura_recording_index(ngx_segura_api_ctx_t *ctx, PGconn **conn,
    const char *id)
{
    PGresult    *res;
    const char  *params[1];

    params[0] = id;

    res = ngx_segura_api_query_retry(ctx, conn,
              "select 1 from ssh_session_recordings"
              " where session_id = $1::uuid", 1, params);
    if (ngx_segura_api_one(ctx, res) != NGX_OK) {
        return;
    }

    PQclear(res);

    if (ngx_segura_recording_audit(ctx, conn, id, "index", -1, -1)
        != NGX_OK)
    {
        return;
    }

    (void) ngx_segura_api_query_json(ctx, conn, 200,
        "select json_build_object("
        " 'session', r.session_id,"
        " 'width', r.width, 'height', r.height,"
        " 'started_at', r.started_at, 'ended_at', r.ended_at,"
        " 'live', r.ended_at is null,"
        " 'incomplete', r.incomplete,"
        " 'gaps', coalesce(r.gaps, '[]'::jsonb),"
        " 'input', r.input,"
        " 'duration', coalesce((select max(c.t_last) from ssh_session_chunks c"
        "   where c.session_id = r.session_id), 0),"
        " 'bytes', coalesce((select sum(c.plain_size)"
        "   from ssh_session_chunks c where c.session_id = r.session_id), 0),"
        " 'markers', coalesce((select json_agg(m.e order by c.seq, m.n)"
        "   from ssh_session_chunks c,"
        "   jsonb_array_elements(c.markers) with ordinality m(e, n)"
        "   where c.session_id = r.session_id"
        "   and jsonb_typeof(c.markers) = 'array'), '[]'::json),"
        " 'chunks', coalesce((select json_agg(json_build_array(c.seq,"
        "   c.t_first, c.t_last, c.plain_size) order by c.seq)"
        "   from ssh_session_chunks c where c.session_id = r.session_id),"
        "   '[]'::json))"
        " from ssh_session_recordings r where r.session_id = $1::uuid",
        1, params);
}


/* pool threads: the next batch of chunks into st->cast.out */

static ngx_int_t
ngx_segura_recording_batch(ngx_segura_api_ctx_t *ctx, PGconn **conn,
    ngx_segura_recording_stream_t *st)
{
    char         seq[NGX_INT_T_LEN + 1], limit[NGX_INT_T_LEN + 1];
    u_char      *blob;
    size_t       blob_len;
    uint32_t     n;
    PGresult    *res;
    ngx_int_t    i, rows, rc;
    const char  *params[3];

    (void) ngx_snprintf((u_char *) seq, sizeof(seq), "%uD%Z", st->next);
    (void) ngx_snprintf((u_char *) limit, sizeof(limit), "%d%Z",
                        NGX_SEGURA_RECORDING_BATCH);

    params[0] = st->id;
    params[1] = seq;
    params[2] = limit;

    res = ngx_segura_api_query_retry(ctx, conn,
              "select seq, data from ssh_session_chunks"
              " where session_id = $1::uuid and seq >= $2::int"
              " order by seq limit $3::int", 3, params);
    if (res == NULL) {
        return NGX_ERROR;
    }

    rows = PQntuples(res);

    for (i = 0; i < rows && !st->cast.over; i++) {
        n = (uint32_t) strtoul(PQgetvalue(res, i, 0), NULL, 10);

        blob = PQunescapeBytea((u_char *) PQgetvalue(res, i, 1), &blob_len);
        if (blob == NULL) {
            PQclear(res);
            return NGX_ERROR;
        }

        rc = ngx_segura_recording_chunk(ctx, st, n, blob, blob_len);
        PQfreemem(blob);

        if (rc != NGX_OK) {
            PQclear(res);
            return NGX_ERROR;
        }

        st->next = n + 1;
    }

    PQclear(res);

    if (rows < NGX_SEGURA_RECORDING_BATCH || st->cast.over) {
        st->done = 1;

        if (ngx_segura_cast_finish(&st->cast) != NGX_OK) {
            return NGX_ERROR;
        }
    }

    return NGX_OK;
}


static ngx_int_t
ngx_segura_recording_chunk(ngx_segura_api_ctx_t *ctx,
    ngx_segura_recording_stream_t *st, uint32_t seq, u_char *blob,
    size_t blob_len)
{
    int                       key_id;
    char                      aad[NGX_SEGURA_RECORDER_AAD_LEN];
    size_t                    aad_len, plain_len, n;
    ngx_int_t                 rc;
    unsigned long long        size;
    ngx_segura_vault_err_e    err;
    ngx_segura_master_key_t  *key;

    key_id = ngx_segura_vault_key_id(blob, blob_len);
    key = (key_id < 0) ? NULL
                       : ngx_http_segura_find_key(ctx->smcf,
                                                  (ngx_uint_t) key_id);

    if (key == NULL
        || ngx_segura_vault_opened_size(blob_len) > NGX_SEGURA_CAST_PLAIN_MAX)
    {
        ctx->log_level = NGX_LOG_ERR;
        (void) ngx_snprintf((u_char *) ctx->log, sizeof(ctx->log),
                            "recording %s chunk %uD: no master key %d, or "
                            "too long%Z", st->id, seq, key_id);
        return NGX_ERROR;
    }

    aad_len = ngx_segura_recorder_aad(aad, sizeof(aad), st->id, seq);
    plain_len = NGX_SEGURA_CAST_PLAIN_MAX;

    if (ngx_segura_vault_open(key->key, (unsigned) key->id, aad, aad_len,
                              blob, blob_len, st->plain, &plain_len, &err)
        != 0)
    {
        ctx->log_level = NGX_LOG_ERR;
        (void) ngx_snprintf((u_char *) ctx->log, sizeof(ctx->log),
                            "recording %s chunk %uD cannot be opened: %s%Z",
                            st->id, seq, ngx_segura_vault_strerror(err));
        return NGX_ERROR;
    }

    size = ZSTD_getFrameContentSize(st->plain, plain_len);

    if (size == ZSTD_CONTENTSIZE_ERROR || size == ZSTD_CONTENTSIZE_UNKNOWN
        || size > NGX_SEGURA_CAST_PLAIN_MAX)
    {
        goto bad;
    }

    n = ZSTD_decompress(st->events, NGX_SEGURA_CAST_PLAIN_MAX, st->plain,
                        plain_len);

    OPENSSL_cleanse(st->plain, plain_len);

    if (ZSTD_isError(n) || n != size) {
        goto bad;
    }

    rc = ngx_segura_cast_events(&st->cast, st->events, n);

    OPENSSL_cleanse(st->events, n);

    if (rc == NGX_OK) {
        return NGX_OK;
    }

bad:

    ctx->log_level = NGX_LOG_ERR;
    (void) ngx_snprintf((u_char *) ctx->log, sizeof(ctx->log),
                        "recording %s chunk %uD is malformed, or no memory%Z",
                        st->id, seq);
    return NGX_ERROR;
}


/* a pool pass after the first */

static void
ngx_segura_recording_step(ngx_segura_api_ctx_t *ctx, PGconn **conn)
{
    ngx_segura_recording_stream_t *st = ctx->data;

    ctx->next = ngx_segura_recording_send;
    st->cast.out.len = 0;

    if (ngx_segura_recording_batch(ctx, conn, st) != NGX_OK) {
        st->failed = 1;
    }
}


/* event loop: a pool pass is done, its batch is in st->cast.out */

static void
ngx_segura_recording_send(ngx_http_request_t *r, ngx_segura_api_ctx_t *ctx)
{
    ngx_int_t                       rc;
    ngx_buf_t                      *b;
    ngx_connection_t               *c;
    ngx_pool_cleanup_t             *cln;
    ngx_segura_recording_stream_t  *st;

    c = r->connection;
    st = ctx->data;

    /* the pass is over: nothing runs in the pool for the request now */

    r->main->blocked--;
    r->aio = 0;

    if (!st->headers) {
        /* from now on, st goes with the request, on every path */

        cln = ngx_pool_cleanup_add(r->pool, 0);
        if (cln == NULL) {
            ngx_segura_recording_free(st);
            ctx->data = NULL;
            ngx_segura_recording_end(r, NGX_ERROR);
            return;
        }

        cln->handler = ngx_segura_recording_free;
        cln->data = st;

        /* the write handler finds the stream here; the body is read */
        ngx_http_set_ctx(r, st, ngx_http_segura_module);
    }

    if (c->error || st->failed) {
        /* after the status line, a failure can only cut the response */
        ngx_segura_recording_end(r, NGX_ERROR);
        return;
    }

    if (!st->headers) {
        st->headers = 1;

        ngx_segura_metrics_api_answered(ctx->path, ctx->err, 1);

        rc = ngx_segura_recording_headers(r, st);

        if (rc == NGX_ERROR || rc > NGX_OK || r->header_only) {
            ngx_segura_recording_end(r, rc);
            return;
        }
    }

    b = &st->buf;
    ngx_memzero(b, sizeof(ngx_buf_t));

    b->start = st->cast.out.data;
    b->pos = b->start;
    b->last = b->start + st->cast.out.len;
    b->end = b->last;
    b->memory = (st->cast.out.len > 0) ? 1 : 0;
    b->flush = 1;

    if (st->done) {
        b->last_buf = (r == r->main) ? 1 : 0;
        b->last_in_chain = 1;
    }

    if (!b->memory && !st->done) {
        /* nothing in this batch: the next */
        ngx_segura_recording_pump(r, st);
        return;
    }

    st->out.buf = b;
    st->out.next = NULL;

    /* t/recording.t counts these: a slow client holds one batch */
    ngx_log_debug1(NGX_LOG_DEBUG_HTTP, c->log, 0,
                   "segura api: recording batch of %uz bytes",
                   st->cast.out.len);

    rc = ngx_http_output_filter(r, &st->out);

    if (rc == NGX_ERROR || st->done) {
        /* nginx sends what is still buffered, then finishes */
        ngx_segura_recording_end(r, rc);
        return;
    }

    ngx_segura_recording_pump(r, st);
}


static ngx_int_t
ngx_segura_recording_headers(ngx_http_request_t *r,
    ngx_segura_recording_stream_t *st)
{
    const char  *type;

    if (ngx_http_discard_request_body(r) != NGX_OK) {
        r->keepalive = 0;
    }

    type = st->ctx->content_type;

    r->headers_out.status = 200;
    r->headers_out.content_length_n = -1;      /* chunked, or close */
    r->headers_out.content_type.data = (u_char *) type;
    r->headers_out.content_type.len = ngx_strlen(type);
    r->headers_out.content_type_len = r->headers_out.content_type.len;
    r->headers_out.content_type_lowcase = NULL;

    if (ngx_http_segura_add_header(r, "Cache-Control", "no-store") != NGX_OK
        || ngx_http_segura_add_header(r, "X-Content-Type-Options", "nosniff")
           != NGX_OK)
    {
        return NGX_ERROR;
    }

    return ngx_http_send_header(r);
}


/* the client took some: once it has taken the whole batch, the next */

static void
ngx_segura_recording_write(ngx_http_request_t *r)
{
    ngx_int_t                       rc;
    ngx_event_t                    *wev;
    ngx_segura_recording_stream_t  *st;

    wev = r->connection->write;
    st = ngx_http_get_module_ctx(r, ngx_http_segura_module);

    if (wev->timedout) {
        ngx_log_error(NGX_LOG_INFO, r->connection->log, NGX_ETIMEDOUT,
                      "segura api: the client took too long to read a "
                      "recording");
        r->connection->timedout = 1;
        ngx_segura_recording_end(r, NGX_ERROR);
        return;
    }

    rc = ngx_http_output_filter(r, NULL);

    if (rc == NGX_ERROR) {
        ngx_segura_recording_end(r, NGX_ERROR);
        return;
    }

    ngx_segura_recording_pump(r, st);
}


static void
ngx_segura_recording_pump(ngx_http_request_t *r,
    ngx_segura_recording_stream_t *st)
{
    ngx_event_t               *wev;
    ngx_connection_t          *c;
    ngx_segura_api_ctx_t      *ctx;
    ngx_http_core_loc_conf_t  *clcf;

    c = r->connection;
    wev = c->write;

    if (r->buffered || c->buffered || r->postponed) {
        clcf = ngx_http_get_module_loc_conf(r, ngx_http_core_module);

        r->write_event_handler = ngx_segura_recording_write;

        if (!wev->delayed) {
            ngx_add_timer(wev, clcf->send_timeout);
        }

        if (ngx_handle_write_event(wev, clcf->send_lowat) != NGX_OK) {
            ngx_segura_recording_end(r, NGX_ERROR);
        }

        return;
    }

    if (wev->timer_set) {
        ngx_del_timer(wev);
    }

    r->write_event_handler = ngx_http_request_empty_handler;

    /* all of the batch is gone: the next pass may overwrite it */

    ctx = st->ctx;
    ctx->step = ngx_segura_recording_step;

    r->main->blocked++;
    r->aio = 1;

    ngx_segura_metrics_task(NGX_SEGURA_METRIC_TASK_API, 1);

    if (ngx_thread_task_post(ctx->smcf->thread_pool, ctx->task) != NGX_OK) {
        ngx_segura_metrics_task(NGX_SEGURA_METRIC_TASK_API, -1);
        r->main->blocked--;
        r->aio = 0;
        ctx->step = NULL;
        ngx_segura_recording_end(r, NGX_ERROR);
    }
}


static void
ngx_segura_recording_end(ngx_http_request_t *r, ngx_int_t rc)
{
    ngx_connection_t  *c;

    c = r->connection;

    if (rc == NGX_ERROR && !c->error) {
        /* a response cut short must not look whole: no keepalive */
        r->keepalive = 0;
    }

    ngx_http_finalize_request(r, rc);
    ngx_http_run_posted_requests(c);
}


/* with the request (or by the first pass on failure): any thread */

static void
ngx_segura_recording_free(void *data)
{
    ngx_segura_recording_stream_t *st = data;

    if (st == NULL) {
        return;
    }

    ngx_segura_cast_free(&st->cast);

    if (st->plain != NULL) {
        OPENSSL_cleanse(st->plain, NGX_SEGURA_CAST_PLAIN_MAX);
        free(st->plain);
    }

    if (st->events != NULL) {
        OPENSSL_cleanse(st->events, NGX_SEGURA_CAST_PLAIN_MAX);
        free(st->events);
    }

    free(st);
}
