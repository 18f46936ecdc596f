"""Shared helpers of the benchmark suite: paths, SQL files, fixtures, timing.

Everything here uses the standard library plus the project's own code
(tests/legacy.py for the old-shape databases), so `python bench/run.py
--quick` runs wherever the project is installed.
"""
from __future__ import annotations

import os
import shutil
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

BENCH = Path(__file__).resolve().parent
ROOT = BENCH.parent
sys.path.insert(0, str(BENCH))
from sqlfiles import (GENERATED, INDEX_FILE, OLD_INDEXES, TABLE_FILES, generated_text,  # noqa: E402,F401
                      index_statements, index_table, pragma_statements, split_sql, table_statement)


# --------------------------------------------------------------------------- fixtures

def remove_db(path):
    for suffix in ("", "-wal", "-shm", "-journal"):
        p = str(path) + suffix
        if os.path.exists(p):
            os.remove(p)


def build_legacy(path, shape, tasks, agents=None, rows=None):
    """An old-shape database built as fast as SQLite allows, then switched to WAL like the old code's files."""
    sys.path.insert(0, str(ROOT / "tests"))
    try:
        import legacy
    finally:
        sys.path.pop(0)
    remove_db(path)
    conn = sqlite3.connect(str(path), isolation_level=None)
    conn.execute("PRAGMA journal_mode = OFF")
    conn.execute("PRAGMA synchronous = OFF")
    conn.execute("PRAGMA cache_size = -1000000")
    legacy.create(conn, shape, tasks=tasks, agents=agents, rows=rows, wal=False)
    conn.execute("PRAGMA journal_mode = WAL")
    conn.close()
    return path


def settle(path):
    """fsync a file (not measured): its pages are on disk, as a user's database long written is."""
    fd = os.open(str(path), os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
    return path


def copy_db(src, dst):
    """A copy of a closed, checkpointed database file (its WAL is gone once closed)."""
    remove_db(dst)
    shutil.copy(str(src), str(dst))
    return dst


# --------------------------------------------------------------------------- processes

def schemagen_command():
    exe = Path(sys.executable).parent / "schemagen"
    if exe.exists():
        return [str(exe)]
    return [sys.executable, "-c", "import sys; from schema_dsl.cli import main; sys.exit(main())"]


class Run:
    __slots__ = ("seconds", "maxrss_kib", "returncode", "stdout", "stderr", "cpu_seconds")

    def __init__(self, seconds, maxrss_kib, returncode, stdout, stderr, cpu_seconds=None):
        self.seconds, self.maxrss_kib, self.returncode = seconds, maxrss_kib, returncode
        self.stdout, self.stderr, self.cpu_seconds = stdout, stderr, cpu_seconds

    @property
    def maxrss_mib(self):
        return self.maxrss_kib / 1024.0


def run_process(cmd, env=None, capture=False):
    """Run cmd as a whole process: wall time, peak RSS, exit code (and its output when capture).

    The command runs under bench/launch.py, which forks it and reaps it with
    wait4: the time is from fork to exit, the RSS that child's own ru_maxrss.
    """
    out = tempfile.TemporaryFile() if capture else subprocess.DEVNULL
    err = tempfile.TemporaryFile()  # always kept: a failing side must say why
    fd, report = tempfile.mkstemp(prefix="bench-launch-")
    os.close(fd)
    try:
        full = [sys.executable, str(BENCH / "launch.py"), report, *map(str, cmd)]
        if not os.path.isabs(full[3]):
            full[3] = shutil.which(full[3]) or full[3]
        launcher = subprocess.run(full, stdout=out, stderr=err, env=env, cwd=str(ROOT))
        with open(report) as fh:
            text = fh.read().split()
    finally:
        os.remove(report)
    if launcher.returncode != 0 or len(text) != 4:
        raise RuntimeError("launcher failed for %r" % (cmd,))
    seconds, maxrss, code, cpu = float(text[0]), int(text[1]), int(text[2]), float(text[3])
    stdout = b""
    if capture:
        out.seek(0)
        stdout = out.read()
        out.close()
    err.seek(0)
    stderr = err.read()
    err.close()
    return Run(seconds, maxrss, code, stdout.decode("utf-8", "replace"), stderr.decode("utf-8", "replace"), cpu)


def python_cmd(script, *args):
    return [sys.executable, str(BENCH / script), *map(str, args)]


# --------------------------------------------------------------------------- statistics

def summary(values):
    values = list(values)
    if not values:
        return {"n": 0, "median": float("nan"), "min": float("nan"), "max": float("nan")}
    return {"n": len(values), "median": statistics.median(values), "min": min(values), "max": max(values)}


def percentile(values, p):
    """Nearest-rank percentile (p in 0..100) of a non-empty list."""
    s = sorted(values)
    if not s:
        return float("nan")
    k = max(0, min(len(s) - 1, int(round(p / 100.0 * len(s) + 0.5)) - 1))
    return s[k]


def fmt_s(x):
    if x != x:  # NaN
        return "n/a"
    if x < 0.001:
        return "%.0f µs" % (x * 1e6)
    if x < 1:
        return "%.1f ms" % (x * 1e3)
    return "%.2f s" % x


def fmt_range(summ):
    return "%s (%s – %s)" % (fmt_s(summ["median"]), fmt_s(summ["min"]), fmt_s(summ["max"]))


# --- shared by run.py and the measures it runs (pg_transfer.py standalone): here, so none imports run.py

def log(msg):
    print("[bench %s] %s" % (time.strftime("%H:%M:%S"), msg), file=sys.stderr, flush=True)


def child_env(work):
    """The environment of every measured process: bytecode cached (as in an installed package), in the scratch folder."""
    env = dict(os.environ)
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    env.pop("PYTHONPROFILEIMPORTTIME", None)
    env["PYTHONPYCACHEPREFIX"] = str(work / "pycache")
    return env


def alternate(sides, runs, warmup, prepare=None, after=None):
    """Run each side (name -> callable returning a Run) `warmup + runs` times, rotating the order each round."""
    names = list(sides)
    out = {n: [] for n in names}
    for rnd in range(warmup + runs):
        k = rnd % len(names)
        for name in names[k:] + names[:k]:
            if prepare:
                prepare(name)
            r = sides[name]()
            if r.returncode != 0:
                raise RuntimeError("%s exited %d: %s" % (name, r.returncode, (r.stderr or "")[-500:]))
            if rnd >= warmup:
                out[name].append(r)
            if after:
                after(name)
    return out


def times(runs):
    return summary([r.seconds for r in runs])


def cpu_times(runs):
    """The children's CPU time (user + system), where the launcher measured it."""
    return summary([r.cpu_seconds for r in runs if r.cpu_seconds is not None])


def ratio(a, b):
    return a["median"] / b["median"] if b["median"] else float("nan")
