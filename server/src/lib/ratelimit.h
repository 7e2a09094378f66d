/* ratelimit.h - keyed per-minute rate limits and failure counters, safe to
 * use from the loop and from workers (one mutex). The in-process store;
 * a shared Redis store arrives with the scale-out work. */
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
/* Drop idle entries (housekeeping). */
void ratelimit_sweep(struct ratelimit *rl);

#endif
