
/*
 * Copyright (C) ngx_segura_module authors
 */


/*
 * The recorder: what one terminal showed (its output as the viewer got
 * it), its resizes, the exit, start and end markers and, only with
 * segura_recording_input on, what was typed, each with its time in ms
 * since the shell opened.  Owned by the terminal (ngx_segura_terminal.c),
 * which calls it from its read, write, resize and end.
 *
 * Events gather in one buffer of at most 64 KiB (512 bytes on the first
 * event, doubled as needed, freed when a quiet second flushes it, so an
 * idle session holds none); the buffer becomes a chunk when full, when
 * the search's index of it holds NGX_SEGURA_INDEX_CUT words, or one second
 * after its first event: compressed with zstd (one frame per chunk, so that any
 * chunk decodes alone), sealed with the vault's AES-256-GCM under the
 * current master key with "ssh_sessions/<id>/chunk/<seq>" as associated
 * data, and queued in the outbox as an insert that does nothing when the
 * chunk is there (sql/017_recordings.sql), with the terminal size at its
 * first event and its markers in clear for seeking (sql/019).
 * docs/recording.md has the format.
 *
 * When the outbox holds more than NGX_SEGURA_RECORDER_BOUND bytes (the
 * database cannot keep up), "segura_recording_overflow pause" stops the
 * terminal reading its device (the SSH window then holds the device) and
 * looks again every 100 ms; "drop" lets the session go on and drops
 * chunks, which leaves a marker and a gap in the recording's row.
 *
 * A session watched from another worker or node (its watcher follows the
 * stored chunks, ngx_segura_tail.c) flushes after 200 ms instead of 1 s,
 * from then on (ngx_segura_recorder_watched()).
 * The output is also read by the search's word scanner as it comes
 * (ngx_segura_index.c): each chunk is stored with the Bloom filter of the
 * keyed hashes of the words that ended in it, in the same insert (sql/018).
 *
 * Event loop only: compressing and sealing 64 KiB takes well under a
 * millisecond (docs/recording.md), so it is done in place.
 */


#include <ngx_config.h>
#include <ngx_core.h>
#include "ngx_segura.h"
#include "ngx_segura_index.h"
#include "ngx_segura_outbox.h"
#include "ngx_segura_recorder.h"
#include "ngx_segura_vault.h"

#include <zstd.h>


#define NGX_SEGURA_RECORDER_FLUSH      1000
#define NGX_SEGURA_RECORDER_FLUSH_FAST  200   /* watched from elsewhere */
#define NGX_SEGURA_RECORDER_FIRST      512
#define NGX_SEGURA_RECORDER_RECHECK    100
#define NGX_SEGURA_RECORDER_LEVEL      3
#define NGX_SEGURA_RECORDER_GAPS       16
#define NGX_SEGURA_RECORDER_MARK_LEN   160
#define NGX_SEGURA_RECORDER_META       4096

/* a chunk's plaintext: a gap's marker, then the buffer */
#define NGX_SEGURA_RECORDER_PLAIN_MAX                                        \
    (NGX_SEGURA_RECORDER_CHUNK + NGX_SEGURA_RECORDER_EVENT_HDR                \
     + NGX_SEGURA_RECORDER_MARK_LEN)


typedef struct {
    uint32_t                       from;
    uint32_t                       to;
} ngx_segura_recorder_gap_t;


struct ngx_segura_recorder_s {
    ngx_log_t                     *log;
    ngx_http_segura_main_conf_t   *smcf;
    const char                    *id;
    ngx_msec_t                     start;
    ngx_uint_t                     overflow;

    u_char                        *buf;       /* size bytes, or NULL */
    size_t                         size;      /* 512, doubled to CHUNK */
    size_t                         used;
    uint32_t                       first;     /* times of the buffer */
    uint32_t                       last;
    uint32_t                       seq;       /* of the next chunk */
    uint64_t                       bytes;     /* event bytes stored */
    unsigned                       cols;      /* the size after the */
    unsigned                       rows;      /* chunks stored so far */

    ngx_event_t                    flush;
    ngx_msec_t                     flush_after;
    ngx_event_t                    recheck;
    ngx_msec_t                     paused_since;

    ngx_segura_recorder_gap_t      gaps[NGX_SEGURA_RECORDER_GAPS];
    ngx_uint_t                     ngaps;
    ngx_segura_recorder_gap_t      gap;       /* the open one */

    ngx_segura_recorder_wake_pt    wake;
    void                          *data;

    ngx_segura_index_t             index;

