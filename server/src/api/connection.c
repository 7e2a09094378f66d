/* connection.c - a user's provider connection (base URL + API key) and the
 * model list. Keys are sealed with AES-256-GCM under a key derived from the
 * master key, bound to (owner, connection id) as associated data, so a
 * ciphertext copied to another row or user does not open. The API only
 * ever shows the last four characters. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../lib/caps.h"
#include "../lib/crypto.h"
#include "../lib/ids.h"
#include "../gateway/gateway.h"
#include "../lib/log.h"
#include "../views.h"
#include "api.h"

static char *aad_for(const char *owner, const char *conn_id)
{
    return xasprintf("chatopenaii/provider-key|%s|%s", owner, conn_id);
}

int api_key_seal(struct app *app, const char *owner, const char *conn_id, const char *key,
                 unsigned char **ct, size_t *ct_len)
{
    char *aad = aad_for(owner, conn_id);
    int rc = crypto_box_seal(app->box_key, aad, strlen(aad), key, strlen(key), ct, ct_len);
    free(aad);
    return rc;
}

int api_key_open(struct app *app, const char *owner, const char *conn_id,
                 const unsigned char *ct, size_t ct_len, char **key)
{
    char *aad = aad_for(owner, conn_id);
    size_t n = 0;
    int rc = crypto_box_open(app->box_key, aad, strlen(aad), ct, ct_len, key, &n);
    free(aad);
    return rc;
}

static bool base_url_ok(const char *u)
{
    if (strncmp(u, "http://", 7) != 0 && strncmp(u, "https://", 8) != 0)
        return false;
    for (const unsigned char *p = (const unsigned char *)u; *p; p++)
        if (*p <= ' ' || *p == 0x7f || *p == '#' || *p == '?')
            return false;
    const char *host = strstr(u, "://") + 3;
    return *host && *host != '/';
}

static bool api_key_ok(const char *k)
{
    if (!*k)
        return false;
    for (const unsigned char *p = (const unsigned char *)k; *p; p++)
        if (*p <= ' ' || *p >= 0x7f)
            return false;
    return true;
}

enum app_err api_provider_resolve(struct api_ctx *c, struct provider_conn *out)
{
    memset(out, 0, sizeof *out);
    struct store_conn sc;
    memset(&sc, 0, sizeof sc);
    enum app_err e = store_conn_get_default(c->st, c->user.id, &sc);
    if (e == APP_OK && sc.key_ct && sc.key_ct_len) {
        if (sc.key_version != c->app->key_version) {
            log_error("provider key sealed with another master key", "conn", sc.id, NULL);
            store_conn_clear(&sc);
            return APP_ECRYPTO;
        }
        char *key = NULL;
        if (api_key_open(c->app, c->user.id, sc.id, sc.key_ct, sc.key_ct_len, &key) != 0) {
            log_error("provider key does not decrypt", "conn", sc.id, NULL);
            store_conn_clear(&sc);
            return APP_ECRYPTO;
        }
        out->base_url = xstrdup(sc.base_url);
        out->api_key = key;
        out->from_user = true;
        store_conn_clear(&sc);
        return APP_OK;
    }
    store_conn_clear(&sc);
    if (e != APP_OK && e != APP_ENOTFOUND)
        return e;
    if (gateway_pool_available(c->app))
        return APP_OK; /* no key here: the loop takes one from the pool */
    if (!c->app->cfg.provider_api_key)
        return APP_ENOTFOUND;
    out->base_url = xstrdup(c->app->cfg.provider_base_url);
    out->api_key = xstrdup(c->app->cfg.provider_api_key);
    return APP_OK;
}

/* No personal connection: the organisation's key pool, else the server default. */
static json_t *server_default_view(struct app *app)
{
    bool pool = gateway_pool_available(app);
    return json_pack("{s:n,s:s,s:b,s:n,s:s}", "id", "base_url", app->cfg.provider_base_url,
                     "has_key", pool || app->cfg.provider_api_key != NULL, "key_last4", "source",
                     pool ? "pool" : "server");
}

void api_connection_get(struct api_ctx *c)
{
    struct store_conn sc;
    memset(&sc, 0, sizeof sc);
    enum app_err e = store_conn_get_default(c->st, c->user.id, &sc);
    if (e == APP_ENOTFOUND)
        return api_reply_take(c, 200, json_pack("{s:o}", "connection", server_default_view(c->app)));
    if (e != APP_OK)
        return api_fail_err(c, e, "");
    api_reply_take(c, 200, json_pack("{s:o}", "connection", view_connection(&sc)));
    store_conn_clear(&sc);
}

