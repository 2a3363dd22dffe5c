
/*
 * Copyright (C) ngx_segura_module authors
 */


/*
 * POST /api/keys/{id}/deploy and /withdraw: put the key's public line
 * into (or take it out of) ~/.ssh/authorized_keys of the key's username
 * on its devices, then verify with the check's probe.  For each device:
 *
 *   edit     log in as the key's username with the "via" credential
 *            (another registered key, opened from the vault, or a
 *            one-time password) and run one fixed command on an exec
 *            channel (ngx_segura_connect's exec mode): a POSIX sh
 *            program that reads the line on stdin and edits the file
 *            idempotently and atomically (NGX_SEGURA_DEPLOY_ADD and
 *            _REMOVE below; no user data is ever in the command)
 *   verify   a second connection, auth_only, with the key itself: the
 *            check's probe (deployed, refused, ...), stored in
 *            key_checks as a check stores it
 *
 * In three passes, as ngx_segura_api_keys_check.c:
 *
 *   pool thread   administrators only; the key, the via key and the
 *                 devices; the private keys opened from the vault, one
 *                 copy per device and connection; the database
 *                 connection is released
 *   event loop    every device, NGX_SEGURA_DEPLOY_CONCURRENCY at a time,
 *                 each connection with its own segura_connect_timeout
 *   pool thread   pins, key_checks, one audit_log row, the answer
 *
 * No pool thread waits on a device and none holds a database connection
 * meanwhile.  The one-time password is copied out of the request body
 * (whose copies are wiped), is in no log line, audit row or answer, and
 * is wiped as soon as the last device has used it (and on every other
 * path by ngx_segura_deploy_free()).  The state is malloc()ed by the
 * first pass and owned by the request from the event-loop pass on.
 */


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>
#include "ngx_segura.h"
#include "ngx_segura_api.h"
#include "ngx_segura_connect.h"
#include "ngx_segura_deploy_program.h"
#include "ngx_segura_exec.h"
#include "ngx_segura_sealed.h"
#include "ngx_segura_ssh.h"
#include "ngx_segura_sshkey.h"

#include <openssl/crypto.h>


#define NGX_SEGURA_DEPLOY_MAX_DEVICES   256
#define NGX_SEGURA_DEPLOY_CONCURRENCY   16
#define NGX_SEGURA_DEPLOY_PASSWORD_LEN  1024
#define NGX_SEGURA_DEPLOY_DETAIL_LEN    512


typedef enum {
    NGX_SEGURA_DEPLOY_DEPLOYED = 0,
    NGX_SEGURA_DEPLOY_WITHDRAWN,
    NGX_SEGURA_DEPLOY_UNCHANGED,
    NGX_SEGURA_DEPLOY_VERIFY_FAILED,
    NGX_SEGURA_DEPLOY_AUTH_FAILED,
    NGX_SEGURA_DEPLOY_UNREACHABLE,
    NGX_SEGURA_DEPLOY_TIMEOUT,
    NGX_SEGURA_DEPLOY_HOST_KEY_MISMATCH,
    NGX_SEGURA_DEPLOY_HOST_KEY_UNKNOWN,
    NGX_SEGURA_DEPLOY_EXEC_FAILED,
    NGX_SEGURA_DEPLOY_ERROR
} ngx_segura_deploy_result_e;


/* as ngx_segura_api_keys_check.c stores them in key_checks */
typedef enum {
    NGX_SEGURA_DEPLOY_CHECK_NONE = -1,
    NGX_SEGURA_DEPLOY_CHECK_DEPLOYED = 0,
    NGX_SEGURA_DEPLOY_CHECK_REFUSED,
    NGX_SEGURA_DEPLOY_CHECK_UNREACHABLE,
    NGX_SEGURA_DEPLOY_CHECK_TIMEOUT,
    NGX_SEGURA_DEPLOY_CHECK_HOST_KEY_MISMATCH,
    NGX_SEGURA_DEPLOY_CHECK_HOST_KEY_UNKNOWN,
    NGX_SEGURA_DEPLOY_CHECK_ERROR
} ngx_segura_deploy_check_e;


typedef struct ngx_segura_deploy_s  ngx_segura_deploy_t;

typedef struct {
    ngx_segura_deploy_t        *dp;

    /* the first pass's */
    int64_t                     device_id;
    char                        address[256];
    in_port_t                   port;
    char                        pinned[NGX_SEGURA_SSH_LINE_LEN];
    char                        pinned_fp[NGX_SEGURA_SSH_FP_LEN];
    char                        pinned_type[64];

    /* the event loop's: the edit (ssh.key: the via key's copy) */
    ngx_segura_connect_t        cn;
    ngx_segura_ssh_t            ssh;
    ngx_segura_exec_t           ex;

    /* the verify (vssh.key: the key's own copy) */
    ngx_segura_connect_t        vcn;
    ngx_segura_ssh_t            vssh;

    ngx_log_t                   log;
    ngx_segura_deploy_result_e  result;
    ngx_segura_deploy_check_e   check;
    char                        detail[NGX_SEGURA_DEPLOY_DETAIL_LEN];
    unsigned                    pin:1;      /* TOFU: pin ssh.host_key */
} ngx_segura_deploy_device_t;


