
/*
 * Copyright (C) ngx_segura_module authors
 */


/*
 * POST /api/keys/{id}/check: is the key deployed on its devices?  For each
 * device, connect, check the host key by the device's pin and
 * segura_host_key_policy as sessions do, and try public-key
 * authentication; no channel, pty or shell is ever asked for
 * (ngx_segura_connect's auth_only).  In three passes:
 *
 *   pool thread   the key and the devices the caller may check; the
 *                 private key opened from the vault and imported, one
 *                 copy per device; the database connection is released
 *   event loop    every device through the non-blocking connect state
 *                 machine, NGX_SEGURA_CHECK_CONCURRENCY at a time, each
 *                 with its own segura_connect_timeout deadline
 *   pool thread   trust-on-first-use pins, the results into key_checks,
 *                 one audit_log row, the answer
 *
 * No pool thread waits on a device and none holds a database connection
 * meanwhile.  The check's state is malloc()ed by the first pass and owned
 * by the request from the event-loop pass on (a cleanup of its pool frees
 * it and wipes the keys left); each pass touches it alone.
 */


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>
#include "ngx_segura.h"
#include "ngx_segura_api.h"
#include "ngx_segura_connect.h"
#include "ngx_segura_sealed.h"
#include "ngx_segura_ssh.h"
#include "ngx_segura_sshkey.h"

#include <openssl/crypto.h>


#define NGX_SEGURA_CHECK_MAX_DEVICES   256
#define NGX_SEGURA_CHECK_CONCURRENCY   16
#define NGX_SEGURA_CHECK_DETAIL_LEN    512


typedef enum {
    NGX_SEGURA_CHECK_DEPLOYED = 0,
    NGX_SEGURA_CHECK_REFUSED,
    NGX_SEGURA_CHECK_UNREACHABLE,
    NGX_SEGURA_CHECK_TIMEOUT,
    NGX_SEGURA_CHECK_HOST_KEY_MISMATCH,
    NGX_SEGURA_CHECK_HOST_KEY_UNKNOWN,
    NGX_SEGURA_CHECK_ERROR
} ngx_segura_check_result_e;


typedef struct ngx_segura_check_s  ngx_segura_check_t;

typedef struct {
    ngx_segura_check_t         *check;

    /* the first pass's */
    int64_t                     device_id;
    char                        address[256];
    in_port_t                   port;
    char                        pinned[NGX_SEGURA_SSH_LINE_LEN];
    char                        pinned_fp[NGX_SEGURA_SSH_FP_LEN];
    char                        pinned_type[64];
    ngx_uint_t                  rsa_bits;   /* of the key it uses */

    /* the event loop's */
    ngx_segura_connect_t        cn;
    ngx_segura_ssh_t            ssh;        /* ssh.key: this device's copy */
    ngx_log_t                   log;
    ngx_segura_check_result_e   result;
    unsigned                    pin:1;      /* TOFU: pin ssh.host_key */
} ngx_segura_check_device_t;


struct ngx_segura_check_s {
    int64_t                     key_id;
    char                        username[65];
    ngx_uint_t                  rsa_bits;
    ngx_uint_t                  n;
    ngx_uint_t                  next;
    ngx_uint_t                  running;
    ngx_uint_t                  finished;
    ngx_msec_t                  started;
    ngx_uint_t                  policy;
    ngx_http_request_t         *r;
    ngx_segura_api_ctx_t       *ctx;
    unsigned                    starting:1;
    unsigned                    stored:1;
    ngx_segura_check_device_t   devices[1];
};


static ngx_int_t ngx_segura_check_devices(ngx_segura_api_ctx_t *ctx,
    PGconn **conn, const char *const *params, const char *want,
    PGresult *key);
static ngx_int_t ngx_segura_check_keys(ngx_segura_api_ctx_t *ctx,
    ngx_segura_check_t *check, PGresult *key);
static void ngx_segura_check_free(ngx_segura_check_t *check);
static void ngx_segura_check_cleanup(void *data);
static void ngx_segura_check_run(ngx_http_request_t *r,
    ngx_segura_api_ctx_t *ctx);
