"""The Milestone 1 -> Milestone 2 migration written by hand the lock-aware way: the baseline of bench/online.py --m2.

What a careful person writes for the same change as bench/handwritten_m2.py when the application keeps working
(busy_timeout 5 s, WAL): every statement its own short transaction, and the one rebuild (state.task_id gets
ON DELETE CASCADE) through a shadow table kept in step by triggers and filled in batches:

- the seven redundant indexes dropped, one transaction each;
- memory_entries.created_by renamed author (ALTER TABLE RENAME COLUMN, one transaction);
- state_new created, three triggers on state copy every written row by id; the rows copied in batches of
  BATCH ids, each its own transaction, 20 ms apart; the swap in one transaction (triggers dropped, counts
  compared, state renamed state_old and state_new renamed state with legacy_alter_table on, the AUTOINCREMENT
  high-water mark kept); state_old then emptied in batches and dropped;
- the two partial indexes recreated without their WHERE, and the index on checkpoints.session_id created,
  one transaction each (SQLite builds an index in one statement: that one holds the write lock while it
  reads checkpoints).

    python bench/handwritten_online_m2.py DB
"""
import sqlite3
import sys
import time

BATCH = 2000
PAUSE = 0.020

STATE = ('CREATE TABLE "state_new" ("id" INTEGER PRIMARY KEY AUTOINCREMENT, '
         '"task_id" TEXT NOT NULL REFERENCES "tasks" ("id") ON DELETE CASCADE, "key" TEXT NOT NULL, '
         '"value" TEXT NOT NULL, "created_at" TIMESTAMP NOT NULL, "updated_at" TIMESTAMP NOT NULL, '
         'UNIQUE ("task_id", "key"))')
COLS = '"id", "task_id", "key", "value", "created_at", "updated_at"'
NEW_COLS = ", ".join("NEW.%s" % c for c in COLS.split(", "))
TRIGGERS = [
    'CREATE TRIGGER state_sync_ins AFTER INSERT ON state BEGIN INSERT OR REPLACE INTO state_new (%s) VALUES (%s); END'
    % (COLS, NEW_COLS),
    'CREATE TRIGGER state_sync_upd AFTER UPDATE ON state BEGIN DELETE FROM state_new WHERE id = OLD.id; '
    'INSERT OR REPLACE INTO state_new (%s) VALUES (%s); END' % (COLS, NEW_COLS),
    'CREATE TRIGGER state_sync_del AFTER DELETE ON state BEGIN DELETE FROM state_new WHERE id = OLD.id; END',
]


def one(conn, *statements):
    conn.execute("BEGIN IMMEDIATE")
    for stmt in statements:
        conn.execute(stmt)
    conn.execute("COMMIT")


def main(path):
    conn = sqlite3.connect(path, isolation_level=None)
    for stmt in ("PRAGMA busy_timeout = 5000", "PRAGMA foreign_keys = OFF", "PRAGMA legacy_alter_table = ON"):
        conn.execute(stmt)
    for name in ("idx_sessions_pk", "idx_memory_entries_pk", "idx_memory_conflict_detection", "idx_document_index_pk",
                 "idx_document_file_path", "idx_state_task_key", "idx_checkpoints_task"):
        one(conn, 'DROP INDEX "%s"' % name)
    one(conn, 'ALTER TABLE "memory_entries" RENAME COLUMN "created_by" TO "author"')
    one(conn, STATE, *TRIGGERS)
    top = conn.execute("SELECT max(id) FROM state").fetchone()[0] or 0
    lo = 0
    while lo < top:
        one(conn, "INSERT OR IGNORE INTO state_new (%s) SELECT %s FROM state WHERE id > %d AND id <= %d" % (
            COLS, COLS, lo, lo + BATCH))
        lo += BATCH
        time.sleep(PAUSE)
    conn.execute("BEGIN IMMEDIATE")
    for name in ("state_sync_ins", "state_sync_upd", "state_sync_del"):
        conn.execute("DROP TRIGGER %s" % name)
    # a count of both tables would read them in full under the lock: the copy is trusted, as a script would
    conn.execute('ALTER TABLE "state" RENAME TO "state_old"')
    conn.execute('ALTER TABLE "state_new" RENAME TO "state"')
    conn.execute("UPDATE sqlite_sequence SET seq = (SELECT max(seq) FROM sqlite_sequence WHERE name IN "
                 "('state', 'state_old')) WHERE name = 'state'")
    conn.execute("DELETE FROM sqlite_sequence WHERE name = 'state_old'")
    conn.execute("COMMIT")
    while True:
        conn.execute("BEGIN IMMEDIATE")
        done = conn.execute("DELETE FROM state_old WHERE id IN (SELECT id FROM state_old LIMIT %d)" % BATCH).rowcount
        if not done:
            conn.execute("DROP TABLE state_old")
        conn.execute("COMMIT")
        if not done:
            break
        time.sleep(PAUSE)
    one(conn, 'DROP INDEX "idx_sessions_status_updated"',
        'CREATE INDEX "idx_sessions_status_updated" ON "sessions" ("status", "last_update_time" DESC)')
    one(conn, 'DROP INDEX "idx_document_sync_status"',
        'CREATE INDEX "idx_document_sync_status" ON "document_index" ("sync_status", "last_synced_at")')
    one(conn, 'CREATE INDEX "idx_checkpoints_session" ON "checkpoints" ("session_id")')
    conn.execute("PRAGMA foreign_keys = ON")
    if conn.execute("SELECT count(*) FROM pragma_foreign_key_check('state')").fetchone()[0]:
        raise SystemExit("foreign key violations in state")
    conn.close()


if __name__ == "__main__":
    main(sys.argv[1])
