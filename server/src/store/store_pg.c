/* store_pg.c - the PostgreSQL back end of store.h (libpq). One handle wraps
 * one connection used by one thread: every worker thread opens its own
 * handle, so the server's connection pool is its worker pool and is sized by
 * the same setting (CHATOPENAII_WORKERS). The semantics are those of
 * store_sqlite.c, function by function; the tests run the same cases on both.
 *
 * Every statement is a fixed SQL text run with PQexecParams. Values travel as
 * text parameters (with explicit casts in the SQL), except key ciphertexts,
 * which are sent as binary BYTEA parameters; results come back as text (BYTEA
 * in hex). No SQL is ever built from data.
 *
 * Transactions: a statement outside store_begin runs on its own (autocommit),
 * and the few operations of several statements use BEGIN ... COMMIT. Inside
 * the caller's store_begin each operation runs in a savepoint, so a failing
 * one (e.g. a unique violation) leaves the caller's transaction usable, as
 * with SQLite. Transactions are READ COMMITTED whatever the database default.
 */
#include "store_int.h"
#include "../lib/ids.h"
#include "../lib/lazy.h"

#include <libpq-fe.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Advisory lock keys (arbitrary constants, "coai" + purpose): schema
 * migrations, and the first-user-is-admin decision. */
#define PG_LOCK_MIGRATE "6570400513990181633"
#define PG_LOCK_FIRST_ADMIN "6570400513990181634"

#define PG_BEGIN "BEGIN ISOLATION LEVEL READ COMMITTED"

/* ---- SQL ----------------------------------------------------------------- */

#define USER_COLS "id, email, name, password_hash, is_admin, created_at, updated_at"
#define SESSION_COLS "id, user_id, token_hash, user_agent, ip, created_at, last_seen_at, expires_at"
#define CONN_COLS \
    "id, owner_id, workspace_id, name, base_url, key_ct, key_version, key_last4, " \
    "created_at, updated_at"
#define CHAT_COLS \
    "id, owner_id, workspace_id, folder_id, title, model, system_prompt, params, " \
    "current_leaf_id, created_at, updated_at"
#define MSG_COLS \
    "m.id, m.chat_id, m.parent_id, m.role, m.content, m.model, m.status, m.error, " \
    "m.prompt_tokens, m.completion_tokens, m.created_at, m.updated_at"
#define DEFAULT_CONN "owner_id = $1::text AND workspace_id IS NULL AND is_default"
#define TOKEN_COLS \
    "id, user_id, name, token_hash, prefix, models, rpm, tpm, expires_at, created_at, " \
    "last_used_at, revoked_at"
#define POOL_KEY_COLS \
    "id, name, base_url, key_ct, key_version, key_last4, weight, rpm, tpm, enabled, " \
    "disabled_reason, created_at, updated_at"
#define PRICE_COLS "model, input_micros, cached_input_micros, output_micros, updated_at"
#define LIMITS_COLS "user_id, rpm, tpm, monthly_tokens, monthly_cost_micros, updated_at"
/* SQLite's COLLATE NOCASE: ASCII letters only (see migrations_pg.c). */
#define NOCASE(x) "translate(" x ", 'ABCDEFGHIJKLMNOPQRSTUVWXYZ', 'abcdefghijklmnopqrstuvwxyz')"

static const char SQL_SCHEMA_CREATE[] =
    "CREATE TABLE IF NOT EXISTS schema_migrations ("
    " version INTEGER PRIMARY KEY, applied_at BIGINT NOT NULL)";
static const char SQL_SCHEMA_TABLE_EXISTS[] =
    "SELECT (to_regclass('schema_migrations') IS NOT NULL)::int";
static const char SQL_SCHEMA_VERSION[] = "SELECT coalesce(max(version), 0) FROM schema_migrations";
static const char SQL_SCHEMA_RECORD[] =
    "INSERT INTO schema_migrations (version, applied_at) VALUES ($1::integer, $2::bigint)";

/* users */
/* The caller's is_admin, or admin when first_is_admin and no user exists yet
 * (read under PG_LOCK_FIRST_ADMIN, in a statement started after taking it). */
static const char SQL_USER_INSERT[] =
    "INSERT INTO users (" USER_COLS ") VALUES ($1::text, $2::text, $3::text, $4::text,"
    " $5::boolean OR ($8::boolean AND NOT EXISTS (SELECT 1 FROM users)), $6::bigint, $7::bigint)"
    " RETURNING is_admin";
static const char SQL_USER_GET[] = "SELECT " USER_COLS " FROM users WHERE id = $1::text";
static const char SQL_USER_GET_BY_EMAIL[] =
    "SELECT " USER_COLS " FROM users WHERE " NOCASE("email") " = " NOCASE("$1::text");
static const char SQL_USER_SET_PASSWORD[] =
    "UPDATE users SET password_hash = $2::text, updated_at = $3::bigint WHERE id = $1::text";
static const char SQL_USER_COUNT[] = "SELECT count(*) FROM users";

/* sessions */
static const char SQL_SESSION_INSERT[] =
    "INSERT INTO sessions (" SESSION_COLS ") VALUES ($1::text, $2::text, $3::text, $4::text,"
    " $5::text, $6::bigint, $7::bigint, $8::bigint)";
static const char SQL_SESSION_GET_BY_HASH[] =
    "SELECT " SESSION_COLS " FROM sessions WHERE token_hash = $1::text AND expires_at > $2::bigint";
static const char SQL_SESSION_TOUCH[] =
    "UPDATE sessions SET last_seen_at = $2::bigint, expires_at = $3::bigint WHERE id = $1::text";
static const char SQL_SESSION_LIST[] =
    "SELECT " SESSION_COLS " FROM sessions WHERE user_id = $1::text AND expires_at > $2::bigint"
    " ORDER BY last_seen_at DESC, id DESC";
static const char SQL_SESSION_DELETE[] =
    "DELETE FROM sessions WHERE id = $1::text AND user_id = $2::text";
static const char SQL_SESSION_DELETE_ALL[] =
    "DELETE FROM sessions WHERE user_id = $1::text AND ($2::text IS NULL OR id <> $2::text)";
static const char SQL_SESSION_PURGE[] = "DELETE FROM sessions WHERE expires_at <= $1::bigint";

/* provider connections */
static const char SQL_CONN_UPSERT[] =
    "INSERT INTO provider_connections (id, owner_id, workspace_id, name, base_url, key_ct,"
    " key_version, key_last4, is_default, created_at, updated_at)"
    " VALUES ($1::text, $2::text, NULL, $3::text, $4::text, $5::bytea, $6::integer, $7::text,"
    " true, $8::bigint, $8::bigint)"
    " ON CONFLICT (owner_id) WHERE is_default AND workspace_id IS NULL DO UPDATE SET"
    " name = excluded.name, base_url = excluded.base_url, key_ct = excluded.key_ct,"
    " key_version = excluded.key_version, key_last4 = excluded.key_last4,"
    " updated_at = excluded.updated_at"
    " RETURNING id, created_at, updated_at";
static const char SQL_CONN_GET_DEFAULT[] =
    "SELECT " CONN_COLS " FROM provider_connections WHERE " DEFAULT_CONN;
static const char SQL_CONN_DELETE_DEFAULT[] = "DELETE FROM provider_connections WHERE " DEFAULT_CONN;
static const char SQL_CONN_LIST_ALL[] =
    "SELECT " CONN_COLS " FROM provider_connections WHERE key_ct IS NOT NULL ORDER BY id";
static const char SQL_CONN_SET_KEY[] =
    "UPDATE provider_connections SET key_ct = $2::bytea, key_version = $3::integer,"
    " updated_at = $4::bigint WHERE id = $1::text";

/* chats */
/* Inserts nothing (0 rows) when the folder is not one of the owner's. */
static const char SQL_CHAT_INSERT[] =
    "INSERT INTO chats (" CHAT_COLS ")"
    " SELECT $1::text, $2::text, $3::text, $4::text, $5::text, $6::text, $7::text, $8::text,"
    " NULL, $9::bigint, $9::bigint"
    " WHERE $4::text IS NULL"
    " OR EXISTS (SELECT 1 FROM folders WHERE id = $4::text AND owner_id = $2::text)";
static const char SQL_CHAT_GET[] =
    "SELECT " CHAT_COLS " FROM chats WHERE id = $1::text AND owner_id = $2::text";
static const char SQL_CHAT_LIST_FIRST[] =
    "SELECT " CHAT_COLS " FROM chats WHERE owner_id = $1::text"
    " ORDER BY updated_at DESC, id DESC LIMIT $2::bigint";
static const char SQL_CHAT_LIST_BEFORE[] =
    "SELECT " CHAT_COLS " FROM chats WHERE owner_id = $1::text"
    " AND (updated_at, id) < ($2::bigint, $3::text)"
    " ORDER BY updated_at DESC, id DESC LIMIT $4::bigint";
/* One statement: the row is updated only if it is the owner's and the new
 * folder / leaf are valid; when nothing changed, SQL_CHAT_UPDATE_WHY tells
 * which of the three it was. */
#define CHAT_FOLDER_OK(set, folder) \
    "(NOT " set "::boolean OR " folder "::text IS NULL OR EXISTS (SELECT 1 FROM folders" \
    " WHERE id = " folder "::text AND owner_id = $2::text))"
#define CHAT_LEAF_OK(set, leaf) \
    "(NOT " set "::boolean OR " leaf "::text IS NULL OR EXISTS (SELECT 1 FROM messages" \
    " WHERE id = " leaf "::text AND chat_id = $1::text))"
static const char SQL_CHAT_UPDATE[] =
    "UPDATE chats SET"
    " title = CASE WHEN $3::boolean THEN $4::text ELSE title END,"
    " model = CASE WHEN $5::boolean THEN $6::text ELSE model END,"
    " system_prompt = CASE WHEN $7::boolean THEN $8::text ELSE system_prompt END,"
    " params = CASE WHEN $9::boolean THEN $10::text ELSE params END,"
    " folder_id = CASE WHEN $11::boolean THEN $12::text ELSE folder_id END,"
    " current_leaf_id = CASE WHEN $13::boolean THEN $14::text ELSE current_leaf_id END"
    " WHERE id = $1::text AND owner_id = $2::text"
    " AND " CHAT_FOLDER_OK("$11", "$12") " AND " CHAT_LEAF_OK("$13", "$14");
static const char SQL_CHAT_UPDATE_WHY[] =
    "SELECT EXISTS (SELECT 1 FROM chats WHERE id = $1::text AND owner_id = $2::text)::int,"
    " " CHAT_FOLDER_OK("$3", "$4") "::int, " CHAT_LEAF_OK("$5", "$6") "::int";
static const char SQL_CHAT_DELETE[] = "DELETE FROM chats WHERE id = $1::text AND owner_id = $2::text";
static const char SQL_CHAT_TOUCH[] = "UPDATE chats SET updated_at = $2::bigint WHERE id = $1::text";

/* messages */
/* Inserts the message if its parent is a message of the same chat (else
 * nothing: count 0) and bumps the chat's activity, in one statement. */
static const char SQL_MSG_INSERT[] =
    "WITH ins AS ("
    " INSERT INTO messages (id, chat_id, parent_id, role, content, model, status, error,"
    " prompt_tokens, completion_tokens, created_at, updated_at)"
    " SELECT $1::text, $2::text, $3::text, $4::text, coalesce($5::text, '[]'), $6::text,"
    " $7::text, $8::text, $9::bigint, $10::bigint, $11::bigint, $11::bigint"
    " WHERE $3::text IS NULL"
    " OR EXISTS (SELECT 1 FROM messages WHERE id = $3::text AND chat_id = $2::text)"
    " RETURNING chat_id, created_at"
    "), bump AS ("
    " UPDATE chats SET updated_at = greatest(chats.updated_at, ins.created_at)"
    " FROM ins WHERE chats.id = ins.chat_id RETURNING 1"
    ")"
    " SELECT count(*) FROM ins";
