
/*
 * Copyright (C) ngx_segura_module authors
 */


/*
 * Connecting to a device: the address, the TCP connect and the SSH
 * set-up (ngx_segura_ssh.c), as a state machine on the event loop in the
 * way ngx_http_upstream.c talks to a backend.  Every step is re-run on
 * the socket's readiness, one deadline timer (segura_connect_timeout)
 * covers all of them, and one path (ngx_segura_connect_finish) ends every
 * outcome, calling the owner's done handler exactly once.
 *
 *   RESOLVE    an address literal needs nothing; a name goes to nginx's
 *              resolver when one is configured, else to getaddrinfo() in
 *              a pool thread (its task outlives us if we give up on it)
 *   TCP        non-blocking connect, each address in turn
 *   HANDSHAKE  banners and key exchange
 *   HOST_KEY   paused: the owner checks the host key (and may pin it in
 *              a pool thread), then calls ngx_segura_connect_resume()
 *   OFFER      a heavy key is offered first, without a signature
 *   SIGN       paused: a pool thread signs with a heavy key
 *   AUTH       public-key (or password) authentication (the end with
 *              cn->auth_only)
 *   SHELL      channel, pty, environment, shell
 *   EXEC       or, with cn->exec, one command (ngx_segura_exec.c)
 *
 * Event loop only, but for the two pool tasks, which touch only their
 * own context (the resolver) or the SSH session that the paused state
 * hands them (the signature).  While paused, the deadline and an abort
 * are only noted; they take effect when the pause ends, so that nothing
 * is freed under a pool thread.
 */


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>
#include "ngx_segura.h"
#include "ngx_segura_connect.h"
#include "ngx_segura_ssh.h"

#include <netdb.h>
#include <sys/ioctl.h>


#define NGX_SEGURA_CONNECT_MAX_ADDRS  8
#define NGX_SEGURA_CONNECT_PASSES     16
#define NGX_SEGURA_CONNECT_PAUSE_WAIT 1000


struct ngx_segura_connect_resolve_s {
    ngx_thread_task_t          task;
    ngx_segura_connect_t      *cn;     /* NULL once given up on */

    /* the pool thread's: in */
    char                       host[256];
    char                       port[NGX_INT_T_LEN + 1];

    /* out */
    int                        rc;
    ngx_uint_t                 naddrs;
    socklen_t                  socklen[NGX_SEGURA_CONNECT_MAX_ADDRS];
    struct sockaddr_storage    sockaddr[NGX_SEGURA_CONNECT_MAX_ADDRS];
};


typedef struct {
    ngx_segura_connect_t      *cn;
    ngx_int_t                  rc;
} ngx_segura_connect_sign_t;


static void ngx_segura_connect_resolve_name(ngx_segura_connect_t *cn);
static void ngx_segura_connect_resolved(ngx_resolver_ctx_t *ctx);
static void ngx_segura_connect_getaddrinfo(void *data, ngx_log_t *log);
static void ngx_segura_connect_getaddrinfo_done(ngx_event_t *ev);
static void ngx_segura_connect_tcp(ngx_segura_connect_t *cn);
static ngx_socket_t ngx_segura_connect_socket(ngx_segura_connect_t *cn,
    int family);
static ngx_int_t ngx_segura_connect_tcp_done(ngx_segura_connect_t *cn);
static void ngx_segura_connect_event(ngx_event_t *ev);
static void ngx_segura_connect_run(ngx_segura_connect_t *cn);
static ngx_int_t ngx_segura_connect_host_key(ngx_segura_connect_t *cn);
static ngx_int_t ngx_segura_connect_sign(ngx_segura_connect_t *cn);
static void ngx_segura_connect_sign_task(void *data, ngx_log_t *log);
static void ngx_segura_connect_sign_done(ngx_event_t *ev);
static ngx_int_t ngx_segura_connect_unpause(ngx_segura_connect_t *cn);
static void ngx_segura_connect_timeout(ngx_event_t *ev);
static void ngx_segura_connect_fail(ngx_segura_connect_t *cn,
    ngx_segura_ws_err_e err, const char *what, const char *text);
