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
    """The user's schema: without schemagen's history, which an online apply keeps (a plain one only if declared)."""
    conn = sqlite3.connect(path)
    try:
        return sorted(conn.execute("SELECT type, name, tbl_name, sql FROM sqlite_master "
                                   "WHERE tbl_name <> '_schemagen_history'").fetchall())
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


def test_online_apply_keeps_a_history_though_the_declaration_has_none(tmp_path, small_batches):
    # issue 19: --online records the change in schemagen's history even when the declaration keeps none (before:
    # no table, nothing recorded); a file with nothing to change gets no history table from it
    path = make_db(tmp_path / "app.db")
    assert not AFTER.history
    assert online.apply_online(path, AFTER, backup=False).applied
    conn = sqlite3.connect(path)
    kinds = conn.execute("SELECT kind, steps FROM _schemagen_history").fetchall()
    conn.close()
    assert len(kinds) == 1 and "rebuild table 'items'" in kinds[0][1], kinds
    assert not online.apply_online(path, AFTER, backup=False).applied  # up to date: nothing more recorded
    assert rows_of(path, "_schemagen_history") and len(rows_of(path, "_schemagen_history")) == 1
    fresh = tmp_path / "done.db"
    apply(str(fresh), AFTER, backup=False)
    assert not online.apply_online(str(fresh), AFTER, backup=False).applied
    conn = sqlite3.connect(str(fresh))
    assert conn.execute("SELECT count(*) FROM sqlite_master WHERE name = '_schemagen_history'").fetchone() == (0,)
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


# --- data steps, the backup and SIGKILL at many points (issue 19 on SQLite) ------------------------------------

STEP_SQL = "UPDATE items SET note = note || '+' WHERE id <= %d" % ROWS  # only the rows make_db wrote


def with_step(schema, python=None):
    from schema_dsl.model import DataStep, evolve
    step = DataStep("mark_notes", python=python) if python else DataStep("mark_notes", sql=STEP_SQL)
    return evolve(schema, data_steps=[step])


@pytest.mark.parametrize("kind", ["sql", "python"])
def test_data_step_runs_once_in_its_own_recorded_transaction(tmp_path, small_batches, kind):
    """Before: the SQL step ran in the swap's transaction (and once more, rolled back, while planning); a python=
    step was called while planning, rolled back, and never run again, yet recorded as run."""
    path = make_db(tmp_path / "db.db")
    original = rows_of(path)
    calls = []

    def mark(conn):
        calls.append(1)
        conn.execute(STEP_SQL)
    seen = []

    def between(table, phase, n):
        if phase != "data":
            return
        other = sqlite3.connect(path)  # what another connection sees right after the step's own COMMIT
        seen.append((table, other.execute("SELECT note FROM items WHERE id = 1").fetchone()[0],
                     other.execute("SELECT kind, data_steps_run FROM _schemagen_history").fetchall()))
        other.close()
    result = online.apply_online(path, with_step(AFTER, mark if kind == "python" else None), backup=False,
                                 between=between)
    assert result.applied
    assert seen == [("run data step 'mark_notes'%s" % (" (python)" if kind == "python" else ""), "n0+",
                     [("data step", '["mark_notes"]')])]
    if kind == "python":
        assert calls == [1]
    assert rows_of(path) == [r[:3] + (r[3] + "+",) for r in original]  # once, not twice
    conn = sqlite3.connect(path)
    assert conn.execute("SELECT kind, data_steps_run FROM _schemagen_history ORDER BY id").fetchall() == [
        ("data step", '["mark_notes"]'), ("apply", "[]")]
    assert "CHECK (qty >= 0)" in conn.execute("SELECT sql FROM sqlite_master WHERE name = 'items'").fetchone()[0]
    conn.close()
    again = online.apply_online(path, with_step(AFTER, mark if kind == "python" else None), backup=False)
    assert not again.applied and rows_of(path)[0][3] == "n0+" and len(calls) <= 1


def test_plan_online_says_how_long_each_data_step_holds_the_lock(tmp_path):
    from schema_dsl.compile.target import target_for
    path = make_db(tmp_path / "db.db")
    _, steps = online.plan_online(path, target_for(with_step(AFTER), None))
    found = [s for s in steps if s["step"] == "run data step 'mark_notes'"]
    assert len(found) == 1
    assert "holds the write lock for the step's whole run" in found[0]["lock"]
    assert "changed %d rows when planned" % ROWS in found[0]["lock"]
    assert not online.leftovers(sqlite3.connect(path)) and rows_of(path)[0][3] == "n0"  # plan changed nothing


def test_failing_data_step_after_one_that_committed_is_exit_3_and_the_next_apply_finishes(tmp_path, small_batches):
    from schema_dsl.errors import ChangedThenFailed
    from schema_dsl.model import DataStep, evolve
    path = make_db(tmp_path / "db.db")
    bad = evolve(AFTER, data_steps=[DataStep("mark_notes", sql=STEP_SQL), DataStep("broken", sql="UPDATE nowhere SET x = 1")])
    with pytest.raises(ChangedThenFailed, match="broken.*no such table: nowhere.*'mark_notes'.* committed"):
        online.apply_online(path, bad, backup=False)
    assert rows_of(path)[0][3] == "n0+"  # the first step committed, once
    online.apply_online(path, evolve(bad, data_steps=[bad.data_steps[0], DataStep("broken", sql="SELECT 1")]),
                        backup=False)
    assert rows_of(path)[0][3] == "n0+"  # not run again


