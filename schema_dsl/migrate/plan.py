"""The planner: ordered statements, each with the change it serves and why.

`fresh_plan` runs the rendered DDL files on an empty database (no template
engine needed); `migration_plan` turns the diff of an existing database into
statements (those of declared objects rendered with the Target, the rest by
render.py), after checking the data for anything the migration would lose or
invent (UnsafeMigrationError, nothing changed).
"""
from __future__ import annotations

import sqlite3
from typing import Union

from attrs import field, frozen

from ..sqlite.dbfile import split_statements
from ..errors import UnsafeMigrationError
from ..sqlite.quote import quote_identifier


def _tuple(v):
    return tuple(v)


@frozen
class Step:
    title: str                 # what the step does, e.g. "rebuild table 'tasks'"
    why: str                   # the change it serves and why this way
    statements: tuple = field(converter=_tuple)
    # rows copied (rebuild) or filled: exact; rows indexed (index build): about, see _size_estimate
    rows: Union[int, None] = None
    table: Union[str, None] = None   # existing table it touches, if any
    change: object = None


@frozen
class Plan:
    steps: tuple = field(converter=_tuple)
    fresh: bool = False
    extras: tuple = field(default=(), converter=_tuple)
    touches_rows: bool = False       # changes a table that holds rows: back it up first
    # Child tables whose foreign_key_check is compared before and after: a
    # rebuilt or filled table, and every table that references a rebuilt one.
    # Added columns start NULL and created indexes change no value.
    fk_scope: tuple = field(default=(), converter=_tuple)

    @property
    def statements(self):
        return [s for step in self.steps for s in step.statements]

    @property
    def up_to_date(self):
        return not self.steps


def fresh_plan(target):
    """Run the rendered DDL files of target (a target.Target), in order, on an empty database."""
    steps = []
    for filename in (*target.table_files, target.index_file):
        steps.append(Step(title="run %s" % filename, why="the database is empty: create the declared schema",
                          statements=split_statements(target.files[filename])))
    return Plan(steps=steps, fresh=True)


def _count(conn, sql, params=()):
    return conn.execute(sql, params).fetchone()[0]


def _size_estimate(conn, table):
    """About how many rows an index build reads: max(rowid), one B-tree descent where count(*) reads
    the whole table (tens of ms at 1M rows). An upper bound when rows were deleted; the exact count
    for a WITHOUT ROWID table, which has no rowid."""
    try:
        top = _count(conn, "SELECT coalesce(max(rowid), 0) FROM %s" % quote_identifier(table))
    except sqlite3.OperationalError:
        top = None
    if isinstance(top, int):
        return top
    return _count(conn, "SELECT count(*) FROM %s" % quote_identifier(table))  # no rowid, or a column named so


def _has_rows(conn, table):
    return bool(_count(conn, "SELECT EXISTS (SELECT 1 FROM %s)" % quote_identifier(table)))


