/* tokens.c - personal API tokens for the /v1 gateway: create (the secret is
 * shown once; only its SHA-256 is stored), list, revoke; and the caller's
 * own usage report. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "../gateway/gateway.h"
#include "../lib/caps.h"
#include "../lib/crypto.h"
#include "../lib/ids.h"
#include "api.h"

#define TOKEN_PREFIX "coai-"

static json_t *view_token(const struct store_token *t)
{
    json_t *models = t->models ? json_loads(t->models, 0, NULL) : NULL;
    return json_pack("{s:s,s:s,s:s,s:o,s:o,s:o,s:o,s:I,s:o,s:o}", "id", t->id, "name",
                     t->name ? t->name : "", "prefix", t->prefix, "models",
                     models ? models : json_null(), "rpm",
                     t->rpm >= 0 ? json_integer(t->rpm) : json_null(), "tpm",
                     t->tpm >= 0 ? json_integer(t->tpm) : json_null(), "expires_at",
                     t->expires_at ? json_integer(t->expires_at) : json_null(), "created_at",
                     (json_int_t)t->created_at, "last_used_at",
                     t->last_used_at ? json_integer(t->last_used_at) : json_null(), "revoked_at",
                     t->revoked_at ? json_integer(t->revoked_at) : json_null());
}

/* Optional non-negative integer field; -1 when absent or null. */
static int opt_int(struct api_ctx *c, const char *field, int64_t min, int64_t max, int64_t *out)
{
    json_t *v = json_object_get(c->json, field);
    *out = -1;
    if (!v || json_is_null(v))
        return 0;
    if (!json_is_integer(v) || json_integer_value(v) < min || json_integer_value(v) > max) {
        api_fail(c, 400, "invalid_request", "field \"%s\" must be an integer from %lld to %lld",
                 field, (long long)min, (long long)max);
        return -1;
    }
    *out = json_integer_value(v);
    return 0;
}

void api_tokens_create(struct api_ctx *c)
{
    const char *name;
    if (!c->json)
        return api_fail(c, 400, "invalid_request", "request body is required");
    if (api_body_string(c, "name", true, 100, &name))
        return;
    if (!*name)
        return api_fail(c, 400, "invalid_request", "field \"name\" must not be empty");
    struct store_token t;
    memset(&t, 0, sizeof t);
    int64_t days;
    if (opt_int(c, "rpm", 1, 1000000, &t.rpm) || opt_int(c, "tpm", 1, 1000000000, &t.tpm) ||
        opt_int(c, "expires_in_days", 1, 3650, &days))
        return;
    json_t *ea = json_object_get(c->json, "expires_at");
    if (ea && !json_is_null(ea)) {
        if (!json_is_integer(ea) || json_integer_value(ea) <= now_ms())
            return api_fail(c, 400, "invalid_request",
                            "field \"expires_at\" must be a future time in ms since the epoch");
        t.expires_at = json_integer_value(ea);
    } else if (days > 0) {
        t.expires_at = now_ms() + days * 86400000LL;
    }
    json_t *models = json_object_get(c->json, "models");
    char *models_text = NULL;
    if (models && !json_is_null(models)) {
        if (!json_is_array(models) || json_array_size(models) == 0 ||
            json_array_size(models) > 100)
            return api_fail(c, 400, "invalid_request",
                            "field \"models\" must be a non-empty array of model names or null");
        size_t i;
        json_t *m;
        json_array_foreach(models, i, m) if (!json_is_string(m) || json_string_length(m) == 0 ||
                                             json_string_length(m) > LIMIT_MODEL_NAME) return
            api_fail(c, 400, "invalid_request", "field \"models\" must contain model names");
        models_text = json_dumps(models, JSON_COMPACT);
    }
    char *rnd = crypto_token_new(32);
    char *secret = xasprintf("%s%s", TOKEN_PREFIX, rnd);
    secure_wipe(rnd, strlen(rnd));
    free(rnd);
    crypto_sha256_hex(secret, strlen(secret), t.token_hash);
    snprintf(t.prefix, sizeof t.prefix, "%.9s", secret);
    snprintf(t.user_id, sizeof t.user_id, "%s", c->user.id);
    t.name = (char *)name;
    t.models = models_text;
    t.created_at = now_ms();
    enum app_err e = store_token_create(c->st, &t);
    t.name = NULL;
    if (e != APP_OK) {
        free(models_text);
        secure_wipe(secret, strlen(secret));
        free(secret);
        return api_fail_err(c, e, "");
    }
    t.name = (char *)name;
    json_t *view = view_token(&t);
    t.name = NULL;
    api_reply_take(c, 201, json_pack("{s:o,s:s}", "token", view, "secret", secret));
    free(models_text);
    secure_wipe(secret, strlen(secret));
    free(secret);
}

void api_tokens_list(struct api_ctx *c)
{
    struct store_token *list = NULL;
    size_t n = 0;
    enum app_err e = store_token_list(c->st, c->user.id, &list, &n);
    if (e != APP_OK)
        return api_fail_err(c, e, "");
    json_t *arr = json_array();
    for (size_t i = 0; i < n; i++)
        json_array_append_new(arr, view_token(&list[i]));
    store_token_list_free(list, n);
    api_reply_take(c, 200, json_pack("{s:o}", "data", arr));
}

static void revoke_on_loop(struct api_ctx *c)
{
    gateway_invalidate(c->app, c->params[0], NULL);
    http_ctx_finish(c);
}

