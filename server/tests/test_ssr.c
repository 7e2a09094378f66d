/* test_ssr.c - unit tests for http/ssr: the markdown renderer's output for
 * each construct, escaping of everything hostile (raw HTML, event handler
 * attributes, javascript:/data: links, images, attribute injection through
 * link targets and code fence info strings), the bounds, and the chat block
 * (visible branch, order, budget). Prints "unit-ssr: ...". */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <regex.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "http/ssr.h"

static char *md(const char *src)
{
    struct buf b;
    buf_init(&b, SSR_BUDGET);
    int r = ssr_markdown(&b, src, strlen(src));
    assert_int_equal(r, 0);
    return buf_take(&b, NULL);
}

#define HAS(html, s) assert_non_null(strstr((html), (s)))
#define HASNT(html, s) assert_null(strstr((html), (s)))

/* Every '<' of the output opens one of the renderer's own tags (text has
 * its '<' escaped): no <script>/<img>/..., no on*= attribute inside a tag,
 * no href but http(s)/mailto. */
static void assert_safe(const char *html)
{
    static const char *const tags[] = {"p", "/p", "h1", "/h1", "h2", "/h2", "h3", "/h3", "h4",
        "/h4", "h5", "/h5", "h6", "/h6", "em", "/em", "strong", "/strong", "del", "/del", "code",
        "/code", "pre", "/pre", "ul", "/ul", "ol", "/ol", "li", "/li", "blockquote",
        "/blockquote", "hr", "br", "a", "/a", "table", "/table", "thead", "/thead", "tbody",
        "/tbody", "tr", "/tr", "th", "/th", "td", "/td", "div", "/div", "span", "/span",
        "button", "/button", "article", "/article", "nav", "/nav", "main", "/main", "header",
        "/header", "h1", "textarea", "/textarea"};
    regex_t on;
    assert_int_equal(regcomp(&on, "[[:space:]/\"'][oO][nN][a-zA-Z]+[[:space:]]*=",
                             REG_EXTENDED | REG_NOSUB), 0);
    for (const char *p = strchr(html, '<'); p; p = strchr(p + 1, '<')) {
        const char *end = strchr(p, '>');
        assert_non_null(end);
        size_t n = 0;
        while (p[1 + n] && p[1 + n] != ' ' && p[1 + n] != '>')
            n++;
        bool known = false;
        for (size_t i = 0; i < sizeof tags / sizeof *tags; i++)
            known = known || (strlen(tags[i]) == n && strncmp(p + 1, tags[i], n) == 0);
        if (!known)
            fail_msg("unexpected tag: %.40s", p);
        char tag[4096];
        size_t tl = (size_t)(end - p) < sizeof tag - 1 ? (size_t)(end - p) : sizeof tag - 1;
        memcpy(tag, p, tl);
        tag[tl] = '\0';
        /* attribute names only: quoted values left out */
        char names[4096];
        size_t nl = 0;
        bool quoted = false;
        for (size_t i = 0; i < tl; i++) {
            if (tag[i] == '"')
                quoted = !quoted;
            else if (!quoted)
                names[nl++] = tag[i];
        }
        names[nl] = '\0';
        if (regexec(&on, names, 0, NULL, 0) == 0)
            fail_msg("event handler attribute: %s", tag);
        const char *h = strstr(tag, "href=\"");
        if (h && strncmp(h + 6, "http://", 7) != 0 && strncmp(h + 6, "https://", 8) != 0 &&
            strncmp(h + 6, "mailto:", 7) != 0)
            fail_msg("link target: %s", tag);
    }
    regfree(&on);
}

