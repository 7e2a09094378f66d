/* upstream.c - the fake provider for bench/fanout: every POST
 * .../chat/completions with "stream":true is answered at once with the SSE
 * headers and the role chunk, then held. GET /go starts every held stream:
 * from then on each one sends DELTAS content chunks, PACE_MS apart, then the
 * finish chunk, the usage chunk and [DONE], framed as the recorded gpt-4o
 * streams in ../shared/fixtures/openai-chat-sse/openai-python_text-stop.sse
 * (one HTTP chunk per event). Streams that arrive after /go start at once.
 *
 * Every delta's content is "s=<seq> t=<ns> " where ns is CLOCK_MONOTONIC
 * (system-wide) read just before the chunk is written, so a subscriber of
 * the server's turn events computes fan-out latency = receive - t.
 *
 * STAGGER=1 spreads the streams' ticks evenly over one pace interval (the
 * turns of different people are not in lock step); 0 ticks them all at the
 * same instant (the worst case burst).
 *
 * GET /stats answers "streams=N started=S finished=F deltas=D". One thread,
 * epoll; a few microseconds per chunk, so it is never the bottleneck.
 *
 * Usage: upstream PORT DELTAS PACE_MS STAGGER   (prints "ready")
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
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
#define MAX_STREAMS 4096

#define CHUNK_HEAD                                                                                  \
    "data: {\"id\":\"chatcmpl-ABfw031mOJeYCSHe4yI2ZjOA6kMJL\",\"object\":\"chat.completion.chunk\"," \
    "\"created\":1727346168,\"model\":\"gpt-4o-2024-08-06\",\"system_fingerprint\":\"fp_5050236cbd\","
#define ROLE_EV                                                                                     \
    CHUNK_HEAD "\"choices\":[{\"index\":0,\"delta\":{\"role\":\"assistant\",\"content\":\"\","      \
               "\"refusal\":null},\"logprobs\":null,\"finish_reason\":null}]}\n\n"
#define FINISH_EV                                                                                   \
    CHUNK_HEAD "\"choices\":[{\"index\":0,\"delta\":{},\"logprobs\":null,\"finish_reason\":"        \
               "\"stop\"}]}\n\n"
#define USAGE_EV                                                                                    \
    CHUNK_HEAD "\"choices\":[],\"usage\":{\"prompt_tokens\":12,\"completion_tokens\":%d,"           \
               "\"total_tokens\":%d,\"prompt_tokens_details\":{\"cached_tokens\":0,"               \
               "\"audio_tokens\":0},\"completion_tokens_details\":{\"reasoning_tokens\":0,"        \
               "\"audio_tokens\":0,\"accepted_prediction_tokens\":0,"                              \
               "\"rejected_prediction_tokens\":0}}}\n\n"

struct conn {
    int fd;
    bool closed;
    bool streaming;    /* answered a stream request: ticks until finished */
    bool started;      /* its deltas are scheduled */
    bool finished;
    int seq;           /* deltas sent */
    int64_t due_ns;    /* next delta */
    size_t len;        /* bytes in rbuf */
    char *out;         /* pending output (only when a write was short) */
    size_t out_len, out_off;
    char rbuf[RBUF];
};

static struct conn *streams[MAX_STREAMS];
static int nstreams, nstarted, nfinished;
static long long ndeltas;
static int deltas_per_stream, stagger;
static int64_t pace_ns;
static bool go;

static int64_t now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

static void conn_close(int ep, struct conn *c)
{
    if (c->closed)
        return;
    epoll_ctl(ep, EPOLL_CTL_DEL, c->fd, NULL);
    close(c->fd);
    c->closed = true;
    free(c->out);
    c->out = NULL;
    if (!c->streaming)
        free(c); /* streams stay in streams[] (closed) until exit */
}

