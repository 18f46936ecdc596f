"""Changes that carry data: the history in the database, data steps run once per database, conversions (using=).

The scenario of issue 18: a file with rows from a design with users.name and a TEXT links.rating, brought in
one apply to a design where a data step filled first_name/last_name, rating is INTEGER via using= (non-numeric
values NULL) and users.name is removed.
"""
from __future__ import annotations

import asyncio
import hashlib
import json
import os
import sqlite3
from pathlib import Path

import pytest

from conftest import connect, make_runner
from schema_dsl.cli import main
from schema_dsl.errors import ApplyError, DeclarationError, SchemagenError, UnsafeMigrationError
from schema_dsl.migrate import history
from schema_dsl.migrate.apply import apply, plan_database
from schema_dsl.model import Check, Column, DataStep, PrimaryKey, Schema, Table, fk, removed
from schema_dsl.sqlite.structure import HISTORY_TABLE, read_structure

USING = ("CASE WHEN trim(rating) <> '' AND trim(rating) NOT GLOB '*[^0-9]*' THEN CAST(trim(rating) AS INTEGER) END")
SPLIT = ("UPDATE users SET first_name = CASE WHEN instr(name, ' ') THEN substr(name, 1, instr(name, ' ') - 1) "
         "ELSE name END, last_name = CASE WHEN instr(name, ' ') THEN substr(name, instr(name, ' ') + 1) END")

OLD = Schema("app", tables=[
    Table("users", [Column("id", "INTEGER"), Column("name", "TEXT", not_null=True)], PrimaryKey(["id"])),
    Table("links", [Column("id", "INTEGER"), Column("user_id", "INTEGER"), Column("rating", "TEXT")],
          PrimaryKey(["id"]), foreign_keys=[fk("user_id", "users", "id")]),
])


def new_schema(step_sql=SPLIT, python=None, using=USING, rating_not_null=False, checks=()):
    steps = [DataStep("split_name", sql=step_sql)] if python is None else [DataStep("split_name", python=python)]
    return Schema("app", tables=[
        Table("users", [Column("id", "INTEGER"), Column("first_name", "TEXT", not_null=True),
                        Column("last_name", "TEXT")], PrimaryKey(["id"])),
        Table("links", [Column("id", "INTEGER"), Column("user_id", "INTEGER"),
                        Column("rating", "INTEGER", not_null=rating_not_null, using=using)],
              PrimaryKey(["id"]), foreign_keys=[fk("user_id", "users", "id")], checks=list(checks)),
    ], removed=[removed("column", "name", "split into first_name and last_name", table="users")], data_steps=steps)


NEW = new_schema()


@pytest.fixture
def old_db(tmp_path):
    path = str(tmp_path / "app.db")
    apply(path, OLD, backup=False)
    conn = connect(path)
    conn.executescript("INSERT INTO users VALUES (1, 'Ada Lovelace'), (2, 'Plato');"
                       "INSERT INTO links VALUES (1, 1, '5'), (2, 2, 'great'), (3, 1, NULL), (4, 2, ' 12 ');")
    conn.close()
    return path


def digest(path):
    with open(path, "rb") as f:
        return hashlib.sha256(f.read()).hexdigest()


def rows(path, sql):
    conn = sqlite3.connect(path)
    try:
        return conn.execute(sql).fetchall()
    finally:
        conn.close()


def test_one_apply_expands_moves_the_data_converts_and_contracts(old_db):
    result = apply(old_db, NEW, backup=True, allow_data_loss=False, confirm=lambda plan: True)
    assert result.applied
    assert rows(old_db, "SELECT id, first_name, last_name FROM users ORDER BY id") == [(1, "Ada", "Lovelace"),
                                                                                       (2, "Plato", None)]
    assert rows(old_db, "SELECT id, rating, typeof(rating) FROM links ORDER BY id") == [
        (1, 5, "integer"), (2, None, "null"), (3, None, "null"), (4, 12, "integer")]
    assert [r[1] for r in rows(old_db, "SELECT * FROM pragma_table_info('users')")] == ["id", "first_name", "last_name"]
    record = history.read_history(old_db)
    assert len(record) == 1 and record[0]["kind"] == "apply"
    assert record[0]["data_steps_run"] == ["split_name"] and record[0]["data_steps_recorded"] == []
    assert record[0]["backup"] == result.backup and os.path.exists(result.backup)
    assert any(t.startswith("rebuild table 'links'") for t in record[0]["steps"])
    # the data-loss guard saw both: the removed column's values and the value the conversion makes NULL
    loss = {(d["kind"], d["table"], d["column"]): d["rows"] for d in result.plan.data_loss}
    assert loss == {("column", "users", "name"): 2, ("conversion", "links", "rating"): 1}
    # the steps ran in the documented order: additions, the data step, rebuilds, the record
    titles = [s.title for s in result.plan.steps]
    assert titles.index("run data step 'split_name'") < min(i for i, t in enumerate(titles) if t.startswith("rebuild"))
    assert titles[-1] == "record this apply in '%s'" % HISTORY_TABLE


def test_the_data_step_runs_once_however_often_apply_runs(old_db):
    apply(old_db, NEW, backup=False, allow_data_loss=True)
    conn = connect(old_db)
    conn.execute("UPDATE users SET first_name = 'Changed' WHERE id = 2")
    conn.close()
    for _ in range(2):
        again = apply(old_db, NEW, backup=False, allow_data_loss=True)
        assert not again.applied
    assert rows(old_db, "SELECT first_name FROM users WHERE id = 2") == [("Changed",)]
    assert len(history.read_history(old_db)) == 1


