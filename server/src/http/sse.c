/* sse.c - chunked text/event-stream replies with heartbeats. The close
 * callback is the only way libevent tells us a streaming client left; after
 * it, evhttp_send_reply_end must still be called to free the request.
 *
 * Fan-out: one turn event goes to every subscriber, so the cost of one write
 * is paid thousands of times. On a plain-TCP chunked reply whose output
 * buffer is empty (the usual case: the client keeps up), a write is one
 * sendmsg of [chunk size, the caller's bytes, CRLF] straight to the socket,
 * with no copy and no evbuffer; evhttp's path (a temporary evbuffer, the
 * chunk framing, arming and disarming EPOLLOUT, a writev on the next loop
 * iteration) cost three syscalls and several allocations per subscriber.
 * Whatever the socket does not take goes, framed, into the connection's
 * output buffer, and while that is not empty every write queues behind it,
 * so bytes never overtake each other; libevent drains it and reports
 * errors and closes as before. TLS and unchunked (HTTP/1.0) replies take
 * evhttp's path. */
#include "sse.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/uio.h>

#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/keyvalq_struct.h>

#include "../lib/buf.h"
#include "../lib/log.h"
#include "http.h"
#include "security.h"

struct sse_conn {
    struct app *app;
    struct evhttp_request *req;
    struct evhttp_connection *evcon;
    struct event *heartbeat;
    struct evbuffer *out;          /* the connection's output; NULL: evhttp's path only */
    evutil_socket_t fd;            /* its socket, for direct writes */
    sse_gone_fn on_gone;
    void *arg;
    char req_id[17];
    char *path;
    int64_t start_us;
};

static int g_open;

int sse_conn_count(void)
{
    return g_open;
}

int sse_frame(struct buf *b, long long id, const char *event, const char *data)
{
    int rc = 0;
    if (id >= 0)
        rc = buf_printf(b, "id: %lld\n", id);
    if (rc == 0)
        rc = buf_printf(b, "event: %s\ndata: %s\n\n", event, data);
    return rc;
}

static void conn_free(struct sse_conn *c)
{
    event_free(c->heartbeat);
    http_log_access(c->req_id, "GET", c->path, "/api/v1/turns/{id}/events", 200, c->start_us,
                    NULL, true);
    free(c->path);
    free(c);
    g_open--;
}

static void on_close(struct evhttp_connection *evcon, void *arg)
{
    struct sse_conn *c = arg;
    evhttp_connection_set_closecb(evcon, NULL, NULL);
    struct evhttp_request *req = c->req;
    c->req = NULL;
    if (c->on_gone)
        c->on_gone(c, c->arg);
    /* The request was detached from its connection; this frees it. */
    if (req)
        evhttp_send_reply_end(req);
    conn_free(c);
}

static void on_heartbeat(evutil_socket_t fd, short what, void *arg)
{
    struct sse_conn *c = arg;
    sse_conn_write(c, ": ping\n\n", 8);
}

