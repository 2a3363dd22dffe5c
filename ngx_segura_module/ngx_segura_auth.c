
/*
 * Copyright (C) ngx_segura_module authors
 */


/*
 * Identity at the HTTP boundary: the segura_session cookie (read and
 * written), the Origin check shared by the API and /session, and the
 * media type check run on the event loop.  ngx_segura_auth_identify()
 * and ngx_segura_auth_token_hash_hex() run in pool threads only: they
 * use libpq and OpenSSL, never nginx pools, logs or events.
 */


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>
#include "ngx_segura.h"
#include "ngx_segura_auth.h"
#include "ngx_segura_api.h"
#include "ngx_segura_db.h"
#include "ngx_segura_vault.h"

#include <openssl/crypto.h>


/* base64url of 32 bytes without padding */
#define NGX_SEGURA_TOKEN_B64_LEN  43


ngx_table_elt_t *
ngx_http_segura_find_header(ngx_http_request_t *r, const char *lowcase_name)
{
    size_t            len;
    ngx_uint_t        i;
    ngx_list_part_t  *part;
    ngx_table_elt_t  *h;

    len = ngx_strlen(lowcase_name);
    part = &r->headers_in.headers.part;
    h = part->elts;

    for (i = 0; /* void */ ; i++) {

        if (i >= part->nelts) {
            if (part->next == NULL) {
                return NULL;
            }

            part = part->next;
            h = part->elts;
            i = 0;
        }

        if (h[i].key.len == len
            && ngx_strncasecmp(h[i].key.data, (u_char *) lowcase_name, len)
               == 0)
        {
            return &h[i];
        }
    }
}


ngx_int_t
ngx_http_segura_origin_ok(ngx_http_request_t *r,
    ngx_http_segura_loc_conf_t *slcf)
{
    ngx_str_t         origin, host, *allowed;
    ngx_uint_t        i, https;
    ngx_table_elt_t  *h;

    h = ngx_http_segura_find_header(r, "origin");

    if (h == NULL) {
        /* not a browser, or a same-origin GET: nothing to check */
        return NGX_OK;
    }

    origin = h->value;

    if (slcf->allowed_origins) {
        allowed = slcf->allowed_origins->elts;

        for (i = 0; i < slcf->allowed_origins->nelts; i++) {
            if (allowed[i].len == origin.len
                && ngx_strncasecmp(allowed[i].data, origin.data, origin.len)
                   == 0)
            {
                return NGX_OK;
            }
        }
    }

    if (r->headers_in.host == NULL) {
        return NGX_DECLINED;
    }

    host = r->headers_in.host->value;

#if (NGX_HTTP_SSL)
    https = (r->connection->ssl != NULL);
#else
    https = 0;
#endif

    /* same origin: the scheme we were reached by, and the Host header */

    if (https) {
        if (origin.len < 8 || ngx_strncasecmp(origin.data,
                                              (u_char *) "https://", 8) != 0)
        {
            return NGX_DECLINED;
        }

        origin.data += 8;
        origin.len -= 8;

    } else {
        if (origin.len < 7 || ngx_strncasecmp(origin.data,
                                              (u_char *) "http://", 7) != 0)
        {
            return NGX_DECLINED;
        }

        origin.data += 7;
        origin.len -= 7;
    }

    if (origin.len == host.len
        && ngx_strncasecmp(origin.data, host.data, host.len) == 0)
    {
        return NGX_OK;
    }

    return NGX_DECLINED;
}


ngx_uint_t
ngx_http_segura_is_json(ngx_http_request_t *r)
{
    u_char     *p, *last;
    ngx_str_t   type;

    if (r->headers_in.content_type == NULL) {
        return 0;
    }

    type = r->headers_in.content_type->value;

    if (type.len < 16
        || ngx_strncasecmp(type.data, (u_char *) "application/json", 16) != 0)
    {
        return 0;
    }

    /* "application/json" alone or followed by parameters */

    p = type.data + 16;
    last = type.data + type.len;

    while (p < last && (*p == ' ' || *p == '\t')) {
        p++;
    }

    return p == last || *p == ';';
}


