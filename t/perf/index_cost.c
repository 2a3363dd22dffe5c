
/*
 * Copyright (C) ngx_segura_module authors
 */


/*
 * The search index's cost per output byte, as the recorder pays it: stdin
 * is fed to an index (ngx_segura_index.c) in reads of up to 4 KiB, in
 * slices of NGX_SEGURA_INDEX_SLICE, and the set is taken as a Bloom filter
 * every 64 KiB or when it is full, as a chunk is cut.  Prints the
 * bytes, the chunks, the words and the filters' bytes.  Run under
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
    unsigned char       *f;
    size_t               fl;
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
        size_t  k, s;

        for (k = 0; k < (size_t) n; k += s) {
            s = (size_t) n - k;
            s = (s < NGX_SEGURA_INDEX_SLICE) ? s : NGX_SEGURA_INDEX_SLICE;

            ngx_segura_index_feed(&idx, buf + k, s, (uint32_t) chunks);
            in_chunk += s;

            if (in_chunk < 65536 && !ngx_segura_index_full(&idx)) {
                continue;
            }

            hashes += idx.n;
            if (ngx_segura_index_take(&idx, &f, &fl) != 0) {
                return 1;
            }
            literal += fl;
            free(f);
            in_chunk = 0;
            chunks++;
        }

        total += (size_t) n;
    }

    ngx_segura_index_end(&idx);
    hashes += idx.n;
    if (ngx_segura_index_take(&idx, &f, &fl) != 0) {
        return 1;
    }
    literal += fl;
    free(f);
    chunks++;

    printf("{\"bytes\":%zu,\"chunks\":%zu,\"words\":%zu,"
           "\"words_per_chunk\":%.1f,\"filter_bytes\":%zu,"
           "\"filter_bytes_per_byte\":%.4f,\"lost\":%zu}\n",
           total, chunks, hashes, (double) hashes / chunks, literal,
           (double) literal / total, idx.lost);

    ngx_segura_index_free(&idx);

    return 0;
}
