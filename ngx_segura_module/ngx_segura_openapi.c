
/*
 * Copyright (C) ngx_segura_module authors
 */


/*
 * GET /api/openapi.json: the API's OpenAPI 3.1 description,
 * docs/openapi.json, embedded into the module at build time with the
 * assembler's .incbin (the config file defines its path and makes the
 * objects depend on it).  Served from read-only memory by the API's
 * content handler, on the event loop, without a login, a pool task or a
 * copy; any other method than GET and HEAD is 405.  Event loop only.
 */


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>
#include "ngx_segura.h"
#include "ngx_segura_openapi.h"


#ifndef NGX_SEGURA_OPENAPI_FILE
#error "NGX_SEGURA_OPENAPI_FILE is defined by the module's config file"
#endif


/*
 * the document between two local symbols; the end is followed by a NUL so
 * that a debugger may print it, which is not part of the answer
 */

__asm__ (
    "    .pushsection .rodata\n"
    "    .balign 16\n"
    "ngx_segura_openapi_start:\n"
    "    .incbin \"" NGX_SEGURA_OPENAPI_FILE "\"\n"
    "ngx_segura_openapi_end:\n"
    "    .byte 0\n"
    "    .popsection\n"
);


extern const u_char  ngx_segura_openapi_start[]
    __asm__ ("ngx_segura_openapi_start");
extern const u_char  ngx_segura_openapi_end[]
    __asm__ ("ngx_segura_openapi_end");


ngx_uint_t
ngx_segura_openapi_is(ngx_http_request_t *r)
{
    static ngx_str_t  path = ngx_string(NGX_SEGURA_OPENAPI_PATH);

    return r->uri.len == path.len
           && ngx_strncmp(r->uri.data, path.data, path.len) == 0;
}


ngx_int_t
ngx_segura_openapi_handler(ngx_http_request_t *r)
{
    size_t        len;
    ngx_int_t     rc;
    ngx_buf_t    *b;
    ngx_chain_t   out;

    if (!(r->method & (NGX_HTTP_GET|NGX_HTTP_HEAD))) {
        return ngx_http_segura_send_error(r, NGX_SEGURA_ERR_METHOD, NULL,
                                          NULL);
    }

    if (ngx_http_discard_request_body(r) != NGX_OK) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    len = ngx_segura_openapi_end - ngx_segura_openapi_start;

    r->headers_out.status = NGX_HTTP_OK;
    r->headers_out.content_length_n = len;
    ngx_str_set(&r->headers_out.content_type, "application/json");
    r->headers_out.content_type_len = r->headers_out.content_type.len;
    r->headers_out.content_type_lowcase = NULL;

    if (ngx_http_segura_add_header(r, "X-Content-Type-Options", "nosniff")
        != NGX_OK)
    {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    rc = ngx_http_send_header(r);

    if (rc == NGX_ERROR || rc > NGX_OK || r->header_only) {
        return rc;
    }

    b = ngx_calloc_buf(r->pool);
    if (b == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    /* read-only memory of the module: nginx only reads from it */

    b->start = (u_char *) ngx_segura_openapi_start;
    b->pos = b->start;
    b->last = b->start + len;
    b->end = b->last;
    b->memory = 1;
    b->last_buf = (r == r->main) ? 1 : 0;
    b->last_in_chain = 1;

    out.buf = b;
    out.next = NULL;

    return ngx_http_output_filter(r, &out);
}