static void ngx_segura_connect_finish(ngx_segura_connect_t *cn);
static void ngx_segura_connect_authed(ngx_segura_connect_t *cn);
static void ngx_segura_connect_next(ngx_segura_connect_t *cn);
static void ngx_segura_connect_close(ngx_segura_connect_t *cn);


void
ngx_segura_connect_start(ngx_segura_connect_t *cn)
{
    ngx_addr_t  addr;

    cn->started = ngx_current_msec;
    cn->state = NGX_SEGURA_CONNECT_RESOLVE;

    cn->deadline.handler = ngx_segura_connect_timeout;
    cn->deadline.data = cn;
    cn->deadline.log = cn->log;

    ngx_add_timer(&cn->deadline, cn->timeout);

    cn->log->action = "connecting to device";

    switch (ngx_parse_addr(cn->pool, &addr, cn->host.data, cn->host.len)) {

    case NGX_OK:
        ngx_inet_set_port(addr.sockaddr, cn->port);

        cn->addrs = ngx_palloc(cn->pool, sizeof(ngx_addr_t));
        if (cn->addrs == NULL) {
            ngx_segura_connect_fail(cn, NGX_SEGURA_WS_ERR_INTERNAL,
                                    "ngx_palloc()", "out of memory");
            return;
        }

        cn->addrs[0] = addr;
        cn->naddrs = 1;

        ngx_segura_connect_tcp(cn);
        return;

    case NGX_DECLINED:
        ngx_segura_connect_resolve_name(cn);
        return;

    default:
        ngx_segura_connect_fail(cn, NGX_SEGURA_WS_ERR_INTERNAL,
                                "ngx_parse_addr()", "out of memory");
        return;
    }
}


static void
ngx_segura_connect_resolve_name(ngx_segura_connect_t *cn)
{
    ngx_resolver_ctx_t            *ctx;
    ngx_segura_connect_resolve_t  *r;

    cn->log->action = "resolving the device's name";

    if (cn->resolver != NULL) {
        ctx = ngx_resolve_start(cn->resolver, NULL);

        if (ctx == NULL) {
            ngx_segura_connect_fail(cn, NGX_SEGURA_WS_ERR_INTERNAL,
                                    "ngx_resolve_start()", "out of memory");
            return;
        }

        if (ctx != NGX_NO_RESOLVER) {
            ctx->name = cn->host;
            ctx->handler = ngx_segura_connect_resolved;
            ctx->data = cn;
            ctx->timeout = cn->resolver_timeout;

            cn->rctx = ctx;

            if (ngx_resolve_name(ctx) != NGX_OK) {
                /* the resolver freed the context */
                cn->rctx = NULL;
                ngx_segura_connect_fail(cn, NGX_SEGURA_WS_ERR_INTERNAL,
                                        "ngx_resolve_name()", "failed");
            }

            return;
        }
    }

    /*
     * no resolver configured: getaddrinfo() blocks, so it runs in a pool
     * thread, in a task of its own that this side may give up on at the
     * deadline (the completion handler then frees it)
     */

    if (cn->host.len >= sizeof(r->host)) {
        ngx_segura_connect_fail(cn, NGX_SEGURA_WS_ERR_DEVICE_UNREACHABLE,
                                "resolving", "the name is too long");
        return;
    }

    r = ngx_calloc(sizeof(ngx_segura_connect_resolve_t), cn->log);
    if (r == NULL) {
        ngx_segura_connect_fail(cn, NGX_SEGURA_WS_ERR_INTERNAL,
                                "ngx_calloc()", "out of memory");
        return;
    }

    ngx_memcpy(r->host, cn->host.data, cn->host.len);
    (void) ngx_snprintf((u_char *) r->port, sizeof(r->port), "%ui%Z",
                        (ngx_uint_t) cn->port);

    r->cn = cn;
    r->task.ctx = r;
    r->task.handler = ngx_segura_connect_getaddrinfo;
    r->task.event.data = r;
    r->task.event.handler = ngx_segura_connect_getaddrinfo_done;
    r->task.event.log = cn->log;

    if (ngx_thread_task_post(cn->thread_pool, &r->task) != NGX_OK) {
        ngx_free(r);
        ngx_segura_connect_fail(cn, NGX_SEGURA_WS_ERR_INTERNAL,
                                "ngx_thread_task_post()", "overloaded");
        return;
    }

    cn->presolve = r;
}


