/* ratelimit.c - see ratelimit.h. Buckets refill continuously; failure
 * counters remember the first failure of their window. The shared store
 * keeps the same model in Redis: a bucket is a hash {l: level, t: ms} updated
 * by one Lua script (atomic, Redis server time, so instance clocks do not
 * matter); a failure counter is a string counted with INCR whose expiry is
 * set by the first failure (SET NX EX). */
#include "ratelimit.h"

#include <math.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <hiredis/hiredis.h>

#include "crypto.h"
#include "log.h"
#include "redis.h"
#include "strmap.h"

#define SYNC_TIMEOUT_MS 200
#define SYNC_BACKOFF_US 1000000 /* after a failure, workers skip Redis this long */

/* KEYS[1] bucket, ARGV[1] per minute. Returns {ok 0|1, retry-after s}. */
static const char bucket_lua[] =
    "if redis.replicate_commands then redis.replicate_commands() end\n"
    "local rate = tonumber(ARGV[1])\n"
    "local t = redis.call('TIME')\n"
    "local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)\n"
    "local v = redis.call('HMGET', KEYS[1], 'l', 't')\n"
    "local level, last = tonumber(v[1]), tonumber(v[2])\n"
    "if level == nil or last == nil then level = rate\n"
    "elseif now > last then level = level + (now - last) * rate / 60000 end\n"
    "if level > rate then level = rate end\n"
    "local ok, retry = 0, 0\n"
    "if level >= 1 then level = level - 1; ok = 1\n"
    "else retry = math.ceil((1 - level) * 60 / rate); if retry < 1 then retry = 1 end end\n"
    "redis.call('HSET', KEYS[1], 'l', tostring(level), 't', tostring(now))\n"
    "redis.call('PEXPIRE', KEYS[1], 61000)\n"
    "return {ok, retry}\n";

struct entry {
    double level;      /* bucket level */
    int per_min;
    int64_t last_us;
    int failures;      /* lock-out counter */
    int64_t fail_start_us;
    int64_t touched_us;
};

struct ratelimit {
    pthread_mutex_t mu;
    struct strmap *map;
    /* Shared mode (set once by ratelimit_use_redis, read-only afterwards). */
    bool shared;
    struct redis *redis;           /* the loop's async client (borrowed) */
    struct redis_script *bucket;   /* bucket_lua registered with it */
    char bucket_sha[41];
    unsigned char secret[32];      /* keys the hash of key names */
    char *host, *user, *password;  /* for the workers' connections */
    int port, db;
    pthread_key_t tls;             /* per worker thread: redisContext * */
    bool script_warned;            /* loop thread only */
    atomic_bool down;              /* workers: an outage was logged */
    atomic_llong skip_until_us;    /* workers: do not try Redis before */
};

struct ratelimit *ratelimit_new(void)
{
    struct ratelimit *rl = xcalloc(1, sizeof *rl);
    pthread_mutex_init(&rl->mu, NULL);
    rl->map = strmap_new();
    return rl;
}

void ratelimit_free(struct ratelimit *rl)
{
    if (!rl)
        return;
    if (rl->shared) {
        /* Workers have exited (their contexts freed by the key destructor). */
        pthread_key_delete(rl->tls);
        free(rl->host);
        free(rl->user);
        if (rl->password)
            secure_wipe(rl->password, strlen(rl->password));
        free(rl->password);
        secure_wipe(rl->secret, sizeof rl->secret);
    }
    strmap_free(rl->map, free);
    pthread_mutex_destroy(&rl->mu);
    free(rl);
}

static struct entry *get(struct ratelimit *rl, const char *key, int64_t now)
{
    struct entry *e = strmap_get(rl->map, key);
    if (!e) {
        e = xcalloc(1, sizeof *e);
        e->last_us = now;
        e->level = -1; /* full on first use */
        strmap_put(rl->map, key, e);
    }
    e->touched_us = now;
    return e;
}

