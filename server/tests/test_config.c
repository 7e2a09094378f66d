/* test_config.c - configuration: defaults on an empty environment, every
 * variable's validation names the variable, values parse as documented. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "config.h"
#include "lib/log.h"

extern char **environ;

static void clear_env(void)
{
    /* drop every CHATOPENAII_* variable */
    for (;;) {
        char **e = environ;
        while (*e && strncmp(*e, "CHATOPENAII_", 12) != 0)
            e++;
        if (!*e)
            break;
        char name[256];
        size_t n = strcspn(*e, "=");
        snprintf(name, sizeof name, "%.*s", (int)n, *e);
        unsetenv(name);
    }
}

static void test_defaults(void **state)
{
    clear_env();
    struct config c;
    char err[256];
    assert_int_equal(config_load(&c, err, sizeof err), 0);
    assert_string_equal(c.listen_host, "127.0.0.1");
    assert_int_equal(c.listen_port, 8080);
    assert_string_equal(c.data_dir, "./data");
    assert_string_equal(c.database_url, "sqlite:./data/chatopenaii.db");
    assert_null(c.master_key);
    assert_null(c.provider_api_key);
    assert_string_equal(c.provider_base_url, "https://api.openai.com/v1");
    assert_true(c.registration_open);
    assert_int_equal(c.log_level, LOG_INFO);
    assert_int_equal(c.workers, 4);
    assert_true(c.titles);
    config_cleanup(&c);
}

static void test_values(void **state)
{
    clear_env();
    setenv("CHATOPENAII_LISTEN", "[::1]:0", 1);
    setenv("CHATOPENAII_DATA_DIR", "/tmp/x", 1);
    setenv("CHATOPENAII_PROVIDER_BASE_URL", "http://h:1/v1///", 1);
    setenv("CHATOPENAII_REGISTRATION", "closed", 1);
    setenv("CHATOPENAII_WORKERS", "7", 1);
    setenv("CHATOPENAII_TITLES", "off", 1);
    setenv("CHATOPENAII_LOG_LEVEL", "warn", 1);
    struct config c;
    char err[256];
    assert_int_equal(config_load(&c, err, sizeof err), 0);
    assert_string_equal(c.listen_host, "::1");
    assert_int_equal(c.listen_port, 0);
    assert_string_equal(c.database_url, "sqlite:/tmp/x/chatopenaii.db");
    assert_string_equal(c.provider_base_url, "http://h:1/v1"); /* trailing slashes trimmed */
    assert_false(c.registration_open);
    assert_int_equal(c.workers, 7);
    assert_false(c.titles);
    assert_int_equal(c.log_level, LOG_WARN);
    config_cleanup(&c);
}

static void test_errors_name_the_variable(void **state)
{
    static const struct {
        const char *var, *value;
    } bad[] = {
        {"CHATOPENAII_LISTEN", "nonsense"},
        {"CHATOPENAII_LISTEN", "127.0.0.1:99999"},
        {"CHATOPENAII_WORKERS", "0"},
        {"CHATOPENAII_WORKERS", "4x"},
        {"CHATOPENAII_REGISTRATION", "maybe"},
        {"CHATOPENAII_LOG_LEVEL", "loud"},
        {"CHATOPENAII_PROVIDER_BASE_URL", "ftp://x"},
        {"CHATOPENAII_PROVIDER_BASE_URL", "http://"}, /* no host (fuzz_config) */
        {"CHATOPENAII_PROVIDER_BASE_URL", "https:///v1"},
        {"CHATOPENAII_DATABASE_URL", "mysql://x"},
        {"CHATOPENAII_SESSION_TTL", "5"},
        {"CHATOPENAII_COOKIE_SECURE", "perhaps"},
        {"CHATOPENAII_UPSTREAM_IDLE_TIMEOUT", "-1"},
        {"CHATOPENAII_RETRY_MAX", "11"},
        {"CHATOPENAII_HEARTBEAT_MS", "1"},
        {"CHATOPENAII_TITLES", "sometimes"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        clear_env();
        setenv(bad[i].var, bad[i].value, 1);
        struct config c;
        char err[256] = "";
        int rc = config_load(&c, err, sizeof err);
        if (rc != -1 || !strstr(err, bad[i].var))
            fail_msg("%s=%s: rc=%d err=\"%s\"", bad[i].var, bad[i].value, rc, err);
        config_cleanup(&c);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_defaults),
        cmocka_unit_test(test_values),
        cmocka_unit_test(test_errors_name_the_variable),
    };
    int failed = cmocka_run_group_tests(tests, NULL, NULL);
    int total = (int)(sizeof tests / sizeof tests[0]);
    printf("unit-config: %d passed, %d failed\n", total - failed, failed);
    return failed ? 1 : 0;
}
