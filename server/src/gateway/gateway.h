/* gateway.h - the OpenAI-compatible /v1 endpoint: any OpenAI SDK can use
 * ChatOpenAII as its base URL with an app API token. Requests are relayed to
 * the provider with their bodies intact, streamed chunk for chunk, while the
 * gateway applies token auth, model allow-lists, rate limits, monthly
 * budgets, the key pool with failover, and usage/cost accounting.
 *
 * Everything here runs on the loop thread; store access goes through the
 * worker pool. Hot-path state (token principals, buckets, pool keys, prices)
 * lives in memory and is refreshed from the store.
 */
#ifndef COAI_GATEWAY_H
#define COAI_GATEWAY_H

#include <event2/http.h>

#include "../app.h"
#include "../llm/provider.h"
#include "../store/store.h"

struct gateway;

/* Creates the gateway and loads pool keys and prices (through the pool). */
struct gateway *gateway_new(struct app *app);
void gateway_free(struct gateway *gw);

/* Handle one /v1/... request (path starts with "/v1/"). Always replies. */
void gateway_handle(struct app *app, struct evhttp_request *req, const char *path,
                    const char *req_id, int64_t start_us);

/* Shutdown: end every relayed request still talking to the provider. */
void gateway_shutdown(struct app *app);

/* Forget cached principals: of one token (token_id), of one user (user_id),
 * or all (both NULL). Called after revocations and limit changes. */
void gateway_invalidate(struct app *app, const char *token_id, const char *user_id);
/* Reload pool keys / prices from the store (after admin edits). */
void gateway_reload(struct app *app);

/* Key pool for web turns: a healthy pool key for a user without their own
 * connection. Returns false if none. pc receives copies (caller clears);
 * key_id gets the pool key id. */
bool gateway_pool_pick(struct app *app, struct provider_conn *pc, char key_id[STORE_ID_LEN + 1]);
/* Thread-safe: whether any pool key is enabled (workers use it to decide if
 * a user without a key can still chat). */
bool gateway_pool_available(struct app *app);
/* Report the outcome of a request made with pool key key_id (web turns):
 * status 401 disables it, 429 cools it down for retry_after_s. */
void gateway_pool_report(struct app *app, const char *key_id, long status, long retry_after_s,
                         int64_t tokens);

/* Cost in micro-dollars of a usage from the in-memory price table (longest
 * model-prefix match; 0 when the model has no price). */
int64_t gateway_cost(struct app *app, const char *model, int64_t prompt, int64_t cached,
                     int64_t completion);
/* Record a usage row (through the pool) and count it against the user's
 * budget and token-per-minute buckets. u is copied. */
void gateway_record(struct app *app, const struct store_usage *u);
/* Hand every waiting usage row to the pool now (shutdown calls it before the
 * pool drains). NULL-safe. */
void gateway_usage_flush(struct gateway *gw);

/* Live health of pool keys as JSON (array, new reference) for the admin view. */
json_t *gateway_pool_health(struct app *app);

#endif
