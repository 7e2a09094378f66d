/* subscribers.c - the SSE load client of bench/fanout: opens NSUBS
 * subscriptions to live turns (GET <events_url>, round robin over the
 * lines of URLS_FILE) with a session cookie, and once every one of them is
 * open (headers read) tells the fake provider to start (GET /go on
 * UPSTREAM_PORT). Then it reads every stream to its "done" event and checks
 * each subscriber got every event in order: event ids 1, 2, 3, ... with no
 * gap, DELTAS "delta" events whose sequence numbers are 0 .. DELTAS-1, a
 * "usage" and a "done" with status complete. The fan-out latency of each
 * delta is its receive time minus the send time the provider wrote into it
 * (both CLOCK_MONOTONIC, system-wide; one clock read per read() call).
 *
 * THREADS threads, each with its own epoll over its share of the
 * connections; non-blocking sockets, no thread per connection. New
 * connections are paced (a bounded number awaiting their headers) so that
 * the server's listen backlog never overflows into SYN retries.
 *
 * Usage: subscribers PORT COOKIE URLS_FILE NSUBS DELTAS UPSTREAM_PORT TIMEOUT_S THREADS
 * Prints one line of key=value figures on stdout; problems on stderr.
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define RBUF (256 * 1024)
#define INFLIGHT 64 /* connections per thread waiting for their headers */

enum st { S_CONNECTING, S_HEADERS, S_BODY, S_DONE, S_FAILED };
enum ch { C_SIZE, C_DATA, C_CRLF, C_END };

struct sub {
    int fd;
    int idx;
    enum st st;
    /* HTTP head */
    char head[1024];
    size_t head_len;
    int status;
    /* chunked decoding */
    enum ch ch;
    size_t chunk_left;
    unsigned long long size_acc;
    bool size_ext; /* skipping a chunk extension */
    /* SSE */
    char *line;
    size_t line_len, line_cap;
    long long ev_id;      /* id of the event being read, -1 none */
    char ev_name[16];
    char *data;
    size_t data_len, data_cap;
    bool has_data;
    /* checks */
    long long last_id;
    int next_seq;
    int deltas, usage;
    bool done_ok, bad;
    char why[96];
};

struct thr {
    int id;
    pthread_t th;
    int ep;
    struct sub *subs;
    int n;
    int next_connect;     /* index of the next connection to open */
    int inflight;
    uint32_t *lat;        /* us */
    size_t nlat, lat_cap;
};

static const char *g_cookie, *g_host = "127.0.0.1";
static int g_port, g_up_port, g_nsubs, g_deltas, g_threads, g_timeout_s;
static char **g_urls;
static int g_nurls;
static atomic_int g_established, g_finished, g_failed_connect;
static int64_t g_deadline_ns;

static int64_t now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

static void fail(struct sub *s, const char *why)
{
    if (!s->bad) {
        s->bad = true;
        snprintf(s->why, sizeof s->why, "%s", why);
    }
}

static void finish(struct thr *t, struct sub *s, enum st st)
{
    if (s->st == S_DONE || s->st == S_FAILED)
        return;
    if (s->st == S_CONNECTING || s->st == S_HEADERS) {
        t->inflight--;
        atomic_fetch_add(&g_failed_connect, 1);
    }
    s->st = st;
    if (s->fd >= 0) {
        epoll_ctl(t->ep, EPOLL_CTL_DEL, s->fd, NULL);
        close(s->fd);
        s->fd = -1;
    }
    free(s->line);
    free(s->data);
    s->line = s->data = NULL;
    atomic_fetch_add(&g_finished, 1);
}

static void open_next(struct thr *t)
{
    while (t->inflight < INFLIGHT && t->next_connect < t->n) {
        struct sub *s = &t->subs[t->next_connect++];
        s->fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK, 0);
        if (s->fd < 0) {
            perror("subscribers: socket");
            fail(s, "socket");
            s->st = S_FAILED;
            atomic_fetch_add(&g_failed_connect, 1);
            atomic_fetch_add(&g_finished, 1);
            continue;
        }
        int one = 1;
        setsockopt(s->fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
        struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)g_port)};
        inet_pton(AF_INET, g_host, &a.sin_addr);
        t->inflight++;
        s->st = S_CONNECTING;
        if (connect(s->fd, (struct sockaddr *)&a, sizeof a) && errno != EINPROGRESS) {
            fail(s, "connect");
            finish(t, s, S_FAILED);
            continue;
        }
        struct epoll_event ev = {.events = EPOLLOUT | EPOLLIN, .data.ptr = s};
        epoll_ctl(t->ep, EPOLL_CTL_ADD, s->fd, &ev);
    }
}

