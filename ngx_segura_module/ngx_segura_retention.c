
/*
 * Copyright (C) ngx_segura_module authors
 */


/*
 * Retention: with segura_recording_retention <time>, the recordings of
 * sessions that ended longer ago lose their chunks; the recording's row is
 * marked expired (expired_at, sql/020) and stays, and so does the
 * session's audit row.
 *
 * One worker of each node (worker 0) runs it, and one node of the fleet at
 * a time: the pool task takes pg_try_advisory_lock() on a connection of
 * its own and gives it back when the run is over (a connection that dies
 * gives it back too); a node that finds it taken skips the run, and says
 * so in its log once per stretch of skips.  The timer fires every
 * min(60 s, retention / 2), at least 1 s, with +-25% of jitter so that the
 * nodes do not all ask at once; after a run that stopped at its bound,
 * the next one comes after a second.
 *
 * A run: up to NGX_SEGURA_RETENTION_BATCHES statements, each deleting up
 * to NGX_SEGURA_RETENTION_BATCH chunks of sessions ended before the run's
 * cutoff (now() - retention, taken once per run), then marks expired the
 * recordings past the cutoff that have no chunk left, then writes one
 * audit_log row (recording_retention) when it deleted or expired anything.
 * A recording is past the cutoff when its session's audit row is ended
 * and the later of the recording's end and the session's end is older
 * than the cutoff (a worker lost before it completed the recording row
 * leaves only the session's end).  Each statement stands alone (no long
 * transaction): a run cut short leaves nothing half done that the next
 * run does not finish.
 *
 * The timer and the completion handler run on the event loop; the task
 * runs on a pool thread and touches only the task fields.  One task at
 * most is in flight.
 */


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>
#include "ngx_segura.h"
#include "ngx_segura_db.h"
#include "ngx_segura_fleet.h"
#include "ngx_segura_retention.h"


#define NGX_SEGURA_RETENTION_LOCK      "6000280510318857544"
#define NGX_SEGURA_RETENTION_BATCH     "1000"
#define NGX_SEGURA_RETENTION_BATCH_N   1000
#define NGX_SEGURA_RETENTION_BATCHES   10
#define NGX_SEGURA_RETENTION_EVERY     60000
#define NGX_SEGURA_RETENTION_SOON      1000
#define NGX_SEGURA_RETENTION_ERRLEN    256
#define NGX_SEGURA_RETENTION_NODE_LEN  256


typedef struct {
    ngx_http_segura_main_conf_t   *smcf;
    ngx_log_t                     *log;

    ngx_event_t                    timer;
    ngx_thread_task_t             *task;
    ngx_msec_t                     every;

    /* the task's input, fixed for the worker's life */
    char                           retention[NGX_INT64_LEN + 1];  /* ms */
    char                           node[NGX_SEGURA_RETENTION_NODE_LEN + 1];

    /* the task's own connection, and its output */
    PGconn                        *conn;
    char                           err[NGX_SEGURA_RETENTION_ERRLEN];
    int64_t                        chunks;
    int64_t                        bytes;
    int64_t                        expired;
    unsigned                       locked:1;   /* the lock was ours */
    unsigned                       more:1;     /* stopped at the bound */

    unsigned                       busy:1;
    unsigned                       skipping:1;  /* the skip is logged */
    unsigned                       failing:1;   /* the failure is logged */
} ngx_segura_retention_t;


static void ngx_segura_retention_schedule(ngx_segura_retention_t *rt,
    ngx_msec_t delay);
static void ngx_segura_retention_tick(ngx_event_t *ev);
static void ngx_segura_retention_task(void *data, ngx_log_t *log);
static ngx_int_t ngx_segura_retention_run(ngx_segura_retention_t *rt,
    const char *cutoff, const char *started);
static PGresult *ngx_segura_retention_query(ngx_segura_retention_t *rt,
    const char *sql, int nparams, const char *const *params);
static void ngx_segura_retention_done(ngx_event_t *ev);


/* one per worker process that runs retention */
static ngx_segura_retention_t  *ngx_segura_retention;


