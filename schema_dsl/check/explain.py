"""Does each index serve the query it was declared for? EXPLAIN QUERY PLAN says.

For every serves-query of the declaration, `explain_queries(conn, schema)`
runs EXPLAIN QUERY PLAN (`?` bound to NULL), tells whether the plan uses
the intended index and how (SEARCH, or a SCAN of the whole index), and when
it does not, what the plan does instead (a full table SCAN, another index,
the rowid, a temp B-tree for ORDER BY), why, and, where a known rewrite or
index change makes SQLite use the index, the suggestion, verified by
explaining the rewritten query on the same database.

Plans depend on statistics: the result says whether the database has
sqlite_stat1. `explain_database(path, sample_rows=N)` runs instead on a
scratch copy (SQLite's backup API into a temporary file, brought to the
declaration, loaded with N generated rows per table, then ANALYZE); the
database itself is only read.
"""
from __future__ import annotations

import datetime
import json
import os
import shutil
import signal
import sqlite3
import tempfile
import threading
from typing import Union

from attrs import field, frozen

from ..migrate.apply import apply
from ..sqlite import dbfile

from ..analysis import lint, sqlterms
from ..errors import DatabaseFileError
from ..sqlite.quote import quote_identifier
from ..sqlite.ddl import index_where
from ..sqlite.eqp import (describe_plan, has_stat1, index_access, indexes_used, plan_uses_index,
                          temp_btrees, try_explain)



def _tuple(v):
    return tuple(v) if v is not None else None


@frozen
class QueryPlan:
    """The plan of one serves-query and what it says about the intended index."""

    index: str
    table: str
    query: str
    plan: tuple = field(converter=tuple)
    uses_index: bool
    access: Union[str, None] = None          # how the index is used: "search", "scan", "covering search", "covering scan"
    instead: Union[str, None] = None         # what the plan does instead, when the index is not used
    reason: Union[str, None] = None
    suggestion: Union[str, None] = None
    suggested_query: Union[str, None] = None
    suggested_plan: Union[tuple, None] = field(default=None, converter=_tuple)
    notes: tuple = field(default=(), converter=tuple)
    statistics: str = "none"

    def as_dict(self):
        return {"index": self.index, "table": self.table, "query": self.query, "plan": list(self.plan),
                "uses_index": self.uses_index, "access": self.access, "instead": self.instead, "reason": self.reason,
                "suggestion": self.suggestion, "suggested_query": self.suggested_query,
                "suggested_plan": list(self.suggested_plan) if self.suggested_plan is not None else None,
                "notes": list(self.notes), "statistics": self.statistics}


@frozen
class ExplainReport:
    database: str
    had_stat1: bool                 # whether the database itself has sqlite_stat1
    source: str                     # "database" or "scratch"
    sample_rows: Union[int, None]
    results: tuple = field(converter=tuple)
    notes: tuple = field(default=(), converter=tuple)


# --- reading plans ----------------------------------------------------------

def _live_index(conn, name):
    """Columns, uniqueness, partial WHERE and origin of an index in the database, or None."""
    row = conn.execute("SELECT tbl_name, sql FROM sqlite_master WHERE type = 'index' AND name = ?", (name,)).fetchone()
    if row is None:
        return None
    table, sql = row
    origin, unique = "c", False
    for r in conn.execute("SELECT * FROM pragma_index_list(?)", (table,)):
        if r[1] == name:
            unique, origin = bool(r[2]), r[3]
    cols = [(r[2].lower() if r[2] else "<expression>", bool(r[3]))
            for r in conn.execute("SELECT * FROM pragma_index_xinfo(?)", (name,)) if r[5]]
    return {"table": table, "columns": tuple(cols), "unique": unique, "origin": origin, "where": index_where(sql)}


def _key_of_live(name, info):
    origin = {"pk": "the PRIMARY KEY", "u": "the UNIQUE constraint"}.get(info["origin"])
    label = ("the automatic index %s of %s (%s)" % (name, origin, ", ".join(c for c, _ in info["columns"]))
             if origin else "index '%s'" % name)
    return lint.IndexKey(label, info["columns"], info["unique"], info["where"], bool(origin))


