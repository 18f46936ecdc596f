"""The application's longest wait while `schemagen apply` and `apply --online` change a big table.

    python bench/online.py [--rows 1000000] [--journal wal|delete] [--modes plain,online]

A table `items` of --rows rows gets a CHECK, a NOT NULL and an index (a rebuild). For each mode a fresh copy
of the file is made; a writer process (an INSERT, or an UPDATE of a random row, every 5-10 ms, each its own
transaction) and a reader process (a row by id every 5-10 ms) start, then `schemagen apply [--online]
--no-backup --no-validate` runs in another process. Reported per mode: the apply's exit code and seconds, the
longest single operation of the writer and of the reader that overlapped the apply, their errors, and
whether every insert the writer saw committed is in the result (acknowledged writes lost). Prints JSON.
The workers run IDLE_SECONDS before the apply starts: their longest wait then (`idle_longest_wait_ms`) is what the
application waits on this machine with no apply running (its own writer's commits, the load). Under --online the
apply's own record (apply --online --json) is reported too (`locks`): its longest write transactions and reads,
each with its start in seconds after the apply started, held, COMMIT, CPU and waiting-for-a-CPU time, so that a long
wait of the application can be set beside what schemagen held then. The writer runs each write as BEGIN IMMEDIATE,
the statement, COMMIT, and reports how long of each operation it waited for the write lock alone
(`longest_lock_wait_ms`; the rest is its own work and its COMMIT's fsync). Each of the `longest` operations is
[seconds after the apply's start, ms, error, ms waiting for the write lock, ms of its COMMIT, ms its process waited
for a CPU, WAL frames some checkpoint copied during its COMMIT (M2 writer)]; `over_100ms` counts them. The workers
connect as a Python application does by default (sqlite3.connect's timeout, here 5 s: SQLite's own busy handler,
which sleeps 1, 2, 5, 10, 15, 20, 25, 25, 25, 50, 50, 100 ms between tries), with synchronous at SQLite's default
(FULL), and run in a session of their own, as the apply does (--same-session: all in the bench's session).

    python bench/online.py --m2 [--tasks 1000000] [--modes plain,online,handwritten]

Milestone 2 (examples/abathur_m2.py) on the Abathur data instead: an old-shape file of --tasks tasks
(bench/common.py's build_legacy: as many state, checkpoints, audit and metrics rows as tasks) migrated to
Milestone 1 by `schemagen apply`, then per mode a fresh copy changed while the application works: the writer
inserts a state row or a checkpoint of a random task, or updates a random state row, every 5-10 ms; the reader
reads a task's state rows or checkpoints. Modes: `plain` (`apply`), `online` (`apply --online`), both
`--no-backup --no-validate`, and `handwritten`: bench/handwritten_online_m2.py, the same change written by hand
the lock-aware way. Afterwards `schemagen validate` runs on the result (its exit code is reported).
"""
import argparse
import json
import os
import random
import shutil
import sqlite3
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)

DECLS = '''
from schema_dsl.model import Check, Column, Index, PrimaryKey, Schema, Table

def items(after):
    return Table("items", columns=[Column("id", "INTEGER"), Column("qty", "INTEGER", not_null=after),
                                   Column("note", "TEXT")],
                 primary_key=PrimaryKey(("id",)), checks=[Check("qty >= 0")] if after else [])

BEFORE = Schema(name="bench", tables=[items(False)])
AFTER = Schema(name="bench", tables=[items(True)], indexes=[Index("items_qty", "items", ["qty"])])
'''


def _connect(path):
    conn = sqlite3.connect(path, isolation_level=None, timeout=5.0)
    conn.execute("PRAGMA busy_timeout = 5000")
    conn.execute("PRAGMA foreign_keys = ON")
    return conn


