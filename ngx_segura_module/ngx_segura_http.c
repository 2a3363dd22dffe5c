
/*
 * Copyright (C) ngx_segura_module authors
 */


/*
 * The ground floor of the module: the tables of the errors that reach a
 * client (HTTP API errors, and the WebSocket error events with their close
 * codes), the writers of HTTP errors and JSON responses that both the API
 * and the /session handshake use, and the lookup of master keys.  It
 * depends on nothing of the module but ngx_segura.h.  Event loop only,
 * but for the master key lookup, which reads configuration only and may
 * be called from either thread.
 */


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>
#include "ngx_segura.h"

#include <jansson.h>


static char *ngx_http_segura_error_json(ngx_segura_err_e err,
    const char *field, const char *message, const char *reason);


ngx_segura_err_t  ngx_segura_errors[] = {
    { 200, ngx_string("ok"), ngx_string("OK") },
    { 400, ngx_string("bad_request"), ngx_string("Bad request") },
    { 400, ngx_string("invalid_json"),
      ngx_string("The request body is not valid JSON") },
    { 422, ngx_string("invalid_field"), ngx_string("Invalid field") },
    { 401, ngx_string("unauthenticated"),
      ngx_string("Log in first") },
    { 403, ngx_string("forbidden"), ngx_string("Not allowed") },
    { 403, ngx_string("foreign_origin"),
      ngx_string("The request came from a foreign origin") },
    { 404, ngx_string("not_found"), ngx_string("Not found") },
    { 405, ngx_string("method_not_allowed"),
      ngx_string("Method not allowed") },
    { 409, ngx_string("conflict"), ngx_string("The name is already taken") },
    { 409, ngx_string("already_ended"),
      ngx_string("The session has already ended") },
    { 413, ngx_string("too_large"),
      ngx_string("The request body is too large") },
    { 414, ngx_string("uri_too_long"),
      ngx_string("The request URI is too long") },
    { 415, ngx_string("unsupported_media_type"),
      ngx_string("Send Content-Type: application/json") },
    { 429, ngx_string("too_many_attempts"),
      ngx_string("Too many attempts, try again later") },
    { 503, ngx_string("database_unavailable"),
      ngx_string("The database is unavailable") },
    { 503, ngx_string("busy"),
      ngx_string("Too many logins at once, try again in a moment") },
    { 500, ngx_string("internal_error"), ngx_string("Internal error") },
    { 501, ngx_string("not_available"),
      ngx_string("Not available in this build") },
    { 0, ngx_null_string, ngx_null_string }
};


ngx_segura_ws_error_t  ngx_segura_ws_errors[] = {
    { ngx_null_string, 1000, NULL },
    { ngx_string("device_unreachable"), 4001,
      "The device cannot be reached" },
    { ngx_string("connect_timeout"), 4002,
      "The device did not answer in time" },
    { ngx_string("host_key_mismatch"), 4003,
      "The device presented a host key other than the pinned one" },
    { ngx_string("host_key_unknown"), 4004,
      "The device has no pinned host key and the policy is strict" },
    { ngx_string("auth_rejected"), 4005,
      "The device refused the key: is the public key deployed?" },
    { ngx_string("key_unusable"), 4006,
      "The stored key cannot be used" },
    { ngx_string("shell_failed"), 4007,
      "The device refused to open a terminal" },
    { ngx_string("session_terminated"), 4008,
      "The connection to the device was lost" },
    { ngx_string("idle_timeout"), 4009,
      "The session was idle for too long" },
    { ngx_string("database_unavailable"), 4010,
      "The database is unavailable" },
    { ngx_string("internal_error"), 4011, "Internal error" },
    { ngx_string("bad_message"), 4012,
      "The message is not a valid control message" },
    { ngx_string("session_ended"), 4013,
      "An administrator ended the session" },
    { ngx_string("access_revoked"), 4014,
      "Access to this device with this key was revoked" },
    { ngx_string("resumed_elsewhere"), 4015,
      "The session was resumed by another connection" },
    { ngx_string("read_only"), 4020,
      "A watcher can only watch: it sends acknowledgements and pings" },
    { ngx_null_string, 0, NULL }
};


ngx_segura_master_key_t *
ngx_http_segura_current_key(ngx_http_segura_main_conf_t *smcf)
{
    /* the first key listed encrypts; the others only decrypt */

    return smcf->keys.elts;
}


ngx_segura_master_key_t *
ngx_http_segura_find_key(ngx_http_segura_main_conf_t *smcf, ngx_uint_t id)
{
    ngx_uint_t                i;
    ngx_segura_master_key_t  *key;

    key = smcf->keys.elts;

    for (i = 0; i < smcf->keys.nelts; i++) {
        if (key[i].id == id) {
            return &key[i];
        }
    }

    return NULL;
}


ngx_int_t
ngx_http_segura_send_error(ngx_http_request_t *r, ngx_segura_err_e err,
    const char *field, const char *message)
{
    return ngx_http_segura_send_error_reason(r, err, field, message, NULL);
}


