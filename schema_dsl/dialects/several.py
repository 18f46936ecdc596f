"""One command on several --db, one after another: one failure does not stop the others.

    ran = run_each(dbs, reports, run_one, as_json=..., echo=..., documents=..., committed=...)

One database: exactly the single-database behaviour (run_one is called and whatever it raises goes on up;
run_each returns None). Several: each database's output under a "== DB" header, then a summary table (--json: one
list, one object per database, each with its exit_code and error); the run's exit code is the worst, in the
order 3, 2, 1, 0. A Ctrl-C stops the run: the database it hit is "interrupted" (exit 3 there when its change was
committed, else 130) and the rest are "not started"; what the whole run says and exits is the caller's
(Ran.interrupted names the database it hit).

Standard library only: the caller hands in how to print (echo(text, err=False)), which exceptions are its
expected failures (each with exit_code and a one-line message), and where a database's --json document goes
(documents.start(as_json) before each database, documents.take() after it: the documents emitted meanwhile).
"""
from __future__ import annotations

import contextlib

from ..errors import EXIT_CHANGED_THEN_FAILED, EXIT_INTERRUPTED, EXIT_PROBLEMS, EXIT_REFUSED, SchemagenError
from ..words import plural
from . import shown

WORST = (EXIT_CHANGED_THEN_FAILED, EXIT_REFUSED, EXIT_PROBLEMS, 0)  # the run's exit code: the worst, in this order
MEANING = {0: "ok", 1: "problems found", 2: "refused, nothing changed", 3: "changed, then failed",
           130: "interrupted"}


class Ran:
    """What a run on several databases found: one result per --db, in order ({"database", "exit_code", "error",
    "result": its --json document}), and the database a Ctrl-C hit (None: not interrupted)."""

    def __init__(self, results, interrupted):
        self.results, self.interrupted = results, interrupted

    def exit_code(self):
        """The worst exit code of the databases (3, then 2, then 1, then 0; anything else: the highest)."""
        codes = {r["exit_code"] for r in self.results}
        return next((c for c in WORST if c in codes), max(codes))

    def json(self):
        """--json: the list, each database's document with its database, exit_code and error."""
        import json  # several databases under --json only
        return json.dumps([dict(r["result"], database=r["database"], exit_code=r["exit_code"], error=r["error"])
                           for r in self.results], indent=2, sort_keys=True, default=str)

    def summary(self):
        """The table printed after the databases' output (after an empty line): one row per database."""
        width = max(len(r["database"]) for r in self.results)
        lines = ["", "%s:" % plural(len(self.results), "file")]
        for r in self.results:
            what = MEANING.get(r["exit_code"], "exit %d" % r["exit_code"])
            lines.append("  %s  %d  %s%s" % (r["database"].ljust(width), r["exit_code"], what,
                                             (": " + r["error"]) if r["error"] else ""))
        return "\n".join(lines)


def run_each(dbs, reports, run_one, *, as_json, echo, documents, committed, expected=(SchemagenError,),
             interrupts=(KeyboardInterrupt,), on_interrupt=None):
    """Run run_one(db, report) for each --db (reports: the --report path of each, or None), one after another.

    expected: the exceptions that are a database's expected failure (exit_code, and a message printed as
    "error: ..." on stderr); a SystemExit is a database's exit code; interrupts: what a Ctrl-C raises
    (on_interrupt() is called at once). committed: the databases whose change was committed (read when
    interrupted). Under --json stdout is only the list: each database's other output is swallowed.
    """
    if len(dbs) == 1:
        run_one(dbs[0], reports[0])
        return None
    import io  # several databases only (a single-file apply's start-up is benchmarked)
    results, interrupted = [], None
    for db, report_path in zip(dbs, reports):
        out = io.StringIO() if as_json else None  # under --json stdout is only the JSON list
        code, error = 0, None
        documents.start(as_json)
        try:
            with contextlib.redirect_stdout(out) if as_json else contextlib.nullcontext():
                if not as_json:
                    echo("== %s" % shown(db))
                run_one(db, report_path)
        except expected as exc:
            code, error = getattr(exc, "exit_code", EXIT_REFUSED), " ".join(str(exc).split())
            if not as_json:
                echo("error: %s" % error, err=True)
        except SystemExit as exc:
            code = exc.code if isinstance(exc.code, int) else 1
        except interrupts:  # Ctrl-C, at the data-loss question too
            if on_interrupt is not None:
                on_interrupt()
            interrupted = db
        finally:
            collected = documents.take()
        if interrupted is not None:
            was_committed = db in committed
            results.append({"database": shown(db), "result": {"database": shown(db)},
                            "exit_code": EXIT_CHANGED_THEN_FAILED if was_committed else EXIT_INTERRUPTED,
                            "error": "interrupted after COMMIT" if was_committed else "interrupted; nothing changed here"})
            results += [{"database": shown(d), "result": {"database": shown(d)},
                         "exit_code": EXIT_INTERRUPTED, "error": "not started (interrupted)"}
                        for d in dbs[len(results):]]
            break
        obj = collected[-1] if collected else {"database": shown(db)}
        results.append({"database": shown(db), "exit_code": code, "error": error, "result": obj})
    return Ran(results, interrupted)
