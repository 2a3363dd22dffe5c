
/*
 * Copyright (C) ngx_segura_module authors
 */


/*
 * POST /api/keys/{id}/rotate and GET /api/keys/{id}/rotations.
 * Administrators only.  The rotation itself is ngx_segura_rotate.c's: this
 * file checks the request (pool thread), starts the rotation and waits for
 * its end (event loop), then answers with the rotation's row (pool
 * thread).  A client that goes away detaches: the rotation still runs to
 * its end, and its row says how it ended.
 */


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>
#include "ngx_segura.h"
#include "ngx_segura_api.h"
#include "ngx_segura_rotate.h"
#include "ngx_segura_sshkey.h"


/* a rotation row as JSON, with its devices' names; r is key_rotations */
#define NGX_SEGURA_API_ROTATION_JSON                                         \
    "json_build_object('id', r.id, 'key', r.key_id, 'trigger', r.trigger,"  \
    " 'retry', r.retry, 'status', r.status,"                                 \
    " 'from_version', r.from_version, 'to_version', r.to_version,"           \
    " 'type', r.key_type, 'total', r.total, 'rotated', r.rotated,"           \
    " 'detail', r.detail, 'started_by', r.started_by,"                       \
    " 'started_by_name', (select u.username from users u"                    \
    "   where u.id = r.started_by),"                                         \
    " 'started_at', r.started_at, 'ended_at', r.ended_at,"                   \
    " 'items', coalesce((select json_agg(json_build_object("                 \
    "   'device', (x.e->>'device')::bigint, 'name', d.name,"                 \
    "   'address', d.address, 'port', d.port, 'result', x.e->>'result',"     \
    "   'detail', x.e->>'detail',"                                           \
    "   'from_version', (x.e->>'from_version')::int,"                        \
    "   'version', (x.e->>'version')::int) order by x.n)"                    \
    "   from jsonb_array_elements(r.items) with ordinality x(e, n)"          \
    "   left join devices d on d.id = (x.e->>'device')::bigint), '[]'))"


typedef struct {
    int64_t                      key_id;
    int64_t                      user_id;
    int64_t                      rotation_id;
    ngx_uint_t                   retry;
    char                         kind[16];
    ngx_segura_rotate_t         *rt;
    ngx_http_request_t          *r;
    ngx_segura_api_ctx_t        *ctx;
} ngx_segura_api_rotate_t;


static void ngx_segura_api_rotate_run(ngx_http_request_t *r,
    ngx_segura_api_ctx_t *ctx);
static void ngx_segura_api_rotate_cleanup(void *data);
static void ngx_segura_api_rotate_done(ngx_segura_rotate_t *rt, void *data);
static void ngx_segura_api_rotate_answer(ngx_segura_api_ctx_t *ctx,
    PGconn **conn);


static const char *const  ngx_segura_api_rotate_fields[] = {
    "type", "retry", NULL
};


/*
 * The first pass (pool thread).  params: $1 the caller, $2 't' for an
 * administrator, $3 the key.
 */

