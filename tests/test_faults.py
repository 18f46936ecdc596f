"""A failed or killed apply leaves the file entirely old or entirely new."""
from __future__ import annotations

import hashlib
import os
import random
import shutil
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

import legacy
from schema_dsl.sqlite import structure
from schema_dsl.abathur import SCHEMA
from schema_dsl.migrate.apply import apply, plan_database
from schema_dsl.analysis.compare import expected_structure

ROOT = Path(__file__).resolve().parent.parent


class Injected(Exception):
    pass


def content(path):
    """The logical content of a database: its full SQL dump."""
    conn = sqlite3.connect(path)
    try:
        return hashlib.sha256("\n".join(conn.iterdump()).encode()).hexdigest()
    finally:
        conn.close()


@pytest.fixture(scope="module")
def small_shapes(tmp_path_factory):
    folder = tmp_path_factory.mktemp("faults")
    return {s: legacy.create(str(folder / ("%s.db" % s)), s, tasks=300) for s in legacy.SHAPES}


def _fail_at(k):
    seen = []

    def progress(number, step, stmt):
        seen.append(stmt)
        if len(seen) == k + 1:
            raise Injected("fault at statement %d (%s)" % (k, step.title))
    return progress


@pytest.mark.parametrize("shape", legacy.SHAPES)
def test_error_at_every_statement_leaves_file_unchanged(shape, small_shapes, tmp_path):
    n = len(plan_database(small_shapes[shape]).statements)
    assert n > 20
    for k in range(n):
        path = str(tmp_path / ("%s-%d.db" % (shape, k)))
        shutil.copy(small_shapes[shape], path)
        data, logical = Path(path).read_bytes(), content(path)
        with pytest.raises(Injected):
            apply(path, backup=False, progress=_fail_at(k))
        assert Path(path).read_bytes() == data, "statement %d changed the file" % k
        assert content(path) == logical
        os.remove(path)


def test_error_while_creating_a_new_file_leaves_no_file(tmp_path):
    path = tmp_path / "new.db"
    with pytest.raises(Injected):
        apply(str(path), progress=_fail_at(10))
    assert not path.exists() and not list(tmp_path.iterdir())


def test_error_on_an_empty_existing_file_leaves_it_empty(tmp_path):
    path = tmp_path / "empty.db"
    path.write_bytes(b"")
    with pytest.raises(Injected):
        apply(str(path), progress=_fail_at(40))
    assert path.read_bytes() == b""


# The child says "go" when it runs its first statement, so that the kill lands
# inside the migration rather than during interpreter start-up.
KILL_SCRIPT = (
    "import sys\n"
    "from schema_dsl.migrate.apply import apply\n"
    "said = []\n"
    "def progress(n, step, stmt):\n"
    "    if not said:\n"
    "        said.append(1); sys.stdout.write('go\\n'); sys.stdout.flush()\n"
    "apply(sys.argv[1], backup=False, progress=progress)\n"
)


def _start(path, env):
    proc = subprocess.Popen([sys.executable, "-c", KILL_SCRIPT, path], env=env, stdout=subprocess.PIPE, text=True)
    assert proc.stdout.readline() == "go\n"
    return proc


def _state(path, old_structure, old_digests):
    """'old' or 'new'; fails the test when the file is neither."""
    conn = sqlite3.connect(path)
    try:
        assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        found = structure.read_structure(conn)
        digests = {t: legacy.row_digest(conn, t, cols) for t, (cols, _) in old_digests.items()}
    finally:
        conn.close()
    assert digests == {t: d for t, (_, d) in old_digests.items()}, "rows changed"
    if found == old_structure:
        return "old"
    problems = [m for k, m in structure.compare(expected_structure(SCHEMA), found) if k != "extra"]
    assert problems == [], "neither old nor new: %s" % problems[:3]
    return "new"


