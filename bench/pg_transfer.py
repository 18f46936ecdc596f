"""The `transfer` measure: `schemagen transfer` of a migrated Abathur file into PostgreSQL vs its floors.

    python bench/pg_transfer.py copy SQLITE_PATH POSTGRES_URL    (the hand-written side, one whole process)
    python bench/pg_transfer.py standalone --tasks 150000 [--runs 3]   (this measure alone, on its own fixture)

Three sides, each one whole process into a database that has the declaration applied (not measured):

- the floor: `psql` running one script in one transaction: per declared table `\copy ... FROM PROGRAM
  'sqlite3 -csv ...'` (SQLite's own CSV, parsed by the server), with the indexes (primary keys and UNIQUE
  constraints too) and the foreign keys dropped beforehand (not measured) and added back after the load by the
  script, then setval of each identity sequence. Two C programs and the server: no structure check, no
  conversion check, no verification.
- hand-written COPY, indexes kept: one transaction, per table `SELECT` every column and `COPY ... FROM STDIN`
  the rows as they are (psycopg's write_row), with every index and key in place, then setval.
- schemagen transfer: the structure check, every value converted or refused, indexes and keys deferred and
  validated, sequences, counts and checksums (pg/transfer.py). Its ratio to the floor is the price of those.

measure() starts a throwaway cluster the way the tests do (tests/pg_cluster.py's Cluster: initdb into a
temporary folder, a unix socket, removed at the end); without PostgreSQL's binaries or psycopg it returns a
note instead of numbers. Each run gets a new database with the declaration applied (not measured).
"""
from __future__ import annotations

import json
import os
import resource
import sqlite3
import sys
import time
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


def floor_script(conn, compiled, sqlite_path):
    """Drop the declared tables' foreign keys and indexes (the floor's preparation, not measured) and return the
    psql script that loads the rows with \\copy from sqlite3 -csv, adds them back and sets the sequences."""
    from schema_dsl.pg.transfer import _deferred_indexes, _foreign_keys, _q
    tables = [s["name"] for s in compiled["statements"] if s["kind"] == "table"]
    fks = _foreign_keys(conn, tables)
    for fk in fks:
        conn.execute("ALTER TABLE %s DROP CONSTRAINT %s" % (_q(fk[0]), _q(fk[1])))
    indexes = _deferred_indexes(conn, tables)
    for tname, iname, _definition, cname, _cdef in indexes:
        conn.execute("ALTER TABLE %s DROP CONSTRAINT %s" % (_q(tname), _q(cname)) if cname else "DROP INDEX %s" % _q(iname))
    lines = ["\\set ON_ERROR_STOP on", "BEGIN;"]
    for t in tables:
        cols = list(compiled["structure"]["tables"][t]["columns"])
        select = 'SELECT %s FROM \\"%s\\"' % (", ".join('\\"%s\\"' % c for c in cols), t)
        lines.append("\\copy %s (%s) FROM PROGRAM 'sqlite3 -csv %s \"%s\"' WITH (FORMAT csv)" % (
            _q(t), ", ".join(_q(c) for c in cols), sqlite_path, select))
    for tname, iname, definition, cname, cdef in sorted(indexes, key=lambda ix: ix[3] is None):
        lines.append(("ALTER TABLE %s ADD CONSTRAINT %s %s;" % (_q(tname), _q(cname), cdef)) if cname else definition + ";")
    for fk in fks:
        lines.append("ALTER TABLE %s ADD CONSTRAINT %s %s;" % (_q(fk[0]), _q(fk[1]), fk[2]))
    for t in tables:
        for c, info in compiled["structure"]["tables"][t]["columns"].items():
            if info["identity"]:
                lines.append("SELECT setval(pg_get_serial_sequence('%s', '%s'), max(%s)) FROM %s HAVING max(%s) IS NOT "
                             "NULL;" % (_q(t), c, _q(c), _q(t), _q(c)))
    lines.append("COMMIT;")
    return "\n".join(lines) + "\n"


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


SIDES = ("schemagen transfer", "floor: psql \\copy, indexes after", "hand-written COPY, indexes kept")


