"""apply --online on SQLite (schema_dsl/migrate/online.py): shadow table, sync triggers, batches, short swap."""
from __future__ import annotations

import os
import pathlib
import shutil
import signal
import sqlite3
import subprocess
import sys
import textwrap

import pytest

from conftest import make_runner
from schema_dsl.cli import main
from schema_dsl.migrate import online
from schema_dsl.migrate.apply import apply
from schema_dsl.model import Check, Column, Index, PrimaryKey, Schema, Table, fk

DECLS = textwrap.dedent('''
    from schema_dsl.model import Check, Column, Index, PrimaryKey, Schema, Table, fk

    def tables(after):
        return [
            Table("owners", columns=[Column("id", "INTEGER"), Column("name", "TEXT")], primary_key=PrimaryKey(("id",))),
            Table("items", columns=[Column("id", "INTEGER"), Column("owner_id", "INTEGER"),
                                    Column("qty", "INTEGER", not_null=after), Column("note", "TEXT")],
                  primary_key=PrimaryKey(("id",), autoincrement=True),
                  checks=[Check("qty >= 0")] if after else [],
                  foreign_keys=[fk("owner_id", "owners", "id")] if after else []),
        ]

    BEFORE = Schema(name="items", tables=tables(False))
    AFTER = Schema(name="items", tables=tables(True), indexes=[Index("items_qty", "items", ["qty"])])
''')
ns = {}
exec(DECLS, ns)
BEFORE, AFTER = ns["BEFORE"], ns["AFTER"]
ROWS = 3000


@pytest.fixture
def small_batches(monkeypatch):
    """Batches of at most 100 rows, so that a 3000-row table takes many of them."""
    monkeypatch.setattr(online, "FIRST_BATCH", 100)
    monkeypatch.setattr(online, "MAX_BATCH", 100)


def make_db(path, rows=ROWS):
    apply(str(path), BEFORE, backup=False)
    conn = sqlite3.connect(str(path))
    conn.executemany("INSERT INTO owners (id, name) VALUES (?, ?)", [(i, "o%d" % i) for i in range(1, 11)])
    conn.executemany("INSERT INTO items (owner_id, qty, note) VALUES (?, ?, ?)",
                     [(i % 10 + 1, i, "n%d" % i) for i in range(rows)])
    conn.execute("CREATE INDEX user_note ON items (note)")  # the user's own index, view and trigger on the table
    conn.execute("CREATE VIEW user_view AS SELECT id, qty FROM items WHERE qty > 10")
    conn.execute("CREATE TABLE audit (item_id INTEGER)")
    conn.execute("CREATE TRIGGER user_audit AFTER INSERT ON items BEGIN INSERT INTO audit VALUES (NEW.id); END")
    conn.commit()
    conn.close()
    return str(path)


def schema_of(path):
    conn = sqlite3.connect(path)
    try:
        return sorted(conn.execute("SELECT type, name, tbl_name, sql FROM sqlite_master").fetchall())
    finally:
        conn.close()


def rows_of(path, table="items"):
    conn = sqlite3.connect(path)
    try:
        return conn.execute("SELECT * FROM %s ORDER BY rowid" % table).fetchall()
    finally:
        conn.close()


def app(path):
    """The application's connection: foreign keys on, autocommit."""
    conn = sqlite3.connect(path, isolation_level=None, timeout=5)
    conn.execute("PRAGMA foreign_keys = ON")
    return conn


def test_online_result_equals_plain_apply(tmp_path, small_batches):
    plain = make_db(tmp_path / "plain.db")
    on = str(tmp_path / "online.db")
    shutil.copy(plain, on)
    apply(plain, AFTER, backup=False)
    result = online.apply_online(on, AFTER, backup=False)
    assert result.applied and result.online["transactions"] > ROWS // 100  # copied in many short transactions
    assert schema_of(on) == schema_of(plain)
    assert rows_of(on) == rows_of(plain)
    conn = sqlite3.connect(on)
    assert conn.execute("SELECT seq FROM sqlite_sequence WHERE name = 'items'").fetchone() == (ROWS,)
    assert conn.execute("PRAGMA integrity_check").fetchall() == [("ok",)]
    assert conn.execute("PRAGMA foreign_key_check").fetchall() == []
    conn.close()


