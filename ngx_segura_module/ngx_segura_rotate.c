
/*
 * Copyright (C) ngx_segura_module authors
 */


/*
 * A key rotation: a new key pair replaces a key on its devices, or (a
 * retry) the devices still on an older version move to the current one.
 * Started by POST /api/keys/{id}/rotate (ngx_segura_api_keys_rotate.c)
 * or by the schedule (ngx_segura_rotate_schedule.c); it runs on its own
 * once started, so a client that goes away leaves nothing half done.
 *
 *   prepare   pool thread: the key's running-rotation row is claimed
 *             (key_rotations, at most one running per key in the fleet);
 *             the key, its devices and the version each uses
 *             (key_device_keys); the new pair made and sealed (or, for a
 *             retry, the current key opened); every private key opened
 *             from the vault and imported once per connection that will
 *             use it
 *   add       event loop, every device, 16 at a time, each connection
 *             within segura_connect_timeout: log in with the key the
 *             device uses, run the deploy's fixed ADD program with the new
 *             public line on stdin, then a second connection
 *             authenticates with the new key (no channel)
 *   switch    pool thread, one transaction: the new pair becomes the
 *             key's current version, the devices that passed use it, the
 *             others keep the version they had (key_devices.key_version);
 *             versions nobody uses go
 *   remove    event loop, the devices that passed: log in with the new
 *             key, run the fixed REMOVE_KEY program with the old public
 *             line on stdin, then authenticate with the old key, which
 *             must be refused
 *   finish    pool thread: the rotation row, key_checks, one audit row
 *
 * Between add and switch a device accepts both keys, so whatever ends
 * the rotation (a crash, a database outage), every device keeps a key
 * that the vault holds for it.  Nothing passes the switch unless it is
 * written.  The switch and the finish are tried again when the database
 * is away (1, 2, 4, 8 ... s, 10 times).  No pool thread waits on a device,
 * none holds a database connection while a device answers.
 *
 * Memory: malloc() for the state and the devices, a pool of its own for
 * the connections; all freed when the rotation ends, the keys left
 * freed (libssh wipes them) and the sealed blob's plaintext never kept.
 */


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>
#include "ngx_segura.h"
#include "ngx_segura_connect.h"
#include "ngx_segura_db.h"
#include "ngx_segura_deploy_program.h"
#include "ngx_segura_exec.h"
#include "ngx_segura_fleet.h"
#include "ngx_segura_rotate.h"
#include "ngx_segura_sealed.h"
#include "ngx_segura_ssh.h"
#include "ngx_segura_sshkey.h"

#include <jansson.h>
#include <openssl/crypto.h>


#define NGX_SEGURA_ROTATE_CONCURRENCY   16
#define NGX_SEGURA_ROTATE_MAX_DEVICES   4096
#define NGX_SEGURA_ROTATE_DETAIL_LEN    256
#define NGX_SEGURA_ROTATE_ERRLEN        256
#define NGX_SEGURA_ROTATE_TRIES         10


typedef enum {
    NGX_SEGURA_ROT_ROTATED = 0,
    NGX_SEGURA_ROT_OLD_ACCEPTED,
    NGX_SEGURA_ROT_REFUSED,
    NGX_SEGURA_ROT_UNREACHABLE,
    NGX_SEGURA_ROT_TIMEOUT,
    NGX_SEGURA_ROT_HOST_KEY_MISMATCH,
    NGX_SEGURA_ROT_HOST_KEY_UNKNOWN,
    NGX_SEGURA_ROT_EXEC_FAILED,
    NGX_SEGURA_ROT_VERIFY_FAILED,
    NGX_SEGURA_ROT_ERROR
} ngx_segura_rot_result_e;


/* the private keys of a device, each used by one connection */
enum {
    NGX_SEGURA_ROT_OLD_EDIT = 0,     /* add: log in as the device does */
    NGX_SEGURA_ROT_NEW_PROBE,        /* add: the new key is accepted */
    NGX_SEGURA_ROT_NEW_EDIT,         /* remove: log in with the new key */
    NGX_SEGURA_ROT_OLD_PROBE,        /* remove: the old key is refused */
    NGX_SEGURA_ROT_KEYS
};


/* the steps of a device */
typedef enum {
    NGX_SEGURA_ROT_ADD = 0,
    NGX_SEGURA_ROT_PROBE_NEW,
    NGX_SEGURA_ROT_REMOVE,
    NGX_SEGURA_ROT_PROBE_OLD
} ngx_segura_rot_step_e;


typedef struct {
    int64_t                     device_id;
    char                        address[256];
    in_port_t                   port;
    char                        pinned_fp[NGX_SEGURA_SSH_FP_LEN];
    char                        pinned_type[64];
    char                       *pin;         /* TOFU: the host key line */

    ngx_int_t                   version;     /* the one it used */
    ngx_uint_t                  old_rsa_bits;
    u_char                     *old_line;    /* "<type> <base64>\n" */
    size_t                      old_line_len;

    ssh_key                     keys[NGX_SEGURA_ROT_KEYS];

    ngx_segura_rot_result_e     result;
    char                        detail[NGX_SEGURA_ROTATE_DETAIL_LEN];
    unsigned                    passed:1;    /* add and probe succeeded */
    unsigned                    done:1;
} ngx_segura_rot_device_t;


/* a connection in flight */
typedef struct {
    ngx_segura_rotate_t        *rt;
    ngx_segura_rot_device_t    *dev;
    ngx_segura_rot_step_e       step;
    ngx_segura_connect_t        cn;
    ngx_segura_ssh_t            ssh;
    ngx_segura_exec_t           ex;
    ngx_log_t                   log;
    unsigned                    busy:1;
} ngx_segura_rot_slot_t;


typedef void (*ngx_segura_rot_task_pt)(ngx_segura_rotate_t *rt,
    PGconn **conn);


struct ngx_segura_rotate_s {
    ngx_segura_rotate_conf_t    conf;
    ngx_segura_rotate_done_pt   done;
    void                       *data;

    ngx_segura_rotate_outcome_e outcome;
    int64_t                     rotation_id;

    ngx_pool_t                 *pool;
    ngx_log_t                   log;
    ngx_thread_task_t          *task;
    ngx_segura_rot_task_pt      task_handler;
    void                      (*next)(ngx_segura_rotate_t *rt);
    ngx_event_t                 again;
    ngx_event_t                 hold;      /* a pass is in the pool */
    ngx_uint_t                  tries;
    unsigned                    db_failed:1;

    char                        key_id[NGX_INT64_LEN + 1];
    char                        kind[16];
    char                        username[65];
    ngx_int_t                   from_version;
    ngx_int_t                   to_version;     /* 0: nothing switched */

    /* the new key (for a retry: the current one) */
    char                       *sealed;         /* bytea literal, or NULL */
    char                        new_type[64];
    char                        new_bits[NGX_INT64_LEN + 1];
    char                        new_public[NGX_SEGURA_SSH_LINE_LEN];
    char                        new_fp[NGX_SEGURA_SSHKEY_FP_LEN];
    ngx_uint_t                  new_rsa_bits;
    u_char                      new_line[NGX_SEGURA_SSH_LINE_LEN + 64];
    size_t                      new_line_len;

    ngx_uint_t                  n;
    ngx_uint_t                  next_dev;
    ngx_uint_t                  running;
    ngx_uint_t                  finished;
    ngx_uint_t                  phase;          /* 0 add, 1 remove */
    ngx_msec_t                  started;
    ngx_segura_rot_device_t    *devices;
    ngx_segura_rot_slot_t       slots[NGX_SEGURA_ROTATE_CONCURRENCY];

    char                        err[NGX_SEGURA_ROTATE_ERRLEN];
    char                        status_detail[NGX_SEGURA_ROTATE_DETAIL_LEN];

    unsigned                    detached:1;
    unsigned                    starting:1;
    unsigned                    replaced:1;     /* the key changed meanwhile */
    unsigned                    aborted:1;      /* prepare failed, claimed */
    unsigned                    claim_ended:1;  /* and its row says so */
};


static void ngx_segura_rotate_post(ngx_segura_rotate_t *rt,
    ngx_segura_rot_task_pt handler, void (*next)(ngx_segura_rotate_t *rt));
static void ngx_segura_rotate_task(void *data, ngx_log_t *log);
static void ngx_segura_rotate_task_done(ngx_event_t *ev);
static void ngx_segura_rotate_again(ngx_event_t *ev);
static void ngx_segura_rotate_hold(ngx_event_t *ev);
static void ngx_segura_rotate_prepare(ngx_segura_rotate_t *rt,
    PGconn **conn);
