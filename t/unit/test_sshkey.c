
/*
 * Copyright (C) ngx_segura_module authors
 */


/*
 * Unit tests of ngx_segura_sshkey.c: every accepted format and type against
 * "ssh-keygen -lf", and every reason code.  Keys are generated at test time
 * with ssh-keygen and openssl into a temporary directory.  SEGURA_SEED=<n>
 * replays the mutation loop.
 */


#define _GNU_SOURCE

#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <cmocka.h>

#include "ngx_segura_sshkey.h"


#define TK_PASS    "correct horse battery"
#define TK_ROUNDS  400


typedef struct {
    const char  *name;
    const char  *cmd;           /* %s: the output path */
    const char  *passphrase;
    const char  *type;
    unsigned     bits;
    int          keygen_lf;     /* ssh-keygen can fingerprint it */
} tk_key_t;


static char  tk_dir[] = "/tmp/segura-sshkey-XXXXXX";


static const tk_key_t  tk_valid[] = {
    { "rsa_pem", "ssh-keygen -q -t rsa -b 2048 -m PEM -N '' -f %s",
      NULL, "ssh-rsa", 2048, 1 },
    { "rsa_pkcs8", "ssh-keygen -q -t rsa -b 2048 -m PKCS8 -N '' -f %s",
      NULL, "ssh-rsa", 2048, 1 },
    { "rsa_openssh", "ssh-keygen -q -t rsa -b 3072 -N '' -f %s",
      NULL, "ssh-rsa", 3072, 1 },
    { "ed25519", "ssh-keygen -q -t ed25519 -N '' -f %s",
      NULL, "ssh-ed25519", 256, 1 },
    { "ecdsa256", "ssh-keygen -q -t ecdsa -b 256 -N '' -f %s",
      NULL, "ecdsa-sha2-nistp256", 256, 1 },
    { "ecdsa384", "ssh-keygen -q -t ecdsa -b 384 -N '' -f %s",
      NULL, "ecdsa-sha2-nistp384", 384, 1 },
    { "ecdsa521", "ssh-keygen -q -t ecdsa -b 521 -N '' -f %s",
      NULL, "ecdsa-sha2-nistp521", 521, 1 },
    { "ecdsa256_pem", "ssh-keygen -q -t ecdsa -b 256 -m PEM -N '' -f %s",
      NULL, "ecdsa-sha2-nistp256", 256, 1 },
    { "ecdsa384_pkcs8",
      "ssh-keygen -q -t ecdsa -b 384 -m PKCS8 -N '' -f %s",
      NULL, "ecdsa-sha2-nistp384", 384, 1 },

    { "rsa_pem_enc",
      "ssh-keygen -q -t rsa -b 2048 -m PEM -N '" TK_PASS "' -f %s",
      TK_PASS, "ssh-rsa", 2048, 1 },
    { "rsa_pkcs8_enc",
      "ssh-keygen -q -t rsa -b 2048 -m PKCS8 -N '" TK_PASS "' -f %s",
      TK_PASS, "ssh-rsa", 2048, 1 },
    { "rsa_openssh_enc",
      "ssh-keygen -q -t rsa -b 2048 -N '" TK_PASS "' -f %s",
      TK_PASS, "ssh-rsa", 2048, 1 },
    { "ed25519_enc", "ssh-keygen -q -t ed25519 -N '" TK_PASS "' -f %s",
      TK_PASS, "ssh-ed25519", 256, 1 },
    /* the most bcrypt rounds accepted */
    { "ed25519_rounds64",
      "ssh-keygen -q -t ed25519 -a 64 -N '" TK_PASS "' -f %s",
      TK_PASS, "ssh-ed25519", 256, 1 },
    { "ecdsa256_enc",
      "ssh-keygen -q -t ecdsa -b 256 -N '" TK_PASS "' -f %s",
      TK_PASS, "ecdsa-sha2-nistp256", 256, 1 },
    { "ecdsa384_enc",
      "ssh-keygen -q -t ecdsa -b 384 -N '" TK_PASS "' -f %s",
      TK_PASS, "ecdsa-sha2-nistp384", 384, 1 },
    { "ecdsa521_enc",
      "ssh-keygen -q -t ecdsa -b 521 -N '" TK_PASS "' -f %s",
      TK_PASS, "ecdsa-sha2-nistp521", 521, 1 },
    { "ecdsa521_pem_enc",
      "ssh-keygen -q -t ecdsa -b 521 -m PEM -N '" TK_PASS "' -f %s",
      TK_PASS, "ecdsa-sha2-nistp521", 521, 1 },
    { "ecdsa256_pkcs8_enc",
      "ssh-keygen -q -t ecdsa -b 256 -m PKCS8 -N '" TK_PASS "' -f %s",
      TK_PASS, "ecdsa-sha2-nistp256", 256, 1 },
    { "rsa_aes128cbc_enc",
      "ssh-keygen -q -t rsa -b 2048 -Z aes128-cbc -N '" TK_PASS "' -f %s",
      TK_PASS, "ssh-rsa", 2048, 1 },
};


