
/*
 * Copyright (C) ngx_segura_module authors
 */


#ifndef _NGX_SEGURA_API_H_INCLUDED_
#define _NGX_SEGURA_API_H_INCLUDED_


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>
#include "ngx_segura.h"
#include "ngx_segura_auth.h"

#include <libpq-fe.h>
#include <jansson.h>


#define NGX_SEGURA_TOKEN_LEN       32
#define NGX_SEGURA_COOKIE_NAME     "segura_session"
#define NGX_SEGURA_ERRLEN          256
#define NGX_SEGURA_FIELDLEN        64

/*
 * may the caller see the device whose id is the SQL expression col: an
 * administrator, or a member of a group the device is granted to.  $1 is
 * the caller's id, $2 't' for an administrator.  Every answer that names
 * a device (its list and item, a key's devices, the Remote Access report)
 * uses this one condition.
 */
#define NGX_SEGURA_API_DEVICE_GRANTED(col)                                   \
    " ($2::bool or exists (select 1 from group_devices gd"                   \
    "   join group_members m on m.group_id = gd.group_id"                    \
    "   where gd.device_id = " col " and m.user_id = $1::bigint))"

/* ngx_segura_api_get_*() results besides NGX_OK and NGX_ERROR */
#define NGX_SEGURA_API_ABSENT      NGX_DECLINED


typedef struct ngx_segura_api_ctx_s  ngx_segura_api_ctx_t;

/*
 * A request that talks to devices (POST /api/keys/{id}/check) runs in
 * passes: its pool task sets ctx->next (and hands it ctx->data), and the
 * completion handler calls next on the event loop instead of answering,
 * even if the client has gone (next looks at r->connection->error and
 * owns ctx->data from then on).  next does the device I/O there and
 * either posts another pool pass with ngx_segura_api_resume() (ctx->step
 * runs in place of the route, with a connection of its own) or answers
 * with ngx_segura_api_finish().  The request stays blocked from the first
 * post to the answer.
 */
typedef void (*ngx_segura_api_next_pt)(ngx_http_request_t *r,
    ngx_segura_api_ctx_t *ctx);
typedef void (*ngx_segura_api_step_pt)(ngx_segura_api_ctx_t *ctx,
    PGconn **conn);


/*
 * The context of one API request.  The event loop fills the "in" part
 * and posts the task; the pool thread reads "in", writes "out" and
 * touches nothing else; the completion handler on the event loop logs,
 * sets headers and sends the response.
 */

struct ngx_segura_api_ctx_s {
    /* in */
    ngx_http_segura_main_conf_t  *smcf;
    ngx_uint_t                    method;
    char                         *path;        /* after "/api/", NUL-ended */
    char                         *args;        /* raw query, NUL-ended */
    char                         *body;        /* NUL-ended, may be NULL */
    size_t                        body_len;
    char                         *delegated;   /* segura_user, or NULL */
    char                         *client_addr;
    char                         *user_agent;
    ngx_msec_t                    login_lifetime;
    ngx_msec_t                    login_idle;
    ngx_msec_t                    login_address_window;
    ngx_uint_t                    login_address_limit;
    u_char                        token[NGX_SEGURA_TOKEN_LEN];
    unsigned                      has_token:1;
    unsigned                      secure:1;
    unsigned                      recording_self:1;  /* ngx_segura_audit.h */

    /* out */
    ngx_uint_t                    status;
    char                         *json;        /* malloc()ed, or NULL */
    size_t                        json_len;    /* 0: a C string */
    const char                   *content_type;  /* static; NULL: JSON */
    ngx_segura_err_e              err;
    const char                   *field;       /* static string or NULL */
    char                          message[NGX_SEGURA_ERRLEN];
    ngx_uint_t                    log_level;   /* 0: nothing to log */
    char                          log[NGX_SEGURA_ERRLEN];
    u_char                        new_token[NGX_SEGURA_TOKEN_LEN];
    ngx_uint_t                    retry_after;  /* seconds, 0: none */
    unsigned                      set_cookie:1;
    unsigned                      argon2:1;     /* a password was verified */
    unsigned                      login_gated:1;  /* holds a login slot */
    unsigned                      login_address_refused:1;  /* 429: the
                                                  address budget */
    unsigned                      clear_cookie:1;

    /* the task's own state */
    ngx_segura_identity_t         me;
    char                          field_buf[NGX_SEGURA_FIELDLEN];

    /* passes (see above); data is the handler's, malloc()ed */
    ngx_thread_task_t            *task;
    ngx_segura_api_next_pt        next;
    ngx_segura_api_step_pt        step;
    void                         *data;

    /*
     * the event loop's: set while a task is in the pool, not cancelable,
     * so that an exiting worker (a reload) waits for the answer
     */
    ngx_event_t                   hold;
};


