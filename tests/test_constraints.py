"""Every CHECK, UNIQUE, NOT NULL and foreign key of the spec bites on a freshly applied database (foreign keys ON)."""
from __future__ import annotations

import sqlite3

import pytest

import legacy
from schema_dsl.abathur import SCHEMA
from schema_dsl.migrate.apply import connection_pragmas
from schema_dsl.compile.target import shipped_target
from schema_dsl.sqlite import dbfile
from schema_dsl.check.report import build_report

SESSION = {"id": "s1", "app_name": "app", "user_id": "alice"}
MEMORY = {"namespace": "user:alice", "key": "k", "value": '{"a": 1}', "memory_type": "semantic"}
DOCUMENT = {"file_path": "docs/a.md", "title": "A", "content_hash": "h1"}
TASK = {"id": "t1", "prompt": "p", "status": "pending", "input_data": "{}", "submitted_at": "2025-01-01",
        "last_updated_at": "2025-01-01"}
AGENT = {"id": "a1", "name": "n", "specialization": "s", "task_id": "t1", "state": "idle", "model": "m",
         "spawned_at": "2025-01-01"}
STATE = {"task_id": "t1", "key": "k", "value": '"v"', "created_at": "2025-01-01", "updated_at": "2025-01-01"}
AUDIT = {"timestamp": "2025-01-01", "task_id": "t1", "action_type": "act"}
METRIC = {"timestamp": "2025-01-01", "metric_name": "m", "metric_value": 0.0}
CHECKPOINT = {"task_id": "t1", "iteration": 1, "state": "{}", "created_at": "2025-01-01"}

BASE = {"sessions": SESSION, "memory_entries": MEMORY, "document_index": DOCUMENT, "tasks": TASK, "agents": AGENT,
        "state": STATE, "audit": AUDIT, "metrics": METRIC, "checkpoints": CHECKPOINT}


def insert(conn, table, row):
    cols = list(row)
    return conn.execute("INSERT INTO %s (%s) VALUES (%s)" % (table, ", ".join(cols), ", ".join("?" * len(cols))),
                        [row[c] for c in cols]).lastrowid


def with_parents(conn, *tables):
    """Insert the rows the given tables' rows refer to (a session, a task)."""
    if {"agents", "state", "audit", "checkpoints"} & set(tables):
        insert(conn, "tasks", TASK)


def rejects(conn, table, changes, message):
    row = dict(BASE[table], **changes)
    with pytest.raises(sqlite3.IntegrityError) as info:
        insert(conn, table, row)
    assert message in str(info.value), str(info.value)


def test_the_connection_has_foreign_keys_on(db):
    assert db.execute("PRAGMA foreign_keys").fetchone() == (1,)


@pytest.mark.parametrize("table", list(BASE))
def test_a_valid_row_is_accepted_in_every_table(db, table):
    with_parents(db, table)
    insert(db, table, BASE[table])
    assert db.execute("SELECT count(*) FROM %s" % table).fetchone() == (1,)
    assert db.execute("PRAGMA foreign_key_check").fetchall() == []


def test_defaults_fill_a_minimal_row(db):
    insert(db, "sessions", SESSION)
    insert(db, "memory_entries", MEMORY)
    insert(db, "document_index", DOCUMENT)
    insert(db, "tasks", TASK)
    s = db.execute("SELECT status, events, state, metadata, created_at IS NOT NULL, last_update_time IS NOT NULL "
                   "FROM sessions").fetchone()
    assert s == ("created", "[]", "{}", "{}", 1, 1)
    assert db.execute("SELECT version, is_deleted, metadata FROM memory_entries").fetchone() == (1, 0, "{}")
    assert db.execute("SELECT chunk_count, metadata, sync_status FROM document_index").fetchone() == (1, "{}", "pending")
    assert db.execute("SELECT agent_type, priority, retry_count, max_retries, max_execution_timeout_seconds, session_id "
                      "FROM tasks").fetchone() == ("general", 5, 0, 3, 3600, None)


# --- CHECK: JSON columns ------------------------------------------------------

