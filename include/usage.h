/* usage.h - token counts read from an upstream's answer bytes (either dialect), and what they cost. */
#ifndef TURNOUT_USAGE_H
#define TURNOUT_USAGE_H

#include "dialect.h"

#include <stddef.h>
#include <stdint.h>

/* A provider model's prices, USD per 1M tokens; a price < 0 is not set
 * (cached: the input price then). */
typedef struct usage_prices {
    double input, output, cached;
} usage_prices_t;

/* Reads the "usage" object of the JSON answer BODY (the last one: OpenAI's
 * and Anthropic's answers have one, at the top level, near the end; OpenAI's
 * prompt_tokens / completion_tokens / prompt_tokens_details.cached_tokens,
 * or Anthropic's input_tokens / output_tokens / cache_*_input_tokens) into
 * *U, field by field (what it does not say is left as it was). Any bytes
 * at all are safe to give. Returns 1 when there was a usage object. */
int usage_from_answer(const char *body, size_t len, dialect_usage_t *u);

/* The same for one SSE event (its bytes, up to its blank line): an OpenAI
 * chunk's usage object, Anthropic's message_start (message.usage) or
 * message_delta (usage). Returns 1 when the event carried counts, with
 * *USAGE_ONLY (may be NULL) set when it is OpenAI's usage chunk (empty
 * choices), the one turnout drops when it asked for it itself. */
int usage_from_event(const char *ev, size_t len, dialect_usage_t *u, int *usage_only);

/* Where in BUF[0, LEN) of whole stream events, from FROM on, the first
 * usage *object* is ("usage": {), or LEN when there is none: a memmem, so a
 * relayed stream pays next to nothing for the chunks without one (OpenAI
 * writes "usage": null in each chunk once include_usage is on). */
size_t usage_find(const char *buf, size_t len, size_t from);

/* The tokens U counts, prompt and completion (an unknown count as 0): what
 * budgets' and rate limits' token counters are charged. */
int64_t usage_tokens(const dialect_usage_t *u);

/* The cost of U at prices P, in nano-USD (0 for what is unpriced or
 * unknown); never negative, and at most 1e18 ($1e9) whatever the counts. */
int64_t usage_cost_nusd(const dialect_usage_t *u, const usage_prices_t *p);

/* Writes nano-USD N as a decimal number of USD ("0.000123456") to BUF. */
void usage_format_usd(int64_t n, char *buf, size_t cap);

#endif
