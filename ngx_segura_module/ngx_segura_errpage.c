
/*
 * Copyright (C) ngx_segura_module authors
 */


/*
 * The module's locations answer every error with JSON, nginx's own
 * included: a header and a body filter replace the HTML page that nginx
 * makes for a 4xx or 5xx (a body over client_max_body_size, a bad header,
 * a URI too long, a request body timeout, ...) with the module's error
 * object.  A request counts as the module's when its location is a
 * segura_api or segura_session one, or, for the errors nginx finds before
 * it has chosen a location, when the path of its request line starts with
 * the name of such a prefix or exact location of its server.  Its own
 * module object (ngx_http_segura_errpage_module) gives it a request
 * context of its own.  Event loop only.
 */


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>
#include "ngx_segura.h"


typedef struct {
    ngx_chain_t                 out;
    ngx_buf_t                   buf;
    unsigned                    sent:1;
} ngx_http_segura_errpage_ctx_t;


static ngx_int_t ngx_http_segura_errpage_init(ngx_conf_t *cf);
static ngx_uint_t ngx_http_segura_errpage_ours(ngx_http_request_t *r);
static ngx_uint_t ngx_http_segura_errpage_path(ngx_http_request_t *r,
    ngx_str_t *path);
static ngx_int_t ngx_http_segura_errpage_header_filter(
    ngx_http_request_t *r);
static ngx_int_t ngx_http_segura_errpage_body_filter(ngx_http_request_t *r,
    ngx_chain_t *in);


static ngx_http_module_t  ngx_http_segura_errpage_module_ctx = {
    NULL,                                  /* preconfiguration */
    ngx_http_segura_errpage_init,          /* postconfiguration */

    NULL,                                  /* create main configuration */
    NULL,                                  /* init main configuration */

    NULL,                                  /* create server configuration */
    NULL,                                  /* merge server configuration */

    NULL,                                  /* create location configuration */
    NULL                                   /* merge location configuration */
};


ngx_module_t  ngx_http_segura_errpage_module = {
    NGX_MODULE_V1,
    &ngx_http_segura_errpage_module_ctx,   /* module context */
    NULL,                                  /* module directives */
    NGX_HTTP_MODULE,                       /* module type */
    NULL,                                  /* init master */
    NULL,                                  /* init module */
    NULL,                                  /* init process */
    NULL,                                  /* init thread */
    NULL,                                  /* exit thread */
    NULL,                                  /* exit process */
    NULL,                                  /* exit master */
    NGX_MODULE_V1_PADDING
};


static ngx_http_output_header_filter_pt  ngx_http_next_header_filter;
static ngx_http_output_body_filter_pt    ngx_http_next_body_filter;


static ngx_int_t
ngx_http_segura_errpage_init(ngx_conf_t *cf)
{
    ngx_http_next_header_filter = ngx_http_top_header_filter;
    ngx_http_top_header_filter = ngx_http_segura_errpage_header_filter;

    ngx_http_next_body_filter = ngx_http_top_body_filter;
    ngx_http_top_body_filter = ngx_http_segura_errpage_body_filter;

    return NGX_OK;
}


static ngx_int_t
ngx_http_segura_errpage_header_filter(ngx_http_request_t *r)
{
    u_char                         *json;
    size_t                          len;
    ngx_segura_err_e                err;
    const char                     *message;
    ngx_http_segura_errpage_ctx_t  *ctx;

    /*
     * r->err_status is set by nginx's special response handler only: a
     * response the module wrote itself never has it
     */

    if (r->err_status < NGX_HTTP_BAD_REQUEST
        || r != r->main
        || (r->headers_out.content_type.len == sizeof("application/json") - 1
            && ngx_strncmp(r->headers_out.content_type.data,
                           "application/json",
                           sizeof("application/json") - 1) == 0)
        || !ngx_http_segura_errpage_ours(r))
    {
        return ngx_http_next_header_filter(r);
    }

    message = NULL;

    switch (r->err_status) {

    case NGX_HTTP_BAD_REQUEST:
        err = NGX_SEGURA_ERR_BAD_REQUEST;
        break;

    case NGX_HTTP_UNAUTHORIZED:
        err = NGX_SEGURA_ERR_UNAUTHENTICATED;
        break;

    case NGX_HTTP_FORBIDDEN:
        err = NGX_SEGURA_ERR_FORBIDDEN;
        break;

    case NGX_HTTP_NOT_FOUND:
        err = NGX_SEGURA_ERR_NOT_FOUND;
        break;

    case NGX_HTTP_NOT_ALLOWED:
        err = NGX_SEGURA_ERR_METHOD;
        break;

    case NGX_HTTP_REQUEST_ENTITY_TOO_LARGE:
        err = NGX_SEGURA_ERR_TOO_LARGE;
        break;

    case NGX_HTTP_REQUEST_URI_TOO_LARGE:
        err = NGX_SEGURA_ERR_URI_TOO_LONG;
        break;

    case NGX_HTTP_UNSUPPORTED_MEDIA_TYPE:
        err = NGX_SEGURA_ERR_MEDIA_TYPE;
        break;

    default:

        /* nginx's status stays; the code says which class it is */

        if (r->err_status < NGX_HTTP_INTERNAL_SERVER_ERROR) {
            err = NGX_SEGURA_ERR_BAD_REQUEST;
            message = "The request was refused";

        } else {
            err = NGX_SEGURA_ERR_INTERNAL;
        }
    }

    json = ngx_http_segura_error_body(r->pool, err, message, &len);
    if (json == NULL) {
        return NGX_ERROR;
    }

    ctx = ngx_pcalloc(r->pool, sizeof(ngx_http_segura_errpage_ctx_t));
    if (ctx == NULL) {
        return NGX_ERROR;
    }

    ctx->buf.pos = json;
    ctx->buf.last = json + len;
    ctx->buf.memory = 1;
    ctx->buf.last_buf = 1;
    ctx->buf.last_in_chain = 1;
    ctx->out.buf = &ctx->buf;

    ngx_http_set_ctx(r, ctx, ngx_http_segura_errpage_module);

    r->headers_out.content_length_n = len;

    if (r->headers_out.content_length) {
        r->headers_out.content_length->hash = 0;
        r->headers_out.content_length = NULL;
    }

    ngx_str_set(&r->headers_out.content_type, "application/json");
    r->headers_out.content_type_len = r->headers_out.content_type.len;
    r->headers_out.content_type_lowcase = NULL;
    r->headers_out.charset.len = 0;

    if (ngx_http_segura_add_header(r, "Cache-Control", "no-store") != NGX_OK
        || ngx_http_segura_add_header(r, "X-Content-Type-Options", "nosniff")
           != NGX_OK)
    {
        return NGX_ERROR;
    }

    return ngx_http_next_header_filter(r);
}


