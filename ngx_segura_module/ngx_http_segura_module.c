
/*
 * Copyright (C) ngx_segura_module authors
 */


/*
 * Directives, configuration create/merge, worker init and exit, and the
 * module object.  Configuration handlers run in the master at
 * configuration time; init and exit process in each worker.  The shared
 * error tables and HTTP writers are in ngx_segura_http.c.
 */


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>
#include "ngx_segura.h"
#include "ngx_segura_db.h"
#include "ngx_segura_auth.h"
#include "ngx_segura_api.h"
#include "ngx_segura_fleet.h"
#include "ngx_segura_handshake.h"
#include "ngx_segura_live.h"
#include "ngx_segura_metrics.h"
#include "ngx_segura_outbox.h"
#include "ngx_segura_watch.h"

#include <jansson.h>
#include <libssh/libssh.h>
#include <malloc.h>
#include <openssl/crypto.h>


static ngx_int_t ngx_http_segura_preconfiguration(ngx_conf_t *cf);
static void *ngx_http_segura_create_main_conf(ngx_conf_t *cf);
static char *ngx_http_segura_init_main_conf(ngx_conf_t *cf, void *conf);
static void *ngx_http_segura_create_loc_conf(ngx_conf_t *cf);
static char *ngx_http_segura_merge_loc_conf(ngx_conf_t *cf, void *parent,
    void *child);
static char *ngx_http_segura_database(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf);
static char *ngx_http_segura_master_key(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf);
static void ngx_http_segura_wipe_key(void *data);
static char *ngx_http_segura_thread_pool(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf);
static char *ngx_http_segura_handler_slot(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf);
static char *ngx_http_segura_metrics(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf);
static char *ngx_http_segura_allowed_origins(ngx_conf_t *cf,
    ngx_command_t *cmd, void *conf);
static char *ngx_http_segura_check_bounds(ngx_conf_t *cf, void *post,
    void *data);
static char *ngx_http_segura_check_msec_bounds(ngx_conf_t *cf, void *post,
    void *data);
static char *ngx_http_segura_enum(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf);
static ngx_int_t ngx_http_segura_init_process(ngx_cycle_t *cycle);
static void ngx_http_segura_json_free(void *p);
static void ngx_http_segura_exit_process(ngx_cycle_t *cycle);


static ngx_conf_num_bounds_t  ngx_http_segura_max_message_bounds = {
    ngx_http_segura_check_bounds, 125, 64 * 1024 * 1024
};

static ngx_conf_num_bounds_t  ngx_http_segura_max_body_bounds = {
    ngx_http_segura_check_bounds, 1024, 16 * 1024 * 1024
};

static ngx_conf_num_bounds_t  ngx_http_segura_node_lost_timeout_bounds = {
    ngx_http_segura_check_msec_bounds, 3000, 3600000
};


static ngx_conf_enum_t  ngx_http_segura_host_key_policies[] = {
    { ngx_string("tofu"), NGX_SEGURA_HOST_KEY_TOFU },
    { ngx_string("strict"), NGX_SEGURA_HOST_KEY_STRICT },
    { ngx_null_string, 0 }
};


