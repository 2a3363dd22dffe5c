
/*
 * Copyright (C) ngx_segura_module authors
 */


/*
 * The SSH side of a session, with libssh in non-blocking mode.
 *
 * These are the steps of the set-up, on a socket that is already
 * connected (ngx_segura_connect.c drives them from socket readiness, with
 * one deadline for all of them): the banners and the key exchange, the
 * public-key authentication, then the channel, its pty, the environment
 * and the shell.  Every step returns at once; none waits for the device.
 *
 * Whoever owns the session calls them, one thread at a time: the event
 * loop, or a pool thread for the one call of ngx_segura_ssh_auth() that
 * signs with a heavy key.  Nothing here logs: failures are described in
 * ssh->err and ssh->text for the owner to log.
 */


#include <ngx_config.h>
#include <ngx_core.h>
#include "ngx_segura.h"
#include "ngx_segura_ssh.h"


static ngx_int_t ngx_segura_ssh_export_host_key(ngx_segura_ssh_t *ssh);
static ngx_int_t ngx_segura_ssh_auth_password(ngx_segura_ssh_t *ssh);
static ngx_int_t ngx_segura_ssh_lost(ngx_segura_ssh_t *ssh,
    const char *what);
static int ngx_segura_ssh_data(ssh_session session, ssh_channel channel,
    void *data, uint32_t len, int is_stderr, void *userdata);


/*
 * Takes the socket: from here ssh_free() closes it, also when this
 * fails.  The descriptor must fit in 16 bits (see NGX_SEGURA_SSH_MAX_FD).
 */

ngx_int_t
ngx_segura_ssh_start(ngx_segura_ssh_t *ssh, ngx_socket_t fd, const char *host)
{
    int          off;
    const char  *hostkeys;

    ssh->session = ssh_new();
    if (ssh->session == NULL) {
        (void) ngx_close_socket(fd);
        return ngx_segura_ssh_fail(ssh, NGX_SEGURA_WS_ERR_INTERNAL,
                                   "ssh_new()", "out of memory");
    }

    off = 0;

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

    /*
     * no configuration files and an explicit ssh directory: nothing of
     * the worker's user (home directory, ~/.ssh/config) is looked up
     */

    if (ssh_options_set(ssh->session, SSH_OPTIONS_FD, &fd) < 0) {
        (void) ngx_close_socket(fd);
        return ngx_segura_ssh_fail(ssh, NGX_SEGURA_WS_ERR_INTERNAL,
                                   "ssh_options_set(SSH_OPTIONS_FD)",
                                   ssh_get_error(ssh->session));
    }

    /* the session owns the socket now */

    ssh->fd = fd;

    if (ssh_options_set(ssh->session, SSH_OPTIONS_PROCESS_CONFIG, &off) < 0
        || ssh_options_set(ssh->session, SSH_OPTIONS_SSH_DIR, "/nonexistent")
           < 0
        || ssh_options_set(ssh->session, SSH_OPTIONS_HOST, host) < 0
        || ssh_options_set(ssh->session, SSH_OPTIONS_USER, ssh->username) < 0
        || ssh_options_set(ssh->session, SSH_OPTIONS_CIPHERS_C_S,
                           NGX_SEGURA_SSH_CIPHERS) < 0
        || ssh_options_set(ssh->session, SSH_OPTIONS_CIPHERS_S_C,
                           NGX_SEGURA_SSH_CIPHERS) < 0
        || (hostkeys != NULL
            && ssh_options_set(ssh->session, SSH_OPTIONS_HOSTKEYS, hostkeys)
               < 0))
    {
        return ngx_segura_ssh_fail(ssh, NGX_SEGURA_WS_ERR_INTERNAL,
                                   "ssh_options_set()",
                                   ssh_get_error(ssh->session));
    }

    ssh_set_blocking(ssh->session, 0);

    return NGX_OK;
}


/* the banners and the key exchange; then the host key is known */

ngx_int_t
ngx_segura_ssh_handshake(ngx_segura_ssh_t *ssh)
{
    switch (ssh_connect(ssh->session)) {

    case SSH_OK:
        return ngx_segura_ssh_export_host_key(ssh);

    case SSH_AGAIN:
        return NGX_AGAIN;

    default:
        return ngx_segura_ssh_fail(ssh, NGX_SEGURA_WS_ERR_DEVICE_UNREACHABLE,
                                   "ssh_connect()",
                                   ssh_get_error(ssh->session));
    }
}


