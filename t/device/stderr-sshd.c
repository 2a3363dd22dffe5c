
/*
 * Copyright (C) ngx_segura_module authors
 */


/*
 * A test device that writes to both streams of its channel, which OpenSSH
 * never does once a pty is asked for (the shell's stderr goes to the pty).
 * libssh's server API with callbacks, one connection at a time, any public
 * key accepted.
 *
 *   stderr-sshd <port> <host key file>
 *
 * It prints "ready" once it listens.  After the shell request it writes
 * "out-ready\r\n" to stdout and "err-ready\r\n" to stderr, then for each
 * line it reads:
 *
 *   exit      exit status 3, EOF, close
 *   big N     N bytes ('E') on stderr, then "big-done\r\n" on stdout
 *   <line>    "out:<line>\r\n" on stdout and "err:<line>\r\n" on stderr
 *
 * It ends on SIGTERM; a test harness stops it.
 */


#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <libssh/libssh.h>
#include <libssh/server.h>
#include <libssh/callbacks.h>


#define LINE_MAX_LEN  256
#define INPUT_MAX     4096


/* one connection; the callbacks only record, the loop acts */
typedef struct {
    ssh_channel  channel;
    int          shell;
    int          greeted;
    char         input[INPUT_MAX];
    size_t       len;
    struct ssh_channel_callbacks_struct  ccb;
} conn_t;


static int serve(ssh_session session);
static int step(conn_t *c);
static int command(conn_t *c, const char *line);
static int write_all(ssh_channel channel, const char *p, size_t len,
    int is_stderr);
static int auth_pubkey(ssh_session session, const char *user,
    struct ssh_key_struct *pubkey, char signature_state, void *userdata);
static ssh_channel open_session(ssh_session session, void *userdata);
static int pty_request(ssh_session session, ssh_channel channel,
    const char *term, int width, int height, int pxwidth, int pwheight,
    void *userdata);
static int pty_resize(ssh_session session, ssh_channel channel, int width,
    int height, int pxwidth, int pwheight, void *userdata);
static int env_request(ssh_session session, ssh_channel channel,
    const char *name, const char *value, void *userdata);
static int shell_request(ssh_session session, ssh_channel channel,
    void *userdata);
static int data(ssh_session session, ssh_channel channel, void *p,
    uint32_t len, int is_stderr, void *userdata);


int
main(int argc, char **argv)
{
    ssh_bind     sshbind;
    ssh_session  session;

    if (argc != 3) {
        fprintf(stderr, "usage: stderr-sshd <port> <host key file>\n");
        return 2;
    }

    sshbind = ssh_bind_new();
    if (sshbind == NULL
        || ssh_bind_options_set(sshbind, SSH_BIND_OPTIONS_BINDADDR,
                                "127.0.0.1") != SSH_OK
        || ssh_bind_options_set(sshbind, SSH_BIND_OPTIONS_BINDPORT_STR,
                                argv[1]) != SSH_OK
        || ssh_bind_options_set(sshbind, SSH_BIND_OPTIONS_HOSTKEY,
                                argv[2]) != SSH_OK
        || ssh_bind_listen(sshbind) != SSH_OK)
    {
        fprintf(stderr, "stderr-sshd: listen: %s\n",
                sshbind ? ssh_get_error(sshbind) : "out of memory");
        return 1;
    }

    printf("ready\n");
    fflush(stdout);

    for ( ;; ) {
        session = ssh_new();
        if (session == NULL) {
            return 1;
        }

        if (ssh_bind_accept(sshbind, session) == SSH_OK
            && serve(session) != 0)
        {
            fprintf(stderr, "stderr-sshd: %s\n", ssh_get_error(session));
        }

        ssh_disconnect(session);
        ssh_free(session);
    }
}


static int
serve(ssh_session session)
{
    int        rc;
    conn_t     c;
    ssh_event  event;
    struct ssh_server_callbacks_struct  scb;

    memset(&c, 0, sizeof(c));
    memset(&scb, 0, sizeof(scb));

    scb.userdata = &c;
    scb.auth_pubkey_function = auth_pubkey;
    scb.channel_open_request_session_function = open_session;
    ssh_callbacks_init(&scb);

    ssh_set_server_callbacks(session, &scb);
    ssh_set_auth_methods(session, SSH_AUTH_METHOD_PUBLICKEY);

    if (ssh_handle_key_exchange(session) != SSH_OK) {
        return -1;
    }

    event = ssh_event_new();
    if (event == NULL || ssh_event_add_session(event, session) != SSH_OK) {
        return -1;
    }

    do {
        if (ssh_event_dopoll(event, 100) == SSH_ERROR) {
            rc = ssh_get_error_code(session) ? -1 : 0;
            break;
        }

        rc = step(&c);

    } while (rc > 0);

    ssh_event_free(event);

    if (c.channel != NULL) {
        ssh_channel_free(c.channel);
    }

    return rc < 0 ? -1 : 0;
}


/* 1: go on, 0: the session is over, -1: an error */