static void
ngx_segura_connect_resolved(ngx_resolver_ctx_t *ctx)
{
    ngx_segura_connect_t *cn = ctx->data;

    u_char      *text;
    ngx_uint_t   i, n;

    cn->rctx = NULL;

    if (ctx->state) {
        text = (u_char *) ngx_resolver_strerror(ctx->state);
        ngx_resolve_name_done(ctx);
        ngx_segura_connect_fail(cn, NGX_SEGURA_WS_ERR_DEVICE_UNREACHABLE,
                                "resolving the name", (char *) text);
        return;
    }

    n = ngx_min(ctx->naddrs, NGX_SEGURA_CONNECT_MAX_ADDRS);

    cn->addrs = ngx_pcalloc(cn->pool, n * sizeof(ngx_addr_t));
    if (cn->addrs == NULL) {
        ngx_resolve_name_done(ctx);
        ngx_segura_connect_fail(cn, NGX_SEGURA_WS_ERR_INTERNAL,
                                "ngx_pcalloc()", "out of memory");
        return;
    }

    for (i = 0; i < n; i++) {
        cn->addrs[i].sockaddr = ngx_palloc(cn->pool, ctx->addrs[i].socklen);
        if (cn->addrs[i].sockaddr == NULL) {
            ngx_resolve_name_done(ctx);
            ngx_segura_connect_fail(cn, NGX_SEGURA_WS_ERR_INTERNAL,
                                    "ngx_palloc()", "out of memory");
            return;
        }

        ngx_memcpy(cn->addrs[i].sockaddr, ctx->addrs[i].sockaddr,
                   ctx->addrs[i].socklen);
        cn->addrs[i].socklen = ctx->addrs[i].socklen;
        ngx_inet_set_port(cn->addrs[i].sockaddr, cn->port);
    }

    cn->naddrs = n;

    ngx_resolve_name_done(ctx);

    ngx_segura_connect_tcp(cn);
}


/* a pool thread: touches only its own task */

static void
ngx_segura_connect_getaddrinfo(void *data, ngx_log_t *log)
{
    ngx_segura_connect_resolve_t *r = data;

    struct addrinfo   hints, *res, *ai;

    ngx_memzero(&hints, sizeof(struct addrinfo));
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_STREAM;
    hints.ai_protocol = IPPROTO_TCP;

    r->rc = getaddrinfo(r->host, r->port, &hints, &res);

    if (r->rc != 0) {
        return;
    }

    for (ai = res;
         ai != NULL && r->naddrs < NGX_SEGURA_CONNECT_MAX_ADDRS;
         ai = ai->ai_next)
    {
        if (ai->ai_addrlen > sizeof(struct sockaddr_storage)) {
            continue;
        }

        ngx_memcpy(&r->sockaddr[r->naddrs], ai->ai_addr, ai->ai_addrlen);
        r->socklen[r->naddrs] = ai->ai_addrlen;
        r->naddrs++;
    }

    freeaddrinfo(res);
}


static void
ngx_segura_connect_getaddrinfo_done(ngx_event_t *ev)
{
    ngx_segura_connect_resolve_t *r = ev->data;

    ngx_uint_t             i;
    ngx_segura_connect_t  *cn;

    cn = r->cn;

    if (cn == NULL) {
        /* the set-up gave up on this name already */
        ngx_free(r);
        return;
    }

    cn->presolve = NULL;

    if (r->rc != 0 || r->naddrs == 0) {
        ngx_segura_connect_fail(cn, NGX_SEGURA_WS_ERR_DEVICE_UNREACHABLE,
                                "getaddrinfo()",
                                r->rc ? gai_strerror(r->rc) : "no address");
        ngx_free(r);
        return;
    }

    cn->addrs = ngx_pcalloc(cn->pool, r->naddrs * sizeof(ngx_addr_t));
    if (cn->addrs == NULL) {
        ngx_free(r);
        ngx_segura_connect_fail(cn, NGX_SEGURA_WS_ERR_INTERNAL,
                                "ngx_pcalloc()", "out of memory");
        return;
    }

    for (i = 0; i < r->naddrs; i++) {
        cn->addrs[i].sockaddr = ngx_pnalloc(cn->pool, r->socklen[i]);
        if (cn->addrs[i].sockaddr == NULL) {
            ngx_free(r);
            ngx_segura_connect_fail(cn, NGX_SEGURA_WS_ERR_INTERNAL,
                                    "ngx_pnalloc()", "out of memory");
            return;
        }

        ngx_memcpy(cn->addrs[i].sockaddr, &r->sockaddr[i], r->socklen[i]);
        cn->addrs[i].socklen = r->socklen[i];
    }

    cn->naddrs = r->naddrs;
    ngx_free(r);

    ngx_segura_connect_tcp(cn);
}


