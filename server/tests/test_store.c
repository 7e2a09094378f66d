/* test_store.c - cmocka unit tests for the store (SQLite back end): every
 * function of store.h, ownership rules, pagination, message trees, schema
 * migrations and file-backed databases shared by several handles. Prints one
 * summary line "unit-store: N passed, N failed" and fails on any failure.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>
#include <libpq-fe.h>

#include <pthread.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "lib/common.h"
#include "lib/ids.h"
#include "store/store.h"
#include "store/store_int.h" /* store_sqlite_migrations, for the v1 -> v2 upgrade test */

/* ---- fixtures and helpers ------------------------------------------------ */

struct fixture {
    struct store *st;
    char alice[STORE_ID_LEN + 1];
    char bob[STORE_ID_LEN + 1];
};

/* COAI_TEST_PG_URL set: the fixture tests (every test that does not look
 * at SQLite files or URLs) run on that PostgreSQL database instead, each on
 * an emptied schema. tests/run-unit.sh starts a throwaway cluster for it. */
static const char *g_pg_url;

static void test_store_pg_reset(void)
{
    PGconn *c = PQconnectdb(g_pg_url);
    if (PQstatus(c) != CONNECTION_OK) {
        char msg[256];
        snprintf(msg, sizeof msg, "%s", PQerrorMessage(c));
        PQfinish(c);
        fail_msg("PostgreSQL at COAI_TEST_PG_URL: %s", msg);
    }
    PGresult *r = PQexec(c, "SET client_min_messages = warning; "
                            "DROP SCHEMA public CASCADE; CREATE SCHEMA public");
    bool ok = PQresultStatus(r) == PGRES_COMMAND_OK;
    PQclear(r);
    PQfinish(c);
    if (!ok)
        fail_msg("cannot empty the test database");
}

/* A fresh, migrated store: SQLite in memory, or the emptied PostgreSQL
 * database of COAI_TEST_PG_URL. */
static struct store *test_store_open_memory(void)
{
    char err[256] = "";
    if (g_pg_url)
        test_store_pg_reset();
    struct store *st = store_open(g_pg_url ? g_pg_url : ":memory:", err, sizeof err);
    if (!st)
        fail_msg("store_open: %s", err);
    int from = -2, to = -2;
    assert_int_equal(store_migrate(st, &from, &to), APP_OK);
    assert_int_equal(from, 0);
    assert_true(to >= 1);
    return st;
}

static void test_store_make_user(struct store *st, const char *email, bool first_is_admin,
                                 char id[STORE_ID_LEN + 1])
{
    struct store_user u = { .email = (char *)email, .password_hash = (char *)"$argon2id$x" };
    enum app_err e = store_user_create(st, &u, first_is_admin);
    if (e != APP_OK)
        fail_msg("user_create %s: %s", email, store_errmsg(st));
    memcpy(id, u.id, STORE_ID_LEN + 1);
}

static int test_store_setup(void **state)
{
    struct fixture *f = xcalloc(1, sizeof *f);
    f->st = test_store_open_memory();
    test_store_make_user(f->st, "alice@example.com", true, f->alice);
    test_store_make_user(f->st, "bob@example.com", true, f->bob);
    *state = f;
    return 0;
}

static int test_store_teardown(void **state)
{
    struct fixture *f = *state;
    store_close(f->st);
    free(f);
    return 0;
}

static void test_store_make_chat(struct store *st, const char *owner, char id[STORE_ID_LEN + 1])
{
    struct store_chat c = { 0 };
    snprintf(c.owner_id, sizeof c.owner_id, "%s", owner);
    if (store_chat_create(st, &c) != APP_OK)
        fail_msg("chat_create: %s", store_errmsg(st));
    memcpy(id, c.id, STORE_ID_LEN + 1);
}

static void test_store_make_msg(struct store *st, const char *chat, const char *parent,
                                const char *role, int64_t created_at, char id[STORE_ID_LEN + 1])
{
    struct store_message m = { .content = (char *)"[{\"type\":\"text\",\"text\":\"hi\"}]",
                               .prompt_tokens = -1, .completion_tokens = -1,
                               .created_at = created_at };
    snprintf(m.chat_id, sizeof m.chat_id, "%s", chat);
    snprintf(m.parent_id, sizeof m.parent_id, "%s", parent ? parent : "");
    snprintf(m.role, sizeof m.role, "%s", role);
    if (store_message_create(st, &m) != APP_OK)
        fail_msg("message_create: %s", store_errmsg(st));
    memcpy(id, m.id, STORE_ID_LEN + 1);
}

/* A fresh temporary directory, and removal of it with its database files. */
static void test_store_tmpdir(char dir[64])
{
    snprintf(dir, 64, "/tmp/test_store.XXXXXX");
    assert_non_null(mkdtemp(dir));
}

static void test_store_rmdir(const char *dir)
{
    static const char *const names[] = { "a.db", "a.db-wal", "a.db-shm", "a.db-journal" };
    char path[128];
    for (size_t i = 0; i < COAI_ARRAY_LEN(names); i++) {
        snprintf(path, sizeof path, "%s/%s", dir, names[i]);
        unlink(path);
    }
    rmdir(dir);
}

static struct store *test_store_open_file(const char *dir, bool migrate)
{
    char url[128], err[256] = "";
    snprintf(url, sizeof url, "sqlite:%s/a.db", dir);
    struct store *st = store_open(url, err, sizeof err);
    if (!st)
        fail_msg("store_open %s: %s", url, err);
    if (migrate)
        assert_int_equal(store_migrate(st, NULL, NULL), APP_OK);
    return st;
}

/* A raw sqlite3 connection to the same file, for checks the API does not offer. */
static sqlite3 *test_store_raw(const char *dir)
{
    char path[128];
    sqlite3 *db = NULL;
    snprintf(path, sizeof path, "%s/a.db", dir);
    assert_int_equal(sqlite3_open(path, &db), SQLITE_OK);
    sqlite3_busy_timeout(db, 5000);
    sqlite3_exec(db, "PRAGMA foreign_keys = ON", NULL, NULL, NULL);
    return db;
}

static void test_store_raw_exec(sqlite3 *db, const char *sql)
{
    char *msg = NULL;
    if (sqlite3_exec(db, sql, NULL, NULL, &msg) != SQLITE_OK) {
        fprintf(stderr, "raw exec: %s\n", msg ? msg : "?");
        sqlite3_free(msg);
        fail();
    }
}

static int64_t test_store_raw_int(sqlite3 *db, const char *sql)
{
    sqlite3_stmt *st = NULL;
    int64_t v = -1;
    assert_int_equal(sqlite3_prepare_v2(db, sql, -1, &st, NULL), SQLITE_OK);
    if (sqlite3_step(st) == SQLITE_ROW)
        v = sqlite3_column_int64(st, 0);
    sqlite3_finalize(st);
    return v;
}

/* ---- lifecycle ----------------------------------------------------------- */

static void test_open_urls(void **state)
{
    char err[256];
    struct store *st;

    st = store_open(":memory:", err, sizeof err);
    assert_non_null(st);
    assert_string_equal(store_backend(st), "sqlite");
    assert_int_equal(store_ping(st), APP_OK);
    store_close(st);

    st = store_open("sqlite::memory:", err, sizeof err);
    assert_non_null(st);
    assert_int_equal(store_ping(st), APP_OK);
    store_close(st);

    static const char *const bad[] = { "", "sqlite:", "postgres://u@h/db", "mysql://x/y",
                                       "/nonexistent-dir-for-test/x.db" };
    for (size_t i = 0; i < COAI_ARRAY_LEN(bad); i++) {
        err[0] = '\0';
        assert_null(store_open(bad[i], err, sizeof err));
        assert_true(err[0] != '\0');
    }
    assert_null(store_open(NULL, NULL, 0));
    store_close(NULL);
    assert_non_null(store_errmsg(NULL));
}

static void test_unmigrated(void **state)
{
    int64_t n = 0;
    struct store *st = store_open(":memory:", NULL, 0);
    assert_non_null(st);
    assert_int_equal(store_schema_version(st), 0);
    assert_int_equal(store_user_count(st, &n), APP_ESTORE);
    assert_non_null(strstr(store_errmsg(st), "no such table"));
    store_close(st);
}

static void test_migrate_idempotent(void **state)
{
    struct store *st = store_open(":memory:", NULL, 0);
    int from = -2, to = -2;
    assert_int_equal(store_migrate(st, &from, &to), APP_OK);
    assert_int_equal(from, 0);
    assert_true(to >= 1);
    int v = store_schema_version(st);
    assert_int_equal(v, to);
    assert_int_equal(store_migrate(st, &from, &to), APP_OK);
    assert_int_equal(from, v);
    assert_int_equal(to, v);
    assert_int_equal(store_schema_version(st), v);
    assert_int_equal(store_migrate(st, NULL, NULL), APP_OK);
    store_close(st);
}

static void test_transactions(void **state)
{
    struct fixture *f = *state;
    struct store_user u = { 0 }, got = { 0 };
    int64_t n = 0;

    /* rollback discards; the internal savepoint path is used inside */
    assert_int_equal(store_begin(f->st), APP_OK);
    assert_int_equal(store_begin(f->st), APP_ESTORE); /* no nesting */
    u.email = (char *)"carol@example.com";
    u.password_hash = (char *)"h";
    assert_int_equal(store_user_create(f->st, &u, true), APP_OK);
    assert_false(u.is_admin);
    store_rollback(f->st);
    assert_int_equal(store_user_get(f->st, u.id, &got), APP_ENOTFOUND);

    /* a failed operation inside a transaction leaves the rest intact */
    assert_int_equal(store_begin(f->st), APP_OK);
    memset(u.id, 0, sizeof u.id);
    assert_int_equal(store_user_create(f->st, &u, false), APP_OK);
    struct store_user dup = { .email = (char *)"CAROL@example.com", .password_hash = (char *)"h" };
    assert_int_equal(store_user_create(f->st, &dup, false), APP_ECONFLICT);
    assert_int_equal(store_commit(f->st), APP_OK);
    assert_int_equal(store_user_get(f->st, u.id, &got), APP_OK);
    store_user_clear(&got);
    assert_int_equal(store_user_count(f->st, &n), APP_OK);
    assert_int_equal(n, 3);

    assert_int_equal(store_commit(f->st), APP_ESTORE); /* nothing open */
    store_rollback(f->st);                              /* harmless */
}

/* ---- users --------------------------------------------------------------- */

static void test_user_create_get(void **state)
{
    struct fixture *f = *state;
    struct store_user u = { .email = (char *)"Dave@Example.com", .name = (char *)"Dave",
                            .password_hash = (char *)"$argon2id$v=19$abc" };
    struct store_user got = { 0 };
    int64_t n = 0;

    assert_int_equal(store_user_create(f->st, &u, false), APP_OK);
    assert_true(ids_valid(u.id));
    assert_true(u.created_at > 0);
    assert_int_equal(u.updated_at, u.created_at);

    assert_int_equal(store_user_get(f->st, u.id, &got), APP_OK);
    assert_string_equal(got.id, u.id);
    assert_string_equal(got.email, "Dave@Example.com");
    assert_string_equal(got.name, "Dave");
    assert_string_equal(got.password_hash, "$argon2id$v=19$abc");
    assert_false(got.is_admin);
    assert_int_equal(got.created_at, u.created_at);
    store_user_clear(&got);
    assert_null(got.email);
    store_user_clear(&got); /* twice is fine */
    store_user_clear(NULL);

    assert_int_equal(store_user_get_by_email(f->st, "dave@EXAMPLE.com", &got), APP_OK);
    assert_string_equal(got.id, u.id);
    store_user_clear(&got);

    assert_int_equal(store_user_get_by_email(f->st, "nobody@example.com", &got), APP_ENOTFOUND);
    assert_int_equal(store_user_get(f->st, "00000000-0000-7000-8000-000000000000", &got),
                     APP_ENOTFOUND);
    assert_int_equal(store_user_get(f->st, NULL, &got), APP_ENOTFOUND);

    /* explicit id and no name */
    struct store_user e = { .email = (char *)"erin@example.com", .password_hash = (char *)"h" };
    ids_new(e.id);
    char want[STORE_ID_LEN + 1];
    memcpy(want, e.id, sizeof want);
    assert_int_equal(store_user_create(f->st, &e, false), APP_OK);
    assert_string_equal(e.id, want);
    assert_int_equal(store_user_get(f->st, want, &got), APP_OK);
    assert_null(got.name);
    store_user_clear(&got);

    /* same id again */
    struct store_user e2 = { .email = (char *)"erin2@example.com", .password_hash = (char *)"h" };
    memcpy(e2.id, want, sizeof want);
    assert_int_equal(store_user_create(f->st, &e2, false), APP_ECONFLICT);

    /* missing password hash violates NOT NULL */
    struct store_user np = { .email = (char *)"np@example.com" };
    assert_int_equal(store_user_create(f->st, &np, false), APP_EINVAL);

    assert_int_equal(store_user_count(f->st, &n), APP_OK);
    assert_int_equal(n, 4);
}

static void test_user_email_conflict(void **state)
{
    struct fixture *f = *state;
    struct store_user u = { .email = (char *)"ALICE@example.COM", .password_hash = (char *)"h" };
    assert_int_equal(store_user_create(f->st, &u, true), APP_ECONFLICT);
    assert_true(store_errmsg(f->st)[0] != '\0');
    int64_t n = 0;
    assert_int_equal(store_user_count(f->st, &n), APP_OK);
    assert_int_equal(n, 2);
}

static void test_user_first_admin(void **state)
{
    struct fixture *f = *state;
    struct store_user got = { 0 };

    /* from the fixture: alice was first (admin), bob second (not) */
    assert_int_equal(store_user_get(f->st, f->alice, &got), APP_OK);
    assert_true(got.is_admin);
    store_user_clear(&got);
    assert_int_equal(store_user_get(f->st, f->bob, &got), APP_OK);
    assert_false(got.is_admin);
    store_user_clear(&got);

    /* an explicit is_admin is honoured for later users */
    struct store_user u = { .email = (char *)"root2@example.com", .password_hash = (char *)"h",
                            .is_admin = true };
    assert_int_equal(store_user_create(f->st, &u, true), APP_OK);
    assert_true(u.is_admin);

    /* first_is_admin false: the first user is not promoted */
    struct store *st = test_store_open_memory();
    struct store_user v = { .email = (char *)"x@example.com", .password_hash = (char *)"h" };
    assert_int_equal(store_user_create(st, &v, false), APP_OK);
    assert_false(v.is_admin);
    assert_int_equal(store_user_get(st, v.id, &got), APP_OK);
    assert_false(got.is_admin);
    store_user_clear(&got);
    store_close(st);
}

static void test_user_set_password(void **state)
{
    struct fixture *f = *state;
    struct store_user got = { 0 };
    assert_int_equal(store_user_set_password(f->st, f->alice, "$argon2id$new"), APP_OK);
    assert_int_equal(store_user_get(f->st, f->alice, &got), APP_OK);
    assert_string_equal(got.password_hash, "$argon2id$new");
    assert_true(got.updated_at >= got.created_at);
    store_user_clear(&got);
    assert_int_equal(store_user_set_password(f->st, "missing", "x"), APP_ENOTFOUND);
}

