/* server.c - evhttp set-up and the per-request path: caps, decoding,
 * routing, CSRF, dispatch to the worker pool, and the reply. Resource
 * handlers live in api/; static files in static.c; SSE in sse.c. */
#include "http.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>

#include <event2/buffer.h>
#include <event2/event_struct.h>
#include <event2/listener.h>
#include <event2/http_struct.h>
#include <event2/keyvalq_struct.h>

#include "../lib/buf.h"
#include "../lib/crypto.h"
#include "../lib/caps.h"
#include "../lib/lazy.h"
#include "../lib/log.h"
#include "../lib/pool.h"
#include "../lib/ratelimit.h"
#include "../lib/utf8.h"
#include "../gateway/gateway.h"
#include "../store/store.h"
#include "auth.h"
#include "respcache.h"
#include "metrics.h"
#include "route.h"
#include "security.h"
#include "sentry.h"
#include "static.h"

/* ---- error replies ------------------------------------------------------- */

int api_status_for(enum app_err e)
{
    switch (e) {
    case APP_OK: return 200;
    case APP_EINVAL: return 400;
    case APP_EAUTH: return 401;
    case APP_EFORBIDDEN: return 403;
    case APP_ENOTFOUND: return 404;
    case APP_ECONFLICT: return 409;
    case APP_ETOOBIG: return 413;
    case APP_EUPSTREAM: return 502;
    default: return 500;
    }
}

static json_t *error_body(const char *code, const char *msg)
{
    return json_pack("{s:{s:s,s:s}}", "error", "code", code, "message", msg);
}

void api_reply_take(struct api_ctx *c, int status, json_t *body)
{
    json_decref(c->resp);
    free(c->resp_text); /* stale once the reply changes */
    c->resp_text = NULL;
    c->resp = body;
    c->status = status;
}

void api_reply_text_take(struct api_ctx *c, int status, char *text)
{
    json_decref(c->resp);
    c->resp = NULL;
    free(c->resp_text);
    c->resp_text = text;
    c->status = status;
}

