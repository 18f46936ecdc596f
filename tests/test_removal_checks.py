"""Removals, renames and rebuilds that keep the user's own objects working, or are refused before anything runs
(issue 15, items 7-10 and 14; issue 17, items 3 and 6)."""
from __future__ import annotations

import hashlib
import json
import sqlite3
import textwrap

import pytest

from conftest import make_runner
from schema_dsl.cli import main
from schema_dsl.errors import ApplyError, UnsafeMigrationError
from schema_dsl.migrate.apply import apply, plan_database

HEADER = "from schema_dsl.model import *\n"
PARENT = ('Table("parent", [Column("id", "INTEGER"), Column("name", "TEXT"), Column("size", "INTEGER")], '
          'primary_key=PrimaryKey(("id",)))')
CHILD = ('Table("child", [Column("id", "INTEGER"), Column("parent_id", "INTEGER"), Column("note", "TEXT")], '
         'primary_key=PrimaryKey(("id",)), foreign_keys=[fk("parent_id", "parent", "id")])')


def _connect(path):
    """Foreign keys on: nothing here passes because they are off."""
    conn = sqlite3.connect(str(path), isolation_level=None)
    conn.execute("PRAGMA foreign_keys = ON")
    return conn


def _digest(path):
    return hashlib.sha256(open(path, "rb").read()).hexdigest()


def _declaration(folder, name, body):
    """A declaration file: SCHEMA = Schema("app", ...) built from body (Python text over the model)."""
    path = folder / (name + ".py")
    path.write_text(HEADER + textwrap.dedent(body), encoding="utf-8")
    return path


def _load(path):
    from schema_dsl.compile.project import load_declaration
    return load_declaration(str(path))


@pytest.fixture
def runner():
    return make_runner()


@pytest.fixture
def app(tmp_path):
    """A database of parent and child with rows, applied from the declaration v1."""
    v1 = _declaration(tmp_path, "v1", "SCHEMA = Schema('app', [%s, %s])\n" % (PARENT, CHILD))
    db = tmp_path / "app.db"
    apply(str(db), schema=_load(v1), backup=False)
    conn = _connect(db)
    conn.executescript("""
        INSERT INTO parent VALUES (1, 'a', 10), (2, 'b', 20), (3, 'c', 30);
        INSERT INTO child VALUES (1, 1, 'n1'), (2, 2, 'n2'), (3, NULL, NULL);
    """)
    conn.close()
    return db


def _without_size(tmp_path):
    """v2: parent's column size removed (declared)."""
    return _declaration(tmp_path, "v2", """
        SCHEMA = Schema('app', [
            Table("parent", [Column("id", "INTEGER"), Column("name", "TEXT")], primary_key=PrimaryKey(("id",))),
            %s], removed=[removed("column", "size", "never read", table="parent")])
    """ % CHILD)


def _cli(runner, *args):
    result = runner.invoke(main, list(args))
    assert not isinstance(result.exception, Exception) or isinstance(result.exception, SystemExit), result.exception
    return result


# --- item 7: a user's index on a removed column -----------------------------------------------------------

def test_a_users_index_on_a_removed_column_is_a_drop_plan_and_apply_name(app, tmp_path, runner):
    conn = _connect(app)
    conn.execute("CREATE INDEX my_size ON parent (size, name)")
    conn.execute("CREATE INDEX my_name ON parent (name)")
    conn.close()
    v2 = _without_size(tmp_path)
    plan = plan_database(str(app), schema=_load(v2))
    titles = [s.title for s in plan.steps]
    assert "drop index 'my_size'" in titles
    assert titles.index("drop index 'my_size'") < next(i for i, t in enumerate(titles) if t.startswith("rebuild"))
    assert not any("my_size" in line for line in plan.extras)  # never listed as kept
    assert any("my_name" in line for line in plan.extras)  # an index on kept columns is kept
    shown = _cli(runner, "plan", "--db", str(app), "--schema", str(v2), "--json")
    assert shown.exit_code == 0, shown.output
    steps = json.loads(shown.stdout)["steps"]
    drop = next(s for s in steps if s["title"] == "drop index 'my_size'")
    assert "removed column 'parent'.'size'" in drop["why"]
    assert drop["drops"] == {"kind": "index", "name": "my_size", "table": "parent"}
    done = _cli(runner, "apply", "--db", str(app), "--schema", str(v2), "--yes", "--no-validate", "--json")
    assert done.exit_code == 0, done.output
    assert "drop index 'my_size'" in [s["title"] for s in json.loads(done.stdout)["steps"]]
    names = {r[0] for r in _connect(app).execute("SELECT name FROM sqlite_master")}
    assert "my_size" not in names and "my_name" in names


