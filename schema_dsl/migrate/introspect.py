"""Read a live database into the same frozen model the declaration uses.

One short step per source: columns (table_xinfo), foreign keys
(foreign_key_list, grouped by id), UNIQUE constraints (index_list origin 'u'),
CHECK constraints, AUTOINCREMENT, COLLATE, DEFERRABLE, constraint names, ON CONFLICT clauses,
WITHOUT ROWID and STRICT (the stored CREATE TABLE: SQLite has no PRAGMA for
them), indexes (index_xinfo, the stored WHERE and the stored key expressions),
the views and triggers (their stored SQL) and the virtual tables (module and
arguments from the stored CREATE VIRTUAL TABLE; their shadow tables are left
out).
"""
from __future__ import annotations

from attrs import field, frozen

from ..sqlite import ddl, structure
from ..model import (Check, Column, Expr, ForeignKey, Index, IndexColumn, PrimaryKey, Table, Trigger, Unique, View,
                     VirtualTable, evolve, named)


@frozen
class Live:
    """A database as found: model tables and indexes plus what the model does not hold."""

    tables: dict = field(factory=dict)          # name -> Table
    indexes: dict = field(factory=dict)         # name -> Index (named indexes only)
    views: dict = field(factory=dict)           # name -> CREATE VIEW sql
    triggers: dict = field(factory=dict)        # name -> {"table": str, "sql": str}
    virtual_tables: dict = field(factory=dict)  # name -> VirtualTable
    column_sql: dict = field(factory=dict)      # table -> {column: definition text}
    constraint_sql: dict = field(factory=dict)  # table -> [table constraint text]
    index_sql: dict = field(factory=dict)       # index name -> CREATE INDEX sql
    structure: dict = field(factory=dict)       # structure.to_structure of the same read
    invalid_indexes: frozenset = field(default=frozenset(), converter=frozenset)  # left INVALID by a failed build (PostgreSQL)

    @property
    def is_empty(self):
        return not (self.tables or self.indexes or self.views or self.triggers or self.virtual_tables)

    def table(self, name):
        return named(self.tables.values(), name)


def columns_from_xinfo(xinfo_rows, collations=None):
    cols = []
    for cid, name, type_, notnull, dflt, pk, hidden in xinfo_rows:
        if hidden not in (0, 2, 3):  # 1: hidden column of a virtual table
            continue
        cols.append(Column(name, type_ or "", not_null=bool(notnull),
                           default=Expr(dflt) if dflt is not None else None,
                           collate=(collations or {}).get(name)))
    return cols


def primary_key_from_xinfo(xinfo_rows, autoincrement):
    pk = sorted((r[5], r[1]) for r in xinfo_rows if r[5])
    if not pk:
        return None
    return PrimaryKey(tuple(name for _, name in pk), autoincrement=autoincrement)


def foreign_keys_from_rows(fk_rows, deferrable=(), names=None):
    """Model foreign keys; deferrable: table_options' (columns, parent, setting) list, names: {(columns, parent): name}."""
    pending = list(deferrable)
    out = []
    for g in structure.fk_groups(fk_rows):
        key = (tuple(c.lower() for c in g["columns"]), g["table"].lower())
        found = next((d for d in pending if d[:2] == key), None)
        if found is not None:
            pending.remove(found)
        out.append(ForeignKey(g["columns"], g["table"], [c for c in g["to"] if c is not None],
                              on_delete=g["on_delete"], on_update=g["on_update"],
                              deferrable=found[2] if found else None, name=(names or {}).get(key)))
    return out


def constraint_names(sql):
    """Names the stored CREATE TABLE gives its constraints: {"check": {normalized expr: name},
    "unique": {columns lower: name}, "fk": {(columns lower, parent lower): name}}."""
    out = {"check": {}, "unique": {}, "fk": {}}
    if "constraint" not in (sql or "").lower():
        return out
    tokens = ddl.tokenize(sql)
    try:
        start = tokens.index(("op", "("))
    except ValueError:
        return out
    for item in ddl.split_top(tokens[start + 1:ddl.matching_paren(tokens, start)]):
        column_level = not (item and item[0][0] == "word" and item[0][1].lower() in ("constraint", "primary", "unique",
                                                                                      "check", "foreign"))
        for k, tok in enumerate(item):
            if not (tok[0] == "word" and tok[1].lower() == "constraint" and k + 2 < len(item)):
                continue
            name, kind, rest = item[k + 1][1], item[k + 2][1].lower(), item[k + 3:]
            if kind == "check" and rest and rest[0] == ("op", "("):
                out["check"][ddl.normalize_sql(ddl.join_tokens(rest[1:ddl.matching_paren(rest, 0)]))] = name
            elif kind in ("unique", "foreign", "references"):
                if column_level:
                    cols = (item[0][1].lower(),)
                else:
                    close = ddl.matching_paren(rest, rest.index(("op", "("))) if ("op", "(") in rest else 0
                    cols = tuple(t[1].lower() for t in rest[:close] if t[0] in ("word", "ident", "string")
                                 and t[1].lower() != "key")
                if kind == "unique":
                    out["unique"][cols] = name
                else:
                    r = [t[1].lower() for t in rest].index("references") if kind == "foreign" else -1
                    if r + 1 < len(rest):
                        out["fk"][(cols, rest[r + 1][1].lower())] = name
    return out


