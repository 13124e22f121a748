/* multipart.h - finds a named text field in a multipart/form-data body. */
#ifndef TURNOUT_MULTIPART_H
#define TURNOUT_MULTIPART_H

#include <stddef.h>

/* Extracts the boundary parameter of a multipart Content-Type value into
 * OUT (capacity CAP). Returns its length or -1. */
long multipart_boundary(const char *content_type, char *out, size_t cap);

/* Finds the value of form field NAME in BODY: sets *off and *len to the
 * value's bytes. Returns 0, or -1 if absent, given twice, or the body is
 * malformed before it. */
int multipart_field(const char *body, size_t blen, const char *boundary, const char *name,
                    size_t *off, size_t *len);

/* Steps through the names of BODY's form fields, in order. Start with
 * *pos = 0; each call copies the next part's name into NAME (capacity CAP,
 * cut to fit) and returns 1, or returns 0 after the last part and -1 on a
 * malformed body. Parts without a name are passed over. */
int multipart_next_name(const char *body, size_t blen, const char *boundary, size_t *pos, char *name, size_t cap);

#endif