def _kill_trials(source, tmp_path, trials, seed):
    conn = sqlite3.connect(source)
    old_structure = structure.read_structure(conn)
    old_digests = {}
    for (t,) in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%'"):
        cols = [r[1] for r in conn.execute("SELECT * FROM pragma_table_xinfo(?)", (t,))]
        old_digests[t] = (cols, legacy.row_digest(conn, t, cols))
    conn.close()
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    # calibrate: how long does an uninterrupted apply take here?
    calib = str(tmp_path / "calibrate.db")
    shutil.copy(source, calib)
    proc = _start(calib, env)
    start = time.perf_counter()
    assert proc.wait() == 0
    duration = time.perf_counter() - start
    assert _state(calib, old_structure, old_digests) == "new"
    rng = random.Random(seed)
    outcomes = []
    for i in range(trials):
        path = str(tmp_path / ("kill-%d.db" % i))
        shutil.copy(source, path)
        proc = _start(path, env)
        time.sleep(rng.uniform(0.0, duration * 1.2))
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        proc.stdout.close()
        outcomes.append(_state(path, old_structure, old_digests))
        for suffix in ("", "-wal", "-shm"):
            if os.path.exists(path + suffix):
                os.remove(path + suffix)
    return outcomes


@pytest.fixture(scope="module")
def big_retrofitted(tmp_path_factory):
    return legacy.create(str(tmp_path_factory.mktemp("kill") / "big.db"), "retrofitted", tasks=20000)


def test_sigkill_at_random_moments_leaves_old_or_new(big_retrofitted, tmp_path):
    outcomes = _kill_trials(big_retrofitted, tmp_path, trials=20, seed=20261126)
    assert len(outcomes) == 20 and set(outcomes) <= {"old", "new"}


@pytest.mark.slow
def test_sigkill_many_trials_on_a_large_file(tmp_path):
    source = legacy.create(str(tmp_path / "large.db"), "retrofitted", tasks=200000)
    outcomes = _kill_trials(source, tmp_path, trials=100, seed=7)
    assert set(outcomes) <= {"old", "new"}
    assert "old" in outcomes and "new" in outcomes


def test_failure_after_commit_keeps_the_new_file(tmp_path, monkeypatch):
    """Only a file still empty is removed: what was committed stays."""
    import schema_dsl.migrate.apply as apply_module

    def broken(conn, files):
        raise Injected("after commit")
    monkeypatch.setattr(apply_module, "_finish_connection", broken)
    path = tmp_path / "new.db"
    with pytest.raises(Injected):
        apply(str(path))
    conn = sqlite3.connect(path)
    assert conn.execute("SELECT count(*) FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%'").fetchone()[0] == 9


# --- removals and renames (Milestone 2: seven indexes removed, a column renamed, a table rebuilt) ---------------

@pytest.fixture(scope="module")
def m1_with_rows(tmp_path_factory):
    path = legacy.create(str(tmp_path_factory.mktemp("m2faults") / "m1.db"), "old", tasks=300)
    apply(path, backup=False)
    conn = sqlite3.connect(path)
    conn.execute("INSERT INTO memory_entries (namespace, key, value, memory_type, created_by) "
                 "VALUES ('user:a', 'k', '{}', 'semantic', 'alice')")
    conn.commit()
    conn.close()
    return path


def _m2():
    from schema_dsl.compile.project import load_declaration
    return load_declaration(str(ROOT / "examples" / "abathur_m2.py"))


def test_error_at_every_statement_of_removals_and_a_rename_leaves_the_file_unchanged(m1_with_rows, tmp_path):
    m2 = _m2()
    n = len(plan_database(m1_with_rows, schema=m2).statements)
    assert n > 15
    for k in range(n + 2):  # every statement, then the checks before COMMIT and the COMMIT
        path = str(tmp_path / ("m2-%d.db" % k))
        shutil.copy(m1_with_rows, path)
        data, logical = Path(path).read_bytes(), content(path)
        with pytest.raises(Injected):
            apply(path, schema=m2, backup=False, progress=_fail_at(k))
        assert Path(path).read_bytes() == data, "statement %d changed the file" % k
        assert content(path) == logical
        os.remove(path)


