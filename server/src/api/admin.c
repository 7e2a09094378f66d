/* admin.c - administrator endpoints: the provider key pool (keys sealed like
 * personal ones, bound to their pool row), the price table, per-user limits
 * and budgets, and the user list. Every handler refuses non-admins (403). */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../gateway/gateway.h"
#include "../lib/caps.h"
#include "../lib/crypto.h"
#include "../lib/ids.h"
#include "../views.h"
#include "api.h"

static bool admin_only(struct api_ctx *c)
{
    if (c->user.is_admin)
        return true;
    api_fail(c, 403, "forbidden", "administrators only");
    return false;
}

static char *pool_aad(const char *id)
{
    return xasprintf("chatopenaii/pool-key|%s", id);
}

static json_t *view_pool_key(const struct store_pool_key *k)
{
    return json_pack("{s:s,s:s,s:s,s:s,s:i,s:o,s:o,s:b,s:o,s:I,s:I}", "id", k->id, "name",
                     k->name ? k->name : "", "base_url", k->base_url, "key_last4", k->key_last4,
                     "weight", k->weight, "rpm", k->rpm >= 0 ? json_integer(k->rpm) : json_null(),
                     "tpm", k->tpm >= 0 ? json_integer(k->tpm) : json_null(), "enabled",
                     k->enabled, "disabled_reason",
                     k->disabled_reason ? json_string(k->disabled_reason) : json_null(),
                     "created_at", (json_int_t)k->created_at, "updated_at",
                     (json_int_t)k->updated_at);
}

static bool url_ok(const char *u)
{
    if (strncmp(u, "http://", 7) != 0 && strncmp(u, "https://", 8) != 0)
        return false;
    for (const unsigned char *p = (const unsigned char *)u; *p; p++)
        if (*p <= ' ' || *p == 0x7f || *p == '#' || *p == '?')
            return false;
    const char *host = strstr(u, "://") + 3; /* "http://" alone has no host */
    return *host && *host != '/';
}

static bool key_ok(const char *k)
{
    if (!*k)
        return false;
    for (const unsigned char *p = (const unsigned char *)k; *p; p++)
        if (*p <= ' ' || *p >= 0x7f)
            return false;
    return true;
}

/* Reads optional integer `field` into *out (-1 for null); absent leaves it. */
static int int_field(struct api_ctx *c, const char *field, int64_t min, int64_t max, int64_t *out)
{
    json_t *v = json_object_get(c->json, field);
    if (!v)
        return 0;
    if (json_is_null(v)) {
        *out = -1;
        return 0;
    }
    if (!json_is_integer(v) || json_integer_value(v) < min || json_integer_value(v) > max) {
        api_fail(c, 400, "invalid_request", "field \"%s\" must be an integer from %lld to %lld",
                 field, (long long)min, (long long)max);
        return -1;
    }
    *out = json_integer_value(v);
    return 0;
}

static void reload_on_loop(struct api_ctx *c)
{
    gateway_reload(c->app);
    http_ctx_finish(c);
}

/* Fields shared by create and update; key handled by the callers. */
static int read_key_fields(struct api_ctx *c, struct store_pool_key *k)
{
    const char *name, *base_url;
    if (api_body_string(c, "name", false, 100, &name) ||
        api_body_string(c, "base_url", false, LIMIT_URL, &base_url))
        return -1;
    if (name) {
        free(k->name);
        k->name = xstrdup(name);
    }
    if (base_url) {
        if (!url_ok(base_url)) {
            api_fail(c, 400, "invalid_base_url", "base_url must be an http(s) URL");
            return -1;
        }
        free(k->base_url);
        k->base_url = xstrdup(base_url);
        size_t l = strlen(k->base_url);
        while (l && k->base_url[l - 1] == '/')
            k->base_url[--l] = '\0';
    }
    int64_t w = k->weight;
    if (int_field(c, "weight", 1, 1000, &w) || int_field(c, "rpm", 1, 100000000, &k->rpm) ||
        int_field(c, "tpm", 1, 1000000000000LL, &k->tpm))
        return -1;
    if (w < 1)
        w = 1;
    k->weight = (int)w;
    json_t *en = json_object_get(c->json, "enabled");
    if (en) {
        if (!json_is_boolean(en)) {
            api_fail(c, 400, "invalid_request", "field \"enabled\" must be a boolean");
            return -1;
        }
        k->enabled = json_is_true(en);
        if (k->enabled) {
            free(k->disabled_reason);
            k->disabled_reason = NULL;
        } else if (!k->disabled_reason) {
            k->disabled_reason = xstrdup("disabled by an administrator");
        }
    }
    return 0;
}

