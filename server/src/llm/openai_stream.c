/* openai_stream.c - decoder/accumulator for chat.completion.chunk streams;
 * see openai_stream.h. Each payload is parsed with jansson and checked
 * against the caps before anything is accumulated, so a rejected chunk leaves
 * the accumulated answer as it was.
 */
#include "openai_stream.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../lib/buf.h"
#include "../lib/common.h"
#include "../lib/caps.h"

/* Tool-call indexes above this are not believed. */
#define OAI_MAX_TOOL_INDEX (1 << 20)

struct oai_tool {
    int index;      /* ordering key, reported to callers */
    int src_index;  /* the index the provider used, -1 if it sent none */
    unsigned seq;   /* creation order */
    struct buf id;
    struct buf name;
    struct buf args;
};

/* Per-delta bookkeeping of the current feed (parallel to s->deltas). */
struct oai_dnote {
    unsigned seq;   /* the tool it resolved to */
    bool set_id;    /* this feed set the tool's id / name (for rollback) */
    bool set_name;
};

struct oai_stream {
    struct buf content;
    struct buf refusal;
    struct oai_tool *tools; /* sorted by index */
    size_t ntools;
    size_t tools_cap;
    unsigned next_seq;
    size_t total;           /* accumulated bytes, against the cap */
    char *finish_reason;
    char *model;
    int64_t prompt_tokens;
    int64_t completion_tokens;
    bool done;
    json_t *cur;            /* the chunk the last update points into */
    struct oai_tool_delta *deltas;
    struct oai_dnote *dnotes;
    size_t deltas_cap;
    char code_buf[32];      /* a numeric error code as text */
};

struct oai_stream *oai_stream_new(void)
{
    struct oai_stream *s = xcalloc(1, sizeof(*s));
    buf_init(&s->content, LIMIT_MESSAGE_CONTENT);
    buf_init(&s->refusal, LIMIT_MESSAGE_CONTENT);
    s->prompt_tokens = -1;
    s->completion_tokens = -1;
    return s;
}

static void oai_tool_cleanup(struct oai_tool *t)
{
    buf_cleanup(&t->id);
    buf_cleanup(&t->name);
    buf_cleanup(&t->args);
}

void oai_stream_free(struct oai_stream *s)
{
    if (!s)
        return;
    buf_cleanup(&s->content);
    buf_cleanup(&s->refusal);
    for (size_t i = 0; i < s->ntools; i++)
        oai_tool_cleanup(&s->tools[i]);
    free(s->tools);
    free(s->finish_reason);
    free(s->model);
    json_decref(s->cur);
    free(s->deltas);
    free(s->dnotes);
    free(s);
}

/* ---- tool-call slots ---------------------------------------------------- */

static struct oai_tool *oai_tool_by_seq(struct oai_stream *s, unsigned seq)
{
    for (size_t i = 0; i < s->ntools; i++)
        if (s->tools[i].seq == seq)
            return &s->tools[i];
    return NULL;
}

/* The most recent call the provider gave this index. */
static struct oai_tool *oai_tool_by_src(struct oai_stream *s, int src)
{
    struct oai_tool *best = NULL;
    for (size_t i = 0; i < s->ntools; i++)
        if (s->tools[i].src_index == src && (!best || s->tools[i].seq > best->seq))
            best = &s->tools[i];
    return best;
}

static struct oai_tool *oai_tool_by_id(struct oai_stream *s, const char *id)
{
    for (size_t i = 0; i < s->ntools; i++)
        if (strcmp(buf_str(&s->tools[i].id), id) == 0)
            return &s->tools[i];
    return NULL;
}

static struct oai_tool *oai_tool_latest(struct oai_stream *s)
{
    struct oai_tool *best = NULL;
    for (size_t i = 0; i < s->ntools; i++)
        if (!best || s->tools[i].seq > best->seq)
            best = &s->tools[i];
    return best;
}

static bool oai_index_taken(const struct oai_stream *s, int index)
{
    for (size_t i = 0; i < s->ntools; i++)
        if (s->tools[i].index == index)
            return true;
    return false;
}

