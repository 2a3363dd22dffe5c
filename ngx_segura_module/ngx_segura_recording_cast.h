
/*
 * Copyright (C) ngx_segura_module authors
 */


#ifndef _NGX_SEGURA_RECORDING_CAST_H_INCLUDED_
#define _NGX_SEGURA_RECORDING_CAST_H_INCLUDED_


#include <ngx_config.h>
#include <ngx_core.h>
#include "ngx_segura.h"
#include "ngx_segura_recorder.h"


/* the largest chunk plaintext a reader accepts */
#define NGX_SEGURA_CAST_PLAIN_MAX    (NGX_SEGURA_RECORDER_CHUNK + 1024)

/* the output before a window's start that its first event replays */
#define NGX_SEGURA_CAST_RESTORE      (256 * 1024)


typedef struct {
    u_char                        *data;      /* malloc()ed */
    size_t                         len;
    size_t                         cap;
} ngx_segura_cast_buf_t;


/*
 * One response being written: the events of a recording's chunks, in
 * order, as asciicast v2 lines or (raw) the output bytes alone.  A window
 * [from, to) keeps the output before from in restore, and at the first
 * event at or after from writes the header (at the size then), one "o"
 * event at time 0 with that output, then the events before to, their
 * times less from; over is set at the first event at or after to.
 */
typedef struct {
    ngx_segura_cast_buf_t          out;
    u_char                        *scratch;   /* PLAIN_MAX + 8 */
    u_char                         carry[2][4];   /* o, i: a cut UTF-8 */
    size_t                         ncarry[2];
    uint32_t                       last;

    /* the header: written by ngx_segura_cast_start() */
    unsigned                       cols;
    unsigned                       rows;
    int64_t                        timestamp;
    char                           title[640];  /* user (64) @ device
                                                   (128 characters) */

    uint32_t                       from;
    uint32_t                       to;
    ngx_segura_cast_buf_t          restore;

    unsigned                       raw:1;
    unsigned                       window:1;
    unsigned                       started:1;
    unsigned                       over:1;
} ngx_segura_cast_t;


/* any thread: cast is the caller's, zeroed, with the fields above set */
ngx_int_t ngx_segura_cast_init(ngx_segura_cast_t *cast);
void ngx_segura_cast_free(ngx_segura_cast_t *cast);

/* the header (and a window's restoring event), unless already written */
ngx_int_t ngx_segura_cast_start(ngx_segura_cast_t *cast);

/* the events of one chunk's plaintext; NGX_ERROR: malformed or no memory */
ngx_int_t ngx_segura_cast_events(ngx_segura_cast_t *cast, u_char *p,
    size_t len);

/* after the last chunk: the start if not yet, cut UTF-8 sequences */
ngx_int_t ngx_segura_cast_finish(ngx_segura_cast_t *cast);


#endif /* _NGX_SEGURA_RECORDING_CAST_H_INCLUDED_ */