static ngx_command_t  ngx_http_segura_commands[] = {

    { ngx_string("segura_database"),
      NGX_HTTP_MAIN_CONF|NGX_CONF_TAKE12,
      ngx_http_segura_database,
      NGX_HTTP_MAIN_CONF_OFFSET,
      0,
      NULL },

    { ngx_string("segura_master_key"),
      NGX_HTTP_MAIN_CONF|NGX_CONF_TAKE12,
      ngx_http_segura_master_key,
      NGX_HTTP_MAIN_CONF_OFFSET,
      0,
      NULL },

    { ngx_string("segura_thread_pool"),
      NGX_HTTP_MAIN_CONF|NGX_CONF_TAKE1,
      ngx_http_segura_thread_pool,
      NGX_HTTP_MAIN_CONF_OFFSET,
      0,
      NULL },

    { ngx_string("segura_node_lost_timeout"),
      NGX_HTTP_MAIN_CONF|NGX_CONF_TAKE1,
      ngx_conf_set_msec_slot,
      NGX_HTTP_MAIN_CONF_OFFSET,
      offsetof(ngx_http_segura_main_conf_t, node_lost_timeout),
      &ngx_http_segura_node_lost_timeout_bounds },

    { ngx_string("segura_session"),
      NGX_HTTP_LOC_CONF|NGX_CONF_NOARGS,
      ngx_http_segura_handler_slot,
      NGX_HTTP_LOC_CONF_OFFSET,
      0,
      (void *) ngx_segura_handshake_handler },

    { ngx_string("segura_api"),
      NGX_HTTP_LOC_CONF|NGX_CONF_NOARGS,
      ngx_http_segura_handler_slot,
      NGX_HTTP_LOC_CONF_OFFSET,
      0,
      (void *) ngx_segura_api_handler },

    { ngx_string("segura_metrics"),
      NGX_HTTP_LOC_CONF|NGX_CONF_NOARGS,
      ngx_http_segura_metrics,
      NGX_HTTP_LOC_CONF_OFFSET,
      0,
      NULL },

    { ngx_string("segura_user"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_TAKE1,
      ngx_http_set_complex_value_slot,
      NGX_HTTP_LOC_CONF_OFFSET,
      offsetof(ngx_http_segura_loc_conf_t, user),
      NULL },

    { ngx_string("segura_connect_timeout"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_TAKE1,
      ngx_conf_set_msec_slot,
      NGX_HTTP_LOC_CONF_OFFSET,
      offsetof(ngx_http_segura_loc_conf_t, connect_timeout),
      NULL },

    { ngx_string("segura_idle_timeout"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_TAKE1,
      ngx_conf_set_msec_slot,
      NGX_HTTP_LOC_CONF_OFFSET,
      offsetof(ngx_http_segura_loc_conf_t, idle_timeout),
      NULL },

    { ngx_string("segura_ping_interval"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_TAKE1,
      ngx_conf_set_msec_slot,
      NGX_HTTP_LOC_CONF_OFFSET,
      offsetof(ngx_http_segura_loc_conf_t, ping_interval),
      NULL },

    { ngx_string("segura_login_lifetime"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_TAKE1,
      ngx_conf_set_msec_slot,
      NGX_HTTP_LOC_CONF_OFFSET,
      offsetof(ngx_http_segura_loc_conf_t, login_lifetime),
      NULL },

    { ngx_string("segura_login_idle"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_TAKE1,
      ngx_conf_set_msec_slot,
      NGX_HTTP_LOC_CONF_OFFSET,
      offsetof(ngx_http_segura_loc_conf_t, login_idle),
      NULL },

    { ngx_string("segura_max_message"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_TAKE1,
      ngx_conf_set_size_slot,
      NGX_HTTP_LOC_CONF_OFFSET,
      offsetof(ngx_http_segura_loc_conf_t, max_message),
      &ngx_http_segura_max_message_bounds },

    { ngx_string("segura_max_body"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_TAKE1,
      ngx_conf_set_size_slot,
      NGX_HTTP_LOC_CONF_OFFSET,
      offsetof(ngx_http_segura_loc_conf_t, max_body),
      &ngx_http_segura_max_body_bounds },

    { ngx_string("segura_host_key_policy"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_TAKE1,
      ngx_http_segura_enum,
      NGX_HTTP_LOC_CONF_OFFSET,
      offsetof(ngx_http_segura_loc_conf_t, host_key_policy),
      &ngx_http_segura_host_key_policies },

    { ngx_string("segura_allowed_origins"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_1MORE,
      ngx_http_segura_allowed_origins,
      NGX_HTTP_LOC_CONF_OFFSET,
      0,
      NULL },

      ngx_null_command
};


static ngx_http_module_t  ngx_http_segura_module_ctx = {
    ngx_http_segura_preconfiguration,      /* preconfiguration */
    NULL,                                  /* postconfiguration */

    ngx_http_segura_create_main_conf,      /* create main configuration */
    ngx_http_segura_init_main_conf,        /* init main configuration */

    NULL,                                  /* create server configuration */
    NULL,                                  /* merge server configuration */

    ngx_http_segura_create_loc_conf,       /* create location configuration */
    ngx_http_segura_merge_loc_conf         /* merge location configuration */
};


ngx_module_t  ngx_http_segura_module = {
    NGX_MODULE_V1,
    &ngx_http_segura_module_ctx,           /* module context */
    ngx_http_segura_commands,              /* module directives */
    NGX_HTTP_MODULE,                       /* module type */
    NULL,                                  /* init master */
    NULL,                                  /* init module */
    ngx_http_segura_init_process,          /* init process */
    NULL,                                  /* init thread */
    NULL,                                  /* exit thread */
    ngx_http_segura_exit_process,          /* exit process */
    NULL,                                  /* exit master */
    NGX_MODULE_V1_PADDING
};


static ngx_int_t
ngx_http_segura_preconfiguration(ngx_conf_t *cf)
{
    return ngx_segura_handshake_add_variables(cf);
}


static void *
ngx_http_segura_create_main_conf(ngx_conf_t *cf)
{
    ngx_http_segura_main_conf_t  *smcf;

    smcf = ngx_pcalloc(cf->pool, sizeof(ngx_http_segura_main_conf_t));
    if (smcf == NULL) {
        return NULL;
    }

    /*
     * set by ngx_pcalloc():
     *
     *     smcf->database = { 0, NULL };
     *     smcf->thread_pool_name = { 0, NULL };
     *     smcf->thread_pool = NULL;
     *     smcf->db = NULL;
     *     smcf->metrics = NULL;
     *     smcf->used = 0;
     */

    smcf->db_connections = NGX_CONF_UNSET_UINT;
    smcf->node_lost_timeout = NGX_CONF_UNSET_MSEC;

    if (ngx_array_init(&smcf->keys, cf->pool, 2,
                       sizeof(ngx_segura_master_key_t))
        != NGX_OK)
    {
        return NULL;
    }

    return smcf;
}


static char *
ngx_http_segura_init_main_conf(ngx_conf_t *cf, void *conf)
{
    ngx_http_segura_main_conf_t *smcf = conf;

    ngx_str_t  name = ngx_string("default");

    ngx_conf_init_uint_value(smcf->db_connections, 8);
    ngx_conf_init_msec_value(smcf->node_lost_timeout, 30000);

    if (!smcf->used) {
        return NGX_CONF_OK;
    }

    if (smcf->database.len == 0) {
        ngx_log_error(NGX_LOG_EMERG, cf->log, 0,
                      "\"segura_database\" is required by the segura "
                      "handlers, see %s:%ui",
                      smcf->used_file, smcf->used_line);
        return NGX_CONF_ERROR;
    }

    if (smcf->keys.nelts == 0) {
        ngx_log_error(NGX_LOG_EMERG, cf->log, 0,
                      "\"segura_master_key\" is required by the segura "
                      "handlers, see %s:%ui",
                      smcf->used_file, smcf->used_line);
        return NGX_CONF_ERROR;
    }

    /* counted across the node's workers */

    if (ngx_segura_metrics_add_zone(cf, smcf) != NGX_OK) {
        return NGX_CONF_ERROR;
    }

    if (smcf->thread_pool == NULL) {
        /* "default" is the pool nginx creates when nobody defines it */

        smcf->thread_pool_name = name;
        smcf->thread_pool = ngx_thread_pool_add(cf, &name);
        if (smcf->thread_pool == NULL) {
            return NGX_CONF_ERROR;
        }
    }

    return NGX_CONF_OK;
}


static void *
ngx_http_segura_create_loc_conf(ngx_conf_t *cf)
{
    ngx_http_segura_loc_conf_t  *slcf;

    slcf = ngx_pcalloc(cf->pool, sizeof(ngx_http_segura_loc_conf_t));
    if (slcf == NULL) {
        return NULL;
    }

    /*
     * set by ngx_pcalloc():
     *
     *     slcf->user = NULL;
     *     slcf->allowed_origins = NULL;
     */

    slcf->user = NGX_CONF_UNSET_PTR;
    slcf->connect_timeout = NGX_CONF_UNSET_MSEC;
    slcf->idle_timeout = NGX_CONF_UNSET_MSEC;
    slcf->ping_interval = NGX_CONF_UNSET_MSEC;
    slcf->login_lifetime = NGX_CONF_UNSET_MSEC;
    slcf->login_idle = NGX_CONF_UNSET_MSEC;
    slcf->max_message = NGX_CONF_UNSET_SIZE;
    slcf->max_body = NGX_CONF_UNSET_SIZE;
    slcf->host_key_policy = NGX_CONF_UNSET_UINT;
    slcf->allowed_origins = NGX_CONF_UNSET_PTR;

    return slcf;
}


static char *
ngx_http_segura_merge_loc_conf(ngx_conf_t *cf, void *parent, void *child)
{
    ngx_http_segura_loc_conf_t *prev = parent;
    ngx_http_segura_loc_conf_t *conf = child;

    ngx_conf_merge_ptr_value(conf->user, prev->user, NULL);
    ngx_conf_merge_msec_value(conf->connect_timeout,
                              prev->connect_timeout, 10000);
    ngx_conf_merge_msec_value(conf->idle_timeout,
                              prev->idle_timeout, 15 * 60000);
    ngx_conf_merge_msec_value(conf->ping_interval,
                              prev->ping_interval, 30000);
    ngx_conf_merge_msec_value(conf->login_lifetime,
                              prev->login_lifetime, 12 * 3600000);
    ngx_conf_merge_msec_value(conf->login_idle,
                              prev->login_idle, 30 * 60000);
    ngx_conf_merge_size_value(conf->max_message,
                              prev->max_message, 1024 * 1024);
    ngx_conf_merge_size_value(conf->max_body, prev->max_body, 64 * 1024);
    ngx_conf_merge_uint_value(conf->host_key_policy,
                              prev->host_key_policy,
                              NGX_SEGURA_HOST_KEY_TOFU);
    ngx_conf_merge_ptr_value(conf->allowed_origins,
                             prev->allowed_origins, NULL);

    if (conf->connect_timeout == 0) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "\"segura_connect_timeout\" must be positive");
        return NGX_CONF_ERROR;
    }

    if (conf->ping_interval == 0) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "\"segura_ping_interval\" must be positive");
        return NGX_CONF_ERROR;
    }

    if (conf->login_idle == 0 || conf->login_lifetime < conf->login_idle) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "\"segura_login_idle\" must be positive and not "
                           "longer than \"segura_login_lifetime\"");
        return NGX_CONF_ERROR;
    }

    return NGX_CONF_OK;
}


static char *
ngx_http_segura_database(ngx_conf_t *cf, ngx_command_t *cmd, void *conf)
{
    ngx_http_segura_main_conf_t *smcf = conf;

    u_char     *p;
    ngx_int_t   n;
    ngx_str_t  *value;

    if (smcf->database.data != NULL) {
        return "is duplicate";
    }

    value = cf->args->elts;

    if (value[1].len == 0 || ngx_strlchr(value[1].data,
                                         value[1].data + value[1].len, '\0'))
    {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "invalid value \"%V\" in \"%V\" directive",
                           &value[1], &cmd->name);
        return NGX_CONF_ERROR;
    }

    /* libpq wants a NUL-terminated string; the conf parser provides one */

    p = ngx_pnalloc(cf->pool, value[1].len + 1);
    if (p == NULL) {
        return NGX_CONF_ERROR;
    }

    ngx_memcpy(p, value[1].data, value[1].len);
    p[value[1].len] = '\0';

    smcf->database.data = p;
    smcf->database.len = value[1].len;

    if (cf->args->nelts == 3) {
        if (ngx_strncmp(value[2].data, "connections=", 12) != 0) {
            ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                               "invalid parameter \"%V\" in \"%V\" directive",
                               &value[2], &cmd->name);
            return NGX_CONF_ERROR;
        }

        n = ngx_atoi(value[2].data + 12, value[2].len - 12);
        if (n == NGX_ERROR || n < 1 || n > 256) {
            ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                               "invalid value \"%V\" in \"%V\" directive, "
                               "connections must be 1-256",
                               &value[2], &cmd->name);
            return NGX_CONF_ERROR;
        }

        smcf->db_connections = n;
    }

    return NGX_CONF_OK;
}


static char *
ngx_http_segura_master_key(ngx_conf_t *cf, ngx_command_t *cmd, void *conf)
{
    ngx_http_segura_main_conf_t *smcf = conf;

    char                     *rv;
    u_char                    buf[NGX_SEGURA_MASTER_KEY_LEN + 1];
    ssize_t                   n;
    ngx_fd_t                  fd;
    ngx_int_t                 id;
    ngx_str_t                *value, file;
    ngx_uint_t                i;
    ngx_file_info_t           fi;
    ngx_pool_cleanup_t       *cln;
    ngx_segura_master_key_t  *key;

    value = cf->args->elts;
    id = 1;

    if (cf->args->nelts == 3) {
        if (ngx_strncmp(value[2].data, "id=", 3) != 0) {
            ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                               "invalid parameter \"%V\" in \"%V\" directive",
                               &value[2], &cmd->name);
            return NGX_CONF_ERROR;
        }

        id = ngx_atoi(value[2].data + 3, value[2].len - 3);
        if (id == NGX_ERROR || id < 1 || id > 255) {
            ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                               "invalid value \"%V\" in \"%V\" directive, "
                               "id must be 1-255", &value[2], &cmd->name);
            return NGX_CONF_ERROR;
        }
    }

    key = smcf->keys.elts;
    for (i = 0; i < smcf->keys.nelts; i++) {
        if (key[i].id == (ngx_uint_t) id) {
            ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                               "\"%V\" directive with id=%i is duplicate",
                               &cmd->name, id);
            return NGX_CONF_ERROR;
        }
    }

    if (smcf->keys.nelts == NGX_SEGURA_MAX_MASTER_KEYS) {
        return "is given too many times";
    }

    file = value[1];

    if (ngx_conf_full_name(cf->cycle, &file, 1) != NGX_OK) {
        return NGX_CONF_ERROR;
    }

    fd = ngx_open_file(file.data, NGX_FILE_RDONLY, NGX_FILE_OPEN, 0);
    if (fd == NGX_INVALID_FILE) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, ngx_errno,
                           "\"%V\" directive: "
                           ngx_open_file_n " \"%V\" failed",
                           &cmd->name, &file);
        return NGX_CONF_ERROR;
    }

    rv = NGX_CONF_ERROR;

    if (ngx_fd_info(fd, &fi) == NGX_FILE_ERROR) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, ngx_errno,
                           "\"%V\" directive: " ngx_fd_info_n " \"%V\" failed",
                           &cmd->name, &file);
        goto done;
    }

    if (!ngx_is_file(&fi)) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "\"%V\" directive: \"%V\" is not a regular file",
                           &cmd->name, &file);
        goto done;
    }

    if (fi.st_mode & (S_IRWXG|S_IRWXO)) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "\"%V\" directive: \"%V\" is accessible by group "
                           "or others (mode 0%ui%ui%ui), use chmod 600",
                           &cmd->name, &file,
                           (ngx_uint_t) (fi.st_mode >> 6) & 7,
                           (ngx_uint_t) (fi.st_mode >> 3) & 7,
                           (ngx_uint_t) fi.st_mode & 7);
        goto done;
    }

    n = ngx_read_fd(fd, buf, sizeof(buf));

    if (n == -1) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, ngx_errno,
                           "\"%V\" directive: " ngx_read_fd_n " \"%V\" failed",
                           &cmd->name, &file);
        goto done;
    }

    if (n != NGX_SEGURA_MASTER_KEY_LEN
        || ngx_file_size(&fi) != NGX_SEGURA_MASTER_KEY_LEN)
    {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "\"%V\" directive: \"%V\" must hold exactly %d "
                           "bytes, it holds %O", &cmd->name, &file,
                           NGX_SEGURA_MASTER_KEY_LEN, ngx_file_size(&fi));
        goto done;
    }

    key = ngx_array_push(&smcf->keys);
    if (key == NULL) {
        goto done;
    }

    key->id = id;
    key->key = NULL;

    cln = ngx_pool_cleanup_add(cf->cycle->pool, NGX_SEGURA_MASTER_KEY_LEN);
    if (cln == NULL) {
        smcf->keys.nelts--;
        goto done;
    }

    /* the key lives in the cleanup's own buffer, wiped when the cycle ends */

    ngx_memcpy(cln->data, buf, NGX_SEGURA_MASTER_KEY_LEN);
    cln->handler = ngx_http_segura_wipe_key;
    key->key = cln->data;

    rv = NGX_CONF_OK;

