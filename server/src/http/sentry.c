/* sentry.c - see sentry.h. Envelopes go out through the provider HTTP
 * client on the loop (auth in the query string, so no extra headers). The
 * crash handler only uses async-signal-safe calls: it writes an envelope
 * prepared at start to <data dir>/crash.envelope and re-raises; the next
 * start sends it. */
#include "sentry.h"

#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "../lib/buf.h"
#include "../lib/crypto.h"
#include "../lib/log.h"
#include "../lib/ratelimit.h"
#include "../llm/provider.h"

static char *g_url;          /* https://host/api/<project>/envelope/?sentry_key=..&sentry_version=7 */
static char *g_dsn_public;   /* the DSN without its secret part */
static char *g_crash_path;
static char g_crash_head[1024];
static size_t g_crash_head_len;
static const char *g_env = "development";
static struct ratelimit *g_rl;

bool sentry_enabled(void)
{
    return g_url != NULL;
}

static void event_id(char out[33])
{
    unsigned char b[16];
    if (crypto_random(b, sizeof b) != 0)
        memset(b, 0, sizeof b);
    if (crypto_hex_encode(b, sizeof b, out, 33) != 0)
        out[0] = '\0';
}

static void iso_now(char *out, size_t n)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    struct tm tm;
    gmtime_r(&ts.tv_sec, &tm);
    strftime(out, n, "%Y-%m-%dT%H:%M:%SZ", &tm);
}

static void sent_cb(void *arg, long status, const char *body, size_t len, const char *err)
{
    if (status < 200 || status >= 300) {
        char st[16];
        snprintf(st, sizeof st, "=%ld", status);
        log_warn("sentry envelope not accepted", "status", st, "detail", err ? err : "", NULL);
    }
}

static void post_envelope(struct app *app, const char *envelope)
{
    struct provider_conn pc = {.base_url = g_url, .api_key = NULL};
    provider_fetch(app, &pc, "", envelope, sent_cb, NULL);
}

void sentry_capture(struct app *app, const char *level, const char *message, json_t *tags)
{
    if (!g_url || app->shutting_down || !ratelimit_take(g_rl, "sentry", 60, NULL)) {
        json_decref(tags);
        return;
    }
    char id[33], when[32];
    event_id(id);
    iso_now(when, sizeof when);
    json_t *ev = json_pack("{s:s,s:s,s:s,s:s,s:s,s:s,s:s,s:{s:s},s:o}", "event_id", id,
                           "timestamp", when, "platform", "c", "level", level, "logger",
                           "chatopenaii", "release", "chatopenaii@0.1.0", "environment", g_env,
                           "message", "formatted", message, "tags", tags ? tags : json_object());
    char *evs = json_dumps(ev, JSON_COMPACT);
    json_decref(ev);
    char *env = xasprintf("{\"event_id\":\"%s\",\"sent_at\":\"%s\",\"dsn\":\"%s\"}\n"
                          "{\"type\":\"event\",\"length\":%zu}\n%s\n",
                          id, when, g_dsn_public, strlen(evs), evs);
    free(evs);
    post_envelope(app, env);
    free(env);
}

/* ---- crashes ---------------------------------------------------------------------- */

static void crash_handler(int sig)
{
    int fd = open(g_crash_path, O_WRONLY | O_CREAT | O_TRUNC, 0600);
    if (fd >= 0) {
        ssize_t w = write(fd, g_crash_head, g_crash_head_len);
        const char *name = sig == SIGSEGV ? "SIGSEGV" : sig == SIGBUS ? "SIGBUS"
                           : sig == SIGFPE ? "SIGFPE" : sig == SIGILL ? "SIGILL" : "SIGABRT";
        w = write(fd, name, strlen(name));
        w = write(fd, "\"}}\n", 4);
        (void)w;
        close(fd);
    }
    signal(sig, SIG_DFL);
    raise(sig);
}

