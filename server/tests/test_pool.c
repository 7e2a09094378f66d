/* test_pool.c - the worker pool: work runs off the loop thread, done runs on
 * it exactly once per job, in submission order per job, and pool_free drains
 * everything queued (including jobs submitted from done callbacks). Lazy
 * workers (pool_new_lazy) run init only when jobs need them, and a late init
 * that fails leaves the jobs to the other workers. */
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <cmocka.h>
#include <event2/event.h>

#include "lib/pool.h"

struct counters {
    pthread_t loop_thread;
    int inits, finis;
    int done;
    int work_on_loop;      /* work callbacks that ran on the loop thread (must be 0) */
    int done_off_loop;     /* done callbacks that ran elsewhere (must be 0) */
    struct event_base *base;
    struct pool *pool;
    int target;
    pthread_mutex_t mu;
};

struct job {
    struct counters *c;
    int worked;
    int ctx_tag;
    bool resubmit;
};

static void *init_cb(void *arg, int index)
{
    struct counters *c = arg;
    pthread_mutex_lock(&c->mu);
    c->inits++;
    pthread_mutex_unlock(&c->mu);
    int *tag = malloc(sizeof *tag);
    *tag = 1000 + index;
    return tag;
}

static void fini_cb(void *ctx)
{
    free(ctx);
}

static void work_cb(void *arg, void *ctx)
{
    struct job *j = arg;
    if (pthread_equal(pthread_self(), j->c->loop_thread)) {
        pthread_mutex_lock(&j->c->mu);
        j->c->work_on_loop++;
        pthread_mutex_unlock(&j->c->mu);
    }
    j->worked++;
    j->ctx_tag = *(int *)ctx;
}

static void done_cb(void *arg)
{
    struct job *j = arg;
    struct counters *c = j->c;
    if (!pthread_equal(pthread_self(), c->loop_thread))
        c->done_off_loop++;
    assert_int_equal(j->worked, 1);
    assert_true(j->ctx_tag >= 1000 && j->ctx_tag < 1004);
    c->done++;
    if (j->resubmit) {
        struct job *k = calloc(1, sizeof *k);
        k->c = c;
        pool_submit(c->pool, work_cb, done_cb, k);
    }
    free(j);
    if (c->done == c->target)
        event_base_loopbreak(c->base);
}

static void test_jobs_complete_on_loop(void **state)
{
    struct counters c;
    memset(&c, 0, sizeof c);
    pthread_mutex_init(&c.mu, NULL);
    c.loop_thread = pthread_self();
    c.base = event_base_new();
    c.pool = pool_new(c.base, 4, init_cb, fini_cb, &c);
    assert_non_null(c.pool);
    assert_int_equal(c.inits, 4);
    c.target = 500;
    for (int i = 0; i < 500; i++) {
        struct job *j = calloc(1, sizeof *j);
        j->c = &c;
        pool_submit(c.pool, work_cb, done_cb, j);
    }
    assert_int_equal(pool_pending(c.pool), 500);
    event_base_dispatch(c.base);
    assert_int_equal(c.done, 500);
    assert_int_equal(pool_pending(c.pool), 0);
    assert_int_equal(c.work_on_loop, 0);
    assert_int_equal(c.done_off_loop, 0);
    pool_free(c.pool);
    event_base_free(c.base);
    pthread_mutex_destroy(&c.mu);
}

static void test_free_drains_queue(void **state)
{
    struct counters c;
    memset(&c, 0, sizeof c);
    pthread_mutex_init(&c.mu, NULL);
    c.loop_thread = pthread_self();
    c.base = event_base_new();
    c.pool = pool_new(c.base, 2, init_cb, fini_cb, &c);
    c.target = -1;
    for (int i = 0; i < 100; i++) {
        struct job *j = calloc(1, sizeof *j);
        j->c = &c;
        j->resubmit = (i % 10 == 0); /* done callbacks add 10 more jobs */
        pool_submit(c.pool, work_cb, done_cb, j);
    }
    /* No loop run at all: pool_free must still finish every job. */
    pool_free(c.pool);
    assert_int_equal(c.done, 110);
    event_base_free(c.base);
    pthread_mutex_destroy(&c.mu);
}

/* A job that holds its worker until the loop releases it. */
struct slow {
    pthread_mutex_t mu;
    pthread_cond_t cv;
    int started;
    bool release;
};

static void slow_work(void *arg, void *ctx)
{
    struct slow *s = arg;
    pthread_mutex_lock(&s->mu);
    s->started++;
    pthread_cond_broadcast(&s->cv);
    while (!s->release)
        pthread_cond_wait(&s->cv, &s->mu);
    pthread_mutex_unlock(&s->mu);
}