static void ngx_segura_check_more(ngx_segura_check_t *check);
static void ngx_segura_check_start(ngx_segura_check_device_t *d);
static ngx_int_t ngx_segura_check_host_key(ngx_segura_connect_t *cn);
static void ngx_segura_check_done(ngx_segura_connect_t *cn);
static void ngx_segura_check_store(ngx_segura_api_ctx_t *ctx,
    PGconn **conn);
static ngx_int_t ngx_segura_check_pin(ngx_segura_api_ctx_t *ctx,
    PGconn **conn, ngx_segura_check_device_t *d);


static const char *const  ngx_segura_check_fields[] = { "devices", NULL };

static const char *const  ngx_segura_check_results[] = {
    "deployed", "refused", "unreachable", "timeout", "host_key_mismatch",
    "host_key_unknown", "error"
};


/*
 * The first pass (pool thread).  params: $1 the caller, $2 't' for an
 * administrator, $3 the key.  The caller may check the key's devices on
 * which a session with it could start; an administrator, all of them.
 */

void
ngx_segura_api_key_check(ngx_segura_api_ctx_t *ctx, PGconn **conn,
    int64_t id, const char *const *params)
{
    char          *want;
    json_t        *body;
    PGresult      *res;

    if (ctx->method != NGX_HTTP_POST) {
        ngx_segura_api_fail(ctx, NGX_SEGURA_ERR_METHOD, NULL, NULL);
        return;
    }

    want = NULL;
    body = NULL;

    if (ctx->body != NULL && ctx->body_len != 0) {
        body = ngx_segura_api_parse(ctx, ngx_segura_check_fields);
        if (body == NULL) {
            return;
        }

        if (ngx_segura_api_get_ids(ctx, body, "devices", &want)
            == NGX_ERROR)
        {
            json_decref(body);
            return;
        }

        json_decref(body);
    }

    res = ngx_segura_api_query_retry(ctx, conn,
              "select k.username, k.private_key_enc, k.passphrase_enc,"
              " k.key_type, k.bits"
              " from ssh_keys k where k.id = $3::bigint and"
              " ($2::bool or exists (select 1 from group_keys gk"
              "   join access_groups g on g.id = gk.group_id"
              "    and g.use_credentials"
              "   join group_members m on m.group_id = g.id"
              "   where gk.key_id = k.id and m.user_id = $1::bigint))",
              3, params);

    if (ngx_segura_api_one(ctx, res) != NGX_OK) {
        free(want);
        return;
    }

    (void) ngx_segura_check_devices(ctx, conn, params, want, res);

    PQclear(res);
    free(want);
}


