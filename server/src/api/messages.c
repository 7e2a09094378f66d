/* messages.c - sending (which starts a turn), editing (a new user message
 * beside the old one), regenerating (a new answer beside the old one),
 * following a turn over SSE, and stopping it. The store work runs on a
 * worker; the turn itself starts on the loop. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <event2/event.h>

#include "../http/sse.h"
#include "../lib/buf.h"
#include "../lib/caps.h"
#include "../lib/ids.h"
#include "../lib/log.h"
#include "../lib/pool.h"
#include "../lib/redis.h"
#include "../llm/turn.h"
#include "../views.h"
#include "api.h"

/* ---- content ----------------------------------------------------------------- */

/* Accepts "content": "text" or [{"type":"text","text":"..."}, ...]; returns
 * the parts array (new reference) or NULL with a 400 set. */
static json_t *read_content(struct api_ctx *c)
{
    json_t *v = json_object_get(c->json, "content");
    if (!v) {
        api_fail(c, 400, "invalid_request", "field \"content\" is required");
        return NULL;
    }
    size_t total = 0;
    json_t *parts;
    if (json_is_string(v)) {
        parts = json_pack("[{s:s,s:O}]", "type", "text", "text", v);
        total = json_string_length(v);
    } else if (json_is_array(v) && json_array_size(v) > 0 && json_array_size(v) <= 64) {
        parts = json_array();
        size_t i;
        json_t *p;
        json_array_foreach(v, i, p)
        {
            json_t *type = json_object_get(p, "type");
            json_t *text = json_object_get(p, "text");
            if (!json_is_string(type) || strcmp(json_string_value(type), "text") != 0 ||
                !json_is_string(text)) {
                json_decref(parts);
                api_fail(c, 400, "invalid_content",
                         "content parts must be {\"type\":\"text\",\"text\":\"...\"} (part %zu)", i);
                return NULL;
            }
            total += json_string_length(text);
            json_array_append_new(parts, json_pack("{s:s,s:O}", "type", "text", "text", text));
        }
    } else {
        api_fail(c, 400, "invalid_content",
                 "field \"content\" must be a string or a non-empty array of parts");
        return NULL;
    }
    if (total == 0) {
        json_decref(parts);
        api_fail(c, 400, "invalid_content", "message is empty");
        return NULL;
    }
    if (total > LIMIT_USER_MESSAGE) {
        json_decref(parts);
        api_fail(c, 413, "message_too_large", "message is longer than %d bytes",
                 LIMIT_USER_MESSAGE);
        return NULL;
    }
    return parts;
}

/* Text of a stored parts array, for the provider ("" when none). */
static char *parts_text(const char *content)
{
    struct buf b;
    buf_init(&b, LIMIT_MESSAGE_CONTENT);
    json_t *parts = content ? json_loads(content, 0, NULL) : NULL;
    size_t i;
    json_t *p;
    json_array_foreach(parts, i, p)
    {
        const char *type = json_string_value(json_object_get(p, "type"));
        json_t *text = json_object_get(p, "text");
        if (type && strcmp(type, "text") == 0 && json_is_string(text)) {
            if (b.len)
                (void)buf_append(&b, "\n\n", 2);
            (void)buf_append(&b, json_string_value(text), json_string_length(text));
        }
    }
    json_decref(parts);
    return buf_take(&b, NULL);
}

/* ---- starting a turn --------------------------------------------------------- */

static void spec_free(void *p)
{
    struct turn_spec *s = p;
    store_message_clear(&s->msg);
    provider_conn_clear(&s->pc);
    json_decref(s->request);
    free(s->title_seed);
    free(s);
}

static void start_on_loop(struct api_ctx *c)
{
    struct turn_spec *spec = c->loop_data;
    c->loop_data = NULL;
    turn_start(c->app, spec);
    spec_free(spec);
    http_ctx_finish(c);
}

