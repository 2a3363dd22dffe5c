
/*
 * Copyright (C) ngx_segura_module authors
 */


/*
 * PostgreSQL access: a per-worker pool of libpq connections.
 *
 * The pool is created and destroyed on the event loop (init and exit
 * process).  Connections are taken, used with blocking libpq calls and
 * given back by thread-pool tasks only, never on the event loop; a mutex
 * guards the idle list because several pool threads share it.
 *
 * Every wait is bounded, so that no task can hold a pool thread forever:
 * a task finding all connections in use waits at most
 * NGX_SEGURA_DB_ACQUIRE_TIMEOUT (3 s) for one to come back and then fails
 * (its caller answers 503 database_unavailable); opening a connection
 * takes at most the connect timeout per host; a statement at most the
 * statement timeout.
 *
 * A pooled connection may die while idle: PostgreSQL restarted or failed
 * over, an administrator terminated the backend.  The server then says
 * so (an error report, end of file) on a socket that should be silent,
 * so ngx_segura_db_acquire() replaces any idle connection with something
 * to read before handing it out.  A connection found dead by a statement
 * is another matter: the statement may or may not have run, and may have
 * committed.  Hence the rule for callers:
 *
 *   ngx_segura_db_query() sends a statement at most once.  It is for
 *   everything that must not happen twice: inserts (audit_log,
 *   login_failures, ssh_sessions), counters, anything not idempotent;
 *   and it is the default.
 *
 *   ngx_segura_db_query_retry() reconnects and sends it once more when
 *   the connection turned out to be dead and no transaction was open
 *   (inside one, a retry would run the statement outside it).  Only for
 *   statements whose second run changes nothing the first did not:
 *   read-only selects, "begin", and updates that set rather than add
 *   (last_seen_at = now(), revoked_at = coalesce(revoked_at, now())).
 */


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>
#include "ngx_segura.h"
#include "ngx_segura_db.h"
#include "ngx_segura_metrics.h"

#include <poll.h>
#include <pthread.h>


#define NGX_SEGURA_DB_ACQUIRE_TIMEOUT    3000
#define NGX_SEGURA_DB_CONNECT_TIMEOUT    "5"
#define NGX_SEGURA_DB_OPTIONS            "-c statement_timeout=30000 "      \
                                         "-c idle_in_transaction_session_"  \
                                         "timeout=60000"


struct ngx_segura_db_pool_s {
    pthread_mutex_t        lock;
    pthread_cond_t         cond;
    char                  *conninfo;
    PGconn               **idle;
    ngx_uint_t             nidle;
    ngx_uint_t             total;
    ngx_uint_t             max;
};


static ngx_uint_t ngx_segura_db_usable(PGconn *conn);
static PGresult *ngx_segura_db_exec(ngx_segura_db_pool_t *db, PGconn **conn,
    ngx_uint_t retry, const char *sql, int nparams,
    const char *const *params, char *err, size_t errlen);


ngx_segura_db_pool_t *
ngx_segura_db_pool_create(ngx_cycle_t *cycle, ngx_str_t *conninfo,
    ngx_uint_t max)
{
    ngx_segura_db_pool_t  *db;
    pthread_condattr_t     attr;

    db = ngx_pcalloc(cycle->pool, sizeof(ngx_segura_db_pool_t));
    if (db == NULL) {
        return NULL;
    }

    db->idle = ngx_pcalloc(cycle->pool, max * sizeof(PGconn *));
    if (db->idle == NULL) {
        return NULL;
    }

    /* NUL-terminated by the directive handler */
    db->conninfo = (char *) conninfo->data;
    db->max = max;

    if (pthread_mutex_init(&db->lock, NULL) != 0) {
        ngx_log_error(NGX_LOG_EMERG, cycle->log, 0,
                      "pthread_mutex_init() failed");
        return NULL;
    }

    /* the wait for a connection is measured on a clock nobody sets */

    if (pthread_condattr_init(&attr) != 0) {
        ngx_log_error(NGX_LOG_EMERG, cycle->log, 0,
                      "pthread_condattr_init() failed");
        (void) pthread_mutex_destroy(&db->lock);
        return NULL;
    }

    if (pthread_condattr_setclock(&attr, CLOCK_MONOTONIC) != 0
        || pthread_cond_init(&db->cond, &attr) != 0)
    {
        ngx_log_error(NGX_LOG_EMERG, cycle->log, 0,
                      "pthread_cond_init(CLOCK_MONOTONIC) failed");
        (void) pthread_condattr_destroy(&attr);
        (void) pthread_mutex_destroy(&db->lock);
        return NULL;
    }

    (void) pthread_condattr_destroy(&attr);

    return db;
}


