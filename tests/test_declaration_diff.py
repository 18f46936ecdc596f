"""schemagen diff FROM TO: two declarations compared, the change linted (schema_dsl/check/declaration_diff.py)."""
from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import textwrap

import pytest

from conftest import make_runner
from schema_dsl.cli import main

BEFORE = textwrap.dedent('''
    from schema_dsl.model import Column, PrimaryKey, Schema, Table

    SCHEMA = Schema(name="notes", tables=[
        Table("authors", columns=[Column("id", "INTEGER"), Column("name", "TEXT")], primary_key=PrimaryKey(("id",))),
        Table("notes", columns=[Column("id", "INTEGER"), Column("author_id", "INTEGER"), Column("body", "TEXT")],
              primary_key=PrimaryKey(("id",))),
    ])
''')

AFTER = textwrap.dedent('''
    from schema_dsl.model import Check, Column, Index, PrimaryKey, Schema, Table, Unique, fk

    SCHEMA = Schema(name="notes", tables=[
        Table("authors", columns=[Column("id", "INTEGER"), Column("name", "TEXT", not_null=True)],
              primary_key=PrimaryKey(("id",)), uniques=[Unique(("name",))]),
        Table("notes", columns=[Column("id", "INTEGER"), Column("author_id", "INTEGER"), Column("body", "TEXT")],
              primary_key=PrimaryKey(("id",)), foreign_keys=[fk("author_id", "authors", "id", "CASCADE")],
              checks=[Check("length(body) < 10")]),
    ], indexes=[Index("idx_notes_author", "notes", ["author_id"])])
''')


@pytest.fixture
def runner():
    return make_runner()


@pytest.fixture
def specs(tmp_path, monkeypatch):
    (tmp_path / "before.py").write_text(BEFORE, encoding="utf-8")
    (tmp_path / "after.py").write_text(AFTER, encoding="utf-8")
    monkeypatch.chdir(tmp_path)
    return tmp_path


def make_db(runner, path, rows=(), authors=()):
    """A database at the BEFORE declaration, with the given rows."""
    result = runner.invoke(main, ["apply", "--schema", "before.py", "--db", str(path), "--no-validate"])
    assert result.exit_code == 0, result.output
    conn = sqlite3.connect(str(path))
    conn.executemany("INSERT INTO authors VALUES (?, ?)", authors)
    conn.executemany("INSERT INTO notes VALUES (?, ?, ?)", rows)
    conn.commit()
    conn.close()
    return str(path)


def test_diff_of_two_spec_files_prints_the_plan_and_lints_it(runner, specs):
    result = runner.invoke(main, ["diff", "before.py", "after.py"])
    assert result.exit_code == 0, result.output
    out = result.stdout
    assert "diff before.py -> after.py" in out
    assert "1. rebuild table 'authors'" in out and "2. rebuild table 'notes'" in out
    assert "create index 'idx_notes_author' on 'notes'" in out
    assert "copies" not in out  # planned on an empty database: no row counts pretend to be facts
    lint = out[out.index("lint:"):]
    assert "loses data: none" in lint
    assert "unique-new: UNIQUE (name) is new" in lint
    assert "foreign-key-new: foreign key (author_id) -> authors is new" in lint
    assert "(give --db to count them)" in lint
    data = json.loads(runner.invoke(main, ["diff", "before.py", "after.py", "--json"]).stdout)
    assert [r["table"] for r in data["rebuilds"]] == ["authors", "notes"]
    assert sorted(r["kind"] for r in data["risks"]) == ["check-new", "foreign-key-new", "not-null", "unique-new"]
    assert all(r["violations"] is None for r in data["risks"])
    assert [s["kind"] for s in data["steps"]] == ["RebuildTable", "RebuildTable", "CreateIndex"]
    assert data["from"]["kind"] == data["to"]["kind"] == "spec"


def test_no_change_between_equal_declarations(runner, specs):
    result = runner.invoke(main, ["diff", "after.py", "after.py", "--strict"])
    assert result.exit_code == 0
    assert "no change between the declarations" in result.stdout
    assert "rebuilds: none" in result.stdout


