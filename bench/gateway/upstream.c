/* upstream.c - the fake provider for bench/gateway: answers every
 * POST .../chat/completions at once with the bytes of a real recorded
 * response, read at start from ../shared/fixtures:
 *   "stream":true in the body -> the SSE fixture, one HTTP chunk per event
 *                                 (as OpenAI frames it), in one write
 *   otherwise                  -> the chat.completion JSON, Content-Length
 * HTTP/1.1 keep-alive, pipelining-safe. One thread, epoll.
 *
 * Why C and not node:http: the benchmark runs the load generator, the
 * upstream and the gateway on the same 2 cores, so every cycle the upstream
 * spends is taken from the gateway under test. This server costs a few
 * microseconds a request (measured: several times cheaper than node:http,
 * which became the bottleneck of the direct runs at concurrency 512), so
 * the direct baseline is as fast as this machine allows and the figures
 * through a gateway show the gateway.
 *
 * With DELAY_MS > 0 every answer is held that long before it is sent (a
 * provider's time to first token; the streamed events still leave in one
 * write): then throughput is bounded by latency, not by this machine's
 * CPU, as it is in front of a real provider.
 *
 * POST /bench/delay/MS changes that delay for the answers that follow (the
 * bench's second pass, without restarting anything or losing the warm
 * keep-alive connections of the targets).
 *
 * Usage: upstream PORT SSE_FILE JSON_FILE [DELAY_MS]   (prints "ready")
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define RBUF 65536

struct conn {
    int fd;
    int pending;       /* answers waiting for their delay */
    bool closed;       /* closed while answers were pending: free at 0 */
    size_t len;        /* bytes in rbuf */
    char *out;         /* pending output (only when a write was short) */
    size_t out_len, out_off;
    char rbuf[RBUF];
};

/* delayed answers: the delay is constant, so they fall due in FIFO order */
struct pend {
    struct conn *c;
    const char *p;
    size_t n;
    int64_t due_us;
    struct pend *next;
};
static struct pend *pend_head, *pend_tail;
static int64_t delay_us;

