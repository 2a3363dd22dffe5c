
/*
 * Copyright (C) ngx_segura_module authors
 */


/*
 * POST /api/login, POST /api/logout, GET /api/me.  Pool threads only:
 * argon2id and libpq run here, nothing of nginx but its string helpers.
 */


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>
#include "ngx_segura.h"
#include "ngx_segura_api.h"
#include "ngx_segura_auth.h"
#include "ngx_segura_metrics.h"
#include "ngx_segura_vault.h"

#include <argon2.h>
#include <openssl/crypto.h>


/* the parameters of new hashes, as tools/segura-passwd.c */
#define NGX_SEGURA_ARGON2_T       2
#define NGX_SEGURA_ARGON2_M       19456
#define NGX_SEGURA_ARGON2_P       1
#define NGX_SEGURA_SALT_LEN       16
#define NGX_SEGURA_HASH_LEN       32
#define NGX_SEGURA_PASSWORD_MIN   8
#define NGX_SEGURA_PASSWORD_MAX   1024

/* the throttle's key of a user name: hex HMAC-SHA-256 (016_login_attempts) */
#define NGX_SEGURA_LOGIN_KEY_LEN    (2 * NGX_SEGURA_VAULT_SHA256_LEN)
#define NGX_SEGURA_LOGIN_KEY_LABEL  "segura login name key"


/*
 * verified when there is no usable hash (unknown name, no password, an
 * inactive user), so that a failure costs the same work as a right login;
 * its password is random and not kept
 */
#define NGX_SEGURA_DUMMY_HASH                                                \
    "$argon2id$v=19$m=19456,t=2,p=1$zyy+QsnpThuk34S/ko4T/A"                  \
    "$RFEcelUffg0/yZ0L0pTTcq+pNc6pOTcJo6FXJx3en2Y"


/* the user as /api/me and /api/login show it; $1 is the user id */
#define NGX_SEGURA_API_ME_SQL                                                \
    "select json_build_object('id', u.id, 'username', u.username,"           \
    " 'display_name', u.display_name, 'admin', u.is_admin,"                  \
    " 'status', u.status,"                                                   \
    " 'groups', coalesce((select json_agg(json_build_object("                \
    "   'id', g.id, 'name', g.name, 'permissions', json_build_object("       \
    "   'use_credentials', g.use_credentials,"                               \
    "   'access_devices', g.access_devices,"                                 \
    "   'remote_session', g.remote_session,"                                 \
    "   'audit_sessions', g.audit_sessions)) order by g.id)"                 \
    "   from group_members m join access_groups g on g.id = m.group_id"      \
    "   where m.user_id = u.id), '[]'))"                                     \
    " from users u where u.id = $1"


static ngx_int_t ngx_segura_api_login_failed(ngx_segura_api_ctx_t *ctx,
    PGconn **conn, const char *username, const char *uid,
    const char *name_key);
static ngx_int_t ngx_segura_api_login_key(ngx_segura_api_ctx_t *ctx,
    const char *name, char *out);


static const char *const  ngx_segura_api_login_fields[] = {
    "username", "password", NULL
};


