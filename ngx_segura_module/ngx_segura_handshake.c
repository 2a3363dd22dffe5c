
/*
 * Copyright (C) ngx_segura_module authors
 */


/*
 * The /session handshake: the WebSocket upgrade request, its identity,
 * Origin and parameters, and the grant check, then the 101 that hands
 * the connection to the relay (ngx_segura_relay.c) and the checked
 * session to a new terminal (ngx_segura_terminal.c).  Also the request's
 * variables ($segura_session_id and others, for the access log).
 *
 *   CHECK    a pool thread: identity, grant, key and device rows, key
 *            decryption and import, written into the terminal that
 *            nobody else has yet; the request is blocked meanwhile
 *            (r->main->blocked), so nginx cannot free it under the task
 *   then     refused: an HTTP error with a JSON body; accepted: 101, and
 *            the relay and the terminal take over
 *
 * GET /session?watch=<session id> is the same request for a watcher: the
 * pool thread checks the identity (ngx_segura_auth_may_audit()) and the
 * session's row and writes the audit row; the 101 hands the connection
 * to a read-only relay attached to the terminal of this worker.
 *
 * Event loop only, but for ngx_segura_handshake_check() and what it
 * calls, which run in the pool thread.
 */


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>
#include "ngx_segura.h"
#include "ngx_segura_api.h"
#include "ngx_segura_auth.h"
#include "ngx_segura_db.h"
#include "ngx_segura_handshake.h"
#include "ngx_segura_metrics.h"
#include "ngx_segura_outbox.h"
#include "ngx_segura_relay.h"
#include "ngx_segura_resume.h"
#include "ngx_segura_sealed.h"
#include "ngx_segura_terminal.h"
#include "ngx_segura_watch.h"
#include "ngx_segura_ws.h"

#include <openssl/crypto.h>


typedef struct {
    ngx_segura_relay_t             relay;     /* first: see relay.h */
    ngx_http_request_t            *r;
    ngx_connection_t              *c;
    ngx_http_segura_main_conf_t   *smcf;
    ngx_http_segura_loc_conf_t    *slcf;
    ngx_segura_terminal_t         *t;         /* ours until started */
    ngx_segura_identity_t         *identity;  /* t's, or watcher's */
    ngx_segura_identity_t          watcher;
    char                           watch[NGX_SEGURA_LIVE_ID_LEN];
    char                           owner[65];     /* the watched's */
    char                           device[129];
    unsigned                       cols;
    unsigned                       rows;
    char                          *client_addr;

    /* the request, copied for the pool thread */
    int64_t                        key_id;
    int64_t                        device_id;
    u_char                         token[NGX_SEGURA_TOKEN_LEN];
    char                          *delegated;
    char                          *wskey;

    /* set by the pool thread */
    ngx_segura_err_e               err;
    const char                    *reason;    /* grant reason, static */
    ngx_uint_t                     log_level;
    char                           log[NGX_SEGURA_ERRLEN];

    /* for the variables, which outlive the terminal */
    char                           username[65];

    /* ?resume=<token>&received=<n>: re-attach rather than open */
    char                          *resume;
    off_t                          received;

    ngx_event_t                    watchdog;

    unsigned                       has_token:1;
    unsigned                       checking:1;
    unsigned                       watching:1;
    unsigned                       recorded:1;
    unsigned                       locked:1;
} ngx_segura_handshake_t;


typedef struct {
    ngx_segura_handshake_t        *s;
} ngx_segura_handshake_task_t;


static const char *ngx_segura_handshake_upgrade_ok(ngx_http_request_t *r,
    ngx_str_t *key);
static ngx_int_t ngx_segura_handshake_arg(ngx_http_request_t *r, char *name,
    int64_t min, int64_t max, int64_t dflt, int64_t *value);
static ngx_int_t ngx_segura_handshake_watch_arg(ngx_http_request_t *r,
    char *id);
static ngx_int_t ngx_segura_handshake_post(ngx_segura_handshake_t *s);
static void ngx_segura_handshake_watchdog(ngx_event_t *ev);
static void ngx_segura_handshake_check(void *data, ngx_log_t *log);
static void ngx_segura_handshake_check_watch(ngx_segura_handshake_t *s,
    PGconn **conn);
static void ngx_segura_handshake_check_done(ngx_event_t *ev);
static void ngx_segura_handshake_watch_done(ngx_segura_handshake_t *s);
static ngx_int_t ngx_segura_handshake_accept(ngx_segura_handshake_t *s);
static ngx_int_t ngx_segura_handshake_resume(ngx_segura_handshake_t *s);
static void ngx_segura_handshake_forwarded(ngx_http_request_t *r,
    ngx_int_t rc);
static void ngx_segura_handshake_close(ngx_segura_handshake_t *s);
static void ngx_segura_handshake_cleanup(void *data);
static ngx_int_t ngx_segura_handshake_variable(ngx_http_request_t *r,
    ngx_http_variable_value_t *v, uintptr_t data);


