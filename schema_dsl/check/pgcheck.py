"""explain and lint --db on PostgreSQL: the sample rows, the findings and the --strict rule (pg/explain.py runs
the EXPLAINs; psycopg is imported only through it, when a PostgreSQL URL is given).

The sample is SQLite's own generator (check/explain.py's load_sample_rows: CHECK lists, the constants the
serves-queries look for, foreign keys to rows inserted before), run on a temporary SQLite file brought to the
declaration; rows a foreign key would refuse are dropped there, and the rest is copied into PostgreSQL's
temporary tables. The same declaration gets the same sample on both engines.
"""
from __future__ import annotations

import os
import shutil
import tempfile

from ..analysis.lint import Finding, declared_resolutions, lint, resolve
from ..errors import SchemagenError
from ..migrate.apply import apply
from ..sqlite import dbfile
from ..sqlite.quote import quote_identifier
from .explain import load_sample_rows


def _pg():
    try:
        from ..pg import apply as pg_apply, explain as pg_explain  # psycopg: PostgreSQL paths only
    except ImportError as exc:
        raise SchemagenError("PostgreSQL needs psycopg (%s): pip install 'schemagen[postgresql]'" % exc) from None
    return pg_apply, pg_explain


def sample_rows(schema, rows):
    """{table: (columns, rows)}: `rows` generated rows per declared table, every foreign key satisfied."""
    folder = tempfile.mkdtemp(prefix="schemagen-pg-sample-")
    try:
        path = os.path.join(folder, "sample.db")
        apply(path, schema=schema, backup=False)
        conn = dbfile.connect(path)
        try:
            load_sample_rows(conn, schema, rows)
            for _ in range(len(schema.tables) + 1):  # orphans of orphans go in the next round
                orphans = conn.execute("PRAGMA foreign_key_check").fetchall()
                if not orphans:
                    break
                for table, rowid, _parent, _fk in orphans:
                    if rowid is not None:
                        conn.execute("DELETE FROM %s WHERE rowid = ?" % quote_identifier(table), (rowid,))
                conn.commit()
            out = {}
            for table in schema.ordered_tables():
                columns = [c.name for c in table.columns]
                data = conn.execute("SELECT %s FROM %s" % (", ".join(quote_identifier(c) for c in columns),
                                                           quote_identifier(table.name))).fetchall()
                out[table.name] = (columns, data)
            return out
        finally:
            conn.close()
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def explain(url, decl, schema, sample=None):
    """The explain report (plain data) of a PostgreSQL database, or of temporary copies holding `sample` rows."""
    pg_apply, pg_explain = _pg()
    compiled = pg_apply.compiled_for(decl)
    if sample is None:
        return pg_explain.explain_database(url, compiled)
    return pg_explain.explain_sample(url, compiled, sample_rows(schema, sample))


def format_text(report):
    return _pg()[1].format_text(report)


def strict_severities(schema, report):
    """One severity per serves-query that uses neither its index nor an identical one: error when the declaration
    requires that plan (plan_check="required"), else warning."""
    required = {ix.name: ix.plan_check == "required" for ix in schema.indexes}
    return ["error" if required.get(r["index"]) else "warning" for r in report["results"] if not r["uses_index"]]


def lint_database(report, schema, resolutions=None):
    """Findings only the live PostgreSQL database shows: tables without statistics, serves-queries whose plan
    skips their index (from an explain report of the database itself)."""
    findings = []
    if report["without_statistics"]:
        findings.append(Finding(
            "no-statistics", "pg_statistic", "info",
            "%s no statistics (never analyzed, or empty when analyzed): %s; the planner chooses indexes by built-in "
            "estimates, and its choices can change once statistics exist (the index check ran with "
            "enable_seqscan=off)" % ("these tables have" if len(report["without_statistics"]) > 1 else "this table has",
                                     ", ".join(report["without_statistics"]))))
    for r in report["results"]:
        if r["uses_index"]:
            continue
        findings.append(Finding(
            "index-not-used", r["index"], "warning",
            "the serves-query of '%s' does not use it on this PostgreSQL database%s: %s%s" % (
                r["index"], " (even with enable_seqscan=off)" if r["seqscan_off"] and r["query"] else "",
                r["instead"] or "the plan names no index", ("; " + r["reason"]) if r["reason"] else "")))
    return resolve(findings, declared_resolutions(schema) if resolutions is None else resolutions)


def complete_report(report, url, compiled, schema):
    """A PostgreSQL validation report (pg/apply.py's check) with what SQLite's report also carries: the
    declaration's design findings, and each serves-query's plan (`explain`, from this module's explain).

    A declared required plan check (Index.plan_check="required") is shown (`required`, `uses_index`) but fails
    `explain --strict` only, not the report: the plan checks were written for SQLite's planner, and PostgreSQL's
    may serve the query with another index (the shipped declaration's idx_memory_namespace_key_version: its
    UNIQUE constraint's index)."""
    required = {ix.name: ix.plan_check == "required" for ix in schema.indexes}
    samples = []
    for r in _pg()[1].explain_database(url, compiled)["results"]:
        accepted = [r["index"], *r.get("identical", ())]
        used = list(r.get("used", ()))
        samples.append({"index": r["index"], "query": r["query"] or r["sqlite_query"], "plan": list(r["plan"]),
                        "uses_index": bool(r["uses_index"]), "indexes_used": used,
                        "used_by": next((n for n in used if n in accepted), None),
                        "required": bool(required.get(r["index"]))})
    return dict(report, findings=[f.as_dict() for f in lint(schema)], explain=samples)


def lint_url(url, decl, schema):
    """lint(schema), plus what the PostgreSQL database at url shows (only read)."""
    return lint(schema) + lint_database(explain(url, decl, schema), schema)


def to_json(report):
    """The report's results as JSON: one object per serves-query, as for SQLite."""
    import json  # output only
    from . import documents  # one item shape on both engines
    return json.dumps(documents.explain(report["results"]), indent=2, sort_keys=True)
