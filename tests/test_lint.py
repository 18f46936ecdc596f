"""schema_dsl.analysis.lint: each rule fires on a small schema that has the problem and not on the fixed one."""
from __future__ import annotations

import json
import sqlite3

import pytest

from conftest import make_runner
from schema_dsl.analysis import lint as lint_mod
from schema_dsl.check import lintdb
from schema_dsl.analysis import sqlterms
from schema_dsl.abathur import SCHEMA
from schema_dsl.cli import main
from schema_dsl.analysis.lint import Finding, lint
from schema_dsl.model import Check, Column, Index, PrimaryKey, Schema, Table, Unique, fk

F = "ddl.sql"


def schema(tables, indexes=()):
    return Schema(name="t", tables=tables, indexes=indexes, table_files=(F,), index_file="ix.sql")


def table(name, columns, pk=("id",), **kw):
    return Table(name, columns=columns, primary_key=PrimaryKey(pk) if pk else None, file=F, **kw)


def ix(name, table_name, columns, serves=(), where=None, unique=False):
    return Index(name, table_name, columns, unique=unique, where=where, serves=serves)


def found(findings, rule):
    return sorted(f.object for f in findings if f.rule == rule)


PEOPLE = table("people", [Column("id", "TEXT"), Column("name", "TEXT"), Column("team", "TEXT"), Column("age", "INTEGER")])
ROWS = table("rows", [Column("id", "INTEGER"), Column("a", "TEXT"), Column("b", "TEXT")])


# --- redundant-index -----------------------------------------------------------

def test_identical_indexes_report_the_later_one():
    s = schema([PEOPLE], [ix("by_name", "people", ["name", "team"]), ix("by_name_again", "people", ["name", "team"])])
    assert found(lint(s), "redundant-index") == ["by_name_again"]
    fixed = schema([PEOPLE], [ix("by_name", "people", ["name", "team"]), ix("by_team", "people", ["team", "name"])])
    assert found(lint(fixed), "redundant-index") == []


def test_redundant_index_messages_name_no_engine():
    # the declaration's lint runs for both engines (PostgreSQL also keeps an index for a PRIMARY KEY or UNIQUE
    # constraint): its messages said "the automatic index SQLite keeps" and "SQLite uses one of the two"
    s = schema([table("people", PEOPLE.columns, uniques=[Unique(["name"])])],
               [ix("by_id", "people", ["id"]), ix("by_name", "people", ["name"]),
                ix("by_team", "people", ["team"]), ix("by_team_again", "people", ["team"])])
    messages = [f.message for f in lint(s) if f.rule == "redundant-index"]
    assert len(messages) == 3, messages
    assert not [m for m in messages if "SQLite" in m], messages


def test_prefix_index_is_redundant_only_with_the_same_where():
    s = schema([PEOPLE], [ix("by_name", "people", ["name"]), ix("by_name_team", "people", ["name", "team"])])
    assert found(lint(s), "redundant-index") == ["by_name"]
    different_where = schema([PEOPLE], [ix("by_name", "people", ["name"], where="age > 18"),
                                        ix("by_name_team", "people", ["name", "team"])])
    assert found(lint(different_where), "redundant-index") == []
    same_where = schema([PEOPLE], [ix("by_name", "people", ["name"], where="age > 18"),
                                   ix("by_name_team", "people", ["name", "team"], where="age > 18")])
    assert found(lint(same_where), "redundant-index") == ["by_name"]


def test_index_repeating_a_text_primary_key_or_unique_constraint():
    t = table("people", [Column("id", "TEXT"), Column("email", "TEXT", unique=True), Column("a", "TEXT"),
                         Column("b", "TEXT")], uniques=[Unique(("a", "b"))])
    s = schema([t], [ix("pk_again", "people", ["id"], unique=True), ix("email_again", "people", ["email"], unique=True),
                     ix("ab_again", "people", ["a", "b"]), ix("a_prefix", "people", ["a"])])
    assert found(lint(s), "redundant-index") == ["a_prefix", "ab_again", "email_again", "pk_again"]
    messages = {f.object: f.message for f in lint(s)}
    assert "PRIMARY KEY (id)" in messages["pk_again"] and "UNIQUE constraint (a, b)" in messages["ab_again"]
    fixed = schema([t], [ix("b_first", "people", ["b", "a"]), ix("a_unique", "people", ["a"], unique=True)])
    assert found(lint(fixed), "redundant-index") == []  # a unique index on a prefix enforces more: not redundant