ngx_int_t
ngx_segura_retention_init_process(ngx_cycle_t *cycle,
    ngx_http_segura_main_conf_t *smcf)
{
    size_t                   len;
    ngx_segura_retention_t  *rt;

    /* off, or not the worker of this node that runs it */

    if (smcf->recording_retention == 0
        || (ngx_process != NGX_PROCESS_WORKER
            && ngx_process != NGX_PROCESS_SINGLE)
        || ngx_worker != 0)
    {
        return NGX_OK;
    }

    rt = ngx_pcalloc(cycle->pool, sizeof(ngx_segura_retention_t));
    if (rt == NULL) {
        return NGX_ERROR;
    }

    rt->smcf = smcf;
    rt->log = cycle->log;

    rt->every = ngx_min(smcf->recording_retention / 2,
                        NGX_SEGURA_RETENTION_EVERY);
    rt->every = ngx_max(rt->every, NGX_SEGURA_RETENTION_SOON);

    (void) ngx_snprintf((u_char *) rt->retention, sizeof(rt->retention),
                        "%M%Z", smcf->recording_retention);

    len = ngx_min(cycle->hostname.len, NGX_SEGURA_RETENTION_NODE_LEN);
    ngx_memcpy(rt->node, cycle->hostname.data, len);
    rt->node[len] = '\0';

    rt->task = ngx_thread_task_alloc(cycle->pool,
                                     sizeof(ngx_segura_retention_t *));
    if (rt->task == NULL) {
        return NGX_ERROR;
    }

    *(ngx_segura_retention_t **) rt->task->ctx = rt;
    rt->task->handler = ngx_segura_retention_task;
    rt->task->event.data = rt;
    rt->task->event.handler = ngx_segura_retention_done;

    /* cancelable: a run not yet due never holds an exiting worker */

    rt->timer.handler = ngx_segura_retention_tick;
    rt->timer.data = rt;
    rt->timer.log = cycle->log;
    rt->timer.cancelable = 1;

    ngx_segura_retention = rt;

    ngx_log_error(NGX_LOG_INFO, cycle->log, 0,
                  "segura retention: recordings are kept %M ms after "
                  "their session ended, checked every %M ms",
                  smcf->recording_retention, rt->every);

    ngx_segura_retention_schedule(rt, rt->every);

    return NGX_OK;
}


void
ngx_segura_retention_exit_process(void)
{
    ngx_segura_retention_t  *rt;

    rt = ngx_segura_retention;

    if (rt == NULL) {
        return;
    }

    /* the thread pools have been joined: no task holds the connection */

    if (rt->timer.timer_set) {
        ngx_del_timer(&rt->timer);
    }

    if (rt->conn != NULL) {
        PQfinish(rt->conn);
        rt->conn = NULL;
    }

    ngx_segura_retention = NULL;
}


static void
ngx_segura_retention_schedule(ngx_segura_retention_t *rt, ngx_msec_t delay)
{
    ngx_msec_t  jitter;

    /* +-25% */

    jitter = delay / 2;

    if (jitter > 0) {
        delay = delay - jitter / 2 + (ngx_msec_t) ngx_random() % jitter;
    }

    ngx_add_timer(&rt->timer, ngx_max(delay, 1));
}


static void
ngx_segura_retention_tick(ngx_event_t *ev)
{
    ngx_segura_retention_t *rt = ev->data;

    if (ngx_exiting || ngx_quit || ngx_terminate || rt->busy) {
        return;
    }

    rt->err[0] = '\0';
    rt->chunks = 0;
    rt->bytes = 0;
    rt->expired = 0;
    rt->locked = 0;
    rt->more = 0;

    if (ngx_thread_task_post(rt->smcf->thread_pool, rt->task) != NGX_OK) {
        ngx_log_error(NGX_LOG_ERR, rt->log, 0,
                      "segura retention: the thread pool refused the task");
        ngx_segura_retention_schedule(rt, rt->every);
        return;
    }

    rt->busy = 1;
}


