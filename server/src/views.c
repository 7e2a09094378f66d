/* views.c - resource -> JSON; see views.h. */
#include "views.h"

#include <string.h>

#include "lib/buf.h"

static json_t *str_or_null(const char *s)
{
    return s ? json_string(s) : json_null();
}

static json_t *id_or_null(const char *s)
{
    return (s && *s) ? json_string(s) : json_null();
}

json_t *view_json_text(const char *text, json_t *fallback)
{
    if (text) {
        json_t *v = json_loads(text, 0, NULL);
        if (v) {
            json_decref(fallback);
            return v;
        }
    }
    return fallback ? fallback : json_null();
}

json_t *view_user(const struct store_user *u)
{
    return json_pack("{s:s,s:s,s:o,s:b,s:I,s:I}", "id", u->id, "email", u->email, "name",
                     str_or_null(u->name), "is_admin", u->is_admin, "created_at",
                     (json_int_t)u->created_at, "updated_at", (json_int_t)u->updated_at);
}

json_t *view_session(const struct store_session *s, bool current)
{
    return json_pack("{s:s,s:o,s:o,s:I,s:I,s:I,s:b}", "id", s->id, "user_agent",
                     str_or_null(s->user_agent), "ip", str_or_null(s->ip), "created_at",
                     (json_int_t)s->created_at, "last_seen_at", (json_int_t)s->last_seen_at,
                     "expires_at", (json_int_t)s->expires_at, "current", current);
}

json_t *view_chat(const struct store_chat *c)
{
    return json_pack("{s:s,s:o,s:o,s:o,s:o,s:o,s:o,s:o,s:I,s:I}", "id", c->id, "title",
                     str_or_null(c->title), "model", str_or_null(c->model), "system_prompt",
                     str_or_null(c->system_prompt), "params",
                     view_json_text(c->params, json_object()), "folder_id",
                     id_or_null(c->folder_id), "workspace_id", id_or_null(c->workspace_id),
                     "current_leaf_id", id_or_null(c->current_leaf_id), "created_at",
                     (json_int_t)c->created_at, "updated_at", (json_int_t)c->updated_at);
}

json_t *view_message(const struct store_message *m)
{
    json_t *usage = json_null();
    if (m->prompt_tokens >= 0 || m->completion_tokens >= 0)
        usage = json_pack("{s:o,s:o}", "prompt_tokens",
                          m->prompt_tokens >= 0 ? json_integer(m->prompt_tokens) : json_null(),
                          "completion_tokens",
                          m->completion_tokens >= 0 ? json_integer(m->completion_tokens)
                                                    : json_null());
    return json_pack("{s:s,s:s,s:o,s:s,s:o,s:o,s:s,s:o,s:o,s:I,s:I}", "id", m->id, "chat_id",
                     m->chat_id, "parent_id", id_or_null(m->parent_id), "role", m->role,
                     "content", view_json_text(m->content, json_array()), "model",
                     str_or_null(m->model), "status", m->status, "error",
                     view_json_text(m->error, NULL), "usage", usage, "created_at",
                     (json_int_t)m->created_at, "updated_at", (json_int_t)m->updated_at);
}

static int put_str_or_null(struct buf *b, const char *key, const char *s, bool empty_is_null)
{
    int rc = buf_append_str(b, key);
    if (rc == 0)
        rc = (s && (*s || !empty_is_null)) ? buf_append_json_str(b, s) : buf_append(b, "null", 4);
    return rc;
}

static int put_int_or_null(struct buf *b, const char *key, int64_t v)
{
    return v >= 0 ? buf_printf(b, "%s%lld", key, (long long)v) : buf_printf(b, "%snull", key);
}

