/* turn.c - the generation engine; see turn.h for states, events and
 * lifetimes. Everything here runs on the loop thread; store writes go to the
 * worker pool as jobs that hold a reference to the turn. */
#include "turn.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "../gateway/gateway.h"
#include "../http/metrics.h"
#include "../http/sentry.h"
#include "../http/sse.h"
#include "../lib/buf.h"
#include "../lib/caps.h"
#include "../lib/log.h"
#include "../lib/pool.h"
#include "../lib/redis.h"
#include "../lib/strmap.h"
#include "../lib/utf8.h"
#include "../views.h"
#include "curlev.h"
#include "openai_stream.h"
#include "sse_parse.h"

#define LINGER_S 60
#define RETRY_AFTER_CAP_S 30

enum turn_state { T_CONNECTING, T_STREAMING, T_RETRY_WAIT, T_FINISHING, T_DONE };
static const char *const state_names[] = {"connecting", "streaming", "retry_wait", "finishing",
                                          "done"};

struct subscriber {
    struct sse_conn *conn;
    struct turn *turn;
    struct subscriber *next;
};

struct turn {
    int refs;
    struct app *app;
    struct turn *next, *prev;        /* registry list */
    bool registered;                 /* in the list (and by_id) */
    enum turn_state state;
    struct store_message msg;        /* the assistant message; content/status/error kept current */
    char user_id[STORE_ID_LEN + 1];
    struct provider_conn pc;         /* secret key inside */
    char key_id[STORE_ID_LEN + 1];   /* pool key in use, "" otherwise */
    char key_source[8];              /* "user" | "pool" | "server" */
    char *request_body;
    char *title_seed;

    CURL *easy;
    struct curl_slist *hdrs;
    long http_status;
    struct buf errbody;              /* body of a non-200 answer, capped */
    long retry_after_s;              /* from the provider's Retry-After, -1 if none */
    struct sse_parser *sse;
    struct oai_stream *oai;
    bool saw_bytes;                  /* any 200 body byte this attempt */
    bool published_delta;            /* any delta event published (no retry after that) */
    bool stream_failed;              /* parser/decoder refused the stream */
    bool timed_out;                  /* we aborted: no byte for idle_timeout */
    int64_t last_byte_us;            /* monotonic time of the last byte (or attempt start) */
    json_t *error;                   /* final error object, or NULL */
    int attempt;                     /* 0-based */
    int64_t started_us;

    struct event *retry_timer;
    struct event *linger_timer;
    bool dirty;                      /* content changed since the last store write */
    bool persisting;                 /* a store write is in flight */
    bool final_pending;              /* final write waits for the in-flight one */

    struct buf log;                  /* every published event, framed */
    size_t *offs;                    /* offs[k] = start of event k+1 in log */
    size_t nevents, offs_cap;
    bool log_truncated;
    struct subscriber *subs;
};

struct turn_registry {
    struct turn *head;
    struct strmap *by_id;       /* message id -> turn, for the list above */
    struct app *app;
    struct event *lease_timer;  /* renews this instance's leases, sweeps dead ones */
    bool lease_busy;            /* a lease job is in flight */
    struct event *persist_timer; /* every persist_ms: one batch write of every changed answer */
    bool persist_busy;          /* a batch write is in flight */
    bool stop_listening;        /* subscribed to TURN_STOP_CHANNEL */
};

static void turn_ref(struct turn *t) { t->refs++; }

static void turn_release(struct turn *t)
{
    if (--t->refs > 0)
        return;
    if (t->easy) {
        curlev_remove(t->app->curl, t->easy);
        curl_easy_cleanup(t->easy);
    }
    curl_slist_free_all(t->hdrs);
    if (t->retry_timer)
        event_free(t->retry_timer);
    if (t->linger_timer)
        event_free(t->linger_timer);
    sse_parser_free(t->sse);
    oai_stream_free(t->oai);
    buf_cleanup(&t->errbody);
    buf_cleanup(&t->log);
    free(t->offs);
    json_decref(t->error);
    store_message_clear(&t->msg);
    provider_conn_clear(&t->pc);
    free(t->request_body);
    free(t->title_seed);
    free(t);
}

/* ---- leases: several instances on one database ---------------------------------- */

struct lease_job {
    struct app *app;
    char (*stop_ids)[STORE_ID_LEN + 1];
    size_t nstop;
    int64_t expired;
};

static void lease_work(void *arg, void *ctx)
{
    struct lease_job *j = arg;
    struct store *st = ctx;
    int64_t now = now_ms();
    if (store_lease_renew(st, j->app->cfg.instance_id, now + j->app->cfg.turn_lease_ms,
                          &j->stop_ids, &j->nstop) != APP_OK)
        log_error("turn lease renewal failed", "detail", store_errmsg(st), NULL);
    if (store_lease_expire(st, now, "", &j->expired) != APP_OK)
        log_error("turn lease sweep failed", "detail", store_errmsg(st), NULL);
}

static void lease_done(void *arg)
{
    struct lease_job *j = arg;
    struct app *app = j->app;
    app->turns->lease_busy = false;
    for (size_t i = 0; i < j->nstop; i++)
        if (turn_stop(app, j->stop_ids[i]) == 0)
            log_info("turn stopped from another instance", "turn", j->stop_ids[i], NULL);
    if (j->expired > 0) {
        char n[32];
        snprintf(n, sizeof n, "=%lld", (long long)j->expired);
        log_warn("answers of an instance that stopped renewing its leases were marked interrupted",
                 "count", n, NULL);
    }
    free(j->stop_ids);
    free(j);
}