/* keys that are refused for what they are */
typedef struct {
    const char                  *name;
    const char                  *cmd;
    const char                  *passphrase;
    ngx_segura_sshkey_reason_e   reason;
    ngx_segura_sshkey_field_e    field;
} tk_bad_t;


static const tk_bad_t  tk_bad[] = {
    { "dsa_openssh", "ssh-keygen -q -t dsa -N '' -f %s", NULL,
      NGX_SEGURA_SSHKEY_DSA_NOT_SUPPORTED,
      NGX_SEGURA_SSHKEY_FIELD_PRIVATE_KEY },
    { "dsa_pem", "ssh-keygen -q -t dsa -m PEM -N '' -f %s", NULL,
      NGX_SEGURA_SSHKEY_DSA_NOT_SUPPORTED,
      NGX_SEGURA_SSHKEY_FIELD_PRIVATE_KEY },
    { "dsa_pkcs8", "ssh-keygen -q -t dsa -m PKCS8 -N '' -f %s", NULL,
      NGX_SEGURA_SSHKEY_DSA_NOT_SUPPORTED,
      NGX_SEGURA_SSHKEY_FIELD_PRIVATE_KEY },
    /* known from the public half, before the passphrase is asked for */
    { "dsa_openssh_enc",
      "ssh-keygen -q -t dsa -N '" TK_PASS "' -f %s", NULL,
      NGX_SEGURA_SSHKEY_DSA_NOT_SUPPORTED,
      NGX_SEGURA_SSHKEY_FIELD_PRIVATE_KEY },
    { "dsa_pem_enc",
      "ssh-keygen -q -t dsa -m PEM -N '" TK_PASS "' -f %s", TK_PASS,
      NGX_SEGURA_SSHKEY_DSA_NOT_SUPPORTED,
      NGX_SEGURA_SSHKEY_FIELD_PRIVATE_KEY },
    { "rsa1024_pem", "ssh-keygen -q -t rsa -b 1024 -m PEM -N '' -f %s",
      NULL, NGX_SEGURA_SSHKEY_WEAK_KEY,
      NGX_SEGURA_SSHKEY_FIELD_PRIVATE_KEY },
    { "rsa1024_openssh", "ssh-keygen -q -t rsa -b 1024 -N '' -f %s",
      NULL, NGX_SEGURA_SSHKEY_WEAK_KEY,
      NGX_SEGURA_SSHKEY_FIELD_PRIVATE_KEY },
    { "rsa1024_pkcs8_enc",
      "ssh-keygen -q -t rsa -b 1024 -m PKCS8 -N '" TK_PASS "' -f %s",
      TK_PASS, NGX_SEGURA_SSHKEY_WEAK_KEY,
      NGX_SEGURA_SSHKEY_FIELD_PRIVATE_KEY },
    /* libssh 0.10 cannot use PKCS#8 Ed25519 keys */
    { "ed25519_pkcs8", "openssl genpkey -algorithm ed25519 -out %s", NULL,
      NGX_SEGURA_SSHKEY_UNSUPPORTED_TYPE,
      NGX_SEGURA_SSHKEY_FIELD_PRIVATE_KEY },
    { "ed25519_pkcs8_enc",
      "openssl genpkey -algorithm ed25519 -aes-256-cbc "
      "-pass 'pass:" TK_PASS "' -out %s", TK_PASS,
      NGX_SEGURA_SSHKEY_UNSUPPORTED_TYPE,
      NGX_SEGURA_SSHKEY_FIELD_PRIVATE_KEY },
    { "ed448", "openssl genpkey -algorithm ed448 -out %s", NULL,
      NGX_SEGURA_SSHKEY_UNSUPPORTED_TYPE,
      NGX_SEGURA_SSHKEY_FIELD_PRIVATE_KEY },
    { "x25519", "openssl genpkey -algorithm x25519 -out %s", NULL,
      NGX_SEGURA_SSHKEY_UNSUPPORTED_TYPE,
      NGX_SEGURA_SSHKEY_FIELD_PRIVATE_KEY },
    { "secp256k1",
      "openssl ecparam -name secp256k1 -genkey -noout -out %s", NULL,
      NGX_SEGURA_SSHKEY_UNSUPPORTED_TYPE,
      NGX_SEGURA_SSHKEY_FIELD_PRIVATE_KEY },
    { "aes256gcm",
      "ssh-keygen -q -t ed25519 -Z aes256-gcm@openssh.com -N '" TK_PASS
      "' -f %s", TK_PASS,
      NGX_SEGURA_SSHKEY_UNSUPPORTED_CIPHER,
      NGX_SEGURA_SSHKEY_FIELD_PRIVATE_KEY },
    /* every session start would pay 65 bcrypt rounds */
    { "ed25519_rounds65",
      "ssh-keygen -q -t ed25519 -a 65 -N '" TK_PASS "' -f %s", TK_PASS,
      NGX_SEGURA_SSHKEY_KDF_TOO_COSTLY,
      NGX_SEGURA_SSHKEY_FIELD_PRIVATE_KEY },
    { "ed25519_plain_with_pass", "ssh-keygen -q -t ed25519 -N '' -f %s",
      TK_PASS, NGX_SEGURA_SSHKEY_PASSPHRASE_NOT_NEEDED,
      NGX_SEGURA_SSHKEY_FIELD_PASSPHRASE },
    { "rsa_pem_plain_with_pass",
      "ssh-keygen -q -t rsa -b 2048 -m PEM -N '' -f %s",
      TK_PASS, NGX_SEGURA_SSHKEY_PASSPHRASE_NOT_NEEDED,
      NGX_SEGURA_SSHKEY_FIELD_PASSPHRASE },
};


