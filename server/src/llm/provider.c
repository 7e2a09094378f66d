/* provider.c - see provider.h. */
#include "provider.h"

#include <stdlib.h>
#include <string.h>

#include "../lib/buf.h"
#include "../lib/caps.h"
#include "../lib/log.h"
#include "curlev.h"

void provider_conn_clear(struct provider_conn *pc)
{
    if (!pc)
        return;
    free(pc->base_url);
    if (pc->api_key) {
        secure_wipe(pc->api_key, strlen(pc->api_key));
        free(pc->api_key);
    }
    memset(pc, 0, sizeof *pc);
}

CURL *provider_easy_new(struct app *app, const struct provider_conn *pc, const char *path,
                        const char *body, bool stream, struct curl_slist **hdrs)
{
    CURL *e = curl_easy_init();
    if (!e)
        return NULL;
    char *url = xasprintf("%s%s", pc->base_url, path);
    curl_easy_setopt(e, CURLOPT_URL, url);
    free(url);
    struct curl_slist *h = NULL;
    if (pc->api_key && *pc->api_key) {
        char *auth = xasprintf("Authorization: Bearer %s", pc->api_key);
        h = curl_slist_append(h, auth);
        secure_wipe(auth, strlen(auth));
        free(auth);
    }
    if (body) {
        h = curl_slist_append(h, "Content-Type: application/json");
        curl_easy_setopt(e, CURLOPT_POSTFIELDSIZE, (long)strlen(body));
        curl_easy_setopt(e, CURLOPT_COPYPOSTFIELDS, body);
    }
    h = curl_slist_append(h, stream ? "Accept: text/event-stream" : "Accept: application/json");
    h = curl_slist_append(h, "Expect:");
    curl_easy_setopt(e, CURLOPT_HTTPHEADER, h);
    *hdrs = h;
    curl_easy_setopt(e, CURLOPT_USERAGENT, "ChatOpenAII/0.1");
    curl_easy_setopt(e, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(e, CURLOPT_PROTOCOLS_STR, "http,https");
    curl_easy_setopt(e, CURLOPT_FOLLOWLOCATION, 0L);
    curl_easy_setopt(e, CURLOPT_CONNECTTIMEOUT, (long)app->cfg.upstream_connect_timeout_s);
    /* Streams detect a silent provider themselves (turn.c, per byte); this
     * is only a backstop against a connection that never moves again. */
    curl_easy_setopt(e, CURLOPT_LOW_SPEED_LIMIT, 1L);
    curl_easy_setopt(e, CURLOPT_LOW_SPEED_TIME, (long)app->cfg.upstream_idle_timeout_s * 2);
    curl_easy_setopt(e, CURLOPT_TCP_KEEPALIVE, 1L);
    curl_easy_setopt(e, CURLOPT_HTTP_VERSION, (long)CURL_HTTP_VERSION_2TLS);
    if (!stream)
        curl_easy_setopt(e, CURLOPT_ACCEPT_ENCODING, "");
    return e;
}

/* ---- one-shot fetch ------------------------------------------------------ */

struct fetch {
    struct fetch *next, *prev;       /* in-flight list (loop thread only) */
    struct app *app;
    CURL *easy;
    struct curl_slist *hdrs;
    struct buf body;
    bool overflow;
    provider_fetch_cb cb;
    void *arg;
};

static struct fetch *g_fetches;

static void fetch_unlink(struct fetch *f)
{
    if (f->prev)
        f->prev->next = f->next;
    else
        g_fetches = f->next;
    if (f->next)
        f->next->prev = f->prev;
    f->next = f->prev = NULL;
}

static void fetch_free(struct fetch *f)
{
    curl_easy_cleanup(f->easy);
    curl_slist_free_all(f->hdrs);
    buf_cleanup(&f->body);
    free(f);
}

static size_t fetch_write(char *p, size_t sz, size_t n, void *arg)
{
    struct fetch *f = arg;
    if (buf_append(&f->body, p, sz * n) != 0) {
        f->overflow = true;
        return 0;
    }
    return sz * n;
}

static void fetch_done(CURL *easy, CURLcode rc, void *arg)
{
    struct fetch *f = arg;
    long status = 0;
    if (rc == CURLE_OK)
        curl_easy_getinfo(easy, CURLINFO_RESPONSE_CODE, &status);
    const char *err = NULL;
    if (f->overflow)
        err = "provider response too large";
    else if (rc != CURLE_OK)
        err = curl_easy_strerror(rc);
    fetch_unlink(f);
    f->cb(f->arg, err ? 0 : status, buf_str(&f->body), f->body.len, err);
    fetch_free(f);
}

void provider_fetch_cancel_all(struct app *app)
{
    while (g_fetches) {
        struct fetch *f = g_fetches;
        fetch_unlink(f);
        curlev_remove(app->curl, f->easy);
        f->cb(f->arg, 0, "", 0, "cancelled");
        fetch_free(f);
    }
}

void provider_fetch(struct app *app, const struct provider_conn *pc, const char *path,
                    const char *body, provider_fetch_cb cb, void *arg)
{
    struct fetch *f = xcalloc(1, sizeof *f);
    f->app = app;
    f->cb = cb;
    f->arg = arg;
    buf_init(&f->body, LIMIT_UPSTREAM_BODY);
    f->easy = provider_easy_new(app, pc, path, body, false, &f->hdrs);
    if (!f->easy) {
        cb(arg, 0, "", 0, "cannot create transfer");
        buf_cleanup(&f->body);
        free(f);
        return;
    }
    curl_easy_setopt(f->easy, CURLOPT_WRITEFUNCTION, fetch_write);
    curl_easy_setopt(f->easy, CURLOPT_WRITEDATA, f);
    curl_easy_setopt(f->easy, CURLOPT_TIMEOUT, (long)app->cfg.upstream_idle_timeout_s);
    if (curlev_add(app->curl, f->easy, fetch_done, f) != 0) {
        fetch_free(f);
        cb(arg, 0, "", 0, "cannot start transfer");
        return;
    }
    f->next = g_fetches;
    if (g_fetches)
        g_fetches->prev = f;
    g_fetches = f;
}

/* ---- errors ---------------------------------------------------------------- */

json_t *provider_error_json(long status, const char *body, size_t len)
{
    const char *pmsg = NULL, *pcode = NULL, *ptype = NULL;
    json_t *root = (body && len) ? json_loadb(body, len, 0, NULL) : NULL;
    json_t *err = root ? json_object_get(root, "error") : NULL;
    if (json_is_object(err)) {
        pmsg = json_string_value(json_object_get(err, "message"));
        pcode = json_string_value(json_object_get(err, "code"));
        ptype = json_string_value(json_object_get(err, "type"));
    } else if (json_is_string(err)) {
        pmsg = json_string_value(err);
    }
    const char *code;
    if (status == 401 || status == 403)
        code = "provider_auth";
    else if (status == 404)
        code = "model_not_found";
    else if (status == 429)
        code = (pcode && strcmp(pcode, "insufficient_quota") == 0) ? "provider_quota"
                                                                   : "provider_rate_limited";
    else if (pcode && strcmp(pcode, "context_length_exceeded") == 0)
        code = "context_length_exceeded";
    else if (status >= 400 && status < 500)
        code = "provider_bad_request";
    else
        code = "provider_error";
    char fallback[96];
    snprintf(fallback, sizeof fallback, "the provider answered HTTP %ld", status);
    json_t *out = json_pack("{s:s,s:s,s:I}", "code", code, "message", pmsg ? pmsg : fallback,
                            "status", (json_int_t)status);
    if (pcode)
        json_object_set_new(out, "provider_code", json_string(pcode));
    if (ptype)
        json_object_set_new(out, "provider_type", json_string(ptype));
    json_decref(root);
    return out;
}

json_t *provider_transport_error_json(CURLcode rc, bool got_bytes)
{
    const char *code = "provider_unreachable";
    const char *msg = "could not reach the provider";
    if (rc == CURLE_OPERATION_TIMEDOUT) {
        code = "provider_timeout";
        msg = "the provider stopped responding (timeout)";
    } else if (got_bytes) {
        code = "provider_disconnected";
        msg = "the provider closed the connection before the answer was complete";
    }
    return json_pack("{s:s,s:s,s:s}", "code", code, "message", msg, "detail",
                     curl_easy_strerror(rc));
}
