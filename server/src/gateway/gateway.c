/* gateway.c - the /v1 relay; see gateway.h. A request moves through
 * AUTH (principal from cache, or loaded by a worker) -> ADMIT (allow-list,
 * budget, rate limits) -> UPSTREAM (key chosen; headers, then every chunk
 * forwarded as it arrives) -> DONE (usage recorded). A pool key answering
 * 401 or 429 before anything was sent to the client is marked and the
 * request moves to the next key.
 *
 * With Redis (app->redis) the per-user and per-token buckets and the
 * monthly spend are shared by every instance: ADMIT waits for one Lua
 * script (all-or-nothing over both buckets and the budget) and DONE charges
 * the tokens and the spend with another, fire and forget. No answer from
 * Redis: that request is admitted from this instance's own buckets and
 * counters, which are kept up to date in both modes. See "shared limits". */
#include "gateway.h"

#include <math.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include <event2/buffer.h>
#include <event2/http_struct.h>
#include <event2/keyvalq_struct.h>
#include <jansson.h>

#include "../api/api.h"
#include "../http/http.h"
#include "../http/metrics.h"
#include "../http/security.h"
#include "../http/sentry.h"
#include "../lib/buf.h"
#include "../lib/caps.h"
#include "../lib/crypto.h"
#include "../lib/log.h"
#include "../lib/pool.h"
#include "../lib/redis.h"
#include "../lib/strmap.h"
#include "../lib/utf8.h"
#include "../llm/curlev.h"
#include "../llm/sse_parse.h"
#include "bucket.h"

/* Usage rows wait at most this long for others to share their transaction
 * (a crash loses at most this much accounting; a clean stop loses none),
 * and no more than USAGE_BATCH_MAX wait. */
#define USAGE_DELAY_MS 50
#define USAGE_BATCH_MAX 512

#define NEG_CACHE_MS 5000
#define PRINCIPALS_SWEEP_MIN 1024 /* cache size below which stale entries are left alone */
#define COOLDOWN_DEFAULT_S 10
#define MAX_KEY_ATTEMPTS 8
/* Easy handles kept for the next provider request: curl_easy_init and
 * cleanup cost more than the request's own options, which are all that is
 * set again (the constant ones stay). Beyond this many idle ones are freed. */
#define EASY_POOL_MAX 64

/* ---- in-memory state ------------------------------------------------------------ */

struct principal {             /* one API token, as loaded from the store */
    char token_hash[65];
    bool valid;                /* false = unknown/revoked/expired (negative cache) */
    char token_id[STORE_ID_LEN + 1];
    char user_id[STORE_ID_LEN + 1];
    json_t *models;            /* allow-list or NULL */
    int64_t expires_at;        /* ms, 0 = never */
    struct provider_conn own;  /* the user's own connection (secret), if any */
    bool has_own;
    int64_t loaded_ms;
    int refs;                  /* the cache's, plus requests waiting on Redis (loop only) */
};

struct user_state {            /* per user: limits, buckets, this month's spend */
    struct bucket req, tok;
    int64_t rpm, tpm;          /* effective limits (per minute), <= 0 unlimited */
    int64_t budget_tokens, budget_cost; /* -1 unlimited */
    int64_t month_start;       /* ms of the first instant of the month the totals are for */
    int64_t month_tokens, month_cost;
    char rkey[33];             /* shared mode: hash naming its Redis keys ("" = not yet) */
};

struct token_state {           /* per API token: its own limits */
    struct bucket req, tok;
    char rkey[33];             /* as user_state.rkey */
};

struct pool_key {
    char id[STORE_ID_LEN + 1];
    char *name;
    char *base_url;
    char *key;                 /* secret */
    char last4[5];
    int weight;
    bool enabled;
    char *disabled_reason;
    int64_t cool_until_us;
    struct bucket req, tok;
    uint64_t requests, errors, tokens;
    char *last_error;
};

struct gateway {
    struct app *app;
    struct strmap *principals; /* token hash -> principal */
    size_t principals_sweep_at; /* loop only: the size at which stale negative entries go */
    struct strmap *users;      /* user id -> user_state */
    struct strmap *tokens;     /* token id -> token_state */
    struct pool_key *keys;
    size_t nkeys;
    struct store_price *prices;
    size_t nprices;
    volatile int pool_enabled; /* read by workers */
    struct gw_req *active;     /* requests in flight */
    /* Relayed bytes are gathered per request while curl hands them over
     * (one callback per HTTP chunk of the provider) and sent as one chunk
     * per request once the loop is done with that batch: flush_ev is made
     * active, so it runs in the same loop iteration, before the client's
     * socket is written anyway. */
    struct event *flush_ev;
    struct gw_req *dirty;      /* requests with bytes waiting in ->out */
    bool flush_armed;
    CURL *easy_free[EASY_POOL_MAX]; /* idle easy handles (loop only) */
    size_t neasy_free;
    unsigned rng;
    /* Usage rows waiting for the store, written in one transaction per
     * worker job (group commit): shared with the workers under usage_mu. */
    pthread_mutex_t usage_mu;
    struct store_usage *usage_q; /* owned, each .model owned */
    size_t usage_n, usage_cap;
    bool usage_scheduled;        /* a flush job is queued and has not taken the rows yet */
    struct event *usage_timer;   /* loop only: the next flush, USAGE_DELAY_MS after a first row */
    bool usage_armed;            /* loop only: usage_timer is pending */
    uint64_t reload_seq;         /* reloads submitted */
    uint64_t reload_applied;     /* seq of the newest reload applied */
    /* Shared limits (NULL redis = this instance only, the code path of old). */
    struct redis *redis;         /* app->redis (borrowed) */
    struct redis_script *admit_lua, *charge_lua;
    unsigned char key_secret[32]; /* names Redis keys by a hash, as ratelimit.c */
    bool shared_down;            /* the fall-back warning of this outage was logged */
};

static int64_t month_start_ms(int64_t now)
{
    time_t t = (time_t)(now / 1000);
    struct tm tm;
    gmtime_r(&t, &tm);
    tm.tm_mday = 1;
    tm.tm_hour = tm.tm_min = tm.tm_sec = 0;
    return (int64_t)timegm(&tm) * 1000;
}

/* Drops one reference (the cache's, or a waiting request's). */
static void principal_free(void *p)
{
    struct principal *pr = p;
    if (!pr || --pr->refs > 0)
        return;
    json_decref(pr->models);
    provider_conn_clear(&pr->own);
    free(pr);
}

static void pool_key_clear(struct pool_key *k)
{
    free(k->name);
    free(k->base_url);
    if (k->key) {
        secure_wipe(k->key, strlen(k->key));
        free(k->key);
    }
    free(k->disabled_reason);
    free(k->last_error);
}

static struct user_state *user_state(struct gateway *gw, const char *user_id)
{
    struct user_state *u = strmap_get(gw->users, user_id);
    if (!u) {
        u = xcalloc(1, sizeof *u);
        int64_t now = mono_us();
        u->rpm = gw->app->cfg.gateway_rpm;
        u->tpm = gw->app->cfg.gateway_tpm;
        bucket_init(&u->req, (double)u->rpm, now);
        bucket_init(&u->tok, (double)u->tpm, now);
        u->budget_tokens = u->budget_cost = -1;
        strmap_put(gw->users, user_id, u);
    }
    return u;
}

static struct token_state *token_state(struct gateway *gw, const char *token_id, int64_t rpm,
                                       int64_t tpm)
{
    struct token_state *t = strmap_get(gw->tokens, token_id);
    int64_t now = mono_us();
    if (!t) {
        t = xcalloc(1, sizeof *t);
        bucket_init(&t->req, (double)rpm, now);
        bucket_init(&t->tok, (double)tpm, now);
        strmap_put(gw->tokens, token_id, t);
    } else {
        bucket_set_rate(&t->req, (double)rpm, now);
        bucket_set_rate(&t->tok, (double)tpm, now);
    }
    return t;
}

/* ---- the request ---------------------------------------------------------------- */

#define MAX_FWD_HEADERS 64

struct gw_req {
    struct gw_req *next, *prev;  /* active list (for shutdown) */
    struct app *app;
    struct gateway *gw;
    struct evhttp_request *req;
    struct evhttp_connection *evcon;
    char req_id[17];
    int64_t start_us;
    enum evhttp_cmd_type method;
    char *path;                /* after /v1, e.g. "/chat/completions" */
    char *query;               /* raw query or NULL */
    char *body;
    size_t body_len;
    char *content_type;
    char *accept;
    char *openai_beta;
    char token_hash[65];
    struct principal *p;       /* borrowed from the cache (valid while on the loop) */
    char token_id[STORE_ID_LEN + 1];
    char user_id[STORE_ID_LEN + 1];
    int64_t token_rpm, token_tpm;
    char *model;
    bool stream;
    bool filter_models;        /* /models with an allow-list: buffer and filter */
    json_t *allow;             /* allow-list (new ref) */

    /* upstream */
    struct provider_conn pc;
    char key_id[STORE_ID_LEN + 1];
    char key_source[8];
    char tried[MAX_KEY_ATTEMPTS][STORE_ID_LEN + 1];
    int ntried;
    CURL *easy;
    struct curl_slist *hdrs;
    long status;
    long retry_after_s;
    /* provider headers to forward: "name\0value\0" each, in one buffer */
    char *hb;
    size_t hb_len, hb_cap;
    uint32_t fh[MAX_FWD_HEADERS]; /* offset of each name in hb (its value follows it) */
    size_t nfh;
    bool headers_done;
    bool holding;              /* keep the body (failover or filtering), do not forward */
    /* what a relayed stream told us, read without parsing every chunk */
    char *s_model;             /* owned: "model" of the first event */
    int64_t s_prompt, s_completion; /* from a usage event; -1 = none yet */
    size_t s_text;             /* bytes of content and tool arguments (escaped) */
    bool s_first;              /* the first event was seen */
    bool started;              /* reply headers sent */
    bool client_gone;
    bool finished;
    struct buf held;
    struct buf copy;           /* non-stream body copy for usage */
    struct evbuffer *out;
    struct gw_req *dnext, *dprev; /* in gw->dirty while ->out holds bytes to send */
    bool dirty;
    struct sse_parser *sse;
    int64_t ttfb_us;
    /* shared admission */
    struct gw_ticket *ticket;  /* waiting for Redis; NULL otherwise */
    bool p_held;               /* holds a reference to p (principal_free in gr_free) */
    bool sh;                   /* the x-ratelimit-* figures below come from Redis */
    double sh_rate[4], sh_level[4]; /* user req, user tok, token req, token tok */
};

/* The argument of an admission script: a request can be freed (shutdown)
 * before Redis answers, so the callback finds it through this, g == NULL
 * meaning "forget it". */
struct gw_ticket {
    struct gw_req *g;
};

/* A handle whose transfer is over (or was removed from the multi) back to
 * the free list; its pointers into the request are cleared. */
static void easy_put(struct gateway *gw, CURL *e)
{
    if (gw->neasy_free >= EASY_POOL_MAX || gw->app->shutting_down) {
        curl_easy_cleanup(e);
        return;
    }
    curl_easy_setopt(e, CURLOPT_HTTPHEADER, NULL);
    curl_easy_setopt(e, CURLOPT_HEADERDATA, NULL);
    curl_easy_setopt(e, CURLOPT_WRITEDATA, NULL);
    gw->easy_free[gw->neasy_free++] = e;
}

static void dirty_unlink(struct gw_req *g)
{
    if (!g->dirty)
        return;
    if (g->dprev)
        g->dprev->dnext = g->dnext;
    else
        g->gw->dirty = g->dnext;
    if (g->dnext)
        g->dnext->dprev = g->dprev;
    g->dnext = g->dprev = NULL;
    g->dirty = false;
}

/* Send what waits in g->out now (before the reply ends). */
static void flush_out(struct gw_req *g)
{
    dirty_unlink(g);
    if (g->req && !g->client_gone && evbuffer_get_length(g->out))
        evhttp_send_reply_chunk(g->req, g->out);
}

static void on_flush(evutil_socket_t fd, short what, void *arg)
{
    struct gateway *gw = arg;
    gw->flush_armed = false;
    while (gw->dirty)
        flush_out(gw->dirty);
}

static void gr_free(struct gw_req *g)
{
    dirty_unlink(g);
    if (g->prev)
        g->prev->next = g->next;
    else if (g->gw->active == g)
        g->gw->active = g->next;
    if (g->next)
        g->next->prev = g->prev;
    free(g->path);
    free(g->query);
    free(g->body);
    free(g->content_type);
    free(g->accept);
    free(g->openai_beta);
    free(g->model);
    json_decref(g->allow);
    provider_conn_clear(&g->pc);
    if (g->easy) {
        curlev_remove(g->app->curl, g->easy);
        easy_put(g->gw, g->easy);
    }
    curl_slist_free_all(g->hdrs);
    free(g->hb);
    buf_cleanup(&g->held);
    buf_cleanup(&g->copy);
    if (g->out)
        evbuffer_free(g->out);
    sse_parser_free(g->sse);
    free(g->s_model);
    if (g->ticket)
        g->ticket->g = NULL;
    if (g->p_held)
        principal_free(g->p);
    free(g);
}

