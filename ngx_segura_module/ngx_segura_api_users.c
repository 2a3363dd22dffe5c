
/*
 * Copyright (C) ngx_segura_module authors
 */


/*
 * /api/users: administrators manage users; a user may read their own
 * record.  Pool threads only.
 */


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>
#include "ngx_segura.h"
#include "ngx_segura_api.h"

#include <openssl/crypto.h>


#define NGX_SEGURA_API_USER_JSON                                             \
    "json_build_object('id', u.id, 'username', u.username,"                  \
    " 'display_name', u.display_name, 'admin', u.is_admin,"                  \
    " 'status', u.status, 'has_password', u.password_hash is not null,"      \
    " 'groups', coalesce((select json_agg(m.group_id order by m.group_id)"   \
    "   from group_members m where m.user_id = u.id), '[]'),"                \
    " 'created_at', u.created_at, 'updated_at', u.updated_at)"


static void ngx_segura_api_user_write(ngx_segura_api_ctx_t *ctx,
    PGconn **conn, int64_t id);


static const char *const  ngx_segura_api_user_fields[] = {
    "username", "display_name", "password", "admin", "status", NULL
};

static const char *const  ngx_segura_api_user_readonly[] = {
    "id", "has_password", "groups", "created_at", "updated_at", NULL
};

static const char *const  ngx_segura_api_user_whole[] = {
    "username", "display_name", "admin", "status", NULL
};

static const ngx_segura_api_resource_t  ngx_segura_api_user = {
    "users", "user", NGX_HTTP_PATCH|NGX_HTTP_PUT, ngx_segura_api_user_write,
    "select " NGX_SEGURA_API_USER_JSON " from users u where u.id = $1",
    ngx_segura_api_user_fields, ngx_segura_api_user_readonly,
    ngx_segura_api_user_whole
};


void
ngx_segura_api_users(ngx_segura_api_ctx_t *ctx, PGconn **conn, int64_t id,
    const char *sub)
{
    const char  *params[1];
    char         idbuf[NGX_INT64_LEN + 1];

    if (*sub != '\0') {
        ngx_segura_api_fail(ctx, NGX_SEGURA_ERR_NOT_FOUND, NULL, NULL);
        return;
    }

    if (ctx->method & (NGX_HTTP_GET|NGX_HTTP_HEAD)) {

        if (id == 0) {
            if (ngx_segura_api_need_admin(ctx) != NGX_OK) {
                return;
            }

            (void) ngx_segura_api_query_json(ctx, conn, 200,
                       "select json_build_object('items', coalesce(json_agg("
                       NGX_SEGURA_API_USER_JSON " order by u.id), '[]'))"
                       " from users u", 0, NULL);
            return;
        }

        /* a user may read their own record, nobody else's */

        if (!ctx->me.admin && id != ctx->me.id) {
            ngx_segura_api_fail(ctx, NGX_SEGURA_ERR_FORBIDDEN, NULL, NULL);
            return;
        }

        ngx_segura_api_id(id, idbuf);
        params[0] = idbuf;

        (void) ngx_segura_api_query_json(ctx, conn, 200,
                   "select " NGX_SEGURA_API_USER_JSON
                   " from users u where u.id = $1", 1, params);
        return;
    }

    if (ngx_segura_api_need_admin(ctx) != NGX_OK) {
        return;
    }

    if (ctx->method == NGX_HTTP_DELETE && id == ctx->me.id) {
        ngx_segura_api_fail(ctx, NGX_SEGURA_ERR_CONFLICT, NULL,
                            "You cannot delete your own account");
        return;
    }

    ngx_segura_api_change(ctx, conn, id, &ngx_segura_api_user);
}