static ngx_int_t ngx_segura_rotate_claim(ngx_segura_rotate_t *rt,
    PGconn **conn);
static ngx_int_t ngx_segura_rotate_load(ngx_segura_rotate_t *rt,
    PGconn **conn);
static ngx_int_t ngx_segura_rotate_new_key(ngx_segura_rotate_t *rt,
    PGresult *key);
static ngx_int_t ngx_segura_rotate_copies(ngx_segura_rotate_t *rt,
    ssh_key first, ngx_uint_t from, ngx_uint_t to, ngx_uint_t a,
    ngx_uint_t b);
static void ngx_segura_rotate_prepared(ngx_segura_rotate_t *rt);
static void ngx_segura_rotate_more(ngx_segura_rotate_t *rt);
static void ngx_segura_rotate_step(ngx_segura_rot_slot_t *s,
    ngx_segura_rot_step_e step);
static ngx_int_t ngx_segura_rotate_host_key(ngx_segura_connect_t *cn);
static void ngx_segura_rotate_stepped(ngx_segura_connect_t *cn);
static ngx_segura_rot_result_e ngx_segura_rotate_error(ngx_segura_ssh_t *ssh);
static void ngx_segura_rotate_device_end(ngx_segura_rot_slot_t *s);
static void ngx_segura_rotate_switch(ngx_segura_rotate_t *rt, PGconn **conn);
static void ngx_segura_rotate_switched(ngx_segura_rotate_t *rt);
static void ngx_segura_rotate_finish(ngx_segura_rotate_t *rt, PGconn **conn);
static void ngx_segura_rotate_over(ngx_segura_rotate_t *rt);
static json_t *ngx_segura_rotate_items(ngx_segura_rotate_t *rt,
    ngx_uint_t passed_only);
static PGresult *ngx_segura_rotate_query(ngx_segura_rotate_t *rt,
    PGconn **conn, const char *sql, int n, const char *const *params,
    ExecStatusType want);
static void ngx_segura_rotate_free(ngx_segura_rotate_t *rt);


static ngx_inline void
ngx_segura_rotate_id_text(int64_t v, char *buf)
{
    (void) ngx_snprintf((u_char *) buf, NGX_INT64_LEN + 1, "%L%Z", v);
}


static const char *const  ngx_segura_rot_results[] = {
    "rotated", "old_accepted", "refused", "unreachable", "timeout",
    "host_key_mismatch", "host_key_unknown", "exec_failed", "verify_failed",
    "error"
};

/*
 * what a device's result says of the key it uses afterwards, for
 * key_checks (a check probes that key too): the new one, or its own,
 * which logged in for the add; NULL: nothing known
 */
static const char *const  ngx_segura_rot_checks[] = {
    "deployed", "deployed", "refused", "unreachable", "timeout",
    "host_key_mismatch", "host_key_unknown", "deployed", "deployed", NULL
};

static const char  ngx_segura_rotate_add[] = NGX_SEGURA_DEPLOY_ADD_COMMAND;

static const char  ngx_segura_rotate_remove[] =
    NGX_SEGURA_DEPLOY_REMOVE_KEY_COMMAND;

static ngx_uint_t  ngx_segura_rotate_nscheduled;


ngx_int_t
ngx_segura_rotate_start(ngx_segura_rotate_conf_t *conf,
    ngx_segura_rotate_done_pt done, void *data, ngx_segura_rotate_t **rtp)
{
    ngx_uint_t            i;
    ngx_segura_rotate_t  *rt;

    rt = calloc(1, sizeof(ngx_segura_rotate_t));
    if (rt == NULL) {
        return NGX_ERROR;
    }

    rt->conf = *conf;
    rt->done = done;
    rt->data = data;
    rt->log = *conf->log;
    rt->log.action = NULL;
    rt->conf.log = &rt->log;
    rt->conf.kind = NULL;

    if (conf->kind != NULL) {
        (void) ngx_cpystrn((u_char *) rt->kind, (u_char *) conf->kind,
                           sizeof(rt->kind));
    }

    ngx_segura_rotate_id_text(conf->key_id, rt->key_id);

    rt->pool = ngx_create_pool(4096, &rt->log);
    if (rt->pool == NULL) {
        free(rt);
        return NGX_ERROR;
    }

    rt->task = ngx_thread_task_alloc(rt->pool, sizeof(ngx_segura_rotate_t *));
    if (rt->task == NULL) {
        ngx_destroy_pool(rt->pool);
        free(rt);
        return NGX_ERROR;
    }

    *(ngx_segura_rotate_t **) rt->task->ctx = rt;
    rt->task->handler = ngx_segura_rotate_task;
    rt->task->event.data = rt;
    rt->task->event.handler = ngx_segura_rotate_task_done;

    rt->again.handler = ngx_segura_rotate_again;
    rt->again.data = rt;
    rt->again.log = &rt->log;

    rt->hold.handler = ngx_segura_rotate_hold;
    rt->hold.data = rt;
    rt->hold.log = &rt->log;

    rt->started = ngx_current_msec;

    for (i = 0; i < NGX_SEGURA_ROTATE_CONCURRENCY; i++) {
        rt->slots[i].ssh.fd = (ngx_socket_t) -1;
    }

    if (rt->conf.schedule) {
        ngx_segura_rotate_nscheduled++;
    }

    ngx_segura_rotate_post(rt, ngx_segura_rotate_prepare,
                           ngx_segura_rotate_prepared);

    *rtp = rt;

    return NGX_OK;
}


void
ngx_segura_rotate_detach(ngx_segura_rotate_t *rt)
{
    rt->detached = 1;
}


ngx_segura_rotate_outcome_e
ngx_segura_rotate_outcome(ngx_segura_rotate_t *rt)
{
    return rt->outcome;
}


int64_t
ngx_segura_rotate_id(ngx_segura_rotate_t *rt)
{
    return rt->rotation_id;
}


ngx_uint_t
ngx_segura_rotate_scheduled(void)
{
    return ngx_segura_rotate_nscheduled;
}


/* the passes in the pool: one task at a time, reused */

static void
ngx_segura_rotate_post(ngx_segura_rotate_t *rt,
    ngx_segura_rot_task_pt handler, void (*next)(ngx_segura_rotate_t *rt))
{
    rt->task_handler = handler;
    rt->next = next;
    rt->db_failed = 0;

    /*
     * a timer that is not cancelable keeps an exiting worker (a reload)
     * until the pass is back: the rotation ends where it started
     */

    if (!rt->hold.timer_set) {
        ngx_add_timer(&rt->hold, 3600000);
    }

    if (ngx_thread_task_post(rt->conf.smcf->thread_pool, rt->task) != NGX_OK)
    {
        ngx_log_error(NGX_LOG_ERR, &rt->log, 0,
                      "segura rotate: key %s: the thread pool refused the "
                      "task", rt->key_id);
        rt->db_failed = 1;
        ngx_add_timer(&rt->again, 1000);
    }
}


static void
ngx_segura_rotate_task(void *data, ngx_log_t *log)
{
    ngx_segura_rotate_t *rt = *(ngx_segura_rotate_t **) data;

    PGconn  *conn;

    conn = ngx_segura_db_acquire(rt->conf.smcf->db, rt->err,
                                 sizeof(rt->err));
    if (conn == NULL) {
        rt->db_failed = 1;
        return;
    }

    rt->task_handler(rt, &conn);

    ngx_segura_db_release(rt->conf.smcf->db, conn);
}


static void
ngx_segura_rotate_task_done(ngx_event_t *ev)
{
    ngx_segura_rotate_t *rt = ev->data;

    ngx_msec_t  delay;

    if (rt->hold.timer_set) {
        ngx_del_timer(&rt->hold);
    }

    if (rt->db_failed && rt->task_handler != ngx_segura_rotate_prepare
        && rt->tries < NGX_SEGURA_ROTATE_TRIES)
    {
        /* the switch or the finish: what the rotation owes the database */

        delay = (ngx_msec_t) 1000 << ngx_min(rt->tries, 3);
        rt->tries++;

        ngx_log_error(NGX_LOG_WARN, &rt->log, 0,
                      "segura rotate: key %s: %s; trying again in %M ms",
                      rt->key_id, rt->err, delay);

        ngx_add_timer(&rt->again, delay);
        return;
    }

    if (rt->db_failed) {
        ngx_log_error(NGX_LOG_ERR, &rt->log, 0,
                      "segura rotate: key %s: %s", rt->key_id, rt->err);

        if (rt->outcome == NGX_SEGURA_ROTATE_OK
            && rt->task_handler == ngx_segura_rotate_prepare)
        {
            rt->outcome = NGX_SEGURA_ROTATE_DB;
        }
    }

    rt->tries = 0;
    rt->next(rt);
}


