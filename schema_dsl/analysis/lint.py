"""Design lint: what the declaration claims about its indexes, checked by SQLite's rules.

`lint(schema)` reads the declaration only (plus one probe of this SQLite's
json_valid(NULL)) and returns a list of `Finding`s, each with the rule, the
object (an index, or table.column), a severity, a message that says what
and why, a suggestion where a known change fixes it, and a resolution: how
the finding is resolved or why it stays as designed. Lint reports; it never
removes or changes an index.

Rules:
- redundant-index: an index with the same leading columns (and the same
  partial WHERE) as another index, or as the automatic index of a PRIMARY
  KEY or UNIQUE constraint, or on the INTEGER PRIMARY KEY (the rowid).
- unindexed-foreign-key: a foreign key whose child columns do not lead any
  index, so every delete (or key update) of a parent row scans the child table.
- like-prefix-binary: a serves-query with `col LIKE 'prefix%'` on a BINARY
  column, which SQLite cannot search by index while case_sensitive_like is off
  (sqlite.org/optoverview.html#like_opt).
- partial-index-not-implied: a partial index whose WHERE its own
  serves-query does not imply term by term (sqlite.org/partialindex.html).
- json-valid-nullable: CHECK (json_valid(col)) on a nullable column where
  this SQLite returns 0 for json_valid(NULL), so NULL is refused.
- fk-parent-not-unique: a foreign key whose parent columns are neither the
  parent's PRIMARY KEY nor UNIQUE: SQLite creates it, then fails every
  insert or update of the child with "foreign key mismatch" (foreignkeys.html).
- fk-cycle: tables whose foreign keys reference each other in a cycle: rows
  can only be inserted with the foreign keys deferred (or off).

With a database (`lint_database`), two more: no-statistics (no
sqlite_stat1) and index-not-used (a serves-query whose plan, from
`schemagen explain`, does not use its index).
"""
from __future__ import annotations

import json
import sqlite3
from typing import Union

from attrs import evolve, field, frozen
from attrs.validators import in_

from . import sqlterms
from ..sqlite.ddl import normalize_sql
from ..sqlite.data import json_valid_null

SEVERITIES = ("error", "warning", "info")

RULES = {
    "redundant-index": "an index that another index, or a PRIMARY KEY / UNIQUE constraint's automatic index, already provides",
    "unindexed-foreign-key": "foreign key columns that lead no index: parent deletes and key updates scan the child table",
    "like-prefix-binary": "LIKE 'prefix%' on a BINARY-collated column: no index range while case_sensitive_like is off",
    "partial-index-not-implied": "a partial index whose WHERE its serves-query does not imply term by term",
    "json-valid-nullable": "CHECK (json_valid(col)) on a nullable column where json_valid(NULL) is 0",
    "fk-parent-not-unique": "a foreign key whose parent columns are neither the parent's PRIMARY KEY nor UNIQUE",
    "fk-cycle": "foreign keys that form a cycle between tables: inserts need the foreign keys deferred",
    "no-statistics": "the database has no sqlite_stat1: the planner uses built-in estimates",
    "index-not-used": "a serves-query whose EXPLAIN QUERY PLAN does not use its index",
}

DEFAULT_RESOLUTIONS = {
    "redundant-index": "kept: declared on purpose; lint never removes an index (to remove it: take it out of the "
                       "declaration and declare removed(\"index\", NAME, \"why\"), which apply drops from every "
                       "database; taken out alone, apply keeps it, and only apply --prune drops it)",
    "unindexed-foreign-key": "open: declare an index that starts with the foreign key columns",
    "like-prefix-binary": "open: rewrite the query as in the suggestion, or index the column COLLATE NOCASE",
    "partial-index-not-implied": "open: change the query or the index's WHERE as in the suggestion",
    "json-valid-nullable": "open: write CHECK (col IS NULL OR json_valid(col)), or make the column NOT NULL",
    "fk-parent-not-unique": "open: make the parent columns the PRIMARY KEY or UNIQUE, or reference the parent's key",
    "fk-cycle": "kept: insert such rows in one transaction with PRAGMA defer_foreign_keys = ON, "
                "or declare one of the foreign keys DEFERRABLE INITIALLY DEFERRED",
    "no-statistics": "open: run ANALYZE (or PRAGMA optimize) once the tables hold representative data",
    "index-not-used": "open: see `schemagen explain` for the plan and the suggestion",
}