void
ngx_segura_api_login(ngx_segura_api_ctx_t *ctx, PGconn **conn, int64_t id,
    const char *sub)
{
    int            ok;
    ngx_int_t      rc;
    char          *hash, *uid;
    json_t        *body;
    PGresult      *res;
    const char    *username, *password, *params[5];
    char           token_hash[NGX_SEGURA_TOKEN_HASH_HEX_LEN];
    char           lifetime[NGX_INT64_LEN + 1];
    char           idbuf[NGX_INT64_LEN + 1];
    char           limit[NGX_INT64_LEN + 1];
    char           window[NGX_INT64_LEN + 1];
    char           name_key[NGX_SEGURA_LOGIN_KEY_LEN + 1];
    u_char         lower[256 + 1];
    size_t         len;

    if (ctx->method != NGX_HTTP_POST) {
        ngx_segura_api_fail(ctx, NGX_SEGURA_ERR_METHOD, NULL, NULL);
        return;
    }

    body = ngx_segura_api_parse(ctx, ngx_segura_api_login_fields);
    if (body == NULL) {
        return;
    }

    hash = NULL;
    res = NULL;

    if (ngx_segura_api_get_string(ctx, body, "username", 1, 256, &username)
        != NGX_OK
        || ngx_segura_api_get_string(ctx, body, "password", 1,
                                     NGX_SEGURA_PASSWORD_MAX, &password)
           != NGX_OK)
    {
        if (ctx->err == NGX_SEGURA_ERR_OK) {
            ngx_segura_api_fail(ctx, NGX_SEGURA_ERR_INVALID_FIELD,
                                json_object_get(body, "username") == NULL
                                ? "username" : "password", "Required");
        }

        goto done;
    }

    /*
     * the throttle is keyed by a keyed hash of the name, ASCII-lower-cased
     * here, so that no typed name is stored (people type passwords into
     * the name field)
     */

    len = ngx_strlen(username);
    ngx_strlow(lower, (u_char *) username, len);
    lower[len] = '\0';

    rc = ngx_segura_api_login_key(ctx, (char *) lower, name_key);

    OPENSSL_cleanse(lower, len);

    if (rc != NGX_OK) {
        goto done;
    }

    /*
     * one statement: the attempt is counted, per name and per client
     * address, before any work, so that a refused attempt costs no
     * argon2id and one round trip, however many arrive at once; the
     * account comes with it.  Sent once: a second run would count the
     * attempt twice.  Only segura_login_concurrency logins of a worker
     * are in the pool at a time (ngx_segura_api.c admits them), so a
     * counted attempt always finds its argon2id slot.
     */

    (void) ngx_snprintf((u_char *) limit, sizeof(limit), "%ui%Z",
                        ctx->login_address_limit);
    (void) ngx_snprintf((u_char *) window, sizeof(window), "%M%Z",
                        ctx->login_address_window / 1000);

    params[0] = name_key;
    params[1] = ctx->client_addr;
    params[2] = limit;
    params[3] = window;
    params[4] = username;

    res = ngx_segura_api_query(ctx, conn,
              "select a.result, a.retry_after, u.id, u.password_hash"
              " from segura_login_attempt($1, $2, $3::int, $4::float8) a"
              " left join users u on u.username = $5"
              " and u.status = 'active' and u.password_hash is not null",
              5, params);
    if (res == NULL) {
        goto done;
    }

    if (PQntuples(res) != 1) {
        ngx_segura_api_fail(ctx, NGX_SEGURA_ERR_INTERNAL, NULL, NULL);
        ctx->log_level = NGX_LOG_ERR;
        (void) ngx_cpystrn((u_char *) ctx->log,
                           (u_char *) "segura_login_attempt() gave no row",
                           sizeof(ctx->log));
        goto done;
    }

    if (!PQgetisnull(res, 0, 2)) {
        uid = PQgetvalue(res, 0, 2);
        hash = PQgetvalue(res, 0, 3);

    } else {
        uid = NULL;
        hash = NULL;
    }

    if (ngx_strcmp(PQgetvalue(res, 0, 0), "ok") != 0) {
        ngx_segura_api_fail(ctx, NGX_SEGURA_ERR_TOO_MANY, NULL, NULL);
        ctx->retry_after = (ngx_uint_t) atoi(PQgetvalue(res, 0, 1));
        ctx->log_level = NGX_LOG_INFO;

        if (ctx->retry_after == 0) {
            ctx->retry_after = 1;
        }

        if (ngx_strcmp(PQgetvalue(res, 0, 0), "address") == 0) {
            /* the event loop remembers it (ngx_segura_login_gate.c) */
            ctx->login_address_refused = 1;
            (void) ngx_snprintf((u_char *) ctx->log, sizeof(ctx->log) - 1,
                                "logins from %s throttled%Z",
                                ctx->client_addr);

        } else if (uid != NULL) {
            (void) ngx_snprintf((u_char *) ctx->log, sizeof(ctx->log) - 1,
                                "login of \"%s\" throttled%Z", username);

        } else {
            (void) ngx_snprintf((u_char *) ctx->log, sizeof(ctx->log) - 1,
                                "login of an unknown name (key %*s) "
                                "throttled%Z", (size_t) 16, name_key);
        }

        goto done;
    }

    ngx_segura_metrics_add(NGX_SEGURA_METRIC_PASSWORD_CHECKS, 1);

    ok = (argon2id_verify(hash ? hash : NGX_SEGURA_DUMMY_HASH, password,
                          ngx_strlen(password))
          == ARGON2_OK);

    ctx->argon2 = 1;

    ngx_segura_api_wipe_string(body, "password");

    if (!ok || hash == NULL) {
        if (ngx_segura_api_login_failed(ctx, conn, username, uid, name_key)
            == NGX_OK)
        {
            ngx_segura_api_fail(ctx, NGX_SEGURA_ERR_UNAUTHENTICATED, NULL,
                                "Wrong user name or password");
            ctx->log_level = NGX_LOG_INFO;

            if (uid != NULL) {
                (void) ngx_snprintf((u_char *) ctx->log,
                                    sizeof(ctx->log) - 1,
                                    "login of \"%s\" failed%Z", username);

            } else {
                (void) ngx_snprintf((u_char *) ctx->log,
                                    sizeof(ctx->log) - 1,
                                    "login of an unknown name (key %*s) "
                                    "failed%Z", (size_t) 16, name_key);
            }
        }

        goto done;
    }

    /* a new web session: only the token's SHA-256 is stored */

    if (ngx_segura_vault_random(ctx->new_token, NGX_SEGURA_TOKEN_LEN) != 0
        || ngx_segura_auth_token_hash_hex(ctx->new_token, token_hash)
           != NGX_OK)
    {
        ngx_segura_api_fail(ctx, NGX_SEGURA_ERR_INTERNAL, NULL, NULL);
        ctx->log_level = NGX_LOG_ERR;
        (void) ngx_cpystrn((u_char *) ctx->log,
                           (u_char *) "RAND_bytes() or SHA-256 failed",
                           sizeof(ctx->log));
        goto done;
    }

    /* uid points into res, which is cleared below */

    (void) ngx_cpystrn((u_char *) idbuf, (u_char *) uid, sizeof(idbuf));
    uid = idbuf;

    ctx->me.id = ngx_atoof((u_char *) uid, ngx_strlen(uid));
    (void) ngx_cpystrn((u_char *) ctx->me.username, (u_char *) username,
                       sizeof(ctx->me.username));

    (void) ngx_snprintf((u_char *) lifetime, sizeof(lifetime), "%M%Z",
                        ctx->login_lifetime);

    params[0] = uid;
    params[1] = token_hash;
    params[2] = lifetime;
    params[3] = ctx->client_addr;
    params[4] = ctx->user_agent;

    if (ngx_segura_api_begin(ctx, conn) != NGX_OK) {
        goto done;
    }

    PQclear(res);
    res = ngx_segura_api_query(ctx, conn,
              "insert into web_sessions (user_id, token_hash, expires_at,"
              " client_addr, user_agent)"
              " values ($1, $2::bytea,"
              " now() + make_interval(secs => $3::float8 / 1000),"
              " left($4, 64), left($5, 1024))",
              5, params);
    if (res == NULL) {
        goto end;
    }

    PQclear(res);
    params[1] = name_key;
    params[2] = ctx->client_addr;
    res = ngx_segura_api_query(ctx, conn,
              "select segura_login_succeeded($1, $2)", 2, &params[1]);
    if (res == NULL) {
        goto end;
    }

    PQclear(res);
    res = ngx_segura_api_query(ctx, conn,
              "update users set failed_logins = 0, last_failed_at = null"
              " where id = $1 and failed_logins > 0",
              1, params);
    if (res == NULL) {
        goto end;
    }

    if (ngx_segura_api_audit(ctx, conn, "login", "user", uid, NULL)
        != NGX_OK)
    {
        goto end;
    }

    if (ngx_segura_api_query_json(ctx, conn, 200, NGX_SEGURA_API_ME_SQL, 1,
                                  params)
        != NGX_OK)
    {
        goto end;
    }

    ctx->set_cookie = 1;

end:

    ngx_segura_api_end(ctx, conn);

    if (ctx->err != NGX_SEGURA_ERR_OK) {
        ctx->set_cookie = 0;
        OPENSSL_cleanse(ctx->new_token, NGX_SEGURA_TOKEN_LEN);
    }

done:

    PQclear(res);
    ngx_segura_api_wipe_string(body, "password");
    json_decref(body);
}