bool ratelimit_take(struct ratelimit *rl, const char *key, int per_min, int *retry_after_s)
{
    if (per_min <= 0)
        return true;
    int64_t now = mono_us();
    pthread_mutex_lock(&rl->mu);
    struct entry *e = get(rl, key, now);
    if (e->level < 0 || e->per_min != per_min) {
        if (e->level < 0 || e->level > per_min)
            e->level = per_min;
        e->per_min = per_min;
    } else {
        e->level += (double)(now - e->last_us) * per_min / 60e6;
        if (e->level > per_min)
            e->level = per_min;
    }
    e->last_us = now;
    bool ok = e->level >= 1;
    if (ok)
        e->level -= 1;
    else if (retry_after_s)
        *retry_after_s = (int)ceil((1 - e->level) * 60.0 / per_min);
    pthread_mutex_unlock(&rl->mu);
    if (!ok && retry_after_s && *retry_after_s < 1)
        *retry_after_s = 1;
    return ok;
}

bool ratelimit_locked(struct ratelimit *rl, const char *key, int max_failures, int window_s,
                      int *retry_after_s)
{
    if (max_failures <= 0)
        return false;
    int64_t now = mono_us();
    pthread_mutex_lock(&rl->mu);
    struct entry *e = strmap_get(rl->map, key);
    bool locked = false;
    if (e && e->failures > 0) {
        int64_t end = e->fail_start_us + (int64_t)window_s * 1000000;
        if (now >= end) {
            e->failures = 0;
        } else if (e->failures >= max_failures) {
            locked = true;
            if (retry_after_s)
                *retry_after_s = (int)((end - now) / 1000000) + 1;
        }
    }
    pthread_mutex_unlock(&rl->mu);
    return locked;
}

void ratelimit_fail(struct ratelimit *rl, const char *key, int window_s)
{
    int64_t now = mono_us();
    pthread_mutex_lock(&rl->mu);
    struct entry *e = get(rl, key, now);
    if (e->failures == 0 || now >= e->fail_start_us + (int64_t)window_s * 1000000) {
        e->failures = 0;
        e->fail_start_us = now;
    }
    e->failures++;
    pthread_mutex_unlock(&rl->mu);
}

void ratelimit_clear(struct ratelimit *rl, const char *key)
{
    pthread_mutex_lock(&rl->mu);
    free(strmap_del(rl->map, key));
    pthread_mutex_unlock(&rl->mu);
}

static bool idle(const char *key, void *value, void *arg)
{
    struct entry *e = value;
    int64_t now = *(int64_t *)arg;
    bool old = now - e->touched_us > 3600LL * 1000000;
    if (old)
        free(e);
    return old;
}

void ratelimit_sweep(struct ratelimit *rl)
{
    int64_t now = mono_us();
    pthread_mutex_lock(&rl->mu);
    strmap_sweep(rl->map, idle, &now);
    pthread_mutex_unlock(&rl->mu);
}

/* ---- shared store (Redis) ----------------------------------------------------- */

static void tls_free(void *p)
{
    redisFree(p);
}

int ratelimit_use_redis(struct ratelimit *rl, struct redis *r, const char *url,
                        const unsigned char secret[32])
{
    if (!rl || !r || rl->shared)
        return -1;
    char *host, *user, *password;
    int port, db;
    if (redis_url_parse(url, &host, &port, &db, &user, &password) != 0)
        return -1;
    if (pthread_key_create(&rl->tls, tls_free) != 0) {
        free(host);
        free(user);
        free(password);
        return -1;
    }
    rl->host = host;
    rl->user = user;
    rl->password = password;
    rl->port = port;
    rl->db = db;
    rl->redis = r;
    rl->bucket = redis_script_new(r, bucket_lua);
    redis_script_sha(bucket_lua, rl->bucket_sha);
    memcpy(rl->secret, secret, sizeof rl->secret);
    atomic_init(&rl->down, false);
    atomic_init(&rl->skip_until_us, 0);
    rl->shared = true;
    return 0;
}