@pytest.mark.parametrize("table, column", [
    ("sessions", "events"), ("sessions", "state"), ("sessions", "metadata"),
    ("memory_entries", "value"), ("memory_entries", "metadata"),
    ("document_index", "metadata"),
])
@pytest.mark.parametrize("bad", ["{not json", "", "[1, 2"])
def test_invalid_json_is_rejected(db, table, column, bad):
    rejects(db, table, {column: bad}, "CHECK constraint failed")
    insert(db, table, dict(BASE[table], **{column: '{"ok": [1, 2]}'}))  # the same row with valid JSON goes in


# --- CHECK: enums and ranges --------------------------------------------------

@pytest.mark.parametrize("table, column, good, bad", [
    ("sessions", "status", ["created", "active", "paused", "terminated", "archived"], ["done", "Active", ""]),
    ("memory_entries", "memory_type", ["semantic", "episodic", "procedural"], ["working", "Semantic"]),
    ("document_index", "sync_status", ["pending", "synced", "failed", "stale"], ["syncing", "PENDING"]),
])
def test_enums(db, table, column, good, bad):
    for value in bad:
        rejects(db, table, {column: value}, "CHECK constraint failed")
    key = {"sessions": "id", "memory_entries": "key", "document_index": "file_path"}[table]
    for n, value in enumerate(good):
        insert(db, table, dict(BASE[table], **{column: value, key: "row-%d" % n}))
    assert db.execute("SELECT count(*) FROM %s" % table).fetchone() == (len(good),)


@pytest.mark.parametrize("version", [0, -1])
def test_memory_version_must_be_positive(db, version):
    rejects(db, "memory_entries", {"version": version}, "CHECK constraint failed")
    insert(db, "memory_entries", dict(MEMORY, version=1))


def test_negative_metric_value_is_rejected(db):
    rejects(db, "metrics", {"metric_value": -0.001}, "CHECK constraint failed")
    insert(db, "metrics", dict(METRIC, metric_value=0))
    insert(db, "metrics", dict(METRIC, metric_value=12.5))


# --- UNIQUE -------------------------------------------------------------------

def test_duplicate_namespace_key_version_is_rejected(db):
    insert(db, "memory_entries", MEMORY)
    rejects(db, "memory_entries", {}, "UNIQUE constraint failed: memory_entries.namespace, memory_entries.key, "
                                      "memory_entries.version")
    insert(db, "memory_entries", dict(MEMORY, version=2))
    insert(db, "memory_entries", dict(MEMORY, key="other"))
    insert(db, "memory_entries", dict(MEMORY, namespace="user:bob"))


def test_duplicate_file_path_is_rejected(db):
    insert(db, "document_index", DOCUMENT)
    rejects(db, "document_index", {"title": "B", "content_hash": "h2"}, "UNIQUE constraint failed: document_index.file_path")
    insert(db, "document_index", dict(DOCUMENT, file_path="docs/b.md"))


def test_duplicate_state_task_key_is_rejected(db):
    insert(db, "tasks", TASK)
    insert(db, "state", STATE)
    rejects(db, "state", {}, "UNIQUE constraint failed: state.task_id, state.key")


@pytest.mark.parametrize("table, key", [("sessions", "id"), ("tasks", "id"), ("agents", "id")])
def test_duplicate_text_primary_key_is_rejected(db, table, key):
    with_parents(db, table)
    insert(db, table, BASE[table])
    rejects(db, table, {}, "UNIQUE constraint failed: %s.%s" % (table, key))


def test_duplicate_checkpoint_is_rejected(db):
    insert(db, "tasks", TASK)
    insert(db, "checkpoints", CHECKPOINT)
    rejects(db, "checkpoints", {"state": "{}"}, "UNIQUE constraint failed: checkpoints.task_id, checkpoints.iteration")
    insert(db, "checkpoints", dict(CHECKPOINT, iteration=2))


# --- NOT NULL -----------------------------------------------------------------

NOT_NULL = [(t.name, c.name) for t in SCHEMA.tables for c in t.columns if c.not_null and c.default is None]


