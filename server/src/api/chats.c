/* chats.c - create, list (keyset-paginated, newest activity first), read,
 * update (title, model, system prompt, sampling params, visible branch) and
 * delete chats. Another user's chat is indistinguishable from a missing one. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../lib/buf.h"
#include "../lib/caps.h"
#include "../lib/ids.h"
#include "../lib/utf8.h"
#include "../llm/turn.h"
#include "../views.h"
#include "api.h"

#define PAGE_DEFAULT 50
#define PAGE_MAX 200
#define TAIL_MAX 500 /* GET /chats/{id}?tail= */

/* Sampling parameters we accept, with their ranges. Unknown keys are refused
 * so typos do not silently do nothing. */
static const struct param_rule {
    const char *name;
    double min, max;
    bool integer;
} param_rules[] = {
    {"temperature", 0, 2, false},       {"top_p", 0, 1, false},
    {"max_tokens", 1, 1000000, true},   {"presence_penalty", -2, 2, false},
    {"frequency_penalty", -2, 2, false}, {"seed", -2147483648.0, 2147483647.0, true},
};

char *api_chat_params(struct api_ctx *c, json_t *params)
{
    if (!json_is_object(params)) {
        api_fail(c, 400, "invalid_request", "field \"params\" must be an object");
        return NULL;
    }
    const char *k;
    json_t *v;
    json_object_foreach(params, k, v)
    {
        const struct param_rule *r = NULL;
        for (size_t i = 0; i < COAI_ARRAY_LEN(param_rules); i++)
            if (strcmp(param_rules[i].name, k) == 0)
                r = &param_rules[i];
        if (!r) {
            api_fail(c, 400, "invalid_params",
                     "unknown parameter \"%.40s\" (allowed: temperature, top_p, max_tokens, "
                     "presence_penalty, frequency_penalty, seed)",
                     k);
            return NULL;
        }
        if (json_is_null(v))
            continue;
        if (!json_is_number(v) || (r->integer && !json_is_integer(v))) {
            api_fail(c, 400, "invalid_params", "parameter \"%s\" must be %s", k,
                     r->integer ? "an integer" : "a number");
            return NULL;
        }
        double d = json_number_value(v);
        if (d < r->min || d > r->max) {
            api_fail(c, 400, "invalid_params", "parameter \"%s\" must be between %g and %g", k,
                     r->min, r->max);
            return NULL;
        }
    }
    return json_dumps(params, JSON_COMPACT);
}

static bool text_ok(struct api_ctx *c, const char *field, const char *s)
{
    for (const unsigned char *p = (const unsigned char *)s; *p; p++)
        if (*p < 0x20 && *p != '\n' && *p != '\t' && *p != '\r') {
            api_fail(c, 400, "invalid_request", "field \"%s\" contains control characters", field);
            return false;
        }
    return true;
}

/* Reads the optional title/model/system_prompt/params/folder fields into a
 * patch; strings are borrowed from c->json, params serialized into *params_out. */
static int read_chat_fields(struct api_ctx *c, struct store_chat_patch *p, char **params_out)
{
    const char *s;
    json_t *body = c->json;
    *params_out = NULL;
    if (json_object_get(body, "title")) {
        if (api_body_string(c, "title", false, LIMIT_TITLE, &s))
            return -1;
        if (s && !text_ok(c, "title", s))
            return -1;
        p->set_title = true;
        p->title = (s && *s) ? s : NULL;
    }
    if (json_object_get(body, "model")) {
        if (api_body_string(c, "model", false, LIMIT_MODEL_NAME, &s))
            return -1;
        if (s && !text_ok(c, "model", s))
            return -1;
        p->set_model = true;
        p->model = (s && *s) ? s : NULL;
    }
    if (json_object_get(body, "system_prompt")) {
        if (api_body_string(c, "system_prompt", false, LIMIT_SYSTEM_PROMPT, &s))
            return -1;
        p->set_system_prompt = true;
        p->system_prompt = (s && *s) ? s : NULL;
    }
    json_t *params = json_object_get(body, "params");
    if (params) {
        p->set_params = true;
        if (!json_is_null(params)) {
            *params_out = api_chat_params(c, params);
            if (!*params_out)
                return -1;
            p->params = *params_out;
        }
    }
    return 0;
}

