
/*
 * Copyright (C) ngx_segura_module authors
 */


#ifndef _NGX_SEGURA_RELAY_H_INCLUDED_
#define _NGX_SEGURA_RELAY_H_INCLUDED_


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>
#include "ngx_segura.h"
#include "ngx_segura_live.h"
#include "ngx_segura_tail.h"
#include "ngx_segura_terminal.h"
#include "ngx_segura_ws.h"


#define NGX_SEGURA_RELAY_TEXT_MAX  1024   /* one JSON control message */
#define NGX_SEGURA_RELAY_MAX_DIM   1000   /* columns and rows */

/*
 * a client that acknowledges what it rendered has at most this much
 * output sent and not yet acknowledged
 */
#define NGX_SEGURA_RELAY_ACK_WINDOW  (256 * 1024)


typedef enum {
    NGX_SEGURA_RELAY_NEW = 0,
    NGX_SEGURA_RELAY_WAIT,       /* upgraded; the terminal is set up */
    NGX_SEGURA_RELAY_RELAY,
    NGX_SEGURA_RELAY_CLOSING,    /* our close frame is queued */
    NGX_SEGURA_RELAY_DONE
} ngx_segura_relay_state_e;


/*
 * The owner's viewer, or a watcher's: a WebSocket on an upgraded HTTP
 * connection.  It
 * must be the first member of the module's context of the request, so
 * that the connection's handlers find it.
 */

typedef struct ngx_segura_relay_s  ngx_segura_relay_t;

typedef void (*ngx_segura_relay_done_pt)(ngx_segura_relay_t *rl);

struct ngx_segura_relay_s {
    ngx_segura_viewer_t            viewer;
    ngx_http_request_t            *r;        /* NULL: a connection of ours */
    ngx_segura_relay_done_pt       done;     /* its end, then */
    void                          *pipe;     /* ngx_segura_resume.c's */
    ngx_connection_t              *c;
    ngx_http_segura_loc_conf_t    *slcf;
    ngx_segura_relay_state_e       state;
    char                           id[NGX_SEGURA_LIVE_ID_LEN];

    ngx_segura_ws_parser_t         ws;
    ngx_buf_t                      in;
    ngx_buf_t                      out;
    u_char                        *pending;  /* payload the channel refused */
    size_t                         pending_len;
    u_char                         text[NGX_SEGURA_RELAY_TEXT_MAX];
    size_t                         text_len;
    u_char                         pong[NGX_SEGURA_WS_CONTROL_MAX];
    size_t                         pong_len;

    off_t                          sent;     /* output payload, in frames */
    off_t                          skipped;  /* a watcher's, not told yet */
    ngx_segura_tail_t             *tail;     /* a watcher from elsewhere */
    off_t                          acked;    /* what the client rendered */
    off_t                          lost;     /* not held when it resumed */

    ngx_event_t                    timer;
    ngx_msec_t                     last_client;  /* any bytes from it */
    ngx_msec_t                     closing_since;

    unsigned                       pong_pending:1;
    unsigned                       text_skip:1;
    unsigned                       client_closed:1;  /* close frame seen */
    unsigned                       client_gone:1;    /* TCP closed */
    unsigned                       close_queued:1;
    unsigned                       acking:1;   /* flow control is on */
    unsigned                       history:1;  /* keeps unacked output */
    unsigned                       resumable:1;   /* it left, may return */
    unsigned                       resuming:1;    /* resumed, not live */
    unsigned                       watching:1; /* a read-only watcher */
};


/* event loop only */
ngx_int_t ngx_segura_relay_init(ngx_segura_relay_t *rl,
    ngx_http_request_t *r);
void ngx_segura_relay_start(ngx_segura_relay_t *rl, ngx_segura_terminal_t *t);
void ngx_segura_relay_resume(ngx_segura_relay_t *rl, ngx_segura_terminal_t *t,
    off_t received);

/*
 * a watcher (rl->watching set before ngx_segura_relay_init()); name is
 * the watcher's user name, which outlives the relay's request
 */
void ngx_segura_relay_watch(ngx_segura_relay_t *rl, ngx_segura_terminal_t *t,
    const char *name);

/*
 * a watcher of a session of another worker or node: it follows the
 * recording (ngx_segura_tail.c); the strings are copied
 */
void ngx_segura_relay_watch_remote(ngx_segura_relay_t *rl, const char *id,
    const char *name, const char *owner, const char *device, unsigned cols,
    unsigned rows, ngx_uint_t locked);
void ngx_segura_relay_cleanup(ngx_segura_relay_t *rl);
ngx_int_t ngx_segura_relay_init_conn(ngx_segura_relay_t *rl,
    ngx_connection_t *c, ngx_pool_t *pool, ngx_http_segura_loc_conf_t *slcf,
    ngx_segura_relay_done_pt done);


#endif /* _NGX_SEGURA_RELAY_H_INCLUDED_ */
