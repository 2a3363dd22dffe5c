
/*
 * Copyright (C) ngx_segura_module authors
 */


/*
 * The node's metrics: counters and gauges in one nginx shared memory zone
 * ("segura_metrics"), so that every worker of the node adds to the same
 * numbers, and their Prometheus text (format 0.0.4) for GET /api/metrics
 * (administrators) and for locations with "segura_metrics".
 *
 * The zone is added at configuration time by the main configuration and
 * has a fixed layout of ngx_atomic_t: node-wide counters, which only
 * grow, and a table of per-worker slots for the gauges that belong to a
 * process (live sessions, pool tasks in flight, the outbox's depth).  A
 * worker claims a slot by its pid in init process and gives it back in
 * exit process; a slot whose process is gone (crashed, killed) is skipped
 * when read and taken over by the next worker that starts, so what a dead
 * worker held does not stay in the gauges.  Slots are claimed by pid, not
 * indexed by ngx_worker: after a reload the old workers, still draining
 * their sessions, and the new ones have the same worker numbers.
 *
 * On reload nginx hands the new configuration the same zone (same name,
 * size and tag), so the counters go on; a layout that changed (another
 * module version) gets a fresh copy.  A restart or a binary upgrade
 * starts from zero.
 *
 * The hooks are called from the files that see the events: counters from
 * either thread (atomic additions), the gauges and outcomes from the event
 * loop of the worker that owns them.  Rendering reads atomics only and may
 * run in a pool thread (the API) or on the event loop (segura_metrics).
 */


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>
#include "ngx_segura.h"
#include "ngx_segura_api.h"
#include "ngx_segura_metrics.h"


#define NGX_SEGURA_METRICS_SLOTS     256
#define NGX_SEGURA_METRICS_BUCKETS   8
#define NGX_SEGURA_METRICS_VERSION   1

#define NGX_SEGURA_METRICS_TYPE      "text/plain; version=0.0.4; charset=utf-8"


typedef enum {
    NGX_SEGURA_METRIC_GAUGE_LIVE = 0,
    NGX_SEGURA_METRIC_GAUGE_OUTBOX_STATEMENTS,
    NGX_SEGURA_METRIC_GAUGE_OUTBOX_BYTES,
    NGX_SEGURA_METRIC_GAUGE_TASKS,         /* NGX_SEGURA_METRIC_TASK_LAST */
    NGX_SEGURA_METRIC_GAUGE_LAST = NGX_SEGURA_METRIC_GAUGE_TASKS
                                   + NGX_SEGURA_METRIC_TASK_LAST
} ngx_segura_metric_gauge_e;


typedef struct {
    ngx_atomic_t                 pid;      /* 0: free */
    ngx_atomic_t                 gauge[NGX_SEGURA_METRIC_GAUGE_LAST];
} ngx_segura_metrics_slot_t;


/* the zone's contents */
typedef struct {
    ngx_atomic_t                 layout;
    ngx_atomic_t                 counter[NGX_SEGURA_METRIC_LAST];
    ngx_atomic_t                 db[NGX_SEGURA_METRIC_DB_LAST];

    /* ok (0), each WebSocket error, and aborted (the last) */
    ngx_atomic_t                 setup[NGX_SEGURA_WS_ERR_LAST + 1];

    /* ok (0) and each API error */
    ngx_atomic_t                 login[NGX_SEGURA_ERR_LAST];

    /* each bucket on its own (not cumulative), the last one is +Inf */
    ngx_atomic_t                 bucket[NGX_SEGURA_METRICS_BUCKETS + 1];
    ngx_atomic_t                 setup_ms;

    ngx_segura_metrics_slot_t    slot[NGX_SEGURA_METRICS_SLOTS];
} ngx_segura_metrics_sh_t;


typedef struct {
    ngx_segura_metrics_sh_t     *sh;
    ngx_slab_pool_t             *shpool;
    ngx_atomic_uint_t            layout;
} ngx_segura_metrics_ctx_t;


static ngx_int_t ngx_segura_metrics_init_zone(ngx_shm_zone_t *zone,
    void *data);
static ngx_atomic_uint_t ngx_segura_metrics_layout(void);
static ngx_uint_t ngx_segura_metrics_alive(ngx_atomic_uint_t pid);
static u_char *ngx_segura_metrics_family(u_char *p, u_char *last,
    const char *name, const char *type, const char *help);


