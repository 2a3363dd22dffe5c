
/*
 * Copyright (C) ngx_segura_module authors
 */


/*
 * The fleet: this worker's heartbeat, and the end of the sessions of the
 * workers that died.
 *
 * Every worker process has a random id of its own (a UUID v4 from
 * OpenSSL's generator, new in every process, so that a respawned worker or
 * a restarted node never takes over the rows of a dead one), written into
 * the audit row of every session it starts (ssh_sessions.worker_id).
 * Every third of segura_node_lost_timeout a pool thread runs
 * segura_worker_heartbeat() (sql/014_workers.sql): one round trip that
 * stamps this worker's row with the database's clock and ends, as
 * node_lost, the live rows of the workers silent for longer than their
 * window.  The function touches only rows not yet ended, so every worker
 * of every node may run it at once, and retrying it is harmless.
 *
 * The timer and the completion handlers run on the event loop; the task
 * runs on a pool thread and touches only the fleet's task fields (the
 * input is fixed for the worker's life, the output is read by the
 * completion handler).  One task at most is in flight.  A failed heartbeat
 * is logged once per outage and retried sooner than the next interval, so
 * that the worker is seen again soon after the database comes back.
 *
 * A graceful exit (reload, quit) must not silence a worker that still
 * relays sessions, or the fleet would end their rows under them: while it
 * has live sessions the timer stays non-cancelable and the heartbeat goes
 * on.  When it has none, the timer turns cancelable and every tick says
 * goodbye instead (segura_worker_goodbye()): the row is deleted once
 * nothing of the worker is live in the database, and stamped while the end
 * of a closing session is still on its way.  A goodbye in flight when the
 * worker exits still runs (nginx runs the queued tasks before it joins the
 * threads); a worker that exits before its row is deleted leaves it to the
 * fleet, which forgets it after its window and ends as node_lost whatever
 * of it was left live.
 */


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>
#include "ngx_segura.h"
#include "ngx_segura_db.h"
#include "ngx_segura_fleet.h"
#include "ngx_segura_live.h"

#include <openssl/rand.h>


#define NGX_SEGURA_FLEET_ERRLEN      256
#define NGX_SEGURA_FLEET_LOSTLEN     512
#define NGX_SEGURA_FLEET_NODE_LEN    256    /* segura_workers.node */
#define NGX_SEGURA_FLEET_POLL        1000   /* the longest between ticks */
#define NGX_SEGURA_FLEET_RETRY_MAX   1000


typedef struct {
    ngx_http_segura_main_conf_t   *smcf;
    ngx_log_t                     *log;

    ngx_event_t                    timer;
    ngx_thread_task_t             *task;
    ngx_msec_t                     interval;
    ngx_msec_t                     retry;
    ngx_msec_t                     next;       /* the next heartbeat is due */

    /* the task's input: goodbye is set before each post, the rest once */
    ngx_uint_t                     goodbye;    /* instead of a heartbeat */
    char                           id[NGX_SEGURA_FLEET_ID_LEN + 1];
    char                           node[NGX_SEGURA_FLEET_NODE_LEN + 1];
    char                           pid[NGX_INT_T_LEN + 1];
    char                           lost_after[NGX_INT_T_LEN + 1];  /* ms */

    /* the task's own connection, and its output */
    PGconn                        *conn;
    char                           err[NGX_SEGURA_FLEET_ERRLEN];
    char                           lost[NGX_SEGURA_FLEET_LOSTLEN];
    ngx_uint_t                     ended;
    ngx_uint_t                     deleted;    /* goodbye: the row is gone */

    unsigned                       busy:1;
    unsigned                       failing:1;  /* the outage is logged */
    unsigned                       gone:1;     /* no heartbeat any more */
} ngx_segura_fleet_t;


static ngx_int_t ngx_segura_fleet_make_id(ngx_segura_fleet_t *w);
static void ngx_segura_fleet_tick(ngx_event_t *ev);
static void ngx_segura_fleet_run(ngx_segura_fleet_t *w);
static ngx_int_t ngx_segura_fleet_post(ngx_segura_fleet_t *w,
    ngx_uint_t goodbye);