static const char SQL_MSG_GET[] =
    "SELECT " MSG_COLS " FROM messages m JOIN chats c ON c.id = m.chat_id"
    " WHERE m.id = $1::text AND c.owner_id = $2::text";
static const char SQL_MSG_LIST[] =
    "SELECT " MSG_COLS " FROM messages m WHERE m.chat_id = $1::text ORDER BY m.created_at, m.id";
/* Up from the leaf by primary key, at most $3 steps, then the siblings of
 * each by the parent index (the chat's roots for a root). */
static const char SQL_MSG_TAIL[] =
    "WITH RECURSIVE up(id, parent_id, depth) AS ("
    "  SELECT id, parent_id, 1 FROM messages"
    "  WHERE id = coalesce($1::text, (SELECT id FROM messages WHERE chat_id = $2::text"
    "                                 ORDER BY created_at DESC, id DESC LIMIT 1))"
    "  AND chat_id = $2::text"
    "  UNION ALL"
    "  SELECT p.id, p.parent_id, up.depth + 1 FROM up JOIN messages p"
    "  ON p.id = up.parent_id WHERE up.depth < $3::int"
    "), sel(id) AS ("
    "  SELECT id FROM up"
    "  UNION SELECT k.id FROM up JOIN messages k ON k.parent_id = up.parent_id"
    "  UNION SELECT k.id FROM up JOIN messages k"
    "  ON k.chat_id = $2::text AND k.parent_id IS NULL WHERE up.parent_id IS NULL"
    ")"
    " SELECT " MSG_COLS ", (SELECT count(*) FROM messages WHERE chat_id = $2::text)"
    " FROM sel JOIN messages m ON m.id = sel.id ORDER BY m.created_at, m.id";
static const char SQL_MSG_COUNT[] = "SELECT count(*) FROM messages WHERE chat_id = $1::text";
static const char SQL_MSG_PATH[] =
    "WITH RECURSIVE up(id, parent_id, depth) AS ("
    "  SELECT id, parent_id, 0 FROM messages WHERE id = $1::text"
    "  UNION ALL"
    "  SELECT p.id, p.parent_id, up.depth + 1 FROM messages p JOIN up ON p.id = up.parent_id"
    ")"
    " SELECT " MSG_COLS " FROM up JOIN messages m ON m.id = up.id ORDER BY up.depth DESC";
static const char SQL_MSG_UPDATE[] =
    "UPDATE messages SET content = coalesce($2::text, content),"
    " status = coalesce($3::text, status), error = $4::text,"
    " prompt_tokens = CASE WHEN $5::bigint < 0 THEN prompt_tokens ELSE $5::bigint END,"
    " completion_tokens = CASE WHEN $6::bigint < 0 THEN completion_tokens ELSE $6::bigint END,"
    " updated_at = $7::bigint WHERE id = $1::text";
/* Each step follows the newest child (created_at, then id); a leaf has no
 * next step, which ends the walk. */
static const char SQL_MSG_NEWEST_LEAF[] =
    "WITH RECURSIVE walk(id, depth) AS ("
    "  SELECT id, 0 FROM messages WHERE id = $1::text"
    "  UNION ALL"
    "  SELECT c.id, walk.depth + 1 FROM walk CROSS JOIN LATERAL ("
    "    SELECT k.id FROM messages k WHERE k.parent_id = walk.id"
    "    ORDER BY k.created_at DESC, k.id DESC LIMIT 1) c"
    ")"
    " SELECT id FROM walk ORDER BY depth DESC LIMIT 1";
static const char SQL_LEASE_CREATE[] =
    "INSERT INTO turn_leases (message_id, instance_id, expires_at) VALUES ($1, $2, $3::bigint)";
static const char SQL_LEASE_RENEW[] =
    "UPDATE turn_leases SET expires_at = $2::bigint WHERE instance_id = $1";
static const char SQL_LEASE_STOPS[] =
    "SELECT message_id FROM turn_leases WHERE instance_id = $1 AND stop_requested = 1";
static const char SQL_LEASE_PROGRESS[] =
    "UPDATE turn_leases SET events = $2::bigint WHERE message_id = $1";
static const char SQL_LEASE_DELETE[] = "DELETE FROM turn_leases WHERE message_id = $1";
static const char SQL_LEASE_STOP_REQ[] =
    "UPDATE turn_leases SET stop_requested = 1 WHERE message_id = $1";
static const char SQL_LEASE_GET[] =
    "SELECT instance_id, expires_at, events, stop_requested FROM turn_leases WHERE message_id = $1";
static const char SQL_LEASE_EXPIRE_MSGS[] =
    "UPDATE messages SET status = 'interrupted', updated_at = $1::bigint,"
    " error = coalesce(error, '{\"code\":\"interrupted\",\"message\":"
    "\"the server running the answer stopped before it finished\"}')"
    " WHERE status = 'streaming' AND NOT EXISTS (SELECT 1 FROM turn_leases l"
    " WHERE l.message_id = messages.id AND l.expires_at >= $1::bigint AND l.instance_id <> $2)";
static const char SQL_LEASE_EXPIRE[] =
    "DELETE FROM turn_leases WHERE expires_at < $1::bigint OR instance_id = $2"
    " OR message_id NOT IN (SELECT id FROM messages WHERE status = 'streaming')";

static const char SQL_MSG_MARK_INTERRUPTED[] =
    "UPDATE messages SET status = 'interrupted', updated_at = $1::bigint,"
    " error = coalesce(error, '{\"code\":\"interrupted\",\"message\":"
    "\"the server stopped while the answer was being generated\"}')"
    " WHERE status = 'streaming'";

/* gateway (schema v2) */
static const char SQL_USER_LIST[] =
    "SELECT id, email, name, NULL, is_admin, created_at, updated_at"
    " FROM users ORDER BY created_at, id";

static const char SQL_TOKEN_INSERT[] =
    "INSERT INTO api_tokens (" TOKEN_COLS ") VALUES ($1::text, $2::text, $3::text, $4::text,"
    " $5::text, $6::text, $7::bigint, $8::bigint, $9::bigint, $10::bigint, $11::bigint,"
    " $12::bigint)";
static const char SQL_TOKEN_GET_BY_HASH[] =
    "SELECT " TOKEN_COLS " FROM api_tokens WHERE token_hash = $1::text"
    " AND revoked_at = 0 AND (expires_at = 0 OR expires_at > $2::bigint)";
static const char SQL_TOKEN_LIST[] =
    "SELECT " TOKEN_COLS " FROM api_tokens WHERE user_id = $1::text"
    " ORDER BY created_at DESC, id DESC";
static const char SQL_TOKEN_REVOKE[] =
    "UPDATE api_tokens SET revoked_at = $3::bigint"
    " WHERE id = $1::text AND user_id = $2::text AND revoked_at = 0"
    " AND (expires_at = 0 OR expires_at > $3::bigint)";
static const char SQL_TOKEN_TOUCH[] =
    "UPDATE api_tokens SET last_used_at = greatest(last_used_at, $2::bigint) WHERE id = $1::text";

static const char SQL_POOL_KEY_INSERT[] =
    "INSERT INTO pool_keys (" POOL_KEY_COLS ") VALUES ($1::text, $2::text, $3::text, $4::bytea,"
    " $5::integer, $6::text, $7::integer, $8::bigint, $9::bigint, $10::boolean,"
    " CASE WHEN $10::boolean THEN NULL ELSE $11::text END, $12::bigint, $13::bigint)";
static const char SQL_POOL_KEY_LIST[] =
    "SELECT " POOL_KEY_COLS " FROM pool_keys ORDER BY created_at, id";
static const char SQL_POOL_KEY_GET[] = "SELECT " POOL_KEY_COLS " FROM pool_keys WHERE id = $1::text";
static const char SQL_POOL_KEY_UPDATE[] =
    "UPDATE pool_keys SET name = $2::text, base_url = $3::text, weight = $4::integer,"
    " rpm = $5::bigint, tpm = $6::bigint, enabled = $7::boolean,"
    " disabled_reason = CASE WHEN $7::boolean THEN NULL ELSE $8::text END,"
    " updated_at = $9::bigint WHERE id = $1::text";
static const char SQL_POOL_KEY_SET_KEY[] =
    "UPDATE pool_keys SET key_ct = $2::bytea, key_version = $3::integer,"
    " key_last4 = CASE WHEN $2::bytea IS NULL THEN NULL ELSE coalesce($4::text, key_last4) END,"
    " updated_at = $5::bigint WHERE id = $1::text";
static const char SQL_POOL_KEY_DELETE[] = "DELETE FROM pool_keys WHERE id = $1::text";

static const char SQL_USAGE_INSERT[] =
    "INSERT INTO usage_records (id, user_id, token_id, key_id, key_source, endpoint, model,"
    " prompt_tokens, cached_tokens, completion_tokens, tokens_estimated, cost_micros,"
    " latency_ms, status, created_at)"
    " VALUES ($1::text, $2::text, $3::text, $4::text, $5::text, $6::text, $7::text,"
    " $8::bigint, $9::bigint, $10::bigint, $11::boolean, $12::bigint, $13::bigint,"
    " $14::integer, $15::bigint)";
/* Usage grouped by UTC day, model and user over [$1, $2); NULLs sort first
 * as in SQLite. The email is the (functionally dependent) joined user's. */
#define USAGE_REPORT_SELECT \
    "SELECT to_char(to_timestamp(r.created_at / 1000) AT TIME ZONE 'UTC', 'YYYY-MM-DD')" \
    " COLLATE \"C\" AS day, r.model, r.user_id, min(u.email), count(*)," \
    " coalesce(sum(r.prompt_tokens), 0)::bigint, coalesce(sum(r.cached_tokens), 0)::bigint," \
    " coalesce(sum(r.completion_tokens), 0)::bigint, coalesce(sum(r.cost_micros), 0)::bigint," \
    " count(*) FILTER (WHERE r.status >= 400)" \
    " FROM usage_records r LEFT JOIN users u ON u.id = r.user_id" \
    " WHERE r.created_at >= $1::bigint AND r.created_at < $2::bigint"
#define USAGE_REPORT_ORDER \
    " GROUP BY day, r.model, r.user_id" \
    " ORDER BY day, r.model NULLS FIRST, r.user_id NULLS FIRST"
static const char SQL_USAGE_REPORT_ALL[] = USAGE_REPORT_SELECT USAGE_REPORT_ORDER;
static const char SQL_USAGE_REPORT_USER[] =
    USAGE_REPORT_SELECT " AND r.user_id = $3::text" USAGE_REPORT_ORDER;
static const char SQL_USAGE_TOTALS[] =
    "SELECT coalesce(sum(prompt_tokens + completion_tokens), 0)::bigint,"
    " coalesce(sum(cost_micros), 0)::bigint"
    " FROM usage_records WHERE user_id = $1::text AND created_at >= $2::bigint";
static const char SQL_USAGE_KEY_TOTALS[] =
    "SELECT count(*), coalesce(sum(prompt_tokens + completion_tokens), 0)::bigint,"
    " count(*) FILTER (WHERE status >= 400)"
    " FROM usage_records WHERE key_id = $1::text AND created_at >= $2::bigint";

static const char SQL_PRICE_LIST[] = "SELECT " PRICE_COLS " FROM prices ORDER BY model";
static const char SQL_PRICE_UPSERT[] =
    "INSERT INTO prices (" PRICE_COLS ") VALUES ($1::text, $2::bigint, $3::bigint, $4::bigint,"
    " $5::bigint)"
    " ON CONFLICT (model) DO UPDATE SET input_micros = excluded.input_micros,"
    " cached_input_micros = excluded.cached_input_micros,"
    " output_micros = excluded.output_micros, updated_at = excluded.updated_at";
static const char SQL_PRICE_DELETE[] = "DELETE FROM prices WHERE model = $1::text";

