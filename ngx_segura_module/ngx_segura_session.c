
/*
 * Copyright (C) ngx_segura_module authors
 */


/*
 * The /session endpoint: a browser WebSocket relayed to an SSH shell.
 *
 * A session goes through these states; the state says which thread owns
 * it, and every handler starts by checking it:
 *
 *   CHECK    pool thread: identity, grant, key row, key decryption
 *   CONNECT  event loop: the device set-up (ngx_segura_connect.c), with
 *            one pause in a pool thread to pin a host key on first use
 *   RELAY    event loop: bytes both ways, libssh non-blocking
 *   CLOSING  event loop: our close frame is queued, waiting for the
 *            client's or a timeout
 *   DONE     event loop: the request is being finalized
 *
 * While a pool thread owns the session the request is blocked
 * (r->main->blocked), so nginx cannot free it under the task.  The audit
 * row is written through the outbox (ngx_segura_outbox.c): its start when
 * the shell is open, its end when the session ends; neither waits.
 *
 * The relay follows nginx's upgraded-connection loop: one bounded buffer
 * per direction, write before reading more, stop reading a side whose
 * peer cannot take data.  Client -> device: the frames are unmasked in
 * place in s->in and their payload is written to the channel; what the
 * SSH window cannot take stays in s->in and the client is not read
 * meanwhile.  Device -> client: channel data is read straight behind a
 * frame header into s->out; while s->out is not sent, the channel is not
 * read, and the SSH window stops the device.
 */


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>
#include "ngx_segura.h"
#include "ngx_segura_api.h"
#include "ngx_segura_auth.h"
#include "ngx_segura_connect.h"
#include "ngx_segura_db.h"
#include "ngx_segura_fleet.h"
#include "ngx_segura_outbox.h"
#include "ngx_segura_session.h"
#include "ngx_segura_ssh.h"
#include "ngx_segura_sshkey.h"
#include "ngx_segura_vault.h"
#include "ngx_segura_watch.h"
#include "ngx_segura_ws.h"

#include <jansson.h>
#include <openssl/crypto.h>
#include <openssl/rand.h>
#include <sys/ioctl.h>


#define NGX_SEGURA_SESSION_IN_SIZE     16384
#define NGX_SEGURA_SESSION_OUT_SIZE    32768
#define NGX_SEGURA_SESSION_RESERVE     512    /* events and control frames */
#define NGX_SEGURA_SESSION_TEXT_MAX    1024   /* one JSON control message */
#define NGX_SEGURA_SESSION_CLOSE_WAIT  5000
#define NGX_SEGURA_SESSION_MAX_DIM     1000
#define NGX_SEGURA_SESSION_PASSES      16


typedef enum {
    NGX_SEGURA_SESSION_CHECK = 0,
    NGX_SEGURA_SESSION_CONNECT,
    NGX_SEGURA_SESSION_RELAY,
    NGX_SEGURA_SESSION_CLOSING,
    NGX_SEGURA_SESSION_DONE
} ngx_segura_session_state_e;


typedef struct {
    ngx_http_request_t            *r;
    ngx_connection_t              *c;        /* the client */
    ngx_connection_t              *peer;     /* wraps libssh's socket */
    ngx_http_segura_main_conf_t   *smcf;
    ngx_http_segura_loc_conf_t    *slcf;
    ngx_segura_session_state_e     state;

    /* the request, copied for the pool thread */
    int64_t                        key_id;
    int64_t                        device_id;
    u_char                         token[NGX_SEGURA_TOKEN_LEN];
    char                          *delegated;
    char                          *client_addr;
    char                          *node;

    /* set by the pool threads */
    ngx_segura_err_e               err;       /* before the upgrade */
    const char                    *reason;    /* grant reason, static */
    ngx_uint_t                     log_level;
    char                           log[NGX_SEGURA_ERRLEN];
    ngx_segura_identity_t          identity;
    char                           key_name[129];
    char                           username[129];
    char                           device_name[129];
    char                           device_address[256];
    ngx_uint_t                     port;
    char                           pinned[NGX_SEGURA_SSH_LINE_LEN];
    char                           pinned_fp[NGX_SEGURA_SSH_FP_LEN];
    char                           pinned_type[64];
    char                           key_type[65];
    char                           id[40];    /* ssh_sessions.id */
    char                           started[NGX_INT64_LEN + 1];  /* ms */
    unsigned                       audited:1;
    unsigned                       pinned_now:1;
    unsigned                       pin_failed:1;

    ngx_segura_ssh_t               ssh;
    ngx_segura_connect_t           connect;

    /* the relay */
    ngx_segura_ws_parser_t         ws;
    ngx_buf_t                      in;
    ngx_buf_t                      out;
    u_char                        *pending;  /* payload the channel refused */
    size_t                         pending_len;
    u_char                         text[NGX_SEGURA_SESSION_TEXT_MAX];
    size_t                         text_len;
    u_char                         pong[NGX_SEGURA_WS_CONTROL_MAX];
    size_t                         pong_len;

    ngx_event_t                    timer;
    ngx_event_t                    watchdog;
    ngx_msec_t                     last_client;  /* any bytes from it */
    ngx_msec_t                     last_any;     /* terminal data */
    ngx_msec_t                     closing_since;

    off_t                          bytes_in;
    off_t                          bytes_out;
    ngx_int_t                      exit_status;
    const char                    *end_reason;

    ngx_queue_t                    live;      /* the worker's live list */
    ngx_uint_t                     generation;  /* grant changes seen */

    unsigned                       listed:1;
    unsigned                       has_token:1;
    unsigned                       pong_pending:1;
    unsigned                       text_skip:1;
    unsigned                       client_closed:1;  /* close frame seen */
    unsigned                       client_gone:1;    /* TCP closed */
    unsigned                       close_queued:1;
    unsigned                       device_done:1;
    unsigned                       shutdown:1;
} ngx_segura_session_t;


typedef struct {
    ngx_segura_session_t          *s;
} ngx_segura_session_task_t;


static const char *ngx_segura_session_upgrade_ok(ngx_http_request_t *r,
    ngx_str_t *key);
static ngx_int_t ngx_segura_session_arg(ngx_http_request_t *r, char *name,
    int64_t min, int64_t max, int64_t dflt, int64_t *value);
static char *ngx_segura_session_cstr(ngx_pool_t *pool, ngx_str_t *s);
static ngx_int_t ngx_segura_session_post(ngx_segura_session_t *s,
    void (*handler)(void *data, ngx_log_t *log),
    ngx_event_handler_pt done);
static ngx_segura_session_t *ngx_segura_session_from_event(ngx_event_t *ev);
static void ngx_segura_session_watchdog(ngx_event_t *ev);
static void ngx_segura_session_check(void *data, ngx_log_t *log);
static ngx_int_t ngx_segura_session_load_key(ngx_segura_session_t *s,
    PGresult *res);
static u_char *ngx_segura_session_open(ngx_segura_session_t *s,
    const char *hex, const char *column, size_t *len);
static void ngx_segura_session_check_done(ngx_event_t *ev);
static ngx_int_t ngx_segura_session_accept(ngx_segura_session_t *s,
    ngx_str_t *key);
static void ngx_segura_session_connect(ngx_segura_session_t *s);
static ngx_int_t ngx_segura_session_host_key(ngx_segura_connect_t *cn);
static void ngx_segura_session_pin(void *data, ngx_log_t *log);
static void ngx_segura_session_pin_done(ngx_event_t *ev);
static void ngx_segura_session_connected(ngx_segura_connect_t *cn);
static ngx_int_t ngx_segura_session_client_lost(ngx_connection_t *c);
static ngx_int_t ngx_segura_session_audit_start(ngx_segura_session_t *s);
static void ngx_segura_session_audit_end(ngx_segura_session_t *s);
static void ngx_segura_session_client_handler(ngx_event_t *ev);
static void ngx_segura_session_peer_handler(ngx_event_t *ev);
static void ngx_segura_session_shutdown(ngx_segura_session_t *s);
static void ngx_segura_session_relay(ngx_segura_session_t *s);
static ngx_int_t ngx_segura_session_send(ngx_segura_session_t *s);
static ngx_int_t ngx_segura_session_to_device(ngx_segura_session_t *s);
static ngx_int_t ngx_segura_session_frame(ngx_segura_session_t *s,
    ngx_segura_ws_event_t *ev);
static void ngx_segura_session_control(ngx_segura_session_t *s);
static ngx_int_t ngx_segura_session_from_device(ngx_segura_session_t *s);
static ngx_int_t ngx_segura_session_queue(ngx_segura_session_t *s,
    unsigned opcode, u_char *data, size_t len);
static void ngx_segura_session_event(ngx_segura_session_t *s,
    json_t *json);
static void ngx_segura_session_fail(ngx_segura_session_t *s,
    ngx_segura_ws_err_e err, const char *end_reason);
static void ngx_segura_session_close(ngx_segura_session_t *s,
    ngx_uint_t code, const char *reason, const char *end_reason);
static void ngx_segura_session_timer_handler(ngx_event_t *ev);
static void ngx_segura_session_arm_timer(ngx_segura_session_t *s);
static void ngx_segura_session_finish(ngx_segura_session_t *s);
static void ngx_segura_session_finalize(ngx_segura_session_t *s);
static void ngx_segura_session_detach(ngx_segura_session_t *s);
static void ngx_segura_session_cleanup(void *data);
static ngx_int_t ngx_segura_session_variable(ngx_http_request_t *r,
    ngx_http_variable_value_t *v, uintptr_t data);