@pytest.mark.parametrize("table, column", NOT_NULL)
def test_not_null_without_default_is_required(db, table, column):
    with_parents(db, table)
    rejects(db, table, {column: None}, "NOT NULL constraint failed: %s.%s" % (table, column))


@pytest.mark.parametrize("table, column", [(t.name, c.name) for t in SCHEMA.tables for c in t.columns
                                           if c.not_null and c.default is not None])
def test_not_null_with_default_rejects_an_explicit_null(db, table, column):
    with_parents(db, table)
    rejects(db, table, {column: None}, "NOT NULL constraint failed: %s.%s" % (table, column))


def test_not_null_list_matches_the_spec():
    # Spot checks of NN columns the spec lists without a default.
    assert {("sessions", "app_name"), ("memory_entries", "value"), ("document_index", "content_hash"),
            ("tasks", "last_updated_at"), ("agents", "task_id"), ("audit", "task_id"),
            ("metrics", "metric_value"), ("checkpoints", "iteration")} <= set(NOT_NULL)
    assert ("audit", "agent_id") not in NOT_NULL and ("tasks", "session_id") not in NOT_NULL


# --- foreign keys -------------------------------------------------------------

@pytest.mark.parametrize("table", ["tasks", "agents", "checkpoints"])
def test_unknown_session_id_is_rejected(db, table):
    with_parents(db, table)
    rejects(db, table, {"session_id": "no-such-session"}, "FOREIGN KEY constraint failed")
    insert(db, "sessions", SESSION)
    insert(db, table, dict(BASE[table], session_id="s1"))


@pytest.mark.parametrize("table", ["agents", "state", "audit", "checkpoints"])
def test_unknown_task_id_is_rejected(db, table):
    rejects(db, table, {"task_id": "no-such-task"}, "FOREIGN KEY constraint failed")
    insert(db, "tasks", TASK)
    insert(db, table, BASE[table])


def test_unknown_parent_task_is_rejected(db):
    rejects(db, "tasks", {"parent_task_id": "no-such-task"}, "FOREIGN KEY constraint failed")
    insert(db, "tasks", TASK)
    insert(db, "tasks", dict(TASK, id="t2", parent_task_id="t1"))


def test_unknown_agent_on_audit_is_rejected(db):
    insert(db, "tasks", TASK)
    rejects(db, "audit", {"agent_id": "no-such-agent"}, "FOREIGN KEY constraint failed")
    insert(db, "agents", AGENT)
    insert(db, "audit", dict(AUDIT, agent_id="a1"))


def test_unknown_memory_entry_on_audit_is_rejected(db):
    insert(db, "tasks", TASK)
    rejects(db, "audit", {"memory_entry_id": 999}, "FOREIGN KEY constraint failed")
    entry = insert(db, "memory_entries", MEMORY)
    insert(db, "audit", dict(AUDIT, memory_entry_id=entry, memory_operation_type="create", memory_namespace="user:alice"))


def test_deleting_a_referenced_task_is_refused(db):
    insert(db, "tasks", TASK)
    insert(db, "agents", AGENT)
    with pytest.raises(sqlite3.IntegrityError, match="FOREIGN KEY constraint failed"):
        db.execute("DELETE FROM tasks WHERE id = 't1'")


def test_on_delete_set_null_fires_when_a_session_is_deleted(db):
    insert(db, "sessions", SESSION)
    insert(db, "sessions", dict(SESSION, id="s2"))
    insert(db, "tasks", dict(TASK, session_id="s1"))
    insert(db, "tasks", dict(TASK, id="t2", session_id="s2"))
    insert(db, "agents", dict(AGENT, session_id="s1"))
    insert(db, "checkpoints", dict(CHECKPOINT, session_id="s1"))
    db.execute("DELETE FROM sessions WHERE id = 's1'")
    assert db.execute("SELECT id, session_id FROM tasks ORDER BY id").fetchall() == [("t1", None), ("t2", "s2")]
    assert db.execute("SELECT id, session_id FROM agents").fetchall() == [("a1", None)]
    assert db.execute("SELECT task_id, iteration, session_id FROM checkpoints").fetchall() == [("t1", 1, None)]
    assert db.execute("PRAGMA foreign_key_check").fetchall() == []


