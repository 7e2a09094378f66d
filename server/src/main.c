/* main.c - the chatopenaii binary: read configuration, open the store, run
 * the subcommand. `serve` builds the event loop, the worker pool and the
 * HTTP server and runs until SIGTERM; everything else is a one-shot CLI. */
#include <ctype.h>
#include <errno.h>
#include <malloc.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <event2/event.h>
#include <event2/http.h>

#include "api/api.h"
#include "app.h"
#include "config.h"
#include "http/http.h"
#include "gateway/gateway.h"
#include "http/metrics.h"
#include "http/respcache.h"
#include "http/security.h"
#include "http/sentry.h"
#include "http/static.h"
#include "lib/ratelimit.h"
#include "lib/crypto.h"
#include "lib/ids.h"
#include "lib/lazy.h"
#include "lib/log.h"
#include "lib/pool.h"
#include "lib/redis.h"
#include "llm/curlev.h"
#include "llm/provider.h"
#include "llm/turn.h"
#include "store/migrate.h"
#include "store/store.h"

#define SHUTDOWN_GRACE_S 15

static void usage(FILE *f)
{
    fputs("usage: chatopenaii <command>\n"
          "  serve                         run the server (configured by CHATOPENAII_* variables)\n"
          "  migrate                       apply pending database migrations\n"
          "  migrate-store --from SRC --to DST [--verify]\n"
          "                                copy all data between SQLite and PostgreSQL\n"
          "  admin create-user --email E [--name N] [--admin] (--password P | --password-stdin)\n"
          "  admin rotate-master-key [--new-key KEY]\n"
          "                                re-encrypt every stored provider key\n"
          "  routes                        print the API routes\n"
          "  version\n",
          f);
}

static int mkdir_p(const char *path)
{
    char *tmp = xstrdup(path);
    for (char *p = tmp + 1; *p; p++) {
        if (*p == '/') {
            *p = '\0';
            if (mkdir(tmp, 0700) != 0 && errno != EEXIST) {
                free(tmp);
                return -1;
            }
            *p = '/';
        }
    }
    int rc = (mkdir(tmp, 0700) != 0 && errno != EEXIST) ? -1 : 0;
    free(tmp);
    return rc;
}

/* The master key: CHATOPENAII_MASTER_KEY, or a file generated in the data
 * directory on first start. *from_file tells which. */
static int master_key_get(struct config *cfg, unsigned char key[32], bool *from_file)
{
    char err[256];
    *from_file = false;
    if (cfg->master_key) {
        if (crypto_master_key_parse(cfg->master_key, key, err, sizeof err) != 0) {
            fprintf(stderr, "chatopenaii: CHATOPENAII_MASTER_KEY: %s\n", err);
            return -1;
        }
        return 0;
    }
    char *path = xasprintf("%s/master.key", cfg->data_dir);
    bool created = false;
    int rc = crypto_master_key_load_or_create(path, key, &created, err, sizeof err);
    if (rc != 0)
        fprintf(stderr, "chatopenaii: master key %s: %s\n", path, err);
    else if (created)
        log_warn("generated a new master key; set CHATOPENAII_MASTER_KEY explicitly in production "
                 "and keep a copy: without it stored provider keys cannot be decrypted",
                 "path", path, NULL);
    free(path);
    *from_file = true;
    return rc;
}

static int derive_keys(const unsigned char master[32], unsigned char box[32], int *version)
{
    unsigned char id[32];
    if (crypto_hkdf(master, 32, "chatopenaii/provider-keys/v1", box) != 0 ||
        crypto_hkdf(master, 32, "chatopenaii/key-id", id) != 0)
        return -1;
    *version = (int)(((unsigned)id[0] << 24 | (unsigned)id[1] << 16 | (unsigned)id[2] << 8 |
                      (unsigned)id[3]) & 0x7fffffffu);
    secure_wipe(id, sizeof id);
    return 0;
}

static struct store *open_store(struct config *cfg)
{
    char err[256];
    struct store *st = store_open(cfg->database_url, err, sizeof err);
    if (!st)
        fprintf(stderr, "chatopenaii: CHATOPENAII_DATABASE_URL: %s\n", err);
    return st;
}

