"""Shared fixtures: a freshly applied Abathur database and a connection with foreign keys ON."""
from __future__ import annotations

import inspect
import sqlite3
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

ROOT = Path(__file__).resolve().parent.parent
TESTS = Path(__file__).resolve().parent
GENERATED = ROOT / "generated"


def project_files():
    """What `schemagen render` writes in this checkout: the shipped declaration, with its origin (path, hash)."""
    from schema_dsl.abathur import SCHEMA
    from schema_dsl.compile.project import origin, resolve
    from schema_dsl.compile.render import render_files
    return render_files(SCHEMA, origin(resolve(None, cwd=ROOT)))

if str(TESTS) not in sys.path:  # tests/legacy.py is imported as `legacy`
    sys.path.insert(0, str(TESTS))


def connect(path):
    """A connection with PRAGMA foreign_keys = ON, checked (a check on any other connection means nothing)."""
    conn = sqlite3.connect(str(path), isolation_level=None)
    conn.execute("PRAGMA foreign_keys = ON")
    assert conn.execute("PRAGMA foreign_keys").fetchone()[0] == 1
    return conn


@pytest.fixture
def fresh_db(tmp_path):
    """Path of a database created by schema_dsl.migrate.apply.apply on a new file."""
    from schema_dsl.migrate.apply import apply

    path = tmp_path / "abathur.db"
    result = apply(str(path))
    assert result.applied and result.plan.fresh
    return path


@pytest.fixture
def db(fresh_db):
    """An open connection to fresh_db with foreign keys ON."""
    conn = connect(fresh_db)
    yield conn
    conn.close()


def make_runner():
    """A CliRunner that keeps stderr apart from stdout on click 8.1 and 8.2+."""
    if "mix_stderr" in inspect.signature(CliRunner.__init__).parameters:
        return CliRunner(mix_stderr=False)
    return CliRunner()


@pytest.fixture
def runner():
    return make_runner()


def build_db(path, schema, wal=True):
    """Create a database from a (possibly altered) declaration by running its rendered DDL files."""
    from schema_dsl.compile.render import render_files

    files = render_files(schema)
    conn = sqlite3.connect(str(path), isolation_level=None)
    try:
        if wal:
            conn.execute("PRAGMA journal_mode = WAL")
        conn.executescript("BEGIN;\n" + "".join(files[f] for f in (*schema.table_files, schema.index_file)) + "\nCOMMIT;")
    finally:
        conn.close()
    return path