static void ngx_segura_fleet_failed(ngx_segura_fleet_t *w);
static void ngx_segura_fleet_task(void *data, ngx_log_t *log);
static void ngx_segura_fleet_heartbeat(ngx_segura_fleet_t *w,
    PGconn **conn);
static void ngx_segura_fleet_done(ngx_event_t *ev);


/* one per worker process */
static ngx_segura_fleet_t  *ngx_segura_fleet;


ngx_int_t
ngx_segura_fleet_init_process(ngx_cycle_t *cycle,
    ngx_http_segura_main_conf_t *smcf)
{
    size_t               len;
    ngx_segura_fleet_t  *w;

    /* a cache manager or loader runs no sessions: it has no heartbeat */

    if (ngx_process != NGX_PROCESS_WORKER
        && ngx_process != NGX_PROCESS_SINGLE)
    {
        return NGX_OK;
    }

    w = ngx_pcalloc(cycle->pool, sizeof(ngx_segura_fleet_t));
    if (w == NULL) {
        return NGX_ERROR;
    }

    w->smcf = smcf;
    w->log = cycle->log;

    if (ngx_segura_fleet_make_id(w) != NGX_OK) {
        ngx_log_error(NGX_LOG_EMERG, cycle->log, 0,
                      "segura fleet: RAND_bytes() failed");
        return NGX_ERROR;
    }

    len = ngx_min(cycle->hostname.len, NGX_SEGURA_FLEET_NODE_LEN);
    ngx_memcpy(w->node, cycle->hostname.data, len);
    w->node[len] = '\0';

    (void) ngx_snprintf((u_char *) w->pid, sizeof(w->pid), "%P%Z", ngx_pid);
    (void) ngx_snprintf((u_char *) w->lost_after, sizeof(w->lost_after),
                        "%M%Z", smcf->node_lost_timeout);

    w->interval = smcf->node_lost_timeout / 3;
    w->retry = ngx_min(w->interval / 3, NGX_SEGURA_FLEET_RETRY_MAX);

    w->task = ngx_thread_task_alloc(cycle->pool,
                                    sizeof(ngx_segura_fleet_t *));
    if (w->task == NULL) {
        return NGX_ERROR;
    }

    *(ngx_segura_fleet_t **) w->task->ctx = w;
    w->task->handler = ngx_segura_fleet_task;
    w->task->event.data = w;
    w->task->event.handler = ngx_segura_fleet_done;

    /*
     * not cancelable: a graceful exit waits for the tick that sees the
     * worker has nothing live any more (see ngx_segura_fleet_run())
     */

    w->timer.handler = ngx_segura_fleet_tick;
    w->timer.data = w;
    w->timer.log = cycle->log;

    ngx_segura_fleet = w;

    ngx_log_error(NGX_LOG_INFO, cycle->log, 0,
                  "segura fleet: worker %s, lost after %M ms of silence",
                  w->id, smcf->node_lost_timeout);

    /* the first heartbeat now, ahead of any session's task */

    w->next = ngx_current_msec;
    ngx_segura_fleet_run(w);

    return NGX_OK;
}


void
ngx_segura_fleet_exit_process(void)
{
    ngx_segura_fleet_t  *w;

    w = ngx_segura_fleet;

    if (w == NULL) {
        return;
    }

    /*
     * the thread pools have been joined: a goodbye posted has run; without
     * one (a fast shutdown), the row stays and the fleet forgets it once
     * it is silent for its window, ending what was left live
     */

    if (w->timer.timer_set) {
        ngx_del_timer(&w->timer);
    }

    if (w->conn != NULL) {
        PQfinish(w->conn);
        w->conn = NULL;
    }

    ngx_segura_fleet = NULL;
}


const char *
ngx_segura_fleet_worker_id(void)
{
    return ngx_segura_fleet ? ngx_segura_fleet->id : NULL;
}


