/* store_sqlite.c - the SQLite back end of store.h (libsqlite3 >= 3.35 for
 * RETURNING). One handle wraps one sqlite3 connection used by one thread;
 * several handles may share a file (WAL mode, busy_timeout). Every statement
 * is a fixed, cached prepared statement with bound parameters.
 */
#include "store_int.h"
#include "../lib/ids.h"

#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define STORE_SQLITE_BUSY_TIMEOUT_MS 5000
/* SQLite's own default: checkpoint once the WAL holds this many frames */
#define STORE_SQLITE_AUTOCHECKPOINT 1000

/* Commits of every connection of this process (see store_sqlite_commits). */
static _Atomic uint64_t store_sqlite_commit_count;

uint64_t store_sqlite_commits(void)
{
    return store_sqlite_commit_count;
}

/* Called by SQLite after a write transaction has committed (in WAL mode,
 * the only mode we run), so a reader that sees the new count sees the
 * data. Registering it replaces SQLite's automatic checkpoint, which is
 * therefore done here as SQLite would (passive, at 1,000 frames). */
static int store_sqlite_on_commit(void *arg, sqlite3 *db, const char *name, int frames)
{
    (void)arg;
    store_sqlite_commit_count++;
    if (frames >= STORE_SQLITE_AUTOCHECKPOINT)
        (void)sqlite3_wal_checkpoint_v2(db, name, SQLITE_CHECKPOINT_PASSIVE, NULL, NULL);
    return SQLITE_OK;
}

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
#define DEFAULT_CONN "owner_id = ?1 AND workspace_id IS NULL AND is_default = 1"
#define TOKEN_COLS \
    "id, user_id, name, token_hash, prefix, models, rpm, tpm, expires_at, created_at, " \
    "last_used_at, revoked_at"
#define POOL_KEY_COLS \
    "id, name, base_url, key_ct, key_version, key_last4, weight, rpm, tpm, enabled, " \
    "disabled_reason, created_at, updated_at"
#define PRICE_COLS "model, input_micros, cached_input_micros, output_micros, updated_at"
#define LIMITS_COLS "user_id, rpm, tpm, monthly_tokens, monthly_cost_micros, updated_at"
/* Usage grouped by UTC day, model and user over [?1, ?2); the email comes
 * from the (functionally dependent) joined user, NULL once deleted. */
#define USAGE_REPORT_SELECT \
    "SELECT strftime('%Y-%m-%d', r.created_at / 1000, 'unixepoch') AS day, r.model," \
    " r.user_id, u.email, count(*), coalesce(sum(r.prompt_tokens), 0)," \
    " coalesce(sum(r.cached_tokens), 0), coalesce(sum(r.completion_tokens), 0)," \
    " coalesce(sum(r.cost_micros), 0), coalesce(sum(r.status >= 400), 0)" \
    " FROM usage_records r LEFT JOIN users u ON u.id = r.user_id" \
    " WHERE r.created_at >= ?1 AND r.created_at < ?2"
#define USAGE_REPORT_ORDER " GROUP BY day, r.model, r.user_id ORDER BY day, r.model, r.user_id"

enum store_sqlite_stmt_id {
    S_BEGIN,
    S_COMMIT,
    S_ROLLBACK,
    S_SAVEPOINT,
    S_RELEASE,
    S_ROLLBACK_TO,
    S_PING,
    S_SCHEMA_CREATE,
    S_SCHEMA_TABLE_EXISTS,
    S_SCHEMA_VERSION,
    S_SCHEMA_RECORD,
    S_USER_ANY,
    S_USER_INSERT,
    S_USER_GET,
    S_USER_GET_BY_EMAIL,
    S_USER_SET_PASSWORD,
    S_USER_COUNT,
    S_SESSION_INSERT,
    S_SESSION_GET_BY_HASH,
    S_SESSION_TOUCH,
    S_SESSION_LIST,
    S_SESSION_DELETE,
    S_SESSION_DELETE_ALL,
    S_SESSION_PURGE,
    S_CONN_UPSERT,
    S_CONN_GET_DEFAULT,
    S_CONN_DELETE_DEFAULT,
    S_CONN_LIST_ALL,
    S_CONN_SET_KEY,
    S_FOLDER_OWNED,
    S_CHAT_INSERT,
    S_CHAT_GET,
    S_CHAT_EXISTS,
    S_CHAT_LIST_FIRST,
    S_CHAT_LIST_BEFORE,
    S_CHAT_UPDATE,
    S_CHAT_DELETE,
    S_CHAT_TOUCH,
    S_CHAT_BUMP,
    S_MSG_IN_CHAT,
    S_MSG_INSERT,
    S_MSG_GET,
    S_MSG_LIST,
    S_MSG_PATH,
    S_MSG_TAIL,
    S_MSG_COUNT,
    S_MSG_UPDATE,
    S_MSG_NEWEST_LEAF,
    S_MSG_MARK_INTERRUPTED,
    S_LEASE_CREATE,
    S_LEASE_RENEW,
    S_LEASE_STOPS,
    S_LEASE_PROGRESS,
    S_LEASE_DELETE,
    S_LEASE_STOP_REQ,
    S_LEASE_GET,
    S_LEASE_EXPIRE_MSGS,
    S_LEASE_EXPIRE,
    S_USER_LIST,
    S_TOKEN_INSERT,
    S_TOKEN_GET_BY_HASH,
    S_TOKEN_LIST,
    S_TOKEN_REVOKE,
    S_TOKEN_TOUCH,
    S_POOL_KEY_INSERT,
    S_POOL_KEY_LIST,
    S_POOL_KEY_GET,
    S_POOL_KEY_UPDATE,
    S_POOL_KEY_SET_KEY,
    S_POOL_KEY_DELETE,
    S_USAGE_INSERT,
    S_USAGE_REPORT_ALL,
    S_USAGE_REPORT_USER,
    S_USAGE_TOTALS,
    S_USAGE_KEY_TOTALS,
    S_PRICE_LIST,
    S_PRICE_UPSERT,
    S_PRICE_DELETE,
    S_LIMITS_GET,
    S_LIMITS_SET,
    S_COUNT
};

