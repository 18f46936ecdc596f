"""`schemagen transfer`: every legacy Abathur shape, migrated on SQLite, moved to a real PostgreSQL server with
counts and checksums matching and the old code's queries running there; values that cannot convert, orphans, a
non-empty target and a transfer killed mid-way leave the target unchanged; passwords are never printed."""
from __future__ import annotations

import datetime
import json
import os
import signal
import sqlite3
import subprocess
import sys
import time

import pytest

import legacy
from conftest import ROOT
from pg_cluster import pg_cluster, pg_url  # noqa: F401 (fixtures)
from schema_dsl.migrate.apply import apply as sqlite_apply

TABLES = ("sessions", "memory_entries", "document_index", "tasks", "agents", "state", "audit", "metrics", "checkpoints")


def _cli(runner, *args):
    from schema_dsl.cli import main
    return runner.invoke(main, list(args), catch_exceptions=False)


def _connect(url):
    import psycopg
    return psycopg.connect(url, autocommit=True)


def _source(tmp_path, shape="old", tasks=200, **kwargs):
    """A legacy database of `shape`, migrated to the declaration by SQLite's apply."""
    path = str(tmp_path / ("%s.db" % shape))
    legacy.create(path, shape, tasks=tasks, **kwargs)
    sqlite_apply(path, backup=False)
    return path


def _new_rows(path):
    """Rows in the tables the migration added: jsonb, boolean and bytea columns, SQLite's own CURRENT_TIMESTAMP."""
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("PRAGMA foreign_keys = ON")
    conn.execute("INSERT INTO sessions (id, app_name, user_id, events, state) "
                 "VALUES ('s1', 'app', 'u', '[{\"e\": 1}]', '{\"b\": 1,  \"a\": 2, \"a\": 3}')")
    conn.executemany("INSERT INTO memory_entries (namespace, key, value, memory_type, is_deleted, created_at) "
                     "VALUES (?, ?, ?, 'semantic', ?, ?)",
                     [("user:a", "k%d" % i, '{"v": %d, "f": 1e2, "s": "caf\u00e9"}' % i, i % 2,
                       "2025-01-02 03:04:05.%06d" % i) for i in range(1, 6)])
    conn.execute("INSERT INTO document_index (file_path, title, content_hash, embedding_blob) "
                 "VALUES ('a.md', 'A', 'h', x'00ff10')")
    conn.execute("UPDATE tasks SET session_id = 's1' WHERE id = 'task-1'")
    conn.execute("UPDATE audit SET memory_entry_id = 2 WHERE id = 1")
    conn.close()


def _transfer(runner, source, url, *extra):
    return _cli(runner, "transfer", "--from", source, "--to", url, *extra)


def _counts(url):
    with _connect(url) as conn:
        present = {r[0] for r in conn.execute("SELECT tablename FROM pg_tables WHERE schemaname = 'public'")}
        return {t: conn.execute('SELECT count(*) FROM "%s"' % t).fetchone()[0] for t in TABLES if t in present}


def _sqlite_counts(path):
    conn = sqlite3.connect(path)
    try:
        return {t: conn.execute('SELECT count(*) FROM "%s"' % t).fetchone()[0] for t in TABLES}
    finally:
        conn.close()


def _plant(path, sql, *args):
    """Write a value the declaration's CHECKs would refuse (as an old file may hold it)."""
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("PRAGMA ignore_check_constraints = ON")
    conn.execute(sql, args)
    conn.close()


# --- every legacy shape ---------------------------------------------------------------------

