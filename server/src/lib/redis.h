/* redis.h - an optional Redis client on the event loop (hiredis 0.14 async
 * API with its libevent adapter): commands with a bounded wait, Lua scripts
 * by SHA, and publish/subscribe on a second connection. Used for rate limits
 * shared by all instances and for cross-instance fan-out.
 *
 * THREADING: every function here runs on the loop thread of the event_base
 * given to redis_new, and every callback is called on that thread. Worker
 * threads must not touch a struct redis; they use their own synchronous
 * connections (see redis_url_parse and ratelimit.c).
 *
 * FAILURE: the loop never blocks on Redis. Two connections (commands, and
 * subscriptions) are made in the background and remade with a backoff
 * (100 ms doubling to 2 s) whenever Redis goes away; a connection that is
 * not ready within the command timeout is dropped and retried. A command
 * issued while the command connection is down fails fast: its callback gets
 * NULL on the next loop iteration. A command with no reply within the
 * command timeout (default 500 ms) gets NULL too, and the command connection
 * is remade (a late reply is then discarded). One warning is logged per
 * outage ("redis unreachable") and one line when it is back.
 *
 * URL: redis://[[user]:password@]host[:port][/db], default port 6379, db 0.
 * The password is sent with AUTH; the URL is never logged.
 */
#ifndef COAI_REDIS_H
#define COAI_REDIS_H

#include <event2/event.h>
#include <hiredis/hiredis.h>

#include "common.h"

struct redis;
struct redis_script;

/* Reply callback. reply is borrowed, valid only during the call (copy what
 * you keep); NULL means no reply: disconnected, timed out, or the client is
 * being freed. An error answer from Redis is a reply of type
 * REDIS_REPLY_ERROR, not NULL. */
typedef void (*redis_reply_fn)(void *arg, const redisReply *reply);

/* Message callback of a subscription. channel and data are borrowed for the
 * call. data == NULL (len 0) is not a message: it says that the subscription
 * is now active on Redis (after redis_subscribe, and again after every
 * reconnect), so messages published while it was down may have been missed
 * (pub/sub is at most once) and a listener may resynchronize. */
typedef void (*redis_message_fn)(void *arg, const char *channel, const char *data, size_t len);

/* Parse a redis:// URL. host, user and password are new heap strings the
 * caller frees (user, password NULL when absent); *port 1..65535, *db >= 0.
 * 0 ok, -1 malformed (nothing allocated). Thread-safe. */
int redis_url_parse(const char *url, char **host, int *port, int *db, char **user,
                    char **password);

/* New client for url on base; connects in the background (never blocks).
 * NULL only when url is malformed. Free with redis_free. */
struct redis *redis_new(struct event_base *base, const char *url);

/* Drops both connections and frees everything. Callbacks of commands still
 * waiting are called with NULL first (from inside redis_free); listeners get
 * no further calls. A callback that issues a command during redis_free gets
 * -1 back. Must not be called from inside a redis callback. NULL-safe. */
void redis_free(struct redis *r);

/* Per-command timeout in ms (default 500; minimum 10). */
void redis_set_timeout(struct redis *r, int timeout_ms);

/* True while the command connection is up and ready. */
bool redis_connected(const struct redis *r);

/* Send one command (argc strings argv[i] of lens[i] bytes; lens NULL means
 * strlen). The arguments are copied before return. Returns 0 and then cb is
 * called exactly once, later, never from inside this call (cb may be NULL:
 * fire and forget). Returns -1, cb never called, when r is NULL or being
 * freed or argc < 1. */
int redis_command_argv(struct redis *r, int argc, const char **argv, const size_t *lens,
                       redis_reply_fn cb, void *arg);

/* Register a Lua script (copied) with this client; it is loaded (SCRIPT
 * LOAD) on every connect. The handle is owned by r and freed by redis_free.
 * Never returns NULL for a non-NULL r. */
struct redis_script *redis_script_new(struct redis *r, const char *lua);

/* The name Redis gives a script: lowercase hex SHA-1 of lua (40 chars + NUL).
 * Thread-safe; for synchronous callers on workers. */
void redis_script_sha(const char *lua, char out[41]);

/* EVALSHA script with nkeys keys then the other arguments: argv[0..nkeys)
 * are KEYS, argv[nkeys..argc) are ARGV. If Redis answers NOSCRIPT (restart,
 * SCRIPT FLUSH) the command is sent again once as EVAL with the body, within
 * the same timeout. Same contract as redis_command_argv. */
int redis_eval_sha(struct redis *r, struct redis_script *s, int nkeys, int argc,
                   const char **argv, const size_t *lens, redis_reply_fn cb, void *arg);

/* PUBLISH data[0..len) on channel (fire and forget on the command
 * connection; dropped silently while Redis is down). 0 queued or dropped,
 * -1 when r is NULL or being freed. */
int redis_publish(struct redis *r, const char *channel, const void *data, size_t len);

/* Add a listener (cb, arg) to channel. Several listeners per channel, in this
 * process, are fine; Redis sees one SUBSCRIBE per channel, on the separate
 * subscription connection, renewed after every reconnect. cb is first
 * called with data == NULL once the subscription is active. 0 ok, -1 when r
 * is NULL or being freed. */
int redis_subscribe(struct redis *r, const char *channel, redis_message_fn cb, void *arg);

/* Remove the listener of channel registered with arg (the first one found;
 * at most one per call). The last listener gone, the channel is
 * unsubscribed. Safe from inside a message callback, also for the listener
 * being called: it gets no further call. 0 removed, -1 not found. */
int redis_unsubscribe(struct redis *r, const char *channel, void *arg);

#endif
