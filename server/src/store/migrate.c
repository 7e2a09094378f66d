/* migrate.c - `chatopenaii migrate-store --from SRC --to DST [--verify]`.
 *
 * Copies every table of one store into another: SQLite -> PostgreSQL, back,
 * or between two of a kind. The destination schema is created by the same
 * numbered migrations the server runs (store_open + store_migrate); the
 * copy itself is generic SQL on raw connections (sqlite3 / libpq), so a
 * table or column added by a later migration is copied without touching
 * this file.
 *
 *  - Tables are discovered from the catalogs (sqlite_master / pg_class of
 *    the current schema), less schema_migrations and migrate_progress, and
 *    copied parents first (a topological order of their foreign keys).
 *  - Rows are read in one read-only snapshot of the source, ordered by the
 *    primary key; a table with a foreign key to itself (messages.parent_id,
 *    folders.parent_id) is ordered by created_at, then the primary key,
 *    after checking on the source that this puts every parent first.
 *  - The destination is written in batches (CHATOPENAII_MIGRATE_BATCH rows,
 *    default 1000, and at most 16 MiB); each batch is one transaction that
 *    also records (table, last key copied) in migrate_progress, so a re-run
 *    after an interruption resumes after the last committed batch.
 *  - Verification reads both sides again in the same order and compares, per
 *    table, the row count and a SHA-256 over a canonical encoding of every
 *    value (type tag + bytes), which is the same whichever back end the row
 *    came from (a PostgreSQL boolean reads as the integer 0/1 SQLite keeps).
 *
 * Memory is bounded by one batch (plus one FETCH of the PostgreSQL cursor).
 * Nothing here prints a row value or a password: errors name the table and
 * the database's message without DETAIL; locations are printed as
 * user@host:port/db or the file path.
 */
#include "migrate.h"
#include "store.h"
#include "../lib/buf.h"

#include <errno.h>
#include <inttypes.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

#include <jansson.h>
#include <libpq-fe.h>
#include <openssl/evp.h>
#include <sqlite3.h>

#define MIG_DEFAULT_BATCH 1000
#define MIG_MAX_BATCH 100000
#define MIG_BATCH_BYTES ((size_t)16 << 20) /* flush a batch past this many value bytes */
#define MIG_VALUE_MAX ((size_t)1 << 30)    /* one value larger than this is refused */
#define MIG_PG_MAX_PARAMS 65535
#define MIG_FETCH 1000
#define MIG_FETCH_SQL "FETCH FORWARD 1000 FROM mig_cur"
#define MIG_SOURCE_ROW "#source" /* migrate_progress row naming the source */

/* ---- types --------------------------------------------------------------- */

enum mig_kind { MIG_SQLITE, MIG_PG };

/* One value as read from either back end. Text and blob bytes live in the
 * batch's byte buffer (off, len), each followed by a NUL. */
enum mig_vt { VT_NULL, VT_INT, VT_REAL, VT_TEXT, VT_BLOB };
struct mig_val {
    enum mig_vt t;
    int64_t i;
    double r;
    size_t off, len;
};

/* How a PostgreSQL column's text output is read (SQLite values carry their
 * own type). */
enum mig_ck { CK_TEXT, CK_INT, CK_BOOL, CK_REAL, CK_BLOB };

struct mig_col {
    char *name;
    char *pgtype; /* format_type(), for casts (PostgreSQL only) */
    enum mig_ck kind;
    int pk;       /* 1-based position in the primary key, 0 if not part of it */
};

struct mig_fk {
    char *parent; /* referenced table */
    char *from;   /* column here (first column of a composite key) */
    char *to;     /* referenced column, NULL: the parent's primary key */
    int ncols;
};

struct mig_table {
    char *name;
    struct mig_col *cols;
    size_t ncols;
    struct mig_fk *fks;
    size_t nfks;
};

struct mig_db {
    enum mig_kind kind;
    const char *url;  /* as given: may hold a password, never printed */
    char *path;       /* SQLite file */
    char label[512];  /* printable location, no secrets */
    sqlite3 *db;
    PGconn *pg;
    struct mig_table *tables;
    size_t ntables;
};

/* A table present on both sides, columns in the source's order. side[s][j] is
 * column j's metadata on side s (0 source, 1 destination). */
struct mig_pair {
    const char *name;
    size_t ncols;
    const struct mig_col **side[2];
    size_t *key; /* ordering key: column indexes */
    size_t nkey;
    const char *self_from; /* self-referencing foreign key column, or NULL */
    const char *self_to;
};

struct mig_batch {
    size_t ncols, nrows, cap;
    struct mig_val *v;
    struct buf bytes;
};

struct mig_cursor {
    struct mig_db *db;
    const struct mig_col **cols;
    size_t ncols;
    sqlite3_stmt *st;
    PGresult *res;
    int row, nrows;
    bool declared, eof;
};

struct mig_run {
    struct mig_db src, dst;
    struct mig_pair *pairs;
    size_t npairs;
    size_t batch_rows;
    long stop_after;  /* 0: never */
    long batches;     /* committed in this run */
    int64_t rows_copied;
};

/* ---- small helpers ------------------------------------------------------- */

COAI_PRINTF(1, 2) static void mig_err(const char *fmt, ...)
{
    va_list ap;
    fputs("migrate-store: ", stderr);
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fputc('\n', stderr);
}

/* PostgreSQL's primary message (no DETAIL: it can quote row values). */
static const char *mig_pg_msg(PGconn *c, const PGresult *r)
{
    const char *m = r ? PQresultErrorField(r, PG_DIAG_MESSAGE_PRIMARY) : NULL;
    if (!m || !*m)
        m = PQerrorMessage(c);
    return m && *m ? m : "unknown error";
}

static void mig_quote(struct buf *b, const char *id)
{
    buf_append_str(b, "\"");
    for (const char *c = id; *c; c++)
        buf_append(b, *c == '"' ? "\"\"" : c, *c == '"' ? 2 : 1);
    buf_append_str(b, "\"");
}

static bool mig_is_skipped_table(const char *name)
{
    return strcmp(name, "schema_migrations") == 0 || strcmp(name, "migrate_progress") == 0 ||
           strncmp(name, "sqlite_", 7) == 0;
}

static double mig_now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* ---- statements on either back end -------------------------------------- */

/* Run a statement without results. sqlite_sql uses ?1..?n, pg_sql $1..$n;
 * params are text (NULL for SQL NULL). Returns 0 or -1 (message printed). */
static int mig_exec(struct mig_db *d, const char *what, const char *sqlite_sql, const char *pg_sql,
                    int n, const char *const *params)
{
    if (d->kind == MIG_SQLITE) {
        sqlite3_stmt *st = NULL;
        int rc = sqlite3_prepare_v2(d->db, sqlite_sql, -1, &st, NULL);
        for (int i = 0; rc == SQLITE_OK && i < n; i++)
            rc = params[i] ? sqlite3_bind_text(st, i + 1, params[i], -1, SQLITE_STATIC)
                           : sqlite3_bind_null(st, i + 1);
        if (rc == SQLITE_OK) {
            while ((rc = sqlite3_step(st)) == SQLITE_ROW)
                ;
        }
        if (rc != SQLITE_DONE && rc != SQLITE_OK) {
            mig_err("%s (%s): %s", what, d->label, sqlite3_errmsg(d->db));
            sqlite3_finalize(st);
            return -1;
        }
        sqlite3_finalize(st);
        return 0;
    }
    PGresult *r = PQexecParams(d->pg, pg_sql, n, NULL, params, NULL, NULL, 0);
    ExecStatusType s = PQresultStatus(r);
    if (s != PGRES_COMMAND_OK && s != PGRES_TUPLES_OK) {
        mig_err("%s (%s): %s", what, d->label, mig_pg_msg(d->pg, r));
        PQclear(r);
        return -1;
    }
    PQclear(r);
    return 0;
}

static int mig_simple(struct mig_db *d, const char *what, const char *sql)
{
    return mig_exec(d, what, sql, sql, 0, NULL);
}

/* One int64 from a one-row, one-column query (*out = dflt when no row or
 * NULL). */
static int mig_query_int(struct mig_db *d, const char *what, const char *sqlite_sql,
                         const char *pg_sql, int n, const char *const *params, int64_t dflt,
                         int64_t *out)
{
    *out = dflt;
    if (d->kind == MIG_SQLITE) {
        sqlite3_stmt *st = NULL;
        int rc = sqlite3_prepare_v2(d->db, sqlite_sql, -1, &st, NULL);
        for (int i = 0; rc == SQLITE_OK && i < n; i++)
            rc = params[i] ? sqlite3_bind_text(st, i + 1, params[i], -1, SQLITE_STATIC)
                           : sqlite3_bind_null(st, i + 1);
        if (rc == SQLITE_OK) {
            rc = sqlite3_step(st);
            if (rc == SQLITE_ROW) {
                if (sqlite3_column_type(st, 0) != SQLITE_NULL)
                    *out = sqlite3_column_int64(st, 0);
                rc = SQLITE_DONE;
            }
        }
        if (rc != SQLITE_DONE) {
            mig_err("%s (%s): %s", what, d->label, sqlite3_errmsg(d->db));
            sqlite3_finalize(st);
            return -1;
        }
        sqlite3_finalize(st);
        return 0;
    }
    PGresult *r = PQexecParams(d->pg, pg_sql, n, NULL, params, NULL, NULL, 0);
    if (PQresultStatus(r) != PGRES_TUPLES_OK) {
        mig_err("%s (%s): %s", what, d->label, mig_pg_msg(d->pg, r));
        PQclear(r);
        return -1;
    }
    if (PQntuples(r) > 0 && !PQgetisnull(r, 0, 0))
        *out = strtoll(PQgetvalue(r, 0, 0), NULL, 10);
    PQclear(r);
    return 0;
}

