
/*
 * Copyright (C) ngx_segura_module authors
 */


/*
 * SSH key inspection: is a submitted private key usable (format, type,
 * strength, passphrase), what is its public half and its fingerprint; and
 * the import of a stored key for a session.
 *
 * Either thread may call it (event loop or pool thread), but the private
 * key functions burn CPU (bcrypt KDF, RSA checks): call them from a pool
 * thread.  No globals, no logging; OpenSSL's thread-local error queue is
 * cleared before returning.
 *
 * libssh and OpenSSL are never called without a passphrase source: with
 * passphrase == NULL, libssh's PEM path hands OpenSSL a NULL callback, and
 * OpenSSL's default callback prompts on the terminal.  We pass either the
 * passphrase or a callback that refuses.
 */


#ifndef _GNU_SOURCE
#define _GNU_SOURCE                      /* memmem() */
#endif

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/bio.h>
#include <openssl/bn.h>
#include <openssl/crypto.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>

#include <libssh/libssh.h>

#include "ngx_segura_sshkey.h"


#define NGX_SEGURA_SSHKEY_OPENSSH_MAGIC  "openssh-key-v1"

/*
 * the key is decrypted at every session start, in a pool thread: measured
 * here, bcrypt_pbkdf costs about 8 ms of CPU a round (ssh-keygen's default
 * of 16 rounds: 0.13 s; 64 rounds: 0.48 s)
 */
#define NGX_SEGURA_SSHKEY_MAX_BCRYPT_ROUNDS  64
#define NGX_SEGURA_SSHKEY_BEGIN          "-----BEGIN "
#define NGX_SEGURA_SSHKEY_END            "-----END "
#define NGX_SEGURA_SSHKEY_DASHES         "-----"
#define NGX_SEGURA_SSHKEY_PROC_TYPE      "Proc-Type: 4,ENCRYPTED\n"
#define NGX_SEGURA_SSHKEY_MAX_LABEL      64


typedef enum {
    NGX_SEGURA_SSHKEY_FORMAT_OPENSSH = 0,
    NGX_SEGURA_SSHKEY_FORMAT_LEGACY,         /* PKCS#1 RSA, SEC1 EC */
    NGX_SEGURA_SSHKEY_FORMAT_PKCS8
} ngx_segura_sshkey_format_e;


/* a read cursor over SSH wire-format data (RFC 4251, section 5) */
typedef struct {
    const unsigned char        *p;
    size_t                      n;
} ngx_segura_sshkey_buf_t;


/* what the text of a private key tells before any decryption */
typedef struct {
    ngx_segura_sshkey_format_e  format;
    unsigned                    encrypted;
    char                       *body;        /* between the PEM lines */
    size_t                      body_len;

    /* OpenSSH format: the public key blob stored next to the private one */
    unsigned char              *decoded;
    size_t                      decoded_len;
    ngx_segura_sshkey_buf_t     pub;
} ngx_segura_sshkey_text_t;


static int ngx_segura_sshkey_parse(const char *private_key, size_t len,
    const char *passphrase, int strict, ssh_key *keyp,
    ngx_segura_sshkey_info_t *info);
static ngx_segura_sshkey_reason_e ngx_segura_sshkey_frame(char *buf,
    size_t len, ngx_segura_sshkey_text_t *text);
static ngx_segura_sshkey_reason_e ngx_segura_sshkey_openssh(
    ngx_segura_sshkey_text_t *text, ngx_segura_sshkey_info_t *info);
static ngx_segura_sshkey_reason_e ngx_segura_sshkey_pem(const char *buf,
    size_t len, ngx_segura_sshkey_text_t *text, const char *passphrase,
    ngx_segura_sshkey_info_t *info);
static ngx_segura_sshkey_reason_e ngx_segura_sshkey_describe(ssh_key key,
    ngx_segura_sshkey_info_t *info);
static ngx_segura_sshkey_reason_e ngx_segura_sshkey_blob_info(
    const unsigned char *blob, size_t len, ngx_segura_sshkey_info_t *info);
static int ngx_segura_sshkey_b64_decode(const char *in, size_t len,
    unsigned char **out, size_t *out_len);
static int ngx_segura_sshkey_get_u32(ngx_segura_sshkey_buf_t *b,
    uint32_t *v);
static int ngx_segura_sshkey_get_string(ngx_segura_sshkey_buf_t *b,
    ngx_segura_sshkey_buf_t *s);
static int ngx_segura_sshkey_string_is(ngx_segura_sshkey_buf_t *s,
    const char *str);
static int ngx_segura_sshkey_is_space(int c);
static int ngx_segura_sshkey_pem_password(char *buf, int size, int rwflag,
    void *data);
static int ngx_segura_sshkey_refuse(const char *prompt, char *buf,
    size_t len, int echo, int verify, void *userdata);
static int ngx_segura_sshkey_fail(ngx_segura_sshkey_info_t *info,
    ngx_segura_sshkey_reason_e reason, ngx_segura_sshkey_field_e field);


static const struct {
    const char                 *name;
    const char                 *message;
} ngx_segura_sshkey_reasons[] = {
    { "ok", "The key is valid." },
    { "unparsable", "The key could not be parsed; expected an OpenSSH, "
                    "PEM or PKCS#8 private key, or an OpenSSH public key "
                    "line." },
    { "too_long", "The value is too long." },
    { "dsa_not_supported", "DSA keys are not supported; use Ed25519, "
                           "ECDSA or RSA (2048 bits or more)." },
    { "weak_key", "RSA keys must have at least 2048 bits." },
    { "unsupported_type", "This key type is not supported; use Ed25519, "
                          "ECDSA (P-256, P-384, P-521) or RSA." },
    { "unsupported_cipher", "The private key is encrypted with a cipher "
                            "that is not supported; re-encrypt it with "
                            "ssh-keygen -p." },
    { "passphrase_required", "The private key is encrypted; its "
                             "passphrase is required." },
    { "passphrase_wrong", "The passphrase does not decrypt the private "
                          "key." },
    { "passphrase_not_needed", "The private key is not encrypted; leave "
                               "the passphrase empty." },
    { "mismatch", "The public key does not belong to the private key." },
    { "kdf_too_costly", "The private key's passphrase is stretched with "
                        "more than 64 bcrypt rounds, which every session "
                        "start would pay for; re-encrypt it with "
                        "ssh-keygen -p -a 16." },
    { "internal_error", "The key could not be checked because of an "
                        "internal error." }
};


