/* client.c - the load generator of bench/turns. Against one ChatOpenAII
 * server (whose provider is upstream.c) it
 *   1. registers one user and creates NTURNS chats (CONC requests at once),
 *   2. reads /metrics (loop-lag histogram before) and the CPU times so far,
 *   3. starts NTURNS turns at once (POST /api/v1/chats/{id}/messages, 202),
 *      follows each turn's event stream (GET events_url) and reads every
 *      event to "done", decoding each delta and keeping the text,
 *   4. reads /metrics and the CPU times again,
 *   5. reads every chat's messages back from the store (GET
 *      /api/v1/chats/{id}/messages) and checks the answer is "complete" with
 *      exactly the text content.h says the provider sent (and the stream
 *      showed),
 * and prints key=value lines (see the end of main) that run.sh reports.
 *
 * Why libcurl multi on epoll in C: NTURNS long streams at once on a 2-core
 * machine that also runs the server and the fake provider; one thread, no
 * garbage collector, and its own CPU is reported so the reader can see it
 * is not the bottleneck. While the turns run it samples the server's CPU
 * and the deltas received once a second, for a steady-state figure that
 * leaves the start and the end out.
 *
 * Usage: client BASE_URL NTURNS NCHUNKS SERVER_PID UPSTREAM_PID [CONC]
 */
#define _GNU_SOURCE
#include <curl/curl.h>
#include <errno.h>
#include <jansson.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <time.h>
#include <unistd.h>

#include "content.h"

#define TURN_TIMEOUT_S 90

enum kind { K_REGISTER, K_CHAT, K_POST, K_EVENTS, K_VERIFY, K_METRICS };

struct sbuf {
    char *p;
    size_t len, cap;
};

static void sbuf_add(struct sbuf *b, const char *p, size_t n)
{
    if (b->len + n + 1 > b->cap) {
        b->cap = (b->len + n + 1) * 2;
        b->p = realloc(b->p, b->cap);
    }
    memcpy(b->p + b->len, p, n);
    b->len += n;
    b->p[b->len] = 0;
}

struct turn {
    unsigned n;
    char chat_id[40];
    char events_url[128];
    struct sbuf text;     /* the deltas' content, in order */
    struct sbuf line;     /* partial SSE line */
    char event[32];
    struct sbuf data;
    long long last_id;
    unsigned deltas;
    bool done, failed;
    char status[24];
    int64_t t_post, t_first, t_done;
    char err[160];
};

struct xfer {
    CURL *e;
    enum kind kind;
    struct turn *t;
    struct sbuf body;
    struct curl_slist *hdrs;
};

static CURLM *multi;
static int ep;
static int64_t deadline_us = -1;
static int running;
static const char *base;
static char cookie[256];
static struct turn *turns;
static unsigned nturns, nchunks;
static int server_pid, upstream_pid;
static unsigned long long deltas_total;
static unsigned streams_done;
static struct sbuf metrics_text;