/* ---- opening ------------------------------------------------------------- */

static int mig_parse_location(struct mig_db *d, const char *url)
{
    d->url = url;
    if (strncmp(url, "postgres://", 11) == 0 || strncmp(url, "postgresql://", 13) == 0) {
        d->kind = MIG_PG;
        return 0;
    }
    const char *path = url;
    if (strncmp(url, "sqlite:", 7) == 0)
        path = url + 7;
    else if (strstr(url, "://")) {
        mig_err("unknown database url scheme (use a SQLite path, sqlite:PATH or postgres://...)");
        return -1;
    }
    if (!*path) {
        mig_err("empty SQLite path");
        return -1;
    }
    d->kind = MIG_SQLITE;
    d->path = xstrdup(path);
    return 0;
}

static int mig_pg_connect(struct mig_db *d)
{
    static const char *const keys[] = { "dbname", "client_encoding", "fallback_application_name",
                                        NULL };
    const char *const vals[] = { d->url, "UTF8", "chatopenaii-migrate", NULL };
    d->pg = PQconnectdbParams(keys, vals, 1);
    if (!d->pg || PQstatus(d->pg) != CONNECTION_OK) {
        /* store_open already reported a (password-free) reason when it
         * failed; this only happens if the server went away in between */
        mig_err("cannot connect to PostgreSQL");
        return -1;
    }
    const char *host = PQhost(d->pg);
    snprintf(d->label, sizeof d->label, "postgres://%s@%s:%s/%s", PQuser(d->pg),
             host && *host ? host : "localhost", PQport(d->pg), PQdb(d->pg));
    return 0;
}

/* The source: read-only. A SQLite file must exist (opening it through the
 * store would create it); PostgreSQL is only connected to. */
static int mig_open_source(struct mig_db *d)
{
    if (d->kind == MIG_SQLITE) {
        struct stat sb;
        if (stat(d->path, &sb) != 0 || !S_ISREG(sb.st_mode)) {
            mig_err("source %s: no such SQLite file", d->path);
            return -1;
        }
        char *real = realpath(d->path, NULL);
        snprintf(d->label, sizeof d->label, "%s", real ? real : d->path);
        free(real);
        if (sqlite3_open_v2(d->path, &d->db, SQLITE_OPEN_READONLY, NULL) != SQLITE_OK) {
            mig_err("source %s: %s", d->label, d->db ? sqlite3_errmsg(d->db) : "cannot open");
            return -1;
        }
        sqlite3_busy_timeout(d->db, 5000);
        return 0;
    }
    char err[512];
    struct store *st = store_open(d->url, err, sizeof err);
    if (!st) {
        mig_err("source: %s", err);
        return -1;
    }
    store_close(st);
    return mig_pg_connect(d);
}

/* The destination: created if needed and migrated by the server's own code,
 * then opened raw for the copy (unless verify_only: then only opened). */
static int mig_open_dest(struct mig_db *d, bool verify_only)
{
    if (!verify_only || d->kind == MIG_PG) {
        char err[512];
        struct store *st = store_open(d->url, err, sizeof err);
        if (!st) {
            mig_err("destination: %s", err);
            return -1;
        }
        if (!verify_only) {
            int from = 0, to = 0;
            if (store_migrate(st, &from, &to) != APP_OK) {
                mig_err("destination: migration failed: %s", store_errmsg(st));
                store_close(st);
                return -1;
            }
            if (from != to)
                fprintf(stderr, "migrate-store: destination schema migrated from %d to %d\n", from,
                        to);
        }
        store_close(st);
    }
    if (d->kind == MIG_PG)
        return mig_pg_connect(d);
    struct stat sb;
    if (verify_only && (stat(d->path, &sb) != 0 || !S_ISREG(sb.st_mode))) {
        mig_err("destination %s: no such SQLite file", d->path);
        return -1;
    }
    char *real = realpath(d->path, NULL);
    snprintf(d->label, sizeof d->label, "%s", real ? real : d->path);
    free(real);
    int flags = verify_only ? SQLITE_OPEN_READONLY : SQLITE_OPEN_READWRITE;
    if (sqlite3_open_v2(d->path, &d->db, flags, NULL) != SQLITE_OK) {
        mig_err("destination %s: %s", d->label, d->db ? sqlite3_errmsg(d->db) : "cannot open");
        return -1;
    }
    sqlite3_busy_timeout(d->db, 5000);
    if (mig_simple(d, "pragma", "PRAGMA foreign_keys = ON") != 0 ||
        mig_simple(d, "pragma", "PRAGMA synchronous = NORMAL") != 0)
        return -1;
    return 0;
}

static void mig_table_free(struct mig_table *t)
{
    for (size_t j = 0; j < t->ncols; j++) {
        free(t->cols[j].name);
        free(t->cols[j].pgtype);
    }
    for (size_t j = 0; j < t->nfks; j++) {
        free(t->fks[j].parent);
        free(t->fks[j].from);
        free(t->fks[j].to);
    }
    free(t->cols);
    free(t->fks);
    free(t->name);
}

static void mig_db_close(struct mig_db *d)
{
    for (size_t i = 0; i < d->ntables; i++)
        mig_table_free(&d->tables[i]);
    free(d->tables);
    d->tables = NULL;
    d->ntables = 0;
    if (d->db)
        sqlite3_close(d->db);
    d->db = NULL;
    if (d->pg)
        PQfinish(d->pg);
    d->pg = NULL;
    free(d->path);
    d->path = NULL;
}

/* ---- schema discovery ---------------------------------------------------- */

static enum mig_ck mig_pg_kind(const char *typname)
{
    if (strcmp(typname, "bool") == 0)
        return CK_BOOL;
    if (strcmp(typname, "int2") == 0 || strcmp(typname, "int4") == 0 ||
        strcmp(typname, "int8") == 0)
        return CK_INT;
    if (strcmp(typname, "float4") == 0 || strcmp(typname, "float8") == 0)
        return CK_REAL;
    if (strcmp(typname, "bytea") == 0)
        return CK_BLOB;
    return CK_TEXT;
}

static struct mig_table *mig_add_table(struct mig_db *d, const char *name)
{
    d->tables = xrealloc(d->tables, (d->ntables + 1) * sizeof *d->tables);
    struct mig_table *t = &d->tables[d->ntables++];
    memset(t, 0, sizeof *t);
    t->name = xstrdup(name);
    return t;
}

static void mig_add_col(struct mig_table *t, const char *name, const char *pgtype,
                        enum mig_ck kind, int pk)
{
    t->cols = xrealloc(t->cols, (t->ncols + 1) * sizeof *t->cols);
    t->cols[t->ncols++] = (struct mig_col){ xstrdup(name), xstrdup(pgtype), kind, pk };
}

static void mig_add_fk(struct mig_table *t, const char *parent, const char *from, const char *to,
                       int ncols)
{
    t->fks = xrealloc(t->fks, (t->nfks + 1) * sizeof *t->fks);
    t->fks[t->nfks++] = (struct mig_fk){ xstrdup(parent), xstrdup(from), xstrdup(to), ncols };
}

static int mig_load_sqlite(struct mig_db *d)
{
    sqlite3_stmt *tl = NULL, *cl = NULL, *fl = NULL;
    int rc = sqlite3_prepare_v2(d->db,
                                "SELECT name FROM sqlite_master WHERE type = 'table' ORDER BY name",
                                -1, &tl, NULL);
    if (rc == SQLITE_OK)
        rc = sqlite3_prepare_v2(d->db, "SELECT name, pk FROM pragma_table_info(?1) ORDER BY cid",
                                -1, &cl, NULL);
    if (rc == SQLITE_OK)
        rc = sqlite3_prepare_v2(d->db,
                                "SELECT \"table\", \"from\", \"to\","
                                " (SELECT count(*) FROM pragma_foreign_key_list(?1) g"
                                "  WHERE g.id = f.id)"
                                " FROM pragma_foreign_key_list(?1) f WHERE seq = 0 ORDER BY id",
                                -1, &fl, NULL);
    while (rc == SQLITE_OK && (rc = sqlite3_step(tl)) == SQLITE_ROW) {
        const char *name = (const char *)sqlite3_column_text(tl, 0);
        if (!name || mig_is_skipped_table(name)) {
            rc = SQLITE_OK;
            continue;
        }
        struct mig_table *t = mig_add_table(d, name);
        sqlite3_bind_text(cl, 1, t->name, -1, SQLITE_STATIC);
        while ((rc = sqlite3_step(cl)) == SQLITE_ROW)
            mig_add_col(t, (const char *)sqlite3_column_text(cl, 0), "", CK_TEXT,
                        sqlite3_column_int(cl, 1));
        sqlite3_reset(cl);
        if (rc != SQLITE_DONE)
            break;
        sqlite3_bind_text(fl, 1, t->name, -1, SQLITE_STATIC);
        while ((rc = sqlite3_step(fl)) == SQLITE_ROW)
            mig_add_fk(t, (const char *)sqlite3_column_text(fl, 0),
                       (const char *)sqlite3_column_text(fl, 1),
                       (const char *)sqlite3_column_text(fl, 2), sqlite3_column_int(fl, 3));
        sqlite3_reset(fl);
        if (rc != SQLITE_DONE)
            break;
        rc = SQLITE_OK;
    }
    if (rc != SQLITE_DONE)
        mig_err("reading the schema of %s: %s", d->label, sqlite3_errmsg(d->db));
    sqlite3_finalize(tl);
    sqlite3_finalize(cl);
    sqlite3_finalize(fl);
    return rc == SQLITE_DONE ? 0 : -1;
}

