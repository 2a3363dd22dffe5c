
/*
 * Copyright (C) ngx_segura_module authors
 */


/*
 * The blind index of one recording (the contract: ngx_segura_index.h):
 * the word scanner (ngx_segura_words.c) feeds a small open-addressing set
 * of keyed hashes, one set per chunk, that the recorder takes as a Bloom
 * filter sized to the set for the chunk's own insert (sql/018), so that a
 * chunk and its index are one row and never disagree.  The set starts at
 * 64 slots when the first word comes, doubles at 3/4 load up to
 * NGX_SEGURA_INDEX_SLOTS slots (16 bytes each: 32 KiB) and is freed with
 * the recorder's buffer after a quiet second.
 *
 * The set is looked up by a fast multiplicative hash of the word under a
 * secret seed (derived with the key), and SipHash is computed only for a
 * word new in the chunk: most words of a chunk repeat.  Two words whose
 * fast hashes collide in one chunk would keep only the first (64 bits,
 * a seed nobody outside sees).
 *
 * Event loop (the recorder) for an index; the hash functions are pure and
 * may be called from any thread (a search hashes its words in the pool).
 */


#include <stdlib.h>
#include <string.h>

#include "ngx_segura_index.h"
#include "ngx_segura_vault.h"


#define NGX_SEGURA_INDEX_FIRST  64


static void ngx_segura_index_word(void *data, const unsigned char *w,
    size_t len, uint32_t t);
static int ngx_segura_index_grow(ngx_segura_index_t *idx);
static uint64_t ngx_segura_index_cheap(uint64_t seed, const unsigned char *w,
    size_t len);
static void ngx_segura_index_wipe(void *p, size_t n);


#define ROTL(x, b)  (uint64_t) (((x) << (b)) | ((x) >> (64 - (b))))

#define SIPROUND                                                             \
    do {                                                                     \
        v0 += v1; v1 = ROTL(v1, 13); v1 ^= v0; v0 = ROTL(v0, 32);             \
        v2 += v3; v3 = ROTL(v3, 16); v3 ^= v2;                               \
        v0 += v3; v3 = ROTL(v3, 21); v3 ^= v0;                               \
        v2 += v1; v1 = ROTL(v1, 17); v1 ^= v2; v2 = ROTL(v2, 32);             \
    } while (0)


static uint64_t
ngx_segura_index_le64(const unsigned char *p)
{
    return (uint64_t) p[0] | ((uint64_t) p[1] << 8)
           | ((uint64_t) p[2] << 16) | ((uint64_t) p[3] << 24)
           | ((uint64_t) p[4] << 32) | ((uint64_t) p[5] << 40)
           | ((uint64_t) p[6] << 48) | ((uint64_t) p[7] << 56);
}


uint64_t
ngx_segura_index_siphash(const unsigned char k[16], const unsigned char *in,
    size_t len)
{
    size_t    i, left;
    uint64_t  k0, k1, v0, v1, v2, v3, m, b;

    k0 = ngx_segura_index_le64(k);
    k1 = ngx_segura_index_le64(k + 8);

    v0 = k0 ^ 0x736f6d6570736575ULL;
    v1 = k1 ^ 0x646f72616e646f6dULL;
    v2 = k0 ^ 0x6c7967656e657261ULL;
    v3 = k1 ^ 0x7465646279746573ULL;

    for (i = 0; i + 8 <= len; i += 8) {
        m = ngx_segura_index_le64(in + i);
        v3 ^= m;
        SIPROUND;
        SIPROUND;
        v0 ^= m;
    }

    /* the last 0 to 7 bytes, and the length in the top byte */

    b = (uint64_t) len << 56;
    left = len - i;

    while (left > 0) {
        left--;
        b |= (uint64_t) in[i + left] << (8 * left);
    }

    v3 ^= b;
    SIPROUND;
    SIPROUND;
    v0 ^= b;

    v2 ^= 0xff;
    SIPROUND;
    SIPROUND;
    SIPROUND;
    SIPROUND;

    return v0 ^ v1 ^ v2 ^ v3;
}