static void on_event(struct thr *t, struct sub *s, int64_t now)
{
    const char *n = s->ev_name;
    const char *d = s->has_data ? s->data : "";
    if (s->ev_id >= 0) {
        if (s->ev_id != s->last_id + 1)
            fail(s, "event ids not consecutive");
        s->last_id = s->ev_id;
    }
    if (strcmp(n, "delta") == 0) {
        const char *p = strstr(d, "s=");
        int seq;
        long long sent;
        if (!p || sscanf(p, "s=%d t=%lld", &seq, &sent) != 2) {
            fail(s, "delta without s=/t=");
            return;
        }
        if (seq != s->next_seq)
            fail(s, "delta out of order");
        s->next_seq = seq + 1;
        s->deltas++;
        long long us = (now - sent) / 1000;
        if (t->nlat == t->lat_cap) {
            t->lat_cap = t->lat_cap ? t->lat_cap * 2 : 1 << 16;
            t->lat = realloc(t->lat, t->lat_cap * sizeof *t->lat);
        }
        t->lat[t->nlat++] = us < 0 ? 0 : us > UINT32_MAX ? UINT32_MAX : (uint32_t)us;
    } else if (strcmp(n, "usage") == 0) {
        s->usage++;
    } else if (strcmp(n, "done") == 0) {
        if (strncmp(d, "{\"status\":\"complete\"", 20) == 0)
            s->done_ok = true;
        else
            fail(s, "done not complete");
        if (s->deltas != g_deltas)
            fail(s, "missing deltas");
        finish(t, s, S_DONE);
    } else if (*n) {
        fail(s, "unexpected event");
    }
}

static void grow(char **p, size_t *cap, size_t need)
{
    if (need <= *cap)
        return;
    while (*cap < need)
        *cap = *cap ? *cap * 2 : 256;
    *p = realloc(*p, *cap);
}

/* One complete SSE line (without its newline). */
static void on_line(struct thr *t, struct sub *s, const char *l, size_t n, int64_t now)
{
    if (n == 0) {
        if (s->ev_name[0] || s->has_data)
            on_event(t, s, now);
        s->ev_id = -1;
        s->ev_name[0] = 0;
        s->has_data = false;
        s->data_len = 0;
        return;
    }
    if (l[0] == ':')
        return; /* comment (heartbeat) */
    if (n > 4 && memcmp(l, "id: ", 4) == 0) {
        s->ev_id = strtoll(l + 4, NULL, 10);
    } else if (n > 7 && memcmp(l, "event: ", 7) == 0) {
        size_t k = n - 7 < sizeof s->ev_name - 1 ? n - 7 : sizeof s->ev_name - 1;
        memcpy(s->ev_name, l + 7, k);
        s->ev_name[k] = 0;
    } else if (n >= 6 && memcmp(l, "data: ", 6) == 0) {
        grow(&s->data, &s->data_cap, n - 6 + 1);
        memcpy(s->data, l + 6, n - 6);
        s->data[n - 6] = 0;
        s->data_len = n - 6;
        s->has_data = true;
    }
}

/* SSE body bytes (chunked framing already removed). */
static void on_body(struct thr *t, struct sub *s, const char *p, size_t n, int64_t now)
{
    while (n && s->st == S_BODY) {
        const char *nl = memchr(p, '\n', n);
        if (!nl) {
            grow(&s->line, &s->line_cap, s->line_len + n);
            memcpy(s->line + s->line_len, p, n);
            s->line_len += n;
            return;
        }
        size_t k = (size_t)(nl - p);
        if (s->line_len) {
            grow(&s->line, &s->line_cap, s->line_len + k);
            memcpy(s->line + s->line_len, p, k);
            on_line(t, s, s->line, s->line_len + k, now);
            s->line_len = 0;
        } else {
            on_line(t, s, p, k, now);
        }
        p += k + 1;
        n -= k + 1;
    }
}