static ngx_str_t  ngx_segura_metrics_zone_name = ngx_string("segura_metrics");

/* upper bounds of the set-up latency buckets, ms, and their labels */
static ngx_msec_t  ngx_segura_metrics_bounds[NGX_SEGURA_METRICS_BUCKETS] = {
    50, 100, 250, 500, 1000, 2500, 5000, 10000
};

static const char  *ngx_segura_metrics_le[NGX_SEGURA_METRICS_BUCKETS + 1] = {
    "0.05", "0.1", "0.25", "0.5", "1", "2.5", "5", "10", "+Inf"
};

static const char  *ngx_segura_metrics_db_kinds[NGX_SEGURA_METRIC_DB_LAST] = {
    "connect", "pool_timeout", "statement"
};

static const char  *ngx_segura_metrics_tasks[NGX_SEGURA_METRIC_TASK_LAST] = {
    "api", "session_check", "host_key_pin", "outbox"
};


/* this worker's: set in init process, cleared in exit process */
static ngx_segura_metrics_sh_t    *ngx_segura_metrics_sh;
static ngx_segura_metrics_slot_t  *ngx_segura_metrics_slot;


ngx_int_t
ngx_segura_metrics_add_zone(ngx_conf_t *cf, ngx_http_segura_main_conf_t *smcf)
{
    size_t                     size;
    ngx_shm_zone_t            *zone;
    ngx_segura_metrics_ctx_t  *ctx;

    if (smcf->metrics != NULL) {
        return NGX_OK;
    }

    ctx = ngx_pcalloc(cf->pool, sizeof(ngx_segura_metrics_ctx_t));
    if (ctx == NULL) {
        return NGX_ERROR;
    }

    ctx->layout = ngx_segura_metrics_layout();

    /*
     * room for two copies: a reused zone whose layout is not ours gets a
     * second one beside the old, which the old workers still write
     */

    size = 2 * ngx_align(sizeof(ngx_segura_metrics_sh_t), ngx_pagesize)
           + 8 * ngx_pagesize;

    zone = ngx_shared_memory_add(cf, &ngx_segura_metrics_zone_name, size,
                                 &ngx_http_segura_module);
    if (zone == NULL) {
        return NGX_ERROR;
    }

    if (zone->data != NULL) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "shared memory zone \"%V\" is already used",
                           &ngx_segura_metrics_zone_name);
        return NGX_ERROR;
    }

    zone->init = ngx_segura_metrics_init_zone;
    zone->data = ctx;

    smcf->metrics = zone;

    return NGX_OK;
}


static ngx_int_t
ngx_segura_metrics_init_zone(ngx_shm_zone_t *zone, void *data)
{
    ngx_segura_metrics_ctx_t  *octx = data;

    ngx_segura_metrics_ctx_t  *ctx;

    ctx = zone->data;

    /* the master, at configuration time; data is the previous cycle's */

    if (octx != NULL && octx->sh->layout == ctx->layout) {
        ctx->sh = octx->sh;
        ctx->shpool = octx->shpool;
        return NGX_OK;
    }

    ctx->shpool = (ngx_slab_pool_t *) zone->shm.addr;

    ctx->sh = ngx_slab_calloc(ctx->shpool, sizeof(ngx_segura_metrics_sh_t));
    if (ctx->sh == NULL) {
        return NGX_ERROR;
    }

    ctx->sh->layout = ctx->layout;

    return NGX_OK;
}


static ngx_atomic_uint_t
ngx_segura_metrics_layout(void)
{
    uint32_t    crc;
    ngx_uint_t  i;

    /* the size and every label that indexes an array of the layout */

    ngx_crc32_init(crc);

    for (i = 0; i < NGX_SEGURA_WS_ERR_LAST; i++) {
        ngx_crc32_update(&crc, ngx_segura_ws_errors[i].code.data,
                         ngx_segura_ws_errors[i].code.len);
        ngx_crc32_update(&crc, (u_char *) "/", 1);
    }

    for (i = 0; i < NGX_SEGURA_ERR_LAST; i++) {
        ngx_crc32_update(&crc, ngx_segura_errors[i].code.data,
                         ngx_segura_errors[i].code.len);
        ngx_crc32_update(&crc, (u_char *) "/", 1);
    }

    ngx_crc32_final(crc);

    return ((ngx_atomic_uint_t) crc << 16)
           ^ (sizeof(ngx_segura_metrics_sh_t) << 4)
           ^ NGX_SEGURA_METRICS_VERSION;
}


