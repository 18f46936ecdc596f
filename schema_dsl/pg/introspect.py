"""What a migration on PostgreSQL reads: the live structure from pg_catalog, with the names a migration needs,
and the declaration's expressions as this server prints them.

catalog.read_structure gives the structure validate compares (tables, columns with type, NOT NULL, default and
identity, constraints, indexes with keys, DESC, predicate and validity). A migration also needs each
constraint's name and whether it is validated (convalidated), so as to VALIDATE or DROP it, and each declared
CHECK in the server's own printing, so as to tell a new one from one already there. Both are read here, from
pg_catalog only (information_schema has no index predicates). Every function takes an open psycopg connection;
none imports psycopg.
"""
from __future__ import annotations

import attrs

from . import catalog
from ..migrate.introspect import Live
from ..model import Check, Column, Expr, ForeignKey, Index, IndexColumn, PrimaryKey, Table, Unique, VirtualTable
from ..sqlite.quote import quote_identifier

CONSTRAINT_KINDS = {"p": "primary_key", "u": "unique", "c": "check", "f": "foreign_key"}


def read_live(conn):
    """The live structure (catalog.read_structure) plus, per table, its named constraints:
    live["constraints"][table] = [{"name", "kind", "columns", "valid", "definition", "index"}]."""
    ns = catalog.current_namespace(conn)
    live = catalog.read_structure(conn, ns)
    constraints = {}
    for table, name, kind, columns, valid, definition, index in conn.execute(
            "SELECT c.relname, k.conname, k.contype, "
            "ARRAY(SELECT a.attname FROM unnest(k.conkey) WITH ORDINALITY u(n, o) "
            "      JOIN pg_attribute a ON a.attrelid = k.conrelid AND a.attnum = u.n ORDER BY u.o)::text[], "
            "k.convalidated, pg_get_constraintdef(k.oid), ic.relname "
            "FROM pg_constraint k JOIN pg_class c ON c.oid = k.conrelid LEFT JOIN pg_class ic ON ic.oid = k.conindid "
            "WHERE c.relnamespace = %s AND k.contype IN ('p', 'u', 'c', 'f') ORDER BY c.relname, k.conname", (ns,)):
        constraints.setdefault(table, []).append({
            "name": name, "kind": CONSTRAINT_KINDS[kind], "columns": list(columns), "valid": bool(valid),
            "definition": definition.replace(" NOT VALID", ""), "index": index})
    live["constraints"] = constraints
    live["index_sql"] = dict(conn.execute(
        "SELECT c.relname, pg_get_indexdef(c.oid) FROM pg_class c WHERE c.relnamespace = %s AND c.relkind = 'i'",
        (ns,)).fetchall())
    live["view_sql"] = dict(conn.execute(
        "SELECT c.relname, pg_get_viewdef(c.oid) FROM pg_class c WHERE c.relnamespace = %s AND c.relkind IN ('v', 'm')",
        (ns,)).fetchall())
    live["trigger_sql"] = dict(conn.execute(
        "SELECT t.tgname, pg_get_triggerdef(t.oid) || E'\\n' || p.prosrc FROM pg_trigger t "
        "JOIN pg_class c ON c.oid = t.tgrelid JOIN pg_proc p ON p.oid = t.tgfoid "
        "WHERE c.relnamespace = %s AND NOT t.tgisinternal", (ns,)).fetchall())
    return live


def on_postgresql(schema):
    """The declaration as PostgreSQL has it: without its sqlite_only views, triggers and virtual tables, which
    render nothing there, so that a live object of such a name is the user's own (kept, or pruned)."""
    if not any(o.sqlite_only for o in (*schema.views, *schema.triggers, *schema.virtual_tables)):
        return schema
    return attrs.evolve(schema, views=[v for v in schema.views if not v.sqlite_only],
                        triggers=[t for t in schema.triggers if not t.sqlite_only],
                        virtual_tables=[v for v in schema.virtual_tables if not v.sqlite_only])


def neutral(live, schema, hidden=()):
    """The live structure as migrate/diff.py reads a database (a migrate.introspect.Live of model objects), so that
    the neutral decisions (renames, removals and --prune, what is kept) run on PostgreSQL as they do on SQLite.

    A relation named as a declared virtual table is its PostgreSQL counterpart (the declaration's postgresql=
    body): it stands as a virtual table, never as a user's own table or view. hidden: index names the
    PostgreSQL planner itself owns (a UNIQUE's index not yet taken over by its constraint), left out. A trigger's
    SQL is its CREATE TRIGGER followed by its function's body, so that what the trigger writes to is read as on
    SQLite (diff._trigger_role). Each kind in name order (the catalog has no creation order to keep)."""
    virtual = {v.name.lower() for v in schema.virtual_tables if not v.sqlite_only}
    hidden = {h.lower() for h in hidden}
    tables = {n: _table(n, t, live.get("constraints", {}).get(n, [])) for n, t in sorted(live["tables"].items())
              if n.lower() not in virtual}
    indexes = {n: Index(n, ix["table"], [IndexColumn(k["expr"], desc, expression=True) if isinstance(k, dict)
                                         else IndexColumn(k, desc) for k, desc in ix["columns"]],
                        unique=ix["unique"], where=ix["where"])
               for n, ix in sorted(live["indexes"].items()) if n.lower() not in hidden}
    return Live(
        tables=tables,
        indexes=indexes,
        views={n: live.get("view_sql", {}).get(n) or "" for n in sorted(live["views"]) if n.lower() not in virtual},
        triggers={n: {"table": t, "sql": live.get("trigger_sql", {}).get(n) or ""}
                  for n, t in sorted(live["triggers"].items())},
        virtual_tables={n: VirtualTable(n, "postgresql") for n in sorted(live["relations"]) if n.lower() in virtual},
        index_sql={n: live.get("index_sql", {}).get(n) or "" for n in indexes},
        invalid_indexes={n for n in indexes if not live["indexes"][n].get("valid", True)},
    )


