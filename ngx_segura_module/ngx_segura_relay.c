
/*
 * Copyright (C) ngx_segura_module authors
 */


/*
 * The relay: the owner's WebSocket as a viewer of a terminal
 * (ngx_segura_terminal.c), after the handshake (ngx_segura_handshake.c)
 * answered 101.  It owns the client side: the frame parser, one bounded
 * buffer per direction, control messages, pings, the close handshake,
 * and the end of the HTTP request.
 *
 *   WAIT     the terminal is being set up; the client is not read (what
 *            it types waits in the socket), only watched: has it gone?
 *   RELAY    bytes both ways
 *   CLOSING  our close frame is queued; the client's is awaited for a
 *            while (RFC 6455 7.1.1), the terminal is no longer ours
 *   DONE     the request is being finalized
 *
 * The loop follows nginx's upgraded-connection relay: write before
 * reading more, stop reading a side whose peer cannot take data.  Client
 * -> device: the frames are unmasked in place in rl->in and their payload
 * goes to the terminal; what the SSH window cannot take stays in rl->in
 * and the client is not read meanwhile.  Device -> client: terminal data
 * is read straight behind a frame header into rl->out; while rl->out is
 * not sent, the terminal is not read, and the SSH window stops the
 * device.  A client that acknowledges what it rendered ("ack") also
 * stops the reading while more than NGX_SEGURA_RELAY_ACK_WINDOW of output
 * is sent and not acknowledged.
 *
 * A watcher (GET /session?watch=) is the same relay, read-only: it never
 * reads the terminal, the terminal feeds it what the owner read
 * (ngx_segura_relay_output).  What does not fit in its out buffer, or in
 * its acknowledgement window, is skipped and the watcher is told so
 * ("skipped"): a watcher never holds the owner or the device.  Input
 * other than acknowledgements, pings and the close is refused
 * (read_only).  A watcher on a worker that does not own the session is
 * fed the same way by a tail of the session's recording
 * (ngx_segura_tail.c) instead of the terminal.
 *
 * Event loop only.
 */


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>
#include "ngx_segura.h"
#include "ngx_segura_relay.h"
#include "ngx_segura_terminal.h"
#include "ngx_segura_ws.h"

#include <jansson.h>


#define NGX_SEGURA_RELAY_IN_SIZE     16384
#define NGX_SEGURA_RELAY_RESERVE     4096   /* events and control frames */
/* the reserve grew from 512 bytes for longer events: the room for output
 * stays as it was */
#define NGX_SEGURA_RELAY_OUT_SIZE    (32768 - 512 + NGX_SEGURA_RELAY_RESERVE)
#define NGX_SEGURA_RELAY_WATCH_SIZE  (65536 + NGX_SEGURA_RELAY_RESERVE)
#define NGX_SEGURA_RELAY_CLOSE_WAIT  5000
#define NGX_SEGURA_RELAY_PASSES      16


static void ngx_segura_relay_ready(ngx_segura_viewer_t *v);
static void ngx_segura_relay_wake(ngx_segura_viewer_t *v);
static void ngx_segura_relay_ended(ngx_segura_viewer_t *v,
    ngx_segura_terminal_t *t);
static void ngx_segura_relay_displaced(ngx_segura_viewer_t *v);
static void ngx_segura_relay_output(ngx_segura_viewer_t *v, u_char *data,
    size_t len);
static void ngx_segura_relay_viewer_event(ngx_segura_viewer_t *v,
    u_char *data, size_t len);
static ngx_uint_t ngx_segura_relay_tell_skipped(ngx_segura_relay_t *rl);
static void ngx_segura_relay_read_only(ngx_segura_relay_t *rl);
static void ngx_segura_relay_watch_init(ngx_segura_relay_t *rl,
    const char *name);
static void ngx_segura_relay_tail_end(void *data, const char *reason);
static void ngx_segura_relay_handler(ngx_event_t *ev);
static void ngx_segura_relay_conn_handler(ngx_event_t *ev);
static void ngx_segura_relay_event_handler(ngx_segura_relay_t *rl,
    ngx_event_t *ev);
static ngx_int_t ngx_segura_relay_client_lost(ngx_connection_t *c);
static void ngx_segura_relay_shutdown(ngx_segura_relay_t *rl);
static void ngx_segura_relay_run(ngx_segura_relay_t *rl);
static ngx_int_t ngx_segura_relay_send(ngx_segura_relay_t *rl);
static ngx_int_t ngx_segura_relay_to_device(ngx_segura_relay_t *rl);
static ngx_int_t ngx_segura_relay_frame(ngx_segura_relay_t *rl,
    ngx_segura_ws_event_t *ev);
static void ngx_segura_relay_control(ngx_segura_relay_t *rl);
static ngx_int_t ngx_segura_relay_from_device(ngx_segura_relay_t *rl);
static ngx_int_t ngx_segura_relay_queue(ngx_segura_relay_t *rl,
    unsigned opcode, u_char *data, size_t len);
static void ngx_segura_relay_event(ngx_segura_relay_t *rl, json_t *json);
static void ngx_segura_relay_fail(ngx_segura_relay_t *rl,
    ngx_segura_ws_err_e err, const char *end_reason);
static void ngx_segura_relay_close(ngx_segura_relay_t *rl, ngx_uint_t code,
    const char *reason, const char *end_reason);
static void ngx_segura_relay_timer_handler(ngx_event_t *ev);
static void ngx_segura_relay_arm_timer(ngx_segura_relay_t *rl);
static void ngx_segura_relay_leave(ngx_segura_relay_t *rl,
    const char *end_reason);
static void ngx_segura_relay_finish(ngx_segura_relay_t *rl);
static ngx_int_t ngx_segura_relay_setup(ngx_segura_relay_t *rl,
    ngx_pool_t *pool);
static void ngx_segura_relay_take(ngx_segura_relay_t *rl,
    ngx_segura_relay_state_e state, char *action);


ngx_int_t
ngx_segura_relay_init(ngx_segura_relay_t *rl, ngx_http_request_t *r)
{
    rl->r = r;
    rl->c = r->connection;
    rl->slcf = ngx_http_get_module_loc_conf(r, ngx_http_segura_module);

    return ngx_segura_relay_setup(rl, r->pool);
}


