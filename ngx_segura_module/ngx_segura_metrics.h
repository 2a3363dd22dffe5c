
/*
 * Copyright (C) ngx_segura_module authors
 */


#ifndef _NGX_SEGURA_METRICS_H_INCLUDED_
#define _NGX_SEGURA_METRICS_H_INCLUDED_


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>
#include "ngx_segura.h"


/* node-wide counters */
typedef enum {
    NGX_SEGURA_METRIC_BYTES_IN = 0,        /* client -> device */
    NGX_SEGURA_METRIC_BYTES_OUT,           /* device -> client */
    NGX_SEGURA_METRIC_OUTBOX_RETRIES,
    NGX_SEGURA_METRIC_OUTBOX_DROPPED,
    NGX_SEGURA_METRIC_PASSWORD_CHECKS,     /* argon2id at login */
    NGX_SEGURA_METRIC_LOGIN_TASKS,         /* logins posted to the pool */
    NGX_SEGURA_METRIC_LAST
} ngx_segura_metric_e;


/* segura_db_errors_total{kind} */
typedef enum {
    NGX_SEGURA_METRIC_DB_CONNECT = 0,
    NGX_SEGURA_METRIC_DB_POOL_TIMEOUT,
    NGX_SEGURA_METRIC_DB_STATEMENT,
    NGX_SEGURA_METRIC_DB_LAST
} ngx_segura_metric_db_e;


/* segura_pool_tasks{kind}: the module's thread-pool tasks in flight */
typedef enum {
    NGX_SEGURA_METRIC_TASK_API = 0,
    NGX_SEGURA_METRIC_TASK_SESSION_CHECK,
    NGX_SEGURA_METRIC_TASK_HOST_KEY_PIN,
    NGX_SEGURA_METRIC_TASK_OUTBOX,
    NGX_SEGURA_METRIC_TASK_LAST
} ngx_segura_metric_task_e;


/* the longest text ngx_segura_metrics_render() writes */
#define NGX_SEGURA_METRICS_TEXT_MAX  32768


/* configuration time: the shared zone, once per configuration */
ngx_int_t ngx_segura_metrics_add_zone(ngx_conf_t *cf,
    ngx_http_segura_main_conf_t *smcf);

/* event loop: init and exit process */
void ngx_segura_metrics_init_process(ngx_cycle_t *cycle,
    ngx_http_segura_main_conf_t *smcf);
void ngx_segura_metrics_exit_process(void);

/* either thread: counters (no-ops when there is no zone) */
void ngx_segura_metrics_add(ngx_segura_metric_e m, size_t n);
void ngx_segura_metrics_db_error(ngx_segura_metric_db_e kind,
    const char *sqlstate);

/* event loop: this worker's gauges and the session and login outcomes */
void ngx_segura_metrics_task(ngx_segura_metric_task_e kind, ngx_int_t n);
void ngx_segura_metrics_outbox(ngx_uint_t statements, size_t bytes);
void ngx_segura_metrics_session_opened(ngx_msec_t latency);
void ngx_segura_metrics_session_ended(ngx_uint_t opened,
    ngx_segura_ws_err_e err);
void ngx_segura_metrics_api_answered(const char *path, ngx_segura_err_e err,
    ngx_uint_t body);

/* either thread: the Prometheus text; its length, 0 when it did not fit */
size_t ngx_segura_metrics_render(u_char *buf, size_t size);

/* event loop: the content handler of "segura_metrics" */
ngx_int_t ngx_segura_metrics_handler(ngx_http_request_t *r);


#endif /* _NGX_SEGURA_METRICS_H_INCLUDED_ */
