
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
    char  err[NGX_SEGURA_ERRLEN];

    switch (ngx_segura_may_audit(ctx->smcf->db, conn, &ctx->me,
                                 ctx->recording_self, id, err, sizeof(err)))
    {
    case NGX_OK:
        return NGX_OK;

    case NGX_DECLINED:
        ngx_segura_api_fail(ctx, NGX_SEGURA_ERR_NOT_FOUND, NULL, NULL);
        return NGX_DECLINED;

    default:
        /* 503 when the database is away, else 500; logged */
        ngx_segura_api_fail_db(ctx, *conn, err);
        return NGX_ERROR;
    }
}
