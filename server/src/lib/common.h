/* common.h - things every module of the server uses: the error enum, the
 * out-of-memory-aborting allocators, small macros. Depends on nothing of ours.
 */
#ifndef COAI_COMMON_H
#define COAI_COMMON_H

#include <stddef.h>
#include <stdint.h>
#include <stdbool.h>

/* One error code per layer. Zero is success everywhere. The human-readable
 * detail travels next to it (an error buffer), never inside it. */
enum app_err {
    APP_OK = 0,
    APP_EINVAL,      /* bad input from a client -> 400 */
    APP_ENOTFOUND,   /* no such row, or not yours -> 404 */
    APP_ECONFLICT,   /* unique constraint, state conflict -> 409 */
    APP_EAUTH,       /* not signed in / wrong credentials -> 401 */
    APP_EFORBIDDEN,  /* signed in but not allowed -> 403 */
    APP_ETOOBIG,     /* over a size cap -> 413 */
    APP_ESTORE,      /* database failure -> 500 */
    APP_EUPSTREAM,   /* provider failure -> 502 */
    APP_ECRYPTO,     /* decrypt/auth tag failure -> 500 */
    APP_EINTERNAL,   /* anything else -> 500 */
};

const char *app_err_name(enum app_err e);

#define COAI_ARRAY_LEN(a) (sizeof(a) / sizeof((a)[0]))
#define COAI_UNUSED(x) ((void)(x))
#define COAI_MUST_CHECK __attribute__((warn_unused_result))
#define COAI_PRINTF(f, a) __attribute__((format(printf, f, a)))

/* Allocation of small, internal sizes: never returns NULL (aborts with a
 * message on out-of-memory). Sizes that a client or the provider controls
 * must be checked against a cap (limits.h) before they get here. */
void *xmalloc(size_t n);
void *xcalloc(size_t nmemb, size_t size);
void *xrealloc(void *p, size_t n);
char *xstrdup(const char *s);          /* NULL in, NULL out */
char *xstrndup(const char *s, size_t n);
COAI_PRINTF(1, 2) char *xasprintf(const char *fmt, ...);

/* Wipe memory that held a secret (not optimised away). */
void secure_wipe(void *p, size_t n);

/* Wall clock, milliseconds since the epoch; monotonic clock, microseconds. */
int64_t now_ms(void);
int64_t mono_us(void);

#endif