/* A stop asked on another instance, over Redis: the message id. */
static void on_stop_message(void *arg, const char *channel, const char *data, size_t len)
{
    struct app *app = arg;
    if (!data || len == 0 || len > STORE_ID_LEN)
        return;
    char id[STORE_ID_LEN + 1];
    memcpy(id, data, len);
    id[len] = '\0';
    if (turn_stop(app, id) == 0)
        log_info("turn stopped from another instance", "turn", id, NULL);
}

static void on_lease_timer(evutil_socket_t fd, short what, void *arg)
{
    struct app *app = arg;
    if (app->redis && !app->turns->stop_listening) /* the client exists once serve set it up */
        app->turns->stop_listening = redis_subscribe(app->redis, TURN_STOP_CHANNEL,
                                                     on_stop_message, app) == 0;
    if (app->turns->lease_busy || app->shutting_down || !app->pool)
        return;
    struct lease_job *j = xcalloc(1, sizeof *j);
    j->app = app;
    app->turns->lease_busy = true;
    pool_submit(app->pool, lease_work, lease_done, j);
}

static void on_persist_timer(evutil_socket_t fd, short what, void *arg);

struct turn_registry *turns_new(struct app *app)
{
    struct turn_registry *r = xcalloc(1, sizeof(struct turn_registry));
    r->app = app;
    r->by_id = strmap_new();
    /* Renew well within the lease: a third of it, at most every second
     * (that second is also how fast a stop asked elsewhere arrives). */
    int ms = app->cfg.turn_lease_ms / 3;
    if (ms > 1000)
        ms = 1000;
    r->lease_timer = event_new(app->base, -1, EV_PERSIST, on_lease_timer, app);
    struct timeval tv = {ms / 1000, (ms % 1000) * 1000};
    event_add(r->lease_timer, &tv);
    r->persist_timer = event_new(app->base, -1, EV_PERSIST, on_persist_timer, app);
    struct timeval pt = {app->cfg.persist_ms / 1000, (app->cfg.persist_ms % 1000) * 1000};
    event_add(r->persist_timer, &pt);
    return r;
}

void turns_free(struct turn_registry *r)
{
    if (!r)
        return;
    if (r->lease_timer)
        event_free(r->lease_timer);
    if (r->persist_timer)
        event_free(r->persist_timer);
    if (r->stop_listening)
        redis_unsubscribe(r->app->redis, TURN_STOP_CHANNEL, r->app);
    strmap_free(r->by_id, NULL);
    while (r->head) {
        struct turn *t = r->head;
        r->head = t->next;
        while (t->subs) {
            struct subscriber *s = t->subs;
            t->subs = s->next;
            sse_conn_close(s->conn);
            free(s);
        }
        turn_release(t);
    }
    free(r);
}

/* Both by id: with a thousand answers streaming, a list scan per lookup
 * (every event stream that attaches) and per unregister was a thousand
 * string compares each. */
static struct turn *find(struct app *app, const char *id)
{
    return strmap_get(app->turns->by_id, id);
}

static void unregister(struct turn *t)
{
    struct turn_registry *r = t->app->turns;
    if (!t->registered)
        return;
    t->registered = false;
    if (strmap_get(r->by_id, t->msg.id) == t)
        strmap_del(r->by_id, t->msg.id);
    if (t->prev)
        t->prev->next = t->next;
    else
        r->head = t->next;
    if (t->next)
        t->next->prev = t->prev;
    t->next = t->prev = NULL;
    turn_release(t);
}

/* ---- events ------------------------------------------------------------------ */

/* Scratch buffers of the loop thread (everything here runs on it): one
 * event's data and its frame, reused so relaying a chunk allocates
 * nothing once they have grown. */
static struct buf g_frame = {.max = LIMIT_SSE_EVENT_LOG};

static void publish_frame(struct turn *t, const char *frame, size_t len);

/* Publish one event (data: its JSON text) to the log and every subscriber. */
static void publish_text(struct turn *t, const char *event, const char *s)
{
    long long id = (long long)++t->nevents;
    struct buf *frame = &g_frame;
    buf_reset(frame);
    if (sse_frame(frame, id, event, s) == 0)
        publish_frame(t, frame->p, frame->len);
}

/* Publish one event to the log and every subscriber; takes data. */
static void publish(struct turn *t, const char *event, json_t *data)
{
    char *s = json_dumps(data, JSON_COMPACT);
    json_decref(data);
    publish_text(t, event, s);
    free(s);
}

/* Store a framed event in the log and send it to every subscriber. */
static void publish_frame(struct turn *t, const char *frame, size_t len)
{
    if (!t->log_truncated) {
        if (t->nevents > t->offs_cap) {
            t->offs_cap = t->offs_cap ? t->offs_cap * 2 : 64;
            t->offs = xrealloc(t->offs, t->offs_cap * sizeof *t->offs);
        }
        t->offs[t->nevents - 1] = t->log.len;
        if (buf_append(&t->log, frame, len) != 0)
            t->log_truncated = true; /* late subscribers get a snapshot instead */
    }
    for (struct subscriber *sub = t->subs; sub; sub = sub->next)
        sse_conn_write(sub->conn, frame, len);
    if (t->app->redis) { /* followers on other instances get it as framed */
        char ch[16 + STORE_ID_LEN];
        snprintf(ch, sizeof ch, "coai:turn:%s", t->msg.id);
        redis_publish(t->app->redis, ch, frame, len);
    }
}

/* The common delta, text only, framed straight into the frame buffer (no
 * JSON object, no printf): the same bytes sse_frame makes of
 * {"content":"..."}. content is NUL-terminated and holds no NUL. */
