"""The hand-written Milestone 1 -> Milestone 2 migration on PostgreSQL: the baseline of the `pg_migration` measure.

Run as a bare script (same interpreter, the same imports as every schemagen process: click, attrs and
psycopg) on a database holding the Milestone 1 declaration with the migrated large fixture's rows
(`schemagen transfer`). It does what a careful person would write for the same change, and nothing more,
in one transaction:

- drop the seven redundant indexes;
- ALTER TABLE memory_entries RENAME COLUMN created_by TO author (its index follows);
- state.task_id gets ON DELETE CASCADE: the foreign key dropped and added again in one ALTER TABLE (validated
  there, a scan of state under its lock);
- the two partial indexes are recreated without their WHERE, and the index on checkpoints.session_id is
  created.

No plan, no check of the rows first, no read-back of the structure afterwards.

    python bench/handwritten_pg_m2.py POSTGRES_URL
"""
import sys

import attrs  # noqa: F401  (the dependencies every schemagen process imports)
import click  # noqa: F401
import psycopg

STATEMENTS = [
    'DROP INDEX "idx_sessions_pk"', 'DROP INDEX "idx_memory_entries_pk"', 'DROP INDEX "idx_memory_conflict_detection"',
    'DROP INDEX "idx_document_index_pk"', 'DROP INDEX "idx_document_file_path"', 'DROP INDEX "idx_state_task_key"',
    'DROP INDEX "idx_checkpoints_task"',
    'ALTER TABLE "memory_entries" RENAME COLUMN "created_by" TO "author"',
    'ALTER TABLE "state" DROP CONSTRAINT "state_task_id_fkey", ADD CONSTRAINT "state_task_id_fkey" '
    'FOREIGN KEY ("task_id") REFERENCES "tasks" ("id") ON DELETE CASCADE',
    'DROP INDEX "idx_sessions_status_updated"',
    'CREATE INDEX "idx_sessions_status_updated" ON "sessions" ("status", "last_update_time" DESC)',
    'DROP INDEX "idx_document_sync_status"',
    'CREATE INDEX "idx_document_sync_status" ON "document_index" ("sync_status", "last_synced_at")',
    'CREATE INDEX "idx_checkpoints_session" ON "checkpoints" ("session_id")',
]


def main(url):
    with psycopg.connect(url) as conn:  # one transaction, committed on leaving
        conn.execute("SET lock_timeout = '5s'")
        for stmt in STATEMENTS:
            conn.execute(stmt)


if __name__ == "__main__":
    main(sys.argv[1])