struct ngx_segura_deploy_s {
    int64_t                     key_id;
    int64_t                     via_key;    /* 0: the password */
    ngx_uint_t                  withdraw;
    char                        username[65];
    ngx_uint_t                  rsa_bits;
    ngx_uint_t                  via_rsa_bits;
    size_t                      line_len;
    u_char                      line[NGX_SEGURA_SSH_LINE_LEN + 64];
    char                        password[NGX_SEGURA_DEPLOY_PASSWORD_LEN + 1];
    ngx_uint_t                  n;
    ngx_uint_t                  next;
    ngx_uint_t                  running;
    ngx_uint_t                  finished;
    ngx_msec_t                  started;
    ngx_uint_t                  policy;
    ngx_http_request_t         *r;
    ngx_segura_api_ctx_t       *ctx;
    unsigned                    has_password:1;
    unsigned                    starting:1;
    unsigned                    stored:1;
    ngx_segura_deploy_device_t  devices[1];
};


static ngx_int_t ngx_segura_deploy_via(ngx_segura_api_ctx_t *ctx,
    json_t *body, int64_t *via_key, char *password);
static ngx_int_t ngx_segura_deploy_devices(ngx_segura_api_ctx_t *ctx,
    PGconn **conn, const char *const *params, const char *want,
    ngx_uint_t withdraw, PGresult *key, ngx_segura_deploy_t **out);
static ngx_int_t ngx_segura_deploy_keys(ngx_segura_api_ctx_t *ctx,
    ngx_segura_deploy_t *dp, int64_t id, PGresult *key, ngx_uint_t via);
static void ngx_segura_deploy_free(ngx_segura_deploy_t *dp);
static void ngx_segura_deploy_cleanup(void *data);
static void ngx_segura_deploy_run(ngx_http_request_t *r,
    ngx_segura_api_ctx_t *ctx);
static void ngx_segura_deploy_more(ngx_segura_deploy_t *dp);
static void ngx_segura_deploy_setup(ngx_segura_deploy_device_t *d,
    ngx_segura_connect_t *cn, ngx_segura_ssh_t *ssh);
static void ngx_segura_deploy_start(ngx_segura_deploy_device_t *d);
static ngx_int_t ngx_segura_deploy_host_key(ngx_segura_connect_t *cn);
static void ngx_segura_deploy_edited(ngx_segura_connect_t *cn);
static void ngx_segura_deploy_verified(ngx_segura_connect_t *cn);
static void ngx_segura_deploy_end(ngx_segura_deploy_device_t *d);
static void ngx_segura_deploy_text(char *dst, size_t len, const char *src);
static ngx_uint_t ngx_segura_deploy_word(const char *word, size_t len,
    const char *want);
static void ngx_segura_deploy_store(ngx_segura_api_ctx_t *ctx,
    PGconn **conn);
static ngx_int_t ngx_segura_deploy_pin(ngx_segura_api_ctx_t *ctx,
    PGconn **conn, ngx_segura_deploy_device_t *d);


static const char *const  ngx_segura_deploy_fields[] = {
    "devices", "via", NULL
};

static const char *const  ngx_segura_deploy_results[] = {
    "deployed", "withdrawn", "unchanged", "verify_failed", "auth_failed",
    "unreachable", "timeout", "host_key_mismatch", "host_key_unknown",
    "exec_failed", "error"
};

static const char *const  ngx_segura_deploy_checks[] = {
    "deployed", "refused", "unreachable", "timeout", "host_key_mismatch",
    "host_key_unknown", "error"
};

static const char  ngx_segura_deploy_add[] = NGX_SEGURA_DEPLOY_ADD_COMMAND;

static const char  ngx_segura_deploy_remove[] =
    NGX_SEGURA_DEPLOY_REMOVE_COMMAND;


/*
 * The first pass (pool thread).  params: $1 the caller, $2 't' for an
 * administrator, $3 the key.  Administrators only: this writes on
 * devices.
 */

