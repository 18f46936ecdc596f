"""The migration, backup and in-process fresh-apply measures alone, at one size, outside a full suite run.

    python bench/at_size.py [--tasks 150000] [--runs 5] [--json FILE]

Builds an old-shape fixture of --tasks tasks (bench/common.py's build_legacy) and runs run.py's own
measure_migration (old shape: hand-written minimal migration, `apply --no-backup`, `--no-validate`, backup
on) and measure_backup (schemagen's backup vs cp + fsync vs the backup API) on it, then the in-process fresh
apply (bench/inproc_apply.py); prints the results as JSON. The same code as the full suite, for re-measuring
these at the size an issue names (150k tasks) while a full run would take too long.
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import common as C  # noqa: E402
import run as R  # noqa: E402


def main(argv=None):
    ap = argparse.ArgumentParser()
    ap.add_argument("--tasks", type=int, default=150_000)
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--inproc-runs", type=int, default=200,
                    help="runs per side of the in-process fresh apply (each a few ms: many, for a stable median)")
    ap.add_argument("--json")
    ap.add_argument("--work", default=str(C.BENCH / "work" / "at_size"))
    args = ap.parse_args(argv)
    work = Path(args.work) / ("run-%d" % os.getpid())
    work.mkdir(parents=True, exist_ok=True)
    cfg = dict(R.SIZES["full"], small=args.tasks, runs=args.runs, warmup=1, inproc_runs=args.inproc_runs)
    ctx = {"cfg": cfg, "work": work, "env": R.child_env(work), "fixtures": {}}
    out = {"tasks": args.tasks, "runs": args.runs, "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
           "load_before": os.getloadavg()}
    try:
        R.log("building an old-shape fixture, %d tasks" % args.tasks)
        ctx["fixtures"]["old_small"] = C.build_legacy(work / "fixture-old-small.db", "old", args.tasks)
        out["migration"] = R.measure_migration(ctx, "small", "old", "minimal", True, False)
        out["backup"] = R.measure_backup(ctx, "small")
        r = C.run_process(C.python_cmd("inproc_apply.py", work, cfg["inproc_runs"]), env=ctx["env"], capture=True)
        data = json.loads(r.stdout)
        out["inproc"] = {"library": R.summary(data["library"]), "direct": R.summary(data["direct"])}
        out["inproc"]["ratio"] = R.ratio(out["inproc"]["library"], out["inproc"]["direct"])
    finally:
        out["load_after"] = os.getloadavg()
        shutil.rmtree(work, ignore_errors=True)
    text = json.dumps(out, indent=1, default=str)
    if args.json:
        Path(args.json).write_text(text, encoding="utf-8")
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
