/* metrics.c - see metrics.h. Series are few (routes x methods x statuses),
 * kept in a string map keyed by their label set. */
#include "metrics.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <sys/timerfd.h>
#include <time.h>
#include <unistd.h>

#include <event2/event.h>

#include "../lib/buf.h"
#include "../lib/strmap.h"
#include "http.h"
#include "../llm/turn.h"
#include "sse.h"
#include "respcache.h"

static const double bounds[] = {0.0005, 0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10};
#define NB (sizeof bounds / sizeof bounds[0])

struct req_series {
    char *labels;      /* route="...",method="...",status="..." */
    uint64_t count;
};

struct hist {
    char *labels;      /* route="...",method="..." */
    uint64_t buckets[NB];
    uint64_t count;
    double sum;
};

static struct strmap *g_req, *g_hist, *g_perr;
static uint64_t g_prompt, g_completion;

/* Event-loop lag: a kernel timer (timerfd, CLOCK_MONOTONIC) expires every
 * LAG_PERIOD_US; its fd is watched by the loop like any socket, and each
 * expiry records how long after it was due the loop got to it. That is the
 * wait any ready socket sees. A libevent timer would not do: libevent times
 * them with the coarse monotonic clock, so even an idle loop would show up
 * to one kernel tick (4 ms) of "lag". Expiries missed while the loop was
 * stuck are each recorded with their own lateness (a 50 ms stall gives
 * 50, 40, 30, 20, 10 ms), so the histogram is the lag of a moment taken at
 * random, not of one sample per stall. 10 ms: 100 samples a second give a
 * p99 worth reading within seconds, and an idle server pays 100 cheap
 * wake-ups a second. The bounds are fine below 10 ms, where it matters. */
#define LAG_PERIOD_US 10000
static const double lag_bounds[] = {0.0001, 0.00025, 0.0005, 0.001, 0.002, 0.003, 0.005, 0.0075,
                                    0.01,   0.015,   0.02,   0.03,  0.05,  0.1,   0.25,  0.5,
                                    1,      2.5};
#define NLB (sizeof lag_bounds / sizeof lag_bounds[0])
static struct {
    int fd;
    struct event *ev;
    int64_t due_us;             /* monotonic time the next expiry is due */
    uint64_t buckets[NLB];
    uint64_t count;
    double sum;                 /* s */
    double max;                 /* s, since start */
} g_lag = {.fd = -1};

void metrics_init(void)
{
    g_req = strmap_new();
    g_hist = strmap_new();
    g_perr = strmap_new();
}

static void free_series(void *p)
{
    struct req_series *s = p;
    free(s->labels);
    free(s);
}

static void free_hist(void *p)
{
    struct hist *h = p;
    free(h->labels);
    free(h);
}

static void lag_record(double secs)
{
    for (size_t i = 0; i < NLB; i++)
        if (secs <= lag_bounds[i])
            g_lag.buckets[i]++;
    g_lag.count++;
    g_lag.sum += secs;
    if (secs > g_lag.max)
        g_lag.max = secs;
}

static void on_lag_timer(evutil_socket_t fd, short what, void *arg)
{
    uint64_t n = 0;
    if (read(fd, &n, sizeof n) != (ssize_t)sizeof n)
        return; /* EAGAIN: nothing expired after all */
    int64_t now = mono_us();
    for (uint64_t i = 0; i < n; i++) {
        int64_t late = now - g_lag.due_us;
        lag_record(late > 0 ? (double)late / 1e6 : 0);
        g_lag.due_us += LAG_PERIOD_US;
    }
}