static const char SQL_LIMITS_GET[] = "SELECT " LIMITS_COLS " FROM user_limits WHERE user_id = $1::text";
static const char SQL_LIMITS_SET[] =
    "INSERT INTO user_limits (" LIMITS_COLS ") VALUES ($1::text, $2::bigint, $3::bigint,"
    " $4::bigint, $5::bigint, $6::bigint)"
    " ON CONFLICT (user_id) DO UPDATE SET rpm = excluded.rpm, tpm = excluded.tpm,"
    " monthly_tokens = excluded.monthly_tokens,"
    " monthly_cost_micros = excluded.monthly_cost_micros, updated_at = excluded.updated_at";

/* ---- handle, parameters and results --------------------------------------- */

struct store_pg {
    struct store base; /* must stay first */
    PGconn *conn;
    bool user_tx;      /* inside the caller's store_begin */
};

static struct store_pg *store_pg_of(struct store *st)
{
    return (struct store_pg *)st;
}

#define PG_MAX_PARAMS 16

/* Parameters of one statement; the values must outlive the call. */
struct pg_params {
    int n;
    const char *values[PG_MAX_PARAMS];
    int lengths[PG_MAX_PARAMS];
    int formats[PG_MAX_PARAMS];
    char num[PG_MAX_PARAMS][24];
};

static int pg_param_slot(struct pg_params *p)
{
    if (p->n >= PG_MAX_PARAMS)
        abort(); /* a statement above with too many parameters: a bug */
    int i = p->n++;
    p->lengths[i] = 0;
    p->formats[i] = 0;
    return i;
}

/* Text (NULL binds SQL NULL). */
static void pg_text(struct pg_params *p, const char *v)
{
    int i = pg_param_slot(p);
    p->values[i] = v;
}

/* An optional reference: NULL or "" bind SQL NULL. */
static void pg_ref(struct pg_params *p, const char *v)
{
    pg_text(p, (v && *v) ? v : NULL);
}

static void pg_int(struct pg_params *p, int64_t v)
{
    int i = pg_param_slot(p);
    snprintf(p->num[i], sizeof p->num[i], "%" PRId64, v);
    p->values[i] = p->num[i];
}

static void pg_bool(struct pg_params *p, bool v)
{
    pg_text(p, v ? "t" : "f");
}

/* A token count: negative (unknown) binds SQL NULL. */
static void pg_tokens(struct pg_params *p, int64_t v)
{
    if (v < 0)
        pg_text(p, NULL);
    else
        pg_int(p, v);
}

/* BYTEA, sent in binary: NULL or empty bind SQL NULL. */
static void pg_blob(struct pg_params *p, const unsigned char *b, size_t n)
{
    if (!b || n == 0 || n > INT32_MAX) {
        pg_text(p, NULL);
        return;
    }
    int i = pg_param_slot(p);
    p->values[i] = (const char *)b;
    p->lengths[i] = (int)n;
    p->formats[i] = 1;
}

/* Record the error of result r (or of the connection) for what and map its
 * SQLSTATE. Only the primary message and the constraint name are kept: the
 * DETAIL line may quote row values (emails, hashes), which stay out of logs. */
static enum app_err store_pg_fail(struct store_pg *s, const PGresult *r, const char *what)
{
    const char *state = r ? PQresultErrorField(r, PG_DIAG_SQLSTATE) : NULL;
    const char *msg = r ? PQresultErrorField(r, PG_DIAG_MESSAGE_PRIMARY) : NULL;
    const char *cons = r ? PQresultErrorField(r, PG_DIAG_CONSTRAINT_NAME) : NULL;
    char conn_msg[256];
    enum app_err e = APP_ESTORE;

    if (!msg || !*msg) {
        snprintf(conn_msg, sizeof conn_msg, "%s", PQerrorMessage(s->conn));
        size_t n = strlen(conn_msg);
        while (n && (conn_msg[n - 1] == '\n' || conn_msg[n - 1] == ' '))
            conn_msg[--n] = '\0';
        msg = conn_msg[0] ? conn_msg : "unknown error";
    }
    if (state) {
        if (strcmp(state, "23505") == 0)          /* unique_violation */
            e = APP_ECONFLICT;
        else if (strcmp(state, "23503") == 0 ||   /* foreign_key_violation */
                 strcmp(state, "23514") == 0 ||   /* check_violation */
                 strcmp(state, "23502") == 0 ||   /* not_null_violation */
                 strncmp(state, "22", 2) == 0)    /* data exception: bad JSON, range */
            e = APP_EINVAL;
    }
    store_set_error(&s->base, "%s: %s%s%s%s (postgres %s)", what, msg, cons ? " [" : "",
                    cons ? cons : "", cons ? "]" : "", state ? state : "connection");
    return e;
}

static bool store_pg_in_tx(struct store_pg *s)
{
    return PQtransactionStatus(s->conn) != PQTRANS_IDLE;
}

/* Make sure the connection is usable: reconnect a broken one, unless it
 * broke inside the caller's transaction (whose work is gone). */
static enum app_err store_pg_ready(struct store_pg *s, const char *what)
{
    if (PQstatus(s->conn) == CONNECTION_OK)
        return APP_OK;
    if (s->user_tx) {
        store_set_error(&s->base, "%s: connection lost inside a transaction", what);
        return APP_ESTORE;
    }
    PQreset(s->conn);
    if (PQstatus(s->conn) != CONNECTION_OK)
        return store_pg_fail(s, NULL, what);
    return APP_OK;
}

/* Run one statement. Returns its result when it succeeded, else NULL with
 * the error recorded in the handle and mapped into *e. */
static PGresult *store_pg_exec(struct store_pg *s, const char *sql, const struct pg_params *p,
                               const char *what, enum app_err *e)
{
    PGresult *r = PQexecParams(s->conn, sql, p ? p->n : 0, NULL, p ? p->values : NULL,
                               p ? p->lengths : NULL, p ? p->formats : NULL, 0);
    ExecStatusType t = PQresultStatus(r);
    if (t == PGRES_COMMAND_OK || t == PGRES_TUPLES_OK) {
        *e = APP_OK;
        return r;
    }
    *e = store_pg_fail(s, r, what);
    PQclear(r);
    return NULL;
}

/* Run a parameterless command, keeping the recorded error untouched. */
static void store_pg_quiet(struct store_pg *s, const char *sql)
{
    PQclear(PQexec(s->conn, sql));
}

static enum app_err store_pg_cmd(struct store_pg *s, const char *sql, const char *what)
{
    enum app_err e;
    PQclear(store_pg_exec(s, sql, NULL, what, &e));
    return e;
}

/* Run one statement as an operation of its own: alone outside a transaction,
 * in a savepoint inside the caller's, so that its failure does not poison
 * the caller's transaction. */
static PGresult *store_pg_op(struct store_pg *s, const char *sql, const struct pg_params *p,
                             const char *what, enum app_err *e)
{
    *e = store_pg_ready(s, what);
    if (*e != APP_OK)
        return NULL;
    if (!store_pg_in_tx(s))
        return store_pg_exec(s, sql, p, what, e);
    *e = store_pg_cmd(s, "SAVEPOINT store_op", what);
    if (*e != APP_OK)
        return NULL;
    PGresult *r = store_pg_exec(s, sql, p, what, e);
    if (r) {
        *e = store_pg_cmd(s, "RELEASE SAVEPOINT store_op", what);
        if (*e == APP_OK)
            return r;
        PQclear(r);
        r = NULL;
    }
    store_pg_quiet(s, "ROLLBACK TO SAVEPOINT store_op");
    store_pg_quiet(s, "RELEASE SAVEPOINT store_op");
    return NULL;
}

/* Start an internal transaction of several statements: BEGIN when none is
 * open, a savepoint inside the caller's store_begin. */
static enum app_err store_pg_tx_begin(struct store_pg *s, bool *outer, const char *what)
{
    enum app_err e = store_pg_ready(s, what);
    if (e != APP_OK)
        return e;
    *outer = !store_pg_in_tx(s);
    return store_pg_cmd(s, *outer ? PG_BEGIN : "SAVEPOINT store_op", what);
}

/* Finish what store_pg_tx_begin started: commit if e is APP_OK, else roll
 * back. Returns e, or the commit's error. */
static enum app_err store_pg_tx_end(struct store_pg *s, bool outer, enum app_err e,
                                    const char *what)
{
    if (e == APP_OK) {
        e = store_pg_cmd(s, outer ? "COMMIT" : "RELEASE SAVEPOINT store_op", what);
        if (e == APP_OK && outer && store_pg_in_tx(s)) {
            /* COMMIT of a failed transaction reports success but rolls back */
            store_set_error(&s->base, "%s: transaction rolled back", what);
            e = APP_ESTORE;
        }
        if (e == APP_OK)
            return APP_OK;
    }
    if (outer) {
        if (store_pg_in_tx(s))
            store_pg_quiet(s, "ROLLBACK");
    } else {
        store_pg_quiet(s, "ROLLBACK TO SAVEPOINT store_op");
        store_pg_quiet(s, "RELEASE SAVEPOINT store_op");
    }
    return e;
}

/* ---- reading results ------------------------------------------------------- */

static char *pg_col_str(const PGresult *r, int row, int col)
{
    if (PQgetisnull(r, row, col))
        return NULL;
    return xstrndup(PQgetvalue(r, row, col), (size_t)PQgetlength(r, row, col));
}

/* Copy a text column into a fixed buffer; NULL becomes "". */
static void pg_col_fixed(const PGresult *r, int row, int col, char *out, size_t size)
{
    size_t n = 0;
    if (!PQgetisnull(r, row, col)) {
        n = (size_t)PQgetlength(r, row, col);
        if (n > size - 1)
            n = size - 1;
        memcpy(out, PQgetvalue(r, row, col), n);
    }
    out[n] = '\0';
}

static int64_t pg_col_int(const PGresult *r, int row, int col)
{
    if (PQgetisnull(r, row, col))
        return 0;
    return (int64_t)strtoll(PQgetvalue(r, row, col), NULL, 10);
}

/* An integer column where NULL means unknown (-1). */
static int64_t pg_col_tokens(const PGresult *r, int row, int col)
{
    if (PQgetisnull(r, row, col))
        return -1;
    return pg_col_int(r, row, col);
}

static bool pg_col_bool(const PGresult *r, int row, int col)
{
    return !PQgetisnull(r, row, col) && PQgetvalue(r, row, col)[0] == 't';
}

static int pg_hexval(char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    return -1;
}

/* A BYTEA column (text result: hex "\x..." or the old escape format) into a
 * new buffer; NULL or empty leaves *out NULL. */
static void pg_col_blob(const PGresult *r, int row, int col, unsigned char **out, size_t *len)
{
    *out = NULL;
    *len = 0;
    if (PQgetisnull(r, row, col))
        return;
    const char *v = PQgetvalue(r, row, col);
    size_t vlen = (size_t)PQgetlength(r, row, col);
    if (vlen >= 2 && v[0] == '\\' && v[1] == 'x') {
        size_t n = (vlen - 2) / 2;
        if (n == 0)
            return;
        unsigned char *b = xmalloc(n);
        for (size_t i = 0; i < n; i++) {
            int hi = pg_hexval(v[2 + 2 * i]), lo = pg_hexval(v[3 + 2 * i]);
            if (hi < 0 || lo < 0) {
                free(b);
                return;
            }
            b[i] = (unsigned char)(hi << 4 | lo);
        }
        *out = b;
        *len = n;
        return;
    }
    size_t n = 0;
    unsigned char *t = PQunescapeBytea((const unsigned char *)v, &n);
    if (!t)
        abort(); /* out of memory, like xmalloc */
    if (n > 0) {
        *out = xmalloc(n);
        memcpy(*out, t, n);
        *len = n;
    }
    PQfreemem(t);
}

