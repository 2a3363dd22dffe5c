
/*
 * Copyright (C) ngx_segura_module authors
 */


#ifndef _NGX_SEGURA_TERMINAL_H_INCLUDED_
#define _NGX_SEGURA_TERMINAL_H_INCLUDED_


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>
#include "ngx_segura.h"
#include "ngx_segura_auth.h"
#include "ngx_segura_connect.h"
#include "ngx_segura_live.h"
#include "ngx_segura_recorder.h"
#include "ngx_segura_ring.h"
#include "ngx_segura_ssh.h"


/* "<worker pid>.<session id>.<32 random bytes, base64url>" */
#define NGX_SEGURA_RESUME_LEN  112


typedef struct ngx_segura_terminal_s  ngx_segura_terminal_t;
typedef struct ngx_segura_viewer_s    ngx_segura_viewer_t;


/*
 * A viewer is what a terminal knows of whoever looks at it: the owner's
 * WebSocket (ngx_segura_relay.c), which reads and writes, and watchers
 * (the same relay, read-only), which are fed.  The terminal calls
 *
 *   ready   once, when the shell is open (t->id names the session); owner
 *   wake    when the device has data for it or room for its input; owner
 *   output  a watcher: bytes the owner read from the device, to copy now
 *           (the watcher must not re-enter the terminal)
 *   event   a JSON event for this viewer (watched, ...): text of len
 *           bytes, to copy now; may be NULL
 *   ended   once, when the terminal ends for a reason of its own (exit,
 *           device gone, idle, revoked, ended, shutdown, set-up failed);
 *           t->end_err, t->exit_status and t->shutdown say how.  The
 *           terminal is valid during the call only, and v->terminal is
 *           already NULL.  The handler must not re-enter the terminal.
 *   displaced   once, when another viewer resumed the terminal while this
 *           one still had it (its client went away unseen): v->terminal
 *           is already NULL; the terminal goes on.
 *
 * The owner that leaves calls ngx_segura_terminal_detach(), a watcher
 * ngx_segura_terminal_unwatch(); neither hears ended.
 */

typedef void (*ngx_segura_viewer_pt)(ngx_segura_viewer_t *v);
typedef void (*ngx_segura_viewer_ended_pt)(ngx_segura_viewer_t *v,
    ngx_segura_terminal_t *t);
typedef void (*ngx_segura_viewer_data_pt)(ngx_segura_viewer_t *v,
    u_char *data, size_t len);

struct ngx_segura_viewer_s {
    ngx_segura_terminal_t         *terminal;
    ngx_segura_viewer_pt           ready;
    ngx_segura_viewer_pt           wake;
    ngx_segura_viewer_data_pt      output;
    ngx_segura_viewer_data_pt      event;
    ngx_segura_viewer_ended_pt     ended;
    ngx_segura_viewer_pt           displaced;
    void                          *data;
    ngx_queue_t                    queue;     /* a watcher's, in watchers */
    const char                    *name;      /* a watcher's user name */
};


/* an administrator's message at the end of a session, in bytes */
#define NGX_SEGURA_TERMINAL_NOTE_MAX  500

/* the recent output a new watcher sees first: about a screenful */

#define NGX_SEGURA_TERMINAL_RECENT  16384


typedef enum {
    NGX_SEGURA_TERMINAL_NEW = 0,
    NGX_SEGURA_TERMINAL_CONNECT,
    NGX_SEGURA_TERMINAL_LIVE,
    NGX_SEGURA_TERMINAL_ENDED
} ngx_segura_terminal_state_e;


struct ngx_segura_terminal_s {

    /*
     * in: set by the handshake before ngx_segura_terminal_start(), in
     * part by its pool thread while nothing else has the terminal
     */
    ngx_http_segura_main_conf_t   *smcf;
    ngx_http_segura_loc_conf_t    *slcf;
    ngx_resolver_t                *resolver;
    ngx_msec_t                     resolver_timeout;
    ngx_uint_t                     generation;  /* grant changes seen */
    ngx_msec_t                     requested;   /* the /session request */
    int64_t                        key_id;
    int64_t                        device_id;
    char                          *client_addr;
    char                          *node;
    ngx_segura_identity_t          identity;
    char                           key_name[129];
    char                           username[129];
    char                           device_name[129];
    char                           device_address[256];
    ngx_uint_t                     port;
    char                           pinned[NGX_SEGURA_SSH_LINE_LEN];
    char                           pinned_fp[NGX_SEGURA_SSH_FP_LEN];
    char                           pinned_type[64];
    char                           key_type[65];
    ngx_segura_ssh_t               ssh;

