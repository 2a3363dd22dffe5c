
/*
 * Copyright (C) ngx_segura_module authors
 */


/*
 * GET /api/sessions?q=<words>: the sessions whose recorded output holds
 * every word (whole words, as ngx_segura_words.h reads them), newest
 * first, each with up to NGX_SEGURA_SEARCH_HITS hits {t, line, word}.
 *
 * The words are looked up in the blind index (sql/018): each is hashed
 * under the index key of every configured master key, and PostgreSQL
 * tests the hash's bits in the Bloom filter of every chunk of the newest
 * sessions (at most NGX_SEGURA_SEARCH_SCAN chunks per request; beyond,
 * the answer says "partial").  A session is a candidate when its chunks
 * may hold all the words.  Its candidate chunks (and the chunk before
 * each, so that a word cut between two chunks is read whole) are then
 * opened and decompressed here and scanned again with the same scanner:
 * the session is reported only if every word is found there (a false
 * positive of the filters is no hit), with its hits cut to a bounded
 * window around the word; nothing is kept.  Candidates are read newest
 * first until limit sessions are found, at most
 * NGX_SEGURA_SEARCH_CANDIDATES of them and about NGX_SEGURA_SEARCH_OPEN
 * chunks opened per request (partial beyond).
 *
 * Who may search: ngx_segura_api_may_search(), the one predicate.  Every
 * search is an audit_log row (session_search) with the hashes of its
 * words under the current master key, never the words.  Pool threads
 * only.
 */


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>
#include "ngx_segura.h"
#include "ngx_segura_api.h"
#include "ngx_segura_auth.h"
#include "ngx_segura_index.h"
#include "ngx_segura_recorder.h"
#include "ngx_segura_vault.h"
#include "ngx_segura_words.h"

#include <openssl/crypto.h>
#include <zstd.h>


#define NGX_SEGURA_SEARCH_Q_MAX      200    /* bytes of q, decoded */
#define NGX_SEGURA_SEARCH_WORDS      8
#define NGX_SEGURA_SEARCH_KEYS       16
#define NGX_SEGURA_SEARCH_HITS       10
#define NGX_SEGURA_SEARCH_SESSIONS   20
#define NGX_SEGURA_SEARCH_CHUNKS     64     /* opened per session */
#define NGX_SEGURA_SEARCH_SCAN       20000  /* filters tested per request */
#define NGX_SEGURA_SEARCH_CANDIDATES 200    /* sessions per request */
#define NGX_SEGURA_SEARCH_OPEN       512    /* chunks opened per request */
#define NGX_SEGURA_SEARCH_LINE       512    /* bytes of a line kept */
#define NGX_SEGURA_SEARCH_AROUND     80     /* bytes shown each side */
#define NGX_SEGURA_SEARCH_PLAIN_MAX  (NGX_SEGURA_RECORDER_CHUNK + 1024)

#define NGX_SEGURA_SEARCH_STR2(n)    #n
#define NGX_SEGURA_SEARCH_STR(n)     NGX_SEGURA_SEARCH_STR2(n)


typedef struct {
    u_char                  text[NGX_SEGURA_WORDS_MAX + 1];
    size_t                  len;
} ngx_segura_search_word_t;


typedef struct {
    uint32_t                t;
    size_t                  end;       /* in the line, after the word */
    size_t                  len;
    ngx_uint_t              word;
} ngx_segura_search_pending_t;


typedef struct {
    ngx_segura_words_t      ws;

    ngx_segura_search_word_t  *words;
    ngx_uint_t              nwords;

    json_t                 *hits;      /* array */
    ngx_uint_t              nhits;
    ngx_uint_t              on;        /* hits are taken */
    ngx_uint_t              found;     /* the words seen, a bit each */
    ngx_uint_t              all;
    ngx_uint_t              opened;    /* chunks, in this request */

    u_char                  line[NGX_SEGURA_SEARCH_LINE];
    size_t                  line_len;

    ngx_segura_search_pending_t  pending[NGX_SEGURA_SEARCH_HITS];
    ngx_uint_t              npending;
} ngx_segura_search_scan_t;


typedef struct {
    ngx_segura_search_word_t  *words;
    ngx_uint_t             *n;
    ngx_uint_t              bad;
} ngx_segura_search_query_t;


