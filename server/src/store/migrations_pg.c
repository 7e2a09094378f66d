/* migrations_pg.c - the numbered PostgreSQL schema migrations. They carry the
 * same version numbers as migrations_sqlite.c and describe the same schema
 * (tables, columns, constraints, indexes) in PostgreSQL's dialect, so that
 * both back ends behave alike. store_pg.c applies the pending ones in order,
 * one transaction each under an advisory lock, and records them in
 * schema_migrations. Append new versions (to both files); never edit an
 * applied one.
 */
#include "store_int.h"

/* Differences from the SQLite text, all deliberate:
 *  - Text columns use COLLATE "C": ids, models and days sort and compare
 *    bytewise, as in SQLite (keyset pagination, "largest id wins" ties and
 *    report order must not depend on the database's locale).
 *  - Times and counters are BIGINT; flags (is_admin, is_default, enabled,
 *    tokens_estimated) are BOOLEAN instead of 0/1 integers.
 *  - Key ciphertexts are BYTEA.
 *  - users.email: SQLite's COLLATE NOCASE folds ASCII letters only; the
 *    unique index and lookups here use the same folding via translate(), so
 *    the same pairs of addresses collide on both back ends.
 *  - JSON checks cast the text to json (the column keeps the text verbatim):
 *    malformed JSON fails the cast (SQLSTATE 22P02), valid JSON of the wrong
 *    type fails the check (23514); the store maps both to APP_EINVAL.
 *  - messages.parent_id is NO ACTION, as in SQLite: PostgreSQL checks it at
 *    the end of the cascading delete of a chat's messages, so any depth works.
 */
#define PG_NOCASE_EMAIL \
    "translate(email, 'ABCDEFGHIJKLMNOPQRSTUVWXYZ', 'abcdefghijklmnopqrstuvwxyz')"