void
ngx_segura_api_key_deploy(ngx_segura_api_ctx_t *ctx, PGconn **conn,
    int64_t id, const char *const *params, ngx_uint_t withdraw)
{
    char                 *want;
    json_t               *body;
    int64_t               via_key;
    PGresult             *res, *via;
    ngx_int_t             rc;
    const char           *p[1];
    ngx_segura_deploy_t  *dp;
    char                  password[NGX_SEGURA_DEPLOY_PASSWORD_LEN + 1];
    char                  vid[NGX_INT64_LEN + 1];

    if (ctx->method != NGX_HTTP_POST) {
        ngx_segura_api_fail(ctx, NGX_SEGURA_ERR_METHOD, NULL, NULL);
        return;
    }

    if (ngx_segura_api_need_admin(ctx) != NGX_OK) {
        return;
    }

    want = NULL;
    via = NULL;
    dp = NULL;
    password[0] = '\0';

    body = ngx_segura_api_parse(ctx, ngx_segura_deploy_fields);
    if (body == NULL) {
        return;
    }

    rc = ngx_segura_deploy_via(ctx, body, &via_key, password);

    if (rc == NGX_OK) {
        rc = ngx_segura_api_get_ids(ctx, body, "devices", &want);
        rc = (rc == NGX_ERROR) ? NGX_ERROR : NGX_OK;
    }

    /* jansson frees without wiping */

    ngx_segura_api_wipe_string(json_object_get(body, "via"), "password");
    json_decref(body);

    if (rc != NGX_OK) {
        goto done;
    }

    res = ngx_segura_api_query_retry(ctx, conn,
              "select k.username, k.private_key_enc, k.passphrase_enc,"
              " k.key_type, k.bits, k.public_key || ' segura-key-' || k.id"
              " from ssh_keys k where k.id = $1::bigint",
              1, &params[2]);

    if (ngx_segura_api_one(ctx, res) != NGX_OK) {
        goto done;
    }

    if (via_key != 0) {
        ngx_segura_api_id(via_key, vid);
        p[0] = vid;

        /* it logs in as the deployed key's username, not its own */

        via = ngx_segura_api_query_retry(ctx, conn,
                  "select null, k.private_key_enc, k.passphrase_enc,"
                  " k.key_type, k.bits"
                  " from ssh_keys k where k.id = $1::bigint", 1, p);

        if (via == NULL) {
            PQclear(res);
            goto done;
        }

        if (PQntuples(via) != 1) {
            PQclear(res);
            ngx_segura_api_fail(ctx, NGX_SEGURA_ERR_INVALID_FIELD, "via",
                                "No such key");
            goto done;
        }
    }

    rc = ngx_segura_deploy_devices(ctx, conn, params, want, withdraw, res,
                                   &dp);

    if (rc == NGX_OK && dp != NULL) {
        dp->withdraw = withdraw;
        dp->via_key = via_key;

        if (via_key == 0) {
            dp->has_password = 1;
            ngx_memcpy(dp->password, password, sizeof(password));

        } else {
            if (ngx_strcmp(PQgetvalue(via, 0, 3), "ssh-rsa") == 0
                && !PQgetisnull(via, 0, 4))
            {
                dp->via_rsa_bits = ngx_atoi((u_char *) PQgetvalue(via, 0, 4),
                                            ngx_strlen(PQgetvalue(via, 0, 4)));
            }

            rc = ngx_segura_deploy_keys(ctx, dp, via_key, via, 1);
        }

        if (rc == NGX_OK) {
            rc = ngx_segura_deploy_keys(ctx, dp, id, res, 0);
        }

        if (rc != NGX_OK) {
            ngx_segura_deploy_free(dp);

        } else {
            /* the event loop's turn; the connection goes back now */
            ctx->data = dp;
            ctx->next = ngx_segura_deploy_run;
        }
    }

    PQclear(res);

done:

    if (via != NULL) {
        PQclear(via);
    }

    OPENSSL_cleanse(password, sizeof(password));
    free(want);
}


/* "via": {"key": <id>} or {"password": "..."}, one of them */

static ngx_int_t
ngx_segura_deploy_via(ngx_segura_api_ctx_t *ctx, json_t *body,
    int64_t *via_key, char *password)
{
    json_t      *via, *k, *pw;
    size_t       len;
    const char  *s;

    *via_key = 0;

    via = json_object_get(body, "via");

    if (via == NULL || !json_is_object(via)) {
        goto invalid;
    }

    k = json_object_get(via, "key");
    pw = json_object_get(via, "password");

    if ((k == NULL) == (pw == NULL) || json_object_size(via) != 1) {
        goto invalid;
    }

    if (k != NULL) {
        if (!json_is_integer(k) || json_integer_value(k) <= 0) {
            ngx_segura_api_fail(ctx, NGX_SEGURA_ERR_INVALID_FIELD, "via",
                                "\"key\" must be a key id");
            return NGX_ERROR;
        }

        *via_key = json_integer_value(k);
        return NGX_OK;
    }

    if (!json_is_string(pw)) {
        goto invalid;
    }

    s = json_string_value(pw);
    len = json_string_length(pw);

    if (len == 0 || len > NGX_SEGURA_DEPLOY_PASSWORD_LEN
        || ngx_strlen(s) != len)
    {
        ngx_segura_api_fail(ctx, NGX_SEGURA_ERR_INVALID_FIELD, "via",
                            "\"password\" must be 1 to 1024 bytes, "
                            "without NUL");
        return NGX_ERROR;
    }

    ngx_memcpy(password, s, len + 1);

    return NGX_OK;

invalid:

    ngx_segura_api_fail(ctx, NGX_SEGURA_ERR_INVALID_FIELD, "via",
                        "Required: {\"key\": <id>} or "
                        "{\"password\": \"...\"}");
    return NGX_ERROR;
}