def measure(ctx, source, alternate, times, ratio, log, runs=None, warmup=None):
    """{"rows", "schemagen", "floor", "baseline", "ratio", "ratio_kept", "rss", "rows_per_s", "phases", "cpu",
    "cpu_ratio"} or {"skipped": why}. ratio: schemagen over the floor; ratio_kept: schemagen over hand-written
    COPY with indexes; cpu: per side the median CPU seconds of its own processes and of the server's; cpu_ratio:
    schemagen's total over the floor's (what the sides cost, whatever the load on the shared cores)."""
    import common as C
    cluster, why = new_cluster()
    if cluster is None:
        return {"skipped": why}
    import shutil
    if not shutil.which("sqlite3") or not (shutil.which("psql") or Path(cluster.bindir, "psql").exists()):
        return {"skipped": "the floor needs the sqlite3 and psql programs"}
    import psycopg
    from schema_dsl.pg.apply import apply as pg_apply
    cfg, env = ctx["cfg"], ctx["env"]
    compiled = _compiled()
    bindir = cluster.bindir
    psql = str(Path(bindir, "psql")) if Path(bindir, "psql").exists() else shutil.which("psql")
    script = Path(ctx["work"]) / "floor-transfer.sql"
    try:
        log("transfer: starting a throwaway PostgreSQL cluster")
        cluster.start()
        names = dict(zip(SIDES, ("bench_sg", "bench_floor", "bench_copy")))

        def prepare(name):
            db = names[name]
            with psycopg.connect(cluster.url(), autocommit=True) as conn:
                conn.execute('DROP DATABASE IF EXISTS "%s" WITH (FORCE)' % db)
                conn.execute('CREATE DATABASE "%s"' % db)
            pg_apply(cluster.url(db), compiled)
            if name == SIDES[1]:
                with psycopg.connect(cluster.url(db), autocommit=True) as conn:
                    script.write_text(floor_script(conn, compiled, source), encoding="utf-8")

        sg = C.schemagen_command()
        last = {}

        def run_sg():
            r = C.run_process(sg + ["transfer", "--from", str(source), "--to", cluster.url(names[SIDES[0]]),
                                    "--json"], env=env, capture=True)
            if r.returncode:
                raise RuntimeError("schemagen transfer failed: %s" % r.stderr[-800:])
            last["report"] = json.loads(r.stdout)
            return r

        def run_floor():
            r = C.run_process([psql, "-X", "-q", "-f", str(script), cluster.url(names[SIDES[1]])], env=env, capture=True)
            if r.returncode:
                raise RuntimeError("the floor failed: %s" % r.stderr[-800:])
            return r

        def run_copy():
            r = C.run_process(C.python_cmd("pg_transfer.py", "copy", source, cluster.url(names[SIDES[2]])),
                              env=env, capture=True)
            if r.returncode:
                raise RuntimeError("hand-written COPY failed: %s" % r.stderr[-800:])
            last["copy_rows"] = json.loads(r.stdout)["rows"]
            return r

        # CPU seconds per side, beside the wall time (which the other sessions' load on the shared cores moves a
        # lot): the side's processes (RUSAGE_CHILDREN: launch.py and what it waited for) and the server's
        # (the postmaster's cutime+cstime: the backends and parallel workers the side used, once they exited)
        cpu = {side: [] for side in SIDES}
        postmaster = int(Path(cluster.data, "postmaster.pid").read_text().split()[0])

        def server_cpu():
            fields = Path("/proc/%d/stat" % postmaster).read_text().rsplit(")", 1)[1].split()
            return (int(fields[13]) + int(fields[14])) / os.sysconf("SC_CLK_TCK")

        def client_cpu():
            ru = resource.getrusage(resource.RUSAGE_CHILDREN)
            return ru.ru_utime + ru.ru_stime

        def with_cpu(side, run):
            def measured():
                c0, s0 = client_cpu(), server_cpu()
                r = run()
                time.sleep(0.3)  # the side's backends exit and are reaped
                cpu[side].append((client_cpu() - c0, server_cpu() - s0))
                return r
            return measured

        log("transfer: %s" % Path(source).name)
        res = alternate({side: with_cpu(side, run) for side, run in zip(SIDES, (run_sg, run_floor, run_copy))},
                        runs if runs is not None else cfg["transfer_runs"],
                        warmup if warmup is not None else cfg["transfer_warmup"], prepare=prepare)
        rows = last["report"]["rows"]
        if rows != last["copy_rows"]:
            raise RuntimeError("the sides moved different rows: %d vs %d" % (rows, last["copy_rows"]))
        with psycopg.connect(cluster.url(names[SIDES[1]])) as conn:
            floor_rows = sum(conn.execute('SELECT count(*) FROM "%s"' % t).fetchone()[0]
                             for t in last["report"]["tables"])
        if floor_rows != rows:
            raise RuntimeError("the floor moved %d rows, schemagen %d" % (floor_rows, rows))
        out = {"rows": rows, "schemagen": times(res[SIDES[0]]), "floor": times(res[SIDES[1]]),
               "baseline": times(res[SIDES[2]]),
               "rss": {side: max(r.maxrss_mib for r in res[side]) for side in SIDES},
               "phases": last["report"]["seconds"],
               "tables": {t: info["rows_per_second"] for t, info in last["report"]["tables"].items() if info["rows"]}}
        out["ratio"] = ratio(out["schemagen"], out["floor"])
        runs_measured = {side: cpu[side][-len(res[side]):] for side in SIDES}  # the warmup runs left out
        out["cpu"] = {side: {"client": C.summary([c for c, _ in v])["median"],
                             "server": C.summary([s for _, s in v])["median"],
                             "total": C.summary([c + s for c, s in v])["median"]} for side, v in runs_measured.items()}
        out["cpu_ratio"] = out["cpu"][SIDES[0]]["total"] / out["cpu"][SIDES[1]]["total"]
        out["ratio_kept"] = ratio(out["schemagen"], out["baseline"])
        out["rows_per_s"] = {"schemagen": rows / out["schemagen"]["median"], "floor": rows / out["floor"]["median"],
                             "baseline": rows / out["baseline"]["median"]}
        out["server"] = Path(bindir).parent.name
        return out
    finally:
        cluster.stop()


