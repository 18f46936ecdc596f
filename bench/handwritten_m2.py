"""The hand-written Milestone 1 -> Milestone 2 migration: the baseline of the Milestone 2 measure.

Run by a bare script (same interpreter, the same imports as every schemagen
process: click and attrs) on a copy of the Milestone 1 file schemagen
migrates with `--schema examples/abathur_m2.py`. It does what a careful
person would write for the same change, and nothing more:

- drop the seven redundant indexes;
- ALTER TABLE memory_entries RENAME COLUMN created_by TO author (SQLite
  rewrites idx_memory_created_by itself);
- state.task_id gets ON DELETE CASCADE: SQLite's 12-step rebuild of state
  (foreign keys off, create, copy with the rowids, drop, rename, keep the
  AUTOINCREMENT high-water mark, foreign_key_check of state);
- the two partial indexes are recreated without their WHERE, and the index
  on checkpoints.session_id is created;
all in one transaction.

    python bench/handwritten_m2.py DB
"""
import sqlite3
import sys

import attrs  # noqa: F401  (the dependencies every schemagen process imports)
import click  # noqa: F401

STATEMENTS = [
    'DROP INDEX "idx_sessions_pk"', 'DROP INDEX "idx_memory_entries_pk"', 'DROP INDEX "idx_memory_conflict_detection"',
    'DROP INDEX "idx_document_index_pk"', 'DROP INDEX "idx_document_file_path"', 'DROP INDEX "idx_state_task_key"',
    'DROP INDEX "idx_checkpoints_task"',
    'ALTER TABLE "memory_entries" RENAME COLUMN "created_by" TO "author"',
    'CREATE TABLE "state_new" ("id" INTEGER PRIMARY KEY AUTOINCREMENT, '
    '"task_id" TEXT NOT NULL REFERENCES "tasks" ("id") ON DELETE CASCADE, "key" TEXT NOT NULL, "value" TEXT NOT NULL, '
    '"created_at" TIMESTAMP NOT NULL, "updated_at" TIMESTAMP NOT NULL, UNIQUE ("task_id", "key"))',
    'INSERT INTO "state_new" ("id", "task_id", "key", "value", "created_at", "updated_at") '
    'SELECT "id", "task_id", "key", "value", "created_at", "updated_at" FROM "state"',
    'CREATE TEMP TABLE keep_seq AS SELECT seq FROM sqlite_sequence WHERE name = \'state\'',
    'DROP TABLE "state"',
    'ALTER TABLE "state_new" RENAME TO "state"',
    'UPDATE sqlite_sequence SET seq = max(seq, coalesce((SELECT seq FROM keep_seq), 0)) WHERE name = \'state\'',
    'DROP TABLE keep_seq',
    'DROP INDEX "idx_sessions_status_updated"',
    'CREATE INDEX "idx_sessions_status_updated" ON "sessions" ("status", "last_update_time" DESC)',
    'DROP INDEX "idx_document_sync_status"',
    'CREATE INDEX "idx_document_sync_status" ON "document_index" ("sync_status", "last_synced_at")',
    'CREATE INDEX "idx_checkpoints_session" ON "checkpoints" ("session_id")',
]


def main(path):
    conn = sqlite3.connect(path, isolation_level=None)
    for stmt in ("PRAGMA busy_timeout = 5000", "PRAGMA synchronous = NORMAL", "PRAGMA foreign_keys = OFF"):
        conn.execute(stmt)
    conn.execute("BEGIN IMMEDIATE")
    for stmt in STATEMENTS:
        conn.execute(stmt)
    if conn.execute("SELECT count(*) FROM pragma_foreign_key_check('state')").fetchone()[0]:
        conn.execute("ROLLBACK")
        raise SystemExit("foreign key violations in state")
    conn.execute("COMMIT")
    conn.execute("PRAGMA foreign_keys = ON")
    conn.close()


if __name__ == "__main__":
    main(sys.argv[1])
