"""A default of the current time means on PostgreSQL what it means on SQLite: new rows get SQLite's text
'YYYY-MM-DD HH:MM:SS' in a TEXT column whatever the session's DateStyle, the same second in a TIMESTAMP column,
and what cannot mean the same is refused by name at render."""
from __future__ import annotations

import re
import sqlite3
import textwrap

import pytest

from pg_cluster import pg_cluster, pg_url  # noqa: F401 (fixtures)
from schema_dsl.compile.postgresql import render_files
from schema_dsl.errors import DeclarationError
from schema_dsl.model import Column, Expr, PrimaryKey, Schema, Table

SQLITE_TEXT = re.compile(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\Z")  # what datetime('now') and CURRENT_TIMESTAMP give

DECLARATION = """
from schema_dsl.model import Column, Expr, PrimaryKey, Schema, Table

SCHEMA = Schema("stamps", tables=[
    Table("notes", [
        Column("id", "INTEGER"),
        Column("body", "TEXT", not_null=True),
        Column("created", "TEXT", not_null=True, default=Expr("datetime('now')")),
        Column("stamped", "TEXT", default=Expr("CURRENT_TIMESTAMP")),
        Column("due", "TEXT", default=Expr("(datetime('now', '+1 day'))")),
        Column("at", "TIMESTAMP", not_null=True, default=Expr("CURRENT_TIMESTAMP")),
    ], primary_key=PrimaryKey(["id"])),
])
"""
TEXT_COLUMNS = ("created", "stamped", "due")


def _cli(runner, *args):
    from schema_dsl.cli import main
    return runner.invoke(main, list(args), catch_exceptions=False)


def _schema(column):
    return Schema("s", tables=[Table("t", [Column("id", "INTEGER"), column], primary_key=PrimaryKey(["id"]))])


def _default_of(schema, name):
    line = next(l for l in render_files(schema)["schema.sql"].splitlines() if '"%s"' % name in l)
    return line.split(" DEFAULT ", 1)[1].rstrip(",")


def test_a_time_default_on_text_is_rendered_in_sqlites_own_text_form():
    assert _default_of(_schema(Column("c", "TEXT", default=Expr("datetime('now')"))), "c") == \
        "to_char((now() at time zone 'utc'), 'YYYY-MM-DD HH24:MI:SS')"
    assert _default_of(_schema(Column("c", "TEXT", default=Expr("CURRENT_TIMESTAMP"))), "c") == \
        "to_char((now() at time zone 'utc'), 'YYYY-MM-DD HH24:MI:SS')"
    assert _default_of(_schema(Column("c", "TIMESTAMP", default=Expr("CURRENT_TIMESTAMP"))), "c") == \
        "date_trunc('second', (now() at time zone 'utc'))"


@pytest.mark.parametrize("column,expected", [
    (Column("c", "INTEGER", default=Expr("datetime('now')")), r"column 'c': default datetime\('now'\) cannot be "
                                                              r"translated \(the current time in a bigint column"),
    (Column("c", "TEXT", default=Expr("datetime('now') || 'Z'")), r"column 'c': default datetime\('now'\) \|\| 'Z' "
                                                                  r"cannot be translated \(the current time inside a "
                                                                  r"larger expression"),
    (Column("c", "DATE", default=Expr("CURRENT_TIMESTAMP")), r"column 'c': default CURRENT_TIMESTAMP cannot be "
                                                             r"translated \(the current time in a date column"),
])
def test_a_time_default_that_cannot_mean_the_same_is_refused_by_name(column, expected):
    with pytest.raises(DeclarationError, match=expected):
        render_files(_schema(column))


def test_julianday_now_is_left_as_it_was():
    assert "extract(epoch from (now() at time zone 'utc'))" in \
        _default_of(_schema(Column("c", "REAL", default=Expr("julianday('now')"))), "c")


def _sqlite_row(tmp_path, runner, spec):
    path = tmp_path / "s.db"
    assert _cli(runner, "apply", "--db", str(path), "--schema", spec).exit_code == 0
    conn = sqlite3.connect(path)
    conn.execute("INSERT INTO notes (id, body) VALUES (1, 'x')")
    return conn.execute("SELECT created, stamped, due, at FROM notes").fetchone()


def test_new_rows_get_sqlites_values_on_the_real_server_under_any_datestyle(runner, tmp_path, pg_url):
    import psycopg
    decl = tmp_path / "stamps.py"
    decl.write_text(textwrap.dedent(DECLARATION), encoding="utf-8")
    spec = "%s:SCHEMA" % decl
    lite = _sqlite_row(tmp_path, runner, spec)
    assert all(SQLITE_TEXT.match(v) for v in lite)   # the reference: SQLite's own form, in every column
    applied = _cli(runner, "apply", "--db", pg_url, "--schema", spec)
    assert applied.exit_code == 0, applied.output + applied.stderr
    for n, datestyle in enumerate(("ISO, MDY", "SQL, DMY", "German", "Postgres, YMD"), start=1):
        with psycopg.connect(pg_url, autocommit=True) as conn:
            conn.execute("SET DateStyle = '%s'" % datestyle)
            conn.execute("INSERT INTO notes (id, body) VALUES (%s, 'x')", (n,))
            created, stamped, due, at, at_text = conn.execute(
                "SELECT created, stamped, due, at, to_char(at, 'YYYY-MM-DD HH24:MI:SS.US') FROM notes WHERE id = %s",
                (n,)).fetchone()
        for name, value in zip(TEXT_COLUMNS, (created, stamped, due)):
            assert SQLITE_TEXT.match(value), "%s under DateStyle %s: %r" % (name, datestyle, value)
        assert at.microsecond == 0 and at_text.endswith(".000000")   # SQLite's CURRENT_TIMESTAMP is to the second
        assert due > created                                         # the modifier still applies
    validated = _cli(runner, "validate", "--db", pg_url, "--schema", spec)
    assert validated.exit_code == 0, validated.output
    plan = _cli(runner, "plan", "--db", pg_url, "--schema", spec)
    assert plan.output.startswith("up to date"), plan.output


def test_a_database_made_with_the_old_translation_gets_the_new_default_and_keeps_its_rows(runner, tmp_path, pg_url):
    import psycopg
    decl = tmp_path / "stamps.py"
    decl.write_text(textwrap.dedent(DECLARATION), encoding="utf-8")
    spec = "%s:SCHEMA" % decl
    with psycopg.connect(pg_url, autocommit=True) as conn:   # what earlier versions rendered for this declaration
        conn.execute("CREATE TABLE notes (id bigint GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY, body text NOT NULL, "
                     "created text NOT NULL DEFAULT (now() at time zone 'utc'), "
                     "stamped text DEFAULT (now() at time zone 'utc'), "
                     "due text DEFAULT ((now() at time zone 'utc') + interval '1 day'), "
                     "at timestamp(6) without time zone NOT NULL DEFAULT (now() at time zone 'utc'))")
        conn.execute("INSERT INTO notes (id, body) VALUES (1, 'old')")
        before = conn.execute("SELECT * FROM notes").fetchall()
    plan = _cli(runner, "plan", "--db", pg_url, "--schema", spec)
    assert plan.exit_code == 0, plan.output
    for column in ("created", "stamped", "due", "at"):
        assert "set the default of 'notes'.'%s'" % column in plan.output
    assert "4 steps, 4 statements" in plan.output
    applied = _cli(runner, "apply", "--db", pg_url, "--schema", spec)
    assert applied.exit_code == 0, applied.output + applied.stderr
    with psycopg.connect(pg_url, autocommit=True) as conn:
        assert conn.execute("SELECT * FROM notes").fetchall() == before      # a default changes no row
        conn.execute("INSERT INTO notes (id, body) VALUES (2, 'new')")
        assert SQLITE_TEXT.match(conn.execute("SELECT created FROM notes WHERE id = 2").fetchone()[0])
    assert _cli(runner, "validate", "--db", pg_url, "--schema", spec).exit_code == 0
