
/*
 * Copyright (C) ngx_segura_module authors
 */


#ifndef _NGX_SEGURA_RESUME_H_INCLUDED_
#define _NGX_SEGURA_RESUME_H_INCLUDED_


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>


/* what the receiving worker checked, for the worker that has the shell */

typedef struct {
    const char                    *token;
    off_t                          received;
    int64_t                        user_id;
    int64_t                        key_id;
    int64_t                        device_id;
} ngx_segura_resume_ask_t;


/*
 * forward's outcome: NGX_OK the owning worker took the resume (the
 * caller answers 101, then calls pipe), NGX_DECLINED it has no such
 * session, NGX_ERROR it cannot be reached
 */
typedef void (*ngx_segura_resume_pt)(ngx_http_request_t *r, ngx_int_t rc);


/* event loop only */
ngx_int_t ngx_segura_resume_init_process(ngx_cycle_t *cycle);
void ngx_segura_resume_exit_process(void);
ngx_pid_t ngx_segura_resume_owner(const char *token);
ngx_int_t ngx_segura_resume_forward(ngx_http_request_t *r,
    ngx_segura_resume_ask_t *ask, void **slot, ngx_segura_resume_pt handler);
void ngx_segura_resume_pipe(ngx_http_request_t *r, void *slot);


#endif /* _NGX_SEGURA_RESUME_H_INCLUDED_ */
