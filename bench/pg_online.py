"""How long the application waits while its schema changes on PostgreSQL: `schemagen apply` against
`schemagen apply --online` (issue 19).

A throwaway cluster (tests/pg_cluster.py's Cluster: PostgreSQL 15, fsync off, unix socket). For each side a new
database gets the first declaration (sessions, and items with a foreign key to it) and ROWS rows in items (1M;
100k with --quick; not measured). Then a writer (an INSERT into items, whose foreign-key check reads sessions, and
an UPDATE of a random row) and a reader (a lookup by key and a count over a key range) each work every 5-10 ms in
their own connections while the side runs as a whole process: the change adds a CHECK, a NOT NULL and an index
to items. Reported per side: the longest wait of one writer and one reader operation while the apply ran, the
operations done, the application's errors (a deadlock among them), whether every acknowledged write is in the
result, whether validate passes, and the apply's total time.

    .venv/bin/python bench/pg_online.py [--quick] [--rows N] [--json]

With --m2: Milestone 1 -> Milestone 2 (examples/abathur_m2.py) on the Abathur data instead. An old-shape fixture of
--tasks tasks (1M by default; bench/common.py's build_legacy, then migrated to Milestone 1 by `apply`; or --fixture,
a file already at Milestone 1) is moved once into a database `m1` with `schemagen transfer`, and 1000 sessions and
1000 memory entries are added (the fixture has none) so that the application's writes check a parent there (not
measured). Each side then gets `CREATE DATABASE ... TEMPLATE m1` and runs as a whole process while the application
works: a writer, every 5-10 ms, in one transaction inserts a task of a session (ROW EXCLUSIVE on tasks, then its
foreign-key check reads sessions: the deadlock of issue 19), a state row and a checkpoint of that task (their keys
check tasks and sessions); a reader looks up a session by status, a task by key, the checkpoints of a task, its
state and a memory entry by key (each served by an index before and after the change, so that an operation's time is
its wait, not a scan). Sides: the application alone for 5 s (what the machine adds to an operation with nothing
changing), `schemagen apply`, `schemagen apply --online`, and the hand-written lock-aware script
(bench/handwritten_pg_m2_online.py). Reported per side as above, and validate against Milestone 2.

    .venv/bin/python bench/pg_online.py --m2 [--tasks N | --fixture M1_FILE] [--json]

Targets (issue 19): no wait over 100 ms, no application error, no deadlock, no acknowledged write lost.
"""
from __future__ import annotations

import argparse
import json
import os
import random
import subprocess
import sys
import tempfile
import threading
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "tests"))

V1 = """
from schema_dsl.model import Column, PrimaryKey, Schema, Table, fk

SCHEMA = Schema(name="bench", tables=[
    Table("sessions", columns=[Column("id", "INTEGER"), Column("name", "TEXT")], primary_key=PrimaryKey(["id"])),
    Table("items", columns=[Column("id", "INTEGER"), Column("session_id", "INTEGER"), Column("state", "TEXT"),
                            Column("score", "INTEGER")],
          primary_key=PrimaryKey(["id"]), foreign_keys=[fk("session_id", "sessions", "id")]),
])
"""

V2 = """
from schema_dsl.model import Check, Column, Index, PrimaryKey, Schema, Table, fk

SCHEMA = Schema(name="bench", tables=[
    Table("sessions", columns=[Column("id", "INTEGER"), Column("name", "TEXT")], primary_key=PrimaryKey(["id"])),
    Table("items", columns=[Column("id", "INTEGER"), Column("session_id", "INTEGER"),
                            Column("state", "TEXT", not_null=True), Column("score", "INTEGER")],
          primary_key=PrimaryKey(["id"]), foreign_keys=[fk("session_id", "sessions", "id")],
          checks=[Check("score >= 0")]),
], indexes=[Index("idx_items_state", "items", ["state"])])
"""


