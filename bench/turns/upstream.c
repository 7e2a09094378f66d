/* upstream.c - the fake OpenAI-compatible provider of bench/turns: every
 * POST .../chat/completions with "stream":true is answered with a
 * chat.completion.chunk stream framed like the real recordings in
 * ../shared/fixtures (openai-python_text-stop.sse): a role chunk at once,
 * then NCHUNKS content chunks at RATE a second (one HTTP chunk and one
 * write per SSE event, as OpenAI sends them), then a finish_reason "stop"
 * chunk, a choices:[] usage chunk when stream_options.include_usage is
 * asked, and "data: [DONE]". A "max_tokens":M in the request makes it M
 * content chunks (at most NCHUNKS). The content of turn N (read from "bench turn N"
 * in the last user message) is content.h's. A request without "stream":true
 * gets a short chat.completion JSON.
 *
 * One thread, epoll, every stream on one FIFO: the period is the same for
 * all, so a stream re-queued at the tail stays in due order, and a tick
 * costs O(streams due). HTTP/1.1 keep-alive. Prints "ready" when listening
 * and, on SIGTERM/SIGINT, "streams=N chunks=N" before exiting.
 *
 * Usage: upstream PORT NCHUNKS RATE
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

#include "content.h"

#define RBUF 65536
#define HEAD "data: {\"id\":\"chatcmpl-bench%08x\",\"object\":\"chat.completion.chunk\",\"created\":1727346168,\"model\":\"gpt-4o-2024-08-06\",\"system_fingerprint\":\"fp_5050236cbd\",\"choices\":"

struct conn {
    int fd;
    bool closed;
    bool streaming;     /* a stream is being sent: no other answer until it ends */
    int refs;           /* 1 for the socket + 1 while a stream is queued */
    size_t len;
    char *out;          /* pending output (only when a write was short) */
    size_t out_len, out_off;
    char rbuf[RBUF];
};

struct stream {
    struct conn *c;
    unsigned n;         /* turn number */
    unsigned i;         /* next content piece */
    unsigned total;     /* content pieces to send */
    unsigned id;
    bool usage;
    int64_t due_us;
    struct stream *next;
};

static struct stream *q_head, *q_tail;
static unsigned nchunks;
static int64_t period_us;
static unsigned long long n_streams, n_chunks;
static volatile sig_atomic_t stop;

