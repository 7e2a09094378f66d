/* utf8.c - strict UTF-8 validation (RFC 3629 / Unicode Table 3-7) and
 * truncation on character boundaries; see utf8.h.
 */
#include "utf8.h"

bool utf8_valid(const char *s, size_t n)
{
    const unsigned char *p = (const unsigned char *)s;
    size_t i = 0;
    while (i < n) {
        unsigned char c = p[i];
        if (c < 0x80) {
            i++;
            continue;
        }
        size_t need;
        unsigned char lo = 0x80, hi = 0xBF; /* allowed range of the 2nd byte */
        if (c >= 0xC2 && c <= 0xDF) {
            need = 1;
        } else if (c >= 0xE0 && c <= 0xEF) {
            need = 2;
            if (c == 0xE0)
                lo = 0xA0; /* overlong */
            else if (c == 0xED)
                hi = 0x9F; /* surrogates */
        } else if (c >= 0xF0 && c <= 0xF4) {
            need = 3;
            if (c == 0xF0)
                lo = 0x90; /* overlong */
            else if (c == 0xF4)
                hi = 0x8F; /* > U+10FFFF */
        } else {
            return false; /* 80..C1 (stray continuation, overlong), F5..FF */
        }
        if (n - i - 1 < need)
            return false; /* truncated */
        if (p[i + 1] < lo || p[i + 1] > hi)
            return false;
        for (size_t k = 2; k <= need; k++)
            if ((p[i + k] & 0xC0) != 0x80)
                return false;
        i += need + 1;
    }
    return true;
}

static size_t seq_len(unsigned char c)
{
    if (c < 0x80)
        return 1;
    if ((c & 0xE0) == 0xC0)
        return 2;
    if ((c & 0xF0) == 0xE0)
        return 3;
    if ((c & 0xF8) == 0xF0)
        return 4;
    return 1; /* continuation or invalid lead: treat as a unit of its own */
}

size_t utf8_truncate(const char *s, size_t n, size_t max)
{
    const unsigned char *p = (const unsigned char *)s;
    if (n <= max)
        return n;
    if ((p[max] & 0xC0) != 0x80)
        return max; /* p[max] starts a character (or is not part of one) */
    /* p[max] is a continuation byte: find its lead within 3 bytes back. */
    for (size_t back = 1; back <= 3 && back <= max; back++) {
        unsigned char c = p[max - back];
        if ((c & 0xC0) == 0x80)
            continue;
        return max - back + seq_len(c) > max ? max - back : max;
    }
    return max; /* no lead nearby: invalid bytes, nothing well-formed to split */
}