static const char  *ngx_segura_sshkey_fields[] = {
    NULL,
    "private_key",
    "passphrase",
    "public_key"
};


/* the OpenSSH private key ciphers libssh 0.10 can decrypt */
static const char  *ngx_segura_sshkey_ciphers[] = {
    "aes128-ctr", "aes192-ctr", "aes256-ctr",
    "aes128-cbc", "aes192-cbc", "aes256-cbc",
    NULL
};


const char *
ngx_segura_sshkey_reason_name(ngx_segura_sshkey_reason_e reason)
{
    if ((unsigned) reason >= sizeof(ngx_segura_sshkey_reasons)
                             / sizeof(ngx_segura_sshkey_reasons[0]))
    {
        return "internal_error";
    }

    return ngx_segura_sshkey_reasons[reason].name;
}


const char *
ngx_segura_sshkey_field_name(ngx_segura_sshkey_field_e field)
{
    if ((unsigned) field >= sizeof(ngx_segura_sshkey_fields)
                            / sizeof(ngx_segura_sshkey_fields[0]))
    {
        return NULL;
    }

    return ngx_segura_sshkey_fields[field];
}


const char *
ngx_segura_sshkey_message(ngx_segura_sshkey_reason_e reason)
{
    if ((unsigned) reason >= sizeof(ngx_segura_sshkey_reasons)
                             / sizeof(ngx_segura_sshkey_reasons[0]))
    {
        reason = NGX_SEGURA_SSHKEY_INTERNAL_ERROR;
    }

    return ngx_segura_sshkey_reasons[reason].message;
}


static const struct {
    const char           *name;
    enum ssh_keytypes_e   type;
    int                   bits;
} ngx_segura_sshkey_kinds[] = {
    { "ed25519", SSH_KEYTYPE_ED25519, 0 },
    { "rsa-3072", SSH_KEYTYPE_RSA, 3072 },
    { "rsa-4096", SSH_KEYTYPE_RSA, 4096 },
    { "ecdsa-p256", SSH_KEYTYPE_ECDSA_P256, 256 },
    { "ecdsa-p384", SSH_KEYTYPE_ECDSA_P384, 384 },
    { NULL, 0, 0 }
};


int
ngx_segura_sshkey_kind(const char *name, enum ssh_keytypes_e *type,
    int *bits)
{
    size_t  i;

    for (i = 0; ngx_segura_sshkey_kinds[i].name != NULL; i++) {
        if (strcmp(ngx_segura_sshkey_kinds[i].name, name) == 0) {
            *type = ngx_segura_sshkey_kinds[i].type;
            *bits = ngx_segura_sshkey_kinds[i].bits;
            return 0;
        }
    }

    return -1;
}


char *
ngx_segura_sshkey_generate(enum ssh_keytypes_e type, int bits)
{
    int       rc;
    char     *b64, *text;
    size_t    len;
    ssh_key   key;

    key = NULL;
    b64 = NULL;
    text = NULL;

    rc = ssh_pki_generate(type, bits, &key);

    if (rc == SSH_OK) {
        rc = ssh_pki_export_privkey_base64(key, NULL, NULL, NULL, &b64);
    }

    ssh_key_free(key);

    if (rc == SSH_OK && b64 != NULL) {
        len = strlen(b64);
        text = malloc(len + 1);

        if (text != NULL) {
            memcpy(text, b64, len + 1);
        }
    }

    if (b64 != NULL) {
        OPENSSL_cleanse(b64, strlen(b64));
        ssh_string_free_char(b64);
    }

    ERR_clear_error();

    return text;
}


int
ngx_segura_sshkey_inspect(const char *private_key, size_t len,
    const char *passphrase, const char *public_key,
    ngx_segura_sshkey_info_t *info)
{
    size_t                    n;
    ssh_key                   key;
    ngx_segura_sshkey_info_t  pub;

    if (info == NULL) {
        return -1;
    }

    key = NULL;

    if (ngx_segura_sshkey_parse(private_key, len, passphrase, 1, &key, info)
        != 0)
    {
        return -1;
    }

    ssh_key_free(key);

    if (public_key == NULL) {
        return 0;
    }

    n = strnlen(public_key, NGX_SEGURA_SSHKEY_MAX_PUBLIC + 1);

    if (ngx_segura_sshkey_public_info(public_key, n, &pub) != 0) {
        return ngx_segura_sshkey_fail(info, pub.reason,
                                      NGX_SEGURA_SSHKEY_FIELD_PUBLIC_KEY);
    }

    if (strcmp(pub.public_key, info->public_key) != 0) {
        return ngx_segura_sshkey_fail(info, NGX_SEGURA_SSHKEY_MISMATCH,
                                      NGX_SEGURA_SSHKEY_FIELD_PUBLIC_KEY);
    }

    return 0;
}


int
ngx_segura_sshkey_import(const char *private_key, size_t len,
    const char *passphrase, ssh_key *key, ngx_segura_sshkey_info_t *info)
{
    ngx_segura_sshkey_info_t  local;

    if (key == NULL) {
        return -1;
    }

    *key = NULL;

    return ngx_segura_sshkey_parse(private_key, len, passphrase, 0, key,
                                   (info != NULL) ? info : &local);
}


