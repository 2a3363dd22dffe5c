
/*
 * Copyright (C) ngx_segura_module authors
 */


/*
 * Resume across the workers of a node.  A detached terminal lives in the
 * worker that opened it; a resume may reach any worker.  Each worker
 * listens on a unix socket of its own, in the abstract namespace, named
 * after the master and its pid (the token's first part):
 *
 *   A (has the client)                     B (has the terminal)
 *   the check as for a new session
 *   connect, "segura-resume 1 <token> <received> <user> <key> <device>\n"
 *                                          the terminal, its user, key,
 *                                          device: "ok\n" or "no\n"
 *   101 to the client, then a byte pipe    a relay on the accepted
 *   client <-> unix socket                 socket (ngx_segura_relay.c)
 *
 * A passes bytes and nothing else, so TLS stays where the client's
 * connection is, and the relay, its frames, pings and flow control are
 * B's as for any viewer.  B accepts only a peer of its own user id
 * (SO_PEERCRED); the token, which only the session's user ever got, is
 * what opens a terminal.
 *
 * Event loop only.
 */


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>
#include "ngx_segura.h"
#include "ngx_segura_relay.h"
#include "ngx_segura_resume.h"
#include "ngx_segura_terminal.h"

#include <sys/un.h>


#define NGX_SEGURA_RESUME_LINE     256
#define NGX_SEGURA_RESUME_WAIT     5000     /* ms, for the other side */
#define NGX_SEGURA_RESUME_PIPE     16384


/* B: an accepted connection, first its request line, then a relay */

typedef struct {
    ngx_segura_relay_t             relay;
    ngx_connection_t              *c;
    ngx_pool_t                    *pool;
    ngx_event_t                    free;
    u_char                         line[NGX_SEGURA_RESUME_LINE];
    size_t                         len;
} ngx_segura_resume_peer_t;


/* A: the client's connection and the unix one, bytes both ways */

typedef struct {
    ngx_http_request_t            *r;
    ngx_connection_t              *u;
    ngx_segura_resume_pt           handler;
    ngx_buf_t                      up;      /* B -> client */
    ngx_buf_t                      down;    /* client -> B */
    unsigned                       answered:1;
    unsigned                       piping:1;
    unsigned                       done:1;
} ngx_segura_resume_pipe_t;


static void ngx_segura_resume_name(struct sockaddr_un *sa, socklen_t *len,
    ngx_pid_t pid);
static void ngx_segura_resume_accept(ngx_event_t *ev);
static void ngx_segura_resume_peer_read(ngx_event_t *ev);
static ngx_int_t ngx_segura_resume_peer_take(ngx_segura_resume_peer_t *pr);
static void ngx_segura_resume_peer_close(ngx_segura_resume_peer_t *pr);
static void ngx_segura_resume_peer_done(ngx_segura_relay_t *rl);
static void ngx_segura_resume_peer_free(ngx_event_t *ev);
static void ngx_segura_resume_answer(ngx_event_t *ev);
static void ngx_segura_resume_client_handler(ngx_event_t *ev);
static void ngx_segura_resume_unix_handler(ngx_event_t *ev);
static void ngx_segura_resume_pipe_event(ngx_segura_resume_pipe_t *p,
    ngx_connection_t *c);
static void ngx_segura_resume_pump(ngx_segura_resume_pipe_t *p);
static void ngx_segura_resume_pipe_close(ngx_segura_resume_pipe_t *p);
static void ngx_segura_resume_pipe_cleanup(void *data);


static ngx_connection_t  *ngx_segura_resume_listener;


static void
ngx_segura_resume_name(struct sockaddr_un *sa, socklen_t *len, ngx_pid_t pid)
{
    u_char  *p;

    ngx_memzero(sa, sizeof(struct sockaddr_un));
    sa->sun_family = AF_UNIX;

    /* abstract: a leading NUL, no file */

    p = ngx_snprintf((u_char *) sa->sun_path + 1, sizeof(sa->sun_path) - 1,
                     "segura-resume.%P.%P", ngx_parent, pid);

    *len = (socklen_t) (offsetof(struct sockaddr_un, sun_path)
                        + (p - (u_char *) sa->sun_path));
}