def test_apply_text_names_what_it_dropped(app, tmp_path, runner):
    conn = _connect(app)
    conn.execute("CREATE INDEX my_size ON parent (size)")
    conn.close()
    done = _cli(runner, "apply", "--db", str(app), "--schema", str(_without_size(tmp_path)), "--yes", "--no-validate")
    assert done.exit_code == 0, done.output
    assert "dropped: index 'my_size' on 'parent'" in done.stdout


# --- item 8 and issue 17 item 3: what a removal would break is refused when planned ------------------------

@pytest.fixture(params=["plan", "apply"])
def checked_at(request, monkeypatch):
    """plan: refused when planned (an in-memory copy of the planned structure); apply: with that switched off,
    apply's own check before COMMIT rolls back."""
    if request.param == "apply":
        monkeypatch.setattr("schema_dsl.migrate.apply.planned_problems", lambda conn, statements: [])
    return request.param


def _refused(db, schema, checked_at):
    error = UnsafeMigrationError if checked_at == "plan" else ApplyError
    before = _digest(db)
    if checked_at == "plan":
        with pytest.raises(error):
            plan_database(str(db), schema=schema)
    with pytest.raises(error) as err:
        apply(str(db), schema=schema, backup=False, allow_data_loss=True)
    assert _digest(db) == before
    return str(err.value)


def test_a_trigger_body_on_another_table_naming_a_removed_column_is_refused(app, tmp_path, checked_at):
    conn = _connect(app)
    conn.executescript("""
        CREATE TABLE tally (n INTEGER);
        CREATE TRIGGER bump AFTER INSERT ON tally BEGIN UPDATE parent SET size = size + 1; END;
    """)
    conn.close()
    text = _refused(app, _load(_without_size(tmp_path)), checked_at)
    assert "trigger 'bump': no such column: size" in text
    conn = _connect(app)
    conn.execute("INSERT INTO tally VALUES (1)")  # the file is unchanged: the trigger still works
    assert conn.execute("SELECT sum(size) FROM parent").fetchone()[0] == 63


def test_removing_a_table_a_users_table_references_is_refused(app, tmp_path, checked_at):
    conn = _connect(app)
    conn.execute("CREATE TABLE memo (id INTEGER PRIMARY KEY, child_id INTEGER REFERENCES child (id))")  # no rows
    conn.close()
    v2 = _declaration(tmp_path, "v2", "SCHEMA = Schema('app', [%s], removed=[removed('table', 'child', 'gone')])\n"
                      % PARENT)
    text = _refused(app, _load(v2), checked_at)
    assert "table 'memo': its foreign key (child_id) references table 'child', which does not exist" in text


def test_the_cli_refuses_in_one_line_exit_2_file_unchanged(app, tmp_path, runner):
    conn = _connect(app)
    conn.executescript("""
        CREATE TABLE tally (n INTEGER);
        CREATE TRIGGER bump AFTER INSERT ON tally BEGIN UPDATE parent SET size = size + 1; END;
    """)
    conn.close()
    v2 = _without_size(tmp_path)
    before = _digest(app)
    for command in (["plan"], ["apply", "--yes"]):
        result = _cli(runner, *command, "--db", str(app), "--schema", str(v2))
        assert result.exit_code == 2, result.output
        assert len(result.stderr.strip().splitlines()) == 1 and "trigger 'bump'" in result.stderr
    assert _digest(app) == before
    assert not [p for p in tmp_path.iterdir() if ".backup-" in p.name]


def test_what_was_broken_before_the_plan_does_not_block_it(app, tmp_path):
    conn = _connect(app)
    conn.execute("CREATE TRIGGER stale AFTER INSERT ON child BEGIN UPDATE nowhere SET x = 1; END")
    conn.close()
    result = apply(str(app), schema=_load(_without_size(tmp_path)), backup=False, allow_data_loss=True)
    assert result.applied
    assert [r[1] for r in _connect(app).execute("PRAGMA table_info(parent)")] == ["id", "name"]


# --- item 14: a column a user's foreign key uses as its parent key ------------------------------------------