/* Provider request body for the branch ending at leaf_id. */
static json_t *build_request(struct api_ctx *c, const struct store_chat *ch, const char *leaf_id,
                             const char *model, enum app_err *err)
{
    struct store_message *path = NULL;
    size_t n = 0;
    *err = store_message_path(c->st, leaf_id, &path, &n);
    if (*err != APP_OK)
        return NULL;
    json_t *msgs = json_array();
    if (ch->system_prompt && *ch->system_prompt)
        json_array_append_new(msgs, json_pack("{s:s,s:s}", "role", "system", "content",
                                              ch->system_prompt));
    for (size_t i = 0; i < n; i++) {
        char *text = parts_text(path[i].content);
        bool skip = strcmp(path[i].role, "assistant") == 0 && !*text; /* failed, empty answer */
        if (!skip)
            json_array_append_new(msgs, json_pack("{s:s,s:s}", "role", path[i].role, "content",
                                                  text));
        free(text);
    }
    store_message_list_free(path, n);
    json_t *req = json_pack("{s:s,s:o,s:b,s:{s:b}}", "model", model, "messages", msgs, "stream", 1,
                            "stream_options", "include_usage", 1);
    json_t *params = ch->params ? json_loads(ch->params, 0, NULL) : NULL;
    const char *k;
    json_t *v;
    json_object_foreach(params, k, v) if (!json_is_null(v)) json_object_set(req, k, v);
    json_decref(params);
    return req;
}

/* Creates (optionally) a user message under parent_id, then an assistant
 * message under it, points the chat at the new leaf and prepares the turn.
 * user_parts NULL = regenerate: the assistant goes under parent_id. */
static void begin_turn(struct api_ctx *c, struct store_chat *ch, const char *parent_id,
                       json_t *user_parts, const char *model_override)
{
    struct turn_spec *spec = xcalloc(1, sizeof *spec);
    enum app_err e = api_provider_resolve(c, &spec->pc);
    if (e == APP_ENOTFOUND) {
        spec_free(spec);
        return api_fail(c, 400, "provider_not_configured",
                        "no provider API key: save a connection in settings first (or ask an "
                        "administrator to add one to the key pool)");
    }
    if (e != APP_OK) {
        spec_free(spec);
        return api_fail_err(c, e, "");
    }
    /* One answer at a time per chat: the visible leaf is the running turn. */
    if (*ch->current_leaf_id) {
        struct store_message leaf;
        memset(&leaf, 0, sizeof leaf);
        e = store_message_get(c->st, c->user.id, ch->current_leaf_id, &leaf);
        bool busy = e == APP_OK && strcmp(leaf.status, "streaming") == 0;
        store_message_clear(&leaf);
        if (busy) {
            spec_free(spec);
            return api_fail(c, 409, "turn_in_progress",
                            "the previous answer is still being generated; stop it or wait");
        }
    }
    const char *model = model_override ? model_override
                        : ch->model ? ch->model : c->app->cfg.default_model;
    struct store_message um;
    memset(&um, 0, sizeof um);
    json_t *user_view = NULL;
    bool first = false;
    e = store_begin(c->st);
    if (e == APP_OK && user_parts) {
        snprintf(um.chat_id, sizeof um.chat_id, "%s", ch->id);
        snprintf(um.parent_id, sizeof um.parent_id, "%s", parent_id ? parent_id : "");
        snprintf(um.role, sizeof um.role, "user");
        snprintf(um.status, sizeof um.status, "complete");
        um.content = json_dumps(user_parts, JSON_COMPACT);
        um.prompt_tokens = um.completion_tokens = -1;
        e = store_message_create(c->st, &um);
        first = !parent_id || !*parent_id;
    }
    struct store_message *am = &spec->msg;
    if (e == APP_OK) {
        snprintf(am->chat_id, sizeof am->chat_id, "%s", ch->id);
        snprintf(am->parent_id, sizeof am->parent_id, "%s", user_parts ? um.id : parent_id);
        snprintf(am->role, sizeof am->role, "assistant");
        snprintf(am->status, sizeof am->status, "streaming");
        am->content = xstrdup("[]");
        am->model = xstrdup(model);
        am->prompt_tokens = am->completion_tokens = -1;
        e = store_message_create(c->st, am);
    }
    if (e == APP_OK) /* this instance runs the turn (see store_lease_*) */
        e = store_lease_create(c->st, am->id, c->app->cfg.instance_id,
                               now_ms() + c->app->cfg.turn_lease_ms);
    if (e == APP_OK) {
        struct store_chat_patch p = {.set_leaf = true, .current_leaf_id = am->id};
        e = store_chat_update(c->st, c->user.id, ch->id, &p);
    }
    if (e == APP_OK)
        e = store_chat_touch(c->st, ch->id, now_ms());
    if (e == APP_OK)
        e = store_commit(c->st);
    else
        store_rollback(c->st);
    if (e != APP_OK) {
        store_message_clear(&um);
        spec_free(spec);
        return api_fail_err(c, e, "");
    }
    /* Re-read so the reply shows exactly what is stored. */
    struct store_message tmp;
    memset(&tmp, 0, sizeof tmp);
    if (user_parts && store_message_get(c->st, c->user.id, um.id, &tmp) == APP_OK)
        user_view = view_message(&tmp);
    store_message_clear(&tmp);
    if (store_message_get(c->st, c->user.id, am->id, &tmp) == APP_OK) {
        am->created_at = tmp.created_at;
        am->updated_at = tmp.updated_at;
    }
    store_message_clear(&tmp);

    spec->request = build_request(c, ch, am->parent_id, model, &e);
    if (!spec->request) {
        store_message_clear(&um);
        spec_free(spec);
        json_decref(user_view);
        return api_fail_err(c, e, "");
    }
    snprintf(spec->user_id, sizeof spec->user_id, "%s", c->user.id);
    if (first && !ch->title) {
        spec->title_seed = parts_text(um.content);
    } else if (!user_parts && !ch->title && parent_id && *parent_id) {
        /* Regenerating the first answer of a chat still untitled (its first
         * answer was stopped or failed): title it from the first question. */
        struct store_message q;
        memset(&q, 0, sizeof q);
        if (store_message_get(c->st, c->user.id, parent_id, &q) == APP_OK &&
            strcmp(q.role, "user") == 0 && !q.parent_id[0])
            spec->title_seed = parts_text(q.content);
        store_message_clear(&q);
    }
    store_message_clear(&um);

    char *events = xasprintf("/api/v1/turns/%s/events", am->id);
    json_t *resp = json_pack("{s:o,s:o,s:{s:s,s:s}}", "user_message",
                             user_view ? user_view : json_null(), "assistant_message",
                             view_message(am), "turn", "id", am->id, "events_url", events);
    free(events);
    api_reply_take(c, 202, resp);
    c->loop_data = spec;
    c->loop_data_free = spec_free;
    c->on_loop = start_on_loop;
}