void
ngx_segura_db_pool_destroy(ngx_segura_db_pool_t *db)
{
    ngx_uint_t  i;

    /* event loop, after the thread pools have been joined */

    for (i = 0; i < db->nidle; i++) {
        PQfinish(db->idle[i]);
        db->idle[i] = NULL;
    }

    db->nidle = 0;
    db->total = 0;

    (void) pthread_cond_destroy(&db->cond);
    (void) pthread_mutex_destroy(&db->lock);
}


PGconn *
ngx_segura_db_acquire(ngx_segura_db_pool_t *db, char *err, size_t errlen)
{
    int               rc;
    PGconn           *conn;
    struct timespec   deadline;

    (void) clock_gettime(CLOCK_MONOTONIC, &deadline);

    deadline.tv_sec += NGX_SEGURA_DB_ACQUIRE_TIMEOUT / 1000;
    deadline.tv_nsec += (NGX_SEGURA_DB_ACQUIRE_TIMEOUT % 1000) * 1000000;

    if (deadline.tv_nsec >= 1000000000) {
        deadline.tv_sec++;
        deadline.tv_nsec -= 1000000000;
    }

    rc = 0;

    (void) pthread_mutex_lock(&db->lock);

    while (db->nidle == 0 && db->total >= db->max) {

        if (rc == ETIMEDOUT) {
            (void) pthread_mutex_unlock(&db->lock);
            ngx_segura_metrics_db_error(NGX_SEGURA_METRIC_DB_POOL_TIMEOUT,
                                        NULL);

            if (err != NULL && errlen > 0) {
                (void) ngx_snprintf((u_char *) err, errlen - 1,
                                    "no database connection free within "
                                    "%d ms (all %ui in use)%Z",
                                    NGX_SEGURA_DB_ACQUIRE_TIMEOUT, db->max);
                err[errlen - 1] = '\0';
            }

            return NULL;
        }

        rc = pthread_cond_timedwait(&db->cond, &db->lock, &deadline);
    }

    if (db->nidle) {
        conn = db->idle[--db->nidle];
        db->idle[db->nidle] = NULL;
        (void) pthread_mutex_unlock(&db->lock);

        if (ngx_segura_db_usable(conn)) {
            return conn;
        }

        /* a stale connection: replace it */

        PQfinish(conn);

    } else {
        db->total++;
        (void) pthread_mutex_unlock(&db->lock);
    }

    conn = ngx_segura_db_connect(db, "ngx_segura_module", err, errlen);

    if (conn == NULL) {
        (void) pthread_mutex_lock(&db->lock);
        db->total--;
        (void) pthread_cond_signal(&db->cond);
        (void) pthread_mutex_unlock(&db->lock);
    }

    return conn;
}


void
ngx_segura_db_release(ngx_segura_db_pool_t *db, PGconn *conn)
{
    if (conn != NULL
        && (PQstatus(conn) != CONNECTION_OK
            || PQtransactionStatus(conn) != PQTRANS_IDLE))
    {
        /* never hand on a broken connection or an open transaction */

        PQfinish(conn);
        conn = NULL;
    }

    (void) pthread_mutex_lock(&db->lock);

    if (conn != NULL) {
        db->idle[db->nidle++] = conn;

    } else {
        db->total--;
    }

    (void) pthread_cond_signal(&db->cond);
    (void) pthread_mutex_unlock(&db->lock);
}


PGresult *
ngx_segura_db_query(ngx_segura_db_pool_t *db, PGconn **conn,
    const char *sql, int nparams, const char *const *params, char *err,
    size_t errlen)
{
    return ngx_segura_db_exec(db, conn, 0, sql, nparams, params, err,
                              errlen);
}


PGresult *
ngx_segura_db_query_retry(ngx_segura_db_pool_t *db, PGconn **conn,
    const char *sql, int nparams, const char *const *params, char *err,
    size_t errlen)
{
    return ngx_segura_db_exec(db, conn, 1, sql, nparams, params, err,
                              errlen);
}