static int inits_of(struct counters *c)
{
    pthread_mutex_lock(&c->mu);
    int n = c->inits;
    pthread_mutex_unlock(&c->mu);
    return n;
}

static void test_lazy_workers(void **state)
{
    struct counters c;
    memset(&c, 0, sizeof c);
    pthread_mutex_init(&c.mu, NULL);
    c.loop_thread = pthread_self();
    c.base = event_base_new();
    c.pool = pool_new_lazy(c.base, 4, 1, init_cb, fini_cb, &c);
    assert_non_null(c.pool);
    assert_int_equal(inits_of(&c), 1); /* only the eager worker */

    /* Two jobs that block: the second needs a second worker, which runs
     * its init then. */
    struct slow s = {.started = 0, .release = false};
    pthread_mutex_init(&s.mu, NULL);
    pthread_cond_init(&s.cv, NULL);
    pool_submit(c.pool, slow_work, NULL, &s);
    pool_submit(c.pool, slow_work, NULL, &s);
    pthread_mutex_lock(&s.mu);
    while (s.started < 2)
        pthread_cond_wait(&s.cv, &s.mu);
    s.release = true;
    pthread_cond_broadcast(&s.cv);
    pthread_mutex_unlock(&s.mu);
    assert_true(inits_of(&c) >= 2);

    c.target = 300;
    for (int i = 0; i < 300; i++) {
        struct job *j = calloc(1, sizeof *j);
        j->c = &c;
        pool_submit(c.pool, work_cb, done_cb, j);
    }
    event_base_dispatch(c.base);
    assert_int_equal(c.done, 300);
    assert_true(inits_of(&c) <= 4);
    assert_int_equal(c.work_on_loop, 0);
    pool_free(c.pool);
    pthread_mutex_destroy(&s.mu);
    pthread_cond_destroy(&s.cv);
    event_base_free(c.base);
    pthread_mutex_destroy(&c.mu);
}

/* Late inits fail: every job still runs, on worker 0. */
static void *late_failing_init(void *arg, int index)
{
    struct counters *c = arg;
    pthread_mutex_lock(&c->mu);
    c->inits++;
    pthread_mutex_unlock(&c->mu);
    if (index > 0)
        return NULL;
    int *tag = malloc(sizeof *tag);
    *tag = 1000;
    return tag;
}

static void test_lazy_init_failure(void **state)
{
    struct counters c;
    memset(&c, 0, sizeof c);
    pthread_mutex_init(&c.mu, NULL);
    c.loop_thread = pthread_self();
    c.base = event_base_new();
    c.pool = pool_new_lazy(c.base, 3, 1, late_failing_init, fini_cb, &c);
    assert_non_null(c.pool);
    struct slow s = {.started = 0, .release = false};
    pthread_mutex_init(&s.mu, NULL);
    pthread_cond_init(&s.cv, NULL);
    pool_submit(c.pool, slow_work, NULL, &s); /* worker 0 busy: the rest wake */
    c.target = 50;
    for (int i = 0; i < 50; i++) {
        struct job *j = calloc(1, sizeof *j);
        j->c = &c;
        pool_submit(c.pool, work_cb, done_cb, j);
    }
    pthread_mutex_lock(&s.mu);
    while (s.started < 1)
        pthread_cond_wait(&s.cv, &s.mu);
    pthread_mutex_unlock(&s.mu);
    while (inits_of(&c) < 3) { /* both late workers try, fail and leave */
        struct timespec ts = {0, 1000000};
        nanosleep(&ts, NULL);
    }
    pthread_mutex_lock(&s.mu);
    s.release = true;
    pthread_cond_broadcast(&s.cv);
    pthread_mutex_unlock(&s.mu);
    event_base_dispatch(c.base);
    assert_int_equal(c.done, 50);
    pool_free(c.pool);
    pthread_mutex_destroy(&s.mu);
    pthread_cond_destroy(&s.cv);
    event_base_free(c.base);
    pthread_mutex_destroy(&c.mu);
}

static void *failing_init(void *arg, int index)
{
    return index == 1 ? NULL : malloc(1);
}

static void test_init_failure(void **state)
{
    struct event_base *base = event_base_new();
    struct pool *p = pool_new(base, 3, failing_init, free, NULL);
    assert_null(p);
    event_base_free(base);
}

/* A long batch of completions does not hold the loop: done callbacks run a
 * slice (about 2 ms) at a time, and an event that became ready meanwhile
 * runs between slices, not after the whole batch. */
