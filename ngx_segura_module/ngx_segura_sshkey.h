
/*
 * Copyright (C) ngx_segura_module authors
 */


#ifndef _NGX_SEGURA_SSHKEY_H_INCLUDED_
#define _NGX_SEGURA_SSHKEY_H_INCLUDED_


#include <stddef.h>

#include <libssh/libssh.h>


/*
 * SSH key inspection (libssh, and OpenSSL where libssh cannot tell).
 *
 * Plain C, no nginx types, no globals, no logging: every function may be
 * called from any thread, concurrently (libssh 0.10's key import and
 * fingerprint functions keep no shared mutable state; its log level and
 * callback are thread-local and default to "no logging" in a new thread).
 * OpenSSL's thread-local error queue is left empty on return.
 *
 * ssh_init() is the caller's job: the module calls it once per process
 * (libssh also runs it from a library constructor when it is loaded).
 *
 * Accepted private keys: OpenSSH format ("BEGIN OPENSSH PRIVATE KEY",
 * unencrypted or bcrypt + aes{128,192,256}-{ctr,cbc}), PKCS#1 / SEC1 PEM
 * ("BEGIN RSA|EC PRIVATE KEY", optionally "Proc-Type: 4,ENCRYPTED") and
 * PKCS#8 ("BEGIN PRIVATE KEY", "BEGIN ENCRYPTED PRIVATE KEY"); one key,
 * surrounded by whitespace only; CRLF line ends are accepted.  Types:
 * RSA >= 2048 bits, ECDSA P-256/P-384/P-521, Ed25519 (OpenSSH format
 * only: libssh 0.10 loads a PKCS#8 Ed25519 key without its public half,
 * so it is refused as unsupported_type).
 *
 * A passphrase given for an unencrypted key is an error
 * (passphrase_not_needed on field "passphrase"): storing a secret that is
 * never used is pointless, and it usually means the wrong key was pasted.
 *
 * Checks run in this order, the first failure is reported: size and
 * format of the private key, its type and strength (known without the
 * passphrase for the OpenSSH format), the passphrase, then the public key.
 */


#define NGX_SEGURA_SSHKEY_MAX_PRIVATE     16384   /* bytes of key text */
#define NGX_SEGURA_SSHKEY_MAX_PASSPHRASE  1024    /* bytes, without NUL */
#define NGX_SEGURA_SSHKEY_MAX_PUBLIC      8192    /* bytes of a public line */
#define NGX_SEGURA_SSHKEY_MIN_RSA_BITS    2048

#define NGX_SEGURA_SSHKEY_TYPE_LEN        64
#define NGX_SEGURA_SSHKEY_LINE_LEN        4096
#define NGX_SEGURA_SSHKEY_FP_LEN          64


typedef enum {
    NGX_SEGURA_SSHKEY_OK = 0,
    NGX_SEGURA_SSHKEY_UNPARSABLE,            /* "unparsable" */
    NGX_SEGURA_SSHKEY_TOO_LONG,              /* "too_long" */
    NGX_SEGURA_SSHKEY_DSA_NOT_SUPPORTED,     /* "dsa_not_supported" */
    NGX_SEGURA_SSHKEY_WEAK_KEY,              /* "weak_key" */
    NGX_SEGURA_SSHKEY_UNSUPPORTED_TYPE,      /* "unsupported_type" */
    NGX_SEGURA_SSHKEY_UNSUPPORTED_CIPHER,    /* "unsupported_cipher" */
    NGX_SEGURA_SSHKEY_PASSPHRASE_REQUIRED,   /* "passphrase_required" */
    NGX_SEGURA_SSHKEY_PASSPHRASE_WRONG,      /* "passphrase_wrong" */
    NGX_SEGURA_SSHKEY_PASSPHRASE_NOT_NEEDED, /* "passphrase_not_needed" */
    NGX_SEGURA_SSHKEY_MISMATCH,              /* "mismatch" */
    NGX_SEGURA_SSHKEY_KDF_TOO_COSTLY,        /* "kdf_too_costly" */
    NGX_SEGURA_SSHKEY_INTERNAL_ERROR         /* "internal_error" */
} ngx_segura_sshkey_reason_e;