/* ---- sessions ------------------------------------------------------------ */

static void test_store_make_session(struct store *st, const char *user, int n, int64_t expires,
                                    struct store_session *out)
{
    memset(out, 0, sizeof *out);
    snprintf(out->user_id, sizeof out->user_id, "%s", user);
    snprintf(out->token_hash, sizeof out->token_hash, "%064d", n);
    out->user_agent = (char *)"curl/8";
    out->ip = (char *)"127.0.0.1";
    out->created_at = 500;
    out->expires_at = expires;
    if (store_session_create(st, out) != APP_OK)
        fail_msg("session_create: %s", store_errmsg(st));
    out->user_agent = NULL;
    out->ip = NULL;
}

static void test_sessions(void **state)
{
    struct fixture *f = *state;
    struct store_session s1, s2, s3, s4, s5, s6, got = { 0 };
    struct store_session *list = NULL;
    size_t n = 0;
    int64_t purged = -1;
    const int64_t now = 1000;

    test_store_make_session(f->st, f->alice, 1, 5000, &s1);
    test_store_make_session(f->st, f->alice, 2, 1000, &s2); /* expires exactly now */
    test_store_make_session(f->st, f->alice, 3, 3000, &s3);
    test_store_make_session(f->st, f->bob, 4, 5000, &s4);
    assert_true(ids_valid(s1.id));
    assert_int_equal(s1.created_at, 500);
    assert_int_equal(s1.last_seen_at, 500);

    assert_int_equal(store_session_get_by_hash(f->st, s1.token_hash, now, &got), APP_OK);
    assert_string_equal(got.id, s1.id);
    assert_string_equal(got.user_id, f->alice);
    assert_string_equal(got.token_hash, s1.token_hash);
    assert_string_equal(got.user_agent, "curl/8");
    assert_string_equal(got.ip, "127.0.0.1");
    assert_int_equal(got.expires_at, 5000);
    store_session_clear(&got);
    assert_int_equal(store_session_get_by_hash(f->st, s2.token_hash, now, &got), APP_ENOTFOUND);
    assert_int_equal(store_session_get_by_hash(f->st, s2.token_hash, now - 1, &got), APP_OK);
    store_session_clear(&got);
    assert_int_equal(store_session_get_by_hash(f->st, "nope", now, &got), APP_ENOTFOUND);

    /* duplicate token hash */
    struct store_session dup = { 0 };
    snprintf(dup.user_id, sizeof dup.user_id, "%s", f->bob);
    memcpy(dup.token_hash, s1.token_hash, sizeof dup.token_hash);
    dup.expires_at = 9999;
    assert_int_equal(store_session_create(f->st, &dup), APP_ECONFLICT);
    struct store_session empty = { 0 };
    snprintf(empty.user_id, sizeof empty.user_id, "%s", f->bob);
    assert_int_equal(store_session_create(f->st, &empty), APP_EINVAL);

    /* list hides expired ones; most recently seen first */
    assert_int_equal(store_session_touch(f->st, s3.id, 2000, 9000), APP_OK);
    assert_int_equal(store_session_touch(f->st, "missing", 2000, 9000), APP_ENOTFOUND);
    assert_int_equal(store_session_list(f->st, f->alice, now, &list, &n), APP_OK);
    assert_int_equal(n, 2);
    assert_string_equal(list[0].id, s3.id);
    assert_int_equal(list[0].last_seen_at, 2000);
    assert_int_equal(list[0].expires_at, 9000);
    assert_string_equal(list[1].id, s1.id);
    store_session_list_free(list, n);
    assert_int_equal(store_session_list(f->st, "nobody", now, &list, &n), APP_OK);
    assert_int_equal(n, 0);
    assert_null(list);
    store_session_list_free(NULL, 0);

    /* delete: only one's own */
    assert_int_equal(store_session_delete(f->st, f->alice, s4.id), APP_ENOTFOUND);
    assert_int_equal(store_session_get_by_hash(f->st, s4.token_hash, now, &got), APP_OK);
    store_session_clear(&got);
    assert_int_equal(store_session_delete(f->st, f->bob, s4.id), APP_OK);
    assert_int_equal(store_session_get_by_hash(f->st, s4.token_hash, now, &got), APP_ENOTFOUND);

    /* delete_all keeps one */
    test_store_make_session(f->st, f->bob, 7, 5000, &s4);
    assert_int_equal(store_session_delete_all(f->st, f->alice, s1.id), APP_OK);
    assert_int_equal(store_session_list(f->st, f->alice, 0, &list, &n), APP_OK);
    assert_int_equal(n, 1);
    assert_string_equal(list[0].id, s1.id);
    store_session_list_free(list, n);
    assert_int_equal(store_session_get_by_hash(f->st, s4.token_hash, now, &got), APP_OK);
    store_session_clear(&got);

    /* purge removes expired sessions of everyone */
    test_store_make_session(f->st, f->alice, 5, 500, &s5);
    test_store_make_session(f->st, f->bob, 6, 999, &s6);
    assert_int_equal(store_session_purge(f->st, now, &purged), APP_OK);
    assert_int_equal(purged, 2);
    assert_int_equal(store_session_purge(f->st, now, &purged), APP_OK);
    assert_int_equal(purged, 0);
    assert_int_equal(store_session_purge(f->st, now, NULL), APP_OK);
    assert_int_equal(store_session_get_by_hash(f->st, s5.token_hash, 0, &got), APP_ENOTFOUND);

    /* delete_all without keep */
    assert_int_equal(store_session_delete_all(f->st, f->alice, NULL), APP_OK);
    assert_int_equal(store_session_list(f->st, f->alice, 0, &list, &n), APP_OK);
    assert_int_equal(n, 0);
    assert_int_equal(store_session_list(f->st, f->bob, 0, &list, &n), APP_OK);
    assert_int_equal(n, 1);
    store_session_list_free(list, n);
}

/* ---- provider connections ------------------------------------------------ */

static void test_conns(void **state)
{
    struct fixture *f = *state;
    static const unsigned char key1[] = { 0x00, 0x01, 0xff, 0x00, 0x7f, 0x80, 0x00 };
    static const unsigned char key2[] = { 0xde, 0xad, 0x00, 0xbe, 0xef };
    struct store_conn c = { 0 }, got = { 0 };
    struct store_conn *list = NULL;
    size_t n = 0;

    assert_int_equal(store_conn_get_default(f->st, f->alice, &got), APP_ENOTFOUND);

    snprintf(c.owner_id, sizeof c.owner_id, "%s", f->alice);
    c.name = (char *)"OpenAI";
    c.base_url = (char *)"https://api.openai.com/v1";
    c.key_ct = (unsigned char *)key1;
    c.key_ct_len = sizeof key1;
    c.key_version = 1;
    snprintf(c.key_last4, sizeof c.key_last4, "abcd");
    assert_int_equal(store_conn_upsert(f->st, &c), APP_OK);
    assert_true(ids_valid(c.id));
    assert_true(c.created_at > 0);

    assert_int_equal(store_conn_get_default(f->st, f->alice, &got), APP_OK);
    assert_string_equal(got.id, c.id);
    assert_string_equal(got.owner_id, f->alice);
    assert_string_equal(got.workspace_id, "");
    assert_string_equal(got.name, "OpenAI");
    assert_string_equal(got.base_url, "https://api.openai.com/v1");
    assert_int_equal(got.key_ct_len, sizeof key1);
    assert_memory_equal(got.key_ct, key1, sizeof key1);
    assert_int_equal(got.key_version, 1);
    assert_string_equal(got.key_last4, "abcd");
    store_conn_clear(&got);
    store_conn_clear(NULL);

    /* upsert again replaces in place: same id and created_at */
    struct store_conn c2 = { 0 };
    snprintf(c2.owner_id, sizeof c2.owner_id, "%s", f->alice);
    c2.base_url = (char *)"http://localhost:11434/v1";
    assert_int_equal(store_conn_upsert(f->st, &c2), APP_OK);
    assert_string_equal(c2.id, c.id);
    assert_int_equal(c2.created_at, c.created_at);
    assert_int_equal(store_conn_get_default(f->st, f->alice, &got), APP_OK);
    assert_string_equal(got.base_url, "http://localhost:11434/v1");
    assert_null(got.name);
    assert_null(got.key_ct);
    assert_int_equal(got.key_ct_len, 0);
    assert_string_equal(got.key_last4, "");
    store_conn_clear(&got);

    /* list_all returns only connections with a key */
    assert_int_equal(store_conn_list_all(f->st, &list, &n), APP_OK);
    assert_int_equal(n, 0);
    assert_int_equal(store_conn_set_key(f->st, c.id, key2, sizeof key2, 2), APP_OK);
    assert_int_equal(store_conn_set_key(f->st, "missing", key2, sizeof key2, 2), APP_ENOTFOUND);

    struct store_conn b = { 0 };
    snprintf(b.owner_id, sizeof b.owner_id, "%s", f->bob);
    b.base_url = (char *)"https://example.org/v1";
    b.key_ct = (unsigned char *)key1;
    b.key_ct_len = sizeof key1;
    b.key_version = 1;
    assert_int_equal(store_conn_upsert(f->st, &b), APP_OK);
    assert_string_not_equal(b.id, c.id);

    assert_int_equal(store_conn_list_all(f->st, &list, &n), APP_OK);
    assert_int_equal(n, 2);
    for (size_t i = 0; i < n; i++) {
        if (strcmp(list[i].id, c.id) == 0) {
            assert_int_equal(list[i].key_version, 2);
            assert_int_equal(list[i].key_ct_len, sizeof key2);
            assert_memory_equal(list[i].key_ct, key2, sizeof key2);
        } else {
            assert_string_equal(list[i].id, b.id);
            assert_memory_equal(list[i].key_ct, key1, sizeof key1);
        }
    }
    store_conn_list_free(list, n);

    /* bad input */
    struct store_conn w = { 0 };
    snprintf(w.owner_id, sizeof w.owner_id, "%s", f->alice);
    snprintf(w.workspace_id, sizeof w.workspace_id, "%s", f->bob);
    w.base_url = (char *)"x";
    assert_int_equal(store_conn_upsert(f->st, &w), APP_EINVAL);
    struct store_conn nourl = { 0 };
    snprintf(nourl.owner_id, sizeof nourl.owner_id, "%s", f->alice);
    assert_int_equal(store_conn_upsert(f->st, &nourl), APP_EINVAL);
    struct store_conn noowner = { .base_url = (char *)"x" };
    snprintf(noowner.owner_id, sizeof noowner.owner_id, "nobody");
    assert_int_equal(store_conn_upsert(f->st, &noowner), APP_EINVAL);

    /* delete */
    assert_int_equal(store_conn_delete_default(f->st, f->alice), APP_OK);
    assert_int_equal(store_conn_get_default(f->st, f->alice, &got), APP_ENOTFOUND);
    assert_int_equal(store_conn_delete_default(f->st, f->alice), APP_ENOTFOUND);
    assert_int_equal(store_conn_get_default(f->st, f->bob, &got), APP_OK);
    store_conn_clear(&got);
}

/* ---- chats --------------------------------------------------------------- */

static void test_chat_create_get(void **state)
{
    struct fixture *f = *state;
    struct store_chat c = { 0 }, got = { 0 };

    snprintf(c.owner_id, sizeof c.owner_id, "%s", f->alice);
    c.title = (char *)"Hello";
    c.model = (char *)"gpt-4o-mini";
    c.system_prompt = (char *)"Be brief.";
    c.params = (char *)"{\"temperature\":0.7}";
    assert_int_equal(store_chat_create(f->st, &c), APP_OK);
    assert_true(ids_valid(c.id));
    assert_true(c.created_at > 0);
    assert_int_equal(c.updated_at, c.created_at);

    assert_int_equal(store_chat_get(f->st, f->alice, c.id, &got), APP_OK);
    assert_string_equal(got.id, c.id);
    assert_string_equal(got.owner_id, f->alice);
    assert_string_equal(got.workspace_id, "");
    assert_string_equal(got.folder_id, "");
    assert_string_equal(got.title, "Hello");
    assert_string_equal(got.model, "gpt-4o-mini");
    assert_string_equal(got.system_prompt, "Be brief.");
    assert_string_equal(got.params, "{\"temperature\":0.7}");
    assert_string_equal(got.current_leaf_id, "");
    assert_int_equal(got.created_at, c.created_at);
    store_chat_clear(&got);
    store_chat_clear(NULL);

    /* all-NULL chat */
    struct store_chat e = { 0 };
    snprintf(e.owner_id, sizeof e.owner_id, "%s", f->bob);
    assert_int_equal(store_chat_create(f->st, &e), APP_OK);
    assert_int_equal(store_chat_get(f->st, f->bob, e.id, &got), APP_OK);
    assert_null(got.title);
    assert_null(got.model);
    assert_null(got.system_prompt);
    assert_null(got.params);
    store_chat_clear(&got);

    /* invalid references and values */
    struct store_chat bad = { 0 };
    snprintf(bad.owner_id, sizeof bad.owner_id, "%s", f->alice);
    snprintf(bad.folder_id, sizeof bad.folder_id, "no-such-folder");
    assert_int_equal(store_chat_create(f->st, &bad), APP_EINVAL);
    memset(&bad, 0, sizeof bad);
    snprintf(bad.owner_id, sizeof bad.owner_id, "%s", f->alice);
    snprintf(bad.workspace_id, sizeof bad.workspace_id, "no-such-workspace");
    assert_int_equal(store_chat_create(f->st, &bad), APP_EINVAL);
    memset(&bad, 0, sizeof bad);
    snprintf(bad.owner_id, sizeof bad.owner_id, "nobody");
    assert_int_equal(store_chat_create(f->st, &bad), APP_EINVAL);
    memset(&bad, 0, sizeof bad);
    snprintf(bad.owner_id, sizeof bad.owner_id, "%s", f->alice);
    bad.params = (char *)"{not json";
    assert_int_equal(store_chat_create(f->st, &bad), APP_EINVAL);
    memset(&bad, 0, sizeof bad);
    snprintf(bad.owner_id, sizeof bad.owner_id, "%s", f->alice);
    snprintf(bad.current_leaf_id, sizeof bad.current_leaf_id, "%s", c.id);
    assert_int_equal(store_chat_create(f->st, &bad), APP_EINVAL);
    memset(&bad, 0, sizeof bad);
    snprintf(bad.owner_id, sizeof bad.owner_id, "%s", f->alice);
    memcpy(bad.id, c.id, sizeof bad.id);
    assert_int_equal(store_chat_create(f->st, &bad), APP_ECONFLICT);

    assert_int_equal(store_chat_get(f->st, f->alice, "missing", &got), APP_ENOTFOUND);
}

struct test_store_key {
    int64_t ts;
    char id[STORE_ID_LEN + 1];
};

static int test_store_key_cmp(const void *a, const void *b)
{
    const struct test_store_key *x = a, *y = b;
    if (x->ts != y->ts)
        return x->ts > y->ts ? -1 : 1;
    return -strcmp(x->id, y->id);
}