static void
ngx_segura_rotate_hold(ngx_event_t *ev)
{
    ngx_segura_rotate_t *rt = ev->data;

    ngx_log_error(NGX_LOG_ALERT, &rt->log, 0,
                  "segura rotate: key %s: a pool pass has not come back "
                  "in an hour", rt->key_id);
}


static void
ngx_segura_rotate_again(ngx_event_t *ev)
{
    ngx_segura_rotate_t *rt = ev->data;

    ngx_segura_rotate_post(rt, rt->task_handler, rt->next);
}


/* prepare (pool thread) */

static void
ngx_segura_rotate_prepare(ngx_segura_rotate_t *rt, PGconn **conn)
{
    if (ngx_segura_rotate_claim(rt, conn) != NGX_OK) {
        return;
    }

    if (ngx_segura_rotate_load(rt, conn) == NGX_OK) {
        return;
    }

    /* the claim goes: nothing was done on any device */

    if (rt->outcome == NGX_SEGURA_ROTATE_OK) {
        rt->outcome = rt->db_failed ? NGX_SEGURA_ROTATE_DB
                                    : NGX_SEGURA_ROTATE_INTERNAL;
    }
}


static ngx_int_t
ngx_segura_rotate_claim(ngx_segura_rotate_t *rt, PGconn **conn)
{
    PGresult    *res;
    const char  *p[6];
    const char  *worker;
    char         user[NGX_INT64_LEN + 1], after[NGX_INT64_LEN + 1];

    ngx_segura_rotate_id_text(rt->conf.user_id, user);
    (void) ngx_snprintf((u_char *) after, sizeof(after), "%M%Z",
                        rt->conf.retry_after);

    worker = ngx_segura_fleet_worker_id();

    p[0] = rt->key_id;
    p[1] = rt->conf.schedule ? "schedule" : "manual";
    p[2] = rt->conf.retry ? "t" : "f";
    p[3] = rt->conf.user_id > 0 ? user : NULL;
    p[4] = worker;
    p[5] = after;

    /* a running rotation whose worker is gone does not hold the key */

    res = ngx_segura_rotate_query(rt, conn,
              "select segura_rotations_reap($1::bigint)", 1, p,
              PGRES_TUPLES_OK);
    if (res == NULL) {
        return NGX_ERROR;
    }

    PQclear(res);

    res = ngx_segura_rotate_query(rt, conn,
              "insert into key_rotations (key_id, trigger, retry,"
              " from_version, started_by, worker_id)"
              " select k.id, $2, $3::bool, k.version, $4::bigint, $5::uuid"
              " from ssh_keys k where k.id = $1::bigint"
              " and ($2 = 'manual' or" NGX_SEGURA_ROTATE_DUE("$3", "$6") ")"
              " on conflict (key_id) where status = 'running' do nothing"
              " returning id, from_version",
              6, p, PGRES_TUPLES_OK);
    if (res == NULL) {
        return NGX_ERROR;
    }

    if (PQntuples(res) == 1) {
        rt->rotation_id = ngx_atoof((u_char *) PQgetvalue(res, 0, 0),
                                    ngx_strlen(PQgetvalue(res, 0, 0)));
        rt->from_version = ngx_atoi((u_char *) PQgetvalue(res, 0, 1),
                                    ngx_strlen(PQgetvalue(res, 0, 1)));
        PQclear(res);
        return NGX_OK;
    }

    PQclear(res);

    /* why not */

    res = ngx_segura_rotate_query(rt, conn,
              "select exists (select 1 from ssh_keys where id = $1::bigint),"
              " exists (select 1 from key_rotations"
              "  where key_id = $1::bigint and status = 'running')",
              1, p, PGRES_TUPLES_OK);
    if (res == NULL) {
        return NGX_ERROR;
    }

    if (PQgetvalue(res, 0, 0)[0] != 't') {
        rt->outcome = NGX_SEGURA_ROTATE_NOT_FOUND;

    } else if (PQgetvalue(res, 0, 1)[0] == 't') {
        rt->outcome = NGX_SEGURA_ROTATE_RUNNING;

    } else {
        rt->outcome = NGX_SEGURA_ROTATE_NOT_DUE;
    }

    PQclear(res);

    return NGX_ERROR;
}


static ngx_int_t
ngx_segura_rotate_load(ngx_segura_rotate_t *rt, PGconn **conn)
{
    int                       i, n, first_row;
    size_t                    len;
    ssh_key                   first;
    PGresult                 *key, *res;
    const char               *p[2];
    ngx_segura_rot_device_t  *d;

    p[0] = rt->key_id;
    p[1] = rt->conf.retry ? "t" : "f";

    key = ngx_segura_rotate_query(rt, conn,
              "select username, key_type, bits, version, public_key,"
              " private_key_enc, passphrase_enc"
              " from ssh_keys where id = $1::bigint",
              1, p, PGRES_TUPLES_OK);
    if (key == NULL) {
        goto failed;
    }

    if (PQntuples(key) != 1
        || ngx_atoi((u_char *) PQgetvalue(key, 0, 3),
                    ngx_strlen(PQgetvalue(key, 0, 3))) != rt->from_version)
    {
        /* replaced or deleted between the two statements */
        PQclear(key);
        (void) ngx_snprintf((u_char *) rt->err, sizeof(rt->err) - 1,
                            "the key changed while the rotation started%Z");
        goto failed;
    }

    (void) ngx_cpystrn((u_char *) rt->username,
                       (u_char *) PQgetvalue(key, 0, 0), sizeof(rt->username));

    res = ngx_segura_rotate_query(rt, conn,
              "select e.device_id, d.address, d.port, d.host_key,"
              " d.host_key_fingerprint, e.version, e.key_type, e.bits,"
              " e.public_key, e.private_key_enc, e.passphrase_enc"
              " from key_device_keys e join devices d on d.id = e.device_id"
              " where e.key_id = $1::bigint and (not $2::bool or e.behind)"
              " order by e.version, e.device_id",
              2, p, PGRES_TUPLES_OK);
    if (res == NULL) {
        PQclear(key);
        goto failed;
    }

    n = PQntuples(res);

    if (n > NGX_SEGURA_ROTATE_MAX_DEVICES) {
        (void) ngx_snprintf((u_char *) rt->err, sizeof(rt->err) - 1,
                            "the key has %d devices, at most %d rotate at "
                            "once%Z", n, NGX_SEGURA_ROTATE_MAX_DEVICES);
        goto unusable;
    }

    if (n > 0) {
        rt->devices = calloc(n, sizeof(ngx_segura_rot_device_t));
        if (rt->devices == NULL) {
            goto unusable;
        }
    }

    rt->n = n;

    if (ngx_segura_rotate_new_key(rt, key) != NGX_OK) {
        goto unusable;
    }

    first = NULL;
    first_row = 0;

    for (i = 0; i < n; i++) {
        d = &rt->devices[i];

        d->device_id = ngx_atoof((u_char *) PQgetvalue(res, i, 0),
                                 ngx_strlen(PQgetvalue(res, i, 0)));
        (void) ngx_cpystrn((u_char *) d->address,
                           (u_char *) PQgetvalue(res, i, 1),
                           sizeof(d->address));
        d->port = (in_port_t) ngx_atoi((u_char *) PQgetvalue(res, i, 2),
                                       ngx_strlen(PQgetvalue(res, i, 2)));

        if (!PQgetisnull(res, i, 3)) {
            (void) ngx_cpystrn((u_char *) d->pinned_fp,
                               (u_char *) PQgetvalue(res, i, 4),
                               sizeof(d->pinned_fp));

            ngx_segura_ssh_line_type(d->pinned_type, sizeof(d->pinned_type),
                                     PQgetvalue(res, i, 3));
        }

        d->version = ngx_atoi((u_char *) PQgetvalue(res, i, 5),
                              ngx_strlen(PQgetvalue(res, i, 5)));

        if (ngx_strcmp(PQgetvalue(res, i, 6), "ssh-rsa") == 0
            && !PQgetisnull(res, i, 7))
        {
            d->old_rsa_bits = ngx_atoi((u_char *) PQgetvalue(res, i, 7),
                                       ngx_strlen(PQgetvalue(res, i, 7)));
        }

        len = ngx_strlen(PQgetvalue(res, i, 8));

        d->old_line = ngx_pnalloc(rt->pool, len + 1);
        if (d->old_line == NULL) {
            goto unusable;
        }

        ngx_memcpy(d->old_line, PQgetvalue(res, i, 8), len);
        d->old_line[len] = '\n';
        d->old_line_len = len + 1;

        /* the version's key, opened once, copied for each device of it */

        if (first != NULL && d->version == rt->devices[first_row].version) {
            continue;
        }

        if (first != NULL
            && ngx_segura_rotate_copies(rt, first, first_row, i,
                                        NGX_SEGURA_ROT_OLD_EDIT,
                                        NGX_SEGURA_ROT_OLD_PROBE)
               != NGX_OK)
        {
            goto unusable;
        }

        first = NULL;
        first_row = i;

        if (ngx_segura_sealed_key(rt->conf.smcf, rt->conf.key_id,
                                  PQgetvalue(res, i, 9),
                                  PQgetisnull(res, i, 10)
                                  ? NULL : PQgetvalue(res, i, 10),
                                  &first, rt->err, sizeof(rt->err))
            != NGX_OK)
        {
            goto unusable;
        }
    }

    if (first != NULL
        && ngx_segura_rotate_copies(rt, first, first_row, n,
                                    NGX_SEGURA_ROT_OLD_EDIT,
                                    NGX_SEGURA_ROT_OLD_PROBE)
           != NGX_OK)
    {
        goto unusable;
    }

    PQclear(res);
    PQclear(key);

    return NGX_OK;

unusable:

    PQclear(res);
    PQclear(key);

failed:

    if (rt->rotation_id != 0) {
        /* the claim ends: nothing happened on any device */

        char   id[NGX_INT64_LEN + 1];
        const char  *q[2];

        ngx_segura_rotate_id_text(rt->rotation_id, id);
        q[0] = id;
        q[1] = rt->err;

        res = ngx_segura_rotate_query(rt, conn,
                  "update key_rotations set status = 'failed',"
                  " ended_at = now(), detail = left($2, 512)"
                  " where id = $1::bigint and status = 'running'",
                  2, q, PGRES_COMMAND_OK);
        if (res != NULL) {
            PQclear(res);
            rt->claim_ended = 1;
        }
    }

    return NGX_ERROR;
}