static ngx_int_t
ngx_segura_deploy_devices(ngx_segura_api_ctx_t *ctx, PGconn **conn,
    const char *const *params, const char *want, ngx_uint_t withdraw,
    PGresult *key, ngx_segura_deploy_t **out)
{
    int                          i, n;
    char                        *v;
    size_t                       len;
    PGresult                    *res;
    const char                  *p[2];
    ngx_segura_deploy_t         *dp;
    ngx_segura_deploy_device_t  *d;

    p[0] = params[2];
    p[1] = want;

    /* the key's devices: the ones asked for (each must be one), or all */

    res = ngx_segura_api_query_retry(ctx, conn,
              "with mine as (select d.id, d.address, d.port, d.host_key,"
              "  d.host_key_fingerprint, kd.is_main"
              "  from key_devices kd join devices d on d.id = kd.device_id"
              "  where kd.key_id = $1::bigint),"
              " want as (select distinct x::bigint as id"
              "  from jsonb_array_elements_text($2::jsonb) x)"
              " select m.id is not null, m.id, m.address, m.port,"
              "  m.host_key, m.host_key_fingerprint"
              " from want w left join mine m on m.id = w.id"
              " where $2::jsonb is not null"
              " union all"
              " select true, m.id, m.address, m.port, m.host_key,"
              "  m.host_key_fingerprint"
              " from (select * from mine order by is_main desc, id) m"
              " where $2::jsonb is null",
              2, p);

    if (res == NULL) {
        return NGX_ERROR;
    }

    n = PQntuples(res);

    for (i = 0; i < n; i++) {
        if (PQgetvalue(res, i, 0)[0] != 't') {
            PQclear(res);
            ngx_segura_api_fail(ctx, NGX_SEGURA_ERR_INVALID_FIELD, "devices",
                                "Not a device of this key");
            return NGX_ERROR;
        }
    }

    if (n > NGX_SEGURA_DEPLOY_MAX_DEVICES) {
        PQclear(res);
        ngx_segura_api_fail(ctx, NGX_SEGURA_ERR_INVALID_FIELD, "devices",
                            "At most 256 devices per call: name them");
        return NGX_ERROR;
    }

    if (n == 0) {
        PQclear(res);

        /* nothing to connect to: the answer is known, of the same shape */

        p[1] = withdraw ? "withdraw" : "deploy";

        return ngx_segura_api_query_json(ctx, conn, 200,
                   "select json_build_object('key', $1::bigint,"
                   " 'action', $2::text, 'total', 0, 'done', 0,"
                   " 'items', '[]'::json)",
                   2, p);
    }

    dp = calloc(1, sizeof(ngx_segura_deploy_t)
                   + (n - 1) * sizeof(ngx_segura_deploy_device_t));
    if (dp == NULL) {
        PQclear(res);
        ngx_segura_api_fail(ctx, NGX_SEGURA_ERR_INTERNAL, NULL, NULL);
        return NGX_ERROR;
    }

    dp->key_id = ngx_atoof((u_char *) params[2], ngx_strlen(params[2]));
    dp->n = n;

    (void) ngx_cpystrn((u_char *) dp->username,
                       (u_char *) PQgetvalue(key, 0, 0),
                       sizeof(dp->username));

    if (ngx_strcmp(PQgetvalue(key, 0, 3), "ssh-rsa") == 0
        && !PQgetisnull(key, 0, 4))
    {
        dp->rsa_bits = ngx_atoi((u_char *) PQgetvalue(key, 0, 4),
                                ngx_strlen(PQgetvalue(key, 0, 4)));
    }

    /* the line, and the newline that ends it on stdin */

    len = ngx_strlen(PQgetvalue(key, 0, 5));
    if (len >= sizeof(dp->line) - 1) {
        len = 0;
    }

    ngx_memcpy(dp->line, PQgetvalue(key, 0, 5), len);
    dp->line[len] = '\n';
    dp->line_len = len + 1;

    for (i = 0; i < n; i++) {
        d = &dp->devices[i];
        d->dp = dp;
        d->check = NGX_SEGURA_DEPLOY_CHECK_NONE;
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

            v = ngx_strchr(d->pinned, ' ');
            if (v != NULL && (size_t) (v - d->pinned) < sizeof(d->pinned_type))
            {
                ngx_memcpy(d->pinned_type, d->pinned, v - d->pinned);
            }
        }

        d->ssh.fd = (ngx_socket_t) -1;
        d->vssh.fd = (ngx_socket_t) -1;
    }

    PQclear(res);

    *out = dp;

    return NGX_OK;
}


/*
 * A private key, opened and imported once per device: via, for the edit
 * (ssh.key), or the key itself, for the verify (vssh.key)
 */

static ngx_int_t
ngx_segura_deploy_keys(ngx_segura_api_ctx_t *ctx, ngx_segura_deploy_t *dp,
    int64_t id, PGresult *key, ngx_uint_t via)
{
    int          rc;
    char        *b64;
    size_t       klen;
    ssh_key      first;
    ngx_uint_t   i;

    first = NULL;

    if (ngx_segura_sealed_key(ctx->smcf, id, PQgetvalue(key, 0, 1),
                              PQgetisnull(key, 0, 2) ? NULL
                                                     : PQgetvalue(key, 0, 2),
                              &first, ctx->log, sizeof(ctx->log))
        != NGX_OK)
    {
        ngx_segura_api_fail(ctx, NGX_SEGURA_ERR_INTERNAL, NULL,
                            via ? "The \"via\" key cannot be used"
                                : "The key cannot be used");
        ctx->log_level = NGX_LOG_ERR;
        return NGX_ERROR;
    }

    if (via) {
        dp->devices[0].ssh.key = first;

    } else {
        dp->devices[0].vssh.key = first;
    }

    if (dp->n == 1) {
        return NGX_OK;
    }

    b64 = NULL;

    if (ssh_pki_export_privkey_base64(first, NULL, NULL, NULL, &b64)
        != SSH_OK)
    {
        goto unusable;
    }

    klen = ngx_strlen(b64);
    rc = 0;

    for (i = 1; i < dp->n && rc == 0; i++) {
        rc = ngx_segura_sshkey_import(b64, klen, NULL,
                                      via ? &dp->devices[i].ssh.key
                                          : &dp->devices[i].vssh.key,
                                      NULL);
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
                        "key %L cannot be imported for a deploy%Z", id);
    return NGX_ERROR;
}


