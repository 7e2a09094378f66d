/* migrations_sqlite.c - the numbered SQLite schema migrations, compiled into
 * the binary so nothing is read from disk at run time. store_sqlite.c applies
 * the pending ones in order, one transaction each, and records them in
 * schema_migrations. Append new versions; never edit an applied one.
 */
#include "store_int.h"

/* Notes on 0001_init:
 *  - workspace_id / folder_id / parent_id / current_leaf_id are NULL when
 *    "none" ("" in the C structs).
 *  - messages.parent_id is a plain (NO ACTION) self-reference: deleting a
 *    chat removes all of its messages in one cascading statement, and SQLite
 *    checks immediate constraints at the end of the statement, so any tree
 *    depth works. ON DELETE CASCADE on parent_id would recurse one trigger
 *    level per generation and fail past SQLITE_MAX_TRIGGER_DEPTH (1000).
 *    Deleting one message therefore requires deleting its subtree first.
 *  - chats.current_leaf_id has no foreign key (it would make chats and
 *    messages reference each other); the store checks it on update.
 *  - email uses COLLATE NOCASE (ASCII case folding) for uniqueness and lookup.
 */
static const char store_sqlite_0001_init[] =
    "CREATE TABLE users ("
    "  id            TEXT PRIMARY KEY,"
    "  email         TEXT NOT NULL COLLATE NOCASE UNIQUE,"
    "  name          TEXT,"
    "  password_hash TEXT NOT NULL,"
    "  is_admin      INTEGER NOT NULL DEFAULT 0 CHECK (is_admin IN (0, 1)),"
    "  created_at    INTEGER NOT NULL,"
    "  updated_at    INTEGER NOT NULL"
    ");"

    "CREATE TABLE sessions ("
    "  id           TEXT PRIMARY KEY,"
    "  user_id      TEXT NOT NULL REFERENCES users(id) ON DELETE CASCADE,"
    "  token_hash   TEXT NOT NULL UNIQUE,"
    "  user_agent   TEXT,"
    "  ip           TEXT,"
    "  created_at   INTEGER NOT NULL,"
    "  last_seen_at INTEGER NOT NULL,"
    "  expires_at   INTEGER NOT NULL"
    ");"
    "CREATE INDEX sessions_user_id ON sessions(user_id);"
    "CREATE INDEX sessions_expires_at ON sessions(expires_at);"

    "CREATE TABLE workspaces ("
    "  id         TEXT PRIMARY KEY,"
    "  name       TEXT NOT NULL,"
    "  created_by TEXT REFERENCES users(id) ON DELETE SET NULL,"
    "  created_at INTEGER NOT NULL,"
    "  updated_at INTEGER NOT NULL"
    ");"

    "CREATE TABLE memberships ("
    "  workspace_id TEXT NOT NULL REFERENCES workspaces(id) ON DELETE CASCADE,"
    "  user_id      TEXT NOT NULL REFERENCES users(id) ON DELETE CASCADE,"
    "  role         TEXT NOT NULL CHECK (role IN ('owner', 'admin', 'member', 'viewer')),"
    "  created_at   INTEGER NOT NULL,"
    "  PRIMARY KEY (workspace_id, user_id)"
    ");"
    "CREATE INDEX memberships_user_id ON memberships(user_id);"

    "CREATE TABLE provider_connections ("
    "  id           TEXT PRIMARY KEY,"
    "  owner_id     TEXT NOT NULL REFERENCES users(id) ON DELETE CASCADE,"
    "  workspace_id TEXT REFERENCES workspaces(id) ON DELETE CASCADE,"
    "  name         TEXT,"
    "  base_url     TEXT NOT NULL,"
    "  key_ct       BLOB,"
    "  key_version  INTEGER NOT NULL DEFAULT 0,"
    "  key_last4    TEXT,"
    "  is_default   INTEGER NOT NULL DEFAULT 0 CHECK (is_default IN (0, 1)),"
    "  created_at   INTEGER NOT NULL,"
    "  updated_at   INTEGER NOT NULL"
    ");"
    "CREATE UNIQUE INDEX provider_connections_default_personal"
    "  ON provider_connections(owner_id) WHERE is_default = 1 AND workspace_id IS NULL;"
    "CREATE INDEX provider_connections_owner_id ON provider_connections(owner_id);"
    "CREATE INDEX provider_connections_workspace_id"
    "  ON provider_connections(workspace_id) WHERE workspace_id IS NOT NULL;"

    "CREATE TABLE folders ("
    "  id           TEXT PRIMARY KEY,"
    "  owner_id     TEXT NOT NULL REFERENCES users(id) ON DELETE CASCADE,"
    "  workspace_id TEXT REFERENCES workspaces(id) ON DELETE CASCADE,"
    "  parent_id    TEXT REFERENCES folders(id) ON DELETE CASCADE,"
    "  name         TEXT NOT NULL,"
    "  created_at   INTEGER NOT NULL,"
    "  updated_at   INTEGER NOT NULL"
    ");"
    "CREATE INDEX folders_owner_id ON folders(owner_id);"
    "CREATE INDEX folders_parent_id ON folders(parent_id);"

    "CREATE TABLE templates ("
    "  id           TEXT PRIMARY KEY,"
    "  owner_id     TEXT NOT NULL REFERENCES users(id) ON DELETE CASCADE,"
    "  workspace_id TEXT REFERENCES workspaces(id) ON DELETE CASCADE,"
    "  name         TEXT NOT NULL,"
    "  content      TEXT NOT NULL,"
    "  created_at   INTEGER NOT NULL,"
    "  updated_at   INTEGER NOT NULL"
    ");"
    "CREATE INDEX templates_owner_id ON templates(owner_id);"

    "CREATE TABLE chats ("
    "  id              TEXT PRIMARY KEY,"
    "  owner_id        TEXT NOT NULL REFERENCES users(id) ON DELETE CASCADE,"
    "  workspace_id    TEXT REFERENCES workspaces(id) ON DELETE CASCADE,"
    "  folder_id       TEXT REFERENCES folders(id) ON DELETE SET NULL,"
    "  title           TEXT,"
    "  model           TEXT,"
    "  system_prompt   TEXT,"
    "  params          TEXT CHECK (params IS NULL OR json_valid(params)),"
    "  current_leaf_id TEXT,"
    "  created_at      INTEGER NOT NULL,"
    "  updated_at      INTEGER NOT NULL"
    ");"
    "CREATE INDEX chats_owner_updated ON chats(owner_id, updated_at DESC, id DESC);"
    "CREATE INDEX chats_folder_id ON chats(folder_id) WHERE folder_id IS NOT NULL;"
    "CREATE INDEX chats_workspace_id ON chats(workspace_id) WHERE workspace_id IS NOT NULL;"

    "CREATE TABLE messages ("
    "  id                TEXT PRIMARY KEY,"
    "  chat_id           TEXT NOT NULL REFERENCES chats(id) ON DELETE CASCADE,"
    "  parent_id         TEXT REFERENCES messages(id),"
    "  role              TEXT NOT NULL"
    "                    CHECK (role IN ('system', 'user', 'assistant', 'tool')),"
    "  content           TEXT NOT NULL DEFAULT '[]'"
    "                    CHECK (CASE WHEN json_valid(content)"
    "                           THEN json_type(content) = 'array' ELSE 0 END),"
    "  model             TEXT,"
    "  status            TEXT NOT NULL DEFAULT 'complete'"
    "                    CHECK (status IN ('complete', 'streaming', 'error', 'stopped',"
    "                                      'interrupted')),"
    "  error             TEXT CHECK (error IS NULL OR json_valid(error)),"
    "  prompt_tokens     INTEGER,"
    "  completion_tokens INTEGER,"
    "  created_at        INTEGER NOT NULL,"
    "  updated_at        INTEGER NOT NULL"
    ");"
    "CREATE INDEX messages_chat_created ON messages(chat_id, created_at);"
    "CREATE INDEX messages_parent_id ON messages(parent_id, created_at);"
    "CREATE INDEX messages_streaming ON messages(status) WHERE status = 'streaming';"

    "CREATE TABLE attachments ("
    "  id         TEXT PRIMARY KEY,"
    "  owner_id   TEXT NOT NULL REFERENCES users(id) ON DELETE CASCADE,"
    "  chat_id    TEXT REFERENCES chats(id) ON DELETE CASCADE,"
    "  message_id TEXT REFERENCES messages(id) ON DELETE SET NULL,"
    "  filename   TEXT,"
    "  mime_type  TEXT NOT NULL,"
    "  size_bytes INTEGER NOT NULL,"
    "  sha256     TEXT,"
    "  storage    TEXT NOT NULL,"
    "  created_at INTEGER NOT NULL"
    ");"
    "CREATE INDEX attachments_owner_id ON attachments(owner_id);"
    "CREATE INDEX attachments_chat_id ON attachments(chat_id);"
    "CREATE INDEX attachments_message_id ON attachments(message_id);"

    "CREATE TABLE usage_records ("
    "  id                TEXT PRIMARY KEY,"
    "  user_id           TEXT REFERENCES users(id) ON DELETE SET NULL,"
    "  workspace_id      TEXT REFERENCES workspaces(id) ON DELETE SET NULL,"
    "  chat_id           TEXT REFERENCES chats(id) ON DELETE SET NULL,"
    "  message_id        TEXT REFERENCES messages(id) ON DELETE SET NULL,"
    "  connection_id     TEXT REFERENCES provider_connections(id) ON DELETE SET NULL,"
    "  model             TEXT,"
    "  prompt_tokens     INTEGER NOT NULL DEFAULT 0,"
    "  completion_tokens INTEGER NOT NULL DEFAULT 0,"
    "  cost_micros       INTEGER," /* millionths of a currency unit */
    "  created_at        INTEGER NOT NULL"
    ");"
    "CREATE INDEX usage_records_user_created ON usage_records(user_id, created_at);"
    "CREATE INDEX usage_records_chat_id ON usage_records(chat_id);"
    "CREATE INDEX usage_records_message_id ON usage_records(message_id);"
    "CREATE INDEX usage_records_workspace_id ON usage_records(workspace_id);"
    "CREATE INDEX usage_records_connection_id ON usage_records(connection_id);"

    "CREATE TABLE audit_log ("
    "  id          TEXT PRIMARY KEY,"
    "  actor_id    TEXT REFERENCES users(id) ON DELETE SET NULL,"
    "  action      TEXT NOT NULL,"
    "  target_type TEXT,"
    "  target_id   TEXT,"
    "  ip          TEXT,"
    "  detail      TEXT CHECK (detail IS NULL OR json_valid(detail)),"
    "  created_at  INTEGER NOT NULL"
    ");"
    "CREATE INDEX audit_log_created_at ON audit_log(created_at);"
    "CREATE INDEX audit_log_actor_id ON audit_log(actor_id, created_at);";

