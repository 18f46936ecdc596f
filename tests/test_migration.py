"""In-place migration: every old shape converges to the declaration, keeping every row."""
from __future__ import annotations

import io
import json
import shutil
import sqlite3
import subprocess
import sys
from pathlib import Path

import attrs
import pytest

import legacy
from schema_dsl.sqlite import structure
from schema_dsl.abathur import SCHEMA
from schema_dsl.migrate.apply import apply, plan_database
from schema_dsl.analysis.compare import expected_structure
from schema_dsl.errors import DatabaseFileError, UnsafeMigrationError
from schema_dsl.model import Check, Column, Index, Table, Unique, fk

ROOT = Path(__file__).resolve().parent.parent
VALIDATOR = ROOT / "generated" / "validate_schema.py"
TASKS = 3000


@pytest.fixture(scope="module")
def shape_files(tmp_path_factory):
    folder = tmp_path_factory.mktemp("shapes")
    return {shape: legacy.create(str(folder / ("%s.db" % shape)), shape, tasks=TASKS) for shape in legacy.SHAPES}


def copy_db(src, dst):
    shutil.copy(src, dst)
    return str(dst)


def fk_on(path):
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("PRAGMA foreign_keys = ON")
    assert conn.execute("PRAGMA foreign_keys").fetchone()[0] == 1
    return conn


def table_digests(path, renames=None):
    """{table: (rows, sha256)} over each table's columns as they are now, keyed by their new names."""
    renames = renames or {}
    conn = sqlite3.connect(path)
    out = {}
    for (table,) in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%'"):
        cols = [r[1] for r in conn.execute("SELECT * FROM pragma_table_xinfo(?)", (table,))]
        out[table] = {"columns": [renames.get(table, {}).get(c, c) for c in cols], "old_columns": cols,
                      "digest": legacy.row_digest(conn, table, cols)}
    conn.close()
    return out


def assert_rows_kept(before, path):
    conn = sqlite3.connect(path)
    for table, info in before.items():
        n, digest = legacy.row_digest(conn, table, info["columns"])
        assert (n, digest) == info["digest"], "table %s changed" % table
    conn.close()


def run_validator(path, *args):
    return subprocess.run([sys.executable, str(VALIDATOR), path, *args], capture_output=True, text=True)


def fresh_structure(tmp_path):
    path = str(tmp_path / "fresh.db")
    apply(path)
    conn = sqlite3.connect(path)
    try:
        return structure.read_structure(conn)
    finally:
        conn.close()


def statements_run(path, **kwargs):
    ran = []
    result = apply(path, progress=lambda n, step, stmt: stmt is None or ran.append(stmt), **kwargs)
    return result, ran


@pytest.mark.parametrize("shape", legacy.SHAPES)
def test_each_shape_converges_keeping_every_row(shape, shape_files, tmp_path):
    path = copy_db(shape_files[shape], tmp_path / "db.sqlite")
    before = table_digests(path, legacy.RENAMES if shape == "template" else None)
    seq_before = dict(sqlite3.connect(path).execute("SELECT name, seq FROM sqlite_sequence"))

    result, ran = statements_run(path, backup=False)
    assert result.applied and ran

    check = run_validator(path)
    assert check.returncode == 0, check.stdout + check.stderr
    conn = sqlite3.connect(path)
    assert structure.read_structure(conn) == fresh_structure(tmp_path)
    assert dict(conn.execute("SELECT name, seq FROM sqlite_sequence")) == seq_before
    conn.close()
    assert_rows_kept(before, path)

    conn = fk_on(path)
    read = legacy.old_code_statements(conn)
    assert read["by_id"][0][0] == "task-new-1" and read["state_value"] == [('"two"',)]
    assert conn.execute("PRAGMA foreign_key_check").fetchall() == []
    conn.close()

    again, ran_again = statements_run(path, backup=False)
    assert not again.applied and ran_again == []