static const char *const store_sqlite_sql[S_COUNT] = {
    [S_BEGIN] = "BEGIN IMMEDIATE",
    [S_COMMIT] = "COMMIT",
    [S_ROLLBACK] = "ROLLBACK",
    [S_SAVEPOINT] = "SAVEPOINT store_op",
    [S_RELEASE] = "RELEASE store_op",
    [S_ROLLBACK_TO] = "ROLLBACK TO store_op",
    [S_PING] = "SELECT 1",

    [S_SCHEMA_CREATE] = "CREATE TABLE IF NOT EXISTS schema_migrations ("
                        " version INTEGER PRIMARY KEY, applied_at INTEGER NOT NULL)",
    [S_SCHEMA_TABLE_EXISTS] = "SELECT count(*) FROM sqlite_master"
                              " WHERE type = 'table' AND name = 'schema_migrations'",
    [S_SCHEMA_VERSION] = "SELECT coalesce(max(version), 0) FROM schema_migrations",
    [S_SCHEMA_RECORD] = "INSERT INTO schema_migrations (version, applied_at) VALUES (?1, ?2)",

    [S_USER_ANY] = "SELECT EXISTS (SELECT 1 FROM users)",
    [S_USER_INSERT] = "INSERT INTO users (" USER_COLS ") VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
    [S_USER_GET] = "SELECT " USER_COLS " FROM users WHERE id = ?1",
    [S_USER_GET_BY_EMAIL] = "SELECT " USER_COLS " FROM users WHERE email = ?1",
    [S_USER_SET_PASSWORD] = "UPDATE users SET password_hash = ?2, updated_at = ?3 WHERE id = ?1",
    [S_USER_COUNT] = "SELECT count(*) FROM users",

    [S_SESSION_INSERT] = "INSERT INTO sessions (" SESSION_COLS ")"
                         " VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
    [S_SESSION_GET_BY_HASH] = "SELECT " SESSION_COLS " FROM sessions"
                              " WHERE token_hash = ?1 AND expires_at > ?2",
    [S_SESSION_TOUCH] = "UPDATE sessions SET last_seen_at = ?2, expires_at = ?3 WHERE id = ?1",
    [S_SESSION_LIST] = "SELECT " SESSION_COLS " FROM sessions"
                       " WHERE user_id = ?1 AND expires_at > ?2"
                       " ORDER BY last_seen_at DESC, id DESC",
    [S_SESSION_DELETE] = "DELETE FROM sessions WHERE id = ?1 AND user_id = ?2",
    [S_SESSION_DELETE_ALL] = "DELETE FROM sessions WHERE user_id = ?1 AND (?2 IS NULL OR id <> ?2)",
    [S_SESSION_PURGE] = "DELETE FROM sessions WHERE expires_at <= ?1",

    [S_CONN_UPSERT] =
        "INSERT INTO provider_connections (id, owner_id, workspace_id, name, base_url, key_ct,"
        " key_version, key_last4, is_default, created_at, updated_at)"
        " VALUES (?1, ?2, NULL, ?3, ?4, ?5, ?6, ?7, 1, ?8, ?8)"
        " ON CONFLICT (owner_id) WHERE is_default = 1 AND workspace_id IS NULL DO UPDATE SET"
        " name = excluded.name, base_url = excluded.base_url, key_ct = excluded.key_ct,"
        " key_version = excluded.key_version, key_last4 = excluded.key_last4,"
        " updated_at = excluded.updated_at"
        " RETURNING id, created_at, updated_at",
    [S_CONN_GET_DEFAULT] = "SELECT " CONN_COLS " FROM provider_connections WHERE " DEFAULT_CONN,
    [S_CONN_DELETE_DEFAULT] = "DELETE FROM provider_connections WHERE " DEFAULT_CONN,
    [S_CONN_LIST_ALL] = "SELECT " CONN_COLS " FROM provider_connections"
                        " WHERE key_ct IS NOT NULL ORDER BY id",
    [S_CONN_SET_KEY] = "UPDATE provider_connections SET key_ct = ?2, key_version = ?3,"
                       " updated_at = ?4 WHERE id = ?1",

    [S_FOLDER_OWNED] = "SELECT EXISTS (SELECT 1 FROM folders WHERE id = ?1 AND owner_id = ?2)",

    [S_CHAT_INSERT] = "INSERT INTO chats (" CHAT_COLS ")"
                      " VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, NULL, ?9, ?9)",
    [S_CHAT_GET] = "SELECT " CHAT_COLS " FROM chats WHERE id = ?1 AND owner_id = ?2",
    [S_CHAT_EXISTS] = "SELECT EXISTS (SELECT 1 FROM chats WHERE id = ?1 AND owner_id = ?2)",
    [S_CHAT_LIST_FIRST] = "SELECT " CHAT_COLS " FROM chats WHERE owner_id = ?1"
                          " ORDER BY updated_at DESC, id DESC LIMIT ?2",
    /* "updated_at <= ?2" alone gives the index a range to start from. */
    [S_CHAT_LIST_BEFORE] = "SELECT " CHAT_COLS " FROM chats WHERE owner_id = ?1"
                           " AND updated_at <= ?2 AND (updated_at < ?2 OR id < ?3)"
                           " ORDER BY updated_at DESC, id DESC LIMIT ?4",
    [S_CHAT_UPDATE] = "UPDATE chats SET"
                      " title = CASE WHEN ?3 THEN ?4 ELSE title END,"
                      " model = CASE WHEN ?5 THEN ?6 ELSE model END,"
                      " system_prompt = CASE WHEN ?7 THEN ?8 ELSE system_prompt END,"
                      " params = CASE WHEN ?9 THEN ?10 ELSE params END,"
                      " folder_id = CASE WHEN ?11 THEN ?12 ELSE folder_id END,"
                      " current_leaf_id = CASE WHEN ?13 THEN ?14 ELSE current_leaf_id END"
                      " WHERE id = ?1 AND owner_id = ?2",
    [S_CHAT_DELETE] = "DELETE FROM chats WHERE id = ?1 AND owner_id = ?2",
    [S_CHAT_TOUCH] = "UPDATE chats SET updated_at = ?2 WHERE id = ?1",
    [S_CHAT_BUMP] = "UPDATE chats SET updated_at = max(updated_at, ?2) WHERE id = ?1",

    [S_MSG_IN_CHAT] = "SELECT EXISTS (SELECT 1 FROM messages WHERE id = ?1 AND chat_id = ?2)",
    [S_MSG_INSERT] =
        "INSERT INTO messages (id, chat_id, parent_id, role, content, model, status, error,"
        " prompt_tokens, completion_tokens, created_at, updated_at)"
        " SELECT ?1, ?2, ?3, ?4, coalesce(?5, '[]'), ?6, ?7, ?8, ?9, ?10, ?11, ?11"
        " WHERE ?3 IS NULL"
        " OR EXISTS (SELECT 1 FROM messages WHERE id = ?3 AND chat_id = ?2)",
    [S_MSG_GET] = "SELECT " MSG_COLS " FROM messages m JOIN chats c ON c.id = m.chat_id"
                  " WHERE m.id = ?1 AND c.owner_id = ?2",
    [S_MSG_LIST] = "SELECT " MSG_COLS " FROM messages m WHERE m.chat_id = ?1"
                   " ORDER BY m.created_at, m.id",
    /* Up from the leaf by primary key, at most ?3 steps, then the siblings
     * of each by the parent index (the chat's roots for a root). */
    [S_MSG_TAIL] = "WITH RECURSIVE up(id, parent_id, depth) AS ("
                   "  SELECT id, parent_id, 1 FROM messages"
                   "  WHERE id = coalesce(?1, (SELECT id FROM messages WHERE chat_id = ?2"
                   "                           ORDER BY created_at DESC, id DESC LIMIT 1))"
                   "  AND chat_id = ?2"
                   "  UNION ALL"
                   "  SELECT p.id, p.parent_id, up.depth + 1 FROM up JOIN messages p"
                   "  ON p.id = up.parent_id WHERE up.depth < ?3"
                   "), sel(id) AS ("
                   "  SELECT id FROM up"
                   "  UNION SELECT k.id FROM up JOIN messages k ON k.parent_id = up.parent_id"
                   "  UNION SELECT k.id FROM up JOIN messages k"
                   "  ON k.chat_id = ?2 AND k.parent_id IS NULL WHERE up.parent_id IS NULL"
                   ")"
                   " SELECT " MSG_COLS " FROM sel JOIN messages m ON m.id = sel.id"
                   " ORDER BY m.created_at, m.id",
    [S_MSG_COUNT] = "SELECT count(*) FROM messages WHERE chat_id = ?1",
    [S_MSG_PATH] = "WITH RECURSIVE up(id, depth) AS ("
                   "  SELECT id, 0 FROM messages WHERE id = ?1"
                   "  UNION ALL"
                   "  SELECT p.parent_id, up.depth + 1 FROM messages p JOIN up ON p.id = up.id"
                   "  WHERE p.parent_id IS NOT NULL"
                   ")"
                   " SELECT " MSG_COLS " FROM up JOIN messages m ON m.id = up.id"
                   " ORDER BY up.depth DESC",
    [S_MSG_UPDATE] = "UPDATE messages SET content = coalesce(?2, content),"
                     " status = coalesce(?3, status), error = ?4,"
                     " prompt_tokens = CASE WHEN ?5 < 0 THEN prompt_tokens ELSE ?5 END,"
                     " completion_tokens = CASE WHEN ?6 < 0 THEN completion_tokens ELSE ?6 END,"
                     " updated_at = ?7 WHERE id = ?1",
    /* Each step picks the newest child of the previous row; the step after
     * a leaf yields NULL and the one after that nothing, ending the walk. */
    [S_MSG_NEWEST_LEAF] = "WITH RECURSIVE walk(id, depth) AS ("
                          "  SELECT id, 0 FROM messages WHERE id = ?1"
                          "  UNION ALL"
                          "  SELECT (SELECT c.id FROM messages c WHERE c.parent_id = walk.id"
                          "          ORDER BY c.created_at DESC, c.id DESC LIMIT 1),"
                          "         walk.depth + 1"
                          "  FROM walk WHERE walk.id IS NOT NULL"
                          ")"
                          " SELECT id FROM walk WHERE id IS NOT NULL ORDER BY depth DESC LIMIT 1",
    [S_MSG_MARK_INTERRUPTED] = "UPDATE messages SET status = 'interrupted', updated_at = ?1,"
                               " error = COALESCE(error, '{\"code\":\"interrupted\",\"message\":"
                               "\"the server stopped while the answer was being generated\"}')"
                               " WHERE status = 'streaming'",

    [S_LEASE_CREATE] = "INSERT INTO turn_leases (message_id, instance_id, expires_at)"
                       " VALUES (?1, ?2, ?3)",
    [S_LEASE_RENEW] = "UPDATE turn_leases SET expires_at = ?2 WHERE instance_id = ?1",
    [S_LEASE_STOPS] = "SELECT message_id FROM turn_leases WHERE instance_id = ?1"
                      " AND stop_requested = 1",
    [S_LEASE_PROGRESS] = "UPDATE turn_leases SET events = ?2 WHERE message_id = ?1",
    [S_LEASE_DELETE] = "DELETE FROM turn_leases WHERE message_id = ?1",
    [S_LEASE_STOP_REQ] = "UPDATE turn_leases SET stop_requested = 1 WHERE message_id = ?1",
    [S_LEASE_GET] = "SELECT instance_id, expires_at, events, stop_requested FROM turn_leases"
                    " WHERE message_id = ?1",
    [S_LEASE_EXPIRE_MSGS] = "UPDATE messages SET status = 'interrupted', updated_at = ?1,"
                            " error = COALESCE(error, '{\"code\":\"interrupted\",\"message\":"
                            "\"the server running the answer stopped before it finished\"}')"
                            " WHERE status = 'streaming' AND NOT EXISTS (SELECT 1 FROM turn_leases l"
                            " WHERE l.message_id = messages.id AND l.expires_at >= ?1"
                            " AND l.instance_id <> ?2)",
    [S_LEASE_EXPIRE] = "DELETE FROM turn_leases WHERE expires_at < ?1 OR instance_id = ?2"
                       " OR message_id NOT IN (SELECT id FROM messages WHERE status = 'streaming')",

    /* ---- gateway (schema v2) ---- */
    /* Admin listing: password hashes are not read (NULL in the struct). */
    [S_USER_LIST] = "SELECT id, email, name, NULL, is_admin, created_at, updated_at"
                    " FROM users ORDER BY created_at, id",

    [S_TOKEN_INSERT] = "INSERT INTO api_tokens (" TOKEN_COLS ")"
                       " VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12)",
    [S_TOKEN_GET_BY_HASH] = "SELECT " TOKEN_COLS " FROM api_tokens WHERE token_hash = ?1"
                            " AND revoked_at = 0 AND (expires_at = 0 OR expires_at > ?2)",
    [S_TOKEN_LIST] = "SELECT " TOKEN_COLS " FROM api_tokens WHERE user_id = ?1"
                     " ORDER BY created_at DESC, id DESC",
    [S_TOKEN_REVOKE] = "UPDATE api_tokens SET revoked_at = ?3"
                       " WHERE id = ?1 AND user_id = ?2 AND revoked_at = 0"
                       " AND (expires_at = 0 OR expires_at > ?3)",
    [S_TOKEN_TOUCH] = "UPDATE api_tokens SET last_used_at = max(last_used_at, ?2) WHERE id = ?1",

    /* disabled_reason is kept only while the key is disabled. */
    [S_POOL_KEY_INSERT] = "INSERT INTO pool_keys (" POOL_KEY_COLS ")"
                          " VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10,"
                          " CASE WHEN ?10 THEN NULL ELSE ?11 END, ?12, ?13)",
    [S_POOL_KEY_LIST] = "SELECT " POOL_KEY_COLS " FROM pool_keys ORDER BY created_at, id",
    [S_POOL_KEY_GET] = "SELECT " POOL_KEY_COLS " FROM pool_keys WHERE id = ?1",
    [S_POOL_KEY_UPDATE] = "UPDATE pool_keys SET name = ?2, base_url = ?3, weight = ?4, rpm = ?5,"
                          " tpm = ?6, enabled = ?7,"
                          " disabled_reason = CASE WHEN ?7 THEN NULL ELSE ?8 END,"
                          " updated_at = ?9 WHERE id = ?1",
    /* A NULL last4 keeps the current one (re-sealing the same key); no key
     * clears it. */
    [S_POOL_KEY_SET_KEY] = "UPDATE pool_keys SET key_ct = ?2, key_version = ?3,"
                           " key_last4 = CASE WHEN ?2 IS NULL THEN NULL"
                           " ELSE coalesce(?4, key_last4) END,"
                           " updated_at = ?5 WHERE id = ?1",
    [S_POOL_KEY_DELETE] = "DELETE FROM pool_keys WHERE id = ?1",

    [S_USAGE_INSERT] =
        "INSERT INTO usage_records (id, user_id, token_id, key_id, key_source, endpoint, model,"
        " prompt_tokens, cached_tokens, completion_tokens, tokens_estimated, cost_micros,"
        " latency_ms, status, created_at)"
        " VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15)",
    [S_USAGE_REPORT_ALL] = USAGE_REPORT_SELECT USAGE_REPORT_ORDER,
    [S_USAGE_REPORT_USER] = USAGE_REPORT_SELECT " AND r.user_id = ?3" USAGE_REPORT_ORDER,
    /* cached_tokens are part of prompt_tokens (as the providers count them). */
    [S_USAGE_TOTALS] = "SELECT coalesce(sum(prompt_tokens + completion_tokens), 0),"
                       " coalesce(sum(cost_micros), 0)"
                       " FROM usage_records WHERE user_id = ?1 AND created_at >= ?2",
    [S_USAGE_KEY_TOTALS] = "SELECT count(*), coalesce(sum(prompt_tokens + completion_tokens), 0),"
                           " coalesce(sum(status >= 400), 0)"
                           " FROM usage_records WHERE key_id = ?1 AND created_at >= ?2",

    [S_PRICE_LIST] = "SELECT " PRICE_COLS " FROM prices ORDER BY model",
    [S_PRICE_UPSERT] = "INSERT INTO prices (" PRICE_COLS ") VALUES (?1, ?2, ?3, ?4, ?5)"
                       " ON CONFLICT (model) DO UPDATE SET input_micros = excluded.input_micros,"
                       " cached_input_micros = excluded.cached_input_micros,"
                       " output_micros = excluded.output_micros,"
                       " updated_at = excluded.updated_at",
    [S_PRICE_DELETE] = "DELETE FROM prices WHERE model = ?1",

    [S_LIMITS_GET] = "SELECT " LIMITS_COLS " FROM user_limits WHERE user_id = ?1",
    [S_LIMITS_SET] = "INSERT INTO user_limits (" LIMITS_COLS ") VALUES (?1, ?2, ?3, ?4, ?5, ?6)"
                     " ON CONFLICT (user_id) DO UPDATE SET rpm = excluded.rpm,"
                     " tpm = excluded.tpm, monthly_tokens = excluded.monthly_tokens,"
                     " monthly_cost_micros = excluded.monthly_cost_micros,"
                     " updated_at = excluded.updated_at",
};

/* ---- handle and small helpers -------------------------------------------- */

struct store_sqlite {
    struct store base;                 /* must stay first */
    sqlite3 *db;
    int bind_rc;                       /* first failed bind since the last acquire */
    sqlite3_stmt *stmts[S_COUNT];      /* prepared lazily, finalized at close */
};

static struct store_sqlite *store_sqlite_of(struct store *st)
{
    return (struct store_sqlite *)st;
}

/* Record sqlite's error for what; map the (extended) result code. */
static enum app_err store_sqlite_fail(struct store_sqlite *s, int rc, const char *what)
{
    enum app_err e;
    switch (rc) {
    case SQLITE_CONSTRAINT_UNIQUE:
    case SQLITE_CONSTRAINT_PRIMARYKEY:
        e = APP_ECONFLICT;
        break;
    case SQLITE_CONSTRAINT_FOREIGNKEY:
    case SQLITE_CONSTRAINT_CHECK:
    case SQLITE_CONSTRAINT_NOTNULL:
        e = APP_EINVAL;
        break;
    default:
        e = APP_ESTORE;
        break;
    }
    store_set_error(&s->base, "%s: %s (sqlite %d)", what, sqlite3_errmsg(s->db), rc);
    return e;
}

/* The cached statement id, reset and ready for binding; NULL (error set) if
 * it cannot be prepared, e.g. because the schema is missing. */
static sqlite3_stmt *store_sqlite_stmt(struct store_sqlite *s, enum store_sqlite_stmt_id id)
{
    s->bind_rc = SQLITE_OK;
    if (!s->stmts[id]) {
        int rc = sqlite3_prepare_v3(s->db, store_sqlite_sql[id], -1, SQLITE_PREPARE_PERSISTENT,
                                    &s->stmts[id], NULL);
        if (rc != SQLITE_OK) {
            store_sqlite_fail(s, rc, "prepare");
            sqlite3_finalize(s->stmts[id]);
            s->stmts[id] = NULL;
        }
    }
    return s->stmts[id];
}

/* Release a statement after use: drops its read snapshot and its bindings
 * (which may point into the caller's memory). */
static void store_sqlite_done(sqlite3_stmt *stmt)
{
    if (stmt) {
        sqlite3_reset(stmt);
        sqlite3_clear_bindings(stmt);
    }
}

static void store_sqlite_note_bind(struct store_sqlite *s, int rc)
{
    if (rc != SQLITE_OK && s->bind_rc == SQLITE_OK)
        s->bind_rc = rc;
}

/* Bind text (NULL binds SQL NULL). The pointer must stay valid until done. */
static void store_sqlite_bind_text(struct store_sqlite *s, sqlite3_stmt *st, int i, const char *v)
{
    store_sqlite_note_bind(s, sqlite3_bind_text(st, i, v, -1, SQLITE_STATIC));
}

/* Bind an optional reference: NULL or "" bind SQL NULL. */
static void store_sqlite_bind_ref(struct store_sqlite *s, sqlite3_stmt *st, int i, const char *v)
{
    store_sqlite_bind_text(s, st, i, (v && *v) ? v : NULL);
}

static void store_sqlite_bind_int(struct store_sqlite *s, sqlite3_stmt *st, int i, int64_t v)
{
    store_sqlite_note_bind(s, sqlite3_bind_int64(st, i, v));
}

/* Bind a token count: negative (unknown) binds SQL NULL. */
static void store_sqlite_bind_tokens(struct store_sqlite *s, sqlite3_stmt *st, int i, int64_t v)
{
    if (v < 0)
        store_sqlite_note_bind(s, sqlite3_bind_null(st, i));
    else
        store_sqlite_bind_int(s, st, i, v);
}

/* Bind a blob: NULL or empty binds SQL NULL. */
static void store_sqlite_bind_blob(struct store_sqlite *s, sqlite3_stmt *st, int i,
                                   const unsigned char *p, size_t n)
{
    if (!p || n == 0)
        store_sqlite_note_bind(s, sqlite3_bind_null(st, i));
    else
        store_sqlite_note_bind(s, sqlite3_bind_blob64(st, i, p, (sqlite3_uint64)n, SQLITE_STATIC));
}