static ngx_int_t
ngx_segura_check_devices(ngx_segura_api_ctx_t *ctx, PGconn **conn,
    const char *const *params, const char *want, PGresult *key)
{
    int                         i, n;
    PGresult                   *res;
    const char                 *p[4];
    ngx_segura_check_t         *check;
    ngx_segura_check_device_t  *d;

    p[0] = params[0];
    p[1] = params[1];
    p[2] = params[2];
    p[3] = want;

    /*
     * the devices: the ones asked for (each must be one the caller may
     * check: "ok" false otherwise), or all that the caller may check
     */

    res = ngx_segura_api_query_retry(ctx, conn,
              "with mine as (select d.id, d.address, d.port, d.host_key,"
              "  d.host_key_fingerprint, kd.is_main, e.behind,"
              "  e.private_key_enc, e.passphrase_enc, e.key_type, e.bits"
              "  from key_devices kd join devices d on d.id = kd.device_id"
              /* the version of the key the device uses (a rotation's) */
              "  join key_device_keys e on e.key_id = kd.key_id"
              "   and e.device_id = kd.device_id"
              "  where kd.key_id = $3::bigint and ($2::bool or exists"
              "   (select 1 from segura_key_devices_for($1::bigint,"
              "    $3::bigint) f where f.device_id = d.id"
              "    and f.reason = 'ok'))),"
              " want as (select distinct x::bigint as id"
              "  from jsonb_array_elements_text($4::jsonb) x)"
              " select m.id is not null, m.id, m.address, m.port,"
              "  m.host_key, m.host_key_fingerprint, m.behind,"
              "  m.private_key_enc, m.passphrase_enc, m.key_type, m.bits"
              " from want w left join mine m on m.id = w.id"
              " where $4::jsonb is not null"
              " union all"
              " select true, m.id, m.address, m.port, m.host_key,"
              "  m.host_key_fingerprint, m.behind,"
              "  m.private_key_enc, m.passphrase_enc, m.key_type, m.bits"
              " from (select * from mine order by is_main desc, id) m"
              " where $4::jsonb is null",
              4, p);

    if (res == NULL) {
        return NGX_ERROR;
    }

    n = PQntuples(res);

    for (i = 0; i < n; i++) {
        if (PQgetvalue(res, i, 0)[0] != 't') {
            PQclear(res);
            ngx_segura_api_fail(ctx, NGX_SEGURA_ERR_INVALID_FIELD, "devices",
                                "Not a device of this key that you may "
                                "check");
            return NGX_ERROR;
        }
    }

    if (n > NGX_SEGURA_CHECK_MAX_DEVICES) {
        PQclear(res);
        ngx_segura_api_fail(ctx, NGX_SEGURA_ERR_INVALID_FIELD, "devices",
                            "At most 256 devices per check: name them");
        return NGX_ERROR;
    }

    if (n == 0) {
        PQclear(res);

        /* nothing to connect to: the answer is known */

        return ngx_segura_api_query_json(ctx, conn, 200,
                   "select json_build_object('key', $1::bigint,"
                   " 'total', 0, 'deployed', 0, 'items', '[]'::json)",
                   1, &params[2]);
    }

    check = calloc(1, sizeof(ngx_segura_check_t)
                      + (n - 1) * sizeof(ngx_segura_check_device_t));
    if (check == NULL) {
        PQclear(res);
        ngx_segura_api_fail(ctx, NGX_SEGURA_ERR_INTERNAL, NULL, NULL);
        return NGX_ERROR;
    }

    check->key_id = ngx_atoof((u_char *) params[2], ngx_strlen(params[2]));
    check->n = n;

    (void) ngx_cpystrn((u_char *) check->username,
                       (u_char *) PQgetvalue(key, 0, 0),
                       sizeof(check->username));

    if (ngx_strcmp(PQgetvalue(key, 0, 3), "ssh-rsa") == 0
        && !PQgetisnull(key, 0, 4))
    {
        check->rsa_bits = ngx_atoi((u_char *) PQgetvalue(key, 0, 4),
                                   ngx_strlen(PQgetvalue(key, 0, 4)));
    }

    for (i = 0; i < n; i++) {
        d = &check->devices[i];
        d->check = check;
        d->device_id = ngx_atoof((u_char *) PQgetvalue(res, i, 1),
                                 ngx_strlen(PQgetvalue(res, i, 1)));
        (void) ngx_cpystrn((u_char *) d->address,
                           (u_char *) PQgetvalue(res, i, 2),
                           sizeof(d->address));
        d->port = (in_port_t) ngx_atoi((u_char *) PQgetvalue(res, i, 3),
                                       ngx_strlen(PQgetvalue(res, i, 3)));

        if (!PQgetisnull(res, i, 4)) {
            (void) ngx_cpystrn((u_char *) d->pinned,
                               (u_char *) PQgetvalue(res, i, 4),
                               sizeof(d->pinned));
            (void) ngx_cpystrn((u_char *) d->pinned_fp,
                               (u_char *) PQgetvalue(res, i, 5),
                               sizeof(d->pinned_fp));

            /* "<type> <base64>": the type selects the host key algorithms */

            ngx_segura_ssh_line_type(d->pinned_type, sizeof(d->pinned_type),
                                     d->pinned);
        }

        d->ssh.fd = (ngx_socket_t) -1;
        d->rsa_bits = check->rsa_bits;

        if (PQgetvalue(res, i, 6)[0] != 't') {
            continue;
        }

        /*
         * behind: the older version a rotation left it on, which its
         * sessions use, and so does its check (rare: opened for itself)
         */

        d->rsa_bits = (ngx_strcmp(PQgetvalue(res, i, 9), "ssh-rsa") == 0
                       && !PQgetisnull(res, i, 10))
                      ? (ngx_uint_t) ngx_atoi((u_char *) PQgetvalue(res, i, 10),
                                     ngx_strlen(PQgetvalue(res, i, 10)))
                      : 0;

        if (ngx_segura_sealed_key(ctx->smcf, check->key_id,
                                  PQgetvalue(res, i, 7),
                                  PQgetisnull(res, i, 8)
                                  ? NULL : PQgetvalue(res, i, 8),
                                  &d->ssh.key, ctx->log, sizeof(ctx->log))
            != NGX_OK)
        {
            PQclear(res);
            ngx_segura_check_free(check);
            ngx_segura_api_fail(ctx, NGX_SEGURA_ERR_INTERNAL, NULL,
                                "The key cannot be used");
            ctx->log_level = NGX_LOG_ERR;
            return NGX_ERROR;
        }
    }

    PQclear(res);

    if (ngx_segura_check_keys(ctx, check, key) != NGX_OK) {
        ngx_segura_check_free(check);
        return NGX_ERROR;
    }

    /* the event loop's turn; the connection goes back to the pool now */

    ctx->data = check;
    ctx->next = ngx_segura_check_run;

    return NGX_OK;
}


