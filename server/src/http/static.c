/* static.c - in-memory static file server for web/dist: MIME types, ETags,
 * immutable caching for Vite's hashed /assets/, and the index.html fallback
 * that lets the client-side router own every other path.
 *
 * Start-up only lists the files (names, no reads): reading and hashing all
 * of web/dist (~2 MB, ~100 files) took most of the start-up time and stayed
 * resident although a browser fetches a few of them (fonts and syntax
 * modules mostly never). A file is read, hashed and kept in memory the first
 * time it is served: one read of at most STATIC_FILE_MAX from the page cache
 * on the loop, then memory as before. The set of files is fixed at start;
 * their content is what they hold when first served.
 *
 * index.html served for a chat's route (/c/<id>) carries a preload of the
 * chat's last messages (CHAT_PRELOAD_TAIL, the request web/src/boot.ts makes
 * first): the browser asks for them while it reads the HTML and loads the
 * script, instead of after the script has run (~100-400 ms later on a
 * 2-core machine). A GET of the API needs only the session cookie, which a
 * preload with crossorigin (credentials "same-origin") sends; the page's
 * fetch() of the same URL, same mode and credentials, takes the preloaded
 * answer instead of asking again (tests/e2e/specs/preload.spec.mjs).
 *
 * For a request with the session cookie, a worker checks the session (as
 * the API does) and that the chat is the user's; then the page also holds
 * the chat's last messages rendered (ssr.h), painted while the HTML is
 * parsed, before any script (web/src/lib/ssr.ts hands over to the app).
 * That page is private and never stored; every other outcome is the plain
 * page, the same bytes as without a cookie. */
#include "static.h"

#include <dirent.h>
#include <stddef.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <unistd.h>

#include <event2/buffer.h>
#include <event2/keyvalq_struct.h>

#include "../lib/common.h"
#include "../lib/crypto.h"
#include "../lib/log.h"
#include "auth.h"
#include "http.h"
#include "route.h"
#include "ssr.h"
#include "../lib/ids.h"
#include "../lib/pool.h"
#include "../lib/ratelimit.h"
#include "security.h"

#define STATIC_TOTAL_MAX (64u * 1024 * 1024) /* bytes held in memory */
#define STATIC_FILE_MAX (16u * 1024 * 1024)

struct sfile {
    char *path;     /* "/assets/index-abc123.js" */
    char *fs;       /* the file to read; NULL for the built-in placeholder */
    char *data;     /* NULL until first served */
    size_t len;
    const char *mime;
    char etag[20];  /* set with data */
    bool immutable;
    bool failed;    /* could not be read when first served */
};

struct static_files {
    struct sfile *files;
    size_t n, cap;
    size_t total;
};

static const char placeholder[] =
    "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\"><title>ChatOpenAII</title>"
    "</head><body><h1>ChatOpenAII</h1><p>The server is running. The web app has not been "
    "built into <code>web/dist</code>; the API is under <code>/api/v1</code>.</p></body></html>";

/* The tail boot.ts asks for at first (web/src/boot.ts reads the URL back
 * from the link, so the two cannot disagree). */
#define CHAT_PRELOAD_TAIL 60
#define CHAT_ID_MAX 64

/* The chat id of a client route /c/<id> (optionally with trailing slashes),
 * with the router's charset [A-Za-z0-9_-]{1,64} (web/src/state/router.ts);
 * its length, or 0 if path is not one. Nothing in it needs escaping in HTML
 * or a URL. */
static size_t chat_route_id(const char *path, const char **id)
{
    if (strncmp(path, "/c/", 3) != 0)
        return 0;
    const char *p = path + 3;
    size_t n = 0;
    while (n <= CHAT_ID_MAX && ((p[n] >= 'a' && p[n] <= 'z') || (p[n] >= 'A' && p[n] <= 'Z') ||
                                (p[n] >= '0' && p[n] <= '9') || p[n] == '_' || p[n] == '-'))
        n++;
    if (n == 0 || n > CHAT_ID_MAX)
        return 0;
    for (const char *q = p + n; *q; q++)
        if (*q != '/')
            return 0;
    *id = p;
    return n;
}