static void store_pg_read_user(const PGresult *r, int i, void *p)
{
    struct store_user *u = p;
    memset(u, 0, sizeof *u);
    pg_col_fixed(r, i, 0, u->id, sizeof u->id);
    u->email = pg_col_str(r, i, 1);
    u->name = pg_col_str(r, i, 2);
    u->password_hash = pg_col_str(r, i, 3);
    u->is_admin = pg_col_bool(r, i, 4);
    u->created_at = pg_col_int(r, i, 5);
    u->updated_at = pg_col_int(r, i, 6);
}

static void store_pg_read_session(const PGresult *r, int i, void *p)
{
    struct store_session *s = p;
    memset(s, 0, sizeof *s);
    pg_col_fixed(r, i, 0, s->id, sizeof s->id);
    pg_col_fixed(r, i, 1, s->user_id, sizeof s->user_id);
    pg_col_fixed(r, i, 2, s->token_hash, sizeof s->token_hash);
    s->user_agent = pg_col_str(r, i, 3);
    s->ip = pg_col_str(r, i, 4);
    s->created_at = pg_col_int(r, i, 5);
    s->last_seen_at = pg_col_int(r, i, 6);
    s->expires_at = pg_col_int(r, i, 7);
}

static void store_pg_read_conn(const PGresult *r, int i, void *p)
{
    struct store_conn *c = p;
    memset(c, 0, sizeof *c);
    pg_col_fixed(r, i, 0, c->id, sizeof c->id);
    pg_col_fixed(r, i, 1, c->owner_id, sizeof c->owner_id);
    pg_col_fixed(r, i, 2, c->workspace_id, sizeof c->workspace_id);
    c->name = pg_col_str(r, i, 3);
    c->base_url = pg_col_str(r, i, 4);
    pg_col_blob(r, i, 5, &c->key_ct, &c->key_ct_len);
    c->key_version = (int)pg_col_int(r, i, 6);
    pg_col_fixed(r, i, 7, c->key_last4, sizeof c->key_last4);
    c->created_at = pg_col_int(r, i, 8);
    c->updated_at = pg_col_int(r, i, 9);
}

static void store_pg_read_chat(const PGresult *r, int i, void *p)
{
    struct store_chat *c = p;
    memset(c, 0, sizeof *c);
    pg_col_fixed(r, i, 0, c->id, sizeof c->id);
    pg_col_fixed(r, i, 1, c->owner_id, sizeof c->owner_id);
    pg_col_fixed(r, i, 2, c->workspace_id, sizeof c->workspace_id);
    pg_col_fixed(r, i, 3, c->folder_id, sizeof c->folder_id);
    c->title = pg_col_str(r, i, 4);
    c->model = pg_col_str(r, i, 5);
    c->system_prompt = pg_col_str(r, i, 6);
    c->params = pg_col_str(r, i, 7);
    pg_col_fixed(r, i, 8, c->current_leaf_id, sizeof c->current_leaf_id);
    c->created_at = pg_col_int(r, i, 9);
    c->updated_at = pg_col_int(r, i, 10);
}

static void store_pg_read_message(const PGresult *r, int i, void *p)
{
    struct store_message *m = p;
    memset(m, 0, sizeof *m);
    pg_col_fixed(r, i, 0, m->id, sizeof m->id);
    pg_col_fixed(r, i, 1, m->chat_id, sizeof m->chat_id);
    pg_col_fixed(r, i, 2, m->parent_id, sizeof m->parent_id);
    pg_col_fixed(r, i, 3, m->role, sizeof m->role);
    m->content = pg_col_str(r, i, 4);
    m->model = pg_col_str(r, i, 5);
    pg_col_fixed(r, i, 6, m->status, sizeof m->status);
    m->error = pg_col_str(r, i, 7);
    m->prompt_tokens = pg_col_tokens(r, i, 8);
    m->completion_tokens = pg_col_tokens(r, i, 9);
    m->created_at = pg_col_int(r, i, 10);
    m->updated_at = pg_col_int(r, i, 11);
}

static void store_pg_read_token(const PGresult *r, int i, void *p)
{
    struct store_token *t = p;
    memset(t, 0, sizeof *t);
    pg_col_fixed(r, i, 0, t->id, sizeof t->id);
    pg_col_fixed(r, i, 1, t->user_id, sizeof t->user_id);
    t->name = pg_col_str(r, i, 2);
    pg_col_fixed(r, i, 3, t->token_hash, sizeof t->token_hash);
    pg_col_fixed(r, i, 4, t->prefix, sizeof t->prefix);
    t->models = pg_col_str(r, i, 5);
    t->rpm = pg_col_int(r, i, 6);
    t->tpm = pg_col_int(r, i, 7);
    t->expires_at = pg_col_int(r, i, 8);
    t->created_at = pg_col_int(r, i, 9);
    t->last_used_at = pg_col_int(r, i, 10);
    t->revoked_at = pg_col_int(r, i, 11);
}

static void store_pg_read_pool_key(const PGresult *r, int i, void *p)
{
    struct store_pool_key *k = p;
    memset(k, 0, sizeof *k);
    pg_col_fixed(r, i, 0, k->id, sizeof k->id);
    k->name = pg_col_str(r, i, 1);
    k->base_url = pg_col_str(r, i, 2);
    pg_col_blob(r, i, 3, &k->key_ct, &k->key_ct_len);
    k->key_version = (int)pg_col_int(r, i, 4);
    pg_col_fixed(r, i, 5, k->key_last4, sizeof k->key_last4);
    k->weight = (int)pg_col_int(r, i, 6);
    k->rpm = pg_col_int(r, i, 7);
    k->tpm = pg_col_int(r, i, 8);
    k->enabled = pg_col_bool(r, i, 9);
    k->disabled_reason = pg_col_str(r, i, 10);
    k->created_at = pg_col_int(r, i, 11);
    k->updated_at = pg_col_int(r, i, 12);
}

static void store_pg_read_usage_row(const PGresult *r, int i, void *p)
{
    struct store_usage_row *u = p;
    memset(u, 0, sizeof *u);
    pg_col_fixed(r, i, 0, u->day, sizeof u->day);
    u->model = pg_col_str(r, i, 1);
    pg_col_fixed(r, i, 2, u->user_id, sizeof u->user_id);
    u->email = pg_col_str(r, i, 3);
    u->requests = pg_col_int(r, i, 4);
    u->prompt_tokens = pg_col_int(r, i, 5);
    u->cached_tokens = pg_col_int(r, i, 6);
    u->completion_tokens = pg_col_int(r, i, 7);
    u->cost_micros = pg_col_int(r, i, 8);
    u->errors = pg_col_int(r, i, 9);
}

static void store_pg_read_price(const PGresult *r, int i, void *p)
{
    struct store_price *pr = p;
    memset(pr, 0, sizeof *pr);
    pr->model = pg_col_str(r, i, 0);
    pr->input_micros = pg_col_int(r, i, 1);
    pr->cached_input_micros = pg_col_int(r, i, 2);
    pr->output_micros = pg_col_int(r, i, 3);
    pr->updated_at = pg_col_int(r, i, 4);
}

static void store_pg_read_limits(const PGresult *r, int i, void *p)
{
    struct store_user_limits *l = p;
    memset(l, 0, sizeof *l);
    pg_col_fixed(r, i, 0, l->user_id, sizeof l->user_id);
    l->rpm = pg_col_int(r, i, 1);
    l->tpm = pg_col_int(r, i, 2);
    l->monthly_tokens = pg_col_int(r, i, 3);
    l->monthly_cost_micros = pg_col_int(r, i, 4);
    l->updated_at = pg_col_int(r, i, 5);
}

typedef void (*store_pg_reader)(const PGresult *r, int row, void *out);

/* Run a query expecting at most one row: read it into out (size bytes,
 * zeroed on any error), or APP_ENOTFOUND. */
static enum app_err store_pg_get_one(struct store_pg *s, const char *sql,
                                     const struct pg_params *p, const char *what,
                                     store_pg_reader reader, void *out, size_t size)
{
    enum app_err e;
    memset(out, 0, size);
    PGresult *r = store_pg_op(s, sql, p, what, &e);
    if (!r)
        return e;
    if (PQntuples(r) > 0) {
        reader(r, 0, out);
    } else {
        store_set_error(&s->base, "%s: not found", what);
        e = APP_ENOTFOUND;
    }
    PQclear(r);
    return e;
}

/* Run a query, collecting its rows of elem bytes into a new array (*out NULL
 * when empty). */
static enum app_err store_pg_get_all(struct store_pg *s, const char *sql,
                                     const struct pg_params *p, const char *what, size_t elem,
                                     store_pg_reader reader, void **out, size_t *n)
{
    enum app_err e;
    *out = NULL;
    *n = 0;
    PGresult *r = store_pg_op(s, sql, p, what, &e);
    if (!r)
        return e;
    int rows = PQntuples(r);
    if (rows > 0) {
        char *arr = xcalloc((size_t)rows, elem);
        for (int i = 0; i < rows; i++)
            reader(r, i, arr + (size_t)i * elem);
        *out = arr;
        *n = (size_t)rows;
    }
    PQclear(r);
    return APP_OK;
}

/* Run a statement that returns no rows; *changes (may be NULL) receives the
 * number of rows it changed. */
static enum app_err store_pg_run(struct store_pg *s, const char *sql, const struct pg_params *p,
                                 const char *what, int64_t *changes)
{
    enum app_err e;
    PGresult *r = store_pg_op(s, sql, p, what, &e);
    if (!r)
        return e;
    if (changes)
        *changes = (int64_t)strtoll(PQcmdTuples(r), NULL, 10);
    PQclear(r);
    return APP_OK;
}

/* An UPDATE/DELETE that must hit one row: APP_ENOTFOUND if none. */
static enum app_err store_pg_run_one(struct store_pg *s, const char *sql,
                                     const struct pg_params *p, const char *what)
{
    int64_t changes = 0;
    enum app_err e = store_pg_run(s, sql, p, what, &changes);
    if (e == APP_OK && changes == 0) {
        store_set_error(&s->base, "%s: not found", what);
        e = APP_ENOTFOUND;
    }
    return e;
}

/* A query yielding one row of count integers (an aggregate); out[] entries
 * may be NULL and are zeroed on error. */
static enum app_err store_pg_ints(struct store_pg *s, const char *sql, const struct pg_params *p,
                                  const char *what, int64_t *const out[], int count)
{
    enum app_err e;
    PGresult *r = store_pg_op(s, sql, p, what, &e);
    for (int i = 0; i < count; i++) {
        if (out[i])
            *out[i] = (r && PQntuples(r) > 0 && i < PQnfields(r)) ? pg_col_int(r, 0, i) : 0;
    }
    PQclear(r);
    return e;
}

static void store_pg_pick_id(const char *given, char out[STORE_ID_LEN + 1])
{
    if (given && *given)
        snprintf(out, STORE_ID_LEN + 1, "%s", given);
    else
        ids_new(out);
}

/* ---- lifecycle ----------------------------------------------------------- */

static void store_pg_close(struct store *st)
{
    struct store_pg *s = store_pg_of(st);
    PQfinish(s->conn); /* the server rolls back an open transaction */
    free(s);
}

/* The schema version (0 without schema_migrations), with plain statements
 * (no savepoint: callers run it where that is safe). */
static enum app_err store_pg_version_now(struct store_pg *s, int64_t *v)
{
    enum app_err e;
    PGresult *r = store_pg_exec(s, SQL_SCHEMA_TABLE_EXISTS, NULL, "schema_version", &e);
    if (!r)
        return e;
    bool exists = pg_col_int(r, 0, 0) != 0;
    PQclear(r);
    *v = 0;
    if (!exists)
        return APP_OK;
    r = store_pg_exec(s, SQL_SCHEMA_VERSION, NULL, "schema_version", &e);
    if (!r)
        return e;
    *v = pg_col_int(r, 0, 0);
    PQclear(r);
    return APP_OK;
}

static int store_pg_schema_version(struct store *st)
{
    struct store_pg *s = store_pg_of(st);
    int64_t v = 0;
    bool outer;
    enum app_err e = store_pg_tx_begin(s, &outer, "schema_version");
    if (e != APP_OK)
        return -1;
    e = store_pg_version_now(s, &v);
    e = store_pg_tx_end(s, outer, e, "schema_version");
    return e == APP_OK ? (int)v : -1;
}