/* the private key, opened and imported once per device */

static ngx_int_t
ngx_segura_check_keys(ngx_segura_api_ctx_t *ctx, ngx_segura_check_t *check,
    PGresult *key)
{
    int          rc;
    char        *b64;
    size_t       klen;
    ssh_key      first;
    ngx_uint_t   i, f;

    /* the devices that use the current version: those without a key yet */

    for (f = 0; f < check->n && check->devices[f].ssh.key != NULL; f++) {
        /* void */
    }

    if (f == check->n) {
        return NGX_OK;
    }

    first = NULL;

    if (ngx_segura_sealed_key(ctx->smcf, check->key_id,
                              PQgetvalue(key, 0, 1),
                              PQgetisnull(key, 0, 2) ? NULL
                                                     : PQgetvalue(key, 0, 2),
                              &first, ctx->log, sizeof(ctx->log))
        != NGX_OK)
    {
        ngx_segura_api_fail(ctx, NGX_SEGURA_ERR_INTERNAL, NULL,
                            "The key cannot be used");
        ctx->log_level = NGX_LOG_ERR;
        return NGX_ERROR;
    }

    /*
     * the other copies come from an unencrypted export, so that a
     * passphrase's KDF is paid once; every copy is freed (and so wiped)
     * by ssh_key_free() once its device has used it
     */

    check->devices[f].ssh.key = first;

    b64 = NULL;

    if (ssh_pki_export_privkey_base64(first, NULL, NULL, NULL, &b64)
        != SSH_OK)
    {
        goto unusable;
    }

    klen = ngx_strlen(b64);
    rc = 0;

    for (i = f + 1; i < check->n && rc == 0; i++) {
        if (check->devices[i].ssh.key == NULL) {
            rc = ngx_segura_sshkey_import(b64, klen, NULL,
                                          &check->devices[i].ssh.key, NULL);
        }
    }

    OPENSSL_cleanse(b64, klen);
    ssh_string_free_char(b64);

    if (rc != 0) {
        goto unusable;
    }

    return NGX_OK;

unusable:

    ngx_segura_api_fail(ctx, NGX_SEGURA_ERR_INTERNAL, NULL,
                        "The key cannot be used");
    ctx->log_level = NGX_LOG_ERR;
    (void) ngx_snprintf((u_char *) ctx->log, sizeof(ctx->log) - 1,
                        "key %L cannot be imported for a check%Z",
                        check->key_id);
    return NGX_ERROR;
}


/* either thread, whoever owns the check; the keys left are wiped */

static void
ngx_segura_check_free(ngx_segura_check_t *check)
{
    ngx_uint_t  i;

    for (i = 0; i < check->n; i++) {
        ngx_segura_ssh_close(&check->devices[i].ssh);
    }

    free(check);
}


static void
ngx_segura_check_cleanup(void *data)
{
    ngx_segura_check_t *check = data;

    ngx_uint_t  i;

    /* the request is going: nothing may still run (it stayed blocked) */

    for (i = 0; i < check->n; i++) {
        if (ngx_segura_connect_busy(&check->devices[i].cn)) {
            ngx_log_error(NGX_LOG_ALERT, check->r->connection->log, 0,
                          "segura check: freed while device %L is busy",
                          check->devices[i].device_id);
        }
    }

    ngx_segura_check_free(check);
}


/* the event-loop pass: every device, a bounded number at a time */