def test_online_backup_lets_a_writer_in_between_its_steps_and_keeps_the_snapshot(tmp_path, small_batches, monkeypatch):
    """WAL mode. Before: the backup was one step of the backup API, so nothing could be seen to write while it ran.
    Now it copies in steps over one read snapshot, and a writer with a 50 ms busy_timeout writes after each."""
    from schema_dsl.migrate import backup
    monkeypatch.setattr(backup, "CHUNK_BYTES", 4 * 4096)  # 4 pages a step
    path = make_db(tmp_path / "db.db")
    conn = sqlite3.connect(path)
    assert conn.execute("PRAGMA journal_mode = WAL").fetchone() == ("wal",)
    pages = conn.execute("PRAGMA page_count").fetchone()[0]
    conn.close()
    (tmp_path / "bk").mkdir()
    writer = sqlite3.connect(path, isolation_level=None, timeout=0.05)  # a short busy_timeout: 50 ms
    written = []

    def between(table, phase, n):
        if phase == "backup":
            writer.execute("INSERT INTO items (owner_id, qty, note) VALUES (1, 1, ?)", ("during backup %d" % n,))
            written.append(n)
    result = online.apply_online(path, AFTER, backup=True, backup_dir=str(tmp_path / "bk"), between=between)
    writer.close()
    assert pages >= 20 and len(written) >= pages // 4  # a write landed after every step, none waited 50 ms
    kept = sqlite3.connect(result.backup)
    assert kept.execute("SELECT count(*) FROM items").fetchone() == (ROWS,)  # the snapshot: none of those writes
    assert kept.execute("PRAGMA integrity_check").fetchone() == ("ok",)
    kept.close()
    assert len(rows_of(path)) == ROWS + len(written)


KILL_ANYWHERE = textwrap.dedent('''
    import os, signal, sys
    sys.path.insert(0, sys.argv[2])
    from decls import AFTER
    from schema_dsl.migrate import backup, online
    from schema_dsl.model import DataStep, evolve
    online.FIRST_BATCH = online.MAX_BATCH = 100
    backup.CHUNK_BYTES = 16 * 4096
    phase, at = sys.argv[3], int(sys.argv[4])

    def between(table, p, n):
        if p == phase and n == at:
            os.kill(os.getpid(), signal.SIGKILL)
    online.apply_online(sys.argv[1], evolve(AFTER, data_steps=[DataStep("mark_notes", sql=%r)]), backup=True,
                        backup_dir=os.path.join(sys.argv[2], "bk"), between=between)
''' % STEP_SQL)


@pytest.mark.parametrize("phase,at", [("backup", 2), ("data", 1), ("copy", 1), ("copy", 17), ("verify", 1),
                                      ("verify", 5), ("free", 1), ("free", 12)])
def test_sigkill_anywhere_then_plain_or_online_apply_ends_the_same(tmp_path, phase, at):
    """SIGKILL during the backup, right after the data step's commit, during the copy and the check, and after the
    swap while the old table is emptied: the application's writes after the kill go through, and the next apply,
    plain or online, ends in the same file as a plain apply without the kill (the data step run exactly once)."""
    (tmp_path / "decls.py").write_text(DECLS, encoding="utf-8")
    (tmp_path / "kill.py").write_text(KILL_ANYWHERE, encoding="utf-8")
    path = make_db(tmp_path / "db.db")
    reference = str(tmp_path / "reference.db")
    shutil.copy(path, reference)

    def app_writes(p):
        conn = app(p)
        conn.execute("INSERT INTO items (id, owner_id, qty, note) VALUES (80001, 2, 3, 'after kill')")
        conn.execute("UPDATE items SET qty = 7 WHERE id = 1")
        conn.execute("DELETE FROM items WHERE id = 2")
        conn.close()
    (tmp_path / "bk").mkdir()
    proc = subprocess.run([sys.executable, str(tmp_path / "kill.py"), path, str(tmp_path), phase, str(at)])
    assert proc.returncode == -signal.SIGKILL
    app_writes(path)  # the application keeps working, whatever the kill left
    app_writes(reference)
    apply(reference, with_step(AFTER), backup=False)
    expected = rows_of(reference)
    assert expected[0] == (1, 1, 7, "n0+") and expected[-1] == (80001, 2, 3, "after kill")
    other = str(tmp_path / "other.db")
    shutil.copy(path, other)
    apply(path, with_step(AFTER), backup=False)  # plain
    online.apply_online(other, with_step(AFTER), backup=False)  # online
    for p in (path, other):
        assert rows_of(p) == expected, p
        assert [r for r in schema_of(p) if r[1] != "_schemagen_history"] == [
            r for r in schema_of(reference) if r[1] != "_schemagen_history"]
        conn = sqlite3.connect(p)
        runs = [r[0] for r in conn.execute("SELECT data_steps_run FROM _schemagen_history")]
        assert sum(r.count("mark_notes") for r in runs) == 1  # recorded as run once
        assert conn.execute("PRAGMA integrity_check").fetchall() == [("ok",)]
        conn.close()


def test_index_dropped_and_created_again_under_its_name_is_there_after_an_online_apply(tmp_path):
    """Before: the new index ran before the copy (IF NOT EXISTS: a no-op, the old one had the name) and the drop
    ran in the swap, so the index was missing and the apply stopped with exit 3 after committing steps."""
    from schema_dsl.model import evolve
    path = make_db(tmp_path / "db.db")
    before = evolve(BEFORE, indexes=[Index("owners_name", "owners", ["name"], where="name IS NOT NULL")])
    after = evolve(AFTER, indexes=list(AFTER.indexes) + [Index("owners_name", "owners", ["name", "id"])])
    apply(path, before, backup=False)
    result = online.apply_online(path, after, backup=False)
    assert result.applied and result.structure is not None
    sql = dict(((t, n), s) for t, n, _, s in schema_of(path))[("index", "owners_name")]
    assert '"name", "id"' in sql and "WHERE" not in sql


def test_online_planning_writes_nothing_even_for_a_rename(tmp_path, monkeypatch):
    """A declared rename is planned by renaming in a savepoint; under --online the planning transaction is a read
    whose snapshot an application's commit makes stale, and the write then failed at once with 'database is
    locked' (before: exit 2 on a busy file). Now planning is query_only, and the rename is committed before it
    (the application then writes the new name)."""
    from schema_dsl.model import evolve
    path = make_db(tmp_path / "db.db")
    renamed = evolve(AFTER, tables=[evolve(t, columns=[evolve(c, name="remark", renamed_from="note")
                                                       if c.name == "note" else c for c in t.columns])
                                    if t.name == "items" else t for t in AFTER.tables])
    writer = app(path)
    assert writer.execute("PRAGMA journal_mode = WAL").fetchone() == ("wal",)  # a reader does not block a commit
    real = online.plan_for

    def plan_after_an_app_commit(conn, *args, **kw):
        conn.execute("SELECT count(*) FROM items").fetchone()  # the read transaction's snapshot starts here
        writer.execute("INSERT INTO items (owner_id, qty, remark) VALUES (1, 1, 'app')")  # and is stale now
        return real(conn, *args, **kw)
    monkeypatch.setattr(online, "plan_for", plan_after_an_app_commit)
    result = online.apply_online(path, renamed, backup=False)
    writer.close()
    assert result.applied
    conn = sqlite3.connect(path)
    assert conn.execute("SELECT remark FROM items WHERE id = ?", (ROWS + 1,)).fetchone() == ("app",)
    conn.close()


