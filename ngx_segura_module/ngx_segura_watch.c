
/*
 * Copyright (C) ngx_segura_module authors
 */


/*
 * The watcher: ends live sessions whose grant was revoked or which an
 * administrator ended, whichever node the change came through.
 *
 * PostgreSQL is the only channel between nodes.  Every worker keeps one
 * libpq connection that LISTENs on segura_grant_changed (sql/011: any
 * change that can alter segura_grant_check()) and segura_session_end
 * (sql/013: an administrator ended a session), and for watchers on
 * segura_session_chunk and segura_session_watch (sql/023: a chunk of a
 * recording stored, a session watched from elsewhere) and
 * segura_session_moderate (sql/024: lock, unlock, an end's message),
 * which go to the tails (ngx_segura_tail.c) and the registry without a
 * re-check.  The
 * connection is opened by a pool thread (connecting may block: DNS, TCP,
 * authentication) and then read on the event loop, non-blocking:
 * PQconsumeInput() and PQnotifies() never wait.
 *
 * A notification does not say which session it concerns; the worker
 * re-checks all its live sessions in one query on a pool thread and ends
 * those the database no longer allows.  A re-check also runs after the
 * listener (re)connects, for what was said while nobody listened, and
 * when a session enters the relay after a notification heard during its
 * own set-up.  Notifications that arrive during a re-check fold into one
 * more re-check; a re-check that failed is tried again with the backoff.
 *
 * A worker that is shutting down gracefully (nginx -s reload or quit)
 * keeps its sessions until they end, so it keeps listening too: the
 * listener is not an idle connection for nginx to close, and it is
 * reopened with the backoff after a loss as long as a session is live.
 * It holds no timer that is not cancelable, so the worker still exits
 * when its last session ends; exit process then closes the listener.
 */


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>
#include "ngx_segura.h"
#include "ngx_segura_db.h"
#include "ngx_segura_live.h"
#include "ngx_segura_tail.h"
#include "ngx_segura_watch.h"

#include <jansson.h>


#define NGX_SEGURA_WATCH_RETRY_MIN   1000
#define NGX_SEGURA_WATCH_ERRLEN      256
#define NGX_SEGURA_WATCH_RETRY_MAX   5000


typedef struct {
    ngx_http_segura_main_conf_t   *smcf;
    ngx_log_t                     *log;

    PGconn                        *conn;       /* the listener */
    ngx_connection_t              *c;          /* wraps its socket */
    ngx_event_t                    retry;
    ngx_msec_t                     backoff;
    ngx_uint_t                     generation;  /* notifications heard */

    ngx_thread_task_t             *connect_task;
    ngx_thread_task_t             *check_task;
    char                           connect_err[NGX_SEGURA_WATCH_ERRLEN];

    /* the re-check: live sessions in, a verdict for each out */
    ngx_segura_live_ref_t         *refs;
    u_char                        *verdict;    /* 0, 'e'nded, 'r'evoked */
    ngx_uint_t                     nrefs;
    char                           check_err[NGX_SEGURA_WATCH_ERRLEN];

    unsigned                       connecting:1;
    unsigned                       checking:1;
    unsigned                       again:1;
    unsigned                       check_failed:1;
} ngx_segura_watch_t;


static ngx_int_t ngx_segura_watch_post(ngx_segura_watch_t *w,
    ngx_thread_task_t *task);
static void ngx_segura_watch_moderate(ngx_segura_watch_t *w,
    const char *payload);
static void ngx_segura_watch_watched(ngx_segura_watch_t *w,
    const char *payload);