static enum app_err load_chat(struct api_ctx *c, struct store_chat *ch)
{
    memset(ch, 0, sizeof *ch);
    if (!ids_valid(c->params[0]))
        return APP_ENOTFOUND;
    return store_chat_get(c->st, c->user.id, c->params[0], ch);
}

static bool model_field(struct api_ctx *c, const char **model)
{
    return api_body_string(c, "model", false, LIMIT_MODEL_NAME, model) == 0;
}

void api_messages_create(struct api_ctx *c)
{
    struct store_chat ch;
    enum app_err e = load_chat(c, &ch);
    if (e != APP_OK) {
        store_chat_clear(&ch);
        return e == APP_ENOTFOUND ? api_fail(c, 404, "not_found", "no such chat")
                                  : api_fail_err(c, e, "");
    }
    const char *model = NULL;
    json_t *parts = c->json ? read_content(c) : NULL;
    if (!c->json)
        api_fail(c, 400, "invalid_request", "request body is required");
    if (!parts || !model_field(c, &model))
        goto out;
    /* parent: explicit (null = a new root), else the chat's current leaf */
    char parent[STORE_ID_LEN + 1] = "";
    json_t *pj = json_object_get(c->json, "parent_id");
    if (pj && !json_is_null(pj) && !json_is_string(pj)) {
        api_fail(c, 400, "invalid_request", "field \"parent_id\" must be a string or null");
        goto out;
    }
    if (pj && json_is_string(pj))
        snprintf(parent, sizeof parent, "%s", json_string_value(pj));
    else if (!pj)
        snprintf(parent, sizeof parent, "%s", ch.current_leaf_id);
    if (*parent) {
        struct store_message pm;
        memset(&pm, 0, sizeof pm);
        e = ids_valid(parent) ? store_message_get(c->st, c->user.id, parent, &pm) : APP_ENOTFOUND;
        if (e == APP_OK && strcmp(pm.chat_id, ch.id) != 0)
            e = APP_ENOTFOUND;
        if (e == APP_ENOTFOUND) {
            store_message_clear(&pm);
            api_fail(c, 400, "invalid_parent", "parent_id is not a message of this chat");
            goto out;
        }
        if (e == APP_OK && strcmp(pm.role, "user") == 0) {
            store_message_clear(&pm);
            api_fail(c, 400, "invalid_parent", "a user message cannot answer a user message");
            goto out;
        }
        if (e == APP_OK && strcmp(pm.status, "streaming") == 0) {
            store_message_clear(&pm);
            api_fail(c, 409, "turn_in_progress",
                     "the previous answer is still being generated; stop it or wait");
            goto out;
        }
        store_message_clear(&pm);
        if (e != APP_OK) {
            api_fail_err(c, e, "");
            goto out;
        }
    }
    begin_turn(c, &ch, parent, parts, model);
out:
    json_decref(parts);
    store_chat_clear(&ch);
}