def test_index_on_the_integer_primary_key_is_the_rowid():
    s = schema([ROWS], [ix("rows_pk", "rows", ["id"], unique=True, serves=("SELECT * FROM rows WHERE id = ?",))])
    [f] = [f for f in lint(s) if f.rule == "redundant-index"]
    assert f.object == "rows_pk" and "rowid" in f.message
    text_pk = table("rows", [Column("id", "INT PRIMARY"), Column("a", "TEXT")])  # not exactly INTEGER: not the rowid
    assert found(lint(schema([text_pk], [ix("rows_pk", "rows", ["id"], unique=False)])), "redundant-index") == ["rows_pk"]
    assert "rowid" not in lint(schema([text_pk], [ix("rows_pk", "rows", ["id"])]))[0].message


def test_direction_difference_is_redundant_only_when_the_query_fixes_the_leading_columns():
    t = table("cp", [Column("task", "TEXT"), Column("n", "INTEGER"), Column("s", "TEXT")], pk=("task", "n"))
    fixed_first = ix("by_task", "cp", ["task", "n DESC"], serves=("SELECT * FROM cp WHERE task = ? ORDER BY n DESC",))
    assert found(lint(schema([t], [fixed_first])), "redundant-index") == ["by_task"]
    mixed_order = ix("by_task", "cp", ["task", "n DESC"], serves=("SELECT * FROM cp ORDER BY task, n DESC",))
    assert found(lint(schema([t], [mixed_order])), "redundant-index") == []


# --- unindexed-foreign-key -------------------------------------------------------

PARENT = table("parent", [Column("id", "TEXT")])


def child(**kw):
    return table("child", [Column("id", "INTEGER"), Column("parent_id", "TEXT"), Column("at", "TIMESTAMP")],
                 foreign_keys=[fk("parent_id", "parent", "id", on_delete="SET NULL")], **kw)


def test_foreign_key_without_an_index_is_reported():
    [f] = [f for f in lint(schema([PARENT, child()])) if f.rule == "unindexed-foreign-key"]
    assert f.object == "child.parent_id"
    assert "ON DELETE SET NULL" in f.message and "scanning all of 'child'" in f.message
    assert "parent_id IS NOT NULL" in f.suggestion


@pytest.mark.parametrize("indexes", [
    [ix("child_parent", "child", ["parent_id", "at DESC"])],
    [ix("child_parent", "child", ["parent_id"], where="parent_id IS NOT NULL")],
])
def test_foreign_key_with_a_leading_index_is_not_reported(indexes):
    assert found(lint(schema([PARENT, child()], indexes)), "unindexed-foreign-key") == []


def test_foreign_key_index_must_lead_with_the_column_and_its_where_must_follow():
    second = [ix("child_at_parent", "child", ["at", "parent_id"])]
    assert found(lint(schema([PARENT, child()], second)), "unindexed-foreign-key") == ["child.parent_id"]
    unrelated_where = [ix("child_parent", "child", ["parent_id"], where="at IS NOT NULL")]
    assert found(lint(schema([PARENT, child()], unrelated_where)), "unindexed-foreign-key") == ["child.parent_id"]


def test_foreign_key_served_by_a_composite_primary_key():
    t = table("cp", [Column("parent_id", "TEXT"), Column("n", "INTEGER")], pk=("parent_id", "n"),
              foreign_keys=[fk("parent_id", "parent", "id")])
    assert found(lint(schema([PARENT, t])), "unindexed-foreign-key") == []