static int migrate(struct store *st)
{
    int from = 0, to = 0;
    enum app_err e = store_migrate(st, &from, &to);
    if (e != APP_OK) {
        fprintf(stderr, "chatopenaii: migration failed: %s\n", store_errmsg(st));
        return -1;
    }
    if (from != to) {
        char f[16], t[16];
        snprintf(f, sizeof f, "=%d", from);
        snprintf(t, sizeof t, "=%d", to);
        log_info("schema migrated", "from", f, "to", t, NULL);
    }
    return 0;
}

/* ---- serve ---------------------------------------------------------------------- */

/* The store connection cmd_serve opened for its start-up work; the first
 * worker takes it over instead of opening another (written before the pool
 * starts, taken by worker 0 while pool_new waits for it). */
static struct store *g_boot_store;

/* Worker 0 at start; the others on their first job (pool_new_lazy). */
static void *worker_init(void *arg, int index)
{
    struct app *app = arg;
    if (index == 0 && g_boot_store) {
        struct store *st = g_boot_store;
        g_boot_store = NULL;
        return st;
    }
    char err[256];
    struct store *st = store_open(app->cfg.database_url, err, sizeof err);
    if (!st)
        log_error("worker cannot open the store", "detail", err, NULL);
    return st;
}

static void worker_fini(void *ctx)
{
    store_close(ctx);
}

static void on_shutdown_poll(evutil_socket_t fd, short what, void *arg)
{
    struct app *app = arg;
    static int ticks;
    ticks++;
    if ((turns_idle(app) && pool_pending(app->pool) == 0) || ticks > SHUTDOWN_GRACE_S * 100)
        event_base_loopexit(app->base, NULL);
}

static void on_signal(evutil_socket_t sig, short what, void *arg)
{
    struct app *app = arg;
    if (app->shutting_down)
        return;
    log_info("shutting down", "signal", sig == SIGTERM ? "SIGTERM" : "SIGINT", NULL);
    app->shutting_down = true;
    http_server_stop_accepting(app);
    turns_shutdown(app);
    api_follows_shutdown(app);
    gateway_shutdown(app);
    provider_fetch_cancel_all(app);
    app->shutdown_poll = event_new(app->base, -1, EV_PERSIST, on_shutdown_poll, app);
    struct timeval tv = {0, 10000};
    event_add(app->shutdown_poll, &tv);
}

struct purge_job {
    int64_t n;
};

static void purge_work(void *arg, void *ctx)
{
    struct purge_job *j = arg;
    (void)store_session_purge(ctx, now_ms(), &j->n);
}

/* SIGHUP: reload the TLS certificate; open connections keep the old one. */
static void on_sighup(evutil_socket_t sig, short what, void *arg)
{
    char err[256];
    if (!security_tls_enabled())
        return;
    if (security_tls_reload(err, sizeof err) == 0)
        log_info("TLS certificate reloaded", NULL);
    else
        log_error("TLS certificate reload failed; keeping the old one", "detail", err, NULL);
}

static void on_housekeeping(evutil_socket_t fd, short what, void *arg)
{
    struct app *app = arg;
    ratelimit_sweep(app->rl);
    if (!app->shutting_down)
        pool_submit(app->pool, purge_work, free, xcalloc(1, sizeof(struct purge_job)));
}

/* glibc keeps free memory at the top of each malloc arena up to the trim
 * threshold (cmd_serve: 16 MiB, so a long chat's reply is not given back
 * and faulted in again on every request). Each thread allocates from its
 * own arena: the loop from the main one, every worker from its own. */
#define MALLOC_TRIM_THRESHOLD (16 << 20)

/* malloc_trim(0) returns the main arena's top and the whole free pages
 * inside every arena, but leaves the top of the other arenas alone; glibc
 * trims a worker's arena top only in free(), when a block of 64 KiB or more
 * goes back to it and the top exceeds the trim threshold. So each worker
 * frees such a block with the threshold at 0 for that moment (one worker at
 * a time: the threshold is process-wide), and the first of them also calls
 * malloc_trim. On the workers: the loop never waits on it, and no job is
 * queued for it (a queued job could start a lazy worker, with its own
 * store connection and arena). */