static PGresult *
ngx_segura_db_exec(ngx_segura_db_pool_t *db, PGconn **conn, ngx_uint_t retry,
    const char *sql, int nparams, const char *const *params, char *err,
    size_t errlen)
{
    PGresult        *res;
    ngx_uint_t       idle;
    ExecStatusType   st;

    /*
     * runs one statement with text parameters; on a dead connection,
     * reconnects and runs it again only when the caller said that is
     * harmless and no transaction was open (the header comment has the
     * rule); else the caller finds the connection broken
     */

    idle = (PQtransactionStatus(*conn) == PQTRANS_IDLE);

    res = PQexecParams(*conn, sql, nparams, NULL, params, NULL, NULL, 0);

    if (res == NULL || PQstatus(*conn) != CONNECTION_OK) {

        ngx_segura_metrics_db_error(NGX_SEGURA_METRIC_DB_STATEMENT, NULL);

        if (!retry || !idle) {
            ngx_segura_db_error(err, errlen, "PQexecParams()",
                                PQerrorMessage(*conn));
            PQclear(res);
            return NULL;
        }

        PQclear(res);

        PQfinish(*conn);
        *conn = ngx_segura_db_connect(db, "ngx_segura_module", err, errlen);

        if (*conn == NULL) {
            return NULL;
        }

        res = PQexecParams(*conn, sql, nparams, NULL, params, NULL, NULL, 0);

        if (res == NULL) {
            ngx_segura_db_error(err, errlen, "PQexecParams()",
                                PQerrorMessage(*conn));
            return NULL;
        }
    }

    st = PQresultStatus(res);

    if (st != PGRES_COMMAND_OK && st != PGRES_TUPLES_OK) {
        ngx_segura_db_error(err, errlen, "PQexecParams()",
                            PQresultErrorMessage(res));
        ngx_segura_metrics_db_error(NGX_SEGURA_METRIC_DB_STATEMENT,
                                    PQresultErrorField(res, PG_DIAG_SQLSTATE));
    }

    return res;
}


ngx_uint_t
ngx_segura_db_broken(PGconn *conn)
{
    return conn == NULL || PQstatus(conn) != CONNECTION_OK;
}


PGconn *
ngx_segura_db_connect(ngx_segura_db_pool_t *db, const char *app, char *err,
    size_t errlen)
{
    PGconn  *conn;

    /*
     * before "dbname": defaults that segura_database may override.  A
     * server that vanishes without a reset (a host or a network gone)
     * must not hold a pool thread until TCP gives up after minutes:
     * keepalives find an idle connection dead in about 25 s, and
     * tcp_user_timeout ends a query whose data goes unacknowledged for
     * 15 s.  After "dbname": what the module needs whatever it says.
     */

    static const char *const  keys[] = {
        "keepalives", "keepalives_idle", "keepalives_interval",
        "keepalives_count", "tcp_user_timeout",
        "dbname", "connect_timeout", "options", "application_name", NULL
    };

    const char *values[] = {
        "1", "10", "5", "3", "15000",
        db->conninfo, NGX_SEGURA_DB_CONNECT_TIMEOUT, NGX_SEGURA_DB_OPTIONS,
        app, NULL
    };

    /* expand_dbname: the first value is a whole conninfo string */

    conn = PQconnectdbParams(keys, values, 1);

    if (conn == NULL) {
        ngx_segura_db_error(err, errlen, "PQconnectdbParams()",
                            "out of memory");
        return NULL;
    }

    if (PQstatus(conn) != CONNECTION_OK) {
        ngx_segura_metrics_db_error(NGX_SEGURA_METRIC_DB_CONNECT, NULL);
        ngx_segura_db_error(err, errlen, "PQconnectdbParams()",
                            PQerrorMessage(conn));
        PQfinish(conn);
        return NULL;
    }

    return conn;
}


static ngx_uint_t
ngx_segura_db_usable(PGconn *conn)
{
    struct pollfd  pfd;

    if (PQstatus(conn) != CONNECTION_OK
        || PQtransactionStatus(conn) != PQTRANS_IDLE)
    {
        return 0;
    }

    /*
     * an idle pooled connection listens to nothing, so the server has
     * nothing to tell it but that it is going away (a FATAL report, then
     * end of file); a false alarm costs only a reconnection
     */

    pfd.fd = PQsocket(conn);
    pfd.events = POLLIN;
    pfd.revents = 0;

    return poll(&pfd, 1, 0) == 0;
}


void
ngx_segura_db_error(char *err, size_t errlen, const char *what,
    const char *text)
{
    u_char  *p, *last;

    if (err == NULL || errlen == 0) {
        return;
    }

    /* libpq messages end with a newline and may span lines */

    p = ngx_snprintf((u_char *) err, errlen - 1, "%s failed: %s", what, text);

    for (last = p; last > (u_char *) err
                   && (last[-1] == '\n' || last[-1] == ' '); last--)
    {
        /* void */
    }

    *last = '\0';

    for (p = (u_char *) err; p < last; p++) {
        if (*p == '\n') {
            *p = ' ';
        }
    }
}
