"""The additive plan (migrate/additive.py): a file that lacks only declared tables, nullable columns and indexes
is planned from the compiled declaration without the model or the diff, and gets exactly the diff's plan."""
from __future__ import annotations

import json
import shutil
import sqlite3
import subprocess
import sys

import attrs
import pytest

import legacy
from schema_dsl.abathur import SCHEMA
from schema_dsl.compile.target import target_for
from schema_dsl.migrate import additive
from schema_dsl.migrate.apply import _plan_structure, apply
from schema_dsl.model import Column, Index, PrimaryKey, Table, fk
from schema_dsl.sqlite import structure

TASKS = 300


@pytest.fixture(scope="module")
def shape_files(tmp_path_factory):
    folder = tmp_path_factory.mktemp("shapes")
    return {shape: legacy.create(str(folder / ("%s.db" % shape)), shape, tasks=TASKS) for shape in legacy.SHAPES}


@pytest.fixture(scope="module")
def current(tmp_path_factory):
    """A file at the shipped declaration, with rows in tasks and sessions."""
    path = str(tmp_path_factory.mktemp("current") / "current.db")
    apply(path, backup=False)
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("INSERT INTO sessions (id, app_name, user_id) VALUES ('s1', 'app', 'u1')")
    cols = legacy.task_columns("old")
    for i in range(20):
        conn.execute("INSERT INTO tasks (%s) VALUES (%s)" % (", ".join(cols), ", ".join("?" * len(cols))),
                     legacy._task_row("old", i))
    conn.close()
    return path


def _change_shape(ch):
    names = {}
    for attr in ("table", "column", "index"):
        obj = getattr(ch, attr, None)
        if obj is not None:
            names[attr] = getattr(obj, "name", obj)
    if type(ch).__name__ == "CreateIndex":
        names["on"] = ch.index.table  # the model's, looked up on use
    return type(ch).__name__, names, getattr(ch, "reason", None)


def _shape(plan):
    return {"fresh": plan.fresh, "touches_rows": plan.touches_rows, "fk_scope": plan.fk_scope,
            "extras": plan.extras, "data_loss": plan.data_loss,
            "steps": [(s.title, s.why, s.statements, s.rows, s.table, _change_shape(s.change)) for s in plan.steps]}


def _plans(path, schema=None):
    """(the additive plan or None, the plan apply makes, the diff's plan), read inside one read transaction."""
    target = target_for(schema)
    conn = sqlite3.connect(path, isolation_level=None)
    try:
        conn.execute("BEGIN")
        actual = structure.read_structure(conn)
        fast = additive.additive_plan(conn, target, actual, structure.compare(target.structure, actual))
        return fast, _plan_structure(conn, target), _plan_structure(conn, target, additive=False)
    finally:
        conn.close()


def _with(schema, table, *columns):
    t = schema.table(table)
    return attrs.evolve(schema, tables=[attrs.evolve(t, columns=[*t.columns, *columns]) if x is t else x
                                        for x in schema.tables])


NOTES = Table("notes", file="ddl-core-tables.sql",
              columns=[Column("id", "INTEGER"), Column("task_id", "TEXT", not_null=True), Column("body", "TEXT")],
              primary_key=PrimaryKey(("id",)), foreign_keys=[fk("task_id", "tasks", "id", on_delete="CASCADE")])


def _additive_changes():
    owner = _with(SCHEMA, "metrics", Column("owner", "TEXT"), Column("session_id", "TEXT"))
    session_fk = fk("session_id", "sessions", "id")
    owner = attrs.evolve(owner, tables=[attrs.evolve(t, foreign_keys=[*t.foreign_keys, session_fk])
                                        if t.name == "metrics" else t for t in owner.tables],
                         indexes=[*owner.indexes, Index("idx_metrics_owner", "metrics", ["owner", "timestamp DESC"])])
    notes = attrs.evolve(SCHEMA, tables=[*SCHEMA.tables, NOTES],
                         indexes=[*SCHEMA.indexes, Index("idx_notes_task", "notes", ["task_id"])])
    both = attrs.evolve(owner, tables=[*owner.tables, NOTES], indexes=[*owner.indexes, *notes.indexes[-1:]])
    return {"nullable columns, a foreign key and an index": owner, "a table and its index": notes,
            "a table, columns and indexes": both}


def _diff_changes():
    return {
        "a column with a default": _with(SCHEMA, "metrics", Column("unit", "TEXT", not_null=True, default="count")),
        "a nullable column with a constant default": _with(SCHEMA, "metrics", Column("unit", "TEXT", default="count")),
        "a UNIQUE column": _with(SCHEMA, "metrics", Column("code", "TEXT", unique=True)),
        "a column filled by a backfill": _with(SCHEMA, "metrics", Column("note", "TEXT", backfill="'x'")),
        "a changed index": attrs.evolve(SCHEMA, indexes=[
            attrs.evolve(ix, columns=["state", "spawned_at DESC"]) if ix.name == "idx_agents_state" else ix
            for ix in SCHEMA.indexes]),
    }


