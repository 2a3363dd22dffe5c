
/*
 * Copyright (C) ngx_segura_module authors
 */


/*
 * Unit tests of ngx_segura_vault.c: AES-256-GCM sealing of secrets at rest,
 * the CSPRNG, SHA-256 and constant-time comparison.  SEGURA_SEED=<n> replays
 * the random loop.
 */


#define _GNU_SOURCE

#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <cmocka.h>

#include "ngx_segura_vault.h"


#define TV_AAD        "ssh_keys/42/private_key"
#define TV_AAD_LEN    (sizeof(TV_AAD) - 1)
#define TV_MAX_RANDOM (64 * 1024)
#define TV_ROUNDS     300


static const unsigned char  tv_key[32] = {
    0x00, 0x01, 0x02, 0x03, 0x04, 0x05, 0x06, 0x07,
    0x08, 0x09, 0x0a, 0x0b, 0x0c, 0x0d, 0x0e, 0x0f,
    0x10, 0x11, 0x12, 0x13, 0x14, 0x15, 0x16, 0x17,
    0x18, 0x19, 0x1a, 0x1b, 0x1c, 0x1d, 0x1e, 0x1f
};

static const unsigned char  tv_plain[] =
    "-----BEGIN OPENSSH PRIVATE KEY-----\nnot really\n";


static int
tv_all(const unsigned char *p, size_t n, unsigned char c)
{
    size_t  i;

    for (i = 0; i < n; i++) {
        if (p[i] != c) {
            return 0;
        }
    }

    return 1;
}


static unsigned char *
tv_seal(const unsigned char *key, unsigned id, const void *aad,
    size_t aad_len, const unsigned char *plain, size_t len, size_t *blob_len)
{
    unsigned char           *blob;
    ngx_segura_vault_err_e   err;

    *blob_len = ngx_segura_vault_sealed_size(len);
    assert_int_equal(*blob_len, len + 29);

    blob = malloc(*blob_len);
    assert_non_null(blob);

    assert_int_equal(ngx_segura_vault_seal(key, id, aad, aad_len, plain, len,
                                           blob, &err), 0);
    assert_int_equal(err, NGX_SEGURA_VAULT_OK);
    assert_int_equal(blob[0], id);

    return blob;
}


/* opens blob expecting failure with reason; checks that out is wiped */
static void
tv_open_fails(const unsigned char *key, unsigned id, const void *aad,
    size_t aad_len, const unsigned char *blob, size_t blob_len,
    ngx_segura_vault_err_e reason)
{
    size_t                   cap, len;
    unsigned char           *out;
    ngx_segura_vault_err_e   err;

    cap = blob_len + 8;
    out = malloc(cap);
    assert_non_null(out);
    memset(out, 0xa5, cap);

    len = cap;
    err = NGX_SEGURA_VAULT_OK;

    assert_int_equal(ngx_segura_vault_open(key, id, aad, aad_len, blob,
                                           blob_len, out, &len, &err), -1);
    assert_int_equal(err, reason);
    assert_int_equal(len, 0);
    assert_true(tv_all(out, cap, 0));

    free(out);
}


static void
test_sizes(void **state)
{
    unsigned char  blob[29];

    (void) state;

    assert_int_equal(NGX_SEGURA_VAULT_OVERHEAD, 29);
    assert_int_equal(ngx_segura_vault_sealed_size(0), 29);
    assert_int_equal(ngx_segura_vault_sealed_size(100), 129);
    assert_int_equal(ngx_segura_vault_sealed_size(NGX_SEGURA_VAULT_MAX_PLAIN
                                                  + 1), 0);
    assert_int_equal(ngx_segura_vault_opened_size(28), 0);
    assert_int_equal(ngx_segura_vault_opened_size(29), 0);
    assert_int_equal(ngx_segura_vault_opened_size(129), 100);

    memset(blob, 7, sizeof(blob));
    assert_int_equal(ngx_segura_vault_key_id(blob, 28), -1);
    assert_int_equal(ngx_segura_vault_key_id(NULL, 29), -1);
    assert_int_equal(ngx_segura_vault_key_id(blob, 29), 7);

    assert_string_equal(ngx_segura_vault_strerror(NGX_SEGURA_VAULT_OK), "ok");
    assert_string_equal(ngx_segura_vault_strerror(
                            NGX_SEGURA_VAULT_AUTH_FAILED), "auth_failed");
    assert_string_equal(ngx_segura_vault_strerror(
                            NGX_SEGURA_VAULT_CRYPTO_ERROR), "crypto_error");
    assert_string_equal(ngx_segura_vault_strerror(
                            (ngx_segura_vault_err_e) 99), "unknown");
}


