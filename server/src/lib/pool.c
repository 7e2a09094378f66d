/* pool.c - fixed thread pool with a FIFO job queue; completions are queued
 * back and an eventfd wakes the loop, which runs the done callbacks.
 *
 * Lazy workers (pool_new_lazy) wait on their own condition variable and are
 * woken only when more jobs are queued than initialised workers are idle;
 * they run init (open a store connection) then, and become ordinary
 * workers. */
#include "pool.h"

#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/eventfd.h>
#include <sys/resource.h>
#include <time.h>
#include <unistd.h>

struct job {
    pool_work_fn work;
    pool_done_fn done;
    void *arg;
    struct job *next;
};

struct jobq {
    struct job *head, *tail;
};

struct worker {
    struct pool *pool;
    pthread_t thread;
    void *ctx;
    int index;
    bool started;
    bool eager;            /* runs init before pool_new returns */
    uint64_t each_seen;    /* the pool's each_gen when it last ran each_fn; mu */
};

struct pool {
    struct event_base *base;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    struct jobq todo;      /* guarded by mu */
    struct jobq finished;  /* guarded by mu */
    bool stopping;         /* guarded by mu */
    size_t todo_n;         /* jobs in todo; guarded by mu */
    int idle_ready;        /* initialised workers waiting on cv; guarded by mu */
    int lazy_waiting;      /* workers waiting on lazy_cv for their init; guarded by mu */
    pthread_cond_t lazy_cv;
    int efd;
    struct event *ev;
    struct event *more;    /* runs the rest of a long batch of completions */
    struct jobq ready;     /* completions taken, not run yet; loop thread only */
    size_t pending;        /* loop thread only */
    int n;
    struct worker *workers;
    pool_init_fn init;
    pool_fini_fn fini;
    void *init_arg;
    pthread_mutex_t init_mu;
    pthread_cond_t init_cv;
    int init_done, init_failed;
    uint64_t each_gen;     /* pool_each_worker calls; guarded by mu */
    pool_work_fn each_fn;  /* guarded by mu */
    void *each_arg;
};

static void q_push(struct jobq *q, struct job *j)
{
    j->next = NULL;
    if (q->tail)
        q->tail->next = j;
    else
        q->head = j;
    q->tail = j;
}

/* A lazy worker: waits until the initialised workers cannot take the queued
 * jobs, then runs init. Returns false (with mu held) if the pool stops first
 * or init fails; the worker then takes no jobs. Called and returns with mu. */
static bool lazy_init(struct worker *w)
{
    struct pool *p = w->pool;
    while (!p->stopping && (size_t)p->idle_ready >= p->todo_n) {
        p->lazy_waiting++;
        pthread_cond_wait(&p->lazy_cv, &p->mu);
        p->lazy_waiting--;
    }
    if (p->stopping)
        return false;
    pthread_mutex_unlock(&p->mu);
    w->ctx = p->init(p->init_arg, w->index);
    pthread_mutex_lock(&p->mu);
    if (!w->ctx) /* pass the wake-up on: another worker takes the job */
        pthread_cond_signal(&p->lazy_cv);
    return w->ctx != NULL;
}

/* Workers run at a lower priority than the event loop (nice +WORKER_NICE
 * for their own thread): their work (store writes of streaming answers,
 * password hashes) can wait a few milliseconds, the loop's cannot - every
 * stream and timer waits behind it. On a machine with more runnable
 * threads than cores the scheduler now gives the loop the core first. */
#define WORKER_NICE 5

