
/*
 * Copyright (C) ngx_segura_module authors
 */


#ifndef _NGX_SEGURA_LOGIN_GATE_H_INCLUDED_
#define _NGX_SEGURA_LOGIN_GATE_H_INCLUDED_


#include <ngx_config.h>
#include <ngx_core.h>


/* how long an address the database refused is refused on the loop */
#define NGX_SEGURA_LOGIN_GATE_TTL  2000


/*
 * event loop: the Retry-After seconds (>= 1) when the address's logins
 * are still refused under this budget (segura_login_address_limit and
 * its window; limit 0: none), else 0
 */
ngx_uint_t ngx_segura_login_gate_refused(const char *addr, ngx_uint_t limit,
    ngx_msec_t window);

/* event loop: the database refused the address for retry_after seconds */
void ngx_segura_login_gate_remember(const char *addr, ngx_uint_t limit,
    ngx_msec_t window, ngx_uint_t retry_after);


#endif /* _NGX_SEGURA_LOGIN_GATE_H_INCLUDED_ */