static void publish_content(struct turn *t, const char *content)
{
    char head[48];
    unsigned long long id = (unsigned long long)t->nevents + 1;
    char digits[24];
    size_t nd = 0;
    do {
        digits[nd++] = (char)('0' + id % 10);
        id /= 10;
    } while (id);
    size_t hl = 4;
    memcpy(head, "id: ", 4);
    while (nd)
        head[hl++] = digits[--nd];
    static const char mid[] = "\nevent: delta\ndata: {\"content\":";
    memcpy(head + hl, mid, sizeof mid - 1);
    hl += sizeof mid - 1;
    struct buf *frame = &g_frame;
    buf_reset(frame);
    if (buf_append(frame, head, hl) != 0 || buf_append_json_str(frame, content) != 0 ||
        buf_append(frame, "}\n\n", 3) != 0) {
        publish(t, "delta", json_pack("{s:s}", "content", content));
        return;
    }
    t->nevents++;
    publish_frame(t, frame->p, frame->len);
}

/* The message as it stands, in the REST shape. */
static json_t *message_now(struct turn *t)
{
    json_t *parts = oai_stream_parts_json(t->oai);
    char *content = json_dumps(parts, JSON_COMPACT);
    json_decref(parts);
    free(t->msg.content);
    t->msg.content = content;
    int64_t pt, ct;
    oai_stream_usage(t->oai, &pt, &ct);
    t->msg.prompt_tokens = pt;
    t->msg.completion_tokens = ct;
    return view_message(&t->msg);
}

/* ---- persistence -------------------------------------------------------------- */

struct persist_job {
    struct turn *t;
    char id[STORE_ID_LEN + 1];
    char chat_id[STORE_ID_LEN + 1];
    char user_id[STORE_ID_LEN + 1];
    int64_t updated_at;  /* as stored by the final write */
    char *content;       /* the stored JSON; NULL: made from text on the worker */
    char *text;          /* a text-only answer's bytes (periodic writes) */
    size_t text_len;
    char status[16];
    char *error;
    int64_t pt, ct;
    int64_t events;      /* events published when the content was taken */
    bool final;
    enum app_err rc;
};

static void finalize(struct turn *t);
static void persist_submit(struct turn *t, bool final);
static struct persist_job *persist_take(struct turn *t, bool final);

/* The content as stored, [{"type":"text","text":...}] (what
 * oai_stream_parts_json gives for a text-only answer), made here on the
 * worker rather than on the loop for every answer at every tick. */
static void persist_encode(struct persist_job *j)
{
    if (j->content)
        return;
    json_t *parts = json_array();
    if (j->text_len)
        json_array_append_new(parts, json_pack("{s:s,s:s%}", "type", "text", "text", j->text,
                                               j->text_len));
    j->content = json_dumps(parts, JSON_COMPACT);
    json_decref(parts);
    if (!j->content)
        j->content = xstrdup("[]"); /* not reached: the text came out of a decoder */
}

static void persist_work(void *arg, void *ctx)
{
    struct persist_job *j = arg;
    struct store *st = ctx;
    persist_encode(j);
    /* The content and the event count it matches land together, so another
     * instance following from the store resumes at the right event; the
     * final write gives the lease up. */
    enum app_err b = store_begin(st);
    j->rc = store_message_update(st, j->id, j->content, j->status, j->error, j->pt, j->ct);
    if (j->rc == APP_OK)
        j->rc = j->final ? store_lease_delete(st, j->id) : store_lease_progress(st, j->id, j->events);
    if (b == APP_OK) {
        if (j->rc == APP_OK)
            j->rc = store_commit(st);
        else
            store_rollback(st);
    }
    if (j->rc != APP_OK && j->rc != APP_ENOTFOUND) /* ENOTFOUND: chat deleted meanwhile */
        log_error("turn persist failed", "turn", j->id, "detail", store_errmsg(st), NULL);
    if (j->final) {
        (void)store_chat_touch(st, j->chat_id, now_ms());
        /* Read back the row's own timestamp so "done" shows the stored row. */
        struct store_message m;
        memset(&m, 0, sizeof m);
        if (store_message_get(st, j->user_id, j->id, &m) == APP_OK)
            j->updated_at = m.updated_at;
        store_message_clear(&m);
    }
}

static void persist_done(void *arg)
{
    struct persist_job *j = arg;
    struct turn *t = j->t;
    t->persisting = false;
    if (j->final && j->updated_at)
        t->msg.updated_at = j->updated_at;
    if (j->final)
        finalize(t);
    else if (t->final_pending) {
        t->final_pending = false;
        persist_submit(t, true);
    }
    free(j->content);
    free(j->text);
    free(j->error);
    free(j);
    turn_release(t);
}

static void persist_submit(struct turn *t, bool final)
{
    if (t->persisting) {
        if (final)
            t->final_pending = true;
        return;
    }
    pool_submit(t->app->pool, persist_work, persist_done, persist_take(t, final));
}

/* The periodic writes of every streaming answer go to the store as one job
 * and one transaction per tick (not one job, one timer and one commit per
 * answer): with a thousand answers streaming, that is two commits a second
 * instead of two thousand, and the loop hands the pool one job. A failing
 * batch is retried answer by answer, so one bad row costs no other. The
 * final write of an answer stays its own job (its "done" waits on it). */
struct persist_batch {
    struct app *app;
    struct persist_job **jobs;
    size_t n;
};