static ngx_int_t
ngx_segura_fleet_make_id(ngx_segura_fleet_t *w)
{
    u_char  *p, b[16];

    /* OpenSSL reseeds its generator in a forked child (1.1.1 and later) */

    if (RAND_bytes(b, sizeof(b)) != 1) {
        return NGX_ERROR;
    }

    /* RFC 4122 4.4: version 4, variant 10 */

    b[6] = (b[6] & 0x0f) | 0x40;
    b[8] = (b[8] & 0x3f) | 0x80;

    p = (u_char *) w->id;
    p = ngx_hex_dump(p, b, 4);
    *p++ = '-';
    p = ngx_hex_dump(p, b + 4, 2);
    *p++ = '-';
    p = ngx_hex_dump(p, b + 6, 2);
    *p++ = '-';
    p = ngx_hex_dump(p, b + 8, 2);
    *p++ = '-';
    p = ngx_hex_dump(p, b + 10, 6);
    *p = '\0';

    return NGX_OK;
}


static void
ngx_segura_fleet_tick(ngx_event_t *ev)
{
    ngx_segura_fleet_run(ev->data);
}


static void
ngx_segura_fleet_run(ngx_segura_fleet_t *w)
{
    ngx_uint_t      goodbye;
    ngx_msec_t      delay;
    ngx_msec_int_t  left;

    if (w->gone) {
        return;
    }

    /*
     * exiting with no live session: a goodbye every tick instead of a
     * heartbeat, until nothing of this worker is live in the database (a
     * closing session's end may still be on its way) and the row is gone;
     * the timer is cancelable then, so that it holds the worker no longer
     * than the sessions' own timers do
     */

    goodbye = (ngx_exiting && ngx_segura_live_count() == 0);

    w->timer.cancelable = goodbye;

    left = (ngx_msec_int_t) (w->next - ngx_current_msec);

    if (goodbye && left > (ngx_msec_int_t) NGX_SEGURA_FLEET_POLL) {
        left = 0;
    }

    if (!w->busy && left <= 0) {

        if (ngx_segura_fleet_post(w, goodbye) == NGX_OK) {
            w->next = ngx_current_msec
                      + (goodbye ? NGX_SEGURA_FLEET_POLL : w->interval);

        } else {
            ngx_segura_fleet_failed(w);
        }

        left = (ngx_msec_int_t) (w->next - ngx_current_msec);
    }

    /* at least once a second, so that a graceful exit is noticed soon */

    delay = NGX_SEGURA_FLEET_POLL;

    if (!w->busy && left < (ngx_msec_int_t) delay) {
        delay = (left > 0) ? (ngx_msec_t) left : 1;
    }

    ngx_add_timer(&w->timer, delay);
}


static ngx_int_t
ngx_segura_fleet_post(ngx_segura_fleet_t *w, ngx_uint_t goodbye)
{
    w->goodbye = goodbye;
    w->deleted = 0;
    w->err[0] = '\0';
    w->lost[0] = '\0';
    w->ended = 0;

    if (ngx_thread_task_post(w->smcf->thread_pool, w->task) != NGX_OK) {
        (void) ngx_cpystrn((u_char *) w->err,
                           (u_char *) "the thread pool refused the task",
                           sizeof(w->err));
        return NGX_ERROR;
    }

    w->busy = 1;

    return NGX_OK;
}


static void
ngx_segura_fleet_failed(ngx_segura_fleet_t *w)
{
    if (!w->failing) {
        ngx_log_error(NGX_LOG_ERR, w->log, 0,
                      "segura fleet: heartbeat of worker %s failed, "
                      "retrying: %s", w->id, w->err);
        w->failing = 1;
    }

    w->next = ngx_current_msec + w->retry;
}