/* Chunked transfer decoding. */
static void on_bytes(struct thr *t, struct sub *s, const char *p, size_t n, int64_t now)
{
    while (n && s->st == S_BODY) {
        switch (s->ch) {
        case C_SIZE: {
            char c = *p++;
            n--;
            if (c == '\n') {
                s->chunk_left = s->size_acc;
                s->size_acc = 0;
                s->size_ext = false;
                if (s->chunk_left == 0) {
                    s->ch = C_END;
                    fail(s, "stream ended before done");
                    finish(t, s, S_FAILED);
                    return;
                }
                s->ch = C_DATA;
            } else if (c == ';' || c == '\r') {
                s->size_ext = true;
            } else if (!s->size_ext) {
                int v = c >= '0' && c <= '9' ? c - '0' : c >= 'a' && c <= 'f' ? c - 'a' + 10
                      : c >= 'A' && c <= 'F' ? c - 'A' + 10 : -1;
                if (v < 0) {
                    fail(s, "bad chunk size");
                    finish(t, s, S_FAILED);
                    return;
                }
                s->size_acc = s->size_acc * 16 + (unsigned)v;
            }
            break;
        }
        case C_DATA: {
            size_t k = n < s->chunk_left ? n : s->chunk_left;
            on_body(t, s, p, k, now);
            p += k;
            n -= k;
            s->chunk_left -= k;
            if (!s->chunk_left)
                s->ch = C_CRLF;
            break;
        }
        case C_CRLF:
            if (*p == '\n')
                s->ch = C_SIZE;
            p++;
            n--;
            break;
        case C_END:
            return;
        }
    }
}

static void on_head(struct thr *t, struct sub *s, int64_t now)
{
    char *end = memmem(s->head, s->head_len, "\r\n\r\n", 4);
    if (!end) {
        if (s->head_len == sizeof s->head) {
            fail(s, "response head too large");
            finish(t, s, S_FAILED);
        }
        return;
    }
    size_t hlen = (size_t)(end + 4 - s->head);
    if (sscanf(s->head, "HTTP/1.%*d %d", &s->status) != 1 || s->status != 200) {
        char why[64];
        snprintf(why, sizeof why, "HTTP status %d", s->status);
        fail(s, why);
        finish(t, s, S_FAILED);
        return;
    }
    if (!strcasestr(s->head, "transfer-encoding: chunked")) {
        fail(s, "not chunked");
        finish(t, s, S_FAILED);
        return;
    }
    s->st = S_BODY;
    t->inflight--;
    atomic_fetch_add(&g_established, 1);
    size_t rest = s->head_len - hlen;
    if (rest)
        on_bytes(t, s, s->head + hlen, rest, now);
}

static void *run(void *arg)
{
    struct thr *t = arg;
    static __thread char rbuf[RBUF];
    struct epoll_event evs[512];
    open_next(t);
    while (atomic_load(&g_finished) < g_nsubs && now_ns() < g_deadline_ns) {
        int n = epoll_wait(t->ep, evs, 512, 100);
        for (int i = 0; i < n; i++) {
            struct sub *s = evs[i].data.ptr;
            if (s->st == S_DONE || s->st == S_FAILED)
                continue;
            if (s->st == S_CONNECTING) {
                int err = 0;
                socklen_t el = sizeof err;
                getsockopt(s->fd, SOL_SOCKET, SO_ERROR, &err, &el);
                if (err) {
                    fail(s, strerror(err));
                    finish(t, s, S_FAILED);
                    continue;
                }
                if (!(evs[i].events & EPOLLOUT))
                    continue;
                char req[1024];
                int k = snprintf(req, sizeof req,
                                 "GET %s HTTP/1.1\r\nHost: %s:%d\r\nCookie: coai_session=%s\r\n"
                                 "Accept: text/event-stream\r\n\r\n",
                                 g_urls[s->idx % g_nurls], g_host, g_port, g_cookie);
                if (send(s->fd, req, (size_t)k, MSG_NOSIGNAL) != k) {
                    fail(s, "send request");
                    finish(t, s, S_FAILED);
                    continue;
                }
                s->st = S_HEADERS;
                struct epoll_event ev = {.events = EPOLLIN, .data.ptr = s};
                epoll_ctl(t->ep, EPOLL_CTL_MOD, s->fd, &ev);
                continue;
            }
            ssize_t r = recv(s->fd, rbuf, sizeof rbuf, 0);
            int64_t now = now_ns();
            if (r < 0 && (errno == EAGAIN || errno == EINTR))
                continue;
            if (r <= 0) {
                fail(s, r == 0 ? "closed by the server before done" : strerror(errno));
                finish(t, s, S_FAILED);
                continue;
            }
            if (s->st == S_HEADERS) {
                size_t k = (size_t)r < sizeof s->head - s->head_len ? (size_t)r
                                                                     : sizeof s->head - s->head_len;
                memcpy(s->head + s->head_len, rbuf, k);
                s->head_len += k;
                on_head(t, s, now);
                if (s->st == S_BODY && k < (size_t)r)
                    on_bytes(t, s, rbuf + k, (size_t)r - k, now);
            } else {
                on_bytes(t, s, rbuf, (size_t)r, now);
            }
        }
        open_next(t);
    }
    return NULL;
}

