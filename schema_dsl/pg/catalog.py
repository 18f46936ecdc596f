"""A live PostgreSQL database's structure, read from pg_catalog, in the form compile/postgresql.py expects.

information_schema has no index predicates or key order, so everything is read from pg_catalog, one short
query per kind: tables, columns (format_type, NOT NULL, identity, pg_get_expr of the default), constraints
(PRIMARY KEY, UNIQUE, FOREIGN KEY with its actions, CHECK by pg_get_constraintdef), indexes (pg_index: keys,
DESC, uniqueness, pg_get_expr of the predicate, validity), views and triggers.

Expressions are compared as the server prints them. The declaration's expressions are put in that form by the
server too (canonical_expected): in a transaction that is always rolled back, temporary tables with the expected
columns receive the expected defaults, CHECKs and indexes, and the same reader reads them back. So both sides
are judged by one printer and no SQL text is compared by hand.

Every function takes an open psycopg connection; none imports psycopg.
"""
from __future__ import annotations

import copy
import json

from ..sqlite.structure import HISTORY_TABLE
from ..sqlite.quote import quote_identifier

FK_ACTIONS = {"a": "NO ACTION", "r": "RESTRICT", "c": "CASCADE", "n": "SET NULL", "d": "SET DEFAULT"}


def current_namespace(conn):
    """The oid of the schema unqualified names are created in (current_schema())."""
    row = conn.execute("SELECT n.oid FROM pg_namespace n WHERE n.nspname = current_schema()").fetchone()
    if row is None:
        raise LookupError("no current schema: the search_path names no existing schema")
    return row[0]


def temp_namespace(conn):
    return conn.execute("SELECT pg_my_temp_schema()").fetchone()[0]


def _tables(conn, ns):
    """The tables of the schema, schemagen's own history table left out (it is no part of the user's schema), and
    the failure log of an online conversion (pg/online.py, `_schemagen_fail_...`) with it."""
    return {oid: name for oid, name in conn.execute(
        "SELECT c.oid, c.relname FROM pg_class c WHERE c.relnamespace = %s AND c.relkind IN ('r', 'p') "
        "AND c.relname <> %s AND c.relname NOT LIKE '\\_schemagen\\_fail\\_%%'", (ns, HISTORY_TABLE))}


def _columns(conn, ns):
    rows = conn.execute(
        "SELECT a.attrelid, a.attnum, a.attname, format_type(a.atttypid, a.atttypmod), a.attnotnull, a.attidentity, "
        "pg_get_expr(d.adbin, d.adrelid) FROM pg_attribute a JOIN pg_class c ON c.oid = a.attrelid "
        "LEFT JOIN pg_attrdef d ON d.adrelid = a.attrelid AND d.adnum = a.attnum "
        "WHERE c.relnamespace = %s AND c.relkind IN ('r', 'p') AND a.attnum > 0 AND NOT a.attisdropped "
        "ORDER BY a.attrelid, a.attnum", (ns,)).fetchall()
    out = {}
    for rel, num, name, type_, notnull, identity, default in rows:
        out.setdefault(rel, {})[num] = (name, {"type": type_, "notnull": bool(notnull), "default": default,
                                               "identity": identity == "d" or (identity == "a" and "always")})
    return out


def _constraints(conn, ns):
    return conn.execute(
        "SELECT k.conrelid, k.contype, k.conkey::int2[], k.confrelid, k.confkey::int2[], k.confdeltype, k.confupdtype, "
        "k.condeferrable, k.condeferred, pg_get_constraintdef(k.oid), k.convalidated, k.conname "
        "FROM pg_constraint k JOIN pg_class c ON c.oid = k.conrelid "
        "WHERE c.relnamespace = %s AND k.contype IN ('p', 'u', 'f', 'c') ORDER BY k.conrelid, k.conname", (ns,)).fetchall()


def _indexes(conn, ns):
    return conn.execute(
        "SELECT i.indexrelid, ic.relname, i.indrelid, i.indisunique, i.indkey::int2[], i.indoption::int2[], "
        "pg_get_expr(i.indpred, i.indrelid), i.indisvalid, i.indnkeyatts, "
        "EXISTS (SELECT 1 FROM pg_constraint k WHERE k.conindid = i.indexrelid AND k.conrelid = i.indrelid "
        "AND k.contype IN ('p', 'u', 'x')) "
        "FROM pg_index i JOIN pg_class ic ON ic.oid = i.indexrelid WHERE ic.relnamespace = %s", (ns,)).fetchall()