done:

    OPENSSL_cleanse(buf, sizeof(buf));

    if (ngx_close_file(fd) == NGX_FILE_ERROR) {
        ngx_conf_log_error(NGX_LOG_ALERT, cf, ngx_errno,
                           ngx_close_file_n " \"%V\" failed", &file);
    }

    return rv;
}


static void
ngx_http_segura_wipe_key(void *data)
{
    OPENSSL_cleanse(data, NGX_SEGURA_MASTER_KEY_LEN);
}


static char *
ngx_http_segura_thread_pool(ngx_conf_t *cf, ngx_command_t *cmd, void *conf)
{
    ngx_http_segura_main_conf_t *smcf = conf;

    ngx_str_t  *value;

    if (smcf->thread_pool != NULL) {
        return "is duplicate";
    }

    value = cf->args->elts;

    /*
     * nginx creates the pool named "default" by itself; any other pool
     * must be defined by a "thread_pool" directive before the http block,
     * so that a typo stops "nginx -t" with this directive's name
     */

    if (!(value[1].len == 7
          && ngx_strncmp(value[1].data, "default", 7) == 0)
        && ngx_thread_pool_get(cf->cycle, &value[1]) == NULL)
    {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "\"%V\" directive: unknown thread pool \"%V\", "
                           "define it with \"thread_pool %V threads=N;\" "
                           "before the http block",
                           &cmd->name, &value[1], &value[1]);
        return NGX_CONF_ERROR;
    }

    smcf->thread_pool_name = value[1];
    smcf->thread_pool = ngx_thread_pool_add(cf, &value[1]);
    if (smcf->thread_pool == NULL) {
        return NGX_CONF_ERROR;
    }

    return NGX_CONF_OK;
}