@frozen
class Finding:
    """One design finding: what rule, on which object, how bad, what and why, the fix, and its resolution."""

    rule: str = field(validator=in_(tuple(RULES)))
    object: str
    severity: str = field(validator=in_(SEVERITIES))
    message: str
    suggestion: Union[str, None] = None
    resolution: str = ""

    def as_dict(self):
        return {"rule": self.rule, "object": self.object, "severity": self.severity, "message": self.message,
                "suggestion": self.suggestion, "resolution": self.resolution}


# --- what SQLite keeps on its own -----------------------------------------

def rowid_column(table):
    """The column that aliases the rowid (a single-column INTEGER PRIMARY KEY), or None."""
    pk = table.primary_key
    if pk is None or len(pk.columns) != 1:
        return None
    column = table.column(pk.columns[0])
    if column is not None and column.type.strip().upper() == "INTEGER":
        return column.name
    return None


@frozen
class IndexKey:
    """An index SQLite maintains (declared or automatic), reduced to what redundancy depends on."""

    name: str            # index name, or a description of the constraint
    columns: tuple       # ((name lower, desc), ...)
    unique: bool
    where: Union[str, None]
    automatic: bool


def automatic_keys(table):
    """The automatic indexes SQLite makes for a table's PRIMARY KEY (unless it is the rowid) and UNIQUE constraints."""
    keys = []
    pk = table.primary_key
    if pk is not None and rowid_column(table) is None:
        keys.append(IndexKey("the PRIMARY KEY (%s)" % ", ".join(pk.columns),
                             tuple((c.lower(), False) for c in pk.columns), True, None, True))
    for cols in table.all_uniques:
        keys.append(IndexKey("the UNIQUE constraint (%s)" % ", ".join(cols),
                             tuple((c.lower(), False) for c in cols), True, None, True))
    return keys


def index_key(ix):
    return IndexKey("index '%s'" % ix.name, tuple((c.name.lower(), bool(c.desc)) for c in ix.columns),
                    bool(ix.unique), normalize_sql(ix.where), False)


def _order_gap(a, b):
    """How many leading columns of a must be fixed by equality for b to give a's order.

    None when b does not start with a's columns; 0 when b reads in a's order
    forwards or backwards (SQLite scans an index either way); k when only the
    columns from k on agree (forwards or backwards), so that b gives a's order
    once the first k columns are fixed by `=`, as in `WHERE task_id = ? ORDER
    BY iteration DESC` on an index (task_id, iteration).
    """
    if len(a) > len(b) or [c for c, _ in a] != [c for c, _ in b[:len(a)]]:
        return None
    rel = [da != db for (_, da), (_, db) in zip(a, b)]
    for k in range(len(rel)):
        if len(set(rel[k:])) <= 1:
            return k
    return 0


def equality_columns(query):
    """Columns a query's WHERE fixes to one value (=, ==, IS)."""
    out = set()
    for term in sqlterms.query_terms(query):
        column, op, _ = sqlterms.comparison(term)
        if column is not None and op in ("=", "==", "is"):
            out.add(column)
    return out


def provided_by(a, b, queries=()):
    """Whether key b makes index key a redundant: b serves every query a serves and a enforces nothing b does not.

    When the two differ only in the direction of later columns, b serves a's
    queries if each of them fixes the earlier columns by equality.
    """
    if a.where != b.where:
        return False
    gap = _order_gap(a.columns, b.columns)
    if gap is None:
        return False
    if gap:
        fixed = {c for c, _ in a.columns[:gap]}
        if not queries or not all(fixed <= equality_columns(q) for q in queries):
            return False
    if a.unique:  # a enforces uniqueness: only an equal unique key makes it redundant
        return b.unique and len(a.columns) == len(b.columns)
    return True


def _columns_text(table, cols):
    return "%s(%s)" % (table, ", ".join(c + (" DESC" if d else "") for c, d in cols))


# --- rules ----------------------------------------------------------------

