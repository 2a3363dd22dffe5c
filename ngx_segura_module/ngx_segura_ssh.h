
/*
 * Copyright (C) ngx_segura_module authors
 */


#ifndef _NGX_SEGURA_SSH_H_INCLUDED_
#define _NGX_SEGURA_SSH_H_INCLUDED_


#include <ngx_config.h>
#include <ngx_core.h>
#include "ngx_segura.h"

#include <libssh/libssh.h>
#include <libssh/callbacks.h>


#define NGX_SEGURA_SSH_LINE_LEN    4096
#define NGX_SEGURA_SSH_FP_LEN      64
#define NGX_SEGURA_SSH_ERRLEN      256

/* libssh 0.10 keeps the low 16 bits of a descriptor (SSH_OPTIONS_FD) */
#define NGX_SEGURA_SSH_MAX_FD      0xffff

/*
 * RSA keys above this size sign in a pool thread: measured here with
 * "openssl speed", an RSA-2048 signature takes 0.66 ms, RSA-3072 2.0 ms,
 * RSA-4096 4.6 ms, Ed25519 and ECDSA well under 0.1 ms
 */
#define NGX_SEGURA_SSH_HEAVY_RSA   2048

/*
 * libssh's own ciphers, AES-GCM first: with AES-NI the relay costs 4.85 M
 * instructions per MiB with aes256-gcm against 7.9 M with libssh's
 * default first choice, chacha20-poly1305 (callgrind, docs/performance.md);
 * aes128-gcm would save 7 % more.  chacha20 and CTR remain for devices
 * without GCM.
 */
#define NGX_SEGURA_SSH_CIPHERS                                               \
    "aes256-gcm@openssh.com,aes128-gcm@openssh.com,"                         \
    "chacha20-poly1305@openssh.com,aes128-ctr,aes192-ctr,aes256-ctr"


typedef struct {
    /* in, owned by the caller */
    const char          *username;
    const char          *pinned_type;   /* type of the pinned key, or NULL */
    unsigned             cols;
    unsigned             rows;
    ngx_uint_t           rsa_bits;      /* 0 unless the key is RSA */

    /* in: the private key, freed (and so wiped) once it has been used */
    ssh_key              key;

    /*
     * in, instead of a key: a one-time password (POST /api/keys/{id}/
     * deploy), NUL-terminated, owned and wiped by the caller; libssh's
     * copy goes through a buffer it wipes when freed
     */
    const char          *password;

    /* out */
    ssh_session          session;       /* owns the socket */
    ssh_channel          channel;
    ngx_socket_t         fd;
    ngx_segura_ws_err_e  err;
    char                 host_key[NGX_SEGURA_SSH_LINE_LEN];
    char                 host_key_fp[NGX_SEGURA_SSH_FP_LEN];
    char                 text[NGX_SEGURA_SSH_ERRLEN];

    ngx_uint_t           step;          /* of ngx_segura_ssh_shell() */

    /*
     * which of the channel's buffers in libssh may hold data: [0] stdout,
     * [1] stderr.  Set whenever libssh puts a data packet in one, in
     * whichever call read it from the socket; cleared by the relay when a
     * read of that stream finds it empty.  Reading or polling a stream
     * whose buffer is empty costs libssh a poll() and a recv().
     */
    u_char               buffered[2];
    struct ssh_channel_callbacks_struct  callbacks;
} ngx_segura_ssh_t;


/*
 * The steps of an SSH set-up on a connected non-blocking socket.  Each
 * returns NGX_OK when done, NGX_AGAIN when it waits for the socket (call
 * it again on readiness), NGX_ERROR with ssh->err and ssh->text set.
 * Whoever owns the session at the time calls them: the event loop, or a
 * pool thread for ngx_segura_ssh_auth() with a heavy key.
 */
ngx_int_t ngx_segura_ssh_start(ngx_segura_ssh_t *ssh, ngx_socket_t fd,
    const char *host);
ngx_int_t ngx_segura_ssh_handshake(ngx_segura_ssh_t *ssh);
ngx_uint_t ngx_segura_ssh_heavy(ngx_segura_ssh_t *ssh);
ngx_int_t ngx_segura_ssh_offer(ngx_segura_ssh_t *ssh);
ngx_int_t ngx_segura_ssh_auth(ngx_segura_ssh_t *ssh);
ngx_int_t ngx_segura_ssh_shell(ngx_segura_ssh_t *ssh);
ngx_int_t ngx_segura_ssh_fail(ngx_segura_ssh_t *ssh, ngx_segura_ws_err_e err,
    const char *what, const char *text);

/*
 * The host-key decision, once ssh->host_key_fp is known: NGX_OK when it
 * matches the pin (pinned_fp, "" for none), NGX_DECLINED when there is
 * no pin and the policy allows pinning it now (trust on first use),
 * NGX_ERROR with ssh->err and ssh->text set otherwise.
 */
/*
 * either thread: the type of a public key line "<type> <base64> ..." into
 * type (size bytes, "" when it does not fit or there is none)
 */
void ngx_segura_ssh_line_type(char *type, size_t size, const char *line);

/* either thread: a text for a person, into JSON: printable ASCII only */
void ngx_segura_ssh_printable(char *dst, size_t len, const char *src);

ngx_int_t ngx_segura_ssh_host_key(ngx_segura_ssh_t *ssh,
    const char *pinned_fp, ngx_uint_t strict);

/* either thread, whoever owns the session at the time; safe to call twice */
void ngx_segura_ssh_close(ngx_segura_ssh_t *ssh);


#endif /* _NGX_SEGURA_SSH_H_INCLUDED_ */
