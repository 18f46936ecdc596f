"""Renames that keep everything working, and foreign keys added or changed on tables with rows
(issue: schema evolution, items 3-4)."""
from __future__ import annotations

import hashlib
import json
import sqlite3
import textwrap

import pytest

from conftest import make_runner
from schema_dsl.cli import main
from schema_dsl.errors import ApplyError, DeclarationError, Declined, UnsafeMigrationError
from schema_dsl.migrate.apply import apply, plan_database
from schema_dsl.migrate.dependents import trigger_columns
from schema_dsl.model import Column, ForeignKey, PrimaryKey, Schema, Table, Unique, evolve, fk, removed

PARENT = Table("parent", [Column("id", "INTEGER"), Column("label", "TEXT", unique=True), Column("size", "INTEGER")],
               primary_key=PrimaryKey(("id",)))
CHILD = Table("child", [Column("id", "INTEGER"), Column("parent_id", "INTEGER"), Column("parent_label", "TEXT")],
              primary_key=PrimaryKey(("id",)),
              foreign_keys=[fk("parent_id", "parent", "id"), fk("parent_label", "parent", "label")])
LOG = Table("log", [Column("what", "TEXT")])
OLD = Schema("app", [PARENT, CHILD, LOG])

USER_OBJECTS = """
CREATE VIEW v_labels AS SELECT id, label FROM parent WHERE label IS NOT NULL;
CREATE TRIGGER t_label AFTER UPDATE OF label ON parent BEGIN INSERT INTO log VALUES ('label ' || NEW.label); END;
"""


def _connect(path):
    """The checking connection: foreign keys on, so nothing passes only because they are off."""
    conn = sqlite3.connect(str(path), isolation_level=None)
    conn.execute("PRAGMA foreign_keys = ON")
    return conn


def _digest(path):
    return hashlib.sha256(open(path, "rb").read()).hexdigest()


@pytest.fixture
def full(tmp_path):
    """An OLD database with rows, a user view and a user trigger on parent.label."""
    path = tmp_path / "app.db"
    apply(str(path), schema=OLD, backup=False)
    conn = _connect(path)
    conn.executescript("""
        INSERT INTO parent VALUES (1, 'a', 10), (2, 'b', 20), (3, 'c', 30);
        INSERT INTO child VALUES (1, 1, 'a'), (2, 2, 'b'), (3, 3, 'c'), (4, NULL, NULL);
    """ + USER_OBJECTS)
    conn.close()
    return path


def _renamed(column="label", table="parent", col_from="label", table_from=None, parent_extra=None):
    """OLD with parent's label column (and maybe the table) renamed; parent_extra: more table settings."""
    p = evolve(PARENT, name=table, renamed_from=table_from,
               columns=[PARENT.columns[0], Column(column, "TEXT", unique=True, renamed_from=col_from if col_from != column else None), PARENT.columns[2]],
               **(parent_extra or {}))
    c = evolve(CHILD, foreign_keys=[fk("parent_id", table, "id"), fk("parent_label", table, column)])
    return Schema("app", [p, c, LOG])


def _check_dependents_work(path, table, column):
    conn = _connect(path)
    try:
        assert conn.execute("SELECT * FROM v_labels ORDER BY id").fetchall() == [(1, "a"), (2, "b"), (3, "c")]
        # the child's foreign key follows the rename: it is enforced against the new name
        assert conn.execute("PRAGMA foreign_key_check").fetchall() == []
        with pytest.raises(sqlite3.IntegrityError):
            conn.execute("INSERT INTO child VALUES (9, 1, 'no such label')")
        conn.execute("INSERT INTO %s (id, %s) VALUES (4, 'd')" % (table, column))
        conn.execute("INSERT INTO child VALUES (5, 4, 'd')")
        # the user's trigger still fires on UPDATE OF the renamed column
        conn.execute("UPDATE %s SET %s = 'A' WHERE id = 1 AND NOT EXISTS (SELECT 1 FROM child WHERE parent_label = 'a')"
                     % (table, column))
        conn.execute("DELETE FROM child WHERE id = 1")
        conn.execute("UPDATE %s SET %s = 'A' WHERE id = 1" % (table, column))
        assert conn.execute("SELECT what FROM log").fetchall() == [("label A",)]
        sql = conn.execute("SELECT sql FROM sqlite_master WHERE name = 't_label'").fetchone()[0]
        assert "OF %s" % column in sql.replace('"', "") and "label " in sql
    finally:
        conn.close()