static char *
tk_path(const char *name, const char *suffix)
{
    char  *p;

    assert_true(asprintf(&p, "%s/%s%s", tk_dir, name, suffix) > 0);

    return p;
}


static char *
tk_read(const char *path, size_t *len)
{
    FILE    *f;
    char    *buf;
    size_t   n;

    f = fopen(path, "r");
    if (f == NULL) {
        return NULL;
    }

    buf = calloc(1, 65536);
    assert_non_null(buf);

    n = fread(buf, 1, 65535, f);
    fclose(f);

    if (len != NULL) {
        *len = n;
    }

    return buf;
}


static void
tk_generate(const char *name, const char *fmt)
{
    char  *path, *cmd, *full;

    path = tk_path(name, "");

    if (access(path, F_OK) != 0) {
        assert_true(asprintf(&cmd, fmt, path) > 0);
        assert_true(asprintf(&full, "%s </dev/null >/dev/null 2>&1", cmd)
                    > 0);

        if (system(full) != 0) {
            print_error("key generation failed: %s\n", cmd);
            fail();
        }

        free(cmd);
        free(full);
    }

    free(path);
}


static char *
tk_private(const char *name, size_t *len)
{
    char  *path, *buf;

    path = tk_path(name, "");
    buf = tk_read(path, len);
    assert_non_null(buf);
    free(path);

    return buf;
}


/* "<type> <base64>" of name.pub (the comment dropped) */
static char *
tk_public_line(const char *name)
{
    char  *path, *buf, *sp;

    path = tk_path(name, ".pub");
    buf = tk_read(path, NULL);
    assert_non_null(buf);
    free(path);

    sp = strchr(buf, ' ');
    assert_non_null(sp);
    sp = strchr(sp + 1, ' ');

    if (sp != NULL) {
        *sp = '\0';
    }

    buf[strcspn(buf, "\r\n")] = '\0';

    return buf;
}


/* bits and fingerprint as "ssh-keygen -lf" prints them */
static void
tk_keygen_lf(const char *name, unsigned *bits, char *fp, size_t fp_size)
{
    char  *path, *cmd, line[1024];
    FILE  *p;

    path = tk_path(name, ".pub");
    assert_true(asprintf(&cmd, "ssh-keygen -lf %s", path) > 0);

    p = popen(cmd, "r");
    assert_non_null(p);
    assert_non_null(fgets(line, sizeof(line), p));
    pclose(p);

    assert_int_equal(sscanf(line, "%u %63s", bits, fp), 2);
    assert_true(strlen(fp) < fp_size);

    free(cmd);
    free(path);
}


static void
tk_no_secret(const ngx_segura_sshkey_info_t *info, const char *key,
    const char *passphrase)
{
    const char  *body, *hit;

    /* a line of the private key body, and the passphrase */

    body = strchr(key, '\n');

    if (info == NULL || body == NULL) {
        fail();
        return;
    }

    hit = memmem(info, sizeof(*info), body + 1, 20);
    assert_true(hit == NULL);

    if (passphrase != NULL) {
        hit = memmem(info, sizeof(*info), passphrase, strlen(passphrase));
        assert_true(hit == NULL);
    }
}


static int
tk_setup(void **state)
{
    size_t  i;

    (void) state;

    if (mkdtemp(tk_dir) == NULL) {
        return -1;
    }

    for (i = 0; i < sizeof(tk_valid) / sizeof(tk_valid[0]); i++) {
        tk_generate(tk_valid[i].name, tk_valid[i].cmd);
    }

    for (i = 0; i < sizeof(tk_bad) / sizeof(tk_bad[0]); i++) {
        tk_generate(tk_bad[i].name, tk_bad[i].cmd);
    }

    return 0;
}


static int
tk_teardown(void **state)
{
    char  *cmd;

    (void) state;

    if (asprintf(&cmd, "rm -rf '%s'", tk_dir) > 0) {
        if (system(cmd) != 0) {
            free(cmd);
            return -1;
        }

        free(cmd);
    }

    return 0;
}


