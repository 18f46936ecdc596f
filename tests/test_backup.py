"""Backups, restore and the damaged-file check before apply writes."""
from __future__ import annotations

import errno
import json
import os
import shutil
import sqlite3
import stat
import subprocess
import sys
from pathlib import Path

import pytest

import legacy
from conftest import ROOT, make_runner
from schema_dsl.cli import main
from schema_dsl.errors import ApplyError, DatabaseFileError, UnsafeMigrationError
from schema_dsl.migrate import apply as apply_mod
from schema_dsl.migrate import backup as backup_mod
from schema_dsl.migrate.apply import apply
from schema_dsl.migrate.backup import list_backups, make_backup, restore

TASKS = 300


@pytest.fixture(scope="module")
def retrofitted(tmp_path_factory):
    """A retrofitted-shape file: its migration rebuilds tasks (copies every row) and adds columns elsewhere."""
    return legacy.create(str(tmp_path_factory.mktemp("src") / "retro.db"), "retrofitted", tasks=TASKS)


def copy(src, dst):
    shutil.copy(src, dst)
    return str(dst)


def leftovers(folder):
    """Every file that looks like a backup, a backup's record or a temporary backup, in folder."""
    return sorted(p.name for p in Path(folder).iterdir() if ".backup-" in p.name)


def made(*backups):
    """What leftovers shows for these backups: each with its record (which database it was made from)."""
    return sorted(n for b in backups for n in (Path(b).name, Path(b).name + ".json"))


def sqlite_file(path, value=0):
    """A small SQLite file at path (a backup name needs an SQLite file to be a backup)."""
    conn = sqlite3.connect(str(path))
    conn.execute("CREATE TABLE t (v)")
    conn.execute("INSERT INTO t VALUES (?)", (value,))
    conn.commit()
    conn.close()
    return str(path)


def damage_table(path, table):
    """Lower the cell count of one leaf page of table: reads silently skip its rows, quick_check sees it."""
    conn = sqlite3.connect(path)
    size = conn.execute("PRAGMA page_size").fetchone()[0]
    leaves = [r[0] for r in conn.execute(
        "SELECT pageno FROM dbstat WHERE name = ? AND pagetype = 'leaf' ORDER BY pageno", (table,))]
    conn.close()
    with open(path, "r+b") as fh:
        fh.seek((leaves[1] - 1) * size + 3)
        fh.write(b"\x00\x01")
    conn = sqlite3.connect(path)
    assert conn.execute("PRAGMA quick_check(%s)" % table).fetchone()[0] != "ok"
    conn.close()


# --- item 1: a damaged file is refused before anything is written ----------------------------------

def test_damaged_table_the_plan_rebuilds_is_refused_unchanged(retrofitted, tmp_path):
    path = copy(retrofitted, tmp_path / "db.sqlite")
    damage_table(path, "tasks")
    data = Path(path).read_bytes()
    out = make_runner().invoke(main, ["apply", "--db", path])
    assert out.exit_code == 2, out.output
    err = out.stderr.strip()
    assert "\n" not in err and err.startswith("error: ")
    assert "table 'tasks' is damaged (PRAGMA quick_check: Fragmentation of" in err and "nothing was changed" in err
    assert "OK" not in out.output and "migrated" not in out.output
    assert Path(path).read_bytes() == data
    assert leftovers(tmp_path) == []


def test_check_data_checks_the_whole_file_before_writing(retrofitted, tmp_path):
    # agents is only given a new column (no rows copied): the default check does not read it, --check-data does
    path = copy(retrofitted, tmp_path / "db.sqlite")
    damage_table(path, "agents")
    data = Path(path).read_bytes()
    out = make_runner().invoke(main, ["apply", "--db", path, "--check-data"])
    assert out.exit_code == 2, out.output
    assert "the file is damaged (PRAGMA quick_check:" in out.stderr
    assert Path(path).read_bytes() == data
    assert leftovers(tmp_path) == []


