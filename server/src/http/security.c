/* security.c - see security.h. */
#include "security.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <event2/bufferevent.h>
#include <event2/bufferevent_ssl.h>
#include <event2/buffer.h>
#include <event2/event.h>
#include <event2/keyvalq_struct.h>
#include <openssl/err.h>
#include <openssl/ssl.h>

#include "../lib/buf.h"
#include "../lib/log.h"
#include "http.h"

static char **g_origins;
static size_t g_norigins;
static char **g_proxies;
static size_t g_nproxies;
static char *g_csp;
static SSL_CTX *g_ssl_ctx;
static char *g_cert, *g_key;

/* replies waiting for their TLS output to drain (security_reply_end) */
struct pending_end {
    struct evhttp_request *req;
    struct event *ev;
    int quiet; /* consecutive checks that found the output empty */
    struct pending_end *prev, *next;
};
static struct pending_end *g_pending;

static void split_list(const char *list, char ***out, size_t *n)
{
    *out = NULL;
    *n = 0;
    if (!list)
        return;
    char *copy = xstrdup(list), *save = NULL;
    for (char *t = strtok_r(copy, ",", &save); t; t = strtok_r(NULL, ",", &save)) {
        while (*t == ' ')
            t++;
        size_t l = strlen(t);
        while (l && t[l - 1] == ' ')
            t[--l] = '\0';
        if (!l)
            continue;
        *out = xrealloc(*out, (*n + 1) * sizeof **out);
        (*out)[(*n)++] = xstrdup(t);
    }
    free(copy);
}

/* "https://key@o1.ingest.example.com/42" -> "https://o1.ingest.example.com" */
static char *dsn_origin(const char *dsn)
{
    const char *scheme_end = strstr(dsn, "://");
    if (!scheme_end)
        return NULL;
    const char *host = strchr(scheme_end + 3, '@');
    host = host ? host + 1 : scheme_end + 3;
    const char *slash = strchr(host, '/');
    size_t hl = slash ? (size_t)(slash - host) : strlen(host);
    return xasprintf("%.*s%.*s", (int)(scheme_end + 3 - dsn), dsn, (int)hl, host);
}

static SSL_CTX *make_ctx(const char *cert, const char *key, char *err, size_t errlen)
{
    SSL_CTX *ctx = SSL_CTX_new(TLS_server_method());
    if (!ctx) {
        snprintf(err, errlen, "cannot create a TLS context");
        return NULL;
    }
    SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION);
    SSL_CTX_set_options(ctx, SSL_OP_NO_RENEGOTIATION | SSL_OP_CIPHER_SERVER_PREFERENCE);
    if (SSL_CTX_use_certificate_chain_file(ctx, cert) != 1) {
        snprintf(err, errlen, "CHATOPENAII_TLS_CERT: cannot load %s", cert);
        SSL_CTX_free(ctx);
        return NULL;
    }
    if (SSL_CTX_use_PrivateKey_file(ctx, key, SSL_FILETYPE_PEM) != 1 ||
        SSL_CTX_check_private_key(ctx) != 1) {
        snprintf(err, errlen, "CHATOPENAII_TLS_KEY: cannot load %s or it does not match the "
                              "certificate", key);
        SSL_CTX_free(ctx);
        return NULL;
    }
    ERR_clear_error();
    return ctx;
}

struct bufferevent *security_tls_bev(struct event_base *base)
{
    if (!g_ssl_ctx)
        return NULL; /* plain HTTP: evhttp makes a socket bufferevent */
    SSL *ssl = SSL_new(g_ssl_ctx);
    return bufferevent_openssl_socket_new(base, -1, ssl, BUFFEREVENT_SSL_ACCEPTING,
                                          BEV_OPT_CLOSE_ON_FREE);
}

int security_tls_reload(char *err, size_t errlen)
{
    if (!g_cert)
        return 0;
    SSL_CTX *ctx = make_ctx(g_cert, g_key, err, errlen);
    if (!ctx)
        return -1;
    SSL_CTX_free(g_ssl_ctx); /* live SSL objects hold their own reference */
    g_ssl_ctx = ctx;
    return 0;
}

bool security_tls_enabled(void)
{
    return g_ssl_ctx != NULL;
}

static void pending_finish(struct pending_end *p)
{
    if (p->prev)
        p->prev->next = p->next;
    else
        g_pending = p->next;
    if (p->next)
        p->next->prev = p->prev;
    event_free(p->ev);
    evhttp_send_reply_end(p->req); /* frees a request whose client left */
    free(p);
}