def m2_worker(role, path, stop, out):
    """As worker, on the Abathur tables Milestone 2 changes (state is rebuilt, checkpoints gets an index)."""
    conn = _connect(path)
    rnd = random.Random(os.getpid())
    tasks = conn.execute("SELECT count(*) FROM tasks").fetchone()[0]
    top = conn.execute("SELECT max(id) FROM state").fetchone()[0]
    ops, acked = [], []
    n = 0
    shm = _open_shm(path) if role == "writer" else None
    while not os.path.exists(stop):
        t0 = time.time()
        ok = True
        task = "task-%d" % rnd.randrange(tasks)
        lock = commit = copied = None
        sched = _sched()
        try:
            if role == "writer":
                n += 1
                lock = _begin(conn)
                pick = rnd.random()
                if pick < 0.35:
                    key = "app-%d-%d" % (os.getpid(), n)
                    conn.execute("INSERT INTO state (task_id, key, value, created_at, updated_at) VALUES "
                                 "(?, ?, '1', datetime('now'), datetime('now'))", (task, key))
                    acked.append(["state", task, key])
                elif pick < 0.7:
                    it = 1000000 + n
                    conn.execute("INSERT INTO checkpoints (task_id, iteration, state, created_at) VALUES "
                                 "(?, ?, '{}', datetime('now'))", (task, it))
                    acked.append(["checkpoints", task, it])
                else:
                    conn.execute("UPDATE state SET value = ?, updated_at = datetime('now') WHERE id = ?",
                                 (str(n), rnd.randrange(1, top)))
                commit, copied = _commit(conn, shm)
            elif rnd.random() < 0.5:
                conn.execute("SELECT * FROM state WHERE task_id = ?", (task,)).fetchall()
            else:
                conn.execute("SELECT * FROM checkpoints WHERE task_id = ?", (task,)).fetchall()
        except sqlite3.Error as exc:
            ok = str(exc)
            if conn.in_transaction:
                conn.execute("ROLLBACK")
        ops.append((t0, time.time() - t0, ok, lock, commit, _runnable(sched), copied))
        time.sleep(rnd.uniform(0.005, 0.010))
    with open(out, "w") as f:
        json.dump({"ops": ops, "acked": acked}, f)


def _sched():
    """ns this process has waited for a CPU so far (/proc/thread-self/schedstat), None where unreadable."""
    try:
        with open("/proc/thread-self/schedstat") as f:
            return int(f.read().split()[1])
    except (OSError, ValueError, IndexError):
        return None


def _runnable(before):
    """Seconds this process waited for a CPU since _sched() gave before: of an operation, the machine's load."""
    now = _sched() if before is not None else None
    return (now - before) / 1e9 if now is not None else None


def _commit(conn, shm=None):
    """COMMIT: its seconds (the WAL or journal written and synced; an automatic checkpoint when the WAL has grown
    past wal_autocheckpoint; in rollback-journal mode the wait for readers to finish); with shm (the WAL's
    shared-memory file, open), also how many WAL frames some checkpoint copied to the database meanwhile (the
    application's own automatic one, or the apply's)."""
    before = _backfilled(shm)
    started = time.time()
    conn.execute("COMMIT")
    took = time.time() - started
    after = _backfilled(shm) if before is not None else None
    return took, (after - before if after is not None and after >= before else None)


def _backfilled(shm):
    """nBackfill of the WAL index (the frames checkpointed so far since the WAL restarted): the u32 at offset 96 of
    the -shm file, after its two 48-byte headers (SQLite's wal.c), in the machine's byte order."""
    if shm is None:
        return None
    data = os.pread(shm, 4, 96)
    return int.from_bytes(data, sys.byteorder) if len(data) == 4 else None


def _open_shm(path):
    try:
        return os.open(path + "-shm", os.O_RDONLY)
    except OSError:
        return None


def _begin(conn):
    """BEGIN IMMEDIATE, as the writer's own transaction: the seconds it waited for the write lock (the rest of the
    operation is its own work and its COMMIT's fsync)."""
    started = time.time()
    conn.execute("BEGIN IMMEDIATE")
    return time.time() - started


def make_m2_base(folder, tasks, journal):
    sys.path.insert(0, HERE)
    import common
    path = os.path.join(folder, "base.db")
    common.build_legacy(path, "old", tasks)
    subprocess.run([sys.executable, "-m", "schema_dsl", "apply", "--db", path, "--no-backup", "--no-validate"],
                   check=True, cwd=ROOT, stdout=subprocess.DEVNULL)
    conn = sqlite3.connect(path)
    conn.execute("PRAGMA journal_mode = %s" % journal)
    conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    conn.close()
    return path, os.path.join(ROOT, "examples", "abathur_m2.py")