ngx_int_t
ngx_segura_resume_init_process(ngx_cycle_t *cycle)
{
    socklen_t            len;
    ngx_socket_t         s;
    ngx_connection_t    *c;
    struct sockaddr_un   sa;

    s = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (s == (ngx_socket_t) -1) {
        ngx_log_error(NGX_LOG_ALERT, cycle->log, ngx_socket_errno,
                      "segura resume: socket() failed");
        return NGX_ERROR;
    }

    ngx_segura_resume_name(&sa, &len, ngx_pid);

    if (bind(s, (struct sockaddr *) &sa, len) == -1
        || listen(s, 64) == -1)
    {
        /* resume then works on this worker's own sessions only */
        ngx_log_error(NGX_LOG_ALERT, cycle->log, ngx_socket_errno,
                      "segura resume: bind() or listen() of the worker's "
                      "socket failed");
        (void) ngx_close_socket(s);
        return NGX_OK;
    }

    c = ngx_get_connection(s, cycle->log);
    if (c == NULL) {
        (void) ngx_close_socket(s);
        return NGX_ERROR;
    }

    c->read->handler = ngx_segura_resume_accept;
    c->read->log = cycle->log;
    c->read->accept = 1;    /* a listener: not an open socket at exit */

    if (ngx_handle_read_event(c->read, 0) != NGX_OK) {
        ngx_close_connection(c);
        return NGX_ERROR;
    }

    ngx_segura_resume_listener = c;

    return NGX_OK;
}


void
ngx_segura_resume_exit_process(void)
{
    if (ngx_segura_resume_listener != NULL) {
        ngx_close_connection(ngx_segura_resume_listener);
        ngx_segura_resume_listener = NULL;
    }
}


/* the worker a token names, or 0 */

ngx_pid_t
ngx_segura_resume_owner(const char *token)
{
    char       *dot;
    ngx_int_t   pid;

    dot = ngx_strchr(token, '.');
    if (dot == NULL || dot == token || dot - token > 10) {
        return 0;
    }

    pid = ngx_atoi((u_char *) token, dot - token);

    return pid > 0 ? (ngx_pid_t) pid : 0;
}


/* --- B: the worker that has the terminal ------------------------------ */

static void
ngx_segura_resume_accept(ngx_event_t *ev)
{
    int                        s;
    socklen_t                  len;
    ngx_pool_t                *pool;
    struct ucred               cred;
    ngx_connection_t          *lc, *c;
    ngx_segura_resume_peer_t  *pr;

    lc = ev->data;

    for ( ;; ) {
        s = accept4(lc->fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);

        if (s == -1) {
            if (ngx_socket_errno != NGX_EAGAIN) {
                ngx_log_error(NGX_LOG_ERR, ev->log, ngx_socket_errno,
                              "segura resume: accept4() failed");
            }

            return;
        }

        len = sizeof(cred);

        if (getsockopt(s, SOL_SOCKET, SO_PEERCRED, &cred, &len) == -1
            || cred.uid != geteuid())
        {
            ngx_log_error(NGX_LOG_WARN, ev->log, 0,
                          "segura resume: a peer of another user refused");
            (void) ngx_close_socket(s);
            continue;
        }

        pool = ngx_create_pool(4096, ev->log);
        if (pool == NULL) {
            (void) ngx_close_socket(s);
            continue;
        }

        pr = ngx_pcalloc(pool, sizeof(ngx_segura_resume_peer_t));
        c = pr ? ngx_get_connection(s, ev->log) : NULL;

        if (c == NULL) {
            ngx_destroy_pool(pool);
            (void) ngx_close_socket(s);
            continue;
        }

        pr->c = c;
        pr->pool = pool;

        c->pool = pool;
        c->data = pr;
        c->recv = ngx_recv;
        c->send = ngx_send;
        c->recv_chain = ngx_recv_chain;
        c->send_chain = ngx_send_chain;
        c->log = ngx_palloc(pool, sizeof(ngx_log_t));

        if (c->log == NULL) {
            ngx_segura_resume_peer_close(pr);
            continue;
        }

        *c->log = *ev->log;
        c->read->log = c->log;
        c->write->log = c->log;
        c->log->action = "taking a resume from another worker";

        c->read->handler = ngx_segura_resume_peer_read;
        ngx_add_timer(c->read, NGX_SEGURA_RESUME_WAIT);

        ngx_segura_resume_peer_read(c->read);
    }
}