/* Whether the reply's connection still has bytes queued for the client;
 * a detached request (client gone) has none. */
static bool output_pending(struct evhttp_request *req)
{
    struct evhttp_connection *evcon = evhttp_request_get_connection(req);
    if (!evcon)
        return false;
    struct bufferevent *bev = evhttp_connection_get_bufferevent(evcon);
    return bev && evbuffer_get_length(bufferevent_get_output(bev)) > 0;
}

static void pending_tick(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    struct pending_end *p = arg;
    if (output_pending(p->req))
        p->quiet = 0;
    else if (!evhttp_request_get_connection(p->req))
        p->quiet = 2; /* the client left: nothing more to deliver */
    else
        p->quiet++;
    if (p->quiet >= 2) {
        pending_finish(p);
        return;
    }
    /* A slow reader keeps the output non-empty; evhttp's write timeout
     * fails such a connection eventually, which detaches the request. */
    struct timeval tv = {0, 1000};
    event_add(p->ev, &tv);
}

void security_reply_end(struct evhttp_request *req)
{
    struct evhttp_connection *evcon = evhttp_request_get_connection(req);
    if (!g_ssl_ctx || !evcon) {
        evhttp_send_reply_end(req);
        return;
    }
    struct pending_end *p = xcalloc(1, sizeof *p);
    p->req = req;
    p->quiet = output_pending(req) ? 0 : 1;
    p->ev = evtimer_new(evhttp_connection_get_base(evcon), pending_tick, p);
    p->next = g_pending;
    if (g_pending)
        g_pending->prev = p;
    g_pending = p;
    struct timeval tv = {0, 1000};
    event_add(p->ev, &tv);
}

void security_reply_end_flush(void)
{
    while (g_pending)
        pending_finish(g_pending);
}

int security_init(struct app *app, char *err, size_t errlen)
{
    split_list(app->cfg.cors_origins, &g_origins, &g_norigins);
    split_list(app->cfg.trusted_proxies, &g_proxies, &g_nproxies);
    char *sentry = app->cfg.sentry_dsn ? dsn_origin(app->cfg.sentry_dsn) : NULL;
    /* The web app is built without inline scripts; styles allow inline for
     * KaTeX's computed styles. */
    g_csp = xasprintf("default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; "
                      "img-src 'self' data: blob:; font-src 'self' data:; media-src 'self' blob:; "
                      "connect-src 'self'%s%s; worker-src 'self'; manifest-src 'self'; "
                      "object-src 'none'; base-uri 'none'; form-action 'self'; "
                      "frame-ancestors 'none'",
                      sentry ? " " : "", sentry ? sentry : "");
    free(sentry);
    if (app->cfg.tls_cert) {
        g_cert = xstrdup(app->cfg.tls_cert);
        g_key = xstrdup(app->cfg.tls_key);
        g_ssl_ctx = make_ctx(g_cert, g_key, err, errlen);
        if (!g_ssl_ctx)
            return -1;
    }
    return 0;
}

void security_cleanup(void)
{
    for (size_t i = 0; i < g_norigins; i++)
        free(g_origins[i]);
    free(g_origins);
    for (size_t i = 0; i < g_nproxies; i++)
        free(g_proxies[i]);
    free(g_proxies);
    free(g_csp);
    SSL_CTX_free(g_ssl_ctx);
    free(g_cert);
    free(g_key);
    g_origins = g_proxies = NULL;
    g_norigins = g_nproxies = 0;
    g_csp = g_cert = g_key = NULL;
    g_ssl_ctx = NULL;
}

static bool peer_trusted(struct evhttp_request *req)
{
    if (!g_nproxies)
        return false;
    char *addr = NULL;
    ev_uint16_t port;
    struct evhttp_connection *evcon = evhttp_request_get_connection(req);
    if (!evcon)
        return false;
    evhttp_connection_get_peer(evcon, &addr, &port);
    for (size_t i = 0; addr && i < g_nproxies; i++)
        if (strcmp(addr, g_proxies[i]) == 0)
            return true;
    return false;
}

bool security_is_https(struct evhttp_request *req)
{
    if (g_ssl_ctx)
        return true;
    if (!peer_trusted(req))
        return false;
    const char *proto =
        evhttp_find_header(evhttp_request_get_input_headers(req), "X-Forwarded-Proto");
    return proto && strcasecmp(proto, "https") == 0;
}