static ngx_int_t ngx_segura_search_parse(const char *q,
    ngx_segura_search_word_t *words, ngx_uint_t *n);
static void ngx_segura_search_query_word(void *data, const u_char *w,
    size_t len, uint32_t t);
static ngx_int_t ngx_segura_search_session(ngx_segura_api_ctx_t *ctx,
    PGconn **conn, const char *id, const char *seqs,
    ngx_segura_search_scan_t *sc, u_char *plain, u_char *events);
static ngx_int_t ngx_segura_search_chunk(ngx_segura_api_ctx_t *ctx,
    ngx_segura_search_scan_t *sc, const char *id, uint32_t seq,
    u_char *blob, size_t blob_len, u_char *plain, u_char *events);
static void ngx_segura_search_word(void *data, const u_char *w, size_t len,
    uint32_t t);
static void ngx_segura_search_text(void *data, u_char c);
static void ngx_segura_search_line_end(ngx_segura_search_scan_t *sc);
static size_t ngx_segura_search_utf8(u_char *dst, const u_char *src,
    size_t len);


/* who may search the recordings */

ngx_uint_t
ngx_segura_api_may_search(ngx_segura_api_ctx_t *ctx)
{
    /*
     * those who may see every session (ngx_segura_audit.h): administrators
     * and audit_sessions members; a user's own sessions
     * (segura_recording_self) are not searched
     */

    return ngx_segura_auth_may_audit(&ctx->me);
}