def test_new_index_on_a_big_table_is_built_by_a_copy_not_one_create_index(tmp_path, small_batches, monkeypatch):
    """Before: a new index on a table the plan does not rebuild was one CREATE INDEX, holding the write lock while
    it read the whole table (about 1 s at a million rows). Now that table is copied in batches into a shadow that
    has the index, and swapped like a rebuild: its rows, indexes, triggers and AUTOINCREMENT as a plain apply
    leaves them."""
    from schema_dsl.model import evolve
    monkeypatch.setattr(online, "INDEX_COPY_ROWS", 1000, raising=False)
    plain = make_db(tmp_path / "plain.db")
    on = str(tmp_path / "online.db")
    shutil.copy(plain, on)
    indexed = evolve(BEFORE, indexes=[Index("items_qty", "items", ["qty"])])
    writer = app(on)
    calls = []

    def between(table, phase, n):
        calls.append((table, phase, n))
        writer.execute("INSERT INTO items (owner_id, qty, note) VALUES (1, ?, 'app')", (n,))
    result = online.apply_online(on, indexed, backup=False, between=between)
    writer.close()
    assert result.applied and {("items", "copy"), ("_schemagen_old_items", "free")} <= {c[:2] for c in calls}
    assert "create index" not in result.online["longest_lock_step"]
    c = app(plain)
    for _, _, n in calls:
        c.execute("INSERT INTO items (owner_id, qty, note) VALUES (1, ?, 'app')", (n,))
    c.close()
    apply(plain, indexed, backup=False)
    assert schema_of(on) == schema_of(plain)
    assert rows_of(on) == rows_of(plain)
    assert rows_of(on, "audit") == rows_of(plain, "audit")  # the user's trigger kept firing, and is there
    conn = app(on)
    conn.execute("INSERT INTO items (owner_id, qty, note) VALUES (2, 2, 'later')")
    assert conn.execute("SELECT count(*) FROM audit").fetchone() == (len(calls) + 1,)  # the trigger fires
    assert conn.execute("SELECT seq FROM sqlite_sequence WHERE name = 'items'").fetchone() == (ROWS + len(calls) + 1,)
    assert conn.execute("PRAGMA integrity_check").fetchall() == [("ok",)]
    assert "USING INDEX items_qty" in " ".join(
        r[3] for r in conn.execute("EXPLAIN QUERY PLAN SELECT * FROM items WHERE qty = 5"))
    conn.close()


def tag_schemas(after_pk=("owner", "name")):
    from schema_dsl.model import evolve

    def tags(after):
        return Table("tags", columns=[Column("owner", "TEXT", collate="NOCASE"), Column("name", "TEXT"),
                                      Column("weight", "INTEGER", not_null=after), Column("note", "TEXT")],
                     primary_key=PrimaryKey(("owner", "name") if not after else after_pk), without_rowid=True,
                     checks=[Check("weight >= 0")] if after else [])
    return (Schema(name="tags", tables=[tags(False)]),
            Schema(name="tags", tables=[tags(True)], indexes=[Index("tags_weight", "tags", ["weight"])]))


def make_tags(path, rows=ROWS):
    before, _ = tag_schemas()
    apply(str(path), before, backup=False)
    conn = sqlite3.connect(str(path))
    conn.executemany("INSERT INTO tags VALUES (?, ?, ?, ?)",
                     [("Owner%d" % (i % 37), "tag-%05d" % i, i % 50, "n%d" % i) for i in range(rows)])
    conn.commit()
    conn.close()
    return str(path)


def test_without_rowid_table_is_rebuilt_online_by_primary_key_ranges(tmp_path, small_batches):
    """Before: refused ("--online rebuilds rowid tables only"). Now the sync triggers and the batches go by the
    primary key (composite, one column NOCASE): writes before and after the copy's position, key changes and
    deletes all end up as in a plain apply of the same writes."""
    before, after = tag_schemas()
    path = make_tags(tmp_path / "db.db")
    writes = []

    def between(table, phase, n):
        conn = app(path)
        n = len(writes) // 5 + 1  # a new number per call (copy, verify and free batches each count from 1)
        for sql, args in (("INSERT INTO tags VALUES (?, ?, 1, 'app')", ("owner%d" % (n % 37), "zz-%d" % n)),
                          ("INSERT INTO tags VALUES (?, ?, 2, 'app-early')", ("AAA", "a-%d" % n)),
                          ("UPDATE tags SET weight = weight + 100 WHERE name = ?", ("tag-%05d" % (n * 97 % ROWS),)),
                          ("UPDATE tags SET name = name || '-moved' WHERE name = ?", ("tag-%05d" % (n * 13 % ROWS),)),
                          ("DELETE FROM tags WHERE name = ?", ("tag-%05d" % (n * 31 % ROWS),))):
            conn.execute(sql, args)
            writes.append((sql, args))
        conn.close()
    result = online.apply_online(path, after, backup=False, between=between)
    assert result.applied and result.online["transactions"] > ROWS // 100
    replay = make_tags(tmp_path / "replay.db")
    conn = app(replay)
    for sql, args in writes:
        conn.execute(sql, args)
    conn.close()
    apply(replay, after, backup=False)
    assert schema_of(path) == schema_of(replay)
    tags = lambda p: sqlite3.connect(p).execute("SELECT * FROM tags ORDER BY owner, name").fetchall()
    assert tags(path) == tags(replay) and len(tags(path)) > ROWS
    conn = sqlite3.connect(path)
    assert conn.execute("PRAGMA integrity_check").fetchall() == [("ok",)]
    assert not online.leftovers(conn)
    conn.close()