void api_connection_put(struct api_ctx *c)
{
    const char *base_url, *key;
    if (api_body_string(c, "base_url", true, LIMIT_URL, &base_url) ||
        api_body_string(c, "api_key", false, LIMIT_API_KEY, &key))
        return;
    if (!base_url_ok(base_url))
        return api_fail(c, 400, "invalid_base_url",
                        "base_url must be an http:// or https:// URL without query or fragment");
    if (key && !api_key_ok(key))
        return api_fail(c, 400, "invalid_api_key",
                        "api_key must be printable ASCII without spaces");

    struct store_conn sc;
    memset(&sc, 0, sizeof sc);
    enum app_err e = store_conn_get_default(c->st, c->user.id, &sc);
    if (e != APP_OK && e != APP_ENOTFOUND)
        return api_fail_err(c, e, "");
    if (e == APP_ENOTFOUND && !key)
        return api_fail(c, 400, "invalid_request", "field \"api_key\" is required");
    if (e == APP_ENOTFOUND) {
        memset(&sc, 0, sizeof sc);
        ids_new(sc.id);
        snprintf(sc.owner_id, sizeof sc.owner_id, "%s", c->user.id);
    }
    free(sc.base_url);
    sc.base_url = xstrdup(base_url);
    size_t bl = strlen(sc.base_url);
    while (bl > 0 && sc.base_url[bl - 1] == '/')
        sc.base_url[--bl] = '\0';
    if (key) {
        free(sc.key_ct);
        sc.key_ct = NULL;
        if (api_key_seal(c->app, c->user.id, sc.id, key, &sc.key_ct, &sc.key_ct_len) != 0) {
            store_conn_clear(&sc);
            return api_fail_err(c, APP_ECRYPTO, "");
        }
        sc.key_version = c->app->key_version;
        size_t kl = strlen(key);
        snprintf(sc.key_last4, sizeof sc.key_last4, "%s", kl >= 4 ? key + kl - 4 : key);
    }
    e = store_conn_upsert(c->st, &sc);
    if (e != APP_OK) {
        store_conn_clear(&sc);
        return api_fail_err(c, e, "");
    }
    store_conn_clear(&sc);
    memset(&sc, 0, sizeof sc);
    e = store_conn_get_default(c->st, c->user.id, &sc);
    if (e != APP_OK)
        return api_fail_err(c, e, "");
    api_reply_take(c, 200, json_pack("{s:o}", "connection", view_connection(&sc)));
    store_conn_clear(&sc);
}

void api_connection_delete(struct api_ctx *c)
{
    enum app_err e = store_conn_delete_default(c->st, c->user.id);
    if (e == APP_ENOTFOUND)
        return api_fail(c, 404, "not_found", "no saved connection");
    if (e != APP_OK)
        return api_fail_err(c, e, "");
    api_reply_take(c, 204, NULL);
}

/* ---- models (loop side, cached per connection) ------------------------------ */

struct models_cache {
    struct models_entry {
        char keyhash[65];   /* sha256 of base_url + key */
        json_t *ids;        /* array of strings */
        int64_t expires_ms;
    } e[16];
    unsigned next;
};

struct models_req {
    struct api_ctx *c;
    struct provider_conn pc;
    char keyhash[65];
};

static void models_req_free(void *p)
{
    struct models_req *m = p;
    provider_conn_clear(&m->pc);
    free(m);
}

static json_t *fallback_models(struct app *app)
{
    json_t *arr = json_array();
    char *list = xstrdup(app->cfg.fallback_models), *save = NULL;
    for (char *tok = strtok_r(list, ",", &save); tok; tok = strtok_r(NULL, ",", &save)) {
        while (*tok == ' ')
            tok++;
        if (*tok)
            json_array_append_new(arr, json_string(tok));
    }
    free(list);
    return arr;
}

static void models_reply(struct api_ctx *c, json_t *ids, const char *source)
{
    json_t *data = json_array();
    size_t i;
    json_t *v;
    json_array_foreach(ids, i, v) json_array_append_new(data, json_pack("{s:O}", "id", v));
    api_reply_take(c, 200, json_pack("{s:o,s:s,s:s}", "data", data, "default",
                                     c->app->cfg.default_model, "source", source));
    json_decref(ids);
    http_ctx_finish(c);
}