def check_data(conn, schema, live, changes):
    """Raise UnsafeMigrationError for a change that would lose or invent data."""
    from . import diff as d  # the diff and the model load only when there is something to migrate
    from ..model import type_affinity  # (a new or up-to-date file never needs them)
    problems = [ch.reason for ch in changes if isinstance(ch, d.VirtualTableChanged)]
    for ch in changes:
        if not isinstance(ch, d.RebuildTable):
            continue
        t = ch.table
        q = quote_identifier
        live_t = live.table(t.name)
        for new_name, source in ch.not_null_checks:
            nulls = _count(conn, "SELECT count(*) FROM %s WHERE %s IS NULL" % (q(live_t.name), q(source)))
            if nulls:
                problems.append("table '%s', column '%s': must become NOT NULL but %d rows hold NULL and no backfill "
                                "or default is declared" % (t.name, new_name, nulls))
        for col in t.columns:
            src = dict(ch.copy).get(col.name)
            live_c = live_t.column(col.name) if live_t.column(col.name) else None
            if live_c is None or src is None:
                continue
            if type_affinity(live_c.type) != type_affinity(col.type):
                values = _count(conn, "SELECT count(*) FROM %s WHERE %s IS NOT NULL" % (q(live_t.name), q(live_c.name)))
                if values:
                    problems.append("table '%s', column '%s': type %s -> %s changes affinity %s -> %s; %d stored values "
                                    "could be converted or lost" % (t.name, col.name, live_c.type or "(none)", col.type,
                                                                     type_affinity(live_c.type), type_affinity(col.type), values))
        for reason in ch.reasons:
            if reason.kind == "unique-new":
                cols = list(reason.columns)
                sources = [dict(ch.copy).get(c) for c in cols]
                if all(sources):
                    dupes = _count(conn, "SELECT count(*) FROM (SELECT 1 FROM %s GROUP BY %s HAVING count(*) > 1)" % (
                        q(live_t.name), ", ".join(sources)))
                    if dupes:
                        problems.append("table '%s': new UNIQUE (%s) but %d groups of existing rows share a value" % (
                            t.name, ", ".join(cols), dupes))
    if problems:
        raise UnsafeMigrationError("refusing to migrate, nothing was changed: " + "; ".join(problems))


def migration_plan(conn, target, live):
    """The plan that brings an existing database to the declaration of target.

    CREATE TABLE, CREATE INDEX and ADD COLUMN of declared objects come
    rendered with the target (target.statement); statements that depend on
    the live database (a rebuild's copy, a rename, a fill, a drop) are
    rendered here by render.py, which is imported only for them.
    """
    # The diff is needed only when there is something to change: a new or
    # up-to-date file never imports it.
    from . import diff as d

    schema = target.schema
    changes = d.diff(schema, live)
    check_data(conn, schema, live, changes)
    steps = []
    touches = False
    row_cache = {}

    def render():
        from ..compile import render as r  # Jinja2 only for statements that depend on the live file
        return r

    def rows(table):
        """The exact row count: shown in a rebuild's or a fill's title."""
        if table not in row_cache:
            row_cache[table] = _count(conn, "SELECT count(*) FROM %s" % quote_identifier(table))
        return row_cache[table]

    for ch in changes:
        if isinstance(ch, d.CreateTable):
            steps.append(Step("create table '%s'" % ch.table.name, ch.reason,
                              [target.statement("create_table", ch.table.name)], change=ch))
        elif isinstance(ch, d.RenameColumn):
            steps.append(Step("rename column '%s'.'%s' to '%s'" % (ch.table.name, ch.old, ch.new),
                              ch.reason + " (ALTER TABLE RENAME COLUMN keeps every row in place)",
                              [render().statement("rename_column", ch.table.name, ch.old, ch.new)],
                              table=ch.table.name, change=ch))
        elif isinstance(ch, d.AddColumn):
            steps.append(Step("add column '%s'.'%s'" % (ch.table.name, ch.column.name), ch.reason,
                              [target.statement("add_column", ch.table.name, ch.column.name)],
                              table=ch.table.name, change=ch))
        elif isinstance(ch, d.Backfill):
            steps.append(Step("fill column '%s'.'%s'" % (ch.table.name, ch.column), ch.reason + " with " + ch.expr,
                              [render().statement("fill_column", ch.table.name, ch.column, ch.expr)],
                              rows=rows(ch.table.name), table=ch.table.name, change=ch))
        elif isinstance(ch, d.RebuildTable):
            steps.append(_rebuild_step(conn, ch, live, rows(live.table(ch.table.name).name), render()))
        elif isinstance(ch, d.DropIndex):
            steps.append(Step("drop index '%s'" % ch.name, ch.reason, [render().statement("drop_index", ch.name)],
                              table=live.indexes[ch.name].table, change=ch))
        elif isinstance(ch, d.CreateIndex):
            existing = live.table(ch.index.table)
            steps.append(Step("create index '%s' on '%s'" % (ch.index.name, ch.index.table), ch.reason,
                              [target.statement("create_index", ch.index.name)],
                              rows=(row_cache[existing.name] if existing.name in row_cache
                                    else _size_estimate(conn, existing.name)) if existing is not None else 0,
                              table=existing.name if existing is not None else None, change=ch))
        elif isinstance(ch, d.CreateIndexVerbatim):
            steps.append(Step("recreate %s '%s'" % (ch.kind, ch.name), ch.reason, [ch.sql], change=ch))
        elif isinstance(ch, d.CreateVirtualTable):
            steps.append(Step("create virtual table '%s'" % ch.table.name, ch.reason,
                              [render().create_virtual_table_sql(ch.table, if_not_exists=False)], change=ch))
        elif isinstance(ch, d.CreateViewOrTrigger):
            steps.append(Step("create %s '%s'" % (ch.kind, ch.name), ch.reason, [render().verbatim_sql(ch.sql)], change=ch))
        elif isinstance(ch, d.DropViewOrTrigger):
            steps.append(Step("drop %s '%s'" % (ch.kind, ch.name), ch.reason,
                              [render().statement("drop_" + ch.kind, ch.name)], change=ch))
        else:  # pragma: no cover - the set of change kinds is closed
            raise TypeError("unknown change %r" % (ch,))
    for step in steps:
        if step.table is not None and live.table(step.table) is not None and _has_rows(conn, live.table(step.table).name):
            touches = True
            break
    return Plan(steps=steps, extras=d.extras(schema, live), touches_rows=touches,
                fk_scope=_fk_scope(schema, live, changes))


