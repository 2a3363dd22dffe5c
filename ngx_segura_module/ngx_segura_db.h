
/*
 * Copyright (C) ngx_segura_module authors
 */


#ifndef _NGX_SEGURA_DB_H_INCLUDED_
#define _NGX_SEGURA_DB_H_INCLUDED_


#include <ngx_config.h>
#include <ngx_core.h>
#include <libpq-fe.h>


ngx_segura_db_pool_t *ngx_segura_db_pool_create(ngx_cycle_t *cycle,
    ngx_str_t *conninfo, ngx_uint_t max);
void ngx_segura_db_pool_destroy(ngx_segura_db_pool_t *db);

/* either thread: "<what> failed: <libpq text>" on one line, in err */
void ngx_segura_db_error(char *err, size_t errlen, const char *what,
    const char *text);

/* pool threads only */

/* NULL with err after at most 3 s without a free connection, or when none
 * can be opened; the caller answers 503 database_unavailable */
PGconn *ngx_segura_db_acquire(ngx_segura_db_pool_t *db, char *err,
    size_t errlen);
void ngx_segura_db_release(ngx_segura_db_pool_t *db, PGconn *conn);

/* the statement is sent at most once: for anything not idempotent */
PGresult *ngx_segura_db_query(ngx_segura_db_pool_t *db, PGconn **conn,
    const char *sql, int nparams, const char *const *params, char *err,
    size_t errlen);
/* may be sent twice (a reconnection): selects and idempotent updates */
PGresult *ngx_segura_db_query_retry(ngx_segura_db_pool_t *db, PGconn **conn,
    const char *sql, int nparams, const char *const *params, char *err,
    size_t errlen);
ngx_uint_t ngx_segura_db_broken(PGconn *conn);
PGconn *ngx_segura_db_connect(ngx_segura_db_pool_t *db, const char *app,
    char *err, size_t errlen);


#endif /* _NGX_SEGURA_DB_H_INCLUDED_ */
