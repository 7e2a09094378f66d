/* fuzz_path.c - libFuzzer harness for request-target and header parsing:
 * what http/server.c on_request does before a handler runs. The input is
 * "<request-target>\n<Cookie header value>" (no newline: all target):
 *   - evhttp_uri_parse (libevent) on the target, then, as the server does,
 *     evhttp_uridecode of its path, the NUL / UTF-8 check, route_match
 *     against every pattern of the route table, and ids_valid on captures;
 *     evhttp_parse_query_str on its query;
 *   - evhttp_uridecode, utf8_valid, ids_valid on the raw target too;
 *   - http_cookie_get (http/route.c) on the Cookie value.
 * Invariants (abort() when broken): a pattern without {x} matches exactly
 * its own text; captures are non-empty, contain no '/', and substituting
 * them back into the pattern gives the path; a cookie value lies inside the
 * header and contains no ';'.
 */
#include <event2/http.h>
#include <event2/keyvalq_struct.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "http/route.h"
#include "lib/buf.h"
#include "lib/ids.h"
#include "lib/utf8.h"

#define CHECK(cond)                                                                    \
    do {                                                                               \
        if (!(cond)) {                                                                 \
            fprintf(stderr, "fuzz_path: invariant failed at line %d: %s\n", __LINE__, \
                    #cond);                                                            \
            abort();                                                                   \
        }                                                                              \
    } while (0)

/* The patterns of api/routes.c (copied: routes.c drags in every handler).
 * Keep in sync; the order does not matter here. */
static const char *const patterns[] = {
    "/api/v1/auth/register",
    "/api/v1/auth/login",
    "/api/v1/auth/logout",
    "/api/v1/config",
    "/api/v1/me",
    "/api/v1/me/password",
    "/api/v1/sessions",
    "/api/v1/sessions/{id}",
    "/api/v1/connection",
    "/api/v1/models",
    "/api/v1/chats",
    "/api/v1/chats/{id}",
    "/api/v1/chats/{id}/messages",
    "/api/v1/chats/{id}/messages/{mid}/edit",
    "/api/v1/chats/{id}/messages/{mid}/regenerate",
    "/api/v1/turns/{id}/events",
    "/api/v1/turns/{id}/stop",
    "/api/v1/tokens",
    "/api/v1/tokens/{id}",
    "/api/v1/usage",
    "/api/v1/admin/usage",
    "/api/v1/admin/keys",
    "/api/v1/admin/keys/{id}",
    "/api/v1/admin/prices",
    "/api/v1/admin/users",
    "/api/v1/admin/users/{id}/limits",
    /* not in the table, but legal patterns: several captures in a row */
    "/{a}/{b}/{c}",
    "{a}",
};

/* Rebuild the path from a pattern and its captures. */
static char *substitute(const char *pattern, char *params[ROUTE_MAX_PARAMS])
{
    struct buf b;
    buf_init(&b, (size_t)-1 / 2);
    int np = 0;
    for (const char *p = pattern; *p; p++) {
        if (*p == '{') {
            CHECK(np < ROUTE_MAX_PARAMS && params[np]);
            (void)buf_append_str(&b, params[np++]);
            p = strchr(p, '}');
        } else {
            (void)buf_append(&b, p, 1);
        }
    }
    for (int i = np; i < ROUTE_MAX_PARAMS; i++)
        CHECK(params[i] == NULL); /* no stale captures */
    return buf_take(&b, NULL);
}

static void check_routes(const char *path)
{
    char *params[ROUTE_MAX_PARAMS] = {0};
    for (size_t i = 0; i < sizeof patterns / sizeof patterns[0]; i++) {
        const char *pat = patterns[i];
        bool m = route_match(pat, path, params);
        if (!strchr(pat, '{')) {
            CHECK(m == (strcmp(pat, path) == 0));
            if (m)
                for (int k = 0; k < ROUTE_MAX_PARAMS; k++)
                    CHECK(params[k] == NULL);
            continue;
        }
        if (!m)
            continue;
        for (int k = 0; k < ROUTE_MAX_PARAMS && params[k]; k++) {
            CHECK(*params[k] && !strchr(params[k], '/'));
            (void)ids_valid(params[k]);
        }
        char *back = substitute(pat, params);
        CHECK(strcmp(back, path) == 0);
        free(back);
    }
    /* A failed match leaves earlier captures alone. */
    char *keep[ROUTE_MAX_PARAMS] = {strdup("x"), NULL, NULL};
    if (!route_match("/api/v1/chats/{id}/never", path, keep))
        CHECK(keep[0] && strcmp(keep[0], "x") == 0);
    for (int k = 0; k < ROUTE_MAX_PARAMS; k++) {
        free(keep[k]);
        free(params[k]);
    }
}

static void check_decode(const char *s, int plus)
{
    size_t n = 0;
    char *d = evhttp_uridecode(s, plus, &n);
    if (!d)
        return;
    CHECK(n <= strlen(s)); /* decoding never grows */
    if (n == strlen(d) && utf8_valid(d, n))
        check_routes(d);
    (void)ids_valid(d);
    free(d);
}

static void check_cookie(const char *cookies, const char *name)
{
    char *v = http_cookie_get(cookies, name);
    if (!v)
        return;
    CHECK(!strchr(v, ';'));
    /* The value is "name=value" somewhere in the header. */
    size_t nl = strlen(name), vl = strlen(v);
    bool found = false;
    for (const char *p = strstr(cookies, name); p && !found; p = strstr(p + 1, name))
        found = p[nl] == '=' && strncmp(p + nl + 1, v, vl) == 0;
    CHECK(found);
    free(v);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char *in = malloc(size + 1);
    memcpy(in, data, size);
    in[size] = '\0';
    char *nl = memchr(in, '\n', size);
    const char *cookies = NULL;
    if (nl) {
        *nl = '\0';
        cookies = nl + 1;
    }
    const char *target = in;

    (void)utf8_valid(target, strlen(target));
    (void)ids_valid(target);
    check_decode(target, 0);
    check_decode(target, 1);
    check_routes(target);

    struct evhttp_uri *uri = evhttp_uri_parse(target);
    if (uri) {
        const char *raw = evhttp_uri_get_path(uri);
        if (raw && raw[0] == '/')
            check_decode(raw, 0);
        const char *q = evhttp_uri_get_query(uri);
        if (q) {
            struct evkeyvalq h;
            h.tqh_first = NULL; /* TAILQ_INIT, as server.c does */
            h.tqh_last = &h.tqh_first;
            if (evhttp_parse_query_str(q, &h) == 0) {
                const char *v = evhttp_find_header(&h, "cursor");
                if (v)
                    (void)ids_valid(v);
            }
            evhttp_clear_headers(&h);
        }
        char buf[256];
        (void)evhttp_uri_join(uri, buf, sizeof buf);
        evhttp_uri_free(uri);
    }

    if (cookies) {
        check_cookie(cookies, "coai_session");
        check_cookie(cookies, "a");
        check_cookie(cookies, "");
    }
    free(in);
    return 0;
}