def test_db_counts_the_rows_that_would_not_fit(runner, specs):
    db = make_db(runner, specs / "app.db", authors=[(1, "x"), (2, "x"), (3, None), (4, "y"), (5, "y"), (6, "z")],
                 rows=[(1, 1, "short"), (2, 9, "a long body here"), (3, None, "also much too long"), (4, 8, "ok")])
    before = open(db, "rb").read()
    data = json.loads(runner.invoke(main, ["diff", "before.py", "after.py", "--db", db, "--json"]).stdout)
    counts = {r["kind"]: r["violations"] for r in data["risks"]}
    assert counts == {"not-null": 1, "unique-new": 2, "check-new": 2, "foreign-key-new": 2}
    assert data["violations"] == 7
    text = runner.invoke(main, ["diff", "before.py", "after.py", "--db", db]).stdout
    assert "2 groups (4 rows) share a value" in text and "1 row holds NULL" in text
    assert open(db, "rb").read() == before  # only read


def test_strict_exits_1_when_rows_would_violate_and_0_when_they_fit(runner, specs):
    bad = make_db(runner, specs / "bad.db", authors=[(1, "x"), (2, "x")])
    good = make_db(runner, specs / "good.db", authors=[(1, "x"), (2, "y")], rows=[(1, 1, "fine"), (2, None, "ok")])
    assert runner.invoke(main, ["diff", "before.py", "after.py", "--db", bad]).exit_code == 0
    result = runner.invoke(main, ["diff", "before.py", "after.py", "--db", bad, "--strict"])
    assert result.exit_code == 1
    assert "does not fit the rows" in result.stderr
    result = runner.invoke(main, ["diff", "before.py", "after.py", "--db", good, "--strict"])
    assert result.exit_code == 0, result.output


def test_rebuild_gets_a_positive_write_lock_estimate_from_rows_and_a_measured_rate(runner, specs):
    n = 3000
    db = make_db(runner, specs / "big.db", authors=[(i, "a%d" % i) for i in range(1, n + 1)],
                 rows=[(i, 1 + i % n, "b") for i in range(1, n + 1)])
    data = json.loads(runner.invoke(main, ["diff", "before.py", "after.py", "--db", db, "--json"]).stdout)
    for rebuild in data["rebuilds"]:
        assert rebuild["rows"] == n
        assert rebuild["sampled_rows"] == n
        assert rebuild["lock_seconds"] > 0
        assert rebuild["lock_seconds"] == pytest.approx(n / rebuild["rate_rows_per_second"], rel=0.01)
    text = runner.invoke(main, ["diff", "before.py", "after.py", "--db", db]).stdout
    assert "expected write lock" in text


# --- git revisions ---------------------------------------------------------------------------

GIT_ENV = dict(os.environ, GIT_AUTHOR_NAME="t", GIT_AUTHOR_EMAIL="t@example.com", GIT_COMMITTER_NAME="t",
               GIT_COMMITTER_EMAIL="t@example.com", GIT_CONFIG_NOSYSTEM="1", HOME="/nonexistent")


