
/*
 * Copyright (C) ngx_segura_module authors
 */


/*
 * The terminal's output ring (ngx_segura_ring.h): what a resumed viewer
 * gets again, the output its client had not acknowledged when it went
 * away and what the device printed while nobody was attached.  Plain
 * memory, no nginx state: event loop only, like the terminal that owns it.
 */


#include <ngx_config.h>
#include <ngx_core.h>
#include "ngx_segura_ring.h"


#define NGX_SEGURA_RING_FIRST  16384


static ngx_int_t ngx_segura_ring_grow(ngx_segura_ring_t *rg, size_t need,
    ngx_log_t *log);
static void ngx_segura_ring_release(ngx_segura_ring_t *rg);


void
ngx_segura_ring_init(ngx_segura_ring_t *rg, size_t max, off_t offset)
{
    rg->data = NULL;
    rg->size = 0;
    rg->max = max;
    rg->start = offset;
    rg->end = offset;
}


size_t
ngx_segura_ring_room(ngx_segura_ring_t *rg)
{
    return rg->max - (size_t) (rg->end - rg->start);
}


/*
 * overwrite: the oldest bytes make room (the history of a viewer that is
 * attached); otherwise only what fits is taken, and the caller has
 * checked the room
 */

ngx_int_t
ngx_segura_ring_push(ngx_segura_ring_t *rg, u_char *data, size_t len,
    ngx_uint_t overwrite, ngx_log_t *log)
{
    size_t  held, at, n;

    if (len > rg->max) {
        if (!overwrite) {
            return NGX_ERROR;
        }

        /* only the last max bytes can be kept */

        rg->start = rg->end + (off_t) (len - rg->max);
        rg->end = rg->start;
        data += len - rg->max;
        len = rg->max;
    }

    held = (size_t) (rg->end - rg->start);

    if (held + len > rg->max) {
        if (!overwrite) {
            return NGX_ERROR;
        }

        rg->start += (off_t) (held + len - rg->max);
        held = rg->max - len;
    }

    if (held + len > rg->size
        && ngx_segura_ring_grow(rg, held + len, log) != NGX_OK)
    {
        return NGX_ERROR;
    }

    while (len) {
        at = (size_t) rg->end & (rg->size - 1);
        n = ngx_min(len, rg->size - at);

        ngx_memcpy(rg->data + at, data, n);

        data += n;
        len -= n;
        rg->end += (off_t) n;
    }

    return NGX_OK;
}


/* copies up to len bytes from the absolute offset from, within the ring */

size_t
ngx_segura_ring_copy(ngx_segura_ring_t *rg, off_t from, u_char *buf,
    size_t len)
{
    size_t  at, n, copied;

    if (from < rg->start || from >= rg->end) {
        return 0;
    }

    len = ngx_min(len, (size_t) (rg->end - from));
    copied = 0;

    while (len) {
        at = (size_t) from & (rg->size - 1);
        n = ngx_min(len, rg->size - at);

        ngx_memcpy(buf + copied, rg->data + at, n);

        copied += n;
        from += (off_t) n;
        len -= n;
    }

    return copied;
}


/* what lies before upto is not needed any more */

void
ngx_segura_ring_drop(ngx_segura_ring_t *rg, off_t upto)
{
    if (upto > rg->end) {
        upto = rg->end;
    }

    if (upto > rg->start) {
        rg->start = upto;
    }

    if (rg->start == rg->end) {
        ngx_segura_ring_release(rg);
    }
}


void
ngx_segura_ring_reset(ngx_segura_ring_t *rg, off_t offset)
{
    ngx_segura_ring_release(rg);

    rg->start = offset;
    rg->end = offset;
}


static ngx_int_t
ngx_segura_ring_grow(ngx_segura_ring_t *rg, size_t need, ngx_log_t *log)
{
    u_char  *data;
    size_t   size, held;

    size = rg->size ? rg->size : NGX_SEGURA_RING_FIRST;

    while (size < need) {
        size *= 2;
    }

    data = ngx_alloc(size, log);
    if (data == NULL) {
        return NGX_ERROR;
    }

    held = (size_t) (rg->end - rg->start);

    if (held) {
        /* laid out again for the new size: same offsets, new places */

        size_t  at, n, done;
        off_t   off;

        for (done = 0, off = rg->start; done < held; ) {
            at = (size_t) off & (size - 1);
            n = ngx_min(held - done, size - at);
            n = ngx_min(n, rg->size - ((size_t) off & (rg->size - 1)));

            ngx_memcpy(data + at, rg->data + ((size_t) off & (rg->size - 1)),
                       n);

            done += n;
            off += (off_t) n;
        }
    }

    if (rg->data != NULL) {
        ngx_explicit_memzero(rg->data, rg->size);
        ngx_free(rg->data);
    }

    rg->data = data;
    rg->size = size;

    return NGX_OK;
}


static void
ngx_segura_ring_release(ngx_segura_ring_t *rg)
{
    if (rg->data != NULL) {
        /* terminal output may hold what was typed at a prompt */
        ngx_explicit_memzero(rg->data, rg->size);
        ngx_free(rg->data);
        rg->data = NULL;
        rg->size = 0;
    }
}
