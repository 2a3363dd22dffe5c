
/*
 * Copyright (C) ngx_segura_module authors
 */


/*
 * The rotation schedule: keys with rotation_days are rotated when due,
 * and keys left partially rotated are retried (ngx_segura_rotate.c does
 * the work).  Worker 0 of each node looks every segura_rotation_schedule
 * (+-25% jitter); the pool task takes pg_try_advisory_xact_lock() in a
 * transaction of its own, so one node of the fleet at a time picks: it
 * ends the running rotations whose worker is gone (interrupted), and
 * picks at most NGX_SEGURA_ROTATE_SCHEDULE_MAX keys minus the scheduled
 * rotations this worker still runs.  The lock goes with the transaction:
 * no connection is held while devices answer.  Each picked key's rotation
 * claims the key again (key_rotations' running row, with the same "due"
 * test), so a key picked by two nodes in turn rotates once.
 *
 * A key is due when it is active, has rotation_days, its last rotation
 * (or its creation) is older than that, and no rotation of it ended
 * within segura_rotation_retry; a key with devices behind the current
 * version is retried (only those devices) on the same terms.
 *
 * Device connections use the http{} level's segura_connect_timeout,
 * segura_host_key_policy and resolver.  Event loop: the timer and the
 * completion; pool thread: the task, which touches only its own fields.
 */


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>
#include "ngx_segura.h"
#include "ngx_segura_db.h"
#include "ngx_segura_rotate.h"


#define NGX_SEGURA_ROTATE_SCHEDULE_LOCK  "6000280510318857545"
#define NGX_SEGURA_ROTATE_SCHEDULE_MAX   4
#define NGX_SEGURA_ROTATE_SCHEDULE_ERRLEN  256


typedef struct {
    ngx_http_segura_main_conf_t   *smcf;
    ngx_log_t                     *log;
    ngx_event_t                    timer;
    ngx_thread_task_t             *task;
    ngx_segura_rotate_conf_t       conf;

    /* the task's input and output */
    ngx_uint_t                     want;
    ngx_uint_t                     n;
    int64_t                        keys[NGX_SEGURA_ROTATE_SCHEDULE_MAX];
    unsigned                       retry[NGX_SEGURA_ROTATE_SCHEDULE_MAX];
    char                           err[NGX_SEGURA_ROTATE_SCHEDULE_ERRLEN];
    unsigned                       locked:1;
    unsigned                       failed:1;

    unsigned                       busy:1;
    unsigned                       failing:1;
} ngx_segura_rotate_schedule_t;


static void ngx_segura_rotate_schedule_next(ngx_segura_rotate_schedule_t *rs);
static void ngx_segura_rotate_schedule_tick(ngx_event_t *ev);
static void ngx_segura_rotate_schedule_task(void *data, ngx_log_t *log);
static PGresult *ngx_segura_rotate_schedule_query(
    ngx_segura_rotate_schedule_t *rs, PGconn **conn, const char *sql,
    int n, const char *const *params, ExecStatusType want);
static void ngx_segura_rotate_schedule_done(ngx_event_t *ev);


static ngx_segura_rotate_schedule_t  *ngx_segura_rotate_schedule;