static int64_t now_us(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

static void conn_unref(struct conn *c)
{
    if (--c->refs == 0) {
        free(c->out);
        free(c);
    }
}

static void conn_close(int ep, struct conn *c)
{
    if (c->closed)
        return;
    epoll_ctl(ep, EPOLL_CTL_DEL, c->fd, NULL);
    close(c->fd);
    c->closed = true;
    conn_unref(c);
}

/* Queue or write bytes. Returns -1 if the connection died. */
static int send_bytes(int ep, struct conn *c, const char *p, size_t n)
{
    if (c->closed)
        return -1;
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

/* Append one SSE event "data: <payload>\n\n" as one HTTP chunk to out. */
static size_t chunk_event(char *out, size_t cap, const char *payload, size_t plen)
{
    int k = snprintf(out, cap, "%zx\r\n", plen + 8);
    memcpy(out + k, "data: ", 6);
    memcpy(out + k + 6, payload, plen);
    memcpy(out + k + 6 + plen, "\n\n\r\n", 4);
    return (size_t)k + plen + 10;
}

static size_t content_event(struct stream *s, char *out, size_t cap)
{
    char piece[64], esc[256], payload[1024];
    size_t pl = content_piece(s->n, s->i, piece, sizeof piece);
    content_json_escape(piece, pl, esc, sizeof esc);
    int k = snprintf(payload, sizeof payload,
                     HEAD "[{\"index\":0,\"delta\":{\"content\":\"%s\"},\"logprobs\":null,"
                          "\"finish_reason\":null}]}",
                     s->id, esc);
    return chunk_event(out, cap, payload + 6, (size_t)k - 6);
}

/* The end of a stream: finish_reason, usage (if asked), [DONE], last chunk. */
static size_t tail_events(struct stream *s, char *out, size_t cap)
{
    char payload[1024];
    size_t len = 0;
    int k = snprintf(payload, sizeof payload,
                     HEAD "[{\"index\":0,\"delta\":{},\"logprobs\":null,\"finish_reason\":\"stop\"}]}",
                     s->id);
    len += chunk_event(out + len, cap - len, payload + 6, (size_t)k - 6);
    if (s->usage) {
        k = snprintf(payload, sizeof payload,
                     HEAD "[],\"usage\":{\"prompt_tokens\":14,\"completion_tokens\":%u,"
                          "\"total_tokens\":%u,\"completion_tokens_details\":{\"reasoning_tokens\":0}}}",
                     s->id, s->total, s->total + 14);
        len += chunk_event(out + len, cap - len, payload + 6, (size_t)k - 6);
    }
    len += chunk_event(out + len, cap - len, "[DONE]", 6);
    memcpy(out + len, "0\r\n\r\n", 5);
    return len + 5;
}

static void enqueue(struct stream *s)
{
    s->next = NULL;
    if (q_tail)
        q_tail->next = s;
    else
        q_head = s;
    q_tail = s;
}

static void start_stream(int ep, struct conn *c, const char *body, size_t blen)
{
    static unsigned next_id;
    struct stream *s = calloc(1, sizeof *s);
    s->c = c;
    s->id = ++next_id;
    s->usage = memmem(body, blen, "\"include_usage\":true", 20) != NULL;
    const char *t = memmem(body, blen, "bench turn ", 11);
    if (t)
        s->n = (unsigned)strtoul(t + 11, NULL, 10);
    const char *mt = memmem(body, blen, "\"max_tokens\":", 13);
    s->total = mt ? (unsigned)strtoul(mt + 13, NULL, 10) : nchunks;
    if (s->total == 0 || s->total > nchunks)
        s->total = nchunks;
    c->streaming = true;
    c->refs++;
    n_streams++;
    char out[2048], payload[1024];
    const char *h = "HTTP/1.1 200 OK\r\nContent-Type: text/event-stream; charset=utf-8\r\n"
                    "Cache-Control: no-cache\r\nConnection: keep-alive\r\n"
                    "x-request-id: req_bench\r\nopenai-processing-ms: 1\r\n"
                    "Transfer-Encoding: chunked\r\n\r\n";
    size_t len = strlen(h);
    memcpy(out, h, len);
    int k = snprintf(payload, sizeof payload,
                     HEAD "[{\"index\":0,\"delta\":{\"role\":\"assistant\",\"content\":\"\","
                          "\"refusal\":null},\"logprobs\":null,\"finish_reason\":null}]}",
                     s->id);
    len += chunk_event(out + len, sizeof out - len, payload + 6, (size_t)k - 6);
    (void)send_bytes(ep, c, out, len);
    s->due_us = now_us() + period_us;
    enqueue(s);
}

static void send_json(int ep, struct conn *c, int status, const char *body)
{
    char out[1024];
    int k = snprintf(out, sizeof out,
                     "HTTP/1.1 %d %s\r\nContent-Type: application/json\r\nConnection: keep-alive\r\n"
                     "Content-Length: %zu\r\n\r\n%s",
                     status, status == 200 ? "OK" : "Not Found", strlen(body), body);
    (void)send_bytes(ep, c, out, (size_t)k);
}

/* Answer every complete request in rbuf. Returns -1 to close. */
static int handle(int ep, struct conn *c)
{
    while (!c->streaming) {
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
        if (memmem(c->rbuf, hlen, "chunked", 7) || hlen + clen > RBUF)
            return -1;
        if (c->len < hlen + clen)
            return 0;
        const char *body = c->rbuf + hlen;
        if (strncmp(c->rbuf, "POST ", 5) != 0 || !memmem(c->rbuf, hlen, "/chat/completions ", 18))
            send_json(ep, c, 404, "{\"error\":{\"message\":\"not found\",\"type\":\"invalid_request_error\"}}");
        else if (memmem(body, clen, "\"stream\":true", 13) || memmem(body, clen, "\"stream\": true", 14))
            start_stream(ep, c, body, clen);
        else
            send_json(ep, c, 200,
                      "{\"id\":\"chatcmpl-bench\",\"object\":\"chat.completion\",\"created\":1727346168,"
                      "\"model\":\"gpt-4o-2024-08-06\",\"choices\":[{\"index\":0,\"message\":{\"role\":"
                      "\"assistant\",\"content\":\"Bench title\",\"refusal\":null},\"logprobs\":null,"
                      "\"finish_reason\":\"stop\"}],\"usage\":{\"prompt_tokens\":9,"
                      "\"completion_tokens\":2,\"total_tokens\":11}}");
        memmove(c->rbuf, c->rbuf + hlen + clen, c->len - hlen - clen);
        c->len -= hlen + clen;
    }
    return 0;
}

/* Send what is due: one content chunk per stream, or its tail. */
static void tick(int ep)
{
    char out[4096];
    int64_t t = now_us();
    while (q_head && q_head->due_us <= t) {
        struct stream *s = q_head;
        q_head = s->next;
        if (!q_head)
            q_tail = NULL;
        struct conn *c = s->c;
        if (c->closed) {
            conn_unref(c);
            free(s);
            continue;
        }
        bool dead = false;
        if (s->i < s->total) {
            size_t len = content_event(s, out, sizeof out);
            n_chunks++;
            s->i++;
            if (send_bytes(ep, c, out, len) == 0) {
                s->due_us += period_us;
                enqueue(s);
                continue;
            }
            dead = true;
        } else {
            size_t len = tail_events(s, out, sizeof out);
            c->streaming = false;
            dead = send_bytes(ep, c, out, len) != 0 || handle(ep, c) != 0;
        }
        c->refs--; /* the stream's; the socket's keeps c until conn_close */
        if (dead)
            conn_close(ep, c);
        free(s);
    }
}

static void on_signal(int sig)
{
    (void)sig;
    stop = 1;
}

int main(int argc, char **argv)
{
    if (argc != 4) {
        fprintf(stderr, "usage: %s PORT NCHUNKS RATE\n", argv[0]);
        return 2;
    }
    nchunks = (unsigned)strtoul(argv[2], NULL, 10);
    period_us = (int64_t)(1e6 / strtod(argv[3], NULL));
    signal(SIGPIPE, SIG_IGN);
    struct sigaction sa = {.sa_handler = on_signal};
    sigaction(SIGTERM, &sa, NULL);
    sigaction(SIGINT, &sa, NULL);
    int ls = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK, 0);
    int one = 1;
    setsockopt(ls, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)strtoul(argv[1], NULL, 10))};
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
    while (!stop) {
        int wait_ms = -1;
        if (q_head) {
            int64_t d = q_head->due_us - now_us();
            wait_ms = d <= 0 ? 0 : (int)((d + 999) / 1000);
        }
        int n = epoll_wait(ep, evs, 256, wait_ms);
        for (int i = 0; i < n; i++) {
            struct conn *c = evs[i].data.ptr;
            if (!c) {
                int fd;
                while ((fd = accept4(ls, NULL, NULL, SOCK_NONBLOCK)) >= 0) {
                    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
                    c = calloc(1, sizeof *c);
                    c->fd = fd;
                    c->refs = 1;
                    struct epoll_event e2 = {.events = EPOLLIN, .data.ptr = c};
                    epoll_ctl(ep, EPOLL_CTL_ADD, fd, &e2);
                }
                continue;
            }
            if (c->closed)
                continue;
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
        tick(ep);
    }
    printf("streams=%llu chunks=%llu\n", n_streams, n_chunks);
    return 0;
}