static void test_chat_list_pagination(void **state)
{
    struct fixture *f = *state;
    static const int64_t ts[] = { 100, 200, 200, 200, 300, 100, 200, 200 };
    enum { N = COAI_ARRAY_LEN(ts) };
    struct test_store_key want[N];
    struct store_chat *list = NULL;
    size_t n = 0, seen = 0;
    char other[STORE_ID_LEN + 1];

    for (size_t i = 0; i < N; i++) {
        test_store_make_chat(f->st, f->alice, want[i].id);
        want[i].ts = ts[i];
        assert_int_equal(store_chat_touch(f->st, want[i].id, ts[i]), APP_OK);
    }
    test_store_make_chat(f->st, f->bob, other); /* never listed for alice */
    qsort(want, N, sizeof want[0], test_store_key_cmp);

    int64_t before_ts = 0;
    char before_id[STORE_ID_LEN + 1] = "";
    for (int page = 0; page < 10; page++) {
        assert_int_equal(store_chat_list(f->st, f->alice, 3, before_ts,
                                         page ? before_id : NULL, &list, &n),
                         APP_OK);
        if (n == 0)
            break;
        assert_true(n <= 3);
        for (size_t i = 0; i < n; i++, seen++) {
            assert_true(seen < N);
            assert_string_equal(list[i].id, want[seen].id);
            assert_int_equal(list[i].updated_at, want[seen].ts);
            assert_string_equal(list[i].owner_id, f->alice);
        }
        before_ts = list[n - 1].updated_at;
        memcpy(before_id, list[n - 1].id, sizeof before_id);
        store_chat_list_free(list, n);
        list = NULL;
    }
    assert_int_equal(seen, N);

    /* one big page equals the whole order */
    assert_int_equal(store_chat_list(f->st, f->alice, 100, 0, NULL, &list, &n), APP_OK);
    assert_int_equal(n, N);
    store_chat_list_free(list, n);

    assert_int_equal(store_chat_list(f->st, f->alice, 0, 0, NULL, &list, &n), APP_EINVAL);
    assert_int_equal(store_chat_list(f->st, "nobody", 10, 0, NULL, &list, &n), APP_OK);
    assert_int_equal(n, 0);
    assert_null(list);
}

static void test_chat_ownership(void **state)
{
    struct fixture *f = *state;
    char chat[STORE_ID_LEN + 1], msg[STORE_ID_LEN + 1];
    struct store_chat got = { 0 };
    struct store_message m = { 0 };
    struct store_chat_patch p = { .set_title = true, .title = "stolen" };

    test_store_make_chat(f->st, f->alice, chat);
    test_store_make_msg(f->st, chat, NULL, "user", 0, msg);

    assert_int_equal(store_chat_get(f->st, f->bob, chat, &got), APP_ENOTFOUND);
    assert_int_equal(store_chat_update(f->st, f->bob, chat, &p), APP_ENOTFOUND);
    assert_int_equal(store_chat_delete(f->st, f->bob, chat), APP_ENOTFOUND);
    assert_int_equal(store_message_get(f->st, f->bob, msg, &m), APP_ENOTFOUND);

    assert_int_equal(store_chat_get(f->st, f->alice, chat, &got), APP_OK);
    assert_null(got.title);
    store_chat_clear(&got);
    assert_int_equal(store_message_get(f->st, f->alice, msg, &m), APP_OK);
    assert_string_equal(m.id, msg);
    store_message_clear(&m);
}

static void test_chat_patch(void **state)
{
    struct fixture *f = *state;
    char chat[STORE_ID_LEN + 1], other[STORE_ID_LEN + 1];
    char m1[STORE_ID_LEN + 1], m2[STORE_ID_LEN + 1];
    struct store_chat got = { 0 };

    test_store_make_chat(f->st, f->alice, chat);
    test_store_make_chat(f->st, f->alice, other);
    test_store_make_msg(f->st, chat, NULL, "user", 0, m1);
    test_store_make_msg(f->st, other, NULL, "user", 0, m2);

    struct store_chat_patch p = { .set_title = true, .title = "T",
                                  .set_model = true, .model = "m",
                                  .set_system_prompt = true, .system_prompt = "sp",
                                  .set_params = true, .params = "{\"top_p\":1}",
                                  .set_leaf = true, .current_leaf_id = m1 };
    assert_int_equal(store_chat_update(f->st, f->alice, chat, &p), APP_OK);
    assert_int_equal(store_chat_get(f->st, f->alice, chat, &got), APP_OK);
    assert_string_equal(got.title, "T");
    assert_string_equal(got.model, "m");
    assert_string_equal(got.system_prompt, "sp");
    assert_string_equal(got.params, "{\"top_p\":1}");
    assert_string_equal(got.current_leaf_id, m1);
    int64_t updated = got.updated_at;
    store_chat_clear(&got);

    /* unchanged fields stay; set_* with NULL clears */
    struct store_chat_patch q = { .set_model = true, .model = NULL,
                                  .set_title = false, .title = "ignored" };
    assert_int_equal(store_chat_update(f->st, f->alice, chat, &q), APP_OK);
    assert_int_equal(store_chat_get(f->st, f->alice, chat, &got), APP_OK);
    assert_string_equal(got.title, "T");
    assert_null(got.model);
    assert_string_equal(got.system_prompt, "sp");
    assert_string_equal(got.params, "{\"top_p\":1}");
    assert_string_equal(got.current_leaf_id, m1);
    assert_int_equal(got.updated_at, updated); /* edits are not activity */
    store_chat_clear(&got);

    /* empty patch and NULL patch succeed and change nothing */
    struct store_chat_patch none = { 0 };
    assert_int_equal(store_chat_update(f->st, f->alice, chat, &none), APP_OK);
    assert_int_equal(store_chat_update(f->st, f->alice, chat, NULL), APP_OK);
    assert_int_equal(store_chat_update(f->st, f->alice, "missing", &none), APP_ENOTFOUND);

    /* leaf must belong to this chat; "" clears it */
    struct store_chat_patch leaf = { .set_leaf = true, .current_leaf_id = m2 };
    assert_int_equal(store_chat_update(f->st, f->alice, chat, &leaf), APP_EINVAL);
    leaf.current_leaf_id = "missing";
    assert_int_equal(store_chat_update(f->st, f->alice, chat, &leaf), APP_EINVAL);
    leaf.current_leaf_id = "";
    assert_int_equal(store_chat_update(f->st, f->alice, chat, &leaf), APP_OK);
    assert_int_equal(store_chat_get(f->st, f->alice, chat, &got), APP_OK);
    assert_string_equal(got.current_leaf_id, "");
    assert_string_equal(got.title, "T");
    store_chat_clear(&got);

    /* folder must exist and be the owner's; "" and NULL clear it */
    struct store_chat_patch fold = { .set_folder = true, .folder_id = "no-such-folder" };
    assert_int_equal(store_chat_update(f->st, f->alice, chat, &fold), APP_EINVAL);
    fold.folder_id = "";
    assert_int_equal(store_chat_update(f->st, f->alice, chat, &fold), APP_OK);
    fold.folder_id = NULL;
    assert_int_equal(store_chat_update(f->st, f->alice, chat, &fold), APP_OK);

    /* invalid params JSON */
    struct store_chat_patch bad = { .set_params = true, .params = "[" };
    assert_int_equal(store_chat_update(f->st, f->alice, chat, &bad), APP_EINVAL);
    bad.params = NULL;
    assert_int_equal(store_chat_update(f->st, f->alice, chat, &bad), APP_OK);
    assert_int_equal(store_chat_get(f->st, f->alice, chat, &got), APP_OK);
    assert_null(got.params);
    store_chat_clear(&got);
}

static void test_chat_touch(void **state)
{
    struct fixture *f = *state;
    char chat[STORE_ID_LEN + 1];
    struct store_chat got = { 0 };

    test_store_make_chat(f->st, f->alice, chat);
    assert_int_equal(store_chat_touch(f->st, chat, 4102444800000LL), APP_OK);
    assert_int_equal(store_chat_get(f->st, f->alice, chat, &got), APP_OK);
    assert_int_equal(got.updated_at, 4102444800000LL);
    assert_true(got.created_at < got.updated_at);
    store_chat_clear(&got);
    assert_int_equal(store_chat_touch(f->st, "missing", 1), APP_ENOTFOUND);
}

static void test_chat_delete_cascade(void **state)
{
    struct fixture *f = *state;
    char chat[STORE_ID_LEN + 1], keep[STORE_ID_LEN + 1], prev[STORE_ID_LEN + 1];
    char id[STORE_ID_LEN + 1], kept_msg[STORE_ID_LEN + 1];
    struct store_message *list = NULL, m = { 0 };
    size_t n = 0;

    test_store_make_chat(f->st, f->alice, chat);
    test_store_make_chat(f->st, f->alice, keep);
    test_store_make_msg(f->st, keep, NULL, "user", 0, kept_msg);

    /* a deep chain (past SQLite's trigger depth) with side branches */
    test_store_make_msg(f->st, chat, NULL, "system", 1, prev);
    for (int i = 0; i < 1500; i++) {
        test_store_make_msg(f->st, chat, prev, i % 2 ? "assistant" : "user", 2 + i, id);
        if (i % 100 == 0) {
            char side[STORE_ID_LEN + 1];
            test_store_make_msg(f->st, chat, prev, "assistant", 2 + i, side);
        }
        memcpy(prev, id, sizeof prev);
    }
    assert_int_equal(store_message_list(f->st, chat, &list, &n), APP_OK);
    assert_int_equal(n, 1 + 1500 + 15);
    store_message_list_free(list, n);

    assert_int_equal(store_chat_delete(f->st, f->alice, chat), APP_OK);
    assert_int_equal(store_chat_delete(f->st, f->alice, chat), APP_ENOTFOUND);
    assert_int_equal(store_message_list(f->st, chat, &list, &n), APP_OK);
    assert_int_equal(n, 0);
    assert_int_equal(store_message_get(f->st, f->alice, prev, &m), APP_ENOTFOUND);

    assert_int_equal(store_message_list(f->st, keep, &list, &n), APP_OK);
    assert_int_equal(n, 1);
    assert_string_equal(list[0].id, kept_msg);
    store_message_list_free(list, n);
}

/* ---- messages ------------------------------------------------------------ */

static void test_message_create(void **state)
{
    struct fixture *f = *state;
    char chat[STORE_ID_LEN + 1], other[STORE_ID_LEN + 1], root[STORE_ID_LEN + 1];
    char foreign[STORE_ID_LEN + 1];
    struct store_message m = { 0 }, got = { 0 };
    struct store_chat c = { 0 };

    test_store_make_chat(f->st, f->alice, chat);
    test_store_make_chat(f->st, f->alice, other);
    test_store_make_msg(f->st, chat, NULL, "user", 0, root);
    test_store_make_msg(f->st, other, NULL, "user", 0, foreign);

    /* full round trip; the chat's updated_at follows the newest message */
    snprintf(m.chat_id, sizeof m.chat_id, "%s", chat);
    snprintf(m.parent_id, sizeof m.parent_id, "%s", root);
    snprintf(m.role, sizeof m.role, "assistant");
    snprintf(m.status, sizeof m.status, "streaming");
    m.content = (char *)"[]";
    m.model = (char *)"gpt-4o";
    m.error = (char *)"{\"code\":\"x\",\"message\":\"y\"}";
    m.prompt_tokens = 12;
    m.completion_tokens = -1;
    m.created_at = 4102444800000LL;
    assert_int_equal(store_message_create(f->st, &m), APP_OK);
    assert_true(ids_valid(m.id));
    assert_int_equal(m.updated_at, m.created_at);
    assert_int_equal(store_message_get(f->st, f->alice, m.id, &got), APP_OK);
    assert_string_equal(got.chat_id, chat);
    assert_string_equal(got.parent_id, root);
    assert_string_equal(got.role, "assistant");
    assert_string_equal(got.content, "[]");
    assert_string_equal(got.model, "gpt-4o");
    assert_string_equal(got.status, "streaming");
    assert_string_equal(got.error, "{\"code\":\"x\",\"message\":\"y\"}");
    assert_int_equal(got.prompt_tokens, 12);
    assert_int_equal(got.completion_tokens, -1);
    assert_int_equal(got.created_at, 4102444800000LL);
    store_message_clear(&got);
    store_message_clear(NULL);
    assert_int_equal(store_chat_get(f->st, f->alice, chat, &c), APP_OK);
    assert_int_equal(c.updated_at, 4102444800000LL);
    store_chat_clear(&c);

    /* defaults: status complete, NULL content is [] , root has parent "" */
    struct store_message d = { .prompt_tokens = -1, .completion_tokens = -1 };
    snprintf(d.chat_id, sizeof d.chat_id, "%s", chat);
    snprintf(d.role, sizeof d.role, "user");
    assert_int_equal(store_message_create(f->st, &d), APP_OK);
    assert_string_equal(d.status, "complete");
    assert_int_equal(store_message_get(f->st, f->alice, d.id, &got), APP_OK);
    assert_string_equal(got.content, "[]");
    assert_string_equal(got.parent_id, "");
    assert_null(got.model);
    assert_null(got.error);
    assert_int_equal(got.prompt_tokens, -1);
    store_message_clear(&got);
    /* an older message does not move the chat's activity backwards */
    assert_int_equal(store_chat_get(f->st, f->alice, chat, &c), APP_OK);
    assert_int_equal(c.updated_at, 4102444800000LL);
    store_chat_clear(&c);

    /* invalid parent: another chat's message, or no such message */
    struct store_message bad = { .prompt_tokens = -1, .completion_tokens = -1 };
    snprintf(bad.chat_id, sizeof bad.chat_id, "%s", chat);
    snprintf(bad.role, sizeof bad.role, "user");
    snprintf(bad.parent_id, sizeof bad.parent_id, "%s", foreign);
    assert_int_equal(store_message_create(f->st, &bad), APP_EINVAL);
    assert_string_equal(bad.id, "");
    snprintf(bad.parent_id, sizeof bad.parent_id, "missing");
    assert_int_equal(store_message_create(f->st, &bad), APP_EINVAL);

    /* invalid chat, role, status, content */
    struct store_message b2 = { .prompt_tokens = -1, .completion_tokens = -1 };
    snprintf(b2.chat_id, sizeof b2.chat_id, "missing");
    snprintf(b2.role, sizeof b2.role, "user");
    assert_int_equal(store_message_create(f->st, &b2), APP_EINVAL);
    snprintf(b2.chat_id, sizeof b2.chat_id, "%s", chat);
    snprintf(b2.role, sizeof b2.role, "wizard");
    assert_int_equal(store_message_create(f->st, &b2), APP_EINVAL);
    snprintf(b2.role, sizeof b2.role, "user");
    snprintf(b2.status, sizeof b2.status, "done");
    assert_int_equal(store_message_create(f->st, &b2), APP_EINVAL);
    b2.status[0] = '\0';
    b2.content = (char *)"{\"type\":\"text\"}";
    assert_int_equal(store_message_create(f->st, &b2), APP_EINVAL);
    b2.content = (char *)"[oops";
    assert_int_equal(store_message_create(f->st, &b2), APP_EINVAL);

    /* duplicate id */
    struct store_message b3 = { .prompt_tokens = -1, .completion_tokens = -1 };
    snprintf(b3.chat_id, sizeof b3.chat_id, "%s", chat);
    snprintf(b3.role, sizeof b3.role, "user");
    memcpy(b3.id, root, sizeof b3.id);
    assert_int_equal(store_message_create(f->st, &b3), APP_ECONFLICT);

    assert_int_equal(store_message_get(f->st, f->alice, "missing", &got), APP_ENOTFOUND);
}

