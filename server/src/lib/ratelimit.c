/* ratelimit.c - see ratelimit.h. Buckets refill continuously; failure
 * counters remember the first failure of their window. */
#include "ratelimit.h"

#include <math.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "strmap.h"

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