static const char *mime_for(const char *path)
{
    static const struct { const char *ext, *mime; } t[] = {
        {".html", "text/html; charset=utf-8"},
        {".js", "text/javascript; charset=utf-8"},
        {".mjs", "text/javascript; charset=utf-8"},
        {".css", "text/css; charset=utf-8"},
        {".json", "application/json"},
        {".webmanifest", "application/manifest+json"},
        {".svg", "image/svg+xml"},
        {".png", "image/png"},
        {".jpg", "image/jpeg"},
        {".jpeg", "image/jpeg"},
        {".gif", "image/gif"},
        {".webp", "image/webp"},
        {".ico", "image/x-icon"},
        {".woff2", "font/woff2"},
        {".woff", "font/woff"},
        {".ttf", "font/ttf"},
        {".txt", "text/plain; charset=utf-8"},
        {".map", "application/json"},
        {".wasm", "application/wasm"},
    };
    const char *dot = strrchr(path, '.');
    const char *slash = strrchr(path, '/');
    if (!dot || (slash && dot < slash))
        return "application/octet-stream";
    for (size_t i = 0; i < COAI_ARRAY_LEN(t); i++)
        if (strcasecmp(dot, t[i].ext) == 0)
            return t[i].mime;
    return "application/octet-stream";
}

static void set_data(struct sfile *f, char *data, size_t len)
{
    f->data = data;
    f->len = len;
    char h[65];
    crypto_sha256_hex(data, len, h);
    snprintf(f->etag, sizeof f->etag, "\"%.16s\"", h);
}

static struct sfile *add_file(struct static_files *s, const char *urlpath, const char *fs)
{
    if (s->n == s->cap) {
        s->cap = s->cap ? s->cap * 2 : 32;
        s->files = xrealloc(s->files, s->cap * sizeof *s->files);
    }
    struct sfile *f = &s->files[s->n++];
    memset(f, 0, sizeof *f);
    f->path = xstrdup(urlpath);
    f->fs = xstrdup(fs);
    f->mime = mime_for(urlpath);
    f->immutable = strncmp(urlpath, "/assets/", 8) == 0;
    return f;
}

static char *read_file(const char *fs, size_t *len)
{
    int fd = open(fs, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return NULL;
    struct stat st;
    if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode) || (size_t)st.st_size > STATIC_FILE_MAX) {
        close(fd);
        return NULL;
    }
    char *buf = xmalloc((size_t)st.st_size + 1);
    size_t got = 0;
    while (got < (size_t)st.st_size) {
        ssize_t r = read(fd, buf + got, (size_t)st.st_size - got);
        if (r <= 0)
            break;
        got += (size_t)r;
    }
    close(fd);
    *len = got;
    return buf;
}

static void walk(struct static_files *s, const char *fsdir, const char *urldir, int depth)
{
    if (depth > 8)
        return;
    DIR *d = opendir(fsdir);
    if (!d)
        return;
    struct dirent *e;
    while ((e = readdir(d)) != NULL) {
        if (e->d_name[0] == '.')
            continue;
        char *fs = xasprintf("%s/%s", fsdir, e->d_name);
        char *url = xasprintf("%s/%s", urldir, e->d_name);
        struct stat st;
        /* d_type spares a stat per file; links and unknown types are
         * followed as before */
        bool dir = e->d_type == DT_DIR, reg = e->d_type == DT_REG;
        if (e->d_type != DT_DIR && e->d_type != DT_REG && stat(fs, &st) == 0) {
            dir = S_ISDIR(st.st_mode);
            reg = S_ISREG(st.st_mode);
        }
        if (dir)
            walk(s, fs, url, depth + 1);
        else if (reg)
            add_file(s, url, fs);
        free(fs);
        free(url);
    }
    closedir(d);
}