/* Loads {mid} of chat {id}; 404 (set on c) unless it is there and has role. */
static bool load_message(struct api_ctx *c, const struct store_chat *ch, const char *role,
                         struct store_message *m)
{
    memset(m, 0, sizeof *m);
    enum app_err e = ids_valid(c->params[1]) ? store_message_get(c->st, c->user.id, c->params[1], m)
                                              : APP_ENOTFOUND;
    if (e == APP_OK && strcmp(m->chat_id, ch->id) != 0)
        e = APP_ENOTFOUND;
    if (e != APP_OK) {
        if (e == APP_ENOTFOUND)
            api_fail(c, 404, "not_found", "no such message in this chat");
        else
            api_fail_err(c, e, "");
        return false;
    }
    if (role && strcmp(m->role, role) != 0) {
        api_fail(c, 400, "invalid_message", "this action needs a%s %s message",
                 role[0] == 'a' ? "n" : "", role);
        return false;
    }
    return true;
}

void api_messages_edit(struct api_ctx *c)
{
    struct store_chat ch;
    struct store_message m;
    memset(&m, 0, sizeof m);
    json_t *parts = NULL;
    const char *model = NULL;
    enum app_err e = load_chat(c, &ch);
    if (e != APP_OK) {
        e == APP_ENOTFOUND ? api_fail(c, 404, "not_found", "no such chat") : api_fail_err(c, e, "");
        goto out;
    }
    if (!c->json) {
        api_fail(c, 400, "invalid_request", "request body is required");
        goto out;
    }
    if (!load_message(c, &ch, "user", &m) || !(parts = read_content(c)) || !model_field(c, &model))
        goto out;
    begin_turn(c, &ch, m.parent_id, parts, model);
out:
    json_decref(parts);
    store_message_clear(&m);
    store_chat_clear(&ch);
}

void api_messages_regenerate(struct api_ctx *c)
{
    struct store_chat ch;
    struct store_message m;
    memset(&m, 0, sizeof m);
    const char *model = NULL;
    enum app_err e = load_chat(c, &ch);
    if (e != APP_OK) {
        e == APP_ENOTFOUND ? api_fail(c, 404, "not_found", "no such chat") : api_fail_err(c, e, "");
        goto out;
    }
    if (!load_message(c, &ch, NULL, &m) || (c->json && !model_field(c, &model)))
        goto out;
    /* Regenerating an answer makes a sibling; on a user message it makes
     * another answer to it. */
    const char *parent;
    if (strcmp(m.role, "assistant") == 0)
        parent = m.parent_id;
    else if (strcmp(m.role, "user") == 0)
        parent = m.id;
    else {
        api_fail(c, 400, "invalid_message", "only answers and user messages can be regenerated");
        goto out;
    }
    if (!*parent) {
        api_fail(c, 400, "invalid_message", "this answer has no question to regenerate from");
        goto out;
    }
    begin_turn(c, &ch, parent, NULL, model);
out:
    store_message_clear(&m);
    store_chat_clear(&ch);
}

void api_messages_list(struct api_ctx *c)
{
    struct store_chat ch;
    enum app_err e = load_chat(c, &ch);
    store_chat_clear(&ch);
    if (e != APP_OK)
        return e == APP_ENOTFOUND ? api_fail(c, 404, "not_found", "no such chat")
                                  : api_fail_err(c, e, "");
    struct store_message *msgs = NULL;
    size_t n = 0;
    e = store_message_list(c->st, c->params[0], &msgs, &n);
    if (e != APP_OK)
        return api_fail_err(c, e, "");
    /* Written directly (the stored content is JSON already): a long chat is
     * megabytes, and parsing it only to print it again costs most of the
     * time of opening it. */
    char *text = view_messages_text("{\"data\":", msgs, n, "}", LIMIT_CHAT_MESSAGES_REPLY);
    store_message_list_free(msgs, n);
    if (!text)
        return api_fail(c, 500, "internal_error", "this chat is too large to send at once");
    api_reply_text_take(c, 200, text);
}