def test_without_rowid_write_the_new_check_rejects_is_named_by_its_key(tmp_path, small_batches):
    _, after = tag_schemas()
    path = make_tags(tmp_path / "db.db")
    before = schema_of(path)
    conn = app(path)

    def between(table, phase, n):
        if phase == "copy" and n == 4:
            conn.execute("INSERT INTO tags VALUES ('Owner1', 'bad', -3, 'x')")
    with pytest.raises(online.OnlineRefused) as info:
        online.apply_online(path, after, backup=False, between=between)
    assert "(owner, name)=('Owner1', 'bad')" in str(info.value) and "CHECK constraint failed" in str(info.value)
    assert conn.execute("SELECT weight FROM tags WHERE name = 'bad'").fetchone() == (-3,)  # the write stands
    conn.close()
    assert schema_of(path) == before


def test_without_rowid_table_whose_primary_key_changes_is_refused_by_name(tmp_path):
    _, after = tag_schemas(after_pk=("name",))
    path = make_tags(tmp_path / "db.db")
    before = schema_of(path)
    with pytest.raises(online.OnlineRefused, match="table 'tags': --online copies a WITHOUT ROWID table by its "
                                                   "primary key.*owner, name before, name declared"):
        online.apply_online(path, after, backup=False)
    assert schema_of(path) == before


KILL_TAGS = textwrap.dedent('''
    import os, signal, sys
    sys.path.insert(0, sys.argv[2])
    sys.path.insert(0, sys.argv[5])
    from test_online import tag_schemas
    from schema_dsl.migrate import online
    online.FIRST_BATCH = online.MAX_BATCH = 100
    phase, at = sys.argv[3], int(sys.argv[4])

    def between(table, p, n):
        if p == phase and n == at:
            os.kill(os.getpid(), signal.SIGKILL)
    online.apply_online(sys.argv[1], tag_schemas()[1], backup=False, between=between)
''')


@pytest.mark.parametrize("phase,at", [("copy", 7), ("verify", 3), ("free", 2)])
def test_sigkill_during_a_without_rowid_rebuild_then_plain_or_online_apply_ends_the_same(tmp_path, phase, at):
    (tmp_path / "kill.py").write_text(KILL_TAGS, encoding="utf-8")
    _, after = tag_schemas()
    path = make_tags(tmp_path / "db.db")
    reference = str(tmp_path / "reference.db")
    shutil.copy(path, reference)
    proc = subprocess.run([sys.executable, str(tmp_path / "kill.py"), path, str(tmp_path), phase, str(at),
                           os.path.dirname(os.path.abspath(__file__))])
    assert proc.returncode == -signal.SIGKILL
    for p in (path, reference):  # the application keeps writing after the kill
        conn = app(p)
        conn.execute("INSERT INTO tags VALUES ('Owner3', 'after-kill', 5, 'x')")
        conn.execute("UPDATE tags SET name = 'renamed' WHERE name = 'tag-00010'")
        conn.close()
    apply(reference, after, backup=False)
    other = str(tmp_path / "other.db")
    shutil.copy(path, other)
    apply(path, after, backup=False)
    online.apply_online(other, after, backup=False)
    tags = lambda p: sqlite3.connect(p).execute("SELECT * FROM tags ORDER BY owner, name").fetchall()
    for p in (path, other):
        assert tags(p) == tags(reference) and schema_of(p) == schema_of(reference)


def test_index_removals_go_with_the_copied_table_or_after_the_swap_not_in_it(tmp_path, monkeypatch):
    """Before: a declared removal of an index ran in the swap: on a copied table it first built the index in the
    shadow and then dropped it, and either way the drop (which walks every page of the index: 200 ms at a million
    rows) held the swap's write lock. Now an index of a copied table goes with the old table (emptied in batches)
    and one of another table is dropped after the swap, in its own transaction."""
    from schema_dsl.migrate.apply import open_for_apply, plan_for
    from schema_dsl.compile.target import target_for
    from schema_dsl.model import evolve, removed
    monkeypatch.setattr(online, "INDEX_COPY_ROWS", 1000, raising=False)
    ixs = [Index("items_note", "items", ["note"]), Index("owners_name", "owners", ["name"])]
    path = make_db(tmp_path / "db.db")
    apply(path, evolve(BEFORE, indexes=ixs), backup=False)
    plain = str(tmp_path / "plain.db")
    shutil.copy(path, plain)
    gone = [removed("index", "items_note", "unused"), removed("index", "owners_name", "unused")]
    for after in (evolve(AFTER, removed=gone),  # items rebuilt
                  evolve(BEFORE, indexes=[Index("items_qty", "items", ["qty"])], removed=gone)):  # items copied
        conn, _ = open_for_apply(path, target_for(after, None).files)
        conn.execute("BEGIN")
        split = online.OnlinePlan(conn, plan_for(conn, target_for(after, None)))
        conn.execute("ROLLBACK")
        conn.close()
        assert not [s for s in split.swap if "drop index" in s.title]
        assert [s.title for s in split.after] == ["drop index 'owners_name'"]
        assert [name for name, *_ in split.tables[0].indexes if name == "items_note"] == []
    result = online.apply_online(path, evolve(AFTER, removed=gone), backup=False)
    apply(plain, evolve(AFTER, removed=gone), backup=False)
    assert result.applied and schema_of(path) == schema_of(plain) and rows_of(path) == rows_of(plain)


def test_the_free_window_after_each_batch_is_drawn_at_random(tmp_path, small_batches, monkeypatch):
    """Before: always 30 ms, so batch plus window made a fixed cycle of about 50 ms that a waiter retrying every
    100 ms (SQLite's busy handler) could hit on every retry: a reader waited 2.3 s in rollback-journal mode."""
    path = make_db(tmp_path / "db.db")
    assert sqlite3.connect(path).execute("PRAGMA journal_mode = WAL").fetchone() == ("wal",)
    pauses = []
    real_sleep = online.time.sleep
    monkeypatch.setattr(online.time, "sleep", lambda s: pauses.append(s) or real_sleep(s))
    online.apply_online(path, AFTER, backup=False)
    assert len(pauses) > ROWS // 100
    assert all(0.010 <= p <= 0.060 for p in pauses)
    assert len(set(pauses)) > len(pauses) * 0.9  # no fixed period
    assert max(pauses) - min(pauses) > 0.020