static void
test_valid_keys(void **state)
{
    char                      *key, *line, *pub, *crlf, *path, fp[64];
    size_t                     i, j, k, len;
    ssh_key                    sk;
    unsigned                   bits;
    const tk_key_t            *t;
    ngx_segura_sshkey_info_t   info;

    (void) state;

    for (i = 0; i < sizeof(tk_valid) / sizeof(tk_valid[0]); i++) {
        t = &tk_valid[i];
        key = tk_private(t->name, &len);

        if (ngx_segura_sshkey_inspect(key, len, t->passphrase, NULL, &info)
            != 0)
        {
            print_error("%s: %s on %s\n", t->name,
                        ngx_segura_sshkey_reason_name(info.reason),
                        ngx_segura_sshkey_field_name(info.field));
            fail();
        }

        assert_int_equal(info.reason, NGX_SEGURA_SSHKEY_OK);
        assert_string_equal(info.type, t->type);
        assert_int_equal(info.bits, t->bits);
        assert_int_equal(info.encrypted, t->passphrase != NULL);
        assert_int_equal(strncmp(info.fingerprint, "SHA256:", 7), 0);
        assert_int_equal(strlen(info.fingerprint), 7 + 43);
        tk_no_secret(&info, key, t->passphrase);

        /* the public key line round-trips through public_info */
        line = strdup(info.public_key);
        assert_non_null(line);

        assert_int_equal(ngx_segura_sshkey_public_info(line, strlen(line),
                                                       &info), 0);
        assert_string_equal(info.public_key, line);
        assert_string_equal(info.type, t->type);
        assert_int_equal(info.bits, t->bits);

        if (t->keygen_lf) {
            pub = tk_public_line(t->name);
            assert_string_equal(line, pub);
            free(pub);

            tk_keygen_lf(t->name, &bits, fp, sizeof(fp));
            assert_int_equal(info.bits, bits);
            assert_string_equal(info.fingerprint, fp);

            /* the matching public key, with its comment and newline */
            path = tk_path(t->name, ".pub");
            pub = tk_read(path, NULL);
            free(path);
            assert_int_equal(ngx_segura_sshkey_inspect(key, len,
                                                       t->passphrase, pub,
                                                       &info), 0);
            assert_string_equal(info.public_key, line);
            free(pub);
        }

        /* the same text with CRLF line ends */
        crlf = malloc(2 * len + 1);
        assert_non_null(crlf);

        for (j = 0, k = 0; j < len; j++) {
            if (key[j] == '\n') {
                crlf[k++] = '\r';
            }

            crlf[k++] = key[j];
        }

        assert_int_equal(ngx_segura_sshkey_inspect(crlf, k, t->passphrase,
                                                   line, &info), 0);
        free(crlf);

        /* and the session-time import */
        sk = NULL;
        assert_int_equal(ngx_segura_sshkey_import(key, len, t->passphrase,
                                                  &sk, &info), 0);
        assert_non_null(sk);
        assert_true(ssh_key_is_private(sk));
        assert_string_equal(info.public_key, line);
        ssh_key_free(sk);

        free(line);
        free(key);
    }
}


static void
test_bad_keys(void **state)
{
    char                      *key;
    size_t                     i, len;
    const tk_bad_t            *t;
    ngx_segura_sshkey_info_t   info;

    (void) state;

    for (i = 0; i < sizeof(tk_bad) / sizeof(tk_bad[0]); i++) {
        t = &tk_bad[i];
        key = tk_private(t->name, &len);

        assert_int_equal(ngx_segura_sshkey_inspect(key, len, t->passphrase,
                                                   NULL, &info), -1);

        if (info.reason != t->reason || info.field != t->field) {
            print_error("%s: got %s on %s\n", t->name,
                        ngx_segura_sshkey_reason_name(info.reason),
                        ngx_segura_sshkey_field_name(info.field));
            fail();
        }

        assert_string_equal(info.public_key, "");
        assert_string_equal(info.fingerprint, "");

        if (t->reason == NGX_SEGURA_SSHKEY_WEAK_KEY) {
            assert_string_equal(info.type, "ssh-rsa");
            assert_int_equal(info.bits, 1024);
        }

        free(key);
    }
}


static void
test_passphrase(void **state)
{
    char                      *key, *big;
    size_t                     i, len;
    ssh_key                    sk;
    const tk_key_t            *t;
    ngx_segura_sshkey_info_t   info;

    (void) state;

    for (i = 0; i < sizeof(tk_valid) / sizeof(tk_valid[0]); i++) {
        t = &tk_valid[i];

        if (t->passphrase == NULL) {
            continue;
        }

        key = tk_private(t->name, &len);

        assert_int_equal(ngx_segura_sshkey_inspect(key, len, NULL, NULL,
                                                   &info), -1);
        assert_int_equal(info.reason, NGX_SEGURA_SSHKEY_PASSPHRASE_REQUIRED);
        assert_int_equal(info.field, NGX_SEGURA_SSHKEY_FIELD_PASSPHRASE);

        assert_int_equal(ngx_segura_sshkey_inspect(key, len, "", NULL,
                                                   &info), -1);
        assert_int_equal(info.reason, NGX_SEGURA_SSHKEY_PASSPHRASE_REQUIRED);

        assert_int_equal(ngx_segura_sshkey_inspect(key, len, "wrong horse",
                                                   NULL, &info), -1);
        if (info.reason != NGX_SEGURA_SSHKEY_PASSPHRASE_WRONG) {
            print_error("%s: got %s\n", t->name,
                        ngx_segura_sshkey_reason_name(info.reason));
            fail();
        }

        assert_int_equal(info.field, NGX_SEGURA_SSHKEY_FIELD_PASSPHRASE);
        tk_no_secret(&info, key, "wrong horse");

        sk = NULL;
        assert_int_equal(ngx_segura_sshkey_import(key, len, "wrong horse",
                                                  &sk, NULL), -1);
        assert_null(sk);

        free(key);
    }

    /* import ignores a passphrase stored for a plain key */
    key = tk_private("ed25519", &len);
    sk = NULL;
    assert_int_equal(ngx_segura_sshkey_import(key, len, TK_PASS, &sk, &info),
                     0);
    ssh_key_free(sk);

    /* a passphrase over 1 KiB */
    big = malloc(NGX_SEGURA_SSHKEY_MAX_PASSPHRASE + 2);
    assert_non_null(big);
    memset(big, 'p', NGX_SEGURA_SSHKEY_MAX_PASSPHRASE + 1);
    big[NGX_SEGURA_SSHKEY_MAX_PASSPHRASE + 1] = '\0';

    assert_int_equal(ngx_segura_sshkey_inspect(key, len, big, NULL, &info),
                     -1);
    assert_int_equal(info.reason, NGX_SEGURA_SSHKEY_TOO_LONG);
    assert_int_equal(info.field, NGX_SEGURA_SSHKEY_FIELD_PASSPHRASE);

    free(big);
    free(key);
}