struct static_files *static_load(const char *dir)
{
    struct static_files *s = xcalloc(1, sizeof *s);
    walk(s, dir, "", 0);
    bool has_index = false;
    for (size_t i = 0; i < s->n; i++)
        if (strcmp(s->files[i].path, "/index.html") == 0)
            has_index = true;
    if (!has_index) {
        log_warn("web app not built; serving a placeholder page", "dir", dir, NULL);
        struct sfile *f = add_file(s, "/index.html", NULL);
        set_data(f, xstrdup(placeholder), sizeof placeholder - 1);
    }
    return s;
}

/* Reads and hashes f on its first use. A file that cannot be read (gone,
 * over the caps) is served as missing; the total cap counts what is held. */
static bool ensure_loaded(struct static_files *s, struct sfile *f)
{
    if (f->data)
        return true;
    if (!f->fs || f->failed)
        return false;
    size_t len = 0;
    char *data = read_file(f->fs, &len);
    if (!data || s->total + len > STATIC_TOTAL_MAX) {
        free(data);
        f->failed = true;
        log_warn("static file cannot be served", "path", f->path, NULL);
        return false;
    }
    set_data(f, data, len);
    s->total += len;
    return true;
}

size_t static_count(const struct static_files *s)
{
    return s->n;
}

void static_free(struct static_files *s)
{
    if (!s)
        return;
    for (size_t i = 0; i < s->n; i++) {
        free(s->files[i].path);
        free(s->files[i].fs);
        free(s->files[i].data);
    }
    free(s->files);
    free(s);
}

/* The file at path, read on first use; NULL if none or unreadable. */
static const struct sfile *find(struct static_files *s, const char *path)
{
    for (size_t i = 0; i < s->n; i++)
        if (strcmp(s->files[i].path, path) == 0)
            return ensure_loaded(s, &s->files[i]) ? &s->files[i] : NULL;
    return NULL;
}

static int send_error(struct evhttp_request *req, int status, const char *code, const char *msg)
{
    struct evbuffer *b = evbuffer_new();
    evbuffer_add_printf(b, "{\"error\":{\"code\":\"%s\",\"message\":\"%s\"}}", code, msg);
    evhttp_add_header(evhttp_request_get_output_headers(req), "Content-Type",
                      "application/json; charset=utf-8");
    evhttp_send_reply(req, status, status == 404 ? "Not Found" : "Method Not Allowed", b);
    evbuffer_free(b);
    return status;
}

/* index.html for /c/<id>: the same page with a preload of the chat's tail
 * right after <head> (or unchanged if it has no <head>) and, when block is
 * not NULL, the server-rendered first screen (ssr.h) right after <body>.
 * The plain page's ETag is that of its bytes, so a revalidation still gets
 * a 304; a page with a block is personal: no ETag, not stored, and it
 * carries the session cookie's renewal if the session check slid it. */
