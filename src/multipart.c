/* multipart.c - just enough multipart/form-data parsing to read and replace the model field. */
#include "multipart.h"

#include <stdio.h>
#include <string.h>
#include <strings.h>

long multipart_boundary(const char *ct, char *out, size_t cap)
{
    const char *p = strcasestr(ct, "boundary=");
    size_t n = 0;
    if (p == NULL)
        return -1;
    p += 9;
    if (*p == '"') {
        p++;
        while (p[n] && p[n] != '"')
            n++;
    } else {
        while (p[n] && p[n] != ';' && p[n] != ' ' && p[n] != '\t')
            n++;
    }
    if (n == 0 || n > 70 || n + 1 > cap)   /* RFC 2046: 1-70 characters */
        return -1;
    memcpy(out, p, n);
    out[n] = '\0';
    return (long)n;
}

static const char *find(const char *h, size_t hl, const char *n, size_t nl)
{
    return memmem(h, hl, n, nl);
}

/* The part whose delimiter starts at P: its head HDR..HEND (HEND at the
 * empty line) and the next delimiter NEXT. Returns 1, 0 at the closing
 * delimiter, -1 when malformed. */
static int part_at(const char *p, const char *end, const char *delim, size_t dl, const char **hdr,
                   const char **hend, const char **next)
{
    *hdr = p + dl;
    if (end - *hdr >= 2 && (*hdr)[0] == '-' && (*hdr)[1] == '-')
        return 0;                               /* closing delimiter */
    *hend = find(*hdr, (size_t)(end - *hdr), "\r\n\r\n", 4);
    if (*hend == NULL)
        return -1;
    *next = find(*hend + 4, (size_t)(end - *hend - 4), delim, dl);
    if (*next == NULL || *next - 2 < *hend + 4 || (*next)[-2] != '\r' || (*next)[-1] != '\n')
        return -1;
    return 1;
}

/* The first WANT (`name="...`) in HDR..HEND that is a parameter of its own,
 * not the tail of filename="..."; NULL if none. */
static const char *name_param(const char *hdr, const char *hend, const char *want, size_t wl)
{
    for (const char *q = find(hdr, (size_t)(hend - hdr), want, wl); q != NULL;
         q = find(q + 1, (size_t)(hend - q - 1), want, wl))
        if (q == hdr || q[-1] == ' ' || q[-1] == ';' || q[-1] == '\t')
            return q;
    return NULL;
}

int multipart_field(const char *body, size_t blen, const char *boundary, const char *name,
                    size_t *off, size_t *len)
{
    char delim[80], want[160];
    size_t dl = (size_t)snprintf(delim, sizeof(delim), "--%s", boundary);
    size_t wl = (size_t)snprintf(want, sizeof(want), "name=\"%s\"", name);
    const char *end = body + blen, *p = find(body, blen, delim, dl), *hdr, *hend, *next;
    int found = 0;

    while (p != NULL) {
        if (part_at(p, end, delim, dl, &hdr, &hend, &next) <= 0)
            break;
        /* Match name="model" exactly, not filename="model" or name="models". */
        if (name_param(hdr, hend, want, wl) != NULL) {
            if (found)
                return -1;        /* given twice: an upstream may read either, turnout rewrites one */
            found = 1;
            *off = (size_t)(hend + 4 - body);
            *len = (size_t)(next - 2 - (hend + 4));
        }
        p = next;
    }
    return found ? 0 : -1;
}

int multipart_next_name(const char *body, size_t blen, const char *boundary, size_t *pos, char *name, size_t cap)
{
    char delim[80];
    size_t dl = (size_t)snprintf(delim, sizeof(delim), "--%s", boundary);
    const char *end = body + blen, *p, *hdr, *hend, *next, *q;
    int rc;

    if (*pos > blen)
        return 0;
    p = *pos == 0 ? find(body, blen, delim, dl) : body + *pos;
    if (p == NULL)
        return -1;
    while ((rc = part_at(p, end, delim, dl, &hdr, &hend, &next)) == 1) {
        p = next;
        if ((q = name_param(hdr, hend, "name=\"", 6)) != NULL) {
            size_t n = 0;
            for (q += 6; q < hend && *q != '"' && n + 1 < cap; q++)
                name[n++] = *q;
            name[n] = '\0';
            *pos = (size_t)(next - body);
            return 1;
        }
    }
    *pos = blen + 1;
    return rc;
}
