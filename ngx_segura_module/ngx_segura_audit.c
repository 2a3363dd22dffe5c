
/*
 * Copyright (C) ngx_segura_module authors
 */


/*
 * Who may see a session's audit row and recording: the one predicate
 * (ngx_segura_audit.h says the rule; sql/020 holds it as
 * segura_may_audit()).  Every route that shows a session or its
 * recording asks here, or uses NGX_SEGURA_MAY_AUDIT() in its SQL.
 * Pool threads only.
 */


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>
#include "ngx_segura.h"
#include "ngx_segura_api.h"
#include "ngx_segura_audit.h"
#include "ngx_segura_db.h"


ngx_int_t
ngx_segura_may_audit(ngx_segura_db_pool_t *db, PGconn **conn,
    const ngx_segura_identity_t *me, ngx_uint_t self, const char *id,
    char *err, size_t errlen)
{
    char         viewer[NGX_INT64_LEN + 1];
    PGresult    *res;
    ngx_int_t    rc;
    const char  *params[4];

    err[0] = '\0';

    ngx_segura_api_id(me->id, viewer);

    params[0] = id;
    params[1] = viewer;
    params[2] = me->admin ? "t" : "f";
    params[3] = self ? "t" : "f";

    res = ngx_segura_db_query_retry(db, conn,
              "select 1 from ssh_sessions s where s.id = $1::uuid and"
              NGX_SEGURA_MAY_AUDIT("$2", "$3", "$4", "s.user_id"),
              4, params, err, errlen);

    if (res == NULL || PQresultStatus(res) != PGRES_TUPLES_OK) {
        if (err[0] == '\0') {
            ngx_segura_db_error(err, errlen, "segura_may_audit()",
                                res ? PQresultErrorMessage(res) : "");
        }

        PQclear(res);
        return NGX_ERROR;
    }

    rc = (PQntuples(res) == 1) ? NGX_OK : NGX_DECLINED;

    PQclear(res);

    return rc;
}


ngx_int_t
ngx_segura_api_may_audit(ngx_segura_api_ctx_t *ctx, PGconn **conn,
    const char *id)
{
    char         viewer[NGX_INT64_LEN + 1];
    PGresult    *res;
    const char  *params[4];

    /* through the API's query path: its errors and 503s are the API's */

    ngx_segura_api_id(ctx->me.id, viewer);

    params[0] = id;
    params[1] = viewer;
    params[2] = ctx->me.admin ? "t" : "f";
    params[3] = ctx->recording_self ? "t" : "f";

    res = ngx_segura_api_query_retry(ctx, conn,
              "select 1 from ssh_sessions s where s.id = $1::uuid and"
              NGX_SEGURA_MAY_AUDIT("$2", "$3", "$4", "s.user_id"),
              4, params);

    if (ngx_segura_api_one(ctx, res) != NGX_OK) {
        return NGX_ERROR;
    }

    PQclear(res);

    return NGX_OK;
}