def worker(role, path, stop, out):
    """Loop until the stop file exists: (start, seconds, ok) per operation, and the acknowledged insert ids."""
    conn = _connect(path)
    rnd = random.Random(os.getpid())
    top = conn.execute("SELECT max(id) FROM items").fetchone()[0]
    ops, acked = [], []
    while not os.path.exists(stop):
        t0 = time.time()
        ok = True
        lock = commit = None
        sched = _sched()
        try:
            if role == "writer":
                lock = _begin(conn)
                if rnd.random() < 0.5:
                    cur = conn.execute("INSERT INTO items (qty, note) VALUES (?, 'app')", (rnd.randrange(1000),))
                    commit = _commit(conn)[0]
                    acked.append(cur.lastrowid)
                else:
                    conn.execute("UPDATE items SET qty = qty + 1 WHERE id = ?", (rnd.randrange(1, top),))
                    commit = _commit(conn)[0]
            else:
                conn.execute("SELECT * FROM items WHERE id = ?", (rnd.randrange(1, top),)).fetchall()
        except sqlite3.Error as exc:
            ok = str(exc)
            if conn.in_transaction:
                conn.execute("ROLLBACK")
        ops.append((t0, time.time() - t0, ok, lock, commit, _runnable(sched)))
        time.sleep(rnd.uniform(0.005, 0.010))
    with open(out, "w") as f:
        json.dump({"ops": ops, "acked": acked}, f)


def make_base(folder, rows, journal):
    decl = os.path.join(folder, "decl.py")
    with open(decl, "w") as f:
        f.write(DECLS)
    path = os.path.join(folder, "base.db")
    _remove(path)  # a kept folder's earlier base: the rows below would be added to it
    subprocess.run([sys.executable, "-m", "schema_dsl", "apply", "--db", path, "--schema", decl + ":BEFORE",
                    "--no-backup", "--no-validate"], check=True, cwd=ROOT, stdout=subprocess.DEVNULL)
    conn = sqlite3.connect(path)
    conn.execute("PRAGMA journal_mode = %s" % journal)
    rnd = random.Random(1)
    conn.executemany("INSERT INTO items (qty, note) VALUES (?, ?)",
                     ((rnd.randrange(1000), "note %d" % i) for i in range(rows)))
    conn.commit()
    conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    conn.close()
    return path, decl


def _remove(path):
    for suffix in ("", "-journal", "-wal", "-shm"):
        if os.path.exists(path + suffix):
            os.remove(path + suffix)


def _synced_copy(source, path):
    """Copy source to path and fsync the copy: a fresh copy leaves the whole file (855 MB for Milestone 2) dirty in
    the page cache, and the apply's first fsync of the database file (its first WAL checkpoint) would flush it all,
    holding the application's own fsyncs up to half a second (measured), a cost of this bench's copy, not of the
    apply. A journal, WAL or shared-memory file left beside path by a run that was killed is removed first: a hot
    journal of the old file would be rolled back into the copy (a malformed file, seen once)."""
    _remove(path)
    shutil.copy(source, path)
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


# the application's workers and the apply each run in a session of their own (setsid), as a service and a command
# typed in a shell do: Linux's autogroup scheduling (on by default) shares the CPU between sessions first, so in one
# session with the bench the apply and the application would compete for that one session's share of a loaded machine
# (--same-session: so, as every run before 2026-12-03 19:45 UTC did)
OWN_SESSIONS = True
APPLY_NICE = 0  # --apply-nice: the apply runs under nice -n this

IDLE_SECONDS = 5.0  # the workers run this long before the apply starts: their longest wait then is the baseline