void api_chats_create(struct api_ctx *c)
{
    struct store_chat_patch p = {0};
    char *params = NULL;
    if (c->json && read_chat_fields(c, &p, &params))
        return;
    struct store_chat ch;
    memset(&ch, 0, sizeof ch);
    snprintf(ch.owner_id, sizeof ch.owner_id, "%s", c->user.id);
    ch.title = (char *)p.title;
    ch.model = (char *)p.model;
    ch.system_prompt = (char *)p.system_prompt;
    ch.params = params;
    enum app_err e = store_chat_create(c->st, &ch);
    char id[STORE_ID_LEN + 1];
    memcpy(id, ch.id, sizeof id);
    free(params);
    memset(&ch, 0, sizeof ch);
    if (e == APP_OK)
        e = store_chat_get(c->st, c->user.id, id, &ch);
    if (e != APP_OK)
        return api_fail_err(c, e, "");
    api_reply_take(c, 201, json_pack("{s:o}", "chat", view_chat(&ch)));
    store_chat_clear(&ch);
}

void api_chats_list(struct api_ctx *c)
{
    long limit = PAGE_DEFAULT;
    const char *l = api_query(c, "limit");
    if (l) {
        char *end;
        errno = 0;
        limit = strtol(l, &end, 10);
        if (errno || *end || end == l || limit < 1 || limit > PAGE_MAX)
            return api_fail(c, 400, "invalid_query", "limit must be an integer from 1 to %d",
                            PAGE_MAX);
    }
    /* cursor = "<updated_at>_<id>" of the last chat of the previous page */
    int64_t before_ts = 0;
    char before_id[STORE_ID_LEN + 1] = "";
    const char *cur = api_query(c, "cursor");
    if (cur) {
        char *end;
        errno = 0;
        long long ts = strtoll(cur, &end, 10);
        if (errno || end == cur || *end != '_' || !ids_valid(end + 1))
            return api_fail(c, 400, "invalid_query", "cursor is malformed");
        before_ts = ts;
        snprintf(before_id, sizeof before_id, "%s", end + 1);
    }
    struct store_chat *list = NULL;
    size_t n = 0;
    enum app_err e = store_chat_list(c->st, c->user.id, (int)limit + 1, before_ts,
                                     cur ? before_id : NULL, &list, &n);
    if (e != APP_OK)
        return api_fail_err(c, e, "");
    /* Written as text straight from the rows (view_chat_append): this is the
     * most frequent request, and building then dumping a tree cost half of it. */
    size_t shown = n > (size_t)limit ? (size_t)limit : n;
    struct buf b;
    buf_init(&b, LIMIT_CHAT_MESSAGES_REPLY);
    int rc = buf_append_str(&b, "{\"data\":[");
    for (size_t i = 0; i < shown && rc == 0; i++) {
        if (i)
            rc = buf_append(&b, ",", 1);
        if (rc == 0)
            rc = view_chat_append(&b, &list[i]);
    }
    if (rc == 0 && n > (size_t)limit)
        rc = buf_printf(&b, "],\"next_cursor\":\"%lld_%s\"}", (long long)list[shown - 1].updated_at,
                        list[shown - 1].id);
    else if (rc == 0)
        rc = buf_append_str(&b, "],\"next_cursor\":null}");
    store_chat_list_free(list, n);
    if (rc != 0) {
        buf_cleanup(&b);
        return api_fail(c, 500, "internal", "chat list too large");
    }
    api_reply_text_take(c, 200, buf_take(&b, NULL));
}

void api_chats_get(struct api_ctx *c)
{
    struct store_chat ch;
    memset(&ch, 0, sizeof ch);
    if (!ids_valid(c->params[0]))
        return api_fail(c, 404, "not_found", "no such chat");
    enum app_err e = store_chat_get(c->st, c->user.id, c->params[0], &ch);
    if (e == APP_ENOTFOUND)
        return api_fail(c, 404, "not_found", "no such chat");
    if (e != APP_OK)
        return api_fail_err(c, e, "");
    /* ?tail=N: the end of the visible branch (and the siblings of its
     * messages) only, so that a long chat paints before the rest arrives. */
    long tail = 0;
    const char *t = api_query(c, "tail");
    if (t) {
        char *end;
        errno = 0;
        tail = strtol(t, &end, 10);
        if (errno || *end || !(*t >= '0' && *t <= '9') || tail < 1 || tail > TAIL_MAX) {
            store_chat_clear(&ch);
            return api_fail(c, 400, "invalid_query", "tail must be an integer from 1 to %d",
                            TAIL_MAX);
        }
    }
    struct store_message *msgs = NULL;
    size_t n = 0;
    int64_t total = 0;
    if (tail)
        e = store_message_tail(c->st, ch.id, ch.current_leaf_id, (int)tail, &msgs, &n, &total);
    else
        e = store_message_list(c->st, ch.id, &msgs, &n);
    if (e != APP_OK) {
        store_chat_clear(&ch);
        return api_fail_err(c, e, "");
    }
    /* The messages are written straight from their stored JSON (see
     * view_messages_text): opening a long chat is this request. */
    json_t *chat = view_chat(&ch);
    char *chat_text = json_dumps(chat, JSON_COMPACT);
    json_decref(chat);
    store_chat_clear(&ch);
    char *prefix = xasprintf("{\"chat\":%s,\"messages\":", chat_text ? chat_text : "null");
    free(chat_text);
    char *suffix = tail ? xasprintf(",\"partial\":%s,\"message_count\":%lld}",
                                    (int64_t)n < total ? "true" : "false", (long long)total)
                        : NULL;
    char *text = view_messages_text(prefix, msgs, n, suffix ? suffix : "}",
                                    LIMIT_CHAT_MESSAGES_REPLY);
    free(prefix);
    free(suffix);
    store_message_list_free(msgs, n);
    if (!text)
        return api_fail(c, 500, "internal_error", "this chat is too large to send at once");
    api_reply_text_take(c, 200, text);
}

