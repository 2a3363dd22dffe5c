
/*
 * Copyright (C) ngx_segura_module authors
 */


#ifndef _NGX_SEGURA_WATCH_H_INCLUDED_
#define _NGX_SEGURA_WATCH_H_INCLUDED_


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>
#include "ngx_segura.h"


/* event loop only */
ngx_int_t ngx_segura_watch_init_process(ngx_cycle_t *cycle,
    ngx_http_segura_main_conf_t *smcf);
void ngx_segura_watch_exit_process(void);
ngx_uint_t ngx_segura_watch_generation(void);
void ngx_segura_watch_recheck(void);


#endif /* _NGX_SEGURA_WATCH_H_INCLUDED_ */
