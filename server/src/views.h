/* views.h - the JSON shapes of our resources, in one place, so the REST
 * handlers and the live stream describe a message identically. Every
 * function returns a new reference. Secrets never enter these shapes. */
#ifndef COAI_VIEWS_H
#define COAI_VIEWS_H

#include <jansson.h>

#include "store/store.h"

json_t *view_user(const struct store_user *u);
json_t *view_session(const struct store_session *s, bool current);
json_t *view_chat(const struct store_chat *c);
json_t *view_message(const struct store_message *m);
/* Append the same JSON object as view_message to b, copying the stored
 * content and error JSON text as they are instead of parsing and
 * re-serializing them (the stores only hold valid JSON there). For long
 * chats. -1 when b's cap is reached. */
struct buf;
int view_message_append(struct buf *b, const struct store_message *m);
/* The same JSON object as view_chat, appended to b (stored params text
 * copied as it is). For the chat list, the most frequent request. -1 when
 * b's cap is reached. */
int view_chat_append(struct buf *b, const struct store_chat *c);
/* prefix, then the messages as a JSON array (view_message_append), then
 * suffix, as one new string; NULL when it would pass max bytes. */
char *view_messages_text(const char *prefix, const struct store_message *msgs, size_t n,
                         const char *suffix, size_t max);
/* The connection without its key: base_url, key_last4, has_key, source. */
json_t *view_connection(const struct store_conn *c);
/* Parse stored JSON text; NULL/invalid text gives fallback (may be NULL = json null). */
json_t *view_json_text(const char *text, json_t *fallback);

#endif