void api_chats_update(struct api_ctx *c)
{
    struct store_chat ch;
    memset(&ch, 0, sizeof ch);
    enum app_err e = ids_valid(c->params[0]) ? store_chat_get(c->st, c->user.id, c->params[0], &ch)
                                             : APP_ENOTFOUND;
    store_chat_clear(&ch);
    if (e == APP_ENOTFOUND) /* the chat first, then the body */
        return api_fail(c, 404, "not_found", "no such chat");
    if (e != APP_OK)
        return api_fail_err(c, e, "");
    if (!c->json)
        return api_fail(c, 400, "invalid_request", "request body is required");
    const char *k;
    json_t *v;
    json_object_foreach(c->json, k, v)
    {
        static const char *const known[] = {"title", "model", "system_prompt", "params",
                                            "current_leaf_id"};
        bool ok = false;
        for (size_t i = 0; i < COAI_ARRAY_LEN(known); i++)
            ok |= strcmp(k, known[i]) == 0;
        if (!ok)
            return api_fail(c, 400, "invalid_request", "unknown field \"%.40s\"", k);
    }
    struct store_chat_patch p = {0};
    char *params = NULL;
    if (read_chat_fields(c, &p, &params))
        return;
    char leaf[STORE_ID_LEN + 1];
    const char *target;
    if (api_body_string(c, "current_leaf_id", false, 64, &target)) {
        free(params);
        return;
    }
    if (target) {
        /* Switching branch: any message of the chat; we show the newest leaf
         * below it, as the branch arrows expect. */
        struct store_message m;
        memset(&m, 0, sizeof m);
        e = ids_valid(target) ? store_message_get(c->st, c->user.id, target, &m) : APP_ENOTFOUND;
        if (e == APP_OK && strcmp(m.chat_id, c->params[0]) != 0)
            e = APP_ENOTFOUND;
        store_message_clear(&m);
        if (e == APP_ENOTFOUND) {
            free(params);
            return api_fail(c, 400, "invalid_leaf", "current_leaf_id is not a message of this chat");
        }
        if (e == APP_OK)
            e = store_message_newest_leaf(c->st, target, leaf);
        p.set_leaf = true;
        p.current_leaf_id = leaf;
    }
    if (e == APP_OK)
        e = store_chat_update(c->st, c->user.id, c->params[0], &p);
    free(params);
    if (e == APP_ENOTFOUND)
        return api_fail(c, 404, "not_found", "no such chat");
    if (e != APP_OK)
        return api_fail_err(c, e, "");
    e = store_chat_get(c->st, c->user.id, c->params[0], &ch);
    if (e != APP_OK)
        return api_fail_err(c, e, "");
    api_reply_take(c, 200, json_pack("{s:o}", "chat", view_chat(&ch)));
    store_chat_clear(&ch);
}

static void delete_on_loop(struct api_ctx *c)
{
    turns_stop_chat(c->app, c->params[0]);
    http_ctx_finish(c);
}

void api_chats_delete(struct api_ctx *c)
{
    if (!ids_valid(c->params[0]))
        return api_fail(c, 404, "not_found", "no such chat");
    enum app_err e = store_chat_delete(c->st, c->user.id, c->params[0]);
    if (e == APP_ENOTFOUND)
        return api_fail(c, 404, "not_found", "no such chat");
    if (e != APP_OK)
        return api_fail_err(c, e, "");
    api_reply_take(c, 204, NULL);
    c->on_loop = delete_on_loop; /* answers still streaming into it stop */
}