/* sqlite3_step, unless a bind failed since the statement was acquired. */
static int store_sqlite_step(struct store_sqlite *s, sqlite3_stmt *st)
{
    if (s->bind_rc != SQLITE_OK) {
        int rc = s->bind_rc;
        s->bind_rc = SQLITE_OK;
        return rc;
    }
    return sqlite3_step(st);
}

/* Run a statement that returns no rows, then release it. *changes (may be
 * NULL) receives the number of rows it changed. */
static enum app_err store_sqlite_run(struct store_sqlite *s, sqlite3_stmt *st, const char *what,
                                     int64_t *changes)
{
    enum app_err e = APP_OK;
    int rc = store_sqlite_step(s, st);
    if (rc == SQLITE_DONE || rc == SQLITE_ROW) {
        if (changes)
            *changes = (int64_t)sqlite3_changes64(s->db);
    } else {
        e = store_sqlite_fail(s, rc, what);
    }
    store_sqlite_done(st);
    return e;
}

/* Run a parameterless statement that returns no rows. */
static enum app_err store_sqlite_exec(struct store_sqlite *s, enum store_sqlite_stmt_id id,
                                      const char *what)
{
    sqlite3_stmt *st = store_sqlite_stmt(s, id);
    if (!st)
        return APP_ESTORE;
    return store_sqlite_run(s, st, what, NULL);
}

/* Run a statement that yields one integer in its first row, then release it. */
static enum app_err store_sqlite_one_int(struct store_sqlite *s, sqlite3_stmt *st,
                                         const char *what, int64_t *out)
{
    enum app_err e = APP_OK;
    int rc = store_sqlite_step(s, st);
    if (rc == SQLITE_ROW)
        *out = sqlite3_column_int64(st, 0);
    else if (rc == SQLITE_DONE)
        *out = 0;
    else
        e = store_sqlite_fail(s, rc, what);
    store_sqlite_done(st);
    return e;
}

/* *found = whether the EXISTS statement id matches (a, b). */
static enum app_err store_sqlite_exists(struct store_sqlite *s, enum store_sqlite_stmt_id id,
                                        const char *a, const char *b, bool *found)
{
    int64_t v = 0;
    sqlite3_stmt *st = store_sqlite_stmt(s, id);
    if (!st)
        return APP_ESTORE;
    store_sqlite_bind_text(s, st, 1, a);
    store_sqlite_bind_text(s, st, 2, b);
    enum app_err e = store_sqlite_one_int(s, st, "exists", &v);
    *found = v != 0;
    return e;
}

/* Start an internal write transaction: BEGIN IMMEDIATE when none is open
 * (takes the write lock up front, so read-then-write steps cannot deadlock
 * on the lock upgrade), a savepoint inside the caller's store_begin. */
static enum app_err store_sqlite_tx_begin(struct store_sqlite *s, bool *outer)
{
    *outer = sqlite3_get_autocommit(s->db) != 0;
    return store_sqlite_exec(s, *outer ? S_BEGIN : S_SAVEPOINT, "begin");
}

/* Roll back without touching the error message already recorded. */
static void store_sqlite_quiet(struct store_sqlite *s, enum store_sqlite_stmt_id id)
{
    if (!s->stmts[id] && sqlite3_prepare_v3(s->db, store_sqlite_sql[id], -1,
                                            SQLITE_PREPARE_PERSISTENT, &s->stmts[id],
                                            NULL) != SQLITE_OK) {
        sqlite3_finalize(s->stmts[id]);
        s->stmts[id] = NULL;
        return;
    }
    sqlite3_step(s->stmts[id]);
    store_sqlite_done(s->stmts[id]);
}

/* Finish what store_sqlite_tx_begin started: commit if e is APP_OK, else
 * roll back. Returns e, or the commit's error. */
static enum app_err store_sqlite_tx_end(struct store_sqlite *s, bool outer, enum app_err e)
{
    if (e == APP_OK) {
        e = store_sqlite_exec(s, outer ? S_COMMIT : S_RELEASE, "commit");
        if (e == APP_OK)
            return APP_OK;
    }
    if (outer) {
        if (!sqlite3_get_autocommit(s->db))
            store_sqlite_quiet(s, S_ROLLBACK);
    } else {
        store_sqlite_quiet(s, S_ROLLBACK_TO);
        store_sqlite_quiet(s, S_RELEASE);
    }
    return e;
}

static char *store_sqlite_col_str(sqlite3_stmt *st, int i)
{
    const unsigned char *t = sqlite3_column_text(st, i);
    if (!t)
        return NULL;
    return xstrndup((const char *)t, (size_t)sqlite3_column_bytes(st, i));
}

/* Copy a text column into a fixed buffer; NULL becomes "". */
static void store_sqlite_col_fixed(sqlite3_stmt *st, int i, char *out, size_t size)
{
    const unsigned char *t = sqlite3_column_text(st, i);
    size_t n = 0;
    if (t) {
        n = (size_t)sqlite3_column_bytes(st, i);
        if (n > size - 1)
            n = size - 1;
        memcpy(out, t, n);
    }
    out[n] = '\0';
}

/* Copy a blob column into a new buffer; NULL or empty leaves *out NULL. */
static void store_sqlite_col_blob(sqlite3_stmt *st, int i, unsigned char **out, size_t *len)
{
    const void *blob = sqlite3_column_blob(st, i);
    int n = sqlite3_column_bytes(st, i);
    *out = NULL;
    *len = 0;
    if (blob && n > 0) {
        *out = xmalloc((size_t)n);
        memcpy(*out, blob, (size_t)n);
        *len = (size_t)n;
    }
}

/* An integer column where NULL means unknown (-1). */
static int64_t store_sqlite_col_tokens(sqlite3_stmt *st, int i)
{
    if (sqlite3_column_type(st, i) == SQLITE_NULL)
        return -1;
    return sqlite3_column_int64(st, i);
}

/* Grow a caller-owned array so that it holds at least n + 1 elements. */
static void *store_sqlite_grow(void *arr, size_t *cap, size_t n, size_t elem)
{
    if (n < *cap)
        return arr;
    *cap = *cap ? *cap * 2 : 8;
    return xrealloc(arr, *cap * elem);
}

static void store_sqlite_read_user(sqlite3_stmt *st, struct store_user *u)
{
    memset(u, 0, sizeof *u);
    store_sqlite_col_fixed(st, 0, u->id, sizeof u->id);
    u->email = store_sqlite_col_str(st, 1);
    u->name = store_sqlite_col_str(st, 2);
    u->password_hash = store_sqlite_col_str(st, 3);
    u->is_admin = sqlite3_column_int(st, 4) != 0;
    u->created_at = sqlite3_column_int64(st, 5);
    u->updated_at = sqlite3_column_int64(st, 6);
}

static void store_sqlite_read_session(sqlite3_stmt *st, struct store_session *s)
{
    memset(s, 0, sizeof *s);
    store_sqlite_col_fixed(st, 0, s->id, sizeof s->id);
    store_sqlite_col_fixed(st, 1, s->user_id, sizeof s->user_id);
    store_sqlite_col_fixed(st, 2, s->token_hash, sizeof s->token_hash);
    s->user_agent = store_sqlite_col_str(st, 3);
    s->ip = store_sqlite_col_str(st, 4);
    s->created_at = sqlite3_column_int64(st, 5);
    s->last_seen_at = sqlite3_column_int64(st, 6);
    s->expires_at = sqlite3_column_int64(st, 7);
}

static void store_sqlite_read_conn(sqlite3_stmt *st, struct store_conn *c)
{
    memset(c, 0, sizeof *c);
    store_sqlite_col_fixed(st, 0, c->id, sizeof c->id);
    store_sqlite_col_fixed(st, 1, c->owner_id, sizeof c->owner_id);
    store_sqlite_col_fixed(st, 2, c->workspace_id, sizeof c->workspace_id);
    c->name = store_sqlite_col_str(st, 3);
    c->base_url = store_sqlite_col_str(st, 4);
    store_sqlite_col_blob(st, 5, &c->key_ct, &c->key_ct_len);
    c->key_version = sqlite3_column_int(st, 6);
    store_sqlite_col_fixed(st, 7, c->key_last4, sizeof c->key_last4);
    c->created_at = sqlite3_column_int64(st, 8);
    c->updated_at = sqlite3_column_int64(st, 9);
}

static void store_sqlite_read_chat(sqlite3_stmt *st, struct store_chat *c)
{
    memset(c, 0, sizeof *c);
    store_sqlite_col_fixed(st, 0, c->id, sizeof c->id);
    store_sqlite_col_fixed(st, 1, c->owner_id, sizeof c->owner_id);
    store_sqlite_col_fixed(st, 2, c->workspace_id, sizeof c->workspace_id);
    store_sqlite_col_fixed(st, 3, c->folder_id, sizeof c->folder_id);
    c->title = store_sqlite_col_str(st, 4);
    c->model = store_sqlite_col_str(st, 5);
    c->system_prompt = store_sqlite_col_str(st, 6);
    c->params = store_sqlite_col_str(st, 7);
    store_sqlite_col_fixed(st, 8, c->current_leaf_id, sizeof c->current_leaf_id);
    c->created_at = sqlite3_column_int64(st, 9);
    c->updated_at = sqlite3_column_int64(st, 10);
}

static void store_sqlite_read_message(sqlite3_stmt *st, struct store_message *m)
{
    memset(m, 0, sizeof *m);
    store_sqlite_col_fixed(st, 0, m->id, sizeof m->id);
    store_sqlite_col_fixed(st, 1, m->chat_id, sizeof m->chat_id);
    store_sqlite_col_fixed(st, 2, m->parent_id, sizeof m->parent_id);
    store_sqlite_col_fixed(st, 3, m->role, sizeof m->role);
    m->content = store_sqlite_col_str(st, 4);
    m->model = store_sqlite_col_str(st, 5);
    store_sqlite_col_fixed(st, 6, m->status, sizeof m->status);
    m->error = store_sqlite_col_str(st, 7);
    m->prompt_tokens = store_sqlite_col_tokens(st, 8);
    m->completion_tokens = store_sqlite_col_tokens(st, 9);
    m->created_at = sqlite3_column_int64(st, 10);
    m->updated_at = sqlite3_column_int64(st, 11);
}

static void store_sqlite_read_token(sqlite3_stmt *st, struct store_token *t)
{
    memset(t, 0, sizeof *t);
    store_sqlite_col_fixed(st, 0, t->id, sizeof t->id);
    store_sqlite_col_fixed(st, 1, t->user_id, sizeof t->user_id);
    t->name = store_sqlite_col_str(st, 2);
    store_sqlite_col_fixed(st, 3, t->token_hash, sizeof t->token_hash);
    store_sqlite_col_fixed(st, 4, t->prefix, sizeof t->prefix);
    t->models = store_sqlite_col_str(st, 5);
    t->rpm = sqlite3_column_int64(st, 6);
    t->tpm = sqlite3_column_int64(st, 7);
    t->expires_at = sqlite3_column_int64(st, 8);
    t->created_at = sqlite3_column_int64(st, 9);
    t->last_used_at = sqlite3_column_int64(st, 10);
    t->revoked_at = sqlite3_column_int64(st, 11);
}

static void store_sqlite_read_pool_key(sqlite3_stmt *st, struct store_pool_key *k)
{
    memset(k, 0, sizeof *k);
    store_sqlite_col_fixed(st, 0, k->id, sizeof k->id);
    k->name = store_sqlite_col_str(st, 1);
    k->base_url = store_sqlite_col_str(st, 2);
    store_sqlite_col_blob(st, 3, &k->key_ct, &k->key_ct_len);
    k->key_version = sqlite3_column_int(st, 4);
    store_sqlite_col_fixed(st, 5, k->key_last4, sizeof k->key_last4);
    k->weight = sqlite3_column_int(st, 6);
    k->rpm = sqlite3_column_int64(st, 7);
    k->tpm = sqlite3_column_int64(st, 8);
    k->enabled = sqlite3_column_int(st, 9) != 0;
    k->disabled_reason = store_sqlite_col_str(st, 10);
    k->created_at = sqlite3_column_int64(st, 11);
    k->updated_at = sqlite3_column_int64(st, 12);
}

static void store_sqlite_read_usage_row(sqlite3_stmt *st, struct store_usage_row *r)
{
    memset(r, 0, sizeof *r);
    store_sqlite_col_fixed(st, 0, r->day, sizeof r->day);
    r->model = store_sqlite_col_str(st, 1);
    store_sqlite_col_fixed(st, 2, r->user_id, sizeof r->user_id);
    r->email = store_sqlite_col_str(st, 3);
    r->requests = sqlite3_column_int64(st, 4);
    r->prompt_tokens = sqlite3_column_int64(st, 5);
    r->cached_tokens = sqlite3_column_int64(st, 6);
    r->completion_tokens = sqlite3_column_int64(st, 7);
    r->cost_micros = sqlite3_column_int64(st, 8);
    r->errors = sqlite3_column_int64(st, 9);
}

static void store_sqlite_read_price(sqlite3_stmt *st, struct store_price *p)
{
    memset(p, 0, sizeof *p);
    p->model = store_sqlite_col_str(st, 0);
    p->input_micros = sqlite3_column_int64(st, 1);
    p->cached_input_micros = sqlite3_column_int64(st, 2);
    p->output_micros = sqlite3_column_int64(st, 3);
    p->updated_at = sqlite3_column_int64(st, 4);
}

