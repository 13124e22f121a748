/* schema.c - field-by-field validation of providers, routes, routers, keys, tenants and budgets, with defaults.
 *
 * Field names and ranges follow SPEC 3 and the hosted products in shared/seeds.
 * Every record that enters the store (seed import now, admin API later) goes
 * through here, so the data plane can trust what it reads. */
#include "schema.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/random.h>
#include <time.h>

static const char *const endpoint_names[EP__COUNT] = {
    "chat", "completions", "embeddings", "audio_speech", "audio_transcription", "image_generation", "responses",
};

const char *schema_endpoint_name(endpoint_t ep)
{
    return (unsigned)ep < EP__COUNT ? endpoint_names[ep] : "?";
}

int schema_endpoint_parse(const char *name)
{
    for (int i = 0; i < EP__COUNT; i++)
        if (strcmp(endpoint_names[i], name) == 0)
            return i;
    return -1;
}

typedef enum { F_STR, F_BOOL, F_INT, F_NUM, F_ARRAY, F_OBJECT, F_ANY } ftype_t;

/* One allowed field of a record. */
typedef struct field {
    const char *name;
    ftype_t type;
    double min, max;      /* for numbers; for strings the length bounds */
} field_t;

static const char *const type_names[] = {
    "a string", "true or false", "an integer", "a number", "an array", "an object", "a value",
};

/* Checks every member of OBJ against FIELDS. PATH prefixes field names in
 * messages ("targets[1].model"). */
static int check_fields(const cJSON *obj, const field_t *fields, size_t n, const char *path,
                        char *err, size_t errlen)
{
    const cJSON *m;
    cJSON_ArrayForEach(m, obj) {
        const field_t *f = NULL;
        for (size_t i = 0; i < n; i++)
            if (strcmp(fields[i].name, m->string) == 0)
                f = &fields[i];
        if (f == NULL) {
            snprintf(err, errlen, "%s%s: unknown field", path, m->string);
            return -1;
        }
        /* cJSON keeps both of a name given twice and reads the first, other
         * readers the last, and a null one dropped leaves the other behind */
        for (const cJSON *p = obj->child; p != m; p = p->next)
            if (strcmp(p->string, m->string) == 0) {
                snprintf(err, errlen, "%s%s: given more than once", path, m->string);
                return -1;
            }
        if (cJSON_IsNull(m))
            continue;
        int ok = 1;
        switch (f->type) {
        case F_STR:
            ok = cJSON_IsString(m) && strlen(m->valuestring) >= f->min &&
                 strlen(m->valuestring) <= f->max;
            if (cJSON_IsString(m) && !ok) {
                snprintf(err, errlen, "%s%s: length must be %g-%g characters", path, m->string,
                         f->min, f->max);
                return -1;
            }
            break;
        case F_BOOL: ok = cJSON_IsBool(m); break;
        case F_INT:
        case F_NUM:
            /* the bounds first: a double past a long long's range does not convert */
            ok = cJSON_IsNumber(m);
            if (ok && !(m->valuedouble >= f->min && m->valuedouble <= f->max)) {
                snprintf(err, errlen, "%s%s: must be between %g and %g", path, m->string,
                         f->min, f->max);
                return -1;
            }
            ok = ok && (f->type == F_NUM || m->valuedouble == (double)(long long)m->valuedouble);
            break;
        case F_ARRAY: ok = cJSON_IsArray(m); break;
        case F_OBJECT: ok = cJSON_IsObject(m); break;
        case F_ANY: break;
        }
        if (!ok) {
            snprintf(err, errlen, "%s%s: must be %s", path, m->string, type_names[f->type]);
            return -1;
        }
    }
    return 0;
}

static int cmp_name(const void *a, const void *b)
{
    return strcmp(*(const char *const *)a, *(const char *const *)b);
}

static int cmp_name_nocase(const void *a, const void *b)
{
    return strcasecmp(*(const char *const *)a, *(const char *const *)b);
}

/* A name two members of OBJ have (in any case when NOCASE: header names),
 * or NULL. Sorted, not compared pairwise: a headers object has no bound on
 * its size but the body's. */
static const char *repeated(const cJSON *obj, int nocase)
{
    int n = cJSON_GetArraySize(obj), i = 0;
    const char **names, *dup = NULL;
    const cJSON *m;
    if (n < 2 || (names = malloc((size_t)n * sizeof(*names))) == NULL)
        return NULL;
    cJSON_ArrayForEach(m, obj)
        names[i++] = m->string;
    qsort(names, (size_t)n, sizeof(*names), nocase ? cmp_name_nocase : cmp_name);
    for (i = 1; i < n && dup == NULL; i++)
        if ((nocase ? cmp_name_nocase : cmp_name)(&names[i - 1], &names[i]) == 0)
            dup = names[i];
    free(names);
    return dup;
}

static void set_default(cJSON *obj, const char *name, cJSON *v)
{
    const cJSON *cur = cJSON_GetObjectItemCaseSensitive(obj, name);
    if (cur == NULL)
        cJSON_AddItemToObject(obj, name, v);
    else if (cJSON_IsNull(cur))
        cJSON_ReplaceItemInObjectCaseSensitive(obj, name, v);
    else
        cJSON_Delete(v);
}

static int is_slug(const char *s)
{
    if (*s == '\0')
        return 0;
    for (; *s; s++)
        if (!((*s >= 'a' && *s <= 'z') || (*s >= '0' && *s <= '9') || *s == '-' || *s == '_' ||
              *s == '.' || (*s >= 'A' && *s <= 'Z')))
            return 0;
    return 1;
}