void
ngx_segura_api_search(ngx_segura_api_ctx_t *ctx, PGconn **conn)
{
    char                      q[3 * NGX_SEGURA_SEARCH_Q_MAX + 1];
    char                      limit_buf[NGX_INT64_LEN + 1], nw[NGX_INT_T_LEN],
                              cand[NGX_INT_T_LEN], scan[NGX_INT_T_LEN];
    char                     *arr[4], *ap[4];
    u_char                   *plain, *events;
    ngx_int_t                 n, limit, rc;
    ngx_uint_t                i, k, j, nwords, nkeys, partial, found;
    uint64_t                  h1, h2;
    PGresult                 *res;
    json_t                   *items, *item, *detail, *audit, *out;
    const char               *params[7];
    int64_t                   h;
    u_char                    key[NGX_SEGURA_INDEX_KEY_LEN];
    ngx_segura_master_key_t  *keys, *cur;
    ngx_segura_search_scan_t *sc;
    ngx_segura_search_word_t  words[NGX_SEGURA_SEARCH_WORDS];

    if (!(ctx->method & (NGX_HTTP_GET|NGX_HTTP_HEAD))) {
        ngx_segura_api_fail(ctx, NGX_SEGURA_ERR_METHOD, NULL, NULL);
        return;
    }

    if (!ngx_segura_api_may_search(ctx)) {
        ngx_segura_api_fail(ctx, NGX_SEGURA_ERR_FORBIDDEN, NULL,
                            "Only administrators may search recordings");
        return;
    }

    ngx_memzero(q, sizeof(q));

    if (ngx_segura_api_arg(ctx, "q", q, sizeof(q)) != NGX_OK
        || ngx_strlen(q) > NGX_SEGURA_SEARCH_Q_MAX
        || ngx_segura_search_parse(q, words, &nwords) != NGX_OK)
    {
        ngx_segura_api_fail(ctx, NGX_SEGURA_ERR_INVALID_FIELD, "q",
                            "Must be 1 to 8 words of 2 to 40 letters or "
                            "digits, at most 200 bytes in all");
        goto wipe;
    }

    OPENSSL_cleanse(q, sizeof(q));

    limit = NGX_SEGURA_SEARCH_SESSIONS;

    if (ngx_segura_api_arg(ctx, "limit", limit_buf, sizeof(limit_buf))
        != NGX_DECLINED)
    {
        limit = ngx_atoi((u_char *) limit_buf, ngx_strlen(limit_buf));

        if (limit < 1 || limit > 50) {
            ngx_segura_api_fail(ctx, NGX_SEGURA_ERR_INVALID_FIELD, "limit",
                                "Must be 1 to 50");
            goto wipe;
        }
    }

    keys = ctx->smcf->keys.elts;
    nkeys = ctx->smcf->keys.nelts;

    if (nkeys > NGX_SEGURA_SEARCH_KEYS) {
        nkeys = NGX_SEGURA_SEARCH_KEYS;
    }

    if (nkeys == 0) {
        ngx_segura_api_fail(ctx, NGX_SEGURA_ERR_INTERNAL, NULL, NULL);
        goto wipe;
    }

    /*
     * every word under every key, four arrays of one entry each: the key
     * id, the word's number, h1 and h2 of its hash (ngx_segura_index.h)
     */

    for (j = 0; j < 4; j++) {
        arr[j] = malloc(2 + nwords * nkeys * 12 + 1);
        ap[j] = arr[j];
    }

    audit = json_array();
    plain = malloc(NGX_SEGURA_SEARCH_PLAIN_MAX);
    events = malloc(NGX_SEGURA_SEARCH_PLAIN_MAX);
    sc = calloc(1, sizeof(ngx_segura_search_scan_t));
    items = json_array();
    out = NULL;

    if (arr[0] == NULL || arr[1] == NULL || arr[2] == NULL || arr[3] == NULL
        || audit == NULL || plain == NULL || events == NULL || sc == NULL
        || items == NULL)
    {
        ngx_segura_api_fail(ctx, NGX_SEGURA_ERR_INTERNAL, NULL, NULL);
        goto done;
    }

    cur = ngx_http_segura_current_key(ctx->smcf);

    for (j = 0; j < 4; j++) {
        *ap[j]++ = '{';
    }

    for (k = 0; k < nkeys; k++) {
        if (ngx_segura_index_derive(keys[k].key, NGX_SEGURA_VAULT_KEY_LEN,
                                    key)
            != 0)
        {
            OPENSSL_cleanse(key, sizeof(key));
            ngx_segura_api_fail(ctx, NGX_SEGURA_ERR_INTERNAL, NULL, NULL);
            goto done;
        }

        for (i = 0; i < nwords; i++) {
            h = ngx_segura_index_hash(key, words[i].text, words[i].len);
            ngx_segura_index_halves(h, &h1, &h2);

            ap[0] = (char *) ngx_sprintf((u_char *) ap[0], "%s%ui",
                                         (ap[0] - arr[0] > 1) ? "," : "",
                                         keys[k].id);
            ap[1] = (char *) ngx_sprintf((u_char *) ap[1], "%s%ui",
                                         (ap[1] - arr[1] > 1) ? "," : "", i);
            ap[2] = (char *) ngx_sprintf((u_char *) ap[2], "%s%uL",
                                         (ap[2] - arr[2] > 1) ? "," : "", h1);
            ap[3] = (char *) ngx_sprintf((u_char *) ap[3], "%s%uL",
                                         (ap[3] - arr[3] > 1) ? "," : "", h2);

            if (keys[k].id == cur->id) {
                char  hs[NGX_INT64_LEN + 1];

                (void) ngx_snprintf((u_char *) hs, sizeof(hs), "%L%Z", h);
                json_array_append_new(audit, json_string(hs));
            }
        }
    }

    OPENSSL_cleanse(key, sizeof(key));

    for (j = 0; j < 4; j++) {
        *ap[j]++ = '}';
        *ap[j] = '\0';
    }

    /* the search is audited before anything is read: hashes, not words */

    detail = json_pack("{s:O,s:i}", "hashes", audit, "words", (int) nwords);

    n = ngx_segura_api_audit(ctx, conn, "session_search", "ssh_session",
                             NULL, detail);
    json_decref(detail);

    if (n != NGX_OK) {
        if (ctx->err == NGX_SEGURA_ERR_OK) {
            ngx_segura_api_fail(ctx, NGX_SEGURA_ERR_INTERNAL, NULL, NULL);
        }
        goto done;
    }

    (void) ngx_snprintf((u_char *) nw, sizeof(nw), "%ui%Z",
                        ((ngx_uint_t) 1 << nwords) - 1);
    (void) ngx_snprintf((u_char *) cand, sizeof(cand), "%ui%Z",
                        (ngx_uint_t) NGX_SEGURA_SEARCH_CANDIDATES);
    (void) ngx_snprintf((u_char *) scan, sizeof(scan), "%ui%Z",
                        (ngx_uint_t) NGX_SEGURA_SEARCH_SCAN);

    params[0] = arr[0];
    params[1] = arr[1];
    params[2] = arr[2];
    params[3] = arr[3];
    params[4] = nw;
    params[5] = cand;
    params[6] = scan;

    /*
     * The filters of the newest sessions' chunks, at most $7 of them; a
     * chunk's mask has a bit for each word its filter may hold (the K = 6
     * bits
     * of one of the word's hashes under the chunk's index key are set);
     * the candidates are the sessions whose masks cover every word, with
     * the chunks whose mask is not 0.  One row more than $7 says that the
     * scan was cut (partial); a row without id when nothing matched.
     */

    res = ngx_segura_api_query_retry(ctx, conn,
              "with w (k, i, h1, h2) as (select * from unnest($1::int[],"
              "  $2::int[], $3::bigint[], $4::bigint[])),"
              " c0 as (select c.session_id, c.seq, c.index_key, c.filter,"
              "  length(c.filter)::bigint * 8 as m"
              "  from ssh_session_chunks c"
              "  join ssh_sessions s on s.id = c.session_id"
              "  where c.filter is not null"
              "  order by s.started_at desc, s.id desc, c.seq"
              "  limit $7::int + 1),"
              " c as (select * from c0 limit $7::int),"
              " x as (select c.session_id, c.seq,"
              "  (select coalesce(bit_or(1 << w.i), 0) from w"
              "   where w.k = c.index_key"
              "   and get_bit(c.filter, w.h1 % c.m) = 1"
              "   and get_bit(c.filter, (w.h1 + w.h2) % c.m) = 1"
              "   and get_bit(c.filter, (w.h1 + 2 * w.h2) % c.m) = 1"
              "   and get_bit(c.filter, (w.h1 + 3 * w.h2) % c.m) = 1"
              "   and get_bit(c.filter, (w.h1 + 4 * w.h2) % c.m) = 1"
              "   and get_bit(c.filter, (w.h1 + 5 * w.h2) % c.m) = 1)"
              "  as mask from c),"
              " r as (select x.session_id,"
              "  array_agg(x.seq order by x.seq) filter (where x.mask <> 0)"
              "  as seqs from x group by x.session_id"
              "  having bit_or(x.mask) = $5::int),"
              " top as (select s.id, s.started_at, json_build_object("
              " 'id', s.id,"
              " 'user_id', s.user_id, 'username', s.username,"
              " 'device_id', s.device_id, 'device_name', s.device_name,"
              " 'device_address', s.device_address,"
              " 'started_at', s.started_at, 'ended_at', s.ended_at,"
              " 'end_reason', s.end_reason)::text as item, r.seqs"
              " from r join ssh_sessions s on s.id = r.session_id"
              " order by s.started_at desc, s.id desc limit $6::int)"
              " select (select count(*) from c0) > $7::int, top.id,"
              " top.item, top.seqs::text"
              " from (select 1) one left join top on true"
              " order by top.started_at desc, top.id desc",
              7, params);
    if (res == NULL) {
        goto done;
    }

    partial = (PQntuples(res) > 0 && PQgetvalue(res, 0, 0)[0] == 't');

    sc->words = words;
    sc->nwords = nwords;
    sc->all = ((ngx_uint_t) 1 << nwords) - 1;
    found = 0;

    /*
     * The candidates in order, newest first, until limit sessions are
     * found; the false positives cost chunks opened, at most
     * NGX_SEGURA_SEARCH_OPEN of them per request: beyond, and beyond
     * NGX_SEGURA_SEARCH_CANDIDATES candidates, the answer is partial.
     */

    for (n = 0; n < PQntuples(res) && (ngx_int_t) found < limit; n++) {
        if (PQgetisnull(res, n, 1)) {
            continue;
        }

        if (sc->opened >= NGX_SEGURA_SEARCH_OPEN) {
            partial = 1;
            break;
        }

        if (n == NGX_SEGURA_SEARCH_CANDIDATES - 1) {
            /* the last candidate: there may be more */
            partial = 1;
        }

        item = json_loads(PQgetvalue(res, n, 2), 0, NULL);
        sc->hits = json_array();

        rc = (item == NULL || sc->hits == NULL)
             ? NGX_ERROR
             : ngx_segura_search_session(ctx, conn, PQgetvalue(res, n, 1),
                                         PQgetvalue(res, n, 3), sc, plain,
                                         events);

        if (rc != NGX_OK) {
            json_decref(item);
            json_decref(sc->hits);
            sc->hits = NULL;
            PQclear(res);

            if (ctx->err == NGX_SEGURA_ERR_OK) {
                ngx_segura_api_fail(ctx, NGX_SEGURA_ERR_INTERNAL, NULL, NULL);
            }
            goto done;
        }

        if (sc->found != sc->all) {
            /* the filters' false positive, or words beyond what is read */
            json_decref(item);
            json_decref(sc->hits);
            sc->hits = NULL;
            continue;
        }

        json_object_set_new(item, "hits", sc->hits);
        sc->hits = NULL;
        json_array_append_new(items, item);
        found++;
    }

    PQclear(res);

    out = json_array();
    for (i = 0; out != NULL && i < nwords; i++) {
        json_array_append_new(out, json_stringn((char *) words[i].text,
                                                words[i].len));
    }

    out = json_pack("{s:o,s:o*,s:b}", "items", items, "words", out,
                    "partial", (int) partial);
    items = NULL;

    free(ctx->json);
    ctx->json = (out != NULL) ? json_dumps(out, JSON_COMPACT) : NULL;
    ctx->json_len = 0;

    if (ctx->json == NULL) {
        ngx_segura_api_fail(ctx, NGX_SEGURA_ERR_INTERNAL, NULL, NULL);
        goto done;
    }

    ctx->status = 200;

done:

    json_decref(out);
    json_decref(items);
    json_decref(audit);

    for (j = 0; j < 4; j++) {
        free(arr[j]);
    }

    if (plain != NULL) {
        OPENSSL_cleanse(plain, NGX_SEGURA_SEARCH_PLAIN_MAX);
        free(plain);
    }

    if (events != NULL) {
        OPENSSL_cleanse(events, NGX_SEGURA_SEARCH_PLAIN_MAX);
        free(events);
    }

    if (sc != NULL) {
        OPENSSL_cleanse(sc, sizeof(ngx_segura_search_scan_t));
        free(sc);
    }

wipe:

    /* what was searched is not left in memory */

    OPENSSL_cleanse(words, sizeof(words));
    OPENSSL_cleanse(q, sizeof(q));
}