static char *
ngx_http_segura_handler_slot(ngx_conf_t *cf, ngx_command_t *cmd, void *conf)
{
    ngx_http_core_loc_conf_t     *clcf;
    ngx_http_segura_main_conf_t  *smcf;

    clcf = ngx_http_conf_get_module_loc_conf(cf, ngx_http_core_module);

    if (clcf->handler != NULL) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "\"%V\" directive: the location already has a "
                           "content handler", &cmd->name);
        return NGX_CONF_ERROR;
    }

    clcf->handler = (ngx_http_handler_pt) cmd->post;

    smcf = ngx_http_conf_get_module_main_conf(cf, ngx_http_segura_module);

    if (!smcf->used) {
        smcf->used = 1;
        smcf->used_file = cf->conf_file->file.name.data;
        smcf->used_line = cf->conf_file->line;
    }

    return NGX_CONF_OK;
}


static char *
ngx_http_segura_metrics(ngx_conf_t *cf, ngx_command_t *cmd, void *conf)
{
    ngx_http_core_loc_conf_t     *clcf;
    ngx_http_segura_main_conf_t  *smcf;

    /*
     * not a use of the database: a location that only shows the metrics
     * needs no "segura_database", and who may read it is for nginx's
     * access directives to say
     */

    clcf = ngx_http_conf_get_module_loc_conf(cf, ngx_http_core_module);

    if (clcf->handler != NULL) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "\"%V\" directive: the location already has a "
                           "content handler", &cmd->name);
        return NGX_CONF_ERROR;
    }

    clcf->handler = ngx_segura_metrics_handler;

    smcf = ngx_http_conf_get_module_main_conf(cf, ngx_http_segura_module);

    if (ngx_segura_metrics_add_zone(cf, smcf) != NGX_OK) {
        return NGX_CONF_ERROR;
    }

    return NGX_CONF_OK;
}


