/* bucket.h - token buckets for rate limits: capacity `rate` per minute,
 * refilled continuously. A bucket may be charged below zero (tokens are
 * known only after an answer), which then delays the next request. */
#ifndef COAI_BUCKET_H
#define COAI_BUCKET_H

#include "../lib/common.h"

struct bucket {
    double level;     /* available units */
    double per_min;   /* capacity and refill per minute; <= 0 = unlimited */
    int64_t last_us;  /* monotonic time of the last refill */
};

void bucket_init(struct bucket *b, double per_min, int64_t now_us);
/* Change the rate, keeping the current level (clamped to the new capacity). */
void bucket_set_rate(struct bucket *b, double per_min, int64_t now_us);
/* Take n units if the level allows (level >= n; for n == 0: level > 0).
 * On refusal *wait_s gets the seconds until it would succeed. */
bool bucket_take(struct bucket *b, double n, int64_t now_us, double *wait_s);
/* Subtract n unconditionally (may go negative). */
void bucket_charge(struct bucket *b, double n, int64_t now_us);
double bucket_level(struct bucket *b, int64_t now_us);
/* Seconds until the bucket is full again. */
double bucket_reset_s(struct bucket *b, int64_t now_us);

#endif
