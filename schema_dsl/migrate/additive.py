"""The additive plan: a migration that only adds, planned from the compiled declaration alone.

A file whose only differences from the declaration are declared tables it lacks, declared columns its tables
lack (each one ALTER TABLE ADD COLUMN takes as it is) and declared indexes it lacks gets the plan the diff
(diff.py, plan.migration_plan) would give it, step for step (the same titles, reasons, statements, row
estimates, backup decision and foreign key scope), read from what `schemagen render` compiled into
declaration.json and the structure apply has already read; it builds no model and imports neither the diff
nor the introspection. That is the common upgrade (a release that adds tables, columns and indexes), and the
model and the diff cost more start-up time than planning it (about 25 ms of imports and 10 ms of diffing,
most of the fixed cost of migrating a small file).

Anything else returns None and the caller plans with the diff as before: a rename, a removal, a change to an
existing column, table, index, view or trigger, a new UNIQUE or CHECK, a new column with a default, a NOT NULL
or a backfill (the diff decides whether ADD COLUMN can take those, from the model), a declaration with a
history or data steps, --prune. Every check apply makes is the same on both paths: the plan here is the one
the diff would make, and what runs is verified against the declared structure before COMMIT either way.
"""
from __future__ import annotations

import re

from ..sqlite.dbfile import split_statements
from ..sqlite.structure import fold_case
from ..sqlite.ddl import parse_create_table
from ..sqlite.quote import unquote_identifier
from .plan import _has_rows, _size_estimate, setting_steps
from .steps import Plan, Step

# The reasons diff.py gives these changes (its CreateTable, AddColumn and CreateIndex defaults).
TABLE_REASON = "table is new"
COLUMN_REASON = "column is new; ALTER TABLE ADD COLUMN keeps every row in place"
INDEX_REASON = "index is new"

_CREATE_TABLE = re.compile(r'\s*(?:--[^\n]*\n\s*)*CREATE\s+TABLE\s+(?:IF\s+NOT\s+EXISTS\s+)?("(?:[^"]|"")*"|[^\s(]+)',
                           re.I)
_GENERATED = re.compile(r"\bGENERATED\b|\bAS\s*\(", re.I)


class _Named:
    """A declared table, column or index by name (and an index by its table); any other attribute is the
    model's, looked up on first use (the model is built then: a consumer that reads only these never builds it)."""

    __slots__ = ("name", "_known", "_find", "_found")

    def __init__(self, name, find, **known):
        self.name, self._known, self._find, self._found = name, known, find, None

    def __getattr__(self, attr):
        if attr.startswith("__"):
            raise AttributeError(attr)
        if attr in self._known:
            return self._known[attr]
        if self._found is None:
            self._found = self._find()
        return getattr(self._found, attr)

    def __repr__(self):
        return "%s(%r)" % (type(self).__name__, self.name)


class _Change:
    """The changes of an additive plan, named and shaped as diff.py's (CreateTable.table, AddColumn.table and
    .column, CreateIndex.index, each .reason), so that whatever reads a plan step's change reads these alike."""

    __slots__ = ()

    def __repr__(self):
        return "%s(%s)" % (type(self).__name__, ", ".join("%s=%r" % (n, getattr(self, n)) for n in self.__slots__))


class CreateTable(_Change):
    __slots__ = ("table", "reason")

    def __init__(self, table, reason=TABLE_REASON):
        self.table, self.reason = table, reason


class AddColumn(_Change):
    __slots__ = ("table", "column", "reason")

    def __init__(self, table, column, reason=COLUMN_REASON):
        self.table, self.column, self.reason = table, column, reason


class CreateIndex(_Change):
    __slots__ = ("index", "reason")

    def __init__(self, index, reason=INDEX_REASON):
        self.index, self.reason = index, reason


def _table_order(target):
    """The declared tables (lower-cased) in the order the DDL creates them (Schema.ordered_tables)."""
    order = []
    for filename in target.table_files:
        for stmt in split_statements(target.files[filename]):
            m = _CREATE_TABLE.match(stmt)
            if m:
                order.append(unquote_identifier(m.group(1)).lower())
    return order