RUN_ONLINE = textwrap.dedent('''
    import sys, time
    sys.path.insert(0, sys.argv[2])
    from decls import AFTER
    from schema_dsl.migrate import online
    from schema_dsl.model import DataStep, evolve
    online.FIRST_BATCH = online.MAX_BATCH = 100
    print("started", flush=True)
    online.apply_online(sys.argv[1], evolve(AFTER, data_steps=[DataStep("mark_notes", sql=%r)]), backup=False)
''' % STEP_SQL)


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_sigkill_at_a_random_moment_then_plain_or_online_apply_ends_the_same(tmp_path, seed):
    """SIGKILL after a random delay (seeded) within the time an uninterrupted online apply takes here: wherever it
    lands, the application's writes go through and the next apply, plain or online, ends as a plain apply does."""
    import random
    import time
    (tmp_path / "decls.py").write_text(DECLS, encoding="utf-8")
    (tmp_path / "run.py").write_text(RUN_ONLINE, encoding="utf-8")
    path = make_db(tmp_path / "db.db")
    reference, timing = str(tmp_path / "reference.db"), str(tmp_path / "timing.db")
    shutil.copy(path, reference)
    shutil.copy(path, timing)

    def start(p):
        proc = subprocess.Popen([sys.executable, str(tmp_path / "run.py"), p, str(tmp_path)], stdout=subprocess.PIPE,
                                text=True)
        assert proc.stdout.readline().strip() == "started"  # imports done: the delay measures the apply itself
        return proc, time.monotonic()
    proc, t0 = start(timing)
    assert proc.wait() == 0
    full = time.monotonic() - t0
    proc, _ = start(path)
    time.sleep(random.Random(seed).uniform(0.0, full))
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    proc.stdout.close()
    for p in (path, reference):
        conn = app(p)
        conn.execute("INSERT INTO items (id, owner_id, qty, note) VALUES (80001, 2, 3, 'after kill')")
        conn.execute("UPDATE items SET qty = 7 WHERE id = 1")
        conn.close()
    apply(reference, with_step(AFTER), backup=False)
    other = str(tmp_path / "other.db")
    shutil.copy(path, other)
    apply(path, with_step(AFTER), backup=False)
    online.apply_online(other, with_step(AFTER), backup=False)
    for p in (path, other):
        assert rows_of(p) == rows_of(reference), p
        assert [r for r in schema_of(p) if r[1] != "_schemagen_history"] == [
            r for r in schema_of(reference) if r[1] != "_schemagen_history"]
        conn = sqlite3.connect(p)
        assert sum(r[0].count("mark_notes") for r in conn.execute("SELECT data_steps_run FROM _schemagen_history")) == 1
        conn.close()


# --- renames committed first (issue 19: "in one short step, and the plan says so") ----------------------------

RENAMED = textwrap.dedent('''
    from schema_dsl.model import evolve, fk

    def renamed(after):
        """after with 'owners' renamed to 'people' and items.note to items.remark (and items rebuilt by after)."""
        tables = []
        for t in after.tables:
            if t.name == "owners":
                t = evolve(t, name="people", renamed_from="owners")
            else:
                t = evolve(t, columns=[evolve(c, name="remark", renamed_from="note") if c.name == "note" else c
                                       for c in t.columns], foreign_keys=[fk("owner_id", "people", "id")])
            tables.append(t)
        return evolve(after, tables=tables)
''')
exec(RENAMED, ns)
RENAMED_AFTER = ns["renamed"](AFTER)


def test_rename_and_rebuild_online_ends_as_plain_apply(tmp_path, small_batches):
    plain = make_db(tmp_path / "plain.db")
    on = str(tmp_path / "online.db")
    shutil.copy(plain, on)
    apply(plain, RENAMED_AFTER, backup=False)
    result = online.apply_online(on, RENAMED_AFTER, backup=False)
    assert result.applied
    titles = [s.title for s in result.plan.steps]
    assert titles[:2] == ["rename table 'owners' to 'people'", "rename column 'items'.'note' to 'remark'"]
    assert all(s.executed for s in result.plan.steps[:2]) and any(t.startswith("rebuild") for t in titles)
    assert schema_of(on) == schema_of(plain)
    assert rows_of(on) == rows_of(plain) and rows_of(on, "people") == rows_of(plain, "people")
    conn = sqlite3.connect(on)
    assert conn.execute("PRAGMA integrity_check").fetchall() == [("ok",)]
    assert conn.execute("PRAGMA foreign_key_check").fetchall() == []
    conn.close()


def test_online_apply_with_a_rename_plans_without_a_scratch_copy(tmp_path, small_batches, monkeypatch):
    """Before: the read-only planning of a rename copied the whole file (dbfile.scratch_copy: 5-8 s of disk at
    855 MB, the application's writer waiting up to 389 ms). Now the renames commit first, in one short transaction
    of their own, and the rest is planned on the renamed file."""
    from schema_dsl.sqlite import dbfile

    def no_copy(*args, **kw):
        raise AssertionError("the whole file was copied to plan the rename")
    monkeypatch.setattr(dbfile, "scratch_copy", no_copy)
    path = make_db(tmp_path / "db.db")
    locks = []
    real = online._Lock.__enter__

    def enter(self):
        locks.append(self.label)
        return real(self)
    monkeypatch.setattr(online._Lock, "__enter__", enter)
    result = online.apply_online(path, RENAMED_AFTER, backup=False)
    assert result.applied
    # the first write transaction is the renames, together
    assert locks[0] == "rename table 'owners' to 'people', rename column 'items'.'note' to 'remark'"
    assert "remark" in [r[1] for r in sqlite3.connect(path).execute("PRAGMA table_info(items)")]


def test_rename_refused_by_sqlites_view_check_online_changes_nothing(tmp_path):
    """SQLite checks every view and trigger when it renames: a view the file already has broken stops the rename,
    which rolls back before anything committed (exit 2), as a plain apply refuses it."""
    (tmp_path / "decls.py").write_text(DECLS + RENAMED + "\nRENAMED_AFTER = renamed(AFTER)\n", encoding="utf-8")
    path = make_db(tmp_path / "db.db")
    conn = sqlite3.connect(path)
    conn.executescript("CREATE TABLE gone (x); CREATE VIEW broken_view AS SELECT x FROM gone; DROP TABLE gone;")
    conn.close()
    before = pathlib.Path(path).read_bytes()
    (tmp_path / "backups").mkdir()
    spec = str(tmp_path / "decls.py") + ":RENAMED_AFTER"
    result = make_runner().invoke(main, ["apply", "--online", "--db", path, "--schema", spec, "--no-validate",
                                         "--backup-dir", str(tmp_path / "backups")])
    assert result.exit_code == 2, result.output + result.stderr
    assert "nothing was changed" in result.stderr and "broken_view" in result.stderr
    assert "rename table 'owners' to 'people'" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
    assert pathlib.Path(path).read_bytes() == before
    assert not list((tmp_path / "backups").iterdir())  # the backup made before the rename is removed


