/* test_utf8.c - unit tests for lib/utf8: hand-picked edge cases plus an
 * exhaustive comparison with a reference decoder over all 1-3 byte inputs,
 * and truncation checked against brute force. Prints "unit-utf8: ...".
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <string.h>

#include "lib/utf8.h"

#define V(s) utf8_valid(s, sizeof(s) - 1)

static void test_valid_cases(void **state)
{
    assert_true(utf8_valid("", 0));
    assert_true(utf8_valid(NULL, 0));
    assert_true(V("hello, world"));
    assert_true(V("\x00"));                      /* U+0000 is UTF-8 */
    assert_true(V("\x7f"));
    assert_true(V("\xc2\x80"));                  /* U+0080 */
    assert_true(V("\xdf\xbf"));                  /* U+07FF */
    assert_true(V("\xe0\xa0\x80"));              /* U+0800 */
    assert_true(V("\xed\x9f\xbf"));              /* U+D7FF */
    assert_true(V("\xee\x80\x80"));              /* U+E000 */
    assert_true(V("\xef\xbf\xbf"));              /* U+FFFF */
    assert_true(V("\xef\xbb\xbf"));              /* BOM */
    assert_true(V("\xf0\x90\x80\x80"));          /* U+10000 */
    assert_true(V("\xf4\x8f\xbf\xbf"));          /* U+10FFFF */
    assert_true(V("caf\xc3\xa9 \xe2\x82\xac \xf0\x9f\x98\x80 \xe4\xb8\xad\xe6\x96\x87"));
}

static void test_invalid_cases(void **state)
{
    /* overlongs */
    assert_false(V("\xc0\x80"));
    assert_false(V("\xc0\xaf"));
    assert_false(V("\xc1\xbf"));
    assert_false(V("\xe0\x80\x80"));
    assert_false(V("\xe0\x9f\xbf"));
    assert_false(V("\xf0\x80\x80\x80"));
    assert_false(V("\xf0\x8f\xbf\xbf"));
    /* surrogates */
    assert_false(V("\xed\xa0\x80"));
    assert_false(V("\xed\xbf\xbf"));
    assert_false(V("\xed\xa0\xbd\xed\xb8\x80")); /* CESU-8 pair */
    /* above U+10FFFF and invalid leads */
    assert_false(V("\xf4\x90\x80\x80"));
    assert_false(V("\xf5\x80\x80\x80"));
    assert_false(V("\xf7\xbf\xbf\xbf"));
    assert_false(V("\xf8\x88\x80\x80\x80"));
    assert_false(V("\xfc\x84\x80\x80\x80\x80"));
    assert_false(V("\xfe"));
    assert_false(V("\xff"));
    /* stray continuation bytes */
    assert_false(V("\x80"));
    assert_false(V("\xbf"));
    assert_false(V("a\x80" "b"));
    assert_false(V("\xc3\xa9\xa9"));
    /* truncated sequences */
    assert_false(V("\xc3"));
    assert_false(V("\xe2\x82"));
    assert_false(V("\xf0\x9f\x98"));
    assert_false(V("abc\xf0"));
    assert_false(V("\xe2\x82" "A"));
    assert_false(V("\xf0\x9f\x98" "A"));
    assert_false(V("\xc3" "A"));
    /* the length is honoured: a valid char cut by n */
    assert_false(utf8_valid("\xe2\x82\xac", 2));
    assert_true(utf8_valid("\xe2\x82\xac\xff", 3));
}

/* Reference: decode by bit pattern, then apply the rules (minimal form, no
 * surrogates, <= U+10FFFF). Returns the sequence length or 0 if invalid. */
static size_t ref_one(const unsigned char *p, size_t n)
{
    unsigned char c = p[0];
    size_t len;
    uint32_t cp;
    if (c < 0x80)
        return 1;
    else if ((c & 0xE0) == 0xC0) { len = 2; cp = c & 0x1F; }
    else if ((c & 0xF0) == 0xE0) { len = 3; cp = c & 0x0F; }
    else if ((c & 0xF8) == 0xF0) { len = 4; cp = c & 0x07; }
    else return 0;
    if (n < len)
        return 0;
    for (size_t k = 1; k < len; k++) {
        if ((p[k] & 0xC0) != 0x80)
            return 0;
        cp = cp << 6 | (p[k] & 0x3F);
    }
    static const uint32_t minv[5] = {0, 0, 0x80, 0x800, 0x10000};
    if (cp < minv[len] || cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF))
        return 0;
    return len;
}

static bool ref_valid(const unsigned char *p, size_t n)
{
    size_t i = 0;
    while (i < n) {
        size_t l = ref_one(p + i, n - i);
        if (!l)
            return false;
        i += l;
    }
    return true;
}

static void test_exhaustive_1_to_3_bytes(void **state)
{
    unsigned char b[3];
    for (unsigned x = 0; x < 256; x++) {
        b[0] = (unsigned char)x;
        if (utf8_valid((char *)b, 1) != ref_valid(b, 1))
            fail_msg("1-byte %02x", x);
    }
    for (unsigned x = 0; x < 65536; x++) {
        b[0] = (unsigned char)(x >> 8);
        b[1] = (unsigned char)x;
        if (utf8_valid((char *)b, 2) != ref_valid(b, 2))
            fail_msg("2-byte %04x", x);
    }
    size_t nvalid = 0;
    for (unsigned x = 0; x < (1u << 24); x++) {
        b[0] = (unsigned char)(x >> 16);
        b[1] = (unsigned char)(x >> 8);
        b[2] = (unsigned char)x;
        bool v = utf8_valid((char *)b, 3);
        if (v != ref_valid(b, 3))
            fail_msg("3-byte %06x", x);
        nvalid += v;
    }
    assert_true(nvalid > 0);
}