/* the next address: a non-blocking connect, as ngx_event_connect_peer() */

static void
ngx_segura_connect_tcp(ngx_segura_connect_t *cn)
{
    int                rc;
    ngx_err_t          err;
    ngx_socket_t       s;
    ngx_connection_t  *c;

    cn->state = NGX_SEGURA_CONNECT_TCP;
    cn->log->action = "connecting to device";

    while (cn->next < cn->naddrs) {

        s = ngx_segura_connect_socket(cn,
                                   cn->addrs[cn->next].sockaddr->sa_family);
        if (s == (ngx_socket_t) -1) {
            return;
        }

        c = ngx_get_connection(s, cn->log);
        if (c == NULL) {
            (void) ngx_close_socket(s);
            ngx_segura_connect_fail(cn, NGX_SEGURA_WS_ERR_INTERNAL,
                                    "ngx_get_connection()",
                                    "no free connection");
            return;
        }

        c->data = cn;
        c->pool = cn->pool;
        c->log = cn->log;
        c->read->log = cn->log;
        c->write->log = cn->log;
        c->read->handler = ngx_segura_connect_event;
        c->write->handler = ngx_segura_connect_event;

        cn->peer = c;

        if (ngx_add_conn) {
            if (ngx_add_conn(c) == NGX_ERROR) {
                ngx_segura_connect_fail(cn, NGX_SEGURA_WS_ERR_INTERNAL,
                                        "ngx_add_conn()", "failed");
                return;
            }

        } else if (ngx_add_event(c->read, NGX_READ_EVENT, NGX_CLEAR_EVENT)
                   != NGX_OK
                   || ngx_add_event(c->write, NGX_WRITE_EVENT,
                                    NGX_CLEAR_EVENT)
                      != NGX_OK)
        {
            ngx_segura_connect_fail(cn, NGX_SEGURA_WS_ERR_INTERNAL,
                                    "ngx_add_event()", "failed");
            return;
        }

        rc = connect(s, cn->addrs[cn->next].sockaddr,
                     cn->addrs[cn->next].socklen);

        err = (rc == -1) ? ngx_socket_errno : 0;

        if (rc == -1 && err == NGX_EINPROGRESS) {
            /* the write event tells the outcome */
            return;
        }

        if (rc == 0) {
            if (ngx_segura_connect_tcp_done(cn) == NGX_OK) {
                ngx_segura_connect_run(cn);
            }

            return;
        }

        ngx_log_error(NGX_LOG_INFO, cn->log, err, "connect() to %V failed",
                      &cn->host);

        cn->last_err = err;
        ngx_close_connection(c);
        cn->peer = NULL;
        cn->next++;
    }

    ngx_segura_connect_fail(cn, NGX_SEGURA_WS_ERR_DEVICE_UNREACHABLE,
                            "connect()", cn->last_err
                                         ? strerror(cn->last_err)
                                         : "no address");
}


