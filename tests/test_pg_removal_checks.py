"""On PostgreSQL too: a user's index on a removed column is a drop the plan names, and renamed_from with both
names present is refused, saying which holds rows (issue 15, items 7 and 10)."""
from __future__ import annotations

import json

import pytest

from pg_cluster import pg_cluster, pg_url  # noqa: F401 (fixtures)
from test_pg_migrate import _cli, _connect, _decl

V1 = """
from schema_dsl.model import Column, PrimaryKey, Schema, Table

SCHEMA = Schema(name="todo", tables=[
    Table("tasks_v1", columns=[Column("id", "INTEGER"), Column("title", "TEXT"), Column("body", "TEXT")],
          primary_key=PrimaryKey(["id"])),
])
"""


@pytest.fixture
def runner():
    from conftest import make_runner
    return make_runner()


def _applied(runner, tmp_path, url):
    result = _cli(runner, "apply", "--db", url, "--schema", _decl(tmp_path, "v1", V1))
    assert result.exit_code == 0, result.output + result.stderr
    with _connect(url) as conn:
        conn.execute("INSERT INTO tasks_v1 (id, title, body) VALUES (1, 'a', 'x'), (2, 'b', NULL)")


def test_a_users_index_on_a_removed_column_is_named_as_a_drop(runner, tmp_path, pg_url):
    _applied(runner, tmp_path, pg_url)
    with _connect(pg_url) as conn:
        conn.execute("CREATE INDEX my_body ON tasks_v1 (title, body)")
        conn.execute("CREATE INDEX my_title ON tasks_v1 (title)")
    v2 = _decl(tmp_path, "v2", V1.replace(', Column("body", "TEXT")', "").replace(
        "import Column,", "import removed, Column,").replace(
        "])),\n])", "])),\n], removed=[removed('column', 'body', 'unused', table='tasks_v1')])"))
    shown = _cli(runner, "plan", "--db", pg_url, "--schema", v2, "--json")
    assert shown.exit_code == 0, shown.output + shown.stderr
    plan = json.loads(shown.stdout)
    titles = [s["title"] for s in plan["steps"]]
    assert "drop index 'my_body' on 'tasks_v1'" in titles
    assert not any("my_body" in k for k in plan["kept"]) and any("my_title" in k for k in plan["kept"])
    done = _cli(runner, "apply", "--db", pg_url, "--schema", v2, "--yes", "--allow-data-loss", "--json")
    assert done.exit_code == 0, done.output + done.stderr
    with _connect(pg_url) as conn:
        names = {r[0] for r in conn.execute("SELECT indexname FROM pg_indexes WHERE tablename = 'tasks_v1'")}
    assert "my_body" not in names and "my_title" in names


def test_renamed_from_with_both_tables_present_is_refused_naming_the_rows(runner, tmp_path, pg_url):
    _applied(runner, tmp_path, pg_url)
    with _connect(pg_url) as conn:
        conn.execute("CREATE TABLE tasks (id INTEGER PRIMARY KEY, title TEXT, body TEXT)")
    v2 = _decl(tmp_path, "v2", V1.replace('Table("tasks_v1",', 'Table("tasks", renamed_from="tasks_v1",'))
    for command in ("plan", "apply"):
        result = _cli(runner, command, "--db", pg_url, "--schema", v2)
        assert result.exit_code == 2, result.output + result.stderr
        assert "'tasks_v1' holds 2 rows, 'tasks' holds none" in result.stderr
    with _connect(pg_url) as conn:
        assert conn.execute("SELECT count(*) FROM tasks_v1").fetchone()[0] == 2