/*
 * the sessions of this worker in RELAY: what the watcher re-checks when a
 * grant changes or an administrator ends a session (ngx_segura_watch.c)
 */

static ngx_queue_t  ngx_segura_session_live;


static ngx_http_variable_t  ngx_segura_session_vars[] = {

    { ngx_string("segura_session_id"), NULL, ngx_segura_session_variable,
      0, NGX_HTTP_VAR_NOCACHEABLE, 0 },

    { ngx_string("segura_user"), NULL, ngx_segura_session_variable,
      1, NGX_HTTP_VAR_NOCACHEABLE, 0 },

    { ngx_string("segura_key"), NULL, ngx_segura_session_variable,
      2, NGX_HTTP_VAR_NOCACHEABLE, 0 },

    { ngx_string("segura_device"), NULL, ngx_segura_session_variable,
      3, NGX_HTTP_VAR_NOCACHEABLE, 0 },

      ngx_http_null_variable
};


ngx_int_t
ngx_segura_session_handler(ngx_http_request_t *r)
{
    int64_t                       key_id, device_id, cols, rows;
    ngx_str_t                     wskey, cookie, value;
    const char                   *bad;
    ngx_pool_cleanup_t           *cln;
    ngx_segura_session_t         *s;
    ngx_http_segura_loc_conf_t   *slcf;

    ngx_str_null(&wskey);

    slcf = ngx_http_get_module_loc_conf(r, ngx_http_segura_module);

    if (ngx_http_discard_request_body(r) != NGX_OK) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    bad = ngx_segura_session_upgrade_ok(r, &wskey);

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

    if (ngx_segura_session_arg(r, "key", 1, NGX_MAX_OFF_T_VALUE, -1,
                               &key_id) != NGX_OK)
    {
        return ngx_http_segura_send_error(r, NGX_SEGURA_ERR_BAD_REQUEST,
                                          "key", "Give the key id: key=<n>");
    }

    if (ngx_segura_session_arg(r, "device", 1, NGX_MAX_OFF_T_VALUE, -1,
                               &device_id) != NGX_OK)
    {
        return ngx_http_segura_send_error(r, NGX_SEGURA_ERR_BAD_REQUEST,
                                          "device",
                                          "Give the device id: device=<n>");
    }

    if (ngx_segura_session_arg(r, "cols", 1, NGX_SEGURA_SESSION_MAX_DIM, 80,
                               &cols) != NGX_OK)
    {
        return ngx_http_segura_send_error(r, NGX_SEGURA_ERR_BAD_REQUEST,
                                          "cols", "cols must be 1-1000");
    }

    if (ngx_segura_session_arg(r, "rows", 1, NGX_SEGURA_SESSION_MAX_DIM, 24,
                               &rows) != NGX_OK)
    {
        return ngx_http_segura_send_error(r, NGX_SEGURA_ERR_BAD_REQUEST,
                                          "rows", "rows must be 1-1000");
    }

    if (ngx_segura_outbox_full()) {

        /* the audit of a new session could not be written in time */

        ngx_log_error(NGX_LOG_ERR, r->connection->log, 0,
                      "segura session: refused, %uz writes wait for the "
                      "database", ngx_segura_outbox_pending());
        return ngx_http_segura_send_error(r, NGX_SEGURA_ERR_DB_UNAVAILABLE,
                                          NULL, NULL);
    }

    s = ngx_pcalloc(r->pool, sizeof(ngx_segura_session_t));
    if (s == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    s->r = r;
    s->c = r->connection;
    s->smcf = ngx_http_get_module_main_conf(r, ngx_http_segura_module);
    s->slcf = slcf;
    s->state = NGX_SEGURA_SESSION_CHECK;
    s->key_id = key_id;
    s->device_id = device_id;
    s->ssh.cols = (unsigned) cols;
    s->ssh.rows = (unsigned) rows;
    s->ssh.fd = (ngx_socket_t) -1;
    s->exit_status = -1;

    /* a grant change heard after this point makes the relay re-check */
    s->generation = ngx_segura_watch_generation();

    if (slcf->user) {
        if (ngx_http_complex_value(r, slcf->user, &value) != NGX_OK) {
            return NGX_HTTP_INTERNAL_SERVER_ERROR;
        }

        if (value.len) {
            s->delegated = ngx_segura_session_cstr(r->pool, &value);
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

    s->client_addr = ngx_segura_session_cstr(r->pool,
                                             &r->connection->addr_text);
    value = ((ngx_cycle_t *) ngx_cycle)->hostname;
    s->node = ngx_segura_session_cstr(r->pool, &value);

    if (s->client_addr == NULL || s->node == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    s->in.start = ngx_palloc(r->pool, NGX_SEGURA_SESSION_IN_SIZE);
    s->out.start = ngx_palloc(r->pool, NGX_SEGURA_SESSION_OUT_SIZE);
    if (s->in.start == NULL || s->out.start == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    s->in.pos = s->in.start;
    s->in.last = s->in.start;
    s->in.end = s->in.start + NGX_SEGURA_SESSION_IN_SIZE;
    s->out.pos = s->out.start;
    s->out.last = s->out.start;
    s->out.end = s->out.start + NGX_SEGURA_SESSION_OUT_SIZE;

    /* the accept value is computed now: the header is gone after 101 */

    s->in.tag = (ngx_buf_tag_t) ngx_pnalloc(r->pool, wskey.len + 1);
    if (s->in.tag == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    ngx_memcpy(s->in.tag, wskey.data, wskey.len);
    ((u_char *) s->in.tag)[wskey.len] = '\0';

    cln = ngx_pool_cleanup_add(r->pool, 0);
    if (cln == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    cln->handler = ngx_segura_session_cleanup;
    cln->data = s;

    ngx_http_set_ctx(r, s, ngx_http_segura_module);

    ngx_segura_ws_parser_init(&s->ws, slcf->max_message);

    r->connection->log->action = "checking the grant";

    if (ngx_segura_session_post(s, ngx_segura_session_check,
                                ngx_segura_session_check_done)
        != NGX_OK)
    {
        return ngx_http_segura_send_error(r, NGX_SEGURA_ERR_INTERNAL, NULL,
                                          "The server is overloaded");
    }

    /* the reference is released by ngx_segura_session_finalize() */

    r->main->count++;

    return NGX_DONE;
}


static const char *
ngx_segura_session_upgrade_ok(ngx_http_request_t *r, ngx_str_t *key)
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
ngx_segura_session_arg(ngx_http_request_t *r, char *name, int64_t min,
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


static char *
ngx_segura_session_cstr(ngx_pool_t *pool, ngx_str_t *s)
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


static ngx_int_t
ngx_segura_session_post(ngx_segura_session_t *s,
    void (*handler)(void *data, ngx_log_t *log), ngx_event_handler_pt done)
{
    ngx_thread_task_t          *task;
    ngx_segura_session_task_t  *ctx;

    task = ngx_thread_task_alloc(s->r->pool,
                                 sizeof(ngx_segura_session_task_t));
    if (task == NULL) {
        return NGX_ERROR;
    }

    ctx = task->ctx;
    ctx->s = s;

    task->handler = handler;
    task->event.data = s;
    task->event.handler = done;

    if (ngx_thread_task_post(s->smcf->thread_pool, task) != NGX_OK) {
        return NGX_ERROR;
    }

    /* from here the pool thread owns the session until "done" runs */

    s->r->main->blocked++;

    /*
     * the watchdog also keeps a gracefully exiting worker alive until the
     * task is back: nginx waits for timers, not for thread tasks
     */

    s->watchdog.handler = ngx_segura_session_watchdog;
    s->watchdog.data = s;
    s->watchdog.log = s->c->log;

    ngx_add_timer(&s->watchdog, s->slcf->connect_timeout + 60000);

    return NGX_OK;
}


static void
ngx_segura_session_watchdog(ngx_event_t *ev)
{
    ngx_segura_session_t *s = ev->data;

    /*
     * every blocking call of a task has its own timeout (libssh, libpq
     * connect and statement timeouts); a task past all of them is a bug
     */

    ngx_log_error(NGX_LOG_ALERT, s->c->log, 0,
                  "segura session: a pool task of state %d has not "
                  "finished", s->state);

    ngx_add_timer(&s->watchdog, 10000);
}


static ngx_segura_session_t *
ngx_segura_session_from_event(ngx_event_t *ev)
{
    ngx_segura_session_t  *s;

    s = ev->data;

    s->r->main->blocked--;

    if (s->watchdog.timer_set) {
        ngx_del_timer(&s->watchdog);
    }

    return s;
}


/* CHECK, pool thread */

static void
ngx_segura_session_check(void *data, ngx_log_t *log)
{
    ngx_segura_session_task_t *ctx = data;

    char                  *v, id[NGX_INT64_LEN + 1], key[NGX_INT64_LEN + 1],
                          dev[NGX_INT64_LEN + 1];
    PGconn                *conn;
    PGresult              *res;
    const char            *params[3];
    ngx_segura_err_e       rc;
    ngx_segura_session_t  *s;

    s = ctx->s;

    conn = ngx_segura_db_acquire(s->smcf->db, s->log, sizeof(s->log));

    if (conn == NULL) {
        s->err = NGX_SEGURA_ERR_DB_UNAVAILABLE;
        s->log_level = NGX_LOG_ERR;
        return;
    }

    rc = ngx_segura_auth_identify(s->smcf->db, &conn,
                                  s->has_token ? s->token : NULL,
                                  s->delegated, s->slcf->login_idle,
                                  &s->identity, s->log, sizeof(s->log));

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

    (void) ngx_snprintf((u_char *) id, sizeof(id), "%L%Z", s->identity.id);
    (void) ngx_snprintf((u_char *) key, sizeof(key), "%L%Z", s->key_id);
    (void) ngx_snprintf((u_char *) dev, sizeof(dev), "%L%Z", s->device_id);

    params[0] = id;
    params[1] = key;
    params[2] = dev;

    /* the grant and everything the session needs, in one round trip */

    res = ngx_segura_db_query_retry(s->smcf->db, &conn,
              "select segura_grant_check($1, $2, $3),"
              " k.name, k.username, k.private_key_enc, k.passphrase_enc,"
              " d.name, d.address, d.port, d.host_key,"
              " d.host_key_fingerprint, k.key_type, k.bits"
              " from (select 1) one"
              " left join ssh_keys k on k.id = $2"
              " left join devices d on d.id = $3",
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

    (void) ngx_cpystrn((u_char *) s->key_name,
                       (u_char *) PQgetvalue(res, 0, 1),
                       sizeof(s->key_name));
    (void) ngx_cpystrn((u_char *) s->username,
                       (u_char *) PQgetvalue(res, 0, 2),
                       sizeof(s->username));
    (void) ngx_cpystrn((u_char *) s->device_name,
                       (u_char *) PQgetvalue(res, 0, 5),
                       sizeof(s->device_name));
    (void) ngx_cpystrn((u_char *) s->device_address,
                       (u_char *) PQgetvalue(res, 0, 6),
                       sizeof(s->device_address));

    s->port = ngx_atoi((u_char *) PQgetvalue(res, 0, 7),
                       ngx_strlen(PQgetvalue(res, 0, 7)));

    (void) ngx_cpystrn((u_char *) s->key_type,
                       (u_char *) PQgetvalue(res, 0, 10),
                       sizeof(s->key_type));

    if (ngx_strcmp(s->key_type, "ssh-rsa") == 0 && !PQgetisnull(res, 0, 11)) {
        s->ssh.rsa_bits = ngx_atoi((u_char *) PQgetvalue(res, 0, 11),
                                   ngx_strlen(PQgetvalue(res, 0, 11)));
    }

    if (!PQgetisnull(res, 0, 8)) {
        (void) ngx_cpystrn((u_char *) s->pinned,
                           (u_char *) PQgetvalue(res, 0, 8),
                           sizeof(s->pinned));
        (void) ngx_cpystrn((u_char *) s->pinned_fp,
                           (u_char *) PQgetvalue(res, 0, 9),
                           sizeof(s->pinned_fp));

        /* "<type> <base64>": the type selects the host key algorithms */

        v = ngx_strchr(s->pinned, ' ');
        if (v != NULL && (size_t) (v - s->pinned) < sizeof(s->pinned_type)) {
            ngx_memcpy(s->pinned_type, s->pinned, v - s->pinned);
            s->ssh.pinned_type = s->pinned_type;
        }
    }

    if (ngx_segura_session_load_key(s, res) != NGX_OK) {
        s->err = NGX_SEGURA_ERR_OK;
        s->ssh.err = NGX_SEGURA_WS_ERR_KEY_UNUSABLE;
        s->log_level = NGX_LOG_ERR;
    }

    PQclear(res);

done:

    ngx_segura_db_release(s->smcf->db, conn);
}


static ngx_int_t
ngx_segura_session_load_key(ngx_segura_session_t *s, PGresult *res)
{
    int       rc;
    size_t    klen, plen;
    u_char   *key, *pass;

    /*
     * the username is copied into the ssh struct here; the private key
     * and the passphrase exist in plain text only between the vault and
     * libssh, and are wiped on every path
     */

    pass = NULL;
    plen = 0;

    key = ngx_segura_session_open(s, PQgetvalue(res, 0, 3), "private_key",
                                  &klen);
    if (key == NULL) {
        return NGX_ERROR;
    }

    if (!PQgetisnull(res, 0, 4)) {
        pass = ngx_segura_session_open(s, PQgetvalue(res, 0, 4),
                                       "passphrase", &plen);
        if (pass == NULL) {
            OPENSSL_cleanse(key, klen);
            free(key);
            return NGX_ERROR;
        }
    }

    rc = ngx_segura_sshkey_import((char *) key, klen, (char *) pass,
                                  &s->ssh.key, NULL);

    OPENSSL_cleanse(key, klen);
    free(key);

    if (pass != NULL) {
        OPENSSL_cleanse(pass, plen);
        free(pass);
    }

    if (rc != 0) {
        (void) ngx_snprintf((u_char *) s->log, sizeof(s->log),
                            "key %L cannot be imported%Z", s->key_id);
        return NGX_ERROR;
    }

    return NGX_OK;
}


static u_char *
ngx_segura_session_open(ngx_segura_session_t *s, const char *hex,
    const char *column, size_t *len)
{
    int                       id;
    char                      aad[64];
    size_t                    blen, plen;
    u_char                   *blob, *plain;
    ngx_segura_master_key_t  *mk;
    ngx_segura_vault_err_e    err;

    blob = PQunescapeBytea((const u_char *) hex, &blen);
    if (blob == NULL) {
        (void) ngx_snprintf((u_char *) s->log, sizeof(s->log),
                            "PQunescapeBytea() failed%Z");
        return NULL;
    }

    id = ngx_segura_vault_key_id(blob, blen);
    mk = (id < 0) ? NULL : ngx_http_segura_find_key(s->smcf, id);

    if (mk == NULL) {
        (void) ngx_snprintf((u_char *) s->log, sizeof(s->log),
                            "key %L: %s sealed with master key id %d, "
                            "which is not configured%Z",
                            s->key_id, column, id);
        PQfreemem(blob);
        return NULL;
    }

    plen = ngx_segura_vault_opened_size(blen);

    /* one spare byte: libssh wants the key text NUL-terminated */

    plain = malloc(plen + 1);
    if (plain == NULL) {
        PQfreemem(blob);
        return NULL;
    }

    (void) ngx_snprintf((u_char *) aad, sizeof(aad), "ssh_keys/%L/%s%Z",
                        s->key_id, column);

    if (ngx_segura_vault_open(mk->key, (unsigned) id, aad, ngx_strlen(aad),
                              blob, blen, plain, &plen, &err)
        != 0)
    {
        (void) ngx_snprintf((u_char *) s->log, sizeof(s->log),
                            "key %L: ngx_segura_vault_open(%s) failed: %s%Z",
                            s->key_id, column,
                            ngx_segura_vault_strerror(err));
        PQfreemem(blob);
        free(plain);
        return NULL;
    }

    PQfreemem(blob);

    plain[plen] = '\0';
    *len = plen;

    return plain;
}


static void
ngx_segura_session_check_done(ngx_event_t *ev)
{
    ngx_int_t              rc;
    ngx_str_t              key;
    ngx_connection_t      *c;
    ngx_http_request_t    *r;
    ngx_segura_session_t  *s;

    s = ngx_segura_session_from_event(ev);
    r = s->r;
    c = s->c;

    if (s->state != NGX_SEGURA_SESSION_CHECK) {
        ngx_log_error(NGX_LOG_ALERT, c->log, 0,
                      "segura session: check done in state %d", s->state);
    }

    if (s->log_level) {
        ngx_log_error(s->log_level, c->log, 0, "segura session: %s", s->log);
    }

    if (c->error) {
        s->state = NGX_SEGURA_SESSION_DONE;
        ngx_segura_session_finalize(s);
        return;
    }

    if (s->err != NGX_SEGURA_ERR_OK) {
        ngx_log_error(NGX_LOG_INFO, c->log, 0,
                      "segura session: refused: %V%s%s",
                      &ngx_segura_errors[s->err].code,
                      s->reason ? " " : "", s->reason ? s->reason : "");

        s->state = NGX_SEGURA_SESSION_DONE;

        rc = ngx_http_segura_send_error_reason(r, s->err, NULL, NULL,
                                               s->reason);

        /* the handler's reference: the response ends the request */

        ngx_http_finalize_request(r, rc);
        ngx_http_run_posted_requests(c);
        return;
    }

    key.data = (u_char *) s->in.tag;
    key.len = ngx_strlen(key.data);
    s->in.tag = NULL;

    if (ngx_segura_session_accept(s, &key) != NGX_OK) {
        s->state = NGX_SEGURA_SESSION_DONE;
        ngx_segura_session_finalize(s);
        return;
    }

    if (s->ssh.err != NGX_SEGURA_WS_ERR_NONE) {
        /* the key could not be decrypted or imported */
        s->state = NGX_SEGURA_SESSION_RELAY;
        ngx_segura_session_fail(s, s->ssh.err, "key_unusable");
        ngx_segura_session_relay(s);
        return;
    }

    ngx_segura_session_connect(s);
}


/* CONNECT, event loop */

static void
ngx_segura_session_connect(ngx_segura_session_t *s)
{
    ngx_segura_connect_t      *cn;
    ngx_http_core_loc_conf_t  *clcf;

    clcf = ngx_http_get_module_loc_conf(s->r, ngx_http_core_module);

    s->state = NGX_SEGURA_SESSION_CONNECT;
    s->ssh.username = s->username;

    cn = &s->connect;

    cn->host.data = (u_char *) s->device_address;
    cn->host.len = ngx_strlen(s->device_address);
    cn->port = (in_port_t) s->port;
    cn->timeout = s->slcf->connect_timeout;
    cn->resolver = clcf->resolver;
    cn->resolver_timeout = clcf->resolver_timeout;
    cn->thread_pool = s->smcf->thread_pool;
    cn->log = s->c->log;
    cn->pool = s->r->pool;
    cn->ssh = &s->ssh;
    cn->host_key = ngx_segura_session_host_key;
    cn->done = ngx_segura_session_connected;
    cn->data = s;

    ngx_segura_connect_start(cn);
}


/* the key exchange is done: is this the device's host key? */

static ngx_int_t
ngx_segura_session_host_key(ngx_segura_connect_t *cn)
{
    ngx_segura_session_t *s = cn->data;

    if (s->pinned[0] != '\0') {
        if (ngx_strcmp(s->pinned_fp, s->ssh.host_key_fp) == 0) {
            return NGX_OK;
        }

        s->ssh.err = NGX_SEGURA_WS_ERR_HOST_KEY_MISMATCH;
        (void) ngx_snprintf((u_char *) s->ssh.text, sizeof(s->ssh.text),
                            "host key %s of device %L does not match the "
                            "pinned %s%Z", s->ssh.host_key_fp, s->device_id,
                            s->pinned_fp);
        return NGX_ERROR;
    }

    if (s->slcf->host_key_policy == NGX_SEGURA_HOST_KEY_STRICT) {
        s->ssh.err = NGX_SEGURA_WS_ERR_HOST_KEY_UNKNOWN;
        (void) ngx_snprintf((u_char *) s->ssh.text, sizeof(s->ssh.text),
                            "device %L has no pinned host key and the "
                            "policy is strict (it presented %s)%Z",
                            s->device_id, s->ssh.host_key_fp);
        return NGX_ERROR;
    }

    /* trust on first use: the pin is written by a pool thread */

    if (ngx_segura_session_post(s, ngx_segura_session_pin,
                                ngx_segura_session_pin_done)
        != NGX_OK)
    {
        s->ssh.err = NGX_SEGURA_WS_ERR_INTERNAL;
        (void) ngx_cpystrn((u_char *) s->ssh.text,
                           (u_char *) "the thread pool refused a task",
                           sizeof(s->ssh.text));
        return NGX_ERROR;
    }

    return NGX_AGAIN;
}


/* pool thread; the set-up is paused meanwhile */

static void
ngx_segura_session_pin(void *data, ngx_log_t *log)
{
    ngx_segura_session_task_t *ctx = data;

    char                   dev[NGX_INT64_LEN + 1];
    PGconn                *conn;
    PGresult              *res;
    const char            *params[3];
    ngx_segura_session_t  *s;

    s = ctx->s;

    conn = ngx_segura_db_acquire(s->smcf->db, s->log, sizeof(s->log));

    if (conn == NULL) {
        s->pin_failed = 1;
        return;
    }

    /*
     * pin the key unless another session pinned one meanwhile, in which
     * case that one is what must match
     */

    (void) ngx_snprintf((u_char *) dev, sizeof(dev), "%L%Z", s->device_id);

    params[0] = dev;
    params[1] = s->ssh.host_key;
    params[2] = s->ssh.host_key_fp;

    res = ngx_segura_db_query(s->smcf->db, &conn,
              "with pin as ("
              "  update devices set host_key = $2, host_key_fingerprint = $3"
              "  where id = $1 and host_key is null returning id),"
              " log as ("
              "  insert into audit_log (action, object_type, object_id,"
              "                         detail)"
              "  select 'host_key_pinned', 'device', $1, "
              "         json_build_object('fingerprint', $3::text)"
              "  from pin returning 1)"
              " select (select count(*) from pin),"
              "        (select host_key_fingerprint from devices"
              "         where id = $1),"
              "        (select count(*) from log)",
              3, params, s->log, sizeof(s->log));

    if (res == NULL || PQresultStatus(res) != PGRES_TUPLES_OK
        || PQntuples(res) != 1)
    {
        s->pin_failed = 1;

    } else if (ngx_strcmp(PQgetvalue(res, 0, 0), "1") == 0) {
        s->pinned_now = 1;

    } else {
        /* pinned by another session meanwhile */
        (void) ngx_cpystrn((u_char *) s->pinned_fp,
                           (u_char *) PQgetvalue(res, 0, 1),
                           sizeof(s->pinned_fp));
    }

    PQclear(res);

    ngx_segura_db_release(s->smcf->db, conn);
}


static void
ngx_segura_session_pin_done(ngx_event_t *ev)
{
    ngx_int_t              rc;
    ngx_segura_session_t  *s;

    s = ngx_segura_session_from_event(ev);

    rc = NGX_OK;

    if (s->pin_failed) {
        s->ssh.err = NGX_SEGURA_WS_ERR_DATABASE;
        (void) ngx_cpystrn((u_char *) s->ssh.text, (u_char *) s->log,
                           sizeof(s->ssh.text));
        rc = NGX_ERROR;

    } else if (s->pinned_now) {
        ngx_log_error(NGX_LOG_NOTICE, s->c->log, 0,
                      "segura session: pinned host key %s of device %L",
                      s->ssh.host_key_fp, s->device_id);

    } else if (ngx_strcmp(s->pinned_fp, s->ssh.host_key_fp) != 0) {
        s->ssh.err = NGX_SEGURA_WS_ERR_HOST_KEY_MISMATCH;
        (void) ngx_snprintf((u_char *) s->ssh.text, sizeof(s->ssh.text),
                            "host key %s of device %L does not match the "
                            "one pinned meanwhile%Z", s->ssh.host_key_fp,
                            s->device_id);
        rc = NGX_ERROR;
    }

    ngx_segura_connect_resume(&s->connect, rc);
}


static ngx_int_t
ngx_segura_session_accept(ngx_segura_session_t *s, ngx_str_t *key)
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
        || ngx_segura_ws_accept(accept, key->data, key->len) != 0)
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

    /* from here the connection carries WebSocket frames, not HTTP */

    clcf = ngx_http_get_module_loc_conf(r, ngx_http_core_module);

    if (clcf->tcp_nodelay && ngx_tcp_nodelay(c) != NGX_OK) {
        return NGX_ERROR;
    }

    if (c->read->timer_set) {
        ngx_del_timer(c->read);
    }

    if (c->write->timer_set) {
        ngx_del_timer(c->write);
    }

    c->read->handler = ngx_segura_session_client_handler;
    c->write->handler = ngx_segura_session_client_handler;

    s->last_client = ngx_current_msec;
    s->last_any = ngx_current_msec;

    return NGX_OK;
}


static void
ngx_segura_session_connected(ngx_segura_connect_t *cn)
{
    json_t                *json;
    ngx_uint_t             level;
    ngx_connection_t      *c, *peer;
    ngx_segura_session_t  *s;

    s = cn->data;
    c = s->c;

    if (s->state != NGX_SEGURA_SESSION_CONNECT) {
        ngx_log_error(NGX_LOG_ALERT, c->log, 0,
                      "segura session: connected in state %d", s->state);
    }

    s->state = NGX_SEGURA_SESSION_RELAY;

    if (s->ssh.err != NGX_SEGURA_WS_ERR_NONE) {
        level = (s->ssh.err == NGX_SEGURA_WS_ERR_INTERNAL) ? NGX_LOG_ALERT
                                                           : NGX_LOG_ERR;

        if (s->ssh.err == NGX_SEGURA_WS_ERR_CONNECT_TIMEOUT) {
            level = NGX_LOG_ERR;
        }

        ngx_log_error(level, c->log, 0,
                      "segura session: device %L %s: %s",
                      s->device_id, s->device_address, s->ssh.text);

        if (s->client_gone) {
            ngx_segura_session_finish(s);
            return;
        }

        ngx_segura_session_fail(s, s->ssh.err,
                                (char *) ngx_segura_ws_errors[s->ssh.err]
                                         .code.data);
        ngx_segura_session_relay(s);
        return;
    }

    if (cn->peer == NULL) {

        /* given up on: the client left or the worker shuts down */

        if (s->shutdown) {
            ngx_segura_session_shutdown(s);

        } else {
            ngx_segura_session_finish(s);
        }

        return;
    }

    peer = cn->peer;
    cn->peer = NULL;

    peer->data = s;
    peer->read->handler = ngx_segura_session_peer_handler;
    peer->write->handler = ngx_segura_session_peer_handler;

    s->peer = peer;

    c->log->action = "relaying terminal";

    if (ngx_segura_session_audit_start(s) != NGX_OK) {
        ngx_segura_session_fail(s, NGX_SEGURA_WS_ERR_INTERNAL, "internal");
        ngx_segura_session_relay(s);
        return;
    }

    ngx_log_error(NGX_LOG_INFO, c->log, 0,
                  "segura session %s: user \"%s\" key %L device %L "
                  "(%s:%ui) opened in %M ms",
                  s->id, s->identity.username, s->key_id, s->device_id,
                  s->device_address, s->port,
                  ngx_current_msec - cn->started);

    json = json_pack("{s:s, s:s}", "type", "connected", "session", s->id);
    ngx_segura_session_event(s, json);

    ngx_segura_session_arm_timer(s);

    ngx_queue_insert_tail(&ngx_segura_session_live, &s->live);
    s->listed = 1;

    if (s->generation != ngx_segura_watch_generation()) {
        /* a grant changed while the session was being set up */
        ngx_segura_watch_recheck();
    }

    /* the client may have typed during the set-up: read it now */

    ngx_segura_session_relay(s);
}


/*
 * During the set-up the client is not read (what it types waits in the
 * socket), only watched: has it gone?  As
 * ngx_http_upstream_check_broken_connection() does.
 */

static ngx_int_t
ngx_segura_session_client_lost(ngx_connection_t *c)
{
    int        n;
    char       buf[1];
    ngx_err_t  err;

#if (NGX_HAVE_EPOLLRDHUP)

    if ((ngx_event_flags & NGX_USE_EPOLL_EVENT) && ngx_use_epoll_rdhup
        && !c->read->pending_eof)
    {
        return 0;
    }

#endif

    n = recv(c->fd, buf, 1, MSG_PEEK);
    err = ngx_socket_errno;

    if (n > 0) {
        return 0;
    }

    if (n == -1 && err == NGX_EAGAIN) {
        return 0;
    }

    return 1;
}


static ngx_int_t
ngx_segura_session_audit_start(ngx_segura_session_t *s)
{
    u_char         uuid[16];
    char           user[NGX_INT64_LEN + 1], key[NGX_INT64_LEN + 1],
                   dev[NGX_INT64_LEN + 1], port[NGX_INT_T_LEN + 1];
    const char    *params[13];
    ngx_time_t    *tp;

    /*
     * the id is made here, so the session is named at once and the insert
     * can be repeated safely; the names are those of now
     */

    if (RAND_bytes(uuid, sizeof(uuid)) != 1) {
        ngx_log_error(NGX_LOG_ALERT, s->c->log, 0,
                      "segura session: RAND_bytes() failed");
        return NGX_ERROR;
    }

    uuid[6] = (uuid[6] & 0x0f) | 0x40;
    uuid[8] = (uuid[8] & 0x3f) | 0x80;

    (void) ngx_snprintf((u_char *) s->id, sizeof(s->id),
                        "%*xs-%*xs-%*xs-%*xs-%*xs%Z",
                        (size_t) 4, uuid, (size_t) 2, uuid + 4,
                        (size_t) 2, uuid + 6, (size_t) 2, uuid + 8,
                        (size_t) 6, uuid + 10);

    tp = ngx_timeofday();

    (void) ngx_snprintf((u_char *) s->started, sizeof(s->started), "%L%Z",
                        (int64_t) tp->sec * 1000 + tp->msec);
    (void) ngx_snprintf((u_char *) user, sizeof(user), "%L%Z",
                        s->identity.id);
    (void) ngx_snprintf((u_char *) key, sizeof(key), "%L%Z", s->key_id);
    (void) ngx_snprintf((u_char *) dev, sizeof(dev), "%L%Z", s->device_id);
    (void) ngx_snprintf((u_char *) port, sizeof(port), "%ui%Z", s->port);

    params[0] = s->id;
    params[1] = user;
    params[2] = key;
    params[3] = dev;
    params[4] = s->client_addr;
    params[5] = s->node;
    params[6] = s->started;
    params[7] = s->identity.username;
    params[8] = s->key_name;
    params[9] = s->device_name;
    params[10] = s->device_address;
    params[11] = port;
    params[12] = ngx_segura_fleet_worker_id();

    /*
     * the row may be written after what it points at was deleted (the
     * database was away): the references are then null, the names stay
     */

    if (ngx_segura_outbox_add(s->c->log,
            "insert into ssh_sessions (id, user_id, key_id, device_id,"
            " client_addr, node, started_at, username, key_name,"
            " device_name, device_address, device_port, worker_id)"
            " values ($1, (select id from users where id = $2),"
            " (select id from ssh_keys where id = $3),"
            " (select id from devices where id = $4), $5, $6,"
            " to_timestamp($7::bigint / 1000.0), $8, $9, $10, $11, $12,"
            " $13::uuid)"
            " on conflict (id) do nothing",
            13, params)
        != NGX_OK)
    {
        return NGX_ERROR;
    }

    s->audited = 1;

    return NGX_OK;
}


static void
ngx_segura_session_audit_end(ngx_segura_session_t *s)
{
    char          in[NGX_OFF_T_LEN + 1], out[NGX_OFF_T_LEN + 1],
                  status[NGX_INT_T_LEN + 1], ended[NGX_INT64_LEN + 1];
    const char   *params[6];
    ngx_time_t   *tp;

    tp = ngx_timeofday();

    (void) ngx_snprintf((u_char *) ended, sizeof(ended), "%L%Z",
                        (int64_t) tp->sec * 1000 + tp->msec);
    (void) ngx_snprintf((u_char *) in, sizeof(in), "%O%Z", s->bytes_in);
    (void) ngx_snprintf((u_char *) out, sizeof(out), "%O%Z", s->bytes_out);
    (void) ngx_snprintf((u_char *) status, sizeof(status), "%i%Z",
                        s->exit_status);

    params[0] = s->id;
    params[1] = ended;
    params[2] = in;
    params[3] = out;
    params[4] = s->end_reason;
    params[5] = s->exit_status >= 0 ? status : NULL;

    /*
     * final values, so writing it twice changes nothing; a row that
     * another node ended as node_lost (it could not hear this one) gets
     * the truth
     */

    if (ngx_segura_outbox_add(s->c->log,
            "update ssh_sessions set"
            " ended_at = greatest(started_at,"
            "                     to_timestamp($2::bigint / 1000.0)),"
            " bytes_in = $3, bytes_out = $4, end_reason = $5,"
            " exit_status = $6"
            " where id = $1"
            " and (ended_at is null or end_reason = 'node_lost')",
            6, params)
        != NGX_OK)
    {
        ngx_log_error(NGX_LOG_ALERT, s->c->log, 0,
                      "segura session %s: the end of the audit row cannot "
                      "be queued", s->id);
    }
}


/* RELAY and CLOSING, event loop */

static void
ngx_segura_session_client_handler(ngx_event_t *ev)
{
    ngx_connection_t      *c;
    ngx_http_request_t    *r;
    ngx_segura_session_t  *s;

    c = ev->data;
    r = c->data;
    s = ngx_http_get_module_ctx(r, ngx_http_segura_module);

    if (s->state == NGX_SEGURA_SESSION_DONE) {
        return;
    }

    if (s->state == NGX_SEGURA_SESSION_CONNECT) {

        /* the set-up goes on unless the client left or the worker exits */

        if (c->close) {
            s->shutdown = 1;
            ngx_segura_connect_abort(&s->connect, NGX_SEGURA_WS_ERR_NONE,
                                     "worker shutdown");

        } else if (!ev->write && ngx_segura_session_client_lost(c)) {
            ngx_log_error(NGX_LOG_INFO, c->log, 0,
                          "segura session: the client left during the "
                          "set-up");
            s->client_gone = 1;
            s->end_reason = "client_gone";
            ngx_segura_connect_abort(&s->connect, NGX_SEGURA_WS_ERR_NONE,
                                     "client gone");
        }

        return;
    }

    if (c->close) {
        /* worker_shutdown_timeout: the worker is going away */
        ngx_segura_session_shutdown(s);
        return;
    }

    ngx_segura_session_relay(s);
}


static void
ngx_segura_session_peer_handler(ngx_event_t *ev)
{
    ngx_connection_t      *peer;
    ngx_segura_session_t  *s;

    peer = ev->data;
    s = peer->data;

    if (s->state != NGX_SEGURA_SESSION_RELAY
        && s->state != NGX_SEGURA_SESSION_CLOSING)
    {
        return;
    }

    if (peer->close) {
        ngx_segura_session_shutdown(s);
        return;
    }

    ngx_segura_session_relay(s);
}


static void
ngx_segura_session_shutdown(ngx_segura_session_t *s)
{
    ngx_log_error(NGX_LOG_INFO, s->c->log, 0,
                  "segura session %s: closed by the worker's shutdown",
                  s->id);

    ngx_segura_session_close(s, NGX_SEGURA_WS_CLOSE_GOING_AWAY,
                             "server shutdown", "shutdown");

    /*
     * one attempt to tell the client, whatever nginx marked the
     * connection with: the worker is leaving
     */

    s->c->error = 0;
    s->c->write->ready = 1;
    (void) ngx_segura_session_send(s);

    ngx_segura_session_finish(s);
}


static void
ngx_segura_session_relay(ngx_segura_session_t *s)
{
    int                pending;
    ngx_int_t          progress;
    ngx_uint_t         pass;
    ngx_connection_t  *c;

    c = s->c;

    for (pass = 0; pass < NGX_SEGURA_SESSION_PASSES; pass++) {

        progress = 0;

        /* frames already queued go first: write before reading more */

        if (ngx_segura_session_send(s) == NGX_ERROR) {
            s->client_gone = 1;
            break;
        }

        if (s->state == NGX_SEGURA_SESSION_RELAY
            || (s->state == NGX_SEGURA_SESSION_CLOSING && !s->client_closed))
        {
            switch (ngx_segura_session_to_device(s)) {
            case NGX_ERROR:
                s->client_gone = 1;
                goto done;
            case NGX_OK:
                progress = 1;
                break;
            default:
                break;
            }
        }

        if (s->state == NGX_SEGURA_SESSION_RELAY && s->ssh.session != NULL) {
            if (ngx_segura_session_from_device(s) == NGX_OK) {
                progress = 1;
            }
        }

        if (s->out.pos != s->out.last) {
            if (ngx_segura_session_send(s) == NGX_ERROR) {
                s->client_gone = 1;
                break;
            }
        }

        if (!progress) {
            break;
        }
    }

    if (pass == NGX_SEGURA_SESSION_PASSES) {
        /* let other connections of this worker run; resume soon */
        ngx_post_event(c->read, &ngx_posted_events);
    }

done:

    if (s->client_gone) {
        if (s->state == NGX_SEGURA_SESSION_RELAY) {
            s->end_reason = "client_gone";
            ngx_log_error(NGX_LOG_INFO, c->log, 0,
                          "segura session %s: client gone", s->id);
        }

        ngx_segura_session_finish(s);
        return;
    }

    if (s->state == NGX_SEGURA_SESSION_CLOSING && s->close_queued
        && s->out.pos == s->out.last
        && (s->client_closed || s->device_done))
    {
        /*
         * RFC 6455 7.1.1: the server closes the TCP connection first, once
         * both close frames went, or ours went after the shell ended
         */

        if (s->client_closed || s->closing_since + NGX_SEGURA_SESSION_CLOSE_WAIT
                                <= ngx_current_msec)
        {
            ngx_segura_session_finish(s);
            return;
        }
    }

    if (ngx_handle_read_event(c->read, 0) != NGX_OK
        || ngx_handle_write_event(c->write, 0) != NGX_OK)
    {
        ngx_segura_session_finish(s);
        return;
    }

    if (s->ssh.session != NULL
        && (ssh_get_poll_flags(s->ssh.session) & SSH_WRITE_PENDING))
    {
        /* libssh could not send everything: it tries again when writable */
        (void) ssh_blocking_flush(s->ssh.session, 0);
    }

    if (s->peer != NULL && s->state == NGX_SEGURA_SESSION_RELAY
        && (size_t) (s->out.end - s->out.last)
           >= NGX_SEGURA_SESSION_RESERVE + 4 + 1024)
    {
        /*
         * libssh reads the socket 4 KiB per call and may have stopped
         * short of EAGAIN: with edge-triggered events the rest would
         * wait for the next packet, so look whether bytes are left
         */

        if (!s->peer->read->posted
            && ((ioctl(s->ssh.fd, FIONREAD, &pending) == 0 && pending > 0)
                || s->ssh.buffered[0] || s->ssh.buffered[1]))
        {
            /*
             * the flush above, or a write, may have read packets into
             * libssh's channel buffers (its data callback says so): they
             * must not wait for the socket's next edge
             */

            ngx_post_event(s->peer->read, &ngx_posted_events);
        }
    }
}


static ngx_int_t
ngx_segura_session_send(ngx_segura_session_t *s)
{
    ssize_t            n;
    ngx_connection_t  *c;

    c = s->c;

    while (s->out.pos < s->out.last) {

        if (!c->write->ready) {
            return NGX_AGAIN;
        }

        n = c->send(c, s->out.pos, s->out.last - s->out.pos);

        if (n == NGX_ERROR) {
            return NGX_ERROR;
        }

        if (n == NGX_AGAIN) {
            return NGX_AGAIN;
        }

        s->out.pos += n;
    }

    s->out.pos = s->out.start;
    s->out.last = s->out.start;

    if (s->close_queued) {
        /* RFC 6455 5.5.1: nothing goes after our close frame */
        s->pong_pending = 0;
    }

    if (s->pong_pending
        && ngx_segura_session_queue(s, NGX_SEGURA_WS_OP_PONG, s->pong,
                                    s->pong_len)
           == NGX_OK)
    {
        s->pong_pending = 0;
        return ngx_segura_session_send(s);
    }

    return NGX_OK;
}


/*
 * Client -> device.  Returns NGX_OK when it moved bytes, NGX_AGAIN when
 * it could not, NGX_ERROR when the client is gone.
 */

static ngx_int_t
ngx_segura_session_to_device(ngx_segura_session_t *s)
{
    int                     w;
    size_t                  consumed;
    ssize_t                 n;
    ngx_int_t               moved, rc;
    ngx_connection_t       *c;
    ngx_segura_ws_event_t   ev;

    c = s->c;
    moved = 0;

    for ( ;; ) {

        /* what the channel refused last time goes first */

        if (s->pending_len) {
            if (s->ssh.channel == NULL) {
                s->pending_len = 0;

            } else {
                w = ssh_channel_write(s->ssh.channel, s->pending,
                                      (uint32_t) s->pending_len);

                if (w == SSH_ERROR) {
                    s->device_done = 1;
                    ngx_segura_session_fail(s,
                                   NGX_SEGURA_WS_ERR_SESSION_TERMINATED,
                                   "device_gone");
                    return NGX_OK;
                }

                if (w > 0) {
                    s->pending += w;
                    s->pending_len -= w;
                    s->bytes_in += w;
                    s->last_any = ngx_current_msec;
                    moved = 1;
                }

                if (s->pending_len) {
                    /* the SSH window is shut: stop reading the client */
                    return moved ? NGX_OK : NGX_AGAIN;
                }
            }
        }

        /* the frames already read */

        while (s->in.pos < s->in.last) {

            rc = ngx_segura_ws_parse(&s->ws, s->in.pos,
                                     s->in.last - s->in.pos, &consumed, &ev);
            s->in.pos += consumed;

            if (rc == NGX_SEGURA_WS_NEED_MORE) {
                break;
            }

            if (ngx_segura_session_frame(s, &ev) != NGX_OK) {
                return NGX_OK;
            }

            if (s->pending_len) {
                break;
            }
        }

        if (s->pending_len) {
            continue;
        }

        if (s->in.pos == s->in.last) {
            s->in.pos = s->in.start;
            s->in.last = s->in.start;
        }

        if (s->state != NGX_SEGURA_SESSION_RELAY
            && s->state != NGX_SEGURA_SESSION_CLOSING)
        {
            return NGX_OK;
        }

        if (s->client_closed || !c->read->ready) {
            return moved ? NGX_OK : NGX_AGAIN;
        }

        n = c->recv(c, s->in.last, s->in.end - s->in.last);

        if (n == NGX_AGAIN) {
            return moved ? NGX_OK : NGX_AGAIN;
        }

        if (n == NGX_ERROR || n == 0) {
            return NGX_ERROR;
        }

        s->in.last += n;
        s->last_client = ngx_current_msec;
        moved = 1;
    }
}


static ngx_int_t
ngx_segura_session_frame(ngx_segura_session_t *s, ngx_segura_ws_event_t *ev)
{
    int  w;

    switch (ev->type) {

    case NGX_SEGURA_WS_DATA:

        if (ev->opcode == NGX_SEGURA_WS_OP_TEXT) {

            /* a JSON control message, collected whole */

            if (ev->flags & NGX_SEGURA_WS_FIRST) {
                s->text_len = 0;
                s->text_skip = 0;
            }

            if (s->text_len + ev->len > sizeof(s->text)) {
                s->text_skip = 1;

            } else if (!s->text_skip) {
                ngx_memcpy(s->text + s->text_len, ev->data, ev->len);
                s->text_len += ev->len;
            }

            if (ev->flags & NGX_SEGURA_WS_LAST) {
                ngx_segura_session_control(s);
            }

            return NGX_OK;
        }

        if (ev->len == 0 || s->state != NGX_SEGURA_SESSION_RELAY
            || s->ssh.channel == NULL)
        {
            return NGX_OK;
        }

        /* keystrokes and paste go to the shell byte for byte */

        s->last_any = ngx_current_msec;

        w = ssh_channel_write(s->ssh.channel, ev->data, (uint32_t) ev->len);

        if (w == SSH_ERROR) {
            s->device_done = 1;
            ngx_segura_session_fail(s, NGX_SEGURA_WS_ERR_SESSION_TERMINATED,
                                    "device_gone");
            return NGX_ERROR;
        }

        s->bytes_in += w;

        if ((size_t) w < ev->len) {
            s->pending = ev->data + w;
            s->pending_len = ev->len - w;
        }

        return NGX_OK;

    case NGX_SEGURA_WS_PING:

        /* RFC 6455 5.5.3: only the latest ping needs its pong */

        ngx_memcpy(s->pong, ev->data, ev->len);
        s->pong_len = ev->len;
        s->pong_pending = 1;

        return NGX_OK;

    case NGX_SEGURA_WS_PONG:
        return NGX_OK;

    case NGX_SEGURA_WS_CLOSE:

        s->client_closed = 1;

        if (s->state == NGX_SEGURA_SESSION_RELAY) {
            ngx_log_error(NGX_LOG_INFO, s->c->log, 0,
                          "segura session %s: client closed with %ui",
                          s->id, (ngx_uint_t) ev->code);

            /* echo the code; 1005 means none was given */

            ngx_segura_session_close(s,
                                     ev->code == NGX_SEGURA_WS_CLOSE_NO_STATUS
                                     ? NGX_SEGURA_WS_CLOSE_NORMAL : ev->code,
                                     NULL, "client_closed");
        }

        return NGX_ERROR;

    default: /* NGX_SEGURA_WS_ERROR */

        ngx_log_error(NGX_LOG_INFO, s->c->log, 0,
                      "segura session %s: client sent a bad frame: %s, "
                      "closing with %ui", s->id, ev->reason,
                      (ngx_uint_t) ev->code);

        /* nothing the client sends after a bad frame can be trusted */

        s->client_closed = 1;
        s->in.pos = s->in.last;

        ngx_segura_session_close(s, ev->code, ev->reason, "protocol_error");

        return NGX_ERROR;
    }
}


static void
ngx_segura_session_control(ngx_segura_session_t *s)
{
    json_t        *json, *type;
    json_int_t     cols, rows;
    json_error_t   error;

    json = NULL;

    if (s->text_skip) {
        goto bad;
    }

    json = json_loadb((char *) s->text, s->text_len, JSON_REJECT_DUPLICATES,
                      &error);
    if (json == NULL || !json_is_object(json)) {
        goto bad;
    }

    type = json_object_get(json, "type");

    if (!json_is_string(type)) {
        goto bad;
    }

    if (ngx_strcmp(json_string_value(type), "resize") == 0) {

        if (!json_is_integer(json_object_get(json, "cols"))
            || !json_is_integer(json_object_get(json, "rows")))
        {
            goto bad;
        }

        cols = json_integer_value(json_object_get(json, "cols"));
        rows = json_integer_value(json_object_get(json, "rows"));

        if (cols < 1 || cols > NGX_SEGURA_SESSION_MAX_DIM
            || rows < 1 || rows > NGX_SEGURA_SESSION_MAX_DIM)
        {
            goto bad;
        }

        json_decref(json);

        if (s->state == NGX_SEGURA_SESSION_RELAY && s->ssh.channel != NULL
            && ssh_channel_change_pty_size(s->ssh.channel, (int) cols,
                                           (int) rows)
               == SSH_ERROR)
        {
            ngx_log_error(NGX_LOG_ERR, s->c->log, 0,
                          "segura session %s: "
                          "ssh_channel_change_pty_size() failed: %s",
                          s->id, ssh_get_error(s->ssh.session));
        }

        return;
    }

bad:

    json_decref(json);

    ngx_log_error(NGX_LOG_INFO, s->c->log, 0,
                  "segura session %s: client sent a bad control message",
                  s->id);

    json = json_pack("{s:s, s:s, s:s}", "type", "error",
                     "code", "bad_message",
                     "message", ngx_segura_ws_errors
                                [NGX_SEGURA_WS_ERR_BAD_MESSAGE].message);
    ngx_segura_session_event(s, json);
}


/*
 * Device -> client.  Returns NGX_OK when it moved bytes, NGX_AGAIN when
 * not; the session may have moved to CLOSING.
 */

static ngx_int_t
ngx_segura_session_from_device(ngx_segura_session_t *s)
{
    int            n, is_stderr, status;
    u_char        *p;
    size_t         room, hlen;
    json_t        *json;
    ngx_int_t      moved;
    ssh_channel    ch;

    ch = s->ssh.channel;
    moved = 0;

    for (is_stderr = 0; is_stderr < 2; is_stderr++) {

        if (is_stderr && !s->ssh.buffered[1]) {
            /*
             * no stderr packet came (with a pty the device sends none):
             * a read would only cost libssh a poll() and a recv()
             */
            break;
        }

        for ( ;; ) {

            /*
             * the payload is read 4 bytes behind the frame header's start:
             * room for the 16-bit length form; a short read moves the
             * payload 2 bytes back for the 7-bit form
             */

            p = s->out.last;

            if ((size_t) (s->out.end - p) < NGX_SEGURA_SESSION_RESERVE + 4) {
                /* the client does not take it: leave it to the SSH window */
                return moved ? NGX_OK : NGX_AGAIN;
            }

            room = s->out.end - p - NGX_SEGURA_SESSION_RESERVE - 4;

            if (room > 65535) {
                room = 65535;
            }

            n = ssh_channel_read_nonblocking(ch, p + 4, (uint32_t) room,
                                             is_stderr);

            if (n == 0 || n == SSH_EOF) {
                /* libssh's buffer of this stream is empty */
                s->ssh.buffered[is_stderr] = 0;
                break;
            }

            if (n < 0) {
                ngx_log_error(NGX_LOG_ERR, s->c->log, 0,
                              "segura session %s: "
                              "ssh_channel_read_nonblocking() failed: %s",
                              s->id, ssh_get_error(s->ssh.session));
                s->device_done = 1;
                ngx_segura_session_fail(s,
                                        NGX_SEGURA_WS_ERR_SESSION_TERMINATED,
                                        "device_gone");
                return NGX_OK;
            }

            hlen = ngx_segura_ws_frame_header(p, NGX_SEGURA_WS_OP_BINARY, 1,
                                              (uint64_t) n);
            if (hlen == 2) {
                ngx_memmove(p + 2, p + 4, n);
            }

            s->out.last = p + hlen + n;
            s->bytes_out += n;
            s->last_any = ngx_current_msec;
            moved = 1;
        }
    }

    if (!ssh_channel_is_eof(ch) && !ssh_channel_is_closed(ch)) {
        return moved ? NGX_OK : NGX_AGAIN;
    }

    if (ssh_channel_poll(ch, 0) > 0 || ssh_channel_poll(ch, 1) > 0) {
        return moved ? NGX_OK : NGX_AGAIN;
    }

    /*
     * the shell ended; OpenSSH sends exit-status after EOF and before
     * close, so wait for the close unless the session is gone
     */

    if (!ssh_channel_is_closed(ch) && ssh_is_connected(s->ssh.session)) {

        /*
         * after EOF libssh reads the socket only when asked: this asks
         * once, without blocking, for the exit status and the close
         */

        (void) ssh_channel_get_exit_status(ch);

        if (!ssh_channel_is_closed(ch) && ssh_is_connected(s->ssh.session)) {
            return moved ? NGX_OK : NGX_AGAIN;
        }
    }

    status = ssh_channel_get_exit_status(ch);

    s->exit_status = status;
    s->device_done = 1;

    ngx_log_error(NGX_LOG_INFO, s->c->log, 0,
                  "segura session %s: shell exited with %d", s->id, status);

    if (status >= 0) {
        json = json_pack("{s:s, s:i}", "type", "exit", "status", status);

    } else {
        json = json_pack("{s:s, s:n}", "type", "exit", "status");
    }

    ngx_segura_session_event(s, json);
    ngx_segura_session_close(s, NGX_SEGURA_WS_CLOSE_NORMAL, NULL, "exit");

    return NGX_OK;
}


static ngx_int_t
ngx_segura_session_queue(ngx_segura_session_t *s, unsigned opcode,
    u_char *data, size_t len)
{
    size_t  hlen;

    if ((size_t) (s->out.end - s->out.last) < NGX_SEGURA_WS_HEADER_MAX + len)
    {
        return NGX_AGAIN;
    }

    hlen = ngx_segura_ws_frame_header(s->out.last, opcode, 1, len);
    s->out.last += hlen;
    s->out.last = ngx_cpymem(s->out.last, data, len);

    return NGX_OK;
}


static void
ngx_segura_session_event(ngx_segura_session_t *s, json_t *json)
{
    char    *text;
    size_t   len;

    if (json == NULL) {
        return;
    }

    text = json_dumps(json, JSON_COMPACT);
    json_decref(json);

    if (text == NULL) {
        return;
    }

    len = ngx_strlen(text);

    /* events are small and few; the reserve at the end of out holds them */

    if (len > NGX_SEGURA_SESSION_RESERVE / 2
        || ngx_segura_session_queue(s, NGX_SEGURA_WS_OP_TEXT, (u_char *) text,
                                    len)
           != NGX_OK)
    {
        ngx_log_error(NGX_LOG_ALERT, s->c->log, 0,
                      "segura session %s: no room for an event", s->id);
    }

    free(text);
}


static void
ngx_segura_session_fail(ngx_segura_session_t *s, ngx_segura_ws_err_e err,
    const char *end_reason)
{
    json_t                 *json;
    ngx_segura_ws_error_t  *e;

    e = &ngx_segura_ws_errors[err];

    json = json_pack("{s:s, s:s%, s:s}", "type", "error",
                     "code", e->code.data, e->code.len,
                     "message", e->message);
    ngx_segura_session_event(s, json);

    ngx_segura_session_close(s, e->close, (char *) e->code.data,
                             end_reason);
}


static void
ngx_segura_session_close(ngx_segura_session_t *s, ngx_uint_t code,
    const char *reason, const char *end_reason)
{
    u_char  payload[NGX_SEGURA_WS_CONTROL_MAX];
    size_t  len;

    if (s->close_queued) {
        return;
    }

    len = ngx_segura_ws_close_payload(payload, (unsigned) code,
                                      (const u_char *) reason,
                                      reason ? ngx_strlen(reason) : 0);

    if (ngx_segura_session_queue(s, NGX_SEGURA_WS_OP_CLOSE, payload, len)
        != NGX_OK)
    {
        ngx_log_error(NGX_LOG_ALERT, s->c->log, 0,
                      "segura session %s: no room for the close frame",
                      s->id);
    }

    s->close_queued = 1;
    s->closing_since = ngx_current_msec;
    s->state = NGX_SEGURA_SESSION_CLOSING;

    if (s->end_reason == NULL) {
        s->end_reason = end_reason;
    }

    /* the device side is done: nothing more goes to or comes from it */

    ngx_segura_session_detach(s);

    ngx_segura_session_arm_timer(s);
}


static void
ngx_segura_session_timer_handler(ngx_event_t *ev)
{
    u_char                 payload[4];
    ngx_msec_t             now;
    ngx_segura_session_t  *s;

    s = ev->data;
    now = ngx_current_msec;

    if (s->state == NGX_SEGURA_SESSION_CLOSING) {
        if (now - s->closing_since >= NGX_SEGURA_SESSION_CLOSE_WAIT) {
            ngx_log_error(NGX_LOG_INFO, s->c->log, 0,
                          "segura session %s: no close frame from the "
                          "client in time", s->id);
            ngx_segura_session_finish(s);
            return;
        }

        ngx_segura_session_arm_timer(s);
        return;
    }

    if (s->state != NGX_SEGURA_SESSION_RELAY) {
        return;
    }

    if (s->slcf->idle_timeout
        && now - s->last_any >= s->slcf->idle_timeout)
    {
        ngx_log_error(NGX_LOG_INFO, s->c->log, 0,
                      "segura session %s: idle timeout", s->id);
        ngx_segura_session_fail(s, NGX_SEGURA_WS_ERR_IDLE_TIMEOUT,
                                "idle_timeout");
        ngx_segura_session_relay(s);
        return;
    }

    if (now - s->last_client >= s->slcf->ping_interval) {

        /* RFC 6455 5.5.2: keep middleboxes from dropping a quiet client */

        (void) ngx_snprintf(payload, sizeof(payload), "%04xD",
                            (uint32_t) (now & 0xffff));

        if (ngx_segura_session_queue(s, NGX_SEGURA_WS_OP_PING, payload,
                                     sizeof(payload))
            == NGX_OK)
        {
            s->last_client = now;
        }
    }

    ngx_segura_session_arm_timer(s);
    ngx_segura_session_relay(s);
}


static void
ngx_segura_session_arm_timer(ngx_segura_session_t *s)
{
    ngx_msec_t  now, next, t;

    if (s->timer.handler == NULL) {
        s->timer.handler = ngx_segura_session_timer_handler;
        s->timer.data = s;
        s->timer.log = s->c->log;
    }

    now = ngx_current_msec;

    if (s->state == NGX_SEGURA_SESSION_CLOSING) {
        next = s->closing_since + NGX_SEGURA_SESSION_CLOSE_WAIT - now;

    } else {
        /* one timer for ping and idle: never a timer per byte */

        next = s->last_client + s->slcf->ping_interval - now;

        if ((ngx_msec_int_t) next <= 0) {
            next = s->slcf->ping_interval;
        }

        if (s->slcf->idle_timeout) {
            t = s->last_any + s->slcf->idle_timeout - now;
            if ((ngx_msec_int_t) t < (ngx_msec_int_t) next) {
                next = (ngx_msec_int_t) t > 0 ? t : 1;
            }
        }
    }

    if ((ngx_msec_int_t) next <= 0) {
        next = 1;
    }

    ngx_add_timer(&s->timer, next);
}


static void
ngx_segura_session_finish(ngx_segura_session_t *s)
{
    if (s->state == NGX_SEGURA_SESSION_DONE) {
        return;
    }

    if (s->end_reason == NULL) {
        s->end_reason = s->client_gone ? "client_gone" : "closed";
    }

    ngx_segura_session_detach(s);

    if (s->timer.timer_set) {
        ngx_del_timer(&s->timer);
    }

    if (s->audited) {
        ngx_log_error(NGX_LOG_INFO, s->c->log, 0,
                      "segura session %s: ended (%s), %O bytes in, "
                      "%O bytes out", s->id, s->end_reason, s->bytes_in,
                      s->bytes_out);

        ngx_segura_session_audit_end(s);
    }

    s->state = NGX_SEGURA_SESSION_DONE;
    ngx_segura_session_finalize(s);
}


static void
ngx_segura_session_finalize(ngx_segura_session_t *s)
{
    ngx_connection_t    *c;
    ngx_http_request_t  *r;

    r = s->r;
    c = s->c;

    ngx_segura_session_detach(s);

    if (s->timer.timer_set) {
        ngx_del_timer(&s->timer);
    }

    /* drops the reference taken by the handler and closes */

    ngx_http_finalize_request(r, NGX_HTTP_CLOSE);
    ngx_http_run_posted_requests(c);
}


static void
ngx_segura_session_detach(ngx_segura_session_t *s)
{
    if (s->listed) {
        ngx_queue_remove(&s->live);
        s->listed = 0;
    }

    if (s->peer != NULL) {
        ngx_segura_connect_release_peer(s->peer);
        s->peer = NULL;
    }

    if (s->ssh.channel != NULL && s->ssh.session != NULL
        && ssh_is_connected(s->ssh.session))
    {
        /* say goodbye without waiting for the answer */
        (void) ssh_channel_close(s->ssh.channel);
    }

    ngx_segura_ssh_close(&s->ssh);
}


static void
ngx_segura_session_cleanup(void *data)
{
    ngx_segura_session_t *s = data;

    /* the request pool goes: on every path nothing of the session stays */

    if (ngx_segura_connect_busy(&s->connect)) {
        ngx_log_error(NGX_LOG_ALERT, s->c->log, 0,
                      "segura session: freed during the device set-up");
    }

    ngx_segura_session_detach(s);

    if (s->timer.timer_set) {
        ngx_del_timer(&s->timer);
    }

    if (s->watchdog.timer_set) {
        ngx_del_timer(&s->watchdog);
    }

    OPENSSL_cleanse(s->token, sizeof(s->token));
}


void
ngx_segura_session_init_process(void)
{
    ngx_queue_init(&ngx_segura_session_live);
}


ngx_uint_t
ngx_segura_session_live_count(void)
{
    ngx_uint_t    n;
    ngx_queue_t  *q;

    n = 0;

    for (q = ngx_queue_head(&ngx_segura_session_live);
         q != ngx_queue_sentinel(&ngx_segura_session_live);
         q = ngx_queue_next(q))
    {
        n++;
    }

    return n;
}


void
ngx_segura_session_live_get(ngx_segura_session_ref_t *refs, ngx_uint_t n)
{
    ngx_uint_t             i;
    ngx_queue_t           *q;
    ngx_segura_session_t  *s;

    i = 0;

    for (q = ngx_queue_head(&ngx_segura_session_live);
         q != ngx_queue_sentinel(&ngx_segura_session_live) && i < n;
         q = ngx_queue_next(q))
    {
        s = ngx_queue_data(q, ngx_segura_session_t, live);

        ngx_memcpy(refs[i].id, s->id, sizeof(refs[i].id));
        refs[i].user_id = s->identity.id;
        refs[i].key_id = s->key_id;
        refs[i].device_id = s->device_id;
        i++;
    }
}


void
ngx_segura_session_end(const char *id, ngx_uint_t by_admin)
{
    ngx_queue_t           *q;
    ngx_segura_session_t  *s;

    /* the id came from this worker's own list, through the database */

    for (q = ngx_queue_head(&ngx_segura_session_live);
         q != ngx_queue_sentinel(&ngx_segura_session_live);
         q = ngx_queue_next(q))
    {
        s = ngx_queue_data(q, ngx_segura_session_t, live);

        if (ngx_strcmp(s->id, id) != 0 || s->state != NGX_SEGURA_SESSION_RELAY)
        {
            continue;
        }

        ngx_log_error(NGX_LOG_NOTICE, s->c->log, 0,
                      "segura session %s: %s", s->id,
                      by_admin ? "ended by an administrator"
                               : "access revoked");

        /* fail() takes the session off the list: stop iterating */

        ngx_segura_session_fail(s, by_admin ? NGX_SEGURA_WS_ERR_ENDED
                                            : NGX_SEGURA_WS_ERR_REVOKED,
                                by_admin ? "ended_by_admin"
                                         : "access_revoked");
        ngx_segura_session_relay(s);
        return;
    }
}


ngx_int_t
ngx_segura_session_add_variables(ngx_conf_t *cf)
{
    ngx_http_variable_t  *var, *v;

    for (v = ngx_segura_session_vars; v->name.len; v++) {
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
ngx_segura_session_variable(ngx_http_request_t *r,
    ngx_http_variable_value_t *v, uintptr_t data)
{
    u_char                *p;
    ngx_segura_session_t  *s;

    s = ngx_http_get_module_ctx(r->main, ngx_http_segura_module);

    if (s == NULL) {
        v->not_found = 1;
        return NGX_OK;
    }

    switch (data) {

    case 0:
        p = (u_char *) s->id;
        v->len = ngx_strlen(p);
        break;

    case 1:
        p = (u_char *) s->identity.username;
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