static void *worker_main(void *argp)
{
    struct worker *w = argp;
    struct pool *p = w->pool;
    (void)setpriority(PRIO_PROCESS, (id_t)gettid(), WORKER_NICE); /* best effort */
    if (w->eager) {
        w->ctx = p->init ? p->init(p->init_arg, w->index) : NULL;
        pthread_mutex_lock(&p->init_mu);
        p->init_done++;
        if (p->init && !w->ctx)
            p->init_failed++;
        pthread_cond_signal(&p->init_cv);
        pthread_mutex_unlock(&p->init_mu);
    }

    pthread_mutex_lock(&p->mu);
    if (!w->eager && !lazy_init(w)) {
        pthread_mutex_unlock(&p->mu);
        return NULL;
    }
    for (;;) {
        while (!p->todo.head && !p->stopping && w->each_seen == p->each_gen) {
            p->idle_ready++;
            pthread_cond_wait(&p->cv, &p->mu);
            p->idle_ready--;
        }
        if (p->stopping && !p->todo.head)
            break;
        if (w->each_seen != p->each_gen && !p->stopping) {
            w->each_seen = p->each_gen;
            pool_work_fn fn = p->each_fn;
            void *arg = p->each_arg;
            p->idle_ready++; /* short: counts as idle, so a job now wakes no lazy worker */
            pthread_mutex_unlock(&p->mu);
            fn(arg, w->ctx);
            pthread_mutex_lock(&p->mu);
            p->idle_ready--;
            continue;
        }
        if (!p->todo.head)
            continue;
        struct job *j = p->todo.head;
        p->todo.head = j->next;
        if (!p->todo.head)
            p->todo.tail = NULL;
        p->todo_n--;
        pthread_mutex_unlock(&p->mu);

        if (j->work)
            j->work(j->arg, w->ctx);

        pthread_mutex_lock(&p->mu);
        q_push(&p->finished, j);
        uint64_t one = 1;
        ssize_t r = write(p->efd, &one, sizeof one);
        (void)r;
    }
    pthread_mutex_unlock(&p->mu);
    if (p->fini && w->ctx)
        p->fini(w->ctx);
    return NULL;
}

/* The done callbacks run on the loop a slice of at most RUN_SLICE_US at a
 * time: a thousand answers starting at once finish their store jobs
 * together, and running all their callbacks (each starts a provider
 * request) in one go held everything else on the loop - other requests,
 * streams, timers - for tens of milliseconds. The rest runs on the next
 * turn of the loop, after what became ready meanwhile. */
#define RUN_SLICE_US 2000