static int require(const cJSON *obj, const char *name, const char *path, char *err, size_t errlen)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(obj, name);
    if (v == NULL || cJSON_IsNull(v)) {
        snprintf(err, errlen, "%s%s: required", path, name);
        return -1;
    }
    return 0;
}

int schema_is_uuid(const char *s)
{
    for (int i = 0; i < 36; i++) {
        int hex = (s[i] >= '0' && s[i] <= '9') || (s[i] >= 'a' && s[i] <= 'f') || (s[i] >= 'A' && s[i] <= 'F');
        if ((i == 8 || i == 13 || i == 18 || i == 23) ? s[i] != '-' : !hex)
            return 0;
    }
    return s[36] == '\0';
}

/* Fills id, created_at and updated_at where absent; a given id must be a UUID. */
static int stamp(cJSON *obj, char *err, size_t errlen)
{
    char id[37], now[32];
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(obj, "id");
    if (cJSON_IsString(v) && !schema_is_uuid(v->valuestring)) {
        snprintf(err, errlen, "id: must be a UUID (8-4-4-4-12 hex digits)");
        return -1;
    }
    schema_uuid(id);
    schema_now(now);
    set_default(obj, "id", cJSON_CreateString(id));
    set_default(obj, "created_at", cJSON_CreateString(now));
    set_default(obj, "updated_at", cJSON_CreateString(now));
    return 0;
}

static const field_t timeout_fields[] = {
    { "connect_ms", F_INT, 1, 600000 },
    { "first_byte_s", F_INT, 1, 1800 },
    { "idle_s", F_INT, 1, 3600 },
    { "total_s", F_INT, 1, 3600 },
};

static int check_timeouts(const cJSON *obj, char *err, size_t errlen)
{
    const cJSON *t = cJSON_GetObjectItemCaseSensitive(obj, "timeouts");
    if (t == NULL || cJSON_IsNull(t))
        return 0;
    return check_fields(t, timeout_fields, sizeof(timeout_fields) / sizeof(timeout_fields[0]),
                        "timeouts.", err, errlen);
}

/* Checks that string field NAME of OBJ, when present, is A or B. */
static int check_pair(const cJSON *obj, const char *path, const char *name, const char *a, const char *b, char *err,
                      size_t errlen)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(obj, name);
    if (cJSON_IsString(v) && strcmp(v->valuestring, a) != 0 && strcmp(v->valuestring, b) != 0) {
        snprintf(err, errlen, "%s%s: must be \"%s\" or \"%s\"", path, name, a, b);
        return -1;
    }
    return 0;
}

static int one_of(const char *s, const char *const *list)
{
    for (; *list; list++)
        if (strcmp(s, *list) == 0)
            return 1;
    return 0;
}

/* 1 when V is an array of 1-64 character strings. */
static int string_list(const cJSON *v)
{
    const cJSON *e;
    if (!cJSON_IsArray(v))
        return 0;
    cJSON_ArrayForEach(e, v)
        if (!cJSON_IsString(e) || e->valuestring[0] == '\0' || strlen(e->valuestring) > 64)
            return 0;
    return 1;
}

/* 1 when V is a region (a 1-64 character string) or a list of them; a
 * list may be empty only when EMPTY_OK. */
static int region_value(const cJSON *v, int empty_ok)
{
    if (cJSON_IsString(v))
        return v->valuestring[0] != '\0' && strlen(v->valuestring) <= 64;
    return string_list(v) && (empty_ok || cJSON_GetArraySize(v) > 0);
}

/* A provider model's quantization, as OpenRouter and EUrouter name them;
 * "unknown" is what a model that declares none counts as. */
static const char *const quantizations[] = { "int4", "int8", "fp4", "fp6", "fp8", "fp16", "bf16", "fp32", "unknown",
                                             NULL };
#define QUANTIZATION_NAMES "int4, int8, fp4, fp6, fp8, fp16, bf16, fp32, unknown"

