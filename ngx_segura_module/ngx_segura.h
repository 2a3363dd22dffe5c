
/*
 * Copyright (C) ngx_segura_module authors
 */


#ifndef _NGX_SEGURA_H_INCLUDED_
#define _NGX_SEGURA_H_INCLUDED_


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>
#include <ngx_thread_pool.h>


#define NGX_SEGURA_VERSION           "0.1.0"

#define NGX_SEGURA_MASTER_KEY_LEN    32
#define NGX_SEGURA_MAX_MASTER_KEYS   8

#define NGX_SEGURA_HOST_KEY_TOFU     0
#define NGX_SEGURA_HOST_KEY_STRICT   1

#define NGX_SEGURA_RECORDING_PAUSE   0
#define NGX_SEGURA_RECORDING_DROP    1


typedef struct ngx_segura_db_pool_s  ngx_segura_db_pool_t;


typedef struct {
    ngx_uint_t                 id;
    u_char                    *key;          /* 32 bytes, wiped with the pool */
} ngx_segura_master_key_t;


/* a segura_api or segura_session location, for nginx's early errors */
typedef struct {
    void                      *server;       /* ngx_http_core_srv_conf_t */
    ngx_str_t                  name;
    unsigned                   exact:1;
} ngx_http_segura_location_t;


typedef struct {
    ngx_str_t                  database;     /* NUL-terminated conninfo */
    ngx_uint_t                 db_connections;

    ngx_array_t                keys;         /* ngx_segura_master_key_t */

    ngx_str_t                  thread_pool_name;
    ngx_thread_pool_t         *thread_pool;

    ngx_msec_t                 node_lost_timeout;
    ngx_msec_t                 recording_retention;   /* 0: keep */
    ngx_msec_t                 rotation_schedule;     /* 0: off */
    ngx_msec_t                 rotation_retry;

    ngx_array_t                locations;    /* ngx_http_segura_location_t */

    ngx_int_t                  login_concurrency;

    ngx_shm_zone_t            *metrics;      /* ngx_segura_metrics.c */

    /* per worker, set up in init process */
    ngx_segura_db_pool_t      *db;

    unsigned                   used:1;
    u_char                    *used_file;
    ngx_uint_t                 used_line;
} ngx_http_segura_main_conf_t;


typedef struct {
    ngx_http_handler_pt        handler;      /* segura_api, _session, or NULL */
    ngx_http_complex_value_t  *user;         /* segura_user */
    ngx_str_t                  user_text;    /* its value as written */

    ngx_msec_t                 connect_timeout;
    ngx_msec_t                 idle_timeout;
    ngx_msec_t                 ping_interval;
    ngx_msec_t                 resume_timeout;        /* 0: off */
    ngx_msec_t                 login_lifetime;
    ngx_msec_t                 login_idle;
    ngx_msec_t                 login_address_window;
    ngx_uint_t                 login_address_limit;   /* 0: off */

    size_t                     max_message;
    size_t                     max_body;
    size_t                     resume_buffer;

    ngx_uint_t                 host_key_policy;

    ngx_flag_t                 recording;
    ngx_flag_t                 recording_input;
    ngx_uint_t                 recording_overflow;
    ngx_flag_t                 recording_self;    /* ngx_segura_audit.h */

    ngx_flag_t                 watch_notice;

    ngx_array_t               *allowed_origins;   /* ngx_str_t */
} ngx_http_segura_loc_conf_t;


/* error codes that reach a client: one enum, one table of wire names */

