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
    first = [line for line in text.splitlines() if line and not line.startswith(("--", " ", ")"))][:6]
    # the guard tables are made before BEGIN, so that they outlive a rollback
    assert first == ["PRAGMA foreign_keys = OFF;", "DROP TABLE IF EXISTS temp._schemagen_guard;",
                     "DROP TABLE IF EXISTS temp._schemagen_run;", "CREATE TEMP TABLE _schemagen_run (n INTEGER PRIMARY KEY);",
                     "CREATE TEMP TABLE _schemagen_guard (", "BEGIN IMMEDIATE;"]


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
        assert not [s for s in ran if s.lstrip().upper().startswith(("DROP", "CREATE TABLE", "ALTER", "INSERT INTO \""))
                    and "temp._schemagen_guard" not in s and "temp._schemagen_run" not in s]  # its own TEMP tables
    assert "structure is not the one this script was planned against" in message
    assert open(other, "rb").read() == before


def test_inside_an_outer_transaction_with_foreign_keys_on_it_fails_before_any_drop(shapes, tmp_path):
    path = copy(shapes["template"], tmp_path / "db.sqlite")  # its plan rebuilds tasks: DROP TABLE tasks
    text = export_script(path)
    assert 'DROP TABLE "tasks";' in text
    before = open(path, "rb").read()
    ran, error = run_executescript(path, text, foreign_keys=True, prefix="BEGIN;\n")
    assert error is not None and "within a transaction" in error
    assert not [s for s in ran if s.lstrip().upper().startswith("DROP") and "temp._schemagen_" not in s]
    # a runner whose transaction the script cannot see (its BEGIN left out): the foreign_keys guard stops it
    inner = text.replace("BEGIN IMMEDIATE;\n", "", 1)
    ran, error = run_executescript(path, inner, foreign_keys=True, prefix="BEGIN;\n")
    assert error is not None and "foreign_keys must be OFF" in error
    assert not [s for s in ran if s.lstrip().upper().startswith("DROP") and "temp._schemagen_" not in s]
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


# --- issue 15.3: a failing guard or step ends the transaction, so no runner can commit a part -------------------

def _users_v1(path):
    conn = sqlite3.connect(path, isolation_level=None)
    conn.executescript("""
        CREATE TABLE users (id INTEGER PRIMARY KEY, email TEXT, nick TEXT);
        INSERT INTO users (email, nick) VALUES ('a@x', 'a'), ('b@x', 'b'), ('c@x', 'c');
    """)
    conn.close()


def _users_v2():
    """email renamed, a UNIQUE index on it, nick made NOT NULL (a rebuild copy), a new table with a foreign key."""
    from schema_dsl.model import Column, ForeignKey, Index, Schema, Table
    users = Table("users", [Column("id", "INTEGER"), Column("email_address", "TEXT", renamed_from="email"),
                            Column("nick", "TEXT", not_null=True)], primary_key=_pk("id"))
    posts = Table("posts", [Column("id", "INTEGER"), Column("user_id", "INTEGER")], primary_key=_pk("id"),
                  foreign_keys=[ForeignKey(("user_id",), "users", ("id",))])
    return Schema("users", [users, posts], indexes=[Index("ux_users_email", "users", ["email_address"], unique=True)])


def _pk(*columns):
    from schema_dsl.model import PrimaryKey
    return PrimaryKey(columns)