static void ngx_segura_watch_start(ngx_segura_watch_t *w);
static void ngx_segura_watch_connect(void *data, ngx_log_t *log);
static void ngx_segura_watch_connect_done(ngx_event_t *ev);
static void ngx_segura_watch_read(ngx_event_t *rev);
static void ngx_segura_watch_write(ngx_event_t *wev);
static void ngx_segura_watch_close(ngx_segura_watch_t *w);
static ngx_uint_t ngx_segura_watch_needed(void);
static void ngx_segura_watch_schedule(ngx_segura_watch_t *w);
static void ngx_segura_watch_retry(ngx_event_t *ev);
static void ngx_segura_watch_check(void *data, ngx_log_t *log);
static void ngx_segura_watch_check_done(ngx_event_t *ev);
static void ngx_segura_watch_free_check(ngx_segura_watch_t *w);


/* one per worker process */
static ngx_segura_watch_t  *ngx_segura_watch;


ngx_int_t
ngx_segura_watch_init_process(ngx_cycle_t *cycle,
    ngx_http_segura_main_conf_t *smcf)
{
    ngx_segura_watch_t  *w;

    w = ngx_pcalloc(cycle->pool, sizeof(ngx_segura_watch_t));
    if (w == NULL) {
        return NGX_ERROR;
    }

    w->smcf = smcf;
    w->log = cycle->log;
    w->backoff = NGX_SEGURA_WATCH_RETRY_MIN;

    w->retry.handler = ngx_segura_watch_retry;
    w->retry.data = w;
    w->retry.log = cycle->log;
    w->retry.cancelable = 1;    /* a graceful exit does not wait for it */

    w->connect_task = ngx_thread_task_alloc(cycle->pool,
                                            sizeof(ngx_segura_watch_t *));
    w->check_task = ngx_thread_task_alloc(cycle->pool,
                                          sizeof(ngx_segura_watch_t *));

    if (w->connect_task == NULL || w->check_task == NULL) {
        return NGX_ERROR;
    }

    *(ngx_segura_watch_t **) w->connect_task->ctx = w;
    w->connect_task->handler = ngx_segura_watch_connect;
    w->connect_task->event.data = w;
    w->connect_task->event.handler = ngx_segura_watch_connect_done;

    *(ngx_segura_watch_t **) w->check_task->ctx = w;
    w->check_task->handler = ngx_segura_watch_check;
    w->check_task->event.data = w;
    w->check_task->event.handler = ngx_segura_watch_check_done;

    ngx_segura_watch = w;

    ngx_segura_watch_start(w);

    return NGX_OK;
}


void
ngx_segura_watch_exit_process(void)
{
    ngx_segura_watch_t  *w;

    w = ngx_segura_watch;

    if (w == NULL) {
        return;
    }

    /*
     * the thread pools have been joined: a task that finished without its
     * completion handler may have left a connection or the check buffers
     */

    if (w->retry.timer_set) {
        ngx_del_timer(&w->retry);
    }

    ngx_segura_watch_close(w);
    ngx_segura_watch_free_check(w);

    ngx_segura_watch = NULL;
}


ngx_uint_t
ngx_segura_watch_generation(void)
{
    return ngx_segura_watch ? ngx_segura_watch->generation : 0;
}


void
ngx_segura_watch_recheck(void)
{
    size_t               size;
    ngx_uint_t           n;
    ngx_segura_watch_t  *w;

    w = ngx_segura_watch;

    if (w == NULL) {
        return;
    }

    if (w->checking) {
        w->again = 1;
        return;
    }

    w->again = 0;
    w->check_failed = 0;

    n = ngx_segura_live_count();

    if (n == 0) {
        return;
    }

    size = n * (sizeof(ngx_segura_live_ref_t) + 1);

    w->refs = ngx_alloc(size, w->log);
    if (w->refs == NULL) {
        /* a revoked grant must not be forgotten: later, then */
        w->check_failed = 1;
        ngx_segura_watch_schedule(w);
        return;
    }

    w->verdict = (u_char *) (w->refs + n);
    ngx_memzero(w->verdict, n);
    w->nrefs = n;
    w->check_err[0] = '\0';

    (void) ngx_segura_live_get(w->refs, n);

    if (ngx_segura_watch_post(w, w->check_task) != NGX_OK) {
        ngx_segura_watch_free_check(w);
        w->check_failed = 1;
        ngx_segura_watch_schedule(w);
        return;
    }

    w->checking = 1;
}


