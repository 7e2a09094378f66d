/* utf8.h - strict UTF-8 validation and character-safe truncation. Used on
 * every string that comes from a client or a provider before it is stored or
 * cut to a cap, so nothing we keep or send is malformed UTF-8.
 */
#ifndef COAI_UTF8_H
#define COAI_UTF8_H

#include "common.h"

/* True if p[0..n) is well-formed UTF-8 (Unicode 15, Table 3-7): rejects
 * overlong forms (C0, C1, E0 80..9F, F0 80..8F), UTF-16 surrogates
 * (ED A0..BF), code points above U+10FFFF (F4 90.., F5..FF), stray
 * continuation bytes and sequences truncated by the end of the input.
 * U+0000 is valid UTF-8 and accepted; callers that need C strings reject
 * NUL bytes separately. n == 0 is valid. */
bool utf8_valid(const char *p, size_t n);

/* Largest length <= max at which p[0..n) can be cut without splitting a
 * character: n itself if n <= max, else max moved back to the start of the
 * character that straddles it (at most 3 bytes back). For valid input the
 * prefix p[0..result) is valid UTF-8. For invalid input it never returns
 * more than max and never splits a well-formed sequence. */
size_t utf8_truncate(const char *p, size_t n, size_t max);

#endif