static int64_t now_us(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

/* utime + stime of a process, in clock ticks. */
static long long proc_ticks(int pid)
{
    char path[64], buf[1024];
    snprintf(path, sizeof path, "/proc/%d/stat", pid);
    FILE *f = fopen(path, "r");
    if (!f)
        return -1;
    size_t n = fread(buf, 1, sizeof buf - 1, f);
    fclose(f);
    buf[n] = 0;
    char *p = strrchr(buf, ')');
    if (!p)
        return -1;
    unsigned long long ut = 0, st = 0;
    /* after ") ": state(3) ppid pgrp session tty tpgid flags minflt cminflt majflt cmajflt utime(14) stime(15) */
    if (sscanf(p + 2, "%*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %llu %llu", &ut, &st) != 2)
        return -1;
    return (long long)(ut + st);
}

/* Busy CPU time of the whole machine (every core, every process), ticks. */
static long long machine_busy_ticks(void)
{
    unsigned long long v[8] = {0};
    FILE *f = fopen("/proc/stat", "r");
    if (!f)
        return -1;
    int n = fscanf(f, "cpu %llu %llu %llu %llu %llu %llu %llu %llu", &v[0], &v[1], &v[2], &v[3],
                   &v[4], &v[5], &v[6], &v[7]);
    fclose(f);
    if (n != 8)
        return -1;
    return (long long)(v[0] + v[1] + v[2] + v[5] + v[6] + v[7]); /* all but idle and iowait */
}

/* Run time and run-queue wait of a thread, s (/proc/.../schedstat: the time
 * it ran and the time it was ready but waited for a core). */
static bool sched_times(int pid, double *run, double *wait)
{
    char path[96];
    snprintf(path, sizeof path, "/proc/%d/task/%d/schedstat", pid, pid);
    FILE *f = fopen(path, "r");
    if (!f)
        return false;
    unsigned long long r = 0, w = 0;
    int n = fscanf(f, "%llu %llu", &r, &w);
    fclose(f);
    *run = (double)r / 1e9;
    *wait = (double)w / 1e9;
    return n == 2;
}

static double self_cpu_s(void)
{
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    return (double)ru.ru_utime.tv_sec + ru.ru_utime.tv_usec / 1e6 + ru.ru_stime.tv_sec +
           ru.ru_stime.tv_usec / 1e6;
}

/* ---- SSE of one turn -------------------------------------------------------- */

static void turn_fail(struct turn *t, const char *fmt, const char *arg)
{
    if (!t->failed)
        snprintf(t->err, sizeof t->err, fmt, arg);
    t->failed = true;
}

static void dispatch(struct turn *t)
{
    if (strcmp(t->event, "delta") == 0) {
        json_error_t je;
        json_t *d = json_loadb(t->data.p, t->data.len, 0, &je);
        json_t *c = json_object_get(d, "content");
        if (json_is_string(c)) {
            sbuf_add(&t->text, json_string_value(c), json_string_length(c));
            if (!t->deltas++)
                t->t_first = now_us();
            deltas_total++;
        } else {
            turn_fail(t, "a delta without content: %.100s", t->data.p ? t->data.p : "");
        }
        json_decref(d);
    } else if (strcmp(t->event, "done") == 0) {
        json_t *d = json_loadb(t->data.p, t->data.len, 0, NULL);
        snprintf(t->status, sizeof t->status, "%s",
                 json_string_value(json_object_get(d, "status")) ?: "?");
        json_decref(d);
        t->done = true;
        t->t_done = now_us();
        streams_done++;
    } else if (strcmp(t->event, "error") == 0) {
        turn_fail(t, "error event: %.120s", t->data.p ? t->data.p : "");
    }
    t->event[0] = 0;
    t->data.len = 0;
}

static void sse_line(struct turn *t, const char *l, size_t n)
{
    if (n == 0) {
        if (t->event[0] || t->data.len)
            dispatch(t);
        return;
    }
    if (n > 7 && memcmp(l, "event: ", 7) == 0) {
        size_t k = n - 7 < sizeof t->event - 1 ? n - 7 : sizeof t->event - 1;
        memcpy(t->event, l + 7, k);
        t->event[k] = 0;
    } else if (n >= 6 && memcmp(l, "data: ", 6) == 0) {
        if (t->data.len)
            sbuf_add(&t->data, "\n", 1);
        sbuf_add(&t->data, l + 6, n - 6);
    } else if (n > 4 && memcmp(l, "id: ", 4) == 0) {
        t->last_id = strtoll(l + 4, NULL, 10);
    }
}

static size_t on_events(char *p, size_t sz, size_t n, void *arg)
{
    struct xfer *x = arg;
    struct turn *t = x->t;
    size_t len = sz * n, i = 0;
    while (i < len) {
        char *nl = memchr(p + i, '\n', len - i);
        if (!nl) {
            sbuf_add(&t->line, p + i, len - i);
            break;
        }
        size_t k = (size_t)(nl - (p + i));
        if (t->line.len) {
            sbuf_add(&t->line, p + i, k);
            sse_line(t, t->line.p, t->line.len);
            t->line.len = 0;
        } else {
            sse_line(t, p + i, k);
        }
        i += k + 1;
    }
    return len;
}

static size_t on_body(char *p, size_t sz, size_t n, void *arg)
{
    struct xfer *x = arg;
    sbuf_add(&x->body, p, sz * n);
    return sz * n;
}

static size_t on_header(char *p, size_t sz, size_t n, void *arg)
{
    size_t len = sz * n;
    if (len > 12 && strncasecmp(p, "Set-Cookie: ", 12) == 0) {
        const char *v = p + 12, *semi = memchr(v, ';', len - 12);
        size_t k = semi ? (size_t)(semi - v) : len - 12;
        if (k < sizeof cookie - 9 && strncmp(v, "coai_session=", 13) == 0) {
            memcpy(cookie, "Cookie: ", 8);
            memcpy(cookie + 8, v, k);
            cookie[8 + k] = 0;
        }
    }
    return len;
}

/* ---- curl on epoll ------------------------------------------------------------ */

static int on_socket(CURL *e, curl_socket_t fd, int what, void *u, void *sp)
{
    struct epoll_event ev = {.data.fd = fd};
    if (what == CURL_POLL_REMOVE) {
        epoll_ctl(ep, EPOLL_CTL_DEL, fd, NULL);
        return 0;
    }
    ev.events = ((what & CURL_POLL_IN) ? EPOLLIN : 0) | ((what & CURL_POLL_OUT) ? EPOLLOUT : 0);
    if (!sp)
        curl_multi_assign(multi, fd, (void *)1);
    /* A socket curl closed left epoll with it, and its number may come back
     * for a new connection that curl still knows (sp set): MOD then fails
     * with ENOENT. The server closing kept-alive connections after an event
     * stream, then reused for the reads of step 5, did exactly that, and the
     * reads waited for ever. */
    if (epoll_ctl(ep, sp ? EPOLL_CTL_MOD : EPOLL_CTL_ADD, fd, &ev) != 0) {
        if (errno == EEXIST)
            epoll_ctl(ep, EPOLL_CTL_MOD, fd, &ev);
        else if (errno == ENOENT)
            epoll_ctl(ep, EPOLL_CTL_ADD, fd, &ev);
    }
    return 0;
}

static int on_timer(CURLM *m, long ms, void *u)
{
    deadline_us = ms < 0 ? -1 : now_us() + ms * 1000;
    return 0;
}

static struct xfer *start(enum kind kind, struct turn *t, const char *method, const char *path,
                          const char *body)
{
    struct xfer *x = calloc(1, sizeof *x);
    char url[512];
    x->kind = kind;
    x->t = t;
    x->e = curl_easy_init();
    snprintf(url, sizeof url, "%s%s", base, path);
    curl_easy_setopt(x->e, CURLOPT_URL, url);
    curl_easy_setopt(x->e, CURLOPT_PRIVATE, x);
    curl_easy_setopt(x->e, CURLOPT_WRITEFUNCTION, kind == K_EVENTS ? on_events : on_body);
    curl_easy_setopt(x->e, CURLOPT_WRITEDATA, x);
    curl_easy_setopt(x->e, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(x->e, CURLOPT_TIMEOUT, (long)TURN_TIMEOUT_S);
    if (kind == K_EVENTS)
        /* The server closes an event stream's connection after "done":
         * closing it here too keeps it out of curl's cache, where a dead
         * connection's socket number, reused by a new one, once left a
         * read of step 5 with no socket in epoll (the bench hung). */
        curl_easy_setopt(x->e, CURLOPT_FORBID_REUSE, 1L);
    if (kind == K_VERIFY || kind == K_METRICS) {
        /* New connections for /metrics and the reads of step 5: the server
         * closes the ones the event streams used after "done" (CLOSE-WAIT
         * here), and reusing those sometimes left the reads waiting for
         * ever with no socket in epoll at all. */
        curl_easy_setopt(x->e, CURLOPT_FRESH_CONNECT, 1L);
        curl_easy_setopt(x->e, CURLOPT_FORBID_REUSE, 1L);
    }
    if (kind == K_REGISTER)
        curl_easy_setopt(x->e, CURLOPT_HEADERFUNCTION, on_header);
    x->hdrs = curl_slist_append(x->hdrs, "X-Requested-With: chatopenaii");
    x->hdrs = curl_slist_append(x->hdrs, "Content-Type: application/json");
    x->hdrs = curl_slist_append(x->hdrs, "Expect:");
    if (kind == K_EVENTS)
        x->hdrs = curl_slist_append(x->hdrs, "Accept: text/event-stream");
    if (cookie[0])
        x->hdrs = curl_slist_append(x->hdrs, cookie);
    curl_easy_setopt(x->e, CURLOPT_HTTPHEADER, x->hdrs);
    if (body) {
        curl_easy_setopt(x->e, CURLOPT_COPYPOSTFIELDS, body);
    }
    if (strcmp(method, "POST") == 0 && !body)
        curl_easy_setopt(x->e, CURLOPT_POSTFIELDS, "");
    curl_multi_add_handle(multi, x->e);
    running++;
    return x;
}

static void on_done(struct xfer *x, CURLcode rc, long status);

static void pump(int timeout_ms)
{
    struct epoll_event evs[256];
    int wait = timeout_ms;
    if (deadline_us >= 0) {
        int64_t d = deadline_us - now_us();
        int dm = d <= 0 ? 0 : (int)((d + 999) / 1000);
        if (wait < 0 || dm < wait)
            wait = dm;
    }
    int n = epoll_wait(ep, evs, 256, wait);
    int still;
    for (int i = 0; i < n; i++) {
        int a = ((evs[i].events & (EPOLLIN | EPOLLHUP | EPOLLERR)) ? CURL_CSELECT_IN : 0) |
                ((evs[i].events & EPOLLOUT) ? CURL_CSELECT_OUT : 0);
        curl_multi_socket_action(multi, evs[i].data.fd, a, &still);
    }
    if (deadline_us >= 0 && now_us() >= deadline_us) {
        deadline_us = -1;
        curl_multi_socket_action(multi, CURL_SOCKET_TIMEOUT, 0, &still);
    }
    /* A whole wait without any event: drive every transfer once. After the
     * server closed the kept-alive connections of the event streams, the
     * reads of step 5 (on new connections) sometimes waited with no socket
     * in epoll at all - curl never asked for the new socket with the number
     * of a closed one - and the bench hung; this finds them within a wait. */
    if (n == 0 && wait == timeout_ms)
        curl_multi_perform(multi, &still);
    CURLMsg *m;
    int left;
    while ((m = curl_multi_info_read(multi, &left))) {
        if (m->msg != CURLMSG_DONE)
            continue;
        struct xfer *x;
        long status = 0;
        CURLcode rc = m->data.result;
        curl_easy_getinfo(m->easy_handle, CURLINFO_PRIVATE, (char **)&x);
        curl_easy_getinfo(m->easy_handle, CURLINFO_RESPONSE_CODE, &status);
        curl_multi_remove_handle(multi, x->e);
        running--;
        on_done(x, rc, status);
        curl_easy_cleanup(x->e);
        curl_slist_free_all(x->hdrs);
        free(x->body.p);
        free(x);
    }
}

/* ---- the phases ------------------------------------------------------------------ */

static unsigned next_job, jobs_done, errors, metrics_gen;
static char first_error[256];

static void note_error(const char *fmt, const char *a, long b)
{
    if (!errors++)
        snprintf(first_error, sizeof first_error, fmt, a, b);
}

static void verify(struct turn *t, const char *body);

static void on_done(struct xfer *x, CURLcode rc, long status)
{
    struct turn *t = x->t;
    const char *body = x->body.p ? x->body.p : "";
    /* Only the jobs run_jobs (and the sign-up) wait for count: an event
     * stream can end after its "done" was read, during the reads of step 5,
     * and counting it there made jobs_done pass next_job - the unsigned
     * difference wrapped and no further read was started (the bench hung). */
    if (x->kind == K_REGISTER || x->kind == K_CHAT || x->kind == K_VERIFY)
        jobs_done++;
    if (x->kind == K_METRICS)
        metrics_gen++;
    switch (x->kind) {
    case K_REGISTER:
        if (status != 201 && status != 200)
            note_error("register: %s (HTTP %ld)", body, status);
        break;
    case K_METRICS:
        metrics_text.len = 0;
        sbuf_add(&metrics_text, body, x->body.len);
        if (status != 200)
            note_error("/metrics: %s (HTTP %ld)", body, status);
        break;
    case K_CHAT: {
        json_t *j = json_loads(body, 0, NULL);
        const char *id = json_string_value(json_object_get(json_object_get(j, "chat"), "id"));
        if (status == 201 && id)
            snprintf(t->chat_id, sizeof t->chat_id, "%s", id);
        else
            note_error("create chat: %s (HTTP %ld)", body, status);
        json_decref(j);
        break;
    }
    case K_POST: {
        json_t *j = json_loads(body, 0, NULL);
        const char *u = json_string_value(json_object_get(json_object_get(j, "turn"), "events_url"));
        if (status == 202 && u) {
            snprintf(t->events_url, sizeof t->events_url, "%s", u);
            start(K_EVENTS, t, "GET", t->events_url, NULL);
        } else {
            turn_fail(t, "POST message: %.120s", body);
            t->done = true;
            streams_done++;
        }
        json_decref(j);
        break;
    }
    case K_EVENTS:
        if (rc != CURLE_OK || status != 200)
            turn_fail(t, "event stream: %s", rc != CURLE_OK ? curl_easy_strerror(rc) : "not 200");
        if (!t->done) {
            turn_fail(t, "event stream ended without done%s", "");
            t->done = true;
            streams_done++;
        }
        break;
    case K_VERIFY:
        if (status != 200)
            turn_fail(t, "GET messages: %.120s", body);
        else
            verify(t, body);
        break;
    }
}

static void expected(unsigned n, struct sbuf *out)
{
    char piece[64];
    out->len = 0;
    for (unsigned i = 0; i < nchunks; i++) {
        size_t l = content_piece(n, i, piece, sizeof piece);
        sbuf_add(out, piece, l);
    }
}

static unsigned persisted_ok, streamed_ok;

static void verify(struct turn *t, const char *body)
{
    json_t *j = json_loads(body, 0, NULL);
    json_t *data = json_object_get(j, "data"), *m, *am = NULL;
    size_t i;
    json_array_foreach(data, i, m) if (strcmp(json_string_value(json_object_get(m, "role")) ?: "",
                                              "assistant") == 0) am = m;
    static struct sbuf want;
    expected(t->n, &want);
    const char *status = json_string_value(json_object_get(am, "status"));
    json_t *content = json_object_get(am, "content");
    json_t *text = json_object_get(json_array_get(content, 0), "text");
    if (!am)
        turn_fail(t, "no answer stored%s", "");
    else if (!status || strcmp(status, "complete") != 0)
        turn_fail(t, "stored status %s", status ? status : "?");
    else if (!json_is_string(text) || json_string_length(text) != want.len ||
             memcmp(json_string_value(text), want.p, want.len) != 0)
        turn_fail(t, "stored text differs (%s)", json_is_string(text) ? "length/bytes" : "missing");
    else if (json_array_size(content) != 1)
        turn_fail(t, "stored content has extra parts%s", "");
    else
        persisted_ok++;
    json_decref(j);
}

/* Run jobs [0, total) with at most conc at once; mk starts job i. */
static void run_jobs(unsigned total, unsigned conc, void (*mk)(unsigned))
{
    next_job = jobs_done = 0;
    while (jobs_done < total) {
        while (next_job < total && next_job - jobs_done < conc)
            mk(next_job++);
        pump(100);
    }
}

static void mk_chat(unsigned i) { start(K_CHAT, &turns[i], "POST", "/api/v1/chats", "{}"); }

static void mk_verify(unsigned i)
{
    char path[128];
    snprintf(path, sizeof path, "/api/v1/chats/%s/messages", turns[i].chat_id);
    start(K_VERIFY, &turns[i], "GET", path, NULL);
}

static void get_metrics(void)
{
    start(K_METRICS, NULL, "GET", "/metrics", NULL);
    unsigned want = metrics_gen + 1;
    int64_t until = now_us() + 10 * 1000000;
    while (metrics_gen < want && now_us() < until)
        pump(100);
}

/* le -> cumulative count of coai_loop_lag_seconds_bucket */
struct lag {
    double le[64];
    double count[64];
    int n;
    double sum, max;
};

static void parse_lag(const char *text, struct lag *l)
{
    memset(l, 0, sizeof *l);
    for (const char *p = text; p && *p; p = strchr(p, '\n'), p = p ? p + 1 : NULL) {
        double le, c;
        if (strncmp(p, "coai_loop_lag_seconds_bucket{le=\"", 33) == 0 && l->n < 64) {
            const char *q = p + 33;
            if (strncmp(q, "+Inf", 4) == 0)
                le = 1e300;
            else
                le = strtod(q, NULL);
            const char *sp = strchr(q, ' ');
            c = sp ? strtod(sp + 1, NULL) : 0;
            l->le[l->n] = le;
            l->count[l->n++] = c;
        } else if (strncmp(p, "coai_loop_lag_seconds_sum ", 26) == 0) {
            l->sum = strtod(p + 26, NULL);
        } else if (strncmp(p, "coai_loop_lag_max_seconds ", 26) == 0) {
            l->max = strtod(p + 26, NULL);
        }
    }
}

/* Quantile q of the samples between two scrapes, interpolated linearly in
 * its bucket (as Prometheus' histogram_quantile does). */
static double lag_quantile(const struct lag *a, const struct lag *b, double q, double *count)
{
    if (a->n != b->n || b->n == 0)
        return -1;
    double total = b->count[b->n - 1] - a->count[a->n - 1];
    *count = total;
    if (total <= 0)
        return -1;
    double rank = q * total, prev_le = 0, prev_c = 0;
    for (int i = 0; i < b->n; i++) {
        double c = b->count[i] - a->count[i];
        if (c >= rank) {
            if (b->le[i] > 1e299)
                return prev_le;
            return prev_le + (b->le[i] - prev_le) * (c > prev_c ? (rank - prev_c) / (c - prev_c) : 1);
        }
        prev_le = b->le[i];
        prev_c = c;
    }
    return prev_le;
}

int main(int argc, char **argv)
{
    if (argc < 6) {
        fprintf(stderr, "usage: %s BASE_URL NTURNS NCHUNKS SERVER_PID UPSTREAM_PID [CONC]\n", argv[0]);
        return 2;
    }
    base = argv[1];
    nturns = (unsigned)strtoul(argv[2], NULL, 10);
    nchunks = (unsigned)strtoul(argv[3], NULL, 10);
    server_pid = atoi(argv[4]);
    upstream_pid = atoi(argv[5]);
    unsigned conc = argc > 6 ? (unsigned)strtoul(argv[6], NULL, 10) : 32;
    long hz = sysconf(_SC_CLK_TCK);
    curl_global_init(CURL_GLOBAL_DEFAULT);
    ep = epoll_create1(0);
    multi = curl_multi_init();
    curl_multi_setopt(multi, CURLMOPT_SOCKETFUNCTION, on_socket);
    curl_multi_setopt(multi, CURLMOPT_TIMERFUNCTION, on_timer);
    curl_multi_setopt(multi, CURLMOPT_MAXCONNECTS, (long)nturns + 64);
    turns = calloc(nturns, sizeof *turns);
    for (unsigned i = 0; i < nturns; i++)
        turns[i].n = i + 1;

    /* 1. one user, NTURNS chats */
    int64_t t_setup = now_us();
    char body[512];
    snprintf(body, sizeof body, "{\"email\":\"bench-%d@example.com\",\"password\":\"benchmark-pw\"}",
             (int)getpid());
    start(K_REGISTER, NULL, "POST", "/api/v1/auth/register", body);
    while (jobs_done < 1)
        pump(100);
    if (errors || !cookie[0]) {
        fprintf(stderr, "client: registration failed: %s\n", first_error);
        return 1;
    }
    run_jobs(nturns, conc, mk_chat);
    if (errors) {
        fprintf(stderr, "client: %u errors creating chats; first: %s\n", errors, first_error);
        return 1;
    }
    double setup_s = (double)(now_us() - t_setup) / 1e6;

    /* 2. before: the loop lag of the idle server for IDLE_S (what this
     * machine gives a loop that has nothing to do), then the counters */
    struct lag lag0, lag1, lagi0;
    get_metrics();
    parse_lag(metrics_text.p, &lagi0);
    if (lagi0.n == 0) {
        fprintf(stderr, "client: /metrics has no coai_loop_lag_seconds histogram\n");
        return 1;
    }
    for (int64_t until = now_us() + 3000000; now_us() < until;)
        pump(100);
    get_metrics();
    parse_lag(metrics_text.p, &lag0);
    double lagic = 0, idle_p50 = lag_quantile(&lagi0, &lag0, 0.50, &lagic),
           idle_p99 = lag_quantile(&lagi0, &lag0, 0.99, &lagic);
    double lrun0 = 0, lwait0 = 0, lrun1 = 0, lwait1 = 0;
    sched_times(server_pid, &lrun0, &lwait0);
    long long srv0 = proc_ticks(server_pid), up0 = proc_ticks(upstream_pid);
    double me0 = self_cpu_s();
    long long busy0 = machine_busy_ticks();
    int64_t t0 = now_us();

    /* 3. every turn at once */
    for (unsigned i = 0; i < nturns; i++) {
        struct turn *t = &turns[i];
        snprintf(body, sizeof body, "{\"content\":\"bench turn %u: write %u tokens\",\"model\":\"gpt-4o\"}",
                 t->n, nchunks);
        char path[128];
        snprintf(path, sizeof path, "/api/v1/chats/%s/messages", t->chat_id);
        t->t_post = now_us();
        start(K_POST, t, "POST", path, body);
    }
    /* once a second: server CPU and deltas, for the steady state */
    enum { MAXS = 256 };
    struct { int64_t t; long long srv; unsigned long long deltas; unsigned streaming, done; } smp[MAXS];
    int ns = 0;
    int64_t next_sample = now_us();
    /* the lag over the streaming phase: /metrics read while every turn
     * streams and none finished, first and last time */
    struct lag lags0, lags1;
    int lag_phase = 0;             /* 0: none read, 1: first read, 2: a later one read */
    bool lag_pending = false;
    unsigned lag_gen = 0;
    while (streams_done < nturns) {
        pump(50);
        if (lag_pending && metrics_gen != lag_gen) {
            lag_pending = false;
            if (streams_done == 0) {
                parse_lag(metrics_text.p, lag_phase == 0 ? &lags0 : &lags1);
                lag_phase = lag_phase == 0 ? 1 : 2;
            }
        }
        if (now_us() >= next_sample && ns < MAXS) {
            unsigned streaming = 0;
            for (unsigned i = 0; i < nturns; i++)
                streaming += turns[i].deltas > 0 && !turns[i].done;
            smp[ns].t = now_us();
            smp[ns].srv = proc_ticks(server_pid);
            smp[ns].deltas = deltas_total;
            smp[ns].streaming = streaming;
            smp[ns].done = streams_done;
            if (streaming == nturns && streams_done == 0 && !lag_pending) {
                lag_gen = metrics_gen;
                lag_pending = true;
                start(K_METRICS, NULL, "GET", "/metrics", NULL);
            }
            ns++;
            next_sample += 1000000;
        }
        if (now_us() - t0 > (int64_t)(TURN_TIMEOUT_S + 10) * 1000000) {
            fprintf(stderr, "client: turns still running after %d s\n", TURN_TIMEOUT_S + 10);
            break;
        }
    }
    int64_t t1 = now_us();
    long long srv1 = proc_ticks(server_pid), up1 = proc_ticks(upstream_pid);
    double me1 = self_cpu_s();
    long long busy1 = machine_busy_ticks();
    sched_times(server_pid, &lrun1, &lwait1);

    /* 4. after */
    get_metrics();
    parse_lag(metrics_text.p, &lag1);

    /* 5. the store */
    for (unsigned i = 0; i < nturns; i++) {
        struct turn *t = &turns[i];
        static struct sbuf want;
        expected(t->n, &want);
        if (t->done && !t->failed && strcmp(t->status, "complete") == 0 && t->deltas == nchunks &&
            t->text.len == want.len && memcmp(t->text.p, want.p, want.len) == 0)
            streamed_ok++;
        else if (!t->failed)
            turn_fail(t, "stream differs: status %s", t->status[0] ? t->status : "none");
    }
    int64_t tv0 = now_us();
    run_jobs(nturns, conc, mk_verify);
    double verify_s = (double)(now_us() - tv0) / 1e6;

    /* report */
    double lagc = 0;
    double p50 = lag_quantile(&lag0, &lag1, 0.50, &lagc);
    double p99 = lag_quantile(&lag0, &lag1, 0.99, &lagc);
    double p999 = lag_quantile(&lag0, &lag1, 0.999, &lagc);
    double run_s = (double)(t1 - t0) / 1e6;
    /* steady state: from the first sample with every turn streaming to the
     * last sample before any finished */
    int a = -1, b = -1;
    for (int i = 0; i < ns; i++) {
        if (smp[i].streaming == nturns && smp[i].done == 0) {
            if (a < 0)
                a = i;
            b = i;
        }
    }
    double steady_us = -1, steady_rate = 0;
    if (a >= 0 && b > a && smp[b].deltas > smp[a].deltas) {
        steady_us = (double)(smp[b].srv - smp[a].srv) / (double)hz * 1e6 /
                    (double)(smp[b].deltas - smp[a].deltas);
        steady_rate = (double)(smp[b].deltas - smp[a].deltas) / ((double)(smp[b].t - smp[a].t) / 1e6);
    }
    /* time to first delta and to done, over the turns */
    int64_t ttfd_max = 0, dur_max = 0, dur_min = INT64_MAX;
    for (unsigned i = 0; i < nturns; i++) {
        struct turn *t = &turns[i];
        if (t->t_first && t->t_first - t->t_post > ttfd_max)
            ttfd_max = t->t_first - t->t_post;
        if (t->t_done) {
            int64_t d = t->t_done - t->t_post;
            if (d > dur_max)
                dur_max = d;
            if (d < dur_min)
                dur_min = d;
        }
    }
    unsigned failed = 0;
    const char *first = NULL;
    for (unsigned i = 0; i < nturns; i++)
        if (turns[i].failed && !failed++)
            first = turns[i].err;
    printf("turns=%u\nchunks_per_turn=%u\n", nturns, nchunks);
    printf("setup_s=%.2f\nrun_s=%.2f\nverify_s=%.2f\n", setup_s, run_s, verify_s);
    printf("streamed_ok=%u\npersisted_ok=%u\nfailed=%u\n", streamed_ok, persisted_ok, failed);
    if (first)
        printf("first_failure=%s\n", first);
    printf("deltas=%llu\n", deltas_total);
    printf("server_cpu_s=%.2f\nupstream_cpu_s=%.2f\nclient_cpu_s=%.2f\n",
           (double)(srv1 - srv0) / (double)hz, (double)(up1 - up0) / (double)hz, me1 - me0);
    double others = (double)(busy1 - busy0 - (srv1 - srv0) - (up1 - up0)) / (double)hz - (me1 - me0);
    printf("others_cpu_s=%.2f\nothers_cpu_pct=%.0f\n", others < 0 ? 0 : others,
           others < 0 ? 0 : others / (run_s * (double)sysconf(_SC_NPROCESSORS_ONLN)) * 100);
    printf("cpu_per_chunk_us=%.3f\n",
           deltas_total ? (double)(srv1 - srv0) / (double)hz * 1e6 / (double)deltas_total : -1);
    printf("steady_cpu_per_chunk_us=%.3f\nsteady_chunks_per_s=%.0f\nsteady_window_s=%.1f\n", steady_us,
           steady_rate, a >= 0 && b > a ? (double)(smp[b].t - smp[a].t) / 1e6 : 0);
    printf("first_delta_max_s=%.3f\nturn_duration_min_s=%.2f\nturn_duration_max_s=%.2f\n",
           (double)ttfd_max / 1e6, dur_min == INT64_MAX ? 0 : (double)dur_min / 1e6,
           (double)dur_max / 1e6);
    printf("lag_samples=%.0f\nlag_p50_ms=%.3f\nlag_p99_ms=%.3f\nlag_p999_ms=%.3f\n", lagc, p50 * 1e3,
           p99 * 1e3, p999 * 1e3);
    double lagsc = 0, s50 = -1, s99 = -1;
    if (lag_phase == 2) {
        s50 = lag_quantile(&lags0, &lags1, 0.50, &lagsc);
        s99 = lag_quantile(&lags0, &lags1, 0.99, &lagsc);
    }
    printf("lag_stream_samples=%.0f\nlag_stream_p50_ms=%.3f\nlag_stream_p99_ms=%.3f\n", lagsc,
           s50 * 1e3, s99 * 1e3);
    printf("lag_idle_samples=%.0f\nlag_idle_p50_ms=%.3f\nlag_idle_p99_ms=%.3f\n", lagic,
           idle_p50 * 1e3, idle_p99 * 1e3);
    printf("loop_run_s=%.2f\nloop_wait_s=%.2f\n", lrun1 - lrun0, lwait1 - lwait0);
    printf("lag_mean_ms=%.3f\nlag_max_since_start_ms=%.3f\n",
           lagc > 0 ? (lag1.sum - lag0.sum) / lagc * 1e3 : -1, lag1.max * 1e3);
    curl_multi_cleanup(multi);
    return 0;
}
