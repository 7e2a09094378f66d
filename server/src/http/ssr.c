/* ssr.c - see ssr.h. */
#include "ssr.h"

#include <dlfcn.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <jansson.h>
#include <md4c.h>

#include "../lib/ids.h"

/* ---- md4c, loaded on first use ------------------------------------------- */

typedef int (*md_parse_fn)(const MD_CHAR *, MD_SIZE, const MD_PARSER *, void *);
static md_parse_fn g_md_parse;
static pthread_once_t g_md_once = PTHREAD_ONCE_INIT;

static void md_load(void)
{
    /* kept loaded for the life of the process (one small library) */
    void *h = dlopen("libmd4c.so.0", RTLD_NOW | RTLD_LOCAL);
    if (!h)
        return;
    void *f = dlsym(h, "md_parse");
    memcpy(&g_md_parse, &f, sizeof f);
}

/* ---- escaping ------------------------------------------------------------- */

int ssr_escape(struct buf *out, const char *s, size_t len)
{
    size_t from = 0;
    for (size_t i = 0; i < len; i++) {
        const char *rep;
        switch (s[i]) {
        case '&': rep = "&amp;"; break;
        case '<': rep = "&lt;"; break;
        case '>': rep = "&gt;"; break;
        case '"': rep = "&quot;"; break;
        case '\'': rep = "&#39;"; break;
        case '\0': rep = "\xEF\xBF\xBD"; break;
        default: continue;
        }
        if (buf_append(out, s + from, i - from) != 0 || buf_append_str(out, rep) != 0)
            return -1;
        from = i + 1;
    }
    return buf_append(out, s + from, len - from);
}

/* A link target the app keeps (web/src/lib/sanitize.ts keeps relative ones
 * too; here only absolute http(s) and mailto, the rest is text). */
static bool url_allowed(const char *u, size_t n)
{
    static const char *const ok[] = {"http://", "https://", "mailto:"};
    for (size_t i = 0; i < sizeof ok / sizeof *ok; i++) {
        size_t k = strlen(ok[i]);
        if (n > k && strncasecmp(u, ok[i], k) == 0)
            return true;
    }
    return false;
}

/* &name; &#123; &#x1F; exactly (what md4c reports as an entity): safe to
 * pass to the browser in text, which decodes it to a character. */
static bool entity_ok(const char *s, size_t n)
{
    if (n < 3 || n > 40 || s[0] != '&' || s[n - 1] != ';')
        return false;
    size_t i = 1;
    bool hex = false;
    if (s[1] == '#') {
        i = 2;
        if (i < n - 1 && (s[i] == 'x' || s[i] == 'X')) {
            hex = true;
            i++;
        }
        if (i >= n - 1)
            return false;
    }
    for (; i < n - 1; i++) {
        char c = s[i];
        bool digit = c >= '0' && c <= '9';
        bool alpha = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z');
        bool hexd = digit || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F');
        if (s[1] == '#' ? !(hex ? hexd : digit) : !(digit || alpha))
            return false;
    }
    return true;
}

/* ---- markdown rendering ----------------------------------------------------- */

struct md_state {
    const char *doc, *doc_end; /* the copy md4c parses */
    struct buf *out;
    struct buf alt;    /* an image's text, escaped */
    int depth;         /* open blocks + spans */
    int img;           /* open images (text goes to alt) */
    int links;         /* open <a> */
    unsigned char a_open[SSR_DEPTH_MAX + 1]; /* per open A span: wrote <a> */
    int a_n;
    bool img_link;     /* the outermost open image is written as a link */
    bool failed;
};

#define OUT(st, s) (buf_append_str((st)->out, (s)) == 0 ? 0 : ((st)->failed = true, -1))

/* md4c 0.4.8 can report a range reaching past the end of the document
 * (seen by fuzz_ssr: one byte); a range inside the document is cut at its
 * end (the copy is padded with NULs, so md4c's own reads stay inside). */
