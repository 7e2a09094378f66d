/* bucket.c - see bucket.h. */
#include "bucket.h"

static void refill(struct bucket *b, int64_t now)
{
    if (b->per_min <= 0)
        return;
    if (now > b->last_us) {
        b->level += (double)(now - b->last_us) * b->per_min / 60e6;
        if (b->level > b->per_min)
            b->level = b->per_min;
    }
    b->last_us = now;
}

void bucket_init(struct bucket *b, double per_min, int64_t now_us)
{
    b->per_min = per_min;
    b->level = per_min;
    b->last_us = now_us;
}

void bucket_set_rate(struct bucket *b, double per_min, int64_t now_us)
{
    refill(b, now_us);
    if (b->per_min <= 0 && per_min > 0)
        b->level = per_min;
    b->per_min = per_min;
    if (per_min > 0 && b->level > per_min)
        b->level = per_min;
}

bool bucket_take(struct bucket *b, double n, int64_t now_us, double *wait_s)
{
    if (b->per_min <= 0)
        return true;
    refill(b, now_us);
    bool ok = n > 0 ? b->level >= n : b->level > 0;
    if (ok) {
        b->level -= n;
        return true;
    }
    double need = (n > 0 ? n : 1e-9) - b->level;
    if (wait_s)
        *wait_s = need * 60.0 / b->per_min;
    return false;
}

void bucket_charge(struct bucket *b, double n, int64_t now_us)
{
    if (b->per_min <= 0)
        return;
    refill(b, now_us);
    b->level -= n;
}

double bucket_level(struct bucket *b, int64_t now_us)
{
    refill(b, now_us);
    return b->level;
}

double bucket_reset_s(struct bucket *b, int64_t now_us)
{
    if (b->per_min <= 0)
        return 0;
    refill(b, now_us);
    double missing = b->per_min - b->level;
    return missing <= 0 ? 0 : missing * 60.0 / b->per_min;
}
