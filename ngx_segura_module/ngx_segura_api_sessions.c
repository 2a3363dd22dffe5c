
/*
 * Copyright (C) ngx_segura_module authors
 */


/*
 * GET /api/sessions: the SSH session audit, newest first, by pages.
 * Administrators see every session, others their own.  Pool threads only.
 */


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>
#include "ngx_segura.h"
#include "ngx_segura_api.h"


#define NGX_SEGURA_API_SESSIONS_DEFAULT  50
#define NGX_SEGURA_API_SESSIONS_MAX      200


void
ngx_segura_api_sessions(ngx_segura_api_ctx_t *ctx, PGconn **conn,
    int64_t id, const char *sub)
{
    ngx_int_t    n;
    const char  *params[4];
    char         me[NGX_INT64_LEN + 1], limit[NGX_INT64_LEN + 1];
    char         buf[NGX_INT64_LEN + 1], before[64];

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
        if (ngx_strlen(before) != 36
            || strspn(before, "0123456789abcdefABCDEF-") != 36)
        {
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
               "   where b.id = $4::uuid))"
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
               " 'exit_status', n.exit_status)"
               " order by n.i) filter (where n.i <= $3::int), '[]'),"
               " 'next', case when count(*) > $3::int then"
               " (select m.id from n m where m.i = $3::int) end)"
               " from n",
               4, params);
}