/*
 * the owner's viewer on a connection that is not an HTTP request (a
 * resume forwarded by another worker of the node, ngx_segura_resume.c):
 * c->data is the relay, the buffers come from pool, and done() is called
 * once at the end, when the relay has let go of the terminal
 */

ngx_int_t
ngx_segura_relay_init_conn(ngx_segura_relay_t *rl, ngx_connection_t *c,
    ngx_pool_t *pool, ngx_http_segura_loc_conf_t *slcf,
    ngx_segura_relay_done_pt done)
{
    rl->r = NULL;
    rl->c = c;
    rl->slcf = slcf;
    rl->done = done;
    c->data = rl;

    return ngx_segura_relay_setup(rl, pool);
}


static ngx_int_t
ngx_segura_relay_setup(ngx_segura_relay_t *rl, ngx_pool_t *pool)
{
    size_t  size;

    rl->viewer.ready = ngx_segura_relay_ready;
    rl->viewer.wake = ngx_segura_relay_wake;
    rl->viewer.ended = ngx_segura_relay_ended;
    rl->viewer.displaced = ngx_segura_relay_displaced;
    rl->viewer.event = ngx_segura_relay_viewer_event;
    rl->viewer.data = rl;

    if (rl->watching) {
        rl->viewer.output = ngx_segura_relay_output;
    }

    size = rl->watching ? NGX_SEGURA_RELAY_WATCH_SIZE
                        : NGX_SEGURA_RELAY_OUT_SIZE;

    rl->in.start = ngx_palloc(pool, NGX_SEGURA_RELAY_IN_SIZE);
    rl->out.start = ngx_palloc(pool, size);
    if (rl->in.start == NULL || rl->out.start == NULL) {
        return NGX_ERROR;
    }

    rl->in.pos = rl->in.start;
    rl->in.last = rl->in.start;
    rl->in.end = rl->in.start + NGX_SEGURA_RELAY_IN_SIZE;
    rl->out.pos = rl->out.start;
    rl->out.last = rl->out.start;
    rl->out.end = rl->out.start + size;

    ngx_segura_ws_parser_init(&rl->ws, rl->slcf->max_message);

    return NGX_OK;
}


/* the 101 went: the connection carries WebSocket frames from here */

void
ngx_segura_relay_start(ngx_segura_relay_t *rl, ngx_segura_terminal_t *t)
{
    ngx_segura_relay_take(rl, NGX_SEGURA_RELAY_WAIT,
                          "setting up the terminal");

    ngx_segura_terminal_start(t, &rl->viewer);
}


/* the connection's events are the relay's from here */

static void
ngx_segura_relay_take(ngx_segura_relay_t *rl, ngx_segura_relay_state_e state,
    char *action)
{
    ngx_connection_t  *c;

    c = rl->c;

    if (c->read->timer_set) {
        ngx_del_timer(c->read);
    }

    if (c->write->timer_set) {
        ngx_del_timer(c->write);
    }

    c->read->handler = rl->r ? ngx_segura_relay_handler
                             : ngx_segura_relay_conn_handler;
    c->write->handler = c->read->handler;

    rl->last_client = ngx_current_msec;
    rl->state = state;
    c->log->action = action;
}


/*
 * the 101 of a resume went: the client had received `received` bytes of
 * output; what the terminal holds after that goes first, then live
 */

void
ngx_segura_relay_resume(ngx_segura_relay_t *rl, ngx_segura_terminal_t *t,
    off_t received)
{
    json_t  *json;

    ngx_segura_relay_take(rl, NGX_SEGURA_RELAY_RELAY, "relaying terminal");

    (void) ngx_cpystrn((u_char *) rl->id, (u_char *) t->id, sizeof(rl->id));

    ngx_segura_terminal_resume(t, &rl->viewer);

    /* what the client lacks and the ring no longer has is lost */

    if (received < t->ring.start) {
        rl->lost = t->ring.start - received;
        received = t->ring.start;
    }

    rl->sent = received;
    rl->acked = received;
    rl->resuming = (received < t->ring.end);

    /*
     * a client that acknowledged before goes on doing so: what is sent
     * stays in the ring until it says it has it, the replay included, so
     * that a second drop loses nothing either
     */

    if (t->history) {
        rl->acking = 1;
        rl->history = 1;
    }

    json = json_pack("{s:s, s:s, s:I, s:I, s:s}", "type", "resumed",
                     "session", rl->id,
                     "missed", (json_int_t) (t->ring.end - received),
                     "lost", (json_int_t) rl->lost,
                     "resume", t->resume);
    ngx_segura_relay_event(rl, json);

    ngx_segura_relay_arm_timer(rl);
    ngx_segura_relay_run(rl);
}


/* a watcher's 101 went: what it sees first, then the live output */

static void
ngx_segura_relay_watch_init(ngx_segura_relay_t *rl, const char *name)
{
    ngx_segura_relay_take(rl, NGX_SEGURA_RELAY_RELAY, "watching terminal");

    rl->viewer.name = name;
}


void
ngx_segura_relay_watch(ngx_segura_relay_t *rl, ngx_segura_terminal_t *t,
    const char *name)
{
    u_char  *p;
    size_t   n, hlen;
    json_t  *json;

    ngx_segura_relay_watch_init(rl, name);

    (void) ngx_cpystrn((u_char *) rl->id, (u_char *) t->id, sizeof(rl->id));

    json = json_pack("{s:s, s:s, s:s, s:s, s:i, s:i, s:b}", "type",
                     "watching", "session", rl->id,
                     "user", t->identity.username,
                     "device", t->device_name, "cols", (int) t->ssh.cols,
                     "rows", (int) t->ssh.rows, "locked", (int) t->locked);
    ngx_segura_relay_event(rl, json);

    /* the recent output, one frame: about a screenful */

    p = rl->out.last;
    n = ngx_segura_terminal_recent(t, p + NGX_SEGURA_WS_HEADER_MAX,
                                   NGX_SEGURA_TERMINAL_RECENT);

    if (n) {
        hlen = ngx_segura_ws_frame_header(p, NGX_SEGURA_WS_OP_BINARY, 1,
                                          (uint64_t) n);
        ngx_memmove(p + hlen, p + NGX_SEGURA_WS_HEADER_MAX, n);
        rl->out.last = p + hlen + n;
        rl->sent += n;
    }

    if (ngx_segura_terminal_watch(t, &rl->viewer) != NGX_OK) {
        ngx_segura_relay_fail(rl, NGX_SEGURA_WS_ERR_INTERNAL, NULL);
    }

    ngx_segura_relay_arm_timer(rl);
    ngx_segura_relay_run(rl);
}


