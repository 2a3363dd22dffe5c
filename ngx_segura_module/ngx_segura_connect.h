
/*
 * Copyright (C) ngx_segura_module authors
 */


#ifndef _NGX_SEGURA_CONNECT_H_INCLUDED_
#define _NGX_SEGURA_CONNECT_H_INCLUDED_


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>
#include "ngx_segura.h"
#include "ngx_segura_ssh.h"
#include "ngx_segura_exec.h"


typedef struct ngx_segura_connect_s  ngx_segura_connect_t;

/*
 * host_key: the key exchange is done and ssh->host_key is known; returns
 * NGX_OK to go on, NGX_ERROR (ssh->err set) to fail, or NGX_AGAIN when
 * the owner decides later and calls ngx_segura_connect_resume().
 * done: called exactly once, on success (ssh->err is NONE and cn->peer
 * is the owner's) or failure (everything released).
 *
 * auth_only: stop once the device has accepted the key (after AUTH): no
 * channel, pty or shell is asked for, the connection and the SSH session
 * are closed, and done is called with ssh->err NONE, cn->authenticated
 * set and cn->peer NULL.
 * For probes of a key's deployment (POST /api/keys/{id}/check).
 *
 * exec (not NULL): after AUTH, run one command instead of a shell
 * (ngx_segura_exec.c: no pty, stdin given, output and exit status kept
 * in *exec), under the same deadline; then close as auth_only does, and
 * call done with ssh->err NONE, cn->executed set and cn->peer NULL.
 * For deploying keys (POST /api/keys/{id}/deploy and withdraw).
 */
typedef ngx_int_t (*ngx_segura_connect_host_key_pt)(ngx_segura_connect_t *cn);
typedef void (*ngx_segura_connect_done_pt)(ngx_segura_connect_t *cn);


typedef enum {
    NGX_SEGURA_CONNECT_IDLE = 0,
    NGX_SEGURA_CONNECT_RESOLVE,
    NGX_SEGURA_CONNECT_TCP,
    NGX_SEGURA_CONNECT_HANDSHAKE,
    NGX_SEGURA_CONNECT_HOST_KEY,     /* paused: the owner decides */
    NGX_SEGURA_CONNECT_OFFER,
    NGX_SEGURA_CONNECT_SIGN,         /* paused: a pool thread signs */
    NGX_SEGURA_CONNECT_AUTH,
    NGX_SEGURA_CONNECT_SHELL,
    NGX_SEGURA_CONNECT_EXEC,
    NGX_SEGURA_CONNECT_DONE
} ngx_segura_connect_state_e;


typedef struct ngx_segura_connect_resolve_s  ngx_segura_connect_resolve_t;


struct ngx_segura_connect_s {
    /* in, set by the owner before ngx_segura_connect_start() */
    ngx_str_t                        host;     /* NUL-terminated */
    in_port_t                        port;
    ngx_msec_t                       timeout;  /* for all of the set-up */
    ngx_resolver_t                  *resolver;
    ngx_msec_t                       resolver_timeout;
    ngx_thread_pool_t               *thread_pool;
    ngx_log_t                       *log;
    ngx_pool_t                      *pool;
    ngx_segura_ssh_t                *ssh;
    ngx_segura_connect_host_key_pt   host_key;
    ngx_segura_connect_done_pt       done;
    void                            *data;
    ngx_segura_exec_t               *exec;
    unsigned                         auth_only:1;

    /* out */
    ngx_connection_t                *peer;     /* wraps libssh's socket */
    ngx_msec_t                       started;
    unsigned                         authenticated:1;  /* auth_only */
    unsigned                         executed:1;       /* exec */

    /* private */
    ngx_segura_connect_state_e       state;
    ngx_event_t                      deadline;
    ngx_resolver_ctx_t              *rctx;
    ngx_segura_connect_resolve_t    *presolve;
    ngx_addr_t                      *addrs;
    ngx_uint_t                       naddrs;
    ngx_uint_t                       next;
    ngx_err_t                        last_err;
    ngx_thread_task_t               *task;

    unsigned                         paused:1;
    unsigned                         expired:1;
    unsigned                         aborted:1;
    ngx_segura_ws_err_e              abort_err;
};


/* event loop only */
void ngx_segura_connect_start(ngx_segura_connect_t *cn);
void ngx_segura_connect_resume(ngx_segura_connect_t *cn, ngx_int_t rc);
void ngx_segura_connect_abort(ngx_segura_connect_t *cn,
    ngx_segura_ws_err_e err, const char *why);
ngx_uint_t ngx_segura_connect_busy(ngx_segura_connect_t *cn);
void ngx_segura_connect_release_peer(ngx_connection_t *peer);


#endif /* _NGX_SEGURA_CONNECT_H_INCLUDED_ */
