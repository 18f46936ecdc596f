"""Lint findings that only a live database shows, and lint on a file (the database is only read)."""
from __future__ import annotations

import sqlite3

from ..analysis.lint import Finding, lint, resolve, declared_resolutions
from ..errors import DatabaseFileError
from ..sqlite import dbfile
from ..sqlite.eqp import has_stat1
from .explain import explain_queries


def lint_database(conn, schema, resolutions=None, explained=None):
    """Findings only a live database shows: no statistics, serves-queries whose plan skips their index.

    explained: the results of explain_queries on the same database (computed when not given).
    """
    findings = []
    if not has_stat1(conn):
        findings.append(Finding("no-statistics", "sqlite_stat1", "info",
                                "the database has no sqlite_stat1 rows (ANALYZE has not run on its data): the planner chooses indexes by "
                                "built-in estimates, and its choices can change once statistics exist"))
    if explained is None:
        explained = explain_queries(conn, schema)
    for r in explained:
        if r.uses_index:
            continue
        findings.append(Finding("index-not-used", r.index, "warning",
                                "the serves-query of '%s' does not use it on this database: %s%s" % (
                                    r.index, r.instead or "the plan names no index",
                                    ("; " + r.reason) if r.reason else ""),
                                suggestion=r.suggestion))
    return resolve(findings, declared_resolutions(schema) if resolutions is None else resolutions)


def lint_path(schema, db_path=None):
    """lint(schema), plus lint_database on the file at db_path (opened read-only) when one is given; a declared
    view or trigger that does not hold against the declared tables is refused (DeclarationError)."""
    from ..compile.render import check_declared_dependents  # Jinja2: lint renders the declaration to build it
    check_declared_dependents(schema)
    findings = lint(schema)
    if db_path is None:
        return findings
    conn = dbfile.open_existing(db_path, "ro")
    try:
        return findings + lint_database(conn, schema)
    except sqlite3.Error as exc:
        raise DatabaseFileError(dbfile.describe_sqlite_error(db_path, exc)) from None
    finally:
        conn.close()