# --- one query ----------------------------------------------------------------

def _verify(conn, query, index):
    """(plan, uses) of a rewritten query; plan None when it cannot be prepared."""
    lines, _ = try_explain(conn, query)
    if lines is None:
        return None, False
    return lines, plan_uses_index(lines, index) and (index_access(lines, index) or "").endswith("search")


def _explain_one(conn, schema, ix, query, statistics):
    table = schema.table(ix.table)
    base = dict(index=ix.name, table=ix.table, query=query, statistics=statistics)
    lines, error = try_explain(conn, query)
    if lines is None:
        return QueryPlan(plan=["error: %s" % error], uses_index=False, instead="the query cannot be prepared",
                         reason="the query cannot be prepared on this database (%s); is it at the declaration? "
                                "(`schemagen validate`)" % error, **base)
    live = _live_index(conn, ix.name)
    if live is None:
        return QueryPlan(plan=lines, uses_index=False, instead=describe_plan(lines),
                         reason="index '%s' is not in this database (`schemagen apply` creates it)" % ix.name, **base)
    notes = ["%s sorted in a temp B-tree" % what for what in temp_btrees(lines)]
    access = index_access(lines, ix.name)
    likes = [(c, p, t) for c, p, t in sqlterms.like_terms(query) if ix.columns and c == ix.columns[0].name.lower()]
    if access is not None:
        suggestion = suggested = suggested_plan = None
        reason = None
        if access.endswith("scan") and likes:
            reason, suggestion, suggested, suggested_plan = _like_advice(conn, ix, query, likes[0])
        elif access.endswith("scan"):
            notes.insert(0, "the index is read whole, in order (no search): the query constrains none of its leading "
                            "columns%s" % (" (it serves the ORDER BY / GROUP BY)" if sqlterms.order_columns(query) else ""))
        return QueryPlan(plan=lines, uses_index=True, access=access, reason=reason, suggestion=suggestion,
                         suggested_query=suggested, suggested_plan=suggested_plan, notes=notes, **base)

    instead = describe_plan(lines)
    reasons, suggestion, suggested, suggested_plan = [], None, None, None
    rowid = lint.rowid_column(table) if table is not None else None
    key = lint.index_key(ix)
    chosen = [name for name in indexes_used(lines) if name != ix.name]
    if rowid is not None and key.columns[0][0] == rowid.lower():
        reasons.append("'%s' starts with %s, the INTEGER PRIMARY KEY: the planner reads the row by rowid, which no index "
                       "can beat; the index is never needed for this query (lint: redundant-index)" % (ix.name, rowid))
    for name in chosen:
        info = _live_index(conn, name)
        if info is None:
            continue
        other = _key_of_live(name, info)
        if lint.provided_by(key, other, ix.serves) or lint.provided_by(other, key, ix.serves):
            identical = other.columns == key.columns and other.where == key.where
            reasons.append("the planner chose %s, which %s '%s' (%s); of equivalent indexes SQLite uses one" % (
                other.name, "is identical to" if identical else "serves the query as well as",
                ix.name, "same columns and WHERE" if identical else "same leading columns"))
            suggestion = ("drop one of the two: '%s' or %s; the query is served either way (lint: redundant-index)"
                          % (ix.name, other.name) if not other.automatic else
                          "drop '%s': %s serves the query the same way (lint: redundant-index)" % (ix.name, other.name))
            break
    missing = sqlterms.unimplied_terms(query, ix.where) if ix.where else []
    if missing:
        q_terms = sqlterms.query_terms(query)
        texts = [sqlterms.display(m) for m in missing]
        logical = all(any(sqlterms.logically_implies(q, m) for q in q_terms) for m in missing)
        reasons.append("the partial index's WHERE %s is not implied by the query's WHERE term by term (SQLite matches "
                       "the terms literally, partialindex.html), so the index cannot serve it" % " AND ".join(texts))
        candidate = sqlterms.add_where_terms(query, texts)
        if logical and candidate:
            suggested = candidate
            suggested_plan, ok = _verify(conn, candidate, ix.name)
            suggestion = "repeat the index's term in the query (its result does not change): %s%s" % (
                candidate, _verified(ok, ix.name, suggested_plan))
        else:
            suggestion = ("the query must state %s to use the index (its result changes), or the index's WHERE must "
                          "become a term the query has" % " AND ".join(texts))
    if likes and not missing:
        reason, suggestion, suggested, suggested_plan = _like_advice(conn, ix, query, likes[0])
        reasons.append(reason)
    forced = sqlterms.with_indexed_by(query, ix.table, ix.name)
    forced_lines, forced_error = try_explain(conn, forced) if forced else (None, "no FROM clause found")
    if not reasons:
        forced_access = index_access(forced_lines, ix.name) if forced_lines else None
        serves = bool(forced_access) and (forced_access.endswith("search") or (
            bool(sqlterms.order_columns(query)) and not temp_btrees(forced_lines)))
        forced_text = " / ".join(forced_lines) if forced_lines else "no plan: %s" % forced_error
        if not serves:
            first = ix.columns[0].name.lower()
            usable = sqlterms.constrained_columns(query) | set(sqlterms.order_columns(query))
            if first not in usable:
                reasons.append("the query neither constrains nor orders by the index's first column %s, so the index "
                               "cannot serve it (with INDEXED BY: %s)" % (ix.columns[0].name, forced_text))
            else:
                reasons.append("SQLite finds no plan that searches the index for this query (with INDEXED BY: %s)"
                               % forced_text)
        else:
            reasons.append("the index can serve the query (with INDEXED BY: %s) but the planner estimates its own plan "
                           "(%s) cheaper%s" % (
                               forced_text, instead,
                               "" if statistics != "none" else "; without sqlite_stat1 these are built-in estimates, and "
                               "ANALYZE on representative data may change the choice (`schemagen explain --sample-rows N`)"))
    return QueryPlan(plan=lines, uses_index=False, instead=instead, reason="; ".join(reasons), suggestion=suggestion,
                     suggested_query=suggested, suggested_plan=suggested_plan, notes=notes, **base)