static const char store_pg_0001_init[] =
    "CREATE TABLE users ("
    "  id            TEXT COLLATE \"C\" PRIMARY KEY,"
    "  email         TEXT COLLATE \"C\" NOT NULL,"
    "  name          TEXT,"
    "  password_hash TEXT NOT NULL,"
    "  is_admin      BOOLEAN NOT NULL DEFAULT false,"
    "  created_at    BIGINT NOT NULL,"
    "  updated_at    BIGINT NOT NULL"
    ");"
    "CREATE UNIQUE INDEX users_email_nocase ON users ((" PG_NOCASE_EMAIL "));"

    "CREATE TABLE sessions ("
    "  id           TEXT COLLATE \"C\" PRIMARY KEY,"
    "  user_id      TEXT COLLATE \"C\" NOT NULL REFERENCES users(id) ON DELETE CASCADE,"
    "  token_hash   TEXT COLLATE \"C\" NOT NULL UNIQUE,"
    "  user_agent   TEXT,"
    "  ip           TEXT,"
    "  created_at   BIGINT NOT NULL,"
    "  last_seen_at BIGINT NOT NULL,"
    "  expires_at   BIGINT NOT NULL"
    ");"
    "CREATE INDEX sessions_user_id ON sessions(user_id);"
    "CREATE INDEX sessions_expires_at ON sessions(expires_at);"

    "CREATE TABLE workspaces ("
    "  id         TEXT COLLATE \"C\" PRIMARY KEY,"
    "  name       TEXT NOT NULL,"
    "  created_by TEXT COLLATE \"C\" REFERENCES users(id) ON DELETE SET NULL,"
    "  created_at BIGINT NOT NULL,"
    "  updated_at BIGINT NOT NULL"
    ");"

    "CREATE TABLE memberships ("
    "  workspace_id TEXT COLLATE \"C\" NOT NULL REFERENCES workspaces(id) ON DELETE CASCADE,"
    "  user_id      TEXT COLLATE \"C\" NOT NULL REFERENCES users(id) ON DELETE CASCADE,"
    "  role         TEXT NOT NULL CHECK (role IN ('owner', 'admin', 'member', 'viewer')),"
    "  created_at   BIGINT NOT NULL,"
    "  PRIMARY KEY (workspace_id, user_id)"
    ");"
    "CREATE INDEX memberships_user_id ON memberships(user_id);"

    "CREATE TABLE provider_connections ("
    "  id           TEXT COLLATE \"C\" PRIMARY KEY,"
    "  owner_id     TEXT COLLATE \"C\" NOT NULL REFERENCES users(id) ON DELETE CASCADE,"
    "  workspace_id TEXT COLLATE \"C\" REFERENCES workspaces(id) ON DELETE CASCADE,"
    "  name         TEXT,"
    "  base_url     TEXT NOT NULL,"
    "  key_ct       BYTEA,"
    "  key_version  INTEGER NOT NULL DEFAULT 0,"
    "  key_last4    TEXT,"
    "  is_default   BOOLEAN NOT NULL DEFAULT false,"
    "  created_at   BIGINT NOT NULL,"
    "  updated_at   BIGINT NOT NULL"
    ");"
    "CREATE UNIQUE INDEX provider_connections_default_personal"
    "  ON provider_connections(owner_id) WHERE is_default AND workspace_id IS NULL;"
    "CREATE INDEX provider_connections_owner_id ON provider_connections(owner_id);"
    "CREATE INDEX provider_connections_workspace_id"
    "  ON provider_connections(workspace_id) WHERE workspace_id IS NOT NULL;"

    "CREATE TABLE folders ("
    "  id           TEXT COLLATE \"C\" PRIMARY KEY,"
    "  owner_id     TEXT COLLATE \"C\" NOT NULL REFERENCES users(id) ON DELETE CASCADE,"
    "  workspace_id TEXT COLLATE \"C\" REFERENCES workspaces(id) ON DELETE CASCADE,"
    "  parent_id    TEXT COLLATE \"C\" REFERENCES folders(id) ON DELETE CASCADE,"
    "  name         TEXT NOT NULL,"
    "  created_at   BIGINT NOT NULL,"
    "  updated_at   BIGINT NOT NULL"
    ");"
    "CREATE INDEX folders_owner_id ON folders(owner_id);"
    "CREATE INDEX folders_parent_id ON folders(parent_id);"

    "CREATE TABLE templates ("
    "  id           TEXT COLLATE \"C\" PRIMARY KEY,"
    "  owner_id     TEXT COLLATE \"C\" NOT NULL REFERENCES users(id) ON DELETE CASCADE,"
    "  workspace_id TEXT COLLATE \"C\" REFERENCES workspaces(id) ON DELETE CASCADE,"
    "  name         TEXT NOT NULL,"
    "  content      TEXT NOT NULL,"
    "  created_at   BIGINT NOT NULL,"
    "  updated_at   BIGINT NOT NULL"
    ");"
    "CREATE INDEX templates_owner_id ON templates(owner_id);"

    "CREATE TABLE chats ("
    "  id              TEXT COLLATE \"C\" PRIMARY KEY,"
    "  owner_id        TEXT COLLATE \"C\" NOT NULL REFERENCES users(id) ON DELETE CASCADE,"
    "  workspace_id    TEXT COLLATE \"C\" REFERENCES workspaces(id) ON DELETE CASCADE,"
    "  folder_id       TEXT COLLATE \"C\" REFERENCES folders(id) ON DELETE SET NULL,"
    "  title           TEXT,"
    "  model           TEXT,"
    "  system_prompt   TEXT,"
    "  params          TEXT CHECK (params IS NULL OR json_typeof(params::json) IS NOT NULL),"
    "  current_leaf_id TEXT COLLATE \"C\","
    "  created_at      BIGINT NOT NULL,"
    "  updated_at      BIGINT NOT NULL"
    ");"
    "CREATE INDEX chats_owner_updated ON chats(owner_id, updated_at DESC, id DESC);"
    "CREATE INDEX chats_folder_id ON chats(folder_id) WHERE folder_id IS NOT NULL;"
    "CREATE INDEX chats_workspace_id ON chats(workspace_id) WHERE workspace_id IS NOT NULL;"

    "CREATE TABLE messages ("
    "  id                TEXT COLLATE \"C\" PRIMARY KEY,"
    "  chat_id           TEXT COLLATE \"C\" NOT NULL REFERENCES chats(id) ON DELETE CASCADE,"
    "  parent_id         TEXT COLLATE \"C\" REFERENCES messages(id),"
    "  role              TEXT NOT NULL"
    "                    CHECK (role IN ('system', 'user', 'assistant', 'tool')),"
    "  content           TEXT NOT NULL DEFAULT '[]'"
    "                    CHECK (json_typeof(content::json) = 'array'),"
    "  model             TEXT,"
    "  status            TEXT NOT NULL DEFAULT 'complete'"
    "                    CHECK (status IN ('complete', 'streaming', 'error', 'stopped',"
    "                                      'interrupted')),"
    "  error             TEXT CHECK (error IS NULL OR json_typeof(error::json) IS NOT NULL),"
    "  prompt_tokens     BIGINT,"
    "  completion_tokens BIGINT,"
    "  created_at        BIGINT NOT NULL,"
    "  updated_at        BIGINT NOT NULL"
    ");"
    "CREATE INDEX messages_chat_created ON messages(chat_id, created_at);"
    "CREATE INDEX messages_parent_id ON messages(parent_id, created_at);"
    "CREATE INDEX messages_streaming ON messages(status) WHERE status = 'streaming';"

    "CREATE TABLE attachments ("
    "  id         TEXT COLLATE \"C\" PRIMARY KEY,"
    "  owner_id   TEXT COLLATE \"C\" NOT NULL REFERENCES users(id) ON DELETE CASCADE,"
    "  chat_id    TEXT COLLATE \"C\" REFERENCES chats(id) ON DELETE CASCADE,"
    "  message_id TEXT COLLATE \"C\" REFERENCES messages(id) ON DELETE SET NULL,"
    "  filename   TEXT,"
    "  mime_type  TEXT NOT NULL,"
    "  size_bytes BIGINT NOT NULL,"
    "  sha256     TEXT,"
    "  storage    TEXT NOT NULL,"
    "  created_at BIGINT NOT NULL"
    ");"
    "CREATE INDEX attachments_owner_id ON attachments(owner_id);"
    "CREATE INDEX attachments_chat_id ON attachments(chat_id);"
    "CREATE INDEX attachments_message_id ON attachments(message_id);"

    "CREATE TABLE usage_records ("
    "  id                TEXT COLLATE \"C\" PRIMARY KEY,"
    "  user_id           TEXT COLLATE \"C\" REFERENCES users(id) ON DELETE SET NULL,"
    "  workspace_id      TEXT COLLATE \"C\" REFERENCES workspaces(id) ON DELETE SET NULL,"
    "  chat_id           TEXT COLLATE \"C\" REFERENCES chats(id) ON DELETE SET NULL,"
    "  message_id        TEXT COLLATE \"C\" REFERENCES messages(id) ON DELETE SET NULL,"
    "  connection_id     TEXT COLLATE \"C\""
    "                    REFERENCES provider_connections(id) ON DELETE SET NULL,"
    "  model             TEXT COLLATE \"C\","
    "  prompt_tokens     BIGINT NOT NULL DEFAULT 0,"
    "  completion_tokens BIGINT NOT NULL DEFAULT 0,"
    "  cost_micros       BIGINT," /* millionths of a currency unit */
    "  created_at        BIGINT NOT NULL"
    ");"
    "CREATE INDEX usage_records_user_created ON usage_records(user_id, created_at);"
    "CREATE INDEX usage_records_chat_id ON usage_records(chat_id);"
    "CREATE INDEX usage_records_message_id ON usage_records(message_id);"
    "CREATE INDEX usage_records_workspace_id ON usage_records(workspace_id);"
    "CREATE INDEX usage_records_connection_id ON usage_records(connection_id);"

    "CREATE TABLE audit_log ("
    "  id          TEXT COLLATE \"C\" PRIMARY KEY,"
    "  actor_id    TEXT COLLATE \"C\" REFERENCES users(id) ON DELETE SET NULL,"
    "  action      TEXT NOT NULL,"
    "  target_type TEXT,"
    "  target_id   TEXT,"
    "  ip          TEXT,"
    "  detail      TEXT CHECK (detail IS NULL OR json_typeof(detail::json) IS NOT NULL),"
    "  created_at  BIGINT NOT NULL"
    ");"
    "CREATE INDEX audit_log_created_at ON audit_log(created_at);"
    "CREATE INDEX audit_log_actor_id ON audit_log(actor_id, created_at);";

