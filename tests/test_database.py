"""schema_dsl.Database: the async integration class (aiosqlite), run with asyncio.run inside plain tests."""
from __future__ import annotations

import asyncio
import json
import os
import shutil
import sqlite3
import subprocess
import sys
import threading
import time

import pytest

import legacy
from conftest import ROOT, connect
from schema_dsl import Database
from schema_dsl.sqlite import structure
from schema_dsl.abathur import SCHEMA
from schema_dsl.analysis.compare import expected_structure
from schema_dsl.compile.target import target_for
from schema_dsl.errors import DatabaseFileError, QueryRefused, SchemagenError

INDEX6_QUERY = next(ix.serves[0] for ix in SCHEMA.indexes if ix.name == "idx_memory_namespace_key_version")
PER_CONNECTION = {"foreign_keys": 1, "busy_timeout": 5000, "synchronous": 1, "wal_autocheckpoint": 1000}


def run(coro):
    return asyncio.run(coro)


def structure_problems(path):
    conn = sqlite3.connect(str(path))
    try:
        return [m for k, m in structure.compare(expected_structure(SCHEMA), structure.read_structure(conn)) if k != "extra"]
    finally:
        conn.close()


def count(path, table):
    conn = sqlite3.connect(str(path))
    try:
        return conn.execute('SELECT count(*) FROM "%s"' % table).fetchone()[0]
    finally:
        conn.close()


async def pragmas(conn):
    out = {}
    for name in (*PER_CONNECTION, "journal_mode"):
        async with conn.execute("PRAGMA %s" % name) as cursor:
            out[name] = (await cursor.fetchone())[0]
    return out


# --- initialize ---------------------------------------------------------------

