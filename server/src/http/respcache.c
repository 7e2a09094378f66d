/* respcache.c - see respcache.h. */
#include "respcache.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../lib/crypto.h"
#include "../lib/strmap.h"

/* One answer's bookkeeping besides its text: a generous estimate of what an
 * entry costs (map entry, key, struct) so the byte bound is real. */
#define ENTRY_OVERHEAD 256

struct entry {
    uint64_t version;
    int64_t expires_at, last_seen_at;
    char user_id[STORE_ID_LEN + 1];
    size_t len;
    char text[]; /* len bytes + NUL */
};

struct respcache {
    struct strmap *map;
    size_t bytes, max_bytes;
    uint64_t hits;
};

struct respcache *respcache_new(size_t max_bytes)
{
    if (max_bytes == 0)
        return NULL;
    struct respcache *rc = xcalloc(1, sizeof *rc);
    rc->map = strmap_new();
    rc->max_bytes = max_bytes;
    return rc;
}

void respcache_free(struct respcache *rc)
{
    if (!rc)
        return;
    strmap_free(rc->map, free);
    free(rc);
}

char *respcache_key(const char *token, const char *uri)
{
    char hash[65];
    crypto_sha256_hex(token, strlen(token), hash);
    return xasprintf("%s %s", hash, uri);
}

static size_t entry_cost(const char *key, const struct entry *e)
{
    return strlen(key) + e->len + ENTRY_OVERHEAD;
}

static void drop(struct respcache *rc, const char *key)
{
    struct entry *e = strmap_del(rc->map, key);
    if (e) {
        rc->bytes -= entry_cost(key, e);
        free(e);
    }
}

bool respcache_get(struct respcache *rc, const char *key, uint64_t version, int64_t now_ms,
                   int64_t refresh_ms, struct respcache_hit *hit)
{
    if (!rc)
        return false;
    struct entry *e = strmap_get(rc->map, key);
    if (!e)
        return false;
    if (e->version != version || now_ms >= e->expires_at) {
        drop(rc, key);
        return false;
    }
    if (now_ms - e->last_seen_at > refresh_ms)
        return false; /* the worker path refreshes the session, then replaces it */
    rc->hits++;
    hit->text = e->text;
    hit->len = e->len;
    memcpy(hit->user_id, e->user_id, sizeof hit->user_id);
    return true;
}

struct sweep_arg {
    struct respcache *rc;
    uint64_t version;
    bool all;
};

static bool sweep_one(const char *key, void *value, void *argp)
{
    struct sweep_arg *a = argp;
    struct entry *e = value;
    if (!a->all && e->version == a->version)
        return false;
    a->rc->bytes -= entry_cost(key, e);
    free(e);
    return true;
}

void respcache_put(struct respcache *rc, const char *key, const char *text, size_t len,
                   uint64_t version, const char *user_id, int64_t expires_at,
                   int64_t last_seen_at)
{
    if (!rc)
        return;
    drop(rc, key);
    size_t cost = strlen(key) + len + ENTRY_OVERHEAD;
    if (cost > rc->max_bytes / 4)
        return; /* one answer never takes over the cache */
    if (rc->bytes + cost > rc->max_bytes) {
        /* stale answers first (any other commit count), then everything */
        struct sweep_arg a = {rc, version, false};
        strmap_sweep(rc->map, sweep_one, &a);
        if (rc->bytes + cost > rc->max_bytes) {
            a.all = true;
            strmap_sweep(rc->map, sweep_one, &a);
        }
    }
    struct entry *e = xmalloc(sizeof *e + len + 1);
    e->version = version;
    e->expires_at = expires_at;
    e->last_seen_at = last_seen_at;
    snprintf(e->user_id, sizeof e->user_id, "%s", user_id);
    e->len = len;
    memcpy(e->text, text, len);
    e->text[len] = '\0';
    strmap_put(rc->map, key, e);
    rc->bytes += cost;
}

size_t respcache_bytes(const struct respcache *rc)
{
    return rc ? rc->bytes : 0;
}

uint64_t respcache_hits(const struct respcache *rc)
{
    return rc ? rc->hits : 0;
}

size_t respcache_count(const struct respcache *rc)
{
    return rc ? strmap_count(rc->map) : 0;
}
