/* fuzz_json.c - libFuzzer harness for request-body decoding, as the server
 * does it: json_loadb(JSON_REJECT_DUPLICATES) (http/server.c work_cb), then
 * the field validators the handlers run on the decoded object, reached
 * without the HTTP layer or a store:
 *   messages.c read_content / model_field, chats.c read_chat_fields /
 *   api_chat_params / text_ok, accounts.c email_ok / password_check,
 *   tokens.c opt_int / parse_day, connection.c base_url_ok / api_key_ok,
 *   admin.c read_key_fields / int_field / price_field, server.c
 *   api_body_string / api_fail, views.c view_json_text.
 * The static validators are reached by #including their .c files (build.sh
 * leaves those out of the link). On the raw bytes it also checks
 * lib/utf8.c: utf8_valid against an independent reference decoder, and
 * utf8_truncate's contract.
 *
 * Invariants (abort() when broken): every error reply has a well-formed
 * error body; a value that passed validation has the shape and caps the
 * handler relies on; whatever jansson accepted is valid UTF-8 by our own
 * validator and survives a dump/load round trip.
 */
#include "../src/api/accounts.c"
#include "../src/api/admin.c"
#include "../src/api/chats.c"
#include "../src/api/connection.c"
#include "../src/api/messages.c"
#include "../src/api/tokens.c"

#include "lib/utf8.h"

#define CHECK(cond)                                                                    \
    do {                                                                               \
        if (!(cond)) {                                                                 \
            fprintf(stderr, "fuzz_json: invariant failed at line %d: %s\n", __LINE__, \
                    #cond);                                                            \
            abort();                                                                   \
        }                                                                              \
    } while (0)

/* ---- utf8 ---------------------------------------------------------------- */

/* Reference decoder written from the Unicode definition (code point ranges),
 * not from the byte table utf8.c uses: length of the well-formed sequence at
 * p[0..n), or 0 when there is none. */
static size_t ref_seq(const unsigned char *p, size_t n)
{
    unsigned c = p[0];
    size_t len;
    uint32_t cp;
    if (c < 0x80)
        return 1;
    if ((c & 0xE0) == 0xC0) {
        len = 2;
        cp = c & 0x1F;
    } else if ((c & 0xF0) == 0xE0) {
        len = 3;
        cp = c & 0x0F;
    } else if ((c & 0xF8) == 0xF0) {
        len = 4;
        cp = c & 0x07;
    } else {
        return 0;
    }
    if (n < len)
        return 0;
    for (size_t i = 1; i < len; i++) {
        if ((p[i] & 0xC0) != 0x80)
            return 0;
        cp = cp << 6 | (p[i] & 0x3F);
    }
    static const uint32_t min_cp[5] = {0, 0, 0x80, 0x800, 0x10000};
    if (cp < min_cp[len] || cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF))
        return 0;
    return len;
}

static bool ref_valid(const unsigned char *p, size_t n)
{
    size_t i = 0;
    while (i < n) {
        size_t l = ref_seq(p + i, n - i);
        if (!l)
            return false;
        i += l;
    }
    return true;
}

static void check_utf8(const uint8_t *data, size_t size)
{
    const char *s = (const char *)data;
    bool v = utf8_valid(s, size);
    CHECK(v == ref_valid(data, size));
    size_t maxes[4] = {0, size / 2, size ? size - 1 : 0, size >= 1 ? data[0] : 3};
    for (int k = 0; k < 4; k++) {
        size_t max = maxes[k];
        size_t n = utf8_truncate(s, size, max);
        if (size <= max) {
            CHECK(n == size);
            continue;
        }
        CHECK(n <= max && max - n <= 3);
        if (v) {
            CHECK(utf8_valid(s, n)); /* a valid prefix */
            /* and the longest one: the cut is at a character start */
            CHECK((data[n] & 0xC0) != 0x80);
            if (n < max)
                CHECK(n + ref_seq(data + n, size - n) > max);
        } else {
            /* never splits a well-formed sequence that straddles max */
            for (size_t i = max >= 3 ? max - 3 : 0; i < max; i++) {
                size_t l = ref_seq(data + i, size - i);
                if (l > 1 && i + l > max)
                    CHECK(n <= i);
            }
        }
    }
}

/* ---- error replies -------------------------------------------------------- */