@pytest.mark.parametrize("shape", legacy.SHAPES)
def test_every_legacy_shape_migrated_then_transferred_keeps_every_row(runner, tmp_path, pg_url, shape):
    path = _source(tmp_path, shape)
    _new_rows(path)
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("PRAGMA foreign_keys = ON")
    legacy.old_code_statements(conn, shape)  # the old code's own writes: a date-only timestamp, a JSON string
    conn.execute("UPDATE tasks SET submitted_at = '2025-01-02T03:04:05.123456Z', "
                 "input_data = '{\"b\": 1,  \"a\": [1.5, 2], \"a\": {\"x\": null}}' WHERE id = 'task-3'")
    seq = conn.execute("SELECT seq FROM sqlite_sequence WHERE name = 'metrics'").fetchone()[0]
    high = conn.execute("SELECT max(id) FROM metrics").fetchone()[0]
    sqlite_task = conn.execute("SELECT id, priority, status, parent_task_id FROM tasks WHERE id = 'task-11'").fetchone()
    children = [r[0] for r in conn.execute("SELECT id FROM tasks WHERE parent_task_id = 'task-5' ORDER BY id")]
    pending = [r[0] for r in conn.execute("SELECT id FROM tasks WHERE status = 'pending' "
                                          "ORDER BY priority DESC, submitted_at ASC, id")]
    conn.close()
    assert seq > high  # legacy.create deletes the highest metric: the sequence is past max(id)
    expected = _sqlite_counts(path)

    result = _transfer(runner, path, pg_url, "--json")
    assert result.exit_code == 0, result.output + result.stderr
    report = json.loads(result.output)
    assert report["applied_schema"] is True
    for table in TABLES:
        info = report["tables"][table]
        assert info["rows"] == info["target_rows"] == expected[table], table
        assert info["checksum"] == info["target_checksum"], table
    assert _counts(pg_url) == expected
    assert any("snapshot" in n for n in report["notes"]) and any("jsonb" in n for n in report["notes"])
    assert report["sequences"]["metrics.id"] == seq

    with _connect(pg_url) as pg:
        # the old code's queries, translated (%s placeholders, true/false booleans)
        assert pg.execute("SELECT id, priority, status, parent_task_id FROM tasks WHERE id = %s",
                          ("task-11",)).fetchone() == sqlite_task
        assert [r[0] for r in pg.execute("SELECT id FROM tasks WHERE parent_task_id = %s ORDER BY id",
                                         ("task-5",))] == children
        assert [r[0] for r in pg.execute("SELECT id FROM tasks WHERE status = %s ORDER BY priority DESC, "
                                         "submitted_at ASC, id COLLATE \"C\"", ("pending",))] == pending
        assert pg.execute("SELECT value FROM state WHERE task_id = %s AND key = %s",
                          ("task-new-1", "k")).fetchone() == ('"two"',)
        timed_out = pg.execute("SELECT count(*) FROM tasks WHERE status = 'running' AND extract(epoch from "
                               "((now() at time zone 'utc') - last_updated_at)) > max_execution_timeout_seconds")
        assert timed_out.fetchone()[0] >= 1  # task-new-1 has been running since 2025
        submitted, data = pg.execute("SELECT submitted_at, input_data FROM tasks WHERE id = 'task-3'").fetchone()
        assert submitted == datetime.datetime(2025, 1, 2, 3, 4, 5, 123456)  # microseconds kept, Z read as UTC
        assert data == '{"b": 1,  "a": [1.5, 2], "a": {"x": null}}'  # a text column: kept as it was
        assert pg.execute("SELECT state, events FROM sessions").fetchone() == ({"a": 3, "b": 1}, [{"e": 1}])
        assert pg.execute("SELECT state::text FROM sessions").fetchone()[0] == '{"a": 3, "b": 1}'  # jsonb's rewrite
        assert pg.execute("SELECT is_deleted, value, created_at FROM memory_entries WHERE key = 'k3'").fetchone() == \
            (True, {"v": 3, "f": 100.0, "s": "caf\u00e9"}, datetime.datetime(2025, 1, 2, 3, 4, 5, 3))
        assert pg.execute("SELECT count(*) FROM memory_entries WHERE is_deleted = false").fetchone()[0] == 2
        assert pg.execute("SELECT embedding_blob FROM document_index").fetchone()[0] == b"\x00\xff\x10"
        assert pg.execute("SELECT memory_entry_id FROM audit WHERE id = 1").fetchone()[0] == 2
        assert pg.execute("SELECT created_at FROM state WHERE task_id = 'task-new-1'").fetchone()[0] == \
            datetime.datetime(2025, 6, 1)
        # the identity sequence continues past both max(id) and sqlite_sequence
        new_id = pg.execute("INSERT INTO metrics (timestamp, metric_name, metric_value) "
                            "VALUES (now(), 'x', 1) RETURNING id").fetchone()[0]
        assert new_id == seq + 1
        assert pg.execute("SELECT count(*) FROM pg_constraint WHERE contype = 'f' AND NOT convalidated").fetchone()[0] == 0
    valid = _cli(runner, "validate", "--db", pg_url, "--json")
    assert valid.exit_code == 0, valid.output
    assert json.loads(valid.output)["ok"]


def test_a_child_before_its_parent_and_an_already_applied_target(runner, tmp_path, pg_url):
    path = _source(tmp_path, tasks=20)
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("PRAGMA foreign_keys = ON")
    # a parent inserted after its child: rowid order puts the child first
    conn.execute("INSERT INTO tasks (id, prompt, agent_type, priority, status, input_data, submitted_at, "
                 "last_updated_at, parent_task_id) SELECT 'late-parent', 'p', 'general', 1, 'pending', '{}', "
                 "'2025-01-01', '2025-01-01', NULL")
    conn.execute("UPDATE tasks SET parent_task_id = 'late-parent' WHERE id = 'task-0'")
    assert conn.execute("SELECT rowid FROM tasks WHERE id = 'task-0'").fetchone()[0] < \
        conn.execute("SELECT rowid FROM tasks WHERE id = 'late-parent'").fetchone()[0]
    conn.close()
    assert _cli(runner, "apply", "--db", pg_url).exit_code == 0
    result = _transfer(runner, path, pg_url)
    assert result.exit_code == 0, result.output + result.stderr
    assert "the declaration was applied first" not in result.output
    assert "writes made to it after that are not moved" in result.output
    with _connect(pg_url) as pg:
        assert pg.execute("SELECT parent_task_id FROM tasks WHERE id = 'task-0'").fetchone()[0] == "late-parent"