static void
ngx_segura_resume_peer_read(ngx_event_t *ev)
{
    ssize_t                    n;
    ngx_connection_t          *c;
    ngx_segura_resume_peer_t  *pr;

    c = ev->data;
    pr = c->data;

    if (ev->timedout) {
        ngx_log_error(NGX_LOG_ERR, c->log, 0,
                      "segura resume: the other worker said nothing");
        ngx_segura_resume_peer_close(pr);
        return;
    }

    for ( ;; ) {
        if (pr->len == sizeof(pr->line)) {
            ngx_log_error(NGX_LOG_ERR, c->log, 0,
                          "segura resume: an overlong request");
            ngx_segura_resume_peer_close(pr);
            return;
        }

        /* one byte at a time: what follows the line is the client's */

        n = c->recv(c, pr->line + pr->len, 1);

        if (n == NGX_AGAIN) {
            if (ngx_handle_read_event(c->read, 0) != NGX_OK) {
                ngx_segura_resume_peer_close(pr);
            }

            return;
        }

        if (n <= 0) {
            ngx_segura_resume_peer_close(pr);
            return;
        }

        if (pr->line[pr->len++] == '\n') {
            break;
        }
    }

    if (c->read->timer_set) {
        ngx_del_timer(c->read);
    }

    if (ngx_segura_resume_peer_take(pr) != NGX_OK) {
        (void) c->send(c, (u_char *) "no\n", 3);
        ngx_segura_resume_peer_close(pr);
    }
}


static ngx_int_t
ngx_segura_resume_peer_take(ngx_segura_resume_peer_t *pr)
{
    int64_t                 user, key, dev;
    u_char                 *p, *last, *f[7];
    off_t                   received;
    ngx_uint_t              i;
    ngx_connection_t       *c;
    ngx_segura_terminal_t  *t;

    c = pr->c;
    last = pr->line + pr->len - 1;     /* the \n */
    *last = '\0';

    /* segura-resume 1 <token> <received> <user> <key> <device> */

    for (i = 0, p = pr->line; i < 7; i++) {
        f[i] = p;
        p = (u_char *) ngx_strchr(p, ' ');

        if (p == NULL) {
            if (i != 6) {
                return NGX_ERROR;
            }

            break;
        }

        *p++ = '\0';
    }

    if (p != NULL || ngx_strcmp(f[0], "segura-resume") != 0
        || ngx_strcmp(f[1], "1") != 0)
    {
        return NGX_ERROR;
    }

    received = ngx_atoof(f[3], ngx_strlen(f[3]));
    user = ngx_atoof(f[4], ngx_strlen(f[4]));
    key = ngx_atoof(f[5], ngx_strlen(f[5]));
    dev = ngx_atoof(f[6], ngx_strlen(f[6]));

    if (received == NGX_ERROR || user == NGX_ERROR || key == NGX_ERROR
        || dev == NGX_ERROR)
    {
        return NGX_ERROR;
    }

    t = ngx_segura_terminal_find_resumable((char *) f[2], ngx_strlen(f[2]));

    if (t == NULL || t->identity.id != user || t->key_id != key
        || t->device_id != dev || received > t->bytes_out)
    {
        ngx_log_error(NGX_LOG_INFO, c->log, 0,
                      "segura resume: another worker asked for a session "
                      "that is not here");
        return NGX_ERROR;
    }

    if (ngx_segura_relay_init_conn(&pr->relay, c, pr->pool, t->slcf,
                                   ngx_segura_resume_peer_done)
        != NGX_OK)
    {
        return NGX_ERROR;
    }

    if (c->send(c, (u_char *) "ok\n", 3) != 3) {
        return NGX_ERROR;
    }

    ngx_log_error(NGX_LOG_INFO, c->log, 0,
                  "segura session %s: resumed through another worker",
                  t->id);

    ngx_segura_relay_resume(&pr->relay, t, received);

    return NGX_OK;
}


