/* store_int.h - private declarations shared by store.c and the back ends.
 *
 * A back end fills one struct store_ops and embeds struct store as the first
 * member of its own handle; store.c only dispatches through st->ops. Never
 * include this header outside src/store/ (tests excepted).
 */
#ifndef COAI_STORE_INT_H
#define COAI_STORE_INT_H

#include "store.h"

#define STORE_ERRMSG_LEN 512

/* The common head of every back end's handle. */
struct store {
    const struct store_ops *ops;
    char errmsg[STORE_ERRMSG_LEN]; /* last error detail, NUL-terminated */
};

/* One entry per public function of store.h that touches the database; the
 * semantics are those documented there. */
struct store_ops {
    const char *name; /* "sqlite" | "postgres" */
    void (*close)(struct store *st);

    enum app_err (*migrate)(struct store *st, int *from, int *to);
    int (*schema_version)(struct store *st);
    enum app_err (*ping)(struct store *st);
    enum app_err (*begin)(struct store *st);
    enum app_err (*commit)(struct store *st);
    void (*rollback)(struct store *st);

    enum app_err (*user_create)(struct store *st, struct store_user *u, bool first_is_admin);
    enum app_err (*user_get)(struct store *st, const char *id, struct store_user *out);
    enum app_err (*user_get_by_email)(struct store *st, const char *email, struct store_user *out);
    enum app_err (*user_set_password)(struct store *st, const char *id, const char *password_hash);
    enum app_err (*user_count)(struct store *st, int64_t *out);

    enum app_err (*session_create)(struct store *st, struct store_session *s);
    enum app_err (*session_get_by_hash)(struct store *st, const char *token_hash, int64_t now,
                                        struct store_session *out);
    enum app_err (*session_touch)(struct store *st, const char *id, int64_t now, int64_t expires_at);
    enum app_err (*session_list)(struct store *st, const char *user_id, int64_t now,
                                 struct store_session **out, size_t *n);
    enum app_err (*session_delete)(struct store *st, const char *user_id, const char *id);
    enum app_err (*session_delete_all)(struct store *st, const char *user_id, const char *keep_id);
    enum app_err (*session_purge)(struct store *st, int64_t now, int64_t *n);

    enum app_err (*conn_upsert)(struct store *st, struct store_conn *c);
    enum app_err (*conn_get_default)(struct store *st, const char *owner_id, struct store_conn *out);
    enum app_err (*conn_delete_default)(struct store *st, const char *owner_id);
    enum app_err (*conn_list_all)(struct store *st, struct store_conn **out, size_t *n);
    enum app_err (*conn_set_key)(struct store *st, const char *id, const unsigned char *ct,
                                 size_t ct_len, int key_version);

    enum app_err (*chat_create)(struct store *st, struct store_chat *c);
    enum app_err (*chat_get)(struct store *st, const char *owner_id, const char *id,
                             struct store_chat *out);
    enum app_err (*chat_list)(struct store *st, const char *owner_id, int limit,
                              int64_t before_ts, const char *before_id,
                              struct store_chat **out, size_t *n);
    enum app_err (*chat_update)(struct store *st, const char *owner_id, const char *id,
                                const struct store_chat_patch *p);
    enum app_err (*chat_delete)(struct store *st, const char *owner_id, const char *id);
    enum app_err (*chat_touch)(struct store *st, const char *id, int64_t now);

    enum app_err (*message_create)(struct store *st, struct store_message *m);
    enum app_err (*message_get)(struct store *st, const char *owner_id, const char *id,
                                struct store_message *out);
    enum app_err (*message_list)(struct store *st, const char *chat_id,
                                 struct store_message **out, size_t *n);
    /* leaf_id is NULL (never "") when the chat has no current leaf */
    enum app_err (*message_tail)(struct store *st, const char *chat_id, const char *leaf_id,
                                 int n, struct store_message **out, size_t *count,
                                 int64_t *total);
    enum app_err (*message_path)(struct store *st, const char *id,
                                 struct store_message **out, size_t *n);
    enum app_err (*message_update)(struct store *st, const char *id, const char *content,
                                   const char *status, const char *error,
                                   int64_t prompt_tokens, int64_t completion_tokens);
    enum app_err (*message_newest_leaf)(struct store *st, const char *id,
                                        char out[STORE_ID_LEN + 1]);
    enum app_err (*message_mark_interrupted)(struct store *st, int64_t *n);
    enum app_err (*lease_create)(struct store *st, const char *message_id,
                                 const char *instance_id, int64_t expires_at);
    enum app_err (*lease_renew)(struct store *st, const char *instance_id, int64_t expires_at,
                                char (**stop_ids)[STORE_ID_LEN + 1], size_t *n);
    enum app_err (*lease_progress)(struct store *st, const char *message_id, int64_t events);
    enum app_err (*lease_delete)(struct store *st, const char *message_id);
    enum app_err (*lease_request_stop)(struct store *st, const char *message_id);
    enum app_err (*lease_get)(struct store *st, const char *message_id, struct store_lease *out);
    enum app_err (*lease_expire)(struct store *st, int64_t now, const char *dead_instance,
                                 int64_t *n);