def test_a_failing_data_step_leaves_the_file_byte_identical(old_db):
    before = digest(old_db)
    with pytest.raises(ApplyError) as exc:
        apply(old_db, new_schema(step_sql="UPDATE users SET no_such_column = 1"), backup=True, allow_data_loss=True)
    message = str(exc.value)
    assert "split_name" in message and "no_such_column" in message and "UPDATE users SET no_such_column" in message
    assert digest(old_db) == before
    assert sorted(os.listdir(os.path.dirname(old_db))) == ["app.db"]  # no backup kept, no -wal or -journal


def test_a_failing_data_step_exits_2_on_the_command_line(old_db, tmp_path):
    decl = tmp_path / "bad.py"
    decl.write_text("from schema_dsl.model import *\nfrom test_history import new_schema\n"
                    "SCHEMA = new_schema(step_sql='UPDATE users SET no_such_column = 1')\n")
    before = digest(old_db)
    result = make_runner().invoke(main, ["apply", "--db", old_db, "--schema", str(decl), "--yes"])
    assert result.exit_code == 2, result.output
    assert "split_name" in result.stderr and "no_such_column" in result.stderr
    assert digest(old_db) == before


def test_a_fresh_file_records_every_step_as_done_without_running_it(tmp_path):
    path = str(tmp_path / "new.db")
    result = apply(path, new_schema(step_sql="UPDATE no_such_table SET x = 1"), backup=False)
    assert result.applied and result.plan.fresh
    record = history.read_history(path)
    assert [(r["data_steps_run"], r["data_steps_recorded"]) for r in record] == [([], ["split_name"])]
    assert not apply(path, NEW, backup=False).applied


def test_the_history_is_no_part_of_the_users_schema(old_db, tmp_path):
    apply(old_db, NEW, backup=False, allow_data_loss=True)
    conn = sqlite3.connect(old_db)
    assert HISTORY_TABLE not in read_structure(conn)["tables"]
    conn.close()
    # prune finds nothing to drop, inspect writes no table for it
    assert not apply(old_db, NEW, backup=False, prune="all", allow_data_loss=True).applied
    runner = make_runner()
    out = runner.invoke(main, ["inspect", "--db", old_db])
    assert out.exit_code == 0 and HISTORY_TABLE not in out.output and "users" in out.output
    report = runner.invoke(main, ["validate", "--db", old_db, "--schema", "tests/test_history.py:NEW", "--json"])
    data = json.loads(report.stdout)
    assert data["counts"]["tables"] == 2 and data["ok"]
    assert data["history"]["declaration"] == "app"


def test_a_declaration_without_history_creates_no_table(tmp_path):
    path = str(tmp_path / "plain.db")
    apply(path, OLD, backup=False)
    assert rows(path, "SELECT count(*) FROM sqlite_master WHERE name = '%s'" % HISTORY_TABLE) == [(0,)]
    assert history.read_history(path) == []


def test_history_true_keeps_a_record_without_data_steps(tmp_path):
    path = str(tmp_path / "h.db")
    decl = Schema("app", tables=OLD.tables, history=True)
    apply(path, decl, backup=False)
    assert not apply(path, decl, backup=False).applied
    assert [r["kind"] for r in history.read_history(path)] == ["apply"]


def test_plan_names_the_pending_step_and_its_sql(old_db):
    before = digest(old_db)
    plan = plan_database(old_db, NEW)
    assert digest(old_db) == before  # planned on a copy: the file is only read
    step = next(s for s in plan.steps if isinstance(s.change, history.RunDataStep))
    assert step.title == "run data step 'split_name'" and step.statements == (SPLIT + ";",)
    assert rows(old_db, "SELECT name FROM users ORDER BY id") == [("Ada Lovelace",), ("Plato",)]


def test_plan_sql_carries_the_data_step_and_the_history_record(old_db, tmp_path):
    out = make_runner().invoke(main, ["plan", "--db", old_db, "--schema", "tests/test_history.py:NEW", "--sql"])
    assert out.exit_code == 0, out.output
    # every write in the script may fail on the data, so each runs OR ROLLBACK: no runner can commit a part
    assert SPLIT.replace("UPDATE ", "UPDATE OR ROLLBACK ", 1) + ";" in out.stdout
    assert 'INSERT OR ROLLBACK INTO "%s"' % HISTORY_TABLE in out.stdout
    conn = sqlite3.connect(old_db, isolation_level=None)
    conn.executescript(out.stdout)
    conn.close()
    assert rows(old_db, "SELECT first_name, last_name FROM users ORDER BY id") == [("Ada", "Lovelace"), ("Plato", None)]
    assert history.done(sqlite3.connect(old_db)) == {"split_name"}
    assert not apply(old_db, NEW, backup=False).applied


def _split(conn):
    for rowid, name in conn.execute("SELECT id, name FROM users").fetchall():
        first, _, last = name.partition(" ")
        conn.execute("UPDATE users SET first_name = ?, last_name = ? WHERE id = ?", (first, last or None, rowid))


PYTHON = new_schema(python=_split)


def test_a_python_step_runs_in_the_transaction_and_plan_sql_refuses_it(old_db):
    out = make_runner().invoke(main, ["plan", "--db", old_db, "--schema", "tests/test_history.py:PYTHON", "--sql"])
    assert out.exit_code == 2 and "split_name" in out.stderr and "python=" in out.stderr
    apply(old_db, PYTHON, backup=False, allow_data_loss=True)
    assert rows(old_db, "SELECT first_name, last_name FROM users ORDER BY id") == [("Ada", "Lovelace"), ("Plato", None)]


def test_database_initialize_runs_the_data_steps_the_same_way(old_db):
    from schema_dsl.database import Database
    db = Database(old_db, schema=NEW)
    asyncio.run(db.initialize(allow_data_loss=True))
    assert rows(old_db, "SELECT first_name FROM users ORDER BY id") == [("Ada",), ("Plato",)]
    assert history.done(sqlite3.connect(old_db)) == {"split_name"}