def additive_plan(conn, target, actual, diffs, prune=None):
    """The plan for a file that lacks only declared tables, columns and indexes, or None (plan with the diff).

    actual: the file's structure (structure.to_structure); diffs: structure.compare(target.structure, actual).
    """
    compiled = target.compiled
    if prune is not None or compiled.get("removed") or compiled.get("history") or not actual["tables"]:
        return None
    if not diffs or any(kind != "missing" for kind, _ in diffs):
        return None  # an extra (a rename's old name, a user's own object) or a changed definition: the diff's
    declared = target.structure
    expected, live = fold_case(declared), fold_case(actual)
    for key in ("views", "triggers", "virtual_tables"):
        if (expected.get(key) or {}) != (live.get(key) or {}):
            return None
    names = {n.lower(): n for n in declared["tables"]}
    live_names = {n.lower(): n for n in actual["tables"]}
    carried = compiled.get("carried") or {}
    carried_columns = {t.lower(): {c.lower() for c in (entry.get("columns") or {})} for t, entry in carried.items()}
    order = _table_order(target)
    if sorted(order) != sorted(expected["tables"]):
        return None
    new_tables, new_columns = [], []
    for key in order:
        e, a = expected["tables"][key], live["tables"].get(key)
        if a is None:
            new_tables.append(key)
            continue
        new = [c for c in e["columns"] if c not in a["columns"]]
        if {k: v for k, v in e.items() if k not in ("columns", "fks")} != \
                {k: v for k, v in a.items() if k not in ("columns", "fks")}:
            return None  # a new UNIQUE or CHECK, a changed table option or ON CONFLICT: the diff rebuilds
        if any(f not in e["fks"] for f in a["fks"]):
            return None
        for f in e["fks"]:
            if f not in a["fks"] and not (len(f["columns"]) == 1 and f["columns"][0] in new):
                return None  # a new foreign key on existing columns: the diff rebuilds
        if not new:
            continue
        declared_table = declared["tables"][names[key]]
        declared_columns = {c.lower(): c for c in declared_table["columns"]}
        in_order = [c.lower() for c in parse_create_table(target.statement("create_table", names[key]))["columns"]]
        if sorted(in_order) != sorted(e["columns"]):
            return None
        for col in sorted(new, key=in_order.index):
            info = e["columns"][col]
            stmt = target.statement("add_column", names[key], declared_columns[col])
            # what diff.add_column_blocker could refuse (a primary key, a default, NOT NULL), and a fill or a
            # former name declared for it, is the diff's to judge: only a plain nullable column is added here
            if info["pk"] or info["notnull"] or info["default"] is not None or col in carried_columns.get(key, ()) \
                    or _GENERATED.search(stmt.split(" ADD COLUMN ", 1)[-1]):
                return None
            new_columns.append((key, declared_columns[col], stmt))
    index_names = {n.lower(): n for n in declared["indexes"]}
    index_order = [n.lower() for n, _queries in compiled["serves"]]
    if sorted(index_order) != sorted(expected["indexes"]):
        return None
    new_indexes = [index_names[k] for k in index_order if k not in live["indexes"]]

    def find_table(name):
        return lambda: target.schema.table(name)

    steps = [Step("create table '%s'" % names[key], TABLE_REASON, [target.statement("create_table", names[key])],
                  change=CreateTable(_Named(names[key], find_table(names[key])))) for key in new_tables]
    for key, column, stmt in new_columns:
        table = names[key]
        steps.append(Step("add column '%s'.'%s'" % (table, column), COLUMN_REASON, [stmt], table=table,
                          change=AddColumn(_Named(table, find_table(table)),
                                           _Named(column, lambda t=table, c=column: target.schema.table(t).column(c)))))
    for name in new_indexes:
        on = declared["indexes"][name]["table"]
        existing = live_names.get(on.lower())
        steps.append(Step("create index '%s' on '%s'" % (name, on), INDEX_REASON,
                          [target.statement("create_index", name)],
                          rows=_size_estimate(conn, existing) if existing is not None else 0, table=existing,
                          change=CreateIndex(_Named(name, lambda n=name: target.schema.index(n), table=on))))
    if not steps:
        return None
    steps += setting_steps(target, conn)
    touches = any(s.table is not None and s.table.lower() in live_names and _has_rows(conn, live_names[s.table.lower()])
                  for s in steps)
    return Plan(steps=steps, touches_rows=touches)
