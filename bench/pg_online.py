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


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true", help="100k rows instead of 1M")
    ap.add_argument("--rows", type=int, default=None)
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
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
    print("| side | exit | apply | longest writer wait | longest reader wait | app errors (deadlocks) | "
          "acknowledged writes present | validate |")
    print("|---|---|---|---|---|---|---|---|")
    for r in results:
        print("| %s | %d | %.2f s | %.1f ms | %.1f ms | %d (%d) | %d of %d | %s |" % (
            r["side"], r["exit"], r["apply_s"], r["writer_max_ms"], r["reader_max_ms"], r["error_count"],
            r["deadlocks"], r["acked_present"], r["acked"], "ok" if r["validate_ok"] else "FAIL"))
        if r["stderr"]:
            print("   %s: %s" % (r["side"], r["stderr"]))
        for e in r["errors"]:
            print("   app error: %s" % e)


if __name__ == "__main__":
    main()