def _rows(path, sql):
    conn = _connect(path)
    try:
        return conn.execute(sql).fetchall()
    finally:
        conn.close()


@pytest.mark.parametrize("rebuild", [False, True], ids=["alter-only", "with-rebuild"])
def test_column_rename_keeps_user_view_trigger_and_child_foreign_key(full, rebuild):
    new = _renamed(column="title", parent_extra={"uniques": [Unique(("title", "size"))]} if rebuild else None)
    plan = plan_database(str(full), schema=new)
    titles = [s.title for s in plan.steps]
    assert titles[0] == "rename column 'parent'.'label' to 'title'"
    assert plan.steps[0].statements == ('ALTER TABLE "parent" RENAME COLUMN "label" TO "title";',)
    assert any(t.startswith("rebuild table 'parent'") for t in titles) is rebuild
    if rebuild:  # the rebuild copies by the new name, and recreates the user's objects as the rename left them
        step = next(s for s in plan.steps if s.title.startswith("rebuild"))
        assert 'SELECT "id", "title", "size" FROM "parent"' in step.statements[1]
        recreated = [s.statements[0] for s in plan.steps if s.title.startswith("recreate")]
        assert any('AFTER UPDATE OF "title" ON' in sql for sql in recreated)
    result = apply(str(full), schema=new, backup=False)
    assert result.applied and [s.title for s in result.plan.steps] == titles  # plan shows what apply runs
    assert _rows(full, "SELECT id, title, size FROM parent ORDER BY id") == [(1, "a", 10), (2, "b", 20), (3, "c", 30)]
    assert _rows(full, "SELECT count(*) FROM child") == [(4,)]
    _check_dependents_work(full, "parent", "title")
    assert plan_database(str(full), schema=new).up_to_date


@pytest.mark.parametrize("rebuild", [False, True], ids=["alter-only", "with-rebuild"])
def test_table_rename_keeps_user_view_trigger_and_child_foreign_key(full, rebuild):
    new = _renamed(table="owner", table_from="parent",
                   parent_extra={"uniques": [Unique(("label", "size"))]} if rebuild else None)
    plan = plan_database(str(full), schema=new)
    assert plan.steps[0].title == "rename table 'parent' to 'owner'"
    assert plan.steps[0].statements == ('ALTER TABLE "parent" RENAME TO "owner";',)
    assert not any(s.title.startswith("create table") for s in plan.steps)
    assert any(s.title.startswith("rebuild table 'owner'") for s in plan.steps) is rebuild
    apply(str(full), schema=new, backup=False)
    names = {r[0] for r in _rows(full, "SELECT name FROM sqlite_master")}
    assert "owner" in names and "parent" not in names
    assert _rows(full, "SELECT id, label, size FROM owner ORDER BY id") == [(1, "a", 10), (2, "b", 20), (3, "c", 30)]
    assert _rows(full, "SELECT \"table\" FROM pragma_foreign_key_list('child')") == [("owner",), ("owner",)]
    _check_dependents_work(full, "owner", "label")
    assert plan_database(str(full), schema=new).up_to_date


def test_table_and_column_renamed_from_several_former_names_picks_the_one_present(full):
    new = _renamed(table="owner", table_from=("owners", "parent"), column="title", col_from=["name", "label", "lbl"],
                   parent_extra={"uniques": [Unique(("title", "size"))]})
    plan = plan_database(str(full), schema=new)
    assert [s.title for s in plan.steps[:2]] == ["rename table 'parent' to 'owner'",
                                                 "rename column 'owner'.'label' to 'title'"]
    apply(str(full), schema=new, backup=False)
    _check_dependents_work(full, "owner", "title")
    # a file that already has the new names is up to date
    assert plan_database(str(full), schema=new).up_to_date