static void check_reply(struct api_ctx *c)
{
    if (c->status >= 400) {
        /* api_fail always leaves the one error shape with a UTF-8 message */
        CHECK(c->resp != NULL);
        json_t *e = json_object_get(c->resp, "error");
        const char *code = json_string_value(json_object_get(e, "code"));
        const char *msg = json_string_value(json_object_get(e, "message"));
        CHECK(code && *code && msg && *msg);
        CHECK(utf8_valid(msg, strlen(msg)));
        char *text = json_dumps(c->resp, JSON_COMPACT);
        CHECK(text != NULL);
        free(text);
    }
    json_decref(c->resp);
    c->resp = NULL;
    c->status = 0;
}

/* ---- generic walk ---------------------------------------------------------- */

static size_t walk(json_t *v, int depth)
{
    CHECK(depth <= 2100); /* jansson caps nesting (JSON_PARSER_MAX_DEPTH) */
    size_t n = 1;
    const char *k;
    json_t *x;
    size_t i;
    switch (json_typeof(v)) {
    case JSON_OBJECT:
        json_object_foreach(v, k, x) {
            CHECK(utf8_valid(k, strlen(k)));
            CHECK(json_object_get(v, k) == x);
            n += walk(x, depth + 1);
        }
        break;
    case JSON_ARRAY:
        json_array_foreach(v, i, x) n += walk(x, depth + 1);
        break;
    case JSON_STRING: {
        const char *sv = json_string_value(v);
        size_t len = json_string_length(v);
        CHECK(strlen(sv) == len); /* no NUL without JSON_ALLOW_NUL */
        CHECK(utf8_valid(sv, len));
        break;
    }
    case JSON_INTEGER:
        (void)json_integer_value(v);
        break;
    case JSON_REAL: {
        double d = json_real_value(v);
        CHECK(d == d); /* no NaN from text */
        break;
    }
    default:
        break;
    }
    return n;
}

/* ---- the handlers' validators -------------------------------------------- */

static void check_content(struct api_ctx *c)
{
    json_t *parts = read_content(c);
    if (!parts) {
        CHECK(c->status == 400 || c->status == 413);
        check_reply(c);
        return;
    }
    CHECK(c->status == 0 && c->resp == NULL);
    CHECK(json_is_array(parts) && json_array_size(parts) >= 1 && json_array_size(parts) <= 64);
    size_t total = 0, i;
    json_t *p;
    json_array_foreach(parts, i, p) {
        CHECK(json_object_size(p) == 2);
        CHECK(strcmp(json_string_value(json_object_get(p, "type")), "text") == 0);
        json_t *t = json_object_get(p, "text");
        CHECK(json_is_string(t));
        total += json_string_length(t);
    }
    CHECK(total > 0 && total <= LIMIT_USER_MESSAGE);
    /* Stored as text, served back through view_json_text. */
    char *text = json_dumps(parts, JSON_COMPACT);
    CHECK(text);
    json_t *back = view_json_text(text, json_array());
    CHECK(json_equal(back, parts));
    char *pt = parts_text(text);
    CHECK(pt && strlen(pt) >= total);
    free(pt);
    json_decref(back);
    free(text);
    json_decref(parts);

    const char *model = NULL;
    if (!model_field(c, &model))
        check_reply(c);
    else if (model)
        CHECK(strlen(model) <= LIMIT_MODEL_NAME);
}

static void check_chat_fields(struct api_ctx *c)
{
    struct store_chat_patch p;
    memset(&p, 0, sizeof p);
    char *params = NULL;
    if (read_chat_fields(c, &p, &params) != 0) {
        CHECK(params == NULL);
        check_reply(c);
        return;
    }
    CHECK(c->resp == NULL);
    if (p.title) {
        CHECK(strlen(p.title) <= LIMIT_TITLE && *p.title);
        for (const unsigned char *q = (const unsigned char *)p.title; *q; q++)
            CHECK(*q >= 0x20 || *q == '\n' || *q == '\t' || *q == '\r');
    }
    if (p.model)
        CHECK(strlen(p.model) <= LIMIT_MODEL_NAME && *p.model);
    if (p.system_prompt)
        CHECK(strlen(p.system_prompt) <= LIMIT_SYSTEM_PROMPT);
    if (params) {
        /* what gets stored reloads as the object that was sent */
        json_t *back = view_json_text(params, NULL);
        CHECK(json_is_object(back));
        CHECK(json_equal(back, json_object_get(c->json, "params")));
        json_decref(back);
        free(params);
    }
    /* api_chat_params on any value, not only objects */
    json_t *pv = json_object_get(c->json, "params");
    char *s = api_chat_params(c, pv ? pv : c->json);
    if (!s)
        check_reply(c);
    free(s);
}

