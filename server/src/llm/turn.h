/* turn.h - the generation engine. A turn streams one assistant message from
 * the provider, independent of any browser: it appends deltas to the
 * message, persists them in batches, and publishes numbered events that any
 * number of SSE subscribers can follow and resume with Last-Event-ID.
 *
 * States: CONNECTING -> STREAMING -> FINISHING -> DONE, with RETRY_WAIT
 * between attempts (429/5xx/transport failure before the first token).
 * Events: "delta" {content|refusal|tool_calls}, "usage", "retry", "error",
 * "snapshot" {message}, "done" {status, message}. "done" is published only
 * after the final state is stored, so a client that reads the chat after
 * "done" sees exactly what the stream showed.
 *
 * LIFETIME NOTES: the registry holds one reference to each turn from start
 * until LINGER after DONE (so late subscribers still get the replay and the
 * final event). Each in-flight store job, retry timer and title request
 * holds its own reference; subscribers do not (the turn closes them before
 * it can go away). The last turn_release frees everything.
 */
#ifndef COAI_TURN_H
#define COAI_TURN_H

#include <event2/http.h>
#include <jansson.h>

#include "../app.h"
#include "../store/store.h"
#include "provider.h"

/* What a turn needs to start; turn_start takes ownership of everything in it. */
struct turn_spec {
    struct store_message msg;  /* the assistant message row, already stored as "streaming" */
    char user_id[STORE_ID_LEN + 1];
    struct provider_conn pc;   /* empty (no key) = take a key from the gateway's pool */
    json_t *request;           /* the /chat/completions body to send */
    char *title_seed;          /* first user text when the chat needs a title, else NULL */
};

/* With Redis: every event of a turn is published, framed as SSE, on
 * "coai:turn:<message id>"; a message id published on TURN_STOP_CHANNEL
 * stops that turn on whichever instance runs it. */
#define TURN_STOP_CHANNEL "coai:turn-stop"

struct turn_registry *turns_new(struct app *app);
void turns_free(struct turn_registry *r);     /* after turns_shutdown and the pool drained */

void turn_start(struct app *app, struct turn_spec *spec);
/* Like turn_subscribe, for an event stream already open (the caller's
 * sse_conn becomes the turn's). false (conn untouched) when no turn for
 * msg_id runs or lingers here. */
struct sse_conn;
bool turn_attach(struct app *app, const char *msg_id, struct sse_conn *conn,
                 long long last_event_id);
/* Subscribe req (detached) to a live or lingering turn. last_event_id < 0
 * replays everything. Returns false (req untouched) if the turn is unknown. */
bool turn_subscribe(struct app *app, const char *msg_id, struct evhttp_request *req,
                    const char *req_id, const char *path, int64_t start_us,
                    long long last_event_id);
/* Explicit stop: 0 stopped now, 1 already finished, -1 unknown turn. */
int turn_stop(struct app *app, const char *msg_id);
/* Stop every running turn of a chat (the chat is being deleted). */
void turns_stop_chat(struct app *app, const char *chat_id);
/* Interrupt every running turn (SIGTERM): content is stored, status
 * "interrupted". */
void turns_shutdown(struct app *app);
/* Turns not yet DONE. */
size_t turns_active(struct app *app);
/* True when every turn is DONE and stored. */
bool turns_idle(struct app *app);

#endif