ngx_int_t
ngx_http_segura_get_cookie(ngx_http_request_t *r, ngx_str_t *value)
{
    ngx_str_t  name = ngx_string(NGX_SEGURA_COOKIE_NAME);

#if (nginx_version >= 1023000)

    if (ngx_http_parse_multi_header_lines(r, r->headers_in.cookie, &name,
                                          value)
        == NULL)
    {
        return NGX_DECLINED;
    }

#else

    if (ngx_http_parse_multi_header_lines(&r->headers_in.cookies, &name,
                                          value)
        == NGX_DECLINED)
    {
        return NGX_DECLINED;
    }

#endif

    return NGX_OK;
}


ngx_int_t
ngx_http_segura_decode_token(ngx_str_t *value, u_char *token)
{
    u_char     buf[NGX_SEGURA_TOKEN_LEN + 3];
    ngx_str_t  dst;

    if (value->len != NGX_SEGURA_TOKEN_B64_LEN) {
        return NGX_DECLINED;
    }

    dst.data = buf;

    if (ngx_decode_base64url(&dst, value) != NGX_OK
        || dst.len != NGX_SEGURA_TOKEN_LEN)
    {
        return NGX_DECLINED;
    }

    ngx_memcpy(token, buf, NGX_SEGURA_TOKEN_LEN);
    OPENSSL_cleanse(buf, sizeof(buf));

    return NGX_OK;
}


ngx_int_t
ngx_http_segura_set_cookie(ngx_http_request_t *r, u_char *token,
    ngx_msec_t lifetime, ngx_uint_t secure)
{
    u_char           *p, *start;
    size_t            len;
    ngx_str_t         src, dst;
    ngx_table_elt_t  *h;

    len = sizeof(NGX_SEGURA_COOKIE_NAME "=") - 1
          + NGX_SEGURA_TOKEN_B64_LEN + 1
          + sizeof("; Path=/; Max-Age=") - 1 + NGX_TIME_T_LEN
          + sizeof("; HttpOnly; SameSite=Strict; Secure") - 1;

    start = ngx_pnalloc(r->pool, len);
    if (start == NULL) {
        return NGX_ERROR;
    }

    p = start;

    p = ngx_cpymem(p, NGX_SEGURA_COOKIE_NAME "=",
                   sizeof(NGX_SEGURA_COOKIE_NAME "=") - 1);

    if (token != NULL) {
        src.data = token;
        src.len = NGX_SEGURA_TOKEN_LEN;

        dst.data = p;
        ngx_encode_base64url(&dst, &src);
        p += dst.len;

        p = ngx_sprintf(p, "; Path=/; Max-Age=%T",
                        (time_t) (lifetime / 1000));

    } else {
        /* logout: an empty value that expires at once */
        p = ngx_cpymem(p, "; Path=/; Max-Age=0", 19);
    }

    p = ngx_cpymem(p, "; HttpOnly; SameSite=Strict",
                   sizeof("; HttpOnly; SameSite=Strict") - 1);

    if (secure) {
        p = ngx_cpymem(p, "; Secure", sizeof("; Secure") - 1);
    }

    h = ngx_list_push(&r->headers_out.headers);
    if (h == NULL) {
        return NGX_ERROR;
    }

    h->hash = 1;
#if (nginx_version >= 1023000)
    h->next = NULL;
#endif
    ngx_str_set(&h->key, "Set-Cookie");
    h->value.data = start;
    h->value.len = p - start;

    return NGX_OK;
}


ngx_int_t
ngx_segura_auth_token_hash_hex(const u_char *token, char *out)
{
    u_char  *p;
    u_char   hash[NGX_SEGURA_VAULT_SHA256_LEN];

    if (ngx_segura_vault_sha256(token, NGX_SEGURA_TOKEN_LEN, hash) != 0) {
        return NGX_ERROR;
    }

    p = (u_char *) out;
    *p++ = '\\';
    *p++ = 'x';
    p = ngx_hex_dump(p, hash, sizeof(hash));
    *p = '\0';

    return NGX_OK;
}