M2_KILL_SCRIPT = (
    "import sys\n"
    "from schema_dsl.compile.project import load_declaration\n"
    "from schema_dsl.migrate.apply import apply\n"
    "m2 = load_declaration(sys.argv[2])\n"
    "said = []\n"
    "def progress(n, step, stmt):\n"
    "    if not said:\n"
    "        said.append(1); sys.stdout.write('go\\n'); sys.stdout.flush()\n"
    "apply(sys.argv[1], schema=m2, backup=False, progress=progress)\n"
)


def test_sigkill_during_removals_and_a_rename_leaves_old_or_new(tmp_path):
    source = legacy.create(str(tmp_path / "big.db"), "old", tasks=20000)
    apply(source, backup=False)
    m2 = _m2()
    new_structure = expected_structure(m2)
    conn = sqlite3.connect(source)
    old_structure = structure.read_structure(conn)
    counts = {t: conn.execute('SELECT count(*) FROM "%s"' % t).fetchone()[0]
              for (t,) in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%'")}
    conn.close()
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    args = [sys.executable, "-c", M2_KILL_SCRIPT]
    rng = random.Random(11)
    outcomes = []
    for i in range(8):
        path = str(tmp_path / ("kill-%d.db" % i))
        shutil.copy(source, path)
        proc = subprocess.Popen(args + [path, str(ROOT / "examples" / "abathur_m2.py")], env=env,
                                stdout=subprocess.PIPE, text=True)
        assert proc.stdout.readline() == "go\n"
        time.sleep(rng.uniform(0.0, 0.15))
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        proc.stdout.close()
        conn = sqlite3.connect(path)
        assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        found = structure.read_structure(conn)
        assert {t: conn.execute('SELECT count(*) FROM "%s"' % t).fetchone()[0] for t in counts} == counts
        conn.close()
        if found == old_structure:
            outcomes.append("old")
        else:
            assert [m for k, m in structure.compare(new_structure, found) if k != "extra"] == [], "neither old nor new"
            outcomes.append("new")
    assert set(outcomes) <= {"old", "new"}


def test_a_commit_that_fails_is_one_error_saying_nothing_changed(tmp_path, monkeypatch):
    """A COMMIT that fails (a full disk: SQLite rolls the transaction back) did not commit: before, the
    sqlite3 error escaped as a traceback, exit 1, and the backup of the unchanged file was kept."""
    from schema_dsl.errors import DatabaseFileError
    from schema_dsl.migrate import apply as apply_module
    from schema_dsl.sqlite import dbfile
    path = legacy.create(str(tmp_path / "old.db"), "old", tasks=20)
    before = content(path)

    class FullDisk(sqlite3.Connection):
        def execute(self, sql, *args):
            if sql == "COMMIT":
                super().execute("ROLLBACK")
                raise sqlite3.OperationalError("database or disk is full")
            return super().execute(sql, *args)

    def connect(p, busy_timeout_ms=dbfile.DEFAULT_BUSY_TIMEOUT_MS):
        conn = sqlite3.connect(dbfile.uri(p), uri=True, timeout=busy_timeout_ms / 1000.0, isolation_level=None,
                               factory=FullDisk)
        conn.execute("PRAGMA busy_timeout = %d" % busy_timeout_ms)
        return conn
    monkeypatch.setattr(apply_module.dbfile, "connect", connect)
    with pytest.raises(DatabaseFileError) as exc:
        apply(path, backup=True)
    assert "COMMIT failed" in str(exc.value) and "nothing was changed" in str(exc.value)
    assert content(path) == before
    assert sorted(os.listdir(tmp_path)) == ["old.db"]  # the backup of the unchanged file is not kept