static ngx_int_t
ngx_segura_api_login_failed(ngx_segura_api_ctx_t *ctx, PGconn **conn,
    const char *username, const char *uid, const char *name_key)
{
    json_t      *detail;
    PGresult    *res;
    ngx_int_t    rc;
    const char  *params[1];

    /*
     * the attempt itself was counted before verification
     * (segura_login_attempt); here the account's own count, and the
     * audit row: the typed name only when it is an account's name, else
     * the start of its keyed hash, which lets an operator who holds the
     * master key tell repeated names apart
     */

    if (uid != NULL) {
        params[0] = uid;

        res = ngx_segura_api_query(ctx, conn,
                  "update users set failed_logins = failed_logins + 1,"
                  " last_failed_at = now() where id = $1::bigint",
                  1, params);
        if (res == NULL) {
            return NGX_ERROR;
        }

        PQclear(res);

        detail = json_pack("{s:s}", "username", username);

    } else {
        detail = json_pack("{s:b, s:s%}", "unknown_user", 1,
                           "name_key", name_key, (size_t) 16);
    }

    rc = ngx_segura_api_audit(ctx, conn, "login_failed", "user", uid, detail);

    json_decref(detail);

    return rc;
}


static ngx_int_t
ngx_segura_api_login_key(ngx_segura_api_ctx_t *ctx, const char *name,
    char *out)
{
    u_char                    sub[NGX_SEGURA_VAULT_SHA256_LEN];
    u_char                    mac[NGX_SEGURA_VAULT_SHA256_LEN];
    ngx_segura_master_key_t  *key;

    /*
     * out (NGX_SEGURA_LOGIN_KEY_LEN + 1 bytes): hex of HMAC-SHA-256 of the
     * lower-cased name under a key of its own, derived from the current
     * master key, so that the same name has the same key on every node
     */

    key = ngx_http_segura_current_key(ctx->smcf);

    if (ngx_segura_vault_hmac_sha256(key->key, NGX_SEGURA_MASTER_KEY_LEN,
                                     NGX_SEGURA_LOGIN_KEY_LABEL,
                                     sizeof(NGX_SEGURA_LOGIN_KEY_LABEL) - 1,
                                     sub)
        != 0
        || ngx_segura_vault_hmac_sha256(sub, sizeof(sub), name,
                                        ngx_strlen(name), mac)
           != 0)
    {
        OPENSSL_cleanse(sub, sizeof(sub));
        ngx_segura_api_fail(ctx, NGX_SEGURA_ERR_INTERNAL, NULL, NULL);
        ctx->log_level = NGX_LOG_ERR;
        (void) ngx_cpystrn((u_char *) ctx->log,
                           (u_char *) "HMAC-SHA-256 of a login name failed",
                           sizeof(ctx->log));
        return NGX_ERROR;
    }

    OPENSSL_cleanse(sub, sizeof(sub));

    *ngx_hex_dump((u_char *) out, mac, sizeof(mac)) = '\0';

    return NGX_OK;
}