/* a resource handler: id is 0 for the collection, sub the rest of the
 * path after the id ("" when none) */
typedef void (*ngx_segura_api_handler_pt)(ngx_segura_api_ctx_t *ctx,
    PGconn **conn, int64_t id, const char *sub);


/* ?status=, ?tag= and ?q= of a list */
typedef struct {
    char                          status[16];
    char                          tag[128];
    char                          q[256];
} ngx_segura_api_filter_t;


/* what a resource that administrators write tells the shared code */
typedef struct {
    const char                   *table;
    const char                   *type;    /* in audit rows */
    ngx_uint_t                    update;  /* NGX_HTTP_PATCH|NGX_HTTP_PUT */
    void                        (*write)(ngx_segura_api_ctx_t *ctx,
                                      PGconn **conn, int64_t id);
    const char                   *item;    /* its JSON by id ($1) */
    const char *const            *fields;  /* members a client may write */
    const char *const            *readonly; /* other members of its JSON */
    const char *const            *whole;   /* what a PUT must send, or NULL */
} ngx_segura_api_resource_t;


ngx_int_t ngx_segura_api_handler(ngx_http_request_t *r);

/* event loop: the passes of a request (see ngx_segura_api_next_pt) */
void ngx_segura_api_resume(ngx_http_request_t *r, ngx_segura_api_ctx_t *ctx,
    ngx_segura_api_step_pt step);
void ngx_segura_api_finish(ngx_http_request_t *r, ngx_segura_api_ctx_t *ctx);

/* pool threads only */
void ngx_segura_api_fail(ngx_segura_api_ctx_t *ctx, ngx_segura_err_e err,
    const char *field, const char *message);
void ngx_segura_api_fail_db(ngx_segura_api_ctx_t *ctx, PGconn *conn,
    const char *err);
void ngx_segura_api_fail_field(ngx_segura_api_ctx_t *ctx,
    ngx_segura_err_e err, const char *field, const char *message);
void ngx_segura_api_fail_reason(ngx_segura_api_ctx_t *ctx, const char *field,
    const char *reason, const char *message);
ngx_int_t ngx_segura_api_need_admin(ngx_segura_api_ctx_t *ctx);

/* sent at most once, the default (the rule: ngx_segura_db.c) */
PGresult *ngx_segura_api_query(ngx_segura_api_ctx_t *ctx, PGconn **conn,
    const char *sql, int nparams, const char *const *params);
/* may be sent again on a new connection: selects, idempotent updates */
PGresult *ngx_segura_api_query_retry(ngx_segura_api_ctx_t *ctx,
    PGconn **conn, const char *sql, int nparams, const char *const *params);
/* a select building the response; retried like the one above */
ngx_int_t ngx_segura_api_query_json(ngx_segura_api_ctx_t *ctx, PGconn **conn,
    ngx_uint_t status, const char *sql, int nparams,
    const char *const *params);
ngx_int_t ngx_segura_api_begin(ngx_segura_api_ctx_t *ctx, PGconn **conn);
void ngx_segura_api_end(ngx_segura_api_ctx_t *ctx, PGconn **conn);
ngx_int_t ngx_segura_api_audit(ngx_segura_api_ctx_t *ctx, PGconn **conn,
    const char *action, const char *type, const char *id, json_t *detail);
void ngx_segura_api_delete(ngx_segura_api_ctx_t *ctx, PGconn **conn,
    const char *table, const char *type, const char *id);

/* NGX_OK when res holds one row; else 404 (res is cleared) or the failure
 * of the query that gave no res */
ngx_int_t ngx_segura_api_one(ngx_segura_api_ctx_t *ctx, PGresult *res);
/* the row's first column as the response; clears res */
ngx_int_t ngx_segura_api_answer(ngx_segura_api_ctx_t *ctx, PGresult *res,
    ngx_uint_t status);
/* POST, PATCH or PUT, and DELETE of a resource, administrators only */
void ngx_segura_api_change(ngx_segura_api_ctx_t *ctx, PGconn **conn,
    int64_t id, const ngx_segura_api_resource_t *rs);
/* the audit row of a create or update, then the resource as it now is */
ngx_int_t ngx_segura_api_saved(ngx_segura_api_ctx_t *ctx, PGconn **conn,
    const ngx_segura_api_resource_t *rs, ngx_uint_t created, const char *id,
    json_t *body);

json_t *ngx_segura_api_parse(ngx_segura_api_ctx_t *ctx,
    const char *const *allowed);
/* the body of a create or update of rs: its own representation is
 * accepted, read-only members that match the stored ones are removed */
json_t *ngx_segura_api_parse_item(ngx_segura_api_ctx_t *ctx, PGconn **conn,
    const ngx_segura_api_resource_t *rs, int64_t id);