static pthread_mutex_t g_arena_trim_mu = PTHREAD_MUTEX_INITIALIZER;
static int g_trim_all_due; /* atomic */

static void trim_work(void *arg, void *ctx)
{
    (void)arg;
    (void)ctx;
    if (__atomic_exchange_n(&g_trim_all_due, 0, __ATOMIC_ACQ_REL))
        malloc_trim(0);
    pthread_mutex_lock(&g_arena_trim_mu);
    mallopt(M_TRIM_THRESHOLD, 0);
    void *volatile probe = malloc(128 << 10); /* volatile: the pair is not elided */
    free(probe);
    mallopt(M_TRIM_THRESHOLD, MALLOC_TRIM_THRESHOLD);
    pthread_mutex_unlock(&g_arena_trim_mu);
}

/* Busy ticks (2 s each) between trims while requests keep coming. */
#define MEMTRIM_BUSY_TICKS 5
static int g_memtrim_busy_ticks;

static void memtrim_now(struct app *app)
{
    g_memtrim_busy_ticks = 0;
    if (app->shutting_down)
        return;
    __atomic_store_n(&g_trim_all_due, 1, __ATOMIC_RELEASE);
    pool_each_worker(app->pool, trim_work, NULL);
}

/* Freed memory goes back to the kernel two seconds after a burst of
 * requests, and every ten seconds under steady load: else each arena keeps
 * the high-water mark of what it ever held at once (bench/soak: RSS crept
 * up ~1.6 MB over ten minutes of a flat working set). */
static void on_memtrim(evutil_socket_t fd, short what, void *arg)
{
    struct app *app = arg;
    uint64_t n = app->requests_total;
    if (n != app->memtrim_seen) {
        app->memtrim_seen = n;
        app->memtrim_due = true;
        if (++g_memtrim_busy_ticks >= MEMTRIM_BUSY_TICKS)
            memtrim_now(app); /* still due: trimmed again once idle */
    } else if (app->memtrim_due) {
        app->memtrim_due = false;
        memtrim_now(app);
    }
}

/* libcurl is loaded when the first provider request is made (lib/lazy.h),
 * not at start; its multi handle on the loop is made then, by the
 * curl_easy_init of that request (on the loop thread, before the transfer
 * is added to app->curl). */
static void curl_first_use(void *arg)
{
    struct app *app = arg;
    app->curl = curlev_new(app->base);
}

/* A fresh install gets list prices (USD per 1M tokens: input, cached input,
 * output) for common models; admins edit them through the API. */
static int seed_prices(struct store *st)
{
    static const struct {
        const char *model;
        int64_t in, cached, out;
    } defaults[] = {
        {"gpt-4o", 2500000, 1250000, 10000000},    {"gpt-4o-mini", 150000, 75000, 600000},
        {"gpt-4.1", 2000000, 500000, 8000000},     {"gpt-4.1-mini", 400000, 100000, 1600000},
        {"gpt-4.1-nano", 100000, 25000, 400000},   {"o4-mini", 1100000, 275000, 4400000},
        {"gpt-3.5-turbo", 500000, 500000, 1500000},
    };
    struct store_price *list = NULL;
    size_t n = 0;
    enum app_err e = store_price_list(st, &list, &n);
    store_price_list_free(list, n);
    for (size_t i = 0; e == APP_OK && n == 0 && i < sizeof defaults / sizeof defaults[0]; i++) {
        struct store_price p = {.model = (char *)defaults[i].model,
                                .input_micros = defaults[i].in,
                                .cached_input_micros = defaults[i].cached,
                                .output_micros = defaults[i].out};
        e = store_price_upsert(st, &p);
    }
    if (e != APP_OK)
        fprintf(stderr, "chatopenaii: cannot seed prices: %s\n", store_errmsg(st));
    return e == APP_OK ? 0 : -1;
}

/* Orderly teardown, also after a failed start (every part may be NULL):
 * the pool first (finishes queued store writes). */
