/* dialect.h - the API dialects turnout speaks (SPEC 7), and the translations between them.
 *
 * A request arrives in the client's dialect (OpenAI's Chat Completions at
 * /v1/chat/completions, Anthropic's Messages at /v1/messages) and each
 * attempt goes to a target in the upstream's (its provider's `protocol`).
 * When the two are the same the bytes pass through untouched but for the
 * model (the relay never calls a translation). When they differ, one
 * module per direction translates, in one place, everything the relay
 * needs:
 *
 *   src/dialect/openai_to_anthropic.c   an OpenAI client, an Anthropic upstream
 *   src/dialect/anthropic_to_openai.c   an Anthropic client, an OpenAI upstream
 *
 * each behind the same four steps: the request body, the whole answer, the
 * stream event by event, and an upstream error answer. They work on
 * cJSON documents and write into evbuffers; none of them blocks, logs or
 * keeps anything between calls but its stream state. A translation never
 * guesses: a request field the other side cannot express is refused
 * (400 unsupported_parameter, naming the field), and an upstream answer
 * or event that does not parse is an error (upstream_error), never a
 * made-up answer. */
#ifndef TURNOUT_DIALECT_H
#define TURNOUT_DIALECT_H

#include <event2/buffer.h>
#include <stddef.h>
#include <stdint.h>

typedef enum {
    DIALECT_OPENAI = 0,            /* Chat Completions (protocol "openai", "azure") */
    DIALECT_ANTHROPIC = 1,         /* Messages API (protocol "anthropic") */
} dialect_t;

/* Token counts an answer reported; each -1 when it said nothing of it. */
typedef struct dialect_usage {
    int64_t prompt;                /* input tokens, cached ones included */
    int64_t completion;            /* output tokens */
    int64_t cached;                /* input tokens read from the provider's cache */
} dialect_usage_t;

/* Why a request cannot be translated: the caller answers 400 with
 * code "unsupported_parameter" (or "invalid_request" when the body is not
 * a valid request of its dialect) and PARAM as the error's param; code
 * "out_of_memory" is ours, answered 500. */
typedef struct dialect_err {
    const char *code;              /* "unsupported_parameter" or "invalid_request" */
    char param[64];                /* the field, e.g. "n", "messages[2].content[0].type" */
    char message[256];             /* for people */
} dialect_err_t;

/* What a request translation needs besides the body. */
typedef struct dialect_req_opts {
    const char *model;             /* the upstream model to name in the body */
    long default_max_tokens;       /* the provider's default_max_tokens (used when the request gives none) */
} dialect_req_opts_t;

/* What a translated request told about itself. */
typedef struct dialect_req_info {
    int stream;                    /* the client asked for a stream */
    int include_usage;             /* OpenAI client: stream_options.include_usage */
} dialect_req_info_t;

/* --- one direction: the functions each translation module provides ------- */

typedef struct dialect_stream dialect_stream_t;

typedef struct dialect_ops {
    /* The upstream request body for the client's BODY (LEN bytes of valid
     * JSON in the client's dialect), appended to OUT. Returns 0, or -1
     * with ERR filled (nothing useful is in OUT then). */
    int (*request)(const char *body, size_t len, const dialect_req_opts_t *o, struct evbuffer *out,
                   dialect_req_info_t *info, dialect_err_t *err);
    /* The client's answer for the upstream's whole 2xx answer BODY (LEN
     * bytes), appended to OUT; MODEL is the model the client asked for
     * (answers name it, as the upstream did). USAGE gets the counts.
     * Returns 0, or -1 when BODY is not an answer of the upstream's dialect. */
    int (*answer)(const char *body, size_t len, const char *model, struct evbuffer *out, dialect_usage_t *usage);
    /* A stream's translation state, for the client's MODEL and the
     * request's INFO; NULL when out of memory. */
    dialect_stream_t *(*stream_new)(const char *model, const dialect_req_info_t *info);
    /* One whole event of the upstream's stream (its bytes up to and
     * including the empty line that ends it, CR LF, LF or CR line ends),
     * translated into zero or more whole events of the client's stream
     * appended to OUT. Returns 0, 1 when the upstream's stream is over (its
     * terminator: the client's own terminator has been appended), or -1 when
     * the event is malformed (nothing is appended; the relay ends the
     * stream with an error event). USAGE is updated as counts come. */
    int (*stream_event)(dialect_stream_t *s, const char *ev, size_t len, struct evbuffer *out,
                        dialect_usage_t *usage);
    void (*stream_free)(dialect_stream_t *s);
    /* An upstream error answer (STATUS, BODY in the upstream's error shape,
     * or anything at all) rewritten in the client's error shape, appended
     * to OUT; the message is kept, the type mapped. */
    void (*error)(int status, const char *body, size_t len, struct evbuffer *out);
} dialect_ops_t;

/* --- what the data plane asks (src/dialect/dialect.c) ---------------------- */

/* The dialect a provider's `protocol` speaks: "anthropic", else OpenAI's
 * ("openai", "azure"). */
dialect_t dialect_of_protocol(const char *protocol);

/* The translation between a CLIENT's dialect and an UPSTREAM's; NULL when
 * they are the same (the bytes pass through). */
const dialect_ops_t *dialect_between(dialect_t client, dialect_t upstream);

/* turnout's own error in the CLIENT's shape, appended to OUT: OpenAI's
 * {"error":{"message","type","param","code"...EXTRA}}, or Anthropic's
 * {"type":"error","error":{"type","message"}} whose type follows STATUS and
 * whose message starts with CODE. MESSAGE_JSON and PARAM_JSON are JSON
 * values (a quoted string, or null); EXTRA more members of OpenAI's error
 * object (",\"attempts\":[...]"), or NULL. */
void dialect_error_body(dialect_t client, int status, const char *type, const char *code, const char *param_json,
                        const char *message_json, const char *extra, struct evbuffer *out);

/* Anthropic's error type for an HTTP status (its documented pairs: 401
 * authentication_error, 404 not_found_error, 429 rate_limit_error, 503/529
 * overloaded_error, other 5xx api_error, other 4xx invalid_request_error...). */
const char *dialect_anthropic_error_type(int status);

/* What of the JSON text S (LEN bytes, well-formed) cJSON cannot hold:
 * DIALECT_ESC_NUL for a \u0000 escape (cJSON decodes it into a C string,
 * which would silently end there), DIALECT_ESC_SURROGATE for an unpaired
 * surrogate escape (well-formed JSON, but no character), or 0. */
enum { DIALECT_ESC_NUL = 1, DIALECT_ESC_SURROGATE = 2 };
int dialect_bad_escape(const char *s, size_t len);

/* What an upstream sent, parsed (the caller deletes it), when it is
 * well-formed JSON of valid UTF-8 that cJSON holds whole; else NULL. Every
 * translation reads upstream bytes through this, so that what it prints
 * is valid JSON of valid UTF-8 too. */
struct cJSON *dialect_parse(const char *body, size_t len);

/* Whether stream bytes BUF[0, LEN) end with dialect D's terminator (the
 * last line that holds anything): OpenAI's data: [DONE], Anthropic's
 * message_stop event. */
int dialect_stream_ended(dialect_t d, const char *buf, size_t len);

/* OpenAI client, Anthropic upstream (src/dialect/openai_to_anthropic.c). */
extern const dialect_ops_t dialect_openai_to_anthropic;
/* Anthropic client, OpenAI upstream (src/dialect/anthropic_to_openai.c). */
extern const dialect_ops_t dialect_anthropic_to_openai;

#endif