static int seal_key(struct api_ctx *c, struct store_pool_key *k, const char *key)
{
    char *aad = pool_aad(k->id);
    free(k->key_ct);
    k->key_ct = NULL;
    int rc = crypto_box_seal(c->app->box_key, aad, strlen(aad), key, strlen(key), &k->key_ct,
                             &k->key_ct_len);
    free(aad);
    k->key_version = c->app->key_version;
    size_t kl = strlen(key);
    snprintf(k->key_last4, sizeof k->key_last4, "%s", kl >= 4 ? key + kl - 4 : key);
    return rc;
}

void api_admin_keys_list(struct api_ctx *c);

static void keys_list_on_loop(struct api_ctx *c)
{
    /* merge the live health the gateway keeps in memory */
    json_t *health = gateway_pool_health(c->app);
    json_t *data = json_object_get(c->resp, "data");
    size_t i, j;
    json_t *k, *h;
    json_array_foreach(data, i, k)
    {
        json_array_foreach(health, j, h) if (strcmp(json_string_value(json_object_get(k, "id")),
                                                    json_string_value(json_object_get(h, "id"))) ==
                                             0) json_object_set(k, "health", h);
        if (!json_object_get(k, "health"))
            json_object_set_new(k, "health", json_pack("{s:s}", "state", "loading"));
    }
    json_decref(health);
    http_ctx_finish(c);
}

void api_admin_keys_list(struct api_ctx *c)
{
    if (!admin_only(c))
        return;
    struct store_pool_key *list = NULL;
    size_t n = 0;
    enum app_err e = store_pool_key_list(c->st, &list, &n);
    if (e != APP_OK)
        return api_fail_err(c, e, "");
    json_t *arr = json_array();
    int64_t since = now_ms() - 30LL * 86400000;
    for (size_t i = 0; i < n; i++) {
        json_t *v = view_pool_key(&list[i]);
        int64_t req = 0, tok = 0, err = 0;
        if (store_usage_key_totals(c->st, list[i].id, since, &req, &tok, &err) == APP_OK)
            json_object_set_new(v, "usage_30d",
                                json_pack("{s:I,s:I,s:I}", "requests", (json_int_t)req, "tokens",
                                          (json_int_t)tok, "errors", (json_int_t)err));
        json_array_append_new(arr, v);
    }
    store_pool_key_list_free(list, n);
    api_reply_take(c, 200, json_pack("{s:o}", "data", arr));
    c->on_loop = keys_list_on_loop;
}

void api_admin_keys_create(struct api_ctx *c)
{
    if (!admin_only(c))
        return;
    if (!c->json)
        return api_fail(c, 400, "invalid_request", "request body is required");
    const char *key;
    if (api_body_string(c, "api_key", true, LIMIT_API_KEY, &key))
        return;
    if (!key_ok(key))
        return api_fail(c, 400, "invalid_api_key", "api_key must be printable ASCII without spaces");
    struct store_pool_key k;
    memset(&k, 0, sizeof k);
    ids_new(k.id);
    k.weight = 1;
    k.rpm = k.tpm = -1;
    k.enabled = true;
    k.base_url = xstrdup(c->app->cfg.provider_base_url);
    if (read_key_fields(c, &k) || seal_key(c, &k, key)) {
        if (c->status == 0)
            api_fail_err(c, APP_ECRYPTO, "");
        store_pool_key_clear(&k);
        return;
    }
    if (!k.name)
        k.name = xstrdup("key");
    enum app_err e = store_pool_key_create(c->st, &k);
    if (e == APP_OK) {
        struct store_pool_key got;
        memset(&got, 0, sizeof got);
        if (store_pool_key_get(c->st, k.id, &got) == APP_OK)
            api_reply_take(c, 201, json_pack("{s:o}", "key", view_pool_key(&got)));
        store_pool_key_clear(&got);
        c->on_loop = reload_on_loop;
    } else {
        api_fail_err(c, e, "");
    }
    store_pool_key_clear(&k);
}