static void serve_teardown(struct app *app)
{
    if (app->pool)
        gateway_usage_flush(app->gw); /* the last usage rows, before the pool drains */
    if (app->pool)
        pool_free(app->pool);
    app->pool = NULL;
    store_close(g_boot_store); /* not taken: the pool never started */
    g_boot_store = NULL;
    if (app->turns)
        turns_free(app->turns);
    if (app->gw)
        gateway_free(app->gw);
    redis_free(app->redis); /* waiting callbacks get NULL; before rl and the loop go */
    app->redis = NULL;
    if (app->sig_term)
        event_free(app->sig_term);
    if (app->sig_int)
        event_free(app->sig_int);
    if (app->sig_hup)
        event_free(app->sig_hup);
    if (app->housekeeping)
        event_free(app->housekeeping);
    if (app->memtrim)
        event_free(app->memtrim);
    if (app->shutdown_poll)
        event_free(app->shutdown_poll);
    security_reply_end_flush(); /* streams ended above may wait on TLS */
    if (app->http)
        evhttp_free(app->http);
    if (app->curl)
        curlev_free(app->curl);
    models_cache_free(app->models);
    if (app->rl)
        ratelimit_free(app->rl);
    respcache_free(app->respcache);
    app->respcache = NULL;
    metrics_cleanup();
    security_cleanup();
    sentry_cleanup();
    if (app->web)
        static_free(app->web);
    if (app->base)
        event_base_free(app->base);
    secure_wipe(app->box_key, sizeof app->box_key);
}

/* The default instance id: stable across restarts of the same instance (so
 * its own leftover turns are recovered at once), distinct between instances
 * on one host (their data directories differ). */
static void default_instance_id(struct config *cfg)
{
    if (cfg->instance_id)
        return;
    char host[256] = "host";
    if (gethostname(host, sizeof host - 1) != 0)
        snprintf(host, sizeof host, "host");
    host[sizeof host - 1] = '\0';
    char *dir = realpath(cfg->data_dir, NULL);
    char *seed = xasprintf("%s%c%s", host, 0, dir ? dir : cfg->data_dir);
    size_t seed_len = strlen(host) + 1 + strlen(dir ? dir : cfg->data_dir);
    char hex[65];
    crypto_sha256_hex(seed, seed_len, hex);
    free(seed);
    free(dir);
    char name[41];
    size_t k = 0;
    for (const char *q = host; *q && k < sizeof name - 1; q++)
        name[k++] = (isalnum((unsigned char)*q) || *q == '-' || *q == '.') ? *q : '-';
    name[k] = '\0';
    hex[12] = '\0';
    cfg->instance_id = xasprintf("%s-%s", name, hex);
}

