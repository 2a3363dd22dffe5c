
/*
 * Copyright (C) ngx_segura_module authors
 */


/*
 * GET /api/sessions: the SSH session audit, newest first, by pages: the
 * sessions the caller may audit (ngx_segura_audit.h: administrators and
 * audit_sessions members every one, others their own with
 * segura_recording_self on, else none).
 *
 * POST /api/sessions/<id>/end: an administrator ends a live session,
 * with an optional message for its user.  The request is a row and a
 * notification (sql/013); the node that owns the session closes it
 * (ngx_segura_watch.c).  The message goes first, in a
 * segura_session_moderate notification (sql/024).
 *
 * POST /api/sessions/<id>/lock {"locked": true|false}: the owner's
 * keystrokes are dropped, or no longer; a segura_session_moderate
 * notification tells the owning worker.
 *
 * Who may do either: ngx_segura_auth_may_audit().
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
#include "ngx_segura_auth.h"
#include "ngx_segura_audit.h"


#define NGX_SEGURA_API_SESSIONS_DEFAULT  50
#define NGX_SEGURA_API_SESSIONS_MAX      200
#define NGX_SEGURA_API_END_MESSAGE_MAX   500    /* bytes, sql/024 */


static ngx_uint_t ngx_segura_api_is_uuid(const char *p, size_t len);
static ngx_uint_t ngx_segura_api_has_control(const char *p, size_t len);


#define ngx_segura_api_is_hex(ch)                                            \
    (((ch) >= '0' && (ch) <= '9') || ((ch) >= 'a' && (ch) <= 'f')             \
     || ((ch) >= 'A' && (ch) <= 'F'))
static void ngx_segura_api_session_end(ngx_segura_api_ctx_t *ctx,
    PGconn **conn, const char *id);
static void ngx_segura_api_session_lock(ngx_segura_api_ctx_t *ctx,
    PGconn **conn, const char *id);
static ngx_int_t ngx_segura_api_session_live(ngx_segura_api_ctx_t *ctx,
    PGconn **conn, const char *id);


void
ngx_segura_api_sessions(ngx_segura_api_ctx_t *ctx, PGconn **conn,
    int64_t id, const char *sub)
{
    ngx_int_t    n;
    const char  *params[5];
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
    params[4] = ctx->recording_self ? "t" : "f";

    /* keyset pagination on (started_at, id), one row more than a page */

    (void) ngx_segura_api_query_json(ctx, conn, 200,
               "with p as (select s.* from ssh_sessions s"
               " where" NGX_SEGURA_MAY_AUDIT("$1", "$2", "$5", "s.user_id")
               " and ($4::uuid is null or (s.started_at, s.id) <"
               "  (select b.started_at, b.id from ssh_sessions b"
               "   where b.id = $4::uuid"
               "   and" NGX_SEGURA_MAY_AUDIT("$1", "$2", "$5", "b.user_id")
               "  ))"
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
               " 'end_requested_at', n.end_requested_at,"
               " 'locked', n.locked,"
               " 'recorded', exists (select 1 from ssh_session_recordings r"
               "   where r.session_id = n.id))"
               " order by n.i) filter (where n.i <= $3::int), '[]'),"
               " 'next', case when count(*) > $3::int then"
               " (select m.id from n m where m.i = $3::int) end)"
               " from n",
               5, params);
}


