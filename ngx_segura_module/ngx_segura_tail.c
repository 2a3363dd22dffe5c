
/*
 * Copyright (C) ngx_segura_module authors
 */


/*
 * The tail: what a watcher on a worker that does not own the session
 * (another worker of the node, another node) sees.  It follows the
 * session's recording in PostgreSQL (ngx_segura_recorder.c, sql/017):
 * first the last chunks (the recent output, up to a screenful), then each
 * new chunk as the listener hears of it (NOTIFY segura_session_chunk,
 * sql/023, ngx_segura_watch.c calls ngx_segura_tail_notify()), or after
 * a second at the latest when nothing was heard (a lost listener).  The
 * output and resizes go to the watcher's viewer (ngx_segura_relay.c)
 * through its output and event calls; the end of the session (its audit
 * row ended) ends the tail.  The first fetch sends NOTIFY
 * segura_session_watch (sql/023) with the watcher's name, so that the
 * owning worker tells its owner and flushes the recording sooner; a tail
 * that stops says it left the same way, in a last pool task.
 *
 * A tail has a pool of its own: the watcher may leave while a fetch runs
 * in a pool thread, and the memory goes only when the task is back.  One
 * fetch at a time; a notification heard during a fetch makes one more.
 *
 * Event loop only, but for ngx_segura_tail_fetch(), which runs in a pool
 * thread and touches only the fetch's fields while tl->fetching is set.
 */


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>
#include "ngx_segura.h"
#include "ngx_segura_db.h"
#include "ngx_segura_recorder.h"
#include "ngx_segura_tail.h"
#include "ngx_segura_vault.h"

#include <openssl/crypto.h>
#include <zstd.h>


#define NGX_SEGURA_TAIL_POOL_SIZE  4096
#define NGX_SEGURA_TAIL_POLL       1000        /* ms, when nothing is heard */
#define NGX_SEGURA_TAIL_BATCH      8           /* chunks per fetch */
#define NGX_SEGURA_TAIL_FIRST      3           /* chunks for the screenful */
#define NGX_SEGURA_TAIL_OUT        (256 * 1024)  /* output per fetch */
#define NGX_SEGURA_TAIL_FEED       16384       /* per output call */
#define NGX_SEGURA_TAIL_PLAIN      (NGX_SEGURA_RECORDER_CHUNK + 1024)
#define NGX_SEGURA_TAIL_ERRLEN     256


struct ngx_segura_tail_s {
    ngx_pool_t                    *pool;
    ngx_log_t                      log;
    ngx_http_segura_main_conf_t   *smcf;
    ngx_queue_t                    queue;      /* ngx_segura_tails */
    char                           id[NGX_SEGURA_LIVE_ID_LEN];
    char                           name[65];   /* the watcher's */
    ngx_segura_viewer_t           *viewer;
    ngx_segura_tail_end_pt         end;
    void                          *data;
    ngx_event_t                    timer;
    ngx_thread_task_t             *task;

    /* the fetch's */
    int64_t                        next;       /* seq; -1: not started */
    u_char                        *out;
    size_t                         out_len;
    off_t                          skipped;
    unsigned                       cols;
    unsigned                       rows;
    u_char                        *plain;
    u_char                        *events;
    char                           reason[64];
    char                           lock_by[65];
    ngx_uint_t                     lock;       /* 0, 1 locked, 2 unlocked */
    char                           err[NGX_SEGURA_TAIL_ERRLEN];
    unsigned                       resized:1;
    unsigned                       ended:1;
    unsigned                       more:1;
    unsigned                       failed:1;
    unsigned                       joined:1;   /* the owner was told */

    /* the event loop's */
    unsigned                       fetching:1;
    unsigned                       again:1;
    unsigned                       stopped:1;
};


static ngx_int_t ngx_segura_tail_post(ngx_segura_tail_t *tl);
static void ngx_segura_tail_fetch(void *data, ngx_log_t *log);
static void ngx_segura_tail_leave(void *data, ngx_log_t *log);
static void ngx_segura_tail_finish(ngx_segura_tail_t *tl);
static ngx_int_t ngx_segura_tail_chunk(ngx_segura_tail_t *tl, uint32_t seq,
    u_char *blob, size_t blob_len);
static void ngx_segura_tail_fetched(ngx_event_t *ev);
static void ngx_segura_tail_timer(ngx_event_t *ev);
static ngx_uint_t ngx_segura_tail_name_ok(const char *name);
static void ngx_segura_tail_destroy(ngx_segura_tail_t *tl);


static ngx_queue_t  ngx_segura_tails;


