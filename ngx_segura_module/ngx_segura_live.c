
/*
 * Copyright (C) ngx_segura_module authors
 */


/*
 * The worker's registry of live terminals: what the watcher re-checks
 * when a grant changes (ngx_segura_watch.c), what an administrator's end
 * finds, what the fleet asks before its goodbye (ngx_segura_fleet.c),
 * and later what watch and resume attach to.  It knows an entry only by
 * its ids and its end handler, so it depends on nothing of the module.
 * Event loop only.
 */


#include <ngx_config.h>
#include <ngx_core.h>
#include "ngx_segura_live.h"


static ngx_queue_t  ngx_segura_live;
static ngx_uint_t   ngx_segura_live_n;


void
ngx_segura_live_init(void)
{
    ngx_queue_init(&ngx_segura_live);
    ngx_segura_live_n = 0;
}


void
ngx_segura_live_add(ngx_segura_live_t *l)
{
    if (l->listed) {
        return;
    }

    ngx_queue_insert_tail(&ngx_segura_live, &l->queue);
    l->listed = 1;
    ngx_segura_live_n++;
}


void
ngx_segura_live_remove(ngx_segura_live_t *l)
{
    if (!l->listed) {
        return;
    }

    ngx_queue_remove(&l->queue);
    l->listed = 0;
    ngx_segura_live_n--;
}


ngx_uint_t
ngx_segura_live_count(void)
{
    return ngx_segura_live_n;
}


ngx_uint_t
ngx_segura_live_get(ngx_segura_live_ref_t *refs, ngx_uint_t n)
{
    ngx_uint_t          i;
    ngx_queue_t        *q;
    ngx_segura_live_t  *l;

    i = 0;

    for (q = ngx_queue_head(&ngx_segura_live);
         q != ngx_queue_sentinel(&ngx_segura_live) && i < n;
         q = ngx_queue_next(q))
    {
        l = ngx_queue_data(q, ngx_segura_live_t, queue);

        (void) ngx_cpystrn((u_char *) refs[i].id, (u_char *) l->id,
                           sizeof(refs[i].id));
        refs[i].user_id = l->user_id;
        refs[i].key_id = l->key_id;
        refs[i].device_id = l->device_id;
        i++;
    }

    return i;
}


ngx_segura_live_t *
ngx_segura_live_find(const char *id)
{
    ngx_queue_t        *q;
    ngx_segura_live_t  *l;

    for (q = ngx_queue_head(&ngx_segura_live);
         q != ngx_queue_sentinel(&ngx_segura_live);
         q = ngx_queue_next(q))
    {
        l = ngx_queue_data(q, ngx_segura_live_t, queue);

        if (ngx_strcmp(l->id, id) == 0) {
            return l;
        }
    }

    return NULL;
}


void
ngx_segura_live_end(const char *id, ngx_uint_t by_admin)
{
    ngx_segura_live_t  *l;

    /* the id came from this worker's own list, through the database */

    l = ngx_segura_live_find(id);

    if (l != NULL) {
        /* the handler takes the entry off the list */
        l->end(l, by_admin);
    }
}


void
ngx_segura_live_watched(const char *id, const char *by, ngx_uint_t left)
{
    ngx_segura_live_t  *l;

    l = ngx_segura_live_find(id);

    if (l != NULL && l->watched != NULL) {
        l->watched(l, by, left);
    }
}


void
ngx_segura_live_moderate(const char *id, ngx_segura_live_action_e action,
    const char *by, const char *text)
{
    ngx_segura_live_t  *l;

    l = ngx_segura_live_find(id);

    if (l != NULL && l->moderate != NULL) {
        l->moderate(l, action, by, text);
    }
}