int
ngx_segura_sshkey_public_info(const char *line, size_t len,
    ngx_segura_sshkey_info_t *info)
{
    int                         rc;
    char                       *b64;
    size_t                      type_len, b64_len, blob_len;
    ssh_key                     key;
    const char                 *p, *last, *type;
    unsigned char              *blob;
    enum ssh_keytypes_e         kt;
    ngx_segura_sshkey_reason_e  reason;

    if (info == NULL) {
        return -1;
    }

    memset(info, 0, sizeof(ngx_segura_sshkey_info_t));

    if (line == NULL || len == 0) {
        return ngx_segura_sshkey_fail(info, NGX_SEGURA_SSHKEY_UNPARSABLE,
                                      NGX_SEGURA_SSHKEY_FIELD_PUBLIC_KEY);
    }

    if (len > NGX_SEGURA_SSHKEY_MAX_PUBLIC) {
        return ngx_segura_sshkey_fail(info, NGX_SEGURA_SSHKEY_TOO_LONG,
                                      NGX_SEGURA_SSHKEY_FIELD_PUBLIC_KEY);
    }

    p = line;
    last = line + len;

    while (p < last && ngx_segura_sshkey_is_space(*p)) {
        p++;
    }

    while (last > p && ngx_segura_sshkey_is_space(last[-1])) {
        last--;
    }

    /* one line, no NUL: a comment may hold anything else */

    if (memchr(line, '\0', len) != NULL
        || memchr(p, '\n', last - p) != NULL
        || memchr(p, '\r', last - p) != NULL)
    {
        return ngx_segura_sshkey_fail(info, NGX_SEGURA_SSHKEY_UNPARSABLE,
                                      NGX_SEGURA_SSHKEY_FIELD_PUBLIC_KEY);
    }

    type = p;

    while (p < last && *p != ' ' && *p != '\t') {
        p++;
    }

    type_len = p - type;

    while (p < last && (*p == ' ' || *p == '\t')) {
        p++;
    }

    b64 = (char *) p;

    while (p < last && *p != ' ' && *p != '\t') {
        p++;
    }

    b64_len = p - b64;

    if (type_len == 0 || type_len >= NGX_SEGURA_SSHKEY_TYPE_LEN
        || b64_len == 0)
    {
        return ngx_segura_sshkey_fail(info, NGX_SEGURA_SSHKEY_UNPARSABLE,
                                      NGX_SEGURA_SSHKEY_FIELD_PUBLIC_KEY);
    }

    if (ngx_segura_sshkey_b64_decode(b64, b64_len, &blob, &blob_len) != 0) {
        return ngx_segura_sshkey_fail(info, NGX_SEGURA_SSHKEY_UNPARSABLE,
                                      NGX_SEGURA_SSHKEY_FIELD_PUBLIC_KEY);
    }

    reason = ngx_segura_sshkey_blob_info(blob, blob_len, info);
    free(blob);

    if (reason == NGX_SEGURA_SSHKEY_OK
        && (strlen(info->type) != type_len
            || memcmp(info->type, type, type_len) != 0))
    {
        /* the name in front must be the one inside the blob */
        reason = NGX_SEGURA_SSHKEY_UNPARSABLE;
    }

    if (reason != NGX_SEGURA_SSHKEY_OK) {
        return ngx_segura_sshkey_fail(info, reason,
                                      NGX_SEGURA_SSHKEY_FIELD_PUBLIC_KEY);
    }

    kt = ssh_key_type_from_name(info->type);

    /* libssh wants a C string */
    b64 = strndup(b64, b64_len);
    if (b64 == NULL) {
        return ngx_segura_sshkey_fail(info, NGX_SEGURA_SSHKEY_INTERNAL_ERROR,
                                      NGX_SEGURA_SSHKEY_FIELD_NONE);
    }

    key = NULL;
    rc = ssh_pki_import_pubkey_base64(b64, kt, &key);

    if (rc != SSH_OK) {
        free(b64);
        return ngx_segura_sshkey_fail(info, NGX_SEGURA_SSHKEY_UNPARSABLE,
                                      NGX_SEGURA_SSHKEY_FIELD_PUBLIC_KEY);
    }

    reason = ngx_segura_sshkey_describe(key, info);
    ssh_key_free(key);

    /*
     * Only the canonical encoding is accepted, so that equal keys give
     * equal lines: libssh ignores trailing bytes in a blob, and base64
     * has more than one spelling of some inputs.
     */

    if (reason == NGX_SEGURA_SSHKEY_OK
        && (strncmp(info->public_key, info->type, type_len) != 0
            || info->public_key[type_len] != ' '
            || strcmp(info->public_key + type_len + 1, b64) != 0))
    {
        reason = NGX_SEGURA_SSHKEY_UNPARSABLE;
    }

    free(b64);

    if (reason != NGX_SEGURA_SSHKEY_OK) {
        return ngx_segura_sshkey_fail(info, reason,
                                      NGX_SEGURA_SSHKEY_FIELD_PUBLIC_KEY);
    }

    ERR_clear_error();

    return 0;
}


/*
 * The work of inspect and import.  strict: a passphrase given for an
 * unencrypted key is an error (inspect) rather than ignored (import).
 * On success *keyp is the private key, owned by the caller.
 */

