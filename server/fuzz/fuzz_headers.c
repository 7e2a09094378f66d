/* fuzz_headers.c - libFuzzer harness for the request headers http/security.c
 * interprets: X-Forwarded-For (the client IP behind trusted proxies, used
 * for rate limits, lock-outs and sessions), X-Forwarded-Proto and Origin
 * (CORS allow-list), together with the comma lists of the configuration
 * (CHATOPENAII_TRUSTED_PROXIES, CHATOPENAII_CORS_ORIGINS) they are checked
 * against. security.c is #included so the peer address of the connection
 * can be stubbed (there is no socket here); build.sh leaves it out of the
 * link. The input is lines:
 *   trusted proxies \n peer address \n X-Forwarded-For \n X-Forwarded-Proto
 *   \n allowed origins \n Origin
 * Invariants (abort() when broken): the client IP is the peer unless the
 * peer is a trusted proxy; otherwise it is the right-most X-Forwarded-For
 * hop that is not a trusted proxy (or the left-most one), at most 64 bytes,
 * compared against an independent reference; HTTPS is only believed from a
 * trusted proxy; an Origin is allowed only if it is in the list.
 */
#include <event2/http.h>

struct evhttp_connection *fz_get_connection(struct evhttp_request *req);
void fz_get_peer(struct evhttp_connection *evcon, char **address, ev_uint16_t *port);
#define evhttp_request_get_connection fz_get_connection
#define evhttp_connection_get_peer fz_get_peer
#include "../src/http/security.c"
#undef evhttp_request_get_connection
#undef evhttp_connection_get_peer

#define CHECK(cond)                                                                       \
    do {                                                                                  \
        if (!(cond)) {                                                                    \
            fprintf(stderr, "fuzz_headers: invariant failed at line %d: %s\n", __LINE__, \
                    #cond);                                                               \
            abort();                                                                      \
        }                                                                                 \
    } while (0)

static char *g_peer; /* the stubbed peer address, NULL = no connection */
static char g_dummy_conn;

struct evhttp_connection *fz_get_connection(struct evhttp_request *req)
{
    return g_peer ? (struct evhttp_connection *)&g_dummy_conn : NULL;
}

void fz_get_peer(struct evhttp_connection *evcon, char **address, ev_uint16_t *port)
{
    *address = g_peer;
    *port = 1234;
}

static bool in_list(char **list, size_t n, const char *s, bool nocase)
{
    for (size_t i = 0; i < n; i++)
        if (nocase ? strcasecmp(list[i], s) == 0 : strcmp(list[i], s) == 0)
            return true;
    return false;
}

/* Reference for the X-Forwarded-For walk, written independently. */
static char *ref_client_ip(const char *xff)
{
    size_t n = strnlen(xff, 1024);
    size_t end = n;
    for (;;) {
        size_t start = end;
        while (start > 0 && xff[start - 1] != ',')
            start--;
        size_t a = start;
        while (a < end && xff[a] == ' ')
            a++;
        char *hop = strndup(xff + a, end - a);
        if (start == 0 || !in_list(g_proxies, g_nproxies, hop, false)) {
            if (strlen(hop) > 64)
                hop[64] = '\0';
            return hop;
        }
        free(hop);
        end = start - 1; /* before the comma */
    }
}

/* Next line of the input (NUL-terminated in place), or NULL. */
static char *next_line(char **cur)
{
    if (!*cur)
        return NULL;
    char *line = *cur;
    char *nl = strchr(line, '\n');
    if (nl) {
        *nl = '\0';
        *cur = nl + 1;
    } else {
        *cur = NULL;
    }
    return line;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char *in = malloc(size + 1);
    memcpy(in, data, size);
    in[size] = '\0';
    char *cur = in;
    char *proxies = next_line(&cur), *peer = next_line(&cur), *xff = next_line(&cur);
    char *proto = next_line(&cur), *origins = next_line(&cur), *origin = next_line(&cur);

    struct app app;
    memset(&app, 0, sizeof app);
    app.cfg.trusted_proxies = proxies;
    app.cfg.cors_origins = origins;
    char err[256];
    CHECK(security_init(&app, err, sizeof err) == 0);
    for (size_t i = 0; i < g_nproxies; i++)
        CHECK(*g_proxies[i] && !strchr(g_proxies[i], ','));
    g_peer = peer;

    struct evhttp_request *req = evhttp_request_new(NULL, NULL);
    struct evkeyvalq *h = evhttp_request_get_input_headers(req);
    /* evhttp_add_header refuses what could not arrive in a header (CR, LF) */
    bool has_xff = xff && evhttp_add_header(h, "X-Forwarded-For", xff) == 0;
    bool has_proto = proto && evhttp_add_header(h, "X-Forwarded-Proto", proto) == 0;
    bool has_origin = origin && evhttp_add_header(h, "Origin", origin) == 0;

    bool trusted = peer && in_list(g_proxies, g_nproxies, peer, false);
    char *ip = security_client_ip(req);
    CHECK(ip != NULL);
    if (!trusted || !has_xff) {
        CHECK(strcmp(ip, peer ? peer : "") == 0);
    } else {
        char *want = ref_client_ip(xff);
        CHECK(strcmp(ip, want) == 0);
        CHECK(strlen(ip) <= 64 && !strchr(ip, ','));
        free(want);
    }
    free(ip);

    bool https = security_is_https(req);
    CHECK(https == (trusted && has_proto && strcasecmp(proto, "https") == 0));

    const char *o = security_cors_origin(req);
    if (o) {
        CHECK(has_origin && strcmp(o, origin) == 0);
        CHECK(in_list(g_origins, g_norigins, o, true));
    } else {
        CHECK(!has_origin || !in_list(g_origins, g_norigins, origin, true));
    }

    security_headers(req);
    evhttp_request_free(req);
    security_cleanup();
    g_peer = NULL;
    free(in);
    return 0;
}
