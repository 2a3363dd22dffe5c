
/*
 * Copyright (C) ngx_segura_module authors
 */


/*
 * The outbox: every write a session owes PostgreSQL (the audit row's
 * start and end, the recording's chunks), queued in order and written by
 * one pool task at a time, like a write-ahead queue.  Callers enqueue and
 * go on; nothing of a session waits for the database.
 *
 * Every statement queued here is idempotent (an insert that does nothing
 * when the row is there, an update keyed by the session id that sets
 * final values), so a batch whose outcome is unknown (the connection died
 * before the answer) is simply written again: nothing is lost, nothing
 * is duplicated.  A batch is one transaction; when a statement of it is
 * refused by PostgreSQL itself (not a lost connection), the batch is
 * written again one statement at a time, and a statement refused
 * NGX_SEGURA_OUTBOX_ATTEMPTS times is dropped with an error: one bad row
 * must not hold up the others forever.
 *
 * While the database cannot be reached, the queue is retried with a
 * backoff from 250 ms to 5 s.  It is bounded (NGX_SEGURA_OUTBOX_MAX
 * bytes): beyond that the handshake refuses new sessions with 503
 * database_unavailable, and the writes of the sessions already running
 * are still taken (each session owes a bounded number of them).
 *
 * The queue, its timer and the completion handler belong to the event
 * loop; the pool task touches only the batch it was handed (the first
 * entries of the queue, which the event loop leaves alone until the task
 * is back).  A timer is kept while anything is queued, so that a
 * gracefully exiting worker stays until its writes are done.
 */


#include <ngx_config.h>
#include <ngx_core.h>
#include "ngx_segura.h"
#include "ngx_segura_db.h"
#include "ngx_segura_metrics.h"
#include "ngx_segura_outbox.h"

#include <libpq-fe.h>


#define NGX_SEGURA_OUTBOX_BATCH       64
#define NGX_SEGURA_OUTBOX_ATTEMPTS    3
#define NGX_SEGURA_OUTBOX_MAX         (16 * 1024 * 1024)
#define NGX_SEGURA_OUTBOX_RETRY_MIN   250
#define NGX_SEGURA_OUTBOX_RETRY_MAX   5000
#define NGX_SEGURA_OUTBOX_WAIT        1000
#define NGX_SEGURA_OUTBOX_ERRLEN      256


typedef struct {
    ngx_queue_t                    queue;
    const char                    *sql;       /* static */
    ngx_uint_t                     nparams;
    ngx_uint_t                     attempts;  /* refused by PostgreSQL */
    size_t                         size;
    const char                    *params[NGX_SEGURA_OUTBOX_MAX_PARAMS];
    int                            lengths[NGX_SEGURA_OUTBOX_MAX_PARAMS];
    int                            formats[NGX_SEGURA_OUTBOX_MAX_PARAMS];
} ngx_segura_outbox_entry_t;


typedef struct {
    ngx_http_segura_main_conf_t   *smcf;
    ngx_log_t                     *log;

    ngx_queue_t                    queue;
    size_t                         size;
    ngx_uint_t                     count;

    ngx_event_t                    timer;
    ngx_msec_t                     backoff;
    ngx_msec_t                     failing_since;

    ngx_thread_task_t             *task;

    /* the batch: the first entries of the queue while the task runs */
    ngx_segura_outbox_entry_t     *batch[NGX_SEGURA_OUTBOX_BATCH];
    u_char                         refused[NGX_SEGURA_OUTBOX_BATCH];
    ngx_uint_t                     nbatch;
    ngx_uint_t                     written;   /* out: entries done */
    char                           err[NGX_SEGURA_OUTBOX_ERRLEN];
    char                           refusal[NGX_SEGURA_OUTBOX_ERRLEN];

    unsigned                       busy:1;
    unsigned                       failing:1;
} ngx_segura_outbox_t;


static void ngx_segura_outbox_flush(ngx_segura_outbox_t *ob);
static void ngx_segura_outbox_write(void *data, ngx_log_t *log);
static ngx_int_t ngx_segura_outbox_exec(PGconn *conn,
    ngx_segura_outbox_entry_t *e, char *err, size_t errlen);
static void ngx_segura_outbox_written(ngx_event_t *ev);
static void ngx_segura_outbox_timer(ngx_event_t *ev);


/* one per worker process */
static ngx_segura_outbox_t  *ngx_segura_outbox;


