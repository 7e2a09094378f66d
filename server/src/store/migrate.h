/* migrate.h - `chatopenaii migrate-store`: copy every table of one store
 * (a SQLite file or a PostgreSQL database) into another, in resumable
 * batches, then verify the copy (row counts and SHA-256 checksums per table).
 * An offline command: no server may run on either database meanwhile.
 * See docs/migrate-store.md.
 */
#ifndef COAI_MIGRATE_H
#define COAI_MIGRATE_H

/* Exit statuses of migrate_store_main. */
#define MIGRATE_EXIT_OK 0          /* copied (or only verified) and every table matches */
#define MIGRATE_EXIT_FAILED 1      /* a checksum / count mismatch, or a database error */
#define MIGRATE_EXIT_REFUSED 2     /* usage error, or refused before copying anything */
#define MIGRATE_EXIT_INTERRUPTED 3 /* CHATOPENAII_MIGRATE_STOP_AFTER reached (test hook) */

/* Run the command. argv holds the arguments after "migrate-store"
 * (--from SRC --to DST [--verify]). Prints the per-table result lines on
 * stdout and progress / errors on stderr; never prints a password or a row
 * value. Returns one of the MIGRATE_EXIT_* statuses. */
int migrate_store_main(int argc, char **argv);

#endif