/* another viewer resumed the terminal: this one closes, the shell stays */

static void
ngx_segura_relay_displaced(ngx_segura_viewer_t *v)
{
    ngx_segura_relay_t *rl = v->data;

    if (rl->state == NGX_SEGURA_RELAY_DONE || rl->close_queued) {
        return;
    }

    ngx_segura_relay_fail(rl, NGX_SEGURA_WS_ERR_RESUMED, NULL);

    ngx_post_event(rl->c->write, &ngx_posted_events);
}


void
ngx_segura_relay_watch_remote(ngx_segura_relay_t *rl, const char *id,
    const char *name, const char *owner, const char *device, unsigned cols,
    unsigned rows, ngx_uint_t locked)
{
    json_t                       *json;
    ngx_http_segura_main_conf_t  *smcf;

    ngx_segura_relay_watch_init(rl, name);

    (void) ngx_cpystrn((u_char *) rl->id, (u_char *) id, sizeof(rl->id));

    json = json_pack("{s:s, s:s, s:s, s:s, s:i, s:i, s:b}", "type",
                     "watching", "session", rl->id, "user", owner,
                     "device", device, "cols", (int) cols,
                     "rows", (int) rows, "locked", (int) locked);
    ngx_segura_relay_event(rl, json);

    smcf = ngx_http_get_module_main_conf(rl->r, ngx_http_segura_module);

    rl->tail = ngx_segura_tail_create(rl->c->log, smcf, rl->id, name,
                                      &rl->viewer, ngx_segura_relay_tail_end,
                                      rl);
    if (rl->tail == NULL) {
        ngx_segura_relay_fail(rl, NGX_SEGURA_WS_ERR_INTERNAL, NULL);
    }

    ngx_log_error(NGX_LOG_NOTICE, rl->c->log, 0,
                  "segura session %s: watched by \"%s\" from its recording",
                  rl->id, name);

    ngx_segura_relay_arm_timer(rl);
    ngx_segura_relay_run(rl);
}


/* the session a tail follows ended */

static void
ngx_segura_relay_tail_end(void *data, const char *reason)
{
    json_t              *json;
    ngx_segura_tail_t   *tl;
    ngx_segura_relay_t  *rl;

    rl = data;

    /* reason is the tail's: it goes last */

    tl = rl->tail;
    rl->tail = NULL;

    if (rl->state == NGX_SEGURA_RELAY_RELAY) {
        if (rl->skipped) {
            (void) ngx_segura_relay_tell_skipped(rl);
        }

        json = json_pack("{s:s, s:s}", "type", "ended", "reason", reason);
        ngx_segura_relay_event(rl, json);
        ngx_segura_relay_close(rl, NGX_SEGURA_WS_CLOSE_NORMAL, NULL, NULL);

        ngx_post_event(rl->c->write, &ngx_posted_events);
    }

    ngx_segura_tail_stop(tl);
}


/*
 * A watcher is fed what the owner read, in the owner's stack: copy it or
 * skip it, and send from the event loop
 */

static void
ngx_segura_relay_output(ngx_segura_viewer_t *v, u_char *data, size_t len)
{
    size_t               hlen;
    ngx_segura_relay_t  *rl;

    rl = v->data;

    if (rl->state != NGX_SEGURA_RELAY_RELAY) {
        return;
    }

    if ((rl->skipped && !ngx_segura_relay_tell_skipped(rl))
        || (size_t) (rl->out.end - rl->out.last)
           < NGX_SEGURA_RELAY_RESERVE + NGX_SEGURA_WS_HEADER_MAX + len
        || (rl->acking
            && rl->sent - rl->acked + (off_t) len
               > NGX_SEGURA_RELAY_ACK_WINDOW))
    {
        /* behind: this output is lost to this watcher, and it is told */
        rl->skipped += len;

    } else {
        hlen = ngx_segura_ws_frame_header(rl->out.last,
                                          NGX_SEGURA_WS_OP_BINARY, 1,
                                          (uint64_t) len);
        rl->out.last = ngx_cpymem(rl->out.last + hlen, data, len);
        rl->sent += len;
    }

    ngx_post_event(rl->c->write, &ngx_posted_events);
}


/* an event from the terminal (watched, resize), in the terminal's stack */

static void
ngx_segura_relay_viewer_event(ngx_segura_viewer_t *v, u_char *data,
    size_t len)
{
    ngx_segura_relay_t *rl = v->data;

    if (rl->state != NGX_SEGURA_RELAY_RELAY) {
        return;
    }

    if (ngx_segura_relay_queue(rl, NGX_SEGURA_WS_OP_TEXT, data, len)
        != NGX_OK)
    {
        ngx_log_error(NGX_LOG_INFO, rl->c->log, 0,
                      "segura session %s: no room for an event, dropped",
                      rl->id);
        return;
    }

    ngx_post_event(rl->c->write, &ngx_posted_events);
}


/* returns 1 when the watcher was told what it missed */

static ngx_uint_t
ngx_segura_relay_tell_skipped(ngx_segura_relay_t *rl)
{
    u_char  *p, text[64];

    if ((size_t) (rl->out.end - rl->out.last)
        < NGX_SEGURA_RELAY_RESERVE + NGX_SEGURA_WS_HEADER_MAX + sizeof(text))
    {
        return 0;
    }

    p = ngx_snprintf(text, sizeof(text), "{\"type\":\"skipped\",\"bytes\":%O}",
                     rl->skipped);

    if (ngx_segura_relay_queue(rl, NGX_SEGURA_WS_OP_TEXT, text, p - text)
        != NGX_OK)
    {
        return 0;
    }

    ngx_log_error(NGX_LOG_INFO, rl->c->log, 0,
                  "segura session %s: a watcher fell behind, %O bytes "
                  "skipped", rl->id, rl->skipped);

    rl->skipped = 0;

    return 1;
}


