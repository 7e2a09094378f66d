/* store.c - the public face of store.h: picks a back end from the database
 * URL and forwards every call through the handle's store_ops table. Also
 * holds the back-end-independent parts: the *_clear / *_list_free helpers
 * and the error buffer.
 */
#include "store_int.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

void store_set_error(struct store *st, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(st->errmsg, sizeof st->errmsg, fmt, ap);
    va_end(ap);
}

static void store_open_error(char *err, size_t errlen, const char *msg)
{
    if (err && errlen)
        snprintf(err, errlen, "%s", msg);
}

/* ---- lifecycle ----------------------------------------------------------- */

struct store *store_open(const char *url, char *err, size_t errlen)
{
    const char *path;

    if (!url || !*url) {
        store_open_error(err, errlen, "empty database url");
        return NULL;
    }
    if (strncmp(url, "sqlite:", 7) == 0) {
        path = url + 7;
    } else if (strncmp(url, "postgres://", 11) == 0 || strncmp(url, "postgresql://", 13) == 0) {
        return store_pg_open(url, err, errlen);
    } else if (strstr(url, "://")) {
        store_open_error(err, errlen, "unknown database url scheme");
        return NULL;
    } else {
        path = url;
    }
    if (!*path) {
        store_open_error(err, errlen, "empty sqlite path");
        return NULL;
    }
    return store_sqlite_open(path, err, errlen);
}

void store_close(struct store *st)
{
    if (st)
        st->ops->close(st);
}

const char *store_errmsg(struct store *st)
{
    return st ? st->errmsg : "no store";
}

const char *store_backend(struct store *st)
{
    return st->ops->name;
}

enum app_err store_migrate(struct store *st, int *from, int *to)
{
    return st->ops->migrate(st, from, to);
}

int store_schema_version(struct store *st)
{
    return st->ops->schema_version(st);
}

enum app_err store_ping(struct store *st)
{
    return st->ops->ping(st);
}

enum app_err store_begin(struct store *st)
{
    return st->ops->begin(st);
}

enum app_err store_commit(struct store *st)
{
    return st->ops->commit(st);
}

void store_rollback(struct store *st)
{
    st->ops->rollback(st);
}

/* ---- users --------------------------------------------------------------- */

void store_user_clear(struct store_user *u)
{
    if (!u)
        return;
    free(u->email);
    free(u->name);
    if (u->password_hash) {
        secure_wipe(u->password_hash, strlen(u->password_hash));
        free(u->password_hash);
    }
    memset(u, 0, sizeof *u);
}

enum app_err store_user_create(struct store *st, struct store_user *u, bool first_is_admin)
{
    return st->ops->user_create(st, u, first_is_admin);
}

enum app_err store_user_get(struct store *st, const char *id, struct store_user *out)
{
    return st->ops->user_get(st, id, out);
}

enum app_err store_user_get_by_email(struct store *st, const char *email, struct store_user *out)
{
    return st->ops->user_get_by_email(st, email, out);
}

enum app_err store_user_set_password(struct store *st, const char *id, const char *password_hash)
{
    return st->ops->user_set_password(st, id, password_hash);
}

enum app_err store_user_count(struct store *st, int64_t *out)
{
    return st->ops->user_count(st, out);
}

/* ---- sessions ------------------------------------------------------------ */

void store_session_clear(struct store_session *s)
{
    if (!s)
        return;
    free(s->user_agent);
    free(s->ip);
    memset(s, 0, sizeof *s);
}

void store_session_list_free(struct store_session *list, size_t n)
{
    if (!list)
        return;
    for (size_t i = 0; i < n; i++)
        store_session_clear(&list[i]);
    free(list);
}

enum app_err store_session_create(struct store *st, struct store_session *s)
{
    return st->ops->session_create(st, s);
}

enum app_err store_session_get_by_hash(struct store *st, const char *token_hash, int64_t now,
                                       struct store_session *out)
{
    return st->ops->session_get_by_hash(st, token_hash, now, out);
}

enum app_err store_session_touch(struct store *st, const char *id, int64_t now, int64_t expires_at)
{
    return st->ops->session_touch(st, id, now, expires_at);
}

