/* lazy.h - libcurl, libpq, hiredis and libssl (with libevent_openssl),
 * loaded with dlopen when first needed.
 *
 * The binary links none of the three: together they pull in about thirty
 * shared libraries (GnuTLS, Kerberos, LDAP, libssh2, ...) that cost ~15 ms
 * of start-up and ~4 MB of resident memory, while a SQLite instance needs
 * libpq never, hiredis only with CHATOPENAII_REDIS_URL, libssl only with
 * CHATOPENAII_TLS_CERT, and libcurl only once a provider request is made.
 *
 * lazy_curl.c, lazy_pq.c, lazy_redis.c and lazy_ssl.c define the functions the server
 * calls under the libraries' own names (curl_easy_setopt, PQexec, ...);
 * each forwards to the real function found with dlsym, so the rest of the
 * code includes <curl/curl.h>, <libpq-fe.h> or <hiredis/hiredis.h> and
 * calls them as usual. A function the server starts using must be added
 * there (the link fails until it is).
 *
 * The first call of any of them loads its library. Entry points where a
 * missing library can be reported load it explicitly first: store_pg_open
 * (PostgreSQL store: a clear error at start), redis_new (Redis), and
 * curl_easy_init, which returns NULL when libcurl cannot be loaded (the
 * provider request fails like any other that cannot start). Any other call
 * that finds its library missing prints why and exits.
 *
 * CHATOPENAII_LIBCURL, CHATOPENAII_LIBPQ and CHATOPENAII_LIBHIREDIS name
 * another file to load (tests use a missing one); likewise
 * CHATOPENAII_LIBSSL and CHATOPENAII_LIBEVENT_OPENSSL.
 */
#ifndef COAI_LAZY_H
#define COAI_LAZY_H

#include <stdbool.h>
#include <stddef.h>

enum lazy_lib { LAZY_CURL, LAZY_PQ, LAZY_REDIS, LAZY_SSL, LAZY_EVENT_SSL, LAZY_N };

/* Loads lib and resolves every function the server uses from it (libcurl:
 * also curl_global_init). Blocking; thread-safe; loads once. Returns 0, or
 * -1 with a message that names the file and the package in err. A failure
 * is final: later calls fail with the same message. */
int lazy_load(enum lazy_lib lib, char *err, size_t errlen);

/* True once lazy_load(lib) has succeeded. Never blocks. */
bool lazy_loaded(enum lazy_lib lib);

/* Starts loading lib on a short-lived thread of its own and returns at
 * once; a no-op when lib is loaded or being loaded. Whoever calls into lib
 * before that finishes waits for it instead of loading it a second time.
 * For callers on the event loop that will need the library soon. */
void lazy_preload(enum lazy_lib lib);

/* fn(arg) runs once, the first time curl_easy_init succeeds, on the thread
 * that calls it and before it returns; the server makes its libcurl multi
 * handle there (on the loop: only the loop makes transfers). */
void lazy_curl_on_first_use(void (*fn)(void *arg), void *arg);

/* curl_global_cleanup if libcurl was loaded (waits for a preload still
 * running). The libraries stay mapped: nothing is unloaded. */
void lazy_cleanup(void);

#endif