static ngx_socket_t
ngx_segura_connect_socket(ngx_segura_connect_t *cn, int family)
{
    int           one;
    ngx_err_t     err;
    ngx_socket_t  s, low;

    s = ngx_socket(family, SOCK_STREAM | SOCK_CLOEXEC, 0);

    if (s == (ngx_socket_t) -1) {
        err = ngx_socket_errno;
        ngx_segura_connect_fail(cn, NGX_SEGURA_WS_ERR_INTERNAL,
                                "socket()", strerror(err));
        return (ngx_socket_t) -1;
    }

    if (s > NGX_SEGURA_SSH_MAX_FD) {

        /*
         * libssh would keep only the low 16 bits of the descriptor and
         * use another connection's socket: move it below, or give up
         */

        low = fcntl(s, F_DUPFD_CLOEXEC, 3);

        if (low == (ngx_socket_t) -1 || low > NGX_SEGURA_SSH_MAX_FD) {
            if (low != (ngx_socket_t) -1) {
                (void) ngx_close_socket(low);
            }

            ngx_log_error(NGX_LOG_ERR, cn->log, 0,
                          "segura connect: socket descriptor %d is above "
                          "65535, which libssh cannot use, and none below "
                          "is free", s);
            (void) ngx_close_socket(s);
            ngx_segura_connect_fail(cn, NGX_SEGURA_WS_ERR_INTERNAL,
                                    "socket()", "descriptor above 65535");
            return (ngx_socket_t) -1;
        }

        (void) ngx_close_socket(s);
        s = low;
    }

    if (ngx_nonblocking(s) == -1) {
        err = ngx_socket_errno;
        (void) ngx_close_socket(s);
        ngx_segura_connect_fail(cn, NGX_SEGURA_WS_ERR_INTERNAL,
                                ngx_nonblocking_n, strerror(err));
        return (ngx_socket_t) -1;
    }

    one = 1;
    (void) setsockopt(s, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(int));

    return s;
}


/* TCP is up: the socket goes to libssh */

static ngx_int_t
ngx_segura_connect_tcp_done(ngx_segura_connect_t *cn)
{
    int                err;
    socklen_t          len;
    ngx_connection_t  *c;

    c = cn->peer;

    err = 0;
    len = sizeof(int);

    if (getsockopt(c->fd, SOL_SOCKET, SO_ERROR, (void *) &err, &len) == -1) {
        err = ngx_socket_errno;
    }

    if (err) {
        ngx_log_error(NGX_LOG_INFO, cn->log, err, "connect() to %V failed",
                      &cn->host);

        cn->last_err = err;
        ngx_close_connection(c);
        cn->peer = NULL;
        cn->next++;

        ngx_segura_connect_tcp(cn);
        return NGX_DECLINED;
    }

    /* libssh closes the socket; only the nginx side is ours from here */

    c->shared = 1;

    cn->state = NGX_SEGURA_CONNECT_HANDSHAKE;
    cn->log->action = "negotiating with device";

    if (ngx_segura_ssh_start(cn->ssh, c->fd, (char *) cn->host.data)
        != NGX_OK)
    {
        ngx_segura_connect_fail(cn, cn->ssh->err, NULL, NULL);
        return NGX_ERROR;
    }

    return NGX_OK;
}


static void
ngx_segura_connect_event(ngx_event_t *ev)
{
    ngx_connection_t      *c;
    ngx_segura_connect_t  *cn;

    c = ev->data;
    cn = c->data;

    if (cn->paused || cn->state == NGX_SEGURA_CONNECT_DONE) {
        /* the step after the pause looks at the socket anyway */
        return;
    }

    if (c->close) {
        /* worker_shutdown_timeout: the worker is going away */
        ngx_segura_connect_fail(cn, NGX_SEGURA_WS_ERR_NONE, NULL, NULL);
        return;
    }

    if (cn->state == NGX_SEGURA_CONNECT_TCP) {
        if (!ev->write && !ev->eof && !ev->error) {
            return;
        }

        if (ngx_segura_connect_tcp_done(cn) != NGX_OK) {
            return;
        }
    }

    ngx_segura_connect_run(cn);
}


