/* auth.c - bearer-key checks shared by the data plane and the admin API. */
#include "auth.h"

#include <string.h>
#include <strings.h>

int auth_bearer_matches(const char *header, const char *key)
{
    size_t a, b;
    unsigned diff = 0;
    if (header == NULL || strncasecmp(header, "Bearer ", 7) != 0 || key == NULL || *key == '\0')
        return 0;
    header += 7;
    a = strlen(header);
    b = strlen(key);
    /* no early exit on the first mismatch: the time depends on the key's length only */
    for (size_t i = 0; i < b; i++)
        diff |= (unsigned char)key[i] ^ (unsigned char)(i < a ? header[i] : 0);
    return diff == 0 && a == b;
}