static void
ngx_segura_retention_task(void *data, ngx_log_t *log)
{
    ngx_segura_retention_t *rt = *(ngx_segura_retention_t **) data;

    char         cutoff[64], started[64];
    PGresult    *res;
    ngx_int_t    rc;
    const char  *params[1];

    /*
     * a pool thread.  A connection of its own: the advisory lock belongs
     * to a connection, and a pooled one would carry it to another task.
     */

    if (ngx_segura_db_broken(rt->conn)) {
        if (rt->conn != NULL) {
            PQfinish(rt->conn);
        }

        rt->conn = ngx_segura_db_connect(rt->smcf->db,
                                         "ngx_segura_module retention",
                                         rt->err, sizeof(rt->err));
        if (rt->conn == NULL) {
            return;
        }
    }

    params[0] = rt->retention;

    res = ngx_segura_retention_query(rt,
              "select pg_try_advisory_lock(" NGX_SEGURA_RETENTION_LOCK "),"
              " now() - $1::bigint * interval '1 millisecond',"
              " clock_timestamp()", 1, params);
    if (res == NULL) {
        goto failed;
    }

    if (PQgetvalue(res, 0, 0)[0] != 't') {
        /* another node's run */
        PQclear(res);
        return;
    }

    rt->locked = 1;

    (void) ngx_cpystrn((u_char *) cutoff, (u_char *) PQgetvalue(res, 0, 1),
                       sizeof(cutoff));
    (void) ngx_cpystrn((u_char *) started, (u_char *) PQgetvalue(res, 0, 2),
                       sizeof(started));
    PQclear(res);

    rc = ngx_segura_retention_run(rt, cutoff, started);

    res = ngx_segura_retention_query(rt,
              "select pg_advisory_unlock(" NGX_SEGURA_RETENTION_LOCK ")",
              0, NULL);
    if (res == NULL || rc != NGX_OK) {
        goto failed;
    }

    PQclear(res);
    res = NULL;

    if (PQtransactionStatus(rt->conn) == PQTRANS_IDLE) {
        return;
    }

failed:

    PQclear(res);

    /* never keep a connection that may still hold the lock */

    if (rt->conn != NULL) {
        PQfinish(rt->conn);
        rt->conn = NULL;
    }
}


static ngx_int_t
ngx_segura_retention_run(ngx_segura_retention_t *rt, const char *cutoff,
    const char *started)
{
    char         chunks[NGX_INT64_LEN + 1], bytes[NGX_INT64_LEN + 1];
    char         expired[NGX_INT64_LEN + 1];
    PGresult    *res;
    ngx_int_t    n;
    ngx_uint_t   i;
    const char  *worker, *params[9];

    params[0] = cutoff;
    params[1] = NGX_SEGURA_RETENTION_BATCH;

    for (i = 0; i < NGX_SEGURA_RETENTION_BATCHES; i++) {

        res = ngx_segura_retention_query(rt,
                  "with v as (select c.session_id, c.seq"
                  " from ssh_session_recordings r"
                  " join ssh_sessions s on s.id = r.session_id"
                  " join ssh_session_chunks c on c.session_id = r.session_id"
                  " where r.expired_at is null"
                  " and (r.ended_at < $1::timestamptz or r.ended_at is null)"
                  " and s.ended_at is not null"
                  " and greatest(r.ended_at, s.ended_at) < $1::timestamptz"
                  " limit $2::int),"
                  " d as (delete from ssh_session_chunks c using v"
                  " where c.session_id = v.session_id and c.seq = v.seq"
                  " returning length(c.data) as n)"
                  " select count(*), coalesce(sum(n), 0) from d",
                  2, params);
        if (res == NULL) {
            return NGX_ERROR;
        }

        n = ngx_atoi((u_char *) PQgetvalue(res, 0, 0),
                     PQgetlength(res, 0, 0));
        rt->chunks += (n > 0) ? n : 0;
        rt->bytes += ngx_atoof((u_char *) PQgetvalue(res, 0, 1),
                               PQgetlength(res, 0, 1));
        PQclear(res);

        if (n < NGX_SEGURA_RETENTION_BATCH_N) {
            break;
        }
    }

    if (i == NGX_SEGURA_RETENTION_BATCHES) {
        rt->more = 1;
    }

    res = ngx_segura_retention_query(rt,
              "with e as (update ssh_session_recordings r"
              " set expired_at = now() from ssh_sessions s"
              " where s.id = r.session_id and r.expired_at is null"
              " and (r.ended_at < $1::timestamptz or r.ended_at is null)"
              " and s.ended_at is not null"
              " and greatest(r.ended_at, s.ended_at) < $1::timestamptz"
              " and not exists (select 1 from ssh_session_chunks c"
              "  where c.session_id = r.session_id)"
              " returning r.session_id)"
              " select count(*) from e", 1, params);
    if (res == NULL) {
        return NGX_ERROR;
    }

    n = ngx_atoi((u_char *) PQgetvalue(res, 0, 0), PQgetlength(res, 0, 0));
    rt->expired = (n > 0) ? n : 0;
    PQclear(res);

    if (rt->chunks == 0 && rt->expired == 0) {
        return NGX_OK;
    }

    /* one audit row per run that did something */

    (void) ngx_snprintf((u_char *) chunks, sizeof(chunks), "%L%Z",
                        rt->chunks);
    (void) ngx_snprintf((u_char *) bytes, sizeof(bytes), "%L%Z", rt->bytes);
    (void) ngx_snprintf((u_char *) expired, sizeof(expired), "%L%Z",
                        rt->expired);

    worker = ngx_segura_fleet_worker_id();

    params[1] = chunks;
    params[2] = bytes;
    params[3] = expired;
    params[4] = rt->retention;
    params[5] = rt->node;
    params[6] = worker ? worker : "";
    params[7] = started;
    params[8] = rt->more ? "t" : "f";

    res = ngx_segura_retention_query(rt,
              "insert into audit_log (action, object_type, detail)"
              " values ('recording_retention', 'recording',"
              " json_build_object('chunks', $2::bigint, 'bytes', $3::bigint,"
              " 'recordings_expired', $4::bigint,"
              " 'retention_ms', $5::bigint, 'cutoff', $1::timestamptz,"
              " 'node', $6::text, 'worker', $7::text,"
              " 'started', $8::timestamptz, 'finished', clock_timestamp(),"
              " 'more', $9::bool))", 9, params);
    if (res == NULL) {
        return NGX_ERROR;
    }

    PQclear(res);

    return NGX_OK;
}