static MD_SIZE clamp(const struct md_state *st, const MD_CHAR *p, MD_SIZE n)
{
    if (p >= st->doc && p <= st->doc_end && n > (MD_SIZE)(st->doc_end - p))
        return (MD_SIZE)(st->doc_end - p);
    return n;
}

static int out_attr(struct md_state *st, const MD_ATTRIBUTE *a)
{
    if (ssr_escape(st->out, a->text, clamp(st, a->text, a->size)) != 0) {
        st->failed = true;
        return -1;
    }
    return 0;
}

static int enter_block(MD_BLOCKTYPE type, void *detail, void *ud)
{
    struct md_state *st = ud;
    if (++st->depth > SSR_DEPTH_MAX) {
        st->failed = true;
        return -1;
    }
    char tmp[96];
    switch (type) {
    case MD_BLOCK_DOC: return 0;
    case MD_BLOCK_QUOTE: return OUT(st, "<blockquote>\n");
    case MD_BLOCK_UL: return OUT(st, "<ul>\n");
    case MD_BLOCK_OL: {
        const MD_BLOCK_OL_DETAIL *d = detail;
        if (d->start == 1)
            return OUT(st, "<ol>\n");
        snprintf(tmp, sizeof tmp, "<ol start=\"%u\">\n", d->start);
        return OUT(st, tmp);
    }
    case MD_BLOCK_LI: return OUT(st, "<li>");
    case MD_BLOCK_HR: return OUT(st, "<hr>\n");
    case MD_BLOCK_H: {
        const MD_BLOCK_H_DETAIL *d = detail;
        snprintf(tmp, sizeof tmp, "<h%u>", d->level >= 1 && d->level <= 6 ? d->level : 6);
        return OUT(st, tmp);
    }
    case MD_BLOCK_CODE: {
        /* as web/src/lib/markdown.ts: the first word of the info string,
         * lower-cased, [a-z0-9_+#.-] only */
        const MD_BLOCK_CODE_DETAIL *d = detail;
        char lang[33];
        size_t n = 0;
        MD_SIZE ls = clamp(st, d->lang.text, d->lang.size);
        for (MD_SIZE i = 0; i < ls && n < sizeof lang - 1; i++) {
            char c = d->lang.text[i];
            if (c >= 'A' && c <= 'Z')
                c = (char)(c - 'A' + 'a');
            if ((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '_' || c == '+' ||
                c == '#' || c == '.' || c == '-')
                lang[n++] = c;
        }
        lang[n] = '\0';
        if (OUT(st, "<div class=\"code-block\"><div class=\"code-head\"><span class=\"code-lang\">") ||
            OUT(st, n ? lang : "text") ||
            OUT(st, "</span><button type=\"button\" class=\"code-copy\" aria-label=\"Copy code\">"
                    "Copy</button></div><pre><code class=\""))
            return -1;
        if (n && (OUT(st, "language-") || OUT(st, lang)))
            return -1;
        return OUT(st, "\" data-lang=\"") || OUT(st, lang) || OUT(st, "\">") ? -1 : 0;
    }
    case MD_BLOCK_HTML: return 0; /* not with MD_FLAG_NOHTML; its text is escaped anyway */
    case MD_BLOCK_P: return OUT(st, "<p>");
    case MD_BLOCK_TABLE: return OUT(st, "<table>\n");
    case MD_BLOCK_THEAD: return OUT(st, "<thead>\n");
    case MD_BLOCK_TBODY: return OUT(st, "<tbody>\n");
    case MD_BLOCK_TR: return OUT(st, "<tr>\n");
    case MD_BLOCK_TH:
    case MD_BLOCK_TD: {
        const MD_BLOCK_TD_DETAIL *d = detail;
        const char *tag = type == MD_BLOCK_TH ? "th" : "td";
        const char *al = d->align == MD_ALIGN_LEFT     ? " align=\"left\""
                         : d->align == MD_ALIGN_CENTER ? " align=\"center\""
                         : d->align == MD_ALIGN_RIGHT  ? " align=\"right\""
                                                       : "";
        snprintf(tmp, sizeof tmp, "<%s%s>", tag, al);
        return OUT(st, tmp);
    }
    }
    return 0;
}

static int leave_block(MD_BLOCKTYPE type, void *detail, void *ud)
{
    struct md_state *st = ud;
    st->depth--;
    char tmp[16];
    switch (type) {
    case MD_BLOCK_DOC: return 0;
    case MD_BLOCK_QUOTE: return OUT(st, "</blockquote>\n");
    case MD_BLOCK_UL: return OUT(st, "</ul>\n");
    case MD_BLOCK_OL: return OUT(st, "</ol>\n");
    case MD_BLOCK_LI: return OUT(st, "</li>\n");
    case MD_BLOCK_HR: return 0;
    case MD_BLOCK_H: {
        const MD_BLOCK_H_DETAIL *d = detail;
        snprintf(tmp, sizeof tmp, "</h%u>\n", d->level >= 1 && d->level <= 6 ? d->level : 6);
        return OUT(st, tmp);
    }
    case MD_BLOCK_CODE: return OUT(st, "</code></pre></div>\n");
    case MD_BLOCK_HTML: return 0;
    case MD_BLOCK_P: return OUT(st, "</p>\n");
    case MD_BLOCK_TABLE: return OUT(st, "</table>\n");
    case MD_BLOCK_THEAD: return OUT(st, "</thead>\n");
    case MD_BLOCK_TBODY: return OUT(st, "</tbody>\n");
    case MD_BLOCK_TR: return OUT(st, "</tr>\n");
    case MD_BLOCK_TH: return OUT(st, "</th>\n");
    case MD_BLOCK_TD: return OUT(st, "</td>\n");
    }
    return 0;
}

static int enter_span(MD_SPANTYPE type, void *detail, void *ud)
{
    struct md_state *st = ud;
    if (++st->depth > SSR_DEPTH_MAX) {
        st->failed = true;
        return -1;
    }
    if (st->img) { /* inside an image: its text only */
        if (type == MD_SPAN_IMG)
            st->img++;
        return 0;
    }
    switch (type) {
    case MD_SPAN_EM: return OUT(st, "<em>");
    case MD_SPAN_STRONG: return OUT(st, "<strong>");
    case MD_SPAN_DEL: return OUT(st, "<del>");
    case MD_SPAN_CODE: return OUT(st, "<code>");
    case MD_SPAN_A: {
        const MD_SPAN_A_DETAIL *d = detail;
        bool ok = st->links == 0 && url_allowed(d->href.text, clamp(st, d->href.text, d->href.size));
        st->a_open[st->a_n++] = ok;
        if (!ok)
            return 0;
        st->links++;
        if (OUT(st, "<a href=\"") || out_attr(st, &d->href) ||
            OUT(st, "\" target=\"_blank\" rel=\"noopener noreferrer\">"))
            return -1;
        return 0;
    }
    case MD_SPAN_IMG: {
        const MD_SPAN_IMG_DETAIL *d = detail;
        st->img = 1;
        buf_reset(&st->alt);
        st->img_link = st->links == 0 && url_allowed(d->src.text, clamp(st, d->src.text, d->src.size));
        if (!st->img_link)
            return 0;
        if (OUT(st, "<a href=\"") || out_attr(st, &d->src) ||
            OUT(st, "\" class=\"md-image-link\" target=\"_blank\" rel=\"noopener noreferrer\">"))
            return -1;
        return 0;
    }
    default: return 0; /* not enabled (U, LaTeX, wiki links) */
    }
}

static int leave_span(MD_SPANTYPE type, void *detail, void *ud)
{
    (void)detail;
    struct md_state *st = ud;
    st->depth--;
    if (st->img) {
        if (type != MD_SPAN_IMG || --st->img > 0)
            return 0;
        if (OUT(st, st->alt.len ? "Image: " : "Image") ||
            buf_append(st->out, buf_str(&st->alt), st->alt.len) != 0) {
            st->failed = true;
            return -1;
        }
        return st->img_link ? OUT(st, "</a>") : 0;
    }
    switch (type) {
    case MD_SPAN_EM: return OUT(st, "</em>");
    case MD_SPAN_STRONG: return OUT(st, "</strong>");
    case MD_SPAN_DEL: return OUT(st, "</del>");
    case MD_SPAN_CODE: return OUT(st, "</code>");
    case MD_SPAN_A:
        if (st->a_n > 0 && st->a_open[--st->a_n]) {
            st->links--;
            return OUT(st, "</a>");
        }
        return 0;
    default: return 0;
    }
}

static int text_cb(MD_TEXTTYPE type, const MD_CHAR *text, MD_SIZE size, void *ud)
{
    struct md_state *st = ud;
    struct buf *to = st->img ? &st->alt : st->out;
    size = clamp(st, text, size);
    int r;
    switch (type) {
    case MD_TEXT_NULLCHAR: r = buf_append_str(to, "\xEF\xBF\xBD"); break;
    case MD_TEXT_BR: r = st->img ? buf_append_str(to, " ") : buf_append_str(to, "<br>\n"); break;
    case MD_TEXT_SOFTBR: r = buf_append_str(to, st->img ? " " : "\n"); break;
    case MD_TEXT_ENTITY:
        r = entity_ok(text, size) ? buf_append(to, text, size) : ssr_escape(to, text, size);
        break;
    default: r = ssr_escape(to, text, size); break; /* NORMAL, CODE, HTML, LATEXMATH */
    }
    if (r != 0) {
        st->failed = true;
        return -1;
    }
    return 0;
}

int ssr_markdown(struct buf *out, const char *md, size_t len)
{
    if (len > SSR_MD_MAX)
        return -1;
    pthread_once(&g_md_once, md_load);
    if (!g_md_parse)
        return -1;
    enum { PAD = 64 };
    char *doc = xmalloc(len + PAD);
    memcpy(doc, md, len);
    memset(doc + len, 0, PAD);
    struct md_state st;
    memset(&st, 0, sizeof st);
    st.doc = doc;
    st.doc_end = doc + len;
    st.out = out;
    buf_init(&st.alt, 4096);
    MD_PARSER p;
    memset(&p, 0, sizeof p);
    p.abi_version = 0;
    p.flags = MD_FLAG_NOHTML | MD_FLAG_TABLES | MD_FLAG_STRIKETHROUGH |
              MD_FLAG_PERMISSIVEURLAUTOLINKS;
    p.enter_block = enter_block;
    p.leave_block = leave_block;
    p.enter_span = enter_span;
    p.leave_span = leave_span;
    p.text = text_cb;
    int r = g_md_parse(doc, (MD_SIZE)len, &p, &st);
    buf_cleanup(&st.alt);
    free(doc);
    return r != 0 || st.failed || st.a_n != 0 || st.img != 0 ? -1 : 0;
}

/* ---- messages ---------------------------------------------------------------- */

/* The text of a message's parts (as messageText in web/src/state/turn.ts:
 * text parts joined by a blank line) and its refusal text, into text and
 * refusal (capped at SSR_MD_MAX: -1 past it). */
static int message_texts(const struct store_message *m, struct buf *text, struct buf *refusal)
{
    if (!m->content)
        return 0;
    json_t *parts = json_loads(m->content, 0, NULL);
    if (!json_is_array(parts)) {
        json_decref(parts);
        return -1;
    }
    int rc = 0;
    size_t i;
    json_t *p;
    json_array_foreach(parts, i, p) {
        const char *type = json_string_value(json_object_get(p, "type"));
        json_t *t = json_object_get(p, "text");
        if (!type || !json_is_string(t))
            continue;
        struct buf *to = strcmp(type, "text") == 0 ? text : strcmp(type, "refusal") == 0 ? refusal : NULL;
        if (!to)
            continue;
        if ((to == text && to->len && buf_append_str(to, "\n\n") != 0) ||
            buf_append(to, json_string_value(t), json_string_length(t)) != 0) {
            rc = -1;
            break;
        }
    }
    json_decref(parts);
    return rc;
}

/* One row of the list (web/src/components/MessageList.tsx Row + MessageItem). */
static int render_message(struct buf *out, const struct store_message *m)
{
    if (!ids_valid(m->id))
        return -1;
    struct buf text, refusal;
    buf_init(&text, SSR_MD_MAX);
    buf_init(&refusal, SSR_MD_MAX);
    int rc = message_texts(m, &text, &refusal);
    bool user = strcmp(m->role, "user") == 0;
    if (rc == 0 && user) {
        rc = buf_printf(out, "<div class=\"row\" data-row=\"%s\"><article class=\"msg msg-user\" "
                             "data-testid=\"message\" data-role=\"user\" data-id=\"%s\" "
                             "aria-label=\"Your message\"><div class=\"bubble\" "
                             "data-testid=\"message-text\">", m->id, m->id);
        if (rc == 0)
            rc = ssr_escape(out, buf_str(&text), text.len);
        if (rc == 0)
            rc = buf_append_str(out, "</div><div class=\"msg-actions\"></div></article></div>");
    } else if (rc == 0) {
        bool streaming = strcmp(m->status, "streaming") == 0;
        rc = buf_printf(out, "<div class=\"row\" data-row=\"%s\"><article class=\"msg msg-assistant\" "
                             "data-testid=\"message\" data-role=\"assistant\" data-status=\"",
                        m->id);
        if (rc == 0)
            rc = ssr_escape(out, m->status, strlen(m->status));
        if (rc == 0)
            rc = buf_printf(out, "\" data-id=\"%s\" aria-label=\"Assistant message\"><div "
                                 "class=\"msg-body\" data-testid=\"message-text\">", m->id);
        if (rc == 0 && text.len) {
            rc = buf_append_str(out, "<div class=\"markdown\">");
            if (rc == 0)
                rc = ssr_markdown(out, buf_str(&text), text.len);
            if (rc == 0)
                rc = buf_append_str(out, "</div>");
        }
        if (rc == 0 && refusal.len) {
            rc = buf_append_str(out, "<p class=\"refusal\">");
            if (rc == 0)
                rc = ssr_escape(out, buf_str(&refusal), refusal.len);
            if (rc == 0)
                rc = buf_append_str(out, "</p>");
        }
        if (rc == 0)
            rc = buf_append_str(out, "</div>");
        if (rc == 0 && !streaming) { /* Details in MessageItem.tsx */
            rc = buf_append_str(out, "<div class=\"msg-actions\"><span class=\"msg-details\">");
            const char *sep = "";
            if (rc == 0 && m->model && *m->model) {
                rc = ssr_escape(out, m->model, strlen(m->model));
                sep = " \xC2\xB7 ";
            }
            if (rc == 0 && (m->prompt_tokens >= 0 || m->completion_tokens >= 0)) {
                char a[24] = "?", b[24] = "?";
                if (m->prompt_tokens >= 0)
                    snprintf(a, sizeof a, "%lld", (long long)m->prompt_tokens);
                if (m->completion_tokens >= 0)
                    snprintf(b, sizeof b, "%lld", (long long)m->completion_tokens);
                rc = buf_printf(out, "%s%s in \xC2\xB7 %s out tokens", sep, a, b);
                sep = " \xC2\xB7 ";
            }
            if (rc == 0 && (strcmp(m->status, "stopped") == 0 || strcmp(m->status, "interrupted") == 0))
                rc = buf_printf(out, "%s%s", sep, m->status);
            if (rc == 0)
                rc = buf_append_str(out, "</span></div>");
        }
        if (rc == 0)
            rc = buf_append_str(out, "</article></div>");
    }
    buf_cleanup(&text);
    buf_cleanup(&refusal);
    return rc;
}

static const char shell_a[] = "<div id=\"ssr\" class=\"ssr\" data-chat=\"";
static const char shell_b[] = "\"><div class=\"app\"><nav class=\"sidebar\" aria-hidden=\"true\"></nav>"
                              "<main class=\"chat-page\"><header class=\"chat-header\"><h1 class=\"chat-title\">";
static const char shell_c[] = "</h1></header><div class=\"message-pane\"><div class=\"message-scroller "
                              "ssr-scroller\"><div class=\"message-column\">";
static const char shell_d[] = "</div></div></div><div class=\"composer-wrap\"><div class=\"composer\">"
                              "<div class=\"composer-box\"><textarea rows=\"1\" disabled "
                              "placeholder=\"Message ChatOpenAII\" aria-hidden=\"true\" tabindex=\"-1\">"
                              "</textarea></div><p class=\"composer-hint\" aria-hidden=\"true\">Enter to send \xC2\xB7 "
                              "Shift+Enter for a new line</p></div></div></main></div></div>";

char *ssr_chat_block(const char *chat_id, const char *title, const struct store_message *msgs,
                     size_t n, const char *leaf_id, size_t budget, size_t *len)
{
    if (n == 0 || !ids_valid(chat_id))
        return NULL;
    /* the branch, from its leaf up, as indices into msgs */
    size_t path[SSR_MESSAGES_MAX];
    size_t k = 0;
    size_t at = n - 1;
    if (leaf_id && *leaf_id) {
        at = n;
        for (size_t i = 0; i < n; i++)
            if (strcmp(msgs[i].id, leaf_id) == 0)
                at = i;
        if (at == n)
            return NULL;
    }
    while (k < SSR_MESSAGES_MAX) {
        path[k++] = at;
        const char *parent = msgs[at].parent_id;
        if (!*parent)
            break;
        size_t next = n;
        for (size_t i = 0; i < n; i++)
            if (strcmp(msgs[i].id, parent) == 0)
                next = i;
        if (next == n)
            break;
        at = next;
    }
    struct buf head;
    buf_init(&head, budget);
    if (buf_append_str(&head, shell_a) != 0 || ssr_escape(&head, chat_id, strlen(chat_id)) != 0 ||
        buf_append_str(&head, shell_b) != 0 ||
        (title && ssr_escape(&head, title, strnlen(title, 1024)) != 0) ||
        buf_append_str(&head, shell_c) != 0 || head.len + sizeof shell_d > budget) {
        buf_cleanup(&head);
        return NULL;
    }
    size_t room = budget - head.len - sizeof shell_d;
    /* newest first, each on its own, while they fit */
    char *rows[SSR_MESSAGES_MAX];
    size_t rlen[SSR_MESSAGES_MAX], nrows = 0;
    for (size_t i = 0; i < k; i++) {
        struct buf r;
        buf_init(&r, room);
        if (render_message(&r, &msgs[path[i]]) != 0) {
            buf_cleanup(&r);
            break;
        }
        room -= r.len;
        rows[nrows] = buf_take(&r, &rlen[nrows]);
        nrows++;
    }
    char *res = NULL;
    if (nrows > 0) {
        bool ok = true;
        for (size_t i = nrows; i-- > 0;)
            ok = ok && buf_append(&head, rows[i], rlen[i]) == 0;
        ok = ok && buf_append_str(&head, shell_d) == 0;
        if (ok)
            res = buf_take(&head, len);
    }
    for (size_t i = 0; i < nrows; i++)
        free(rows[i]);
    buf_cleanup(&head);
    return res;
}