/* The job for t's content now; takes a reference and marks t persisting. */
static struct persist_job *persist_take(struct turn *t, bool final)
{
    struct persist_job *j = xcalloc(1, sizeof *j);
    size_t refusal_len;
    oai_stream_refusal(t->oai, &refusal_len);
    if (!final && refusal_len == 0 && oai_stream_tool_count(t->oai) == 0) {
        /* the common case: a copy of the text; its JSON is made on the worker */
        const char *text = oai_stream_content(t->oai, &j->text_len);
        j->text = xmalloc(j->text_len + 1);
        memcpy(j->text, text, j->text_len + 1);
        int64_t pt, ct;
        oai_stream_usage(t->oai, &pt, &ct);
        t->msg.prompt_tokens = pt;
        t->msg.completion_tokens = ct;
    } else {
        json_decref(message_now(t));
        j->content = xstrdup(t->msg.content);
    }
    j->t = t;
    turn_ref(t);
    memcpy(j->id, t->msg.id, sizeof j->id);
    memcpy(j->chat_id, t->msg.chat_id, sizeof j->chat_id);
    memcpy(j->user_id, t->user_id, sizeof j->user_id);
    snprintf(j->status, sizeof j->status, "%s", final ? t->msg.status : "streaming");
    j->error = final ? xstrdup(t->msg.error) : NULL;
    j->pt = t->msg.prompt_tokens;
    j->ct = t->msg.completion_tokens;
    j->final = final;
    j->events = (int64_t)t->nevents;
    t->dirty = false;
    t->persisting = true;
    return j;
}

static void persist_batch_work(void *arg, void *ctx)
{
    struct persist_batch *b = arg;
    struct store *st = ctx;
    enum app_err rc = store_begin(st);
    for (size_t i = 0; rc == APP_OK && i < b->n; i++) {
        struct persist_job *j = b->jobs[i];
        persist_encode(j);
        j->rc = store_message_update(st, j->id, j->content, j->status, NULL, j->pt, j->ct);
        if (j->rc == APP_OK)
            j->rc = store_lease_progress(st, j->id, j->events);
        if (j->rc != APP_OK && j->rc != APP_ENOTFOUND) /* ENOTFOUND: chat deleted meanwhile */
            rc = j->rc;
    }
    if (rc == APP_OK)
        rc = store_commit(st);
    else
        store_rollback(st);
    if (rc == APP_OK)
        return;
    for (size_t i = 0; i < b->n; i++) /* one by one: only the bad ones fail */
        persist_work(b->jobs[i], ctx);
}

static void persist_batch_done(void *arg)
{
    struct persist_batch *b = arg;
    b->app->turns->persist_busy = false;
    for (size_t i = 0; i < b->n; i++)
        persist_done(b->jobs[i]);
    free(b->jobs);
    free(b);
}

static void on_persist_timer(evutil_socket_t fd, short what, void *arg)
{
    struct app *app = arg;
    struct turn_registry *r = app->turns;
    if (r->persist_busy || !app->pool)
        return; /* the next tick takes what changed meanwhile */
    struct persist_batch *b = NULL;
    size_t cap = 0;
    for (struct turn *t = r->head; t; t = t->next) {
        if (!t->dirty || t->persisting || t->state >= T_FINISHING)
            continue;
        if (!b) {
            b = xcalloc(1, sizeof *b);
            b->app = app;
        }
        if (b->n == cap) {
            cap = cap ? cap * 2 : 64;
            b->jobs = xrealloc(b->jobs, cap * sizeof *b->jobs);
        }
        b->jobs[b->n++] = persist_take(t, false);
    }
    if (!b)
        return;
    r->persist_busy = true;
    pool_submit(app->pool, persist_batch_work, persist_batch_done, b);
}

/* ---- titles ---------------------------------------------------------------------- */

struct title_job {
    char chat_id[STORE_ID_LEN + 1];
    char user_id[STORE_ID_LEN + 1];
    char *title;
};

static void title_work(void *arg, void *ctx)
{
    struct title_job *j = arg;
    struct store *st = ctx;
    struct store_chat c;
    memset(&c, 0, sizeof c);
    if (store_chat_get(st, j->user_id, j->chat_id, &c) == APP_OK && !c.title) {
        struct store_chat_patch p = {.set_title = true, .title = j->title};
        (void)store_chat_update(st, j->user_id, j->chat_id, &p);
    }
    store_chat_clear(&c);
}

static void title_done(void *arg)
{
    struct title_job *j = arg;
    free(j->title);
    free(j);
}

/* Clean a model-made title: first line, no surrounding quotes or "Title:". */
static char *title_clean(const char *s, size_t len)
{
    /* leading quotes and markup, also after a "Title:" ("Title: \"Foo\"") */
    for (;;) {
        while (len && (*s == ' ' || *s == '\n' || *s == '"' || *s == '\'' || *s == '*' || *s == '#')) {
            s++;
            len--;
        }
        if (len < 6 || strncasecmp(s, "title:", 6) != 0)
            break;
        s += 6;
        len -= 6;
    }
    const char *nl = memchr(s, '\n', len);
    if (nl)
        len = (size_t)(nl - s);
    while (len && (s[len - 1] == ' ' || s[len - 1] == '"' || s[len - 1] == '\'' ||
                   s[len - 1] == '.' || s[len - 1] == '*'))
        len--;
    len = utf8_truncate(s, len, 80);
    if (len == 0 || !utf8_valid(s, len))
        return NULL;
    return xstrndup(s, len);
}

