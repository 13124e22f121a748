/* fileio.h - whole-file reads for start-up inputs (config, seed). */
#ifndef TURNOUT_FILEIO_H
#define TURNOUT_FILEIO_H

#include <stddef.h>

/* Reads FILE into a NUL-terminated buffer the caller frees; *len gets its
 * length. Returns NULL with errno set on failure. */
char *file_read(const char *file, size_t *len);

#endif