static void
ngx_segura_resume_peer_close(ngx_segura_resume_peer_t *pr)
{
    ngx_pool_t  *pool;

    pool = pr->pool;

    ngx_close_connection(pr->c);
    ngx_destroy_pool(pool);
}


/* the relay let go of the terminal: the connection goes, the memory soon */

static void
ngx_segura_resume_peer_done(ngx_segura_relay_t *rl)
{
    ngx_segura_resume_peer_t *pr = (ngx_segura_resume_peer_t *) rl;

    ngx_close_connection(pr->c);
    pr->c = NULL;

    pr->free.handler = ngx_segura_resume_peer_free;
    pr->free.data = pr;
    pr->free.log = ngx_cycle->log;

    ngx_post_event(&pr->free, &ngx_posted_events);
}


static void
ngx_segura_resume_peer_free(ngx_event_t *ev)
{
    ngx_segura_resume_peer_t *pr = ev->data;

    ngx_destroy_pool(pr->pool);
}


/* --- A: the worker that has the client -------------------------------- */

ngx_int_t
ngx_segura_resume_forward(ngx_http_request_t *r, ngx_segura_resume_ask_t *ask,
    void **slot, ngx_segura_resume_pt handler)
{
    u_char                     line[NGX_SEGURA_RESUME_LINE], *last;
    ssize_t                    n;
    ngx_pid_t                  pid;
    socklen_t                  len;
    ngx_socket_t               s;
    ngx_connection_t          *u;
    struct sockaddr_un         sa;
    ngx_pool_cleanup_t        *cln;
    ngx_segura_resume_pipe_t  *p;

    pid = ngx_segura_resume_owner(ask->token);

    if (pid == 0 || pid == ngx_pid) {
        return NGX_DECLINED;
    }

    last = ngx_snprintf(line, sizeof(line) - 1,
                        "segura-resume 1 %s %O %L %L %L\n", ask->token,
                        ask->received, ask->user_id, ask->key_id,
                        ask->device_id);

    if (last[-1] != '\n') {
        return NGX_DECLINED;
    }

    p = ngx_pcalloc(r->pool, sizeof(ngx_segura_resume_pipe_t));
    cln = ngx_pool_cleanup_add(r->pool, 0);

    if (p == NULL || cln == NULL) {
        return NGX_ERROR;
    }

    p->up.start = ngx_palloc(r->pool, NGX_SEGURA_RESUME_PIPE);
    p->down.start = ngx_palloc(r->pool, NGX_SEGURA_RESUME_PIPE);

    if (p->up.start == NULL || p->down.start == NULL) {
        return NGX_ERROR;
    }

    p->up.pos = p->up.last = p->up.start;
    p->up.end = p->up.start + NGX_SEGURA_RESUME_PIPE;
    p->down.pos = p->down.last = p->down.start;
    p->down.end = p->down.start + NGX_SEGURA_RESUME_PIPE;

    s = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (s == (ngx_socket_t) -1) {
        return NGX_ERROR;
    }

    ngx_segura_resume_name(&sa, &len, pid);

    if (connect(s, (struct sockaddr *) &sa, len) == -1) {
        /* no such worker (any more): nothing to resume there */
        ngx_log_error(NGX_LOG_INFO, r->connection->log, ngx_socket_errno,
                      "segura resume: worker %P cannot be reached", pid);
        (void) ngx_close_socket(s);
        return NGX_DECLINED;
    }

    u = ngx_get_connection(s, r->connection->log);
    if (u == NULL) {
        (void) ngx_close_socket(s);
        return NGX_ERROR;
    }

    u->pool = r->pool;
    u->data = p;
    u->recv = ngx_recv;
    u->send = ngx_send;
    u->recv_chain = ngx_recv_chain;
    u->send_chain = ngx_send_chain;
    u->read->log = r->connection->log;
    u->write->log = r->connection->log;

    p->r = r;
    p->u = u;
    p->handler = handler;

    cln->handler = ngx_segura_resume_pipe_cleanup;
    cln->data = p;

    *slot = p;

    /* a fresh unix socket takes a line at once */

    n = u->send(u, line, last - line);

    if (n != last - line) {
        ngx_segura_resume_pipe_close(p);
        return NGX_ERROR;
    }

    u->read->handler = ngx_segura_resume_answer;
    u->write->handler = ngx_segura_resume_answer;

    ngx_add_timer(u->read, NGX_SEGURA_RESUME_WAIT);

    if (ngx_handle_read_event(u->read, 0) != NGX_OK) {
        ngx_segura_resume_pipe_close(p);
        return NGX_ERROR;
    }

    return NGX_OK;
}