static int send_chat_index(struct evhttp_request *req, const struct sfile *f, const char *id,
                           size_t id_len, enum evhttp_cmd_type cmd, const char *block,
                           size_t block_len, const char *set_cookie)
{
    struct evkeyvalq *out = evhttp_request_get_output_headers(req);
    char link[sizeof "<link rel=\"preload\" href=\"/api/v1/chats/?tail=\" as=\"fetch\" "
                   "crossorigin>" + CHAT_ID_MAX + 16];
    int ll = snprintf(link, sizeof link,
                      "<link rel=\"preload\" href=\"/api/v1/chats/%.*s?tail=%d\" as=\"fetch\" "
                      "crossorigin>",
                      (int)id_len, id, CHAT_PRELOAD_TAIL);
    if (ll < 0 || (size_t)ll >= sizeof link)
        ll = 0;
    const char *head = memmem(f->data, f->len, "<head>", 6);
    size_t at = head ? (size_t)(head - f->data) + 6 : 0;
    if (!head)
        ll = 0;
    const char *body = block ? memmem(f->data, f->len, "<body>", 6) : NULL;
    size_t bat = body ? (size_t)(body - f->data) + 6 : 0;
    if (!body || bat < at)
        block_len = 0, block = NULL;
    size_t len = f->len + (size_t)ll + block_len;
    char *page = xmalloc(len + 1);
    size_t w = 0;
    memcpy(page, f->data, at);
    w += at;
    memcpy(page + w, link, (size_t)ll);
    w += (size_t)ll;
    if (block) {
        memcpy(page + w, f->data + at, bat - at);
        w += bat - at;
        memcpy(page + w, block, block_len);
        w += block_len;
        memcpy(page + w, f->data + bat, f->len - bat);
    } else {
        memcpy(page + w, f->data + at, f->len - at);
    }
    evhttp_add_header(out, "Content-Type", f->mime);
    evhttp_add_header(out, "Vary", "Cookie");
    if (block) {
        evhttp_add_header(out, "Cache-Control", "private, no-store");
        if (set_cookie)
            evhttp_add_header(out, "Set-Cookie", set_cookie);
    } else {
        char h[65], etag[20];
        crypto_sha256_hex(page, len, h);
        snprintf(etag, sizeof etag, "\"%.16s\"", h);
        evhttp_add_header(out, "ETag", etag);
        evhttp_add_header(out, "Cache-Control", "no-cache");
        const char *inm =
            evhttp_find_header(evhttp_request_get_input_headers(req), "If-None-Match");
        if (inm && strcmp(inm, etag) == 0) {
            free(page);
            evhttp_send_reply(req, 304, "Not Modified", NULL);
            return 304;
        }
    }
    struct evbuffer *b = evbuffer_new();
    if (cmd == EVHTTP_REQ_GET)
        evbuffer_add(b, page, len);
    free(page);
    evhttp_send_reply(req, 200, "OK", b);
    evbuffer_free(b);
    return 200;
}

/* ---- the first screen of a chat, rendered on a worker (ssr.h) ------------ */

struct ssr_job {
    struct app *app;
    struct evhttp_request *req;
    const struct sfile *f;
    char id[CHAT_ID_MAX + 1];
    size_t id_len;
    char *token;       /* the session cookie's value: secret */
    char *block;       /* out: the rendered block, or NULL */
    size_t block_len;
    char *set_cookie;  /* out: the session's renewal, or NULL */
};

/* Worker: the same session check as the API's (auth_session_resolve: expiry,
 * revocation, sliding), then the chat among the user's own, then its tail.
 * Any failure leaves block NULL: the plain page. */
static void ssr_work(void *arg, void *ctx)
{
    struct ssr_job *j = arg;
    if (!ctx)
        return;
    struct api_ctx c;
    memset(&c, 0, sizeof c);
    c.app = j->app;
    c.st = ctx;
    c.cookie_token = j->token;
    if (auth_session_resolve(&c) == APP_OK) {
        struct store_chat ch;
        memset(&ch, 0, sizeof ch);
        if (ids_valid(j->id) && store_chat_get(c.st, c.user.id, j->id, &ch) == APP_OK) {
            struct store_message *m = NULL;
            size_t n = 0;
            int64_t total = 0;
            if (store_message_tail(c.st, ch.id, ch.current_leaf_id, SSR_MESSAGES_MAX, &m, &n,
                                   &total) == APP_OK)
                j->block = ssr_chat_block(ch.id, ch.title, m, n, ch.current_leaf_id, SSR_BUDGET,
                                          &j->block_len);
            store_message_list_free(m, n);
        }
        store_chat_clear(&ch);
    }
    j->set_cookie = c.set_cookie;
    store_user_clear(&c.user);
    store_session_clear(&c.session);
}

static void ssr_done(void *arg)
{
    struct ssr_job *j = arg;
    send_chat_index(j->req, j->f, j->id, j->id_len, EVHTTP_REQ_GET, j->block, j->block_len,
                    j->set_cookie);
    secure_wipe(j->token, strlen(j->token));
    free(j->token);
    free(j->block);
    free(j->set_cookie);
    free(j);
}

/* Each server-rendered page costs a worker a session lookup and a store
 * read, whatever the cookie holds: at most CHATOPENAII_RATE_API a minute per
 * client address (the API's own figure per user), then the plain page, which
 * the app fills in through the API and its limits. */
