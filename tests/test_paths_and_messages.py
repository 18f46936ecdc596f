"""The edges of paths and messages: --db is a file path, read-only places, output paths, sentences instead of SQLite's
text, and explain's scratch copy. Each test failed before its fix."""
from __future__ import annotations

import asyncio
import hashlib
import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

from conftest import make_runner
from schema_dsl.abathur import SCHEMA
from schema_dsl.check import explain as ex
from schema_dsl.cli import main
from schema_dsl.migrate.apply import apply
from schema_dsl.model import Check, Column, PrimaryKey, Schema, Table

ROOT = Path(__file__).resolve().parent.parent
READ_COMMANDS = (["plan"], ["validate"], ["explain"], ["lint"], ["inspect"])


def run(*args):
    return make_runner().invoke(main, [str(a) for a in args], catch_exceptions=True)


def assert_refused(result, *words):
    """Exit 2 with one `error:` line on stderr, no traceback, naming each of words."""
    assert result.exit_code == 2, (result.exit_code, result.output, result.stderr, result.exception)
    assert isinstance(result.exception, SystemExit), result.exception
    lines = [line for line in result.stderr.strip().splitlines() if not line.startswith("note: ")]  # the fallback note
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    for word in words:
        assert word in lines[0], (word, lines[0])
    return lines[0]


def digest(path):
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def listing(folder):
    return sorted(p.name for p in Path(folder).iterdir())


# --- item 2: --db is a filesystem path -------------------------------------------------------------------------