static void
ngx_segura_relay_read_only(ngx_segura_relay_t *rl)
{
    ngx_log_error(NGX_LOG_INFO, rl->c->log, 0,
                  "segura session %s: a watcher sent input, closing",
                  rl->id);

    rl->in.pos = rl->in.last;

    ngx_segura_relay_fail(rl, NGX_SEGURA_WS_ERR_READ_ONLY, NULL);
}


/* the request pool goes: the terminal loses its viewer, if it had us */

void
ngx_segura_relay_cleanup(ngx_segura_relay_t *rl)
{
    if (rl->viewer.terminal != NULL) {
        if (rl->watching) {
            ngx_segura_terminal_unwatch(rl->viewer.terminal, &rl->viewer);

        } else {
            ngx_segura_terminal_detach(rl->viewer.terminal, "client_gone");
        }
    }

    if (rl->tail != NULL) {
        ngx_segura_tail_stop(rl->tail);
        rl->tail = NULL;
    }

    if (rl->timer.timer_set) {
        ngx_del_timer(&rl->timer);
    }
}


static void
ngx_segura_relay_ready(ngx_segura_viewer_t *v)
{
    json_t              *json;
    ngx_segura_relay_t  *rl;

    rl = v->data;

    rl->state = NGX_SEGURA_RELAY_RELAY;
    rl->c->log->action = "relaying terminal";

    (void) ngx_cpystrn((u_char *) rl->id, (u_char *) v->terminal->id,
                       sizeof(rl->id));

    if (v->terminal->resume[0]) {
        json = json_pack("{s:s, s:s, s:s}", "type", "connected",
                         "session", rl->id, "resume", v->terminal->resume);

    } else {
        json = json_pack("{s:s, s:s}", "type", "connected", "session",
                         rl->id);
    }

    ngx_segura_relay_event(rl, json);

    ngx_segura_relay_arm_timer(rl);

    /* the client may have typed during the set-up: read it now */

    ngx_segura_relay_run(rl);
}


static void
ngx_segura_relay_wake(ngx_segura_viewer_t *v)
{
    ngx_segura_relay_t *rl = v->data;

    if (rl->state == NGX_SEGURA_RELAY_RELAY
        || rl->state == NGX_SEGURA_RELAY_CLOSING)
    {
        ngx_segura_relay_run(rl);
    }
}


/* the terminal ended on its own: say how, and close */

static void
ngx_segura_relay_ended(ngx_segura_viewer_t *v, ngx_segura_terminal_t *t)
{
    json_t                 *json;
    ngx_segura_relay_t     *rl;
    ngx_segura_ws_error_t  *e;

    rl = v->data;

    if (rl->state == NGX_SEGURA_RELAY_DONE || rl->close_queued) {
        return;
    }

    if (rl->watching) {
        if (rl->skipped) {
            (void) ngx_segura_relay_tell_skipped(rl);
        }

        json = json_pack("{s:s, s:s}", "type", "ended",
                         "reason", t->end_reason ? t->end_reason : "closed");
        ngx_segura_relay_event(rl, json);
    }

    if (t->shutdown) {
        ngx_segura_relay_close(rl, NGX_SEGURA_WS_CLOSE_GOING_AWAY,
                               "server shutdown", NULL);

    } else if (t->end_err == NGX_SEGURA_WS_ERR_ENDED && t->moderator[0]) {

        /* who ended it, and what they said */

        e = &ngx_segura_ws_errors[t->end_err];

        json = json_pack("{s:s, s:s%, s:s, s:s, s:s}", "type", "error",
                         "code", e->code.data, e->code.len,
                         "message", e->message, "by", t->moderator,
                         "note", t->note);
        ngx_segura_relay_event(rl, json);
        ngx_segura_relay_close(rl, e->close, (char *) e->code.data, NULL);

    } else if (t->end_err != NGX_SEGURA_WS_ERR_NONE) {
        ngx_segura_relay_fail(rl, t->end_err, NULL);

    } else {
        if (t->exit_status >= 0) {
            json = json_pack("{s:s, s:i}", "type", "exit",
                             "status", (int) t->exit_status);

        } else {
            json = json_pack("{s:s, s:n}", "type", "exit", "status");
        }

        ngx_segura_relay_event(rl, json);
        ngx_segura_relay_close(rl, NGX_SEGURA_WS_CLOSE_NORMAL, NULL, NULL);
    }

    /* the terminal may be up the stack: send from the event loop */

    ngx_post_event(rl->c->write, &ngx_posted_events);
}


static void
ngx_segura_relay_handler(ngx_event_t *ev)
{
    ngx_connection_t    *c;
    ngx_http_request_t  *r;
    ngx_segura_relay_t  *rl;

    c = ev->data;
    r = c->data;
    rl = ngx_http_get_module_ctx(r, ngx_http_segura_module);

    ngx_segura_relay_event_handler(rl, ev);
}


/* a connection of our own (a forwarded resume): c->data is the relay */

static void
ngx_segura_relay_conn_handler(ngx_event_t *ev)
{
    ngx_connection_t  *c;

    c = ev->data;

    ngx_segura_relay_event_handler(c->data, ev);
}


static void
ngx_segura_relay_event_handler(ngx_segura_relay_t *rl, ngx_event_t *ev)
{
    ngx_connection_t  *c;

    c = rl->c;

    if (rl->state == NGX_SEGURA_RELAY_DONE) {
        return;
    }

    if (c->close) {
        /* the worker is going away (worker_shutdown_timeout) */
        ngx_segura_relay_shutdown(rl);
        return;
    }

    if (rl->state == NGX_SEGURA_RELAY_WAIT) {

        /* the set-up goes on unless the client left */

        if (!ev->write && ngx_segura_relay_client_lost(c)) {
            ngx_log_error(NGX_LOG_INFO, c->log, 0,
                          "segura session: the client left during the "
                          "set-up");
            rl->client_gone = 1;
            ngx_segura_relay_finish(rl);
        }

        return;
    }

    ngx_segura_relay_run(rl);
}


/* as ngx_http_upstream_check_broken_connection() does */

