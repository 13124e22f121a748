/* reload.h - the logs' targets, and SIGHUP: a new config handed to every event loop without stopping one. */
#ifndef TURNOUT_RELOAD_H
#define TURNOUT_RELOAD_H

#include <stddef.h>

#include "worker.h"

/* Opens the error log and the access log of gw->cfg and sets the log level
 * (at start-up). Returns 0, or -1 with a message in ERR. */
int reload_open_logs(gateway_t *gw, char *err, size_t errlen);

/* Re-reads FILE. A valid config is published to the workers and the admin
 * thread, each of which takes it between two events (nothing is dropped);
 * the logs are reopened (a rotated file is let go), the level applied.
 * Settings that need a restart (listen, workers, data_dir, admin.*, store.*)
 * keep their running values, with a warning. An invalid config is rejected
 * with an error line and the running one keeps serving. Returns 0 or -1. */
int reload_config(gateway_t *gw, const char *file);

/* Frees the configs reload_config replaced and closes the access log. */
void reload_cleanup(gateway_t *gw);

#endif
