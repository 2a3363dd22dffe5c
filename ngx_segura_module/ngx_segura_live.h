
/*
 * Copyright (C) ngx_segura_module authors
 */


#ifndef _NGX_SEGURA_LIVE_H_INCLUDED_
#define _NGX_SEGURA_LIVE_H_INCLUDED_


#include <ngx_config.h>
#include <ngx_core.h>


#define NGX_SEGURA_LIVE_ID_LEN  40


typedef struct ngx_segura_live_s  ngx_segura_live_t;

/* by_admin: 1 an administrator ended it, 0 its grant went */
typedef void (*ngx_segura_live_end_pt)(ngx_segura_live_t *l,
    ngx_uint_t by_admin);
/* watched from another worker or node (its recording is followed) by a
 * user, who comes or leaves */
typedef void (*ngx_segura_live_watched_pt)(ngx_segura_live_t *l,
    const char *by, ngx_uint_t left);

/* an administrator locks or unlocks its input, or leaves a message */
typedef enum {
    NGX_SEGURA_LIVE_LOCK = 0,
    NGX_SEGURA_LIVE_UNLOCK,
    NGX_SEGURA_LIVE_MESSAGE
} ngx_segura_live_action_e;

typedef void (*ngx_segura_live_moderate_pt)(ngx_segura_live_t *l,
    ngx_segura_live_action_e action, const char *by, const char *text);


/* embedded in what is registered (a terminal) */

struct ngx_segura_live_s {
    ngx_queue_t                queue;
    const char                *id;
    int64_t                    user_id;
    int64_t                    key_id;
    int64_t                    device_id;
    ngx_segura_live_end_pt     end;
    ngx_segura_live_watched_pt watched;    /* may be NULL */
    ngx_segura_live_moderate_pt moderate;  /* may be NULL */
    unsigned                   listed:1;
};


/* a copy, as the watcher re-checks it */

typedef struct {
    char                       id[NGX_SEGURA_LIVE_ID_LEN];
    int64_t                    user_id;
    int64_t                    key_id;
    int64_t                    device_id;
} ngx_segura_live_ref_t;


/* event loop only */
void ngx_segura_live_init(void);
void ngx_segura_live_add(ngx_segura_live_t *l);
void ngx_segura_live_remove(ngx_segura_live_t *l);
ngx_uint_t ngx_segura_live_count(void);
ngx_uint_t ngx_segura_live_get(ngx_segura_live_ref_t *refs, ngx_uint_t n);
ngx_segura_live_t *ngx_segura_live_find(const char *id);
void ngx_segura_live_end(const char *id, ngx_uint_t by_admin);
void ngx_segura_live_watched(const char *id, const char *by,
    ngx_uint_t left);
void ngx_segura_live_moderate(const char *id, ngx_segura_live_action_e action,
    const char *by, const char *text);


#endif /* _NGX_SEGURA_LIVE_H_INCLUDED_ */