struct slice_state {
    struct event_base *base;
    int done;
    int done_when_probe_ran; /* -1 until the probe runs */
    int total;
};

static void busy_done(void *arg)
{
    struct slice_state *s = arg;
    struct timespec t0, t;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    do /* 0.3 ms of work on the loop */
        clock_gettime(CLOCK_MONOTONIC, &t);
    while ((t.tv_sec - t0.tv_sec) * 1000000000L + (t.tv_nsec - t0.tv_nsec) < 300000L);
    if (++s->done == s->total)
        event_base_loopbreak(s->base);
}

static void probe_cb(evutil_socket_t fd, short what, void *arg)
{
    struct slice_state *s = arg;
    s->done_when_probe_ran = s->done;
}

static void test_done_callbacks_in_slices(void **state)
{
    (void)state;
    struct slice_state s = {.base = event_base_new(), .done_when_probe_ran = -1, .total = 60};
    struct pool *p = pool_new(s.base, 2, NULL, NULL, NULL);
    assert_non_null(p);
    for (int i = 0; i < s.total; i++)
        pool_submit(p, NULL, busy_done, &s);
    struct timespec nap = {0, 100 * 1000000L}; /* every job finishes off the loop */
    nanosleep(&nap, NULL);
    struct event *probe = evtimer_new(s.base, probe_cb, &s);
    struct timeval zero = {0, 0};
    evtimer_add(probe, &zero);
    event_base_dispatch(s.base);
    assert_int_equal(s.done, s.total);
    /* all 60 (18 ms) in one callback would leave the probe until after them */
    assert_true(s.done_when_probe_ran >= 0 && s.done_when_probe_ran < s.total / 2);
    event_free(probe);
    pool_free(p);
    event_base_free(s.base);
}

/* pool_each_worker runs its work once on every started worker, each on its
 * own thread with its own context, never on the loop. */
struct each_state {
    pthread_mutex_t mu;
    pthread_t loop;
    int ran, on_loop;
    int seen[8]; /* by context tag - 1000 */
};

static void each_cb(void *arg, void *ctx)
{
    struct each_state *s = arg;
    pthread_mutex_lock(&s->mu);
    s->ran++;
    if (pthread_equal(pthread_self(), s->loop))
        s->on_loop++;
    int tag = *(int *)ctx - 1000;
    if (tag >= 0 && tag < 8)
        s->seen[tag]++;
    pthread_mutex_unlock(&s->mu);
}

static void test_each_worker(void **state)
{
    (void)state;
    struct counters c;
    memset(&c, 0, sizeof c);
    pthread_mutex_init(&c.mu, NULL);
    struct event_base *base = event_base_new();
    struct pool *p = pool_new(base, 3, init_cb, fini_cb, &c);
    assert_non_null(p);
    struct each_state s;
    memset(&s, 0, sizeof s);
    pthread_mutex_init(&s.mu, NULL);
    s.loop = pthread_self();
    pool_each_worker(p, each_cb, &s);
    for (int i = 0; i < 200; i++) { /* up to 2 s */
        pthread_mutex_lock(&s.mu);
        int ran = s.ran;
        pthread_mutex_unlock(&s.mu);
        if (ran >= 3)
            break;
        struct timespec nap = {0, 10 * 1000000L};
        nanosleep(&nap, NULL);
    }
    struct timespec nap = {0, 50 * 1000000L}; /* and no second run */
    nanosleep(&nap, NULL);
    pthread_mutex_lock(&s.mu);
    assert_int_equal(s.ran, 3);
    assert_int_equal(s.on_loop, 0);
    for (int i = 0; i < 3; i++)
        assert_int_equal(s.seen[i], 1);
    pthread_mutex_unlock(&s.mu);
    pool_free(p);
    event_base_free(base);
    pthread_mutex_destroy(&s.mu);
    pthread_mutex_destroy(&c.mu);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_jobs_complete_on_loop),
        cmocka_unit_test(test_free_drains_queue),
        cmocka_unit_test(test_init_failure),
        cmocka_unit_test(test_lazy_workers),
        cmocka_unit_test(test_lazy_init_failure),
        cmocka_unit_test(test_done_callbacks_in_slices),
        cmocka_unit_test(test_each_worker),
    };
    int failed = cmocka_run_group_tests(tests, NULL, NULL);
    int total = (int)(sizeof tests / sizeof tests[0]);
    printf("unit-pool: %d passed, %d failed\n", total - failed, failed);
    return failed ? 1 : 0;
}
