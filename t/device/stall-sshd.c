
/*
 * Copyright (C) ngx_segura_module authors
 */


/*
 * A test device that stops answering at a chosen point of the SSH set-up,
 * for the tests of "a slow, silent or hostile device delays only its own
 * session".  Any number of connections at once: one process per
 * connection (fork), each ends when its peer closes, and dies with the
 * listener (PR_SET_PDEATHSIG).
 *
 *   stall-sshd --mode <mode> <port> [<host key file>]
 *
 * Modes, each the point where the device goes silent (it still reads
 * everything the client sends, and never closes first):
 *
 *   accept    accepts the TCP connection and never sends a byte
 *   banner    sends its banner "SSH-2.0-...", reads the client's banner
 *             and key exchange, never answers
 *   kex       (libssh) completes the key exchange, never answers the
 *             client's service request (the start of authentication)
 *   auth      (libssh) completes public-key authentication with any key,
 *             never answers the channel open
 *   channel   (libssh) opens the channel, never answers the pty request
 *
 * The libssh modes need the host key file.  It prints "ready" once it
 * listens, then for each connection one line when it is accepted
 * ("accepted"), one when the client has reached the stall point
 * ("stalled"), and one when the client has closed ("closed"), each with
 * one write(2) to an O_APPEND log so that lines from many processes do
 * not mix.  It ends on SIGTERM; a test harness stops it.
 */


#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/prctl.h>
#include <sys/socket.h>

#include <libssh/libssh.h>
#include <libssh/server.h>
#include <libssh/callbacks.h>


typedef enum {
    MODE_ACCEPT = 0,
    MODE_BANNER,
    MODE_KEX,
    MODE_AUTH,
    MODE_CHANNEL
} mode_e;


static const char  *mode_names[] = {
    "accept", "banner", "kex", "auth", "channel", NULL
};


/* one connection, in its own process */
typedef struct {
    mode_e       mode;
    int          stalled;
    ssh_channel  channel;
} conn_t;


static int listen_on(const char *port);
static void serve(int fd, mode_e mode, const char *host_key);
static void serve_raw(int fd, mode_e mode);
static void serve_ssh(int fd, mode_e mode, const char *host_key);
static void note(const char *line);
static void stalled(conn_t *c);
static int auth_pubkey(ssh_session session, const char *user,
    struct ssh_key_struct *pubkey, char signature_state, void *userdata);
static int message(ssh_session session, ssh_message msg, void *userdata);


int
main(int argc, char **argv)
{
    int          ls, fd, i;
    pid_t        pid, parent;
    mode_e       mode;
    const char  *host_key;

    if (argc < 4 || strcmp(argv[1], "--mode") != 0) {
        goto usage;
    }

    for (i = 0; mode_names[i] != NULL; i++) {
        if (strcmp(argv[2], mode_names[i]) == 0) {
            break;
        }
    }

    if (mode_names[i] == NULL) {
        goto usage;
    }

    mode = (mode_e) i;
    host_key = argc > 4 ? argv[4] : NULL;

    if (mode >= MODE_KEX && host_key == NULL) {
        goto usage;
    }

    ls = listen_on(argv[3]);
    if (ls == -1) {
        return 1;
    }

    /* the children are nobody's business: the kernel reaps them */
    signal(SIGCHLD, SIG_IGN);

    parent = getpid();

    printf("ready\n");
    fflush(stdout);

    for ( ;; ) {
        fd = accept(ls, NULL, NULL);
        if (fd == -1) {
            if (errno == EINTR || errno == ECONNABORTED) {
                continue;
            }

            perror("stall-sshd: accept");
            return 1;
        }

        pid = fork();

        if (pid == -1) {
            perror("stall-sshd: fork");
            close(fd);
            continue;
        }

        if (pid == 0) {
            signal(SIGCHLD, SIG_DFL);

            /* a child never outlives the listener */
            if (prctl(PR_SET_PDEATHSIG, SIGKILL) == -1
                || getppid() != parent)
            {
                _exit(1);
            }

            close(ls);
            note("accepted\n");
            serve(fd, mode, host_key);
            note("closed\n");
            _exit(0);
        }

        close(fd);
    }

usage:

    fprintf(stderr, "usage: stall-sshd --mode accept|banner|kex|auth|channel"
                    " <port> [<host key file>]\n");
    return 2;
}


static int
listen_on(const char *port)
{
    int                 s, on;
    struct sockaddr_in  sin;

    memset(&sin, 0, sizeof(sin));
    sin.sin_family = AF_INET;
    sin.sin_port = htons((unsigned short) atoi(port));
    sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);

    s = socket(AF_INET, SOCK_STREAM, 0);
    if (s == -1) {
        perror("stall-sshd: socket");
        return -1;
    }

    on = 1;

    if (setsockopt(s, SOL_SOCKET, SO_REUSEADDR, &on, sizeof(on)) == -1
        || bind(s, (struct sockaddr *) &sin, sizeof(sin)) == -1
        || listen(s, 512) == -1)
    {
        perror("stall-sshd: listen");
        close(s);
        return -1;
    }

    return s;
}