def test_removing_a_parent_key_column_is_one_line_not_a_traceback(app, tmp_path, runner, checked_at):
    v1u = _declaration(tmp_path, "v1u", """
        SCHEMA = Schema('app', [
            Table("parent", [Column("id", "INTEGER"), Column("name", "TEXT", unique=True), Column("size", "INTEGER")],
                  primary_key=PrimaryKey(("id",))), %s])
    """ % CHILD)
    apply(str(app), schema=_load(v1u), backup=False)
    conn = _connect(app)
    conn.executescript("CREATE TABLE tag (name TEXT REFERENCES parent (name)); INSERT INTO tag VALUES ('a');")
    conn.close()
    v2 = _declaration(tmp_path, "v2", """
        SCHEMA = Schema('app', [
            Table("parent", [Column("id", "INTEGER"), Column("size", "INTEGER")], primary_key=PrimaryKey(("id",))),
            %s], removed=[removed("column", "name", "renamed elsewhere", table="parent")])
    """ % CHILD)
    text = _refused(app, _load(v2), checked_at)
    assert "table 'tag': its foreign key (name) references table 'parent'" in text or \
        "table 'tag': its foreign key (name) references 'parent' (name)" in text
    if checked_at == "plan":
        result = _cli(runner, "apply", "--db", str(app), "--schema", str(v2), "--yes")
        assert result.exit_code == 2 and len(result.stderr.strip().splitlines()) == 1, result.output
        assert "table 'tag'" in result.stderr


# --- item 9: --prune and a UNIQUE index that a foreign key needs --------------------------------------------

def test_prune_keeps_a_unique_index_a_users_foreign_key_needs(app, tmp_path, runner):
    conn = _connect(app)
    conn.executescript("""
        CREATE UNIQUE INDEX parent_name_key ON parent (name);
        CREATE UNIQUE INDEX parent_size_key ON parent (size);
        CREATE TABLE tag (name TEXT REFERENCES parent (name));
    """)
    conn.close()
    v1 = tmp_path / "v1.py"
    plan = plan_database(str(app), schema=_load(v1), prune="objects")
    assert [s.title for s in plan.steps] == ["drop index 'parent_size_key'"]
    kept = [line for line in plan.extras if "parent_name_key" in line]
    assert kept == ["index 'parent_name_key' on 'parent' (the parent key of the foreign key of 'tag' (name): "
                    "--prune keeps it)"]
    done = _cli(runner, "apply", "--db", str(app), "--schema", str(v1), "--prune", "--no-validate")
    assert done.exit_code == 0, done.output
    conn = _connect(app)
    conn.execute("INSERT INTO tag VALUES ('a')")  # no "foreign key mismatch"
    with pytest.raises(sqlite3.IntegrityError):
        conn.execute("INSERT INTO tag VALUES ('zz')")


def test_removing_a_unique_index_a_foreign_key_needs_is_refused(app, tmp_path):
    conn = _connect(app)
    conn.executescript("""
        CREATE UNIQUE INDEX parent_name_key ON parent (name);
        CREATE TABLE tag (name TEXT REFERENCES parent (name));
    """)
    conn.close()
    v2 = _declaration(tmp_path, "v2", "SCHEMA = Schema('app', [%s, %s], removed=[removed('index', 'parent_name_key', "
                                      "'unused')])\n" % (PARENT, CHILD))
    before = _digest(app)
    with pytest.raises(UnsafeMigrationError, match=r"table 'tag': its foreign key \(name\) references 'parent' \(name\), "
                                                   r"which is neither its PRIMARY KEY nor UNIQUE"):
        apply(str(app), schema=_load(v2), backup=False)
    assert _digest(app) == before


# --- item 10: renamed_from while both names exist ------------------------------------------------------------