enum app_err store_session_list(struct store *st, const char *user_id, int64_t now,
                                struct store_session **out, size_t *n)
{
    return st->ops->session_list(st, user_id, now, out, n);
}

enum app_err store_session_delete(struct store *st, const char *user_id, const char *id)
{
    return st->ops->session_delete(st, user_id, id);
}

enum app_err store_session_delete_all(struct store *st, const char *user_id, const char *keep_id)
{
    return st->ops->session_delete_all(st, user_id, keep_id);
}

enum app_err store_session_purge(struct store *st, int64_t now, int64_t *n)
{
    return st->ops->session_purge(st, now, n);
}

/* ---- provider connections ------------------------------------------------ */

void store_conn_clear(struct store_conn *c)
{
    if (!c)
        return;
    free(c->name);
    free(c->base_url);
    free(c->key_ct);
    memset(c, 0, sizeof *c);
}

void store_conn_list_free(struct store_conn *list, size_t n)
{
    if (!list)
        return;
    for (size_t i = 0; i < n; i++)
        store_conn_clear(&list[i]);
    free(list);
}

enum app_err store_conn_upsert(struct store *st, struct store_conn *c)
{
    return st->ops->conn_upsert(st, c);
}

enum app_err store_conn_get_default(struct store *st, const char *owner_id, struct store_conn *out)
{
    return st->ops->conn_get_default(st, owner_id, out);
}

enum app_err store_conn_delete_default(struct store *st, const char *owner_id)
{
    return st->ops->conn_delete_default(st, owner_id);
}

enum app_err store_conn_list_all(struct store *st, struct store_conn **out, size_t *n)
{
    return st->ops->conn_list_all(st, out, n);
}

enum app_err store_conn_set_key(struct store *st, const char *id, const unsigned char *ct,
                                size_t ct_len, int key_version)
{
    return st->ops->conn_set_key(st, id, ct, ct_len, key_version);
}

/* ---- chats --------------------------------------------------------------- */

void store_chat_clear(struct store_chat *c)
{
    if (!c)
        return;
    free(c->title);
    free(c->model);
    free(c->system_prompt);
    free(c->params);
    memset(c, 0, sizeof *c);
}

void store_chat_list_free(struct store_chat *list, size_t n)
{
    if (!list)
        return;
    for (size_t i = 0; i < n; i++)
        store_chat_clear(&list[i]);
    free(list);
}

enum app_err store_chat_create(struct store *st, struct store_chat *c)
{
    return st->ops->chat_create(st, c);
}

enum app_err store_chat_get(struct store *st, const char *owner_id, const char *id,
                            struct store_chat *out)
{
    return st->ops->chat_get(st, owner_id, id, out);
}

enum app_err store_chat_list(struct store *st, const char *owner_id, int limit,
                             int64_t before_ts, const char *before_id,
                             struct store_chat **out, size_t *n)
{
    return st->ops->chat_list(st, owner_id, limit, before_ts, before_id, out, n);
}

enum app_err store_chat_update(struct store *st, const char *owner_id, const char *id,
                               const struct store_chat_patch *p)
{
    return st->ops->chat_update(st, owner_id, id, p);
}

enum app_err store_chat_delete(struct store *st, const char *owner_id, const char *id)
{
    return st->ops->chat_delete(st, owner_id, id);
}

enum app_err store_chat_touch(struct store *st, const char *id, int64_t now)
{
    return st->ops->chat_touch(st, id, now);
}

/* ---- messages ------------------------------------------------------------ */

void store_message_clear(struct store_message *m)
{
    if (!m)
        return;
    free(m->content);
    free(m->model);
    free(m->error);
    memset(m, 0, sizeof *m);
}

void store_message_list_free(struct store_message *list, size_t n)
{
    if (!list)
        return;
    for (size_t i = 0; i < n; i++)
        store_message_clear(&list[i]);
    free(list);
}

enum app_err store_message_create(struct store *st, struct store_message *m)
{
    return st->ops->message_create(st, m);
}

