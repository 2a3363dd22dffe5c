
/*
 * Copyright (C) ngx_segura_module authors
 */


#ifndef _NGX_SEGURA_OPENAPI_H_INCLUDED_
#define _NGX_SEGURA_OPENAPI_H_INCLUDED_


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>


/* the one path it answers; the API's other routes: ngx_segura_api.c */
#define NGX_SEGURA_OPENAPI_PATH  "/api/openapi.json"


/* event loop: is the request for NGX_SEGURA_OPENAPI_PATH, and its answer */
ngx_uint_t ngx_segura_openapi_is(ngx_http_request_t *r);
ngx_int_t ngx_segura_openapi_handler(ngx_http_request_t *r);


#endif /* _NGX_SEGURA_OPENAPI_H_INCLUDED_ */