def test_a_source_that_does_not_match_the_declaration_is_refused(runner, tmp_path, pg_url):
    path = str(tmp_path / "old.db")
    legacy.create(path, "old", tasks=10)  # not migrated
    result = _transfer(runner, path, pg_url)
    assert result.exit_code == 2
    assert "does not match the declaration" in result.stderr and "nothing was changed" in result.stderr
    assert _counts(pg_url) == {}


# --- values that cannot convert -----------------------------------------------------------

@pytest.mark.parametrize("sql, value, where, what", [
    ("UPDATE tasks SET prompt = ? WHERE id = 'task-7'", "bad\0text", "table 'tasks', row id='task-7', column 'prompt'",
     "text holding NUL"),
    ("UPDATE tasks SET submitted_at = ? WHERE id = 'task-8'", "yesterday", "table 'tasks', row id='task-8', column "
     "'submitted_at'", "'yesterday' is not a timestamp"),
    ("UPDATE tasks SET started_at = ? WHERE id = 'task-9'", "2025-02-30 10:00:00", "table 'tasks', row id='task-9', "
     "column 'started_at'", "is not a timestamp"),
    # PostgreSQL reads these as another time (03:05:00, the next day): refused by name, never moved as that
    ("UPDATE tasks SET started_at = ? WHERE id = 'task-10'", "2025-01-02 03:04:60", "table 'tasks', row "
     "id='task-10', column 'started_at'", "is not a timestamp"),
    ("UPDATE audit SET timestamp = ? WHERE id = 6", "2025-01-02 24:00:00", "table 'audit', row id=6, column "
     "'timestamp'", "is not a timestamp"),
    ("UPDATE memory_entries SET value = ? WHERE id = 3", "{not json", "table 'memory_entries', row id=3, column "
     "'value'", "invalid JSON"),
    ("UPDATE sessions SET state = ? WHERE id = 's1'", '{"a": "x\\u0000y"}', "table 'sessions', row id='s1', column "
     "'state'", "JSON holding NUL"),
    ("UPDATE memory_entries SET is_deleted = ? WHERE id = 2", 2, "table 'memory_entries', row id=2, column "
     "'is_deleted'", "is not 0 or 1"),
    ("UPDATE tasks SET priority = ? WHERE id = 'task-5'", "high", "table 'tasks', row id='task-5', column 'priority'",
     "is not an integer"),
])
def test_a_value_that_cannot_convert_stops_the_transfer_naming_table_row_column(runner, tmp_path, pg_url, sql, value,
                                                                                where, what):
    path = _source(tmp_path, tasks=30)
    _new_rows(path)
    _plant(path, sql, value)
    assert _cli(runner, "apply", "--db", pg_url).exit_code == 0
    result = _transfer(runner, path, pg_url)
    assert result.exit_code == 2, result.output
    assert where in result.stderr and what in result.stderr, result.stderr
    assert "never coerced to NULL" in result.stderr
    assert _counts(pg_url) == dict.fromkeys(TABLES, 0)


def test_a_row_the_target_refuses_names_the_table_and_changes_nothing(runner, tmp_path, pg_url):
    path = _source(tmp_path, tasks=30)
    _plant(path, "UPDATE metrics SET metric_value = -1 WHERE id = 4")
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("CREATE TABLE notes_of_my_own (x TEXT)")
    conn.close()
    assert _cli(runner, "apply", "--db", pg_url).exit_code == 0
    result = _transfer(runner, path, pg_url)
    assert result.exit_code == 2
    assert "table 'metrics'" in result.stderr and "check constraint" in result.stderr
    assert "rolled back, nothing was changed" in result.stderr
    assert _counts(pg_url) == dict.fromkeys(TABLES, 0)
    _plant(path, "UPDATE metrics SET metric_value = 1 WHERE id = 4")
    result = _transfer(runner, path, pg_url)
    assert result.exit_code == 0 and "notes_of_my_own" in result.output  # named as not moved


@pytest.mark.parametrize("kind", ["hashtextextended", "md5"])
def test_a_checksum_mismatch_rolls_back_naming_the_table(runner, tmp_path, pg_url, monkeypatch, kind):
    """Whichever way rows are hashed (on the server for a local one, in this process for a remote one)."""
    from schema_dsl.pg import transfer
    monkeypatch.setattr(transfer, "hash_kind", lambda conn: kind)
    path = _source(tmp_path, tasks=30)
    real = transfer._target_checksum

    def corrupt(conn, table, columns, types):  # one value changed on the way: the verification must see it
        if table == "agents":
            conn.execute("UPDATE agents SET name = name || '!' WHERE id = 'agent-3'")
        return real(conn, table, columns, types)
    monkeypatch.setattr(transfer, "_target_checksum", corrupt)
    result = _transfer(runner, path, pg_url)
    assert result.exit_code == 2
    assert "table 'agents': verification failed" in result.stderr and "rolled back" in result.stderr
    assert _counts(pg_url) == {}


def test_a_failed_transfer_into_an_empty_database_leaves_no_schema_behind(runner, tmp_path, pg_url):
    path = _source(tmp_path, tasks=30)
    _plant(path, "UPDATE tasks SET completed_at = ? WHERE id = 'task-2'", "soon")
    result = _transfer(runner, path, pg_url)
    assert result.exit_code == 2 and "column 'completed_at'" in result.stderr
    assert _counts(pg_url) == {}  # the declaration was applied in the same transaction: rolled back with it