def test_sound_file_migrates_with_the_check_on(retrofitted, tmp_path):
    path = copy(retrofitted, tmp_path / "db.sqlite")
    result = apply(path, check_data=True)
    assert result.applied and result.backup
    conn = sqlite3.connect(path)
    assert conn.execute("SELECT count(*) FROM tasks").fetchone()[0] == TASKS
    conn.close()


# --- item 4: backups --------------------------------------------------------------------------------

@pytest.mark.parametrize("mode", [0o600, 0o640])
def test_backup_has_the_database_files_mode(retrofitted, tmp_path, mode):
    path = copy(retrofitted, tmp_path / "db.sqlite")
    os.chmod(path, mode)
    result = apply(path)
    assert stat.S_IMODE(os.stat(result.backup).st_mode) == mode
    assert Path(result.backup).name.startswith("db.sqlite.backup-")
    conn = sqlite3.connect(result.backup)
    assert conn.execute("SELECT count(*) FROM tasks").fetchone()[0] == TASKS
    conn.close()
    assert leftovers(tmp_path) == made(result.backup)  # no temporary file, no journal


def _interrupting(exc, monkeypatch):
    """Copy in small chunks and raise exc at the third."""
    calls = []

    def after_chunk(done, total, progress):
        calls.append(done)
        if len(calls) == 3:
            raise exc
    monkeypatch.setattr(backup_mod, "CHUNK_BYTES", 8192)
    monkeypatch.setattr(backup_mod, "_after_chunk", after_chunk)
    return calls


@pytest.mark.parametrize("exc", [KeyboardInterrupt(), OSError(errno.ENOSPC, "No space left on device")])
def test_interrupted_backup_leaves_no_file_and_nothing_changed(retrofitted, tmp_path, monkeypatch, exc):
    path = copy(retrofitted, tmp_path / "db.sqlite")
    data = Path(path).read_bytes()
    calls = _interrupting(exc, monkeypatch)
    expected = KeyboardInterrupt if isinstance(exc, KeyboardInterrupt) else DatabaseFileError
    with pytest.raises(expected) as info:
        apply(path)
    if expected is DatabaseFileError:
        assert "backup to %r failed (No space left on device); nothing was changed" % str(tmp_path) in str(info.value)
    assert leftovers(tmp_path) == []
    assert not [p for p in tmp_path.iterdir() if p.name.endswith("-journal")]
    assert Path(path).read_bytes() == data and len(calls) == 3


def test_backup_api_interrupted_leaves_nothing(retrofitted, tmp_path, monkeypatch):
    path = copy(retrofitted, tmp_path / "db.sqlite")
    calls = _interrupting(KeyboardInterrupt(), monkeypatch)
    with pytest.raises(KeyboardInterrupt):
        make_backup(path)  # no write lock held: the online backup API, from a second connection
    assert len(calls) == 3 and leftovers(tmp_path) == []


def test_backup_under_the_write_lock_holds_what_is_still_in_the_wal(tmp_path):
    path = str(tmp_path / "db.sqlite")
    writer = sqlite3.connect(path, isolation_level=None)
    writer.execute("PRAGMA journal_mode = WAL")
    writer.execute("PRAGMA wal_autocheckpoint = 0")
    writer.execute("CREATE TABLE t (v INTEGER)")
    writer.executemany("INSERT INTO t VALUES (?)", [(v,) for v in range(5000)])
    assert os.path.getsize(path + "-wal") > 0  # committed rows that only the -wal holds
    holder = sqlite3.connect(path, isolation_level=None)
    holder.execute("BEGIN IMMEDIATE")
    try:
        saved = make_backup(path, locked=holder)
    finally:
        holder.execute("ROLLBACK")
        holder.close()
    assert os.path.getsize(path + "-wal") > 0  # the live file was not checkpointed
    writer.close()
    assert leftovers(tmp_path) == made(saved)
    conn = sqlite3.connect("file:%s?mode=ro&immutable=1" % saved, uri=True)
    assert conn.execute("SELECT count(*), sum(v) FROM t").fetchone() == (5000, sum(range(5000)))
    assert conn.execute("PRAGMA quick_check").fetchone()[0] == "ok"
    conn.close()