static void check_account_fields(struct api_ctx *c)
{
    const char *email, *password, *name;
    if (api_body_string(c, "email", true, LIMIT_EMAIL, &email) ||
        api_body_string(c, "password", true, LIMIT_PASSWORD, &password) ||
        api_body_string(c, "name", false, 200, &name)) {
        check_reply(c);
        return;
    }
    if (email_ok(email)) {
        CHECK(strchr(email, '@') && strlen(email) <= LIMIT_EMAIL);
        for (const unsigned char *q = (const unsigned char *)email; *q; q++)
            CHECK(*q > ' ' && *q != 0x7f);
    }
    if (password_check(c, "password", password) != 0)
        check_reply(c);
    else
        CHECK(strlen(password) >= LIMIT_PASSWORD_MIN);
}

static void check_token_fields(struct api_ctx *c)
{
    int64_t v;
    if (opt_int(c, "rpm", 1, 1000000, &v) != 0)
        check_reply(c);
    else
        CHECK(v == -1 || (v >= 1 && v <= 1000000));
    if (opt_int(c, "expires_in_days", 1, 3650, &v) != 0)
        check_reply(c);
}

static void check_connection_fields(struct api_ctx *c)
{
    const char *base_url, *key;
    if (api_body_string(c, "base_url", true, LIMIT_URL, &base_url) ||
        api_body_string(c, "api_key", false, LIMIT_API_KEY, &key)) {
        check_reply(c);
    } else {
        if (base_url_ok(base_url)) {
            CHECK(url_ok(base_url)); /* the pool-key check is not stricter */
            CHECK(!strchr(base_url, '?') && !strchr(base_url, '#') && !strchr(base_url, ' '));
        }
        if (key && api_key_ok(key))
            CHECK(key_ok(key));
    }

    struct store_pool_key k;
    memset(&k, 0, sizeof k);
    k.weight = 1;
    if (read_key_fields(c, &k) != 0) {
        check_reply(c);
    } else {
        CHECK(k.weight >= 1 && k.weight <= 1000);
        if (k.base_url) /* checked, then stripped of trailing slashes */
            CHECK(strncmp(k.base_url, "http", 4) == 0);
    }
    free(k.name);
    free(k.base_url);
    free(k.disabled_reason);

    int64_t price = -1;
    if (price_field(c, "input", false, &price) != 0)
        check_reply(c);
    else
        CHECK(price == -1 || (price >= 0 && price <= 1000000000000LL));
}

/* Every string value is tried as a "YYYY-MM-DD" query value. */
static void check_days(json_t *root)
{
    const char *k;
    json_t *v;
    json_object_foreach(root, k, v) {
        const char *s = json_string_value(v);
        if (!s)
            continue;
        int64_t ms = parse_day(s);
        if (ms != -1) {
            CHECK(ms >= 0 && ms % 86400000 == 0);
            time_t t = (time_t)(ms / 1000);
            struct tm tm;
            gmtime_r(&t, &tm);
            char back[16];
            snprintf(back, sizeof back, "%04d-%02d-%02d", tm.tm_year + 1900, tm.tm_mon + 1,
                     tm.tm_mday);
            CHECK(parse_day(back) == ms);
        }
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    check_utf8(data, size);

    struct api_ctx c;
    memset(&c, 0, sizeof c);
    json_error_t jerr;
    json_t *root = json_loadb((const char *)data, size, JSON_REJECT_DUPLICATES, &jerr);
    if (!root) {
        /* the 400 the server sends quotes jansson's message */
        api_fail(&c, 400, "invalid_json", "request body is not valid JSON: %s (line %d, column %d)",
                 jerr.text, jerr.line, jerr.column);
        check_reply(&c);
        return 0;
    }
    /* jansson only accepts valid UTF-8; so must our validator */
    CHECK(utf8_valid((const char *)data, size));
    walk(root, 0);
    char *text = json_dumps(root, JSON_COMPACT | JSON_ENCODE_ANY);
    CHECK(text);
    json_t *back = json_loads(text, JSON_DECODE_ANY | JSON_REJECT_DUPLICATES, &jerr);
    CHECK(back && json_equal(back, root));
    json_decref(back);
    free(text);

    if (json_is_object(root)) {
        c.json = root;
        check_content(&c);
        check_chat_fields(&c);
        check_account_fields(&c);
        check_token_fields(&c);
        check_connection_fields(&c);
        check_days(root);
        c.json = NULL;
    }
    check_reply(&c);
    json_decref(root);
    return 0;
}