static void
ngx_segura_check_run(ngx_http_request_t *r, ngx_segura_api_ctx_t *ctx)
{
    ngx_pool_cleanup_t          *cln;
    ngx_segura_check_t          *check;
    ngx_http_segura_loc_conf_t  *slcf;

    check = ctx->data;
    check->r = r;
    check->ctx = ctx;

    cln = ngx_pool_cleanup_add(r->pool, 0);
    if (cln == NULL) {
        ctx->data = NULL;
        ngx_segura_check_free(check);
        ngx_segura_api_fail(ctx, NGX_SEGURA_ERR_INTERNAL, NULL, NULL);
        ngx_segura_api_finish(r, ctx);
        return;
    }

    cln->handler = ngx_segura_check_cleanup;
    cln->data = check;

    if (r->connection->error) {
        /* the client left: nothing to check for */
        ngx_segura_api_finish(r, ctx);
        return;
    }

    slcf = ngx_http_get_module_loc_conf(r, ngx_http_segura_module);

    check->policy = slcf->host_key_policy;
    check->started = ngx_current_msec;

    ngx_segura_check_more(check);
}


static void
ngx_segura_check_more(ngx_segura_check_t *check)
{
    /* a device may finish inside its own start: no recursion then */

    if (check->starting) {
        return;
    }

    check->starting = 1;

    while (check->next < check->n
           && check->running < NGX_SEGURA_CHECK_CONCURRENCY)
    {
        check->running++;
        ngx_segura_check_start(&check->devices[check->next++]);
    }

    check->starting = 0;

    if (check->finished == check->n && !check->stored) {
        check->stored = 1;

        ngx_log_debug2(NGX_LOG_DEBUG_HTTP, check->r->connection->log, 0,
                       "segura check: key %L, devices done in %M ms",
                       check->key_id, ngx_current_msec - check->started);

        ngx_segura_api_resume(check->r, check->ctx, ngx_segura_check_store);
    }
}


static void
ngx_segura_check_start(ngx_segura_check_device_t *d)
{
    ngx_http_request_t           *r;
    ngx_segura_check_t           *check;
    ngx_segura_connect_t         *cn;
    ngx_http_core_loc_conf_t     *clcf;
    ngx_http_segura_loc_conf_t   *slcf;
    ngx_http_segura_main_conf_t  *smcf;

    check = d->check;
    r = check->r;

    clcf = ngx_http_get_module_loc_conf(r, ngx_http_core_module);
    slcf = ngx_http_get_module_loc_conf(r, ngx_http_segura_module);
    smcf = ngx_http_get_module_main_conf(r, ngx_http_segura_module);

    /* a log of its own: each device has its own "while ..." */

    d->log = *r->connection->log;
    d->log.action = NULL;

    d->ssh.username = check->username;
    d->ssh.pinned_type = d->pinned_type[0] ? d->pinned_type : NULL;
    d->ssh.rsa_bits = d->rsa_bits;

    cn = &d->cn;

    cn->host.data = (u_char *) d->address;
    cn->host.len = ngx_strlen(d->address);
    cn->port = d->port;
    cn->timeout = slcf->connect_timeout;
    cn->resolver = clcf->resolver;
    cn->resolver_timeout = clcf->resolver_timeout;
    cn->thread_pool = smcf->thread_pool;
    cn->log = &d->log;
    cn->pool = r->pool;
    cn->ssh = &d->ssh;
    cn->host_key = ngx_segura_check_host_key;
    cn->done = ngx_segura_check_done;
    cn->data = d;
    cn->auth_only = 1;

    ngx_segura_connect_start(cn);
}


/* the key exchange is done: the pin, or the policy, as sessions decide */

static ngx_int_t
ngx_segura_check_host_key(ngx_segura_connect_t *cn)
{
    ngx_segura_check_device_t *d = cn->data;

    switch (ngx_segura_ssh_host_key(&d->ssh, d->pinned_fp,
                                    d->check->policy
                                    == NGX_SEGURA_HOST_KEY_STRICT))
    {
    case NGX_OK:
        return NGX_OK;
    case NGX_ERROR:
        return NGX_ERROR;
    default:
        break;
    }

    /*
     * trust on first use: the key is pinned by the last pass, unless
     * another one was pinned meanwhile (then that is a mismatch)
     */

    d->pin = 1;

    return NGX_OK;
}