ngx_segura_tail_t *
ngx_segura_tail_create(ngx_log_t *log, ngx_http_segura_main_conf_t *smcf,
    const char *id, const char *name, ngx_segura_viewer_t *v,
    ngx_segura_tail_end_pt end, void *data)
{
    ngx_pool_t         *pool;
    ngx_segura_tail_t  *tl;

    pool = ngx_create_pool(NGX_SEGURA_TAIL_POOL_SIZE, log);
    if (pool == NULL) {
        return NULL;
    }

    tl = ngx_pcalloc(pool, sizeof(ngx_segura_tail_t));
    if (tl == NULL) {
        goto failed;
    }

    tl->pool = pool;

    /* the watcher's log, without its request's context */

    tl->log = *log;
    tl->log.handler = NULL;
    tl->log.data = NULL;
    tl->log.action = "following a recording";
    pool->log = &tl->log;

    tl->smcf = smcf;
    tl->viewer = v;
    tl->end = end;
    tl->data = data;
    tl->next = -1;
    (void) ngx_cpystrn((u_char *) tl->id, (u_char *) id, sizeof(tl->id));
    (void) ngx_cpystrn((u_char *) tl->name, (u_char *) name,
                       sizeof(tl->name));

    tl->out = ngx_palloc(pool, NGX_SEGURA_TAIL_OUT);
    tl->plain = ngx_palloc(pool, NGX_SEGURA_TAIL_PLAIN);
    tl->events = ngx_palloc(pool, NGX_SEGURA_TAIL_PLAIN);
    tl->task = ngx_thread_task_alloc(pool, sizeof(ngx_segura_tail_t *));

    if (tl->out == NULL || tl->plain == NULL || tl->events == NULL
        || tl->task == NULL)
    {
        goto failed;
    }

    *(ngx_segura_tail_t **) tl->task->ctx = tl;
    tl->task->handler = ngx_segura_tail_fetch;
    tl->task->event.data = tl;
    tl->task->event.handler = ngx_segura_tail_fetched;

    tl->timer.handler = ngx_segura_tail_timer;
    tl->timer.data = tl;
    tl->timer.log = &tl->log;
    tl->timer.cancelable = 1;

    if (ngx_segura_tails.next == NULL) {
        ngx_queue_init(&ngx_segura_tails);
    }

    if (ngx_segura_tail_post(tl) != NGX_OK) {
        goto failed;
    }

    ngx_queue_insert_tail(&ngx_segura_tails, &tl->queue);

    return tl;

failed:

    ngx_destroy_pool(pool);
    return NULL;
}


void
ngx_segura_tail_stop(ngx_segura_tail_t *tl)
{
    if (tl->stopped) {
        return;
    }

    tl->stopped = 1;
    ngx_queue_remove(&tl->queue);

    if (tl->timer.timer_set) {
        ngx_del_timer(&tl->timer);
    }

    if (!tl->fetching) {
        ngx_segura_tail_finish(tl);
    }

    /* else the task's done handler finishes it */
}


/* stopped: the owner hears that the watcher left, then the memory goes */

static void
ngx_segura_tail_finish(ngx_segura_tail_t *tl)
{
    if (tl->joined) {
        tl->joined = 0;
        tl->task->handler = ngx_segura_tail_leave;

        if (ngx_thread_task_post(tl->smcf->thread_pool, tl->task) == NGX_OK) {
            tl->fetching = 1;
            return;
        }
    }

    ngx_segura_tail_destroy(tl);
}


/* a pool thread: the last word of a stopped tail */

static void
ngx_segura_tail_leave(void *data, ngx_log_t *log)
{
    ngx_segura_tail_t *tl = *(ngx_segura_tail_t **) data;

    PGconn      *conn;
    PGresult    *res;
    const char  *params[2];

    conn = ngx_segura_db_acquire(tl->smcf->db, tl->err, sizeof(tl->err));
    if (conn == NULL) {
        return;
    }

    params[0] = tl->id;
    params[1] = tl->name;

    res = ngx_segura_db_query(tl->smcf->db, &conn,
              "select pg_notify('segura_session_watch', json_build_object("
              "'id', $1::text, 'by', $2::text, 'left', true)::text)",
              2, params, tl->err, sizeof(tl->err));
    PQclear(res);

    ngx_segura_db_release(tl->smcf->db, conn);
}