static ngx_int_t
ngx_segura_relay_client_lost(ngx_connection_t *c)
{
    int        n;
    char       buf[1];
    ngx_err_t  err;

#if (NGX_HAVE_EPOLLRDHUP)

    if ((ngx_event_flags & NGX_USE_EPOLL_EVENT) && ngx_use_epoll_rdhup
        && !c->read->pending_eof)
    {
        return 0;
    }

#endif

    n = recv(c->fd, buf, 1, MSG_PEEK);
    err = ngx_socket_errno;

    if (n > 0) {
        return 0;
    }

    if (n == -1 && err == NGX_EAGAIN) {
        return 0;
    }

    return 1;
}


static void
ngx_segura_relay_shutdown(ngx_segura_relay_t *rl)
{
    ngx_log_error(NGX_LOG_INFO, rl->c->log, 0,
                  "segura session %s: closed by the worker's shutdown",
                  rl->id);

    ngx_segura_relay_close(rl, NGX_SEGURA_WS_CLOSE_GOING_AWAY,
                           "server shutdown", "shutdown");

    /*
     * one attempt to tell the client, whatever nginx marked the
     * connection with: the worker is leaving
     */

    rl->c->error = 0;
    rl->c->write->ready = 1;
    (void) ngx_segura_relay_send(rl);

    ngx_segura_relay_finish(rl);
}


static void
ngx_segura_relay_run(ngx_segura_relay_t *rl)
{
    ngx_int_t               progress;
    ngx_uint_t              pass;
    ngx_connection_t       *c;
    ngx_segura_terminal_t  *t;

    c = rl->c;

    for (pass = 0; pass < NGX_SEGURA_RELAY_PASSES; pass++) {

        progress = 0;

        /* frames already queued go first: write before reading more */

        if (ngx_segura_relay_send(rl) == NGX_ERROR) {
            rl->client_gone = 1;
            break;
        }

        if (rl->state == NGX_SEGURA_RELAY_RELAY
            || (rl->state == NGX_SEGURA_RELAY_CLOSING && !rl->client_closed))
        {
            switch (ngx_segura_relay_to_device(rl)) {
            case NGX_ERROR:
                rl->client_gone = 1;
                goto done;
            case NGX_OK:
                progress = 1;
                break;
            default:
                break;
            }
        }

        if (rl->state == NGX_SEGURA_RELAY_RELAY
            && rl->viewer.terminal != NULL && !rl->watching)
        {
            if (ngx_segura_relay_from_device(rl) == NGX_OK) {
                progress = 1;
            }
        }

        if (rl->out.pos != rl->out.last) {
            if (ngx_segura_relay_send(rl) == NGX_ERROR) {
                rl->client_gone = 1;
                break;
            }
        }

        if (!progress) {
            break;
        }
    }

    if (pass == NGX_SEGURA_RELAY_PASSES) {
        /* let other connections of this worker run; resume soon */
        ngx_post_event(c->read, &ngx_posted_events);
    }

done:

    if (rl->client_gone) {
        if (rl->state == NGX_SEGURA_RELAY_RELAY) {
            ngx_log_error(NGX_LOG_INFO, c->log, 0,
                          "segura session %s: client gone", rl->id);

            /* no close frame: a dropped connection, which may come back */
            rl->resumable = 1;
        }

        ngx_segura_relay_finish(rl);
        return;
    }

    if (rl->state == NGX_SEGURA_RELAY_CLOSING && rl->close_queued
        && rl->out.pos == rl->out.last
        && (rl->client_closed
            || rl->closing_since + NGX_SEGURA_RELAY_CLOSE_WAIT
               <= ngx_current_msec))
    {
        /*
         * RFC 6455 7.1.1: the server closes the TCP connection first, once
         * both close frames went
         */

        ngx_segura_relay_finish(rl);
        return;
    }

    if (ngx_handle_read_event(c->read, 0) != NGX_OK
        || ngx_handle_write_event(c->write, 0) != NGX_OK)
    {
        ngx_segura_relay_finish(rl);
        return;
    }

    if (rl->watching) {
        if (rl->skipped && rl->state == NGX_SEGURA_RELAY_RELAY
            && ngx_segura_relay_tell_skipped(rl))
        {
            ngx_post_event(c->write, &ngx_posted_events);
        }

        return;
    }

    t = rl->viewer.terminal;

    if (t != NULL && rl->state == NGX_SEGURA_RELAY_RELAY) {
        ngx_segura_terminal_poll(t, (size_t) (rl->out.end - rl->out.last)
                                    >= NGX_SEGURA_RELAY_RESERVE + 4 + 1024
                                    && (!rl->acking
                                        || rl->sent - rl->acked
                                           < NGX_SEGURA_RELAY_ACK_WINDOW));
    }
}


static ngx_int_t
ngx_segura_relay_send(ngx_segura_relay_t *rl)
{
    ssize_t            n;
    ngx_connection_t  *c;

    c = rl->c;

    while (rl->out.pos < rl->out.last) {

        if (!c->write->ready) {
            return NGX_AGAIN;
        }

        n = c->send(c, rl->out.pos, rl->out.last - rl->out.pos);

        if (n == NGX_ERROR) {
            return NGX_ERROR;
        }

        if (n == NGX_AGAIN) {
            return NGX_AGAIN;
        }

        rl->out.pos += n;
    }

    rl->out.pos = rl->out.start;
    rl->out.last = rl->out.start;

    if (rl->close_queued) {
        /* RFC 6455 5.5.1: nothing goes after our close frame */
        rl->pong_pending = 0;
    }

    if (rl->pong_pending
        && ngx_segura_relay_queue(rl, NGX_SEGURA_WS_OP_PONG, rl->pong,
                                  rl->pong_len)
           == NGX_OK)
    {
        rl->pong_pending = 0;
        return ngx_segura_relay_send(rl);
    }

    return NGX_OK;
}


/*
 * Client -> device.  Returns NGX_OK when it moved bytes, NGX_AGAIN when
 * it could not, NGX_ERROR when the client is gone.
 */