static const char MIG_PG_TABLES[] =
    "SELECT c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace"
    " WHERE c.relkind IN ('r', 'p') AND n.nspname = current_schema()"
    " ORDER BY c.relname COLLATE \"C\"";
static const char MIG_PG_COLUMNS[] =
    "SELECT a.attname, format_type(a.atttypid, a.atttypmod), t.typname,"
    " coalesce((SELECT k.n FROM pg_index i, unnest(i.indkey::int2[]) WITH ORDINALITY k(att, n)"
    "   WHERE i.indrelid = c.oid AND i.indisprimary AND k.att = a.attnum), 0)"
    " FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace"
    " JOIN pg_attribute a ON a.attrelid = c.oid JOIN pg_type t ON t.oid = a.atttypid"
    " WHERE c.relname = $1 AND n.nspname = current_schema() AND a.attnum > 0"
    " AND NOT a.attisdropped ORDER BY a.attnum";
static const char MIG_PG_FKS[] =
    "SELECT p.relname, a.attname, pa.attname, cardinality(k.conkey)"
    " FROM pg_constraint k JOIN pg_class c ON c.oid = k.conrelid"
    " JOIN pg_namespace n ON n.oid = c.relnamespace JOIN pg_class p ON p.oid = k.confrelid"
    " JOIN pg_attribute a ON a.attrelid = k.conrelid AND a.attnum = k.conkey[1]"
    " JOIN pg_attribute pa ON pa.attrelid = k.confrelid AND pa.attnum = k.confkey[1]"
    " WHERE k.contype = 'f' AND c.relname = $1 AND n.nspname = current_schema()"
    " ORDER BY k.conname";

static int mig_load_pg(struct mig_db *d)
{
    PGresult *tl = PQexec(d->pg, MIG_PG_TABLES);
    if (PQresultStatus(tl) != PGRES_TUPLES_OK) {
        mig_err("reading the schema of %s: %s", d->label, mig_pg_msg(d->pg, tl));
        PQclear(tl);
        return -1;
    }
    int rc = 0;
    for (int i = 0; i < PQntuples(tl) && rc == 0; i++) {
        const char *name = PQgetvalue(tl, i, 0);
        if (mig_is_skipped_table(name))
            continue;
        struct mig_table *t = mig_add_table(d, name);
        const char *p[1] = { t->name };
        PGresult *r = PQexecParams(d->pg, MIG_PG_COLUMNS, 1, NULL, p, NULL, NULL, 0);
        if (PQresultStatus(r) == PGRES_TUPLES_OK) {
            for (int j = 0; j < PQntuples(r); j++)
                mig_add_col(t, PQgetvalue(r, j, 0), PQgetvalue(r, j, 1),
                            mig_pg_kind(PQgetvalue(r, j, 2)), (int)strtol(PQgetvalue(r, j, 3), NULL, 10));
            PQclear(r);
            r = PQexecParams(d->pg, MIG_PG_FKS, 1, NULL, p, NULL, NULL, 0);
        }
        if (PQresultStatus(r) != PGRES_TUPLES_OK) {
            mig_err("reading the schema of %s: %s", d->label, mig_pg_msg(d->pg, r));
            rc = -1;
        } else {
            for (int j = 0; j < PQntuples(r); j++)
                mig_add_fk(t, PQgetvalue(r, j, 0), PQgetvalue(r, j, 1), PQgetvalue(r, j, 2),
                           (int)strtol(PQgetvalue(r, j, 3), NULL, 10));
        }
        PQclear(r);
    }
    PQclear(tl);
    return rc;
}

static int mig_load(struct mig_db *d)
{
    return d->kind == MIG_SQLITE ? mig_load_sqlite(d) : mig_load_pg(d);
}

static const struct mig_table *mig_find_table(const struct mig_db *d, const char *name)
{
    for (size_t i = 0; i < d->ntables; i++)
        if (strcmp(d->tables[i].name, name) == 0)
            return &d->tables[i];
    return NULL;
}

static const struct mig_col *mig_find_col(const struct mig_table *t, const char *name)
{
    for (size_t j = 0; j < t->ncols; j++)
        if (strcmp(t->cols[j].name, name) == 0)
            return &t->cols[j];
    return NULL;
}

static int mig_schema_version(struct mig_db *d, int64_t *v)
{
    int64_t exists = 0;
    if (mig_query_int(d, "schema version",
                      "SELECT count(*) FROM sqlite_master WHERE type = 'table'"
                      " AND name = 'schema_migrations'",
                      "SELECT (to_regclass('schema_migrations') IS NOT NULL)::int", 0, NULL, 0,
                      &exists) != 0)
        return -1;
    *v = 0;
    if (!exists)
        return 0;
    return mig_query_int(d, "schema version", "SELECT max(version) FROM schema_migrations",
                         "SELECT max(version) FROM schema_migrations", 0, NULL, 0, v);
}

static void mig_pairs_free(struct mig_run *run)
{
    for (size_t i = 0; i < run->npairs; i++) {
        free(run->pairs[i].side[0]);
        free(run->pairs[i].side[1]);
        free(run->pairs[i].key);
    }
    free(run->pairs);
    run->pairs = NULL;
    run->npairs = 0;
}

/* Match the two schemas table by table and column by column, order the
 * tables parents first, and pick each table's ordering key. Returns 0, or -1
 * after printing why (a refusal). */
static int mig_plan(struct mig_run *run)
{
    struct mig_db *s = &run->src, *d = &run->dst;
    for (size_t i = 0; i < d->ntables; i++) {
        if (!mig_find_table(s, d->tables[i].name)) {
            mig_err("table %s exists in the destination but not in the source", d->tables[i].name);
            return -1;
        }
    }
    size_t n = s->ntables;
    bool *placed = xcalloc(n ? n : 1, sizeof *placed);
    run->pairs = xcalloc(n ? n : 1, sizeof *run->pairs);
    int rc = 0;
    /* Kahn's algorithm over the source's foreign keys, ties by name. */
    while (rc == 0 && run->npairs < n) {
        size_t pick = n;
        for (size_t i = 0; i < n && pick == n; i++) {
            if (placed[i])
                continue;
            bool ready = true;
            for (size_t k = 0; k < s->tables[i].nfks && ready; k++) {
                const char *parent = s->tables[i].fks[k].parent;
                if (strcmp(parent, s->tables[i].name) == 0)
                    continue;
                for (size_t j = 0; j < n; j++)
                    if (!placed[j] && strcmp(s->tables[j].name, parent) == 0)
                        ready = false;
            }
            if (ready)
                pick = i;
        }
        if (pick == n) {
            mig_err("the tables' foreign keys form a cycle; cannot order the copy");
            rc = -1;
            break;
        }
        placed[pick] = true;
        const struct mig_table *st = &s->tables[pick];
        const struct mig_table *dt = mig_find_table(d, st->name);
        struct mig_pair *p = &run->pairs[run->npairs++];
        p->name = st->name;
        p->ncols = st->ncols;
        p->side[0] = xcalloc(st->ncols ? st->ncols : 1, sizeof *p->side[0]);
        p->side[1] = xcalloc(st->ncols ? st->ncols : 1, sizeof *p->side[1]);
        p->key = xcalloc(st->ncols + 1, sizeof *p->key);
        if (!dt) {
            mig_err("table %s exists in the source but not in the destination", st->name);
            rc = -1;
            break;
        }
        if (dt->ncols != st->ncols) {
            mig_err("table %s: the source has %zu columns, the destination %zu", st->name,
                    st->ncols, dt->ncols);
            rc = -1;
            break;
        }
        for (size_t j = 0; j < st->ncols && rc == 0; j++) {
            p->side[0][j] = &st->cols[j];
            p->side[1][j] = mig_find_col(dt, st->cols[j].name);
            if (!p->side[1][j]) {
                mig_err("table %s: column %s is missing in the destination", st->name,
                        st->cols[j].name);
                rc = -1;
            }
        }
        /* the ordering key: created_at first for a self-referencing table */
        for (size_t k = 0; k < st->nfks; k++) {
            if (strcmp(st->fks[k].parent, st->name) == 0) {
                if (st->fks[k].ncols != 1) {
                    mig_err("table %s: composite self-referencing foreign key not supported",
                            st->name);
                    rc = -1;
                }
                p->self_from = st->fks[k].from;
                p->self_to = st->fks[k].to;
            }
        }
        if (p->self_from) {
            for (size_t j = 0; j < st->ncols; j++)
                if (strcmp(st->cols[j].name, "created_at") == 0 && !st->cols[j].pk)
                    p->key[p->nkey++] = j;
        }
        size_t prefix = p->nkey;
        for (int pos = 1; rc == 0; pos++) {
            size_t before = p->nkey;
            for (size_t j = 0; j < st->ncols; j++)
                if (st->cols[j].pk == pos)
                    p->key[p->nkey++] = j;
            if (p->nkey == before)
                break;
        }
        if (rc == 0 && p->nkey == prefix) {
            mig_err("table %s has no primary key; cannot copy it resumably", st->name);
            rc = -1;
        }
        for (size_t j = 0; j < p->nkey && rc == 0; j++) {
            const struct mig_col *dc = p->side[1][p->key[j]];
            if (!dc->pk && st->cols[p->key[j]].pk) {
                mig_err("table %s: primary keys differ between source and destination",
                        st->name);
                rc = -1;
            }
        }
    }
    free(placed);
    return rc;
}