def _verified(ok, index, lines):
    if lines is None:
        return " (not verified: the rewritten query cannot be prepared here)"
    if ok:
        return " (verified: its plan searches %s: %s)" % (index, " / ".join(lines))
    return " (not verified: its plan here is %s)" % " / ".join(lines)


def _like_advice(conn, ix, query, like):
    column, prefix, term = like
    reason = ("%s is a case-insensitive LIKE on a BINARY-collated column: while PRAGMA case_sensitive_like is off "
              "SQLite cannot search an index for it (optoverview.html#like_opt)" % sqlterms.display(term))
    suggested = suggested_plan = None
    forms = lint.like_rewrites(column, prefix)
    for form in forms:
        candidate = sqlterms.replace_like(query, column, prefix, form)
        if candidate is None:
            continue
        lines, ok = _verify(conn, candidate, ix.name)
        suggested, suggested_plan = candidate, lines
        suggestion = "query the prefix case-sensitively, as an index range: %s%s" % (candidate, _verified(ok, ix.name, lines))
        if ok:
            break
    else:
        suggestion = "query the prefix as %s (case-sensitive)" % " or ".join(forms)
    return reason, suggestion, suggested, suggested_plan


def explain_queries(conn, schema):
    """A QueryPlan for every serves-query of every declared index, in declaration order."""
    statistics = "sqlite_stat1" if has_stat1(conn) else "none"
    out = []
    for ix in schema.indexes:
        for query in ix.serves:
            out.append(_explain_one(conn, schema, ix, query, statistics))
    return out


# --- a scratch copy with representative rows -----------------------------------

_BASE_TIME = datetime.datetime(2025, 1, 1)