static void test_constructs(void **state)
{
    char *h = md("# Title\n\nSome *em* and **strong** and ~~del~~ and `code`.\n\n"
                 "- a\n- b\n\n3. x\n4. y\n\n> quote\n\n---\n\n"
                 "| a | b |\n|:--|--:|\n| 1 | 2 |\n\n```python\nprint(1 < 2)\n```\n");
    HAS(h, "<h1>Title</h1>");
    HAS(h, "<em>em</em>");
    HAS(h, "<strong>strong</strong>");
    HAS(h, "<del>del</del>");
    HAS(h, "<code>code</code>");
    HAS(h, "<ul>\n<li>a</li>");
    HAS(h, "<ol start=\"3\">");
    HAS(h, "<blockquote>\n<p>quote</p>");
    HAS(h, "<hr>");
    HAS(h, "<th align=\"left\">a</th>");
    HAS(h, "<td align=\"right\">2</td>");
    HAS(h, "<pre><code class=\"language-python\" data-lang=\"python\">print(1 &lt; 2)\n</code></pre>");
    HAS(h, "<span class=\"code-lang\">python</span>");
    assert_safe(h);
    free(h);
    h = md("see https://example.com/x?a=1&b=2 and [m](mailto:a@b.c)");
    HAS(h, "<a href=\"https://example.com/x?a=1&amp;b=2\" target=\"_blank\" rel=\"noopener noreferrer\">");
    HAS(h, "<a href=\"mailto:a@b.c\"");
    free(h);
}

static void test_raw_html_is_text(void **state)
{
    char *h = md("<script>alert(1)</script>\n\nhi <img src=x onerror=alert(1)> there\n\n"
                 "<div onclick=\"x()\">d</div>");
    HAS(h, "&lt;script&gt;alert(1)&lt;/script&gt;");
    HAS(h, "&lt;img src=x onerror=alert(1)&gt;");
    assert_safe(h);
    free(h);
}

static void test_links(void **state)
{
    char *h = md("[a](javascript:alert(1)) [b](data:text/html,<script>x</script>) "
                 "[c](JaVaScRiPt:alert(1)) [d](/relative) [e](vbscript:x) "
                 "[f](jav&#x61;script:alert(1)) <javascript:alert(1)>");
    HASNT(h, "<a ");
    HAS(h, "a b c d e f");
    assert_safe(h);
    free(h);
    /* a target or title cannot leave its attribute */
    h = md("[x](https://e.com/\"onmouseover=alert(1)// \"t\\\" onclick=alert(1)\") "
           "[y](<https://e.com/a\" onclick=\"alert(1)>)");
    HASNT(h, "\" onmouseover");
    HASNT(h, "\" onclick");
    HASNT(h, "title=");
    assert_safe(h);
    free(h);
}

static void test_images(void **state)
{
    char *h = md("![cat *pic*](https://e.com/cat.png \"t\") ![](https://e.com/x.png) "
                 "![bad](javascript:alert(1)) [![in](https://e.com/i.png)](https://e.com/)");
    HAS(h, "<a href=\"https://e.com/cat.png\" class=\"md-image-link\" target=\"_blank\" "
           "rel=\"noopener noreferrer\">Image: cat pic</a>");
    HAS(h, "class=\"md-image-link\" target=\"_blank\" rel=\"noopener noreferrer\">Image</a>");
    HAS(h, "Image: bad");
    HASNT(h, "javascript");
    HASNT(h, "<img");
    assert_safe(h);
    free(h);
}

static void test_fence_info(void **state)
{
    char *h = md("```\"><script>alert(1)</script> onload=x\ncode\n```\n"
                 "``` js\" onmouseover=\"alert(1)\nx\n```\n");
    HASNT(h, "<script");
    HAS(h, "class=\"language-scriptalert1script\"");
    HAS(h, "class=\"language-js\" data-lang=\"js\"");
    assert_safe(h);
    free(h);
}

static void test_entities_and_nul(void **state)
{
    char src[] = "a &lt;b&gt; &amp; &#60;script&#62; \0 &bogus";
    struct buf b;
    buf_init(&b, 4096);
    assert_int_equal(ssr_markdown(&b, src, sizeof src - 1), 0);
    const char *h = buf_str(&b);
    HAS(h, "a &lt;b&gt; &amp; &#60;script&#62; \xEF\xBF\xBD &amp;bogus");
    assert_safe(h);
    buf_cleanup(&b);
}