ngx_int_t
ngx_segura_outbox_init_process(ngx_cycle_t *cycle,
    ngx_http_segura_main_conf_t *smcf)
{
    ngx_segura_outbox_t  *ob;

    ob = ngx_pcalloc(cycle->pool, sizeof(ngx_segura_outbox_t));
    if (ob == NULL) {
        return NGX_ERROR;
    }

    ob->smcf = smcf;
    ob->log = cycle->log;
    ob->backoff = NGX_SEGURA_OUTBOX_RETRY_MIN;

    ngx_queue_init(&ob->queue);

    /* not cancelable: a graceful exit waits for the writes */

    ob->timer.handler = ngx_segura_outbox_timer;
    ob->timer.data = ob;
    ob->timer.log = cycle->log;

    ob->task = ngx_thread_task_alloc(cycle->pool,
                                     sizeof(ngx_segura_outbox_t *));
    if (ob->task == NULL) {
        return NGX_ERROR;
    }

    *(ngx_segura_outbox_t **) ob->task->ctx = ob;
    ob->task->handler = ngx_segura_outbox_write;
    ob->task->event.data = ob;
    ob->task->event.handler = ngx_segura_outbox_written;
    ob->task->event.log = cycle->log;

    ngx_segura_outbox = ob;

    return NGX_OK;
}


void
ngx_segura_outbox_exit_process(void)
{
    ngx_queue_t          *q;
    ngx_segura_outbox_t  *ob;

    ob = ngx_segura_outbox;

    if (ob == NULL) {
        return;
    }

    /* the thread pools have been joined: nothing touches the queue */

    if (ob->count) {
        ngx_log_error(NGX_LOG_ERR, ob->log, 0,
                      "segura outbox: %ui writes to the database are lost "
                      "as the worker exits", ob->count);
    }

    while (!ngx_queue_empty(&ob->queue)) {
        q = ngx_queue_head(&ob->queue);
        ngx_queue_remove(q);
        ngx_free(ngx_queue_data(q, ngx_segura_outbox_entry_t, queue));
    }

    if (ob->timer.timer_set) {
        ngx_del_timer(&ob->timer);
    }

    ngx_segura_outbox = NULL;
}


ngx_int_t
ngx_segura_outbox_add(ngx_log_t *log, const char *sql, ngx_uint_t nparams,
    const char *const *params)
{
    return ngx_segura_outbox_add_binary(log, sql, nparams, params, NULL);
}


ngx_int_t
ngx_segura_outbox_add_binary(ngx_log_t *log, const char *sql,
    ngx_uint_t nparams, const char *const *params, const size_t *binary)
{
    u_char                     *p;
    size_t                      size, len[NGX_SEGURA_OUTBOX_MAX_PARAMS];
    ngx_uint_t                  i;
    ngx_segura_outbox_t        *ob;
    ngx_segura_outbox_entry_t  *e;

    ob = ngx_segura_outbox;

    if (ob == NULL || nparams > NGX_SEGURA_OUTBOX_MAX_PARAMS) {
        ngx_log_error(NGX_LOG_ALERT, log, 0,
                      "segura outbox: a write cannot be queued");
        return NGX_ERROR;
    }

    size = sizeof(ngx_segura_outbox_entry_t);

    for (i = 0; i < nparams; i++) {
        if (binary != NULL && binary[i] > 0) {
            if (binary[i] > NGX_SEGURA_OUTBOX_MAX_BINARY) {
                ngx_log_error(NGX_LOG_ALERT, log, 0,
                              "segura outbox: a value of %uz bytes "
                              "cannot be queued", binary[i]);
                return NGX_ERROR;
            }

            len[i] = binary[i];

        } else {
            len[i] = params[i] ? ngx_strlen(params[i]) + 1 : 0;
        }

        size += len[i];
    }

    e = ngx_alloc(size, log);
    if (e == NULL) {
        return NGX_ERROR;
    }

    e->sql = sql;
    e->nparams = nparams;
    e->attempts = 0;
    e->size = size;

    p = (u_char *) (e + 1);

    for (i = 0; i < nparams; i++) {
        e->lengths[i] = (int) len[i];
        e->formats[i] = (binary != NULL && binary[i] > 0);

        if (params[i] == NULL) {
            e->params[i] = NULL;
            continue;
        }

        e->params[i] = (char *) p;
        p = ngx_cpymem(p, params[i], len[i]);
    }

    ngx_queue_insert_tail(&ob->queue, &e->queue);
    ob->size += size;
    ob->count++;
    ngx_segura_metrics_outbox(ob->count, ob->size);

    if (!ob->busy && !ob->failing) {
        ngx_segura_outbox_flush(ob);

    } else if (!ob->timer.timer_set) {
        ngx_add_timer(&ob->timer, NGX_SEGURA_OUTBOX_WAIT);
    }

    return NGX_OK;
}


