"""The hand-written, lock-aware Milestone 1 -> Milestone 2 migration on PostgreSQL: the baseline of
`bench/pg_online.py --m2` (what a careful person writes so that the application keeps working).

The same change as bench/handwritten_pg_m2.py, each statement in its own short transaction (or outside one):

- every index dropped and created CONCURRENTLY (the two partial indexes: dropped, then created again without
  their WHERE);
- memory_entries.created_by renamed author alone;
- state's foreign key to ON DELETE CASCADE: the old one dropped and the new one added NOT VALID in one short
  transaction that locks state, then tasks (a child before its parent: the order of the application's
  foreign-key checks), then VALIDATEd in a transaction of its own (a scan that lets writes go on);
- every lock asked for under lock_timeout 50 ms, and an attempt not granted retried after a short backoff (an
  index build stopped so is dropped first: it leaves an INVALID index behind).

No plan, no check of the rows first, no read-back of the structure afterwards.

    python bench/handwritten_pg_m2_online.py POSTGRES_URL
"""
import random
import sys
import time

import attrs  # noqa: F401  (the dependencies every schemagen process imports)
import click  # noqa: F401
import psycopg
from psycopg import errors

DROPS = ["idx_sessions_pk", "idx_memory_entries_pk", "idx_memory_conflict_detection", "idx_document_index_pk",
         "idx_document_file_path", "idx_state_task_key", "idx_checkpoints_task"]

STEPS = (
    [("outside", ['DROP INDEX CONCURRENTLY IF EXISTS "%s"' % name]) for name in DROPS]
    + [("tx", ['ALTER TABLE "memory_entries" RENAME COLUMN "created_by" TO "author"']),
       ("tx", ['LOCK TABLE "state" IN ACCESS EXCLUSIVE MODE', 'LOCK TABLE "tasks" IN SHARE ROW EXCLUSIVE MODE',
               'ALTER TABLE "state" DROP CONSTRAINT "state_task_id_fkey"',
               'ALTER TABLE "state" ADD CONSTRAINT "state_task_id_fkey" FOREIGN KEY ("task_id") REFERENCES "tasks" '
               '("id") ON DELETE CASCADE NOT VALID']),
       ("tx", ['ALTER TABLE "state" VALIDATE CONSTRAINT "state_task_id_fkey"']),
       ("outside", ['DROP INDEX CONCURRENTLY "idx_sessions_status_updated"']),
       ("outside", ['CREATE INDEX CONCURRENTLY "idx_sessions_status_updated" ON "sessions" '
                    '("status", "last_update_time" DESC)']),
       ("outside", ['DROP INDEX CONCURRENTLY "idx_document_sync_status"']),
       ("outside", ['CREATE INDEX CONCURRENTLY "idx_document_sync_status" ON "document_index" '
                    '("sync_status", "last_synced_at")']),
       ("outside", ['CREATE INDEX CONCURRENTLY "idx_checkpoints_session" ON "checkpoints" ("session_id")'])])


def retrying(attempt, cleanup=None):
    backoff = 0.01
    while True:
        try:
            return attempt()
        except errors.LockNotAvailable:
            if cleanup is not None:  # a CREATE INDEX CONCURRENTLY stopped half-way leaves an INVALID index
                retrying(cleanup)
            time.sleep(backoff + random.uniform(0, backoff))
            backoff = min(backoff * 2, 0.4)


def main(url):
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("SET lock_timeout = '50ms'")
        for how, statements in STEPS:
            if how == "outside":
                name = statements[0].split('"')[1]
                retrying(lambda: conn.execute(statements[0]),
                         (lambda: conn.execute('DROP INDEX CONCURRENTLY IF EXISTS "%s"' % name))
                         if statements[0].startswith("CREATE") else None)
            else:
                def attempt(statements=statements):
                    with conn.transaction():
                        for stmt in statements:
                            conn.execute(stmt)
                retrying(attempt)


if __name__ == "__main__":
    main(sys.argv[1])