ngx_segura_err_e
ngx_segura_auth_identify(ngx_segura_db_pool_t *db, PGconn **conn,
    const u_char *token, const char *delegated, ngx_msec_t login_idle,
    ngx_segura_identity_t *identity, char *err, size_t errlen)
{
    char              *v;
    char               hash[NGX_SEGURA_TOKEN_HASH_HEX_LEN];
    char               idle[NGX_INT64_LEN + 1];
    PGresult          *res;
    ngx_segura_err_e   rc;
    const char        *params[2];

    ngx_memzero(identity, sizeof(ngx_segura_identity_t));

    if (delegated != NULL && delegated[0] != '\0') {

        /* the front (auth_basic, auth_request, a certificate) decided */

        params[0] = delegated;

        res = ngx_segura_db_query_retry(db, conn,
                                        "select id, username, is_admin,"
                                        " exists (select 1 from group_members m"
                                        "  join access_groups g on g.id = m.group_id"
                                        "  where m.user_id = users.id"
                                        "  and g.audit_sessions)"
                                        " from users where username = $1"
                                        " and status = 'active'",
                                        1, params, err, errlen);

        if (res == NULL || PQresultStatus(res) != PGRES_TUPLES_OK) {
            PQclear(res);
            return ngx_segura_db_broken(*conn) ? NGX_SEGURA_ERR_DB_UNAVAILABLE
                                               : NGX_SEGURA_ERR_INTERNAL;
        }

        rc = NGX_SEGURA_ERR_FORBIDDEN;
        goto found;
    }

    if (token == NULL) {
        return NGX_SEGURA_ERR_UNAUTHENTICATED;
    }

    if (ngx_segura_auth_token_hash_hex(token, hash) != NGX_OK) {
        (void) ngx_cpystrn((u_char *) err, (u_char *) "SHA-256 failed",
                           errlen);
        return NGX_SEGURA_ERR_INTERNAL;
    }

    (void) ngx_snprintf((u_char *) idle, sizeof(idle), "%M%Z", login_idle);

    params[0] = hash;
    params[1] = idle;

    /*
     * one statement: a live session is touched, a dead one (expired, idle
     * too long) is revoked so that it cannot come back; a revoked one or
     * one whose user was deactivated only fails.  It sets and never adds,
     * so running it twice does what running it once does: it may retry.
     */

    res = ngx_segura_db_query_retry(db, conn,
              "with s as ("
                "select w.id, u.id as uid, u.username, u.is_admin,"
                " (w.revoked_at is null and w.expires_at > now()"
                "  and w.last_seen_at"
                "      > now() - make_interval(secs => $2::float8 / 1000)"
                " ) as live,"
                " u.status = 'active' as active"
                " from web_sessions w join users u on u.id = w.user_id"
                " where w.token_hash = $1::bytea),"
              " t as ("
                "update web_sessions w"
                " set last_seen_at = case when s.live and s.active"
                "                    then now() else w.last_seen_at end,"
                " revoked_at = case when not s.live"
                "              then coalesce(w.revoked_at, now())"
                "              else w.revoked_at end"
                " from s where w.id = s.id returning w.id)"
              " select uid, username, is_admin,"
              " exists (select 1 from group_members m"
              "  join access_groups g on g.id = m.group_id"
              "  where m.user_id = s.uid and g.audit_sessions)"
              " from s, t"
              " where s.live and s.active",
              2, params, err, errlen);

    if (res == NULL || PQresultStatus(res) != PGRES_TUPLES_OK) {
        PQclear(res);
        return ngx_segura_db_broken(*conn) ? NGX_SEGURA_ERR_DB_UNAVAILABLE
                                           : NGX_SEGURA_ERR_INTERNAL;
    }

    rc = NGX_SEGURA_ERR_UNAUTHENTICATED;

found:

    if (PQntuples(res) != 1) {
        PQclear(res);
        return rc;
    }

    identity->id = ngx_atoof((u_char *) PQgetvalue(res, 0, 0),
                             PQgetlength(res, 0, 0));

    v = PQgetvalue(res, 0, 1);
    (void) ngx_cpystrn((u_char *) identity->username, (u_char *) v,
                       sizeof(identity->username));

    identity->admin = (PQgetvalue(res, 0, 2)[0] == 't');
    identity->auditor = (PQgetvalue(res, 0, 3)[0] == 't');

    PQclear(res);

    if (identity->id <= 0) {
        (void) ngx_cpystrn((u_char *) err, (u_char *) "bad user id", errlen);
        return NGX_SEGURA_ERR_INTERNAL;
    }

    return NGX_SEGURA_ERR_OK;
}


ngx_uint_t
ngx_segura_auth_may_audit(const ngx_segura_identity_t *identity)
{
    /*
     * administrators and members of a group with audit_sessions: the same
     * rule as segura_may_audit() (sql/020) for sessions that are not one's
     * own (ngx_segura_audit.h)
     */

    return identity->admin || identity->auditor;
}