/* either thread, whoever owns it; the keys left and the password wiped */

static void
ngx_segura_deploy_free(ngx_segura_deploy_t *dp)
{
    ngx_uint_t  i;

    for (i = 0; i < dp->n; i++) {
        ngx_segura_ssh_close(&dp->devices[i].ssh);
        ngx_segura_ssh_close(&dp->devices[i].vssh);
    }

    OPENSSL_cleanse(dp->password, sizeof(dp->password));

    free(dp);
}


static void
ngx_segura_deploy_cleanup(void *data)
{
    ngx_segura_deploy_t *dp = data;

    ngx_uint_t  i;

    for (i = 0; i < dp->n; i++) {
        if (ngx_segura_connect_busy(&dp->devices[i].cn)
            || ngx_segura_connect_busy(&dp->devices[i].vcn))
        {
            ngx_log_error(NGX_LOG_ALERT, dp->r->connection->log, 0,
                          "segura deploy: freed while device %L is busy",
                          dp->devices[i].device_id);
        }
    }

    ngx_segura_deploy_free(dp);
}


/* the event-loop pass: every device, a bounded number at a time */

static void
ngx_segura_deploy_run(ngx_http_request_t *r, ngx_segura_api_ctx_t *ctx)
{
    ngx_pool_cleanup_t          *cln;
    ngx_segura_deploy_t         *dp;
    ngx_http_segura_loc_conf_t  *slcf;

    dp = ctx->data;
    dp->r = r;
    dp->ctx = ctx;

    cln = ngx_pool_cleanup_add(r->pool, 0);
    if (cln == NULL) {
        ctx->data = NULL;
        ngx_segura_deploy_free(dp);
        ngx_segura_api_fail(ctx, NGX_SEGURA_ERR_INTERNAL, NULL, NULL);
        ngx_segura_api_finish(r, ctx);
        return;
    }

    cln->handler = ngx_segura_deploy_cleanup;
    cln->data = dp;

    if (r->connection->error) {
        /* the client left: nothing is changed on any device */
        ngx_segura_api_finish(r, ctx);
        return;
    }

    slcf = ngx_http_get_module_loc_conf(r, ngx_http_segura_module);

    dp->policy = slcf->host_key_policy;
    dp->started = ngx_current_msec;

    ngx_segura_deploy_more(dp);
}


static void
ngx_segura_deploy_more(ngx_segura_deploy_t *dp)
{
    if (dp->starting) {
        return;
    }

    dp->starting = 1;

    while (dp->next < dp->n && dp->running < NGX_SEGURA_DEPLOY_CONCURRENCY) {
        dp->running++;
        ngx_segura_deploy_start(&dp->devices[dp->next++]);
    }

    dp->starting = 0;

    if (dp->finished == dp->n && !dp->stored) {
        dp->stored = 1;

        /* every device has used it */
        OPENSSL_cleanse(dp->password, sizeof(dp->password));

        ngx_log_debug2(NGX_LOG_DEBUG_HTTP, dp->r->connection->log, 0,
                       "segura deploy: key %L, devices done in %M ms",
                       dp->key_id, ngx_current_msec - dp->started);

        ngx_segura_api_resume(dp->r, dp->ctx, ngx_segura_deploy_store);
    }
}


static void
ngx_segura_deploy_setup(ngx_segura_deploy_device_t *d,
    ngx_segura_connect_t *cn, ngx_segura_ssh_t *ssh)
{
    ngx_http_request_t           *r;
    ngx_http_core_loc_conf_t     *clcf;
    ngx_http_segura_loc_conf_t   *slcf;
    ngx_http_segura_main_conf_t  *smcf;

    r = d->dp->r;

    clcf = ngx_http_get_module_loc_conf(r, ngx_http_core_module);
    slcf = ngx_http_get_module_loc_conf(r, ngx_http_segura_module);
    smcf = ngx_http_get_module_main_conf(r, ngx_http_segura_module);

    ssh->username = d->dp->username;
    ssh->pinned_type = d->pinned_type[0] ? d->pinned_type : NULL;

    cn->host.data = (u_char *) d->address;
    cn->host.len = ngx_strlen(d->address);
    cn->port = d->port;
    cn->timeout = slcf->connect_timeout;
    cn->resolver = clcf->resolver;
    cn->resolver_timeout = clcf->resolver_timeout;
    cn->thread_pool = smcf->thread_pool;
    cn->log = &d->log;
    cn->pool = r->pool;
    cn->ssh = ssh;
    cn->host_key = ngx_segura_deploy_host_key;
    cn->data = d;
}


