
/*
 * Copyright (C) ngx_segura_module authors
 */


#ifndef _NGX_SEGURA_OUTBOX_H_INCLUDED_
#define _NGX_SEGURA_OUTBOX_H_INCLUDED_


#include <ngx_config.h>
#include <ngx_core.h>
#include "ngx_segura.h"


#define NGX_SEGURA_OUTBOX_MAX_PARAMS  16
#define NGX_SEGURA_OUTBOX_MAX_BINARY  (1024 * 1024)


/* event loop only */
ngx_int_t ngx_segura_outbox_init_process(ngx_cycle_t *cycle,
    ngx_http_segura_main_conf_t *smcf);
void ngx_segura_outbox_exit_process(void);

/*
 * Queues one idempotent statement with text parameters (NULL is SQL
 * null); the parameters are copied.  NGX_ERROR only when out of memory.
 */
ngx_int_t ngx_segura_outbox_add(ngx_log_t *log, const char *sql,
    ngx_uint_t nparams, const char *const *params);

/*
 * The same, where binary[i] > 0 makes params[i] a binary value of that
 * many bytes (for a bytea: at most NGX_SEGURA_OUTBOX_MAX_BINARY), and 0
 * leaves it text; binary may be NULL.
 */
ngx_int_t ngx_segura_outbox_add_binary(ngx_log_t *log, const char *sql,
    ngx_uint_t nparams, const char *const *params, const size_t *binary);

/* whether new sessions should be refused: the queue is over its bound */
ngx_uint_t ngx_segura_outbox_full(void);
size_t ngx_segura_outbox_pending(void);
/* the bytes queued (the bound of ngx_segura_outbox_full() is 16 MiB) */
size_t ngx_segura_outbox_size(void);


#endif /* _NGX_SEGURA_OUTBOX_H_INCLUDED_ */