def test_template_era_renames_and_fills(shape_files, tmp_path):
    path = copy_db(shape_files["template"], tmp_path / "db.sqlite")
    conn = sqlite3.connect(path)
    old = conn.execute("SELECT id, template_name, completed_at, started_at, submitted_at FROM tasks ORDER BY rowid").fetchall()
    conn.close()
    apply(path, backup=False)
    conn = sqlite3.connect(path)
    new = conn.execute("SELECT id, prompt, agent_type, last_updated_at, max_execution_timeout_seconds FROM tasks ORDER BY rowid").fetchall()
    assert len(new) == len(old) == TASKS
    for (oid, name, done, started, submitted), (nid, prompt, agent_type, updated, timeout) in zip(old, new):
        assert (nid, prompt, agent_type, timeout) == (oid, name, "general", 3600)
        assert updated == (done or started or submitted)


def test_retrofitted_plan_rebuilds_tasks_with_row_count(shape_files):
    plan = plan_database(shape_files["retrofitted"])
    rebuilds = [s for s in plan.steps if s.title.startswith("rebuild table 'tasks'")]
    assert len(rebuilds) == 1
    assert rebuilds[0].rows == TASKS and "copies %d rows" % TASKS in rebuilds[0].title
    assert "NOT NULL" in rebuilds[0].why
    assert not any(s.title.startswith("rebuild") and "'tasks'" not in s.title for s in plan.steps)


def test_old_shape_needs_no_rebuild(shape_files):
    plan = plan_database(shape_files["old"])
    assert not any("rebuild" in s.title for s in plan.steps)
    added = sorted(s.title for s in plan.steps if s.title.startswith("add column"))
    assert added == sorted([
        "add column 'tasks'.'session_id'", "add column 'agents'.'session_id'",
        "add column 'checkpoints'.'session_id'", "add column 'audit'.'memory_operation_type'",
        "add column 'audit'.'memory_namespace'", "add column 'audit'.'memory_entry_id'"])
    assert sum(1 for s in plan.steps if s.title.startswith("create index")) == 21
    assert sum(1 for s in plan.steps if s.title.startswith("create table")) == 3


@pytest.mark.parametrize("shape", legacy.SHAPES)
def test_plan_shows_exactly_what_apply_runs(shape, shape_files, tmp_path):
    path = copy_db(shape_files[shape], tmp_path / "db.sqlite")
    planned = plan_database(path).statements
    _, ran = statements_run(path, backup=False)
    assert ran == planned


def test_plan_cli_reads_only(shape_files, tmp_path):
    from click.testing import CliRunner
    from schema_dsl.cli import main
    path = copy_db(shape_files["retrofitted"], tmp_path / "db.sqlite")
    data = Path(path).read_bytes()
    out = CliRunner().invoke(main, ["plan", "--db", path])
    assert out.exit_code == 0, out.output
    assert "rebuild table 'tasks' (copies %d rows)" % TASKS in out.output
    assert "why:" in out.output and "ALTER TABLE" in out.output
    js = CliRunner().invoke(main, ["plan", "--db", path, "--json"])
    import json
    doc = json.loads(js.output)
    assert doc["up_to_date"] is False and doc["backup_needed"] is True
    assert any(s["rows"] == TASKS for s in doc["steps"])
    assert Path(path).read_bytes() == data


# --- a user's own objects ------------------------------------------------------

USER_OBJECTS = [
    "CREATE TABLE user_notes (id INTEGER PRIMARY KEY, task_id TEXT REFERENCES tasks(id), note TEXT NOT NULL)",
    "CREATE TABLE task_log (task_id TEXT, status TEXT)",
    "ALTER TABLE tasks ADD COLUMN my_flag TEXT DEFAULT 'x' CHECK (my_flag IN ('x', 'y'))",
    "ALTER TABLE agents ADD COLUMN my_score INTEGER",
    "CREATE INDEX my_tasks_by_creator ON tasks(created_by, my_flag)",
    "CREATE VIEW my_pending AS SELECT id, prompt, my_flag FROM tasks WHERE status = 'pending'",
    "CREATE TRIGGER my_log AFTER UPDATE OF status ON tasks BEGIN INSERT INTO task_log VALUES (new.id, new.status); END",
    "INSERT INTO user_notes (task_id, note) SELECT id, 'note ' || id FROM tasks WHERE rowid % 10 = 0",
    "UPDATE tasks SET my_flag = 'y' WHERE rowid % 3 = 0",
    "UPDATE agents SET my_score = rowid * 2",
]