static void store_sqlite_read_limits(sqlite3_stmt *st, struct store_user_limits *l)
{
    memset(l, 0, sizeof *l);
    store_sqlite_col_fixed(st, 0, l->user_id, sizeof l->user_id);
    l->rpm = sqlite3_column_int64(st, 1);
    l->tpm = sqlite3_column_int64(st, 2);
    l->monthly_tokens = sqlite3_column_int64(st, 3);
    l->monthly_cost_micros = sqlite3_column_int64(st, 4);
    l->updated_at = sqlite3_column_int64(st, 5);
}

/* Step a bound statement expecting at most one row: read it with reader into
 * out (size bytes, zeroed on any error), or APP_ENOTFOUND. Releases the
 * statement. */
static enum app_err store_sqlite_get_one(struct store_sqlite *s, sqlite3_stmt *st,
                                         const char *what,
                                         void (*reader)(sqlite3_stmt *, void *),
                                         void *out, size_t size)
{
    enum app_err e = APP_OK;
    int rc = store_sqlite_step(s, st);
    memset(out, 0, size);
    if (rc == SQLITE_ROW) {
        reader(st, out);
    } else if (rc == SQLITE_DONE) {
        store_set_error(&s->base, "%s: not found", what);
        e = APP_ENOTFOUND;
    } else {
        e = store_sqlite_fail(s, rc, what);
    }
    store_sqlite_done(st);
    return e;
}

/* Step a bound statement to its end, collecting rows of elem bytes with
 * reader into a new array (*out NULL when empty). On error nothing is
 * returned; free_list releases what was read. Releases the statement. */
static enum app_err store_sqlite_get_all(struct store_sqlite *s, sqlite3_stmt *st,
                                         const char *what, size_t elem,
                                         void (*reader)(sqlite3_stmt *, void *),
                                         void (*free_list)(void *, size_t),
                                         void **out, size_t *n)
{
    enum app_err e = APP_OK;
    char *arr = NULL;
    size_t cap = 0, len = 0;
    int rc;

    while ((rc = store_sqlite_step(s, st)) == SQLITE_ROW) {
        arr = store_sqlite_grow(arr, &cap, len, elem);
        reader(st, arr + len * elem);
        len++;
    }
    if (rc != SQLITE_DONE) {
        e = store_sqlite_fail(s, rc, what);
        free_list(arr, len);
        arr = NULL;
        len = 0;
    }
    store_sqlite_done(st);
    *out = arr;
    *n = len;
    return e;
}

/* Adapters with the generic reader / list-free signatures. */
static void store_sqlite_rd_user(sqlite3_stmt *st, void *p) { store_sqlite_read_user(st, p); }
static void store_sqlite_rd_session(sqlite3_stmt *st, void *p) { store_sqlite_read_session(st, p); }
static void store_sqlite_rd_conn(sqlite3_stmt *st, void *p) { store_sqlite_read_conn(st, p); }
static void store_sqlite_rd_chat(sqlite3_stmt *st, void *p) { store_sqlite_read_chat(st, p); }
static void store_sqlite_rd_message(sqlite3_stmt *st, void *p) { store_sqlite_read_message(st, p); }
static void store_sqlite_fr_session(void *p, size_t n) { store_session_list_free(p, n); }
static void store_sqlite_fr_conn(void *p, size_t n) { store_conn_list_free(p, n); }
static void store_sqlite_fr_chat(void *p, size_t n) { store_chat_list_free(p, n); }
static void store_sqlite_fr_message(void *p, size_t n) { store_message_list_free(p, n); }
static void store_sqlite_rd_token(sqlite3_stmt *st, void *p) { store_sqlite_read_token(st, p); }
static void store_sqlite_rd_pool_key(sqlite3_stmt *st, void *p) { store_sqlite_read_pool_key(st, p); }
static void store_sqlite_rd_usage_row(sqlite3_stmt *st, void *p) { store_sqlite_read_usage_row(st, p); }
static void store_sqlite_rd_price(sqlite3_stmt *st, void *p) { store_sqlite_read_price(st, p); }
static void store_sqlite_rd_limits(sqlite3_stmt *st, void *p) { store_sqlite_read_limits(st, p); }
static void store_sqlite_fr_user(void *p, size_t n) { store_user_list_free(p, n); }
static void store_sqlite_fr_token(void *p, size_t n) { store_token_list_free(p, n); }
static void store_sqlite_fr_pool_key(void *p, size_t n) { store_pool_key_list_free(p, n); }
static void store_sqlite_fr_usage_row(void *p, size_t n) { store_usage_rows_free(p, n); }
static void store_sqlite_fr_price(void *p, size_t n) { store_price_list_free(p, n); }

/* The id to insert: the caller's, or a new one. */
static void store_sqlite_pick_id(const char *given, char out[STORE_ID_LEN + 1])
{
    if (given && *given) {
        snprintf(out, STORE_ID_LEN + 1, "%s", given);
    } else {
        ids_new(out);
    }
}

/* ---- lifecycle ----------------------------------------------------------- */

static void store_sqlite_close(struct store *st)
{
    struct store_sqlite *s = store_sqlite_of(st);
    for (int i = 0; i < S_COUNT; i++)
        sqlite3_finalize(s->stmts[i]);
    sqlite3_close(s->db); /* rolls back an open transaction */
    free(s);
}

static int store_sqlite_version_now(struct store_sqlite *s, int64_t *v)
{
    int64_t exists = 0;
    sqlite3_stmt *st = store_sqlite_stmt(s, S_SCHEMA_TABLE_EXISTS);
    if (!st || store_sqlite_one_int(s, st, "schema_version", &exists) != APP_OK)
        return -1;
    if (!exists) {
        *v = 0;
        return 0;
    }
    st = store_sqlite_stmt(s, S_SCHEMA_VERSION);
    if (!st || store_sqlite_one_int(s, st, "schema_version", v) != APP_OK)
        return -1;
    return 0;
}

static int store_sqlite_schema_version(struct store *st)
{
    int64_t v;
    if (store_sqlite_version_now(store_sqlite_of(st), &v) != 0)
        return -1;
    return (int)v;
}

/* Apply one migration inside BEGIN IMMEDIATE, unless another handle applied
 * it meanwhile (the version is read again under the write lock). */
static enum app_err store_sqlite_apply(struct store_sqlite *s, const struct store_migration *m)
{
    enum app_err e;
    int64_t v = 0;
    char *msg = NULL;
    sqlite3_stmt *st;

    e = store_sqlite_exec(s, S_BEGIN, "migrate begin");
    if (e != APP_OK)
        return e;
    if (store_sqlite_version_now(s, &v) != 0) {
        e = APP_ESTORE;
        goto out;
    }
    if (v >= m->version)
        goto out;
    if (sqlite3_exec(s->db, m->sql, NULL, NULL, &msg) != SQLITE_OK) {
        store_set_error(&s->base, "migration %s: %s", m->name,
                        msg ? msg : sqlite3_errmsg(s->db));
        e = APP_ESTORE;
        goto out;
    }
    st = store_sqlite_stmt(s, S_SCHEMA_RECORD);
    if (!st) {
        e = APP_ESTORE;
        goto out;
    }
    store_sqlite_bind_int(s, st, 1, m->version);
    store_sqlite_bind_int(s, st, 2, now_ms());
    e = store_sqlite_run(s, st, "migration record", NULL);
out:
    sqlite3_free(msg);
    return store_sqlite_tx_end(s, true, e);
}

static enum app_err store_sqlite_migrate(struct store *st, int *from, int *to)
{
    struct store_sqlite *s = store_sqlite_of(st);
    enum app_err e = APP_OK;
    int64_t v = 0;
    const struct store_migration *last =
        &store_sqlite_migrations[store_sqlite_migrations_count - 1];

    if (from)
        *from = -1;
    if (to)
        *to = -1;
    if (!sqlite3_get_autocommit(s->db)) {
        store_set_error(st, "migrate: called inside a transaction");
        return APP_ESTORE;
    }
    e = store_sqlite_exec(s, S_SCHEMA_CREATE, "migrate");
    if (e != APP_OK)
        return e;
    if (store_sqlite_version_now(s, &v) != 0)
        return APP_ESTORE;
    if (from)
        *from = (int)v;
    if (v > last->version) {
        store_set_error(st, "database schema version %lld is newer than this program's (%d)",
                        (long long)v, last->version);
        return APP_ESTORE;
    }
    for (size_t i = 0; i < store_sqlite_migrations_count && e == APP_OK; i++) {
        if (store_sqlite_migrations[i].version > v)
            e = store_sqlite_apply(s, &store_sqlite_migrations[i]);
    }
    if (store_sqlite_version_now(s, &v) != 0)
        return APP_ESTORE;
    if (to)
        *to = (int)v;
    return e;
}

static enum app_err store_sqlite_ping(struct store *st)
{
    int64_t v = 0;
    struct store_sqlite *s = store_sqlite_of(st);
    sqlite3_stmt *stmt = store_sqlite_stmt(s, S_PING);
    if (!stmt)
        return APP_ESTORE;
    return store_sqlite_one_int(s, stmt, "ping", &v);
}

static enum app_err store_sqlite_begin(struct store *st)
{
    struct store_sqlite *s = store_sqlite_of(st);
    if (!sqlite3_get_autocommit(s->db)) {
        store_set_error(st, "begin: a transaction is already open");
        return APP_ESTORE;
    }
    return store_sqlite_exec(s, S_BEGIN, "begin");
}

static enum app_err store_sqlite_commit(struct store *st)
{
    return store_sqlite_exec(store_sqlite_of(st), S_COMMIT, "commit");
}

static void store_sqlite_rollback(struct store *st)
{
    struct store_sqlite *s = store_sqlite_of(st);
    if (!sqlite3_get_autocommit(s->db))
        store_sqlite_quiet(s, S_ROLLBACK);
}

/* ---- users --------------------------------------------------------------- */

static enum app_err store_sqlite_user_create(struct store *st, struct store_user *u,
                                             bool first_is_admin)
{
    struct store_sqlite *s = store_sqlite_of(st);
    char id[STORE_ID_LEN + 1];
    bool outer, admin = u->is_admin;
    int64_t now = now_ms();
    int64_t created = u->created_at ? u->created_at : now;
    int64_t updated = u->updated_at ? u->updated_at : created;
    enum app_err e;

    store_sqlite_pick_id(u->id, id);
    e = store_sqlite_tx_begin(s, &outer);
    if (e != APP_OK)
        return e;
    if (first_is_admin) {
        int64_t any = 1;
        sqlite3_stmt *q = store_sqlite_stmt(s, S_USER_ANY);
        e = q ? store_sqlite_one_int(s, q, "user_create", &any) : APP_ESTORE;
        if (e == APP_OK && !any)
            admin = true;
    }
    if (e == APP_OK) {
        sqlite3_stmt *q = store_sqlite_stmt(s, S_USER_INSERT);
        if (!q) {
            e = APP_ESTORE;
        } else {
            store_sqlite_bind_text(s, q, 1, id);
            store_sqlite_bind_text(s, q, 2, u->email);
            store_sqlite_bind_text(s, q, 3, u->name);
            store_sqlite_bind_text(s, q, 4, u->password_hash);
            store_sqlite_bind_int(s, q, 5, admin ? 1 : 0);
            store_sqlite_bind_int(s, q, 6, created);
            store_sqlite_bind_int(s, q, 7, updated);
            e = store_sqlite_run(s, q, "user_create", NULL);
        }
    }
    e = store_sqlite_tx_end(s, outer, e);
    if (e == APP_OK) {
        memcpy(u->id, id, sizeof id);
        u->is_admin = admin;
        u->created_at = created;
        u->updated_at = updated;
    }
    return e;
}

static enum app_err store_sqlite_user_get(struct store *st, const char *id, struct store_user *out)
{
    struct store_sqlite *s = store_sqlite_of(st);
    sqlite3_stmt *q = store_sqlite_stmt(s, S_USER_GET);
    if (!q)
        return APP_ESTORE;
    store_sqlite_bind_text(s, q, 1, id);
    return store_sqlite_get_one(s, q, "user_get", store_sqlite_rd_user, out,
                                sizeof *out);
}

static enum app_err store_sqlite_user_get_by_email(struct store *st, const char *email,
                                                   struct store_user *out)
{
    struct store_sqlite *s = store_sqlite_of(st);
    sqlite3_stmt *q = store_sqlite_stmt(s, S_USER_GET_BY_EMAIL);
    if (!q)
        return APP_ESTORE;
    store_sqlite_bind_text(s, q, 1, email);
    return store_sqlite_get_one(s, q, "user_get_by_email", store_sqlite_rd_user, out,
                                sizeof *out);
}

/* Finish an UPDATE/DELETE that must hit one row: APP_ENOTFOUND if none. */
static enum app_err store_sqlite_run_one(struct store_sqlite *s, sqlite3_stmt *q, const char *what)
{
    int64_t changes = 0;
    enum app_err e = store_sqlite_run(s, q, what, &changes);
    if (e == APP_OK && changes == 0) {
        store_set_error(&s->base, "%s: not found", what);
        e = APP_ENOTFOUND;
    }
    return e;
}

static enum app_err store_sqlite_user_set_password(struct store *st, const char *id,
                                                   const char *password_hash)
{
    struct store_sqlite *s = store_sqlite_of(st);
    sqlite3_stmt *q = store_sqlite_stmt(s, S_USER_SET_PASSWORD);
    if (!q)
        return APP_ESTORE;
    store_sqlite_bind_text(s, q, 1, id);
    store_sqlite_bind_text(s, q, 2, password_hash);
    store_sqlite_bind_int(s, q, 3, now_ms());
    return store_sqlite_run_one(s, q, "user_set_password");
}

static enum app_err store_sqlite_user_count(struct store *st, int64_t *out)
{
    struct store_sqlite *s = store_sqlite_of(st);
    sqlite3_stmt *q = store_sqlite_stmt(s, S_USER_COUNT);
    if (!q)
        return APP_ESTORE;
    return store_sqlite_one_int(s, q, "user_count", out);
}