int schema_provider_normalise(cJSON *p, char *err, size_t errlen)
{
    static const field_t fields[] = {
        { "id", F_STR, 1, 64 }, { "name", F_STR, 1, 64 }, { "base_url", F_STR, 8, 2048 },
        { "api_key_env", F_STR, 1, 128 }, { "api_key", F_STR, 1, 4096 }, { "protocol", F_STR, 1, 32 },
        { "headers", F_OBJECT, 0, 0 }, { "models", F_ARRAY, 0, 0 },
        { "max_in_flight", F_INT, 1, 10000 }, { "timeouts", F_OBJECT, 0, 0 },
        { "enabled", F_BOOL, 0, 0 }, { "region", F_ANY, 0, 0 }, { "eu_owned", F_BOOL, 0, 0 },
        { "data_collection", F_STR, 1, 16 }, { "description", F_STR, 0, 1000 },
        { "retention_days", F_INT, 0, 1000000 },
        { "created_at", F_STR, 1, 64 }, { "updated_at", F_STR, 1, 64 },
        { "default_max_tokens", F_INT, 1, 1000000 }, { "api_version", F_STR, 1, 64 },
    };
    static const field_t model_fields[] = {
        { "name", F_STR, 1, 255 }, { "bare_alias", F_BOOL, 0, 0 },
        { "input_price", F_NUM, 0, 1e9 }, { "output_price", F_NUM, 0, 1e9 },
        { "cached_input_price", F_NUM, 0, 1e9 }, { "enabled", F_BOOL, 0, 0 },
        { "supported_parameters", F_ARRAY, 0, 0 }, { "quantization", F_STR, 1, 16 },
    };
    static const char *const protocols[] = { "openai", "anthropic", "azure", NULL };
    char path[64];
    const cJSON *v, *models;
    const char *dup;
    cJSON *m;
    int i = 0;

    if (!cJSON_IsObject(p)) {
        snprintf(err, errlen, "provider: must be an object");
        return -1;
    }
    if (check_fields(p, fields, sizeof(fields) / sizeof(fields[0]), "", err, errlen) < 0 ||
        require(p, "name", "", err, errlen) < 0 || require(p, "base_url", "", err, errlen) < 0 ||
        check_timeouts(p, err, errlen) < 0)
        return -1;
    v = cJSON_GetObjectItemCaseSensitive(p, "name");
    if (!is_slug(v->valuestring)) {
        snprintf(err, errlen, "name: must be a slug (letters, digits, '-', '_', '.')");
        return -1;
    }
    v = cJSON_GetObjectItemCaseSensitive(p, "base_url");
    if (strncmp(v->valuestring, "http://", 7) != 0 && strncmp(v->valuestring, "https://", 8) != 0) {
        snprintf(err, errlen, "base_url: must start with http:// or https://");
        return -1;
    }
    /* one spelling, so joins never double the slash, and normalising it
     * again changes nothing; a host is left ("https://" alone is none) */
    size_t bl = strlen(v->valuestring), scheme = v->valuestring[4] == 's' ? 8 : 7;
    while (bl > scheme && v->valuestring[bl - 1] == '/')
        v->valuestring[--bl] = '\0';
    if (bl == scheme) {
        snprintf(err, errlen, "base_url: must name a host after %.*s", (int)scheme, v->valuestring);
        return -1;
    }
    v = cJSON_GetObjectItemCaseSensitive(p, "protocol");
    if (cJSON_IsString(v) && !one_of(v->valuestring, protocols)) {
        snprintf(err, errlen, "protocol: must be one of openai, anthropic, azure");
        return -1;
    }
    if (check_pair(p, "", "data_collection", "allow", "deny", err, errlen) < 0)
        return -1;
    v = cJSON_GetObjectItemCaseSensitive(p, "region");
    if (v != NULL && !cJSON_IsNull(v) && !region_value(v, 0)) {
        snprintf(err, errlen, "region: must be a region (an ISO 3166-1 alpha-2 country code; 1-64 "
                              "characters) or a non-empty array of them");
        return -1;
    }
    v = cJSON_GetObjectItemCaseSensitive(p, "headers");
    cJSON_ArrayForEach(m, v) {
        if (!cJSON_IsString(m)) {
            snprintf(err, errlen, "headers.%s: must be a string", m->string);
            return -1;
        }
    }
    if ((dup = repeated(v, 1)) != NULL) {
        snprintf(err, errlen, "headers.%s: given more than once", dup);
        return -1;
    }
    /* "api_key": null says "no stored key": the record keeps none (the
     * seed import reads it as "remove the stored key" before this runs) */
    if (cJSON_IsNull(cJSON_GetObjectItemCaseSensitive(p, "api_key")))
        cJSON_DeleteItemFromObjectCaseSensitive(p, "api_key");
    set_default(p, "protocol", cJSON_CreateString("openai"));
    set_default(p, "enabled", cJSON_CreateTrue());
    set_default(p, "models", cJSON_CreateArray());
    models = cJSON_GetObjectItemCaseSensitive(p, "models");
    cJSON_ArrayForEach(m, models) {
        snprintf(path, sizeof(path), "models[%d].", i);
        if (!cJSON_IsObject(m)) {
            snprintf(err, errlen, "models[%d]: must be an object", i);
            return -1;
        }
        if (check_fields(m, model_fields, sizeof(model_fields) / sizeof(model_fields[0]), path,
                         err, errlen) < 0 ||
            require(m, "name", path, err, errlen) < 0)
            return -1;
        if ((v = cJSON_GetObjectItemCaseSensitive(m, "supported_parameters")) != NULL && !cJSON_IsNull(v) &&
            !string_list(v)) {
            snprintf(err, errlen, "%ssupported_parameters: must be an array of request field names "
                                  "(1-64 characters)", path);
            return -1;
        }
        if ((v = cJSON_GetObjectItemCaseSensitive(m, "quantization")) != NULL && cJSON_IsString(v) &&
            !one_of(v->valuestring, quantizations)) {
            snprintf(err, errlen, "%squantization: must be one of %s", path, QUANTIZATION_NAMES);
            return -1;
        }
        set_default(m, "bare_alias", cJSON_CreateFalse());
        set_default(m, "enabled", cJSON_CreateTrue());
        i++;
    }
    return stamp(p, err, errlen);
}

