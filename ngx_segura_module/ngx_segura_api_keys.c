
/*
 * Copyright (C) ngx_segura_module authors
 */


/*
 * /api/keys and the Remote Access report /api/keys/{id}/devices.
 * Administrators write; a user reads the keys granted to one of their
 * groups that may use credentials (others are 404).  The private key and
 * its passphrase are checked (ngx_segura_sshkey), sealed with the current
 * master key (ngx_segura_vault) under the associated data
 * "ssh_keys/<id>/private_key" and "ssh_keys/<id>/passphrase", and never
 * written anywhere else.  POST /api/keys/generate makes a key pair here
 * (libssh) and stores it the same way; only its public half is answered.
 * Pool threads only.
 */


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>
#include "ngx_segura.h"
#include "ngx_segura_api.h"
#include "ngx_segura_sealed.h"
#include "ngx_segura_sshkey.h"
#include "ngx_segura_vault.h"

#include <openssl/crypto.h>


/*
 * a key as JSON; its devices (main_device, main_device_name, devices) are
 * only those for which dv, an SQL condition on kd.device_id, holds: the
 * ones the caller may see
 */
#define NGX_SEGURA_API_KEY_JSON(dv)                                          \
    "json_build_object('id', k.id, 'name', k.name, 'status', k.status,"      \
    " 'tags', to_json(k.tags), 'owner', k.owner, 'username', k.username,"    \
    " 'type', k.key_type, 'bits', k.bits, 'public_key', k.public_key,"       \
    " 'fingerprint', k.fingerprint,"                                         \
    " 'has_passphrase', k.passphrase_enc is not null,"                       \
    " 'main_device', (select kd.device_id from key_devices kd"               \
    "   where kd.key_id = k.id and kd.is_main and" dv "),"                   \
    " 'main_device_name', (select d.name from key_devices kd"                \
    "   join devices d on d.id = kd.device_id"                               \
    "   where kd.key_id = k.id and kd.is_main and" dv "),"                   \
    " 'devices', coalesce((select json_agg(kd.device_id"                     \
    "   order by kd.is_main desc, kd.device_id)"                             \
    "   from key_devices kd where kd.key_id = k.id and" dv "), '[]'),"       \
    " 'deployment', (select json_build_object("                              \
    "   'deployed', count(c.result) filter (where c.result = 'deployed'),"  \
    "   'checked', count(c.result), 'devices', count(*))"                    \
    "   from key_devices kd left join key_checks c"                          \
    "   on c.key_id = kd.key_id and c.device_id = kd.device_id"              \
    "   where kd.key_id = k.id and" dv "),"                                  \
    " 'rotation_days', k.rotation_days, 'version', k.version,"             \
    " 'rotated_at', k.rotated_at,"                                           \
    " 'rotation', json_build_object("                                        \
    "   'behind', (select count(*) from key_devices kd"                      \
    "     where kd.key_id = k.id and kd.key_version is not null"             \
    "     and kd.key_version <> k.version and" dv "),"                       \
    "   'running', exists (select 1 from key_rotations r"                    \
    "     where r.key_id = k.id and r.status = 'running'),"                  \
    "   'next_at', coalesce(k.rotated_at, k.created_at)"                     \
    "     + k.rotation_days * interval '1 day'),"                            \
    " 'created_at', k.created_at, 'updated_at', k.updated_at)"

/* the devices of a key the caller may see; $1 and $2 as below */
#define NGX_SEGURA_API_KEY_DEVICES                                           \
    NGX_SEGURA_API_DEVICE_GRANTED("kd.device_id")

/* $1: the caller's id, $2: 't' for an administrator */
#define NGX_SEGURA_API_KEY_VISIBLE                                           \
    " ($2::bool or exists (select 1 from group_keys gk"                      \
    "   join access_groups g on g.id = gk.group_id and g.use_credentials"    \
    "   join group_members m on m.group_id = g.id"                           \
    "   where gk.key_id = k.id and m.user_id = $1::bigint))"