def test_a_db_named_file_colon_is_the_file_of_that_name(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    result = run("apply", "--db", "file:y.db", "--no-validate")
    assert result.exit_code == 0, result.stderr
    assert listing(tmp_path) == ["file:y.db"]  # never y.db, as an SQLite URI would have it
    assert run("validate", "--db", "file:y.db").exit_code == 0
    assert run("plan", "--db", "file:y.db").stdout.startswith("up to date")
    assert run("explain", "--db", "file:y.db").exit_code == 0
    assert [n for n in listing(tmp_path) if not n.endswith(("-wal", "-shm"))] == ["file:y.db"]


@pytest.mark.parametrize("command", READ_COMMANDS + (["apply"],), ids=lambda c: c[0])
def test_an_sqlite_uri_or_a_trailing_slash_is_one_line_and_changes_nothing(tmp_path, monkeypatch, command):
    monkeypatch.chdir(tmp_path)
    Path("s.db").write_bytes(b"")
    assert_refused(run(*command, "--db", "file:x.db?mode=ro"), "URI")
    assert_refused(run(*command, "--db", "s.db/"), "ends with '/'")
    assert listing(tmp_path) == ["s.db"] and Path("s.db").stat().st_size == 0


@pytest.mark.parametrize("name", ["a?b.db", "c#d.db", "e%41f.db", "g h.db", "q'u\"ote.db", "file:w?x#y%z.db"])
def test_names_with_uri_characters_name_exactly_that_file(tmp_path, monkeypatch, name):
    monkeypatch.chdir(tmp_path)
    if name.startswith("file:") and "?" in name:
        name = "./" + name  # a file: name with a query is refused as a URI; ./ names the file itself
    assert run("apply", "--db", name, "--no-validate").exit_code == 0
    assert listing(tmp_path) == [os.path.basename(name)]
    for command in (["validate"], ["plan"], ["explain"], ["lint"], ["inspect"]):
        result = run(*command, "--db", name)
        assert result.exit_code == 0, (command, result.stderr)
    assert [n for n in listing(tmp_path) if not n.endswith(("-wal", "-shm"))] == [os.path.basename(name)]


def test_the_database_class_opens_file_colon_names_as_files(tmp_path, monkeypatch):
    from schema_dsl import Database

    monkeypatch.chdir(tmp_path)

    async def go():
        db = Database("file:d.db")
        await db.initialize()
        async with db.connect() as conn:
            rows = await (await conn.execute("SELECT count(*) FROM tasks")).fetchall()
        await db.close()
        return rows

    assert asyncio.run(go()) == [(0,)]
    assert [n for n in listing(tmp_path) if not n.endswith(("-wal", "-shm"))] == ["file:d.db"]


# --- item 5: read-only places ----------------------------------------------------------------------------------

@pytest.fixture
def read_only(tmp_path):
    """mount(src) -> a read-only bind mount of src (EROFS even for root); unmounted afterwards."""
    mounted = []

    def mount(src):
        dst = tmp_path / ("ro%d" % len(mounted))
        dst.mkdir()
        done = subprocess.run(["mount", "--bind", str(src), str(dst)], capture_output=True, text=True)
        if done.returncode != 0:
            pytest.skip("a read-only bind mount is not permitted here (mount --bind needs root): %s"
                        % done.stderr.strip())
        mounted.append(dst)
        done = subprocess.run(["mount", "-o", "remount,bind,ro", str(dst)], capture_output=True, text=True)
        assert done.returncode == 0, done.stderr
        with pytest.raises(OSError):
            (dst / "probe").write_text("x")
        return dst

    try:
        yield mount
    finally:
        for dst in reversed(mounted):
            subprocess.run(["umount", str(dst)], check=False)


def test_read_only_commands_work_on_read_only_media(tmp_path, read_only):
    src = tmp_path / "src"
    src.mkdir()
    apply(str(src / "a.db"))
    assert listing(src) == ["a.db"]  # WAL in its header, no -wal beside it
    ro = read_only(src)
    assert run("plan", "--db", ro / "a.db").output.startswith("up to date")
    result = run("validate", "--db", ro / "a.db")
    assert result.exit_code == 0, result.output + result.stderr
    for command in (["explain"], ["lint"], ["explain", "--sample-rows", "3"]):
        result = run(*command, "--db", ro / "a.db")
        assert result.exit_code == 0, (command, result.stderr)
    result = run("inspect", "--db", ro / "a.db")
    assert result.exit_code == 0 and "Pragma('journal_mode', 'wal'" in result.output
    assert listing(src) == ["a.db"]


def test_a_pending_wal_on_read_only_media_is_refused_in_one_line(tmp_path, read_only):
    live, src = tmp_path / "live", tmp_path / "src"
    live.mkdir()
    src.mkdir()
    apply(str(live / "a.db"))
    conn = sqlite3.connect(str(live / "a.db"))
    conn.execute("INSERT INTO sessions (id, app_name, user_id) VALUES ('s1', 'app', 'u')")
    conn.commit()
    try:  # a copy taken while the change is still only in the -wal
        for name in ("a.db", "a.db-wal"):
            (src / name).write_bytes((live / name).read_bytes())
    finally:
        conn.close()
    assert (src / "a.db-wal").stat().st_size > 0
    ro = read_only(src)
    for command in READ_COMMANDS:
        assert_refused(run(*command, "--db", ro / "a.db"), "read-only", "a.db-wal")


# --- item 6 (and 3): output paths ------------------------------------------------------------------------------

def test_docs_never_writes_through_a_symlinked_schema_md(tmp_path):
    out, victim = tmp_path / "out", tmp_path / "victim.txt"
    out.mkdir()
    victim.write_text("keep me")
    (out / "SCHEMA.md").symlink_to(victim)
    assert_refused(run("docs", "--out", out), "symbolic link")
    assert victim.read_text() == "keep me" and (out / "SCHEMA.md").is_symlink()


@pytest.mark.parametrize("args", [
    ["render", "--out", "{afile}/sub"], ["docs", "--out", "{afile}/sub"], ["docs", "--out", "/proc/x"],
    ["inspect", "--db", "{db}", "--out", "{afile}/x.py"], ["inspect", "--db", "{db}", "--out", "/proc/x/y.py"],
], ids=["render-under-a-file", "docs-under-a-file", "docs-proc", "inspect-under-a-file", "inspect-proc"])
def test_a_bad_out_path_is_one_line_and_exit_2(tmp_path, args):
    afile = tmp_path / "afile"
    afile.write_text("a file")
    db = tmp_path / "a.db"
    apply(str(db))
    before = listing(tmp_path)
    assert_refused(run(*[a.format(afile=afile, db=db) for a in args]), "--out")
    assert listing(tmp_path) == before and afile.read_text() == "a file"


def test_render_and_inspect_write_regular_files_replacing_not_following(tmp_path):
    out, victim = tmp_path / "out", tmp_path / "victim.txt"
    victim.write_text("keep me")
    assert run("render", "--out", out).exit_code == 0
    (out / "ddl-indexes.sql").unlink()
    (out / "ddl-indexes.sql").symlink_to(victim)
    assert_refused(run("render", "--out", out), "symbolic link")
    assert victim.read_text() == "keep me"
    db = tmp_path / "a.db"
    apply(str(db))
    (tmp_path / "decl.py").symlink_to(victim)
    assert_refused(run("inspect", "--db", db, "--out", tmp_path / "decl.py"), "symbolic link")
    assert victim.read_text() == "keep me"
    (tmp_path / "decl.py").unlink()
    assert run("inspect", "--db", db, "--out", tmp_path / "decl.py").exit_code == 0
    assert (tmp_path / "decl.py").is_file() and not (tmp_path / "decl.py").is_symlink()
    assert not [n for n in listing(tmp_path) if n.endswith(".tmp")]


def test_report_paths_are_checked_before_anything_changes(tmp_path):
    db, victim = tmp_path / "a.db", tmp_path / "victim.txt"
    assert_refused(run("apply", "--db", db, "--report", tmp_path / "nope" / "r.md"), "--report", "does not exist")
    assert not db.exists()  # refused before the file was created
    apply(str(db))
    victim.write_text("keep me")
    (tmp_path / "r.md").symlink_to(victim)
    for command in ("apply", "validate"):
        assert_refused(run(command, "--db", db, "--report", tmp_path / "r.md"), "symbolic link")
    assert victim.read_text() == "keep me"
    result = run("validate", "--db", db, "--report", tmp_path / "ok.md")
    assert result.exit_code == 0 and (tmp_path / "ok.md").read_text().startswith("#")


# --- item 7: a sentence, not SQLite's text ---------------------------------------------------------------------

@pytest.mark.parametrize("id_type", ["INTEGER", "TEXT"])
def test_another_applications_tasks_table_is_refused_in_words_with_no_backup(tmp_path, id_type):
    db = tmp_path / "other.db"
    conn = sqlite3.connect(str(db))
    conn.execute("CREATE TABLE tasks (id %s PRIMARY KEY, title TEXT)" % id_type)
    conn.executemany("INSERT INTO tasks VALUES (?, ?)", [(1, "one"), (2, "two")])
    conn.commit()
    conn.close()
    before = digest(db)
    line = assert_refused(run("apply", "--db", db, "--schema", "abathur"),
                          "table 'tasks'", "'last_updated_at'", "'status'", "another application",
                          "has no column 'completed_at'")
    assert "no such column:" not in line
    assert digest(db) == before and listing(tmp_path) == ["other.db"]  # nothing changed, no backup left


def pair_schema(**options):
    return Schema("pairs", tables=[Table("pair", [
        Column("a", "TEXT", not_null=True), Column("b", "TEXT"), Column("n", "INTEGER", not_null=True, default=0),
    ], primary_key=PrimaryKey(("a",)), checks=[Check("n >= 0")], **options)])


@pytest.mark.parametrize("without_rowid", [False, True])
def test_a_users_generated_columns_are_carried_through_a_rebuild(tmp_path, without_rowid):
    db = tmp_path / "g.db"
    conn = sqlite3.connect(str(db))
    conn.execute("CREATE TABLE pair (a TEXT NOT NULL PRIMARY KEY, b TEXT, note TEXT, "
                 "up TEXT GENERATED ALWAYS AS (upper(a)) VIRTUAL, len INTEGER AS (length(b)) STORED)%s"
                 % (" WITHOUT ROWID" if without_rowid else ""))
    conn.executemany("INSERT INTO pair (a, b, note) VALUES (?, ?, ?)", [("x", "yy", "n1"), ("p", None, "n2")])
    conn.commit()
    conn.close()
    result = apply(str(db), schema=pair_schema(without_rowid=without_rowid), backup=False)
    assert result.applied and any("rebuild" in s.title for s in result.plan.steps)
    conn = sqlite3.connect(str(db))
    assert conn.execute("SELECT a, b, n, note, up, len FROM pair ORDER BY a").fetchall() == [
        ("p", None, 0, "n2", "P", None), ("x", "yy", 0, "n1", "X", 2)]
    hidden = {r[1]: r[6] for r in conn.execute("SELECT * FROM pragma_table_xinfo('pair')")}
    assert hidden["up"] == 2 and hidden["len"] == 3  # still generated: virtual, stored
    conn.execute("UPDATE pair SET b = 'abc' WHERE a = 'p'")
    assert conn.execute("SELECT len FROM pair WHERE a = 'p'").fetchone() == (3,)
    conn.close()


@pytest.mark.parametrize("live_option, declared", [(" WITHOUT ROWID", True), (" WITHOUT ROWID", False), ("", True)],
                         ids=["stays-without-rowid", "becomes-rowid", "becomes-without-rowid"])
def test_without_rowid_tables_are_rebuilt_keeping_every_row(tmp_path, live_option, declared):
    db = tmp_path / "w.db"
    conn = sqlite3.connect(str(db))
    conn.execute("CREATE TABLE pair (a TEXT NOT NULL PRIMARY KEY, b TEXT, extra TEXT)" + live_option)
    conn.executemany("INSERT INTO pair VALUES (?, ?, ?)", [("x", "y", "z"), ("p", None, "q")])
    conn.commit()
    conn.close()
    assert apply(str(db), schema=pair_schema(without_rowid=declared), backup=False).applied
    conn = sqlite3.connect(str(db))
    assert conn.execute("SELECT a, b, n, extra FROM pair ORDER BY a").fetchall() == [("p", None, 0, "q"), ("x", "y", 0, "z")]
    sql = conn.execute("SELECT sql FROM sqlite_master WHERE name = 'pair'").fetchone()[0]
    assert ("WITHOUT ROWID" in sql) == declared
    conn.close()


# --- item 8: explain --------------------------------------------------------------------------------------------

def damaged_db(path):
    apply(str(path))
    conn = sqlite3.connect(str(path))
    root = conn.execute("SELECT rootpage FROM sqlite_master WHERE name = 'sqlite_autoindex_memory_entries_1'").fetchone()[0]
    size = conn.execute("PRAGMA page_size").fetchone()[0]
    conn.close()
    with open(path, "r+b") as fh:
        fh.seek((root - 1) * size)
        fh.write(b"\xff" * 16)  # the page header of one index: quick_check says so
    return path


def test_explain_sample_rows_refuses_a_damaged_file(tmp_path):
    db = damaged_db(tmp_path / "bad.db")
    assert_refused(run("explain", "--db", db, "--sample-rows", "5"), "damaged", "quick_check")


def test_explain_on_a_file_that_only_looks_like_a_database_leaves_nothing_beside_it(tmp_path):
    head = bytearray(b"SQLite format 3\x00" + bytes(4096 - 16))
    head[16:18] = (4096).to_bytes(2, "big")
    head[18] = head[19] = 2  # WAL, as the header says
    (tmp_path / "x.db").write_bytes(bytes(head) + os.urandom(4096))
    for command in READ_COMMANDS:
        assert_refused(run(*command, "--db", tmp_path / "x.db"), "x.db")
        assert listing(tmp_path) == ["x.db"], command


def test_explain_restores_the_sigterm_handler(tmp_path):
    db = tmp_path / "a.db"
    apply(str(db))

    def mine(signum, frame):
        pass

    old = signal.signal(signal.SIGTERM, mine)
    try:
        ex.explain_database(str(db), SCHEMA, sample_rows=2)
        assert signal.getsignal(signal.SIGTERM) is mine
    finally:
        signal.signal(signal.SIGTERM, old)


def test_sigterm_during_sample_rows_removes_the_scratch_copy(tmp_path):
    db, scratch_tmp = tmp_path / "a.db", tmp_path / "tmp"
    scratch_tmp.mkdir()
    apply(str(db))
    env = dict(os.environ, TMPDIR=str(scratch_tmp))
    proc = subprocess.Popen([sys.executable, "-m", "schema_dsl", "explain", "--db", str(db), "--sample-rows", "300000"],
                            cwd=str(ROOT), env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 60
        while not any(p.name.startswith("schemagen-explain-") and (p / "scratch.db").exists()
                      for p in scratch_tmp.iterdir()):
            assert proc.poll() is None, "explain ended before the scratch copy was seen: %s" % proc.stderr.read()
            assert time.monotonic() < deadline
            time.sleep(0.01)
        time.sleep(0.2)
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 130, (proc.returncode, err)
    assert "Traceback" not in err and len(err.strip().splitlines()) == 1, err
    assert listing(scratch_tmp) == []