/*
 * The key the devices move to: a new pair (sealed for the switch), or for
 * a retry the current key; two copies per device (probe, remove)
 */

static ngx_int_t
ngx_segura_rotate_new_key(ngx_segura_rotate_t *rt, PGresult *key)
{
    int                        bits;
    char                      *text;
    size_t                     len;
    ssh_key                    first;
    ngx_int_t                  rc;
    const char                *kind, *type;
    enum ssh_keytypes_e        kt;
    ngx_segura_sshkey_info_t   info;

    first = NULL;

    if (rt->conf.retry) {
        (void) ngx_cpystrn((u_char *) rt->new_public,
                           (u_char *) PQgetvalue(key, 0, 4),
                           sizeof(rt->new_public));

        if (ngx_strcmp(PQgetvalue(key, 0, 1), "ssh-rsa") == 0
            && !PQgetisnull(key, 0, 2))
        {
            rt->new_rsa_bits = ngx_atoi((u_char *) PQgetvalue(key, 0, 2),
                                        ngx_strlen(PQgetvalue(key, 0, 2)));
        }

        if (ngx_segura_sealed_key(rt->conf.smcf, rt->conf.key_id,
                                  PQgetvalue(key, 0, 5),
                                  PQgetisnull(key, 0, 6)
                                  ? NULL : PQgetvalue(key, 0, 6),
                                  &first, rt->err, sizeof(rt->err))
            != NGX_OK)
        {
            return NGX_ERROR;
        }

        goto line;
    }

    /* as the key is, unless asked: RSA keeps its size, from 3072 bits */

    kind = rt->kind[0] ? rt->kind : NULL;
    type = PQgetvalue(key, 0, 1);

    if (kind == NULL) {
        bits = PQgetisnull(key, 0, 2)
               ? 0 : ngx_atoi((u_char *) PQgetvalue(key, 0, 2),
                              ngx_strlen(PQgetvalue(key, 0, 2)));

        if (ngx_strcmp(type, "ssh-rsa") == 0) {
            kind = bits > 3072 ? "rsa-4096" : "rsa-3072";

        } else if (ngx_strcmp(type, "ecdsa-sha2-nistp256") == 0) {
            kind = "ecdsa-p256";

        } else if (ngx_strncmp(type, "ecdsa-sha2-", 11) == 0) {
            kind = "ecdsa-p384";

        } else {
            kind = "ed25519";
        }
    }

    if (ngx_segura_sshkey_kind(kind, &kt, &bits) != 0) {
        (void) ngx_snprintf((u_char *) rt->err, sizeof(rt->err) - 1,
                            "unknown key kind \"%s\"%Z", kind);
        return NGX_ERROR;
    }

    text = ngx_segura_sshkey_generate(kt, bits);
    if (text == NULL) {
        (void) ngx_snprintf((u_char *) rt->err, sizeof(rt->err) - 1,
                            "generating a %s key failed%Z", kind);
        return NGX_ERROR;
    }

    len = ngx_strlen(text);
    rc = NGX_ERROR;

    if (ngx_segura_sshkey_inspect(text, len, NULL, NULL, &info) != 0) {
        (void) ngx_snprintf((u_char *) rt->err, sizeof(rt->err) - 1,
                            "the generated %s key does not pass "
                            "inspection%Z", kind);
        goto done;
    }

    rt->sealed = ngx_segura_sealed_seal(rt->conf.smcf, rt->key_id,
                                        "private_key", text, rt->err,
                                        sizeof(rt->err));
    if (rt->sealed == NULL) {
        goto done;
    }

    if (ngx_segura_sshkey_import(text, len, NULL, &first, NULL) != 0) {
        (void) ngx_snprintf((u_char *) rt->err, sizeof(rt->err) - 1,
                            "the generated %s key cannot be imported%Z",
                            kind);
        goto done;
    }

    (void) ngx_cpystrn((u_char *) rt->new_type, (u_char *) info.type,
                       sizeof(rt->new_type));
    (void) ngx_cpystrn((u_char *) rt->new_public, (u_char *) info.public_key,
                       sizeof(rt->new_public));
    (void) ngx_cpystrn((u_char *) rt->new_fp, (u_char *) info.fingerprint,
                       sizeof(rt->new_fp));

    rt->new_bits[0] = '\0';

    if (info.bits) {
        ngx_segura_rotate_id_text(info.bits, rt->new_bits);
    }

    rt->new_rsa_bits = (ngx_strcmp(info.type, "ssh-rsa") == 0) ? info.bits
                                                                : 0;
    rc = NGX_OK;

done:

    OPENSSL_cleanse(text, len);
    free(text);

    if (rc != NGX_OK) {
        return NGX_ERROR;
    }

line:

    /* the line deploy writes: "<type> <base64> segura-key-<id>" */

    rt->new_line_len = ngx_snprintf(rt->new_line, sizeof(rt->new_line) - 1,
                                    "%s segura-key-%s\n", rt->new_public,
                                    rt->key_id)
                       - rt->new_line;

    if (rt->n == 0) {
        ssh_key_free(first);
        return NGX_OK;
    }

    return ngx_segura_rotate_copies(rt, first, 0, rt->n,
                                    NGX_SEGURA_ROT_NEW_PROBE,
                                    NGX_SEGURA_ROT_NEW_EDIT);
}


/* first goes to devices[from].keys[a]; copies to the others' a and b */

static ngx_int_t
ngx_segura_rotate_copies(ngx_segura_rotate_t *rt, ssh_key first,
    ngx_uint_t from, ngx_uint_t to, ngx_uint_t a, ngx_uint_t b)
{
    int         rc;
    char       *b64;
    size_t      klen;
    ngx_uint_t  i;

    b64 = NULL;

    if (ssh_pki_export_privkey_base64(first, NULL, NULL, NULL, &b64)
        != SSH_OK)
    {
        ssh_key_free(first);
        (void) ngx_snprintf((u_char *) rt->err, sizeof(rt->err) - 1,
                            "a key of the rotation cannot be exported%Z");
        return NGX_ERROR;
    }

    rt->devices[from].keys[a] = first;

    klen = ngx_strlen(b64);
    rc = 0;

    for (i = from; i < to && rc == 0; i++) {
        if (i != from) {
            rc = ngx_segura_sshkey_import(b64, klen, NULL,
                                          &rt->devices[i].keys[a], NULL);
        }

        if (rc == 0) {
            rc = ngx_segura_sshkey_import(b64, klen, NULL,
                                          &rt->devices[i].keys[b], NULL);
        }
    }

    OPENSSL_cleanse(b64, klen);
    ssh_string_free_char(b64);

    if (rc != 0) {
        (void) ngx_snprintf((u_char *) rt->err, sizeof(rt->err) - 1,
                            "a key of the rotation cannot be imported%Z");
        return NGX_ERROR;
    }

    return NGX_OK;
}