static void
ngx_segura_check_done(ngx_segura_connect_t *cn)
{
    ngx_segura_check_device_t *d = cn->data;

    u_char              *p;
    ngx_uint_t           level;
    ngx_segura_check_t  *check;

    check = d->check;

    switch (d->ssh.err) {

    case NGX_SEGURA_WS_ERR_NONE:
        /* an abort without a device error (the worker exits) is no result */
        d->result = cn->authenticated ? NGX_SEGURA_CHECK_DEPLOYED
                                      : NGX_SEGURA_CHECK_ERROR;
        break;

    case NGX_SEGURA_WS_ERR_AUTH_REJECTED:
        d->result = NGX_SEGURA_CHECK_REFUSED;
        break;

    case NGX_SEGURA_WS_ERR_DEVICE_UNREACHABLE:
        d->result = NGX_SEGURA_CHECK_UNREACHABLE;
        break;

    case NGX_SEGURA_WS_ERR_CONNECT_TIMEOUT:
        d->result = NGX_SEGURA_CHECK_TIMEOUT;
        break;

    case NGX_SEGURA_WS_ERR_HOST_KEY_MISMATCH:
        d->result = NGX_SEGURA_CHECK_HOST_KEY_MISMATCH;
        break;

    case NGX_SEGURA_WS_ERR_HOST_KEY_UNKNOWN:
        d->result = NGX_SEGURA_CHECK_HOST_KEY_UNKNOWN;
        break;

    default:
        d->result = NGX_SEGURA_CHECK_ERROR;
        break;
    }

    /* the text goes into JSON: library texts are not always UTF-8 */

    for (p = (u_char *) d->ssh.text; *p; p++) {
        if (*p < 0x20 || *p > 0x7e) {
            *p = '?';
        }
    }

    level = (d->result == NGX_SEGURA_CHECK_ERROR) ? NGX_LOG_ERR
                                                  : NGX_LOG_INFO;

    ngx_log_error(level, &d->log, 0,
                  "segura check: key %L on device %L: %s%s%s",
                  check->key_id, d->device_id,
                  ngx_segura_check_results[d->result],
                  d->ssh.text[0] ? ", " : "", d->ssh.text);

    /* the last copy of the key, if the set-up ended before using it */

    ngx_segura_ssh_close(&d->ssh);

    check->running--;
    check->finished++;

    ngx_segura_check_more(check);
}


/* the last pass (pool thread): pins, results, audit, answer */

