
/*
 * Copyright (C) ngx_segura_module authors
 */


/*
 * The search index's cost per output byte, as the recorder pays it: stdin
 * is fed to an index (ngx_segura_index.c) in reads of up to 4 KiB, and the
 * set is taken as array literals every 64 KiB, as a chunk is.  Prints the
 * bytes, the chunks and the words stored (the literals' bytes).  Run under
 * callgrind by t/perf/index_cost.sh for instructions per byte.
 */


#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "ngx_segura_index.h"


int
main(void)
{
    char                *w, *t;
    ssize_t              n;
    size_t               total, in_chunk, chunks, hashes, literal;
    unsigned char        buf[4096], master[32];
    ngx_segura_index_t   idx;

    memset(master, 0x5a, sizeof(master));

    if (ngx_segura_index_init(&idx, master, sizeof(master), 1) != 0) {
        return 1;
    }

    total = in_chunk = chunks = hashes = literal = 0;

    while ((n = read(0, buf, sizeof(buf))) > 0) {
        ngx_segura_index_feed(&idx, buf, (size_t) n, (uint32_t) chunks);
        total += (size_t) n;
        in_chunk += (size_t) n;

        if (in_chunk >= 65536) {
            hashes += idx.n;
            if (ngx_segura_index_take(&idx, &w, &t) != 0) {
                return 1;
            }
            literal += strlen(w) + strlen(t);
            free(w);
            free(t);
            in_chunk = 0;
            chunks++;
        }
    }

    ngx_segura_index_end(&idx);
    hashes += idx.n;
    if (ngx_segura_index_take(&idx, &w, &t) != 0) {
        return 1;
    }
    literal += strlen(w) + strlen(t);
    free(w);
    free(t);
    chunks++;

    printf("{\"bytes\":%zu,\"chunks\":%zu,\"words\":%zu,"
           "\"words_per_chunk\":%.1f,\"literal_bytes\":%zu,"
           "\"binary_bytes_per_byte\":%.4f}\n",
           total, chunks, hashes, (double) hashes / chunks, literal,
           (double) hashes * 12 / total);

    ngx_segura_index_free(&idx);

    return 0;
}