def standalone(argv):
    """This measure alone at a given size: builds an old-shape fixture, migrates it, measures the three sides."""
    import argparse
    import os
    import time
    ap = argparse.ArgumentParser(prog="pg_transfer.py standalone")
    ap.add_argument("--tasks", type=int, default=150_000)
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--warmup", type=int, default=0)
    ap.add_argument("--work", default=str(BENCH / "work" / "transfer"))
    ap.add_argument("--json", help="write the result here")
    args = ap.parse_args(argv)
    sys.path.insert(0, str(BENCH))
    import common as C
    work = Path(args.work) / ("run-%d" % os.getpid())
    work.mkdir(parents=True, exist_ok=True)
    try:
        fixture = work / "fixture.db"
        C.log("building an old-shape fixture, %d tasks" % args.tasks)
        C.build_legacy(fixture, "old", args.tasks)
        from schema_dsl.migrate.apply import apply as sqlite_apply
        sqlite_apply(str(fixture), backup=False)
        ctx = {"cfg": {"transfer_runs": args.runs, "transfer_warmup": args.warmup}, "work": work,
               "env": C.child_env(work)}
        load = os.getloadavg()
        out = measure(ctx, fixture, C.alternate, C.times, C.ratio, C.log)
        out["tasks"] = args.tasks
        out["load_before"] = load
        out["load_after"] = os.getloadavg()
        out["date"] = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
        text = json.dumps(out, indent=1, default=str)
        if args.json:
            Path(args.json).write_text(text, encoding="utf-8")
        print(text)
    finally:
        import shutil
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    if len(sys.argv) == 4 and sys.argv[1] == "copy":
        handwritten_copy(sys.argv[2], sys.argv[3])
    elif len(sys.argv) >= 2 and sys.argv[1] == "standalone":
        standalone(sys.argv[2:])
    else:
        sys.exit(__doc__)
