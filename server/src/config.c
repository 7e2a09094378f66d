/* config.c - read and validate CHATOPENAII_* variables; see config.h. */
#include "config.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "lib/log.h"

static const char *env(const char *name)
{
    const char *v = getenv(name);
    return (v && *v) ? v : NULL;
}

static int parse_int(const char *name, long min, long max, long dflt, long *out,
                     char *err, size_t errlen)
{
    const char *v = env(name);
    if (!v) {
        *out = dflt;
        return 0;
    }
    char *end;
    errno = 0;
    long n = strtol(v, &end, 10);
    if (errno || *end || end == v || n < min || n > max) {
        snprintf(err, errlen, "%s must be an integer between %ld and %ld (got \"%.40s\")", name,
                 min, max, v);
        return -1;
    }
    *out = n;
    return 0;
}

static int parse_bool(const char *name, const char *yes, const char *no, bool dflt, bool *out,
                      char *err, size_t errlen)
{
    const char *v = env(name);
    if (!v) {
        *out = dflt;
        return 0;
    }
    if (strcasecmp(v, yes) == 0 || strcmp(v, "1") == 0 || strcasecmp(v, "true") == 0) {
        *out = true;
        return 0;
    }
    if (strcasecmp(v, no) == 0 || strcmp(v, "0") == 0 || strcasecmp(v, "false") == 0) {
        *out = false;
        return 0;
    }
    snprintf(err, errlen, "%s must be \"%s\" or \"%s\" (got \"%.40s\")", name, yes, no, v);
    return -1;
}

static bool url_ok(const char *u)
{
    return strncmp(u, "http://", 7) == 0 || strncmp(u, "https://", 8) == 0;
}