static ngx_int_t
ngx_segura_relay_to_device(ngx_segura_relay_t *rl)
{
    size_t                  consumed;
    ssize_t                 n;
    ngx_int_t               moved, rc;
    ngx_connection_t       *c;
    ngx_segura_ws_event_t   ev;

    c = rl->c;
    moved = 0;

    for ( ;; ) {

        /* what the channel refused last time goes first */

        if (rl->pending_len) {
            if (rl->viewer.terminal == NULL) {
                rl->pending_len = 0;

            } else {
                n = ngx_segura_terminal_write(rl->viewer.terminal,
                                              rl->pending, rl->pending_len);

                if (n == NGX_DONE) {
                    /* the device is gone; ended() said so */
                    rl->pending_len = 0;
                    return NGX_OK;
                }

                if (n > 0) {
                    rl->pending += n;
                    rl->pending_len -= n;
                    moved = 1;
                }

                if (rl->pending_len) {
                    /* the SSH window is shut: stop reading the client */
                    return moved ? NGX_OK : NGX_AGAIN;
                }
            }
        }

        /* the frames already read */

        while (rl->in.pos < rl->in.last) {

            rc = ngx_segura_ws_parse(&rl->ws, rl->in.pos,
                                     rl->in.last - rl->in.pos, &consumed,
                                     &ev);
            rl->in.pos += consumed;

            if (rc == NGX_SEGURA_WS_NEED_MORE) {
                break;
            }

            if (ngx_segura_relay_frame(rl, &ev) != NGX_OK) {
                return NGX_OK;
            }

            if (rl->pending_len) {
                break;
            }
        }

        if (rl->pending_len) {
            continue;
        }

        if (rl->in.pos == rl->in.last) {
            rl->in.pos = rl->in.start;
            rl->in.last = rl->in.start;
        }

        if (rl->state != NGX_SEGURA_RELAY_RELAY
            && rl->state != NGX_SEGURA_RELAY_CLOSING)
        {
            return NGX_OK;
        }

        if (rl->client_closed || !c->read->ready) {
            return moved ? NGX_OK : NGX_AGAIN;
        }

        n = c->recv(c, rl->in.last, rl->in.end - rl->in.last);

        if (n == NGX_AGAIN) {
            return moved ? NGX_OK : NGX_AGAIN;
        }

        if (n == NGX_ERROR || n == 0) {
            return NGX_ERROR;
        }

        rl->in.last += n;
        rl->last_client = ngx_current_msec;
        moved = 1;
    }
}


static ngx_int_t
ngx_segura_relay_frame(ngx_segura_relay_t *rl, ngx_segura_ws_event_t *ev)
{
    ssize_t  n;

    switch (ev->type) {

    case NGX_SEGURA_WS_DATA:

        if (ev->opcode == NGX_SEGURA_WS_OP_TEXT) {

            /* a JSON control message, collected whole */

            if (ev->flags & NGX_SEGURA_WS_FIRST) {
                rl->text_len = 0;
                rl->text_skip = 0;
            }

            if (rl->text_len + ev->len > sizeof(rl->text)) {
                rl->text_skip = 1;

            } else if (!rl->text_skip) {
                ngx_memcpy(rl->text + rl->text_len, ev->data, ev->len);
                rl->text_len += ev->len;
            }

            if (ev->flags & NGX_SEGURA_WS_LAST) {
                ngx_segura_relay_control(rl);
            }

            return NGX_OK;
        }

        if (rl->watching && rl->state == NGX_SEGURA_RELAY_RELAY) {
            ngx_segura_relay_read_only(rl);
            return NGX_ERROR;
        }

        if (ev->len == 0 || rl->state != NGX_SEGURA_RELAY_RELAY
            || rl->viewer.terminal == NULL)
        {
            return NGX_OK;
        }

        /* keystrokes and paste go to the shell byte for byte */

        n = ngx_segura_terminal_write(rl->viewer.terminal, ev->data, ev->len);

        if (n == NGX_DONE) {
            return NGX_ERROR;
        }

        if ((size_t) n < ev->len) {
            rl->pending = ev->data + n;
            rl->pending_len = ev->len - n;
        }

        return NGX_OK;

    case NGX_SEGURA_WS_PING:

        /* RFC 6455 5.5.3: only the latest ping needs its pong */

        ngx_memcpy(rl->pong, ev->data, ev->len);
        rl->pong_len = ev->len;
        rl->pong_pending = 1;

        return NGX_OK;

    case NGX_SEGURA_WS_PONG:
        return NGX_OK;

    case NGX_SEGURA_WS_CLOSE:

        rl->client_closed = 1;

        if (rl->state == NGX_SEGURA_RELAY_RELAY) {
            ngx_log_error(NGX_LOG_INFO, rl->c->log, 0,
                          "segura session %s: client closed with %ui",
                          rl->id, (ngx_uint_t) ev->code);

            /*
             * a page going away (reload, navigation) may come back: the
             * shell waits for it as for a dropped connection
             */

            if (ev->code == NGX_SEGURA_WS_CLOSE_GOING_AWAY) {
                rl->resumable = 1;
            }

            /* echo the code; 1005 means none was given */

            ngx_segura_relay_close(rl,
                                   ev->code == NGX_SEGURA_WS_CLOSE_NO_STATUS
                                   ? NGX_SEGURA_WS_CLOSE_NORMAL : ev->code,
                                   NULL, "client_closed");
        }

        return NGX_ERROR;

    default: /* NGX_SEGURA_WS_ERROR */

        ngx_log_error(NGX_LOG_INFO, rl->c->log, 0,
                      "segura session %s: client sent a bad frame: %s, "
                      "closing with %ui", rl->id, ev->reason,
                      (ngx_uint_t) ev->code);

        /* nothing the client sends after a bad frame can be trusted */

        rl->client_closed = 1;
        rl->in.pos = rl->in.last;

        ngx_segura_relay_close(rl, ev->code, ev->reason, "protocol_error");

        return NGX_ERROR;
    }
}


