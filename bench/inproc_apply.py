"""In-process fresh apply: the library call vs executing the same statements directly.

Both sides run in this one process, after every import, alternating, each on
a new file in a scratch folder: `schema_dsl.migrate.apply.apply(path)` against the
bare sqlite3 calls (the PRAGMAs, the three generated files in one
transaction, journal_mode=WAL after COMMIT, as apply sets it). Prints JSON.

    python bench/inproc_apply.py SCRATCH_DIR RUNS
"""
import json
import os
import sqlite3
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from sqlfiles import generated_text, pragma_statements  # noqa: E402

from schema_dsl.migrate.apply import apply  # noqa: E402

DDL = "".join(generated_text(n) for n in ("ddl-memory-tables.sql", "ddl-core-tables.sql", "ddl-indexes.sql"))
PRAGMAS = pragma_statements(include_journal_mode=False)


def direct(path):
    conn = sqlite3.connect(path, isolation_level=None)
    for stmt in PRAGMAS:
        conn.execute(stmt)
    conn.executescript("BEGIN IMMEDIATE;\n" + DDL + "\nCOMMIT;")
    conn.execute("PRAGMA journal_mode = WAL")
    conn.close()


def library(path):
    apply(path, backup=False)


def clean(path):
    for suffix in ("", "-wal", "-shm", "-journal"):
        if os.path.exists(path + suffix):
            os.remove(path + suffix)


def main(scratch, runs):
    sides = {"library": library, "direct": direct}
    times = {k: [] for k in sides}
    path = os.path.join(scratch, "inproc.db")
    for i in range(runs + 2):  # two warm-up rounds
        order = ("library", "direct") if i % 2 == 0 else ("direct", "library")
        for side in order:
            clean(path)
            start = time.perf_counter()
            sides[side](path)
            elapsed = time.perf_counter() - start
            if i >= 2:
                times[side].append(elapsed)
    clean(path)
    print(json.dumps(times))


if __name__ == "__main__":
    main(sys.argv[1], int(sys.argv[2]))