def _contents(path):
    """The structure and every row of a file (not its bytes: a runner that goes on may still set journal_mode)."""
    conn = sqlite3.connect(path)
    try:
        tables = [r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table' ORDER BY name")]
        return (conn.execute("SELECT type, name, sql FROM sqlite_master ORDER BY name").fetchall(),
                {t: conn.execute('SELECT * FROM "%s" ORDER BY rowid' % t).fetchall() for t in tables})
    finally:
        conn.close()


def run_no_bail(path, script_path):
    return subprocess.run(["sqlite3", path], stdin=open(script_path, encoding="utf-8"), capture_output=True, text=True)


def run_executescript_twice(path, text):
    """Python's executescript on one connection, run again after it fails (as a retrying runner would): the
    second run's implicit COMMIT must find nothing of the first run to commit."""
    conn = sqlite3.connect(path)  # the default (legacy) transaction control: executescript COMMITs first
    errors = []
    for _ in range(2):
        try:
            conn.executescript(text)
            errors.append(None)
        except sqlite3.Error as exc:
            errors.append(str(exc))
    conn.commit()
    conn.close()
    return errors


BREAKS = {
    # rows added after the export that the planned steps cannot take: the guard or the copy must roll back
    "duplicate key for the unique index": "INSERT INTO users (email, nick) VALUES ('a@x', 'again')",
    "NULL where the rebuild copy needs NOT NULL": "INSERT INTO users (email, nick) VALUES ('d@x', NULL)",
}


@pytest.mark.parametrize("runner", ["bail", "no-bail", "executescript twice"])
@pytest.mark.parametrize("breaks", sorted(BREAKS))
def test_a_step_that_fails_on_the_data_commits_nothing_under_any_runner(runner, breaks, tmp_path):
    path = str(tmp_path / "app.db")
    _users_v1(path)
    text = export_script(path, schema=_users_v2())
    assert 'INSERT OR ROLLBACK INTO "_schemagen_tmp' in text or "INSERT OR ROLLBACK INTO" in text
    script = tmp_path / "migrate.sql"
    script.write_text(text, encoding="utf-8")
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute(BREAKS[breaks])
    conn.close()
    before = _contents(path)
    if runner == "bail":
        done = run_bail(path, script)
        assert done.returncode != 0
        message = done.stderr
    elif runner == "no-bail":
        done = run_no_bail(path, script)
        message = done.stderr
    else:
        errors = run_executescript_twice(path, text)
        assert errors[0] is not None and errors[1] is not None
        message = errors[0]
    if breaks.startswith("duplicate"):
        assert 'unique index "ux_users_email" cannot be built: rows of "users" share its key' in message
    else:
        assert "NOT NULL constraint failed" in message
    assert _contents(path) == before  # neither the rename nor the new table nor the foreign key was committed


def test_the_script_runs_through_on_data_that_fits(tmp_path):
    path = str(tmp_path / "app.db")
    _users_v1(path)
    text = export_script(path, schema=_users_v2())
    script = tmp_path / "migrate.sql"
    script.write_text(text, encoding="utf-8")
    done = run_no_bail(path, script)
    assert done.returncode == 0 and done.stderr == ""
    conn = sqlite3.connect(path)
    assert conn.execute("SELECT email_address FROM users ORDER BY id").fetchall() == [("a@x",), ("b@x",), ("c@x",)]
    assert conn.execute("SELECT name FROM sqlite_master WHERE name = 'ux_users_email'").fetchone() is not None
    conn.close()


def test_an_up_to_date_file_gets_a_short_script(tmp_path):
    path = str(tmp_path / "app.db")
    apply(path)
    text = export_script(path)
    assert len(text.splitlines()) <= 20
    assert "0 steps, 0 statements" in text and "changes nothing" in text
    script = tmp_path / "noop.sql"
    script.write_text(text, encoding="utf-8")
    before = _contents(path)
    assert run_bail(path, script).returncode == 0
    assert _contents(path) == before


def test_a_guard_table_left_by_an_earlier_failed_script_does_not_weaken_the_next(tmp_path):
    """A runner that reuses its connection after a failed script: the next script's data guards still hold."""
    path = str(tmp_path / "app.db")
    _users_v1(path)
    text = export_script(path, schema=_users_v2())
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("INSERT INTO users (email, nick) VALUES ('a@x', 'again')")
    conn.execute("CREATE TEMP TABLE _schemagen_guard (what TEXT NOT NULL, ok INTEGER)")  # no CHECK at all
    before = _contents(path)
    with pytest.raises(sqlite3.IntegrityError, match="cannot be built"):
        conn.executescript(text)
    assert not conn.in_transaction
    conn.close()
    assert _contents(path) == before


def _scores_v2():
    """users.nick converted to INTEGER by an expression that raises on text that is not JSON (a rebuild copy)."""
    from schema_dsl.model import Column, Schema, Table
    return Schema("users", [Table("users", [Column("id", "INTEGER"), Column("email", "TEXT"),
                                            Column("nick", "INTEGER", using="json_extract(nick, '$.n')")],
                                  primary_key=_pk("id"))])


@pytest.mark.parametrize("runner", ["bail", "no-bail"])
def test_a_rebuild_copy_that_fails_with_an_error_loses_no_row_under_any_runner(runner, tmp_path):
    # an error that is not a constraint (here "malformed JSON" from a using= expression) fails the copy
    # without ending the transaction, whatever OR ROLLBACK says: sqlite3 without -bail went on, dropped the
    # old table, renamed the empty copy into its place, found the structure as planned, and COMMITted every
    # row of users away
    path = str(tmp_path / "app.db")
    conn = sqlite3.connect(path, isolation_level=None)
    conn.executescript("""
        CREATE TABLE users (id INTEGER PRIMARY KEY, email TEXT, nick TEXT);
        INSERT INTO users (email, nick) VALUES ('a@x', '{"n": 1}'), ('b@x', '{"n": 2}');
    """)
    conn.close()
    text = export_script(path, schema=_scores_v2())
    script = tmp_path / "migrate.sql"
    script.write_text(text, encoding="utf-8")
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("INSERT INTO users (email, nick) VALUES ('c@x', 'not json')")  # after the export
    conn.close()
    before = _contents(path)
    done = (run_bail if runner == "bail" else run_no_bail)(path, script)
    assert "malformed JSON" in done.stderr
    assert _contents(path) == before


def _notes(path):
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("CREATE TABLE notes (id INTEGER PRIMARY KEY, doc TEXT)")
    conn.execute("""INSERT INTO notes (doc) VALUES ('{"first": "a"}'), ('{"first": "b"}')""")
    conn.close()


def _notes_v2():
    from schema_dsl.model import Column, DataStep, PrimaryKey, Schema, Table
    return Schema("notes", tables=[
        Table("notes", [Column("id", "INTEGER"), Column("doc", "TEXT"), Column("first", "TEXT")], PrimaryKey(["id"]))],
        data_steps=[DataStep("pull_first", sql="UPDATE notes SET first = json_extract(doc, '$.first')")])


@pytest.mark.parametrize("runner", ["bail", "no-bail"])
def test_a_data_step_that_raises_commits_nothing_even_under_a_runner_that_goes_on(runner, tmp_path):
    # an error that is not a constraint ("malformed JSON") fails the step's UPDATE without ending the
    # transaction: sqlite3 without -bail went on, committed the new column and recorded the step as run
    path = str(tmp_path / "notes.db")
    _notes(path)
    text = export_script(path, schema=_notes_v2())
    assert 'CREATE TEMP TRIGGER "_schemagen_run_' in text
    script = tmp_path / "migrate.sql"
    script.write_text(text, encoding="utf-8")
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("INSERT INTO notes (doc) VALUES ('not json')")  # after the export: the step fails on this row
    conn.close()
    before = _contents(path)
    done = (run_bail if runner == "bail" else run_no_bail)(path, script)
    assert "malformed JSON" in done.stderr
    assert _contents(path) == before
    if runner == "no-bail":
        assert "run data step 'pull_first') failed; rolled back, nothing was changed" in done.stderr
    # on data that fits, the same script runs through and records the step
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("DELETE FROM notes WHERE doc = 'not json'")
    conn.close()
    assert run_no_bail(path, script).stderr == ""
    conn = sqlite3.connect(path)
    assert conn.execute("SELECT first FROM notes ORDER BY id").fetchall() == [("a",), ("b",)]
    conn.close()



def test_a_data_step_reading_last_insert_rowid_gives_in_the_script_what_apply_gives(tmp_path):
    # each statement in a trigger of its own: a trigger restores last_insert_rowid() when it ends, so the second
    # statement read the rowid of the script's own bookkeeping row, not the note the first one inserted
    from schema_dsl.model import Column, DataStep, PrimaryKey, Schema, Table
    decl = Schema("notes", tables=[
        Table("notes", [Column("id", "INTEGER"), Column("doc", "TEXT"), Column("first", "TEXT")], PrimaryKey(["id"]))],
        data_steps=[DataStep("mark_new", sql="INSERT INTO notes (doc) VALUES ('added'); "
                                             "UPDATE notes SET first = 'newest' WHERE id = last_insert_rowid()")])
    by_apply, by_script = str(tmp_path / "a.db"), str(tmp_path / "s.db")
    for path in (by_apply, by_script):
        _notes(path)
    text = export_script(by_script, schema=decl)
    script = tmp_path / "migrate.sql"
    script.write_text(text, encoding="utf-8")
    assert run_no_bail(by_script, script).stderr == ""
    apply(by_apply, schema=decl, backup=False)
    assert _contents(by_script)[1] == _contents(by_apply)[1]
    conn = sqlite3.connect(by_script)
    assert conn.execute("SELECT id, first FROM notes WHERE first IS NOT NULL").fetchall() == [(3, "newest")]
    conn.close()