int
ngx_segura_index_derive(const unsigned char *master, size_t master_len,
    unsigned char key[NGX_SEGURA_INDEX_KEY_LEN])
{
    unsigned char  mac[NGX_SEGURA_VAULT_SHA256_LEN];

    if (ngx_segura_vault_hmac_sha256(master, master_len,
                                     NGX_SEGURA_INDEX_LABEL,
                                     sizeof(NGX_SEGURA_INDEX_LABEL) - 1, mac)
        != 0)
    {
        ngx_segura_index_wipe(mac, sizeof(mac));
        return -1;
    }

    memcpy(key, mac, NGX_SEGURA_INDEX_KEY_LEN);
    ngx_segura_index_wipe(mac, sizeof(mac));

    return 0;
}


int64_t
ngx_segura_index_hash(const unsigned char key[NGX_SEGURA_INDEX_KEY_LEN],
    const unsigned char *w, size_t len)
{
    uint64_t  h;

    h = ngx_segura_index_siphash(key, w, len);

    /* 0 marks an empty slot of the set */

    if (h == 0) {
        h = 1;
    }

    return (int64_t) h;
}


int
ngx_segura_index_init(ngx_segura_index_t *idx, const unsigned char *master,
    size_t master_len, unsigned key_id)
{
    unsigned char  mac[NGX_SEGURA_VAULT_SHA256_LEN];

    memset(idx, 0, sizeof(ngx_segura_index_t));

    /* the key is the MAC's first 16 bytes (as derive), the seed the next 8 */

    if (ngx_segura_vault_hmac_sha256(master, master_len,
                                     NGX_SEGURA_INDEX_LABEL,
                                     sizeof(NGX_SEGURA_INDEX_LABEL) - 1, mac)
        != 0)
    {
        ngx_segura_index_wipe(mac, sizeof(mac));
        return -1;
    }

    memcpy(idx->key, mac, NGX_SEGURA_INDEX_KEY_LEN);
    idx->seed = ngx_segura_index_le64(mac + NGX_SEGURA_INDEX_KEY_LEN);
    ngx_segura_index_wipe(mac, sizeof(mac));

    idx->key_id = key_id;

    ngx_segura_words_init(&idx->ws, ngx_segura_index_word, NULL, idx);

    return 0;
}


void
ngx_segura_index_feed(ngx_segura_index_t *idx, const unsigned char *p,
    size_t len, uint32_t t)
{
    ngx_segura_words_feed(&idx->ws, p, len, t);
}


void
ngx_segura_index_end(ngx_segura_index_t *idx)
{
    ngx_segura_words_end(&idx->ws);
}


static uint64_t
ngx_segura_index_cheap(uint64_t seed, const unsigned char *w, size_t len)
{
    uint64_t  h, m;

    h = seed ^ ((uint64_t) len * 0x9e3779b97f4a7c15ULL);

    while (len >= 8) {
        memcpy(&m, w, 8);
        h = (h ^ m) * 0xff51afd7ed558ccdULL;
        h ^= h >> 32;
        w += 8;
        len -= 8;
    }

    /* the last 0 to 7 bytes, read as 8 (the scanner's buffer has room) */

    m = 0;

    if (len) {
        memcpy(&m, w, 8);
        m &= ~0ULL >> (64 - 8 * len);
    }

    h = (h ^ m) * 0xc4ceb9fe1a85ec53ULL;
    h ^= h >> 29;
    h *= 0xff51afd7ed558ccdULL;
    h ^= h >> 32;

    return h ? h : 1;
}


static void
ngx_segura_index_word(void *data, const unsigned char *w, size_t len,
    uint32_t t)
{
    size_t               i, mask;
    uint64_t             c;
    ngx_segura_index_t  *idx = data;

    (void) t;   /* a hit's time is read from the chunk by the search */

    c = ngx_segura_index_cheap(idx->seed, w, len);

    if (idx->slots) {
        mask = idx->slots - 1;

        for (i = (size_t) c & mask; idx->cheap[i] != 0; i = (i + 1) & mask) {
            if (idx->cheap[i] == c) {
                /* seen in this chunk */
                return;
            }
        }
    }

    if (idx->n >= NGX_SEGURA_INDEX_WORDS) {
        idx->lost++;
        return;
    }

    if (4 * (idx->n + 1) > 3 * idx->slots) {
        if (ngx_segura_index_grow(idx) != 0) {
            idx->lost++;
            return;
        }
    }

    mask = idx->slots - 1;

    for (i = (size_t) c & mask; idx->cheap[i] != 0; i = (i + 1) & mask) {
        /* void */
    }

    idx->cheap[i] = c;
    idx->hash[i] = (uint64_t) ngx_segura_index_hash(idx->key, w, len);
    idx->n++;
}