char *security_client_ip(struct evhttp_request *req)
{
    char *addr = NULL;
    ev_uint16_t port;
    struct evhttp_connection *evcon = evhttp_request_get_connection(req);
    if (evcon)
        evhttp_connection_get_peer(evcon, &addr, &port);
    if (!peer_trusted(req))
        return xstrdup(addr ? addr : "");
    const char *xff =
        evhttp_find_header(evhttp_request_get_input_headers(req), "X-Forwarded-For");
    if (!xff)
        return xstrdup(addr ? addr : "");
    /* walk from the right: the first hop that is not one of our proxies */
    char *copy = xstrndup(xff, strnlen(xff, 1024));
    char *result = NULL;
    for (;;) {
        char *comma = strrchr(copy, ',');
        char *hop = comma ? comma + 1 : copy;
        while (*hop == ' ')
            hop++;
        bool trusted = false;
        for (size_t i = 0; i < g_nproxies; i++)
            trusted |= strcmp(hop, g_proxies[i]) == 0;
        if (!trusted || !comma) {
            result = xstrndup(hop, strnlen(hop, 64));
            break;
        }
        *comma = '\0';
    }
    free(copy);
    return result;
}

void security_headers(struct evhttp_request *req)
{
    struct evkeyvalq *h = evhttp_request_get_output_headers(req);
    evhttp_add_header(h, "Content-Security-Policy", g_csp ? g_csp : "default-src 'self'");
    evhttp_add_header(h, "X-Content-Type-Options", "nosniff");
    evhttp_add_header(h, "Referrer-Policy", "strict-origin-when-cross-origin");
    evhttp_add_header(h, "X-Frame-Options", "DENY");
    evhttp_add_header(h, "Permissions-Policy",
                      "microphone=(self), camera=(), geolocation=(), payment=(), usb=()");
    evhttp_add_header(h, "Cross-Origin-Opener-Policy", "same-origin");
    if (security_is_https(req))
        evhttp_add_header(h, "Strict-Transport-Security", "max-age=31536000; includeSubDomains");
}

const char *security_cors_origin(struct evhttp_request *req)
{
    const char *o = evhttp_find_header(evhttp_request_get_input_headers(req), "Origin");
    if (!o)
        return NULL;
    for (size_t i = 0; i < g_norigins; i++)
        if (strcasecmp(o, g_origins[i]) == 0)
            return o;
    return NULL;
}

void security_cors_headers(struct evhttp_request *req, const char *origin, bool credentials)
{
    struct evkeyvalq *h = evhttp_request_get_output_headers(req);
    evhttp_add_header(h, "Access-Control-Allow-Origin", origin);
    if (credentials)
        evhttp_add_header(h, "Access-Control-Allow-Credentials", "true");
    evhttp_add_header(h, "Access-Control-Expose-Headers",
                      "X-Request-Id, Retry-After, x-ratelimit-limit-requests, "
                      "x-ratelimit-remaining-requests, x-ratelimit-reset-requests, "
                      "x-ratelimit-limit-tokens, x-ratelimit-remaining-tokens, "
                      "x-ratelimit-reset-tokens");
}

int security_preflight(struct evhttp_request *req, const char *req_id)
{
    struct evkeyvalq *h = evhttp_request_get_output_headers(req);
    http_add_common_headers(req, req_id);
    /* the common headers already carry Allow-Origin, credentials and
     * "Vary: Origin" for a listed origin: add only what a preflight needs */
    const char *origin = security_cors_origin(req);
    evhttp_add_header(h, "Vary", origin ? "Access-Control-Request-Method, "
                                          "Access-Control-Request-Headers"
                                        : "Origin, Access-Control-Request-Method, "
                                          "Access-Control-Request-Headers");
    if (origin) {
        evhttp_add_header(h, "Access-Control-Allow-Methods",
                          "GET, POST, PUT, PATCH, DELETE, OPTIONS");
        evhttp_add_header(h, "Access-Control-Allow-Headers",
                          "Content-Type, X-Requested-With, Authorization, Last-Event-ID, "
                          "OpenAI-Beta");
        evhttp_add_header(h, "Access-Control-Max-Age", "600");
        evhttp_send_reply(req, 204, "No Content", NULL);
        return 204;
    }
    /* not allowed: no CORS headers, the browser refuses the real request */
    evhttp_send_reply(req, 204, "No Content", NULL);
    return 204;
}