static void
tk_expect(const char *what, const char *key, size_t len,
    ngx_segura_sshkey_reason_e reason, ngx_segura_sshkey_field_e field)
{
    ngx_segura_sshkey_info_t  info;

    assert_int_equal(ngx_segura_sshkey_inspect(key, len, NULL, NULL, &info),
                     -1);

    if (info.reason != reason || info.field != field) {
        print_error("%s: got %s on %s\n", what,
                    ngx_segura_sshkey_reason_name(info.reason),
                    ngx_segura_sshkey_field_name(info.field));
        fail();
    }
}


static void
test_unparsable(void **state)
{
    char    *key, *two, *p;
    size_t   len, n;

    (void) state;

    tk_expect("empty", "", 0, NGX_SEGURA_SSHKEY_UNPARSABLE,
              NGX_SEGURA_SSHKEY_FIELD_PRIVATE_KEY);
    tk_expect("garbage", "hello world", 11, NGX_SEGURA_SSHKEY_UNPARSABLE,
              NGX_SEGURA_SSHKEY_FIELD_PRIVATE_KEY);
    tk_expect("null", NULL, 5, NGX_SEGURA_SSHKEY_UNPARSABLE,
              NGX_SEGURA_SSHKEY_FIELD_PRIVATE_KEY);

    key = tk_private("ed25519", &len);

    /* the public key pasted in the private key field */
    p = tk_public_line("ed25519");
    tk_expect("public", p, strlen(p), NGX_SEGURA_SSHKEY_UNPARSABLE,
              NGX_SEGURA_SSHKEY_FIELD_PRIVATE_KEY);
    free(p);

    /* embedded NUL */
    key[40] = '\0';
    tk_expect("nul", key, len, NGX_SEGURA_SSHKEY_UNPARSABLE,
              NGX_SEGURA_SSHKEY_FIELD_PRIVATE_KEY);
    free(key);

    /* truncated: no END line, or half the body */
    key = tk_private("ed25519", &len);
    tk_expect("truncated", key, len - 40, NGX_SEGURA_SSHKEY_UNPARSABLE,
              NGX_SEGURA_SSHKEY_FIELD_PRIVATE_KEY);

    p = strchr(key, '\n') + 1;
    n = strchr(p, '\n') + 1 - key;
    two = malloc(len);
    assert_non_null(two);
    memcpy(two, key, n);
    memcpy(two + n, strstr(key, "-----END"), len - (strstr(key, "-----END")
                                                    - key));
    tk_expect("half", two, n + len - (strstr(key, "-----END") - key),
              NGX_SEGURA_SSHKEY_UNPARSABLE,
              NGX_SEGURA_SSHKEY_FIELD_PRIVATE_KEY);
    free(two);

    /* a character outside base64 */
    key[50] = '*';
    tk_expect("bad base64", key, len, NGX_SEGURA_SSHKEY_UNPARSABLE,
              NGX_SEGURA_SSHKEY_FIELD_PRIVATE_KEY);
    free(key);

    /* text around the block, two keys, mismatched END label */
    key = tk_private("rsa_pem", &len);

    two = malloc(2 * len + 16);
    assert_non_null(two);

    memcpy(two, "Bag Attributes\n", 15);
    memcpy(two + 15, key, len);
    tk_expect("leading text", two, 15 + len, NGX_SEGURA_SSHKEY_UNPARSABLE,
              NGX_SEGURA_SSHKEY_FIELD_PRIVATE_KEY);

    memcpy(two, key, len);
    memcpy(two + len, key, len);
    tk_expect("two keys", two, 2 * len, NGX_SEGURA_SSHKEY_UNPARSABLE,
              NGX_SEGURA_SSHKEY_FIELD_PRIVATE_KEY);

    memcpy(two, key, len);
    p = strstr(two, "-----END RSA");
    memcpy(p, "-----END DSA", 12);
    tk_expect("end label", two, len, NGX_SEGURA_SSHKEY_UNPARSABLE,
              NGX_SEGURA_SSHKEY_FIELD_PRIVATE_KEY);

    /* an unknown header in a plain PEM key */
    n = strchr(key, '\n') + 1 - key;
    memcpy(two, key, n);
    memcpy(two + n, "Comment: x\n", 11);
    memcpy(two + n + 11, key + n, len - n);
    tk_expect("header", two, len + 11, NGX_SEGURA_SSHKEY_UNPARSABLE,
              NGX_SEGURA_SSHKEY_FIELD_PRIVATE_KEY);

    /* a certificate label */
    tk_expect("certificate",
              "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n",
              59, NGX_SEGURA_SSHKEY_UNPARSABLE,
              NGX_SEGURA_SSHKEY_FIELD_PRIVATE_KEY);

    free(two);
    free(key);
}