static ngx_int_t
ngx_segura_watch_post(ngx_segura_watch_t *w, ngx_thread_task_t *task)
{
    if (ngx_thread_task_post(w->smcf->thread_pool, task) != NGX_OK) {
        ngx_log_error(NGX_LOG_ERR, w->log, 0,
                      "segura watch: the thread pool refused a task");
        return NGX_ERROR;
    }

    return NGX_OK;
}


static void
ngx_segura_watch_start(ngx_segura_watch_t *w)
{
    if (w->connecting || w->conn != NULL) {
        return;
    }

    w->connect_err[0] = '\0';

    if (ngx_segura_watch_post(w, w->connect_task) != NGX_OK) {
        ngx_segura_watch_schedule(w);
        return;
    }

    w->connecting = 1;
}


static void
ngx_segura_watch_connect(void *data, ngx_log_t *log)
{
    ngx_segura_watch_t *w = *(ngx_segura_watch_t **) data;

    PGconn    *conn;
    PGresult  *res;

    /* a pool thread: the blocking part, connecting and LISTEN */

    conn = ngx_segura_db_connect(w->smcf->db, "ngx_segura_module listener",
                                 w->connect_err, sizeof(w->connect_err));
    if (conn == NULL) {
        return;
    }

    res = PQexec(conn, "listen segura_grant_changed;"
                       " listen segura_session_end;"
                       " listen segura_session_chunk;"
                       " listen segura_session_watch;"
                       " listen segura_session_moderate");

    if (PQresultStatus(res) != PGRES_COMMAND_OK) {
        (void) ngx_snprintf((u_char *) w->connect_err,
                            sizeof(w->connect_err) - 1, "LISTEN failed: %s%Z",
                            PQerrorMessage(conn));
        PQclear(res);
        PQfinish(conn);
        return;
    }

    PQclear(res);

    if (PQsetnonblocking(conn, 1) != 0) {
        (void) ngx_cpystrn((u_char *) w->connect_err,
                           (u_char *) "PQsetnonblocking() failed",
                           sizeof(w->connect_err));
        PQfinish(conn);
        return;
    }

    w->conn = conn;
}


static void
ngx_segura_watch_connect_done(ngx_event_t *ev)
{
    ngx_segura_watch_t *w = ev->data;

    ngx_connection_t  *c;

    w->connecting = 0;

    if (w->conn == NULL) {
        ngx_log_error(NGX_LOG_ERR, w->log, 0,
                      "segura watch: cannot listen for grant changes: %s",
                      w->connect_err);
        ngx_segura_watch_schedule(w);
        return;
    }

    if (!ngx_segura_watch_needed()) {
        ngx_segura_watch_close(w);
        return;
    }

    c = ngx_get_connection(PQsocket(w->conn), w->log);
    if (c == NULL) {
        PQfinish(w->conn);
        w->conn = NULL;
        ngx_segura_watch_schedule(w);
        return;
    }

    c->data = w;
    c->read->handler = ngx_segura_watch_read;
    c->write->handler = ngx_segura_watch_write;
    c->read->log = w->log;
    c->write->log = w->log;

    /*
     * not c->idle: a graceful shutdown would close it at once, and the
     * sessions the exiting worker keeps would no longer hear revocations
     */

    w->c = c;

    /*
     * level-triggered: libpq reads what it wants when it wants, and an
     * edge could be lost in its buffer
     */

    if (ngx_add_event(c->read, NGX_READ_EVENT, NGX_LEVEL_EVENT) != NGX_OK) {
        ngx_segura_watch_close(w);
        ngx_segura_watch_schedule(w);
        return;
    }

    ngx_log_error(NGX_LOG_INFO, w->log, 0,
                  "segura watch: listening for grant changes");

    w->backoff = NGX_SEGURA_WATCH_RETRY_MIN;

    /* what was said while nobody listened */

    w->generation++;
    ngx_segura_watch_recheck();
}


