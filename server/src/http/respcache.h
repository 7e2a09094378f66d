/* respcache.h - answers of a few read-only routes kept on the loop, so a
 * repeated read (the chat list, fetched by every tab on every load) is
 * answered without a worker, a session query or a store query.
 *
 * Correctness rests on one number: the store's commit count
 * (store_sqlite_commits, bumped after every committed write of this
 * process's connections). A worker reads it BEFORE it resolves the session
 * and reads the data; the answer is kept tagged with that count and served
 * only while the count has not moved. Any write at all (a new message, a
 * renamed chat, a sign-out, a revoked session, a deleted user) therefore
 * makes every kept answer stale, so a hit can never show anything older
 * than a worker would have read. Only for the SQLite store, whose file
 * belongs to one server process; with PostgreSQL (several instances) there
 * is no cache.
 *
 * An entry is keyed by the SHA-256 of the session token plus the request
 * URI, and also remembers the session's expiry and last-seen time: it is
 * not served once the session expired or is due for its sliding refresh
 * (the worker path refreshes it). Bounded by bytes; loop thread only. */
#ifndef COAI_RESPCACHE_H
#define COAI_RESPCACHE_H

#include <stddef.h>
#include <stdint.h>

#include "../store/store.h"

struct respcache;

struct respcache_hit {
    const char *text; /* borrowed until the next call */
    size_t len;
    char user_id[STORE_ID_LEN + 1];
};

/* max_bytes 0: no cache (NULL). */
struct respcache *respcache_new(size_t max_bytes);
void respcache_free(struct respcache *rc);
/* The key of (session token, request URI): a new string. */
char *respcache_key(const char *token, const char *uri);
/* true and *hit filled when key has an answer read at commit count
 * `version` whose session is valid at now_ms and not due for its refresh
 * (refresh_ms after last_seen). A stale entry found is dropped. */
bool respcache_get(struct respcache *rc, const char *key, uint64_t version, int64_t now_ms,
                   int64_t refresh_ms, struct respcache_hit *hit);
/* Keep text (copied) for key, read at commit count version. */
void respcache_put(struct respcache *rc, const char *key, const char *text, size_t len,
                   uint64_t version, const char *user_id, int64_t expires_at,
                   int64_t last_seen_at);
size_t respcache_bytes(const struct respcache *rc);
size_t respcache_count(const struct respcache *rc);
uint64_t respcache_hits(const struct respcache *rc);

#endif
