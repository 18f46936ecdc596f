"""Hand-written migrations of old-shape Abathur files: the baselines of the migration measures.

Run by a bare script (same interpreter, same imports as every schemagen
process: click and attrs), on a copy of the same file schemagen migrates.

    python bench/handwritten_migration.py minimal DB      # the current old shape
    python bench/handwritten_migration.py rebuild12 DB    # the retrofitted shape
    python bench/handwritten_migration.py rebuild-all DB  # the current old shape, copying every changed table

minimal: the 3 new tables, the 6 ADD COLUMNs, the 21 new indexes, in one
transaction. Nothing else: no check before or after.

rebuild12: the retrofitted shape holds tasks.last_updated_at as a nullable
column, so tasks needs SQLite's 12-step rebuild (lang_altertable.html,
"Making Other Kinds Of Table Schema Changes"): foreign keys off, BEGIN,
create the new table, copy the rows, drop the old, rename, recreate the
indexes, PRAGMA foreign_key_check (step 10), COMMIT, foreign keys on. The
rest is as in minimal.

rebuild-all: the way tools that always rebuild a changed table migrate the
old shape: the 12-step procedure for each of tasks, agents, audit and
checkpoints (every table that gains a column), then the new tables and all of
their indexes, with one PRAGMA foreign_key_check (step 10) at the end.

The new tables and the indexes are the statements of generated/; the ADD
COLUMNs and the row copies are written by hand.
"""
import sqlite3
import sys
from pathlib import Path

import attrs  # noqa: F401  (the dependencies every schemagen process imports)
import click  # noqa: F401

sys.path.insert(0, str(Path(__file__).resolve().parent))
from sqlfiles import (OLD_INDEXES, generated_text, index_statements, index_table,  # noqa: E402
                    pragma_statements, split_sql, table_statement)

ADD_COLUMNS = [
    'ALTER TABLE tasks ADD COLUMN session_id TEXT REFERENCES sessions(id) ON DELETE SET NULL',
    'ALTER TABLE agents ADD COLUMN session_id TEXT REFERENCES sessions(id) ON DELETE SET NULL',
    'ALTER TABLE audit ADD COLUMN memory_operation_type TEXT',
    'ALTER TABLE audit ADD COLUMN memory_namespace TEXT',
    'ALTER TABLE audit ADD COLUMN memory_entry_id INTEGER REFERENCES memory_entries(id) ON DELETE SET NULL',
    'ALTER TABLE checkpoints ADD COLUMN session_id TEXT REFERENCES sessions(id) ON DELETE SET NULL',
]

# The columns each old table keeps (the old code's columns), copied by a rebuild.
OLD_COLUMNS = {
    "tasks": ["id", "prompt", "agent_type", "priority", "status", "input_data", "result_data", "error_message",
              "retry_count", "max_retries", "max_execution_timeout_seconds", "submitted_at", "started_at",
              "completed_at", "last_updated_at", "created_by", "parent_task_id", "dependencies"],
    "agents": ["id", "name", "specialization", "task_id", "state", "model", "spawned_at", "terminated_at",
               "resource_usage"],
    "audit": ["id", "timestamp", "agent_id", "task_id", "action_type", "action_data", "result"],
    "checkpoints": ["task_id", "iteration", "state", "created_at"],
}
# Tables with an INTEGER PRIMARY KEY carry their rowid as that column; the others copy rowid explicitly.
ROWID_TABLES = {"tasks", "agents", "checkpoints"}


def memory_tables():
    return split_sql(generated_text("ddl-memory-tables.sql"))


def new_indexes(exclude_tables=()):
    return [s for n, s in index_statements().items()
            if n not in OLD_INDEXES and index_table(s) not in exclude_tables]


def table_indexes(table):
    return [s for s in index_statements().values() if index_table(s) == table]


def rebuild(table, exprs=None):
    """The table part of the 12-step procedure (steps 4-8) for one table."""
    cols = OLD_COLUMNS[table]
    exprs = exprs or {}
    new = "%s_new" % table
    create = table_statement(table).replace('CREATE TABLE IF NOT EXISTS "%s"' % table, 'CREATE TABLE "%s"' % new, 1)
    rowid = ["rowid"] if table in ROWID_TABLES else []
    select = [exprs.get(c, c) for c in cols]
    return [
        create,
        "INSERT INTO %s (%s) SELECT %s FROM %s" % (new, ", ".join(rowid + cols), ", ".join(rowid + select), table),
        "DROP TABLE %s" % table,
        "ALTER TABLE %s RENAME TO %s" % (new, table),
    ] + table_indexes(table)


def statements(mode):
    if mode == "minimal":
        return memory_tables() + ADD_COLUMNS + new_indexes(), False
    if mode == "rebuild12":
        body = memory_tables()
        body += rebuild("tasks", {"last_updated_at": "COALESCE(last_updated_at, completed_at, started_at, submitted_at)"})
        body += [s for s in ADD_COLUMNS if not s.startswith("ALTER TABLE tasks ")]
        body += new_indexes(exclude_tables=("tasks",))
        return body, True
    if mode == "rebuild-all":
        body = memory_tables()
        for table in ("tasks", "agents", "audit", "checkpoints"):
            body += rebuild(table)
        body += new_indexes(exclude_tables=("tasks", "agents", "audit", "checkpoints"))
        return body, True
    raise SystemExit("unknown mode %r" % mode)


def main(mode, path):
    body, rebuilds = statements(mode)
    conn = sqlite3.connect(path, isolation_level=None)
    for stmt in pragma_statements(include_journal_mode=False):
        conn.execute(stmt)
    if rebuilds:
        conn.execute("PRAGMA foreign_keys = OFF")
    conn.execute("BEGIN IMMEDIATE")
    for stmt in body:
        conn.execute(stmt)
    if rebuilds:
        violations = conn.execute("PRAGMA foreign_key_check").fetchall()
        if violations:
            conn.execute("ROLLBACK")
            raise SystemExit("foreign key violations: %d" % len(violations))
    conn.execute("COMMIT")
    if rebuilds:
        conn.execute("PRAGMA foreign_keys = ON")
    conn.close()


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