static int
ngx_segura_sshkey_parse(const char *private_key, size_t len,
    const char *passphrase, int strict, ssh_key *keyp,
    ngx_segura_sshkey_info_t *info)
{
    int                         rc;
    char                       *buf, *p;
    size_t                      i, n, plen, enc_len;
    ssh_key                     key;
    const char                 *pass;
    unsigned char              *enc;
    ngx_segura_sshkey_text_t    text;
    ngx_segura_sshkey_reason_e  reason;
    ngx_segura_sshkey_field_e   field;

    memset(info, 0, sizeof(ngx_segura_sshkey_info_t));
    memset(&text, 0, sizeof(ngx_segura_sshkey_text_t));

    buf = NULL;
    n = 0;
    key = NULL;
    field = NGX_SEGURA_SSHKEY_FIELD_PRIVATE_KEY;

    if (private_key == NULL || len == 0) {
        reason = NGX_SEGURA_SSHKEY_UNPARSABLE;
        goto failed;
    }

    if (len > NGX_SEGURA_SSHKEY_MAX_PRIVATE) {
        reason = NGX_SEGURA_SSHKEY_TOO_LONG;
        goto failed;
    }

    if (memchr(private_key, '\0', len) != NULL) {
        reason = NGX_SEGURA_SSHKEY_UNPARSABLE;
        goto failed;
    }

    plen = 0;

    if (passphrase != NULL) {
        plen = strnlen(passphrase, NGX_SEGURA_SSHKEY_MAX_PASSPHRASE + 1);

        if (plen > NGX_SEGURA_SSHKEY_MAX_PASSPHRASE) {
            reason = NGX_SEGURA_SSHKEY_TOO_LONG;
            field = NGX_SEGURA_SSHKEY_FIELD_PASSPHRASE;
            goto failed;
        }
    }

    pass = (plen != 0) ? passphrase : NULL;

    /* a NUL-terminated copy for libssh, with CRLF turned into LF */

    buf = malloc(len + 1);
    if (buf == NULL) {
        reason = NGX_SEGURA_SSHKEY_INTERNAL_ERROR;
        field = NGX_SEGURA_SSHKEY_FIELD_NONE;
        goto failed;
    }

    for (i = 0; i < len; i++) {
        if (private_key[i] == '\r' && i + 1 < len
            && private_key[i + 1] == '\n')
        {
            continue;
        }

        buf[n++] = private_key[i];
    }

    buf[n] = '\0';

    reason = ngx_segura_sshkey_frame(buf, n, &text);
    if (reason != NGX_SEGURA_SSHKEY_OK) {
        goto failed;
    }

    if (text.format == NGX_SEGURA_SSHKEY_FORMAT_OPENSSH) {
        reason = ngx_segura_sshkey_openssh(&text, info);
        if (reason != NGX_SEGURA_SSHKEY_OK) {
            goto failed;
        }
    }

    info->encrypted = text.encrypted;

    if (text.encrypted && pass == NULL) {
        reason = NGX_SEGURA_SSHKEY_PASSPHRASE_REQUIRED;
        field = NGX_SEGURA_SSHKEY_FIELD_PASSPHRASE;
        goto failed;
    }

    if (!text.encrypted) {
        pass = NULL;
    }

    if (text.format != NGX_SEGURA_SSHKEY_FORMAT_OPENSSH) {
        reason = ngx_segura_sshkey_pem(buf, n, &text, pass, info);
        if (reason != NGX_SEGURA_SSHKEY_OK) {
            if (reason == NGX_SEGURA_SSHKEY_PASSPHRASE_WRONG) {
                field = NGX_SEGURA_SSHKEY_FIELD_PASSPHRASE;
            }

            goto failed;
        }
    }

    rc = ssh_pki_import_privkey_base64(buf, pass, ngx_segura_sshkey_refuse,
                                       NULL, &key);
    if (rc != SSH_OK) {
        key = NULL;

        if (text.encrypted
            && text.format == NGX_SEGURA_SSHKEY_FORMAT_OPENSSH)
        {
            /* a wrong passphrase fails the check integers (PROTOCOL.key) */
            reason = NGX_SEGURA_SSHKEY_PASSPHRASE_WRONG;
            field = NGX_SEGURA_SSHKEY_FIELD_PASSPHRASE;

        } else {
            reason = NGX_SEGURA_SSHKEY_UNPARSABLE;
        }

        goto failed;
    }

    reason = ngx_segura_sshkey_describe(key, info);
    if (reason != NGX_SEGURA_SSHKEY_OK) {
        if (reason != NGX_SEGURA_SSHKEY_INTERNAL_ERROR) {
            reason = NGX_SEGURA_SSHKEY_UNPARSABLE;
        }

        goto failed;
    }

    if (info->type[0] == 's' && strcmp(info->type, "ssh-rsa") == 0
        && info->bits < NGX_SEGURA_SSHKEY_MIN_RSA_BITS)
    {
        reason = NGX_SEGURA_SSHKEY_WEAK_KEY;
        goto failed;
    }

    /*
     * libssh does not check that the public key stored beside an OpenSSH
     * private key is its public half; we use the derived one, and refuse a
     * file whose two halves disagree.
     */

    if (text.format == NGX_SEGURA_SSHKEY_FORMAT_OPENSSH) {
        p = strchr(info->public_key, ' ') + 1;
        enc_len = (text.pub.n + 2) / 3 * 4;

        enc = malloc(enc_len + 1);
        if (enc == NULL) {
            reason = NGX_SEGURA_SSHKEY_INTERNAL_ERROR;
            field = NGX_SEGURA_SSHKEY_FIELD_NONE;
            goto failed;
        }

        rc = EVP_EncodeBlock(enc, text.pub.p, (int) text.pub.n);
        rc = (rc >= 0 && (size_t) rc == enc_len
              && strcmp((char *) enc, p) == 0);
        free(enc);

        if (!rc) {
            reason = NGX_SEGURA_SSHKEY_UNPARSABLE;
            goto failed;
        }
    }

    if (strict && !text.encrypted && passphrase != NULL
        && passphrase[0] != '\0')
    {
        reason = NGX_SEGURA_SSHKEY_PASSPHRASE_NOT_NEEDED;
        field = NGX_SEGURA_SSHKEY_FIELD_PASSPHRASE;
        goto failed;
    }

    if (text.decoded != NULL) {
        OPENSSL_cleanse(text.decoded, text.decoded_len);
        free(text.decoded);
    }

    OPENSSL_cleanse(buf, len + 1);
    free(buf);

    ERR_clear_error();

    *keyp = key;

    return 0;

failed:

    /* ssh_key_free() wipes the key (OpenSSL clears the private numbers) */
    ssh_key_free(key);

    if (text.decoded != NULL) {
        OPENSSL_cleanse(text.decoded, text.decoded_len);
        free(text.decoded);
    }

    if (buf != NULL) {
        OPENSSL_cleanse(buf, len + 1);
        free(buf);
    }

    return ngx_segura_sshkey_fail(info, reason, field);
}


/*
 * Finds the one PEM block ("-----BEGIN <label>-----" ... "-----END
 * <label>-----") that must make up the whole text apart from whitespace,
 * and tells from its label and headers the format and whether it is
 * encrypted (RFC 7468; RFC 1421 headers for the legacy formats).
 */