static void
test_round_trip(void **state)
{
    size_t          blob_len, len;
    unsigned char  *blob, out[sizeof(tv_plain)];

    (void) state;

    blob = tv_seal(tv_key, 3, TV_AAD, TV_AAD_LEN, tv_plain, sizeof(tv_plain),
                   &blob_len);

    /* the plaintext does not appear in the blob */
    assert_null(memmem(blob, blob_len, "OPENSSH", 7));

    len = sizeof(out);
    assert_int_equal(ngx_segura_vault_open(tv_key, 3, TV_AAD, TV_AAD_LEN,
                                           blob, blob_len, out, &len, NULL),
                     0);
    assert_int_equal(len, sizeof(tv_plain));
    assert_memory_equal(out, tv_plain, len);

    free(blob);
}


static void
test_empty(void **state)
{
    size_t          blob_len, len;
    unsigned char  *blob;

    (void) state;

    /* empty value, no aad: still authenticated */
    blob = tv_seal(tv_key, 0, NULL, 0, NULL, 0, &blob_len);
    assert_int_equal(blob_len, 29);

    len = 0;
    assert_int_equal(ngx_segura_vault_open(tv_key, 0, NULL, 0, blob, blob_len,
                                           NULL, &len, NULL), 0);
    assert_int_equal(len, 0);

    blob[28] ^= 1;
    len = 0;
    assert_int_equal(ngx_segura_vault_open(tv_key, 0, NULL, 0, blob, blob_len,
                                           NULL, &len, NULL), -1);

    free(blob);
}


static void
test_tamper_regions(void **state)
{
    size_t          blob_len, i;
    unsigned char  *blob;

    (void) state;

    blob = tv_seal(tv_key, 1, TV_AAD, TV_AAD_LEN, tv_plain, sizeof(tv_plain),
                   &blob_len);

    for (i = 0; i < blob_len; i++) {
        blob[i] ^= 0x01;

        if (i == 0) {
            /* key id: refused before decryption ... */
            tv_open_fails(tv_key, 1, TV_AAD, TV_AAD_LEN, blob, blob_len,
                          NGX_SEGURA_VAULT_WRONG_KEY_ID);

            /* ... and authenticated: relabelling the blob does not work */
            tv_open_fails(tv_key, 0, TV_AAD, TV_AAD_LEN, blob, blob_len,
                          NGX_SEGURA_VAULT_AUTH_FAILED);

        } else {
            /* nonce 1..12, ciphertext, tag: every byte is covered */
            tv_open_fails(tv_key, 1, TV_AAD, TV_AAD_LEN, blob, blob_len,
                          NGX_SEGURA_VAULT_AUTH_FAILED);
        }

        blob[i] ^= 0x01;
    }

    /* flipping the high bit of the last tag byte too */
    blob[blob_len - 1] ^= 0x80;
    tv_open_fails(tv_key, 1, TV_AAD, TV_AAD_LEN, blob, blob_len,
                  NGX_SEGURA_VAULT_AUTH_FAILED);
    blob[blob_len - 1] ^= 0x80;

    /* truncated and extended blobs */
    tv_open_fails(tv_key, 1, TV_AAD, TV_AAD_LEN, blob, blob_len - 1,
                  NGX_SEGURA_VAULT_AUTH_FAILED);
    tv_open_fails(tv_key, 1, TV_AAD, TV_AAD_LEN, blob, 28,
                  NGX_SEGURA_VAULT_BAD_LENGTH);
    tv_open_fails(tv_key, 1, TV_AAD, TV_AAD_LEN, blob, 0,
                  NGX_SEGURA_VAULT_BAD_LENGTH);

    free(blob);
}