int schema_prefs_check(const cJSON *p, char *err, size_t errlen)
{
    static const field_t fields[] = {
        { "order", F_ARRAY, 0, 0 }, { "only", F_ARRAY, 0, 0 }, { "ignore", F_ARRAY, 0, 0 },
        { "allow_fallbacks", F_BOOL, 0, 0 }, { "sort", F_STR, 1, 16 }, { "data_collection", F_STR, 1, 16 },
        { "data_residency", F_ANY, 0, 0 }, { "eu_owned", F_BOOL, 0, 0 },
        { "require_parameters", F_BOOL, 0, 0 }, { "quantizations", F_ARRAY, 0, 0 },
        { "max_retention_days", F_INT, 0, 9007199254740991.0 },
    };
    static const char *const lists[] = { "order", "only", "ignore", NULL };
    const cJSON *v;
    if (!cJSON_IsObject(p)) {
        snprintf(err, errlen, "provider: must be an object");
        return -1;
    }
    if (check_fields(p, fields, sizeof(fields) / sizeof(fields[0]), "provider.", err, errlen) < 0)
        return -1;
    for (const char *const *l = lists; *l; l++) {
        v = cJSON_GetObjectItemCaseSensitive(p, *l);
        if (v != NULL && !cJSON_IsNull(v) && !string_list(v)) {
            snprintf(err, errlen, "provider.%s: must be an array of provider names", *l);
            return -1;
        }
    }
    if (check_pair(p, "provider.", "sort", "price", "latency", err, errlen) < 0 ||
        check_pair(p, "provider.", "data_collection", "allow", "deny", err, errlen) < 0)
        return -1;
    v = cJSON_GetObjectItemCaseSensitive(p, "data_residency");
    if (v != NULL && !cJSON_IsNull(v) && !region_value(v, 1)) {
        snprintf(err, errlen, "provider.data_residency: must be a country code, a set (eu, eea, eu_adequate) "
                              "or an array of them");
        return -1;
    }
    cJSON_ArrayForEach(v, cJSON_GetObjectItemCaseSensitive(p, "quantizations")) {
        if (!cJSON_IsString(v) || !one_of(v->valuestring, quantizations)) {
            snprintf(err, errlen, "provider.quantizations: each must be one of %s", QUANTIZATION_NAMES);
            return -1;
        }
    }
    return 0;
}

int schema_is_glob(const char *name)
{
    return strpbrk(name, "*?[") != NULL;
}

/* A target's model_map (Tyk's model mappings): the requested model names it
 * translates, each to the upstream model sent instead. Sources are exact
 * names or glob patterns, tried in the order listed. */
static int check_model_map(const cJSON *map, const char *path, char *err, size_t errlen)
{
    const cJSON *m;
    const char *dup;
    if (map == NULL)
        return 0;
    if (cJSON_GetArraySize(map) > 256) {
        snprintf(err, errlen, "%smodel_map: at most 256 mappings", path);
        return -1;
    }
    if ((dup = repeated(map, 0)) != NULL) {
        snprintf(err, errlen, "%smodel_map.%s: given more than once", path, dup);
        return -1;
    }
    cJSON_ArrayForEach(m, map) {
        size_t klen = strlen(m->string);
        if (klen == 0 || klen > 255 || !cJSON_IsString(m) || m->valuestring[0] == '\0' ||
            strlen(m->valuestring) > 255) {
            snprintf(err, errlen, "%smodel_map: each source (a model name or a glob, 1-255 characters) must map to a "
                                  "model name of 1-255 characters", path);
            return -1;
        }
    }
    return 0;
}