def _other_process_can_write(path):
    """Whether another process gets the write lock of path at once (BEGIN IMMEDIATE, no wait) and commits."""
    code = ("import sqlite3, sys\n"
            "c = sqlite3.connect(sys.argv[1], timeout=0, isolation_level=None)\n"
            "try:\n"
            "    c.execute('BEGIN IMMEDIATE'); c.execute('INSERT INTO t VALUES (-1)'); c.execute('COMMIT')\n"
            "except sqlite3.OperationalError as exc:\n"
            "    sys.exit('locked' if 'locked' in str(exc) else str(exc))\n")
    done = subprocess.run([sys.executable, "-c", code, path], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0 or done.stderr.strip() == "locked", done.stderr
    return done.returncode == 0


@pytest.mark.parametrize("journal", ["DELETE", "WAL"])
def test_the_backup_under_the_write_lock_keeps_that_lock(tmp_path, journal):
    # before: the copy opened and closed the database file in the process that holds the write lock; closing
    # any descriptor of a file drops every POSIX lock the process holds on it, SQLite's included. In
    # rollback-journal mode another process then wrote while apply went on in its transaction: that write was
    # lost at apply's COMMIT ("disk I/O error", a traceback) or both applies ran the same data step
    path = str(tmp_path / "db.sqlite")
    setup = sqlite3.connect(path, isolation_level=None)
    setup.execute("PRAGMA journal_mode = %s" % journal)
    setup.executescript("CREATE TABLE t (v INTEGER); INSERT INTO t VALUES (1);")
    setup.close()
    holder = sqlite3.connect(path, isolation_level=None)
    holder.execute("BEGIN IMMEDIATE")
    try:
        assert not _other_process_can_write(path)
        saved = make_backup(path, locked=holder)
        assert not _other_process_can_write(path)
        saved_again = make_backup(path, locked=holder)  # a second backup of the same file in this process
        assert not _other_process_can_write(path)
        holder.execute("INSERT INTO t VALUES (2)")
    finally:
        holder.execute("COMMIT")
        holder.close()
    assert _other_process_can_write(path)
    conn = sqlite3.connect(path)
    assert conn.execute("SELECT v FROM t ORDER BY v").fetchall() == [(-1,), (1,), (2,)]
    conn.close()
    for copy_ in (saved, saved_again):
        conn = sqlite3.connect("file:%s?mode=ro&immutable=1" % copy_, uri=True)
        assert conn.execute("SELECT v FROM t").fetchall() == [(1,)]
        conn.close()


def test_no_other_process_writes_while_apply_runs_its_data_step_after_the_backup(tmp_path):
    # the end-to-end case of the test above: apply makes its backup, then runs a data step; a writer in another
    # process must wait for apply's COMMIT instead of writing in the middle of it (its row lost, a traceback)
    from schema_dsl.model import Column, DataStep, PrimaryKey, Schema, Table
    path = str(tmp_path / "app.db")
    t = Table("t", [Column("id", "INTEGER"), Column("v", "INTEGER")], PrimaryKey(["id"]))
    apply(path, Schema("app", tables=[t]), backup=False)
    conn = sqlite3.connect(path)
    conn.execute("INSERT INTO t VALUES (1, 1)")
    conn.commit()
    conn.close()
    seen = []
    step = DataStep("probe", python=lambda c: seen.append(_other_process_can_write(path)))
    t2 = Table("t", [Column("id", "INTEGER"), Column("v", "INTEGER"), Column("w", "INTEGER")], PrimaryKey(["id"]))
    result = apply(path, Schema("app", tables=[t2], data_steps=[step]), backup=True)
    assert result.backup and seen == [False]
    assert rows_of(path, "SELECT id, v FROM t") == [(1, 1)]


def rows_of(path, sql):
    conn = sqlite3.connect(path)
    try:
        return conn.execute(sql).fetchall()
    finally:
        conn.close()


def test_killed_backup_never_leaves_a_file_under_the_final_name(retrofitted, tmp_path):
    path = copy(retrofitted, tmp_path / "db.sqlite")
    script = (
        "import os, signal, sys\n"
        "from schema_dsl.migrate import backup\n"
        "def after_chunk(done, total, progress):\n"
        "    if done >= 5 * 8192: os.kill(os.getpid(), signal.SIGKILL)\n"
        "backup.CHUNK_BYTES = 8192\n"
        "backup._after_chunk = after_chunk\n"
        "from schema_dsl.migrate.apply import apply\n"
        "apply(sys.argv[1])\n")
    proc = subprocess.run([sys.executable, "-c", script, path], cwd=str(ROOT), capture_output=True, text=True)
    assert proc.returncode == -9, proc.stderr
    assert list_backups(path) == []
    stray = leftovers(tmp_path)
    assert len(stray) == 1 and stray[0].startswith(".db.sqlite.backup-") and stray[0].endswith(".tmp")
    conn = sqlite3.connect(path)
    assert conn.execute("PRAGMA quick_check").fetchone()[0] == "ok"
    assert "session_id" not in [r[1] for r in conn.execute("PRAGMA table_info(tasks)")]  # not migrated
    conn.close()
    # the next successful apply removes the dead process's temporary file
    result = apply(path)
    assert leftovers(tmp_path) == made(result.backup)


@pytest.mark.parametrize("fault", ["error", "interrupt"])
def test_rolled_back_apply_removes_its_backup(retrofitted, tmp_path, monkeypatch, fault):
    path = copy(retrofitted, tmp_path / "db.sqlite")
    data = Path(path).read_bytes()
    made = []
    real = apply_mod.make_backup
    monkeypatch.setattr(apply_mod, "make_backup", lambda *a, **k: made.append(real(*a, **k)) or made[-1])

    def fail(number, step, statement):
        if number == 5:
            raise KeyboardInterrupt() if fault == "interrupt" else ApplyError("injected")
    with pytest.raises(KeyboardInterrupt if fault == "interrupt" else ApplyError):
        apply(path, progress=fail)
    assert len(made) == 1 and not os.path.exists(made[0])  # a backup was made, then removed
    assert leftovers(tmp_path) == []
    assert Path(path).read_bytes() == data


def test_refused_apply_says_nothing_about_a_backup(retrofitted, tmp_path, monkeypatch):
    path = copy(retrofitted, tmp_path / "db.sqlite")
    monkeypatch.setattr(apply_mod, "_verify_structure", lambda conn, target, *read: (_ for _ in ()).throw(
        ApplyError("after the plan the structure still differs, rolled back: injected")))
    out = make_runner().invoke(main, ["apply", "--db", path])
    assert out.exit_code == 2
    assert "injected" in out.stderr
    assert "backup" not in out.output + out.stderr
    assert leftovers(tmp_path) == []


def test_unsafe_migration_is_refused_before_any_backup(retrofitted, tmp_path):
    import attrs
    from schema_dsl.abathur import SCHEMA
    path = copy(retrofitted, tmp_path / "db.sqlite")
    conn = sqlite3.connect(path)
    conn.execute("UPDATE tasks SET created_by = NULL WHERE rowid % 2 = 0")
    conn.commit()
    conn.close()
    tasks = SCHEMA.table("tasks")
    col = attrs.evolve(tasks.column("created_by"), not_null=True)
    changed = attrs.evolve(tasks, columns=[col if c.name == "created_by" else c for c in tasks.columns])
    schema = attrs.evolve(SCHEMA, tables=[changed if t.name == "tasks" else t for t in SCHEMA.tables])
    with pytest.raises(UnsafeMigrationError, match="must become NOT NULL"):
        apply(path, schema=schema)
    assert leftovers(tmp_path) == []


def test_retention_keeps_exactly_n_of_this_database(retrofitted, tmp_path):
    path = copy(retrofitted, tmp_path / "db.sqlite")
    older = ["db.sqlite.backup-20200101T000000", "db.sqlite.backup-20200101T000000-2",
             "db.sqlite.backup-20200101T000000-10", "db.sqlite.backup-20210101T000000"]
    others = ["other.sqlite.backup-20200101T000000", "db.sqlite.backup-20200101T000000.notes",
              "xdb.sqlite.backup-20200101T000000"]
    for name in older + others:
        sqlite_file(tmp_path / name)  # made by an older version: no record, in the database's own folder
    result = apply(path, keep_backups=3)
    kept = [Path(p).name for p in list_backups(path)]
    assert kept == ["db.sqlite.backup-20200101T000000-10", "db.sqlite.backup-20210101T000000", Path(result.backup).name]
    for name in others:
        assert (tmp_path / name).exists()


def test_failed_apply_prunes_nothing(retrofitted, tmp_path):
    path = copy(retrofitted, tmp_path / "db.sqlite")
    for name in ("db.sqlite.backup-20200101T000000", "db.sqlite.backup-20210101T000000"):
        (tmp_path / name).write_bytes(b"x")

    def fail(number, step, statement):
        raise ApplyError("injected")
    with pytest.raises(ApplyError):
        apply(path, keep_backups=1, progress=fail)
    assert leftovers(tmp_path) == ["db.sqlite.backup-20200101T000000", "db.sqlite.backup-20210101T000000"]


def test_keep_backups_must_be_at_least_one(retrofitted, tmp_path):
    path = copy(retrofitted, tmp_path / "db.sqlite")
    data = Path(path).read_bytes()
    out = make_runner().invoke(main, ["apply", "--db", path, "--keep-backups", "0"])
    assert out.exit_code == 2 and "x>=1" in out.stderr
    with pytest.raises(DatabaseFileError, match="--keep-backups must be 1 or more"):
        apply(path, keep_backups=0)
    assert Path(path).read_bytes() == data and leftovers(tmp_path) == []


@pytest.mark.parametrize("kind", ["missing", "file"])
def test_bad_backup_dir_is_refused_before_anything(retrofitted, tmp_path, kind):
    path = copy(retrofitted, tmp_path / "db.sqlite")
    data = Path(path).read_bytes()
    bad = tmp_path / "nowhere"
    if kind == "file":
        bad.write_text("x")
    out = make_runner().invoke(main, ["apply", "--db", path, "--backup-dir", str(bad)])
    assert out.exit_code == 2, out.output
    assert out.stderr.count("\n") == 1 and "nowhere" in out.stderr
    assert Path(path).read_bytes() == data
    assert leftovers(tmp_path) == []


def test_backup_dir_holds_the_backup_and_apply_says_where(retrofitted, tmp_path):
    path = copy(retrofitted, tmp_path / "db.sqlite")
    folder = tmp_path / "backups"
    folder.mkdir()
    out = make_runner().invoke(main, ["apply", "--db", path, "--backup-dir", str(folder)])
    assert out.exit_code == 0, out.output + out.stderr
    kept = list_backups(path, str(folder))
    assert len(kept) == 1 and "backup: %s" % kept[0] in out.output
    assert leftovers(tmp_path) == []


# --- restore --------------------------------------------------------------------------------------

def _small_db(path, values):
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("PRAGMA journal_mode = WAL")
    conn.execute("CREATE TABLE t (v INTEGER)")
    conn.executemany("INSERT INTO t VALUES (?)", [(v,) for v in values])
    conn.close()
    return str(path)


def test_restore_round_trip_seen_by_an_open_connection(tmp_path):
    path = _small_db(tmp_path / "db.sqlite", [1, 2, 3])
    saved = make_backup(path)
    reader = sqlite3.connect(path, isolation_level=None)
    reader.execute("DELETE FROM t WHERE v = 1")
    reader.execute("INSERT INTO t VALUES (40)")
    assert reader.execute("SELECT group_concat(v) FROM t").fetchone()[0] == "2,3,40"
    out = make_runner().invoke(main, ["restore", "--db", path])
    assert out.exit_code == 0, out.output + out.stderr
    # the connection that held the file open all along sees the restored rows
    assert reader.execute("SELECT group_concat(v) FROM t").fetchone()[0] == "1,2,3"
    reader.close()
    backups = list_backups(path)
    assert len(backups) == 2 and saved in backups
    before = [b for b in backups if b != saved][0]
    assert "restored %s from %s; its state before the restore is in %s" % (path, saved, before) in out.output
    conn = sqlite3.connect(before)
    assert conn.execute("SELECT group_concat(v) FROM t").fetchone()[0] == "2,3,40"
    conn.close()
    assert not os.path.exists(saved + "-wal") and not os.path.exists(saved + "-shm")


@pytest.mark.parametrize("content", [b"this is not a database at all" * 100, b""])
def test_restore_refuses_a_file_that_is_not_sqlite(tmp_path, content):
    path = _small_db(tmp_path / "db.sqlite", [1, 2])
    data = Path(path).read_bytes()
    bogus = tmp_path / "bogus.backup"
    bogus.write_bytes(content)
    out = make_runner().invoke(main, ["restore", "--db", path, "--backup", str(bogus)])
    assert out.exit_code == 2
    assert "not an SQLite database" in out.stderr and "nothing was changed" in out.stderr
    assert Path(path).read_bytes() == data
    assert list_backups(path) == []


def test_restore_refuses_a_damaged_backup(retrofitted, tmp_path):
    path = copy(retrofitted, tmp_path / "db.sqlite")
    bad = copy(retrofitted, tmp_path / "damaged.backup")
    damage_table(bad, "tasks")
    data = Path(path).read_bytes()
    with pytest.raises(DatabaseFileError, match="table 'tasks' is damaged|the file is damaged"):
        restore(path, backup=bad)
    assert Path(path).read_bytes() == data and list_backups(path) == []


def test_restore_without_any_backup_is_refused(tmp_path):
    path = _small_db(tmp_path / "db.sqlite", [1])
    out = make_runner().invoke(main, ["restore", "--db", path])
    assert out.exit_code == 2 and "no backup of it in" in out.stderr


def test_restore_repairs_a_damaged_database(retrofitted, tmp_path):
    path = copy(retrofitted, tmp_path / "db.sqlite")
    saved = make_backup(path)
    damage_table(path, "tasks")
    result = restore(path)
    assert result.restored_from == saved and result.backup in list_backups(path)
    conn = sqlite3.connect(path)
    assert conn.execute("PRAGMA quick_check").fetchone()[0] == "ok"
    assert conn.execute("SELECT count(*) FROM tasks NOT INDEXED").fetchone()[0] == TASKS
    conn.close()


# --- issue 15, items 2, 13 and 15: a backup is tied to its database ----------------------------------

def _marked(src, path, mark):
    """A copy of src with a table of the user's that says which database it is (apply keeps it)."""
    copy(src, path)
    conn = sqlite3.connect(str(path))
    conn.execute("CREATE TABLE mark (v TEXT)")
    conn.execute("INSERT INTO mark VALUES (?)", (mark,))
    conn.commit()
    conn.close()
    return str(path)


def _mark(path):
    conn = sqlite3.connect(str(path))
    try:
        return conn.execute("SELECT v FROM mark").fetchone()[0]
    finally:
        conn.close()


def _cli(*args):
    return make_runner().invoke(main, [str(a) for a in args])


def test_a_shared_backup_dir_keeps_two_databases_of_the_same_name_apart(retrofitted, tmp_path):
    (tmp_path / "x").mkdir()
    (tmp_path / "y").mkdir()
    shared = tmp_path / "B"
    shared.mkdir()
    x = _marked(retrofitted, tmp_path / "x" / "app.db", "x")
    y = _marked(retrofitted, tmp_path / "y" / "app.db", "y")
    for db in (x, y):
        out = _cli("apply", "--db", db, "--backup-dir", shared, "--keep-backups", "1")
        assert out.exit_code == 0, out.output + out.stderr
    # y's retention counts y's backups only: x's only backup is still there, and each record names its database
    assert [_mark(b) for b in list_backups(x, str(shared))] == ["x"]
    assert [_mark(b) for b in list_backups(y, str(shared))] == ["y"]
    assert len(leftovers(shared)) == 4
    for db in (x, y):
        (record,) = [json.loads(Path(b + ".json").read_text()) for b in list_backups(db, str(shared))]
        assert record["database"] == os.path.realpath(db)
    conn = sqlite3.connect(x)
    conn.execute("UPDATE mark SET v = 'x, changed'")
    conn.commit()
    conn.close()
    out = _cli("restore", "--db", x, "--backup-dir", shared)
    assert out.exit_code == 0, out.output + out.stderr
    assert _mark(x) == "x" and _mark(y) == "y"  # x got its own data back, not y's


def test_restore_refuses_another_databases_backup_and_says_whose(retrofitted, tmp_path):
    (tmp_path / "x").mkdir()
    (tmp_path / "y").mkdir()
    x = _marked(retrofitted, tmp_path / "x" / "app.db", "x")
    y = _marked(retrofitted, tmp_path / "y" / "app.db", "y")
    theirs = make_backup(y, str(tmp_path / "x"))  # y's backup, in x's folder, under x's backup name
    data = Path(x).read_bytes()
    out = _cli("restore", "--db", x, "--backup", theirs)
    assert out.exit_code == 2, out.output
    err = out.stderr.strip()
    assert "\n" not in err and err.startswith("error: ")
    assert "is a backup of %r" % os.path.realpath(y) in err and "--other-database" in err
    assert "nothing was changed" in err
    assert Path(x).read_bytes() == data and list_backups(x) == []
    # nor is it picked as x's newest backup
    out = _cli("restore", "--db", x)
    assert out.exit_code == 2 and "no backup of it in" in out.stderr and "not this database's" in out.stderr
    assert Path(x).read_bytes() == data
    # said explicitly, it is restored, and the output says whose it was
    out = _cli("restore", "--db", x, "--backup", theirs, "--other-database")
    assert out.exit_code == 0, out.output + out.stderr
    assert "a backup of %s" % os.path.realpath(y) in out.output
    assert _mark(x) == "y"
    assert len(list_backups(x)) == 1  # x's state before the restore, recorded as x's


def test_restore_refuses_a_file_that_is_not_a_backup_and_says_what_it_is(tmp_path):
    path = _small_db(tmp_path / "app.db", [1, 2])
    other = tmp_path / "other.db"
    conn = sqlite3.connect(str(other))
    conn.execute("CREATE TABLE invoices (id INTEGER PRIMARY KEY)")
    conn.execute("CREATE TABLE customers (id INTEGER PRIMARY KEY)")
    conn.commit()
    conn.close()
    data = Path(path).read_bytes()
    out = _cli("restore", "--db", path, "--backup", other)
    assert out.exit_code == 2, out.output
    err = out.stderr.strip()
    assert "\n" not in err and "not a backup of %r" % path in err
    assert "2 tables (customers, invoices)" in err and "--other-database" in err
    assert Path(path).read_bytes() == data and leftovers(tmp_path) == []
    out = _cli("restore", "--db", path, "--backup", other, "--other-database")
    assert out.exit_code == 0, out.output + out.stderr
    conn = sqlite3.connect(path)
    assert [r[0] for r in conn.execute("SELECT name FROM sqlite_master ORDER BY name")] == ["customers", "invoices"]
    conn.close()
    # a file that is not an SQLite database is refused even then
    (tmp_path / "notes.txt").write_text("not a database" * 100)
    out = _cli("restore", "--db", path, "--backup", tmp_path / "notes.txt", "--other-database")
    assert out.exit_code == 2 and "not an SQLite database" in out.stderr


def test_retention_never_deletes_what_is_not_this_databases_backup(retrofitted, tmp_path):
    path = copy(retrofitted, tmp_path / "db.sqlite")
    (tmp_path / "db.sqlite.backup-20200101T000000").write_bytes(b"my notes, not a database")
    (tmp_path / "db.sqlite.backup-20200102T000000").write_bytes(b"")
    (tmp_path / "elsewhere").mkdir()
    stranger = _small_db(tmp_path / "elsewhere" / "db.sqlite", [7])
    theirs = make_backup(stranger, str(tmp_path))  # another database's backup, beside this one
    older = sqlite_file(tmp_path / "db.sqlite.backup-20200103T000000")  # an older version's backup of this one
    unsure = sqlite_file(tmp_path / "db.sqlite.backup-20200104T000000")
    Path(unsure + ".json").write_text("{not json")  # whose it is cannot be read: never removed
    result = apply(path, keep_backups=1)
    assert list_backups(path) == [result.backup]
    assert not os.path.exists(older)  # pruned: no record, in this database's own folder
    assert (tmp_path / "db.sqlite.backup-20200101T000000").read_bytes() == b"my notes, not a database"
    assert (tmp_path / "db.sqlite.backup-20200102T000000").exists()
    assert os.path.exists(theirs) and os.path.exists(theirs + ".json")
    assert os.path.exists(unsure) and os.path.exists(unsure + ".json")
    out = _cli("restore", "--db", path, "--list")
    assert out.exit_code == 0 and "%s  record unreadable" % unsure in out.output


def test_older_backups_without_a_record_are_restored_by_a_documented_rule(tmp_path):
    path = _small_db(tmp_path / "app.db", [1, 2, 3])
    beside = make_backup(path)
    os.remove(beside + ".json")  # as an older version made it: the name only
    conn = sqlite3.connect(path)
    conn.execute("DELETE FROM t")
    conn.commit()
    conn.close()
    # in the database's own folder it is this database's: listed, picked, restored
    result = restore(path)
    assert result.restored_from == beside and result.whose == "unrecorded"
    conn = sqlite3.connect(path)
    assert conn.execute("SELECT count(*) FROM t").fetchone()[0] == 3
    conn.close()
    # in a shared folder it could be any app.db's: never picked by default nor pruned, restored when named
    shared = tmp_path / "B"
    shared.mkdir()
    moved = str(shared / Path(beside).name)
    os.rename(beside, moved)
    out = _cli("restore", "--db", path, "--backup-dir", shared, "--keep-backups", "1")
    assert out.exit_code == 2 and "1 backup there has the same file name but is not this database's" in out.stderr
    out = _cli("restore", "--db", path, "--backup-dir", shared, "--backup", moved, "--keep-backups", "1")
    assert out.exit_code == 0, out.output + out.stderr
    assert "an older backup with no record" in out.output
    assert os.path.exists(moved) and len(list_backups(path, str(shared))) == 1


def test_restore_list_shows_this_databases_backups_newest_first(tmp_path):
    (tmp_path / "y").mkdir()
    shared = tmp_path / "B"
    shared.mkdir()
    path = _small_db(tmp_path / "app.db", [1])
    first = make_backup(path, str(shared))
    conn = sqlite3.connect(path)
    conn.executemany("INSERT INTO t VALUES (?)", [("row %d " % i * 100,) for i in range(200)])
    conn.commit()
    conn.close()
    second = make_backup(path, str(shared))
    other = make_backup(_small_db(tmp_path / "y" / "app.db", [2]), str(shared))
    before = sorted(os.listdir(shared))
    out = _cli("restore", "--db", path, "--backup-dir", shared, "--list")
    assert out.exit_code == 0, out.output + out.stderr
    lines = out.output.splitlines()
    assert lines[0] == "2 backups of %s in %s, newest first:" % (path, shared)
    assert second in lines[1] and first in lines[2]  # newest first
    assert lines[1].split()[2:4] != lines[2].split()[2:4]  # each with its own size
    assert lines[3] == "not of this database, under the same name:"
    assert other in lines[4] and "of %s" % os.path.realpath(tmp_path / "y" / "app.db") in lines[4]
    out = _cli("restore", "--db", path, "--backup-dir", shared, "--list", "--json")
    assert out.exit_code == 0, out.output + out.stderr
    data = json.loads(out.output)
    assert data["database"] == os.path.realpath(path) and data["folder"] == str(shared)
    assert [(b["path"], b["own"], b["of"]) for b in data["backups"] if b["own"]] == [
        (second, True, os.path.realpath(path)), (first, True, os.path.realpath(path))]
    assert [b["bytes"] for b in data["backups"] if b["own"]] == [os.path.getsize(second), os.path.getsize(first)]
    assert all(len(b["made"]) == 19 and b["record"] == "ok" for b in data["backups"])
    assert sorted(os.listdir(shared)) == before  # listing changes nothing
    out = _cli("restore", "--db", tmp_path / "y" / "nothing.db", "--list")
    assert out.exit_code == 0 and out.output.startswith("no backups of ")
