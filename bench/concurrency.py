"""Readers and a writer on a WAL file while Database.initialize() runs in another process.

    python bench/concurrency.py drive DB READERS SECONDS OUT_DIR

drive starts READERS reader processes and one writer, all of which run from
a common start time for SECONDS; a third of the way in, another process runs
`Database(DB).initialize()` (schema_dsl.database; where that class does not
exist yet, `schema_dsl.migrate.apply.apply(DB, backup=False)`, and the result says
so). Readers run the old code's reads (a task by id, a state value, a task's
audit trail); the writer runs the old code's writes (an audit insert and a
state upsert per transaction). Every operation's start and latency is kept;
drive prints JSON: throughput and the longest single operation (the longest
stall), for the operations that overlap the initialize call and for the
others, and the initializer's
duration and outcome.
"""
import array
import json
import os
import random
import sqlite3
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))


def _connect(path):
    conn = sqlite3.connect(path, isolation_level=None, timeout=5.0)
    conn.execute("PRAGMA busy_timeout = 5000")
    conn.execute("PRAGMA synchronous = NORMAL")
    conn.execute("PRAGMA foreign_keys = ON")
    return conn


def _wait_until(t):
    while True:
        now = time.monotonic()
        if now >= t:
            return
        time.sleep(min(0.01, t - now))


def _loop(path, start, seconds, out, op):
    conn = _connect(path)
    tasks = conn.execute("SELECT count(*) FROM tasks").fetchone()[0] or 1
    rnd = random.Random(os.getpid())
    starts, lats = array.array("d"), array.array("d")
    errors = 0
    _wait_until(start)
    end = start + seconds
    while True:
        t0 = time.monotonic()
        if t0 >= end:
            break
        try:
            op(conn, rnd, tasks)
        except sqlite3.Error:
            errors += 1
            if conn.in_transaction:
                conn.execute("ROLLBACK")
        starts.append(t0)
        lats.append(time.monotonic() - t0)
    conn.close()
    with open(out, "wb") as fh:
        fh.write(len(starts).to_bytes(8, "little"))
        starts.tofile(fh)
        lats.tofile(fh)
        fh.write(errors.to_bytes(8, "little"))


def read_op(conn, rnd, tasks):
    task = "task-%d" % rnd.randrange(tasks)
    kind = rnd.randrange(3)
    if kind == 0:
        conn.execute("SELECT * FROM tasks WHERE id = ?", (task,)).fetchall()
    elif kind == 1:
        conn.execute("SELECT value FROM state WHERE task_id=? AND key=?", (task, "k0")).fetchall()
    else:
        conn.execute("SELECT * FROM audit WHERE task_id = ? ORDER BY timestamp DESC LIMIT 10", (task,)).fetchall()


def write_op(conn, rnd, tasks):
    task = "task-%d" % rnd.randrange(tasks)
    conn.execute("BEGIN IMMEDIATE")
    conn.execute("INSERT INTO audit (timestamp, agent_id, task_id, action_type, action_data, result) "
                 "VALUES (?, ?, ?, ?, ?, ?)", ("2026-01-01 00:00:00", None, task, "bench", "{}", "ok"))
    conn.execute("INSERT INTO state (task_id, key, value, created_at, updated_at) VALUES (?, ?, ?, ?, ?) "
                 "ON CONFLICT(task_id, key) DO UPDATE SET value=excluded.value, updated_at=excluded.updated_at",
                 (task, "bench", '"%d"' % rnd.randrange(1000), "2026-01-01", "2026-01-01"))
    conn.execute("COMMIT")


def init(path, start, out):
    """Run Database.initialize() (or apply where Database does not exist yet) at `start`."""
    try:
        from schema_dsl import Database
        how = "Database.initialize()"
    except (ImportError, AttributeError):
        Database = None
        from schema_dsl.migrate.apply import apply
        how = "schema_dsl.migrate.apply.apply() (schema_dsl.database not available)"
    _wait_until(start)
    t0 = time.monotonic()
    error = None
    try:
        if Database is not None:
            import asyncio
            import inspect

            async def run():
                db = Database(path)
                try:
                    await db.initialize()
                finally:
                    close = getattr(db, "close", None)
                    if close is not None:
                        r = close()
                        if inspect.isawaitable(r):
                            await r
            asyncio.run(run())
        else:
            apply(path, backup=False)
    except Exception as exc:  # reported, not raised: the measure goes on
        error = "%s: %s" % (type(exc).__name__, exc)
    t1 = time.monotonic()
    with open(out, "w") as fh:
        json.dump({"start": t0, "end": t1, "how": how, "error": error}, fh)


