
/*
 * Copyright (C) ngx_segura_module authors
 */


#ifndef _NGX_SEGURA_VAULT_H_INCLUDED_
#define _NGX_SEGURA_VAULT_H_INCLUDED_


#include <stddef.h>


/*
 * Secrets at rest: AES-256-GCM (OpenSSL EVP) with a fresh random 96-bit
 * nonce per value.  A sealed blob is
 *
 *     key_id (1) | nonce (12) | ciphertext (n) | tag (16)
 *
 * The key id byte and the caller's associated data (for example
 * "ssh_keys/42/private_key") are both authenticated, so a blob cannot be
 * moved to another row or column, nor relabelled with another key id.
 *
 * Plain C, no nginx types, no globals, no logging: every function may be
 * called from any thread, concurrently.  OpenSSL's per-thread error queue is
 * left empty on return.
 */


#define NGX_SEGURA_VAULT_KEY_LEN       32
#define NGX_SEGURA_VAULT_NONCE_LEN     12
#define NGX_SEGURA_VAULT_TAG_LEN       16
#define NGX_SEGURA_VAULT_SHA256_LEN    32
#define NGX_SEGURA_VAULT_OVERHEAD                                            \
    (1 + NGX_SEGURA_VAULT_NONCE_LEN + NGX_SEGURA_VAULT_TAG_LEN)

/* bounds for one value and for its associated data (EVP takes int) */
#define NGX_SEGURA_VAULT_MAX_PLAIN     (16 * 1024 * 1024)
#define NGX_SEGURA_VAULT_MAX_AAD       4096


typedef enum {
    NGX_SEGURA_VAULT_OK = 0,
    NGX_SEGURA_VAULT_BAD_ARGUMENT,     /* NULL pointer, key id > 255 */
    NGX_SEGURA_VAULT_BAD_LENGTH,       /* blob < 29, value/aad too long,
                                          output buffer too small */
    NGX_SEGURA_VAULT_WRONG_KEY_ID,     /* blob sealed under another key */
    NGX_SEGURA_VAULT_AUTH_FAILED,      /* tampered, wrong key or wrong aad */
    NGX_SEGURA_VAULT_CRYPTO_ERROR      /* OpenSSL failed (RNG, allocation) */
} ngx_segura_vault_err_e;


/* "bad_argument", "bad_length", ...; never NULL */
const char *ngx_segura_vault_strerror(ngx_segura_vault_err_e err);

/* plain_len + 29; 0 if plain_len exceeds NGX_SEGURA_VAULT_MAX_PLAIN */
size_t ngx_segura_vault_sealed_size(size_t plain_len);

/* blob_len - 29: the plaintext length of a blob; 0 if blob_len < 29 */
size_t ngx_segura_vault_opened_size(size_t blob_len);

/* the key id of a blob (to pick the master key), or -1 if too short */
int ngx_segura_vault_key_id(const unsigned char *blob, size_t blob_len);

/*
 * Encrypts plain[0 .. plain_len) into out, which must hold
 * ngx_segura_vault_sealed_size(plain_len) bytes and must not overlap plain.
 * plain may be NULL when plain_len is 0; aad may be NULL when aad_len is 0.
 * Returns 0, or -1 with *err set (err may be NULL); on failure out is wiped.
 */
int ngx_segura_vault_seal(const unsigned char key[NGX_SEGURA_VAULT_KEY_LEN],
    unsigned key_id, const void *aad, size_t aad_len,
    const unsigned char *plain, size_t plain_len, unsigned char *out,
    ngx_segura_vault_err_e *err);

/*
 * Checks and decrypts blob.  *plain_len is in/out: the size of plain_out on
 * entry (at least ngx_segura_vault_opened_size(blob_len)), the plaintext
 * length on success.  plain_out must not overlap blob.  Returns 0, or -1
 * with *err set (err may be NULL); on every failure the whole plain_out
 * buffer (its entry size) is wiped and *plain_len is set to 0.
 *
 * The caller owns plain_out and must OPENSSL_cleanse() it after use.
 */
int ngx_segura_vault_open(const unsigned char key[NGX_SEGURA_VAULT_KEY_LEN],
    unsigned key_id_expected, const void *aad, size_t aad_len,
    const unsigned char *blob, size_t blob_len, unsigned char *plain_out,
    size_t *plain_len, ngx_segura_vault_err_e *err);

/* n bytes from OpenSSL's CSPRNG; 0 or -1 (buf is wiped on failure) */
int ngx_segura_vault_random(unsigned char *buf, size_t n);

/* 1 if a[0 .. n) equals b[0 .. n), else 0; time depends on n only */
int ngx_segura_vault_equal(const void *a, const void *b, size_t n);

/* SHA-256 of data[0 .. len) into out; 0 or -1 */
int ngx_segura_vault_sha256(const void *data, size_t len,
    unsigned char out[NGX_SEGURA_VAULT_SHA256_LEN]);
/* HMAC-SHA-256 of data under key; 0 or -1 */
int ngx_segura_vault_hmac_sha256(const void *key, size_t keylen,
    const void *data, size_t len,
    unsigned char out[NGX_SEGURA_VAULT_SHA256_LEN]);


#endif /* _NGX_SEGURA_VAULT_H_INCLUDED_ */