static void ngx_segura_api_key_report(ngx_segura_api_ctx_t *ctx,
    PGconn **conn, const char *const *params);
static void ngx_segura_api_key_write(ngx_segura_api_ctx_t *ctx,
    PGconn **conn, int64_t id);
static void ngx_segura_api_key_save(ngx_segura_api_ctx_t *ctx,
    PGconn **conn, int64_t id, ngx_uint_t generate);
static char *ngx_segura_api_key_make(ngx_segura_api_ctx_t *ctx,
    const char *type);
static char *ngx_segura_api_key_seal(ngx_segura_api_ctx_t *ctx,
    const char *id, const char *column, const char *plain);


static const char *const  ngx_segura_api_key_fields[] = {
    "name", "status", "tags", "owner", "username", "private_key",
    "passphrase", "public_key", "main_device", "devices", "rotation_days",
    NULL
};

static const char *const  ngx_segura_api_key_generate_fields[] = {
    "name", "status", "tags", "owner", "username", "type", "main_device",
    "devices", "rotation_days", NULL
};


static const char *const  ngx_segura_api_key_readonly[] = {
    "id", "type", "bits", "fingerprint", "has_passphrase", "main_device_name",
    "deployment", "version", "rotated_at", "rotation", "created_at",
    "updated_at", NULL
};

static const char *const  ngx_segura_api_key_whole[] = {
    "name", "status", "tags", "owner", "username", "devices", NULL
};

static const ngx_segura_api_resource_t  ngx_segura_api_key = {
    "ssh_keys", "ssh_key", NGX_HTTP_PATCH|NGX_HTTP_PUT,
    ngx_segura_api_key_write,
    "select " NGX_SEGURA_API_KEY_JSON(" true")
    " from ssh_keys k where k.id = $1::bigint",
    ngx_segura_api_key_fields, ngx_segura_api_key_readonly,
    ngx_segura_api_key_whole
};


/* the answer to a generate: the key, and the line to put on devices */

static const char  ngx_segura_api_key_generated[] =
    "select (" NGX_SEGURA_API_KEY_JSON(" true") "::jsonb"
    " || jsonb_build_object('authorized_keys',"
    "    k.public_key || ' segura-key-' || k.id))::json"
    " from ssh_keys k where k.id = $1::bigint";