def test_renamed_from_is_checked():
    with pytest.raises(DeclarationError) as err:
        Schema("app", [evolve(PARENT, renamed_from=("child",)), CHILD,
                       evolve(LOG, columns=[Column("what", "TEXT", renamed_from=("what",))])])
    text = str(err.value)
    assert "table 'parent': renamed_from 'child' names another declared table" in text
    assert "table 'log', column 'what': renamed_from 'what' is its own name" in text


@pytest.fixture(params=["plan", "apply"])
def checked_at(request, monkeypatch):
    """plan: the plan refuses (checked on an in-memory copy of the planned structure); apply: that check is
    switched off, and apply's own check before COMMIT rolls back."""
    if request.param == "apply":
        monkeypatch.setattr("schema_dsl.migrate.apply.planned_problems", lambda conn, statements: [])
    return request.param


def _refused(path, schema, checked_at):
    error = UnsafeMigrationError if checked_at == "plan" else ApplyError
    if checked_at == "plan":
        with pytest.raises(error):
            plan_database(str(path), schema=schema)
    with pytest.raises(error) as err:
        apply(str(path), schema=schema, backup=False, allow_data_loss=True)
    return str(err.value)


def test_a_view_that_breaks_fails_apply_and_leaves_the_file_unchanged(full, checked_at):
    conn = _connect(full)
    conn.execute("CREATE VIEW v_sizes AS SELECT id, size FROM parent")
    conn.close()
    new = Schema("app", [evolve(PARENT, columns=PARENT.columns[:2]), CHILD, LOG],
                 removed=[removed("column", "size", "never read", table="parent")])
    before = _digest(full)
    text = _refused(full, new, checked_at)
    assert "view 'v_sizes'" in text and "size" in text
    assert _digest(full) == before


def test_a_trigger_naming_a_removed_column_fails_apply(full, checked_at):
    conn = _connect(full)
    conn.execute("CREATE TRIGGER t_size AFTER UPDATE OF size ON parent BEGIN INSERT INTO log VALUES (OLD.size); END")
    conn.close()
    new = Schema("app", [evolve(PARENT, columns=PARENT.columns[:2]), CHILD, LOG],
                 removed=[removed("column", "size", "never read", table="parent")])
    before = _digest(full)
    text = _refused(full, new, checked_at)
    assert "trigger 't_size': UPDATE OF names 'size'" in text
    assert "trigger 't_size': NEW./OLD. names 'size'" in text
    assert _digest(full) == before


def test_trigger_columns_reads_update_of_and_new_old():
    sql = ('CREATE TRIGGER "x" INSTEAD OF UPDATE OF a, "b c" ON v FOR EACH ROW WHEN NEW.a > 0 '
           'BEGIN UPDATE t SET z = OLD."b c" WHERE id = new.rowid; END')
    assert trigger_columns(sql) == (["a", "b c"], ["a", "b c", "rowid"])
    assert trigger_columns("CREATE TRIGGER y AFTER DELETE ON t BEGIN SELECT 1; END") == ([], [])


# --- foreign keys added or changed on tables with rows ------------------------------------------------------

BASE = Schema("app", [
    Table("parent", [Column("id", "INTEGER"), Column("name", "TEXT")], primary_key=PrimaryKey(("id",))),
    Table("child", [Column("id", "INTEGER"), Column("parent_id", "INTEGER"), Column("note", "TEXT")],
          primary_key=PrimaryKey(("id",))),
    Table("grandchild", [Column("id", "INTEGER"), Column("child_id", "INTEGER")], primary_key=PrimaryKey(("id",)),
          foreign_keys=[fk("child_id", "child", "id", "CASCADE")]),
])


def _with_fk(repair=None, on_delete="NO ACTION", schema=BASE):
    child = schema.table("child")
    return evolve(schema, tables=[schema.table("parent"), evolve(child, foreign_keys=[
        ForeignKey(("parent_id",), "parent", ("id",), on_delete=on_delete, repair=repair)]), schema.table("grandchild")])