static void test_bounds(void **state)
{
    struct buf b;
    /* too large an input */
    size_t n = SSR_MD_MAX + 1;
    char *big = malloc(n);
    memset(big, 'a', n);
    buf_init(&b, SSR_BUDGET);
    assert_int_equal(ssr_markdown(&b, big, n), -1);
    buf_cleanup(&b);
    free(big);
    /* too deep */
    char deep[512];
    size_t k = 0;
    for (int i = 0; i < 100; i++)
        deep[k++] = '>';
    deep[k++] = ' ';
    deep[k++] = 'x';
    buf_init(&b, SSR_BUDGET);
    assert_int_equal(ssr_markdown(&b, deep, k), -1);
    buf_cleanup(&b);
    /* output cap */
    buf_init(&b, 64);
    const char *s = "<<<<<<<<<<<<<<<<<<<<<<<<<<<<<<<<<<<<<<<<<<<<<<<<<<";
    assert_int_equal(ssr_markdown(&b, s, strlen(s)), -1);
    assert_true(b.len <= 64);
    buf_cleanup(&b);
}

static struct store_message mk(const char *id, const char *parent, const char *role,
                               const char *text)
{
    struct store_message m;
    memset(&m, 0, sizeof m);
    snprintf(m.id, sizeof m.id, "%s", id);
    snprintf(m.parent_id, sizeof m.parent_id, "%s", parent);
    snprintf(m.role, sizeof m.role, "%s", role);
    snprintf(m.status, sizeof m.status, "complete");
    size_t n = strlen(text) + 64;
    m.content = malloc(n);
    snprintf(m.content, n, "[{\"type\":\"text\",\"text\":\"%s\"}]", text);
    m.prompt_tokens = m.completion_tokens = -1;
    return m;
}

#define ID(n) "01a25000-0000-7000-8000-00000000000" #n

static void test_chat_block(void **state)
{
    struct store_message m[4] = {
        mk(ID(1), "", "user", "hello <b>"),
        mk(ID(2), ID(1), "assistant", "**hi** <script>x</script>"),
        mk(ID(3), ID(1), "assistant", "other branch"),
        mk(ID(4), ID(2), "user", "bye"),
    };
    size_t len = 0;
    char *h = ssr_chat_block(ID(9), "T<i>", m, 4, ID(4), SSR_BUDGET, &len);
    assert_non_null(h);
    assert_int_equal(strlen(h), len);
    HAS(h, "<div id=\"ssr\" class=\"ssr\" data-chat=\"" ID(9) "\">");
    HAS(h, "<h1 class=\"chat-title\">T&lt;i&gt;</h1>");
    HASNT(h, "other branch");
    const char *a = strstr(h, "data-id=\"" ID(1) "\"");
    const char *b = strstr(h, "data-id=\"" ID(2) "\"");
    const char *c = strstr(h, "data-id=\"" ID(4) "\"");
    assert_true(a && b && c && a < b && b < c);
    HAS(h, "<div class=\"bubble\" data-testid=\"message-text\">hello &lt;b&gt;</div>");
    HAS(h, "<strong>hi</strong> &lt;script&gt;x&lt;/script&gt;");
    assert_safe(h);
    free(h);
    /* a budget that holds only the last message */
    h = ssr_chat_block(ID(9), NULL, m, 4, ID(4), 1200, &len);
    assert_non_null(h);
    assert_true(len <= 1200);
    HAS(h, "data-id=\"" ID(4) "\"");
    HASNT(h, "data-id=\"" ID(1) "\"");
    free(h);
    /* nothing fits, unknown leaf, nothing at all, a bad chat id */
    assert_null(ssr_chat_block(ID(9), NULL, m, 4, ID(4), 100, &len));
    assert_null(ssr_chat_block(ID(9), NULL, m, 4, ID(8), SSR_BUDGET, &len));
    assert_null(ssr_chat_block(ID(9), NULL, m, 0, NULL, SSR_BUDGET, &len));
    assert_null(ssr_chat_block("x\"><script>", NULL, m, 4, NULL, SSR_BUDGET, &len));
    for (int i = 0; i < 4; i++)
        free(m[i].content);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_constructs),
        cmocka_unit_test(test_raw_html_is_text),
        cmocka_unit_test(test_links),
        cmocka_unit_test(test_images),
        cmocka_unit_test(test_fence_info),
        cmocka_unit_test(test_entities_and_nul),
        cmocka_unit_test(test_bounds),
        cmocka_unit_test(test_chat_block),
    };
    int failed = cmocka_run_group_tests(tests, NULL, NULL);
    int total = (int)COAI_ARRAY_LEN(tests);
    printf("unit-ssr: %d passed, %d failed\n", failed > total ? 0 : total - failed, failed);
    return failed ? 1 : 0;
}