ngx_int_t
ngx_http_segura_send_error_reason(ngx_http_request_t *r,
    ngx_segura_err_e err, const char *field, const char *message,
    const char *reason)
{
    char              *body;
    ngx_int_t          rc;
    ngx_segura_err_t  *se;

    se = &ngx_segura_errors[err];

    body = ngx_http_segura_error_json(err, field, message, reason);
    if (body == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    rc = ngx_http_segura_send_json(r, se->status, (u_char *) body,
                                   ngx_strlen(body));

    free(body);

    return rc;
}


u_char *
ngx_http_segura_error_body(ngx_pool_t *pool, ngx_segura_err_e err,
    const char *message, size_t *len)
{
    char    *body;
    u_char  *p;
    size_t   n;

    /* the error object with its newline, in pool memory */

    body = ngx_http_segura_error_json(err, NULL, message, NULL);
    if (body == NULL) {
        return NULL;
    }

    n = ngx_strlen(body);

    p = ngx_pnalloc(pool, n + 1);

    if (p != NULL) {
        ngx_memcpy(p, body, n);
        p[n] = '\n';
        *len = n + 1;
    }

    free(body);

    return p;
}


static char *
ngx_http_segura_error_json(ngx_segura_err_e err, const char *field,
    const char *message, const char *reason)
{
    char              *body;
    json_t            *json, *e;
    ngx_segura_err_t  *se;

    /* {"error":{"code","message"[,"field"][,"reason"]}}, malloc()ed */

    se = &ngx_segura_errors[err];

    e = json_object();
    json = json_object();

    if (e == NULL || json == NULL) {
        json_decref(e);
        json_decref(json);
        return NULL;
    }

    json_object_set_new(e, "code",
                        json_stringn((char *) se->code.data, se->code.len));

    if (message != NULL) {
        json_object_set_new(e, "message", json_string(message));

    } else {
        json_object_set_new(e, "message",
                            json_stringn((char *) se->message.data,
                                         se->message.len));
    }

    if (field != NULL) {
        json_object_set_new(e, "field", json_string(field));
    }

    if (reason != NULL) {
        json_object_set_new(e, "reason", json_string(reason));
    }

    json_object_set_new(json, "error", e);

    body = json_dumps(json, JSON_COMPACT);
    json_decref(json);

    return body;
}


ngx_int_t
ngx_http_segura_send_json(ngx_http_request_t *r, ngx_uint_t status,
    u_char *json, size_t len)
{
    /* a JSON body ends with a newline */

    return ngx_http_segura_send_body(r, status, "application/json", json,
                                     len, 1);
}


ngx_int_t
ngx_http_segura_send_body(ngx_http_request_t *r, ngx_uint_t status,
    const char *type, u_char *body, size_t len, ngx_uint_t newline)
{
    ngx_int_t     rc;
    ngx_buf_t    *b;
    ngx_chain_t   out;

    if (ngx_http_discard_request_body(r) != NGX_OK) {
        r->keepalive = 0;
    }

    newline = newline ? 1 : 0;

    r->headers_out.status = status;
    r->headers_out.content_length_n = len + newline;
    r->headers_out.content_type.data = (u_char *) type;
    r->headers_out.content_type.len = ngx_strlen(type);
    r->headers_out.content_type_len = r->headers_out.content_type.len;
    r->headers_out.content_type_lowcase = NULL;

    /* responses carry per-user data: never cached, never sniffed */

    if (ngx_http_segura_add_header(r, "Cache-Control", "no-store") != NGX_OK
        || ngx_http_segura_add_header(r, "X-Content-Type-Options", "nosniff")
           != NGX_OK)
    {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    b = ngx_create_temp_buf(r->pool, len + newline);
    if (b == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    b->last = ngx_cpymem(b->last, body, len);

    if (newline) {
        *b->last++ = '\n';
    }
    b->last_buf = (r == r->main) ? 1 : 0;
    b->last_in_chain = 1;

    rc = ngx_http_send_header(r);

    if (rc == NGX_ERROR || rc > NGX_OK || r->header_only) {
        return rc;
    }

    out.buf = b;
    out.next = NULL;

    return ngx_http_output_filter(r, &out);
}


ngx_int_t
ngx_http_segura_add_header(ngx_http_request_t *r, const char *name,
    const char *value)
{
    ngx_table_elt_t  *h;

    h = ngx_list_push(&r->headers_out.headers);
    if (h == NULL) {
        return NGX_ERROR;
    }

    h->hash = 1;
#if (nginx_version >= 1023000)
    h->next = NULL;
#endif
    h->key.data = (u_char *) name;
    h->key.len = ngx_strlen(name);
    h->value.data = (u_char *) value;
    h->value.len = ngx_strlen(value);

    return NGX_OK;
}


/* a NUL-terminated copy, for libpq and libssh */

char *
ngx_http_segura_cstr(ngx_pool_t *pool, ngx_str_t *s)
{
    u_char  *p;

    p = ngx_pnalloc(pool, s->len + 1);
    if (p == NULL) {
        return NULL;
    }

    ngx_memcpy(p, s->data, s->len);
    p[s->len] = '\0';

    return (char *) p;
}
