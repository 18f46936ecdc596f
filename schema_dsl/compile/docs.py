"""The context of generated/SCHEMA.md: the declaration as a reader wants it.

`context(schema)` builds plain data for templates/SCHEMA.md.j2 (render.py
renders it with every other generated file, so `render --check` covers it);
`render(schema)` renders that one file for `schemagen docs`. Everything comes
from the declaration alone, in declaration and file order, so the output is
deterministic and the same on every machine.
"""
from __future__ import annotations

import re

from ..analysis.sqltext import default_sql
from ..model import former_names
from .env import default_origin, environment
from ..words import plural

_MERMAID_WORD = re.compile(r"[^A-Za-z0-9_]")


def md(text):
    """Text fit for a Markdown table cell: one line, pipes escaped."""
    return " ".join(str(text or "").split()).replace("|", "\\|")


def _status(table):
    if table.new:
        return "new"
    added = [c.name for c in table.columns if c.new]
    if added:
        return "enhanced (+ %s)" % ", ".join(added)
    return "unchanged"


def _fk_text(f):
    text = "%s(%s)" % (f.ref_table, ", ".join(f.ref_columns))
    if f.on_delete != "NO ACTION":
        text += " ON DELETE %s" % f.on_delete
    if f.on_update != "NO ACTION":
        text += " ON UPDATE %s" % f.on_update
    return text


def _conflict(resolution):
    """The text ' ON CONFLICT X' for a constraint with a conflict clause, else nothing."""
    return " ON CONFLICT " + resolution if resolution else ""


def _column(table, column):
    pk = table.primary_key
    single_fks = {f.columns[0].lower(): f for f in table.foreign_keys if len(f.columns) == 1}
    parts = []
    if pk is not None and len(pk.columns) == 1 and pk.columns[0].lower() == column.name.lower():
        parts.append("PRIMARY KEY" + _conflict(pk.on_conflict) + (" AUTOINCREMENT" if pk.autoincrement else ""))
    elif pk is not None and column.name.lower() in (c.lower() for c in pk.columns):
        parts.append("PRIMARY KEY (part %d)" % ([c.lower() for c in pk.columns].index(column.name.lower()) + 1))
    if column.not_null:
        parts.append("NOT NULL" + _conflict(column.not_null_on_conflict))
    if column.unique:
        parts.append("UNIQUE" + _conflict(column.unique_on_conflict))
    default = default_sql(column.default)
    if default is not None:
        parts.append("DEFAULT %s" % default)
    f = single_fks.get(column.name.lower())
    if f is not None:
        parts.append("REFERENCES %s" % _fk_text(f))
    notes = []
    if column.renamed_from:
        notes.append("was %s in older databases" % " or ".join("`%s`" % n for n in former_names(column)))
    if column.backfill:
        notes.append("filled with `%s` for existing rows" % column.backfill)
    return {
        "name": column.name,
        "type": column.type,
        "constraints": md(", ".join(parts)) or "",
        "comment": md(column.comment),
        "notes": md("; ".join(notes)),
        "new": bool(column.new),
    }


def _index(index, number):
    cols = ", ".join(c.name + (" COLLATE " + c.collate if c.collate else "") + (" DESC" if c.desc else "")
                     for c in index.columns)
    return {
        "number": number,
        "name": index.name,
        "table": index.table,
        "columns": md(cols),
        "unique": bool(index.unique),
        "where": md(index.where) if index.where else "",
        "serves": [md(q) for q in index.serves],
        "comment": md(index.comment),
    }


def _mermaid_type(declared):
    return _MERMAID_WORD.sub("_", declared.strip()) or "ANY"


def _mermaid_name(name):
    """A table or column name as a Mermaid word: spaces, quotes and other characters Mermaid cannot read become _."""
    word = _MERMAID_WORD.sub("_", name)
    return "_" + word if word[:1].isdigit() else word


def mermaid(schema):
    """The lines of a Mermaid erDiagram: every table with its columns and keys, every foreign key."""
    lines = ["erDiagram"]
    for table in schema.ordered_tables():
        for f in table.foreign_keys:
            nullable = any(table.column(c) is not None and not table.column(c).not_null for c in f.columns)
            lines.append('    %s %s--o{ %s : "%s"' % (_mermaid_name(f.ref_table), "|o" if nullable else "||",
                                                      _mermaid_name(table.name), ", ".join(f.columns).replace('"', "'")))
    for table in schema.ordered_tables():
        pk = {c.lower() for c in table.primary_key.columns} if table.primary_key else set()
        fk_cols = {c.lower() for f in table.foreign_keys for c in f.columns}
        unique = {u[0].lower() for u in table.all_uniques if len(u) == 1}
        lines.append("    %s {" % _mermaid_name(table.name))
        for c in table.columns:
            keys = [k for k, on in (("PK", c.name.lower() in pk), ("FK", c.name.lower() in fk_cols),
                                    ("UK", c.name.lower() in unique)) if on]
            lines.append("        %s %s%s" % (_mermaid_type(c.type), _mermaid_name(c.name), (" " + ", ".join(keys)) if keys else ""))
        lines.append("    }")
    return lines