@pytest.mark.parametrize("shape", ["old", "retrofitted"])
def test_user_objects_survive_and_work(shape, shape_files, tmp_path):
    path = copy_db(shape_files[shape], tmp_path / "db.sqlite")
    conn = sqlite3.connect(path, isolation_level=None)
    for stmt in USER_OBJECTS:
        conn.execute(stmt)
    conn.close()
    before = table_digests(path)
    plan = plan_database(path)
    kept = "\n".join(plan.extras)
    for name in ("user_notes", "task_log", "my_flag", "my_score", "my_tasks_by_creator", "my_pending", "my_log"):
        assert name in kept
    apply(path, backup=False)
    assert_rows_kept(before, path)

    conn = fk_on(path)
    names = {r[0] for r in conn.execute("SELECT name FROM sqlite_master")}
    assert {"user_notes", "task_log", "my_tasks_by_creator", "my_pending", "my_log"} <= names
    assert conn.execute("SELECT count(*) FROM my_pending").fetchone()[0] == \
        conn.execute("SELECT count(*) FROM tasks WHERE status = 'pending'").fetchone()[0] > 0
    conn.execute("UPDATE tasks SET status = 'cancelled' WHERE id = 'task-0'")
    assert conn.execute("SELECT status FROM task_log WHERE task_id = 'task-0'").fetchall() == [("cancelled",)]
    with pytest.raises(sqlite3.IntegrityError):
        conn.execute("UPDATE tasks SET my_flag = 'z' WHERE id = 'task-1'")
    with pytest.raises(sqlite3.IntegrityError):
        conn.execute("INSERT INTO user_notes (task_id, note) VALUES ('no-such-task', 'x')")
    plan_lines = conn.execute("EXPLAIN QUERY PLAN SELECT * FROM tasks WHERE created_by = 'user-1'").fetchall()
    assert any("my_tasks_by_creator" in r[3] for r in plan_lines)
    conn.close()
    assert run_validator(path, "--allow-extra").returncode == 0
    strict = run_validator(path)
    assert strict.returncode == 1 and "extra table 'user_notes'" in strict.stdout


# --- design changes ------------------------------------------------------------

def changed(schema, table, **changes):
    t = schema.table(table)
    tables = [attrs.evolve(x, **changes) if x is t else x for x in schema.tables]
    return attrs.evolve(schema, tables=tables)


def with_column(schema, table, column, replace=None):
    t = schema.table(table)
    cols = [column if c.name == replace else c for c in t.columns] if replace else [*t.columns, column]
    return changed(schema, table, columns=cols)


@pytest.fixture
def populated(tmp_path):
    """A database made by the current declaration, with rows that point at sessions."""
    path = str(tmp_path / "current.db")
    apply(path)
    conn = fk_on(path)
    conn.execute("BEGIN")
    conn.executemany("INSERT INTO sessions (id, app_name, user_id) VALUES (?, 'app', ?)",
                     [("s%d" % i, "u%d" % (i % 3)) for i in range(50)])
    legacy_cols = legacy.task_columns("old")
    for i in range(500):
        row = legacy._task_row("old", i)
        row[legacy_cols.index("created_by")] = None if i % 4 == 0 else row[legacy_cols.index("created_by")]
        conn.execute("INSERT INTO tasks (%s, session_id) VALUES (%s, ?)" % (", ".join(legacy_cols), ", ".join("?" * len(legacy_cols))),
                     row + ["s%d" % (i % 50)])
    conn.executemany("INSERT INTO agents (id, name, specialization, task_id, state, model, spawned_at, session_id) "
                     "VALUES (?, 'a', 's', ?, 'idle', 'm', '2025-01-01', ?)",
                     [("a%d" % i, "task-%d" % i, "s%d" % (i % 50)) for i in range(200)])
    conn.executemany("INSERT INTO metrics (timestamp, metric_name, metric_value) VALUES ('2025-01-01', 'm', ?)",
                     [(float(i),) for i in range(300)])
    conn.execute("COMMIT")
    conn.close()
    return path


