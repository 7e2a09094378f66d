/* openai_stream.c - decoder/accumulator for chat.completion.chunk streams;
 * see openai_stream.h. Each payload is checked against the caps before
 * anything is accumulated, so a rejected chunk leaves the accumulated answer
 * as it was.
 *
 * Two decoders. The fast path (fast_feed) reads the common chunk shapes -
 * text, refusal, role-only and finish deltas of a single choice, usage
 * chunks, unknown fields of any kind - straight from the bytes into reused
 * buffers: no allocation and no jansson tree per chunk, which was about
 * 40% of the server's user time relaying a stream. It is strict: it only
 * answers for input jansson would accept and read the same way (strings
 * fully validated, UTF-8 and escapes; numbers by JSON's grammar), and gives
 * up - leaving everything untouched - on anything else: tool calls, several
 * choices, an error frame, a duplicate key it reads, \u0000, exponents,
 * big integers, deep nesting, invalid JSON. The jansson path then decides,
 * so the result is the same either way (test_sse.c feeds both decoders the
 * fixtures and thousands of mutations of them and compares).
 */
#include "openai_stream.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../lib/buf.h"
#include "../lib/common.h"
#include "../lib/caps.h"
#include "../lib/utf8.h"

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
    bool no_fast;           /* tests: jansson only */
    unsigned long fast_hits; /* chunks the fast path decoded */
    struct buf f_content;   /* fast path: the last chunk's decoded strings */
    struct buf f_refusal;
    struct buf f_finish;
    struct buf f_model;
};

struct oai_stream *oai_stream_new(void)
{
    struct oai_stream *s = xcalloc(1, sizeof(*s));
    buf_init(&s->content, LIMIT_MESSAGE_CONTENT);
    buf_init(&s->refusal, LIMIT_MESSAGE_CONTENT);
    buf_init(&s->f_content, LIMIT_UPSTREAM_SSE_LINE);
    buf_init(&s->f_refusal, LIMIT_UPSTREAM_SSE_LINE);
    buf_init(&s->f_finish, LIMIT_UPSTREAM_SSE_LINE);
    buf_init(&s->f_model, LIMIT_UPSTREAM_SSE_LINE);
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
    buf_cleanup(&s->f_content);
    buf_cleanup(&s->f_refusal);
    buf_cleanup(&s->f_finish);
    buf_cleanup(&s->f_model);
    free(s);
}

void oai_stream_set_fast_path(struct oai_stream *s, bool on)
{
    s->no_fast = !on;
}