static char *
ngx_http_segura_allowed_origins(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf)
{
    ngx_http_segura_loc_conf_t *slcf = conf;

    u_char      *p, *last;
    ngx_str_t   *value, *origin;
    ngx_uint_t   i;

    if (slcf->allowed_origins != NGX_CONF_UNSET_PTR) {
        return "is duplicate";
    }

    slcf->allowed_origins = ngx_array_create(cf->pool, cf->args->nelts - 1,
                                             sizeof(ngx_str_t));
    if (slcf->allowed_origins == NULL) {
        return NGX_CONF_ERROR;
    }

    value = cf->args->elts;

    for (i = 1; i < cf->args->nelts; i++) {

        /* an origin is scheme "://" host [ ":" port ], nothing more */

        p = value[i].data;
        last = p + value[i].len;

        if (value[i].len > 8 && ngx_strncmp(p, "https://", 8) == 0) {
            p += 8;

        } else if (value[i].len > 7 && ngx_strncmp(p, "http://", 7) == 0) {
            p += 7;

        } else {
            goto invalid;
        }

        for ( /* void */ ; p < last; p++) {
            if (!(*p >= 'a' && *p <= 'z') && !(*p >= '0' && *p <= '9')
                && *p != '.' && *p != '-' && *p != ':' && *p != '['
                && *p != ']')
            {
                goto invalid;
            }
        }

        origin = ngx_array_push(slcf->allowed_origins);
        if (origin == NULL) {
            return NGX_CONF_ERROR;
        }

        *origin = value[i];
    }

    return NGX_CONF_OK;

invalid:

    ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                       "invalid value \"%V\" in \"%V\" directive, an origin "
                       "is \"http[s]://host[:port]\" in lower case",
                       &value[i], &cmd->name);
    return NGX_CONF_ERROR;
}