/* ---- following and stopping turns -------------------------------------------- */

/* A turn's message as loaded on the worker, with its lease (which instance
 * runs it) when it has one. */
struct turn_msg {
    struct store_message m;
    struct store_lease lease;
    bool has_lease;
    char user_id[STORE_ID_LEN + 1];
};

static void message_free(void *p)
{
    struct turn_msg *tm = p;
    store_message_clear(&tm->m);
    free(tm);
}

/* Worker: the turn must be an answer in one of the user's chats. */
static bool load_turn_message(struct api_ctx *c)
{
    struct turn_msg *tm = xcalloc(1, sizeof *tm);
    struct store_message *m = &tm->m;
    enum app_err e = ids_valid(c->params[0]) ? store_message_get(c->st, c->user.id, c->params[0], m)
                                              : APP_ENOTFOUND;
    if (e == APP_OK && strcmp(m->role, "assistant") != 0)
        e = APP_ENOTFOUND;
    if (e != APP_OK) {
        message_free(tm);
        if (e == APP_ENOTFOUND)
            api_fail(c, 404, "not_found", "no such turn");
        else
            api_fail_err(c, e, "");
        return false;
    }
    if (strcmp(m->status, "streaming") == 0)
        tm->has_lease = store_lease_get(c->st, m->id, &tm->lease) == APP_OK;
    snprintf(tm->user_id, sizeof tm->user_id, "%s", c->user.id);
    c->loop_data = tm;
    c->loop_data_free = message_free;
    c->status = 200;
    return true;
}

/* Whether another instance holds a live lease on the turn. */
static bool runs_elsewhere(struct app *app, const struct turn_msg *tm)
{
    return tm->has_lease && strcmp(tm->lease.instance_id, app->cfg.instance_id) != 0 &&
           tm->lease.expires_at >= now_ms();
}

/* Send the stored state as the final event and close; takes done. */
static void stored_done(struct sse_conn *conn, char *done)
{
    sse_conn_event(conn, -1, "done", done);
    free(done);
    sse_conn_close(conn);
}

#define TURN_WAIT_STEP_MS 50
#define TURN_WAIT_STEPS 20 /* 1 s in all */

/* An event stream waiting for its turn to be registered (see
 * events_on_loop). Freed when it attaches, gives up, or the client goes. */
struct turn_wait {
    struct app *app;
    char msg_id[STORE_ID_LEN + 1];
    struct sse_conn *conn;
    long long last;
    char *done; /* the stored state as a "done" payload */
    struct event *timer;
    int steps;
};

static void turn_wait_free(struct turn_wait *w)
{
    event_free(w->timer);
    free(w->done);
    free(w);
}

static void turn_wait_gone(struct sse_conn *conn, void *arg)
{
    turn_wait_free(arg);
}

static void turn_wait_tick(evutil_socket_t fd, short what, void *arg)
{
    struct turn_wait *w = arg;
    if (turn_attach(w->app, w->msg_id, w->conn, w->last)) {
        turn_wait_free(w); /* the conn is the turn's now */
        return;
    }
    if (++w->steps < TURN_WAIT_STEPS && !w->app->shutting_down) {
        struct timeval tv = {0, TURN_WAIT_STEP_MS * 1000};
        evtimer_add(w->timer, &tv);
        return;
    }
    /* nobody runs it: interrupted (or run by another instance) */
    sse_conn_set_gone(w->conn, NULL, NULL);
    stored_done(w->conn, w->done);
    w->done = NULL;
    turn_wait_free(w);
}

static void wait_for_turn(struct app *app, const char *msg_id, struct sse_conn *conn,
                          long long last, char *done)
{
    struct turn_wait *w = xcalloc(1, sizeof *w);
    w->app = app;
    snprintf(w->msg_id, sizeof w->msg_id, "%s", msg_id);
    w->conn = conn;
    w->last = last;
    w->done = done;
    w->timer = evtimer_new(app->base, turn_wait_tick, w);
    sse_conn_set_gone(conn, turn_wait_gone, w);
    struct timeval tv = {0, TURN_WAIT_STEP_MS * 1000};
    evtimer_add(w->timer, &tv);
}

