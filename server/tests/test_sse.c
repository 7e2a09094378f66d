/* test_sse.c - unit tests of the SSE parser (llm/sse_parse) and the chat
 * completions stream decoder (llm/openai_stream), driven by real recorded
 * OpenAI traffic read at run time from $COAI_FIXTURES_DIR (default
 * ../shared/fixtures); a missing fixture directory is a failure, not a skip.
 * Every fixture is parsed whole, byte by byte, split at every byte boundary
 * and split at random, and checked against an independent jansson decoding.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <jansson.h>

#include "lib/buf.h"
#include "lib/common.h"
#include "lib/caps.h"
#include "llm/openai_stream.h"
#include "llm/sse_parse.h"

/* Every fixture is split at every byte. The decoder is a pure function of
 * the sequence of events, so what a split must preserve is that sequence:
 * it is compared event by event over the whole body for fixtures up to
 * SEQ_SPLIT_MAX bytes, and in windows around the split for larger ones (see
 * window_splits). Fixtures up to FULL_SPLIT_MAX bytes are in addition run
 * through the whole pipeline at every split, comparing the decoded results;
 * every fixture gets whole-pipeline random multi-way splits. (Whole-pipeline
 * runs at every byte of every fixture take minutes under ASan.) */
#define SEQ_SPLIT_MAX (16 * 1024)
#define FULL_SPLIT_MAX (2 * 1024)