typedef enum {
    NGX_SEGURA_SSHKEY_FIELD_NONE = 0,        /* NULL (internal_error) */
    NGX_SEGURA_SSHKEY_FIELD_PRIVATE_KEY,     /* "private_key" */
    NGX_SEGURA_SSHKEY_FIELD_PASSPHRASE,      /* "passphrase" */
    NGX_SEGURA_SSHKEY_FIELD_PUBLIC_KEY       /* "public_key" */
} ngx_segura_sshkey_field_e;


/*
 * Filled by the functions below; the caller owns it (a stack variable will
 * do).  It never holds private material or the passphrase.  On failure
 * the strings are empty and bits is 0, except that type and bits are kept
 * where they are known (weak_key, for example, reports "ssh-rsa", 1024).
 */

typedef struct {
    ngx_segura_sshkey_reason_e  reason;
    ngx_segura_sshkey_field_e   field;
    unsigned                    bits;        /* 2048.., 256/384/521, 256 */
    unsigned                    encrypted;   /* 1: private key had one */

    /* "ssh-rsa", "ecdsa-sha2-nistp256", "ssh-ed25519", ... */
    char                        type[NGX_SEGURA_SSHKEY_TYPE_LEN];

    /* "<type> <base64>", no comment, as in ~/.ssh/authorized_keys */
    char                        public_key[NGX_SEGURA_SSHKEY_LINE_LEN];

    /* "SHA256:<unpadded base64>", as printed by "ssh-keygen -lf" */
    char                        fingerprint[NGX_SEGURA_SSHKEY_FP_LEN];
} ngx_segura_sshkey_info_t;


/*
 * Checks a private key submitted by an administrator.  private_key is
 * len bytes of text, no NUL inside and none counted in len; passphrase is
 * NULL or "" for none; public_key is an OpenSSH public line, or NULL to
 * derive it from the private key.  Returns 0 with info filled, or -1 with
 * info->reason and info->field set.  The inputs are only read; every
 * intermediate copy of private material made here is wiped and freed.
 */
int ngx_segura_sshkey_inspect(const char *private_key, size_t len,
    const char *passphrase, const char *public_key,
    ngx_segura_sshkey_info_t *info);

/*
 * Parses a public key line "<type> <base64> [comment]" (device host keys,
 * the public_key field).  Reasons use field "public_key": unparsable,
 * too_long, dsa_not_supported, unsupported_type (certificates, security
 * key types, unknown names).  Key strength is not checked here: the caller
 * judges info->type and info->bits.
 */
int ngx_segura_sshkey_public_info(const char *line, size_t len,
    ngx_segura_sshkey_info_t *info);

/*
 * Imports a stored private key for a session: the same checks as
 * ngx_segura_sshkey_inspect() without the public key, except that a
 * passphrase stored for an unencrypted key is ignored.  On success *key is
 * a private ssh_key the caller frees with ssh_key_free() (which wipes it);
 * info may be NULL.  The caller still wipes its own plaintext buffers.
 */
int ngx_segura_sshkey_import(const char *private_key, size_t len,
    const char *passphrase, ssh_key *key, ngx_segura_sshkey_info_t *info);

/* wire names for the API's 422 errors; reason never NULL, field NULL
 * for NGX_SEGURA_SSHKEY_FIELD_NONE */
const char *ngx_segura_sshkey_reason_name(ngx_segura_sshkey_reason_e reason);
const char *ngx_segura_sshkey_field_name(ngx_segura_sshkey_field_e field);

/* a sentence for a person, never NULL */
const char *ngx_segura_sshkey_message(ngx_segura_sshkey_reason_e reason);

/*
 * The kinds of key the module makes (POST /api/keys/generate, rotations):
 * "ed25519", "rsa-3072", "rsa-4096", "ecdsa-p256", "ecdsa-p384".  Returns
 * 0 with *type and *bits set, -1 for another name.
 */
int ngx_segura_sshkey_kind(const char *name, enum ssh_keytypes_e *type,
    int *bits);

/* the one-line list of the kinds above, for error messages */
#define NGX_SEGURA_SSHKEY_KINDS                                              \
    "One of ed25519, rsa-3072, rsa-4096, ecdsa-p256, ecdsa-p384"

/*
 * A new private key (libssh, OpenSSL's random bytes) as OpenSSH or PEM
 * text, malloc()ed: the caller wipes and frees it.  NULL on failure.
 * Costs up to seconds of CPU for RSA: pool threads.
 */
char *ngx_segura_sshkey_generate(enum ssh_keytypes_e type, int bits);


#endif /* _NGX_SEGURA_SSHKEY_H_INCLUDED_ */
