
/*
 * Copyright (C) ngx_segura_module authors
 */


/*
 * /api/groups: access groups, their permissions (the three a session
 * needs, and audit_sessions: ngx_segura_audit.h), members and grants.
 * Administrators only.  PUT replaces the whole group, PATCH what it sends
 * (a list sent replaces that list).  Pool threads only.
 */


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>
#include "ngx_segura.h"
#include "ngx_segura_api.h"


#define NGX_SEGURA_API_GROUP_JSON                                            \
    "json_build_object('id', g.id, 'name', g.name,"                          \
    " 'description', g.description,"                                         \
    " 'permissions', json_build_object("                                     \
    "   'use_credentials', g.use_credentials,"                               \
    "   'access_devices', g.access_devices,"                                 \
    "   'remote_session', g.remote_session,"                                 \
    "   'audit_sessions', g.audit_sessions),"                                \
    " 'members', coalesce((select json_agg(x.user_id order by x.user_id)"    \
    "   from group_members x where x.group_id = g.id), '[]'),"               \
    " 'keys', coalesce((select json_agg(x.key_id order by x.key_id)"         \
    "   from group_keys x where x.group_id = g.id), '[]'),"                  \
    " 'devices', coalesce((select json_agg(x.device_id order by"             \
    "   x.device_id) from group_devices x where x.group_id = g.id), '[]'),"  \
    " 'created_at', g.created_at, 'updated_at', g.updated_at)"


static void ngx_segura_api_group_write(ngx_segura_api_ctx_t *ctx,
    PGconn **conn, int64_t id);


static const char *const  ngx_segura_api_group_fields[] = {
    "name", "description", "permissions", "members", "keys", "devices", NULL
};

static const char *const  ngx_segura_api_group_readonly[] = {
    "id", "created_at", "updated_at", NULL
};

static const ngx_segura_api_resource_t  ngx_segura_api_group = {
    "access_groups", "access_group", NGX_HTTP_PUT|NGX_HTTP_PATCH,
    ngx_segura_api_group_write,
    "select " NGX_SEGURA_API_GROUP_JSON
    " from access_groups g where g.id = $1::bigint",
    ngx_segura_api_group_fields, ngx_segura_api_group_readonly, NULL
};

static const char *const  ngx_segura_api_group_permissions[] = {
    "use_credentials", "access_devices", "remote_session", "audit_sessions",
    NULL
};


void
ngx_segura_api_groups(ngx_segura_api_ctx_t *ctx, PGconn **conn, int64_t id,
    const char *sub)
{
    const char  *params[1];
    char         idbuf[NGX_INT64_LEN + 1];

    if (*sub != '\0') {
        ngx_segura_api_fail(ctx, NGX_SEGURA_ERR_NOT_FOUND, NULL, NULL);
        return;
    }

    if (ngx_segura_api_need_admin(ctx) != NGX_OK) {
        return;
    }

    ngx_segura_api_id(id, idbuf);
    params[0] = idbuf;

    if (ctx->method & (NGX_HTTP_GET|NGX_HTTP_HEAD)) {

        if (id == 0) {
            (void) ngx_segura_api_query_json(ctx, conn, 200,
                       "select json_build_object('items', coalesce(json_agg("
                       NGX_SEGURA_API_GROUP_JSON " order by g.id), '[]'))"
                       " from access_groups g", 0, NULL);
            return;
        }

        (void) ngx_segura_api_query_json(ctx, conn, 200,
                   "select " NGX_SEGURA_API_GROUP_JSON
                   " from access_groups g where g.id = $1", 1, params);
        return;
    }

    ngx_segura_api_change(ctx, conn, id, &ngx_segura_api_group);
}


