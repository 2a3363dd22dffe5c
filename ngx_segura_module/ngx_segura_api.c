
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
#include "ngx_segura_login_gate.h"
#include "ngx_segura_metrics.h"
#include "ngx_segura_openapi.h"

#include <jansson.h>
#include <openssl/crypto.h>


typedef struct {
    const char                 *name;
    ngx_segura_api_handler_pt   handler;
    unsigned                    anonymous:1;   /* no identity needed */
    unsigned                    items:2;       /* what follows the name */
} ngx_segura_api_route_t;


/* how long a pool task may keep an exiting worker (ctx->hold) */
#define NGX_SEGURA_API_HOLD      3600000

#define NGX_SEGURA_API_NUMBERED  0     /* "<name>/<id>[/<sub>]" */
#define NGX_SEGURA_API_NONE      1     /* "<name>" only */
#define NGX_SEGURA_API_NAMED     2     /* the handler reads the rest */


/* the request body, read unbuffered into memory of our own */
typedef struct {
    u_char                     *buf;          /* wiped with the pool */
    size_t                      len;
    size_t                      size;
    size_t                      max;          /* segura_max_body */
} ngx_segura_api_body_t;


typedef struct {
    const char                 *constraint;
    const char                 *field;
} ngx_segura_api_constraint_t;


static void ngx_segura_api_body_handler(ngx_http_request_t *r);
static void ngx_segura_api_body_read(ngx_http_request_t *r);
static void ngx_segura_api_body_pump(ngx_http_request_t *r, ngx_uint_t read);
static ngx_int_t ngx_segura_api_body_take(ngx_http_request_t *r);
static void ngx_segura_api_body_wipe(void *data);
static void ngx_segura_api_post(ngx_http_request_t *r);
static void ngx_segura_api_post_task(ngx_http_request_t *r,
    ngx_segura_api_ctx_t *ctx);
static void ngx_segura_api_login_wait(ngx_http_request_t *r,
    ngx_segura_api_ctx_t *ctx);
static void ngx_segura_api_login_unwait(void *data);
static void ngx_segura_api_login_release(ngx_segura_api_ctx_t *ctx);
static void ngx_segura_api_login_refuse(ngx_http_request_t *r,
    ngx_segura_err_e err, ngx_uint_t retry_after);
static ngx_int_t ngx_segura_api_prepare(ngx_http_request_t *r,
    ngx_segura_api_ctx_t *ctx);
static void ngx_segura_api_task(void *data, ngx_log_t *log);
static void ngx_segura_api_done(ngx_event_t *ev);
static void ngx_segura_api_hold(ngx_event_t *ev);
static ngx_int_t ngx_segura_api_respond(ngx_http_request_t *r,
    ngx_segura_api_ctx_t *ctx);
static void ngx_segura_api_free_json(void *data);
static ngx_int_t ngx_segura_api_send_body(ngx_http_request_t *r,
    ngx_segura_api_ctx_t *ctx);
static void ngx_segura_api_route(ngx_segura_api_ctx_t *ctx, PGconn **conn);
static void ngx_segura_api_health(ngx_segura_api_ctx_t *ctx, PGconn **conn,
    int64_t id, const char *sub);
static ngx_int_t ngx_segura_api_filter_arg(ngx_segura_api_ctx_t *ctx,
    const char *name, char *buf, size_t len, const char **param);
static PGresult *ngx_segura_api_run(ngx_segura_api_ctx_t *ctx,
    PGconn **conn, ngx_uint_t retry, const char *sql, int nparams,
    const char *const *params);
static void ngx_segura_api_fail_sql(ngx_segura_api_ctx_t *ctx, PGconn *conn,
    PGresult *res, const char *err);
static json_t *ngx_segura_api_parse_lists(ngx_segura_api_ctx_t *ctx,
    const char *const *allowed, const char *const *readonly);


static ngx_segura_api_route_t  ngx_segura_api_routes[] = {
    { "health", ngx_segura_api_health, 1, NGX_SEGURA_API_NONE },
    { "login", ngx_segura_api_login, 1, NGX_SEGURA_API_NONE },
    { "logout", ngx_segura_api_logout, 1, NGX_SEGURA_API_NONE },
    { "me", ngx_segura_api_me, 0, NGX_SEGURA_API_NONE },
    { "users", ngx_segura_api_users, 0, NGX_SEGURA_API_NUMBERED },
    { "groups", ngx_segura_api_groups, 0, NGX_SEGURA_API_NUMBERED },
    { "devices", ngx_segura_api_devices, 0, NGX_SEGURA_API_NUMBERED },
    { "keys/generate", ngx_segura_api_keys_generate, 0,
      NGX_SEGURA_API_NONE },
    { "keys", ngx_segura_api_keys, 0, NGX_SEGURA_API_NUMBERED },
    { "sessions", ngx_segura_api_sessions, 0, NGX_SEGURA_API_NAMED },
    { "metrics", ngx_segura_api_metrics, 0, NGX_SEGURA_API_NONE },
    { NULL, NULL, 0, 0 }
};


/*
 * constraint names whose field is not the column between the table name
 * and the "_key", "_check" or "_fkey" suffix PostgreSQL gives them
 */

static ngx_segura_api_constraint_t  ngx_segura_api_constraints[] = {
    { "users_username_lower_key", "username" },
    { "users_password_hash_check", "password" },
    { "group_members_user_id_fkey", "members" },
    { "group_keys_key_id_fkey", "keys" },
    { "group_devices_device_id_fkey", "devices" },
    { "key_devices_device_id_fkey", "devices" },
    { "key_devices_one_main_idx", "main_device" },
    { "devices_check", "host_key" },
    { "ssh_keys_key_type_check", "private_key" },
    { "ssh_keys_bits_check", "private_key" },
    { "ssh_keys_private_key_enc_check", "private_key" },
    { "ssh_keys_passphrase_enc_check", "passphrase" },
    { NULL, NULL }
};


/*
 * Logins are admitted to the thread pool segura_login_concurrency at a
 * time per worker, the argon2id slots: a login enters the pool only when
 * one is free, so that at most that many pool threads ever work for
 * logins and session set-ups never queue behind them.  The others wait in
 * line here, on the event loop; beyond the line: 503 busy, Retry-After 1.
 * An address whose budget the database refused is answered 429 here for
 * a while (ngx_segura_login_gate.c), before it takes a place in line.
 */

#define NGX_SEGURA_API_LOGIN_QUEUE   256

typedef struct {
    ngx_queue_t                   queue;
    ngx_http_request_t           *r;
    ngx_segura_api_ctx_t         *ctx;
    unsigned                      queued:1;
} ngx_segura_api_login_wait_t;

static ngx_uint_t   ngx_segura_api_logins;       /* in the pool */
static ngx_uint_t   ngx_segura_api_logins_waiting;
static ngx_queue_t  ngx_segura_api_login_queue;