void
ngx_segura_api_key_rotate(ngx_segura_api_ctx_t *ctx, PGconn **conn,
    int64_t id, const char *const *params)
{
    json_t                   *body;
    PGresult                 *res;
    ngx_int_t                 rc;
    const char               *type, *retry;
    enum ssh_keytypes_e       kt;
    int                       bits;
    ngx_segura_api_rotate_t  *rs;

    if (ctx->method != NGX_HTTP_POST) {
        ngx_segura_api_fail(ctx, NGX_SEGURA_ERR_METHOD, NULL, NULL);
        return;
    }

    if (ngx_segura_api_need_admin(ctx) != NGX_OK) {
        return;
    }

    type = NULL;
    retry = "f";

    /* the body is optional: none is {} */

    if (ctx->body != NULL && ctx->body_len > 0) {
        body = ngx_segura_api_parse(ctx, ngx_segura_api_rotate_fields);
        if (body == NULL) {
            return;
        }

        rc = ngx_segura_api_get_string(ctx, body, "type", 1, 15, &type);

        if (rc != NGX_ERROR) {
            rc = ngx_segura_api_get_bool(ctx, body, "retry", &retry);
        }

        if (rc != NGX_ERROR && type != NULL
            && ngx_segura_sshkey_kind(type, &kt, &bits) != 0)
        {
            ngx_segura_api_fail(ctx, NGX_SEGURA_ERR_INVALID_FIELD, "type",
                                NGX_SEGURA_SSHKEY_KINDS);
            rc = NGX_ERROR;
        }

        if (rc != NGX_ERROR && type != NULL && retry[0] == 't') {
            ngx_segura_api_fail(ctx, NGX_SEGURA_ERR_INVALID_FIELD, "type",
                                "A retry moves the devices behind to the "
                                "current key: it takes no type");
            rc = NGX_ERROR;
        }

        rs = NULL;

        if (rc != NGX_ERROR) {
            rs = calloc(1, sizeof(ngx_segura_api_rotate_t));

            if (rs != NULL && type != NULL) {
                (void) ngx_cpystrn((u_char *) rs->kind, (u_char *) type,
                                   sizeof(rs->kind));
            }
        }

        json_decref(body);

        if (rc == NGX_ERROR) {
            return;
        }

    } else {
        rs = calloc(1, sizeof(ngx_segura_api_rotate_t));
    }

    if (rs == NULL) {
        ngx_segura_api_fail(ctx, NGX_SEGURA_ERR_INTERNAL, NULL, NULL);
        return;
    }

    res = ngx_segura_api_query_retry(ctx, conn,
              "select 1 from ssh_keys where id = $1::bigint", 1, &params[2]);

    if (ngx_segura_api_one(ctx, res) != NGX_OK) {
        free(rs);
        return;
    }

    PQclear(res);

    rs->key_id = id;
    rs->user_id = ctx->me.id;
    rs->retry = (retry[0] == 't');

    /* the event loop's turn; the connection goes back now */

    ctx->data = rs;
    ctx->next = ngx_segura_api_rotate_run;
}


static void
ngx_segura_api_rotate_run(ngx_http_request_t *r, ngx_segura_api_ctx_t *ctx)
{
    ngx_pool_cleanup_t           *cln;
    ngx_segura_rotate_conf_t      conf;
    ngx_segura_api_rotate_t      *rs;
    ngx_http_core_loc_conf_t     *clcf;
    ngx_http_segura_loc_conf_t   *slcf;
    ngx_http_segura_main_conf_t  *smcf;

    rs = ctx->data;
    rs->r = r;
    rs->ctx = ctx;

    cln = ngx_pool_cleanup_add(r->pool, 0);
    if (cln == NULL) {
        ctx->data = NULL;
        free(rs);
        ngx_segura_api_fail(ctx, NGX_SEGURA_ERR_INTERNAL, NULL, NULL);
        ngx_segura_api_finish(r, ctx);
        return;
    }

    cln->handler = ngx_segura_api_rotate_cleanup;
    cln->data = rs;

    clcf = ngx_http_get_module_loc_conf(r, ngx_http_core_module);
    slcf = ngx_http_get_module_loc_conf(r, ngx_http_segura_module);
    smcf = ngx_http_get_module_main_conf(r, ngx_http_segura_module);

    ngx_memzero(&conf, sizeof(ngx_segura_rotate_conf_t));

    conf.smcf = smcf;
    conf.connect_timeout = slcf->connect_timeout;
    conf.resolver = clcf->resolver;
    conf.resolver_timeout = clcf->resolver_timeout;
    conf.policy = slcf->host_key_policy;
    conf.log = ngx_cycle->log;
    conf.key_id = rs->key_id;
    conf.user_id = rs->user_id;
    conf.retry = rs->retry;
    conf.kind = rs->kind[0] ? rs->kind : NULL;

    /*
     * started even if the client has gone: it asked, and the rotation
     * does not depend on it any more
     */

    if (ngx_segura_rotate_start(&conf, ngx_segura_api_rotate_done, rs,
                                &rs->rt)
        != NGX_OK)
    {
        ngx_segura_api_fail(ctx, NGX_SEGURA_ERR_INTERNAL, NULL, NULL);
        ngx_segura_api_finish(r, ctx);
    }
}