static bool ssr_allowed(struct app *app, struct evhttp_request *req)
{
    char *ip = security_client_ip(req);
    char key[96];
    snprintf(key, sizeof key, "ssr-ip:%s", ip ? ip : "");
    free(ip);
    int ra = 0;
    return ratelimit_take(app->rl, key, app->cfg.rate_api, &ra);
}

/* /c/<id>: the page with the chat's first screen for a signed-in owner (a
 * worker checks that), else the plain page at once. A request without the
 * session cookie never waits; one with a cookie waits for the same checks
 * whether the chat exists or not. */
static int serve_chat_index(struct app *app, struct evhttp_request *req, const struct sfile *f,
                            const char *id, size_t id_len, enum evhttp_cmd_type cmd)
{
    const char *ck = evhttp_find_header(evhttp_request_get_input_headers(req), "Cookie");
    char *token = cmd == EVHTTP_REQ_GET && ck ? http_cookie_get(ck, AUTH_COOKIE) : NULL;
    if (token && app && !ssr_allowed(app, req)) { /* over the limit: the plain page */
        secure_wipe(token, strlen(token));
        free(token);
        token = NULL;
    }
    if (!token || !*token || strlen(token) > 128 || !app || !app->pool || app->shutting_down) {
        if (token) {
            secure_wipe(token, strlen(token));
            free(token);
        }
        return send_chat_index(req, f, id, id_len, cmd, NULL, 0, NULL);
    }
    struct ssr_job *j = xcalloc(1, sizeof *j);
    j->app = app;
    j->req = req;
    j->f = f;
    memcpy(j->id, id, id_len);
    j->id[id_len] = '\0';
    j->id_len = id_len;
    j->token = token;
    pool_submit(app->pool, ssr_work, ssr_done, j);
    return 200; /* answered from ssr_done */
}

int static_serve(struct static_files *s, struct app *app, struct evhttp_request *req, const char *path,
                 const char *req_id)
{
    http_add_common_headers(req, req_id);
    struct evkeyvalq *out = evhttp_request_get_output_headers(req);
    enum evhttp_cmd_type cmd = evhttp_request_get_command(req);
    if (cmd != EVHTTP_REQ_GET && cmd != EVHTTP_REQ_HEAD) {
        evhttp_add_header(out, "Allow", "GET, HEAD");
        return send_error(req, 405, "method_not_allowed", "static files accept GET and HEAD");
    }
    const struct sfile *f = NULL;
    if (strcmp(path, "/") == 0)
        f = find(s, "/index.html");
    else if (!strstr(path, "/.")) /* no dot-files, no ".." segments */
        f = find(s, path);
    if (!f) {
        const char *slash = strrchr(path, '/');
        bool has_ext = slash && strchr(slash, '.') != NULL;
        if (has_ext || strncmp(path, "/assets/", 8) == 0)
            return send_error(req, 404, "not_found", "no such file");
        f = find(s, "/index.html"); /* client-side route */
    }
    if (!f) /* index.html was there at start but cannot be read now */
        return send_error(req, 404, "not_found", "no such file");
    const char *chat_id = NULL;
    size_t chat_len = strcmp(f->path, "/index.html") == 0 ? chat_route_id(path, &chat_id) : 0;
    if (chat_len)
        return serve_chat_index(app, req, f, chat_id, chat_len, cmd);
    evhttp_add_header(out, "Content-Type", f->mime);
    evhttp_add_header(out, "ETag", f->etag);
    evhttp_add_header(out, "Cache-Control", f->immutable ? "public, max-age=31536000, immutable"
                                                         : "no-cache");
    const char *inm = evhttp_find_header(evhttp_request_get_input_headers(req), "If-None-Match");
    if (inm && strcmp(inm, f->etag) == 0) {
        evhttp_send_reply(req, 304, "Not Modified", NULL);
        return 304;
    }
    struct evbuffer *b = evbuffer_new();
    if (cmd == EVHTTP_REQ_GET)
        evbuffer_add_reference(b, f->data, f->len, NULL, NULL);
    evhttp_send_reply(req, 200, "OK", b);
    evbuffer_free(b);
    return 200;
}