static void
ngx_segura_api_group_write(ngx_segura_api_ctx_t *ctx, PGconn **conn,
    int64_t id)
{
    char               *members, *keys, *devices;
    json_t             *body, *perm, *v;
    PGresult           *res;
    ngx_int_t           rc;
    ngx_uint_t          i, patch;
    const char         *name, *descr, *key, *flags[4], *params[8];
    char                idbuf[NGX_INT64_LEN + 1];
    const char *const  *a;

    body = ngx_segura_api_parse_item(ctx, conn, &ngx_segura_api_group, id);
    if (body == NULL) {
        return;
    }

    /*
     * POST and PUT: what is not sent is reset (false, empty); PATCH: what
     * is not sent stays (NULL below), a permission or a list included
     */

    patch = (ctx->method == NGX_HTTP_PATCH);

    name = NULL;
    descr = patch ? NULL : "";
    members = NULL;
    keys = NULL;
    devices = NULL;
    flags[0] = patch ? NULL : "f";
    flags[1] = patch ? NULL : "f";
    flags[2] = patch ? NULL : "f";
    flags[3] = patch ? NULL : "f";

    rc = ngx_segura_api_get_string(ctx, body, "name", 1, 128, &name);
    if (rc != NGX_OK && !(patch && rc == NGX_SEGURA_API_ABSENT)) {
        if (rc == NGX_SEGURA_API_ABSENT) {
            ngx_segura_api_fail(ctx, NGX_SEGURA_ERR_INVALID_FIELD, "name",
                                "Required");
        }

        goto done;
    }

    if (ngx_segura_api_get_string(ctx, body, "description", 0, 1024, &descr)
        == NGX_ERROR
        || ngx_segura_api_get_ids(ctx, body, "members", &members)
           == NGX_ERROR
        || ngx_segura_api_get_ids(ctx, body, "keys", &keys) == NGX_ERROR
        || ngx_segura_api_get_ids(ctx, body, "devices", &devices)
           == NGX_ERROR)
    {
        goto done;
    }

    perm = json_object_get(body, "permissions");

    if (perm != NULL) {
        if (!json_is_object(perm)) {
            ngx_segura_api_fail(ctx, NGX_SEGURA_ERR_INVALID_FIELD,
                                "permissions", "Must be an object");
            goto done;
        }

        json_object_foreach(perm, key, v) {
            for (a = ngx_segura_api_group_permissions; *a; a++) {
                if (ngx_strcmp(*a, key) == 0) {
                    break;
                }
            }

            if (*a == NULL) {
                ngx_segura_api_fail_field(ctx, NGX_SEGURA_ERR_INVALID_FIELD,
                                          key, "Unknown permission");
                goto done;
            }
        }

        for (i = 0; i < 4; i++) {
            if (ngx_segura_api_get_bool(ctx, perm,
                                        ngx_segura_api_group_permissions[i],
                                        &flags[i])
                == NGX_ERROR)
            {
                goto done;
            }
        }
    }

    ngx_segura_api_id(id, idbuf);

    params[0] = idbuf;
    params[1] = name;
    params[2] = descr;
    params[3] = flags[0];
    params[4] = flags[1];
    params[5] = flags[2];
    params[6] = flags[3];

    if (ngx_segura_api_begin(ctx, conn) != NGX_OK) {
        goto done;
    }

    if (id == 0) {
        res = ngx_segura_api_query(ctx, conn,
                  "insert into access_groups (name, description,"
                  " use_credentials, access_devices, remote_session,"
                  " audit_sessions)"
                  " values ($2, coalesce($3, ''), $4::bool, $5::bool,"
                  " $6::bool, $7::bool) returning id, $1::bigint",
                  7, params);
    } else {
        res = ngx_segura_api_query(ctx, conn,
                  "update access_groups set name = coalesce($2, name),"
                  " description = coalesce($3, description),"
                  " use_credentials = coalesce($4::bool, use_credentials),"
                  " access_devices = coalesce($5::bool, access_devices),"
                  " remote_session = coalesce($6::bool, remote_session),"
                  " audit_sessions = coalesce($7::bool, audit_sessions)"
                  " where id = $1::bigint returning id",
                  7, params);
    }

    if (ngx_segura_api_one(ctx, res) != NGX_OK) {
        goto end;
    }

    (void) ngx_cpystrn((u_char *) idbuf, (u_char *) PQgetvalue(res, 0, 0),
                       sizeof(idbuf));
    PQclear(res);

    /*
     * a list sent replaces that list; PUT replaces them all: what is not
     * sent is removed.  The old rows go first, in a statement of their
     * own: a row deleted and inserted again by one statement would meet
     * itself in the primary key.  A NULL list is left alone.
     */

    params[0] = idbuf;
    params[1] = members ? members : (patch ? NULL : "[]");
    params[2] = keys ? keys : (patch ? NULL : "[]");
    params[3] = devices ? devices : (patch ? NULL : "[]");

    res = ngx_segura_api_query(ctx, conn,
              "with a as (delete from group_members"
              " where group_id = $1::bigint and $2::jsonb is not null),"
              " b as (delete from group_keys where group_id = $1::bigint"
              " and $3::jsonb is not null)"
              " delete from group_devices where group_id = $1::bigint"
              " and $4::jsonb is not null",
              4, params);
    if (res == NULL) {
        goto end;
    }

    PQclear(res);

    res = ngx_segura_api_query(ctx, conn,
              "with m as (insert into group_members (group_id, user_id)"
              " select distinct $1::bigint, x::bigint"
              " from jsonb_array_elements_text($2::jsonb) as t(x)),"
              " k as (insert into group_keys (group_id, key_id)"
              " select distinct $1::bigint, x::bigint"
              " from jsonb_array_elements_text($3::jsonb) as t(x))"
              " insert into group_devices (group_id, device_id)"
              " select distinct $1::bigint, x::bigint"
              " from jsonb_array_elements_text($4::jsonb) as t(x)",
              4, params);
    if (res == NULL) {
        goto end;
    }

    PQclear(res);

    (void) ngx_segura_api_saved(ctx, conn, &ngx_segura_api_group, id == 0,
                                idbuf, body);

end:

    ngx_segura_api_end(ctx, conn);

done:

    free(members);
    free(keys);
    free(devices);
    json_decref(body);
}