static const char *reason(int status)
{
    switch (status) {
    case 200: return "OK";
    case 400: return "Bad Request";
    case 401: return "Unauthorized";
    case 403: return "Forbidden";
    case 404: return "Not Found";
    case 413: return "Payload Too Large";
    case 429: return "Too Many Requests";
    case 500: return "Internal Server Error";
    case 502: return "Bad Gateway";
    case 503: return "Service Unavailable";
    default: return status < 400 ? "OK" : "Error";
    }
}

static void on_client_close(struct evhttp_connection *evcon, void *arg);

static void detach_close(struct gw_req *g)
{
    if (g->evcon) {
        evhttp_connection_set_closecb(g->evcon, NULL, NULL);
        g->evcon = NULL;
    }
}

/* The x-ratelimit-* figures of one limit from the level of its bucket. */
static void put_limit(struct evkeyvalq *h, const char *limit, const char *remaining,
                      const char *reset, double per_min, double level)
{
    char v[64];
    snprintf(v, sizeof v, "%.0f", per_min);
    evhttp_add_header(h, limit, v);
    snprintf(v, sizeof v, "%.0f", level < 0 ? 0 : floor(level));
    evhttp_add_header(h, remaining, v);
    double missing = per_min - level;
    snprintf(v, sizeof v, "%.3fs", missing <= 0 ? 0 : missing * 60.0 / per_min);
    evhttp_add_header(h, reset, v);
}

/* The same from what the admission script answered (shared mode): the
 * tighter of the user's and the token's limit, as below. */
static void add_shared_ratelimit_headers(struct gw_req *g, struct evkeyvalq *h)
{
    for (int k = 0; k < 2; k++) { /* 0 requests, 1 tokens */
        int i = k; /* the user's */
        if (g->sh_rate[2 + k] > 0 && (g->sh_rate[k] <= 0 || g->sh_rate[2 + k] < g->sh_rate[k]))
            i = 2 + k;
        if (g->sh_rate[i] <= 0)
            continue;
        if (k == 0)
            put_limit(h, "x-ratelimit-limit-requests", "x-ratelimit-remaining-requests",
                      "x-ratelimit-reset-requests", g->sh_rate[i], g->sh_level[i]);
        else
            put_limit(h, "x-ratelimit-limit-tokens", "x-ratelimit-remaining-tokens",
                      "x-ratelimit-reset-tokens", g->sh_rate[i], g->sh_level[i]);
    }
}

/* Ratelimit headers describing the tightest applicable limits. */
static void add_ratelimit_headers(struct gw_req *g, struct evkeyvalq *h)
{
    if (!g->user_id[0])
        return;
    if (g->sh)
        return add_shared_ratelimit_headers(g, h);
    struct user_state *u = user_state(g->gw, g->user_id);
    struct token_state *t = g->token_id[0] ? strmap_get(g->gw->tokens, g->token_id) : NULL;
    int64_t now = mono_us();
    struct bucket *rq = &u->req, *tk = &u->tok;
    if (t && t->req.per_min > 0 && (rq->per_min <= 0 || t->req.per_min < rq->per_min))
        rq = &t->req;
    if (t && t->tok.per_min > 0 && (tk->per_min <= 0 || t->tok.per_min < tk->per_min))
        tk = &t->tok;
    char v[64];
    if (rq->per_min > 0) {
        snprintf(v, sizeof v, "%.0f", rq->per_min);
        evhttp_add_header(h, "x-ratelimit-limit-requests", v);
        double lv = bucket_level(rq, now);
        snprintf(v, sizeof v, "%.0f", lv < 0 ? 0 : floor(lv));
        evhttp_add_header(h, "x-ratelimit-remaining-requests", v);
        snprintf(v, sizeof v, "%.3fs", bucket_reset_s(rq, now));
        evhttp_add_header(h, "x-ratelimit-reset-requests", v);
    }
    if (tk->per_min > 0) {
        snprintf(v, sizeof v, "%.0f", tk->per_min);
        evhttp_add_header(h, "x-ratelimit-limit-tokens", v);
        double lv = bucket_level(tk, now);
        snprintf(v, sizeof v, "%.0f", lv < 0 ? 0 : floor(lv));
        evhttp_add_header(h, "x-ratelimit-remaining-tokens", v);
        snprintf(v, sizeof v, "%.3fs", bucket_reset_s(tk, now));
        evhttp_add_header(h, "x-ratelimit-reset-tokens", v);
    }
}

/* Reply with an OpenAI-shaped error (also our one error shape: code + message). */
static void reply_error(struct gw_req *g, int status, const char *type, const char *code,
                        long retry_after, bool no_retry, const char *fmt, ...)
    COAI_PRINTF(7, 8);

static void record_and_free(struct gw_req *g, int status);