int schema_route_normalise(cJSON *r, char *err, size_t errlen)
{
    static const field_t fields[] = {
        { "id", F_STR, 1, 64 }, { "name", F_STR, 1, 255 }, { "description", F_STR, 0, 1000 },
        { "endpoint", F_STR, 1, 32 }, { "router", F_STR, 1, 64 }, { "scope", F_STR, 1, 300 },
        { "priority", F_INT, -1000000, 1000000 }, { "strategy", F_STR, 1, 32 },
        { "targets", F_ARRAY, 0, 0 }, { "retry", F_OBJECT, 0, 0 },
        { "max_in_flight", F_INT, 1, 10000 }, { "timeouts", F_OBJECT, 0, 0 },
        { "provider", F_OBJECT, 0, 0 }, { "enabled", F_BOOL, 0, 0 },
        { "primary_model", F_STR, 1, 255 }, { "fallback_model", F_STR, 1, 255 },
        { "created_at", F_STR, 1, 64 }, { "updated_at", F_STR, 1, 64 },
    };
    static const field_t target_fields[] = {
        { "provider", F_STR, 1, 64 }, { "model", F_STR, 1, 255 }, { "weight", F_NUM, 0, 1e6 },
        { "order", F_INT, 0, 1000000 }, { "enabled", F_BOOL, 0, 0 },
        { "max_in_flight", F_INT, 1, 10000 }, { "variant", F_STR, 1, 64 }, { "model_map", F_OBJECT, 0, 0 },
    };
    static const field_t retry_fields[] = {
        { "max_429_retries", F_INT, 0, 10 }, { "retry_after_cap_s", F_NUM, 0, 180 },
    };
    static const char *const strategies[] = { "direct", "fallback", "weighted", "round_robin", "ab", NULL };
    char path[64];
    const cJSON *v, *targets;
    cJSON *t;
    int i = 0, pool;

    if (!cJSON_IsObject(r)) {
        snprintf(err, errlen, "route: must be an object");
        return -1;
    }
    if (check_fields(r, fields, sizeof(fields) / sizeof(fields[0]), "", err, errlen) < 0 ||
        require(r, "name", "", err, errlen) < 0 || check_timeouts(r, err, errlen) < 0)
        return -1;
    v = cJSON_GetObjectItemCaseSensitive(r, "retry");
    if (v != NULL && !cJSON_IsNull(v) &&
        check_fields(v, retry_fields, 2, "retry.", err, errlen) < 0)
        return -1;
    if ((v = cJSON_GetObjectItemCaseSensitive(r, "provider")) != NULL && !cJSON_IsNull(v) &&
        schema_prefs_check(v, err, errlen) < 0)
        return -1;
    set_default(r, "endpoint", cJSON_CreateString("chat"));
    v = cJSON_GetObjectItemCaseSensitive(r, "endpoint");
    if (schema_endpoint_parse(v->valuestring) < 0) {
        snprintf(err, errlen, "endpoint: must be one of chat, completions, embeddings, "
                              "audio_speech, audio_transcription, image_generation, responses");
        return -1;
    }
    set_default(r, "strategy", cJSON_CreateString("fallback"));
    v = cJSON_GetObjectItemCaseSensitive(r, "strategy");
    if (!one_of(v->valuestring, strategies)) {
        snprintf(err, errlen, "strategy: must be one of direct, fallback, weighted, round_robin, ab");
        return -1;
    }
    set_default(r, "scope", cJSON_CreateString("global"));
    v = cJSON_GetObjectItemCaseSensitive(r, "scope");
    if (strcmp(v->valuestring, "global") != 0 && strncmp(v->valuestring, "tenant:", 7) != 0 &&
        strncmp(v->valuestring, "key:", 4) != 0) {
        snprintf(err, errlen, "scope: must be \"global\", \"tenant:ID\" or \"key:ID\"");
        return -1;
    }
    set_default(r, "priority", cJSON_CreateNumber(0));
    set_default(r, "enabled", cJSON_CreateTrue());
    /* TruLayer's shorthand: primary_model (and fallback_model) stand for the
     * targets, which the store expands against its providers (store.c). */
    if (cJSON_IsNull(cJSON_GetObjectItemCaseSensitive(r, "primary_model")))
        cJSON_DeleteItemFromObjectCaseSensitive(r, "primary_model");
    if (cJSON_IsNull(cJSON_GetObjectItemCaseSensitive(r, "fallback_model")))
        cJSON_DeleteItemFromObjectCaseSensitive(r, "fallback_model");
    v = cJSON_GetObjectItemCaseSensitive(r, "primary_model");
    if (cJSON_GetObjectItemCaseSensitive(r, "fallback_model") != NULL && v == NULL) {
        snprintf(err, errlen, "fallback_model: needs primary_model");
        return -1;
    }
    targets = cJSON_GetObjectItemCaseSensitive(r, "targets");
    if (v != NULL && targets == NULL)
        return stamp(r, err, errlen);
    if (require(r, "targets", "", err, errlen) < 0)
        return -1;
    if (cJSON_GetArraySize(targets) == 0) {
        snprintf(err, errlen, "targets: at least one target is required");
        return -1;
    }
    if (cJSON_GetArraySize(targets) > 64) {
        snprintf(err, errlen, "targets: at most 64 targets");
        return -1;
    }
    /* A pool's target may leave model out: the requested model goes to it
     * as asked (Tyk's pass-through). A route name is no upstream model. */
    pool = schema_is_glob(cJSON_GetObjectItemCaseSensitive(r, "name")->valuestring);
    cJSON_ArrayForEach(t, targets) {
        snprintf(path, sizeof(path), "targets[%d].", i);
        if (!cJSON_IsObject(t)) {
            snprintf(err, errlen, "targets[%d]: must be an object", i);
            return -1;
        }
        if (check_fields(t, target_fields, sizeof(target_fields) / sizeof(target_fields[0]),
                         path, err, errlen) < 0 ||
            require(t, "provider", path, err, errlen) < 0 || (!pool && require(t, "model", path, err, errlen) < 0) ||
            check_model_map(cJSON_GetObjectItemCaseSensitive(t, "model_map"), path, err, errlen) < 0)
            return -1;
        set_default(t, "weight", cJSON_CreateNumber(1));
        set_default(t, "order", cJSON_CreateNumber(i));
        set_default(t, "enabled", cJSON_CreateTrue());
        i++;
    }
    v = cJSON_GetObjectItemCaseSensitive(r, "strategy");
    if (strcmp(v->valuestring, "direct") == 0 && i != 1) {
        snprintf(err, errlen, "targets: strategy \"direct\" takes exactly one target");
        return -1;
    }
    return stamp(r, err, errlen);
}

int schema_router_normalise(cJSON *r, char *err, size_t errlen)
{
    static const field_t fields[] = {
        { "id", F_STR, 1, 64 }, { "slug", F_STR, 1, 64 }, { "name", F_STR, 1, 255 },
        { "description", F_STR, 0, 1000 }, { "active", F_BOOL, 0, 0 }, { "namespaces", F_ARRAY, 0, 0 },
        { "created_at", F_STR, 1, 64 }, { "updated_at", F_STR, 1, 64 },
    };
    const cJSON *ns, *n;
    if (!cJSON_IsObject(r)) {
        snprintf(err, errlen, "router: must be an object");
        return -1;
    }
    if (check_fields(r, fields, sizeof(fields) / sizeof(fields[0]), "", err, errlen) < 0 ||
        require(r, "slug", "", err, errlen) < 0)
        return -1;
    /* Tyk's "Available Namespaces": the tenants whose keys may use it (none: every caller) */
    ns = cJSON_GetObjectItemCaseSensitive(r, "namespaces");
    cJSON_ArrayForEach(n, ns) {
        if (!cJSON_IsString(n) || n->valuestring[0] == '\0' || strlen(n->valuestring) > 128) {
            snprintf(err, errlen, "namespaces: must be a list of tenant names (1-128 characters)");
            return -1;
        }
    }
    if (!is_slug(cJSON_GetObjectItemCaseSensitive(r, "slug")->valuestring)) {
        snprintf(err, errlen, "slug: must be a slug (letters, digits, '-', '_', '.')");
        return -1;
    }
    set_default(r, "active", cJSON_CreateTrue());
    return stamp(r, err, errlen);
}

/* The rate limits a key or a tenant may carry (SPEC 8): requests and
 * tokens per minute, and requests at once. */
#define LIMIT_FIELDS                                                                              \
    { "rpm", F_INT, 1, 1e7 }, { "tpm", F_INT, 1, 1e10 }, { "max_in_flight", F_INT, 1, 100000 }

/* A limit sent as null is no limit: absent from the record, so the data
 * plane reads one spelling of "none". */