static void
ngx_segura_watch_read(ngx_event_t *rev)
{
    ngx_connection_t    *c;
    ngx_uint_t           heard;
    PGnotify            *n;
    ngx_segura_watch_t  *w;

    c = rev->data;
    w = c->data;

    if (c->close) {
        /* worker_shutdown_timeout: every connection goes */
        ngx_segura_watch_close(w);
        return;
    }

    if (PQconsumeInput(w->conn) == 0) {
        ngx_log_error(NGX_LOG_ERR, w->log, 0,
                      "segura watch: the listener connection was lost: %s",
                      PQerrorMessage(w->conn));
        ngx_segura_watch_close(w);
        ngx_segura_watch_schedule(w);
        return;
    }

    heard = 0;

    while ((n = PQnotifies(w->conn)) != NULL) {
        ngx_log_debug2(NGX_LOG_DEBUG_HTTP, w->log, 0,
                       "segura watch: notified \"%s\" \"%s\"",
                       n->relname, n->extra);

        /* watching from elsewhere (sql/023): no re-check */

        if (ngx_strcmp(n->relname, "segura_session_chunk") == 0) {
            ngx_segura_tail_notify(n->extra);

        } else if (ngx_strcmp(n->relname, "segura_session_watch") == 0) {
            ngx_segura_watch_watched(w, n->extra);

        } else if (ngx_strcmp(n->relname, "segura_session_moderate") == 0) {
            ngx_segura_watch_moderate(w, n->extra);

        } else {
            heard++;
        }

        PQfreemem(n);
    }

    if (heard) {
        w->generation++;
        ngx_segura_watch_recheck();
    }
}


/* {"id":..., "by":..., "left":bool}: a watcher elsewhere (sql/023) */

static void
ngx_segura_watch_watched(ngx_segura_watch_t *w, const char *payload)
{
    json_t        *json;
    const char    *id, *by;
    json_error_t   error;

    json = json_loads(payload, 0, &error);

    id = json_string_value(json_object_get(json, "id"));
    by = json_string_value(json_object_get(json, "by"));

    if (id == NULL || by == NULL
        || !json_is_boolean(json_object_get(json, "left")))
    {
        json_decref(json);
        ngx_log_error(NGX_LOG_ALERT, w->log, 0,
                      "segura watch: a malformed segura_session_watch "
                      "notification");
        return;
    }

    ngx_segura_live_watched(id, by,
                            json_is_true(json_object_get(json, "left")));

    json_decref(json);
}


/* {"id":..., "action":"lock"|"unlock"|"message", "by":..., "message":...} */

static void
ngx_segura_watch_moderate(ngx_segura_watch_t *w, const char *payload)
{
    json_t                    *json;
    const char                *id, *action, *by, *text;
    json_error_t               error;
    ngx_segura_live_action_e   a;

    json = json_loads(payload, 0, &error);

    if (json == NULL || !json_is_object(json)) {
        goto bad;
    }

    id = json_string_value(json_object_get(json, "id"));
    action = json_string_value(json_object_get(json, "action"));
    by = json_string_value(json_object_get(json, "by"));
    text = json_string_value(json_object_get(json, "message"));

    if (id == NULL || action == NULL || by == NULL) {
        goto bad;
    }

    if (ngx_strcmp(action, "lock") == 0) {
        a = NGX_SEGURA_LIVE_LOCK;

    } else if (ngx_strcmp(action, "unlock") == 0) {
        a = NGX_SEGURA_LIVE_UNLOCK;

    } else if (ngx_strcmp(action, "message") == 0) {
        a = NGX_SEGURA_LIVE_MESSAGE;

    } else {
        goto bad;
    }

    ngx_segura_live_moderate(id, a, by, text != NULL ? text : "");

    json_decref(json);
    return;

bad:

    json_decref(json);

    ngx_log_error(NGX_LOG_ALERT, w->log, 0,
                  "segura watch: a malformed segura_session_moderate "
                  "notification");
}