static char *
ngx_http_segura_check_bounds(ngx_conf_t *cf, void *post, void *data)
{
    ngx_conf_num_bounds_t  *bounds = post;
    size_t                 *sp = data;

    ngx_str_t  *value;

    /* the stock bounds check does not name the directive: this one does */

    if (*sp >= (size_t) bounds->low && *sp <= (size_t) bounds->high) {
        return NGX_CONF_OK;
    }

    value = cf->args->elts;

    ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                       "invalid value \"%V\" in \"%V\" directive, it must be "
                       "between %i and %i", &value[1], &value[0],
                       bounds->low, bounds->high);

    return NGX_CONF_ERROR;
}


static char *
ngx_http_segura_check_msec_bounds(ngx_conf_t *cf, void *post, void *data)
{
    ngx_conf_num_bounds_t  *bounds = post;
    ngx_msec_t             *mp = data;

    ngx_str_t  *value;

    /* the bounds are whole seconds */

    if (*mp >= (ngx_msec_t) bounds->low
        && *mp <= (ngx_msec_t) bounds->high)
    {
        return NGX_CONF_OK;
    }

    value = cf->args->elts;

    ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                       "invalid value \"%V\" in \"%V\" directive, it must be "
                       "between %is and %is", &value[1], &value[0],
                       bounds->low / 1000, bounds->high / 1000);

    return NGX_CONF_ERROR;
}