void
ngx_segura_metrics_init_process(ngx_cycle_t *cycle,
    ngx_http_segura_main_conf_t *smcf)
{
    ngx_uint_t                  i, j;
    ngx_atomic_uint_t           pid;
    ngx_segura_metrics_ctx_t   *ctx;
    ngx_segura_metrics_slot_t  *slot;

    if (smcf->metrics == NULL) {
        return;
    }

    ctx = smcf->metrics->data;
    ngx_segura_metrics_sh = ctx->sh;

    if (ngx_process == NGX_PROCESS_HELPER) {
        /* a cache manager or loader has no gauges of its own */
        return;
    }

    /*
     * a free slot, or one whose process is gone (its gauges went with
     * it): taken first, zeroed next, so that two starting workers cannot
     * both take it
     */

    for (i = 0; i < NGX_SEGURA_METRICS_SLOTS; i++) {
        slot = &ngx_segura_metrics_sh->slot[i];
        pid = slot->pid;

        if (pid != 0 && ngx_segura_metrics_alive(pid)) {
            continue;
        }

        if (!ngx_atomic_cmp_set(&slot->pid, pid, (ngx_atomic_uint_t) ngx_pid))
        {
            continue;
        }

        for (j = 0; j < NGX_SEGURA_METRIC_GAUGE_LAST; j++) {
            slot->gauge[j] = 0;
        }

        ngx_segura_metrics_slot = slot;
        return;
    }

    ngx_log_error(NGX_LOG_WARN, cycle->log, 0,
                  "segura metrics: all %d worker slots are taken, the "
                  "gauges of this worker are not counted",
                  NGX_SEGURA_METRICS_SLOTS);
}


void
ngx_segura_metrics_exit_process(void)
{
    ngx_uint_t                  j;
    ngx_segura_metrics_slot_t  *slot;

    slot = ngx_segura_metrics_slot;

    if (slot != NULL) {
        for (j = 0; j < NGX_SEGURA_METRIC_GAUGE_LAST; j++) {
            slot->gauge[j] = 0;
        }

        (void) ngx_atomic_cmp_set(&slot->pid, (ngx_atomic_uint_t) ngx_pid, 0);
    }

    ngx_segura_metrics_slot = NULL;
    ngx_segura_metrics_sh = NULL;
}


static ngx_uint_t
ngx_segura_metrics_alive(ngx_atomic_uint_t pid)
{
    /* EPERM: alive, under another user */

    return kill((ngx_pid_t) pid, 0) == 0 || ngx_errno != NGX_ESRCH;
}


void
ngx_segura_metrics_add(ngx_segura_metric_e m, size_t n)
{
    if (ngx_segura_metrics_sh != NULL && n > 0) {
        (void) ngx_atomic_fetch_add(&ngx_segura_metrics_sh->counter[m],
                                    (ngx_atomic_int_t) n);
    }
}


void
ngx_segura_metrics_db_error(ngx_segura_metric_db_e kind,
    const char *sqlstate)
{
    /*
     * classes 22 (data exception) and 23 (integrity constraint) are the
     * request's fault, answered as 4xx: not the database's
     */

    if (sqlstate != NULL
        && (ngx_strncmp(sqlstate, "22", 2) == 0
            || ngx_strncmp(sqlstate, "23", 2) == 0))
    {
        return;
    }

    if (ngx_segura_metrics_sh != NULL) {
        (void) ngx_atomic_fetch_add(&ngx_segura_metrics_sh->db[kind], 1);
    }
}


void
ngx_segura_metrics_task(ngx_segura_metric_task_e kind, ngx_int_t n)
{
    if (ngx_segura_metrics_slot != NULL) {
        (void) ngx_atomic_fetch_add(
                   &ngx_segura_metrics_slot->gauge[
                       NGX_SEGURA_METRIC_GAUGE_TASKS + kind],
                   (ngx_atomic_int_t) n);
    }
}


void
ngx_segura_metrics_outbox(ngx_uint_t statements, size_t bytes)
{
    ngx_segura_metrics_slot_t  *slot;

    slot = ngx_segura_metrics_slot;

    if (slot != NULL) {
        slot->gauge[NGX_SEGURA_METRIC_GAUGE_OUTBOX_STATEMENTS] = statements;
        slot->gauge[NGX_SEGURA_METRIC_GAUGE_OUTBOX_BYTES] = bytes;
    }
}