static int oai_next_index(const struct oai_stream *s)
{
    return s->ntools ? s->tools[s->ntools - 1].index + 1 : 0;
}

/* Insert an empty call keeping the array sorted; NULL when at the cap. */
static struct oai_tool *oai_tool_add(struct oai_stream *s, int index, int src)
{
    if (s->ntools >= OAI_MAX_TOOL_CALLS)
        return NULL;
    if (s->ntools == s->tools_cap) {
        s->tools_cap = s->tools_cap ? s->tools_cap * 2 : 4;
        s->tools = xrealloc(s->tools, s->tools_cap * sizeof(*s->tools));
    }
    size_t pos = s->ntools;
    while (pos > 0 && s->tools[pos - 1].index > index)
        pos--;
    memmove(&s->tools[pos + 1], &s->tools[pos], (s->ntools - pos) * sizeof(*s->tools));
    s->ntools++;
    struct oai_tool *t = &s->tools[pos];
    t->index = index;
    t->src_index = src;
    t->seq = s->next_seq++;
    buf_init(&t->id, LIMIT_MESSAGE_CONTENT);
    buf_init(&t->name, LIMIT_MESSAGE_CONTENT);
    buf_init(&t->args, LIMIT_MESSAGE_CONTENT);
    return t;
}

/* Drop the calls created since first_seq (a rejected chunk). */
static void oai_tool_rollback(struct oai_stream *s, unsigned first_seq)
{
    size_t w = 0;
    for (size_t r = 0; r < s->ntools; r++) {
        if (s->tools[r].seq >= first_seq)
            oai_tool_cleanup(&s->tools[r]);
        else
            s->tools[w++] = s->tools[r];
    }
    s->ntools = w;
    s->next_seq = first_seq;
}

/* Which call a delta belongs to. src is the provider's index or -1. With an
 * index: the call with that index, unless it already has a different id (some
 * OpenAI-compatible servers reuse index 0 for parallel calls), in which case
 * a new call. Without one: the call with that id, else a new call; with
 * neither, the latest call. */
static struct oai_tool *oai_tool_resolve(struct oai_stream *s, int src, const char *id)
{
    bool has_id = id && *id;
    struct oai_tool *t;
    if (src >= 0) {
        t = oai_tool_by_src(s, src);
        if (t && !(has_id && t->id.len && strcmp(buf_str(&t->id), id) != 0))
            return t;
        int index = (!t && !oai_index_taken(s, src)) ? src : oai_next_index(s);
        return oai_tool_add(s, index, src);
    }
    if (has_id) {
        t = oai_tool_by_id(s, id);
        return t ? t : oai_tool_add(s, oai_next_index(s), -1);
    }
    t = oai_tool_latest(s);
    return t ? t : oai_tool_add(s, oai_next_index(s), -1);
}

/* ---- decoding ----------------------------------------------------------- */

static bool oai_is_done(const char *d, size_t n)
{
    while (n > 0 && (d[0] == ' ' || d[0] == '\t' || d[0] == '\r' || d[0] == '\n')) {
        d++;
        n--;
    }
    while (n > 0 && (d[n - 1] == ' ' || d[n - 1] == '\t' || d[n - 1] == '\r' || d[n - 1] == '\n'))
        n--;
    return n == 6 && memcmp(d, "[DONE]", 6) == 0;
}

static const char *oai_str(const json_t *obj, const char *key)
{
    return json_string_value(json_object_get(obj, key));
}

static size_t oai_strlen(const json_t *v)
{
    return json_is_string(v) ? json_string_length(v) : 0;
}

static void oai_fill_error(struct oai_stream *s, const json_t *err, struct oai_update *u)
{
    if (json_is_string(err)) {
        u->error_message = json_string_value(err);
        return;
    }
    if (!json_is_object(err))
        return;
    u->error_message = oai_str(err, "message");
    u->error_type = oai_str(err, "type");
    const json_t *code = json_object_get(err, "code");
    if (json_is_string(code)) {
        u->error_code = json_string_value(code);
    } else if (json_is_integer(code)) {
        snprintf(s->code_buf, sizeof(s->code_buf), "%lld", (long long)json_integer_value(code));
        u->error_code = s->code_buf;
    }
}