def test_on_delete_set_null_fires_when_a_memory_entry_is_deleted(db):
    insert(db, "tasks", TASK)
    entry = insert(db, "memory_entries", MEMORY)
    other = insert(db, "memory_entries", dict(MEMORY, version=2))
    first = insert(db, "audit", dict(AUDIT, memory_entry_id=entry, memory_operation_type="create"))
    second = insert(db, "audit", dict(AUDIT, memory_entry_id=other, memory_operation_type="update"))
    db.execute("DELETE FROM memory_entries WHERE id = ?", (entry,))
    assert db.execute("SELECT id, memory_entry_id, memory_operation_type FROM audit ORDER BY id").fetchall() == [
        (first, None, "create"), (second, other, "update")]
    assert db.execute("PRAGMA foreign_key_check").fetchall() == []


def test_without_foreign_keys_on_set_null_would_not_fire(fresh_db):
    # The control for the test above: the same delete on a connection that did not turn foreign keys on.
    conn = sqlite3.connect(str(fresh_db), isolation_level=None)
    try:
        conn.execute("PRAGMA foreign_keys = OFF")
        insert(conn, "sessions", SESSION)
        insert(conn, "tasks", dict(TASK, session_id="s1"))
        conn.execute("DELETE FROM sessions")
        assert conn.execute("SELECT session_id FROM tasks").fetchall() == [("s1",)]
    finally:
        conn.close()


# --- the old code, unchanged, on the new schema -------------------------------

def test_the_old_code_statements_work_unchanged_with_foreign_keys_on(db):
    for i, (priority, submitted) in enumerate([(1, "2025-01-02"), (9, "2025-01-03"), (9, "2025-01-01")]):
        insert(db, "tasks", dict(TASK, id="old-%d" % i, priority=priority, submitted_at=submitted))
    db.row_factory = sqlite3.Row
    got = legacy.old_code_statements(db)
    assert db.execute("PRAGMA foreign_keys").fetchone()[0] == 1
    (task,) = got["by_id"]
    assert (task["id"], task["prompt"], task["status"], task["started_at"], task["last_updated_at"], task["retry_count"],
            task["priority"], task["agent_type"], task["session_id"]) == (
        "task-new-1", "do it", "running", "2025-06-01 00:00:01", "2025-06-01 00:00:01", 1, 7, "general", None)
    assert [r["id"] for r in got["by_status"]] == ["old-2", "old-1", "old-0"]
    assert [r["id"] for r in got["timed_out"]] == ["task-new-1"]
    assert [tuple(r) for r in got["state_value"]] == [('"two"',)]
    assert tuple(db.execute("SELECT state, terminated_at, session_id FROM agents WHERE id = 'agent-new-1'").fetchone()) == (
        "terminated", "2025-06-01 00:01:00", None)
    assert tuple(db.execute("SELECT count(*), max(updated_at) FROM state").fetchone()) == (1, "2025-06-02")
    audit = db.execute("SELECT agent_id, task_id, action_type, memory_operation_type, memory_namespace, memory_entry_id "
                       "FROM audit").fetchall()
    assert [tuple(r) for r in audit] == [("agent-new-1", "task-new-1", "spawn", None, None, None)]
    assert db.execute("PRAGMA foreign_key_check").fetchall() == []


def test_the_old_code_statements_use_the_declared_indexes(db):
    plan = [r[3] for r in db.execute("EXPLAIN QUERY PLAN SELECT value FROM state WHERE task_id=? AND key=?", ("t", "k"))]
    assert any("INDEX" in line for line in plan), plan


# --- counts and PRAGMAs -------------------------------------------------------

