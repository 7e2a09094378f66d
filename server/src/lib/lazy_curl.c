/* lazy_curl.c - the libcurl functions the server calls, defined here under
 * their own names and forwarded to libcurl loaded by lazy.c (see lazy.h).
 *
 * The *_setopt functions are variadic; their one argument is read with the
 * type libcurl itself reads for that option (long, pointer, curl_off_t), as
 * curl's option numbering encodes, and passed on unchanged. Callers keep
 * curl's compile-time type checks: only this file is built without them. */
#define CURL_DISABLE_TYPECHECK 1
#include <curl/curl.h>

#include <stdarg.h>
#include <stdio.h>

#include "lazy_int.h"
#include "log.h"

#define CURL_FUNCS(X)                                                                           \
    X(curl_global_init) X(curl_global_cleanup) X(curl_easy_init) X(curl_easy_cleanup)           \
    X(curl_easy_setopt) X(curl_easy_getinfo) X(curl_easy_strerror) X(curl_slist_append)         \
    X(curl_slist_free_all) X(curl_multi_init) X(curl_multi_cleanup) X(curl_multi_setopt)        \
    X(curl_multi_add_handle) X(curl_multi_remove_handle) X(curl_multi_socket_action)            \
    X(curl_multi_assign) X(curl_multi_info_read) X(curl_share_init) X(curl_share_cleanup)       \
    X(curl_share_setopt)

enum { CURL_FUNCS(LAZY_ENUM) CURL_NFUNCS };
static const char *const names[] = {CURL_FUNCS(LAZY_NAME)};
static void *fns[CURL_NFUNCS];
const struct lazy_syms lazy_curl_syms = {names, fns, CURL_NFUNCS};

/* The real function, typed as the header declares it. */
#define F(name) ((__typeof__(&name))lazy_fn(LAZY_CURL, fns, I_##name))

int lazy_curl_after_load(char *err, size_t errlen)
{
    CURLcode rc = ((__typeof__(&curl_global_init))fns[I_curl_global_init])(CURL_GLOBAL_DEFAULT);
    if (rc != CURLE_OK) {
        snprintf(err, errlen, "libcurl: curl_global_init failed (%d)", (int)rc);
        return -1;
    }
    return 0;
}

void lazy_curl_global_cleanup(void)
{
    F(curl_global_cleanup)();
}

CURLcode curl_global_init(long flags)
{
    return F(curl_global_init)(flags);
}

void curl_global_cleanup(void)
{
    F(curl_global_cleanup)();
}

/* The entry point of every transfer: a missing libcurl fails the request
 * (NULL, as on out-of-memory) instead of the process. */
CURL *curl_easy_init(void)
{
    if (!lazy_loaded(LAZY_CURL)) {
        char err[320];
        if (lazy_load(LAZY_CURL, err, sizeof err) != 0) {
            log_error("provider request failed", "detail", err, NULL);
            return NULL;
        }
    }
    lazy_curl_first_use();
    return F(curl_easy_init)();
}

/* The cleanup functions take NULL as libcurl does, without loading it:
 * cleanup paths run whether or not a transfer was ever made. */
void curl_easy_cleanup(CURL *h)
{
    if (!h)
        return;
    F(curl_easy_cleanup)(h);
}

CURLcode curl_easy_setopt(CURL *h, CURLoption opt, ...)
{
    va_list ap;
    va_start(ap, opt);
    CURLcode rc;
    if (opt < CURLOPTTYPE_OBJECTPOINT)
        rc = F(curl_easy_setopt)(h, opt, va_arg(ap, long));
    else if (opt < CURLOPTTYPE_OFF_T) /* objects and callbacks */
        rc = F(curl_easy_setopt)(h, opt, va_arg(ap, void *));
    else if (opt < CURLOPTTYPE_BLOB)
        rc = F(curl_easy_setopt)(h, opt, va_arg(ap, curl_off_t));
    else
        rc = F(curl_easy_setopt)(h, opt, va_arg(ap, void *));
    va_end(ap);
    return rc;
}

CURLcode curl_easy_getinfo(CURL *h, CURLINFO info, ...)
{
    va_list ap;
    va_start(ap, info);
    CURLcode rc = F(curl_easy_getinfo)(h, info, va_arg(ap, void *)); /* always a pointer */
    va_end(ap);
    return rc;
}

const char *curl_easy_strerror(CURLcode code)
{
    return F(curl_easy_strerror)(code);
}

struct curl_slist *curl_slist_append(struct curl_slist *list, const char *s)
{
    return F(curl_slist_append)(list, s);
}

void curl_slist_free_all(struct curl_slist *list)
{
    if (!list)
        return;
    F(curl_slist_free_all)(list);
}

CURLM *curl_multi_init(void)
{
    return F(curl_multi_init)();
}

CURLMcode curl_multi_cleanup(CURLM *m)
{
    if (!m)
        return CURLM_BAD_HANDLE;
    return F(curl_multi_cleanup)(m);
}

CURLMcode curl_multi_setopt(CURLM *m, CURLMoption opt, ...)
{
    va_list ap;
    va_start(ap, opt);
    CURLMcode rc;
    if (opt < CURLOPTTYPE_OBJECTPOINT)
        rc = F(curl_multi_setopt)(m, opt, va_arg(ap, long));
    else if (opt < CURLOPTTYPE_OFF_T)
        rc = F(curl_multi_setopt)(m, opt, va_arg(ap, void *));
    else
        rc = F(curl_multi_setopt)(m, opt, va_arg(ap, curl_off_t));
    va_end(ap);
    return rc;
}

CURLMcode curl_multi_add_handle(CURLM *m, CURL *h)
{
    return F(curl_multi_add_handle)(m, h);
}

CURLMcode curl_multi_remove_handle(CURLM *m, CURL *h)
{
    return F(curl_multi_remove_handle)(m, h);
}

CURLMcode curl_multi_socket_action(CURLM *m, curl_socket_t s, int ev_bitmask, int *running)
{
    return F(curl_multi_socket_action)(m, s, ev_bitmask, running);
}

CURLMcode curl_multi_assign(CURLM *m, curl_socket_t s, void *sockp)
{
    return F(curl_multi_assign)(m, s, sockp);
}

CURLMsg *curl_multi_info_read(CURLM *m, int *msgs_in_queue)
{
    return F(curl_multi_info_read)(m, msgs_in_queue);
}

CURLSH *curl_share_init(void)
{
    return F(curl_share_init)();
}

CURLSHcode curl_share_cleanup(CURLSH *sh)
{
    if (!sh)
        return CURLSHE_INVALID;
    return F(curl_share_cleanup)(sh);
}

CURLSHcode curl_share_setopt(CURLSH *sh, CURLSHoption opt, ...)
{
    va_list ap;
    va_start(ap, opt);
    CURLSHcode rc;
    if (opt == CURLSHOPT_SHARE || opt == CURLSHOPT_UNSHARE) /* read as int by libcurl */
        rc = F(curl_share_setopt)(sh, opt, va_arg(ap, int));
    else
        rc = F(curl_share_setopt)(sh, opt, va_arg(ap, void *));
    va_end(ap);
    return rc;
}