/* ---- sessions ------------------------------------------------------------ */

static enum app_err store_sqlite_session_create(struct store *st, struct store_session *se)
{
    struct store_sqlite *s = store_sqlite_of(st);
    char id[STORE_ID_LEN + 1];
    int64_t now = now_ms();
    int64_t created = se->created_at ? se->created_at : now;
    int64_t seen = se->last_seen_at ? se->last_seen_at : created;
    enum app_err e;

    if (!se->token_hash[0]) {
        store_set_error(st, "session_create: empty token hash");
        return APP_EINVAL;
    }
    sqlite3_stmt *q = store_sqlite_stmt(s, S_SESSION_INSERT);
    if (!q)
        return APP_ESTORE;
    store_sqlite_pick_id(se->id, id);
    store_sqlite_bind_text(s, q, 1, id);
    store_sqlite_bind_text(s, q, 2, se->user_id);
    store_sqlite_bind_text(s, q, 3, se->token_hash);
    store_sqlite_bind_text(s, q, 4, se->user_agent);
    store_sqlite_bind_text(s, q, 5, se->ip);
    store_sqlite_bind_int(s, q, 6, created);
    store_sqlite_bind_int(s, q, 7, seen);
    store_sqlite_bind_int(s, q, 8, se->expires_at);
    e = store_sqlite_run(s, q, "session_create", NULL);
    if (e == APP_OK) {
        memcpy(se->id, id, sizeof id);
        se->created_at = created;
        se->last_seen_at = seen;
    }
    return e;
}

static enum app_err store_sqlite_session_get_by_hash(struct store *st, const char *token_hash,
                                                     int64_t now, struct store_session *out)
{
    struct store_sqlite *s = store_sqlite_of(st);
    sqlite3_stmt *q = store_sqlite_stmt(s, S_SESSION_GET_BY_HASH);
    if (!q)
        return APP_ESTORE;
    store_sqlite_bind_text(s, q, 1, token_hash);
    store_sqlite_bind_int(s, q, 2, now);
    return store_sqlite_get_one(s, q, "session_get_by_hash", store_sqlite_rd_session, out,
                                sizeof *out);
}

static enum app_err store_sqlite_session_touch(struct store *st, const char *id, int64_t now,
                                               int64_t expires_at)
{
    struct store_sqlite *s = store_sqlite_of(st);
    sqlite3_stmt *q = store_sqlite_stmt(s, S_SESSION_TOUCH);
    if (!q)
        return APP_ESTORE;
    store_sqlite_bind_text(s, q, 1, id);
    store_sqlite_bind_int(s, q, 2, now);
    store_sqlite_bind_int(s, q, 3, expires_at);
    return store_sqlite_run_one(s, q, "session_touch");
}

static enum app_err store_sqlite_session_list(struct store *st, const char *user_id, int64_t now,
                                              struct store_session **out, size_t *n)
{
    struct store_sqlite *s = store_sqlite_of(st);
    sqlite3_stmt *q = store_sqlite_stmt(s, S_SESSION_LIST);
    *out = NULL;
    *n = 0;
    if (!q)
        return APP_ESTORE;
    store_sqlite_bind_text(s, q, 1, user_id);
    store_sqlite_bind_int(s, q, 2, now);
    return store_sqlite_get_all(s, q, "session_list", sizeof **out, store_sqlite_rd_session,
                                store_sqlite_fr_session, (void **)out, n);
}

static enum app_err store_sqlite_session_delete(struct store *st, const char *user_id,
                                                const char *id)
{
    struct store_sqlite *s = store_sqlite_of(st);
    sqlite3_stmt *q = store_sqlite_stmt(s, S_SESSION_DELETE);
    if (!q)
        return APP_ESTORE;
    store_sqlite_bind_text(s, q, 1, id);
    store_sqlite_bind_text(s, q, 2, user_id);
    return store_sqlite_run_one(s, q, "session_delete");
}

static enum app_err store_sqlite_session_delete_all(struct store *st, const char *user_id,
                                                    const char *keep_id)
{
    struct store_sqlite *s = store_sqlite_of(st);
    sqlite3_stmt *q = store_sqlite_stmt(s, S_SESSION_DELETE_ALL);
    if (!q)
        return APP_ESTORE;
    store_sqlite_bind_text(s, q, 1, user_id);
    store_sqlite_bind_ref(s, q, 2, keep_id);
    return store_sqlite_run(s, q, "session_delete_all", NULL);
}

static enum app_err store_sqlite_session_purge(struct store *st, int64_t now, int64_t *n)
{
    struct store_sqlite *s = store_sqlite_of(st);
    int64_t changes = 0;
    sqlite3_stmt *q = store_sqlite_stmt(s, S_SESSION_PURGE);
    if (n)
        *n = 0;
    if (!q)
        return APP_ESTORE;
    store_sqlite_bind_int(s, q, 1, now);
    enum app_err e = store_sqlite_run(s, q, "session_purge", &changes);
    if (e == APP_OK && n)
        *n = changes;
    return e;
}

/* ---- provider connections ------------------------------------------------ */

static enum app_err store_sqlite_conn_upsert(struct store *st, struct store_conn *c)
{
    struct store_sqlite *s = store_sqlite_of(st);
    char id[STORE_ID_LEN + 1];
    enum app_err e = APP_OK;
    int rc;

    if (c->workspace_id[0]) {
        store_set_error(st, "conn_upsert: only personal connections are supported");
        return APP_EINVAL;
    }
    sqlite3_stmt *q = store_sqlite_stmt(s, S_CONN_UPSERT);
    if (!q)
        return APP_ESTORE;
    store_sqlite_pick_id(c->id, id);
    store_sqlite_bind_text(s, q, 1, id);
    store_sqlite_bind_text(s, q, 2, c->owner_id);
    store_sqlite_bind_text(s, q, 3, c->name);
    store_sqlite_bind_text(s, q, 4, c->base_url);
    store_sqlite_bind_blob(s, q, 5, c->key_ct, c->key_ct_len);
    store_sqlite_bind_int(s, q, 6, c->key_version);
    store_sqlite_bind_ref(s, q, 7, c->key_last4);
    store_sqlite_bind_int(s, q, 8, now_ms());
    rc = store_sqlite_step(s, q);
    if (rc == SQLITE_ROW) {
        store_sqlite_col_fixed(q, 0, c->id, sizeof c->id);
        c->created_at = sqlite3_column_int64(q, 1);
        c->updated_at = sqlite3_column_int64(q, 2);
    } else {
        e = store_sqlite_fail(s, rc, "conn_upsert");
    }
    store_sqlite_done(q);
    return e;
}

static enum app_err store_sqlite_conn_get_default(struct store *st, const char *owner_id,
                                                  struct store_conn *out)
{
    struct store_sqlite *s = store_sqlite_of(st);
    sqlite3_stmt *q = store_sqlite_stmt(s, S_CONN_GET_DEFAULT);
    if (!q)
        return APP_ESTORE;
    store_sqlite_bind_text(s, q, 1, owner_id);
    return store_sqlite_get_one(s, q, "conn_get_default", store_sqlite_rd_conn, out,
                                sizeof *out);
}

static enum app_err store_sqlite_conn_delete_default(struct store *st, const char *owner_id)
{
    struct store_sqlite *s = store_sqlite_of(st);
    sqlite3_stmt *q = store_sqlite_stmt(s, S_CONN_DELETE_DEFAULT);
    if (!q)
        return APP_ESTORE;
    store_sqlite_bind_text(s, q, 1, owner_id);
    return store_sqlite_run_one(s, q, "conn_delete_default");
}

static enum app_err store_sqlite_conn_list_all(struct store *st, struct store_conn **out,
                                               size_t *n)
{
    struct store_sqlite *s = store_sqlite_of(st);
    sqlite3_stmt *q = store_sqlite_stmt(s, S_CONN_LIST_ALL);
    *out = NULL;
    *n = 0;
    if (!q)
        return APP_ESTORE;
    return store_sqlite_get_all(s, q, "conn_list_all", sizeof **out, store_sqlite_rd_conn,
                                store_sqlite_fr_conn, (void **)out, n);
}

static enum app_err store_sqlite_conn_set_key(struct store *st, const char *id,
                                              const unsigned char *ct, size_t ct_len,
                                              int key_version)
{
    struct store_sqlite *s = store_sqlite_of(st);
    sqlite3_stmt *q = store_sqlite_stmt(s, S_CONN_SET_KEY);
    if (!q)
        return APP_ESTORE;
    store_sqlite_bind_text(s, q, 1, id);
    store_sqlite_bind_blob(s, q, 2, ct, ct_len);
    store_sqlite_bind_int(s, q, 3, key_version);
    store_sqlite_bind_int(s, q, 4, now_ms());
    return store_sqlite_run_one(s, q, "conn_set_key");
}

/* ---- chats --------------------------------------------------------------- */

/* APP_EINVAL unless folder_id is empty or a folder of owner_id. */
static enum app_err store_sqlite_check_folder(struct store_sqlite *s, const char *owner_id,
                                              const char *folder_id)
{
    bool found = false;
    if (!folder_id || !*folder_id)
        return APP_OK;
    enum app_err e = store_sqlite_exists(s, S_FOLDER_OWNED, folder_id, owner_id, &found);
    if (e == APP_OK && !found) {
        store_set_error(&s->base, "folder %s: no such folder of this user", folder_id);
        e = APP_EINVAL;
    }
    return e;
}

static enum app_err store_sqlite_chat_create(struct store *st, struct store_chat *c)
{
    struct store_sqlite *s = store_sqlite_of(st);
    char id[STORE_ID_LEN + 1];
    int64_t now = now_ms();
    bool outer;
    enum app_err e;

    if (c->current_leaf_id[0]) {
        store_set_error(st, "chat_create: a new chat has no current leaf");
        return APP_EINVAL;
    }
    store_sqlite_pick_id(c->id, id);
    e = store_sqlite_tx_begin(s, &outer);
    if (e != APP_OK)
        return e;
    e = store_sqlite_check_folder(s, c->owner_id, c->folder_id);
    if (e == APP_OK) {
        sqlite3_stmt *q = store_sqlite_stmt(s, S_CHAT_INSERT);
        if (!q) {
            e = APP_ESTORE;
        } else {
            store_sqlite_bind_text(s, q, 1, id);
            store_sqlite_bind_text(s, q, 2, c->owner_id);
            store_sqlite_bind_ref(s, q, 3, c->workspace_id);
            store_sqlite_bind_ref(s, q, 4, c->folder_id);
            store_sqlite_bind_text(s, q, 5, c->title);
            store_sqlite_bind_text(s, q, 6, c->model);
            store_sqlite_bind_text(s, q, 7, c->system_prompt);
            store_sqlite_bind_text(s, q, 8, c->params);
            store_sqlite_bind_int(s, q, 9, now);
            e = store_sqlite_run(s, q, "chat_create", NULL);
        }
    }
    e = store_sqlite_tx_end(s, outer, e);
    if (e == APP_OK) {
        memcpy(c->id, id, sizeof id);
        c->created_at = now;
        c->updated_at = now;
    }
    return e;
}

static enum app_err store_sqlite_chat_get(struct store *st, const char *owner_id, const char *id,
                                          struct store_chat *out)
{
    struct store_sqlite *s = store_sqlite_of(st);
    sqlite3_stmt *q = store_sqlite_stmt(s, S_CHAT_GET);
    if (!q)
        return APP_ESTORE;
    store_sqlite_bind_text(s, q, 1, id);
    store_sqlite_bind_text(s, q, 2, owner_id);
    return store_sqlite_get_one(s, q, "chat_get", store_sqlite_rd_chat, out,
                                sizeof *out);
}

static enum app_err store_sqlite_chat_list(struct store *st, const char *owner_id, int limit,
                                           int64_t before_ts, const char *before_id,
                                           struct store_chat **out, size_t *n)
{
    struct store_sqlite *s = store_sqlite_of(st);
    sqlite3_stmt *q;

    *out = NULL;
    *n = 0;
    if (limit < 1) {
        store_set_error(st, "chat_list: limit must be positive");
        return APP_EINVAL;
    }
    if (before_id) {
        q = store_sqlite_stmt(s, S_CHAT_LIST_BEFORE);
        if (!q)
            return APP_ESTORE;
        store_sqlite_bind_text(s, q, 1, owner_id);
        store_sqlite_bind_int(s, q, 2, before_ts);
        store_sqlite_bind_text(s, q, 3, before_id);
        store_sqlite_bind_int(s, q, 4, limit);
    } else {
        q = store_sqlite_stmt(s, S_CHAT_LIST_FIRST);
        if (!q)
            return APP_ESTORE;
        store_sqlite_bind_text(s, q, 1, owner_id);
        store_sqlite_bind_int(s, q, 2, limit);
    }
    return store_sqlite_get_all(s, q, "chat_list", sizeof **out, store_sqlite_rd_chat,
                                store_sqlite_fr_chat, (void **)out, n);
}