static void drop_null_limits(cJSON *rec)
{
    static const char *const limits[] = { "rpm", "tpm", "max_in_flight", NULL };
    for (const char *const *l = limits; *l; l++)
        if (cJSON_IsNull(cJSON_GetObjectItemCaseSensitive(rec, *l)))
            cJSON_DeleteItemFromObjectCaseSensitive(rec, *l);
}

int schema_key_normalise(cJSON *k, char *err, size_t errlen)
{
    static const field_t fields[] = {
        { "id", F_STR, 1, 64 }, { "name", F_STR, 0, 255 }, { "description", F_STR, 0, 1000 },
        { "role", F_STR, 1, 16 }, { "tenant", F_STR, 1, 128 }, { "enabled", F_BOOL, 0, 0 },
        { "allowed_routes", F_ARRAY, 0, 0 }, { "secret_hash", F_STR, 64, 64 },
        { "secret_hint", F_STR, 0, 16 }, { "last_used_at", F_STR, 1, 64 },
        { "created_at", F_STR, 1, 64 }, { "updated_at", F_STR, 1, 64 },
        LIMIT_FIELDS,
    };
    static const char *const roles[] = { "admin", "tenant_admin", "user", NULL };
    const cJSON *v, *tenant;
    int i = 0;

    if (!cJSON_IsObject(k)) {
        snprintf(err, errlen, "key: must be an object");
        return -1;
    }
    if (check_fields(k, fields, sizeof(fields) / sizeof(fields[0]), "", err, errlen) < 0 ||
        require(k, "secret_hash", "", err, errlen) < 0)
        return -1;
    drop_null_limits(k);
    for (const char *h = cJSON_GetObjectItemCaseSensitive(k, "secret_hash")->valuestring; *h; h++)
        if (!((*h >= '0' && *h <= '9') || (*h >= 'a' && *h <= 'f'))) {
            snprintf(err, errlen, "secret_hash: must be 64 lowercase hex digits (SHA-256)");
            return -1;
        }
    set_default(k, "role", cJSON_CreateString("user"));
    set_default(k, "enabled", cJSON_CreateTrue());
    v = cJSON_GetObjectItemCaseSensitive(k, "role");
    if (!one_of(v->valuestring, roles)) {
        snprintf(err, errlen, "role: must be one of admin, tenant_admin, user");
        return -1;
    }
    tenant = cJSON_GetObjectItemCaseSensitive(k, "tenant");
    if (cJSON_IsString(tenant) && !is_slug(tenant->valuestring)) {
        snprintf(err, errlen, "tenant: must be a slug (letters, digits, '-', '_', '.')");
        return -1;
    }
    if (strcmp(v->valuestring, "tenant_admin") == 0 && !cJSON_IsString(tenant)) {
        snprintf(err, errlen, "tenant: required for a tenant_admin key");
        return -1;
    }
    if (strcmp(v->valuestring, "admin") == 0 && cJSON_IsString(tenant)) {
        snprintf(err, errlen, "tenant: an admin key belongs to no tenant");
        return -1;
    }
    cJSON_ArrayForEach(v, cJSON_GetObjectItemCaseSensitive(k, "allowed_routes")) {
        if (!cJSON_IsString(v) || v->valuestring[0] == '\0' || strlen(v->valuestring) > 255) {
            snprintf(err, errlen, "allowed_routes[%d]: must be a route name (1-255 characters)", i);
            return -1;
        }
        i++;
    }
    return stamp(k, err, errlen);
}

int schema_tenant_normalise(cJSON *t, char *err, size_t errlen)
{
    static const field_t fields[] = {
        { "id", F_STR, 1, 64 }, { "name", F_STR, 1, 128 }, { "description", F_STR, 0, 1000 },
        { "enabled", F_BOOL, 0, 0 }, { "created_at", F_STR, 1, 64 }, { "updated_at", F_STR, 1, 64 },
        LIMIT_FIELDS,
    };
    cJSON *m, *next;

    if (!cJSON_IsObject(t)) {
        snprintf(err, errlen, "tenant: must be an object");
        return -1;
    }
    if (check_fields(t, fields, sizeof(fields) / sizeof(fields[0]), "", err, errlen) < 0 ||
        require(t, "name", "", err, errlen) < 0)
        return -1;
    for (m = t->child; m != NULL; m = next) {   /* a null optional member is an absent one */
        next = m->next;
        if (cJSON_IsNull(m))
            cJSON_Delete(cJSON_DetachItemViaPointer(t, m));
    }
    /* the name is the tenant string keys carry, which is a slug */
    if (!is_slug(cJSON_GetObjectItemCaseSensitive(t, "name")->valuestring)) {
        snprintf(err, errlen, "name: must be a slug (letters, digits, '-', '_', '.')");
        return -1;
    }
    set_default(t, "enabled", cJSON_CreateTrue());
    return stamp(t, err, errlen);
}

/* One string of a budget scope: non-empty, at most MAX bytes, a slug when
 * SLUG (tenants and providers are slugs wherever else they appear). */
static int scope_string(const cJSON *v, const char *path, size_t max, int slug, char *err, size_t errlen)
{
    if (!cJSON_IsString(v) || v->valuestring[0] == '\0' || strlen(v->valuestring) > max) {
        snprintf(err, errlen, "%s: must be a string of 1-%zu characters", path, max);
        return -1;
    }
    if (slug && !is_slug(v->valuestring)) {
        snprintf(err, errlen, "%s: must be a slug (letters, digits, '-', '_', '.')", path);
        return -1;
    }
    return 0;
}

/* A budget's scope (SPEC 8): "global", or an object with exactly one of
 * key, tenant, route, provider, target; a target names route, provider and
 * model, and nothing else. References are the store's to check. */
