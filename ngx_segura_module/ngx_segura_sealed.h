
/*
 * Copyright (C) ngx_segura_module authors
 */


#ifndef _NGX_SEGURA_SEALED_H_INCLUDED_
#define _NGX_SEGURA_SEALED_H_INCLUDED_


#include <ngx_config.h>
#include <ngx_core.h>
#include "ngx_segura.h"

#include <libssh/libssh.h>


/*
 * pool threads only: the private key of ssh_keys row key_id from its
 * sealed columns as libpq returns them (bytea text; pass may be NULL),
 * imported into *key.  The plain texts are wiped before it returns.
 * On NGX_ERROR, err says why, for the log (never a secret).
 */
ngx_int_t ngx_segura_sealed_key(ngx_http_segura_main_conf_t *smcf,
    int64_t key_id, const char *priv, const char *pass, ssh_key *key,
    char *err, size_t errlen);

/*
 * either thread: plain (NUL-terminated) sealed with the current master key
 * under "ssh_keys/<key_id>/<column>", as a bytea literal ("\\x..."),
 * malloc()ed: the caller frees it (ciphertext is not secret; plain is only
 * read).  NULL with err on failure.
 */
char *ngx_segura_sealed_seal(ngx_http_segura_main_conf_t *smcf,
    const char *key_id, const char *column, const char *plain, char *err,
    size_t errlen);


#endif /* _NGX_SEGURA_SEALED_H_INCLUDED_ */
