"""The schema model: frozen attrs classes, pure data, no SQL text generation.

A `Schema` validates itself when built and raises `DeclarationError` listing
every problem at once, each naming its object. Change a model with
`attrs.evolve`; nothing here mutates.

Choices made where SQLite is lenient:
- Identifiers are compared case-insensitively, as SQLite does, so `Tasks` and
  `tasks` are duplicates.
- A name is rejected when it is empty, has surrounding white space or a NUL
  or control character, or starts with `sqlite_` (reserved by SQLite).
- A foreign key must name parent columns that are the parent's PRIMARY KEY or
  carry a UNIQUE constraint; SQLite accepts anything at CREATE time and fails
  later, at the first insert, with "foreign key mismatch".
"""
from __future__ import annotations

import re
from typing import Union

import attrs
from attrs import field, frozen
from attrs.validators import in_, instance_of

from .errors import DeclarationError

PLAN_CHECKS = ("info", "required")
FK_ACTIONS = ("NO ACTION", "RESTRICT", "SET NULL", "SET DEFAULT", "CASCADE")
PRAGMA_NAMES = ("journal_mode", "synchronous", "foreign_keys", "busy_timeout", "wal_autocheckpoint")
_TYPE_RE = re.compile(r"[A-Za-z][A-Za-z0-9_]*( [A-Za-z][A-Za-z0-9_]*)*(\(\s*[+-]?\d+\s*(,\s*[+-]?\d+\s*)?\))?\Z")


def _tuple(value):
    return tuple(value)


def _pairs(value):
    """A mapping as a tuple of (key, value) pairs in a stable order (frozen and hashable)."""
    items = value.items() if isinstance(value, dict) else value
    return tuple(sorted(((k, v) for k, v in items), key=repr))


def named(objects, name):
    """The object called `name`, compared case-insensitively as SQLite does, or None."""
    key = name.lower()
    return next((o for o in objects if o.name.lower() == key), None)


@frozen
class Literal:
    """A constant default value, rendered as an SQL literal."""

    value: Union[str, int, float, bool, bytes, None]


@frozen
class Expr:
    """An SQL expression used verbatim, e.g. CURRENT_TIMESTAMP."""

    sql: str = field(validator=instance_of(str))


def _default(value):
    if value is None or isinstance(value, (Literal, Expr)):
        return value
    return Literal(value)


@frozen
class Column:
    """A table column.

    renamed_from: the column's name in older databases (a migration renames it).
    backfill: an SQL expression over the old row that fills this column for
    rows that exist when it is added or made NOT NULL.
    """

    name: str
    type: str
    not_null: bool = False
    default: Union[Literal, Expr, None] = field(default=None, converter=_default)
    unique: bool = False
    comment: str = ""
    new: bool = False
    renamed_from: Union[str, None] = None
    backfill: Union[str, None] = None

    @property
    def affinity(self):
        """The column's type affinity, by SQLite's rules (datatype3.html, 3.1)."""
        return type_affinity(self.type)


def type_affinity(declared):
    t = (declared or "").upper()
    if "INT" in t:
        return "INTEGER"
    if "CHAR" in t or "CLOB" in t or "TEXT" in t:
        return "TEXT"
    if "BLOB" in t or not t:
        return "BLOB"
    if "REAL" in t or "FLOA" in t or "DOUB" in t:
        return "REAL"
    return "NUMERIC"


@frozen
class PrimaryKey:
    columns: tuple = field(converter=_tuple)
    autoincrement: bool = False


@frozen
class Unique:
    columns: tuple = field(converter=_tuple)


@frozen
class Check:
    expr: str = field(validator=instance_of(str))


@frozen
class ForeignKey:
    columns: tuple = field(converter=_tuple)
    ref_table: str
    ref_columns: tuple = field(converter=_tuple)
    on_delete: str = field(default="NO ACTION", validator=in_(FK_ACTIONS))
    on_update: str = field(default="NO ACTION", validator=in_(FK_ACTIONS))


def fk(column, ref_table, ref_column, on_delete="NO ACTION", on_update="NO ACTION"):
    """A single-column foreign key."""
    return ForeignKey((column,), ref_table, (ref_column,), on_delete, on_update)


@frozen
class IndexColumn:
    name: str
    desc: bool = False


def _index_columns(values):
    out = []
    for v in values:
        if isinstance(v, IndexColumn):
            out.append(v)
            continue
        parts = v.split()
        if len(parts) == 2 and parts[1].upper() in ("ASC", "DESC"):
            out.append(IndexColumn(parts[0], parts[1].upper() == "DESC"))
        else:
            out.append(IndexColumn(v))
    return tuple(out)


