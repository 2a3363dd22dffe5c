
/*
 * Copyright (C) ngx_segura_module authors
 */


#ifndef _NGX_SEGURA_RETENTION_H_INCLUDED_
#define _NGX_SEGURA_RETENTION_H_INCLUDED_


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>
#include "ngx_segura.h"


/* event loop only */
ngx_int_t ngx_segura_retention_init_process(ngx_cycle_t *cycle,
    ngx_http_segura_main_conf_t *smcf);
void ngx_segura_retention_exit_process(void);


#endif /* _NGX_SEGURA_RETENTION_H_INCLUDED_ */
