
/*
 * Copyright (C) ngx_segura_module authors
 */


/*
 * segura-vault: seals a secret with a master key the way the module does,
 * for scripts that write ssh_keys rows directly (tests, migrations of
 * existing vaults):
 *
 *   segura-vault seal <master key file> <key id> <associated data> < secret
 *
 * prints the sealed blob as a PostgreSQL bytea literal ("\x<hex>").  The
 * associated data of a key row is "ssh_keys/<id>/private_key" or
 * "ssh_keys/<id>/passphrase".
 *
 *   segura-vault open <master key file> <key id> <associated data> < blob
 *
 * reads a blob as raw bytes and prints the secret: for tests that check
 * what the module sealed (a generated key), never for a production vault
 * whose secrets belong in memory only.
 */


#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/crypto.h>

#include "ngx_segura_vault.h"


#define SEGURA_MAX_SECRET  (64 * 1024)


int
main(int argc, char **argv)
{
    int                     id;
    FILE                   *f;
    size_t                  len, n, i;
    unsigned char           key[NGX_SEGURA_VAULT_KEY_LEN + 1], *plain, *blob;
    ngx_segura_vault_err_e  err;

    if (argc != 5
        || (strcmp(argv[1], "seal") != 0 && strcmp(argv[1], "open") != 0))
    {
        fprintf(stderr, "usage: segura-vault seal|open <master key file> "
                "<key id> <associated data> < secret|blob\n");
        return 2;
    }

    id = atoi(argv[3]);
    if (id < 1 || id > 255) {
        fprintf(stderr, "segura-vault: key id must be 1-255\n");
        return 2;
    }

    f = fopen(argv[2], "rb");
    if (f == NULL) {
        perror("segura-vault: master key");
        return 1;
    }

    n = fread(key, 1, sizeof(key), f);
    fclose(f);

    if (n != NGX_SEGURA_VAULT_KEY_LEN) {
        fprintf(stderr, "segura-vault: the master key must be 32 bytes\n");
        OPENSSL_cleanse(key, sizeof(key));
        return 1;
    }

    plain = malloc(SEGURA_MAX_SECRET + 1);
    blob = malloc(ngx_segura_vault_sealed_size(SEGURA_MAX_SECRET));

    if (plain == NULL || blob == NULL) {
        OPENSSL_cleanse(key, sizeof(key));
        return 1;
    }

    len = fread(plain, 1, SEGURA_MAX_SECRET + 1, stdin);

    if (len > SEGURA_MAX_SECRET) {
        fprintf(stderr, "segura-vault: secret longer than %d bytes\n",
                SEGURA_MAX_SECRET);
        OPENSSL_cleanse(plain, SEGURA_MAX_SECRET + 1);
        OPENSSL_cleanse(key, sizeof(key));
        return 1;
    }

    if (strcmp(argv[1], "open") == 0) {
        n = SEGURA_MAX_SECRET + 1;

        if (ngx_segura_vault_open(key, (unsigned) id, argv[4],
                                  strlen(argv[4]), plain, len, blob, &n,
                                  &err)
            != 0)
        {
            fprintf(stderr, "segura-vault: opening failed: %s\n",
                    ngx_segura_vault_strerror(err));
            OPENSSL_cleanse(plain, SEGURA_MAX_SECRET + 1);
            OPENSSL_cleanse(key, sizeof(key));
            return 1;
        }

        fwrite(blob, 1, n, stdout);

        OPENSSL_cleanse(blob, n);
        OPENSSL_cleanse(plain, SEGURA_MAX_SECRET + 1);
        OPENSSL_cleanse(key, sizeof(key));
        free(plain);
        free(blob);

        return 0;
    }

    if (ngx_segura_vault_seal(key, (unsigned) id, argv[4], strlen(argv[4]),
                              plain, len, blob, &err)
        != 0)
    {
        fprintf(stderr, "segura-vault: sealing failed: %s\n",
                ngx_segura_vault_strerror(err));
        OPENSSL_cleanse(plain, SEGURA_MAX_SECRET + 1);
        OPENSSL_cleanse(key, sizeof(key));
        return 1;
    }

    OPENSSL_cleanse(plain, SEGURA_MAX_SECRET + 1);
    OPENSSL_cleanse(key, sizeof(key));

    printf("\\x");

    for (i = 0; i < ngx_segura_vault_sealed_size(len); i++) {
        printf("%02x", blob[i]);
    }

    printf("\n");

    free(plain);
    free(blob);

    return 0;
}