/* 0002_gateway: see the notes in migrations_sqlite.c (same design). */
static const char store_pg_0002_gateway[] =
    "CREATE TABLE api_tokens ("
    "  id           TEXT COLLATE \"C\" PRIMARY KEY,"
    "  user_id      TEXT COLLATE \"C\" NOT NULL REFERENCES users(id) ON DELETE CASCADE,"
    "  name         TEXT,"
    "  token_hash   TEXT COLLATE \"C\" NOT NULL UNIQUE CHECK (length(token_hash) > 0),"
    "  prefix       TEXT NOT NULL DEFAULT '',"
    "  models       TEXT CHECK (models IS NULL OR json_typeof(models::json) = 'array'),"
    "  rpm          BIGINT NOT NULL DEFAULT -1 CHECK (rpm >= -1),"
    "  tpm          BIGINT NOT NULL DEFAULT -1 CHECK (tpm >= -1),"
    "  expires_at   BIGINT NOT NULL DEFAULT 0,"
    "  created_at   BIGINT NOT NULL,"
    "  last_used_at BIGINT NOT NULL DEFAULT 0,"
    "  revoked_at   BIGINT NOT NULL DEFAULT 0"
    ");"
    "CREATE INDEX api_tokens_user_id ON api_tokens(user_id, created_at);"

    "CREATE TABLE pool_keys ("
    "  id              TEXT COLLATE \"C\" PRIMARY KEY,"
    "  name            TEXT,"
    "  base_url        TEXT NOT NULL,"
    "  key_ct          BYTEA,"
    "  key_version     INTEGER NOT NULL DEFAULT 0,"
    "  key_last4       TEXT,"
    "  weight          INTEGER NOT NULL DEFAULT 1 CHECK (weight >= 1),"
    "  rpm             BIGINT NOT NULL DEFAULT -1 CHECK (rpm >= -1),"
    "  tpm             BIGINT NOT NULL DEFAULT -1 CHECK (tpm >= -1),"
    "  enabled         BOOLEAN NOT NULL DEFAULT true,"
    "  disabled_reason TEXT,"
    "  created_at      BIGINT NOT NULL,"
    "  updated_at      BIGINT NOT NULL"
    ");"

    "CREATE TABLE prices ("
    "  model               TEXT COLLATE \"C\" NOT NULL PRIMARY KEY CHECK (length(model) > 0),"
    "  input_micros        BIGINT NOT NULL DEFAULT 0 CHECK (input_micros >= 0),"
    "  cached_input_micros BIGINT NOT NULL DEFAULT 0 CHECK (cached_input_micros >= 0),"
    "  output_micros       BIGINT NOT NULL DEFAULT 0 CHECK (output_micros >= 0),"
    "  updated_at          BIGINT NOT NULL"
    ");"

    "CREATE TABLE user_limits ("
    "  user_id             TEXT COLLATE \"C\" NOT NULL PRIMARY KEY"
    "                      REFERENCES users(id) ON DELETE CASCADE,"
    "  rpm                 BIGINT NOT NULL DEFAULT -1 CHECK (rpm >= -1),"
    "  tpm                 BIGINT NOT NULL DEFAULT -1 CHECK (tpm >= -1),"
    "  monthly_tokens      BIGINT NOT NULL DEFAULT -1 CHECK (monthly_tokens >= -1),"
    "  monthly_cost_micros BIGINT NOT NULL DEFAULT -1 CHECK (monthly_cost_micros >= -1),"
    "  updated_at          BIGINT NOT NULL"
    ");"

    "ALTER TABLE usage_records ADD COLUMN token_id TEXT COLLATE \"C\";"
    "ALTER TABLE usage_records ADD COLUMN key_id TEXT COLLATE \"C\";"
    "ALTER TABLE usage_records ADD COLUMN key_source TEXT"
    "  CHECK (key_source IS NULL OR key_source IN ('pool', 'user', 'server'));"
    "ALTER TABLE usage_records ADD COLUMN endpoint TEXT;"
    "ALTER TABLE usage_records ADD COLUMN cached_tokens BIGINT NOT NULL DEFAULT 0;"
    "ALTER TABLE usage_records ADD COLUMN tokens_estimated BOOLEAN NOT NULL DEFAULT false;"
    "ALTER TABLE usage_records ADD COLUMN latency_ms BIGINT NOT NULL DEFAULT 0;"
    "ALTER TABLE usage_records ADD COLUMN status INTEGER NOT NULL DEFAULT 200;"
    "CREATE INDEX usage_records_created_at ON usage_records(created_at);"
    "CREATE INDEX usage_records_key_created ON usage_records(key_id, created_at)"
    "  WHERE key_id IS NOT NULL;";

/* See migrations_sqlite.c 0003. */
static const char store_pg_0003_turn_leases[] =
    "CREATE TABLE turn_leases ("
    "  message_id     TEXT NOT NULL PRIMARY KEY REFERENCES messages(id) ON DELETE CASCADE,"
    "  instance_id    TEXT NOT NULL,"
    "  expires_at     BIGINT NOT NULL,"
    "  events         BIGINT NOT NULL DEFAULT 0,"
    "  stop_requested INTEGER NOT NULL DEFAULT 0 CHECK (stop_requested IN (0, 1))"
    ");"
    "CREATE INDEX turn_leases_instance ON turn_leases(instance_id);";

const struct store_migration store_pg_migrations[] = {
    { 1, "0001_init", store_pg_0001_init },
    { 2, "0002_gateway", store_pg_0002_gateway },
    { 3, "0003_turn_leases", store_pg_0003_turn_leases },
};

const size_t store_pg_migrations_count = COAI_ARRAY_LEN(store_pg_migrations);