void
ngx_segura_api_keys(ngx_segura_api_ctx_t *ctx, PGconn **conn, int64_t id,
    const char *sub)
{
    const char               *params[6];
    char                      me[NGX_INT64_LEN + 1], idbuf[NGX_INT64_LEN + 1];
    ngx_segura_api_filter_t   filter;

    ngx_segura_api_id(ctx->me.id, me);
    ngx_segura_api_id(id, idbuf);

    params[0] = me;
    params[1] = ctx->me.admin ? "t" : "f";
    params[2] = idbuf;

    if (id != 0 && ngx_strcmp(sub, "check") == 0) {
        ngx_segura_api_key_check(ctx, conn, id, params);
        return;
    }

    if (id != 0 && (ngx_strcmp(sub, "deploy") == 0
                    || ngx_strcmp(sub, "withdraw") == 0))
    {
        ngx_segura_api_key_deploy(ctx, conn, id, params, sub[0] == 'w');
        return;
    }

    if (id != 0 && ngx_strcmp(sub, "rotate") == 0) {
        ngx_segura_api_key_rotate(ctx, conn, id, params);
        return;
    }

    if (id != 0 && ngx_strcmp(sub, "rotations") == 0) {
        ngx_segura_api_key_rotations(ctx, conn, id, params);
        return;
    }

    if (*sub != '\0') {
        if (id == 0 || ngx_strcmp(sub, "devices") != 0) {
            ngx_segura_api_fail(ctx, NGX_SEGURA_ERR_NOT_FOUND, NULL, NULL);
            return;
        }

        if (!(ctx->method & (NGX_HTTP_GET|NGX_HTTP_HEAD))) {
            ngx_segura_api_fail(ctx, NGX_SEGURA_ERR_METHOD, NULL, NULL);
            return;
        }

        ngx_segura_api_key_report(ctx, conn, params);
        return;
    }

    if (ctx->method & (NGX_HTTP_GET|NGX_HTTP_HEAD)) {

        if (id != 0) {
            (void) ngx_segura_api_query_json(ctx, conn, 200,
                       "select "
                       NGX_SEGURA_API_KEY_JSON(NGX_SEGURA_API_KEY_DEVICES)
                       " from ssh_keys k where k.id = $3::bigint and"
                       NGX_SEGURA_API_KEY_VISIBLE, 3, params);
            return;
        }

        if (ngx_segura_api_filter(ctx, &filter, &params[2]) != NGX_OK) {
            return;
        }

        (void) ngx_segura_api_query_json(ctx, conn, 200,
                   "select json_build_object('items', coalesce(json_agg("
                   NGX_SEGURA_API_KEY_JSON(NGX_SEGURA_API_KEY_DEVICES)
                   " order by k.id), '[]'))"
                   " from ssh_keys k where" NGX_SEGURA_API_KEY_VISIBLE
                   " and ($3::text is null or k.status = $3)"
                   " and ($4::text is null or $4 = any(k.tags))"
                   " and ($5::text is null"
                   "      or strpos(lower(k.name), lower($5)) > 0)",
                   5, params);
        return;
    }

    ngx_segura_api_change(ctx, conn, id, &ngx_segura_api_key);
}


static void
ngx_segura_api_key_report(ngx_segura_api_ctx_t *ctx, PGconn **conn,
    const char *const *params)
{
    /*
     * the Remote Access report: segura_grant_check() for the caller on
     * every device associated with the key that the caller may see, main
     * device first; an ungranted device is not named, not even as refused
     */

    (void) ngx_segura_api_query_json(ctx, conn, 200,
               "select json_build_object('key', json_build_object("
               " 'id', k.id, 'name', k.name, 'status', k.status,"
               " 'username', k.username),"
               " 'items', coalesce((select json_agg(json_build_object("
               "   'id', d.id, 'name', d.name, 'description', d.description,"
               "   'address', d.address, 'port', d.port, 'status', d.status,"
               "   'tags', to_json(d.tags), 'main', f.is_main,"
               "   'can_start', f.reason = 'ok',"
               "   'reason', nullif(f.reason, 'ok'),"
               "   'version', (select e.version from key_device_keys e"
               "     where e.key_id = k.id and e.device_id = d.id),"
               "   'behind', coalesce((select e.behind from key_device_keys e"
               "     where e.key_id = k.id and e.device_id = d.id), false),"
               "   'check', (select json_build_object('result', c.result,"
               "     'detail', c.detail, 'checked_at', c.checked_at)"
               "     from key_checks c"
               "     where c.key_id = k.id and c.device_id = d.id))"
               "   order by f.is_main desc, f.device_id)"
               "   from segura_key_devices_for($1::bigint, k.id) f"
               "   join devices d on d.id = f.device_id"
               "   where" NGX_SEGURA_API_DEVICE_GRANTED("f.device_id")
               "), '[]'))"
               " from ssh_keys k where k.id = $3::bigint and"
               NGX_SEGURA_API_KEY_VISIBLE, 3, params);
}


/*
 * POST /api/keys/generate: a new key pair made here, in the pool thread
 * (an RSA-4096 key takes a second of CPU); the private half goes to the
 * vault as a registered key's does and is never returned
 */

