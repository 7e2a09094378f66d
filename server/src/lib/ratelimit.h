/* ratelimit.h - keyed per-minute rate limits and failure counters.
 *
 * The plain functions (ratelimit_take, _locked, _fail, _clear) are the
 * in-process store, safe from the loop and from workers (one mutex), never
 * blocking. With Redis (ratelimit_use_redis) the limits can be shared by all
 * instances: ratelimit_take_async on the loop (answer in a callback), the
 * ratelimit_shared_* functions on worker threads (a synchronous connection
 * per worker, each call bounded by 200 ms). Whenever Redis does not answer,
 * every shared call falls back to the in-process store (fail open) and one
 * warning is logged per outage. Without Redis the shared functions are the
 * plain ones. Redis keys are coai:rl:<kind>:<hash> and coai:lock:<kind>:<hash>,
 * the hash keyed by a server secret, so e-mail addresses and IPs never appear
 * in Redis. */
#ifndef COAI_RATELIMIT_H
#define COAI_RATELIMIT_H

#include "common.h"

struct ratelimit;

struct ratelimit *ratelimit_new(void);
void ratelimit_free(struct ratelimit *rl);
/* Take one request for key at per_min (<= 0: unlimited). false = refused,
 * *retry_after_s set (>= 1). */
bool ratelimit_take(struct ratelimit *rl, const char *key, int per_min, int *retry_after_s);
/* Lock-out: true while key has reached max_failures failures within the
 * last window_s seconds (*retry_after_s = seconds until it lifts). */
bool ratelimit_locked(struct ratelimit *rl, const char *key, int max_failures, int window_s,
                      int *retry_after_s);
void ratelimit_fail(struct ratelimit *rl, const char *key, int window_s);
void ratelimit_clear(struct ratelimit *rl, const char *key);
struct redis;

/* Share the limits through Redis. r: the loop's async client (borrowed, must
 * outlive the limiter's async use); url: the same redis:// URL, for the
 * workers' own connections; secret: 32 bytes keying the hash of key names
 * (instances that share limits need the same secret). 0 ok, -1 bad url.
 * Call once, before workers use rl. */
int ratelimit_use_redis(struct ratelimit *rl, struct redis *r, const char *url,
                        const unsigned char secret[32]);
bool ratelimit_is_shared(const struct ratelimit *rl);

/* Loop thread only. With Redis and per_min > 0: takes one request for key
 * from the shared bucket and calls done(arg, ok, retry_after_s) later, on
 * the loop, exactly once (with the local bucket's answer if Redis has none
 * within its timeout); returns 0. Otherwise returns -1 and does nothing: use
 * ratelimit_take (no added latency). */
typedef void (*ratelimit_done_fn)(void *arg, bool ok, int retry_after_s);
int ratelimit_take_async(struct ratelimit *rl, const char *key, int per_min,
                         ratelimit_done_fn done, void *arg);

/* Worker threads only (they may block up to about 200 ms per call on a
 * Redis that does not answer): the shared versions of ratelimit_take,
 * _locked, _fail and _clear, same arguments and results. */
bool ratelimit_shared_take(struct ratelimit *rl, const char *key, int per_min,
                           int *retry_after_s);
bool ratelimit_shared_locked(struct ratelimit *rl, const char *key, int max_failures,
                             int window_s, int *retry_after_s);
void ratelimit_shared_fail(struct ratelimit *rl, const char *key, int window_s);
void ratelimit_shared_clear(struct ratelimit *rl, const char *key);

/* Drop idle entries (housekeeping). */
void ratelimit_sweep(struct ratelimit *rl);

#endif