void
ngx_segura_metrics_session_opened(ngx_msec_t latency)
{
    ngx_uint_t                i;
    ngx_segura_metrics_sh_t  *sh;

    sh = ngx_segura_metrics_sh;

    if (sh == NULL) {
        return;
    }

    for (i = 0; i < NGX_SEGURA_METRICS_BUCKETS; i++) {
        if (latency <= ngx_segura_metrics_bounds[i]) {
            break;
        }
    }

    (void) ngx_atomic_fetch_add(&sh->bucket[i], 1);
    (void) ngx_atomic_fetch_add(&sh->setup_ms, (ngx_atomic_int_t) latency);
    (void) ngx_atomic_fetch_add(&sh->setup[NGX_SEGURA_WS_ERR_NONE], 1);

    if (ngx_segura_metrics_slot != NULL) {
        (void) ngx_atomic_fetch_add(
                   &ngx_segura_metrics_slot->gauge[
                       NGX_SEGURA_METRIC_GAUGE_LIVE], 1);
    }
}


void
ngx_segura_metrics_session_ended(ngx_uint_t opened, ngx_segura_ws_err_e err)
{
    ngx_segura_metrics_sh_t  *sh;

    sh = ngx_segura_metrics_sh;

    if (sh == NULL) {
        return;
    }

    if (opened) {
        if (ngx_segura_metrics_slot != NULL) {
            (void) ngx_atomic_fetch_add(
                       &ngx_segura_metrics_slot->gauge[
                           NGX_SEGURA_METRIC_GAUGE_LIVE], -1);
        }

        return;
    }

    /* a set-up that failed; without an error the client left or the
     * worker shut down before the shell was open */

    if (err == NGX_SEGURA_WS_ERR_NONE || err >= NGX_SEGURA_WS_ERR_LAST) {
        err = NGX_SEGURA_WS_ERR_LAST;
    }

    (void) ngx_atomic_fetch_add(&sh->setup[err], 1);
}


void
ngx_segura_metrics_api_answered(const char *path, ngx_segura_err_e err,
    ngx_uint_t body)
{
    if (ngx_segura_metrics_sh == NULL || ngx_strcmp(path, "login") != 0) {
        return;
    }

    /* as ngx_segura_api_respond(): no body and no error is an internal one */

    if (err == NGX_SEGURA_ERR_OK && !body) {
        err = NGX_SEGURA_ERR_INTERNAL;
    }

    if (err >= NGX_SEGURA_ERR_LAST) {
        err = NGX_SEGURA_ERR_INTERNAL;
    }

    (void) ngx_atomic_fetch_add(&ngx_segura_metrics_sh->login[err], 1);
}


static u_char *
ngx_segura_metrics_family(u_char *p, u_char *last, const char *name,
    const char *type, const char *help)
{
    return ngx_slprintf(p, last, "# HELP %s %s\n# TYPE %s %s\n",
                        name, help, name, type);
}