static ngx_segura_sshkey_reason_e
ngx_segura_sshkey_frame(char *buf, size_t len, ngx_segura_sshkey_text_t *text)
{
    char    *p, *last, *label, *dash, *body, *end;
    size_t   label_len, begin_len, end_len, dashes_len;

    begin_len = sizeof(NGX_SEGURA_SSHKEY_BEGIN) - 1;
    end_len = sizeof(NGX_SEGURA_SSHKEY_END) - 1;
    dashes_len = sizeof(NGX_SEGURA_SSHKEY_DASHES) - 1;

    p = buf;
    last = buf + len;

    while (p < last && ngx_segura_sshkey_is_space(*p)) {
        p++;
    }

    while (last > p && ngx_segura_sshkey_is_space(last[-1])) {
        last--;
    }

    if ((size_t) (last - p) < begin_len
        || memcmp(p, NGX_SEGURA_SSHKEY_BEGIN, begin_len) != 0)
    {
        return NGX_SEGURA_SSHKEY_UNPARSABLE;
    }

    label = p + begin_len;

    dash = memmem(label, last - label, NGX_SEGURA_SSHKEY_DASHES, dashes_len);
    if (dash == NULL) {
        return NGX_SEGURA_SSHKEY_UNPARSABLE;
    }

    label_len = dash - label;
    body = dash + dashes_len;

    if (label_len == 0 || label_len > NGX_SEGURA_SSHKEY_MAX_LABEL
        || body >= last || *body != '\n'
        || memchr(label, '\n', label_len) != NULL)
    {
        return NGX_SEGURA_SSHKEY_UNPARSABLE;
    }

    body++;

    /* the END line closes the text, with the same label */

    if ((size_t) (last - body) < 1 + end_len + label_len + dashes_len) {
        return NGX_SEGURA_SSHKEY_UNPARSABLE;
    }

    end = last - (end_len + label_len + dashes_len);

    if (end[-1] != '\n'
        || memcmp(end, NGX_SEGURA_SSHKEY_END, end_len) != 0
        || memcmp(end + end_len, label, label_len) != 0
        || memcmp(end + end_len + label_len, NGX_SEGURA_SSHKEY_DASHES,
                  dashes_len) != 0)
    {
        return NGX_SEGURA_SSHKEY_UNPARSABLE;
    }

    text->body = body;
    text->body_len = end - body;

    /* no second block inside */

    if (memmem(body, text->body_len, NGX_SEGURA_SSHKEY_DASHES, dashes_len)
        != NULL)
    {
        return NGX_SEGURA_SSHKEY_UNPARSABLE;
    }

#define ngx_segura_sshkey_label_is(s)                                        \
    (label_len == sizeof(s) - 1 && memcmp(label, s, label_len) == 0)

    if (ngx_segura_sshkey_label_is("OPENSSH PRIVATE KEY")) {
        text->format = NGX_SEGURA_SSHKEY_FORMAT_OPENSSH;

    } else if (ngx_segura_sshkey_label_is("RSA PRIVATE KEY")
               || ngx_segura_sshkey_label_is("EC PRIVATE KEY"))
    {
        text->format = NGX_SEGURA_SSHKEY_FORMAT_LEGACY;

    } else if (ngx_segura_sshkey_label_is("PRIVATE KEY")) {
        text->format = NGX_SEGURA_SSHKEY_FORMAT_PKCS8;

    } else if (ngx_segura_sshkey_label_is("ENCRYPTED PRIVATE KEY")) {
        text->format = NGX_SEGURA_SSHKEY_FORMAT_PKCS8;
        text->encrypted = 1;

    } else if (ngx_segura_sshkey_label_is("DSA PRIVATE KEY")) {
        return NGX_SEGURA_SSHKEY_DSA_NOT_SUPPORTED;

    } else {
        return NGX_SEGURA_SSHKEY_UNPARSABLE;
    }

#undef ngx_segura_sshkey_label_is

    /*
     * Headers: only "Proc-Type: 4,ENCRYPTED" followed by "DEK-Info:", and
     * only in the legacy formats.  Anything else with a colon is refused,
     * so that no encrypted key is ever taken for a plain one.
     */

    if (text->format == NGX_SEGURA_SSHKEY_FORMAT_LEGACY
        && text->body_len > sizeof(NGX_SEGURA_SSHKEY_PROC_TYPE) - 1
        && memcmp(body, NGX_SEGURA_SSHKEY_PROC_TYPE,
                  sizeof(NGX_SEGURA_SSHKEY_PROC_TYPE) - 1) == 0)
    {
        p = body + sizeof(NGX_SEGURA_SSHKEY_PROC_TYPE) - 1;

        if ((size_t) (end - p) < sizeof("DEK-Info:") - 1
            || memcmp(p, "DEK-Info:", sizeof("DEK-Info:") - 1) != 0)
        {
            return NGX_SEGURA_SSHKEY_UNPARSABLE;
        }

        p = memchr(p, '\n', end - p);
        if (p == NULL || memchr(p, ':', end - p) != NULL) {
            return NGX_SEGURA_SSHKEY_UNPARSABLE;
        }

        text->encrypted = 1;

    } else if (memchr(body, ':', text->body_len) != NULL) {
        return NGX_SEGURA_SSHKEY_UNPARSABLE;
    }

    return NGX_SEGURA_SSHKEY_OK;
}


/*
 * Reads the unencrypted header of an OpenSSH private key (PROTOCOL.key in
 * OpenSSH's sources): magic, cipher, KDF, KDF options, the number of keys
 * and the public key, which gives type and strength before decryption.
 */