static int cmd_serve(struct app *app)
{
    /* Blocks of 8 MiB and more are mapped on their own and unmapped when
     * freed. glibc's default threshold rises to the largest such block freed
     * so far, so after the first sign-in every argon2 hash (19 MiB) came from
     * its worker's arena and stayed there as the arena's top chunk, which
     * malloc_trim does not return: up to 19 MiB per worker, for good (found
     * by bench/soak). A long chat's reply (a few MB) stays below it.
     * Fixing one threshold also fixes the other at glibc's 128 KiB, which
     * gave every such reply back to the kernel when freed and faulted it in
     * again on the next (a 2,000-message chat went from 12 to 60 ms): free
     * memory at the top of an arena is kept up to 16 MiB (glibc's own
     * dynamic value would have been twice the 19 MiB) between trims:
     * on_memtrim returns every arena's free memory after a burst of
     * requests and every ten seconds under steady load. */
    mallopt(M_MMAP_THRESHOLD, 8 << 20);
    mallopt(M_TRIM_THRESHOLD, MALLOC_TRIM_THRESHOLD);
    struct config *cfg = &app->cfg;
    default_instance_id(cfg);
    unsigned char master[32];
    bool from_file;
    if (master_key_get(cfg, master, &from_file) != 0)
        return 1;
    int rc = derive_keys(master, app->box_key, &app->key_version);
    secure_wipe(master, sizeof master);
    if (rc != 0) {
        fprintf(stderr, "chatopenaii: key derivation failed\n");
        return 1;
    }

    struct store *st = open_store(cfg);
    if (!st)
        return 1;
    if (migrate(st) != 0) {
        store_close(st);
        return 1;
    }
    const char *backend = store_backend(st); /* a static name: outlives st */
    int64_t n = 0;
    /* Crash recovery: this instance's own leftover turns, and those of any
     * instance whose lease ran out, end as interrupted; live turns of other
     * instances sharing the database are left alone. */
    if (store_lease_expire(st, now_ms(), cfg->instance_id, &n) != APP_OK) {
        fprintf(stderr, "chatopenaii: crash recovery failed: %s\n", store_errmsg(st));
        store_close(st);
        return 1;
    }
    if (n > 0) {
        char s[32];
        snprintf(s, sizeof s, "=%lld", (long long)n);
        log_warn("answers interrupted by the last shutdown were marked interrupted", "count", s,
                 NULL);
    }
    if (seed_prices(st) != 0) {
        store_close(st);
        return 1;
    }
    g_boot_store = st; /* the first worker's connection (worker_init) */

    app->started_ms = now_ms();
    {
        struct event_config *ecfg = event_config_new();
        event_config_set_flag(ecfg, EVENT_BASE_FLAG_EPOLL_USE_CHANGELIST);
        app->base = event_base_new_with_config(ecfg);
        event_config_free(ecfg);
    }
    lazy_curl_on_first_use(curl_first_use, app); /* app->curl: on the first provider request */
    app->turns = turns_new(app);
    app->models = models_cache_new();
    app->web = static_load(cfg->web_dir);
    app->rl = ratelimit_new();
    /* kept answers need the store's commit count: one process, SQLite only */
    if (strcmp(backend, "sqlite") == 0 && !cfg->redis_url)
        app->respcache = respcache_new((size_t)cfg->response_cache_mb << 20);
    if (cfg->redis_url) { /* shared limits and fan-out; connects in the background */
        unsigned char rk[32];
        char lerr[320];
        if (lazy_load(LAZY_REDIS, lerr, sizeof lerr) != 0) { /* hiredis: loaded only now */
            fprintf(stderr, "chatopenaii: CHATOPENAII_REDIS_URL: %s\n", lerr);
            serve_teardown(app);
            return 1;
        }
        app->redis = redis_new(app->base, cfg->redis_url);
        rc = crypto_hkdf(app->box_key, sizeof app->box_key, "coai/redis-keys/v1", rk);
        if (!app->redis || rc != 0 || ratelimit_use_redis(app->rl, app->redis, cfg->redis_url, rk)) {
            fprintf(stderr, "chatopenaii: cannot set up Redis (CHATOPENAII_REDIS_URL)\n");
            secure_wipe(rk, sizeof rk);
            serve_teardown(app);
            return 1;
        }
        secure_wipe(rk, sizeof rk);
    }
    if (cfg->tls_cert) { /* libssl and libevent_openssl: loaded only for TLS */
        char lerr[320];
        if (lazy_load(LAZY_SSL, lerr, sizeof lerr) != 0) {
            fprintf(stderr, "chatopenaii: CHATOPENAII_TLS_CERT: %s\n", lerr);
            serve_teardown(app);
            return 1;
        }
    }
    metrics_init();
    metrics_loop_lag_start(app->base);
    /* One store connection at start (the one above, taken over by worker
     * 0); the other workers open theirs when load first needs them. */
    app->pool = pool_new_lazy(app->base, cfg->workers, 1, worker_init, worker_fini, app);
    if (!app->pool) {
        fprintf(stderr, "chatopenaii: cannot start workers (CHATOPENAII_DATABASE_URL)\n");
        serve_teardown(app);
        return 1;
    }
    gateway_new(app);
    char err[256];
    if (sentry_init(app, err, sizeof err) != 0) {
        fprintf(stderr, "chatopenaii: %s\n", err);
        serve_teardown(app);
        return 2;
    }
    if (http_server_start(app, err, sizeof err) != 0) {
        fprintf(stderr, "chatopenaii: %s\n", err);
        serve_teardown(app);
        return 1;
    }
    app->sig_term = evsignal_new(app->base, SIGTERM, on_signal, app);
    app->sig_int = evsignal_new(app->base, SIGINT, on_signal, app);
    event_add(app->sig_term, NULL);
    event_add(app->sig_int, NULL);
    app->sig_hup = evsignal_new(app->base, SIGHUP, on_sighup, app);
    event_add(app->sig_hup, NULL);
    app->housekeeping = event_new(app->base, -1, EV_PERSIST, on_housekeeping, app);
    struct timeval hk = {3600, 0};
    event_add(app->housekeeping, &hk);
    app->memtrim = event_new(app->base, -1, EV_PERSIST, on_memtrim, app);
    struct timeval mt = {2, 0};
    event_add(app->memtrim, &mt);

    char port[16], workers[16];
    snprintf(port, sizeof port, "=%d", app->port);
    snprintf(workers, sizeof workers, "=%d", cfg->workers);
    log_info("listening", "host", cfg->listen_host, "port", port, "workers", workers, "store",
             backend, "provider", cfg->provider_base_url, "default_key",
             cfg->provider_api_key ? "=true" : "=false", NULL);

    event_base_dispatch(app->base);

    serve_teardown(app);
    log_info("stopped", NULL);
    return 0;
}