def test_initialize_creates_the_parent_folder_and_the_schema_then_is_idempotent(tmp_path):
    path = tmp_path / "deep" / "er" / "abathur.db"
    db = Database(path)
    first = run(db.initialize())
    assert path.parent.is_dir() and path.is_file()
    assert first.applied and first.plan.fresh
    assert structure_problems(path) == []
    second = run(db.initialize())
    assert not second.applied and second.plan.up_to_date
    conn = sqlite3.connect(str(path))
    names = [r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'index' AND name NOT LIKE 'sqlite_%'")]
    assert len(names) == 33
    assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    conn.close()


@pytest.mark.parametrize("shape", legacy.SHAPES)
def test_initialize_migrates_each_old_shape_keeping_rows(tmp_path, shape):
    path = str(tmp_path / ("%s.db" % shape))
    legacy.create(path, shape, tasks=200)
    before = {t: count(path, t) for t in ("tasks", "agents", "state", "audit", "metrics", "checkpoints")}
    result = run(Database(path).initialize())
    assert result.applied and not result.plan.fresh
    assert structure_problems(path) == []
    assert {t: count(path, t) for t in before} == before
    conn = sqlite3.connect(path)
    assert conn.execute("SELECT prompt FROM tasks WHERE id = 'task-3'").fetchone() == ("prompt 3",)
    conn.close()
    assert not run(Database(path).initialize()).applied


def test_initialize_refuses_memory_and_reports_a_bad_file(tmp_path):
    with pytest.raises(DatabaseFileError, match="memory"):
        Database(":memory:")
    bad = tmp_path / "notes.db"
    bad.write_text("not a database, just text")
    with pytest.raises(DatabaseFileError, match="not an SQLite database"):
        run(Database(bad).initialize())
    assert bad.read_text() == "not a database, just text"


def test_initialize_runs_the_same_planner_as_apply(tmp_path, monkeypatch):
    import schema_dsl.migrate.apply as apply_mod
    calls = []
    real = apply_mod.apply

    def spy(path, **kwargs):
        calls.append(path)
        return real(path, **kwargs)

    monkeypatch.setattr(apply_mod, "apply", spy)
    run(Database(tmp_path / "a.db").initialize())
    assert calls == [str(tmp_path / "a.db")]


def test_apply_path_does_not_import_asyncio_or_aiosqlite():
    code = ("import sys, schema_dsl, schema_dsl.migrate.apply, schema_dsl.cli, schema_dsl.check.report;"
            "print(sorted(m for m in ('asyncio', 'aiosqlite', 'schema_dsl.database') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, cwd=str(ROOT))
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[]"


def test_a_database_on_a_file_loads_nothing_of_postgresql(tmp_path):
    """Database on an SQLite file gets its dialect from the registry, which imports PostgreSQL's (pg/, psycopg)
    only for a URL."""
    code = ("import sys, asyncio; from schema_dsl import Database;"
            "db = Database(sys.argv[1]); asyncio.run(db.initialize()); asyncio.run(db.close());"
            "print(db.dialect.name, sorted(m for m in sys.modules if m.startswith(('psycopg', 'schema_dsl.pg'))"
            " or m == 'schema_dsl.dialects.postgresql'))")
    out = subprocess.run([sys.executable, "-c", code, str(tmp_path / "a.db")], capture_output=True, text=True,
                         timeout=60, cwd=str(ROOT))
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "sqlite []"


# --- connections --------------------------------------------------------------

def test_every_connection_gets_the_per_connection_pragmas(tmp_path):
    db = Database(tmp_path / "a.db")

    async def scenario():
        await db.initialize()
        seen = []
        async with db.connect() as a, db.connect() as b, db.connect() as c:
            for conn in (a, b, c):
                seen.append(await pragmas(conn))
        async with db.connect() as d:  # one opened after the others closed
            seen.append(await pragmas(d))
        return seen

    seen = run(scenario())
    assert len(seen) == 4
    for found in seen:
        assert {k: found[k] for k in PER_CONNECTION} == PER_CONNECTION
        assert found["journal_mode"] == "wal"


def test_foreign_keys_are_enforced_on_every_connection(tmp_path):
    db = Database(tmp_path / "a.db")

    async def scenario():
        await db.initialize()
        async with db.connect() as setup:
            await setup.execute("INSERT INTO sessions (id, app_name, user_id) VALUES ('s1', 'app', 'u')")
            await setup.execute(
                "INSERT INTO tasks (id, prompt, status, input_data, submitted_at, last_updated_at, session_id) "
                "VALUES ('t1', 'p', 'pending', '{}', '2025-01-01', '2025-01-01', 's1')")
            await setup.commit()
        refused = []
        for _ in range(3):
            async with db.connect() as conn:
                try:
                    await conn.execute("INSERT INTO agents (id, name, specialization, task_id, state, model, spawned_at) "
                                       "VALUES ('a-x', 'a', 's', 'no-such-task', 'idle', 'm', '2025-01-01')")
                except sqlite3.IntegrityError as exc:
                    refused.append(str(exc))
                await conn.rollback()
        async with db.connect() as conn:  # ON DELETE SET NULL fires: foreign keys are on here too
            await conn.execute("DELETE FROM sessions WHERE id = 's1'")
            await conn.commit()
            async with conn.execute("SELECT session_id FROM tasks WHERE id = 't1'") as cursor:
                after = await cursor.fetchone()
        return refused, after

    refused, after = run(scenario())
    assert len(refused) == 3 and all("FOREIGN KEY" in r for r in refused)
    assert after == (None,)


def test_close_closes_the_connections_still_open_and_the_database_stays_usable(tmp_path):
    db = Database(tmp_path / "a.db")

    async def scenario():
        await db.initialize()
        manager = db.connect()
        conn = await manager.__aenter__()
        await db.close()
        with pytest.raises(ValueError):
            await conn.execute("SELECT 1")
        await manager.__aexit__(None, None, None)
        await db.close()  # idempotent
        async with db.connect() as again:
            async with again.execute("SELECT count(*) FROM tasks") as cursor:
                return (await cursor.fetchone())[0]

    assert run(scenario()) == 0


# --- the helpers ----------------------------------------------------------------

def test_helpers_on_a_clean_file(tmp_path):
    db = Database(tmp_path / "a.db")

    async def scenario():
        await db.initialize()
        return (await db.validate_foreign_keys(), await db.integrity_check(), await db.integrity_check(full=True),
                await db.explain_query_plan(INDEX6_QUERY, ("ns", "k")),
                await db.explain_query_plan("SELECT value FROM state WHERE task_id = ? AND key = ?;", ["t", "k"]))

    fks, quick, full, plan6, plan_state = run(scenario())
    assert fks == []
    assert quick == ["ok"] and full == ["ok"]
    assert any("USING INDEX" in line for line in plan6) and plan6[0].startswith("SEARCH memory_entries")
    assert all(isinstance(line, str) for line in plan_state) and "state" in plan_state[0]


def test_helpers_on_a_file_with_an_orphan_row(tmp_path, caplog):
    path = str(tmp_path / "orphan.db")
    legacy.create(path, "old", tasks=30, orphans=1)
    conn = sqlite3.connect(path)
    orphan_rowid = conn.execute("SELECT rowid FROM audit WHERE action_type = 'orphan'").fetchone()[0]
    conn.close()
    db = Database(path)

    async def scenario():
        result = await db.initialize()
        return result, await db.validate_foreign_keys(), await db.integrity_check()

    with caplog.at_level("WARNING", logger="schema_dsl.database"):
        result, violations, integrity = run(scenario())
    assert result.applied
    assert len(violations) == 1
    table, rowid, parent, fkid = violations[0]
    assert (table, rowid, parent) == ("audit", orphan_rowid, "tasks")
    assert isinstance(fkid, int)
    assert integrity == ["ok"]
    assert "audit" in caplog.text and str(orphan_rowid) in caplog.text
    assert count(path, "audit") == 31  # the orphan row is kept


@pytest.mark.parametrize("query", [
    "SELECT 1; DROP TABLE tasks",
    "SELECT 1; SELECT 2",
    "DROP TABLE tasks",
    "DELETE FROM tasks",
    "UPDATE tasks SET status = 'x'",
    "INSERT INTO metrics (timestamp, metric_name, metric_value) VALUES ('t', 'm', 1)",
    "PRAGMA foreign_keys = OFF",
    "WITH doomed AS (SELECT id FROM tasks) DELETE FROM tasks WHERE id IN (SELECT id FROM doomed)",
    "EXPLAIN SELECT 1",
    "SELECT 'unclosed",
    "",
    "  ;  ",
])
def test_explain_query_plan_refuses_anything_but_one_select(tmp_path, query):
    db = Database(tmp_path / "a.db")
    run(db.initialize())
    with pytest.raises(QueryRefused) as info:
        run(db.explain_query_plan(query))
    assert isinstance(info.value, SchemagenError)
    assert "query:" in str(info.value)
    assert count(tmp_path / "a.db", "tasks") == 0
    conn = sqlite3.connect(str(tmp_path / "a.db"))
    assert conn.execute("SELECT count(*) FROM sqlite_master WHERE name = 'tasks'").fetchone()[0] == 1
    conn.close()


@pytest.mark.parametrize("query", [
    "SELECT 'a;b' FROM tasks",
    "select * from tasks where id = ? -- a trailing comment",
    "WITH x AS (SELECT id FROM tasks) SELECT * FROM x;",
    "SELECT * FROM tasks /* ; */ WHERE id = ?",
])
def test_explain_query_plan_accepts_single_selects(tmp_path, query):
    db = Database(tmp_path / "a.db")
    run(db.initialize())
    lines = run(db.explain_query_plan(query, (None,) * query.count("?")))
    assert lines and all(isinstance(line, str) for line in lines)


def test_create_helpers_run_the_three_rendered_files(tmp_path):
    path = tmp_path / "helpers.db"
    sqlite3.connect(str(path)).close()  # the caller makes the file: connect() never creates one
    db = Database(path)

    async def scenario():
        async with db.connect() as conn:
            await db._create_memory_tables(conn)
            async with conn.execute("SELECT name FROM sqlite_master WHERE type = 'table' ORDER BY rowid") as cursor:
                after_memory = [r[0] for r in await cursor.fetchall()]
            await db._create_core_tables(conn)
            await db._create_core_indexes(conn)
            await conn.commit()
        return after_memory

    after_memory = run(scenario())
    assert [t for t in after_memory if not t.startswith("sqlite_")] == ["sessions", "memory_entries", "document_index"]
    assert structure_problems(path) == []


# --- the old code's operations, through connect() ---------------------------

async def old_code_operations(conn):
    """legacy.old_code_statements, statement for statement, on an aiosqlite connection."""
    cols = legacy.task_columns("old")
    values = ["task-new-1", "do it", "general", 7, "pending", "{}", None, None, 0, 3, 3600,
              "2025-06-01 00:00:00", None, None, "2025-06-01 00:00:00", "me", None, "[]"]

    async def fetchall(sql, params=()):
        async with conn.execute(sql, params) as cursor:
            return [tuple(r) for r in await cursor.fetchall()]

    await conn.execute("INSERT INTO tasks (%s) VALUES (%s)" % (", ".join(cols), ", ".join("?" * len(cols))), values)
    await conn.execute("UPDATE tasks SET status=?, started_at=?, last_updated_at=? WHERE id=?",
                       ("running", "2025-06-01 00:00:01", "2025-06-01 00:00:01", "task-new-1"))
    await conn.execute("UPDATE tasks SET retry_count = retry_count + 1 WHERE id = ?", ("task-new-1",))
    by_id = await fetchall("SELECT * FROM tasks WHERE id = ?", ("task-new-1",))
    by_status = await fetchall("SELECT * FROM tasks WHERE status = ? ORDER BY priority DESC, submitted_at ASC", ("pending",))
    timed_out = await fetchall("SELECT * FROM tasks WHERE status = 'running' AND (julianday('now') - "
                               "julianday(last_updated_at)) * 86400 > max_execution_timeout_seconds")
    await conn.execute("INSERT INTO agents (id, name, specialization, task_id, state, model, spawned_at, terminated_at, "
                       "resource_usage) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                       ("agent-new-1", "a", "s", "task-new-1", "idle", "m", "2025-06-01 00:00:02", None, None))
    await conn.execute("UPDATE agents SET state=?, terminated_at=? WHERE id=?",
                       ("terminated", "2025-06-01 00:01:00", "agent-new-1"))
    for value in ('"one"', '"two"'):
        await conn.execute("INSERT INTO state (task_id, key, value, created_at, updated_at) VALUES (?, ?, ?, ?, ?) "
                           "ON CONFLICT(task_id, key) DO UPDATE SET value=excluded.value, updated_at=excluded.updated_at",
                           ("task-new-1", "k", value, "2025-06-01", "2025-06-02"))
    state_value = await fetchall("SELECT value FROM state WHERE task_id=? AND key=?", ("task-new-1", "k"))
    await conn.execute("INSERT INTO audit (timestamp, agent_id, task_id, action_type, action_data, result) "
                       "VALUES (?, ?, ?, ?, ?, ?)", ("2025-06-01", "agent-new-1", "task-new-1", "spawn", "{}", "ok"))
    await conn.commit()
    return {"by_id": by_id, "by_status": by_status, "timed_out": timed_out, "state_value": state_value}


@pytest.mark.parametrize("shape", [None, *legacy.SHAPES])
def test_old_code_operations_work_through_connect_with_foreign_keys_on(tmp_path, shape):
    path = str(tmp_path / "a.db")
    if shape is not None:
        legacy.create(path, shape, tasks=60)
    db = Database(path)
    run(db.initialize())
    twin = str(tmp_path / "twin.db")
    shutil.copy(path, twin)
    for suffix in ("-wal", "-shm"):
        if os.path.exists(path + suffix):
            shutil.copy(path + suffix, twin + suffix)

    async def scenario():
        async with db.connect() as conn:
            assert (await pragmas(conn))["foreign_keys"] == 1
            return await old_code_operations(conn)

    got = run(scenario())
    expected_conn = connect(twin)  # the old code itself, on an identical copy, foreign keys ON
    expected = legacy.old_code_statements(expected_conn)
    expected_conn.close()
    assert got == {k: [tuple(r) for r in v] for k, v in expected.items()}
    assert got["state_value"] == [('"two"',)]
    assert got["by_id"][0][4] == "running" and got["by_id"][0][8] == 1  # status, retry_count
    assert run(db.validate_foreign_keys()) == []


# --- several processes at once ---------------------------------------------------

WORKER = r"""
import asyncio, json, os, sys, time
from schema_dsl import Database
path, ready, go = sys.argv[1:4]
open(ready, "w").close()
deadline = time.monotonic() + 60
while not os.path.exists(go) and time.monotonic() < deadline:
    time.sleep(0.002)
result = asyncio.run(Database(path).initialize())
print(json.dumps({"applied": result.applied, "fresh": result.plan.fresh}))
"""


def _initialize_in_processes(tmp_path, path, n=4):
    go = tmp_path / "go"
    procs, readies = [], []
    for k in range(n):
        ready = tmp_path / ("ready-%d" % k)
        readies.append(ready)
        procs.append(subprocess.Popen([sys.executable, "-c", WORKER, str(path), str(ready), str(go)],
                                      stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True))
    deadline = time.monotonic() + 60
    while not all(r.exists() for r in readies) and time.monotonic() < deadline:
        time.sleep(0.01)
    go.touch()
    outcomes = []
    for p in procs:
        out, err = p.communicate(timeout=180)
        assert p.returncode == 0, err
        outcomes.append(json.loads(out.strip().splitlines()[-1]))
    return outcomes


def test_concurrent_initialize_on_an_old_file_one_migrates_all_valid(tmp_path):
    path = str(tmp_path / "shared.db")
    legacy.create(path, "template", tasks=4000)
    before = {t: count(path, t) for t in ("tasks", "agents", "state", "audit", "metrics", "checkpoints")}
    outcomes = _initialize_in_processes(tmp_path, path)
    assert sum(1 for o in outcomes if o["applied"]) == 1
    assert not any(o["fresh"] for o in outcomes)
    assert structure_problems(path) == []
    assert {t: count(path, t) for t in before} == before
    assert not run(Database(path).initialize()).applied
    assert run(Database(path).integrity_check(full=True)) == ["ok"]


def test_concurrent_initialize_on_a_new_file_creates_it_once(tmp_path):
    path = tmp_path / "new" / "shared.db"
    outcomes = _initialize_in_processes(tmp_path, path)
    assert sum(1 for o in outcomes if o["applied"]) == 1
    assert structure_problems(path) == []


def test_initialize_waits_for_a_lock_held_longer_than_busy_timeout(tmp_path):
    path = str(tmp_path / "locked.db")
    legacy.create(path, "old", tasks=20)
    holder = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    holder.execute("BEGIN IMMEDIATE")
    released = threading.Event()

    def release():
        time.sleep(6.0)  # longer than one try's busy_timeout (5 s): initialize must try again
        holder.execute("COMMIT")
        holder.close()
        released.set()

    thread = threading.Thread(target=release)
    thread.start()
    try:
        result = run(Database(path, lock_timeout=60).initialize())
    finally:
        thread.join()
    assert released.is_set()
    assert result.applied
    assert structure_problems(path) == []


def test_initialize_gives_up_after_lock_timeout(tmp_path):
    path = str(tmp_path / "locked.db")
    legacy.create(path, "old", tasks=5)
    holder = sqlite3.connect(path, isolation_level=None)
    holder.execute("BEGIN IMMEDIATE")
    try:
        with pytest.raises(DatabaseFileError, match="locked"):
            run(Database(path, lock_timeout=0).initialize())
    finally:
        holder.execute("ROLLBACK")
        holder.close()
    assert structure_problems(path) != []  # nothing was changed


class _LockedOnce:
    """A connection whose first journal_mode switch answers 'database is locked' at once, as SQLite can
    while another process opens the file."""

    def __init__(self, failures):
        self.failures, self.executed = failures, []

    def execute(self, stmt):
        if "journal_mode" in stmt and self.failures:
            self.failures -= 1
            raise sqlite3.OperationalError("database is locked")
        self.executed.append(stmt)


def test_the_switch_to_wal_after_commit_is_retried_when_locked():
    from schema_dsl.migrate.apply import _finish_connection
    from schema_dsl.compile.target import shipped_target
    files = shipped_target().files
    conn = _LockedOnce(failures=3)
    _finish_connection(conn, files)
    assert conn.failures == 0
    assert any("journal_mode" in s for s in conn.executed)


def test_a_wal_switch_that_stays_locked_fails_with_one_line(monkeypatch):
    from schema_dsl.migrate import apply as apply_mod
    monkeypatch.setattr(apply_mod, "DEFAULT_TIMEOUT_S", 0.05)
    conn = _LockedOnce(failures=10 ** 6)
    with pytest.raises(SchemagenError, match="could not set connection settings after apply: database is locked"):
        apply_mod._finish_connection(conn, target_for(None).files)


def test_database_is_an_async_context_manager_and_connect_is_awaitable_too(tmp_path):
    path = tmp_path / "ctx.db"

    async def go():
        async with Database(path) as db:
            assert db.last_apply is not None and db.last_apply.applied
            async with db.connect() as conn:
                await conn.execute("INSERT INTO sessions (id, app_name, user_id) VALUES ('s', 'a', 'u')")
                await conn.commit()
            conn = await db.connect()
            cursor = await conn.execute("PRAGMA foreign_keys")
            assert (await cursor.fetchone())[0] == 1
            kept = conn
        # leaving the block closed the awaited connection too
        with pytest.raises(ValueError):
            await kept.execute("SELECT 1")

    asyncio.run(go())
    assert sqlite3.connect(str(path)).execute("SELECT count(*) FROM sessions").fetchone()[0] == 1


def test_connect_before_initialize_never_creates_an_empty_file(tmp_path):
    path = tmp_path / "none.db"

    async def go():
        db = Database(path)
        with pytest.raises(DatabaseFileError, match="call initialize"):
            async with db.connect():
                pass
        with pytest.raises(DatabaseFileError):
            await db.connect()

    asyncio.run(go())
    assert sorted(p.name for p in tmp_path.iterdir()) == []


def test_the_package_is_typed():
    import schema_dsl
    from pathlib import Path
    assert (Path(schema_dsl.__file__).parent / "py.typed").is_file()
    assert Database.connect.__annotations__ and Database.initialize.__annotations__


@pytest.mark.parametrize("backup", [True, False])
def test_the_data_loss_refusal_names_the_apis_own_parameter(tmp_path, backup):
    """issue 17.9: the API's refusal says initialize(allow_data_loss=True), never a CLI flag."""
    from schema_dsl.errors import Declined, UnsafeMigrationError
    from schema_dsl.model import Column, PrimaryKey, Schema, Table, removed
    path = tmp_path / "app.db"
    conn = sqlite3.connect(path)
    conn.executescript("CREATE TABLE notes (id INTEGER PRIMARY KEY, body TEXT); CREATE TABLE old (x);"
                       "INSERT INTO old VALUES (1);")
    conn.close()
    schema = Schema("app", [Table("notes", [Column("id", "INTEGER"), Column("body", "TEXT")],
                                  primary_key=PrimaryKey(("id",)))],
                    removed=[removed("table", "old", "no longer used")])
    with pytest.raises((Declined, UnsafeMigrationError)) as caught:
        run(Database(path, schema=schema).initialize(backup=backup))
    message = str(caught.value)
    assert "initialize(allow_data_loss=True)" in message and "--" not in message
    assert "table 'old'" in message
    assert run(Database(path, schema=schema).initialize(allow_data_loss=True, backup=backup)).applied
