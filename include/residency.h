/* residency.h - the named country sets of data_residency ("eu", "eea", "eu_adequate") and region matching. */
#ifndef TURNOUT_RESIDENCY_H
#define TURNOUT_RESIDENCY_H

#include <stddef.h>

/* The named sets, each containing the one before it. */
typedef enum {
    RESIDENCY_EU = 0,        /* the 27 EU member states */
    RESIDENCY_EEA,           /* the EU, Iceland, Liechtenstein, Norway */
    RESIDENCY_EU_ADEQUATE,   /* the EEA and the countries with an EU adequacy decision */
    RESIDENCY__COUNT
} residency_set_t;

/* One country: ISO 3166-1 alpha-2 code (upper case) and English short name. */
typedef struct residency_country {
    const char *code, *name;
    residency_set_t tier;    /* the smallest set it belongs to */
} residency_country_t;

/* The set's name as data_residency spells it ("eu", "eea", "eu_adequate"). */
const char *residency_set_name(residency_set_t set);

/* The set named NAME (any case), or -1. */
int residency_set_parse(const char *name);

/* All countries of every set, smallest set first, by name within a set;
 * *n is set to their number. Set S holds those with tier <= S. Static. */
const residency_country_t *residency_countries(size_t *n);

/* 1 when a provider in REGION satisfies the residency wish WANT. Both are
 * compared without regard to case. WANT may be a set name (then REGION must
 * be one of its countries, or a set name contained in it: "eu" is within
 * "eea") or any other label (then REGION must be that label). */
int residency_within(const char *region, const char *want);

#endif