/* One migration step in its own transaction, under the migration advisory
 * lock (so several instances migrating at once take turns): make sure
 * schema_migrations exists, read the version, and apply m unless it is
 * already there (m NULL: only read). *v receives the version found. */
static enum app_err store_pg_migrate_step(struct store_pg *s, const struct store_migration *m,
                                          int64_t *v)
{
    enum app_err e = store_pg_cmd(s, PG_BEGIN, "migrate begin");
    if (e != APP_OK)
        return e;
    e = store_pg_cmd(s, "SELECT pg_advisory_xact_lock(" PG_LOCK_MIGRATE ")", "migrate lock");
    if (e == APP_OK)
        e = store_pg_cmd(s, SQL_SCHEMA_CREATE, "migrate");
    if (e == APP_OK)
        e = store_pg_version_now(s, v);
    if (e == APP_OK && m && *v < m->version) {
        /* the migration text is a constant of several statements */
        PGresult *r = PQexec(s->conn, m->sql);
        if (PQresultStatus(r) != PGRES_COMMAND_OK && PQresultStatus(r) != PGRES_TUPLES_OK) {
            char what[64];
            snprintf(what, sizeof what, "migration %s", m->name);
            store_pg_fail(s, r, what);
            e = APP_ESTORE;
        }
        PQclear(r);
        if (e == APP_OK) {
            struct pg_params p = { 0 };
            pg_int(&p, m->version);
            pg_int(&p, now_ms());
            PQclear(store_pg_exec(s, SQL_SCHEMA_RECORD, &p, "migration record", &e));
        }
    }
    return store_pg_tx_end(s, true, e, "migrate commit");
}

static enum app_err store_pg_migrate(struct store *st, int *from, int *to)
{
    struct store_pg *s = store_pg_of(st);
    enum app_err e;
    int64_t v = 0;
    const struct store_migration *last = &store_pg_migrations[store_pg_migrations_count - 1];

    if (from)
        *from = -1;
    if (to)
        *to = -1;
    e = store_pg_ready(s, "migrate");
    if (e != APP_OK)
        return e;
    if (store_pg_in_tx(s)) {
        store_set_error(st, "migrate: called inside a transaction");
        return APP_ESTORE;
    }
    e = store_pg_migrate_step(s, NULL, &v);
    if (e != APP_OK)
        return e;
    if (from)
        *from = (int)v;
    if (v > last->version) {
        store_set_error(st, "database schema version %lld is newer than this program's (%d)",
                        (long long)v, last->version);
        return APP_ESTORE;
    }
    for (size_t i = 0; i < store_pg_migrations_count && e == APP_OK; i++) {
        if (store_pg_migrations[i].version > v)
            e = store_pg_migrate_step(s, &store_pg_migrations[i], &v);
    }
    if (e != APP_OK)
        return e;
    e = store_pg_migrate_step(s, NULL, &v);
    if (e == APP_OK && to)
        *to = (int)v;
    return e;
}

static enum app_err store_pg_ping(struct store *st)
{
    struct store_pg *s = store_pg_of(st);
    int64_t v = 0;
    int64_t *const out[] = { &v };
    return store_pg_ints(s, "SELECT 1", NULL, "ping", out, 1);
}

static enum app_err store_pg_begin(struct store *st)
{
    struct store_pg *s = store_pg_of(st);
    if (store_pg_in_tx(s)) {
        store_set_error(st, "begin: a transaction is already open");
        return APP_ESTORE;
    }
    s->user_tx = false;
    enum app_err e = store_pg_ready(s, "begin");
    if (e == APP_OK)
        e = store_pg_cmd(s, PG_BEGIN, "begin");
    s->user_tx = e == APP_OK;
    return e;
}

static enum app_err store_pg_commit(struct store *st)
{
    struct store_pg *s = store_pg_of(st);
    enum app_err e;
    s->user_tx = false;
    switch (PQtransactionStatus(s->conn)) {
    case PQTRANS_IDLE:
        store_set_error(st, "commit: no transaction is open");
        return APP_ESTORE;
    case PQTRANS_INERROR:
        store_pg_quiet(s, "ROLLBACK");
        store_set_error(st, "commit: the transaction had failed and was rolled back");
        return APP_ESTORE;
    case PQTRANS_INTRANS:
        e = store_pg_cmd(s, "COMMIT", "commit");
        if (store_pg_in_tx(s))
            store_pg_quiet(s, "ROLLBACK");
        return e;
    default:
        store_set_error(st, "commit: connection lost");
        return APP_ESTORE;
    }
}

static void store_pg_rollback(struct store *st)
{
    struct store_pg *s = store_pg_of(st);
    s->user_tx = false;
    if (store_pg_in_tx(s))
        store_pg_quiet(s, "ROLLBACK");
}

/* ---- users --------------------------------------------------------------- */

static enum app_err store_pg_user_create(struct store *st, struct store_user *u,
                                         bool first_is_admin)
{
    struct store_pg *s = store_pg_of(st);
    char id[STORE_ID_LEN + 1];
    int64_t now = now_ms();
    int64_t created = u->created_at ? u->created_at : now;
    int64_t updated = u->updated_at ? u->updated_at : created;
    bool admin = u->is_admin;
    struct pg_params p = { 0 };
    enum app_err e;

    store_pg_pick_id(u->id, id);
    pg_text(&p, id);
    pg_text(&p, u->email);
    pg_text(&p, u->name);
    pg_text(&p, u->password_hash);
    pg_bool(&p, u->is_admin);
    pg_int(&p, created);
    pg_int(&p, updated);
    pg_bool(&p, first_is_admin);
    if (!first_is_admin) {
        PGresult *r = store_pg_op(s, SQL_USER_INSERT, &p, "user_create", &e);
        if (r)
            admin = pg_col_bool(r, 0, 0);
        PQclear(r);
    } else {
        /* "no user yet" is decided under a lock that every first_is_admin
         * creation takes, and read by a statement started after taking it */
        bool outer;
        e = store_pg_tx_begin(s, &outer, "user_create");
        if (e != APP_OK)
            return e;
        e = store_pg_cmd(s, "SELECT pg_advisory_xact_lock(" PG_LOCK_FIRST_ADMIN ")",
                         "user_create lock");
        if (e == APP_OK) {
            PGresult *r = store_pg_exec(s, SQL_USER_INSERT, &p, "user_create", &e);
            if (r)
                admin = pg_col_bool(r, 0, 0);
            PQclear(r);
        }
        e = store_pg_tx_end(s, outer, e, "user_create");
    }
    if (e == APP_OK) {
        memcpy(u->id, id, sizeof id);
        u->is_admin = admin;
        u->created_at = created;
        u->updated_at = updated;
    }
    return e;
}

static enum app_err store_pg_user_get(struct store *st, const char *id, struct store_user *out)
{
    struct pg_params p = { 0 };
    pg_text(&p, id);
    return store_pg_get_one(store_pg_of(st), SQL_USER_GET, &p, "user_get", store_pg_read_user,
                            out, sizeof *out);
}

static enum app_err store_pg_user_get_by_email(struct store *st, const char *email,
                                               struct store_user *out)
{
    struct pg_params p = { 0 };
    pg_text(&p, email);
    return store_pg_get_one(store_pg_of(st), SQL_USER_GET_BY_EMAIL, &p, "user_get_by_email",
                            store_pg_read_user, out, sizeof *out);
}

static enum app_err store_pg_user_set_password(struct store *st, const char *id,
                                               const char *password_hash)
{
    struct pg_params p = { 0 };
    pg_text(&p, id);
    pg_text(&p, password_hash);
    pg_int(&p, now_ms());
    return store_pg_run_one(store_pg_of(st), SQL_USER_SET_PASSWORD, &p, "user_set_password");
}

static enum app_err store_pg_user_count(struct store *st, int64_t *out)
{
    int64_t *const outs[] = { out };
    return store_pg_ints(store_pg_of(st), SQL_USER_COUNT, NULL, "user_count", outs, 1);
}

/* ---- sessions ------------------------------------------------------------ */

static enum app_err store_pg_session_create(struct store *st, struct store_session *se)
{
    char id[STORE_ID_LEN + 1];
    int64_t now = now_ms();
    int64_t created = se->created_at ? se->created_at : now;
    int64_t seen = se->last_seen_at ? se->last_seen_at : created;
    struct pg_params p = { 0 };

    if (!se->token_hash[0]) {
        store_set_error(st, "session_create: empty token hash");
        return APP_EINVAL;
    }
    store_pg_pick_id(se->id, id);
    pg_text(&p, id);
    pg_text(&p, se->user_id);
    pg_text(&p, se->token_hash);
    pg_text(&p, se->user_agent);
    pg_text(&p, se->ip);
    pg_int(&p, created);
    pg_int(&p, seen);
    pg_int(&p, se->expires_at);
    enum app_err e = store_pg_run(store_pg_of(st), SQL_SESSION_INSERT, &p, "session_create", NULL);
    if (e == APP_OK) {
        memcpy(se->id, id, sizeof id);
        se->created_at = created;
        se->last_seen_at = seen;
    }
    return e;
}

static enum app_err store_pg_session_get_by_hash(struct store *st, const char *token_hash,
                                                 int64_t now, struct store_session *out)
{
    struct pg_params p = { 0 };
    pg_text(&p, token_hash);
    pg_int(&p, now);
    return store_pg_get_one(store_pg_of(st), SQL_SESSION_GET_BY_HASH, &p, "session_get_by_hash",
                            store_pg_read_session, out, sizeof *out);
}

static enum app_err store_pg_session_touch(struct store *st, const char *id, int64_t now,
                                           int64_t expires_at)
{
    struct pg_params p = { 0 };
    pg_text(&p, id);
    pg_int(&p, now);
    pg_int(&p, expires_at);
    return store_pg_run_one(store_pg_of(st), SQL_SESSION_TOUCH, &p, "session_touch");
}

static enum app_err store_pg_session_list(struct store *st, const char *user_id, int64_t now,
                                          struct store_session **out, size_t *n)
{
    struct pg_params p = { 0 };
    pg_text(&p, user_id);
    pg_int(&p, now);
    return store_pg_get_all(store_pg_of(st), SQL_SESSION_LIST, &p, "session_list", sizeof **out,
                            store_pg_read_session, (void **)out, n);
}

static enum app_err store_pg_session_delete(struct store *st, const char *user_id, const char *id)
{
    struct pg_params p = { 0 };
    pg_text(&p, id);
    pg_text(&p, user_id);
    return store_pg_run_one(store_pg_of(st), SQL_SESSION_DELETE, &p, "session_delete");
}

static enum app_err store_pg_session_delete_all(struct store *st, const char *user_id,
                                                const char *keep_id)
{
    struct pg_params p = { 0 };
    pg_text(&p, user_id);
    pg_ref(&p, keep_id);
    return store_pg_run(store_pg_of(st), SQL_SESSION_DELETE_ALL, &p, "session_delete_all", NULL);
}

static enum app_err store_pg_session_purge(struct store *st, int64_t now, int64_t *n)
{
    struct pg_params p = { 0 };
    int64_t changes = 0;
    if (n)
        *n = 0;
    pg_int(&p, now);
    enum app_err e = store_pg_run(store_pg_of(st), SQL_SESSION_PURGE, &p, "session_purge",
                                  &changes);
    if (e == APP_OK && n)
        *n = changes;
    return e;
}

/* ---- provider connections ------------------------------------------------ */

static enum app_err store_pg_conn_upsert(struct store *st, struct store_conn *c)
{
    struct store_pg *s = store_pg_of(st);
    char id[STORE_ID_LEN + 1];
    struct pg_params p = { 0 };
    enum app_err e;