def test_a_table_rename_with_both_names_present_is_refused_naming_the_rows(app, tmp_path, runner):
    conn = _connect(app)
    conn.executescript("ALTER TABLE child RENAME TO child_v1; "
                       "CREATE TABLE child (id INTEGER PRIMARY KEY, parent_id INTEGER REFERENCES parent (id), note TEXT)")
    conn.close()
    v2 = _declaration(tmp_path, "v2", """
        SCHEMA = Schema('app', [%s,
            Table("child", [Column("id", "INTEGER"), Column("parent_id", "INTEGER"), Column("note", "TEXT")],
                  primary_key=PrimaryKey(("id",)), foreign_keys=[fk("parent_id", "parent", "id")],
                  renamed_from="child_v1")])
    """ % PARENT)
    before = _digest(app)
    with pytest.raises(UnsafeMigrationError, match="'child_v1' holds 3 rows, 'child' holds none"):
        plan_database(str(app), schema=_load(v2))
    result = _cli(runner, "apply", "--db", str(app), "--schema", str(v2))
    assert result.exit_code == 2 and len(result.stderr.strip().splitlines()) == 1, result.output
    assert "'child_v1' holds 3 rows" in result.stderr and "drop the empty 'child'" in result.stderr
    assert _digest(app) == before
    # the old table empty: nothing is stranded, it is the user's own table, kept
    conn = _connect(app)
    conn.execute("DELETE FROM child_v1")
    conn.close()
    plan = plan_database(str(app), schema=_load(v2))
    assert plan.up_to_date and any("child_v1" in line for line in plan.extras)


def test_a_column_rename_with_both_names_present_is_refused(app, tmp_path):
    conn = _connect(app)
    conn.execute("ALTER TABLE child ADD COLUMN remark TEXT")
    conn.close()
    v2 = _declaration(tmp_path, "v2", """
        SCHEMA = Schema('app', [%s,
            Table("child", [Column("id", "INTEGER"), Column("parent_id", "INTEGER"),
                            Column("remark", "TEXT", renamed_from="note")],
                  primary_key=PrimaryKey(("id",)), foreign_keys=[fk("parent_id", "parent", "id")])])
    """ % PARENT)
    before = _digest(app)
    with pytest.raises(UnsafeMigrationError, match="table 'child', column 'remark' is declared renamed_from 'note', "
                                                   "but table 'child' has both: 'note' holds 2 non-NULL values"):
        apply(str(app), schema=_load(v2), backup=False)
    assert _digest(app) == before


# --- issue 17 item 6: a rebuild touches only its dependents -------------------------------------------------

def test_a_rebuild_drops_and_recreates_only_the_views_and_triggers_that_name_its_table(app, tmp_path):
    conn = _connect(app)
    conn.executescript("""
        CREATE VIRTUAL TABLE child_fts USING fts5(note);
        CREATE TRIGGER child_fts_ai AFTER INSERT ON child BEGIN INSERT INTO child_fts (rowid, note) VALUES (new.id, new.note); END;
        CREATE TRIGGER child_fts_ad AFTER DELETE ON child BEGIN DELETE FROM child_fts WHERE rowid = old.id; END;
        CREATE VIEW child_notes AS SELECT id, note FROM child;
        CREATE VIEW parent_names AS SELECT id, name FROM parent;
        CREATE VIEW named_notes AS SELECT n.note, p.name FROM child_notes n JOIN parent p USING (id);
        CREATE VIEW note_count AS SELECT count(*) AS n FROM child_notes;
        CREATE TABLE log (what TEXT);
        CREATE TRIGGER parent_log AFTER UPDATE ON parent BEGIN INSERT INTO log VALUES (new.name); END;
        CREATE TRIGGER log_echo AFTER INSERT ON log BEGIN SELECT count(*) FROM parent_names; END;
    """)
    conn.close()
    plan = plan_database(str(app), schema=_load(_without_size(tmp_path)), prune=None)
    touched = sorted({s.title.split(" ", 1)[1] for s in plan.steps
                      if s.title.startswith(("drop view", "drop trigger", "recreate", "create view", "create trigger"))})
    assert touched == ["trigger 'log_echo'", "trigger 'parent_log'", "view 'named_notes'", "view 'parent_names'"]
    rebuild = [s for s in plan.steps if s.title.startswith("rebuild")]
    assert len(rebuild) == 1 and len(plan.steps) == 1 + 2 * 4
    drop = next(s for s in plan.steps if s.title == "drop view 'parent_names'")
    assert drop.why.startswith("dropped for the duration of the rebuild of 'parent'")
    apply(str(app), schema=_load(_without_size(tmp_path)), backup=False, allow_data_loss=True)
    conn = _connect(app)
    conn.execute("UPDATE parent SET name = 'A' WHERE id = 1")
    conn.execute("INSERT INTO child VALUES (9, 1, 'hello')")
    assert conn.execute("SELECT * FROM log").fetchall() == [("A",)]
    assert conn.execute("SELECT rowid FROM child_fts WHERE child_fts MATCH 'hello'").fetchall() == [(9,)]
    assert conn.execute("SELECT name FROM named_notes WHERE note = 'hello'").fetchall() == []
    assert conn.execute("SELECT n FROM note_count").fetchone() == (4,)