def converge(path, schema):
    before = table_digests(path)
    result = apply(path, schema=schema, backup=False)
    conn = sqlite3.connect(path)
    problems = [m for k, m in structure.compare(expected_structure(schema), structure.read_structure(conn)) if k != "extra"]
    conn.close()
    assert problems == []
    again = apply(path, schema=schema, backup=False)
    assert not again.applied
    return before, result


def test_design_change_not_null_column_with_constant_default_is_an_alter(populated):
    schema = with_column(SCHEMA, "metrics", Column("unit", "TEXT", not_null=True, default="count"))
    before, result = converge(populated, schema)
    assert not any("rebuild" in s.title for s in result.plan.steps)
    assert_rows_kept(before, populated)
    conn = sqlite3.connect(populated)
    assert conn.execute("SELECT DISTINCT unit FROM metrics").fetchall() == [("count",)]


def test_design_change_current_timestamp_default_needs_rebuild(populated):
    schema = with_column(SCHEMA, "metrics", Column("recorded_at", "TIMESTAMP", not_null=True,
                                                   default=__import__("schema_dsl.model").model.Expr("CURRENT_TIMESTAMP")))
    before, result = converge(populated, schema)
    assert any(s.title.startswith("rebuild table 'metrics'") for s in result.plan.steps)
    assert_rows_kept(before, populated)
    conn = sqlite3.connect(populated)
    assert conn.execute("SELECT count(*) FROM metrics WHERE recorded_at IS NULL").fetchone()[0] == 0


def test_design_change_make_nullable_not_null_with_backfill(populated):
    col = attrs.evolve(SCHEMA.table("tasks").column("created_by"), not_null=True, backfill="'unknown'")
    schema = with_column(SCHEMA, "tasks", col, replace="created_by")
    conn = sqlite3.connect(populated)
    nulls = conn.execute("SELECT id FROM tasks WHERE created_by IS NULL ORDER BY id").fetchall()
    sessions_before = conn.execute("SELECT id, session_id FROM tasks ORDER BY id").fetchall()
    conn.close()
    assert nulls
    converge(populated, schema)
    conn = sqlite3.connect(populated)
    assert conn.execute("SELECT id FROM tasks WHERE created_by = 'unknown' ORDER BY id").fetchall() == nulls
    assert conn.execute("SELECT id, session_id FROM tasks ORDER BY id").fetchall() == sessions_before


def test_design_change_not_null_without_backfill_is_refused_and_changes_nothing(populated):
    col = attrs.evolve(SCHEMA.table("tasks").column("created_by"), not_null=True)
    schema = with_column(SCHEMA, "tasks", col, replace="created_by")
    data = Path(populated).read_bytes()
    with pytest.raises(UnsafeMigrationError, match="table 'tasks', column 'created_by': must become NOT NULL but 125 rows hold NULL"):
        apply(populated, schema=schema, backup=False)
    assert Path(populated).read_bytes() == data


def test_design_change_type_affinity_with_values_is_refused(populated):
    col = attrs.evolve(SCHEMA.table("tasks").column("created_by"), type="INTEGER")
    schema = with_column(SCHEMA, "tasks", col, replace="created_by")
    data = Path(populated).read_bytes()
    with pytest.raises(UnsafeMigrationError, match="column 'created_by': type TEXT -> INTEGER"):
        apply(populated, schema=schema, backup=False)
    assert Path(populated).read_bytes() == data


