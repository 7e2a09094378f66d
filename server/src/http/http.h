/* http.h - the HTTP layer: request context, routing, replies, errors.
 *
 * A request arrives on the loop (server.c), is checked (size caps, path
 * decoding, CSRF, routing), then its handler runs on a worker thread with a
 * store handle. The handler fills status + JSON (or an error) and may set
 * on_loop: a continuation that runs on the loop afterwards and becomes
 * responsible for replying (used to start turns and open SSE streams).
 *
 * LIFETIME NOTES: struct api_ctx is created by server.c per request and
 * freed by http_ctx_finish() after the reply is sent. An on_loop
 * continuation that keeps the evhttp_request (SSE) must call
 * http_ctx_detach() to take it, then finish the ctx.
 */
#ifndef COAI_HTTP_H
#define COAI_HTTP_H

#include <event2/http.h>
#include <event2/keyvalq_struct.h>
#include <jansson.h>

#include "../app.h"
#include "../store/store.h"

struct api_ctx;
typedef void (*api_handler_fn)(struct api_ctx *c);

enum route_flags {
    ROUTE_AUTH = 1 << 0,   /* needs a signed-in user (session cookie) */
    ROUTE_LOOP = 1 << 1,   /* handler runs on the loop (must not block), not a worker */
    ROUTE_NOCSRF = 1 << 2, /* unsafe method exempt from the CSRF check (none today) */
    ROUTE_RL_AUTH = 1 << 3,  /* sign-in/registration: strict per-IP limit */
    ROUTE_GENERATE = 1 << 4, /* starts a generation: per-user generation limit */
    ROUTE_CACHE = 1 << 5,    /* GET whose 200 answer may be kept on the loop (respcache.h) */
};

struct route {
    const char *method;    /* "GET", "POST", "PUT", "PATCH", "DELETE" */
    const char *pattern;   /* "/api/v1/chats/{id}": {name} captures one segment */
    api_handler_fn fn;
    unsigned flags;
    const char *summary;   /* one line, for `chatopenaii routes` */
};

#define API_MAX_PARAMS 3

struct api_ctx {
    struct app *app;
    struct evhttp_request *req;   /* borrowed from libevent until the reply */
    const struct route *route;
    char req_id[17];              /* 16 hex chars, echoed as X-Request-Id */
    int64_t start_us;
    const char *method;           /* static string */
    char *path;                   /* decoded path, no query */
    char *params[API_MAX_PARAMS]; /* captured {segments}, in order */
    struct evkeyvalq query;       /* decoded query parameters */
    char *body;                   /* raw body copy (NUL-terminated), NULL when empty */
    size_t body_len;
    json_t *json;                 /* parsed body object (worker), NULL when no body */
    char *cookie_token;           /* session token from the cookie, secret */
    char *user_agent;             /* truncated */
    char *client_ip;
    char *last_event_id;          /* Last-Event-ID header */

    /* worker-side */
    struct store *st;             /* valid only while the handler runs on a worker */
    bool authed;
    struct store_user user;
    struct store_session session;

    /* reply */
    int status;
    json_t *resp;                 /* owned; NULL = no body (204) */
    char *resp_text;              /* owned: resp serialized on the worker, or NULL */
    char *set_cookie;             /* owned Set-Cookie value, or NULL */
    char *allow;                  /* Allow header for 405 */
    int retry_after;              /* Retry-After seconds for 429/503, 0 = none */
    void (*on_loop)(struct api_ctx *c);
    void *loop_data;              /* owned by the continuation */
    void (*loop_data_free)(void *);
    bool detached;                /* request taken by a continuation (SSE) */
    char *cache_key;              /* owned: respcache key when the answer may be kept */
    uint64_t cache_version;       /* store commit count read before the worker's reads */
};

/* ---- handler helpers (worker or loop) ------------------------------------ */

/* Set the reply to an error in the one error shape
 * {"error":{"code":code,"message":message}}. code NULL = app_err_name(e). */
void api_fail(struct api_ctx *c, int status, const char *code, const char *fmt, ...)
    COAI_PRINTF(4, 5);
/* Map a store/app error to a status + code; msg is the client-safe text. */
void api_fail_err(struct api_ctx *c, enum app_err e, const char *msg);
/* Set a JSON reply; takes ownership of body. */
void api_reply_take(struct api_ctx *c, int status, json_t *body);
/* Reply with JSON text built by the handler (valid JSON, NUL-terminated);
 * takes text whatever happens. */
void api_reply_text_take(struct api_ctx *c, int status, char *text);
int api_status_for(enum app_err e);

/* Body field access with validation; each sets a 400 error on c and
 * returns -1 when the field has the wrong type or breaks its limits.
 * *out is borrowed from c->json. Missing optional fields give NULL / 0. */
int api_body_string(struct api_ctx *c, const char *field, bool required, size_t max_bytes,
                    const char **out);
/* A query parameter (borrowed) or NULL. */
const char *api_query(struct api_ctx *c, const char *name);

/* ---- loop side ----------------------------------------------------------- */

/* Send c's reply (status, resp, headers), log the access line, free c. */
void http_ctx_finish(struct api_ctx *c);
/* Take the evhttp_request out of c (for a streaming reply); c->req = NULL. */
struct evhttp_request *http_ctx_detach(struct api_ctx *c);
/* Common response headers (request id, security headers) on any reply. */
void http_add_common_headers(struct evhttp_request *req, const char *req_id);
/* Write one access-log line. */
void http_log_access(const char *req_id, const char *method, const char *path, const char *route,
                     int status, int64_t start_us, const char *user_id, bool stream);

/* ---- server --------------------------------------------------------------- */
int http_server_start(struct app *app, char *err, size_t errlen);
void http_server_stop_accepting(struct app *app);
/* How often accepting paused for the rest of a turn of the loop (at most 32
 * new connections a turn), for /metrics. */
uint64_t http_accept_pauses(void);

/* The route table (api/routes.c). */
extern const struct route api_routes[];
extern const size_t api_routes_count;

#endif