# --- orphans ----------------------------------------------------------------------------------

def test_orphans_are_refused_naming_table_row_and_missing_parent(runner, tmp_path, pg_url):
    path = _source(tmp_path, tasks=30, orphans=2)
    assert _cli(runner, "apply", "--db", pg_url).exit_code == 0
    result = _transfer(runner, path, pg_url)
    assert result.exit_code == 2, result.output
    err = result.stderr
    assert "orphans" in err and "table 'audit': 2 rows whose task_id names no tasks row" in err
    assert "missing parent tasks(id='missing-task-0')" in err and "row id=" in err
    assert _counts(pg_url) == dict.fromkeys(TABLES, 0)


def test_orphans_not_valid_keeps_them_and_leaves_that_key_not_valid(runner, tmp_path, pg_url):
    path = _source(tmp_path, tasks=30, orphans=2)
    result = _transfer(runner, path, pg_url, "--orphans=not-valid")
    assert result.exit_code == 0, result.output + result.stderr
    assert "kept orphans" in result.output and "NOT VALID" in result.output
    with _connect(pg_url) as pg:
        rows = pg.execute("SELECT c.relname, k.conname, k.convalidated FROM pg_constraint k JOIN pg_class c "
                          "ON c.oid = k.conrelid WHERE k.contype = 'f' ORDER BY 1, 2").fetchall()
        not_valid = [(t, n) for t, n, ok in rows if not ok]
        assert len(not_valid) == 1 and not_valid[0][0] == "audit" and "task_id" in not_valid[0][1]
        assert len(rows) > 1 and all(ok for t, n, ok in rows if (t, n) not in not_valid)
        assert pg.execute("SELECT count(*) FROM audit WHERE task_id LIKE 'missing-task-%'").fetchone()[0] == 2
        with pytest.raises(Exception, match="violates foreign key"):  # new rows are still checked
            pg.execute("INSERT INTO audit (timestamp, task_id, action_type) VALUES (now(), 'nope', 'x')")


# --- a non-empty target, a killed transfer, passwords ---------------------------------------------

def test_a_target_with_rows_is_refused_and_left_as_it_was(runner, tmp_path, pg_url):
    path = _source(tmp_path, tasks=30)
    assert _transfer(runner, path, pg_url).exit_code == 0
    before = _counts(pg_url)
    again = _transfer(runner, path, pg_url)
    assert again.exit_code == 2
    assert "must be empty" in again.stderr and "tasks" in again.stderr
    assert _counts(pg_url) == before


_KILLED = """
import sys, time
from schema_dsl.compile.project import resolve, target
from schema_dsl.pg import apply, transfer
transfer.PROGRESS_ROWS = 50
def progress(event, table, rows=0, total=0, seconds=0.0):
    if event == "copy" and table == "tasks":
        print("COPYING", flush=True)
        time.sleep(120)
decl = resolve(None)
transfer.transfer(sys.argv[1], sys.argv[2], target(decl).structure, apply.compiled_for(decl), progress=progress)
"""


def test_a_transfer_killed_during_copy_leaves_the_target_unchanged(runner, tmp_path, pg_url):
    path = _source(tmp_path, tasks=400)
    assert _cli(runner, "apply", "--db", pg_url).exit_code == 0
    with _connect(pg_url) as pg:
        fks_before = pg.execute("SELECT count(*) FROM pg_constraint WHERE contype = 'f'").fetchone()[0]
    proc = subprocess.Popen([sys.executable, "-c", _KILLED, path, pg_url], cwd=str(ROOT), stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    try:
        line = proc.stdout.readline()
        assert line.strip() == "COPYING", proc.stderr.read()
        with _connect(pg_url) as pg:
            copying = pg.execute("SELECT count(*) FROM pg_stat_progress_copy p JOIN pg_class c ON c.oid = p.relid "
                                 "WHERE c.relname = 'tasks'").fetchone()[0]
        assert copying == 1  # killed in the middle of the COPY into tasks
    finally:
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)
    assert proc.returncode == -signal.SIGKILL
    deadline = time.time() + 30
    with _connect(pg_url) as pg:  # the server aborts the dead client's transaction
        while pg.execute("SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() "
                         "AND pid <> pg_backend_pid()").fetchone()[0] and time.time() < deadline:
            time.sleep(0.05)
        fks = pg.execute("SELECT count(*) FROM pg_constraint WHERE contype = 'f'").fetchone()[0]
    assert _counts(pg_url) == dict.fromkeys(TABLES, 0)
    assert fks == fks_before >= 10  # the dropped foreign keys are back: the DROP was rolled back too
    assert _transfer(runner, path, pg_url).exit_code == 0  # and the target still takes a transfer


def test_the_password_in_the_url_is_never_printed(runner, tmp_path, pg_url):
    path = _source(tmp_path, tasks=20)
    url = pg_url + "&password=s3cr3t-pw"
    for args in ((), ("--json",)):
        result = _transfer(runner, path, url, *args)
        assert "s3cr3t-pw" not in result.output + result.stderr
        assert "***" in result.output + result.stderr
    failed = _transfer(runner, path, url)  # the target is not empty now
    assert failed.exit_code == 2 and "***" in failed.stderr and "s3cr3t-pw" not in failed.output + failed.stderr


