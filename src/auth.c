/* auth.c - bearer keys shared by the data plane and the admin API.
 *
 * A stored key is kept only as the SHA-256 of its secret: the secret has 192
 * random bits, so a fast hash is enough (nothing to stretch), and a lookup
 * costs one hash and one B-tree search. */
#include "auth.h"

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>
#include <sys/random.h>

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

const char *auth_bearer_token(const char *header)
{
    if (header == NULL || strncasecmp(header, "Bearer ", 7) != 0 || header[7] == '\0')
        return NULL;
    return header + 7;
}

static void hex(const unsigned char *b, size_t n, char *out)
{
    static const char digits[] = "0123456789abcdef";
    for (size_t i = 0; i < n; i++) {
        out[2 * i] = digits[b[i] >> 4];
        out[2 * i + 1] = digits[b[i] & 15];
    }
    out[2 * n] = '\0';
}

void auth_hash(const char *secret, size_t len, char out[65])
{
    unsigned char md[EVP_MAX_MD_SIZE];
    unsigned int mdlen = 0;
    if (EVP_Digest(secret, len, md, &mdlen, EVP_sha256(), NULL) != 1 || mdlen != 32)
        memset(md, 0, sizeof(md));   /* never matches a stored hash of a real secret */
    hex(md, 32, out);
}

void auth_new_secret(char out[AUTH_SECRET_LEN + 1])
{
    unsigned char b[24];
    size_t got = 0;
    while (got < sizeof(b)) {
        ssize_t n = getrandom(b + got, sizeof(b) - got, 0);
        if (n > 0)
            got += (size_t)n;
    }
    memcpy(out, "tk-", 3);
    hex(b, sizeof(b), out + 3);
}

const cJSON *auth_find_key(store_reader_t *r, const char *token, store_hold_t **hold)
{
    char h[65];
    const cJSON *stored, *k;
    size_t len = strlen(token);
    *hold = NULL;
    if (len == 0 || len > 512)
        return NULL;
    auth_hash(token, len, h);
    if ((k = store_get_key(r, h, hold)) == NULL)
        return NULL;
    stored = cJSON_GetObjectItemCaseSensitive(k, "secret_hash");
    if (!cJSON_IsString(stored) || strlen(stored->valuestring) != 64 ||
        CRYPTO_memcmp(stored->valuestring, h, 64) != 0 ||
        cJSON_IsFalse(cJSON_GetObjectItemCaseSensitive(k, "enabled"))) {
        store_release(*hold);
        *hold = NULL;
        return NULL;
    }
    return k;
}