/* the event loop's passes */

static void
ngx_segura_rotate_prepared(ngx_segura_rotate_t *rt)
{
    ngx_uint_t  i, k;

    if (rt->outcome == NGX_SEGURA_ROTATE_OK && !rt->db_failed) {
        goto run;
    }

    if (rt->rotation_id == 0 || rt->claim_ended) {
        ngx_segura_rotate_over(rt);
        return;
    }

    /*
     * claimed, but the database went away before the rotation could
     * start: the caller hears it now; the row still says running, and is
     * ended by the finish, which is tried again until it is written
     */

    if (rt->done != NULL && !rt->detached) {
        rt->done(rt, rt->data);
    }

    rt->detached = 1;
    rt->aborted = 1;

    (void) ngx_snprintf((u_char *) rt->status_detail,
                        sizeof(rt->status_detail) - 1,
                        "the rotation could not start: %s%Z", rt->err);
    ngx_segura_ssh_printable(rt->status_detail, sizeof(rt->status_detail),
                             rt->status_detail);

    for (i = 0; i < rt->n; i++) {
        for (k = 0; k < NGX_SEGURA_ROT_KEYS; k++) {
            ssh_key_free(rt->devices[i].keys[k]);
        }
    }

    free(rt->devices);
    rt->devices = NULL;
    rt->n = 0;

    ngx_segura_rotate_post(rt, ngx_segura_rotate_finish,
                           ngx_segura_rotate_over);
    return;

run:

    ngx_log_error(NGX_LOG_INFO, &rt->log, 0,
                  "segura rotate: key %s: rotation %L %sto %s on %ui "
                  "devices", rt->key_id, rt->rotation_id,
                  rt->conf.retry ? "(retry) " : "",
                  rt->conf.retry ? "the current key" : rt->new_type, rt->n);

    if (rt->n == 0) {
        ngx_segura_rotate_post(rt, ngx_segura_rotate_switch,
                               ngx_segura_rotate_switched);
        return;
    }

    rt->phase = 0;
    ngx_segura_rotate_more(rt);
}


static void
ngx_segura_rotate_more(ngx_segura_rotate_t *rt)
{
    ngx_uint_t                i;
    ngx_segura_rot_slot_t    *s;
    ngx_segura_rot_device_t  *d;

    if (rt->starting) {
        return;
    }

    rt->starting = 1;

    while (rt->next_dev < rt->n
           && rt->running < NGX_SEGURA_ROTATE_CONCURRENCY)
    {
        d = &rt->devices[rt->next_dev++];

        if (rt->phase == 1 && !d->passed) {
            continue;
        }

        for (i = 0; rt->slots[i].busy; i++) { /* void */ }

        s = &rt->slots[i];
        s->busy = 1;
        s->rt = rt;
        s->dev = d;
        s->log = rt->log;

        rt->running++;

        ngx_segura_rotate_step(s, rt->phase == 0 ? NGX_SEGURA_ROT_ADD
                                                 : NGX_SEGURA_ROT_REMOVE);
    }

    rt->starting = 0;

    if (rt->running > 0 || rt->next_dev < rt->n) {
        return;
    }

    ngx_log_debug3(NGX_LOG_DEBUG_CORE, &rt->log, 0,
                   "segura rotate: key %s, phase %ui done in %M ms",
                   rt->key_id, rt->phase, ngx_current_msec - rt->started);

    if (rt->phase == 0) {
        ngx_segura_rotate_post(rt, ngx_segura_rotate_switch,
                               ngx_segura_rotate_switched);
        return;
    }

    ngx_segura_rotate_post(rt, ngx_segura_rotate_finish,
                           ngx_segura_rotate_over);
}


static void
ngx_segura_rotate_step(ngx_segura_rot_slot_t *s, ngx_segura_rot_step_e step)
{
    ngx_uint_t                k;
    ngx_segura_rotate_t      *rt;
    ngx_segura_rot_device_t  *d;

    rt = s->rt;
    d = s->dev;

    ngx_segura_ssh_close(&s->ssh);

    ngx_memzero(&s->cn, sizeof(ngx_segura_connect_t));
    ngx_memzero(&s->ssh, sizeof(ngx_segura_ssh_t));
    ngx_memzero(&s->ex, sizeof(ngx_segura_exec_t));

    s->step = step;
    s->ssh.fd = (ngx_socket_t) -1;
    s->ssh.username = rt->username;
    s->ssh.pinned_type = d->pinned_type[0] ? d->pinned_type : NULL;

    s->cn.host.data = (u_char *) d->address;
    s->cn.host.len = ngx_strlen(d->address);
    s->cn.port = d->port;
    s->cn.timeout = rt->conf.connect_timeout;
    s->cn.resolver = rt->conf.resolver;
    s->cn.resolver_timeout = rt->conf.resolver_timeout;
    s->cn.thread_pool = rt->conf.smcf->thread_pool;
    s->cn.log = &s->log;
    s->cn.pool = rt->pool;
    s->cn.ssh = &s->ssh;
    s->cn.host_key = ngx_segura_rotate_host_key;
    s->cn.done = ngx_segura_rotate_stepped;
    s->cn.data = s;

    switch (step) {

    case NGX_SEGURA_ROT_ADD:
        k = NGX_SEGURA_ROT_OLD_EDIT;
        s->ssh.rsa_bits = d->old_rsa_bits;
        s->ex.command = ngx_segura_rotate_add;
        s->ex.input = rt->new_line;
        s->ex.input_len = rt->new_line_len;
        s->cn.exec = &s->ex;
        break;

    case NGX_SEGURA_ROT_PROBE_NEW:
        k = NGX_SEGURA_ROT_NEW_PROBE;
        s->ssh.rsa_bits = rt->new_rsa_bits;
        s->cn.auth_only = 1;
        break;

    case NGX_SEGURA_ROT_REMOVE:
        k = NGX_SEGURA_ROT_NEW_EDIT;
        s->ssh.rsa_bits = rt->new_rsa_bits;
        s->ex.command = ngx_segura_rotate_remove;
        s->ex.input = d->old_line;
        s->ex.input_len = d->old_line_len;
        s->cn.exec = &s->ex;
        break;

    default: /* NGX_SEGURA_ROT_PROBE_OLD */
        k = NGX_SEGURA_ROT_OLD_PROBE;
        s->ssh.rsa_bits = d->old_rsa_bits;
        s->cn.auth_only = 1;
        break;
    }

    /* the connection owns the key from here on */

    s->ssh.key = d->keys[k];
    d->keys[k] = NULL;

    ngx_segura_connect_start(&s->cn);
}


static ngx_int_t
ngx_segura_rotate_host_key(ngx_segura_connect_t *cn)
{
    ngx_segura_rot_slot_t *s = cn->data;

    size_t                    len;
    ngx_segura_rot_device_t  *d;

    d = s->dev;

    switch (ngx_segura_ssh_host_key(cn->ssh, d->pinned_fp,
                                    s->rt->conf.policy
                                    == NGX_SEGURA_HOST_KEY_STRICT))
    {
    case NGX_OK:
        return NGX_OK;
    case NGX_ERROR:
        return NGX_ERROR;
    default:
        break;
    }

    /*
     * trust on first use, pinned by the switch; every later connection of
     * the rotation must then present the same key
     */

    (void) ngx_cpystrn((u_char *) d->pinned_fp,
                       (u_char *) cn->ssh->host_key_fp, sizeof(d->pinned_fp));

    if (d->pin == NULL) {
        len = ngx_strlen(cn->ssh->host_key);

        d->pin = ngx_pnalloc(s->rt->pool, len + 1);
        if (d->pin == NULL) {
            return NGX_ERROR;
        }

        ngx_memcpy(d->pin, cn->ssh->host_key, len + 1);
    }

    return NGX_OK;
}