    unsigned                       input:1;
    unsigned                       paused:1;
    unsigned                       in_gap:1;
    unsigned                       incomplete:1;
    unsigned                       ended:1;
};


static void ngx_segura_recorder_event(ngx_segura_recorder_t *rec,
    u_char type, u_char *data, size_t len);
static void ngx_segura_recorder_put(u_char *p, u_char type, uint32_t time,
    uint32_t len);
static ngx_int_t ngx_segura_recorder_grow(ngx_segura_recorder_t *rec,
    size_t need);
static void ngx_segura_recorder_flush(ngx_segura_recorder_t *rec,
    ngx_uint_t release, ngx_uint_t last);
static ngx_int_t ngx_segura_recorder_store(ngx_segura_recorder_t *rec,
    u_char *plain, size_t len);
static void ngx_segura_recorder_flush_handler(ngx_event_t *ev);
static void ngx_segura_recorder_recheck_handler(ngx_event_t *ev);
static ngx_int_t ngx_segura_recorder_scratch(ngx_log_t *log);
static size_t ngx_segura_recorder_meta(ngx_segura_recorder_t *rec,
    u_char *plain, size_t len, u_char *buf, size_t size);
static u_char *ngx_segura_recorder_json(u_char *p, u_char *last,
    u_char *s, size_t len);


/* the worker's: compressing and sealing happen one chunk at a time */
static ZSTD_CCtx  *ngx_segura_recorder_cctx;
static u_char     *ngx_segura_recorder_plain;
static u_char     *ngx_segura_recorder_zbuf;
static size_t      ngx_segura_recorder_zcap;
static u_char     *ngx_segura_recorder_sbuf;


ngx_segura_recorder_t *
ngx_segura_recorder_create(ngx_pool_t *pool, ngx_log_t *log,
    ngx_http_segura_main_conf_t *smcf, ngx_http_segura_loc_conf_t *slcf,
    const char *id, const char *started, unsigned cols, unsigned rows,
    ngx_segura_recorder_wake_pt wake, void *data)
{
    char                    w[NGX_INT_T_LEN + 1], h[NGX_INT_T_LEN + 1];
    const char               *params[5];
    ngx_segura_recorder_t    *rec;
    ngx_segura_master_key_t  *key;

    if (smcf->keys.nelts == 0 || ngx_segura_recorder_scratch(log) != NGX_OK)
    {
        return NULL;
    }

    rec = ngx_pcalloc(pool, sizeof(ngx_segura_recorder_t));
    if (rec == NULL) {
        return NULL;
    }

    key = ngx_http_segura_current_key(smcf);

    if (ngx_segura_index_init(&rec->index, key->key, NGX_SEGURA_VAULT_KEY_LEN,
                              (unsigned) key->id)
        != 0)
    {
        ngx_log_error(NGX_LOG_ALERT, log, 0,
                      "segura recording: the index key cannot be derived");
        return NULL;
    }

    rec->log = log;
    rec->smcf = smcf;
    rec->id = id;
    rec->start = ngx_current_msec;
    rec->overflow = slcf->recording_overflow;
    rec->input = slcf->recording_input ? 1 : 0;
    rec->wake = wake;
    rec->data = data;
    rec->cols = cols;
    rec->rows = rows;

    rec->flush.handler = ngx_segura_recorder_flush_handler;
    rec->flush.data = rec;
    rec->flush.log = log;
    rec->flush.cancelable = 1;

    rec->recheck.handler = ngx_segura_recorder_recheck_handler;
    rec->recheck.data = rec;
    rec->recheck.log = log;
    rec->recheck.cancelable = 1;

    (void) ngx_snprintf((u_char *) w, sizeof(w), "%ud%Z", cols);
    (void) ngx_snprintf((u_char *) h, sizeof(h), "%ud%Z", rows);

    params[0] = id;
    params[1] = w;
    params[2] = h;
    params[3] = rec->input ? "t" : "f";
    params[4] = started;

    if (ngx_segura_outbox_add(log,
            "insert into ssh_session_recordings (session_id, width, height,"
            " input, started_at)"
            " values ($1::uuid, $2::int, $3::int, $4::bool,"
            " to_timestamp($5::bigint / 1000.0))"
            " on conflict (session_id) do nothing",
            5, params)
        != NGX_OK)
    {
        ngx_segura_index_free(&rec->index);
        return NULL;
    }

    ngx_segura_recorder_marker(rec, "session started");

    return rec;
}