class App:
    """A writer and a reader, each in its own thread and connection, every 5-10 ms."""

    def __init__(self, url, rows):
        self.url, self.rows = url, rows
        self.stop = threading.Event()
        self.window = None  # (start, end) of the apply: only waits inside it are reported
        self.ops = {"writer": [], "reader": []}  # (started, seconds)
        self.errors, self.acked = [], []

    def _loop(self, role, work):
        import psycopg
        conn = psycopg.connect(self.url, autocommit=True)
        n = 0
        while not self.stop.is_set():
            started = time.perf_counter()
            try:
                work(conn, n)
            except psycopg.Error as exc:
                self.errors.append("%s: %s" % (role, " ".join(str(exc).split())[:200]))
            self.ops[role].append((started, time.perf_counter() - started))
            n += 1
            time.sleep(random.uniform(0.005, 0.010))
        conn.close()

    def _write(self, conn, n):
        key = self.rows + 1 + n
        conn.execute("INSERT INTO items (id, session_id, state, score) VALUES (%s, %s, 'open', %s)",
                     (key, 1 + n % 100, n % 50))
        self.acked.append(key)
        conn.execute("UPDATE items SET score = score + 1 WHERE id = %s", (random.randint(1, self.rows),))

    def _read(self, conn, n):
        k = random.randint(1, self.rows)
        conn.execute("SELECT state, score FROM items WHERE id = %s", (k,)).fetchone()
        conn.execute("SELECT count(*) FROM items WHERE id BETWEEN %s AND %s", (k, k + 100)).fetchone()

    def start(self):
        self.threads = [threading.Thread(target=self._loop, args=("writer", self._write)),
                        threading.Thread(target=self._loop, args=("reader", self._read))]
        for t in self.threads:
            t.start()

    def finish(self):
        self.stop.set()
        for t in self.threads:
            t.join()

    def longest(self, role):
        start, end = self.window
        inside = [s for t, s in self.ops[role] if t + s >= start and t <= end]
        return max(inside) if inside else 0.0, len(inside)


def _schemagen(*args):
    return subprocess.run([sys.executable, "-m", "schema_dsl", *args], capture_output=True, text=True, cwd=ROOT)


def side(cluster, folder, name, rows, extra):
    import psycopg
    with psycopg.connect(cluster.url(), autocommit=True) as conn:
        conn.execute('CREATE DATABASE "%s"' % name)
    url = cluster.url(name)
    v1, v2 = os.path.join(folder, "v1.py"), os.path.join(folder, "v2.py")
    out = _schemagen("apply", "--db", url, "--schema", v1 + ":SCHEMA", "--no-validate")
    if out.returncode:
        raise RuntimeError(out.stderr)
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("INSERT INTO sessions SELECT g, 's' || g FROM generate_series(1, 100) g")
        conn.execute("INSERT INTO items SELECT g, 1 + g %% 100, 'open', g %% 50 FROM generate_series(1, %d) g" % rows)
        conn.execute("VACUUM ANALYZE items")
    app = App(url, rows)
    app.start()
    time.sleep(0.5)
    started = time.perf_counter()
    out = _schemagen("apply", "--db", url, "--schema", v2 + ":SCHEMA", "--no-validate", *extra)
    ended = time.perf_counter()
    time.sleep(0.5)
    app.finish()
    app.window = (started, ended)
    with psycopg.connect(url, autocommit=True) as conn:
        present = conn.execute("SELECT count(*) FROM items WHERE id = ANY(%s)", (app.acked,)).fetchone()[0]
    valid = _schemagen("validate", "--db", url, "--schema", v2 + ":SCHEMA").returncode == 0
    writer, writes = app.longest("writer")
    reader, reads = app.longest("reader")
    return {"side": "schemagen apply " + " ".join(extra) if extra else "schemagen apply",
            "exit": out.returncode, "apply_s": round(ended - started, 3),
            "writer_max_ms": round(writer * 1000, 1), "reader_max_ms": round(reader * 1000, 1),
            "writes": writes, "reads": reads, "errors": app.errors[:5], "error_count": len(app.errors),
            "deadlocks": sum("deadlock" in e for e in app.errors),
            "acked": len(app.acked), "acked_present": present, "validate_ok": valid,
            "stderr": out.stderr.strip()[-300:] if out.returncode else ""}


