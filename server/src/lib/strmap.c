/* strmap.c - see strmap.h. Grows by doubling at load factor 1. */
#include "strmap.h"

#include <stdlib.h>
#include <string.h>

struct entry {
    struct entry *next;
    uint64_t hash;
    void *value;
    char key[];
};

struct strmap {
    struct entry **slots;
    size_t nslots;
    size_t count;
};

static uint64_t fnv1a(const char *s)
{
    uint64_t h = 1469598103934665603ULL;
    for (; *s; s++) {
        h ^= (unsigned char)*s;
        h *= 1099511628211ULL;
    }
    return h;
}

struct strmap *strmap_new(void)
{
    struct strmap *m = xcalloc(1, sizeof *m);
    m->nslots = 64;
    m->slots = xcalloc(m->nslots, sizeof *m->slots);
    return m;
}

void strmap_free(struct strmap *m, void (*free_value)(void *))
{
    if (!m)
        return;
    for (size_t i = 0; i < m->nslots; i++) {
        struct entry *e = m->slots[i];
        while (e) {
            struct entry *n = e->next;
            if (free_value)
                free_value(e->value);
            free(e);
            e = n;
        }
    }
    free(m->slots);
    free(m);
}

static struct entry **find(const struct strmap *m, const char *key, uint64_t h)
{
    struct entry **pp = &m->slots[h & (m->nslots - 1)];
    while (*pp && !((*pp)->hash == h && strcmp((*pp)->key, key) == 0))
        pp = &(*pp)->next;
    return pp;
}

void *strmap_get(const struct strmap *m, const char *key)
{
    struct entry *e = *find(m, key, fnv1a(key));
    return e ? e->value : NULL;
}

static void grow(struct strmap *m)
{
    size_t n = m->nslots * 2;
    struct entry **slots = xcalloc(n, sizeof *slots);
    for (size_t i = 0; i < m->nslots; i++) {
        struct entry *e = m->slots[i];
        while (e) {
            struct entry *next = e->next;
            struct entry **s = &slots[e->hash & (n - 1)];
            e->next = *s;
            *s = e;
            e = next;
        }
    }
    free(m->slots);
    m->slots = slots;
    m->nslots = n;
}

void *strmap_put(struct strmap *m, const char *key, void *value)
{
    uint64_t h = fnv1a(key);
    struct entry **pp = find(m, key, h);
    if (*pp) {
        void *old = (*pp)->value;
        (*pp)->value = value;
        return old;
    }
    size_t kl = strlen(key);
    struct entry *e = xmalloc(sizeof *e + kl + 1);
    memcpy(e->key, key, kl + 1);
    e->hash = h;
    e->value = value;
    e->next = NULL;
    *pp = e;
    if (++m->count > m->nslots)
        grow(m);
    return NULL;
}

void *strmap_del(struct strmap *m, const char *key)
{
    struct entry **pp = find(m, key, fnv1a(key));
    struct entry *e = *pp;
    if (!e)
        return NULL;
    *pp = e->next;
    void *v = e->value;
    free(e);
    m->count--;
    return v;
}

size_t strmap_count(const struct strmap *m)
{
    return m->count;
}

void strmap_sweep(struct strmap *m, bool (*fn)(const char *key, void *value, void *arg), void *arg)
{
    for (size_t i = 0; i < m->nslots; i++) {
        struct entry **pp = &m->slots[i];
        while (*pp) {
            struct entry *e = *pp;
            if (fn(e->key, e->value, arg)) {
                *pp = e->next;
                free(e);
                m->count--;
            } else {
                pp = &e->next;
            }
        }
    }
}
