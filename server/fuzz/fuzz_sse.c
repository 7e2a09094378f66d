/* fuzz_sse.c - libFuzzer harness for the upstream stream decoders:
 * llm/sse_parse.c (text/event-stream framing) feeding llm/openai_stream.c
 * (chat.completion.chunk accumulation), the two parsers every byte a
 * provider sends goes through.
 *
 * The input is the raw response body. It is fed three times: in one piece,
 * split in two at a position taken from its first two bytes, and in small
 * chunks whose size comes from its third byte. Every run must dispatch the
 * same events and accumulate the same answer (abort() otherwise). On the way
 * it checks the documented contracts: a rejected chunk (OAI_FEED_BAD) leaves
 * the accumulated state untouched, what the updates report adds up to what
 * is accumulated, tool calls are ordered by a unique index and capped, and
 * oai_stream_parts_json describes exactly the accumulated state. The whole
 * input is also fed to oai_stream_feed as one payload, so plain JSON reaches
 * the chunk decoder without SSE framing.
 */
#include <jansson.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "lib/buf.h"
#include "lib/caps.h"
#include "llm/openai_stream.h"
#include "llm/sse_parse.h"

#define CHECK(cond)                                                                   \
    do {                                                                              \
        if (!(cond)) {                                                                \
            fprintf(stderr, "fuzz_sse: invariant failed at line %d: %s\n", __LINE__, \
                    #cond);                                                           \
            abort();                                                                  \
        }                                                                             \
    } while (0)

/* What one run observed. */
struct run {
    struct buf events;     /* every dispatched event, serialized */
    struct oai_stream *st; /* the events' payloads, accumulated */
    struct buf deltas;     /* concatenated content deltas reported by updates */
    struct buf rdeltas;    /* concatenated refusal deltas */
    int rc;                /* first non-zero sse_parser_feed result, else 0 */
};

static void put_field(struct buf *b, const char *p, size_t n)
{
    char len[24];
    int l = snprintf(len, sizeof len, "%zu:", n);
    (void)buf_append(b, len, (size_t)l);
    (void)buf_append(b, p, n);
}

/* Snapshot of the accumulated state, to prove a rejected chunk changed
 * nothing. Text and arguments only ever grow by appending, so their lengths
 * stand for them; ids and names (which a rollback resets) are kept whole. */
static void snapshot(const struct oai_stream *s, struct buf *b)
{
    size_t n;
    char num[64];
    int l;
    buf_reset(b);
    (void)oai_stream_content(s, &n);
    l = snprintf(num, sizeof num, "%zu,", n);
    (void)buf_append(b, num, (size_t)l);
    (void)oai_stream_refusal(s, &n);
    l = snprintf(num, sizeof num, "%zu;", n);
    (void)buf_append(b, num, (size_t)l);
    size_t nt = oai_stream_tool_count(s);
    for (size_t i = 0; i < nt; i++) {
        (void)oai_stream_tool_arguments(s, i, &n);
        l = snprintf(num, sizeof num, "%d,%zu,", oai_stream_tool_index(s, i), n);
        (void)buf_append(b, num, (size_t)l);
        const char *p = oai_stream_tool_id(s, i);
        put_field(b, p, strlen(p));
        p = oai_stream_tool_name(s, i);
        put_field(b, p, strlen(p));
    }
}

static void check_stream(const struct oai_stream *s)
{
    size_t clen = 0, rlen = 0, total = 0;
    const char *content = oai_stream_content(s, &clen);
    const char *refusal = oai_stream_refusal(s, &rlen);
    CHECK(content && content[clen] == '\0');
    CHECK(refusal && refusal[rlen] == '\0');
    total = clen + rlen;

    size_t nt = oai_stream_tool_count(s);
    CHECK(nt <= OAI_MAX_TOOL_CALLS);
    int prev = -1;
    for (size_t i = 0; i < nt; i++) {
        int ix = oai_stream_tool_index(s, i);
        CHECK(ix > prev); /* sorted and unique */
        prev = ix;
        const char *id = oai_stream_tool_id(s, i);
        const char *name = oai_stream_tool_name(s, i);
        size_t alen = 0;
        const char *args = oai_stream_tool_arguments(s, i, &alen);
        CHECK(id && name && args && args[alen] == '\0');
        total += strlen(id) + strlen(name) + alen;
    }
    CHECK(total <= LIMIT_MESSAGE_CONTENT);
    /* Out of range getters are harmless. */
    size_t alen = 1;
    CHECK(oai_stream_tool_index(s, nt) == -1);
    CHECK(oai_stream_tool_id(s, nt) == NULL);
    CHECK(oai_stream_tool_name(s, nt) == NULL);
    CHECK(oai_stream_tool_arguments(s, nt, &alen) == NULL && alen == 0);
    CHECK(oai_stream_tool_arguments(s, (size_t)-1, NULL) == NULL);

    const char *fin = oai_stream_finish_reason(s);
    if (fin)
        (void)strlen(fin);
    const char *model = oai_stream_model(s);
    if (model)
        CHECK(*model && strlen(model) <= LIMIT_MODEL_NAME);
    int64_t pt = 0, ct = 0;
    oai_stream_usage(s, &pt, &ct);
    oai_stream_usage(s, NULL, NULL);
    (void)oai_stream_done(s);

    /* The parts array describes exactly the accumulated state. */
    json_t *parts = oai_stream_parts_json(s);
    CHECK(json_is_array(parts));
    CHECK(json_array_size(parts) == (clen > 0) + (rlen > 0) + nt);
    size_t k = 0;
    if (clen) {
        json_t *t = json_object_get(json_array_get(parts, k++), "text");
        CHECK(json_is_string(t) && json_string_length(t) == clen &&
              memcmp(json_string_value(t), content, clen) == 0);
    }
    if (rlen) {
        json_t *t = json_object_get(json_array_get(parts, k++), "text");
        CHECK(json_is_string(t) && json_string_length(t) == rlen &&
              memcmp(json_string_value(t), refusal, rlen) == 0);
    }
    for (size_t i = 0; i < nt; i++) {
        json_t *p = json_array_get(parts, k++);
        CHECK(strcmp(json_string_value(json_object_get(p, "type")), "tool_call") == 0);
        CHECK(strcmp(json_string_value(json_object_get(p, "id")), oai_stream_tool_id(s, i)) == 0);
        size_t al = 0;
        const char *a = oai_stream_tool_arguments(s, i, &al);
        json_t *ja = json_object_get(p, "arguments");
        CHECK(json_is_string(ja) && json_string_length(ja) == al &&
              memcmp(json_string_value(ja), a, al) == 0);
    }
    /* It is stored as JSON text and read back: that must round-trip. */
    char *text = json_dumps(parts, JSON_COMPACT);
    CHECK(text != NULL);
    json_error_t jerr;
    json_t *back = json_loads(text, JSON_ALLOW_NUL, &jerr);
    CHECK(back && json_equal(back, parts));
    json_decref(back);
    free(text);
    json_decref(parts);
}

/* Feed one payload, checking the update against the accumulated state. */
static void feed_payload(struct oai_stream *s, const char *data, size_t len, struct buf *deltas,
                         struct buf *rdeltas)
{
    struct buf before, after;
    buf_init(&before, (size_t)-1 / 2);
    buf_init(&after, (size_t)-1 / 2);
    snapshot(s, &before);
    size_t clen0 = 0, rlen0 = 0;
    (void)oai_stream_content(s, &clen0);
    (void)oai_stream_refusal(s, &rlen0);

    struct oai_update u;
    enum oai_feed r = oai_stream_feed(s, data, len, &u);
    CHECK(r == OAI_FEED_OK || r == OAI_FEED_DONE || r == OAI_FEED_ERROR || r == OAI_FEED_BAD);
    snapshot(s, &after);
    if (r != OAI_FEED_OK) {
        /* Only an OK chunk accumulates anything. */
        CHECK(before.len == after.len && memcmp(before.p, after.p, before.len) == 0);
        CHECK(u.content == NULL && u.refusal == NULL && u.tool_call_count == 0);
    }
    if (r == OAI_FEED_DONE)
        CHECK(oai_stream_done(s));
    if (r == OAI_FEED_ERROR) {
        if (u.error_message)
            (void)strlen(u.error_message);
        if (u.error_type)
            (void)strlen(u.error_type);
        if (u.error_code)
            (void)strlen(u.error_code);
    }
    CHECK((u.content == NULL) == (u.content_len == 0));
    CHECK((u.refusal == NULL) == (u.refusal_len == 0));
    CHECK((u.tool_calls == NULL) == (u.tool_call_count == 0));
    size_t clen = 0, rlen = 0;
    const char *content = oai_stream_content(s, &clen);
    const char *refusal = oai_stream_refusal(s, &rlen);
    /* The delta is exactly what was appended. */
    CHECK(clen == clen0 + u.content_len);
    CHECK(rlen == rlen0 + u.refusal_len);
    if (u.content_len)
        CHECK(memcmp(content + clen0, u.content, u.content_len) == 0);
    if (u.refusal_len)
        CHECK(memcmp(refusal + rlen0, u.refusal, u.refusal_len) == 0);
    (void)buf_append(deltas, u.content, u.content_len);
    (void)buf_append(rdeltas, u.refusal, u.refusal_len);
    for (size_t i = 0; i < u.tool_call_count; i++) {
        const struct oai_tool_delta *d = &u.tool_calls[i];
        bool found = false;
        for (size_t k = 0; k < oai_stream_tool_count(s); k++)
            if (oai_stream_tool_index(s, k) == d->index)
                found = true;
        CHECK(found);
        if (d->id)
            (void)strlen(d->id);
        if (d->name)
            (void)strlen(d->name);
        CHECK(d->arguments != NULL || d->arguments_len == 0);
    }
    if (u.finish_reason)
        CHECK(strcmp(u.finish_reason, oai_stream_finish_reason(s)) == 0);
    if (u.has_usage) {
        int64_t pt, ct;
        oai_stream_usage(s, &pt, &ct);
        CHECK(u.prompt_tokens == -1 || u.prompt_tokens == pt);
        CHECK(u.completion_tokens == -1 || u.completion_tokens == ct);
    }
    buf_cleanup(&before);
    buf_cleanup(&after);
}

static int on_event(void *arg, const char *event, const char *data, size_t data_len,
                    const char *id)
{
    struct run *r = arg;
    CHECK(event && *event);
    CHECK(data && data[data_len] == '\0');
    put_field(&r->events, event, strlen(event));
    put_field(&r->events, data, data_len);
    if (id) {
        CHECK(*id);
        put_field(&r->events, id, strlen(id));
    } else {
        (void)buf_append(&r->events, "-", 1);
    }
    feed_payload(r->st, data, data_len, &r->deltas, &r->rdeltas);
    return 0;
}

static void run_init(struct run *r)
{
    buf_init(&r->events, (size_t)-1 / 2);
    buf_init(&r->deltas, (size_t)-1 / 2);
    buf_init(&r->rdeltas, (size_t)-1 / 2);
    r->st = oai_stream_new();
    r->rc = 0;
}

static void run_cleanup(struct run *r)
{
    buf_cleanup(&r->events);
    buf_cleanup(&r->deltas);
    buf_cleanup(&r->rdeltas);
    oai_stream_free(r->st);
}

/* Feed data in one piece (chunk 0, split 0), in two at split, or in pieces
 * of chunk bytes. Returns the parser's retry value. */
static long long run_feed(struct run *r, size_t max_line, const uint8_t *data, size_t size,
                          size_t chunk, size_t split)
{
    struct sse_parser *p = sse_parser_new(max_line, on_event, r);
    size_t off = 0;
    do {
        size_t end;
        if (chunk)
            end = off + chunk < size ? off + chunk : size;
        else if (split && off < split)
            end = split;
        else
            end = size;
        int rc = sse_parser_feed(p, (const char *)data + off, end - off);
        CHECK(rc == 0 || rc == -1);
        if (rc && !r->rc)
            r->rc = rc;
        if (rc == -1) /* failed for good */
            CHECK(sse_parser_feed(p, "data: x\n\n", 9) == -1);
        off = end;
    } while (off < size);
    CHECK(sse_parser_feed(p, NULL, 0) == r->rc); /* an empty feed changes nothing */
    long long retry = sse_parser_retry(p);
    CHECK(retry >= -1);
    sse_parser_free(p);
    check_stream(r->st);
    /* The reported deltas add up to the accumulated text. */
    size_t clen, rlen;
    const char *c = oai_stream_content(r->st, &clen);
    const char *rf = oai_stream_refusal(r->st, &rlen);
    CHECK(clen == r->deltas.len && memcmp(c, buf_str(&r->deltas), clen) == 0);
    CHECK(rlen == r->rdeltas.len && memcmp(rf, buf_str(&r->rdeltas), rlen) == 0);
    return retry;
}

static void same_runs(struct run *a, struct run *b, long long ra, long long rb)
{
    CHECK(a->rc == b->rc);
    CHECK(ra == rb);
    CHECK(a->events.len == b->events.len &&
          memcmp(buf_str(&a->events), buf_str(&b->events), a->events.len) == 0);
    json_t *pa = oai_stream_parts_json(a->st), *pb = oai_stream_parts_json(b->st);
    CHECK(json_equal(pa, pb));
    json_decref(pa);
    json_decref(pb);
    const char *fa = oai_stream_finish_reason(a->st), *fb = oai_stream_finish_reason(b->st);
    CHECK((fa == NULL) == (fb == NULL) && (!fa || strcmp(fa, fb) == 0));
    const char *ma = oai_stream_model(a->st), *mb = oai_stream_model(b->st);
    CHECK((ma == NULL) == (mb == NULL) && (!ma || strcmp(ma, mb) == 0));
    int64_t p1, c1, p2, c2;
    oai_stream_usage(a->st, &p1, &c1);
    oai_stream_usage(b->st, &p2, &c2);
    CHECK(p1 == p2 && c1 == c2);
    CHECK(oai_stream_done(a->st) == oai_stream_done(b->st));
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    /* Control values are read from the first bytes without removing them,
     * so real response bodies stay meaningful seeds. */
    size_t split = size >= 2 ? ((size_t)data[0] << 8 | data[1]) % (size + 1) : 0;
    size_t chunk = size >= 3 ? 1 + data[2] % 7 : 1;
    /* A first byte >= 0xF0 (never the start of a real body) selects a tiny
     * line cap so the cap paths are exercised too. */
    size_t max_line = (size >= 2 && data[0] >= 0xF0) ? 1 + data[1] % 64 : LIMIT_UPSTREAM_SSE_LINE;

    struct run one, two, many;
    run_init(&one);
    run_init(&two);
    run_init(&many);
    long long r1 = run_feed(&one, max_line, data, size, 0, 0);
    long long r2 = run_feed(&two, max_line, data, size, 0, split);
    long long r3 = run_feed(&many, max_line, data, size, chunk, 0);
    same_runs(&one, &two, r1, r2);
    same_runs(&one, &many, r1, r3);
    run_cleanup(&one);
    run_cleanup(&two);
    run_cleanup(&many);

    /* The whole input as one payload, and as two consecutive ones. */
    struct oai_stream *s = oai_stream_new();
    struct buf d, rd;
    buf_init(&d, (size_t)-1 / 2);
    buf_init(&rd, (size_t)-1 / 2);
    feed_payload(s, (const char *)data, size, &d, &rd);
    feed_payload(s, (const char *)data, size, &d, &rd);
    check_stream(s);
    buf_cleanup(&d);
    buf_cleanup(&rd);
    oai_stream_free(s);
    return 0;
}