#define CHECK(cond, ...)                                   \
    do {                                                   \
        if (!(cond)) {                                     \
            print_error("CHECK failed: %s\n  ", #cond);    \
            print_error(__VA_ARGS__);                      \
            print_error("\n");                             \
            fail();                                        \
        }                                                  \
    } while (0)

/* ---- fixture files ------------------------------------------------------ */

static const char *fixtures_dir(void)
{
    const char *d = getenv("COAI_FIXTURES_DIR");
    return d && *d ? d : "../shared/fixtures";
}

static char *slurp(const char *path, size_t *len)
{
    FILE *f = fopen(path, "rb");
    if (!f)
        return NULL;
    struct buf b;
    buf_init(&b, 64 * 1024 * 1024);
    char tmp[65536];
    size_t n;
    while ((n = fread(tmp, 1, sizeof(tmp), f)) > 0) {
        if (buf_append(&b, tmp, n) != 0) {
            fclose(f);
            buf_cleanup(&b);
            return NULL;
        }
    }
    fclose(f);
    return buf_take(&b, len);
}

/* Reads dir/rel or fails the test loudly. */
static char *must_read(const char *rel, size_t *len)
{
    char *path = xasprintf("%s/%s", fixtures_dir(), rel);
    char *body = slurp(path, len);
    if (!body)
        print_error("cannot read fixture %s (set COAI_FIXTURES_DIR)\n", path);
    free(path);
    if (!body)
        fail();
    return body;
}

struct fixture {
    char *rel;   /* path relative to the fixtures directory */
    bool jsonl;  /* one payload per line, to be wrapped as SSE */
};

/* The SSE body of a fixture: raw, or built from the JSON lines. */
static char *fixture_body(const struct fixture *f, size_t *len)
{
    size_t rawlen;
    char *raw = must_read(f->rel, &rawlen);
    if (!f->jsonl) {
        *len = rawlen;
        return raw;
    }
    struct buf b;
    buf_init(&b, 64 * 1024 * 1024);
    const char *p = raw, *end = raw + rawlen;
    while (p < end) {
        const char *nl = memchr(p, '\n', (size_t)(end - p));
        size_t n = nl ? (size_t)(nl - p) : (size_t)(end - p);
        if (n > 0) {
            assert_int_equal(buf_append_str(&b, "data: "), 0);
            assert_int_equal(buf_append(&b, p, n), 0);
            assert_int_equal(buf_append_str(&b, "\n\n"), 0);
        }
        p += n + 1;
    }
    assert_int_equal(buf_append_str(&b, "data: [DONE]\n\n"), 0);
    free(raw);
    return buf_take(&b, len);
}

/* ---- event collector for the edge-case tests ---------------------------- */

struct ev {
    char *event;
    char *data;
    size_t len;
    char *id;
};

struct collect {
    struct ev evs[16];
    size_t n;
    int ret; /* what the callback returns */
};

static int collect_cb(void *arg, const char *event, const char *data, size_t len, const char *id)
{
    struct collect *c = arg;
    assert_non_null(event);
    assert_int_equal(data[len], '\0');
    if (c->n < COAI_ARRAY_LEN(c->evs)) {
        struct ev *e = &c->evs[c->n];
        e->event = xstrdup(event);
        e->data = xstrndup(data, len);
        e->len = len;
        e->id = xstrdup(id);
    }
    c->n++;
    return c->ret;
}

static void collect_free(struct collect *c)
{
    for (size_t i = 0; i < c->n && i < COAI_ARRAY_LEN(c->evs); i++) {
        free(c->evs[i].event);
        free(c->evs[i].data);
        free(c->evs[i].id);
    }
    memset(c, 0, sizeof(*c));
}

static void feed_str(struct sse_parser *p, const char *s)
{
    assert_int_equal(sse_parser_feed(p, s, strlen(s)), 0);
}

static void assert_ev(const struct collect *c, size_t i, const char *event,
                      const char *data, const char *id)
{
    assert_true(i < c->n);
    assert_string_equal(c->evs[i].event, event);
    assert_int_equal(c->evs[i].len, strlen(data));
    assert_memory_equal(c->evs[i].data, data, strlen(data));
    if (id)
        assert_string_equal(c->evs[i].id, id);
    else
        assert_null(c->evs[i].id);
}

/* ---- the whole pipeline: SSE parser feeding the stream decoder ---------- */

struct rec {
    size_t end;   /* body offset just after the byte that dispatched it */
    char *event;
    char *data;
    size_t len;
};

struct run {
    struct sse_parser *p;
    struct oai_stream *s;
    size_t nevents, ndone, nerror, nbad, nafter_done;
    struct buf dcontent, drefusal; /* concatenated update deltas */
    bool record;
    size_t pos;
    struct rec *recs;
    size_t nrecs, caprecs;
};

static int run_cb(void *arg, const char *event, const char *data, size_t len, const char *id)
{
    struct run *r = arg;
    struct oai_update u;
    r->nevents++;
    if (oai_stream_done(r->s))
        r->nafter_done++;
    switch (oai_stream_feed(r->s, data, len, &u)) {
    case OAI_FEED_OK:
        break;
    case OAI_FEED_DONE:
        r->ndone++;
        break;
    case OAI_FEED_ERROR:
        r->nerror++;
        break;
    case OAI_FEED_BAD:
        r->nbad++;
        break;
    }
    if (u.content && buf_append(&r->dcontent, u.content, u.content_len) != 0)
        fail_msg("delta buffer overflow");
    if (u.refusal && buf_append(&r->drefusal, u.refusal, u.refusal_len) != 0)
        fail_msg("delta buffer overflow");
    if (r->record) {
        if (r->nrecs == r->caprecs) {
            r->caprecs = r->caprecs ? r->caprecs * 2 : 64;
            r->recs = xrealloc(r->recs, r->caprecs * sizeof(*r->recs));
        }
        struct rec *rc = &r->recs[r->nrecs++];
        rc->end = r->pos;
        rc->event = xstrdup(event);
        rc->data = xstrndup(data, len);
        rc->len = len;
    }
    return 0;
}

static void run_init(struct run *r)
{
    memset(r, 0, sizeof(*r));
    r->p = sse_parser_new(LIMIT_UPSTREAM_SSE_LINE, run_cb, r);
    r->s = oai_stream_new();
    buf_init(&r->dcontent, 2 * LIMIT_MESSAGE_CONTENT);
    buf_init(&r->drefusal, 2 * LIMIT_MESSAGE_CONTENT);
}

static void run_free(struct run *r)
{
    sse_parser_free(r->p);
    oai_stream_free(r->s);
    buf_cleanup(&r->dcontent);
    buf_cleanup(&r->drefusal);
    for (size_t i = 0; i < r->nrecs; i++) {
        free(r->recs[i].event);
        free(r->recs[i].data);
    }
    free(r->recs);
}

static void run_feed(struct run *r, const char *b, size_t n)
{
    int rc = sse_parser_feed(r->p, b, n);
    if (rc != 0)
        fail_msg("sse_parser_feed returned %d", rc);
}

static json_t *jstrn(const char *s, size_t n)
{
    json_t *v = json_stringn(s, n);
    if (!v)
        fail_msg("accumulated string is not valid UTF-8");
    return v;
}

/* Everything observable about a finished run, as one canonical string. */
static char *run_result(struct run *r)
{
    json_t *o = json_object();
    size_t n;
    const char *c = oai_stream_content(r->s, &n);
    json_object_set_new(o, "content", jstrn(c, n));
    c = oai_stream_refusal(r->s, &n);
    json_object_set_new(o, "refusal", jstrn(c, n));
    json_t *tools = json_array();
    for (size_t i = 0; i < oai_stream_tool_count(r->s); i++) {
        const char *a = oai_stream_tool_arguments(r->s, i, &n);
        json_array_append_new(tools, json_pack("[i,s,s,o]", oai_stream_tool_index(r->s, i),
                                               oai_stream_tool_id(r->s, i),
                                               oai_stream_tool_name(r->s, i), jstrn(a, n)));
    }
    json_object_set_new(o, "tools", tools);
    const char *fin = oai_stream_finish_reason(r->s);
    json_object_set_new(o, "finish", fin ? json_string(fin) : json_null());
    const char *model = oai_stream_model(r->s);
    json_object_set_new(o, "model", model ? json_string(model) : json_null());
    int64_t pt, ct;
    oai_stream_usage(r->s, &pt, &ct);
    json_object_set_new(o, "usage", json_pack("[I,I]", (json_int_t)pt, (json_int_t)ct));
    json_object_set_new(o, "counts", json_pack("[I,I,I,I,I]", (json_int_t)r->nevents,
                                               (json_int_t)r->ndone, (json_int_t)r->nerror,
                                               (json_int_t)r->nbad, (json_int_t)r->nafter_done));
    size_t cl, rl;
    const char *cc = oai_stream_content(r->s, &cl);
    const char *rr = oai_stream_refusal(r->s, &rl);
    json_object_set_new(o, "deltas_match",
                        json_boolean(r->dcontent.len == cl && r->drefusal.len == rl &&
                                     memcmp(buf_str(&r->dcontent), cc, cl) == 0 &&
                                     memcmp(buf_str(&r->drefusal), rr, rl) == 0));
    json_object_set_new(o, "parts", oai_stream_parts_json(r->s));
    char *out = json_dumps(o, JSON_COMPACT | JSON_SORT_KEYS);
    json_decref(o);
    assert_non_null(out);
    return out;
}

/* ---- independent expectation: plain line split + jansson ---------------- */

struct want {
    struct buf content, refusal;
    json_t *tools;   /* {"<index>": {"id","name","args"}} */
    char *finish;
    int64_t pt, ct;
    size_t npayloads, ndone, nerror;
};

static void want_payload(struct want *x, const char *p, size_t n)
{
    x->npayloads++;
    if (n == 6 && memcmp(p, "[DONE]", 6) == 0) {
        x->ndone++;
        return;
    }
    json_error_t err;
    json_t *j = json_loadb(p, n, 0, &err);
    if (!j)
        fail_msg("fixture payload is not JSON: %s", err.text);
    if (json_object_get(j, "error")) {
        x->nerror++;
        json_decref(j);
        return;
    }
    size_t i;
    json_t *ch;
    json_array_foreach(json_object_get(j, "choices"), i, ch) {
        if (json_integer_value(json_object_get(ch, "index")) != 0)
            continue;
        json_t *d = json_object_get(ch, "delta");
        json_t *v = json_object_get(d, "content");
        if (json_is_string(v))
            assert_int_equal(buf_append(&x->content, json_string_value(v), json_string_length(v)), 0);
        v = json_object_get(d, "refusal");
        if (json_is_string(v))
            assert_int_equal(buf_append(&x->refusal, json_string_value(v), json_string_length(v)), 0);
        size_t k;
        json_t *tc;
        json_array_foreach(json_object_get(d, "tool_calls"), k, tc) {
            char key[32];
            snprintf(key, sizeof(key), "%lld",
                     (long long)json_integer_value(json_object_get(tc, "index")));
            json_t *t = json_object_get(x->tools, key);
            if (!t) {
                t = json_pack("{s:s,s:s,s:s}", "id", "", "name", "", "args", "");
                json_object_set_new(x->tools, key, t);
            }
            const char *id = json_string_value(json_object_get(tc, "id"));
            json_t *fn = json_object_get(tc, "function");
            const char *name = json_string_value(json_object_get(fn, "name"));
            const char *args = json_string_value(json_object_get(fn, "arguments"));
            if (id && *id)
                json_object_set_new(t, "id", json_string(id));
            if (name && *name)
                json_object_set_new(t, "name", json_string(name));
            if (args) {
                char *cat = xasprintf("%s%s", json_string_value(json_object_get(t, "args")), args);
                json_object_set_new(t, "args", json_string(cat));
                free(cat);
            }
        }
        const char *fin = json_string_value(json_object_get(ch, "finish_reason"));
        if (fin) {
            free(x->finish);
            x->finish = xstrdup(fin);
        }
    }
    json_t *u = json_object_get(j, "usage");
    if (json_is_object(u)) {
        x->pt = json_integer_value(json_object_get(u, "prompt_tokens"));
        x->ct = json_integer_value(json_object_get(u, "completion_tokens"));
    }
    json_decref(j);
}

/* The fixtures are LF-only and hold only "data: " lines and blank lines; a
 * data line is an event exactly when a blank line follows it. */
static void want_compute(struct want *x, const char *body, size_t len, const char *name)
{
    memset(x, 0, sizeof(*x));
    buf_init(&x->content, 2 * LIMIT_MESSAGE_CONTENT);
    buf_init(&x->refusal, 2 * LIMIT_MESSAGE_CONTENT);
    x->tools = json_object();
    x->pt = x->ct = -1;
    CHECK(memchr(body, '\r', len) == NULL, "%s: fixture has CR bytes", name);
    const char *p = body, *end = body + len;
    while (p < end) {
        const char *nl = memchr(p, '\n', (size_t)(end - p));
        size_t n = nl ? (size_t)(nl - p) : (size_t)(end - p);
        const char *next = p + n + 1;
        if (n > 0) {
            CHECK(n >= 6 && memcmp(p, "data: ", 6) == 0, "%s: unexpected line '%.40s'", name, p);
            bool dispatched = nl && next < end && *next == '\n';
            if (dispatched)
                want_payload(x, p + 6, n - 6);
        }
        p = next;
    }
}

static void want_free(struct want *x)
{
    buf_cleanup(&x->content);
    buf_cleanup(&x->refusal);
    json_decref(x->tools);
    free(x->finish);
}

static int cmp_index_keys(const void *a, const void *b)
{
    long la = atol(*(const char *const *)a), lb = atol(*(const char *const *)b);
    return (la > lb) - (la < lb);
}

static void want_check(const struct want *x, struct run *r, const char *name)
{
    size_t n;
    const char *c = oai_stream_content(r->s, &n);
    CHECK(n == x->content.len && memcmp(c, x->content.p ? x->content.p : "", n) == 0,
          "%s: content differs (%zu vs %zu bytes)", name, n, x->content.len);
    CHECK(r->dcontent.len == n && memcmp(buf_str(&r->dcontent), c, n) == 0,
          "%s: content deltas do not add up to the content", name);
    c = oai_stream_refusal(r->s, &n);
    CHECK(n == x->refusal.len && memcmp(c, x->refusal.p ? x->refusal.p : "", n) == 0,
          "%s: refusal differs", name);
    CHECK(r->drefusal.len == n, "%s: refusal deltas do not add up", name);

    size_t nt = json_object_size(x->tools);
    CHECK(oai_stream_tool_count(r->s) == nt, "%s: %zu tool calls, expected %zu", name,
          oai_stream_tool_count(r->s), nt);
    const char **keys = xcalloc(nt + 1, sizeof(*keys));
    size_t k = 0;
    const char *key;
    json_t *t;
    json_object_foreach(x->tools, key, t) keys[k++] = key;
    qsort(keys, nt, sizeof(*keys), cmp_index_keys);
    for (size_t i = 0; i < nt; i++) {
        t = json_object_get(x->tools, keys[i]);
        CHECK(oai_stream_tool_index(r->s, i) == atoi(keys[i]), "%s: tool %zu index", name, i);
        assert_string_equal(oai_stream_tool_id(r->s, i), json_string_value(json_object_get(t, "id")));
        assert_string_equal(oai_stream_tool_name(r->s, i), json_string_value(json_object_get(t, "name")));
        assert_string_equal(oai_stream_tool_arguments(r->s, i, NULL),
                            json_string_value(json_object_get(t, "args")));
    }
    free(keys);

    const char *fin = oai_stream_finish_reason(r->s);
    if (x->finish)
        CHECK(fin && strcmp(fin, x->finish) == 0, "%s: finish_reason", name);
    else
        CHECK(fin == NULL, "%s: unexpected finish_reason", name);
    int64_t pt, ct;
    oai_stream_usage(r->s, &pt, &ct);
    CHECK(pt == x->pt && ct == x->ct, "%s: usage %lld/%lld, expected %lld/%lld", name,
          (long long)pt, (long long)ct, (long long)x->pt, (long long)x->ct);
    CHECK(r->nevents == x->npayloads, "%s: %zu events, expected %zu", name, r->nevents,
          x->npayloads);
    CHECK(r->ndone == x->ndone && r->nerror == x->nerror && r->nbad == 0,
          "%s: done %zu error %zu bad %zu", name, r->ndone, r->nerror, r->nbad);
    CHECK(r->nafter_done == 0, "%s: events after [DONE]", name);

    /* The storage parts, built independently. */
    json_t *want = json_array();
    if (x->content.len)
        json_array_append_new(want, json_pack("{s:s,s:s%}", "type", "text", "text",
                                              x->content.p, x->content.len));
    if (x->refusal.len)
        json_array_append_new(want, json_pack("{s:s,s:s%}", "type", "refusal", "text",
                                              x->refusal.p, x->refusal.len));
    for (size_t i = 0; i < oai_stream_tool_count(r->s); i++) {
        char ikey[32];
        snprintf(ikey, sizeof(ikey), "%d", oai_stream_tool_index(r->s, i));
        t = json_object_get(x->tools, ikey);
        json_array_append_new(want, json_pack("{s:s,s:O,s:O,s:O}", "type", "tool_call", "id",
                                              json_object_get(t, "id"), "name",
                                              json_object_get(t, "name"), "arguments",
                                              json_object_get(t, "args")));
    }
    json_t *got = oai_stream_parts_json(r->s);
    CHECK(json_equal(want, got), "%s: parts_json differs", name);
    json_decref(want);
    json_decref(got);
}

/* ---- every-byte split at the SSE layer, in windows ---------------------- */

/* At an event boundary of an LF-only body the parser holds nothing (no
 * partial line, no pending data or event type, no pending CR; the fixtures
 * use no id or retry fields), so a fresh parser started there is in the same
 * state as one that parsed everything before. For a split at k we therefore
 * parse from the boundary before k-1 to the second boundary after k, in two
 * feeds split at k, and require exactly the reference events of that range.
 * The events outside the window are the reference ones by construction, so
 * the whole event sequence - and with it everything the deterministic decoder
 * accumulates - is identical to the reference for every k. */
struct window {
    const struct rec *recs;
    size_t next, limit;
    bool bad;
};

static int window_cb(void *arg, const char *event, const char *data, size_t len, const char *id)
{
    struct window *w = arg;
    COAI_UNUSED(id);
    if (w->next >= w->limit) {
        w->bad = true;
        return 0;
    }
    const struct rec *rc = &w->recs[w->next++];
    if (rc->len != len || memcmp(rc->data, data, len) != 0 || strcmp(rc->event, event) != 0)
        w->bad = true;
    return 0;
}

static void window_splits(const char *name, const char *body, size_t len, const struct run *ref)
{
    size_t nb = ref->nrecs + 1;
    size_t *b = xmalloc(nb * sizeof(*b));
    b[0] = 0;
    for (size_t i = 0; i < ref->nrecs; i++)
        b[i + 1] = ref->recs[i].end;
    size_t lo = 0;
    for (size_t k = 1; k < len; k++) {
        while (lo + 1 < nb && b[lo + 1] <= k - 1)
            lo++;
        size_t hi = lo + 1;
        while (hi < nb && b[hi] <= k)
            hi++;
        /* b[hi] is the first boundary after k; stop at the one after it. */
        size_t ei = hi + 1 < nb ? hi + 1 : nb;
        size_t e = ei < nb ? b[ei] : len;
        struct window w = { ref->recs, lo, ei < nb ? ei : ref->nrecs, false };
        struct sse_parser *p = sse_parser_new(LIMIT_UPSTREAM_SSE_LINE, window_cb, &w);
        int r1 = sse_parser_feed(p, body + b[lo], k - b[lo]);
        int r2 = sse_parser_feed(p, body + k, e - k);
        sse_parser_free(p);
        CHECK(r1 == 0 && r2 == 0 && !w.bad && w.next == w.limit,
              "%s: SSE split at %zu (window %zu..%zu) gave different events", name, k, b[lo], e);
    }
    free(b);
}

struct recs {
    struct rec *recs;
    size_t n;
};

static void recs_free(struct recs *r)
{
    for (size_t i = 0; i < r->n; i++) {
        free(r->recs[i].event);
        free(r->recs[i].data);
    }
    free(r->recs);
}

/* Split the whole body at every k into two feeds; the events must be the
 * reference ones, in order, and all of them. */
static void seq_splits(const char *name, const char *body, size_t len, const struct run *ref)
{
    for (size_t k = 1; k < len; k++) {
        struct window w = { ref->recs, 0, ref->nrecs, false };
        struct sse_parser *p = sse_parser_new(LIMIT_UPSTREAM_SSE_LINE, window_cb, &w);
        int r1 = sse_parser_feed(p, body, k);
        int r2 = sse_parser_feed(p, body + k, len - k);
        sse_parser_free(p);
        CHECK(r1 == 0 && r2 == 0 && !w.bad && w.next == w.limit,
              "%s: SSE split at %zu gave different events", name, k);
    }
}

/* ---- per-fixture test --------------------------------------------------- */

static uint64_t rng_next(uint64_t *s)
{
    *s ^= *s << 13;
    *s ^= *s >> 7;
    *s ^= *s << 17;
    return *s;
}

/* ---- the fast decoder against jansson's -------------------------------- */

/* Both decoders see the same payloads and must report and keep the same. */
struct dual {
    struct oai_stream *fast, *slow;
};

static void dual_init(struct dual *d)
{
    d->fast = oai_stream_new();
    d->slow = oai_stream_new();
    oai_stream_set_fast_path(d->slow, false);
}

static void dual_free(struct dual *d)
{
    oai_stream_free(d->fast);
    oai_stream_free(d->slow);
}

static bool same_str(const char *a, const char *b)
{
    return (!a && !b) || (a && b && strcmp(a, b) == 0);
}

static bool same_bytes(const char *a, size_t an, const char *b, size_t bn)
{
    return an == bn && (an == 0 || (a && b && memcmp(a, b, an) == 0));
}

static char *parts_text(const struct oai_stream *s)
{
    json_t *p = oai_stream_parts_json(s);
    char *t = json_dumps(p, JSON_COMPACT);
    json_decref(p);
    return t;
}

/* Feed one payload to both; fails the test on any difference. Returns
 * whether the fast path decoded it. */
static bool dual_feed(struct dual *d, const char *data, size_t len, const char *what)
{
    struct oai_update uf, us;
    unsigned long hits = oai_stream_fast_hits(d->fast);
    enum oai_feed rf = oai_stream_feed(d->fast, data, len, &uf);
    enum oai_feed rs = oai_stream_feed(d->slow, data, len, &us);
    bool fast = oai_stream_fast_hits(d->fast) != hits;
    CHECK(rf == rs, "%s: result %d (fast path %d) vs %d for %.*s", what, rf, fast, rs, (int)len, data);
    CHECK(same_bytes(uf.content, uf.content_len, us.content, us.content_len), "%s: content delta of %.*s",
          what, (int)len, data);
    CHECK(same_bytes(uf.refusal, uf.refusal_len, us.refusal, us.refusal_len), "%s: refusal delta of %.*s",
          what, (int)len, data);
    CHECK(uf.tool_call_count == us.tool_call_count, "%s: tool deltas", what);
    for (size_t i = 0; i < uf.tool_call_count; i++)
        CHECK(uf.tool_calls[i].index == us.tool_calls[i].index &&
                  same_str(uf.tool_calls[i].id, us.tool_calls[i].id) &&
                  same_str(uf.tool_calls[i].name, us.tool_calls[i].name) &&
                  same_bytes(uf.tool_calls[i].arguments, uf.tool_calls[i].arguments_len,
                             us.tool_calls[i].arguments, us.tool_calls[i].arguments_len),
              "%s: tool delta %zu", what, i);
    CHECK(same_str(uf.finish_reason, us.finish_reason), "%s: finish_reason of %.*s", what, (int)len, data);
    CHECK(uf.has_usage == us.has_usage && uf.prompt_tokens == us.prompt_tokens &&
              uf.completion_tokens == us.completion_tokens,
          "%s: usage of %.*s", what, (int)len, data);
    CHECK(same_str(uf.error_message, us.error_message) && same_str(uf.error_type, us.error_type) &&
              same_str(uf.error_code, us.error_code),
          "%s: error fields", what);
    /* and what both keep */
    size_t fl, sl;
    const char *fc = oai_stream_content(d->fast, &fl), *sc = oai_stream_content(d->slow, &sl);
    CHECK(same_bytes(fc, fl, sc, sl), "%s: accumulated content", what);
    fc = oai_stream_refusal(d->fast, &fl);
    sc = oai_stream_refusal(d->slow, &sl);
    CHECK(same_bytes(fc, fl, sc, sl), "%s: accumulated refusal", what);
    CHECK(same_str(oai_stream_finish_reason(d->fast), oai_stream_finish_reason(d->slow)),
          "%s: finish_reason kept", what);
    CHECK(same_str(oai_stream_model(d->fast), oai_stream_model(d->slow)), "%s: model kept", what);
    int64_t a, b, c, e;
    oai_stream_usage(d->fast, &a, &b);
    oai_stream_usage(d->slow, &c, &e);
    CHECK(a == c && b == e, "%s: usage kept", what);
    CHECK(oai_stream_done(d->fast) == oai_stream_done(d->slow), "%s: done", what);
    char *pf = parts_text(d->fast), *ps = parts_text(d->slow);
    CHECK(strcmp(pf, ps) == 0, "%s: parts %s vs %s", what, pf, ps);
    free(pf);
    free(ps);
    return fast;
}

/* Mutations of a payload: a byte replaced by one JSON cares about, deleted,
 * doubled, or the payload cut short. */
static size_t mutate(const char *in, size_t n, char *out, uint64_t *seed)
{
    static const char pick[] = "\"\\{}[],:0123456789eE.-+ntfu \t\x01\x7f\xc3\xa9\xed\xa0\x80\xf0\x9d/";
    memcpy(out, in, n);
    if (n == 0)
        return 0;
    size_t at = (size_t)(rng_next(seed) % n);
    switch (rng_next(seed) % 4) {
    case 0:
        out[at] = pick[rng_next(seed) % (sizeof pick - 1)];
        return n;
    case 1:
        memmove(out + at, out + at + 1, n - at - 1);
        return n - 1;
    case 2:
        memmove(out + at + 1, out + at, n - at);
        return n + 1;
    default:
        return at;
    }
}

/* Every payload of a fixture through both decoders, in order, then
 * mutations of each (on streams that have seen the payloads before it). */
static void fast_vs_jansson(const char *name, const struct recs *rs)
{
    struct dual d;
    dual_init(&d);
    for (size_t i = 0; i < rs->n; i++)
        dual_feed(&d, rs->recs[i].data, rs->recs[i].len, name);
    dual_free(&d);

    uint64_t seed = 0xC0FFEE;
    for (const char *c = name; *c; c++)
        seed = (seed ^ (unsigned char)*c) * 0x100000001B3ULL;
    size_t np = rs->n < 40 ? rs->n : 40;
    for (size_t i = 0; i < np; i++) {
        const char *p = rs->recs[i].data;
        size_t n = rs->recs[i].len;
        char *m = xmalloc(n + 2);
        for (int k = 0; k < 25; k++) {
            size_t mn = mutate(p, n, m, &seed);
            dual_init(&d);
            if (i > 0)
                dual_feed(&d, rs->recs[0].data, rs->recs[0].len, name);
            dual_feed(&d, m, mn, name);
            dual_free(&d);
        }
        free(m);
    }
}

/* Hand-made chunks: each decoded alike by both paths; fast[i] says whether
 * the fast path must take it (the common shapes must not fall back). */
static void test_oai_fast_path(void **state)
{
    COAI_UNUSED(state);
#define HEAD "{\"id\":\"chatcmpl-x\",\"object\":\"chat.completion.chunk\",\"created\":1727346168,\"model\":\"gpt-4o\",\"system_fingerprint\":\"fp_1\",\"choices\":"
    static const struct {
        const char *json;
        int fast; /* 1: must be decoded by the fast path, 0: must not, -1: either */
    } cases[] = {
        /* the shapes OpenAI sends */
        {HEAD "[{\"index\":0,\"delta\":{\"role\":\"assistant\",\"content\":\"\",\"refusal\":null},\"logprobs\":null,\"finish_reason\":null}]}", 1},
        {HEAD "[{\"index\":0,\"delta\":{\"content\":\"Hello\"},\"logprobs\":null,\"finish_reason\":null}]}", 1},
        {HEAD "[{\"index\":0,\"delta\":{\"content\":\" \\\"q\\\" a\\\\b\\t\\n\\r\\b\\f\\/ caf\xc3\xa9 \xe2\x88\x91 \xf0\x9d\x84\x9e\"},\"logprobs\":null,\"finish_reason\":null}]}", 1},
        {HEAD "[{\"index\":0,\"delta\":{\"content\":\"\\u00e9\\u20ac\\ud834\\udd1e\\u0041\\u001f\"},\"finish_reason\":null}]}", 1},
        {HEAD "[{\"index\":0,\"delta\":{},\"logprobs\":null,\"finish_reason\":\"stop\"}]}", 1},
        {HEAD "[{\"index\":0,\"delta\":{},\"logprobs\":null,\"finish_reason\":\"length\"}]}", 1},
        {HEAD "[],\"usage\":{\"prompt_tokens\":14,\"completion_tokens\":500,\"total_tokens\":514,\"completion_tokens_details\":{\"reasoning_tokens\":0,\"x\":[1,2.5,-3,true,false,null]}}}", 1},
        {HEAD "[{\"index\":0,\"delta\":{\"refusal\":\"I'm sorry\"},\"finish_reason\":null}]}", 1},
        {HEAD "[{\"index\":0,\"delta\":{\"content\":null,\"refusal\":\"no \\\"way\\\"\"},\"finish_reason\":null}]}", 1},
        {HEAD "[{\"index\":0,\"delta\":{\"content\":\"x\",\"tool_calls\":[]},\"finish_reason\":null}]}", 1},
        {HEAD "[{\"index\":0,\"delta\":{\"content\":\"u\"},\"finish_reason\":null,\"usage\":{\"prompt_tokens\":3}}]}", 1},
        {HEAD "[{\"index\":0,\"delta\":{\"content\":\"u\"},\"finish_reason\":null}],\"usage\":null}", 1},
        {HEAD "[{\"index\":0,\"delta\":{\"content\":\"u\"}}],\"usage\":{\"prompt_tokens\":1.5,\"completion_tokens\":-0}}", 1},
        {HEAD "[{\"index\":0,\"delta\":{\"content\":\"u\"}}],\"usage\":{\"total_tokens\":4}}", 1},
        {"{\"choices\":[{\"delta\":{\"content\":\"no index\"}}]}", 1},
        {"{\"choices\":[{\"index\":null,\"delta\":{\"content\":\"null index\"}}]}", 1},
        {"{\"choices\":[{\"index\":0.0,\"delta\":{\"content\":\"real index\"}}]}", 1},
        {" \t\r\n{ \"choices\" : [ { \"index\" : 0 , \"delta\" : { \"content\" : \"ws\" } } ] , \"model\" : \"m\" } \n", 1},
        {"{\"choices\":[{\"index\":0,\"delta\":\"not an object\",\"finish_reason\":7}]}", 1},
        {"{\"choices\":{\"index\":0},\"model\":5}", 1},
        {"{\"prompt_filter_results\":[{\"prompt_index\":0,\"content_filter_results\":{}}],\"choices\":[]}", 1},
        {"{\"error\":null,\"choices\":[{\"index\":0,\"delta\":{\"content\":\"e\"}}]}", 1},
        {"{\"choices\":[{\"index\":0,\"delta\":{\"content\":\"\"},\"finish_reason\":\"\"}],\"model\":\"\"}", 1},
        {"{}", 1},
        /* left to jansson */
        {HEAD "[{\"index\":0,\"delta\":{\"tool_calls\":[{\"index\":0,\"id\":\"call_1\",\"type\":\"function\",\"function\":{\"name\":\"f\",\"arguments\":\"\"}}]},\"finish_reason\":null}]}", 0},
        {HEAD "[{\"index\":0,\"delta\":{\"tool_calls\":[{\"index\":0,\"function\":{\"arguments\":\"{\\\"a\\\":1}\"}}]},\"finish_reason\":null}]}", 0},
        {"{\"error\":{\"message\":\"overloaded\",\"type\":\"server_error\",\"code\":529}}", 0},
        {"{\"error\":\"plain\"}", 0},
        {"{\"choices\":[{\"index\":1,\"delta\":{\"content\":\"second\"}},{\"index\":0,\"delta\":{\"content\":\"first\"}}]}", 0},
        {"{\"choices\":[{\"index\":1,\"delta\":{\"content\":\"only 1\"}}]}", 0},
        {"{\"choices\":[{\"index\":0,\"delta\":{\"content\":\"a\",\"content\":\"b\"}}]}", 0},
        {"{\"choices\":[],\"choices\":[{\"index\":0,\"delta\":{\"content\":\"dup\"}}]}", 0},
        {"{\"choices\":[{\"index\":0,\"delta\":{\"content\":\"nul\\u0000here\"}}]}", 0},
        {"{\"choices\":[{\"index\":0,\"delta\":{\"content\":\"x\"}}],\"created\":1e3}", 0},
        {"{\"choices\":[{\"index\":0,\"delta\":{\"content\":\"x\"}}],\"created\":12345678901234567890123}", 0},
        {"{\"choices\":[{\"index\":0,\"delta\":{\"content\":\"x\"}}],\"usage\":{\"prompt_tokens\":99999999999999999999}}", 0},
        {"{\"a\":[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[1]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]}", 0},
        {"{\"choices\":[{\"index\":0,\"delta\":{\"content\":\"lone \\ud800 high\"}}]}", 0},
        {"{\"choices\":[{\"index\":0,\"delta\":{\"content\":\"lone \\udc00 low\"}}]}", 0},
        {"{\"choices\":[{\"index\":0,\"delta\":{\"content\":\"bad \xc3\x28 utf8\"}}]}", 0},
        {"{\"choices\":[{\"index\":0,\"delta\":{\"content\":\"overlong \xc0\xaf\"}}]}", 0},
        {"{\"choices\":[{\"index\":0,\"delta\":{\"content\":\"surrogate \xed\xa0\x80\"}}]}", 0},
        {"{\"choices\":[{\"index\":0,\"delta\":{\"content\":\"raw \x01 control\"}}]}", 0},
        {"{\"choices\":[{\"index\":0,\"delta\":{\"content\":\"bad \\x escape\"}}]}", 0},
        {"{\"choices\":[{\"index\":0,\"delta\":{\"content\":\"x\"}}]} trailing", 0},
        {"{\"choices\":[{\"index\":0,\"delta\":{\"content\":\"x\"}}],}", 0},
        {"{\"choices\":[{\"index\":0,\"delta\":{\"content\":\"x\"}}]", 0},
        {"{\"choices\":[{\"index\":0,\"delta\":{\"content\":\"x\"}}],\"n\":01}", 0},
        {"{\"choices\":[{\"index\":0,\"delta\":{\"content\":\"x\"}}],\"n\":nul}", 0},
        {"{\"k\\u0065y\":1}", 0},
        {"[1,2]", 0},
        {"\"str\"", 0},
        {"not json", 0},
        {"{\"choices\":[{\"index\":0,\"delta\":{\"content\":\"cut", 0},
    };
#undef HEAD
    struct dual d;
    dual_init(&d);
    for (size_t i = 0; i < COAI_ARRAY_LEN(cases); i++) {
        char what[32];
        snprintf(what, sizeof what, "case %zu", i);
        bool fast = dual_feed(&d, cases[i].json, strlen(cases[i].json), what);
        if (cases[i].fast >= 0)
            CHECK(fast == (cases[i].fast == 1), "case %zu: fast path %s: %s", i,
                  fast ? "taken" : "not taken", cases[i].json);
        /* and alone, on fresh streams */
        struct dual one;
        dual_init(&one);
        dual_feed(&one, cases[i].json, strlen(cases[i].json), what);
        dual_free(&one);
    }
    dual_free(&d);

    /* Mutations of the hand-made chunks too. */
    uint64_t seed = 42;
    char m[1024];
    for (size_t i = 0; i < COAI_ARRAY_LEN(cases); i++) {
        size_t n = strlen(cases[i].json);
        if (n + 2 > sizeof m)
            continue;
        for (int k = 0; k < 300; k++) {
            size_t mn = mutate(cases[i].json, n, m, &seed);
            dual_init(&d);
            dual_feed(&d, m, mn, "mutation");
            dual_free(&d);
        }
    }

    /* The content cap: the fast path refuses what jansson's refuses. */
    dual_init(&d);
    size_t big = LIMIT_MESSAGE_CONTENT / 3 + 16; /* the third one is over */
    char *chunk = xmalloc(big + 64);
    int k = snprintf(chunk, 64, "{\"choices\":[{\"delta\":{\"content\":\"");
    memset(chunk + k, 'a', big);
    memcpy(chunk + k + big, "\"}}]}", 6);
    for (int i = 0; i < 3; i++)
        CHECK(dual_feed(&d, chunk, strlen(chunk), "cap"), "the big chunk takes the fast path");
    free(chunk);
    dual_free(&d);
}

static void test_fixture(void **state)
{
    const struct fixture *f = *state;
    const char *name = f->rel;
    size_t len;
    char *body = fixture_body(f, &len);
    assert_true(len > 0);

    struct want x;
    want_compute(&x, body, len, name);
    CHECK(x.npayloads > 0 && x.ndone <= 1, "%s: fixture shape", name);

    /* Reference: the whole body in one feed. */
    struct run whole;
    run_init(&whole);
    whole.record = true;
    run_feed(&whole, body, len);
    want_check(&x, &whole, name);
    char *ref = run_result(&whole);
    struct recs whole_recs = { whole.recs, whole.nrecs };
    whole.recs = NULL;
    whole.nrecs = 0;
    run_free(&whole);

    /* One byte at a time, recording where each event was dispatched. */
    struct run one;
    run_init(&one);
    one.record = true;
    for (size_t i = 0; i < len; i++) {
        one.pos = i + 1;
        run_feed(&one, body + i, 1);
    }
    char *res = run_result(&one);
    CHECK(strcmp(res, ref) == 0, "%s: 1-byte feeds differ from one feed", name);
    free(res);

    /* The whole feed dispatched the same events as the byte-wise one. */
    CHECK(whole_recs.n == one.nrecs, "%s: event count", name);
    for (size_t i = 0; i < one.nrecs; i++)
        CHECK(whole_recs.recs[i].len == one.recs[i].len &&
                  memcmp(whole_recs.recs[i].data, one.recs[i].data, one.recs[i].len) == 0 &&
                  strcmp(whole_recs.recs[i].event, one.recs[i].event) == 0,
              "%s: event %zu differs between whole and 1-byte feeds", name, i);
    /* The fast decoder and jansson's read every payload alike. */
    fast_vs_jansson(name, &whole_recs);
    recs_free(&whole_recs);

    /* Every split point, SSE layer: same event sequence. */
    if (len <= SEQ_SPLIT_MAX)
        seq_splits(name, body, len, &one);
    else
        window_splits(name, body, len, &one);

    /* Every split point, whole pipeline (the smaller fixtures). */
    if (len <= FULL_SPLIT_MAX) {
        for (size_t k = 1; k < len; k++) {
            struct run r;
            run_init(&r);
            run_feed(&r, body, k);
            run_feed(&r, body + k, len - k);
            res = run_result(&r);
            run_free(&r);
            CHECK(strcmp(res, ref) == 0, "%s: split at %zu differs", name, k);
            free(res);
        }
    }

    /* Random multi-way splits, fixed seed. */
    static const size_t max_piece[] = { 2, 7, 64, 500, 4096, 70000 };
    uint64_t seed = 0x9E3779B97F4A7C15ULL;
    for (const char *c = name; *c; c++)
        seed = (seed ^ (unsigned char)*c) * 0x100000001B3ULL;
    for (size_t t = 0; t < 12; t++) {
        size_t maxp = max_piece[t % COAI_ARRAY_LEN(max_piece)];
        struct run r;
        run_init(&r);
        for (size_t off = 0; off < len;) {
            size_t n = 1 + (size_t)(rng_next(&seed) % maxp);
            if (n > len - off)
                n = len - off;
            run_feed(&r, body + off, n);
            off += n;
        }
        res = run_result(&r);
        run_free(&r);
        CHECK(strcmp(res, ref) == 0, "%s: random split run %zu differs", name, t);
        free(res);
    }

    free(ref);
    run_free(&one);
    want_free(&x);
    free(body);
}

/* Runs a fixture whole and leaves the run for fact checks. */
static void run_fixture(struct run *r, const char *rel, bool jsonl)
{
    struct fixture f = { (char *)rel, jsonl };
    size_t len;
    char *body = fixture_body(&f, &len);
    run_init(r);
    run_feed(r, body, len);
    free(body);
}

/* ---- known facts about particular fixtures ------------------------------ */

static void test_fact_text_stop(void **state)
{
    COAI_UNUSED(state);
    struct run r;
    run_fixture(&r, "openai-chat-sse/openai-python_text-stop.sse", false);
    int64_t pt, ct;
    oai_stream_usage(r.s, &pt, &ct);
    assert_int_equal(pt, 14);
    assert_int_equal(ct, 30);
    assert_string_equal(oai_stream_finish_reason(r.s), "stop");
    assert_string_equal(oai_stream_model(r.s), "gpt-4o-2024-08-06");
    size_t n;
    const char *c = oai_stream_content(r.s, &n);
    assert_int_equal(n, 159);
    assert_true(strncmp(c, "I'm unable to provide real-time weather updates.", 48) == 0);
    assert_int_equal(oai_stream_tool_count(r.s), 0);
    assert_int_equal(r.ndone, 1);
    assert_true(oai_stream_done(r.s));
    json_t *parts = oai_stream_parts_json(r.s);
    assert_int_equal(json_array_size(parts), 1);
    assert_string_equal(json_string_value(json_object_get(json_array_get(parts, 0), "type")), "text");
    json_decref(parts);
    run_free(&r);
}

static void test_fact_refusal(void **state)
{
    COAI_UNUSED(state);
    struct run r;
    run_fixture(&r, "openai-chat-sse/openai-python_refusal.sse", false);
    size_t n;
    oai_stream_content(r.s, &n);
    assert_int_equal(n, 0);
    assert_string_equal(oai_stream_refusal(r.s, &n), "I'm sorry, I can't assist with that request.");
    json_t *parts = oai_stream_parts_json(r.s);
    assert_int_equal(json_array_size(parts), 1);
    json_t *p0 = json_array_get(parts, 0);
    assert_string_equal(json_string_value(json_object_get(p0, "type")), "refusal");
    assert_string_equal(json_string_value(json_object_get(p0, "text")),
                        "I'm sorry, I can't assist with that request.");
    json_decref(parts);
    run_free(&r);

    run_fixture(&r, "openai-chat-sse/openai-python_refusal-with-logprobs.sse", false);
    oai_stream_content(r.s, &n);
    assert_int_equal(n, 0);
    assert_string_equal(oai_stream_refusal(r.s, NULL), "I'm very sorry, but I can't assist with that.");
    run_free(&r);
}

static void test_fact_parallel_tools(void **state)
{
    COAI_UNUSED(state);
    struct run r;
    run_fixture(&r, "openai-chat-sse/openai-python_tool-calls-parallel-2.sse", false);
    assert_int_equal(oai_stream_tool_count(r.s), 2);
    assert_string_equal(oai_stream_finish_reason(r.s), "tool_calls");
    const char *names[2] = { "GetWeatherArgs", "get_stock_price" };
    for (size_t i = 0; i < 2; i++) {
        assert_int_equal(oai_stream_tool_index(r.s, i), (int)i);
        assert_string_equal(oai_stream_tool_name(r.s, i), names[i]);
        assert_true(strncmp(oai_stream_tool_id(r.s, i), "call_", 5) == 0);
        json_error_t err;
        json_t *args = json_loads(oai_stream_tool_arguments(r.s, i, NULL), 0, &err);
        assert_non_null(args);
        assert_true(json_is_object(args));
        json_decref(args);
    }
    assert_string_not_equal(oai_stream_tool_id(r.s, 0), oai_stream_tool_id(r.s, 1));
    assert_string_equal(oai_stream_tool_arguments(r.s, 1, NULL),
                        "{\"ticker\": \"AAPL\", \"exchange\": \"NASDAQ\"}");
    json_t *parts = oai_stream_parts_json(r.s);
    assert_int_equal(json_array_size(parts), 2);
    assert_string_equal(json_string_value(json_object_get(json_array_get(parts, 1), "type")),
                        "tool_call");
    json_decref(parts);
    run_free(&r);
}

static void test_fact_n3(void **state)
{
    COAI_UNUSED(state);
    struct run r;
    run_fixture(&r, "openai-chat-sse/openai-python_n3-multiple-choices_json.sse", false);
    size_t n;
    const char *c = oai_stream_content(r.s, &n);
    assert_string_equal(c, "{\"city\":\"San Francisco\",\"temperature\":65,\"units\":\"f\"}");
    json_error_t err;
    json_t *j = json_loads(c, 0, &err); /* an interleaved choice would break it */
    assert_non_null(j);
    json_decref(j);
    run_free(&r);

    /* The body really has other choices, and they carry text. */
    size_t len;
    char *body = must_read("openai-chat-sse/openai-python_n3-multiple-choices_json.sse", &len);
    assert_non_null(strstr(body, "\"index\":2,\"delta\":{\"content\""));
    free(body);
}

static void test_fact_index_from_1(void **state)
{
    COAI_UNUSED(state);
    struct run r;
    run_fixture(&r, "openai-chat-sse/vercel-ai_anthropic-fallback-tool-call_openai-compatible.sse", false);
    assert_string_equal(oai_stream_content(r.s, NULL), "Reading it.");
    assert_int_equal(oai_stream_tool_count(r.s), 1);
    assert_int_equal(oai_stream_tool_index(r.s, 0), 1);
    assert_string_equal(oai_stream_tool_id(r.s, 0), "toolu_sanitized");
    assert_string_equal(oai_stream_tool_name(r.s, 0), "read_file");
    assert_string_equal(oai_stream_tool_arguments(r.s, 0, NULL), "{\"path\": \"a.txt\"}");
    assert_string_equal(oai_stream_finish_reason(r.s), "tool_calls");
    int64_t pt, ct;
    oai_stream_usage(r.s, &pt, &ct);
    assert_int_equal(pt, -1);
    assert_int_equal(ct, -1);
    /* The body ends "data: [DONE]\n" without the blank line: per the spec
     * that event is never dispatched. */
    assert_int_equal(r.ndone, 0);
    json_t *parts = oai_stream_parts_json(r.s);
    assert_int_equal(json_array_size(parts), 2);
    json_decref(parts);
    run_free(&r);
}

static void test_fact_other_providers(void **state)
{
    COAI_UNUSED(state);
    struct run r;
    int64_t pt, ct;
    run_fixture(&r, "openai-chat-sse/vercel-ai_xai-tool-call_openai-compatible.chunks.jsonl", true);
    oai_stream_usage(r.s, &pt, &ct);
    assert_int_equal(pt, 307);
    assert_int_equal(ct, 26);
    assert_int_equal(oai_stream_tool_count(r.s), 1);
    assert_string_equal(oai_stream_tool_arguments(r.s, 0, NULL), "{\"location\":\"San Francisco\"}");
    assert_string_equal(oai_stream_model(r.s), "grok-3-mini");
    run_free(&r);

    run_fixture(&r, "openai-chat-sse/vercel-ai_azure-model-router.chunks.jsonl", true);
    assert_string_equal(oai_stream_content(r.s, NULL), "Capital of Denmark.");
    assert_string_equal(oai_stream_model(r.s), "gpt-5-nano-2025-08-07");
    oai_stream_usage(r.s, &pt, &ct);
    assert_int_equal(pt, 15);
    assert_int_equal(ct, 78);
    run_free(&r);

    run_fixture(&r, "openai-cassettes/test_openai__test_openai_moderation_stream.0.response.200.sse", false);
    assert_string_equal(oai_stream_content(r.s, NULL), "Paris.");
    oai_stream_usage(r.s, &pt, &ct); /* the moderation chunk has usage:null */
    assert_int_equal(pt, 13);
    assert_int_equal(ct, 11);
    run_free(&r);

    run_fixture(&r, "openai-chat-sse/openai-python_max-tokens-1_finish-length.sse", false);
    assert_string_equal(oai_stream_finish_reason(r.s), "length");
    run_free(&r);
}

/* ---- SSE edge cases ----------------------------------------------------- */

static void test_sse_line_endings(void **state)
{
    COAI_UNUSED(state);
    struct collect c = { 0 };
    struct sse_parser *p = sse_parser_new(1024, collect_cb, &c);
    feed_str(p, "data: a\r\n\r\ndata: b\r\rdata: c\n\ndata: d\r\ndata: e\r\n\r\n");
    assert_int_equal(c.n, 4);
    assert_ev(&c, 0, "message", "a", NULL);
    assert_ev(&c, 1, "message", "b", NULL);
    assert_ev(&c, 2, "message", "c", NULL);
    assert_ev(&c, 3, "message", "d\ne", NULL);
    sse_parser_free(p);
    collect_free(&c);

    /* CRLF split between feeds counts once: a second line break would end
     * the event early and give two events instead of "x\ny". */
    p = sse_parser_new(1024, collect_cb, &c);
    feed_str(p, "data: x\r");
    feed_str(p, "\ndata: y\r");
    feed_str(p, "\n\r");
    assert_int_equal(c.n, 1);
    feed_str(p, "\n");
    feed_str(p, "\r\n");
    assert_int_equal(c.n, 1);
    assert_ev(&c, 0, "message", "x\ny", NULL);
    /* CR-only stream split right after each CR. */
    feed_str(p, "data: 1\r");
    feed_str(p, "data: 2\r");
    feed_str(p, "\r");
    assert_int_equal(c.n, 2);
    assert_ev(&c, 1, "message", "1\n2", NULL);
    sse_parser_free(p);
    collect_free(&c);

    /* An LF right after a CR-terminated blank line is swallowed only once. */
    p = sse_parser_new(1024, collect_cb, &c);
    feed_str(p, "data: a\r\r\ndata: b\n\n");
    assert_int_equal(c.n, 2);
    assert_ev(&c, 0, "message", "a", NULL);
    assert_ev(&c, 1, "message", "b", NULL);
    sse_parser_free(p);
    collect_free(&c);
}

static void test_sse_comments_and_fields(void **state)
{
    COAI_UNUSED(state);
    struct collect c = { 0 };
    struct sse_parser *p = sse_parser_new(1024, collect_cb, &c);
    feed_str(p, ": ping\n\n:\n\n: keep-alive\n");
    assert_int_equal(c.n, 0);
    feed_str(p, "data: x\n: comment between data lines\ndata: y\n\n");
    feed_str(p, "data:nospace\n\n");
    feed_str(p, "data:  two spaces\n\n");
    feed_str(p, "data\n\n");           /* no colon: data with empty value */
    feed_str(p, "data:\ndata:\n\n");   /* two empty lines: "\n" */
    feed_str(p, "foo: bar\nDATA: no\ndata : no\n\n"); /* no data field: nothing */
    feed_str(p, "data: line1\ndata: line2\ndata: line3\n\n");
    feed_str(p, "data: a:b: c\n\n");   /* only the first colon splits */
    assert_int_equal(c.n, 7);
    assert_ev(&c, 0, "message", "x\ny", NULL);
    assert_ev(&c, 1, "message", "nospace", NULL);
    assert_ev(&c, 2, "message", " two spaces", NULL);
    assert_ev(&c, 3, "message", "", NULL);
    assert_ev(&c, 4, "message", "\n", NULL);
    assert_ev(&c, 5, "message", "line1\nline2\nline3", NULL);
    assert_ev(&c, 6, "message", "a:b: c", NULL);
    sse_parser_free(p);
    collect_free(&c);
}

static void test_sse_event_id_retry(void **state)
{
    COAI_UNUSED(state);
    struct collect c = { 0 };
    struct sse_parser *p = sse_parser_new(1024, collect_cb, &c);
    assert_int_equal(sse_parser_retry(p), -1);
    feed_str(p, "event: response.created\nid: 42\nretry: 1500\ndata: {}\n\n");
    feed_str(p, "data: next\n\n");               /* type resets, id persists */
    feed_str(p, "event: lost\n\ndata: after\n\n"); /* type reset even without data */
    feed_str(p, "id\ndata: z\n\n");               /* empty id resets */
    feed_str(p, "retry: 15x\nevent:\ndata: w\n\n");
    assert_int_equal(sse_parser_feed(p, "id: a\0b\ndata: nul\n\n", 19), 0);
    assert_int_equal(c.n, 6);
    assert_ev(&c, 0, "response.created", "{}", "42");
    assert_ev(&c, 1, "message", "next", "42");
    assert_ev(&c, 2, "message", "after", "42");
    assert_ev(&c, 3, "message", "z", NULL);
    assert_ev(&c, 4, "message", "w", NULL);
    assert_ev(&c, 5, "message", "nul", NULL); /* id with NUL ignored */
    assert_int_equal(sse_parser_retry(p), 1500);
    sse_parser_free(p);
    collect_free(&c);
}

static void test_sse_bom(void **state)
{
    COAI_UNUSED(state);
    struct collect c = { 0 };
    struct sse_parser *p = sse_parser_new(1024, collect_cb, &c);
    feed_str(p, "\xEF\xBB\xBF" "data: x\n\n");
    assert_int_equal(c.n, 1);
    assert_ev(&c, 0, "message", "x", NULL);
    sse_parser_free(p);
    collect_free(&c);

    /* Split over three feeds. */
    p = sse_parser_new(1024, collect_cb, &c);
    feed_str(p, "\xEF");
    feed_str(p, "\xBB");
    feed_str(p, "\xBF" "data: y\n\n");
    assert_int_equal(c.n, 1);
    assert_ev(&c, 0, "message", "y", NULL);
    sse_parser_free(p);
    collect_free(&c);

    /* Only one BOM is skipped; a second one makes the field unknown. */
    p = sse_parser_new(1024, collect_cb, &c);
    feed_str(p, "\xEF\xBB\xBF\xEF\xBB\xBF" "data: z\n\ndata: ok\n\n");
    assert_int_equal(c.n, 1);
    assert_ev(&c, 0, "message", "ok", NULL);
    sse_parser_free(p);
    collect_free(&c);

    /* A partial BOM is not skipped: its bytes stay in the first line. */
    p = sse_parser_new(1024, collect_cb, &c);
    feed_str(p, "\xEF\xBB");
    feed_str(p, "data: no\n\ndata: yes\n\n");
    assert_int_equal(c.n, 1);
    assert_ev(&c, 0, "message", "yes", NULL);
    sse_parser_free(p);
    collect_free(&c);

    /* A BOM in the middle of the stream is data. */
    p = sse_parser_new(1024, collect_cb, &c);
    feed_str(p, "data: a\n\ndata: \xEF\xBB\xBF\n\n");
    assert_int_equal(c.n, 2);
    assert_ev(&c, 1, "message", "\xEF\xBB\xBF", NULL);
    sse_parser_free(p);
    collect_free(&c);
}

static void test_sse_utf8_split(void **state)
{
    COAI_UNUSED(state);
    const char *s = "data: \xD0\x9F\xD1\x80\xD0\xB8\xD0\xB2\xD0\xB5\xD1\x82 \xF0\x9F\x98\x80\n\n";
    size_t n = strlen(s);
    for (size_t k = 1; k < n; k++) {
        struct collect c = { 0 };
        struct sse_parser *p = sse_parser_new(1024, collect_cb, &c);
        assert_int_equal(sse_parser_feed(p, s, k), 0);
        assert_int_equal(sse_parser_feed(p, s + k, n - k), 0);
        assert_int_equal(c.n, 1);
        assert_ev(&c, 0, "message", "\xD0\x9F\xD1\x80\xD0\xB8\xD0\xB2\xD0\xB5\xD1\x82 \xF0\x9F\x98\x80", NULL);
        sse_parser_free(p);
        collect_free(&c);
    }
}

static void test_sse_callback_stop(void **state)
{
    COAI_UNUSED(state);
    struct collect c = { 0 };
    c.ret = 7;
    struct sse_parser *p = sse_parser_new(1024, collect_cb, &c);
    const char *s = "data: a\n\ndata: b\n\n";
    assert_int_equal(sse_parser_feed(p, s, strlen(s)), 7);
    assert_int_equal(c.n, 1);
    c.ret = 0;
    feed_str(p, "data: c\n\n"); /* still usable; "b" was dropped */
    assert_int_equal(c.n, 2);
    assert_ev(&c, 1, "message", "c", NULL);
    assert_int_equal(sse_parser_feed(p, NULL, 0), 0);
    sse_parser_free(p);
    collect_free(&c);
    sse_parser_free(NULL);
}

static void test_sse_caps(void **state)
{
    COAI_UNUSED(state);
    struct collect c = { 0 };
    /* A line of exactly the cap is fine, in one feed or carried over. */
    struct sse_parser *p = sse_parser_new(16, collect_cb, &c);
    feed_str(p, "data: 0123456789\n\n");
    feed_str(p, "data: 01234");
    feed_str(p, "56789\n\n");
    assert_int_equal(c.n, 2);
    /* One byte more fails, and the parser stays failed. */
    assert_int_equal(sse_parser_feed(p, "data: 0123456789A\n\n", 19), -1);
    assert_int_equal(sse_parser_feed(p, "data: x\n\n", 9), -1);
    assert_int_equal(c.n, 2);
    sse_parser_free(p);
    collect_free(&c);

    /* An unterminated line over the cap, built up over feeds. */
    p = sse_parser_new(16, collect_cb, &c);
    feed_str(p, "data: 01234");
    feed_str(p, "56789");
    assert_int_equal(sse_parser_feed(p, "A", 1), -1);
    assert_int_equal(sse_parser_feed(p, "\n\n", 2), -1);
    sse_parser_free(p);
    collect_free(&c);

    /* Joined data over the cap even though every line fits. */
    p = sse_parser_new(16, collect_cb, &c);
    feed_str(p, "data: 01234567\n");
    assert_int_equal(sse_parser_feed(p, "data: 01234567\n", 15), -1);
    assert_int_equal(c.n, 0);
    sse_parser_free(p);
    collect_free(&c);

    /* Comments are lines too. */
    p = sse_parser_new(16, collect_cb, &c);
    assert_int_equal(sse_parser_feed(p, ": 0123456789ABCDEF\n", 19), -1);
    sse_parser_free(p);
    collect_free(&c);
}

/* ---- stream decoder edge cases ------------------------------------------ */

static enum oai_feed feed_json(struct oai_stream *s, const char *payload, struct oai_update *u)
{
    return oai_stream_feed(s, payload, strlen(payload), u);
}

struct err_capture {
    struct oai_stream *s;
    enum oai_feed last;
    char *msg, *type, *code;
};

static int err_cb(void *arg, const char *event, const char *data, size_t len, const char *id)
{
    struct err_capture *e = arg;
    struct oai_update u;
    COAI_UNUSED(event);
    COAI_UNUSED(id);
    e->last = oai_stream_feed(e->s, data, len, &u);
    e->msg = xstrdup(u.error_message);
    e->type = xstrdup(u.error_type);
    e->code = xstrdup(u.error_code);
    return 0;
}

static void err_capture_run(struct err_capture *e, const char *sse)
{
    memset(e, 0, sizeof(*e));
    e->s = oai_stream_new();
    struct sse_parser *p = sse_parser_new(LIMIT_UPSTREAM_SSE_LINE, err_cb, e);
    feed_str(p, sse);
    sse_parser_free(p);
}

static void err_capture_free(struct err_capture *e)
{
    oai_stream_free(e->s);
    free(e->msg);
    free(e->type);
    free(e->code);
}

static void test_oai_error_frames(void **state)
{
    COAI_UNUSED(state);
    size_t len;
    char *raw = must_read("openai-errors/errors-from-github-issues.json", &len);
    json_error_t jerr;
    json_t *all = json_loadb(raw, len, 0, &jerr);
    free(raw);
    assert_non_null(all);
    size_t i;
    json_t *item;
    bool saw_line = false, saw_ctx = false;
    json_array_foreach(all, i, item) {
        const char *line = json_string_value(json_object_get(item, "sse_line_reconstructed"));
        if (line) {
            /* The real in-stream error frame, code null. */
            char *sse = xasprintf("%s\n\n", line);
            struct err_capture e;
            err_capture_run(&e, sse);
            free(sse);
            assert_int_equal(e.last, OAI_FEED_ERROR);
            assert_non_null(e.msg);
            assert_true(strncmp(e.msg, "The server had an error processing your request.", 48) == 0);
            assert_string_equal(e.type, "server_error");
            assert_null(e.code);
            err_capture_free(&e);
            saw_line = true;
        }
        json_t *wire = json_object_get(item, "wire_body");
        if (!wire)
            wire = json_object_get(item, "wire_body_reconstructed");
        const char *code = json_string_value(json_object_get(json_object_get(wire, "error"), "code"));
        if (code && strcmp(code, "context_length_exceeded") == 0) {
            char *frame = json_dumps(wire, JSON_COMPACT);
            char *sse = xasprintf("data: %s\n\n", frame);
            struct err_capture e;
            err_capture_run(&e, sse);
            free(sse);
            free(frame);
            assert_int_equal(e.last, OAI_FEED_ERROR);
            assert_string_equal(e.code, "context_length_exceeded");
            assert_string_equal(e.type, "invalid_request_error");
            assert_true(strncmp(e.msg, "This model's maximum context length is 4097 tokens.", 51) == 0);
            err_capture_free(&e);
            saw_ctx = true;
        }
    }
    json_decref(all);
    assert_true(saw_line);
    assert_true(saw_ctx);

    /* A frame spelled as in the brief, a numeric code, a bare string. */
    struct err_capture e;
    err_capture_run(&e, "data: {\"error\":{\"message\":\"too long\",\"type\":\"invalid_request_error\","
                        "\"code\":\"context_length_exceeded\"}}\n\n");
    assert_int_equal(e.last, OAI_FEED_ERROR);
    assert_string_equal(e.msg, "too long");
    assert_string_equal(e.code, "context_length_exceeded");
    err_capture_free(&e);
    err_capture_run(&e, "data: {\"error\":{\"message\":\"slow down\",\"code\":429}}\n\n");
    assert_int_equal(e.last, OAI_FEED_ERROR);
    assert_string_equal(e.code, "429");
    assert_null(e.type);
    err_capture_free(&e);
    err_capture_run(&e, "data: {\"error\":\"upstream exploded\"}\n\n");
    assert_int_equal(e.last, OAI_FEED_ERROR);
    assert_string_equal(e.msg, "upstream exploded");
    err_capture_free(&e);
    /* "error": null is not an error. */
    err_capture_run(&e, "data: {\"error\":null,\"choices\":[]}\n\n");
    assert_int_equal(e.last, OAI_FEED_OK);
    err_capture_free(&e);
}

static void test_oai_bad_and_done(void **state)
{
    COAI_UNUSED(state);
    struct oai_stream *s = oai_stream_new();
    struct oai_update u;
    assert_int_equal(feed_json(s, "{\"choices\":[{\"index\":0,\"delta\":{\"content\":\"ok\"}}]}", &u), OAI_FEED_OK);
    assert_int_equal(feed_json(s, "{\"choices\":[{\"index\":0,\"delta\":{\"content\":\"x\"", &u), OAI_FEED_BAD);
    assert_null(u.content);
    assert_int_equal(feed_json(s, "not json", &u), OAI_FEED_BAD);
    assert_int_equal(feed_json(s, "", &u), OAI_FEED_BAD);
    assert_int_equal(feed_json(s, "[1,2]", &u), OAI_FEED_BAD);
    assert_int_equal(feed_json(s, "\"[DONE]\"", &u), OAI_FEED_BAD);
    assert_int_equal(feed_json(s, "{} trailing", &u), OAI_FEED_BAD);
    assert_int_equal(feed_json(s, "{}", &u), OAI_FEED_OK);
    assert_int_equal(feed_json(s, "{\"choices\":[],\"id\":\"\",\"prompt_filter_results\":[]}", &u), OAI_FEED_OK);
    assert_false(u.has_usage);
    assert_int_equal(u.tool_call_count, 0);
    assert_string_equal(oai_stream_content(s, NULL), "ok");
    assert_false(oai_stream_done(s));
    assert_int_equal(oai_stream_feed(s, NULL, 0, &u), OAI_FEED_BAD);
    /* Invalid UTF-8 inside a string is not JSON. */
    assert_int_equal(feed_json(s, "{\"choices\":[{\"index\":0,\"delta\":{\"content\":\"\xC3\"}}]}", &u),
                     OAI_FEED_BAD);
    /* An escaped NUL is kept, lengths tell. */
    assert_int_equal(feed_json(s, "{\"choices\":[{\"index\":0,\"delta\":{\"content\":\"a\\u0000b\"}}]}", &u),
                     OAI_FEED_OK);
    assert_int_equal(u.content_len, 3);
    size_t n;
    const char *c = oai_stream_content(s, &n);
    assert_int_equal(n, 5);
    assert_memory_equal(c, "oka\0b", 5);
    json_t *parts = oai_stream_parts_json(s);
    assert_int_equal(json_string_length(json_object_get(json_array_get(parts, 0), "text")), 5);
    json_decref(parts);
    assert_int_equal(feed_json(s, " [DONE]\n", &u), OAI_FEED_DONE);
    assert_true(oai_stream_done(s));
    oai_stream_free(s);
    oai_stream_free(NULL);
}

static void test_oai_choices_and_usage(void **state)
{
    COAI_UNUSED(state);
    struct oai_stream *s = oai_stream_new();
    struct oai_update u;
    int64_t pt, ct;
    oai_stream_usage(s, &pt, &ct);
    assert_int_equal(pt, -1);
    assert_int_equal(ct, -1);
    assert_null(oai_stream_finish_reason(s));
    assert_null(oai_stream_model(s));
    /* Choice 0 found by index, not by position; choice 1 ignored. */
    assert_int_equal(feed_json(s, "{\"model\":\"m1\",\"choices\":[{\"index\":1,\"delta\":{\"content\":\"B\"}},"
                                  "{\"index\":0,\"delta\":{\"content\":\"A\",\"refusal\":null}}]}", &u),
                     OAI_FEED_OK);
    assert_int_equal(u.content_len, 1);
    assert_memory_equal(u.content, "A", 1);
    assert_null(u.refusal);
    assert_int_equal(feed_json(s, "{\"choices\":[{\"index\":1,\"delta\":{\"content\":\"B\"},"
                                  "\"finish_reason\":\"stop\"}]}", &u), OAI_FEED_OK);
    assert_null(u.content);
    assert_null(u.finish_reason);
    assert_null(oai_stream_finish_reason(s));
    /* Empty content is no delta. */
    assert_int_equal(feed_json(s, "{\"choices\":[{\"index\":0,\"delta\":{\"content\":\"\"}}]}", &u), OAI_FEED_OK);
    assert_null(u.content);
    /* usage on a chunk that has choices; usage:null later changes nothing. */
    assert_int_equal(feed_json(s, "{\"model\":\"\",\"choices\":[{\"index\":0,\"delta\":{\"content\":\"C\"},"
                                  "\"finish_reason\":\"stop\"}],\"usage\":{\"prompt_tokens\":5,"
                                  "\"completion_tokens\":2,\"num_sources_used\":0}}", &u), OAI_FEED_OK);
    assert_true(u.has_usage);
    assert_int_equal(u.prompt_tokens, 5);
    assert_int_equal(u.completion_tokens, 2);
    assert_string_equal(u.finish_reason, "stop");
    assert_int_equal(feed_json(s, "{\"choices\":[],\"usage\":null,\"moderation\":{}}", &u), OAI_FEED_OK);
    assert_false(u.has_usage);
    assert_int_equal(u.prompt_tokens, -1);
    oai_stream_usage(s, &pt, &ct);
    assert_int_equal(pt, 5);
    assert_int_equal(ct, 2);
    assert_string_equal(oai_stream_content(s, NULL), "AC");
    assert_string_equal(oai_stream_finish_reason(s), "stop");
    assert_string_equal(oai_stream_model(s), "m1");
    /* Refusal deltas and the storage parts. */
    assert_int_equal(feed_json(s, "{\"choices\":[{\"index\":0,\"delta\":{\"refusal\":\"no\"}}]}", &u), OAI_FEED_OK);
    assert_int_equal(u.refusal_len, 2);
    json_t *parts = oai_stream_parts_json(s);
    json_t *want = json_loads("[{\"type\":\"text\",\"text\":\"AC\"},{\"type\":\"refusal\",\"text\":\"no\"}]", 0, NULL);
    assert_true(json_equal(parts, want));
    json_decref(parts);
    json_decref(want);
    oai_stream_free(s);

    /* Nothing at all: an empty parts array. */
    s = oai_stream_new();
    parts = oai_stream_parts_json(s);
    assert_true(json_is_array(parts));
    assert_int_equal(json_array_size(parts), 0);
    json_decref(parts);
    oai_stream_free(s);
}

static void test_oai_tool_calls(void **state)
{
    COAI_UNUSED(state);
    struct oai_stream *s = oai_stream_new();
    struct oai_update u;
    /* Out of order indexes come back sorted. */
    assert_int_equal(feed_json(s, "{\"choices\":[{\"index\":0,\"delta\":{\"tool_calls\":["
                                  "{\"index\":2,\"id\":\"c2\",\"function\":{\"name\":\"g\",\"arguments\":\"{\\\"b\\\"\"}},"
                                  "{\"index\":0,\"id\":\"c0\",\"function\":{\"name\":\"f\",\"arguments\":\"\"}}]}}]}", &u),
                     OAI_FEED_OK);
    assert_int_equal(u.tool_call_count, 2);
    assert_int_equal(u.tool_calls[0].index, 2);
    assert_string_equal(u.tool_calls[0].id, "c2");
    assert_string_equal(u.tool_calls[0].name, "g");
    assert_int_equal(u.tool_calls[0].arguments_len, 4);
    assert_int_equal(u.tool_calls[1].index, 0);
    /* Fragments; a repeated id and name are not appended again. */
    assert_int_equal(feed_json(s, "{\"choices\":[{\"index\":0,\"delta\":{\"tool_calls\":["
                                  "{\"index\":2,\"function\":{\"arguments\":\":1}\"}},"
                                  "{\"index\":0,\"id\":\"c0\",\"function\":{\"name\":\"f\",\"arguments\":\"{}\"}}]}}]}", &u),
                     OAI_FEED_OK);
    assert_null(u.tool_calls[0].id);
    assert_null(u.tool_calls[0].name);
    assert_int_equal(oai_stream_tool_count(s), 2);
    assert_int_equal(oai_stream_tool_index(s, 0), 0);
    assert_string_equal(oai_stream_tool_id(s, 0), "c0");
    assert_string_equal(oai_stream_tool_name(s, 0), "f");
    assert_string_equal(oai_stream_tool_arguments(s, 0, NULL), "{}");
    assert_int_equal(oai_stream_tool_index(s, 1), 2);
    assert_string_equal(oai_stream_tool_arguments(s, 1, NULL), "{\"b\":1}");
    /* Index 0 reused with a different id: a new call, after the others. */
    assert_int_equal(feed_json(s, "{\"choices\":[{\"index\":0,\"delta\":{\"tool_calls\":["
                                  "{\"index\":0,\"id\":\"c9\",\"function\":{\"name\":\"h\",\"arguments\":\"[\"}}]}}]}", &u),
                     OAI_FEED_OK);
    assert_int_equal(u.tool_calls[0].index, 3);
    assert_int_equal(feed_json(s, "{\"choices\":[{\"index\":0,\"delta\":{\"tool_calls\":["
                                  "{\"index\":0,\"function\":{\"arguments\":\"]\"}}]}}]}", &u),
                     OAI_FEED_OK);
    assert_int_equal(oai_stream_tool_count(s), 3);
    assert_string_equal(oai_stream_tool_id(s, 2), "c9");
    assert_string_equal(oai_stream_tool_arguments(s, 2, NULL), "[]");
    assert_string_equal(oai_stream_tool_arguments(s, 0, NULL), "{}");
    /* Bad indexes are rejected and leave everything as it was. */
    assert_int_equal(feed_json(s, "{\"choices\":[{\"index\":0,\"delta\":{\"content\":\"no\",\"tool_calls\":["
                                  "{\"index\":-1,\"function\":{\"arguments\":\"x\"}}]}}]}", &u),
                     OAI_FEED_BAD);
    assert_int_equal(feed_json(s, "{\"choices\":[{\"index\":0,\"delta\":{\"tool_calls\":["
                                  "{\"index\":99999999999,\"function\":{\"arguments\":\"x\"}}]}}]}", &u),
                     OAI_FEED_BAD);
    assert_int_equal(oai_stream_tool_count(s), 3);
    assert_string_equal(oai_stream_content(s, NULL), "");
    oai_stream_free(s);

    /* No index at all: calls told apart by id; object arguments. */
    s = oai_stream_new();
    assert_int_equal(feed_json(s, "{\"choices\":[{\"delta\":{\"tool_calls\":["
                                  "{\"id\":\"x\",\"function\":{\"name\":\"f\",\"arguments\":\"{\\\"a\\\":\"}},"
                                  "{\"id\":\"y\",\"function\":{\"name\":\"g\",\"arguments\":{\"k\":[1,2]}}}]}}]}", &u),
                     OAI_FEED_OK);
    assert_string_equal(u.tool_calls[1].arguments, "{\"k\":[1,2]}");
    assert_int_equal(feed_json(s, "{\"choices\":[{\"delta\":{\"tool_calls\":["
                                  "{\"id\":\"x\",\"function\":{\"arguments\":\"1}\"}}]}}]}", &u),
                     OAI_FEED_OK);
    assert_int_equal(oai_stream_tool_count(s), 2);
    assert_string_equal(oai_stream_tool_arguments(s, 0, NULL), "{\"a\":1}");
    assert_string_equal(oai_stream_tool_arguments(s, 1, NULL), "{\"k\":[1,2]}");
    json_t *parts = oai_stream_parts_json(s);
    json_t *want = json_loads("[{\"type\":\"tool_call\",\"id\":\"x\",\"name\":\"f\",\"arguments\":\"{\\\"a\\\":1}\"},"
                              "{\"type\":\"tool_call\",\"id\":\"y\",\"name\":\"g\",\"arguments\":\"{\\\"k\\\":[1,2]}\"}]",
                              0, NULL);
    assert_non_null(want);
    assert_true(json_equal(parts, want));
    json_decref(parts);
    json_decref(want);
    oai_stream_free(s);

    /* The call cap: the 129th call is refused, the rest still works. */
    s = oai_stream_new();
    for (int i = 0; i <= OAI_MAX_TOOL_CALLS; i++) {
        char *chunk = xasprintf("{\"choices\":[{\"index\":0,\"delta\":{\"tool_calls\":[{\"index\":%d,"
                                "\"id\":\"c%d\",\"function\":{\"name\":\"f\",\"arguments\":\"\"}}]}}]}", i, i);
        assert_int_equal(feed_json(s, chunk, &u), i < OAI_MAX_TOOL_CALLS ? OAI_FEED_OK : OAI_FEED_BAD);
        free(chunk);
    }
    assert_int_equal(oai_stream_tool_count(s), OAI_MAX_TOOL_CALLS);
    /* A chunk that adds to an old call and opens a new one is refused whole. */
    assert_int_equal(feed_json(s, "{\"choices\":[{\"index\":0,\"delta\":{\"tool_calls\":["
                                  "{\"index\":5,\"function\":{\"arguments\":\"{\"}},"
                                  "{\"index\":500,\"id\":\"new\",\"function\":{\"arguments\":\"x\"}}]}}]}", &u),
                     OAI_FEED_BAD);
    assert_string_equal(oai_stream_tool_arguments(s, 5, NULL), "");
    assert_int_equal(feed_json(s, "{\"choices\":[{\"index\":0,\"delta\":{\"tool_calls\":["
                                  "{\"index\":5,\"function\":{\"arguments\":\"{}\"}}]}}]}", &u),
                     OAI_FEED_OK);
    assert_string_equal(oai_stream_tool_arguments(s, 5, NULL), "{}");
    oai_stream_free(s);
}

static char *content_chunk(size_t n, char fill)
{
    struct buf b;
    buf_init(&b, 2 * LIMIT_UPSTREAM_SSE_LINE);
    assert_int_equal(buf_append_str(&b, "{\"choices\":[{\"index\":0,\"delta\":{\"content\":\""), 0);
    char *fillbuf = xmalloc(n);
    memset(fillbuf, fill, n);
    assert_int_equal(buf_append(&b, fillbuf, n), 0);
    free(fillbuf);
    assert_int_equal(buf_append_str(&b, "\"}}]}"), 0);
    return buf_take(&b, NULL);
}

static void test_oai_content_cap(void **state)
{
    COAI_UNUSED(state);
    struct oai_stream *s = oai_stream_new();
    struct oai_update u;
    char *big = content_chunk(900 * 1024, 'a');
    assert_int_equal(feed_json(s, big, &u), OAI_FEED_OK);
    assert_int_equal(feed_json(s, big, &u), OAI_FEED_OK);
    assert_int_equal(feed_json(s, big, &u), OAI_FEED_BAD); /* 2.7 MB > 2 MB */
    assert_null(u.content);
    size_t n;
    oai_stream_content(s, &n);
    assert_int_equal(n, 2 * 900 * 1024);
    free(big);
    /* What still fits is accepted, up to the byte. */
    size_t room = LIMIT_MESSAGE_CONTENT - 2 * 900 * 1024;
    char *rest = content_chunk(room, 'b');
    char *one = content_chunk(1, 'c');
    assert_int_equal(feed_json(s, rest, &u), OAI_FEED_OK);
    assert_int_equal(feed_json(s, one, &u), OAI_FEED_BAD);
    oai_stream_content(s, &n);
    assert_int_equal(n, LIMIT_MESSAGE_CONTENT);
    free(rest);
    free(one);
    oai_stream_free(s);

    /* A payload over the SSE line cap is refused before parsing. */
    s = oai_stream_new();
    char *huge = content_chunk(LIMIT_UPSTREAM_SSE_LINE, 'd');
    assert_int_equal(feed_json(s, huge, &u), OAI_FEED_BAD);
    free(huge);
    oai_stream_free(s);
}

/* ---- fixture discovery and main ----------------------------------------- */

static void test_fixtures_missing(void **state)
{
    COAI_UNUSED(state);
    fail_msg("fixture directory %s/openai-chat-sse or openai-cassettes is missing or "
             "incomplete; set COAI_FIXTURES_DIR", fixtures_dir());
}

static int cmp_str(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

/* Names of the regular entries of dir/sub ending in suffix, sorted. */
static char **list_dir(const char *sub, const char *suffix, size_t *count)
{
    char *path = xasprintf("%s/%s", fixtures_dir(), sub);
    DIR *d = opendir(path);
    free(path);
    *count = 0;
    if (!d)
        return NULL;
    char **names = NULL;
    size_t cap = 0;
    struct dirent *de;
    while ((de = readdir(d)) != NULL) {
        size_t n = strlen(de->d_name), sl = strlen(suffix);
        if (de->d_name[0] == '.' || n < sl || strcmp(de->d_name + n - sl, suffix) != 0)
            continue;
        if (*count == cap) {
            cap = cap ? cap * 2 : 32;
            names = xrealloc(names, cap * sizeof(*names));
        }
        names[(*count)++] = xasprintf("%s/%s", sub, de->d_name);
    }
    closedir(d);
    if (names)
        qsort(names, *count, sizeof(*names), cmp_str);
    return names;
}

int main(void)
{
    static const struct CMUnitTest fixed[] = {
        cmocka_unit_test(test_sse_line_endings),
        cmocka_unit_test(test_sse_comments_and_fields),
        cmocka_unit_test(test_sse_event_id_retry),
        cmocka_unit_test(test_sse_bom),
        cmocka_unit_test(test_sse_utf8_split),
        cmocka_unit_test(test_sse_callback_stop),
        cmocka_unit_test(test_sse_caps),
        cmocka_unit_test(test_oai_error_frames),
        cmocka_unit_test(test_oai_bad_and_done),
        cmocka_unit_test(test_oai_choices_and_usage),
        cmocka_unit_test(test_oai_tool_calls),
        cmocka_unit_test(test_oai_content_cap),
        cmocka_unit_test(test_oai_fast_path),
        cmocka_unit_test(test_fact_text_stop),
        cmocka_unit_test(test_fact_refusal),
        cmocka_unit_test(test_fact_parallel_tools),
        cmocka_unit_test(test_fact_n3),
        cmocka_unit_test(test_fact_index_from_1),
        cmocka_unit_test(test_fact_other_providers),
    };

    /* Every file of openai-chat-sse/, and the cassettes that are chat
     * completion streams (the others are Responses API streams). */
    size_t nsse, njsonl, ncas;
    char **sse = list_dir("openai-chat-sse", ".sse", &nsse);
    char **jsonl = list_dir("openai-chat-sse", ".chunks.jsonl", &njsonl);
    char **cas = list_dir("openai-cassettes", ".sse", &ncas);
    size_t nall;
    char **all = list_dir("openai-chat-sse", "", &nall);

    size_t nfix = 0;
    struct fixture *fx = xcalloc(nsse + njsonl + ncas + 1, sizeof(*fx));
    for (size_t i = 0; i < nsse; i++)
        fx[nfix++] = (struct fixture){ sse[i], false };
    for (size_t i = 0; i < njsonl; i++)
        fx[nfix++] = (struct fixture){ jsonl[i], true };
    size_t ncas_chat = 0;
    for (size_t i = 0; i < ncas; i++) {
        char *path = xasprintf("%s/%s", fixtures_dir(), cas[i]);
        size_t len;
        char *body = slurp(path, &len);
        free(path);
        if (body && strstr(body, "\"object\":\"chat.completion.chunk\"")) {
            fx[nfix++] = (struct fixture){ cas[i], false };
            ncas_chat++;
        } else {
            free(cas[i]);
        }
        free(body);
    }

    size_t ntests = COAI_ARRAY_LEN(fixed) + nfix + 1;
    struct CMUnitTest *tests = xcalloc(ntests, sizeof(*tests));
    size_t nt = 0;
    for (size_t i = 0; i < COAI_ARRAY_LEN(fixed); i++)
        tests[nt++] = fixed[i];
    for (size_t i = 0; i < nfix; i++)
        tests[nt++] = (struct CMUnitTest){ fx[i].rel, test_fixture, NULL, NULL, &fx[i] };
    /* Every file of the directory must have been taken as .sse or .jsonl,
     * and the known minimum must be there. */
    if (nsse + njsonl != nall || nsse < 13 || njsonl < 3 || ncas_chat < 3) {
        fprintf(stderr, "fixtures: %zu .sse + %zu .chunks.jsonl of %zu files, %zu chat cassettes\n",
                nsse, njsonl, nall, ncas_chat);
        tests[nt++] = (struct CMUnitTest){ "fixtures_present", test_fixtures_missing, NULL, NULL, NULL };
    }

    /* cmocka reports on stdout; send that to stderr so that stdout carries
     * only the summary line. */
    fflush(stdout);
    int saved = dup(STDOUT_FILENO);
    dup2(STDERR_FILENO, STDOUT_FILENO);
    int failed = _cmocka_run_group_tests("unit-sse", tests, nt, NULL, NULL);
    fflush(stdout);
    dup2(saved, STDOUT_FILENO);
    close(saved);
    printf("unit-sse: %d passed, %d failed\n", (int)nt - failed, failed);
    fflush(stdout); /* LeakSanitizer exits without flushing stdio */

    for (size_t i = 0; i < nfix; i++)
        free(fx[i].rel);
    for (size_t i = 0; i < nall; i++)
        free(all[i]);
    free(fx);
    free(sse);
    free(jsonl);
    free(cas);
    free(all);
    free(tests);
    return failed ? 1 : 0;
}
