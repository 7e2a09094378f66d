/* load.c - the load generator of bench/gateway: keeps CONC requests in
 * flight against one URL for WARMUP + DURATION seconds and prints, for the
 * requests that started after the warm-up and finished within the window:
 *   n errors rps ttfb_p50 ttfb_p99 ttlb_p50 ttlb_p99 bytes_per_response total
 * (times in microseconds, one line; total counts every response, warm-up
 * included, to divide the target's CPU time by).
 *
 * Why libcurl multi in C: the same client drives all three targets, costs
 * little CPU on a 2-core machine that also runs the upstream and the
 * gateway, and has no garbage collector or JIT to add its own pauses to the
 * tails. TTFB is taken when the first byte of the response *body* arrives
 * (the first SSE event of a stream; a gateway that sends its headers early
 * but holds the first chunk is caught), TTLB when the response is complete,
 * both on CLOCK_MONOTONIC from the moment the request is handed to curl.
 * Connections are kept alive (one per slot, CURLMOPT_MAXCONNECTS >= CONC),
 * so after the warm-up no connect is measured, for any target.
 *
 * A response counts as an error unless it is a 200 whose body ends like a
 * complete answer ("[DONE]" for a stream, a closing brace otherwise).
 *
 * Driven by curl's multi_socket API on epoll (not curl_multi_perform,
 * which walks every transfer on each wake-up and costs O(CONC) a turn).
 *
 * Usage: load URL CONC WARMUP_S DURATION_S BODY [HEADER...]
 */
#include <curl/curl.h>
#include <errno.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <time.h>

struct slot {
    CURL *easy;
    int64_t t0, tfirst;
    size_t bytes;
    char tail[16];
    size_t tail_len;
};