static ngx_int_t
ngx_segura_recorder_scratch(ngx_log_t *log)
{
    size_t  zcap;

    if (ngx_segura_recorder_cctx != NULL) {
        return NGX_OK;
    }

    zcap = ZSTD_compressBound(NGX_SEGURA_RECORDER_PLAIN_MAX);

    ngx_segura_recorder_plain = ngx_alloc(NGX_SEGURA_RECORDER_PLAIN_MAX, log);
    ngx_segura_recorder_zbuf = ngx_alloc(zcap, log);
    ngx_segura_recorder_sbuf = ngx_alloc(ngx_segura_vault_sealed_size(zcap),
                                         log);

    if (ngx_segura_recorder_plain == NULL || ngx_segura_recorder_zbuf == NULL
        || ngx_segura_recorder_sbuf == NULL)
    {
        goto failed;
    }

    ngx_segura_recorder_cctx = ZSTD_createCCtx();
    if (ngx_segura_recorder_cctx == NULL) {
        ngx_log_error(NGX_LOG_ALERT, log, 0,
                      "segura recording: ZSTD_createCCtx() failed");
        goto failed;
    }

    ngx_segura_recorder_zcap = zcap;

    return NGX_OK;

failed:

    ngx_free(ngx_segura_recorder_plain);
    ngx_free(ngx_segura_recorder_zbuf);
    ngx_free(ngx_segura_recorder_sbuf);
    ngx_segura_recorder_plain = NULL;
    ngx_segura_recorder_zbuf = NULL;
    ngx_segura_recorder_sbuf = NULL;

    return NGX_ERROR;
}


size_t
ngx_segura_recorder_aad(char *buf, size_t len, const char *id, uint32_t seq)
{
    u_char  *p;

    p = ngx_snprintf((u_char *) buf, len, "ssh_sessions/%s/chunk/%uD",
                     id, seq);

    return p - (u_char *) buf;
}


ngx_uint_t
ngx_segura_recorder_is_paused(ngx_segura_recorder_t *rec)
{
    return rec->paused;
}


ngx_uint_t
ngx_segura_recorder_paused(ngx_segura_recorder_t *rec)
{
    if (rec->ended || rec->overflow != NGX_SEGURA_RECORDING_PAUSE) {
        return 0;
    }

    if (ngx_segura_outbox_size() <= NGX_SEGURA_RECORDER_BOUND) {

        if (rec->paused) {
            rec->paused = 0;

            if (rec->recheck.timer_set) {
                ngx_del_timer(&rec->recheck);
            }

            ngx_log_error(NGX_LOG_NOTICE, rec->log, 0,
                          "segura recording %s: the device is read again "
                          "after %M ms", rec->id,
                          ngx_current_msec - rec->paused_since);
        }

        return 0;
    }

    if (!rec->paused) {
        rec->paused = 1;
        rec->paused_since = ngx_current_msec;

        ngx_log_error(NGX_LOG_NOTICE, rec->log, 0,
                      "segura recording %s: the database is behind (%uz "
                      "bytes queued), the device is not read until it "
                      "catches up", rec->id, ngx_segura_outbox_size());
    }

    if (!rec->recheck.timer_set) {
        ngx_add_timer(&rec->recheck, NGX_SEGURA_RECORDER_RECHECK);
    }

    return 1;
}


static void
ngx_segura_recorder_recheck_handler(ngx_event_t *ev)
{
    ngx_segura_recorder_t *rec = ev->data;

    if (rec->ended) {
        return;
    }

    if (ngx_segura_outbox_size() > NGX_SEGURA_RECORDER_BOUND) {
        ngx_add_timer(&rec->recheck, NGX_SEGURA_RECORDER_RECHECK);
        return;
    }

    /* the reader clears the flag, logs, and may re-enter us */

    rec->wake(rec->data);
}


void
ngx_segura_recorder_output(ngx_segura_recorder_t *rec, u_char *data,
    size_t len)
{
    ngx_segura_recorder_event(rec, NGX_SEGURA_REC_OUTPUT, data, len);
}


void
ngx_segura_recorder_input(ngx_segura_recorder_t *rec, u_char *data,
    size_t len)
{
    if (rec->input) {
        ngx_segura_recorder_event(rec, NGX_SEGURA_REC_INPUT, data, len);
    }
}


void
ngx_segura_recorder_resize(ngx_segura_recorder_t *rec, unsigned cols,
    unsigned rows)
{
    u_char  buf[2 * NGX_INT_T_LEN + 2], *p;

    p = ngx_snprintf(buf, sizeof(buf), "%udx%ud", cols, rows);

    ngx_segura_recorder_event(rec, NGX_SEGURA_REC_RESIZE, buf, p - buf);
}