def _fk_scope(schema, live, changes):
    from . import diff as d  # see check_data
    rebuilt = {c.table.name.lower() for c in changes if isinstance(c, d.RebuildTable)}
    filled = {c.table.name.lower() for c in changes if isinstance(c, d.Backfill)}
    scope = []
    for t in schema.ordered_tables():
        refs = {f.ref_table.lower() for f in t.foreign_keys}
        lt = live.table(t.name)
        if lt is not None:
            refs |= {f.ref_table.lower() for f in lt.foreign_keys}
        if t.name.lower() in rebuilt | filled or refs & rebuilt:
            scope.append(t.name)
    for name, lt in live.tables.items():
        if schema.table(name) is None and {f.ref_table.lower() for f in lt.foreign_keys} & rebuilt:
            scope.append(name)
    return scope


def _rebuild_step(conn, ch, live, nrows, render):
    t = ch.table
    old = live.table(t.name).name
    tmp = "_schemagen_new_" + t.name
    n = 0
    while live.table(tmp) is not None:
        n += 1
        tmp = "_schemagen_new_%d_%s" % (n, t.name)
    columns = [c for c, _ in ch.copy]
    exprs = [e for _, e in ch.copy]
    statements = [
        render.create_table_sql(t, name=tmp, extra_columns=ch.extra_columns,
                                extra_constraints=ch.extra_constraints, if_not_exists=False),
        render.statement("copy_rows", tmp, old, columns, exprs, ch.keep_rowid),
        render.statement("drop_table", old),
        render.statement("rename_table", tmp, t.name),
    ]
    if ch.autoincrement_from and t.primary_key and t.primary_key.autoincrement:
        seq = conn.execute("SELECT max(seq) FROM sqlite_sequence WHERE name = ?", (old,)).fetchone()[0]
        if seq is not None:
            statements += [render.statement("ensure_sequence", t.name),
                           render.statement("keep_sequence", t.name, int(seq))]
    why = "rebuild (SQLite's 12-step procedure, foreign keys off, in the one transaction): " + ch.reason
    return Step("rebuild table '%s' (copies %d rows)" % (t.name, nrows), why, statements,
                rows=nrows, table=old, change=ch)
