
/*
 * Copyright (C) ngx_segura_module authors
 */


/*
 * The terminal: a shell on a device and everything that belongs to it
 * rather than to whoever looks at it.  It owns the device set-up
 * (ngx_segura_connect.c, with the host-key check and the trust-on-first-
 * use pin in a pool thread), the SSH session and channel with their
 * socket, the idle timeout, the byte counts and exit status, the audit
 * row (written through ngx_segura_outbox.c), its recording
 * (ngx_segura_recorder.c: what read returned, what write took when input
 * is recorded, resizes, the exit), and its entry in the worker's live
 * registry (ngx_segura_live.c).  It has a pool and a log
 * of its own, so it does not depend on the HTTP request that made it:
 * viewers (ngx_segura_relay.c) attach to it and may go before it ends.
 *
 *   NEW      made by the handshake, filled by its pool thread
 *   CONNECT  the device set-up runs
 *   LIVE     the shell is open; registered as live
 *   ENDED    every resource released, the audit end queued; the pool
 *            goes in a posted event, so that no caller up the stack
 *            touches freed memory
 *
 * Every end goes through ngx_segura_terminal_end(), once.  An end asked
 * for while the set-up is paused in a pool thread waits for the set-up
 * to give up (ngx_segura_connect_abort()), so nothing is freed under a
 * pool thread.
 *
 * Event loop only, but for the pin task, which touches only its own
 * fields of the terminal while the set-up waits for it.
 */


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>
#include "ngx_segura.h"
#include "ngx_segura_connect.h"
#include "ngx_segura_db.h"
#include "ngx_segura_fleet.h"
#include "ngx_segura_live.h"
#include "ngx_segura_metrics.h"
#include "ngx_segura_outbox.h"
#include "ngx_segura_ssh.h"
#include "ngx_segura_terminal.h"
#include "ngx_segura_watch.h"

#include <openssl/crypto.h>
#include <openssl/rand.h>
#include <sys/ioctl.h>


#define NGX_SEGURA_TERMINAL_POOL_SIZE  16384
#define NGX_SEGURA_TERMINAL_REPOLL     1      /* ms */
#define NGX_SEGURA_TERMINAL_EXIT_LOOK  1000   /* ms, while detached */


static u_char *ngx_segura_terminal_log_error(ngx_log_t *log, u_char *buf,
    size_t len);
static ngx_int_t ngx_segura_terminal_host_key(ngx_segura_connect_t *cn);
static void ngx_segura_terminal_pin(void *data, ngx_log_t *log);
static void ngx_segura_terminal_pin_done(ngx_event_t *ev);
static void ngx_segura_terminal_connected(ngx_segura_connect_t *cn);
static ngx_int_t ngx_segura_terminal_audit_start(ngx_segura_terminal_t *t);
static void ngx_segura_terminal_audit_end(ngx_segura_terminal_t *t);
static void ngx_segura_terminal_peer_handler(ngx_event_t *ev);
static ngx_int_t ngx_segura_terminal_exited(ngx_segura_terminal_t *t);
static void ngx_segura_terminal_repoll(ngx_event_t *ev);
static ngx_int_t ngx_segura_terminal_make_token(ngx_segura_terminal_t *t);
static void ngx_segura_terminal_absorb(ngx_segura_terminal_t *t);
static void ngx_segura_terminal_resume_expired(ngx_event_t *ev);
static void ngx_segura_terminal_audit_attach(ngx_segura_terminal_t *t,
    const char *action);
static void ngx_segura_terminal_idle_handler(ngx_event_t *ev);
static void ngx_segura_terminal_arm_idle(ngx_segura_terminal_t *t);
static void ngx_segura_terminal_record_wake(void *data);
static void ngx_segura_terminal_live_end(ngx_segura_live_t *l,
    ngx_uint_t by_admin);
static void ngx_segura_terminal_live_watched(ngx_segura_live_t *l,
    const char *by, ngx_uint_t left);
static void ngx_segura_terminal_live_moderate(ngx_segura_live_t *l,
    ngx_segura_live_action_e action, const char *by, const char *text);
static void ngx_segura_terminal_tell(ngx_segura_terminal_t *t, u_char *text,
    size_t len);
static void ngx_segura_terminal_tee(ngx_segura_terminal_t *t, u_char *data,
    size_t len);
static void ngx_segura_terminal_tell_watched(ngx_segura_terminal_t *t,
    const char *by, ngx_uint_t left);
static void ngx_segura_terminal_release(ngx_segura_terminal_t *t);
static void ngx_segura_terminal_free(ngx_event_t *ev);


ngx_segura_terminal_t *
ngx_segura_terminal_create(ngx_log_t *log)
{
    ngx_pool_t             *pool;
    ngx_segura_terminal_t  *t;

    pool = ngx_create_pool(NGX_SEGURA_TERMINAL_POOL_SIZE, log);
    if (pool == NULL) {
        return NULL;
    }

    t = ngx_pcalloc(pool, sizeof(ngx_segura_terminal_t));
    if (t == NULL) {
        ngx_destroy_pool(pool);
        return NULL;
    }

    t->pool = pool;

    /* the error log of where the session was asked for, with our context */

    t->log = *log;
    t->log.handler = ngx_segura_terminal_log_error;
    t->log.data = t;
    t->log.action = NULL;
    pool->log = &t->log;

    t->state = NGX_SEGURA_TERMINAL_NEW;
    t->ssh.fd = (ngx_socket_t) -1;
    ngx_queue_init(&t->watchers);
    t->exit_status = -1;

    return t;
}


/* a terminal that never started: the handshake gave up */

void
ngx_segura_terminal_destroy(ngx_segura_terminal_t *t)
{
    if (t->state != NGX_SEGURA_TERMINAL_NEW) {
        ngx_log_error(NGX_LOG_ALERT, &t->log, 0,
                      "segura session: destroying a started terminal");
        return;
    }

    ngx_segura_ssh_close(&t->ssh);
    ngx_destroy_pool(t->pool);
}


static u_char *
ngx_segura_terminal_log_error(ngx_log_t *log, u_char *buf, size_t len)
{
    u_char                 *p;
    ngx_segura_terminal_t  *t;

    t = log->data;
    p = buf;

    if (log->action) {
        p = ngx_snprintf(p, len, " while %s", log->action);
        len -= p - buf;
        buf = p;
    }

    p = ngx_snprintf(p, len, ", client: %s, user: \"%s\", device: %L",
                     t->client_addr ? t->client_addr : "-",
                     t->identity.username, t->device_id);
    len -= p - buf;
    buf = p;

    if (t->id[0]) {
        p = ngx_snprintf(p, len, ", session: %s", t->id);
    }

    return p;
}