def test_history_command_reads_only_the_record_and_record_marks_a_step_done(old_db):
    runner = make_runner()
    empty = runner.invoke(main, ["history", "--db", old_db])
    assert empty.exit_code == 0 and "no history" in empty.output
    unknown = runner.invoke(main, ["history", "--db", old_db, "--record", "nope", "--schema", "tests/test_history.py:NEW"])
    assert unknown.exit_code == 2 and "'nope'" in unknown.stderr
    done = runner.invoke(main, ["history", "--db", old_db, "--record", "split_name"])
    assert done.exit_code == 0 and "split_name" in done.output
    listed = runner.invoke(main, ["history", "--db", old_db, "--json"])
    assert [r["data_steps_recorded"] for r in json.loads(listed.stdout)] == [["split_name"]]
    # the step is done: apply does not run it, so first_name stays empty and the NOT NULL refuses the rebuild
    with pytest.raises(UnsafeMigrationError, match="first_name"):
        apply(old_db, NEW, backup=False, allow_data_loss=True)


def test_a_type_change_over_values_without_using_names_the_using_to_write(old_db):
    with pytest.raises(UnsafeMigrationError) as exc:
        plan_database(old_db, new_schema(using=None))
    suggested = 'CASE WHEN CAST("rating" AS INTEGER) = "rating" THEN CAST("rating" AS INTEGER) END'
    assert "using=%r" % suggested in str(exc.value)
    # the suggestion, written as asked, keeps every value that converts exactly and makes the others NULL, which
    # plan counts as data loss (before: it named the plain CAST, which silently turned 'great' into 0)
    plan = plan_database(old_db, new_schema(using=suggested))
    assert [(d["column"], d["rows"]) for d in plan.data_loss if d["kind"] == "conversion"] == [("rating", 1)]
    apply(old_db, new_schema(using=suggested), backup=False, allow_data_loss=True)
    assert rows(old_db, "SELECT id, rating FROM links ORDER BY id") == [(1, 5), (2, None), (3, None), (4, 12)]


def test_a_conversion_that_breaks_not_null_is_refused_naming_rows(old_db):
    before = digest(old_db)
    with pytest.raises(UnsafeMigrationError) as exc:
        apply(old_db, new_schema(rating_not_null=True), backup=False, allow_data_loss=True)
    assert "rating" in str(exc.value) and "rowid 2, 3" in str(exc.value)
    assert digest(old_db) == before


def test_a_conversion_that_breaks_a_check_is_refused_naming_rows(old_db):
    with pytest.raises(UnsafeMigrationError) as exc:
        plan_database(old_db, new_schema(checks=[Check("rating IS NULL OR rating <= 10")]))
    assert "CHECK (rating IS NULL OR rating <= 10)" in str(exc.value) and "rowid 4" in str(exc.value)


def test_data_steps_are_validated_and_the_schemagen_prefix_is_reserved():
    with pytest.raises(DeclarationError) as exc:
        Schema("x", tables=[Table("_schemagen_history", [Column("id", "INTEGER")])],
               data_steps=[DataStep("a"), DataStep("b", sql="SELECT 1", python=print), DataStep("c", sql="x"),
                           DataStep("c", sql="y")])
    text = str(exc.value)
    assert "'_schemagen_history'" in text and "data step 'a': expected exactly one" in text
    assert "data step 'b': expected exactly one" in text and "data step 'c': declared twice" in text


def test_the_readme_example_runs_as_documented(old_db):
    readme = (Path(__file__).resolve().parent.parent / "README.md").read_text(encoding="utf-8")
    section = readme[readme.index("### Changes that carry data"):]
    code = section[section.index("```python") + len("```python"):section.index("```\n", section.index("```python") + 9)]
    space = {}
    exec(compile(code, "README.md", "exec"), space)
    apply(old_db, space["SCHEMA"], backup=False, allow_data_loss=True)
    assert rows(old_db, "SELECT first_name, last_name FROM users ORDER BY id") == [("Ada", "Lovelace"), ("Plato", None)]
    assert rows(old_db, "SELECT rating FROM links ORDER BY id") == [(5,), (None,), (None,), (12,)]
    assert history.done(sqlite3.connect(old_db)) == {"split_name"}


# --- diff: a change that carries data, between specs and between git revisions ---------------------------

DIFF_OLD = '''
from schema_dsl.model import Column, PrimaryKey, Schema, Table
SCHEMA = Schema("app", tables=[
    Table("users", [Column("id", "INTEGER"), Column("name", "TEXT"), Column("nick", "TEXT"), Column("mail", "TEXT")],
          PrimaryKey(["id"])),
    Table("links", [Column("id", "INTEGER"), Column("rating", "TEXT")], PrimaryKey(["id"])),
])
'''

DIFF_NEW = '''
from schema_dsl.model import Column, DataStep, PrimaryKey, Schema, Table, removed
SCHEMA = Schema("app", tables=[
    Table("users", [Column("id", "INTEGER"), Column("first_name", "TEXT"), Column("email", "TEXT", renamed_from="mail")],
          PrimaryKey(["id"])),
    Table("links", [Column("id", "INTEGER"), Column("rating", "INTEGER", using=%r)], PrimaryKey(["id"])),
], removed=[removed("column", "name", "split", table="users"), removed("column", "nick", "unused", table="users")],
   data_steps=[DataStep("split_name", sql="UPDATE users SET first_name = name")])
''' % USING

GIT_ENV = dict(os.environ, GIT_AUTHOR_NAME="t", GIT_AUTHOR_EMAIL="t@example.com", GIT_COMMITTER_NAME="t",
               GIT_COMMITTER_EMAIL="t@example.com", GIT_CONFIG_NOSYSTEM="1", HOME="/nonexistent")


