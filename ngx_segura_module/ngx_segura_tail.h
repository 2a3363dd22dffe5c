
/*
 * Copyright (C) ngx_segura_module authors
 */


#ifndef _NGX_SEGURA_TAIL_H_INCLUDED_
#define _NGX_SEGURA_TAIL_H_INCLUDED_


#include <ngx_config.h>
#include <ngx_core.h>
#include "ngx_segura.h"
#include "ngx_segura_terminal.h"


typedef struct ngx_segura_tail_s  ngx_segura_tail_t;

/* the session ended (reason: its audit end_reason), or the tail failed */
typedef void (*ngx_segura_tail_end_pt)(void *data, const char *reason);


/*
 * Event loop only.  create makes a tail of session id's recording for
 * the watcher user name, that feeds viewer v (its output and event calls)
 * and calls end once, unless stopped first; NULL when out of memory.
 * stop is called once by the viewer that leaves; the tail's memory goes
 * when its pool task is back.
 * notify: the listener heard that a chunk of session id was stored.
 */
ngx_segura_tail_t *ngx_segura_tail_create(ngx_log_t *log,
    ngx_http_segura_main_conf_t *smcf, const char *id, const char *name,
    ngx_segura_viewer_t *v, ngx_segura_tail_end_pt end, void *data);
void ngx_segura_tail_stop(ngx_segura_tail_t *tl);
void ngx_segura_tail_notify(const char *id);


#endif /* _NGX_SEGURA_TAIL_H_INCLUDED_ */