void
ngx_segura_recorder_marker(ngx_segura_recorder_t *rec, const char *text)
{
    size_t  len;

    len = ngx_strlen(text);

    if (len > NGX_SEGURA_RECORDER_MARK_LEN) {
        len = NGX_SEGURA_RECORDER_MARK_LEN;
    }

    ngx_segura_recorder_event(rec, NGX_SEGURA_REC_MARKER, (u_char *) text,
                              len);
}


void
ngx_segura_recorder_marker_text(ngx_segura_recorder_t *rec,
    const char *prefix, const char *text)
{
    u_char  buf[NGX_SEGURA_RECORDER_MARK_LEN], *p;

    u_char  *q;
    size_t   n;

    p = ngx_snprintf(buf, sizeof(buf), "%s%s", prefix, text);

    if (p == buf + sizeof(buf)) {

        /* cut: not inside a UTF-8 sequence */

        for (q = p - 1; q > buf && (*q & 0xc0) == 0x80; q--) {
            /* void */
        }

        n = (*q < 0x80) ? 1 : (*q >= 0xf0) ? 4 : (*q >= 0xe0) ? 3 : 2;

        if (q + n > p) {
            p = q;
        }
    }

    ngx_segura_recorder_event(rec, NGX_SEGURA_REC_MARKER, buf, p - buf);
}


void
ngx_segura_recorder_exit(ngx_segura_recorder_t *rec, ngx_int_t status)
{
    u_char  buf[NGX_INT_T_LEN], *p;

    p = ngx_snprintf(buf, sizeof(buf), "%i", status);

    ngx_segura_recorder_event(rec, NGX_SEGURA_REC_EXIT, buf, p - buf);
}


static void
ngx_segura_recorder_put(u_char *p, u_char type, uint32_t time, uint32_t len)
{
    p[0] = type;
    p[1] = (u_char) time;
    p[2] = (u_char) (time >> 8);
    p[3] = (u_char) (time >> 16);
    p[4] = (u_char) (time >> 24);
    p[5] = (u_char) len;
    p[6] = (u_char) (len >> 8);
    p[7] = (u_char) (len >> 16);
    p[8] = (u_char) (len >> 24);
}


/*
 * Output and input are split across chunks where a chunk fills (their
 * events concatenate to the same bytes); resizes and markers are short
 * and never split.
 */

static void
ngx_segura_recorder_event(ngx_segura_recorder_t *rec, u_char type,
    u_char *data, size_t len)
{
    size_t      n, room, k, slice;
    uint32_t    now;
    ngx_uint_t  full;

    if (rec->ended) {
        return;
    }

    now = (uint32_t) (ngx_current_msec - rec->start);

    do {
        room = NGX_SEGURA_RECORDER_CHUNK - rec->used
               - NGX_SEGURA_RECORDER_EVENT_HDR;

        n = len;

        if (n > room) {
            if (type != NGX_SEGURA_REC_OUTPUT && type != NGX_SEGURA_REC_INPUT)
            {
                ngx_segura_recorder_flush(rec, 0, 0);
                continue;
            }

            n = room;
        }

        /*
         * The search's index sees the output as it is stored: a word goes
         * with the chunk in which it ends, and a chunk whose index is full
         * is cut (at a slice's end), so that no word goes unindexed.
         */

        full = 0;

        if (type == NGX_SEGURA_REC_OUTPUT) {
            k = 0;

            while (k < n) {
                slice = ngx_min(n - k, NGX_SEGURA_INDEX_SLICE);
                ngx_segura_index_feed(&rec->index, data + k, slice, now);
                k += slice;

                if (ngx_segura_index_full(&rec->index)) {
                    full = 1;
                    break;
                }
            }

            n = k;
        }

        if (ngx_segura_recorder_grow(rec, rec->used
                                          + NGX_SEGURA_RECORDER_EVENT_HDR + n)
            != NGX_OK)
        {
            /* lost: said in the log and in the recording's row */
            rec->incomplete = 1;
            return;
        }

        if (rec->used == 0) {
            rec->first = now;
            ngx_add_timer(&rec->flush, rec->flush_after
                                       ? rec->flush_after
                                       : NGX_SEGURA_RECORDER_FLUSH);
        }

        ngx_segura_recorder_put(rec->buf + rec->used, type, now,
                                (uint32_t) n);
        rec->used += NGX_SEGURA_RECORDER_EVENT_HDR;

        if (n) {
            ngx_memcpy(rec->buf + rec->used, data, n);
            rec->used += n;
        }

        rec->last = now;
        data += n;
        len -= n;

        if (full
            || NGX_SEGURA_RECORDER_CHUNK - rec->used
               < NGX_SEGURA_RECORDER_EVENT_HDR + 64)
        {
            ngx_segura_recorder_flush(rec, 0, 0);
        }

    } while (len > 0);
}