void
ngx_segura_api_keys_generate(ngx_segura_api_ctx_t *ctx, PGconn **conn,
    int64_t id, const char *sub)
{
    if (ctx->method != NGX_HTTP_POST) {
        ngx_segura_api_fail(ctx, NGX_SEGURA_ERR_METHOD, NULL, NULL);
        return;
    }

    if (ngx_segura_api_need_admin(ctx) != NGX_OK) {
        return;
    }

    ngx_segura_api_key_save(ctx, conn, 0, 1);
}


static void
ngx_segura_api_key_write(ngx_segura_api_ctx_t *ctx, PGconn **conn,
    int64_t id)
{
    ngx_segura_api_key_save(ctx, conn, id, 0);
}


static void
ngx_segura_api_key_save(ngx_segura_api_ctx_t *ctx, PGconn **conn,
    int64_t id, ngx_uint_t generate)
{
    char                      *tags, *devices, *sealed_key, *sealed_pass;
    char                      *made;
    json_t                    *body, *cur, *v;
    PGresult                  *res, *ins;
    ngx_int_t                  rc_main;
    const char                *name, *status, *owner, *username, *pkey;
    const char                *pass, *pub, *type, *params[15];
    char                       idbuf[NGX_INT64_LEN + 1];
    char                       main_dev[NGX_INT64_LEN + 1];
    char                       bits[NGX_INT64_LEN + 1];
    char                       days[NGX_INT64_LEN + 1];
    ngx_uint_t                 set_days;
    ngx_segura_sshkey_info_t   info;

    body = generate
           ? ngx_segura_api_parse(ctx, ngx_segura_api_key_generate_fields)
           : ngx_segura_api_parse_item(ctx, conn, &ngx_segura_api_key, id);
    if (body == NULL) {
        return;
    }

    /*
     * the key as GET shows it, sent back: its public key without the
     * private one changes nothing when it is the stored one, and a null
     * main device is no main device to set (a PUT then leaves none)
     */

    v = json_object_get(body, "main_device");

    if (v != NULL && json_is_null(v)) {
        (void) json_object_del(body, "main_device");
    }

    v = json_object_get(body, "public_key");

    if (id != 0 && v != NULL && json_object_get(body, "private_key") == NULL)
    {
        ngx_segura_api_id(id, idbuf);

        cur = ngx_segura_api_current(ctx, conn, &ngx_segura_api_key, idbuf);
        if (cur == NULL) {
            json_decref(body);
            return;
        }

        if (json_equal(json_object_get(cur, "public_key"), v)) {
            (void) json_object_del(body, "public_key");
        }

        json_decref(cur);
    }

    name = NULL;
    status = NULL;
    owner = NULL;
    username = NULL;
    pkey = NULL;
    pass = NULL;
    pub = NULL;
    type = NULL;
    made = NULL;
    tags = NULL;
    devices = NULL;
    sealed_key = NULL;
    sealed_pass = NULL;
    res = NULL;

    if (ngx_segura_api_get_string(ctx, body, "name", 1, 128, &name)
        == NGX_ERROR
        || ngx_segura_api_get_status(ctx, body, &status) == NGX_ERROR
        || ngx_segura_api_get_tags(ctx, body, "tags", &tags) == NGX_ERROR
        || ngx_segura_api_get_string(ctx, body, "owner", 0, 256, &owner)
           == NGX_ERROR
        || ngx_segura_api_get_string(ctx, body, "username", 1, 64, &username)
           == NGX_ERROR
        || ngx_segura_api_get_string(ctx, body, "private_key", 1,
                                     NGX_SEGURA_SSHKEY_MAX_PRIVATE, &pkey)
           == NGX_ERROR
        || ngx_segura_api_get_string(ctx, body, "passphrase", 0,
                                     NGX_SEGURA_SSHKEY_MAX_PASSPHRASE, &pass)
           == NGX_ERROR
        || ngx_segura_api_get_string(ctx, body, "public_key", 1,
                                     NGX_SEGURA_SSHKEY_MAX_PUBLIC, &pub)
           == NGX_ERROR
        || ngx_segura_api_get_string(ctx, body, "type", 1, 32, &type)
           == NGX_ERROR
        || ngx_segura_api_get_ids(ctx, body, "devices", &devices)
           == NGX_ERROR)
    {
        goto done;
    }

    rc_main = ngx_segura_api_get_int(ctx, body, "main_device", 1,
                                     INT64_MAX, main_dev);
    if (rc_main == NGX_ERROR) {
        goto done;
    }

    /* rotation_days: null is no schedule */

    v = json_object_get(body, "rotation_days");
    set_days = (v != NULL);
    days[0] = '\0';

    if (v != NULL && !json_is_null(v)
        && ngx_segura_api_get_int(ctx, body, "rotation_days", 1, 3650, days)
           == NGX_ERROR)
    {
        goto done;
    }

    if (generate && name != NULL && username != NULL) {
        made = ngx_segura_api_key_make(ctx, type ? type : "ed25519");
        if (made == NULL) {
            goto done;
        }

        pkey = made;
    }

    if (id == 0 && (name == NULL || username == NULL || pkey == NULL)) {
        ngx_segura_api_fail(ctx, NGX_SEGURA_ERR_INVALID_FIELD,
                            name == NULL ? "name"
                            : username == NULL ? "username" : "private_key",
                            "Required");
        goto done;
    }

    /* the passphrase and the public key belong to the key text */

    if (pkey == NULL && (pass != NULL || pub != NULL)) {
        ngx_segura_api_fail(ctx, NGX_SEGURA_ERR_INVALID_FIELD,
                            pass != NULL ? "passphrase" : "public_key",
                            "Send it together with the private key");
        goto done;
    }

    if (pkey != NULL
        && ngx_segura_sshkey_inspect(pkey, ngx_strlen(pkey),
                                     pass && pass[0] ? pass : NULL, pub,
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

        ngx_segura_api_fail_reason(ctx,
                                   ngx_segura_sshkey_field_name(info.field),
                                   ngx_segura_sshkey_reason_name(info.reason),
                                   ngx_segura_sshkey_message(info.reason));
        goto done;
    }

    if (pkey != NULL) {
        ngx_segura_api_id(info.bits, bits);
    }

    if (ngx_segura_api_begin(ctx, conn) != NGX_OK) {
        goto done;
    }

    /* the row id is bound into the sealed blobs: take it first */

    if (id == 0) {
        res = ngx_segura_api_query(ctx, conn,
                  "select nextval(pg_get_serial_sequence('ssh_keys', 'id'))",
                  0, NULL);
        if (res == NULL) {
            goto end;
        }

        (void) ngx_cpystrn((u_char *) idbuf,
                           (u_char *) PQgetvalue(res, 0, 0), sizeof(idbuf));
        PQclear(res);
        res = NULL;

    } else {
        ngx_segura_api_id(id, idbuf);
    }

    if (pkey != NULL) {
        sealed_key = ngx_segura_api_key_seal(ctx, idbuf, "private_key", pkey);
        if (sealed_key == NULL) {
            goto end;
        }

        if (pass != NULL && pass[0] != '\0') {
            sealed_pass = ngx_segura_api_key_seal(ctx, idbuf, "passphrase",
                                                  pass);
            if (sealed_pass == NULL) {
                goto end;
            }
        }
    }

    ngx_segura_api_wipe_string(body, "private_key");
    ngx_segura_api_wipe_string(body, "passphrase");

    params[0] = idbuf;
    params[1] = name;
    params[2] = status;
    params[3] = tags;
    params[4] = owner;
    params[5] = username;
    params[6] = pkey ? info.type : NULL;
    params[7] = pkey && info.bits ? bits : NULL;
    params[8] = pkey ? info.public_key : NULL;
    params[9] = pkey ? info.fingerprint : NULL;
    params[10] = sealed_key;
    params[11] = sealed_pass;
    params[12] = pkey ? "t" : "f";
    params[13] = days[0] ? days : NULL;
    params[14] = set_days ? "t" : "f";

    if (id == 0) {
        res = ngx_segura_api_query(ctx, conn,
                  "insert into ssh_keys (id, name, status, tags, owner,"
                  " username, key_type, bits, public_key, fingerprint,"
                  " private_key_enc, passphrase_enc, rotation_days)"
                  " overriding system value"
                  " values ($1::bigint, $2, coalesce($3, 'active'),"
                  " coalesce(array(select"
                  " jsonb_array_elements_text($4::jsonb)), '{}'),"
                  " coalesce($5, ''), $6, $7, $8::int, $9, $10,"
                  " $11::bytea, $12::bytea, $14::int)"
                  " returning id, $13::bool, $15::bool",
                  15, params);
    } else {
        res = ngx_segura_api_query(ctx, conn,
                  "update ssh_keys set name = coalesce($2, name),"
                  " status = coalesce($3, status),"
                  " tags = case when $4::jsonb is null then tags else"
                  " array(select jsonb_array_elements_text($4::jsonb)) end,"
                  " owner = coalesce($5, owner),"
                  " username = coalesce($6, username),"
                  " key_type = coalesce($7, key_type),"
                  " bits = case when $13::bool then $8::int else bits end,"
                  " public_key = coalesce($9, public_key),"
                  " fingerprint = coalesce($10, fingerprint),"
                  " private_key_enc = coalesce($11::bytea, private_key_enc),"
                  " passphrase_enc = case when $13::bool then $12::bytea"
                  " else passphrase_enc end,"
                  /* a replaced key is a new version everywhere */
                  " version = case when $13::bool then version + 1"
                  " else version end,"
                  " rotation_days = case when $15::bool then $14::int"
                  " else rotation_days end"
                  " where id = $1::bigint returning id",
                  15, params);
    }

    if (ngx_segura_api_one(ctx, res) != NGX_OK) {
        res = NULL;
        goto end;
    }

    PQclear(res);
    res = NULL;

    if (pkey != NULL && id != 0) {
        /* no device keeps an older version of a key that was replaced */

        res = ngx_segura_api_query(ctx, conn,
                  "with kd as (update key_devices set key_version = null"
                  "  where key_id = $1::bigint and key_version is not null"
                  "  returning 1)"
                  " delete from ssh_key_versions where key_id = $1::bigint"
                  " and (select count(*) from kd) >= 0",
                  1, params);
        if (res == NULL) {
            goto end;
        }

        PQclear(res);
        res = NULL;
    }

    /*
     * the associations: "devices" replaces the set (the main device is
     * always in it); "main_device" alone picks the main one and adds it
     */

    if (devices != NULL || rc_main == NGX_OK) {
        params[1] = devices;
        params[2] = rc_main == NGX_OK ? main_dev : NULL;

        /* a PUT without a main device has none; a PATCH keeps it */
        params[3] = ctx->method == NGX_HTTP_PUT ? "f" : "t";

        res = ngx_segura_api_query(ctx, conn,
                  "with cur as (select coalesce(jsonb_agg(device_id),"
                  " '[]') as ids, max(device_id) filter (where is_main)"
                  " as main from key_devices where key_id = $1::bigint),"
                  " del as (delete from key_devices where key_id = $1::bigint"
                  "  returning device_id, key_version)"
                  " select coalesce($2::jsonb, cur.ids)"
                  " || coalesce(to_jsonb($3::bigint), '[]'::jsonb),"
                  " coalesce($3::bigint,"
                  " case when $4::bool then cur.main end),"
                  /* the version each kept device uses (a rotation's) */
                  " coalesce((select jsonb_object_agg(device_id, key_version)"
                  "  from del where key_version is not null), '{}')"
                  " from cur",
                  4, params);
        if (res == NULL) {
            goto end;
        }

        params[1] = PQgetvalue(res, 0, 0);
        params[2] = PQgetisnull(res, 0, 1) ? NULL : PQgetvalue(res, 0, 1);
        params[3] = PQgetvalue(res, 0, 2);

        ins = ngx_segura_api_query(ctx, conn,
                  "with ins as (insert into key_devices (key_id, device_id,"
                  "  is_main, key_version)"
                  "  select $1::bigint, s.d,"
                  "  coalesce(s.d = $3::bigint, false),"
                  "  ($4::jsonb ->> s.d::text)::int"
                  "  from (select distinct x::bigint as d"
                  "  from jsonb_array_elements_text($2::jsonb) as t(x)) s"
                  "  returning key_version)"
                  /* the versions no device uses any more */
                  " delete from ssh_key_versions v where v.key_id = $1::bigint"
                  " and v.version not in (select key_version from ins"
                  "  where key_version is not null)",
                  4, params);

        PQclear(res);
        res = NULL;

        if (ins == NULL) {
            goto end;
        }

        PQclear(ins);
    }

    if (generate) {
        json_t  *detail;

        detail = ngx_segura_api_fields(body);

        if (detail != NULL) {
            (void) json_object_set_new(detail, "key_type",
                                       json_string(info.type));
            (void) json_object_set_new(detail, "fingerprint",
                                       json_string(info.fingerprint));
        }

        if (ngx_segura_api_audit(ctx, conn, "generate", "ssh_key", idbuf,
                                 detail)
            == NGX_OK)
        {
            params[0] = idbuf;
            (void) ngx_segura_api_query_json(ctx, conn, 201,
                                             ngx_segura_api_key_generated,
                                             1, params);
        }

        json_decref(detail);

    } else {
        (void) ngx_segura_api_saved(ctx, conn, &ngx_segura_api_key, id == 0,
                                    idbuf, body);
    }

end:

    PQclear(res);
    ngx_segura_api_end(ctx, conn);

done:

    free(sealed_key);
    free(sealed_pass);
    free(tags);
    free(devices);

    if (made != NULL) {
        OPENSSL_cleanse(made, ngx_strlen(made));
        free(made);
    }

    ngx_segura_api_wipe_string(body, "private_key");
    ngx_segura_api_wipe_string(body, "passphrase");
    json_decref(body);
}


static char *
ngx_segura_api_key_make(ngx_segura_api_ctx_t *ctx, const char *type)
{
    int                   bits;
    char                 *text;
    enum ssh_keytypes_e   kt;

    /* a new private key as text, malloc()ed; the caller wipes and frees it */

    if (ngx_segura_sshkey_kind(type, &kt, &bits) != 0) {
        ngx_segura_api_fail(ctx, NGX_SEGURA_ERR_INVALID_FIELD, "type",
                            NGX_SEGURA_SSHKEY_KINDS);
        return NULL;
    }

    text = ngx_segura_sshkey_generate(kt, bits);

    if (text == NULL) {
        ngx_segura_api_fail(ctx, NGX_SEGURA_ERR_INTERNAL, NULL, NULL);
        ctx->log_level = NGX_LOG_ERR;
        (void) ngx_snprintf((u_char *) ctx->log, sizeof(ctx->log) - 1,
                            "generating a %s key failed%Z", type);
        return NULL;
    }

    return text;
}


static char *
ngx_segura_api_key_seal(ngx_segura_api_ctx_t *ctx, const char *id,
    const char *column, const char *plain)
{
    char  *hex;

    hex = ngx_segura_sealed_seal(ctx->smcf, id, column, plain, ctx->log,
                                 sizeof(ctx->log));
    if (hex == NULL) {
        ngx_segura_api_fail(ctx, NGX_SEGURA_ERR_INTERNAL, NULL, NULL);
        ctx->log_level = NGX_LOG_ERR;
    }

    return hex;
}
