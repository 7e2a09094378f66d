/* provider.h - talking to an OpenAI-compatible provider: easy-handle set-up
 * shared by streaming turns and one-shot requests, one-shot JSON requests
 * (model list, titles), and turning provider errors into our error JSON. */
#ifndef COAI_PROVIDER_H
#define COAI_PROVIDER_H

#include <curl/curl.h>
#include <jansson.h>

#include "../app.h"

/* A resolved connection. Both strings owned; api_key is a secret (wiped by
 * provider_conn_clear). */
struct provider_conn {
    char *base_url;  /* without trailing slash, e.g. https://api.openai.com/v1 */
    char *api_key;
    bool from_user;  /* the user's own connection (else the server default) */
};
void provider_conn_clear(struct provider_conn *pc);

/* New easy handle for base_url + path with auth and our timeouts. body may
 * be NULL (GET). *hdrs receives the header list to free after the transfer. */
CURL *provider_easy_new(struct app *app, const struct provider_conn *pc, const char *path,
                        const char *body, bool stream, struct curl_slist **hdrs);

/* One-shot request; cb runs on the loop with the HTTP status (0 if the
 * transfer failed) and the body (capped at LIMIT_UPSTREAM_BODY), or err. */
typedef void (*provider_fetch_cb)(void *arg, long status, const char *body, size_t len,
                                  const char *err);
void provider_fetch(struct app *app, const struct provider_conn *pc, const char *path,
                    const char *body, provider_fetch_cb cb, void *arg);

/* Shutdown: cancel every one-shot request; their callbacks run now with
 * status 0 and err "cancelled". */
void provider_fetch_cancel_all(struct app *app);

/* Our error object for a provider answer with HTTP status >= 400: picks a
 * stable code (provider_auth, model_not_found, provider_rate_limited,
 * context_length_exceeded, provider_bad_request, provider_error) and keeps
 * the provider's message. New reference. */
json_t *provider_error_json(long status, const char *body, size_t len);
/* Our error object for a transport failure (timeout, refused, dropped). */
json_t *provider_transport_error_json(CURLcode rc, bool got_bytes);

#endif