def run_mode(folder, base, decl, mode, m2=False):
    path = os.path.join(folder, "%s.db" % mode)
    _synced_copy(base, path)
    stop = os.path.join(folder, "%s.stop" % mode)
    if os.path.exists(stop):  # a kept folder's earlier run
        os.remove(stop)
    procs = {role: subprocess.Popen([sys.executable, __file__, "--m2-worker" if m2 else "--worker", role, path, stop,
                                     os.path.join(folder, "%s.%s.json" % (mode, role))],
                              start_new_session=OWN_SESSIONS)
             for role in ("writer", "reader")}
    started = time.time()
    time.sleep(IDLE_SECONDS)
    if mode == "handwritten":
        cmd = [sys.executable, os.path.join(HERE, "handwritten_online_m2.py"), path]
    else:
        cmd = [sys.executable, "-m", "schema_dsl", "apply", "--db", path, "--schema", decl if m2 else decl + ":AFTER",
               "--no-backup", "--no-validate"] + (["--online", "--json"] if mode == "online" else [])
    if APPLY_NICE:
        cmd = ["nice", "-n", str(APPLY_NICE)] + cmd
    t0 = time.time()
    done = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, start_new_session=OWN_SESSIONS)
    t1 = time.time()
    time.sleep(1.0)
    open(stop, "w").close()
    for p in procs.values():
        p.wait()
    result = {"mode": mode, "exit": done.returncode, "seconds": round(t1 - t0, 2),
              "stderr": done.stderr.strip()[-300:]}
    acked = []
    for role in procs:
        with open(os.path.join(folder, "%s.%s.json" % (mode, role))) as f:
            data = json.load(f)
        during = [o for o in data["ops"] if o[0] + o[1] >= t0 and o[0] <= t1]
        result[role] = {"ops_during_apply": len(during),
                        "longest_wait_ms": round(1000 * max([o[1] for o in during] or [0]), 1),
                        "errors": sorted({o[2] for o in data["ops"] if o[2] is not True})}
        acked += data["acked"]
        result[role]["longest"] = _longest_ops(data["ops"], t0, t1)
        if role == "writer":  # of its operations, the longest wait for the write lock alone (BEGIN IMMEDIATE)
            result[role]["longest_lock_wait_ms"] = round(1000 * max([o[3] or 0 for o in during] or [0]), 1)
        # the same application with no apply running (after its first second): its own waits, the machine's noise
        idle = [o[1] for o in data["ops"] if started + 1.0 <= o[0] and o[0] + o[1] < t0]
        result[role]["idle_longest_wait_ms"] = round(1000 * max(idle or [0]), 1)
        # how often, not only the worst: operations over 100 ms during the apply, and idle (of how many)
        result[role]["over_100ms"] = "%d of %d" % (len([o for o in during if o[1] > 0.1]), len(during))
        result[role]["idle_over_100ms"] = "%d of %d" % (len([d for d in idle if d > 0.1]), len(idle))
    if mode == "online":
        result["locks"] = _apply_locks(done.stdout, t0)
    if m2:
        return _m2_result(result, path, decl, acked)
    conn = sqlite3.connect(path)
    present = {r[0] for r in conn.execute("SELECT id FROM items")}
    result["acknowledged_inserts"] = len(acked)
    result["acknowledged_lost"] = len([i for i in acked if i not in present])
    result["leftovers"] = [r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE name LIKE '\\_schemagen\\_%' "
                                                      "ESCAPE '\\'")]
    result["check_in_schema"] = "CHECK (qty >= 0)" in conn.execute(
        "SELECT sql FROM sqlite_master WHERE name = 'items'").fetchone()[0]
    conn.close()
    return result


def _longest_ops(ops, t0, t1, n=5):
    """The n longest operations that overlapped the apply: [seconds after the apply's start, ms, error or None, ms
    of it waiting for the write lock (the writer's BEGIN IMMEDIATE) or None, ms of its COMMIT (the writer's) or None,
    ms of it the process waited for a CPU (Linux) or None, WAL frames a checkpoint copied during its COMMIT or None]."""
    during = sorted((o for o in ops if o[0] + o[1] >= t0 and o[0] <= t1), key=lambda o: -o[1])[:n]
    return [[round(o[0] - t0, 3), round(1000 * o[1], 1), None if o[2] is True else o[2]] +
            [round(1000 * v, 1) if v is not None else None for v in o[3:6]] + list(o[6:7]) for o in during]


def _apply_locks(stdout, t0):
    """From apply --online --json: its longest write transactions and reads (the apply's own record of how long it
    held each), their start as seconds after the apply's process started, to set beside the application's waits."""
    try:
        online = json.loads(stdout).get("online") or {}
    except ValueError:
        return None
    out = {}
    for key in ("longest_locks", "longest_reads"):
        out[key] = [dict(r, began=round(r["began"] - t0, 3)) for r in online.get(key, ())]
    out["transactions"] = online.get("transactions")
    out["longest_checkpoints"] = [dict(r, began=round(r["began"] - t0, 3))
                                  for r in online.get("longest_checkpoints", ())]
    out["phases"] = [dict(r, began=round(r["began"] - t0, 3)) for r in online.get("phases", ())]
    out["longest_own_lock_ms"] = round(1000 * online.get("longest_own_lock", 0), 1)
    out["longest_own_lock_step"] = online.get("longest_own_lock_step")
    return out