/*
 * The buffer starts at 512 bytes and doubles up to a chunk: an idle
 * session's prompt does not cost a 64 KiB buffer for its quiet second,
 * and the hole a small buffer leaves in the heap once freed is one that
 * other small allocations fill (make bench: 4 KiB first cost 5 KiB per
 * idle session over recording off, 512 bytes 1 KiB).
 */

static ngx_int_t
ngx_segura_recorder_grow(ngx_segura_recorder_t *rec, size_t need)
{
    size_t   size;
    u_char  *buf;

    if (need <= rec->size) {
        return NGX_OK;
    }

    size = rec->size ? rec->size : NGX_SEGURA_RECORDER_FIRST;

    while (size < need) {
        size *= 2;
    }

    if (size > NGX_SEGURA_RECORDER_CHUNK) {
        size = NGX_SEGURA_RECORDER_CHUNK;
    }

    buf = ngx_alloc(size, rec->log);
    if (buf == NULL) {
        return NGX_ERROR;
    }

    if (rec->buf != NULL) {
        /* it may hold what was typed */
        ngx_memcpy(buf, rec->buf, rec->used);
        ngx_explicit_memzero(rec->buf, rec->size);
        ngx_free(rec->buf);
    }

    rec->buf = buf;
    rec->size = size;

    return NGX_OK;
}


static void
ngx_segura_recorder_flush_handler(ngx_event_t *ev)
{
    ngx_segura_recorder_t *rec = ev->data;

    /* a quiet second: the buffer goes, an idle session keeps none */

    ngx_segura_recorder_flush(rec, 1, 0);
}


/* the last chunk of a session is always queued: one, bounded */

static void
ngx_segura_recorder_flush(ngx_segura_recorder_t *rec, ngx_uint_t release,
    ngx_uint_t last)
{
    u_char    *plain, *p;
    size_t     len;
    u_char     mark[NGX_SEGURA_RECORDER_MARK_LEN];

    if (rec->flush.timer_set) {
        ngx_del_timer(&rec->flush);
    }

    if (rec->buf == NULL || rec->used == 0) {
        goto done;
    }

    if (rec->overflow == NGX_SEGURA_RECORDING_DROP && !last
        && ngx_segura_outbox_size() > NGX_SEGURA_RECORDER_BOUND)
    {
        if (!rec->in_gap) {
            rec->in_gap = 1;
            rec->gap.from = rec->first;

            ngx_log_error(NGX_LOG_WARN, rec->log, 0,
                          "segura recording %s: the database is behind "
                          "(%uz bytes queued), events are dropped",
                          rec->id, ngx_segura_outbox_size());
        }

        rec->gap.to = rec->last;
        rec->incomplete = 1;
        rec->used = 0;
        ngx_segura_index_clear(&rec->index);
        goto done;
    }

    plain = rec->buf;
    len = rec->used;

    if (rec->in_gap) {

        /* the chunk after a gap opens with a marker that says where */

        p = ngx_snprintf(mark, sizeof(mark),
                         "recording gap: events from %uD.%03uD s to "
                         "%uD.%03uD s were dropped",
                         rec->gap.from / 1000, rec->gap.from % 1000,
                         rec->gap.to / 1000, rec->gap.to % 1000);

        plain = ngx_segura_recorder_plain;

        ngx_segura_recorder_put(plain, NGX_SEGURA_REC_MARKER, rec->gap.to,
                                (uint32_t) (p - mark));
        ngx_memcpy(plain + NGX_SEGURA_RECORDER_EVENT_HDR, mark, p - mark);
        len = NGX_SEGURA_RECORDER_EVENT_HDR + (p - mark);
        ngx_memcpy(plain + len, rec->buf, rec->used);
        len += rec->used;

        ngx_log_error(NGX_LOG_NOTICE, rec->log, 0,
                      "segura recording %s: recording again; %uD ms of "
                      "events were dropped", rec->id,
                      rec->gap.to - rec->gap.from);

        if (rec->ngaps < NGX_SEGURA_RECORDER_GAPS) {
            rec->gaps[rec->ngaps++] = rec->gap;

        } else {
            /* the last one widens */
            rec->gaps[NGX_SEGURA_RECORDER_GAPS - 1].to = rec->gap.to;
        }

        rec->in_gap = 0;
        rec->first = rec->gap.to;
    }

    if (ngx_segura_recorder_store(rec, plain, len) != NGX_OK) {
        rec->incomplete = 1;
    }

    rec->used = 0;

done:

    if (release && rec->buf != NULL) {
        /* it may hold what was typed */
        ngx_explicit_memzero(rec->buf, rec->size);
        ngx_free(rec->buf);
        rec->buf = NULL;
        rec->size = 0;
        rec->used = 0;
    }

    if (release) {
        ngx_segura_index_release(&rec->index);
    }
}