ngx_uint_t
ngx_segura_outbox_full(void)
{
    return ngx_segura_outbox != NULL
           && ngx_segura_outbox->size > NGX_SEGURA_OUTBOX_MAX;
}


size_t
ngx_segura_outbox_pending(void)
{
    return ngx_segura_outbox ? ngx_segura_outbox->count : 0;
}


size_t
ngx_segura_outbox_size(void)
{
    return ngx_segura_outbox ? ngx_segura_outbox->size : 0;
}


static void
ngx_segura_outbox_flush(ngx_segura_outbox_t *ob)
{
    ngx_uint_t    n;
    ngx_queue_t  *q;

    if (ob->busy || ngx_queue_empty(&ob->queue)) {
        return;
    }

    n = 0;

    for (q = ngx_queue_head(&ob->queue);
         q != ngx_queue_sentinel(&ob->queue) && n < NGX_SEGURA_OUTBOX_BATCH;
         q = ngx_queue_next(q))
    {
        ob->batch[n] = ngx_queue_data(q, ngx_segura_outbox_entry_t, queue);
        ob->refused[n] = 0;
        n++;
    }

    ob->nbatch = n;
    ob->written = 0;
    ob->err[0] = '\0';
    ob->refusal[0] = '\0';

    ngx_segura_metrics_task(NGX_SEGURA_METRIC_TASK_OUTBOX, 1);

    if (ngx_thread_task_post(ob->smcf->thread_pool, ob->task) != NGX_OK) {
        ngx_segura_metrics_task(NGX_SEGURA_METRIC_TASK_OUTBOX, -1);
        ngx_log_error(NGX_LOG_ERR, ob->log, 0,
                      "segura outbox: the thread pool refused a task");
        ngx_add_timer(&ob->timer, ob->backoff);
        return;
    }

    ob->busy = 1;

    /* keeps a gracefully exiting worker until the task is back */

    ngx_add_timer(&ob->timer, NGX_SEGURA_OUTBOX_WAIT);
}


/* a pool thread: writes the batch it was handed */

static void
ngx_segura_outbox_write(void *data, ngx_log_t *log)
{
    ngx_segura_outbox_t *ob = *(ngx_segura_outbox_t **) data;

    PGconn      *conn;
    PGresult    *res;
    ngx_int_t    rc;
    ngx_uint_t   i;

    conn = ngx_segura_db_acquire(ob->smcf->db, ob->err, sizeof(ob->err));
    if (conn == NULL) {
        return;
    }

    if (ob->nbatch > 1) {

        /* one commit for the batch */

        res = PQexec(conn, "begin");

        if (PQresultStatus(res) != PGRES_COMMAND_OK) {
            ngx_segura_db_error(ob->err, sizeof(ob->err), "begin",
                                    PQerrorMessage(conn));
            PQclear(res);
            goto done;
        }

        PQclear(res);

        for (i = 0; i < ob->nbatch; i++) {
            rc = ngx_segura_outbox_exec(conn, ob->batch[i], ob->err,
                                        sizeof(ob->err));
            if (rc != NGX_OK) {
                break;
            }
        }

        if (i == ob->nbatch) {
            res = PQexec(conn, "commit");

            if (PQresultStatus(res) == PGRES_COMMAND_OK) {
                PQclear(res);
                ob->written = ob->nbatch;
                goto done;
            }

            ngx_segura_db_error(ob->err, sizeof(ob->err), "commit",
                                    PQerrorMessage(conn));
            PQclear(res);
        }

        if (PQstatus(conn) != CONNECTION_OK) {
            goto done;
        }

        /* PostgreSQL refused a statement: again, one at a time */

        res = PQexec(conn, "rollback");
        PQclear(res);

        ob->err[0] = '\0';
    }

    for (i = 0; i < ob->nbatch; i++) {
        rc = ngx_segura_outbox_exec(conn, ob->batch[i], ob->refusal,
                                    sizeof(ob->refusal));

        if (rc == NGX_OK) {
            ob->written++;
            continue;
        }

        if (PQstatus(conn) != CONNECTION_OK) {
            ngx_memcpy(ob->err, ob->refusal, sizeof(ob->err));
            break;
        }

        /* refused: counted by the completion handler, kept in place */
        ob->refused[i] = 1;
        break;
    }

done:

    ngx_segura_db_release(ob->smcf->db, conn);
}