bool ratelimit_is_shared(const struct ratelimit *rl)
{
    return rl && rl->shared;
}

/* "coai:<ns>:<kind>:<hash>": kind is the key up to its first ':' (api, gen,
 * auth-ip, lock-acct, lock-ip), the hash 128 bits of HKDF(secret, key). */
static void redis_key(const struct ratelimit *rl, const char *ns, const char *key, char *out,
                      size_t outlen)
{
    unsigned char h[32];
    char hex[33];
    if (crypto_hkdf(rl->secret, sizeof rl->secret, key, h) != 0 ||
        crypto_hex_encode(h, 16, hex, sizeof hex) != 0)
        snprintf(hex, sizeof hex, "x");
    const char *colon = strchr(key, ':');
    int kl = colon ? (int)(colon - key) : 0;
    if (kl > 32)
        kl = 32;
    snprintf(out, outlen, "coai:%s:%.*s%s%s", ns, kl, key, kl ? ":" : "", hex);
}

/* Parse the bucket script's {ok, retry} reply. */
static bool bucket_reply(const redisReply *rep, bool *ok, int *retry_after_s)
{
    if (!rep || rep->type != REDIS_REPLY_ARRAY || rep->elements != 2 ||
        rep->element[0]->type != REDIS_REPLY_INTEGER ||
        rep->element[1]->type != REDIS_REPLY_INTEGER)
        return false;
    *ok = rep->element[0]->integer == 1;
    long long ra = rep->element[1]->integer;
    *retry_after_s = ra < 1 ? 1 : ra > 3600 ? 3600 : (int)ra;
    return true;
}

/* -- loop side -- */

struct async_take {
    struct ratelimit *rl;
    ratelimit_done_fn done;
    void *arg;
    int per_min;
    char key[];
};

static void async_take_reply(void *arg, const redisReply *rep)
{
    struct async_take *t = arg;
    bool ok = true;
    int ra = 0;
    if (!bucket_reply(rep, &ok, &ra)) {
        /* No answer (redis.c logs the outage) or an unexpected one: local. */
        if (rep && !t->rl->script_warned) {
            t->rl->script_warned = true;
            log_warn("redis rate-limit script failed; using this instance's limits", "detail",
                     rep->type == REDIS_REPLY_ERROR ? rep->str : "unexpected reply", NULL);
        }
        ok = ratelimit_take(t->rl, t->key, t->per_min, &ra);
    }
    t->done(t->arg, ok, ok ? 0 : ra);
    free(t);
}

int ratelimit_take_async(struct ratelimit *rl, const char *key, int per_min,
                         ratelimit_done_fn done, void *arg)
{
    if (!rl || !rl->shared || per_min <= 0)
        return -1;
    size_t kl = strlen(key);
    struct async_take *t = xcalloc(1, sizeof *t + kl + 1);
    t->rl = rl;
    t->done = done;
    t->arg = arg;
    t->per_min = per_min;
    memcpy(t->key, key, kl + 1);
    char rkey[128], rate[16];
    redis_key(rl, "rl", key, rkey, sizeof rkey);
    snprintf(rate, sizeof rate, "%d", per_min);
    const char *argv[] = {rkey, rate};
    if (redis_eval_sha(rl->redis, rl->bucket, 1, 2, argv, NULL, async_take_reply, t) != 0) {
        free(t);
        return -1;
    }
    return 0;
}

/* -- worker side: one synchronous context per thread -- */

static void sync_down(struct ratelimit *rl, const char *why)
{
    atomic_store(&rl->skip_until_us, (long long)(mono_us() + SYNC_BACKOFF_US));
    if (!atomic_exchange(&rl->down, true))
        log_warn("redis unreachable from workers; lock-outs and per-user limits fall back to "
                 "this instance until it is back",
                 "detail", why, NULL);
}

