"""The structure a declaration expects, in the form structure.py reads.

`expected_structure(schema)` is what `structure.read_structure(conn)` returns
for a database that matches the declaration; the generated validator embeds
it, and the library compares live databases against it with
`structure.compare`, so both judge by one rule.
"""
from .sqltext import default_sql
from ..sqlite.structure import EXPRESSION, index_key
from ..sqlite.ddl import normalize_sql, view_body


def table_structure(table):
    pk = table.primary_key
    pk_cols = [c.lower() for c in pk.columns] if pk else []
    columns = {}
    for c in table.columns:
        columns[c.name] = {
            "type": c.type.upper(),
            "notnull": bool(c.not_null),
            "default": normalize_sql(default_sql(c.default)),
            "pk": pk_cols.index(c.name.lower()) + 1 if c.name.lower() in pk_cols else 0,
        }
        if c.collate and c.collate.upper() != "BINARY":
            columns[c.name]["collate"] = c.collate.upper()
    fks = []
    for f in table.foreign_keys:
        fk = {"columns": list(f.columns), "table": f.ref_table,
              "to": list(f.ref_columns) if f.ref_columns else [None] * len(f.columns),
              "on_update": f.on_update, "on_delete": f.on_delete}
        if f.deferrable:
            fk["deferrable"] = f.deferrable
        fks.append(fk)
    out = {
        "columns": columns,
        "autoincrement": bool(pk and pk.autoincrement),
        "fks": sorted(fks, key=repr),
        "uniques": sorted(list(u) for u in table.all_uniques),
        "checks": sorted(normalize_sql(c.expr) for c in table.checks),
    }
    if table.without_rowid:
        out["without_rowid"] = True
    if table.strict:
        out["strict"] = True
    clauses = conflict_structure(table)
    if clauses:
        out["on_conflict"] = clauses
    return out


def conflict_structure(table):
    """The table's ON CONFLICT clauses as ddl.conflict_clauses reads them (ABORT, the default, left out)."""
    pk = table.primary_key
    out = [["PRIMARY KEY", list(pk.columns), pk.on_conflict]] if pk is not None else []
    for c in table.columns:
        out += [["NOT NULL", [c.name], c.not_null_on_conflict], ["UNIQUE", [c.name], c.unique_on_conflict]]
    out += [["UNIQUE", list(u.columns), u.on_conflict] for u in table.uniques]
    return sorted(item for item in out if item[2] not in (None, "ABORT"))


def index_key_structure(key, table=None):
    """One index key as structure.py reads it. table: the index's table, whose column COLLATE a key without
    its own inherits (as SQLite's index_xinfo reports it)."""
    if key.expression:
        if key.name == EXPRESSION:  # an expression whose text was not known (read by an older schemagen)
            return [EXPRESSION, bool(key.desc)]
        return index_key(None, key.desc, expression=key.name + (" COLLATE " + key.collate if key.collate else ""))
    column = table.column(key.name) if table is not None else None
    return index_key(key.name, key.desc, key.collate or (column.collate if column is not None else None))


def index_structure(index, table=None):
    """An index as structure.py reads it; table: its table (see index_key_structure)."""
    return {
        "table": index.table,
        "unique": bool(index.unique),
        "columns": [index_key_structure(c, table) for c in index.columns],
        "where": normalize_sql(index.where),
    }


def virtual_table_structure(vt):
    return {"module": vt.module.lower(), "args": normalize_sql(vt.args.strip())}


def expected_structure(schema):
    out = {
        "tables": {t.name: table_structure(t) for t in schema.tables},
        "indexes": {ix.name: index_structure(ix, schema.table(ix.table)) for ix in schema.indexes},
    }
    if schema.views:
        out["views"] = {v.name: view_body(v.sql) for v in schema.views}
    if schema.triggers:
        out["triggers"] = {tr.name: {"table": tr.table, "sql": view_body(tr.sql)} for tr in schema.triggers}
    if schema.virtual_tables:
        out["virtual_tables"] = {vt.name: virtual_table_structure(vt) for vt in schema.virtual_tables}
    return out


def persistent_pragmas(schema):
    """The settings kept in the file, as PRAGMA reports them ({"journal_mode": "wal"})."""
    return {p.name: str(p.value).lower() for p in schema.pragmas if p.persistent}