static int cmp_str(const void *a, const void *b)
{
    return strcmp(json_string_value(*(json_t *const *)a), json_string_value(*(json_t *const *)b));
}

static void models_fetched(void *arg, long status, const char *body, size_t len, const char *err)
{
    struct api_ctx *c = arg;
    struct models_req *m = c->loop_data;
    json_t *root = status == 200 ? json_loadb(body, len, 0, NULL) : NULL;
    json_t *data = json_object_get(root, "data");
    if (!json_is_array(data)) {
        json_decref(root);
        return models_reply(c, fallback_models(c->app), "fallback");
    }
    size_t n = json_array_size(data);
    json_t **tmp = xcalloc(n ? n : 1, sizeof *tmp);
    size_t k = 0;
    for (size_t i = 0; i < n && k < 1000; i++) {
        json_t *id = json_object_get(json_array_get(data, i), "id");
        if (json_is_string(id) && json_string_length(id) <= LIMIT_MODEL_NAME)
            tmp[k++] = id;
    }
    qsort(tmp, k, sizeof *tmp, cmp_str);
    json_t *ids = json_array();
    for (size_t i = 0; i < k; i++)
        json_array_append(ids, tmp[i]);
    free(tmp);
    json_decref(root);
    struct models_cache *mc = c->app->models;
    if (c->app->cfg.models_cache_s > 0) {
        struct models_entry *e = &mc->e[mc->next++ % COAI_ARRAY_LEN(mc->e)];
        json_decref(e->ids);
        memcpy(e->keyhash, m->keyhash, sizeof e->keyhash);
        e->ids = json_incref(ids);
        e->expires_ms = now_ms() + c->app->cfg.models_cache_s * 1000LL;
    }
    models_reply(c, ids, "provider");
}

static void models_on_loop(struct api_ctx *c)
{
    struct models_req *m = c->loop_data;
    if (!m->pc.api_key) {
        char key_id[STORE_ID_LEN + 1];
        if (!gateway_pool_pick(c->app, &m->pc, key_id))
            return models_reply(c, fallback_models(c->app), "fallback");
        snprintf(m->keyhash, sizeof m->keyhash, "pool");
    }
    struct models_cache *mc = c->app->models;
    int64_t now = now_ms();
    for (size_t i = 0; i < COAI_ARRAY_LEN(mc->e); i++)
        if (mc->e[i].ids && mc->e[i].expires_ms > now &&
            strcmp(mc->e[i].keyhash, m->keyhash) == 0)
            return models_reply(c, json_incref(mc->e[i].ids), "cache");
    provider_fetch(c->app, &m->pc, "/models", NULL, models_fetched, c);
}

void api_models_list(struct api_ctx *c)
{
    struct models_req *m = xcalloc(1, sizeof *m);
    enum app_err e = api_provider_resolve(c, &m->pc);
    if (e == APP_ENOTFOUND) {
        models_req_free(m);
        json_t *ids = fallback_models(c->app);
        json_t *data = json_array();
        size_t i;
        json_t *v;
        json_array_foreach(ids, i, v) json_array_append_new(data, json_pack("{s:O}", "id", v));
        json_decref(ids);
        return api_reply_take(c, 200, json_pack("{s:o,s:s,s:s}", "data", data, "default",
                                                c->app->cfg.default_model, "source", "fallback"));
    }
    if (e != APP_OK) {
        models_req_free(m);
        return api_fail_err(c, e, "");
    }
    if (!m->pc.api_key) { /* pool: hash the pool's identity instead */
        m->c = c;
        c->loop_data = m;
        c->loop_data_free = models_req_free;
        c->on_loop = models_on_loop;
        c->status = 200;
        return;
    }
    char *k = xasprintf("%s\n%s", m->pc.base_url, m->pc.api_key);
    crypto_sha256_hex(k, strlen(k), m->keyhash);
    secure_wipe(k, strlen(k));
    free(k);
    m->c = c;
    c->loop_data = m;
    c->loop_data_free = models_req_free;
    c->on_loop = models_on_loop;
    c->status = 200;
}

struct models_cache *models_cache_new(void)
{
    return xcalloc(1, sizeof(struct models_cache));
}

void models_cache_free(struct models_cache *mc)
{
    if (!mc)
        return;
    for (size_t i = 0; i < COAI_ARRAY_LEN(mc->e); i++)
        json_decref(mc->e[i].ids);
    free(mc);
}