static void
ngx_segura_api_user_write(ngx_segura_api_ctx_t *ctx, PGconn **conn,
    int64_t id)
{
    json_t      *body;
    PGresult    *res;
    ngx_int_t    rc;
    const char  *username, *display, *password, *admin, *status;
    const char  *params[6];
    char         idbuf[NGX_INT64_LEN + 1];
    char         hash[NGX_SEGURA_API_HASH_LEN];
    char         token_hash[NGX_SEGURA_TOKEN_HASH_HEX_LEN];

    body = ngx_segura_api_parse_item(ctx, conn, &ngx_segura_api_user, id);
    if (body == NULL) {
        return;
    }

    username = NULL;
    display = NULL;
    password = NULL;
    admin = NULL;
    status = NULL;
    hash[0] = '\0';

    rc = ngx_segura_api_get_string(ctx, body, "username", 1, 64, &username);
    if (rc == NGX_ERROR) {
        goto done;
    }

    if (rc == NGX_SEGURA_API_ABSENT && id == 0) {
        ngx_segura_api_fail(ctx, NGX_SEGURA_ERR_INVALID_FIELD, "username",
                            "Required");
        goto done;
    }

    if (ngx_segura_api_get_string(ctx, body, "display_name", 0, 256,
                                  &display) == NGX_ERROR
        || ngx_segura_api_get_string(ctx, body, "password", 0, 4096,
                                     &password) == NGX_ERROR
        || ngx_segura_api_get_bool(ctx, body, "admin", &admin) == NGX_ERROR
        || ngx_segura_api_get_status(ctx, body, &status) == NGX_ERROR)
    {
        goto done;
    }

    if (id != 0 && id == ctx->me.id
        && ((admin != NULL && admin[0] == 'f')
            || (status != NULL && status[0] == 'i')))
    {
        ngx_segura_api_fail(ctx, NGX_SEGURA_ERR_INVALID_FIELD,
                            admin != NULL && admin[0] == 'f'
                            ? "admin" : "status",
                            "You cannot demote or deactivate yourself");
        goto done;
    }

    if (password != NULL
        && ngx_segura_api_hash_password(ctx, password, hash, sizeof(hash))
           != NGX_OK)
    {
        goto done;
    }

    ngx_segura_api_wipe_string(body, "password");

    ngx_segura_api_id(id, idbuf);

    params[0] = idbuf;
    params[1] = username;
    params[2] = display;
    params[3] = password ? hash : NULL;
    params[4] = admin;
    params[5] = status;

    if (ngx_segura_api_begin(ctx, conn) != NGX_OK) {
        goto done;
    }

    if (id == 0) {
        res = ngx_segura_api_query(ctx, conn,
                  "insert into users (username, display_name, password_hash,"
                  " is_admin, status)"
                  " values ($2, coalesce($3, ''), $4, coalesce($5::bool,"
                  " false), coalesce($6, 'active')) returning id, $1::bigint",
                  6, params);
    } else {
        res = ngx_segura_api_query(ctx, conn,
                  "update users set username = coalesce($2, username),"
                  " display_name = coalesce($3, display_name),"
                  " password_hash = coalesce($4, password_hash),"
                  " is_admin = coalesce($5::bool, is_admin),"
                  " status = coalesce($6, status)"
                  " where id = $1 returning id",
                  6, params);
    }

    if (ngx_segura_api_one(ctx, res) != NGX_OK) {
        goto end;
    }

    (void) ngx_cpystrn((u_char *) idbuf, (u_char *) PQgetvalue(res, 0, 0),
                       sizeof(idbuf));
    PQclear(res);

    if (password != NULL && id != 0) {

        /*
         * a new password ends the user's other web sessions: whoever
         * learnt the old one may hold a cookie; the session making the
         * change, when it is the user's own, stays
         */

        params[0] = idbuf;
        params[1] = NULL;

        if (id == ctx->me.id && ctx->has_token) {
            if (ngx_segura_auth_token_hash_hex(ctx->token, token_hash)
                != NGX_OK)
            {
                ngx_segura_api_fail(ctx, NGX_SEGURA_ERR_INTERNAL, NULL,
                                    NULL);
                goto end;
            }

            params[1] = token_hash;
        }

        res = ngx_segura_api_query(ctx, conn,
                  "update web_sessions set revoked_at = now()"
                  " where user_id = $1::bigint and revoked_at is null"
                  " and ($2::bytea is null or token_hash <> $2::bytea)",
                  2, params);
        if (res == NULL) {
            goto end;
        }

        PQclear(res);
    }

    (void) ngx_segura_api_saved(ctx, conn, &ngx_segura_api_user, id == 0,
                                idbuf, body);

end:

    ngx_segura_api_end(ctx, conn);

done:

    OPENSSL_cleanse(hash, sizeof(hash));
    ngx_segura_api_wipe_string(body, "password");
    json_decref(body);
}