    if (c->workspace_id[0]) {
        store_set_error(st, "conn_upsert: only personal connections are supported");
        return APP_EINVAL;
    }
    store_pg_pick_id(c->id, id);
    pg_text(&p, id);
    pg_text(&p, c->owner_id);
    pg_text(&p, c->name);
    pg_text(&p, c->base_url);
    pg_blob(&p, c->key_ct, c->key_ct_len);
    pg_int(&p, c->key_version);
    pg_ref(&p, c->key_last4);
    pg_int(&p, now_ms());
    PGresult *r = store_pg_op(s, SQL_CONN_UPSERT, &p, "conn_upsert", &e);
    if (!r)
        return e;
    if (PQntuples(r) > 0) {
        pg_col_fixed(r, 0, 0, c->id, sizeof c->id);
        c->created_at = pg_col_int(r, 0, 1);
        c->updated_at = pg_col_int(r, 0, 2);
    } else {
        store_set_error(st, "conn_upsert: no row returned");
        e = APP_ESTORE;
    }
    PQclear(r);
    return e;
}

static enum app_err store_pg_conn_get_default(struct store *st, const char *owner_id,
                                              struct store_conn *out)
{
    struct pg_params p = { 0 };
    pg_text(&p, owner_id);
    return store_pg_get_one(store_pg_of(st), SQL_CONN_GET_DEFAULT, &p, "conn_get_default",
                            store_pg_read_conn, out, sizeof *out);
}

static enum app_err store_pg_conn_delete_default(struct store *st, const char *owner_id)
{
    struct pg_params p = { 0 };
    pg_text(&p, owner_id);
    return store_pg_run_one(store_pg_of(st), SQL_CONN_DELETE_DEFAULT, &p, "conn_delete_default");
}

static enum app_err store_pg_conn_list_all(struct store *st, struct store_conn **out, size_t *n)
{
    return store_pg_get_all(store_pg_of(st), SQL_CONN_LIST_ALL, NULL, "conn_list_all",
                            sizeof **out, store_pg_read_conn, (void **)out, n);
}

static enum app_err store_pg_conn_set_key(struct store *st, const char *id,
                                          const unsigned char *ct, size_t ct_len,
                                          int key_version)
{
    struct pg_params p = { 0 };
    pg_text(&p, id);
    pg_blob(&p, ct, ct_len);
    pg_int(&p, key_version);
    pg_int(&p, now_ms());
    return store_pg_run_one(store_pg_of(st), SQL_CONN_SET_KEY, &p, "conn_set_key");
}

/* ---- chats --------------------------------------------------------------- */

static enum app_err store_pg_chat_create(struct store *st, struct store_chat *c)
{
    char id[STORE_ID_LEN + 1];
    int64_t now = now_ms(), changes = 0;
    struct pg_params p = { 0 };

    if (c->current_leaf_id[0]) {
        store_set_error(st, "chat_create: a new chat has no current leaf");
        return APP_EINVAL;
    }
    store_pg_pick_id(c->id, id);
    pg_text(&p, id);
    pg_text(&p, c->owner_id);
    pg_ref(&p, c->workspace_id);
    pg_ref(&p, c->folder_id);
    pg_text(&p, c->title);
    pg_text(&p, c->model);
    pg_text(&p, c->system_prompt);
    pg_text(&p, c->params);
    pg_int(&p, now);
    enum app_err e = store_pg_run(store_pg_of(st), SQL_CHAT_INSERT, &p, "chat_create", &changes);
    if (e == APP_OK && changes == 0) {
        store_set_error(st, "folder %s: no such folder of this user", c->folder_id);
        e = APP_EINVAL;
    }
    if (e == APP_OK) {
        memcpy(c->id, id, sizeof id);
        c->created_at = now;
        c->updated_at = now;
    }
    return e;
}

static enum app_err store_pg_chat_get(struct store *st, const char *owner_id, const char *id,
                                      struct store_chat *out)
{
    struct pg_params p = { 0 };
    pg_text(&p, id);
    pg_text(&p, owner_id);
    return store_pg_get_one(store_pg_of(st), SQL_CHAT_GET, &p, "chat_get", store_pg_read_chat,
                            out, sizeof *out);
}

static enum app_err store_pg_chat_list(struct store *st, const char *owner_id, int limit,
                                       int64_t before_ts, const char *before_id,
                                       struct store_chat **out, size_t *n)
{
    struct pg_params p = { 0 };
    *out = NULL;
    *n = 0;
    if (limit < 1) {
        store_set_error(st, "chat_list: limit must be positive");
        return APP_EINVAL;
    }
    pg_text(&p, owner_id);
    if (before_id) {
        pg_int(&p, before_ts);
        pg_text(&p, before_id);
    }
    pg_int(&p, limit);
    return store_pg_get_all(store_pg_of(st), before_id ? SQL_CHAT_LIST_BEFORE : SQL_CHAT_LIST_FIRST,
                            &p, "chat_list", sizeof **out, store_pg_read_chat, (void **)out, n);
}

static enum app_err store_pg_chat_update(struct store *st, const char *owner_id, const char *id,
                                         const struct store_chat_patch *patch)
{
    static const struct store_chat_patch none;
    struct store_pg *s = store_pg_of(st);
    struct pg_params p = { 0 };
    int64_t changes = 0;
    enum app_err e;

    if (!patch)
        patch = &none;
    pg_text(&p, id);
    pg_text(&p, owner_id);
    pg_bool(&p, patch->set_title);
    pg_text(&p, patch->title);
    pg_bool(&p, patch->set_model);
    pg_text(&p, patch->model);
    pg_bool(&p, patch->set_system_prompt);
    pg_text(&p, patch->system_prompt);
    pg_bool(&p, patch->set_params);
    pg_text(&p, patch->params);
    pg_bool(&p, patch->set_folder);
    pg_ref(&p, patch->folder_id);
    pg_bool(&p, patch->set_leaf);
    pg_ref(&p, patch->current_leaf_id);
    e = store_pg_run(s, SQL_CHAT_UPDATE, &p, "chat_update", &changes);
    if (e != APP_OK || changes > 0)
        return e;

    /* nothing updated: say why, in the order store_sqlite.c checks */
    int64_t found = 0, folder_ok = 0, leaf_ok = 0;
    int64_t *const why[] = { &found, &folder_ok, &leaf_ok };
    struct pg_params w = { 0 };
    pg_text(&w, id);
    pg_text(&w, owner_id);
    pg_bool(&w, patch->set_folder);
    pg_ref(&w, patch->folder_id);
    pg_bool(&w, patch->set_leaf);
    pg_ref(&w, patch->current_leaf_id);
    e = store_pg_ints(s, SQL_CHAT_UPDATE_WHY, &w, "chat_update", why, 3);
    if (e != APP_OK)
        return e;
    if (!found) {
        store_set_error(st, "chat_update: not found");
        return APP_ENOTFOUND;
    }
    if (!folder_ok) {
        store_set_error(st, "folder %s: no such folder of this user", patch->folder_id);
        return APP_EINVAL;
    }
    if (!leaf_ok) {
        store_set_error(st, "chat_update: leaf %s is not a message of this chat",
                        patch->current_leaf_id);
        return APP_EINVAL;
    }
    store_set_error(st, "chat_update: not found");
    return APP_ENOTFOUND; /* deleted meanwhile */
}

static enum app_err store_pg_chat_delete(struct store *st, const char *owner_id, const char *id)
{
    struct pg_params p = { 0 };
    pg_text(&p, id);
    pg_text(&p, owner_id);
    return store_pg_run_one(store_pg_of(st), SQL_CHAT_DELETE, &p, "chat_delete");
}

static enum app_err store_pg_chat_touch(struct store *st, const char *id, int64_t now)
{
    struct pg_params p = { 0 };
    pg_text(&p, id);
    pg_int(&p, now);
    return store_pg_run_one(store_pg_of(st), SQL_CHAT_TOUCH, &p, "chat_touch");
}

/* ---- messages ------------------------------------------------------------ */

static enum app_err store_pg_message_create(struct store *st, struct store_message *m)
{
    char id[STORE_ID_LEN + 1];
    int64_t created = m->created_at ? m->created_at : now_ms();
    const char *status = m->status[0] ? m->status : "complete";
    int64_t inserted = 0;
    int64_t *const out[] = { &inserted };
    struct pg_params p = { 0 };

    store_pg_pick_id(m->id, id);
    pg_text(&p, id);
    pg_text(&p, m->chat_id);
    pg_ref(&p, m->parent_id);
    pg_text(&p, m->role);
    pg_text(&p, m->content);
    pg_text(&p, m->model);
    pg_text(&p, status);
    pg_text(&p, m->error);
    pg_tokens(&p, m->prompt_tokens);
    pg_tokens(&p, m->completion_tokens);
    pg_int(&p, created);
    enum app_err e = store_pg_ints(store_pg_of(st), SQL_MSG_INSERT, &p, "message_create", out, 1);
    if (e == APP_OK && inserted == 0) {
        store_set_error(st, "message_create: parent %s is not a message of chat %s",
                        m->parent_id, m->chat_id);
        e = APP_EINVAL;
    }
    if (e == APP_OK) {
        memcpy(m->id, id, sizeof id);
        if (!m->status[0])
            snprintf(m->status, sizeof m->status, "%s", status);
        m->created_at = created;
        m->updated_at = created;
    }
    return e;
}

static enum app_err store_pg_message_get(struct store *st, const char *owner_id, const char *id,
                                         struct store_message *out)
{
    struct pg_params p = { 0 };
    pg_text(&p, id);
    pg_text(&p, owner_id);
    return store_pg_get_one(store_pg_of(st), SQL_MSG_GET, &p, "message_get",
                            store_pg_read_message, out, sizeof *out);
}

static enum app_err store_pg_message_list(struct store *st, const char *chat_id,
                                          struct store_message **out, size_t *n)
{
    struct pg_params p = { 0 };
    pg_text(&p, chat_id);
    return store_pg_get_all(store_pg_of(st), SQL_MSG_LIST, &p, "message_list", sizeof **out,
                            store_pg_read_message, (void **)out, n);
}

static enum app_err store_pg_message_tail(struct store *st, const char *chat_id,
                                          const char *leaf_id, int n, struct store_message **out,
                                          size_t *count, int64_t *total)
{
    struct store_pg *s = store_pg_of(st);
    struct pg_params p = { 0 };
    enum app_err e;

    *out = NULL;
    *count = 0;
    *total = 0;
    pg_text(&p, leaf_id);
    pg_text(&p, chat_id);
    pg_int(&p, n);
    PGresult *r = store_pg_op(s, SQL_MSG_TAIL, &p, "message_tail", &e);
    if (!r)
        return e;
    int rows = PQntuples(r);
    if (rows > 0) {
        struct store_message *arr = xcalloc((size_t)rows, sizeof *arr);
        for (int i = 0; i < rows; i++)
            store_pg_read_message(r, i, &arr[i]);
        *out = arr;
        *count = (size_t)rows;
        *total = pg_col_int(r, 0, 12); /* the chat's count, on every row */
        PQclear(r);
        return APP_OK;
    }
    PQclear(r);
    /* nothing on the branch: the total alone */
    struct pg_params q = { 0 };
    pg_text(&q, chat_id);
    r = store_pg_op(s, SQL_MSG_COUNT, &q, "message_tail", &e);
    if (!r)
        return e;
    *total = pg_col_int(r, 0, 0);
    PQclear(r);
    return APP_OK;
}

static enum app_err store_pg_message_path(struct store *st, const char *id,
                                          struct store_message **out, size_t *n)
{
    struct pg_params p = { 0 };
    pg_text(&p, id);
    enum app_err e = store_pg_get_all(store_pg_of(st), SQL_MSG_PATH, &p, "message_path",
                                      sizeof **out, store_pg_read_message, (void **)out, n);
    if (e == APP_OK && *n == 0) {
        store_set_error(st, "message_path: not found");
        e = APP_ENOTFOUND;
    }
    return e;
}