void api_tokens_revoke(struct api_ctx *c)
{
    enum app_err e = ids_valid(c->params[0])
                         ? store_token_revoke(c->st, c->user.id, c->params[0], now_ms())
                         : APP_ENOTFOUND;
    if (e == APP_ENOTFOUND)
        return api_fail(c, 404, "not_found", "no such active token");
    if (e != APP_OK)
        return api_fail_err(c, e, "");
    api_reply_take(c, 204, NULL);
    c->on_loop = revoke_on_loop; /* the gateway forgets it at once */
}

/* ---- usage reports ------------------------------------------------------------------ */

/* "YYYY-MM-DD" -> ms at 00:00 UTC; -1 if malformed. */
static int64_t parse_day(const char *s)
{
    struct tm tm;
    memset(&tm, 0, sizeof tm);
    int y, m, d;
    char tail;
    if (!s || sscanf(s, "%4d-%2d-%2d%c", &y, &m, &d, &tail) != 3 || y < 1970 || y > 9999 ||
        m < 1 || m > 12 || d < 1 || d > 31)
        return -1;
    tm.tm_year = y - 1900;
    tm.tm_mon = m - 1;
    tm.tm_mday = d;
    time_t t = timegm(&tm);
    struct tm back;
    gmtime_r(&t, &back);
    if (back.tm_mday != d) /* 2026-02-31 */
        return -1;
    return (int64_t)t * 1000;
}

/* Reads ?from=&to= (inclusive days, default: this month so far). */
static int read_range(struct api_ctx *c, int64_t *from, int64_t *to)
{
    const char *f = api_query(c, "from"), *t = api_query(c, "to");
    int64_t now = now_ms();
    if (f) {
        *from = parse_day(f);
        if (*from < 0) {
            api_fail(c, 400, "invalid_query", "from must be a date YYYY-MM-DD");
            return -1;
        }
    } else {
        time_t tt = (time_t)(now / 1000);
        struct tm tm;
        gmtime_r(&tt, &tm);
        tm.tm_mday = 1;
        tm.tm_hour = tm.tm_min = tm.tm_sec = 0;
        *from = (int64_t)timegm(&tm) * 1000;
    }
    if (t) {
        *to = parse_day(t);
        if (*to < 0) {
            api_fail(c, 400, "invalid_query", "to must be a date YYYY-MM-DD");
            return -1;
        }
        *to += 86400000; /* inclusive */
    } else {
        *to = now + 1;
    }
    if (*to <= *from || *to - *from > 400LL * 86400000) {
        api_fail(c, 400, "invalid_query", "the range must be 1 to 400 days, from <= to");
        return -1;
    }
    return 0;
}

static json_t *api_usage_json(struct api_ctx *c, const char *user_id, int64_t from, int64_t to,
                       enum app_err *e)
{
    struct store_usage_row *rows = NULL;
    size_t n = 0;
    *e = store_usage_report(c->st, from, to, user_id, &rows, &n);
    if (*e != APP_OK)
        return NULL;
    json_t *arr = json_array();
    int64_t treq = 0, tin = 0, tout = 0, tcost = 0;
    for (size_t i = 0; i < n; i++) {
        struct store_usage_row *r = &rows[i];
        json_array_append_new(
            arr, json_pack("{s:s,s:s,s:s,s:o,s:I,s:I,s:I,s:I,s:I,s:f}", "day", r->day, "model",
                           r->model ? r->model : "", "user_id", r->user_id, "email",
                           r->email ? json_string(r->email) : json_null(), "requests",
                           (json_int_t)r->requests, "errors", (json_int_t)r->errors,
                           "prompt_tokens", (json_int_t)r->prompt_tokens, "cached_tokens",
                           (json_int_t)r->cached_tokens, "completion_tokens",
                           (json_int_t)r->completion_tokens, "cost_usd",
                           (double)r->cost_micros / 1e6));
        treq += r->requests;
        tin += r->prompt_tokens;
        tout += r->completion_tokens;
        tcost += r->cost_micros;
    }
    store_usage_rows_free(rows, n);
    return json_pack("{s:I,s:I,s:o,s:{s:I,s:I,s:I,s:f}}", "from", (json_int_t)from, "to",
                     (json_int_t)to, "data", arr, "totals", "requests", (json_int_t)treq,
                     "prompt_tokens", (json_int_t)tin, "completion_tokens", (json_int_t)tout,
                     "cost_usd", (double)tcost / 1e6);
}

void api_usage_mine(struct api_ctx *c)
{
    int64_t from, to;
    if (read_range(c, &from, &to))
        return;
    enum app_err e;
    json_t *j = api_usage_json(c, c->user.id, from, to, &e);
    if (!j)
        return api_fail_err(c, e, "");
    api_reply_take(c, 200, j);
}

void api_admin_usage(struct api_ctx *c)
{
    if (!c->user.is_admin)
        return api_fail(c, 403, "forbidden", "administrators only");
    int64_t from, to;
    if (read_range(c, &from, &to))
        return;
    const char *uid = api_query(c, "user_id");
    if (uid && !ids_valid(uid))
        return api_fail(c, 400, "invalid_query", "user_id is not a user id");
    enum app_err e;
    json_t *j = api_usage_json(c, uid, from, to, &e);
    if (!j)
        return api_fail_err(c, e, "");
    api_reply_take(c, 200, j);
}