/* ---- admin --------------------------------------------------------------------- */

static const char *arg_value(int argc, char **argv, const char *name)
{
    for (int i = 0; i < argc - 1; i++)
        if (strcmp(argv[i], name) == 0)
            return argv[i + 1];
    return NULL;
}

static bool arg_flag(int argc, char **argv, const char *name)
{
    for (int i = 0; i < argc; i++)
        if (strcmp(argv[i], name) == 0)
            return true;
    return false;
}

static int cmd_create_user(struct app *app, int argc, char **argv)
{
    const char *email = arg_value(argc, argv, "--email");
    const char *name = arg_value(argc, argv, "--name");
    const char *pw = arg_value(argc, argv, "--password");
    char line[1100];
    if (!pw && arg_flag(argc, argv, "--password-stdin")) {
        if (!fgets(line, sizeof line, stdin)) {
            fprintf(stderr, "chatopenaii: no password on stdin\n");
            return 2;
        }
        line[strcspn(line, "\r\n")] = '\0';
        pw = line;
    }
    if (!email || !pw) {
        usage(stderr);
        return 2;
    }
    if (strlen(pw) < 8) {
        fprintf(stderr, "chatopenaii: password must be at least 8 characters\n");
        return 2;
    }
    if (!strchr(email, '@')) {
        fprintf(stderr, "chatopenaii: --email is not a valid address\n");
        return 2;
    }
    struct store *st = open_store(&app->cfg);
    if (!st || migrate(st) != 0) {
        store_close(st);
        return 1;
    }
    struct store_user u;
    memset(&u, 0, sizeof u);
    if (crypto_password_hash(pw, &u.password_hash) != 0) {
        store_close(st);
        return 1;
    }
    u.email = (char *)email;
    u.name = (char *)name;
    u.is_admin = arg_flag(argc, argv, "--admin");
    enum app_err e = store_user_create(st, &u, true);
    u.email = u.name = NULL;
    int rc = 0;
    if (e == APP_ECONFLICT) {
        fprintf(stderr, "chatopenaii: a user with this email already exists\n");
        rc = 1;
    } else if (e != APP_OK) {
        fprintf(stderr, "chatopenaii: cannot create user: %s\n", store_errmsg(st));
        rc = 1;
    } else {
        struct store_user got;
        memset(&got, 0, sizeof got);
        (void)store_user_get(st, u.id, &got);
        printf("created user %s (%s)%s\n", u.id, email, got.is_admin ? " as admin" : "");
        store_user_clear(&got);
    }
    store_user_clear(&u);
    store_close(st);
    return rc;
}