static void
ngx_segura_resume_answer(ngx_event_t *ev)
{
    u_char                    *nl;
    ssize_t                    n;
    ngx_int_t                  rc;
    ngx_connection_t          *u;
    ngx_segura_resume_pipe_t  *p;

    u = ev->data;
    p = u->data;

    if (ev->write) {
        return;
    }

    rc = NGX_ERROR;

    if (ev->timedout) {
        ngx_log_error(NGX_LOG_ERR, u->log, 0,
                      "segura resume: the other worker did not answer");
        goto done;
    }

    n = u->recv(u, p->up.last, p->up.end - p->up.last);

    if (n == NGX_AGAIN) {
        if (ngx_handle_read_event(u->read, 0) != NGX_OK) {
            goto done;
        }

        return;
    }

    if (n <= 0) {
        /* closed without a word: it had no such session */
        rc = NGX_DECLINED;
        goto done;
    }

    p->up.last += n;

    nl = ngx_strlchr(p->up.pos, p->up.last, '\n');

    if (nl == NULL) {
        if (p->up.last - p->up.pos > 3) {
            goto done;
        }

        return;
    }

    rc = (nl - p->up.pos == 2 && ngx_strncmp(p->up.pos, "ok", 2) == 0)
         ? NGX_OK : NGX_DECLINED;

    /* what follows the answer is the relay's, for the client */

    p->up.pos = nl + 1;

done:

    if (u->read->timer_set) {
        ngx_del_timer(u->read);
    }

    p->answered = 1;

    if (rc != NGX_OK) {
        ngx_segura_resume_pipe_close(p);
    }

    p->handler(p->r, rc);
}


/* the 101 went: bytes both ways until either side ends */

void
ngx_segura_resume_pipe(ngx_http_request_t *r, void *slot)
{
    ngx_connection_t          *c;
    ngx_segura_resume_pipe_t  *p;

    p = slot;
    c = r->connection;

    if (c->read->timer_set) {
        ngx_del_timer(c->read);
    }

    if (c->write->timer_set) {
        ngx_del_timer(c->write);
    }

    p->piping = 1;

    c->read->handler = ngx_segura_resume_client_handler;
    c->write->handler = ngx_segura_resume_client_handler;
    p->u->read->handler = ngx_segura_resume_unix_handler;
    p->u->write->handler = ngx_segura_resume_unix_handler;

    c->log->action = "passing a resumed session to its worker";

    ngx_segura_resume_pump(p);
}


/* the client's side: its data is the request, whose context is a relay */

