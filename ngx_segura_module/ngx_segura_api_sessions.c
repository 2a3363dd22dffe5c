
/*
 * Copyright (C) ngx_segura_module authors
 */


/*
 * GET /api/sessions: the SSH session audit, newest first, by pages.
 * Administrators see every session, others their own.
 *
 * POST /api/sessions/<id>/end: an administrator ends a live session.  The
 * request is a row and a notification (sql/013); the node that owns the
 * session closes it (ngx_segura_watch.c).
 *
 * GET /api/sessions/<id>/recording: ngx_segura_api_recording.c.
 * GET /api/sessions?q=<words>: ngx_segura_api_search.c.
 * Pool threads only.
 */


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>
#include "ngx_segura.h"
#include "ngx_segura_api.h"


#define NGX_SEGURA_API_SESSIONS_DEFAULT  50
#define NGX_SEGURA_API_SESSIONS_MAX      200


static ngx_uint_t ngx_segura_api_is_uuid(const char *p, size_t len);


#define ngx_segura_api_is_hex(ch)                                            \
    (((ch) >= '0' && (ch) <= '9') || ((ch) >= 'a' && (ch) <= 'f')             \
     || ((ch) >= 'A' && (ch) <= 'F'))
static void ngx_segura_api_session_end(ngx_segura_api_ctx_t *ctx,
    PGconn **conn, const char *id);


void
ngx_segura_api_sessions(ngx_segura_api_ctx_t *ctx, PGconn **conn,
    int64_t id, const char *sub)
{
    ngx_int_t    n;
    const char  *params[4];
    char         me[NGX_INT64_LEN + 1], limit[NGX_INT64_LEN + 1];
    char         buf[NGX_INT64_LEN + 1], before[64];

    if (*sub != '\0') {
        ngx_segura_api_session_end(ctx, conn, sub);
        return;
    }

    if (ngx_segura_api_arg(ctx, "q", buf, 1) != NGX_DECLINED) {
        ngx_segura_api_search(ctx, conn);
        return;
    }

    if (!(ctx->method & (NGX_HTTP_GET|NGX_HTTP_HEAD))) {
        ngx_segura_api_fail(ctx, NGX_SEGURA_ERR_METHOD, NULL, NULL);
        return;
    }

    n = NGX_SEGURA_API_SESSIONS_DEFAULT;

    if (ngx_segura_api_arg(ctx, "limit", buf, sizeof(buf)) != NGX_DECLINED) {
        n = ngx_atoi((u_char *) buf, ngx_strlen(buf));

        if (n < 1 || n > NGX_SEGURA_API_SESSIONS_MAX) {
            ngx_segura_api_fail(ctx, NGX_SEGURA_ERR_INVALID_FIELD, "limit",
                                "Must be 1 to 200");
            return;
        }
    }

    params[3] = NULL;

    switch (ngx_segura_api_arg(ctx, "before", before, sizeof(before))) {

    case NGX_OK:
        /* a session id as given in "next": a uuid */
        if (!ngx_segura_api_is_uuid(before, ngx_strlen(before))) {
            ngx_segura_api_fail(ctx, NGX_SEGURA_ERR_INVALID_FIELD, "before",
                                "Must be a session id");
            return;
        }

        params[3] = before;
        break;

    case NGX_DECLINED:
        break;

    default:
        ngx_segura_api_fail(ctx, NGX_SEGURA_ERR_INVALID_FIELD, "before",
                            "Must be a session id");
        return;
    }

    ngx_segura_api_id(ctx->me.id, me);
    ngx_segura_api_id(n, limit);

    params[0] = me;
    params[1] = ctx->me.admin ? "t" : "f";
    params[2] = limit;

    /* keyset pagination on (started_at, id), one row more than a page */

    (void) ngx_segura_api_query_json(ctx, conn, 200,
               "with p as (select s.* from ssh_sessions s"
               " where ($2::bool or s.user_id = $1::bigint)"
               " and ($4::uuid is null or (s.started_at, s.id) <"
               "  (select b.started_at, b.id from ssh_sessions b"
               "   where b.id = $4::uuid"
               "   and ($2::bool or b.user_id = $1::bigint)))"
               " order by s.started_at desc, s.id desc"
               " limit $3::int + 1),"
               " n as (select row_number() over"
               "  (order by started_at desc, id desc) as i, p.* from p)"
               " select json_build_object('items', coalesce(json_agg("
               " json_build_object('id', n.id, 'user_id', n.user_id,"
               " 'username', n.username, 'key_id', n.key_id,"
               " 'key_name', n.key_name, 'device_id', n.device_id,"
               " 'device_name', n.device_name,"
               " 'device_address', n.device_address,"
               " 'device_port', n.device_port, 'client_addr', n.client_addr,"
               " 'node', n.node, 'started_at', n.started_at,"
               " 'ended_at', n.ended_at, 'bytes_in', n.bytes_in,"
               " 'bytes_out', n.bytes_out, 'end_reason', n.end_reason,"
               " 'exit_status', n.exit_status,"
               " 'end_requested_at', n.end_requested_at)"
               " order by n.i) filter (where n.i <= $3::int), '[]'),"
               " 'next', case when count(*) > $3::int then"
               " (select m.id from n m where m.i = $3::int) end)"
               " from n",
               4, params);
}


