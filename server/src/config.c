/* config.c - read and validate CHATOPENAII_* variables; see config.h. */
#include "config.h"

#include <ctype.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "lib/log.h"
#include "lib/redis.h"

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

/* An http(s) URL with a host: "http://" alone (or "http:///x") is refused,
 * it would be cut to "http:" when trailing slashes are dropped. */
static bool url_ok(const char *u)
{
    const char *h = strncmp(u, "https://", 8) == 0 ? u + 8
                    : strncmp(u, "http://", 7) == 0 ? u + 7
                                                     : NULL;
    return h && *h && *h != '/' && !isspace((unsigned char)*h);
}

/* Comma list of origins like https://app.example.com (scheme://host[:port]). */
static bool origins_ok(const char *list)
{
    char *copy = xstrdup(list), *save = NULL;
    bool ok = true;
    for (char *o = strtok_r(copy, ",", &save); o; o = strtok_r(NULL, ",", &save)) {
        while (*o == ' ')
            o++;
        const char *h = strncmp(o, "https://", 8) == 0 ? o + 8
                        : strncmp(o, "http://", 7) == 0 ? o + 7
                                                        : NULL;
        if (!h || !*h || strchr(h, '/') || strchr(h, ' ') || strchr(h, '*') || strcmp(o, "*") == 0)
            ok = false;
    }
    free(copy);
    return ok;
}

