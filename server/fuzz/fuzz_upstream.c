/* fuzz_upstream.c - libFuzzer harness for what the server reads from a
 * provider outside the stream decoder (see fuzz_sse.c for that):
 *   - provider_error_json (llm/provider.c): a non-200 answer's body;
 *   - the title request's answer as turn.c title_cb reads it
 *     (choices[0].message.content) and title_clean, also on raw bytes (the
 *     fallback title comes from the user's first message);
 *   - turn.c on_header: response header lines (Retry-After).
 * turn.c is #included for its static functions (build.sh leaves it out of
 * the link). The first two bytes pick the HTTP status.
 * Invariants (abort() when broken): the error object always has a known
 * code, a non-empty message and the status; a title is NULL or 1..80 bytes
 * of valid UTF-8 on one line, not starting with a quote or space; a header
 * callback consumes every byte and never records a negative Retry-After.
 */
#include "../src/llm/turn.c"

#define CHECK(cond)                                                                        \
    do {                                                                                   \
        if (!(cond)) {                                                                     \
            fprintf(stderr, "fuzz_upstream: invariant failed at line %d: %s\n", __LINE__, \
                    #cond);                                                                \
            abort();                                                                       \
        }                                                                                  \
    } while (0)

static void check_error(long status, const char *body, size_t len)
{
    static const char *const codes[] = {"provider_auth",         "model_not_found",
                                        "provider_quota",        "provider_rate_limited",
                                        "context_length_exceeded", "provider_bad_request",
                                        "provider_error"};
    json_t *e = provider_error_json(status, body, len);
    CHECK(json_is_object(e));
    const char *code = json_string_value(json_object_get(e, "code"));
    CHECK(code);
    bool known = false;
    for (size_t i = 0; i < sizeof codes / sizeof codes[0]; i++)
        known |= strcmp(code, codes[i]) == 0;
    CHECK(known);
    const char *msg = json_string_value(json_object_get(e, "message"));
    CHECK(msg && utf8_valid(msg, strlen(msg)));
    CHECK(json_integer_value(json_object_get(e, "status")) == status);
    char *text = json_dumps(e, JSON_COMPACT);
    CHECK(text);
    free(text);
    json_decref(e);
}

static void check_title(const char *s, size_t len)
{
    char *t = title_clean(s, len);
    if (!t)
        return;
    size_t n = strlen(t);
    CHECK(n >= 1 && n <= 80);
    CHECK(utf8_valid(t, n));
    CHECK(!strchr(t, '\n'));
    /* "no surrounding quotes" (the trailing end may be cut by the cap) */
    CHECK(t[0] != ' ' && t[0] != '"' && t[0] != '\'');
    free(t);
}

static void check_headers(const uint8_t *data, size_t size)
{
    struct turn t;
    memset(&t, 0, sizeof t);
    t.retry_after_s = -1;
    size_t off = 0;
    while (off < size) {
        const uint8_t *nl = memchr(data + off, '\n', size - off);
        size_t len = nl ? (size_t)(nl - (data + off)) + 1 : size - off;
        /* curl hands over a writable copy of one header line */
        char *line = malloc(len ? len : 1);
        memcpy(line, data + off, len);
        CHECK(on_header(line, 1, len, &t) == len);
        CHECK(t.retry_after_s >= -1);
        free(line);
        off += len;
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static const long statuses[] = {400, 401, 403, 404, 408, 409, 413, 422, 429, 500, 502, 503};
    long status = size >= 2 ? (data[0] < 0xF0 ? statuses[data[1] % 12] : (long)data[1] * 3)
                            : 500;
    const char *body = (const char *)data;
    check_error(status, body, size);
    check_error(status, NULL, 0);

    /* The title answer. */
    json_t *root = json_loadb(body, size, 0, NULL);
    json_t *choice = json_array_get(json_object_get(root, "choices"), 0);
    json_t *content = json_object_get(json_object_get(choice, "message"), "content");
    if (json_is_string(content))
        check_title(json_string_value(content), json_string_length(content));
    json_decref(root);

    /* The first message as a title seed (a C string). */
    char *seed = malloc(size + 1);
    memcpy(seed, data, size);
    seed[size] = '\0';
    check_title(seed, strlen(seed));
    free(seed);

    check_headers(data, size);
    return 0;
}
