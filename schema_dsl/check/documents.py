"""The JSON document of plan, apply and validate: one shape on SQLite and PostgreSQL (docs/reference.md).

Each object document carries "version": VERSION (a change that renames, removes or retypes a key raises it).
The keys SQLite had stay; PostgreSQL gives the same keys with the same JSON types. A fact only one engine has
lives under one key present on both: [] or {} (0, False, "") where it does not apply, never null. The plan
records are one class on both engines (migrate/steps.py's Step and Plan): nothing in this module imports psycopg,
and the CLI imports it only under --json.
"""
from __future__ import annotations

import re

VERSION = 1

_PG_COLUMN = re.compile(r"'([^']+)'\.'([^']+)'")


def step(s, dialect="sqlite"):
    """A plan step (migrate/steps.py's Step, either engine's) for machines: what kind of change (its change
    record's class name), on which table and column, the text a person reads, and (PostgreSQL) the ACCESS
    EXCLUSIVE it holds and whether it runs after COMMIT."""
    change = s.change
    kind = s.kind
    column = getattr(change, "column", None)
    column = getattr(column, "name", column)
    if column is None and getattr(change, "new", None) is not None:
        column = change.new  # a rename: the declared name
    drops = {}
    if kind == "Remove":  # what goes: an index, view, trigger, table or column, and its table
        drops = {"kind": change.kind, "name": change.name, "table": change.table}
        if change.kind == "column":
            column = change.name
    elif dialect == "postgresql" and column is None and kind != "RenameTable":
        found = _PG_COLUMN.search(s.title)  # PostgreSQL's in-place records name the column in the title only
        if found:
            column = found.group(2)
    reasons = getattr(change, "reasons", None) or ()
    return {"kind": kind, "table": s.table, "column": column, "title": s.title, "why": s.why,
            "rows": s.rows,
            "statements": list(s.statements),
            "reasons": [{"kind": r.kind, "columns": list(r.columns), "text": r.text} for r in reasons],
            "drops": drops,
            "access_exclusive": s.lock or "",
            "concurrent": bool(s.concurrent)}


def plan(p, database, dialect):
    """plan --json: the steps apply would run (p: a Plan of either engine), what is kept and what would be lost."""
    steps = list(p.steps)
    return {
        "version": VERSION, "database": database, "dialect": dialect,
        "up_to_date": not steps, "fresh": bool(p.fresh),
        "backup_needed": bool(p.touches_rows) and dialect == "sqlite",
        "steps": [step(s, dialect) for s in steps],
        "kept": list(p.extras), "data_loss": list(p.data_loss), "notes": list(p.notes),
        "access_exclusive": [{"step": n, "title": s.title, "lock": s.lock}
                             for n, s in enumerate(steps, start=1) if s.lock],
        "concurrent_steps": len(p.concurrent),
    }


def apply(result, database, dialect, step_seconds=None):
    """apply --json without its report: what was done (the ApplyResult of either engine: steps, statements, rows,
    timings, the backup, what an online apply did).

    step_seconds: what each step took, in order (default: result.step_seconds; a step's seconds is null where it
    was not measured)."""
    p = result.plan
    steps = list(p.steps)
    if step_seconds is None:
        step_seconds = result.step_seconds
    timed = list(step_seconds) + [None] * len(steps)
    out = []
    for s, t in zip(steps, timed):
        d = step(s, dialect)
        d["seconds"] = round(t, 4) if t is not None else None
        out.append(d)
    return {
        "version": VERSION, "database": database, "dialect": dialect, "applied": bool(result.applied),
        "fresh": bool(result.fresh),
        "up_to_date": not result.applied, "seconds": round(result.seconds, 4), "statements": result.statements,
        "backup": result.backup, "steps": out,
        "kept": list(p.extras), "data_loss": list(p.data_loss), "notes": list(p.notes),
        "concurrent_built": int(result.concurrent_built or 0),
        "online": dict(result.online),
    }


def validate(report):
    """validate --json: the report, with the document's version."""
    return dict(report, version=VERSION)


# explain --json: a list (as before), one object per serves-query, with the keys of both engines
_EXPLAIN_DEFAULTS = {"declared_for_postgresql": False, "identical": [], "plan_json": {}, "seqscan_off": False,
                     "used": [], "suggestion": None, "suggested_query": None, "suggested_plan": None, "notes": []}


def explain(results):
    """The explain results of either engine with one set of keys: what one engine does not have is there empty
    (SQLite: no plan_json, seqscan_off or declared_for_postgresql; PostgreSQL: no suggestion yet)."""
    return [{**_EXPLAIN_DEFAULTS, "sqlite_query": r["query"], **r} for r in results]