void
ngx_segura_terminal_start(ngx_segura_terminal_t *t, ngx_segura_viewer_t *v)
{
    ngx_segura_connect_t  *cn;

    t->viewer = v;
    v->terminal = t;

    t->state = NGX_SEGURA_TERMINAL_CONNECT;
    t->last_any = ngx_current_msec;

    if (t->ssh.err != NGX_SEGURA_WS_ERR_NONE) {
        /* the handshake could not open the key */
        ngx_segura_terminal_end(t, "key_unusable", t->ssh.err);
        return;
    }

    t->ssh.username = t->username;

    cn = &t->connect;

    cn->host.data = (u_char *) t->device_address;
    cn->host.len = ngx_strlen(t->device_address);
    cn->port = (in_port_t) t->port;
    cn->timeout = t->slcf->connect_timeout;
    cn->resolver = t->resolver;
    cn->resolver_timeout = t->resolver_timeout;
    cn->thread_pool = t->smcf->thread_pool;
    cn->log = &t->log;
    cn->pool = t->pool;
    cn->ssh = &t->ssh;
    cn->host_key = ngx_segura_terminal_host_key;
    cn->done = ngx_segura_terminal_connected;
    cn->data = t;

    ngx_segura_connect_start(cn);
}


/* the key exchange is done: is this the device's host key? */

static ngx_int_t
ngx_segura_terminal_host_key(ngx_segura_connect_t *cn)
{
    ngx_segura_terminal_t *t = cn->data;

    ngx_thread_task_t       *task;
    ngx_segura_terminal_t  **ctx;

    switch (ngx_segura_ssh_host_key(&t->ssh, t->pinned_fp,
                                    t->slcf->host_key_policy
                                    == NGX_SEGURA_HOST_KEY_STRICT))
    {
    case NGX_OK:
        return NGX_OK;
    case NGX_ERROR:
        return NGX_ERROR;
    default:
        break;
    }

    /*
     * trust on first use: the pin is written by a pool thread while the
     * set-up is paused; the set-up's deadline keeps an exiting worker
     * alive until the task is back
     */

    task = ngx_thread_task_alloc(t->pool, sizeof(ngx_segura_terminal_t *));
    if (task == NULL) {
        goto failed;
    }

    ctx = task->ctx;
    *ctx = t;

    task->handler = ngx_segura_terminal_pin;
    task->event.data = t;
    task->event.handler = ngx_segura_terminal_pin_done;

    ngx_segura_metrics_task(NGX_SEGURA_METRIC_TASK_HOST_KEY_PIN, 1);

    if (ngx_thread_task_post(t->smcf->thread_pool, task) != NGX_OK) {
        ngx_segura_metrics_task(NGX_SEGURA_METRIC_TASK_HOST_KEY_PIN, -1);
        goto failed;
    }

    return NGX_AGAIN;

failed:

    t->ssh.err = NGX_SEGURA_WS_ERR_INTERNAL;
    (void) ngx_cpystrn((u_char *) t->ssh.text,
                       (u_char *) "the thread pool refused a task",
                       sizeof(t->ssh.text));
    return NGX_ERROR;
}


/* pool thread; the set-up is paused meanwhile */

static void
ngx_segura_terminal_pin(void *data, ngx_log_t *log)
{
    ngx_segura_terminal_t *t = *(ngx_segura_terminal_t **) data;

    char         dev[NGX_INT64_LEN + 1];
    PGconn      *conn;
    PGresult    *res;
    const char  *params[3];

    conn = ngx_segura_db_acquire(t->smcf->db, t->pin_err,
                                 sizeof(t->pin_err));

    if (conn == NULL) {
        t->pin_failed = 1;
        return;
    }

    /*
     * pin the key unless another session pinned one meanwhile, in which
     * case that one is what must match
     */

    (void) ngx_snprintf((u_char *) dev, sizeof(dev), "%L%Z", t->device_id);

    params[0] = dev;
    params[1] = t->ssh.host_key;
    params[2] = t->ssh.host_key_fp;

    res = ngx_segura_db_query(t->smcf->db, &conn,
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
              3, params, t->pin_err, sizeof(t->pin_err));

    if (res == NULL || PQresultStatus(res) != PGRES_TUPLES_OK
        || PQntuples(res) != 1)
    {
        t->pin_failed = 1;

    } else if (ngx_strcmp(PQgetvalue(res, 0, 0), "1") == 0) {
        t->pinned_now = 1;

    } else {
        /* pinned by another session meanwhile */
        (void) ngx_cpystrn((u_char *) t->pinned_fp,
                           (u_char *) PQgetvalue(res, 0, 1),
                           sizeof(t->pinned_fp));
    }

    PQclear(res);

    ngx_segura_db_release(t->smcf->db, conn);
}


static void
ngx_segura_terminal_pin_done(ngx_event_t *ev)
{
    ngx_int_t               rc;
    ngx_segura_terminal_t  *t;

    t = ev->data;
    rc = NGX_OK;

    ngx_segura_metrics_task(NGX_SEGURA_METRIC_TASK_HOST_KEY_PIN, -1);

    if (t->pin_failed) {
        t->ssh.err = NGX_SEGURA_WS_ERR_DATABASE;
        (void) ngx_cpystrn((u_char *) t->ssh.text, (u_char *) t->pin_err,
                           sizeof(t->ssh.text));
        rc = NGX_ERROR;

    } else if (t->pinned_now) {
        ngx_log_error(NGX_LOG_NOTICE, &t->log, 0,
                      "segura session: pinned host key %s of device %L",
                      t->ssh.host_key_fp, t->device_id);

    } else if (ngx_strcmp(t->pinned_fp, t->ssh.host_key_fp) != 0) {
        t->ssh.err = NGX_SEGURA_WS_ERR_HOST_KEY_MISMATCH;
        (void) ngx_snprintf((u_char *) t->ssh.text, sizeof(t->ssh.text),
                            "host key %s of device %L does not match the "
                            "one pinned meanwhile%Z", t->ssh.host_key_fp,
                            t->device_id);
        rc = NGX_ERROR;
    }

    ngx_segura_connect_resume(&t->connect, rc);
}