/* the edit: log in with via, run the program */

static void
ngx_segura_deploy_start(ngx_segura_deploy_device_t *d)
{
    ngx_segura_deploy_t  *dp;

    dp = d->dp;

    d->log = *dp->r->connection->log;
    d->log.action = NULL;

    ngx_segura_deploy_setup(d, &d->cn, &d->ssh);

    if (dp->has_password) {
        d->ssh.password = dp->password;

    } else {
        d->ssh.rsa_bits = dp->via_rsa_bits;
    }

    d->ex.command = dp->withdraw ? ngx_segura_deploy_remove
                                 : ngx_segura_deploy_add;
    d->ex.input = dp->line;
    d->ex.input_len = dp->line_len;

    d->cn.exec = &d->ex;
    d->cn.done = ngx_segura_deploy_edited;

    ngx_segura_connect_start(&d->cn);
}


static ngx_int_t
ngx_segura_deploy_host_key(ngx_segura_connect_t *cn)
{
    ngx_segura_deploy_device_t *d = cn->data;

    switch (ngx_segura_ssh_host_key(cn->ssh, d->pinned_fp,
                                    d->dp->policy
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
     * trust on first use, pinned by the last pass; the verify's
     * connection must then present the same key
     */

    d->pin = 1;
    (void) ngx_cpystrn((u_char *) d->pinned_fp, (u_char *) cn->ssh->host_key_fp,
                       sizeof(d->pinned_fp));

    return NGX_OK;
}


static void
ngx_segura_deploy_edited(ngx_segura_connect_t *cn)
{
    ngx_segura_deploy_device_t *d = cn->data;

    size_t                len;
    const char           *word;
    ngx_segura_deploy_t  *dp;

    dp = d->dp;

    switch (d->ssh.err) {

    case NGX_SEGURA_WS_ERR_NONE:
        if (!cn->executed) {
            /* an abort without a device error (the worker exits) */
            d->result = NGX_SEGURA_DEPLOY_ERROR;
            ngx_segura_deploy_end(d);
            return;
        }

        break;

    case NGX_SEGURA_WS_ERR_AUTH_REJECTED:
        d->result = NGX_SEGURA_DEPLOY_AUTH_FAILED;
        break;

    case NGX_SEGURA_WS_ERR_DEVICE_UNREACHABLE:
        d->result = NGX_SEGURA_DEPLOY_UNREACHABLE;
        break;

    case NGX_SEGURA_WS_ERR_CONNECT_TIMEOUT:
        d->result = NGX_SEGURA_DEPLOY_TIMEOUT;
        break;

    case NGX_SEGURA_WS_ERR_HOST_KEY_MISMATCH:
        d->result = NGX_SEGURA_DEPLOY_HOST_KEY_MISMATCH;
        break;

    case NGX_SEGURA_WS_ERR_HOST_KEY_UNKNOWN:
        d->result = NGX_SEGURA_DEPLOY_HOST_KEY_UNKNOWN;
        break;

    case NGX_SEGURA_WS_ERR_SHELL_FAILED:
        d->result = NGX_SEGURA_DEPLOY_EXEC_FAILED;
        break;

    default:
        d->result = NGX_SEGURA_DEPLOY_ERROR;
        break;
    }

    if (d->ssh.err != NGX_SEGURA_WS_ERR_NONE) {
        ngx_segura_deploy_text(d->detail, sizeof(d->detail), d->ssh.text);
        ngx_segura_deploy_end(d);
        return;
    }

    /* the program's one word, or its complaint */

    word = d->ex.out;
    len = ngx_strlen(word);

    while (len > 0 && (word[len - 1] == '\n' || word[len - 1] == '\r')) {
        len--;
    }

    if (d->ex.status == 0 && dp->withdraw
        && ngx_segura_deploy_word(word, len, "withdrawn"))
    {
        d->result = NGX_SEGURA_DEPLOY_WITHDRAWN;

    } else if (d->ex.status == 0 && !dp->withdraw
               && ngx_segura_deploy_word(word, len, "deployed"))
    {
        d->result = NGX_SEGURA_DEPLOY_DEPLOYED;

    } else if (d->ex.status == 0
               && ngx_segura_deploy_word(word, len, "unchanged"))
    {
        d->result = NGX_SEGURA_DEPLOY_UNCHANGED;

    } else {
        d->result = NGX_SEGURA_DEPLOY_EXEC_FAILED;

        if (d->ex.err_len > 0) {
            ngx_segura_deploy_text(d->detail, sizeof(d->detail), d->ex.err);

        } else {
            (void) ngx_snprintf((u_char *) d->detail, sizeof(d->detail) - 1,
                                "the command ended with status %d%Z",
                                d->ex.status);
        }

        ngx_segura_deploy_end(d);
        return;
    }

    /* verify: the check's probe, with the key itself */

    ngx_segura_deploy_setup(d, &d->vcn, &d->vssh);

    d->vssh.rsa_bits = dp->rsa_bits;
    d->vcn.auth_only = 1;
    d->vcn.done = ngx_segura_deploy_verified;

    ngx_segura_connect_start(&d->vcn);
}


static void
ngx_segura_deploy_verified(ngx_segura_connect_t *cn)
{
    ngx_segura_deploy_device_t *d = cn->data;

    ngx_uint_t  ok;

    switch (d->vssh.err) {

    case NGX_SEGURA_WS_ERR_NONE:
        d->check = cn->authenticated ? NGX_SEGURA_DEPLOY_CHECK_DEPLOYED
                                     : NGX_SEGURA_DEPLOY_CHECK_ERROR;
        break;

    case NGX_SEGURA_WS_ERR_AUTH_REJECTED:
        d->check = NGX_SEGURA_DEPLOY_CHECK_REFUSED;
        break;

    case NGX_SEGURA_WS_ERR_DEVICE_UNREACHABLE:
        d->check = NGX_SEGURA_DEPLOY_CHECK_UNREACHABLE;
        break;

    case NGX_SEGURA_WS_ERR_CONNECT_TIMEOUT:
        d->check = NGX_SEGURA_DEPLOY_CHECK_TIMEOUT;
        break;

    case NGX_SEGURA_WS_ERR_HOST_KEY_MISMATCH:
        d->check = NGX_SEGURA_DEPLOY_CHECK_HOST_KEY_MISMATCH;
        break;

    case NGX_SEGURA_WS_ERR_HOST_KEY_UNKNOWN:
        d->check = NGX_SEGURA_DEPLOY_CHECK_HOST_KEY_UNKNOWN;
        break;

    default:
        d->check = NGX_SEGURA_DEPLOY_CHECK_ERROR;
        break;
    }

    ok = d->dp->withdraw ? (d->check == NGX_SEGURA_DEPLOY_CHECK_REFUSED)
                         : (d->check == NGX_SEGURA_DEPLOY_CHECK_DEPLOYED);

    if (!ok) {
        d->result = NGX_SEGURA_DEPLOY_VERIFY_FAILED;

        if (d->vssh.text[0]) {
            ngx_segura_deploy_text(d->detail, sizeof(d->detail),
                                   d->vssh.text);

        } else {
            (void) ngx_snprintf((u_char *) d->detail, sizeof(d->detail) - 1,
                                "the file was changed, but the device "
                                "still accepts the key%Z");
        }
    }

    ngx_segura_deploy_end(d);
}


static void
ngx_segura_deploy_end(ngx_segura_deploy_device_t *d)
{
    ngx_uint_t            level;
    ngx_segura_deploy_t  *dp;

    dp = d->dp;

    level = (d->result == NGX_SEGURA_DEPLOY_ERROR) ? NGX_LOG_ERR
                                                   : NGX_LOG_INFO;

    ngx_log_error(level, &d->log, 0,
                  "segura %s: key %L on device %L: %s (check %s)%s%s",
                  dp->withdraw ? "withdraw" : "deploy", dp->key_id,
                  d->device_id, ngx_segura_deploy_results[d->result],
                  d->check == NGX_SEGURA_DEPLOY_CHECK_NONE
                  ? "not run" : ngx_segura_deploy_checks[d->check],
                  d->detail[0] ? ", " : "", d->detail);

    /* the copies of the keys left, if a set-up ended before using them */

    ngx_segura_ssh_close(&d->ssh);
    ngx_segura_ssh_close(&d->vssh);
    d->ssh.password = NULL;

    dp->running--;
    dp->finished++;

    ngx_segura_deploy_more(dp);
}


static ngx_uint_t
ngx_segura_deploy_word(const char *word, size_t len, const char *want)
{
    return len == ngx_strlen(want) && ngx_strncmp(word, want, len) == 0;
}


/* a text for a person, into JSON: printable ASCII only */

static void
ngx_segura_deploy_text(char *dst, size_t len, const char *src)
{
    size_t  i;

    for (i = 0; i < len - 1 && src[i] != '\0'; i++) {
        dst[i] = (src[i] < 0x20 || src[i] > 0x7e) ? ' ' : src[i];
    }

    while (i > 0 && dst[i - 1] == ' ') {
        i--;
    }

    dst[i] = '\0';
}


/* the last pass (pool thread): pins, checks, audit, answer */

static void
ngx_segura_deploy_store(ngx_segura_api_ctx_t *ctx, PGconn **conn)
{
    char                        *rows;
    json_t                      *all, *audit, *one, *list;
    PGresult                    *res;
    ngx_uint_t                   i, done;
    const char                  *params[4];
    ngx_segura_deploy_t         *dp;
    ngx_segura_deploy_device_t  *d;
    char                         idbuf[NGX_INT64_LEN + 1];
    char                         me[NGX_INT64_LEN + 1];

    dp = ctx->data;

    ngx_segura_api_id(dp->key_id, idbuf);
    ngx_segura_api_id(ctx->me.id, me);

    rows = NULL;
    audit = NULL;

    all = json_array();
    list = json_array();

    if (all == NULL || list == NULL) {
        ngx_segura_api_fail(ctx, NGX_SEGURA_ERR_INTERNAL, NULL, NULL);
        goto failed;
    }

    if (ngx_segura_api_begin(ctx, conn) != NGX_OK) {
        goto failed;
    }

    done = 0;

    for (i = 0; i < dp->n; i++) {
        d = &dp->devices[i];

        if (d->pin && ngx_segura_deploy_pin(ctx, conn, d) != NGX_OK) {
            goto end;
        }

        if (d->result <= NGX_SEGURA_DEPLOY_UNCHANGED) {
            done++;
        }

        one = json_pack("{sIssss?ss}", "device", (json_int_t) d->device_id,
                        "result", ngx_segura_deploy_results[d->result],
                        "check", d->check == NGX_SEGURA_DEPLOY_CHECK_NONE
                                 ? NULL : ngx_segura_deploy_checks[d->check],
                        "detail", d->detail);
        if (one == NULL
            || json_array_append(all, one) != 0
            || json_array_append_new(list, one) != 0)
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

    /* the verify's result is the key's check on that device */

    res = ngx_segura_api_query(ctx, conn,
              "insert into key_checks (key_id, device_id, result, detail,"
              " checked_by)"
              " select $1::bigint, (e->>'device')::bigint, e->>'check',"
              " case when e->>'result' = 'verify_failed'"
              "  then left(e->>'detail', 512) else '' end, $2::bigint"
              " from jsonb_array_elements($3::jsonb) e"
              " where e->>'check' is not null"
              " and exists (select 1 from ssh_keys where id = $1::bigint)"
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

    /*
     * a device that now accepts the current key uses it, whatever older
     * version a rotation left it on (versions nobody uses then go)
     */

    if (!dp->withdraw) {
        const char  *q[2];

        q[0] = idbuf;
        q[1] = rows;

        res = ngx_segura_api_query(ctx, conn,
                  "with cur as (update key_devices set key_version = null"
                  "  where key_id = $1::bigint and key_version is not null"
                  "  and device_id in (select (e->>'device')::bigint"
                  "   from jsonb_array_elements($2::jsonb) e"
                  "   where e->>'check' = 'deployed')"
                  "  returning device_id)"
                  " delete from ssh_key_versions v where v.key_id = $1::bigint"
                  " and not exists (select 1 from key_devices kd"
                  "  where kd.key_id = v.key_id and kd.key_version = v.version"
                  "  and kd.device_id not in (select device_id from cur))",
                  2, q);
        if (res == NULL) {
            goto end;
        }

        PQclear(res);
    }

    /* who, which devices, what happened, how: never the password */

    audit = json_pack("{sOsIsIss}", "devices", list,
                      "done", (json_int_t) done,
                      "total", (json_int_t) dp->n,
                      "via", dp->has_password ? "password" : "key");
    if (audit == NULL
        || (!dp->has_password
            && json_object_set_new(audit, "via_key",
                                   json_integer(dp->via_key)) != 0))
    {
        ngx_segura_api_fail(ctx, NGX_SEGURA_ERR_INTERNAL, NULL, NULL);
        goto end;
    }

    if (ngx_segura_api_audit(ctx, conn, dp->withdraw ? "withdraw" : "deploy",
                             "ssh_key", idbuf, audit)
        != NGX_OK)
    {
        goto end;
    }

    params[1] = rows;
    params[2] = dp->withdraw ? "withdraw" : "deploy";

    (void) ngx_segura_api_query_json(ctx, conn, 200,
               "select json_build_object('key', $1::bigint,"
               " 'action', $3::text, 'total', count(*),"
               " 'done', count(*) filter (where e.x->>'result' in"
               "  ('deployed', 'withdrawn', 'unchanged')),"
               " 'items', coalesce(json_agg(json_build_object("
               "   'device', (e.x->>'device')::bigint, 'name', d.name,"
               "   'address', d.address, 'port', d.port,"
               "   'result', e.x->>'result', 'check', e.x->>'check',"
               "   'detail', e.x->>'detail', 'checked_at', c.checked_at)"
               "  order by e.n), '[]'))"
               " from jsonb_array_elements($2::jsonb) with ordinality"
               "  e(x, n)"
               " left join devices d on d.id = (e.x->>'device')::bigint"
               " left join key_checks c on c.key_id = $1::bigint"
               "  and c.device_id = d.id and e.x->>'check' is not null",
               3, params);

end:

    ngx_segura_api_end(ctx, conn);

failed:

    free(rows);
    json_decref(audit);
    json_decref(all);
    json_decref(list);
}


static ngx_int_t
ngx_segura_deploy_pin(ngx_segura_api_ctx_t *ctx, PGconn **conn,
    ngx_segura_deploy_device_t *d)
{
    PGresult    *res;
    const char  *params[3];
    char         dev[NGX_INT64_LEN + 1];

    /* as a check pins (ngx_segura_api_keys_check.c) */

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
        /*
         * pinned by someone else meanwhile, and not this key: whatever
         * the device said, it was not the device the pin names
         */
        d->result = NGX_SEGURA_DEPLOY_HOST_KEY_MISMATCH;
        d->check = NGX_SEGURA_DEPLOY_CHECK_HOST_KEY_MISMATCH;
        (void) ngx_snprintf((u_char *) d->detail, sizeof(d->detail) - 1,
                            "host key %s does not match the one pinned "
                            "meanwhile%Z", d->ssh.host_key_fp);
    }

    PQclear(res);

    return NGX_OK;
}
