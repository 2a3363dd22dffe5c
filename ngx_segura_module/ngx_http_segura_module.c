
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
#include "ngx_segura_retention.h"
#include "ngx_segura_rotate.h"
#include "ngx_segura_handshake.h"
#include "ngx_segura_live.h"
#include "ngx_segura_metrics.h"
#include "ngx_segura_outbox.h"
#include "ngx_segura_resume.h"
#include "ngx_segura_watch.h"

#include <jansson.h>
#include <libssh/libssh.h>
#include <dirent.h>
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
static char *ngx_http_segura_rotation_schedule(ngx_conf_t *cf,
    ngx_command_t *cmd, void *conf);
static char *ngx_http_segura_retention(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf);
static char *ngx_http_segura_allowed_origins(ngx_conf_t *cf,
    ngx_command_t *cmd, void *conf);
static char *ngx_http_segura_login_address_limit(ngx_conf_t *cf,
    ngx_command_t *cmd, void *conf);
static char *ngx_http_segura_user(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf);
static char *ngx_http_segura_check_user(ngx_conf_t *cf,
    ngx_http_segura_loc_conf_t *slcf);
static ngx_uint_t ngx_http_segura_auth_basic_on(ngx_conf_t *cf);
static char *ngx_http_segura_check_bounds(ngx_conf_t *cf, void *post,
    void *data);
static char *ngx_http_segura_check_msec_bounds(ngx_conf_t *cf, void *post,
    void *data);
static char *ngx_http_segura_enum(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf);
static ngx_int_t ngx_http_segura_init_process(ngx_cycle_t *cycle);
static void ngx_http_segura_json_free(void *p);
static void ngx_http_segura_exit_process(ngx_cycle_t *cycle);
static void ngx_http_segura_wait_threads(ngx_cycle_t *cycle);


static ngx_conf_num_bounds_t  ngx_http_segura_max_message_bounds = {
    ngx_http_segura_check_bounds, 125, 64 * 1024 * 1024
};

