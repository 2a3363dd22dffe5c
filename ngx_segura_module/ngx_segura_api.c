
/*
 * Copyright (C) ngx_segura_module authors
 */


/*
 * The JSON management API at "location /api/ { segura_api; }".
 *
 * The content handler (event loop) checks what can be checked without
 * blocking: method, media type, Origin, body size.  It copies the request
 * into an ngx_segura_api_ctx_t and posts a task; the task (pool thread)
 * does the database, password and key work and writes the response body;
 * the completion handler (event loop) logs and sends it.
 */


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>
#include "ngx_segura.h"
#include "ngx_segura_api.h"
#include "ngx_segura_auth.h"
#include "ngx_segura_db.h"

#include <jansson.h>


static void ngx_segura_api_body_handler(ngx_http_request_t *r);
static ngx_int_t ngx_segura_api_prepare(ngx_http_request_t *r,
    ngx_segura_api_ctx_t *ctx);
static char *ngx_segura_api_cstr(ngx_pool_t *pool, ngx_str_t *s);
static void ngx_segura_api_task(void *data, ngx_log_t *log);
static void ngx_segura_api_done(ngx_event_t *ev);
static ngx_int_t ngx_segura_api_respond(ngx_http_request_t *r,
    ngx_segura_api_ctx_t *ctx);
static void ngx_segura_api_free_json(void *data);
static void ngx_segura_api_route(ngx_segura_api_ctx_t *ctx, PGconn **conn);
static void ngx_segura_api_health(ngx_segura_api_ctx_t *ctx, PGconn **conn);


ngx_int_t
ngx_segura_api_handler(ngx_http_request_t *r)
{
    ngx_int_t                    rc;
    ngx_http_segura_loc_conf_t  *slcf;

    slcf = ngx_http_get_module_loc_conf(r, ngx_http_segura_module);

    if (r->method & (NGX_HTTP_POST|NGX_HTTP_PUT|NGX_HTTP_PATCH
                     |NGX_HTTP_DELETE))
    {
        if (ngx_http_segura_origin_ok(r, slcf) != NGX_OK) {
            return ngx_http_segura_send_error(r, NGX_SEGURA_ERR_FOREIGN_ORIGIN,
                                              NULL, NULL);
        }

        if (r->method != NGX_HTTP_DELETE && !ngx_http_segura_is_json(r)) {
            return ngx_http_segura_send_error(r, NGX_SEGURA_ERR_MEDIA_TYPE,
                                              NULL, NULL);
        }

    } else if (!(r->method & (NGX_HTTP_GET|NGX_HTTP_HEAD))) {
        return ngx_http_segura_send_error(r, NGX_SEGURA_ERR_METHOD,
                                          NULL, NULL);
    }

    /*
     * only bodies of a declared length are read, all in memory: a chunked
     * body of unknown size would otherwise go to a temporary file first
     */

    if (r->headers_in.content_length_n > (off_t) slcf->max_body) {
        return ngx_http_segura_send_error(r, NGX_SEGURA_ERR_TOO_LARGE,
                                          NULL, NULL);
    }

    if (r->headers_in.chunked) {
        return ngx_http_segura_send_error(r, NGX_SEGURA_ERR_BAD_REQUEST, NULL,
                                          "Send the body with a "
                                          "Content-Length");
    }

    r->request_body_in_single_buf = 1;

    rc = ngx_http_read_client_request_body(r, ngx_segura_api_body_handler);

    if (rc >= NGX_HTTP_SPECIAL_RESPONSE) {
        return rc;
    }

    return NGX_DONE;
}


static void
ngx_segura_api_body_handler(ngx_http_request_t *r)
{
    ngx_thread_task_t            *task;
    ngx_segura_api_ctx_t         *ctx;
    ngx_http_segura_main_conf_t  *smcf;

    smcf = ngx_http_get_module_main_conf(r, ngx_http_segura_module);

    task = ngx_thread_task_alloc(r->pool, sizeof(ngx_segura_api_ctx_t));
    if (task == NULL) {
        ngx_http_finalize_request(r, NGX_HTTP_INTERNAL_SERVER_ERROR);
        return;
    }

    ctx = task->ctx;
    ctx->smcf = smcf;

    if (ngx_segura_api_prepare(r, ctx) != NGX_OK) {
        ngx_http_finalize_request(r, NGX_HTTP_INTERNAL_SERVER_ERROR);
        return;
    }

    task->handler = ngx_segura_api_task;
    task->event.data = r;
    task->event.handler = ngx_segura_api_done;

    /*
     * the request body reader holds one reference on the request; it is
     * released by ngx_http_finalize_request() in the completion handler.
     * "blocked" keeps the request from being freed if the client aborts
     * while the task runs: the task writes into the request's pool.
     */

    if (ngx_thread_task_post(smcf->thread_pool, task) != NGX_OK) {
        ngx_http_finalize_request(r,
            ngx_http_segura_send_error(r, NGX_SEGURA_ERR_INTERNAL, NULL,
                                       "The server is overloaded"));
        return;
    }

    r->main->blocked++;
    r->aio = 1;
}


