/* strmap.h - a string-keyed hash map (separate chaining, FNV-1a), for the
 * loop thread's in-memory tables: token cache, rate-limit buckets.
 * Keys are copied; values are borrowed pointers the caller owns. */
#ifndef COAI_STRMAP_H
#define COAI_STRMAP_H

#include "common.h"

struct strmap;

struct strmap *strmap_new(void);
/* Frees the map; calls free_value on every value when non-NULL. NULL-safe. */
void strmap_free(struct strmap *m, void (*free_value)(void *));
void *strmap_get(const struct strmap *m, const char *key);
/* Inserts or replaces; returns the previous value (caller frees) or NULL. */
void *strmap_put(struct strmap *m, const char *key, void *value);
/* Removes key; returns its value (caller frees) or NULL. */
void *strmap_del(struct strmap *m, const char *key);
size_t strmap_count(const struct strmap *m);
/* Calls fn for each entry; fn returns true to delete the entry (after which
 * it owns the value). */
void strmap_sweep(struct strmap *m, bool (*fn)(const char *key, void *value, void *arg), void *arg);

#endif