static void test_message_list_path(void **state)
{
    struct fixture *f = *state;
    char chat[STORE_ID_LEN + 1], r[STORE_ID_LEN + 1], a[STORE_ID_LEN + 1];
    char b1[STORE_ID_LEN + 1], b2[STORE_ID_LEN + 1], c[STORE_ID_LEN + 1];
    struct store_message *list = NULL;
    size_t n = 0;

    test_store_make_chat(f->st, f->alice, chat);
    test_store_make_msg(f->st, chat, NULL, "system", 10, r);
    test_store_make_msg(f->st, chat, r, "user", 20, a);
    test_store_make_msg(f->st, chat, a, "assistant", 40, b2);
    test_store_make_msg(f->st, chat, a, "assistant", 30, b1);
    test_store_make_msg(f->st, chat, b1, "user", 50, c);

    assert_int_equal(store_message_list(f->st, chat, &list, &n), APP_OK);
    assert_int_equal(n, 5);
    const char *order[] = { r, a, b1, b2, c };
    for (size_t i = 0; i < n; i++)
        assert_string_equal(list[i].id, order[i]);
    store_message_list_free(list, n);
    assert_int_equal(store_message_list(f->st, "missing", &list, &n), APP_OK);
    assert_int_equal(n, 0);
    store_message_list_free(NULL, 0);

    assert_int_equal(store_message_path(f->st, c, &list, &n), APP_OK);
    assert_int_equal(n, 4);
    const char *path[] = { r, a, b1, c };
    for (size_t i = 0; i < n; i++)
        assert_string_equal(list[i].id, path[i]);
    assert_string_equal(list[0].parent_id, "");
    assert_string_equal(list[3].parent_id, b1);
    store_message_list_free(list, n);

    assert_int_equal(store_message_path(f->st, r, &list, &n), APP_OK);
    assert_int_equal(n, 1);
    assert_string_equal(list[0].id, r);
    store_message_list_free(list, n);

    assert_int_equal(store_message_path(f->st, "missing", &list, &n), APP_ENOTFOUND);
    assert_null(list);
    assert_int_equal(n, 0);
}

/* The end of the visible branch plus the siblings of its messages. */
static void test_message_tail(void **state)
{
    struct fixture *f = *state;
    char chat[STORE_ID_LEN + 1], r1[STORE_ID_LEN + 1], r2[STORE_ID_LEN + 1];
    char a[STORE_ID_LEN + 1], b1[STORE_ID_LEN + 1], b2[STORE_ID_LEN + 1];
    char b3[STORE_ID_LEN + 1], c[STORE_ID_LEN + 1], d[STORE_ID_LEN + 1];
    char other[STORE_ID_LEN + 1], x[STORE_ID_LEN + 1];
    struct store_message *list = NULL;
    size_t n = 0;
    int64_t total = -1;

    /*   r1(10)    r2(15)       two roots
     *    |
     *   a(20)
     *  /   |    \
     * b1(30) b2(40) b3(70)     siblings
     *  |
     * c(50)
     *  |
     * d(60)                    the leaf shown (not the newest message: b3 is)
     */
    test_store_make_chat(f->st, f->alice, chat);
    test_store_make_msg(f->st, chat, NULL, "user", 10, r1);
    test_store_make_msg(f->st, chat, NULL, "user", 15, r2);
    test_store_make_msg(f->st, chat, r1, "assistant", 20, a);
    test_store_make_msg(f->st, chat, a, "user", 30, b1);
    test_store_make_msg(f->st, chat, a, "user", 40, b2);
    test_store_make_msg(f->st, chat, b1, "assistant", 50, c);
    test_store_make_msg(f->st, chat, c, "user", 60, d);
    test_store_make_msg(f->st, chat, a, "user", 70, b3);
    test_store_make_chat(f->st, f->alice, other); /* other chats do not count */
    test_store_make_msg(f->st, other, NULL, "user", 5, x);

    /* last 2 of r1 a b1 c d: c d (no siblings) */
    assert_int_equal(store_message_tail(f->st, chat, d, 2, &list, &n, &total), APP_OK);
    assert_int_equal(total, 8);
    assert_int_equal(n, 2);
    assert_string_equal(list[0].id, c);
    assert_string_equal(list[1].id, d);
    assert_string_equal(list[1].parent_id, c);
    store_message_list_free(list, n);

    /* last 3: b1 c d, plus b1's siblings b2 b3, by created_at */
    assert_int_equal(store_message_tail(f->st, chat, d, 3, &list, &n, &total), APP_OK);
    assert_int_equal(n, 5);
    const char *t3[] = { b1, b2, c, d, b3 };
    for (size_t i = 0; i < n; i++)
        assert_string_equal(list[i].id, t3[i]);
    store_message_list_free(list, n);

    /* last 5 reaches the root: r1's sibling root r2 comes too (everything) */
    assert_int_equal(store_message_tail(f->st, chat, d, 5, &list, &n, &total), APP_OK);
    assert_int_equal(n, 8);
    assert_int_equal(total, 8);
    const char *all[] = { r1, r2, a, b1, b2, c, d, b3 };
    for (size_t i = 0; i < n; i++)
        assert_string_equal(list[i].id, all[i]);
    store_message_list_free(list, n);
    assert_int_equal(store_message_tail(f->st, chat, d, 500, &list, &n, &total), APP_OK);
    assert_int_equal(n, 8);
    store_message_list_free(list, n);

    /* no leaf: from the newest message (b3): b3 and its siblings b1 b2 */
    assert_int_equal(store_message_tail(f->st, chat, NULL, 1, &list, &n, &total), APP_OK);
    assert_int_equal(n, 3);
    const char *t1[] = { b1, b2, b3 };
    for (size_t i = 0; i < n; i++)
        assert_string_equal(list[i].id, t1[i]);
    store_message_list_free(list, n);
    assert_int_equal(store_message_tail(f->st, chat, "", 1, &list, &n, &total), APP_OK);
    assert_int_equal(n, 3);
    store_message_list_free(list, n);

    /* a leaf of another chat, or an unknown one: nothing, but the count */
    assert_int_equal(store_message_tail(f->st, chat, x, 3, &list, &n, &total), APP_OK);
    assert_int_equal(n, 0);
    assert_null(list);
    assert_int_equal(total, 8);
    assert_int_equal(store_message_tail(f->st, chat, "missing", 3, &list, &n, &total), APP_OK);
    assert_int_equal(n, 0);
    /* an empty chat */
    char empty[STORE_ID_LEN + 1];
    test_store_make_chat(f->st, f->alice, empty);
    assert_int_equal(store_message_tail(f->st, empty, NULL, 3, &list, &n, &total), APP_OK);
    assert_int_equal(n, 0);
    assert_int_equal(total, 0);
}

static void test_message_newest_leaf(void **state)
{
    struct fixture *f = *state;
    char chat[STORE_ID_LEN + 1], r[STORE_ID_LEN + 1], a1[STORE_ID_LEN + 1];
    char a2[STORE_ID_LEN + 1], b1[STORE_ID_LEN + 1], b2[STORE_ID_LEN + 1];
    char b3[STORE_ID_LEN + 1], c1[STORE_ID_LEN + 1], out[STORE_ID_LEN + 1];

    /*        r(1)
     *      /      \
     *   a1(2)     a2(3)
     *    |        /    \
     *  b1(9)   b2(4)  b3(4)   b2/b3 tie on created_at: larger id wins
     *    |
     *  c1(10)                 newest message overall, but not on the newest path
     */
    test_store_make_chat(f->st, f->alice, chat);
    test_store_make_msg(f->st, chat, NULL, "user", 1, r);
    test_store_make_msg(f->st, chat, r, "assistant", 2, a1);
    test_store_make_msg(f->st, chat, r, "assistant", 3, a2);
    test_store_make_msg(f->st, chat, a1, "user", 9, b1);
    test_store_make_msg(f->st, chat, a2, "user", 4, b2);
    test_store_make_msg(f->st, chat, a2, "user", 4, b3);
    test_store_make_msg(f->st, chat, b1, "assistant", 10, c1);
    const char *tie = strcmp(b2, b3) > 0 ? b2 : b3;

    assert_int_equal(store_message_newest_leaf(f->st, r, out), APP_OK);
    assert_string_equal(out, tie);
    assert_int_equal(store_message_newest_leaf(f->st, a1, out), APP_OK);
    assert_string_equal(out, c1);
    assert_int_equal(store_message_newest_leaf(f->st, a2, out), APP_OK);
    assert_string_equal(out, tie);
    assert_int_equal(store_message_newest_leaf(f->st, c1, out), APP_OK);
    assert_string_equal(out, c1);
    assert_int_equal(store_message_newest_leaf(f->st, "missing", out), APP_ENOTFOUND);
    assert_string_equal(out, "");

    /* a newer child of r changes the answer */
    char a3[STORE_ID_LEN + 1];
    test_store_make_msg(f->st, chat, r, "assistant", 11, a3);
    assert_int_equal(store_message_newest_leaf(f->st, r, out), APP_OK);
    assert_string_equal(out, a3);
}

static void test_message_update(void **state)
{
    struct fixture *f = *state;
    char chat[STORE_ID_LEN + 1], id[STORE_ID_LEN + 1];
    struct store_message got = { 0 };

    test_store_make_chat(f->st, f->alice, chat);
    test_store_make_msg(f->st, chat, NULL, "assistant", 1, id);

    assert_int_equal(store_message_update(f->st, id, "[{\"type\":\"text\",\"text\":\"He\"}]",
                                          "streaming", NULL, -1, -1),
                     APP_OK);
    assert_int_equal(store_message_get(f->st, f->alice, id, &got), APP_OK);
    assert_string_equal(got.content, "[{\"type\":\"text\",\"text\":\"He\"}]");
    assert_string_equal(got.status, "streaming");
    assert_int_equal(got.prompt_tokens, -1);
    assert_true(got.updated_at > got.created_at);
    store_message_clear(&got);

    assert_int_equal(store_message_update(f->st, id, "[{\"type\":\"text\",\"text\":\"Hello\"}]",
                                          "error", "{\"code\":\"upstream\"}", 10, 2),
                     APP_OK);
    assert_int_equal(store_message_get(f->st, f->alice, id, &got), APP_OK);
    assert_string_equal(got.status, "error");
    assert_string_equal(got.error, "{\"code\":\"upstream\"}");
    assert_int_equal(got.prompt_tokens, 10);
    assert_int_equal(got.completion_tokens, 2);
    store_message_clear(&got);

    /* NULL content/status keep, NULL error clears, -1 tokens keep */
    assert_int_equal(store_message_update(f->st, id, NULL, NULL, NULL, -1, 5), APP_OK);
    assert_int_equal(store_message_get(f->st, f->alice, id, &got), APP_OK);
    assert_string_equal(got.content, "[{\"type\":\"text\",\"text\":\"Hello\"}]");
    assert_string_equal(got.status, "error");
    assert_null(got.error);
    assert_int_equal(got.prompt_tokens, 10);
    assert_int_equal(got.completion_tokens, 5);
    store_message_clear(&got);

    assert_int_equal(store_message_update(f->st, id, "[]", "bogus", NULL, -1, -1), APP_EINVAL);
    assert_int_equal(store_message_update(f->st, id, "nope", "complete", NULL, -1, -1),
                     APP_EINVAL);
    assert_int_equal(store_message_update(f->st, "missing", "[]", "complete", NULL, -1, -1),
                     APP_ENOTFOUND);
}

static void test_message_mark_interrupted(void **state)
{
    struct fixture *f = *state;
    char chat[STORE_ID_LEN + 1], a[STORE_ID_LEN + 1], b[STORE_ID_LEN + 1], c[STORE_ID_LEN + 1];
    struct store_message got = { 0 };
    int64_t n = -1;

    test_store_make_chat(f->st, f->alice, chat);
    test_store_make_msg(f->st, chat, NULL, "user", 1, a);
    test_store_make_msg(f->st, chat, a, "assistant", 2, b);
    test_store_make_msg(f->st, chat, a, "assistant", 3, c);
    assert_int_equal(store_message_update(f->st, b, "[{\"type\":\"text\",\"text\":\"partial\"}]",
                                          "streaming", NULL, -1, -1),
                     APP_OK);
    assert_int_equal(store_message_update(f->st, c, "[]", "streaming", NULL, -1, -1), APP_OK);

    assert_int_equal(store_message_mark_interrupted(f->st, &n), APP_OK);
    assert_int_equal(n, 2);
    assert_int_equal(store_message_get(f->st, f->alice, b, &got), APP_OK);
    assert_string_equal(got.status, "interrupted");
    assert_string_equal(got.content, "[{\"type\":\"text\",\"text\":\"partial\"}]");
    store_message_clear(&got);
    assert_int_equal(store_message_get(f->st, f->alice, a, &got), APP_OK);
    assert_string_equal(got.status, "complete");
    store_message_clear(&got);

    assert_int_equal(store_message_mark_interrupted(f->st, &n), APP_OK);
    assert_int_equal(n, 0);
    assert_int_equal(store_message_mark_interrupted(f->st, NULL), APP_OK);
}

/* Turn leases: progress and stop requests, renewal, and which streaming
 * answers store_lease_expire ends (no lease, an expired one, the dead
 * instance's own) and which it leaves (another instance's live lease). */