def test_design_change_index_changed_is_dropped_and_recreated(populated):
    indexes = [attrs.evolve(ix, columns=["state", "spawned_at DESC"]) if ix.name == "idx_agents_state" else ix
               for ix in SCHEMA.indexes]
    schema = attrs.evolve(SCHEMA, indexes=indexes)
    _, result = converge(populated, schema)
    titles = [s.title for s in result.plan.steps]
    assert titles == ["drop index 'idx_agents_state'", "create index 'idx_agents_state' on 'agents'"]


def test_design_change_add_table(populated):
    notes = Table("notes", file="ddl-core-tables.sql",
                  columns=[Column("id", "INTEGER"), Column("task_id", "TEXT", not_null=True), Column("body", "TEXT")],
                  primary_key=__import__("schema_dsl.model").model.PrimaryKey(("id",)),
                  foreign_keys=[fk("task_id", "tasks", "id", on_delete="CASCADE")])
    schema = attrs.evolve(SCHEMA, tables=[*SCHEMA.tables, notes],
                          indexes=[*SCHEMA.indexes, Index("idx_notes_task", "notes", ["task_id"])])
    before, result = converge(populated, schema)
    assert [s.title for s in result.plan.steps] == ["create table 'notes'", "create index 'idx_notes_task' on 'notes'"]
    assert_rows_kept(before, populated)


def test_design_change_add_check_rebuilds_sessions_without_firing_set_null(populated):
    schema = changed(SCHEMA, "sessions", checks=[*SCHEMA.table("sessions").checks, Check("length(id) > 0")])
    conn = sqlite3.connect(populated)
    pointing = {t: conn.execute("SELECT rowid, session_id FROM %s ORDER BY rowid" % t).fetchall() for t in ("tasks", "agents")}
    conn.close()
    assert all(s is not None for rows in pointing.values() for _, s in rows)
    before, result = converge(populated, schema)
    assert any(s.title.startswith("rebuild table 'sessions'") for s in result.plan.steps)
    assert_rows_kept(before, populated)
    conn = fk_on(populated)
    for t, rows in pointing.items():
        assert conn.execute("SELECT rowid, session_id FROM %s ORDER BY rowid" % t).fetchall() == rows
    with pytest.raises(sqlite3.IntegrityError):
        conn.execute("INSERT INTO sessions (id, app_name, user_id) VALUES ('', 'a', 'u')")
    # and the foreign keys still bite after the rebuild
    with pytest.raises(sqlite3.IntegrityError):
        conn.execute("UPDATE tasks SET session_id = 'no-such-session' WHERE id = 'task-1'")


def test_design_change_check_violated_by_rows_rolls_back(populated):
    schema = changed(SCHEMA, "metrics", checks=[*SCHEMA.table("metrics").checks, Check("metric_value < 10")])
    data = Path(populated).read_bytes()
    from schema_dsl.errors import ApplyError
    with pytest.raises(ApplyError, match=r"step \d+ of \d+ \(rebuild table 'metrics'.*CHECK constraint failed"):
        apply(populated, schema=schema, backup=False)
    assert Path(populated).read_bytes() == data


def test_design_change_new_unique_with_duplicates_is_refused(populated):
    schema = changed(SCHEMA, "agents", uniques=[Unique(("state",))])
    with pytest.raises(UnsafeMigrationError, match=r"new UNIQUE \(state\) but 1 group of existing rows shares"):
        apply(populated, schema=schema, backup=False)


def test_autoincrement_high_water_mark_kept_through_rebuild(populated):
    conn = sqlite3.connect(populated, isolation_level=None)
    conn.execute("DELETE FROM metrics WHERE id > 250")
    seq = conn.execute("SELECT seq FROM sqlite_sequence WHERE name = 'metrics'").fetchone()[0]
    conn.close()
    assert seq == 300
    schema = changed(SCHEMA, "metrics", checks=[*SCHEMA.table("metrics").checks, Check("length(metric_name) > 0")])
    converge(populated, schema)
    conn = sqlite3.connect(populated, isolation_level=None)
    assert conn.execute("SELECT seq FROM sqlite_sequence WHERE name = 'metrics'").fetchone()[0] == 300
    conn.execute("INSERT INTO metrics (timestamp, metric_name, metric_value) VALUES ('t', 'm', 1)")
    assert conn.execute("SELECT max(id) FROM metrics").fetchone()[0] == 301


