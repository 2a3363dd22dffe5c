
/*
 * Copyright (C) ngx_segura_module authors
 */


#ifndef _NGX_SEGURA_API_H_INCLUDED_
#define _NGX_SEGURA_API_H_INCLUDED_


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>
#include "ngx_segura.h"

#include <libpq-fe.h>


#define NGX_SEGURA_TOKEN_LEN       32
#define NGX_SEGURA_COOKIE_NAME     "segura_session"
#define NGX_SEGURA_ERRLEN          256


/*
 * The context of one API request.  The event loop fills the "in" part
 * and posts the task; the pool thread reads "in", writes "out" and
 * touches nothing else; the completion handler on the event loop logs,
 * sets headers and sends the response.
 */

typedef struct {
    /* in */
    ngx_http_segura_main_conf_t  *smcf;
    ngx_uint_t                    method;
    char                         *path;        /* after "/api/", NUL-ended */
    char                         *args;        /* raw query, NUL-ended */
    char                         *body;        /* NUL-ended, may be NULL */
    size_t                        body_len;
    char                         *delegated;   /* segura_user, or NULL */
    char                         *client_addr;
    char                         *user_agent;
    ngx_msec_t                    login_lifetime;
    ngx_msec_t                    login_idle;
    u_char                        token[NGX_SEGURA_TOKEN_LEN];
    unsigned                      has_token:1;
    unsigned                      secure:1;

    /* out */
    ngx_uint_t                    status;
    char                         *json;        /* malloc()ed, or NULL */
    ngx_segura_err_e              err;
    const char                   *field;       /* static string or NULL */
    char                          message[NGX_SEGURA_ERRLEN];
    ngx_uint_t                    log_level;   /* 0: nothing to log */
    char                          log[NGX_SEGURA_ERRLEN];
    u_char                        new_token[NGX_SEGURA_TOKEN_LEN];
    unsigned                      set_cookie:1;
    unsigned                      clear_cookie:1;
} ngx_segura_api_ctx_t;


ngx_int_t ngx_segura_api_handler(ngx_http_request_t *r);

/* pool threads only */
void ngx_segura_api_fail(ngx_segura_api_ctx_t *ctx, ngx_segura_err_e err,
    const char *field, const char *message);
void ngx_segura_api_fail_db(ngx_segura_api_ctx_t *ctx, PGconn *conn,
    const char *err);


#endif /* _NGX_SEGURA_API_H_INCLUDED_ */
