
/*
 * Copyright (C) ngx_segura_module authors
 */


/*
 * One command on a device, on an SSH session that is already
 * authenticated (ngx_segura_connect.c's exec mode): a channel, an exec
 * request with a fixed command string, the input on stdin then EOF, and
 * the output and exit status read back.  No pty, no shell, no
 * environment.  Every step returns at once (libssh non-blocking); the
 * owner calls again on the socket's readiness, under its own deadline.
 *
 * Event loop only, by the owner of the session.  Nothing here logs.
 */


#include <ngx_config.h>
#include <ngx_core.h>
#include "ngx_segura.h"
#include "ngx_segura_ssh.h"
#include "ngx_segura_exec.h"


static ngx_int_t ngx_segura_exec_read(ngx_segura_ssh_t *ssh,
    ngx_segura_exec_t *ex);
static ngx_int_t ngx_segura_exec_lost(ngx_segura_ssh_t *ssh,
    const char *what);


ngx_int_t
ngx_segura_exec_run(ngx_segura_ssh_t *ssh, ngx_segura_exec_t *ex)
{
    int  rc;

    for ( ;; ) {

        switch (ex->step) {

        case 0:
            ex->status = -1;

            ssh->channel = ssh_channel_new(ssh->session);
            if (ssh->channel == NULL) {
                return ngx_segura_ssh_fail(ssh, NGX_SEGURA_WS_ERR_INTERNAL,
                                           "ssh_channel_new()",
                                           ssh_get_error(ssh->session));
            }

            ex->step++;
            break;

        case 1:
            rc = ssh_channel_open_session(ssh->channel);

            if (rc == SSH_AGAIN) {
                return NGX_AGAIN;
            }

            if (rc != SSH_OK) {
                return ngx_segura_ssh_fail(ssh,
                                           NGX_SEGURA_WS_ERR_SHELL_FAILED,
                                           "ssh_channel_open_session()",
                                           ssh_get_error(ssh->session));
            }

            ex->step++;
            break;

        case 2:
            rc = ssh_channel_request_exec(ssh->channel, ex->command);

            if (rc == SSH_AGAIN) {
                return NGX_AGAIN;
            }

            if (rc != SSH_OK) {
                return ngx_segura_ssh_fail(ssh,
                                           NGX_SEGURA_WS_ERR_SHELL_FAILED,
                                           "ssh_channel_request_exec()",
                                           ssh_get_error(ssh->session));
            }

            ex->step++;
            break;

        case 3:
            if (ex->sent < ex->input_len) {
                rc = ssh_channel_write(ssh->channel, ex->input + ex->sent,
                                       ex->input_len - ex->sent);

                if (rc == SSH_ERROR) {
                    return ngx_segura_exec_lost(ssh, "ssh_channel_write()");
                }

                if (rc == 0) {
                    /* no window yet: the device's answer grows it */
                    (void) ngx_segura_exec_read(ssh, ex);
                    return NGX_AGAIN;
                }

                ex->sent += rc;
                break;
            }

            if (ssh_channel_send_eof(ssh->channel) != SSH_OK) {
                return ngx_segura_exec_lost(ssh, "ssh_channel_send_eof()");
            }

            ex->step++;
            break;

        case 4:
            rc = ngx_segura_exec_read(ssh, ex);

            if (rc != NGX_OK) {
                return rc;
            }

            ex->step++;
            return NGX_OK;

        default:
            return NGX_OK;
        }
    }
}


/* what the command wrote, then its end: EOF, and the exit status or close */

static ngx_int_t
ngx_segura_exec_read(ngx_segura_ssh_t *ssh, ngx_segura_exec_t *ex)
{
    int          n, status;
    char        *to;
    size_t      *len;
    ngx_uint_t   i, got;
    char         buf[4096];

    do {
        got = 0;

        for (i = 0; i < 2; i++) {
            n = ssh_channel_read_nonblocking(ssh->channel, buf, sizeof(buf),
                                             (int) i);

            if (n == SSH_ERROR) {
                return ngx_segura_exec_lost(ssh,
                                            "ssh_channel_read_nonblocking()");
            }

            if (n <= 0) {
                continue;
            }

            got = 1;

            to = i ? ex->err : ex->out;
            len = i ? &ex->err_len : &ex->out_len;

            n = ngx_min((size_t) n, NGX_SEGURA_EXEC_OUT_LEN - 1 - *len);
            ngx_memcpy(to + *len, buf, n);
            *len += n;
            to[*len] = '\0';
        }

    } while (got);

    if (!ssh_channel_is_eof(ssh->channel)
        && !ssh_channel_is_closed(ssh->channel))
    {
        if (!ssh_is_connected(ssh->session)) {
            return ngx_segura_exec_lost(ssh, "the command");
        }

        return NGX_AGAIN;
    }

    /*
     * OpenSSH sends exit-status after EOF and before close; after EOF
     * libssh reads the socket only when asked, and this asks once,
     * without blocking
     */

    status = ssh_channel_get_exit_status(ssh->channel);

    if (status == -1 && !ssh_channel_is_closed(ssh->channel)) {
        if (!ssh_is_connected(ssh->session)) {
            return ngx_segura_exec_lost(ssh, "the command");
        }

        return NGX_AGAIN;
    }

    ex->status = status;

    return NGX_OK;
}


static ngx_int_t
ngx_segura_exec_lost(ngx_segura_ssh_t *ssh, const char *what)
{
    return ngx_segura_ssh_fail(ssh, NGX_SEGURA_WS_ERR_DEVICE_UNREACHABLE,
                               what, ssh_get_error(ssh->session));
}