static int cmd_rotate(struct app *app, int argc, char **argv)
{
    unsigned char oldk[32], newk[32], oldbox[32], newbox[32];
    int oldv, newv;
    bool from_file;
    char err[256];
    if (master_key_get(&app->cfg, oldk, &from_file) != 0)
        return 1;
    const char *given = arg_value(argc, argv, "--new-key");
    if (given) {
        if (crypto_master_key_parse(given, newk, err, sizeof err) != 0) {
            fprintf(stderr, "chatopenaii: --new-key: %s\n", err);
            return 2;
        }
    } else if (crypto_random(newk, sizeof newk) != 0) {
        return 1;
    }
    if (derive_keys(oldk, oldbox, &oldv) || derive_keys(newk, newbox, &newv))
        return 1;
    if (oldv == newv) {
        fprintf(stderr, "chatopenaii: the new master key equals the current one\n");
        return 2;
    }
    char hex[65];
    if (crypto_hex_encode(newk, 32, hex, sizeof hex) != 0)
        return 1;
    char *path = xasprintf("%s/master.key", app->cfg.data_dir);
    char *tmp = xasprintf("%s/master.key.new", app->cfg.data_dir);
    if (from_file) {
        /* Write the new key before touching the database, so no moment
         * exists where the rows are sealed with a key that is nowhere. */
        unlink(tmp);
        FILE *f = NULL;
        int fd = open(tmp, O_WRONLY | O_CREAT | O_EXCL, 0600);
        if (fd >= 0)
            f = fdopen(fd, "w");
        if (!f || fprintf(f, "%s\n", hex) < 0 || fflush(f) != 0 || fsync(fileno(f)) != 0) {
            fprintf(stderr, "chatopenaii: cannot write %s\n", tmp);
            if (f)
                fclose(f);
            return 1;
        }
        fclose(f);
    }
    struct store *st = open_store(&app->cfg);
    if (!st || migrate(st) != 0) {
        store_close(st);
        return 1;
    }
    struct store_conn *list = NULL;
    size_t n = 0;
    enum app_err e = store_begin(st);
    if (e == APP_OK)
        e = store_conn_list_all(st, &list, &n);
    size_t done = 0;
    for (size_t i = 0; e == APP_OK && i < n; i++) {
        struct store_conn *c = &list[i];
        if (!c->key_ct || !c->key_ct_len)
            continue;
        if (c->key_version != oldv) {
            fprintf(stderr, "chatopenaii: connection %s is sealed with another master key\n", c->id);
            e = APP_ECRYPTO;
            break;
        }
        char *aad = xasprintf("chatopenaii/provider-key|%s|%s", c->owner_id, c->id);
        char *plain = NULL;
        size_t plen = 0;
        unsigned char *ct = NULL;
        size_t ctlen = 0;
        if (crypto_box_open(oldbox, aad, strlen(aad), c->key_ct, c->key_ct_len, &plain, &plen) ||
            crypto_box_seal(newbox, aad, strlen(aad), plain, plen, &ct, &ctlen)) {
            fprintf(stderr, "chatopenaii: connection %s does not decrypt\n", c->id);
            e = APP_ECRYPTO;
        } else {
            e = store_conn_set_key(st, c->id, ct, ctlen, newv);
            done++;
        }
        if (plain) {
            secure_wipe(plain, plen);
            free(plain);
        }
        free(ct);
        free(aad);
    }
    store_conn_list_free(list, n);
    /* the key pool too: same box, bound to the pool row */
    struct store_pool_key *keys = NULL;
    size_t nk = 0;
    if (e == APP_OK)
        e = store_pool_key_list(st, &keys, &nk);
    for (size_t i = 0; e == APP_OK && i < nk; i++) {
        struct store_pool_key *k = &keys[i];
        if (!k->key_ct || !k->key_ct_len)
            continue;
        if (k->key_version != oldv) {
            fprintf(stderr, "chatopenaii: pool key %s is sealed with another master key\n", k->id);
            e = APP_ECRYPTO;
            break;
        }
        char *aad = xasprintf("chatopenaii/pool-key|%s", k->id);
        char *plain = NULL;
        size_t plen = 0;
        unsigned char *ct = NULL;
        size_t ctlen = 0;
        if (crypto_box_open(oldbox, aad, strlen(aad), k->key_ct, k->key_ct_len, &plain, &plen) ||
            crypto_box_seal(newbox, aad, strlen(aad), plain, plen, &ct, &ctlen)) {
            fprintf(stderr, "chatopenaii: pool key %s does not decrypt\n", k->id);
            e = APP_ECRYPTO;
        } else {
            e = store_pool_key_set_key(st, k->id, ct, ctlen, newv, NULL);
            done++;
        }
        if (plain) {
            secure_wipe(plain, plen);
            free(plain);
        }
        free(ct);
        free(aad);
    }
    store_pool_key_list_free(keys, nk);
    if (e == APP_OK)
        e = store_commit(st);
    else
        store_rollback(st);
    store_close(st);
    int rc = 0;
    if (e != APP_OK) {
        fprintf(stderr, "chatopenaii: rotation failed; nothing was changed\n");
        if (from_file)
            unlink(tmp);
        rc = 1;
    } else {
        printf("re-encrypted %zu provider key(s)\n", done);
        if (from_file) {
            if (rename(tmp, path) != 0) {
                fprintf(stderr, "chatopenaii: keys were re-encrypted but %s could not replace %s;"
                                " move it into place before starting the server\n", tmp, path);
                rc = 1;
            } else {
                printf("the new master key is in %s\n", path);
            }
        } else if (!given) {
            printf("set CHATOPENAII_MASTER_KEY=%s before the next start\n", hex);
        } else {
            printf("set CHATOPENAII_MASTER_KEY to the new key before the next start\n");
        }
    }
    secure_wipe(hex, sizeof hex);
    secure_wipe(oldk, 32);
    secure_wipe(newk, 32);
    secure_wipe(oldbox, 32);
    secure_wipe(newbox, 32);
    free(path);
    free(tmp);
    return rc;
}