void
ngx_segura_api_logout(ngx_segura_api_ctx_t *ctx, PGconn **conn, int64_t id,
    const char *sub)
{
    PGresult    *res;
    const char  *params[1];
    char         token_hash[NGX_SEGURA_TOKEN_HASH_HEX_LEN];

    if (ctx->method != NGX_HTTP_POST) {
        ngx_segura_api_fail(ctx, NGX_SEGURA_ERR_METHOD, NULL, NULL);
        return;
    }

    ctx->clear_cookie = 1;

    if (ctx->has_token) {
        if (ngx_segura_auth_token_hash_hex(ctx->token, token_hash) != NGX_OK) {
            ngx_segura_api_fail(ctx, NGX_SEGURA_ERR_INTERNAL, NULL, NULL);
            return;
        }

        params[0] = token_hash;

        /*
         * idempotent, so it may be retried: a second run finds the token
         * revoked and writes no second audit row
         */

        res = ngx_segura_api_query_retry(ctx, conn,
                  "with w as (update web_sessions set revoked_at = now()"
                  " where token_hash = $1::bytea and revoked_at is null"
                  " returning user_id)"
                  " insert into audit_log (actor_id, actor_name, action,"
                  " object_type, object_id)"
                  " select u.id, u.username, 'logout', 'user', u.id::text"
                  " from w join users u on u.id = w.user_id",
                  1, params);
        if (res == NULL) {
            return;
        }

        PQclear(res);
    }

    ctx->json = strdup("{\"logged_out\":true}");
    ctx->status = 200;

    if (ctx->json == NULL) {
        ngx_segura_api_fail(ctx, NGX_SEGURA_ERR_INTERNAL, NULL, NULL);
    }
}