def read_structure(conn, namespace=None):
    """The structure of one schema (default: current_schema()), as plain data."""
    ns = current_namespace(conn) if namespace is None else namespace
    tables = _tables(conn, ns)
    columns = _columns(conn, ns)
    names = {rel: {num: name for num, (name, _) in cols.items()} for rel, cols in columns.items()}
    out = {"tables": {}, "indexes": {}, "constraint_indexes": {}, "not_valid": []}
    for oid, name in tables.items():
        out["tables"][name] = {"columns": {n: info for n, info in columns.get(oid, {}).values()},
                               "primary_key": [], "uniques": [], "checks": [], "fks": []}
    for rel, kind, key, frel, fkey, on_delete, on_update, deferrable, deferred, text, valid, conname in _constraints(conn, ns):
        t = out["tables"].get(tables.get(rel))
        if t is None:
            continue
        cols = [names[rel].get(k, "?") for k in key or []]
        if not valid:
            out["not_valid"].append("%s.%s" % (tables[rel], conname))
        if kind == "p":
            t["primary_key"] = cols
        elif kind == "u":
            t["uniques"].append(cols)
        elif kind == "c":
            t["checks"].append(text.replace(" NOT VALID", ""))
        else:
            parent = conn.execute("SELECT relname FROM pg_class WHERE oid = %s", (frel,)).fetchone()[0]
            pnames = names.get(frel) or {r[0]: r[1] for r in conn.execute(
                "SELECT attnum, attname FROM pg_attribute WHERE attrelid = %s AND attnum > 0", (frel,))}
            t["fks"].append({"columns": cols, "table": parent, "to": [pnames.get(k, "?") for k in fkey],
                             "on_delete": FK_ACTIONS[on_delete], "on_update": FK_ACTIONS[on_update],
                             "deferrable": ("INITIALLY DEFERRED" if deferred else "INITIALLY IMMEDIATE") if deferrable else None})
    for t in out["tables"].values():
        t["uniques"].sort()
        t["checks"].sort()
        t["fks"].sort(key=lambda d: json.dumps(d, sort_keys=True))
    for oid, name, rel, unique, keys, options, predicate, valid, nkeys, backs in _indexes(conn, ns):
        table = tables.get(rel)
        if table is None:
            continue
        if backs:
            out["constraint_indexes"][name] = table
            continue
        columns_out = []
        for position, (attnum, option) in enumerate(zip(keys[:nkeys], options[:nkeys]), start=1):
            desc = bool(option & 1)
            if attnum == 0:
                text = conn.execute("SELECT pg_get_indexdef(%s, %s, true)", (oid, position)).fetchone()[0]
                columns_out.append([{"expr": text}, desc])
            else:
                columns_out.append([names[rel].get(attnum, "?"), desc])
        out["indexes"][name] = {"table": table, "unique": bool(unique), "columns": columns_out, "where": predicate,
                                "valid": bool(valid)}
    out["views"] = {r[0]: True for r in conn.execute(
        "SELECT relname FROM pg_class WHERE relnamespace = %s AND relkind IN ('v', 'm')", (ns,))}
    out["triggers"] = {r[0]: r[1] for r in conn.execute(
        "SELECT t.tgname, c.relname FROM pg_trigger t JOIN pg_class c ON c.oid = t.tgrelid "
        "WHERE c.relnamespace = %s AND NOT t.tgisinternal", (ns,))}
    out["relations"] = sorted(r[0] for r in conn.execute(
        "SELECT relname FROM pg_class WHERE relnamespace = %s AND relkind IN ('r', 'p', 'v', 'm', 'f')", (ns,)))
    return out


_q = quote_identifier  # the one quoter: a quoted identifier doubles its '"' on both engines


