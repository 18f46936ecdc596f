"""Read latency of each declared serves-query, with its index and with that index dropped.

    python bench/read_latency.py prepare DB ROWS   # fill a migrated file (not measured)
    python bench/read_latency.py measure DB BUDGET_S

prepare: DB is an old-shape file migrated by schemagen (ROWS tasks and audit
rows); this adds ROWS memory_entries, ROWS // 100 sessions, puts a session on
every 10th task and memory columns on every 10th audit row.

measure: for each declared index on memory_entries, tasks and audit, runs the
queries it serves (parameters drawn from existing rows) in this process,
fetching every row: first with the index, then inside a transaction that
drops just that index (ROLLBACK restores it; run on a copy all the same),
alternating twice. Prints JSON: per index and query, the latencies of each
side, the rows returned and the EXPLAIN QUERY PLAN of each side.
"""
import json
import random
import sqlite3
import sys
import time

TABLES = ("memory_entries", "tasks", "audit")
USERS = 2000
OPS = ("create", "update", "delete", "consolidate", "publish")


def _user(n):
    return "alice" if n == 0 else "u%d" % n


def _ts(i, year=2025):
    return "%d-%02d-%02d %02d:%02d:%02d" % (year, 1 + i % 12, 1 + i % 28, i % 24, i % 60, (i * 7) % 60)


def _group(i):
    """(namespace/key group, version) of memory row i: one group in 199 has a second version."""
    block, k = divmod(i, 200)
    if k < 2:
        return block * 199, k + 1
    return block * 199 + k - 1, 1


def prepare(path, rows):
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("PRAGMA synchronous = OFF")
    conn.execute("PRAGMA cache_size = -1000000")
    conn.execute("BEGIN")
    sessions = max(rows // 100, 10)
    conn.executemany(
        "INSERT INTO sessions (id, app_name, user_id, project_id, status, created_at, last_update_time) "
        "VALUES (?, 'abathur', ?, ?, ?, ?, ?)",
        (("sess-%d" % i, "user-%d" % (i % 100), "proj-%d" % (i % 50) if i % 3 else None,
          ("created", "active", "paused", "terminated", "archived")[i % 5], _ts(i), _ts(i + 1))
         for i in range(sessions)))

    def memory_rows():
        for i in range(rows):
            g, version = _group(i)
            episodic = i % 100 == 0
            yield ("user:%s:mem" % _user(g % USERS), "k%d" % (g // USERS), '{"v": %d}' % i,
                   "episodic" if episodic else ("semantic", "procedural")[i % 2], version,
                   1 if i % 20 == 7 else 0, "agent-%d" % (i % 5000), "agent-%d" % (i % 5000),
                   _ts(i, 2024 if episodic else 2025), _ts(i + 1, 2024 if episodic else 2025))
    conn.executemany(
        "INSERT INTO memory_entries (namespace, key, value, memory_type, version, is_deleted, created_by, "
        "updated_by, created_at, updated_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)", memory_rows())
    conn.execute("UPDATE tasks SET session_id = 'sess-' || (rowid % ?) WHERE rowid % 10 = 0", (sessions,))
    conn.execute("UPDATE audit SET memory_operation_type = CASE id % 5 WHEN 0 THEN 'create' WHEN 1 THEN 'update' "
                 "WHEN 2 THEN 'delete' WHEN 3 THEN 'consolidate' ELSE 'publish' END, "
                 "memory_namespace = 'user:' || CASE WHEN id / 10 % ? = 0 THEN 'alice' ELSE 'u' || (id / 10 % ?) END || ':mem', "
                 "memory_entry_id = 1 + id % ? WHERE id % 10 = 0", (USERS, USERS, rows))
    conn.execute("COMMIT")
    conn.close()


def param_maker(conn, table, query, rnd):
    """A function returning fresh parameters for the `?` of a query, drawn from existing rows."""
    n = query.count("?")
    if n == 0:
        return lambda: ()
    tasks = conn.execute("SELECT max(rowid) FROM tasks").fetchone()[0] or 1
    mem = conn.execute("SELECT max(id) FROM memory_entries").fetchone()[0] or 1
    sessions = conn.execute("SELECT count(*) FROM sessions").fetchone()[0] or 1
    agents = conn.execute("SELECT count(*) FROM agents").fetchone()[0] or 1
    q = query.lower()
    if table == "memory_entries":
        if "namespace = ? and key = ?" in q:
            groups = max(mem * 199 // 200, 1)

            def nk():
                g = rnd.randrange(groups)
                return ("user:%s:mem" % _user(g % USERS), "k%d" % (g // USERS))
            return nk
        if "created_by = ?" in q:
            return lambda: ("agent-%d" % rnd.randrange(5000),)
        return lambda: (rnd.randint(1, mem),)
    if table == "tasks":
        if "session_id = ?" in q:
            return lambda: ("sess-%d" % rnd.randrange(sessions),)
        return lambda: ("task-%d" % rnd.randrange(tasks),)
    if table == "audit":
        if "agent_id = ?" in q:
            return lambda: ("agent-%d" % rnd.randrange(agents),)
        if "memory_entry_id = ?" in q:
            return lambda: (rnd.randint(1, mem),)
        return lambda: ("task-%d" % rnd.randrange(tasks),)
    return lambda: (None,) * n


def timed(conn, query, params, budget, min_runs=5, max_runs=2000):
    for _ in range(3):  # warm-up
        conn.execute(query, params()).fetchall()
    times, rows = [], 0
    deadline = time.perf_counter() + budget
    while len(times) < min_runs or (len(times) < max_runs and time.perf_counter() < deadline):
        p = params()
        start = time.perf_counter()
        out = conn.execute(query, p).fetchall()
        times.append(time.perf_counter() - start)
        rows += len(out)
    return times, rows / len(times)


_EXPLAINS = [0]


def explain(conn, query):
    # A fresh statement text each time: a cached EXPLAIN is not re-prepared after DROP INDEX.
    _EXPLAINS[0] += 1
    sql = "EXPLAIN QUERY PLAN %s -- %d" % (query, _EXPLAINS[0])
    return [r[3] for r in conn.execute(sql, (None,) * query.count("?"))]


def measure(path, budget):
    from schema_dsl.abathur import SCHEMA
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("PRAGMA foreign_keys = ON")
    conn.execute("PRAGMA busy_timeout = 5000")
    conn.execute("PRAGMA synchronous = NORMAL")
    results = []
    rnd = random.Random(5)
    for ix in SCHEMA.indexes:
        if ix.table not in TABLES:
            continue
        for query in ix.serves:
            params = param_maker(conn, ix.table, query, rnd)
            entry = {"index": ix.name, "table": ix.table, "query": query, "with": [], "without": [],
                     "rows_with": 0, "rows_without": 0}
            for rnd_no in range(2):
                t, r = timed(conn, query, params, budget / 4)
                entry["with"] += t
                entry["rows_with"] = r
                entry["plan_with"] = explain(conn, query)
                conn.execute("BEGIN")
                try:
                    conn.execute('DROP INDEX "%s"' % ix.name)
                    t, r = timed(conn, query, params, budget / 4)
                    entry["without"] += t
                    entry["rows_without"] = r
                    entry["plan_without"] = explain(conn, query)
                finally:
                    conn.execute("ROLLBACK")
            results.append(entry)
    conn.close()
    print(json.dumps(results))


if __name__ == "__main__":
    if sys.argv[1] == "prepare":
        prepare(sys.argv[2], int(sys.argv[3]))
    else:
        measure(sys.argv[2], float(sys.argv[3]))
