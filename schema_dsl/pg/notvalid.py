"""Rows that break a NOT VALID constraint (PostgreSQL checks only new rows against one; old rows stay).

A foreign key added NOT VALID (a migration, or `transfer --orphans=not-valid`) or a CHECK added NOT VALID is
enforced for rows written afterwards, never for the rows already there. This reads them: for a foreign key, the
child rows whose key columns are all non-NULL (MATCH SIMPLE) and have no parent row; for a CHECK, the rows for
which the expression is false. Each row is named by its PRIMARY KEY (or its ctid when the table has none).

Every function takes an open psycopg connection and only reads; none imports psycopg.
"""
from __future__ import annotations

from . import catalog
from ..sqlite.quote import quote_identifier


_q = quote_identifier  # the one quoter: a quoted identifier doubles its '"' on both engines


def not_valid_constraints(conn, namespace=None):
    """[{"table", "constraint", "kind" ("foreign key"/"check"), "columns", "parent", "parent_columns", "expr"}]."""
    ns = catalog.current_namespace(conn) if namespace is None else namespace
    rows = conn.execute(
        "SELECT c.relname, k.conname, k.contype, "
        "ARRAY(SELECT a.attname::text FROM unnest(k.conkey) WITH ORDINALITY u(n, o) JOIN pg_attribute a "
        "ON a.attrelid = k.conrelid AND a.attnum = u.n ORDER BY u.o), p.relname, "
        "ARRAY(SELECT a.attname::text FROM unnest(k.confkey) WITH ORDINALITY u(n, o) JOIN pg_attribute a "
        "ON a.attrelid = k.confrelid AND a.attnum = u.n ORDER BY u.o), pg_get_expr(k.conbin, k.conrelid), "
        "pn.nspname FROM pg_constraint k JOIN pg_class c ON c.oid = k.conrelid "
        "LEFT JOIN pg_class p ON p.oid = k.confrelid LEFT JOIN pg_namespace pn ON pn.oid = p.relnamespace "
        "WHERE c.relnamespace = %s AND NOT k.convalidated AND k.contype IN ('f', 'c') ORDER BY c.relname, k.conname",
        (ns,)).fetchall()
    return [{"table": table, "constraint": name, "kind": "foreign key" if kind == "f" else "check",
             "columns": list(columns or []), "parent": parent, "parent_schema": parent_ns,
             "parent_columns": list(parent_columns or []), "expr": expr}
            for table, name, kind, columns, parent, parent_columns, expr, parent_ns in rows]


def _row_key(conn, table):
    """The SQL that names a row of `table` (alias r): its PRIMARY KEY columns, else its ctid."""
    cols = conn.execute(
        "SELECT ARRAY(SELECT a.attname::text FROM unnest(k.conkey) WITH ORDINALITY u(n, o) JOIN pg_attribute a "
        "ON a.attrelid = k.conrelid AND a.attnum = u.n ORDER BY u.o) FROM pg_constraint k "
        "WHERE k.conrelid = %s::regclass AND k.contype = 'p'", (_q(table),)).fetchone()
    if cols and cols[0]:
        return ", ".join("r.%s" % _q(c) for c in cols[0]), len(cols[0])
    return "r.ctid::text", 1


def violating_rows(conn, constraint, limit=None):
    """(row keys, count): the rows of one NOT VALID constraint that break it (keys: a value, or a tuple for a
    composite PRIMARY KEY), at most `limit` of them."""
    key, width = _row_key(conn, constraint["table"])
    if constraint["kind"] == "foreign key":
        where = " AND ".join("r.%s IS NOT NULL" % _q(c) for c in constraint["columns"])
        match = " AND ".join("p.%s = r.%s" % (_q(pc), _q(c))
                             for c, pc in zip(constraint["columns"], constraint["parent_columns"]))
        condition = "%s AND NOT EXISTS (SELECT 1 FROM %s.%s p WHERE %s)" % (
            where, _q(constraint["parent_schema"]), _q(constraint["parent"]), match)
    else:
        condition = "NOT (%s)" % constraint["expr"]
    base = "FROM %s r WHERE %s" % (_q(constraint["table"]), condition)
    count = conn.execute("SELECT count(*) " + base).fetchone()[0]
    rows = conn.execute("SELECT %s %s ORDER BY 1%s" % (key, base, " LIMIT %d" % limit if limit is not None else "")).fetchall()
    return [r[0] if width == 1 else tuple(r) for r in rows], count


def violations(conn, namespace=None, limit=5, kinds=("foreign key", "check")):
    """One entry per NOT VALID constraint that existing rows break: the constraint, the count and a few row keys."""
    out = []
    for constraint in not_valid_constraints(conn, namespace):
        if constraint["kind"] not in kinds:
            continue
        keys, count = violating_rows(conn, constraint, limit)
        if count:
            out.append(dict(constraint, rows=count, examples=[_plain(k) for k in keys]))
    return out


def _plain(key):
    """A row key as JSON can hold it (a composite key as a list; other types as text)."""
    if isinstance(key, tuple):
        return [_plain(k) for k in key]
    return key if isinstance(key, (str, int, float)) or key is None else str(key)


def describe(v):
    """'tasks.fk_parent (foreign key to tasks): 2 rows break it, e.g. 't9', 't10''."""
    target = " to %s" % v["parent"] if v["kind"] == "foreign key" else " %s" % v["expr"]
    return "constraint %s.%s (NOT VALID %s%s): %d existing %s break it, e.g. %s" % (
        v["table"], v["constraint"], v["kind"], target, v["rows"], "row" if v["rows"] == 1 else "rows",
        ", ".join(repr(k) for k in v["examples"]))
