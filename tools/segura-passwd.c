
/*
 * Copyright (C) ngx_segura_module authors
 */


/*
 * segura-passwd: reads a password on standard input (one line) and prints
 * its argon2id hash in the encoded form the module stores in
 * users.password_hash ("$argon2id$v=19$m=...,t=...,p=...$salt$hash"),
 * so that the first administrator can be created from the command line:
 *
 *   printf '%s\n' "$PASSWORD" | build/segura-passwd
 *
 * The parameters are the module's defaults for new hashes; each hash
 * carries its own, so they can be raised later.
 */


#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <argon2.h>
#include <openssl/crypto.h>
#include <openssl/rand.h>


#define SEGURA_ARGON2_T     2
#define SEGURA_ARGON2_M     19456
#define SEGURA_ARGON2_P     1
#define SEGURA_SALT_LEN     16
#define SEGURA_HASH_LEN     32
#define SEGURA_MAX_PASSWORD 1024


int
main(void)
{
    int            rc;
    size_t         len, enclen;
    char           password[SEGURA_MAX_PASSWORD + 2], *encoded;
    unsigned char  salt[SEGURA_SALT_LEN];

    if (fgets(password, sizeof(password), stdin) == NULL) {
        fprintf(stderr, "segura-passwd: no password on standard input\n");
        return 1;
    }

    len = strlen(password);

    if (len && password[len - 1] == '\n') {
        password[--len] = '\0';

    } else if (len > SEGURA_MAX_PASSWORD) {
        fprintf(stderr, "segura-passwd: password longer than %d bytes\n",
                SEGURA_MAX_PASSWORD);
        OPENSSL_cleanse(password, sizeof(password));
        return 1;
    }

    if (len < 8) {
        fprintf(stderr, "segura-passwd: password shorter than 8 bytes\n");
        OPENSSL_cleanse(password, sizeof(password));
        return 1;
    }

    if (RAND_bytes(salt, sizeof(salt)) != 1) {
        fprintf(stderr, "segura-passwd: RAND_bytes() failed\n");
        OPENSSL_cleanse(password, sizeof(password));
        return 1;
    }

    enclen = argon2_encodedlen(SEGURA_ARGON2_T, SEGURA_ARGON2_M,
                               SEGURA_ARGON2_P, SEGURA_SALT_LEN,
                               SEGURA_HASH_LEN, Argon2_id);

    encoded = malloc(enclen);
    if (encoded == NULL) {
        OPENSSL_cleanse(password, sizeof(password));
        return 1;
    }

    rc = argon2id_hash_encoded(SEGURA_ARGON2_T, SEGURA_ARGON2_M,
                               SEGURA_ARGON2_P, password, len,
                               salt, sizeof(salt), SEGURA_HASH_LEN,
                               encoded, enclen);

    OPENSSL_cleanse(password, sizeof(password));

    if (rc != ARGON2_OK) {
        fprintf(stderr, "segura-passwd: argon2id_hash_encoded() failed: %s\n",
                argon2_error_message(rc));
        free(encoded);
        return 1;
    }

    printf("%s\n", encoded);
    free(encoded);

    return 0;
}