static enum app_err store_sqlite_chat_update(struct store *st, const char *owner_id,
                                             const char *id, const struct store_chat_patch *p)
{
    static const struct store_chat_patch none;
    struct store_sqlite *s = store_sqlite_of(st);
    bool outer, found = false;
    enum app_err e;

    if (!p)
        p = &none;
    e = store_sqlite_tx_begin(s, &outer);
    if (e != APP_OK)
        return e;
    e = store_sqlite_exists(s, S_CHAT_EXISTS, id, owner_id, &found);
    if (e == APP_OK && !found) {
        store_set_error(st, "chat_update: not found");
        e = APP_ENOTFOUND;
    }
    if (e == APP_OK && p->set_folder)
        e = store_sqlite_check_folder(s, owner_id, p->folder_id);
    if (e == APP_OK && p->set_leaf && p->current_leaf_id && *p->current_leaf_id) {
        e = store_sqlite_exists(s, S_MSG_IN_CHAT, p->current_leaf_id, id, &found);
        if (e == APP_OK && !found) {
            store_set_error(st, "chat_update: leaf %s is not a message of this chat",
                            p->current_leaf_id);
            e = APP_EINVAL;
        }
    }
    if (e == APP_OK) {
        sqlite3_stmt *q = store_sqlite_stmt(s, S_CHAT_UPDATE);
        if (!q) {
            e = APP_ESTORE;
        } else {
            store_sqlite_bind_text(s, q, 1, id);
            store_sqlite_bind_text(s, q, 2, owner_id);
            store_sqlite_bind_int(s, q, 3, p->set_title);
            store_sqlite_bind_text(s, q, 4, p->title);
            store_sqlite_bind_int(s, q, 5, p->set_model);
            store_sqlite_bind_text(s, q, 6, p->model);
            store_sqlite_bind_int(s, q, 7, p->set_system_prompt);
            store_sqlite_bind_text(s, q, 8, p->system_prompt);
            store_sqlite_bind_int(s, q, 9, p->set_params);
            store_sqlite_bind_text(s, q, 10, p->params);
            store_sqlite_bind_int(s, q, 11, p->set_folder);
            store_sqlite_bind_ref(s, q, 12, p->folder_id);
            store_sqlite_bind_int(s, q, 13, p->set_leaf);
            store_sqlite_bind_ref(s, q, 14, p->current_leaf_id);
            e = store_sqlite_run_one(s, q, "chat_update");
        }
    }
    return store_sqlite_tx_end(s, outer, e);
}

static enum app_err store_sqlite_chat_delete(struct store *st, const char *owner_id,
                                             const char *id)
{
    struct store_sqlite *s = store_sqlite_of(st);
    sqlite3_stmt *q = store_sqlite_stmt(s, S_CHAT_DELETE);
    if (!q)
        return APP_ESTORE;
    store_sqlite_bind_text(s, q, 1, id);
    store_sqlite_bind_text(s, q, 2, owner_id);
    return store_sqlite_run_one(s, q, "chat_delete");
}

static enum app_err store_sqlite_chat_touch(struct store *st, const char *id, int64_t now)
{
    struct store_sqlite *s = store_sqlite_of(st);
    sqlite3_stmt *q = store_sqlite_stmt(s, S_CHAT_TOUCH);
    if (!q)
        return APP_ESTORE;
    store_sqlite_bind_text(s, q, 1, id);
    store_sqlite_bind_int(s, q, 2, now);
    return store_sqlite_run_one(s, q, "chat_touch");
}

/* ---- messages ------------------------------------------------------------ */

static enum app_err store_sqlite_message_create(struct store *st, struct store_message *m)
{
    struct store_sqlite *s = store_sqlite_of(st);
    char id[STORE_ID_LEN + 1];
    int64_t created = m->created_at ? m->created_at : now_ms();
    const char *status = m->status[0] ? m->status : "complete";
    int64_t changes = 0;
    bool outer;
    enum app_err e;
    sqlite3_stmt *q;

    store_sqlite_pick_id(m->id, id);
    e = store_sqlite_tx_begin(s, &outer);
    if (e != APP_OK)
        return e;
    q = store_sqlite_stmt(s, S_MSG_INSERT);
    if (!q) {
        e = APP_ESTORE;
        goto out;
    }
    store_sqlite_bind_text(s, q, 1, id);
    store_sqlite_bind_text(s, q, 2, m->chat_id);
    store_sqlite_bind_ref(s, q, 3, m->parent_id);
    store_sqlite_bind_text(s, q, 4, m->role);
    store_sqlite_bind_text(s, q, 5, m->content);
    store_sqlite_bind_text(s, q, 6, m->model);
    store_sqlite_bind_text(s, q, 7, status);
    store_sqlite_bind_text(s, q, 8, m->error);
    store_sqlite_bind_tokens(s, q, 9, m->prompt_tokens);
    store_sqlite_bind_tokens(s, q, 10, m->completion_tokens);
    store_sqlite_bind_int(s, q, 11, created);
    e = store_sqlite_run(s, q, "message_create", &changes);
    if (e != APP_OK)
        goto out;
    if (changes == 0) {
        store_set_error(st, "message_create: parent %s is not a message of chat %s",
                        m->parent_id, m->chat_id);
        e = APP_EINVAL;
        goto out;
    }
    /* A new message is activity on its chat. */
    q = store_sqlite_stmt(s, S_CHAT_BUMP);
    if (!q) {
        e = APP_ESTORE;
        goto out;
    }
    store_sqlite_bind_text(s, q, 1, m->chat_id);
    store_sqlite_bind_int(s, q, 2, created);
    e = store_sqlite_run(s, q, "message_create", NULL);
out:
    e = store_sqlite_tx_end(s, outer, e);
    if (e == APP_OK) {
        memcpy(m->id, id, sizeof id);
        if (!m->status[0])
            snprintf(m->status, sizeof m->status, "%s", status);
        m->created_at = created;
        m->updated_at = created;
    }
    return e;
}

static enum app_err store_sqlite_message_get(struct store *st, const char *owner_id,
                                             const char *id, struct store_message *out)
{
    struct store_sqlite *s = store_sqlite_of(st);
    sqlite3_stmt *q = store_sqlite_stmt(s, S_MSG_GET);
    if (!q)
        return APP_ESTORE;
    store_sqlite_bind_text(s, q, 1, id);
    store_sqlite_bind_text(s, q, 2, owner_id);
    return store_sqlite_get_one(s, q, "message_get", store_sqlite_rd_message, out,
                                sizeof *out);
}

static enum app_err store_sqlite_message_list(struct store *st, const char *chat_id,
                                              struct store_message **out, size_t *n)
{
    struct store_sqlite *s = store_sqlite_of(st);
    sqlite3_stmt *q = store_sqlite_stmt(s, S_MSG_LIST);
    *out = NULL;
    *n = 0;
    if (!q)
        return APP_ESTORE;
    store_sqlite_bind_text(s, q, 1, chat_id);
    return store_sqlite_get_all(s, q, "message_list", sizeof **out, store_sqlite_rd_message,
                                store_sqlite_fr_message, (void **)out, n);
}

static enum app_err store_sqlite_message_tail(struct store *st, const char *chat_id,
                                              const char *leaf_id, int n,
                                              struct store_message **out, size_t *count,
                                              int64_t *total)
{
    struct store_sqlite *s = store_sqlite_of(st);
    *out = NULL;
    *count = 0;
    *total = 0;
    sqlite3_stmt *q = store_sqlite_stmt(s, S_MSG_COUNT);
    if (!q)
        return APP_ESTORE;
    store_sqlite_bind_text(s, q, 1, chat_id);
    int rc = store_sqlite_step(s, q);
    enum app_err e = APP_OK;
    if (rc == SQLITE_ROW)
        *total = sqlite3_column_int64(q, 0);
    else
        e = store_sqlite_fail(s, rc, "message_tail");
    store_sqlite_done(q);
    if (e != APP_OK)
        return e;
    q = store_sqlite_stmt(s, S_MSG_TAIL);
    if (!q)
        return APP_ESTORE;
    store_sqlite_bind_text(s, q, 1, leaf_id);
    store_sqlite_bind_text(s, q, 2, chat_id);
    store_sqlite_bind_int(s, q, 3, n);
    return store_sqlite_get_all(s, q, "message_tail", sizeof **out, store_sqlite_rd_message,
                                store_sqlite_fr_message, (void **)out, count);
}

static enum app_err store_sqlite_message_path(struct store *st, const char *id,
                                              struct store_message **out, size_t *n)
{
    struct store_sqlite *s = store_sqlite_of(st);
    sqlite3_stmt *q = store_sqlite_stmt(s, S_MSG_PATH);
    *out = NULL;
    *n = 0;
    if (!q)
        return APP_ESTORE;
    store_sqlite_bind_text(s, q, 1, id);
    enum app_err e = store_sqlite_get_all(s, q, "message_path", sizeof **out,
                                          store_sqlite_rd_message, store_sqlite_fr_message,
                                          (void **)out, n);
    if (e == APP_OK && *n == 0) {
        store_set_error(st, "message_path: not found");
        e = APP_ENOTFOUND;
    }
    return e;
}

static enum app_err store_sqlite_message_update(struct store *st, const char *id,
                                                const char *content, const char *status,
                                                const char *error, int64_t prompt_tokens,
                                                int64_t completion_tokens)
{
    struct store_sqlite *s = store_sqlite_of(st);
    sqlite3_stmt *q = store_sqlite_stmt(s, S_MSG_UPDATE);
    if (!q)
        return APP_ESTORE;
    store_sqlite_bind_text(s, q, 1, id);
    store_sqlite_bind_text(s, q, 2, content);
    store_sqlite_bind_ref(s, q, 3, status);
    store_sqlite_bind_text(s, q, 4, error);
    store_sqlite_bind_int(s, q, 5, prompt_tokens);
    store_sqlite_bind_int(s, q, 6, completion_tokens);
    store_sqlite_bind_int(s, q, 7, now_ms());
    return store_sqlite_run_one(s, q, "message_update");
}

static enum app_err store_sqlite_message_newest_leaf(struct store *st, const char *id,
                                                     char out[STORE_ID_LEN + 1])
{
    struct store_sqlite *s = store_sqlite_of(st);
    enum app_err e = APP_OK;
    sqlite3_stmt *q = store_sqlite_stmt(s, S_MSG_NEWEST_LEAF);
    int rc;

    out[0] = '\0';
    if (!q)
        return APP_ESTORE;
    store_sqlite_bind_text(s, q, 1, id);
    rc = store_sqlite_step(s, q);
    if (rc == SQLITE_ROW) {
        store_sqlite_col_fixed(q, 0, out, STORE_ID_LEN + 1);
    } else if (rc == SQLITE_DONE) {
        store_set_error(st, "message_newest_leaf: not found");
        e = APP_ENOTFOUND;
    } else {
        e = store_sqlite_fail(s, rc, "message_newest_leaf");
    }
    store_sqlite_done(q);
    return e;
}

static enum app_err store_sqlite_message_mark_interrupted(struct store *st, int64_t *n)
{
    struct store_sqlite *s = store_sqlite_of(st);
    int64_t changes = 0;
    sqlite3_stmt *q = store_sqlite_stmt(s, S_MSG_MARK_INTERRUPTED);
    if (n)
        *n = 0;
    if (!q)
        return APP_ESTORE;
    store_sqlite_bind_int(s, q, 1, now_ms());
    enum app_err e = store_sqlite_run(s, q, "message_mark_interrupted", &changes);
    if (e == APP_OK && n)
        *n = changes;
    return e;
}

/* ---- turn leases ---------------------------------------------------------- */

static enum app_err store_sqlite_lease_create(struct store *st, const char *message_id,
                                              const char *instance_id, int64_t expires_at)
{
    struct store_sqlite *s = store_sqlite_of(st);
    sqlite3_stmt *q = store_sqlite_stmt(s, S_LEASE_CREATE);
    if (!q)
        return APP_ESTORE;
    store_sqlite_bind_text(s, q, 1, message_id);
    store_sqlite_bind_text(s, q, 2, instance_id);
    store_sqlite_bind_int(s, q, 3, expires_at);
    return store_sqlite_run(s, q, "lease_create", NULL);
}

static enum app_err store_sqlite_lease_renew(struct store *st, const char *instance_id,
                                             int64_t expires_at,
                                             char (**stop_ids)[STORE_ID_LEN + 1], size_t *n)
{
    struct store_sqlite *s = store_sqlite_of(st);
    sqlite3_stmt *q = store_sqlite_stmt(s, S_LEASE_RENEW);
    if (!q)
        return APP_ESTORE;
    store_sqlite_bind_text(s, q, 1, instance_id);
    store_sqlite_bind_int(s, q, 2, expires_at);
    enum app_err e = store_sqlite_run(s, q, "lease_renew", NULL);
    if (e != APP_OK)
        return e;
    q = store_sqlite_stmt(s, S_LEASE_STOPS);
    if (!q)
        return APP_ESTORE;
    store_sqlite_bind_text(s, q, 1, instance_id);
    char(*ids)[STORE_ID_LEN + 1] = NULL;
    size_t len = 0, cap = 0;
    int rc;
    while ((rc = store_sqlite_step(s, q)) == SQLITE_ROW) {
        if (len == cap) {
            cap = cap ? cap * 2 : 4;
            ids = xrealloc(ids, cap * sizeof *ids);
        }
        store_sqlite_col_fixed(q, 0, ids[len++], STORE_ID_LEN + 1);
    }
    if (rc != SQLITE_DONE) {
        e = store_sqlite_fail(s, rc, "lease_renew");
        free(ids);
        ids = NULL;
        len = 0;
    }
    store_sqlite_done(q);
    *stop_ids = ids;
    *n = len;
    return e;
}

static enum app_err store_sqlite_lease_by_id(struct store *st, enum store_sqlite_stmt_id id,
                                             const char *message_id, int64_t v, bool with_v,
                                             const char *what, bool must_hit)
{
    struct store_sqlite *s = store_sqlite_of(st);
    sqlite3_stmt *q = store_sqlite_stmt(s, id);
    if (!q)
        return APP_ESTORE;
    store_sqlite_bind_text(s, q, 1, message_id);
    if (with_v)
        store_sqlite_bind_int(s, q, 2, v);
    int64_t changes = 0;
    enum app_err e = store_sqlite_run(s, q, what, &changes);
    if (e == APP_OK && must_hit && changes == 0) {
        store_set_error(st, "%s: not found", what);
        e = APP_ENOTFOUND;
    }
    return e;
}