static void
ngx_segura_fleet_task(void *data, ngx_log_t *log)
{
    ngx_segura_fleet_t *w = *(ngx_segura_fleet_t **) data;

    PGresult    *res;
    const char  *params[1];

    /*
     * a pool thread.  The heartbeat has a connection of its own, not one
     * of the pool's: a pool taken up by slow queries must not make a
     * living worker look dead to the fleet.
     */

    if (ngx_segura_db_broken(w->conn)) {
        if (w->conn != NULL) {
            PQfinish(w->conn);
        }

        w->conn = ngx_segura_db_connect(w->smcf->db,
                                        "ngx_segura_module heartbeat",
                                        w->err, sizeof(w->err));
        if (w->conn == NULL) {
            return;
        }
    }

    if (!w->goodbye) {
        ngx_segura_fleet_heartbeat(w, &w->conn);

    } else {
        params[0] = w->id;

        res = ngx_segura_db_query(w->smcf->db, &w->conn,
                                  "select segura_worker_goodbye($1)",
                                  1, params, w->err, sizeof(w->err));

        if (res != NULL && PQresultStatus(res) == PGRES_TUPLES_OK
            && PQntuples(res) == 1)
        {
            w->deleted = (PQgetvalue(res, 0, 0)[0] == 't');

        } else if (w->err[0] == '\0') {
            (void) ngx_cpystrn((u_char *) w->err,
                               (u_char *) "segura_worker_goodbye() failed",
                               sizeof(w->err));
        }

        PQclear(res);
    }

    if (w->conn != NULL && PQtransactionStatus(w->conn) != PQTRANS_IDLE) {
        /* never keep a connection in an unknown state */
        PQfinish(w->conn);
        w->conn = NULL;
    }
}


static void
ngx_segura_fleet_heartbeat(ngx_segura_fleet_t *w, PGconn **conn)
{
    u_char      *p, *last;
    char        *node;
    PGresult    *res;
    ngx_int_t    n;
    ngx_uint_t   i, rows;
    const char  *params[4];

    params[0] = w->id;
    params[1] = w->node;
    params[2] = w->pid;
    params[3] = w->lost_after;

    /*
     * idempotent, so the reconnect-and-retry of ngx_segura_db_query() may
     * run it twice
     */

    res = ngx_segura_db_query(w->smcf->db, conn,
              "select lost_worker, lost_node, lost_pid, ended"
              " from segura_worker_heartbeat($1, $2, $3,"
              " $4::bigint * interval '1 millisecond')",
              4, params, w->err, sizeof(w->err));

    if (res == NULL || PQresultStatus(res) != PGRES_TUPLES_OK) {
        if (w->err[0] == '\0') {
            (void) ngx_cpystrn((u_char *) w->err,
                               (u_char *) "segura_worker_heartbeat() failed",
                               sizeof(w->err));
        }

        PQclear(res);
        return;
    }

    /* what was ended, for the log: "host pid 123 (worker <id>): 2" */

    p = (u_char *) w->lost;
    last = p + sizeof(w->lost) - 1;
    rows = PQntuples(res);

    for (i = 0; i < rows; i++) {
        n = ngx_atoi((u_char *) PQgetvalue(res, i, 3),
                     PQgetlength(res, i, 3));
        if (n > 0) {
            w->ended += n;
        }

        if (i) {
            p = ngx_slprintf(p, last, ", ");
        }

        if (PQgetisnull(res, i, 0)) {
            p = ngx_slprintf(p, last, "rows without a worker: %i", n);
            continue;
        }

        node = PQgetvalue(res, i, 1);

        p = ngx_slprintf(p, last, "%s pid %s (worker %s): %i", node,
                         PQgetvalue(res, i, 2), PQgetvalue(res, i, 0), n);
    }

    *p = '\0';

    PQclear(res);
}


static void
ngx_segura_fleet_done(ngx_event_t *ev)
{
    ngx_segura_fleet_t *w = ev->data;

    w->busy = 0;

    if (w->goodbye && w->deleted) {
        ngx_log_error(NGX_LOG_INFO, w->log, 0,
                      "segura fleet: worker %s has nothing live, its row "
                      "is deleted", w->id);

        w->gone = 1;

        if (w->timer.timer_set) {
            ngx_del_timer(&w->timer);
        }

        return;
    }

    if (w->err[0] != '\0') {
        ngx_segura_fleet_failed(w);

    } else if (w->failing) {
        ngx_log_error(NGX_LOG_NOTICE, w->log, 0,
                      "segura fleet: heartbeat of worker %s is back", w->id);
        w->failing = 0;
    }

    if (w->ended) {
        ngx_log_error(NGX_LOG_WARN, w->log, 0,
                      "segura fleet: ended %ui live sessions of lost "
                      "workers as node_lost: %s", w->ended, w->lost);
    }

    ngx_segura_fleet_run(w);
}