static void test_turn_leases(void **state)
{
    struct fixture *f = *state;
    char chat[STORE_ID_LEN + 1], q[STORE_ID_LEN + 1], live[STORE_ID_LEN + 1],
        expired[STORE_ID_LEN + 1], mine[STORE_ID_LEN + 1], bare[STORE_ID_LEN + 1];
    struct store_lease l;
    struct store_message got = { 0 };
    char (*stops)[STORE_ID_LEN + 1] = NULL;
    size_t n = 99;
    int64_t marked = -1;
    const int64_t now = 1000000;

    test_store_make_chat(f->st, f->alice, chat);
    test_store_make_msg(f->st, chat, NULL, "user", 1, q);
    test_store_make_msg(f->st, chat, q, "assistant", 2, live);
    test_store_make_msg(f->st, chat, q, "assistant", 3, expired);
    test_store_make_msg(f->st, chat, q, "assistant", 4, mine);
    test_store_make_msg(f->st, chat, q, "assistant", 5, bare);
    const char *ids[] = {live, expired, mine, bare};
    for (size_t i = 0; i < 4; i++)
        assert_int_equal(store_message_update(f->st, ids[i], "[]", "streaming", NULL, -1, -1),
                         APP_OK);
    assert_int_equal(store_lease_create(f->st, live, "inst-b", now + 5000), APP_OK);
    assert_int_equal(store_lease_create(f->st, expired, "inst-c", now - 1), APP_OK);
    assert_int_equal(store_lease_create(f->st, mine, "inst-a", now + 5000), APP_OK);
    assert_int_not_equal(store_lease_create(f->st, live, "inst-a", now), APP_OK); /* one owner */

    assert_int_equal(store_lease_get(f->st, live, &l), APP_OK);
    assert_string_equal(l.instance_id, "inst-b");
    assert_int_equal(l.expires_at, now + 5000);
    assert_int_equal(l.events, 0);
    assert_false(l.stop_requested);
    assert_int_equal(store_lease_get(f->st, bare, &l), APP_ENOTFOUND);

    assert_int_equal(store_lease_progress(f->st, live, 42), APP_OK);
    assert_int_equal(store_lease_request_stop(f->st, live), APP_OK);
    assert_int_equal(store_lease_request_stop(f->st, bare), APP_ENOTFOUND);
    assert_int_equal(store_lease_renew(f->st, "inst-b", now + 9000, &stops, &n), APP_OK);
    assert_int_equal(n, 1);
    assert_string_equal(stops[0], live);
    free(stops);
    assert_int_equal(store_lease_renew(f->st, "inst-a", now + 9000, &stops, &n), APP_OK);
    assert_int_equal(n, 0);
    assert_null(stops);
    assert_int_equal(store_lease_get(f->st, live, &l), APP_OK);
    assert_int_equal(l.events, 42);
    assert_true(l.stop_requested);
    assert_int_equal(l.expires_at, now + 9000);

    /* start-up of inst-a: its own, the expired and the lease-less end */
    assert_int_equal(store_lease_expire(f->st, now, "inst-a", &marked), APP_OK);
    assert_int_equal(marked, 3);
    assert_int_equal(store_message_get(f->st, f->alice, live, &got), APP_OK);
    assert_string_equal(got.status, "streaming");
    store_message_clear(&got);
    for (size_t i = 1; i < 4; i++) {
        assert_int_equal(store_message_get(f->st, f->alice, ids[i], &got), APP_OK);
        assert_string_equal(got.status, "interrupted");
        assert_non_null(strstr(got.error, "interrupted"));
        store_message_clear(&got);
        assert_int_equal(store_lease_get(f->st, ids[i], &l), APP_ENOTFOUND);
    }
    /* a sweep later: inst-b's lease ran out */
    assert_int_equal(store_lease_expire(f->st, now + 5000, "", &marked), APP_OK);
    assert_int_equal(marked, 0); /* renewed to now + 9000 */
    assert_int_equal(store_lease_expire(f->st, now + 9001, "", &marked), APP_OK);
    assert_int_equal(marked, 1);
    assert_int_equal(store_lease_get(f->st, live, &l), APP_ENOTFOUND);
    /* a finished answer gives its lease up */
    assert_int_equal(store_lease_create(f->st, live, "inst-b", now + 5000), APP_OK);
    assert_int_equal(store_lease_delete(f->st, live), APP_OK);
    assert_int_equal(store_lease_get(f->st, live, &l), APP_ENOTFOUND);
}

/* ---- file-backed databases ----------------------------------------------- */

static void test_file_reopen_wal(void **state)
{
    char dir[64];
    char alice[STORE_ID_LEN + 1];
    struct store_user got = { 0 };
    int from = -2, to = -2;

    test_store_tmpdir(dir);
    struct store *st = test_store_open_file(dir, false);
    assert_int_equal(store_migrate(st, &from, &to), APP_OK);
    assert_int_equal(from, 0);
    test_store_make_user(st, "alice@example.com", true, alice);
    store_close(st);

    st = test_store_open_file(dir, false);
    int v = store_schema_version(st);
    assert_int_equal(v, to);
    assert_int_equal(store_migrate(st, &from, &to), APP_OK);
    assert_int_equal(from, v);
    assert_int_equal(to, v);
    assert_int_equal(store_user_get(st, alice, &got), APP_OK);
    assert_true(got.is_admin);
    store_user_clear(&got);

    sqlite3 *db = test_store_raw(dir);
    sqlite3_stmt *q = NULL;
    assert_int_equal(sqlite3_prepare_v2(db, "PRAGMA journal_mode", -1, &q, NULL), SQLITE_OK);
    assert_int_equal(sqlite3_step(q), SQLITE_ROW);
    assert_string_equal((const char *)sqlite3_column_text(q, 0), "wal");
    sqlite3_finalize(q);
    assert_int_equal(test_store_raw_int(db, "SELECT count(*) FROM schema_migrations"), v);

    /* a folder (no API yet) lets a chat be filed; deleting it unfiles */
    char fsql[256];
    snprintf(fsql, sizeof fsql,
             "INSERT INTO folders (id, owner_id, name, created_at, updated_at)"
             " VALUES ('f1', '%s', 'Work', 1, 1)", alice);
    test_store_raw_exec(db, fsql);
    char bob[STORE_ID_LEN + 1];
    test_store_make_user(st, "bob@example.com", true, bob);
    struct store_chat c = { 0 }, cg = { 0 };
    snprintf(c.owner_id, sizeof c.owner_id, "%s", bob);
    snprintf(c.folder_id, sizeof c.folder_id, "f1");
    assert_int_equal(store_chat_create(st, &c), APP_EINVAL); /* alice's folder */
    memset(&c, 0, sizeof c);
    snprintf(c.owner_id, sizeof c.owner_id, "%s", alice);
    snprintf(c.folder_id, sizeof c.folder_id, "f1");
    assert_int_equal(store_chat_create(st, &c), APP_OK);
    assert_int_equal(store_chat_get(st, alice, c.id, &cg), APP_OK);
    assert_string_equal(cg.folder_id, "f1");
    store_chat_clear(&cg);
    test_store_raw_exec(db, "DELETE FROM folders WHERE id = 'f1'");
    assert_int_equal(store_chat_get(st, alice, c.id, &cg), APP_OK);
    assert_string_equal(cg.folder_id, "");
    store_chat_clear(&cg);

    /* a schema newer than this program is refused */
    test_store_raw_exec(db, "INSERT INTO schema_migrations VALUES (9999, 0)");
    assert_int_equal(store_migrate(st, &from, &to), APP_ESTORE);
    assert_int_equal(from, 9999);
    assert_non_null(strstr(store_errmsg(st), "newer"));
    sqlite3_close(db);

    store_close(st);
    test_store_rmdir(dir);
}

static void test_two_handles(void **state)
{
    char dir[64];
    char alice[STORE_ID_LEN + 1], bob[STORE_ID_LEN + 1], chat[STORE_ID_LEN + 1];
    struct store_user got = { 0 };
    struct store_chat c = { 0 };

    test_store_tmpdir(dir);
    struct store *h1 = test_store_open_file(dir, true);
    struct store *h2 = test_store_open_file(dir, true);

    test_store_make_user(h1, "alice@example.com", true, alice);
    assert_int_equal(store_user_get(h2, alice, &got), APP_OK);
    assert_true(got.is_admin);
    store_user_clear(&got);

    test_store_make_user(h2, "bob@example.com", true, bob);
    assert_int_equal(store_user_get_by_email(h1, "BOB@example.com", &got), APP_OK);
    assert_false(got.is_admin);
    store_user_clear(&got);

    /* an open write transaction on h1 is invisible to h2 until commit */
    assert_int_equal(store_begin(h1), APP_OK);
    test_store_make_chat(h1, alice, chat);
    assert_int_equal(store_chat_get(h2, alice, chat, &c), APP_ENOTFOUND);
    assert_int_equal(store_commit(h1), APP_OK);
    assert_int_equal(store_chat_get(h2, alice, chat, &c), APP_OK);
    store_chat_clear(&c);

    store_close(h1);
    store_close(h2);
    test_store_rmdir(dir);
}

struct test_store_worker {
    const char *dir;
    int index;
    int failures;
};

static void *test_store_worker_run(void *arg)
{
    struct test_store_worker *w = arg;
    char url[128], err[256];
    snprintf(url, sizeof url, "sqlite:%s/a.db", w->dir);
    struct store *st = store_open(url, err, sizeof err);
    if (!st) {
        w->failures++;
        return NULL;
    }
    for (int i = 0; i < 25; i++) {
        char email[64];
        snprintf(email, sizeof email, "w%d-%d@example.com", w->index, i);
        struct store_user u = { .email = email, .password_hash = (char *)"h" };
        if (store_user_create(st, &u, true) != APP_OK) {
            fprintf(stderr, "worker %d: %s\n", w->index, store_errmsg(st));
            w->failures++;
        }
    }
    store_close(st);
    return NULL;
}

/* Several handles on several threads create users at once: no SQLITE_BUSY
 * escapes, and exactly one of them became the first (admin) user. */
static void test_concurrent_first_admin(void **state)
{
    char dir[64];
    enum { WORKERS = 4 };
    pthread_t t[WORKERS];
    struct test_store_worker w[WORKERS];

    test_store_tmpdir(dir);
    struct store *st = test_store_open_file(dir, true);
    for (int i = 0; i < WORKERS; i++) {
        w[i] = (struct test_store_worker){ .dir = dir, .index = i };
        assert_int_equal(pthread_create(&t[i], NULL, test_store_worker_run, &w[i]), 0);
    }
    for (int i = 0; i < WORKERS; i++) {
        pthread_join(t[i], NULL);
        assert_int_equal(w[i].failures, 0);
    }
    int64_t n = 0;
    assert_int_equal(store_user_count(st, &n), APP_OK);
    assert_int_equal(n, WORKERS * 25);
    sqlite3 *db = test_store_raw(dir);
    assert_int_equal(test_store_raw_int(db, "SELECT count(*) FROM users WHERE is_admin = 1"), 1);
    sqlite3_close(db);
    store_close(st);
    test_store_rmdir(dir);
}

/* ==== gateway (schema v2) ================================================== */

/* ---- API tokens ---------------------------------------------------------- */

static void test_store_make_token(struct store *st, const char *user, int n, int64_t created,
                                  int64_t expires, struct store_token *out)
{
    memset(out, 0, sizeof *out);
    snprintf(out->user_id, sizeof out->user_id, "%s", user);
    snprintf(out->token_hash, sizeof out->token_hash, "%064d", n);
    snprintf(out->prefix, sizeof out->prefix, "coai-%04d", n);
    out->rpm = -1;
    out->tpm = -1;
    out->created_at = created;
    out->expires_at = expires;
    if (store_token_create(st, out) != APP_OK)
        fail_msg("token_create: %s", store_errmsg(st));
}

static void test_tokens(void **state)
{
    struct fixture *f = *state;
    struct store_token t1 = { 0 }, t2, t3, t4, got = { 0 };
    struct store_token *list = NULL;
    size_t n = 0;

    /* full round trip */
    snprintf(t1.user_id, sizeof t1.user_id, "%s", f->alice);
    t1.name = (char *)"laptop";
    snprintf(t1.token_hash, sizeof t1.token_hash, "%064d", 1);
    snprintf(t1.prefix, sizeof t1.prefix, "coai-AbCd");
    t1.models = (char *)"[\"gpt-4o\",\"gpt-4o-mini\"]";
    t1.rpm = 60;
    t1.tpm = 100000;
    t1.created_at = 100;
    assert_int_equal(store_token_create(f->st, &t1), APP_OK);
    assert_true(ids_valid(t1.id));
    assert_int_equal(t1.created_at, 100);

    assert_int_equal(store_token_get_by_hash(f->st, t1.token_hash, 5000, &got), APP_OK);
    assert_string_equal(got.id, t1.id);
    assert_string_equal(got.user_id, f->alice);
    assert_string_equal(got.name, "laptop");
    assert_string_equal(got.token_hash, t1.token_hash);
    assert_string_equal(got.prefix, "coai-AbCd");
    assert_string_equal(got.models, "[\"gpt-4o\",\"gpt-4o-mini\"]");
    assert_int_equal(got.rpm, 60);
    assert_int_equal(got.tpm, 100000);
    assert_int_equal(got.expires_at, 0);
    assert_int_equal(got.created_at, 100);
    assert_int_equal(got.last_used_at, 0);
    assert_int_equal(got.revoked_at, 0);
    store_token_clear(&got);
    assert_null(got.name);
    store_token_clear(&got); /* twice is fine */
    store_token_clear(NULL);
    /* expires_at 0 never expires */
    assert_int_equal(store_token_get_by_hash(f->st, t1.token_hash, 4102444800000LL, &got), APP_OK);
    store_token_clear(&got);

    /* expiry: valid strictly before expires_at */
    test_store_make_token(f->st, f->alice, 2, 200, 2000, &t2);
    assert_int_equal(store_token_get_by_hash(f->st, t2.token_hash, 1999, &got), APP_OK);
    assert_string_equal(got.id, t2.id);
    assert_null(got.name);
    assert_null(got.models);
    assert_int_equal(got.rpm, -1);
    assert_int_equal(got.expires_at, 2000);
    store_token_clear(&got);
    assert_int_equal(store_token_get_by_hash(f->st, t2.token_hash, 2000, &got), APP_ENOTFOUND);
    assert_null(got.name);
    assert_int_equal(store_token_get_by_hash(f->st, t2.token_hash, 3000, &got), APP_ENOTFOUND);
    assert_int_equal(store_token_get_by_hash(f->st, "nope", 0, &got), APP_ENOTFOUND);
    assert_int_equal(store_token_get_by_hash(f->st, NULL, 0, &got), APP_ENOTFOUND);

    test_store_make_token(f->st, f->alice, 3, 300, 0, &t3);
    test_store_make_token(f->st, f->bob, 4, 150, 0, &t4);

    /* bad input */
    struct store_token bad = { 0 };
    snprintf(bad.user_id, sizeof bad.user_id, "%s", f->bob);
    memcpy(bad.token_hash, t1.token_hash, sizeof bad.token_hash);
    bad.rpm = bad.tpm = -1;
    assert_int_equal(store_token_create(f->st, &bad), APP_ECONFLICT); /* duplicate hash */
    assert_string_equal(bad.id, "");
    bad.token_hash[0] = '\0';
    assert_int_equal(store_token_create(f->st, &bad), APP_EINVAL);
    snprintf(bad.token_hash, sizeof bad.token_hash, "%064d", 99);
    bad.models = (char *)"{\"gpt-4o\":1}";
    assert_int_equal(store_token_create(f->st, &bad), APP_EINVAL); /* not an array */
    bad.models = (char *)"[oops";
    assert_int_equal(store_token_create(f->st, &bad), APP_EINVAL);
    bad.models = NULL;
    bad.rpm = -2;
    assert_int_equal(store_token_create(f->st, &bad), APP_EINVAL);
    bad.rpm = -1;
    snprintf(bad.user_id, sizeof bad.user_id, "nobody");
    assert_int_equal(store_token_create(f->st, &bad), APP_EINVAL); /* no such user */
    snprintf(bad.user_id, sizeof bad.user_id, "%s", f->bob);
    memcpy(bad.id, t1.id, sizeof bad.id);
    assert_int_equal(store_token_create(f->st, &bad), APP_ECONFLICT); /* duplicate id */

    /* list: the user's own, newest first, expired included */
    assert_int_equal(store_token_list(f->st, f->alice, &list, &n), APP_OK);
    assert_int_equal(n, 3);
    assert_string_equal(list[0].id, t3.id);
    assert_string_equal(list[1].id, t2.id);
    assert_string_equal(list[2].id, t1.id);
    assert_string_equal(list[2].name, "laptop");
    for (size_t i = 0; i < n; i++)
        assert_string_equal(list[i].user_id, f->alice);
    store_token_list_free(list, n);
    assert_int_equal(store_token_list(f->st, "nobody", &list, &n), APP_OK);
    assert_int_equal(n, 0);
    assert_null(list);
    store_token_list_free(NULL, 0);

    /* revoke: only one's own active token */
    assert_int_equal(store_token_revoke(f->st, f->bob, t1.id, 5000), APP_ENOTFOUND);
    assert_int_equal(store_token_get_by_hash(f->st, t1.token_hash, 5000, &got), APP_OK);
    store_token_clear(&got);
    assert_int_equal(store_token_revoke(f->st, f->alice, t1.id, 0), APP_EINVAL);
    assert_int_equal(store_token_revoke(f->st, f->alice, t1.id, 5000), APP_OK);
    assert_int_equal(store_token_revoke(f->st, f->alice, t1.id, 6000), APP_ENOTFOUND);
    assert_int_equal(store_token_get_by_hash(f->st, t1.token_hash, 5000, &got), APP_ENOTFOUND);
    assert_int_equal(store_token_revoke(f->st, f->alice, t2.id, 5000), APP_ENOTFOUND); /* expired */
    assert_int_equal(store_token_revoke(f->st, f->alice, "missing", 5000), APP_ENOTFOUND);
    assert_int_equal(store_token_get_by_hash(f->st, t4.token_hash, 5000, &got), APP_OK);
    store_token_clear(&got);

    /* revoked tokens stay listed */
    assert_int_equal(store_token_list(f->st, f->alice, &list, &n), APP_OK);
    assert_int_equal(n, 3);
    assert_string_equal(list[2].id, t1.id);
    assert_int_equal(list[2].revoked_at, 5000);
    assert_int_equal(list[0].revoked_at, 0);
    store_token_list_free(list, n);

    /* touch: last_used_at never moves backwards */
    assert_int_equal(store_token_touch(f->st, t3.id, 7000), APP_OK);
    assert_int_equal(store_token_get_by_hash(f->st, t3.token_hash, 7000, &got), APP_OK);
    assert_int_equal(got.last_used_at, 7000);
    store_token_clear(&got);
    assert_int_equal(store_token_touch(f->st, t3.id, 6000), APP_OK);
    assert_int_equal(store_token_get_by_hash(f->st, t3.token_hash, 7000, &got), APP_OK);
    assert_int_equal(got.last_used_at, 7000);
    store_token_clear(&got);
    assert_int_equal(store_token_touch(f->st, "missing", 7000), APP_ENOTFOUND);
}