def _in_values(table):
    """{column: [literal values]} from CHECK (col IN (...)) constraints."""
    out = {}
    for check in table.checks:
        for term in sqlterms.expression_terms(check.expr):
            column, op, rest = sqlterms.comparison(term)
            if op == "in":
                values = sqlterms.literal_list(rest)
                if values:
                    out[column] = [_literal_value(v) for v in values]
    return out


def _literal_value(text):
    if text.startswith("'"):
        return text[1:-1].replace("''", "'")
    return float(text) if "." in text else int(text)


def _json_columns(table):
    cols = set()
    for check in table.checks:
        for term in sqlterms.expression_terms(check.expr):
            if len(term) == 4 and term[0][0] == "word" and term[0][1].lower() == "json_valid":
                cols.add(term[2][1].lower())
    return cols


def _query_literals(schema, table):
    """{column: [literals]} that the serves-queries on a table compare a column with (`col = 'x'`)."""
    out = {}
    for ix in schema.indexes:
        if ix.table.lower() != table.name.lower():
            continue
        for query in ix.serves:
            for term in sqlterms.query_terms(query):
                column, op, rest = sqlterms.comparison(term)
                if op in ("=", "==") and len(rest) == 1 and rest[0][0] in ("string", "number"):
                    value = _literal_value(sqlterms.text(rest))
                    if value not in out.setdefault(column, []):
                        out[column].append(value)
    return out