static ngx_int_t
ngx_segura_outbox_exec(PGconn *conn, ngx_segura_outbox_entry_t *e,
    char *err, size_t errlen)
{
    PGresult        *res;
    ExecStatusType   st;

    res = PQexecParams(conn, e->sql, (int) e->nparams, NULL, e->params,
                       e->lengths, e->formats, 0);

    st = PQresultStatus(res);

    if (res != NULL && (st == PGRES_COMMAND_OK || st == PGRES_TUPLES_OK)) {
        PQclear(res);
        return NGX_OK;
    }

    ngx_segura_db_error(err, errlen, "PQexecParams()",
                            res ? PQresultErrorMessage(res)
                                : PQerrorMessage(conn));
    ngx_segura_metrics_db_error(NGX_SEGURA_METRIC_DB_STATEMENT, res
                                ? PQresultErrorField(res, PG_DIAG_SQLSTATE)
                                : NULL);
    PQclear(res);

    return NGX_ERROR;
}


static void
ngx_segura_outbox_written(ngx_event_t *ev)
{
    ngx_segura_outbox_t *ob = ev->data;

    ngx_uint_t                  i;
    ngx_segura_outbox_entry_t  *e;

    ob->busy = 0;
    ngx_segura_metrics_task(NGX_SEGURA_METRIC_TASK_OUTBOX, -1);

    for (i = 0; i < ob->written; i++) {
        e = ob->batch[i];
        ngx_queue_remove(&e->queue);
        ob->size -= e->size;
        ob->count--;
        ngx_free(e);
    }

    if (ob->written < ob->nbatch && ob->refused[ob->written]) {
        e = ob->batch[ob->written];

        if (++e->attempts >= NGX_SEGURA_OUTBOX_ATTEMPTS) {
            ngx_log_error(NGX_LOG_ERR, ob->log, 0,
                          "segura outbox: a write was refused %ui times "
                          "and is dropped: %s", e->attempts, ob->refusal);
            ngx_queue_remove(&e->queue);
            ob->size -= e->size;
            ob->count--;
            ngx_free(e);
            ngx_segura_metrics_add(NGX_SEGURA_METRIC_OUTBOX_DROPPED, 1);

        } else {
            ngx_log_error(NGX_LOG_ERR, ob->log, 0,
                          "segura outbox: a write was refused: %s",
                          ob->refusal);
            ngx_segura_metrics_add(NGX_SEGURA_METRIC_OUTBOX_RETRIES, 1);
        }

        ob->err[0] = '\0';
    }

    ngx_segura_metrics_outbox(ob->count, ob->size);

    if (ob->err[0] != '\0') {

        ngx_segura_metrics_add(NGX_SEGURA_METRIC_OUTBOX_RETRIES, 1);

        if (!ob->failing) {
            ob->failing = 1;
            ob->failing_since = ngx_current_msec;

            ngx_log_error(NGX_LOG_ERR, ob->log, 0,
                          "segura outbox: %ui writes wait for the "
                          "database: %s", ob->count, ob->err);
        }

        ngx_add_timer(&ob->timer, ob->backoff);

        ob->backoff *= 2;
        if (ob->backoff > NGX_SEGURA_OUTBOX_RETRY_MAX) {
            ob->backoff = NGX_SEGURA_OUTBOX_RETRY_MAX;
        }

        return;
    }

    if (ob->failing) {
        ngx_log_error(NGX_LOG_NOTICE, ob->log, 0,
                      "segura outbox: the database takes writes again "
                      "after %M ms", ngx_current_msec - ob->failing_since);
        ob->failing = 0;
    }

    ob->backoff = NGX_SEGURA_OUTBOX_RETRY_MIN;

    if (ob->timer.timer_set) {
        ngx_del_timer(&ob->timer);
    }

    ngx_segura_outbox_flush(ob);
}


static void
ngx_segura_outbox_timer(ngx_event_t *ev)
{
    ngx_segura_outbox_t *ob = ev->data;

    if (ob->busy) {
        /* the task is still out: wait on, and keep the worker */
        ngx_add_timer(&ob->timer, NGX_SEGURA_OUTBOX_WAIT);
        return;
    }

    ngx_segura_outbox_flush(ob);
}