static int64_t now_us(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

static size_t on_write(char *p, size_t sz, size_t n, void *arg)
{
    struct slot *s = arg;
    size_t len = sz * n;
    if (!s->tfirst && len)
        s->tfirst = now_us();
    s->bytes += len;
    /* keep the last bytes to check the response is complete */
    if (len >= sizeof s->tail) {
        memcpy(s->tail, p + len - sizeof s->tail, sizeof s->tail);
        s->tail_len = sizeof s->tail;
    } else {
        size_t keep = s->tail_len + len > sizeof s->tail ? sizeof s->tail - len : s->tail_len;
        memmove(s->tail, s->tail + s->tail_len - keep, keep);
        memcpy(s->tail + keep, p, len);
        s->tail_len = keep + len;
    }
    return len;
}

static int ep;              /* epoll fd */
static int64_t deadline = -1; /* when curl wants its timer to fire, -1 = none */

static int on_socket(CURL *e, curl_socket_t fd, int what, void *u, void *sp)
{
    (void)e;
    (void)u;
    struct epoll_event ev = {.data.fd = fd};
    if (what == CURL_POLL_REMOVE) {
        epoll_ctl(ep, EPOLL_CTL_DEL, fd, NULL);
        return 0;
    }
    ev.events = ((what & CURL_POLL_IN) ? EPOLLIN : 0) | ((what & CURL_POLL_OUT) ? EPOLLOUT : 0);
    if (!sp) {
        curl_multi_assign(u, fd, (void *)1); /* u is the multi */
        if (epoll_ctl(ep, EPOLL_CTL_ADD, fd, &ev) != 0 && errno == EEXIST)
            epoll_ctl(ep, EPOLL_CTL_MOD, fd, &ev);
    } else {
        epoll_ctl(ep, EPOLL_CTL_MOD, fd, &ev);
    }
    return 0;
}

static int on_timer(CURLM *m, long ms, void *u)
{
    (void)m;
    (void)u;
    deadline = ms < 0 ? -1 : now_us() + ms * 1000;
    return 0;
}

static int cmp64(const void *a, const void *b)
{
    int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;
    return x < y ? -1 : x > y;
}

static int64_t pct(int64_t *v, size_t n, double p)
{
    if (!n)
        return 0;
    size_t i = (size_t)(p * (double)(n - 1) + 0.5);
    return v[i];
}

static bool complete(const struct slot *s, bool stream)
{
    size_t n = s->tail_len;
    while (n && (s->tail[n - 1] == '\n' || s->tail[n - 1] == '\r' || s->tail[n - 1] == ' '))
        n--;
    if (stream)
        return n >= 6 && memcmp(s->tail + n - 6, "[DONE]", 6) == 0;
    return n >= 1 && s->tail[n - 1] == '}';
}

int main(int argc, char **argv)
{
    if (argc < 6) {
        fprintf(stderr, "usage: %s URL CONC WARMUP_S DURATION_S BODY [HEADER...]\n", argv[0]);
        return 2;
    }
    const char *url = argv[1];
    int conc = atoi(argv[2]);
    double warm = atof(argv[3]), dur = atof(argv[4]);
    const char *body = argv[5];
    bool stream = strstr(body, "\"stream\":true") != NULL;
    struct curl_slist *hdrs = NULL;
    for (int i = 6; i < argc; i++)
        hdrs = curl_slist_append(hdrs, argv[i]);
    hdrs = curl_slist_append(hdrs, "Content-Type: application/json");
    hdrs = curl_slist_append(hdrs, "Expect:");

    curl_global_init(CURL_GLOBAL_DEFAULT);
    CURLM *m = curl_multi_init();
    curl_multi_setopt(m, CURLMOPT_MAXCONNECTS, (long)conc + 16);
    ep = epoll_create1(0);
    curl_multi_setopt(m, CURLMOPT_SOCKETFUNCTION, on_socket);
    curl_multi_setopt(m, CURLMOPT_SOCKETDATA, m);
    curl_multi_setopt(m, CURLMOPT_TIMERFUNCTION, on_timer);
    struct slot *slots = calloc((size_t)conc, sizeof *slots);
    size_t cap = 1 << 20, n = 0;
    int64_t *ttfb = malloc(cap * sizeof *ttfb), *ttlb = malloc(cap * sizeof *ttlb);
    uint64_t errors = 0, bytes = 0, total = 0;
    long first_err_status = 0;
    CURLcode first_err_rc = CURLE_OK;

    int64_t start = now_us();
    int64_t t_measure = start + (int64_t)(warm * 1e6);
    int64_t t_end = t_measure + (int64_t)(dur * 1e6);

    for (int i = 0; i < conc; i++) {
        struct slot *s = &slots[i];
        s->easy = curl_easy_init();
        curl_easy_setopt(s->easy, CURLOPT_URL, url);
        curl_easy_setopt(s->easy, CURLOPT_HTTPHEADER, hdrs);
        curl_easy_setopt(s->easy, CURLOPT_POSTFIELDS, body);
        curl_easy_setopt(s->easy, CURLOPT_POSTFIELDSIZE, (long)strlen(body));
        curl_easy_setopt(s->easy, CURLOPT_WRITEFUNCTION, on_write);
        curl_easy_setopt(s->easy, CURLOPT_WRITEDATA, s);
        curl_easy_setopt(s->easy, CURLOPT_PRIVATE, (char *)s);
        curl_easy_setopt(s->easy, CURLOPT_NOSIGNAL, 1L);
        curl_easy_setopt(s->easy, CURLOPT_TCP_NODELAY, 1L);
        curl_easy_setopt(s->easy, CURLOPT_HTTP_VERSION, (long)CURL_HTTP_VERSION_1_1);
        curl_easy_setopt(s->easy, CURLOPT_TIMEOUT, 30L);
        s->t0 = now_us();
        curl_multi_add_handle(m, s->easy);
    }
    int active = conc, running;
    struct epoll_event evs[512];
    curl_multi_socket_action(m, CURL_SOCKET_TIMEOUT, 0, &running);
    while (active > 0) {
        int wait_ms = 100;
        if (deadline >= 0) {
            int64_t d = deadline - now_us();
            wait_ms = d <= 0 ? 0 : (int)((d + 999) / 1000);
        }
        int nev = epoll_wait(ep, evs, 512, wait_ms);
        for (int i = 0; i < nev; i++) {
            int act = ((evs[i].events & EPOLLIN) ? CURL_CSELECT_IN : 0) |
                      ((evs[i].events & EPOLLOUT) ? CURL_CSELECT_OUT : 0) |
                      ((evs[i].events & (EPOLLERR | EPOLLHUP)) ? CURL_CSELECT_ERR : 0);
            curl_multi_socket_action(m, evs[i].data.fd, act, &running);
        }
        if (deadline >= 0 && now_us() >= deadline) {
            deadline = -1;
            curl_multi_socket_action(m, CURL_SOCKET_TIMEOUT, 0, &running);
        }
        CURLMsg *msg;
        int left;
        while ((msg = curl_multi_info_read(m, &left))) {
            if (msg->msg != CURLMSG_DONE)
                continue;
            int64_t t = now_us();
            struct slot *s;
            curl_easy_getinfo(msg->easy_handle, CURLINFO_PRIVATE, (char **)&s);
            long status = 0;
            curl_easy_getinfo(s->easy, CURLINFO_RESPONSE_CODE, &status);
            total++;
            bool ok = msg->data.result == CURLE_OK && status == 200 && complete(s, stream);
            if (s->t0 >= t_measure && t <= t_end) {
                if (!ok) {
                    if (!errors++) {
                        first_err_status = status;
                        first_err_rc = msg->data.result;
                    }
                } else {
                    if (n == cap) {
                        cap *= 2;
                        ttfb = realloc(ttfb, cap * sizeof *ttfb);
                        ttlb = realloc(ttlb, cap * sizeof *ttlb);
                    }
                    ttfb[n] = s->tfirst - s->t0;
                    ttlb[n] = t - s->t0;
                    bytes += s->bytes;
                    n++;
                }
            }
            curl_multi_remove_handle(m, s->easy);
            if (t < t_end) {
                s->t0 = now_us();
                s->tfirst = 0;
                s->bytes = 0;
                s->tail_len = 0;
                curl_multi_add_handle(m, s->easy); /* reuses its connection */
            } else {
                active--;
            }
        }
    }
    qsort(ttfb, n, sizeof *ttfb, cmp64);
    qsort(ttlb, n, sizeof *ttlb, cmp64);
    printf("%zu %llu %.1f %lld %lld %lld %lld %llu %llu\n", n, (unsigned long long)errors,
           (double)n / dur, (long long)pct(ttfb, n, 0.50), (long long)pct(ttfb, n, 0.99),
           (long long)pct(ttlb, n, 0.50), (long long)pct(ttlb, n, 0.99),
           (unsigned long long)(n ? bytes / n : 0), (unsigned long long)total);
    if (errors)
        fprintf(stderr, "load: %llu errors, first: status %ld, %s\n",
                (unsigned long long)errors, first_err_status, curl_easy_strerror(first_err_rc));
    for (int i = 0; i < conc; i++)
        curl_easy_cleanup(slots[i].easy);
    curl_multi_cleanup(m);
    curl_slist_free_all(hdrs);
    return 0;
}