    /* the terminal's own, event loop */
    ngx_pool_t                    *pool;
    ngx_log_t                      log;
    ngx_segura_terminal_state_e    state;
    ngx_segura_connect_t           connect;
    ngx_connection_t              *peer;       /* wraps libssh's socket */
    ngx_segura_viewer_t           *viewer;     /* the owner's */
    ngx_queue_t                    watchers;   /* ngx_segura_viewer_t */
    ngx_uint_t                     nwatchers;
    ngx_uint_t                     nremote;    /* watchers elsewhere */
    u_char                        *recent;     /* a ring, when live */
    size_t                         recent_pos;
    size_t                         recent_len;
    ngx_segura_live_t              live;
    ngx_segura_recorder_t         *recorder;   /* NULL: not recorded */
    char                           id[NGX_SEGURA_LIVE_ID_LEN];
    char                           started[NGX_INT64_LEN + 1];  /* ms */
    ngx_event_t                    idle;
    ngx_event_t                    repoll;     /* see terminal_poll */
    off_t                          polled;     /* bytes_out when it posted */

    /*
     * resume (docs/protocol.md): the output a returning viewer needs, in
     * absolute offsets of bytes_out: what its client had not acknowledged,
     * and what came while nobody was attached
     */
    ngx_segura_ring_t              ring;
    char                           resume[NGX_SEGURA_RESUME_LEN];
    ngx_event_t                    resume_timer;
    ngx_msec_t                     detached_at;
    ngx_uint_t                     detaches;
    ngx_event_t                    free;
    ngx_msec_t                     last_any;   /* data either way */

    /* how it went */
    off_t                          bytes_in;
    off_t                          bytes_out;
    ngx_int_t                      exit_status;
    const char                    *end_reason;
    ngx_segura_ws_err_e            end_err;

    /* moderation (POST /api/sessions/<id>/lock, /end with a message) */
    char                           moderator[65];
    char                           note[NGX_SEGURA_TERMINAL_NOTE_MAX + 1];

    /* the pin task's */
    char                           pin_err[NGX_SEGURA_SSH_ERRLEN];

    unsigned                       audited:1;
    unsigned                       detached:1;  /* waits for a resume */
    unsigned                       history:1;   /* its viewers ack */
    unsigned                       ending:1;
    unsigned                       shutdown:1;
    unsigned                       pinned_now:1;
    unsigned                       pin_failed:1;
    unsigned                       locked:1;    /* the owner's input drops */
};


/* event loop only */
ngx_segura_terminal_t *ngx_segura_terminal_create(ngx_log_t *log);
void ngx_segura_terminal_destroy(ngx_segura_terminal_t *t);
void ngx_segura_terminal_start(ngx_segura_terminal_t *t,
    ngx_segura_viewer_t *v);
void ngx_segura_terminal_detach(ngx_segura_terminal_t *t,
    const char *end_reason);
void ngx_segura_terminal_end(ngx_segura_terminal_t *t,
    const char *end_reason, ngx_segura_ws_err_e err);

/*
 * resume: suspend keeps the shell for segura_resume_timeout once the
 * viewer left without ending it (NGX_DECLINED: resume is off, or the
 * terminal is not live; the caller detaches); find_resumable looks a
 * token up among the worker's terminals; resume attaches a viewer to a
 * found one
 */
ngx_int_t ngx_segura_terminal_suspend(ngx_segura_terminal_t *t);
ngx_segura_terminal_t *ngx_segura_terminal_find_resumable(const char *token,
    size_t len);
void ngx_segura_terminal_resume(ngx_segura_terminal_t *t,
    ngx_segura_viewer_t *v);

/*
 * Watchers: watch adds v (v->name set) and returns NGX_OK, or NGX_ERROR
 * when the terminal is not live or no memory is left; recent copies the
 * recent output, oldest first, and returns its length; unwatch removes
 * v.  The owner hears a "watched" event either way.
 */
ngx_int_t ngx_segura_terminal_watch(ngx_segura_terminal_t *t,
    ngx_segura_viewer_t *v);
size_t ngx_segura_terminal_recent(ngx_segura_terminal_t *t, u_char *buf,
    size_t size);
void ngx_segura_terminal_unwatch(ngx_segura_terminal_t *t,
    ngx_segura_viewer_t *v);
ngx_segura_terminal_t *ngx_segura_terminal_find(const char *id);

/*
 * The relay's side: read returns the bytes read (stdout and stderr as
 * one stream), NGX_AGAIN for none now, NGX_DONE when the terminal ended
 * meanwhile (the viewer heard ended); write returns the bytes the SSH
 * window took, or NGX_DONE.  poll is called after each pass: it flushes
 * what libssh holds and wakes the viewer for data left in libssh or in
 * the socket when the viewer has room for it.
 */
ssize_t ngx_segura_terminal_read(ngx_segura_terminal_t *t, u_char *buf,
    size_t size);
ssize_t ngx_segura_terminal_write(ngx_segura_terminal_t *t, u_char *data,
    size_t len);
void ngx_segura_terminal_resize(ngx_segura_terminal_t *t, unsigned cols,
    unsigned rows);
void ngx_segura_terminal_poll(ngx_segura_terminal_t *t, ngx_uint_t room);


#endif /* _NGX_SEGURA_TERMINAL_H_INCLUDED_ */