/*
 * q: words separated by white space, each read by the scanner as output
 * is; a word with joiners ("/etc/passwd") is searched as its compound, not
 * as its parts.  Duplicates are searched once.
 */

static ngx_int_t
ngx_segura_search_parse(const char *q, ngx_segura_search_word_t *words,
    ngx_uint_t *n)
{
    size_t                     len, i, j;
    ngx_uint_t                 k, m, compound, drop;
    const u_char              *p, *end, *s;
    ngx_segura_words_t         ws;
    ngx_segura_search_word_t  *w;
    ngx_segura_search_word_t   tmp[2 * NGX_SEGURA_SEARCH_WORDS + 2];
    ngx_uint_t                 ntmp;
    ngx_segura_search_query_t  qu;

    *n = 0;
    p = (const u_char *) q;
    end = p + ngx_strlen(q);

    while (p < end) {
        while (p < end && (*p == ' ' || *p == '\t' || *p == '\n'
                           || *p == '\r' || *p == '+'))
        {
            p++;
        }

        if (p == end) {
            break;
        }

        s = p;

        while (p < end && *p != ' ' && *p != '\t' && *p != '\n'
               && *p != '\r' && *p != '+')
        {
            p++;
        }

        /* the words of this token */

        ntmp = 0;
        qu.words = tmp;
        qu.n = &ntmp;
        qu.bad = 0;

        ngx_segura_words_init(&ws, ngx_segura_search_query_word, NULL, &qu);
        ngx_segura_words_feed(&ws, s, p - s, 0);
        ngx_segura_words_end(&ws);

        if (ntmp == 0 || qu.bad) {
            return NGX_ERROR;
        }

        for (k = 0; k < ntmp; k++) {
            compound = 0;

            for (i = 0; i < tmp[k].len; i++) {
                if (ngx_strchr("-./:@", tmp[k].text[i]) != NULL) {
                    compound = 1;
                    break;
                }
            }

            /* a part of a compound of this token is not searched alone */

            drop = 0;

            for (m = 0; !compound && m < ntmp; m++) {
                w = &tmp[m];
                len = tmp[k].len;

                if (m == k || w->len <= len) {
                    continue;
                }

                for (i = 0; i + len <= w->len; i++) {
                    j = i + len;

                    if (ngx_memcmp(w->text + i, tmp[k].text, len) == 0
                        && (i == 0 || ngx_strchr("-./:@", w->text[i - 1]))
                        && (j == w->len || ngx_strchr("-./:@", w->text[j])))
                    {
                        drop = 1;
                        break;
                    }
                }
            }

            for (m = 0; !drop && m < *n; m++) {
                if (words[m].len == tmp[k].len
                    && ngx_memcmp(words[m].text, tmp[k].text, tmp[k].len)
                       == 0)
                {
                    drop = 1;
                }
            }

            if (drop) {
                continue;
            }

            if (*n == NGX_SEGURA_SEARCH_WORDS) {
                return NGX_ERROR;
            }

            words[(*n)++] = tmp[k];
        }

    }

    return (*n > 0) ? NGX_OK : NGX_ERROR;
}