def _m2_result(result, path, decl, acked):
    conn = sqlite3.connect(path)
    state = set(conn.execute("SELECT task_id, key FROM state"))
    checkpoints = set(conn.execute("SELECT task_id, iteration FROM checkpoints"))
    result["acknowledged_inserts"] = len(acked)
    result["acknowledged_lost"] = len([a for a in acked if (a[1], a[2]) not in (state if a[0] == "state"
                                                                                 else checkpoints)])
    result["leftovers"] = [r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE name LIKE '\\_schemagen\\_%' "
                                                      "ESCAPE '\\' AND name != '_schemagen_history'")]
    result["cascade_in_schema"] = "ON DELETE CASCADE" in conn.execute(
        "SELECT sql FROM sqlite_master WHERE name = 'state'").fetchone()[0]
    conn.close()
    check = subprocess.run([sys.executable, "-m", "schema_dsl", "validate", "--db", path, "--schema", decl], cwd=ROOT,
                           capture_output=True, text=True)
    result["validate_exit"] = check.returncode
    return result


def main():
    if len(sys.argv) > 1 and sys.argv[1] == "--worker":
        return worker(*sys.argv[2:6])
    if len(sys.argv) > 1 and sys.argv[1] == "--m2-worker":
        return m2_worker(*sys.argv[2:6])
    ap = argparse.ArgumentParser()
    ap.add_argument("--rows", type=int, default=1000000)
    ap.add_argument("--m2", action="store_true", help="Milestone 2 on the Abathur data of --tasks tasks")
    ap.add_argument("--tasks", type=int, default=1000000)
    ap.add_argument("--journal", default="wal", choices=("wal", "delete"))
    ap.add_argument("--modes", default=None, help="default plain,online (with --m2: plain,online,handwritten)")
    ap.add_argument("--keep", help="folder to work in (kept); default a temporary one")
    ap.add_argument("--base", help="with --m2: a Milestone 1 file made by an earlier run (its base.db), not rebuilt")
    ap.add_argument("--same-session", action="store_true",
                    help="the workers and the apply in the bench's own session (one autogroup), as before")
    ap.add_argument("--apply-nice", type=int, default=0, help="run the apply under nice -n N")
    args = ap.parse_args()
    global OWN_SESSIONS, APPLY_NICE
    OWN_SESSIONS, APPLY_NICE = not args.same_session, args.apply_nice
    folder = args.keep or tempfile.mkdtemp(prefix="bench-online-")
    os.makedirs(folder, exist_ok=True)
    modes = (args.modes or ("plain,online,handwritten" if args.m2 else "plain,online")).split(",")
    if args.m2:
        if args.base:
            base, decl = os.path.join(folder, "base.db"), os.path.join(ROOT, "examples", "abathur_m2.py")
            if os.path.abspath(args.base) != os.path.abspath(base):
                _synced_copy(args.base, base)
        else:
            base, decl = make_m2_base(folder, args.tasks, args.journal)
        out = {"milestone2_tasks": args.tasks, "journal": args.journal, "sqlite": sqlite3.sqlite_version,
               "own_sessions": OWN_SESSIONS, "apply_nice": APPLY_NICE, "load": os.getloadavg()[0],
               "runs": [run_mode(folder, base, decl, m, m2=True) for m in modes]}
        print(json.dumps(out, indent=2))
        if not args.keep:
            shutil.rmtree(folder)
        return
    base, decl = make_base(folder, args.rows, args.journal)
    out = {"rows": args.rows, "journal": args.journal, "sqlite": sqlite3.sqlite_version,
           "own_sessions": OWN_SESSIONS, "apply_nice": APPLY_NICE, "load": os.getloadavg()[0],
           "runs": [run_mode(folder, base, decl, m) for m in modes]}
    print(json.dumps(out, indent=2))
    if not args.keep:
        shutil.rmtree(folder)


if __name__ == "__main__":
    main()