void metrics_loop_lag_start(struct event_base *base)
{
    if (g_lag.ev)
        return;
    g_lag.fd = timerfd_create(CLOCK_MONOTONIC, TFD_NONBLOCK | TFD_CLOEXEC);
    if (g_lag.fd < 0)
        return; /* no metric rather than no server */
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    int64_t first = (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000 + LAG_PERIOD_US;
    struct itimerspec its = {.it_interval = {0, LAG_PERIOD_US * 1000L},
                             .it_value = {first / 1000000, (first % 1000000) * 1000}};
    g_lag.due_us = first;
    g_lag.ev = event_new(base, g_lag.fd, EV_READ | EV_PERSIST, on_lag_timer, NULL);
    if (timerfd_settime(g_lag.fd, TFD_TIMER_ABSTIME, &its, NULL) != 0 || !g_lag.ev ||
        event_add(g_lag.ev, NULL) != 0) {
        if (g_lag.ev)
            event_free(g_lag.ev);
        g_lag.ev = NULL;
        close(g_lag.fd);
        g_lag.fd = -1;
    }
}

void metrics_cleanup(void)
{
    if (g_lag.ev)
        event_free(g_lag.ev);
    if (g_lag.fd >= 0)
        close(g_lag.fd);
    memset(&g_lag, 0, sizeof g_lag);
    g_lag.fd = -1;
    strmap_free(g_req, free_series);
    strmap_free(g_hist, free_hist);
    strmap_free(g_perr, free_series);
    g_req = g_hist = g_perr = NULL;
}

/* Label values are our own route patterns and method names, but escape anyway. */
static char *esc(const char *s)
{
    struct buf b;
    buf_init(&b, 1024);
    for (; *s; s++) {
        if (*s == '"' || *s == '\\')
            (void)buf_append(&b, "\\", 1);
        if (*s == '\n')
            (void)buf_append(&b, "\\n", 2);
        else
            (void)buf_append(&b, s, 1);
    }
    return buf_take(&b, NULL);
}

/* Escaped route into out (cap bytes); the route patterns are ours and short,
 * a longer one is cut. */
static void esc_into(char *out, size_t cap, const char *s)
{
    size_t n = 0;
    for (; *s && n + 3 < cap; s++) {
        if (*s == '"' || *s == '\\') {
            out[n++] = '\\';
            out[n++] = *s;
        } else if (*s == '\n') {
            out[n++] = '\\';
            out[n++] = 'n';
        } else {
            out[n++] = *s;
        }
    }
    out[n] = '\0';
}

/* Called for every request: keys are built on the stack (no allocation
 * unless the series is new). */
void metrics_request(const char *route, const char *method, int status, int64_t duration_us)
{
    if (!g_req)
        return;
    char r[256], key[384];
    esc_into(r, sizeof r, route);
    snprintf(key, sizeof key, "route=\"%s\",method=\"%s\",status=\"%d\"", r, method, status);
    struct req_series *s = strmap_get(g_req, key);
    if (!s) {
        s = xcalloc(1, sizeof *s);
        s->labels = xstrdup(key);
        strmap_put(g_req, key, s);
    }
    s->count++;
    snprintf(key, sizeof key, "route=\"%s\",method=\"%s\"", r, method);
    struct hist *h = strmap_get(g_hist, key);
    if (!h) {
        h = xcalloc(1, sizeof *h);
        h->labels = xstrdup(key);
        strmap_put(g_hist, key, h);
    }
    double secs = (double)duration_us / 1e6;
    for (size_t i = 0; i < NB; i++)
        if (secs <= bounds[i])
            h->buckets[i]++;
    h->count++;
    h->sum += secs;
}

void metrics_provider_error(const char *code)
{
    if (!g_perr)
        return;
    char *c = esc(code ? code : "unknown");
    char *key = xasprintf("code=\"%s\"", c);
    free(c);
    struct req_series *s = strmap_get(g_perr, key);
    if (!s) {
        s = xcalloc(1, sizeof *s);
        s->labels = xstrdup(key);
        strmap_put(g_perr, key, s);
    }
    s->count++;
    free(key);
}

void metrics_tokens(int64_t prompt, int64_t completion)
{
    g_prompt += (uint64_t)(prompt > 0 ? prompt : 0);
    g_completion += (uint64_t)(completion > 0 ? completion : 0);
}

struct render_ctx {
    struct buf *b;
    const char *name;
};

static bool render_counter(const char *key, void *value, void *arg)
{
    struct render_ctx *rc = arg;
    struct req_series *s = value;
    (void)buf_printf(rc->b, "%s{%s} %llu\n", rc->name, s->labels, (unsigned long long)s->count);
    return false;
}

static bool render_hist(const char *key, void *value, void *arg)
{
    struct render_ctx *rc = arg;
    struct hist *h = value;
    for (size_t i = 0; i < NB; i++)
        (void)buf_printf(rc->b, "coai_http_request_duration_seconds_bucket{%s,le=\"%g\"} %llu\n",
                         h->labels, bounds[i], (unsigned long long)h->buckets[i]);
    (void)buf_printf(rc->b, "coai_http_request_duration_seconds_bucket{%s,le=\"+Inf\"} %llu\n",
                     h->labels, (unsigned long long)h->count);
    (void)buf_printf(rc->b, "coai_http_request_duration_seconds_sum{%s} %.6f\n", h->labels,
                     h->sum);
    (void)buf_printf(rc->b, "coai_http_request_duration_seconds_count{%s} %llu\n", h->labels,
                     (unsigned long long)h->count);
    return false;
}

static void render_lag(struct buf *b)
{
    (void)buf_append_str(b, "# HELP coai_loop_lag_seconds How long after a 10 ms kernel timer "
                            "expired the event loop ran it.\n# TYPE coai_loop_lag_seconds histogram\n");
    for (size_t i = 0; i < NLB; i++)
        (void)buf_printf(b, "coai_loop_lag_seconds_bucket{le=\"%g\"} %llu\n", lag_bounds[i],
                         (unsigned long long)g_lag.buckets[i]);
    (void)buf_printf(b,
                     "coai_loop_lag_seconds_bucket{le=\"+Inf\"} %llu\n"
                     "coai_loop_lag_seconds_sum %.6f\ncoai_loop_lag_seconds_count %llu\n"
                     "# HELP coai_loop_lag_max_seconds The largest loop lag seen since start.\n"
                     "# TYPE coai_loop_lag_max_seconds gauge\ncoai_loop_lag_max_seconds %.6f\n",
                     (unsigned long long)g_lag.count, g_lag.sum, (unsigned long long)g_lag.count,
                     g_lag.max);
}

void metrics_render(struct app *app, struct buf *b)
{
    struct render_ctx rc = {b, "coai_http_requests_total"};
    (void)buf_append_str(b, "# HELP coai_http_requests_total HTTP requests by route, method "
                            "and status.\n# TYPE coai_http_requests_total counter\n");
    strmap_sweep(g_req, render_counter, &rc);
    (void)buf_append_str(b, "# HELP coai_http_request_duration_seconds Request latency.\n"
                            "# TYPE coai_http_request_duration_seconds histogram\n");
    strmap_sweep(g_hist, render_hist, &rc);
    (void)buf_append_str(b, "# HELP coai_provider_errors_total Failed provider requests by "
                            "error code.\n# TYPE coai_provider_errors_total counter\n");
    rc.name = "coai_provider_errors_total";
    strmap_sweep(g_perr, render_counter, &rc);
    (void)buf_printf(b,
                     "# HELP coai_tokens_total Tokens used, by kind.\n"
                     "# TYPE coai_tokens_total counter\n"
                     "coai_tokens_total{kind=\"prompt\"} %llu\n"
                     "coai_tokens_total{kind=\"completion\"} %llu\n"
                     "# HELP coai_active_turns Answers being generated.\n"
                     "# TYPE coai_active_turns gauge\ncoai_active_turns %zu\n"
                     "# HELP coai_sse_subscribers Open event streams.\n"
                     "# TYPE coai_sse_subscribers gauge\ncoai_sse_subscribers %d\n"
                     "# HELP coai_uptime_seconds Seconds since start.\n"
                     "# TYPE coai_uptime_seconds gauge\ncoai_uptime_seconds %lld\n",
                     (unsigned long long)g_prompt, (unsigned long long)g_completion,
                     turns_active(app), sse_conn_count(),
                     (long long)((now_ms() - app->started_ms) / 1000));
    render_lag(b);
    (void)buf_printf(b,
                     "# HELP coai_respcache_hits_total Answers sent from the loop's kept answers.\n"
                     "# TYPE coai_respcache_hits_total counter\ncoai_respcache_hits_total %llu\n"
                     "# HELP coai_respcache_bytes Bytes held by kept answers.\n"
                     "# TYPE coai_respcache_bytes gauge\ncoai_respcache_bytes %zu\n",
                     (unsigned long long)respcache_hits(app->respcache),
                     respcache_bytes(app->respcache));
    (void)buf_printf(b,
                     "# HELP coai_accept_pauses_total Turns of the loop that stopped accepting "
                     "after the most new connections one turn takes.\n"
                     "# TYPE coai_accept_pauses_total counter\ncoai_accept_pauses_total %llu\n",
                     (unsigned long long)http_accept_pauses());
}