class M2App(App):
    """The Abathur application beside Milestone 2 (module docstring): a writer and a reader."""

    def __init__(self, url, sessions, tasks, tag):
        super().__init__(url, tasks)
        self.sessions, self.tag = sessions, tag

    def _write(self, conn, n):
        task = "bench-%s-%d" % (self.tag, n)
        session = "bench-session-%d" % (n % self.sessions)
        with conn.transaction():
            conn.execute("INSERT INTO tasks (id, prompt, status, input_data, submitted_at, last_updated_at, "
                         "session_id) VALUES (%s, 'p', 'pending', '{}', now(), now(), %s)", (task, session))
            conn.execute("INSERT INTO state (task_id, key, value, created_at, updated_at) "
                         "VALUES (%s, 'k', '1', now(), now())", (task,))
            conn.execute("INSERT INTO checkpoints (task_id, iteration, state, created_at, session_id) "
                         "VALUES (%s, 0, '{}', now(), %s)", (task, session))
        self.acked.append(task)

    def _read(self, conn, n):
        conn.execute("SELECT id FROM sessions WHERE status = 'active' ORDER BY last_update_time DESC "
                     "LIMIT 5").fetchall()
        conn.execute("SELECT status FROM tasks WHERE id = %s", ("task-%d" % random.randrange(self.rows),)).fetchone()
        conn.execute("SELECT count(*) FROM checkpoints WHERE task_id = %s",
                     ("task-%d" % random.randrange(self.rows),)).fetchone()
        conn.execute("SELECT count(*) FROM state WHERE task_id = %s",
                     ("task-%d" % random.randrange(self.rows),)).fetchone()
        conn.execute("SELECT namespace, value FROM memory_entries WHERE id = %s", (1 + n % self.sessions,)).fetchone()


M2_SIDES = [("no change (the application alone, 5 s)", []), ("schemagen apply", ["apply"]),
            ("schemagen apply --online", ["apply", "--online"]),
            ("hand-written lock-aware (bench/handwritten_pg_m2_online.py)", None)]
SESSIONS = 1000
MEMORY = ("INSERT INTO memory_entries (namespace, key, value, memory_type, created_by) SELECT 'user:' || g, 'k', "
          "'{}', 'semantic', 'bench' FROM generate_series(0, %d) g")


def m2_side(cluster, label, command, tasks):
    import psycopg
    name = "trial_%d" % M2_SIDES.index(next(s for s in M2_SIDES if s[0] == label))
    with psycopg.connect(cluster.url(), autocommit=True) as conn:
        conn.execute('DROP DATABASE IF EXISTS "%s" WITH (FORCE)' % name)
        conn.execute('CREATE DATABASE "%s" TEMPLATE "m1"' % name)
    url = cluster.url(name)
    m2 = os.path.join(ROOT, "examples", "abathur_m2.py")
    app = M2App(url, SESSIONS, tasks, name)
    app.start()
    time.sleep(0.5)
    started = time.perf_counter()
    if command == []:  # what the machine itself adds to an operation's time, with nothing changing
        time.sleep(5)
        out = subprocess.CompletedProcess([], 0, "", "")
    elif command is None:
        out = subprocess.run([sys.executable, os.path.join(ROOT, "bench", "handwritten_pg_m2_online.py"), url],
                             capture_output=True, text=True, cwd=ROOT)
    else:
        out = _schemagen(*command, "--db", url, "--schema", m2, "--no-validate")
    ended = time.perf_counter()
    time.sleep(0.5)
    app.finish()
    app.window = (started, ended)
    with psycopg.connect(url, autocommit=True) as conn:
        present = conn.execute("SELECT count(*) FROM tasks WHERE id = ANY(%s)", (app.acked,)).fetchone()[0]
        present_cp = conn.execute("SELECT count(*) FROM checkpoints WHERE task_id = ANY(%s)",
                                  (app.acked,)).fetchone()[0]
    valid = _schemagen("validate", "--db", url, "--schema", m2) if command != [] else None
    writer, writes = app.longest("writer")
    reader, reads = app.longest("reader")
    with psycopg.connect(cluster.url(), autocommit=True) as conn:
        conn.execute('DROP DATABASE IF EXISTS "%s" WITH (FORCE)' % name)
    return {"side": label, "exit": out.returncode, "apply_s": round(ended - started, 3),
            "writer_max_ms": round(writer * 1000, 1), "reader_max_ms": round(reader * 1000, 1),
            "writes": writes, "reads": reads, "errors": app.errors[:5], "error_count": len(app.errors),
            "deadlocks": sum("deadlock" in e for e in app.errors),
            "acked": len(app.acked), "acked_present": min(present, present_cp),
            "validate_ok": None if valid is None else valid.returncode == 0,
            "stderr": (out.stderr.strip()[-300:] if out.returncode else "") or
                      ("" if valid is None or valid.returncode == 0 else "validate: " + valid.stdout.strip()[-300:])}


