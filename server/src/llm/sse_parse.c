/* sse_parse.c - incremental text/event-stream parser; see sse_parse.h.
 * Bytes are split into lines (LF, CR or CRLF, even when the CRLF straddles
 * two feeds); a line is only interpreted once it is complete, so splits in
 * the middle of a UTF-8 sequence or a field name do not matter.
 */
#include "sse_parse.h"

#include <stdlib.h>
#include <string.h>

#include "../lib/buf.h"
#include "../lib/common.h"

static const unsigned char sse_bom[3] = { 0xEF, 0xBB, 0xBF };

struct sse_parser {
    sse_event_cb cb;
    void *arg;
    size_t max;
    struct buf line;   /* the incomplete line carried over between feeds */
    struct buf data;   /* data lines of the current event, joined by "\n" */
    struct buf event;  /* event type of the current event ("" = message) */
    struct buf id;     /* last event ID; persists across events */
    bool data_set;     /* at least one data field in the current event */
    bool last_cr;      /* the previous byte was a CR that ended a line */
    bool bom_done;     /* the stream start has been checked for a BOM */
    unsigned bom_seen; /* BOM bytes matched so far at the stream start */
    bool failed;       /* a cap was exceeded; the parser is dead */
    long long retry;
};

struct sse_parser *sse_parser_new(size_t max_line, sse_event_cb cb, void *arg)
{
    struct sse_parser *p = xcalloc(1, sizeof(*p));
    p->cb = cb;
    p->arg = arg;
    p->max = max_line;
    buf_init(&p->line, max_line);
    buf_init(&p->data, max_line);
    buf_init(&p->event, max_line);
    buf_init(&p->id, max_line);
    p->retry = -1;
    return p;
}

void sse_parser_free(struct sse_parser *p)
{
    if (!p)
        return;
    buf_cleanup(&p->line);
    buf_cleanup(&p->data);
    buf_cleanup(&p->event);
    buf_cleanup(&p->id);
    free(p);
}

long long sse_parser_retry(const struct sse_parser *p)
{
    return p->retry;
}

static int sse_fail(struct sse_parser *p)
{
    p->failed = true;
    return -1;
}

static bool sse_field_is(const char *f, size_t flen, const char *name)
{
    size_t n = strlen(name);
    return flen == n && memcmp(f, name, n) == 0;
}

static int sse_dispatch(struct sse_parser *p)
{
    if (!p->data_set) {
        buf_reset(&p->event);
        return 0;
    }
    const char *type = p->event.len ? buf_str(&p->event) : "message";
    const char *id = p->id.len ? buf_str(&p->id) : NULL;
    int r = p->cb(p->arg, type, buf_str(&p->data), p->data.len, id);
    buf_reset(&p->data);
    buf_reset(&p->event);
    p->data_set = false;
    return r;
}

static void sse_set_retry(struct sse_parser *p, const char *v, size_t n)
{
    long long ms = 0;
    if (n == 0)
        return;
    for (size_t i = 0; i < n; i++) {
        if (v[i] < '0' || v[i] > '9')
            return;
        if (ms > (9223372036854775807LL - 9) / 10)
            return; /* absurd: ignore like an invalid value */
        ms = ms * 10 + (v[i] - '0');
    }
    p->retry = ms;
}

/* Interpret one complete line (terminator already removed). */
static int sse_line(struct sse_parser *p, const char *line, size_t len)
{
    if (len == 0)
        return sse_dispatch(p);
    if (line[0] == ':')
        return 0; /* comment / keep-alive */

    const char *colon = memchr(line, ':', len);
    size_t flen = colon ? (size_t)(colon - line) : len;
    const char *val = colon ? colon + 1 : line + len;
    size_t vlen = colon ? len - flen - 1 : 0;
    if (vlen > 0 && val[0] == ' ') {
        val++;
        vlen--;
    }

    if (sse_field_is(line, flen, "data")) {
        if (p->data_set && buf_append(&p->data, "\n", 1) != 0)
            return sse_fail(p);
        if (buf_append(&p->data, val, vlen) != 0)
            return sse_fail(p);
        p->data_set = true;
    } else if (sse_field_is(line, flen, "event")) {
        buf_reset(&p->event);
        if (buf_append(&p->event, val, vlen) != 0)
            return sse_fail(p);
    } else if (sse_field_is(line, flen, "id")) {
        if (memchr(val, '\0', vlen) == NULL) {
            buf_reset(&p->id);
            if (buf_append(&p->id, val, vlen) != 0)
                return sse_fail(p);
        }
    } else if (sse_field_is(line, flen, "retry")) {
        sse_set_retry(p, val, vlen);
    }
    return 0; /* unknown fields are ignored */
}

int sse_parser_feed(struct sse_parser *p, const char *bytes, size_t n)
{
    if (p->failed)
        return -1;
    size_t i = 0;

    /* A BOM may only appear at the very start, possibly split over feeds. */
    while (!p->bom_done && i < n) {
        if ((unsigned char)bytes[i] == sse_bom[p->bom_seen]) {
            i++;
            if (++p->bom_seen == sizeof(sse_bom))
                p->bom_done = true;
            continue;
        }
        p->bom_done = true;
        /* Not a BOM after all: the matched bytes belong to the first line. */
        if (p->bom_seen && buf_append(&p->line, sse_bom, p->bom_seen) != 0)
            return sse_fail(p);
    }

    while (i < n) {
        if (p->last_cr) {
            p->last_cr = false;
            if (bytes[i] == '\n') { /* second half of a CRLF */
                i++;
                continue;
            }
        }
        const char *s = bytes + i;
        size_t rem = n - i;
        const char *lf = memchr(s, '\n', rem);
        size_t end = lf ? (size_t)(lf - s) : rem;
        const char *cr = memchr(s, '\r', end);
        if (cr)
            end = (size_t)(cr - s);

        if (end == rem) { /* no terminator yet: keep the partial line */
            if (buf_append(&p->line, s, rem) != 0)
                return sse_fail(p);
            break;
        }

        const char *line;
        size_t len;
        if (p->line.len > 0) {
            if (buf_append(&p->line, s, end) != 0)
                return sse_fail(p);
            line = p->line.p;
            len = p->line.len;
        } else {
            if (end > p->max)
                return sse_fail(p);
            line = s; /* whole line inside this feed: no copy */
            len = end;
        }
        p->last_cr = s[end] == '\r';
        i += end + 1;

        int r = sse_line(p, line, len);
        buf_reset(&p->line);
        if (r != 0)
            return r;
    }
    return 0;
}