static void
ngx_segura_rotate_stepped(ngx_segura_connect_t *cn)
{
    ngx_segura_rot_slot_t *s = cn->data;

    size_t                    len;
    const char               *word;
    ngx_segura_rot_device_t  *d;

    d = s->dev;

    switch (s->step) {

    case NGX_SEGURA_ROT_ADD:
    case NGX_SEGURA_ROT_REMOVE:

        if (s->ssh.err != NGX_SEGURA_WS_ERR_NONE || !cn->executed) {
            d->result = s->ssh.err == NGX_SEGURA_WS_ERR_NONE
                        ? NGX_SEGURA_ROT_ERROR
                        : ngx_segura_rotate_error(&s->ssh);
            ngx_segura_ssh_printable(d->detail, sizeof(d->detail),
                                   s->ssh.text[0] ? s->ssh.text
                                   : "the connection was closed");
            goto edit_failed;
        }

        word = s->ex.out;
        len = ngx_strlen(word);

        while (len > 0 && (word[len - 1] == '\n' || word[len - 1] == '\r')) {
            len--;
        }

        if (s->ex.status == 0
            && ((len == 9 && ngx_strncmp(word, "unchanged", 9) == 0)
                || (s->step == NGX_SEGURA_ROT_ADD
                    && len == 8 && ngx_strncmp(word, "deployed", 8) == 0)
                || (s->step == NGX_SEGURA_ROT_REMOVE
                    && len == 9 && ngx_strncmp(word, "withdrawn", 9) == 0)))
        {
            ngx_segura_rotate_step(s, s->step == NGX_SEGURA_ROT_ADD
                                      ? NGX_SEGURA_ROT_PROBE_NEW
                                      : NGX_SEGURA_ROT_PROBE_OLD);
            return;
        }

        d->result = NGX_SEGURA_ROT_EXEC_FAILED;

        if (s->ex.err_len > 0) {
            ngx_segura_ssh_printable(d->detail, sizeof(d->detail), s->ex.err);

        } else {
            (void) ngx_snprintf((u_char *) d->detail, sizeof(d->detail) - 1,
                                "the command ended with status %d%Z",
                                s->ex.status);
        }

    edit_failed:

        if (s->step == NGX_SEGURA_ROT_REMOVE) {
            /* switched to the new key; the old line is still there */

            u_char  why[NGX_SEGURA_ROTATE_DETAIL_LEN];

            (void) ngx_snprintf(why, sizeof(why) - 1, "%s (%s)%Z",
                                d->detail,
                                ngx_segura_rot_results[d->result]);
            (void) ngx_snprintf((u_char *) d->detail, sizeof(d->detail) - 1,
                                "the old line could not be removed: %s%Z",
                                why);
            d->result = NGX_SEGURA_ROT_OLD_ACCEPTED;
        }

        break;

    case NGX_SEGURA_ROT_PROBE_NEW:

        if (s->ssh.err == NGX_SEGURA_WS_ERR_NONE && cn->authenticated) {
            d->passed = 1;
            d->result = NGX_SEGURA_ROT_ROTATED;
            break;
        }

        d->result = (s->ssh.err == NGX_SEGURA_WS_ERR_AUTH_REJECTED
                     || s->ssh.err == NGX_SEGURA_WS_ERR_NONE)
                    ? NGX_SEGURA_ROT_VERIFY_FAILED
                    : ngx_segura_rotate_error(&s->ssh);

        (void) ngx_snprintf((u_char *) d->detail, sizeof(d->detail) - 1,
                            "the new line was added, but the device did "
                            "not accept the new key%s%s%Z",
                            s->ssh.text[0] ? ": " : "", s->ssh.text);
        ngx_segura_ssh_printable(d->detail, sizeof(d->detail), d->detail);
        break;

    default: /* NGX_SEGURA_ROT_PROBE_OLD */

        if (s->ssh.err == NGX_SEGURA_WS_ERR_AUTH_REJECTED) {
            d->result = NGX_SEGURA_ROT_ROTATED;
            break;
        }

        d->result = NGX_SEGURA_ROT_OLD_ACCEPTED;

        if (s->ssh.err == NGX_SEGURA_WS_ERR_NONE && cn->authenticated) {
            (void) ngx_snprintf((u_char *) d->detail, sizeof(d->detail) - 1,
                                "the old line was removed, but the device "
                                "still accepts the old key (another line "
                                "or file grants it)%Z");

        } else {
            (void) ngx_snprintf((u_char *) d->detail, sizeof(d->detail) - 1,
                                "could not confirm that the old key is "
                                "refused: %s%Z",
                                s->ssh.text[0] ? s->ssh.text
                                               : "the connection closed");
            ngx_segura_ssh_printable(d->detail, sizeof(d->detail), d->detail);
        }

        break;
    }

    ngx_segura_rotate_device_end(s);
}


static ngx_segura_rot_result_e
ngx_segura_rotate_error(ngx_segura_ssh_t *ssh)
{
    switch (ssh->err) {

    case NGX_SEGURA_WS_ERR_AUTH_REJECTED:
        return NGX_SEGURA_ROT_REFUSED;

    case NGX_SEGURA_WS_ERR_DEVICE_UNREACHABLE:
        return NGX_SEGURA_ROT_UNREACHABLE;

    case NGX_SEGURA_WS_ERR_CONNECT_TIMEOUT:
        return NGX_SEGURA_ROT_TIMEOUT;

    case NGX_SEGURA_WS_ERR_HOST_KEY_MISMATCH:
        return NGX_SEGURA_ROT_HOST_KEY_MISMATCH;

    case NGX_SEGURA_WS_ERR_HOST_KEY_UNKNOWN:
        return NGX_SEGURA_ROT_HOST_KEY_UNKNOWN;

    case NGX_SEGURA_WS_ERR_SHELL_FAILED:
        return NGX_SEGURA_ROT_EXEC_FAILED;

    default:
        return NGX_SEGURA_ROT_ERROR;
    }
}


static void
ngx_segura_rotate_device_end(ngx_segura_rot_slot_t *s)
{
    ngx_uint_t                level;
    ngx_segura_rotate_t      *rt;
    ngx_segura_rot_device_t  *d;

    rt = s->rt;
    d = s->dev;

    if (rt->phase == 1 || !d->passed) {
        level = (d->result == NGX_SEGURA_ROT_ERROR) ? NGX_LOG_ERR
                                                    : NGX_LOG_INFO;

        ngx_log_error(level, &s->log, 0,
                      "segura rotate: key %s on device %L: %s%s%s",
                      rt->key_id, d->device_id,
                      ngx_segura_rot_results[d->result],
                      d->detail[0] ? ", " : "", d->detail);
    }

    ngx_segura_ssh_close(&s->ssh);

    s->busy = 0;
    rt->running--;

    ngx_segura_rotate_more(rt);
}


/* switch (pool thread): one transaction */