static ngx_http_variable_t  ngx_segura_handshake_vars[] = {

    { ngx_string("segura_session_id"), NULL, ngx_segura_handshake_variable,
      0, NGX_HTTP_VAR_NOCACHEABLE, 0 },

    { ngx_string("segura_user"), NULL, ngx_segura_handshake_variable,
      1, NGX_HTTP_VAR_NOCACHEABLE, 0 },

    { ngx_string("segura_key"), NULL, ngx_segura_handshake_variable,
      2, NGX_HTTP_VAR_NOCACHEABLE, 0 },

    { ngx_string("segura_device"), NULL, ngx_segura_handshake_variable,
      3, NGX_HTTP_VAR_NOCACHEABLE, 0 },

      ngx_http_null_variable
};


ngx_int_t
ngx_segura_handshake_handler(ngx_http_request_t *r)
{
    int64_t                       key_id, device_id, cols, rows;
    ngx_int_t                     rc;
    ngx_str_t                     wskey, cookie, value;
    const char                   *bad;
    ngx_pool_cleanup_t           *cln;
    ngx_segura_terminal_t        *t;
    ngx_http_core_loc_conf_t     *clcf;
    char                         *resume;
    off_t                         resume_received;
    ngx_segura_handshake_t       *s;
    ngx_http_segura_loc_conf_t   *slcf;

    ngx_str_null(&wskey);
    resume = NULL;
    resume_received = 0;

    slcf = ngx_http_get_module_loc_conf(r, ngx_http_segura_module);

    if (ngx_http_discard_request_body(r) != NGX_OK) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    bad = ngx_segura_handshake_upgrade_ok(r, &wskey);

    if (bad != NULL) {
        ngx_log_error(NGX_LOG_INFO, r->connection->log, 0,
                      "segura session: not a WebSocket upgrade: %s", bad);
        return ngx_http_segura_send_error(r, NGX_SEGURA_ERR_BAD_REQUEST,
                                          NULL, bad);
    }

    if (ngx_http_segura_origin_ok(r, slcf) != NGX_OK) {
        ngx_log_error(NGX_LOG_INFO, r->connection->log, 0,
                      "segura session: foreign origin refused");
        return ngx_http_segura_send_error(r, NGX_SEGURA_ERR_FOREIGN_ORIGIN,
                                          NULL, NULL);
    }

    s = ngx_pcalloc(r->pool, sizeof(ngx_segura_handshake_t));
    if (s == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    rc = ngx_segura_handshake_watch_arg(r, s->watch);

    if (rc == NGX_ERROR) {
        return ngx_http_segura_send_error(r, NGX_SEGURA_ERR_BAD_REQUEST,
                                          "watch",
                                          "watch=<session id>: a uuid");
    }

    if (rc == NGX_OK) {
        s->watching = 1;
        key_id = 0;
        device_id = 0;
        cols = 0;
        rows = 0;
        goto checked;
    }

    if (ngx_segura_handshake_arg(r, "key", 1, NGX_MAX_OFF_T_VALUE, -1,
                                 &key_id) != NGX_OK)
    {
        return ngx_http_segura_send_error(r, NGX_SEGURA_ERR_BAD_REQUEST,
                                          "key", "Give the key id: key=<n>");
    }

    if (ngx_segura_handshake_arg(r, "device", 1, NGX_MAX_OFF_T_VALUE, -1,
                                 &device_id) != NGX_OK)
    {
        return ngx_http_segura_send_error(r, NGX_SEGURA_ERR_BAD_REQUEST,
                                          "device",
                                          "Give the device id: device=<n>");
    }

    if (ngx_segura_handshake_arg(r, "cols", 1, NGX_SEGURA_RELAY_MAX_DIM, 80,
                                 &cols) != NGX_OK)
    {
        return ngx_http_segura_send_error(r, NGX_SEGURA_ERR_BAD_REQUEST,
                                          "cols", "cols must be 1-1000");
    }

    if (ngx_segura_handshake_arg(r, "rows", 1, NGX_SEGURA_RELAY_MAX_DIM, 24,
                                 &rows) != NGX_OK)
    {
        return ngx_http_segura_send_error(r, NGX_SEGURA_ERR_BAD_REQUEST,
                                          "rows", "rows must be 1-1000");
    }

    if (ngx_http_arg(r, (u_char *) "resume", 6, &value) == NGX_OK) {
        int64_t  received;

        if (value.len == 0 || value.len >= NGX_SEGURA_RESUME_LEN
            || ngx_segura_handshake_arg(r, "received", 0, NGX_MAX_OFF_T_VALUE,
                                        0, &received)
               != NGX_OK)
        {
            return ngx_http_segura_send_error(r, NGX_SEGURA_ERR_BAD_REQUEST,
                                              "resume",
                                              "Give the resume token of the "
                                              "connected event and the "
                                              "output bytes received: "
                                              "resume=<token>&received=<n>");
        }

        resume = ngx_pnalloc(r->pool, value.len + 1);
        if (resume == NULL) {
            return NGX_HTTP_INTERNAL_SERVER_ERROR;
        }

        (void) ngx_cpystrn((u_char *) resume, value.data, value.len + 1);
        resume_received = received;
    }

    if (ngx_segura_outbox_full()) {

        /* the audit of a new session could not be written in time */

        ngx_log_error(NGX_LOG_ERR, r->connection->log, 0,
                      "segura session: refused, %uz writes wait for the "
                      "database", ngx_segura_outbox_pending());
        return ngx_http_segura_send_error(r, NGX_SEGURA_ERR_DB_UNAVAILABLE,
                                          NULL, NULL);
    }

checked:

    s->r = r;
    s->c = r->connection;
    s->smcf = ngx_http_get_module_main_conf(r, ngx_http_segura_module);
    s->slcf = slcf;
    s->key_id = key_id;
    s->device_id = device_id;
    s->resume = resume;
    s->received = resume_received;

    /* from here the cleanup frees the terminal on every path */

    cln = ngx_pool_cleanup_add(r->pool, 0);
    if (cln == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    if (!s->watching) {
        s->t = ngx_segura_terminal_create(r->connection->log);
        if (s->t == NULL) {
            return NGX_HTTP_INTERNAL_SERVER_ERROR;
        }
    }

    cln->handler = ngx_segura_handshake_cleanup;
    cln->data = s;

    ngx_http_set_ctx(r, s, ngx_http_segura_module);

    s->relay.watching = s->watching;

    if (ngx_segura_relay_init(&s->relay, r) != NGX_OK) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    if (s->watching) {
        s->identity = &s->watcher;
        goto identity;
    }

    t = s->t;
    s->identity = &t->identity;

    clcf = ngx_http_get_module_loc_conf(r, ngx_http_core_module);

    t->smcf = s->smcf;
    t->slcf = slcf;
    t->resolver = clcf->resolver;
    t->resolver_timeout = clcf->resolver_timeout;
    t->requested = ngx_current_msec;
    t->key_id = key_id;
    t->device_id = device_id;
    t->ssh.cols = (unsigned) cols;
    t->ssh.rows = (unsigned) rows;

    /* a grant change heard after this point makes the terminal re-check */
    t->generation = ngx_segura_watch_generation();

    if (slcf->user) {
        if (ngx_http_complex_value(r, slcf->user, &value) != NGX_OK) {
            return NGX_HTTP_INTERNAL_SERVER_ERROR;
        }

        if (value.len) {
            s->delegated = ngx_http_segura_cstr(r->pool, &value);
            if (s->delegated == NULL) {
                return NGX_HTTP_INTERNAL_SERVER_ERROR;
            }
        }
    }

identity:

    if (slcf->user && s->watching) {
        if (ngx_http_complex_value(r, slcf->user, &value) != NGX_OK) {
            return NGX_HTTP_INTERNAL_SERVER_ERROR;
        }

        if (value.len) {
            s->delegated = ngx_http_segura_cstr(r->pool, &value);
            if (s->delegated == NULL) {
                return NGX_HTTP_INTERNAL_SERVER_ERROR;
            }
        }
    }

    if (s->delegated == NULL) {
        if (ngx_http_segura_get_cookie(r, &cookie) == NGX_OK
            && ngx_http_segura_decode_token(&cookie, s->token) == NGX_OK)
        {
            s->has_token = 1;

        } else {
            return ngx_http_segura_send_error(r,
                                              NGX_SEGURA_ERR_UNAUTHENTICATED,
                                              NULL, NULL);
        }
    }

    /* the accept value is computed after the check: keep the key */

    s->wskey = ngx_http_segura_cstr(r->pool, &wskey);
    s->client_addr = ngx_http_segura_cstr(r->pool,
                                          &r->connection->addr_text);

    if (s->wskey == NULL || s->client_addr == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    if (!s->watching) {
        t = s->t;

        t->client_addr = ngx_http_segura_cstr(t->pool,
                                              &r->connection->addr_text);
        value = ((ngx_cycle_t *) ngx_cycle)->hostname;
        t->node = ngx_http_segura_cstr(t->pool, &value);

        if (t->client_addr == NULL || t->node == NULL) {
            return NGX_HTTP_INTERNAL_SERVER_ERROR;
        }
    }

    r->connection->log->action = "checking the grant";

    if (ngx_segura_handshake_post(s) != NGX_OK) {
        return ngx_http_segura_send_error(r, NGX_SEGURA_ERR_INTERNAL, NULL,
                                          "The server is overloaded");
    }

    /* the relay's end, or a refusal, releases this reference */

    r->main->count++;

    return NGX_DONE;
}


static const char *
ngx_segura_handshake_upgrade_ok(ngx_http_request_t *r, ngx_str_t *key)
{
    ngx_table_elt_t  *h;

    /* returns NULL for a valid upgrade, else what is wrong with it */

    if (r->method != NGX_HTTP_GET) {
        return "A WebSocket upgrade is a GET request";
    }

    if (r->http_version != NGX_HTTP_VERSION_11) {
        return "A WebSocket upgrade needs HTTP/1.1";
    }

    h = r->headers_in.upgrade;

    if (h == NULL
        || !ngx_segura_ws_token_list_has(h->value.data, h->value.len,
                                         "websocket"))
    {
        return "Upgrade: websocket is missing";
    }

    /* nginx keeps only the connection type, not the header itself */

    h = ngx_http_segura_find_header(r, "connection");

    if (h == NULL
        || !ngx_segura_ws_token_list_has(h->value.data, h->value.len,
                                         "upgrade"))
    {
        return "Connection: upgrade is missing";
    }

    h = ngx_http_segura_find_header(r, "sec-websocket-version");

    if (h == NULL || h->value.len != 2
        || ngx_strncmp(h->value.data, "13", 2) != 0)
    {
        /* RFC 6455 4.4: say which version we speak */

        if (ngx_http_segura_add_header(r, "Sec-WebSocket-Version", "13")
            != NGX_OK)
        {
            return "Sec-WebSocket-Version must be 13";
        }

        return "Sec-WebSocket-Version must be 13";
    }

    h = ngx_http_segura_find_header(r, "sec-websocket-key");

    if (h == NULL
        || !ngx_segura_ws_key_valid(h->value.data, h->value.len))
    {
        return "Sec-WebSocket-Key is missing or invalid";
    }

    *key = h->value;

    return NULL;
}


static ngx_int_t
ngx_segura_handshake_arg(ngx_http_request_t *r, char *name, int64_t min,
    int64_t max, int64_t dflt, int64_t *value)
{
    ngx_str_t  arg;
    ngx_int_t  n;

    if (ngx_http_arg(r, (u_char *) name, ngx_strlen(name), &arg) != NGX_OK) {
        if (dflt < 0) {
            return NGX_ERROR;
        }

        *value = dflt;
        return NGX_OK;
    }

    /* digits only, no sign, no leading zeros games beyond 18 digits */

    if (arg.len == 0 || arg.len > 18) {
        return NGX_ERROR;
    }

    n = ngx_atoof(arg.data, arg.len);

    if (n == NGX_ERROR || n < min || n > max) {
        return NGX_ERROR;
    }

    *value = n;

    return NGX_OK;
}


/* NGX_OK: watch=<uuid> into id, NGX_DECLINED: none, NGX_ERROR: bad */

static ngx_int_t
ngx_segura_handshake_watch_arg(ngx_http_request_t *r, char *id)
{
    ngx_str_t   arg;
    ngx_uint_t  i;

    if (ngx_http_arg(r, (u_char *) "watch", 5, &arg) != NGX_OK) {
        return NGX_DECLINED;
    }

    if (arg.len != 36) {
        return NGX_ERROR;
    }

    for (i = 0; i < 36; i++) {
        if (i == 8 || i == 13 || i == 18 || i == 23) {
            if (arg.data[i] != '-') {
                return NGX_ERROR;
            }

            continue;
        }

        if (!((arg.data[i] >= '0' && arg.data[i] <= '9')
              || (arg.data[i] >= 'a' && arg.data[i] <= 'f')))
        {
            return NGX_ERROR;
        }
    }

    (void) ngx_cpystrn((u_char *) id, arg.data, 37);

    return NGX_OK;
}


static ngx_int_t
ngx_segura_handshake_post(ngx_segura_handshake_t *s)
{
    ngx_thread_task_t            *task;
    ngx_segura_handshake_task_t  *ctx;

    task = ngx_thread_task_alloc(s->r->pool,
                                 sizeof(ngx_segura_handshake_task_t));
    if (task == NULL) {
        return NGX_ERROR;
    }

    ctx = task->ctx;
    ctx->s = s;

    task->handler = ngx_segura_handshake_check;
    task->event.data = s;
    task->event.handler = ngx_segura_handshake_check_done;

    ngx_segura_metrics_task(NGX_SEGURA_METRIC_TASK_SESSION_CHECK, 1);

    if (ngx_thread_task_post(s->smcf->thread_pool, task) != NGX_OK) {
        ngx_segura_metrics_task(NGX_SEGURA_METRIC_TASK_SESSION_CHECK, -1);
        return NGX_ERROR;
    }

    /* from here the pool thread owns the handshake until check_done */

    s->r->main->blocked++;
    s->checking = 1;

    /*
     * the watchdog also keeps a gracefully exiting worker alive until the
     * task is back: nginx waits for timers, not for thread tasks
     */

    s->watchdog.handler = ngx_segura_handshake_watchdog;
    s->watchdog.data = s;
    s->watchdog.log = s->c->log;

    ngx_add_timer(&s->watchdog, s->slcf->connect_timeout + 60000);

    return NGX_OK;
}


static void
ngx_segura_handshake_watchdog(ngx_event_t *ev)
{
    ngx_segura_handshake_t *s = ev->data;

    /*
     * every blocking call of the task has its own timeout (libpq connect
     * and statement timeouts, the pool's deadline); past all of them is
     * a bug
     */

    ngx_log_error(NGX_LOG_ALERT, s->c->log, 0,
                  "segura session: the grant check has not finished");

    ngx_add_timer(&s->watchdog, 10000);
}


/* CHECK, pool thread */

static void
ngx_segura_handshake_check(void *data, ngx_log_t *log)
{
    ngx_segura_handshake_task_t *ctx = data;

    char                    *v, id[NGX_INT64_LEN + 1],
                            key[NGX_INT64_LEN + 1], dev[NGX_INT64_LEN + 1];
    PGconn                  *conn;
    PGresult                *res;
    const char              *params[3];
    ngx_segura_err_e         rc;
    ngx_segura_terminal_t   *t;
    ngx_segura_handshake_t  *s;

    s = ctx->s;
    t = s->t;

    conn = ngx_segura_db_acquire(s->smcf->db, s->log, sizeof(s->log));

    if (conn == NULL) {
        s->err = NGX_SEGURA_ERR_DB_UNAVAILABLE;
        s->log_level = NGX_LOG_ERR;
        return;
    }

    rc = ngx_segura_auth_identify(s->smcf->db, &conn,
                                  s->has_token ? s->token : NULL,
                                  s->delegated, s->slcf->login_idle,
                                  s->identity, s->log, sizeof(s->log));

    OPENSSL_cleanse(s->token, sizeof(s->token));

    if (rc != NGX_SEGURA_ERR_OK) {
        s->err = rc;

        if (rc == NGX_SEGURA_ERR_DB_UNAVAILABLE
            || rc == NGX_SEGURA_ERR_INTERNAL)
        {
            s->log_level = NGX_LOG_ERR;
        }

        goto done;
    }

    if (s->watching) {
        ngx_segura_handshake_check_watch(s, &conn);
        goto done;
    }

    (void) ngx_snprintf((u_char *) id, sizeof(id), "%L%Z", t->identity.id);
    (void) ngx_snprintf((u_char *) key, sizeof(key), "%L%Z", s->key_id);
    (void) ngx_snprintf((u_char *) dev, sizeof(dev), "%L%Z", s->device_id);

    params[0] = id;
    params[1] = key;
    params[2] = dev;

    /* the grant and everything the session needs, in one round trip */

    res = ngx_segura_db_query_retry(s->smcf->db, &conn,
              "select segura_grant_check($1, $2, $3),"
              " k.name, k.username,"
              " coalesce(e.private_key_enc, k.private_key_enc),"
              " case when e.key_id is null then k.passphrase_enc"
              "  else e.passphrase_enc end,"
              " d.name, d.address, d.port, d.host_key,"
              " d.host_key_fingerprint, coalesce(e.key_type, k.key_type),"
              " case when e.key_id is null then k.bits else e.bits end"
              " from (select 1) one"
              " left join ssh_keys k on k.id = $2"
              " left join devices d on d.id = $3"
              /* the version of the key this device uses (a rotation) */
              " left join key_device_keys e on e.key_id = $2"
              "  and e.device_id = $3",
              3, params, s->log, sizeof(s->log));

    if (res == NULL || PQresultStatus(res) != PGRES_TUPLES_OK
        || PQntuples(res) != 1)
    {
        PQclear(res);
        s->err = ngx_segura_db_broken(conn) ? NGX_SEGURA_ERR_DB_UNAVAILABLE
                                            : NGX_SEGURA_ERR_INTERNAL;
        s->log_level = NGX_LOG_ERR;
        goto done;
    }

    v = PQgetvalue(res, 0, 0);

    if (ngx_strcmp(v, "ok") != 0) {

        /* the reasons are a closed set: keep a static copy */

        static const char  *reasons[] = {
            "unknown_user", "user_inactive", "unknown_key", "unknown_device",
            "key_inactive", "device_inactive", "key_not_associated",
            "no_group", "no_use_credentials", "no_access_devices",
            "no_remote_session", "key_not_granted", "device_not_granted",
            "not_granted_together", NULL
        };

        const char  **p;

        s->reason = "not_granted";

        for (p = reasons; *p != NULL; p++) {
            if (ngx_strcmp(v, *p) == 0) {
                s->reason = *p;
                break;
            }
        }

        if (ngx_strcmp(s->reason, "unknown_key") == 0
            || ngx_strcmp(s->reason, "unknown_device") == 0)
        {
            s->err = NGX_SEGURA_ERR_NOT_FOUND;

        } else if (ngx_strcmp(s->reason, "unknown_user") == 0
                   || ngx_strcmp(s->reason, "user_inactive") == 0)
        {
            s->err = NGX_SEGURA_ERR_UNAUTHENTICATED;

        } else {
            s->err = NGX_SEGURA_ERR_FORBIDDEN;
        }

        PQclear(res);
        goto done;
    }

    (void) ngx_cpystrn((u_char *) t->key_name,
                       (u_char *) PQgetvalue(res, 0, 1),
                       sizeof(t->key_name));
    (void) ngx_cpystrn((u_char *) t->username,
                       (u_char *) PQgetvalue(res, 0, 2),
                       sizeof(t->username));
    (void) ngx_cpystrn((u_char *) t->device_name,
                       (u_char *) PQgetvalue(res, 0, 5),
                       sizeof(t->device_name));
    (void) ngx_cpystrn((u_char *) t->device_address,
                       (u_char *) PQgetvalue(res, 0, 6),
                       sizeof(t->device_address));

    t->port = ngx_atoi((u_char *) PQgetvalue(res, 0, 7),
                       ngx_strlen(PQgetvalue(res, 0, 7)));

    (void) ngx_cpystrn((u_char *) t->key_type,
                       (u_char *) PQgetvalue(res, 0, 10),
                       sizeof(t->key_type));

    if (ngx_strcmp(t->key_type, "ssh-rsa") == 0 && !PQgetisnull(res, 0, 11)) {
        t->ssh.rsa_bits = ngx_atoi((u_char *) PQgetvalue(res, 0, 11),
                                   ngx_strlen(PQgetvalue(res, 0, 11)));
    }

    if (!PQgetisnull(res, 0, 8)) {
        (void) ngx_cpystrn((u_char *) t->pinned,
                           (u_char *) PQgetvalue(res, 0, 8),
                           sizeof(t->pinned));
        (void) ngx_cpystrn((u_char *) t->pinned_fp,
                           (u_char *) PQgetvalue(res, 0, 9),
                           sizeof(t->pinned_fp));

        /* "<type> <base64>": the type selects the host key algorithms */

        v = ngx_strchr(t->pinned, ' ');
        if (v != NULL && (size_t) (v - t->pinned) < sizeof(t->pinned_type)) {
            ngx_memcpy(t->pinned_type, t->pinned, v - t->pinned);
            t->ssh.pinned_type = t->pinned_type;
        }
    }

    if (s->resume != NULL) {
        /* the shell is open already: its key is not needed again */
        PQclear(res);
        goto done;
    }

    /*
     * the private key and the passphrase exist in plain text only between
     * the vault and libssh
     */

    if (ngx_segura_sealed_key(s->smcf, s->key_id, PQgetvalue(res, 0, 3),
                              PQgetisnull(res, 0, 4) ? NULL
                                                     : PQgetvalue(res, 0, 4),
                              &t->ssh.key, s->log, sizeof(s->log))
        != NGX_OK)
    {
        s->err = NGX_SEGURA_ERR_OK;
        t->ssh.err = NGX_SEGURA_WS_ERR_KEY_UNUSABLE;
        s->log_level = NGX_LOG_ERR;
    }

    PQclear(res);

done:

    ngx_segura_db_release(s->smcf->db, conn);
}


/* a watcher, pool thread: may it, is the session live, the audit row */

static void
ngx_segura_handshake_check_watch(ngx_segura_handshake_t *s, PGconn **conn)
{
    char        me[NGX_INT64_LEN + 1];
    PGresult   *res;
    const char *params[4];

    if (!ngx_segura_auth_may_audit(s->identity)) {
        s->err = NGX_SEGURA_ERR_FORBIDDEN;
        s->reason = "not_auditor";
        return;
    }

    (void) ngx_snprintf((u_char *) me, sizeof(me), "%L%Z", s->identity->id);

    params[0] = s->watch;
    params[1] = me;
    params[2] = s->identity->username;
    params[3] = s->client_addr;

    res = ngx_segura_db_query_retry(s->smcf->db, conn,
              "with s as (select s.ended_at, s.username, s.device_name,"
              " r.width, r.height, s.locked from ssh_sessions s"
              " left join ssh_session_recordings r on r.session_id = s.id"
              " where s.id = $1::uuid),"
              " a as (insert into audit_log (actor_id, actor_name, action,"
              " object_type, object_id, client_addr)"
              " select $2::bigint, $3, 'session_watch', 'ssh_session',"
              " $1::text, left($4, 64) from s where s.ended_at is null)"
              " select ended_at is null, username, device_name, width,"
              " height, 0, locked from s",
              4, params, s->log, sizeof(s->log));

    if (res == NULL || PQresultStatus(res) != PGRES_TUPLES_OK) {
        PQclear(res);
        s->err = ngx_segura_db_broken(*conn) ? NGX_SEGURA_ERR_DB_UNAVAILABLE
                                             : NGX_SEGURA_ERR_INTERNAL;
        s->log_level = NGX_LOG_ERR;
        return;
    }

    if (PQntuples(res) != 1) {
        s->err = NGX_SEGURA_ERR_NOT_FOUND;
        s->reason = "unknown_session";

    } else if (PQgetvalue(res, 0, 0)[0] != 't') {
        s->err = NGX_SEGURA_ERR_ENDED;

    } else {
        (void) ngx_cpystrn((u_char *) s->owner,
                           (u_char *) PQgetvalue(res, 0, 1),
                           sizeof(s->owner));
        (void) ngx_cpystrn((u_char *) s->device,
                           (u_char *) PQgetvalue(res, 0, 2),
                           sizeof(s->device));

        s->locked = (PQgetvalue(res, 0, 6)[0] == 't');

        if (!PQgetisnull(res, 0, 3)) {
            s->recorded = 1;
            s->cols = (unsigned) atoi(PQgetvalue(res, 0, 3));
            s->rows = (unsigned) atoi(PQgetvalue(res, 0, 4));
        }
    }

    PQclear(res);
}


static void
ngx_segura_handshake_check_done(ngx_event_t *ev)
{
    ngx_int_t                rc;
    ngx_connection_t        *c;
    ngx_http_request_t      *r;
    ngx_segura_terminal_t   *t;
    ngx_segura_handshake_t  *s;

    s = ev->data;
    r = s->r;
    c = s->c;

    r->main->blocked--;
    s->checking = 0;
    ngx_segura_metrics_task(NGX_SEGURA_METRIC_TASK_SESSION_CHECK, -1);

    if (s->watchdog.timer_set) {
        ngx_del_timer(&s->watchdog);
    }

    if (s->log_level) {
        ngx_log_error(s->log_level, c->log, 0, "segura session: %s", s->log);
    }

    if (c->error) {
        ngx_segura_handshake_close(s);
        return;
    }

    if (s->err != NGX_SEGURA_ERR_OK) {
        ngx_log_error(NGX_LOG_INFO, c->log, 0,
                      "segura session: refused: %V%s%s",
                      &ngx_segura_errors[s->err].code,
                      s->reason ? " " : "", s->reason ? s->reason : "");

        rc = ngx_http_segura_send_error_reason(r, s->err, NULL, NULL,
                                               s->reason);

        /* the handler's reference: the response ends the request */

        ngx_http_finalize_request(r, rc);
        ngx_http_run_posted_requests(c);
        return;
    }

    (void) ngx_cpystrn((u_char *) s->username,
                       (u_char *) s->identity->username,
                       sizeof(s->username));

    if (s->watching) {
        ngx_segura_handshake_watch_done(s);
        return;
    }

    if (s->resume != NULL) {
        rc = ngx_segura_handshake_resume(s);

        if (rc != NGX_OK) {
            ngx_http_finalize_request(r, rc);
            ngx_http_run_posted_requests(c);
        }

        return;
    }

    if (ngx_segura_handshake_accept(s) != NGX_OK) {
        ngx_segura_handshake_close(s);
        return;
    }

    /* the terminal is its own from here; a key that failed ends it */

    t = s->t;
    s->t = NULL;

    ngx_segura_relay_start(&s->relay, t);
}


/* the watched terminal is this worker's, or the watcher is refused */

static void
ngx_segura_handshake_watch_done(ngx_segura_handshake_t *s)
{
    ngx_int_t               rc;
    ngx_connection_t       *c;
    ngx_segura_terminal_t  *t;

    c = s->c;

    t = ngx_segura_terminal_find(s->watch);

    if (t == NULL && !s->recorded) {

        /* elsewhere, and nothing to follow */

        ngx_log_error(NGX_LOG_INFO, c->log, 0,
                      "segura session: watch %s refused: a session of "
                      "another worker, not recorded", s->watch);

        rc = ngx_http_segura_send_error_reason(s->r,
                                               NGX_SEGURA_ERR_UNAVAILABLE,
                                               NULL, NULL, "not_recorded");
        ngx_http_finalize_request(s->r, rc);
        ngx_http_run_posted_requests(c);
        return;
    }

    if (ngx_segura_handshake_accept(s) != NGX_OK) {
        ngx_segura_handshake_close(s);
        return;
    }

    if (t != NULL) {
        ngx_segura_relay_watch(&s->relay, t, s->username);
        return;
    }

    /* another worker's or node's: its recording is followed */

    ngx_segura_relay_watch_remote(&s->relay, s->watch, s->username,
                                  s->owner, s->device, s->cols, s->rows,
                                  s->locked);
}


/*
 * ?resume=: the user, key and device were checked as for a new session
 * (a grant that went meanwhile ended the shell already); the token names
 * the terminal, which must be this user's, on this key and device, and
 * alive.  Returns NGX_OK when the relay took over, else what finalizes
 * the request.
 */

static ngx_int_t
ngx_segura_handshake_resume(ngx_segura_handshake_t *s)
{
    ngx_pid_t               pid;
    ngx_connection_t       *c;
    ngx_http_request_t     *r;
    ngx_segura_terminal_t  *t;

    r = s->r;
    c = s->c;

    t = ngx_segura_terminal_find_resumable(s->resume, ngx_strlen(s->resume));

    if (t == NULL && ngx_segura_resume_owner(s->resume) != ngx_pid) {

        /* another worker of the node may have it: ask that one */

        ngx_segura_resume_ask_t  ask;

        ask.token = s->resume;
        ask.received = s->received;
        ask.user_id = s->identity->id;
        ask.key_id = s->key_id;
        ask.device_id = s->device_id;

        switch (ngx_segura_resume_forward(r, &ask, &s->relay.pipe,
                                          ngx_segura_handshake_forwarded))
        {
        case NGX_OK:
            /* answered by ngx_segura_handshake_forwarded() */
            return NGX_OK;

        case NGX_ERROR:
            return NGX_HTTP_INTERNAL_SERVER_ERROR;

        default:
            break;
        }
    }

    if (t == NULL
        || t->identity.id != s->identity->id
        || t->key_id != s->key_id || t->device_id != s->device_id)
    {
        pid = ngx_atoi((u_char *) s->resume,
                       ngx_strchr(s->resume, '.')
                       ? (size_t) (ngx_strchr(s->resume, '.') - s->resume)
                       : 0);

        ngx_log_error(NGX_LOG_INFO, c->log, 0,
                      "segura session: nothing to resume%s",
                      (t == NULL && pid > 0 && pid != ngx_pid)
                      ? " (the token names another worker)" : "");

        /* nobody learns whether another user's session exists */

        return ngx_http_segura_send_error(r, NGX_SEGURA_ERR_NOT_FOUND,
                                          "resume",
                                          "There is no session to resume "
                                          "with this token on this node");
    }

    if (s->received > t->bytes_out) {
        return ngx_http_segura_send_error(r, NGX_SEGURA_ERR_BAD_REQUEST,
                                          "received",
                                          "received is more than the "
                                          "session printed");
    }

    if (ngx_segura_handshake_accept(s) != NGX_OK) {
        ngx_segura_handshake_close(s);
        return NGX_OK;
    }

    ngx_segura_relay_resume(&s->relay, t, s->received);

    return NGX_OK;
}


/* the worker that has the shell answered a forwarded resume */

static void
ngx_segura_handshake_forwarded(ngx_http_request_t *r, ngx_int_t rc)
{
    ngx_connection_t        *c;
    ngx_segura_handshake_t  *s;

    s = ngx_http_get_module_ctx(r, ngx_http_segura_module);
    c = s->c;

    if (rc == NGX_OK) {
        if (ngx_segura_handshake_accept(s) != NGX_OK) {
            ngx_segura_handshake_close(s);
            return;
        }

        ngx_segura_resume_pipe(r, s->relay.pipe);
        return;
    }

    ngx_log_error(NGX_LOG_INFO, c->log, 0,
                  "segura session: nothing to resume (asked the worker "
                  "the token names)");

    rc = ngx_http_segura_send_error(r, NGX_SEGURA_ERR_NOT_FOUND, "resume",
                                    "There is no session to resume with "
                                    "this token on this node");

    ngx_http_finalize_request(r, rc);
    ngx_http_run_posted_requests(c);
}


static ngx_int_t
ngx_segura_handshake_accept(ngx_segura_handshake_t *s)
{
    u_char                     *accept;
    ngx_int_t                   rc;
    ngx_connection_t           *c;
    ngx_http_request_t         *r;
    ngx_http_core_loc_conf_t   *clcf;

    r = s->r;
    c = s->c;

    accept = ngx_pnalloc(r->pool, NGX_SEGURA_WS_ACCEPT_LEN + 1);
    if (accept == NULL
        || ngx_segura_ws_accept(accept, (u_char *) s->wskey,
                                ngx_strlen(s->wskey))
           != 0)
    {
        return NGX_ERROR;
    }

    accept[NGX_SEGURA_WS_ACCEPT_LEN] = '\0';

    r->headers_out.status = NGX_HTTP_SWITCHING_PROTOCOLS;
    ngx_str_set(&r->headers_out.status_line, "101 Switching Protocols");
    r->headers_out.content_length_n = -1;
    r->keepalive = 0;

    if (ngx_http_segura_add_header(r, "Upgrade", "websocket") != NGX_OK
        || ngx_http_segura_add_header(r, "Sec-WebSocket-Accept",
                                      (char *) accept)
           != NGX_OK)
    {
        return NGX_ERROR;
    }

    rc = ngx_http_send_header(r);

    if (rc == NGX_ERROR || rc > NGX_OK) {
        return NGX_ERROR;
    }

    if (ngx_http_send_special(r, NGX_HTTP_FLUSH) == NGX_ERROR) {
        return NGX_ERROR;
    }

    clcf = ngx_http_get_module_loc_conf(r, ngx_http_core_module);

    if (clcf->tcp_nodelay && ngx_tcp_nodelay(c) != NGX_OK) {
        return NGX_ERROR;
    }

    return NGX_OK;
}


static void
ngx_segura_handshake_close(ngx_segura_handshake_t *s)
{
    ngx_connection_t  *c;

    c = s->c;

    /* drops the reference taken by the handler and closes */

    ngx_http_finalize_request(s->r, NGX_HTTP_CLOSE);
    ngx_http_run_posted_requests(c);
}


static void
ngx_segura_handshake_cleanup(void *data)
{
    ngx_segura_handshake_t *s = data;

    /* the request pool goes: on every path nothing of the session stays */

    if (s->checking) {
        ngx_log_error(NGX_LOG_ALERT, s->c->log, 0,
                      "segura session: freed during the grant check");
    }

    if (s->t != NULL) {
        /* never started */
        ngx_segura_terminal_destroy(s->t);
        s->t = NULL;
    }

    ngx_segura_relay_cleanup(&s->relay);

    if (s->watchdog.timer_set) {
        ngx_del_timer(&s->watchdog);
    }

    OPENSSL_cleanse(s->token, sizeof(s->token));
}


ngx_int_t
ngx_segura_handshake_add_variables(ngx_conf_t *cf)
{
    ngx_http_variable_t  *var, *v;

    for (v = ngx_segura_handshake_vars; v->name.len; v++) {
        var = ngx_http_add_variable(cf, &v->name, v->flags);
        if (var == NULL) {
            return NGX_ERROR;
        }

        var->get_handler = v->get_handler;
        var->data = v->data;
    }

    return NGX_OK;
}


static ngx_int_t
ngx_segura_handshake_variable(ngx_http_request_t *r,
    ngx_http_variable_value_t *v, uintptr_t data)
{
    u_char                  *p;
    ngx_segura_handshake_t  *s;

    s = ngx_http_get_module_ctx(r->main, ngx_http_segura_module);

    if (s == NULL) {
        v->not_found = 1;
        return NGX_OK;
    }

    switch (data) {

    case 0:
        p = (u_char *) s->relay.id;
        v->len = ngx_strlen(p);
        break;

    case 1:
        p = (u_char *) s->username;
        v->len = ngx_strlen(p);
        break;

    default:
        p = ngx_pnalloc(r->pool, NGX_INT64_LEN);
        if (p == NULL) {
            return NGX_ERROR;
        }

        v->len = ngx_sprintf(p, "%L", data == 2 ? s->key_id : s->device_id)
                 - p;
        break;
    }

    if (v->len == 0) {
        v->not_found = 1;
        return NGX_OK;
    }

    v->data = p;
    v->valid = 1;
    v->no_cacheable = 1;
    v->not_found = 0;

    return NGX_OK;
}