static void title_submit(struct turn *t, char *title)
{
    struct title_job *j = xcalloc(1, sizeof *j);
    memcpy(j->chat_id, t->msg.chat_id, sizeof j->chat_id);
    memcpy(j->user_id, t->user_id, sizeof j->user_id);
    j->title = title;
    pool_submit(t->app->pool, title_work, title_done, j);
}

static void title_cb(void *arg, long status, const char *body, size_t len, const char *err)
{
    struct turn *t = arg;
    char *title = NULL;
    if (status == 200) {
        json_t *root = json_loadb(body, len, 0, NULL);
        json_t *choice = json_array_get(json_object_get(root, "choices"), 0);
        json_t *content = json_object_get(json_object_get(choice, "message"), "content");
        if (json_is_string(content))
            title = title_clean(json_string_value(content), json_string_length(content));
        json_decref(root);
    }
    if (!title) /* fall back to the start of the first message */
        title = title_clean(t->title_seed, strlen(t->title_seed));
    if (title && !t->app->shutting_down)
        title_submit(t, title);
    else
        free(title);
    turn_release(t);
}

static void title_start(struct turn *t)
{
    json_t *body = json_pack(
        "{s:s,s:[{s:s,s:s},{s:s,s:s}],s:i,s:b}", "model", t->msg.model ? t->msg.model : "",
        "messages", "role", "system", "content",
        "Generate a short title (at most 6 words) for a conversation that starts with the "
        "user's message below. Reply with the title only, without quotes.",
        "role", "user", "content", t->title_seed, "max_tokens", 24, "stream", 0);
    char *s = json_dumps(body, JSON_COMPACT);
    json_decref(body);
    turn_ref(t);
    provider_fetch(t->app, &t->pc, "/chat/completions", s, title_cb, t);
    free(s);
}

/* ---- finishing --------------------------------------------------------------------- */

static void close_subscribers(struct turn *t)
{
    while (t->subs) {
        struct subscriber *s = t->subs;
        t->subs = s->next;
        sse_conn_close(s->conn);
        free(s);
    }
}

static void on_linger(evutil_socket_t fd, short what, void *arg)
{
    unregister(arg);
}

/* Runs when the final state is stored: tell everyone, then linger. */
static void record_usage(struct turn *t)
{
    struct store_usage u;
    memset(&u, 0, sizeof u);
    memcpy(u.user_id, t->user_id, sizeof u.user_id);
    memcpy(u.key_id, t->key_id, sizeof u.key_id);
    snprintf(u.key_source, sizeof u.key_source, "%s", t->key_source);
    snprintf(u.endpoint, sizeof u.endpoint, "chat");
    const char *model = oai_stream_model(t->oai) ? oai_stream_model(t->oai) : t->msg.model;
    u.model = (char *)(model ? model : "");
    u.prompt_tokens = t->msg.prompt_tokens;
    u.completion_tokens = t->msg.completion_tokens;
    if (u.prompt_tokens < 0 && u.completion_tokens < 0) {
        size_t out = 0, ref = 0;
        oai_stream_content(t->oai, &out);
        oai_stream_refusal(t->oai, &ref);
        u.tokens_estimated = true;
        u.prompt_tokens = t->request_body ? (int64_t)(strlen(t->request_body) + 3) / 4 : 0;
        u.completion_tokens = (int64_t)(out + ref + 3) / 4;
        if (!t->published_delta && strcmp(t->msg.status, "complete") != 0)
            u.prompt_tokens = u.completion_tokens = 0; /* nothing was generated */
    }
    if (u.prompt_tokens < 0)
        u.prompt_tokens = 0;
    if (u.completion_tokens < 0)
        u.completion_tokens = 0;
    u.cost_micros = gateway_cost(t->app, u.model, u.prompt_tokens, 0, u.completion_tokens);
    metrics_tokens(u.prompt_tokens, u.completion_tokens);
    u.latency_ms = (mono_us() - t->started_us) / 1000;
    u.status = strcmp(t->msg.status, "error") == 0 ? (t->http_status >= 400 ? (int)t->http_status : 502)
                                                    : 200;
    gateway_record(t->app, &u);
}

static void finalize(struct turn *t)
{
    if (t->user_id[0])
        record_usage(t);
    json_t *m = message_now(t);
    publish(t, "done", json_pack("{s:s,s:o}", "status", t->msg.status, "message", m));
    close_subscribers(t);
    t->state = T_DONE;
    char dur[32];
    snprintf(dur, sizeof dur, "=%lld", (long long)(mono_us() - t->started_us));
    log_info("turn finished", "turn", t->msg.id, "status", t->msg.status, "duration_us", dur,
             NULL);
    if (t->title_seed && strcmp(t->msg.status, "complete") == 0 && !t->app->shutting_down &&
        t->app->cfg.titles)
        title_start(t);
    if (t->app->shutting_down) {
        unregister(t);
        return;
    }
    t->linger_timer = evtimer_new(t->app->base, on_linger, t);
    struct timeval tv = {LINGER_S, 0};
    evtimer_add(t->linger_timer, &tv);
}