/* ---- SQL text ------------------------------------------------------------ */

static void mig_sql_cols(struct buf *b, const struct mig_pair *p, const char *alias)
{
    for (size_t j = 0; j < p->ncols; j++) {
        if (j)
            buf_append_str(b, ", ");
        if (alias)
            buf_printf(b, "%s.", alias);
        mig_quote(b, p->side[0][j]->name);
    }
}

/* One ordering-key column as an expression of side s, with the collation
 * that makes both back ends order text bytewise. */
static void mig_sql_keycol(struct buf *b, const struct mig_pair *p, int s, enum mig_kind kind,
                           size_t k, const char *alias)
{
    const struct mig_col *c = p->side[s][p->key[k]];
    if (alias)
        buf_printf(b, "%s.", alias);
    mig_quote(b, c->name);
    if (kind == MIG_SQLITE)
        buf_append_str(b, " COLLATE BINARY");
    else if (c->kind == CK_TEXT)
        buf_append_str(b, " COLLATE \"C\"");
}

/* The right-hand side for key column k: a parameter, or alias.column. */
static void mig_sql_keyrhs(struct buf *b, const struct mig_pair *p, int s, enum mig_kind kind,
                           size_t k, const char *alias)
{
    if (alias) {
        mig_sql_keycol(b, p, s, kind, k, alias);
        return;
    }
    if (kind == MIG_SQLITE)
        buf_printf(b, "?%zu", k + 1);
    else
        buf_printf(b, "$%zu::%s", k + 1, p->side[s][p->key[k]]->pgtype);
}

/* "key(lhs) > key(rhs)" in lexicographic order, spelled out (no row values,
 * so each column keeps its collation): (a > A) OR (a = A AND b > B) ... */
static void mig_sql_key_gt(struct buf *b, const struct mig_pair *p, int s, enum mig_kind kind,
                           const char *lhs, const char *rhs)
{
    buf_append_str(b, "(");
    for (size_t k = 0; k < p->nkey; k++) {
        if (k)
            buf_append_str(b, " OR ");
        buf_append_str(b, "(");
        for (size_t e = 0; e < k; e++) {
            mig_sql_keycol(b, p, s, kind, e, lhs);
            buf_append_str(b, " = ");
            mig_sql_keyrhs(b, p, s, kind, e, rhs);
            buf_append_str(b, " AND ");
        }
        mig_sql_keycol(b, p, s, kind, k, lhs);
        buf_append_str(b, " > ");
        mig_sql_keyrhs(b, p, s, kind, k, rhs);
        buf_append_str(b, ")");
    }
    buf_append_str(b, ")");
}

static void mig_sql_select(struct buf *b, const struct mig_pair *p, int s, enum mig_kind kind,
                           bool after)
{
    buf_append_str(b, "SELECT ");
    mig_sql_cols(b, p, NULL);
    buf_append_str(b, " FROM ");
    mig_quote(b, p->name);
    if (after) {
        buf_append_str(b, " WHERE ");
        mig_sql_key_gt(b, p, s, kind, NULL, NULL);
    }
    buf_append_str(b, " ORDER BY ");
    for (size_t k = 0; k < p->nkey; k++) {
        if (k)
            buf_append_str(b, ", ");
        mig_sql_keycol(b, p, s, kind, k, NULL);
    }
}

/* ---- batches ------------------------------------------------------------- */

static void mig_batch_init(struct mig_batch *bt, size_t ncols)
{
    memset(bt, 0, sizeof *bt);
    bt->ncols = ncols;
    buf_init(&bt->bytes, SIZE_MAX / 4);
}

static void mig_batch_reset(struct mig_batch *bt)
{
    bt->nrows = 0;
    buf_reset(&bt->bytes);
}

static void mig_batch_cleanup(struct mig_batch *bt)
{
    free(bt->v);
    buf_cleanup(&bt->bytes);
    memset(bt, 0, sizeof *bt);
}

/* Room for one more row; returns its values (zeroed). */
static struct mig_val *mig_batch_row(struct mig_batch *bt)
{
    if (bt->nrows == bt->cap) {
        bt->cap = bt->cap ? bt->cap * 2 : 64;
        bt->v = xrealloc(bt->v, bt->cap * (bt->ncols ? bt->ncols : 1) * sizeof *bt->v);
    }
    struct mig_val *row = &bt->v[bt->nrows * bt->ncols];
    memset(row, 0, bt->ncols * sizeof *row);
    return row;
}

static int mig_batch_bytes(struct mig_batch *bt, struct mig_val *v, enum mig_vt t,
                           const void *p, size_t n)
{
    if (n > MIG_VALUE_MAX) {
        mig_err("a value of %zu bytes is larger than the limit", n);
        return -1;
    }
    v->t = t;
    v->off = bt->bytes.len;
    v->len = n;
    if ((n && buf_append(&bt->bytes, p, n) != 0) || buf_append(&bt->bytes, "", 1) != 0) {
        mig_err("out of memory for a batch");
        return -1;
    }
    return 0;
}

static const char *mig_val_ptr(const struct mig_batch *bt, const struct mig_val *v)
{
    return buf_str(&bt->bytes) + v->off;
}

/* ---- reading (cursors) --------------------------------------------------- */

static int mig_bind_sqlite(sqlite3_stmt *st, int i, const struct mig_batch *bt,
                           const struct mig_val *v)
{
    switch (v->t) {
    case VT_NULL: return sqlite3_bind_null(st, i);
    case VT_INT: return sqlite3_bind_int64(st, i, v->i);
    case VT_REAL: return sqlite3_bind_double(st, i, v->r);
    case VT_TEXT:
        return sqlite3_bind_text64(st, i, mig_val_ptr(bt, v), v->len, SQLITE_STATIC, SQLITE_UTF8);
    case VT_BLOB: return sqlite3_bind_blob64(st, i, mig_val_ptr(bt, v), v->len, SQLITE_STATIC);
    }
    return SQLITE_MISUSE;
}

/* Text for a PostgreSQL parameter of value v (ints and reals formatted into
 * num, 32 bytes); *binary for blobs. NULL for SQL NULL. */
static const char *mig_pg_param(const struct mig_batch *bt, const struct mig_val *v, char *num,
                                int *len, int *binary)
{
    *len = 0;
    *binary = 0;
    switch (v->t) {
    case VT_NULL: return NULL;
    case VT_INT: snprintf(num, 32, "%" PRId64, v->i); return num;
    case VT_REAL: snprintf(num, 32, "%.17g", v->r); return num;
    case VT_TEXT: *len = (int)v->len; return mig_val_ptr(bt, v);
    case VT_BLOB: *len = (int)v->len; *binary = 1; return mig_val_ptr(bt, v);
    }
    return NULL;
}

/* Open a cursor over table p on side s, after the key in `after` (a one-row
 * batch of nkey values) or from the start. */
static int mig_cursor_open(struct mig_cursor *c, struct mig_db *d, const struct mig_pair *p, int s,
                           const struct mig_batch *after)
{
    memset(c, 0, sizeof *c);
    c->db = d;
    c->cols = p->side[s];
    c->ncols = p->ncols;
    struct buf sql;
    buf_init(&sql, SIZE_MAX / 4);
    int rc = 0;
    if (d->kind == MIG_SQLITE) {
        mig_sql_select(&sql, p, s, d->kind, after != NULL);
        int e = sqlite3_prepare_v2(d->db, buf_str(&sql), -1, &c->st, NULL);
        for (size_t k = 0; after && e == SQLITE_OK && k < p->nkey; k++)
            e = mig_bind_sqlite(c->st, (int)k + 1, after, &after->v[k]);
        if (e != SQLITE_OK) {
            mig_err("reading %s (%s): %s", p->name, d->label, sqlite3_errmsg(d->db));
            rc = -1;
        }
    } else {
        buf_append_str(&sql, "DECLARE mig_cur NO SCROLL CURSOR FOR ");
        mig_sql_select(&sql, p, s, d->kind, after != NULL);
        const char *vals[64];
        int lens[64], fmts[64];
        char nums[64][32];
        size_t n = after ? p->nkey : 0;
        if (n > 64) {
            mig_err("table %s: primary key too wide", p->name);
            rc = -1;
        }
        for (size_t k = 0; rc == 0 && k < n; k++)
            vals[k] = mig_pg_param(after, &after->v[k], nums[k], &lens[k], &fmts[k]);
        if (rc == 0) {
            PGresult *r = PQexecParams(d->pg, buf_str(&sql), (int)n, NULL, vals, lens, fmts, 0);
            if (PQresultStatus(r) != PGRES_COMMAND_OK) {
                mig_err("reading %s (%s): %s", p->name, d->label, mig_pg_msg(d->pg, r));
                rc = -1;
            } else {
                c->declared = true;
            }
            PQclear(r);
        }
    }
    buf_cleanup(&sql);
    return rc;
}

