
/*
 * Copyright (C) ngx_segura_module authors
 */


/*
 * /api/devices: administrators write; a user reads the devices granted
 * to one of their groups (others are 404, so existence is not revealed).
 * Pool threads only.
 */


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>
#include "ngx_segura.h"
#include "ngx_segura_api.h"
#include "ngx_segura_sshkey.h"


#define NGX_SEGURA_API_DEVICE_JSON                                           \
    "json_build_object('id', d.id, 'name', d.name,"                          \
    " 'description', d.description, 'address', d.address, 'port', d.port,"   \
    " 'status', d.status, 'tags', to_json(d.tags), 'host_key', d.host_key,"  \
    " 'host_key_fingerprint', d.host_key_fingerprint,"                       \
    " 'created_at', d.created_at, 'updated_at', d.updated_at)"

/* $1: the caller's id, $2: 't' for an administrator */
#define NGX_SEGURA_API_DEVICE_VISIBLE  NGX_SEGURA_API_DEVICE_GRANTED("d.id")


static void ngx_segura_api_device_write(ngx_segura_api_ctx_t *ctx,
    PGconn **conn, int64_t id);


static const char *const  ngx_segura_api_device_fields[] = {
    "name", "description", "address", "port", "status", "tags", "host_key",
    NULL
};

static const char *const  ngx_segura_api_device_readonly[] = {
    "id", "host_key_fingerprint", "created_at", "updated_at", NULL
};

static const ngx_segura_api_resource_t  ngx_segura_api_device = {
    "devices", "device", NGX_HTTP_PATCH|NGX_HTTP_PUT,
    ngx_segura_api_device_write,
    "select " NGX_SEGURA_API_DEVICE_JSON " from devices d where d.id = $1",
    ngx_segura_api_device_fields, ngx_segura_api_device_readonly,
    ngx_segura_api_device_fields
};


void
ngx_segura_api_devices(ngx_segura_api_ctx_t *ctx, PGconn **conn, int64_t id,
    const char *sub)
{
    const char               *params[6];
    char                      me[NGX_INT64_LEN + 1], idbuf[NGX_INT64_LEN + 1];
    ngx_segura_api_filter_t   filter;

    if (*sub != '\0') {
        ngx_segura_api_fail(ctx, NGX_SEGURA_ERR_NOT_FOUND, NULL, NULL);
        return;
    }

    ngx_segura_api_id(ctx->me.id, me);
    ngx_segura_api_id(id, idbuf);

    params[0] = me;
    params[1] = ctx->me.admin ? "t" : "f";
    params[2] = idbuf;

    if (ctx->method & (NGX_HTTP_GET|NGX_HTTP_HEAD)) {

        if (id != 0) {
            (void) ngx_segura_api_query_json(ctx, conn, 200,
                       "select " NGX_SEGURA_API_DEVICE_JSON
                       " from devices d where d.id = $3::bigint and"
                       NGX_SEGURA_API_DEVICE_VISIBLE, 3, params);
            return;
        }

        if (ngx_segura_api_filter(ctx, &filter, &params[2]) != NGX_OK) {
            return;
        }

        (void) ngx_segura_api_query_json(ctx, conn, 200,
                   "select json_build_object('items', coalesce(json_agg("
                   NGX_SEGURA_API_DEVICE_JSON " order by d.id), '[]'))"
                   " from devices d where" NGX_SEGURA_API_DEVICE_VISIBLE
                   " and ($3::text is null or d.status = $3)"
                   " and ($4::text is null or $4 = any(d.tags))"
                   " and ($5::text is null"
                   "      or strpos(lower(d.name), lower($5)) > 0)",
                   5, params);
        return;
    }

    ngx_segura_api_change(ctx, conn, id, &ngx_segura_api_device);
}