# --- issue 17 item 3: a declared view or trigger that names what the design renames away ---------------------

NOTES_V1 = """
    NOTE = Table("note", [Column("id", "INTEGER"), Column("body", "TEXT")], primary_key=PrimaryKey(("id",)))
    SCHEMA = Schema("notes", [NOTE, Table("log", [Column("what", "TEXT")])],
                    views=[View("note_summary", "CREATE VIEW note_summary AS SELECT id, body FROM note")],
                    triggers=[Trigger("note_log", "note", "CREATE TRIGGER note_log AFTER INSERT ON note "
                                      "BEGIN INSERT INTO log VALUES (NEW.body); END")])
"""
NOTES_V2 = NOTES_V1.replace('Column("body", "TEXT")', 'Column("text", "TEXT", renamed_from="body")')


@pytest.mark.parametrize("what", ["view", "trigger"])
def test_a_declared_view_or_trigger_naming_a_renamed_column_is_refused_by_render_lint_and_plan(tmp_path, runner, what):
    v1 = _declaration(tmp_path, "n1", NOTES_V1)
    db = tmp_path / "notes.db"
    apply(str(db), schema=_load(v1), backup=False)
    conn = _connect(db)
    conn.execute("INSERT INTO note VALUES (1, 'hello')")
    conn.close()
    v2_text = NOTES_V2
    if what == "view":  # the trigger follows the rename, the view does not
        v2_text = v2_text.replace("VALUES (NEW.body)", "VALUES (NEW.text)")
    else:
        v2_text = v2_text.replace("SELECT id, body FROM", "SELECT id, text FROM")
    v2 = _declaration(tmp_path, "n2", v2_text)
    name = "note_summary" if what == "view" else "note_log"
    out = tmp_path / "out"
    for command in (["render", "--out", str(out)], ["lint"]):
        result = _cli(runner, *command, "--schema", str(v2))
        assert result.exit_code == 2, (command, result.output)
        assert len(result.stderr.strip().splitlines()) == 1
        assert "declared %s '%s'" % (what, name) in result.stderr and "body" in result.stderr
    assert not out.exists() or not list(out.iterdir())  # nothing written
    before = _digest(db)
    with pytest.raises(UnsafeMigrationError, match="%s '%s'.*body" % (what, name)):
        plan_database(str(db), schema=_load(v2))
    assert _digest(db) == before
    # the declaration that renames both renders and applies
    good = _declaration(tmp_path, "n3", NOTES_V2.replace("VALUES (NEW.body)", "VALUES (NEW.text)")
                        .replace("SELECT id, body FROM", "SELECT id, text FROM"))
    assert _cli(runner, "render", "--out", str(out), "--schema", str(good)).exit_code == 0
    apply(str(db), schema=_load(good), backup=False)
    assert _connect(db).execute("SELECT text FROM note_summary").fetchall() == [("hello",)]


@pytest.mark.parametrize("body", [
    "UPDATE parent SET size = 1 WHERE id = NEW.n",  # the removed column only as the SET target
    "UPDATE parent SET (name, \"size\") = ('x', 1) WHERE id = NEW.n",
    "INSERT INTO parent (id, size) VALUES (NEW.n, 1)",  # only in the INSERT's column list
    "INSERT INTO parent (id) VALUES (NEW.n) ON CONFLICT (id) DO UPDATE SET size = 2",
])
def test_a_trigger_body_that_only_writes_a_removed_column_is_refused(app, tmp_path, checked_at, body):
    # SQLite's RENAME probe resolves the expressions of a trigger body, not the columns it assigns: such a
    # trigger passed every check, and after COMMIT every insert into tally failed "no such column: size"
    conn = _connect(app)
    conn.executescript("CREATE TABLE tally (n INTEGER); CREATE TRIGGER bump AFTER INSERT ON tally BEGIN %s; END;"
                       % body)
    conn.close()
    text = _refused(app, _load(_without_size(tmp_path)), checked_at)
    assert "trigger 'bump'" in text and "'parent'.'size'" in text
    conn = _connect(app)
    conn.execute("INSERT INTO tally VALUES (9)")  # the file is unchanged: the trigger still works