typedef enum {
    NGX_SEGURA_ERR_OK = 0,
    NGX_SEGURA_ERR_BAD_REQUEST,
    NGX_SEGURA_ERR_INVALID_JSON,
    NGX_SEGURA_ERR_INVALID_FIELD,
    NGX_SEGURA_ERR_UNAUTHENTICATED,
    NGX_SEGURA_ERR_FORBIDDEN,
    NGX_SEGURA_ERR_FOREIGN_ORIGIN,
    NGX_SEGURA_ERR_NOT_FOUND,
    NGX_SEGURA_ERR_METHOD,
    NGX_SEGURA_ERR_CONFLICT,
    NGX_SEGURA_ERR_ENDED,
    NGX_SEGURA_ERR_TOO_LARGE,
    NGX_SEGURA_ERR_URI_TOO_LONG,
    NGX_SEGURA_ERR_MEDIA_TYPE,
    NGX_SEGURA_ERR_TOO_MANY,
    NGX_SEGURA_ERR_DB_UNAVAILABLE,
    NGX_SEGURA_ERR_BUSY,
    NGX_SEGURA_ERR_INTERNAL,
    NGX_SEGURA_ERR_UNAVAILABLE,
    NGX_SEGURA_ERR_LAST
} ngx_segura_err_e;


typedef struct {
    ngx_uint_t                 status;
    ngx_str_t                  code;
    ngx_str_t                  message;
} ngx_segura_err_t;


/* errors of a terminal session after the upgrade: event + close code */

typedef enum {
    NGX_SEGURA_WS_ERR_NONE = 0,
    NGX_SEGURA_WS_ERR_DEVICE_UNREACHABLE,
    NGX_SEGURA_WS_ERR_CONNECT_TIMEOUT,
    NGX_SEGURA_WS_ERR_HOST_KEY_MISMATCH,
    NGX_SEGURA_WS_ERR_HOST_KEY_UNKNOWN,
    NGX_SEGURA_WS_ERR_AUTH_REJECTED,
    NGX_SEGURA_WS_ERR_KEY_UNUSABLE,
    NGX_SEGURA_WS_ERR_SHELL_FAILED,
    NGX_SEGURA_WS_ERR_SESSION_TERMINATED,
    NGX_SEGURA_WS_ERR_IDLE_TIMEOUT,
    NGX_SEGURA_WS_ERR_DATABASE,
    NGX_SEGURA_WS_ERR_INTERNAL,
    NGX_SEGURA_WS_ERR_BAD_MESSAGE,
    NGX_SEGURA_WS_ERR_ENDED,
    NGX_SEGURA_WS_ERR_REVOKED,
    NGX_SEGURA_WS_ERR_RESUMED,
    NGX_SEGURA_WS_ERR_READ_ONLY,
    NGX_SEGURA_WS_ERR_LAST
} ngx_segura_ws_err_e;


typedef struct {
    ngx_str_t                  code;
    ngx_uint_t                 close;        /* WebSocket close code */
    const char                *message;
} ngx_segura_ws_error_t;


extern ngx_module_t  ngx_http_segura_module;
extern ngx_module_t  ngx_http_segura_errpage_module;
extern ngx_segura_err_t  ngx_segura_errors[];
extern ngx_segura_ws_error_t  ngx_segura_ws_errors[];


ngx_int_t ngx_http_segura_send_error(ngx_http_request_t *r,
    ngx_segura_err_e err, const char *field, const char *message);
ngx_int_t ngx_http_segura_send_error_reason(ngx_http_request_t *r,
    ngx_segura_err_e err, const char *field, const char *message,
    const char *reason);
u_char *ngx_http_segura_error_body(ngx_pool_t *pool, ngx_segura_err_e err,
    const char *message, size_t *len);
ngx_int_t ngx_http_segura_send_json(ngx_http_request_t *r, ngx_uint_t status,
    u_char *json, size_t len);
ngx_int_t ngx_http_segura_send_body(ngx_http_request_t *r, ngx_uint_t status,
    const char *type, u_char *body, size_t len, ngx_uint_t newline);
char *ngx_http_segura_cstr(ngx_pool_t *pool, ngx_str_t *s);
ngx_int_t ngx_http_segura_add_header(ngx_http_request_t *r, const char *name,
    const char *value);
ngx_segura_master_key_t *ngx_http_segura_current_key(
    ngx_http_segura_main_conf_t *smcf);
ngx_segura_master_key_t *ngx_http_segura_find_key(
    ngx_http_segura_main_conf_t *smcf, ngx_uint_t id);


#endif /* _NGX_SEGURA_H_INCLUDED_ */
