/* auth.h - bearer keys: the bootstrap admin key, and stored keys found by the SHA-256 of their secret. */
#ifndef TURNOUT_AUTH_H
#define TURNOUT_AUTH_H

#include <cjson/cJSON.h>
#include <stddef.h>

#include "store.h"

/* 1 when HEADER (an Authorization value, may be NULL) is "Bearer KEY" for
 * this KEY (may be NULL or empty: never matches). The comparison takes the
 * same time wherever the first difference is. */
int auth_bearer_matches(const char *header, const char *key);

/* The token of a "Bearer TOKEN" header, or NULL. */
const char *auth_bearer_token(const char *header);

/* Writes the SHA-256 of SECRET as 64 lowercase hex digits and a NUL. */
void auth_hash(const char *secret, size_t len, char out[65]);

/* Writes a new random secret ("tk-" and 48 hex digits, 192 bits) and NUL. */
#define AUTH_SECRET_LEN 51
void auth_new_secret(char out[AUTH_SECRET_LEN + 1]);

/* The stored, enabled key whose secret is TOKEN, or NULL; *HOLD keeps it
 * alive until store_release. The store is searched by the secret's hash,
 * and the stored hash is then compared with the computed one in constant
 * time. */
const cJSON *auth_find_key(store_reader_t *r, const char *token, store_hold_t **hold);

#endif
