/* pool.h - the worker pool: blocking work (database, argon2, file I/O) runs
 * on threads, and its completion comes back to the event loop.
 *
 * LIFETIME NOTES: pool_submit hands arg to the pool; work(arg, ctx) runs on
 * a worker thread, then done(arg) runs on the loop thread, exactly once each,
 * in that order. Whoever owns arg frees it in done. ctx is the per-worker
 * context made by init (a store handle) and lives as long as the pool.
 */
#ifndef COAI_POOL_H
#define COAI_POOL_H

#include <event2/event.h>

#include "common.h"

struct pool;
typedef void *(*pool_init_fn)(void *init_arg, int index); /* NULL = failure */
typedef void (*pool_fini_fn)(void *ctx);
typedef void (*pool_work_fn)(void *arg, void *ctx);
typedef void (*pool_done_fn)(void *arg);

/* Starts n threads, each calling init once. Returns NULL if any init fails
 * (already started threads are stopped). */
struct pool *pool_new(struct event_base *base, int n, pool_init_fn init, pool_fini_fn fini,
                      void *init_arg);
/* Like pool_new, but only the first `eager` workers (at least one) call init
 * before it returns; each other worker calls init just before its first
 * job, which it gets only when the initialised workers are all busy. A
 * lightly loaded pool so keeps one store connection, not n. A late init
 * that fails (init logs why) leaves that worker without jobs; the pool runs
 * on the others. */
struct pool *pool_new_lazy(struct event_base *base, int n, int eager, pool_init_fn init,
                           pool_fini_fn fini, void *init_arg);
/* Queue a job; never fails. done may be NULL. */
void pool_submit(struct pool *p, pool_work_fn work, pool_done_fn done, void *arg);
/* Run work(arg, ctx) once on every worker that has started (called init),
 * each on its own thread, after the job it is running, if any; workers
 * waiting for jobs are woken for it. For per-thread upkeep (returning the
 * free memory of a thread's malloc arena). A worker that has not run the
 * previous call's work yet runs only the latest; nothing runs once the
 * pool is stopping. Loop thread only; arg must outlive the pool. */
void pool_each_worker(struct pool *p, pool_work_fn work, void *arg);
/* Jobs submitted whose done callback has not run yet. */
size_t pool_pending(const struct pool *p);
/* Waits for queued jobs to finish, runs their done callbacks, joins the
 * threads (calling fini), frees the pool. NULL-safe. */
void pool_free(struct pool *p);

#endif
