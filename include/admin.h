/* admin.h - the admin API: CRUD of providers, routes, routers and keys on its own listener and thread. */
#ifndef TURNOUT_ADMIN_H
#define TURNOUT_ADMIN_H

#include <stddef.h>

#include "worker.h"

/* Binds admin.listen and starts the admin thread. Returns 0, or -1 with a
 * message in err. */
int admin_start(gateway_t *gw, char *err, size_t errlen);

/* Stops the admin thread (finishing the call in progress) and frees it.
 * Safe when admin_start failed or never ran. */
void admin_stop(void);

/* Thread-safe: the admin thread takes gw->live as its config and stores
 * gw->gen in gw->admin_gen once it has. */
void admin_reload(void);

/* Records that the stored key ID (a UUID) was used; any thread may call it.
 * The admin thread writes last_used_at soon after (at most one pending
 * write per key; callers ask admin_key_use_due first). */
void admin_key_used(const char *id);

/* 1 when a use of key ID, whose record says LAST_USED_AT (NULL: never),
 * should be recorded: the record's time is older than the refresh interval
 * and this thread has not recorded one within it. The thread's own memory
 * matters because a worker keeps the key record it parsed across the write
 * of last_used_at (store.c), so its copy stays old until the store's
 * records change. */
int admin_key_use_due(const char *id, const char *last_used_at);

#endif
