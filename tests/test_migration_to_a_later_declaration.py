"""Migration to a later, grown declaration (examples/abathur_m2.py: new tables, renames, foreign keys on full
tables): every legacy shape straight to it, and the shipped declaration to it, with data, no row lost."""
from __future__ import annotations

import json
import sqlite3

import pytest

import legacy
from conftest import ROOT, make_runner
from schema_dsl.cli import main
from schema_dsl.compile.project import load_declaration
from schema_dsl.migrate.apply import apply, plan_database
from schema_dsl.sqlite import structure

M2_FILE = ROOT / "examples" / "abathur_m2.py"
M2 = load_declaration(str(M2_FILE))


def _rows(path):
    """{table: sorted rows} with memory_entries.created_by read as author (the one rename)."""
    conn = sqlite3.connect(str(path))
    try:
        out = {}
        for (table,) in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%'"):
            cols = [r[1] for r in conn.execute("SELECT * FROM pragma_table_info(?)", (table,))]
            named = sorted((("author" if (table, c) == ("memory_entries", "created_by") else c), c) for c in cols)
            rows = conn.execute('SELECT %s FROM "%s"' % (", ".join('"%s"' % c for _, c in named), table)).fetchall()
            out[table] = ([n for n, _ in named], sorted(map(repr, rows)))
        return out
    finally:
        conn.close()


def _fk_clean(path):
    conn = sqlite3.connect(str(path))
    conn.execute("PRAGMA foreign_keys = ON")
    try:
        return conn.execute("PRAGMA foreign_key_check").fetchall() == []
    finally:
        conn.close()


@pytest.mark.parametrize("shape", legacy.SHAPES)
def test_every_legacy_shape_goes_straight_to_milestone_2_keeping_every_row(shape, tmp_path):
    path = legacy.create(str(tmp_path / ("%s.db" % shape)), shape, tasks=300)
    m1 = tmp_path / "m1.db"
    legacy.create(str(m1), shape, tasks=300)
    apply(str(m1), backup=False)  # the same data through Milestone 1, for comparison
    result = apply(path, schema=M2, confirm=lambda plan: pytest.fail("M2 loses no data, yet it asked"))
    assert result.applied
    want = _rows(m1)
    got = _rows(path)
    for table, (cols, rows) in want.items():
        assert got[table][1] == rows, table
    conn = sqlite3.connect(path)
    expected = json.loads(json.dumps(__import__("schema_dsl.analysis.compare", fromlist=["x"]).expected_structure(M2)))
    problems = [m for k, m in structure.compare(expected, structure.read_structure(conn)) if k != "extra"]
    conn.close()
    assert problems == []
    assert _fk_clean(path)
    assert plan_database(path, schema=M2).up_to_date


def test_milestone_1_to_milestone_2_with_data_through_the_cli(tmp_path, monkeypatch):
    monkeypatch.chdir(ROOT)
    runner = make_runner()
    db = tmp_path / "abathur.db"
    legacy.create(str(db), "old", tasks=500)
    assert runner.invoke(main, ["apply", "--db", str(db), "--no-validate"]).exit_code == 0
    conn = sqlite3.connect(str(db))
    conn.execute("INSERT INTO memory_entries (namespace, key, value, memory_type, created_by) "
                 "VALUES ('user:alice:prefs', 'k', '{}', 'semantic', 'alice')")
    conn.commit()
    conn.close()
    before = _rows(db)
    plan = runner.invoke(main, ["plan", "--db", str(db), "--schema", str(M2_FILE)])
    assert plan.exit_code == 0
    for name in ("idx_sessions_pk", "idx_memory_conflict_detection", "idx_checkpoints_task"):
        assert "drop index '%s'" % name in plan.output
    assert "rename column 'memory_entries'.'created_by' to 'author'" in plan.output
    assert "create index 'idx_checkpoints_session' on 'checkpoints'" in plan.output
    result = runner.invoke(main, ["apply", "--db", str(db), "--schema", str(M2_FILE)])
    assert result.exit_code == 0, result.output
    assert _rows(db) == before
    conn = sqlite3.connect(str(db))
    assert conn.execute("SELECT author FROM memory_entries WHERE key = 'k'").fetchone() == ("alice",)
    # state rows now go with their task (ON DELETE CASCADE), checked with foreign keys on
    conn.execute("PRAGMA foreign_keys = ON")
    cols = [r[1] for r in conn.execute("PRAGMA table_info(tasks)")]
    task = "m2-task"
    conn.execute("INSERT INTO tasks (%s) SELECT %s FROM tasks LIMIT 1" % (
        ", ".join('"%s"' % c for c in cols),
        ", ".join("'m2-task'" if c == "id" else "NULL" if c in ("parent_task_id", "session_id") else '"%s"' % c
                  for c in cols)))
    conn.execute("INSERT INTO state (task_id, key, value, created_at, updated_at) VALUES (?, 'x', '1', 't', 't')", (task,))
    conn.execute("DELETE FROM tasks WHERE id = ?", (task,))
    assert conn.execute("SELECT count(*) FROM state WHERE task_id = ?", (task,)).fetchone()[0] == 0
    conn.rollback()
    conn.close()
    explained = json.loads(runner.invoke(main, ["explain", "--db", str(db), "--schema", str(M2_FILE), "--json"]).output)
    uses = {r["index"]: r["uses_index"] for r in explained}
    # what lint and explain found in M1 now holds: the GLOB prefixes and the fixed partial indexes are searched
    for name in ("idx_memory_namespace_prefix", "idx_audit_memory_namespace", "idx_sessions_status_updated",
                 "idx_document_sync_status", "idx_checkpoints_session"):
        assert uses[name], name
    lint = json.loads(runner.invoke(main, ["lint", "--schema", str(M2_FILE), "--json"]).output)
    assert not {f["rule"] for f in lint} & {"redundant-index", "unindexed-foreign-key", "like-prefix-binary",
                                            "partial-index-not-implied"}