static void
ngx_segura_connect_run(ngx_segura_connect_t *cn)
{
    int                      pending;
    ngx_int_t                rc;
    ngx_uint_t               pass;
    ngx_segura_ssh_t        *ssh;
    ngx_connection_t        *c;

    ssh = cn->ssh;
    c = cn->peer;
    rc = NGX_AGAIN;

    for (pass = 0; pass < NGX_SEGURA_CONNECT_PASSES; pass++) {

        switch (cn->state) {

        case NGX_SEGURA_CONNECT_HANDSHAKE:
            rc = ngx_segura_ssh_handshake(ssh);

            if (rc == NGX_OK) {
                rc = ngx_segura_connect_host_key(cn);
            }

            break;

        case NGX_SEGURA_CONNECT_OFFER:
            rc = ngx_segura_ssh_offer(ssh);

            if (rc == NGX_OK) {
                rc = ngx_segura_connect_sign(cn);
            }

            break;

        case NGX_SEGURA_CONNECT_AUTH:
            rc = ngx_segura_ssh_auth(ssh);

            if (rc == NGX_OK) {
                if (cn->auth_only) {
                    ngx_segura_connect_authed(cn);
                    return;
                }

                ngx_segura_connect_next(cn);
            }

            break;

        case NGX_SEGURA_CONNECT_SHELL:
            rc = ngx_segura_ssh_shell(ssh);

            if (rc == NGX_OK) {
                cn->state = NGX_SEGURA_CONNECT_DONE;
                ngx_segura_connect_finish(cn);
                return;
            }

            break;

        case NGX_SEGURA_CONNECT_EXEC:
            rc = ngx_segura_exec_run(ssh, cn->exec);

            if (rc == NGX_OK) {
                cn->executed = 1;
                ngx_segura_connect_close(cn);
                cn->state = NGX_SEGURA_CONNECT_DONE;
                ngx_segura_connect_finish(cn);
                return;
            }

            break;

        default:
            /* paused, or done */
            return;
        }

        if (rc == NGX_ERROR) {
            ngx_segura_connect_fail(cn, ssh->err, NULL, NULL);
            return;
        }

        if (cn->paused) {
            return;
        }

        if (rc == NGX_OK) {
            /* the next step may have something to do already */
            continue;
        }

        /*
         * NGX_AGAIN: libssh reads at most 4 KiB per call, and with
         * edge-triggered events the rest of what arrived would wait for
         * the next packet
         */

        if (ioctl(c->fd, FIONREAD, &pending) == 0 && pending > 0) {
            continue;
        }

        return;
    }

    /* let the other connections of the worker run; resume soon */

    ngx_post_event(c->read, &ngx_posted_events);
}


static ngx_int_t
ngx_segura_connect_host_key(ngx_segura_connect_t *cn)
{
    ngx_int_t  rc;

    cn->state = NGX_SEGURA_CONNECT_HOST_KEY;
    cn->paused = 1;

    /* no authentication is attempted with a host key we do not trust */

    rc = cn->host_key(cn);

    if (rc == NGX_AGAIN) {
        /* the owner resumes */
        ngx_add_timer(&cn->deadline, NGX_SEGURA_CONNECT_PAUSE_WAIT);
        return NGX_AGAIN;
    }

    cn->paused = 0;

    if (rc != NGX_OK) {
        return NGX_ERROR;
    }

    cn->log->action = "authenticating to device";

    if (ngx_segura_ssh_heavy(cn->ssh)) {
        cn->state = NGX_SEGURA_CONNECT_OFFER;

    } else {
        cn->state = NGX_SEGURA_CONNECT_AUTH;
    }

    return NGX_OK;
}


void
ngx_segura_connect_resume(ngx_segura_connect_t *cn, ngx_int_t rc)
{
    if (cn->state != NGX_SEGURA_CONNECT_HOST_KEY || !cn->paused) {
        ngx_log_error(NGX_LOG_ALERT, cn->log, 0,
                      "segura connect: resumed in state %d", cn->state);
        return;
    }

    if (ngx_segura_connect_unpause(cn) != NGX_OK) {
        return;
    }

    if (rc != NGX_OK) {
        ngx_segura_connect_fail(cn, cn->ssh->err, NULL, NULL);
        return;
    }

    cn->log->action = "authenticating to device";
    cn->state = ngx_segura_ssh_heavy(cn->ssh) ? NGX_SEGURA_CONNECT_OFFER
                                              : NGX_SEGURA_CONNECT_AUTH;

    ngx_segura_connect_run(cn);
}


/* the device takes the heavy key: a pool thread signs and sends */