@frozen
class Index:
    """A named index; `serves` holds the queries it is declared to serve."""

    name: str
    table: str
    columns: tuple = field(converter=_index_columns)
    unique: bool = False
    where: Union[str, None] = None
    serves: tuple = field(default=(), converter=_tuple)
    comment: str = ""
    # "required": the validation report fails when a serves-query's plan does not use this index (or an
    # identical one); "info": the plan is reported only
    plan_check: str = field(default="info", validator=in_(PLAN_CHECKS))


@frozen
class Table:
    name: str
    columns: tuple = field(converter=_tuple)
    primary_key: Union[PrimaryKey, None] = None
    uniques: tuple = field(default=(), converter=_tuple)
    checks: tuple = field(default=(), converter=_tuple)
    foreign_keys: tuple = field(default=(), converter=_tuple)
    file: Union[str, None] = None  # which table file; may be left out when the schema has one
    comment: str = ""
    new: bool = False

    def column(self, name):
        return named(self.columns, name)

    @property
    def column_names(self):
        return tuple(c.name for c in self.columns)

    @property
    def all_uniques(self):
        """Column tuples under a UNIQUE constraint, column-level ones included."""
        return tuple((c.name,) for c in self.columns if c.unique) + tuple(u.columns for u in self.uniques)


@frozen
class Pragma:
    """A connection setting; `persistent` ones are stored in the file."""

    name: str = field(validator=in_(PRAGMA_NAMES))
    value: Union[str, int]
    persistent: bool = False


@frozen
class Schema:
    """A whole declared schema. Building one validates it."""

    name: str
    tables: tuple = field(converter=_tuple)
    indexes: tuple = field(default=(), converter=_tuple)
    pragmas: tuple = field(default=(), converter=_tuple)
    table_files: tuple = field(default=("ddl-tables.sql",), converter=_tuple)
    index_file: str = "ddl-indexes.sql"
    source: str = ""
    # how each lint finding is resolved: {rule: text} or {(rule, object): text}
    lint_resolutions: tuple = field(default=(), converter=_pairs)

    def __attrs_post_init__(self):
        problems = schema_problems(self)
        if problems:
            raise DeclarationError(problems)

    def table(self, name):
        return named(self.tables, name)

    def index(self, name):
        return named(self.indexes, name)

    def file_of(self, table):
        """The table file a table is created in: its `file`, or the only table file."""
        if table.file is None and len(self.table_files) == 1:
            return self.table_files[0]
        return table.file

    def tables_in_file(self, filename):
        """Tables of one DDL file, each after every table it references."""
        return dependency_order([t for t in self.tables if self.file_of(t) == filename])

    def ordered_tables(self):
        return tuple(t for f in self.table_files for t in self.tables_in_file(f))


def dependency_order(tables):
    """Tables sorted so that each comes after those it references; ties keep declaration order."""
    names = {t.name.lower() for t in tables}
    done, out, pending = set(), [], list(tables)
    while pending:
        for t in pending:
            deps = {f.ref_table.lower() for f in t.foreign_keys} & names
            deps.discard(t.name.lower())
            if deps <= done:
                out.append(t)
                done.add(t.name.lower())
                pending.remove(t)
                break
        else:  # a cycle: keep declaration order for the rest (schema_problems reports it)
            out.extend(pending)
            break
    return tuple(out)


def _name_problems(kind, name):
    if not isinstance(name, str) or not name:
        return ["%s name %r: expected a non-empty string" % (kind, name)]
    if name != name.strip() or any(ord(ch) < 32 or 127 <= ord(ch) < 160 for ch in name):  # C0, DEL, C1
        return ["%s %r: name has surrounding white space or a control character" % (kind, name)]
    if name.lower().startswith("sqlite_"):
        return ["%s %r: names starting with 'sqlite_' are reserved by SQLite" % (kind, name)]
    return []