def redundant_indexes(schema):
    out = []
    declared = list(schema.indexes)
    for pos, ix in enumerate(declared):
        table = schema.table(ix.table)
        if table is None:
            continue
        key = index_key(ix)
        rowid = rowid_column(table)
        where = _columns_text(ix.table, key.columns)
        if rowid is not None and key.columns[0][0] == rowid.lower():
            out.append(Finding(
                "redundant-index", ix.name, "warning",
                "index '%s' on %s starts with %s, the INTEGER PRIMARY KEY and so the rowid: the table is stored in rowid "
                "order, lookups by %s read it directly and never use an index; this one only costs space and write time"
                % (ix.name, where, rowid, rowid),
                suggestion="drop the index (declare removed(\"index\", \"%s\", \"why\") in place of it); `WHERE %s = ?` "
                           "is a rowid lookup" % (ix.name, rowid)))
            continue
        by = None
        for auto in automatic_keys(table):
            if provided_by(key, auto, ix.serves):
                by = auto
                break
        if by is None:
            for other_pos, other in enumerate(declared):
                if other is ix or other.table.lower() != ix.table.lower():
                    continue
                okey = index_key(other)
                if not provided_by(key, okey, ix.serves):
                    continue
                identical = key.columns == okey.columns and key.unique == okey.unique
                if identical and other_pos > pos:
                    continue  # of two identical indexes, the later one is reported
                by = okey
                break
        if by is None:
            continue
        same_order = _order_gap(key.columns, by.columns) == 0
        order_note = "" if same_order else (
            " (only the direction of a later column differs, and its serves-query fixes the columns before it by "
            "equality, so the database reads that index in the needed order)")
        if by.automatic:
            message = ("index '%s' on %s repeats the index the database keeps for %s (its leading columns%s): "
                       "queries it serves are served by that index; this one only costs space and write time"
                       % (ix.name, where, by.name, order_note))
        elif len(by.columns) == len(key.columns) and same_order:
            message = ("index '%s' on %s is identical to %s (same columns, order and WHERE): the database uses one "
                       "of the two and maintains both" % (ix.name, where, by.name))
        else:
            message = ("index '%s' on %s is a prefix of %s on %s (same WHERE)%s: every query it serves, that index "
                       "serves too" % (ix.name, where, by.name, _columns_text(ix.table, by.columns), order_note))
        out.append(Finding("redundant-index", ix.name, "warning", message, suggestion="drop the index (declare removed(\"index\", \"%s\", \"why\") in place of it; %s remains)" % (
                               ix.name, by.name)))
    return out


def _fk_served(table, indexes, columns):
    wanted = {c.lower() for c in columns}
    n = len(wanted)
    rowid = rowid_column(table)
    if n == 1 and rowid is not None and rowid.lower() in wanted:
        return True
    for key in automatic_keys(table) + [index_key(ix) for ix in indexes]:
        if {c for c, _ in key.columns[:n]} != wanted or len(key.columns) < n:
            continue
        if key.where is None:
            return True
        # a partial index serves the lookup `col = ?` when that implies its WHERE (e.g. col IS NOT NULL)
        lookup = " AND ".join("%s = ?" % c for c in sorted(wanted))
        if not sqlterms.unimplied_terms("SELECT 1 FROM t WHERE " + lookup, key.where):
            return True
    return False


def unindexed_foreign_keys(schema):
    out = []
    for table in schema.tables:
        indexes = [ix for ix in schema.indexes if ix.table.lower() == table.name.lower()]
        for f in table.foreign_keys:
            if _fk_served(table, indexes, f.columns):
                continue
            cols = ", ".join(f.columns)
            obj = "%s.%s" % (table.name, f.columns[0]) if len(f.columns) == 1 else "%s(%s)" % (table.name, cols)
            if f.on_delete in ("SET NULL", "SET DEFAULT", "CASCADE"):
                action = "every DELETE of a '%s' row runs ON DELETE %s by scanning all of '%s' for rows that reference it" % (
                    f.ref_table, f.on_delete, table.name)
            else:
                action = ("every DELETE of a '%s' row (and every change of its key) scans all of '%s' to check that no "
                          "row still references it" % (f.ref_table, table.name))
            out.append(Finding(
                "unindexed-foreign-key", obj, "warning",
                "foreign key %s(%s) -> %s(%s) has no index that starts with %s: %s" % (
                    table.name, cols, f.ref_table, ", ".join(f.ref_columns), cols, action),
                suggestion="CREATE INDEX ... ON %s(%s)%s" % (
                    table.name, cols, "" if any(table.column(c) is not None and table.column(c).not_null for c in f.columns)
                    else " WHERE %s" % " AND ".join("%s IS NOT NULL" % c for c in f.columns))))
    return out


