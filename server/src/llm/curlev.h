/* curlev.h - libcurl's multi interface driven by the libevent loop.
 *
 * The only module that touches CURLM. Callers configure an easy handle, add
 * it, and get one done callback on the loop when the transfer ends (success,
 * error, or after their own write callback aborted it).
 * LIFETIME NOTES: the caller owns the easy handle throughout. After done
 * runs, the handle is no longer in the multi and may be freed or re-added.
 * curlev_remove cancels a transfer without calling done.
 */
#ifndef COAI_CURLEV_H
#define COAI_CURLEV_H

#include <curl/curl.h>
#include <event2/event.h>

struct curlev;
typedef void (*curlev_done_fn)(CURL *easy, CURLcode rc, void *arg);

struct curlev *curlev_new(struct event_base *base);
void curlev_free(struct curlev *c); /* NULL-safe; cancels remaining transfers silently */
int curlev_add(struct curlev *c, CURL *easy, curlev_done_fn done, void *arg);
void curlev_remove(struct curlev *c, CURL *easy);
/* Transfers currently running. */
int curlev_running(const struct curlev *c);
/* Socket registrations with the loop, for tests and metrics: registered and
 * unregistered count event_add and event_del calls (each an epoll_ctl);
 * idle_wakeups, idle keep-alive sockets that became readable. */
struct curlev_stats {
    unsigned long long registered, unregistered, idle_wakeups;
};
const struct curlev_stats *curlev_stats(const struct curlev *c);
/* A shared connection cache and DNS cache for every easy handle of this
 * loop: reuse keep-alive connections to the provider. */
CURLSH *curlev_share(struct curlev *c);

#endif