def _table(name, t, constraints=()):
    """A live table as a model Table; each foreign key and UNIQUE named after its constraint (the one a changed
    constraint replaces is dropped by that name), a foreign key found by its columns and parent as
    pg_get_constraintdef prints them; the CHECKs by name, in name order, when the constraints were read
    (read_live)."""
    def fk_name(f):
        return next((k["name"] for k in constraints if k["kind"] == "foreign_key" and k["columns"] == f["columns"]
                     and "REFERENCES %s(" % f["table"] in k["definition"].replace('"', "")), None)

    return Table(
        name,
        columns=[Column(c, info["type"], not_null=info["notnull"],
                        default=Expr(info["default"]) if info["default"] is not None else None)
                 for c, info in t["columns"].items()],
        primary_key=PrimaryKey(t["primary_key"]) if t["primary_key"] else None,
        uniques=[Unique(cols, name=next((k["name"] for k in constraints if k["kind"] == "unique"
                                          and k["columns"] == cols), None)) for cols in t["uniques"]],
        checks=[Check(k["definition"], name=k["name"]) for k in constraints if k["kind"] == "check"] if constraints
        else [Check(text) for text in t["checks"]],
        foreign_keys=[ForeignKey(f["columns"], f["table"], f["to"], on_delete=f["on_delete"], on_update=f["on_update"],
                                 deferrable=f["deferrable"], name=fk_name(f)) for f in t["fks"]])


def canonical_checks(conn, structure, parts, live=None):
    """{table: [(declared name or None, the CHECK as pg_get_constraintdef prints it)]} for the declared tables:
    each declared CHECK added by name to a temporary table with the declared columns, in a transaction that is
    rolled back, and read back; so a declared CHECK and a live one are compared in one printing.

    live (read_live's structure): where a column the table already has changes its type, a printing is a tuple,
    the declared types' first, then the CHECK as it prints on the live column types: the live CHECK of the
    declaration prints so until the planned ALTER COLUMN TYPE reparses it in the new type (it is the declared one,
    not a CHECK to add a second time)."""
    out = {}
    with conn.transaction(force_rollback=True):
        for table, t in structure["tables"].items():
            checks = parts.get(table, {}).get("checks", [])
            if not checks:
                continue
            printed = _printed_checks(conn, table, t["columns"], checks)
            have = ((live or {}).get("tables") or {}).get(table)
            types = {c: info["type"] for c, info in t["columns"].items()}
            if have is not None:
                types.update({c: info["type"] for c, info in have["columns"].items() if c in types})
            if have is not None and types != {c: info["type"] for c, info in t["columns"].items()}:
                try:
                    with conn.transaction():  # a CHECK the old types cannot take: only the declared printing
                        conn.execute("DROP TABLE pg_temp.%s" % _q(table))
                        before = _printed_checks(conn, table, {c: {"type": ty} for c, ty in types.items()}, checks)
                    printed = [(p, b) if b != p else p for p, b in zip(printed, before)]
                except Exception:  # the server refused it (psycopg's error: this module imports no driver)
                    pass
            out[table] = [(name, p) for (name, _), p in zip(checks, printed)]
    return out


def _printed_checks(conn, table, columns, checks):
    """The CHECKs as pg_get_constraintdef prints them on a temporary table of these columns (name: {"type"})."""
    cols = ", ".join("%s %s" % (_q(c), info["type"]) for c, info in columns.items())
    conn.execute("CREATE TEMPORARY TABLE %s (%s)" % (_q(table), cols))
    for n, (_, expr) in enumerate(checks):
        conn.execute("ALTER TABLE pg_temp.%s ADD CONSTRAINT %s CHECK (%s)" % (_q(table), _q("c%d" % n), expr))
    printed = dict(conn.execute(
        "SELECT k.conname, pg_get_constraintdef(k.oid) FROM pg_constraint k WHERE k.conrelid = %s::regclass",
        ("pg_temp.%s" % _q(table),)).fetchall())
    return [printed["c%d" % n] for n in range(len(checks))]


def volatile_functions(conn, expr):
    """The volatile functions an expression calls (ADD COLUMN with such a default rewrites the table)."""
    import re  # only an added column with a default asks
    names = sorted({m.lower() for m in re.findall(r"([A-Za-z_][A-Za-z0-9_]*)\s*\(", expr or "")})
    if not names:
        return []
    return [r[0] for r in conn.execute(
        "SELECT DISTINCT proname FROM pg_proc WHERE proname = ANY(%s) AND provolatile = 'v' ORDER BY 1", (names,))]


def has_rows(conn, table):
    return bool(conn.execute("SELECT EXISTS (SELECT 1 FROM %s)" % _q(table)).fetchone()[0])


def count(conn, sql, params=None):
    """The one number sql gives. Without params the text is not read for placeholders: a '%' in a declared
    CHECK (LIKE 'x%'), an expression or a name is SQL, not a placeholder."""
    return conn.execute(sql, params).fetchone()[0]


_q = quote_identifier  # the one quoter: a quoted identifier doubles its '"' on both engines


quote = _q
