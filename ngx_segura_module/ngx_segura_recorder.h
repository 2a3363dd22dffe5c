
/*
 * Copyright (C) ngx_segura_module authors
 */


#ifndef _NGX_SEGURA_RECORDER_H_INCLUDED_
#define _NGX_SEGURA_RECORDER_H_INCLUDED_


#include <ngx_config.h>
#include <ngx_core.h>
#include "ngx_segura.h"


/* event bytes per chunk, before compression */
#define NGX_SEGURA_RECORDER_CHUNK      65536

/* an event in a chunk: type (1) | time in ms (4, LE) | length (4, LE) */
#define NGX_SEGURA_RECORDER_EVENT_HDR  9

/* beyond this many bytes queued in the outbox, the overflow policy acts */
#define NGX_SEGURA_RECORDER_BOUND      (8 * 1024 * 1024)

#define NGX_SEGURA_RECORDER_AAD_LEN    96


/* the event types of a chunk; 'x' (exit) is an "m" in asciicast */
#define NGX_SEGURA_REC_OUTPUT          'o'
#define NGX_SEGURA_REC_INPUT           'i'
#define NGX_SEGURA_REC_RESIZE          'r'
#define NGX_SEGURA_REC_MARKER          'm'
#define NGX_SEGURA_REC_EXIT            'x'


typedef struct ngx_segura_recorder_s  ngx_segura_recorder_t;

typedef void (*ngx_segura_recorder_wake_pt)(void *data);


/*
 * Event loop only.  create queues the recording's row (after the audit
 * row, which the caller queued first); NULL when out of memory or when no
 * master key can seal.  id must live as long as the recorder; wake is
 * called when a session paused by "segura_recording_overflow pause" may
 * read again.
 */
ngx_segura_recorder_t *ngx_segura_recorder_create(ngx_pool_t *pool,
    ngx_log_t *log, ngx_http_segura_main_conf_t *smcf,
    ngx_http_segura_loc_conf_t *slcf, const char *id, const char *started,
    unsigned cols, unsigned rows, ngx_segura_recorder_wake_pt wake,
    void *data);

/* whether the device must not be read now (the outbox is too full) */
ngx_uint_t ngx_segura_recorder_paused(ngx_segura_recorder_t *rec);
ngx_uint_t ngx_segura_recorder_is_paused(ngx_segura_recorder_t *rec);

void ngx_segura_recorder_output(ngx_segura_recorder_t *rec, u_char *data,
    size_t len);
void ngx_segura_recorder_input(ngx_segura_recorder_t *rec, u_char *data,
    size_t len);
void ngx_segura_recorder_resize(ngx_segura_recorder_t *rec, unsigned cols,
    unsigned rows);
void ngx_segura_recorder_marker(ngx_segura_recorder_t *rec,
    const char *text);
/* a marker of a prefix and a text, cut at the marker's bound */
void ngx_segura_recorder_marker_text(ngx_segura_recorder_t *rec,
    const char *prefix, const char *text);
void ngx_segura_recorder_exit(ngx_segura_recorder_t *rec, ngx_int_t status);
/* watched from another worker or node: flush sooner */
void ngx_segura_recorder_watched(ngx_segura_recorder_t *rec);

/* the end marker, the last chunk, the recording's row; then inert */
void ngx_segura_recorder_end(ngx_segura_recorder_t *rec, const char *reason);

/* any thread: the associated data of chunk seq of session id */
size_t ngx_segura_recorder_aad(char *buf, size_t len, const char *id,
    uint32_t seq);


#endif /* _NGX_SEGURA_RECORDER_H_INCLUDED_ */