def _git(root, *args):
    import subprocess
    done = subprocess.run(["git", "-c", "commit.gpgsign=false", "-c", "init.defaultBranch=main", *args], cwd=root,
                          env=GIT_ENV, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    return done.stdout


def _diff_db(tmp_path):
    (tmp_path / "old.py").write_text(DIFF_OLD, encoding="utf-8")
    path = str(tmp_path / "d.db")
    assert make_runner().invoke(main, ["apply", "--db", path, "--schema", str(tmp_path / "old.py"),
                                       "--no-validate"]).exit_code == 0
    conn = connect(path)
    conn.executescript("INSERT INTO users VALUES (1, 'Ada', 'a', 'a@x'), (2, 'Bo', NULL, NULL);"
                       "INSERT INTO links VALUES (1, '4'), (2, 'n/a');")
    conn.close()
    return path


def test_diff_between_revisions_sees_removals_renames_conversions_and_data_steps(tmp_path, monkeypatch):
    root = tmp_path / "repo"
    root.mkdir()
    (root / "pyproject.toml").write_text('[project]\nname = "app"\n\n[tool.schemagen]\ndeclaration = "schema.py"\n')
    (root / "schema.py").write_text(DIFF_OLD)
    monkeypatch.chdir(root)
    runner = make_runner()
    assert runner.invoke(main, ["render"]).exit_code == 0
    _git(root, "init", "-q")
    _git(root, "add", "-A")
    _git(root, "commit", "-q", "-m", "old")
    (root / "schema.py").write_text(DIFF_NEW)
    assert runner.invoke(main, ["render"]).exit_code == 0
    _git(root, "add", "-A")
    _git(root, "commit", "-q", "-m", "new")
    result = runner.invoke(main, ["diff", "HEAD~1", "HEAD", "--json", "--strict"])
    assert result.exit_code == 1, result.output
    data = json.loads(result.stdout)
    assert data["to"]["reconstructed"] is True
    losses = {(x["kind"], x["table"], x["column"]) for x in data["loses_data"]}
    assert losses == {("column", "users", "name"), ("column", "users", "nick"), ("conversion", "links", "rating")}
    assert [s["kind"] for s in data["steps"]][:1] == ["RenameColumn"]  # mail -> email: a rename, not an add
    assert data["steps"][0]["title"] == "rename column 'users'.'mail' to 'email'"
    assert [x["name"] for x in data["data_steps"]] == ["split_name"]
    # with --db: the values concerned are counted
    db = _diff_db(tmp_path)
    counted = json.loads(runner.invoke(main, ["diff", "HEAD~1", "HEAD", "--json", "--db", db]).stdout)
    assert {(x["column"], x["rows"]) for x in counted["loses_data"]} == {("name", 2), ("nick", 1), ("rating", 1)}


def test_diff_strict_fails_on_a_type_change_that_apply_would_refuse(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    db = _diff_db(tmp_path)
    (tmp_path / "typed.py").write_text(DIFF_OLD.replace('Column("rating", "TEXT")', 'Column("rating", "INTEGER")'))
    runner = make_runner()
    plain = runner.invoke(main, ["diff", "old.py", "typed.py", "--strict"])
    assert plain.exit_code == 0 and "changes affinity without using=" in plain.stdout
    counted = runner.invoke(main, ["diff", "old.py", "typed.py", "--db", db, "--strict"])
    assert counted.exit_code == 1 and "2 rows hold a value: declare using=" in counted.stdout
    with pytest.raises(UnsafeMigrationError):
        plan_database(db, load_schema_file(tmp_path / "typed.py"))


def load_schema_file(path):
    from schema_dsl.compile.project import load_declaration
    return load_declaration(str(path))


def test_diff_shows_a_declared_repair_delete_as_data_loss_counted_with_db(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    base = ('from schema_dsl.model import Column, ForeignKey, PrimaryKey, Schema, Table\n'
            'SCHEMA = Schema("app", tables=[Table("p", [Column("id", "INTEGER")], PrimaryKey(["id"])),\n'
            '    Table("c", [Column("id", "INTEGER"), Column("p_id", "INTEGER")], PrimaryKey(["id"])%s)])\n')
    (tmp_path / "a.py").write_text(base % "")
    (tmp_path / "b.py").write_text(base % ', foreign_keys=[ForeignKey(["p_id"], "p", ["id"], repair="delete")]')
    runner = make_runner()
    db = str(tmp_path / "r.db")
    assert runner.invoke(main, ["apply", "--db", db, "--schema", "a.py", "--no-validate"]).exit_code == 0
    conn = connect(db)
    conn.executescript("INSERT INTO p VALUES (1); INSERT INTO c VALUES (1, 1), (2, 7), (3, 8);")
    conn.close()
    result = runner.invoke(main, ["diff", "a.py", "b.py", "--db", db, "--strict"])
    assert result.exit_code == 1
    assert "repair='delete' on foreign key (p_id) -> p deletes the rows that break it: 2 rows in" in result.stdout


def _upper(conn):
    conn.execute("UPDATE users SET name = upper(name)")


def test_plan_of_a_pending_python_step_only_reads_the_file(old_db):
    # nothing to add first: the python step is the first write, refused by the read-only file inside the callable
    decl = Schema("app", tables=OLD.tables, data_steps=[DataStep("upper", python=_upper)])
    before = digest(old_db)
    plan = plan_database(old_db, decl)
    step = next(s for s in plan.steps if isinstance(s.change, history.RunDataStep))
    assert step.title == "run data step 'upper' (python)" and step.rows == 2
    assert digest(old_db) == before


def test_a_data_step_may_hold_several_statements_on_one_line(old_db):
    decl = new_schema(step_sql=SPLIT + "; UPDATE users SET last_name = 'X;Y' WHERE last_name IS NULL")
    apply(old_db, decl, backup=False, allow_data_loss=True)
    assert rows(old_db, "SELECT last_name FROM users ORDER BY id") == [("Lovelace",), ("X;Y",)]


def _counting(calls, fail=False):
    def step(conn):
        calls.append(1)
        _split(conn)
        if fail:
            raise RuntimeError("boom")
    return step


def test_apply_and_initialize_call_a_python_step_once(old_db, tmp_path):
    import shutil
    from schema_dsl.database import Database
    other = str(tmp_path / "other.db")
    shutil.copy(old_db, other)
    calls = []
    result = apply(old_db, new_schema(python=_counting(calls)), backup=True, allow_data_loss=True)
    assert calls == [1]  # planned and run in apply's one transaction, not again after planning
    assert rows(old_db, "SELECT first_name, last_name FROM users ORDER BY id") == [("Ada", "Lovelace"), ("Plato", None)]
    # the backup is the file as it was before the step: the old design, its names untouched
    assert rows(result.backup, "SELECT name FROM users ORDER BY id") == [("Ada Lovelace",), ("Plato",)]
    assert "run data step 'split_name' (python)" in [s.title for s in result.plan.steps]
    assert history.read_history(old_db)[0]["data_steps_run"] == ["split_name"]
    calls.clear()
    asyncio.run(Database(other, schema=new_schema(python=_counting(calls))).initialize(allow_data_loss=True))
    assert calls == [1]
    assert rows(other, "SELECT first_name FROM users ORDER BY id") == [("Ada",), ("Plato",)]
    calls.clear()
    plan = plan_database(old_db, new_schema(python=_counting(calls)))  # done: plan does not call it
    assert calls == [] and not any(isinstance(s.change, history.RunDataStep) for s in plan.steps)


def test_a_failing_python_step_is_called_once_and_leaves_the_file_byte_identical(old_db):
    before = digest(old_db)
    calls = []
    with pytest.raises(ApplyError, match="split_name.*boom"):
        apply(old_db, new_schema(python=_counting(calls, fail=True)), backup=True, allow_data_loss=True)
    assert calls == [1]
    assert digest(old_db) == before
    assert sorted(os.listdir(os.path.dirname(old_db))) == ["app.db"]  # no backup kept, no -wal or -journal
def test_a_renamed_table_rebuilt_after_a_data_step_is_not_called_damaged(tmp_path):
    # with a data step the table rename is its own step before the step and the rebuild, and the rebuild
    # names the table by its new name: the quick_check before writing asked for that table in a file that
    # still had it under the old name and refused a sound file as "damaged", telling the user to restore a
    # backup or recover the data
    path = str(tmp_path / "app.db")
    old = Schema("app", tables=[Table("old", [Column("id", "INTEGER"), Column("s", "TEXT")], PrimaryKey(["id"]))])
    apply(path, schema=old, backup=False)
    conn = sqlite3.connect(path)
    conn.execute("INSERT INTO old VALUES (1, 'abc')")
    conn.commit()
    conn.close()
    new = Schema("app", tables=[Table("new", [Column("id", "INTEGER"), Column("s", "TEXT", not_null=True)],
                                      PrimaryKey(["id"]), renamed_from="old")],
                 data_steps=[DataStep("up", sql="UPDATE new SET s = upper(s)")])
    apply(path, schema=new, backup=False)
    conn = sqlite3.connect(path)
    assert conn.execute("SELECT * FROM new").fetchall() == [(1, "ABC")]
    conn.close()


@pytest.mark.parametrize("table", [
    "CREATE TABLE _schemagen_history (x)",  # not schemagen's columns
    "CREATE TABLE _schemagen_history (id INTEGER PRIMARY KEY, applied_at, kind, declaration, declaration_sha256, "
    "schemagen_version, steps, data_steps_run, data_steps_recorded, backup); INSERT INTO _schemagen_history "
    "VALUES (1, 'x', 'apply', 'app', 'h', '0', '5', '5', '{\"a\": 1}', NULL)",  # JSON that is not a list
    # no "backup" column: SQLite read the double-quoted name as the string 'backup' ("backup: backup"), exit 0
    "CREATE TABLE _schemagen_history (id INTEGER PRIMARY KEY, applied_at, kind, declaration, declaration_sha256, "
    "schemagen_version, steps, data_steps_run, data_steps_recorded); INSERT INTO _schemagen_history "
    "VALUES (1, 'x', 'apply', 'app', 'h', '0', '[]', '[\"split_name\"]', '[]')",
])
def test_a_history_table_that_is_not_schemagens_is_one_line_exit_2(old_db, table, tmp_path):
    # before: a traceback (sqlite3.OperationalError "no such column: id", or TypeError), exit 1
    conn = sqlite3.connect(old_db)
    conn.executescript(table)
    conn.close()
    before = digest(old_db)
    result = make_runner().invoke(main, ["history", "--db", old_db])
    assert not (result.exception and not isinstance(result.exception, SystemExit)), result.exception
    assert result.exit_code == 2, result.output
    assert "_schemagen_history" in result.stderr and len(result.stderr.strip().splitlines()) == 1
    for run in (lambda: plan_database(old_db, schema=new_schema()),
                lambda: apply(old_db, schema=new_schema(), backup=False)):
        with pytest.raises(SchemagenError) as err:
            run()
        assert "_schemagen_history" in str(err.value)
    assert digest(old_db) == before


def _commits_midway(conn):
    conn.execute("UPDATE users SET first_name = 'x', last_name = 'y'")
    conn.commit()


@pytest.mark.parametrize("step", [
    {"step_sql": SPLIT + "; COMMIT; UPDATE links SET rating = NULL"},
    {"step_sql": SPLIT + "; RELEASE schemagen_data_steps"},
    {"python": _commits_midway},
])
def test_a_data_step_that_commits_or_ends_a_savepoint_is_refused_and_commits_nothing(old_db, step):
    # before: the step's COMMIT committed the first half of the apply (the new columns, the data step's
    # changes, every links.rating set NULL), before any backup, and apply ended in a traceback, exit 1
    before = digest(old_db)
    with pytest.raises(ApplyError) as exc:
        apply(old_db, new_schema(**step), backup=True, allow_data_loss=True)
    assert "split_name" in str(exc.value) and "transaction" in str(exc.value)
    assert digest(old_db) == before
    assert sorted(os.listdir(os.path.dirname(old_db))) == ["app.db"]


def test_diff_text_names_the_data_step_and_when_it_runs():
    out = make_runner().invoke(main, ["diff", "tests/test_history.py:OLD", "tests/test_history.py:NEW"])
    assert out.exit_code == 0, out.output
    assert "data step 'split_name' runs once on each existing database" in out.stdout
    # the listed steps are planned on a new database, where no step runs: the text says so
    assert "note: these are the steps on a new database; on one with rows" in out.stdout


def _links_with(on_delete):
    return Table("links", [Column("id", "INTEGER"), Column("user_id", "INTEGER"), Column("rating", "TEXT")],
                 PrimaryKey(["id"]), foreign_keys=[fk("user_id", "users", "id", on_delete=on_delete)])


@pytest.mark.parametrize("on_delete", ["CASCADE", "SET NULL", "NO ACTION"])
def test_a_data_step_that_orphans_child_rows_is_refused_not_reported_as_kept(tmp_path, on_delete):
    # before: foreign keys are off in apply's transaction, so the step's DELETE fired no ON DELETE action and
    # left links 2 and 4 without a parent; apply committed and said the 2 violations "were there before apply,
    # kept" (its baseline was taken after the data steps had run), exit 1
    path = str(tmp_path / "app.db")
    users = Table("users", [Column("id", "INTEGER"), Column("name", "TEXT")], PrimaryKey(["id"]))
    apply(path, Schema("app", tables=[users, _links_with(on_delete)]), backup=False)
    conn = connect(path)
    conn.executescript("INSERT INTO users VALUES (1, 'Ada'), (2, 'Plato'); "
                       "INSERT INTO links VALUES (1, 1, '5'), (2, 2, 'great'), (3, 1, NULL), (4, 2, '12');")
    conn.close()
    before = digest(path)
    purge = Schema("app", tables=[users, _links_with(on_delete)],
                   data_steps=[DataStep("purge", sql="DELETE FROM users WHERE id = 2")])
    # plan says so too (before: it listed the step and exited 0)
    for run, error in ((lambda: plan_database(path, schema=purge), UnsafeMigrationError),
                       (lambda: apply(path, purge, backup=True), ApplyError)):
        with pytest.raises(error) as exc:
            run()
        message = str(exc.value)
        assert "purge" in message and "rowid 2" in message and "rowid 4" in message, message
        assert "ON DELETE" in message  # says why the declared action did not fire
    assert digest(path) == before
    assert sorted(os.listdir(os.path.dirname(path))) == ["app.db"]
    # a step that deletes the children first is fine, and violations already in the data stay kept
    conn = connect(path)
    conn.execute("PRAGMA foreign_keys = OFF")
    conn.execute("INSERT INTO links VALUES (5, 7, 'orphan already')")
    conn.commit()
    conn.close()
    tidy = Schema("app", tables=[users, _links_with(on_delete)], data_steps=[
        DataStep("purge", sql="DELETE FROM links WHERE user_id = 2; DELETE FROM users WHERE id = 2")])
    result = apply(path, tidy, backup=False)
    assert result.applied and result.kept_violations == 1 and "rowid 5" in result.kept_described[0]
    assert rows(path, "SELECT id FROM links ORDER BY id") == [(1,), (3,), (5,)]


def test_a_step_whose_name_only_changes_case_does_not_run_again(tmp_path):
    # before: the declaration refuses two steps whose names differ only in case (one name), but the history
    # compared names exactly: writing 'Double' for 'double' ran the one-off step a second time (every v doubled
    # twice), and `history --record DOUBLE` recorded a name no step matched
    path = str(tmp_path / "app.db")
    t = Table("t", [Column("id", "INTEGER"), Column("v", "INTEGER")], PrimaryKey(["id"]))
    apply(path, Schema("app", tables=[t]), backup=False)
    conn = connect(path)
    conn.execute("INSERT INTO t VALUES (1, 5)")
    conn.close()
    for name in ("double", "Double", "DOUBLE"):
        apply(path, Schema("app", tables=[t], data_steps=[DataStep(name, sql="UPDATE t SET v = v * 2")]),
              backup=False)
    assert rows(path, "SELECT v FROM t") == [(10,)]
    assert [r["data_steps_run"] for r in history.read_history(path)] == [["double"]]
    result = make_runner().invoke(main, ["history", "--db", path, "--record", "DOUBLE"])
    assert result.exit_code == 0 and "already done" in result.stdout, result.output
    assert len(history.read_history(path)) == 1


@pytest.mark.parametrize("name", ["", " split_name", "split_name "])
def test_history_record_refuses_a_name_no_data_step_can_have(old_db, name):
    # before: recorded '' or ' split_name' as done, exit 0: names the declaration refuses (empty, surrounding
    # white space), so no step ever matched them and the real step still ran
    before = digest(old_db)
    result = make_runner().invoke(main, ["history", "--db", old_db, "--record", name])
    assert result.exit_code == 2, result.output
    assert "--record" in result.stderr and len(result.stderr.strip().splitlines()) == 1
    assert digest(old_db) == before


COMMENTED = new_schema(step_sql="-- split the names\n" + SPLIT + "  -- first and last;\n"
                       "; UPDATE users SET last_name = '-' WHERE last_name IS NULL -- no last name\n-- done")


def test_a_data_step_with_sql_comments_runs_in_apply_and_in_the_plan_sql_script(old_db, tmp_path):
    # before: the statement 'UPDATE ... -- no last name' was written as 'UPDATE ... -- no last name;', its ';'
    # inside the comment, so plan --sql refused ("the exported script fails ... near SAVEPOINT: syntax error"),
    # and '-- done' became a statement of its own
    copy = str(tmp_path / "copy.db")
    with open(old_db, "rb") as src, open(copy, "wb") as dst:
        dst.write(src.read())
    out = make_runner().invoke(main, ["plan", "--db", old_db, "--schema", "tests/test_history.py:COMMENTED", "--sql"])
    assert out.exit_code == 0, out.output
    conn = sqlite3.connect(old_db, isolation_level=None)
    conn.executescript(out.stdout)
    conn.close()
    apply(copy, COMMENTED, backup=False, allow_data_loss=True)
    for path in (old_db, copy):
        assert rows(path, "SELECT first_name, last_name FROM users ORDER BY id") == [("Ada", "Lovelace"), ("Plato", "-")]
        assert history.done(sqlite3.connect(path)) == {"split_name"}


JSON_USING = new_schema(using="json_extract(rating, '$.stars')")


def test_a_conversion_that_raises_on_a_stored_value_is_refused_naming_the_rows(old_db):
    # before: json_extract over 'great' raised "malformed JSON" while the plan counted its NULLs: apply ended in a
    # traceback (exit 1) and plan said only "database 'app.db': malformed JSON", naming neither column nor rows
    conn = connect(old_db)
    conn.execute("UPDATE links SET rating = '{\"stars\": 4}' WHERE id IN (1, 4)")
    conn.close()
    before = digest(old_db)
    for run in (lambda: plan_database(old_db, schema=JSON_USING),
                lambda: apply(old_db, JSON_USING, backup=True, allow_data_loss=True)):
        with pytest.raises(UnsafeMigrationError) as exc:
            run()
        message = str(exc.value)
        assert "'links'" in message and "'rating'" in message and "json_extract" in message, message
        assert "malformed JSON" in message and "rowid 2" in message and "rowid 1" not in message, message
    result = make_runner().invoke(main, ["apply", "--db", old_db, "--schema", "tests/test_history.py:JSON_USING",
                                         "--yes"])
    assert result.exit_code == 2 and not (result.exception and not isinstance(result.exception, SystemExit))
    assert len(result.stderr.strip().splitlines()) == 1 and "rowid 2" in result.stderr, result.output
    assert digest(old_db) == before
    assert sorted(os.listdir(os.path.dirname(old_db))) == ["app.db"]


def test_a_data_step_may_delete_parents_of_a_table_the_same_apply_drops(tmp_path):
    # the refusal above is about rows left behind: children in a table the declaration removes do not stay
    path = str(tmp_path / "app.db")
    users = Table("users", [Column("id", "INTEGER"), Column("name", "TEXT")], PrimaryKey(["id"]))
    apply(path, Schema("app", tables=[users, _links_with("CASCADE")]), backup=False)
    conn = connect(path)
    conn.executescript("INSERT INTO users VALUES (1, 'Ada'), (2, 'Plato'); INSERT INTO links VALUES (1, 2, '5');")
    conn.close()
    purge = Schema("app", tables=[users], removed=[removed("table", "links", "gone")],
                   data_steps=[DataStep("purge", sql="DELETE FROM users WHERE id = 2")])
    assert [s.title for s in plan_database(path, schema=purge).steps][:2] == ["run data step 'purge'",
                                                                             "drop table 'links' (1 row)"]
    assert apply(path, purge, backup=False, allow_data_loss=True).applied
    assert rows(path, "SELECT id FROM users") == [(1,)]


def test_a_data_step_after_which_sqlite_ended_the_transaction_is_one_error(old_db, monkeypatch):
    # before: when SQLite had already ended the transaction (a full disk failing a cache spill rolls it all back),
    # undoing the step's savepoint failed with "no such savepoint: schemagen_data_steps": a traceback, exit 1.
    # (Reproduced on a 400 kB tmpfs; here the fault is injected where it happens.)
    real = history.run_step

    def full_disk(conn, step, label):
        if isinstance(step.change, history.RunDataStep):
            conn.execute("ROLLBACK")  # what SQLite itself does then
            raise ApplyError("%s failed: database or disk is full; nothing was changed" % label)
        return real(conn, step, label)
    monkeypatch.setattr(history, "run_step", full_disk)
    before = digest(old_db)
    for run in (lambda: apply(old_db, NEW, backup=True, allow_data_loss=True),
                lambda: plan_database(old_db, schema=NEW)):
        with pytest.raises(ApplyError) as exc:
            run()
        assert "split_name" in str(exc.value) and "full" in str(exc.value), exc.value
    assert digest(old_db) == before
    assert sorted(os.listdir(os.path.dirname(old_db))) == ["app.db"]


COUNTER_T = Table("t", [Column("id", "INTEGER"), Column("n", "INTEGER")], PrimaryKey(["id"]))
COUNTER_BASE = Schema("app", tables=[COUNTER_T], history=True)
COUNTER_STEP = Schema("app", tables=[COUNTER_T], data_steps=[DataStep("count_up", sql="UPDATE t SET n = n + 1")])


@pytest.mark.parametrize("first", ["script", "apply"])
def test_a_plan_sql_script_never_runs_a_data_step_the_history_records(tmp_path, first):
    # before: a step that changes no structure left the script's structure guard satisfied, so running the script
    # a second time (or after apply had run the step) ran the step again: n = 2, two records of 'count_up'
    path = str(tmp_path / "app.db")
    apply(path, COUNTER_BASE, backup=False)
    conn = connect(path)
    conn.execute("INSERT INTO t VALUES (1, 0)")
    conn.close()
    out = make_runner().invoke(main, ["plan", "--db", path, "--schema", "tests/test_history.py:COUNTER_STEP",
                                      "--sql"])
    assert out.exit_code == 0, out.output
    if first == "script":
        conn = sqlite3.connect(path, isolation_level=None)
        conn.executescript(out.stdout)
        conn.close()
    else:
        assert apply(path, COUNTER_STEP, backup=False).applied
    before = digest(path)
    conn = sqlite3.connect(path, isolation_level=None)
    with pytest.raises(sqlite3.IntegrityError) as exc:
        conn.executescript(out.stdout)
    conn.close()
    assert "count_up" in str(exc.value) and "already" in str(exc.value)
    assert digest(path) == before
    assert rows(path, "SELECT n FROM t") == [(1,)]
    assert [r["data_steps_run"] for r in history.read_history(path)] == [[], ["count_up"]]


def _chatty(conn):
    print("splitting the names")
    _split(conn)


CHATTY = new_schema(python=_chatty)


@pytest.mark.parametrize("command", ["plan", "apply"])
def test_a_python_step_that_prints_does_not_corrupt_json(old_db, command):
    # before: the step's print went to stdout ahead of the JSON ("stdout under --json is only the JSON")
    args = [command, "--db", old_db, "--schema", "tests/test_history.py:CHATTY", "--json"]
    result = make_runner().invoke(main, args + (["--yes", "--no-backup", "--allow-data-loss"] if command == "apply" else []))
    assert result.exit_code == 0, result.output
    json.loads(result.stdout)
    assert "splitting the names" in result.stderr


def _forgets(conn):
    conn.execute("DELETE FROM _schemagen_history")


def _forgets_quietly(conn):
    try:
        conn.execute("DELETE FROM _schemagen_history")
    except sqlite3.Error:
        pass


@pytest.mark.parametrize("tidy", [
    {"sql": "DELETE FROM _schemagen_history"}, {"sql": "DROP TABLE _schemagen_history"},
    {"sql": "UPDATE _schemagen_history SET data_steps_run = '[]'"},
    {"sql": "ALTER TABLE _schemagen_history RENAME TO kept"}, {"python": _forgets}, {"python": _forgets_quietly}])
def test_a_data_step_cannot_rewrite_schemagens_own_history(old_db, tidy):
    # before: the step erased the record that split_name had run (DELETE, UPDATE) or the whole history (DROP), and
    # apply said "migrated": the next apply of a declaration that still has split_name ran it again
    apply(old_db, NEW, backup=False, allow_data_loss=True)
    before = digest(old_db)
    decl = Schema("app", tables=list(NEW.tables), removed=list(NEW.removed),
                  data_steps=list(NEW.data_steps) + [DataStep("tidy", **tidy)])
    with pytest.raises(ApplyError) as exc:
        apply(old_db, decl, backup=True, allow_data_loss=True)
    assert "tidy" in str(exc.value) and HISTORY_TABLE in str(exc.value), exc.value
    assert digest(old_db) == before
    assert [r["data_steps_run"] for r in history.read_history(old_db)] == [["split_name"]]


async def _async_upper(conn):
    conn.execute("UPDATE users SET shout = upper(name)")


def _generator_upper(conn):
    yield conn.execute("UPDATE users SET shout = upper(name)")


@pytest.mark.parametrize("step", [_async_upper, _generator_upper])
def test_a_python_step_whose_body_never_runs_is_refused_not_recorded(old_db, step):
    # before: calling an async def (or a generator function) returns at once without running its body; apply
    # committed and the history said the step had run, though no value was written
    users = Table("users", [Column("id", "INTEGER"), Column("name", "TEXT", not_null=True), Column("shout", "TEXT")],
                  PrimaryKey(["id"]))
    decl = Schema("app", tables=[users, OLD.tables[1]], data_steps=[DataStep("shout", python=step)])
    before = digest(old_db)
    with pytest.raises(ApplyError) as exc:
        apply(old_db, decl, backup=True)
    assert "shout" in str(exc.value) and ("coroutine" in str(exc.value) or "generator" in str(exc.value)), exc.value
    assert digest(old_db) == before


@pytest.mark.parametrize("table", [
    "CREATE TABLE _schemagen_history (x)",
    "CREATE TABLE _schemagen_history (id INTEGER PRIMARY KEY, applied_at, kind, declaration, declaration_sha256, "
    "schemagen_version, steps, data_steps_run, data_steps_recorded, backup); "
    "INSERT INTO _schemagen_history (kind) VALUES ('apply')"])
def test_validate_of_a_file_whose_history_is_not_schemagens_checks_the_rest(tmp_path, table):
    # before: "error: no such column: declaration" (nothing validated), or a traceback on a NULL sha256 (exit 1);
    # the history is schemagen's own and no part of the comparison: validate checks the user's schema and says
    # the record is unreadable instead of which design the file was brought to
    path = str(tmp_path / "app.db")
    apply(path, OLD, backup=False)
    conn = connect(path)
    conn.executescript(table)
    conn.close()
    result = make_runner().invoke(main, ["validate", "--db", path, "--schema", "tests/test_history.py:OLD"])
    assert not (result.exception and not isinstance(result.exception, SystemExit)), result.exception
    assert result.exit_code == 0, result.output
    assert "last brought to" not in result.stdout and "_schemagen_history" in result.stdout


def test_a_pending_data_step_on_a_file_with_a_broken_foreign_key_of_the_users_own(old_db):
    # the whole-file foreign key check around the data steps must not trip over a foreign key of the user's own
    # that has no parent key ("foreign key mismatch"): it was broken before and is none of this apply's doing
    conn = sqlite3.connect(old_db)  # foreign keys off: with them on, SQLite refuses the insert into mine_child
    conn.executescript("CREATE TABLE mine_parent (code TEXT); CREATE TABLE mine_child (code TEXT REFERENCES "
                       "mine_parent (code)); INSERT INTO mine_parent VALUES ('a'); INSERT INTO mine_child VALUES ('a');")
    conn.close()
    assert [s.title for s in plan_database(old_db, schema=NEW).steps][2] == "run data step 'split_name'"
    assert apply(old_db, NEW, backup=False, allow_data_loss=True).applied
    assert rows(old_db, "SELECT first_name FROM users ORDER BY id") == [("Ada",), ("Plato",)]