/* The choice with index 0 (or, lacking an index, the first element). */
static json_t *oai_choice0(json_t *root)
{
    json_t *choices = json_object_get(root, "choices");
    size_t i;
    json_t *c;
    if (!json_is_array(choices))
        return NULL;
    json_array_foreach(choices, i, c) {
        if (!json_is_object(c))
            continue;
        json_t *ix = json_object_get(c, "index");
        if (json_is_integer(ix) ? json_integer_value(ix) == 0 : i == 0)
            return c;
    }
    return NULL;
}

static void oai_replace_str(char **dst, const char *src)
{
    if (*dst && strcmp(*dst, src) == 0)
        return;
    free(*dst);
    *dst = xstrdup(src);
}

static bool oai_usage(struct oai_stream *s, const json_t *usage, struct oai_update *u)
{
    if (!json_is_object(usage))
        return false;
    const json_t *pt = json_object_get(usage, "prompt_tokens");
    const json_t *ct = json_object_get(usage, "completion_tokens");
    if (!json_is_integer(pt) && !json_is_integer(ct))
        return false;
    u->has_usage = true;
    if (json_is_integer(pt))
        u->prompt_tokens = s->prompt_tokens = json_integer_value(pt);
    if (json_is_integer(ct))
        u->completion_tokens = s->completion_tokens = json_integer_value(ct);
    return true;
}

/* Validate the tool_calls deltas: -1 on a bad index; otherwise adds their
 * byte counts to *add. Object arguments (non-standard) become strings. */
static int oai_check_tools(json_t *tools, size_t *add)
{
    size_t i;
    json_t *tc;
    json_array_foreach(tools, i, tc) {
        if (!json_is_object(tc))
            continue;
        json_t *ix = json_object_get(tc, "index");
        if (json_is_integer(ix) &&
            (json_integer_value(ix) < 0 || json_integer_value(ix) > OAI_MAX_TOOL_INDEX))
            return -1;
        json_t *fn = json_object_get(tc, "function");
        if (!json_is_object(fn))
            fn = NULL;
        json_t *args = fn ? json_object_get(fn, "arguments") : NULL;
        if (json_is_object(args) || json_is_array(args)) {
            char *dumped = json_dumps(args, JSON_COMPACT);
            if (!dumped)
                return -1;
            json_object_set_new(fn, "arguments", json_string(dumped));
            free(dumped);
            args = json_object_get(fn, "arguments");
        }
        *add += oai_strlen(json_object_get(tc, "id"));
        if (fn)
            *add += oai_strlen(json_object_get(fn, "name")) + oai_strlen(args);
    }
    return 0;
}

/* Resolve every delta to a call and record it in s->deltas; ids and names
 * are set here because later deltas of the same chunk may look them up.
 * Returns -1 (after undoing everything) when the call cap is hit. */
