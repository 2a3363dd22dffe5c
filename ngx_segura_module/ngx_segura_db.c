
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
 * Every connection is opened with a connect timeout and a statement
 * timeout, so that no task can hold a pool thread forever.
 */


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>
#include "ngx_segura.h"
#include "ngx_segura_db.h"

#include <pthread.h>


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


static void ngx_segura_db_error(char *err, size_t errlen, const char *what,
    const char *text);


ngx_segura_db_pool_t *
ngx_segura_db_pool_create(ngx_cycle_t *cycle, ngx_str_t *conninfo,
    ngx_uint_t max)
{
    ngx_segura_db_pool_t  *db;

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

    if (pthread_cond_init(&db->cond, NULL) != 0) {
        ngx_log_error(NGX_LOG_EMERG, cycle->log, 0,
                      "pthread_cond_init() failed");
        (void) pthread_mutex_destroy(&db->lock);
        return NULL;
    }

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
    PGconn  *conn;

    (void) pthread_mutex_lock(&db->lock);

    while (db->nidle == 0 && db->total >= db->max) {
        (void) pthread_cond_wait(&db->cond, &db->lock);
    }

    if (db->nidle) {
        conn = db->idle[--db->nidle];
        db->idle[db->nidle] = NULL;
        (void) pthread_mutex_unlock(&db->lock);

        if (PQstatus(conn) == CONNECTION_OK
            && PQtransactionStatus(conn) == PQTRANS_IDLE)
        {
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
    PGresult        *res;
    ngx_uint_t       idle;
    ExecStatusType   st;

    /*
     * runs one statement with text parameters; when the connection turned
     * out to be dead and no transaction was open, reconnects once and
     * retries, so that a PostgreSQL restart costs no failed request.
     * Inside a transaction a retry would run the statement outside it.
     */

    idle = (PQtransactionStatus(*conn) == PQTRANS_IDLE);

    res = PQexecParams(*conn, sql, nparams, NULL, params, NULL, NULL, 0);

    if (res == NULL || PQstatus(*conn) != CONNECTION_OK) {

        if (!idle) {
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

    static const char *const  keys[] = {
        "dbname", "connect_timeout", "options", "application_name", NULL
    };

    const char *values[] = {
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
        ngx_segura_db_error(err, errlen, "PQconnectdbParams()",
                            PQerrorMessage(conn));
        PQfinish(conn);
        return NULL;
    }

    return conn;
}


static void
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