unsigned long oai_stream_fast_hits(const struct oai_stream *s)
{
    return s->fast_hits;
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

/* ---- fast path (see the top of this file) -------------------------------- */

#define FP_MAX_DEPTH 32 /* deeper unknown values: jansson decides */
#define FP_MAX_NUM 40   /* longer number literals: jansson decides */

struct fp {
    const char *p, *end;
};

struct fp_usage {
    bool obj;           /* the value was an object */
    bool pt, ct;        /* which counts were integers */
    long long ptv, ctv;
};

struct fp_chunk {
    bool choice;        /* choice 0 present */
    bool content, refusal, finish, model; /* these were strings (in s->f_*) */
    struct fp_usage ru; /* usage at the top */
    struct fp_usage cu; /* usage inside the choice */
};

static void fp_ws(struct fp *f)
{
    while (f->p < f->end && (*f->p == ' ' || *f->p == '\t' || *f->p == '\n' || *f->p == '\r'))
        f->p++;
}

static bool fp_eat(struct fp *f, char c)
{
    fp_ws(f);
    if (f->p < f->end && *f->p == c) {
        f->p++;
        return true;
    }
    return false;
}

static bool fp_at(const struct fp *f, char c)
{
    return f->p < f->end && *f->p == c;
}

static int fp_hex4(const char *p)
{
    int v = 0;
    for (int i = 0; i < 4; i++) {
        char c = p[i];
        int d;
        if (c >= '0' && c <= '9')
            d = c - '0';
        else if (c >= 'a' && c <= 'f')
            d = c - 'a' + 10;
        else if (c >= 'A' && c <= 'F')
            d = c - 'A' + 10;
        else
            return -1;
        v = v * 16 + d;
    }
    return v;
}

/* The string at f->p (its opening quote), decoded and appended to out (NULL:
 * only checked). false unless jansson would read exactly these bytes: raw
 * control bytes, invalid UTF-8, bad escapes and lone surrogates are errors
 * there; \u0000 is left to jansson too (our strings are NUL-terminated). */
static bool fp_string(struct fp *f, struct buf *out)
{
    if (!fp_at(f, '"'))
        return false;
    const char *p = f->p + 1, *end = f->end;
    for (;;) {
        const char *run = p;
        bool high = false;
        while (p < end) {
            unsigned char c = (unsigned char)*p;
            if (c == '"' || c == '\\' || c < 0x20)
                break;
            high |= c >= 0x80;
            p++;
        }
        if (p >= end)
            return false;
        if (p > run) {
            if (high && !utf8_valid(run, (size_t)(p - run)))
                return false;
            if (out && buf_append(out, run, (size_t)(p - run)) != 0)
                return false;
        }
        if (*p == '"') {
            f->p = p + 1;
            return true;
        }
        if (*p != '\\' || end - p < 2)
            return false; /* a raw control byte, or the input ends */
        char ch;
        switch (p[1]) {
        case '"': ch = '"'; break;
        case '\\': ch = '\\'; break;
        case '/': ch = '/'; break;
        case 'b': ch = '\b'; break;
        case 'f': ch = '\f'; break;
        case 'n': ch = '\n'; break;
        case 'r': ch = '\r'; break;
        case 't': ch = '\t'; break;
        case 'u': {
            if (end - p < 6)
                return false;
            int v = fp_hex4(p + 2);
            if (v <= 0 || (v >= 0xDC00 && v <= 0xDFFF))
                return false; /* bad hex, \u0000, a lone low surrogate */
            p += 6;
            unsigned long cp = (unsigned long)v;
            if (cp >= 0xD800 && cp <= 0xDBFF) {
                if (end - p < 6 || p[0] != '\\' || p[1] != 'u')
                    return false;
                int lo = fp_hex4(p + 2);
                if (lo < 0xDC00 || lo > 0xDFFF)
                    return false;
                p += 6;
                cp = 0x10000 + ((cp - 0xD800) << 10) + ((unsigned long)lo - 0xDC00);
            }
            char u8[4];
            size_t n;
            if (cp < 0x80) {
                u8[0] = (char)cp;
                n = 1;
            } else if (cp < 0x800) {
                u8[0] = (char)(0xC0 | (cp >> 6));
                u8[1] = (char)(0x80 | (cp & 0x3F));
                n = 2;
            } else if (cp < 0x10000) {
                u8[0] = (char)(0xE0 | (cp >> 12));
                u8[1] = (char)(0x80 | ((cp >> 6) & 0x3F));
                u8[2] = (char)(0x80 | (cp & 0x3F));
                n = 3;
            } else {
                u8[0] = (char)(0xF0 | (cp >> 18));
                u8[1] = (char)(0x80 | ((cp >> 12) & 0x3F));
                u8[2] = (char)(0x80 | ((cp >> 6) & 0x3F));
                u8[3] = (char)(0x80 | (cp & 0x3F));
                n = 4;
            }
            if (out && buf_append(out, u8, n) != 0)
                return false;
            continue;
        }
        default:
            return false;
        }
        if (out && buf_append(out, &ch, 1) != 0)
            return false;
        p += 2;
    }
}

/* An object key we may care about: printable ASCII, no escapes (others:
 * false, jansson decides). Longer than cap - 1: k = "" (matches nothing). */
static bool fp_key(struct fp *f, char *k, size_t cap)
{
    fp_ws(f);
    if (!fp_at(f, '"'))
        return false;
    const char *p = f->p + 1;
    size_t n = 0;
    while (p < f->end && *p != '"') {
        unsigned char c = (unsigned char)*p;
        if (c < 0x20 || c >= 0x80 || c == '\\')
            return false;
        if (n + 1 < cap)
            k[n] = (char)c;
        n++;
        p++;
    }
    if (p >= f->end)
        return false;
    k[n + 1 < cap ? n : 0] = '\0';
    f->p = p + 1;
    return true;
}

/* A number by JSON's grammar; exponents and integers of more than 18 digits
 * (jansson may refuse them as too big) are left to jansson. */
static bool fp_number(struct fp *f, bool *is_int, long long *v)
{
    const char *p = f->p, *end = f->end, *start = p;
    bool neg = false;
    long long x = 0;
    if (p < end && *p == '-') {
        neg = true;
        p++;
    }
    if (p >= end)
        return false;
    if (*p == '0') {
        p++;
    } else if (*p >= '1' && *p <= '9') {
        int digits = 0;
        while (p < end && *p >= '0' && *p <= '9') {
            if (++digits > 18)
                return false;
            x = x * 10 + (*p - '0');
            p++;
        }
    } else {
        return false;
    }
    bool integer = true;
    if (p < end && *p == '.') {
        integer = false;
        const char *fs = ++p;
        while (p < end && *p >= '0' && *p <= '9')
            p++;
        if (p == fs)
            return false;
    }
    if ((p < end && (*p == 'e' || *p == 'E')) || p - start > FP_MAX_NUM)
        return false;
    f->p = p;
    *is_int = integer;
    *v = neg ? -x : x;
    return true;
}

static bool fp_is_number_start(const struct fp *f)
{
    return f->p < f->end && (*f->p == '-' || (*f->p >= '0' && *f->p <= '9'));
}

/* Next member of an object whose '{' was consumed: 1 with the key read and
 * the ':' eaten, 0 at its '}', -1 on anything else. */
static int fp_member(struct fp *f, bool *first, char *k, size_t cap)
{
    if (fp_eat(f, '}'))
        return 0;
    if (!*first && !fp_eat(f, ','))
        return -1;
    *first = false;
    if (!fp_key(f, k, cap) || !fp_eat(f, ':'))
        return -1;
    fp_ws(f);
    return 1;
}

/* Check and step over any value. */
static bool fp_skip(struct fp *f, int depth)
{
    fp_ws(f);
    if (f->p >= f->end || depth > FP_MAX_DEPTH)
        return false;
    char c = *f->p;
    if (c == '"')
        return fp_string(f, NULL);
    if (c == '{') {
        f->p++;
        bool first = true;
        for (;;) {
            if (fp_eat(f, '}'))
                return true;
            if (!first && !fp_eat(f, ','))
                return false;
            first = false;
            fp_ws(f);
            if (!fp_string(f, NULL) || !fp_eat(f, ':') || !fp_skip(f, depth + 1))
                return false;
        }
    }
    if (c == '[') {
        f->p++;
        if (fp_eat(f, ']'))
            return true;
        do {
            if (!fp_skip(f, depth + 1))
                return false;
        } while (fp_eat(f, ','));
        return fp_eat(f, ']');
    }
    if (fp_is_number_start(f)) {
        bool i;
        long long v;
        return fp_number(f, &i, &v);
    }
    static const char *const lit[] = {"true", "false", "null"};
    for (size_t i = 0; i < 3; i++) {
        size_t n = strlen(lit[i]);
        if ((size_t)(f->end - f->p) >= n && memcmp(f->p, lit[i], n) == 0) {
            f->p += n;
            return true;
        }
    }
    return false;
}

/* A string member we keep: decoded into b (flag set), or any other value. */
static bool fp_keep_string(struct fp *f, struct buf *b, bool *flag)
{
    if (!fp_at(f, '"'))
        return fp_skip(f, 1);
    buf_reset(b);
    *flag = true;
    return fp_string(f, b);
}

static bool fp_usage(struct fp *f, struct fp_usage *us)
{
    if (!fp_at(f, '{'))
        return fp_skip(f, 1);
    f->p++;
    us->obj = true;
    bool first = true;
    unsigned seen = 0;
    char k[32];
    int r;
    while ((r = fp_member(f, &first, k, sizeof k)) == 1) {
        unsigned which = strcmp(k, "prompt_tokens") == 0 ? 1 : strcmp(k, "completion_tokens") == 0 ? 2 : 0;
        if (which & seen)
            return false; /* duplicate: jansson keeps the last one */
        seen |= which;
        if (which && fp_is_number_start(f)) {
            bool is_int;
            long long v;
            if (!fp_number(f, &is_int, &v))
                return false;
            if (is_int && which == 1) {
                us->pt = true;
                us->ptv = v;
            } else if (is_int) {
                us->ct = true;
                us->ctv = v;
            }
        } else if (!fp_skip(f, 2)) {
            return false;
        }
    }
    return r == 0;
}

static bool fp_delta(struct fp *f, struct oai_stream *s, struct fp_chunk *c)
{
    if (!fp_at(f, '{'))
        return fp_skip(f, 2);
    f->p++;
    bool first = true;
    unsigned seen = 0;
    char k[32];
    int r;
    while ((r = fp_member(f, &first, k, sizeof k)) == 1) {
        unsigned which = strcmp(k, "content") == 0      ? 1
                         : strcmp(k, "refusal") == 0    ? 2
                         : strcmp(k, "tool_calls") == 0 ? 4
                                                        : 0;
        if (which & seen)
            return false;
        seen |= which;
        bool ok;
        if (which == 1) {
            ok = fp_keep_string(f, &s->f_content, &c->content);
        } else if (which == 2) {
            ok = fp_keep_string(f, &s->f_refusal, &c->refusal);
        } else if (which == 4 && fp_at(f, '[')) {
            f->p++;
            ok = fp_eat(f, ']'); /* tool-call fragments: jansson's path */
        } else {
            ok = fp_skip(f, 3);
        }
        if (!ok)
            return false;
    }
    return r == 0;
}

static bool fp_choice(struct fp *f, struct oai_stream *s, struct fp_chunk *c)
{
    f->p++; /* '{' */
    bool first = true;
    unsigned seen = 0;
    char k[32];
    int r;
    while ((r = fp_member(f, &first, k, sizeof k)) == 1) {
        unsigned which = strcmp(k, "index") == 0           ? 1
                         : strcmp(k, "delta") == 0         ? 2
                         : strcmp(k, "finish_reason") == 0 ? 4
                         : strcmp(k, "usage") == 0         ? 8
                                                           : 0;
        if (which & seen)
            return false;
        seen |= which;
        bool ok;
        if (which == 1 && fp_is_number_start(f)) {
            bool is_int;
            long long v;
            /* an integer index other than 0: not choice 0 (jansson's path) */
            ok = fp_number(f, &is_int, &v) && !(is_int && v != 0);
        } else if (which == 2) {
            ok = fp_delta(f, s, c);
        } else if (which == 4) {
            ok = fp_keep_string(f, &s->f_finish, &c->finish);
        } else if (which == 8) {
            ok = fp_usage(f, &c->cu);
        } else {
            ok = fp_skip(f, 2);
        }
        if (!ok)
            return false;
    }
    return r == 0;
}

/* The whole payload; false: let jansson decide. Writes only the f_ buffers. */
static bool fp_root(struct fp *f, struct oai_stream *s, struct fp_chunk *c)
{
    if (!fp_eat(f, '{'))
        return false;
    bool first = true;
    unsigned seen = 0;
    char k[32];
    int r;
    while ((r = fp_member(f, &first, k, sizeof k)) == 1) {
        unsigned which = strcmp(k, "error") == 0     ? 1
                         : strcmp(k, "choices") == 0 ? 2
                         : strcmp(k, "usage") == 0   ? 4
                         : strcmp(k, "model") == 0   ? 8
                                                     : 0;
        if (which & seen)
            return false;
        seen |= which;
        bool ok;
        if (which == 1) {
            ok = fp_at(f, 'n') && fp_skip(f, 1); /* "error":null only */
        } else if (which == 2 && fp_at(f, '[')) {
            f->p++;
            if (fp_eat(f, ']')) {
                ok = true;
            } else {
                /* one choice, an object: several go to jansson's path */
                ok = fp_eat(f, '{') && (f->p--, fp_choice(f, s, c)) && fp_eat(f, ']');
                c->choice = true;
            }
        } else if (which == 4) {
            ok = fp_usage(f, &c->ru);
        } else if (which == 8) {
            ok = fp_keep_string(f, &s->f_model, &c->model);
        } else {
            ok = fp_skip(f, 1);
        }
        if (!ok)
            return false;
    }
    if (r != 0)
        return false;
    fp_ws(f);
    return f->p == f->end;
}

static bool fp_apply_usage(struct oai_stream *s, const struct fp_usage *us, struct oai_update *u)
{
    if (!us->obj || (!us->pt && !us->ct))
        return false;
    u->has_usage = true;
    if (us->pt)
        u->prompt_tokens = s->prompt_tokens = us->ptv;
    if (us->ct)
        u->completion_tokens = s->completion_tokens = us->ctv;
    return true;
}

/* Decode and accumulate like the jansson path below; false (nothing changed)
 * when the payload is not one of the shapes read here. */
static bool fast_feed(struct oai_stream *s, const char *data, size_t len, struct oai_update *u,
                      enum oai_feed *res)
{
    struct fp f = {data, data + len};
    struct fp_chunk c;
    memset(&c, 0, sizeof c);
    if (!fp_root(&f, s, &c))
        return false;
    s->fast_hits++;
    size_t nc = c.content ? s->f_content.len : 0, nr = c.refusal ? s->f_refusal.len : 0;
    if (nc + nr > LIMIT_MESSAGE_CONTENT - s->total) {
        *res = OAI_FEED_BAD;
        return true;
    }
    if (nc > 0 && buf_append(&s->content, s->f_content.p, nc) == 0) {
        s->total += nc;
        u->content = s->f_content.p;
        u->content_len = nc;
    }
    if (nr > 0 && buf_append(&s->refusal, s->f_refusal.p, nr) == 0) {
        s->total += nr;
        u->refusal = s->f_refusal.p;
        u->refusal_len = nr;
    }
    if (c.finish) {
        oai_replace_str(&s->finish_reason, buf_str(&s->f_finish));
        u->finish_reason = buf_str(&s->f_finish);
    }
    if (!fp_apply_usage(s, &c.ru, u) && c.choice)
        fp_apply_usage(s, &c.cu, u);
    if (c.model && s->f_model.len && s->f_model.len <= LIMIT_MODEL_NAME)
        oai_replace_str(&s->model, s->f_model.p);
    *res = OAI_FEED_OK;
    return true;
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
    enum oai_feed fr;
    if (!s->no_fast && fast_feed(s, data, len, u, &fr))
        return fr;
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
