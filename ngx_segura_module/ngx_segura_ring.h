
/*
 * Copyright (C) ngx_segura_module authors
 */


#ifndef _NGX_SEGURA_RING_H_INCLUDED_
#define _NGX_SEGURA_RING_H_INCLUDED_


#include <ngx_config.h>
#include <ngx_core.h>


/*
 * A bounded ring of a terminal's output, addressed by absolute offsets in
 * the output stream (bytes since the shell opened): it holds [start, end).
 * Its memory is taken when the first byte comes, grows by doubling up to
 * the bound, and is wiped and given back when the ring empties, so an idle
 * session holds none.
 */

typedef struct {
    u_char                    *data;    /* ngx_alloc()ed, size bytes */
    size_t                     size;    /* a power of two, or 0 */
    size_t                     max;     /* the bound */
    off_t                      start;
    off_t                      end;
} ngx_segura_ring_t;


/* event loop only */
void ngx_segura_ring_init(ngx_segura_ring_t *rg, size_t max, off_t offset);
size_t ngx_segura_ring_room(ngx_segura_ring_t *rg);
ngx_int_t ngx_segura_ring_push(ngx_segura_ring_t *rg, u_char *data,
    size_t len, ngx_uint_t overwrite, ngx_log_t *log);
size_t ngx_segura_ring_copy(ngx_segura_ring_t *rg, off_t from, u_char *buf,
    size_t len);
void ngx_segura_ring_drop(ngx_segura_ring_t *rg, off_t upto);
void ngx_segura_ring_reset(ngx_segura_ring_t *rg, off_t offset);


#endif /* _NGX_SEGURA_RING_H_INCLUDED_ */