size_t
ngx_segura_metrics_render(u_char *buf, size_t size)
{
    u_char                     *p, *last;
    ngx_uint_t                  i, j, workers;
    ngx_atomic_int_t            gauge[NGX_SEGURA_METRIC_GAUGE_LAST];
    ngx_atomic_uint_t           pid, n, cumulative, ms;
    ngx_segura_metrics_sh_t    *sh;
    ngx_segura_metrics_slot_t  *slot;

    sh = ngx_segura_metrics_sh;

    if (sh == NULL || size < 2) {
        return 0;
    }

    p = buf;
    last = buf + size - 1;    /* a full buffer means it did not fit */

    /* the gauges: the sum over the slots of the processes alive */

    ngx_memzero(gauge, sizeof(gauge));
    workers = 0;

    for (i = 0; i < NGX_SEGURA_METRICS_SLOTS; i++) {
        slot = &sh->slot[i];
        pid = slot->pid;

        if (pid == 0 || !ngx_segura_metrics_alive(pid)) {
            continue;
        }

        workers++;

        for (j = 0; j < NGX_SEGURA_METRIC_GAUGE_LAST; j++) {
            gauge[j] += (ngx_atomic_int_t) slot->gauge[j];
        }
    }

    p = ngx_segura_metrics_family(p, last, "segura_workers", "gauge",
                                  "Worker processes of this node that "
                                  "report metrics.");
    p = ngx_slprintf(p, last, "segura_workers %ui\n", workers);

    p = ngx_segura_metrics_family(p, last, "segura_sessions_live", "gauge",
                                  "Terminal sessions with an open shell.");
    p = ngx_slprintf(p, last, "segura_sessions_live %A\n",
                     gauge[NGX_SEGURA_METRIC_GAUGE_LIVE]);

    p = ngx_segura_metrics_family(p, last, "segura_session_setups_total",
                                  "counter",
                                  "Terminal set-ups after the grant check, "
                                  "by outcome: ok, the WebSocket error "
                                  "code, or aborted.");

    for (i = 0; i <= NGX_SEGURA_WS_ERR_LAST; i++) {
        p = ngx_slprintf(p, last,
                         "segura_session_setups_total{outcome=\"%s\"} %uA\n",
                         i == NGX_SEGURA_WS_ERR_NONE
                         ? "ok"
                         : (i == NGX_SEGURA_WS_ERR_LAST
                            ? "aborted"
                            : (char *) ngx_segura_ws_errors[i].code.data),
                         sh->setup[i]);
    }

    p = ngx_segura_metrics_family(p, last, "segura_session_setup_seconds",
                                  "histogram",
                                  "Time from the /session request to the "
                                  "open shell.");

    cumulative = 0;

    for (i = 0; i <= NGX_SEGURA_METRICS_BUCKETS; i++) {
        cumulative += sh->bucket[i];
        p = ngx_slprintf(p, last,
                         "segura_session_setup_seconds_bucket{le=\"%s\"} "
                         "%uA\n", ngx_segura_metrics_le[i], cumulative);
    }

    ms = sh->setup_ms;

    p = ngx_slprintf(p, last,
                     "segura_session_setup_seconds_sum %uA.%03uA\n"
                     "segura_session_setup_seconds_count %uA\n",
                     ms / 1000, ms % 1000, cumulative);

    p = ngx_segura_metrics_family(p, last, "segura_session_bytes_total",
                                  "counter",
                                  "Terminal bytes relayed, counted as they "
                                  "go: in is client to device, out is "
                                  "device to client.");
    p = ngx_slprintf(p, last,
                     "segura_session_bytes_total{direction=\"in\"} %uA\n"
                     "segura_session_bytes_total{direction=\"out\"} %uA\n",
                     sh->counter[NGX_SEGURA_METRIC_BYTES_IN],
                     sh->counter[NGX_SEGURA_METRIC_BYTES_OUT]);

    p = ngx_segura_metrics_family(p, last, "segura_pool_tasks", "gauge",
                                  "Thread-pool tasks of the module queued "
                                  "or running, by kind.");

    for (i = 0; i < NGX_SEGURA_METRIC_TASK_LAST; i++) {
        p = ngx_slprintf(p, last, "segura_pool_tasks{kind=\"%s\"} %A\n",
                         ngx_segura_metrics_tasks[i],
                         gauge[NGX_SEGURA_METRIC_GAUGE_TASKS + i]);
    }

    p = ngx_segura_metrics_family(p, last, "segura_outbox_statements",
                                  "gauge",
                                  "Writes queued for the database.");
    p = ngx_slprintf(p, last, "segura_outbox_statements %A\n",
                     gauge[NGX_SEGURA_METRIC_GAUGE_OUTBOX_STATEMENTS]);

    p = ngx_segura_metrics_family(p, last, "segura_outbox_bytes", "gauge",
                                  "Memory held by the writes queued for "
                                  "the database.");
    p = ngx_slprintf(p, last, "segura_outbox_bytes %A\n",
                     gauge[NGX_SEGURA_METRIC_GAUGE_OUTBOX_BYTES]);

    p = ngx_segura_metrics_family(p, last, "segura_outbox_retries_total",
                                  "counter",
                                  "Outbox batches or statements written "
                                  "again after a failure.");
    p = ngx_slprintf(p, last, "segura_outbox_retries_total %uA\n",
                     sh->counter[NGX_SEGURA_METRIC_OUTBOX_RETRIES]);

    p = ngx_segura_metrics_family(p, last, "segura_outbox_dropped_total",
                                  "counter",
                                  "Outbox statements dropped after being "
                                  "refused 3 times.");
    p = ngx_slprintf(p, last, "segura_outbox_dropped_total %uA\n",
                     sh->counter[NGX_SEGURA_METRIC_OUTBOX_DROPPED]);

    p = ngx_segura_metrics_family(p, last, "segura_db_errors_total",
                                  "counter",
                                  "PostgreSQL failures, by kind.");

    for (i = 0; i < NGX_SEGURA_METRIC_DB_LAST; i++) {
        p = ngx_slprintf(p, last, "segura_db_errors_total{kind=\"%s\"} %uA\n",
                         ngx_segura_metrics_db_kinds[i], sh->db[i]);
    }

    p = ngx_segura_metrics_family(p, last, "segura_logins_total", "counter",
                                  "Answers of POST /api/login, by outcome: "
                                  "ok or the API error code.");

    for (i = 0; i < NGX_SEGURA_ERR_LAST; i++) {
        p = ngx_slprintf(p, last, "segura_logins_total{outcome=\"%V\"} %uA\n",
                         &ngx_segura_errors[i].code, sh->login[i]);
    }

    n = sh->counter[NGX_SEGURA_METRIC_PASSWORD_CHECKS];

    p = ngx_segura_metrics_family(p, last,
                                  "segura_login_password_checks_total",
                                  "counter",
                                  "Password verifications (argon2id) run "
                                  "by logins.");
    p = ngx_slprintf(p, last, "segura_login_password_checks_total %uA\n", n);

    n = sh->counter[NGX_SEGURA_METRIC_LOGIN_TASKS];

    p = ngx_segura_metrics_family(p, last, "segura_login_tasks_total",
                                  "counter",
                                  "Logins that entered the thread pool; "
                                  "the others were answered on the event "
                                  "loop (429 for an address known to be "
                                  "over its budget, 503 busy).");
    p = ngx_slprintf(p, last, "segura_login_tasks_total %uA\n", n);

    if (p == last) {
        return 0;
    }

    return p - buf;
}