static void
ngx_segura_resume_client_handler(ngx_event_t *ev)
{
    ngx_connection_t    *c;
    ngx_http_request_t  *r;
    ngx_segura_relay_t  *rl;

    c = ev->data;
    r = c->data;
    rl = ngx_http_get_module_ctx(r, ngx_http_segura_module);

    ngx_segura_resume_pipe_event(rl->pipe, c);
}


/* the unix side: its data is the pipe */

static void
ngx_segura_resume_unix_handler(ngx_event_t *ev)
{
    ngx_connection_t  *u;

    u = ev->data;

    ngx_segura_resume_pipe_event(u->data, u);
}


static void
ngx_segura_resume_pipe_event(ngx_segura_resume_pipe_t *p, ngx_connection_t *c)
{
    ngx_http_request_t  *r;

    if (p == NULL || p->done) {
        return;
    }

    if (c->close) {
        /* the worker is going away */
        r = p->r;
        ngx_segura_resume_pipe_close(p);
        ngx_http_finalize_request(r, NGX_HTTP_CLOSE);
        return;
    }

    ngx_segura_resume_pump(p);
}


static void
ngx_segura_resume_pump(ngx_segura_resume_pipe_t *p)
{
    ssize_t            n;
    ngx_uint_t         moved, end;
    ngx_connection_t  *c, *u;

    c = p->r->connection;
    u = p->u;
    end = 0;

    do {
        moved = 0;

        /* client -> the other worker */

        if (p->down.pos < p->down.last) {
            n = u->send(u, p->down.pos, p->down.last - p->down.pos);

            if (n == NGX_ERROR) {
                end = 1;
                break;
            }

            if (n > 0) {
                p->down.pos += n;
                moved = 1;
            }
        }

        if (p->down.pos == p->down.last) {
            p->down.pos = p->down.last = p->down.start;
        }

        if (p->down.last < p->down.end && c->read->ready) {
            n = c->recv(c, p->down.last, p->down.end - p->down.last);

            if (n == 0 || n == NGX_ERROR) {
                end = 1;
                break;
            }

            if (n > 0) {
                p->down.last += n;
                moved = 1;
            }
        }

        /* the other worker -> client */

        if (p->up.pos < p->up.last) {
            n = c->send(c, p->up.pos, p->up.last - p->up.pos);

            if (n == NGX_ERROR) {
                end = 1;
                break;
            }

            if (n > 0) {
                p->up.pos += n;
                moved = 1;
            }
        }

        if (p->up.pos == p->up.last) {
            p->up.pos = p->up.last = p->up.start;
        }

        if (p->up.last < p->up.end && u->read->ready) {
            n = u->recv(u, p->up.last, p->up.end - p->up.last);

            if (n == 0 || n == NGX_ERROR) {
                /* the relay closed: what it said last goes first */
                if (p->up.pos < p->up.last) {
                    (void) c->send(c, p->up.pos, p->up.last - p->up.pos);
                }

                end = 1;
                break;
            }

            if (n > 0) {
                p->up.last += n;
                moved = 1;
            }
        }

    } while (moved);

    if (end
        || ngx_handle_read_event(c->read, 0) != NGX_OK
        || ngx_handle_write_event(c->write, 0) != NGX_OK
        || ngx_handle_read_event(u->read, 0) != NGX_OK
        || ngx_handle_write_event(u->write, 0) != NGX_OK)
    {
        ngx_segura_resume_pipe_close(p);
        ngx_http_finalize_request(p->r, NGX_HTTP_CLOSE);
        ngx_http_run_posted_requests(c);
    }
}


static void
ngx_segura_resume_pipe_close(ngx_segura_resume_pipe_t *p)
{
    if (p->u != NULL) {
        ngx_close_connection(p->u);
        p->u = NULL;
    }

    p->done = 1;
}


static void
ngx_segura_resume_pipe_cleanup(void *data)
{
    /* the request goes: the unix side with it */

    ngx_segura_resume_pipe_close(data);
}
