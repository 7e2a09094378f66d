/* openai_stream.h - decoder and accumulator for a streamed /v1/chat/completions
 * response. Feed it the data payload of every SSE event; it reports what each
 * chunk added and keeps the whole answer (text, refusal, tool calls, finish
 * reason, usage) for storing. Only choice index 0 is followed.
 */
#ifndef COAI_OPENAI_STREAM_H
#define COAI_OPENAI_STREAM_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <jansson.h>

/* Most tool calls one answer may carry; more makes the feed OAI_FEED_BAD. */
#define OAI_MAX_TOOL_CALLS 128

struct oai_stream;

enum oai_feed {
    OAI_FEED_OK = 0, /* a chunk (possibly one that changed nothing) */
    OAI_FEED_DONE,   /* the "[DONE]" sentinel */
    OAI_FEED_ERROR,  /* an {"error":{...}} frame; see the error_* fields */
    OAI_FEED_BAD,    /* not JSON, not an object, a bad tool index, or over a
                      * cap; nothing of that chunk was accumulated */
};

/* One tool-call fragment carried by a chunk. */
struct oai_tool_delta {
    int index;             /* the accumulated call it belongs to (see
                            * oai_stream_tool_index) */
    const char *id;        /* NULL when this chunk did not carry it */
    const char *name;      /* function name; NULL when not carried */
    const char *arguments; /* arguments fragment; NULL when none */
    size_t arguments_len;
};

/* What one oai_stream_feed call decoded. Every pointer is BORROWED from the
 * stream and valid until the next oai_stream_feed or oai_stream_free. */
struct oai_update {
    const char *content;   /* text delta; NULL (len 0) if none or empty */
    size_t content_len;
    const char *refusal;   /* refusal delta; NULL (len 0) if none or empty */
    size_t refusal_len;
    const struct oai_tool_delta *tool_calls; /* NULL when count is 0 */
    size_t tool_call_count;
    const char *finish_reason; /* NULL unless this chunk finished choice 0 */
    bool has_usage;            /* this chunk carried a usage object */
    int64_t prompt_tokens;     /* from that usage object, -1 if absent */
    int64_t completion_tokens;
    const char *error_message; /* OAI_FEED_ERROR only; each may be NULL */
    const char *error_type;
    const char *error_code;    /* a numeric code is given as its digits */
};

/* Returns a NEW stream (never NULL); free it with oai_stream_free. */
struct oai_stream *oai_stream_new(void);
void oai_stream_free(struct oai_stream *s); /* NULL-safe */

/* Decode one SSE data payload (len bytes, need not be NUL-terminated) and
 * accumulate it. u is always filled (zeroed first). Chunks without choices
 * and without usage (Azure prompt_filter_results, moderation) are OK no-ops;
 * unknown fields are ignored. The accumulated text, refusal and tool-call
 * strings together are capped at LIMIT_MESSAGE_CONTENT. */
enum oai_feed oai_stream_feed(struct oai_stream *s, const char *data, size_t len,
                              struct oai_update *u);

/* Tests: on (the default), the common chunk shapes are decoded without
 * jansson; off, every chunk goes through jansson. The result is the same. */
void oai_stream_set_fast_path(struct oai_stream *s, bool on);
/* How many chunks the fast path decoded (tests, benchmarks). */
unsigned long oai_stream_fast_hits(const struct oai_stream *s);

/* Accumulated state. Returned pointers are BORROWED, valid until the next
 * feed or free; strings are NUL-terminated and never NULL unless stated. */
const char *oai_stream_content(const struct oai_stream *s, size_t *len);
const char *oai_stream_refusal(const struct oai_stream *s, size_t *len);
/* Tool calls, i in [0, count), ordered by their stream index (which need not
 * start at 0). id and name are "" when never sent. */
size_t oai_stream_tool_count(const struct oai_stream *s);
int oai_stream_tool_index(const struct oai_stream *s, size_t i);
const char *oai_stream_tool_id(const struct oai_stream *s, size_t i);
const char *oai_stream_tool_name(const struct oai_stream *s, size_t i);
const char *oai_stream_tool_arguments(const struct oai_stream *s, size_t i, size_t *len);
/* The last finish_reason of choice 0, or NULL if none was sent. */
const char *oai_stream_finish_reason(const struct oai_stream *s);
/* Token counts from the last usage object; -1 when never sent. */
void oai_stream_usage(const struct oai_stream *s, int64_t *prompt_tokens,
                      int64_t *completion_tokens);
/* The last non-empty "model" of the chunks, or NULL if none. */
const char *oai_stream_model(const struct oai_stream *s);
/* Whether "[DONE]" was fed. */
bool oai_stream_done(const struct oai_stream *s);

/* The answer as content parts in our storage format, a NEW reference (never
 * NULL; the caller owns it and must json_decref it):
 *   [{"type":"text","text":...}]                 omitted when empty
 *   [{"type":"refusal","text":...}]              omitted when empty
 *   [{"type":"tool_call","id":..,"name":..,"arguments":..}] one per call
 * in that order. */
json_t *oai_stream_parts_json(const struct oai_stream *s);

#endif