static ngx_int_t
ngx_segura_recorder_store(ngx_segura_recorder_t *rec, u_char *plain,
    size_t len)
{
    char                     seq[NGX_INT_T_LEN + 1], first[NGX_INT_T_LEN + 1],
                             last[NGX_INT_T_LEN + 1], size[NGX_INT_T_LEN + 1],
                             cols[NGX_INT_T_LEN + 1], rows[NGX_INT_T_LEN + 1];
    char                     aad[NGX_SEGURA_RECORDER_AAD_LEN],
                             index_key[NGX_INT_T_LEN + 1];
    u_char                   meta[NGX_SEGURA_RECORDER_META];
    u_char                  *filter;
    size_t                   zlen, slen, aad_len, mlen, binary[11], flen;
    ngx_int_t                rc;
    const char              *params[11];
    ngx_segura_vault_err_e   err;
    ngx_segura_master_key_t *key;

    /* the size at the chunk's start, its markers: in clear, for seeking */

    (void) ngx_snprintf((u_char *) cols, sizeof(cols), "%ud%Z", rec->cols);
    (void) ngx_snprintf((u_char *) rows, sizeof(rows), "%ud%Z", rec->rows);
    mlen = ngx_segura_recorder_meta(rec, plain, len, meta, sizeof(meta));

    zlen = ZSTD_compressCCtx(ngx_segura_recorder_cctx,
                             ngx_segura_recorder_zbuf,
                             ngx_segura_recorder_zcap, plain, len,
                             NGX_SEGURA_RECORDER_LEVEL);

    if (ZSTD_isError(zlen)) {
        ngx_log_error(NGX_LOG_ALERT, rec->log, 0,
                      "segura recording %s: ZSTD_compressCCtx() failed: %s",
                      rec->id, ZSTD_getErrorName(zlen));
        return NGX_ERROR;
    }

    key = ngx_http_segura_current_key(rec->smcf);
    aad_len = ngx_segura_recorder_aad(aad, sizeof(aad), rec->id, rec->seq);
    slen = ngx_segura_vault_sealed_size(zlen);

    if (ngx_segura_vault_seal(key->key, (unsigned) key->id, aad, aad_len,
                              ngx_segura_recorder_zbuf, zlen,
                              ngx_segura_recorder_sbuf, &err)
        != 0)
    {
        ngx_log_error(NGX_LOG_ALERT, rec->log, 0,
                      "segura recording %s: sealing a chunk failed: %s",
                      rec->id, ngx_segura_vault_strerror(err));
        return NGX_ERROR;
    }

    /* the plaintext and its compressed form are the session's output */

    ngx_explicit_memzero(ngx_segura_recorder_zbuf, zlen);

    if (plain == ngx_segura_recorder_plain) {
        ngx_explicit_memzero(plain, len);
    }

    (void) ngx_snprintf((u_char *) seq, sizeof(seq), "%uD%Z", rec->seq);
    (void) ngx_snprintf((u_char *) first, sizeof(first), "%uD%Z",
                        rec->first);
    (void) ngx_snprintf((u_char *) last, sizeof(last), "%uD%Z", rec->last);
    (void) ngx_snprintf((u_char *) size, sizeof(size), "%uz%Z", len);

    params[0] = rec->id;
    params[1] = seq;
    params[2] = first;
    params[3] = last;
    params[4] = size;
    params[5] = (char *) ngx_segura_recorder_sbuf;

    params[6] = cols;
    params[7] = rows;
    params[8] = mlen ? (char *) meta : NULL;

    /* the chunk's Bloom filter, in its own row: they never disagree */

    if (ngx_segura_index_take(&rec->index, &filter, &flen) != 0) {
        return NGX_ERROR;
    }

    (void) ngx_snprintf((u_char *) index_key, sizeof(index_key), "%ud%Z",
                        rec->index.key_id);

    /* a chunk without words has no filter (null) */

    params[9] = filter ? index_key : NULL;
    params[10] = (char *) filter;

    ngx_memzero(binary, sizeof(binary));
    binary[5] = slen;
    binary[10] = flen;

    rc = ngx_segura_outbox_add_binary(rec->log,
             "insert into ssh_session_chunks (session_id, seq, t_first,"
             " t_last, plain_size, data, cols, rows, markers, index_key,"
             " filter)"
             " values ($1::uuid, $2::int, $3::int, $4::int, $5::int,"
             " $6::bytea, $7::int, $8::int, $9::jsonb, $10::smallint,"
             " $11::bytea)"
             " on conflict (session_id, seq) do nothing",
             11, params, binary);

    free(filter);

    if (rc != NGX_OK) {
        return NGX_ERROR;
    }

    rec->seq++;
    rec->bytes += len;

    return NGX_OK;
}