static int
ngx_segura_index_grow(ngx_segura_index_t *idx)
{
    size_t     slots, i, j, mask;
    uint64_t  *cheap, *hash;

    slots = idx->slots ? idx->slots * 2 : NGX_SEGURA_INDEX_FIRST;

    if (slots > NGX_SEGURA_INDEX_SLOTS) {
        return -1;
    }

    cheap = calloc(slots, sizeof(uint64_t));
    hash = malloc(slots * sizeof(uint64_t));

    if (cheap == NULL || hash == NULL) {
        free(cheap);
        free(hash);
        return -1;
    }

    mask = slots - 1;

    for (i = 0; i < idx->slots; i++) {
        if (idx->cheap[i] == 0) {
            continue;
        }

        for (j = (size_t) idx->cheap[i] & mask; cheap[j] != 0;
             j = (j + 1) & mask)
        {
            /* void */
        }

        cheap[j] = idx->cheap[i];
        hash[j] = idx->hash[i];
    }

    free(idx->cheap);
    free(idx->hash);

    idx->cheap = cheap;
    idx->hash = hash;
    idx->slots = slots;

    return 0;
}


size_t
ngx_segura_index_filter_len(size_t n)
{
    size_t  bits;

    bits = n * NGX_SEGURA_INDEX_BITS;

    if (bits < NGX_SEGURA_INDEX_MIN_BITS) {
        bits = NGX_SEGURA_INDEX_MIN_BITS;
    }

    return (bits + 7) / 8;
}


void
ngx_segura_index_halves(int64_t h, uint64_t *h1, uint64_t *h2)
{
    *h1 = (uint64_t) h & 0xffffffffULL;
    *h2 = ((uint64_t) h >> 32) | 1;
}


int
ngx_segura_index_maybe(const unsigned char *filter, size_t len, int64_t h)
{
    uint64_t  h1, h2, m, b, i;

    if (len == 0) {
        return 0;
    }

    ngx_segura_index_halves(h, &h1, &h2);
    m = (uint64_t) len * 8;

    for (i = 0; i < NGX_SEGURA_INDEX_K; i++) {
        b = (h1 + i * h2) % m;

        if (!(filter[b >> 3] & (1u << (b & 7)))) {
            return 0;
        }
    }

    return 1;
}


int
ngx_segura_index_take(ngx_segura_index_t *idx, unsigned char **filter,
    size_t *len)
{
    size_t          i, j, n;
    uint64_t        h1, h2, m, b;
    unsigned char  *f;

    *filter = NULL;
    *len = 0;

    if (idx->n == 0) {
        return 0;
    }

    n = ngx_segura_index_filter_len(idx->n);

    f = calloc(1, n);

    if (f == NULL) {
        ngx_segura_index_clear(idx);
        return -1;
    }

    m = (uint64_t) n * 8;

    /* (h1 + j * h2) mod m, stepping by h2 mod m: two divisions a word */

    for (i = 0; i < idx->slots; i++) {
        if (idx->cheap[i] == 0) {
            continue;
        }

        ngx_segura_index_halves((int64_t) idx->hash[i], &h1, &h2);
        b = h1 % m;
        h2 %= m;

        for (j = 0; j < NGX_SEGURA_INDEX_K; j++) {
            f[b >> 3] |= (unsigned char) (1u << (b & 7));
            b += h2;
            b = (b >= m) ? b - m : b;
        }
    }

    *filter = f;
    *len = n;

    ngx_segura_index_clear(idx);

    return 0;
}


void
ngx_segura_index_clear(ngx_segura_index_t *idx)
{
    if (idx->slots) {
        memset(idx->cheap, 0, idx->slots * sizeof(uint64_t));
    }

    idx->n = 0;
}


void
ngx_segura_index_release(ngx_segura_index_t *idx)
{
    free(idx->cheap);
    free(idx->hash);

    idx->cheap = NULL;
    idx->hash = NULL;
    idx->slots = 0;
    idx->n = 0;
}


void
ngx_segura_index_free(ngx_segura_index_t *idx)
{
    ngx_segura_index_release(idx);
    ngx_segura_words_wipe(&idx->ws);
    ngx_segura_index_wipe(idx->key, sizeof(idx->key));
}


static void
ngx_segura_index_wipe(void *p, size_t n)
{
    volatile unsigned char  *q = p;

    while (n--) {
        *q++ = 0;
    }
}
