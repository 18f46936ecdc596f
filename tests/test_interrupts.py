"""Ctrl-C tells the truth (issue 15, items 5 and 6): a real SIGINT to a real process at every point of apply.

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