def _fill(path, schema=BASE, orphans=()):
    apply(str(path), schema=schema, backup=False)
    conn = sqlite3.connect(str(path), isolation_level=None)  # foreign keys off: the orphans are the point
    conn.executescript("""
        INSERT INTO parent VALUES (1, 'a'), (2, 'b');
        INSERT INTO child VALUES (1, 1, 'x'), (2, 2, 'y'), (3, NULL, 'z');
        INSERT INTO grandchild VALUES (1, 1), (2, 2), (3, 3);
    """)
    conn.executemany("INSERT INTO child VALUES (?, ?, 'orphan')", orphans)
    conn.close()
    return path


CHILD_ROWS = "SELECT id, parent_id, note FROM child ORDER BY id"
CLEAN = [(1, 1, "x"), (2, 2, "y"), (3, None, "z")]


def test_foreign_key_added_on_clean_rows_keeps_every_row(tmp_path):
    path = _fill(tmp_path / "a.db")
    new = _with_fk()
    plan = plan_database(str(path), schema=new)
    assert [s.title for s in plan.steps] == ["rebuild table 'child' (copies 3 rows)"] and not plan.data_loss
    apply(str(path), schema=new, backup=False)
    assert _rows(path, CHILD_ROWS) == CLEAN
    assert _rows(path, "SELECT count(*) FROM grandchild") == [(3,)]  # no ON DELETE fired during the rebuild
    conn = _connect(path)
    with pytest.raises(sqlite3.IntegrityError):
        conn.execute("INSERT INTO child VALUES (10, 99, 'no parent')")
    conn.close()


def test_foreign_key_added_over_orphans_is_refused_naming_them(tmp_path):
    path = _fill(tmp_path / "a.db", orphans=[(7, 70), (8, 80)])
    before = _digest(path)
    for run in (lambda: plan_database(str(path), schema=_with_fk()),
                lambda: apply(str(path), schema=_with_fk(), backup=False)):
        with pytest.raises(UnsafeMigrationError) as err:
            run()
        text = str(err.value)
        assert "table 'child': new foreign key (parent_id) -> parent: 2 existing rows have no parent row in 'parent'" \
            in text
        assert "rowid 7: parent_id = 70" in text and "rowid 8: parent_id = 80" in text
        assert "repair='set null'" in text
    assert _digest(path) == before


def test_repair_set_null_changes_exactly_the_orphans(tmp_path, monkeypatch):
    path = _fill(tmp_path / "a.db", orphans=[(7, 70), (8, 80)])
    new = _with_fk(repair="set null")
    plan = plan_database(str(path), schema=new)
    assert plan.steps[0].title == "set parent_id NULL in 2 rows of 'child' (rowid 7, 8): no parent in 'parent'"
    assert "rowid 7 (parent_id = 70); rowid 8 (parent_id = 80)" in plan.steps[0].why
    assert plan.steps[1].title.startswith("rebuild table 'child'") and not plan.data_loss
    # plan --json shows the same rows
    decl = tmp_path / "decl.py"
    decl.write_text(textwrap.dedent('''
        from schema_dsl.model import *
        SCHEMA = Schema("app", [
            Table("parent", [Column("id", "INTEGER"), Column("name", "TEXT")], primary_key=PrimaryKey(("id",))),
            Table("child", [Column("id", "INTEGER"), Column("parent_id", "INTEGER"), Column("note", "TEXT")],
                  primary_key=PrimaryKey(("id",)),
                  foreign_keys=[ForeignKey(("parent_id",), "parent", ("id",), repair="set null")]),
            Table("grandchild", [Column("id", "INTEGER"), Column("child_id", "INTEGER")],
                  primary_key=PrimaryKey(("id",)), foreign_keys=[fk("child_id", "child", "id", "CASCADE")]),
        ])
    '''), encoding="utf-8")
    monkeypatch.chdir(tmp_path)
    shown = make_runner().invoke(main, ["plan", "--db", str(path), "--schema", str(decl), "--json"])
    assert shown.exit_code == 0, shown.output
    step = json.loads(shown.output)["steps"][0]
    assert step["kind"] == "RepairForeignKey" and step["rows"] == 2 and "rowid 7, 8" in step["title"]
    assert step["statements"][0].startswith('UPDATE "child" SET "parent_id" = NULL WHERE')
    apply(str(path), schema=new, backup=False)
    assert _rows(path, CHILD_ROWS) == CLEAN + [(7, None, "orphan"), (8, None, "orphan")]
    assert _rows(path, "SELECT count(*) FROM grandchild") == [(3,)]
    assert _rows(path, "PRAGMA foreign_key_check") == []