def _sample_value(table, column, i, n, unique, in_values, json_cols):
    name = column.name.lower()
    t = column.type.upper()
    if name in in_values:
        values = in_values[name]
        return values[i % len(values)]
    if name in json_cols:
        default = column.default.value if column.default is not None and hasattr(column.default, "value") else None
        return default if isinstance(default, str) and not unique else '{"n": %d}' % i
    if "BOOL" in t:
        return 1 if i % 10 == 9 else 0
    if "DATE" in t or "TIME" in t:
        step = datetime.timedelta(seconds=i) if unique else datetime.timedelta(minutes=37 * i)
        return (_BASE_TIME - step).strftime("%Y-%m-%d %H:%M:%S")
    cardinality = max(2, n // 20)
    if column.affinity == "INTEGER":
        return i + 1 if unique else (i % 97) + 1
    if column.affinity == "REAL":
        return float(i % 1000)
    if column.affinity == "BLOB" and not column.not_null:
        return None
    if column.affinity == "BLOB":
        return b"\x00"
    if unique:
        return "%s-sample-%d" % (name, i)
    if not column.not_null and column.default is None and i % 4 == 3:
        return None
    return "%s-%d" % (name, i % cardinality)


def load_sample_rows(conn, schema, rows):
    """Insert `rows` generated rows into every declared table; returns {table: rows inserted}.

    Values follow the declaration: CHECK (col IN (...)) lists, the constants
    the serves-queries compare a column with (plus a few others), JSON for
    json_valid columns, a mostly-0 BOOLEAN, spread timestamps, about 20 rows
    per value in other columns, unique values in the last column of every
    PRIMARY KEY / UNIQUE constraint, and foreign keys pointing at the parent
    rows inserted before (a quarter NULL where the column allows NULL).
    Rows a constraint refuses are skipped (INSERT OR IGNORE).
    """
    conn.execute("PRAGMA foreign_keys = OFF")
    keys, counts = {}, {}
    conn.execute("BEGIN")
    try:
        for table in schema.ordered_tables():
            rowid = lint.rowid_column(table)
            unique_cols = set()
            for cols in list(table.all_uniques) + ([table.primary_key.columns] if table.primary_key else []):
                unique_cols.add(cols[-1].lower())
            fks = {f.columns[0].lower(): f for f in table.foreign_keys if len(f.columns) == 1}
            in_values, json_cols = _in_values(table), _json_columns(table)
            for column, literals in _query_literals(schema, table).items():
                if column not in in_values and column not in unique_cols and column not in json_cols:
                    # the values the queries look for, among a few others (each about a fifth of the rows)
                    in_values[column] = literals + ["%s-%d" % (column, k) for k in range(max(1, 5 - len(literals)))]
            columns = [c for c in table.columns if rowid is None or c.name.lower() != rowid.lower()]
            own_keys = []
            data = []
            for i in range(rows):
                row = []
                for c in columns:
                    f = fks.get(c.name.lower())
                    if f is not None:
                        parents = own_keys if f.ref_table.lower() == table.name.lower() else keys.get(f.ref_table.lower(), [])
                        if not parents or (not c.not_null and i % 4 == 3):
                            row.append(None)
                        else:
                            row.append(parents[(i * 7) % len(parents)])
                        continue
                    row.append(_sample_value(table, c, i, rows, c.name.lower() in unique_cols, in_values, json_cols))
                data.append(row)
                if table.primary_key and len(table.primary_key.columns) == 1 and rowid is None:
                    pk = table.primary_key.columns[0].lower()
                    own_keys.append(row[[c.name.lower() for c in columns].index(pk)])
            before = conn.execute("SELECT count(*) FROM %s" % quote_identifier(table.name)).fetchone()[0]
            insert = "INSERT OR IGNORE INTO %s (%s) VALUES (%s)" % (
                quote_identifier(table.name), ", ".join(quote_identifier(c.name) for c in columns),
                ", ".join("?" * len(columns)))
            try:
                conn.executemany(insert, data)
            except sqlite3.Error:
                # a row an expression index cannot take (json_extract of a non-JSON sample), or a trigger calling
                # a function the application registers: OR IGNORE does not skip those; keep the rows that fit
                for row in data:
                    try:
                        conn.execute(insert, row)
                    except sqlite3.Error:
                        continue
            after = conn.execute("SELECT count(*) FROM %s" % quote_identifier(table.name)).fetchone()[0]
            counts[table.name] = after - before
            if rowid is not None:
                keys[table.name.lower()] = [r[0] for r in conn.execute(
                    "SELECT rowid FROM %s ORDER BY rowid DESC LIMIT ?" % quote_identifier(table.name), (rows,))]
            elif table.primary_key and len(table.primary_key.columns) == 1:
                keys[table.name.lower()] = own_keys
        conn.execute("COMMIT")
    except BaseException:
        conn.execute("ROLLBACK")
        raise
    return counts


def scratch_copy(path, target):
    """Copy the database at path into target with SQLite's backup API (the source is only read).

    The copy must pass PRAGMA quick_check: a damaged file is refused (DatabaseFileError), never reported on.
    """
    source = dbfile.open_existing(path, "ro")
    dest = dbfile.connect(target)
    try:
        source.backup(dest)
        problems = [r[0] for r in dest.execute("PRAGMA quick_check(5)")]
    except sqlite3.DatabaseError as exc:
        problems = [str(exc)]
    finally:
        source.close()
        dest.close()
    if problems != ["ok"]:
        raise DatabaseFileError("database %r is damaged (quick_check: %s): no plans are reported on a copy of it; "
                                "`schemagen validate --full-integrity` shows the damage" % (
                                    os.fspath(path), "; ".join(problems)[:300]))


def _raise_on_sigterm():
    """Make SIGTERM raise KeyboardInterrupt, so that the scratch copy's cleanup runs; returns what to restore.

    Only the main thread can set a handler: elsewhere nothing changes (None).
    """
    if threading.current_thread() is not threading.main_thread():
        return None

    def terminated(signum, frame):
        raise KeyboardInterrupt("terminated (SIGTERM)")

    return (signal.signal(signal.SIGTERM, terminated),)


def _restore_sigterm(saved):
    if saved is not None:
        signal.signal(signal.SIGTERM, saved[0] if saved[0] is not None else signal.SIG_DFL)


def explain_database(path, schema, sample_rows=None):
    """An ExplainReport for the database at path (only read), or for a scratch copy with sample_rows rows per table."""
    path = os.fspath(path)
    conn = dbfile.open_existing(path, "ro")
    try:
        try:
            had_stat1 = has_stat1(conn)
            if sample_rows is None:
                return ExplainReport(path, had_stat1, "database", None, explain_queries(conn, schema))
        finally:
            conn.close()
    except sqlite3.Error as exc:
        raise DatabaseFileError(dbfile.describe_sqlite_error(path, exc)) from None
    saved = _raise_on_sigterm()  # SIGINT already raises; SIGTERM must not leave the scratch copy behind either
    folder = None
    try:
        folder = tempfile.mkdtemp(prefix="schemagen-explain-")
        scratch = os.path.join(folder, "scratch.db")
        scratch_copy(path, scratch)
        applied = apply(scratch, schema=schema, backup=False)
        conn = dbfile.connect(scratch)
        try:
            counts = load_sample_rows(conn, schema, sample_rows)
            conn.execute("ANALYZE")
            results = explain_queries(conn, schema)
        finally:
            conn.close()
    finally:
        if folder is not None:
            shutil.rmtree(folder, ignore_errors=True)
        _restore_sigterm(saved)
    notes = ["scratch copy made with the backup API%s, %s, then ANALYZE" % (
        ", brought to the declaration by apply" if applied.applied else "",
        ", ".join("%s +%d" % (t, n) for t, n in counts.items()))]
    empty = [t for t, n in counts.items() if n == 0 and sample_rows > 0]
    if empty:
        notes.append("no sample rows could be generated for: %s (a constraint refused them)" % ", ".join(empty))
    return ExplainReport(path, had_stat1, "scratch", sample_rows, results, notes)


def strict_severities(schema, report):
    """explain --strict's rule: one severity per serves-query whose plan uses neither its index nor an identical
    one, an error where the declaration requires that plan, else a warning (the rule of the validation report)."""
    from ..compile.render import plan_checks  # --strict only: the same rule the report compiles
    checks = plan_checks(schema)
    severities = []
    for r in report.results:
        accepted = {r.index.lower(), *(n.lower() for n in checks[r.index]["identical"])}
        if not accepted & {n.lower() for n in indexes_used(r.plan)}:
            severities.append("error" if checks[r.index]["required"] else "warning")
    return severities


# --- output -------------------------------------------------------------------

def to_json(report):
    from . import documents  # --json only: one item shape on both engines
    return json.dumps(documents.explain([dict(r.as_dict(), used=indexes_used(r.plan)) for r in report.results]),
                      indent=2)


def format_text(report):
    results = report.results
    used = sum(1 for r in results if r.uses_index)
    out = ["EXPLAIN QUERY PLAN of %d declared serves-queries on %s%s" % (
        len(results), report.database, " (a scratch copy, %d generated rows per table)" % report.sample_rows
        if report.source == "scratch" else "")]
    if report.had_stat1:
        out.append("statistics: the database has sqlite_stat1 (ANALYZE has run)%s" % (
            "; the scratch copy was analyzed afresh" if report.source == "scratch" else ""))
    else:
        out.append("statistics: the database has no sqlite_stat1 rows (ANALYZE has not run on its data)%s" % (
            "; the scratch copy was analyzed with its generated rows" if report.source == "scratch" else
            ": plans use built-in estimates and can change once statistics exist; `--sample-rows N` shows them on a "
            "scratch copy with N generated rows per table and ANALYZE"))
    out += ["note: %s" % n for n in report.notes]
    out.append("%d of %d use their index, %d do not" % (used, len(results), len(results) - used))
    for n, r in enumerate(results, start=1):
        out.append("")
        if r.uses_index:
            out.append("%2d. %s: uses the index (%s)" % (n, r.index, r.access))
        else:
            out.append("%2d. %s: NOT USED; instead: %s" % (n, r.index, r.instead))
        out.append("      query: %s" % r.query)
        out += ["      plan:  %s" % line for line in r.plan]
        if r.reason:
            out.append("      why:   %s" % r.reason)
        for note in r.notes:
            out.append("      note:  %s" % note)
        if r.suggestion:
            out.append("      suggestion: %s" % r.suggestion)
    return "\n".join(out)
