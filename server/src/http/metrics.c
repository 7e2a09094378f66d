/* metrics.c - see metrics.h. Series are few (routes x methods x statuses),
 * kept in a string map keyed by their label set. */
#include "metrics.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../lib/buf.h"
#include "../lib/strmap.h"
#include "../llm/turn.h"
#include "sse.h"

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

void metrics_cleanup(void)
{
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
}