/* ---- key pool ------------------------------------------------------------ */

static void test_pool_keys(void **state)
{
    struct fixture *f = *state;
    static const unsigned char key1[] = { 0x00, 0x01, 0xff, 0x00, 0x7f, 0x80, 0x00 };
    static const unsigned char key2[] = { 0xde, 0xad, 0x00, 0xbe, 0xef };
    struct store_pool_key k1 = { 0 }, k2 = { 0 }, got = { 0 };
    struct store_pool_key *list = NULL;
    size_t n = 0;

    assert_int_equal(store_pool_key_list(f->st, &list, &n), APP_OK);
    assert_int_equal(n, 0);
    assert_null(list);
    store_pool_key_list_free(NULL, 0);

    k1.name = (char *)"main";
    k1.base_url = (char *)"https://api.openai.com/v1";
    k1.key_ct = (unsigned char *)key1;
    k1.key_ct_len = sizeof key1;
    k1.key_version = 1;
    snprintf(k1.key_last4, sizeof k1.key_last4, "wxyz");
    k1.weight = 3;
    k1.rpm = 500;
    k1.tpm = -1;
    k1.enabled = true;
    k1.disabled_reason = (char *)"ignored while enabled";
    assert_int_equal(store_pool_key_create(f->st, &k1), APP_OK);
    assert_true(ids_valid(k1.id));
    assert_true(k1.created_at > 0);
    assert_int_equal(k1.updated_at, k1.created_at);

    assert_int_equal(store_pool_key_get(f->st, k1.id, &got), APP_OK);
    assert_string_equal(got.id, k1.id);
    assert_string_equal(got.name, "main");
    assert_string_equal(got.base_url, "https://api.openai.com/v1");
    assert_int_equal(got.key_ct_len, sizeof key1);
    assert_memory_equal(got.key_ct, key1, sizeof key1);
    assert_int_equal(got.key_version, 1);
    assert_string_equal(got.key_last4, "wxyz");
    assert_int_equal(got.weight, 3);
    assert_int_equal(got.rpm, 500);
    assert_int_equal(got.tpm, -1);
    assert_true(got.enabled);
    assert_null(got.disabled_reason);
    assert_int_equal(got.created_at, k1.created_at);
    assert_int_equal(got.updated_at, k1.updated_at);
    store_pool_key_clear(&got);
    assert_null(got.key_ct);
    store_pool_key_clear(&got);
    store_pool_key_clear(NULL);

    /* a disabled key without a secret, created earlier */
    k2.base_url = (char *)"http://localhost:11434/v1";
    k2.weight = 1;
    k2.rpm = k2.tpm = -1;
    k2.enabled = false;
    k2.disabled_reason = (char *)"quota";
    k2.created_at = 1;
    assert_int_equal(store_pool_key_create(f->st, &k2), APP_OK);
    assert_int_equal(k2.updated_at, 1);
    assert_int_equal(store_pool_key_get(f->st, k2.id, &got), APP_OK);
    assert_null(got.name);
    assert_null(got.key_ct);
    assert_int_equal(got.key_ct_len, 0);
    assert_string_equal(got.key_last4, "");
    assert_false(got.enabled);
    assert_string_equal(got.disabled_reason, "quota");
    store_pool_key_clear(&got);

    /* oldest first */
    assert_int_equal(store_pool_key_list(f->st, &list, &n), APP_OK);
    assert_int_equal(n, 2);
    assert_string_equal(list[0].id, k2.id);
    assert_string_equal(list[1].id, k1.id);
    assert_memory_equal(list[1].key_ct, key1, sizeof key1);
    store_pool_key_list_free(list, n);

    /* bad input */
    struct store_pool_key bad = { .base_url = (char *)"x", .weight = 0, .rpm = -1, .tpm = -1 };
    assert_int_equal(store_pool_key_create(f->st, &bad), APP_EINVAL); /* weight < 1 */
    bad.weight = 1;
    bad.rpm = -7;
    assert_int_equal(store_pool_key_create(f->st, &bad), APP_EINVAL);
    bad.rpm = -1;
    bad.base_url = NULL;
    assert_int_equal(store_pool_key_create(f->st, &bad), APP_EINVAL);
    bad.base_url = (char *)"x";
    memcpy(bad.id, k1.id, sizeof bad.id);
    assert_int_equal(store_pool_key_create(f->st, &bad), APP_ECONFLICT);
    assert_int_equal(store_pool_key_get(f->st, "missing", &got), APP_ENOTFOUND);

    /* update: every column but id, key and created_at */
    struct store_pool_key up = { .name = NULL, .base_url = (char *)"https://example.org/v1",
                                 .weight = 5, .rpm = -1, .tpm = 2000, .enabled = false,
                                 .disabled_reason = (char *)"401 from provider",
                                 .key_ct = (unsigned char *)key2, .key_ct_len = sizeof key2,
                                 .key_version = 9, .created_at = 7 };
    memcpy(up.id, k1.id, sizeof up.id);
    assert_int_equal(store_pool_key_update(f->st, &up), APP_OK);
    assert_int_equal(store_pool_key_get(f->st, k1.id, &got), APP_OK);
    assert_null(got.name);
    assert_string_equal(got.base_url, "https://example.org/v1");
    assert_int_equal(got.weight, 5);
    assert_int_equal(got.rpm, -1);
    assert_int_equal(got.tpm, 2000);
    assert_false(got.enabled);
    assert_string_equal(got.disabled_reason, "401 from provider");
    assert_memory_equal(got.key_ct, key1, sizeof key1); /* key untouched */
    assert_int_equal(got.key_version, 1);
    assert_string_equal(got.key_last4, "wxyz");
    assert_int_equal(got.created_at, k1.created_at);
    assert_true(got.updated_at >= k1.updated_at);
    store_pool_key_clear(&got);

    /* enabling again drops the reason */
    up.enabled = true;
    up.disabled_reason = (char *)"stale";
    assert_int_equal(store_pool_key_update(f->st, &up), APP_OK);
    assert_int_equal(store_pool_key_get(f->st, k1.id, &got), APP_OK);
    assert_true(got.enabled);
    assert_null(got.disabled_reason);
    store_pool_key_clear(&got);

    up.weight = 0;
    assert_int_equal(store_pool_key_update(f->st, &up), APP_EINVAL);
    up.weight = 1;
    snprintf(up.id, sizeof up.id, "missing");
    assert_int_equal(store_pool_key_update(f->st, &up), APP_ENOTFOUND);

    /* set_key: new secret, version and last4; NULL last4 keeps; no key clears */
    assert_int_equal(store_pool_key_set_key(f->st, k1.id, key2, sizeof key2, 2, "9876"), APP_OK);
    assert_int_equal(store_pool_key_get(f->st, k1.id, &got), APP_OK);
    assert_int_equal(got.key_ct_len, sizeof key2);
    assert_memory_equal(got.key_ct, key2, sizeof key2);
    assert_int_equal(got.key_version, 2);
    assert_string_equal(got.key_last4, "9876");
    assert_int_equal(got.weight, 5); /* the failed updates changed nothing */
    store_pool_key_clear(&got);
    assert_int_equal(store_pool_key_set_key(f->st, k1.id, key1, sizeof key1, 3, NULL), APP_OK);
    assert_int_equal(store_pool_key_get(f->st, k1.id, &got), APP_OK);
    assert_memory_equal(got.key_ct, key1, sizeof key1);
    assert_int_equal(got.key_version, 3);
    assert_string_equal(got.key_last4, "9876");
    store_pool_key_clear(&got);
    assert_int_equal(store_pool_key_set_key(f->st, k2.id, NULL, 0, 0, NULL), APP_OK);
    assert_int_equal(store_pool_key_set_key(f->st, k1.id, NULL, 0, 4, "abcd"), APP_OK);
    assert_int_equal(store_pool_key_get(f->st, k1.id, &got), APP_OK);
    assert_null(got.key_ct);
    assert_int_equal(got.key_ct_len, 0);
    assert_string_equal(got.key_last4, "");
    store_pool_key_clear(&got);
    assert_int_equal(store_pool_key_set_key(f->st, "missing", key1, sizeof key1, 1, "x"),
                     APP_ENOTFOUND);

    /* delete */
    assert_int_equal(store_pool_key_delete(f->st, k2.id), APP_OK);
    assert_int_equal(store_pool_key_delete(f->st, k2.id), APP_ENOTFOUND);
    assert_int_equal(store_pool_key_get(f->st, k2.id, &got), APP_ENOTFOUND);
    assert_int_equal(store_pool_key_list(f->st, &list, &n), APP_OK);
    assert_int_equal(n, 1);
    assert_string_equal(list[0].id, k1.id);
    store_pool_key_list_free(list, n);
}

/* ---- usage records ------------------------------------------------------- */

#define TEST_DAY0 1704067200000LL /* 2024-01-01T00:00:00Z */
#define TEST_DAY_MS 86400000LL

static void test_store_usage(struct store *st, const char *user, const char *key,
                             const char *model, int64_t created, int64_t prompt, int64_t cached,
                             int64_t completion, int64_t cost, int status)
{
    struct store_usage u = { .model = (char *)model, .prompt_tokens = prompt,
                             .cached_tokens = cached, .completion_tokens = completion,
                             .cost_micros = cost, .latency_ms = 123, .status = status,
                             .created_at = created };
    snprintf(u.user_id, sizeof u.user_id, "%s", user ? user : "");
    snprintf(u.key_id, sizeof u.key_id, "%s", key ? key : "");
    snprintf(u.key_source, sizeof u.key_source, "%s", key ? "pool" : "server");
    snprintf(u.endpoint, sizeof u.endpoint, "chat/completions");
    if (store_usage_insert(st, &u) != APP_OK)
        fail_msg("usage_insert: %s", store_errmsg(st));
    assert_true(ids_valid(u.id));
    assert_int_equal(u.created_at, created);
}

/* Two days, two models, two users (and one row of no user), plus rows just
 * outside [DAY0, DAY0 + 2 days). key ids need not name existing pool keys. */
static void test_store_usage_data(struct fixture *f)
{
    const int64_t d0 = TEST_DAY0, d1 = TEST_DAY0 + TEST_DAY_MS, d2 = TEST_DAY0 + 2 * TEST_DAY_MS;
    test_store_usage(f->st, f->alice, "k1", "gpt-4o", d0 + 1000, 10, 2, 5, 100, 200);
    test_store_usage(f->st, f->alice, "k1", "gpt-4o", d1 - 1, 20, 0, 7, 200, 500);
    test_store_usage(f->st, f->alice, NULL, "gpt-4o-mini", d0 + 5000, 1, 0, 1, 1, 200);
    test_store_usage(f->st, f->bob, "k1", "gpt-4o", d0 + 2000, 100, 40, 50, 1000, 429);
    test_store_usage(f->st, f->alice, NULL, "gpt-4o", d1, 3, 0, 4, 30, 200);
    test_store_usage(f->st, f->bob, "k2", "gpt-4o-mini", d1 + 10, 5, 0, 6, 50, 200);
    test_store_usage(f->st, NULL, NULL, "gpt-4o", d1 + 20, 8, 0, 8, 80, 400);
    test_store_usage(f->st, f->bob, "k1", "gpt-4o", d2, 999, 0, 999, 999, 200);
    test_store_usage(f->st, f->alice, "k1", "gpt-4o", d0 - 1, 777, 0, 777, 777, 200);
}

static void test_store_check_row(const struct store_usage_row *r, const char *day,
                                 const char *model, const char *user, const char *email,
                                 int64_t requests, int64_t prompt, int64_t cached,
                                 int64_t completion, int64_t cost, int64_t errors)
{
    assert_string_equal(r->day, day);
    assert_string_equal(r->model, model);
    assert_string_equal(r->user_id, user);
    if (email)
        assert_string_equal(r->email, email);
    else
        assert_null(r->email);
    assert_int_equal(r->requests, requests);
    assert_int_equal(r->prompt_tokens, prompt);
    assert_int_equal(r->cached_tokens, cached);
    assert_int_equal(r->completion_tokens, completion);
    assert_int_equal(r->cost_micros, cost);
    assert_int_equal(r->errors, errors);
}