void
ngx_segura_tail_notify(const char *id)
{
    ngx_queue_t        *q;
    ngx_segura_tail_t  *tl;

    if (ngx_segura_tails.next == NULL) {
        return;
    }

    for (q = ngx_queue_head(&ngx_segura_tails);
         q != ngx_queue_sentinel(&ngx_segura_tails);
         q = ngx_queue_next(q))
    {
        tl = ngx_queue_data(q, ngx_segura_tail_t, queue);

        if (ngx_strcmp(tl->id, id) != 0) {
            continue;
        }

        if (tl->fetching) {
            tl->again = 1;
            continue;
        }

        if (tl->timer.timer_set) {
            ngx_del_timer(&tl->timer);
        }

        if (ngx_segura_tail_post(tl) != NGX_OK) {
            ngx_add_timer(&tl->timer, NGX_SEGURA_TAIL_POLL);
        }
    }
}


static ngx_int_t
ngx_segura_tail_post(ngx_segura_tail_t *tl)
{
    if (ngx_thread_task_post(tl->smcf->thread_pool, tl->task) != NGX_OK) {
        return NGX_ERROR;
    }

    tl->fetching = 1;
    tl->again = 0;

    return NGX_OK;
}


/* a pool thread: the new chunks, opened, their output gathered */

static void
ngx_segura_tail_fetch(void *data, ngx_log_t *log)
{
    ngx_segura_tail_t *tl = *(ngx_segura_tail_t **) data;

    char         seq[NGX_INT64_LEN + 1];
    u_char      *blob;
    size_t       blob_len, keep;
    int64_t      last;
    PGconn      *conn;
    PGresult    *res;
    ngx_int_t    i, rows, chunks;
    ngx_uint_t   first;
    const char  *params[2];

    tl->out_len = 0;
    tl->skipped = 0;
    tl->resized = 0;
    tl->lock = 0;
    tl->ended = 0;
    tl->more = 0;
    tl->failed = 0;

    conn = ngx_segura_db_acquire(tl->smcf->db, tl->err, sizeof(tl->err));
    if (conn == NULL) {
        tl->failed = 1;
        return;
    }

    params[0] = tl->id;
    first = (tl->next < 0);

    if (first) {
        res = ngx_segura_db_query_retry(tl->smcf->db, &conn,
                  "select coalesce(max(seq), -1) from ssh_session_chunks"
                  " where session_id = $1::uuid", 1, params,
                  tl->err, sizeof(tl->err));
        if (res == NULL || PQresultStatus(res) != PGRES_TUPLES_OK
            || PQntuples(res) != 1)
        {
            PQclear(res);
            tl->failed = 1;
            goto done;
        }

        last = strtoll(PQgetvalue(res, 0, 0), NULL, 10);
        PQclear(res);

        tl->next = ngx_max(last - (NGX_SEGURA_TAIL_FIRST - 1), 0);

        /* the owner is told, and its recording flushes sooner */

        params[1] = tl->name;

        res = ngx_segura_db_query(tl->smcf->db, &conn,
                  "select pg_notify('segura_session_watch',"
                  " json_build_object('id', $1::text, 'by', $2::text,"
                  " 'left', false)::text)", 2, params,
                  tl->err, sizeof(tl->err));

        if (res != NULL && PQresultStatus(res) == PGRES_TUPLES_OK) {
            tl->joined = 1;
        }

        PQclear(res);
    }

    (void) ngx_snprintf((u_char *) seq, sizeof(seq), "%L%Z", tl->next);
    params[1] = seq;

    /* one statement, one snapshot: ended means every chunk is there */

    res = ngx_segura_db_query_retry(tl->smcf->db, &conn,
              "select s.ended_at is not null, coalesce(s.end_reason, ''),"
              " c.seq, c.data from ssh_sessions s"
              " left join lateral (select seq, data from ssh_session_chunks"
              "  where session_id = s.id and seq >= $2::int"
              "  order by seq limit 8) c on true"
              " where s.id = $1::uuid order by c.seq", 2, params,
              tl->err, sizeof(tl->err));

    if (res == NULL || PQresultStatus(res) != PGRES_TUPLES_OK) {
        PQclear(res);
        tl->failed = 1;
        goto done;
    }

    rows = PQntuples(res);

    if (rows == 0) {
        /* the session's row is gone */
        PQclear(res);
        tl->ended = 1;
        (void) ngx_cpystrn((u_char *) tl->reason, (u_char *) "closed",
                           sizeof(tl->reason));
        goto done;
    }

    chunks = 0;

    for (i = 0; i < rows; i++) {
        if (PQgetisnull(res, i, 2)) {
            continue;
        }

        chunks++;

        blob = PQunescapeBytea((u_char *) PQgetvalue(res, i, 3), &blob_len);
        if (blob == NULL) {
            (void) ngx_cpystrn((u_char *) tl->err,
                               (u_char *) "PQunescapeBytea() failed",
                               sizeof(tl->err));
            tl->failed = 1;
            break;
        }

        if (ngx_segura_tail_chunk(tl, (uint32_t) tl->next, blob, blob_len)
            != NGX_OK)
        {
            PQfreemem(blob);
            tl->failed = 1;
            break;
        }

        PQfreemem(blob);
        tl->next++;
    }

    tl->more = (chunks == NGX_SEGURA_TAIL_BATCH);

    if (!tl->failed && !tl->more && PQgetvalue(res, 0, 0)[0] == 't') {
        tl->ended = 1;
        (void) ngx_cpystrn((u_char *) tl->reason,
                           (u_char *) PQgetvalue(res, 0, 1),
                           sizeof(tl->reason));
    }

    PQclear(res);

    if (first && tl->out_len > NGX_SEGURA_TERMINAL_RECENT) {

        /* the screenful: the newest bytes, as a local watcher gets them */

        keep = NGX_SEGURA_TERMINAL_RECENT;
        ngx_memmove(tl->out, tl->out + tl->out_len - keep, keep);
        tl->out_len = keep;
        tl->skipped = 0;
    }

    if (first) {
        tl->skipped = 0;
    }

done:

    ngx_segura_db_release(tl->smcf->db, conn);
}