def git(root, *args):
    done = subprocess.run(["git", "-c", "commit.gpgsign=false", "-c", "init.defaultBranch=main", *args], cwd=root,
                          env=GIT_ENV, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    return done.stdout


@pytest.fixture
def repo(tmp_path, monkeypatch, runner):
    """A git repository with a project: pyproject.toml names schema.py; generated/ rendered and committed."""
    root = tmp_path / "repo"
    root.mkdir()
    (root / "pyproject.toml").write_text('[project]\nname = "notes"\n\n[tool.schemagen]\ndeclaration = "schema.py"\n',
                                         encoding="utf-8")
    (root / "schema.py").write_text(BEFORE, encoding="utf-8")
    monkeypatch.chdir(root)
    result = runner.invoke(main, ["render"])
    assert result.exit_code == 0, result.output
    assert (root / "generated" / "declaration.json").is_file()
    git(root, "init", "-q")
    git(root, "add", "-A")
    git(root, "commit", "-q", "-m", "first")
    return root


def test_diff_of_a_revision_against_the_working_tree(runner, repo):
    (repo / "schema.py").write_text(AFTER, encoding="utf-8")
    result = runner.invoke(main, ["diff", "HEAD", "."])
    assert result.exit_code == 0, result.output
    out = result.stdout
    assert out.startswith("diff HEAD (generated/declaration.json at ")
    assert "schema.py (working tree)" in out.splitlines()[0]
    assert "note: read generated/declaration.json committed at" in out
    assert "1. rebuild table 'authors'" in out and "unique-new: UNIQUE (name) is new" in out
    data = json.loads(runner.invoke(main, ["diff", "HEAD", ".", "--json"]).stdout)
    assert data["from"]["kind"] == "revision" and data["to"]["kind"] == "working tree"
    # the revision is read as data: the committed declaration.json's source hash, not the working tree's file
    committed = json.loads(git(repo, "show", "HEAD:generated/declaration.json"))
    assert data["from"]["source_sha256"] == committed["source"]["sha256"] != data["to"]["source_sha256"]
    # unchanged: HEAD against the working tree before the edit
    (repo / "schema.py").write_text(BEFORE, encoding="utf-8")
    assert "no change between the declarations" in runner.invoke(main, ["diff", "HEAD", "."]).stdout


def test_diff_between_two_revisions_reconstructs_the_later_one(runner, repo):
    (repo / "schema.py").write_text(AFTER, encoding="utf-8")
    assert runner.invoke(main, ["render"]).exit_code == 0
    git(repo, "add", "-A")
    git(repo, "commit", "-q", "-m", "second")
    data = json.loads(runner.invoke(main, ["diff", "HEAD~1", "HEAD", "--json"]).stdout)
    assert data["to"]["reconstructed"] is True
    assert [r["table"] for r in data["rebuilds"]] == ["authors", "notes"]
    assert {r["kind"] for r in data["risks"]} == {"check-new", "foreign-key-new", "not-null", "unique-new"}


def test_a_revision_without_a_compiled_declaration_loads_its_declaration_file(runner, tmp_path, monkeypatch):
    root = tmp_path / "plain"
    root.mkdir()
    (root / "pyproject.toml").write_text('[tool.schemagen]\ndeclaration = "schema.py"\n', encoding="utf-8")
    (root / "schema.py").write_text(BEFORE, encoding="utf-8")
    git(root, "init", "-q")
    git(root, "add", "-A")
    git(root, "commit", "-q", "-m", "no generated/")
    (root / "schema.py").write_text(AFTER, encoding="utf-8")
    monkeypatch.chdir(root)
    result = runner.invoke(main, ["diff", "HEAD", "."])
    assert result.exit_code == 0, result.output
    assert "has no generated/declaration.json: loaded its declaration file schema.py instead" in result.stdout
    assert "1. rebuild table 'authors'" in result.stdout


REMOVED = textwrap.dedent('''
    from schema_dsl.model import Column, PrimaryKey, Schema, Table, removed

    SCHEMA = Schema(name="notes", tables=[
        Table("notes", columns=[Column("id", "INTEGER"), Column("author_id", "INTEGER")],
              primary_key=PrimaryKey(("id",))),
    ], removed=[removed("table", "authors", "merged into notes"), removed("column", "body", "unused", table="notes")])
''')


def test_declared_removals_lose_data_counted_in_db_and_strict_exits_1(runner, specs):
    from schema_dsl import model
    if not hasattr(model, "removed"):
        pytest.skip("the model has no declared removals")
    (specs / "removed.py").write_text(REMOVED, encoding="utf-8")
    db = make_db(runner, specs / "app.db", authors=[(1, "x"), (2, "y")], rows=[(1, 1, "a"), (2, 1, None), (3, 2, "c")])
    data = json.loads(runner.invoke(main, ["diff", "before.py", "removed.py", "--db", db, "--json"]).stdout)
    assert [(x["kind"], x["table"], x["column"], x["rows"]) for x in data["loses_data"]] == [
        ("table", "authors", None, 2), ("column", "notes", "body", 2)]
    result = runner.invoke(main, ["diff", "before.py", "removed.py", "--db", db])
    assert "table 'authors' is dropped with its rows (removed: merged into notes): 2 rows in" in result.stdout
    assert "2 non-NULL values in" in result.stdout
    result = runner.invoke(main, ["diff", "before.py", "removed.py", "--strict"])
    assert result.exit_code == 1 and "loses data" in result.stderr
