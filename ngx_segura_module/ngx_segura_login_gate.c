
/*
 * Copyright (C) ngx_segura_module authors
 */


/*
 * The per-worker memory of client addresses whose login budget
 * (segura_login_address_limit) is spent: once the database has refused an
 * address, its next logins for a short while (at most
 * NGX_SEGURA_LOGIN_GATE_TTL) are answered 429 on the event loop, with no
 * pool task and no SQL.  Event loop only (ngx_segura_api.c); it owns
 * static memory of its own and depends on nothing but nginx.
 *
 * A direct-mapped table: a colliding address takes the slot over, which
 * only means that the database refuses the other one again.  An entry
 * holds only for the budget that refused it (a location with another
 * limit or window, or none, asks the database).  The database stays the
 * authority: nothing is ever admitted from here.
 */


#include <ngx_config.h>
#include <ngx_core.h>
#include "ngx_segura_login_gate.h"


#define NGX_SEGURA_LOGIN_GATE_SLOTS  256
#define NGX_SEGURA_LOGIN_GATE_ADDR   64      /* as login_addresses.addr */


typedef struct {
    ngx_msec_t                until;      /* refused on the loop until */
    ngx_msec_t                retry_at;   /* the database's Retry-After */
    ngx_uint_t                limit;      /* the budget that refused it */
    ngx_msec_t                window;
    size_t                    len;        /* 0: a free slot */
    u_char                    addr[NGX_SEGURA_LOGIN_GATE_ADDR];
} ngx_segura_login_gate_slot_t;


static ngx_segura_login_gate_slot_t
    ngx_segura_login_gate_slots[NGX_SEGURA_LOGIN_GATE_SLOTS];


static ngx_segura_login_gate_slot_t *
ngx_segura_login_gate_slot(const u_char *addr, size_t len)
{
    if (len > NGX_SEGURA_LOGIN_GATE_ADDR) {
        len = NGX_SEGURA_LOGIN_GATE_ADDR;
    }

    return &ngx_segura_login_gate_slots[ngx_crc32_short((u_char *) addr, len)
                                        % NGX_SEGURA_LOGIN_GATE_SLOTS];
}


ngx_uint_t
ngx_segura_login_gate_refused(const char *addr, ngx_uint_t limit,
    ngx_msec_t window)
{
    size_t                         len;
    ngx_msec_int_t                 left;
    ngx_segura_login_gate_slot_t  *s;

    if (limit == 0) {
        return 0;
    }

    len = ngx_min(ngx_strlen(addr), NGX_SEGURA_LOGIN_GATE_ADDR);
    s = ngx_segura_login_gate_slot((const u_char *) addr, len);

    if (s->len != len || ngx_memcmp(s->addr, addr, len) != 0
        || s->limit != limit || s->window != window)
    {
        return 0;
    }

    if ((ngx_msec_int_t) (s->until - ngx_current_msec) <= 0) {
        s->len = 0;
        return 0;
    }

    /* whole seconds, rounded up, at least 1 */

    left = (ngx_msec_int_t) (s->retry_at - ngx_current_msec);

    return left > 1000 ? (ngx_uint_t) (left + 999) / 1000 : 1;
}


void
ngx_segura_login_gate_remember(const char *addr, ngx_uint_t limit,
    ngx_msec_t window, ngx_uint_t retry_after)
{
    size_t                         len;
    ngx_msec_t                     ttl;
    ngx_segura_login_gate_slot_t  *s;

    if (retry_after == 0 || limit == 0) {
        return;
    }

    if (retry_after > 86400) {
        retry_after = 86400;
    }

    len = ngx_min(ngx_strlen(addr), NGX_SEGURA_LOGIN_GATE_ADDR);
    s = ngx_segura_login_gate_slot((const u_char *) addr, len);

    ttl = ngx_min((ngx_msec_t) retry_after * 1000, NGX_SEGURA_LOGIN_GATE_TTL);

    ngx_memcpy(s->addr, addr, len);
    s->len = len;
    s->limit = limit;
    s->window = window;
    s->until = ngx_current_msec + ttl;
    s->retry_at = ngx_current_msec + (ngx_msec_t) retry_after * 1000;
}