static void mig_cursor_close(struct mig_cursor *c)
{
    if (c->st)
        sqlite3_finalize(c->st);
    PQclear(c->res);
    if (c->declared)
        PQclear(PQexec(c->db->pg, "CLOSE mig_cur"));
    memset(c, 0, sizeof *c);
}

/* Append the next row to bt. Returns 1 (a row), 0 (end) or -1 (error). */
static int mig_cursor_next(struct mig_cursor *c, struct mig_batch *bt, const char *table)
{
    if (c->eof)
        return 0;
    if (c->db->kind == MIG_SQLITE) {
        int e = sqlite3_step(c->st);
        if (e == SQLITE_DONE) {
            c->eof = true;
            return 0;
        }
        if (e != SQLITE_ROW) {
            mig_err("reading %s (%s): %s", table, c->db->label, sqlite3_errmsg(c->db->db));
            return -1;
        }
        struct mig_val *row = mig_batch_row(bt);
        for (size_t j = 0; j < c->ncols; j++) {
            struct mig_val *v = &row[j];
            switch (sqlite3_column_type(c->st, (int)j)) {
            case SQLITE_INTEGER:
                v->t = VT_INT;
                v->i = sqlite3_column_int64(c->st, (int)j);
                break;
            case SQLITE_FLOAT:
                v->t = VT_REAL;
                v->r = sqlite3_column_double(c->st, (int)j);
                break;
            case SQLITE_TEXT: {
                const unsigned char *t = sqlite3_column_text(c->st, (int)j);
                if (mig_batch_bytes(bt, v, VT_TEXT, t, (size_t)sqlite3_column_bytes(c->st, (int)j)))
                    return -1;
                break;
            }
            case SQLITE_BLOB: {
                const void *t = sqlite3_column_blob(c->st, (int)j);
                if (mig_batch_bytes(bt, v, VT_BLOB, t, (size_t)sqlite3_column_bytes(c->st, (int)j)))
                    return -1;
                break;
            }
            default: v->t = VT_NULL; break;
            }
        }
        bt->nrows++;
        return 1;
    }
    if (!c->res || c->row >= c->nrows) {
        if (c->res && c->nrows < MIG_FETCH) {
            c->eof = true;
            return 0;
        }
        PQclear(c->res);
        c->res = PQexec(c->db->pg, MIG_FETCH_SQL);
        if (PQresultStatus(c->res) != PGRES_TUPLES_OK) {
            mig_err("reading %s (%s): %s", table, c->db->label, mig_pg_msg(c->db->pg, c->res));
            return -1;
        }
        c->row = 0;
        c->nrows = PQntuples(c->res);
        if (c->nrows == 0) {
            c->eof = true;
            return 0;
        }
    }
    struct mig_val *row = mig_batch_row(bt);
    for (size_t j = 0; j < c->ncols; j++) {
        struct mig_val *v = &row[j];
        if (PQgetisnull(c->res, c->row, (int)j)) {
            v->t = VT_NULL;
            continue;
        }
        const char *s = PQgetvalue(c->res, c->row, (int)j);
        switch (c->cols[j]->kind) {
        case CK_INT:
            v->t = VT_INT;
            v->i = strtoll(s, NULL, 10);
            break;
        case CK_BOOL:
            v->t = VT_INT;
            v->i = s[0] == 't';
            break;
        case CK_REAL:
            v->t = VT_REAL;
            v->r = strtod(s, NULL);
            break;
        case CK_BLOB: {
            size_t n = 0;
            unsigned char *raw = PQunescapeBytea((const unsigned char *)s, &n);
            if (!raw) {
                mig_err("reading %s: cannot decode a bytea value", table);
                return -1;
            }
            int e = mig_batch_bytes(bt, v, VT_BLOB, raw, n);
            PQfreemem(raw);
            if (e)
                return -1;
            break;
        }
        case CK_TEXT:
            if (mig_batch_bytes(bt, v, VT_TEXT, s, (size_t)PQgetlength(c->res, c->row, (int)j)))
                return -1;
            break;
        }
    }
    c->row++;
    bt->nrows++;
    return 1;
}

/* ---- checksums ----------------------------------------------------------- */

static void mig_hash_u64(EVP_MD_CTX *h, uint64_t x)
{
    unsigned char b[8];
    for (int i = 0; i < 8; i++)
        b[i] = (unsigned char)(x >> (56 - 8 * i));
    EVP_DigestUpdate(h, b, 8);
}

/* The canonical encoding of one row: per value a tag (N I R T B) and, for
 * I and R, 8 big-endian bytes (two's complement / IEEE 754 bits), for T and
 * B an 8-byte length and the bytes. */
static void mig_hash_row(EVP_MD_CTX *h, const struct mig_batch *bt, size_t r)
{
    const struct mig_val *row = &bt->v[r * bt->ncols];
    for (size_t j = 0; j < bt->ncols; j++) {
        const struct mig_val *v = &row[j];
        static const char tags[] = { 'N', 'I', 'R', 'T', 'B' };
        EVP_DigestUpdate(h, &tags[v->t], 1);
        switch (v->t) {
        case VT_NULL: break;
        case VT_INT: mig_hash_u64(h, (uint64_t)v->i); break;
        case VT_REAL: {
            uint64_t bits;
            memcpy(&bits, &v->r, sizeof bits);
            mig_hash_u64(h, bits);
            break;
        }
        case VT_TEXT:
        case VT_BLOB:
            mig_hash_u64(h, v->len);
            EVP_DigestUpdate(h, mig_val_ptr(bt, v), v->len);
            break;
        }
    }
}

/* Count and hash table p on side s (inside the caller's read transaction). */
static int mig_checksum(struct mig_db *d, const struct mig_pair *p, int s, int64_t *rows,
                        unsigned char md[32])
{
    struct mig_cursor c;
    struct mig_batch bt;
    EVP_MD_CTX *h = EVP_MD_CTX_new();
    unsigned int mdlen = 0;
    int rc;
    *rows = 0;
    if (!h || !EVP_DigestInit_ex(h, EVP_sha256(), NULL)) {
        EVP_MD_CTX_free(h);
        mig_err("sha256 unavailable");
        return -1;
    }
    mig_batch_init(&bt, p->ncols);
    rc = mig_cursor_open(&c, d, p, s, NULL);
    while (rc == 0) {
        mig_batch_reset(&bt);
        int got = mig_cursor_next(&c, &bt, p->name);
        if (got <= 0) {
            rc = got;
            break;
        }
        mig_hash_row(h, &bt, 0);
        (*rows)++;
    }
    mig_cursor_close(&c);
    mig_batch_cleanup(&bt);
    if (rc == 0 && !EVP_DigestFinal_ex(h, md, &mdlen))
        rc = -1;
    EVP_MD_CTX_free(h);
    return rc;
}

static void mig_hex(const unsigned char *md, size_t n, char *out)
{
    static const char hex[] = "0123456789abcdef";
    for (size_t i = 0; i < n; i++) {
        out[2 * i] = hex[md[i] >> 4];
        out[2 * i + 1] = hex[md[i] & 15];
    }
    out[2 * n] = '\0';
}

static int mig_read_begin(struct mig_db *d)
{
    return mig_simple(d, "begin",
                      d->kind == MIG_SQLITE ? "BEGIN"
                                            : "BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY");
}

/* Verify every table; prints one line per table. Returns MIGRATE_EXIT_OK,
 * MIGRATE_EXIT_FAILED on a mismatch or error. */
static int mig_verify(struct mig_run *run, bool src_in_tx)
{
    int status = MIGRATE_EXIT_OK;
    if ((!src_in_tx && mig_read_begin(&run->src) != 0) || mig_read_begin(&run->dst) != 0)
        return MIGRATE_EXIT_FAILED;
    for (size_t i = 0; i < run->npairs; i++) {
        const struct mig_pair *p = &run->pairs[i];
        int64_t n[2];
        unsigned char md[2][32];
        char hex[2][65];
        if (mig_checksum(&run->src, p, 0, &n[0], md[0]) != 0 ||
            mig_checksum(&run->dst, p, 1, &n[1], md[1]) != 0) {
            status = MIGRATE_EXIT_FAILED;
            break;
        }
        mig_hex(md[0], 32, hex[0]);
        mig_hex(md[1], 32, hex[1]);
        if (n[0] == n[1] && memcmp(md[0], md[1], 32) == 0) {
            printf("%s: %" PRId64 " rows, sha256 %.16s, ok\n", p->name, n[0], hex[0]);
        } else {
            printf("%s: MISMATCH: source %" PRId64 " rows sha256 %.16s, destination %" PRId64
                   " rows sha256 %.16s\n",
                   p->name, n[0], hex[0], n[1], hex[1]);
            status = MIGRATE_EXIT_FAILED;
        }
        fflush(stdout);
    }
    mig_simple(&run->dst, "commit", "COMMIT");
    if (!src_in_tx)
        mig_simple(&run->src, "commit", "COMMIT");
    return status;
}

