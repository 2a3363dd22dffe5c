
/*
 * Copyright (C) ngx_segura_module authors
 */


/*
 * The SSH side of a session, with libssh.
 *
 * ngx_segura_ssh_connect() and ngx_segura_ssh_login() block (DNS, TCP
 * connect, key exchange, authentication, channel setup) and run in pool
 * threads only, on a session that no other thread touches meanwhile.
 * Afterwards the session is switched to non-blocking mode and driven by
 * the event loop (ngx_segura_session.c).  Nothing here logs: failures are
 * described in ssh->err and ssh->text for the completion handler.
 */


#include <ngx_config.h>
#include <ngx_core.h>
#include "ngx_segura.h"
#include "ngx_segura_ssh.h"

#include <netdb.h>
#include <poll.h>


static ngx_int_t ngx_segura_ssh_tcp(ngx_segura_ssh_t *ssh);
static ngx_msec_int_t ngx_segura_ssh_left(ngx_segura_ssh_t *ssh);
static ngx_msec_t ngx_segura_ssh_now(void);
static int ngx_segura_ssh_data(ssh_session session, ssh_channel channel,
    void *data, uint32_t len, int is_stderr, void *userdata);
static ngx_int_t ngx_segura_ssh_fail(ngx_segura_ssh_t *ssh,
    ngx_segura_ws_err_e err, const char *what, const char *text);


ngx_int_t
ngx_segura_ssh_connect(ngx_segura_ssh_t *ssh)
{
    int              rc, off;
    char            *b64, *fp;
    long             sec, usec;
    size_t           hlen;
    ssh_key          server;
    const char      *type, *hostkeys;
    unsigned char   *hash;
    ngx_msec_int_t   left;

    ssh->started = ngx_segura_ssh_now();
    ssh->fd = (ngx_socket_t) -1;

    if (ngx_segura_ssh_tcp(ssh) != NGX_OK) {
        return NGX_ERROR;
    }

    ssh->session = ssh_new();
    if (ssh->session == NULL) {
        ngx_close_socket(ssh->fd);
        ssh->fd = (ngx_socket_t) -1;
        return ngx_segura_ssh_fail(ssh, NGX_SEGURA_WS_ERR_INTERNAL,
                                   "ssh_new()", "out of memory");
    }

    /* from here the session owns the socket and closes it in ssh_free() */

    off = 0;
    left = ngx_segura_ssh_left(ssh);
    sec = left / 1000;
    usec = (left % 1000) * 1000;

    /*
     * with a pinned host key, offer only its algorithms: otherwise a
     * server with several host keys may present another one and look
     * like a changed key
     */

    hostkeys = NULL;

    if (ssh->pinned_type != NULL) {
        if (ngx_strcmp(ssh->pinned_type, "ssh-rsa") == 0) {
            hostkeys = "rsa-sha2-512,rsa-sha2-256,ssh-rsa";

        } else {
            hostkeys = ssh->pinned_type;
        }
    }

    if (ssh_options_set(ssh->session, SSH_OPTIONS_PROCESS_CONFIG, &off) < 0
        || ssh_options_set(ssh->session, SSH_OPTIONS_FD, &ssh->fd) < 0
        || ssh_options_set(ssh->session, SSH_OPTIONS_HOST, ssh->address) < 0
        || ssh_options_set(ssh->session, SSH_OPTIONS_USER, ssh->username) < 0
        || ssh_options_set(ssh->session, SSH_OPTIONS_TIMEOUT, &sec) < 0
        || ssh_options_set(ssh->session, SSH_OPTIONS_TIMEOUT_USEC, &usec) < 0
        || (hostkeys != NULL
            && ssh_options_set(ssh->session, SSH_OPTIONS_HOSTKEYS, hostkeys)
               < 0))
    {
        return ngx_segura_ssh_fail(ssh, NGX_SEGURA_WS_ERR_INTERNAL,
                                   "ssh_options_set()",
                                   ssh_get_error(ssh->session));
    }

    ssh->fd = (ngx_socket_t) -1;

    rc = ssh_connect(ssh->session);

    if (rc != SSH_OK) {
        return ngx_segura_ssh_fail(ssh, ngx_segura_ssh_left(ssh) <= 0
                                        ? NGX_SEGURA_WS_ERR_CONNECT_TIMEOUT
                                        : NGX_SEGURA_WS_ERR_DEVICE_UNREACHABLE,
                                   "ssh_connect()",
                                   ssh_get_error(ssh->session));
    }

    /* the key the server proved it holds during the key exchange */

    server = NULL;

    if (ssh_get_server_publickey(ssh->session, &server) != SSH_OK) {
        return ngx_segura_ssh_fail(ssh, NGX_SEGURA_WS_ERR_INTERNAL,
                                   "ssh_get_server_publickey()",
                                   ssh_get_error(ssh->session));
    }

    b64 = NULL;
    hash = NULL;
    fp = NULL;
    rc = NGX_ERROR;

    type = ssh_key_type_to_char(ssh_key_type(server));

    if (type == NULL
        || ssh_pki_export_pubkey_base64(server, &b64) != SSH_OK
        || ssh_get_publickey_hash(server, SSH_PUBLICKEY_HASH_SHA256, &hash,
                                  &hlen) != 0
        || (fp = ssh_get_fingerprint_hash(SSH_PUBLICKEY_HASH_SHA256, hash,
                                          hlen)) == NULL
        || ngx_strlen(type) + 1 + ngx_strlen(b64) + 1 > sizeof(ssh->host_key)
        || ngx_strlen(fp) + 1 > sizeof(ssh->host_key_fp))
    {
        (void) ngx_segura_ssh_fail(ssh, NGX_SEGURA_WS_ERR_INTERNAL,
                                   "exporting the host key", "failed");
        goto done;
    }

    (void) ngx_snprintf((u_char *) ssh->host_key, sizeof(ssh->host_key),
                        "%s %s%Z", type, b64);
    (void) ngx_cpystrn((u_char *) ssh->host_key_fp, (u_char *) fp,
                       sizeof(ssh->host_key_fp));

    rc = NGX_OK;

done:

    ssh_string_free_char(fp);
    ssh_clean_pubkey_hash(&hash);
    ssh_string_free_char(b64);
    ssh_key_free(server);

    return rc;
}