static int oai_apply_tools(struct oai_stream *s, json_t *tools, struct oai_update *u)
{
    size_t n = json_array_size(tools);
    unsigned first_seq = s->next_seq;
    if (n > s->deltas_cap) {
        s->deltas_cap = n;
        s->deltas = xrealloc(s->deltas, n * sizeof(*s->deltas));
        s->dnotes = xrealloc(s->dnotes, n * sizeof(*s->dnotes));
    }
    size_t nd = 0;
    size_t i;
    json_t *tc;
    json_array_foreach(tools, i, tc) {
        if (!json_is_object(tc))
            continue;
        json_t *ix = json_object_get(tc, "index");
        json_t *fn = json_object_get(tc, "function");
        const char *id = oai_str(tc, "id");
        const char *name = json_is_object(fn) ? oai_str(fn, "name") : NULL;
        json_t *args = json_is_object(fn) ? json_object_get(fn, "arguments") : NULL;
        int src = json_is_integer(ix) ? (int)json_integer_value(ix) : -1;

        struct oai_tool *t = oai_tool_resolve(s, src, id);
        if (!t) {
            for (size_t k = 0; k < nd; k++) {
                struct oai_tool *old = oai_tool_by_seq(s, s->dnotes[k].seq);
                if (old && s->dnotes[k].set_id)
                    buf_reset(&old->id);
                if (old && s->dnotes[k].set_name)
                    buf_reset(&old->name);
            }
            oai_tool_rollback(s, first_seq);
            return -1;
        }
        struct oai_dnote *dn = &s->dnotes[nd];
        struct oai_tool_delta *d = &s->deltas[nd];
        dn->seq = t->seq;
        dn->set_id = dn->set_name = false;
        if (id && *id && t->id.len == 0) {
            if (buf_append_str(&t->id, id) == 0)
                dn->set_id = true;
        }
        if (name && *name && t->name.len == 0) {
            if (buf_append_str(&t->name, name) == 0)
                dn->set_name = true;
        }
        d->index = t->index;
        d->id = id;
        d->name = name;
        d->arguments = json_is_string(args) ? json_string_value(args) : NULL;
        d->arguments_len = oai_strlen(args);
        nd++;
    }
    /* Arguments last: nothing can fail any more. */
    for (size_t k = 0; k < nd; k++) {
        struct oai_tool *t = oai_tool_by_seq(s, s->dnotes[k].seq);
        if (s->dnotes[k].set_id)
            s->total += t->id.len;
        if (s->dnotes[k].set_name)
            s->total += t->name.len;
        if (s->deltas[k].arguments_len > 0 &&
            buf_append(&t->args, s->deltas[k].arguments, s->deltas[k].arguments_len) == 0)
            s->total += s->deltas[k].arguments_len;
    }
    u->tool_calls = nd ? s->deltas : NULL;
    u->tool_call_count = nd;
    return 0;
}

enum oai_feed oai_stream_feed(struct oai_stream *s, const char *data, size_t len,
                              struct oai_update *u)
{
    memset(u, 0, sizeof(*u));
    u->prompt_tokens = -1;
    u->completion_tokens = -1;
    json_decref(s->cur);
    s->cur = NULL;

    if (len > LIMIT_UPSTREAM_SSE_LINE)
        return OAI_FEED_BAD;
    if (oai_is_done(data, len)) {
        s->done = true;
        return OAI_FEED_DONE;
    }
    json_error_t jerr;
    /* A \u0000 in model text is kept (lengths are carried everywhere). */
    json_t *root = len ? json_loadb(data, len, JSON_ALLOW_NUL, &jerr) : NULL;
    if (!root)
        return OAI_FEED_BAD;
    if (!json_is_object(root)) {
        json_decref(root);
        return OAI_FEED_BAD;
    }
    s->cur = root;

    json_t *err = json_object_get(root, "error");
    if (err && !json_is_null(err)) {
        oai_fill_error(s, err, u);
        return OAI_FEED_ERROR;
    }

    json_t *choice = oai_choice0(root);
    json_t *delta = choice ? json_object_get(choice, "delta") : NULL;
    if (!json_is_object(delta))
        delta = NULL;
    json_t *content = delta ? json_object_get(delta, "content") : NULL;
    json_t *refusal = delta ? json_object_get(delta, "refusal") : NULL;
    json_t *tools = delta ? json_object_get(delta, "tool_calls") : NULL;
    if (!json_is_array(tools))
        tools = NULL;

    /* Everything this chunk could add must fit before anything is kept. */
    size_t add = oai_strlen(content) + oai_strlen(refusal);
    if (tools && oai_check_tools(tools, &add) != 0)
        return OAI_FEED_BAD;
    if (add > LIMIT_MESSAGE_CONTENT - s->total)
        return OAI_FEED_BAD;
    if (tools && oai_apply_tools(s, tools, u) != 0)
        return OAI_FEED_BAD;

    size_t n = oai_strlen(content);
    if (n > 0 && buf_append(&s->content, json_string_value(content), n) == 0) {
        s->total += n;
        u->content = json_string_value(content);
        u->content_len = n;
    }
    n = oai_strlen(refusal);
    if (n > 0 && buf_append(&s->refusal, json_string_value(refusal), n) == 0) {
        s->total += n;
        u->refusal = json_string_value(refusal);
        u->refusal_len = n;
    }