static void
ngx_segura_terminal_connected(ngx_segura_connect_t *cn)
{
    ngx_uint_t              level;
    ngx_connection_t       *peer;
    ngx_segura_ws_err_e     err;
    ngx_segura_terminal_t  *t;

    t = cn->data;

    if (t->state != NGX_SEGURA_TERMINAL_CONNECT) {
        ngx_log_error(NGX_LOG_ALERT, &t->log, 0,
                      "segura session: connected in state %d", t->state);
    }

    if (t->ssh.err != NGX_SEGURA_WS_ERR_NONE) {
        err = t->ssh.err;
        level = (err == NGX_SEGURA_WS_ERR_INTERNAL) ? NGX_LOG_ALERT
                                                    : NGX_LOG_ERR;

        ngx_log_error(level, &t->log, 0, "segura session: device %L %s: %s",
                      t->device_id, t->device_address, t->ssh.text);

        ngx_segura_terminal_end(t,
                                (char *) ngx_segura_ws_errors[err].code.data,
                                err);
        return;
    }

    if (cn->peer == NULL) {
        /* given up on: an end was asked for during the set-up */
        ngx_segura_terminal_end(t, t->end_reason, t->end_err);
        return;
    }

    peer = cn->peer;
    cn->peer = NULL;

    peer->data = t;
    peer->read->handler = ngx_segura_terminal_peer_handler;
    peer->write->handler = ngx_segura_terminal_peer_handler;

    t->peer = peer;
    t->state = NGX_SEGURA_TERMINAL_LIVE;
    t->last_any = ngx_current_msec;
    t->log.action = "relaying terminal";

    if (ngx_segura_terminal_audit_start(t) != NGX_OK) {
        ngx_segura_terminal_end(t, "internal", NGX_SEGURA_WS_ERR_INTERNAL);
        return;
    }

    /* kept for watchers, who see a screenful first */

    t->recent = ngx_palloc(t->pool, NGX_SEGURA_TERMINAL_RECENT);
    if (t->recent == NULL) {
        ngx_segura_terminal_end(t, "internal", NGX_SEGURA_WS_ERR_INTERNAL);
        return;
    }

    if (t->slcf->recording) {
        t->recorder = ngx_segura_recorder_create(t->pool, &t->log, t->smcf,
                                                 t->slcf, t->id, t->started,
                                                 t->ssh.cols, t->ssh.rows,
                                                 ngx_segura_terminal_record_wake,
                                                 t);
        if (t->recorder == NULL) {
            /* a session that should be recorded is not run unrecorded */
            ngx_log_error(NGX_LOG_ALERT, &t->log, 0,
                          "segura session %s: the recording cannot start",
                          t->id);
            ngx_segura_terminal_end(t, "internal",
                                    NGX_SEGURA_WS_ERR_INTERNAL);
            return;
        }
    }

    ngx_log_error(NGX_LOG_INFO, &t->log, 0,
                  "segura session %s: user \"%s\" key %L device %L "
                  "(%s:%ui) opened in %M ms",
                  t->id, t->identity.username, t->key_id, t->device_id,
                  t->device_address, t->port,
                  ngx_current_msec - cn->started);

    t->live.id = t->id;
    t->live.user_id = t->identity.id;
    t->live.key_id = t->key_id;
    t->live.device_id = t->device_id;
    t->live.end = ngx_segura_terminal_live_end;
    t->live.watched = ngx_segura_terminal_live_watched;
    t->live.moderate = ngx_segura_terminal_live_moderate;

    ngx_segura_live_add(&t->live);
    ngx_segura_metrics_session_opened(ngx_current_msec - t->requested);

    ngx_segura_terminal_arm_idle(t);

    if (t->generation != ngx_segura_watch_generation()) {
        /* a grant changed while the session was being set up */
        ngx_segura_watch_recheck();
    }

    if (t->slcf->resume_timeout
        && ngx_segura_terminal_make_token(t) != NGX_OK)
    {
        ngx_segura_terminal_end(t, "internal", NGX_SEGURA_WS_ERR_INTERNAL);
        return;
    }

    ngx_segura_ring_init(&t->ring, t->slcf->resume_buffer, 0);

    t->viewer->ready(t->viewer);
}


static ngx_int_t
ngx_segura_terminal_make_token(ngx_segura_terminal_t *t)
{
    u_char     secret[32], *p;
    ngx_str_t  src, dst;

    if (RAND_bytes(secret, sizeof(secret)) != 1) {
        ngx_log_error(NGX_LOG_ALERT, &t->log, 0,
                      "segura session: RAND_bytes() failed");
        return NGX_ERROR;
    }

    p = ngx_snprintf((u_char *) t->resume, sizeof(t->resume) - 44, "%P.%s.",
                     ngx_pid, t->id);

    src.data = secret;
    src.len = sizeof(secret);
    dst.data = p;

    ngx_encode_base64url(&dst, &src);
    p[dst.len] = '\0';

    OPENSSL_cleanse(secret, sizeof(secret));

    return NGX_OK;
}


