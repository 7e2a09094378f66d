/* content.h - the answer the fake provider (upstream.c) streams for turn N
 * and the client (client.c) expects back, shared so both agree byte for
 * byte. Piece 0 names the turn (so an answer landing in the wrong chat is
 * caught); the others cycle through words that exercise JSON escapes
 * (quotes, a backslash, a tab, newlines) and multi-byte UTF-8 (2, 3 and
 * 4 bytes), so the server's decoding and re-encoding is checked, not just
 * its byte counting. */
#ifndef BENCH_TURNS_CONTENT_H
#define BENCH_TURNS_CONTENT_H

#include <stdio.h>
#include <string.h>

static const char *const content_words[] = {
    " the",  " quick", " brown",        " fox",     " jumps",  " over",   " the",  " lazy",
    " dog",  " café",  " \"quoted\"",   " a\\b",    " tab\there", "\n\n", " ∑x",   " 𝄞clef",
    " end.", " 42",    " naïve",        " résumé",  " —",      " ok",     " token", " stream",
};
#define CONTENT_NWORDS (sizeof content_words / sizeof content_words[0])

/* The text of piece i (0-based) of turn n into out; returns its length. */
static inline size_t content_piece(unsigned n, unsigned i, char *out, size_t cap)
{
    if (i == 0)
        return (size_t)snprintf(out, cap, "Turn %u:", n);
    const char *w = content_words[(i * 7u + n) % CONTENT_NWORDS];
    size_t l = strlen(w);
    if (l >= cap)
        l = cap - 1;
    memcpy(out, w, l);
    out[l] = '\0';
    return l;
}

/* JSON string body (no quotes) of s into out; returns its length. */
static inline size_t content_json_escape(const char *s, size_t len, char *out, size_t cap)
{
    size_t k = 0;
    for (size_t i = 0; i < len && k + 7 < cap; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c == '"' || c == '\\') {
            out[k++] = '\\';
            out[k++] = (char)c;
        } else if (c == '\n') {
            out[k++] = '\\';
            out[k++] = 'n';
        } else if (c == '\t') {
            out[k++] = '\\';
            out[k++] = 't';
        } else if (c < 0x20) {
            k += (size_t)snprintf(out + k, cap - k, "\\u%04x", c);
        } else {
            out[k++] = (char)c;
        }
    }
    out[k] = '\0';
    return k;
}

#endif