# --- like-prefix-binary ------------------------------------------------------------

def test_like_prefix_query_on_a_binary_column():
    bad = schema([PEOPLE], [ix("by_name", "people", ["name"], serves=("SELECT * FROM people WHERE name LIKE 'al%'",))])
    [f] = [f for f in lint(bad) if f.rule == "like-prefix-binary"]
    assert f.object == "by_name" and "BINARY" in f.message
    assert "name GLOB 'al*'" in f.suggestion and "name >= 'al' AND name < 'am'" in f.suggestion
    for query in ("SELECT * FROM people WHERE name GLOB 'al*'", "SELECT * FROM people WHERE name = 'al'",
                  "SELECT * FROM people WHERE name LIKE '%al'"):
        good = schema([PEOPLE], [ix("by_name", "people", ["name"], serves=(query,))])
        assert found(lint(good), "like-prefix-binary") == []


def test_like_rewrites_are_searched_by_sqlite():
    conn = sqlite3.connect(":memory:")
    conn.execute("CREATE TABLE people (id TEXT PRIMARY KEY, name TEXT)")
    conn.execute("CREATE INDEX by_name ON people (name)")
    for form in lint_mod.like_rewrites("name", "al"):
        plan = [r[3] for r in conn.execute("EXPLAIN QUERY PLAN SELECT * FROM people WHERE " + form)]
        assert any("SEARCH people USING" in line and "by_name" in line for line in plan), (form, plan)
    plan = [r[3] for r in conn.execute("EXPLAIN QUERY PLAN SELECT * FROM people WHERE name LIKE 'al%'")]
    assert not any(line.startswith("SEARCH") for line in plan)  # the defect the rule names, in this SQLite


# --- partial-index-not-implied -------------------------------------------------------

def test_partial_index_whose_where_the_query_does_not_imply():
    bad = schema([PEOPLE], [ix("adults", "people", ["team"], where="age IN (18, 19)",
                               serves=("SELECT * FROM people WHERE age = 18 AND team = ?",))])
    [f] = [f for f in lint(bad) if f.rule == "partial-index-not-implied"]
    assert f.object == "adults" and "age IN (18, 19)" in f.message
    assert "add AND age IN (18, 19)" in f.suggestion  # age = 18 implies it logically
    unrelated = schema([PEOPLE], [ix("adults", "people", ["team"], where="age > 17",
                                     serves=("SELECT * FROM people WHERE team = ?",))])
    [g] = [f for f in lint(unrelated) if f.rule == "partial-index-not-implied"]
    assert "changes" in g.suggestion  # the query would have to change its result


@pytest.mark.parametrize("where,query", [
    ("age IN (18, 19)", "SELECT * FROM people WHERE team = ? AND age IN (18, 19)"),
    ("name IS NOT NULL", "SELECT * FROM people WHERE name = ?"),
    ("name IS NOT NULL", "SELECT * FROM people WHERE name LIKE 'x%'"),
    ("age > 17 AND team IS NOT NULL", "SELECT * FROM people WHERE team = 'a' AND age > 17 ORDER BY name"),
    ("age = 1 OR age = 2", "SELECT * FROM people WHERE age = 2"),
    ("age = 5", "SELECT * FROM people WHERE 5 = age"),
])
def test_partial_index_implied_by_the_query_is_not_reported(where, query):
    s = schema([PEOPLE], [ix("p", "people", ["team"], where=where, serves=(query,))])
    assert found(lint(s), "partial-index-not-implied") == []


