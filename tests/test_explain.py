"""schema_dsl.check.explain and `schemagen explain`: does each index serve its declared query?"""
from __future__ import annotations

import json
import sqlite3

import pytest

import legacy
from conftest import build_db, make_runner
from schema_dsl.check import explain as ex
from schema_dsl.analysis import sqlterms
from schema_dsl.sqlite import structure
from schema_dsl.abathur import SCHEMA
from schema_dsl.cli import main
from schema_dsl.analysis.compare import expected_structure
from schema_dsl.model import Column, Index, PrimaryKey, Schema, Table

F = "ddl.sql"


def by_index(report):
    return {r.index: r for r in report.results}


def table_counts(path):
    conn = sqlite3.connect(str(path))
    try:
        names = [r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%'")]
        return {n: conn.execute('SELECT count(*) FROM "%s"' % n).fetchone()[0] for n in names}
    finally:
        conn.close()


@pytest.fixture
def report(fresh_db):
    return ex.explain_database(str(fresh_db), SCHEMA)


def test_every_serves_query_is_explained(report):
    assert report.source == "database" and report.had_stat1 is False
    assert [r.index for r in report.results] == [ix.name for ix in SCHEMA.indexes]
    for r in report.results:
        assert r.plan and all(isinstance(line, str) for line in r.plan)
        assert r.statistics == "none"
        assert r.uses_index == any(r.index in line for line in r.plan)


def test_index_6_is_served_by_its_identical_twin(report):
    r = by_index(report)["idx_memory_namespace_key_version"]
    assert not r.uses_index
    assert "idx_memory_conflict_detection" in r.instead
    assert "identical" in r.reason
    assert "drop one of the two" in r.suggestion


def test_partial_index_not_implied_gets_a_verified_rewrite(report):
    r = by_index(report)["idx_sessions_status_updated"]
    assert not r.uses_index
    assert r.instead.startswith("full table scan of sessions") and "temp B-tree" in r.instead
    assert "status IN ('active', 'paused')" in r.reason
    assert r.suggested_query == ("SELECT * FROM sessions WHERE status = 'active' AND status IN ('active', 'paused') "
                                 "ORDER BY last_update_time DESC")
    assert any("SEARCH sessions USING INDEX idx_sessions_status_updated" in line for line in r.suggested_plan)
    assert "(verified:" in r.suggestion


def test_like_prefix_scans_and_gets_a_glob_rewrite(report):
    used_but_scanned = by_index(report)["idx_memory_namespace_prefix"]
    assert used_but_scanned.uses_index and used_but_scanned.access == "scan"
    assert "GLOB 'user:alice*'" in used_but_scanned.suggested_query
    assert any("SEARCH memory_entries USING INDEX idx_memory_namespace_prefix" in line
               for line in used_but_scanned.suggested_plan)
    other = by_index(report)["idx_audit_memory_namespace"]
    assert not other.uses_index and "case_sensitive_like" in other.reason
    assert "(verified:" in other.suggestion


def test_rowid_duplicate_and_automatic_index_duplicate(report):
    rowid = by_index(report)["idx_memory_entries_pk"]
    assert not rowid.uses_index and "rowid" in rowid.instead and "INTEGER PRIMARY KEY" in rowid.reason
    state = by_index(report)["idx_state_task_key"]
    assert not state.uses_index and "sqlite_autoindex_state_1" in state.instead
    assert "UNIQUE constraint (task_id, key)" in state.reason and state.suggestion.startswith("drop 'idx_state_task_key'")


def test_usable_index_the_planner_passes_over(report):
    r = by_index(report)["idx_memory_type_updated"]
    assert not r.uses_index and "idx_memory_episodic_ttl" in r.instead
    assert "INDEXED BY" in r.reason and "sqlite_stat1" in r.reason


def test_json_shape(report):
    data = json.loads(ex.to_json(report))
    assert isinstance(data, list) and len(data) == 33
    for item in data:
        assert {"index", "query", "plan", "uses_index", "suggestion"} <= set(item)
        assert isinstance(item["plan"], list) and isinstance(item["uses_index"], bool)
        assert item["suggestion"] is None or isinstance(item["suggestion"], str)


def test_text_says_whether_statistics_exist(report):
    text = ex.format_text(report)
    assert "no sqlite_stat1" in text and "--sample-rows" in text
    assert "idx_sessions_status_updated: NOT USED" in text


def test_stat1_is_reported_after_analyze(fresh_db):
    conn = sqlite3.connect(str(fresh_db))
    conn.execute("INSERT INTO metrics (timestamp, metric_name, metric_value) VALUES ('2025-01-01', 'm', 1)")
    conn.commit()
    conn.execute("ANALYZE")
    conn.close()
    report = ex.explain_database(str(fresh_db), SCHEMA)
    assert report.had_stat1 and all(r.statistics == "sqlite_stat1" for r in report.results)
    assert "has sqlite_stat1" in ex.format_text(report)


# --- the scratch copy ---------------------------------------------------------------

def test_scratch_copy_leaves_the_database_unchanged(fresh_db):
    before = table_counts(fresh_db)
    report = ex.explain_database(str(fresh_db), SCHEMA, sample_rows=300)
    assert report.source == "scratch" and report.sample_rows == 300 and not report.had_stat1
    assert all(r.statistics == "sqlite_stat1" for r in report.results)
    assert len(report.results) == 33
    assert "then ANALYZE" in report.notes[0]
    assert table_counts(fresh_db) == before
    conn = sqlite3.connect(str(fresh_db))
    assert conn.execute("SELECT count(*) FROM sqlite_master WHERE name = 'sqlite_stat1'").fetchone()[0] == 0
    conn.close()


def test_scratch_copy_of_an_old_file_is_brought_to_the_declaration(tmp_path):
    path = str(tmp_path / "old.db")
    legacy.create(path, "template", tasks=50)
    as_is = ex.explain_database(path, SCHEMA)
    assert any(r.plan[0].startswith("error:") for r in as_is.results)  # the new tables are missing
    scratch = ex.explain_database(path, SCHEMA, sample_rows=100)
    assert not any(r.plan[0].startswith("error:") for r in scratch.results)
    assert "brought to the declaration" in scratch.notes[0]
    conn = sqlite3.connect(path)  # the file itself is still the old shape
    assert conn.execute("SELECT count(*) FROM sqlite_master WHERE name = 'sessions'").fetchone()[0] == 0
    conn.close()


def test_sample_rows_satisfy_every_constraint(fresh_db):
    conn = sqlite3.connect(str(fresh_db), isolation_level=None)
    counts = ex.load_sample_rows(conn, SCHEMA, 250)
    assert counts == {t.name: 250 for t in SCHEMA.ordered_tables()}  # no row refused by a CHECK, UNIQUE or NOT NULL
    assert conn.execute("PRAGMA foreign_key_check").fetchall() == []
    assert conn.execute("SELECT count(DISTINCT status) FROM tasks").fetchone()[0] > 1
    assert conn.execute("SELECT count(*) FROM tasks WHERE status = 'pending'").fetchone()[0] > 0  # a queried value
    assert conn.execute("SELECT count(*) FROM tasks WHERE session_id IS NULL").fetchone()[0] > 0
    conn.close()


# --- small schemas ----------------------------------------------------------------

def small_schema(indexes):
    people = Table("people", file=F, primary_key=PrimaryKey(("id",)),
                   columns=[Column("id", "TEXT"), Column("name", "TEXT"), Column("team", "TEXT"), Column("age", "INTEGER")])
    return Schema(name="small", tables=[people], indexes=indexes, table_files=(F,), index_file="ix.sql")


def test_a_query_that_cannot_be_prepared_and_a_missing_index(tmp_path):
    s = small_schema([Index("by_team", "people", ["team"], serves=("SELECT shoe_size FROM people WHERE team = ?",)),
                      Index("by_age", "people", ["age"], serves=("SELECT * FROM people WHERE age = ?",))])
    path = build_db(tmp_path / "s.db", s)
    conn = sqlite3.connect(str(path))
    conn.execute("DROP INDEX by_age")
    results = {r.index: r for r in ex.explain_queries(conn, s)}
    conn.close()
    assert not results["by_team"].uses_index and results["by_team"].plan[0].startswith("error:")
    assert "cannot be prepared" in results["by_team"].reason
    assert not results["by_age"].uses_index and "not in this database" in results["by_age"].reason


def test_an_index_whose_first_column_the_query_ignores(tmp_path):
    s = small_schema([Index("by_team_age", "people", ["team", "age"], serves=("SELECT * FROM people WHERE age = 3",))])
    path = build_db(tmp_path / "s.db", s)
    conn = sqlite3.connect(str(path))
    [r] = ex.explain_queries(conn, s)
    conn.close()
    assert not r.uses_index and "full table scan of people" in r.instead
    assert "first column team" in r.reason and r.suggestion is None


def test_partial_index_the_query_cannot_imply_logically(tmp_path):
    s = small_schema([Index("adults", "people", ["team"], where="age > 17", serves=("SELECT * FROM people WHERE team = ?",))])
    path = build_db(tmp_path / "s.db", s)
    conn = sqlite3.connect(str(path))
    [r] = ex.explain_queries(conn, s)
    conn.close()
    assert not r.uses_index and "age > 17" in r.reason
    assert r.suggested_query is None and "its result changes" in r.suggestion


def test_rewriting_helpers():
    q = "SELECT * FROM t WHERE a = 1 OR b = 2 ORDER BY c"
    assert sqlterms.add_where_terms(q, ["x = 1"]) == "SELECT * FROM t WHERE (a = 1 OR b = 2) AND x = 1 ORDER BY c"
    assert sqlterms.add_where_terms("SELECT * FROM t LIMIT 3", ["x = 1"]) == "SELECT * FROM t WHERE x = 1 LIMIT 3"
    assert sqlterms.with_indexed_by("SELECT * FROM t AS u WHERE 1", "t", "i") == 'SELECT * FROM t AS u INDEXED BY "i" WHERE 1'
    assert sqlterms.with_indexed_by("SELECT * FROM t WHERE 1", "t", "i") == 'SELECT * FROM t INDEXED BY "i" WHERE 1'
    assert sqlterms.with_indexed_by("SELECT * FROM other", "t", "i") is None
    assert ex.describe_plan(["SCAN t", "USE TEMP B-TREE FOR ORDER BY"]) == "full table scan of t; ORDER BY sorted in a temp B-tree"
    assert ex.index_access(["SEARCH t USING COVERING INDEX i (a=?)"], "i") == "covering search"


# --- the CLI -------------------------------------------------------------------------

def test_cli_explain_json_and_text(runner, fresh_db):
    result = runner.invoke(main, ["explain", "--db", str(fresh_db), "--json"])
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert len(data) == 33 and data[5]["index"] == "idx_memory_namespace_key_version"
    assert data[5]["uses_index"] is False
    text = runner.invoke(main, ["explain", "--db", str(fresh_db)])
    assert text.exit_code == 0 and "use their index" in text.stdout


def test_cli_explain_sample_rows(runner, fresh_db):
    result = runner.invoke(main, ["explain", "--db", str(fresh_db), "--sample-rows", "100"])
    assert result.exit_code == 0, result.output
    assert "scratch copy, 100 generated rows per table" in result.stdout
    conn = sqlite3.connect(str(fresh_db))
    assert conn.execute("SELECT count(*) FROM tasks").fetchone()[0] == 0
    assert [m for k, m in structure.compare(expected_structure(SCHEMA), structure.read_structure(conn)) if k != "extra"] == []
    conn.close()


def test_cli_explain_errors(tmp_path):
    r = make_runner().invoke(main, ["explain", "--db", str(tmp_path / "missing.db")])
    assert r.exit_code == 2 and "no such file" in r.stderr and "Traceback" not in r.stderr
    r = make_runner().invoke(main, ["explain", "--db", str(tmp_path / "x.db"), "--sample-rows", "0"])
    assert r.exit_code == 2