ngx_int_t
ngx_segura_ssh_login(ngx_segura_ssh_t *ssh)
{
    int       rc;
    long      sec, usec;
    ssh_key   key;

    key = ssh->key;
    ssh->key = NULL;

    if (ngx_segura_ssh_left(ssh) <= 0) {
        ssh_key_free(key);
        return ngx_segura_ssh_fail(ssh, NGX_SEGURA_WS_ERR_CONNECT_TIMEOUT,
                                   "authenticating", "time is up");
    }

    sec = ngx_segura_ssh_left(ssh) / 1000;
    usec = (ngx_segura_ssh_left(ssh) % 1000) * 1000;

    (void) ssh_options_set(ssh->session, SSH_OPTIONS_TIMEOUT, &sec);
    (void) ssh_options_set(ssh->session, SSH_OPTIONS_TIMEOUT_USEC, &usec);

    rc = ssh_userauth_publickey(ssh->session, NULL, key);

    /* the private key is not needed any more: ssh_key_free() wipes it */
    ssh_key_free(key);

    if (rc == SSH_AUTH_ERROR) {
        return ngx_segura_ssh_fail(ssh, ngx_segura_ssh_left(ssh) <= 0
                                        ? NGX_SEGURA_WS_ERR_CONNECT_TIMEOUT
                                        : NGX_SEGURA_WS_ERR_DEVICE_UNREACHABLE,
                                   "ssh_userauth_publickey()",
                                   ssh_get_error(ssh->session));
    }

    if (rc != SSH_AUTH_SUCCESS) {
        return ngx_segura_ssh_fail(ssh, NGX_SEGURA_WS_ERR_AUTH_REJECTED,
                                   "ssh_userauth_publickey()",
                                   "the device refused the key");
    }

    ssh->channel = ssh_channel_new(ssh->session);
    if (ssh->channel == NULL) {
        return ngx_segura_ssh_fail(ssh, NGX_SEGURA_WS_ERR_INTERNAL,
                                   "ssh_channel_new()",
                                   ssh_get_error(ssh->session));
    }

    ngx_memzero(&ssh->callbacks, sizeof(ssh->callbacks));
    ssh->callbacks.userdata = ssh;
    ssh->callbacks.channel_data_function = ngx_segura_ssh_data;
    ssh_callbacks_init(&ssh->callbacks);

    if (ssh_set_channel_callbacks(ssh->channel, &ssh->callbacks) != SSH_OK) {
        return ngx_segura_ssh_fail(ssh, NGX_SEGURA_WS_ERR_INTERNAL,
                                   "ssh_set_channel_callbacks()",
                                   ssh_get_error(ssh->session));
    }

    if (ssh_channel_open_session(ssh->channel) != SSH_OK) {
        return ngx_segura_ssh_fail(ssh, NGX_SEGURA_WS_ERR_SHELL_FAILED,
                                   "ssh_channel_open_session()",
                                   ssh_get_error(ssh->session));
    }

    if (ssh_channel_request_pty_size(ssh->channel, "xterm-256color",
                                     ssh->cols, ssh->rows)
        != SSH_OK)
    {
        return ngx_segura_ssh_fail(ssh, NGX_SEGURA_WS_ERR_SHELL_FAILED,
                                   "ssh_channel_request_pty_size()",
                                   ssh_get_error(ssh->session));
    }

    /*
     * the browser's terminal speaks UTF-8: say so, as ssh(1) forwards
     * LANG; a device that does not accept it (no AcceptEnv) refuses the
     * request, and the shell keeps the device's own locale
     */

    (void) ssh_channel_request_env(ssh->channel, "LANG", "C.UTF-8");

    if (ssh_channel_request_shell(ssh->channel) != SSH_OK) {
        return ngx_segura_ssh_fail(ssh, NGX_SEGURA_WS_ERR_SHELL_FAILED,
                                   "ssh_channel_request_shell()",
                                   ssh_get_error(ssh->session));
    }

    /* the relay drives the session from the event loop */

    ssh_set_blocking(ssh->session, 0);
    ssh->fd = ssh_get_fd(ssh->session);

    return NGX_OK;
}


