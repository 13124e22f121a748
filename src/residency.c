/* residency.c - the country sets data_residency can name, as EUrouter publishes them.
 *
 * One static table, read by the resolver (src/resolve.c, the
 * data_residency preference) and the admin API (GET /v1/eu-residency).
 * The sets are nested (EU within the EEA within "EU adequate"), so each
 * country carries only the smallest set it belongs to. Adequacy decisions
 * are the European Commission's (GDPR Art. 45) as of 2025; the United
 * States' covers organisations certified under the EU-US Data Privacy
 * Framework, Canada's commercial organisations. */
#include "residency.h"

#include <strings.h>

static const char *const set_names[RESIDENCY__COUNT] = { "eu", "eea", "eu_adequate" };

static const residency_country_t countries[] = {
    { "AT", "Austria", RESIDENCY_EU },
    { "BE", "Belgium", RESIDENCY_EU },
    { "BG", "Bulgaria", RESIDENCY_EU },
    { "HR", "Croatia", RESIDENCY_EU },
    { "CY", "Cyprus", RESIDENCY_EU },
    { "CZ", "Czechia", RESIDENCY_EU },
    { "DK", "Denmark", RESIDENCY_EU },
    { "EE", "Estonia", RESIDENCY_EU },
    { "FI", "Finland", RESIDENCY_EU },
    { "FR", "France", RESIDENCY_EU },
    { "DE", "Germany", RESIDENCY_EU },
    { "GR", "Greece", RESIDENCY_EU },
    { "HU", "Hungary", RESIDENCY_EU },
    { "IE", "Ireland", RESIDENCY_EU },
    { "IT", "Italy", RESIDENCY_EU },
    { "LV", "Latvia", RESIDENCY_EU },
    { "LT", "Lithuania", RESIDENCY_EU },
    { "LU", "Luxembourg", RESIDENCY_EU },
    { "MT", "Malta", RESIDENCY_EU },
    { "NL", "Netherlands", RESIDENCY_EU },
    { "PL", "Poland", RESIDENCY_EU },
    { "PT", "Portugal", RESIDENCY_EU },
    { "RO", "Romania", RESIDENCY_EU },
    { "SK", "Slovakia", RESIDENCY_EU },
    { "SI", "Slovenia", RESIDENCY_EU },
    { "ES", "Spain", RESIDENCY_EU },
    { "SE", "Sweden", RESIDENCY_EU },
    { "IS", "Iceland", RESIDENCY_EEA },
    { "LI", "Liechtenstein", RESIDENCY_EEA },
    { "NO", "Norway", RESIDENCY_EEA },
    { "AD", "Andorra", RESIDENCY_EU_ADEQUATE },
    { "AR", "Argentina", RESIDENCY_EU_ADEQUATE },
    { "CA", "Canada", RESIDENCY_EU_ADEQUATE },
    { "FO", "Faroe Islands", RESIDENCY_EU_ADEQUATE },
    { "GG", "Guernsey", RESIDENCY_EU_ADEQUATE },
    { "IM", "Isle of Man", RESIDENCY_EU_ADEQUATE },
    { "IL", "Israel", RESIDENCY_EU_ADEQUATE },
    { "JP", "Japan", RESIDENCY_EU_ADEQUATE },
    { "JE", "Jersey", RESIDENCY_EU_ADEQUATE },
    { "NZ", "New Zealand", RESIDENCY_EU_ADEQUATE },
    { "KR", "Republic of Korea", RESIDENCY_EU_ADEQUATE },
    { "CH", "Switzerland", RESIDENCY_EU_ADEQUATE },
    { "GB", "United Kingdom", RESIDENCY_EU_ADEQUATE },
    { "US", "United States", RESIDENCY_EU_ADEQUATE },
    { "UY", "Uruguay", RESIDENCY_EU_ADEQUATE },
};

const char *residency_set_name(residency_set_t set)
{
    return (unsigned)set < RESIDENCY__COUNT ? set_names[set] : "?";
}

int residency_set_parse(const char *name)
{
    for (int i = 0; i < RESIDENCY__COUNT; i++)
        if (strcasecmp(name, set_names[i]) == 0)
            return i;
    return -1;
}

const residency_country_t *residency_countries(size_t *n)
{
    *n = sizeof(countries) / sizeof(countries[0]);
    return countries;
}

/* The smallest set holding REGION (a country code or a set name), or -1. */
static int tier_of(const char *region)
{
    int set = residency_set_parse(region);
    if (set >= 0)
        return set;
    for (size_t i = 0; i < sizeof(countries) / sizeof(countries[0]); i++)
        if (strcasecmp(region, countries[i].code) == 0)
            return (int)countries[i].tier;
    return -1;
}

int residency_within(const char *region, const char *want)
{
    int set, tier;
    if (strcasecmp(region, want) == 0)
        return 1;
    if ((set = residency_set_parse(want)) < 0)
        return 0;
    return (tier = tier_of(region)) >= 0 && tier <= set;
}