int config_load(struct config *cfg, char *err, size_t errlen)
{
    memset(cfg, 0, sizeof *cfg);
    long n;

    const char *listen = env("CHATOPENAII_LISTEN");
    if (!listen)
        listen = "127.0.0.1:8080";
    const char *colon = strrchr(listen, ':');
    if (!colon || colon == listen) {
        snprintf(err, errlen, "CHATOPENAII_LISTEN must be HOST:PORT (got \"%.60s\")", listen);
        return -1;
    }
    char *end;
    errno = 0;
    long port = strtol(colon + 1, &end, 10);
    if (errno || *end || end == colon + 1 || port < 0 || port > 65535) {
        snprintf(err, errlen, "CHATOPENAII_LISTEN has an invalid port (got \"%.60s\")", listen);
        return -1;
    }
    cfg->listen_host = xstrndup(listen, (size_t)(colon - listen));
    if (cfg->listen_host[0] == '[') { /* [::1]:8080 */
        size_t l = strlen(cfg->listen_host);
        if (l < 3 || cfg->listen_host[l - 1] != ']') {
            snprintf(err, errlen, "CHATOPENAII_LISTEN has an invalid IPv6 host");
            return -1;
        }
        memmove(cfg->listen_host, cfg->listen_host + 1, l - 2);
        cfg->listen_host[l - 2] = '\0';
    }
    cfg->listen_port = (int)port;

    cfg->data_dir = xstrdup(env("CHATOPENAII_DATA_DIR") ? env("CHATOPENAII_DATA_DIR") : "./data");
    const char *db = env("CHATOPENAII_DATABASE_URL");
    if (db) {
        if (strncmp(db, "sqlite:", 7) != 0 && strcmp(db, ":memory:") != 0) {
            snprintf(err, errlen,
                     "CHATOPENAII_DATABASE_URL must start with sqlite: (PostgreSQL arrives "
                     "with the scale-out work)");
            return -1;
        }
        cfg->database_url = xstrdup(db);
    } else {
        cfg->database_url = xasprintf("sqlite:%s/chatopenaii.db", cfg->data_dir);
    }
    cfg->master_key = xstrdup(env("CHATOPENAII_MASTER_KEY"));

    const char *base = env("CHATOPENAII_PROVIDER_BASE_URL");
    if (!base)
        base = "https://api.openai.com/v1";
    if (!url_ok(base) || strlen(base) > 2000) {
        snprintf(err, errlen, "CHATOPENAII_PROVIDER_BASE_URL must be an http(s):// URL");
        return -1;
    }
    cfg->provider_base_url = xstrdup(base);
    size_t bl = strlen(cfg->provider_base_url);
    while (bl > 0 && cfg->provider_base_url[bl - 1] == '/')
        cfg->provider_base_url[--bl] = '\0';
    cfg->provider_api_key = xstrdup(env("CHATOPENAII_PROVIDER_API_KEY"));

    const char *reg = env("CHATOPENAII_REGISTRATION");
    if (!reg || strcmp(reg, "open") == 0)
        cfg->registration_open = true;
    else if (strcmp(reg, "closed") == 0)
        cfg->registration_open = false;
    else {
        snprintf(err, errlen, "CHATOPENAII_REGISTRATION must be \"open\" or \"closed\"");
        return -1;
    }

    const char *lvl = env("CHATOPENAII_LOG_LEVEL");
    cfg->log_level = lvl ? log_level_parse(lvl) : LOG_INFO;
    if (cfg->log_level < 0) {
        snprintf(err, errlen, "CHATOPENAII_LOG_LEVEL must be debug, info, warn, error or off");
        return -1;
    }

    cfg->web_dir = xstrdup(env("CHATOPENAII_WEB_DIR") ? env("CHATOPENAII_WEB_DIR") : "web/dist");
    if (parse_int("CHATOPENAII_WORKERS", 1, 64, 4, &n, err, errlen))
        return -1;
    cfg->workers = (int)n;
    const char *dm = env("CHATOPENAII_DEFAULT_MODEL");
    cfg->default_model = xstrdup(dm ? dm : "gpt-4o-mini");
    const char *fm = env("CHATOPENAII_MODELS");
    cfg->fallback_models = xstrdup(fm ? fm : "gpt-4o-mini,gpt-4o");
    if (parse_int("CHATOPENAII_SESSION_TTL", 60, 365L * 86400, 30L * 86400, &n, err, errlen))
        return -1;
    cfg->session_ttl_s = n;
    if (parse_bool("CHATOPENAII_COOKIE_SECURE", "on", "off", false, &cfg->cookie_secure, err,
                   errlen))
        return -1;
    if (parse_int("CHATOPENAII_UPSTREAM_CONNECT_TIMEOUT", 1, 300, 10, &n, err, errlen))
        return -1;
    cfg->upstream_connect_timeout_s = (int)n;
    if (parse_int("CHATOPENAII_UPSTREAM_IDLE_TIMEOUT", 1, 3600, 60, &n, err, errlen))
        return -1;
    cfg->upstream_idle_timeout_s = (int)n;
    if (parse_int("CHATOPENAII_RETRY_MAX", 0, 10, 2, &n, err, errlen))
        return -1;
    cfg->retry_max = (int)n;
    if (parse_int("CHATOPENAII_RETRY_BASE_MS", 0, 60000, 500, &n, err, errlen))
        return -1;
    cfg->retry_base_ms = (int)n;
    if (parse_int("CHATOPENAII_HEARTBEAT_MS", 100, 600000, 15000, &n, err, errlen))
        return -1;
    cfg->heartbeat_ms = (int)n;
    if (parse_int("CHATOPENAII_PERSIST_MS", 10, 60000, 500, &n, err, errlen))
        return -1;
    cfg->persist_ms = (int)n;
    if (parse_int("CHATOPENAII_MODELS_CACHE", 0, 86400, 300, &n, err, errlen))
        return -1;
    cfg->models_cache_s = (int)n;
    if (parse_bool("CHATOPENAII_TITLES", "on", "off", true, &cfg->titles, err, errlen))
        return -1;
    if (parse_int("CHATOPENAII_GATEWAY_RPM", 0, 100000000, 600, &n, err, errlen))
        return -1;
    cfg->gateway_rpm = n;
    if (parse_int("CHATOPENAII_GATEWAY_TPM", 0, 1000000000000L, 2000000, &n, err, errlen))
        return -1;
    cfg->gateway_tpm = n;
    if (parse_int("CHATOPENAII_GATEWAY_CACHE_MS", 0, 3600000, 30000, &n, err, errlen))
        return -1;
    cfg->gateway_cache_ms = n;
    return 0;
}

void config_cleanup(struct config *cfg)
{
    free(cfg->listen_host);
    free(cfg->data_dir);
    free(cfg->database_url);
    if (cfg->master_key)
        secure_wipe(cfg->master_key, strlen(cfg->master_key));
    free(cfg->master_key);
    free(cfg->provider_base_url);
    if (cfg->provider_api_key)
        secure_wipe(cfg->provider_api_key, strlen(cfg->provider_api_key));
    free(cfg->provider_api_key);
    free(cfg->web_dir);
    free(cfg->default_model);
    free(cfg->fallback_models);
    memset(cfg, 0, sizeof *cfg);
}
