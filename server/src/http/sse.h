/* sse.h - one server-sent-events reply to a browser: headers, frames,
 * heartbeats, and noticing that the client went away.
 *
 * LIFETIME NOTES: sse_conn_open takes the request (the caller has detached
 * it from its api_ctx). If the client disconnects, on_gone(conn, arg) is
 * called once; the conn is then already dead and freed right after on_gone
 * returns — the callee must drop its pointer. Otherwise the owner ends the
 * stream with sse_conn_close, which frees it (on_gone is not called).
 */
#ifndef COAI_SSE_H
#define COAI_SSE_H

#include <event2/http.h>

#include "../app.h"

struct sse_conn;
typedef void (*sse_gone_fn)(struct sse_conn *conn, void *arg);

struct sse_conn *sse_conn_open(struct app *app, struct evhttp_request *req, const char *req_id,
                               const char *path, int64_t start_us, sse_gone_fn on_gone,
                               void *arg);
/* Write raw, already framed bytes ("id: 3\nevent: delta\ndata: {...}\n\n"). */
/* Hand the connection to another owner: on_gone(conn, arg) is called
 * instead of the previous callback if the client goes away. */
void sse_conn_set_gone(struct sse_conn *c, sse_gone_fn on_gone, void *arg);
void sse_conn_write(struct sse_conn *c, const char *bytes, size_t len);
/* Frame and write one event (id < 0: no id line). */
void sse_conn_event(struct sse_conn *c, long long id, const char *event, const char *data);
void sse_conn_close(struct sse_conn *c);
/* Number of open SSE connections (for metrics and shutdown). */
int sse_conn_count(void);

/* Append one framed event to b ("id: N\nevent: E\ndata: D\n\n"); data must
 * not contain newlines (compact JSON never does). Returns 0 or -1 (cap). */
struct buf;
int sse_frame(struct buf *b, long long id, const char *event, const char *data);

#endif