/* ---- progress ------------------------------------------------------------ */

static const char MIG_PROGRESS_CREATE[] =
    "CREATE TABLE IF NOT EXISTS migrate_progress ("
    " table_name TEXT PRIMARY KEY,"
    " last_key TEXT,"           /* JSON array: the ordering key of the last row copied */
    " rows_copied BIGINT NOT NULL DEFAULT 0,"
    " done INTEGER NOT NULL DEFAULT 0,"
    " updated_at BIGINT NOT NULL)";
static const char MIG_PROGRESS_UPSERT_SQLITE[] =
    "INSERT INTO migrate_progress (table_name, last_key, rows_copied, done, updated_at)"
    " VALUES (?1, ?2, ?3, ?4, ?5) ON CONFLICT (table_name) DO UPDATE SET"
    " last_key = excluded.last_key, rows_copied = excluded.rows_copied, done = excluded.done,"
    " updated_at = excluded.updated_at";
static const char MIG_PROGRESS_UPSERT_PG[] =
    "INSERT INTO migrate_progress (table_name, last_key, rows_copied, done, updated_at)"
    " VALUES ($1::text, $2::text, $3::bigint, $4::integer, $5::bigint)"
    " ON CONFLICT (table_name) DO UPDATE SET"
    " last_key = excluded.last_key, rows_copied = excluded.rows_copied, done = excluded.done,"
    " updated_at = excluded.updated_at";

static int mig_progress_put(struct mig_db *d, const char *table, const char *last_key,
                            int64_t rows, bool done)
{
    char nrows[24], ndone[4], now[24];
    snprintf(nrows, sizeof nrows, "%" PRId64, rows);
    snprintf(ndone, sizeof ndone, "%d", done ? 1 : 0);
    snprintf(now, sizeof now, "%" PRId64, now_ms());
    const char *params[] = { table, last_key, nrows, ndone, now };
    return mig_exec(d, "recording progress", MIG_PROGRESS_UPSERT_SQLITE, MIG_PROGRESS_UPSERT_PG, 5,
                    params);
}

struct mig_progress {
    bool found, done;
    char *last_key; /* JSON text, or NULL */
    int64_t rows;
};

static int mig_progress_get(struct mig_db *d, const char *table, struct mig_progress *out)
{
    static const char sql_sqlite[] =
        "SELECT last_key, rows_copied, done FROM migrate_progress WHERE table_name = ?1";
    static const char sql_pg[] =
        "SELECT last_key, rows_copied, done FROM migrate_progress WHERE table_name = $1::text";
    memset(out, 0, sizeof *out);
    if (d->kind == MIG_SQLITE) {
        sqlite3_stmt *st = NULL;
        int rc = sqlite3_prepare_v2(d->db, sql_sqlite, -1, &st, NULL);
        if (rc == SQLITE_OK)
            rc = sqlite3_bind_text(st, 1, table, -1, SQLITE_STATIC);
        if (rc == SQLITE_OK)
            rc = sqlite3_step(st);
        if (rc == SQLITE_ROW) {
            out->found = true;
            const unsigned char *k = sqlite3_column_text(st, 0);
            out->last_key = k ? xstrdup((const char *)k) : NULL;
            out->rows = sqlite3_column_int64(st, 1);
            out->done = sqlite3_column_int(st, 2) != 0;
            rc = SQLITE_DONE;
        }
        if (rc != SQLITE_DONE)
            mig_err("reading migrate_progress (%s): %s", d->label, sqlite3_errmsg(d->db));
        sqlite3_finalize(st);
        return rc == SQLITE_DONE ? 0 : -1;
    }
    const char *params[] = { table };
    PGresult *r = PQexecParams(d->pg, sql_pg, 1, NULL, params, NULL, NULL, 0);
    if (PQresultStatus(r) != PGRES_TUPLES_OK) {
        mig_err("reading migrate_progress (%s): %s", d->label, mig_pg_msg(d->pg, r));
        PQclear(r);
        return -1;
    }
    if (PQntuples(r) > 0) {
        out->found = true;
        out->last_key = PQgetisnull(r, 0, 0) ? NULL : xstrdup(PQgetvalue(r, 0, 0));
        out->rows = strtoll(PQgetvalue(r, 0, 1), NULL, 10);
        out->done = strtol(PQgetvalue(r, 0, 2), NULL, 10) != 0;
    }
    PQclear(r);
    return 0;
}

static int mig_table_exists(struct mig_db *d, const char *name, bool *exists)
{
    int64_t n = 0;
    const char *params[] = { name };
    int rc = mig_query_int(d, "catalog",
                           "SELECT count(*) FROM sqlite_master WHERE type = 'table' AND name = ?1",
                           "SELECT (to_regclass($1::text) IS NOT NULL)::int", 1, params, 0, &n);
    *exists = n != 0;
    return rc;
}

/* First run: the destination must hold no rows at all; then create
 * migrate_progress naming the source. Resume: the source must be the same.
 * Returns 0, or -1 after printing why (a refusal or an error: *refused). */
static int mig_progress_start(struct mig_run *run, bool *refused)
{
    struct mig_db *d = &run->dst;
    bool exists = false;
    *refused = false;
    if (mig_table_exists(d, "migrate_progress", &exists) != 0)
        return -1;
    if (exists) {
        struct mig_progress pr;
        if (mig_progress_get(d, MIG_SOURCE_ROW, &pr) != 0)
            return -1;
        bool same = pr.found && pr.last_key && strcmp(pr.last_key, run->src.label) == 0;
        if (!same) {
            mig_err("the destination holds an interrupted migration from another source (%s); "
                    "refusing to mix them",
                    pr.last_key ? pr.last_key : "unknown");
            *refused = true;
        } else {
            fprintf(stderr, "migrate-store: resuming an interrupted migration\n");
        }
        free(pr.last_key);
        return *refused ? -1 : 0;
    }
    for (size_t i = 0; i < run->npairs; i++) {
        struct buf sql;
        buf_init(&sql, 4096);
        buf_append_str(&sql, "SELECT count(*) FROM (SELECT 1 FROM ");
        mig_quote(&sql, run->pairs[i].name);
        buf_append_str(&sql, " LIMIT 1) x");
        int64_t n = 0;
        int rc = mig_query_int(d, "checking the destination", buf_str(&sql), buf_str(&sql), 0,
                               NULL, 0, &n);
        buf_cleanup(&sql);
        if (rc != 0)
            return -1;
        if (n) {
            mig_err("the destination already holds data (table %s is not empty) that did not "
                    "come from this migration; refusing to copy into it",
                    run->pairs[i].name);
            *refused = true;
            return -1;
        }
    }
    if (mig_simple(d, "begin", "BEGIN") != 0)
        return -1;
    if (mig_simple(d, "creating migrate_progress", MIG_PROGRESS_CREATE) != 0 ||
        mig_progress_put(d, MIG_SOURCE_ROW, run->src.label, 0, false) != 0 ||
        mig_simple(d, "commit", "COMMIT") != 0) {
        mig_simple(d, "rollback", "ROLLBACK");
        return -1;
    }
    return 0;
}

/* The ordering key of row r as a JSON array (malloc'd). */
static char *mig_key_json(const struct mig_pair *p, const struct mig_batch *bt, size_t r,
                          const char *table)
{
    json_t *a = json_array();
    const struct mig_val *row = &bt->v[r * bt->ncols];
    for (size_t k = 0; k < p->nkey; k++) {
        const struct mig_val *v = &row[p->key[k]];
        json_t *x = NULL;
        if (v->t == VT_INT)
            x = json_integer((json_int_t)v->i);
        else if (v->t == VT_REAL)
            x = json_real(v->r);
        else if (v->t == VT_TEXT)
            x = json_stringn(mig_val_ptr(bt, v), v->len);
        if (!x) {
            mig_err("table %s: a key value is NULL, a blob or not UTF-8; cannot record progress",
                    table);
            json_decref(a);
            return NULL;
        }
        json_array_append_new(a, x);
    }
    char *s = json_dumps(a, JSON_COMPACT | JSON_ENCODE_ANY);
    json_decref(a);
    return s;
}

/* Parse a recorded key back into a one-row batch of nkey values. */
static int mig_key_parse(const struct mig_pair *p, const char *text, struct mig_batch *out)
{
    json_error_t je;
    json_t *a = json_loads(text, 0, &je);
    int rc = 0;
    mig_batch_init(out, p->nkey);
    if (!json_is_array(a) || json_array_size(a) != p->nkey) {
        rc = -1;
    } else {
        struct mig_val *row = mig_batch_row(out);
        for (size_t k = 0; k < p->nkey && rc == 0; k++) {
            json_t *x = json_array_get(a, k);
            if (json_is_integer(x)) {
                row[k].t = VT_INT;
                row[k].i = (int64_t)json_integer_value(x);
            } else if (json_is_real(x)) {
                row[k].t = VT_REAL;
                row[k].r = json_real_value(x);
            } else if (json_is_string(x)) {
                rc = mig_batch_bytes(out, &row[k], VT_TEXT, json_string_value(x),
                                     json_string_length(x));
            } else {
                rc = -1;
            }
        }
        out->nrows = 1;
    }
    json_decref(a);
    if (rc != 0)
        mig_err("table %s: unreadable progress record", p->name);
    return rc;
}