static void
ngx_segura_api_session_end(ngx_segura_api_ctx_t *ctx, PGconn **conn,
    const char *path)
{
    char        id[37], me[NGX_INT64_LEN + 1];
    json_t     *body, *v, *detail;
    PGresult   *res;
    const char *params[3], *np[3], *message;

    static const char  *allowed[] = { "message", NULL };

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

    if (ngx_strcmp(path + 36, "/lock") == 0) {
        ngx_segura_api_session_lock(ctx, conn, id);
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

    if (!ngx_segura_auth_may_audit(&ctx->me)) {
        ngx_segura_api_fail(ctx, NGX_SEGURA_ERR_FORBIDDEN, NULL, NULL);
        return;
    }

    /* the body is optional: {} or {"message": "..."} */

    body = NULL;
    message = NULL;
    detail = NULL;

    if (ctx->body != NULL && ctx->body_len != 0) {
        body = ngx_segura_api_parse(ctx, allowed);
        if (body == NULL) {
            return;
        }

        v = json_object_get(body, "message");

        if (v != NULL) {
            if (!json_is_string(v)
                || json_string_length(v) > NGX_SEGURA_API_END_MESSAGE_MAX
                || ngx_segura_api_has_control(json_string_value(v),
                                              json_string_length(v)))
            {
                json_decref(body);
                ngx_segura_api_fail(ctx, NGX_SEGURA_ERR_INVALID_FIELD,
                                    "message",
                                    "A text of at most 500 bytes, without "
                                    "control characters");
                return;
            }

            message = json_string_value(v);
        }
    }

    ngx_segura_api_id(ctx->me.id, me);

    params[0] = id;
    params[1] = me;
    params[2] = message;

    np[0] = id;
    np[1] = ctx->me.username;
    np[2] = message;

    if (ngx_segura_api_begin(ctx, conn) != NGX_OK) {
        json_decref(body);
        return;
    }

    if (ngx_segura_api_session_live(ctx, conn, id) != NGX_OK) {
        goto end;
    }

    /*
     * who ends it and what they say reach the owning worker before the
     * end itself: notifications of a transaction arrive in order
     */

    res = ngx_segura_api_query(ctx, conn,
              "select pg_notify('segura_session_moderate',"
              " json_build_object('id', $1::text, 'action', 'message',"
              " 'by', $2::text, 'message', coalesce($3::text, ''))::text)",
              3, np);
    if (res == NULL) {
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
              " end_requested_by = coalesce(end_requested_by, $2::bigint),"
              " end_message = coalesce(end_message, $3::text)"
              " where id = $1::uuid returning json_build_object('id', id,"
              " 'ending', true, 'end_requested_at', end_requested_at),"
              " pg_notify('segura_session_end', id::text)", 3, params);
    if (ngx_segura_api_one(ctx, res) != NGX_OK
        || ngx_segura_api_answer(ctx, res, 202) != NGX_OK)
    {
        goto end;
    }

    if (message != NULL) {
        detail = json_pack("{s:s}", "message", message);
    }

    (void) ngx_segura_api_audit(ctx, conn, "session_terminate", "ssh_session",
                                id, detail);

end:

    json_decref(detail);
    json_decref(body);
    ngx_segura_api_end(ctx, conn);
}


/* in a transaction: the session is there and live, its row locked */

static ngx_int_t
ngx_segura_api_session_live(ngx_segura_api_ctx_t *ctx, PGconn **conn,
    const char *id)
{
    PGresult  *res;

    res = ngx_segura_api_query(ctx, conn,
              "select ended_at is not null from ssh_sessions"
              " where id = $1::uuid for update", 1, &id);
    if (ngx_segura_api_one(ctx, res) != NGX_OK) {
        return NGX_ERROR;
    }

    if (PQgetvalue(res, 0, 0)[0] == 't') {
        PQclear(res);
        ngx_segura_api_fail(ctx, NGX_SEGURA_ERR_ENDED, NULL, NULL);
        return NGX_ERROR;
    }

    PQclear(res);

    return NGX_OK;
}


static void
ngx_segura_api_session_lock(ngx_segura_api_ctx_t *ctx, PGconn **conn,
    const char *id)
{
    json_t      *body, *v;
    PGresult    *res;
    const char  *params[3];

    static const char  *allowed[] = { "locked", NULL };

    if (ctx->method != NGX_HTTP_POST) {
        ngx_segura_api_fail(ctx, NGX_SEGURA_ERR_METHOD, NULL, NULL);
        return;
    }

    if (!ngx_segura_auth_may_audit(&ctx->me)) {
        ngx_segura_api_fail(ctx, NGX_SEGURA_ERR_FORBIDDEN, NULL, NULL);
        return;
    }

    body = ngx_segura_api_parse(ctx, allowed);
    if (body == NULL) {
        return;
    }

    v = json_object_get(body, "locked");

    if (!json_is_boolean(v)) {
        json_decref(body);
        ngx_segura_api_fail(ctx, NGX_SEGURA_ERR_INVALID_FIELD, "locked",
                            "Required: true or false");
        return;
    }

    params[0] = id;
    params[1] = json_is_true(v) ? "t" : "f";
    params[2] = ctx->me.username;

    json_decref(body);

    if (ngx_segura_api_begin(ctx, conn) != NGX_OK) {
        return;
    }

    if (ngx_segura_api_session_live(ctx, conn, id) != NGX_OK) {
        goto end;
    }

    /*
     * asking for the state it is in is not an error (the owner hears only
     * changes); a notification the owning worker missed is caught up by
     * its re-check when its listener reconnects (ngx_segura_watch.c)
     */

    res = ngx_segura_api_query(ctx, conn,
              "update ssh_sessions set locked = $2::bool"
              " where id = $1::uuid returning json_build_object('id', id,"
              " 'locked', locked),"
              " pg_notify('segura_session_moderate',"
              " json_build_object('id', id, 'action',"
              " case when $2::bool then 'lock' else 'unlock' end,"
              " 'by', $3::text)::text)", 3, params);
    if (ngx_segura_api_one(ctx, res) != NGX_OK
        || ngx_segura_api_answer(ctx, res, 200) != NGX_OK)
    {
        goto end;
    }

    (void) ngx_segura_api_audit(ctx, conn,
                                params[1][0] == 't' ? "session_lock"
                                                    : "session_unlock",
                                "ssh_session", id, NULL);

end:

    ngx_segura_api_end(ctx, conn);
}


/* C0 controls and DEL: a message is one line of text for a person */

static ngx_uint_t
ngx_segura_api_has_control(const char *p, size_t len)
{
    size_t  i;

    for (i = 0; i < len; i++) {
        if ((u_char) p[i] < 0x20 || (u_char) p[i] == 0x7f) {
            return 1;
        }
    }

    return 0;
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