def test_counts(db):
    master = db.execute("SELECT type, name FROM sqlite_master").fetchall()
    tables = [n for t, n in master if t == "table" and not n.startswith("sqlite_")]
    named = [n for t, n in master if t == "index" and not n.startswith("sqlite_autoindex_")]
    automatic = [n for t, n in master if t == "index" and n.startswith("sqlite_autoindex_")]
    assert len(tables) == 9 and sorted(tables) == sorted(t.name for t in SCHEMA.tables)
    assert len(named) == 33 and sorted(named) == sorted(ix.name for ix in SCHEMA.indexes)
    assert len(automatic) == 7
    assert ("table", "sqlite_sequence") in master
    assert [t for t, n in master if t in ("view", "trigger")] == []


def test_journal_mode_wal_is_kept_in_the_file(fresh_db):
    conn = sqlite3.connect(str(fresh_db))
    try:
        assert conn.execute("PRAGMA journal_mode").fetchone() == ("wal",)
    finally:
        conn.close()
    with open(fresh_db, "rb") as fh:
        header = fh.read(20)
    assert header[18:20] == b"\x02\x02"  # file format read/write version 2: WAL


def test_connection_pragmas_set_by_schema_dsl(fresh_db):
    conn = dbfile.connect(fresh_db)
    try:
        statements = connection_pragmas(shipped_target().files)
        assert not any("journal_mode" in s for s in statements)
        for stmt in statements:
            conn.execute(stmt)
        got = {name: conn.execute("PRAGMA %s" % name).fetchone()[0]
               for name in ("synchronous", "foreign_keys", "busy_timeout", "wal_autocheckpoint", "journal_mode")}
    finally:
        conn.close()
    assert got == {"synchronous": 1, "foreign_keys": 1, "busy_timeout": 5000, "wal_autocheckpoint": 1000,
                   "journal_mode": "wal"}


def test_per_connection_pragmas_are_not_kept_in_the_file(fresh_db):
    conn = sqlite3.connect(str(fresh_db))
    try:
        assert conn.execute("PRAGMA foreign_keys").fetchone() == (0,)
    finally:
        conn.close()


def test_the_report_reads_the_pragmas_on_the_tools_connection(fresh_db):
    report = build_report(str(fresh_db))
    p = report["pragmas"]
    assert (p["journal_mode"], p["synchronous"], p["foreign_keys"], p["busy_timeout"], p["wal_autocheckpoint"]) == (
        "wal", 1, 1, 5000, 1000)
    assert p["quick_check"] == ["ok"] and p["foreign_key_check"] == []
    assert report["ok"] is True
    assert report["counts"] == {"tables": 9, "expected_tables": 9, "indexes": 33, "expected_indexes": 33}
    assert sum(1 for i in report["indexes"] if i["automatic"]) == 7


def test_integrity_and_foreign_key_check_on_a_fresh_database(db):
    assert db.execute("PRAGMA integrity_check").fetchall() == [("ok",)]
    assert db.execute("PRAGMA foreign_key_check").fetchall() == []


def test_index_6_query_uses_an_index(db):
    q = next(ix.serves[0] for ix in SCHEMA.indexes if ix.name == "idx_memory_namespace_key_version")
    plan = [r[3] for r in db.execute("EXPLAIN QUERY PLAN " + q, ("ns", "k"))]
    assert any("USING INDEX" in line or "USING COVERING INDEX" in line for line in plan), plan


@pytest.mark.parametrize("table", ["sessions", "memory_entries", "document_index"])
def test_null_metadata_follows_this_sqlites_json_valid_null(db, table):
    # Known defect of the design: CHECK (json_valid(metadata)) on a nullable column. SQLite before 3.45
    # returns 0 for json_valid(NULL), so NULL metadata is refused; newer ones return NULL, which a CHECK passes.
    json_valid_null = db.execute("SELECT json_valid(NULL)").fetchone()[0]
    row = dict(BASE[table], metadata=None)
    if json_valid_null == 0:
        with pytest.raises(sqlite3.IntegrityError, match="CHECK constraint failed"):
            insert(db, table, row)
    else:
        assert json_valid_null is None
        insert(db, table, row)
        assert db.execute("SELECT metadata FROM %s" % table).fetchall() == [(None,)]
