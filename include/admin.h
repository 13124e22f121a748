/* admin.h - the admin API: CRUD of providers, routes and routers on its own listener and thread. */
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

#endif