static int check_budget_scope(const cJSON *scope, char *err, size_t errlen)
{
    static const char *const kinds[] = { "key", "tenant", "route", "provider", "target", NULL };
    static const char *const target_parts[] = { "route", "provider", "model", NULL };
    static const size_t target_max[] = { 64, 64, 255 };
    const cJSON *m, *target;
    const char *dup;
    char path[64];
    if (cJSON_IsString(scope)) {
        if (strcmp(scope->valuestring, "global") == 0)
            return 0;
        snprintf(err, errlen, "scope: must be \"global\" or an object with one of key, tenant, route, provider, "
                              "target");
        return -1;
    }
    if (!cJSON_IsObject(scope)) {
        snprintf(err, errlen, "scope: must be \"global\" or an object with one of key, tenant, route, provider, "
                              "target");
        return -1;
    }
    cJSON_ArrayForEach(m, scope) {
        if (!one_of(m->string, kinds)) {
            snprintf(err, errlen, "scope.%s: unknown field (a scope is one of key, tenant, route, provider, target)",
                     m->string);
            return -1;
        }
    }
    if (cJSON_GetArraySize(scope) != 1) {
        /* a PATCH merges objects: switching kinds needs the old one set to null */
        snprintf(err, errlen, "scope: must have exactly one of key, tenant, route, provider, target (to switch "
                              "kinds in a PATCH, set the old one to null)");
        return -1;
    }
    m = scope->child;
    snprintf(path, sizeof(path), "scope.%s", m->string);
    if (strcmp(m->string, "target") != 0)
        return scope_string(m, path, strcmp(m->string, "tenant") == 0 ? 128 : 64,
                            strcmp(m->string, "tenant") == 0 || strcmp(m->string, "provider") == 0, err, errlen);
    target = m;
    if (!cJSON_IsObject(target)) {
        snprintf(err, errlen, "scope.target: must be an object with route, provider and model");
        return -1;
    }
    cJSON_ArrayForEach(m, target) {
        if (!one_of(m->string, target_parts)) {
            snprintf(err, errlen, "scope.target.%s: unknown field (a target is route, provider and model)", m->string);
            return -1;
        }
    }
    if ((dup = repeated(target, 0)) != NULL) {
        snprintf(err, errlen, "scope.target.%s: given more than once", dup);
        return -1;
    }
    for (int i = 0; target_parts[i]; i++) {
        snprintf(path, sizeof(path), "scope.target.%s", target_parts[i]);
        m = cJSON_GetObjectItemCaseSensitive(target, target_parts[i]);
        if (m == NULL || cJSON_IsNull(m)) {
            snprintf(err, errlen, "%s: required", path);
            return -1;
        }
        if (scope_string(m, path, target_max[i], i == 1, err, errlen) < 0)
            return -1;
    }
    return 0;
}

int schema_budget_normalise(cJSON *b, char *err, size_t errlen)
{
    static const field_t fields[] = {
        { "id", F_STR, 1, 64 }, { "name", F_STR, 1, 128 }, { "description", F_STR, 0, 1000 },
        { "scope", F_ANY, 0, 0 }, { "limit_usd", F_NUM, 0, 1e9 }, { "limit_tokens", F_INT, 1, 1e15 },
        { "limit_requests", F_INT, 1, 1e12 }, { "window", F_STR, 1, 16 }, { "action_on_exhaust", F_STR, 1, 16 },
        { "enabled", F_BOOL, 0, 0 }, { "created_at", F_STR, 1, 64 }, { "updated_at", F_STR, 1, 64 },
    };
    /* what reads add from the ledger: never part of a stored record */
    static const char *const live[] = { "spent_usd", "spent_tokens", "requests", "window_start", "resets_at",
                                        "exhausted", NULL };
    static const char *const windows[] = { "1m", "1h", "1d", "1w", "1M", "total", NULL };
    static const char *const limits[] = { "limit_usd", "limit_tokens", "limit_requests", NULL };
    const cJSON *v;
    cJSON *m, *next;
    int nlimits = 0;

    if (!cJSON_IsObject(b)) {
        snprintf(err, errlen, "budget: must be an object");
        return -1;
    }
    for (const char *const *f = live; *f; f++) {
        if (cJSON_GetObjectItemCaseSensitive(b, *f) != NULL) {
            snprintf(err, errlen, "%s: reported by the server on reads, never stored", *f);
            return -1;
        }
    }
    if (check_fields(b, fields, sizeof(fields) / sizeof(fields[0]), "", err, errlen) < 0 ||
        require(b, "name", "", err, errlen) < 0 || require(b, "scope", "", err, errlen) < 0)
        return -1;
    /* a null optional member is an absent one: it neither counts as a limit
     * nor stays in the record */
    for (m = b->child; m != NULL; m = next) {
        next = m->next;
        if (cJSON_IsNull(m))
            cJSON_Delete(cJSON_DetachItemViaPointer(b, m));
    }
    if (!is_slug(cJSON_GetObjectItemCaseSensitive(b, "name")->valuestring)) {
        snprintf(err, errlen, "name: must be a slug (letters, digits, '-', '_', '.')");
        return -1;
    }
    if (check_budget_scope(cJSON_GetObjectItemCaseSensitive(b, "scope"), err, errlen) < 0)
        return -1;
    v = cJSON_GetObjectItemCaseSensitive(b, "limit_usd");
    if (v != NULL && v->valuedouble <= 0) {
        snprintf(err, errlen, "limit_usd: must be more than 0 and at most 1e+09");
        return -1;
    }
    for (const char *const *l = limits; *l; l++)
        nlimits += cJSON_GetObjectItemCaseSensitive(b, *l) != NULL;
    if (nlimits == 0) {
        snprintf(err, errlen, "limit_usd: a budget needs at least one of limit_usd, limit_tokens, limit_requests");
        return -1;
    }
    set_default(b, "window", cJSON_CreateString("total"));
    if (!one_of(cJSON_GetObjectItemCaseSensitive(b, "window")->valuestring, windows)) {
        snprintf(err, errlen, "window: must be one of 1m, 1h, 1d, 1w, 1M, total");
        return -1;
    }
    set_default(b, "action_on_exhaust", cJSON_CreateString("block"));
    if (check_pair(b, "", "action_on_exhaust", "block", "alert", err, errlen) < 0)
        return -1;
    set_default(b, "enabled", cJSON_CreateTrue());
    return stamp(b, err, errlen);
}