def fk_parents_not_unique(schema):
    """Foreign keys whose parent columns are not the parent's PRIMARY KEY or a UNIQUE constraint."""
    out = []
    for table in schema.tables:
        for f in table.foreign_keys:
            parent = schema.table(f.ref_table)
            if parent is None or not f.ref_columns or not all(parent.column(c) for c in f.ref_columns):
                continue  # an unknown parent is a model problem; no columns: its PRIMARY KEY
            keys = [tuple(x.lower() for x in u) for u in parent.all_uniques]
            if parent.primary_key:
                keys.append(tuple(x.lower() for x in parent.primary_key.columns))
            if tuple(x.lower() for x in f.ref_columns) in keys:
                continue
            cols = ", ".join(f.columns)
            out.append(Finding(
                "fk-parent-not-unique", "%s(%s)" % (table.name, cols), "warning",
                "foreign key %s(%s) -> %s(%s): the parent columns are neither the PRIMARY KEY nor UNIQUE, so SQLite "
                "fails every insert or update of '%s' with \"foreign key mismatch\" while foreign keys are on" % (
                    table.name, cols, f.ref_table, ", ".join(f.ref_columns), table.name),
                suggestion="UNIQUE (%s) on %s" % (", ".join(f.ref_columns), f.ref_table)))
    return out


def fk_cycles(schema):
    """One finding per table that is part of a foreign key cycle with other tables (self-references are fine)."""
    refs = {t.name.lower(): {f.ref_table.lower() for f in t.foreign_keys if schema.table(f.ref_table) is not None}
            - {t.name.lower()} for t in schema.tables}
    out = []
    for table in schema.tables:
        start = table.name.lower()
        seen, stack = set(), list(refs[start])
        while stack:
            n = stack.pop()
            if n == start:
                out.append(Finding(
                    "fk-cycle", table.name, "info",
                    "table '%s' is part of a foreign key cycle: its rows and those of the tables it references can "
                    "only be inserted with the foreign keys deferred" % table.name))
                break
            if n not in seen:
                seen.add(n)
                stack.extend(refs.get(n, ()))
    return out


def prefix_upper_bound(prefix):
    """The smallest string above every string that starts with prefix (for a range rewrite)."""
    return prefix[:-1] + chr(ord(prefix[-1]) + 1)


def like_rewrites(column, prefix):
    """Index-friendly forms of `column LIKE 'prefix%'` (both case-sensitive, unlike LIKE)."""
    q = lambda s: "'" + s.replace("'", "''") + "'"  # noqa: E731
    forms = []
    if not any(ch in prefix for ch in "*?["):
        forms.append("%s GLOB %s" % (column, q(prefix + "*")))
    forms.append("%s >= %s AND %s < %s" % (column, q(prefix), column, q(prefix_upper_bound(prefix))))
    return forms


def like_prefix_queries(schema):
    out = []
    for ix in schema.indexes:
        table = schema.table(ix.table)
        if table is None:
            continue
        for query in ix.serves:
            for column, prefix, term in sqlterms.like_terms(query):
                col = table.column(column)
                if col is None:
                    continue
                # The model declares no collations: every column compares with BINARY.
                out.append(Finding(
                    "like-prefix-binary", ix.name, "warning",
                    "serves-query of '%s' filters with %s on the BINARY-collated column %s.%s: LIKE is case-insensitive, "
                    "so while PRAGMA case_sensitive_like is off (the default) SQLite cannot turn it into an index range "
                    "(optoverview.html#like_opt); the index can at best be scanned whole" % (
                        ix.name, sqlterms.display(term), table.name, col.name),
                    suggestion="write %s (case-sensitive, searched as an index range); or index (%s COLLATE NOCASE, ...), "
                    "which LIKE can search but `%s = ?` (BINARY) then cannot" % (
                        " or ".join(like_rewrites(col.name, prefix)), col.name, col.name)))
    return out