void api_admin_keys_update(struct api_ctx *c)
{
    if (!admin_only(c))
        return;
    struct store_pool_key k;
    memset(&k, 0, sizeof k);
    enum app_err e = ids_valid(c->params[0]) ? store_pool_key_get(c->st, c->params[0], &k)
                                             : APP_ENOTFOUND;
    if (e == APP_ENOTFOUND)
        return api_fail(c, 404, "not_found", "no such pool key");
    if (e != APP_OK)
        return api_fail_err(c, e, "");
    if (!c->json) {
        store_pool_key_clear(&k);
        return api_fail(c, 400, "invalid_request", "request body is required");
    }
    const char *key = NULL;
    if (read_key_fields(c, &k) || api_body_string(c, "api_key", false, LIMIT_API_KEY, &key)) {
        store_pool_key_clear(&k);
        return;
    }
    if (key && !key_ok(key)) {
        store_pool_key_clear(&k);
        return api_fail(c, 400, "invalid_api_key", "api_key must be printable ASCII");
    }
    e = store_pool_key_update(c->st, &k);
    if (e == APP_OK && key) {
        if (seal_key(c, &k, key) != 0)
            e = APP_ECRYPTO;
        else
            e = store_pool_key_set_key(c->st, k.id, k.key_ct, k.key_ct_len, k.key_version,
                                       k.key_last4);
        if (e == APP_OK && !json_object_get(c->json, "enabled")) {
            /* a replaced key gets another chance */
            k.enabled = true;
            free(k.disabled_reason);
            k.disabled_reason = NULL;
            e = store_pool_key_update(c->st, &k);
        }
    }
    store_pool_key_clear(&k);
    if (e != APP_OK)
        return api_fail_err(c, e, "");
    memset(&k, 0, sizeof k);
    if (store_pool_key_get(c->st, c->params[0], &k) == APP_OK)
        api_reply_take(c, 200, json_pack("{s:o}", "key", view_pool_key(&k)));
    store_pool_key_clear(&k);
    c->on_loop = reload_on_loop;
}

void api_admin_keys_delete(struct api_ctx *c)
{
    if (!admin_only(c))
        return;
    enum app_err e = ids_valid(c->params[0]) ? store_pool_key_delete(c->st, c->params[0])
                                             : APP_ENOTFOUND;
    if (e == APP_ENOTFOUND)
        return api_fail(c, 404, "not_found", "no such pool key");
    if (e != APP_OK)
        return api_fail_err(c, e, "");
    api_reply_take(c, 204, NULL);
    c->on_loop = reload_on_loop;
}

/* ---- prices -------------------------------------------------------------------------- */

void api_admin_prices_list(struct api_ctx *c)
{
    struct store_price *list = NULL;
    size_t n = 0;
    enum app_err e = store_price_list(c->st, &list, &n);
    if (e != APP_OK)
        return api_fail_err(c, e, "");
    json_t *arr = json_array();
    for (size_t i = 0; i < n; i++)
        json_array_append_new(
            arr, json_pack("{s:s,s:f,s:f,s:f,s:I}", "model", list[i].model, "input",
                           (double)list[i].input_micros / 1e6, "cached_input",
                           (double)list[i].cached_input_micros / 1e6, "output",
                           (double)list[i].output_micros / 1e6, "updated_at",
                           (json_int_t)list[i].updated_at));
    store_price_list_free(list, n);
    api_reply_take(c, 200, json_pack("{s:o,s:s}", "data", arr, "unit", "USD per 1M tokens"));
}

static int price_field(struct api_ctx *c, const char *field, bool required, int64_t *out)
{
    json_t *v = json_object_get(c->json, field);
    if (!v) {
        if (required) {
            api_fail(c, 400, "invalid_request", "field \"%s\" is required", field);
            return -1;
        }
        return 0;
    }
    if (!json_is_number(v) || json_number_value(v) < 0 || json_number_value(v) > 1e6) {
        api_fail(c, 400, "invalid_request",
                 "field \"%s\" must be a price in USD per 1M tokens (0 to 1000000)", field);
        return -1;
    }
    *out = (int64_t)llround(json_number_value(v) * 1e6);
    return 0;
}

void api_admin_prices_put(struct api_ctx *c)
{
    if (!admin_only(c))
        return;
    if (!c->json)
        return api_fail(c, 400, "invalid_request", "request body is required");
    const char *model;
    if (api_body_string(c, "model", true, LIMIT_MODEL_NAME, &model))
        return;
    if (!*model)
        return api_fail(c, 400, "invalid_request", "field \"model\" must not be empty");
    struct store_price p = {.model = (char *)model};
    if (price_field(c, "input", true, &p.input_micros) ||
        price_field(c, "output", true, &p.output_micros))
        return;
    p.cached_input_micros = p.input_micros;
    if (price_field(c, "cached_input", false, &p.cached_input_micros))
        return;
    enum app_err e = store_price_upsert(c->st, &p);
    if (e != APP_OK)
        return api_fail_err(c, e, "");
    api_reply_take(c, 200, json_pack("{s:s,s:f,s:f,s:f}", "model", model, "input",
                                     (double)p.input_micros / 1e6, "cached_input",
                                     (double)p.cached_input_micros / 1e6, "output",
                                     (double)p.output_micros / 1e6));
    c->on_loop = reload_on_loop;
}

