"""plan --sql: the exact migration apply runs, as one standalone guarded .sql file (schema_dsl/migrate/sqlscript.py)."""
from __future__ import annotations

import shutil
import sqlite3
import subprocess

import pytest

import legacy
from conftest import make_runner
from schema_dsl.cli import main
from schema_dsl.migrate.apply import apply
from schema_dsl.migrate.sqlscript import export_script
from schema_dsl.sqlite import structure

TASKS = 300


@pytest.fixture(scope="module")
def shapes(tmp_path_factory):
    folder = tmp_path_factory.mktemp("shapes")
    return {shape: legacy.create(str(folder / ("%s.db" % shape)), shape, tasks=TASKS, orphans=2 if shape == "old" else 0)
            for shape in legacy.SHAPES}


def copy(src, dst):
    shutil.copy(src, dst)
    return str(dst)


def state(path):
    """(structure, {table: (rows, digest)}, user_version, journal_mode) of a database file."""
    conn = sqlite3.connect(path)
    try:
        digests = {}
        for (table,) in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%'"):
            cols = [r[1] for r in conn.execute("SELECT * FROM pragma_table_xinfo(?)", (table,))]
            digests[table] = legacy.row_digest(conn, table, cols)
        return (structure.read_structure(conn), digests, conn.execute("PRAGMA user_version").fetchone()[0],
                conn.execute("PRAGMA journal_mode").fetchone()[0])
    finally:
        conn.close()


def run_bail(path, script_path):
    return subprocess.run(["sqlite3", "-bail", path], stdin=open(script_path, encoding="utf-8"),
                          capture_output=True, text=True)


def run_executescript(path, text, foreign_keys=False, prefix=""):
    """executescript on a connection (foreign_keys as given); the statements it ran, and the error if any."""
    conn = sqlite3.connect(path, isolation_level=None)
    ran = []
    conn.set_trace_callback(ran.append)
    conn.execute("PRAGMA foreign_keys = %s" % ("ON" if foreign_keys else "OFF"))
    error = None
    try:
        conn.executescript(prefix + text)
    except sqlite3.Error as exc:
        error = str(exc)
        if conn.in_transaction:
            conn.execute("ROLLBACK")
    finally:
        conn.close()
    return ran, error


@pytest.mark.parametrize("shape", legacy.SHAPES)
def test_script_under_bail_and_executescript_gives_what_apply_gives(shape, shapes, tmp_path):
    by_apply = copy(shapes[shape], tmp_path / "apply.db")
    by_bail = copy(shapes[shape], tmp_path / "bail.db")
    by_exec = copy(shapes[shape], tmp_path / "exec.db")
    text = export_script(by_bail)
    assert "\n." not in text  # no shell dot-command
    script = tmp_path / "migrate.sql"
    script.write_text(text, encoding="utf-8")
    result = apply(by_apply, backup=False)
    assert result.applied and not result.plan.fresh
    done = run_bail(by_bail, script)
    assert done.returncode == 0, done.stderr
    _, error = run_executescript(by_exec, text)
    assert error is None
    expected = state(by_apply)
    assert state(by_bail) == expected
    assert state(by_exec) == expected
    assert expected[3] == "wal"


def test_header_names_the_declaration_and_the_structure(shapes, tmp_path):
    path = copy(shapes["old"], tmp_path / "db.sqlite")
    text = export_script(path)
    conn = sqlite3.connect(path)
    live = structure.read_structure(conn)
    conn.close()
    import json
    from hashlib import sha256
    from schema_dsl.compile.target import shipped_target
    source = shipped_target().compiled["source"]
    head = text.split("\n\n", 1)[0]
    assert "Declaration: %s (schema 'abathur', source sha256 %s)" % (source["declaration"], source["sha256"]) in head
    assert sha256(json.dumps(live, sort_keys=True).encode()).hexdigest() in head
    first = [line for line in text.splitlines() if line and not line.startswith("--")][:2]
    assert first == ["PRAGMA foreign_keys = OFF;", "BEGIN IMMEDIATE;"]


@pytest.mark.parametrize("runner", ["bail", "executescript"])
def test_on_another_structure_it_refuses_and_changes_nothing(runner, shapes, tmp_path):
    planned = copy(shapes["old"], tmp_path / "planned.db")
    other = copy(shapes["retrofitted"], tmp_path / "other.db")
    text = export_script(planned)
    script = tmp_path / "migrate.sql"
    script.write_text(text, encoding="utf-8")
    before = open(other, "rb").read()
    if runner == "bail":
        done = run_bail(other, script)
        assert done.returncode != 0
        message = done.stderr
    else:
        ran, message = run_executescript(other, text)
        assert not [s for s in ran if s.lstrip().upper().startswith(("DROP", "CREATE TABLE", "ALTER", "INSERT INTO \"")) ]
    assert "structure is not the one this script was planned against" in message
    assert open(other, "rb").read() == before


