
/*
 * Copyright (C) ngx_segura_module authors
 */


#ifndef _NGX_SEGURA_EXEC_H_INCLUDED_
#define _NGX_SEGURA_EXEC_H_INCLUDED_


#include <ngx_config.h>
#include <ngx_core.h>
#include "ngx_segura.h"
#include "ngx_segura_ssh.h"


#define NGX_SEGURA_EXEC_OUT_LEN    256


/*
 * One command on an authenticated SSH session, without a pty: what it
 * reads on stdin is given, what it writes is kept (the first
 * NGX_SEGURA_EXEC_OUT_LEN - 1 bytes of each stream, NUL-terminated; the
 * rest is read and dropped), and its exit status.
 */

typedef struct {
    /* in, owned by the caller */
    const char   *command;     /* a fixed string: never user data */
    const u_char *input;       /* the command's stdin, then EOF */
    size_t        input_len;

    /* out */
    int           status;      /* the exit status; -1: none was sent */
    size_t        out_len;
    size_t        err_len;
    char          out[NGX_SEGURA_EXEC_OUT_LEN];
    char          err[NGX_SEGURA_EXEC_OUT_LEN];

    /* private */
    size_t        sent;
    ngx_uint_t    step;
} ngx_segura_exec_t;


/*
 * Whoever owns the session calls it (ngx_segura_connect.c, on the event
 * loop) on the socket's readiness: NGX_OK once the channel is closed or
 * the exit status is known, NGX_AGAIN while it waits, NGX_ERROR with
 * ssh->err and ssh->text set.  The channel is ssh->channel (freed by
 * ngx_segura_ssh_close()).
 */
ngx_int_t ngx_segura_exec_run(ngx_segura_ssh_t *ssh, ngx_segura_exec_t *ex);


#endif /* _NGX_SEGURA_EXEC_H_INCLUDED_ */