static int cmp_u32(const void *a, const void *b)
{
    uint32_t x = *(const uint32_t *)a, y = *(const uint32_t *)b;
    return x < y ? -1 : x > y;
}

static int send_go(void)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)g_up_port)};
    inet_pton(AF_INET, g_host, &a.sin_addr);
    if (connect(fd, (struct sockaddr *)&a, sizeof a)) {
        perror("subscribers: connect to the upstream");
        close(fd);
        return -1;
    }
    const char *req = "GET /go HTTP/1.1\r\nHost: x\r\n\r\n";
    char buf[256];
    int ok = send(fd, req, strlen(req), 0) == (ssize_t)strlen(req) && recv(fd, buf, sizeof buf, 0) > 0;
    close(fd);
    return ok ? 0 : -1;
}

int main(int argc, char **argv)
{
    if (argc != 9) {
        fprintf(stderr,
                "usage: %s PORT COOKIE URLS_FILE NSUBS DELTAS UPSTREAM_PORT TIMEOUT_S THREADS\n",
                argv[0]);
        return 2;
    }
    g_port = atoi(argv[1]);
    g_cookie = argv[2];
    g_nsubs = atoi(argv[4]);
    g_deltas = atoi(argv[5]);
    g_up_port = atoi(argv[6]);
    g_timeout_s = atoi(argv[7]);
    g_threads = atoi(argv[8]);
    if (g_threads < 1)
        g_threads = 1;
    signal(SIGPIPE, SIG_IGN);
    FILE *f = fopen(argv[3], "r");
    if (!f) {
        perror(argv[3]);
        return 2;
    }
    char line[512];
    while (fgets(line, sizeof line, f)) {
        line[strcspn(line, "\r\n")] = 0;
        if (!*line)
            continue;
        g_urls = realloc(g_urls, (size_t)(g_nurls + 1) * sizeof *g_urls);
        g_urls[g_nurls++] = strdup(line);
    }
    fclose(f);
    if (!g_nurls) {
        fprintf(stderr, "subscribers: no URLs in %s\n", argv[3]);
        return 2;
    }
    /* one descriptor per subscription, and some */
    struct rlimit rl;
    getrlimit(RLIMIT_NOFILE, &rl);
    rlim_t want = (rlim_t)g_nsubs + 256;
    if (rl.rlim_cur < want) {
        rl.rlim_cur = rl.rlim_max == RLIM_INFINITY || rl.rlim_max > want ? want : rl.rlim_max;
        setrlimit(RLIMIT_NOFILE, &rl);
        getrlimit(RLIMIT_NOFILE, &rl);
        if (rl.rlim_cur < want) {
            fprintf(stderr, "subscribers: RLIMIT_NOFILE %llu < %llu\n",
                    (unsigned long long)rl.rlim_cur, (unsigned long long)want);
            return 2;
        }
    }
    int64_t t0 = now_ns();
    g_deadline_ns = t0 + (int64_t)g_timeout_s * 1000000000;
    struct sub *subs = calloc((size_t)g_nsubs, sizeof *subs);
    struct thr *thr = calloc((size_t)g_threads, sizeof *thr);
    /* subscriber i -> thread i % THREADS; its URL is i % NURLS */
    int per = (g_nsubs + g_threads - 1) / g_threads, at = 0;
    for (int k = 0; k < g_threads; k++) {
        thr[k].id = k;
        thr[k].ep = epoll_create1(0);
        thr[k].subs = subs + at;
        thr[k].n = at + per <= g_nsubs ? per : g_nsubs - at;
        for (int i = 0; i < thr[k].n; i++) {
            struct sub *s = &thr[k].subs[i];
            s->idx = at + i;
            s->fd = -1;
            s->ev_id = -1;
        }
        at += thr[k].n;
    }
    for (int k = 0; k < g_threads; k++)
        pthread_create(&thr[k].th, NULL, run, &thr[k]);
    /* every subscription open (or failed) -> the provider starts */
    while (atomic_load(&g_established) + atomic_load(&g_failed_connect) < g_nsubs &&
           now_ns() < g_deadline_ns)
        usleep(2000);
    int64_t t_open = now_ns();
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    double cpu_open = ru.ru_utime.tv_sec + ru.ru_utime.tv_usec / 1e6 + ru.ru_stime.tv_sec +
                      ru.ru_stime.tv_usec / 1e6;
    int established = atomic_load(&g_established);
    if (send_go())
        fprintf(stderr, "subscribers: could not start the upstream\n");
    for (int k = 0; k < g_threads; k++)
        pthread_join(thr[k].th, NULL);
    int64_t t_end = now_ns();

    long long deltas = 0;
    int complete = 0, bad = 0, timed_out = 0;
    char shown[5][96];
    int nshown = 0;
    for (int i = 0; i < g_nsubs; i++) {
        struct sub *s = &subs[i];
        deltas += s->deltas;
        if (s->st != S_DONE && s->st != S_FAILED) {
            timed_out++;
            fail(s, "timed out");
        }
        if (s->st == S_DONE && s->done_ok && !s->bad && s->deltas == g_deltas && s->usage == 1)
            complete++;
        else
            bad++;
        if (s->bad) {
            bool seen = false;
            for (int k = 0; k < nshown; k++)
                seen |= strcmp(shown[k], s->why) == 0;
            if (!seen && nshown < 5) {
                snprintf(shown[nshown++], sizeof shown[0], "%s", s->why);
                fprintf(stderr, "subscribers: subscriber %d: %s (%d deltas)\n", i, s->why,
                        s->deltas);
            }
        }
    }
    size_t nlat = 0;
    for (int k = 0; k < g_threads; k++)
        nlat += thr[k].nlat;
    uint32_t *all = malloc((nlat ? nlat : 1) * sizeof *all);
    size_t o = 0;
    for (int k = 0; k < g_threads; k++) {
        memcpy(all + o, thr[k].lat, thr[k].nlat * sizeof *all);
        o += thr[k].nlat;
    }
    qsort(all, nlat, sizeof *all, cmp_u32);
    uint32_t p50 = nlat ? all[nlat / 2] : 0;
    uint32_t p99 = nlat ? all[nlat * 99 / 100] : 0;
    uint32_t p999 = nlat ? all[nlat * 999 / 1000] : 0;
    uint32_t mx = nlat ? all[nlat - 1] : 0;
    getrusage(RUSAGE_SELF, &ru);
    double cpu = ru.ru_utime.tv_sec + ru.ru_utime.tv_usec / 1e6 + ru.ru_stime.tv_sec +
                 ru.ru_stime.tv_usec / 1e6;
    printf("subs=%d established=%d complete=%d bad=%d timed_out=%d deltas=%lld expected=%lld "
           "p50_us=%u p99_us=%u p999_us=%u max_us=%u open_s=%.2f stream_s=%.2f cpu_open_s=%.2f cpu_s=%.2f\n",
           g_nsubs, established, complete, bad, timed_out, deltas,
           (long long)g_nsubs * g_deltas, p50, p99, p999, mx, (t_open - t0) / 1e9,
           (t_end - t_open) / 1e9, cpu_open, cpu);
    return 0;
}