static int64_t now_us(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

static const char resp_ok[] = "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok";
static char *resp_stream, *resp_json, *resp_404;
static size_t resp_stream_len, resp_json_len, resp_404_len;

static char *slurp(const char *path, size_t *len)
{
    FILE *f = fopen(path, "rb");
    if (!f) {
        perror(path);
        exit(1);
    }
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    char *p = malloc((size_t)n + 1);
    if (fread(p, 1, (size_t)n, f) != (size_t)n) {
        perror(path);
        exit(1);
    }
    fclose(f);
    p[n] = 0;
    *len = (size_t)n;
    return p;
}

static void append(char **p, size_t *len, size_t *cap, const char *s, size_t n)
{
    while (*len + n + 1 > *cap) {
        *cap = *cap ? *cap * 2 : 4096;
        *p = realloc(*p, *cap);
    }
    memcpy(*p + *len, s, n);
    *len += n;
    (*p)[*len] = 0;
}

static void build_responses(const char *sse_path, const char *json_path)
{
    size_t sl, jl, cap = 0, len = 0;
    char *sse = slurp(sse_path, &sl), *json = slurp(json_path, &jl);
    char *r = NULL, tmp[256];
    const char *h = "HTTP/1.1 200 OK\r\nContent-Type: text/event-stream; charset=utf-8\r\n"
                    "Cache-Control: no-cache\r\nConnection: keep-alive\r\n"
                    "x-request-id: req_bench\r\nopenai-processing-ms: 1\r\n"
                    "Transfer-Encoding: chunked\r\n\r\n";
    append(&r, &len, &cap, h, strlen(h));
    /* one chunk per SSE event: an event ends with a blank line */
    const char *p = sse, *end = sse + sl;
    while (p < end) {
        const char *e = strstr(p, "\n\n");
        size_t n = e ? (size_t)(e + 2 - p) : (size_t)(end - p);
        int k = snprintf(tmp, sizeof tmp, "%zx\r\n", n);
        append(&r, &len, &cap, tmp, (size_t)k);
        append(&r, &len, &cap, p, n);
        append(&r, &len, &cap, "\r\n", 2);
        p += n;
    }
    append(&r, &len, &cap, "0\r\n\r\n", 5);
    resp_stream = r;
    resp_stream_len = len;

    r = NULL;
    len = cap = 0;
    int k = snprintf(tmp, sizeof tmp,
                     "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
                     "Connection: keep-alive\r\nx-request-id: req_bench\r\n"
                     "openai-processing-ms: 1\r\nContent-Length: %zu\r\n\r\n",
                     jl);
    append(&r, &len, &cap, tmp, (size_t)k);
    append(&r, &len, &cap, json, jl);
    resp_json = r;
    resp_json_len = len;

    const char *nf = "{\"error\":{\"message\":\"not found\",\"type\":\"invalid_request_error\"}}";
    r = NULL;
    len = cap = 0;
    k = snprintf(tmp, sizeof tmp,
                 "HTTP/1.1 404 Not Found\r\nContent-Type: application/json\r\n"
                 "Content-Length: %zu\r\n\r\n",
                 strlen(nf));
    append(&r, &len, &cap, tmp, (size_t)k);
    append(&r, &len, &cap, nf, strlen(nf));
    resp_404 = r;
    resp_404_len = len;
    free(sse);
    free(json);
}

static void conn_close(int ep, struct conn *c)
{
    if (c->closed)
        return;
    epoll_ctl(ep, EPOLL_CTL_DEL, c->fd, NULL);
    close(c->fd);
    c->closed = true;
    if (!c->pending) {
        free(c->out);
        free(c);
    }
}

/* Queue or write a response. Returns -1 if the connection died. */
static int send_resp(int ep, struct conn *c, const char *p, size_t n)
{
    if (c->out) { /* already backed up: queue behind */
        c->out = realloc(c->out, c->out_len + n);
        memcpy(c->out + c->out_len, p, n);
        c->out_len += n;
        return 0;
    }
    while (n) {
        ssize_t w = send(c->fd, p, n, MSG_NOSIGNAL);
        if (w < 0 && errno == EINTR)
            continue;
        if (w < 0 && errno == EAGAIN)
            break;
        if (w < 0)
            return -1;
        p += w;
        n -= (size_t)w;
    }
    if (n) {
        c->out = malloc(n);
        memcpy(c->out, p, n);
        c->out_len = n;
        c->out_off = 0;
        struct epoll_event ev = {.events = EPOLLIN | EPOLLOUT, .data.ptr = c};
        epoll_ctl(ep, EPOLL_CTL_MOD, c->fd, &ev);
    }
    return 0;
}

static int flush_out(int ep, struct conn *c)
{
    while (c->out_off < c->out_len) {
        ssize_t w = send(c->fd, c->out + c->out_off, c->out_len - c->out_off, MSG_NOSIGNAL);
        if (w < 0 && errno == EINTR)
            continue;
        if (w < 0 && errno == EAGAIN)
            return 0;
        if (w < 0)
            return -1;
        c->out_off += (size_t)w;
    }
    free(c->out);
    c->out = NULL;
    c->out_len = c->out_off = 0;
    struct epoll_event ev = {.events = EPOLLIN, .data.ptr = c};
    epoll_ctl(ep, EPOLL_CTL_MOD, c->fd, &ev);
    return 0;
}

/* Answer every complete request in rbuf. Returns -1 to close. */
static int handle(int ep, struct conn *c)
{
    for (;;) {
        char *hend = memmem(c->rbuf, c->len, "\r\n\r\n", 4);
        if (!hend)
            return c->len == RBUF ? -1 : 0;
        size_t hlen = (size_t)(hend + 4 - c->rbuf);
        size_t clen = 0;
        char *cl = memmem(c->rbuf, hlen, "\ncontent-length:", 16);
        if (!cl)
            cl = memmem(c->rbuf, hlen, "\nContent-Length:", 16);
        if (cl)
            clen = strtoul(cl + 16, NULL, 10);
        if (memmem(c->rbuf, hlen, "chunked", 7))
            return -1; /* not needed here */
        if (hlen + clen > RBUF)
            return -1;
        if (c->len < hlen + clen)
            return 0;
        const char *body = c->rbuf + hlen;
        const char *r;
        size_t rn;
        if (strncmp(c->rbuf, "POST /bench/delay/", 18) == 0) {
            /* the bench's control: hold later answers this long (ms) */
            delay_us = (int64_t)(atof(c->rbuf + 18) * 1000);
            r = resp_ok;
            rn = strlen(resp_ok);
        } else if (strncmp(c->rbuf, "POST ", 5) != 0 ||
            !memmem(c->rbuf, hlen, "/chat/completions ", 18)) {
            r = resp_404;
            rn = resp_404_len;
        } else if (memmem(body, clen, "\"stream\":true", 13) ||
                   memmem(body, clen, "\"stream\": true", 14)) {
            r = resp_stream;
            rn = resp_stream_len;
        } else {
            r = resp_json;
            rn = resp_json_len;
        }
        if (delay_us > 0 && r != resp_ok) {
            struct pend *q = malloc(sizeof *q);
            *q = (struct pend){c, r, rn, now_us() + delay_us, NULL};
            if (pend_tail)
                pend_tail->next = q;
            else
                pend_head = q;
            pend_tail = q;
            c->pending++;
        } else if (send_resp(ep, c, r, rn)) {
            return -1;
        }
        memmove(c->rbuf, c->rbuf + hlen + clen, c->len - hlen - clen);
        c->len -= hlen + clen;
    }
}

int main(int argc, char **argv)
{
    if (argc != 4 && argc != 5) {
        fprintf(stderr, "usage: %s PORT SSE_FILE JSON_FILE [DELAY_MS]\n", argv[0]);
        return 2;
    }
    if (argc == 5)
        delay_us = (int64_t)(atof(argv[4]) * 1000);
    signal(SIGPIPE, SIG_IGN);
    build_responses(argv[2], argv[3]);
    int ls = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK, 0);
    int one = 1;
    setsockopt(ls, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)atoi(argv[1]))};
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (bind(ls, (struct sockaddr *)&a, sizeof a) || listen(ls, 4096)) {
        perror("bind/listen");
        return 1;
    }
    int ep = epoll_create1(0);
    struct epoll_event ev = {.events = EPOLLIN, .data.ptr = NULL};
    epoll_ctl(ep, EPOLL_CTL_ADD, ls, &ev);
    printf("ready\n");
    fflush(stdout);
    struct epoll_event evs[256];
    for (;;) {
        int wait_ms = -1;
        if (pend_head) {
            int64_t d = pend_head->due_us - now_us();
            wait_ms = d <= 0 ? 0 : (int)((d + 999) / 1000);
        }
        int n = epoll_wait(ep, evs, 256, wait_ms);
        for (int i = 0; i < n; i++) {
            struct conn *c = evs[i].data.ptr;
            if (c && c->closed)
                continue;
            if (!c) {
                int fd;
                while ((fd = accept4(ls, NULL, NULL, SOCK_NONBLOCK)) >= 0) {
                    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
                    c = calloc(1, sizeof *c);
                    c->fd = fd;
                    struct epoll_event e2 = {.events = EPOLLIN, .data.ptr = c};
                    epoll_ctl(ep, EPOLL_CTL_ADD, fd, &e2);
                }
                continue;
            }
            if (evs[i].events & EPOLLOUT) {
                if (flush_out(ep, c)) {
                    conn_close(ep, c);
                    continue;
                }
            }
            if (evs[i].events & (EPOLLIN | EPOLLHUP | EPOLLERR)) {
                ssize_t r = recv(c->fd, c->rbuf + c->len, RBUF - c->len, 0);
                if (r == 0 || (r < 0 && errno != EAGAIN && errno != EINTR)) {
                    conn_close(ep, c);
                    continue;
                }
                if (r > 0) {
                    c->len += (size_t)r;
                    if (handle(ep, c))
                        conn_close(ep, c);
                }
            }
        }
        /* answers whose delay is over, oldest first */
        for (int64_t t = now_us(); pend_head && pend_head->due_us <= t;) {
            struct pend *q = pend_head;
            pend_head = q->next;
            if (!pend_head)
                pend_tail = NULL;
            struct conn *c = q->c;
            c->pending--;
            if (!c->closed && send_resp(ep, c, q->p, q->n))
                conn_close(ep, c);
            if (c->closed && !c->pending) {
                free(c->out);
                free(c);
            }
            free(q);
        }
    }
}