static void
test_wrong_aad(void **state)
{
    size_t          blob_len;
    unsigned char  *blob;

    (void) state;

    blob = tv_seal(tv_key, 1, TV_AAD, TV_AAD_LEN, tv_plain, sizeof(tv_plain),
                   &blob_len);

    /* another row, another column, a prefix, nothing */
    tv_open_fails(tv_key, 1, "ssh_keys/43/private_key", TV_AAD_LEN,
                  blob, blob_len, NGX_SEGURA_VAULT_AUTH_FAILED);
    tv_open_fails(tv_key, 1, "ssh_keys/42/passphrase",
                  sizeof("ssh_keys/42/passphrase") - 1,
                  blob, blob_len, NGX_SEGURA_VAULT_AUTH_FAILED);
    tv_open_fails(tv_key, 1, TV_AAD, TV_AAD_LEN - 1,
                  blob, blob_len, NGX_SEGURA_VAULT_AUTH_FAILED);
    tv_open_fails(tv_key, 1, NULL, 0,
                  blob, blob_len, NGX_SEGURA_VAULT_AUTH_FAILED);

    free(blob);
}


static void
test_wrong_key(void **state)
{
    size_t          blob_len;
    unsigned char  *blob, key[32];

    (void) state;

    blob = tv_seal(tv_key, 1, TV_AAD, TV_AAD_LEN, tv_plain, sizeof(tv_plain),
                   &blob_len);

    memcpy(key, tv_key, sizeof(key));
    key[31] ^= 0x80;

    tv_open_fails(key, 1, TV_AAD, TV_AAD_LEN, blob, blob_len,
                  NGX_SEGURA_VAULT_AUTH_FAILED);

    free(blob);
}


static void
test_nonce_fresh(void **state)
{
    size_t          a_len, b_len;
    unsigned char  *a, *b;

    (void) state;

    a = tv_seal(tv_key, 1, TV_AAD, TV_AAD_LEN, tv_plain, sizeof(tv_plain),
                &a_len);
    b = tv_seal(tv_key, 1, TV_AAD, TV_AAD_LEN, tv_plain, sizeof(tv_plain),
                &b_len);

    assert_int_equal(a_len, b_len);
    assert_memory_not_equal(a + 1, b + 1, 12);
    assert_memory_not_equal(a + 13, b + 13, a_len - 13);

    free(a);
    free(b);
}


static void
test_bad_arguments(void **state)
{
    size_t                   blob_len, len;
    unsigned char           *blob, out[sizeof(tv_plain)];
    unsigned char            big[64];
    ngx_segura_vault_err_e   err;

    (void) state;

    assert_int_equal(ngx_segura_vault_seal(tv_key, 256, NULL, 0, tv_plain, 4,
                                           big, &err), -1);
    assert_int_equal(err, NGX_SEGURA_VAULT_BAD_ARGUMENT);

    assert_int_equal(ngx_segura_vault_seal(NULL, 1, NULL, 0, tv_plain, 4,
                                           big, &err), -1);
    assert_int_equal(err, NGX_SEGURA_VAULT_BAD_ARGUMENT);

    assert_int_equal(ngx_segura_vault_seal(tv_key, 1, NULL, 5, tv_plain, 4,
                                           big, &err), -1);
    assert_int_equal(err, NGX_SEGURA_VAULT_BAD_ARGUMENT);

    assert_int_equal(ngx_segura_vault_seal(tv_key, 1, NULL, 0, NULL, 4,
                                           big, NULL), -1);

    assert_int_equal(ngx_segura_vault_seal(tv_key, 1, TV_AAD,
                                           NGX_SEGURA_VAULT_MAX_AAD + 1,
                                           tv_plain, 4, big, &err), -1);
    assert_int_equal(err, NGX_SEGURA_VAULT_BAD_LENGTH);

    blob = tv_seal(tv_key, 1, TV_AAD, TV_AAD_LEN, tv_plain, sizeof(tv_plain),
                   &blob_len);

    /* output buffer one byte short: refused, and wiped */
    memset(out, 0x5a, sizeof(out));
    len = sizeof(out) - 1;
    assert_int_equal(ngx_segura_vault_open(tv_key, 1, TV_AAD, TV_AAD_LEN,
                                           blob, blob_len, out, &len, &err),
                     -1);
    assert_int_equal(err, NGX_SEGURA_VAULT_BAD_LENGTH);
    assert_int_equal(len, 0);
    assert_true(tv_all(out, sizeof(out) - 1, 0));

    assert_int_equal(ngx_segura_vault_open(tv_key, 1, TV_AAD, TV_AAD_LEN,
                                           blob, blob_len, out, NULL, &err),
                     -1);
    assert_int_equal(err, NGX_SEGURA_VAULT_BAD_ARGUMENT);

    len = sizeof(out);
    assert_int_equal(ngx_segura_vault_open(tv_key, 300, TV_AAD, TV_AAD_LEN,
                                           blob, blob_len, out, &len, &err),
                     -1);
    assert_int_equal(err, NGX_SEGURA_VAULT_WRONG_KEY_ID);

    free(blob);
}