def test_plan_online_says_the_renames_are_one_short_step_committed_first(tmp_path):
    (tmp_path / "decls.py").write_text(DECLS + RENAMED + "\nRENAMED_AFTER = renamed(AFTER)\n", encoding="utf-8")
    path = make_db(tmp_path / "db.db")
    result = make_runner().invoke(main, ["plan", "--online", "--db", path, "--schema",
                                         str(tmp_path / "decls.py") + ":RENAMED_AFTER"])
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    first = next(i for i, line in enumerate(lines) if "rename table 'owners' to 'people'" in line)
    assert "one short step, committed first" in " ".join(lines[first:first + 3])


KILL_RENAMED = textwrap.dedent('''
    import os, signal, sys
    sys.path.insert(0, sys.argv[2])
    from decls import RENAMED_AFTER
    from schema_dsl.migrate import online
    online.FIRST_BATCH = online.MAX_BATCH = 100

    def between(table, p, n):
        if p == sys.argv[3]:
            if sys.argv[4] == "kill":
                os.kill(os.getpid(), signal.SIGKILL)
            raise KeyboardInterrupt
    online.apply_online(sys.argv[1], RENAMED_AFTER, backup=False, between=between)
''')


@pytest.mark.parametrize("how", ["kill", "interrupt"])
def test_killed_after_the_renames_committed_then_apply_again_finishes(tmp_path, how):
    (tmp_path / "decls.py").write_text(DECLS + RENAMED + "\nRENAMED_AFTER = renamed(AFTER)\n", encoding="utf-8")
    (tmp_path / "kill.py").write_text(KILL_RENAMED, encoding="utf-8")
    path = make_db(tmp_path / "db.db")
    plain = str(tmp_path / "plain.db")
    shutil.copy(path, plain)
    apply(plain, RENAMED_AFTER, backup=False)
    proc = subprocess.run([sys.executable, str(tmp_path / "kill.py"), path, str(tmp_path), "rename", how],
                          capture_output=True)
    assert proc.returncode == (-signal.SIGKILL if how == "kill" else -signal.SIGINT), proc.stderr
    conn = app(path)  # the renames are committed, nothing else: the application writes the new names
    assert "remark" in [r[1] for r in conn.execute("PRAGMA table_info(items)")]
    assert conn.execute("SELECT 1 FROM sqlite_master WHERE name = 'items_qty'").fetchone() is None
    conn.close()
    result = make_runner().invoke(main, ["apply", "--online", "--db", path, "--no-backup", "--no-validate",
                                         "--schema", str(tmp_path / "decls.py") + ":RENAMED_AFTER"])
    assert result.exit_code == 0, result.output + result.stderr
    assert schema_of(path) == schema_of(plain)
    assert rows_of(path) == rows_of(plain)


def test_refusal_after_the_renames_committed_is_exit_3_naming_them(tmp_path):
    """A rename of a WITHOUT ROWID table's column with a primary key change --online refuses: the rename is
    committed first, so the refusal found after it is exit 3, saying what committed."""
    from schema_dsl.model import evolve
    _, after = tag_schemas(after_pk=("name",))
    after = evolve(after, tables=[evolve(t, columns=[evolve(c, name="remark", renamed_from="note")
                                                     if c.name == "note" else c for c in t.columns])
                                  for t in after.tables])
    path = make_tags(tmp_path / "db.db")
    with pytest.raises(online.ChangedThenFailed, match="--online copies a WITHOUT ROWID table.*the 1 step\\(s\\) "
                                                       "before it \\(rename column 'tags'.'note' to 'remark'\\) are "
                                                       "committed: fix the cause and apply again"):
        online.apply_online(path, after, backup=False)
    conn = sqlite3.connect(path)
    assert "remark" in [r[1] for r in conn.execute("PRAGMA table_info(tags)")]
    conn.close()


def test_history_of_an_online_apply_lists_the_renames_it_committed_first(tmp_path, small_batches):
    """The renames commit first, before the rest is planned (renames first); the record written at the swap lists
    them with the rest, as a plain apply's record does, and names the backup. Before: the record listed only what was
    planned after the renames (schemagen history showed one step fewer per rename)."""
    from schema_dsl.model import evolve
    plain = make_db(tmp_path / "plain.db")
    on = str(tmp_path / "online.db")
    shutil.copy(plain, on)
    apply(plain, evolve(RENAMED_AFTER, history=True), backup=False)
    (tmp_path / "backups").mkdir()
    result = online.apply_online(on, RENAMED_AFTER, backup_dir=str(tmp_path / "backups"))
    assert result.applied and result.backup
    out = make_runner().invoke(main, ["history", "--db", on, "--json"])
    assert out.exit_code == 0, out.output
    records = __import__("json").loads(out.output)
    assert len(records) == 1 and records[0]["kind"] == "apply"
    steps = records[0]["steps"]
    assert steps[:2] == ["rename table 'owners' to 'people'", "rename column 'items'.'note' to 'remark'"]
    assert any(s.startswith("rebuild table 'items'") for s in steps)
    assert records[0]["backup"] == result.backup
    plain_steps = make_runner().invoke(main, ["history", "--db", plain, "--json"])
    assert sorted(steps) == sorted(__import__("json").loads(plain_steps.output)[0]["steps"])


def _lock_labels(monkeypatch, seen=None):
    """Record (label, PRAGMA synchronous, PRAGMA wal_autocheckpoint) of every write transaction of an online apply as
    it begins."""
    seen = [] if seen is None else seen
    real = online._Lock.__enter__

    def enter(self):
        seen.append((self.label, self.conn.execute("PRAGMA synchronous").fetchone()[0],
                     self.conn.execute("PRAGMA wal_autocheckpoint").fetchone()[0]))
        return real(self)
    monkeypatch.setattr(online._Lock, "__enter__", enter)
    return seen