static void reply_error(struct gw_req *g, int status, const char *type, const char *code,
                        long retry_after, bool no_retry, const char *fmt, ...)
{
    char msg[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    if (!g->client_gone && g->req) {
        struct evkeyvalq *h = evhttp_request_get_output_headers(g->req);
        http_add_common_headers(g->req, g->req_id);
        evhttp_add_header(h, "Content-Type", "application/json; charset=utf-8");
        add_ratelimit_headers(g, h);
        if (retry_after >= 0) {
            char v[32];
            snprintf(v, sizeof v, "%ld", retry_after);
            evhttp_add_header(h, "Retry-After", v);
        }
        if (no_retry)
            evhttp_add_header(h, "x-should-retry", "false");
        json_t *body = json_pack("{s:{s:s,s:s,s:n,s:s}}", "error", "message", msg, "type", type,
                                 "param", "code", code);
        char *s = json_dumps(body, JSON_COMPACT);
        json_decref(body);
        struct evbuffer *b = evbuffer_new();
        evbuffer_add(b, s, strlen(s));
        free(s);
        detach_close(g);
        evhttp_send_reply(g->req, status, reason(status), b);
        evbuffer_free(b);
        g->req = NULL;
    } else if (g->req) {
        detach_close(g);
        evhttp_send_reply(g->req, status, reason(status), NULL); /* frees the detached request */
        g->req = NULL;
    }
    g->started = true;
    g->finished = true;
    record_and_free(g, status);
}

/* ---- shared limits (Redis) ------------------------------------------------------- */

/* A principal's buckets are one hash, coai:gw:u:<hash> (user) or
 * coai:gw:t:<hash> (token), with fields r/rt (requests: level, ms of its
 * last update) and k/kt (tokens), refilled continuously as bucket.c does,
 * on Redis server time (instance clocks do not matter). A key expires once
 * its buckets would be full again. A user's spend this month is the hash
 * coai:gw:spend:<user hash>:<YYYYMM> {s: tokens, c: micro-dollars}, which
 * expires after SPEND_TTL_S. The hashes are HKDF(secret, "u:<id>") as
 * ratelimit.c names its keys (the same secret), so keys carry no ids. */
#define SPEND_TTL_S (40 * 86400)

/* Helpers of both scripts: now (ms), fill(level, last, rate) -> the level
 * refilled up to now (full when unknown), keep(key, ms) -> a key lives at
 * least ms more, full_ms(level, rate) -> ms until a bucket is full. */
#define LUA_PRELUDE                                                                         \
    "if redis.replicate_commands then redis.replicate_commands() end\n"                     \
    "local t = redis.call('TIME')\n"                                                        \
    "local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)\n"               \
    "local function fill(l, last, r)\n"                                                     \
    "  if r <= 0 then return 0 end\n"                                                       \
    "  l, last = tonumber(l), tonumber(last)\n"                                             \
    "  if l == nil or last == nil then return r end\n"                                      \
    "  if now > last then l = l + (now - last) * r / 60000 end\n"                           \
    "  if l > r then l = r end\n"                                                           \
    "  return l\n"                                                                          \
    "end\n"                                                                                 \
    "local function full_ms(l, r)\n"                                                        \
    "  if r <= 0 or l >= r then return 0 end\n"                                             \
    "  return math.ceil((r - l) * 60000 / r)\n"                                             \
    "end\n"                                                                                 \
    "local function keep(key, ms)\n"                                                        \
    "  ms = ms + 1000\n"                                                                    \
    "  if redis.call('PTTL', key) < ms then redis.call('PEXPIRE', key, ms) end\n"           \
    "end\n"

/* Admission. KEYS user bucket, token bucket (the user's again when there is
 * no token: its rates are then 0 and it is not touched), spend. ARGV user
 * rpm, user tpm, token rpm, token tpm (<= 0 unlimited), budget tokens,
 * budget micro-dollars (< 0 unlimited), this instance's spend of the month
 * (tokens, micro-dollars: seeds a missing counter, and raises one that is
 * lower, e.g. after increments lost during an outage), spend TTL (s).
 * Refuses without changing anything when the budget is spent or either
 * bucket is empty; else takes one request from both. Returns {code, wait
 * ms, levels x1000 of user req, user tok, token req, token tok, spent
 * tokens, spent micro-dollars}; code 0 ok, 1 user rpm, 2 token rpm, 3 tpm,
 * 4 token budget, 5 money budget. */
static const char admit_lua[] =
    LUA_PRELUDE
    "local rate = {tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3]), tonumber(ARGV[4])}\n"
    "local btok, bcost = tonumber(ARGV[5]), tonumber(ARGV[6])\n"
    "local seedt, seedc = tonumber(ARGV[7]), tonumber(ARGV[8])\n"
    "local sp = redis.call('HMGET', KEYS[3], 's', 'c')\n"
    "local st, sc = tonumber(sp[1]), tonumber(sp[2])\n"
    "if st == nil or sc == nil then\n"
    "  st, sc = seedt, seedc\n"
    "  redis.call('HSET', KEYS[3], 's', ARGV[7], 'c', ARGV[8])\n"
    "  redis.call('EXPIRE', KEYS[3], ARGV[9])\n"
    "else\n"
    "  if seedt > st then st = seedt; redis.call('HSET', KEYS[3], 's', ARGV[7]) end\n"
    "  if seedc > sc then sc = seedc; redis.call('HSET', KEYS[3], 'c', ARGV[8]) end\n"
    "end\n"
    "local lv = {0, 0, 0, 0}\n"
    "local function load(key, i)\n"
    "  if rate[i] <= 0 and rate[i + 1] <= 0 then return end\n"
    "  local v = redis.call('HMGET', key, 'r', 'rt', 'k', 'kt')\n"
    "  lv[i] = fill(v[1], v[2], rate[i])\n"
    "  lv[i + 1] = fill(v[3], v[4], rate[i + 1])\n"
    "end\n"
    "load(KEYS[1], 1)\n"
    "load(KEYS[2], 3)\n"
    "local function out(code, wait)\n"
    "  return {code, math.ceil(wait), math.floor(lv[1] * 1000), math.floor(lv[2] * 1000),\n"
    "          math.floor(lv[3] * 1000), math.floor(lv[4] * 1000), st, sc}\n"
    "end\n"
    "if btok >= 0 and st >= btok then return out(4, 0) end\n"
    "if bcost >= 0 and sc >= bcost then return out(5, 0) end\n"
    "if rate[1] > 0 and lv[1] < 1 then return out(1, (1 - lv[1]) * 60000 / rate[1]) end\n"
    "if rate[3] > 0 and lv[3] < 1 then return out(2, (1 - lv[3]) * 60000 / rate[3]) end\n"
    "if rate[2] > 0 and lv[2] <= 0 then return out(3, (1e-9 - lv[2]) * 60000 / rate[2]) end\n"
    "if rate[4] > 0 and lv[4] <= 0 then return out(3, (1e-9 - lv[4]) * 60000 / rate[4]) end\n"
    "local function store(key, i)\n"
    "  local a = {}\n"
    "  if rate[i] > 0 then\n"
    "    lv[i] = lv[i] - 1\n"
    "    a = {'r', tostring(lv[i]), 'rt', tostring(now)}\n"
    "  end\n"
    "  if rate[i + 1] > 0 then\n"
    "    a[#a + 1] = 'k'; a[#a + 1] = tostring(lv[i + 1])\n"
    "    a[#a + 1] = 'kt'; a[#a + 1] = tostring(now)\n"
    "  end\n"
    "  if #a == 0 then return end\n"
    "  redis.call('HSET', key, unpack(a))\n"
    "  keep(key, math.max(full_ms(lv[i], rate[i]), full_ms(lv[i + 1], rate[i + 1])))\n"
    "end\n"
    "store(KEYS[1], 1)\n"
    "store(KEYS[2], 3)\n"
    "return out(0, 0)\n";

/* Charge after an answer. KEYS as admit_lua. ARGV user tpm, token tpm,
 * tokens, micro-dollars, this instance's spend of the month including them
 * (seeds or raises the counter as above), spend TTL (s). Returns 1. */
static const char charge_lua[] =
    LUA_PRELUDE
    "local n = tonumber(ARGV[3])\n"
    "local function charge(key, r)\n"
    "  if r <= 0 or n <= 0 then return end\n"
    "  local v = redis.call('HMGET', key, 'k', 'kt')\n"
    "  local l = fill(v[1], v[2], r) - n\n"
    "  redis.call('HSET', key, 'k', tostring(l), 'kt', tostring(now))\n"
    "  keep(key, full_ms(l, r))\n"
    "end\n"
    "charge(KEYS[1], tonumber(ARGV[1]))\n"
    "charge(KEYS[2], tonumber(ARGV[2]))\n"
    "if redis.call('EXISTS', KEYS[3]) == 0 then\n"
    "  redis.call('HSET', KEYS[3], 's', ARGV[5], 'c', ARGV[6])\n"
    "  redis.call('EXPIRE', KEYS[3], ARGV[7])\n"
    "else\n"
    "  local st = redis.call('HINCRBY', KEYS[3], 's', ARGV[3])\n"
    "  local sc = redis.call('HINCRBY', KEYS[3], 'c', ARGV[4])\n"
    "  if tonumber(ARGV[5]) > st then redis.call('HSET', KEYS[3], 's', ARGV[5]) end\n"
    "  if tonumber(ARGV[6]) > sc then redis.call('HSET', KEYS[3], 'c', ARGV[6]) end\n"
    "end\n"
    "return 1\n";

/* out (33 bytes) = hex of 128 bits of HKDF(secret, "<kind>:<id>"), computed
 * once per state. false when it cannot be (then the request stays local). */
static bool shared_hash(struct gateway *gw, char kind, const char *id, char out[33])
{
    if (out[0])
        return true;
    char info[STORE_ID_LEN + 8];
    unsigned char h[32];
    snprintf(info, sizeof info, "%c:%s", kind, id);
    if (crypto_hkdf(gw->key_secret, sizeof gw->key_secret, info, h) != 0 ||
        crypto_hex_encode(h, 16, out, 33) != 0) {
        out[0] = '\0';
        return false;
    }
    return true;
}

struct shared_keys {
    char user[64], token[64], spend[80];
};

/* The three keys of a request; false when a hash cannot be made. */
static bool shared_keys(struct gateway *gw, struct user_state *u, const char *user_id,
                        struct token_state *t, const char *token_id, int64_t at_ms,
                        struct shared_keys *k)
{
    if (!shared_hash(gw, 'u', user_id, u->rkey) ||
        (t && !shared_hash(gw, 't', token_id, t->rkey)))
        return false;
    time_t secs = (time_t)(at_ms / 1000);
    struct tm tm;
    gmtime_r(&secs, &tm);
    snprintf(k->user, sizeof k->user, "coai:gw:u:%s", u->rkey);
    if (t)
        snprintf(k->token, sizeof k->token, "coai:gw:t:%s", t->rkey);
    else
        memcpy(k->token, k->user, sizeof k->token);
    snprintf(k->spend, sizeof k->spend, "coai:gw:spend:%s:%04d%02d", u->rkey, tm.tm_year + 1900,
             tm.tm_mon + 1);
    return true;
}

/* Tokens and spend of one answer onto the shared counters (fire and forget:
 * lost while Redis is down; the next admission raises the spend again to
 * what this instance counted). */
static void shared_charge(struct gateway *gw, struct user_state *us, const char *user_id,
                          struct token_state *t, const char *token_id, int64_t tokens,
                          int64_t cost, int64_t at_ms)
{
    struct shared_keys k;
    if ((tokens <= 0 && cost <= 0) || !shared_keys(gw, us, user_id, t, token_id, at_ms, &k))
        return;
    char a[7][24];
    snprintf(a[0], sizeof a[0], "%lld", (long long)us->tpm);
    snprintf(a[1], sizeof a[1], "%.0f", t ? t->tok.per_min : 0.0);
    snprintf(a[2], sizeof a[2], "%lld", (long long)(tokens > 0 ? tokens : 0));
    snprintf(a[3], sizeof a[3], "%lld", (long long)(cost > 0 ? cost : 0));
    snprintf(a[4], sizeof a[4], "%lld", (long long)us->month_tokens);
    snprintf(a[5], sizeof a[5], "%lld", (long long)us->month_cost);
    snprintf(a[6], sizeof a[6], "%d", SPEND_TTL_S);
    const char *argv[] = {k.user, k.token, k.spend, a[0], a[1], a[2], a[3], a[4], a[5], a[6]};
    (void)redis_eval_sha(gw->redis, gw->charge_lua, 3, 10, argv, NULL, NULL, NULL);
}

/* ---- usage ------------------------------------------------------------------------ */

int64_t gateway_cost(struct app *app, const char *model, int64_t prompt, int64_t cached,
                     int64_t completion)
{
    struct gateway *gw = app->gw;
    if (!gw || !model)
        return 0;
    const struct store_price *best = NULL;
    size_t best_len = 0;
    for (size_t i = 0; i < gw->nprices; i++) {
        size_t l = strlen(gw->prices[i].model);
        if (strncmp(model, gw->prices[i].model, l) == 0 && l > best_len &&
            (model[l] == '\0' || model[l] == '-' || model[l] == ':' || model[l] == '@')) {
            best = &gw->prices[i];
            best_len = l;
        }
    }
    if (!best)
        return 0;
    if (prompt < 0)
        prompt = 0;
    if (cached < 0 || cached > prompt)
        cached = 0;
    if (completion < 0)
        completion = 0;
    /* micro-dollars per 1M tokens * tokens / 1M, rounded up to a micro-dollar */
    __int128 c = (__int128)(prompt - cached) * best->input_micros +
                 (__int128)cached * best->cached_input_micros +
                 (__int128)completion * best->output_micros;
    return (int64_t)((c + 999999) / 1000000);
}

/* Worker job: take every waiting usage row and insert them in one
 * transaction. Rows recorded while it runs schedule the next job, so each
 * row is followed by a job that will take it, and pool_free (which runs
 * queued jobs) writes them all at shutdown. */
static void usage_work(void *arg, void *ctx)
{
    struct gateway *gw = arg;
    pthread_mutex_lock(&gw->usage_mu);
    struct store_usage *rows = gw->usage_q;
    size_t n = gw->usage_n;
    gw->usage_q = NULL;
    gw->usage_n = gw->usage_cap = 0;
    gw->usage_scheduled = false;
    pthread_mutex_unlock(&gw->usage_mu);
    if (n == 0)
        return;
    bool tx = n > 1 && store_begin(ctx) == APP_OK;
    for (size_t i = 0; i < n; i++)
        if (store_usage_insert(ctx, &rows[i]) != APP_OK)
            log_error("usage record failed", "detail", store_errmsg(ctx), NULL);
    if (tx && store_commit(ctx) != APP_OK) {
        log_error("usage records failed", "detail", store_errmsg(ctx), NULL);
        store_rollback(ctx);
        /* one at a time, so one bad row cannot lose the others */
        for (size_t i = 0; i < n; i++)
            if (store_usage_insert(ctx, &rows[i]) != APP_OK)
                log_error("usage record failed", "detail", store_errmsg(ctx), NULL);
    }
    for (size_t i = 0; i < n; i++)
        free(rows[i].model);
    free(rows);
}

void gateway_record(struct app *app, const struct store_usage *u)
{
    struct gateway *gw = app->gw;
    struct store_usage row = *u;
    row.model = xstrdup(u->model);
    if (!row.created_at)
        row.created_at = now_ms();
    int64_t total = (u->prompt_tokens > 0 ? u->prompt_tokens : 0) +
                    (u->completion_tokens > 0 ? u->completion_tokens : 0);
    int64_t now = mono_us();
    if (u->user_id[0]) {
        struct user_state *us = user_state(gw, u->user_id);
        int64_t ms = month_start_ms(row.created_at);
        if (us->month_start != ms) {
            us->month_start = ms;
            us->month_tokens = us->month_cost = 0;
        }
        us->month_tokens += total;
        us->month_cost += u->cost_micros;
        bucket_charge(&us->tok, (double)total, now);
    }
    struct token_state *t = u->token_id[0] ? strmap_get(gw->tokens, u->token_id) : NULL;
    if (t)
        bucket_charge(&t->tok, (double)total, now);
    if (gw->redis && u->user_id[0])
        shared_charge(gw, user_state(gw, u->user_id), u->user_id, t, u->token_id, total,
                      u->cost_micros, row.created_at);
    if (u->key_id[0])
        gateway_pool_report(app, u->key_id, u->status < 400 ? u->status : 0, -1, total);
    pthread_mutex_lock(&gw->usage_mu);
    if (gw->usage_n == gw->usage_cap) {
        gw->usage_cap = gw->usage_cap ? gw->usage_cap * 2 : 64;
        gw->usage_q = xrealloc(gw->usage_q, gw->usage_cap * sizeof *gw->usage_q);
    }
    gw->usage_q[gw->usage_n++] = row; /* the queue owns the model copy now */
    bool full = gw->usage_n >= USAGE_BATCH_MAX;
    pthread_mutex_unlock(&gw->usage_mu);
    if (full || app->shutting_down)
        gateway_usage_flush(gw);
    else if (!gw->usage_armed) {
        /* A short wait lets rows of concurrent requests share one
         * transaction (and one fsync) instead of one each. */
        struct timeval tv = {0, USAGE_DELAY_MS * 1000};
        gw->usage_armed = true;
        evtimer_add(gw->usage_timer, &tv);
    }
}

void gateway_usage_flush(struct gateway *gw)
{
    if (!gw)
        return;
    if (gw->usage_armed) {
        evtimer_del(gw->usage_timer);
        gw->usage_armed = false;
    }
    pthread_mutex_lock(&gw->usage_mu);
    bool submit = gw->usage_n > 0 && !gw->usage_scheduled;
    if (submit)
        gw->usage_scheduled = true;
    pthread_mutex_unlock(&gw->usage_mu);
    if (submit)
        pool_submit(gw->app->pool, usage_work, NULL, gw);
}

static void on_usage_timer(evutil_socket_t fd, short what, void *arg)
{
    struct gateway *gw = arg;
    gw->usage_armed = false;
    gateway_usage_flush(gw);
}

/* What a JSON text (one event of a stream, or a whole answer) tells the
 * accounting, read in one pass without building a tree: the top-level
 * "model" (raw bytes, escapes as written), the integers of a top-level
 * "usage" object, and the bytes of every "content", "arguments" and
 * "refusal" string value (escapes counted as written: a cheap stand-in for
 * the decoded length). Strings are skipped with memchr. Not a validator:
 * from malformed input it reports whatever it found. */
struct jscan {
    const char *model;         /* NULL = none */
    size_t model_len;
    bool usage;                /* a top-level "usage" object */
    int64_t prompt, completion, input, output, cached; /* -1 = absent */
    size_t text;
};

enum {
    JK_NONE, JK_OTHER, JK_TEXT, JK_MODEL, JK_USAGE, JK_PROMPT, JK_COMPLETION, JK_INPUT,
    JK_OUTPUT, JK_PTD, JK_CACHED
};

#define JSCAN_DEPTH 4

/* The key s (n bytes, raw) at depth (open containers) inside the containers
 * opened as the values of stack[0..depth-1]. */
static int jscan_key(const char *s, size_t n, int depth, const unsigned char *stack)
{
#define JK_IS(lit) (n == sizeof(lit) - 1 && memcmp(s, lit, sizeof(lit) - 1) == 0)
    if (JK_IS("content") || JK_IS("arguments") || JK_IS("refusal"))
        return JK_TEXT;
    if (depth == 1) {
        if (JK_IS("model"))
            return JK_MODEL;
        if (JK_IS("usage"))
            return JK_USAGE;
    } else if (depth == 2 && stack[1] == JK_USAGE) {
        if (JK_IS("prompt_tokens"))
            return JK_PROMPT;
        if (JK_IS("completion_tokens"))
            return JK_COMPLETION;
        if (JK_IS("input_tokens"))
            return JK_INPUT;
        if (JK_IS("output_tokens"))
            return JK_OUTPUT;
        if (JK_IS("prompt_tokens_details"))
            return JK_PTD;
    } else if (depth == 3 && stack[1] == JK_USAGE && stack[2] == JK_PTD) {
        if (JK_IS("cached_tokens"))
            return JK_CACHED;
    }
    return JK_OTHER;
#undef JK_IS
}

static void jscan(const char *p, size_t len, struct jscan *r)
{
    memset(r, 0, sizeof *r);
    r->prompt = r->completion = r->input = r->output = r->cached = -1;
    unsigned char stack[JSCAN_DEPTH] = {0};
    int depth = 0, key = JK_NONE;
    const char *end = p + len;
    while (p < end) {
        char c = *p;
        if (c == '"') {
            const char *s = p + 1, *q = s;
            for (;;) { /* the closing quote: one not escaped by an odd run of backslashes */
                q = memchr(q, '"', (size_t)(end - q));
                if (!q)
                    return; /* cut short */
                const char *b = q;
                while (b > s && b[-1] == '\\')
                    b--;
                if (((q - b) & 1) == 0)
                    break;
                q++;
            }
            size_t n = (size_t)(q - s);
            p = q + 1;
            while (p < end && (*p == ' ' || *p == '\t' || *p == '\r' || *p == '\n'))
                p++;
            if (p < end && *p == ':') { /* a key: its value follows */
                key = jscan_key(s, n, depth, stack);
                p++;
                continue;
            }
            if (key == JK_TEXT)
                r->text += n;
            else if (key == JK_MODEL && depth == 1 && !r->model) {
                r->model = s;
                r->model_len = n;
            }
            key = JK_NONE;
            continue;
        }
        if (c == '{' || c == '[') {
            if (c == '{' && key == JK_USAGE && depth == 1)
                r->usage = true;
            if (depth < JSCAN_DEPTH)
                stack[depth] = (unsigned char)(c == '{' ? key : JK_OTHER);
            depth++;
            key = JK_NONE;
        } else if (c == '}' || c == ']') {
            if (depth > 0)
                depth--;
            key = JK_NONE;
        } else if (c == '-' || (c >= '0' && c <= '9')) {
            const char *n0 = p;
            bool neg = c == '-';
            int64_t v = 0;
            if (neg)
                p++;
            while (p < end && *p >= '0' && *p <= '9' && v < INT64_MAX / 10 - 10)
                v = v * 10 + (*p++ - '0');
            bool integer = p > n0 + neg && (p == end || (*p != '.' && *p != 'e' && *p != 'E' &&
                                                         (*p < '0' || *p > '9')));
            while (p < end && ((*p >= '0' && *p <= '9') || *p == '.' || *p == 'e' || *p == 'E' ||
                               *p == '+' || *p == '-'))
                p++;
            if (integer) {
                v = neg ? -v : v;
                switch (key) {
                case JK_PROMPT: r->prompt = v; break;
                case JK_COMPLETION: r->completion = v; break;
                case JK_INPUT: r->input = v; break;
                case JK_OUTPUT: r->output = v; break;
                case JK_CACHED: r->cached = v; break;
                default: break;
                }
            }
            key = JK_NONE;
            continue;
        } else if (c == ',') {
            key = JK_NONE;
        }
        p++;
    }
}

/* The model jscan found in doc (len bytes), decoded, owned; NULL when none.
 * Escaped names (never seen in practice) are read by jansson. */
static char *jscan_model(const struct jscan *r, const char *doc, size_t len)
{
    if (!r->model)
        return NULL;
    if (!memchr(r->model, '\\', r->model_len))
        return xstrndup(r->model, r->model_len);
    json_t *root = json_loadb(doc, len, 0, NULL);
    const char *m = json_string_value(json_object_get(root, "model"));
    char *out = m ? xstrdup(m) : NULL;
    json_decref(root);
    return out;
}

static int64_t estimate_tokens(size_t bytes)
{
    return (int64_t)((bytes + 3) / 4);
}

static void record_and_free(struct gw_req *g, int status)
{
    if (g->user_id[0] && g->path && (g->method == EVHTTP_REQ_POST)) {
        struct store_usage u;
        memset(&u, 0, sizeof u);
        memcpy(u.user_id, g->user_id, sizeof u.user_id);
        memcpy(u.token_id, g->token_id, sizeof u.token_id);
        memcpy(u.key_id, g->key_id, sizeof u.key_id);
        snprintf(u.key_source, sizeof u.key_source, "%s", g->key_source); /* "" = no key was used */
        snprintf(u.endpoint, sizeof u.endpoint, "%s", g->path + 1);
        u.prompt_tokens = u.completion_tokens = u.cached_tokens = 0;
        const char *model = g->model;
        bool have_usage = false;
        if (g->sse) {
            if (g->s_prompt >= 0 || g->s_completion >= 0) {
                u.prompt_tokens = g->s_prompt > 0 ? g->s_prompt : 0;
                u.completion_tokens = g->s_completion > 0 ? g->s_completion : 0;
                have_usage = true;
            }
            if (g->s_model)
                model = g->s_model;
        }
        char *body_model = NULL;
        if (!have_usage && g->copy.len) {
            struct jscan r;
            jscan(g->copy.p, g->copy.len, &r);
            if (r.usage) {
                int64_t pt = r.prompt >= 0 ? r.prompt : r.input;
                int64_t ct = r.completion >= 0 ? r.completion : r.output;
                u.prompt_tokens = pt > 0 ? pt : 0;
                u.completion_tokens = ct > 0 ? ct : 0;
                u.cached_tokens = r.cached > 0 ? r.cached : 0;
                have_usage = true;
            }
            body_model = jscan_model(&r, g->copy.p, g->copy.len);
            if (body_model)
                model = body_model;
        }
        if (!have_usage && status < 400) {
            /* The provider sent no usage: count (about four bytes a token). */
            u.tokens_estimated = true;
            u.prompt_tokens = estimate_tokens(g->body_len);
            size_t out_len = 0;
            if (g->sse)
                out_len = g->s_text;
            else
                out_len = g->copy.len;
            u.completion_tokens = estimate_tokens(out_len);
        }
        u.model = (char *)(model ? model : "");
        u.cost_micros = gateway_cost(g->app, u.model, u.prompt_tokens, u.cached_tokens,
                                     u.completion_tokens);
        u.latency_ms = (mono_us() - g->start_us) / 1000;
        u.status = status;
        metrics_tokens(u.prompt_tokens, u.completion_tokens);
        gateway_record(g->app, &u);
        free(body_model);
    }
    char *route = xasprintf("/v1%s", g->path ? g->path : "");
    if (strchr(route + 4, '/'))
        route[4 + strcspn(route + 4, "/?")] = '\0'; /* /v1/audio/x -> /v1/audio */
    metrics_request(route, g->method == EVHTTP_REQ_POST ? "POST" : g->method == EVHTTP_REQ_GET ? "GET" : "OTHER",
                    status, mono_us() - g->start_us);
    free(route);
    if (log_enabled(LOG_INFO)) {
        char st[16], dur[32], ttfb[32];
        snprintf(st, sizeof st, "=%d", status);
        snprintf(dur, sizeof dur, "=%lld", (long long)(mono_us() - g->start_us));
        snprintf(ttfb, sizeof ttfb, "=%lld", (long long)g->ttfb_us);
        log_kv(LOG_INFO, "gateway", "request_id", g->req_id, "path", g->path ? g->path : "-",
               "status", st, "duration_us", dur, "ttfb_us", ttfb, "user_id",
               g->user_id[0] ? g->user_id : NULL, "key", g->key_source[0] ? g->key_source : NULL,
               "client_gone", g->client_gone ? "=true" : "=false", NULL);
    }
    gr_free(g);
}

/* ---- upstream relay ----------------------------------------------------------------- */

static void start_upstream(struct gw_req *g);

/* name: n bytes, not NUL-terminated */
static bool hop_by_hop(const char *name, size_t n)
{
    static const char *const skip[] = {"connection", "keep-alive", "transfer-encoding",
                                       "content-length", "te", "trailer", "upgrade",
                                       "proxy-authenticate", "set-cookie", "date", "server",
                                       "alt-svc", "strict-transport-security", "x-request-id"};
    for (size_t i = 0; i < COAI_ARRAY_LEN(skip); i++)
        if (strlen(skip[i]) == n && strncasecmp(name, skip[i], n) == 0)
            return true;
    return (n >= 12 && strncasecmp(name, "x-ratelimit-", 12) == 0) ||
           (n >= 3 && strncasecmp(name, "cf-", 3) == 0);
}

static void add_fwd_headers(struct gw_req *g, struct evkeyvalq *h)
{
    for (size_t i = 0; i < g->nfh; i++) {
        const char *name = g->hb + g->fh[i];
        evhttp_add_header(h, name, name + strlen(name) + 1);
    }
}

static void start_reply(struct gw_req *g)
{
    g->started = true;
    g->ttfb_us = mono_us() - g->start_us;
    if (g->client_gone || !g->req)
        return;
    struct evkeyvalq *h = evhttp_request_get_output_headers(g->req);
    http_add_common_headers(g->req, g->req_id);
    add_fwd_headers(g, h);
    add_ratelimit_headers(g, h);
    evhttp_send_reply_start(g->req, (int)g->status, reason((int)g->status));
}

/* One event of a relayed stream: scanned once (jscan) for the model, the
 * usage and the length of the text, in case the provider sends no usage
 * (then it is estimated). Nothing is parsed into a tree. */
static int on_usage_event(void *arg, const char *event, const char *data, size_t len,
                          const char *id)
{
    struct gw_req *g = arg;
    struct jscan r;
    jscan(data, len, &r);
    if (!g->s_first && r.model) {
        g->s_model = jscan_model(&r, data, len);
        g->s_first = true;
    }
    if (r.usage) {
        if (r.prompt >= 0)
            g->s_prompt = r.prompt;
        if (r.completion >= 0)
            g->s_completion = r.completion;
    }
    g->s_text += r.text;
    return 0;
}

static size_t on_header(char *p, size_t sz, size_t n, void *arg)
{
    struct gw_req *g = arg;
    size_t len = sz * n;
    if (len >= 5 && strncmp(p, "HTTP/", 5) == 0) {
        /* a new response (after 1xx or a redirect): drop what we kept */
        g->nfh = 0;
        g->hb_len = 0;
        g->retry_after_s = -1;
        return len;
    }
    if (len <= 2) { /* end of headers */
        curl_easy_getinfo(g->easy, CURLINFO_RESPONSE_CODE, &g->status);
        if (g->status < 200)
            return len;
        g->headers_done = true;
        bool pool = strcmp(g->key_source, "pool") == 0;
        if ((pool && (g->status == 401 || g->status == 429) && g->ntried < MAX_KEY_ATTEMPTS) ||
            (g->filter_models && g->status == 200))
            g->holding = true;
        else
            start_reply(g);
        if (g->status == 200 && g->stream && !g->holding) {
            g->s_prompt = g->s_completion = -1;
            g->sse = sse_parser_new(LIMIT_UPSTREAM_SSE_LINE, on_usage_event, g);
        }
        return len;
    }
    const char *colon = memchr(p, ':', len);
    if (!colon || g->nfh >= MAX_FWD_HEADERS)
        return len;
    size_t nl = (size_t)(colon - p);
    const char *v = colon + 1;
    size_t vl = len - nl - 1;
    while (vl && (*v == ' ' || *v == '\t')) {
        v++;
        vl--;
    }
    while (vl && (v[vl - 1] == '\r' || v[vl - 1] == '\n' || v[vl - 1] == ' '))
        vl--;
    if (nl == 11 && strncasecmp(p, "retry-after", 11) == 0) {
        char tmp[32];
        snprintf(tmp, sizeof tmp, "%.*s", (int)(vl < 31 ? vl : 31), v);
        g->retry_after_s = strtol(tmp, NULL, 10);
    }
    if (hop_by_hop(p, nl))
        return len;
    size_t need = g->hb_len + nl + vl + 2;
    if (need > g->hb_cap) {
        g->hb_cap = need > 1024 ? need * 2 : 1024;
        g->hb = xrealloc(g->hb, g->hb_cap);
    }
    g->fh[g->nfh++] = (uint32_t)g->hb_len;
    memcpy(g->hb + g->hb_len, p, nl);
    g->hb[g->hb_len + nl] = '\0';
    memcpy(g->hb + g->hb_len + nl + 1, v, vl);
    g->hb[g->hb_len + nl + 1 + vl] = '\0';
    g->hb_len = need;
    return len;
}

static size_t on_body(char *p, size_t sz, size_t n, void *arg)
{
    struct gw_req *g = arg;
    size_t len = sz * n;
    if (!g->headers_done) {
        curl_easy_getinfo(g->easy, CURLINFO_RESPONSE_CODE, &g->status);
        g->headers_done = true;
        start_reply(g);
    }
    if (g->holding) {
        if (buf_append(&g->held, p, len) != 0)
            return 0; /* over the cap: abort */
        return len;
    }
    if (!g->client_gone && g->req) {
        evbuffer_add(g->out, p, len);
        if (!g->dirty) {
            struct gateway *gw = g->gw;
            g->dirty = true;
            g->dprev = NULL;
            g->dnext = gw->dirty;
            if (gw->dirty)
                gw->dirty->dprev = g;
            gw->dirty = g;
            if (!gw->flush_armed) {
                gw->flush_armed = true;
                event_active(gw->flush_ev, EV_TIMEOUT, 0);
            }
        }
    }
    if (g->sse)
        (void)sse_parser_feed(g->sse, p, len);
    else if (!g->stream)
        (void)buf_append(&g->copy, p, len); /* past the cap we estimate */
    return len;
}

static void mark_key(struct gw_req *g, long status)
{
    gateway_pool_report(g->app, g->key_id, status, g->retry_after_s, 0);
}

static void send_held(struct gw_req *g)
{
    /* Forward a response we held back (all keys failed, or a filtered list). */
    struct evkeyvalq *h = g->req ? evhttp_request_get_output_headers(g->req) : NULL;
    int status = (int)g->status;
    if (g->req && !g->client_gone) {
        http_add_common_headers(g->req, g->req_id);
        add_fwd_headers(g, h);
        add_ratelimit_headers(g, h);
        struct evbuffer *b = evbuffer_new();
        evbuffer_add(b, buf_str(&g->held), g->held.len);
        detach_close(g);
        evhttp_send_reply(g->req, status, reason(status), b);
        evbuffer_free(b);
    } else if (g->req) {
        detach_close(g);
        evhttp_send_reply(g->req, status, reason(status), NULL);
    }
    g->req = NULL;
    g->finished = true;
    record_and_free(g, status);
}

static void filter_models(struct gw_req *g)
{
    json_t *root = json_loadb(g->held.p, g->held.len, 0, NULL);
    json_t *data = json_object_get(root, "data");
    if (json_is_array(data)) {
        json_t *keep = json_array();
        size_t i, j;
        json_t *m, *a;
        json_array_foreach(data, i, m)
        {
            const char *id = json_string_value(json_object_get(m, "id"));
            json_array_foreach(g->allow, j, a) if (id && strcmp(id, json_string_value(a)) == 0)
            {
                json_array_append(keep, m);
                break;
            }
        }
        json_object_set_new(root, "data", keep);
        char *s = json_dumps(root, JSON_COMPACT);
        buf_reset(&g->held);
        (void)buf_append_str(&g->held, s);
        free(s);
    }
    json_decref(root);
}

static void on_upstream_done(CURL *easy, CURLcode rc, void *arg)
{
    struct gw_req *g = arg;
    if (!g->headers_done)
        curl_easy_getinfo(easy, CURLINFO_RESPONSE_CODE, &g->status);
    easy_put(g->gw, g->easy);
    g->easy = NULL;
    curl_slist_free_all(g->hdrs);
    g->hdrs = NULL;
    bool pool = strcmp(g->key_source, "pool") == 0;

    if (g->holding && g->status == 200 && g->filter_models && rc == CURLE_OK) {
        filter_models(g);
        send_held(g);
        return;
    }
    if (g->holding) {
        /* 401/429 from a pool key, nothing sent yet: mark it, try the next. */
        mark_key(g, g->status);
        if (rc == CURLE_OK && gateway_pool_available(g->app)) {
            g->holding = false;
            g->headers_done = false;
            buf_reset(&g->held);
            start_upstream(g);
            return;
        }
        send_held(g);
        return;
    }
    if (!g->started) {
        /* transport failure before any byte: another pool key may work */
        if (pool) {
            g->retry_after_s = -1;
            mark_key(g, 503);
            start_upstream(g);
            return;
        }
        metrics_provider_error("provider_unreachable");
        if (sentry_enabled())
            sentry_capture(g->app, "warning", "provider failure",
                           json_pack("{s:s,s:s,s:s}", "code", "provider_unreachable", "route",
                                     "/v1", "request_id", g->req_id));
        reply_error(g, rc == CURLE_OPERATION_TIMEDOUT ? 504 : 502, "server_error",
                    "provider_unreachable", -1, false, "could not reach the provider: %s",
                    curl_easy_strerror(rc));
        return;
    }
    if (g->req && !g->client_gone) {
        flush_out(g);
        detach_close(g);
        security_reply_end(g->req); /* a stream that broke mid-way ends here too */
    }
    g->req = NULL;
    g->finished = true;
    record_and_free(g, rc == CURLE_OK ? (int)g->status : 502);
}

static void on_client_close(struct evhttp_connection *evcon, void *arg)
{
    struct gw_req *g = arg;
    evhttp_connection_set_closecb(evcon, NULL, NULL);
    g->evcon = NULL;
    g->client_gone = true;
    if (g->easy) {
        /* stop spending: cancel the provider request */
        curlev_remove(g->app->curl, g->easy);
        easy_put(g->gw, g->easy);
        g->easy = NULL;
        struct evhttp_request *req = g->req;
        g->req = NULL;
        if (req) {
            if (g->started)
                evhttp_send_reply_end(req);
            else
                evhttp_send_reply(req, 499, "Client Closed Request", NULL);
        }
        g->finished = true;
        record_and_free(g, 499);
    }
    /* else: a worker job is in flight; it finishes and replies (to a
     * detached request, which libevent then frees). */
}

/* Choose the key for this attempt: the user's own, else the pool, else the
 * server default. false when there is none left. */
static bool choose_key(struct gw_req *g)
{
    provider_conn_clear(&g->pc);
    g->key_id[0] = '\0';
    if (g->p && g->p->has_own && g->ntried == 0) {
        g->pc.base_url = xstrdup(g->p->own.base_url);
        g->pc.api_key = xstrdup(g->p->own.api_key);
        snprintf(g->key_source, sizeof g->key_source, "user");
        g->ntried++;
        return true;
    }
    if (g->p && g->p->has_own)
        return false; /* the user's own key is the only one for them */
    struct gateway *gw = g->gw;
    int64_t now = mono_us();
    int total = 0;
    for (size_t i = 0; i < gw->nkeys; i++) {
        struct pool_key *k = &gw->keys[i];
        bool tried = false;
        for (int j = 0; j < g->ntried; j++)
            tried |= strcmp(g->tried[j], k->id) == 0;
        if (!k->enabled || tried || k->cool_until_us > now)
            continue;
        if (k->req.per_min > 0 && bucket_level(&k->req, now) < 1)
            continue;
        if (k->tok.per_min > 0 && bucket_level(&k->tok, now) <= 0)
            continue;
        total += k->weight;
    }
    if (total > 0) {
        gw->rng = gw->rng * 1103515245u + 12345u;
        int pick = (int)((gw->rng >> 8) % (unsigned)total);
        for (size_t i = 0; i < gw->nkeys; i++) {
            struct pool_key *k = &gw->keys[i];
            bool tried = false;
            for (int j = 0; j < g->ntried; j++)
                tried |= strcmp(g->tried[j], k->id) == 0;
            if (!k->enabled || tried || k->cool_until_us > now)
                continue;
            if (k->req.per_min > 0 && bucket_level(&k->req, now) < 1)
                continue;
            if (k->tok.per_min > 0 && bucket_level(&k->tok, now) <= 0)
                continue;
            if (pick < k->weight) {
                (void)bucket_take(&k->req, 1, now, NULL);
                k->requests++;
                g->pc.base_url = xstrdup(k->base_url);
                g->pc.api_key = xstrdup(k->key);
                memcpy(g->key_id, k->id, sizeof g->key_id);
                snprintf(g->key_source, sizeof g->key_source, "pool");
                if (g->ntried < MAX_KEY_ATTEMPTS)
                    memcpy(g->tried[g->ntried++], k->id, STORE_ID_LEN + 1);
                return true;
            }
            pick -= k->weight;
        }
    }
    bool pool_had_keys = g->ntried > 0;
    if (!pool_had_keys && g->app->cfg.provider_api_key && strcmp(g->key_source, "server") != 0) {
        g->pc.base_url = xstrdup(g->app->cfg.provider_base_url);
        g->pc.api_key = xstrdup(g->app->cfg.provider_api_key);
        snprintf(g->key_source, sizeof g->key_source, "server");
        return true;
    }
    return false;
}

/* Seconds until the first enabled pool key that is cooling down (or out of
 * its own request budget) can serve again, rounded up; -1 when no enabled
 * key is merely waiting (none at all, or every one disabled). */
static long pool_wait_s(struct gw_req *g)
{
    struct gateway *gw = g->gw;
    int64_t now = mono_us();
    int64_t best = -1;
    for (size_t i = 0; i < gw->nkeys; i++) {
        const struct pool_key *k = &gw->keys[i];
        if (!k->enabled)
            continue;
        int64_t until = k->cool_until_us > now ? k->cool_until_us - now : 1000000;
        if (best < 0 || until < best)
            best = until;
    }
    if (best < 0)
        return -1;
    return (long)((best + 999999) / 1000000);
}

static void start_upstream(struct gw_req *g)
{
    /* choose_key reads g->p again on a retry with another key, loop
     * iterations later: a reload of the same token (after the cache time)
     * or an invalidation may drop it from the cache meanwhile. */
    if (g->p && !g->p_held) {
        g->p->refs++;
        g->p_held = true;
    }
    if (g->client_gone) {
        g->finished = true;
        if (g->req) {
            evhttp_send_reply(g->req, 499, "Client Closed Request", NULL);
            g->req = NULL;
        }
        record_and_free(g, 499);
        return;
    }
    if (!choose_key(g)) {
        long wait_s = pool_wait_s(g);
        if (wait_s >= 0 && !(g->p && g->p->has_own))
            return reply_error(g, 503, "server_error", "provider_keys_busy", wait_s, false,
                               "every provider key is rate limited right now; try again in "
                               "%ld s",
                               wait_s);
        if (g->ntried > 0 && strcmp(g->key_source, "pool") == 0)
            return reply_error(g, 503, "server_error", "no_provider_key", 5, false,
                               "every provider key is unavailable right now (invalid or "
                               "rate limited); try again later");
        return reply_error(g, 503, "server_error", "no_provider_key", -1, true,
                           "no provider key is configured for this account");
    }
    struct gateway *gw = g->gw;
    if (gw->neasy_free) {
        /* a used handle: provider_easy_new's options are still set */
        g->easy = gw->easy_free[--gw->neasy_free];
        char *url = xasprintf("%s%s%s%s", g->pc.base_url, g->path, g->query ? "?" : "",
                              g->query ? g->query : "");
        curl_easy_setopt(g->easy, CURLOPT_URL, url);
        free(url);
    } else {
        char *path = g->query ? xasprintf("%s?%s", g->path, g->query) : xstrdup(g->path);
        g->easy = provider_easy_new(g->app, &g->pc, path, NULL, g->stream, &g->hdrs);
        free(path);
        if (!g->easy)
            return reply_error(g, 500, "server_error", "internal_error", -1, false,
                               "cannot create the provider request");
        /* provider_easy_new sets JSON defaults; the relay sends the client's own */
        curl_slist_free_all(g->hdrs);
        g->hdrs = NULL;
        curl_easy_setopt(g->easy, CURLOPT_ACCEPT_ENCODING, NULL);
        curl_easy_setopt(g->easy, CURLOPT_HEADERFUNCTION, on_header);
        curl_easy_setopt(g->easy, CURLOPT_WRITEFUNCTION, on_body);
    }
    char *auth = xasprintf("Authorization: Bearer %s", g->pc.api_key);
    g->hdrs = curl_slist_append(g->hdrs, auth);
    secure_wipe(auth, strlen(auth));
    free(auth);
    if (g->content_type) {
        char *ct = xasprintf("Content-Type: %s", g->content_type);
        g->hdrs = curl_slist_append(g->hdrs, ct);
        free(ct);
    }
    char *acc = xasprintf("Accept: %s", g->accept ? g->accept : "*/*");
    g->hdrs = curl_slist_append(g->hdrs, acc);
    free(acc);
    if (g->openai_beta) {
        char *b = xasprintf("OpenAI-Beta: %s", g->openai_beta);
        g->hdrs = curl_slist_append(g->hdrs, b);
        free(b);
    }
    g->hdrs = curl_slist_append(g->hdrs, "Expect:");
    curl_easy_setopt(g->easy, CURLOPT_HTTPHEADER, g->hdrs);
    /* every option a previous request of this handle may have set */
    if (g->method == EVHTTP_REQ_POST) {
        curl_easy_setopt(g->easy, CURLOPT_CUSTOMREQUEST, NULL);
        curl_easy_setopt(g->easy, CURLOPT_POST, 1L);
        curl_easy_setopt(g->easy, CURLOPT_POSTFIELDS, g->body ? g->body : "");
        curl_easy_setopt(g->easy, CURLOPT_POSTFIELDSIZE, (long)g->body_len);
    } else {
        curl_easy_setopt(g->easy, CURLOPT_HTTPGET, 1L);
        curl_easy_setopt(g->easy, CURLOPT_CUSTOMREQUEST,
                         g->method == EVHTTP_REQ_DELETE ? "DELETE" : NULL);
    }
    curl_easy_setopt(g->easy, CURLOPT_HEADERDATA, g);
    curl_easy_setopt(g->easy, CURLOPT_WRITEDATA, g);
    g->status = 0;
    g->nfh = 0; /* headers of a failed-over attempt */
    g->hb_len = 0;
    g->retry_after_s = -1;
    if (curlev_add(g->app->curl, g->easy, on_upstream_done, g) != 0) {
        easy_put(gw, g->easy);
        g->easy = NULL;
        reply_error(g, 500, "server_error", "internal_error", -1, false,
                    "cannot start the provider request");
    }
}

/* ---- the request body ------------------------------------------------------------------ */

/* A strict one-pass check of a request body with what admission needs from
 * it: the top-level "model" (raw bytes) and whether "stream" is true (the
 * last of duplicate keys wins, as in jansson). It accepts only what jansson
 * accepts (RFC 8259 grammar, UTF-8, no \u0000, paired surrogates, an object
 * at the top) and gives up (BODY_UNSURE) on what it does not decide the way
 * jansson does: exponents and long numbers (jansson refuses overflows),
 * deep nesting, escaped top-level keys or model names. Then, and for every
 * invalid body, jansson parses it as before (and words the error). A chat
 * request carries the whole conversation: this costs a few instructions a
 * byte where building the tree cost tens, and allocates nothing. */
enum { BODY_OK, BODY_UNSURE };
#define BODY_MAX_DEPTH 64

struct bscan {
    const char *p, *end;
    bool non_ascii;
    const char *model;
    size_t model_len;
    bool has_model, stream;
};

static void bs_ws(struct bscan *b)
{
    while (b->p < b->end && (*b->p == ' ' || *b->p == '\n' || *b->p == '\r' || *b->p == '\t'))
        b->p++;
}

static int hex4(const char *p)
{
    int v = 0;
    for (int i = 0; i < 4; i++) {
        char c = p[i];
        v <<= 4;
        if (c >= '0' && c <= '9')
            v |= c - '0';
        else if (c >= 'a' && c <= 'f')
            v |= c - 'a' + 10;
        else if (c >= 'A' && c <= 'F')
            v |= c - 'A' + 10;
        else
            return -1;
    }
    return v;
}

/* At '"': past the closing quote; *esc when it held an escape. */
static bool bs_string(struct bscan *b, const char **out, size_t *n, bool *esc)
{
    const char *p = b->p + 1, *end = b->end, *s = p;
    *esc = false;
    for (;;) {
        while (p < end && (unsigned char)*p >= 0x20 && *p != '"' && *p != '\\') {
            if ((unsigned char)*p >= 0x80)
                b->non_ascii = true;
            p++;
        }
        if (p >= end || (unsigned char)*p < 0x20)
            return false;
        if (*p == '"')
            break;
        *esc = true; /* a backslash */
        if (++p >= end)
            return false;
        if (strchr("\"\\/bfnrt", *p) && *p) {
            p++;
            continue;
        }
        if (*p != 'u' || end - p < 5)
            return false;
        int cp = hex4(p + 1);
        p += 5;
        if (cp <= 0 || (cp >= 0xDC00 && cp <= 0xDFFF))
            return false; /* \u0000 (jansson refuses it), a lone low surrogate */
        if (cp >= 0xD800 && cp <= 0xDBFF) {
            if (end - p < 6 || p[0] != '\\' || p[1] != 'u')
                return false;
            int lo = hex4(p + 2);
            if (lo < 0xDC00 || lo > 0xDFFF)
                return false;
            p += 6;
        }
    }
    *out = s;
    *n = (size_t)(p - s);
    b->p = p + 1;
    return true;
}

static int bs_value(struct bscan *b, int depth);

/* -1 invalid, else BODY_OK / BODY_UNSURE */
static int bs_number(struct bscan *b)
{
    const char *p = b->p, *end = b->end;
    int digits = 0;
    if (p < end && *p == '-')
        p++;
    if (p < end && *p == '0') {
        p++;
        digits++;
    } else if (p < end && *p >= '1' && *p <= '9') {
        while (p < end && *p >= '0' && *p <= '9') {
            p++;
            digits++;
        }
    } else {
        return -1;
    }
    if (p < end && *p == '.') {
        p++;
        if (p >= end || *p < '0' || *p > '9')
            return -1;
        while (p < end && *p >= '0' && *p <= '9') {
            p++;
            digits++;
        }
    }
    b->p = p;
    if (p < end && (*p == 'e' || *p == 'E'))
        return BODY_UNSURE;
    return digits > 15 ? BODY_UNSURE : BODY_OK;
}

static int bs_container(struct bscan *b, int depth, bool object)
{
    if (depth > BODY_MAX_DEPTH)
        return BODY_UNSURE;
    b->p++; /* { or [ */
    bs_ws(b);
    char close = object ? '}' : ']';
    if (b->p < b->end && *b->p == close) {
        b->p++;
        return BODY_OK;
    }
    for (;;) {
        int key = 0; /* 1 model, 2 stream (top level only) */
        if (object) {
            const char *k;
            size_t kn;
            bool esc;
            if (b->p >= b->end || *b->p != '"' || !bs_string(b, &k, &kn, &esc))
                return -1;
            if (depth == 1) {
                if (esc)
                    return BODY_UNSURE;
                if (kn == 5 && memcmp(k, "model", 5) == 0)
                    key = 1;
                else if (kn == 6 && memcmp(k, "stream", 6) == 0)
                    key = 2;
            }
            bs_ws(b);
            if (b->p >= b->end || *b->p != ':')
                return -1;
            b->p++;
            bs_ws(b);
        }
        if (key == 1) {
            b->has_model = true;
            b->model = NULL;
            if (b->p < b->end && *b->p == '"') {
                bool esc;
                if (!bs_string(b, &b->model, &b->model_len, &esc))
                    return -1;
                if (esc)
                    return BODY_UNSURE;
                goto next;
            }
        } else if (key == 2) {
            b->stream = b->end - b->p >= 4 && memcmp(b->p, "true", 4) == 0;
        }
        int r = bs_value(b, depth);
        if (r != BODY_OK)
            return r;
    next:
        bs_ws(b);
        if (b->p >= b->end)
            return -1;
        if (*b->p == ',') {
            b->p++;
            bs_ws(b);
            continue;
        }
        if (*b->p != close)
            return -1;
        b->p++;
        return BODY_OK;
    }
}

static int bs_value(struct bscan *b, int depth)
{
    if (b->p >= b->end)
        return -1;
    const char *s;
    size_t n;
    bool esc;
    switch (*b->p) {
    case '{':
        return bs_container(b, depth + 1, true);
    case '[':
        return bs_container(b, depth + 1, false);
    case '"':
        return bs_string(b, &s, &n, &esc) ? BODY_OK : -1;
    case 't':
    case 'f':
    case 'n': {
        const char *lit = *b->p == 't' ? "true" : *b->p == 'f' ? "false" : "null";
        size_t l = strlen(lit);
        if ((size_t)(b->end - b->p) < l || memcmp(b->p, lit, l) != 0)
            return -1;
        b->p += l;
        return BODY_OK;
    }
    default:
        return bs_number(b);
    }
}

/* BODY_OK with b's model and stream filled in, or BODY_UNSURE: ask jansson
 * (which also words the error of an invalid body). */
static int body_scan(const char *p, size_t len, struct bscan *b)
{
    memset(b, 0, sizeof *b);
    b->p = p;
    b->end = p + len;
    bs_ws(b);
    if (b->p >= b->end || *b->p != '{')
        return BODY_UNSURE;
    if (bs_container(b, 1, true) != BODY_OK)
        return BODY_UNSURE;
    bs_ws(b);
    if (b->p != b->end || (b->non_ascii && !utf8_valid(p, len)))
        return BODY_UNSURE;
    return BODY_OK;
}

/* ---- admission ---------------------------------------------------------------------- */

static void admit_local(struct gw_req *g, struct user_state *u);
static int admit_shared(struct gw_req *g, struct user_state *u);
static void admit_shared_reply(void *arg, const redisReply *rep);

static void admit(struct gw_req *g)
{
    struct principal *p = g->p;
    if (g->app->shutting_down)
        return reply_error(g, 503, "server_error", "shutting_down", 1, false,
                           "the server is shutting down");
    if (!p || !p->valid || (p->expires_at && p->expires_at <= now_ms()))
        return reply_error(g, 401, "invalid_request_error", "invalid_api_key", -1, false,
                           "Incorrect API key provided. Create a token in ChatOpenAII's "
                           "settings and send it as Authorization: Bearer <token>.");
    memcpy(g->token_id, p->token_id, sizeof g->token_id);
    memcpy(g->user_id, p->user_id, sizeof g->user_id);

    /* Read model and stream from JSON bodies (the body itself is relayed untouched). */
    struct bscan bs;
    if (g->method == EVHTTP_REQ_POST && g->body_len &&
        (!g->content_type || strncasecmp(g->content_type, "application/json", 16) == 0) &&
        body_scan(g->body, g->body_len, &bs) == BODY_OK) {
        g->model = bs.model ? xstrndup(bs.model, bs.model_len) : NULL;
        g->stream = bs.stream;
    } else if (g->method == EVHTTP_REQ_POST && g->body_len &&
               (!g->content_type ||
                strncasecmp(g->content_type, "application/json", 16) == 0)) {
        json_error_t jerr;
        json_t *root = json_loadb(g->body, g->body_len, 0, &jerr);
        if (!json_is_object(root)) {
            json_decref(root);
            return reply_error(g, 400, "invalid_request_error", "invalid_json", -1, false,
                               "We could not parse the JSON body of your request: %s",
                               jerr.text);
        }
        const char *m = json_string_value(json_object_get(root, "model"));
        g->model = xstrdup(m);
        g->stream = json_is_true(json_object_get(root, "stream"));
        json_decref(root);
    }
    if (g->model && p->models) {
        bool ok = false;
        size_t i;
        json_t *a;
        json_array_foreach(p->models, i, a) ok |= strcmp(json_string_value(a), g->model) == 0;
        if (!ok)
            return reply_error(g, 403, "invalid_request_error", "model_not_allowed", -1, true,
                               "this token may not use the model %.200s", g->model);
    }
    if (p->models && g->method == EVHTTP_REQ_GET && strcmp(g->path, "/models") == 0) {
        g->filter_models = true;
        g->allow = json_incref(p->models);
    }

    struct user_state *u = user_state(g->gw, g->user_id);
    int64_t ms = month_start_ms(now_ms());
    if (u->month_start != ms) { /* a new month began since the totals were loaded */
        u->month_start = ms;
        u->month_tokens = u->month_cost = 0;
    }
    if (g->gw->redis && admit_shared(g, u) == 0)
        return; /* continues in admit_shared_reply */
    admit_local(g, u);
}

/* Budget and rate limits from this instance's own counters and buckets. */
static void admit_local(struct gw_req *g, struct user_state *u)
{
    if (u->budget_tokens >= 0 && u->month_tokens >= u->budget_tokens)
        return reply_error(g, 429, "insufficient_quota", "budget_exceeded", -1, true,
                           "the monthly token budget of this account (%lld tokens) is spent",
                           (long long)u->budget_tokens);
    if (u->budget_cost >= 0 && u->month_cost >= u->budget_cost)
        return reply_error(g, 429, "insufficient_quota", "budget_exceeded", -1, true,
                           "the monthly spending budget of this account ($%.2f) is spent",
                           (double)u->budget_cost / 1e6);

    int64_t now = mono_us();
    struct token_state *t = token_state(g->gw, g->token_id, g->token_rpm, g->token_tpm);
    double wait = 0;
    if (!bucket_take(&u->req, 1, now, &wait))
        return reply_error(g, 429, "requests", "rate_limit_exceeded", (long)ceil(wait), false,
                           "Rate limit reached for requests (per user: %lld per minute). "
                           "Try again in %.1fs.",
                           (long long)u->rpm, wait);
    if (!bucket_take(&t->req, 1, now, &wait)) {
        bucket_charge(&u->req, -1, now); /* give the user's back */
        return reply_error(g, 429, "requests", "rate_limit_exceeded", (long)ceil(wait), false,
                           "Rate limit reached for requests (per token: %lld per minute). "
                           "Try again in %.1fs.",
                           (long long)g->token_rpm, wait);
    }
    if (!bucket_take(&u->tok, 0, now, &wait) || !bucket_take(&t->tok, 0, now, &wait)) {
        bucket_charge(&u->req, -1, now);
        bucket_charge(&t->req, -1, now);
        return reply_error(g, 429, "tokens", "rate_limit_exceeded", (long)ceil(wait), false,
                           "Rate limit reached for tokens per minute. Try again in %.1fs.", wait);
    }
    start_upstream(g);
}

/* Shared mode: ask Redis (admit_lua); the request goes on in
 * admit_shared_reply. -1 (nothing sent) when nothing is limited or budgeted
 * for this request, or Redis cannot take the command: admit locally. */
static int admit_shared(struct gw_req *g, struct user_state *u)
{
    struct gateway *gw = g->gw;
    struct token_state *t = token_state(gw, g->token_id, g->token_rpm, g->token_tpm);
    bool has_t = t->req.per_min > 0 || t->tok.per_min > 0;
    if (u->rpm <= 0 && u->tpm <= 0 && !has_t && u->budget_tokens < 0 && u->budget_cost < 0)
        return -1;
    struct shared_keys k;
    if (!shared_keys(gw, u, g->user_id, has_t ? t : NULL, g->token_id, now_ms(), &k))
        return -1;
    char a[9][24];
    snprintf(a[0], sizeof a[0], "%lld", (long long)u->rpm);
    snprintf(a[1], sizeof a[1], "%lld", (long long)u->tpm);
    snprintf(a[2], sizeof a[2], "%.0f", has_t ? t->req.per_min : 0.0);
    snprintf(a[3], sizeof a[3], "%.0f", has_t ? t->tok.per_min : 0.0);
    snprintf(a[4], sizeof a[4], "%lld", (long long)u->budget_tokens);
    snprintf(a[5], sizeof a[5], "%lld", (long long)u->budget_cost);
    snprintf(a[6], sizeof a[6], "%lld", (long long)u->month_tokens);
    snprintf(a[7], sizeof a[7], "%lld", (long long)u->month_cost);
    snprintf(a[8], sizeof a[8], "%d", SPEND_TTL_S);
    const char *argv[] = {k.user, k.token, k.spend, a[0], a[1], a[2],
                          a[3],   a[4],    a[5],    a[6], a[7], a[8]};
    struct gw_ticket *tk = xcalloc(1, sizeof *tk);
    tk->g = g;
    if (redis_eval_sha(gw->redis, gw->admit_lua, 3, 12, argv, NULL, admit_shared_reply, tk) != 0) {
        free(tk);
        return -1;
    }
    g->ticket = tk;
    /* The principal (g->p) must outlive the wait: a reload or an
     * invalidation may drop it from the cache meanwhile. */
    if (g->p && !g->p_held) {
        g->p->refs++;
        g->p_held = true;
    }
    g->sh_rate[0] = (double)u->rpm;
    g->sh_rate[1] = (double)u->tpm;
    g->sh_rate[2] = has_t ? t->req.per_min : 0;
    g->sh_rate[3] = has_t ? t->tok.per_min : 0;
    return 0;
}

/* One warning per outage (redis.c logs the connection's own), one line
 * when shared admission works again. */
static void shared_fallback(struct gateway *gw, const redisReply *rep)
{
    if (gw->shared_down)
        return;
    gw->shared_down = true;
    log_warn("gateway limits fall back to this instance's own buckets and budgets until redis "
             "answers again",
             "detail",
             !rep                             ? "no reply"
             : rep->type == REDIS_REPLY_ERROR ? rep->str
                                              : "unexpected reply",
             NULL);
}

static bool admit_reply_parse(const redisReply *rep, long long v[8])
{
    if (!rep || rep->type != REDIS_REPLY_ARRAY || rep->elements != 8)
        return false;
    for (size_t i = 0; i < 8; i++) {
        if (rep->element[i]->type != REDIS_REPLY_INTEGER)
            return false;
        v[i] = rep->element[i]->integer;
    }
    return v[0] >= 0 && v[0] <= 5;
}

static void admit_shared_reply(void *arg, const redisReply *rep)
{
    struct gw_ticket *tk = arg;
    struct gw_req *g = tk->g;
    free(tk);
    if (!g)
        return; /* the request was ended meanwhile (shutdown) */
    g->ticket = NULL;
    struct gateway *gw = g->gw;
    if (g->app->shutting_down)
        return reply_error(g, 503, "server_error", "shutting_down", 1, false,
                           "the server is shutting down");
    struct user_state *u = user_state(gw, g->user_id);
    long long v[8];
    if (!admit_reply_parse(rep, v)) {
        shared_fallback(gw, rep);
        return admit_local(g, u);
    }
    if (gw->shared_down) {
        gw->shared_down = false;
        log_info("gateway limits are shared through redis again", NULL);
    }
    g->sh = true;
    for (int i = 0; i < 4; i++)
        g->sh_level[i] = (double)v[2 + i] / 1000.0;
    if (u->month_start == month_start_ms(now_ms())) { /* what the others spent, for an outage */
        if (v[6] > u->month_tokens)
            u->month_tokens = v[6];
        if (v[7] > u->month_cost)
            u->month_cost = v[7];
    }
    double wait = (double)v[1] / 1000.0;
    long ra = (long)((v[1] + 999) / 1000);
    if (ra < 1)
        ra = 1;
    switch (v[0]) {
    case 1:
        return reply_error(g, 429, "requests", "rate_limit_exceeded", ra, false,
                           "Rate limit reached for requests (per user: %lld per minute). "
                           "Try again in %.1fs.",
                           (long long)g->sh_rate[0], wait);
    case 2:
        return reply_error(g, 429, "requests", "rate_limit_exceeded", ra, false,
                           "Rate limit reached for requests (per token: %lld per minute). "
                           "Try again in %.1fs.",
                           (long long)g->sh_rate[2], wait);
    case 3:
        return reply_error(g, 429, "tokens", "rate_limit_exceeded", ra, false,
                           "Rate limit reached for tokens per minute. Try again in %.1fs.", wait);
    case 4:
        return reply_error(g, 429, "insufficient_quota", "budget_exceeded", -1, true,
                           "the monthly token budget of this account (%lld tokens) is spent",
                           (long long)u->budget_tokens);
    case 5:
        return reply_error(g, 429, "insufficient_quota", "budget_exceeded", -1, true,
                           "the monthly spending budget of this account ($%.2f) is spent",
                           (double)u->budget_cost / 1e6);
    default:
        break;
    }
    /* Admitted: this instance's buckets count it too, for an outage. */
    int64_t now = mono_us();
    bucket_charge(&u->req, 1, now);
    struct token_state *t = strmap_get(gw->tokens, g->token_id);
    if (t)
        bucket_charge(&t->req, 1, now);
    start_upstream(g);
}

/* ---- principal loading (worker) ----------------------------------------------------- */

struct load_job {
    struct gw_req *g;
    struct principal *p;       /* result */
    struct store_user_limits lim;
    bool has_lim;
    int64_t month_start, month_tokens, month_cost;
    int64_t token_rpm, token_tpm;
    bool touch;
};

static void load_work(void *arg, void *ctx)
{
    struct load_job *j = arg;
    struct store *st = ctx;
    struct app *app = j->g->app;
    struct principal *p = xcalloc(1, sizeof *p);
    p->refs = 1; /* the cache's */
    j->p = p;
    memcpy(p->token_hash, j->g->token_hash, sizeof p->token_hash);
    p->loaded_ms = now_ms();
    struct store_token t;
    memset(&t, 0, sizeof t);
    if (store_token_get_by_hash(st, j->g->token_hash, p->loaded_ms, &t) != APP_OK) {
        store_token_clear(&t);
        return;
    }
    p->valid = true;
    memcpy(p->token_id, t.id, sizeof p->token_id);
    memcpy(p->user_id, t.user_id, sizeof p->user_id);
    p->expires_at = t.expires_at;
    if (t.models)
        p->models = json_loads(t.models, 0, NULL);
    if (p->models && !json_is_array(p->models)) {
        json_decref(p->models);
        p->models = NULL;
    }
    j->token_rpm = t.rpm;
    j->token_tpm = t.tpm;
    if (p->loaded_ms - t.last_used_at > 60000)
        (void)store_token_touch(st, t.id, p->loaded_ms);
    store_token_clear(&t);

    memset(&j->lim, 0, sizeof j->lim);
    j->has_lim = store_user_limits_get(st, p->user_id, &j->lim) == APP_OK;
    j->month_start = month_start_ms(p->loaded_ms);
    (void)store_usage_totals(st, p->user_id, j->month_start, &j->month_tokens, &j->month_cost);

    struct store_conn sc;
    memset(&sc, 0, sizeof sc);
    if (store_conn_get_default(st, p->user_id, &sc) == APP_OK && sc.key_ct && sc.key_ct_len &&
        sc.key_version == app->key_version) {
        char *key = NULL;
        if (api_key_open(app, p->user_id, sc.id, sc.key_ct, sc.key_ct_len, &key) == 0) {
            p->own.base_url = xstrdup(sc.base_url);
            p->own.api_key = key;
            p->own.from_user = true;
            p->has_own = true;
        }
    }
    store_conn_clear(&sc);
}

/* A negative entry is keyed by whatever a caller sent as a token, so without
 * a bound anyone could grow the cache by one entry (~360 bytes) per made-up
 * token, for ever: 100,000 unknown tokens kept 36 MB. Once the cache has
 * doubled since the last sweep (and holds PRINCIPALS_SWEEP_MIN), negative
 * entries older than NEG_CACHE_MS go; they would be looked up again anyway.
 * Amortised O(1) per load; what stays is the real tokens plus a few seconds
 * of unknown ones. Freed as gateway_invalidate frees (a request waiting on
 * Redis keeps its reference). */
static bool stale_negative(const char *key, void *value, void *arg)
{
    (void)key;
    struct principal *p = value;
    if (p->valid || *(const int64_t *)arg - p->loaded_ms < NEG_CACHE_MS)
        return false;
    principal_free(p);
    return true;
}

static void principals_bound(struct gateway *gw)
{
    if (strmap_count(gw->principals) < gw->principals_sweep_at)
        return;
    int64_t now = now_ms();
    strmap_sweep(gw->principals, stale_negative, &now);
    size_t n = strmap_count(gw->principals);
    gw->principals_sweep_at = n * 2 > PRINCIPALS_SWEEP_MIN ? n * 2 : PRINCIPALS_SWEEP_MIN;
}

static void load_done(void *arg)
{
    struct load_job *j = arg;
    struct gw_req *g = j->g;
    struct gateway *gw = g->gw;
    struct principal *old = strmap_put(gw->principals, j->p->token_hash, j->p);
    principal_free(old);
    principals_bound(gw);
    g->p = j->p;
    if (j->p->valid) {
        struct user_state *u = user_state(gw, j->p->user_id);
        int64_t now = mono_us();
        int64_t rpm = j->has_lim && j->lim.rpm >= 0 ? j->lim.rpm : gw->app->cfg.gateway_rpm;
        int64_t tpm = j->has_lim && j->lim.tpm >= 0 ? j->lim.tpm : gw->app->cfg.gateway_tpm;
        u->rpm = rpm;
        u->tpm = tpm;
        bucket_set_rate(&u->req, (double)rpm, now);
        bucket_set_rate(&u->tok, (double)tpm, now);
        u->budget_tokens = j->has_lim ? j->lim.monthly_tokens : -1;
        u->budget_cost = j->has_lim ? j->lim.monthly_cost_micros : -1;
        if (u->month_start != j->month_start) {
            u->month_start = j->month_start;
            u->month_tokens = j->month_tokens;
            u->month_cost = j->month_cost;
        } else {
            /* in-memory totals may include rows still being written */
            if (j->month_tokens > u->month_tokens)
                u->month_tokens = j->month_tokens;
            if (j->month_cost > u->month_cost)
                u->month_cost = j->month_cost;
        }
        g->token_rpm = j->token_rpm;
        g->token_tpm = j->token_tpm;
        struct token_state *ts = token_state(gw, j->p->token_id, j->token_rpm, j->token_tpm);
        (void)ts;
    }
    free(j);
    if (g->client_gone) {
        if (g->req)
            evhttp_send_reply(g->req, 499, "Client Closed Request", NULL);
        g->req = NULL;
        gr_free(g);
        return;
    }
    admit(g);
}

/* ---- entry ------------------------------------------------------------------------------ */

static char *header_dup(struct evkeyvalq *h, const char *name, size_t max)
{
    const char *v = evhttp_find_header(h, name);
    return v ? xstrndup(v, strnlen(v, max)) : NULL;
}

void gateway_handle(struct app *app, struct evhttp_request *req, const char *path,
                    const char *req_id, int64_t start_us)
{
    struct gw_req *g = xcalloc(1, sizeof *g);
    g->app = app;
    g->gw = app->gw;
    g->req = req;
    memcpy(g->req_id, req_id, sizeof g->req_id);
    g->start_us = start_us;
    g->method = evhttp_request_get_command(req);
    g->path = xstrdup(path + 3); /* "/v1/x" -> "/x" */
    g->next = app->gw->active;
    if (g->next)
        g->next->prev = g;
    app->gw->active = g;
    buf_init(&g->held, LIMIT_UPSTREAM_BODY);
    buf_init(&g->copy, LIMIT_UPSTREAM_BODY);
    g->out = evbuffer_new();
    g->retry_after_s = -1;
    const struct evhttp_uri *uri = evhttp_request_get_evhttp_uri(req);
    const char *q = uri ? evhttp_uri_get_query(uri) : NULL;
    g->query = q ? xstrdup(q) : NULL;
    struct evkeyvalq *in = evhttp_request_get_input_headers(req);
    g->content_type = header_dup(in, "Content-Type", 256);
    g->accept = header_dup(in, "Accept", 256);
    g->openai_beta = header_dup(in, "OpenAI-Beta", 256);

    if (g->method != EVHTTP_REQ_GET && g->method != EVHTTP_REQ_POST &&
        g->method != EVHTTP_REQ_DELETE)
        return reply_error(g, 405, "invalid_request_error", "method_not_allowed", -1, true,
                           "method not allowed");
    if (strstr(g->path, "/../") || strstr(g->path, "/./") || strchr(g->path, '\\'))
        return reply_error(g, 400, "invalid_request_error", "invalid_path", -1, true,
                           "invalid path");
    const char *auth = evhttp_find_header(in, "Authorization");
    if (!auth || strncasecmp(auth, "Bearer ", 7) != 0 || !auth[7] || strlen(auth) > 256)
        return reply_error(g, 401, "invalid_request_error", "missing_api_key", -1, true,
                           "You didn't provide an API key. Send a ChatOpenAII token as "
                           "Authorization: Bearer <token>.");
    const char *token = auth + 7;
    while (*token == ' ')
        token++;
    crypto_sha256_hex(token, strlen(token), g->token_hash);

    struct evbuffer *body = evhttp_request_get_input_buffer(req);
    size_t blen = evbuffer_get_length(body);
    if (blen > LIMIT_GATEWAY_BODY)
        return reply_error(g, 413, "invalid_request_error", "payload_too_large", -1, true,
                           "request body is too large");
    if (blen) {
        g->body = xmalloc(blen + 1);
        evbuffer_remove(body, g->body, blen);
        g->body[blen] = '\0';
        g->body_len = blen;
    }
    g->evcon = evhttp_request_get_connection(req);
    if (g->evcon)
        evhttp_connection_set_closecb(g->evcon, on_client_close, g);

    struct principal *p = strmap_get(app->gw->principals, g->token_hash);
    int64_t age = p ? now_ms() - p->loaded_ms : 0;
    if (p && age < (p->valid ? app->cfg.gateway_cache_ms : NEG_CACHE_MS)) {
        g->p = p;
        if (p->valid) {
            struct token_state *ts = strmap_get(app->gw->tokens, p->token_id);
            g->token_rpm = ts ? (int64_t)ts->req.per_min : -1;
            g->token_tpm = ts ? (int64_t)ts->tok.per_min : -1;
        }
        return admit(g);
    }
    struct load_job *j = xcalloc(1, sizeof *j);
    j->g = g;
    pool_submit(app->pool, load_work, load_done, j);
}

/* ---- cache control and the pool ---------------------------------------------------------- */

struct inval {
    const char *token_id, *user_id;
};

static bool inval_match(const char *key, void *value, void *arg)
{
    struct principal *p = value;
    struct inval *iv = arg;
    bool hit = (!iv->token_id && !iv->user_id) ||
               (iv->token_id && strcmp(p->token_id, iv->token_id) == 0) ||
               (iv->user_id && strcmp(p->user_id, iv->user_id) == 0);
    if (hit)
        principal_free(p);
    return hit;
}

void gateway_invalidate(struct app *app, const char *token_id, const char *user_id)
{
    if (!app->gw)
        return;
    struct inval iv = {token_id, user_id};
    strmap_sweep(app->gw->principals, inval_match, &iv);
}

bool gateway_pool_available(struct app *app)
{
    return app->gw && __atomic_load_n(&app->gw->pool_enabled, __ATOMIC_RELAXED) > 0;
}

static void count_enabled(struct gateway *gw)
{
    int n = 0;
    for (size_t i = 0; i < gw->nkeys; i++)
        n += gw->keys[i].enabled;
    __atomic_store_n(&gw->pool_enabled, n, __ATOMIC_RELAXED);
}

bool gateway_pool_pick(struct app *app, struct provider_conn *pc, char key_id[STORE_ID_LEN + 1])
{
    struct gw_req tmp;
    memset(&tmp, 0, sizeof tmp);
    tmp.app = app;
    tmp.gw = app->gw;
    bool ok = choose_key(&tmp) && strcmp(tmp.key_source, "pool") == 0;
    if (ok) {
        *pc = tmp.pc;
        memset(&tmp.pc, 0, sizeof tmp.pc);
        memcpy(key_id, tmp.key_id, STORE_ID_LEN + 1);
    }
    provider_conn_clear(&tmp.pc);
    return ok;
}

struct disable_job {
    char id[STORE_ID_LEN + 1];
    char reason[128];
};

static void disable_work(void *arg, void *ctx)
{
    struct disable_job *j = arg;
    struct store_pool_key k;
    memset(&k, 0, sizeof k);
    if (store_pool_key_get(ctx, j->id, &k) == APP_OK) {
        k.enabled = false;
        free(k.disabled_reason);
        k.disabled_reason = xstrdup(j->reason);
        (void)store_pool_key_update(ctx, &k);
    }
    store_pool_key_clear(&k);
}

void gateway_pool_report(struct app *app, const char *key_id, long status, long retry_after_s,
                         int64_t tokens)
{
    struct gateway *gw = app->gw;
    for (size_t i = 0; i < gw->nkeys; i++) {
        struct pool_key *k = &gw->keys[i];
        if (strcmp(k->id, key_id) != 0)
            continue;
        int64_t now = mono_us();
        k->tokens += (uint64_t)(tokens > 0 ? tokens : 0);
        bucket_charge(&k->tok, (double)(tokens > 0 ? tokens : 0), now);
        if (status >= 400) {
            k->errors++;
            free(k->last_error);
            k->last_error = xasprintf("HTTP %ld", status);
        }
        if (status == 401 || status == 403) {
            /* the provider rejects this key: out of rotation until an admin acts */
            if (k->enabled) {
                k->enabled = false;
                free(k->disabled_reason);
                k->disabled_reason = xasprintf("the provider answered %ld (invalid key)", status);
                struct disable_job *j = xcalloc(1, sizeof *j);
                memcpy(j->id, k->id, sizeof j->id);
                snprintf(j->reason, sizeof j->reason, "%s", k->disabled_reason);
                pool_submit(app->pool, disable_work, free, j);
                log_warn("pool key disabled", "key", k->id, "status", "=401", NULL);
            }
        } else if (status == 429 || status == 503) {
            long s = retry_after_s >= 0 ? retry_after_s : COOLDOWN_DEFAULT_S;
            if (s > 3600)
                s = 3600;
            k->cool_until_us = now + (int64_t)s * 1000000 + (s == 0 ? 200000 : 0);
        }
        count_enabled(gw);
        return;
    }
}

json_t *gateway_pool_health(struct app *app)
{
    struct gateway *gw = app->gw;
    json_t *arr = json_array();
    int64_t now = mono_us();
    for (size_t i = 0; i < gw->nkeys; i++) {
        struct pool_key *k = &gw->keys[i];
        const char *state = !k->enabled ? "disabled" : k->cool_until_us > now ? "cooling" : "ok";
        json_t *o = json_pack("{s:s,s:s,s:I,s:I,s:I,s:o}", "id", k->id, "state", state,
                              "requests_since_start", (json_int_t)k->requests,
                              "errors_since_start", (json_int_t)k->errors, "tokens_since_start",
                              (json_int_t)k->tokens, "last_error",
                              k->last_error ? json_string(k->last_error) : json_null());
        if (k->cool_until_us > now)
            json_object_set_new(o, "cooling_for_ms",
                                json_integer((k->cool_until_us - now) / 1000));
        json_array_append_new(arr, o);
    }
    return arr;
}

/* ---- loading keys and prices ------------------------------------------------------------- */

struct reload_job {
    struct app *app;
    uint64_t seq;  /* gateway_reload's count when submitted */
    struct pool_key *keys;
    size_t nkeys;
    struct store_price *prices;
    size_t nprices;
    bool ok;
};

static void reload_work(void *arg, void *ctx)
{
    struct reload_job *j = arg;
    struct store_pool_key *list = NULL;
    size_t n = 0;
    if (store_pool_key_list(ctx, &list, &n) == APP_OK) {
        j->keys = xcalloc(n ? n : 1, sizeof *j->keys);
        for (size_t i = 0; i < n; i++) {
            struct store_pool_key *s = &list[i];
            char *aad = xasprintf("chatopenaii/pool-key|%s", s->id);
            char *key = NULL;
            size_t kl = 0;
            if (s->key_version != j->app->key_version ||
                crypto_box_open(j->app->box_key, aad, strlen(aad), s->key_ct, s->key_ct_len,
                                &key, &kl) != 0) {
                log_error("pool key does not decrypt", "key", s->id, NULL);
                free(aad);
                continue;
            }
            free(aad);
            struct pool_key *k = &j->keys[j->nkeys++];
            memcpy(k->id, s->id, sizeof k->id);
            k->name = xstrdup(s->name);
            k->base_url = xstrdup(s->base_url);
            k->key = key;
            memcpy(k->last4, s->key_last4, sizeof k->last4);
            k->weight = s->weight > 0 ? s->weight : 1;
            k->enabled = s->enabled;
            k->disabled_reason = xstrdup(s->disabled_reason);
            int64_t now = mono_us();
            bucket_init(&k->req, (double)s->rpm, now);
            bucket_init(&k->tok, (double)s->tpm, now);
        }
        store_pool_key_list_free(list, n);
        j->ok = true;
    }
    (void)store_price_list(ctx, &j->prices, &j->nprices);
}

static void reload_done(void *arg)
{
    struct reload_job *j = arg;
    struct gateway *gw = j->app->gw;
    /* Reloads run on several workers and may finish out of order: a later
     * one (submitted after a newer change) must not be undone by an older. */
    if (j->seq < gw->reload_applied) {
        for (size_t i = 0; i < j->nkeys; i++)
            pool_key_clear(&j->keys[i]);
        free(j->keys);
        store_price_list_free(j->prices, j->nprices);
        free(j);
        return;
    }
    gw->reload_applied = j->seq;
    if (j->ok) {
        /* keep live health (cool-downs, counters) of keys that stay */
        for (size_t i = 0; i < j->nkeys; i++)
            for (size_t k = 0; k < gw->nkeys; k++)
                if (strcmp(j->keys[i].id, gw->keys[k].id) == 0) {
                    j->keys[i].cool_until_us = gw->keys[k].cool_until_us;
                    j->keys[i].requests = gw->keys[k].requests;
                    j->keys[i].errors = gw->keys[k].errors;
                    j->keys[i].tokens = gw->keys[k].tokens;
                    j->keys[i].last_error = xstrdup(gw->keys[k].last_error);
                    j->keys[i].req = gw->keys[k].req;
                    j->keys[i].tok = gw->keys[k].tok;
                }
        for (size_t k = 0; k < gw->nkeys; k++)
            pool_key_clear(&gw->keys[k]);
        free(gw->keys);
        gw->keys = j->keys;
        gw->nkeys = j->nkeys;
        count_enabled(gw);
    } else {
        free(j->keys);
    }
    store_price_list_free(gw->prices, gw->nprices);
    gw->prices = j->prices;
    gw->nprices = j->nprices;
    free(j);
}

void gateway_reload(struct app *app)
{
    struct reload_job *j = xcalloc(1, sizeof *j);
    j->app = app;
    j->seq = ++app->gw->reload_seq;
    pool_submit(app->pool, reload_work, reload_done, j);
}

void gateway_shutdown(struct app *app)
{
    struct gateway *gw = app->gw;
    struct gw_req *g = gw->active, *next;
    for (; g; g = next) {
        next = g->next;
        if (g->ticket) { /* waiting for Redis: answered now, the reply is ignored */
            g->ticket->g = NULL;
            g->ticket = NULL;
            reply_error(g, 503, "server_error", "shutting_down", 1, false,
                        "the server is shutting down");
            continue;
        }
        if (!g->easy)
            continue; /* waiting for a worker: it finishes during the drain */
        curlev_remove(app->curl, g->easy);
        curl_easy_cleanup(g->easy);
        g->easy = NULL;
        if (g->req) {
            detach_close(g);
            if (g->started && !g->holding) {
                flush_out(g);
                security_reply_end(g->req);
            }
            else
                evhttp_send_reply(g->req, 503, "Service Unavailable", NULL);
            g->req = NULL;
        }
        record_and_free(g, 503);
    }
}

struct gateway *gateway_new(struct app *app)
{
    struct gateway *gw = xcalloc(1, sizeof *gw);
    gw->app = app;
    gw->principals = strmap_new();
    gw->principals_sweep_at = PRINCIPALS_SWEEP_MIN;
    gw->users = strmap_new();
    gw->tokens = strmap_new();
    gw->rng = (unsigned)now_ms();
    pthread_mutex_init(&gw->usage_mu, NULL);
    gw->usage_timer = evtimer_new(app->base, on_usage_timer, gw);
    gw->flush_ev = event_new(app->base, -1, 0, on_flush, gw);
    if (app->redis && crypto_hkdf(app->box_key, sizeof app->box_key, "coai/redis-keys/v1",
                                  gw->key_secret) == 0) {
        /* the secret main.c gives ratelimit.c: one naming scheme for coai:* keys */
        gw->redis = app->redis;
        gw->admit_lua = redis_script_new(app->redis, admit_lua);
        gw->charge_lua = redis_script_new(app->redis, charge_lua);
    } else if (app->redis) {
        log_warn("gateway limits stay per instance (no key for redis names)", NULL);
    }
    app->gw = gw;
    gateway_reload(app);
    return gw;
}

void gateway_free(struct gateway *gw)
{
    if (!gw)
        return;
    for (struct gw_req *g = gw->active, *next; g; g = next) {
        next = g->next;
        if (g->ticket) { /* still waiting for Redis (a failed start): its reply is ignored */
            detach_close(g);
            gr_free(g);
        }
    }
    for (size_t i = 0; i < gw->neasy_free; i++) /* before curlev_free: they hold its share */
        curl_easy_cleanup(gw->easy_free[i]);
    strmap_free(gw->principals, principal_free);
    strmap_free(gw->users, free);
    strmap_free(gw->tokens, free);
    for (size_t k = 0; k < gw->nkeys; k++)
        pool_key_clear(&gw->keys[k]);
    free(gw->keys);
    store_price_list_free(gw->prices, gw->nprices);
    for (size_t i = 0; i < gw->usage_n; i++) /* only if the pool never ran (failed start) */
        free(gw->usage_q[i].model);
    free(gw->usage_q);
    pthread_mutex_destroy(&gw->usage_mu);
    if (gw->usage_timer)
        event_free(gw->usage_timer);
    if (gw->flush_ev)
        event_free(gw->flush_ev);
    secure_wipe(gw->key_secret, sizeof gw->key_secret);
    free(gw);
}