int view_message_append(struct buf *b, const struct store_message *m)
{
    int rc = put_str_or_null(b, "{\"id\":", m->id, false);
    if (rc == 0)
        rc = put_str_or_null(b, ",\"chat_id\":", m->chat_id, false);
    if (rc == 0)
        rc = put_str_or_null(b, ",\"parent_id\":", m->parent_id, true);
    if (rc == 0)
        rc = put_str_or_null(b, ",\"role\":", m->role, false);
    if (rc == 0)
        rc = buf_append_str(b, ",\"content\":");
    if (rc == 0)
        rc = buf_append_str(b, (m->content && *m->content) ? m->content : "[]");
    if (rc == 0)
        rc = put_str_or_null(b, ",\"model\":", m->model, false);
    if (rc == 0)
        rc = put_str_or_null(b, ",\"status\":", m->status, false);
    if (rc == 0)
        rc = buf_append_str(b, ",\"error\":");
    if (rc == 0)
        rc = buf_append_str(b, (m->error && *m->error) ? m->error : "null");
    if (rc == 0 && (m->prompt_tokens >= 0 || m->completion_tokens >= 0)) {
        rc = put_int_or_null(b, ",\"usage\":{\"prompt_tokens\":", m->prompt_tokens);
        if (rc == 0)
            rc = put_int_or_null(b, ",\"completion_tokens\":", m->completion_tokens);
        if (rc == 0)
            rc = buf_append(b, "}", 1);
    } else if (rc == 0) {
        rc = buf_append_str(b, ",\"usage\":null");
    }
    if (rc == 0)
        rc = buf_printf(b, ",\"created_at\":%lld,\"updated_at\":%lld}", (long long)m->created_at,
                        (long long)m->updated_at);
    return rc;
}

int view_chat_append(struct buf *b, const struct store_chat *c)
{
    int rc = put_str_or_null(b, "{\"id\":", c->id, false);
    if (rc == 0)
        rc = put_str_or_null(b, ",\"title\":", c->title, false);
    if (rc == 0)
        rc = put_str_or_null(b, ",\"model\":", c->model, false);
    if (rc == 0)
        rc = put_str_or_null(b, ",\"system_prompt\":", c->system_prompt, false);
    if (rc == 0)
        rc = buf_append_str(b, ",\"params\":");
    if (rc == 0)
        rc = buf_append_str(b, (c->params && *c->params) ? c->params : "{}");
    if (rc == 0)
        rc = put_str_or_null(b, ",\"folder_id\":", c->folder_id, true);
    if (rc == 0)
        rc = put_str_or_null(b, ",\"workspace_id\":", c->workspace_id, true);
    if (rc == 0)
        rc = put_str_or_null(b, ",\"current_leaf_id\":", c->current_leaf_id, true);
    if (rc == 0)
        rc = buf_printf(b, ",\"created_at\":%lld,\"updated_at\":%lld}", (long long)c->created_at,
                        (long long)c->updated_at);
    return rc;
}

char *view_messages_text(const char *prefix, const struct store_message *msgs, size_t n,
                         const char *suffix, size_t max)
{
    struct buf b;
    buf_init(&b, max);
    /* One allocation: a 2,000-message chat is ~2 MB, and growing to it by
     * doubling copied it several times over (a sixth of the request). The
     * fixed fields of one message take under 400 bytes. */
    size_t need = strlen(prefix) + strlen(suffix) + 2;
    for (size_t i = 0; i < n; i++)
        need += 400 + (msgs[i].content ? strlen(msgs[i].content) : 2) +
                (msgs[i].model ? strlen(msgs[i].model) : 0) +
                (msgs[i].error ? strlen(msgs[i].error) : 0);
    (void)buf_reserve(&b, need < max ? need : max);
    int rc = buf_append_str(&b, prefix);
    if (rc == 0)
        rc = buf_append(&b, "[", 1);
    for (size_t i = 0; i < n && rc == 0; i++) {
        if (i)
            rc = buf_append(&b, ",", 1);
        if (rc == 0)
            rc = view_message_append(&b, &msgs[i]);
    }
    if (rc == 0)
        rc = buf_append(&b, "]", 1);
    if (rc == 0)
        rc = buf_append_str(&b, suffix);
    if (rc != 0) {
        buf_cleanup(&b);
        return NULL;
    }
    return buf_take(&b, NULL);
}

json_t *view_connection(const struct store_conn *c)
{
    bool has_key = c->key_ct && c->key_ct_len > 0;
    return json_pack("{s:s,s:s,s:b,s:o,s:s,s:I,s:I}", "id", c->id, "base_url", c->base_url,
                     "has_key", has_key, "key_last4",
                     has_key ? json_string(c->key_last4) : json_null(), "source", "user",
                     "created_at", (json_int_t)c->created_at, "updated_at",
                     (json_int_t)c->updated_at);
}