static void
ngx_segura_watch_write(ngx_event_t *wev)
{
    /* nothing is written on the event loop */
}


static void
ngx_segura_watch_close(ngx_segura_watch_t *w)
{
    ngx_connection_t  *c;

    c = w->c;

    if (c != NULL) {

        /* the socket is libpq's: release the nginx side only */

        if (ngx_del_conn) {
            (void) ngx_del_conn(c, NGX_CLOSE_EVENT);

        } else if (c->read->active) {
            (void) ngx_del_event(c->read, NGX_READ_EVENT, NGX_CLOSE_EVENT);
        }

        if (c->read->posted) {
            ngx_delete_posted_event(c->read);
        }

        ngx_free_connection(c);
        c->fd = (ngx_socket_t) -1;

        w->c = NULL;
    }

    if (w->conn != NULL) {
        PQfinish(w->conn);
        w->conn = NULL;
    }
}


static ngx_uint_t
ngx_segura_watch_needed(void)
{
    /*
     * a worker shutting down gracefully listens while it has sessions to
     * end; one that was told to terminate does not
     */

    if (ngx_terminate) {
        return 0;
    }

    if (ngx_exiting || ngx_quit) {
        return ngx_segura_live_count() > 0;
    }

    return 1;
}


static void
ngx_segura_watch_schedule(ngx_segura_watch_t *w)
{
    if (w->retry.timer_set || !ngx_segura_watch_needed()) {
        return;
    }

    ngx_add_timer(&w->retry, w->backoff);

    w->backoff *= 2;
    if (w->backoff > NGX_SEGURA_WATCH_RETRY_MAX) {
        w->backoff = NGX_SEGURA_WATCH_RETRY_MAX;
    }
}


static void
ngx_segura_watch_retry(ngx_event_t *ev)
{
    ngx_segura_watch_t *w = ev->data;

    if (!ngx_segura_watch_needed()) {
        return;
    }

    if (w->conn == NULL) {
        ngx_segura_watch_start(w);
    }

    if (w->check_failed) {
        ngx_segura_watch_recheck();
    }
}