def test_writes_between_batches_are_all_in_the_result(tmp_path, small_batches):
    path = make_db(tmp_path / "db.db")
    conn = app(path)
    calls = []

    def between(table, phase, n):
        calls.append((table, phase, n))
        conn.execute("INSERT INTO items (owner_id, qty, note) VALUES (1, ?, ?)", (n, "%s-%d" % (phase, n)))
        conn.execute("UPDATE items SET note = 'updated' WHERE id = ?", (n * 17,))  # rows copied and not yet copied
        conn.execute("DELETE FROM items WHERE id = ?", (n * 29 + 1,))
    online.apply_online(path, AFTER, backup=False, between=between)
    assert len([c for c in calls if c[1] == "copy"]) >= ROWS // 100
    expected = [r for r in rows_of(path)]  # what the application sees now ...
    conn.close()
    # ... equals what it wrote: replay the same writes on a plain copy of the original rows
    replay = make_db(tmp_path / "replay.db")
    c = app(replay)
    for _, phase, n in calls:
        c.execute("INSERT INTO items (owner_id, qty, note) VALUES (1, ?, ?)", (n, "%s-%d" % (phase, n)))
        c.execute("UPDATE items SET note = 'updated' WHERE id = ?", (n * 17,))
        c.execute("DELETE FROM items WHERE id = ?", (n * 29 + 1,))
    c.close()
    assert expected == rows_of(replay)
    assert len(expected) > ROWS  # the inserts outnumber the deletes: every one is there
    assert "CHECK (qty >= 0)" in dict(((t, n), s) for t, n, _, s in schema_of(path))[("table", "items")]


def test_app_write_the_new_check_rejects_succeeds_and_stops_the_apply(tmp_path, small_batches):
    path = make_db(tmp_path / "db.db")
    before = schema_of(path)
    conn = app(path)

    def between(table, phase, n):
        if phase == "copy" and n == 3:
            conn.execute("INSERT INTO items (id, owner_id, qty, note) VALUES (90001, 1, -5, 'bad')")
    with pytest.raises(online.OnlineRefused) as info:
        online.apply_online(path, AFTER, backup=False, between=between)
    message = str(info.value)
    assert "rowid=90001" in message and "CHECK constraint failed" in message and "before the swap" in message
    assert conn.execute("SELECT qty FROM items WHERE id = 90001").fetchone() == (-5,)  # the app's write stands
    conn.close()
    assert schema_of(path) == before  # nothing changed, no shadow object left
    assert len(rows_of(path)) == ROWS + 1


def test_app_write_breaking_the_new_foreign_key_succeeds_and_is_named(tmp_path, small_batches):
    path = make_db(tmp_path / "db.db")
    conn = app(path)

    def between(table, phase, n):
        if phase == "copy" and n == 2:  # owner 77 does not exist; the old table has no foreign key yet
            conn.execute("INSERT INTO items (id, owner_id, qty, note) VALUES (90002, 77, 1, 'orphan')")
    with pytest.raises(online.OnlineRefused, match="rowid=90002.*foreign key"):
        online.apply_online(path, AFTER, backup=False, between=between)
    assert conn.execute("SELECT owner_id FROM items WHERE id = 90002").fetchone() == (77,)
    assert not online.leftovers(conn)
    conn.close()


KILLER = textwrap.dedent('''
    import os, signal, sys
    sys.path.insert(0, sys.argv[2])
    from decls import AFTER
    from schema_dsl.migrate import online
    online.FIRST_BATCH = online.MAX_BATCH = 100
    phase, at = sys.argv[3], int(sys.argv[4])

    def between(table, p, n):
        if p == phase and n == at:
            os.kill(os.getpid(), signal.SIGKILL)
    online.apply_online(sys.argv[1], AFTER, backup=False, between=between)
''')