enum app_err store_message_get(struct store *st, const char *owner_id, const char *id,
                               struct store_message *out)
{
    return st->ops->message_get(st, owner_id, id, out);
}

enum app_err store_message_list(struct store *st, const char *chat_id,
                                struct store_message **out, size_t *n)
{
    return st->ops->message_list(st, chat_id, out, n);
}

enum app_err store_message_tail(struct store *st, const char *chat_id, const char *leaf_id, int n,
                                struct store_message **out, size_t *count, int64_t *total)
{
    return st->ops->message_tail(st, chat_id, leaf_id && *leaf_id ? leaf_id : NULL, n, out, count,
                                 total);
}

enum app_err store_message_path(struct store *st, const char *id,
                                struct store_message **out, size_t *n)
{
    return st->ops->message_path(st, id, out, n);
}

enum app_err store_message_update(struct store *st, const char *id, const char *content,
                                  const char *status, const char *error,
                                  int64_t prompt_tokens, int64_t completion_tokens)
{
    return st->ops->message_update(st, id, content, status, error, prompt_tokens,
                                   completion_tokens);
}

enum app_err store_message_newest_leaf(struct store *st, const char *id, char out[STORE_ID_LEN + 1])
{
    return st->ops->message_newest_leaf(st, id, out);
}

enum app_err store_message_mark_interrupted(struct store *st, int64_t *n)
{
    return st->ops->message_mark_interrupted(st, n);
}

enum app_err store_lease_create(struct store *st, const char *message_id, const char *instance_id,
                                int64_t expires_at)
{
    return st->ops->lease_create(st, message_id, instance_id, expires_at);
}

enum app_err store_lease_renew(struct store *st, const char *instance_id, int64_t expires_at,
                               char (**stop_ids)[STORE_ID_LEN + 1], size_t *n)
{
    *stop_ids = NULL;
    *n = 0;
    return st->ops->lease_renew(st, instance_id, expires_at, stop_ids, n);
}

enum app_err store_lease_progress(struct store *st, const char *message_id, int64_t events)
{
    return st->ops->lease_progress(st, message_id, events);
}

enum app_err store_lease_delete(struct store *st, const char *message_id)
{
    return st->ops->lease_delete(st, message_id);
}

enum app_err store_lease_request_stop(struct store *st, const char *message_id)
{
    return st->ops->lease_request_stop(st, message_id);
}

enum app_err store_lease_get(struct store *st, const char *message_id, struct store_lease *out)
{
    memset(out, 0, sizeof *out);
    return st->ops->lease_get(st, message_id, out);
}

enum app_err store_lease_expire(struct store *st, int64_t now, const char *dead_instance,
                                int64_t *n)
{
    if (n)
        *n = 0;
    return st->ops->lease_expire(st, now, dead_instance ? dead_instance : "", n);
}

/* ==== gateway (schema v2) ================================================== */

/* ---- API tokens ---------------------------------------------------------- */

/* Only the hash of a token is ever stored or read: nothing here is secret. */
void store_token_clear(struct store_token *t)
{
    if (!t)
        return;
    free(t->name);
    free(t->models);
    memset(t, 0, sizeof *t);
}

void store_token_list_free(struct store_token *list, size_t n)
{
    if (!list)
        return;
    for (size_t i = 0; i < n; i++)
        store_token_clear(&list[i]);
    free(list);
}

enum app_err store_token_create(struct store *st, struct store_token *t)
{
    return st->ops->token_create(st, t);
}

enum app_err store_token_get_by_hash(struct store *st, const char *token_hash, int64_t now,
                                     struct store_token *out)
{
    return st->ops->token_get_by_hash(st, token_hash, now, out);
}

enum app_err store_token_list(struct store *st, const char *user_id, struct store_token **out,
                              size_t *n)
{
    return st->ops->token_list(st, user_id, out, n);
}

enum app_err store_token_revoke(struct store *st, const char *user_id, const char *id, int64_t now)
{
    return st->ops->token_revoke(st, user_id, id, now);
}

enum app_err store_token_touch(struct store *st, const char *id, int64_t now)
{
    return st->ops->token_touch(st, id, now);
}

