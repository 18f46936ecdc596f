"""Ctrl-C tells the truth: a real SIGINT to a real process at every point of apply.

Before COMMIT: exit 130, "nothing was changed", and the file is as it was. From COMMIT on: exit 3, the message
says what is committed. Once the command is done, a late Ctrl-C changes neither its output nor its exit code
(and never kills the process by the signal). With several --db, a Ctrl-C in the second file exits 3 and names
the first, which is committed (text, --json, and at the data-loss question).
"""
from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
DRIVER = str(Path(__file__).resolve().parent / "interrupt_driver.py")


def interrupt_at(point, args, cwd):
    """Run schemagen under the driver, send SIGINT when it reaches point; (exit code, stdout, stderr)."""
    env = dict(os.environ, PYTHONPATH=str(ROOT), NO_COLOR="1")
    proc = subprocess.Popen([sys.executable, DRIVER, point] + args, cwd=str(cwd), env=env, stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    seen = []
    for line in proc.stderr:
        seen.append(line)
        if line.startswith("@@"):
            break
    assert seen and seen[-1].startswith("@@"), "never reached %s: %s" % (point, "".join(seen))
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=60)
    proc.stdin.close()
    return proc.returncode, out, "".join(seen[:-1]) + err


def tables(path):
    if not os.path.exists(path):
        return set()
    conn = sqlite3.connect(path)
    try:
        return {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
    finally:
        conn.close()


@pytest.mark.parametrize("point", ["begin", "steps"])
def test_ctrl_c_before_commit_exits_130_and_nothing_changed(point, tmp_path):
    db = tmp_path / "new.db"
    code, out, err = interrupt_at(point, ["apply", "--db", str(db), "--schema", "abathur"], tmp_path)
    assert code == 130, err
    assert err.strip().splitlines()[-1] == "error: interrupted; nothing was changed"
    assert "Traceback" not in err
    assert not db.exists() and not tables(str(db))


@pytest.mark.parametrize("point", ["commit", "committed", "wal", "report"])
def test_ctrl_c_from_commit_on_exits_3_and_says_committed(point, tmp_path):
    db = tmp_path / "new.db"
    code, out, err = interrupt_at(point, ["apply", "--db", str(db), "--schema", "abathur"], tmp_path)
    assert code == 3, err
    last = err.strip().splitlines()[-1]
    assert last.startswith("error: interrupted after the change to %s was committed" % db), err
    assert "nothing was changed" not in err and "Traceback" not in err
    assert "tasks" in tables(str(db))


def test_a_late_ctrl_c_leaves_the_finished_command_alone(tmp_path):
    db = tmp_path / "new.db"
    code, out, err = interrupt_at("exit", ["apply", "--db", str(db), "--schema", "abathur"], tmp_path)
    assert code == 0, err  # not killed by the signal (-2), not 130
    assert out.startswith("created %s" % db)
    assert "interrupted" not in err


@pytest.mark.parametrize("as_json", [False, True])
def test_ctrl_c_in_the_second_file_exits_3_naming_the_first(as_json, tmp_path):
    a, b = tmp_path / "a.db", tmp_path / "b.db"
    args = ["apply", "--db", str(a), "--db", str(b), "--schema", "abathur"] + (["--json"] if as_json else [])
    code, out, err = interrupt_at("begin#2", args, tmp_path)
    assert code == 3, err
    assert "error: interrupted at %s, nothing changed there; already committed: %s" % (b, a) in err
    assert "tasks" in tables(str(a)) and not b.exists()
    if as_json:
        results = {r["database"]: r for r in json.loads(out)}
        assert results[str(a)]["exit_code"] == 0 and results[str(a)]["applied"] is True
        assert results[str(b)]["exit_code"] == 130
    else:
        assert "%s  130  interrupted" % b in out


def test_ctrl_c_at_the_data_loss_question_of_the_second_file(tmp_path):
    a, b = tmp_path / "a.db", tmp_path / "b.db"
    subprocess.run([sys.executable, "-m", "schema_dsl", "apply", "--db", str(b), "--schema", "abathur", "--no-validate"],
                   cwd=str(tmp_path), env=dict(os.environ, PYTHONPATH=str(ROOT)), check=True, capture_output=True)
    conn = sqlite3.connect(b)
    conn.execute("CREATE TABLE junk (x)")
    conn.execute("INSERT INTO junk VALUES (1)")
    conn.commit()
    conn.close()
    args = ["apply", "--db", str(a), "--db", str(b), "--schema", "abathur", "--prune", "--allow-data-loss"]
    code, out, err = interrupt_at("question", args, tmp_path)
    assert code == 3, err
    assert "already committed: %s" % a in err
    assert "tasks" in tables(str(a)) and "junk" in tables(str(b))


def _structure_and_rows(path):
    from schema_dsl.sqlite import structure
    conn = sqlite3.connect(path)
    try:
        rows = conn.execute("SELECT count(*) FROM tasks").fetchone()[0]
        return structure.read_structure(conn), rows
    finally:
        conn.close()


def test_ctrl_c_at_random_moments_is_always_answered_truthfully(tmp_path):
    """The attack of issue 15.5: SIGINT after a random delay into `schemagen apply` on a file with rows. Whatever
    the moment, the exit code matches the file: 130 (or 0 before anything ran) and the old structure, or 3/0 and
    the new one; never a process killed by the signal, never 'nothing was changed' beside a committed change."""
    import random
    import shutil
    import time
    import legacy
    from schema_dsl.sqlite import structure
    from schema_dsl.analysis.compare import expected_structure
    from schema_dsl.abathur import SCHEMA
    source = legacy.create(str(tmp_path / "source.db"), "retrofitted", tasks=20000)
    old, rows = _structure_and_rows(source)
    env = dict(os.environ, PYTHONPATH=str(ROOT), NO_COLOR="1")
    # the CLI once its modules are imported (a Ctrl-C while Python imports them is Python's own, before any
    # of schemagen runs): it says "ready" on stderr, and the random delay starts there
    args = [sys.executable, "-c", "import sys; from schema_dsl.cli import main; sys.stderr.write('ready\\n'); "
            "sys.stderr.flush(); sys.argv[0] = 'schemagen'; main()", "apply", "--schema", "abathur", "--no-backup",
            "--db"]

    def start(path):
        proc = subprocess.Popen(args + [path], env=env, cwd=str(tmp_path), stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, text=True)
        assert proc.stderr.readline() == "ready\n"
        return proc

    calib = str(tmp_path / "calibrate.db")
    shutil.copy(source, calib)
    proc = start(calib)
    started = time.perf_counter()
    proc.communicate(timeout=120)
    assert proc.returncode == 0
    duration = time.perf_counter() - started
    rng = random.Random(20261203)
    seen = set()
    for trial in range(12):
        path = str(tmp_path / ("t%d.db" % trial))
        shutil.copy(source, path)
        proc = start(path)
        time.sleep(rng.uniform(0.0, 1.1) * duration)
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=120)
        found, count = _structure_and_rows(path)
        assert count == rows
        new = not [m for k, m in structure.compare(expected_structure(SCHEMA), found) if k != "extra"]
        assert new or found == old, "neither old nor new"
        seen.add(proc.returncode)
        assert proc.returncode in (0, 3, 130), (proc.returncode, err)  # never killed by the signal (-2)
        if proc.returncode == 130:
            assert not new and "nothing was changed" in err, err
        elif proc.returncode == 3:
            assert new and "committed" in err and "nothing was changed" not in err, err
        else:
            assert new and "interrupted" not in err  # the signal came after the end: ignored
    assert seen - {0}, "no trial was interrupted: the delays missed the run"