static void
ngx_segura_api_device_write(ngx_segura_api_ctx_t *ctx, PGconn **conn,
    int64_t id)
{
    char                      *tags;
    json_t                    *body, *hk;
    PGresult                  *res;
    ngx_int_t                  rc;
    const char                *name, *descr, *address, *status, *host_key;
    const char                *params[10];
    char                       idbuf[NGX_INT64_LEN + 1];
    char                       port[NGX_INT64_LEN + 1];
    ngx_segura_sshkey_info_t   info;

    body = ngx_segura_api_parse_item(ctx, conn, &ngx_segura_api_device, id);
    if (body == NULL) {
        return;
    }

    name = NULL;
    descr = NULL;
    address = NULL;
    status = NULL;
    host_key = NULL;
    tags = NULL;

    if (ngx_segura_api_get_string(ctx, body, "name", 1, 128, &name)
        == NGX_ERROR
        || ngx_segura_api_get_string(ctx, body, "description", 0, 1024,
                                     &descr) == NGX_ERROR
        || ngx_segura_api_get_string(ctx, body, "address", 1, 253, &address)
           == NGX_ERROR
        || ngx_segura_api_get_status(ctx, body, &status) == NGX_ERROR
        || ngx_segura_api_get_tags(ctx, body, "tags", &tags) == NGX_ERROR)
    {
        goto done;
    }

    rc = ngx_segura_api_get_int(ctx, body, "port", 1, 65535, port);
    if (rc == NGX_ERROR) {
        goto done;
    }

    if (id == 0 && (name == NULL || address == NULL)) {
        ngx_segura_api_fail(ctx, NGX_SEGURA_ERR_INVALID_FIELD,
                            name == NULL ? "name" : "address", "Required");
        goto done;
    }

    /* host_key: absent keeps it, null removes it, a line pins it */

    hk = json_object_get(body, "host_key");

    if (hk != NULL && !json_is_null(hk)) {
        if (ngx_segura_api_get_string(ctx, body, "host_key", 1,
                                      NGX_SEGURA_SSHKEY_MAX_PUBLIC,
                                      &host_key)
            != NGX_OK)
        {
            goto done;
        }

        if (ngx_segura_sshkey_public_info(host_key, ngx_strlen(host_key),
                                          &info)
            != 0)
        {
            if (info.reason == NGX_SEGURA_SSHKEY_INTERNAL_ERROR) {
                ngx_segura_api_fail(ctx, NGX_SEGURA_ERR_INTERNAL, NULL, NULL);
                ctx->log_level = NGX_LOG_ERR;
                (void) ngx_cpystrn((u_char *) ctx->log,
                                   (u_char *) "SSH key inspection failed",
                                   sizeof(ctx->log));
                goto done;
            }

            ngx_segura_api_fail_reason(ctx, "host_key",
                                   ngx_segura_sshkey_reason_name(info.reason),
                                   ngx_segura_sshkey_message(info.reason));
            goto done;
        }
    }

    ngx_segura_api_id(id, idbuf);

    params[0] = idbuf;
    params[1] = name;
    params[2] = descr;
    params[3] = address;
    params[4] = rc == NGX_OK ? port : NULL;
    params[5] = status;
    params[6] = tags;
    params[7] = hk != NULL ? "t" : "f";
    params[8] = host_key ? info.public_key : NULL;
    params[9] = host_key ? info.fingerprint : NULL;

    if (ngx_segura_api_begin(ctx, conn) != NGX_OK) {
        goto done;
    }

    if (id == 0) {
        res = ngx_segura_api_query(ctx, conn,
                  "insert into devices (name, description, address, port,"
                  " status, tags, host_key, host_key_fingerprint)"
                  " values ($2, coalesce($3, ''), $4, coalesce($5::int, 22),"
                  " coalesce($6, 'active'), coalesce(array(select"
                  " jsonb_array_elements_text($7::jsonb)), '{}'),"
                  " $9, $10) returning id, $1::bigint, $8::bool",
                  10, params);
    } else {
        res = ngx_segura_api_query(ctx, conn,
                  "update devices set name = coalesce($2, name),"
                  " description = coalesce($3, description),"
                  " address = coalesce($4, address),"
                  " port = coalesce($5::int, port),"
                  " status = coalesce($6, status),"
                  " tags = case when $7::jsonb is null then tags else"
                  " array(select jsonb_array_elements_text($7::jsonb)) end,"
                  " host_key = case when $8::bool then $9 else host_key end,"
                  " host_key_fingerprint = case when $8::bool then $10"
                  " else host_key_fingerprint end"
                  " where id = $1 returning id",
                  10, params);
    }

    if (ngx_segura_api_one(ctx, res) != NGX_OK) {
        goto end;
    }

    (void) ngx_cpystrn((u_char *) idbuf, (u_char *) PQgetvalue(res, 0, 0),
                       sizeof(idbuf));
    PQclear(res);

    (void) ngx_segura_api_saved(ctx, conn, &ngx_segura_api_device, id == 0,
                                idbuf, body);

end:

    ngx_segura_api_end(ctx, conn);

done:

    free(tags);
    json_decref(body);
}
