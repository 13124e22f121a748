/* notify.c - sd_notify(3) by hand: a datagram socket to $NOTIFY_SOCKET (a path, or "@name" in the abstract namespace). */
#include "notify.h"

#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

static struct sockaddr_un addr;
static socklen_t addr_len;
static int64_t watchdog_ms;

void notify_init(void)
{
    const char *path = getenv("NOTIFY_SOCKET"), *usec = getenv("WATCHDOG_USEC"), *pid = getenv("WATCHDOG_PID");
    size_t n;
    if (path != NULL && (path[0] == '/' || path[0] == '@') && (n = strlen(path)) < sizeof(addr.sun_path)) {
        addr.sun_family = AF_UNIX;
        memcpy(addr.sun_path, path, n);
        if (path[0] == '@')
            addr.sun_path[0] = '\0';
        addr_len = (socklen_t)(offsetof(struct sockaddr_un, sun_path) + n);
    }
    if (usec != NULL && atoll(usec) > 0 && (pid == NULL || atol(pid) == (long)getpid()))
        watchdog_ms = atoll(usec) / 2000 > 0 ? atoll(usec) / 2000 : 1;
    unsetenv("NOTIFY_SOCKET");
    unsetenv("WATCHDOG_USEC");
    unsetenv("WATCHDOG_PID");
}

int notify_send(const char *msg)
{
    int fd, rc;
    if (addr_len == 0)
        return -1;
    if ((fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0)) < 0)
        return -1;
    rc = sendto(fd, msg, strlen(msg), MSG_NOSIGNAL, (struct sockaddr *)&addr, addr_len) < 0 ? -1 : 0;
    close(fd);
    return rc;
}

int64_t notify_watchdog_ms(void)
{
    return addr_len != 0 ? watchdog_ms : 0;
}