static void
ngx_segura_search_query_word(void *data, const u_char *w, size_t len,
    uint32_t t)
{
    ngx_segura_search_query_t  *qu = data;

    if (*qu->n == 2 * NGX_SEGURA_SEARCH_WORDS + 2) {
        qu->bad = 1;
        return;
    }

    ngx_memcpy(qu->words[*qu->n].text, w, len);
    qu->words[*qu->n].len = len;
    (*qu->n)++;
}


static ngx_int_t
ngx_segura_search_session(ngx_segura_api_ctx_t *ctx, PGconn **conn,
    const char *id, const char *seqs, ngx_segura_search_scan_t *sc,
    u_char *plain, u_char *events)
{
    u_char      *blob;
    size_t       blob_len;
    uint32_t     seq, prev;
    ngx_int_t    i, rc, rows;
    PGresult    *res;
    const char  *params[2];

    params[0] = id;
    params[1] = seqs;

    /* the candidate chunks and the one before each */

    res = ngx_segura_api_query_retry(ctx, conn,
              "select c.seq, c.data from ssh_session_chunks c"
              " where c.session_id = $1::uuid"
              " and (c.seq = any($2::int[]) or c.seq + 1 = any($2::int[]))"
              " order by c.seq limit " NGX_SEGURA_SEARCH_STR(
                                              NGX_SEGURA_SEARCH_CHUNKS),
              2, params);
    if (res == NULL) {
        return NGX_ERROR;
    }

    rows = PQntuples(res);
    prev = 0;
    sc->nhits = 0;
    sc->found = 0;
    sc->npending = 0;
    sc->line_len = 0;

    ngx_segura_words_init(&sc->ws, ngx_segura_search_word,
                          ngx_segura_search_text, sc);

    for (i = 0;
         i < rows
         && (sc->nhits < NGX_SEGURA_SEARCH_HITS || sc->found != sc->all);
         i++)
    {
        seq = (uint32_t) strtoul(PQgetvalue(res, i, 0), NULL, 10);

        if (i > 0 && seq != prev + 1) {
            /*
             * not the next chunk: a word cut at the end of the last one
             * is not a word (it goes on in a chunk not read)
             */
            sc->on = 0;
            ngx_segura_words_end(&sc->ws);
            ngx_segura_search_line_end(sc);
        }

        /*
         * A chunk read without the one before may begin inside a word:
         * hits are taken from its first byte that is not a word
         * character on (ngx_segura_search_text), but from the start of
         * the recording.
         */

        if (i == 0 || seq != prev + 1) {
            sc->on = (seq == 0);
        }

        prev = seq;

        sc->opened++;

        blob = PQunescapeBytea((u_char *) PQgetvalue(res, i, 1), &blob_len);
        if (blob == NULL) {
            PQclear(res);
            return NGX_ERROR;
        }

        rc = ngx_segura_search_chunk(ctx, sc, id, seq, blob, blob_len, plain,
                                     events);
        PQfreemem(blob);

        if (rc != NGX_OK) {
            PQclear(res);
            return NGX_ERROR;
        }
    }

    PQclear(res);

    /*
     * the last word read ends with the recording, or goes on in a chunk
     * not read: no hit for it either way (the recorder gives a session's
     * last word to its last chunk; a search finds the session by it)
     */
    sc->on = 0;
    ngx_segura_words_end(&sc->ws);
    ngx_segura_search_line_end(sc);
    ngx_segura_words_wipe(&sc->ws);

    return NGX_OK;
}