static void
ngx_segura_check_store(ngx_segura_api_ctx_t *ctx, PGconn **conn)
{
    char                       *rows;
    json_t                     *all, *audit, *one, *list;
    PGresult                   *res;
    ngx_uint_t                  i, deployed;
    const char                 *params[4];
    ngx_segura_check_t         *check;
    ngx_segura_check_device_t  *d;
    char                        idbuf[NGX_INT64_LEN + 1];
    char                        me[NGX_INT64_LEN + 1];

    check = ctx->data;

    ngx_segura_api_id(check->key_id, idbuf);
    ngx_segura_api_id(ctx->me.id, me);

    rows = NULL;
    audit = NULL;

    all = json_array();
    list = json_array();

    if (all == NULL || list == NULL) {
        ngx_segura_api_fail(ctx, NGX_SEGURA_ERR_INTERNAL, NULL, NULL);
        goto done;
    }

    if (ngx_segura_api_begin(ctx, conn) != NGX_OK) {
        goto done;
    }

    deployed = 0;

    for (i = 0; i < check->n; i++) {
        d = &check->devices[i];

        if (d->pin && ngx_segura_check_pin(ctx, conn, d) != NGX_OK) {
            goto end;
        }

        if (d->result == NGX_SEGURA_CHECK_DEPLOYED) {
            deployed++;
        }

        one = json_pack("{sIsssn}", "device", (json_int_t) d->device_id,
                        "result", ngx_segura_check_results[d->result],
                        "detail");
        if (one == NULL
            || json_object_set_new(one, "detail", json_string(d->ssh.text))
               != 0
            || json_array_append_new(all, one) != 0
            || json_array_append_new(list,
                   json_pack("{sIss}", "device", (json_int_t) d->device_id,
                             "result", ngx_segura_check_results[d->result]))
               != 0)
        {
            ngx_segura_api_fail(ctx, NGX_SEGURA_ERR_INTERNAL, NULL, NULL);
            goto end;
        }
    }

    rows = json_dumps(all, JSON_COMPACT);
    if (rows == NULL) {
        ngx_segura_api_fail(ctx, NGX_SEGURA_ERR_INTERNAL, NULL, NULL);
        goto end;
    }

    params[0] = idbuf;
    params[1] = ctx->me.id > 0 ? me : NULL;
    params[2] = rows;

    /* a key or device deleted meanwhile has no row to keep */

    res = ngx_segura_api_query(ctx, conn,
              "insert into key_checks (key_id, device_id, result, detail,"
              " checked_by)"
              " select $1::bigint, (e->>'device')::bigint, e->>'result',"
              " left(e->>'detail', 512), $2::bigint"
              " from jsonb_array_elements($3::jsonb) e"
              " where exists (select 1 from ssh_keys where id = $1::bigint)"
              " and exists (select 1 from devices"
              "  where id = (e->>'device')::bigint)"
              " on conflict (key_id, device_id) do update"
              " set result = excluded.result, detail = excluded.detail,"
              " checked_at = now(), checked_by = excluded.checked_by",
              3, params);
    if (res == NULL) {
        goto end;
    }

    PQclear(res);

    audit = json_pack("{sOsIsI}", "devices", list,
                      "deployed", (json_int_t) deployed,
                      "total", (json_int_t) check->n);

    if (ngx_segura_api_audit(ctx, conn, "check", "ssh_key", idbuf, audit)
        != NGX_OK)
    {
        goto end;
    }

    params[1] = rows;

    (void) ngx_segura_api_query_json(ctx, conn, 200,
               "select json_build_object('key', $1::bigint,"
               " 'total', count(*),"
               " 'deployed', count(*) filter (where c.result = 'deployed'),"
               " 'items', coalesce(json_agg(json_build_object("
               "   'device', d.id, 'name', d.name, 'address', d.address,"
               "   'port', d.port, 'result', c.result, 'detail', c.detail,"
               "   'checked_at', c.checked_at) order by e.n), '[]'))"
               " from jsonb_array_elements($2::jsonb) with ordinality"
               "  e(x, n)"
               " join key_checks c on c.key_id = $1::bigint"
               "  and c.device_id = (e.x->>'device')::bigint"
               " join devices d on d.id = c.device_id",
               2, params);

end:

    ngx_segura_api_end(ctx, conn);

done:

    free(rows);
    json_decref(audit);
    json_decref(all);
    json_decref(list);
}


static ngx_int_t
ngx_segura_check_pin(ngx_segura_api_ctx_t *ctx, PGconn **conn,
    ngx_segura_check_device_t *d)
{
    PGresult    *res;
    const char  *params[3];
    char         dev[NGX_INT64_LEN + 1];

    /* as a session pins (ngx_segura_session.c), in the check's transaction */

    ngx_segura_api_id(d->device_id, dev);

    params[0] = dev;
    params[1] = d->ssh.host_key;
    params[2] = d->ssh.host_key_fp;

    res = ngx_segura_api_query(ctx, conn,
              "with pin as ("
              "  update devices set host_key = $2, host_key_fingerprint = $3"
              "  where id = $1::bigint and host_key is null returning id),"
              " log as ("
              "  insert into audit_log (action, object_type, object_id,"
              "                         detail)"
              "  select 'host_key_pinned', 'device', $1,"
              "         json_build_object('fingerprint', $3::text)"
              "  from pin returning 1)"
              " select (select count(*) from pin),"
              "        (select host_key_fingerprint from devices"
              "         where id = $1::bigint),"
              "        (select count(*) from log)",
              3, params);

    if (res == NULL) {
        return NGX_ERROR;
    }

    if (PQntuples(res) == 1 && ngx_strcmp(PQgetvalue(res, 0, 0), "1") != 0
        && !PQgetisnull(res, 0, 1)
        && ngx_strcmp(PQgetvalue(res, 0, 1), d->ssh.host_key_fp) != 0)
    {
        /* pinned by someone else meanwhile, and not this key */
        d->result = NGX_SEGURA_CHECK_HOST_KEY_MISMATCH;
        (void) ngx_snprintf((u_char *) d->ssh.text, sizeof(d->ssh.text),
                            "host key %s does not match the one pinned "
                            "meanwhile%Z", d->ssh.host_key_fp);
    }

    PQclear(res);

    return NGX_OK;
}
