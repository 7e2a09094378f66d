/* fuzz_config.c - libFuzzer harness for config.c config_load: every
 * CHATOPENAII_* variable is parsed and validated there. The input is a list
 * of lines; each line's first byte picks a variable (byte % count) and the
 * rest of the line is its value (set with setenv before config_load; every
 * variable is unset first).
 * Invariants (abort() when broken): a failure names the bad variable; a
 * success holds values in their documented ranges, and the production
 * profile's safety rules hold. config_cleanup frees everything either way
 * (LeakSanitizer checks).
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "config.h"

#define CHECK(cond)                                                                      \
    do {                                                                                 \
        if (!(cond)) {                                                                   \
            fprintf(stderr, "fuzz_config: invariant failed at line %d: %s\n", __LINE__, \
                    #cond);                                                              \
            abort();                                                                     \
        }                                                                                \
    } while (0)

static const char *const vars[] = {
    "CHATOPENAII_ENV",           "CHATOPENAII_LISTEN",
    "CHATOPENAII_DATA_DIR",      "CHATOPENAII_DATABASE_URL",
    "CHATOPENAII_MASTER_KEY",    "CHATOPENAII_PROVIDER_BASE_URL",
    "CHATOPENAII_PROVIDER_API_KEY", "CHATOPENAII_REGISTRATION",
    "CHATOPENAII_LOG_LEVEL",     "CHATOPENAII_WEB_DIR",
    "CHATOPENAII_WORKERS",       "CHATOPENAII_DEFAULT_MODEL",
    "CHATOPENAII_MODELS",        "CHATOPENAII_SESSION_TTL",
    "CHATOPENAII_COOKIE_SECURE", "CHATOPENAII_UPSTREAM_CONNECT_TIMEOUT",
    "CHATOPENAII_UPSTREAM_IDLE_TIMEOUT", "CHATOPENAII_RETRY_MAX",
    "CHATOPENAII_RETRY_BASE_MS", "CHATOPENAII_HEARTBEAT_MS",
    "CHATOPENAII_PERSIST_MS",    "CHATOPENAII_MODELS_CACHE",
    "CHATOPENAII_TITLES",        "CHATOPENAII_GATEWAY_RPM",
    "CHATOPENAII_GATEWAY_TPM",   "CHATOPENAII_GATEWAY_CACHE_MS",
    "CHATOPENAII_CORS_ORIGINS",  "CHATOPENAII_TRUSTED_PROXIES",
    "CHATOPENAII_TLS_CERT",      "CHATOPENAII_TLS_KEY",
    "CHATOPENAII_COOKIE_SAMESITE", "CHATOPENAII_RATE_AUTH",
    "CHATOPENAII_RATE_GENERATE", "CHATOPENAII_RATE_API",
    "CHATOPENAII_LOCKOUT_FAILURES", "CHATOPENAII_LOCKOUT_MINUTES",
    "CHATOPENAII_SENTRY_DSN",    "CHATOPENAII_METRICS_TOKEN",
};
#define NVARS (sizeof vars / sizeof vars[0])

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    for (size_t i = 0; i < NVARS; i++)
        unsetenv(vars[i]);
    char *in = malloc(size + 1);
    memcpy(in, data, size);
    in[size] = '\0';
    char *save = NULL;
    for (char *line = strtok_r(in, "\n", &save); line; line = strtok_r(NULL, "\n", &save)) {
        const char *name = vars[(unsigned char)line[0] % NVARS];
        setenv(name, line + 1, 1);
    }
    free(in);

    struct config cfg;
    char err[512];
    err[0] = '\0';
    int rc = config_load(&cfg, err, sizeof err);
    CHECK(rc == 0 || rc == -1);
    if (rc != 0) {
        CHECK(strstr(err, "CHATOPENAII_") != NULL); /* names the variable */
    } else {
        CHECK(cfg.env == ENV_DEVELOPMENT || cfg.env == ENV_STAGING || cfg.env == ENV_PRODUCTION);
        CHECK(cfg.listen_host && cfg.listen_port >= 0 && cfg.listen_port <= 65535);
        CHECK(cfg.data_dir && cfg.database_url && cfg.web_dir && cfg.default_model);
        CHECK(strncmp(cfg.provider_base_url, "http://", 7) == 0 ||
              strncmp(cfg.provider_base_url, "https://", 8) == 0);
        size_t bl = strlen(cfg.provider_base_url);
        CHECK(bl > 0 && cfg.provider_base_url[bl - 1] != '/');
        CHECK(cfg.workers >= 1 && cfg.workers <= 64);
        CHECK(cfg.session_ttl_s >= 60);
        CHECK(cfg.retry_max >= 0 && cfg.retry_max <= 10);
        CHECK(cfg.heartbeat_ms >= 100 && cfg.persist_ms >= 10);
        CHECK(cfg.gateway_rpm >= 0 && cfg.gateway_tpm >= 0 && cfg.gateway_cache_ms >= 0);
        CHECK((cfg.tls_cert == NULL) == (cfg.tls_key == NULL));
        CHECK(strcmp(cfg.cookie_samesite, "lax") == 0 || strcmp(cfg.cookie_samesite, "strict") == 0 ||
              strcmp(cfg.cookie_samesite, "none") == 0);
        if (strcmp(cfg.cookie_samesite, "none") == 0)
            CHECK(cfg.cookie_secure);
        if (cfg.cors_origins) /* "*" is refused (origins are compared literally) */
            CHECK(strcmp(cfg.cors_origins, "*") != 0);
        if (cfg.sentry_dsn)
            CHECK(strncmp(cfg.sentry_dsn, "http", 4) == 0);
        if (cfg.env == ENV_PRODUCTION) {
            CHECK(cfg.master_key != NULL);
            CHECK(cfg.tls_cert || cfg.trusted_proxies);
        }
    }
    config_cleanup(&cfg);
    return 0;
}