static ngx_conf_num_bounds_t  ngx_http_segura_resume_buffer_bounds = {
    ngx_http_segura_check_bounds, 4096, 64 * 1024 * 1024
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


static ngx_conf_enum_t  ngx_http_segura_recording_overflows[] = {
    { ngx_string("pause"), NGX_SEGURA_RECORDING_PAUSE },
    { ngx_string("drop"), NGX_SEGURA_RECORDING_DROP },
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

    { ngx_string("segura_login_concurrency"),
      NGX_HTTP_MAIN_CONF|NGX_CONF_TAKE1,
      ngx_conf_set_num_slot,
      NGX_HTTP_MAIN_CONF_OFFSET,
      offsetof(ngx_http_segura_main_conf_t, login_concurrency),
      NULL },

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
      NGX_HTTP_LOC_CONF|NGX_CONF_TAKE1,
      ngx_http_segura_user,
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

    { ngx_string("segura_resume_timeout"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_TAKE1,
      ngx_conf_set_msec_slot,
      NGX_HTTP_LOC_CONF_OFFSET,
      offsetof(ngx_http_segura_loc_conf_t, resume_timeout),
      NULL },

    { ngx_string("segura_resume_buffer"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_TAKE1,
      ngx_conf_set_size_slot,
      NGX_HTTP_LOC_CONF_OFFSET,
      offsetof(ngx_http_segura_loc_conf_t, resume_buffer),
      &ngx_http_segura_resume_buffer_bounds },

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

    { ngx_string("segura_login_address_limit"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_TAKE12,
      ngx_http_segura_login_address_limit,
      NGX_HTTP_LOC_CONF_OFFSET,
      0,
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

    { ngx_string("segura_recording"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_FLAG,
      ngx_conf_set_flag_slot,
      NGX_HTTP_LOC_CONF_OFFSET,
      offsetof(ngx_http_segura_loc_conf_t, recording),
      NULL },

    { ngx_string("segura_recording_input"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_FLAG,
      ngx_conf_set_flag_slot,
      NGX_HTTP_LOC_CONF_OFFSET,
      offsetof(ngx_http_segura_loc_conf_t, recording_input),
      NULL },

    { ngx_string("segura_recording_overflow"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_TAKE1,
      ngx_http_segura_enum,
      NGX_HTTP_LOC_CONF_OFFSET,
      offsetof(ngx_http_segura_loc_conf_t, recording_overflow),
      &ngx_http_segura_recording_overflows },

    { ngx_string("segura_watch_notice"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_FLAG,
      ngx_conf_set_flag_slot,
      NGX_HTTP_LOC_CONF_OFFSET,
      offsetof(ngx_http_segura_loc_conf_t, watch_notice),
      NULL },

    { ngx_string("segura_recording_self"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_FLAG,
      ngx_conf_set_flag_slot,
      NGX_HTTP_LOC_CONF_OFFSET,
      offsetof(ngx_http_segura_loc_conf_t, recording_self),
      NULL },

    { ngx_string("segura_recording_retention"),
      NGX_HTTP_MAIN_CONF|NGX_CONF_TAKE1,
      ngx_http_segura_retention,
      NGX_HTTP_MAIN_CONF_OFFSET,
      0,
      NULL },

    { ngx_string("segura_rotation_schedule"),
      NGX_HTTP_MAIN_CONF|NGX_CONF_TAKE1,
      ngx_http_segura_rotation_schedule,
      NGX_HTTP_MAIN_CONF_OFFSET,
      0,
      NULL },

    { ngx_string("segura_rotation_retry"),
      NGX_HTTP_MAIN_CONF|NGX_CONF_TAKE1,
      ngx_conf_set_msec_slot,
      NGX_HTTP_MAIN_CONF_OFFSET,
      offsetof(ngx_http_segura_main_conf_t, rotation_retry),
      NULL },

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
    smcf->recording_retention = NGX_CONF_UNSET_MSEC;
    smcf->rotation_schedule = NGX_CONF_UNSET_MSEC;
    smcf->rotation_retry = NGX_CONF_UNSET_MSEC;
    smcf->login_concurrency = NGX_CONF_UNSET;

    if (ngx_array_init(&smcf->keys, cf->pool, 2,
                       sizeof(ngx_segura_master_key_t))
        != NGX_OK)
    {
        return NULL;
    }

    if (ngx_array_init(&smcf->locations, cf->pool, 4,
                       sizeof(ngx_http_segura_location_t))
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
    ngx_conf_init_msec_value(smcf->recording_retention, 0);
    ngx_conf_init_msec_value(smcf->rotation_schedule, 300000);
    ngx_conf_init_msec_value(smcf->rotation_retry, 3600000);

    /* unset: half the CPUs among the workers, see init_process */

    if (smcf->login_concurrency != NGX_CONF_UNSET
        && (smcf->login_concurrency < 1 || smcf->login_concurrency > 1024))
    {
        ngx_log_error(NGX_LOG_EMERG, cf->log, 0,
                      "\"segura_login_concurrency\" must be between 1 and "
                      "1024");
        return NGX_CONF_ERROR;
    }

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
     *     slcf->handler = NULL;   (not inherited: set by segura_api
     *                               or segura_session in its location)
     *     slcf->user_text = { 0, NULL };
     */

    slcf->user = NGX_CONF_UNSET_PTR;
    slcf->connect_timeout = NGX_CONF_UNSET_MSEC;
    slcf->idle_timeout = NGX_CONF_UNSET_MSEC;
    slcf->ping_interval = NGX_CONF_UNSET_MSEC;
    slcf->resume_timeout = NGX_CONF_UNSET_MSEC;
    slcf->resume_buffer = NGX_CONF_UNSET_SIZE;
    slcf->login_lifetime = NGX_CONF_UNSET_MSEC;
    slcf->login_idle = NGX_CONF_UNSET_MSEC;
    slcf->login_address_limit = NGX_CONF_UNSET_UINT;
    slcf->login_address_window = NGX_CONF_UNSET_MSEC;
    slcf->max_message = NGX_CONF_UNSET_SIZE;
    slcf->max_body = NGX_CONF_UNSET_SIZE;
    slcf->host_key_policy = NGX_CONF_UNSET_UINT;
    slcf->recording = NGX_CONF_UNSET;
    slcf->recording_input = NGX_CONF_UNSET;
    slcf->recording_overflow = NGX_CONF_UNSET_UINT;
    slcf->watch_notice = NGX_CONF_UNSET;
    slcf->recording_self = NGX_CONF_UNSET;
    slcf->allowed_origins = NGX_CONF_UNSET_PTR;

    return slcf;
}


static char *
ngx_http_segura_merge_loc_conf(ngx_conf_t *cf, void *parent, void *child)
{
    ngx_http_segura_loc_conf_t *prev = parent;
    ngx_http_segura_loc_conf_t *conf = child;

    if (conf->user == NGX_CONF_UNSET_PTR) {
        conf->user = (prev->user == NGX_CONF_UNSET_PTR) ? NULL : prev->user;
        conf->user_text = prev->user_text;
    }
    ngx_conf_merge_msec_value(conf->connect_timeout,
                              prev->connect_timeout, 10000);
    ngx_conf_merge_msec_value(conf->idle_timeout,
                              prev->idle_timeout, 15 * 60000);
    ngx_conf_merge_msec_value(conf->ping_interval,
                              prev->ping_interval, 30000);
    ngx_conf_merge_msec_value(conf->resume_timeout,
                              prev->resume_timeout, 60000);
    ngx_conf_merge_size_value(conf->resume_buffer,
                              prev->resume_buffer, 256 * 1024);
    ngx_conf_merge_msec_value(conf->login_lifetime,
                              prev->login_lifetime, 12 * 3600000);
    ngx_conf_merge_msec_value(conf->login_idle,
                              prev->login_idle, 30 * 60000);
    ngx_conf_merge_uint_value(conf->login_address_limit,
                              prev->login_address_limit, 30);
    ngx_conf_merge_msec_value(conf->login_address_window,
                              prev->login_address_window, 60000);
    ngx_conf_merge_size_value(conf->max_message,
                              prev->max_message, 1024 * 1024);
    ngx_conf_merge_size_value(conf->max_body, prev->max_body, 64 * 1024);
    ngx_conf_merge_uint_value(conf->host_key_policy,
                              prev->host_key_policy,
                              NGX_SEGURA_HOST_KEY_TOFU);
    ngx_conf_merge_value(conf->recording, prev->recording, 1);
    ngx_conf_merge_value(conf->recording_input, prev->recording_input, 0);
    ngx_conf_merge_value(conf->watch_notice, prev->watch_notice, 1);
    ngx_conf_merge_uint_value(conf->recording_overflow,
                              prev->recording_overflow,
                              NGX_SEGURA_RECORDING_PAUSE);
    ngx_conf_merge_value(conf->recording_self, prev->recording_self, 0);
    ngx_conf_merge_ptr_value(conf->allowed_origins,
                             prev->allowed_origins, NULL);

    if (conf->user != NULL && conf->handler != NULL
        && ngx_http_segura_check_user(cf, conf) != NGX_CONF_OK)
    {
        return NGX_CONF_ERROR;
    }

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
    ngx_http_segura_loc_conf_t *slcf = conf;

    ngx_http_core_loc_conf_t     *clcf;
    ngx_http_segura_location_t   *loc;
    ngx_http_segura_main_conf_t  *smcf;

    clcf = ngx_http_conf_get_module_loc_conf(cf, ngx_http_core_module);

    if (clcf->handler != NULL) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "\"%V\" directive: the location already has a "
                           "content handler", &cmd->name);
        return NGX_CONF_ERROR;
    }

    clcf->handler = (ngx_http_handler_pt) cmd->post;
    slcf->handler = clcf->handler;

    smcf = ngx_http_conf_get_module_main_conf(cf, ngx_http_segura_module);

    /*
     * errors nginx finds before it chooses a location are JSON when the
     * path starts with the name of a prefix or exact location of ours
     * (ngx_segura_errpage.c); a regex location cannot be told in advance
     */

#if (NGX_PCRE)
    if (clcf->regex == NULL && !clcf->named)
#else
    if (!clcf->named)
#endif
    {
        loc = ngx_array_push(&smcf->locations);
        if (loc == NULL) {
            return NGX_CONF_ERROR;
        }

        loc->server = ngx_http_conf_get_module_srv_conf(cf,
                                                        ngx_http_core_module);
        loc->name = clcf->name;
        loc->exact = clcf->exact_match;
    }

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


/*
 * segura_rotation_schedule off | <time>: how often worker 0 looks for keys
 * due for rotation (ngx_segura_rotate_schedule.c); at least a second
 */

static char *
ngx_http_segura_rotation_schedule(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf)
{
    ngx_http_segura_main_conf_t *smcf = conf;

    ngx_str_t   *value;
    ngx_msec_t   ms;

    if (smcf->rotation_schedule != NGX_CONF_UNSET_MSEC) {
        return "is duplicate";
    }

    value = cf->args->elts;

    if (value[1].len == 3 && ngx_strncmp(value[1].data, "off", 3) == 0) {
        smcf->rotation_schedule = 0;
        return NGX_CONF_OK;
    }

    ms = ngx_parse_time(&value[1], 0);

    if (ms == (ngx_msec_t) NGX_ERROR || ms < 1000) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "invalid value \"%V\" in \"%V\" directive, "
                           "it must be \"off\" or a time of at least 1s",
                           &value[1], &cmd->name);
        return NGX_CONF_ERROR;
    }

    smcf->rotation_schedule = ms;

    return NGX_CONF_OK;
}


/*
 * segura_recording_retention off | <time>: how long a recording is kept
 * after its session ended (ngx_segura_retention.c); at least a second
 */

static char *
ngx_http_segura_retention(ngx_conf_t *cf, ngx_command_t *cmd, void *conf)
{
    ngx_http_segura_main_conf_t *smcf = conf;

    ngx_str_t   *value;
    ngx_msec_t   ms;

    if (smcf->recording_retention != NGX_CONF_UNSET_MSEC) {
        return "is duplicate";
    }

    value = cf->args->elts;

    if (value[1].len == 3 && ngx_strncmp(value[1].data, "off", 3) == 0) {
        smcf->recording_retention = 0;
        return NGX_CONF_OK;
    }

    ms = ngx_parse_time(&value[1], 0);

    if (ms == (ngx_msec_t) NGX_ERROR || ms < 1000) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "invalid value \"%V\" in \"%V\" directive, "
                           "it must be \"off\" or a time of at least 1s",
                           &value[1], &cmd->name);
        return NGX_CONF_ERROR;
    }

    smcf->recording_retention = ms;

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
ngx_http_segura_user(ngx_conf_t *cf, ngx_command_t *cmd, void *conf)
{
    ngx_http_segura_loc_conf_t *slcf = conf;

    char       *rv;
    ngx_str_t  *value;

    rv = ngx_http_set_complex_value_slot(cf, cmd, conf);
    if (rv != NGX_CONF_OK) {
        return rv;
    }

    /* the text is checked once the location is complete (merge) */

    value = cf->args->elts;
    slcf->user_text = value[1];

    return NGX_CONF_OK;
}


static char *
ngx_http_segura_check_user(ngx_conf_t *cf, ngx_http_segura_loc_conf_t *slcf)
{
    u_char                    *p, *last, *start;
    ngx_str_t                  name;
    ngx_uint_t                 i;
    ngx_http_core_loc_conf_t  *clcf;
#if (NGX_HTTP_SSL)
    ngx_http_ssl_srv_conf_t   *sscf;
#endif

    static ngx_str_t  client[] = {
        ngx_string("http_"), ngx_string("cookie_"), ngx_string("arg_"),
        ngx_null_string
    };

    static ngx_str_t  client_exact[] = {
        ngx_string("args"), ngx_string("query_string"),
        ngx_string("request_uri"), ngx_string("uri"),
        ngx_string("document_uri"), ngx_string("request"),
        ngx_string("request_body"), ngx_string("request_line"),
        ngx_string("host"), ngx_string("http_host"), ngx_null_string
    };

    /*
     * segura_user names whoever the value says, so it must come from what
     * the configuration controls, not from the client: every variable of
     * the value is checked.  $remote_user is the client's own
     * Authorization header unless auth_basic checked it in this location
     * (with "satisfy all"); $ssl_client_* is only verified with
     * "ssl_verify_client on" or "optional"; request headers, cookies,
     * arguments and the URI are the client's.  Variables of the
     * configuration's own (auth_request_set, map, set) are accepted.
     */

    p = slcf->user_text.data;
    last = p + slcf->user_text.len;

    while (p < last) {
        if (*p++ != '$') {
            continue;
        }

        if (p < last && *p == '{') {
            start = ++p;
            while (p < last && *p != '}') {
                p++;
            }

        } else {
            start = p;
            while (p < last
                   && ((*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z')
                       || (*p >= '0' && *p <= '9') || *p == '_'))
            {
                p++;
            }
        }

        name.data = start;
        name.len = p - start;

        if (name.len == 11
            && ngx_strncasecmp(name.data, (u_char *) "remote_user", 11) == 0)
        {
            clcf = ngx_http_conf_get_module_loc_conf(cf,
                                                     ngx_http_core_module);

            if (!ngx_http_segura_auth_basic_on(cf)
                || clcf->satisfy != NGX_HTTP_SATISFY_ALL)
            {
                ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                                   "\"segura_user %V\" needs \"auth_basic\" "
                                   "on in the same location (and \"satisfy "
                                   "all\"): without it $remote_user is "
                                   "whatever Authorization header the client "
                                   "sends", &slcf->user_text);
                return NGX_CONF_ERROR;
            }

            continue;
        }

        if (name.len > 11
            && ngx_strncasecmp(name.data, (u_char *) "ssl_client_", 11) == 0)
        {
#if (NGX_HTTP_SSL)
            sscf = ngx_http_conf_get_module_srv_conf(cf, ngx_http_ssl_module);

            /* 1: on, 2: optional; 3 (optional_no_ca) checks nothing */

            if (sscf != NULL && (sscf->verify == 1 || sscf->verify == 2)) {
                continue;
            }
#endif

            ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                               "\"segura_user %V\" needs \"ssl_verify_client "
                               "on\" (or \"optional\") in the server: else "
                               "the client certificate is not verified",
                               &slcf->user_text);
            return NGX_CONF_ERROR;
        }

        for (i = 0; client[i].len; i++) {
            if (name.len >= client[i].len
                && ngx_strncasecmp(name.data, client[i].data, client[i].len)
                   == 0)
            {
                goto refused;
            }
        }

        for (i = 0; client_exact[i].len; i++) {
            if (name.len == client_exact[i].len
                && ngx_strncasecmp(name.data, client_exact[i].data, name.len)
                   == 0)
            {
                goto refused;
            }
        }
    }

    return NGX_CONF_OK;

refused:

    ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                       "\"segura_user %V\": $%V is sent by the client, "
                       "anyone could name any user; use a variable the "
                       "configuration sets, such as one of auth_request_set",
                       &slcf->user_text, &name);
    return NGX_CONF_ERROR;
}


static ngx_uint_t
ngx_http_segura_auth_basic_on(ngx_conf_t *cf)
{
    ngx_uint_t                  i;
    ngx_module_t               *m;
    ngx_http_conf_ctx_t        *ctx;
    ngx_http_complex_value_t  **alcf;

    /*
     * auth_basic's configuration is private to its module, so it is
     * found by name (the module may be left out of a build); its first
     * two fields are the realm and the user file, both set when it is on
     * (ngx_http_auth_basic_module.c), and a realm of "off" turns it off
     */

    ctx = cf->ctx;

    for (i = 0; cf->cycle->modules[i]; i++) {
        m = cf->cycle->modules[i];

        if (m->type != NGX_HTTP_MODULE
            || ngx_strcmp(m->name, "ngx_http_auth_basic_module") != 0)
        {
            continue;
        }

        alcf = ctx->loc_conf[m->ctx_index];

        if (alcf == NULL || alcf[0] == NULL || alcf[1] == NULL) {
            return 0;
        }

        if (alcf[0]->lengths == NULL
            && alcf[0]->value.len == 3
            && ngx_strncmp(alcf[0]->value.data, "off", 3) == 0)
        {
            return 0;
        }

        return 1;
    }

    return 0;
}


static char *
ngx_http_segura_login_address_limit(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf)
{
    ngx_http_segura_loc_conf_t *slcf = conf;

    ngx_int_t    n;
    ngx_str_t   *value;
    ngx_msec_t   window;

    if (slcf->login_address_limit != NGX_CONF_UNSET_UINT) {
        return "is duplicate";
    }

    value = cf->args->elts;

    /* "off", or attempts [per time] */

    if (value[1].len == 3 && ngx_strncmp(value[1].data, "off", 3) == 0) {
        if (cf->args->nelts != 2) {
            goto invalid;
        }

        slcf->login_address_limit = 0;
        slcf->login_address_window = 60000;

        return NGX_CONF_OK;
    }

    n = ngx_atoi(value[1].data, value[1].len);
    if (n == NGX_ERROR || n < 1 || n > 1000000) {
        goto invalid;
    }

    window = 60000;

    if (cf->args->nelts == 3) {
        window = ngx_parse_time(&value[2], 0);
        if (window == (ngx_msec_t) NGX_ERROR || window < 1000
            || window > 86400000)
        {
            ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                               "invalid value \"%V\" in \"%V\" directive, "
                               "the window is 1s to 1d", &value[2],
                               &cmd->name);
            return NGX_CONF_ERROR;
        }
    }

    slcf->login_address_limit = n;
    slcf->login_address_window = window;

    return NGX_CONF_OK;

invalid:

    ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                       "invalid value \"%V\" in \"%V\" directive, it is "
                       "\"off\" or a number of attempts (1-1000000) and a "
                       "time", &value[1], &cmd->name);
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
    ngx_core_conf_t              *ccf;
    ngx_http_segura_main_conf_t  *smcf;

    smcf = ngx_http_cycle_get_module_main_conf(cycle, ngx_http_segura_module);

    if (smcf == NULL) {
        return NGX_OK;
    }

    if (smcf->login_concurrency == NGX_CONF_UNSET) {

        /*
         * half the CPUs for the node, shared by its workers, at least one
         * each: argon2id is CPU-bound, and the other half is what the
         * session set-ups of a login flood get
         */

        ccf = (ngx_core_conf_t *) ngx_get_conf(cycle->conf_ctx,
                                               ngx_core_module);

        smcf->login_concurrency = ngx_max(ngx_ncpu / 2
                                          / ngx_max(ccf->worker_processes, 1),
                                          1);
    }

    /* a location may show the metrics without any other segura handler */

    ngx_segura_metrics_init_process(cycle, smcf);

    if (!smcf->used) {
        return NGX_OK;
    }

    ngx_log_error(NGX_LOG_INFO, cycle->log, 0,
                  "segura: logins: %i argon2id verifications at a time in "
                  "this worker", smcf->login_concurrency);

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

    /* a resume that reaches another worker of the node is passed here */

    if (ngx_segura_resume_init_process(cycle) != NGX_OK) {
        return NGX_ERROR;
    }

    /* old recordings go, one node of the fleet at a time */

    if (ngx_segura_retention_init_process(cycle, smcf) != NGX_OK) {
        return NGX_ERROR;
    }

    /* and keys due for rotation rotate, picked by one node at a time */

    if (ngx_segura_rotate_schedule_init_process(cycle, smcf) != NGX_OK) {
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

    ngx_http_segura_wait_threads(cycle);

    /* the pool threads are gone: no task adds to the counters */

    ngx_segura_metrics_exit_process();

    if (!smcf->used) {
        return;
    }

    /* no task holds a handle */

    ngx_segura_resume_exit_process();
    ngx_segura_retention_exit_process();
    ngx_segura_rotate_schedule_exit_process();
    ngx_segura_watch_exit_process();
    ngx_segura_outbox_exit_process();
    ngx_segura_fleet_exit_process();

    if (smcf->db != NULL) {
        ngx_segura_db_pool_destroy(smcf->db);
        smcf->db = NULL;
    }

    (void) ssh_finalize();
}


/*
 * nginx's thread pools have taken their exit tasks by the time this
 * module's exit_process runs, but a pool thread that said so may still
 * be inside pthread_exit(), running its thread-local destructors: among
 * them OpenSSL's, which free the thread's DRBGs and error state.  Were
 * the worker to call exit() meanwhile, OpenSSL's atexit cleanup would
 * free the same objects from the main thread ("double free or
 * corruption" at exit, one worker exit in a few thousand).  The worker
 * is done with its event loop here, so waiting is allowed: until the
 * process has one thread left (Linux: /proc/self/task), at most a
 * second.
 */

static void
ngx_http_segura_wait_threads(ngx_cycle_t *cycle)
{
    DIR             *dir;
    ngx_uint_t       n, i;
    struct dirent   *de;
    struct timespec  ts;

    for (i = 0; i < 1000; i++) {

        dir = opendir("/proc/self/task");
        if (dir == NULL) {
            return;
        }

        n = 0;

        while ((de = readdir(dir)) != NULL) {
            if (de->d_name[0] != '.') {
                n++;
            }
        }

        (void) closedir(dir);

        if (n <= 1) {
            ngx_log_debug1(NGX_LOG_DEBUG_CORE, cycle->log, 0,
                           "segura: pool threads gone after %ui ms", i);
            return;
        }

        ts.tv_sec = 0;
        ts.tv_nsec = 1000000;
        (void) nanosleep(&ts, NULL);
    }

    ngx_log_error(NGX_LOG_WARN, cycle->log, 0,
                  "segura: %ui threads still running at exit", n);
}