static ngx_int_t
ngx_segura_terminal_audit_start(ngx_segura_terminal_t *t)
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
        ngx_log_error(NGX_LOG_ALERT, &t->log, 0,
                      "segura session: RAND_bytes() failed");
        return NGX_ERROR;
    }

    uuid[6] = (uuid[6] & 0x0f) | 0x40;
    uuid[8] = (uuid[8] & 0x3f) | 0x80;

    (void) ngx_snprintf((u_char *) t->id, sizeof(t->id),
                        "%*xs-%*xs-%*xs-%*xs-%*xs%Z",
                        (size_t) 4, uuid, (size_t) 2, uuid + 4,
                        (size_t) 2, uuid + 6, (size_t) 2, uuid + 8,
                        (size_t) 6, uuid + 10);

    tp = ngx_timeofday();

    (void) ngx_snprintf((u_char *) t->started, sizeof(t->started), "%L%Z",
                        (int64_t) tp->sec * 1000 + tp->msec);
    (void) ngx_snprintf((u_char *) user, sizeof(user), "%L%Z",
                        t->identity.id);
    (void) ngx_snprintf((u_char *) key, sizeof(key), "%L%Z", t->key_id);
    (void) ngx_snprintf((u_char *) dev, sizeof(dev), "%L%Z", t->device_id);
    (void) ngx_snprintf((u_char *) port, sizeof(port), "%ui%Z", t->port);

    params[0] = t->id;
    params[1] = user;
    params[2] = key;
    params[3] = dev;
    params[4] = t->client_addr;
    params[5] = t->node;
    params[6] = t->started;
    params[7] = t->identity.username;
    params[8] = t->key_name;
    params[9] = t->device_name;
    params[10] = t->device_address;
    params[11] = port;
    params[12] = ngx_segura_fleet_worker_id();

    /*
     * the row may be written after what it points at was deleted (the
     * database was away): the references are then null, the names stay
     */

    if (ngx_segura_outbox_add(&t->log,
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

    t->audited = 1;

    return NGX_OK;
}


static void
ngx_segura_terminal_audit_end(ngx_segura_terminal_t *t)
{
    char          in[NGX_OFF_T_LEN + 1], out[NGX_OFF_T_LEN + 1],
                  status[NGX_INT_T_LEN + 1], ended[NGX_INT64_LEN + 1];
    const char   *params[6];
    ngx_time_t   *tp;

    tp = ngx_timeofday();

    (void) ngx_snprintf((u_char *) ended, sizeof(ended), "%L%Z",
                        (int64_t) tp->sec * 1000 + tp->msec);
    (void) ngx_snprintf((u_char *) in, sizeof(in), "%O%Z", t->bytes_in);
    (void) ngx_snprintf((u_char *) out, sizeof(out), "%O%Z", t->bytes_out);
    (void) ngx_snprintf((u_char *) status, sizeof(status), "%i%Z",
                        t->exit_status);

    params[0] = t->id;
    params[1] = ended;
    params[2] = in;
    params[3] = out;
    params[4] = t->end_reason;
    params[5] = t->exit_status >= 0 ? status : NULL;

    /*
     * final values, so writing it twice changes nothing; a row that
     * another node ended as node_lost (it could not hear this one) gets
     * the truth
     */

    if (ngx_segura_outbox_add(&t->log,
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
        ngx_log_error(NGX_LOG_ALERT, &t->log, 0,
                      "segura session %s: the end of the audit row cannot "
                      "be queued", t->id);
    }
}


static void
ngx_segura_terminal_peer_handler(ngx_event_t *ev)
{
    ngx_connection_t       *peer;
    ngx_segura_terminal_t  *t;

    peer = ev->data;
    t = peer->data;

    if (t->state != NGX_SEGURA_TERMINAL_LIVE) {
        return;
    }

    if (peer->close) {
        /* worker_shutdown_timeout: the worker is going away */
        t->shutdown = 1;
        ngx_segura_terminal_end(t, "shutdown", NGX_SEGURA_WS_ERR_NONE);
        return;
    }

    if (t->viewer != NULL) {
        t->viewer->wake(t->viewer);

    } else if (t->detached) {
        ngx_segura_terminal_absorb(t);
    }
}


/*
 * Nobody is attached: the output goes into the ring until it is full,
 * then the channel is not read and the SSH window holds the device
 */

static void
ngx_segura_terminal_absorb(ngx_segura_terminal_t *t)
{
    u_char   buf[16384];
    size_t   room;
    ssize_t  n;

    for ( ;; ) {
        room = ngx_segura_ring_room(&t->ring);

        if (room == 0) {
            break;
        }

        n = ngx_segura_terminal_read(t, buf, ngx_min(room, sizeof(buf)));

        if (n == NGX_DONE) {
            /* ended meanwhile (the shell exited, the device went) */
            return;
        }

        if (n == NGX_AGAIN) {
            break;
        }

        if (ngx_segura_ring_push(&t->ring, buf, (size_t) n, 0, &t->log)
            != NGX_OK)
        {
            ngx_explicit_memzero(buf, sizeof(buf));
            ngx_segura_terminal_end(t, "internal",
                                    NGX_SEGURA_WS_ERR_INTERNAL);
            return;
        }
    }

    ngx_explicit_memzero(buf, sizeof(buf));

    ngx_segura_terminal_poll(t, ngx_segura_ring_room(&t->ring) > 0);
}


ngx_int_t
ngx_segura_terminal_suspend(ngx_segura_terminal_t *t)
{
    if (t->state != NGX_SEGURA_TERMINAL_LIVE || t->ending
        || t->slcf->resume_timeout == 0 || t->resume[0] == '\0')
    {
        return NGX_DECLINED;
    }

    if (t->viewer != NULL) {
        t->viewer->terminal = NULL;
        t->viewer = NULL;
    }

    t->detached = 1;
    t->detaches++;

    /* what the viewer kept as history stays; otherwise from here on */

    if (t->ring.end != t->bytes_out) {
        ngx_segura_ring_reset(&t->ring, t->bytes_out);
    }

    /*
     * the timer looks every second whether the worker is leaving (a
     * reload, a quit): nobody can come back to an exiting worker, so the
     * shell ends then rather than keep it
     */

    t->detached_at = ngx_current_msec;
    t->resume_timer.handler = ngx_segura_terminal_resume_expired;
    t->resume_timer.data = t;
    t->resume_timer.log = &t->log;

    ngx_add_timer(&t->resume_timer,
                  ngx_min(t->slcf->resume_timeout,
                          NGX_SEGURA_TERMINAL_EXIT_LOOK));

    ngx_log_error(NGX_LOG_INFO, &t->log, 0,
                  "segura session %s: detached, kept for %M ms "
                  "(%O bytes not acknowledged)", t->id,
                  t->slcf->resume_timeout, t->ring.end - t->ring.start);

    ngx_segura_terminal_audit_attach(t, "session_detached");

    /* output may be waiting already */

    ngx_post_event(t->peer->read, &ngx_posted_events);

    return NGX_OK;
}


ngx_segura_terminal_t *
ngx_segura_terminal_find_resumable(const char *token, size_t len)
{
    u_char                 *dot, *id, *end;
    char                    sid[NGX_SEGURA_LIVE_ID_LEN];
    ngx_segura_live_t      *l;
    ngx_segura_terminal_t  *t;

    if (len == 0 || len >= NGX_SEGURA_RESUME_LEN) {
        return NULL;
    }

    end = (u_char *) token + len;

    dot = ngx_strlchr((u_char *) token, end, '.');
    if (dot == NULL) {
        return NULL;
    }

    id = dot + 1;
    dot = ngx_strlchr(id, end, '.');

    if (dot == NULL || (size_t) (dot - id) >= sizeof(sid)) {
        return NULL;
    }

    ngx_memcpy(sid, id, dot - id);
    sid[dot - id] = '\0';

    l = ngx_segura_live_find(sid);
    if (l == NULL) {
        return NULL;
    }

    t = (ngx_segura_terminal_t *) ((u_char *) l
                                   - offsetof(ngx_segura_terminal_t, live));

    if (t->state != NGX_SEGURA_TERMINAL_LIVE || t->ending
        || ngx_strlen(t->resume) != len
        || CRYPTO_memcmp(t->resume, token, len) != 0)
    {
        return NULL;
    }

    return t;
}


void
ngx_segura_terminal_resume(ngx_segura_terminal_t *t, ngx_segura_viewer_t *v)
{
    ngx_segura_viewer_t  *old;

    old = t->viewer;

    if (old != NULL) {
        /* its client went away unseen: the new one takes over */
        old->terminal = NULL;
        t->viewer = NULL;
        old->displaced(old);
    }

    if (t->resume_timer.timer_set) {
        ngx_del_timer(&t->resume_timer);
    }

    t->detached = 0;
    t->viewer = v;
    v->terminal = t;
    t->polled = -1;

    ngx_log_error(NGX_LOG_INFO, &t->log, 0,
                  "segura session %s: resumed%s, %O bytes held",
                  t->id, old ? " (the previous viewer displaced)" : "",
                  t->ring.end - t->ring.start);

    ngx_segura_terminal_audit_attach(t, "session_resumed");
}


static void
ngx_segura_terminal_resume_expired(ngx_event_t *ev)
{
    ngx_msec_t              left;
    ngx_segura_terminal_t  *t;

    t = ev->data;

    if (!t->detached) {
        return;
    }

    if (ngx_exiting || ngx_terminate || ngx_quit) {
        ngx_log_error(NGX_LOG_INFO, &t->log, 0,
                      "segura session %s: detached, the worker is leaving",
                      t->id);
        t->shutdown = 1;
        ngx_segura_terminal_end(t, "shutdown", NGX_SEGURA_WS_ERR_NONE);
        return;
    }

    left = t->slcf->resume_timeout - (ngx_current_msec - t->detached_at);

    if ((ngx_msec_int_t) left <= 0) {
        ngx_log_error(NGX_LOG_INFO, &t->log, 0,
                      "segura session %s: not resumed in time", t->id);
        ngx_segura_terminal_end(t, "detached_timeout",
                                NGX_SEGURA_WS_ERR_NONE);
        return;
    }

    ngx_add_timer(&t->resume_timer,
                  ngx_min(left, NGX_SEGURA_TERMINAL_EXIT_LOOK));
}


/*
 * each detach and re-attach is an audit_log row; the outbox may write a
 * batch twice, so a row names its ordinal and is written once
 */

static void
ngx_segura_terminal_audit_attach(ngx_segura_terminal_t *t,
    const char *action)
{
    char         n[NGX_INT_T_LEN + 1], user[NGX_INT64_LEN + 1];
    const char  *params[6];

    (void) ngx_snprintf((u_char *) n, sizeof(n), "%ui%Z", t->detaches);
    (void) ngx_snprintf((u_char *) user, sizeof(user), "%L%Z",
                        t->identity.id);

    params[0] = action;
    params[1] = t->id;
    params[2] = n;
    params[3] = user;
    params[4] = t->identity.username;
    params[5] = t->client_addr;

    if (ngx_segura_outbox_add(&t->log,
            "insert into audit_log (actor_id, actor_name, action,"
            " object_type, object_id, client_addr, detail)"
            " select (select id from users where id = $4), $5, $1,"
            " 'ssh_session', $2, $6, json_build_object('n', $3::text::int)"
            " where not exists (select 1 from audit_log"
            "  where object_type = 'ssh_session' and object_id = $2"
            "  and action = $1 and detail->>'n' = $3::text)",
            6, params)
        != NGX_OK)
    {
        ngx_log_error(NGX_LOG_ALERT, &t->log, 0,
                      "segura session %s: the %s row cannot be queued",
                      t->id, action);
    }
}


/* device -> viewer */

ssize_t
ngx_segura_terminal_read(ngx_segura_terminal_t *t, u_char *buf, size_t size)
{
    int          n, is_stderr;
    ssh_channel  ch;

    if (t->state != NGX_SEGURA_TERMINAL_LIVE) {
        return NGX_DONE;
    }

    if (t->recorder != NULL && ngx_segura_recorder_paused(t->recorder)) {
        /* the database is behind: the SSH window holds the device */
        return NGX_AGAIN;
    }

    ch = t->ssh.channel;

    if (size > 65535) {
        size = 65535;
    }

    for (is_stderr = 0; is_stderr < 2; is_stderr++) {

        if (is_stderr && !t->ssh.buffered[1]) {
            /*
             * no stderr packet came (with a pty the device sends none):
             * a read would only cost libssh a poll() and a recv()
             */
            break;
        }

        n = ssh_channel_read_nonblocking(ch, buf, (uint32_t) size,
                                         is_stderr);

        if (n > 0) {
            t->bytes_out += n;
            ngx_segura_metrics_add(NGX_SEGURA_METRIC_BYTES_OUT, n);
            t->last_any = ngx_current_msec;

            if (t->recorder != NULL) {
                ngx_segura_recorder_output(t->recorder, buf, n);
            }

            ngx_segura_terminal_tee(t, buf, (size_t) n);

            return n;
        }

        if (n == 0 || n == SSH_EOF) {
            /* libssh's buffer of this stream is empty */
            t->ssh.buffered[is_stderr] = 0;
            continue;
        }

        ngx_log_error(NGX_LOG_ERR, &t->log, 0,
                      "segura session %s: "
                      "ssh_channel_read_nonblocking() failed: %s",
                      t->id, ssh_get_error(t->ssh.session));

        ngx_segura_terminal_end(t, "device_gone",
                                NGX_SEGURA_WS_ERR_SESSION_TERMINATED);
        return NGX_DONE;
    }

    return ngx_segura_terminal_exited(t);
}


static ngx_int_t
ngx_segura_terminal_exited(ngx_segura_terminal_t *t)
{
    int          status;
    ssh_channel  ch;

    ch = t->ssh.channel;

    if (!ssh_channel_is_eof(ch) && !ssh_channel_is_closed(ch)) {
        return NGX_AGAIN;
    }

    if (ssh_channel_poll(ch, 0) > 0 || ssh_channel_poll(ch, 1) > 0) {
        return NGX_AGAIN;
    }

    /*
     * the shell ended; OpenSSH sends exit-status after EOF and before
     * close, so wait for the close unless the session is gone
     */

    if (!ssh_channel_is_closed(ch) && ssh_is_connected(t->ssh.session)) {

        /*
         * after EOF libssh reads the socket only when asked: this asks
         * once, without blocking, for the exit status and the close
         */

        (void) ssh_channel_get_exit_status(ch);

        if (!ssh_channel_is_closed(ch) && ssh_is_connected(t->ssh.session)) {
            return NGX_AGAIN;
        }
    }

    status = ssh_channel_get_exit_status(ch);

    t->exit_status = status;

    if (t->recorder != NULL) {
        ngx_segura_recorder_exit(t->recorder, status);
    }

    ngx_log_error(NGX_LOG_INFO, &t->log, 0,
                  "segura session %s: shell exited with %d", t->id, status);

    ngx_segura_terminal_end(t, "exit", NGX_SEGURA_WS_ERR_NONE);

    return NGX_DONE;
}


/* viewer -> device */

ssize_t
ngx_segura_terminal_write(ngx_segura_terminal_t *t, u_char *data, size_t len)
{
    int  w;

    if (t->state != NGX_SEGURA_TERMINAL_LIVE) {
        return NGX_DONE;
    }

    if (len == 0) {
        return 0;
    }

    if (t->locked) {
        /* an administrator locked the input: the keystrokes are dropped */
        return len;
    }

    w = ssh_channel_write(t->ssh.channel, data, (uint32_t) len);

    if (w == SSH_ERROR) {
        ngx_segura_terminal_end(t, "device_gone",
                                NGX_SEGURA_WS_ERR_SESSION_TERMINATED);
        return NGX_DONE;
    }

    if (w > 0) {
        t->bytes_in += w;
        ngx_segura_metrics_add(NGX_SEGURA_METRIC_BYTES_IN, w);
        t->last_any = ngx_current_msec;

        if (t->recorder != NULL) {
            /* only with segura_recording_input on */
            ngx_segura_recorder_input(t->recorder, data, w);
        }
    }

    return w;
}


void
ngx_segura_terminal_resize(ngx_segura_terminal_t *t, unsigned cols,
    unsigned rows)
{
    u_char               *p, text[64];
    ngx_queue_t          *q;
    ngx_segura_viewer_t  *v;

    if (t->state != NGX_SEGURA_TERMINAL_LIVE) {
        return;
    }

    if (ssh_channel_change_pty_size(t->ssh.channel, (int) cols, (int) rows)
        == SSH_ERROR)
    {
        ngx_log_error(NGX_LOG_ERR, &t->log, 0,
                      "segura session %s: "
                      "ssh_channel_change_pty_size() failed: %s",
                      t->id, ssh_get_error(t->ssh.session));
        return;
    }

    if (t->recorder != NULL) {
        ngx_segura_recorder_resize(t->recorder, cols, rows);
    }

    t->ssh.cols = cols;
    t->ssh.rows = rows;

    /* watchers size their screen as the owner's */

    p = ngx_snprintf(text, sizeof(text),
                     "{\"type\":\"resize\",\"cols\":%ui,\"rows\":%ui}",
                     (ngx_uint_t) cols, (ngx_uint_t) rows);

    for (q = ngx_queue_head(&t->watchers);
         q != ngx_queue_sentinel(&t->watchers);
         q = ngx_queue_next(q))
    {
        v = ngx_queue_data(q, ngx_segura_viewer_t, queue);
        v->event(v, text, p - text);
    }
}


void
ngx_segura_terminal_poll(ngx_segura_terminal_t *t, ngx_uint_t room)
{
    int  pending;

    if (t->state != NGX_SEGURA_TERMINAL_LIVE) {
        return;
    }

    if (ssh_get_poll_flags(t->ssh.session) & SSH_WRITE_PENDING) {
        /* libssh could not send everything: it tries again when writable */
        (void) ssh_blocking_flush(t->ssh.session, 0);
    }

    if (!room || t->peer->read->posted) {
        return;
    }

    if (t->recorder != NULL && ngx_segura_recorder_is_paused(t->recorder)) {
        /* the recorder wakes the viewer when the database caught up */
        return;
    }

    /*
     * libssh reads the socket 4 KiB per call and may have stopped short
     * of EAGAIN: with edge-triggered events the rest would wait for the
     * next packet, so look whether bytes are left.  The flush above, or a
     * write, may have read packets into libssh's channel buffers (its
     * data callback says so): they must not wait for the socket's next
     * edge either.
     */

    if ((ioctl(t->ssh.fd, FIONREAD, &pending) == 0 && pending > 0)
        || t->ssh.buffered[0] || t->ssh.buffered[1])
    {
        if (t->bytes_out != t->polled) {
            t->polled = t->bytes_out;
            ngx_post_event(t->peer->read, &ngx_posted_events);
            return;
        }

        /*
         * the last look read nothing (libssh may leave bytes in the
         * socket that it does not take yet): look again in a moment,
         * through the event loop, never in a posted-event loop of its own
         */

        if (!t->repoll.timer_set) {
            t->repoll.handler = ngx_segura_terminal_repoll;
            t->repoll.data = t;
            t->repoll.log = &t->log;
            t->repoll.cancelable = 1;
            ngx_add_timer(&t->repoll, NGX_SEGURA_TERMINAL_REPOLL);
        }
    }
}


static void
ngx_segura_terminal_repoll(ngx_event_t *ev)
{
    ngx_segura_terminal_t *t = ev->data;

    if (t->state == NGX_SEGURA_TERMINAL_LIVE && t->viewer != NULL) {
        t->polled = -1;
        t->viewer->wake(t->viewer);
    }
}


/* one timer, re-armed lazily: never a timer per byte */

static void
ngx_segura_terminal_idle_handler(ngx_event_t *ev)
{
    ngx_segura_terminal_t *t = ev->data;

    if (t->state != NGX_SEGURA_TERMINAL_LIVE) {
        return;
    }

    if (ngx_current_msec - t->last_any >= t->slcf->idle_timeout) {
        ngx_log_error(NGX_LOG_INFO, &t->log, 0,
                      "segura session %s: idle timeout", t->id);
        ngx_segura_terminal_end(t, "idle_timeout",
                                NGX_SEGURA_WS_ERR_IDLE_TIMEOUT);
        return;
    }

    ngx_segura_terminal_arm_idle(t);
}


static void
ngx_segura_terminal_arm_idle(ngx_segura_terminal_t *t)
{
    ngx_msec_int_t  left;

    if (t->slcf->idle_timeout == 0) {
        return;
    }

    if (t->idle.handler == NULL) {
        t->idle.handler = ngx_segura_terminal_idle_handler;
        t->idle.data = t;
        t->idle.log = &t->log;
    }

    left = (ngx_msec_int_t) (t->last_any + t->slcf->idle_timeout
                             - ngx_current_msec);

    ngx_add_timer(&t->idle, left > 0 ? (ngx_msec_t) left : 1);
}


/* the recording paused the device: the database caught up */

static void
ngx_segura_terminal_record_wake(void *data)
{
    ngx_segura_terminal_t *t = data;

    if (t->state != NGX_SEGURA_TERMINAL_LIVE) {
        return;
    }

    /* not idle: the database was slow */
    t->last_any = ngx_current_msec;

    if (t->viewer != NULL) {
        t->viewer->wake(t->viewer);

    } else if (t->peer != NULL) {
        ngx_post_event(t->peer->read, &ngx_posted_events);
    }
}


static void
ngx_segura_terminal_live_end(ngx_segura_live_t *l, ngx_uint_t by_admin)
{
    ngx_segura_terminal_t  *t;

    t = (ngx_segura_terminal_t *) ((u_char *) l
                                   - offsetof(ngx_segura_terminal_t, live));

    ngx_log_error(NGX_LOG_NOTICE, &t->log, 0, "segura session %s: %s",
                  t->id, by_admin ? "ended by an administrator"
                                  : "access revoked");

    if (by_admin) {
        ngx_segura_terminal_end(t, "ended_by_admin",
                                NGX_SEGURA_WS_ERR_ENDED);

    } else {
        ngx_segura_terminal_end(t, "access_revoked",
                                NGX_SEGURA_WS_ERR_REVOKED);
    }
}


/*
 * a watcher elsewhere follows the recording: chunks go sooner, and the
 * owner is told as of a watcher here
 */

static void
ngx_segura_terminal_live_watched(ngx_segura_live_t *l, const char *by,
    ngx_uint_t left)
{
    ngx_segura_terminal_t  *t;

    t = (ngx_segura_terminal_t *) ((u_char *) l
                                   - offsetof(ngx_segura_terminal_t, live));

    if (t->state != NGX_SEGURA_TERMINAL_LIVE) {
        return;
    }

    if (left) {
        if (t->nremote) {
            t->nremote--;
        }

    } else {
        t->nremote++;

        if (t->recorder != NULL) {
            ngx_segura_recorder_watched(t->recorder);
        }
    }

    ngx_log_error(NGX_LOG_NOTICE, &t->log, 0,
                  "segura session %s: \"%s\" %s watching from elsewhere",
                  t->id, by, left ? "stopped" : "started");

    ngx_segura_terminal_tell_watched(t, by, left);
}


/*
 * An administrator, through any node: lock or unlock the owner's input,
 * or the message of an end that follows.  Each is a marker in the
 * recording; the owner and the watchers are told of a lock.
 */

static void
ngx_segura_terminal_live_moderate(ngx_segura_live_t *l,
    ngx_segura_live_action_e action, const char *by, const char *text)
{
    u_char                 *p;
    u_char                  buf[128];
    ngx_segura_terminal_t  *t;

    t = (ngx_segura_terminal_t *) ((u_char *) l
                                   - offsetof(ngx_segura_terminal_t, live));

    if (t->state != NGX_SEGURA_TERMINAL_LIVE) {
        return;
    }

    if (action == NGX_SEGURA_LIVE_MESSAGE) {
        (void) ngx_cpystrn((u_char *) t->moderator, (u_char *) by,
                           sizeof(t->moderator));
        (void) ngx_cpystrn((u_char *) t->note, (u_char *) text,
                           sizeof(t->note));

        ngx_log_error(NGX_LOG_NOTICE, &t->log, 0,
                      "segura session %s: \"%s\" ends it with a message",
                      t->id, t->moderator);

        if (t->recorder != NULL) {
            p = ngx_snprintf(buf, sizeof(buf) - 1, "ended by %s%s", by,
                             t->note[0] ? ": " : "");
            *p = '\0';
            ngx_segura_recorder_marker_text(t->recorder, (char *) buf,
                                            t->note);
        }

        return;
    }

    if (t->locked == (action == NGX_SEGURA_LIVE_LOCK)) {
        /* already so (a re-check, or asked twice) */
        return;
    }

    t->locked = (action == NGX_SEGURA_LIVE_LOCK);

    ngx_log_error(NGX_LOG_NOTICE, &t->log, 0,
                  "segura session %s: input %s by \"%s\"", t->id,
                  t->locked ? "locked" : "unlocked", by);

    p = ngx_snprintf(buf, sizeof(buf) - 1, "%s by %s",
                     t->locked ? "locked" : "unlocked", by);
    *p = '\0';

    if (t->recorder != NULL) {
        ngx_segura_recorder_marker(t->recorder, (char *) buf);
    }

    /* user names are [A-Za-z0-9._@-] (sql/002): no JSON escape needed */

    p = ngx_snprintf(buf, sizeof(buf),
                     "{\"type\":\"locked\",\"locked\":%s,\"by\":\"%s\"}",
                     t->locked ? "true" : "false", by);

    ngx_segura_terminal_tell(t, buf, p - buf);
}


/* an event for the owner and every watcher */

static void
ngx_segura_terminal_tell(ngx_segura_terminal_t *t, u_char *text, size_t len)
{
    ngx_queue_t          *q;
    ngx_segura_viewer_t  *v;

    if (t->viewer != NULL && t->viewer->event != NULL) {
        t->viewer->event(t->viewer, text, len);
    }

    for (q = ngx_queue_head(&t->watchers);
         q != ngx_queue_sentinel(&t->watchers);
         q = ngx_queue_next(q))
    {
        v = ngx_queue_data(q, ngx_segura_viewer_t, queue);
        v->event(v, text, len);
    }
}


/*
 * The viewer leaves.  With one viewer and no resume yet, the terminal
 * ends with it; resume (the live-session issue) keeps it for a while.
 */

void
ngx_segura_terminal_detach(ngx_segura_terminal_t *t, const char *end_reason)
{
    if (t->viewer != NULL) {
        t->viewer->terminal = NULL;
        t->viewer = NULL;
    }

    ngx_segura_terminal_end(t, end_reason, NGX_SEGURA_WS_ERR_NONE);
}


void
ngx_segura_terminal_end(ngx_segura_terminal_t *t, const char *end_reason,
    ngx_segura_ws_err_e err)
{
    ngx_queue_t          *q;
    ngx_segura_viewer_t  *v;

    if (t->state == NGX_SEGURA_TERMINAL_ENDED) {
        return;
    }

    if (!t->ending) {
        /* the first reason is the one that tells */
        t->ending = 1;
        t->end_reason = end_reason;
        t->end_err = err;
    }

    if (ngx_segura_connect_busy(&t->connect)) {

        /*
         * the set-up gives up now, or when its pool task is back; its
         * done handler comes back here
         */

        ngx_segura_connect_abort(&t->connect, NGX_SEGURA_WS_ERR_NONE,
                                 t->end_reason);
        return;
    }

    t->state = NGX_SEGURA_TERMINAL_ENDED;

    if (t->end_reason == NULL) {
        t->end_reason = "closed";
    }

    if (t->recorder != NULL) {
        ngx_segura_recorder_end(t->recorder, t->end_reason);
    }

    ngx_segura_terminal_release(t);
    ngx_segura_metrics_session_ended(t->audited, t->end_err);

    if (t->audited) {
        ngx_log_error(NGX_LOG_INFO, &t->log, 0,
                      "segura session %s: ended (%s), %O bytes in, "
                      "%O bytes out", t->id, t->end_reason, t->bytes_in,
                      t->bytes_out);

        ngx_segura_terminal_audit_end(t);
    }

    v = t->viewer;

    if (v != NULL) {
        t->viewer = NULL;
        v->terminal = NULL;
        v->ended(v, t);
    }

    while (!ngx_queue_empty(&t->watchers)) {
        q = ngx_queue_head(&t->watchers);
        ngx_queue_remove(q);
        t->nwatchers--;

        v = ngx_queue_data(q, ngx_segura_viewer_t, queue);
        v->terminal = NULL;
        v->ended(v, t);
    }

    /* freed once whoever called us is back in the event loop */

    t->free.handler = ngx_segura_terminal_free;
    t->free.data = t;
    t->free.log = &t->log;

    ngx_post_event(&t->free, &ngx_posted_events);
}


/*
 * What the owner read goes into the recent-output ring and to each
 * watcher, which copies it or skips it: a watcher never holds the owner
 */

static void
ngx_segura_terminal_tee(ngx_segura_terminal_t *t, u_char *data, size_t len)
{
    size_t                n, k;
    u_char               *p;
    ngx_queue_t          *q, *next;
    ngx_segura_viewer_t  *v;

    p = data;
    n = len;

    if (n > NGX_SEGURA_TERMINAL_RECENT) {
        p += n - NGX_SEGURA_TERMINAL_RECENT;
        n = NGX_SEGURA_TERMINAL_RECENT;
    }

    while (n) {
        k = ngx_min(n, NGX_SEGURA_TERMINAL_RECENT - t->recent_pos);
        ngx_memcpy(t->recent + t->recent_pos, p, k);

        t->recent_pos = (t->recent_pos + k) % NGX_SEGURA_TERMINAL_RECENT;
        t->recent_len = ngx_min(t->recent_len + k,
                                NGX_SEGURA_TERMINAL_RECENT);
        p += k;
        n -= k;
    }

    for (q = ngx_queue_head(&t->watchers);
         q != ngx_queue_sentinel(&t->watchers);
         q = next)
    {
        next = ngx_queue_next(q);
        v = ngx_queue_data(q, ngx_segura_viewer_t, queue);
        v->output(v, data, len);
    }
}


ngx_int_t
ngx_segura_terminal_watch(ngx_segura_terminal_t *t, ngx_segura_viewer_t *v)
{
    if (t->state != NGX_SEGURA_TERMINAL_LIVE || t->recent == NULL) {
        return NGX_ERROR;
    }

    ngx_queue_insert_tail(&t->watchers, &v->queue);
    t->nwatchers++;
    v->terminal = t;

    ngx_log_error(NGX_LOG_NOTICE, &t->log, 0,
                  "segura session %s: watched by \"%s\", %ui watcher%s",
                  t->id, v->name, t->nwatchers,
                  t->nwatchers == 1 ? "" : "s");

    ngx_segura_terminal_tell_watched(t, v->name, 0);

    return NGX_OK;
}


size_t
ngx_segura_terminal_recent(ngx_segura_terminal_t *t, u_char *buf,
    size_t size)
{
    size_t   n, start, first;

    if (t->recent == NULL) {
        return 0;
    }

    n = ngx_min(size, t->recent_len);

    /* the newest n bytes, oldest first */

    start = (t->recent_pos + NGX_SEGURA_TERMINAL_RECENT - n)
            % NGX_SEGURA_TERMINAL_RECENT;
    first = ngx_min(n, NGX_SEGURA_TERMINAL_RECENT - start);

    ngx_memcpy(buf, t->recent + start, first);
    ngx_memcpy(buf + first, t->recent, n - first);

    return n;
}


void
ngx_segura_terminal_unwatch(ngx_segura_terminal_t *t, ngx_segura_viewer_t *v)
{
    if (v->terminal != t) {
        return;
    }

    ngx_queue_remove(&v->queue);
    t->nwatchers--;
    v->terminal = NULL;

    ngx_log_error(NGX_LOG_NOTICE, &t->log, 0,
                  "segura session %s: \"%s\" stopped watching", t->id,
                  v->name);

    if (t->state == NGX_SEGURA_TERMINAL_LIVE) {
        ngx_segura_terminal_tell_watched(t, v->name, 1);
    }
}


/* the terminal of a live session of this worker, or NULL */

ngx_segura_terminal_t *
ngx_segura_terminal_find(const char *id)
{
    ngx_segura_live_t  *l;

    l = ngx_segura_live_find(id);

    if (l == NULL || l->end != ngx_segura_terminal_live_end) {
        return NULL;
    }

    return (ngx_segura_terminal_t *) ((u_char *) l
                                      - offsetof(ngx_segura_terminal_t,
                                                 live));
}


/* segura_watch_notice: the owner knows who watches */

static void
ngx_segura_terminal_tell_watched(ngx_segura_terminal_t *t, const char *by,
    ngx_uint_t left)
{
    u_char               *p, *last;
    u_char                text[256];
    ngx_segura_viewer_t  *v;

    v = t->viewer;

    if (!t->slcf->watch_notice || v == NULL || v->event == NULL) {
        return;
    }

    /* user names are [A-Za-z0-9._@-] (sql/002): no JSON escape needed */

    last = text + sizeof(text);
    p = ngx_snprintf(text, sizeof(text),
                     "{\"type\":\"watched\",\"by\":\"%s\",\"watchers\":%ui,"
                     "\"left\":%s}", by, t->nwatchers + t->nremote,
                     left ? "true" : "false");

    if (p == last) {
        return;
    }

    v->event(v, text, p - text);
}


static void
ngx_segura_terminal_release(ngx_segura_terminal_t *t)
{
    ngx_segura_live_remove(&t->live);

    if (t->idle.timer_set) {
        ngx_del_timer(&t->idle);
    }

    if (t->repoll.timer_set) {
        ngx_del_timer(&t->repoll);
    }

    if (t->resume_timer.timer_set) {
        ngx_del_timer(&t->resume_timer);
    }

    t->detached = 0;
    ngx_segura_ring_reset(&t->ring, t->bytes_out);
    OPENSSL_cleanse(t->resume, sizeof(t->resume));

    if (t->peer != NULL) {
        ngx_segura_connect_release_peer(t->peer);
        t->peer = NULL;
    }

    if (t->ssh.channel != NULL && t->ssh.session != NULL
        && ssh_is_connected(t->ssh.session))
    {
        /* say goodbye without waiting for the answer */
        (void) ssh_channel_close(t->ssh.channel);
    }

    ngx_segura_ssh_close(&t->ssh);
}


static void
ngx_segura_terminal_free(ngx_event_t *ev)
{
    ngx_segura_terminal_t *t = ev->data;

    ngx_destroy_pool(t->pool);
}