ngx_int_t
ngx_segura_rotate_schedule_init_process(ngx_cycle_t *cycle,
    ngx_http_segura_main_conf_t *smcf)
{
    ngx_http_conf_ctx_t           *hc;
    ngx_http_core_loc_conf_t      *clcf;
    ngx_http_segura_loc_conf_t    *slcf;
    ngx_segura_rotate_schedule_t  *rs;

    if (smcf->rotation_schedule == 0
        || (ngx_process != NGX_PROCESS_WORKER
            && ngx_process != NGX_PROCESS_SINGLE)
        || ngx_worker != 0)
    {
        return NGX_OK;
    }

    rs = ngx_pcalloc(cycle->pool, sizeof(ngx_segura_rotate_schedule_t));
    if (rs == NULL) {
        return NGX_ERROR;
    }

    rs->smcf = smcf;
    rs->log = cycle->log;

    /* the http{} level's settings */

    hc = (ngx_http_conf_ctx_t *) cycle->conf_ctx[ngx_http_module.index];
    clcf = hc->loc_conf[ngx_http_core_module.ctx_index];
    slcf = hc->loc_conf[ngx_http_segura_module.ctx_index];

    /*
     * the http{} level's own values, which nothing merges: what is not
     * set there is the directives' default
     */

    rs->conf.smcf = smcf;
    rs->conf.connect_timeout = slcf->connect_timeout;
    rs->conf.resolver = clcf->resolver;
    rs->conf.resolver_timeout = clcf->resolver_timeout;
    rs->conf.policy = slcf->host_key_policy;

    if (rs->conf.connect_timeout == NGX_CONF_UNSET_MSEC) {
        rs->conf.connect_timeout = 10000;
    }

    if (rs->conf.resolver == NGX_CONF_UNSET_PTR) {
        rs->conf.resolver = NULL;
    }

    if (rs->conf.resolver_timeout == NGX_CONF_UNSET_MSEC) {
        rs->conf.resolver_timeout = 30000;
    }

    if (rs->conf.policy == NGX_CONF_UNSET_UINT) {
        rs->conf.policy = NGX_SEGURA_HOST_KEY_TOFU;
    }
    rs->conf.log = cycle->log;
    rs->conf.schedule = 1;
    rs->conf.retry_after = smcf->rotation_retry;

    rs->task = ngx_thread_task_alloc(cycle->pool,
                                     sizeof(ngx_segura_rotate_schedule_t *));
    if (rs->task == NULL) {
        return NGX_ERROR;
    }

    *(ngx_segura_rotate_schedule_t **) rs->task->ctx = rs;
    rs->task->handler = ngx_segura_rotate_schedule_task;
    rs->task->event.data = rs;
    rs->task->event.handler = ngx_segura_rotate_schedule_done;

    /* cancelable: a look not yet due never holds an exiting worker */

    rs->timer.handler = ngx_segura_rotate_schedule_tick;
    rs->timer.data = rs;
    rs->timer.log = cycle->log;
    rs->timer.cancelable = 1;

    ngx_segura_rotate_schedule = rs;

    ngx_log_error(NGX_LOG_INFO, cycle->log, 0,
                  "segura rotate: due keys are looked for every %M ms",
                  smcf->rotation_schedule);

    ngx_segura_rotate_schedule_next(rs);

    return NGX_OK;
}


void
ngx_segura_rotate_schedule_exit_process(void)
{
    ngx_segura_rotate_schedule_t  *rs;

    rs = ngx_segura_rotate_schedule;

    if (rs == NULL) {
        return;
    }

    if (rs->timer.timer_set) {
        ngx_del_timer(&rs->timer);
    }

    ngx_segura_rotate_schedule = NULL;
}


static void
ngx_segura_rotate_schedule_next(ngx_segura_rotate_schedule_t *rs)
{
    ngx_msec_t  delay, jitter;

    delay = rs->smcf->rotation_schedule;
    jitter = delay / 2;

    if (jitter > 0) {
        delay = delay - jitter / 2 + (ngx_msec_t) ngx_random() % jitter;
    }

    ngx_add_timer(&rs->timer, ngx_max(delay, 1));
}


static void
ngx_segura_rotate_schedule_tick(ngx_event_t *ev)
{
    ngx_segura_rotate_schedule_t *rs = ev->data;

    ngx_uint_t  running;

    if (ngx_exiting || ngx_quit || ngx_terminate || rs->busy) {
        return;
    }

    running = ngx_segura_rotate_scheduled();

    if (running >= NGX_SEGURA_ROTATE_SCHEDULE_MAX) {
        ngx_segura_rotate_schedule_next(rs);
        return;
    }

    rs->want = NGX_SEGURA_ROTATE_SCHEDULE_MAX - running;
    rs->n = 0;
    rs->err[0] = '\0';
    rs->locked = 0;
    rs->failed = 0;

    if (ngx_thread_task_post(rs->smcf->thread_pool, rs->task) != NGX_OK) {
        ngx_log_error(NGX_LOG_ERR, rs->log, 0,
                      "segura rotate: the thread pool refused the task");
        ngx_segura_rotate_schedule_next(rs);
        return;
    }

    rs->busy = 1;
}