static ngx_int_t
ngx_segura_search_chunk(ngx_segura_api_ctx_t *ctx,
    ngx_segura_search_scan_t *sc, const char *id, uint32_t seq, u_char *blob,
    size_t blob_len, u_char *plain, u_char *events)
{
    int                       key_id;
    char                      aad[NGX_SEGURA_RECORDER_AAD_LEN];
    u_char                   *p, type;
    size_t                    aad_len, plain_len, n, len;
    uint32_t                  time, elen;
    unsigned long long        size;
    ngx_segura_vault_err_e    err;
    ngx_segura_master_key_t  *key;

    key_id = ngx_segura_vault_key_id(blob, blob_len);
    key = (key_id < 0) ? NULL
                       : ngx_http_segura_find_key(ctx->smcf,
                                                  (ngx_uint_t) key_id);

    if (key == NULL
        || ngx_segura_vault_opened_size(blob_len)
           > NGX_SEGURA_SEARCH_PLAIN_MAX)
    {
        ctx->log_level = NGX_LOG_ERR;
        (void) ngx_snprintf((u_char *) ctx->log, sizeof(ctx->log),
                            "search: recording %s chunk %uD: no master key "
                            "%d, or too long%Z", id, seq, key_id);
        return NGX_ERROR;
    }

    aad_len = ngx_segura_recorder_aad(aad, sizeof(aad), id, seq);
    plain_len = NGX_SEGURA_SEARCH_PLAIN_MAX;

    if (ngx_segura_vault_open(key->key, (unsigned) key->id, aad, aad_len,
                              blob, blob_len, plain, &plain_len, &err)
        != 0)
    {
        ctx->log_level = NGX_LOG_ERR;
        (void) ngx_snprintf((u_char *) ctx->log, sizeof(ctx->log),
                            "search: recording %s chunk %uD cannot be "
                            "opened: %s%Z", id, seq,
                            ngx_segura_vault_strerror(err));
        return NGX_ERROR;
    }

    size = ZSTD_getFrameContentSize(plain, plain_len);

    if (size == ZSTD_CONTENTSIZE_ERROR || size == ZSTD_CONTENTSIZE_UNKNOWN
        || size > NGX_SEGURA_SEARCH_PLAIN_MAX)
    {
        goto bad;
    }

    n = ZSTD_decompress(events, NGX_SEGURA_SEARCH_PLAIN_MAX, plain,
                        plain_len);

    OPENSSL_cleanse(plain, plain_len);

    if (ZSTD_isError(n) || n != size) {
        goto bad;
    }

    /* type (1) | time (4, LE) | length (4, LE) | bytes; output only */

    p = events;
    len = n;

    while (len > 0) {
        if (len < NGX_SEGURA_RECORDER_EVENT_HDR) {
            goto bad;
        }

        type = p[0];
        time = p[1] | (p[2] << 8) | (p[3] << 16) | ((uint32_t) p[4] << 24);
        elen = p[5] | (p[6] << 8) | (p[7] << 16) | ((uint32_t) p[8] << 24);

        p += NGX_SEGURA_RECORDER_EVENT_HDR;
        len -= NGX_SEGURA_RECORDER_EVENT_HDR;

        if (elen > len) {
            goto bad;
        }

        if (type == NGX_SEGURA_REC_OUTPUT) {
            ngx_segura_words_feed(&sc->ws, p, elen, time);
        }

        p += elen;
        len -= elen;
    }

    OPENSSL_cleanse(events, n);

    return NGX_OK;

bad:

    ctx->log_level = NGX_LOG_ERR;
    (void) ngx_snprintf((u_char *) ctx->log, sizeof(ctx->log),
                        "search: recording %s chunk %uD is malformed%Z",
                        id, seq);
    return NGX_ERROR;
}