static ngx_segura_sshkey_reason_e
ngx_segura_sshkey_openssh(ngx_segura_sshkey_text_t *text,
    ngx_segura_sshkey_info_t *info)
{
    size_t                      i, magic_len;
    uint32_t                    nkeys, rounds;
    ngx_segura_sshkey_buf_t     b, b2, cipher, kdf, kdfopts, priv, salt;
    ngx_segura_sshkey_reason_e  reason;

    if (ngx_segura_sshkey_b64_decode(text->body, text->body_len,
                                     &text->decoded, &text->decoded_len)
        != 0)
    {
        return NGX_SEGURA_SSHKEY_UNPARSABLE;
    }

    b.p = text->decoded;
    b.n = text->decoded_len;

    /* the magic includes its terminating NUL */
    magic_len = sizeof(NGX_SEGURA_SSHKEY_OPENSSH_MAGIC);

    if (b.n < magic_len
        || memcmp(b.p, NGX_SEGURA_SSHKEY_OPENSSH_MAGIC, magic_len) != 0)
    {
        return NGX_SEGURA_SSHKEY_UNPARSABLE;
    }

    b.p += magic_len;
    b.n -= magic_len;

    if (ngx_segura_sshkey_get_string(&b, &cipher) != 0
        || ngx_segura_sshkey_get_string(&b, &kdf) != 0
        || ngx_segura_sshkey_get_string(&b, &kdfopts) != 0
        || ngx_segura_sshkey_get_u32(&b, &nkeys) != 0
        || nkeys != 1
        || ngx_segura_sshkey_get_string(&b, &text->pub) != 0
        || ngx_segura_sshkey_get_string(&b, &priv) != 0)
    {
        return NGX_SEGURA_SSHKEY_UNPARSABLE;
    }

    reason = ngx_segura_sshkey_blob_info(text->pub.p, text->pub.n, info);
    if (reason != NGX_SEGURA_SSHKEY_OK) {
        return reason;
    }

    if (strcmp(info->type, "ssh-rsa") == 0
        && info->bits < NGX_SEGURA_SSHKEY_MIN_RSA_BITS)
    {
        return NGX_SEGURA_SSHKEY_WEAK_KEY;
    }

    if (ngx_segura_sshkey_string_is(&cipher, "none")) {
        if (!ngx_segura_sshkey_string_is(&kdf, "none") || kdfopts.n != 0
            || b.n != 0)
        {
            return NGX_SEGURA_SSHKEY_UNPARSABLE;
        }

        return NGX_SEGURA_SSHKEY_OK;
    }

    if (!ngx_segura_sshkey_string_is(&kdf, "bcrypt")) {
        return NGX_SEGURA_SSHKEY_UNSUPPORTED_CIPHER;
    }

    /* the KDF options: a salt, then the number of rounds */

    b2 = kdfopts;

    if (ngx_segura_sshkey_get_string(&b2, &salt) != 0
        || ngx_segura_sshkey_get_u32(&b2, &rounds) != 0
        || b2.n != 0 || rounds == 0)
    {
        return NGX_SEGURA_SSHKEY_UNPARSABLE;
    }

    if (rounds > NGX_SEGURA_SSHKEY_MAX_BCRYPT_ROUNDS) {
        return NGX_SEGURA_SSHKEY_KDF_TOO_COSTLY;
    }

    for (i = 0; ngx_segura_sshkey_ciphers[i] != NULL; i++) {
        if (ngx_segura_sshkey_string_is(&cipher,
                                        ngx_segura_sshkey_ciphers[i]))
        {
            break;
        }
    }

    /* AEAD ciphers (aes*-gcm, chacha20-poly1305) append a tag: refused */

    if (ngx_segura_sshkey_ciphers[i] == NULL) {
        return NGX_SEGURA_SSHKEY_UNSUPPORTED_CIPHER;
    }

    if (b.n != 0) {
        return NGX_SEGURA_SSHKEY_UNPARSABLE;
    }

    text->encrypted = 1;

    return NGX_SEGURA_SSHKEY_OK;
}


/*
 * PEM and PKCS#8 keys: OpenSSL first, with a callback that only ever
 * returns our passphrase, to tell a wrong passphrase and the key type
 * (DSA, RSA size, EC curve) apart before libssh sees the key.
 */

static ngx_segura_sshkey_reason_e
ngx_segura_sshkey_pem(const char *buf, size_t len,
    ngx_segura_sshkey_text_t *text, const char *passphrase,
    ngx_segura_sshkey_info_t *info)
{
    int                         bits;
    BIO                        *bio;
    char                        group[64];
    size_t                      n;
    EVP_PKEY                   *pkey;
    const char                 *type;
    ngx_segura_sshkey_reason_e  reason;

    bio = BIO_new_mem_buf(buf, (int) len);
    if (bio == NULL) {
        return NGX_SEGURA_SSHKEY_INTERNAL_ERROR;
    }

    pkey = PEM_read_bio_PrivateKey(bio, NULL, ngx_segura_sshkey_pem_password,
                                   (void *) passphrase);
    BIO_free(bio);

    if (pkey == NULL) {
        return text->encrypted ? NGX_SEGURA_SSHKEY_PASSPHRASE_WRONG
                               : NGX_SEGURA_SSHKEY_UNPARSABLE;
    }

    reason = NGX_SEGURA_SSHKEY_OK;
    type = NULL;
    bits = 0;

    switch (EVP_PKEY_get_base_id(pkey)) {

    case EVP_PKEY_RSA:
        type = "ssh-rsa";
        bits = EVP_PKEY_get_bits(pkey);

        if (bits < NGX_SEGURA_SSHKEY_MIN_RSA_BITS) {
            reason = NGX_SEGURA_SSHKEY_WEAK_KEY;
        }

        break;

    case EVP_PKEY_EC:
        if (EVP_PKEY_get_group_name(pkey, group, sizeof(group), &n) != 1) {
            reason = NGX_SEGURA_SSHKEY_UNSUPPORTED_TYPE;

        } else if (strcmp(group, "prime256v1") == 0) {
            type = "ecdsa-sha2-nistp256";
            bits = 256;

        } else if (strcmp(group, "secp384r1") == 0) {
            type = "ecdsa-sha2-nistp384";
            bits = 384;

        } else if (strcmp(group, "secp521r1") == 0) {
            type = "ecdsa-sha2-nistp521";
            bits = 521;

        } else {
            reason = NGX_SEGURA_SSHKEY_UNSUPPORTED_TYPE;
        }

        break;

    case EVP_PKEY_ED25519:

        /*
         * libssh 0.10 imports a PKCS#8 Ed25519 key without its public
         * half: it can neither export nor authenticate with it.
         * ssh-keygen writes Ed25519 keys in the OpenSSH format only.
         */

        type = "ssh-ed25519";
        bits = 256;
        reason = NGX_SEGURA_SSHKEY_UNSUPPORTED_TYPE;
        break;

    case EVP_PKEY_DSA:
        type = "ssh-dss";
        reason = NGX_SEGURA_SSHKEY_DSA_NOT_SUPPORTED;
        break;

    default:
        reason = NGX_SEGURA_SSHKEY_UNSUPPORTED_TYPE;
    }

    /* frees and clears the private numbers */
    EVP_PKEY_free(pkey);

    if (type != NULL) {
        strcpy(info->type, type);
        info->bits = (bits > 0) ? (unsigned) bits : 0;
    }

    return reason;
}


