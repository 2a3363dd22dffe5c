
/*
 * Copyright (C) ngx_segura_module authors
 */


#ifndef _NGX_SEGURA_SESSION_H_INCLUDED_
#define _NGX_SEGURA_SESSION_H_INCLUDED_


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>
#include "ngx_segura.h"


/* a live session, as the watcher re-checks it */

typedef struct {
    char                       id[40];
    int64_t                    user_id;
    int64_t                    key_id;
    int64_t                    device_id;
} ngx_segura_session_ref_t;


ngx_int_t ngx_segura_session_handler(ngx_http_request_t *r);
ngx_int_t ngx_segura_session_add_variables(ngx_conf_t *cf);

/* event loop only */
void ngx_segura_session_init_process(void);
ngx_uint_t ngx_segura_session_live_count(void);
void ngx_segura_session_live_get(ngx_segura_session_ref_t *refs,
    ngx_uint_t n);
void ngx_segura_session_end(const char *id, ngx_uint_t by_admin);


#endif /* _NGX_SEGURA_SESSION_H_INCLUDED_ */