/* ---- following a turn that another instance runs --------------------------
 * Without a shared bus the store is the channel: every turn_poll_ms a worker
 * reads the message and its lease; new content goes out as one "snapshot"
 * whose id is the owner's event count for that content (so Last-Event-ID
 * resumes correctly on any instance), the end as "done". */
struct follow {
    struct app *app;
    struct turn_msg tm;            /* last read */
    struct sse_conn *conn;         /* NULL once the client left or we closed */
    long long sent;                /* last event id the client has */
    struct event *timer;
    bool busy;                     /* a read is in flight */
    enum app_err rc;
    /* With Redis: the owner's events, live. Those that do not follow the
     * last one sent wait here (ids ascending) until a read catches up. */
    char channel[16 + STORE_ID_LEN];
    bool subscribed;
    struct pending_ev { long long id; bool done; char *bytes; size_t len; } *pend;
    size_t npend, pend_cap, pend_bytes;
    struct follow *prev, *next;
};

#define FOLLOW_PENDING_MAX (1024 * 1024) /* beyond it, snapshots only */

static struct follow *g_follows;

static void follow_free(struct follow *f)
{
    if (f->prev)
        f->prev->next = f->next;
    else
        g_follows = f->next;
    if (f->next)
        f->next->prev = f->prev;
    event_free(f->timer);
    if (f->subscribed)
        redis_unsubscribe(f->app->redis, f->channel, f);
    for (size_t i = 0; i < f->npend; i++)
        free(f->pend[i].bytes);
    free(f->pend);
    store_message_clear(&f->tm.m);
    free(f);
}

static void follow_gone(struct sse_conn *conn, void *arg)
{
    struct follow *f = arg;
    f->conn = NULL;
    if (!f->busy)
        follow_free(f);
}

static void follow_end(struct follow *f)
{
    sse_conn_set_gone(f->conn, NULL, NULL);
    sse_conn_close(f->conn);
    f->conn = NULL;
}

static void follow_work(void *arg, void *ctx)
{
    struct follow *f = arg;
    struct store *st = ctx;
    char id[STORE_ID_LEN + 1];
    memcpy(id, f->tm.m.id, sizeof id);
    store_message_clear(&f->tm.m);
    f->rc = store_message_get(st, f->tm.user_id, id, &f->tm.m);
    if (f->rc != APP_OK)
        snprintf(f->tm.m.id, sizeof f->tm.m.id, "%s", id);
    f->tm.has_lease = f->rc == APP_OK && store_lease_get(st, id, &f->tm.lease) == APP_OK;
}

static void follow_step(struct follow *f);

static void follow_done(void *arg)
{
    struct follow *f = arg;
    f->busy = false;
    if (!f->conn) {
        follow_free(f);
        return;
    }
    if (f->rc == APP_ENOTFOUND) { /* the chat was deleted */
        follow_end(f);
        follow_free(f);
        return;
    }
    follow_step(f);
}

static void on_follow_timer(evutil_socket_t fd, short what, void *arg)
{
    struct follow *f = arg;
    if (f->busy || !f->conn)
        return;
    if (f->app->shutting_down) {
        follow_end(f);
        follow_free(f);
        return;
    }
    f->busy = true;
    pool_submit(f->app->pool, follow_work, follow_done, f);
}

/* Write the waiting events that now follow on; true when the stream ended
 * (the owner's "done" was among them): f must not be used any more. */
static bool follow_flush(struct follow *f)
{
    size_t i = 0;
    bool ended = false;
    for (; i < f->npend; i++) {
        struct pending_ev *e = &f->pend[i];
        if (e->id <= f->sent)
            continue; /* the snapshot covered it */
        if (e->id != f->sent + 1 || ended)
            break;
        sse_conn_write(f->conn, e->bytes, e->len);
        f->sent = e->id;
        ended = e->done;
    }
    for (size_t k = 0; k < i; k++) {
        f->pend_bytes -= f->pend[k].len;
        free(f->pend[k].bytes);
    }
    memmove(f->pend, f->pend + i, (f->npend - i) * sizeof *f->pend);
    f->npend -= i;
    if (ended) {
        follow_end(f);
        if (!f->busy) /* else the read's completion frees it */
            follow_free(f);
    }
    return ended;
}