@pytest.mark.parametrize("phase,at", [("copy", 5), ("verify", 2)])
def test_sigkill_midway_leaves_a_working_file_the_next_apply_finishes(tmp_path, phase, at):
    (tmp_path / "decls.py").write_text(DECLS, encoding="utf-8")
    (tmp_path / "kill.py").write_text(KILLER, encoding="utf-8")
    path = make_db(tmp_path / "db.db")
    original = rows_of(path)
    proc = subprocess.run([sys.executable, str(tmp_path / "kill.py"), path, str(tmp_path), phase, str(at)])
    assert proc.returncode == -signal.SIGKILL
    conn = app(path)
    left = online.leftovers(conn)
    assert {name for _, name, _ in left} >= {"_schemagen_new_items", "_schemagen_sync_ins_items"}
    # the application keeps working: its writes go through the sync triggers without error
    conn.execute("INSERT INTO items (id, owner_id, qty, note) VALUES (80001, 2, 3, 'after kill')")
    conn.execute("UPDATE items SET qty = 7 WHERE id = 1")
    conn.close()
    # validate reports the leftovers; inspect's structure does not see them as the user's
    runner = make_runner()
    result = runner.invoke(main, ["validate", "--db", path, "--schema", str(tmp_path / "decls.py") + ":BEFORE"])
    assert result.exit_code == 1 and "leftover of an interrupted online apply" in result.output
    from schema_dsl.sqlite import structure
    c = sqlite3.connect(path)
    assert not [n for n in structure.read_structure(c)["tables"] if n.startswith("_schemagen_")]
    c.close()
    expected = [(1, 1, 7, "n0")] + original[1:] + [(80001, 2, 3, "after kill")]
    other = str(tmp_path / "other.db")
    shutil.copy(path, other)
    apply(path, AFTER, backup=False)  # plain
    online.apply_online(other, AFTER, backup=False)  # online
    for p in (path, other):
        assert rows_of(p) == expected
        assert not [r for r in schema_of(p) if r[1].startswith("_schemagen_")]
    assert schema_of(path) == schema_of(other)


def test_plain_apply_keeps_one_transaction(tmp_path):
    path = make_db(tmp_path / "db.db")
    seen = []

    def progress(number, step, stmt):
        conn = sqlite3.connect(path, timeout=0)
        try:
            conn.execute("BEGIN IMMEDIATE")
            seen.append("free")
        except sqlite3.OperationalError:
            seen.append("locked")
        finally:
            conn.close()
    apply(path, AFTER, backup=False, progress=progress)
    assert seen and set(seen) == {"locked"}


def test_plan_sql_online_is_refused_in_one_line(tmp_path):
    """An online apply is many transactions run and retried by schemagen: there is no one script to write."""
    (tmp_path / "decls.py").write_text(DECLS, encoding="utf-8")
    path = pathlib.Path(make_db(tmp_path / "db.db"))
    before = path.read_bytes()
    result = make_runner().invoke(main, ["plan", "--online", "--sql", "--db", str(path),
                                         "--schema", str(tmp_path / "decls.py") + ":AFTER"])
    assert result.exit_code == 2, result.output
    assert result.stderr.strip().splitlines() == [
        "error: plan --sql --online: an online migration is many transactions run and retried by schemagen, not one "
        "script; use plan --online to see its steps"]
    assert path.read_bytes() == before


def test_cli_plan_online_names_the_locks_and_apply_online_applies(tmp_path):
    (tmp_path / "decls.py").write_text(DECLS, encoding="utf-8")
    path = make_db(tmp_path / "db.db")
    runner = make_runner()
    spec = str(tmp_path / "decls.py") + ":AFTER"
    result = runner.invoke(main, ["plan", "--online", "--db", path, "--schema", spec])
    assert result.exit_code == 0, result.output
    assert "copy %d rows of 'items'" % ROWS in result.output and "write lock: batches of about" in result.output
    assert "swap 'items'" in result.output and "empty the old table" in result.output
    assert schema_of(path) == schema_of(path) and not online.leftovers(sqlite3.connect(path))
    result = runner.invoke(main, ["apply", "--online", "--no-backup", "--no-validate", "--db", path, "--schema", spec])
    assert result.exit_code == 0, result.output + result.stderr
    assert ("index", "items_qty") in {(t, n) for t, n, _, _ in schema_of(path)}
    assert "online: " in result.output and "the longest held the write lock" in result.output


@pytest.mark.parametrize("shape", __import__("legacy").SHAPES)
def test_initialize_online_migrates_each_old_shape_as_plain_apply_does(tmp_path, shape, small_batches):
    import asyncio
    import legacy
    from schema_dsl.database import Database
    plain = str(tmp_path / "plain.db")
    legacy.create(plain, shape, tasks=300)
    on = str(tmp_path / "online.db")
    shutil.copy(plain, on)
    apply(plain, backup=False)
    result = asyncio.run(Database(on, backup=False).initialize(online=True))
    assert result.applied and hasattr(result, "online")
    assert schema_of(on) == schema_of(plain)
    for (kind, table, _, _) in schema_of(plain):
        if kind == "table":
            assert rows_of(on, '"%s"' % table) == rows_of(plain, '"%s"' % table), table