def test_a_leftover_shadow_is_emptied_in_batches_not_dropped_under_one_lock(tmp_path, small_batches, monkeypatch):
    """A shadow left by a killed apply holds up to every row of its table: the next online apply empties it in
    batches sized by time before dropping it (before: one DROP TABLE walking every page under the write lock)."""
    path = make_db(tmp_path / "db.db")
    conn = sqlite3.connect(path)
    conn.execute("CREATE TABLE _schemagen_new_items AS SELECT * FROM items")
    conn.execute("CREATE TRIGGER _schemagen_sync_del_items AFTER DELETE ON items BEGIN "
                 "DELETE FROM _schemagen_new_items WHERE rowid = OLD.rowid; END")
    conn.commit()
    conn.close()
    seen = _lock_labels(monkeypatch)
    reference = str(tmp_path / "reference.db")
    shutil.copy(make_db(tmp_path / "plain.db"), reference)
    apply(reference, AFTER, backup=False)
    result = online.apply_online(path, AFTER, backup=False)
    assert result.applied
    labels = [label for label, _, _ in seen]
    assert labels[0] == "drop the sync triggers of an interrupted online apply"
    emptied = [label for label in labels if label == "empty the leftover table '_schemagen_new_items'"]
    assert len(emptied) >= ROWS // 100  # at most 100 rows a batch here
    assert labels.index("drop the emptied table '_schemagen_new_items'") == len(emptied) + 1
    assert schema_of(path) == schema_of(reference) and rows_of(path) == rows_of(reference)


def test_batches_commit_without_fsync_in_wal_mode_only(tmp_path, small_batches, monkeypatch):
    """WAL mode: the copy and free batches commit at synchronous=NORMAL (no fsync under the write lock); the setup,
    the swap and the final drop keep the connection's own setting (FULL here), as does every transaction in
    rollback-journal mode. In WAL mode the apply's connection checkpoints after each batch itself, never inside a
    COMMIT (wal_autocheckpoint 0)."""
    for mode in ("wal", "delete"):
        path = make_db(tmp_path / ("%s.db" % mode))
        conn = sqlite3.connect(path)
        conn.execute("PRAGMA journal_mode = %s" % mode)
        conn.close()
        seen = _lock_labels(monkeypatch, [])
        assert online.apply_online(path, AFTER, backup=False).applied
        assert {auto for _, _, auto in seen} == ({0} if mode == "wal" else {1000}), (mode, seen)
        levels = {}
        for label, level, _ in seen:
            kind = "batch" if label.startswith(("copy batch", "free the old table")) else label
            levels.setdefault(kind, set()).add(level)
        assert levels["batch"] == ({1} if mode == "wal" else {2}), (mode, levels)
        assert levels["swap"] == {2} and levels["drop the emptied table '_schemagen_old_items'"] == {2}, levels


def test_planning_reads_statement_by_statement_in_rollback_journal_mode(tmp_path, monkeypatch):
    """In rollback-journal mode a read transaction holds every writer's COMMIT off (and the readers queued behind it):
    the online apply plans with each statement its own read; in WAL mode (readers never block a writer) in one."""
    seen = []
    real = online.plan_for

    def plan_for(conn, *args, **kw):
        seen.append(conn.in_transaction)
        return real(conn, *args, **kw)
    monkeypatch.setattr(online, "plan_for", plan_for)
    for mode in ("delete", "wal"):
        path = make_db(tmp_path / ("%s.db" % mode))
        conn = sqlite3.connect(path)
        conn.execute("PRAGMA journal_mode = %s" % mode)
        conn.close()
        assert online.apply_online(path, AFTER, backup=False).applied
    assert seen == [False, True]


def test_apply_online_json_reports_its_longest_write_transactions(tmp_path):
    (tmp_path / "decls.py").write_text(DECLS, encoding="utf-8")
    path = make_db(tmp_path / "db.db")
    result = make_runner().invoke(main, ["apply", "--online", "--json", "--no-backup", "--no-validate", "--db", path,
                                         "--schema", str(tmp_path / "decls.py") + ":AFTER"])
    assert result.exit_code == 0, result.output + result.stderr
    done = __import__("json").loads(result.output)["online"]
    locks = done["longest_locks"]
    assert 0 < len(locks) <= online.LONGEST_KEPT
    assert [r["held_ms"] for r in locks] == sorted((r["held_ms"] for r in locks), reverse=True)
    assert round(done["longest_lock"] * 1000, 1) == locks[0]["held_ms"] and done["longest_lock_step"] == locks[0]["step"]
    assert {"step", "began", "held_ms", "commit_ms", "cpu_ms", "runnable_ms"} <= set(locks[0])
    assert any(r["step"] == "plan (each statement its own read)" for r in done["longest_reads"])
    assert 0 < done["longest_own_lock"] <= done["longest_lock"]  # less the time the thread waited for a CPU


def test_an_index_dropped_from_a_big_table_goes_with_a_copy_not_one_drop_index(tmp_path, small_batches, monkeypatch):
    """A DROP INDEX walks every page of the index under the write lock (90-180 ms at 1M rows, measured): on a table
    of INDEX_COPY_ROWS rows or more that is not rebuilt anyway, the table is copied unchanged into a shadow without
    the index, swapped in, and the old table with the index emptied in batches. Before: one DROP INDEX after the
    swap. plan --online says so; the result is a plain apply's."""
    monkeypatch.setattr(online, "INDEX_COPY_ROWS", 1000)
    plain = make_db(tmp_path / "plain.db")  # items has the user's undeclared index user_note: --prune drops it
    on = str(tmp_path / "online.db")
    shutil.copy(plain, on)
    apply(plain, BEFORE, backup=False, prune="objects")
    statements = []
    real = online._Lock.__enter__

    def enter(self):
        self.conn.set_trace_callback(statements.append)
        return real(self)
    monkeypatch.setattr(online._Lock, "__enter__", enter)
    result = online.apply_online(on, BEFORE, backup=False, prune="objects")
    assert result.applied
    assert not [s for s in statements if s.upper().startswith("DROP INDEX")], statements
    assert sum(1 for s in statements if s.startswith("INSERT OR IGNORE INTO \"_schemagen_new_items\"")) >= ROWS // 100
    assert schema_of(on) == schema_of(plain) and rows_of(on) == rows_of(plain)
    assert "user_note" not in [r[1] for r in schema_of(on)]
    conn = sqlite3.connect(on)
    assert conn.execute("PRAGMA integrity_check").fetchall() == [("ok",)]
    conn.close()
    shutil.copy(make_db(tmp_path / "again.db"), on)
    plan, steps = online.plan_online(on, online.target_for(BEFORE, None), prune="objects")
    assert any("copied unchanged without index 'user_note'" in s["step"] for s in steps), steps