struct sse_conn *sse_conn_open(struct app *app, struct evhttp_request *req, const char *req_id,
                               const char *path, int64_t start_us, sse_gone_fn on_gone,
                               void *arg)
{
    struct sse_conn *c = xcalloc(1, sizeof *c);
    c->app = app;
    c->req = req;
    c->on_gone = on_gone;
    c->arg = arg;
    snprintf(c->req_id, sizeof c->req_id, "%s", req_id);
    c->path = xstrdup(path);
    c->start_us = start_us;
    g_open++;
    http_add_common_headers(req, req_id);
    struct evkeyvalq *h = evhttp_request_get_output_headers(req);
    evhttp_add_header(h, "Content-Type", "text/event-stream; charset=utf-8");
    evhttp_add_header(h, "Cache-Control", "no-store");
    evhttp_add_header(h, "X-Accel-Buffering", "no");
    c->evcon = evhttp_request_get_connection(req);
    evhttp_send_reply_start(req, 200, "OK");
    if (c->evcon)
        evhttp_connection_set_closecb(c->evcon, on_close, c);
    /* evhttp chose chunked encoding (HTTP/1.1): frames can be written here */
    const char *te = evhttp_find_header(h, "Transfer-Encoding");
    if (c->evcon && te && strcmp(te, "chunked") == 0 && !security_tls_enabled()) {
        struct bufferevent *bev = evhttp_connection_get_bufferevent(c->evcon);
        c->fd = bev ? bufferevent_getfd(bev) : -1;
        if (c->fd >= 0)
            c->out = bufferevent_get_output(bev);
    }
    c->heartbeat = event_new(app->base, -1, EV_PERSIST, on_heartbeat, c);
    struct timeval tv = {app->cfg.heartbeat_ms / 1000, (app->cfg.heartbeat_ms % 1000) * 1000};
    event_add(c->heartbeat, &tv);
    /* Tell EventSource clients how soon to reconnect. */
    sse_conn_write(c, "retry: 2000\n\n", 13);
    return c;
}

void sse_conn_set_gone(struct sse_conn *c, sse_gone_fn on_gone, void *arg)
{
    c->on_gone = on_gone;
    c->arg = arg;
}

/* The chunk-size line of an HTTP/1.1 chunk of len bytes; returns its length. */
static size_t chunk_head(char *p, size_t len)
{
    char tmp[2 * sizeof len];
    size_t n = 0;
    do {
        tmp[n++] = "0123456789abcdef"[len & 15];
        len >>= 4;
    } while (len);
    for (size_t i = 0; i < n; i++)
        p[i] = tmp[n - 1 - i];
    p[n] = '\r';
    p[n + 1] = '\n';
    return n + 2;
}

void sse_conn_write(struct sse_conn *c, const char *bytes, size_t len)
{
    if (!c->req || len == 0)
        return;
    if (c->out) {
        char head[2 * sizeof len + 2];
        struct iovec iov[3] = {{head, chunk_head(head, len)}, {(void *)bytes, len}, {"\r\n", 2}};
        size_t total = iov[0].iov_len + len + 2, sent = 0;
        if (evbuffer_get_length(c->out) == 0) {
            struct msghdr mh = {.msg_iov = iov, .msg_iovlen = 3};
            ssize_t w;
            do
                w = sendmsg(c->fd, &mh, MSG_NOSIGNAL | MSG_DONTWAIT);
            while (w < 0 && errno == EINTR);
            if (w > 0)
                sent = (size_t)w;
            if (sent == total)
                return;
            /* the rest (or all of it, on EAGAIN or an error, which libevent
             * then meets itself and reports) waits in the output buffer */
        }
        for (int i = 0; i < 3; i++) {
            if (sent >= iov[i].iov_len) {
                sent -= iov[i].iov_len;
                continue;
            }
            evbuffer_add(c->out, (char *)iov[i].iov_base + sent, iov[i].iov_len - sent);
            sent = 0;
        }
        return;
    }
    struct evbuffer *b = evbuffer_new();
    evbuffer_add(b, bytes, len);
    evhttp_send_reply_chunk(c->req, b);
    evbuffer_free(b);
}

void sse_conn_event(struct sse_conn *c, long long id, const char *event, const char *data)
{
    struct buf b;
    buf_init(&b, 64 * 1024 * 1024);
    if (sse_frame(&b, id, event, data) == 0)
        sse_conn_write(c, b.p, b.len);
    buf_cleanup(&b);
}

void sse_conn_close(struct sse_conn *c)
{
    if (!c)
        return;
    if (c->req) {
        struct evhttp_connection *evcon = evhttp_request_get_connection(c->req);
        if (evcon)
            evhttp_connection_set_closecb(evcon, NULL, NULL);
        security_reply_end(c->req);
        c->req = NULL;
    }
    conn_free(c);
}
