/* config.h - server configuration from CHATOPENAII_* environment variables.
 *
 * config_load validates every variable and fails with a message naming the
 * bad one; nothing else in the server reads the environment.
 */
#ifndef COAI_CONFIG_H
#define COAI_CONFIG_H

#include "lib/common.h"

enum config_env { ENV_DEVELOPMENT = 0, ENV_STAGING, ENV_PRODUCTION };

struct config {
    enum config_env env;      /* CHATOPENAII_ENV: development (default), staging, production */
    char *listen_host;        /* CHATOPENAII_LISTEN host part, default 127.0.0.1 */
    int listen_port;          /* default 8080 */
    char *data_dir;           /* CHATOPENAII_DATA_DIR, default ./data */
    char *database_url;       /* CHATOPENAII_DATABASE_URL, default sqlite:<data_dir>/chatopenaii.db */
    char *master_key;         /* CHATOPENAII_MASTER_KEY (secret; NULL = generated file) */
    char *provider_base_url;  /* CHATOPENAII_PROVIDER_BASE_URL, default https://api.openai.com/v1 */
    char *provider_api_key;   /* CHATOPENAII_PROVIDER_API_KEY (secret; may be NULL) */
    bool registration_open;   /* CHATOPENAII_REGISTRATION=open|closed, default open */
    int log_level;            /* CHATOPENAII_LOG_LEVEL, default info */
    char *web_dir;            /* CHATOPENAII_WEB_DIR, default web/dist */
    int workers;              /* CHATOPENAII_WORKERS, default 4 */
    char *default_model;      /* CHATOPENAII_DEFAULT_MODEL, default gpt-4o-mini */
    char *fallback_models;    /* CHATOPENAII_MODELS, comma list used when the provider list fails */
    int64_t session_ttl_s;    /* CHATOPENAII_SESSION_TTL seconds, default 30 days */
    bool cookie_secure;       /* CHATOPENAII_COOKIE_SECURE, default false (plain HTTP on loopback) */
    int upstream_connect_timeout_s; /* CHATOPENAII_UPSTREAM_CONNECT_TIMEOUT, default 10 */
    int upstream_idle_timeout_s;    /* CHATOPENAII_UPSTREAM_IDLE_TIMEOUT, default 60 */
    int retry_max;            /* CHATOPENAII_RETRY_MAX, default 2 */
    int retry_base_ms;        /* CHATOPENAII_RETRY_BASE_MS, default 500 */
    int heartbeat_ms;         /* CHATOPENAII_HEARTBEAT_MS, default 15000 */
    int persist_ms;           /* CHATOPENAII_PERSIST_MS, default 500 */
    int turn_lease_ms;        /* CHATOPENAII_TURN_LEASE_MS, default 10000: a dead instance's turns end after it */
    int turn_poll_ms;         /* CHATOPENAII_TURN_POLL_MS, default 250: following another instance's turn */
    char *instance_id;        /* CHATOPENAII_INSTANCE_ID, default <host>-<hash of host and data dir> */
    int models_cache_s;       /* CHATOPENAII_MODELS_CACHE, default 300 */
    bool titles;              /* CHATOPENAII_TITLES=on|off, default on */
    int64_t gateway_rpm;      /* CHATOPENAII_GATEWAY_RPM per user, default 600 (0 = unlimited) */
    int64_t gateway_tpm;      /* CHATOPENAII_GATEWAY_TPM per user, default 2000000 (0 = unlimited) */
    int64_t gateway_cache_ms; /* CHATOPENAII_GATEWAY_CACHE_MS token cache, default 30000 */
    char *cors_origins;       /* CHATOPENAII_CORS_ORIGINS comma list of allowed origins (none) */
    char *trusted_proxies;    /* CHATOPENAII_TRUSTED_PROXIES comma list of proxy IPs (none) */
    char *tls_cert;           /* CHATOPENAII_TLS_CERT PEM path: serve HTTPS */
    char *tls_key;            /* CHATOPENAII_TLS_KEY PEM path */
    char *cookie_samesite;    /* CHATOPENAII_COOKIE_SAMESITE lax (default) | strict | none */
    int rate_auth;            /* CHATOPENAII_RATE_AUTH sign-in/registration per IP per minute, default 20 */
    int rate_generate;        /* CHATOPENAII_RATE_GENERATE answers per user per minute, default 30 */
    int response_cache_mb;    /* CHATOPENAII_RESPONSE_CACHE_MB kept answers (SQLite only), default 16, 0 = off */
    int rate_api;             /* CHATOPENAII_RATE_API requests per user or IP per minute, default 1200 */
    int lockout_failures;     /* CHATOPENAII_LOCKOUT_FAILURES failed sign-ins before lock-out, default 5 */
    int lockout_minutes;      /* CHATOPENAII_LOCKOUT_MINUTES, default 15 */
    char *sentry_dsn;         /* CHATOPENAII_SENTRY_DSN: report unexpected errors (none) */
    char *metrics_token;      /* CHATOPENAII_METRICS_TOKEN: bearer for /metrics (else loopback only) */
    char *redis_url;          /* CHATOPENAII_REDIS_URL redis://[[user]:password@]host[:port][/db] (secret; NULL = no Redis) */
};

/* Fills cfg from the environment. Returns 0, or -1 with a message naming the
 * variable in err. */
int config_load(struct config *cfg, char *err, size_t errlen);
void config_cleanup(struct config *cfg);

#endif