/* Write or queue behind what is already queued. -1: the connection died. */
static int send_bytes(int ep, struct conn *c, const char *p, size_t n)
{
    if (c->out) {
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

/* One SSE event as one HTTP chunk. */
static int send_event(int ep, struct conn *c, const char *ev, size_t n)
{
    char buf[4096];
    int k = snprintf(buf, sizeof buf, "%zx\r\n", n);
    if ((size_t)k + n + 2 > sizeof buf)
        return -1;
    memcpy(buf + k, ev, n);
    memcpy(buf + k + n, "\r\n", 2);
    return send_bytes(ep, c, buf, (size_t)k + n + 2);
}

static void start_stream(struct conn *c, int64_t at)
{
    c->started = true;
    c->due_ns = at;
    nstarted++;
}

/* The next chunk of a started stream, when it is due. -1: it died. */
static int tick(int ep, struct conn *c)
{
    char ev[1024];
    if (c->seq < deltas_per_stream) {
        int64_t t = now_ns();
        int n = snprintf(ev, sizeof ev,
                         CHUNK_HEAD "\"choices\":[{\"index\":0,\"delta\":{\"content\":\"s=%d t=%lld "
                                    "\"},\"logprobs\":null,\"finish_reason\":null}]}\n\n",
                         c->seq, (long long)t);
        if (send_event(ep, c, ev, (size_t)n))
            return -1;
        c->seq++;
        ndeltas++;
        c->due_ns += pace_ns;
        return 0;
    }
    int n = snprintf(ev, sizeof ev, FINISH_EV);
    int rc = send_event(ep, c, ev, (size_t)n);
    n = snprintf(ev, sizeof ev, USAGE_EV, deltas_per_stream, deltas_per_stream + 12);
    if (!rc)
        rc = send_event(ep, c, ev, (size_t)n);
    if (!rc)
        rc = send_event(ep, c, "data: [DONE]\n\n", 14);
    if (!rc)
        rc = send_bytes(ep, c, "0\r\n\r\n", 5);
    c->finished = true;
    nfinished++;
    return rc;
}

static int reply_text(int ep, struct conn *c, int status, const char *text)
{
    char buf[512];
    int k = snprintf(buf, sizeof buf,
                     "HTTP/1.1 %d %s\r\nContent-Type: text/plain\r\nContent-Length: %zu\r\n\r\n%s",
                     status, status == 200 ? "OK" : "Not Found", strlen(text), text);
    return send_bytes(ep, c, buf, (size_t)k);
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
        if (hlen + clen > RBUF)
            return -1;
        if (c->len < hlen + clen)
            return 0;
        const char *body = c->rbuf + hlen;
        int rc = 0;
        if (strncmp(c->rbuf, "GET /go ", 8) == 0) {
            if (!go) {
                go = true;
                int64_t t0 = now_ns() + 5 * 1000000LL, k = 0, n = 0;
                for (int i = 0; i < nstreams; i++)
                    n += !streams[i]->closed && !streams[i]->started;
                for (int i = 0; i < nstreams; i++)
                    if (!streams[i]->closed && !streams[i]->started)
                        start_stream(streams[i], t0 + (stagger ? pace_ns * k++ / n : 0));
            }
            rc = reply_text(ep, c, 200, "go\n");
        } else if (strncmp(c->rbuf, "GET /stats ", 11) == 0) {
            char s[160];
            snprintf(s, sizeof s, "streams=%d started=%d finished=%d deltas=%lld\n", nstreams,
                     nstarted, nfinished, ndeltas);
            rc = reply_text(ep, c, 200, s);
        } else if (strncmp(c->rbuf, "POST ", 5) == 0 &&
                   memmem(c->rbuf, hlen, "/chat/completions ", 18) &&
                   (memmem(body, clen, "\"stream\":true", 13) ||
                    memmem(body, clen, "\"stream\": true", 14)) &&
                   !c->streaming && nstreams < MAX_STREAMS) {
            const char *h = "HTTP/1.1 200 OK\r\nContent-Type: text/event-stream; charset=utf-8\r\n"
                            "Cache-Control: no-cache\r\nConnection: keep-alive\r\n"
                            "x-request-id: req_bench\r\nopenai-processing-ms: 1\r\n"
                            "Transfer-Encoding: chunked\r\n\r\n";
            rc = send_bytes(ep, c, h, strlen(h));
            if (!rc)
                rc = send_event(ep, c, ROLE_EV, sizeof ROLE_EV - 1);
            c->streaming = true;
            streams[nstreams++] = c;
            if (go)
                start_stream(c, now_ns());
        } else {
            rc = reply_text(ep, c, 404, "not found\n");
        }
        memmove(c->rbuf, c->rbuf + hlen + clen, c->len - hlen - clen);
        c->len -= hlen + clen;
        if (rc)
            return -1;
    }
}

int main(int argc, char **argv)
{
    if (argc != 5) {
        fprintf(stderr, "usage: %s PORT DELTAS PACE_MS STAGGER\n", argv[0]);
        return 2;
    }
    deltas_per_stream = atoi(argv[2]);
    pace_ns = (int64_t)(atof(argv[3]) * 1e6);
    stagger = atoi(argv[4]);
    signal(SIGPIPE, SIG_IGN);
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
        /* the earliest due stream decides how long to sleep */
        int64_t next = INT64_MAX, t = now_ns();
        for (int i = 0; i < nstreams; i++) {
            struct conn *c = streams[i];
            if (c->started && !c->finished && !c->closed && c->due_ns < next)
                next = c->due_ns;
        }
        /* rounded up: a tick may leave up to 1 ms late (its timestamp says
         * when it really left), but the loop never spins */
        int wait_ms = next == INT64_MAX ? -1 : next <= t ? 0 : (int)((next - t + 999999) / 1000000);
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
            if ((evs[i].events & EPOLLOUT) && flush_out(ep, c)) {
                conn_close(ep, c);
                continue;
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
        t = now_ns();
        for (int i = 0; i < nstreams; i++) {
            struct conn *c = streams[i];
            while (c->started && !c->finished && !c->closed && c->due_ns <= t) {
                if (tick(ep, c))
                    conn_close(ep, c);
            }
        }
    }
}