static uint64_t
tv_next(uint64_t *s)
{
    /* splitmix64: a reproducible stream for lengths and contents */
    uint64_t  z;

    z = (*s += 0x9e3779b97f4a7c15ULL);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;

    return z ^ (z >> 31);
}


#define TV_CHECK(cond)                                                       \
    do {                                                                     \
        if (!(cond)) {                                                       \
            print_error("random loop failed at round %u: %s "               \
                        "(replay with SEGURA_SEED=%llu)\n",                  \
                        round, #cond, (unsigned long long) seed);            \
            fail();                                                          \
        }                                                                    \
    } while (0)


static void
test_random_loop(void **state)
{
    char                    *env;
    size_t                   len, aad_len, blob_len, out_len, i, pos;
    uint64_t                 seed, s;
    unsigned                 round, id;
    unsigned char           *plain, *blob, *out, key[32], aad[64];
    ngx_segura_vault_err_e   err;

    (void) state;

    env = getenv("SEGURA_SEED");
    seed = (env != NULL) ? strtoull(env, NULL, 10)
                         : (uint64_t) time(NULL) ^ ((uint64_t) getpid() << 32);
    s = seed;

    plain = malloc(TV_MAX_RANDOM + 1);
    blob = malloc(TV_MAX_RANDOM + 1 + 29);
    out = malloc(TV_MAX_RANDOM + 1);
    assert_non_null(plain);
    assert_non_null(blob);
    assert_non_null(out);

    for (round = 0; round < TV_ROUNDS; round++) {
        len = tv_next(&s) % (TV_MAX_RANDOM + 1);
        aad_len = tv_next(&s) % (sizeof(aad) + 1);
        id = tv_next(&s) & 0xff;

        for (i = 0; i < sizeof(key); i++) {
            key[i] = (unsigned char) tv_next(&s);
        }

        for (i = 0; i < aad_len; i++) {
            aad[i] = (unsigned char) tv_next(&s);
        }

        for (i = 0; i < len; i++) {
            plain[i] = (unsigned char) tv_next(&s);
        }

        blob_len = ngx_segura_vault_sealed_size(len);
        TV_CHECK(blob_len == len + 29);
        TV_CHECK(ngx_segura_vault_seal(key, id, aad, aad_len, plain, len,
                                       blob, &err) == 0);

        out_len = len;
        TV_CHECK(ngx_segura_vault_open(key, id, aad, aad_len, blob, blob_len,
                                       out, &out_len, &err) == 0);
        TV_CHECK(out_len == len);
        TV_CHECK(len == 0 || memcmp(out, plain, len) == 0);

        /* one random bit flipped anywhere must be caught */
        pos = tv_next(&s) % blob_len;
        blob[pos] ^= (unsigned char) (1u << (tv_next(&s) % 8));

        out_len = len;
        TV_CHECK(ngx_segura_vault_open(key, id, aad, aad_len, blob, blob_len,
                                       out, &out_len, &err) == -1);
        TV_CHECK(err == (pos == 0 ? NGX_SEGURA_VAULT_WRONG_KEY_ID
                                  : NGX_SEGURA_VAULT_AUTH_FAILED));
        TV_CHECK(out_len == 0);
        TV_CHECK(tv_all(out, len, 0));
    }

    free(plain);
    free(blob);
    free(out);
}


static void
test_random(void **state)
{
    unsigned char  a[32], b[32];

    (void) state;

    assert_int_equal(ngx_segura_vault_random(a, sizeof(a)), 0);
    assert_int_equal(ngx_segura_vault_random(b, sizeof(b)), 0);
    assert_memory_not_equal(a, b, sizeof(a));

    assert_int_equal(ngx_segura_vault_random(NULL, 0), 0);
    assert_int_equal(ngx_segura_vault_random(NULL, 1), -1);
}


static void
test_equal(void **state)
{
    (void) state;

    assert_int_equal(ngx_segura_vault_equal("abcd", "abcd", 4), 1);
    assert_int_equal(ngx_segura_vault_equal("abcd", "abce", 4), 0);
    assert_int_equal(ngx_segura_vault_equal("xbcd", "abcd", 4), 0);
    assert_int_equal(ngx_segura_vault_equal("abcd", "abce", 3), 1);
    assert_int_equal(ngx_segura_vault_equal(NULL, NULL, 0), 1);
    assert_int_equal(ngx_segura_vault_equal(NULL, "a", 1), 0);
}


static void
test_sha256(void **state)
{
    unsigned char  md[32];

    /* FIPS 180-2 test vectors */
    static const unsigned char  abc[32] = {
        0xba, 0x78, 0x16, 0xbf, 0x8f, 0x01, 0xcf, 0xea,
        0x41, 0x41, 0x40, 0xde, 0x5d, 0xae, 0x22, 0x23,
        0xb0, 0x03, 0x61, 0xa3, 0x96, 0x17, 0x7a, 0x9c,
        0xb4, 0x10, 0xff, 0x61, 0xf2, 0x00, 0x15, 0xad
    };
    static const unsigned char  empty[32] = {
        0xe3, 0xb0, 0xc4, 0x42, 0x98, 0xfc, 0x1c, 0x14,
        0x9a, 0xfb, 0xf4, 0xc8, 0x99, 0x6f, 0xb9, 0x24,
        0x27, 0xae, 0x41, 0xe4, 0x64, 0x9b, 0x93, 0x4c,
        0xa4, 0x95, 0x99, 0x1b, 0x78, 0x52, 0xb8, 0x55
    };

    (void) state;

    assert_int_equal(ngx_segura_vault_sha256("abc", 3, md), 0);
    assert_memory_equal(md, abc, 32);

    assert_int_equal(ngx_segura_vault_sha256(NULL, 0, md), 0);
    assert_memory_equal(md, empty, 32);

    assert_int_equal(ngx_segura_vault_sha256(NULL, 1, md), -1);
}


static void
test_hmac_sha256(void **state)
{
    unsigned char  md[32];

    /* RFC 4231, test case 2 */
    static const unsigned char  jefe[32] = {
        0x5b, 0xdc, 0xc1, 0x46, 0xbf, 0x60, 0x75, 0x4e,
        0x6a, 0x04, 0x24, 0x26, 0x08, 0x95, 0x75, 0xc7,
        0x5a, 0x00, 0x3f, 0x08, 0x9d, 0x27, 0x39, 0x83,
        0x9d, 0xec, 0x58, 0xb9, 0x64, 0xec, 0x38, 0x43
    };

    (void) state;

    assert_int_equal(ngx_segura_vault_hmac_sha256("Jefe", 4,
                         "what do ya want for nothing?", 28, md), 0);
    assert_memory_equal(md, jefe, 32);

    assert_int_equal(ngx_segura_vault_hmac_sha256("k", 1, NULL, 0, md), 0);
    assert_int_equal(ngx_segura_vault_hmac_sha256(NULL, 0, "x", 1, md), -1);
    assert_int_equal(ngx_segura_vault_hmac_sha256("k", 1, NULL, 1, md), -1);
}


int
main(void)
{
    const struct CMUnitTest  tests[] = {
        cmocka_unit_test(test_sizes),
        cmocka_unit_test(test_round_trip),
        cmocka_unit_test(test_empty),
        cmocka_unit_test(test_tamper_regions),
        cmocka_unit_test(test_wrong_aad),
        cmocka_unit_test(test_wrong_key),
        cmocka_unit_test(test_nonce_fresh),
        cmocka_unit_test(test_bad_arguments),
        cmocka_unit_test(test_random_loop),
        cmocka_unit_test(test_random),
        cmocka_unit_test(test_equal),
        cmocka_unit_test(test_sha256),
        cmocka_unit_test(test_hmac_sha256),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