/* A framed event of the owner, from Redis ("id: N\nevent: E\n..."); data
 * NULL: the subscription is (again) active, so read the store to catch up. */
static void follow_on_message(void *arg, const char *channel, const char *data, size_t len)
{
    struct follow *f = arg;
    if (!f->conn)
        return;
    if (!data) {
        if (!f->busy) {
            evtimer_del(f->timer);
            struct timeval now = {0, 0};
            evtimer_add(f->timer, &now);
        }
        return;
    }
    if (len < 5 || memcmp(data, "id: ", 4) != 0)
        return;
    long long id = 0;
    size_t k = 4;
    for (; k < len && data[k] >= '0' && data[k] <= '9' && id < (1LL << 50); k++)
        id = id * 10 + (data[k] - '0');
    if (k >= len || data[k] != '\n' || id <= f->sent)
        return;
    static const char done_tag[] = "event: done\n";
    bool done = len - k - 1 >= sizeof done_tag - 1 && memcmp(data + k + 1, done_tag, sizeof done_tag - 1) == 0;
    if (f->pend_bytes + len > FOLLOW_PENDING_MAX) {
        for (size_t i = 0; i < f->npend; i++)
            free(f->pend[i].bytes);
        f->npend = 0;
        f->pend_bytes = 0;
        return; /* too far behind: the reads (snapshots) carry on */
    }
    if (f->npend == f->pend_cap) {
        f->pend_cap = f->pend_cap ? f->pend_cap * 2 : 16;
        f->pend = xrealloc(f->pend, f->pend_cap * sizeof *f->pend);
    }
    struct pending_ev *e = &f->pend[f->npend++];
    e->id = id;
    e->done = done;
    e->bytes = xmalloc(len);
    memcpy(e->bytes, data, len);
    e->len = len;
    f->pend_bytes += len;
    if (!follow_flush(f) && f->npend && !f->busy) {
        /* a gap: what came before this event is only in the store */
        evtimer_del(f->timer);
        struct timeval soon = {0, 50 * 1000};
        evtimer_add(f->timer, &soon);
    }
}

/* Send what the last read shows, then wait for the next read (or end). */
static void follow_step(struct follow *f)
{
    struct store_message *m = &f->tm.m;
    if (f->rc == APP_OK && strcmp(m->status, "streaming") != 0) {
        json_t *d = json_pack("{s:s,s:o}", "status", m->status, "message", view_message(m));
        char *s = json_dumps(d, JSON_COMPACT);
        json_decref(d);
        sse_conn_set_gone(f->conn, NULL, NULL);
        stored_done(f->conn, s);
        f->conn = NULL;
        follow_free(f);
        return;
    }
    if (f->rc == APP_OK && f->tm.has_lease && f->tm.lease.events > f->sent) {
        json_t *d = json_pack("{s:o}", "message", view_message(m));
        char *s = json_dumps(d, JSON_COMPACT);
        json_decref(d);
        sse_conn_event(f->conn, f->tm.lease.events, "snapshot", s);
        free(s);
        f->sent = f->tm.lease.events;
    }
    if (f->npend && follow_flush(f))
        return; /* it ended with the owner's "done" */
    /* Live events come over Redis; reads then only catch up after a gap
     * and notice an owner that died. */
    int ms = f->subscribed ? f->app->cfg.turn_poll_ms * 4 : f->app->cfg.turn_poll_ms;
    struct timeval tv = {ms / 1000, (ms % 1000) * 1000};
    evtimer_add(f->timer, &tv);
}

static void follow_start(struct app *app, struct turn_msg *tm, struct sse_conn *conn,
                         long long last)
{
    struct follow *f = xcalloc(1, sizeof *f);
    f->app = app;
    f->tm = *tm; /* takes the message's heap fields */
    memset(&tm->m, 0, sizeof tm->m);
    f->conn = conn;
    f->sent = last < 0 ? 0 : last; /* the owner's events are numbered from 1 */
    f->timer = evtimer_new(app->base, on_follow_timer, f);
    f->next = g_follows;
    if (g_follows)
        g_follows->prev = f;
    g_follows = f;
    sse_conn_set_gone(conn, follow_gone, f);
    if (app->redis) {
        snprintf(f->channel, sizeof f->channel, "coai:turn:%s", f->tm.m.id);
        f->subscribed = redis_subscribe(app->redis, f->channel, follow_on_message, f) == 0;
    }
    follow_step(f); /* what was read with the request goes out at once */
}