void api_fail(struct api_ctx *c, int status, const char *code, const char *fmt, ...)
{
    char msg[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    /* Messages may quote client input; keep them valid UTF-8. */
    size_t n = utf8_truncate(msg, strlen(msg), sizeof msg - 1);
    msg[n] = '\0';
    if (!utf8_valid(msg, n))
        snprintf(msg, sizeof msg, "invalid request");
    api_reply_take(c, status, error_body(code, msg));
}

void api_fail_err(struct api_ctx *c, enum app_err e, const char *msg)
{
    int status = api_status_for(e);
    if (status >= 500) {
        log_error("request failed", "request_id", c->req_id, "error", app_err_name(e),
                  "detail", c->st ? store_errmsg(c->st) : "", NULL);
        msg = "internal error; the request id identifies it in the server log";
    }
    api_fail(c, status, app_err_name(e), "%s", msg);
}

int api_body_string(struct api_ctx *c, const char *field, bool required, size_t max_bytes,
                    const char **out)
{
    *out = NULL;
    json_t *v = c->json ? json_object_get(c->json, field) : NULL;
    if (!v || json_is_null(v)) {
        if (required) {
            api_fail(c, 400, "invalid_request", "field \"%s\" is required", field);
            return -1;
        }
        return 0;
    }
    if (!json_is_string(v)) {
        api_fail(c, 400, "invalid_request", "field \"%s\" must be a string", field);
        return -1;
    }
    if (json_string_length(v) > max_bytes) {
        api_fail(c, 400, "invalid_request", "field \"%s\" is longer than %zu bytes", field,
                 max_bytes);
        return -1;
    }
    if (strlen(json_string_value(v)) != json_string_length(v)) {
        api_fail(c, 400, "invalid_request", "field \"%s\" contains a NUL character", field);
        return -1;
    }
    *out = json_string_value(v);
    return 0;
}

const char *api_query(struct api_ctx *c, const char *name)
{
    return evhttp_find_header(&c->query, name);
}

/* ---- reply and logging --------------------------------------------------- */

void http_add_common_headers(struct evhttp_request *req, const char *req_id)
{
    struct evkeyvalq *h = evhttp_request_get_output_headers(req);
    evhttp_add_header(h, "X-Request-Id", req_id);
    security_headers(req);
    const char *origin = security_cors_origin(req);
    if (origin) {
        security_cors_headers(req, origin, strncmp(evhttp_request_get_uri(req), "/v1/", 4) != 0);
        evhttp_add_header(h, "Vary", "Origin");
    }
}

void http_log_access(const char *req_id, const char *method, const char *path, const char *route,
                     int status, int64_t start_us, const char *user_id, bool stream)
{
    metrics_request(route, method, status, mono_us() - start_us);
    if (!log_enabled(LOG_INFO))
        return;
    char st[16], dur[32];
    snprintf(st, sizeof st, "=%d", status);
    snprintf(dur, sizeof dur, "=%lld", (long long)(mono_us() - start_us));
    log_kv(LOG_INFO, "request", "request_id", req_id, "method", method, "path", path, "status",
           st, "duration_us", dur, "user_id", (user_id && *user_id) ? user_id : NULL, "stream",
           stream ? "=true" : "=false", NULL);
}

static const char *reason_for(int status)
{
    switch (status) {
    case 200: return "OK";
    case 201: return "Created";
    case 202: return "Accepted";
    case 204: return "No Content";
    case 400: return "Bad Request";
    case 401: return "Unauthorized";
    case 403: return "Forbidden";
    case 404: return "Not Found";
    case 405: return "Method Not Allowed";
    case 409: return "Conflict";
    case 413: return "Payload Too Large";
    case 415: return "Unsupported Media Type";
    case 429: return "Too Many Requests";
    case 431: return "Request Header Fields Too Large";
    case 500: return "Internal Server Error";
    case 502: return "Bad Gateway";
    case 503: return "Service Unavailable";
    default: return "Unknown";
    }
}

static void ctx_free(struct api_ctx *c)
{
    free(c->path);
    for (int i = 0; i < API_MAX_PARAMS; i++)
        free(c->params[i]);
    evhttp_clear_headers(&c->query);
    free(c->body);
    json_decref(c->json);
    if (c->cookie_token) {
        secure_wipe(c->cookie_token, strlen(c->cookie_token));
        free(c->cookie_token);
    }
    free(c->user_agent);
    free(c->client_ip);
    free(c->last_event_id);
    store_user_clear(&c->user);
    store_session_clear(&c->session);
    json_decref(c->resp);
    free(c->resp_text);
    free(c->set_cookie);
    free(c->allow);
    free(c->cache_key);
    if (c->loop_data && c->loop_data_free)
        c->loop_data_free(c->loop_data);
    free(c);
}

struct evhttp_request *http_ctx_detach(struct api_ctx *c)
{
    struct evhttp_request *r = c->req;
    c->req = NULL;
    c->detached = true;
    return r;
}

static void resp_text_free(const void *data, size_t len, void *arg)
{
    free((void *)data);
}

void http_ctx_finish(struct api_ctx *c)
{
    if (c->req) {
        struct evhttp_request *req = c->req;
        http_add_common_headers(req, c->req_id);
        struct evkeyvalq *h = evhttp_request_get_output_headers(req);
        evhttp_add_header(h, "Cache-Control", "no-store");
        if (c->set_cookie)
            evhttp_add_header(h, "Set-Cookie", c->set_cookie);
        if (c->allow)
            evhttp_add_header(h, "Allow", c->allow);
        if (c->retry_after > 0) {
            char ra[16];
            snprintf(ra, sizeof ra, "%d", c->retry_after);
            evhttp_add_header(h, "Retry-After", ra);
        }
        if (c->status == 0)
            api_fail(c, 500, "internal_error", "handler produced no reply");
        struct evbuffer *out = NULL;
        if ((c->resp || c->resp_text) && c->status != 204) {
            evhttp_add_header(h, "Content-Type", "application/json; charset=utf-8");
            char *s = c->resp_text ? c->resp_text : json_dumps(c->resp, JSON_COMPACT);
            c->resp_text = NULL;
            out = evbuffer_new();
            if (s) /* handed over without a copy; freed when sent */
                evbuffer_add_reference(out, s, strlen(s), resp_text_free, NULL);
        }
        if (c->status >= 500 && sentry_enabled())
            sentry_capture(c->app, "error", "server error answer",
                           json_pack("{s:s,s:s,s:s,s:i}", "route",
                                     c->route ? c->route->pattern : "-", "method", c->method,
                                     "request_id", c->req_id, "status", c->status));
        evhttp_send_reply(req, c->status, reason_for(c->status), out);
        if (out)
            evbuffer_free(out);
        http_log_access(c->req_id, c->method, c->path ? c->path : "-",
                        c->route ? c->route->pattern : (c->path ? c->path : "-"), c->status,
                        c->start_us, c->user.id, false);
    }
    ctx_free(c);
}

/* ---- routing -------------------------------------------------------------- */

static const char *method_name(enum evhttp_cmd_type t)
{
    switch (t) {
    case EVHTTP_REQ_GET: return "GET";
    case EVHTTP_REQ_POST: return "POST";
    case EVHTTP_REQ_HEAD: return "HEAD";
    case EVHTTP_REQ_PUT: return "PUT";
    case EVHTTP_REQ_DELETE: return "DELETE";
    case EVHTTP_REQ_OPTIONS: return "OPTIONS";
    case EVHTTP_REQ_TRACE: return "TRACE";
    case EVHTTP_REQ_CONNECT: return "CONNECT";
    case EVHTTP_REQ_PATCH: return "PATCH";
    }
    return "?";
}

/* ---- CSRF ------------------------------------------------------------------ */

/* Unsafe methods need the custom header (a cross-site form cannot send it,
 * and a cross-site fetch that sends it needs a CORS preflight we never
 * grant) and, when the browser sends Origin, an Origin whose host:port is
 * the Host the request was sent to. */
static bool csrf_ok(struct evhttp_request *req, const char **why)
{
    struct evkeyvalq *h = evhttp_request_get_input_headers(req);
    const char *xrw = evhttp_find_header(h, "X-Requested-With");
    if (!xrw || strcasecmp(xrw, "chatopenaii") != 0) {
        *why = "missing X-Requested-With: chatopenaii header";
        return false;
    }
    const char *origin = evhttp_find_header(h, "Origin");
    if (origin) {
        const char *host = evhttp_find_header(h, "Host");
        const char *o = NULL;
        if (strncmp(origin, "http://", 7) == 0)
            o = origin + 7;
        else if (strncmp(origin, "https://", 8) == 0)
            o = origin + 8;
        if ((!o || !host || strcasecmp(o, host) != 0) && !security_cors_origin(req)) {
            *why = "cross-origin request refused";
            return false;
        }
    }
    const char *sfs = evhttp_find_header(h, "Sec-Fetch-Site");
    if (sfs && strcmp(sfs, "same-origin") != 0 && strcmp(sfs, "none") != 0 &&
        !security_cors_origin(req)) {
        *why = "cross-site request refused";
        return false;
    }
    return true;
}

/* ---- dispatch ------------------------------------------------------------- */

static void work_cb(void *arg, void *worker_ctx)
{
    struct api_ctx *c = arg;
    c->st = worker_ctx;
    if (c->cache_key) /* before any read: see respcache.h */
        c->cache_version = store_sqlite_commits();
    if (c->body_len > 0) {
        json_error_t jerr;
        c->json = json_loadb(c->body, c->body_len, JSON_REJECT_DUPLICATES, &jerr);
        if (!c->json) {
            api_fail(c, 400, "invalid_json", "request body is not valid JSON: %s (line %d, column %d)",
                     jerr.text, jerr.line, jerr.column);
            goto out;
        }
        if (!json_is_object(c->json)) {
            api_fail(c, 400, "invalid_json", "request body must be a JSON object");
            goto out;
        }
    }
    if (c->route->flags & ROUTE_AUTH) {
        enum app_err e = auth_session_resolve(c);
        if (e != APP_OK) {
            if (e == APP_EAUTH)
                api_fail(c, 401, "unauthorized", "sign in first (no valid session)");
            else
                api_fail_err(c, e, "session lookup failed");
            goto out;
        }
    }
    if (c->authed) {
        char key[64];
        int ra = 0;
        struct config *cfg = &c->app->cfg;
        snprintf(key, sizeof key, "api:%s", c->user.id);
        /* On the worker: with Redis these are shared by all instances. */
        if (!ratelimit_shared_take(c->app->rl, key, cfg->rate_api, &ra)) {
            c->retry_after = ra;
            api_fail(c, 429, "rate_limited", "too many requests; try again in %d s", ra);
            goto out;
        }
        snprintf(key, sizeof key, "gen:%s", c->user.id);
        if ((c->route->flags & ROUTE_GENERATE) &&
            !ratelimit_shared_take(c->app->rl, key, cfg->rate_generate, &ra)) {
            c->retry_after = ra;
            api_fail(c, 429, "rate_limited",
                     "too many answers requested; try again in %d s", ra);
            goto out;
        }
    }
    c->route->fn(c);
out:
    c->st = NULL;
    /* Serialize here, on the worker: a large body (a long chat) would
     * otherwise be dumped on the event loop. A continuation that will run on
     * the loop may still change the reply, so it keeps the tree. */
    if (c->resp && c->status != 204 && !(c->on_loop && c->status < 400))
        c->resp_text = json_dumps(c->resp, JSON_COMPACT);
}

static void done_cb(void *arg)
{
    struct api_ctx *c = arg;
    if (c->cache_key && c->status == 200 && c->resp_text && c->authed)
        respcache_put(c->app->respcache, c->cache_key, c->resp_text, strlen(c->resp_text),
                      c->cache_version, c->user.id, c->session.expires_at,
                      c->session.last_seen_at);
    if (c->on_loop && c->status < 400) {
        void (*k)(struct api_ctx *) = c->on_loop;
        c->on_loop = NULL;
        k(c); /* takes over: it calls http_ctx_finish */
        return;
    }
    http_ctx_finish(c);
}

static void reply_now(struct api_ctx *c, int status, const char *code, const char *msg)
{
    api_fail(c, status, code, "%s", msg);
    http_ctx_finish(c);
}

/* RFC 9110 token characters (header field names). */
static bool is_tchar(unsigned char ch)
{
    return (ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || (ch >= '0' && ch <= '9') ||
           (ch && strchr("!#$%&'*+-.^_`|~", ch));
}

/* Size of the request line and headers; *bad_name set when a header name is
 * not a token. libevent keeps "Name : v" as a header called "Name ", which
 * a proxy in front may read as "Name" (RFC 9112 5.1: answer 400). */
static size_t header_bytes(struct evhttp_request *req, bool *bad_name)
{
    size_t n = strlen(evhttp_request_get_uri(req)) + 16;
    struct evkeyval *kv;
    *bad_name = false;
    for (kv = evhttp_request_get_input_headers(req)->tqh_first; kv; kv = kv->next.tqe_next) {
        const unsigned char *k = (const unsigned char *)kv->key;
        if (!*k)
            *bad_name = true;
        for (; *k; k++)
            if (!is_tchar(*k))
                *bad_name = true;
        n += strlen(kv->key) + strlen(kv->value) + 4;
    }
    return n;
}

/* A query string whose parts decode to a NUL (%00) or to invalid UTF-8:
 * the decoded C strings would silently stop short. */
static bool query_bad(const char *rawq, const struct evkeyvalq *q)
{
    for (const char *p = strchr(rawq, '%'); p; p = strchr(p + 1, '%'))
        if (p[1] == '0' && p[2] == '0')
            return true;
    for (const struct evkeyval *kv = q->tqh_first; kv; kv = kv->next.tqe_next)
        if (!utf8_valid(kv->key, strlen(kv->key)) || !utf8_valid(kv->value, strlen(kv->value)))
            return true;
    return false;
}

static void health_reply(struct api_ctx *c);
static void metrics_reply(struct api_ctx *c);
static void auth_limit_done(void *arg, bool ok, int retry_after_s);
static void dispatch(struct api_ctx *c);

/* Request ids correlate log lines, answers and error reports; they need to
 * be unique and not guessable in sequence, not secret: a counter through a
 * bijective mix keyed once from the CSPRNG (no syscall per request, unlike
 * RAND_bytes, which also checks getpid each call). Loop thread only. */
static void request_id(char out[17])
{
    static uint64_t key, n;
    if (!key && (crypto_random(&key, sizeof key) != 0 || !key))
        key = (uint64_t)mono_us() | 1;
    uint64_t x = key + ++n * 0x9e3779b97f4a7c15ULL; /* splitmix64 */
    x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ULL;
    x = (x ^ (x >> 27)) * 0x94d049bb133111ebULL;
    x ^= x >> 31;
    snprintf(out, 17, "%016llx", (unsigned long long)x);
}

static void on_request(struct evhttp_request *req, void *arg)
{
    struct app *app = arg;
    struct api_ctx *c = xcalloc(1, sizeof *c);
    c->app = app;
    c->req = req;
    c->start_us = mono_us();
    request_id(c->req_id);
    c->query.tqh_first = NULL;
    c->query.tqh_last = &c->query.tqh_first;
    c->method = method_name(evhttp_request_get_command(req));
    app->requests_total++;

    struct evkeyvalq *in = evhttp_request_get_input_headers(req);
    bool bad_name;
    if (header_bytes(req, &bad_name) > LIMIT_REQUEST_HEADERS)
        return reply_now(c, 431, "headers_too_large", "request headers are too large");
    if (bad_name)
        return reply_now(c, 400, "invalid_header",
                         "a request header name is not a valid token (no spaces before the colon)");

    const struct evhttp_uri *uri = evhttp_request_get_evhttp_uri(req);
    const char *rawpath = uri ? evhttp_uri_get_path(uri) : NULL;
    if (!rawpath || rawpath[0] != '/')
        return reply_now(c, 400, "invalid_path", "request path must start with /");
    size_t plen = 0;
    char *path = evhttp_uridecode(rawpath, 0, &plen);
    if (!path)
        return reply_now(c, 400, "invalid_path", "request path is not valid percent-encoding");
    if (plen != strlen(path) || !utf8_valid(path, plen)) {
        free(path);
        return reply_now(c, 400, "invalid_path", "request path is not valid UTF-8");
    }
    c->path = path;
    const char *rawq = uri ? evhttp_uri_get_query(uri) : NULL;
    if (rawq && evhttp_parse_query_str(rawq, &c->query) != 0)
        return reply_now(c, 400, "invalid_query", "query string is malformed");
    if (rawq && query_bad(rawq, &c->query))
        return reply_now(c, 400, "invalid_query", "query string decodes to a NUL or invalid UTF-8");

    if (evhttp_request_get_command(req) == EVHTTP_REQ_OPTIONS) {
        int st = security_preflight(req, c->req_id);
        http_log_access(c->req_id, c->method, c->path, "preflight", st, c->start_us, NULL, false);
        c->req = NULL;
        http_ctx_finish(c);
        return;
    }
    c->client_ip = security_client_ip(req);

    /* Non-API paths: health, metrics and static files, on the loop. */
    if (strcmp(path, "/metrics") == 0) {
        metrics_reply(c);
        return;
    }
    if (strcmp(path, "/healthz") == 0 || strcmp(path, "/readyz") == 0) {
        health_reply(c);
        return;
    }
    /* An API client is here: libcurl (lib/lazy.h) loads off the loop now,
     * so the first provider request does not wait the ~20 ms it takes. */
    if (strncmp(path, "/api/", 5) == 0 || strncmp(path, "/v1/", 4) == 0)
        lazy_preload(LAZY_CURL);
    if (strncmp(path, "/v1/", 4) == 0) {
        gateway_handle(app, req, path, c->req_id, c->start_us);
        c->req = NULL; /* the gateway replies */
        http_ctx_finish(c);
        return;
    }
    if (strncmp(path, "/api/", 5) != 0 && strcmp(path, "/api") != 0) {
        int st = static_serve(app->web, app, req, c->path, c->req_id);
        http_log_access(c->req_id, c->method, c->path, "static", st, c->start_us, NULL, false);
        c->req = NULL;
        http_ctx_finish(c);
        return;
    }

    /* Route. */
    const struct route *match = NULL;
    struct buf allow;
    buf_init(&allow, 256);
    bool path_known = false;
    for (size_t i = 0; i < api_routes_count; i++) {
        const struct route *r = &api_routes[i];
        if (!route_match(r->pattern, path, c->params))
            continue;
        path_known = true;
        if (allow.len)
            (void)buf_append_str(&allow, ", ");
        (void)buf_append_str(&allow, r->method);
        if (strcmp(r->method, c->method) == 0) {
            match = r;
            break;
        }
    }
    if (!match) {
        if (path_known) {
            c->allow = buf_take(&allow, NULL);
            return reply_now(c, 405, "method_not_allowed", "method not allowed on this path");
        }
        buf_cleanup(&allow);
        return reply_now(c, 404, "not_found", "no such API endpoint");
    }
    buf_cleanup(&allow);
    /* Re-match to get this route's captures (the loop may have matched others). */
    route_match(match->pattern, path, c->params);
    c->route = match;

    bool unsafe = strcmp(c->method, "GET") != 0 && strcmp(c->method, "HEAD") != 0;
    const char *why = NULL;
    if (unsafe && !(match->flags & ROUTE_NOCSRF) && !csrf_ok(req, &why))
        return reply_now(c, 403, "csrf_failed", why);

    struct evbuffer *body = evhttp_request_get_input_buffer(req);
    size_t blen = evbuffer_get_length(body);
    if (blen > LIMIT_REQUEST_BODY)
        return reply_now(c, 413, "payload_too_large", "request body is larger than 1 MiB");
    if (blen > 0) {
        const char *ct = evhttp_find_header(in, "Content-Type");
        if (!ct || strncasecmp(ct, "application/json", 16) != 0)
            return reply_now(c, 415, "unsupported_media_type",
                             "request body must be application/json");
        c->body = xmalloc(blen + 1);
        evbuffer_remove(body, c->body, blen);
        c->body[blen] = '\0';
        c->body_len = blen;
    }

    const char *ck = evhttp_find_header(in, "Cookie");
    if (ck)
        c->cookie_token = http_cookie_get(ck, AUTH_COOKIE);
    const char *ua = evhttp_find_header(in, "User-Agent");
    if (ua)
        c->user_agent = xstrndup(ua, utf8_truncate(ua, strlen(ua), 256));
    const char *lei = evhttp_find_header(in, "Last-Event-ID");
    if (lei)
        c->last_event_id = xstrndup(lei, strnlen(lei, 32));
    if (match->flags & ROUTE_RL_AUTH) {
        char key[96];
        int ra = 0;
        snprintf(key, sizeof key, "auth-ip:%s", c->client_ip);
        /* With Redis the shared bucket answers later, in auth_limit_done. */
        if (ratelimit_take_async(app->rl, key, app->cfg.rate_auth, auth_limit_done, c) == 0)
            return;
        if (!ratelimit_take(app->rl, key, app->cfg.rate_auth, &ra))
            return auth_limit_done(c, false, ra);
    }
    dispatch(c);
}

static void auth_limit_done(void *arg, bool ok, int retry_after_s)
{
    struct api_ctx *c = arg;
    if (!ok) {
        c->retry_after = retry_after_s;
        return reply_now(c, 429, "rate_limited",
                         "too many sign-in or registration attempts; try again later");
    }
    if (!c->app->pool) /* the answer came during teardown */
        return reply_now(c, 503, "shutting_down", "server is shutting down");
    dispatch(c);
}

/* A kept answer for c (ROUTE_CACHE): sent from the loop, with the same
 * per-user API limit the worker path applies. false: go to a worker (which
 * keeps its answer for next time when c->cache_key is set). */
static bool reply_from_cache(struct api_ctx *c)
{
    struct app *app = c->app;
    if (!app->respcache || !c->cookie_token || !*c->cookie_token ||
        strlen(c->cookie_token) > 128 || strcmp(c->method, "GET") != 0)
        return false;
    c->cache_key = respcache_key(c->cookie_token, evhttp_request_get_uri(c->req));
    struct respcache_hit hit;
    if (!respcache_get(app->respcache, c->cache_key, store_sqlite_commits(), now_ms(),
                       AUTH_TOUCH_INTERVAL_MS, &hit))
        return false;
    snprintf(c->user.id, sizeof c->user.id, "%s", hit.user_id);
    char key[64];
    int ra = 0;
    snprintf(key, sizeof key, "api:%s", hit.user_id);
    if (!ratelimit_take(app->rl, key, app->cfg.rate_api, &ra)) {
        c->retry_after = ra;
        api_fail(c, 429, "rate_limited", "too many requests; try again in %d s", ra);
        http_ctx_finish(c);
        return true;
    }
    char *text = xmalloc(hit.len + 1);
    memcpy(text, hit.text, hit.len + 1);
    api_reply_text_take(c, 200, text);
    http_ctx_finish(c);
    return true;
}

/* Run the matched route: on the loop (ROUTE_LOOP) or on a worker. */
static void dispatch(struct api_ctx *c)
{
    struct app *app = c->app;
    const struct route *match = c->route;
    if ((match->flags & ROUTE_CACHE) && reply_from_cache(c))
        return;
    if (match->flags & ROUTE_LOOP) {
        match->fn(c);
        if (c->on_loop)
            done_cb(c);
        else
            http_ctx_finish(c);
        return;
    }
    if (app->shutting_down)
        return reply_now(c, 503, "shutting_down", "server is shutting down");
    pool_submit(app->pool, work_cb, done_cb, c);
}

/* ---- health --------------------------------------------------------------- */

static void ready_work(void *arg, void *worker_ctx)
{
    struct api_ctx *c = arg;
    enum app_err e = store_ping(worker_ctx);
    if (e == APP_OK)
        api_reply_take(c, 200, json_pack("{s:s,s:s}", "status", "ready", "store",
                                         store_backend(worker_ctx)));
    else
        api_fail(c, 503, "not_ready", "store is not reachable");
}

static void health_reply(struct api_ctx *c)
{
    if (strcmp(c->path, "/healthz") == 0) {
        api_reply_take(c, 200, json_pack("{s:s,s:I}", "status", "ok", "uptime_ms",
                                         (json_int_t)(now_ms() - c->app->started_ms)));
        http_ctx_finish(c);
        return;
    }
    if (c->app->shutting_down) {
        reply_now(c, 503, "shutting_down", "server is shutting down");
        return;
    }
    pool_submit(c->app->pool, ready_work, (pool_done_fn)http_ctx_finish, c);
}

/* ---- metrics ---------------------------------------------------------------- */

/* /metrics: with CHATOPENAII_METRICS_TOKEN as a bearer token, or from the
 * loopback interface when no token is configured. */
static void metrics_reply(struct api_ctx *c)
{
    const char *tok = c->app->cfg.metrics_token;
    const char *auth =
        evhttp_find_header(evhttp_request_get_input_headers(c->req), "Authorization");
    bool ok;
    if (tok)
        ok = auth && strncmp(auth, "Bearer ", 7) == 0 && strlen(auth + 7) == strlen(tok) &&
             crypto_ct_equal(auth + 7, tok, strlen(tok));
    else
        ok = strcmp(c->client_ip, "127.0.0.1") == 0 || strcmp(c->client_ip, "::1") == 0;
    if (!ok)
        return reply_now(c, 403, "forbidden",
                         "metrics need CHATOPENAII_METRICS_TOKEN or a loopback client");
    struct buf b;
    buf_init(&b, 16 * 1024 * 1024);
    metrics_render(c->app, &b);
    struct evhttp_request *req = c->req;
    http_add_common_headers(req, c->req_id);
    evhttp_add_header(evhttp_request_get_output_headers(req), "Content-Type",
                      "text/plain; version=0.0.4; charset=utf-8");
    evhttp_add_header(evhttp_request_get_output_headers(req), "Cache-Control", "no-store");
    struct evbuffer *out = evbuffer_new();
    evbuffer_add(out, b.p ? b.p : "", b.len);
    evhttp_send_reply(req, 200, "OK", out);
    evbuffer_free(out);
    buf_cleanup(&b);
    http_log_access(c->req_id, c->method, c->path, "/metrics", 200, c->start_us, NULL, false);
    c->req = NULL;
    http_ctx_finish(c);
}

/* ---- accepting ------------------------------------------------------------ */

/* At most ACCEPT_PER_TURN new connections per turn of the loop (as HAProxy's
 * tune.maxaccept): libevent's listener otherwise accepts every pending
 * connection in one callback, and a thousand clients connecting at once
 * (each accept sets up a connection, and its request is read and answered
 * in the same turn) held the streams already running and every timer for
 * tens of milliseconds. The listener pauses for the rest of the turn; the
 * kernel keeps the waiting connections (the backlog is raised to match). */
#define ACCEPT_PER_TURN 32
#define LISTEN_BACKLOG 4096

static struct {
    struct evconnlistener *lev;
    struct event resume_ev;   /* a 0 s timer: the next turn of the loop (no allocation) */
    struct event *resume;     /* &resume_ev once assigned */
    unsigned n;               /* accepted since it was armed */
    bool paused;
    uint64_t pauses;          /* for /metrics */
} g_accept;

uint64_t http_accept_pauses(void)
{
    return g_accept.pauses;
}

static void on_accept_resume(evutil_socket_t fd, short what, void *arg)
{
    g_accept.n = 0;
    if (g_accept.paused && g_accept.lev) {
        g_accept.paused = false;
        evconnlistener_enable(g_accept.lev);
    }
}

/* evhttp calls this for each connection it accepts, before reading it. */
static struct bufferevent *on_new_connection(struct event_base *base, void *arg)
{
    if (g_accept.resume && g_accept.n++ == 0) {
        static const struct timeval now = {0, 0};
        evtimer_add(g_accept.resume, &now);
    }
    if (g_accept.n >= ACCEPT_PER_TURN && g_accept.lev && !g_accept.paused) {
        g_accept.paused = true;
        g_accept.pauses++;
        evconnlistener_disable(g_accept.lev); /* the listener stops after this one */
    }
    return security_tls_bev(base);
}

/* ---- start/stop ----------------------------------------------------------- */

int http_server_start(struct app *app, char *err, size_t errlen)
{
    app->http = evhttp_new(app->base);
    evhttp_set_max_body_size(app->http, LIMIT_REQUEST_BODY_HARD);
    evhttp_set_max_headers_size(app->http, LIMIT_REQUEST_HEADERS_HARD);
    evhttp_set_timeout(app->http, 120);
    evhttp_set_allowed_methods(app->http, EVHTTP_REQ_GET | EVHTTP_REQ_POST | EVHTTP_REQ_HEAD |
                                              EVHTTP_REQ_PUT | EVHTTP_REQ_DELETE |
                                              EVHTTP_REQ_PATCH | EVHTTP_REQ_OPTIONS);
    evhttp_set_gencb(app->http, on_request, app);
    if (security_init(app, err, errlen) != 0)
        return -1;
    app->listener = evhttp_bind_socket_with_handle(app->http, app->cfg.listen_host,
                                                   (ev_uint16_t)app->cfg.listen_port);
    if (!app->listener) {
        snprintf(err, errlen, "cannot listen on %s:%d (CHATOPENAII_LISTEN)", app->cfg.listen_host,
                 app->cfg.listen_port);
        return -1;
    }
    evutil_socket_t fd = evhttp_bound_socket_get_fd(app->listener);
    (void)listen(fd, LISTEN_BACKLOG); /* evhttp listens with 128; Linux takes a new value */
    /* accepted sockets inherit it: each SSE chunk and each reply's last bytes
     * leave at once instead of waiting behind the peer's delayed ACK (Nagle) */
    int one = 1;
    (void)setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    g_accept.lev = evhttp_bound_socket_get_listener(app->listener);
    evtimer_assign(&g_accept.resume_ev, app->base, on_accept_resume, NULL);
    g_accept.resume = &g_accept.resume_ev;
    g_accept.n = 0;
    g_accept.paused = false;
    evhttp_set_bevcb(app->http, on_new_connection, app);
    struct sockaddr_storage ss;
    socklen_t sl = sizeof ss;
    if (getsockname(fd, (struct sockaddr *)&ss, &sl) == 0) {
        if (ss.ss_family == AF_INET)
            app->port = ntohs(((struct sockaddr_in *)&ss)->sin_port);
        else if (ss.ss_family == AF_INET6)
            app->port = ntohs(((struct sockaddr_in6 *)&ss)->sin6_port);
    }
    return 0;
}

void http_server_stop_accepting(struct app *app)
{
    if (app->listener) {
        evhttp_del_accept_socket(app->http, app->listener);
        app->listener = NULL;
    }
    g_accept.lev = NULL;
    if (g_accept.resume) {
        event_del(g_accept.resume);
        g_accept.resume = NULL;
    }
}