/* the current representation of rs by id, parsed; NULL and failed if none */
json_t *ngx_segura_api_current(ngx_segura_api_ctx_t *ctx, PGconn **conn,
    const ngx_segura_api_resource_t *rs, const char *id);
ngx_int_t ngx_segura_api_get_string(ngx_segura_api_ctx_t *ctx, json_t *obj,
    const char *name, size_t min, size_t max, const char **value);
ngx_int_t ngx_segura_api_get_bool(ngx_segura_api_ctx_t *ctx, json_t *obj,
    const char *name, const char **value);
ngx_int_t ngx_segura_api_get_int(ngx_segura_api_ctx_t *ctx, json_t *obj,
    const char *name, int64_t min, int64_t max, char *buf);
ngx_int_t ngx_segura_api_get_ids(ngx_segura_api_ctx_t *ctx, json_t *obj,
    const char *name, char **value);
ngx_int_t ngx_segura_api_get_tags(ngx_segura_api_ctx_t *ctx, json_t *obj,
    const char *name, char **value);
ngx_int_t ngx_segura_api_get_status(ngx_segura_api_ctx_t *ctx, json_t *obj,
    const char **value);
void ngx_segura_api_wipe_string(json_t *obj, const char *name);
json_t *ngx_segura_api_fields(json_t *body);
void ngx_segura_api_id(int64_t id, char *buf);
ngx_int_t ngx_segura_api_arg(ngx_segura_api_ctx_t *ctx, const char *name,
    char *buf, size_t len);
/* params[0..2]: the filters, NULL where absent; a 400 where one is bad */
ngx_int_t ngx_segura_api_filter(ngx_segura_api_ctx_t *ctx,
    ngx_segura_api_filter_t *f, const char **params);

/* argon2id with the defaults of new hashes; encoded holds
 * NGX_SEGURA_API_HASH_LEN bytes */
#define NGX_SEGURA_API_HASH_LEN    128
ngx_int_t ngx_segura_api_hash_password(ngx_segura_api_ctx_t *ctx,
    const char *password, char *encoded, size_t len);

/* resources: ngx_segura_api_<resource>.c */
void ngx_segura_api_login(ngx_segura_api_ctx_t *ctx, PGconn **conn,
    int64_t id, const char *sub);
void ngx_segura_api_logout(ngx_segura_api_ctx_t *ctx, PGconn **conn,
    int64_t id, const char *sub);
void ngx_segura_api_me(ngx_segura_api_ctx_t *ctx, PGconn **conn,
    int64_t id, const char *sub);
void ngx_segura_api_users(ngx_segura_api_ctx_t *ctx, PGconn **conn,
    int64_t id, const char *sub);
void ngx_segura_api_groups(ngx_segura_api_ctx_t *ctx, PGconn **conn,
    int64_t id, const char *sub);
void ngx_segura_api_devices(ngx_segura_api_ctx_t *ctx, PGconn **conn,
    int64_t id, const char *sub);
void ngx_segura_api_keys(ngx_segura_api_ctx_t *ctx, PGconn **conn,
    int64_t id, const char *sub);
void ngx_segura_api_key_check(ngx_segura_api_ctx_t *ctx, PGconn **conn,
    int64_t id, const char *const *params);
/* POST /api/keys/{id}/deploy and /withdraw (ngx_segura_api_keys_deploy.c) */
void ngx_segura_api_key_deploy(ngx_segura_api_ctx_t *ctx, PGconn **conn,
    int64_t id, const char *const *params, ngx_uint_t withdraw);
void ngx_segura_api_key_rotate(ngx_segura_api_ctx_t *ctx, PGconn **conn,
    int64_t id, const char *const *params);
void ngx_segura_api_key_rotations(ngx_segura_api_ctx_t *ctx, PGconn **conn,
    int64_t id, const char *const *params);
void ngx_segura_api_keys_generate(ngx_segura_api_ctx_t *ctx, PGconn **conn,
    int64_t id, const char *sub);
void ngx_segura_api_sessions(ngx_segura_api_ctx_t *ctx, PGconn **conn,
    int64_t id, const char *sub);
void ngx_segura_api_recording(ngx_segura_api_ctx_t *ctx, PGconn **conn,
    const char *id);
/* ngx_segura_api_search.c: GET /api/sessions?q=, and who may search */
void ngx_segura_api_search(ngx_segura_api_ctx_t *ctx, PGconn **conn);
ngx_uint_t ngx_segura_api_may_search(ngx_segura_api_ctx_t *ctx);

/* ngx_segura_metrics.c */
void ngx_segura_api_metrics(ngx_segura_api_ctx_t *ctx, PGconn **conn,
    int64_t id, const char *sub);


#endif /* _NGX_SEGURA_API_H_INCLUDED_ */