/* the statement's result, or NULL with err (and nothing to clear) */

static PGresult *
ngx_segura_retention_query(ngx_segura_retention_t *rt, const char *sql,
    int nparams, const char *const *params)
{
    PGresult  *res;

    /* sent once: a lost connection ends the run, the next one goes on */

    res = ngx_segura_db_query(rt->smcf->db, &rt->conn, sql, nparams, params,
                              rt->err, sizeof(rt->err));

    if (res == NULL) {
        return NULL;
    }

    if (PQresultStatus(res) != PGRES_TUPLES_OK
        && PQresultStatus(res) != PGRES_COMMAND_OK)
    {
        PQclear(res);
        return NULL;
    }

    if (PQresultStatus(res) == PGRES_TUPLES_OK && PQntuples(res) != 1) {
        (void) ngx_cpystrn((u_char *) rt->err,
                           (u_char *) "a retention statement gave no row",
                           sizeof(rt->err));
        PQclear(res);
        return NULL;
    }

    return res;
}


static void
ngx_segura_retention_done(ngx_event_t *ev)
{
    ngx_segura_retention_t *rt = ev->data;

    rt->busy = 0;

    if (rt->err[0] != '\0') {
        if (!rt->failing) {
            ngx_log_error(NGX_LOG_ERR, rt->log, 0,
                          "segura retention: the run failed, retrying: %s",
                          rt->err);
            rt->failing = 1;
        }

    } else {
        if (rt->failing) {
            ngx_log_error(NGX_LOG_NOTICE, rt->log, 0,
                          "segura retention: runs work again");
            rt->failing = 0;
        }

        if (!rt->locked) {
            if (!rt->skipping) {
                ngx_log_error(NGX_LOG_INFO, rt->log, 0,
                              "segura retention: another node holds the "
                              "lock, run skipped");
                rt->skipping = 1;
            }

        } else {
            rt->skipping = 0;

            if (rt->chunks || rt->expired) {
                ngx_log_error(NGX_LOG_INFO, rt->log, 0,
                              "segura retention: deleted %L chunks "
                              "(%L bytes), %L recordings expired%s",
                              rt->chunks, rt->bytes, rt->expired,
                              rt->more ? ", more to do" : "");
            }
        }
    }

    if (ngx_exiting || ngx_quit || ngx_terminate) {
        return;
    }

    ngx_segura_retention_schedule(rt, rt->more ? NGX_SEGURA_RETENTION_SOON
                                               : rt->every);
}