    /* gateway (schema v2) */
    enum app_err (*token_create)(struct store *st, struct store_token *t);
    enum app_err (*token_get_by_hash)(struct store *st, const char *token_hash, int64_t now,
                                      struct store_token *out);
    enum app_err (*token_list)(struct store *st, const char *user_id, struct store_token **out,
                               size_t *n);
    enum app_err (*token_revoke)(struct store *st, const char *user_id, const char *id,
                                 int64_t now);
    enum app_err (*token_touch)(struct store *st, const char *id, int64_t now);

    enum app_err (*pool_key_create)(struct store *st, struct store_pool_key *k);
    enum app_err (*pool_key_list)(struct store *st, struct store_pool_key **out, size_t *n);
    enum app_err (*pool_key_get)(struct store *st, const char *id, struct store_pool_key *out);
    enum app_err (*pool_key_update)(struct store *st, const struct store_pool_key *k);
    enum app_err (*pool_key_set_key)(struct store *st, const char *id, const unsigned char *ct,
                                     size_t ct_len, int key_version, const char *last4);
    enum app_err (*pool_key_delete)(struct store *st, const char *id);

    enum app_err (*usage_insert)(struct store *st, struct store_usage *u);
    enum app_err (*usage_report)(struct store *st, int64_t from, int64_t to, const char *user_id,
                                 struct store_usage_row **out, size_t *n);
    enum app_err (*usage_totals)(struct store *st, const char *user_id, int64_t since,
                                 int64_t *tokens, int64_t *cost_micros);
    enum app_err (*usage_key_totals)(struct store *st, const char *key_id, int64_t since,
                                     int64_t *requests, int64_t *tokens, int64_t *errors);

    enum app_err (*price_list)(struct store *st, struct store_price **out, size_t *n);
    enum app_err (*price_upsert)(struct store *st, const struct store_price *p);
    enum app_err (*price_delete)(struct store *st, const char *model);

    enum app_err (*user_limits_get)(struct store *st, const char *user_id,
                                    struct store_user_limits *out);
    enum app_err (*user_limits_set)(struct store *st, const struct store_user_limits *l);
    enum app_err (*user_list)(struct store *st, struct store_user **out, size_t *n);
};

/* One numbered schema migration: applied in version order, each in its own
 * transaction. Versions start at 1 and have no gaps. */
struct store_migration {
    int version;
    const char *name; /* e.g. "0001_init" */
    const char *sql;  /* one or more statements, no transaction control */
};

/* migrations_sqlite.c */
extern const struct store_migration store_sqlite_migrations[];
extern const size_t store_sqlite_migrations_count;

/* migrations_pg.c: the same versions for PostgreSQL */
extern const struct store_migration store_pg_migrations[];
extern const size_t store_pg_migrations_count;

/* store_sqlite.c: open the SQLite database file at path (or ":memory:").
 * Returns NULL with a message in err on failure. */
struct store *store_sqlite_open(const char *path, char *err, size_t errlen);

/* store_pg.c: connect to the PostgreSQL database at url (postgres:// or
 * postgresql://, libpq syntax). Returns NULL with a message (never the
 * password) in err on failure. */
struct store *store_pg_open(const char *url, char *err, size_t errlen);

/* store.c: printf into st->errmsg (truncating). */
COAI_PRINTF(2, 3) void store_set_error(struct store *st, const char *fmt, ...);

#endif
