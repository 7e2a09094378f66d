/* security.h - response security headers (CSP and friends), CORS with an
 * explicit allow-list, client IP and scheme behind trusted proxies, and TLS
 * termination (certificate reloaded on SIGHUP). State is set once at start
 * by security_init and read by the loop thread. */
#ifndef COAI_SECURITY_H
#define COAI_SECURITY_H

#include <event2/http.h>

#include "../app.h"

int security_init(struct app *app, char *err, size_t errlen);
void security_cleanup(void);

/* Security headers for every response (HSTS when the request came over TLS,
 * directly or through a trusted proxy). */
void security_headers(struct evhttp_request *req);
/* The request's Origin if it is in the allow-list (borrowed), else NULL. */
const char *security_cors_origin(struct evhttp_request *req);
/* CORS headers for an allowed origin. credentials: cookie API (not /v1). */
void security_cors_headers(struct evhttp_request *req, const char *origin, bool credentials);
/* Answer an OPTIONS preflight (always replies). Returns the status sent. */
int security_preflight(struct evhttp_request *req, const char *req_id);
/* Client address: the peer, or X-Forwarded-For's last untrusted hop when the
 * peer is a trusted proxy. Heap string. */
char *security_client_ip(struct evhttp_request *req);
/* Whether the request reached us over HTTPS. */
bool security_is_https(struct evhttp_request *req);
bool security_tls_enabled(void);
/* Reload the certificate and key (SIGHUP); existing connections keep theirs. */
int security_tls_reload(char *err, size_t errlen);
/* The bufferevent of a new connection: TLS when CHATOPENAII_TLS_CERT is set,
 * else NULL (evhttp then makes a plain one). For evhttp_set_bevcb. */
struct bufferevent *security_tls_bev(struct event_base *base);

/* End a chunked reply (evhttp_send_reply_end) safely over native TLS too.
 * libevent 2.1's OpenSSL bufferevent runs its write callback deferred and
 * does not look at the output buffer again when it runs: evhttp then takes
 * the reply as sent (and closes a Connection: close socket) while its last
 * chunks are still queued, and they are lost. Over TLS the end therefore
 * waits until the output buffer has stayed empty across a loop iteration
 * (so any pending write callback has run); over plain HTTP it is immediate.
 * The request may be detached meanwhile (client gone): it is freed all the
 * same. The caller must have cleared its close callback. */
void security_reply_end(struct evhttp_request *req);
/* End every waiting reply now (shutdown, before evhttp_free). */
void security_reply_end_flush(void);

#endif
