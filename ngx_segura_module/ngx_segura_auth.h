
/*
 * Copyright (C) ngx_segura_module authors
 */


#ifndef _NGX_SEGURA_AUTH_H_INCLUDED_
#define _NGX_SEGURA_AUTH_H_INCLUDED_


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>
#include "ngx_segura.h"

#include <libpq-fe.h>


typedef struct {
    int64_t                    id;
    char                       username[65];
    unsigned                   admin:1;
    unsigned                   auditor:1;   /* a group with audit_sessions */
} ngx_segura_identity_t;


/*
 * Who may watch and moderate live sessions (GET /session?watch=, lock,
 * end): the one place that decides it.  Either thread.
 */
ngx_uint_t ngx_segura_auth_may_audit(const ngx_segura_identity_t *identity);


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


/*
 * pool threads only: token (32 bytes) or NULL, delegated name or NULL.
 * A non-empty delegated name wins over the token.  Returns
 * NGX_SEGURA_ERR_OK with identity filled, NGX_SEGURA_ERR_UNAUTHENTICATED
 * (no, unknown, expired, idle, revoked token, or its user inactive),
 * NGX_SEGURA_ERR_FORBIDDEN (delegated name not an active user),
 * NGX_SEGURA_ERR_DB_UNAVAILABLE (err filled), or NGX_SEGURA_ERR_INTERNAL
 * (err filled).  A live token's last_seen_at is set to now(); a token
 * found idle or expired is revoked.
 */
ngx_segura_err_e ngx_segura_auth_identify(ngx_segura_db_pool_t *db,
    PGconn **conn, const u_char *token, const char *delegated,
    ngx_msec_t login_idle, ngx_segura_identity_t *identity, char *err,
    size_t errlen);

/* pool threads only: bytea text "\\x<64 hex digits>" of SHA-256(token) */
#define NGX_SEGURA_TOKEN_HASH_HEX_LEN  (2 + 64 + 1)
ngx_int_t ngx_segura_auth_token_hash_hex(const u_char *token, char *out);


#endif /* _NGX_SEGURA_AUTH_H_INCLUDED_ */
