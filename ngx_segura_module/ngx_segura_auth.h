
/*
 * Copyright (C) ngx_segura_module authors
 */


#ifndef _NGX_SEGURA_AUTH_H_INCLUDED_
#define _NGX_SEGURA_AUTH_H_INCLUDED_


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>
#include "ngx_segura.h"


/* event loop only */
ngx_table_elt_t *ngx_http_segura_find_header(ngx_http_request_t *r,
    const char *lowcase_name);
ngx_int_t ngx_http_segura_origin_ok(ngx_http_request_t *r,
    ngx_http_segura_loc_conf_t *slcf);
ngx_uint_t ngx_http_segura_is_json(ngx_http_request_t *r);
ngx_int_t ngx_http_segura_get_cookie(ngx_http_request_t *r, ngx_str_t *value);
ngx_int_t ngx_http_segura_decode_token(ngx_str_t *value, u_char *token);
ngx_int_t ngx_http_segura_set_cookie(ngx_http_request_t *r, u_char *token,
    ngx_msec_t lifetime, ngx_uint_t secure);


#endif /* _NGX_SEGURA_AUTH_H_INCLUDED_ */