static void test_four_byte_sweep(void **state)
{
    /* every lead F0..FF x every 2nd byte, with interesting 3rd/4th bytes */
    static const unsigned char tail[] = {0x00, 0x41, 0x7f, 0x80, 0x8f, 0x90, 0xbf, 0xc0, 0xff};
    unsigned char b[4];
    for (unsigned l = 0xf0; l <= 0xff; l++)
        for (unsigned s = 0; s < 256; s++)
            for (size_t t = 0; t < sizeof tail; t++)
                for (size_t u = 0; u < sizeof tail; u++) {
                    b[0] = (unsigned char)l;
                    b[1] = (unsigned char)s;
                    b[2] = tail[t];
                    b[3] = tail[u];
                    if (utf8_valid((char *)b, 4) != ref_valid(b, 4))
                        fail_msg("4-byte %02x%02x%02x%02x", b[0], b[1], b[2], b[3]);
                }
    /* and every code point U+10000..U+10FFFF encodes to something valid */
    for (uint32_t cp = 0x10000; cp <= 0x10FFFF; cp++) {
        b[0] = (unsigned char)(0xF0 | cp >> 18);
        b[1] = (unsigned char)(0x80 | ((cp >> 12) & 0x3F));
        b[2] = (unsigned char)(0x80 | ((cp >> 6) & 0x3F));
        b[3] = (unsigned char)(0x80 | (cp & 0x3F));
        if (!utf8_valid((char *)b, 4))
            fail_msg("U+%04X", (unsigned)cp);
    }
}

/* Brute force: largest L <= max with p[0..L) valid (p valid). */
static size_t ref_truncate(const char *p, size_t n, size_t max)
{
    if (n <= max)
        return n;
    for (size_t l = max;; l--) {
        if (utf8_valid(p, l))
            return l;
        if (l == 0)
            return 0;
    }
}

static void test_truncate(void **state)
{
    const char *s = "a\xc3\xa9\xe2\x82\xac\xf0\x9f\x98\x80z\xf4\x8f\xbf\xbf\xc2\x80";
    size_t n = strlen(s);
    for (size_t max = 0; max <= n + 2; max++) {
        size_t r = utf8_truncate(s, n, max);
        assert_true(r <= max || (max >= n && r == n));
        assert_int_equal(r, ref_truncate(s, n, max));
        assert_true(utf8_valid(s, r));
    }
    /* explicit cases */
    assert_int_equal(utf8_truncate("abc", 3, 10), 3);
    assert_int_equal(utf8_truncate("abc", 3, 3), 3);
    assert_int_equal(utf8_truncate("abc", 3, 2), 2);
    assert_int_equal(utf8_truncate("abc", 3, 0), 0);
    assert_int_equal(utf8_truncate("\xe2\x82\xac", 3, 2), 0);
    assert_int_equal(utf8_truncate("\xe2\x82\xac", 3, 1), 0);
    assert_int_equal(utf8_truncate("x\xf0\x9f\x98\x80", 5, 4), 1);
    assert_int_equal(utf8_truncate("x\xf0\x9f\x98\x80y", 6, 5), 5);
    assert_int_equal(utf8_truncate("", 0, 0), 0);
}

static void test_truncate_invalid_input(void **state)
{
    /* never more than max, never splits a well-formed char, terminates */
    assert_int_equal(utf8_truncate("\x80\x80\x80\x80\x80", 5, 3), 3);
    assert_int_equal(utf8_truncate("a\x80\x80", 3, 2), 2);
    assert_int_equal(utf8_truncate("\xe2\x41\x80\x80", 4, 2), 2);
    assert_int_equal(utf8_truncate("\xff\x80\x80", 3, 1), 1);
    assert_int_equal(utf8_truncate("\xc3\xa9\x80", 3, 2), 2);
    /* random-ish bytes: result <= max always */
    unsigned char b[64];
    uint32_t x = 12345;
    for (int round = 0; round < 2000; round++) {
        for (size_t i = 0; i < sizeof b; i++) {
            x = x * 1103515245u + 12345u;
            b[i] = (unsigned char)(x >> 16);
        }
        for (size_t max = 0; max < sizeof b; max++) {
            size_t r = utf8_truncate((char *)b, sizeof b, max);
            assert_true(r <= max && r + 3 >= max);
        }
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_valid_cases),
        cmocka_unit_test(test_invalid_cases),
        cmocka_unit_test(test_exhaustive_1_to_3_bytes),
        cmocka_unit_test(test_four_byte_sweep),
        cmocka_unit_test(test_truncate),
        cmocka_unit_test(test_truncate_invalid_input),
    };
    int failed = cmocka_run_group_tests(tests, NULL, NULL);
    int total = (int)COAI_ARRAY_LEN(tests);
    printf("unit-utf8: %d passed, %d failed\n", failed > total ? 0 : total - failed, failed);
    return failed ? 1 : 0;
}