# --- the conversions ----------------------------------------------------------------------------

def test_sqlite_timestamp_formats_are_read_to_the_microsecond_as_utc():
    from schema_dsl.pg.transfer import TransferError, _Unconvertible, converter, parse_timestamp
    dt = datetime.datetime
    assert parse_timestamp("2025-03-04 05:06:07") == dt(2025, 3, 4, 5, 6, 7)
    assert parse_timestamp("2025-03-04 05:06:07.000001") == dt(2025, 3, 4, 5, 6, 7, 1)
    assert parse_timestamp("2025-03-04T05:06:07.5Z") == dt(2025, 3, 4, 5, 6, 7, 500000)
    assert parse_timestamp("2025-03-04T05:06:07+00:00") == dt(2025, 3, 4, 5, 6, 7)
    assert parse_timestamp("2025-03-04T05:06:07+02:00") == dt(2025, 3, 4, 3, 6, 7)
    assert parse_timestamp("2025-03-04 05:06") == dt(2025, 3, 4, 5, 6)
    assert parse_timestamp("2025-03-04") == dt(2025, 3, 4)
    for bad in ("", "now", "2025-13-01", "2025-03-04 05:06:07.1234567", "1712345678", "2025/03/04"):
        with pytest.raises(_Unconvertible):
            parse_timestamp(bad)
    convert, canon = converter("timestamp(6) without time zone")
    assert canon(convert("2025-03-04 05:06:07.25")) == "2025-03-04 05:06:07.25"  # timestamp_out's text
    with pytest.raises(_Unconvertible):
        converter("boolean")[0](2)
    with pytest.raises(_Unconvertible):
        converter("jsonb")[0]("NaN")
    with pytest.raises(_Unconvertible):
        converter("bytea")[0]("text, not bytes")
    # jsonb_out's text: keys by length then bytes, numbers exact as numeric keeps them
    assert converter("jsonb")[1](converter("jsonb")[0]('{"bb": 1e2, "a": [1.0, -0.0, 1.0000000000000000001]}')) == \
        '{"a": [1.0, 0.0, 1.0000000000000000001], "bb": 100}'
    with pytest.raises(TransferError):
        converter("point")


# --- exact values, compared as they were stored (issue 15, item 4) --------------------------------

def test_json_numbers_beyond_double_precision_are_kept_exactly(runner, tmp_path, pg_url):
    path = _source(tmp_path, tasks=20)
    _new_rows(path)
    exact = '{"a": 1.0000000000000000001, "bb": {"ccc": [1.50, -0.0, 1E+2, 12345678901234567890123]}, "d": "x\\ty\\\\"}'
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("UPDATE memory_entries SET value = ? WHERE id = 1", (exact,))
    conn.close()
    result = _transfer(runner, path, pg_url, "--json")
    assert result.exit_code == 0, result.output + result.stderr
    info = json.loads(result.output)["tables"]["memory_entries"]
    assert info["checksum"] == info["target_checksum"]
    with _connect(pg_url) as pg:
        assert pg.execute("SELECT value::text FROM memory_entries WHERE id = 1").fetchone()[0] == (
            '{"a": 1.0000000000000000001, "d": "x\\ty\\\\", "bb": {"ccc": [1.50, 0.0, 100, '
            '12345678901234567890123]}}')


def test_the_checksum_compares_what_was_stored_down_to_the_last_json_digit(runner, tmp_path, pg_url, monkeypatch):
    from schema_dsl.pg import transfer
    path = _source(tmp_path, tasks=20)
    _new_rows(path)
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("UPDATE memory_entries SET value = '{\"a\": 1.0000000000000000001}' WHERE id = 1")
    conn.close()
    real = transfer._target_checksum

    def rounded(conn, table, columns, types):  # the value stored as a double would hold it: the check must see it
        if table == "memory_entries":
            conn.execute("UPDATE memory_entries SET value = '{\"a\": 1.0}' WHERE id = 1")
        return real(conn, table, columns, types)
    monkeypatch.setattr(transfer, "_target_checksum", rounded)
    result = _transfer(runner, path, pg_url)
    assert result.exit_code == 2
    assert "table 'memory_entries': verification failed" in result.stderr and "rolled back" in result.stderr
    assert _counts(pg_url) == {}


def test_float_text_is_float8outs_own(pg_url):
    import random
    from schema_dsl.pg.transfer import pg_float
    rnd = random.Random(20)
    values = [0.0, -0.0, 1.0, 0.5, 1e15, 1e16, 1.5e15, 123456789012345.6, 1234567890123456.7, 999999999999999.9,
              1e-4, 1e-5, 1.5e-05, 1e300, 5e-324, 2.2250738585072014e-308, float("inf"), float("-inf"), 0.1 + 0.2,
              2.0 ** 53, 2.0 ** 53 + 2, 1e22, 1e21]
    values += [rnd.uniform(-1, 1) * 10 ** rnd.randint(-30, 30) for _ in range(3000)]
    values += [float(rnd.randint(-10 ** 17, 10 ** 17)) for _ in range(500)]
    with _connect(pg_url) as pg:
        pg.execute("SET extra_float_digits = 1")
        got = pg.execute("SELECT array_agg(v::text ORDER BY o) FROM unnest(%s::float8[]) WITH ORDINALITY u(v, o)",
                         (values,)).fetchone()[0]
    assert [pg_float(v) for v in values] == got


