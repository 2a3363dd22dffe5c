
/*
 * Copyright (C) ngx_segura_module authors
 */


/*
 * Opening what the vault sealed in ssh_keys: the private key and its
 * passphrase, each bound to its row and column, found by the master key
 * id the blob names, and imported into libssh; and sealing them (a
 * registered, generated or rotated key).  Used by the session
 * handshake and the key checks.  Pool threads only (a passphrase's KDF
 * may take long); reads configuration only.
 */


#include <ngx_config.h>
#include <ngx_core.h>
#include "ngx_segura.h"
#include "ngx_segura_sealed.h"
#include "ngx_segura_sshkey.h"
#include "ngx_segura_vault.h"

#include <libpq-fe.h>
#include <openssl/crypto.h>


static u_char *ngx_segura_sealed_open(ngx_http_segura_main_conf_t *smcf,
    int64_t key_id, const char *hex, const char *column, size_t *len,
    char *err, size_t errlen);


ngx_int_t
ngx_segura_sealed_key(ngx_http_segura_main_conf_t *smcf, int64_t key_id,
    const char *priv, const char *pass, ssh_key *key, char *err,
    size_t errlen)
{
    int      rc;
    size_t   klen, plen;
    u_char  *text, *phrase;

    err[errlen - 1] = '\0';

    phrase = NULL;
    plen = 0;

    text = ngx_segura_sealed_open(smcf, key_id, priv, "private_key", &klen,
                                  err, errlen);
    if (text == NULL) {
        return NGX_ERROR;
    }

    if (pass != NULL) {
        phrase = ngx_segura_sealed_open(smcf, key_id, pass, "passphrase",
                                        &plen, err, errlen);
        if (phrase == NULL) {
            OPENSSL_cleanse(text, klen);
            free(text);
            return NGX_ERROR;
        }
    }

    rc = ngx_segura_sshkey_import((char *) text, klen, (char *) phrase, key,
                                  NULL);

    OPENSSL_cleanse(text, klen);
    free(text);

    if (phrase != NULL) {
        OPENSSL_cleanse(phrase, plen);
        free(phrase);
    }

    if (rc != 0) {
        (void) ngx_snprintf((u_char *) err, errlen - 1,
                            "key %L cannot be imported%Z", key_id);
        return NGX_ERROR;
    }

    return NGX_OK;
}


/* a sealed column, malloc()ed with a NUL; the caller wipes and frees */

static u_char *
ngx_segura_sealed_open(ngx_http_segura_main_conf_t *smcf, int64_t key_id,
    const char *hex, const char *column, size_t *len, char *err,
    size_t errlen)
{
    int                       id;
    char                      aad[64];
    size_t                    blen, plen;
    u_char                   *blob, *plain;
    ngx_segura_master_key_t  *mk;
    ngx_segura_vault_err_e    verr;

    blob = PQunescapeBytea((const u_char *) hex, &blen);
    if (blob == NULL) {
        (void) ngx_snprintf((u_char *) err, errlen - 1,
                            "PQunescapeBytea() failed%Z");
        return NULL;
    }

    id = ngx_segura_vault_key_id(blob, blen);
    mk = (id < 0) ? NULL : ngx_http_segura_find_key(smcf, id);

    if (mk == NULL) {
        (void) ngx_snprintf((u_char *) err, errlen - 1,
                            "key %L: %s sealed with master key id %d, "
                            "which is not configured%Z", key_id, column, id);
        PQfreemem(blob);
        return NULL;
    }

    plen = ngx_segura_vault_opened_size(blen);

    /* one spare byte: libssh wants the key text NUL-terminated */

    plain = malloc(plen + 1);
    if (plain == NULL) {
        (void) ngx_snprintf((u_char *) err, errlen - 1,
                            "malloc() failed%Z");
        PQfreemem(blob);
        return NULL;
    }

    (void) ngx_snprintf((u_char *) aad, sizeof(aad), "ssh_keys/%L/%s%Z",
                        key_id, column);

    if (ngx_segura_vault_open(mk->key, (unsigned) id, aad, ngx_strlen(aad),
                              blob, blen, plain, &plen, &verr)
        != 0)
    {
        (void) ngx_snprintf((u_char *) err, errlen - 1,
                            "key %L: ngx_segura_vault_open(%s) failed: %s%Z",
                            key_id, column, ngx_segura_vault_strerror(verr));
        PQfreemem(blob);
        free(plain);
        return NULL;
    }

    PQfreemem(blob);

    plain[plen] = '\0';
    *len = plen;

    return plain;
}


char *
ngx_segura_sealed_seal(ngx_http_segura_main_conf_t *smcf, const char *key_id,
    const char *column, const char *plain, char *err, size_t errlen)
{
    u_char                   *blob, *p;
    char                     *hex;
    size_t                    len, n;
    ngx_segura_vault_err_e    verr;
    ngx_segura_master_key_t  *key;
    char                      aad[NGX_INT64_LEN + 64];

    key = ngx_http_segura_current_key(smcf);

    len = ngx_strlen(plain);
    n = ngx_segura_vault_sealed_size(len);

    blob = malloc(n);
    hex = malloc(2 + 2 * n + 1);

    if (blob == NULL || hex == NULL || n == 0) {
        free(blob);
        free(hex);
        (void) ngx_snprintf((u_char *) err, errlen - 1, "malloc() failed%Z");
        return NULL;
    }

    p = ngx_snprintf((u_char *) aad, sizeof(aad) - 1, "ssh_keys/%s/%s",
                     key_id, column);

    if (ngx_segura_vault_seal(key->key, key->id, aad, p - (u_char *) aad,
                              (const u_char *) plain, len, blob, &verr)
        != 0)
    {
        free(blob);
        free(hex);
        (void) ngx_snprintf((u_char *) err, errlen - 1,
                            "ngx_segura_vault_seal() failed: %s%Z",
                            ngx_segura_vault_strerror(verr));
        return NULL;
    }

    hex[0] = '\\';
    hex[1] = 'x';
    p = ngx_hex_dump((u_char *) hex + 2, blob, n);
    *p = '\0';

    free(blob);

    return hex;
}