static ngx_int_t
ngx_segura_api_prepare(ngx_http_request_t *r, ngx_segura_api_ctx_t *ctx)
{
    size_t                       len;
    ngx_str_t                    path, args, value, cookie;
    ngx_buf_t                   *b;
    ngx_chain_t                 *cl;
    ngx_http_segura_loc_conf_t  *slcf;

    slcf = ngx_http_get_module_loc_conf(r, ngx_http_segura_module);

    ctx->method = r->method;
    ctx->login_lifetime = slcf->login_lifetime;
    ctx->login_idle = slcf->login_idle;
    ctx->err = NGX_SEGURA_ERR_OK;

#if (NGX_HTTP_SSL)
    ctx->secure = (r->connection->ssl != NULL);
#endif

    /* the path after the "/api/" prefix, percent-decoded by nginx */

    path = r->uri;

    if (path.len >= 5 && ngx_strncmp(path.data, "/api/", 5) == 0) {
        path.data += 5;
        path.len -= 5;
    }

    ctx->path = ngx_segura_api_cstr(r->pool, &path);
    args = r->args;
    ctx->args = ngx_segura_api_cstr(r->pool, &args);

    if (ctx->path == NULL || ctx->args == NULL) {
        return NGX_ERROR;
    }

    ctx->client_addr = ngx_segura_api_cstr(r->pool, &r->connection->addr_text);
    if (ctx->client_addr == NULL) {
        return NGX_ERROR;
    }

    if (r->headers_in.user_agent) {
        value = r->headers_in.user_agent->value;
        if (value.len > 255) {
            value.len = 255;
        }

        ctx->user_agent = ngx_segura_api_cstr(r->pool, &value);
        if (ctx->user_agent == NULL) {
            return NGX_ERROR;
        }
    }

    if (slcf->user) {
        if (ngx_http_complex_value(r, slcf->user, &value) != NGX_OK) {
            return NGX_ERROR;
        }

        if (value.len) {
            ctx->delegated = ngx_segura_api_cstr(r->pool, &value);
            if (ctx->delegated == NULL) {
                return NGX_ERROR;
            }
        }
    }

    if (ngx_http_segura_get_cookie(r, &cookie) == NGX_OK
        && ngx_http_segura_decode_token(&cookie, ctx->token) == NGX_OK)
    {
        ctx->has_token = 1;
    }

    if (r->request_body == NULL || r->request_body->bufs == NULL) {
        return NGX_OK;
    }

    len = 0;

    for (cl = r->request_body->bufs; cl; cl = cl->next) {
        if (cl->buf->in_file) {
            /* cannot happen with client_body_buffer_size >= max_body */
            ngx_log_error(NGX_LOG_ALERT, r->connection->log, 0,
                          "segura api: request body in a file");
            return NGX_ERROR;
        }

        len += cl->buf->last - cl->buf->pos;
    }

    b = ngx_create_temp_buf(r->pool, len + 1);
    if (b == NULL) {
        return NGX_ERROR;
    }

    for (cl = r->request_body->bufs; cl; cl = cl->next) {
        b->last = ngx_cpymem(b->last, cl->buf->pos,
                             cl->buf->last - cl->buf->pos);
    }

    *b->last = '\0';

    ctx->body = (char *) b->pos;
    ctx->body_len = len;

    return NGX_OK;
}


static char *
ngx_segura_api_cstr(ngx_pool_t *pool, ngx_str_t *s)
{
    u_char  *p;

    p = ngx_pnalloc(pool, s->len + 1);
    if (p == NULL) {
        return NULL;
    }

    ngx_memcpy(p, s->data, s->len);
    p[s->len] = '\0';

    return (char *) p;
}


static void
ngx_segura_api_task(void *data, ngx_log_t *log)
{
    ngx_segura_api_ctx_t *ctx = data;

    PGconn  *conn;
    char     err[NGX_SEGURA_ERRLEN];

    /* pool thread: touches ctx and its own locals only */

    conn = ngx_segura_db_acquire(ctx->smcf->db, err, sizeof(err));

    if (conn == NULL) {
        ngx_segura_api_fail_db(ctx, NULL, err);
        return;
    }

    ngx_segura_api_route(ctx, &conn);

    ngx_segura_db_release(ctx->smcf->db, conn);
}