def test_floats_at_the_edges_of_notation_transfer_exactly(runner, tmp_path, pg_url):
    path = _source(tmp_path, tasks=20)
    edges = [1e15, 1.5e15, 1e16, 123456789012345.6, 1e-5, 0.0001, 5e-324, 1e300, -0.0, float("inf")]
    conn = sqlite3.connect(path, isolation_level=None)
    ids = [r[0] for r in conn.execute("SELECT id FROM metrics ORDER BY id LIMIT %d" % len(edges))]
    conn.executemany("UPDATE metrics SET metric_value = ? WHERE id = ?", list(zip(edges, ids)))
    conn.close()
    result = _transfer(runner, path, pg_url, "--json")
    assert result.exit_code == 0, result.output + result.stderr
    with _connect(pg_url) as pg:
        got = dict(pg.execute("SELECT id, metric_value FROM metrics WHERE id = ANY(%s)", (ids,)).fetchall())
    assert [got[i] for i in ids] == edges


def test_an_integer_a_double_cannot_hold_is_refused_not_rounded():
    # a REAL column makes SQLite store a double; a column of another affinity mapped to double precision can hold
    # an integer a double cannot: it is refused, never rounded
    from schema_dsl.pg.transfer import _Unconvertible, converter
    convert, text = converter("double precision")
    assert text(convert(2 ** 53)) == "9.007199254740992e+15"  # float8out's text
    with pytest.raises(_Unconvertible, match="9007199254740993 has no exact double"):
        convert(2 ** 53 + 1)


# --- text that is not UTF-8 (issue 15, item 14) ----------------------------------------------------

def test_text_that_is_not_utf8_is_one_line_naming_table_row_column(runner, tmp_path, pg_url):
    path = _source(tmp_path, tasks=20)
    _plant(path, "UPDATE tasks SET prompt = CAST(x'6869ff21' AS TEXT) WHERE id = 'task-4'")
    result = _transfer(runner, path, pg_url)
    assert result.exit_code == 2
    err = result.stderr.strip()
    assert "\n" not in err and "Traceback" not in result.output + result.stderr
    assert "table 'tasks', row id='task-4', column 'prompt'" in err and "not valid UTF-8" in err
    assert _counts(pg_url) == {}


# --- what is not moved is named and counted (issue 17, point 8) --------------------------------------

_FTS_DECL = """
from schema_dsl.model import Column, PrimaryKey, Schema, Table, VirtualTable
SCHEMA = Schema(name="notes", tables=[Table(name="notes", columns=[
    Column(name="id", type="INTEGER"), Column(name="body", type="TEXT", not_null=True)],
    primary_key=PrimaryKey(columns=["id"]))],
    virtual_tables=[VirtualTable(name="notes_fts", module="fts5", args="body", sqlite_only=True)])
"""


def test_an_sqlite_only_fts5_table_and_an_undeclared_table_are_named_and_counted(runner, tmp_path, pg_url, pg_cluster):
    decl = tmp_path / "notes_decl.py"
    decl.write_text(_FTS_DECL)
    path = str(tmp_path / "notes.db")
    assert _cli(runner, "apply", "--db", path, "--schema", str(decl)).exit_code == 0
    conn = sqlite3.connect(path, isolation_level=None)
    conn.executemany("INSERT INTO notes (body) VALUES (?)", [("n%d" % i,) for i in range(7)])
    conn.executemany("INSERT INTO notes_fts (body) VALUES (?)", [("n%d" % i,) for i in range(5)])
    conn.execute("CREATE TABLE scratch (x)")
    conn.executemany("INSERT INTO scratch VALUES (?)", [(i,) for i in range(3)])
    conn.close()
    result = _cli(runner, "transfer", "--from", path, "--to", pg_url, "--schema", str(decl))
    assert result.exit_code == 0, result.output + result.stderr
    assert "not moved: table 'notes_fts' (5 rows): a virtual table declared sqlite_only" in result.output
    assert "not moved: table 'scratch' (3 rows): not in the declaration" in result.output
    with _connect(pg_cluster.base) as pg:
        pg.execute('DROP DATABASE IF EXISTS "fts_json" WITH (FORCE)')
        pg.execute('CREATE DATABASE "fts_json"')
    try:
        again = _cli(runner, "transfer", "--from", path, "--to", pg_cluster.url("fts_json"), "--schema", str(decl),
                     "--json")
    finally:
        with _connect(pg_cluster.base) as pg:
            pg.execute('DROP DATABASE "fts_json" WITH (FORCE)')
    assert again.exit_code == 0, again.output + again.stderr
    report = json.loads(again.output)
    assert report["rows"] == 7 and report["rows_not_moved"] == 8
    assert [(t["table"], t["rows"]) for t in report["not_moved"]] == [("notes_fts", 5), ("scratch", 3)]