static void
ngx_segura_api_session_end(ngx_segura_api_ctx_t *ctx, PGconn **conn,
    const char *path)
{
    char        id[37], me[NGX_INT64_LEN + 1];
    PGresult   *res;
    const char *params[2];

    /* "<uuid>/end" or "<uuid>/recording" and nothing else */

    if (ngx_strlen(path) < 36 || !ngx_segura_api_is_uuid(path, 36)) {
        ngx_segura_api_fail(ctx, NGX_SEGURA_ERR_NOT_FOUND, NULL, NULL);
        return;
    }

    ngx_memcpy(id, path, 36);
    id[36] = '\0';

    if (ngx_strcmp(path + 36, "/recording") == 0) {
        ngx_segura_api_recording(ctx, conn, id);
        return;
    }

    if (ngx_strcmp(path + 36, "/end") != 0) {
        ngx_segura_api_fail(ctx, NGX_SEGURA_ERR_NOT_FOUND, NULL, NULL);
        return;
    }

    if (ctx->method != NGX_HTTP_POST) {
        ngx_segura_api_fail(ctx, NGX_SEGURA_ERR_METHOD, NULL, NULL);
        return;
    }

    if (!ctx->me.admin) {
        ngx_segura_api_fail(ctx, NGX_SEGURA_ERR_FORBIDDEN, NULL, NULL);
        return;
    }

    ngx_segura_api_id(ctx->me.id, me);

    params[0] = id;
    params[1] = me;

    if (ngx_segura_api_begin(ctx, conn) != NGX_OK) {
        return;
    }

    res = ngx_segura_api_query(ctx, conn,
              "select ended_at is not null from ssh_sessions"
              " where id = $1::uuid for update", 1, params);
    if (ngx_segura_api_one(ctx, res) != NGX_OK) {
        goto end;
    }

    if (PQgetvalue(res, 0, 0)[0] == 't') {
        PQclear(res);
        ngx_segura_api_fail(ctx, NGX_SEGURA_ERR_ENDED, NULL, NULL);
        goto end;
    }

    PQclear(res);

    /*
     * asking twice is not an error: the first request stays recorded and
     * the owner is told again (it may have missed the first notification)
     */

    res = ngx_segura_api_query(ctx, conn,
              "update ssh_sessions"
              " set end_requested_at = coalesce(end_requested_at, now()),"
              " end_requested_by = coalesce(end_requested_by, $2::bigint)"
              " where id = $1::uuid returning json_build_object('id', id,"
              " 'ending', true, 'end_requested_at', end_requested_at),"
              " pg_notify('segura_session_end', id::text)", 2, params);
    if (ngx_segura_api_one(ctx, res) != NGX_OK
        || ngx_segura_api_answer(ctx, res, 202) != NGX_OK)
    {
        goto end;
    }

    (void) ngx_segura_api_audit(ctx, conn, "session_terminate", "ssh_session",
                                id, NULL);

end:

    ngx_segura_api_end(ctx, conn);
}


static ngx_uint_t
ngx_segura_api_is_uuid(const char *p, size_t len)
{
    size_t  i;

    /* 8-4-4-4-12 hexadecimal digits */

    if (len != 36) {
        return 0;
    }

    for (i = 0; i < 36; i++) {
        if (i == 8 || i == 13 || i == 18 || i == 23) {
            if (p[i] != '-') {
                return 0;
            }

        } else if (!ngx_segura_api_is_hex(p[i])) {
            return 0;
        }
    }

    return 1;
}