static char *
ngx_http_segura_enum(ngx_conf_t *cf, ngx_command_t *cmd, void *conf)
{
    char  *p = conf;

    ngx_str_t        *value;
    ngx_uint_t       *np, i;
    ngx_conf_enum_t  *e;

    np = (ngx_uint_t *) (p + cmd->offset);

    if (*np != NGX_CONF_UNSET_UINT) {
        return "is duplicate";
    }

    value = cf->args->elts;
    e = cmd->post;

    for (i = 0; e[i].name.len != 0; i++) {
        if (e[i].name.len == value[1].len
            && ngx_strcasecmp(e[i].name.data, value[1].data) == 0)
        {
            *np = e[i].value;
            return NGX_CONF_OK;
        }
    }

    ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                       "invalid value \"%V\" in \"%V\" directive",
                       &value[1], &cmd->name);

    return NGX_CONF_ERROR;
}


static ngx_int_t
ngx_http_segura_init_process(ngx_cycle_t *cycle)
{
    ngx_http_segura_main_conf_t  *smcf;

    smcf = ngx_http_cycle_get_module_main_conf(cycle, ngx_http_segura_module);

    if (smcf == NULL) {
        return NGX_OK;
    }

    /* a location may show the metrics without any other segura handler */

    ngx_segura_metrics_init_process(cycle, smcf);

    if (!smcf->used) {
        return NGX_OK;
    }

    /*
     * jansson's parsed copies of request bodies hold passwords, private
     * keys and passphrases: whatever jansson frees is wiped first
     */

    json_set_alloc_funcs(malloc, ngx_http_segura_json_free);

    if (ssh_init() != SSH_OK) {
        ngx_log_error(NGX_LOG_EMERG, cycle->log, 0, "ssh_init() failed");
        return NGX_ERROR;
    }

    smcf->db = ngx_segura_db_pool_create(cycle, &smcf->database,
                                         smcf->db_connections);
    if (smcf->db == NULL) {
        return NGX_ERROR;
    }

    ngx_segura_live_init();

    /* the heartbeat first: its task is queued ahead of any session's */

    if (ngx_segura_fleet_init_process(cycle, smcf) != NGX_OK) {
        return NGX_ERROR;
    }

    /* what sessions owe the database, written whatever it is doing */

    if (ngx_segura_outbox_init_process(cycle, smcf) != NGX_OK) {
        return NGX_ERROR;
    }

    /* live sessions end when their grant goes, from whichever node */

    if (ngx_segura_watch_init_process(cycle, smcf) != NGX_OK) {
        return NGX_ERROR;
    }

    return NGX_OK;
}


static void
ngx_http_segura_json_free(void *p)
{
    /* either thread; the allocation's whole usable size is wiped */

    if (p != NULL) {
        OPENSSL_cleanse(p, malloc_usable_size(p));
        free(p);
    }
}


static void
ngx_http_segura_exit_process(ngx_cycle_t *cycle)
{
    ngx_http_segura_main_conf_t  *smcf;

    smcf = ngx_http_cycle_get_module_main_conf(cycle, ngx_http_segura_module);

    if (smcf == NULL) {
        return;
    }

    /* the thread pools have been joined: no task adds to the counters */

    ngx_segura_metrics_exit_process();

    if (!smcf->used) {
        return;
    }

    /* the thread pools have been joined by now: no task holds a handle */

    ngx_segura_watch_exit_process();
    ngx_segura_outbox_exit_process();
    ngx_segura_fleet_exit_process();

    if (smcf->db != NULL) {
        ngx_segura_db_pool_destroy(smcf->db);
        smcf->db = NULL;
    }

    (void) ssh_finalize();
}