void api_admin_prices_delete(struct api_ctx *c)
{
    if (!admin_only(c))
        return;
    const char *model = api_query(c, "model");
    if (!model || !*model)
        return api_fail(c, 400, "invalid_query", "?model= is required");
    enum app_err e = store_price_delete(c->st, model);
    if (e == APP_ENOTFOUND)
        return api_fail(c, 404, "not_found", "no price for this model");
    if (e != APP_OK)
        return api_fail_err(c, e, "");
    api_reply_take(c, 204, NULL);
    c->on_loop = reload_on_loop;
}

/* ---- users, limits and budgets --------------------------------------------------------- */

static json_t *view_limits(const struct store_user_limits *l)
{
    return json_pack("{s:s,s:o,s:o,s:o,s:o}", "user_id", l->user_id, "rpm",
                     l->rpm >= 0 ? json_integer(l->rpm) : json_null(), "tpm",
                     l->tpm >= 0 ? json_integer(l->tpm) : json_null(), "monthly_tokens",
                     l->monthly_tokens >= 0 ? json_integer(l->monthly_tokens) : json_null(),
                     "monthly_cost_usd",
                     l->monthly_cost_micros >= 0 ? json_real((double)l->monthly_cost_micros / 1e6)
                                                 : json_null());
}

void api_admin_users_list(struct api_ctx *c)
{
    if (!admin_only(c))
        return;
    struct store_user *list = NULL;
    size_t n = 0;
    enum app_err e = store_user_list(c->st, &list, &n);
    if (e != APP_OK)
        return api_fail_err(c, e, "");
    json_t *arr = json_array();
    for (size_t i = 0; i < n; i++)
        json_array_append_new(arr, view_user(&list[i]));
    store_user_list_free(list, n);
    api_reply_take(c, 200, json_pack("{s:o}", "data", arr));
}

static enum app_err load_limits(struct api_ctx *c, struct store_user_limits *l)
{
    memset(l, 0, sizeof *l);
    struct store_user u;
    memset(&u, 0, sizeof u);
    enum app_err e = ids_valid(c->params[0]) ? store_user_get(c->st, c->params[0], &u)
                                             : APP_ENOTFOUND;
    store_user_clear(&u);
    if (e != APP_OK)
        return e;
    e = store_user_limits_get(c->st, c->params[0], l);
    if (e == APP_ENOTFOUND) {
        snprintf(l->user_id, sizeof l->user_id, "%s", c->params[0]);
        l->rpm = l->tpm = l->monthly_tokens = l->monthly_cost_micros = -1;
        e = APP_OK;
    }
    return e;
}

void api_admin_limits_get(struct api_ctx *c)
{
    if (!admin_only(c))
        return;
    struct store_user_limits l;
    enum app_err e = load_limits(c, &l);
    if (e == APP_ENOTFOUND)
        return api_fail(c, 404, "not_found", "no such user");
    if (e != APP_OK)
        return api_fail_err(c, e, "");
    api_reply_take(c, 200, json_pack("{s:o}", "limits", view_limits(&l)));
}

static void limits_on_loop(struct api_ctx *c)
{
    gateway_invalidate(c->app, NULL, c->params[0]);
    http_ctx_finish(c);
}

void api_admin_limits_put(struct api_ctx *c)
{
    if (!admin_only(c))
        return;
    if (!c->json)
        return api_fail(c, 400, "invalid_request", "request body is required");
    struct store_user_limits l;
    enum app_err e = load_limits(c, &l);
    if (e == APP_ENOTFOUND)
        return api_fail(c, 404, "not_found", "no such user");
    if (e != APP_OK)
        return api_fail_err(c, e, "");
    if (int_field(c, "rpm", 1, 100000000, &l.rpm) || int_field(c, "tpm", 1, 1000000000000LL, &l.tpm) ||
        int_field(c, "monthly_tokens", 0, 1000000000000000LL, &l.monthly_tokens))
        return;
    json_t *cost = json_object_get(c->json, "monthly_cost_usd");
    if (cost) {
        if (json_is_null(cost))
            l.monthly_cost_micros = -1;
        else if (!json_is_number(cost) || json_number_value(cost) < 0 ||
                 json_number_value(cost) > 1e9)
            return api_fail(c, 400, "invalid_request",
                            "field \"monthly_cost_usd\" must be a non-negative number or null");
        else
            l.monthly_cost_micros = (int64_t)llround(json_number_value(cost) * 1e6);
    }
    e = store_user_limits_set(c->st, &l);
    if (e != APP_OK)
        return api_fail_err(c, e, "");
    api_reply_take(c, 200, json_pack("{s:o}", "limits", view_limits(&l)));
    c->on_loop = limits_on_loop;
}