static void
ngx_segura_relay_control(ngx_segura_relay_t *rl)
{
    json_t        *json, *type;
    json_int_t     cols, rows, bytes;
    json_error_t   error;

    json = NULL;

    if (rl->text_skip) {
        goto bad;
    }

    json = json_loadb((char *) rl->text, rl->text_len,
                      JSON_REJECT_DUPLICATES, &error);
    if (json == NULL || !json_is_object(json)) {
        goto bad;
    }

    type = json_object_get(json, "type");

    if (!json_is_string(type)) {
        goto bad;
    }

    if (ngx_strcmp(json_string_value(type), "ack") == 0) {

        /*
         * end-to-end flow control: the output the client has rendered,
         * counted from the connected event; never more than was sent,
         * never less than before
         */

        if (!json_is_integer(json_object_get(json, "bytes"))) {
            goto bad;
        }

        bytes = json_integer_value(json_object_get(json, "bytes"));

        if (bytes < rl->acked || bytes > rl->sent) {
            goto bad;
        }

        json_decref(json);

        rl->acked = bytes;

        if (!rl->acking) {
            rl->acking = 1;

            /* from here what is sent is kept until acknowledged */

            if (rl->viewer.terminal != NULL
                && rl->viewer.terminal->resume[0])
            {
                rl->history = 1;
                rl->viewer.terminal->history = 1;

                /* the ring must end where the device's output is */

                if (rl->viewer.terminal->ring.end
                    != rl->viewer.terminal->bytes_out)
                {
                    ngx_segura_ring_reset(&rl->viewer.terminal->ring,
                                          rl->viewer.terminal->bytes_out);
                }
            }
        }

        if (rl->history && rl->viewer.terminal != NULL) {
            ngx_segura_ring_drop(&rl->viewer.terminal->ring, rl->acked);
        }

        return;
    }

    if (rl->watching) {
        json_decref(json);

        if (rl->state == NGX_SEGURA_RELAY_RELAY) {
            ngx_segura_relay_read_only(rl);
        }

        return;
    }

    if (ngx_strcmp(json_string_value(type), "resize") == 0) {

        if (!json_is_integer(json_object_get(json, "cols"))
            || !json_is_integer(json_object_get(json, "rows")))
        {
            goto bad;
        }

        cols = json_integer_value(json_object_get(json, "cols"));
        rows = json_integer_value(json_object_get(json, "rows"));

        if (cols < 1 || cols > NGX_SEGURA_RELAY_MAX_DIM
            || rows < 1 || rows > NGX_SEGURA_RELAY_MAX_DIM)
        {
            goto bad;
        }

        json_decref(json);

        if (rl->state == NGX_SEGURA_RELAY_RELAY
            && rl->viewer.terminal != NULL)
        {
            ngx_segura_terminal_resize(rl->viewer.terminal, (unsigned) cols,
                                       (unsigned) rows);
        }

        return;
    }

bad:

    json_decref(json);

    ngx_log_error(NGX_LOG_INFO, rl->c->log, 0,
                  "segura session %s: client sent a bad control message",
                  rl->id);

    json = json_pack("{s:s, s:s, s:s}", "type", "error",
                     "code", "bad_message",
                     "message", ngx_segura_ws_errors
                                [NGX_SEGURA_WS_ERR_BAD_MESSAGE].message);
    ngx_segura_relay_event(rl, json);
}


/*
 * Device -> client.  Returns NGX_OK when it moved bytes (or the terminal
 * ended), NGX_AGAIN when not.
 */

static ngx_int_t
ngx_segura_relay_from_device(ngx_segura_relay_t *rl)
{
    off_t                   behind;
    u_char                 *p;
    size_t                  room, hlen;
    ssize_t                 n;
    ngx_int_t               moved;
    ngx_segura_terminal_t  *t;

    moved = 0;

    for ( ;; ) {

        /*
         * the payload is read 4 bytes behind the frame header's start:
         * room for the 16-bit length form; a short read moves the payload
         * 2 bytes back for the 7-bit form
         */

        p = rl->out.last;

        if ((size_t) (rl->out.end - p) < NGX_SEGURA_RELAY_RESERVE + 4) {
            /* the client does not take it: leave it to the SSH window */
            return moved ? NGX_OK : NGX_AGAIN;
        }

        room = rl->out.end - p - NGX_SEGURA_RELAY_RESERVE - 4;

        if (rl->acking) {

            /*
             * the client is behind what it renders: the device waits,
             * held by the SSH window, so that an interrupt takes effect
             * at once
             */

            behind = rl->sent - rl->acked;

            if (behind >= NGX_SEGURA_RELAY_ACK_WINDOW) {
                return moved ? NGX_OK : NGX_AGAIN;
            }

            if ((off_t) room > NGX_SEGURA_RELAY_ACK_WINDOW - behind) {
                room = (size_t) (NGX_SEGURA_RELAY_ACK_WINDOW - behind);
            }
        }

        t = rl->viewer.terminal;

        if (rl->resuming) {

            /* a resumed client first gets what the ring holds for it */

            n = ngx_segura_ring_copy(&t->ring, rl->sent, p + 4, room);

            if (!rl->history) {
                ngx_segura_ring_drop(&t->ring, rl->sent + n);
            }

            if (rl->sent + n >= t->ring.end) {
                rl->resuming = 0;
            }

            if (n == 0) {
                continue;
            }

        } else {
            n = ngx_segura_terminal_read(t, p + 4, room);

            if (n == NGX_AGAIN) {
                return moved ? NGX_OK : NGX_AGAIN;
            }

            if (n == NGX_DONE) {
                /* ended() queued the last words */
                return NGX_OK;
            }

            if (rl->history
                && ngx_segura_ring_push(&t->ring, p + 4, (size_t) n, 1,
                                        rl->c->log)
                   != NGX_OK)
            {
                /* no memory for the history: resume loses it, no more */
                rl->history = 0;
                ngx_segura_ring_reset(&t->ring, t->bytes_out);
            }
        }

        hlen = ngx_segura_ws_frame_header(p, NGX_SEGURA_WS_OP_BINARY, 1,
                                          (uint64_t) n);
        if (hlen == 2) {
            ngx_memmove(p + 2, p + 4, n);
        }

        rl->out.last = p + hlen + n;
        rl->sent += n;
        moved = 1;
    }
}


static ngx_int_t
ngx_segura_relay_queue(ngx_segura_relay_t *rl, unsigned opcode, u_char *data,
    size_t len)
{
    size_t  hlen;

    if ((size_t) (rl->out.end - rl->out.last)
        < NGX_SEGURA_WS_HEADER_MAX + len)
    {
        return NGX_AGAIN;
    }

    hlen = ngx_segura_ws_frame_header(rl->out.last, opcode, 1, len);
    rl->out.last += hlen;
    rl->out.last = ngx_cpymem(rl->out.last, data, len);

    return NGX_OK;
}