/* ---- writing ------------------------------------------------------------- */

/* Insert rows [0, nrows) of bt into table p of the destination, inside the
 * caller's transaction. */
static int mig_write_sqlite(struct mig_db *d, const struct mig_pair *p, sqlite3_stmt *ins,
                            const struct mig_batch *bt)
{
    for (size_t r = 0; r < bt->nrows; r++) {
        const struct mig_val *row = &bt->v[r * bt->ncols];
        int e = SQLITE_OK;
        for (size_t j = 0; j < p->ncols && e == SQLITE_OK; j++)
            e = mig_bind_sqlite(ins, (int)j + 1, bt, &row[j]);
        if (e == SQLITE_OK)
            e = sqlite3_step(ins);
        sqlite3_reset(ins);
        if (e != SQLITE_DONE) {
            mig_err("writing %s (%s): %s", p->name, d->label, sqlite3_errmsg(d->db));
            return -1;
        }
    }
    return 0;
}

struct mig_pg_writer {
    size_t chunk_rows; /* rows per INSERT statement (parameter limit) */
    char *sql_full;    /* the INSERT for chunk_rows rows */
    const char **vals;
    int *lens, *fmts;
    char (*nums)[32];
};

static char *mig_pg_insert_sql(const struct mig_pair *p, size_t rows)
{
    struct buf b;
    buf_init(&b, SIZE_MAX / 4);
    buf_append_str(&b, "INSERT INTO ");
    mig_quote(&b, p->name);
    buf_append_str(&b, " (");
    mig_sql_cols(&b, p, NULL);
    buf_append_str(&b, ") VALUES ");
    size_t k = 1;
    for (size_t r = 0; r < rows; r++) {
        buf_append_str(&b, r ? ", (" : "(");
        for (size_t j = 0; j < p->ncols; j++)
            buf_printf(&b, "%s$%zu::%s", j ? ", " : "", k++, p->side[1][j]->pgtype);
        buf_append_str(&b, ")");
    }
    return buf_take(&b, NULL);
}

static void mig_pg_writer_init(struct mig_pg_writer *w, const struct mig_pair *p, size_t batch)
{
    memset(w, 0, sizeof *w);
    size_t ncols = p->ncols ? p->ncols : 1;
    w->chunk_rows = MIG_PG_MAX_PARAMS / ncols;
    if (w->chunk_rows > batch)
        w->chunk_rows = batch;
    if (w->chunk_rows == 0)
        w->chunk_rows = 1;
    size_t n = w->chunk_rows * ncols;
    w->sql_full = mig_pg_insert_sql(p, w->chunk_rows);
    w->vals = xcalloc(n, sizeof *w->vals);
    w->lens = xcalloc(n, sizeof *w->lens);
    w->fmts = xcalloc(n, sizeof *w->fmts);
    w->nums = xcalloc(n, sizeof *w->nums);
}

static void mig_pg_writer_cleanup(struct mig_pg_writer *w)
{
    free(w->sql_full);
    free(w->vals);
    free(w->lens);
    free(w->fmts);
    free(w->nums);
    memset(w, 0, sizeof *w);
}

static int mig_write_pg(struct mig_db *d, const struct mig_pair *p, struct mig_pg_writer *w,
                        const struct mig_batch *bt)
{
    for (size_t first = 0; first < bt->nrows; first += w->chunk_rows) {
        size_t rows = bt->nrows - first;
        if (rows > w->chunk_rows)
            rows = w->chunk_rows;
        size_t k = 0;
        for (size_t r = first; r < first + rows; r++) {
            const struct mig_val *row = &bt->v[r * bt->ncols];
            for (size_t j = 0; j < p->ncols; j++, k++) {
                const struct mig_val *v = &row[j];
                enum mig_ck dk = p->side[1][j]->kind;
                if (v->t == VT_TEXT && memchr(mig_val_ptr(bt, v), '\0', v->len) && dk != CK_BLOB) {
                    mig_err("table %s, column %s: a text value holds a NUL byte, which "
                            "PostgreSQL text cannot store",
                            p->name, p->side[1][j]->name);
                    return -1;
                }
                if (v->t == VT_BLOB && dk != CK_BLOB && dk != CK_TEXT) {
                    mig_err("table %s, column %s: a blob value for a %s column", p->name,
                            p->side[1][j]->name, p->side[1][j]->pgtype);
                    return -1;
                }
                w->vals[k] = mig_pg_param(bt, v, w->nums[k], &w->lens[k], &w->fmts[k]);
                if (dk == CK_BLOB && v->t == VT_TEXT)
                    w->fmts[k] = 1; /* raw bytes, not bytea escape syntax */
            }
        }
        char *sql = rows == w->chunk_rows ? w->sql_full : mig_pg_insert_sql(p, rows);
        PGresult *r = PQexecParams(d->pg, sql, (int)k, NULL, w->vals, w->lens, w->fmts, 0);
        if (sql != w->sql_full)
            free(sql);
        if (PQresultStatus(r) != PGRES_COMMAND_OK) {
            mig_err("writing %s (%s): %s", p->name, d->label, mig_pg_msg(d->pg, r));
            PQclear(r);
            return -1;
        }
        PQclear(r);
    }
    return 0;
}

/* ---- copying ------------------------------------------------------------- */

/* A self-referencing table is copied in key order (created_at, id): check on
 * the source that every parent sorts before its children, so that each
 * batch only references rows already copied. */
static int mig_check_parent_first(struct mig_run *run, const struct mig_pair *p)
{
    if (!p->self_from)
        return 0;
    struct buf sql;
    buf_init(&sql, SIZE_MAX / 4);
    buf_append_str(&sql, "SELECT count(*) FROM ");
    mig_quote(&sql, p->name);
    buf_append_str(&sql, " c JOIN ");
    mig_quote(&sql, p->name);
    buf_append_str(&sql, " p ON p.");
    if (p->self_to) {
        mig_quote(&sql, p->self_to);
    } else {
        /* the parent's primary key (single column) */
        for (size_t k = 0; k < p->nkey; k++)
            if (p->side[0][p->key[k]]->pk == 1)
                mig_quote(&sql, p->side[0][p->key[k]]->name);
    }
    buf_append_str(&sql, " = c.");
    mig_quote(&sql, p->self_from);
    buf_append_str(&sql, " WHERE NOT ");
    mig_sql_key_gt(&sql, p, 0, run->src.kind, "c", "p");
    int64_t bad = 0;
    int rc = mig_query_int(&run->src, "checking parent order", buf_str(&sql), buf_str(&sql), 0,
                           NULL, 0, &bad);
    buf_cleanup(&sql);
    if (rc != 0)
        return -1;
    if (bad) {
        mig_err("table %s: %" PRId64 " rows do not sort after the row they reference (by "
                "created_at, then primary key); cannot copy parents first",
                p->name, bad);
        return -1;
    }
    return 0;
}