int main(int argc, char **argv)
{
    if (argc < 2) {
        usage(stderr);
        return 2;
    }
    const char *cmd = argv[1];
    if (strcmp(cmd, "version") == 0) {
        printf("chatopenaii 0.1.0\n");
        return 0;
    }
    if (strcmp(cmd, "routes") == 0) {
        for (size_t i = 0; i < api_routes_count; i++)
            printf("%s %s\n", api_routes[i].method, api_routes[i].pattern);
        return 0;
    }
    if (strcmp(cmd, "help") == 0 || strcmp(cmd, "--help") == 0) {
        usage(stdout);
        return 0;
    }
    signal(SIGPIPE, SIG_IGN);
    umask(077); /* the database, its WAL and the master key are private */
    if (strcmp(cmd, "migrate-store") == 0) /* offline; needs no configuration */
        return migrate_store_main(argc - 2, argv + 2);
    struct app app;
    memset(&app, 0, sizeof app);
    char err[512];
    if (config_load(&app.cfg, err, sizeof err) != 0) {
        fprintf(stderr, "chatopenaii: invalid configuration: %s\n", err);
        config_cleanup(&app.cfg);
        return 2;
    }
    log_set_level((enum log_level)app.cfg.log_level);
    if (mkdir_p(app.cfg.data_dir) != 0) {
        fprintf(stderr, "chatopenaii: CHATOPENAII_DATA_DIR: cannot create %s: %s\n",
                app.cfg.data_dir, strerror(errno));
        config_cleanup(&app.cfg);
        return 2;
    }
    int rc;
    if (strcmp(cmd, "serve") == 0) {
        rc = cmd_serve(&app);
    } else if (strcmp(cmd, "migrate") == 0) {
        struct store *st = open_store(&app.cfg);
        rc = (st && migrate(st) == 0) ? 0 : 1;
        if (rc == 0)
            printf("schema version %d\n", store_schema_version(st));
        store_close(st);
    } else if (strcmp(cmd, "admin") == 0 && argc >= 3 && strcmp(argv[2], "create-user") == 0) {
        rc = cmd_create_user(&app, argc - 3, argv + 3);
    } else if (strcmp(cmd, "admin") == 0 && argc >= 3 &&
               strcmp(argv[2], "rotate-master-key") == 0) {
        rc = cmd_rotate(&app, argc - 3, argv + 3);
    } else {
        usage(stderr);
        rc = 2;
    }
    lazy_cleanup(); /* curl_global_cleanup, if a provider request loaded libcurl */
    config_cleanup(&app.cfg);
    return rc;
}