/* Notes on 0002_gateway (the OpenAI-compatible /v1 gateway):
 *  - api_tokens keep only the sha256 of the secret. Integer "none" values are
 *    stored as in the C structs: expires_at / last_used_at / revoked_at 0 =
 *    never, rpm / tpm -1 = no limit. Tokens and limits go with their user
 *    (ON DELETE CASCADE).
 *  - usage_records already existed in 0001 (unused until now); its columns
 *    are kept and the missing ones added. Legacy rows read as key_source ""
 *    and endpoint "" (NULL), status 200, no cached tokens, not estimated.
 *  - usage_records.token_id and key_id are plain text, without foreign keys:
 *    usage is an append-only ledger, so deleting a pool key (or a user and
 *    with it their tokens) must neither fail nor rewrite history, and a
 *    usage insert must not fail because the key or token it names was
 *    deleted while the request ran. user_id keeps its 0001 reference (ON
 *    DELETE SET NULL, so deleting a user does not block either).
 *  - usage_records(user_id, created_at) already exists from 0001.
 */
static const char store_sqlite_0002_gateway[] =
    "CREATE TABLE api_tokens ("
    "  id           TEXT PRIMARY KEY,"
    "  user_id      TEXT NOT NULL REFERENCES users(id) ON DELETE CASCADE,"
    "  name         TEXT,"
    "  token_hash   TEXT NOT NULL UNIQUE CHECK (length(token_hash) > 0),"
    "  prefix       TEXT NOT NULL DEFAULT '',"
    "  models       TEXT CHECK (models IS NULL OR CASE WHEN json_valid(models)"
    "                           THEN json_type(models) = 'array' ELSE 0 END),"
    "  rpm          INTEGER NOT NULL DEFAULT -1 CHECK (rpm >= -1),"
    "  tpm          INTEGER NOT NULL DEFAULT -1 CHECK (tpm >= -1),"
    "  expires_at   INTEGER NOT NULL DEFAULT 0,"
    "  created_at   INTEGER NOT NULL,"
    "  last_used_at INTEGER NOT NULL DEFAULT 0,"
    "  revoked_at   INTEGER NOT NULL DEFAULT 0"
    ");"
    "CREATE INDEX api_tokens_user_id ON api_tokens(user_id, created_at);"

    "CREATE TABLE pool_keys ("
    "  id              TEXT PRIMARY KEY,"
    "  name            TEXT,"
    "  base_url        TEXT NOT NULL,"
    "  key_ct          BLOB,"
    "  key_version     INTEGER NOT NULL DEFAULT 0,"
    "  key_last4       TEXT,"
    "  weight          INTEGER NOT NULL DEFAULT 1 CHECK (weight >= 1),"
    "  rpm             INTEGER NOT NULL DEFAULT -1 CHECK (rpm >= -1),"
    "  tpm             INTEGER NOT NULL DEFAULT -1 CHECK (tpm >= -1),"
    "  enabled         INTEGER NOT NULL DEFAULT 1 CHECK (enabled IN (0, 1)),"
    "  disabled_reason TEXT,"
    "  created_at      INTEGER NOT NULL,"
    "  updated_at      INTEGER NOT NULL"
    ");"

    "CREATE TABLE prices ("
    "  model               TEXT NOT NULL PRIMARY KEY CHECK (length(model) > 0),"
    "  input_micros        INTEGER NOT NULL DEFAULT 0 CHECK (input_micros >= 0),"
    "  cached_input_micros INTEGER NOT NULL DEFAULT 0 CHECK (cached_input_micros >= 0),"
    "  output_micros       INTEGER NOT NULL DEFAULT 0 CHECK (output_micros >= 0),"
    "  updated_at          INTEGER NOT NULL"
    ");"

    "CREATE TABLE user_limits ("
    "  user_id             TEXT NOT NULL PRIMARY KEY REFERENCES users(id) ON DELETE CASCADE,"
    "  rpm                 INTEGER NOT NULL DEFAULT -1 CHECK (rpm >= -1),"
    "  tpm                 INTEGER NOT NULL DEFAULT -1 CHECK (tpm >= -1),"
    "  monthly_tokens      INTEGER NOT NULL DEFAULT -1 CHECK (monthly_tokens >= -1),"
    "  monthly_cost_micros INTEGER NOT NULL DEFAULT -1 CHECK (monthly_cost_micros >= -1),"
    "  updated_at          INTEGER NOT NULL"
    ");"

    "ALTER TABLE usage_records ADD COLUMN token_id TEXT;"
    "ALTER TABLE usage_records ADD COLUMN key_id TEXT;"
    "ALTER TABLE usage_records ADD COLUMN key_source TEXT"
    "  CHECK (key_source IS NULL OR key_source IN ('pool', 'user', 'server'));"
    "ALTER TABLE usage_records ADD COLUMN endpoint TEXT;"
    "ALTER TABLE usage_records ADD COLUMN cached_tokens INTEGER NOT NULL DEFAULT 0;"
    "ALTER TABLE usage_records ADD COLUMN tokens_estimated INTEGER NOT NULL DEFAULT 0"
    "  CHECK (tokens_estimated IN (0, 1));"
    "ALTER TABLE usage_records ADD COLUMN latency_ms INTEGER NOT NULL DEFAULT 0;"
    "ALTER TABLE usage_records ADD COLUMN status INTEGER NOT NULL DEFAULT 200;"
    "CREATE INDEX usage_records_created_at ON usage_records(created_at);"
    "CREATE INDEX usage_records_key_created ON usage_records(key_id, created_at)"
    "  WHERE key_id IS NOT NULL;";

/* Which instance runs each streaming answer, until when (renewed every
 * second), how far its events got, and a stop asked by another instance. */
static const char store_sqlite_0003_turn_leases[] =
    "CREATE TABLE turn_leases ("
    "  message_id     TEXT NOT NULL PRIMARY KEY REFERENCES messages(id) ON DELETE CASCADE,"
    "  instance_id    TEXT NOT NULL,"
    "  expires_at     INTEGER NOT NULL,"
    "  events         INTEGER NOT NULL DEFAULT 0,"
    "  stop_requested INTEGER NOT NULL DEFAULT 0 CHECK (stop_requested IN (0, 1))"
    ");"
    "CREATE INDEX turn_leases_instance ON turn_leases(instance_id);";

const struct store_migration store_sqlite_migrations[] = {
    { 1, "0001_init", store_sqlite_0001_init },
    { 2, "0002_gateway", store_sqlite_0002_gateway },
    { 3, "0003_turn_leases", store_sqlite_0003_turn_leases },
};

const size_t store_sqlite_migrations_count = COAI_ARRAY_LEN(store_sqlite_migrations);