static enum app_err store_sqlite_lease_progress(struct store *st, const char *message_id,
                                                int64_t events)
{
    return store_sqlite_lease_by_id(st, S_LEASE_PROGRESS, message_id, events, true,
                                    "lease_progress", false);
}

static enum app_err store_sqlite_lease_delete(struct store *st, const char *message_id)
{
    return store_sqlite_lease_by_id(st, S_LEASE_DELETE, message_id, 0, false, "lease_delete",
                                    false);
}

static enum app_err store_sqlite_lease_request_stop(struct store *st, const char *message_id)
{
    return store_sqlite_lease_by_id(st, S_LEASE_STOP_REQ, message_id, 0, false,
                                    "lease_request_stop", true);
}

static void store_sqlite_rd_lease(sqlite3_stmt *q, void *p)
{
    struct store_lease *l = p;
    store_sqlite_col_fixed(q, 0, l->instance_id, sizeof l->instance_id);
    l->expires_at = sqlite3_column_int64(q, 1);
    l->events = sqlite3_column_int64(q, 2);
    l->stop_requested = sqlite3_column_int64(q, 3) != 0;
}

static enum app_err store_sqlite_lease_get(struct store *st, const char *message_id,
                                           struct store_lease *out)
{
    struct store_sqlite *s = store_sqlite_of(st);
    sqlite3_stmt *q = store_sqlite_stmt(s, S_LEASE_GET);
    if (!q)
        return APP_ESTORE;
    store_sqlite_bind_text(s, q, 1, message_id);
    return store_sqlite_get_one(s, q, "lease_get", store_sqlite_rd_lease, out, sizeof *out);
}

static enum app_err store_sqlite_lease_expire(struct store *st, int64_t now,
                                              const char *dead_instance, int64_t *n)
{
    struct store_sqlite *s = store_sqlite_of(st);
    enum app_err e = store_sqlite_begin(st);
    if (e != APP_OK)
        return e;
    sqlite3_stmt *q = store_sqlite_stmt(s, S_LEASE_EXPIRE_MSGS);
    int64_t changes = 0;
    if (!q)
        e = APP_ESTORE;
    if (e == APP_OK) {
        store_sqlite_bind_int(s, q, 1, now);
        store_sqlite_bind_text(s, q, 2, dead_instance);
        e = store_sqlite_run(s, q, "lease_expire", &changes);
    }
    if (e == APP_OK) {
        q = store_sqlite_stmt(s, S_LEASE_EXPIRE);
        if (!q)
            e = APP_ESTORE;
    }
    if (e == APP_OK) {
        store_sqlite_bind_int(s, q, 1, now);
        store_sqlite_bind_text(s, q, 2, dead_instance);
        e = store_sqlite_run(s, q, "lease_expire", NULL);
    }
    if (e == APP_OK)
        e = store_sqlite_commit(st);
    else
        store_sqlite_rollback(st);
    if (e == APP_OK && n)
        *n = changes;
    return e;
}

/* ==== gateway (schema v2) ================================================== */

/* ---- users (admin listing) ----------------------------------------------- */

static enum app_err store_sqlite_user_list(struct store *st, struct store_user **out, size_t *n)
{
    struct store_sqlite *s = store_sqlite_of(st);
    sqlite3_stmt *q = store_sqlite_stmt(s, S_USER_LIST);
    *out = NULL;
    *n = 0;
    if (!q)
        return APP_ESTORE;
    return store_sqlite_get_all(s, q, "user_list", sizeof **out, store_sqlite_rd_user,
                                store_sqlite_fr_user, (void **)out, n);
}

/* ---- API tokens ---------------------------------------------------------- */

static enum app_err store_sqlite_token_create(struct store *st, struct store_token *t)
{
    struct store_sqlite *s = store_sqlite_of(st);
    char id[STORE_ID_LEN + 1];
    int64_t created = t->created_at ? t->created_at : now_ms();
    enum app_err e;

    if (!t->token_hash[0]) {
        store_set_error(st, "token_create: empty token hash");
        return APP_EINVAL;
    }
    sqlite3_stmt *q = store_sqlite_stmt(s, S_TOKEN_INSERT);
    if (!q)
        return APP_ESTORE;
    store_sqlite_pick_id(t->id, id);
    store_sqlite_bind_text(s, q, 1, id);
    store_sqlite_bind_text(s, q, 2, t->user_id);
    store_sqlite_bind_text(s, q, 3, t->name);
    store_sqlite_bind_text(s, q, 4, t->token_hash);
    store_sqlite_bind_text(s, q, 5, t->prefix);
    store_sqlite_bind_text(s, q, 6, t->models);
    store_sqlite_bind_int(s, q, 7, t->rpm);
    store_sqlite_bind_int(s, q, 8, t->tpm);
    store_sqlite_bind_int(s, q, 9, t->expires_at);
    store_sqlite_bind_int(s, q, 10, created);
    store_sqlite_bind_int(s, q, 11, t->last_used_at);
    store_sqlite_bind_int(s, q, 12, t->revoked_at);
    e = store_sqlite_run(s, q, "token_create", NULL);
    if (e == APP_OK) {
        memcpy(t->id, id, sizeof id);
        t->created_at = created;
    }
    return e;
}

static enum app_err store_sqlite_token_get_by_hash(struct store *st, const char *token_hash,
                                                   int64_t now, struct store_token *out)
{
    struct store_sqlite *s = store_sqlite_of(st);
    sqlite3_stmt *q = store_sqlite_stmt(s, S_TOKEN_GET_BY_HASH);
    if (!q)
        return APP_ESTORE;
    store_sqlite_bind_text(s, q, 1, token_hash);
    store_sqlite_bind_int(s, q, 2, now);
    return store_sqlite_get_one(s, q, "token_get_by_hash", store_sqlite_rd_token, out,
                                sizeof *out);
}

static enum app_err store_sqlite_token_list(struct store *st, const char *user_id,
                                            struct store_token **out, size_t *n)
{
    struct store_sqlite *s = store_sqlite_of(st);
    sqlite3_stmt *q = store_sqlite_stmt(s, S_TOKEN_LIST);
    *out = NULL;
    *n = 0;
    if (!q)
        return APP_ESTORE;
    store_sqlite_bind_text(s, q, 1, user_id);
    return store_sqlite_get_all(s, q, "token_list", sizeof **out, store_sqlite_rd_token,
                                store_sqlite_fr_token, (void **)out, n);
}

static enum app_err store_sqlite_token_revoke(struct store *st, const char *user_id,
                                              const char *id, int64_t now)
{
    struct store_sqlite *s = store_sqlite_of(st);
    if (now <= 0) { /* revoked_at 0 would read as active */
        store_set_error(st, "token_revoke: time must be positive");
        return APP_EINVAL;
    }
    sqlite3_stmt *q = store_sqlite_stmt(s, S_TOKEN_REVOKE);
    if (!q)
        return APP_ESTORE;
    store_sqlite_bind_text(s, q, 1, id);
    store_sqlite_bind_text(s, q, 2, user_id);
    store_sqlite_bind_int(s, q, 3, now);
    return store_sqlite_run_one(s, q, "token_revoke");
}

static enum app_err store_sqlite_token_touch(struct store *st, const char *id, int64_t now)
{
    struct store_sqlite *s = store_sqlite_of(st);
    sqlite3_stmt *q = store_sqlite_stmt(s, S_TOKEN_TOUCH);
    if (!q)
        return APP_ESTORE;
    store_sqlite_bind_text(s, q, 1, id);
    store_sqlite_bind_int(s, q, 2, now);
    return store_sqlite_run_one(s, q, "token_touch");
}

/* ---- key pool ------------------------------------------------------------ */

static enum app_err store_sqlite_pool_key_create(struct store *st, struct store_pool_key *k)
{
    struct store_sqlite *s = store_sqlite_of(st);
    char id[STORE_ID_LEN + 1];
    int64_t created = k->created_at ? k->created_at : now_ms();
    int64_t updated = k->updated_at ? k->updated_at : created;
    enum app_err e;

    sqlite3_stmt *q = store_sqlite_stmt(s, S_POOL_KEY_INSERT);
    if (!q)
        return APP_ESTORE;
    store_sqlite_pick_id(k->id, id);
    store_sqlite_bind_text(s, q, 1, id);
    store_sqlite_bind_text(s, q, 2, k->name);
    store_sqlite_bind_text(s, q, 3, k->base_url);
    store_sqlite_bind_blob(s, q, 4, k->key_ct, k->key_ct_len);
    store_sqlite_bind_int(s, q, 5, k->key_version);
    store_sqlite_bind_ref(s, q, 6, k->key_last4);
    store_sqlite_bind_int(s, q, 7, k->weight);
    store_sqlite_bind_int(s, q, 8, k->rpm);
    store_sqlite_bind_int(s, q, 9, k->tpm);
    store_sqlite_bind_int(s, q, 10, k->enabled ? 1 : 0);
    store_sqlite_bind_text(s, q, 11, k->disabled_reason);
    store_sqlite_bind_int(s, q, 12, created);
    store_sqlite_bind_int(s, q, 13, updated);
    e = store_sqlite_run(s, q, "pool_key_create", NULL);
    if (e == APP_OK) {
        memcpy(k->id, id, sizeof id);
        k->created_at = created;
        k->updated_at = updated;
    }
    return e;
}

static enum app_err store_sqlite_pool_key_list(struct store *st, struct store_pool_key **out,
                                               size_t *n)
{
    struct store_sqlite *s = store_sqlite_of(st);
    sqlite3_stmt *q = store_sqlite_stmt(s, S_POOL_KEY_LIST);
    *out = NULL;
    *n = 0;
    if (!q)
        return APP_ESTORE;
    return store_sqlite_get_all(s, q, "pool_key_list", sizeof **out, store_sqlite_rd_pool_key,
                                store_sqlite_fr_pool_key, (void **)out, n);
}

static enum app_err store_sqlite_pool_key_get(struct store *st, const char *id,
                                              struct store_pool_key *out)
{
    struct store_sqlite *s = store_sqlite_of(st);
    sqlite3_stmt *q = store_sqlite_stmt(s, S_POOL_KEY_GET);
    if (!q)
        return APP_ESTORE;
    store_sqlite_bind_text(s, q, 1, id);
    return store_sqlite_get_one(s, q, "pool_key_get", store_sqlite_rd_pool_key, out,
                                sizeof *out);
}

static enum app_err store_sqlite_pool_key_update(struct store *st, const struct store_pool_key *k)
{
    struct store_sqlite *s = store_sqlite_of(st);
    sqlite3_stmt *q = store_sqlite_stmt(s, S_POOL_KEY_UPDATE);
    if (!q)
        return APP_ESTORE;
    store_sqlite_bind_text(s, q, 1, k->id);
    store_sqlite_bind_text(s, q, 2, k->name);
    store_sqlite_bind_text(s, q, 3, k->base_url);
    store_sqlite_bind_int(s, q, 4, k->weight);
    store_sqlite_bind_int(s, q, 5, k->rpm);
    store_sqlite_bind_int(s, q, 6, k->tpm);
    store_sqlite_bind_int(s, q, 7, k->enabled ? 1 : 0);
    store_sqlite_bind_text(s, q, 8, k->disabled_reason);
    store_sqlite_bind_int(s, q, 9, now_ms());
    return store_sqlite_run_one(s, q, "pool_key_update");
}

static enum app_err store_sqlite_pool_key_set_key(struct store *st, const char *id,
                                                  const unsigned char *ct, size_t ct_len,
                                                  int key_version, const char *last4)
{
    struct store_sqlite *s = store_sqlite_of(st);
    sqlite3_stmt *q = store_sqlite_stmt(s, S_POOL_KEY_SET_KEY);
    if (!q)
        return APP_ESTORE;
    store_sqlite_bind_text(s, q, 1, id);
    store_sqlite_bind_blob(s, q, 2, ct, ct_len);
    store_sqlite_bind_int(s, q, 3, key_version);
    store_sqlite_bind_ref(s, q, 4, last4);
    store_sqlite_bind_int(s, q, 5, now_ms());
    return store_sqlite_run_one(s, q, "pool_key_set_key");
}

static enum app_err store_sqlite_pool_key_delete(struct store *st, const char *id)
{
    struct store_sqlite *s = store_sqlite_of(st);
    sqlite3_stmt *q = store_sqlite_stmt(s, S_POOL_KEY_DELETE);
    if (!q)
        return APP_ESTORE;
    store_sqlite_bind_text(s, q, 1, id);
    return store_sqlite_run_one(s, q, "pool_key_delete");
}

/* ---- usage records ------------------------------------------------------- */

static enum app_err store_sqlite_usage_insert(struct store *st, struct store_usage *u)
{
    struct store_sqlite *s = store_sqlite_of(st);
    char id[STORE_ID_LEN + 1];
    int64_t created = u->created_at ? u->created_at : now_ms();
    enum app_err e;

