/* notify.h - the systemd notify protocol (sd_notify(3)) without libsystemd: one datagram per state change to $NOTIFY_SOCKET, and the watchdog interval from $WATCHDOG_USEC. */
#ifndef TURNOUT_NOTIFY_H
#define TURNOUT_NOTIFY_H

#include <stdint.h>

/* Reads NOTIFY_SOCKET, WATCHDOG_USEC and WATCHDOG_PID and unsets them, so
 * no child inherits them. Without NOTIFY_SOCKET everything below is a no-op. */
void notify_init(void);

/* Sends MSG ("READY=1\nSTATUS=..."); returns 0, or -1 when it could not be
 * sent (or there is no socket). */
int notify_send(const char *msg);

/* How often to send WATCHDOG=1: half of WATCHDOG_USEC, in ms; 0 when systemd
 * asked for no watchdog (or for another process's). */
int64_t notify_watchdog_ms(void);

#endif
