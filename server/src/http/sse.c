/* sse.c - chunked text/event-stream replies with heartbeats. The close
 * callback is the only way libevent tells us a streaming client left; after
 * it, evhttp_send_reply_end must still be called to free the request. */
#include "sse.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <event2/buffer.h>
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

void sse_conn_write(struct sse_conn *c, const char *bytes, size_t len)
{
    if (!c->req || len == 0)
        return;
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
