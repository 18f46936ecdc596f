"""Which declaration, said out loud (issue 17 item 1): the CLI and Database resolve it by one rule (an explicit
schema, else the [tool.schemagen] project found from the current folder, else the shipped Abathur one); the
fallback says so on stderr, and under it every command that opens a database refuses another application's file."""
from __future__ import annotations

import asyncio
import json
import logging
import sqlite3

import pytest

from conftest import ROOT, make_runner
from schema_dsl.cli import main
from schema_dsl.database import Database
from schema_dsl.errors import SchemagenError
from test_project import NOTES, project  # noqa: F401  (the notes project fixture)

NOTE = "note: no --schema and no [tool.schemagen] in a pyproject.toml from"


@pytest.fixture
def runner():
    return make_runner()


@pytest.fixture
def nowhere(tmp_path, monkeypatch):
    folder = tmp_path / "nowhere"
    folder.mkdir()
    monkeypatch.chdir(folder)
    return folder


def _tables(path):
    conn = sqlite3.connect(str(path))
    try:
        return sorted(r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'"))
    finally:
        conn.close()


def _their_app(folder):
    db = folder / "app.db"
    conn = sqlite3.connect(str(db))
    conn.execute("CREATE TABLE bookmarks (id INTEGER PRIMARY KEY, url TEXT)")
    conn.execute("INSERT INTO bookmarks (url) VALUES ('https://example.org')")
    conn.commit()
    conn.close()
    return db


@pytest.mark.parametrize("command", [["validate"], ["explain"], ["lint"], ["plan"], ["apply"], ["validate", "--json"],
                                     ["explain", "--json"], ["lint", "--json"], ["plan", "--json"], ["apply", "--json"]],
                         ids=" ".join)
def test_under_the_fallback_every_command_that_opens_a_database_refuses_another_applications_file(
        runner, nowhere, command):
    db = _their_app(nowhere)
    before = db.read_bytes()
    result = runner.invoke(main, [*command, "--db", str(db)])
    assert result.exit_code == 2, result.output
    assert result.stdout == ""
    note, error = result.stderr.strip().splitlines()
    assert note.startswith(NOTE) and note.endswith("using the shipped 'abathur' declaration")
    assert error.startswith("error: database holds none of the tables of the shipped 'abathur' declaration (it has "
                            "bookmarks)") and "--schema" in error
    assert db.read_bytes() == before
    assert sorted(p.name for p in nowhere.iterdir()) == ["app.db"]  # no backup, no -wal, no report


def test_the_fallback_note_goes_to_stderr_and_json_stays_json(runner, nowhere):
    result = runner.invoke(main, ["plan", "--db", str(nowhere / "new.db"), "--json"])
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["fresh"] is True
    assert result.stderr.startswith(NOTE) and len(result.stderr.strip().splitlines()) == 1
    lint = runner.invoke(main, ["lint", "--json"])
    assert lint.exit_code == 0 and isinstance(json.loads(lint.stdout), list) and lint.stderr.startswith(NOTE)


def test_an_explicit_schema_or_a_project_says_nothing_and_is_not_guarded(runner, nowhere, project):  # noqa: F811
    assert runner.invoke(main, ["render"]).exit_code == 0
    result = runner.invoke(main, ["plan", "--db", str(project / "n.db")])
    assert result.exit_code == 0 and result.stderr == "", result.stderr
    explicit = runner.invoke(main, ["lint", "--schema", "abathur"])
    assert explicit.exit_code == 0 and "note:" not in explicit.stderr


def test_the_quick_start_in_this_checkout_uses_its_project_and_says_nothing(runner, tmp_path, monkeypatch):
    monkeypatch.chdir(ROOT)  # pyproject.toml here has [tool.schemagen]: the shipped declaration as a project
    db = tmp_path / "abathur.db"
    result = runner.invoke(main, ["apply", "--db", str(db)])
    assert result.exit_code == 0, result.output
    assert "note:" not in result.stderr and result.stdout.startswith("created %s" % db)
    assert "tasks" in _tables(db)


def test_database_in_a_users_project_uses_the_projects_declaration_and_logs_it(project, caplog):  # noqa: F811
    assert make_runner().invoke(main, ["render"]).exit_code == 0
    caplog.set_level(logging.INFO, logger="schema_dsl.database")
    db = Database(project / "data" / "x.db")
    assert "declaration notes/schema.py ([tool.schemagen] of %s)" % project in caplog.text
    asyncio.run(db.initialize())
    assert _tables(project / "data" / "x.db") == ["authors", "notes"]
    assert db.schema.name == "notes"


def test_database_under_the_fallback_warns_and_refuses_another_applications_file(nowhere, caplog):
    caplog.set_level(logging.INFO, logger="schema_dsl.database")
    db = _their_app(nowhere)
    before = db.read_bytes()
    database = Database(db)
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1 and "using the shipped 'abathur' declaration; pass schema= to name yours" in \
        warnings[0].getMessage()
    with pytest.raises(SchemagenError, match=r"none of the tables of the shipped 'abathur' declaration \(it has "
                                             r"bookmarks\): pass schema= \(a Schema or a SPEC\) to Database"):
        asyncio.run(database.initialize())
    assert db.read_bytes() == before
    new = nowhere / "new.db"
    asyncio.run(Database(new).initialize())  # a new file: the fallback still creates Abathur's tables
    assert "tasks" in _tables(new)
    caplog.clear()
    named = Database(nowhere / "named.db", schema="abathur")  # explicit: no warning, no guard
    assert not [r for r in caplog.records if r.levelno == logging.WARNING]
    assert named.schema.name == "abathur"


# --- the same guard on PostgreSQL ----------------------------------------------------------------------------------

from pg_cluster import pg_cluster, pg_url  # noqa: E402,F401 (fixtures)


def _pg_tables(url):
    import psycopg
    with psycopg.connect(url, autocommit=True) as conn:
        return sorted(r[0] for r in conn.execute("SELECT tablename FROM pg_tables WHERE schemaname = current_schema()"))


@pytest.mark.parametrize("command", [["validate"], ["explain"], ["lint"], ["plan"], ["apply"]], ids=" ".join)
def test_under_the_fallback_a_postgresql_database_of_another_application_is_refused(runner, nowhere, pg_url, command):
    import psycopg
    with psycopg.connect(pg_url, autocommit=True) as conn:
        conn.execute("CREATE TABLE bookmarks (id bigint PRIMARY KEY, url text)")
        conn.execute("INSERT INTO bookmarks VALUES (1, 'https://example.org')")
    result = runner.invoke(main, [*command, "--db", pg_url])
    assert result.exit_code == 2, result.output
    note, error = result.stderr.strip().splitlines()
    assert note.startswith(NOTE)
    assert error.startswith("error: database holds none of the tables of the shipped 'abathur' declaration (it has "
                            "bookmarks)")
    assert _pg_tables(pg_url) == ["bookmarks"]


def test_under_the_fallback_transfer_refuses_another_applications_source(runner, nowhere, pg_url):
    db = _their_app(nowhere)
    result = runner.invoke(main, ["transfer", "--from", str(db), "--to", pg_url])
    assert result.exit_code == 2, result.output
    assert "none of the tables of the shipped 'abathur' declaration (it has bookmarks)" in result.stderr
    assert _pg_tables(pg_url) == []


def test_pg_database_under_the_fallback_refuses_another_applications_database(nowhere, pg_url, caplog):
    import psycopg
    with psycopg.connect(pg_url, autocommit=True) as conn:
        conn.execute("CREATE TABLE bookmarks (id bigint PRIMARY KEY, url text)")
    caplog.set_level(logging.INFO, logger="schema_dsl.database")
    database = Database(pg_url)
    assert "using the shipped 'abathur' declaration; pass schema= to name yours" in caplog.text
    with pytest.raises(SchemagenError, match=r"none of the tables .* pass schema= \(a Schema or a SPEC\) to Database"):
        asyncio.run(database.initialize())
    assert _pg_tables(pg_url) == ["bookmarks"]
