"""Read a live database into the same frozen model the declaration uses.

One short step per source: columns (table_xinfo), foreign keys
(foreign_key_list, grouped by id), UNIQUE constraints (index_list origin 'u'),
CHECK constraints and AUTOINCREMENT (the stored CREATE TABLE: SQLite has no
PRAGMA for them), indexes (index_xinfo and the stored WHERE), and the views
and triggers that stand on each table.
"""
from __future__ import annotations

from attrs import field, frozen

from ..sqlite import structure
from ..model import Check, Column, Expr, ForeignKey, Index, IndexColumn, PrimaryKey, Table, Unique, named


@frozen
class Live:
    """A database as found: model tables and indexes plus what the model does not hold."""

    tables: dict = field(factory=dict)          # name -> Table
    indexes: dict = field(factory=dict)         # name -> Index (named indexes only)
    views: dict = field(factory=dict)           # name -> CREATE VIEW sql
    triggers: dict = field(factory=dict)        # name -> {"table": str, "sql": str}
    column_sql: dict = field(factory=dict)      # table -> {column: definition text}
    constraint_sql: dict = field(factory=dict)  # table -> [table constraint text]
    index_sql: dict = field(factory=dict)       # index name -> CREATE INDEX sql
    structure: dict = field(factory=dict)       # structure.to_structure of the same read

    @property
    def is_empty(self):
        return not (self.tables or self.indexes or self.views or self.triggers)

    def table(self, name):
        return named(self.tables.values(), name)


def columns_from_xinfo(xinfo_rows):
    cols = []
    for cid, name, type_, notnull, dflt, pk, hidden in xinfo_rows:
        if hidden not in (0, 2, 3):  # 1: hidden column of a virtual table
            continue
        cols.append(Column(name, type_ or "", not_null=bool(notnull),
                           default=Expr(dflt) if dflt is not None else None))
    return cols


def primary_key_from_xinfo(xinfo_rows, autoincrement):
    pk = sorted((r[5], r[1]) for r in xinfo_rows if r[5])
    if not pk:
        return None
    return PrimaryKey(tuple(name for _, name in pk), autoincrement=autoincrement)


def foreign_keys_from_rows(fk_rows):
    return [ForeignKey(g["columns"], g["table"], [c if c is not None else "" for c in g["to"]],
                       on_delete=g["on_delete"], on_update=g["on_update"])
            for g in structure.fk_groups(fk_rows)]


def table_from_pragma_rows(name, info):
    """A model Table from what structure.read_raw read for one table."""
    parsed = structure.parse_create_table(info["sql"])
    return Table(
        name,
        columns=columns_from_xinfo(info["xinfo"]),
        primary_key=primary_key_from_xinfo(info["xinfo"], parsed["autoincrement"]),
        uniques=[Unique(cols) for cols in info["unique_columns"]],
        checks=[Check(expr) for expr in parsed["checks"]],
        foreign_keys=foreign_keys_from_rows(info["fks"]),
    )


def index_from_pragma_rows(name, info):
    return Index(name, info["table"],
                 [IndexColumn(r[2] if r[2] is not None else "<expression>", bool(r[3])) for r in info["xinfo"] if r[5]],
                 unique=bool(info["unique"]), where=structure.index_where(info["sql"]))


def read_live(conn, raw=None):
    """Introspect the main database of an open connection.

    raw: what structure.read_raw already read from it (apply's plan reads it once).
    """
    raw = structure.read_raw(conn) if raw is None else raw
    tables, column_sql, constraint_sql = {}, {}, {}
    for name, info in raw["tables"].items():
        tables[name] = table_from_pragma_rows(name, info)
        parsed = structure.parse_create_table(info["sql"])
        column_sql[name] = parsed["columns"]
        constraint_sql[name] = parsed["constraints"]
    return Live(
        tables=tables,
        indexes={n: index_from_pragma_rows(n, i) for n, i in raw["indexes"].items()},
        views=dict(raw["views"]),
        triggers=dict(raw["triggers"]),
        column_sql=column_sql,
        constraint_sql=constraint_sql,
        index_sql={n: i["sql"] for n, i in raw["indexes"].items()},
        structure=structure.to_structure(raw),
    )