def test_inside_an_outer_transaction_with_foreign_keys_on_it_fails_before_any_drop(shapes, tmp_path):
    path = copy(shapes["template"], tmp_path / "db.sqlite")  # its plan rebuilds tasks: DROP TABLE tasks
    text = export_script(path)
    assert 'DROP TABLE "tasks";' in text
    before = open(path, "rb").read()
    ran, error = run_executescript(path, text, foreign_keys=True, prefix="BEGIN;\n")
    assert error is not None and "within a transaction" in error
    assert not [s for s in ran if s.lstrip().upper().startswith("DROP")]
    # a runner whose transaction the script cannot see (its BEGIN left out): the foreign_keys guard stops it
    inner = text.replace("BEGIN IMMEDIATE;\n", "", 1)
    ran, error = run_executescript(path, inner, foreign_keys=True, prefix="BEGIN;\n")
    assert error is not None and "foreign_keys must be OFF" in error
    assert not [s for s in ran if s.lstrip().upper().startswith("DROP")]
    conn = sqlite3.connect(path)
    assert conn.execute("SELECT count(*) FROM tasks").fetchone()[0] == TASKS
    conn.close()
    assert open(path, "rb").read() == before


def test_new_file_script_creates_the_declared_schema(tmp_path):
    text = export_script(str(tmp_path / "new.db"))
    script = tmp_path / "create.sql"
    script.write_text(text, encoding="utf-8")
    by_script, by_apply = str(tmp_path / "new.db"), str(tmp_path / "applied.db")
    assert run_bail(by_script, script).returncode == 0
    apply(by_apply)
    assert state(by_script) == state(by_apply)


def test_structure_after_guard_fails_when_the_plan_is_tampered_with(shapes, tmp_path):
    path = copy(shapes["old"], tmp_path / "db.sqlite")
    text = export_script(path)
    tampered = text.replace('CREATE INDEX IF NOT EXISTS "idx_sessions_project"', 'CREATE INDEX IF NOT EXISTS "idx_other"', 1)
    assert tampered != text
    before = open(path, "rb").read()
    _, error = run_executescript(path, tampered)
    assert error is not None and "after the migration the structure is not the expected one" in error
    assert open(path, "rb").read() == before


def test_a_new_foreign_key_violation_fails_the_script(shapes, tmp_path):
    path = copy(shapes["template"], tmp_path / "db.sqlite")
    text = export_script(path)
    # after planning, the data changes: an agent whose task is gone, which the rebuilt tasks would make a violation
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("PRAGMA foreign_keys = OFF")
    task = conn.execute("SELECT task_id FROM agents LIMIT 1").fetchone()[0]
    conn.execute("UPDATE agents SET task_id = 'missing-task' WHERE task_id = ?", (task,))
    conn.close()
    # the violation is in the data before the script runs: kept, like apply keeps it
    _, error = run_executescript(copy(path, tmp_path / "kept.db"), text)
    assert error is None
    # one the script itself introduces (a step added by hand that orphans a row) is refused
    orphaning = text.replace("-- check before COMMIT: the structure", "DELETE FROM tasks WHERE id = (SELECT task_id FROM "
                             "agents WHERE task_id <> 'missing-task' LIMIT 1);\n-- check before COMMIT: the structure", 1)
    before = open(path, "rb").read()
    _, error = run_executescript(path, orphaning)
    assert error is not None and "would introduce foreign key violations" in error
    assert open(path, "rb").read() == before


def test_cli_plan_sql_to_a_file_and_to_stdout(shapes, tmp_path):
    path = copy(shapes["old"], tmp_path / "db.sqlite")
    out = tmp_path / "m.sql"
    runner = make_runner()
    result = runner.invoke(main, ["plan", "--db", path, "--sql", str(out), "--schema", "abathur"])
    assert result.exit_code == 0, result.output
    assert out.read_text(encoding="utf-8") == export_script(path)
    result = runner.invoke(main, ["plan", "--db", path, "--schema", "abathur", "--sql"])
    assert result.exit_code == 0
    assert result.stdout == out.read_text(encoding="utf-8")