def test_repair_delete_counts_as_data_loss_and_needs_the_confirmation(tmp_path):
    path = _fill(tmp_path / "a.db", orphans=[(7, 70)])
    new = _with_fk(repair="delete")
    plan = plan_database(str(path), schema=new)
    assert plan.steps[0].title == "delete 1 row of 'child' (rowid 7): no parent in 'parent'"
    assert plan.steps[0].statements[0].startswith('DELETE FROM "child" WHERE')
    assert [(d["kind"], d["table"], d["rows"]) for d in plan.data_loss] == [("rows", "child", 1)]
    before = _digest(path)
    with pytest.raises(Declined):
        apply(str(path), schema=new, backup=False, allow_data_loss=True, confirm=lambda p: False)
    with pytest.raises(UnsafeMigrationError):  # --no-backup without --allow-data-loss
        apply(str(path), schema=new, backup=False)
    assert _digest(path) == before
    asked = []
    apply(str(path), schema=new, backup=True, confirm=lambda p: asked.append(p.data_loss) or True)
    assert asked and _rows(path, CHILD_ROWS) == CLEAN
    assert _rows(path, "SELECT count(*) FROM grandchild") == [(3,)]  # the deleted child's ON DELETE did not fire


def test_on_delete_changed_over_existing_orphans_keeps_and_reports_them(tmp_path, monkeypatch):
    old = _with_fk()
    path = _fill(tmp_path / "a.db", schema=old, orphans=[(7, 70)])
    new = _with_fk(on_delete="CASCADE")
    plan = plan_database(str(path), schema=new)  # not refused: the orphan was already there
    assert [s.title for s in plan.steps] == ["rebuild table 'child' (copies 4 rows)"]
    result = apply(str(path), schema=new, backup=False)
    assert result.kept_violations == 1 and "rowid 7" in result.kept_described[0]
    assert _rows(path, CHILD_ROWS) == CLEAN + [(7, 70, "orphan")]
    assert _rows(path, "SELECT count(*) FROM grandchild") == [(3,)]
    assert _rows(path, "SELECT on_delete FROM pragma_foreign_key_list('child')") == [("CASCADE",)]
    conn = _connect(path)
    conn.execute("DELETE FROM parent WHERE id = 1")  # the new action works
    assert conn.execute("SELECT count(*) FROM child WHERE parent_id = 1").fetchone()[0] == 0
    conn.close()
    # in the CLI the kept orphan makes apply exit 1
    path2 = _fill(tmp_path / "b.db", schema=old, orphans=[(7, 70)])
    decl = tmp_path / "decl.py"
    decl.write_text(textwrap.dedent('''
        from schema_dsl.model import *
        SCHEMA = Schema("app", [
            Table("parent", [Column("id", "INTEGER"), Column("name", "TEXT")], primary_key=PrimaryKey(("id",))),
            Table("child", [Column("id", "INTEGER"), Column("parent_id", "INTEGER"), Column("note", "TEXT")],
                  primary_key=PrimaryKey(("id",)), foreign_keys=[fk("parent_id", "parent", "id", "CASCADE")]),
            Table("grandchild", [Column("id", "INTEGER"), Column("child_id", "INTEGER")],
                  primary_key=PrimaryKey(("id",)), foreign_keys=[fk("child_id", "child", "id", "CASCADE")]),
        ])
    '''), encoding="utf-8")
    monkeypatch.chdir(tmp_path)
    out = make_runner().invoke(main, ["apply", "--verbose", "--db", str(path2), "--schema", str(decl), "--no-backup"])
    assert out.exit_code == 1, out.output
    assert "parent_id = 70 has no parent row in 'parent'" in out.output
    assert _rows(path2, CHILD_ROWS) == CLEAN + [(7, 70, "orphan")]
