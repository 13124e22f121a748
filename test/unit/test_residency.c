/* test_residency.c - the named country sets and how a provider's region is matched against them. */
#include "../../src/residency.c"
#include "unit.h"

static size_t count(residency_set_t set)
{
    size_t n, k = 0;
    const residency_country_t *c = residency_countries(&n);
    for (size_t i = 0; i < n; i++)
        k += c[i].tier <= set;
    return k;
}

int main(void)
{
    size_t n;
    const residency_country_t *c = residency_countries(&n);

    CHECK(count(RESIDENCY_EU) == 27 && count(RESIDENCY_EEA) == 30 && count(RESIDENCY_EU_ADEQUATE) == 45);
    for (size_t i = 0; i < n; i++) {         /* ISO 3166-1 alpha-2, each code once */
        CHECK(strlen(c[i].code) == 2 && c[i].code[0] >= 'A' && c[i].code[0] <= 'Z' && c[i].code[1] >= 'A' &&
              c[i].code[1] <= 'Z' && *c[i].name);
        for (size_t k = 0; k < i; k++)
            CHECK(strcmp(c[i].code, c[k].code) != 0);
        CHECK(i == 0 || c[i - 1].tier <= c[i].tier);
    }
    CHECK(residency_set_parse("eu") == RESIDENCY_EU && residency_set_parse("EEA") == RESIDENCY_EEA &&
          residency_set_parse("eu_adequate") == RESIDENCY_EU_ADEQUATE && residency_set_parse("europe") == -1);
    CHECK_STR(residency_set_name(RESIDENCY_EU_ADEQUATE), "eu_adequate");

    /* countries in sets, any case */
    CHECK(residency_within("DE", "eu") && residency_within("de", "EU") && residency_within("de", "eea"));
    CHECK(!residency_within("NO", "eu") && residency_within("NO", "eea") && residency_within("no", "eu_adequate"));
    CHECK(!residency_within("CH", "eea") && residency_within("CH", "eu_adequate"));
    CHECK(residency_within("US", "eu_adequate") && residency_within("GB", "eu_adequate"));
    CHECK(!residency_within("CN", "eu_adequate") && !residency_within("BR", "eu_adequate"));
    CHECK(!residency_within("UK", "eu_adequate"));      /* ISO codes only: the United Kingdom is GB */
    /* a set as a region: within every set that contains it */
    CHECK(residency_within("eu", "eu") && residency_within("EU", "eea") && residency_within("eea", "eu_adequate"));
    CHECK(!residency_within("eea", "eu") && !residency_within("eu_adequate", "eea"));
    /* any other label matches itself only */
    CHECK(residency_within("us", "US") && residency_within("eu-west-1", "EU-WEST-1"));
    CHECK(!residency_within("DE", "FR") && !residency_within("eu-west-1", "eu") && !residency_within("DE", "de-x"));
    DONE();
}