static int
ngx_segura_ssh_data(ssh_session session, ssh_channel channel, void *data,
    uint32_t len, int is_stderr, void *userdata)
{
    ngx_segura_ssh_t  *ssh;

    ssh = userdata;

    /*
     * libssh has just added a data packet to the channel's buffer: the
     * bytes stay there (0 taken) for the relay to read; only note which
     * stream has some
     */

    ssh->buffered[is_stderr ? 1 : 0] = 1;

    return 0;
}


void
ngx_segura_ssh_close(ngx_segura_ssh_t *ssh)
{
    if (ssh->key != NULL) {
        ssh_key_free(ssh->key);
        ssh->key = NULL;
    }

    if (ssh->channel != NULL) {
        ssh_channel_free(ssh->channel);
        ssh->channel = NULL;
    }

    if (ssh->session != NULL) {
        /* closes the socket */
        ssh_free(ssh->session);
        ssh->session = NULL;
        ssh->fd = (ngx_socket_t) -1;
    }

    if (ssh->fd != (ngx_socket_t) -1) {
        (void) ngx_close_socket(ssh->fd);
        ssh->fd = (ngx_socket_t) -1;
    }
}


static ngx_int_t
ngx_segura_ssh_tcp(ngx_segura_ssh_t *ssh)
{
    int               rc, err;
    char              port[NGX_INT_T_LEN + 1];
    socklen_t         len;
    ngx_err_t         last;
    ngx_socket_t      s;
    struct pollfd     pfd;
    ngx_msec_int_t    left;
    struct addrinfo   hints, *res, *ai;

    /* DNS blocks: that is why this runs in a pool thread */

    ngx_memzero(&hints, sizeof(struct addrinfo));
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_STREAM;
    hints.ai_protocol = IPPROTO_TCP;

    (void) ngx_snprintf((u_char *) port, sizeof(port), "%ui%Z", ssh->port);

    rc = getaddrinfo(ssh->address, port, &hints, &res);

    if (rc != 0) {
        return ngx_segura_ssh_fail(ssh, NGX_SEGURA_WS_ERR_DEVICE_UNREACHABLE,
                                   "getaddrinfo()", gai_strerror(rc));
    }

    last = 0;

    for (ai = res; ai != NULL; ai = ai->ai_next) {

        left = ngx_segura_ssh_left(ssh);
        if (left <= 0) {
            freeaddrinfo(res);
            return ngx_segura_ssh_fail(ssh, NGX_SEGURA_WS_ERR_CONNECT_TIMEOUT,
                                       "connect()", "timed out");
        }

        s = socket(ai->ai_family, ai->ai_socktype | SOCK_CLOEXEC,
                   ai->ai_protocol);
        if (s == (ngx_socket_t) -1) {
            last = ngx_socket_errno;
            continue;
        }

        if (ngx_nonblocking(s) == -1) {
            last = ngx_socket_errno;
            (void) ngx_close_socket(s);
            continue;
        }

        rc = connect(s, ai->ai_addr, ai->ai_addrlen);

        if (rc == -1 && ngx_socket_errno != NGX_EINPROGRESS) {
            last = ngx_socket_errno;
            (void) ngx_close_socket(s);
            continue;
        }

        if (rc == -1) {
            pfd.fd = s;
            pfd.events = POLLOUT;
            pfd.revents = 0;

            do {
                rc = poll(&pfd, 1, (int) left);
            } while (rc == -1 && ngx_errno == NGX_EINTR);

            if (rc == 0) {
                (void) ngx_close_socket(s);
                freeaddrinfo(res);
                return ngx_segura_ssh_fail(ssh,
                                           NGX_SEGURA_WS_ERR_CONNECT_TIMEOUT,
                                           "connect()", "timed out");
            }

            err = 0;
            len = sizeof(int);

            if (rc == -1
                || getsockopt(s, SOL_SOCKET, SO_ERROR, (void *) &err, &len)
                   == -1)
            {
                err = ngx_socket_errno;
            }

            if (err) {
                last = err;
                (void) ngx_close_socket(s);
                continue;
            }
        }

        freeaddrinfo(res);

        /* libssh does its key exchange with blocking calls and timeouts */

        if (ngx_blocking(s) == -1) {
            last = ngx_socket_errno;
            (void) ngx_close_socket(s);
            return ngx_segura_ssh_fail(ssh, NGX_SEGURA_WS_ERR_INTERNAL,
                                       "ioctl(!FIONBIO)", strerror(last));
        }

        ssh->fd = s;
        return NGX_OK;
    }

    freeaddrinfo(res);

    return ngx_segura_ssh_fail(ssh, NGX_SEGURA_WS_ERR_DEVICE_UNREACHABLE,
                               "connect()", last ? strerror(last)
                                                 : "no address");
}


static ngx_msec_int_t
ngx_segura_ssh_left(ngx_segura_ssh_t *ssh)
{
    return (ngx_msec_int_t) (ssh->started + ssh->timeout
                             - ngx_segura_ssh_now());
}


static ngx_msec_t
ngx_segura_ssh_now(void)
{
    struct timespec  ts;

    /* ngx_current_msec belongs to the event loop, not to pool threads */

    (void) clock_gettime(CLOCK_MONOTONIC, &ts);

    return (ngx_msec_t) ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}


static ngx_int_t
ngx_segura_ssh_fail(ngx_segura_ssh_t *ssh, ngx_segura_ws_err_e err,
    const char *what, const char *text)
{
    ssh->err = err;

    (void) ngx_snprintf((u_char *) ssh->text, sizeof(ssh->text) - 1,
                        "%s failed: %s%Z", what, text ? text : "");
    ssh->text[sizeof(ssh->text) - 1] = '\0';

    return NGX_ERROR;
}