/* type, bits, public line and fingerprint of a (private or public) key */

static ngx_segura_sshkey_reason_e
ngx_segura_sshkey_describe(ssh_key key, ngx_segura_sshkey_info_t *info)
{
    int                         n;
    char                       *b64, *fp;
    size_t                      hlen, blob_len;
    const char                 *name;
    unsigned char              *hash, *blob;
    enum ssh_keytypes_e         kt;
    ngx_segura_sshkey_reason_e  reason;

    kt = ssh_key_type(key);

    switch (kt) {

    case SSH_KEYTYPE_RSA:
    case SSH_KEYTYPE_ECDSA_P256:
    case SSH_KEYTYPE_ECDSA_P384:
    case SSH_KEYTYPE_ECDSA_P521:
    case SSH_KEYTYPE_ED25519:
        break;

    case SSH_KEYTYPE_DSS:
        return NGX_SEGURA_SSHKEY_DSA_NOT_SUPPORTED;

    default:
        return NGX_SEGURA_SSHKEY_UNSUPPORTED_TYPE;
    }

    name = ssh_key_type_to_char(kt);
    if (name == NULL) {
        return NGX_SEGURA_SSHKEY_INTERNAL_ERROR;
    }

    b64 = NULL;

    if (ssh_pki_export_pubkey_base64(key, &b64) != SSH_OK || b64 == NULL) {
        return NGX_SEGURA_SSHKEY_INTERNAL_ERROR;
    }

    n = snprintf(info->public_key, sizeof(info->public_key), "%s %s",
                 name, b64);

    if (n < 0 || (size_t) n >= sizeof(info->public_key)) {
        ssh_string_free_char(b64);
        return NGX_SEGURA_SSHKEY_TOO_LONG;
    }

    n = ngx_segura_sshkey_b64_decode(b64, strlen(b64), &blob, &blob_len);
    ssh_string_free_char(b64);

    if (n != 0) {
        return NGX_SEGURA_SSHKEY_INTERNAL_ERROR;
    }

    reason = ngx_segura_sshkey_blob_info(blob, blob_len, info);
    free(blob);

    if (reason != NGX_SEGURA_SSHKEY_OK) {
        return reason;
    }

    if (strcmp(info->type, name) != 0) {
        return NGX_SEGURA_SSHKEY_INTERNAL_ERROR;
    }

    hash = NULL;

    if (ssh_get_publickey_hash(key, SSH_PUBLICKEY_HASH_SHA256, &hash, &hlen)
        != 0)
    {
        return NGX_SEGURA_SSHKEY_INTERNAL_ERROR;
    }

    /* "SHA256:" and unpadded base64, as ssh-keygen -l prints it */
    fp = ssh_get_fingerprint_hash(SSH_PUBLICKEY_HASH_SHA256, hash, hlen);
    ssh_clean_pubkey_hash(&hash);

    if (fp == NULL) {
        return NGX_SEGURA_SSHKEY_INTERNAL_ERROR;
    }

    if (strlen(fp) >= sizeof(info->fingerprint)) {
        ssh_string_free_char(fp);
        return NGX_SEGURA_SSHKEY_INTERNAL_ERROR;
    }

    strcpy(info->fingerprint, fp);
    ssh_string_free_char(fp);

    return NGX_SEGURA_SSHKEY_OK;
}


/*
 * Type and size from a public key blob (RFC 4253 section 6.6, RFC 5656
 * section 3.1, RFC 8709 section 4); the blob must hold nothing more.
 */