static void
serve(int fd, mode_e mode, const char *host_key)
{
    if (mode <= MODE_BANNER) {
        serve_raw(fd, mode);

    } else {
        serve_ssh(fd, mode, host_key);
    }
}


static void
serve_raw(int fd, mode_e mode)
{
    int      seen;
    char     buf[4096];
    ssize_t  n;

    static const char  banner[] = "SSH-2.0-SeguraStall_1.0\r\n";

    seen = 0;

    if (mode == MODE_ACCEPT) {
        note("stalled\n");

    } else if (write(fd, banner, sizeof(banner) - 1) == -1) {
        return;
    }

    /* read and drop everything until the client closes */

    for ( ;; ) {
        n = read(fd, buf, sizeof(buf));

        if (n == -1 && errno == EINTR) {
            continue;
        }

        if (n <= 0) {
            break;
        }

        /* banner: the client's banner line is in, its KEXINIT follows */

        if (mode == MODE_BANNER && !seen && memchr(buf, '\n', n) != NULL) {
            seen = 1;
            note("stalled\n");
        }
    }

    close(fd);
}


static void
serve_ssh(int fd, mode_e mode, const char *host_key)
{
    conn_t       c;
    ssh_bind     sshbind;
    ssh_event    event;
    ssh_session  session;
    struct ssh_server_callbacks_struct  scb;

    memset(&c, 0, sizeof(c));
    c.mode = mode;

    sshbind = ssh_bind_new();
    session = ssh_new();

    if (sshbind == NULL || session == NULL
        || ssh_bind_options_set(sshbind, SSH_BIND_OPTIONS_HOSTKEY, host_key)
           != SSH_OK)
    {
        fprintf(stderr, "stall-sshd: libssh set-up failed\n");
        close(fd);
        return;
    }

    /* from here the session owns the socket and closes it in ssh_free() */

    if (ssh_bind_accept_fd(sshbind, session, fd) != SSH_OK) {
        fprintf(stderr, "stall-sshd: accept: %s\n", ssh_get_error(sshbind));
        goto done;
    }

    memset(&scb, 0, sizeof(scb));
    scb.userdata = &c;
    scb.auth_pubkey_function = auth_pubkey;
    ssh_callbacks_init(&scb);
    ssh_set_server_callbacks(session, &scb);
    ssh_set_auth_methods(session, SSH_AUTH_METHOD_PUBLICKEY);

    /* what the server callbacks do not take: answered here, or not */
    ssh_set_message_callback(session, message, &c);

    if (ssh_handle_key_exchange(session) != SSH_OK) {
        fprintf(stderr, "stall-sshd: key exchange: %s\n",
                ssh_get_error(session));
        goto done;
    }

    event = ssh_event_new();
    if (event == NULL || ssh_event_add_session(event, session) != SSH_OK) {
        fprintf(stderr, "stall-sshd: ssh_event_new() failed\n");
        goto done;
    }

    /* until the client closes: libssh reports it as an error */

    while (ssh_event_dopoll(event, 1000) != SSH_ERROR
           && ssh_is_connected(session))
    {
        /* void */
    }

    ssh_event_remove_session(event, session);
    ssh_event_free(event);

done:

    if (c.channel != NULL) {
        ssh_channel_free(c.channel);
    }

    ssh_free(session);
    ssh_bind_free(sshbind);
}


static void
note(const char *line)
{
    /* one write: the log is shared by every connection's process */
    (void) write(STDOUT_FILENO, line, strlen(line));
}


static void
stalled(conn_t *c)
{
    if (!c->stalled) {
        c->stalled = 1;
        note("stalled\n");
    }
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


/*
 * 0: the message is answered here or deliberately left unanswered;
 * 1: libssh sends its default answer (a refusal)
 */

static int
message(ssh_session session, ssh_message msg, void *userdata)
{
    conn_t  *c = userdata;

    switch (ssh_message_type(msg)) {

    case SSH_REQUEST_SERVICE:

        if (c->mode == MODE_KEX) {
            stalled(c);
            return 0;
        }

        return ssh_message_service_reply_success(msg) == SSH_OK ? 0 : 1;

    case SSH_REQUEST_CHANNEL_OPEN:

        if (c->mode == MODE_AUTH) {
            stalled(c);
            return 0;
        }

        if (c->mode == MODE_CHANNEL && c->channel == NULL
            && ssh_message_subtype(msg) == SSH_CHANNEL_SESSION)
        {
            c->channel = ssh_message_channel_request_open_reply_accept(msg);
            return c->channel != NULL ? 0 : 1;
        }

        return 1;

    case SSH_REQUEST_CHANNEL:

        if (c->mode == MODE_CHANNEL) {
            stalled(c);
            return 0;
        }

        return 1;

    default:
        return 1;
    }
}