static void
test_too_long(void **state)
{
    char    *big, *key;
    size_t   len;

    (void) state;

    key = tk_private("ed25519", &len);

    big = malloc(NGX_SEGURA_SSHKEY_MAX_PRIVATE + 1);
    assert_non_null(big);
    memset(big, '\n', NGX_SEGURA_SSHKEY_MAX_PRIVATE + 1);
    memcpy(big, key, len);

    /* exactly the limit is fine (trailing whitespace), one more is not */
    tk_expect("limit + 1", big, NGX_SEGURA_SSHKEY_MAX_PRIVATE + 1,
              NGX_SEGURA_SSHKEY_TOO_LONG,
              NGX_SEGURA_SSHKEY_FIELD_PRIVATE_KEY);

    {
        ngx_segura_sshkey_info_t  info;

        assert_int_equal(ngx_segura_sshkey_inspect(big,
                                               NGX_SEGURA_SSHKEY_MAX_PRIVATE,
                                               NULL, NULL, &info), 0);
    }

    free(big);
    free(key);
}


static void
test_public_key(void **state)
{
    char                      *key, *line, *other, buf[8200];
    size_t                     len;
    ngx_segura_sshkey_info_t   info;

    (void) state;

    key = tk_private("ed25519", &len);
    line = tk_public_line("ed25519");
    other = tk_public_line("ecdsa256");

    assert_int_equal(ngx_segura_sshkey_inspect(key, len, NULL, other, &info),
                     -1);
    assert_int_equal(info.reason, NGX_SEGURA_SSHKEY_MISMATCH);
    assert_int_equal(info.field, NGX_SEGURA_SSHKEY_FIELD_PUBLIC_KEY);

    free(other);
    other = tk_public_line("ed25519_enc");

    assert_int_equal(ngx_segura_sshkey_inspect(key, len, NULL, other, &info),
                     -1);
    assert_int_equal(info.reason, NGX_SEGURA_SSHKEY_MISMATCH);

    /* surrounding whitespace and a comment are fine */
    snprintf(buf, sizeof(buf), "  %s  user@host with spaces\r\n", line);
    assert_int_equal(ngx_segura_sshkey_inspect(key, len, NULL, buf, &info),
                     0);

#define tk_public_fails(s, r)                                                \
    assert_int_equal(ngx_segura_sshkey_inspect(key, len, NULL, s, &info),   \
                     -1);                                                    \
    assert_int_equal(info.reason, r);                                        \
    assert_int_equal(info.field, NGX_SEGURA_SSHKEY_FIELD_PUBLIC_KEY)

    tk_public_fails("", NGX_SEGURA_SSHKEY_UNPARSABLE);
    tk_public_fails("garbage", NGX_SEGURA_SSHKEY_UNPARSABLE);
    tk_public_fails("ssh-ed25519 !!!!", NGX_SEGURA_SSHKEY_UNPARSABLE);
    tk_public_fails("ssh-ed25519 AAAA", NGX_SEGURA_SSHKEY_UNPARSABLE);

    /* type in front differs from the blob's */
    snprintf(buf, sizeof(buf), "ssh-rsa%s", line + strlen("ssh-ed25519"));
    tk_public_fails(buf, NGX_SEGURA_SSHKEY_UNPARSABLE);

    /* two lines */
    snprintf(buf, sizeof(buf), "%s\n%s", line, line);
    tk_public_fails(buf, NGX_SEGURA_SSHKEY_UNPARSABLE);

    /* a changed character of the blob: another (or no) key */
    snprintf(buf, sizeof(buf), "%s", line);
    buf[strlen(buf) - 3] = (buf[strlen(buf) - 3] == 'A') ? 'B' : 'A';
    assert_int_equal(ngx_segura_sshkey_inspect(key, len, NULL, buf, &info),
                     -1);
    assert_int_equal(info.field, NGX_SEGURA_SSHKEY_FIELD_PUBLIC_KEY);

    memset(buf, 'A', sizeof(buf) - 1);
    buf[sizeof(buf) - 1] = '\0';
    memcpy(buf, "ssh-rsa ", 8);
    tk_public_fails(buf, NGX_SEGURA_SSHKEY_TOO_LONG);

#undef tk_public_fails

    free(other);
    free(line);
    free(key);
}


