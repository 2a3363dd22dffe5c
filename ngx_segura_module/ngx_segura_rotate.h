
/*
 * Copyright (C) ngx_segura_module authors
 */


#ifndef _NGX_SEGURA_ROTATE_H_INCLUDED_
#define _NGX_SEGURA_ROTATE_H_INCLUDED_


#include <ngx_config.h>
#include <ngx_core.h>
#include "ngx_segura.h"


typedef struct ngx_segura_rotate_s  ngx_segura_rotate_t;

typedef void (*ngx_segura_rotate_done_pt)(ngx_segura_rotate_t *rt,
    void *data);


typedef enum {
    NGX_SEGURA_ROTATE_OK = 0,       /* ran: rotation_id names its row */
    NGX_SEGURA_ROTATE_RUNNING,      /* another rotation of the key runs */
    NGX_SEGURA_ROTATE_NOT_DUE,      /* schedule: no longer due */
    NGX_SEGURA_ROTATE_NOT_FOUND,    /* no such key */
    NGX_SEGURA_ROTATE_DB,           /* the database was unavailable */
    NGX_SEGURA_ROTATE_INTERNAL      /* ours: the log says what */
} ngx_segura_rotate_outcome_e;


typedef struct {
    ngx_http_segura_main_conf_t  *smcf;
    ngx_msec_t                    connect_timeout;
    ngx_resolver_t               *resolver;
    ngx_msec_t                    resolver_timeout;
    ngx_uint_t                    policy;     /* segura_host_key_policy */
    ngx_log_t                    *log;

    int64_t                       key_id;
    int64_t                       user_id;    /* 0: the schedule */
    ngx_uint_t                    schedule;
    ngx_uint_t                    retry;      /* only the devices behind */
    const char                   *kind;       /* NULL: as the key is */
    ngx_msec_t                    retry_after;  /* schedule, retry */
} ngx_segura_rotate_conf_t;


/*
 * Event loop only.  Starts a rotation of conf->key_id, which runs on its
 * own (its memory, its pool tasks, its device connections) whoever asked
 * for it, until it is over; then done(rt, data) is called once on the
 * event loop, unless the caller has detached, and rt is freed right after
 * it returns.  NGX_ERROR: nothing started, done is never called.
 */
ngx_int_t ngx_segura_rotate_start(ngx_segura_rotate_conf_t *conf,
    ngx_segura_rotate_done_pt done, void *data, ngx_segura_rotate_t **rtp);

/* event loop: done will not be called (the request went away) */
void ngx_segura_rotate_detach(ngx_segura_rotate_t *rt);

/* event loop, in done */
ngx_segura_rotate_outcome_e ngx_segura_rotate_outcome(ngx_segura_rotate_t *rt);
int64_t ngx_segura_rotate_id(ngx_segura_rotate_t *rt);

/* ngx_segura_rotate_schedule.c, event loop: the schedule on worker 0 */
ngx_int_t ngx_segura_rotate_schedule_init_process(ngx_cycle_t *cycle,
    ngx_http_segura_main_conf_t *smcf);
void ngx_segura_rotate_schedule_exit_process(void);

/* event loop: scheduled rotations running in this worker */
ngx_uint_t ngx_segura_rotate_scheduled(void);

/*
 * SQL: key k (an ssh_keys row) is due for a scheduled rotation; retry: a
 * bool parameter, a retry of the devices behind rather than a new pair;
 * after: a bigint parameter, ms since the key's last rotation ended
 * before it is tried again
 */
#define NGX_SEGURA_ROTATE_DUE(retry, after)                                  \
    " (k.status = 'active' and k.rotation_days is not null"                  \
    "  and not exists (select 1 from key_rotations r"                        \
    "   where r.key_id = k.id and (r.status = 'running'"                     \
    "    or r.ended_at > now() - " after "::bigint * interval '1 millisecond'))"    \
    "  and case when " retry "::bool then exists (select 1 from key_devices kd"     \
    "    where kd.key_id = k.id and kd.key_version is not null"              \
    "    and kd.key_version <> k.version)"                                   \
    "   else coalesce(k.rotated_at, k.created_at)"                           \
    "    + k.rotation_days * interval '1 day' <= now() end)"


#endif /* _NGX_SEGURA_ROTATE_H_INCLUDED_ */