static void test_usage_report(void **state)
{
    struct fixture *f = *state;
    const int64_t d0 = TEST_DAY0, d1 = TEST_DAY0 + TEST_DAY_MS, d2 = TEST_DAY0 + 2 * TEST_DAY_MS;
    struct store_usage_row *rows = NULL;
    size_t n = 0;
    const char *a = f->alice, *b = f->bob;
    const char *ae = "alice@example.com", *be = "bob@example.com";

    assert_true(strcmp(a, b) < 0); /* ids are time-ordered: the row order below relies on it */
    test_store_usage_data(f);

    /* everyone over two days: by day, model, user (no user sorts first) */
    assert_int_equal(store_usage_report(f->st, d0, d2, NULL, &rows, &n), APP_OK);
    assert_int_equal(n, 6);
    test_store_check_row(&rows[0], "2024-01-01", "gpt-4o", a, ae, 2, 30, 2, 12, 300, 1);
    test_store_check_row(&rows[1], "2024-01-01", "gpt-4o", b, be, 1, 100, 40, 50, 1000, 1);
    test_store_check_row(&rows[2], "2024-01-01", "gpt-4o-mini", a, ae, 1, 1, 0, 1, 1, 0);
    test_store_check_row(&rows[3], "2024-01-02", "gpt-4o", "", NULL, 1, 8, 0, 8, 80, 1);
    test_store_check_row(&rows[4], "2024-01-02", "gpt-4o", a, ae, 1, 3, 0, 4, 30, 0);
    test_store_check_row(&rows[5], "2024-01-02", "gpt-4o-mini", b, be, 1, 5, 0, 6, 50, 0);
    store_usage_rows_free(rows, n);

    /* "" is everyone too */
    assert_int_equal(store_usage_report(f->st, d0, d2, "", &rows, &n), APP_OK);
    assert_int_equal(n, 6);
    store_usage_rows_free(rows, n);

    /* one user */
    assert_int_equal(store_usage_report(f->st, d0, d2, a, &rows, &n), APP_OK);
    assert_int_equal(n, 3);
    test_store_check_row(&rows[0], "2024-01-01", "gpt-4o", a, ae, 2, 30, 2, 12, 300, 1);
    test_store_check_row(&rows[1], "2024-01-01", "gpt-4o-mini", a, ae, 1, 1, 0, 1, 1, 0);
    test_store_check_row(&rows[2], "2024-01-02", "gpt-4o", a, ae, 1, 3, 0, 4, 30, 0);
    store_usage_rows_free(rows, n);
    assert_int_equal(store_usage_report(f->st, d0, d2, b, &rows, &n), APP_OK);
    assert_int_equal(n, 2);
    test_store_check_row(&rows[0], "2024-01-01", "gpt-4o", b, be, 1, 100, 40, 50, 1000, 1);
    test_store_check_row(&rows[1], "2024-01-02", "gpt-4o-mini", b, be, 1, 5, 0, 6, 50, 0);
    store_usage_rows_free(rows, n);

    /* [from, to): the first day only; the last millisecond of a day is in it */
    assert_int_equal(store_usage_report(f->st, d0, d1, NULL, &rows, &n), APP_OK);
    assert_int_equal(n, 3);
    test_store_check_row(&rows[0], "2024-01-01", "gpt-4o", a, ae, 2, 30, 2, 12, 300, 1);
    store_usage_rows_free(rows, n);
    assert_int_equal(store_usage_report(f->st, d0, d1 - 1, NULL, &rows, &n), APP_OK);
    assert_int_equal(n, 3);
    test_store_check_row(&rows[0], "2024-01-01", "gpt-4o", a, ae, 1, 10, 2, 5, 100, 0);
    store_usage_rows_free(rows, n);
    assert_int_equal(store_usage_report(f->st, d0 + 1000, d0 + 1001, NULL, &rows, &n), APP_OK);
    assert_int_equal(n, 1);
    test_store_check_row(&rows[0], "2024-01-01", "gpt-4o", a, ae, 1, 10, 2, 5, 100, 0);
    store_usage_rows_free(rows, n);
    assert_int_equal(store_usage_report(f->st, d0 - 1, d0, NULL, &rows, &n), APP_OK);
    assert_int_equal(n, 1);
    test_store_check_row(&rows[0], "2023-12-31", "gpt-4o", a, ae, 1, 777, 0, 777, 777, 0);
    store_usage_rows_free(rows, n);
    assert_int_equal(store_usage_report(f->st, d2, d2 + 1, NULL, &rows, &n), APP_OK);
    assert_int_equal(n, 1);
    test_store_check_row(&rows[0], "2024-01-03", "gpt-4o", b, be, 1, 999, 0, 999, 999, 0);
    store_usage_rows_free(rows, n);

    /* empty ranges and unknown users */
    assert_int_equal(store_usage_report(f->st, d0, d0, NULL, &rows, &n), APP_OK);
    assert_int_equal(n, 0);
    assert_null(rows);
    assert_int_equal(store_usage_report(f->st, d2, d0, NULL, &rows, &n), APP_OK);
    assert_int_equal(n, 0);
    assert_int_equal(store_usage_report(f->st, 0, INT64_MAX, "nobody", &rows, &n), APP_OK);
    assert_int_equal(n, 0);
    store_usage_rows_free(NULL, 0);

    /* everything */
    assert_int_equal(store_usage_report(f->st, 0, INT64_MAX, NULL, &rows, &n), APP_OK);
    assert_int_equal(n, 8);
    store_usage_rows_free(rows, n);
}

static void test_usage_insert(void **state)
{
    struct fixture *f = *state;
    struct store_usage u = { .model = xstrdup("m"), .status = 200 };
    struct store_usage_row *rows = NULL;
    size_t n = 0;

    /* defaults: id and created_at filled in */
    snprintf(u.user_id, sizeof u.user_id, "%s", f->alice);
    snprintf(u.key_source, sizeof u.key_source, "user");
    snprintf(u.endpoint, sizeof u.endpoint, "chat");
    u.tokens_estimated = true;
    u.prompt_tokens = 3;
    int64_t before = now_ms();
    assert_int_equal(store_usage_insert(f->st, &u), APP_OK);
    assert_true(ids_valid(u.id));
    assert_true(u.created_at >= before);
    assert_int_equal(store_usage_report(f->st, before, INT64_MAX, f->alice, &rows, &n), APP_OK);
    assert_int_equal(n, 1);
    assert_int_equal(rows[0].requests, 1);
    assert_int_equal(rows[0].prompt_tokens, 3);
    store_usage_rows_free(rows, n);

    /* same id again */
    assert_int_equal(store_usage_insert(f->st, &u), APP_ECONFLICT);

    /* a NULL model is grouped like any other */
    struct store_usage nm = { .status = 200, .created_at = 5 };
    assert_int_equal(store_usage_insert(f->st, &nm), APP_OK);
    assert_int_equal(store_usage_report(f->st, 0, 10, NULL, &rows, &n), APP_OK);
    assert_int_equal(n, 1);
    assert_null(rows[0].model);
    assert_string_equal(rows[0].user_id, "");
    assert_string_equal(rows[0].day, "1970-01-01");
    store_usage_rows_free(rows, n);

    /* bad input */
    struct store_usage bad = { .status = 200, .prompt_tokens = -1 };
    assert_int_equal(store_usage_insert(f->st, &bad), APP_EINVAL);
    bad.prompt_tokens = 0;
    bad.cost_micros = -5;
    assert_int_equal(store_usage_insert(f->st, &bad), APP_EINVAL);
    bad.cost_micros = 0;
    snprintf(bad.key_source, sizeof bad.key_source, "bogus");
    assert_int_equal(store_usage_insert(f->st, &bad), APP_EINVAL);
    bad.key_source[0] = '\0';
    snprintf(bad.user_id, sizeof bad.user_id, "nobody");
    assert_int_equal(store_usage_insert(f->st, &bad), APP_EINVAL);
    assert_string_equal(bad.id, "");

    store_usage_clear(&u);
    assert_null(u.model);
    assert_string_equal(u.id, "");
    store_usage_clear(&u);
    store_usage_clear(NULL);
}

static void test_usage_totals(void **state)
{
    struct fixture *f = *state;
    const int64_t d0 = TEST_DAY0, d1 = TEST_DAY0 + TEST_DAY_MS, d2 = TEST_DAY0 + 2 * TEST_DAY_MS;
    int64_t tokens = -1, cost = -1, req = -1, errs = -1;

    test_store_usage_data(f);

    /* user totals: prompt + completion (cached is part of prompt) and cost */
    assert_int_equal(store_usage_totals(f->st, f->alice, d0, &tokens, &cost), APP_OK);
    assert_int_equal(tokens, 15 + 27 + 2 + 7);
    assert_int_equal(cost, 100 + 200 + 1 + 30);
    assert_int_equal(store_usage_totals(f->st, f->alice, d0 - 1, &tokens, &cost), APP_OK);
    assert_int_equal(tokens, 51 + 1554);
    assert_int_equal(cost, 331 + 777);
    assert_int_equal(store_usage_totals(f->st, f->alice, d1, &tokens, &cost), APP_OK);
    assert_int_equal(tokens, 7);
    assert_int_equal(cost, 30);
    assert_int_equal(store_usage_totals(f->st, f->bob, d0, &tokens, &cost), APP_OK);
    assert_int_equal(tokens, 150 + 11 + 1998);
    assert_int_equal(cost, 1000 + 50 + 999);
    assert_int_equal(store_usage_totals(f->st, f->bob, d2 + 1, &tokens, &cost), APP_OK);
    assert_int_equal(tokens, 0);
    assert_int_equal(cost, 0);
    assert_int_equal(store_usage_totals(f->st, "nobody", 0, &tokens, &cost), APP_OK);
    assert_int_equal(tokens, 0);
    assert_int_equal(cost, 0);
    cost = -1;
    assert_int_equal(store_usage_totals(f->st, f->alice, d1, NULL, &cost), APP_OK);
    assert_int_equal(cost, 30);

    /* per pool key: requests, tokens, errors */
    assert_int_equal(store_usage_key_totals(f->st, "k1", d0, &req, &tokens, &errs), APP_OK);
    assert_int_equal(req, 4);
    assert_int_equal(tokens, 15 + 27 + 150 + 1998);
    assert_int_equal(errs, 2);
    assert_int_equal(store_usage_key_totals(f->st, "k1", d0 + 1001, &req, &tokens, &errs),
                     APP_OK);
    assert_int_equal(req, 3);
    assert_int_equal(tokens, 27 + 150 + 1998);
    assert_int_equal(errs, 2);
    assert_int_equal(store_usage_key_totals(f->st, "k1", 0, &req, &tokens, &errs), APP_OK);
    assert_int_equal(req, 5);
    assert_int_equal(store_usage_key_totals(f->st, "k2", 0, &req, &tokens, &errs), APP_OK);
    assert_int_equal(req, 1);
    assert_int_equal(tokens, 11);
    assert_int_equal(errs, 0);
    assert_int_equal(store_usage_key_totals(f->st, "k3", 0, &req, &tokens, &errs), APP_OK);
    assert_int_equal(req, 0);
    assert_int_equal(tokens, 0);
    assert_int_equal(errs, 0);
    assert_int_equal(store_usage_key_totals(f->st, NULL, 0, &req, &tokens, &errs), APP_OK);
    assert_int_equal(req, 0); /* rows without a key are not a key's */
}

/* ---- prices -------------------------------------------------------------- */

static void test_prices(void **state)
{
    struct fixture *f = *state;
    struct store_price *list = NULL;
    size_t n = 0;

    assert_int_equal(store_price_list(f->st, &list, &n), APP_OK);
    assert_int_equal(n, 0);
    assert_null(list);
    store_price_list_free(NULL, 0);

    struct store_price p = { .model = (char *)"gpt-4o", .input_micros = 2500000,
                             .cached_input_micros = 1250000, .output_micros = 10000000,
                             .updated_at = 10 };
    assert_int_equal(store_price_upsert(f->st, &p), APP_OK);
    struct store_price q = { .model = (char *)"gpt-4o-mini", .input_micros = 150000,
                             .output_micros = 600000 };
    assert_int_equal(store_price_upsert(f->st, &q), APP_OK);
    struct store_price r = { .model = (char *)"claude-3-5-sonnet", .input_micros = 3000000,
                             .cached_input_micros = 300000, .output_micros = 15000000,
                             .updated_at = 30 };
    assert_int_equal(store_price_upsert(f->st, &r), APP_OK);

    /* sorted by model */
    assert_int_equal(store_price_list(f->st, &list, &n), APP_OK);
    assert_int_equal(n, 3);
    assert_string_equal(list[0].model, "claude-3-5-sonnet");
    assert_int_equal(list[0].input_micros, 3000000);
    assert_int_equal(list[0].cached_input_micros, 300000);
    assert_int_equal(list[0].output_micros, 15000000);
    assert_int_equal(list[0].updated_at, 30);
    assert_string_equal(list[1].model, "gpt-4o");
    assert_int_equal(list[1].input_micros, 2500000);
    assert_int_equal(list[1].cached_input_micros, 1250000);
    assert_int_equal(list[1].output_micros, 10000000);
    assert_int_equal(list[1].updated_at, 10);
    assert_string_equal(list[2].model, "gpt-4o-mini");
    assert_int_equal(list[2].cached_input_micros, 0);
    assert_true(list[2].updated_at > 0); /* 0 = now */
    store_price_list_free(list, n);

    /* upsert replaces in place */
    p.input_micros = 2000000;
    p.cached_input_micros = 1000000;
    p.output_micros = 8000000;
    p.updated_at = 20;
    assert_int_equal(store_price_upsert(f->st, &p), APP_OK);
    assert_int_equal(store_price_list(f->st, &list, &n), APP_OK);
    assert_int_equal(n, 3);
    assert_string_equal(list[1].model, "gpt-4o");
    assert_int_equal(list[1].input_micros, 2000000);
    assert_int_equal(list[1].cached_input_micros, 1000000);
    assert_int_equal(list[1].output_micros, 8000000);
    assert_int_equal(list[1].updated_at, 20);
    store_price_list_free(list, n);

    /* bad input */
    struct store_price bad = { .model = NULL };
    assert_int_equal(store_price_upsert(f->st, &bad), APP_EINVAL);
    bad.model = (char *)"";
    assert_int_equal(store_price_upsert(f->st, &bad), APP_EINVAL);
    bad.model = (char *)"x";
    bad.output_micros = -1;
    assert_int_equal(store_price_upsert(f->st, &bad), APP_EINVAL);

    /* delete */
    assert_int_equal(store_price_delete(f->st, "gpt-4o"), APP_OK);
    assert_int_equal(store_price_delete(f->st, "gpt-4o"), APP_ENOTFOUND);
    assert_int_equal(store_price_delete(f->st, "GPT-4O-MINI"), APP_ENOTFOUND); /* exact names */
    assert_int_equal(store_price_list(f->st, &list, &n), APP_OK);
    assert_int_equal(n, 2);
    assert_string_equal(list[0].model, "claude-3-5-sonnet");
    assert_string_equal(list[1].model, "gpt-4o-mini");
    store_price_list_free(list, n);
}

/* ---- per-user limits and the user list ------------------------------------ */