static void
test_public_info(void **state)
{
    char                      *line, *cmd, *path, buf[8192], fp[64];
    unsigned                   bits;
    ngx_segura_sshkey_info_t   info;

    (void) state;

    /* a host key as found in known_hosts-style input */
    line = tk_public_line("rsa_openssh");
    snprintf(buf, sizeof(buf), "%s root@device\n", line);

    assert_int_equal(ngx_segura_sshkey_public_info(buf, strlen(buf), &info),
                     0);
    assert_string_equal(info.public_key, line);
    assert_string_equal(info.type, "ssh-rsa");
    assert_int_equal(info.bits, 3072);

    tk_keygen_lf("rsa_openssh", &bits, fp, sizeof(fp));
    assert_string_equal(info.fingerprint, fp);
    free(line);

    /* weak RSA public keys are parsed; the caller judges bits */
    line = tk_public_line("rsa1024_openssh");
    assert_int_equal(ngx_segura_sshkey_public_info(line, strlen(line), &info),
                     0);
    assert_int_equal(info.bits, 1024);
    free(line);

    line = tk_public_line("dsa_openssh");
    assert_int_equal(ngx_segura_sshkey_public_info(line, strlen(line), &info),
                     -1);
    assert_int_equal(info.reason, NGX_SEGURA_SSHKEY_DSA_NOT_SUPPORTED);
    assert_int_equal(info.field, NGX_SEGURA_SSHKEY_FIELD_PUBLIC_KEY);
    assert_string_equal(info.type, "ssh-dss");
    free(line);

    /* a certificate: unsupported */
    path = tk_path("ed25519", "");
    assert_true(asprintf(&cmd, "ssh-keygen -q -s %s -I test -n root %s.pub"
                         " >/dev/null 2>&1", path, path) > 0);
    assert_int_equal(system(cmd), 0);
    free(cmd);
    free(path);

    path = tk_path("ed25519", "-cert.pub");
    line = tk_read(path, NULL);
    assert_non_null(line);
    free(path);

    assert_int_equal(ngx_segura_sshkey_public_info(line, strlen(line), &info),
                     -1);
    assert_int_equal(info.reason, NGX_SEGURA_SSHKEY_UNSUPPORTED_TYPE);
    free(line);

    assert_int_equal(ngx_segura_sshkey_public_info("x", 0, &info), -1);
    assert_int_equal(info.reason, NGX_SEGURA_SSHKEY_UNPARSABLE);
    assert_int_equal(ngx_segura_sshkey_public_info("ssh-ed25519 AAAA\0", 17,
                                                   &info), -1);
    assert_int_equal(info.reason, NGX_SEGURA_SSHKEY_UNPARSABLE);
}


static void
test_names(void **state)
{
    (void) state;

    assert_string_equal(ngx_segura_sshkey_reason_name(
                        NGX_SEGURA_SSHKEY_UNPARSABLE), "unparsable");
    assert_string_equal(ngx_segura_sshkey_reason_name(
                        NGX_SEGURA_SSHKEY_DSA_NOT_SUPPORTED),
                        "dsa_not_supported");
    assert_string_equal(ngx_segura_sshkey_reason_name(
                        NGX_SEGURA_SSHKEY_WEAK_KEY), "weak_key");
    assert_string_equal(ngx_segura_sshkey_reason_name(
                        NGX_SEGURA_SSHKEY_UNSUPPORTED_TYPE),
                        "unsupported_type");
    assert_string_equal(ngx_segura_sshkey_reason_name(
                        NGX_SEGURA_SSHKEY_PASSPHRASE_REQUIRED),
                        "passphrase_required");
    assert_string_equal(ngx_segura_sshkey_reason_name(
                        NGX_SEGURA_SSHKEY_PASSPHRASE_WRONG),
                        "passphrase_wrong");
    assert_string_equal(ngx_segura_sshkey_reason_name(
                        NGX_SEGURA_SSHKEY_PASSPHRASE_NOT_NEEDED),
                        "passphrase_not_needed");
    assert_string_equal(ngx_segura_sshkey_reason_name(
                        NGX_SEGURA_SSHKEY_MISMATCH), "mismatch");
    assert_string_equal(ngx_segura_sshkey_reason_name(
                        NGX_SEGURA_SSHKEY_KDF_TOO_COSTLY), "kdf_too_costly");
    assert_string_equal(ngx_segura_sshkey_reason_name(
                        NGX_SEGURA_SSHKEY_INTERNAL_ERROR), "internal_error");
    assert_string_equal(ngx_segura_sshkey_reason_name(
                        (ngx_segura_sshkey_reason_e) 100), "internal_error");

    assert_null(ngx_segura_sshkey_field_name(NGX_SEGURA_SSHKEY_FIELD_NONE));
    assert_string_equal(ngx_segura_sshkey_field_name(
                        NGX_SEGURA_SSHKEY_FIELD_PRIVATE_KEY), "private_key");
    assert_string_equal(ngx_segura_sshkey_field_name(
                        NGX_SEGURA_SSHKEY_FIELD_PASSPHRASE), "passphrase");
    assert_string_equal(ngx_segura_sshkey_field_name(
                        NGX_SEGURA_SSHKEY_FIELD_PUBLIC_KEY), "public_key");

    assert_non_null(ngx_segura_sshkey_message(NGX_SEGURA_SSHKEY_WEAK_KEY));
    assert_non_null(ngx_segura_sshkey_message(
                        (ngx_segura_sshkey_reason_e) 100));
}


