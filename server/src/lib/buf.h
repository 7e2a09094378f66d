/* buf.h - a growable, always NUL-terminated byte buffer with a hard cap.
 *
 * struct buf is embedded by callers; its fields belong to this module (read
 * them, do not write them). Every buffer has a maximum size fixed at
 * buf_init: appends past it fail with -1 and leave the buffer unchanged, so a
 * size an outsider controls can never grow memory without bound.
 */
#ifndef COAI_BUF_H
#define COAI_BUF_H

#include "common.h"

struct buf {
    char *p;      /* bytes, NUL-terminated; NULL until the first append */
    size_t len;   /* bytes used, excluding the NUL */
    size_t cap;   /* bytes allocated */
    size_t max;   /* hard limit on len */
};

void buf_init(struct buf *b, size_t max);
void buf_cleanup(struct buf *b);             /* frees; buffer is empty again */
void buf_reset(struct buf *b);               /* len = 0, keeps memory */
/* Make room for extra more bytes (one allocation for a size known ahead);
 * -1 when that would pass the cap. */
int buf_reserve(struct buf *b, size_t extra);
int buf_append(struct buf *b, const void *p, size_t n);
int buf_append_str(struct buf *b, const char *s);
COAI_PRINTF(2, 3) int buf_printf(struct buf *b, const char *fmt, ...);
/* Append s (NUL-terminated, UTF-8 expected) as a JSON string literal with
 * its quotes: '"' and '\\' escaped, control bytes as \u00XX, everything else
 * as is. -1 (buffer unchanged past what fit) when the cap is reached. */
int buf_append_json_str(struct buf *b, const char *s);
/* Remove the first n bytes. */
void buf_consume(struct buf *b, size_t n);
/* Transfer ownership of the bytes to the caller (never NULL: "" when empty);
 * the buffer is left empty and reusable. */
char *buf_take(struct buf *b, size_t *len);
/* Pointer to the bytes; "" when empty (never NULL). */
const char *buf_str(const struct buf *b);

#endif
