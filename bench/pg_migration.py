"""The `pg_migration` measure: Milestone 1 -> Milestone 2 (examples/abathur_m2.py) applied by schemagen on
PostgreSQL, against the hand-written SQL for the same change (bench/handwritten_pg_m2.py).

On a throwaway cluster (started as bench/pg_transfer.py starts its own: tests/pg_cluster.py's Cluster), the
migrated large fixture's rows are moved once into a database `m1` with `schemagen transfer` (not measured). Each
run then gets `CREATE DATABASE trial TEMPLATE m1` (a file copy of the loaded database, not measured), one side
runs as a whole process, and `DROP DATABASE trial` follows. The sides alternate in rotating order after the
warm-up; the medians and their ratio are reported. After the loop each side's result is validated once against
the Milestone 2 declaration (not measured): both must reach it, with every row kept.

The change: seven index removals, memory_entries.created_by renamed author, state's foreign key to ON DELETE
CASCADE (dropped, added NOT VALID, then VALIDATEd by schemagen; dropped and added in one ALTER by hand), the two
partial indexes recreated without their WHERE, a new index on checkpoints.session_id. schemagen's side also
reads the catalog and plans inside the transaction, checks the rows the new foreign key would break, plans
again before COMMIT, and validates the result after it; the hand-written side does none of that.
"""
from __future__ import annotations

import json
from pathlib import Path

BENCH = Path(__file__).resolve().parent
ROOT = BENCH.parent
M2 = ROOT / "examples" / "abathur_m2.py"
SG_SIDE = "schemagen apply --schema examples/abathur_m2.py"
HAND_SIDE = "hand-written SQL (bench/handwritten_pg_m2.py)"


def _counts(url):
    import psycopg
    with psycopg.connect(url) as conn:
        tables = [r[0] for r in conn.execute(
            "SELECT relname FROM pg_class WHERE relnamespace = 'public'::regnamespace AND relkind = 'r' ORDER BY 1")]
        return {t: conn.execute('SELECT count(*) FROM "%s"' % t).fetchone()[0] for t in tables}


def measure(ctx, source, alternate, times, ratio, log):
    """{"rows", "schemagen", "baseline", "ratio", "statements", "server"} or {"skipped": why}."""
    import common as C
    import pg_transfer
    cluster, why = pg_transfer.new_cluster()
    if cluster is None:
        return {"skipped": why}
    import psycopg
    cfg, env = ctx["cfg"], ctx["env"]
    sg = C.schemagen_command()
    try:
        log("pg_migration: starting a throwaway PostgreSQL cluster")
        cluster.start()
        admin = cluster.url()
        with psycopg.connect(admin, autocommit=True) as conn:
            conn.execute('CREATE DATABASE "m1"')
        loaded = C.run_process(sg + ["transfer", "--from", str(source), "--to", cluster.url("m1"), "--json"], env=env,
                               capture=True)
        if loaded.returncode:
            raise RuntimeError("schemagen transfer failed: %s" % loaded.stderr[-800:])
        rows = json.loads(loaded.stdout)["rows"]
        trial = cluster.url("trial")

        def prepare(name):
            with psycopg.connect(admin, autocommit=True) as conn:
                conn.execute('DROP DATABASE IF EXISTS "trial" WITH (FORCE)')
                conn.execute('CREATE DATABASE "trial" TEMPLATE "m1"')

        def after(name):
            with psycopg.connect(admin, autocommit=True) as conn:
                conn.execute('DROP DATABASE IF EXISTS "trial" WITH (FORCE)')

        sides = {
            SG_SIDE: lambda: C.run_process(sg + ["apply", "--db", trial, "--schema", str(M2)], env=env),
            HAND_SIDE: lambda: C.run_process(C.python_cmd("handwritten_pg_m2.py", trial), env=env),
        }
        log("pg_migration: %s" % ", ".join(sides))
        res = alternate(sides, cfg["runs"], cfg["warmup"], prepare=prepare, after=after)
        out = {"rows": rows, "schemagen": times(res[SG_SIDE]), "baseline": times(res[HAND_SIDE]),
               "server": Path(cluster.bindir).parent.name}
        out["ratio"] = ratio(out["schemagen"], out["baseline"])
        # once more per side, not timed: both reach Milestone 2, every row kept; schemagen's statements and lock time
        before = _counts(cluster.url("m1"))
        for name in (SG_SIDE, HAND_SIDE):
            prepare(name)
            if name == SG_SIDE:
                done = C.run_process(sg + ["apply", "--db", trial, "--schema", str(M2), "--json"], env=env, capture=True)
                applied = json.loads(done.stdout)
                out["statements"] = applied["statements"]
                out["transaction_s"] = applied["seconds"]
            else:
                sides[name]()
            check = C.run_process(sg + ["validate", "--db", trial, "--schema", str(M2), "--json"], env=env,
                                  capture=True)
            if check.returncode or _counts(trial) != before:
                raise RuntimeError("%s: the result does not match Milestone 2 or lost rows: %s" % (
                    name, (check.stdout + check.stderr)[-800:]))
            after(name)
        out["validated"] = True
        return out
    finally:
        cluster.stop()