@pytest.mark.parametrize("where,query,usable", [
    ("age IN (18, 19)", "SELECT * FROM people WHERE age = 18", False),
    ("age IN (18, 19)", "SELECT * FROM people WHERE age = 18 AND age IN (18, 19)", True),
    ("name IS NOT NULL", "SELECT * FROM people WHERE name = ?", True),
    ("name IS NOT NULL", "SELECT * FROM people WHERE name IS 'x'", False),
    ("name IS NOT NULL", "SELECT * FROM people WHERE name LIKE '%x'", False),
    ("age = 5", "SELECT * FROM people WHERE 5 = age", True),
    ("age = 5", "SELECT * FROM people WHERE age = 5.0", False),
    ("age = 1 OR age = 2", "SELECT * FROM people WHERE age = 2", True),
])
def test_the_implication_rule_agrees_with_sqlite(where, query, usable):
    conn = sqlite3.connect(":memory:")
    conn.execute("CREATE TABLE people (id TEXT PRIMARY KEY, name TEXT, team TEXT, age INTEGER)")
    conn.execute("CREATE INDEX p ON people (team) WHERE " + where)
    forced = sqlterms.with_indexed_by(query, "people", "p")
    try:
        conn.execute("EXPLAIN QUERY PLAN " + forced, (None,) * forced.count("?")).fetchall()
        sqlite_says = True
    except sqlite3.OperationalError as exc:
        assert "no query solution" in str(exc)
        sqlite_says = False
    assert sqlite_says == usable
    assert (sqlterms.unimplied_terms(query, where) == []) == usable


# --- json-valid-nullable ------------------------------------------------------------

def json_table(check, not_null=False):
    return table("docs", [Column("id", "INTEGER"), Column("meta", "TEXT", not_null=not_null, default="{}")],
                 checks=[Check(check)])


def test_json_valid_on_a_nullable_column_when_json_valid_null_is_zero():
    [f] = [f for f in lint(schema([json_table("json_valid(meta)")]), json_probe=0) if f.rule == "json-valid-nullable"]
    assert f.object == "docs.meta" and "json_valid(NULL)" in f.message
    assert "meta IS NULL OR json_valid(meta)" in f.suggestion
    assert found(lint(schema([json_table("json_valid(meta)")]), json_probe=None), "json-valid-nullable") == []
    assert found(lint(schema([json_table("meta IS NULL OR json_valid(meta)")]), json_probe=0), "json-valid-nullable") == []
    assert found(lint(schema([json_table("json_valid(meta)", not_null=True)]), json_probe=0), "json-valid-nullable") == []


def test_json_probe_is_what_this_sqlite_does():
    conn = sqlite3.connect(":memory:")
    assert lint_mod.json_valid_null() == conn.execute("SELECT json_valid(NULL)").fetchone()[0]
    conn.execute("CREATE TABLE docs (id INTEGER PRIMARY KEY, meta TEXT DEFAULT '{}' CHECK (json_valid(meta)))")
    try:
        conn.execute("INSERT INTO docs (meta) VALUES (NULL)")
        refused = False
    except sqlite3.IntegrityError:
        refused = True
    fired = bool(found(lint(schema([json_table("json_valid(meta)")])), "json-valid-nullable"))
    assert fired == refused  # the rule fires exactly when this SQLite refuses the NULL


# --- the Abathur declaration -----------------------------------------------------------

def test_abathur_known_defects_are_all_reported():
    findings = lint(SCHEMA)
    assert found(findings, "redundant-index") == sorted([
        "idx_sessions_pk", "idx_memory_entries_pk", "idx_document_index_pk", "idx_document_file_path",
        "idx_memory_conflict_detection", "idx_state_task_key", "idx_checkpoints_task"])
    assert found(findings, "like-prefix-binary") == ["idx_audit_memory_namespace", "idx_memory_namespace_prefix"]
    assert found(findings, "partial-index-not-implied") == ["idx_document_sync_status", "idx_sessions_status_updated"]
    assert found(findings, "unindexed-foreign-key") == ["checkpoints.session_id"]
    if lint_mod.json_valid_null() == 0:
        assert found(findings, "json-valid-nullable") == ["document_index.metadata", "memory_entries.metadata",
                                                          "sessions.metadata"]
    conflict = next(f for f in findings if f.object == "idx_memory_conflict_detection")
    assert "idx_memory_namespace_key_version" in conflict.message