static ngx_int_t
ngx_segura_ssh_export_host_key(ngx_segura_ssh_t *ssh)
{
    char           *b64, *fp;
    size_t          hlen;
    ssh_key         server;
    ngx_int_t       rc;
    const char     *type;
    unsigned char  *hash;

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


/* whether signing with the key is worth a pool thread */

ngx_uint_t
ngx_segura_ssh_heavy(ngx_segura_ssh_t *ssh)
{
    return ssh->rsa_bits > NGX_SEGURA_SSH_HEAVY_RSA;
}


/*
 * Asks whether the device accepts the key, without a signature: a heavy
 * key is only signed with once the device said it would take it, and the
 * signature then needs no more waiting before it is sent.
 */

ngx_int_t
ngx_segura_ssh_offer(ngx_segura_ssh_t *ssh)
{
    switch (ssh_userauth_try_publickey(ssh->session, NULL, ssh->key)) {

    case SSH_AUTH_SUCCESS:
        return NGX_OK;

    case SSH_AUTH_AGAIN:
        return NGX_AGAIN;

    case SSH_AUTH_ERROR:
        ssh_key_free(ssh->key);
        ssh->key = NULL;
        return ngx_segura_ssh_lost(ssh, "ssh_userauth_try_publickey()");

    default:
        ssh_key_free(ssh->key);
        ssh->key = NULL;
        return ngx_segura_ssh_fail(ssh, NGX_SEGURA_WS_ERR_AUTH_REJECTED,
                                   "ssh_userauth_try_publickey()",
                                   "the device refused the key");
    }
}


ngx_int_t
ngx_segura_ssh_auth(ngx_segura_ssh_t *ssh)
{
    int  rc;

    /*
     * the first call signs and sends; later calls find the request
     * pending in libssh and only look for the answer (the key must be
     * passed each time, it is not used again)
     */

    if (ssh->key == NULL && ssh->password != NULL) {
        return ngx_segura_ssh_auth_password(ssh);
    }

    rc = ssh_userauth_publickey(ssh->session, NULL, ssh->key);

    if (rc == SSH_AUTH_AGAIN) {
        return NGX_AGAIN;
    }

    /* the private key is not needed any more: ssh_key_free() wipes it */

    ssh_key_free(ssh->key);
    ssh->key = NULL;

    if (rc == SSH_AUTH_SUCCESS) {
        return NGX_OK;
    }

    if (rc == SSH_AUTH_ERROR) {
        return ngx_segura_ssh_lost(ssh, "ssh_userauth_publickey()");
    }

    return ngx_segura_ssh_fail(ssh, NGX_SEGURA_WS_ERR_AUTH_REJECTED,
                               "ssh_userauth_publickey()",
                               "the device refused the key");
}


/*
 * password authentication, for a deploy with a one-time password: the
 * first call sends, later ones look for the answer (libssh keeps the
 * request pending and ignores the password then)
 */

static ngx_int_t
ngx_segura_ssh_auth_password(ngx_segura_ssh_t *ssh)
{
    switch (ssh_userauth_password(ssh->session, NULL, ssh->password)) {

    case SSH_AUTH_SUCCESS:
        return NGX_OK;

    case SSH_AUTH_AGAIN:
        return NGX_AGAIN;

    case SSH_AUTH_ERROR:
        return ngx_segura_ssh_lost(ssh, "ssh_userauth_password()");

    default:
        return ngx_segura_ssh_fail(ssh, NGX_SEGURA_WS_ERR_AUTH_REJECTED,
                                   "ssh_userauth_password()",
                                   "the device refused the password");
    }
}


/* the channel, its pty, LANG and the shell, one request at a time */

ngx_int_t
ngx_segura_ssh_shell(ngx_segura_ssh_t *ssh)
{
    int  rc;

    for ( ;; ) {

        switch (ssh->step) {

        case 0:
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

            if (ssh_set_channel_callbacks(ssh->channel, &ssh->callbacks)
                != SSH_OK)
            {
                return ngx_segura_ssh_fail(ssh, NGX_SEGURA_WS_ERR_INTERNAL,
                                           "ssh_set_channel_callbacks()",
                                           ssh_get_error(ssh->session));
            }

            ssh->step++;
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

            ssh->step++;
            break;

        case 2:
            rc = ssh_channel_request_pty_size(ssh->channel, "xterm-256color",
                                              ssh->cols, ssh->rows);

            if (rc == SSH_AGAIN) {
                return NGX_AGAIN;
            }

            if (rc != SSH_OK) {
                return ngx_segura_ssh_fail(ssh,
                                           NGX_SEGURA_WS_ERR_SHELL_FAILED,
                                           "ssh_channel_request_pty_size()",
                                           ssh_get_error(ssh->session));
            }

            ssh->step++;
            break;

        case 3:

            /*
             * the browser's terminal speaks UTF-8: say so, as ssh(1)
             * forwards LANG; a device that does not accept it (no
             * AcceptEnv) refuses the request, and the shell keeps the
             * device's own locale
             */

            rc = ssh_channel_request_env(ssh->channel, "LANG", "C.UTF-8");

            if (rc == SSH_AGAIN) {
                return NGX_AGAIN;
            }

            if (rc != SSH_OK && !ssh_is_connected(ssh->session)) {
                return ngx_segura_ssh_lost(ssh, "ssh_channel_request_env()");
            }

            ssh->step++;
            break;

        case 4:
            rc = ssh_channel_request_shell(ssh->channel);

            if (rc == SSH_AGAIN) {
                return NGX_AGAIN;
            }

            if (rc != SSH_OK) {
                return ngx_segura_ssh_fail(ssh,
                                           NGX_SEGURA_WS_ERR_SHELL_FAILED,
                                           "ssh_channel_request_shell()",
                                           ssh_get_error(ssh->session));
            }

            ssh->step++;
            return NGX_OK;

        default:
            return NGX_OK;
        }
    }
}


static ngx_int_t
ngx_segura_ssh_lost(ngx_segura_ssh_t *ssh, const char *what)
{
    return ngx_segura_ssh_fail(ssh, NGX_SEGURA_WS_ERR_DEVICE_UNREACHABLE,
                               what, ssh_get_error(ssh->session));
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
    }

    ssh->fd = (ngx_socket_t) -1;
}