const char *schema_str(const cJSON *obj, const char *name, const char *dflt)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(obj, name);
    return cJSON_IsString(v) ? v->valuestring : dflt;
}

void schema_uuid(char out[37])
{
    unsigned char b[16];
    if (getrandom(b, sizeof(b), 0) != (ssize_t)sizeof(b)) {
        struct timespec ts;               /* never expected; still unique enough per process */
        clock_gettime(CLOCK_REALTIME, &ts);
        for (size_t i = 0; i < sizeof(b); i++)
            b[i] = (unsigned char)((ts.tv_nsec >> (i % 8)) ^ (ts.tv_sec >> i) ^ i * 131);
    }
    b[6] = (unsigned char)((b[6] & 0x0F) | 0x40);
    b[8] = (unsigned char)((b[8] & 0x3F) | 0x80);
    snprintf(out, 37, "%02x%02x%02x%02x-%02x%02x-%02x%02x-%02x%02x-%02x%02x%02x%02x%02x%02x",
             b[0], b[1], b[2], b[3], b[4], b[5], b[6], b[7], b[8], b[9], b[10], b[11], b[12],
             b[13], b[14], b[15]);
}

void schema_now(char out[32])
{
    time_t t = time(NULL);
    struct tm tm;
    gmtime_r(&t, &tm);
    strftime(out, 32, "%Y-%m-%dT%H:%M:%SZ", &tm);
}

void schema_time_iso(int64_t t, char out[32])
{
    time_t tt = (time_t)t;
    struct tm tm;
    if (gmtime_r(&tt, &tm) == NULL || strftime(out, 32, "%Y-%m-%dT%H:%M:%SZ", &tm) == 0)
        snprintf(out, 32, "%lld", (long long)t);
}

/* N decimal digits at S as a number, or -1 when one is not a digit. */
static int digits(const char *s, int n)
{
    int v = 0;
    for (int i = 0; i < n; i++) {
        if (s[i] < '0' || s[i] > '9')
            return -1;
        v = v * 10 + (s[i] - '0');
    }
    return v;
}

int schema_time_parse(const char *s, int64_t *out)
{
    static const int mdays[] = { 31, 29, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31 };
    struct tm tm;
    int y, mo, d, h = 0, mi = 0, sec = 0, off = 0;
    const char *p;
    size_t n = strlen(s);

    if (n > 0 && n <= 12 && strspn(s, "0123456789") == n) {      /* epoch seconds, up to 9999-12-31 */
        long long v = 0;
        for (p = s; *p; p++)
            v = v * 10 + (*p - '0');
        if (v > SCHEMA_TIME_MAX)
            return -1;
        *out = v;
        return 0;
    }
    if (n < 10 || (y = digits(s, 4)) < 1970 || s[4] != '-' || (mo = digits(s + 5, 2)) < 1 || mo > 12 ||
        s[7] != '-' || (d = digits(s + 8, 2)) < 1 || d > mdays[mo - 1] ||
        (mo == 2 && d == 29 && !(y % 4 == 0 && (y % 100 != 0 || y % 400 == 0))))
        return -1;
    p = s + 10;
    if (*p != '\0') {                     /* a date alone is its midnight, UTC */
        if ((*p != 'T' && *p != 't') || (h = digits(p + 1, 2)) < 0 || h > 23 || p[3] != ':' ||
            (mi = digits(p + 4, 2)) < 0 || mi > 59 || p[6] != ':' || (sec = digits(p + 7, 2)) < 0 || sec > 60)
            return -1;
        p += 9;
        if (*p == '.') {                  /* a fraction of a second: dropped */
            if (p[1] < '0' || p[1] > '9')
                return -1;
            for (p++; *p >= '0' && *p <= '9'; p++)
                ;
        }
        if (*p == 'Z' || *p == 'z') {
            p++;
        } else if (*p == '+' || *p == '-' || *p == ' ') {    /* ' ': a '+' a query string decoded */
            int oh = digits(p + 1, 2), om = -1;
            if (oh >= 0 && p[3] == ':')
                om = digits(p + 4, 2);
            if (oh < 0 || oh > 23 || om < 0 || om > 59)
                return -1;
            off = (oh * 60 + om) * 60 * (*p == '-' ? -1 : 1);
            p += 6;
        } else {
            return -1;                    /* a local time says nothing about UTC */
        }
        if (*p != '\0')
            return -1;
    }
    memset(&tm, 0, sizeof(tm));
    tm.tm_year = y - 1900;
    tm.tm_mon = mo - 1;
    tm.tm_mday = d;
    tm.tm_hour = h;
    tm.tm_min = mi;
    tm.tm_sec = sec;
    *out = (int64_t)timegm(&tm) - off;
    return *out < 0 || *out > SCHEMA_TIME_MAX ? -1 : 0;
}