/* GET /api/metrics: a pool thread, administrators only */

void
ngx_segura_api_metrics(ngx_segura_api_ctx_t *ctx, PGconn **conn, int64_t id,
    const char *sub)
{
    size_t   len;
    u_char  *text;

    if (!(ctx->method & (NGX_HTTP_GET|NGX_HTTP_HEAD))) {
        ngx_segura_api_fail(ctx, NGX_SEGURA_ERR_METHOD, NULL, NULL);
        return;
    }

    if (ngx_segura_api_need_admin(ctx) != NGX_OK) {
        return;
    }

    text = malloc(NGX_SEGURA_METRICS_TEXT_MAX);
    if (text == NULL) {
        ngx_segura_api_fail(ctx, NGX_SEGURA_ERR_INTERNAL, NULL, NULL);
        return;
    }

    len = ngx_segura_metrics_render(text, NGX_SEGURA_METRICS_TEXT_MAX);

    if (len == 0) {
        free(text);
        ngx_segura_api_fail(ctx, NGX_SEGURA_ERR_INTERNAL, NULL, NULL);
        ctx->log_level = NGX_LOG_ALERT;
        (void) ngx_cpystrn((u_char *) ctx->log,
                           (u_char *) "the metrics do not fit the buffer",
                           sizeof(ctx->log));
        return;
    }

    text[len] = '\0';

    ctx->json = (char *) text;
    ctx->content_type = NGX_SEGURA_METRICS_TYPE;
    ctx->status = 200;
}


/*
 * "segura_metrics": the event loop; who may read is nginx's to decide
 * (allow, deny, auth_basic, ...)
 */

ngx_int_t
ngx_segura_metrics_handler(ngx_http_request_t *r)
{
    size_t      len;
    ngx_buf_t  *b;

    if (!(r->method & (NGX_HTTP_GET|NGX_HTTP_HEAD))) {
        return ngx_http_segura_send_error(r, NGX_SEGURA_ERR_METHOD,
                                          NULL, NULL);
    }

    b = ngx_create_temp_buf(r->pool, NGX_SEGURA_METRICS_TEXT_MAX);
    if (b == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    len = ngx_segura_metrics_render(b->pos, NGX_SEGURA_METRICS_TEXT_MAX);

    if (len == 0) {
        ngx_log_error(NGX_LOG_ALERT, r->connection->log, 0,
                      "segura metrics: the text does not fit the buffer");
        return ngx_http_segura_send_error(r, NGX_SEGURA_ERR_INTERNAL,
                                          NULL, NULL);
    }

    return ngx_http_segura_send_body(r, NGX_HTTP_OK, NGX_SEGURA_METRICS_TYPE,
                                     b->pos, len, 0);
}
