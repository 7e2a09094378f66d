/* sse_parse.h - incremental text/event-stream parser (WHATWG EventSource
 * rules). Feed it the response body in pieces of any size; it calls back once
 * per dispatched event. Every line and every event's data is capped, so a
 * hostile upstream cannot grow memory without bound.
 */
#ifndef COAI_SSE_PARSE_H
#define COAI_SSE_PARSE_H

#include <stddef.h>

struct sse_parser;

/* Called once per dispatched event. All pointers are BORROWED and valid only
 * during the call; copy what you keep.
 *   event: the "event:" field, or "message" when there was none (never NULL)
 *   data:  the data lines joined with "\n", NUL-terminated, data_len bytes
 *          (data may itself contain NUL bytes; trust data_len)
 *   id:    the last event ID (persists across events, as the spec says), or
 *          NULL when none was ever set or it was reset with an empty "id:"
 * Return 0 to go on; any other value stops the current sse_parser_feed call,
 * which returns that value. The bytes of that call after the event are
 * dropped; the parser itself stays usable (it is between events). */
typedef int (*sse_event_cb)(void *arg, const char *event, const char *data,
                            size_t data_len, const char *id);

/* max_line caps one line (without its terminator) and the joined data of one
 * event, e.g. LIMIT_UPSTREAM_SSE_LINE. Returns a NEW parser (never NULL). */
struct sse_parser *sse_parser_new(size_t max_line, sse_event_cb cb, void *arg);

/* Frees the parser; NULL-safe. An incomplete event is discarded. */
void sse_parser_free(struct sse_parser *p);

/* Parse n more bytes (bytes may be NULL when n is 0). Returns 0 when all of
 * them were consumed; -1 when a line or an event's data went over max_line
 * (the parser is then failed for good: every later call returns -1); or the
 * non-zero value a callback returned. */
int sse_parser_feed(struct sse_parser *p, const char *bytes, size_t n);

/* The last valid "retry:" value in milliseconds, or -1 if none was seen. */
long long sse_parser_retry(const struct sse_parser *p);

#endif