int config_load(struct config *cfg, char *err, size_t errlen)
{
    memset(cfg, 0, sizeof *cfg);
    long n;

    const char *envname = env("CHATOPENAII_ENV");
    if (!envname || strcmp(envname, "development") == 0)
        cfg->env = ENV_DEVELOPMENT;
    else if (strcmp(envname, "staging") == 0)
        cfg->env = ENV_STAGING;
    else if (strcmp(envname, "production") == 0)
        cfg->env = ENV_PRODUCTION;
    else {
        snprintf(err, errlen, "CHATOPENAII_ENV must be development, staging or production");
        return -1;
    }
    bool strict = cfg->env != ENV_DEVELOPMENT;

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
        if (strncmp(db, "sqlite:", 7) != 0 && strcmp(db, ":memory:") != 0 &&
            strncmp(db, "postgres://", 11) != 0 && strncmp(db, "postgresql://", 13) != 0) {
            snprintf(err, errlen,
                     "CHATOPENAII_DATABASE_URL must start with sqlite:, postgres:// or "
                     "postgresql://");
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
    /* production opens registration only when told so explicitly */
    if (!reg)
        cfg->registration_open = cfg->env != ENV_PRODUCTION;
    else if (strcmp(reg, "open") == 0)
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
    if (parse_int("CHATOPENAII_TURN_LEASE_MS", 1000, 600000, 10000, &n, err, errlen))
        return -1;
    cfg->turn_lease_ms = (int)n;
    if (parse_int("CHATOPENAII_TURN_POLL_MS", 20, 5000, 250, &n, err, errlen))
        return -1;
    cfg->turn_poll_ms = (int)n;
    const char *iid = env("CHATOPENAII_INSTANCE_ID");
    if (iid) {
        size_t il = strlen(iid);
        bool ok = il <= 80;
        for (const char *q = iid; ok && *q; q++)
            ok = (*q >= 'a' && *q <= 'z') || (*q >= 'A' && *q <= 'Z') || (*q >= '0' && *q <= '9') ||
                 *q == '-' || *q == '_' || *q == '.' || *q == ':';
        if (!ok) {
            snprintf(err, errlen, "CHATOPENAII_INSTANCE_ID must be 1 to 80 of A-Z a-z 0-9 - _ . :");
            return -1;
        }
        cfg->instance_id = xstrdup(iid);
    }
    const char *dm = env("CHATOPENAII_DEFAULT_MODEL");
    cfg->default_model = xstrdup(dm ? dm : "gpt-4o-mini");
    const char *fm = env("CHATOPENAII_MODELS");
    cfg->fallback_models = xstrdup(fm ? fm : "gpt-4o-mini,gpt-4o");
    if (parse_int("CHATOPENAII_SESSION_TTL", 60, 365L * 86400, 30L * 86400, &n, err, errlen))
        return -1;
    cfg->session_ttl_s = n;
    if (parse_bool("CHATOPENAII_COOKIE_SECURE", "on", "off", strict, &cfg->cookie_secure, err,
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

    const char *co = env("CHATOPENAII_CORS_ORIGINS");
    if (co && !origins_ok(co)) {
        snprintf(err, errlen, "CHATOPENAII_CORS_ORIGINS must be a comma list of origins like "
                              "https://app.example.com (no paths, no wildcard)");
        return -1;
    }
    cfg->cors_origins = xstrdup(co);
    cfg->trusted_proxies = xstrdup(env("CHATOPENAII_TRUSTED_PROXIES"));
    cfg->tls_cert = xstrdup(env("CHATOPENAII_TLS_CERT"));
    cfg->tls_key = xstrdup(env("CHATOPENAII_TLS_KEY"));
    if ((cfg->tls_cert != NULL) != (cfg->tls_key != NULL)) {
        snprintf(err, errlen, "%s is set without %s",
                 cfg->tls_cert ? "CHATOPENAII_TLS_CERT" : "CHATOPENAII_TLS_KEY",
                 cfg->tls_cert ? "CHATOPENAII_TLS_KEY" : "CHATOPENAII_TLS_CERT");
        return -1;
    }
    const char *ss = env("CHATOPENAII_COOKIE_SAMESITE");
    if (ss && strcmp(ss, "lax") != 0 && strcmp(ss, "strict") != 0 && strcmp(ss, "none") != 0) {
        snprintf(err, errlen, "CHATOPENAII_COOKIE_SAMESITE must be lax, strict or none");
        return -1;
    }
    cfg->cookie_samesite = xstrdup(ss ? ss : "lax");
    if (strcmp(cfg->cookie_samesite, "none") == 0 && !cfg->cookie_secure) {
        snprintf(err, errlen, "CHATOPENAII_COOKIE_SAMESITE=none needs CHATOPENAII_COOKIE_SECURE=on");
        return -1;
    }
    if (parse_int("CHATOPENAII_RATE_AUTH", 0, 1000000, 20, &n, err, errlen))
        return -1;
    cfg->rate_auth = (int)n;
    if (parse_int("CHATOPENAII_RATE_GENERATE", 0, 1000000, 30, &n, err, errlen))
        return -1;
    cfg->rate_generate = (int)n;
    if (parse_int("CHATOPENAII_RATE_API", 0, 10000000, 1200, &n, err, errlen))
        return -1;
    cfg->rate_api = (int)n;
    if (parse_int("CHATOPENAII_RESPONSE_CACHE_MB", 0, 4096, 16, &n, err, errlen))
        return -1;
    cfg->response_cache_mb = (int)n;
    if (parse_int("CHATOPENAII_LOCKOUT_FAILURES", 0, 1000, 5, &n, err, errlen))
        return -1;
    cfg->lockout_failures = (int)n;
    if (parse_int("CHATOPENAII_LOCKOUT_MINUTES", 1, 1440, 15, &n, err, errlen))
        return -1;
    cfg->lockout_minutes = (int)n;
    const char *dsn = env("CHATOPENAII_SENTRY_DSN");
    if (dsn && (strncmp(dsn, "http://", 7) != 0 && strncmp(dsn, "https://", 8) != 0)) {
        snprintf(err, errlen, "CHATOPENAII_SENTRY_DSN must be an http(s) DSN like "
                              "https://key@host/1");
        return -1;
    }
    cfg->sentry_dsn = xstrdup(dsn);
    cfg->metrics_token = xstrdup(env("CHATOPENAII_METRICS_TOKEN"));
    const char *ru = env("CHATOPENAII_REDIS_URL");
    if (ru) {
        char *rh, *ruser, *rpw;
        int rport, rdb;
        if (redis_url_parse(ru, &rh, &rport, &rdb, &ruser, &rpw) != 0) {
            snprintf(err, errlen, "CHATOPENAII_REDIS_URL must look like "
                                  "redis://host:port/db (optionally redis://:password@host:port)");
            return -1;
        }
        free(rh);
        free(ruser);
        if (rpw)
            secure_wipe(rpw, strlen(rpw));
        free(rpw);
        cfg->redis_url = xstrdup(ru);
    }

    /* Safe defaults are not optional in production. */
    if (cfg->env == ENV_PRODUCTION) {
        if (!cfg->master_key) {
            snprintf(err, errlen, "CHATOPENAII_MASTER_KEY must be set in production (a generated "
                                  "key in the data directory is for development)");
            return -1;
        }
        if (!cfg->tls_cert && !cfg->trusted_proxies) {
            snprintf(err, errlen, "CHATOPENAII_TLS_CERT/CHATOPENAII_TLS_KEY or "
                                  "CHATOPENAII_TRUSTED_PROXIES must be set in production (no "
                                  "plain HTTP)");
            return -1;
        }
    }
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
    free(cfg->instance_id);
    free(cfg->default_model);
    free(cfg->fallback_models);
    free(cfg->cors_origins);
    free(cfg->trusted_proxies);
    free(cfg->tls_cert);
    free(cfg->tls_key);
    free(cfg->cookie_samesite);
    free(cfg->sentry_dsn);
    if (cfg->metrics_token)
        secure_wipe(cfg->metrics_token, strlen(cfg->metrics_token));
    free(cfg->metrics_token);
    if (cfg->redis_url)
        secure_wipe(cfg->redis_url, strlen(cfg->redis_url));
    free(cfg->redis_url);
    memset(cfg, 0, sizeof *cfg);
}