static ngx_int_t
ngx_segura_connect_sign(ngx_segura_connect_t *cn)
{
    ngx_segura_connect_sign_t  *ctx;

    if (cn->task == NULL) {
        cn->task = ngx_thread_task_alloc(cn->pool,
                                         sizeof(ngx_segura_connect_sign_t));
        if (cn->task == NULL) {
            return ngx_segura_ssh_fail(cn->ssh, NGX_SEGURA_WS_ERR_INTERNAL,
                                       "ngx_thread_task_alloc()",
                                       "out of memory");
        }
    }

    ctx = cn->task->ctx;
    ctx->cn = cn;
    ctx->rc = NGX_ERROR;

    cn->task->handler = ngx_segura_connect_sign_task;
    cn->task->event.data = cn;
    cn->task->event.handler = ngx_segura_connect_sign_done;
    cn->task->event.log = cn->log;

    if (ngx_thread_task_post(cn->thread_pool, cn->task) != NGX_OK) {
        return ngx_segura_ssh_fail(cn->ssh, NGX_SEGURA_WS_ERR_INTERNAL,
                                   "ngx_thread_task_post()", "overloaded");
    }

    /* from here the pool thread owns the SSH session until "done" runs */

    cn->state = NGX_SEGURA_CONNECT_SIGN;
    cn->paused = 1;

    ngx_add_timer(&cn->deadline, NGX_SEGURA_CONNECT_PAUSE_WAIT);

    return NGX_AGAIN;
}


static void
ngx_segura_connect_sign_task(void *data, ngx_log_t *log)
{
    ngx_segura_connect_sign_t *ctx = data;

    /*
     * signs, sends without waiting (the socket is non-blocking) and looks
     * once for an answer; the event loop waits for the rest
     */

    ctx->rc = ngx_segura_ssh_auth(ctx->cn->ssh);
}


static void
ngx_segura_connect_sign_done(ngx_event_t *ev)
{
    ngx_segura_connect_t *cn = ev->data;

    ngx_segura_connect_sign_t  *ctx;

    ctx = cn->task->ctx;

    if (ngx_segura_connect_unpause(cn) != NGX_OK) {
        return;
    }

    switch (ctx->rc) {

    case NGX_OK:
        if (cn->auth_only) {
            ngx_segura_connect_authed(cn);
            return;
        }

        ngx_segura_connect_next(cn);
        break;

    case NGX_AGAIN:
        cn->state = NGX_SEGURA_CONNECT_AUTH;
        break;

    default:
        ngx_segura_connect_fail(cn, cn->ssh->err, NULL, NULL);
        return;
    }

    ngx_segura_connect_run(cn);
}


/* a pause ends: what happened meanwhile takes effect now */

static ngx_int_t
ngx_segura_connect_unpause(ngx_segura_connect_t *cn)
{
    ngx_msec_int_t  left;

    cn->paused = 0;

    if (cn->deadline.timer_set) {
        ngx_del_timer(&cn->deadline);
    }

    if (cn->aborted) {
        ngx_segura_connect_fail(cn, cn->abort_err, NULL, NULL);
        return NGX_ERROR;
    }

    left = (ngx_msec_int_t) (cn->started + cn->timeout - ngx_current_msec);

    if (cn->expired || left <= 0) {
        ngx_segura_connect_fail(cn, NGX_SEGURA_WS_ERR_CONNECT_TIMEOUT,
                                "the set-up", "timed out");
        return NGX_ERROR;
    }

    ngx_add_timer(&cn->deadline, (ngx_msec_t) left);

    return NGX_OK;
}


static void
ngx_segura_connect_timeout(ngx_event_t *ev)
{
    ngx_segura_connect_t *cn = ev->data;

    ngx_msec_int_t  left;

    left = (ngx_msec_int_t) (cn->started + cn->timeout - ngx_current_msec);

    if (cn->paused) {

        /*
         * a pool thread has the session: note it, and keep a timer so
         * that a graceful exit waits for the thread
         */

        if (left <= 0) {
            cn->expired = 1;
        }

        ngx_add_timer(&cn->deadline, NGX_SEGURA_CONNECT_PAUSE_WAIT);
        return;
    }

    ngx_segura_connect_fail(cn, NGX_SEGURA_WS_ERR_CONNECT_TIMEOUT,
                            "the set-up", "timed out");
}