def test_prune_keeps_a_unique_index_a_foreign_key_needs(runner, tmp_path, pg_url):
    _applied(runner, tmp_path, pg_url)
    with _connect(pg_url) as conn:
        conn.execute("CREATE UNIQUE INDEX tasks_title_key ON tasks_v1 (title)")
        conn.execute("CREATE UNIQUE INDEX tasks_body_key ON tasks_v1 (body)")
        conn.execute("CREATE TABLE tag (title TEXT REFERENCES tasks_v1 (title))")
    v1 = _decl(tmp_path, "v1", V1)
    shown = _cli(runner, "plan", "--db", pg_url, "--schema", v1, "--prune", "--json")
    assert shown.exit_code == 0, shown.output + shown.stderr
    plan = json.loads(shown.stdout)
    assert [s["title"] for s in plan["steps"]] == ["drop index 'tasks_body_key' on 'tasks_v1'"]
    assert "index 'tasks_title_key' on 'tasks_v1' (the parent key of the foreign key of 'tag' (title): --prune " \
           "keeps it)" in plan["kept"]
    done = _cli(runner, "apply", "--db", pg_url, "--schema", v1, "--prune")
    assert done.exit_code == 0, done.output + done.stderr
    with _connect(pg_url) as conn:
        conn.execute("INSERT INTO tag VALUES ('a')")


VT = """
from schema_dsl.model import Column, PrimaryKey, Schema, Table, VirtualTable

SCHEMA = Schema(name="notes", tables=[
    Table("notes", columns=[Column("id", "INTEGER"), Column("body", "TEXT")], primary_key=PrimaryKey(["id"])),
], virtual_tables=[VirtualTable("notes_fts", "fts5", "body",
                                postgresql="CREATE TABLE notes_fts (id INTEGER PRIMARY KEY, doc tsvector)")])
"""


def test_a_declared_virtual_tables_counterpart_is_neither_kept_as_the_users_nor_pruned(runner, tmp_path, pg_url):
    """The table standing in for a declared virtual table is the declaration's own: not listed as kept, and
    --prune --allow-data-loss (which drops undeclared tables) leaves it (it used to drop it, rows and all)."""
    spec = _decl(tmp_path, "vt", VT)
    result = _cli(runner, "apply", "--db", pg_url, "--schema", spec)
    assert result.exit_code == 0, result.output + result.stderr
    with _connect(pg_url) as conn:
        conn.execute("INSERT INTO notes_fts (id, doc) VALUES (1, to_tsvector('a b'))")
    shown = _cli(runner, "plan", "--db", pg_url, "--schema", spec, "--json")
    assert shown.exit_code == 0, shown.output + shown.stderr
    plan = json.loads(shown.stdout)
    assert plan["up_to_date"] and plan["kept"] == [], plan
    pruned = _cli(runner, "apply", "--db", pg_url, "--schema", spec, "--prune", "--allow-data-loss", "--yes", "--json")
    assert pruned.exit_code == 0, pruned.output + pruned.stderr
    with _connect(pg_url) as conn:
        assert conn.execute("SELECT count(*) FROM notes_fts").fetchone()[0] == 1


def test_a_users_table_named_as_an_sqlite_only_virtual_table_is_the_users_own(runner, tmp_path, pg_url):
    """sqlite_only leaves the virtual table out on PostgreSQL: a table of that name there is the user's, kept
    and listed as such (and --prune --allow-data-loss drops it, as any undeclared table)."""
    spec = _decl(tmp_path, "vt_sqlite", VT.replace(
        'postgresql="CREATE TABLE notes_fts (id INTEGER PRIMARY KEY, doc tsvector)"', "sqlite_only=True"))
    result = _cli(runner, "apply", "--db", pg_url, "--schema", spec)
    assert result.exit_code == 0, result.output + result.stderr
    with _connect(pg_url) as conn:
        conn.execute("CREATE TABLE notes_fts (id INTEGER, doc TEXT)")
    shown = _cli(runner, "plan", "--db", pg_url, "--schema", spec, "--json")
    assert shown.exit_code == 0, shown.output + shown.stderr
    assert json.loads(shown.stdout)["kept"] == ["table 'notes_fts' (2 columns)"]
    pruned = _cli(runner, "plan", "--db", pg_url, "--schema", spec, "--prune", "--allow-data-loss", "--json")
    assert [s["title"] for s in json.loads(pruned.stdout)["steps"]] == ["drop table 'notes_fts' (0 rows)"]
