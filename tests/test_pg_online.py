"""Migrations on PostgreSQL that let the application go on (schema_dsl/pg/locks.py, pg/online.py): plain apply
locks children before parents and never deadlocks with an application's foreign-key check; apply --online runs
each step in its own short transaction under a short lock_timeout, retrying, and its result validates as a plain
apply's does; a killed online apply is finished by the next apply, plain or online."""
from __future__ import annotations

import threading
import time

import pytest

from pg_cluster import pg_cluster, pg_url  # noqa: F401 (fixtures)
from schema_dsl.compile.postgresql import compile_declaration
from schema_dsl.model import Check, Column, Index, PrimaryKey, Schema, Table, fk

V1 = Schema(name="app", tables=[
    Table("sessions", columns=[Column("id", "INTEGER"), Column("name", "TEXT")], primary_key=PrimaryKey(["id"])),
    Table("tasks", columns=[Column("id", "INTEGER"), Column("session_id", "INTEGER"), Column("state", "TEXT")],
          primary_key=PrimaryKey(["id"]), foreign_keys=[fk("session_id", "sessions", "id")]),
])

# both tables change, the parent first: it gets a column and a CHECK, the child a NOT NULL, a CHECK and an index
V2 = Schema(name="app", tables=[
    Table("sessions", columns=[Column("id", "INTEGER"), Column("name", "TEXT"), Column("note", "TEXT")],
          primary_key=PrimaryKey(["id"]),
          checks=[Check("length(name) > 0")]),
    Table("tasks", columns=[Column("id", "INTEGER"), Column("session_id", "INTEGER"),
                            Column("state", "TEXT", not_null=True)],
          primary_key=PrimaryKey(["id"]), foreign_keys=[fk("session_id", "sessions", "id")],
          checks=[Check("state IN ('open', 'done')")]),
], indexes=[Index("idx_tasks_state", "tasks", ["state"])])


def _connect(url):
    import psycopg
    return psycopg.connect(url, autocommit=True)


def _v1_with_rows(url, rows=200):
    from schema_dsl.pg import migrate
    migrate.apply(url, V1, compile_declaration(V1))
    with _connect(url) as conn:
        conn.execute("INSERT INTO sessions SELECT g, 's' || g FROM generate_series(1, 10) g")
        conn.execute("INSERT INTO tasks SELECT g, 1 + g %% 10, 'open' FROM generate_series(1, %d) g" % rows)


def test_plain_apply_does_not_deadlock_with_an_application_insert_into_the_child(pg_url):
    """The application holds ROW EXCLUSIVE on tasks (an INSERT with no parent to check), the migration starts, then
    the application's next INSERT checks its parent in sessions. The old order (ALTER sessions first, under ACCESS
    EXCLUSIVE, then tasks) deadlocks there and PostgreSQL aborts one side; children first, each attempt under a
    lock_timeout below deadlock_timeout, both finish."""
    from schema_dsl.pg import migrate
    _v1_with_rows(pg_url)
    app = _connect(pg_url)
    errors, done = [], {}
    app.execute("BEGIN")
    app.execute("INSERT INTO tasks (id, session_id, state) VALUES (100001, NULL, 'open')")

    def migration():
        try:
            done["result"] = migrate.apply(pg_url, V2, compile_declaration(V2), lock_timeout="20s")
        except Exception as exc:  # noqa: BLE001 - the test reports it
            errors.append(exc)
    worker = threading.Thread(target=migration)
    worker.start()
    time.sleep(1.0)  # the migration has planned and waits for a lock now
    try:
        app.execute("INSERT INTO tasks (id, session_id, state) VALUES (100002, 3, 'open')")  # checks sessions
        app.execute("COMMIT")
    except Exception as exc:  # noqa: BLE001 - a deadlock here is the failure the test is about
        errors.append(exc)
        app.execute("ROLLBACK")
    worker.join(60)
    app.close()
    assert not worker.is_alive()
    assert not errors, errors
    assert done["result"].applied
    with _connect(pg_url) as conn:
        assert conn.execute("SELECT count(*) FROM tasks WHERE id IN (100001, 100002)").fetchone()[0] == 2


def test_locks_are_taken_children_first():
    from schema_dsl.pg.locks import children_first
    fks = {"tasks": {"sessions"}, "events": {"tasks", "sessions"}, "sessions": {"users"}}
    assert children_first(["users", "sessions", "tasks", "events", "other"], fks) == \
        ["events", "other", "tasks", "sessions", "users"]
    assert children_first(["a", "b"], {"a": {"b"}, "b": {"a"}}) == ["a", "b"]  # a cycle: by name