static int64_t mono_now_us(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

/* Runs the taken completions (taking the finished ones first if none are
 * left), for slice_us at most (0: all of them). */
static void run_finished_for(struct pool *p, int64_t slice_us)
{
    if (!p->ready.head) {
        pthread_mutex_lock(&p->mu);
        p->ready = p->finished;
        p->finished.head = p->finished.tail = NULL;
        pthread_mutex_unlock(&p->mu);
    }
    int64_t until = slice_us > 0 ? mono_now_us() + slice_us : 0;
    while (p->ready.head) {
        struct job *j = p->ready.head;
        p->ready.head = j->next;
        if (!p->ready.head)
            p->ready.tail = NULL;
        p->pending--;
        if (j->done)
            j->done(j->arg);
        free(j);
        if (until && p->ready.head && mono_now_us() >= until) {
            static const struct timeval now = {0, 0};
            evtimer_add(p->more, &now);
            return;
        }
    }
}

/* Everything finished, at once (the pool is being freed). */
static void run_finished(struct pool *p)
{
    run_finished_for(p, 0); /* what was taken before */
    run_finished_for(p, 0); /* and what finished since */
}

static void on_wake(evutil_socket_t fd, short what, void *arg)
{
    struct pool *p = arg;
    uint64_t v;
    ssize_t r = read(fd, &v, sizeof v);
    (void)r;
    if (!p->ready.head) /* else the more timer is armed and takes these too */
        run_finished_for(p, RUN_SLICE_US);
}

static void on_more(evutil_socket_t fd, short what, void *arg)
{
    struct pool *p = arg;
    run_finished_for(p, RUN_SLICE_US);
    if (!p->ready.head) {
        pthread_mutex_lock(&p->mu);
        bool again = p->finished.head != NULL;
        pthread_mutex_unlock(&p->mu);
        if (again) /* finished while the slices ran; their wake-up was read */
            run_finished_for(p, RUN_SLICE_US);
    }
}

static void stop_threads(struct pool *p)
{
    pthread_mutex_lock(&p->mu);
    p->stopping = true;
    pthread_cond_broadcast(&p->cv);
    pthread_cond_broadcast(&p->lazy_cv);
    pthread_mutex_unlock(&p->mu);
    for (int i = 0; i < p->n; i++)
        if (p->workers[i].started)
            pthread_join(p->workers[i].thread, NULL);
}

struct pool *pool_new(struct event_base *base, int n, pool_init_fn init, pool_fini_fn fini,
                      void *init_arg)
{
    return pool_new_lazy(base, n, n, init, fini, init_arg);
}

struct pool *pool_new_lazy(struct event_base *base, int n, int eager, pool_init_fn init,
                           pool_fini_fn fini, void *init_arg)
{
    if (!init || eager > n)
        eager = n;
    if (eager < 1)
        eager = 1;
    struct pool *p = xcalloc(1, sizeof *p);
    p->base = base;
    p->n = n;
    p->init = init;
    p->fini = fini;
    p->init_arg = init_arg;
    pthread_mutex_init(&p->mu, NULL);
    pthread_cond_init(&p->cv, NULL);
    pthread_cond_init(&p->lazy_cv, NULL);
    pthread_mutex_init(&p->init_mu, NULL);
    pthread_cond_init(&p->init_cv, NULL);
    p->efd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    if (p->efd < 0) {
        perror("eventfd");
        abort();
    }
    p->ev = event_new(base, p->efd, EV_READ | EV_PERSIST, on_wake, p);
    event_add(p->ev, NULL);
    p->more = evtimer_new(base, on_more, p);
    p->workers = xcalloc((size_t)n, sizeof *p->workers);
    for (int i = 0; i < n; i++) {
        struct worker *w = &p->workers[i];
        w->pool = p;
        w->index = i;
        w->eager = i < eager;
        if (pthread_create(&w->thread, NULL, worker_main, w) == 0) {
            w->started = true;
        } else if (w->eager) {
            pthread_mutex_lock(&p->init_mu);
            p->init_done++;
            p->init_failed++;
            pthread_mutex_unlock(&p->init_mu);
        }
    }
    pthread_mutex_lock(&p->init_mu);
    while (p->init_done < eager)
        pthread_cond_wait(&p->init_cv, &p->init_mu);
    int failed = p->init_failed;
    pthread_mutex_unlock(&p->init_mu);
    if (failed) {
        stop_threads(p);
        p->n = 0;
        pool_free(p);
        return NULL;
    }
    return p;
}

void pool_submit(struct pool *p, pool_work_fn work, pool_done_fn done, void *arg)
{
    struct job *j = xmalloc(sizeof *j);
    j->work = work;
    j->done = done;
    j->arg = arg;
    p->pending++;
    pthread_mutex_lock(&p->mu);
    q_push(&p->todo, j);
    p->todo_n++;
    pthread_cond_signal(&p->cv);
    if (p->lazy_waiting > 0 && p->todo_n > (size_t)p->idle_ready)
        pthread_cond_signal(&p->lazy_cv); /* the initialised workers are all busy */
    pthread_mutex_unlock(&p->mu);
}

void pool_each_worker(struct pool *p, pool_work_fn work, void *arg)
{
    pthread_mutex_lock(&p->mu);
    p->each_fn = work;
    p->each_arg = arg;
    p->each_gen++;
    pthread_cond_broadcast(&p->cv); /* idle workers run it now */
    pthread_mutex_unlock(&p->mu);
}

size_t pool_pending(const struct pool *p)
{
    return p->pending;
}

void pool_free(struct pool *p)
{
    if (!p)
        return;
    /* Finish everything queued (workers drain todo before exiting), then run
     * the completions here on the loop thread. Done callbacks may submit
     * more work; keep going until nothing is pending. */
    while (p->pending > 0 && p->n > 0) {
        run_finished(p);
        if (p->pending == 0)
            break;
        uint64_t v;
        struct timespec ts = {0, 1000000};
        if (read(p->efd, &v, sizeof v) < 0 && errno == EAGAIN)
            nanosleep(&ts, NULL);
    }
    stop_threads(p);
    run_finished(p);
    event_free(p->ev);
    event_free(p->more);
    close(p->efd);
    pthread_mutex_destroy(&p->mu);
    pthread_cond_destroy(&p->cv);
    pthread_cond_destroy(&p->lazy_cv);
    pthread_mutex_destroy(&p->init_mu);
    pthread_cond_destroy(&p->init_cv);
    free(p->workers);
    free(p);
}