static ngx_int_t
ngx_segura_tail_chunk(ngx_segura_tail_t *tl, uint32_t seq, u_char *blob,
    size_t blob_len)
{
    int                       key_id;
    char                      aad[NGX_SEGURA_RECORDER_AAD_LEN];
    u_char                   *p, *x, type;
    size_t                    aad_len, plain_len, len, n, room;
    uint32_t                  elen;
    unsigned long long        size;
    ngx_segura_vault_err_e    err;
    ngx_segura_master_key_t  *key;

    key_id = ngx_segura_vault_key_id(blob, blob_len);
    key = (key_id < 0) ? NULL
                       : ngx_http_segura_find_key(tl->smcf,
                                                  (ngx_uint_t) key_id);

    if (key == NULL
        || ngx_segura_vault_opened_size(blob_len) > NGX_SEGURA_TAIL_PLAIN)
    {
        (void) ngx_snprintf((u_char *) tl->err, sizeof(tl->err),
                            "chunk %uD: no master key %d, or too long%Z",
                            seq, key_id);
        return NGX_ERROR;
    }

    aad_len = ngx_segura_recorder_aad(aad, sizeof(aad), tl->id, seq);
    plain_len = NGX_SEGURA_TAIL_PLAIN;

    if (ngx_segura_vault_open(key->key, (unsigned) key->id, aad, aad_len,
                              blob, blob_len, tl->plain, &plain_len, &err)
        != 0)
    {
        (void) ngx_snprintf((u_char *) tl->err, sizeof(tl->err),
                            "chunk %uD cannot be opened: %s%Z", seq,
                            ngx_segura_vault_strerror(err));
        return NGX_ERROR;
    }

    size = ZSTD_getFrameContentSize(tl->plain, plain_len);

    if (size == ZSTD_CONTENTSIZE_ERROR || size == ZSTD_CONTENTSIZE_UNKNOWN
        || size > NGX_SEGURA_TAIL_PLAIN)
    {
        goto bad;
    }

    len = ZSTD_decompress(tl->events, NGX_SEGURA_TAIL_PLAIN, tl->plain,
                          plain_len);

    OPENSSL_cleanse(tl->plain, plain_len);

    if (ZSTD_isError(len) || len != size) {
        goto bad;
    }

    /* the events: type (1), time (4), length (4), data */

    p = tl->events;

    while (len > 0) {
        if (len < NGX_SEGURA_RECORDER_EVENT_HDR) {
            goto bad;
        }

        type = p[0];
        elen = p[5] | (p[6] << 8) | (p[7] << 16) | ((uint32_t) p[8] << 24);

        p += NGX_SEGURA_RECORDER_EVENT_HDR;
        len -= NGX_SEGURA_RECORDER_EVENT_HDR;

        if (elen > len) {
            goto bad;
        }

        if (type == NGX_SEGURA_REC_OUTPUT) {
            room = NGX_SEGURA_TAIL_OUT - tl->out_len;
            n = ngx_min(room, elen);

            if (n < elen) {
                /* more than a watcher can take at once: skipped */
                tl->skipped += elen - n;
            }

            tl->out_len = ngx_cpymem(tl->out + tl->out_len, p, n) - tl->out;

        } else if (type == NGX_SEGURA_REC_MARKER) {

            /* the terminal's markers of a lock (ngx_segura_terminal.c) */

            if (elen > 10 && elen < 10 + sizeof(tl->lock_by)
                && ngx_strncmp(p, "locked by ", 10) == 0)
            {
                tl->lock = 1;
                ngx_memcpy(tl->lock_by, p + 10, elen - 10);
                tl->lock_by[elen - 10] = '\0';

            } else if (elen > 12 && elen < 12 + sizeof(tl->lock_by)
                       && ngx_strncmp(p, "unlocked by ", 12) == 0)
            {
                tl->lock = 2;
                ngx_memcpy(tl->lock_by, p + 12, elen - 12);
                tl->lock_by[elen - 12] = '\0';
            }

        } else if (type == NGX_SEGURA_REC_RESIZE && elen < 32) {
            x = ngx_strlchr(p, p + elen, 'x');

            if (x != NULL) {
                tl->cols = (unsigned) ngx_atoi(p, x - p);
                tl->rows = (unsigned) ngx_atoi(x + 1, p + elen - x - 1);
                tl->resized = 1;
            }
        }

        p += elen;
        len -= elen;
    }

    OPENSSL_cleanse(tl->events, size);

    return NGX_OK;

bad:

    OPENSSL_cleanse(tl->events, NGX_SEGURA_TAIL_PLAIN);

    (void) ngx_snprintf((u_char *) tl->err, sizeof(tl->err),
                        "chunk %uD is malformed%Z", seq);
    return NGX_ERROR;
}