static int mig_copy_table(struct mig_run *run, const struct mig_pair *p)
{
    struct mig_db *s = &run->src, *d = &run->dst;
    struct mig_progress pr;
    if (mig_progress_get(d, p->name, &pr) != 0)
        return MIGRATE_EXIT_FAILED;
    if (pr.done) {
        fprintf(stderr, "migrate-store: %s: already copied (%" PRId64 " rows)\n", p->name,
                pr.rows);
        free(pr.last_key);
        return MIGRATE_EXIT_OK;
    }
    struct mig_batch after, bt;
    bool have_after = pr.last_key != NULL;
    int status = MIGRATE_EXIT_OK;
    memset(&after, 0, sizeof after);
    if (have_after && mig_key_parse(p, pr.last_key, &after) != 0) {
        mig_batch_cleanup(&after);
        free(pr.last_key);
        return MIGRATE_EXIT_FAILED;
    }
    free(pr.last_key);
    int64_t rows = pr.rows;
    if (have_after)
        fprintf(stderr, "migrate-store: %s: resuming after %" PRId64 " rows\n", p->name, rows);

    struct mig_cursor c;
    sqlite3_stmt *ins = NULL;
    struct mig_pg_writer w;
    memset(&w, 0, sizeof w);
    mig_batch_init(&bt, p->ncols);
    if (mig_cursor_open(&c, s, p, 0, have_after ? &after : NULL) != 0) {
        status = MIGRATE_EXIT_FAILED;
        goto out;
    }
    if (d->kind == MIG_SQLITE) {
        struct buf sql;
        buf_init(&sql, SIZE_MAX / 4);
        buf_append_str(&sql, "INSERT INTO ");
        mig_quote(&sql, p->name);
        buf_append_str(&sql, " (");
        mig_sql_cols(&sql, p, NULL);
        buf_append_str(&sql, ") VALUES (");
        for (size_t j = 0; j < p->ncols; j++)
            buf_printf(&sql, "%s?%zu", j ? ", " : "", j + 1);
        buf_append_str(&sql, ")");
        if (sqlite3_prepare_v2(d->db, buf_str(&sql), -1, &ins, NULL) != SQLITE_OK) {
            mig_err("writing %s (%s): %s", p->name, d->label, sqlite3_errmsg(d->db));
            status = MIGRATE_EXIT_FAILED;
        }
        buf_cleanup(&sql);
    } else {
        mig_pg_writer_init(&w, p, run->batch_rows);
    }
    while (status == MIGRATE_EXIT_OK) {
        mig_batch_reset(&bt);
        int got = 1;
        while (bt.nrows < run->batch_rows && bt.bytes.len < MIG_BATCH_BYTES &&
               (got = mig_cursor_next(&c, &bt, p->name)) == 1)
            ;
        if (got < 0) {
            status = MIGRATE_EXIT_FAILED;
            break;
        }
        bool done = got == 0;
        char *key = NULL;
        if (bt.nrows) {
            key = mig_key_json(p, &bt, bt.nrows - 1, p->name);
            if (!key) {
                status = MIGRATE_EXIT_FAILED;
                break;
            }
        }
        /* one transaction: the rows and the progress record */
        int e = mig_simple(d, "begin", d->kind == MIG_SQLITE ? "BEGIN IMMEDIATE" : "BEGIN");
        if (e == 0 && bt.nrows)
            e = d->kind == MIG_SQLITE ? mig_write_sqlite(d, p, ins, &bt) : mig_write_pg(d, p, &w, &bt);
        if (e == 0)
            e = mig_progress_put(d, p->name, key ? key : NULL, rows + (int64_t)bt.nrows, done);
        if (e == 0)
            e = mig_simple(d, "commit", "COMMIT");
        if (e != 0)
            mig_simple(d, "rollback", "ROLLBACK");
        free(key);
        if (e != 0) {
            status = MIGRATE_EXIT_FAILED;
            break;
        }
        rows += (int64_t)bt.nrows;
        run->rows_copied += (int64_t)bt.nrows;
        if (bt.nrows) {
            run->batches++;
            if (run->stop_after > 0 && run->batches >= run->stop_after) {
                fprintf(stderr,
                        "migrate-store: stopping after %ld batches "
                        "(CHATOPENAII_MIGRATE_STOP_AFTER, a test hook)\n",
                        run->batches);
                status = MIGRATE_EXIT_INTERRUPTED;
                break;
            }
        }
        if (done)
            break;
    }
    if (status == MIGRATE_EXIT_OK)
        fprintf(stderr, "migrate-store: %s: %" PRId64 " rows copied\n", p->name, rows);
out:
    mig_cursor_close(&c);
    if (ins)
        sqlite3_finalize(ins);
    mig_pg_writer_cleanup(&w);
    mig_batch_cleanup(&bt);
    mig_batch_cleanup(&after);
    return status;
}

/* ---- the command --------------------------------------------------------- */

static void mig_usage(FILE *f)
{
    fputs("usage: chatopenaii migrate-store --from SRC --to DST [--verify]\n"
          "  SRC, DST   a SQLite file (PATH or sqlite:PATH) or a postgres:// URL\n"
          "  --verify   only compare row counts and checksums of every table\n"
          "  CHATOPENAII_MIGRATE_BATCH=N       rows per batch (default 1000)\n"
          "  CHATOPENAII_MIGRATE_STOP_AFTER=N  test hook: exit 3 after N batches\n"
          "Stop every server using SRC or DST first. Exit status: 0 copied and verified,\n"
          "1 mismatch or error, 2 refused (nothing copied), 3 stopped by the test hook.\n",
          f);
}

static long mig_env_long(const char *name, long dflt, long min, long max, bool *bad)
{
    const char *v = getenv(name);
    if (!v || !*v)
        return dflt;
    char *end = NULL;
    errno = 0;
    long x = strtol(v, &end, 10);
    if (errno || *end || x < min || x > max) {
        mig_err("%s: expected an integer from %ld to %ld", name, min, max);
        *bad = true;
        return dflt;
    }
    return x;
}

static bool mig_same_location(const struct mig_db *a, const struct mig_db *b)
{
    return a->kind == b->kind && strcmp(a->label, b->label) == 0;
}

int migrate_store_main(int argc, char **argv)
{
    const char *from = NULL, *to = NULL;
    bool verify_only = false, bad = false;
    for (int i = 0; i < argc; i++) {
        if (strcmp(argv[i], "--from") == 0 && i + 1 < argc)
            from = argv[++i];
        else if (strcmp(argv[i], "--to") == 0 && i + 1 < argc)
            to = argv[++i];
        else if (strcmp(argv[i], "--verify") == 0)
            verify_only = true;
        else if (strcmp(argv[i], "--help") == 0 || strcmp(argv[i], "-h") == 0) {
            mig_usage(stdout);
            return MIGRATE_EXIT_OK;
        } else
            bad = true;
    }
    if (bad || !from || !to) {
        mig_usage(stderr);
        return MIGRATE_EXIT_REFUSED;
    }
    struct mig_run run;
    memset(&run, 0, sizeof run);
    run.batch_rows = (size_t)mig_env_long("CHATOPENAII_MIGRATE_BATCH", MIG_DEFAULT_BATCH, 1,
                                          MIG_MAX_BATCH, &bad);
    run.stop_after = mig_env_long("CHATOPENAII_MIGRATE_STOP_AFTER", 0, 0, LONG_MAX, &bad);
    if (bad)
        return MIGRATE_EXIT_REFUSED;

    int status = MIGRATE_EXIT_REFUSED;
    bool src_tx = false;
    double t0 = mig_now_s();
    if (mig_parse_location(&run.src, from) != 0 || mig_parse_location(&run.dst, to) != 0)
        goto out;
    if (run.src.kind == MIG_SQLITE && run.dst.kind == MIG_SQLITE) {
        char *a = realpath(run.src.path, NULL), *b = realpath(run.dst.path, NULL);
        bool same = a && b && strcmp(a, b) == 0;
        free(a);
        free(b);
        if (same) {
            mig_err("source and destination are the same database");
            goto out;
        }
    }
    if (mig_open_source(&run.src) != 0 || mig_open_dest(&run.dst, verify_only) != 0)
        goto out;
    if (mig_same_location(&run.src, &run.dst)) {
        mig_err("source and destination are the same database");
        goto out;
    }
    int64_t vs = 0, vd = 0;
    if (mig_schema_version(&run.src, &vs) != 0 || mig_schema_version(&run.dst, &vd) != 0)
        goto out;
    if (vs != vd) {
        mig_err("schema versions differ: source %" PRId64 ", destination %" PRId64
                "; bring the source up to date first (chatopenaii migrate with "
                "CHATOPENAII_DATABASE_URL set to it)",
                vs, vd);
        goto out;
    }
    fprintf(stderr, "migrate-store: %s -> %s, schema version %" PRId64 "\n", run.src.label,
            run.dst.label, vs);
    /* the source's catalog and rows are read in one snapshot */
    if (mig_read_begin(&run.src) != 0) {
        status = MIGRATE_EXIT_FAILED;
        goto out;
    }
    src_tx = true;
    if (mig_load(&run.src) != 0 || mig_load(&run.dst) != 0) {
        status = MIGRATE_EXIT_FAILED;
        goto out;
    }
    if (mig_plan(&run) != 0)
        goto out;

    if (!verify_only) {
        for (size_t i = 0; i < run.npairs; i++)
            if (mig_check_parent_first(&run, &run.pairs[i]) != 0)
                goto out;
        bool refused = false;
        if (mig_progress_start(&run, &refused) != 0) {
            status = refused ? MIGRATE_EXIT_REFUSED : MIGRATE_EXIT_FAILED;
            goto out;
        }
        if (run.dst.kind == MIG_PG)
            mig_simple(&run.dst, "set", "SET synchronous_commit = off");
        status = MIGRATE_EXIT_OK;
        for (size_t i = 0; i < run.npairs && status == MIGRATE_EXIT_OK; i++)
            status = mig_copy_table(&run, &run.pairs[i]);
        if (status != MIGRATE_EXIT_OK)
            goto out;
        double dt = mig_now_s() - t0;
        fprintf(stderr, "migrate-store: copied %" PRId64 " rows in %.2f s (%.0f rows/s)\n",
                run.rows_copied, dt, dt > 0 ? (double)run.rows_copied / dt : 0.0);
    }
    status = mig_verify(&run, src_tx);
    if (!verify_only && status == MIGRATE_EXIT_OK) {
        if (mig_simple(&run.dst, "dropping migrate_progress", "DROP TABLE migrate_progress") != 0)
            status = MIGRATE_EXIT_FAILED;
    }
    if (status == MIGRATE_EXIT_OK)
        fprintf(stderr, "migrate-store: %s in %.2f s: every table matches\n",
                verify_only ? "verified" : "done", mig_now_s() - t0);
    else if (status == MIGRATE_EXIT_FAILED)
        mig_err("verification failed");
out:
    if (src_tx)
        mig_simple(&run.src, "commit", "COMMIT");
    mig_pairs_free(&run);
    mig_db_close(&run.src);
    mig_db_close(&run.dst);
    return status;
}