def test_the_old_shape_is_planned_without_the_diff_and_as_the_diff_plans_it(shape_files, tmp_path):
    path = str(shutil.copy(shape_files["old"], tmp_path / "old.db"))
    fast, used, by_diff = _plans(path)
    assert fast is not None
    assert _shape(fast) == _shape(used) == _shape(by_diff)
    kinds = {s.change.__class__.__name__ for s in fast.steps}
    assert kinds == {"CreateTable", "AddColumn", "CreateIndex"}
    assert fast.touches_rows  # tasks, agents, audit and checkpoints gain a column and hold rows: the backup is made


@pytest.mark.parametrize("shape", ["template", "retrofitted"])
def test_renames_and_rebuilds_are_left_to_the_diff(shape, shape_files):
    fast, used, by_diff = _plans(shape_files[shape])
    assert fast is None
    assert _shape(used) == _shape(by_diff)


@pytest.mark.parametrize("case", sorted(_additive_changes()))
def test_additions_to_a_current_file_are_the_diffs_plan(case, current):
    schema = _additive_changes()[case]
    fast, used, by_diff = _plans(current, schema)
    assert fast is not None
    assert _shape(fast) == _shape(used) == _shape(by_diff)


@pytest.mark.parametrize("case", sorted(_diff_changes()))
def test_what_only_the_diff_can_judge_falls_back_to_it(case, current):
    schema = _diff_changes()[case]
    fast, used, by_diff = _plans(current, schema)
    assert fast is None
    assert _shape(used) == _shape(by_diff)


def test_a_users_own_index_leaves_the_plan_to_the_diff(shape_files, tmp_path):
    path = str(shutil.copy(shape_files["old"], tmp_path / "own.db"))
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("CREATE INDEX my_own ON tasks (created_by)")
    conn.close()
    fast, used, by_diff = _plans(path)
    assert fast is None
    assert _shape(used) == _shape(by_diff)
    assert used.extras == ("index 'my_own' on 'tasks'",)


def test_migrating_the_old_shape_builds_no_model(shape_files, tmp_path):
    """The point of the additive plan: apply on the old shape imports neither the model nor the diff, and the
    result is the declared structure with every row kept."""
    path = str(shutil.copy(shape_files["old"], tmp_path / "old.db"))
    code = ("import json, sys; from schema_dsl.migrate.apply import apply; r = apply(sys.argv[1], backup=False); "
            "print(json.dumps([r.applied, r.statements, sorted(m for m in sys.modules if m in "
            "('schema_dsl.model', 'schema_dsl.migrate.diff', 'schema_dsl.migrate.introspect', 'attrs'))]))")
    out = subprocess.run([sys.executable, "-c", code, path], capture_output=True, text=True, check=True)
    applied, statements, imported = json.loads(out.stdout)
    assert applied and statements == 30
    assert imported == []
    conn = sqlite3.connect(path)
    try:
        problems = [m for k, m in structure.compare(target_for(None).structure, structure.read_structure(conn))
                    if k != "extra"]
        assert problems == []
        assert conn.execute("SELECT count(*) FROM tasks").fetchone()[0] == TASKS
    finally:
        conn.close()


def _digest(path):
    conn = sqlite3.connect(path)
    try:
        return conn.execute("SELECT group_concat(sql, ';') FROM sqlite_master").fetchone()[0]
    finally:
        conn.close()


def test_apply_checks_an_additive_plan_on_the_file_not_on_a_copy(shape_files, tmp_path, monkeypatch):
    """apply does not try an additive plan on an in-memory copy first (planned_problems, ~4 ms at start-up): the
    plan only adds declared objects to a file holding nothing else, and the same check runs on the file before
    COMMIT. `plan` still tries it on the copy."""
    from schema_dsl.migrate import apply as apply_module

    def tried(conn, statements):
        raise AssertionError("planned_problems ran")

    monkeypatch.setattr(apply_module, "planned_problems", tried)
    path = str(shutil.copy(shape_files["old"], tmp_path / "old.db"))
    with pytest.raises(AssertionError, match="planned_problems ran"):
        apply_module.plan_database(path)
    result = apply(path, backup=False)
    assert result.applied and result.statements == 30


def test_what_an_additive_plan_breaks_is_still_rolled_back_before_commit(shape_files, tmp_path, monkeypatch):
    """The check before COMMIT (check_dependents on the file itself) stands for the skipped copy: a view, trigger
    or foreign key broken only after the plan is refused, rolled back, with the file unchanged."""
    from schema_dsl.errors import ApplyError
    from schema_dsl.migrate import dependents

    real = dependents.broken_dependents
    calls = []

    def broken_after_the_plan(conn, **kwargs):
        calls.append(kwargs)
        found = list(real(conn, **kwargs))
        if conn.execute("SELECT count(*) FROM sqlite_master WHERE name = 'sessions'").fetchone()[0]:
            found.append("view 'injected': no such column: gone")  # only once the plan has run
        return found

    monkeypatch.setattr(dependents, "broken_dependents", broken_after_the_plan)
    path = str(shutil.copy(shape_files["old"], tmp_path / "old.db"))
    before = _digest(path)
    with pytest.raises(ApplyError, match="view 'injected': no such column: gone"):
        apply(path, backup=False)
    assert _digest(path) == before
    assert calls  # the check ran on the file (not only on a copy)