static void
ngx_segura_api_rotate_cleanup(void *data)
{
    ngx_segura_api_rotate_t *rs = data;

    if (rs->rt != NULL) {
        ngx_segura_rotate_detach(rs->rt);
    }

    free(rs);
}


static void
ngx_segura_api_rotate_done(ngx_segura_rotate_t *rt, void *data)
{
    ngx_segura_api_rotate_t *rs = data;

    ngx_segura_api_ctx_t  *ctx;

    rs->rt = NULL;
    ctx = rs->ctx;

    switch (ngx_segura_rotate_outcome(rt)) {

    case NGX_SEGURA_ROTATE_OK:
        rs->rotation_id = ngx_segura_rotate_id(rt);
        ngx_segura_api_resume(rs->r, ctx, ngx_segura_api_rotate_answer);
        return;

    case NGX_SEGURA_ROTATE_RUNNING:
        ngx_segura_api_fail(ctx, NGX_SEGURA_ERR_CONFLICT, NULL,
                            "A rotation of this key is running");
        break;

    case NGX_SEGURA_ROTATE_NOT_FOUND:
        ngx_segura_api_fail(ctx, NGX_SEGURA_ERR_NOT_FOUND, NULL, NULL);
        break;

    case NGX_SEGURA_ROTATE_DB:
        ngx_segura_api_fail(ctx, NGX_SEGURA_ERR_DB_UNAVAILABLE, NULL, NULL);
        break;

    default:
        ngx_segura_api_fail(ctx, NGX_SEGURA_ERR_INTERNAL, NULL, NULL);
        break;
    }

    ngx_segura_api_finish(rs->r, ctx);
}


/* the last pass (pool thread): the rotation as its row says */

static void
ngx_segura_api_rotate_answer(ngx_segura_api_ctx_t *ctx, PGconn **conn)
{
    const char               *p[1];
    ngx_segura_api_rotate_t  *rs;
    char                      id[NGX_INT64_LEN + 1];

    rs = ctx->data;

    ngx_segura_api_id(rs->rotation_id, id);
    p[0] = id;

    (void) ngx_segura_api_query_json(ctx, conn, 200,
               "select " NGX_SEGURA_API_ROTATION_JSON
               " from key_rotations r where r.id = $1::bigint", 1, p);
}


/* GET /api/keys/{id}/rotations (pool thread); params as above */

void
ngx_segura_api_key_rotations(ngx_segura_api_ctx_t *ctx, PGconn **conn,
    int64_t id, const char *const *params)
{
    PGresult  *res;

    if (!(ctx->method & (NGX_HTTP_GET|NGX_HTTP_HEAD))) {
        ngx_segura_api_fail(ctx, NGX_SEGURA_ERR_METHOD, NULL, NULL);
        return;
    }

    if (ngx_segura_api_need_admin(ctx) != NGX_OK) {
        return;
    }

    res = ngx_segura_api_query_retry(ctx, conn,
              "select 1 from ssh_keys where id = $1::bigint", 1, &params[2]);

    if (ngx_segura_api_one(ctx, res) != NGX_OK) {
        return;
    }

    PQclear(res);

    (void) ngx_segura_api_query_json(ctx, conn, 200,
               "select json_build_object('items', coalesce(json_agg("
               NGX_SEGURA_API_ROTATION_JSON " order by r.id desc), '[]'))"
               " from (select * from key_rotations"
               "  where key_id = $1::bigint order by id desc limit 100) r",
               1, &params[2]);
}
