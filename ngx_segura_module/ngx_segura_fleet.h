
/*
 * Copyright (C) ngx_segura_module authors
 */


#ifndef _NGX_SEGURA_FLEET_H_INCLUDED_
#define _NGX_SEGURA_FLEET_H_INCLUDED_


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>
#include "ngx_segura.h"


#define NGX_SEGURA_FLEET_ID_LEN  36    /* a UUID in text form */


/* event loop only */
ngx_int_t ngx_segura_fleet_init_process(ngx_cycle_t *cycle,
    ngx_http_segura_main_conf_t *smcf);
void ngx_segura_fleet_exit_process(void);

/*
 * either thread: the worker's id (ssh_sessions.worker_id), NUL-terminated,
 * set before any task is posted; NULL in a process that is not a worker
 */
const char *ngx_segura_fleet_worker_id(void);


#endif /* _NGX_SEGURA_FLEET_H_INCLUDED_ */
