"""Before COMMIT, and when planning: every view, trigger and foreign key of the file still holds.

The checks themselves are the SQLite ground's (sqlite/dependents.py: a view is
prepared, a trigger's columns and body are resolved as SQLite's RENAME
resolves them, a foreign key's parent key is located). Here they run before
COMMIT (check_dependents: apply rolls back) and on an in-memory copy of the
planned structure (planned_problems: plan refuses), each counting only what
the plan breaks, not what was broken already.
"""
from __future__ import annotations

import sqlite3

from ..errors import ApplyError
from ..sqlite import dbfile
from ..sqlite.dependents import (broken_dependents, broken_foreign_keys, copy_schema, resolve_probe,  # noqa: F401
                                 trigger_columns, unresolved)


def unresolved_in_copy(conn):
    """unresolved() of the schema behind conn (read-only is enough), found on an in-memory copy; () when the
    copy cannot be built."""
    scratch = dbfile.scratch()
    try:
        return unresolved(scratch) if copy_schema(conn, scratch) else ()
    finally:
        scratch.close()


def check_dependents(conn, known=(), fresh=False):
    """ApplyError naming every view, trigger and foreign key that no longer holds (apply then rolls back);
    known: the lines broken_dependents gave before the plan ran (broken already, not by the plan).
    fresh (a new file): everything in it is the declaration's, whose trigger bodies render and lint check and
    whose parent keys lint judges (fk-parent-not-unique), as the declaration accepts them: only the views and
    the triggers' columns are checked, as cheaply as before (apply on a new file is benchmarked)."""
    problems = [line for line in broken_dependents(conn, foreign_keys=not fresh, bodies=not fresh) if line not in known]
    if problems:
        raise ApplyError("after the plan a view, trigger or foreign key no longer works, rolled back: "
                         + "; ".join(problems[:10]))


def planned_problems(conn, statements):
    """The views, triggers and foreign keys that the statements would break in the file behind conn, one line
    each, found on an in-memory copy of its schema (no rows, nothing read but sqlite_master), so that plan
    refuses what apply would roll back. What was already broken before the statements is not counted; a copy
    that cannot be built, or a statement that fails on it, finds nothing here (apply names the failing step)."""
    scratch = dbfile.scratch()
    try:
        scratch.execute("PRAGMA foreign_keys = OFF")
        if not copy_schema(conn, scratch):
            return []
        before = set(broken_dependents(scratch))
        scratch.execute("BEGIN")
        try:
            for stmt in statements:
                scratch.execute(stmt)
        except sqlite3.Error:
            return []
        return [line for line in broken_dependents(scratch) if line not in before]
    finally:
        scratch.close()