static int
step(conn_t *c)
{
    int     rc;
    char   *nl, line[LINE_MAX_LEN];
    size_t  n;

    if (c->channel == NULL || !c->shell) {
        return 1;
    }

    if (!c->greeted) {
        c->greeted = 1;

        if (write_all(c->channel, "out-ready\r\n", 11, 0) != 0
            || write_all(c->channel, "err-ready\r\n", 11, 1) != 0)
        {
            return -1;
        }
    }

    for ( ;; ) {
        nl = memchr(c->input, '\r', c->len);
        if (nl == NULL) {
            nl = memchr(c->input, '\n', c->len);
        }

        if (nl == NULL) {
            break;
        }

        n = nl - c->input;
        if (n >= sizeof(line)) {
            n = sizeof(line) - 1;
        }

        memcpy(line, c->input, n);
        line[n] = '\0';

        c->len -= nl + 1 - c->input;
        memmove(c->input, nl + 1, c->len);

        if (n == 0) {
            continue;
        }

        rc = command(c, line);
        if (rc <= 0) {
            return rc;
        }
    }

    if (ssh_channel_is_closed(c->channel) || ssh_channel_is_eof(c->channel)) {
        return 0;
    }

    return 1;
}


static int
command(conn_t *c, const char *line)
{
    int     n;
    char    reply[LINE_MAX_LEN + 16], *big;
    size_t  size;

    if (strcmp(line, "exit") == 0) {
        ssh_channel_request_send_exit_status(c->channel, 3);
        ssh_channel_send_eof(c->channel);
        ssh_channel_close(c->channel);
        return 0;
    }

    if (strncmp(line, "big ", 4) == 0) {
        size = strtoul(line + 4, NULL, 10);

        big = malloc(size ? size : 1);
        if (big == NULL) {
            return -1;
        }

        memset(big, 'E', size);
        n = write_all(c->channel, big, size, 1);
        free(big);

        if (n != 0 || write_all(c->channel, "big-done\r\n", 10, 0) != 0) {
            return -1;
        }

        return 1;
    }

    n = snprintf(reply, sizeof(reply), "out:%s\r\n", line);
    if (write_all(c->channel, reply, n, 0) != 0) {
        return -1;
    }

    n = snprintf(reply, sizeof(reply), "err:%s\r\n", line);
    if (write_all(c->channel, reply, n, 1) != 0) {
        return -1;
    }

    return 1;
}


static int
write_all(ssh_channel channel, const char *p, size_t len, int is_stderr)
{
    int  n;

    while (len > 0) {
        n = is_stderr ? ssh_channel_write_stderr(channel, p, len)
                      : ssh_channel_write(channel, p, len);
        if (n <= 0) {
            return -1;
        }

        p += n;
        len -= n;
    }

    return 0;
}


static int
auth_pubkey(ssh_session session, const char *user,
    struct ssh_key_struct *pubkey, char signature_state, void *userdata)
{
    /* any key: a probe (no signature yet) or a valid signature */

    if (signature_state == SSH_PUBLICKEY_STATE_NONE
        || signature_state == SSH_PUBLICKEY_STATE_VALID)
    {
        return SSH_AUTH_SUCCESS;
    }

    return SSH_AUTH_DENIED;
}


static ssh_channel
open_session(ssh_session session, void *userdata)
{
    conn_t  *c = userdata;

    if (c->channel != NULL) {
        return NULL;
    }

    c->channel = ssh_channel_new(session);
    if (c->channel == NULL) {
        return NULL;
    }

    c->ccb.userdata = c;
    c->ccb.channel_pty_request_function = pty_request;
    c->ccb.channel_pty_window_change_function = pty_resize;
    c->ccb.channel_env_request_function = env_request;
    c->ccb.channel_shell_request_function = shell_request;
    c->ccb.channel_data_function = data;
    ssh_callbacks_init(&c->ccb);
    ssh_set_channel_callbacks(c->channel, &c->ccb);

    return c->channel;
}


static int
pty_request(ssh_session session, ssh_channel channel, const char *term,
    int width, int height, int pxwidth, int pwheight, void *userdata)
{
    return 0;
}


static int
pty_resize(ssh_session session, ssh_channel channel, int width, int height,
    int pxwidth, int pwheight, void *userdata)
{
    return 0;
}


static int
env_request(ssh_session session, ssh_channel channel, const char *name,
    const char *value, void *userdata)
{
    return 0;
}


static int
shell_request(ssh_session session, ssh_channel channel, void *userdata)
{
    conn_t  *c = userdata;

    c->shell = 1;

    return 0;
}


static int
data(ssh_session session, ssh_channel channel, void *p, uint32_t len,
    int is_stderr, void *userdata)
{
    conn_t  *c = userdata;
    size_t   n;

    /* keystrokes: kept for the loop, as much as fits */

    n = len;
    if (n > sizeof(c->input) - c->len) {
        n = sizeof(c->input) - c->len;
    }

    memcpy(c->input + c->len, p, n);
    c->len += n;

    return len;
}