    if (u->prompt_tokens < 0 || u->cached_tokens < 0 || u->completion_tokens < 0 ||
        u->cost_micros < 0) {
        store_set_error(st, "usage_insert: negative token count or cost");
        return APP_EINVAL;
    }
    sqlite3_stmt *q = store_sqlite_stmt(s, S_USAGE_INSERT);
    if (!q)
        return APP_ESTORE;
    store_sqlite_pick_id(u->id, id);
    store_sqlite_bind_text(s, q, 1, id);
    store_sqlite_bind_ref(s, q, 2, u->user_id);
    store_sqlite_bind_ref(s, q, 3, u->token_id);
    store_sqlite_bind_ref(s, q, 4, u->key_id);
    store_sqlite_bind_ref(s, q, 5, u->key_source);
    store_sqlite_bind_ref(s, q, 6, u->endpoint);
    store_sqlite_bind_text(s, q, 7, u->model);
    store_sqlite_bind_int(s, q, 8, u->prompt_tokens);
    store_sqlite_bind_int(s, q, 9, u->cached_tokens);
    store_sqlite_bind_int(s, q, 10, u->completion_tokens);
    store_sqlite_bind_int(s, q, 11, u->tokens_estimated ? 1 : 0);
    store_sqlite_bind_int(s, q, 12, u->cost_micros);
    store_sqlite_bind_int(s, q, 13, u->latency_ms);
    store_sqlite_bind_int(s, q, 14, u->status);
    store_sqlite_bind_int(s, q, 15, created);
    e = store_sqlite_run(s, q, "usage_insert", NULL);
    if (e == APP_OK) {
        memcpy(u->id, id, sizeof id);
        u->created_at = created;
    }
    return e;
}

static enum app_err store_sqlite_usage_report(struct store *st, int64_t from, int64_t to,
                                              const char *user_id, struct store_usage_row **out,
                                              size_t *n)
{
    struct store_sqlite *s = store_sqlite_of(st);
    bool one = user_id && *user_id;
    sqlite3_stmt *q = store_sqlite_stmt(s, one ? S_USAGE_REPORT_USER : S_USAGE_REPORT_ALL);
    *out = NULL;
    *n = 0;
    if (!q)
        return APP_ESTORE;
    store_sqlite_bind_int(s, q, 1, from);
    store_sqlite_bind_int(s, q, 2, to);
    if (one)
        store_sqlite_bind_text(s, q, 3, user_id);
    return store_sqlite_get_all(s, q, "usage_report", sizeof **out, store_sqlite_rd_usage_row,
                                store_sqlite_fr_usage_row, (void **)out, n);
}

/* Run a statement that yields one row of count integers (always one row for
 * an aggregate), then release it. out[] is zeroed on error. */
static enum app_err store_sqlite_ints(struct store_sqlite *s, sqlite3_stmt *st, const char *what,
                                      int64_t *const out[], int count)
{
    enum app_err e = APP_OK;
    int rc = store_sqlite_step(s, st);
    for (int i = 0; i < count; i++) {
        if (out[i])
            *out[i] = rc == SQLITE_ROW ? sqlite3_column_int64(st, i) : 0;
    }
    if (rc != SQLITE_ROW && rc != SQLITE_DONE)
        e = store_sqlite_fail(s, rc, what);
    store_sqlite_done(st);
    return e;
}

static enum app_err store_sqlite_usage_totals(struct store *st, const char *user_id,
                                              int64_t since, int64_t *tokens,
                                              int64_t *cost_micros)
{
    struct store_sqlite *s = store_sqlite_of(st);
    int64_t *const out[] = { tokens, cost_micros };
    sqlite3_stmt *q = store_sqlite_stmt(s, S_USAGE_TOTALS);
    if (!q) {
        for (size_t i = 0; i < COAI_ARRAY_LEN(out); i++)
            if (out[i])
                *out[i] = 0;
        return APP_ESTORE;
    }
    store_sqlite_bind_text(s, q, 1, user_id);
    store_sqlite_bind_int(s, q, 2, since);
    return store_sqlite_ints(s, q, "usage_totals", out, (int)COAI_ARRAY_LEN(out));
}

static enum app_err store_sqlite_usage_key_totals(struct store *st, const char *key_id,
                                                  int64_t since, int64_t *requests,
                                                  int64_t *tokens, int64_t *errors)
{
    struct store_sqlite *s = store_sqlite_of(st);
    int64_t *const out[] = { requests, tokens, errors };
    sqlite3_stmt *q = store_sqlite_stmt(s, S_USAGE_KEY_TOTALS);
    if (!q) {
        for (size_t i = 0; i < COAI_ARRAY_LEN(out); i++)
            if (out[i])
                *out[i] = 0;
        return APP_ESTORE;
    }
    store_sqlite_bind_text(s, q, 1, key_id);
    store_sqlite_bind_int(s, q, 2, since);
    return store_sqlite_ints(s, q, "usage_key_totals", out, (int)COAI_ARRAY_LEN(out));
}

/* ---- prices -------------------------------------------------------------- */

static enum app_err store_sqlite_price_list(struct store *st, struct store_price **out, size_t *n)
{
    struct store_sqlite *s = store_sqlite_of(st);
    sqlite3_stmt *q = store_sqlite_stmt(s, S_PRICE_LIST);
    *out = NULL;
    *n = 0;
    if (!q)
        return APP_ESTORE;
    return store_sqlite_get_all(s, q, "price_list", sizeof **out, store_sqlite_rd_price,
                                store_sqlite_fr_price, (void **)out, n);
}

static enum app_err store_sqlite_price_upsert(struct store *st, const struct store_price *p)
{
    struct store_sqlite *s = store_sqlite_of(st);
    sqlite3_stmt *q = store_sqlite_stmt(s, S_PRICE_UPSERT);
    if (!q)
        return APP_ESTORE;
    store_sqlite_bind_text(s, q, 1, p->model);
    store_sqlite_bind_int(s, q, 2, p->input_micros);
    store_sqlite_bind_int(s, q, 3, p->cached_input_micros);
    store_sqlite_bind_int(s, q, 4, p->output_micros);
    store_sqlite_bind_int(s, q, 5, p->updated_at ? p->updated_at : now_ms());
    return store_sqlite_run(s, q, "price_upsert", NULL);
}

static enum app_err store_sqlite_price_delete(struct store *st, const char *model)
{
    struct store_sqlite *s = store_sqlite_of(st);
    sqlite3_stmt *q = store_sqlite_stmt(s, S_PRICE_DELETE);
    if (!q)
        return APP_ESTORE;
    store_sqlite_bind_text(s, q, 1, model);
    return store_sqlite_run_one(s, q, "price_delete");
}

/* ---- per-user limits ----------------------------------------------------- */

static enum app_err store_sqlite_user_limits_get(struct store *st, const char *user_id,
                                                 struct store_user_limits *out)
{
    struct store_sqlite *s = store_sqlite_of(st);
    sqlite3_stmt *q = store_sqlite_stmt(s, S_LIMITS_GET);
    if (!q)
        return APP_ESTORE;
    store_sqlite_bind_text(s, q, 1, user_id);
    return store_sqlite_get_one(s, q, "user_limits_get", store_sqlite_rd_limits, out,
                                sizeof *out);
}

static enum app_err store_sqlite_user_limits_set(struct store *st,
                                                 const struct store_user_limits *l)
{
    struct store_sqlite *s = store_sqlite_of(st);
    sqlite3_stmt *q = store_sqlite_stmt(s, S_LIMITS_SET);
    if (!q)
        return APP_ESTORE;
    store_sqlite_bind_text(s, q, 1, l->user_id);
    store_sqlite_bind_int(s, q, 2, l->rpm);
    store_sqlite_bind_int(s, q, 3, l->tpm);
    store_sqlite_bind_int(s, q, 4, l->monthly_tokens);
    store_sqlite_bind_int(s, q, 5, l->monthly_cost_micros);
    store_sqlite_bind_int(s, q, 6, l->updated_at ? l->updated_at : now_ms());
    return store_sqlite_run(s, q, "user_limits_set", NULL);
}

/* ---- open ---------------------------------------------------------------- */

static const struct store_ops store_sqlite_ops = {
    .name = "sqlite",
    .close = store_sqlite_close,
    .migrate = store_sqlite_migrate,
    .schema_version = store_sqlite_schema_version,
    .ping = store_sqlite_ping,
    .begin = store_sqlite_begin,
    .commit = store_sqlite_commit,
    .rollback = store_sqlite_rollback,
    .user_create = store_sqlite_user_create,
    .user_get = store_sqlite_user_get,
    .user_get_by_email = store_sqlite_user_get_by_email,
    .user_set_password = store_sqlite_user_set_password,
    .user_count = store_sqlite_user_count,
    .session_create = store_sqlite_session_create,
    .session_get_by_hash = store_sqlite_session_get_by_hash,
    .session_touch = store_sqlite_session_touch,
    .session_list = store_sqlite_session_list,
    .session_delete = store_sqlite_session_delete,
    .session_delete_all = store_sqlite_session_delete_all,
    .session_purge = store_sqlite_session_purge,
    .conn_upsert = store_sqlite_conn_upsert,
    .conn_get_default = store_sqlite_conn_get_default,
    .conn_delete_default = store_sqlite_conn_delete_default,
    .conn_list_all = store_sqlite_conn_list_all,
    .conn_set_key = store_sqlite_conn_set_key,
    .chat_create = store_sqlite_chat_create,
    .chat_get = store_sqlite_chat_get,
    .chat_list = store_sqlite_chat_list,
    .chat_update = store_sqlite_chat_update,
    .chat_delete = store_sqlite_chat_delete,
    .chat_touch = store_sqlite_chat_touch,
    .message_create = store_sqlite_message_create,
    .message_get = store_sqlite_message_get,
    .message_list = store_sqlite_message_list,
    .message_tail = store_sqlite_message_tail,
    .message_path = store_sqlite_message_path,
    .message_update = store_sqlite_message_update,
    .message_newest_leaf = store_sqlite_message_newest_leaf,
    .message_mark_interrupted = store_sqlite_message_mark_interrupted,
    .lease_create = store_sqlite_lease_create,
    .lease_renew = store_sqlite_lease_renew,
    .lease_progress = store_sqlite_lease_progress,
    .lease_delete = store_sqlite_lease_delete,
    .lease_request_stop = store_sqlite_lease_request_stop,
    .lease_get = store_sqlite_lease_get,
    .lease_expire = store_sqlite_lease_expire,
    .token_create = store_sqlite_token_create,
    .token_get_by_hash = store_sqlite_token_get_by_hash,
    .token_list = store_sqlite_token_list,
    .token_revoke = store_sqlite_token_revoke,
    .token_touch = store_sqlite_token_touch,
    .pool_key_create = store_sqlite_pool_key_create,
    .pool_key_list = store_sqlite_pool_key_list,
    .pool_key_get = store_sqlite_pool_key_get,
    .pool_key_update = store_sqlite_pool_key_update,
    .pool_key_set_key = store_sqlite_pool_key_set_key,
    .pool_key_delete = store_sqlite_pool_key_delete,
    .usage_insert = store_sqlite_usage_insert,
    .usage_report = store_sqlite_usage_report,
    .usage_totals = store_sqlite_usage_totals,
    .usage_key_totals = store_sqlite_usage_key_totals,
    .price_list = store_sqlite_price_list,
    .price_upsert = store_sqlite_price_upsert,
    .price_delete = store_sqlite_price_delete,
    .user_limits_get = store_sqlite_user_limits_get,
    .user_limits_set = store_sqlite_user_limits_set,
    .user_list = store_sqlite_user_list,
};

/* Run a pragma and copy the first column of its first row (may be "") . */
static int store_sqlite_pragma(sqlite3 *db, const char *sql, char *out, size_t outlen)
{
    sqlite3_stmt *st = NULL;
    int rc = sqlite3_prepare_v2(db, sql, -1, &st, NULL);
    if (rc == SQLITE_OK) {
        rc = sqlite3_step(st);
        if (rc == SQLITE_ROW) {
            const unsigned char *t = sqlite3_column_text(st, 0);
            snprintf(out, outlen, "%s", t ? (const char *)t : "");
            rc = SQLITE_OK;
        } else if (rc == SQLITE_DONE) {
            out[0] = '\0';
            rc = SQLITE_OK;
        }
    }
    sqlite3_finalize(st);
    return rc;
}

struct store *store_sqlite_open(const char *path, char *err, size_t errlen)
{
    struct store_sqlite *s = xcalloc(1, sizeof *s);
    char val[32];
    const char *fail = NULL;
    int rc;

    s->base.ops = &store_sqlite_ops;
    rc = sqlite3_open_v2(path, &s->db,
                         SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_NOMUTEX, NULL);
    if (rc != SQLITE_OK) {
        fail = "open";
        goto out;
    }
    sqlite3_extended_result_codes(s->db, 1);
    sqlite3_busy_timeout(s->db, STORE_SQLITE_BUSY_TIMEOUT_MS);

    rc = store_sqlite_pragma(s->db, "PRAGMA foreign_keys = ON", val, sizeof val);
    if (rc == SQLITE_OK)
        rc = store_sqlite_pragma(s->db, "PRAGMA foreign_keys", val, sizeof val);
    if (rc != SQLITE_OK || strcmp(val, "1") != 0) {
        fail = "enable foreign keys";
        goto out;
    }
    rc = store_sqlite_pragma(s->db, "PRAGMA journal_mode = WAL", val, sizeof val);
    if (rc != SQLITE_OK || (strcmp(val, "wal") != 0 && strcmp(val, "memory") != 0)) {
        fail = "enable WAL journal mode";
        goto out;
    }
    rc = store_sqlite_pragma(s->db, "PRAGMA synchronous = NORMAL", val, sizeof val);
    if (rc != SQLITE_OK) {
        fail = "set synchronous";
        goto out;
    }
    sqlite3_wal_hook(s->db, store_sqlite_on_commit, NULL);
out:
    if (fail) {
        if (err && errlen)
            snprintf(err, errlen, "sqlite %s %s: %s", fail, path,
                     s->db ? sqlite3_errmsg(s->db) : sqlite3_errstr(rc));
        sqlite3_close(s->db);
        free(s);
        return NULL;
    }
    return &s->base;
}
