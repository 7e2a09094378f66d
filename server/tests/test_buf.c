/* test_buf.c - struct buf: caps are hard, take transfers ownership, consume
 * and printf keep the NUL terminator. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <cmocka.h>

#include "lib/buf.h"
#include "lib/ids.h"

static void test_append_and_cap(void **state)
{
    struct buf b;
    buf_init(&b, 8);
    assert_string_equal(buf_str(&b), "");
    assert_int_equal(buf_append(&b, "abcd", 4), 0);
    assert_int_equal(buf_append_str(&b, "efgh"), 0);
    assert_int_equal(b.len, 8);
    /* one byte over the cap fails and leaves the buffer unchanged */
    assert_int_equal(buf_append(&b, "i", 1), -1);
    assert_int_equal(b.len, 8);
    assert_string_equal(b.p, "abcdefgh");
    buf_cleanup(&b);
    assert_null(b.p);
}

static void test_printf_consume_take(void **state)
{
    struct buf b;
    buf_init(&b, 1024);
    assert_int_equal(buf_printf(&b, "%d-%s", 42, "x"), 0);
    assert_string_equal(b.p, "42-x");
    buf_consume(&b, 3);
    assert_string_equal(b.p, "x");
    size_t len;
    char *s = buf_take(&b, &len);
    assert_int_equal(len, 1);
    assert_string_equal(s, "x");
    free(s);
    assert_null(b.p);
    assert_int_equal(b.len, 0);
    /* reusable after take */
    assert_int_equal(buf_append_str(&b, "again"), 0);
    buf_reset(&b);
    assert_string_equal(buf_str(&b), "");
    buf_cleanup(&b);
    /* printf past the cap fails */
    buf_init(&b, 4);
    assert_int_equal(buf_printf(&b, "%s", "toolong"), -1);
    assert_int_equal(b.len, 0);
    buf_cleanup(&b);
}

static void test_json_str(void **state)
{
    (void)state;
    struct buf b;
    buf_init(&b, 1024);
    assert_int_equal(buf_append_json_str(&b, "plain é ✓"), 0);
    assert_string_equal(buf_str(&b), "\"plain é ✓\"");
    buf_reset(&b);
    assert_int_equal(buf_append_json_str(&b, "a\"b\\c\n\x01\x1f"), 0);
    assert_string_equal(buf_str(&b), "\"a\\\"b\\\\c\\u000a\\u0001\\u001f\"");
    buf_reset(&b);
    assert_int_equal(buf_append_json_str(&b, ""), 0);
    assert_string_equal(buf_str(&b), "\"\"");
    buf_cleanup(&b);
    /* the cap holds */
    buf_init(&b, 4);
    assert_int_equal(buf_append_json_str(&b, "abcdef"), -1);
    assert_true(b.len <= 4);
    buf_cleanup(&b);
}

static void test_ids(void **state)
{
    char a[IDS_LEN + 1], b[IDS_LEN + 1];
    ids_new(a);
    ids_new(b);
    assert_true(ids_valid(a));
    assert_true(ids_valid(b));
    assert_string_not_equal(a, b);
    assert_int_equal(a[14], '7'); /* version 7 */
    assert_false(ids_valid("../../etc/passwd"));
    assert_false(ids_valid("0190a0b0-0000-7000-8000-00000000000G"));
    assert_false(ids_valid(NULL));
    /* time-ordered: a later id sorts after an earlier one (ms resolution) */
    struct timespec ts = {0, 2000000};
    nanosleep(&ts, NULL);
    ids_new(b);
    assert_true(strcmp(a, b) < 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_append_and_cap),
        cmocka_unit_test(test_printf_consume_take),
        cmocka_unit_test(test_ids),
        cmocka_unit_test(test_json_str),
    };
    int failed = cmocka_run_group_tests(tests, NULL, NULL);
    int total = (int)(sizeof tests / sizeof tests[0]);
    printf("unit-buf: %d passed, %d failed\n", total - failed, failed);
    return failed ? 1 : 0;
}
