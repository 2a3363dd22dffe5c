
/*
 * Copyright (C) ngx_segura_module authors
 */


/*
 * The vault: authenticated encryption of secrets at rest (AES-256-GCM), the
 * CSPRNG, SHA-256 and constant-time comparison, all through OpenSSL.
 *
 * Either thread may call it (event loop or pool thread): no globals, no
 * logging, and OpenSSL's thread-local error queue is cleared before a
 * failure returns, so a later libpq or nginx SSL call in the same thread
 * does not pick up our errors.
 */


#include <limits.h>
#include <string.h>

#include <openssl/crypto.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/rand.h>

#include "ngx_segura_vault.h"


#define NGX_SEGURA_VAULT_HEADER_LEN  (1 + NGX_SEGURA_VAULT_NONCE_LEN)


static int ngx_segura_vault_fail(ngx_segura_vault_err_e *err,
    ngx_segura_vault_err_e reason);


static const char  *ngx_segura_vault_errors[] = {
    "ok",
    "bad_argument",
    "bad_length",
    "wrong_key_id",
    "auth_failed",
    "crypto_error"
};


const char *
ngx_segura_vault_strerror(ngx_segura_vault_err_e err)
{
    if ((unsigned) err
        >= sizeof(ngx_segura_vault_errors) / sizeof(ngx_segura_vault_errors[0]))
    {
        return "unknown";
    }

    return ngx_segura_vault_errors[err];
}


size_t
ngx_segura_vault_sealed_size(size_t plain_len)
{
    if (plain_len > NGX_SEGURA_VAULT_MAX_PLAIN) {
        return 0;
    }

    return plain_len + NGX_SEGURA_VAULT_OVERHEAD;
}


size_t
ngx_segura_vault_opened_size(size_t blob_len)
{
    if (blob_len < NGX_SEGURA_VAULT_OVERHEAD) {
        return 0;
    }

    return blob_len - NGX_SEGURA_VAULT_OVERHEAD;
}


int
ngx_segura_vault_key_id(const unsigned char *blob, size_t blob_len)
{
    if (blob == NULL || blob_len < NGX_SEGURA_VAULT_OVERHEAD) {
        return -1;
    }

    return blob[0];
}


int
ngx_segura_vault_seal(const unsigned char key[NGX_SEGURA_VAULT_KEY_LEN],
    unsigned key_id, const void *aad, size_t aad_len,
    const unsigned char *plain, size_t plain_len, unsigned char *out,
    ngx_segura_vault_err_e *err)
{
    int                      n, ok;
    unsigned char            id;
    unsigned char           *nonce, *ct, *tag;
    EVP_CIPHER_CTX          *ctx;

    if (key == NULL || out == NULL || key_id > 255
        || (plain == NULL && plain_len != 0)
        || (aad == NULL && aad_len != 0))
    {
        return ngx_segura_vault_fail(err, NGX_SEGURA_VAULT_BAD_ARGUMENT);
    }

    if (plain_len > NGX_SEGURA_VAULT_MAX_PLAIN
        || aad_len > NGX_SEGURA_VAULT_MAX_AAD)
    {
        return ngx_segura_vault_fail(err, NGX_SEGURA_VAULT_BAD_LENGTH);
    }

    id = (unsigned char) key_id;
    nonce = out + 1;
    ct = out + NGX_SEGURA_VAULT_HEADER_LEN;
    tag = ct + plain_len;

    out[0] = id;

    if (RAND_bytes(nonce, NGX_SEGURA_VAULT_NONCE_LEN) != 1) {
        OPENSSL_cleanse(out, plain_len + NGX_SEGURA_VAULT_OVERHEAD);
        return ngx_segura_vault_fail(err, NGX_SEGURA_VAULT_CRYPTO_ERROR);
    }

    ctx = EVP_CIPHER_CTX_new();
    if (ctx == NULL) {
        OPENSSL_cleanse(out, plain_len + NGX_SEGURA_VAULT_OVERHEAD);
        return ngx_segura_vault_fail(err, NGX_SEGURA_VAULT_CRYPTO_ERROR);
    }

    /*
     * The default GCM IV length is 12 bytes, so no EVP_CTRL_GCM_SET_IVLEN.
     * Associated data: the key id byte, then the caller's aad; GCM hashes
     * the concatenation, and the fixed 1-byte prefix keeps it unambiguous.
     */

    ok = EVP_EncryptInit_ex(ctx, EVP_aes_256_gcm(), NULL, key, nonce) == 1
         && EVP_EncryptUpdate(ctx, NULL, &n, &id, 1) == 1
         && (aad_len == 0
             || EVP_EncryptUpdate(ctx, NULL, &n, aad, (int) aad_len) == 1)
         && (plain_len == 0
             || (EVP_EncryptUpdate(ctx, ct, &n, plain, (int) plain_len) == 1
                 && (size_t) n == plain_len))
         && EVP_EncryptFinal_ex(ctx, ct + plain_len, &n) == 1
         && n == 0
         && EVP_CIPHER_CTX_ctrl(ctx, EVP_CTRL_GCM_GET_TAG,
                                NGX_SEGURA_VAULT_TAG_LEN, tag) == 1;

    /* EVP_CIPHER_CTX_free() wipes the expanded key schedule */
    EVP_CIPHER_CTX_free(ctx);

    if (!ok) {
        OPENSSL_cleanse(out, plain_len + NGX_SEGURA_VAULT_OVERHEAD);
        return ngx_segura_vault_fail(err, NGX_SEGURA_VAULT_CRYPTO_ERROR);
    }

    if (err != NULL) {
        *err = NGX_SEGURA_VAULT_OK;
    }

    return 0;
}