static void
ngx_segura_api_done(ngx_event_t *ev)
{
    ngx_http_request_t *r = ev->data;

    ngx_int_t              rc;
    ngx_connection_t      *c;
    ngx_thread_task_t     *task;
    ngx_segura_api_ctx_t  *ctx;

    c = r->connection;

    r->main->blocked--;
    r->aio = 0;

    task = (ngx_thread_task_t *) ((u_char *) ev
                                  - offsetof(ngx_thread_task_t, event));
    ctx = task->ctx;

    if (ctx->json != NULL) {
        /* freed with the request, on every path */

        ngx_pool_cleanup_t  *cln;

        cln = ngx_pool_cleanup_add(r->pool, 0);
        if (cln == NULL) {
            free(ctx->json);
            ctx->json = NULL;

        } else {
            cln->handler = ngx_segura_api_free_json;
            cln->data = ctx->json;
        }
    }

    if (ctx->log_level) {
        ngx_log_error(ctx->log_level, c->log, 0, "segura api: %s", ctx->log);
    }

    if (c->error) {
        ngx_http_finalize_request(r, NGX_ERROR);

    } else {
        rc = ngx_segura_api_respond(r, ctx);
        ngx_http_finalize_request(r, rc);
    }

    ngx_http_run_posted_requests(c);
}


static ngx_int_t
ngx_segura_api_respond(ngx_http_request_t *r, ngx_segura_api_ctx_t *ctx)
{
    if (ctx->json == NULL) {
        if (ctx->err == NGX_SEGURA_ERR_OK) {
            ctx->err = NGX_SEGURA_ERR_INTERNAL;
        }

        return ngx_http_segura_send_error(r, ctx->err, ctx->field,
                                          ctx->message[0] ? ctx->message
                                                          : NULL);
    }

    if (ctx->set_cookie) {
        if (ngx_http_segura_set_cookie(r, ctx->new_token,
                                       ctx->login_lifetime, ctx->secure)
            != NGX_OK)
        {
            return NGX_HTTP_INTERNAL_SERVER_ERROR;
        }

    } else if (ctx->clear_cookie) {
        if (ngx_http_segura_set_cookie(r, NULL, 0, ctx->secure) != NGX_OK) {
            return NGX_HTTP_INTERNAL_SERVER_ERROR;
        }
    }

    return ngx_http_segura_send_json(r, ctx->status ? ctx->status : 200,
                                     (u_char *) ctx->json,
                                     ngx_strlen(ctx->json));
}


static void
ngx_segura_api_free_json(void *data)
{
    free(data);
}


void
ngx_segura_api_fail(ngx_segura_api_ctx_t *ctx, ngx_segura_err_e err,
    const char *field, const char *message)
{
    ctx->err = err;
    ctx->field = field;

    if (message != NULL) {
        (void) ngx_cpystrn((u_char *) ctx->message, (u_char *) message,
                           sizeof(ctx->message));
    }

    if (ctx->json != NULL) {
        free(ctx->json);
        ctx->json = NULL;
    }
}


void
ngx_segura_api_fail_db(ngx_segura_api_ctx_t *ctx, PGconn *conn,
    const char *err)
{
    /*
     * a dead database is the operator's problem (503, logged as error);
     * the text may hold host names but never the password
     */

    ngx_segura_api_fail(ctx, ngx_segura_db_broken(conn)
                             ? NGX_SEGURA_ERR_DB_UNAVAILABLE
                             : NGX_SEGURA_ERR_INTERNAL, NULL, NULL);

    ctx->log_level = NGX_LOG_ERR;
    (void) ngx_cpystrn((u_char *) ctx->log, (u_char *) err,
                       sizeof(ctx->log));
}


static void
ngx_segura_api_route(ngx_segura_api_ctx_t *ctx, PGconn **conn)
{
    if (ngx_strcmp(ctx->path, "health") == 0) {
        if (ctx->method & (NGX_HTTP_GET|NGX_HTTP_HEAD)) {
            ngx_segura_api_health(ctx, conn);

        } else {
            ngx_segura_api_fail(ctx, NGX_SEGURA_ERR_METHOD, NULL, NULL);
        }

        return;
    }

    ngx_segura_api_fail(ctx, NGX_SEGURA_ERR_NOT_FOUND, NULL,
                        "No such API endpoint");
}


static void
ngx_segura_api_health(ngx_segura_api_ctx_t *ctx, PGconn **conn)
{
    char       err[NGX_SEGURA_ERRLEN];
    json_t    *json;
    PGresult  *res;

    res = ngx_segura_db_query(ctx->smcf->db, conn,
                              "select coalesce(max(version), 0)"
                              " from schema_migrations", 0, NULL,
                              err, sizeof(err));

    if (res == NULL || PQresultStatus(res) != PGRES_TUPLES_OK) {
        PQclear(res);
        ngx_segura_api_fail_db(ctx, *conn, err);
        return;
    }

    json = json_pack("{s:s, s:s, s:i}",
                     "status", "ok",
                     "version", NGX_SEGURA_VERSION,
                     "schema", atoi(PQgetvalue(res, 0, 0)));
    PQclear(res);

    if (json == NULL) {
        ngx_segura_api_fail(ctx, NGX_SEGURA_ERR_INTERNAL, NULL, NULL);
        return;
    }

    ctx->json = json_dumps(json, JSON_COMPACT);
    json_decref(json);

    ctx->status = 200;
}