static ngx_segura_sshkey_reason_e
ngx_segura_sshkey_blob_info(const unsigned char *blob, size_t len,
    ngx_segura_sshkey_info_t *info)
{
    size_t                   i;
    BIGNUM                  *bn;
    ngx_segura_sshkey_buf_t  b, type, s1, s2;

    static const struct {
        const char          *name;
        const char          *curve;
        unsigned             bits;
    } ecdsa[] = {
        { "ecdsa-sha2-nistp256", "nistp256", 256 },
        { "ecdsa-sha2-nistp384", "nistp384", 384 },
        { "ecdsa-sha2-nistp521", "nistp521", 521 }
    };

    b.p = blob;
    b.n = len;

    if (ngx_segura_sshkey_get_string(&b, &type) != 0
        || type.n == 0 || type.n >= sizeof(info->type))
    {
        return NGX_SEGURA_SSHKEY_UNPARSABLE;
    }

    for (i = 0; i < type.n; i++) {
        if (type.p[i] <= 0x20 || type.p[i] >= 0x7f) {
            return NGX_SEGURA_SSHKEY_UNPARSABLE;
        }
    }

    memcpy(info->type, type.p, type.n);
    info->type[type.n] = '\0';
    info->bits = 0;

    if (ngx_segura_sshkey_string_is(&type, "ssh-rsa")) {

        /* e, then n */

        if (ngx_segura_sshkey_get_string(&b, &s1) != 0
            || ngx_segura_sshkey_get_string(&b, &s2) != 0
            || b.n != 0 || s1.n == 0 || s2.n == 0 || s2.n > 8192)
        {
            return NGX_SEGURA_SSHKEY_UNPARSABLE;
        }

        bn = BN_bin2bn(s2.p, (int) s2.n, NULL);
        if (bn == NULL) {
            return NGX_SEGURA_SSHKEY_INTERNAL_ERROR;
        }

        info->bits = BN_num_bits(bn);
        BN_free(bn);

        return NGX_SEGURA_SSHKEY_OK;
    }

    if (ngx_segura_sshkey_string_is(&type, "ssh-ed25519")) {

        if (ngx_segura_sshkey_get_string(&b, &s1) != 0
            || b.n != 0 || s1.n != 32)
        {
            return NGX_SEGURA_SSHKEY_UNPARSABLE;
        }

        info->bits = 256;

        return NGX_SEGURA_SSHKEY_OK;
    }

    for (i = 0; i < sizeof(ecdsa) / sizeof(ecdsa[0]); i++) {

        if (!ngx_segura_sshkey_string_is(&type, ecdsa[i].name)) {
            continue;
        }

        /* the curve name, then the point Q */

        if (ngx_segura_sshkey_get_string(&b, &s1) != 0
            || !ngx_segura_sshkey_string_is(&s1, ecdsa[i].curve)
            || ngx_segura_sshkey_get_string(&b, &s2) != 0
            || b.n != 0 || s2.n == 0)
        {
            return NGX_SEGURA_SSHKEY_UNPARSABLE;
        }

        info->bits = ecdsa[i].bits;

        return NGX_SEGURA_SSHKEY_OK;
    }

    if (ngx_segura_sshkey_string_is(&type, "ssh-dss")) {
        return NGX_SEGURA_SSHKEY_DSA_NOT_SUPPORTED;
    }

    /* certificates, security keys (sk-*), anything else */

    return NGX_SEGURA_SSHKEY_UNSUPPORTED_TYPE;
}


/*
 * Decodes base64 with whitespace (line breaks of PEM bodies) removed.
 * *out is malloc()ed; the caller wipes it if the data is secret, and frees
 * it.  The whitespace-free copy is wiped here.
 */

static int
ngx_segura_sshkey_b64_decode(const char *in, size_t len, unsigned char **out,
    size_t *out_len)
{
    int             n;
    size_t          i, m, pad;
    unsigned char  *tmp, *p;

    *out = NULL;
    *out_len = 0;

    if (len == 0 || len > NGX_SEGURA_SSHKEY_MAX_PRIVATE) {
        return -1;
    }

    tmp = malloc(len);
    if (tmp == NULL) {
        return -1;
    }

    for (i = 0, m = 0; i < len; i++) {
        if (!ngx_segura_sshkey_is_space(in[i])) {
            tmp[m++] = (unsigned char) in[i];
        }
    }

    if (m == 0 || m % 4 != 0) {
        OPENSSL_cleanse(tmp, len);
        free(tmp);
        return -1;
    }

    pad = (tmp[m - 1] == '=') + (tmp[m - 2] == '=');

    p = malloc(m / 4 * 3);
    if (p == NULL) {
        OPENSSL_cleanse(tmp, len);
        free(tmp);
        return -1;
    }

    /* EVP_DecodeBlock() counts the padding as decoded zero bytes */
    n = EVP_DecodeBlock(p, tmp, (int) m);

    OPENSSL_cleanse(tmp, len);
    free(tmp);

    if (n < 0 || (size_t) n != m / 4 * 3 || (size_t) n <= pad) {
        OPENSSL_cleanse(p, m / 4 * 3);
        free(p);
        return -1;
    }

    *out = p;
    *out_len = (size_t) n - pad;

    return 0;
}


static int
ngx_segura_sshkey_get_u32(ngx_segura_sshkey_buf_t *b, uint32_t *v)
{
    if (b->n < 4) {
        return -1;
    }

    *v = ((uint32_t) b->p[0] << 24) | ((uint32_t) b->p[1] << 16)
         | ((uint32_t) b->p[2] << 8) | (uint32_t) b->p[3];

    b->p += 4;
    b->n -= 4;

    return 0;
}


static int
ngx_segura_sshkey_get_string(ngx_segura_sshkey_buf_t *b,
    ngx_segura_sshkey_buf_t *s)
{
    uint32_t  len;

    if (ngx_segura_sshkey_get_u32(b, &len) != 0 || len > b->n) {
        return -1;
    }

    s->p = b->p;
    s->n = len;

    b->p += len;
    b->n -= len;

    return 0;
}


static int
ngx_segura_sshkey_string_is(ngx_segura_sshkey_buf_t *s, const char *str)
{
    size_t  n;

    n = strlen(str);

    return s->n == n && memcmp(s->p, str, n) == 0;
}


static int
ngx_segura_sshkey_is_space(int c)
{
    return c == ' ' || c == '\t' || c == '\n' || c == '\r';
}


/* OpenSSL's pem_password_cb: our passphrase or nothing, never a prompt */

static int
ngx_segura_sshkey_pem_password(char *buf, int size, int rwflag, void *data)
{
    size_t       n;
    const char  *passphrase;

    (void) rwflag;

    passphrase = data;

    if (passphrase == NULL || size <= 0) {
        return -1;
    }

    n = strlen(passphrase);

    if (n > (size_t) size) {
        return -1;
    }

    memcpy(buf, passphrase, n);

    return (int) n;
}


/* libssh's ssh_auth_callback when there is no passphrase: refuse */

static int
ngx_segura_sshkey_refuse(const char *prompt, char *buf, size_t len,
    int echo, int verify, void *userdata)
{
    (void) prompt;
    (void) buf;
    (void) len;
    (void) echo;
    (void) verify;
    (void) userdata;

    return SSH_ERROR;
}


static int
ngx_segura_sshkey_fail(ngx_segura_sshkey_info_t *info,
    ngx_segura_sshkey_reason_e reason, ngx_segura_sshkey_field_e field)
{
    info->reason = reason;
    info->field = field;
    info->public_key[0] = '\0';
    info->fingerprint[0] = '\0';

    ERR_clear_error();

    return -1;
}
