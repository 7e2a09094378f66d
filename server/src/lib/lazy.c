/* lazy.c - see lazy.h. The loader: dlopen, dlsym of every wrapped function,
 * the load-once state machine shared by callers on any thread, and the
 * background preload. The wrappers themselves are in lazy_curl.c,
 * lazy_pq.c and lazy_redis.c. */
#include "lazy_int.h"

#include <dlfcn.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <hiredis/hiredis.h>
#include <openssl/crypto.h>
#include <openssl/opensslv.h>

#include "log.h"

#define STR_(x) #x
#define STR(x) STR_(x)

struct lazy_lib_info {
    const char *what;    /* for messages */
    const char *soname;  /* the ABI the headers we compiled against describe */
    const char *env;     /* names another file to load */
    const char *package; /* Debian's, for the error message */
    const struct lazy_syms *syms;
};

static const struct lazy_lib_info g_info[LAZY_N] = {
    [LAZY_CURL] = {"libcurl", "libcurl.so.4", "CHATOPENAII_LIBCURL", "libcurl4", &lazy_curl_syms},
    [LAZY_PQ] = {"libpq", "libpq.so.5", "CHATOPENAII_LIBPQ", "libpq5", &lazy_pq_syms},
    [LAZY_REDIS] = {"hiredis", "libhiredis.so." STR(HIREDIS_SONAME), "CHATOPENAII_LIBHIREDIS",
                    "libhiredis" STR(HIREDIS_SONAME), &lazy_redis_syms},
    [LAZY_SSL] = {"libssl", "libssl.so." STR(OPENSSL_VERSION_MAJOR), "CHATOPENAII_LIBSSL",
                  "libssl" STR(OPENSSL_VERSION_MAJOR), &lazy_ssl_syms},
    /* libevent's soname for every 2.1.x; it needs libevent_core, already loaded */
    [LAZY_EVENT_SSL] = {"libevent_openssl", "libevent_openssl-2.1.so.7",
                        "CHATOPENAII_LIBEVENT_OPENSSL", "libevent-openssl-2.1-7",
                        &lazy_event_ssl_syms},
};

int lazy_state[LAZY_N];
static char g_err[LAZY_N][320];
static pthread_mutex_t g_lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t g_cond = PTHREAD_COND_INITIALIZER;

static void (*g_first_use_fn)(void *); /* under g_lock */
static void *g_first_use_arg;
static int g_first_use_done; /* atomic; set under g_lock */

static double mono_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec * 1e3 + (double)ts.tv_nsec / 1e6;
}

/* Without the lock: dlopen may take tens of milliseconds (libcurl's
 * dependencies and their constructors), and others wait on g_cond. */
static int do_load(enum lazy_lib lib, char *err, size_t errlen)
{
    const struct lazy_lib_info *in = &g_info[lib];
    const char *file = getenv(in->env);
    if (!file || !*file)
        file = in->soname;
    double t0 = mono_ms();
    /* RTLD_LOCAL: the library's symbols serve our dlsym only, never the
     * lookups of other libraries; never unloaded. */
    void *h = dlopen(file, RTLD_NOW | RTLD_LOCAL);
    if (!h) {
        const char *why = dlerror();
        snprintf(err, errlen, "cannot load %s (%s): %s; install it (Debian: %s) or name the file in %s",
                 in->what, file, why ? why : "unknown error", in->package, in->env);
        return -1;
    }
    const struct lazy_syms *s = in->syms;
    for (size_t i = 0; i < s->n; i++) {
        void *f = dlsym(h, s->names[i]);
        if (!f) {
            snprintf(err, errlen, "%s (%s) has no function %s: an older version than the server "
                     "was built for", in->what, file, s->names[i]);
            return -1; /* h stays open: harmless, and dlclose could run its destructors */
        }
        s->fns[i] = f;
    }
    if (lib == LAZY_CURL && lazy_curl_after_load(err, errlen) != 0)
        return -1;
    /* TLS needs both: fail at set-up, not at the first connection */
    if (lib == LAZY_SSL && lazy_load(LAZY_EVENT_SSL, err, errlen) != 0)
        return -1;
    char ms[32];
    snprintf(ms, sizeof ms, "=%.1f", mono_ms() - t0);
    log_debug("library loaded", "library", file, "ms", ms, NULL);
    return 0;
}

