"""Where the time of `schemagen apply` goes: each phase, each kind of SQL, Python vs SQLite.

    python bench/profile_apply.py DB [--backup] [--cprofile]

Does in one process what `schemagen apply --db DB [--no-backup]` does (the
library's apply, then the validation report: since issue 20 built on apply's
own connection after COMMIT, and timed apart), with a timing connection
factory (every execute is timed, by kind of statement, apply vs report) and
timing wrappers around the library's phases. SQL time is the time spent
inside sqlite3's execute (where SQLite runs the statement); the rest of a
phase is Python. Prints JSON. With --cprofile, also the top functions by own
time. Profiling adds its own overhead: read the shares, not the totals.
"""
import json
import sqlite3
import sys
import time

T0 = time.perf_counter()
import attrs  # noqa: E402,F401
import click  # noqa: E402,F401

T1 = time.perf_counter()
import schema_dsl.migrate.apply as A  # noqa: E402
import schema_dsl.cli  # noqa: E402,F401
import schema_dsl.check.report as R  # noqa: E402
import schema_dsl.sqlite.structure as S  # noqa: E402
import schema_dsl.check.validate as V  # noqa: E402

T2 = time.perf_counter()

PHASE = ["apply"]
SQL = {}
FUNCS = {}


def kind_of(sql):
    s = " ".join(sql.split()).upper()
    for prefix in ("PRAGMA QUICK_CHECK", "PRAGMA INTEGRITY_CHECK", "PRAGMA FOREIGN_KEY_CHECK", "EXPLAIN QUERY PLAN",
                   "CREATE UNIQUE INDEX", "CREATE INDEX", "CREATE TABLE", "ALTER TABLE", "INSERT INTO", "DROP TABLE",
                   "BEGIN", "COMMIT", "ROLLBACK", "PRAGMA JOURNAL_MODE"):
        if s.startswith(prefix):
            return "CREATE INDEX" if prefix == "CREATE UNIQUE INDEX" else prefix
    if "PRAGMA_FOREIGN_KEY_CHECK" in s:
        return "foreign_key_check (scoped)"
    if s.startswith("SELECT COUNT(*)") or s.startswith("SELECT EXISTS"):
        return "row counts"
    if s.startswith("PRAGMA") or "SQLITE_MASTER" in s or "PRAGMA_" in s:
        return "introspection (PRAGMA, sqlite_master)"
    return "other"


class TimingConnection(sqlite3.Connection):
    def execute(self, sql, *args):
        start = time.perf_counter()
        try:
            return super().execute(sql, *args)
        finally:
            key = (PHASE[0], kind_of(sql))
            SQL[key] = SQL.get(key, 0.0) + time.perf_counter() - start

    def close(self):
        # closing the last connection checkpoints the WAL into the file: SQLite's work, not Python's
        start = time.perf_counter()
        try:
            return super().close()
        finally:
            key = (PHASE[0], "close (WAL checkpoint)")
            SQL[key] = SQL.get(key, 0.0) + time.perf_counter() - start


_connect = sqlite3.connect


def connect(*args, **kwargs):
    kwargs.setdefault("factory", TimingConnection)
    return _connect(*args, **kwargs)


sqlite3.connect = connect


def wrap(module, name, label=None):
    fn = getattr(module, name, None)
    if fn is None:
        return

    def timed(*args, **kwargs):
        start = time.perf_counter()
        try:
            return fn(*args, **kwargs)
        finally:
            key = "%s: %s" % (PHASE[0], label(args, kwargs) if callable(label) else (label or name))
            FUNCS[key] = FUNCS.get(key, 0.0) + time.perf_counter() - start
    setattr(module, name, timed)


def _fk_label(args, kwargs):
    tables = args[1] if len(args) > 1 else kwargs.get("tables")
    return "foreign_key_violations(%s)" % ("all tables" if tables is None else "%d scoped tables" % len(tables))


wrap(A, "plan_for")
wrap(A, "make_backup")
wrap(A, "foreign_key_violations", _fk_label)
wrap(A, "_violations", "_violations (full foreign_key_check after COMMIT)")
wrap(A, "_finish_connection")
wrap(A, "expected_structure")
wrap(V, "expected_structure")
wrap(V, "foreign_key_violations", _fk_label)
wrap(S, "read_structure")
wrap(S, "compare", "structure.compare")
wrap(R, "_lint_findings", "lint findings of the declaration")
wrap(A, "target_for", "target_for (reads generated/declaration.json)")
wrap(A, "migration_plan")


def main(path, backup, cprofile):
    prof = None
    if cprofile:
        import cProfile
        prof = cProfile.Profile()
        prof.enable()
    import inspect
    t_apply = time.perf_counter()
    if hasattr(R, "report_after_apply"):  # as the CLI's apply does: the report on apply's connection after COMMIT
        spent = {}
        on_connection = R.report_on_connection

        def timed_report(*args, **kwargs):
            PHASE[0] = "report"
            start = time.perf_counter()
            try:
                return on_connection(*args, **kwargs)
            finally:
                spent["report"] = time.perf_counter() - start
                PHASE[0] = "apply"
        R.report_on_connection = timed_report
        result = A.apply(path, backup=backup, report=R.report_after_apply(A.target_for(None)))
        report = result.report
        PHASE[0] = "report"
        V.format_text(report)
        t_end = time.perf_counter()
        t_report = t_end - spent.get("report", 0.0)
    else:
        result = A.apply(path, backup=backup)
        t_report = time.perf_counter()
        PHASE[0] = "report"
        params = inspect.signature(R.build_report).parameters
        if "applied" in params:  # reuse what apply verified and its foreign key check
            report = R.build_report(path, actual=result.structure, applied=result.foreign_key_check)
        elif "actual" in params:
            report = R.build_report(path, actual=getattr(result, "structure", None))
        else:
            report = R.build_report(path)
        V.format_text(report)
        t_end = time.perf_counter()
    if prof is not None:
        prof.disable()
    out = {
        "imports": {"click+attrs": T1 - T0, "schema_dsl": T2 - T1},
        "phases": {"apply": t_report - t_apply, "report": t_end - t_report},
        "statements": result.statements,
        "sql": {"%s | %s" % k: v for k, v in sorted(SQL.items(), key=lambda kv: -kv[1])},
        "functions": dict(sorted(FUNCS.items(), key=lambda kv: -kv[1])),
        "ok": report["ok"],
    }
    for phase in ("apply", "report"):
        sql_time = sum(v for (p, _), v in SQL.items() if p == phase)
        out["phases"][phase + " in SQLite"] = sql_time
        out["phases"][phase + " in Python"] = out["phases"][phase] - sql_time
    if prof is not None:
        import pstats
        st = pstats.Stats(prof)
        rows = []
        for (fname, line, func), (cc, nc, tt, ct, callers) in st.stats.items():
            rows.append({"function": "%s:%d(%s)" % (fname.split("/")[-1], line, func), "calls": nc, "own_s": tt, "cum_s": ct})
        out["top_own"] = sorted(rows, key=lambda r: -r["own_s"])[:12]
    print(json.dumps(out))


if __name__ == "__main__":
    main(sys.argv[1], "--backup" in sys.argv, "--cprofile" in sys.argv)