/* End the turn with status (and error, taken), store, then finalize. */
static void finish(struct turn *t, const char *status, json_t *error)
{
    if (t->state >= T_FINISHING) {
        json_decref(error);
        return;
    }
    t->state = T_FINISHING;
    if (t->easy) {
        curlev_remove(t->app->curl, t->easy);
        curl_easy_cleanup(t->easy);
        t->easy = NULL;
    }
    bool retry_pending = t->retry_timer && evtimer_pending(t->retry_timer, NULL);
    snprintf(t->msg.status, sizeof t->msg.status, "%s", status);
    if (error) {
        json_decref(t->error);
        t->error = error;
        free(t->msg.error);
        t->msg.error = json_dumps(error, JSON_COMPACT);
        publish(t, "error", json_incref(error));
        const char *code = json_string_value(json_object_get(error, "code"));
        metrics_provider_error(code);
        if (sentry_enabled() && strcmp(status, "interrupted") != 0)
            sentry_capture(t->app, "warning", "provider failure",
                           json_pack("{s:s,s:s,s:s,s:I}", "code", code ? code : "unknown",
                                     "model", t->msg.model ? t->msg.model : "", "turn", t->msg.id,
                                     "provider_status", (json_int_t)t->http_status));
        log_warn("turn failed", "turn", t->msg.id, "code",
                 json_string_value(json_object_get(error, "code")), NULL);
    }
    persist_submit(t, true);
    if (retry_pending) {
        /* The timer held a reference; it will never fire now. Last, because
         * it may be the final reference only after persist took its own. */
        evtimer_del(t->retry_timer);
        turn_release(t);
    }
}

/* ---- streaming --------------------------------------------------------------------- */

static int on_sse_event(void *arg, const char *event, const char *data, size_t len,
                        const char *id)
{
    struct turn *t = arg;
    struct oai_update u;
    enum oai_feed r = oai_stream_feed(t->oai, data, len, &u);
    if (r == OAI_FEED_BAD) {
        t->stream_failed = true;
        return 1;
    }
    if (r == OAI_FEED_ERROR) {
        json_t *e = json_pack("{s:s,s:s}", "code",
                              (u.error_code && strcmp(u.error_code, "context_length_exceeded") == 0)
                                  ? "context_length_exceeded"
                                  : "provider_stream_error",
                              "message", u.error_message ? u.error_message : "provider error");
        if (u.error_code)
            json_object_set_new(e, "provider_code", json_string(u.error_code));
        if (u.error_type)
            json_object_set_new(e, "provider_type", json_string(u.error_type));
        json_decref(t->error);
        t->error = e;
        return 1;
    }
    if (r == OAI_FEED_DONE)
        return 0;
    if (u.content_len && !u.refusal_len && !u.tool_call_count &&
        !memchr(u.content, '\0', u.content_len)) {
        t->published_delta = true;
        t->dirty = true;
        publish_content(t, u.content);
        u.content_len = 0; /* published */
    }
    json_t *delta = NULL;
    if (u.content_len) {
        delta = json_object();
        json_object_set_new(delta, "content", json_stringn(u.content, u.content_len));
    }
    if (u.refusal_len) {
        if (!delta)
            delta = json_object();
        json_object_set_new(delta, "refusal", json_stringn(u.refusal, u.refusal_len));
    }
    if (u.tool_call_count) {
        if (!delta)
            delta = json_object();
        json_t *arr = json_array();
        for (size_t i = 0; i < u.tool_call_count; i++) {
            const struct oai_tool_delta *d = &u.tool_calls[i];
            json_t *o = json_pack("{s:i}", "index", d->index);
            if (d->id)
                json_object_set_new(o, "id", json_string(d->id));
            if (d->name)
                json_object_set_new(o, "name", json_string(d->name));
            if (d->arguments)
                json_object_set_new(o, "arguments", json_stringn(d->arguments, d->arguments_len));
            json_array_append_new(arr, o);
        }
        json_object_set_new(delta, "tool_calls", arr);
    }
    if (delta) {
        t->published_delta = true;
        t->dirty = true;
        publish(t, "delta", delta);
    }
    if (u.has_usage)
        publish(t, "usage", json_pack("{s:I,s:I}", "prompt_tokens", (json_int_t)u.prompt_tokens,
                                      "completion_tokens", (json_int_t)u.completion_tokens));
    return 0;
}

/* curl calls this about once a second even when nothing arrives: the one
 * place to notice a provider that went silent. */
static int on_progress(void *arg, curl_off_t dltotal, curl_off_t dlnow, curl_off_t ultotal,
                       curl_off_t ulnow)
{
    struct turn *t = arg;
    if (mono_us() - t->last_byte_us > (int64_t)t->app->cfg.upstream_idle_timeout_s * 1000000) {
        t->timed_out = true;
        return 1; /* abort: CURLE_ABORTED_BY_CALLBACK */
    }
    return 0;
}

static size_t on_header(char *p, size_t sz, size_t n, void *arg)
{
    struct turn *t = arg;
    size_t len = sz * n;
    t->last_byte_us = mono_us();
    if (len > 12 && strncasecmp(p, "Retry-After:", 12) == 0) {
        char tmp[32];
        size_t l = len - 12 < sizeof tmp - 1 ? len - 12 : sizeof tmp - 1;
        memcpy(tmp, p + 12, l);
        tmp[l] = '\0';
        char *end;
        long v = strtol(tmp, &end, 10);
        if (end != tmp && v >= 0)
            t->retry_after_s = v;
    }
    return len;
}

static size_t on_data(char *p, size_t sz, size_t n, void *arg)
{
    struct turn *t = arg;
    size_t len = sz * n;
    t->last_byte_us = mono_us();
    if (!t->http_status)
        curl_easy_getinfo(t->easy, CURLINFO_RESPONSE_CODE, &t->http_status);
    if (t->http_status != 200) {
        (void)buf_append(&t->errbody, p, len); /* past the cap we keep the head */
        return len;
    }
    if (t->state == T_CONNECTING)
        t->state = T_STREAMING;
    t->saw_bytes = true;
    int rc = sse_parser_feed(t->sse, p, len);
    if (rc == -1)
        t->stream_failed = true;
    return rc == 0 ? len : 0; /* 0 aborts the transfer */
}