void
ngx_segura_api_me(ngx_segura_api_ctx_t *ctx, PGconn **conn, int64_t id,
    const char *sub)
{
    const char  *params[1];
    char         uid[NGX_INT64_LEN + 1];

    if (!(ctx->method & (NGX_HTTP_GET|NGX_HTTP_HEAD))) {
        ngx_segura_api_fail(ctx, NGX_SEGURA_ERR_METHOD, NULL, NULL);
        return;
    }

    (void) ngx_snprintf((u_char *) uid, sizeof(uid), "%L%Z", ctx->me.id);
    params[0] = uid;

    (void) ngx_segura_api_query_json(ctx, conn, 200, NGX_SEGURA_API_ME_SQL,
                                     1, params);
}


ngx_int_t
ngx_segura_api_hash_password(ngx_segura_api_ctx_t *ctx, const char *password,
    char *encoded, size_t len)
{
    u_char  salt[NGX_SEGURA_SALT_LEN];
    size_t  n;

    n = ngx_strlen(password);

    if (n < NGX_SEGURA_PASSWORD_MIN || n > NGX_SEGURA_PASSWORD_MAX) {
        ngx_segura_api_fail(ctx, NGX_SEGURA_ERR_INVALID_FIELD, "password",
                            "A password has 8 to 1024 bytes");
        return NGX_ERROR;
    }

    if (ngx_segura_vault_random(salt, sizeof(salt)) != 0
        || argon2id_hash_encoded(NGX_SEGURA_ARGON2_T, NGX_SEGURA_ARGON2_M,
                                 NGX_SEGURA_ARGON2_P, password, n,
                                 salt, sizeof(salt), NGX_SEGURA_HASH_LEN,
                                 encoded, len)
           != ARGON2_OK)
    {
        ngx_segura_api_fail(ctx, NGX_SEGURA_ERR_INTERNAL, NULL, NULL);
        ctx->log_level = NGX_LOG_ERR;
        (void) ngx_cpystrn((u_char *) ctx->log,
                           (u_char *) "argon2id_hash_encoded() failed",
                           sizeof(ctx->log));
        return NGX_ERROR;
    }

    return NGX_OK;
}