static void sync_up(struct ratelimit *rl)
{
    if (atomic_load(&rl->down) && atomic_exchange(&rl->down, false))
        log_info("redis reachable again from workers", NULL);
}

static void sync_drop(struct ratelimit *rl)
{
    redisContext *c = pthread_getspecific(rl->tls);
    if (c) {
        pthread_setspecific(rl->tls, NULL);
        redisFree(c);
    }
}

static bool sync_ok_reply(redisReply *rep)
{
    bool ok = rep && rep->type != REDIS_REPLY_ERROR;
    freeReplyObject(rep);
    return ok;
}

/* This thread's context, connecting if needed; NULL while Redis is down. */
static redisContext *sync_conn(struct ratelimit *rl)
{
    redisContext *c = pthread_getspecific(rl->tls);
    if (c)
        return c;
    if (mono_us() < atomic_load(&rl->skip_until_us))
        return NULL;
    struct timeval tv = {0, SYNC_TIMEOUT_MS * 1000};
    c = redisConnectWithTimeout(rl->host, rl->port, tv);
    if (!c || c->err) {
        sync_down(rl, c ? c->errstr : "out of memory");
        redisFree(c);
        return NULL;
    }
    (void)redisSetTimeout(c, tv);
    (void)redisEnableKeepAlive(c);
    bool ok = true;
    if (rl->password) {
        const char *argv[] = {"AUTH", rl->user ? rl->user : rl->password, rl->password};
        ok = sync_ok_reply(redisCommandArgv(c, rl->user ? 3 : 2, argv, NULL));
    }
    if (ok && rl->db) {
        char db[16];
        snprintf(db, sizeof db, "%d", rl->db);
        const char *argv[] = {"SELECT", db};
        ok = sync_ok_reply(redisCommandArgv(c, 2, argv, NULL));
    }
    if (!ok) {
        sync_down(rl, c->err ? c->errstr : "handshake refused (AUTH/SELECT)");
        redisFree(c);
        return NULL;
    }
    pthread_setspecific(rl->tls, c);
    return c;
}

/* Run n pipelined commands; replies into rep[0..n) (the caller frees them).
 * A stale connection (Redis restarted) is remade once. 0 ok, -1 down. */
static int sync_run(struct ratelimit *rl, int n, int argc[], const char **argv[],
                    redisReply *rep[])
{
    for (int attempt = 0; attempt < 2; attempt++) {
        redisContext *c = sync_conn(rl);
        if (!c)
            return -1;
        bool fresh = attempt > 0;
        int i = 0, got = 0;
        for (i = 0; i < n; i++)
            if (redisAppendCommandArgv(c, argc[i], argv[i], NULL) != REDIS_OK)
                break;
        if (i == n) {
            for (got = 0; got < n; got++) {
                void *r = NULL;
                if (redisGetReply(c, &r) != REDIS_OK)
                    break;
                rep[got] = r;
            }
        }
        if (i == n && got == n) {
            sync_up(rl);
            return 0;
        }
        for (int k = 0; k < got; k++)
            freeReplyObject(rep[k]);
        char why[128];
        snprintf(why, sizeof why, "%s", c->errstr[0] ? c->errstr : "command failed");
        sync_drop(rl);
        if (fresh) {
            sync_down(rl, why);
            return -1;
        }
        /* A timeout is not worth a second wait; a dead socket is. */
        if (strstr(why, "timed out") || strstr(why, "Resource temporarily")) {
            sync_down(rl, why);
            return -1;
        }
    }
    return -1;
}