def test_abathur_findings_carry_resolutions_and_lint_changes_nothing():
    before = SCHEMA.indexes
    findings = lint(SCHEMA)
    assert SCHEMA.indexes == before and len(SCHEMA.indexes) == 33
    assert all(f.resolution for f in findings)
    redundant = [f for f in findings if f.rule == "redundant-index"]
    assert all(f.resolution.startswith("kept: the milestone counts 33 indexes") for f in redundant)
    assert all(set(f.as_dict()) >= {"rule", "object", "severity", "message", "resolution"} for f in findings)


def test_resolutions_by_rule_and_object_and_the_default():
    s = schema([PEOPLE], [ix("a", "people", ["name"]), ix("b", "people", ["name"]), ix("c", "people", ["name"])])
    got = {f.object: f.resolution for f in lint(s, resolutions={"redundant-index": "by rule",
                                                                ("redundant-index", "c"): "by object"})}
    assert got == {"b": "by rule", "c": "by object"}
    assert lint(s)[0].resolution == lint_mod.DEFAULT_RESOLUTIONS["redundant-index"]


def test_finding_validates_rule_and_severity():
    with pytest.raises(ValueError):
        Finding("no-such-rule", "x", "warning", "m")
    with pytest.raises(ValueError):
        Finding("redundant-index", "x", "fatal", "m")


# --- with a database, and the CLI -----------------------------------------------------

def test_lint_database_reports_statistics_and_unused_indexes(fresh_db):
    conn = sqlite3.connect(str(fresh_db))
    findings = lintdb.lint_database(conn, SCHEMA)
    assert found(findings, "no-statistics") == ["sqlite_stat1"]
    unused = found(findings, "index-not-used")
    assert "idx_sessions_status_updated" in unused and "idx_memory_namespace_key_version" in unused
    conn.execute("ANALYZE")  # on empty tables: sqlite_stat1 exists but holds no statistics
    assert found(lintdb.lint_database(conn, SCHEMA), "no-statistics") == ["sqlite_stat1"]
    conn.execute("INSERT INTO metrics (timestamp, metric_name, metric_value) VALUES ('2025-01-01', 'm', 1)")
    conn.execute("ANALYZE")
    conn.commit()
    assert found(lintdb.lint_database(conn, SCHEMA), "no-statistics") == []
    conn.close()


def test_cli_lint_json(runner):
    result = runner.invoke(main, ["lint", "--json"])
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert isinstance(data, list) and data
    assert all({"rule", "object", "severity", "message", "resolution"} <= set(d) for d in data)
    assert {d["rule"] for d in data} >= {"redundant-index", "like-prefix-binary", "partial-index-not-implied",
                                         "unindexed-foreign-key"}


def test_cli_lint_text_with_db(runner, fresh_db):
    result = runner.invoke(main, ["lint", "--db", str(fresh_db)])
    assert result.exit_code == 0, result.output
    assert "index-not-used idx_sessions_status_updated" in result.stdout
    assert "resolution: kept: the milestone counts 33 indexes" in result.stdout
    missing = make_runner().invoke(main, ["lint", "--db", str(fresh_db) + ".missing"])
    assert missing.exit_code == 2 and "no such file" in missing.stderr


def test_validation_report_shows_findings_with_resolutions(fresh_db):
    from schema_dsl.check.report import build_report
    from schema_dsl.check.validate import format_markdown, format_text
    report = build_report(str(fresh_db))
    assert {f["object"] for f in report["findings"]} >= {"idx_state_task_key", "checkpoints.session_id"}
    text = format_text(report)
    assert "issues encountered in the design" in text
    assert "redundant-index idx_state_task_key" in text and "resolution: kept: the milestone counts 33" in text
    md = format_markdown(report)
    issues = md.split("## Issues encountered")[1]
    assert "### Design findings, and how each is resolved" in issues
    assert "`idx_checkpoints_task` (redundant-index)" in issues and "Resolution: kept: the milestone counts 33" in issues