def canonical_expected(conn, expected):
    """The expected structure with its expressions (defaults, CHECKs, index keys and predicates) as this server
    prints them: built on temporary tables in a transaction that is rolled back, then read back."""
    out = copy.deepcopy(expected)
    with conn.transaction(force_rollback=True):
        for name, t in expected["tables"].items():
            cols = ", ".join("%s %s%s" % (_q(c), info["type"], " DEFAULT %s" % info["default"] if info["default"] else "")
                             for c, info in t["columns"].items())
            conn.execute("CREATE TEMPORARY TABLE %s (%s)" % (_q(name), cols))
            for check in t["checks"]:
                conn.execute("ALTER TABLE pg_temp.%s ADD CHECK (%s)" % (_q(name), check))
        for name, ix in expected["indexes"].items():
            if ix["where"] or any(isinstance(k, dict) for k, _ in ix["columns"]):
                keys = ", ".join(("(%s)" % k["expr"] if isinstance(k, dict) else _q(k)) + (" DESC" if desc else "")
                                 for k, desc in ix["columns"])
                conn.execute("CREATE INDEX %s ON pg_temp.%s (%s)%s" % (
                    _q(name), _q(ix["table"]), keys, " WHERE %s" % ix["where"] if ix["where"] else ""))
        temp = read_structure(conn, temp_namespace(conn))
    for name, t in out["tables"].items():
        read = temp["tables"][name]
        for c, info in t["columns"].items():
            info["default"] = read["columns"][c]["default"]
        t["checks"] = read["checks"]
    for name, ix in out["indexes"].items():
        if name in temp["indexes"]:
            ix["columns"] = temp["indexes"][name]["columns"]
            ix["where"] = temp["indexes"][name]["where"]
    return out


KEPT = ": not in the declaration (kept)"  # how compare's notes end for what the database has beyond the declaration


def compare(expected, actual):
    """(differences, notes): what keeps the database from matching, and the rest; a note that ends with KEPT
    names what the database has beyond the declaration (kept, as apply keeps it: SQLite's "extra")."""
    diffs, notes = [], []
    for name, want in expected["tables"].items():
        have = actual["tables"].get(name)
        where = "table '%s'" % name
        if have is None:
            diffs.append("%s: missing" % where)
            continue
        for c, info in want["columns"].items():
            got = have["columns"].get(c)
            if got is None:
                diffs.append("%s, column '%s': missing" % (where, c))
                continue
            for key, label in (("type", "type"), ("notnull", "NOT NULL"), ("identity", "identity"), ("default", "default")):
                if info[key] != got[key]:
                    diffs.append("%s, column '%s': %s %s expected, found %s" % (where, c, label, _show(info[key]), _show(got[key])))
        for c in have["columns"]:
            if c not in want["columns"]:  # a column of the user's own: kept, as on SQLite (apply keeps it too)
                notes.append("%s, column '%s'%s" % (where, c, KEPT))
        if want["primary_key"] != have["primary_key"]:
            diffs.append("%s: PRIMARY KEY %s expected, found %s" % (where, _show(want["primary_key"]),
                                                                  _show(have["primary_key"])))
        for key, label in (("uniques", "UNIQUE"), ("checks", "CHECK"), ("fks", "foreign key")):
            for item in want[key]:
                if item not in have[key]:
                    diffs.append("%s: %s %s missing" % (where, label, _show(item)))
            for item in have[key]:
                if item not in want[key]:  # the user's own constraint: kept, as plan and apply keep it
                    notes.append("%s: %s %s%s" % (where, label, _show(item), KEPT))
    for name in actual["tables"]:
        if name not in expected["tables"]:
            notes.append("table '%s'%s" % (name, KEPT))
    for name, want in expected["indexes"].items():
        have = actual["indexes"].get(name)
        where = "index '%s'" % name
        if have is None:
            diffs.append("%s: missing" % where)
            continue
        for key in ("table", "unique", "columns", "where"):
            if want[key] != have[key]:
                diffs.append("%s: %s %s expected, found %s" % (where, key, _show(want[key]), _show(have[key])))
        if not have["valid"]:
            diffs.append("%s: INVALID (a failed CREATE INDEX CONCURRENTLY); it must be rebuilt" % where)
    for name, have in actual["indexes"].items():
        if name not in expected["indexes"]:
            notes.append("index '%s' on '%s'%s" % (name, have["table"], KEPT))
    for kind, label in (("views", "view"), ("triggers", "trigger")):
        for name, want in expected.get(kind, {}).items():
            if name not in actual[kind]:
                diffs.append("%s '%s': missing" % (label, name))
            elif kind == "triggers" and actual[kind][name] != want:
                diffs.append("trigger '%s': on '%s' expected, found on '%s'" % (name, want, actual[kind][name]))
    for name in expected.get("virtual_tables", {}):
        if name not in actual["relations"]:
            diffs.append("virtual table '%s': its PostgreSQL counterpart is missing" % name)
    for name in actual["not_valid"]:
        notes.append("constraint %s: NOT VALID (existing rows are not checked)" % name)
    return diffs, notes


def _show(value):
    return "none" if value is None else json.dumps(value, sort_keys=True) if isinstance(value, (list, dict)) else repr(value) \
        if isinstance(value, str) else str(value)