def _read_ops(path):
    with open(path, "rb") as fh:
        n = int.from_bytes(fh.read(8), "little")
        starts, lats = array.array("d"), array.array("d")
        starts.fromfile(fh, n)
        lats.fromfile(fh, n)
        errors = int.from_bytes(fh.read(8), "little")
    return starts, lats, errors


def _window_stats(starts, lats, lo, hi):
    """Operations that overlap [lo, hi): one that started just before and waited through it counts."""
    sel = [lat for s, lat in zip(starts, lats) if s < hi and s + lat > lo]
    span = max(hi - lo, 1e-9)
    return {"ops": len(sel), "ops_per_s": len(sel) / span, "max_s": max(sel) if sel else 0.0,
            "p99_s": sorted(sel)[int(len(sel) * 0.99)] if sel else 0.0}


def drive(path, readers, seconds, out_dir):
    os.makedirs(out_dir, exist_ok=True)
    env = dict(os.environ)
    me = [sys.executable, os.path.abspath(__file__)]
    start = time.monotonic() + 1.0 + 0.04 * readers  # time for every process to start and connect
    procs = []
    for i in range(readers):
        procs.append(subprocess.Popen(me + ["reader", path, repr(start), repr(seconds), os.path.join(out_dir, "r%d.bin" % i)], env=env))
    procs.append(subprocess.Popen(me + ["writer", path, repr(start), repr(seconds), os.path.join(out_dir, "w.bin")], env=env))
    init_at = start + seconds / 3.0
    procs.append(subprocess.Popen(me + ["init", path, repr(init_at), os.path.join(out_dir, "init.json")], env=env))
    codes = [p.wait() for p in procs]
    with open(os.path.join(out_dir, "init.json")) as fh:
        info = json.load(fh)
    lo, hi = info["start"], info["end"]
    # "during" is the initialize call, widened to 50 ms so that a fast one still has a window
    hi = max(hi, lo + 0.05)
    result = {"readers": readers, "seconds": seconds, "init": info, "exit_codes_ok": all(c == 0 for c in codes),
              "init_seconds": info["end"] - info["start"]}
    for role, files in (("read", ["r%d.bin" % i for i in range(readers)]), ("write", ["w.bin"])):
        starts, lats, errors = array.array("d"), array.array("d"), 0
        for f in files:
            s, l_, e = _read_ops(os.path.join(out_dir, f))
            starts.extend(s)
            lats.extend(l_)
            errors += e
        during = _window_stats(starts, lats, lo, hi)
        # outside: the operations that do not overlap the initialize call at all
        before = _window_stats([x for x, l_ in zip(starts, lats) if x + l_ <= lo], [l_ for x, l_ in zip(starts, lats) if x + l_ <= lo], start, lo)
        after = _window_stats([x for x in starts if x >= hi], [l_ for x, l_ in zip(starts, lats) if x >= hi], hi, start + seconds)
        outside_ops = before["ops"] + after["ops"]
        outside_span = (lo - start) + (start + seconds - hi)
        result[role] = {
            "errors": errors,
            "total_ops": len(starts),
            "ops_per_s": len(starts) / seconds,
            "during": during,
            "outside": {"ops_per_s": outside_ops / max(outside_span, 1e-9),
                        "max_s": max(before["max_s"], after["max_s"]),
                        "p99_s": max(before["p99_s"], after["p99_s"])},
            "longest_s": max(lats) if lats else 0.0,
        }
    print(json.dumps(result))


if __name__ == "__main__":
    role = sys.argv[1]
    if role == "drive":
        drive(sys.argv[2], int(sys.argv[3]), float(sys.argv[4]), sys.argv[5])
    elif role == "reader":
        _loop(sys.argv[2], float(sys.argv[3]), float(sys.argv[4]), sys.argv[5], read_op)
    elif role == "writer":
        _loop(sys.argv[2], float(sys.argv[3]), float(sys.argv[4]), sys.argv[5], write_op)
    elif role == "init":
        init(sys.argv[2], float(sys.argv[3]), sys.argv[4])
