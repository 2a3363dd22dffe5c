
/*
 * Copyright (C) ngx_segura_module authors
 */


#ifndef _NGX_SEGURA_AUDIT_H_INCLUDED_
#define _NGX_SEGURA_AUDIT_H_INCLUDED_


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>
#include "ngx_segura.h"
#include "ngx_segura_auth.h"

#include <libpq-fe.h>


/*
 * Who may see a session's audit row and its recording (replay, download,
 * search, watch): an administrator; a member of a group with the
 * audit_sessions permission; or the session's own user where the location
 * says "segura_recording_self on".  Anyone else is told the session does
 * not exist.  The rule is segura_may_audit() (sql/020); this is its one
 * use in SQL, for lists: viewer, admin and self are SQL expressions
 * (query parameters, e.g. "$1", "$2", "$5"), owner the session's user id
 * column.
 */
#define NGX_SEGURA_MAY_AUDIT(viewer, admin, self, owner)                     \
    " segura_may_audit(" viewer "::bigint, " admin "::bool, " self "::bool," \
    " " owner ")"


/* ngx_segura_api.h; not included here, so that callers outside the API
 * need not include it */
struct ngx_segura_api_ctx_s;


/*
 * pool threads only.  May me see session id (a uuid, checked by the
 * caller), with self the location's segura_recording_self?  NGX_OK: yes;
 * NGX_DECLINED: no, or no such session (the same answer, on purpose);
 * NGX_ERROR: the database failed, err says how.  conn is the caller's.
 */
ngx_int_t ngx_segura_may_audit(ngx_segura_db_pool_t *db, PGconn **conn,
    const ngx_segura_identity_t *me, ngx_uint_t self, const char *id,
    char *err, size_t errlen);

/*
 * pool threads only, for API routes: the same for the request's identity
 * and location.  NGX_OK: yes; otherwise ctx has failed (404 not_found, or
 * the database's error) and the caller returns.
 */
ngx_int_t ngx_segura_api_may_audit(struct ngx_segura_api_ctx_s *ctx,
    PGconn **conn, const char *id);


#endif /* _NGX_SEGURA_AUDIT_H_INCLUDED_ */
