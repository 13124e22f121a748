/* schema.h - validation and normalisation of the store's records (providers, routes, routers, keys, tenants, budgets). */
#ifndef TURNOUT_SCHEMA_H
#define TURNOUT_SCHEMA_H

#include <cjson/cJSON.h>
#include <stddef.h>
#include <stdint.h>

/* Endpoint kinds of SPEC 1.3, in table order. */
typedef enum {
    EP_CHAT = 0, EP_COMPLETIONS, EP_EMBEDDINGS, EP_AUDIO_SPEECH,
    EP_AUDIO_TRANSCRIPTION, EP_IMAGE_GENERATION, EP_RESPONSES, EP__COUNT
} endpoint_t;

/* Name of an endpoint kind ("chat", ...). */
const char *schema_endpoint_name(endpoint_t ep);
/* Kind for NAME, or -1. */
int schema_endpoint_parse(const char *name);

/* Validates provider record P in place: rejects unknown or ill-typed fields
 * (the message names the field) and fills defaults. Returns 0 or -1. */
int schema_provider_normalise(cJSON *p, char *err, size_t errlen);

/* Same for a route record. Targets' providers are not checked here; the
 * caller checks them against the store. */
int schema_route_normalise(cJSON *r, char *err, size_t errlen);

/* Checks a route's provider preferences object P (EUrouter / OpenRouter:
 * order, only, ignore, sort, ...); messages name "provider.FIELD". The
 * dry-run checks its what-if overrides with it too. Returns 0 or -1. */
int schema_prefs_check(const cJSON *p, char *err, size_t errlen);

/* Same for a router record. */
int schema_router_normalise(cJSON *r, char *err, size_t errlen);

/* Same for a key record (the secret itself is never part of it: only its
 * SHA-256 in secret_hash). Its optional rate limits (SPEC 8): rpm
 * 1-10,000,000, tpm 1-10,000,000,000, max_in_flight 1-100,000; null is
 * none (dropped). */
int schema_key_normalise(cJSON *k, char *err, size_t errlen);

/* Same for a tenant record: name (a slug of 1-128, the tenant string keys
 * carry), description, the key's rate limits (same ranges), enabled
 * (default true). A null member is dropped. */
int schema_tenant_normalise(cJSON *t, char *err, size_t errlen);

/* Same for a budget record (SPEC 8): name, scope ("global" or exactly one
 * of key, tenant, route, provider, target), at least one of limit_usd,
 * limit_tokens, limit_requests; window (default "total"),
 * action_on_exhaust (default "block") and enabled (default true) are
 * written in. The live fields reads add (spent_usd, ...) are refused. The
 * scope's key, route and provider are not checked here; the store checks
 * them. */
int schema_budget_normalise(cJSON *b, char *err, size_t errlen);

/* 1 when S is a UUID in 8-4-4-4-12 hex form. */
int schema_is_uuid(const char *s);

/* The string member NAME of OBJ (which may be NULL), or DFLT. */
const char *schema_str(const cJSON *obj, const char *name, const char *dflt);

/* Writes a random (v4) UUID, 37 bytes with the NUL. */
void schema_uuid(char out[37]);

/* Writes the current UTC time as RFC 3339 ("2026-11-23T05:00:00Z"). */
void schema_now(char out[32]);

/* The latest time schema_time_parse accepts: 9999-12-31T23:59:59Z. */
#define SCHEMA_TIME_MAX 253402300799LL

/* Writes epoch seconds T as RFC 3339 UTC ("2026-12-01T00:00:00Z"). */
void schema_time_iso(int64_t t, char out[32]);

/* Reads S as a UTC instant: epoch seconds (digits only), or RFC 3339 /
 * ISO 8601 "YYYY-MM-DDTHH:MM:SS" with an optional fraction (dropped) and
 * "Z" or an offset ("+01:00"; a space for the '+', as a query string
 * decodes it), or a date alone (its midnight UTC). Between 1970 and 9999.
 * Returns 0 with *OUT set, or -1. */
int schema_time_parse(const char *s, int64_t *out);

/* Whether a route name is a glob pattern (a pool): it holds *, ? or [. */
int schema_is_glob(const char *name);

#endif