ngx_int_t
ngx_segura_api_handler(ngx_http_request_t *r)
{
    ngx_int_t                    rc;
    ngx_pool_cleanup_t          *cln;
    ngx_segura_api_body_t       *body;
    ngx_http_segura_loc_conf_t  *slcf;

    slcf = ngx_http_get_module_loc_conf(r, ngx_http_segura_module);

    /* the API's description: static, no identity, no pool task */

    if (ngx_segura_openapi_is(r)) {
        return ngx_segura_openapi_handler(r);
    }

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

    /* a declared length over the limit is refused before a byte is read */

    if (r->headers_in.content_length_n > (off_t) slcf->max_body) {
        return ngx_http_segura_send_error(r, NGX_SEGURA_ERR_TOO_LARGE,
                                          NULL, NULL);
    }

    body = ngx_pcalloc(r->pool, sizeof(ngx_segura_api_body_t));
    if (body == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    cln = ngx_pool_cleanup_add(r->pool, 0);
    if (cln == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    cln->handler = ngx_segura_api_body_wipe;
    cln->data = body;

    body->max = slcf->max_body;
    ngx_http_set_ctx(r, body, ngx_http_segura_module);

    /*
     * the body may hold a private key: it is read unbuffered, so that
     * nginx never spools it to client_body_temp_path whatever
     * client_body_buffer_size or client_body_in_file_only say, and each
     * part is moved into memory of our own (ngx_segura_api_body_take)
     * that is bounded by segura_max_body, chunked bodies included
     */

    r->request_body_no_buffering = 1;

    rc = ngx_http_read_client_request_body(r, ngx_segura_api_body_handler);

    if (rc >= NGX_HTTP_SPECIAL_RESPONSE) {
        return rc;
    }

    return NGX_DONE;
}


static void
ngx_segura_api_body_handler(ngx_http_request_t *r)
{
    /*
     * called once, when the whole body has been read or, with
     * r->reading_body, when its first part has
     */

    ngx_segura_api_body_pump(r, 0);
}


static void
ngx_segura_api_body_read(ngx_http_request_t *r)
{
    ngx_segura_api_body_pump(r, 1);
}


static void
ngx_segura_api_body_pump(ngx_http_request_t *r, ngx_uint_t read)
{
    size_t                  len;
    ngx_int_t               rc;
    ngx_segura_api_body_t  *body;

    body = ngx_http_get_module_ctx(r, ngx_http_segura_module);

    /*
     * the read buffer is handed back only once its data is taken, and
     * epoll is edge-triggered: read and take until nginx has nothing more
     * (the loop of ngx_http_upstream_send_request_body())
     */

    for ( ;; ) {

        if (read) {
            rc = ngx_http_read_unbuffered_request_body(r);

            if (rc >= NGX_HTTP_SPECIAL_RESPONSE) {
                ngx_http_finalize_request(r, rc);
                return;
            }

            if (rc == NGX_ERROR) {
                ngx_http_finalize_request(r, NGX_HTTP_INTERNAL_SERVER_ERROR);
                return;
            }
        }

        len = body->len;

        rc = ngx_segura_api_body_take(r);

        if (rc == NGX_DECLINED) {
            /* the rest is not read: nginx closes after a lingering close */
            r->read_event_handler = ngx_http_block_reading;
            ngx_http_finalize_request(r,
                ngx_http_segura_send_error(r, NGX_SEGURA_ERR_TOO_LARGE,
                                           NULL, NULL));
            return;
        }

        if (rc != NGX_OK) {
            ngx_http_finalize_request(r, rc);
            return;
        }

        if (!r->reading_body) {
            break;
        }

        r->read_event_handler = ngx_segura_api_body_read;

        if (read && body->len == len) {
            /* nothing new: wait for the next read event */
            return;
        }

        read = 1;
    }

    r->read_event_handler = ngx_http_block_reading;

    ngx_segura_api_post(r);
}


static ngx_int_t
ngx_segura_api_body_take(ngx_http_request_t *r)
{
    u_char                   *p;
    size_t                    n, size;
    ngx_buf_t                *b;
    ngx_chain_t              *cl;
    ngx_segura_api_body_t    *body;
    ngx_http_request_body_t  *rb;

    /*
     * moves what nginx has read of the body into body->buf, wiping
     * nginx's copy; NGX_DECLINED when the total passes segura_max_body
     */

    body = ngx_http_get_module_ctx(r, ngx_http_segura_module);
    rb = r->request_body;

    if (rb == NULL) {
        return NGX_OK;
    }

    for (cl = rb->bufs; cl; cl = cl->next) {
        b = cl->buf;

        if (b->in_file) {
            /* cannot happen: unbuffered bodies are never written out */
            ngx_log_error(NGX_LOG_ALERT, r->connection->log, 0,
                          "segura api: request body in a file");
            return NGX_HTTP_INTERNAL_SERVER_ERROR;
        }

        n = b->last - b->pos;

        if (n == 0) {
            continue;
        }

        if (n > body->max - body->len) {
            ngx_log_error(NGX_LOG_INFO, r->connection->log, 0,
                          "segura api: request body over %uz bytes",
                          body->max);

            OPENSSL_cleanse(b->pos, n);
            b->pos = b->last;
            rb->bufs = NULL;

            return NGX_DECLINED;
        }

        if (body->len + n + 1 > body->size) {

            /* grow by doubling, up to the limit; the old copy is wiped */

            size = body->size ? body->size * 2 : 4096;

            if (size < body->len + n + 1) {
                size = body->len + n + 1;
            }

            if (size > body->max + 1) {
                size = body->max + 1;
            }

            p = ngx_pnalloc(r->pool, size);
            if (p == NULL) {
                return NGX_HTTP_INTERNAL_SERVER_ERROR;
            }

            if (body->buf != NULL) {
                ngx_memcpy(p, body->buf, body->len);
                OPENSSL_cleanse(body->buf, body->size);
            }

            body->buf = p;
            body->size = size;
        }

        ngx_memcpy(body->buf + body->len, b->pos, n);
        body->len += n;

        OPENSSL_cleanse(b->pos, n);
        b->pos = b->last;
    }

    rb->bufs = NULL;

    if (!r->reading_body && rb->buf != NULL
        && (rb->buf->start < r->header_in->start
            || rb->buf->start >= r->header_in->end))
    {
        /*
         * small chunks are copied out of the read buffer: wipe it all,
         * unless it is the header buffer, where a pipelined request may
         * follow (nginx has moved any such bytes there by now)
         */
        OPENSSL_cleanse(rb->buf->start, rb->buf->end - rb->buf->start);
    }

    return NGX_OK;
}


static void
ngx_segura_api_body_wipe(void *data)
{
    ngx_segura_api_body_t  *body = data;

    if (body->buf != NULL) {
        OPENSSL_cleanse(body->buf, body->size);
    }
}


static void
ngx_segura_api_post(ngx_http_request_t *r)
{
    ngx_uint_t                    retry;
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
    ctx->task = task;

    if (ngx_segura_api_prepare(r, ctx) != NGX_OK) {
        ngx_http_finalize_request(r, NGX_HTTP_INTERNAL_SERVER_ERROR);
        return;
    }

    task->handler = ngx_segura_api_task;
    task->event.data = r;
    task->event.handler = ngx_segura_api_done;

    ctx->hold.handler = ngx_segura_api_hold;
    ctx->hold.data = r;
    ctx->hold.log = r->connection->log;

    if (ctx->method == NGX_HTTP_POST && ngx_strcmp(ctx->path, "login") == 0)
    {
        retry = ngx_segura_login_gate_refused(ctx->client_addr,
                                              ctx->login_address_limit,
                                              ctx->login_address_window);

        if (retry) {
            ngx_log_error(NGX_LOG_INFO, r->connection->log, 0,
                          "segura api: logins from %s throttled (on the "
                          "event loop)", ctx->client_addr);
            ngx_segura_api_login_refuse(r, NGX_SEGURA_ERR_TOO_MANY, retry);
            return;
        }

        ctx->login_gated = 1;

        if (ngx_segura_api_logins >= (ngx_uint_t) smcf->login_concurrency) {
            ngx_segura_api_login_wait(r, ctx);
            return;
        }

        ngx_segura_api_logins++;
    }

    ngx_segura_api_post_task(r, ctx);
}


static void
ngx_segura_api_post_task(ngx_http_request_t *r, ngx_segura_api_ctx_t *ctx)
{
    /*
     * the request body reader holds one reference on the request; it is
     * released by ngx_http_finalize_request() in the completion handler.
     * "blocked" keeps the request from being freed if the client aborts
     * while the task runs: the task writes into the request's pool.
     */

    /* counted before the post: the task may run before the post returns */
    ngx_segura_metrics_task(NGX_SEGURA_METRIC_TASK_API, 1);

    if (ctx->login_gated) {
        ngx_segura_metrics_add(NGX_SEGURA_METRIC_LOGIN_TASKS, 1);
    }

    if (ngx_thread_task_post(ctx->smcf->thread_pool, ctx->task) != NGX_OK) {
        ngx_segura_metrics_task(NGX_SEGURA_METRIC_TASK_API, -1);
        ngx_segura_api_login_release(ctx);
        ngx_http_finalize_request(r,
            ngx_http_segura_send_error(r, NGX_SEGURA_ERR_INTERNAL, NULL,
                                       "The server is overloaded"));
        return;
    }

    r->main->blocked++;
    r->aio = 1;

    ngx_add_timer(&ctx->hold, NGX_SEGURA_API_HOLD);
}


/* every login slot taken: wait in line, or 503 when the line is full */

static void
ngx_segura_api_login_wait(ngx_http_request_t *r, ngx_segura_api_ctx_t *ctx)
{
    ngx_pool_cleanup_t           *cln;
    ngx_segura_api_login_wait_t  *w;

    if (ngx_segura_api_login_queue.next == NULL) {
        ngx_queue_init(&ngx_segura_api_login_queue);
    }

    if (ngx_segura_api_logins_waiting >= NGX_SEGURA_API_LOGIN_QUEUE) {
        ctx->login_gated = 0;

        ngx_log_error(NGX_LOG_INFO, r->connection->log, 0,
                      "segura api: login refused: %ui logins wait",
                      ngx_segura_api_logins_waiting);

        ngx_segura_api_login_refuse(r, NGX_SEGURA_ERR_BUSY, 1);
        return;
    }

    w = ngx_palloc(r->pool, sizeof(ngx_segura_api_login_wait_t));
    cln = ngx_pool_cleanup_add(r->pool, 0);

    if (w == NULL || cln == NULL) {
        ctx->login_gated = 0;
        ngx_http_finalize_request(r, NGX_HTTP_INTERNAL_SERVER_ERROR);
        return;
    }

    w->r = r;
    w->ctx = ctx;
    w->queued = 1;

    cln->handler = ngx_segura_api_login_unwait;
    cln->data = w;

    ngx_queue_insert_tail(&ngx_segura_api_login_queue, &w->queue);
    ngx_segura_api_logins_waiting++;

    /*
     * a client that goes away while it waits leaves the line at once
     * (nginx finalizes the request, the cleanup above runs): no statement
     * or argon2id for nobody, no place taken.  The read event is posted
     * once: the client may have closed before the handler was set, and
     * epoll is edge-triggered (it would not say so again); posted, not
     * called, because the caller may still be inside the content handler.
     */

    r->read_event_handler = ngx_http_test_reading;
    ngx_post_event(r->connection->read, &ngx_posted_events);
}


/* a login answered on the event loop: 429 or 503, with Retry-After */

static void
ngx_segura_api_login_refuse(ngx_http_request_t *r, ngx_segura_err_e err,
    ngx_uint_t retry_after)
{
    u_char  *buf;

    ngx_segura_metrics_api_answered("login", err, 1);

    /* the header points here until the response is sent */

    buf = ngx_pnalloc(r->pool, NGX_INT_T_LEN + 1);
    if (buf == NULL) {
        ngx_http_finalize_request(r, NGX_HTTP_INTERNAL_SERVER_ERROR);
        return;
    }

    (void) ngx_snprintf(buf, NGX_INT_T_LEN + 1, "%ui%Z", retry_after);

    if (ngx_http_segura_add_header(r, "Retry-After", (char *) buf)
        != NGX_OK)
    {
        ngx_http_finalize_request(r, NGX_HTTP_INTERNAL_SERVER_ERROR);
        return;
    }

    ngx_http_finalize_request(r,
        ngx_http_segura_send_error(r, err, NULL, NULL));
}


/* the request goes while it waits (the worker exits, for instance) */

static void
ngx_segura_api_login_unwait(void *data)
{
    ngx_segura_api_login_wait_t *w = data;

    if (w->queued) {
        ngx_queue_remove(&w->queue);
        ngx_segura_api_logins_waiting--;
        w->queued = 0;
    }
}


/* a login left the pool: the next in line goes */

static void
ngx_segura_api_login_release(ngx_segura_api_ctx_t *ctx)
{
    ngx_uint_t                    retry;
    ngx_queue_t                  *q;
    ngx_segura_api_login_wait_t  *w;

    if (!ctx->login_gated) {
        return;
    }

    ctx->login_gated = 0;
    ngx_segura_api_logins--;

    while (ngx_segura_api_logins_waiting) {
        q = ngx_queue_head(&ngx_segura_api_login_queue);
        ngx_queue_remove(q);
        ngx_segura_api_logins_waiting--;

        w = ngx_queue_data(q, ngx_segura_api_login_wait_t, queue);
        w->queued = 0;
        w->r->read_event_handler = ngx_http_block_reading;

        /* an address refused while it waited: answered here, the next */

        retry = ngx_segura_login_gate_refused(w->ctx->client_addr,
                                              w->ctx->login_address_limit,
                                              w->ctx->login_address_window);

        if (retry) {
            w->ctx->login_gated = 0;
            ngx_log_error(NGX_LOG_INFO, w->r->connection->log, 0,
                          "segura api: logins from %s throttled (on the "
                          "event loop)", w->ctx->client_addr);
            ngx_segura_api_login_refuse(w->r, NGX_SEGURA_ERR_TOO_MANY,
                                        retry);
            continue;
        }

        ngx_segura_api_logins++;

        ngx_segura_api_post_task(w->r, w->ctx);

        return;
    }
}


static ngx_int_t
ngx_segura_api_prepare(ngx_http_request_t *r, ngx_segura_api_ctx_t *ctx)
{
    ngx_str_t                    path, args, value, cookie;
    ngx_segura_api_body_t       *body;
    ngx_http_segura_loc_conf_t  *slcf;

    slcf = ngx_http_get_module_loc_conf(r, ngx_http_segura_module);

    ctx->method = r->method;
    ctx->login_lifetime = slcf->login_lifetime;
    ctx->login_idle = slcf->login_idle;
    ctx->login_address_limit = slcf->login_address_limit;
    ctx->login_address_window = slcf->login_address_window;
    ctx->recording_self = (slcf->recording_self == 1);
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

    ctx->path = ngx_http_segura_cstr(r->pool, &path);
    args = r->args;
    ctx->args = ngx_http_segura_cstr(r->pool, &args);

    if (ctx->path == NULL || ctx->args == NULL) {
        return NGX_ERROR;
    }

    /* "login/" is routed as "login": one name for its gate and metrics */

    if (ngx_strcmp(ctx->path, "login/") == 0) {
        ctx->path[5] = '\0';
    }

    ctx->client_addr = ngx_http_segura_cstr(r->pool,
                                            &r->connection->addr_text);
    if (ctx->client_addr == NULL) {
        return NGX_ERROR;
    }

    if (r->headers_in.user_agent) {
        value = r->headers_in.user_agent->value;
        if (value.len > 255) {
            value.len = 255;
        }

        ctx->user_agent = ngx_http_segura_cstr(r->pool, &value);
        if (ctx->user_agent == NULL) {
            return NGX_ERROR;
        }
    }

    if (slcf->user) {
        if (ngx_http_complex_value(r, slcf->user, &value) != NGX_OK) {
            return NGX_ERROR;
        }

        if (value.len) {
            ctx->delegated = ngx_http_segura_cstr(r->pool, &value);
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

    body = ngx_http_get_module_ctx(r, ngx_http_segura_module);

    if (body == NULL || body->len == 0) {
        return NGX_OK;
    }

    /* wiped by the task (ngx_segura_api_task), and with the pool */

    body->buf[body->len] = '\0';

    ctx->body = (char *) body->buf;
    ctx->body_len = body->len;

    return NGX_OK;
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

    if (ctx->step != NULL) {
        ctx->step(ctx, &conn);

    } else {
        ngx_segura_api_route(ctx, &conn);
    }

    if (conn != NULL && PQtransactionStatus(conn) != PQTRANS_IDLE) {
        /* a handler's bug; the pool would close the connection anyway */
        PQclear(PQexec(conn, "rollback"));
    }

    ngx_segura_db_release(ctx->smcf->db, conn);

    if (ctx->body != NULL) {
        OPENSSL_cleanse(ctx->body, ctx->body_len);
        ctx->body = NULL;
        ctx->body_len = 0;
    }
}


static void
ngx_segura_api_done(ngx_event_t *ev)
{
    ngx_http_request_t *r = ev->data;

    ngx_thread_task_t       *task;
    ngx_segura_api_ctx_t    *ctx;
    ngx_segura_api_next_pt   next;

    task = (ngx_thread_task_t *) ((u_char *) ev
                                  - offsetof(ngx_thread_task_t, event));
    ctx = task->ctx;

    if (ctx->hold.timer_set) {
        ngx_del_timer(&ctx->hold);
    }

    ngx_segura_metrics_task(NGX_SEGURA_METRIC_TASK_API, -1);

    next = ctx->next;
    ctx->next = NULL;
    ctx->step = NULL;

    if (next == NULL) {
        if (ctx->login_address_refused) {
            ngx_segura_login_gate_remember(ctx->client_addr,
                                           ctx->login_address_limit,
                                           ctx->login_address_window,
                                           ctx->retry_after);
        }

        ngx_segura_api_login_release(ctx);
    }

    if (next != NULL) {

        /*
         * the request stays blocked: the handler's event-loop pass, which
         * owns ctx->data and looks at r->connection->error itself
         */

        if (ctx->log_level) {
            ngx_log_error(ctx->log_level, r->connection->log, 0,
                          "segura api: %s", ctx->log);
            ctx->log_level = 0;
        }

        next(r, ctx);
        return;
    }

    ngx_segura_api_finish(r, ctx);
}


void
ngx_segura_api_resume(ngx_http_request_t *r, ngx_segura_api_ctx_t *ctx,
    ngx_segura_api_step_pt step)
{
    ctx->step = step;
    ngx_segura_metrics_task(NGX_SEGURA_METRIC_TASK_API, 1);

    if (ngx_thread_task_post(ctx->smcf->thread_pool, ctx->task) != NGX_OK) {
        ngx_segura_metrics_task(NGX_SEGURA_METRIC_TASK_API, -1);
        ctx->step = NULL;
        ngx_segura_api_fail(ctx, NGX_SEGURA_ERR_INTERNAL, NULL,
                            "The server is overloaded");
        ngx_segura_api_finish(r, ctx);
        return;
    }

    ngx_add_timer(&ctx->hold, NGX_SEGURA_API_HOLD);
}


/*
 * the hold's deadline: a pool task has not come back in an hour (a
 * database statement without a timeout); the request still waits for it
 */

static void
ngx_segura_api_hold(ngx_event_t *ev)
{
    ngx_http_request_t *r = ev->data;

    ngx_log_error(NGX_LOG_ALERT, r->connection->log, 0,
                  "segura api: a pool task has not come back in an hour");
}


void
ngx_segura_api_finish(ngx_http_request_t *r, ngx_segura_api_ctx_t *ctx)
{
    ngx_int_t          rc;
    ngx_connection_t  *c;

    c = r->connection;

    r->main->blocked--;
    r->aio = 0;

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

    /* t/api_login_abuse.t counts these lines */
    if (ctx->argon2) {
        ngx_log_debug0(NGX_LOG_DEBUG_HTTP, c->log, 0,
                       "segura api: argon2id verification ran");
    }

    ngx_segura_metrics_api_answered(ctx->path, ctx->err, ctx->json != NULL);

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
    u_char  *p;

    if (ctx->retry_after) {
        p = ngx_pnalloc(r->pool, NGX_INT_T_LEN + 1);
        if (p == NULL) {
            return NGX_HTTP_INTERNAL_SERVER_ERROR;
        }

        (void) ngx_snprintf(p, NGX_INT_T_LEN + 1, "%ui%Z", ctx->retry_after);

        if (ngx_http_segura_add_header(r, "Retry-After", (char *) p)
            != NGX_OK)
        {
            return NGX_HTTP_INTERNAL_SERVER_ERROR;
        }
    }

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

    if (ctx->content_type != NULL) {
        return ngx_segura_api_send_body(r, ctx);
    }

    return ngx_http_segura_send_json(r, ctx->status ? ctx->status : 200,
                                     (u_char *) ctx->json,
                                     ngx_strlen(ctx->json));
}


/* a body that is not JSON (a recording): sent from ctx->json, no copy */

static ngx_int_t
ngx_segura_api_send_body(ngx_http_request_t *r, ngx_segura_api_ctx_t *ctx)
{
    size_t        len;
    ngx_int_t     rc;
    ngx_buf_t    *b;
    ngx_chain_t   out;

    /* json_len 0: a C string (the metrics' text) */
    len = ctx->json_len ? ctx->json_len : ngx_strlen(ctx->json);

    if (ngx_http_discard_request_body(r) != NGX_OK) {
        r->keepalive = 0;
    }

    r->headers_out.status = ctx->status ? ctx->status : 200;
    r->headers_out.content_length_n = len;
    r->headers_out.content_type.data = (u_char *) ctx->content_type;
    r->headers_out.content_type.len = ngx_strlen(ctx->content_type);
    r->headers_out.content_type_len = r->headers_out.content_type.len;
    r->headers_out.content_type_lowcase = NULL;

    if (ngx_http_segura_add_header(r, "Cache-Control", "no-store") != NGX_OK
        || ngx_http_segura_add_header(r, "X-Content-Type-Options", "nosniff")
           != NGX_OK)
    {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    rc = ngx_http_send_header(r);

    if (rc == NGX_ERROR || rc > NGX_OK || r->header_only) {
        return rc;
    }

    b = ngx_calloc_buf(r->pool);
    if (b == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    /* ctx->json is freed with the request (ngx_segura_api_finish) */

    b->start = (u_char *) ctx->json;
    b->pos = b->start;
    b->last = b->start + len;
    b->end = b->last;
    b->memory = len ? 1 : 0;
    b->last_buf = (r == r->main) ? 1 : 0;
    b->last_in_chain = 1;

    out.buf = b;
    out.next = NULL;

    return ngx_http_output_filter(r, &out);
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


void
ngx_segura_api_fail_field(ngx_segura_api_ctx_t *ctx, ngx_segura_err_e err,
    const char *field, const char *message)
{
    /* field may be request data (an unknown member): keep a copy */

    (void) ngx_cpystrn((u_char *) ctx->field_buf, (u_char *) field,
                       sizeof(ctx->field_buf));

    ngx_segura_api_fail(ctx, err, ctx->field_buf, message);
}


void
ngx_segura_api_fail_reason(ngx_segura_api_ctx_t *ctx, const char *field,
    const char *reason, const char *message)
{
    json_t            *e;
    ngx_segura_err_t  *se;

    /*
     * a key that failed validation: the error object also names the
     * reason ("passphrase_wrong"), so the body is built here
     */

    ngx_segura_api_fail(ctx, NGX_SEGURA_ERR_INVALID_FIELD, field, message);

    ctx->log_level = NGX_LOG_INFO;
    (void) ngx_snprintf((u_char *) ctx->log, sizeof(ctx->log) - 1,
                        "refused \"%s\": %s%Z", field ? field : "-",
                        reason);

    se = &ngx_segura_errors[NGX_SEGURA_ERR_INVALID_FIELD];

    e = json_pack("{s:{s:s%, s:s, s:s?, s:s}}",
                  "error",
                  "code", se->code.data, se->code.len,
                  "message", message,
                  "field", field,
                  "reason", reason);
    if (e == NULL) {
        return;
    }

    ctx->json = json_dumps(e, JSON_COMPACT);
    json_decref(e);

    ctx->status = se->status;
}


ngx_int_t
ngx_segura_api_need_admin(ngx_segura_api_ctx_t *ctx)
{
    if (ctx->me.admin) {
        return NGX_OK;
    }

    ngx_segura_api_fail(ctx, NGX_SEGURA_ERR_FORBIDDEN, NULL,
                        "Administrators only");

    return NGX_ERROR;
}


static void
ngx_segura_api_route(ngx_segura_api_ctx_t *ctx, PGconn **conn)
{
    char                    *p, *sub;
    size_t                   len;
    int64_t                  id;
    ngx_segura_err_e         rc;
    ngx_segura_api_route_t  *rt;
    char                     err[NGX_SEGURA_ERRLEN];

    p = ctx->path;
    len = ngx_strlen(p);

    for (rt = ngx_segura_api_routes; rt->name; rt++) {
        if (ngx_strncmp(p, rt->name, ngx_strlen(rt->name)) == 0
            && (p[ngx_strlen(rt->name)] == '\0'
                || p[ngx_strlen(rt->name)] == '/'))
        {
            break;
        }
    }

    if (rt->name == NULL) {
        goto not_found;
    }

    /* "<name>", "<name>/", "<name>/<id>", "<name>/<id>/<sub>" */

    p += ngx_strlen(rt->name);
    id = 0;
    sub = "";

    if (*p == '/') {
        p++;
    }

    if (rt->items == NGX_SEGURA_API_NAMED) {
        /* "sessions/<uuid>/end": items named otherwise than by a number */
        sub = p;

    } else if (*p != '\0') {
        if (rt->items == NGX_SEGURA_API_NONE) {
            goto not_found;
        }

        for (len = 0; p[len] >= '0' && p[len] <= '9'; len++) {
            /* void */
        }

        if (len == 0 || len > 18 || p[0] == '0'
            || (p[len] != '\0' && p[len] != '/'))
        {
            goto not_found;
        }

        id = ngx_atoof((u_char *) p, len);
        sub = p + len;

        if (*sub == '/') {
            sub++;
        }
    }

    if (!rt->anonymous) {
        err[0] = '\0';

        rc = ngx_segura_auth_identify(ctx->smcf->db, conn,
                                      ctx->has_token ? ctx->token : NULL,
                                      ctx->delegated, ctx->login_idle,
                                      &ctx->me, err, sizeof(err));

        switch (rc) {

        case NGX_SEGURA_ERR_OK:
            break;

        case NGX_SEGURA_ERR_UNAUTHENTICATED:
            ngx_segura_api_fail(ctx, rc, NULL, NULL);
            return;

        case NGX_SEGURA_ERR_FORBIDDEN:
            ngx_segura_api_fail(ctx, rc, NULL,
                                "The delegated user is not an active user");
            ctx->log_level = NGX_LOG_INFO;
            (void) ngx_snprintf((u_char *) ctx->log, sizeof(ctx->log) - 1,
                                "delegated user \"%s\" refused%Z",
                                ctx->delegated);
            return;

        default:
            ngx_segura_api_fail_db(ctx, *conn, err);
            return;
        }
    }

    rt->handler(ctx, conn, id, sub);

    return;

not_found:

    ngx_segura_api_fail(ctx, NGX_SEGURA_ERR_NOT_FOUND, NULL,
                        "No such API endpoint");
}


static void
ngx_segura_api_health(ngx_segura_api_ctx_t *ctx, PGconn **conn, int64_t id,
    const char *sub)
{
    char       err[NGX_SEGURA_ERRLEN];
    json_t    *json;
    PGresult  *res;

    if (!(ctx->method & (NGX_HTTP_GET|NGX_HTTP_HEAD))) {
        ngx_segura_api_fail(ctx, NGX_SEGURA_ERR_METHOD, NULL, NULL);
        return;
    }

    res = ngx_segura_db_query_retry(ctx->smcf->db, conn,
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


PGresult *
ngx_segura_api_query(ngx_segura_api_ctx_t *ctx, PGconn **conn,
    const char *sql, int nparams, const char *const *params)
{
    return ngx_segura_api_run(ctx, conn, 0, sql, nparams, params);
}


PGresult *
ngx_segura_api_query_retry(ngx_segura_api_ctx_t *ctx, PGconn **conn,
    const char *sql, int nparams, const char *const *params)
{
    return ngx_segura_api_run(ctx, conn, 1, sql, nparams, params);
}


static PGresult *
ngx_segura_api_run(ngx_segura_api_ctx_t *ctx, PGconn **conn,
    ngx_uint_t retry, const char *sql, int nparams,
    const char *const *params)
{
    char       err[NGX_SEGURA_ERRLEN];
    PGresult  *res;

    /*
     * runs a statement, sent at most once unless retry says a second run
     * is harmless (ngx_segura_db.c has the rule); on failure the request
     * fails and NULL is returned
     */

    err[0] = '\0';

    res = retry ? ngx_segura_db_query_retry(ctx->smcf->db, conn, sql,
                                            nparams, params, err,
                                            sizeof(err))
                : ngx_segura_db_query(ctx->smcf->db, conn, sql, nparams,
                                      params, err, sizeof(err));

    if (res != NULL
        && (PQresultStatus(res) == PGRES_TUPLES_OK
            || PQresultStatus(res) == PGRES_COMMAND_OK))
    {
        return res;
    }

    ngx_segura_api_fail_sql(ctx, *conn, res, err);
    PQclear(res);

    return NULL;
}


static void
ngx_segura_api_fail_sql(ngx_segura_api_ctx_t *ctx, PGconn *conn,
    PGresult *res, const char *err)
{
    char                         *state, *constraint, *table, *column;
    size_t                        n, len;
    const char                   *field;
    ngx_segura_api_constraint_t  *c;
    char                          buf[NGX_SEGURA_FIELDLEN];

    state = res ? PQresultErrorField(res, PG_DIAG_SQLSTATE) : NULL;

    if (state != NULL && !ngx_segura_db_broken(conn)
        && (ngx_strncmp(state, "08", 2) == 0
            || ngx_strncmp(state, "53", 2) == 0
            || ngx_strncmp(state, "57", 2) == 0
            || ngx_strcmp(state, "25006") == 0))
    {
        /*
         * the database cannot serve now, the request was fine: too many
         * connections, a statement timeout, a shutdown under way, or a
         * server that turned read-only (a standby) under a failover
         */

        ngx_segura_api_fail(ctx, NGX_SEGURA_ERR_DB_UNAVAILABLE, NULL, NULL);

        ctx->log_level = NGX_LOG_ERR;
        (void) ngx_cpystrn((u_char *) ctx->log, (u_char *) err,
                           sizeof(ctx->log));
        return;
    }

    if (state == NULL || ngx_segura_db_broken(conn)
        || (ngx_strncmp(state, "23", 2) != 0
            && ngx_strncmp(state, "22", 2) != 0))
    {
        ngx_segura_api_fail_db(ctx, conn, err);
        return;
    }

    /*
     * the schema's constraints are the last check: a unique violation is
     * a conflict, any other integrity or data error is the client's field
     */

    constraint = PQresultErrorField(res, PG_DIAG_CONSTRAINT_NAME);
    table = PQresultErrorField(res, PG_DIAG_TABLE_NAME);
    column = PQresultErrorField(res, PG_DIAG_COLUMN_NAME);

    field = column;

    if (constraint != NULL) {
        for (c = ngx_segura_api_constraints; c->constraint; c++) {
            if (ngx_strcmp(c->constraint, constraint) == 0) {
                field = c->field;
                break;
            }
        }

        if (c->constraint == NULL && table != NULL) {
            n = ngx_strlen(table);
            len = ngx_strlen(constraint);

            if (len > n + 1 && ngx_strncmp(constraint, table, n) == 0
                && constraint[n] == '_')
            {
                (void) ngx_cpystrn((u_char *) buf,
                                   (u_char *) constraint + n + 1,
                                   sizeof(buf));
                len = ngx_strlen(buf);

                if (len > 5 && ngx_strcmp(buf + len - 5, "_fkey") == 0) {
                    buf[len - 5] = '\0';

                } else if (len > 6
                           && ngx_strcmp(buf + len - 6, "_check") == 0)
                {
                    buf[len - 6] = '\0';

                } else if (len > 4
                           && ngx_strcmp(buf + len - 4, "_key") == 0)
                {
                    buf[len - 4] = '\0';
                }

                field = buf;
            }
        }
    }

    ctx->log_level = NGX_LOG_INFO;
    (void) ngx_snprintf((u_char *) ctx->log, sizeof(ctx->log) - 1,
                        "refused by constraint \"%s\"%Z",
                        constraint ? constraint : state);

    if (ngx_strcmp(state, "23505") == 0) {
        if (field != NULL) {
            ngx_segura_api_fail_field(ctx, NGX_SEGURA_ERR_CONFLICT, field,
                                      NULL);
        } else {
            ngx_segura_api_fail(ctx, NGX_SEGURA_ERR_CONFLICT, NULL, NULL);
        }

        return;
    }

    if (field != NULL) {
        ngx_segura_api_fail_field(ctx, NGX_SEGURA_ERR_INVALID_FIELD, field,
                                  ngx_strcmp(state, "23503") == 0
                                  ? "No such id" : "Invalid value");
    } else {
        ngx_segura_api_fail(ctx, NGX_SEGURA_ERR_INVALID_FIELD, NULL, NULL);
    }
}


ngx_int_t
ngx_segura_api_query_json(ngx_segura_api_ctx_t *ctx, PGconn **conn,
    ngx_uint_t status, const char *sql, int nparams,
    const char *const *params)
{
    PGresult  *res;

    /*
     * a select that builds the whole response as one json value, so it
     * may be retried; no row or a null value is 404
     */

    res = ngx_segura_api_query_retry(ctx, conn, sql, nparams, params);
    if (res == NULL) {
        return NGX_ERROR;
    }

    if (PQntuples(res) == 0 || PQgetisnull(res, 0, 0)) {
        PQclear(res);
        ngx_segura_api_fail(ctx, NGX_SEGURA_ERR_NOT_FOUND, NULL, NULL);
        return NGX_ERROR;
    }

    return ngx_segura_api_answer(ctx, res, status);
}


ngx_int_t
ngx_segura_api_begin(ngx_segura_api_ctx_t *ctx, PGconn **conn)
{
    PGresult  *res;

    /* on a dead connection, beginning elsewhere is as good */

    res = ngx_segura_api_query_retry(ctx, conn, "begin", 0, NULL);
    if (res == NULL) {
        return NGX_ERROR;
    }

    PQclear(res);

    return NGX_OK;
}


void
ngx_segura_api_end(ngx_segura_api_ctx_t *ctx, PGconn **conn)
{
    PGresult  *res;

    /* commits when the request succeeded, else nothing it did remains */

    if (*conn == NULL || PQtransactionStatus(*conn) == PQTRANS_IDLE) {
        return;
    }

    if (ctx->err != NGX_SEGURA_ERR_OK || ctx->json == NULL
        || ctx->status >= 300)
    {
        PQclear(PQexec(*conn, "rollback"));
        return;
    }

    res = ngx_segura_api_query(ctx, conn, "commit", 0, NULL);
    if (res == NULL) {
        PQclear(PQexec(*conn, "rollback"));
        return;
    }

    PQclear(res);
}


ngx_int_t
ngx_segura_api_audit(ngx_segura_api_ctx_t *ctx, PGconn **conn,
    const char *action, const char *type, const char *id, json_t *detail)
{
    char        *d;
    char         actor[NGX_INT64_LEN + 1];
    PGresult    *res;
    const char  *params[7];

    d = detail ? json_dumps(detail, JSON_COMPACT) : NULL;

    if (ctx->me.id > 0) {
        (void) ngx_snprintf((u_char *) actor, sizeof(actor), "%L%Z",
                            ctx->me.id);
        params[0] = actor;
        params[1] = ctx->me.username;

    } else {
        params[0] = NULL;
        params[1] = NULL;
    }

    params[2] = action;
    params[3] = type;
    params[4] = id;
    params[5] = ctx->client_addr;
    params[6] = d ? d : "{}";

    res = ngx_segura_api_query(ctx, conn,
                               "insert into audit_log (actor_id, actor_name,"
                               " action, object_type, object_id,"
                               " client_addr, detail)"
                               " values ($1, $2, $3, $4, $5, left($6, 64),"
                               " $7::jsonb)",
                               7, params);
    free(d);

    if (res == NULL) {
        return NGX_ERROR;
    }

    PQclear(res);

    return NGX_OK;
}


ngx_int_t
ngx_segura_api_one(ngx_segura_api_ctx_t *ctx, PGresult *res)
{
    if (res == NULL) {
        return NGX_ERROR;
    }

    if (PQntuples(res) != 1) {
        PQclear(res);
        ngx_segura_api_fail(ctx, NGX_SEGURA_ERR_NOT_FOUND, NULL, NULL);
        return NGX_ERROR;
    }

    return NGX_OK;
}


ngx_int_t
ngx_segura_api_answer(ngx_segura_api_ctx_t *ctx, PGresult *res,
    ngx_uint_t status)
{
    /* the response is the first column of the row, built by the query */

    free(ctx->json);

    ctx->json = strdup(PQgetvalue(res, 0, 0));
    ctx->status = status;
    PQclear(res);

    if (ctx->json == NULL) {
        ngx_segura_api_fail(ctx, NGX_SEGURA_ERR_INTERNAL, NULL, NULL);
        return NGX_ERROR;
    }

    return NGX_OK;
}


void
ngx_segura_api_change(ngx_segura_api_ctx_t *ctx, PGconn **conn, int64_t id,
    const ngx_segura_api_resource_t *rs)
{
    char  idbuf[NGX_INT64_LEN + 1];

    /*
     * the methods that change a resource, administrators only: POST on
     * the collection creates, rs->update (PATCH, PUT) on an item
     * rewrites it, DELETE on an item deletes it
     */

    if (ngx_segura_api_need_admin(ctx) != NGX_OK) {
        return;
    }

    if ((ctx->method == NGX_HTTP_POST && id == 0)
        || ((ctx->method & rs->update) && id != 0))
    {
        rs->write(ctx, conn, id);
        return;
    }

    if (ctx->method != NGX_HTTP_DELETE || id == 0) {
        ngx_segura_api_fail(ctx, NGX_SEGURA_ERR_METHOD, NULL, NULL);
        return;
    }

    ngx_segura_api_id(id, idbuf);
    ngx_segura_api_delete(ctx, conn, rs->table, rs->type, idbuf);
}


ngx_int_t
ngx_segura_api_saved(ngx_segura_api_ctx_t *ctx, PGconn **conn,
    const ngx_segura_api_resource_t *rs, ngx_uint_t created, const char *id,
    json_t *body)
{
    json_t     *detail;
    ngx_int_t   rc;

    /*
     * the end of a create or an update, in its transaction: the audit row
     * names the fields sent (never their values), then the resource as it
     * is now, 201 for a create
     */

    detail = ngx_segura_api_fields(body);
    rc = ngx_segura_api_audit(ctx, conn, created ? "create" : "update",
                              rs->type, id, detail);
    json_decref(detail);

    if (rc != NGX_OK) {
        return NGX_ERROR;
    }

    return ngx_segura_api_query_json(ctx, conn, created ? 201 : 200,
                                     rs->item, 1, &id);
}


void
ngx_segura_api_delete(ngx_segura_api_ctx_t *ctx, PGconn **conn,
    const char *table, const char *type, const char *id)
{
    char        sql[128];
    PGresult   *res;

    /*
     * DELETE /api/<resource>/<id>, in one transaction with its audit row;
     * table is one of ours, never the client's
     */

    (void) ngx_snprintf((u_char *) sql, sizeof(sql),
                        "delete from %s where id = $1 returning"
                        " json_build_object('id', id, 'deleted', true)%Z",
                        table);

    if (ngx_segura_api_begin(ctx, conn) != NGX_OK) {
        return;
    }

    res = ngx_segura_api_query(ctx, conn, sql, 1, &id);

    if (ngx_segura_api_one(ctx, res) == NGX_OK
        && ngx_segura_api_answer(ctx, res, 200) == NGX_OK)
    {
        (void) ngx_segura_api_audit(ctx, conn, "delete", type, id, NULL);
    }

    ngx_segura_api_end(ctx, conn);
}


json_t *
ngx_segura_api_parse(ngx_segura_api_ctx_t *ctx, const char *const *allowed)
{
    return ngx_segura_api_parse_lists(ctx, allowed, NULL);
}


json_t *
ngx_segura_api_parse_item(ngx_segura_api_ctx_t *ctx, PGconn **conn,
    const ngx_segura_api_resource_t *rs, int64_t id)
{
    json_t             *body, *cur, *v, *c;
    const char *const  *a;
    char                idbuf[NGX_INT64_LEN + 1];

    /*
     * a client may send back what GET gave it: the read-only members (id,
     * timestamps, derived fields) are accepted when they equal the stored
     * ones and then dropped, a changed one is 422 naming it; unknown
     * members are still refused.  A create has nothing stored to match.
     */

    body = ngx_segura_api_parse_lists(ctx, rs->fields, rs->readonly);
    if (body == NULL) {
        return NULL;
    }

    cur = NULL;

    /*
     * a PUT replaces the resource: it sends every writable member (but
     * write-only secrets, which are kept when absent), so that applying it
     * member by member leaves nothing of the old state behind
     */

    if (ctx->method == NGX_HTTP_PUT && id != 0) {
        for (a = rs->whole; a != NULL && *a != NULL; a++) {
            if (json_object_get(body, *a) == NULL) {
                ngx_segura_api_fail(ctx, NGX_SEGURA_ERR_INVALID_FIELD, *a,
                                    "Required: PUT replaces the whole "
                                    "resource, use PATCH to change a part");
                goto failed;
            }
        }
    }

    for (a = rs->readonly; a != NULL && *a != NULL; a++) {
        v = json_object_get(body, *a);
        if (v == NULL) {
            continue;
        }

        if (id == 0) {
            ngx_segura_api_fail(ctx, NGX_SEGURA_ERR_INVALID_FIELD, *a,
                                "Read-only field");
            goto failed;
        }

        if (cur == NULL) {
            ngx_segura_api_id(id, idbuf);

            cur = ngx_segura_api_current(ctx, conn, rs, idbuf);
            if (cur == NULL) {
                goto failed;
            }
        }

        c = json_object_get(cur, *a);

        if (c == NULL || !json_equal(c, v)) {
            ngx_segura_api_fail(ctx, NGX_SEGURA_ERR_INVALID_FIELD, *a,
                                "Read-only field: it cannot be changed");
            goto failed;
        }

        (void) json_object_del(body, *a);
    }

    json_decref(cur);

    return body;

failed:

    json_decref(cur);
    json_decref(body);

    return NULL;
}


json_t *
ngx_segura_api_current(ngx_segura_api_ctx_t *ctx, PGconn **conn,
    const ngx_segura_api_resource_t *rs, const char *id)
{
    json_t        *cur;
    PGresult      *res;
    json_error_t   e;

    res = ngx_segura_api_query_retry(ctx, conn, rs->item, 1, &id);
    if (res == NULL) {
        return NULL;
    }

    if (PQntuples(res) != 1 || PQgetisnull(res, 0, 0)) {
        PQclear(res);
        ngx_segura_api_fail(ctx, NGX_SEGURA_ERR_NOT_FOUND, NULL, NULL);
        return NULL;
    }

    cur = json_loads(PQgetvalue(res, 0, 0), 0, &e);
    PQclear(res);

    if (cur == NULL || !json_is_object(cur)) {
        json_decref(cur);
        ngx_segura_api_fail(ctx, NGX_SEGURA_ERR_INTERNAL, NULL, NULL);
        return NULL;
    }

    return cur;
}


static json_t *
ngx_segura_api_parse_lists(ngx_segura_api_ctx_t *ctx,
    const char *const *allowed, const char *const *readonly)
{
    json_t              *obj, *v;
    const char          *key;
    json_error_t         e;
    const char *const   *a;

    if (ctx->body == NULL || ctx->body_len == 0) {
        ngx_segura_api_fail(ctx, NGX_SEGURA_ERR_INVALID_JSON, NULL,
                            "The request needs a JSON object body");
        return NULL;
    }

    obj = json_loadb(ctx->body, ctx->body_len, JSON_REJECT_DUPLICATES, &e);

    if (obj == NULL) {
        ngx_segura_api_fail(ctx, NGX_SEGURA_ERR_INVALID_JSON, NULL, NULL);
        return NULL;
    }

    if (!json_is_object(obj)) {
        json_decref(obj);
        ngx_segura_api_fail(ctx, NGX_SEGURA_ERR_INVALID_JSON, NULL,
                            "The request body must be a JSON object");
        return NULL;
    }

    /* unknown members are refused: a typo must not be silently ignored */

    json_object_foreach(obj, key, v) {
        for (a = allowed; *a; a++) {
            if (ngx_strcmp(*a, key) == 0) {
                break;
            }
        }

        if (*a == NULL && readonly != NULL) {
            for (a = readonly; *a; a++) {
                if (ngx_strcmp(*a, key) == 0) {
                    break;
                }
            }
        }

        if (*a == NULL) {
            ngx_segura_api_fail_field(ctx, NGX_SEGURA_ERR_INVALID_FIELD, key,
                                      "Unknown field");
            json_decref(obj);
            return NULL;
        }
    }

    return obj;
}


ngx_int_t
ngx_segura_api_get_string(ngx_segura_api_ctx_t *ctx, json_t *obj,
    const char *name, size_t min, size_t max, const char **value)
{
    json_t      *v;
    size_t       len;
    const char  *s;

    v = json_object_get(obj, name);
    if (v == NULL) {
        return NGX_SEGURA_API_ABSENT;
    }

    if (!json_is_string(v)) {
        ngx_segura_api_fail(ctx, NGX_SEGURA_ERR_INVALID_FIELD, name,
                            "Must be a string");
        return NGX_ERROR;
    }

    s = json_string_value(v);
    len = json_string_length(v);

    if (ngx_strlen(s) != len) {
        ngx_segura_api_fail(ctx, NGX_SEGURA_ERR_INVALID_FIELD, name,
                            "Must not contain NUL");
        return NGX_ERROR;
    }

    if (len < min || len > max) {
        ngx_segura_api_fail(ctx, NGX_SEGURA_ERR_INVALID_FIELD, name,
                            len < min ? "Too short" : "Too long");
        return NGX_ERROR;
    }

    *value = s;

    return NGX_OK;
}


ngx_int_t
ngx_segura_api_get_bool(ngx_segura_api_ctx_t *ctx, json_t *obj,
    const char *name, const char **value)
{
    json_t  *v;

    v = json_object_get(obj, name);
    if (v == NULL) {
        return NGX_SEGURA_API_ABSENT;
    }

    if (!json_is_boolean(v)) {
        ngx_segura_api_fail(ctx, NGX_SEGURA_ERR_INVALID_FIELD, name,
                            "Must be true or false");
        return NGX_ERROR;
    }

    *value = json_is_true(v) ? "t" : "f";

    return NGX_OK;
}


ngx_int_t
ngx_segura_api_get_int(ngx_segura_api_ctx_t *ctx, json_t *obj,
    const char *name, int64_t min, int64_t max, char *buf)
{
    json_t     *v;
    json_int_t  n;

    /* buf holds NGX_INT64_LEN + 1 bytes */

    v = json_object_get(obj, name);
    if (v == NULL) {
        return NGX_SEGURA_API_ABSENT;
    }

    if (!json_is_integer(v)) {
        ngx_segura_api_fail(ctx, NGX_SEGURA_ERR_INVALID_FIELD, name,
                            "Must be an integer");
        return NGX_ERROR;
    }

    n = json_integer_value(v);

    if (n < min || n > max) {
        ngx_segura_api_fail(ctx, NGX_SEGURA_ERR_INVALID_FIELD, name,
                            "Out of range");
        return NGX_ERROR;
    }

    (void) ngx_snprintf((u_char *) buf, NGX_INT64_LEN + 1, "%L%Z",
                        (int64_t) n);

    return NGX_OK;
}


ngx_int_t
ngx_segura_api_get_ids(ngx_segura_api_ctx_t *ctx, json_t *obj,
    const char *name, char **value)
{
    json_t  *v, *e;
    size_t   i;

    /* an array of positive integers, handed to SQL as a JSON array text;
     * *value is malloc()ed, the caller frees it */

    v = json_object_get(obj, name);
    if (v == NULL) {
        return NGX_SEGURA_API_ABSENT;
    }

    if (!json_is_array(v)) {
        goto invalid;
    }

    json_array_foreach(v, i, e) {
        if (!json_is_integer(e) || json_integer_value(e) <= 0) {
            goto invalid;
        }
    }

    *value = json_dumps(v, JSON_COMPACT);
    if (*value == NULL) {
        ngx_segura_api_fail(ctx, NGX_SEGURA_ERR_INTERNAL, NULL, NULL);
        return NGX_ERROR;
    }

    return NGX_OK;

invalid:

    ngx_segura_api_fail(ctx, NGX_SEGURA_ERR_INVALID_FIELD, name,
                        "Must be an array of ids");
    return NGX_ERROR;
}


ngx_int_t
ngx_segura_api_get_tags(ngx_segura_api_ctx_t *ctx, json_t *obj,
    const char *name, char **value)
{
    json_t      *v, *e;
    size_t       i, len;
    const char  *s;

    v = json_object_get(obj, name);
    if (v == NULL) {
        return NGX_SEGURA_API_ABSENT;
    }

    if (!json_is_array(v) || json_array_size(v) > 64) {
        goto invalid;
    }

    json_array_foreach(v, i, e) {
        if (!json_is_string(e)) {
            goto invalid;
        }

        s = json_string_value(e);
        len = json_string_length(e);

        if (len == 0 || len > 64 || ngx_strlen(s) != len) {
            goto invalid;
        }
    }

    *value = json_dumps(v, JSON_COMPACT);
    if (*value == NULL) {
        ngx_segura_api_fail(ctx, NGX_SEGURA_ERR_INTERNAL, NULL, NULL);
        return NGX_ERROR;
    }

    return NGX_OK;

invalid:

    ngx_segura_api_fail(ctx, NGX_SEGURA_ERR_INVALID_FIELD, name,
                        "Must be an array of at most 64 strings "
                        "of 1 to 64 characters");
    return NGX_ERROR;
}


ngx_int_t
ngx_segura_api_get_status(ngx_segura_api_ctx_t *ctx, json_t *obj,
    const char **value)
{
    ngx_int_t  rc;

    rc = ngx_segura_api_get_string(ctx, obj, "status", 1, 16, value);

    if (rc == NGX_OK
        && ngx_strcmp(*value, "active") != 0
        && ngx_strcmp(*value, "inactive") != 0)
    {
        ngx_segura_api_fail(ctx, NGX_SEGURA_ERR_INVALID_FIELD, "status",
                            "Must be \"active\" or \"inactive\"");
        return NGX_ERROR;
    }

    return rc;
}


void
ngx_segura_api_wipe_string(json_t *obj, const char *name)
{
    json_t  *v;

    /* jansson frees without wiping: clear a secret's bytes first */

    v = json_object_get(obj, name);

    if (v != NULL && json_is_string(v)) {
        OPENSSL_cleanse((char *) json_string_value(v), json_string_length(v));
    }
}


ngx_int_t
ngx_segura_api_arg(ngx_segura_api_ctx_t *ctx, const char *name, char *buf,
    size_t len)
{
    u_char  *p, *last, *v, *dst;
    size_t   n;

    /* the first "name=value" of the query, percent-decoded into buf */

    n = ngx_strlen(name);
    p = (u_char *) ctx->args;
    last = p + ngx_strlen(ctx->args);

    while (p < last) {
        v = (u_char *) ngx_strchr(p, '&');
        if (v == NULL) {
            v = last;
        }

        if ((size_t) (v - p) > n && ngx_strncmp(p, name, n) == 0
            && p[n] == '=')
        {
            p += n + 1;

            if ((size_t) (v - p) >= len) {
                return NGX_ERROR;
            }

            dst = (u_char *) buf;
            ngx_unescape_uri(&dst, &p, v - p, NGX_UNESCAPE_URI);
            *dst = '\0';

            if (ngx_strlen(buf) != (size_t) (dst - (u_char *) buf)) {
                return NGX_ERROR;
            }

            return NGX_OK;
        }

        p = v + 1;
    }

    return NGX_DECLINED;
}


ngx_int_t
ngx_segura_api_filter(ngx_segura_api_ctx_t *ctx, ngx_segura_api_filter_t *f,
    const char **params)
{
    /* the filters of a list: absent is NULL (no filter), bad is a 422 */

    if (ngx_segura_api_filter_arg(ctx, "status", f->status,
                                  sizeof(f->status), &params[0])
        != NGX_OK
        || ngx_segura_api_filter_arg(ctx, "tag", f->tag, sizeof(f->tag),
                                     &params[1])
           != NGX_OK
        || ngx_segura_api_filter_arg(ctx, "q", f->q, sizeof(f->q),
                                     &params[2])
           != NGX_OK)
    {
        return NGX_ERROR;
    }

    return NGX_OK;
}


static ngx_int_t
ngx_segura_api_filter_arg(ngx_segura_api_ctx_t *ctx, const char *name,
    char *buf, size_t len, const char **param)
{
    switch (ngx_segura_api_arg(ctx, name, buf, len)) {

    case NGX_OK:
        *param = buf;
        return NGX_OK;

    case NGX_DECLINED:
        *param = NULL;
        return NGX_OK;

    default:
        ngx_segura_api_fail(ctx, NGX_SEGURA_ERR_INVALID_FIELD, name,
                            "Too long, or not text");
        return NGX_ERROR;
    }
}


json_t *
ngx_segura_api_fields(json_t *body)
{
    json_t      *a, *v;
    const char  *key;

    /* the names of the fields a request set, for the audit (no values) */

    a = json_array();
    if (a == NULL) {
        return NULL;
    }

    json_object_foreach(body, key, v) {
        (void) json_array_append_new(a, json_string(key));
    }

    return json_pack("{s:o}", "fields", a);
}


void
ngx_segura_api_id(int64_t id, char *buf)
{
    /* buf holds NGX_INT64_LEN + 1 bytes */
    (void) ngx_snprintf((u_char *) buf, NGX_INT64_LEN + 1, "%L%Z", id);
}