static void attempt_start(struct turn *t);

static void on_retry_timer(evutil_socket_t fd, short what, void *arg)
{
    struct turn *t = arg;
    if (t->state == T_RETRY_WAIT)
        attempt_start(t);
    turn_release(t);
}

/* Retry if nothing was shown yet and attempts remain; true if scheduled. */
static bool maybe_retry(struct turn *t)
{
    if (t->published_delta || t->attempt >= t->app->cfg.retry_max || t->app->shutting_down)
        return false;
    long delay_ms = (long)t->app->cfg.retry_base_ms << t->attempt;
    if (t->retry_after_s >= 0)
        delay_ms = (t->retry_after_s > RETRY_AFTER_CAP_S ? RETRY_AFTER_CAP_S : t->retry_after_s) *
                   1000L;
    t->attempt++;
    t->state = T_RETRY_WAIT;
    publish(t, "retry", json_pack("{s:i,s:I,s:I}", "attempt", t->attempt, "delay_ms",
                                  (json_int_t)delay_ms, "status", (json_int_t)t->http_status));
    log_info("turn retry", "turn", t->msg.id, "state", state_names[t->state], NULL);
    if (!t->retry_timer)
        t->retry_timer = evtimer_new(t->app->base, on_retry_timer, t);
    struct timeval tv = {delay_ms / 1000, (delay_ms % 1000) * 1000};
    turn_ref(t);
    evtimer_add(t->retry_timer, &tv);
    return true;
}

/* Take another key from the pool (after this one failed). */
static bool repick_pool_key(struct turn *t)
{
    struct provider_conn pc;
    char key_id[STORE_ID_LEN + 1];
    memset(&pc, 0, sizeof pc);
    if (!gateway_pool_pick(t->app, &pc, key_id))
        return false;
    provider_conn_clear(&t->pc);
    t->pc = pc;
    memcpy(t->key_id, key_id, sizeof t->key_id);
    return true;
}

static void on_transfer_done(CURL *easy, CURLcode rc, void *arg)
{
    struct turn *t = arg;
    if (!t->http_status)
        curl_easy_getinfo(easy, CURLINFO_RESPONSE_CODE, &t->http_status);
    curl_easy_cleanup(t->easy);
    t->easy = NULL;
    curl_slist_free_all(t->hdrs);
    t->hdrs = NULL;
    if (t->state >= T_FINISHING)
        return;
    if (t->timed_out)
        rc = CURLE_OPERATION_TIMEDOUT;

    if (t->http_status == 200 && rc != CURLE_OK && !t->error && !t->stream_failed) {
        /* transport failure mid-stream */
        if (maybe_retry(t))
            return;
        finish(t, "error", provider_transport_error_json(rc, t->saw_bytes));
    } else if (t->http_status == 200) {
        if (t->error) {
            finish(t, "error", json_incref(t->error));
        } else if (t->stream_failed) {
            finish(t, "error", json_pack("{s:s,s:s}", "code", "provider_bad_stream", "message",
                                         "the provider sent a stream we could not read"));
        } else if (oai_stream_done(t->oai) || oai_stream_finish_reason(t->oai)) {
            finish(t, "complete", NULL);
        } else {
            finish(t, "error", provider_transport_error_json(CURLE_PARTIAL_FILE, true));
        }
    } else if (t->http_status >= 400) {
        if (t->key_id[0]) {
            gateway_pool_report(t->app, t->key_id, t->http_status, t->retry_after_s, 0);
            if ((t->http_status == 401 || t->http_status == 429) && t->attempt < 8 &&
                repick_pool_key(t)) {
                t->attempt++;
                attempt_start(t); /* another pool key, at once */
                return;
            }
        }
        bool retryable = t->http_status == 429 || t->http_status >= 500;
        if (retryable && maybe_retry(t))
            return;
        finish(t, "error", provider_error_json(t->http_status, buf_str(&t->errbody),
                                               t->errbody.len));
    } else {
        if (maybe_retry(t))
            return;
        finish(t, "error", rc != CURLE_OK ? provider_transport_error_json(rc, false)
                                          : provider_error_json(t->http_status, NULL, 0));
    }
}

static void attempt_start(struct turn *t)
{
    t->state = T_CONNECTING;
    t->http_status = 0;
    t->retry_after_s = -1;
    t->saw_bytes = false;
    t->stream_failed = false;
    t->timed_out = false;
    t->last_byte_us = mono_us();
    json_decref(t->error);
    t->error = NULL;
    buf_reset(&t->errbody);
    sse_parser_free(t->sse);
    t->sse = sse_parser_new(LIMIT_UPSTREAM_SSE_LINE, on_sse_event, t);
    oai_stream_free(t->oai);
    t->oai = oai_stream_new();
    t->easy = provider_easy_new(t->app, &t->pc, "/chat/completions", t->request_body, true,
                                &t->hdrs);
    if (!t->easy) {
        finish(t, "error", json_pack("{s:s,s:s}", "code", "internal_error", "message",
                                     "cannot start the provider request"));
        return;
    }
    curl_easy_setopt(t->easy, CURLOPT_WRITEFUNCTION, on_data);
    curl_easy_setopt(t->easy, CURLOPT_WRITEDATA, t);
    curl_easy_setopt(t->easy, CURLOPT_HEADERFUNCTION, on_header);
    curl_easy_setopt(t->easy, CURLOPT_HEADERDATA, t);
    curl_easy_setopt(t->easy, CURLOPT_NOPROGRESS, 0L);
    curl_easy_setopt(t->easy, CURLOPT_XFERINFOFUNCTION, on_progress);
    curl_easy_setopt(t->easy, CURLOPT_XFERINFODATA, t);
    if (curlev_add(t->app->curl, t->easy, on_transfer_done, t) != 0) {
        curl_easy_cleanup(t->easy);
        t->easy = NULL;
        finish(t, "error", json_pack("{s:s,s:s}", "code", "internal_error", "message",
                                     "cannot start the provider request"));
    }
}