def _postgresql(obj):
    """What stands for a view, trigger or virtual table on PostgreSQL, in a few words; None where the declaration
    says nothing of PostgreSQL (an SQLite-only project)."""
    if obj.postgresql:
        return "its own PostgreSQL statement"
    return "left out (sqlite_only)" if obj.sqlite_only else None


def _later(kind, obj, sql):
    return {"kind": kind, "name": obj.name, "comment": " ".join((obj.comment or "").split()),
            "comment_cell": md(obj.comment), "table": getattr(obj, "table", None), "sql": sql.strip(),
            "postgresql": _postgresql(obj)}




def later_objects(schema):
    """The virtual tables, views and triggers, in the order the index file creates them."""
    return ([_later("virtual table", v, "CREATE VIRTUAL TABLE %s USING %s(%s)" % (v.name, v.module, v.args.strip()))
             for v in schema.virtual_tables]
            + [_later("view", v, v.sql) for v in schema.views]
            + [_later("trigger", t, t.sql) for t in schema.triggers])


def context(schema):
    """The template context of SCHEMA.md."""
    later = [n for n in (plural(len(schema.virtual_tables), "virtual table") if schema.virtual_tables else "",
                         plural(len(schema.views), "view") if schema.views else "",
                         plural(len(schema.triggers), "trigger") if schema.triggers else "") if n]
    later_text = ", ".join(later[:-1]) + " and " + later[-1] if len(later) > 1 else "".join(later)
    numbers = {ix.name: n for n, ix in enumerate(schema.indexes, start=1)}
    files = list(schema.table_files) + [schema.index_file]
    tables = []
    for table in schema.ordered_tables():
        referenced_by = ["%s(%s)" % (t.name, ", ".join(f.columns)) for t in schema.ordered_tables()
                         for f in t.foreign_keys if f.ref_table.lower() == table.name.lower()]
        pk = table.primary_key
        tables.append({
            "name": table.name,
            "file": schema.file_of(table),
            "status": _status(table),
            "comment": " ".join((table.comment or "").split()),
            "comment_cell": md(table.comment),
            "columns": [_column(table, c) for c in table.columns],
            "primary_key": ("%s(%s)%s%s" % (table.name, ", ".join(pk.columns), " AUTOINCREMENT" if pk.autoincrement else "",
                                            _conflict(pk.on_conflict)) if pk is not None else None),
            "uniques": ["(%s)%s" % (", ".join(u.columns), _conflict(u.on_conflict)) for u in table.uniques],
            "checks": [md(c.expr) for c in table.checks],
            "foreign_keys": [{"columns": ", ".join(f.columns), "references": md(_fk_text(f))} for f in table.foreign_keys],
            "referenced_by": referenced_by,
            "indexes": [_index(ix, numbers[ix.name]) for ix in schema.indexes if ix.table.lower() == table.name.lower()],
            "triggers": [tr.name for tr in schema.triggers if tr.table.lower() == table.name.lower()],
        })
    return {
        "schema": schema,
        "files": [{"order": n, "name": f, "holds": ", ".join(t.name for t in schema.tables_in_file(f)) if f != schema.index_file
                   else "the %s%s" % (plural(len(schema.indexes), "named index", "named indexes"),
                                      ", then %s" % later_text if later else "")}
                  for n, f in enumerate(files, start=1)],
        "tables": tables,
        "indexes": [_index(ix, numbers[ix.name]) for ix in schema.indexes],
        "pragmas": [{"name": p.name, "value": p.value, "persistent": p.persistent} for p in schema.pragmas],
        "mermaid": mermaid(schema),
        "later": later_objects(schema),
        "later_text": later_text,
        "virtual_tables": [o for o in later_objects(schema) if o["kind"] == "virtual table"],
        "views": [o for o in later_objects(schema) if o["kind"] == "view"],
        "triggers": [o for o in later_objects(schema) if o["kind"] == "trigger"],
        "summary": "%s and %s" % (plural(len(schema.tables), "table"),
                                  plural(len(schema.indexes), "named index", "named indexes")),
        "new_text": "%s and %s on existing tables" % (
            plural(sum(1 for t in schema.tables if t.new), "new table"),
            plural(sum(1 for t in schema.tables if not t.new for c in t.columns if c.new), "new column")),
        "counts": {"tables": len(schema.tables), "indexes": len(schema.indexes),
                   "new_tables": sum(1 for t in schema.tables if t.new),
                   "new_columns": sum(1 for t in schema.tables if not t.new for c in t.columns if c.new)},
    }


def render(schema, origin=None):
    """The text of SCHEMA.md (the same template render_files uses); origin as render.render_files takes it."""
    return environment().get_template("SCHEMA.md.j2").render(origin=origin or default_origin(schema), **context(schema))
