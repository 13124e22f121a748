/* auth.h - bearer-key checks shared by the data plane and the admin API. */
#ifndef TURNOUT_AUTH_H
#define TURNOUT_AUTH_H

/* 1 when HEADER (an Authorization value, may be NULL) is "Bearer KEY" for
 * this KEY (may be NULL or empty: never matches). The comparison takes the
 * same time wherever the first difference is. */
int auth_bearer_matches(const char *header, const char *key);

#endif