void api_follows_shutdown(struct app *app)
{
    (void)app;
    for (struct follow *f = g_follows, *next; f; f = next) {
        next = f->next;
        if (f->conn)
            follow_end(f);
        if (!f->busy)
            follow_free(f);
    }
}

static void events_on_loop(struct api_ctx *c)
{
    const char *lei = c->last_event_id ? c->last_event_id : api_query(c, "last_event_id");
    long long last = -1;
    if (lei) {
        char *end;
        errno = 0;
        last = strtoll(lei, &end, 10);
        if (errno || *end || end == lei || last < 0) {
            api_fail(c, 400, "invalid_last_event_id", "Last-Event-ID must be a non-negative integer");
            return http_ctx_finish(c);
        }
    }
    struct turn_msg *tm = c->loop_data;
    struct store_message *m = &tm->m;
    char *path = xstrdup(c->path);
    int64_t start = c->start_us;
    char rid[17];
    memcpy(rid, c->req_id, sizeof rid);
    struct evhttp_request *req = c->req;
    if (turn_subscribe(c->app, m->id, req, rid, path, start, last)) {
        http_ctx_detach(c);
    } else {
        /* Not live here: the stored message is the whole story, unless it
         * says "streaming": then its turn may be about to start (the row is
         * written on a worker before the loop registers the turn), so give
         * it a moment before calling it over. */
        http_ctx_detach(c);
        struct sse_conn *conn = sse_conn_open(c->app, req, rid, path, start, NULL, NULL);
        json_t *d = json_pack("{s:s,s:o}", "status", m->status, "message", view_message(m));
        char *s = json_dumps(d, JSON_COMPACT);
        json_decref(d);
        if (strcmp(m->status, "streaming") == 0 && runs_elsewhere(c->app, tm)) {
            free(s);
            follow_start(c->app, tm, conn, last);
        } else if (strcmp(m->status, "streaming") == 0) {
            wait_for_turn(c->app, m->id, conn, last, s);
        } else {
            stored_done(conn, s);
        }
    }
    free(path);
    http_ctx_finish(c);
}

void api_turn_events(struct api_ctx *c)
{
    if (load_turn_message(c))
        c->on_loop = events_on_loop;
}

static void stop_on_loop(struct api_ctx *c)
{
    struct turn_msg *tm = c->loop_data;
    struct store_message *m = &tm->m;
    int r = turn_stop(c->app, m->id);
    if (r == 0)
        api_reply_take(c, 202, json_pack("{s:b,s:s}", "stopped", 1, "status", "stopped"));
    else if (r == 1)
        api_reply_take(c, 200, json_pack("{s:b,s:s}", "stopped", 0, "status", "finished"));
    else if (strcmp(m->status, "streaming") == 0)
        api_fail(c, 409, "turn_not_running", "this turn is not running on this server");
    else
        api_reply_take(c, 200, json_pack("{s:b,s:s}", "stopped", 0, "status", m->status));
    http_ctx_finish(c);
}

/* The stop is recorded on the lease; with Redis the owner hears it now. */
static void stop_remote_on_loop(struct api_ctx *c)
{
    struct turn_msg *tm = c->loop_data;
    if (c->app->redis)
        redis_publish(c->app->redis, TURN_STOP_CHANNEL, tm->m.id, strlen(tm->m.id));
    api_reply_take(c, 202, json_pack("{s:b,s:s}", "stopped", 1, "status", "stopping"));
    http_ctx_finish(c);
}

void api_turn_stop(struct api_ctx *c)
{
    if (!load_turn_message(c))
        return;
    struct turn_msg *tm = c->loop_data;
    if (strcmp(tm->m.status, "streaming") == 0 && runs_elsewhere(c->app, tm)) {
        /* Another instance runs it: it picks the request up with its next
         * lease renewal (within a second). */
        enum app_err e = store_lease_request_stop(c->st, tm->m.id);
        if (e == APP_OK) {
            c->on_loop = stop_remote_on_loop;
            return;
        }
        if (e != APP_ENOTFOUND)
            return api_fail_err(c, e, "");
        /* the lease just went: it finished meanwhile; answer from the loop */
    }
    c->on_loop = stop_on_loop;
}
