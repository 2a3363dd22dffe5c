
/*
 * Copyright (C) ngx_segura_module authors
 */


#ifndef _NGX_SEGURA_SSH_H_INCLUDED_
#define _NGX_SEGURA_SSH_H_INCLUDED_


#include <ngx_config.h>
#include <ngx_core.h>
#include "ngx_segura.h"

#include <libssh/libssh.h>
#include <libssh/callbacks.h>


#define NGX_SEGURA_SSH_LINE_LEN    4096
#define NGX_SEGURA_SSH_FP_LEN      64
#define NGX_SEGURA_SSH_ERRLEN      256


typedef struct {
    /* in, owned by the caller */
    const char          *address;
    ngx_uint_t           port;
    const char          *username;
    const char          *pinned_type;   /* type of the pinned key, or NULL */
    ngx_msec_t           timeout;       /* for connect, kex and auth */
    unsigned             cols;
    unsigned             rows;

    /* in: the private key, freed (and so wiped) by ngx_segura_ssh_login() */
    ssh_key              key;

    /* out */
    ssh_session          session;       /* owns the socket */
    ssh_channel          channel;
    ngx_socket_t         fd;
    ngx_msec_t           started;
    ngx_segura_ws_err_e  err;
    char                 host_key[NGX_SEGURA_SSH_LINE_LEN];
    char                 host_key_fp[NGX_SEGURA_SSH_FP_LEN];
    char                 text[NGX_SEGURA_SSH_ERRLEN];

    /*
     * which of the channel's buffers in libssh may hold data: [0] stdout,
     * [1] stderr.  Set whenever libssh puts a data packet in one, in
     * whichever call read it from the socket; cleared by the relay when a
     * read of that stream finds it empty.  Reading or polling a stream
     * whose buffer is empty costs libssh a poll() and a recv().
     */
    u_char               buffered[2];
    struct ssh_channel_callbacks_struct  callbacks;
} ngx_segura_ssh_t;


/* pool threads only */
ngx_int_t ngx_segura_ssh_connect(ngx_segura_ssh_t *ssh);
ngx_int_t ngx_segura_ssh_login(ngx_segura_ssh_t *ssh);

/* either thread, whoever owns the session at the time; safe to call twice */
void ngx_segura_ssh_close(ngx_segura_ssh_t *ssh);


#endif /* _NGX_SEGURA_SSH_H_INCLUDED_ */