static void test_user_limits(void **state)
{
    struct fixture *f = *state;
    struct store_user_limits got = { .rpm = 99 };

    assert_int_equal(store_user_limits_get(f->st, f->alice, &got), APP_ENOTFOUND);
    assert_int_equal(got.rpm, 0);

    struct store_user_limits l = { .rpm = 60, .tpm = 10000, .monthly_tokens = 1000000,
                                   .monthly_cost_micros = 5000000 };
    snprintf(l.user_id, sizeof l.user_id, "%s", f->alice);
    assert_int_equal(store_user_limits_set(f->st, &l), APP_OK);
    assert_int_equal(store_user_limits_get(f->st, f->alice, &got), APP_OK);
    assert_string_equal(got.user_id, f->alice);
    assert_int_equal(got.rpm, 60);
    assert_int_equal(got.tpm, 10000);
    assert_int_equal(got.monthly_tokens, 1000000);
    assert_int_equal(got.monthly_cost_micros, 5000000);
    assert_true(got.updated_at > 0);

    /* overwrite */
    l.rpm = l.tpm = l.monthly_tokens = l.monthly_cost_micros = -1;
    l.updated_at = 42;
    assert_int_equal(store_user_limits_set(f->st, &l), APP_OK);
    assert_int_equal(store_user_limits_get(f->st, f->alice, &got), APP_OK);
    assert_int_equal(got.rpm, -1);
    assert_int_equal(got.tpm, -1);
    assert_int_equal(got.monthly_tokens, -1);
    assert_int_equal(got.monthly_cost_micros, -1);
    assert_int_equal(got.updated_at, 42);

    assert_int_equal(store_user_limits_get(f->st, f->bob, &got), APP_ENOTFOUND);

    /* bad input */
    struct store_user_limits bad = { .rpm = -1, .tpm = -1, .monthly_tokens = -1,
                                     .monthly_cost_micros = -1 };
    snprintf(bad.user_id, sizeof bad.user_id, "nobody");
    assert_int_equal(store_user_limits_set(f->st, &bad), APP_EINVAL);
    bad.user_id[0] = '\0';
    assert_int_equal(store_user_limits_set(f->st, &bad), APP_EINVAL);
    snprintf(bad.user_id, sizeof bad.user_id, "%s", f->bob);
    bad.monthly_tokens = -2;
    assert_int_equal(store_user_limits_set(f->st, &bad), APP_EINVAL);
    assert_int_equal(store_user_limits_get(f->st, f->bob, &got), APP_ENOTFOUND);
}

static void test_user_list(void **state)
{
    struct fixture *f = *state;
    struct store_user *list = NULL;
    size_t n = 0;

    struct store_user c = { .email = (char *)"carol@example.com", .name = (char *)"Carol",
                            .password_hash = (char *)"h", .created_at = 1 };
    assert_int_equal(store_user_create(f->st, &c, true), APP_OK);

    /* oldest first; password hashes are not read */
    assert_int_equal(store_user_list(f->st, &list, &n), APP_OK);
    assert_int_equal(n, 3);
    assert_string_equal(list[0].id, c.id);
    assert_string_equal(list[0].email, "carol@example.com");
    assert_string_equal(list[0].name, "Carol");
    assert_int_equal(list[0].created_at, 1);
    assert_false(list[0].is_admin);
    assert_string_equal(list[1].id, f->alice);
    assert_true(list[1].is_admin);
    assert_null(list[1].name);
    assert_string_equal(list[2].id, f->bob);
    assert_string_equal(list[2].email, "bob@example.com");
    for (size_t i = 0; i < n; i++)
        assert_null(list[i].password_hash);
    store_user_list_free(list, n);
    store_user_list_free(NULL, 0);

    struct store *st = test_store_open_memory();
    assert_int_equal(store_user_list(st, &list, &n), APP_OK);
    assert_int_equal(n, 0);
    assert_null(list);
    store_close(st);
}

/* ---- upgrading a v1 database --------------------------------------------- */

/* Builds a version-1 database with the real 0001 migration text (as a v1
 * build of the server left it, with data), then lets the store migrate it. */
static void test_migrate_v1_to_v2(void **state)
{
    char dir[64], sql[1024];
    const char *alice = "0190a000-0000-7000-8000-000000000001";
    const char *bob = "0190a000-0000-7000-8000-000000000002";
    struct store_user got = { 0 };
    struct store_usage_row *rows = NULL;
    size_t n = 0;
    int from = -2, to = -2;

    assert_true(store_sqlite_migrations_count >= 2);
    assert_int_equal(store_sqlite_migrations[0].version, 1);
    assert_int_equal(store_sqlite_migrations[1].version, 2);

    test_store_tmpdir(dir);
    sqlite3 *db = test_store_raw(dir);
    test_store_raw_exec(db, "BEGIN");
    test_store_raw_exec(db, "CREATE TABLE schema_migrations ("
                            " version INTEGER PRIMARY KEY, applied_at INTEGER NOT NULL)");
    test_store_raw_exec(db, store_sqlite_migrations[0].sql);
    test_store_raw_exec(db, "INSERT INTO schema_migrations VALUES (1, 0)");
    snprintf(sql, sizeof sql,
             "INSERT INTO users (id, email, password_hash, is_admin, created_at, updated_at)"
             " VALUES ('%s', 'alice@example.com', 'h', 1, 1, 1),"
             " ('%s', 'bob@example.com', 'h', 0, 2, 2)", alice, bob);
    test_store_raw_exec(db, sql);
    snprintf(sql, sizeof sql,
             "INSERT INTO usage_records (id, user_id, model, prompt_tokens, completion_tokens,"
             " cost_micros, created_at) VALUES"
             " ('u1', '%s', 'gpt-4o', 10, 5, NULL, %lld),"
             " ('u2', '%s', 'gpt-4o', 1, 2, 7, %lld)",
             alice, (long long)TEST_DAY0, alice, (long long)(TEST_DAY0 + 1));
    test_store_raw_exec(db, sql);
    test_store_raw_exec(db, "COMMIT");
    assert_int_equal(test_store_raw_int(db, "SELECT count(*) FROM sqlite_master"
                                            " WHERE name = 'api_tokens'"), 0);

    struct store *st = test_store_open_file(dir, false);
    assert_int_equal(store_schema_version(st), 1);
    assert_int_equal(store_migrate(st, &from, &to), APP_OK);
    const int latest = (int)store_sqlite_migrations_count; /* v2 and every later one */
    assert_true(latest >= 2);
    assert_int_equal(from, 1);
    assert_int_equal(to, latest);
    assert_int_equal(store_schema_version(st), latest);
    assert_int_equal(store_migrate(st, &from, &to), APP_OK); /* nothing left */
    assert_int_equal(from, latest);
    assert_int_equal(to, latest);
    assert_int_equal(test_store_raw_int(db, "SELECT count(*) FROM schema_migrations"), latest);

    /* v1 data survived; legacy usage rows read with the new columns' defaults */
    assert_int_equal(store_user_get(st, alice, &got), APP_OK);
    assert_string_equal(got.email, "alice@example.com");
    assert_true(got.is_admin);
    store_user_clear(&got);
    assert_int_equal(store_usage_report(st, 0, INT64_MAX, NULL, &rows, &n), APP_OK);
    assert_int_equal(n, 1);
    test_store_check_row(&rows[0], "2024-01-01", "gpt-4o", alice, "alice@example.com", 2, 11, 0,
                         7, 7, 0);
    store_usage_rows_free(rows, n);
    assert_int_equal(test_store_raw_int(db, "SELECT count(*) FROM usage_records WHERE id = 'u1'"
                                            " AND status = 200 AND cached_tokens = 0"
                                            " AND tokens_estimated = 0 AND key_source IS NULL"),
                     1);
    static const char *const indexes[] = { "api_tokens_user_id", "usage_records_created_at",
                                           "usage_records_user_created",
                                           "usage_records_key_created" };
    for (size_t i = 0; i < COAI_ARRAY_LEN(indexes); i++) {
        snprintf(sql, sizeof sql,
                 "SELECT count(*) FROM sqlite_master WHERE type = 'index' AND name = '%s'",
                 indexes[i]);
        assert_int_equal(test_store_raw_int(db, sql), 1);
    }

    /* the v2 tables work on the upgraded file */
    struct store_token t;
    test_store_make_token(st, alice, 1, 10, 0, &t);
    struct store_user_limits l = { .rpm = 1, .tpm = 2, .monthly_tokens = 3,
                                   .monthly_cost_micros = 4 };
    snprintf(l.user_id, sizeof l.user_id, "%s", alice);
    assert_int_equal(store_user_limits_set(st, &l), APP_OK);
    struct store_pool_key k = { .base_url = (char *)"x", .weight = 1, .rpm = -1, .tpm = -1,
                                .enabled = true };
    assert_int_equal(store_pool_key_create(st, &k), APP_OK);
    struct store_usage u = { .model = (char *)"gpt-4o", .prompt_tokens = 4,
                             .completion_tokens = 4, .cost_micros = 40, .status = 502,
                             .created_at = TEST_DAY0 + 2 };
    snprintf(u.user_id, sizeof u.user_id, "%s", alice);
    memcpy(u.token_id, t.id, sizeof u.token_id);
    memcpy(u.key_id, k.id, sizeof u.key_id);
    snprintf(u.key_source, sizeof u.key_source, "pool");
    assert_int_equal(store_usage_insert(st, &u), APP_OK);
    assert_int_equal(store_usage_report(st, 0, INT64_MAX, alice, &rows, &n), APP_OK);
    assert_int_equal(n, 1);
    test_store_check_row(&rows[0], "2024-01-01", "gpt-4o", alice, "alice@example.com", 3, 15, 0,
                         11, 47, 1);
    store_usage_rows_free(rows, n);

    /* usage outlives its pool key, its token and its user: nothing blocks
     * the deletes, and the ledger keeps the key and token ids */
    assert_int_equal(store_pool_key_delete(st, k.id), APP_OK);
    snprintf(sql, sizeof sql, "DELETE FROM users WHERE id = '%s'", alice);
    test_store_raw_exec(db, sql);
    assert_int_equal(test_store_raw_int(db, "SELECT count(*) FROM api_tokens"), 0);
    assert_int_equal(test_store_raw_int(db, "SELECT count(*) FROM user_limits"), 0);
    assert_int_equal(test_store_raw_int(db, "SELECT count(*) FROM usage_records"
                                            " WHERE user_id IS NULL"), 3);
    snprintf(sql, sizeof sql,
             "SELECT count(*) FROM usage_records WHERE token_id = '%s' AND key_id = '%s'",
             t.id, k.id);
    assert_int_equal(test_store_raw_int(db, sql), 1);
    int64_t req = 0, tokens = 0, errs = 0;
    assert_int_equal(store_usage_key_totals(st, k.id, 0, &req, &tokens, &errs), APP_OK);
    assert_int_equal(req, 1);
    assert_int_equal(tokens, 8);
    assert_int_equal(errs, 1);
    assert_int_equal(store_usage_report(st, 0, INT64_MAX, NULL, &rows, &n), APP_OK);
    assert_int_equal(n, 1);
    test_store_check_row(&rows[0], "2024-01-01", "gpt-4o", "", NULL, 3, 15, 0, 11, 47, 1);
    store_usage_rows_free(rows, n);
    assert_int_equal(test_store_raw_int(db, "SELECT count(*) FROM pragma_foreign_key_check"), 0);

    sqlite3_close(db);
    store_close(st);
    test_store_rmdir(dir);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_open_urls),
        cmocka_unit_test(test_unmigrated),
        cmocka_unit_test(test_migrate_idempotent),
        cmocka_unit_test_setup_teardown(test_transactions, test_store_setup, test_store_teardown),
        cmocka_unit_test_setup_teardown(test_user_create_get, test_store_setup, test_store_teardown),
        cmocka_unit_test_setup_teardown(test_user_email_conflict, test_store_setup,
                                        test_store_teardown),
        cmocka_unit_test_setup_teardown(test_user_first_admin, test_store_setup,
                                        test_store_teardown),
        cmocka_unit_test_setup_teardown(test_user_set_password, test_store_setup,
                                        test_store_teardown),
        cmocka_unit_test_setup_teardown(test_sessions, test_store_setup, test_store_teardown),
        cmocka_unit_test_setup_teardown(test_conns, test_store_setup, test_store_teardown),
        cmocka_unit_test_setup_teardown(test_chat_create_get, test_store_setup, test_store_teardown),
        cmocka_unit_test_setup_teardown(test_chat_list_pagination, test_store_setup,
                                        test_store_teardown),
        cmocka_unit_test_setup_teardown(test_chat_ownership, test_store_setup, test_store_teardown),
        cmocka_unit_test_setup_teardown(test_chat_patch, test_store_setup, test_store_teardown),
        cmocka_unit_test_setup_teardown(test_chat_touch, test_store_setup, test_store_teardown),
        cmocka_unit_test_setup_teardown(test_chat_delete_cascade, test_store_setup,
                                        test_store_teardown),
        cmocka_unit_test_setup_teardown(test_message_create, test_store_setup, test_store_teardown),
        cmocka_unit_test_setup_teardown(test_message_list_path, test_store_setup,
                                        test_store_teardown),
        cmocka_unit_test_setup_teardown(test_message_tail, test_store_setup,
                                        test_store_teardown),
        cmocka_unit_test_setup_teardown(test_message_newest_leaf, test_store_setup,
                                        test_store_teardown),
        cmocka_unit_test_setup_teardown(test_message_update, test_store_setup, test_store_teardown),
        cmocka_unit_test_setup_teardown(test_message_mark_interrupted, test_store_setup,
                                        test_store_teardown),
        cmocka_unit_test_setup_teardown(test_turn_leases, test_store_setup, test_store_teardown),
        cmocka_unit_test(test_file_reopen_wal),
        cmocka_unit_test(test_two_handles),
        cmocka_unit_test(test_concurrent_first_admin),
        cmocka_unit_test_setup_teardown(test_tokens, test_store_setup, test_store_teardown),
        cmocka_unit_test_setup_teardown(test_pool_keys, test_store_setup, test_store_teardown),
        cmocka_unit_test_setup_teardown(test_usage_report, test_store_setup, test_store_teardown),
        cmocka_unit_test_setup_teardown(test_usage_insert, test_store_setup, test_store_teardown),
        cmocka_unit_test_setup_teardown(test_usage_totals, test_store_setup, test_store_teardown),
        cmocka_unit_test_setup_teardown(test_prices, test_store_setup, test_store_teardown),
        cmocka_unit_test_setup_teardown(test_user_limits, test_store_setup, test_store_teardown),
        cmocka_unit_test_setup_teardown(test_user_list, test_store_setup, test_store_teardown),
        cmocka_unit_test(test_migrate_v1_to_v2),
    };
    g_pg_url = getenv("COAI_TEST_PG_URL");
    if (g_pg_url && *g_pg_url) {
        /* the same tests on PostgreSQL: those with the fixture */
        struct CMUnitTest pg[COAI_ARRAY_LEN(tests)];
        int n = 0;
        for (size_t i = 0; i < COAI_ARRAY_LEN(tests); i++)
            if (tests[i].setup_func == test_store_setup)
                pg[n++] = tests[i];
        int failed = _cmocka_run_group_tests("store-pg", pg, (size_t)n, NULL, NULL);
        if (failed < 0 || failed > n)
            failed = n;
        printf("unit-store-pg: %d passed, %d failed\n", n - failed, failed);
        fflush(stdout);
        return failed ? 1 : 0;
    }
    g_pg_url = NULL;
    const int total = (int)COAI_ARRAY_LEN(tests);
    int failed = cmocka_run_group_tests(tests, NULL, NULL);
    if (failed < 0 || failed > total)
        failed = total;
    printf("unit-store: %d passed, %d failed\n", total - failed, failed);
    fflush(stdout);
    return failed ? 1 : 0;
}
