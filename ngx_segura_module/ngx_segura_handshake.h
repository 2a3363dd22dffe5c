
/*
 * Copyright (C) ngx_segura_module authors
 */


#ifndef _NGX_SEGURA_HANDSHAKE_H_INCLUDED_
#define _NGX_SEGURA_HANDSHAKE_H_INCLUDED_


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>
#include "ngx_segura.h"


/* event loop only */
ngx_int_t ngx_segura_handshake_handler(ngx_http_request_t *r);
ngx_int_t ngx_segura_handshake_add_variables(ngx_conf_t *cf);


#endif /* _NGX_SEGURA_HANDSHAKE_H_INCLUDED_ */