int
ngx_segura_vault_open(const unsigned char key[NGX_SEGURA_VAULT_KEY_LEN],
    unsigned key_id_expected, const void *aad, size_t aad_len,
    const unsigned char *blob, size_t blob_len, unsigned char *plain_out,
    size_t *plain_len, ngx_segura_vault_err_e *err)
{
    int                      n, rc;
    size_t                   cap, ct_len;
    unsigned char            tag[NGX_SEGURA_VAULT_TAG_LEN];
    EVP_CIPHER_CTX          *ctx;
    const unsigned char     *nonce, *ct;
    ngx_segura_vault_err_e   reason;

    cap = (plain_len != NULL) ? *plain_len : 0;

    if (plain_len != NULL) {
        *plain_len = 0;
    }

    if (key == NULL || blob == NULL || plain_len == NULL
        || (plain_out == NULL && cap != 0)
        || (aad == NULL && aad_len != 0))
    {
        reason = NGX_SEGURA_VAULT_BAD_ARGUMENT;
        goto failed;
    }

    if (blob_len < NGX_SEGURA_VAULT_OVERHEAD
        || blob_len - NGX_SEGURA_VAULT_OVERHEAD > NGX_SEGURA_VAULT_MAX_PLAIN
        || aad_len > NGX_SEGURA_VAULT_MAX_AAD)
    {
        reason = NGX_SEGURA_VAULT_BAD_LENGTH;
        goto failed;
    }

    ct_len = blob_len - NGX_SEGURA_VAULT_OVERHEAD;

    if (cap < ct_len || (plain_out == NULL && ct_len != 0)) {
        reason = NGX_SEGURA_VAULT_BAD_LENGTH;
        goto failed;
    }

    if (key_id_expected > 255 || blob[0] != key_id_expected) {
        reason = NGX_SEGURA_VAULT_WRONG_KEY_ID;
        goto failed;
    }

    nonce = blob + 1;
    ct = blob + NGX_SEGURA_VAULT_HEADER_LEN;

    /* EVP_CTRL_GCM_SET_TAG takes a non-const pointer */
    memcpy(tag, ct + ct_len, NGX_SEGURA_VAULT_TAG_LEN);

    ctx = EVP_CIPHER_CTX_new();
    if (ctx == NULL) {
        reason = NGX_SEGURA_VAULT_CRYPTO_ERROR;
        goto failed;
    }

    reason = NGX_SEGURA_VAULT_CRYPTO_ERROR;

    if (EVP_DecryptInit_ex(ctx, EVP_aes_256_gcm(), NULL, key, nonce) != 1
        || EVP_DecryptUpdate(ctx, NULL, &n, blob, 1) != 1
        || (aad_len != 0
            && EVP_DecryptUpdate(ctx, NULL, &n, aad, (int) aad_len) != 1)
        || (ct_len != 0
            && (EVP_DecryptUpdate(ctx, plain_out, &n, ct, (int) ct_len) != 1
                || (size_t) n != ct_len))
        || EVP_CIPHER_CTX_ctrl(ctx, EVP_CTRL_GCM_SET_TAG,
                               NGX_SEGURA_VAULT_TAG_LEN, tag) != 1)
    {
        EVP_CIPHER_CTX_free(ctx);
        goto failed;
    }

    /*
     * GCM decrypts before it verifies: plain_out already holds unverified
     * plaintext here, and is wiped below if the tag does not match.
     */

    /* GCM's final step writes no bytes; tag is only a valid pointer */
    rc = EVP_DecryptFinal_ex(ctx, tag, &n);
    EVP_CIPHER_CTX_free(ctx);

    if (rc != 1 || n != 0) {
        reason = NGX_SEGURA_VAULT_AUTH_FAILED;
        goto failed;
    }

    *plain_len = ct_len;

    if (err != NULL) {
        *err = NGX_SEGURA_VAULT_OK;
    }

    return 0;

failed:

    if (plain_out != NULL && cap != 0) {
        OPENSSL_cleanse(plain_out, cap);
    }

    return ngx_segura_vault_fail(err, reason);
}