static enum app_err store_pg_message_update(struct store *st, const char *id, const char *content,
                                            const char *status, const char *error,
                                            int64_t prompt_tokens, int64_t completion_tokens)
{
    struct pg_params p = { 0 };
    pg_text(&p, id);
    pg_text(&p, content);
    pg_ref(&p, status);
    pg_text(&p, error);
    pg_int(&p, prompt_tokens);
    pg_int(&p, completion_tokens);
    pg_int(&p, now_ms());
    return store_pg_run_one(store_pg_of(st), SQL_MSG_UPDATE, &p, "message_update");
}

static enum app_err store_pg_message_newest_leaf(struct store *st, const char *id,
                                                 char out[STORE_ID_LEN + 1])
{
    struct store_pg *s = store_pg_of(st);
    struct pg_params p = { 0 };
    enum app_err e;

    out[0] = '\0';
    pg_text(&p, id);
    PGresult *r = store_pg_op(s, SQL_MSG_NEWEST_LEAF, &p, "message_newest_leaf", &e);
    if (!r)
        return e;
    if (PQntuples(r) > 0) {
        pg_col_fixed(r, 0, 0, out, STORE_ID_LEN + 1);
    } else {
        store_set_error(st, "message_newest_leaf: not found");
        e = APP_ENOTFOUND;
    }
    PQclear(r);
    return e;
}

static enum app_err store_pg_message_mark_interrupted(struct store *st, int64_t *n)
{
    struct pg_params p = { 0 };
    int64_t changes = 0;
    if (n)
        *n = 0;
    pg_int(&p, now_ms());
    enum app_err e = store_pg_run(store_pg_of(st), SQL_MSG_MARK_INTERRUPTED, &p,
                                  "message_mark_interrupted", &changes);
    if (e == APP_OK && n)
        *n = changes;
    return e;
}

/* ---- turn leases ---------------------------------------------------------- */

static enum app_err store_pg_lease_create(struct store *st, const char *message_id,
                                          const char *instance_id, int64_t expires_at)
{
    struct pg_params p = { 0 };
    pg_text(&p, message_id);
    pg_text(&p, instance_id);
    pg_int(&p, expires_at);
    return store_pg_run(store_pg_of(st), SQL_LEASE_CREATE, &p, "lease_create", NULL);
}

static enum app_err store_pg_lease_renew(struct store *st, const char *instance_id,
                                         int64_t expires_at, char (**stop_ids)[STORE_ID_LEN + 1],
                                         size_t *n)
{
    struct store_pg *s = store_pg_of(st);
    struct pg_params p = { 0 };
    pg_text(&p, instance_id);
    pg_int(&p, expires_at);
    enum app_err e = store_pg_run(s, SQL_LEASE_RENEW, &p, "lease_renew", NULL);
    if (e != APP_OK)
        return e;
    struct pg_params q = { 0 };
    pg_text(&q, instance_id);
    PGresult *r = store_pg_op(s, SQL_LEASE_STOPS, &q, "lease_renew", &e);
    if (!r)
        return e;
    int rows = PQntuples(r);
    if (rows > 0) {
        char(*ids)[STORE_ID_LEN + 1] = xcalloc((size_t)rows, sizeof *ids);
        for (int i = 0; i < rows; i++)
            pg_col_fixed(r, i, 0, ids[i], STORE_ID_LEN + 1);
        *stop_ids = ids;
        *n = (size_t)rows;
    }
    PQclear(r);
    return APP_OK;
}

static enum app_err store_pg_lease_progress(struct store *st, const char *message_id,
                                            int64_t events)
{
    struct pg_params p = { 0 };
    pg_text(&p, message_id);
    pg_int(&p, events);
    return store_pg_run(store_pg_of(st), SQL_LEASE_PROGRESS, &p, "lease_progress", NULL);
}

static enum app_err store_pg_lease_delete(struct store *st, const char *message_id)
{
    struct pg_params p = { 0 };
    pg_text(&p, message_id);
    return store_pg_run(store_pg_of(st), SQL_LEASE_DELETE, &p, "lease_delete", NULL);
}

static enum app_err store_pg_lease_request_stop(struct store *st, const char *message_id)
{
    struct pg_params p = { 0 };
    pg_text(&p, message_id);
    return store_pg_run_one(store_pg_of(st), SQL_LEASE_STOP_REQ, &p, "lease_request_stop");
}

static void store_pg_read_lease(const PGresult *r, int i, void *out)
{
    struct store_lease *l = out;
    pg_col_fixed(r, i, 0, l->instance_id, sizeof l->instance_id);
    l->expires_at = pg_col_int(r, i, 1);
    l->events = pg_col_int(r, i, 2);
    l->stop_requested = pg_col_int(r, i, 3) != 0;
}

static enum app_err store_pg_lease_get(struct store *st, const char *message_id,
                                       struct store_lease *out)
{
    struct pg_params p = { 0 };
    pg_text(&p, message_id);
    return store_pg_get_one(store_pg_of(st), SQL_LEASE_GET, &p, "lease_get", store_pg_read_lease,
                            out, sizeof *out);
}

static enum app_err store_pg_lease_expire(struct store *st, int64_t now, const char *dead_instance,
                                          int64_t *n)
{
    struct store_pg *s = store_pg_of(st);
    int64_t changes = 0;
    enum app_err e = store_pg_begin(st);
    if (e != APP_OK)
        return e;
    struct pg_params p = { 0 };
    pg_int(&p, now);
    pg_text(&p, dead_instance);
    e = store_pg_run(s, SQL_LEASE_EXPIRE_MSGS, &p, "lease_expire", &changes);
    if (e == APP_OK)
        e = store_pg_run(s, SQL_LEASE_EXPIRE, &p, "lease_expire", NULL);
    if (e == APP_OK)
        e = store_pg_commit(st);
    else
        store_pg_rollback(st);
    if (e == APP_OK && n)
        *n = changes;
    return e;
}

/* ==== gateway (schema v2) ================================================== */

static enum app_err store_pg_user_list(struct store *st, struct store_user **out, size_t *n)
{
    return store_pg_get_all(store_pg_of(st), SQL_USER_LIST, NULL, "user_list", sizeof **out,
                            store_pg_read_user, (void **)out, n);
}

/* ---- API tokens ---------------------------------------------------------- */

static enum app_err store_pg_token_create(struct store *st, struct store_token *t)
{
    char id[STORE_ID_LEN + 1];
    int64_t created = t->created_at ? t->created_at : now_ms();
    struct pg_params p = { 0 };

    if (!t->token_hash[0]) {
        store_set_error(st, "token_create: empty token hash");
        return APP_EINVAL;
    }
    store_pg_pick_id(t->id, id);
    pg_text(&p, id);
    pg_text(&p, t->user_id);
    pg_text(&p, t->name);
    pg_text(&p, t->token_hash);
    pg_text(&p, t->prefix);
    pg_text(&p, t->models);
    pg_int(&p, t->rpm);
    pg_int(&p, t->tpm);
    pg_int(&p, t->expires_at);
    pg_int(&p, created);
    pg_int(&p, t->last_used_at);
    pg_int(&p, t->revoked_at);
    enum app_err e = store_pg_run(store_pg_of(st), SQL_TOKEN_INSERT, &p, "token_create", NULL);
    if (e == APP_OK) {
        memcpy(t->id, id, sizeof id);
        t->created_at = created;
    }
    return e;
}

static enum app_err store_pg_token_get_by_hash(struct store *st, const char *token_hash,
                                               int64_t now, struct store_token *out)
{
    struct pg_params p = { 0 };
    pg_text(&p, token_hash);
    pg_int(&p, now);
    return store_pg_get_one(store_pg_of(st), SQL_TOKEN_GET_BY_HASH, &p, "token_get_by_hash",
                            store_pg_read_token, out, sizeof *out);
}

static enum app_err store_pg_token_list(struct store *st, const char *user_id,
                                        struct store_token **out, size_t *n)
{
    struct pg_params p = { 0 };
    pg_text(&p, user_id);
    return store_pg_get_all(store_pg_of(st), SQL_TOKEN_LIST, &p, "token_list", sizeof **out,
                            store_pg_read_token, (void **)out, n);
}

static enum app_err store_pg_token_revoke(struct store *st, const char *user_id, const char *id,
                                          int64_t now)
{
    struct pg_params p = { 0 };
    if (now <= 0) { /* revoked_at 0 would read as active */
        store_set_error(st, "token_revoke: time must be positive");
        return APP_EINVAL;
    }
    pg_text(&p, id);
    pg_text(&p, user_id);
    pg_int(&p, now);
    return store_pg_run_one(store_pg_of(st), SQL_TOKEN_REVOKE, &p, "token_revoke");
}

static enum app_err store_pg_token_touch(struct store *st, const char *id, int64_t now)
{
    struct pg_params p = { 0 };
    pg_text(&p, id);
    pg_int(&p, now);
    return store_pg_run_one(store_pg_of(st), SQL_TOKEN_TOUCH, &p, "token_touch");
}

/* ---- key pool ------------------------------------------------------------ */

static enum app_err store_pg_pool_key_create(struct store *st, struct store_pool_key *k)
{
    char id[STORE_ID_LEN + 1];
    int64_t created = k->created_at ? k->created_at : now_ms();
    int64_t updated = k->updated_at ? k->updated_at : created;
    struct pg_params p = { 0 };

    store_pg_pick_id(k->id, id);
    pg_text(&p, id);
    pg_text(&p, k->name);
    pg_text(&p, k->base_url);
    pg_blob(&p, k->key_ct, k->key_ct_len);
    pg_int(&p, k->key_version);
    pg_ref(&p, k->key_last4);
    pg_int(&p, k->weight);
    pg_int(&p, k->rpm);
    pg_int(&p, k->tpm);
    pg_bool(&p, k->enabled);
    pg_text(&p, k->disabled_reason);
    pg_int(&p, created);
    pg_int(&p, updated);
    enum app_err e = store_pg_run(store_pg_of(st), SQL_POOL_KEY_INSERT, &p, "pool_key_create",
                                  NULL);
    if (e == APP_OK) {
        memcpy(k->id, id, sizeof id);
        k->created_at = created;
        k->updated_at = updated;
    }
    return e;
}

static enum app_err store_pg_pool_key_list(struct store *st, struct store_pool_key **out,
                                           size_t *n)
{
    return store_pg_get_all(store_pg_of(st), SQL_POOL_KEY_LIST, NULL, "pool_key_list",
                            sizeof **out, store_pg_read_pool_key, (void **)out, n);
}

static enum app_err store_pg_pool_key_get(struct store *st, const char *id,
                                          struct store_pool_key *out)
{
    struct pg_params p = { 0 };
    pg_text(&p, id);
    return store_pg_get_one(store_pg_of(st), SQL_POOL_KEY_GET, &p, "pool_key_get",
                            store_pg_read_pool_key, out, sizeof *out);
}

static enum app_err store_pg_pool_key_update(struct store *st, const struct store_pool_key *k)
{
    struct pg_params p = { 0 };
    pg_text(&p, k->id);
    pg_text(&p, k->name);
    pg_text(&p, k->base_url);
    pg_int(&p, k->weight);
    pg_int(&p, k->rpm);
    pg_int(&p, k->tpm);
    pg_bool(&p, k->enabled);
    pg_text(&p, k->disabled_reason);
    pg_int(&p, now_ms());
    return store_pg_run_one(store_pg_of(st), SQL_POOL_KEY_UPDATE, &p, "pool_key_update");
}

static enum app_err store_pg_pool_key_set_key(struct store *st, const char *id,
                                              const unsigned char *ct, size_t ct_len,
                                              int key_version, const char *last4)
{
    struct pg_params p = { 0 };
    pg_text(&p, id);
    pg_blob(&p, ct, ct_len);
    pg_int(&p, key_version);
    pg_ref(&p, last4);
    pg_int(&p, now_ms());
    return store_pg_run_one(store_pg_of(st), SQL_POOL_KEY_SET_KEY, &p, "pool_key_set_key");
}