static void
ngx_segura_rotate_switch(ngx_segura_rotate_t *rt, PGconn **conn)
{
    char        *passed;
    json_t      *ids;
    PGresult    *res;
    ngx_uint_t   i, npassed;
    const char  *p[8];
    char         rot[NGX_INT64_LEN + 1], from[NGX_INT64_LEN + 1];
    char         dev[NGX_INT64_LEN + 1];

    passed = NULL;
    npassed = 0;

    ids = json_array();
    if (ids == NULL) {
        goto internal;
    }

    for (i = 0; i < rt->n; i++) {
        if (rt->devices[i].passed) {
            npassed++;

            if (json_array_append_new(ids,
                                      json_integer(rt->devices[i].device_id))
                != 0)
            {
                goto internal;
            }
        }
    }

    if (rt->n > 0 && npassed == 0) {
        /* nothing to switch: the new pair is dropped */
        json_decref(ids);
        return;
    }

    passed = json_dumps(ids, JSON_COMPACT);
    json_decref(ids);
    ids = NULL;

    if (passed == NULL) {
        goto internal;
    }

    ngx_segura_rotate_id_text(rt->rotation_id, rot);
    ngx_segura_rotate_id_text(rt->from_version, from);

    res = ngx_segura_rotate_query(rt, conn, "begin", 0, NULL,
                                  PGRES_COMMAND_OK);
    if (res == NULL) {
        goto failed;
    }

    PQclear(res);

    p[0] = rt->key_id;
    p[1] = rot;

    res = ngx_segura_rotate_query(rt, conn,
              "select (select version from ssh_keys"
              "  where id = $1::bigint for update),"
              " (select status from key_rotations"
              "  where id = $2::bigint for update),"
              " (select to_version from key_rotations where id = $2::bigint)",
              2, p, PGRES_TUPLES_OK);
    if (res == NULL) {
        goto rollback;
    }

    if (!PQgetisnull(res, 0, 2)) {
        /* a commit whose answer was lost: the switch is written */

        rt->to_version = ngx_atoi((u_char *) PQgetvalue(res, 0, 2),
                                  ngx_strlen(PQgetvalue(res, 0, 2)));
        PQclear(res);
        res = PQexec(*conn, "rollback");
        PQclear(res);
        free(passed);
        return;
    }

    if (PQgetisnull(res, 0, 0) || PQgetisnull(res, 0, 1)
        || ngx_strcmp(PQgetvalue(res, 0, 1), "running") != 0
        || ngx_atoi((u_char *) PQgetvalue(res, 0, 0),
                    ngx_strlen(PQgetvalue(res, 0, 0))) != rt->from_version)
    {
        /* a PATCH replaced the key, or the rotation was declared lost */

        PQclear(res);
        rt->replaced = 1;
        (void) ngx_snprintf((u_char *) rt->status_detail,
                            sizeof(rt->status_detail) - 1,
                            "the key was replaced or the rotation ended "
                            "while it ran: nothing switched%Z");
        goto rollback;
    }

    PQclear(res);

    if (!rt->conf.retry) {
        p[1] = from;

        res = ngx_segura_rotate_query(rt, conn,
                  "with old as (insert into ssh_key_versions (key_id,"
                  "  version, key_type, bits, public_key, fingerprint,"
                  "  private_key_enc, passphrase_enc)"
                  "  select id, version, key_type, bits, public_key,"
                  "  fingerprint, private_key_enc, passphrase_enc"
                  "  from ssh_keys where id = $1::bigint returning 1)"
                  " select count(*) from old",
                  1, p, PGRES_TUPLES_OK);
        if (res == NULL) {
            goto rollback;
        }

        PQclear(res);

        res = ngx_segura_rotate_query(rt, conn,
                  "update key_devices set key_version = $2::int"
                  " where key_id = $1::bigint and key_version is null",
                  2, p, PGRES_COMMAND_OK);
        if (res == NULL) {
            goto rollback;
        }

        PQclear(res);

        p[1] = rt->new_type;
        p[2] = rt->new_bits[0] ? rt->new_bits : NULL;
        p[3] = rt->new_public;
        p[4] = rt->new_fp;
        p[5] = rt->sealed;

        res = ngx_segura_rotate_query(rt, conn,
                  "update ssh_keys set key_type = $2, bits = $3::int,"
                  " public_key = $4, fingerprint = $5,"
                  " private_key_enc = $6::bytea, passphrase_enc = null,"
                  " version = version + 1, rotated_at = now()"
                  " where id = $1::bigint returning version",
                  6, p, PGRES_TUPLES_OK);
        if (res == NULL) {
            goto rollback;
        }

        rt->to_version = ngx_atoi((u_char *) PQgetvalue(res, 0, 0),
                                  ngx_strlen(PQgetvalue(res, 0, 0)));
        PQclear(res);

    } else {
        rt->to_version = rt->from_version;
    }

    /* the devices that passed use the current key; unused versions go */

    p[1] = passed;

    res = ngx_segura_rotate_query(rt, conn,
              "update key_devices set key_version = null"
              " where key_id = $1::bigint and device_id in"
              " (select x::bigint from jsonb_array_elements_text($2::jsonb) x)",
              2, p, PGRES_COMMAND_OK);
    if (res == NULL) {
        goto rollback;
    }

    PQclear(res);

    res = ngx_segura_rotate_query(rt, conn,
              "delete from ssh_key_versions v where v.key_id = $1::bigint"
              " and not exists (select 1 from key_devices kd"
              "  where kd.key_id = v.key_id and kd.key_version = v.version)",
              1, p, PGRES_COMMAND_OK);
    if (res == NULL) {
        goto rollback;
    }

    PQclear(res);

    /* what the probe showed: the current key is deployed there */

    res = ngx_segura_rotate_query(rt, conn,
              "insert into key_checks (key_id, device_id, result, detail,"
              " checked_by)"
              " select $1::bigint, kd.device_id, 'deployed', '', null"
              " from key_devices kd where kd.key_id = $1::bigint"
              " and kd.device_id in (select x::bigint"
              "  from jsonb_array_elements_text($2::jsonb) x)"
              " on conflict (key_id, device_id) do update"
              " set result = 'deployed', detail = '', checked_at = now(),"
              " checked_by = null",
              2, p, PGRES_COMMAND_OK);
    if (res == NULL) {
        goto rollback;
    }

    PQclear(res);

    /* trust on first use: as a check pins */

    for (i = 0; i < rt->n; i++) {
        if (!rt->devices[i].passed || rt->devices[i].pin == NULL) {
            continue;
        }

        ngx_segura_rotate_id_text(rt->devices[i].device_id, dev);

        p[0] = dev;
        p[1] = rt->devices[i].pin;
        p[2] = rt->devices[i].pinned_fp;

        res = ngx_segura_rotate_query(rt, conn,
                  "with pin as (update devices set host_key = $2,"
                  "  host_key_fingerprint = $3"
                  "  where id = $1::bigint and host_key is null returning id)"
                  " insert into audit_log (action, object_type, object_id,"
                  "  detail)"
                  " select 'host_key_pinned', 'device', $1,"
                  "  json_build_object('fingerprint', $3::text) from pin",
                  3, p, PGRES_COMMAND_OK);
        if (res == NULL) {
            goto rollback;
        }

        PQclear(res);
    }

    p[0] = rot;
    (void) ngx_snprintf((u_char *) from, sizeof(from), "%i%Z",
                        rt->to_version);
    p[1] = from;

    res = ngx_segura_rotate_query(rt, conn,
              "update key_rotations set to_version = $2::int"
              " where id = $1::bigint",
              2, p, PGRES_COMMAND_OK);
    if (res == NULL) {
        goto rollback;
    }

    PQclear(res);

    res = ngx_segura_rotate_query(rt, conn, "commit", 0, NULL,
                                  PGRES_COMMAND_OK);
    if (res == NULL) {
        goto failed;
    }

    PQclear(res);
    free(passed);

    return;

rollback:

    res = PQexec(*conn, "rollback");
    PQclear(res);

failed:

    rt->to_version = 0;
    free(passed);
    return;

internal:

    json_decref(ids);
    (void) ngx_snprintf((u_char *) rt->err, sizeof(rt->err) - 1,
                        "out of memory%Z");
    rt->db_failed = 1;
}


static void
ngx_segura_rotate_switched(ngx_segura_rotate_t *rt)
{
    ngx_uint_t  i;

    if (rt->to_version == 0) {
        /*
         * nothing switched: the devices keep their key (and, where the
         * add went through, the new line, which no key in the vault
         * matches)
         */

        for (i = 0; i < rt->n; i++) {
            if (rt->devices[i].passed) {
                rt->devices[i].passed = 0;
                rt->devices[i].result = NGX_SEGURA_ROT_ERROR;
                (void) ngx_snprintf((u_char *) rt->devices[i].detail,
                                    sizeof(rt->devices[i].detail) - 1,
                                    "the new key was accepted, but the "
                                    "switch was not written: %s%Z",
                                    rt->replaced ? rt->status_detail
                                                 : rt->err);
                ngx_segura_ssh_printable(rt->devices[i].detail,
                                       sizeof(rt->devices[i].detail),
                                       rt->devices[i].detail);
            }
        }

        ngx_segura_rotate_post(rt, ngx_segura_rotate_finish,
                               ngx_segura_rotate_over);
        return;
    }

    if (rt->n == 0) {
        ngx_segura_rotate_post(rt, ngx_segura_rotate_finish,
                               ngx_segura_rotate_over);
        return;
    }

    rt->phase = 1;
    rt->next_dev = 0;
    ngx_segura_rotate_more(rt);
}


/* finish (pool thread): the row, the checks of the others, the audit */