def m2(args):
    """The --m2 mode (module docstring)."""
    import psycopg
    from pg_cluster import Cluster, find_bindir
    bindir = find_bindir()
    if bindir is None:
        sys.exit("PostgreSQL's server binaries were not found (apt-get install postgresql-15)")
    fixture = args.fixture
    work = tempfile.mkdtemp(prefix="pg-online-m2-")
    if fixture is None:
        sys.path.insert(0, os.path.join(ROOT, "bench"))
        import common as C
        from schema_dsl.migrate.apply import apply as sqlite_apply
        fixture = os.path.join(work, "fixture.db")
        print("building an old-shape fixture of %d tasks, then applying Milestone 1 (not measured)" % args.tasks,
              file=sys.stderr)
        C.build_legacy(fixture, "old", args.tasks)
        sqlite_apply(fixture, backup=False)
    cluster = Cluster(bindir)
    results = []
    try:
        cluster.start()
        with psycopg.connect(cluster.url(), autocommit=True) as conn:
            conn.execute('CREATE DATABASE "m1"')
        print("moving it into PostgreSQL with schemagen transfer (not measured)", file=sys.stderr)
        moved = _schemagen("transfer", "--from", fixture, "--to", cluster.url("m1"), "--json")
        if moved.returncode:
            sys.exit("schemagen transfer failed: %s" % moved.stderr[-800:])
        with psycopg.connect(cluster.url("m1"), autocommit=True) as conn:
            conn.execute("INSERT INTO sessions (id, app_name, user_id, status) SELECT 'bench-session-' || g, 'bench', "
                         "'u' || g, CASE WHEN g %% 3 = 0 THEN 'active' ELSE 'created' END "
                         "FROM generate_series(0, %d) g" % (SESSIONS - 1))
            conn.execute(MEMORY % (SESSIONS - 1))
            tasks = conn.execute("SELECT count(*) FROM tasks").fetchone()[0]
            conn.execute("VACUUM ANALYZE")
        for label, command in M2_SIDES:
            print("side: %s" % label, file=sys.stderr)
            results.append(m2_side(cluster, label, command, tasks))
    finally:
        cluster.stop()
        import shutil
        shutil.rmtree(work, ignore_errors=True)
    return tasks, results


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true", help="100k rows instead of 1M")
    ap.add_argument("--rows", type=int, default=None)
    ap.add_argument("--json", action="store_true")
    ap.add_argument("--m2", action="store_true", help="Milestone 2 on the Abathur data (module docstring)")
    ap.add_argument("--tasks", type=int, default=1_000_000, help="--m2: tasks in the fixture built")
    ap.add_argument("--fixture", help="--m2: an SQLite file already at Milestone 1 (instead of building one)")
    args = ap.parse_args()
    if args.m2:
        tasks, results = m2(args)
        if args.json:
            print(json.dumps({"tasks": tasks, "results": results}, indent=2))
            return
        print("Milestone 2 on %d tasks; writer (task + state + checkpoint in one transaction) and reader every "
              "5-10 ms" % tasks)
        _table(results)
        return
    rows = args.rows or (100_000 if args.quick else 1_000_000)
    from pg_cluster import Cluster, find_bindir
    bindir = find_bindir()
    if bindir is None:
        sys.exit("PostgreSQL's server binaries were not found (apt-get install postgresql-15)")
    cluster = Cluster(bindir)
    results = []
    try:
        cluster.start()
        with tempfile.TemporaryDirectory() as folder:
            for fname, text in (("v1.py", V1), ("v2.py", V2)):
                with open(os.path.join(folder, fname), "w", encoding="utf-8") as f:
                    f.write(text)
            results.append(side(cluster, folder, "plain", rows, []))
            results.append(side(cluster, folder, "online", rows, ["--online"]))
    finally:
        cluster.stop()
    if args.json:
        print(json.dumps({"rows": rows, "results": results}, indent=2))
        return
    print("%d rows; a CHECK, a NOT NULL and an index added to items; writer and reader every 5-10 ms" % rows)
    _table(results)


def _table(results):
    print("| side | exit | apply | longest writer wait | longest reader wait | app errors (deadlocks) | "
          "acknowledged writes present | validate |")
    print("|---|---|---|---|---|---|---|---|")
    for r in results:
        print("| %s | %d | %.2f s | %.1f ms | %.1f ms | %d (%d) | %d of %d | %s |" % (
            r["side"], r["exit"], r["apply_s"], r["writer_max_ms"], r["reader_max_ms"], r["error_count"],
            r["deadlocks"], r["acked_present"], r["acked"],
            {True: "ok", False: "FAIL", None: "-"}[r["validate_ok"]]))
        if r["stderr"]:
            print("   %s: %s" % (r["side"], r["stderr"]))
        for e in r["errors"]:
            print("   app error: %s" % e)


if __name__ == "__main__":
    main()