static ngx_int_t
ngx_http_segura_errpage_body_filter(ngx_http_request_t *r, ngx_chain_t *in)
{
    ngx_chain_t                    *cl;
    ngx_http_segura_errpage_ctx_t  *ctx;

    ctx = ngx_http_get_module_ctx(r, ngx_http_segura_errpage_module);

    if (ctx == NULL) {
        return ngx_http_next_body_filter(r, in);
    }

    /* nginx's page is dropped; ours goes once, in its place */

    for (cl = in; cl; cl = cl->next) {
        cl->buf->pos = cl->buf->last;
        cl->buf->file_pos = cl->buf->file_last;
    }

    if (ctx->sent) {
        return ngx_http_next_body_filter(r, NULL);
    }

    ctx->sent = 1;

    return ngx_http_next_body_filter(r, &ctx->out);
}


static ngx_uint_t
ngx_http_segura_errpage_ours(ngx_http_request_t *r)
{
    ngx_str_t                     path;
    ngx_uint_t                    i;
    ngx_http_core_srv_conf_t     *cscf;
    ngx_http_segura_location_t   *loc;
    ngx_http_segura_loc_conf_t   *slcf;
    ngx_http_segura_main_conf_t  *smcf;

    slcf = ngx_http_get_module_loc_conf(r, ngx_http_segura_module);

    if (slcf->handler) {
        return 1;
    }

    /*
     * still the server's own configuration: nginx refused the request
     * line or a header before choosing a location (or none matched)
     */

    cscf = ngx_http_get_module_srv_conf(r, ngx_http_core_module);

    if (cscf == NULL || r->loc_conf != cscf->ctx->loc_conf) {
        return 0;
    }

    smcf = ngx_http_get_module_main_conf(r, ngx_http_segura_module);

    if (smcf == NULL || smcf->locations.nelts == 0
        || !ngx_http_segura_errpage_path(r, &path))
    {
        return 0;
    }

    loc = smcf->locations.elts;

    for (i = 0; i < smcf->locations.nelts; i++) {
        if (loc[i].server != cscf || path.len < loc[i].name.len) {
            continue;
        }

        if (ngx_strncmp(path.data, loc[i].name.data, loc[i].name.len) != 0) {
            continue;
        }

        if (!loc[i].exact || path.len == loc[i].name.len) {
            return 1;
        }
    }

    return 0;
}


static ngx_uint_t
ngx_http_segura_errpage_path(ngx_http_request_t *r, ngx_str_t *path)
{
    u_char  *p, *last;

    if (r->uri.len) {
        *path = r->uri;
        return 1;
    }

    /*
     * the request line was refused (too long, malformed): its raw path,
     * between the method and the next space or "?", as far as it was read
     */

    if (r->request_line.len) {
        p = r->request_line.data;
        last = p + r->request_line.len;

    } else if (r->request_start != NULL && r->header_in != NULL
               && r->request_start >= r->header_in->start
               && r->request_start <= r->header_in->last)
    {
        p = r->request_start;
        last = r->header_in->last;

    } else {
        return 0;
    }

    while (p < last && *p != ' ') {
        p++;
    }

    while (p < last && *p == ' ') {
        p++;
    }

    path->data = p;

    while (p < last && *p != ' ' && *p != '?' && *p != CR && *p != LF) {
        p++;
    }

    path->len = p - path->data;

    return path->len > 0;
}
