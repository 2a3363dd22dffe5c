
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
 * chunk, a Bloom filter of the distinct words of its output, each word as
 * a keyed hash.  The hash is SipHash-2-4 under a 128-bit key derived from
 * a master key (HMAC-SHA-256 of the label NGX_SEGURA_INDEX_LABEL,
 * truncated), a signed 64-bit integer.  Without the master key a filter
 * tells nothing of its words; with it, a search hashes its words the same
 * way and tests their bits.
 *
 * The filter: m bits, NGX_SEGURA_INDEX_BITS per distinct word of the chunk
 * (one byte a word: about 2 % false positives with NGX_SEGURA_INDEX_K bits
 * per word), at least NGX_SEGURA_INDEX_MIN_BITS.  A word of hash h sets
 * the bits (h1 + i * h2) mod m, i = 0 .. K - 1, where h1 is h's low 32 bits and h2
 * its high 32 bits with the lowest bit set (unsigned, 64-bit arithmetic);
 * bit b is bit (b mod 8) of byte b / 8, the least significant first, as
 * PostgreSQL's get_bit() reads a bytea.
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

#define NGX_SEGURA_INDEX_K         6
#define NGX_SEGURA_INDEX_BITS      8       /* per word, a multiple of 8 */
#define NGX_SEGURA_INDEX_MIN_BITS  64


typedef struct {
    ngx_segura_words_t   ws;
    unsigned char        key[NGX_SEGURA_INDEX_KEY_LEN];
    unsigned             key_id;

    /*
     * The set: open addressing on a fast hash of the word under a secret
     * seed (cheap, 0 is an empty slot), so that a word seen before in the
     * chunk costs no SipHash; hash is the keyed hash the filter is made of.
     */
    uint64_t             seed;
    uint64_t            *cheap;
    uint64_t            *hash;
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

/* output bytes read at time t (ms; the index keeps no time) */
void ngx_segura_index_feed(ngx_segura_index_t *idx, const unsigned char *p,
    size_t len, uint32_t t);

/* the end of the output: the word in progress goes into the set */
void ngx_segura_index_end(ngx_segura_index_t *idx);

/*
 * The set as its Bloom filter, the bytes of a bytea (a parameter of format
 * 1); malloc()ed, the caller frees it.  An empty set gives NULL and 0 (the
 * chunk's filter is null).  The set is emptied.  0, or -1 when out of
 * memory (the set is emptied too).
 */
int ngx_segura_index_take(ngx_segura_index_t *idx, unsigned char **filter,
    size_t *len);

/* the filter's bytes for n distinct words */
size_t ngx_segura_index_filter_len(size_t n);

/* h1 and h2 of a hash (see above) */
void ngx_segura_index_halves(int64_t h, uint64_t *h1, uint64_t *h2);

/* whether a filter may hold a word of hash h (1), or does not (0) */
int ngx_segura_index_maybe(const unsigned char *filter, size_t len,
    int64_t h);

/* whether the chunk should be cut: its set holds NGX_SEGURA_INDEX_CUT */
#define ngx_segura_index_full(idx)  ((idx)->n >= NGX_SEGURA_INDEX_CUT)

/* empties the set (a dropped chunk) */
void ngx_segura_index_clear(ngx_segura_index_t *idx);

/* frees the set's memory (an idle session keeps none) */
void ngx_segura_index_release(ngx_segura_index_t *idx);

/* releases and wipes the key and the scanner */
void ngx_segura_index_free(ngx_segura_index_t *idx);


#endif /* _NGX_SEGURA_INDEX_H_INCLUDED_ */