bool ratelimit_shared_take(struct ratelimit *rl, const char *key, int per_min,
                           int *retry_after_s)
{
    if (!rl->shared || per_min <= 0)
        return ratelimit_take(rl, key, per_min, retry_after_s);
    char rkey[128], rate[16];
    redis_key(rl, "rl", key, rkey, sizeof rkey);
    snprintf(rate, sizeof rate, "%d", per_min);
    const char *a[] = {"EVALSHA", rl->bucket_sha, "1", rkey, rate};
    int argc[] = {5};
    const char **argv[] = {a};
    redisReply *rep[1] = {NULL};
    bool ok = true;
    int ra = 0;
    if (sync_run(rl, 1, argc, argv, rep) == 0) {
        if (rep[0]->type == REDIS_REPLY_ERROR && strncmp(rep[0]->str, "NOSCRIPT", 8) == 0) {
            freeReplyObject(rep[0]);
            rep[0] = NULL;
            a[0] = "EVAL";
            a[1] = bucket_lua;
            if (sync_run(rl, 1, argc, argv, rep) != 0)
                rep[0] = NULL;
        }
        bool parsed = bucket_reply(rep[0], &ok, &ra);
        freeReplyObject(rep[0]);
        if (parsed) {
            if (!ok && retry_after_s)
                *retry_after_s = ra;
            return ok;
        }
    }
    return ratelimit_take(rl, key, per_min, retry_after_s);
}

bool ratelimit_shared_locked(struct ratelimit *rl, const char *key, int max_failures,
                             int window_s, int *retry_after_s)
{
    if (!rl->shared || max_failures <= 0)
        return ratelimit_locked(rl, key, max_failures, window_s, retry_after_s);
    char rkey[128];
    redis_key(rl, "lock", key, rkey, sizeof rkey);
    const char *get[] = {"GET", rkey}, *ttl[] = {"PTTL", rkey};
    int argc[] = {2, 2};
    const char **argv[] = {get, ttl};
    redisReply *rep[2] = {NULL, NULL};
    if (sync_run(rl, 2, argc, argv, rep) != 0)
        return ratelimit_locked(rl, key, max_failures, window_s, retry_after_s);
    long long n = 0, ms = -1;
    if (rep[0]->type == REDIS_REPLY_STRING)
        n = strtoll(rep[0]->str, NULL, 10);
    if (rep[1]->type == REDIS_REPLY_INTEGER)
        ms = rep[1]->integer;
    freeReplyObject(rep[0]);
    freeReplyObject(rep[1]);
    if (n < max_failures || ms == -2)
        return false;
    if (ms < 0) /* no expiry (should not happen): the whole window */
        ms = (long long)window_s * 1000;
    if (retry_after_s)
        *retry_after_s = (int)(ms / 1000) + 1;
    return true;
}

void ratelimit_shared_fail(struct ratelimit *rl, const char *key, int window_s)
{
    if (!rl->shared)
        return ratelimit_fail(rl, key, window_s);
    char rkey[128], win[16];
    redis_key(rl, "lock", key, rkey, sizeof rkey);
    snprintf(win, sizeof win, "%d", window_s > 0 ? window_s : 1);
    const char *set[] = {"SET", rkey, "0", "EX", win, "NX"}, *incr[] = {"INCR", rkey};
    int argc[] = {6, 2};
    const char **argv[] = {set, incr};
    redisReply *rep[2] = {NULL, NULL};
    if (sync_run(rl, 2, argc, argv, rep) != 0)
        return ratelimit_fail(rl, key, window_s);
    freeReplyObject(rep[0]);
    freeReplyObject(rep[1]);
}

void ratelimit_shared_clear(struct ratelimit *rl, const char *key)
{
    ratelimit_clear(rl, key); /* a failure counted locally during an outage, too */
    if (!rl->shared)
        return;
    char rkey[128];
    redis_key(rl, "lock", key, rkey, sizeof rkey);
    const char *del[] = {"DEL", rkey};
    int argc[] = {2};
    const char **argv[] = {del};
    redisReply *rep[1] = {NULL};
    if (sync_run(rl, 1, argc, argv, rep) == 0)
        freeReplyObject(rep[0]);
}