ngx_int_t
ngx_segura_ssh_host_key(ngx_segura_ssh_t *ssh, const char *pinned_fp,
    ngx_uint_t strict)
{
    if (pinned_fp[0] != '\0') {
        if (ngx_strcmp(pinned_fp, ssh->host_key_fp) == 0) {
            return NGX_OK;
        }

        ssh->err = NGX_SEGURA_WS_ERR_HOST_KEY_MISMATCH;
        (void) ngx_snprintf((u_char *) ssh->text, sizeof(ssh->text) - 1,
                            "host key %s does not match the pinned %s%Z",
                            ssh->host_key_fp, pinned_fp);
        return NGX_ERROR;
    }

    if (strict) {
        ssh->err = NGX_SEGURA_WS_ERR_HOST_KEY_UNKNOWN;
        (void) ngx_snprintf((u_char *) ssh->text, sizeof(ssh->text) - 1,
                            "no pinned host key and the policy is strict "
                            "(the device presented %s)%Z", ssh->host_key_fp);
        return NGX_ERROR;
    }

    return NGX_DECLINED;
}


ngx_int_t
ngx_segura_ssh_fail(ngx_segura_ssh_t *ssh, ngx_segura_ws_err_e err,
    const char *what, const char *text)
{
    if (ssh->err != NGX_SEGURA_WS_ERR_NONE) {
        /* the first failure is the one that tells */
        return NGX_ERROR;
    }

    ssh->err = err;

    (void) ngx_snprintf((u_char *) ssh->text, sizeof(ssh->text) - 1,
                        "%s failed: %s%Z", what, text ? text : "");
    ssh->text[sizeof(ssh->text) - 1] = '\0';

    return NGX_ERROR;
}


void
ngx_segura_ssh_line_type(char *type, size_t size, const char *line)
{
    const char  *v;

    v = ngx_strchr(line, ' ');

    if (v == NULL || (size_t) (v - line) >= size) {
        type[0] = '\0';
        return;
    }

    ngx_memcpy(type, line, v - line);
    type[v - line] = '\0';
}


void
ngx_segura_ssh_printable(char *dst, size_t len, const char *src)
{
    size_t  i;

    for (i = 0; i < len - 1 && src[i] != '\0'; i++) {
        dst[i] = (src[i] < 0x20 || src[i] > 0x7e) ? ' ' : src[i];
    }

    while (i > 0 && dst[i - 1] == ' ') {
        i--;
    }

    dst[i] = '\0';
}