def test_ctrl_c_during_restores_copy_exits_3_and_keeps_the_state_before(tmp_path):
    # the backup API copy runs in C: a Ctrl-C during it is raised when it returns, with the file already
    # restored. Before, restore took it for a failed copy: it deleted the backup of the state before the
    # restore (that state's only copy) and said "interrupted; nothing was changed", exit 130
    db, old = str(tmp_path / "app.db"), str(tmp_path / "old.db")
    for path, rows in ((db, 5), (old, 2)):
        conn = sqlite3.connect(path)
        conn.execute("CREATE TABLE t (id INTEGER PRIMARY KEY)")
        conn.executemany("INSERT INTO t VALUES (?)", [(i,) for i in range(rows)])
        conn.commit()
        conn.close()
    code, out, err = interrupt_at("restored", ["restore", "--db", db, "--backup", old, "--other-database"], tmp_path)
    assert code == 3, err
    assert "nothing was changed" not in err and "Traceback" not in err
    conn = sqlite3.connect(db)
    assert conn.execute("SELECT count(*) FROM t").fetchone()[0] == 2  # restored
    conn.close()
    saved = [p for p in tmp_path.iterdir() if ".backup-" in p.name and not p.name.endswith(".json")]
    assert len(saved) == 1  # the state before the restore is kept
    conn = sqlite3.connect(str(saved[0]))
    assert conn.execute("SELECT count(*) FROM t").fetchone()[0] == 5
    conn.close()


def test_ctrl_c_while_the_cli_is_still_loading_is_one_line_and_130(tmp_path):
    # before the CLI's own SIGINT handler is installed, a Ctrl-C used to print a KeyboardInterrupt traceback
    # (exit 1 from the interpreter); the entry point answers it like any interrupt before a change
    loader = (
        "import os, sys, time\n"
        "class Slow:\n"
        "    def find_spec(self, name, path=None, target=None):\n"
        "        if name == 'schema_dsl.cli':\n"
        "            sys.stderr.write('@@ loading\\n'); sys.stderr.flush(); time.sleep(30)\n"
        "        return None\n"
        "sys.meta_path.insert(0, Slow())\n"
        "sys.argv = ['schemagen', 'apply', '--db', sys.argv[1]]\n"
        "from schema_dsl.__main__ import run\n"
        "run()\n")
    db = tmp_path / "new.db"
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    proc = subprocess.Popen([sys.executable, "-c", loader, str(db)], cwd=str(tmp_path), env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    assert proc.stderr.readline().startswith("@@"), "never reached the import"
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, err
    assert err.strip() == "error: interrupted; nothing was changed"
    assert not db.exists()