def test_rollback_journal_batches_are_sized_without_their_commits_fsyncs():
    """A rollback-journal COMMIT's two fsyncs cost about the same for any batch: sized with them, batches shrink
    toward the 50-row minimum once the disk's fsyncs take longer than the target; so the shortest COMMIT seen (floor)
    is left out. WAL batches are sized by their whole hold (their COMMIT writes their pages)."""
    class Batch:
        held, body = 0.100, 0.005  # 5 ms of work, then a COMMIT of 95 ms

    assert online._next_size(1000, Batch, wal=False, floor=0.090) == int(1000 * online.GROWTH) + 1
    assert online._next_size(1000, Batch, wal=True) == int(1000 * online.BATCH_SECONDS / 0.100)
    # the COMMIT beyond the shortest one seen grows with the batch (its journal): it counts
    assert online._next_size(1000, Batch, wal=False, floor=0.010) == int(1000 * online.BATCH_SECONDS_ROLLBACK / 0.090)


def test_the_free_window_after_a_batch_is_longer_than_a_waiters_retry_step(monkeypatch):
    """A waiter in SQLite's busy handler retries at most 25 ms apart until it has waited 103 ms: every window is
    longer, so it gets in right after the batch it met (before: windows from 15 ms, which its tries stepped over)."""
    import random
    slept = []
    monkeypatch.setattr(online, "_RANDOM", random.Random(1))
    monkeypatch.setattr(online.time, "sleep", slept.append)
    for _ in range(300):
        online._pause(wal=True)
        online._pause(wal=False)
    wal, rollback = slept[0::2], slept[1::2]
    assert min(wal) > 0.025 and min(rollback) > 0.025
    assert max(wal) > online.PAUSE_SECONDS and max(rollback) > online.PAUSE_SECONDS_ROLLBACK  # still drawn at random


def test_rollback_journal_check_leaves_the_lock_free_between_its_read_batches(tmp_path, small_batches, monkeypatch):
    """In rollback-journal mode an application writer's COMMIT waits out the check's read batch, holding every new
    reader off meanwhile (its PENDING lock): read batches back to back put that wait on nearly every commit of the
    application. Each read batch is now followed by a free window, as each write batch is (before: none). In WAL mode
    a read holds no writer or reader off: the check's batches run back to back there."""
    events = []
    monkeypatch.setattr(online, "_pause", lambda wal=True: events.append("pause"))
    for mode in ("delete", "wal"):
        path = make_db(tmp_path / ("%s.db" % mode))
        conn = sqlite3.connect(path)
        conn.execute("PRAGMA journal_mode = %s" % mode)
        conn.close()
        del events[:]
        assert online.apply_online(path, AFTER, backup=False,
                                   between=lambda table, phase, n: events.append(phase)).applied
        checks = [i for i, e in enumerate(events) if e == "verify"]
        assert len(checks) >= ROWS // 100
        paused = [events[i - 1] == "pause" for i in checks]
        assert all(paused) if mode == "delete" else not any(paused), (mode, events)


def test_apply_online_json_lists_its_batched_phases(tmp_path, small_batches):
    """online.phases: each batched phase (copy, check, the old table's emptying) with when it began, how long it took
    and its batches, in order, so that an application's long wait can be set beside what the apply was doing."""
    path = make_db(tmp_path / "db.db")
    assert sqlite3.connect(path).execute("PRAGMA journal_mode = WAL").fetchone() == ("wal",)
    result = online.apply_online(path, AFTER, backup=False)
    phases = result.online["phases"]
    assert [p["step"] for p in phases] == ["copy 'items'", "verify 'items'",
                                           "free the old table's pages ('_schemagen_old_items')"]
    assert all(p["batches"] >= ROWS // 100 and p["seconds"] > 0 for p in phases)
    assert [p["began"] for p in phases] == sorted(p["began"] for p in phases)
    assert result.online["longest_checkpoints"] and all(
        r["copied"] <= r["frames"] for r in result.online["longest_checkpoints"])


def test_no_write_transaction_of_the_apply_begins_right_after_another(tmp_path, small_batches, monkeypatch):
    """A writer in SQLite's busy handler gets in only through a free window: after each batch there is one, but the
    transactions of different steps ran back to back before (the shadow's setup and the first copy batch, the swap and
    the first batch emptying the old table), and a writer that met the swap waited through them all (80 ms measured,
    Milestone 2 at 1M tasks). Now every write transaction begins at least PAUSE_MIN after the one before ended."""
    path = make_db(tmp_path / "db.db")
    assert sqlite3.connect(path).execute("PRAGMA journal_mode = WAL").fetchone() == ("wal",)
    spans = []
    enter, exit_ = online._Lock.__enter__, online._Lock.__exit__

    def recording_enter(self):
        done = enter(self)
        spans.append([self.label, online.time.perf_counter(), None])
        return done

    def recording_exit(self, *exc):
        done = exit_(self, *exc)
        spans[-1][2] = online.time.perf_counter()
        return done
    monkeypatch.setattr(online._Lock, "__enter__", recording_enter)
    monkeypatch.setattr(online._Lock, "__exit__", recording_exit)
    with_tags = Schema(name="items", indexes=AFTER.indexes, tables=list(AFTER.tables) + [  # a step before the copy too
        Table("tags", columns=[Column("id", "INTEGER"), Column("tag", "TEXT")], primary_key=PrimaryKey(("id",)))])
    assert online.apply_online(path, with_tags, backup=False).applied
    labels = [s[0] for s in spans]
    assert "swap" in labels and any(label.startswith("create the shadow") for label in labels)
    gaps = [(a[0], b[0], b[1] - a[2]) for a, b in zip(spans, spans[1:])]
    assert all(gap >= online.PAUSE_MIN for _, _, gap in gaps), [g for g in gaps if g[2] < online.PAUSE_MIN]