static void
ngx_segura_rotate_finish(ngx_segura_rotate_t *rt, PGconn **conn)
{
    char        *items;
    json_t      *all, *audit;
    PGresult    *res;
    ngx_uint_t   i, rotated, switched;
    const char  *status, *p[9], *q[3];
    char         rot[NGX_INT64_LEN + 1], total[NGX_INT64_LEN + 1];
    char         nrot[NGX_INT64_LEN + 1], user[NGX_INT64_LEN + 1];

    items = NULL;
    audit = NULL;
    rotated = 0;
    switched = 0;

    for (i = 0; i < rt->n; i++) {
        if (rt->devices[i].result == NGX_SEGURA_ROT_ROTATED) {
            rotated++;
        }

        if (rt->devices[i].passed) {
            switched++;
        }
    }

    if (rt->replaced || rt->aborted || (rt->n > 0 && switched == 0)
        || (rt->n == 0 && rt->to_version == 0 && !rt->conf.retry))
    {
        status = "failed";

    } else if (rotated == rt->n) {
        status = "rotated";

    } else {
        status = "partial";
    }

    all = ngx_segura_rotate_items(rt, 0);
    if (all == NULL) {
        goto internal;
    }

    items = json_dumps(all, JSON_COMPACT);
    if (items == NULL) {
        goto internal;
    }

    ngx_segura_rotate_id_text(rt->rotation_id, rot);
    ngx_segura_rotate_id_text(rt->n, total);
    ngx_segura_rotate_id_text(rotated, nrot);
    ngx_segura_rotate_id_text(rt->conf.user_id, user);

    p[0] = rot;
    p[1] = status;
    p[2] = total;
    p[3] = nrot;
    p[4] = items;
    p[5] = (rt->replaced || rt->aborted) ? rt->status_detail : "";
    p[6] = rt->key_id;
    p[7] = (rt->conf.retry || rt->new_type[0] == '\0') ? NULL : rt->new_type;
    p[8] = rt->conf.user_id > 0 ? user : NULL;

    res = ngx_segura_rotate_query(rt, conn, "begin", 0, NULL,
                                  PGRES_COMMAND_OK);
    if (res == NULL) {
        goto failed;
    }

    PQclear(res);

    res = ngx_segura_rotate_query(rt, conn,
              "update key_rotations set status = $2, total = $3::int,"
              " rotated = $4::int, items = $5::jsonb,"
              " detail = left($6, 512), key_type = $8, ended_at = now()"
              " where id = $1::bigint and key_id = $7::bigint"
              " and status = 'running'",
              8, p, PGRES_COMMAND_OK);
    if (res == NULL) {
        goto rollback;
    }

    PQclear(res);

    /* what the others showed of the current key, where it says anything */

    q[0] = rt->key_id;
    q[1] = items;

    res = ngx_segura_rotate_query(rt, conn,
              "insert into key_checks (key_id, device_id, result, detail)"
              " select $1::bigint, (e->>'device')::bigint, e->>'check',"
              " case when e->>'check' = 'deployed' then ''"
              "  else left(e->>'detail', 512) end"
              " from jsonb_array_elements($2::jsonb) e"
              " where e->>'check' is not null"
              " and exists (select 1 from key_devices kd"
              "  where kd.key_id = $1::bigint"
              "  and kd.device_id = (e->>'device')::bigint)"
              " on conflict (key_id, device_id) do update"
              " set result = excluded.result, detail = excluded.detail,"
              " checked_at = now(), checked_by = null",
              2, q, PGRES_COMMAND_OK);
    if (res == NULL) {
        goto rollback;
    }

    PQclear(res);

    audit = json_pack("{sIsssssbsisisIsIsO}",
                      "rotation", (json_int_t) rt->rotation_id,
                      "status", status,
                      "trigger", rt->conf.schedule ? "schedule" : "manual",
                      "retry", (int) rt->conf.retry,
                      "from_version", (int) rt->from_version,
                      "to_version", (int) rt->to_version,
                      "total", (json_int_t) rt->n,
                      "rotated", (json_int_t) rotated,
                      "devices", all);
    if (audit == NULL) {
        goto internal_rollback;
    }

    if (rt->to_version == 0) {
        (void) json_object_set_new(audit, "to_version", json_null());
    }

    json_decref(all);
    all = NULL;

    free(items);
    items = json_dumps(audit, JSON_COMPACT);
    if (items == NULL) {
        goto internal_rollback;
    }

    q[0] = p[8];
    q[1] = rt->key_id;
    q[2] = items;

    res = ngx_segura_rotate_query(rt, conn,
              "insert into audit_log (actor_id, actor_name, action,"
              " object_type, object_id, detail)"
              " values ($1::bigint,"
              " (select username from users where id = $1::bigint),"
              " 'rotate', 'ssh_key', $2, $3::jsonb)",
              3, q, PGRES_COMMAND_OK);
    if (res == NULL) {
        goto rollback;
    }

    PQclear(res);

    res = ngx_segura_rotate_query(rt, conn, "commit", 0, NULL,
                                  PGRES_COMMAND_OK);
    if (res != NULL) {
        PQclear(res);
    }

    goto failed;

internal_rollback:

    (void) ngx_snprintf((u_char *) rt->err, sizeof(rt->err) - 1,
                        "out of memory%Z");

rollback:

    res = PQexec(*conn, "rollback");
    PQclear(res);
    rt->db_failed = 1;

failed:

    free(items);
    json_decref(all);
    json_decref(audit);
    return;

internal:

    json_decref(all);
    free(items);
    (void) ngx_snprintf((u_char *) rt->err, sizeof(rt->err) - 1,
                        "out of memory%Z");
    rt->db_failed = 1;
}


/* one object per device, as key_rotations.items holds them */

static json_t *
ngx_segura_rotate_items(ngx_segura_rotate_t *rt, ngx_uint_t passed_only)
{
    json_t                   *all, *one;
    ngx_uint_t                i;
    ngx_int_t                 version;
    const char               *check;
    ngx_segura_rot_device_t  *d;

    all = json_array();
    if (all == NULL) {
        return NULL;
    }

    for (i = 0; i < rt->n; i++) {
        d = &rt->devices[i];

        if (passed_only && !d->passed) {
            continue;
        }

        version = (d->passed && rt->to_version) ? rt->to_version : d->version;

        /*
         * the check of the key the device uses: the switch wrote those
         * that passed (deployed); for the others, what the add showed
         */

        check = d->passed ? NULL : ngx_segura_rot_checks[d->result];

        one = json_pack("{sIsssssisiss?}",
                        "device", (json_int_t) d->device_id,
                        "result", ngx_segura_rot_results[d->result],
                        "detail", d->detail,
                        "from_version", (int) d->version,
                        "version", (int) version,
                        "check", check);
        if (one == NULL || json_array_append_new(all, one) != 0) {
            json_decref(all);
            return NULL;
        }
    }

    return all;
}


static void
ngx_segura_rotate_over(ngx_segura_rotate_t *rt)
{
    ngx_uint_t  level;

    level = (rt->outcome == NGX_SEGURA_ROTATE_OK) ? NGX_LOG_NOTICE
                                                  : NGX_LOG_INFO;

    ngx_log_error(level, &rt->log, 0,
                  "segura rotate: key %s: rotation %L over in %M ms "
                  "(outcome %d, version %i -> %i)", rt->key_id,
                  rt->rotation_id, ngx_current_msec - rt->started,
                  (int) rt->outcome, rt->from_version, rt->to_version);

    if (rt->done != NULL && !rt->detached) {
        rt->done(rt, rt->data);
    }

    ngx_segura_rotate_free(rt);
}


static PGresult *
ngx_segura_rotate_query(ngx_segura_rotate_t *rt, PGconn **conn,
    const char *sql, int n, const char *const *params, ExecStatusType want)
{
    PGresult  *res;

    /* at most once: a rotation's statements are not all idempotent */

    res = ngx_segura_db_query(rt->conf.smcf->db, conn, sql, n, params,
                              rt->err, sizeof(rt->err));

    if (res == NULL) {
        rt->db_failed = 1;
        return NULL;
    }

    if (PQresultStatus(res) != want) {
        ngx_segura_db_error(rt->err, sizeof(rt->err), "a rotation statement",
                            PQresultErrorMessage(res));
        PQclear(res);
        rt->db_failed = 1;
        return NULL;
    }

    return res;
}


static void
ngx_segura_rotate_free(ngx_segura_rotate_t *rt)
{
    ngx_uint_t  i, k;

    if (rt->conf.schedule) {
        ngx_segura_rotate_nscheduled--;
    }

    if (rt->again.timer_set) {
        ngx_del_timer(&rt->again);
    }

    if (rt->hold.timer_set) {
        ngx_del_timer(&rt->hold);
    }

    for (i = 0; i < NGX_SEGURA_ROTATE_CONCURRENCY; i++) {
        ngx_segura_ssh_close(&rt->slots[i].ssh);
    }

    for (i = 0; i < rt->n; i++) {
        for (k = 0; k < NGX_SEGURA_ROT_KEYS; k++) {
            ssh_key_free(rt->devices[i].keys[k]);
        }
    }

    free(rt->devices);
    free(rt->sealed);

    ngx_destroy_pool(rt->pool);

    OPENSSL_cleanse(rt, sizeof(ngx_segura_rotate_t));
    free(rt);
}