def table_from_pragma_rows(name, info):
    """A model Table from what structure.read_raw read for one table."""
    parsed = ddl.parse_create_table(info["sql"])
    options = ddl.table_options(info["sql"])
    names = constraint_names(info["sql"])
    conflicts = structure.conflict_map({"on_conflict": ddl.conflict_clauses(info["sql"])})
    columns = columns_from_xinfo(info["xinfo"], options["collate"])
    pk = primary_key_from_xinfo(info["xinfo"], parsed["autoincrement"])
    if conflicts:  # rare: the common path builds no model object twice
        columns = [evolve(c, not_null_on_conflict=conflicts.get(("NOT NULL", (c.name.lower(),)))) for c in columns]
        if pk is not None:
            pk = evolve(pk, on_conflict=conflicts.get(("PRIMARY KEY", tuple(c.lower() for c in pk.columns))))
    return Table(
        name,
        columns=columns,
        primary_key=pk,
        uniques=[Unique(cols, name=names["unique"].get(tuple(c.lower() for c in cols)),
                        on_conflict=conflicts.get(("UNIQUE", tuple(c.lower() for c in cols))))
                 for cols in info["unique_columns"]],
        checks=[Check(expr, name=names["check"].get(ddl.normalize_sql(expr))) for expr in parsed["checks"]],
        foreign_keys=foreign_keys_from_rows(info["fks"], options["deferrable"], names["fk"]),
        without_rowid=options["without_rowid"],
        strict=options["strict"],
    )


def index_from_pragma_rows(name, info, table=None):
    """A model Index; table: the model Table it is on, whose column COLLATE a key inherits (a key's own
    COLLATE is kept only where it differs from that)."""
    keys = [r for r in info["xinfo"] if r[5]]  # index_xinfo: seqno, cid, name, desc, coll, key
    names = {c.name.lower() for c in table.columns} if table is not None else None
    texts = ddl.index_key_texts(info["sql"], names) if any(r[2] is None for r in keys) else ()
    columns = []
    for k, r in enumerate(keys):
        if r[2] is not None:
            column = table.column(r[2]) if table is not None else None
            inherited = ((column.collate if column is not None else None) or "BINARY").upper()
            collate = (r[4] or "BINARY").upper()
            columns.append(IndexColumn(r[2], bool(r[3]), collate=collate if collate != inherited else None))
        else:  # an expression: its text from the stored statement, a COLLATE written after it included
            columns.append(IndexColumn(texts[k][0] if k < len(texts) else structure.EXPRESSION, bool(r[3]),
                                       expression=True))
    return Index(name, info["table"], columns, unique=bool(info["unique"]),
                 where=ddl.index_where(info["sql"], names))


def virtual_table_from_sql(name, sql):
    module, args = ddl.virtual_table_parts(sql)
    return VirtualTable(name, module, args)


def read_live(conn, raw=None):
    """Introspect the main database of an open connection.

    raw: what structure.read_raw already read from it (apply's plan reads it once).
    """
    raw = structure.read_raw(conn) if raw is None else raw
    tables, column_sql, constraint_sql = {}, {}, {}
    for name, info in raw["tables"].items():
        tables[name] = table_from_pragma_rows(name, info)
        parsed = ddl.parse_create_table(info["sql"])
        column_sql[name] = parsed["columns"]
        constraint_sql[name] = parsed["constraints"]
    return Live(
        tables=tables,
        indexes={n: index_from_pragma_rows(n, i, named(tables.values(), i["table"])) for n, i in raw["indexes"].items()},
        views=dict(raw["views"]),
        triggers=dict(raw["triggers"]),
        virtual_tables={n: virtual_table_from_sql(n, sql) for n, sql in raw.get("virtual_tables", {}).items()},
        column_sql=column_sql,
        constraint_sql=constraint_sql,
        index_sql={n: i["sql"] for n, i in raw["indexes"].items()},
        structure=structure.to_structure(raw),
    )


def view_models(live):
    """The live views and triggers as model objects, in sqlite_master order."""
    return ([View(n, sql) for n, sql in live.views.items()],
            [Trigger(n, t["table"], t["sql"]) for n, t in live.triggers.items()])