/* back on the event loop: feed the watcher, then follow or end */

static void
ngx_segura_tail_fetched(ngx_event_t *ev)
{
    u_char               *p, text[160];
    size_t                off, n;
    ngx_segura_tail_t    *tl;
    ngx_segura_viewer_t  *v;

    tl = ev->data;
    tl->fetching = 0;

    if (tl->stopped) {
        ngx_segura_tail_finish(tl);
        return;
    }

    v = tl->viewer;

    if (tl->failed) {
        ngx_log_error(NGX_LOG_ERR, &tl->log, 0,
                      "segura watch %s: the recording cannot be followed: "
                      "%s", tl->id, tl->err);
    }

    if (tl->resized && tl->cols && tl->rows) {
        p = ngx_snprintf(text, sizeof(text),
                         "{\"type\":\"resize\",\"cols\":%ui,\"rows\":%ui}",
                         (ngx_uint_t) tl->cols, (ngx_uint_t) tl->rows);
        v->event(v, text, p - text);
    }

    if (tl->lock && ngx_segura_tail_name_ok(tl->lock_by)) {
        p = ngx_snprintf(text, sizeof(text),
                         "{\"type\":\"locked\",\"locked\":%s,"
                         "\"by\":\"%s\"}", tl->lock == 1 ? "true" : "false",
                         tl->lock_by);
        v->event(v, text, p - text);
    }

    if (tl->skipped) {
        p = ngx_snprintf(text, sizeof(text),
                         "{\"type\":\"skipped\",\"bytes\":%O}", tl->skipped);
        v->event(v, text, p - text);
    }

    for (off = 0; off < tl->out_len; off += n) {
        n = ngx_min(tl->out_len - off, NGX_SEGURA_TAIL_FEED);
        v->output(v, tl->out + off, n);
    }

    OPENSSL_cleanse(tl->out, tl->out_len);
    tl->out_len = 0;

    if (tl->ended) {
        /* the viewer stops us from its end handler: touch nothing after */
        tl->end(tl->data, tl->reason[0] ? tl->reason : "closed");
        return;
    }

    if ((tl->more || tl->again) && !tl->failed
        && ngx_segura_tail_post(tl) == NGX_OK)
    {
        return;
    }

    ngx_add_timer(&tl->timer, NGX_SEGURA_TAIL_POLL);
}


static void
ngx_segura_tail_timer(ngx_event_t *ev)
{
    ngx_segura_tail_t *tl = ev->data;

    if (tl->stopped || tl->fetching) {
        return;
    }

    if (ngx_segura_tail_post(tl) != NGX_OK) {
        ngx_add_timer(&tl->timer, NGX_SEGURA_TAIL_POLL);
    }
}


/* a user name as sql/002 allows them: nothing to escape in JSON */

static ngx_uint_t
ngx_segura_tail_name_ok(const char *name)
{
    const u_char  *p;

    for (p = (const u_char *) name; *p; p++) {
        if (!((*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z')
              || (*p >= '0' && *p <= '9') || *p == '.' || *p == '_'
              || *p == '@' || *p == '-'))
        {
            return 0;
        }
    }

    return p != (const u_char *) name;
}


static void
ngx_segura_tail_destroy(ngx_segura_tail_t *tl)
{
    ngx_destroy_pool(tl->pool);
}