static void
ngx_segura_relay_event(ngx_segura_relay_t *rl, json_t *json)
{
    char    *text;
    size_t   len;

    if (json == NULL) {
        return;
    }

    text = json_dumps(json, JSON_COMPACT);
    json_decref(json);

    if (text == NULL) {
        return;
    }

    len = ngx_strlen(text);

    /* events are small and few; the reserve at the end of out holds them */

    if (len > NGX_SEGURA_RELAY_RESERVE / 2
        || ngx_segura_relay_queue(rl, NGX_SEGURA_WS_OP_TEXT, (u_char *) text,
                                  len)
           != NGX_OK)
    {
        ngx_log_error(NGX_LOG_ALERT, rl->c->log, 0,
                      "segura session %s: no room for an event", rl->id);
    }

    free(text);
}


static void
ngx_segura_relay_fail(ngx_segura_relay_t *rl, ngx_segura_ws_err_e err,
    const char *end_reason)
{
    json_t                 *json;
    ngx_segura_ws_error_t  *e;

    e = &ngx_segura_ws_errors[err];

    json = json_pack("{s:s, s:s%, s:s}", "type", "error",
                     "code", e->code.data, e->code.len,
                     "message", e->message);
    ngx_segura_relay_event(rl, json);

    ngx_segura_relay_close(rl, e->close, (char *) e->code.data, end_reason);
}


/* end_reason: why the terminal ends, when this viewer ends it */

static void
ngx_segura_relay_close(ngx_segura_relay_t *rl, ngx_uint_t code,
    const char *reason, const char *end_reason)
{
    u_char  payload[NGX_SEGURA_WS_CONTROL_MAX];
    size_t  len;

    if (rl->close_queued) {
        return;
    }

    len = ngx_segura_ws_close_payload(payload, (unsigned) code,
                                      (const u_char *) reason,
                                      reason ? ngx_strlen(reason) : 0);

    if (ngx_segura_relay_queue(rl, NGX_SEGURA_WS_OP_CLOSE, payload, len)
        != NGX_OK)
    {
        ngx_log_error(NGX_LOG_ALERT, rl->c->log, 0,
                      "segura session %s: no room for the close frame",
                      rl->id);
    }

    rl->close_queued = 1;
    rl->closing_since = ngx_current_msec;
    rl->state = NGX_SEGURA_RELAY_CLOSING;

    /* nothing more goes to or comes from the device */

    ngx_segura_relay_leave(rl, end_reason);

    ngx_segura_relay_arm_timer(rl);
}


static void
ngx_segura_relay_timer_handler(ngx_event_t *ev)
{
    u_char               payload[4];
    ngx_msec_t           now;
    ngx_segura_relay_t  *rl;

    rl = ev->data;
    now = ngx_current_msec;

    if (rl->state == NGX_SEGURA_RELAY_CLOSING) {
        if (now - rl->closing_since >= NGX_SEGURA_RELAY_CLOSE_WAIT) {
            ngx_log_error(NGX_LOG_INFO, rl->c->log, 0,
                          "segura session %s: no close frame from the "
                          "client in time", rl->id);
            ngx_segura_relay_finish(rl);
            return;
        }

        ngx_segura_relay_arm_timer(rl);
        return;
    }

    if (rl->state != NGX_SEGURA_RELAY_RELAY) {
        return;
    }

    if (now - rl->last_client >= rl->slcf->ping_interval) {

        /* RFC 6455 5.5.2: keep middleboxes from dropping a quiet client */

        (void) ngx_snprintf(payload, sizeof(payload), "%04xD",
                            (uint32_t) (now & 0xffff));

        if (ngx_segura_relay_queue(rl, NGX_SEGURA_WS_OP_PING, payload,
                                   sizeof(payload))
            == NGX_OK)
        {
            rl->last_client = now;
        }
    }

    ngx_segura_relay_arm_timer(rl);
    ngx_segura_relay_run(rl);
}


static void
ngx_segura_relay_arm_timer(ngx_segura_relay_t *rl)
{
    ngx_msec_t  next;

    if (rl->timer.handler == NULL) {
        rl->timer.handler = ngx_segura_relay_timer_handler;
        rl->timer.data = rl;
        rl->timer.log = rl->c->log;
    }

    if (rl->state == NGX_SEGURA_RELAY_CLOSING) {
        next = rl->closing_since + NGX_SEGURA_RELAY_CLOSE_WAIT
               - ngx_current_msec;

    } else {
        /* one timer for pings, re-armed lazily: never a timer per byte */

        next = rl->last_client + rl->slcf->ping_interval - ngx_current_msec;

        if ((ngx_msec_int_t) next <= 0) {
            next = rl->slcf->ping_interval;
        }
    }

    if ((ngx_msec_int_t) next <= 0) {
        next = 1;
    }

    ngx_add_timer(&rl->timer, next);
}


/* the viewer leaves its terminal, which ends for end_reason */

static void
ngx_segura_relay_leave(ngx_segura_relay_t *rl, const char *end_reason)
{
    ngx_segura_terminal_t  *t;

    t = rl->viewer.terminal;

    if (t != NULL) {
        if (rl->watching) {
            ngx_segura_terminal_unwatch(t, &rl->viewer);

        } else if (!rl->resumable || ngx_segura_terminal_suspend(t) != NGX_OK)
        {
            /* a client that went away without ending it may come back */
            ngx_segura_terminal_detach(t, end_reason);
        }

        rl->viewer.terminal = NULL;
    }

    if (rl->tail != NULL) {
        ngx_segura_tail_stop(rl->tail);
        rl->tail = NULL;
    }

    rl->pending_len = 0;
}


static void
ngx_segura_relay_finish(ngx_segura_relay_t *rl)
{
    ngx_connection_t  *c;

    if (rl->state == NGX_SEGURA_RELAY_DONE) {
        return;
    }

    rl->state = NGX_SEGURA_RELAY_DONE;

    c = rl->c;

    ngx_segura_relay_leave(rl, rl->client_gone ? "client_gone" : "closed");

    if (rl->timer.timer_set) {
        ngx_del_timer(&rl->timer);
    }

    if (c->write->posted) {
        ngx_delete_posted_event(c->write);
    }

    if (rl->r == NULL) {
        /* a connection of our own: whoever made it closes it */
        rl->done(rl);
        return;
    }

    /* drops the reference taken by the handshake and closes */

    ngx_http_finalize_request(rl->r, NGX_HTTP_CLOSE);
    ngx_http_run_posted_requests(c);
}