    const char *finish = choice ? oai_str(choice, "finish_reason") : NULL;
    if (finish) {
        oai_replace_str(&s->finish_reason, finish);
        u->finish_reason = finish;
    }
    /* Usage normally rides on a choices:[] chunk; some servers put it on a
     * chunk with choices, or inside the choice. */
    if (!oai_usage(s, json_object_get(root, "usage"), u) && choice)
        oai_usage(s, json_object_get(choice, "usage"), u);

    const char *model = oai_str(root, "model");
    if (model && *model && strlen(model) <= LIMIT_MODEL_NAME)
        oai_replace_str(&s->model, model);
    return OAI_FEED_OK;
}

/* ---- accumulated state -------------------------------------------------- */

const char *oai_stream_content(const struct oai_stream *s, size_t *len)
{
    if (len)
        *len = s->content.len;
    return buf_str(&s->content);
}

const char *oai_stream_refusal(const struct oai_stream *s, size_t *len)
{
    if (len)
        *len = s->refusal.len;
    return buf_str(&s->refusal);
}

size_t oai_stream_tool_count(const struct oai_stream *s)
{
    return s->ntools;
}

int oai_stream_tool_index(const struct oai_stream *s, size_t i)
{
    return i < s->ntools ? s->tools[i].index : -1;
}

const char *oai_stream_tool_id(const struct oai_stream *s, size_t i)
{
    return i < s->ntools ? buf_str(&s->tools[i].id) : NULL;
}

const char *oai_stream_tool_name(const struct oai_stream *s, size_t i)
{
    return i < s->ntools ? buf_str(&s->tools[i].name) : NULL;
}

const char *oai_stream_tool_arguments(const struct oai_stream *s, size_t i, size_t *len)
{
    if (i >= s->ntools) {
        if (len)
            *len = 0;
        return NULL;
    }
    if (len)
        *len = s->tools[i].args.len;
    return buf_str(&s->tools[i].args);
}

const char *oai_stream_finish_reason(const struct oai_stream *s)
{
    return s->finish_reason;
}

void oai_stream_usage(const struct oai_stream *s, int64_t *prompt_tokens,
                      int64_t *completion_tokens)
{
    if (prompt_tokens)
        *prompt_tokens = s->prompt_tokens;
    if (completion_tokens)
        *completion_tokens = s->completion_tokens;
}

const char *oai_stream_model(const struct oai_stream *s)
{
    return s->model;
}

bool oai_stream_done(const struct oai_stream *s)
{
    return s->done;
}

/* The accumulated strings came out of jansson, so they are valid UTF-8 and
 * json_stringn cannot fail; "" is a fallback that never triggers. */
static json_t *oai_jstr(const struct buf *b)
{
    json_t *v = json_stringn(buf_str(b), b->len);
    return v ? v : json_string("");
}

json_t *oai_stream_parts_json(const struct oai_stream *s)
{
    json_t *parts = json_array();
    if (s->content.len) {
        json_t *p = json_object();
        json_object_set_new(p, "type", json_string("text"));
        json_object_set_new(p, "text", oai_jstr(&s->content));
        json_array_append_new(parts, p);
    }
    if (s->refusal.len) {
        json_t *p = json_object();
        json_object_set_new(p, "type", json_string("refusal"));
        json_object_set_new(p, "text", oai_jstr(&s->refusal));
        json_array_append_new(parts, p);
    }
    for (size_t i = 0; i < s->ntools; i++) {
        const struct oai_tool *t = &s->tools[i];
        json_t *p = json_object();
        json_object_set_new(p, "type", json_string("tool_call"));
        json_object_set_new(p, "id", oai_jstr(&t->id));
        json_object_set_new(p, "name", oai_jstr(&t->name));
        json_object_set_new(p, "arguments", oai_jstr(&t->args));
        json_array_append_new(parts, p);
    }
    return parts;
}
