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