int lazy_load(enum lazy_lib lib, char *err, size_t errlen)
{
    if (__atomic_load_n(&lazy_state[lib], __ATOMIC_ACQUIRE) == LAZY_READY)
        return 0;
    pthread_mutex_lock(&g_lock);
    while (lazy_state[lib] == LAZY_LOADING)
        pthread_cond_wait(&g_cond, &g_lock);
    if (lazy_state[lib] == LAZY_UNTRIED) {
        __atomic_store_n(&lazy_state[lib], LAZY_LOADING, __ATOMIC_RELEASE);
        pthread_mutex_unlock(&g_lock);
        char msg[sizeof g_err[0]];
        int rc = do_load(lib, msg, sizeof msg);
        pthread_mutex_lock(&g_lock);
        if (rc != 0)
            memcpy(g_err[lib], msg, sizeof msg);
        /* release: fns[] written above are visible to whoever sees READY */
        __atomic_store_n(&lazy_state[lib], rc == 0 ? LAZY_READY : LAZY_FAILED, __ATOMIC_RELEASE);
        pthread_cond_broadcast(&g_cond);
    }
    int rc = lazy_state[lib] == LAZY_READY ? 0 : -1;
    if (rc != 0 && err && errlen)
        snprintf(err, errlen, "%s", g_err[lib]);
    pthread_mutex_unlock(&g_lock);
    return rc;
}

bool lazy_loaded(enum lazy_lib lib)
{
    return __atomic_load_n(&lazy_state[lib], __ATOMIC_ACQUIRE) == LAZY_READY;
}

void lazy_need(enum lazy_lib lib)
{
    char err[sizeof g_err[0]];
    if (lazy_load(lib, err, sizeof err) == 0)
        return;
    fprintf(stderr, "chatopenaii: %s\n", err);
    exit(1);
}

/* Preload threads, joined by lazy_cleanup (guarded by g_lock). */
static pthread_t g_preload[LAZY_N];
static bool g_preload_joinable[LAZY_N];

static void *preload_main(void *arg)
{
    enum lazy_lib lib = (enum lazy_lib)(intptr_t)arg;
    char err[sizeof g_err[0]];
    if (lazy_load(lib, err, sizeof err) != 0)
        log_error("library not available", "detail", err, NULL);
    /* curl_global_init ran OpenSSL here: free this thread's OpenSSL state
     * (its error queue) now, not from a thread-exit destructor that may run
     * after OpenSSL's own cleanup at exit (a 904-byte leak report). */
    OPENSSL_thread_stop();
    return NULL;
}

void lazy_preload(enum lazy_lib lib)
{
    static int started[LAZY_N]; /* once per library, whatever the thread */
    if (__atomic_load_n(&lazy_state[lib], __ATOMIC_ACQUIRE) != LAZY_UNTRIED ||
        __atomic_exchange_n(&started[lib], 1, __ATOMIC_ACQ_REL))
        return;
    pthread_mutex_lock(&g_lock);
    if (pthread_create(&g_preload[lib], NULL, preload_main, (void *)(intptr_t)lib) == 0)
        g_preload_joinable[lib] = true;
    else
        __atomic_store_n(&started[lib], 0, __ATOMIC_RELEASE); /* the first call loads it then */
    pthread_mutex_unlock(&g_lock);
}

void lazy_curl_on_first_use(void (*fn)(void *arg), void *arg)
{
    pthread_mutex_lock(&g_lock);
    g_first_use_fn = fn;
    g_first_use_arg = arg;
    __atomic_store_n(&g_first_use_done, 0, __ATOMIC_RELEASE);
    pthread_mutex_unlock(&g_lock);
}

/* Called by the curl_easy_init wrapper once libcurl is loaded. fn runs
 * under the lock, so a concurrent first caller waits until it is done; fn
 * calls libcurl (curl_multi_init) but never curl_easy_init. */
void lazy_curl_first_use(void)
{
    if (__atomic_load_n(&g_first_use_done, __ATOMIC_ACQUIRE))
        return;
    pthread_mutex_lock(&g_lock);
    if (g_first_use_fn && !g_first_use_done) {
        g_first_use_fn(g_first_use_arg);
        __atomic_store_n(&g_first_use_done, 1, __ATOMIC_RELEASE);
    }
    pthread_mutex_unlock(&g_lock);
}

void lazy_cleanup(void)
{
    pthread_mutex_lock(&g_lock);
    while (lazy_state[LAZY_CURL] == LAZY_LOADING)
        pthread_cond_wait(&g_cond, &g_lock);
    /* A preload thread that has not started loading yet must not begin
     * now, while the process exits (its allocations would outlive the
     * cleanup below). */
    if (lazy_state[LAZY_CURL] == LAZY_UNTRIED) {
        snprintf(g_err[LAZY_CURL], sizeof g_err[LAZY_CURL], "not loaded: shutting down");
        __atomic_store_n(&lazy_state[LAZY_CURL], LAZY_FAILED, __ATOMIC_RELEASE);
    }
    bool curl = lazy_state[LAZY_CURL] == LAZY_READY;
    bool join[LAZY_N];
    for (int i = 0; i < LAZY_N; i++) {
        join[i] = g_preload_joinable[i];
        g_preload_joinable[i] = false;
    }
    pthread_mutex_unlock(&g_lock);
    /* every preload thread has loaded (or given up) by now: it ends at once */
    for (int i = 0; i < LAZY_N; i++)
        if (join[i])
            pthread_join(g_preload[i], NULL);
    if (curl)
        lazy_curl_global_cleanup();
}