static enum app_err store_pg_pool_key_delete(struct store *st, const char *id)
{
    struct pg_params p = { 0 };
    pg_text(&p, id);
    return store_pg_run_one(store_pg_of(st), SQL_POOL_KEY_DELETE, &p, "pool_key_delete");
}

/* ---- usage records ------------------------------------------------------- */

static enum app_err store_pg_usage_insert(struct store *st, struct store_usage *u)
{
    char id[STORE_ID_LEN + 1];
    int64_t created = u->created_at ? u->created_at : now_ms();
    struct pg_params p = { 0 };

    if (u->prompt_tokens < 0 || u->cached_tokens < 0 || u->completion_tokens < 0 ||
        u->cost_micros < 0) {
        store_set_error(st, "usage_insert: negative token count or cost");
        return APP_EINVAL;
    }
    store_pg_pick_id(u->id, id);
    pg_text(&p, id);
    pg_ref(&p, u->user_id);
    pg_ref(&p, u->token_id);
    pg_ref(&p, u->key_id);
    pg_ref(&p, u->key_source);
    pg_ref(&p, u->endpoint);
    pg_text(&p, u->model);
    pg_int(&p, u->prompt_tokens);
    pg_int(&p, u->cached_tokens);
    pg_int(&p, u->completion_tokens);
    pg_bool(&p, u->tokens_estimated);
    pg_int(&p, u->cost_micros);
    pg_int(&p, u->latency_ms);
    pg_int(&p, u->status);
    pg_int(&p, created);
    enum app_err e = store_pg_run(store_pg_of(st), SQL_USAGE_INSERT, &p, "usage_insert", NULL);
    if (e == APP_OK) {
        memcpy(u->id, id, sizeof id);
        u->created_at = created;
    }
    return e;
}

static enum app_err store_pg_usage_report(struct store *st, int64_t from, int64_t to,
                                          const char *user_id, struct store_usage_row **out,
                                          size_t *n)
{
    bool one = user_id && *user_id;
    struct pg_params p = { 0 };
    pg_int(&p, from);
    pg_int(&p, to);
    if (one)
        pg_text(&p, user_id);
    return store_pg_get_all(store_pg_of(st), one ? SQL_USAGE_REPORT_USER : SQL_USAGE_REPORT_ALL,
                            &p, "usage_report", sizeof **out, store_pg_read_usage_row,
                            (void **)out, n);
}

static enum app_err store_pg_usage_totals(struct store *st, const char *user_id, int64_t since,
                                          int64_t *tokens, int64_t *cost_micros)
{
    int64_t *const out[] = { tokens, cost_micros };
    struct pg_params p = { 0 };
    pg_text(&p, user_id);
    pg_int(&p, since);
    return store_pg_ints(store_pg_of(st), SQL_USAGE_TOTALS, &p, "usage_totals", out,
                         (int)COAI_ARRAY_LEN(out));
}

static enum app_err store_pg_usage_key_totals(struct store *st, const char *key_id,
                                              int64_t since, int64_t *requests, int64_t *tokens,
                                              int64_t *errors)
{
    int64_t *const out[] = { requests, tokens, errors };
    struct pg_params p = { 0 };
    pg_text(&p, key_id);
    pg_int(&p, since);
    return store_pg_ints(store_pg_of(st), SQL_USAGE_KEY_TOTALS, &p, "usage_key_totals", out,
                         (int)COAI_ARRAY_LEN(out));
}

/* ---- prices -------------------------------------------------------------- */

static enum app_err store_pg_price_list(struct store *st, struct store_price **out, size_t *n)
{
    return store_pg_get_all(store_pg_of(st), SQL_PRICE_LIST, NULL, "price_list", sizeof **out,
                            store_pg_read_price, (void **)out, n);
}

static enum app_err store_pg_price_upsert(struct store *st, const struct store_price *pr)
{
    struct pg_params p = { 0 };
    pg_text(&p, pr->model);
    pg_int(&p, pr->input_micros);
    pg_int(&p, pr->cached_input_micros);
    pg_int(&p, pr->output_micros);
    pg_int(&p, pr->updated_at ? pr->updated_at : now_ms());
    return store_pg_run(store_pg_of(st), SQL_PRICE_UPSERT, &p, "price_upsert", NULL);
}

static enum app_err store_pg_price_delete(struct store *st, const char *model)
{
    struct pg_params p = { 0 };
    pg_text(&p, model);
    return store_pg_run_one(store_pg_of(st), SQL_PRICE_DELETE, &p, "price_delete");
}

/* ---- per-user limits ----------------------------------------------------- */

static enum app_err store_pg_user_limits_get(struct store *st, const char *user_id,
                                             struct store_user_limits *out)
{
    struct pg_params p = { 0 };
    pg_text(&p, user_id);
    return store_pg_get_one(store_pg_of(st), SQL_LIMITS_GET, &p, "user_limits_get",
                            store_pg_read_limits, out, sizeof *out);
}

static enum app_err store_pg_user_limits_set(struct store *st, const struct store_user_limits *l)
{
    struct pg_params p = { 0 };
    pg_text(&p, l->user_id);
    pg_int(&p, l->rpm);
    pg_int(&p, l->tpm);
    pg_int(&p, l->monthly_tokens);
    pg_int(&p, l->monthly_cost_micros);
    pg_int(&p, l->updated_at ? l->updated_at : now_ms());
    return store_pg_run(store_pg_of(st), SQL_LIMITS_SET, &p, "user_limits_set", NULL);
}

/* ---- open ---------------------------------------------------------------- */

static const struct store_ops store_pg_ops = {
    .name = "postgres",
    .close = store_pg_close,
    .migrate = store_pg_migrate,
    .schema_version = store_pg_schema_version,
    .ping = store_pg_ping,
    .begin = store_pg_begin,
    .commit = store_pg_commit,
    .rollback = store_pg_rollback,
    .user_create = store_pg_user_create,
    .user_get = store_pg_user_get,
    .user_get_by_email = store_pg_user_get_by_email,
    .user_set_password = store_pg_user_set_password,
    .user_count = store_pg_user_count,
    .session_create = store_pg_session_create,
    .session_get_by_hash = store_pg_session_get_by_hash,
    .session_touch = store_pg_session_touch,
    .session_list = store_pg_session_list,
    .session_delete = store_pg_session_delete,
    .session_delete_all = store_pg_session_delete_all,
    .session_purge = store_pg_session_purge,
    .conn_upsert = store_pg_conn_upsert,
    .conn_get_default = store_pg_conn_get_default,
    .conn_delete_default = store_pg_conn_delete_default,
    .conn_list_all = store_pg_conn_list_all,
    .conn_set_key = store_pg_conn_set_key,
    .chat_create = store_pg_chat_create,
    .chat_get = store_pg_chat_get,
    .chat_list = store_pg_chat_list,
    .chat_update = store_pg_chat_update,
    .chat_delete = store_pg_chat_delete,
    .chat_touch = store_pg_chat_touch,
    .message_create = store_pg_message_create,
    .message_get = store_pg_message_get,
    .message_list = store_pg_message_list,
    .message_tail = store_pg_message_tail,
    .message_path = store_pg_message_path,
    .message_update = store_pg_message_update,
    .message_newest_leaf = store_pg_message_newest_leaf,
    .message_mark_interrupted = store_pg_message_mark_interrupted,
    .lease_create = store_pg_lease_create,
    .lease_renew = store_pg_lease_renew,
    .lease_progress = store_pg_lease_progress,
    .lease_delete = store_pg_lease_delete,
    .lease_request_stop = store_pg_lease_request_stop,
    .lease_get = store_pg_lease_get,
    .lease_expire = store_pg_lease_expire,
    .token_create = store_pg_token_create,
    .token_get_by_hash = store_pg_token_get_by_hash,
    .token_list = store_pg_token_list,
    .token_revoke = store_pg_token_revoke,
    .token_touch = store_pg_token_touch,
    .pool_key_create = store_pg_pool_key_create,
    .pool_key_list = store_pg_pool_key_list,
    .pool_key_get = store_pg_pool_key_get,
    .pool_key_update = store_pg_pool_key_update,
    .pool_key_set_key = store_pg_pool_key_set_key,
    .pool_key_delete = store_pg_pool_key_delete,
    .usage_insert = store_pg_usage_insert,
    .usage_report = store_pg_usage_report,
    .usage_totals = store_pg_usage_totals,
    .usage_key_totals = store_pg_usage_key_totals,
    .price_list = store_pg_price_list,
    .price_upsert = store_pg_price_upsert,
    .price_delete = store_pg_price_delete,
    .user_limits_get = store_pg_user_limits_get,
    .user_limits_set = store_pg_user_limits_set,
    .user_list = store_pg_user_list,
};

/* Server notices (e.g. "relation already exists, skipping") are not errors:
 * keep them off stderr. */
static void store_pg_notice(void *arg, const char *message)
{
    (void)arg;
    (void)message;
}

/* Replace every occurrence of secret (if any) in the string buf by "***". */
static void store_pg_scrub(char *buf, const char *secret, size_t slen)
{
    char *from = buf, *p;
    if (!secret || slen == 0)
        return;
    while ((p = memmem(from, strlen(from), secret, slen)) != NULL) {
        size_t keep = slen < 3 ? slen : 3;
        memset(p, '*', keep);
        memmove(p + keep, p + slen, strlen(p + slen) + 1);
        from = p + keep;
    }
}

/* A connection failure message for err without the password, whether the URL
 * gave it in the userinfo or as a parameter. */
static void store_pg_open_error(const char *url, const char *msg, char *err, size_t errlen)
{
    char buf[512];
    snprintf(buf, sizeof buf, "postgres: %s", msg && *msg ? msg : "cannot connect");
    size_t n = strlen(buf);
    while (n && (buf[n - 1] == '\n' || buf[n - 1] == ' '))
        buf[--n] = '\0';
    for (char *c = buf; *c; c++)
        if (*c == '\n')
            *c = ' ';

    PQconninfoOption *opts = PQconninfoParse(url, NULL);
    for (PQconninfoOption *o = opts; o && o->keyword; o++) {
        if (strcmp(o->keyword, "password") == 0 && o->val)
            store_pg_scrub(buf, o->val, strlen(o->val));
    }
    PQconninfoFree(opts);
    /* the raw (possibly percent-encoded) userinfo password, too */
    const char *scheme = strstr(url, "://");
    if (scheme) {
        const char *auth = scheme + 3;
        const char *end = auth + strcspn(auth, "/?#");
        const char *at = NULL;
        for (const char *c = auth; c < end; c++)
            if (*c == '@')
                at = c;
        const char *colon = at ? memchr(auth, ':', (size_t)(at - auth)) : NULL;
        if (colon)
            store_pg_scrub(buf, colon + 1, (size_t)(at - colon - 1));
    }
    if (err && errlen)
        snprintf(err, errlen, "%s", buf);
}

struct store *store_pg_open(const char *url, char *err, size_t errlen)
{
    static const char *const keys[] = { "dbname", "client_encoding", "fallback_application_name",
                                        NULL };
    const char *const vals[] = { url, "UTF8", "chatopenaii", NULL };
    /* libpq is loaded on first use (lib/lazy.h); a missing one is reported
     * here, as a problem with the configured store. */
    if (lazy_load(LAZY_PQ, err, errlen) != 0)
        return NULL;
    PGconn *conn = PQconnectdbParams(keys, vals, 1);

    if (!conn) {
        store_pg_open_error(url, "out of memory", err, errlen);
        return NULL;
    }
    if (PQstatus(conn) != CONNECTION_OK) {
        store_pg_open_error(url, PQerrorMessage(conn), err, errlen);
        PQfinish(conn);
        return NULL;
    }
    PQsetNoticeProcessor(conn, store_pg_notice, NULL);
    struct store_pg *s = xcalloc(1, sizeof *s);
    s->base.ops = &store_pg_ops;
    s->conn = conn;
    return &s->base;
}