/* ---- key pool ------------------------------------------------------------ */

void store_pool_key_clear(struct store_pool_key *k)
{
    if (!k)
        return;
    free(k->name);
    free(k->base_url);
    free(k->key_ct);
    free(k->disabled_reason);
    memset(k, 0, sizeof *k);
}

void store_pool_key_list_free(struct store_pool_key *list, size_t n)
{
    if (!list)
        return;
    for (size_t i = 0; i < n; i++)
        store_pool_key_clear(&list[i]);
    free(list);
}

enum app_err store_pool_key_create(struct store *st, struct store_pool_key *k)
{
    return st->ops->pool_key_create(st, k);
}

enum app_err store_pool_key_list(struct store *st, struct store_pool_key **out, size_t *n)
{
    return st->ops->pool_key_list(st, out, n);
}

enum app_err store_pool_key_get(struct store *st, const char *id, struct store_pool_key *out)
{
    return st->ops->pool_key_get(st, id, out);
}

enum app_err store_pool_key_update(struct store *st, const struct store_pool_key *k)
{
    return st->ops->pool_key_update(st, k);
}

enum app_err store_pool_key_set_key(struct store *st, const char *id, const unsigned char *ct,
                                    size_t ct_len, int key_version, const char *last4)
{
    return st->ops->pool_key_set_key(st, id, ct, ct_len, key_version, last4);
}

enum app_err store_pool_key_delete(struct store *st, const char *id)
{
    return st->ops->pool_key_delete(st, id);
}

/* ---- usage records ------------------------------------------------------- */

void store_usage_clear(struct store_usage *u)
{
    if (!u)
        return;
    free(u->model);
    memset(u, 0, sizeof *u);
}

void store_usage_rows_free(struct store_usage_row *rows, size_t n)
{
    if (!rows)
        return;
    for (size_t i = 0; i < n; i++) {
        free(rows[i].model);
        free(rows[i].email);
    }
    free(rows);
}

enum app_err store_usage_insert(struct store *st, struct store_usage *u)
{
    return st->ops->usage_insert(st, u);
}

enum app_err store_usage_report(struct store *st, int64_t from, int64_t to, const char *user_id,
                                struct store_usage_row **out, size_t *n)
{
    return st->ops->usage_report(st, from, to, user_id, out, n);
}

enum app_err store_usage_totals(struct store *st, const char *user_id, int64_t since,
                                int64_t *tokens, int64_t *cost_micros)
{
    return st->ops->usage_totals(st, user_id, since, tokens, cost_micros);
}

enum app_err store_usage_key_totals(struct store *st, const char *key_id, int64_t since,
                                    int64_t *requests, int64_t *tokens, int64_t *errors)
{
    return st->ops->usage_key_totals(st, key_id, since, requests, tokens, errors);
}

/* ---- prices -------------------------------------------------------------- */

void store_price_list_free(struct store_price *list, size_t n)
{
    if (!list)
        return;
    for (size_t i = 0; i < n; i++)
        free(list[i].model);
    free(list);
}

enum app_err store_price_list(struct store *st, struct store_price **out, size_t *n)
{
    return st->ops->price_list(st, out, n);
}

enum app_err store_price_upsert(struct store *st, const struct store_price *p)
{
    return st->ops->price_upsert(st, p);
}

enum app_err store_price_delete(struct store *st, const char *model)
{
    return st->ops->price_delete(st, model);
}

/* ---- per-user limits ----------------------------------------------------- */

enum app_err store_user_limits_get(struct store *st, const char *user_id,
                                   struct store_user_limits *out)
{
    return st->ops->user_limits_get(st, user_id, out);
}

enum app_err store_user_limits_set(struct store *st, const struct store_user_limits *l)
{
    return st->ops->user_limits_set(st, l);
}

enum app_err store_user_list(struct store *st, struct store_user **out, size_t *n)
{
    return st->ops->user_list(st, out, n);
}

void store_user_list_free(struct store_user *list, size_t n)
{
    if (!list)
        return;
    for (size_t i = 0; i < n; i++)
        store_user_clear(&list[i]);
    free(list);
}