def schema_problems(schema):
    """Every problem of a declared schema, each naming its object."""
    p = []
    seen = {}
    for obj_kind, objs in (("table", schema.tables), ("index", schema.indexes)):
        for obj in objs:
            p += _name_problems(obj_kind, obj.name)
            key = obj.name.lower() if isinstance(obj.name, str) else obj.name
            if key in seen:
                p.append("%s '%s': duplicate name (already used by a %s)" % (obj_kind, obj.name, seen[key]))
            seen[key] = obj_kind
    tables = {t.name.lower(): t for t in schema.tables if isinstance(t.name, str)}
    file_pos = {f: i for i, f in enumerate(schema.table_files)}
    for t in schema.tables:
        where = "table '%s'" % t.name
        if schema.file_of(t) not in file_pos:
            p.append("%s: file %r is not one of the table files %s%s" % (
                where, t.file, list(schema.table_files), " (name one: the schema has several)" if t.file is None else ""))
        if not t.columns:
            p.append("%s: expected at least one column" % where)
        cols = {}
        for c in t.columns:
            p += ["%s: %s" % (where, msg) for msg in _name_problems("column", c.name)]
            if isinstance(c.name, str) and c.name.lower() in cols:
                p.append("%s: duplicate column '%s'" % (where, c.name))
            cols[c.name.lower()] = c
            if not _TYPE_RE.match(c.type or ""):
                p.append("%s, column '%s': type %r is not a valid SQLite type name" % (where, c.name, c.type))
        for c in t.columns:
            if c.renamed_from and c.renamed_from.lower() in cols:
                p.append("%s, column '%s': renamed_from '%s' names another declared column" % (where, c.name, c.renamed_from))

        def known(columns, what):
            for name in columns:
                if name.lower() not in cols:
                    p.append("%s: %s names unknown column '%s'" % (where, what, name))

        pk = t.primary_key
        if pk is not None:
            known(pk.columns, "PRIMARY KEY")
            if pk.autoincrement:
                c = cols.get(pk.columns[0].lower()) if len(pk.columns) == 1 else None
                if c is None or c.type.upper() != "INTEGER":
                    p.append("%s: AUTOINCREMENT needs a single INTEGER PRIMARY KEY column, got %s" % (
                        where, ", ".join("%s %s" % (n, cols[n.lower()].type if n.lower() in cols else "?") for n in pk.columns)))
        for u in t.uniques:
            known(u.columns, "UNIQUE constraint")
        for f in t.foreign_keys:
            what = "foreign key (%s)" % ", ".join(f.columns)
            known(f.columns, what)
            parent = tables.get(f.ref_table.lower())
            if parent is None:
                p.append("%s, %s: references unknown table '%s'" % (where, what, f.ref_table))
            else:
                for rc in f.ref_columns:
                    if parent.column(rc) is None:
                        p.append("%s, %s: references unknown column '%s.%s'" % (where, what, f.ref_table, rc))
                keys = [tuple(x.lower() for x in u) for u in parent.all_uniques]
                if parent.primary_key:
                    keys.append(tuple(x.lower() for x in parent.primary_key.columns))
                if all(parent.column(rc) for rc in f.ref_columns) and tuple(x.lower() for x in f.ref_columns) not in keys:
                    p.append("%s, %s: parent columns %s(%s) are not its PRIMARY KEY or UNIQUE" % (
                        where, what, f.ref_table, ", ".join(f.ref_columns)))
                tf, pf = schema.file_of(t), schema.file_of(parent)
                if tf in file_pos and pf in file_pos and file_pos[pf] > file_pos[tf]:
                    p.append("%s, %s: placed in %s, before the referenced table '%s' in the later file %s" % (
                        where, what, tf, parent.name, pf))
            if len(f.ref_columns) != len(f.columns):
                p.append("%s, %s: %d columns reference %d" % (where, what, len(f.columns), len(f.ref_columns)))
            for action_name, action in (("ON DELETE", f.on_delete), ("ON UPDATE", f.on_update)):
                if action == "SET NULL":
                    for name in f.columns:
                        c = cols.get(name.lower())
                        if c is not None and c.not_null:
                            p.append("%s, %s: %s SET NULL on NOT NULL column '%s'" % (where, what, action_name, name))
    for f in schema.table_files:
        in_file = [t for t in schema.tables if schema.file_of(t) == f]
        ordered = dependency_order(in_file)
        for t in ordered:
            later = {x.name.lower() for x in ordered[ordered.index(t) + 1:]}
            for f2 in t.foreign_keys:
                if f2.ref_table.lower() in later:
                    p.append("table '%s': foreign keys form a cycle through '%s' within %s" % (t.name, f2.ref_table, f))
    for ix in schema.indexes:
        where = "index '%s'" % ix.name
        t = tables.get(ix.table.lower()) if isinstance(ix.table, str) else None
        if t is None:
            p.append("%s: on unknown table '%s'" % (where, ix.table))
            continue
        if not ix.columns:
            p.append("%s: expected at least one column" % where)
        for c in ix.columns:
            if t.column(c.name) is None:
                p.append("%s: names unknown column '%s.%s'" % (where, ix.table, c.name))
    for pr in schema.pragmas:
        if not isinstance(pr.value, (str, int)) or isinstance(pr.value, bool):
            p.append("pragma '%s': value must be a string or an integer, got %r" % (pr.name, pr.value))
    return p


def evolve(obj, **changes):
    """attrs.evolve, re-exported so callers change models one way only."""
    return attrs.evolve(obj, **changes)