def partial_where_findings(schema):
    out = []
    for ix in schema.indexes:
        if not ix.where:
            continue
        for query in ix.serves:
            missing = sqlterms.unimplied_terms(query, ix.where)
            if not missing:
                continue
            q_terms = sqlterms.query_terms(query)
            texts = [sqlterms.display(m) for m in missing]
            logical = all(any(sqlterms.logically_implies(q, m) for q in q_terms) for m in missing)
            qwhere = " AND ".join(sqlterms.display(t) for t in q_terms) or "(no WHERE)"
            if logical:
                suggestion = ("repeat the index's term in the query: add AND %s (the result does not change: the query's "
                              "WHERE already implies it; SQLite only matches the terms literally)" % " AND ".join(texts))
            else:
                suggestion = ("the query must contain %s for SQLite to use the index (this changes its result), or the "
                              "index's WHERE must be one the query states" % " AND ".join(texts))
            out.append(Finding(
                "partial-index-not-implied", ix.name, "warning",
                "partial index '%s' (WHERE %s) cannot serve its query: the query's WHERE (%s) does not contain %s, and "
                "SQLite uses a partial index only when the query's WHERE implies each term of the index's WHERE "
                "literally (partialindex.html)" % (ix.name, ix.where, qwhere, " AND ".join(texts)),
                suggestion=suggestion))
    return out


RUNTIME = "runtime"  # json_probe default: ask this SQLite


def json_valid_nullable(schema, probe=RUNTIME, version=None):
    """probe: what json_valid(NULL) returns (0, None for NULL); by default this SQLite is asked.

    version: the SQLite version the message names (default: this one; render writes a marker).
    """
    probe = json_valid_null() if probe == RUNTIME else probe
    if probe != 0:
        return []
    out = []
    for table in schema.tables:
        pk = {c.lower() for c in table.primary_key.columns} if table.primary_key else set()
        for check in table.checks:
            for term in sqlterms.expression_terms(check.expr):
                if len(term) != 4 or term[0][0] != "word" or term[0][1].lower() != "json_valid" or term[1] != ("op", "(") \
                        or term[3] != ("op", ")") or term[2][0] not in ("word", "ident"):
                    continue
                col = table.column(term[2][1])
                if col is None or col.not_null or col.name.lower() in pk:
                    continue
                out.append(Finding(
                    "json-valid-nullable", "%s.%s" % (table.name, col.name), "warning",
                    "CHECK (%s) on the nullable column %s.%s: this SQLite (%s) returns 0 for json_valid(NULL), so the "
                    "CHECK fails for NULL and writing NULL to %s is refused although the column allows it" % (
                        check.expr, table.name, col.name, version or sqlite3.sqlite_version, col.name),
                    suggestion="CHECK (%s IS NULL OR json_valid(%s)), or declare the column NOT NULL" % (col.name, col.name)))
    return out


# --- entry points -----------------------------------------------------------

def declared_resolutions(schema):
    """The resolutions the declaration carries (Schema.lint_resolutions)."""
    return dict(schema.lint_resolutions)


def resolve(findings, resolutions):
    """Each finding with its resolution: (rule, object) entry, else rule entry, else the rule's default."""
    out = []
    for f in findings:
        text = resolutions.get((f.rule, f.object)) or resolutions.get(f.rule) or DEFAULT_RESOLUTIONS[f.rule]
        out.append(evolve(f, resolution=text))
    return out


def lint(schema, resolutions=None, json_probe=RUNTIME):
    """Every design finding of a declaration, in rule order, then declaration order."""
    findings = (redundant_indexes(schema) + unindexed_foreign_keys(schema) + like_prefix_queries(schema)
                + partial_where_findings(schema) + json_valid_nullable(schema, json_probe)
                + fk_parents_not_unique(schema) + fk_cycles(schema))
    return resolve(findings, declared_resolutions(schema) if resolutions is None else resolutions)


def format_text(findings):
    if not findings:
        return "no design findings"
    lines = ["%d design findings:" % len(findings)]
    for f in findings:
        lines.append("- [%s] %s %s: %s" % (f.severity, f.rule, f.object, f.message))
        if f.suggestion:
            lines.append("    suggestion: %s" % f.suggestion)
        lines.append("    resolution: %s" % f.resolution)
    return "\n".join(lines)


def to_json(findings):
    return json.dumps([f.as_dict() for f in findings], indent=2)