/* ---- public ------------------------------------------------------------------------ */

void turn_start(struct app *app, struct turn_spec *spec)
{
    struct turn *t = xcalloc(1, sizeof *t);
    t->app = app;
    t->refs = 1; /* the registry's */
    t->msg = spec->msg;
    memset(&spec->msg, 0, sizeof spec->msg);
    memcpy(t->user_id, spec->user_id, sizeof t->user_id);
    t->pc = spec->pc;
    memset(&spec->pc, 0, sizeof spec->pc);
    snprintf(t->key_source, sizeof t->key_source, "%s", t->pc.from_user ? "user" : "server");
    t->request_body = json_dumps(spec->request, JSON_COMPACT);
    json_decref(spec->request);
    spec->request = NULL;
    t->title_seed = spec->title_seed;
    spec->title_seed = NULL;
    buf_init(&t->errbody, LIMIT_UPSTREAM_ERROR);
    buf_init(&t->log, LIMIT_SSE_EVENT_LOG);
    t->started_us = mono_us();
    t->oai = oai_stream_new();
    t->next = app->turns->head;
    if (t->next)
        t->next->prev = t;
    app->turns->head = t;
    t->registered = true;
    strmap_put(app->turns->by_id, t->msg.id, t); /* the newest turn of an id wins, as before */
    log_info("turn started", "turn", t->msg.id, "chat", t->msg.chat_id, "model", t->msg.model,
             NULL);
    if (!t->pc.api_key) {
        if (repick_pool_key(t)) {
            snprintf(t->key_source, sizeof t->key_source, "pool");
        } else if (app->cfg.provider_api_key) {
            t->pc.base_url = xstrdup(app->cfg.provider_base_url);
            t->pc.api_key = xstrdup(app->cfg.provider_api_key);
        } else {
            finish(t, "error", json_pack("{s:s,s:s}", "code", "no_provider_key", "message",
                                         "every provider key is unavailable right now"));
            return;
        }
    }
    attempt_start(t);
}

static void on_sub_gone(struct sse_conn *conn, void *arg)
{
    struct subscriber *s = arg;
    struct turn *t = s->turn;
    struct subscriber **pp = &t->subs;
    while (*pp && *pp != s)
        pp = &(*pp)->next;
    if (*pp)
        *pp = s->next;
    free(s);
}

bool turn_attach(struct app *app, const char *msg_id, struct sse_conn *conn,
                 long long last_event_id)
{
    struct turn *t = find(app, msg_id);
    if (!t)
        return false;
    struct subscriber *s = xcalloc(1, sizeof *s);
    s->turn = t;
    s->conn = conn;
    sse_conn_set_gone(conn, on_sub_gone, s);
    size_t from = last_event_id < 0 ? 0 : (size_t)last_event_id;
    if (from < t->nevents) {
        if (t->log_truncated) {
            /* No full replay available: one snapshot of the message so far. */
            json_t *m = message_now(t);
            char *d = json_dumps(json_pack("{s:o}", "message", m), JSON_COMPACT);
            sse_conn_event(s->conn, (long long)t->nevents, "snapshot", d);
            free(d);
        } else {
            sse_conn_write(s->conn, t->log.p + t->offs[from], t->log.len - t->offs[from]);
        }
    }
    if (t->state == T_DONE) {
        sse_conn_close(s->conn);
        free(s);
        return true;
    }
    s->next = t->subs;
    t->subs = s;
    return true;
}

bool turn_subscribe(struct app *app, const char *msg_id, struct evhttp_request *req,
                    const char *req_id, const char *path, int64_t start_us,
                    long long last_event_id)
{
    if (!find(app, msg_id))
        return false;
    struct sse_conn *conn = sse_conn_open(app, req, req_id, path, start_us, NULL, NULL);
    return turn_attach(app, msg_id, conn, last_event_id);
}

int turn_stop(struct app *app, const char *msg_id)
{
    struct turn *t = find(app, msg_id);
    if (!t)
        return -1;
    if (t->state >= T_FINISHING)
        return 1;
    finish(t, "stopped", NULL);
    return 0;
}

void turns_stop_chat(struct app *app, const char *chat_id)
{
    for (struct turn *t = app->turns->head; t; t = t->next)
        if (t->state < T_FINISHING && strcmp(t->msg.chat_id, chat_id) == 0)
            finish(t, "stopped", NULL);
}

void turns_shutdown(struct app *app)
{
    for (struct turn *t = app->turns->head; t; t = t->next) {
        if (t->linger_timer)
            evtimer_del(t->linger_timer);
        if (t->state < T_FINISHING)
            finish(t, "interrupted",
                   json_pack("{s:s,s:s}", "code", "interrupted", "message",
                             "the server shut down while the answer was being generated"));
    }
}

size_t turns_active(struct app *app)
{
    size_t n = 0;
    for (struct turn *t = app->turns->head; t; t = t->next)
        if (t->state != T_DONE)
            n++;
    return n;
}

bool turns_idle(struct app *app)
{
    return turns_active(app) == 0;
}