static uint64_t
tk_next(uint64_t *s)
{
    uint64_t  z;

    z = (*s += 0x9e3779b97f4a7c15ULL);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;

    return z ^ (z >> 31);
}


/*
 * Mutated keys: never a crash, always a verdict with a field.  PEM and
 * PKCS#8 only: libssh 0.10.6 leaks 12-20 bytes in
 * ssh_pki_import_privkey_base64() on some malformed OpenSSH-format keys
 * that pass our header checks, which LeakSanitizer would report.
 */
static void
test_mutations(void **state)
{
    char                      *keys[4], *m, *env;
    size_t                     lens[4], i, n, len, pos;
    uint64_t                   seed, s;
    unsigned                   round;
    ngx_segura_sshkey_info_t   info;

    static const char  *names[4] = {
        "rsa_pkcs8", "rsa_pem", "ecdsa384_pkcs8", "ecdsa256_pem"
    };

    (void) state;

    env = getenv("SEGURA_SEED");
    seed = (env != NULL) ? strtoull(env, NULL, 10)
                         : (uint64_t) time(NULL) ^ ((uint64_t) getpid() << 32);
    s = seed;

    for (i = 0; i < 4; i++) {
        keys[i] = tk_private(names[i], &lens[i]);
    }

    m = malloc(65536);
    assert_non_null(m);

    for (round = 0; round < TK_ROUNDS; round++) {
        i = tk_next(&s) % 4;
        len = lens[i];
        memcpy(m, keys[i], len);

        for (n = 1 + tk_next(&s) % 4; n > 0; n--) {
            pos = tk_next(&s) % len;

            switch (tk_next(&s) % 3) {
            case 0:
                m[pos] = (char) (tk_next(&s) & 0xff);
                break;
            case 1:
                len = pos;
                break;
            default:
                m[pos] = "ABab+/=\n-: "[tk_next(&s) % 11];
            }

            if (len == 0) {
                break;
            }
        }

        if (ngx_segura_sshkey_inspect(m, len, NULL, NULL, &info) == 0) {
            continue;
        }

        if (info.field == NGX_SEGURA_SSHKEY_FIELD_NONE
            || info.reason == NGX_SEGURA_SSHKEY_OK)
        {
            print_error("mutation round %u: %s on %s (replay with "
                        "SEGURA_SEED=%llu)\n", round,
                        ngx_segura_sshkey_reason_name(info.reason),
                        ngx_segura_sshkey_field_name(info.field),
                        (unsigned long long) seed);
            fail();
        }
    }

    free(m);

    for (i = 0; i < 4; i++) {
        free(keys[i]);
    }
}


typedef struct {
    char        *key;
    size_t       len;
    const char  *passphrase;
    const char  *expect;
    int          failures;
} tk_thread_t;


static void *
tk_thread(void *data)
{
    int                        i;
    tk_thread_t               *t;
    ngx_segura_sshkey_info_t   info;

    t = data;

    for (i = 0; i < 5; i++) {
        if (ngx_segura_sshkey_inspect(t->key, t->len, t->passphrase, NULL,
                                      &info) != 0
            || strcmp(info.public_key, t->expect) != 0)
        {
            t->failures++;
        }

        if (ngx_segura_sshkey_inspect(t->key, t->len, "wrong horse", NULL,
                                      &info) == 0)
        {
            t->failures++;
        }
    }

    return NULL;
}


/* libssh 0.10 key import and OpenSSL from several threads at once */
static void
test_threads(void **state)
{
    size_t       i;
    pthread_t    tid[6];
    tk_thread_t  t[6];

    static const char  *names[6] = {
        "rsa_pem_enc", "ed25519", "ecdsa256_enc", "rsa_pkcs8_enc",
        "rsa_aes128cbc_enc", "ecdsa521_pem_enc"
    };

    (void) state;

    for (i = 0; i < 6; i++) {
        t[i].key = tk_private(names[i], &t[i].len);
        t[i].passphrase = (strstr(names[i], "_enc") != NULL) ? TK_PASS
                                                              : NULL;
        t[i].failures = 0;

        t[i].expect = tk_public_line(names[i]);
    }

    for (i = 0; i < 6; i++) {
        assert_int_equal(pthread_create(&tid[i], NULL, tk_thread, &t[i]), 0);
    }

    for (i = 0; i < 6; i++) {
        assert_int_equal(pthread_join(tid[i], NULL), 0);
        free(t[i].key);
        free((char *) t[i].expect);
    }

    for (i = 0; i < 6; i++) {
        assert_int_equal(t[i].failures, 0);
    }
}


int
main(void)
{
    const struct CMUnitTest  tests[] = {
        cmocka_unit_test(test_names),
        cmocka_unit_test(test_valid_keys),
        cmocka_unit_test(test_bad_keys),
        cmocka_unit_test(test_passphrase),
        cmocka_unit_test(test_unparsable),
        cmocka_unit_test(test_too_long),
        cmocka_unit_test(test_public_key),
        cmocka_unit_test(test_public_info),
        cmocka_unit_test(test_mutations),
        cmocka_unit_test(test_threads),
    };

    ssh_init();

    return cmocka_run_group_tests(tests, tk_setup, tk_teardown);
}