int
ngx_segura_vault_random(unsigned char *buf, size_t n)
{
    size_t  chunk;

    if (buf == NULL && n != 0) {
        return -1;
    }

    while (n != 0) {
        chunk = (n > INT_MAX) ? INT_MAX : n;

        if (RAND_bytes(buf, (int) chunk) != 1) {
            OPENSSL_cleanse(buf, n);
            ERR_clear_error();
            return -1;
        }

        buf += chunk;
        n -= chunk;
    }

    return 0;
}


int
ngx_segura_vault_equal(const void *a, const void *b, size_t n)
{
    if (n == 0) {
        return 1;
    }

    if (a == NULL || b == NULL) {
        return 0;
    }

    return CRYPTO_memcmp(a, b, n) == 0;
}


int
ngx_segura_vault_sha256(const void *data, size_t len,
    unsigned char out[NGX_SEGURA_VAULT_SHA256_LEN])
{
    unsigned int  n;

    if (out == NULL || (data == NULL && len != 0)) {
        return -1;
    }

    if (EVP_Digest(len ? data : "", len, out, &n, EVP_sha256(), NULL) != 1
        || n != NGX_SEGURA_VAULT_SHA256_LEN)
    {
        OPENSSL_cleanse(out, NGX_SEGURA_VAULT_SHA256_LEN);
        ERR_clear_error();
        return -1;
    }

    return 0;
}


int
ngx_segura_vault_hmac_sha256(const void *key, size_t keylen,
    const void *data, size_t len,
    unsigned char out[NGX_SEGURA_VAULT_SHA256_LEN])
{
    unsigned int  n;

    if (key == NULL || keylen == 0 || keylen > INT_MAX || out == NULL
        || (data == NULL && len != 0))
    {
        return -1;
    }

    if (HMAC(EVP_sha256(), key, (int) keylen,
             len ? data : (const void *) "", len, out, &n)
        == NULL
        || n != NGX_SEGURA_VAULT_SHA256_LEN)
    {
        OPENSSL_cleanse(out, NGX_SEGURA_VAULT_SHA256_LEN);
        ERR_clear_error();
        return -1;
    }

    return 0;
}


static int
ngx_segura_vault_fail(ngx_segura_vault_err_e *err,
    ngx_segura_vault_err_e reason)
{
    ERR_clear_error();

    if (err != NULL) {
        *err = reason;
    }

    return -1;
}