@pytest.mark.parametrize("kind", ["hashtextextended", "md5"])
def test_text_that_copy_must_escape_arrives_exactly(runner, tmp_path, pg_url, monkeypatch, kind):
    from schema_dsl.pg import transfer
    monkeypatch.setattr(transfer, "hash_kind", lambda conn: kind)
    path = _source(tmp_path, tasks=20)
    odd = {"task-1": "tab\there", "task-2": "line\nbreak\r\n", "task-3": "back\\slash \\N", "task-4": "\\N",
           "task-5": "", "task-6": "caf\u00e9 \u2603 \U0001f600"}
    conn = sqlite3.connect(path, isolation_level=None)
    conn.executemany("UPDATE tasks SET prompt = ? WHERE id = ?", [(v, k) for k, v in odd.items()])
    conn.close()
    result = _transfer(runner, path, pg_url, "--json")
    assert result.exit_code == 0, result.output + result.stderr
    report = json.loads(result.output)
    assert len(report["tables"]["tasks"]["checksum"]) == (16 if kind == "hashtextextended" else 32)
    assert report["tables"]["tasks"]["target_checksum"] == report["tables"]["tasks"]["checksum"]
    with _connect(pg_url) as pg:
        got = dict(pg.execute("SELECT id, prompt FROM tasks WHERE id = ANY(%s)", (list(odd),)).fetchall())
    assert got == odd  # '\N' the text is text, not NULL; '' is not NULL either


def test_batches_of_plain_and_escaped_lines_arrive_exactly(runner, tmp_path, pg_url):
    """Rows are read ahead in batches (READ_BATCH) and a batch of plain lines goes in one piece: values COPY must
    escape, NULLs and a text '\\N' in different batches of one table still arrive exactly, counted and checked."""
    from schema_dsl.pg import transfer
    tasks = 3 * transfer.READ_BATCH + 17
    path = _source(tmp_path, tasks=tasks)
    odd = {"task-5": "tab\there", "task-%d" % (transfer.READ_BATCH + 3): "back\\slash",
           "task-%d" % (2 * transfer.READ_BATCH + 1): "line\nbreak", "task-%d" % (tasks - 2): "\\N"}
    conn = sqlite3.connect(path, isolation_level=None)
    conn.executemany("UPDATE tasks SET prompt = ? WHERE id = ?", [(v, k) for k, v in odd.items()])
    conn.execute("UPDATE tasks SET result_data = NULL WHERE rowid % 3 = 0")
    nulls = conn.execute("SELECT count(*) FROM tasks WHERE result_data IS NULL").fetchone()[0]
    conn.close()
    result = _transfer(runner, path, pg_url, "--json")
    assert result.exit_code == 0, result.output + result.stderr
    assert json.loads(result.output)["tables"]["tasks"]["rows"] == tasks
    with _connect(pg_url) as pg:
        got = dict(pg.execute("SELECT id, prompt FROM tasks WHERE id = ANY(%s)", (list(odd),)).fetchall())
        assert pg.execute("SELECT count(*) FROM tasks WHERE result_data IS NULL").fetchone()[0] == nulls
    assert got == odd
    assert _counts(pg_url) == _sqlite_counts(path)


def test_a_bad_value_in_a_late_batch_stops_the_read_ahead_and_changes_nothing(runner, tmp_path, pg_url):
    from schema_dsl.pg import transfer
    tasks = 3 * transfer.READ_BATCH
    path = _source(tmp_path, tasks=tasks)
    _plant(path, "UPDATE tasks SET priority = ? WHERE id = ?", "high", "task-%d" % (tasks - 5))
    assert _cli(runner, "apply", "--db", pg_url).exit_code == 0
    result = _transfer(runner, path, pg_url)
    assert result.exit_code == 2, result.output
    assert "table 'tasks', row id='task-%d', column 'priority'" % (tasks - 5) in result.stderr, result.stderr
    assert _counts(pg_url) == dict.fromkeys(TABLES, 0)
    assert not [t for t in __import__("threading").enumerate() if t.name == "schemagen-transfer-read"]


def test_rows_are_hashed_on_the_server_only_when_it_is_on_this_machine():
    """A local server hashes the COPY text a second time on its own (cheap there); a remote one would get every
    byte twice over the network, so the rows are hashed in this process instead."""
    from types import SimpleNamespace

    from schema_dsl.pg.transfer import MD5_HASH, SERVER_HASH, hash_kind

    def conn(host, hostaddr=""):
        return SimpleNamespace(info=SimpleNamespace(host=host, hostaddr=hostaddr))
    assert hash_kind(conn("/tmp/pg-socket")) == SERVER_HASH
    assert hash_kind(conn("localhost", "127.0.0.1")) == SERVER_HASH
    assert hash_kind(conn("::1", "::1")) == SERVER_HASH
    assert hash_kind(conn("db.example.com", "203.0.113.7")) == MD5_HASH
    assert hash_kind(conn("10.0.0.5", "10.0.0.5")) == MD5_HASH


