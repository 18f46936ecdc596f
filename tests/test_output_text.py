"""What plan, apply and validate print: the same facts in both, said once, in singulars where there is one."""
from __future__ import annotations

import json
import sqlite3

import pytest

from conftest import make_runner
from schema_dsl.cli import main


def _apply(path, *extra):
    result = make_runner().invoke(main, ["apply", "--db", str(path), "--schema", "abathur"] + list(extra))
    return result


@pytest.fixture
def with_junk(tmp_path):
    """An abathur file plus an undeclared table with a row: --prune --allow-data-loss drops it (data loss)."""
    path = tmp_path / "app.db"
    assert _apply(path, "--no-validate").exit_code == 0
    conn = sqlite3.connect(path)
    conn.execute("CREATE TABLE junk (x)")
    conn.execute("INSERT INTO junk VALUES (1)")
    conn.commit()
    conn.close()
    return path


def test_apply_json_carries_the_data_loss_list_plan_json_has(with_junk):
    planned = make_runner().invoke(main, ["plan", "--db", str(with_junk), "--schema", "abathur", "--json", "--prune",
                                          "--allow-data-loss"])
    assert planned.exit_code == 0, planned.output
    loss = json.loads(planned.stdout)["data_loss"]
    assert loss and "junk" in json.dumps(loss)
    applied = _apply(with_junk, "--json", "--prune", "--allow-data-loss", "--yes")
    assert applied.exit_code == 0, applied.output
    assert json.loads(applied.stdout)["data_loss"] == loss


def _sql(path, *statements):
    conn = sqlite3.connect(path)
    for s in statements:
        conn.execute(s)
    conn.commit()
    conn.close()


@pytest.fixture
def applied(tmp_path):
    path = tmp_path / "app.db"
    assert _apply(path, "--no-validate").exit_code == 0
    return path


def test_plan_names_what_is_no_longer_declared_and_how_to_drop_each(applied):
    """issue 17.7: an index and a column left in the file are listed with the exact way to remove each kind."""
    _sql(applied, "ALTER TABLE tasks ADD COLUMN notes TEXT", "CREATE INDEX ix_old ON tasks (notes)")
    result = make_runner().invoke(main, ["plan", "--db", str(applied), "--schema", "abathur"])
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    assert lines[0] == "up to date: nothing to do (2 objects the declaration does not have are kept: see below)"
    assert "--prune drops indexes, views and triggers" not in result.stdout
    column = lines.index("  - table 'tasks': column 'notes'")
    assert lines[column + 1] == ('      to drop it: removed("column", "notes", "why", table="tasks"), or apply --prune '
                                 '--allow-data-loss (its values go; a backup is made first)')
    index = lines.index("  - index 'ix_old' on 'tasks'")
    assert lines[index + 1] == '      to drop it: removed("index", "ix_old", "why"), or apply --prune (no data goes)'


def test_lint_advice_on_a_redundant_index_says_how_it_really_goes():
    from schema_dsl.analysis.lint import DEFAULT_RESOLUTIONS
    result = make_runner().invoke(main, ["lint", "--schema", "abathur", "--json"])
    findings = [f for f in json.loads(result.stdout) if f["rule"] == "redundant-index"]
    assert findings
    for f in findings:
        assert 'removed("index", "%s", "why")' % f["object"] in f["suggestion"]
    advice = DEFAULT_RESOLUTIONS["redundant-index"]
    assert "drop it from the declaration to remove it" not in advice
    assert 'removed("index", NAME, "why")' in advice and "--prune" in advice


def test_plan_says_one_step_and_one_statement(applied):
    _sql(applied, "DROP INDEX idx_agents_state")
    result = make_runner().invoke(main, ["plan", "--db", str(applied), "--schema", "abathur"])
    assert result.stdout.splitlines()[0] == "1 step, 1 statement, in one transaction:"


def test_apply_does_not_print_the_check_it_leaves_to_validate(tmp_path):
    """issue 17.9: 'not run: quick_check ...' ended every apply; it stays in --verbose and --json."""
    short = _apply(tmp_path / "a.db")
    assert short.exit_code == 0, short.output
    assert "quick_check" not in short.stdout and "  not run:" not in short.stdout
    assert "(1 check not run)" in short.stdout.splitlines()[1]  # the verdict still never says OK beside it
    verbose = _apply(tmp_path / "b.db", "--verbose")
    assert "[skip] quick_check: not run by apply" in verbose.stdout
    report = json.loads(_apply(tmp_path / "c.db", "--json").stdout)["report"]
    assert {"check": "quick_check", "ok": None} == {k: v for k, v in report["checks"][3].items() if k != "detail"}


def test_validate_counts_each_thing_once_and_names_kept_objects_under_kept(applied):
    _sql(applied, "CREATE INDEX ix_mine ON tasks (status, priority)", "DROP INDEX idx_agents_state")
    result = make_runner().invoke(main, ["validate", "--db", str(applied), "--schema", "abathur"])
    assert result.exit_code == 1
    lines = result.stdout.splitlines()
    # the difference sits under "structure", counted once (no "expected 33 indexes, found 32" beside it)
    assert lines[1] == "  structure: 1 difference (9 tables, 33 indexes)"
    assert lines[2] == "    - missing index 'idx_agents_state' on agents(state)"
    assert lines[3].startswith("  other checks: ")
    # the one extra index: once, under kept
    assert lines[4:6] == ["  kept, not in the declaration: 1", "    - index 'ix_mine' on table 'tasks'"]
    assert result.stdout.count("ix_mine") == 1
    full = make_runner().invoke(main, ["validate", "--db", str(applied), "--schema", "abathur", "--full"])
    assert full.stdout.count("ix_mine") == 1 and "beyond the declared" not in full.stdout
    assert "found 32 of them" not in full.stdout


def test_validate_lists_only_the_settings_the_declaration_declares(tmp_path):
    decl = tmp_path / "decl.py"
    decl.write_text("from schema_dsl.model import Column, PrimaryKey, Schema, Table\n"
                    "SCHEMA = Schema('s', [Table('t', [Column('id', 'INTEGER')], primary_key=PrimaryKey(('id',)))])\n",
                    encoding="utf-8")
    db = tmp_path / "s.db"
    runner = make_runner()
    assert runner.invoke(main, ["apply", "--db", str(db), "--schema", str(decl)]).exit_code == 0
    full = runner.invoke(main, ["validate", "--db", str(db), "--schema", str(decl), "--full"])
    assert full.exit_code == 0, full.output
    assert "pragmas:" not in full.stdout and "busy_timeout" not in full.stdout
    report = json.loads(runner.invoke(main, ["validate", "--db", str(db), "--schema", str(decl), "--json"]).stdout)
    assert report["settings"] == [] and set(report["pragmas"]) == {"quick_check", "foreign_key_check"}
