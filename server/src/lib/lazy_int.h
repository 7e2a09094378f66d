/* lazy_int.h - what lazy.c shares with the wrapper files lazy_curl.c,
 * lazy_pq.c, lazy_redis.c and lazy_ssl.c. Not for use outside lib/lazy*.c. */
#ifndef COAI_LAZY_INT_H
#define COAI_LAZY_INT_H

#include "lazy.h"

enum { LAZY_UNTRIED, LAZY_LOADING, LAZY_READY, LAZY_FAILED };

/* One library: the names the server calls, and the addresses dlsym found
 * for them (same order), valid once state is LAZY_READY. */
struct lazy_syms {
    const char *const *names;
    void **fns;
    size_t n;
};

extern int lazy_state[LAZY_N];               /* LAZY_*; written under lazy.c's lock */
extern const struct lazy_syms lazy_curl_syms; /* lazy_curl.c */
extern const struct lazy_syms lazy_pq_syms;   /* lazy_pq.c */
extern const struct lazy_syms lazy_redis_syms; /* lazy_redis.c */
extern const struct lazy_syms lazy_ssl_syms;   /* lazy_ssl.c */
extern const struct lazy_syms lazy_event_ssl_syms; /* lazy_ssl.c */

/* Loads lib or, if it cannot be loaded, prints why and exits: for calls
 * that have no way to report the failure. */
void lazy_need(enum lazy_lib lib);

/* The address of function i of a library, loading the library first if
 * needed. The fast path is one acquire load and a branch. */
static inline void *lazy_fn(enum lazy_lib lib, void *const *fns, size_t i)
{
    if (__builtin_expect(__atomic_load_n(&lazy_state[lib], __ATOMIC_ACQUIRE) != LAZY_READY, 0))
        lazy_need(lib);
    return fns[i];
}

/* libcurl: curl_global_init right after loading (0 or -1 with err), and
 * the first-use hook and global cleanup of lazy.h. */
int lazy_curl_after_load(char *err, size_t errlen);
void lazy_curl_first_use(void); /* lazy.c: runs the lazy_curl_on_first_use hook once */
void lazy_curl_global_cleanup(void);

/* X-macro helpers for the wrapper files: an index enum and a name table
 * from one list of function names. */
#define LAZY_ENUM(name) I_##name,
#define LAZY_NAME(name) #name,

#endif