def test_batches_by_rowid_ranges_reach_every_row_and_refuse_a_bad_double_by_name(runner, tmp_path, pg_url,
                                                                               monkeypatch):
    """A rowid table is read in batches of READ_BATCH rowids, each joined by SQLite; the double precision values
    come from a second query over the same rowids and are joined to their own rows: rowids at both ends of the
    64-bit range and wide gaps, and a value a double column cannot take, named."""
    from schema_dsl.pg import transfer
    monkeypatch.setattr(transfer, "READ_BATCH", 3)
    ranged, real = [], transfer._range_batches

    def spy(source, table, *args):
        ranged.append(table)
        return real(source, table, *args)
    monkeypatch.setattr(transfer, "_range_batches", spy)
    path = _source(tmp_path, tasks=10)
    ids = [-(1 << 63), -5, 0, 7, 10 ** 12, 10 ** 12 + 1, 10 ** 15, (1 << 63) - 1]
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("DELETE FROM metrics")
    conn.executemany("INSERT INTO metrics (id, timestamp, metric_name, metric_value) VALUES (?, ?, ?, ?)",
                     [(i, "2025-01-02 03:04:05", "m%d" % n, n + 0.25) for n, i in enumerate(ids)])
    conn.close()
    result = _transfer(runner, path, pg_url, "--json")
    assert result.exit_code == 0, result.output + result.stderr
    with _connect(pg_url) as pg:
        got = pg.execute("SELECT id, metric_name, metric_value FROM metrics ORDER BY id").fetchall()
    assert got == [(i, "m%d" % n, n + 0.25) for n, i in enumerate(ids)]  # each value in its own row
    assert "metrics" in ranged and "tasks" in ranged  # read by rowid ranges, the double column too
    assert _counts(pg_url) == _sqlite_counts(path)
    with _connect(pg_url) as pg:
        for t in reversed(TABLES):
            pg.execute('TRUNCATE "%s" CASCADE' % t)
    _plant(path, "UPDATE metrics SET metric_value = ? WHERE id = ?", "lots", 10 ** 12 + 1)
    result = _transfer(runner, path, pg_url)
    assert result.exit_code == 2, result.output
    assert "table 'metrics', row id=%d, column 'metric_value'" % (10 ** 12 + 1) in result.stderr, result.stderr
    assert "is not a number" in result.stderr
    assert _counts(pg_url) == dict.fromkeys(TABLES, 0)


def test_a_duplicate_found_while_the_next_table_is_read_ahead_changes_nothing(runner, tmp_path, pg_url, monkeypatch):
    """Each table's indexes are built right after its rows are loaded and verified, while SQLite already reads the
    next table: a duplicate found then stops the transfer naming the table, stops the read-ahead, and rolls
    everything back."""
    import threading

    from schema_dsl.pg import transfer
    started, seen = [], []
    real_items, real_verify = transfer._Read.items, transfer._verify_table

    def items(self, source):  # in the reading thread, as it starts on a table
        started.append(self.table)
        return real_items(self, source)

    def verify(source, target, table, *args, **kwargs):
        real_verify(source, target, table, *args, **kwargs)
        if table == "agents":  # after its verification, before its primary key is built
            deadline = time.monotonic() + 10
            while "state" not in started and time.monotonic() < deadline:
                time.sleep(0.01)
            seen.append(list(started))
            target.execute("INSERT INTO agents SELECT * FROM agents LIMIT 1")
    monkeypatch.setattr(transfer._Read, "items", items)
    monkeypatch.setattr(transfer, "_verify_table", verify)
    path = _source(tmp_path, tasks=30)
    result = _transfer(runner, path, pg_url)
    assert result.exit_code == 2, result.output
    assert "table 'agents'" in result.stderr and "could not create unique index" in result.stderr, result.stderr
    assert "rolled back, nothing was changed" in result.stderr
    assert seen and "state" in seen[0]  # the next table was being read while agents was verified and indexed
    assert _counts(pg_url) == {}
    assert not [t for t in threading.enumerate() if t.name == "schemagen-transfer-read"]


def test_the_read_ahead_holds_at_most_its_bytes_and_still_moves_every_row(runner, tmp_path, pg_url, monkeypatch):
    """The rows read ahead are bounded by bytes (READ_AHEAD_BYTES; a batch bigger than the bound still goes, alone):
    with a bound of one byte every batch waits for the one before it to be taken, and every row arrives."""
    from schema_dsl.pg import transfer
    monkeypatch.setattr(transfer, "READ_AHEAD_BYTES", 1)
    monkeypatch.setattr(transfer, "READ_BATCH", 7)
    held = []
    real_put = transfer._ReadAhead._put

    def put(self, item, size):
        real_put(self, item, size)
        with self._cond:
            held.append(sum(1 for _, size in self._waiting if size))  # the end of a table holds nothing
    monkeypatch.setattr(transfer._ReadAhead, "_put", put)
    path = _source(tmp_path, tasks=50)
    _new_rows(path)
    result = _transfer(runner, path, pg_url, "--json")
    assert result.exit_code == 0, result.output + result.stderr
    assert _counts(pg_url) == _sqlite_counts(path)
    assert held and max(held) == 1  # each batch went in only once the one before was taken