# --- backups, orphans, bad input --------------------------------------------------

def test_backup_is_made_for_tables_with_rows_and_says_where(shape_files, tmp_path):
    path = copy_db(shape_files["old"], tmp_path / "db.sqlite")
    result = apply(path)
    assert result.backup and Path(result.backup).parent == tmp_path
    conn = sqlite3.connect(result.backup)
    assert conn.execute("SELECT count(*) FROM tasks").fetchone()[0] == TASKS
    assert "session_id" not in [r[1] for r in conn.execute("PRAGMA table_info(tasks)")]
    assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    conn.close()
    other = copy_db(shape_files["old"], tmp_path / "nobackup.sqlite")
    assert apply(other, backup=False).backup is None
    assert apply(str(tmp_path / "new.db")).backup is None
    assert sorted(p.name for p in tmp_path.iterdir() if ".backup-" in p.name) == [
        Path(result.backup).name, Path(result.backup).name + ".json"]  # the backup and its record


def test_orphans_are_reported_not_deleted(tmp_path):
    path = legacy.create(str(tmp_path / "orphans.db"), "retrofitted", tasks=200, orphans=3)
    from click.testing import CliRunner
    from schema_dsl.cli import main
    out = CliRunner().invoke(main, ["apply", "--verbose", "--db", path, "--no-backup"])
    assert out.exit_code == 1
    assert "migrated" in out.output
    for i in range(3):
        assert "task_id = 'missing-task-%d' has no parent row in 'tasks'" % i in out.output
    # apply's own check before COMMIT found them (audit references the rebuilt tasks) and kept them
    assert "[FAIL] foreign keys of the tables apply changed, checked before COMMIT: 3 violations that were there " \
           "before apply, kept (" in out.output
    assert "[skip] quick_check: not run by apply" in out.output
    conn = sqlite3.connect(path)
    assert conn.execute("SELECT count(*) FROM audit WHERE action_type = 'orphan'").fetchone()[0] == 3
    conn.close()
    # the whole-file check finds the same three
    out = CliRunner().invoke(main, ["validate", "--verbose", "--db", path])
    assert out.exit_code == 1 and "[FAIL] foreign_key_check: 3 violations" in out.output


def test_apply_leaves_whole_file_data_checks_to_validate_unless_asked(tmp_path):
    """Orphans in a table the migration does not touch: apply's default report does not scan for them
    (and says so); --check-data and validate do."""
    from click.testing import CliRunner
    from schema_dsl.cli import main
    path = legacy.create(str(tmp_path / "orphans.db"), "old", tasks=50, orphans=2)
    fresh = CliRunner().invoke(main, ["apply", "--verbose", "--db", str(tmp_path / "copy.db")])
    assert fresh.exit_code == 0, fresh.output
    assert "[skip] quick_check: not run by apply (it reads the whole file): run `schemagen validate`" in fresh.output
    assert "[ok] foreign keys of the tables apply changed, checked before COMMIT: no violations" in fresh.output
    other = copy_db(path, tmp_path / "other.db")
    out = CliRunner().invoke(main, ["apply", "--verbose", "--db", path, "--no-backup"])
    assert out.exit_code == 0, out.output
    assert "validation report for %s: checks that ran passed" % path in out.output and "missing-task" not in out.output
    out = CliRunner().invoke(main, ["apply", "--verbose", "--db", other, "--no-backup", "--check-data", "--json"])
    assert out.exit_code == 1
    report = json.loads(out.output)["report"]
    assert {c["check"]: c["ok"] for c in report["checks"]}["quick_check"] is True
    assert report["pragmas"]["quick_check"] == ["ok"] and len(report["pragmas"]["foreign_key_check"]) == 2
    assert "foreign_key_check: 2 violations" in report["issues"]
    out = CliRunner().invoke(main, ["validate", "--verbose", "--db", path])
    assert out.exit_code == 1 and "[FAIL] foreign_key_check: 2 violations" in out.output