static void
ngx_segura_watch_check(void *data, ngx_log_t *log)
{
    ngx_segura_watch_t *w = *(ngx_segura_watch_t **) data;

    u_char                    *p[4], *last[4];
    char                      *lists[4], *id, *why;
    size_t                     size[4];
    PGconn                    *conn;
    PGresult                  *res;
    ngx_uint_t                 i, j, k, rows;
    ngx_segura_live_ref_t     *ref;

    /*
     * a pool thread: one query for all live sessions of the worker, as
     * array parameters; ids and numbers only, built here, never text from
     * a client
     */

    size[0] = w->nrefs * (sizeof(ref->id) + 1) + 3;
    size[1] = size[2] = size[3] = w->nrefs * (NGX_INT64_LEN + 1) + 3;

    lists[0] = NULL;
    conn = NULL;
    res = NULL;

    for (k = 0; k < 4; k++) {
        lists[k] = malloc(size[k]);
        if (lists[k] == NULL) {
            (void) ngx_cpystrn((u_char *) w->check_err,
                               (u_char *) "out of memory",
                               sizeof(w->check_err));
            goto done;
        }

        p[k] = (u_char *) lists[k];
        last[k] = p[k] + size[k] - 1;
        *p[k]++ = '{';
    }

    for (i = 0; i < w->nrefs; i++) {
        ref = &w->refs[i];

        p[0] = ngx_slprintf(p[0], last[0], "%s%s", i ? "," : "", ref->id);
        p[1] = ngx_slprintf(p[1], last[1], "%s%L", i ? "," : "",
                            ref->user_id);
        p[2] = ngx_slprintf(p[2], last[2], "%s%L", i ? "," : "",
                            ref->key_id);
        p[3] = ngx_slprintf(p[3], last[3], "%s%L", i ? "," : "",
                            ref->device_id);
    }

    for (k = 0; k < 4; k++) {
        *p[k]++ = '}';
        *p[k] = '\0';
    }

    conn = ngx_segura_db_acquire(w->smcf->db, w->check_err,
                                 sizeof(w->check_err));
    if (conn == NULL) {
        goto done;
    }

    /* and whether each is locked (sql/024), for a lock notified unheard */

    res = ngx_segura_db_query_retry(w->smcf->db, &conn,
              "select t.id::text, case when s.end_requested_at is not null"
              " then 'ended' else segura_grant_check(t.u, t.k, t.d) end,"
              " coalesce(s.locked, false)"
              " from unnest($1::uuid[], $2::bigint[], $3::bigint[],"
              " $4::bigint[]) as t(id, u, k, d)"
              " left join ssh_sessions s on s.id = t.id",
              4, (const char *const *) lists, w->check_err,
              sizeof(w->check_err));

    if (res == NULL || PQresultStatus(res) != PGRES_TUPLES_OK) {
        goto done;
    }

    rows = PQntuples(res);

    for (j = 0; j < rows; j++) {
        id = PQgetvalue(res, j, 0);
        why = PQgetvalue(res, j, 1);

        for (i = 0; i < w->nrefs; i++) {
            if (ngx_strcmp(w->refs[i].id, id) != 0) {
                continue;
            }

            if (ngx_strcmp(why, "ok") == 0) {
                w->verdict[i] = (PQgetvalue(res, j, 2)[0] == 't') ? 'l' : 'u';

            } else {
                w->verdict[i] = (ngx_strcmp(why, "ended") == 0) ? 'e' : 'r';
            }
        }
    }

done:

    if (res != NULL) {
        PQclear(res);
    }

    if (conn != NULL) {
        ngx_segura_db_release(w->smcf->db, conn);
    }

    for (k = 0; k < 4 && lists[k] != NULL; k++) {
        free(lists[k]);
        lists[k] = NULL;
    }
}


static void
ngx_segura_watch_check_done(ngx_event_t *ev)
{
    ngx_segura_watch_t *w = ev->data;

    ngx_uint_t  i;

    w->checking = 0;

    if (w->check_err[0] != '\0') {
        ngx_log_error(NGX_LOG_ERR, w->log, 0,
                      "segura watch: live sessions not re-checked: %s",
                      w->check_err);

        /* try again later: a revoked grant must not be forgotten */

        w->check_failed = 1;
        ngx_segura_watch_free_check(w);
        ngx_segura_watch_schedule(w);
        return;
    }

    /*
     * the copies, not the sessions: ending one may free it, and a session
     * that ended meanwhile is simply not found
     */

    for (i = 0; i < w->nrefs; i++) {
        switch (w->verdict[i]) {

        case 'e':
        case 'r':
            ngx_segura_live_end(w->refs[i].id, w->verdict[i] == 'e');
            break;

        case 'l':
        case 'u':
            /* a change of state only: the notification may have been lost */
            ngx_segura_live_moderate(w->refs[i].id,
                                     w->verdict[i] == 'l'
                                     ? NGX_SEGURA_LIVE_LOCK
                                     : NGX_SEGURA_LIVE_UNLOCK,
                                     "an administrator", "");
            break;

        default:
            break;
        }
    }

    ngx_segura_watch_free_check(w);

    if (w->again) {
        ngx_segura_watch_recheck();
    }
}


static void
ngx_segura_watch_free_check(ngx_segura_watch_t *w)
{
    if (w->refs != NULL) {
        ngx_free(w->refs);
        w->refs = NULL;
        w->verdict = NULL;
        w->nrefs = 0;
    }
}
