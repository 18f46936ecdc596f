"""The `transfer` measure: `schemagen transfer` of a migrated Abathur file into PostgreSQL vs hand-written COPY.

    python bench/pg_transfer.py copy SQLITE_PATH POSTGRES_URL    (the baseline side, one whole process)

The baseline is what a person would write by hand: one transaction, for each declared table in dependency
order `SELECT` every column from SQLite and `COPY ... FROM STDIN` the rows as they are (psycopg's write_row,
text format: the server parses SQLite's timestamp text, 0/1 booleans and JSON text itself), then setval of each
identity sequence; no structure check, no conversion checks, no foreign-key handling, no verification.
schemagen's side does all of those (pg/transfer.py), so the ratio is their price.

measure() starts a throwaway cluster the way the tests do (tests/pg_cluster.py's Cluster: initdb into a
temporary folder, a unix socket, removed at the end); without PostgreSQL's binaries or psycopg it returns a
note instead of numbers. Each run gets a new database with the declaration applied (not measured).
"""
from __future__ import annotations

import json
import sqlite3
import sys
from pathlib import Path

BENCH = Path(__file__).resolve().parent
ROOT = BENCH.parent


def _compiled():
    from schema_dsl.compile.project import resolve
    from schema_dsl.pg.apply import compiled_for
    return compiled_for(resolve(None, cwd=ROOT))


def handwritten_copy(sqlite_path, url):
    import psycopg
    compiled = _compiled()
    tables = [s["name"] for s in compiled["statements"] if s["kind"] == "table"]
    src = sqlite3.connect(sqlite_path)
    rows = 0
    with psycopg.connect(url) as conn:  # one transaction, committed on leaving
        for t in tables:
            cols = list(compiled["structure"]["tables"][t]["columns"])
            names = ", ".join('"%s"' % c for c in cols)
            with conn.cursor().copy('COPY "%s" (%s) FROM STDIN' % (t, names)) as copy:
                for row in src.execute('SELECT %s FROM "%s"' % (names, t)):
                    copy.write_row(row)
                    rows += 1
            for c, info in compiled["structure"]["tables"][t]["columns"].items():
                if info["identity"]:
                    conn.execute("SELECT setval(pg_get_serial_sequence(%%s, %%s), max(\"%s\")) FROM \"%s\" HAVING "
                                 "max(\"%s\") IS NOT NULL" % (c, t, c), ('"%s"' % t, c))
    src.close()
    print(json.dumps({"rows": rows}))


def new_cluster():
    """(a throwaway cluster, not started yet: tests/pg_cluster.py's Cluster, None) or (None, why it cannot run).
    The pg_migration measure (bench/pg_migration.py) starts its cluster the same way."""
    try:
        import psycopg  # noqa: F401
        sys.path.insert(0, str(ROOT / "tests"))
        try:
            from pg_cluster import Cluster, INSTALL_HINT, find_bindir
        finally:
            sys.path.pop(0)
    except ImportError as exc:
        return None, "psycopg or the test helpers are missing (%s): pip install '.[test,postgresql]'" % exc
    bindir = find_bindir()
    if bindir is None:
        return None, INSTALL_HINT
    return Cluster(bindir), None


def measure(ctx, source, alternate, times, ratio, log):
    """{"rows", "schemagen", "baseline", "ratio", "rows_per_s", "phases"} or {"skipped": why}."""
    import common as C
    cluster, why = new_cluster()
    if cluster is None:
        return {"skipped": why}
    import psycopg
    from schema_dsl.pg.apply import apply as pg_apply
    cfg, env = ctx["cfg"], ctx["env"]
    compiled = _compiled()
    bindir = cluster.bindir
    try:
        log("transfer: starting a throwaway PostgreSQL cluster")
        cluster.start()
        names = {"schemagen transfer": "bench_sg", "hand-written COPY": "bench_copy"}

        def prepare(name):
            db = names[name]
            with psycopg.connect(cluster.url(), autocommit=True) as conn:
                conn.execute('DROP DATABASE IF EXISTS "%s" WITH (FORCE)' % db)
                conn.execute('CREATE DATABASE "%s"' % db)
            pg_apply(cluster.url(db), compiled)

        sg = C.schemagen_command()
        last = {}

        def run_sg():
            r = C.run_process(sg + ["transfer", "--from", str(source), "--to", cluster.url(names["schemagen transfer"]),
                                    "--json"], env=env, capture=True)
            if r.returncode:
                raise RuntimeError("schemagen transfer failed: %s" % r.stderr[-800:])
            last["report"] = json.loads(r.stdout)
            return r

        def run_copy():
            r = C.run_process(C.python_cmd("pg_transfer.py", "copy", source, cluster.url(names["hand-written COPY"])),
                              env=env, capture=True)
            if r.returncode:
                raise RuntimeError("hand-written COPY failed: %s" % r.stderr[-800:])
            last["copy_rows"] = json.loads(r.stdout)["rows"]
            return r

        log("transfer: %s" % source.name)
        res = alternate({"schemagen transfer": run_sg, "hand-written COPY": run_copy}, cfg["transfer_runs"],
                        cfg["transfer_warmup"], prepare=prepare)
        rows = last["report"]["rows"]
        if rows != last["copy_rows"]:
            raise RuntimeError("the sides moved different rows: %d vs %d" % (rows, last["copy_rows"]))
        out = {"rows": rows, "schemagen": times(res["schemagen transfer"]), "baseline": times(res["hand-written COPY"]),
               "phases": last["report"]["seconds"],
               "tables": {t: info["rows_per_second"] for t, info in last["report"]["tables"].items() if info["rows"]}}
        out["ratio"] = ratio(out["schemagen"], out["baseline"])
        out["rows_per_s"] = {"schemagen": rows / out["schemagen"]["median"], "baseline": rows / out["baseline"]["median"]}
        out["server"] = Path(bindir).parent.name
        return out
    finally:
        cluster.stop()


if __name__ == "__main__":
    if len(sys.argv) == 4 and sys.argv[1] == "copy":
        handwritten_copy(sys.argv[2], sys.argv[3])
    else:
        sys.exit(__doc__)