def test_locked_database_waits_then_fails_unchanged(shape_files, tmp_path):
    path = copy_db(shape_files["old"], tmp_path / "db.sqlite")
    holder = sqlite3.connect(path, isolation_level=None)
    holder.execute("BEGIN IMMEDIATE")
    data = Path(path).read_bytes()
    try:
        with pytest.raises(DatabaseFileError, match="is locked by another connection \\(waited 5000 ms\\)"):
            apply(path, backup=False)
    finally:
        holder.execute("ROLLBACK")
        holder.close()
    assert Path(path).read_bytes() == data
    assert not list(tmp_path.glob("*.backup-*"))


def test_read_only_file_is_refused_unchanged(shape_files, tmp_path):
    path = copy_db(shape_files["old"], tmp_path / "db.sqlite")
    Path(path).chmod(0o444)
    data = Path(path).read_bytes()
    with pytest.raises(DatabaseFileError, match="read-only"):
        apply(path)
    assert Path(path).read_bytes() == data


def test_progress_shows_long_steps_with_time_on_a_terminal():
    from schema_dsl.cli import _Progress
    from schema_dsl.migrate.steps import Step

    class Tty(io.StringIO):
        def isatty(self):
            return True

    stream = Tty()
    progress = _Progress(stream)
    big = Step("rebuild table 'tasks' (copies 50000 rows)", "why", ["a", "b"], rows=50000)
    small = Step("create table 'x'", "why", ["c"])
    progress(1, big, "a")
    progress(1, big, "b")
    progress(2, small, "c")
    progress.close()
    text = stream.getvalue()
    assert text.startswith("  1. rebuild table 'tasks' (copies 50000 rows) ...") and text.rstrip().endswith("s")
    assert "create table 'x'" not in text
    quiet = io.StringIO()
    p2 = _Progress(quiet)
    p2(1, big, "a")
    p2.close()
    assert quiet.getvalue() == ""


def test_a_fill_that_would_break_foreign_keys_is_rolled_back(populated):
    """A backfill that points rows at a missing parent: foreign_key_check before COMMIT catches it."""
    schema = with_column(SCHEMA, "agents", Column("home_session", "TEXT", backfill="'no-such-session'"))
    schema = changed(schema, "agents", foreign_keys=[*schema.table("agents").foreign_keys,
                                                     fk("home_session", "sessions", "id")])
    data = Path(populated).read_bytes()
    from schema_dsl.errors import ApplyError
    with pytest.raises(ApplyError, match=r"would introduce 200 foreign key violations.*table 'agents' rowid 1: "
                                         r"home_session = 'no-such-session' has no parent row in 'sessions'"):
        apply(populated, schema=schema, backup=False)
    assert Path(populated).read_bytes() == data


def test_violations_already_there_do_not_block_a_rebuild_and_new_ones_still_do(tmp_path):
    path = legacy.create(str(tmp_path / "orphans.db"), "retrofitted", tasks=100, orphans=2)
    result = apply(path, backup=False)
    assert result.applied
    conn = sqlite3.connect(path)
    assert len(conn.execute("PRAGMA foreign_key_check").fetchall()) == 2


def test_apply_no_validate_skips_the_report_but_not_the_verification(shape_files, tmp_path, monkeypatch):
    from click.testing import CliRunner
    from schema_dsl.check import report as report_module
    from schema_dsl.cli import main

    def no_report(*args, **kwargs):
        raise AssertionError("the validation report ran")
    monkeypatch.setattr(report_module, "build_report", no_report)
    path = copy_db(shape_files["old"], tmp_path / "db.sqlite")
    # (--verbose asks for the report --no-validate skips: refused, see test_behaviour_both)
    out = CliRunner().invoke(main, ["apply", "--db", path, "--no-backup", "--no-validate"])
    assert out.exit_code == 0, out.output
    assert "migrated" in out.output and "validation skipped (--no-validate)" in out.output
    assert run_validator(path).returncode == 0