static void send_pending_crash(struct app *app)
{
    int fd = open(g_crash_path, O_RDONLY);
    if (fd < 0)
        return;
    char buf[4096];
    ssize_t n = read(fd, buf, sizeof buf - 1);
    close(fd);
    unlink(g_crash_path);
    if (n <= 0)
        return;
    buf[n] = '\0';
    /* the file is the event JSON line; wrap it in an envelope */
    char *nl = strchr(buf, '\n');
    if (nl)
        *nl = '\0';
    char id[33], when[32];
    event_id(id);
    iso_now(when, sizeof when);
    char *env = xasprintf("{\"event_id\":\"%s\",\"sent_at\":\"%s\",\"dsn\":\"%s\"}\n"
                          "{\"type\":\"event\",\"length\":%zu}\n%s\n",
                          id, when, g_dsn_public, strlen(buf), buf);
    post_envelope(app, env);
    free(env);
    log_warn("reported the crash of the previous run", NULL);
}

int sentry_init(struct app *app, char *err, size_t errlen)
{
    const char *dsn = app->cfg.sentry_dsn;
    g_env = app->cfg.env == ENV_PRODUCTION ? "production"
            : app->cfg.env == ENV_STAGING  ? "staging"
                                           : "development";
    if (!dsn)
        return 0;
    /* scheme://public_key[:secret]@host[:port][/path]/project_id */
    const char *se = strstr(dsn, "://");
    const char *at = se ? strchr(se + 3, '@') : NULL;
    const char *last = strrchr(dsn, '/');
    if (!se || !at || !last || last < at || !last[1]) {
        snprintf(err, errlen, "CHATOPENAII_SENTRY_DSN must look like https://key@host/project");
        return -1;
    }
    const char *keyp = se + 3;
    size_t kl = strcspn(keyp, ":@");
    char *key = xstrndup(keyp, kl);
    const char *host = at + 1;
    char *hostpath = xstrndup(host, (size_t)(last - host)); /* host[:port][/path] */
    char *project = xstrdup(last + 1);
    g_url = xasprintf("%.*s%s/api/%s/envelope/?sentry_key=%s&sentry_version=7&sentry_client="
                      "chatopenaii%%2F0.1.0",
                      (int)(se + 3 - dsn), dsn, hostpath, project, key);
    g_dsn_public = xasprintf("%.*s%s@%s/%s", (int)(se + 3 - dsn), dsn, key, hostpath, project);
    free(key);
    free(hostpath);
    free(project);
    g_rl = ratelimit_new();

    g_crash_path = xasprintf("%s/crash.envelope", app->cfg.data_dir);
    char id[33];
    event_id(id);
    int n = snprintf(g_crash_head, sizeof g_crash_head,
                     "{\"event_id\":\"%s\",\"platform\":\"c\",\"level\":\"fatal\",\"logger\":"
                     "\"chatopenaii\",\"release\":\"chatopenaii@0.1.0\",\"environment\":\"%s\","
                     "\"message\":{\"formatted\":\"the server crashed\"},\"tags\":{\"signal\":\"",
                     id, g_env);
    g_crash_head_len = n > 0 && (size_t)n < sizeof g_crash_head ? (size_t)n : 0;
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = crash_handler;
    sigemptyset(&sa.sa_mask);
    sa.sa_flags = SA_RESETHAND;
    int sigs[] = {SIGSEGV, SIGBUS, SIGFPE, SIGILL, SIGABRT};
    for (size_t i = 0; i < sizeof sigs / sizeof sigs[0]; i++)
        sigaction(sigs[i], &sa, NULL);
    send_pending_crash(app);
    return 0;
}

void sentry_cleanup(void)
{
    free(g_url);
    free(g_dsn_public);
    free(g_crash_path);
    ratelimit_free(g_rl);
    g_url = g_dsn_public = g_crash_path = NULL;
    g_rl = NULL;
}
