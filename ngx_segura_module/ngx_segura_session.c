
/*
 * Copyright (C) ngx_segura_module authors
 */


/*
 * The /session WebSocket endpoint.  Event loop only.
 *
 * The relay (issue "The /session relay") is not built yet: until it is,
 * the endpoint answers 501 with a JSON error so that nobody mistakes it
 * for a working terminal.
 */


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>
#include "ngx_segura.h"
#include "ngx_segura_session.h"


ngx_int_t
ngx_segura_session_handler(ngx_http_request_t *r)
{
    return ngx_http_segura_send_error(r, NGX_SEGURA_ERR_UNAVAILABLE, NULL,
                                      "Terminal sessions are not available "
                                      "in this build yet");
}