/*
 * The owner gives up (the client left, the worker shuts down): err is
 * what the owner is told in done; NGX_SEGURA_WS_ERR_NONE means "no
 * device error".  During a pause, done comes when the pool thread is back.
 */

void
ngx_segura_connect_abort(ngx_segura_connect_t *cn, ngx_segura_ws_err_e err,
    const char *why)
{
    if (cn->state == NGX_SEGURA_CONNECT_IDLE
        || cn->state == NGX_SEGURA_CONNECT_DONE)
    {
        return;
    }

    if (cn->paused) {
        cn->aborted = 1;
        cn->abort_err = err;
        return;
    }

    ngx_segura_connect_fail(cn, err, "the set-up", why);
}


ngx_uint_t
ngx_segura_connect_busy(ngx_segura_connect_t *cn)
{
    return cn->state != NGX_SEGURA_CONNECT_IDLE
           && cn->state != NGX_SEGURA_CONNECT_DONE;
}


static void
ngx_segura_connect_fail(ngx_segura_connect_t *cn, ngx_segura_ws_err_e err,
    const char *what, const char *text)
{
    if (err != NGX_SEGURA_WS_ERR_NONE) {
        (void) ngx_segura_ssh_fail(cn->ssh, err, what ? what : "the set-up",
                                   text);
    }

    ngx_segura_connect_close(cn);

    cn->state = NGX_SEGURA_CONNECT_DONE;

    ngx_segura_connect_finish(cn);
}


static void
ngx_segura_connect_finish(ngx_segura_connect_t *cn)
{
    if (cn->deadline.timer_set) {
        ngx_del_timer(&cn->deadline);
    }

    cn->log->action = NULL;

    cn->done(cn);
}


/* auth_only: the key was accepted, and that is all the owner asked */

static void
ngx_segura_connect_authed(ngx_segura_connect_t *cn)
{
    cn->authenticated = 1;

    ngx_segura_connect_close(cn);

    cn->state = NGX_SEGURA_CONNECT_DONE;

    ngx_segura_connect_finish(cn);
}


/* authenticated: a shell, or the owner's one command */

static void
ngx_segura_connect_next(ngx_segura_connect_t *cn)
{
    if (cn->exec != NULL) {
        cn->state = NGX_SEGURA_CONNECT_EXEC;
        cn->log->action = "running a command on device";
        return;
    }

    cn->state = NGX_SEGURA_CONNECT_SHELL;
    cn->log->action = "opening a shell on device";
}


static void
ngx_segura_connect_close(ngx_segura_connect_t *cn)
{
    if (cn->rctx != NULL) {
        ngx_resolve_name_done(cn->rctx);
        cn->rctx = NULL;
    }

    if (cn->presolve != NULL) {
        /* the pool thread's task frees itself */
        cn->presolve->cn = NULL;
        cn->presolve = NULL;
    }

    if (cn->peer != NULL) {
        if (cn->peer->shared) {
            ngx_segura_connect_release_peer(cn->peer);

        } else {
            ngx_close_connection(cn->peer);
        }

        cn->peer = NULL;
    }

    ngx_segura_ssh_close(cn->ssh);
}


/* the socket is libssh's: release the nginx side only */

void
ngx_segura_connect_release_peer(ngx_connection_t *peer)
{
    if (peer->read->timer_set) {
        ngx_del_timer(peer->read);
    }

    if (peer->write->timer_set) {
        ngx_del_timer(peer->write);
    }

    if (peer->read->posted) {
        ngx_delete_posted_event(peer->read);
    }

    if (peer->write->posted) {
        ngx_delete_posted_event(peer->write);
    }

    if (ngx_del_conn) {
        (void) ngx_del_conn(peer, NGX_CLOSE_EVENT);

    } else {
        if (peer->read->active) {
            (void) ngx_del_event(peer->read, NGX_READ_EVENT,
                                 NGX_CLOSE_EVENT);
        }

        if (peer->write->active) {
            (void) ngx_del_event(peer->write, NGX_WRITE_EVENT,
                                 NGX_CLOSE_EVENT);
        }
    }

    ngx_free_connection(peer);
    peer->fd = (ngx_socket_t) -1;
}