static void
ngx_segura_search_word(void *data, const u_char *w, size_t len, uint32_t t)
{
    ngx_uint_t                    i;
    ngx_segura_search_pending_t  *pd;
    ngx_segura_search_scan_t     *sc = data;

    if (!sc->on) {
        return;
    }

    for (i = 0; i < sc->nwords; i++) {
        if (sc->words[i].len == len
            && ngx_memcmp(sc->words[i].text, w, len) == 0)
        {
            break;
        }
    }

    if (i == sc->nwords) {
        return;
    }

    sc->found |= (ngx_uint_t) 1 << i;

    if (sc->nhits + sc->npending >= NGX_SEGURA_SEARCH_HITS) {
        return;
    }

    /* the line is shown when it ends: the word's bytes are its last */

    pd = &sc->pending[sc->npending++];
    pd->t = t;
    pd->end = sc->line_len;
    pd->len = len;
    pd->word = i;
}


static void
ngx_segura_search_text(void *data, u_char c)
{
    ngx_segura_search_scan_t  *sc = data;

    if (!sc->on
        && !((c >= '0' && c <= '9') || (c >= 'a' && c <= 'z')
             || (c >= 'A' && c <= 'Z') || c == '_' || c >= 0x80))
    {
        /* the word a chunk may begin inside has ended */
        sc->on = 1;
    }

    if (c == NGX_SEGURA_WORDS_EOL) {
        ngx_segura_search_line_end(sc);
        return;
    }

    if (sc->line_len == NGX_SEGURA_SEARCH_LINE) {
        /* a line this long is shown in pieces */
        ngx_segura_search_line_end(sc);
    }

    sc->line[sc->line_len++] = c;
}