static void
ngx_segura_rotate_schedule_task(void *data, ngx_log_t *log)
{
    ngx_segura_rotate_schedule_t *rs
        = *(ngx_segura_rotate_schedule_t **) data;

    int          i, n;
    PGconn      *conn;
    PGresult    *res;
    const char  *p[2];
    char         after[NGX_INT64_LEN + 1], want[NGX_INT64_LEN + 1];

    conn = ngx_segura_db_acquire(rs->smcf->db, rs->err, sizeof(rs->err));
    if (conn == NULL) {
        rs->failed = 1;
        return;
    }

    res = ngx_segura_rotate_schedule_query(rs, &conn,
              "begin", 0, NULL, PGRES_COMMAND_OK);
    if (res == NULL) {
        goto done;
    }

    PQclear(res);

    res = ngx_segura_rotate_schedule_query(rs, &conn,
              "select pg_try_advisory_xact_lock("
              NGX_SEGURA_ROTATE_SCHEDULE_LOCK ")", 0, NULL,
              PGRES_TUPLES_OK);
    if (res == NULL) {
        goto rollback;
    }

    rs->locked = (PQgetvalue(res, 0, 0)[0] == 't');
    PQclear(res);

    if (!rs->locked) {
        goto rollback;
    }

    res = ngx_segura_rotate_schedule_query(rs, &conn,
              "select segura_rotations_reap(null)", 0, NULL,
              PGRES_TUPLES_OK);
    if (res == NULL) {
        goto rollback;
    }

    PQclear(res);

    (void) ngx_snprintf((u_char *) after, sizeof(after), "%M%Z",
                        rs->smcf->rotation_retry);
    (void) ngx_snprintf((u_char *) want, sizeof(want), "%ui%Z", rs->want);

    p[0] = after;
    p[1] = want;

    /* a new pair when due, else a retry of the devices behind */

    res = ngx_segura_rotate_schedule_query(rs, &conn,
              "select k.id, not" NGX_SEGURA_ROTATE_DUE("false", "$1")
              " from ssh_keys k"
              " where" NGX_SEGURA_ROTATE_DUE("false", "$1")
              " or" NGX_SEGURA_ROTATE_DUE("true", "$1")
              " order by coalesce(k.rotated_at, k.created_at), k.id"
              " limit $2::int",
              2, p, PGRES_TUPLES_OK);
    if (res == NULL) {
        goto rollback;
    }

    n = PQntuples(res);

    for (i = 0; i < n && (ngx_uint_t) i < rs->want; i++) {
        rs->keys[i] = ngx_atoof((u_char *) PQgetvalue(res, i, 0),
                                ngx_strlen(PQgetvalue(res, i, 0)));
        rs->retry[i] = (PQgetvalue(res, i, 1)[0] == 't');
    }

    rs->n = i;
    PQclear(res);

    res = ngx_segura_rotate_schedule_query(rs, &conn,
              "commit", 0, NULL, PGRES_COMMAND_OK);
    if (res != NULL) {
        PQclear(res);
    }

    goto done;

rollback:

    res = PQexec(conn, "rollback");
    PQclear(res);

done:

    ngx_segura_db_release(rs->smcf->db, conn);
}


static PGresult *
ngx_segura_rotate_schedule_query(ngx_segura_rotate_schedule_t *rs,
    PGconn **conn, const char *sql, int n, const char *const *params,
    ExecStatusType want)
{
    PGresult  *res;

    res = ngx_segura_db_query(rs->smcf->db, conn, sql, n, params, rs->err,
                              sizeof(rs->err));
    if (res == NULL) {
        rs->failed = 1;
        return NULL;
    }

    if (PQresultStatus(res) != want) {
        ngx_segura_db_error(rs->err, sizeof(rs->err), "the rotation schedule",
                            PQresultErrorMessage(res));
        PQclear(res);
        rs->failed = 1;
        return NULL;
    }

    return res;
}


static void
ngx_segura_rotate_schedule_done(ngx_event_t *ev)
{
    ngx_segura_rotate_schedule_t *rs = ev->data;

    ngx_uint_t            i;
    ngx_segura_rotate_t  *rt;

    rs->busy = 0;

    if (rs->failed) {
        if (!rs->failing) {
            ngx_log_error(NGX_LOG_WARN, rs->log, 0,
                          "segura rotate: the schedule could not look for "
                          "due keys: %s", rs->err);
        }

        rs->failing = 1;

    } else {
        rs->failing = 0;
    }

    for (i = 0; i < rs->n && !ngx_exiting; i++) {
        rs->conf.key_id = rs->keys[i];
        rs->conf.retry = rs->retry[i];

        ngx_log_error(NGX_LOG_NOTICE, rs->log, 0,
                      "segura rotate: key %L is due%s", rs->keys[i],
                      rs->retry[i] ? " for a retry of the devices behind"
                                   : "");

        if (ngx_segura_rotate_start(&rs->conf, NULL, NULL, &rt) != NGX_OK) {
            ngx_log_error(NGX_LOG_ERR, rs->log, 0,
                          "segura rotate: key %L: the rotation could not "
                          "start", rs->keys[i]);
        }
    }

    ngx_segura_rotate_schedule_next(rs);
}
