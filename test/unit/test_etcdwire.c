/* test_etcdwire.c - etcd's numbers as the JSON gateway sends them: strings, numbers, and numbers beyond int64_t. */
#include "../../src/etcdwire.c"
#include "unit.h"

#include <cjson/cJSON.h>
#include <stdint.h>

static int64_t revision_of(const char *json)
{
    cJSON *resp = cJSON_Parse(json);
    int64_t rev = etcdwire_revision(resp);
    cJSON_Delete(resp);
    return rev;
}

int main(void)
{
    CHECK(revision_of("{\"header\":{\"revision\":\"42\"}}") == 42);
    CHECK(revision_of("{\"header\":{\"revision\":\"9223372036854775807\"}}") == INT64_MAX);
    CHECK(revision_of("{\"header\":{\"revision\":42}}") == 42);
    CHECK(revision_of("{\"header\":{\"revision\":-7}}") == -7);
    CHECK(revision_of("{\"header\":{}}") == 0);
    CHECK(revision_of("{\"header\":{\"revision\":true}}") == 0);
    /* numbers no int64_t holds are 0, not undefined behaviour (found by
     * fuzz_etcd_watch; its input is test/fuzz/corpus/etcd_watch/found-huge-revision) */
    CHECK(revision_of("{\"header\":{\"revision\":3.55556e115}}") == 0);
    CHECK(revision_of("{\"header\":{\"revision\":-1e300}}") == 0);
    CHECK(revision_of("{\"header\":{\"revision\":9223372036854775808}}") == 0);
    CHECK(revision_of("{\"header\":{\"revision\":-9223372036854775808}}") == INT64_MIN);
    CHECK(revision_of("{\"header\":{\"revision\":1e18}}") == 1000000000000000000LL);
    DONE();
}
