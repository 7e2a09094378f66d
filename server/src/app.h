/* app.h - the one object that ties the running server together. Passed
 * explicitly to every module that needs it (no globals). */
#ifndef COAI_APP_H
#define COAI_APP_H

#include <event2/event.h>
#include <event2/http.h>

#include "config.h"
#include "lib/common.h"

struct pool;
struct curlev;
struct turn_registry;
struct static_files;
struct models_cache;
struct gateway;
struct ratelimit;
struct redis;

struct app {
    struct config cfg;
    struct event_base *base;
    struct evhttp *http;
    struct evhttp_bound_socket *listener;
    int port;                       /* bound port (useful when configured as 0) */
    struct pool *pool;              /* workers, each with its own store handle */
    struct curlev *curl;
    struct turn_registry *turns;
    struct static_files *web;
    struct models_cache *models;
    struct respcache *respcache;    /* kept answers of ROUTE_CACHE routes, or NULL */
    struct ratelimit *rl;           /* per-IP / per-user / lock-out limits of the REST API */
    struct redis *redis;            /* CHATOPENAII_REDIS_URL client, loop thread only (NULL = none) */
    struct gateway *gw;             /* the /v1 gateway: principals, buckets, key pool, prices */
    unsigned char box_key[32];      /* AES-256-GCM key for provider keys (HKDF of the master key) */
    int key_version;                /* fingerprint of the master key, stored beside ciphertexts */
    bool shutting_down;
    int64_t started_ms;
    struct event *sig_term, *sig_int, *sig_hup, *housekeeping, *shutdown_poll;
    struct event *memtrim;        /* returns freed heap to the OS after a burst */
    uint64_t memtrim_seen;        /* requests counted at the last memtrim tick */
    bool memtrim_due;
    uint64_t requests_total;
};

#endif
