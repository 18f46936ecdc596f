"""No output option writes over a database.

Not the database the command works on (by any path to the same file: a hard link, a symlinked folder, another
spelling, or the file apply is about to create), not any other existing SQLite file, not a file with a -wal or
-journal beside it, not a database's -wal. Each is refused before anything starts: exit 2, one line, every file
as it was. Each test failed before the fix (the output replaced the database, exit 0).
"""
from __future__ import annotations

import hashlib
import os
import sqlite3
from pathlib import Path

import pytest

from conftest import make_runner
from schema_dsl.cli import main
from schema_dsl.migrate.apply import apply


def run(*args):
    return make_runner().invoke(main, [str(a) for a in args], catch_exceptions=True)


def assert_refused(result, *words):
    """Exit 2 with one `error:` line on stderr, no traceback, naming each of words."""
    assert result.exit_code == 2, (result.exit_code, result.output, result.stderr, result.exception)
    assert isinstance(result.exception, SystemExit), result.exception
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    for word in words:
        assert word in lines[0], (word, lines[0])
    return lines[0]


def state(folder):
    """Every file under folder with the sha256 of its bytes."""
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(Path(folder).rglob("*")) if p.is_file() and not p.is_symlink()}


def other_app(path):
    conn = sqlite3.connect(str(path))
    conn.execute("CREATE TABLE notes (id INTEGER PRIMARY KEY, body TEXT)")
    conn.execute("INSERT INTO notes (body) VALUES ('keep me')")
    conn.commit()
    conn.close()
    return path


@pytest.fixture
def app(tmp_path):
    """app.db (applied), b.db (another application's database), hard.db (a hard link to app.db)."""
    apply(str(tmp_path / "app.db"))
    other_app(tmp_path / "b.db")
    os.link(tmp_path / "app.db", tmp_path / "hard.db")
    return tmp_path


@pytest.mark.parametrize("args, words", [
    (["inspect", "--db", "app.db", "--out", "app.db"], ["--out", "the database the command works on"]),
    (["apply", "--db", "app.db", "--report", "app.db"], ["--report", "the database the command works on"]),
    (["validate", "--db", "app.db", "--report", "app.db"], ["--report", "the database the command works on"]),
    (["plan", "--db", "app.db", "--sql", "app.db"], ["--sql", "the database the command works on"]),
    (["apply", "--db", "app.db", "--report", "b.db"], ["--report", "is an SQLite database"]),
    (["validate", "--db", "app.db", "--report", "b.db"], ["--report", "is an SQLite database"]),
    (["inspect", "--db", "app.db", "--out", "b.db"], ["--out", "is an SQLite database"]),
    (["plan", "--db", "app.db", "--sql", "b.db"], ["--sql", "is an SQLite database"]),
    # the same file by another path: a hard link, another spelling
    (["validate", "--db", "app.db", "--report", "hard.db"], ["--report", "the database the command works on"]),
    (["apply", "--db", "hard.db", "--report", "./sub/../app.db"], ["the database the command works on"]),
    (["inspect", "--db", "app.db", "--out", "app.db-wal"], ["-wal file of the database"]),
    (["validate", "--db", "app.db", "--report", "b.db-journal"], ["-journal file of the SQLite database"]),
], ids=["inspect-out-itself", "apply-report-itself", "validate-report-itself", "plan-sql-itself",
        "apply-report-other-db", "validate-report-other-db", "inspect-out-other-db", "plan-sql-other-db",
        "hard-link", "another-spelling", "its-wal", "another-dbs-journal"])
def test_an_output_path_that_names_a_database_is_refused(app, monkeypatch, args, words):
    (app / "sub").mkdir()
    monkeypatch.chdir(app)
    before = state(app)
    assert_refused(run(*args), *words, "refusing to write over it")
    assert state(app) == before
    conn = sqlite3.connect(str(app / "b.db"))
    assert conn.execute("SELECT body FROM notes").fetchall() == [("keep me",)]
    conn.close()


def test_the_database_apply_would_create_is_not_a_report_path(tmp_path, monkeypatch):
    # new.db does not exist yet: apply would create it, then write the report over it
    (tmp_path / "link").symlink_to(tmp_path, target_is_directory=True)
    monkeypatch.chdir(tmp_path)
    for report in ("new.db", "./new.db", str(tmp_path / "link" / "new.db")):
        assert_refused(run("apply", "--db", "new.db", "--report", report), "the database the command works on")
        assert sorted(os.listdir(tmp_path)) == ["link"]  # not even created


def test_a_file_with_a_journal_or_wal_beside_it_is_not_an_output(tmp_path):
    apply(str(tmp_path / "app.db"))
    for suffix in ("-journal", "-wal"):
        target = tmp_path / ("half%s.md" % suffix.replace("-", "_"))
        target.write_bytes(b"")  # a database being created: no header yet, its journal beside it
        Path(str(target) + suffix).write_bytes(b"\x00" * 512)
        before = state(tmp_path)
        assert_refused(run("validate", "--db", tmp_path / "app.db", "--report", target), "beside it")
        assert state(tmp_path) == before


def test_render_and_docs_never_replace_a_database_in_their_folder(tmp_path):
    out = tmp_path / "out"
    assert run("render", "--out", out).exit_code == 0
    db = other_app(tmp_path / "app.db")
    (out / "ddl-indexes.sql").unlink()
    os.link(db, out / "ddl-indexes.sql")  # the same file as app.db under a rendered file's name
    (out / "SCHEMA.md").unlink()
    other_app(out / "SCHEMA.md")
    before = state(tmp_path)
    assert_refused(run("render", "--out", out), "--out", "is an SQLite database")
    assert_refused(run("docs", "--out", out), "--out", "SCHEMA.md", "is an SQLite database")
    assert state(tmp_path) == before


def test_several_databases_a_report_in_the_folder_that_is_a_database(tmp_path):
    reports, other = tmp_path / "reports", tmp_path / "other"
    reports.mkdir()
    other.mkdir()
    apply(str(other / "a.db"))
    apply(str(tmp_path / "b.db"))
    # the report of other/a.db would be reports/a.db.md: an SQLite file there is refused
    other_app(reports / "a.db.md")
    before = state(tmp_path)
    for command in ("validate", "apply"):
        assert_refused(run(command, "--db", other / "a.db", "--db", tmp_path / "b.db", "--report", reports),
                       "a.db.md", "is an SQLite database")
        assert state(tmp_path) == before
    # a database apply is about to create under the report's name
    (reports / "a.db.md").unlink()
    before = state(tmp_path)
    assert_refused(run("apply", "--db", reports / "a.db.md", "--db", other / "a.db", "--report", reports),
                   "the database the command works on")
    assert state(tmp_path) == before and not (reports / "a.db.md").exists()


def test_a_plain_report_file_is_still_written_and_replaced(tmp_path):
    db = tmp_path / "app.db"
    apply(str(db))
    report = tmp_path / "r.md"
    report.write_text("old report\n")
    result = run("validate", "--db", db, "--report", report)
    assert result.exit_code == 0, result.output + result.stderr
    assert report.read_text().startswith("#")
