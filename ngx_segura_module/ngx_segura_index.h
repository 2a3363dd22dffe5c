
/*
 * Copyright (C) ngx_segura_module authors
 */


#ifndef _NGX_SEGURA_INDEX_H_INCLUDED_
#define _NGX_SEGURA_INDEX_H_INCLUDED_


#include <stddef.h>
#include <stdint.h>

#include "ngx_segura_words.h"


/*
 * The blind index of the recordings (docs/recording.md, "Search"): per
 * chunk, the distinct words of its output, each as a keyed hash with the
 * time of its first occurrence.  The hash is SipHash-2-4 under a 128-bit
 * key derived from a master key (HMAC-SHA-256 of the label
 * NGX_SEGURA_INDEX_LABEL, truncated), as a signed 64-bit integer for a
 * PostgreSQL bigint.  Without the master key a hash tells nothing of its
 * word; with it, a search hashes its words the same way.
 *
 * Plain C (malloc, no nginx types, no globals): an index belongs to one
 * recorder on the event loop; the hash functions may be called from any
 * thread.
 */


#define NGX_SEGURA_INDEX_KEY_LEN   16
#define NGX_SEGURA_INDEX_LABEL     "segura recording index v1"

/*
 * Distinct words per chunk: the recorder cuts a chunk once its set holds
 * NGX_SEGURA_INDEX_CUT (ngx_segura_index_full()), feeding at most
 * NGX_SEGURA_INDEX_SLICE bytes between two looks; a set never holds more
 * than NGX_SEGURA_INDEX_WORDS (more are counted in lost, not indexed).
 */
#define NGX_SEGURA_INDEX_CUT       1024
#define NGX_SEGURA_INDEX_SLICE     1024
#define NGX_SEGURA_INDEX_WORDS     1536
#define NGX_SEGURA_INDEX_SLOTS     2048


typedef struct {
    ngx_segura_words_t   ws;
    unsigned char        key[NGX_SEGURA_INDEX_KEY_LEN];
    unsigned             key_id;

    /*
     * The set: open addressing on a fast hash of the word under a secret
     * seed (cheap, 0 is an empty slot), so that a word seen before in the
     * chunk costs no SipHash; hash is the keyed hash stored.
     */
    uint64_t             seed;
    uint64_t            *cheap;
    uint64_t            *hash;
    uint32_t            *time;
    size_t               slots;     /* a power of two, or 0 */
    size_t               n;
    size_t               lost;      /* words beyond NGX_SEGURA_INDEX_WORDS */
} ngx_segura_index_t;


/* the index key of a master key; 0 or -1 */
int ngx_segura_index_derive(const unsigned char *master, size_t master_len,
    unsigned char key[NGX_SEGURA_INDEX_KEY_LEN]);

/* the hash of a word (lowercased as the scanner gives it) */
int64_t ngx_segura_index_hash(const unsigned char key[NGX_SEGURA_INDEX_KEY_LEN],
    const unsigned char *w, size_t len);

/* SipHash-2-4 (Aumasson and Bernstein), for the unit tests' vectors */
uint64_t ngx_segura_index_siphash(const unsigned char k[16],
    const unsigned char *in, size_t len);

/* 0, or -1 when the key cannot be derived */
int ngx_segura_index_init(ngx_segura_index_t *idx,
    const unsigned char *master, size_t master_len, unsigned key_id);

/* output bytes read at time t (ms) */
void ngx_segura_index_feed(ngx_segura_index_t *idx, const unsigned char *p,
    size_t len, uint32_t t);

/* the end of the output: the word in progress goes into the set */
void ngx_segura_index_end(ngx_segura_index_t *idx);

/*
 * The set as two PostgreSQL arrays in binary form (array_recv: int8[] of
 * the hashes, int4[] of the times, same order), for parameters of format
 * 1 typed by "$n::bigint[]" and "$n::int[]"; malloc()ed, the caller frees
 * both.  The set is emptied.  0, or -1 when out of memory (the set is
 * emptied too).
 */
int ngx_segura_index_take(ngx_segura_index_t *idx, unsigned char **words,
    size_t *words_len, unsigned char **times, size_t *times_len);

/* whether the chunk should be cut: its set holds NGX_SEGURA_INDEX_CUT */
#define ngx_segura_index_full(idx)  ((idx)->n >= NGX_SEGURA_INDEX_CUT)

/* empties the set (a dropped chunk) */
void ngx_segura_index_clear(ngx_segura_index_t *idx);

/* frees the set's memory (an idle session keeps none) */
void ngx_segura_index_release(ngx_segura_index_t *idx);

/* releases and wipes the key and the scanner */
void ngx_segura_index_free(ngx_segura_index_t *idx);


#endif /* _NGX_SEGURA_INDEX_H_INCLUDED_ */