/*
 * What a chunk tells in clear besides its times (sql/019): the markers
 * and exits it holds, as a JSON array of [ms, "text"], at most
 * NGX_SEGURA_RECORDER_META bytes of them (those past it are only in the
 * sealed events); the resizes it holds move rec->cols and rec->rows for
 * the next chunk.  Output and input are skipped unread.  0: no marker.
 */

static size_t
ngx_segura_recorder_meta(ngx_segura_recorder_t *rec, u_char *plain,
    size_t len, u_char *buf, size_t size)
{
    u_char    *p, *last, *q, *end, type;
    uint32_t   time, n;
    ngx_int_t  cols, rows;

    p = buf;
    last = buf + size - 2;      /* room for "]" and the NUL */
    end = plain + len;

    while ((size_t) (end - plain) >= NGX_SEGURA_RECORDER_EVENT_HDR) {
        type = plain[0];
        time = plain[1] | (plain[2] << 8) | (plain[3] << 16)
               | ((uint32_t) plain[4] << 24);
        n = plain[5] | (plain[6] << 8) | (plain[7] << 16)
            | ((uint32_t) plain[8] << 24);

        plain += NGX_SEGURA_RECORDER_EVENT_HDR;

        if (n > (size_t) (end - plain)) {
            break;
        }

        if (type == NGX_SEGURA_REC_RESIZE) {
            q = ngx_strlchr(plain, plain + n, 'x');

            if (q != NULL) {
                cols = ngx_atoi(plain, q - plain);
                rows = ngx_atoi(q + 1, plain + n - q - 1);

                if (cols > 0 && cols <= 1000 && rows > 0 && rows <= 1000)
                {
                    rec->cols = (unsigned) cols;
                    rec->rows = (unsigned) rows;
                }
            }

        } else if ((type == NGX_SEGURA_REC_MARKER
                    || type == NGX_SEGURA_REC_EXIT)
                   && (size_t) (last - p)
                      > 6 * n + 2 * NGX_INT_T_LEN + 16)
        {
            *p = (p == buf) ? '[' : ',';
            p++;
            p = ngx_sprintf(p, "[%uD,\"%s", time,
                            type == NGX_SEGURA_REC_EXIT ? "exit " : "");
            p = ngx_segura_recorder_json(p, last, plain, n);
            *p++ = '"';
            *p++ = ']';
        }

        plain += n;
    }

    if (p == buf) {
        return 0;
    }

    *p++ = ']';
    *p = '\0';

    return p - buf;
}


/* text as a JSON string's contents; a byte that is not UTF-8 as "?" */

static u_char *
ngx_segura_recorder_json(u_char *p, u_char *last, u_char *s, size_t len)
{
    u_char        c, *end;
    size_t        need, i;
    static u_char hex[] = "0123456789abcdef";

    end = s + len;

    while (s < end && last - p > 6) {
        c = *s;

        if (c < 0x80) {
            if (c == '"' || c == '\\') {
                *p++ = '\\';
                *p++ = c;

            } else if (c < 0x20 || c == 0x7f) {
                p = ngx_cpymem(p, "\\u00", 4);
                *p++ = hex[c >> 4];
                *p++ = hex[c & 0xf];

            } else {
                *p++ = c;
            }

            s++;
            continue;
        }

        need = (c >= 0xc2 && c <= 0xdf) ? 2
               : (c >= 0xe0 && c <= 0xef) ? 3
               : (c >= 0xf0 && c <= 0xf4) ? 4 : 0;

        for (i = 1; i < need; i++) {
            if (s + i >= end || (s[i] & 0xc0) != 0x80
                || (i == 1 && ((c == 0xe0 && s[1] < 0xa0)
                               || (c == 0xed && s[1] > 0x9f)
                               || (c == 0xf0 && s[1] < 0x90)
                               || (c == 0xf4 && s[1] > 0x8f))))
            {
                need = 0;
                break;
            }
        }

        if (need == 0) {
            *p++ = '?';
            s++;
            continue;
        }

        p = ngx_cpymem(p, s, need);
        s += need;
    }

    return p;
}


