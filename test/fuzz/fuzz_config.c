/* fuzz_config.c - libFuzzer driver for the config file reader (src/config.c's config_load) on arbitrary bytes.
 *
 * The input is the config file. config_load reads a path, so the bytes go
 * into a memfd made once per run (nothing left behind on disk), opened as
 * /proc/self/fd/N. config.c is included, not linked, so that the checks
 * read its own option table. A config that loads has: every option within
 * the table's bounds (workers resolved to 1-256); the listen port 0-65535
 * and its host non-empty; each string NUL-terminated inside its buffer; a
 * relative path option either its default (relative to the working
 * directory) or under the config file's directory; the log level and the
 * upstream client among their choices; each listener's TLS files both or
 * neither. A config that does not load says why in err, never overrunning
 * it whatever its capacity. config_defaults passes the same checks. Seeds
 * are in corpus/config. */
#include "../../src/config.c"

#include <stdint.h>
#include <sys/mman.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define CHECK(c)                                                                                        \
    do {                                                                                                \
        if (!(c))                                                                                       \
            abort();                                                                                    \
    } while (0)

static int fd = -1;
static char path[64];

/* Every option of C within what the table allows. */
static void config_ok(const config_t *c, const char *dir)
{
    for (size_t i = 0; i < NOPTIONS; i++) {
        const option_t *o = &options[i];
        const char *p = (const char *)c + o->off;
        int64_t v;
        int iv;
        switch (o->type) {
        case OPT_INT:
        case OPT_BOOL:
            if (o->size == sizeof(int64_t)) {
                memcpy(&v, p, sizeof(v));
            } else {
                memcpy(&iv, p, sizeof(iv));
                v = iv;
            }
            CHECK(v >= o->min && v <= o->max);
            break;
        case OPT_STR:
            CHECK(memchr(p, '\0', o->size) != NULL);
            if (o->is_path && dir != NULL && p[0] != '\0' && p[0] != '/')   /* the default, or the file's */
                CHECK(strcmp(p, o->def_str) == 0 || (strncmp(p, dir, strlen(dir)) == 0 && p[strlen(dir)] == '/'));
            break;
        case OPT_LISTEN:
            CHECK(memchr(c->listen_host, '\0', sizeof(c->listen_host)) != NULL && c->listen_host[0] != '\0');
            CHECK(c->listen_port >= 0 && c->listen_port <= 65535);
            break;
        }
    }
    CHECK(c->workers >= 1);
    CHECK(strcmp(c->log_level, "debug") == 0 || strcmp(c->log_level, "info") == 0 ||
          strcmp(c->log_level, "warn") == 0 || strcmp(c->log_level, "error") == 0);
    CHECK(strcmp(c->upstream_client, "native") == 0 || strcmp(c->upstream_client, "curl") == 0);
    CHECK((c->tls_cert[0] == '\0') == (c->tls_key[0] == '\0'));
    CHECK((c->admin_tls_cert[0] == '\0') == (c->admin_tls_key[0] == '\0'));
}

static void cleanup(void)
{
    if (fd >= 0)
        close(fd);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    config_t c;
    size_t errlen = 1 + size % 300;
    char *err;
    if (fd < 0) {
        config_defaults(&c);
        c.workers = 1;                    /* 0: one per core, resolved at load */
        config_ok(&c, NULL);
        if ((fd = memfd_create("fuzz_config", 0)) < 0)
            abort();
        snprintf(path, sizeof(path), "/proc/self/fd/%d", fd);
        atexit(cleanup);
    }
    if (ftruncate(fd, 0) != 0 || pwrite(fd, data, size, 0) != (ssize_t)size)
        abort();
    CHECK((err = malloc(errlen)) != NULL);
    err[0] = '\0';
    memset(&c, 0xA5, sizeof(c));
    if (config_load(path, &c, err, errlen) == 0) {
        config_ok(&c, "/proc/self/fd");
    } else {
        CHECK(memchr(err, '\0', errlen) != NULL);
        CHECK(errlen == 1 || err[0] != '\0');
    }
    free(err);
    return 0;
}