static void
ngx_segura_search_line_end(ngx_segura_search_scan_t *sc)
{
    size_t                        from, to, n;
    ngx_uint_t                    i;
    json_t                       *hit;
    u_char                        buf[4 * NGX_SEGURA_SEARCH_AROUND
                                      + 2 * NGX_SEGURA_WORDS_MAX + 8];
    ngx_segura_search_pending_t  *pd;

    for (i = 0; i < sc->npending; i++) {
        pd = &sc->pending[i];

        to = pd->end + NGX_SEGURA_SEARCH_AROUND;
        if (to > sc->line_len) {
            to = sc->line_len;
        }

        from = (pd->end > pd->len + NGX_SEGURA_SEARCH_AROUND)
               ? pd->end - pd->len - NGX_SEGURA_SEARCH_AROUND : 0;

        while (from < to && sc->line[from] == ' ') {
            from++;
        }

        while (to > from && sc->line[to - 1] == ' ') {
            to--;
        }

        n = ngx_segura_search_utf8(buf, sc->line + from, to - from);

        hit = json_pack("{s:f,s:s%,s:s%}", "t", pd->t / 1000.0,
                        "line", buf, n,
                        "word", sc->words[pd->word].text,
                        sc->words[pd->word].len);

        OPENSSL_cleanse(buf, sizeof(buf));

        if (hit != NULL && sc->hits != NULL) {
            json_array_append_new(sc->hits, hit);
            sc->nhits++;
        }
    }

    sc->npending = 0;
    OPENSSL_cleanse(sc->line, sc->line_len);
    sc->line_len = 0;
}


/*
 * The window as valid UTF-8 (JSON strings must be): a sequence cut at an
 * edge of the window or not UTF-8 becomes '?'.  dst holds 3 * len bytes.
 */

static size_t
ngx_segura_search_utf8(u_char *dst, const u_char *src, size_t len)
{
    u_char       *d;
    size_t        i, need, k;
    const u_char *s, *end;

    d = dst;
    s = src;
    end = src + len;

    while (s < end) {
        if (*s < 0x80) {
            *d++ = (*s < 0x20 || *s == 0x7f) ? ' ' : *s;
            s++;
            continue;
        }

        if (*s >= 0xc2 && *s <= 0xdf) {
            need = 2;

        } else if (*s >= 0xe0 && *s <= 0xef) {
            need = 3;

        } else if (*s >= 0xf0 && *s <= 0xf4) {
            need = 4;

        } else {
            goto invalid;
        }

        if ((size_t) (end - s) < need) {
            goto invalid;
        }

        for (i = 1; i < need; i++) {
            if ((s[i] & 0xc0) != 0x80) {
                goto invalid;
            }
        }

        if ((s[0] == 0xe0 && s[1] < 0xa0) || (s[0] == 0xed && s[1] > 0x9f)
            || (s[0] == 0xf0 && s[1] < 0x90) || (s[0] == 0xf4 && s[1] > 0x8f))
        {
            goto invalid;
        }

        for (k = 0; k < need; k++) {
            *d++ = *s++;
        }

        continue;

    invalid:

        *d++ = '?';
        s++;
    }

    return d - dst;
}
