/* fuzz_ssr.c - libFuzzer harness for http/ssr.c, the server-side markdown
 * renderer of a chat's first screen (md4c parses, ssr.c writes the HTML).
 * Whatever the markdown, a rendering that succeeds must be inert: every '<'
 * opens one of the renderer's own tags (text has its '<' escaped), no tag
 * carries an on*= attribute (quoted values left out), and every href is
 * http:, https: or mailto:. Inputs over the size cap must be refused. The
 * same text as a message of a chat block must give a block that holds. */
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <jansson.h>

#include "http/ssr.h"
#include "lib/buf.h"

#define CHECK(cond, html)                                                                   \
    do {                                                                                    \
        if (!(cond)) {                                                                      \
            fprintf(stderr, "fuzz_ssr: invariant failed at line %d: %s\n%s\n", __LINE__,   \
                    #cond, (html));                                                         \
            abort();                                                                        \
        }                                                                                   \
    } while (0)

static const char *const tags[] = {
    "p", "h1", "h2", "h3", "h4", "h5", "h6", "em", "strong", "del", "code", "pre", "ul", "ol",
    "li", "blockquote", "hr", "br", "a", "table", "thead", "tbody", "tr", "th", "td", "div",
    "span", "button", "article", "nav", "main", "header", "textarea"};

static bool known_tag(const char *p, size_t n)
{
    if (n && p[0] == '/') {
        p++;
        n--;
    }
    for (size_t i = 0; i < sizeof tags / sizeof *tags; i++)
        if (strlen(tags[i]) == n && memcmp(p, tags[i], n) == 0)
            return true;
    return false;
}

static bool on_attr(const char *s)
{
    /* [space / ' "] on [a-z]+ [space]* = */
    for (const char *p = s; *p; p++) {
        if (!(*p == ' ' || *p == '\t' || *p == '\n' || *p == '/' || *p == '\''))
            continue;
        if ((p[1] | 0x20) != 'o' || (p[2] | 0x20) != 'n')
            continue;
        const char *q = p + 3;
        size_t k = 0;
        while (((*q | 0x20) >= 'a' && (*q | 0x20) <= 'z')) {
            q++;
            k++;
        }
        while (*q == ' ' || *q == '\t' || *q == '\n')
            q++;
        if (k && *q == '=')
            return true;
    }
    return false;
}

static void check_html(const char *html, size_t len)
{
    CHECK(strlen(html) == len, html);
    for (const char *p = strchr(html, '<'); p; p = strchr(p + 1, '<')) {
        const char *end = strchr(p, '>');
        CHECK(end != NULL, html);
        size_t n = 0;
        while (p[1 + n] && p[1 + n] != ' ' && p[1 + n] != '>')
            n++;
        CHECK(known_tag(p + 1, n), p);
        /* the attribute names: quoted values left out */
        size_t tl = (size_t)(end - p);
        char *names = malloc(tl + 1);
        size_t nl = 0;
        bool quoted = false;
        for (size_t i = 0; i < tl; i++) {
            if (p[i] == '"')
                quoted = !quoted;
            else if (!quoted)
                names[nl++] = p[i];
        }
        names[nl] = '\0';
        CHECK(!quoted, p);
        CHECK(!on_attr(names), names);
        free(names);
        const char *h = strstr(p, "href=\"");
        if (h && h < end)
            CHECK(strncasecmp(h + 6, "http://", 7) == 0 || strncasecmp(h + 6, "https://", 8) == 0 ||
                      strncasecmp(h + 6, "mailto:", 7) == 0,
                  p);
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct buf out;
    buf_init(&out, SSR_BUDGET);
    int r = ssr_markdown(&out, (const char *)data, size);
    if (size > SSR_MD_MAX)
        CHECK(r == -1, "");
    if (r == 0)
        check_html(buf_str(&out), out.len);
    buf_cleanup(&out);

    /* as the last message of a chat (valid UTF-8 only: the store holds no other) */
    json_t *s = json_stringn((const char *)data, size);
    if (!s)
        return 0;
    json_t *parts = json_pack("[{s:s,s:o}]", "type", "text", "text", s);
    struct store_message m;
    memset(&m, 0, sizeof m);
    snprintf(m.id, sizeof m.id, "01a25000-0000-7000-8000-000000000001");
    snprintf(m.role, sizeof m.role, size % 2 ? "user" : "assistant");
    snprintf(m.status, sizeof m.status, "complete");
    m.content = json_dumps(parts, JSON_COMPACT);
    m.prompt_tokens = m.completion_tokens = -1;
    json_decref(parts);
    size_t len = 0;
    char *block = ssr_chat_block("01a25000-0000-7000-8000-0000000000ff", "t", &m, 1, NULL,
                                 SSR_BUDGET, &len);
    if (block) {
        CHECK(len <= SSR_BUDGET, "");
        check_html(block, len);
        free(block);
    }
    free(m.content);
    return 0;
}