void
ngx_segura_recorder_end(ngx_segura_recorder_t *rec, const char *reason)
{
    u_char       *p, *last;
    char          ended[NGX_INT64_LEN + 1], chunks[NGX_INT_T_LEN + 1],
                  bytes[NGX_INT64_LEN + 1];
    char          gaps[NGX_SEGURA_RECORDER_GAPS * 2 * (NGX_INT_T_LEN + 2)
                       + 8];
    u_char        mark[NGX_SEGURA_RECORDER_MARK_LEN];
    ngx_uint_t    i;
    ngx_time_t   *tp;
    const char   *params[6];

    if (rec->ended) {
        return;
    }

    p = ngx_snprintf(mark, sizeof(mark) - 1, "session ended: %s%Z",
                     reason ? reason : "closed");
    mark[sizeof(mark) - 1] = '\0';

    /* the last word of the output goes with the last chunk */
    ngx_segura_index_end(&rec->index);

    ngx_segura_recorder_marker(rec, (char *) mark);

    ngx_segura_recorder_flush(rec, 1, 1);

    ngx_segura_index_free(&rec->index);

    rec->ended = 1;

    if (rec->recheck.timer_set) {
        ngx_del_timer(&rec->recheck);
    }

    if (rec->in_gap) {
        /* the last events were dropped too */
        if (rec->ngaps < NGX_SEGURA_RECORDER_GAPS) {
            rec->gaps[rec->ngaps++] = rec->gap;

        } else {
            rec->gaps[NGX_SEGURA_RECORDER_GAPS - 1].to = rec->gap.to;
        }

        rec->in_gap = 0;
    }

    p = (u_char *) gaps;
    last = p + sizeof(gaps);

    *p++ = '[';

    for (i = 0; i < rec->ngaps; i++) {
        p = ngx_snprintf(p, last - p, "%s[%uD,%uD]", i ? "," : "",
                         rec->gaps[i].from, rec->gaps[i].to);
    }

    (void) ngx_snprintf(p, last - p, "]%Z");
    gaps[sizeof(gaps) - 1] = '\0';

    tp = ngx_timeofday();

    (void) ngx_snprintf((u_char *) ended, sizeof(ended), "%L%Z",
                        (int64_t) tp->sec * 1000 + tp->msec);
    (void) ngx_snprintf((u_char *) chunks, sizeof(chunks), "%uD%Z",
                        rec->seq);
    (void) ngx_snprintf((u_char *) bytes, sizeof(bytes), "%uL%Z",
                        rec->bytes);

    params[0] = rec->id;
    params[1] = ended;
    params[2] = chunks;
    params[3] = bytes;
    params[4] = rec->incomplete ? "t" : "f";
    params[5] = gaps;

    if (ngx_segura_outbox_add(rec->log,
            "update ssh_session_recordings set"
            " ended_at = greatest(started_at,"
            "                     to_timestamp($2::bigint / 1000.0)),"
            " chunks = $3::int, bytes = $4::bigint,"
            " incomplete = $5::bool, gaps = $6::jsonb"
            " where session_id = $1::uuid",
            6, params)
        != NGX_OK)
    {
        ngx_log_error(NGX_LOG_ALERT, rec->log, 0,
                      "segura recording %s: the end of the recording's row "
                      "cannot be queued", rec->id);
    }
}


/* watched from elsewhere: chunks go after 200 ms, until the end */

void
ngx_segura_recorder_watched(ngx_segura_recorder_t *rec)
{
    if (rec->ended || rec->flush_after == NGX_SEGURA_RECORDER_FLUSH_FAST) {
        return;
    }

    rec->flush_after = NGX_SEGURA_RECORDER_FLUSH_FAST;

    if (rec->flush.timer_set
        && rec->flush.timer.key > ngx_current_msec
                                  + NGX_SEGURA_RECORDER_FLUSH_FAST)
    {
        ngx_add_timer(&rec->flush, NGX_SEGURA_RECORDER_FLUSH_FAST);
    }
}
