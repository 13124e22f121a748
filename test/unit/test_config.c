/* test_config.c - the option table: defaults, bounds, unknown keys named in errors. */
#include "../../src/config.c"
#include "unit.h"

static int load(const char *json, config_t *c, char *err)
{
    char path[] = "/tmp/turnout-config-XXXXXX";
    int fd = mkstemp(path);
    FILE *f = fdopen(fd, "w");
    fputs(json, f);
    fclose(f);
    int rc = config_load(path, c, err, 512);
    unlink(path);
    return rc;
}

int main(void)
{
    config_t c;
    char err[512];

    CHECK(load("{}", &c, err) == 0);
    CHECK_STR(c.listen_host, "127.0.0.1");
    CHECK(c.listen_port == 8080 && c.max_body_bytes == 10485760 && c.require_key == 1);
    CHECK(c.workers >= 1);

    CHECK(load("{\"listen\":\"0.0.0.0:9000\",\"workers\":3,\"limits\":{\"max_body_bytes\":4096},"
               "\"require_key\":false,\"seed\":\"s.json\"}", &c, err) == 0);
    CHECK_STR(c.listen_host, "0.0.0.0");
    CHECK(c.listen_port == 9000 && c.workers == 3 && c.max_body_bytes == 4096 && !c.require_key);
    CHECK_STR(c.seed, "/tmp/s.json");     /* relative to the config file */

    CHECK(load("{\"bogus\":1}", &c, err) < 0 && strstr(err, "bogus") != NULL);
    CHECK(load("{\"limits\":{\"max_bodyy\":1}}", &c, err) < 0 && strstr(err, "limits.max_bodyy") != NULL);
    CHECK(load("{\"workers\":-1}", &c, err) < 0 && strstr(err, "workers") != NULL);
    CHECK(load("{\"limits\":{\"max_body_bytes\":0}}", &c, err) < 0 && strstr(err, "limits.max_body_bytes") != NULL);
    CHECK(load("{\"workers\":1.5}", &c, err) < 0 && strstr(err, "workers") != NULL);
    /* numbers past int64_t's range are refused before any conversion (UBSan stopped on them; fuzz_config) */
    CHECK(load("{\"workers\":1e300}", &c, err) < 0 && strstr(err, "workers: 1e+300 is out of range") != NULL);
    CHECK(load("{\"limits\":{\"max_body_bytes\":-9.3e18}}", &c, err) < 0 && strstr(err, "out of range") != NULL);
    CHECK(load("{\"limits\":{\"max_body_bytes\":9223372036854775807}}", &c, err) < 0 &&
          strstr(err, "out of range") != NULL);
    CHECK(load("{\"workers\":300}", &c, err) < 0 && strstr(err, "workers: 300 is out of range 0-256") != NULL);
    /* tls: both files or neither, for each listener */
    CHECK(load("{\"tls\":{\"cert\":\"c.pem\"}}", &c, err) < 0 && strstr(err, "tls: cert and key go together") != NULL);
    CHECK(load("{\"admin\":{\"tls\":{\"key\":\"k.pem\"}}}", &c, err) < 0 && strstr(err, "admin.tls:") != NULL);
    CHECK(load("{\"admin\":{\"tls\":{\"cert\":\"c.pem\",\"key\":\"k.pem\"}}}", &c, err) == 0 &&
          strcmp(c.admin_tls_cert, "/tmp/c.pem") == 0 && c.admin_tls_ctx == NULL);
    CHECK(load("{\"require_key\":1}", &c, err) < 0 && strstr(err, "require_key") != NULL);
    CHECK(load("{\"listen\":\"nope\"}", &c, err) < 0 && strstr(err, "listen") != NULL);
    CHECK(load("{\"listen\":\"h:70000\"}", &c, err) < 0 && strstr(err, "listen") != NULL);
    CHECK(load("{\"log\":{\"level\":\"loud\"}}", &c, err) < 0 && strstr(err, "log.level") != NULL);
    CHECK(load("{\"limits\":5}", &c, err) < 0 && strstr(err, "limits") != NULL);
    /* cluster: a list of endpoints, kept comma-separated; the prefix and the policy */
    CHECK(load("{}", &c, err) == 0 && c.cluster_etcd[0] == '\0' && c.cluster_redis[0] == '\0');
    CHECK_STR(c.cluster_prefix, "/turnout/");
    CHECK_STR(c.cluster_redis_failure, "local");
    CHECK(load("{\"cluster\":{\"etcd\":[\"http://a:2379\",\"http://b:2379\"],\"redis\":\"r:6379\","
               "\"redis_failure\":\"closed\",\"prefix\":\"/gw/\"}}", &c, err) == 0);
    CHECK_STR(c.cluster_etcd, "http://a:2379,http://b:2379");
    CHECK_STR(c.cluster_redis, "r:6379");
    CHECK_STR(c.cluster_redis_failure, "closed");
    CHECK_STR(c.cluster_prefix, "/gw/");
    CHECK(load("{\"cluster\":{\"etcd\":\"http://a:2379\"}}", &c, err) < 0 &&
          strstr(err, "cluster.etcd: expected an array") != NULL);
    CHECK(load("{\"cluster\":{\"etcd\":[\"\"]}}", &c, err) < 0 && strstr(err, "cluster.etcd") != NULL);
    CHECK(load("{\"cluster\":{\"etcd\":[\"http://a,b\"]}}", &c, err) < 0 && strstr(err, "without commas") != NULL);
    CHECK(load("{\"cluster\":{\"etcd\":[1]}}", &c, err) < 0 && strstr(err, "cluster.etcd") != NULL);
    CHECK(load("{\"cluster\":{\"prefix\":\"gw\"}}", &c, err) < 0 && strstr(err, "cluster.prefix") != NULL);
    CHECK(load("{\"cluster\":{\"redis_failure\":\"open\"}}", &c, err) < 0 &&
          strstr(err, "cluster.redis_failure") != NULL);
    CHECK(load("{\"cluster\":{\"etcd_x\":[]}}", &c, err) < 0 && strstr(err, "cluster.etcd_x") != NULL);
    CHECK(load("[1]", &c, err) < 0);
    CHECK(load("{\"a\":", &c, err) < 0);
    CHECK(config_load("/nonexistent/x.json", &c, err, sizeof(err)) < 0 && strstr(err, "/nonexistent") != NULL);
    DONE();
}
