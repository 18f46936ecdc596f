"""The planner: ordered statements, each with the change it serves and why.

`fresh_plan` runs the rendered DDL files on an empty database (no template
engine needed); `migration_plan` turns the diff of an existing database into
statements (those of declared objects rendered with the Target, the rest by
render.py), after checking the data for anything the migration would lose or
invent (UnsafeMigrationError, nothing changed).
"""
from __future__ import annotations

import re
import sqlite3


from ..sqlite import dbfile
from ..sqlite.dbfile import split_statements
from ..errors import SchemagenError, UnsafeMigrationError
from ..words import plural
from ..sqlite.quote import quote_identifier
from ..sqlite.structure import HEADER_PRAGMAS
from .steps import Plan, RunFile, Step


class SetPragma:
    """A declared persistent setting kept in the database header (user_version, application_id) that the file
    does not have; set inside apply's transaction, never on every connection. (A plain class: an attrs class
    costs about 1.5 ms of start-up, and this module is on the fresh-apply path.)"""

    __slots__ = ("name", "value", "found", "reason")

    def __init__(self, name, value, found, reason="declared persistent setting"):
        self.name, self.value, self.found, self.reason = name, value, found, reason

    def __repr__(self):
        return "SetPragma(%r, %r, found=%r)" % (self.name, self.value, self.found)


def setting_steps(target, conn=None):
    """Steps that set the declared header settings where the file differs (conn None: a new file, where they
    are 0), each with the statement pragmas.sql renders for it."""
    steps = []
    for name in HEADER_PRAGMAS:
        wanted = target.persistent_pragmas.get(name)
        found = str(conn.execute("PRAGMA %s" % name).fetchone()[0]) if conn is not None else "0"
        if wanted is None or wanted == found:
            continue
        rendered = [s for s in split_statements(target.files["pragmas.sql"]) if re.match(r"PRAGMA\s+%s\b" % name, s, re.I)]
        if not rendered:
            raise SchemagenError("pragmas.sql has no PRAGMA %s statement, which the declaration sets: run schemagen "
                                 "render" % name)
        ch = SetPragma(name, wanted, found)
        steps.append(Step("set %s to %s" % (name, wanted), "%s (the file has %s); kept in the file, set in the "
                          "transaction" % (ch.reason, found), [rendered[0][:rendered[0].index(";") + 1]], change=ch))
    return steps


def fresh_plan(target, conn=None):
    """Run the rendered DDL files of target (a target.Target), in order, on an empty database, then set its
    header settings (conn: the empty file's connection, None for a new file)."""
    steps = []
    for filename in (*target.table_files, target.index_file):
        ch = RunFile(filename)
        steps.append(Step(title="run %s" % filename, why=ch.reason, statements=split_statements(target.files[filename]),
                          change=ch))
    return Plan(steps=steps + setting_steps(target, conn), fresh=True)


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


def _unfillable(conn, t, live_t, ch):
    """What keeps a rebuild's copy from filling the declared table: a fill over columns the existing table lacks,
    a NOT NULL column without a source, default or fill while rows exist. One sentence, with what to do."""
    q = quote_identifier
    copy = dict(ch.copy)
    broken = []
    for column, expr in ch.copy:
        try:
            conn.execute("SELECT %s FROM %s LIMIT 0" % (expr, q(live_t.name))).fetchall()
        except sqlite3.Error as exc:
            text = str(exc)
            what = ("the existing table has no column '%s'" % text.split(":", 1)[1].strip()
                    if text.startswith("no such column:") else "it cannot be computed from the existing table (%s)" % text)
            broken.append("column '%s' is filled from %s, but %s" % (column, expr, what))
    pk = t.primary_key.columns if t.primary_key else ()
    rowid_alias = (len(pk) == 1 and not t.without_rowid and t.column(pk[0]) is not None
                   and t.column(pk[0]).type.upper() == "INTEGER")
    empty = [c.name for c in t.columns if c.name not in copy and c.not_null and c.default is None
             and not (rowid_alias and c.name.lower() == pk[0].lower())]
    rows = _count(conn, "SELECT count(*) FROM %s" % q(live_t.name)) if empty else 0
    if not broken and not (empty and rows):
        return []
    parts = list(broken)
    if empty and rows:
        parts.append("NOT NULL column%s %s would have no value in its %d existing row%s (the table has no such "
                     "column, and no default or backfill is declared)" % (
                         "s" if len(empty) > 1 else "", ", ".join("'%s'" % n for n in empty), rows,
                         "s" if rows != 1 else ""))
    live_names = [c.name for c in live_t.columns]
    declared = {c.name.lower() for c in t.columns} | {c.renamed_from.lower() for c in t.columns
                                                      if getattr(c, "renamed_from", None)}
    shared = [n for n in live_names if n.lower() in declared]
    hint = ("declare a default or a backfill over the existing columns for each, or renamed_from where the column "
            "exists under another name")
    if len(shared) * 2 < len(t.columns):
        hint = ("the existing '%s' (columns %s) shares only %s with the declaration: if it belongs to another "
                "application, use another database file or your own declaration (--schema); otherwise %s" % (
                    live_t.name, ", ".join(live_names), ", ".join(shared) or "no column", hint))
    return ["table '%s': the existing rows cannot be copied into the declared table: %s; %s" % (
        t.name, "; ".join(parts), hint)]


def check_renames(conn, schema, live):
    """Raise UnsafeMigrationError for a declared rename whose old and new names both exist in the file while the
    old one holds rows (a table) or non-NULL values (a column): see loss.rename_problems."""
    from . import loss  # see check_data
    problems = loss.rename_problems(lambda sql: _count(conn, sql), schema, live)
    if problems:
        raise UnsafeMigrationError("refusing to migrate, nothing was changed: " + "; ".join(problems))


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
        problems += _unfillable(conn, t, live_t, ch)
        problems += _introduced_orphans(conn, schema, live, t, live_t)
        for new_name, source in ch.not_null_checks:
            nulls = _count(conn, "SELECT count(*) FROM %s WHERE %s IS NULL" % (q(live_t.name), q(source)))
            if nulls:
                problems.append("table '%s', column '%s': must become NOT NULL but %d rows hold NULL and no backfill "
                                "or default is declared" % (t.name, new_name, nulls))
        problems += _conversion_problems(conn, t, live_t, ch)
        converted = {name.lower() for name, *_ in ch.conversions}
        for col in t.columns:
            src = dict(ch.copy).get(col.name)
            live_c = live_t.column(col.name) if live_t.column(col.name) else None
            if live_c is None or src is None or col.name.lower() in converted:
                continue
            if type_affinity(live_c.type) != type_affinity(col.type):
                values = _count(conn, "SELECT count(*) FROM %s WHERE %s IS NOT NULL" % (q(live_t.name), q(live_c.name)))
                if values:
                    problems.append("table '%s', column '%s': type %s -> %s changes affinity %s -> %s; %d stored values "
                                    "could be converted or lost: declare how they convert, e.g. using=%r%s" % (
                                        t.name, col.name, live_c.type or "(none)", col.type, type_affinity(live_c.type),
                                        type_affinity(col.type), values, _suggested_using(live_c.name, col.type),
                                        " (backfill= fills only NULLs of a new column or one becoming NOT NULL; it "
                                        "converts nothing)" if col.backfill else ""))
        for reason in ch.reasons:
            if reason.kind == "unique-new":
                cols = list(reason.columns)
                sources = [dict(ch.copy).get(c) for c in cols]
                if all(sources):
                    dupes = _count(conn, "SELECT count(*) FROM (SELECT 1 FROM %s GROUP BY %s HAVING count(*) > 1)" % (
                        q(live_t.name), ", ".join(sources)))
                    if dupes:
                        problems.append("table '%s': new UNIQUE (%s) but %s of existing rows %s a value" % (
                            t.name, ", ".join(cols), plural(dupes, "group"), "shares" if dupes == 1 else "share"))
    if problems:
        raise UnsafeMigrationError("refusing to migrate, nothing was changed: " + "; ".join(problems))


def _suggested_using(column, declared_type):
    """The using= a type change over stored values needs at the least. To a numeric type: SQLite's CAST where it
    gives back an equal value, else NULL (a plain CAST turns 'great' into 0 and clamps a huge number, silently;
    a NULL is counted as data loss by plan). To another type: SQLite's CAST."""
    from ..model import type_affinity  # see check_data
    cast = "CAST(%s AS %s)" % (quote_identifier(column), declared_type or "BLOB")
    if type_affinity(declared_type) in ("INTEGER", "REAL", "NUMERIC"):
        return "CASE WHEN %s = %s THEN %s END" % (cast, quote_identifier(column), cast)
    return cast


CONVERSION_ROWS_SHOWN = 5  # rowids a refused conversion names


def _conversion_problems(conn, t, live_t, ch):
    """A conversion (using=) that would leave NULL in a column declared NOT NULL, or break a CHECK of the declared
    table: refused before writing, naming the first rows."""
    q = quote_identifier
    out = []
    key = "rowid" if not live_t.without_rowid else ", ".join(q(c) for c in live_t.primary_key.columns)
    failing = set()
    for name, source, using, expr in ch.conversions:
        try:
            conn.execute("SELECT (%s) FROM %s WHERE 0" % (expr, q(live_t.name))).fetchall()
        except sqlite3.Error:  # not an expression over the table as it is (no row is to blame): _unfillable says so
            failing.add(name.lower())
            continue
        try:
            conn.execute("SELECT count(*) FROM %s WHERE (%s) IS NULL" % (q(live_t.name), expr)).fetchone()
        except sqlite3.Error as exc:  # an error on some stored value ("malformed JSON"): only then each row is tried
            failing.add(name.lower())
            found = _failing_rows(conn, q(live_t.name), key, expr)
            out.append("table '%s', column '%s': the conversion using=%s fails on existing rows (%s: %s %s%s); fix "
                       "those rows in a data step, or give a using= that handles them" % (
                           t.name, name, using, exc, key, ", ".join(found[:CONVERSION_ROWS_SHOWN]) or "?",
                           ", ..." if len(found) > CONVERSION_ROWS_SHOWN else ""))
    for name, source, using, expr in ch.conversions:
        col = t.column(name)
        if name.lower() in failing:
            continue
        if col.not_null:
            found = conn.execute("SELECT %s FROM %s WHERE (%s) IS NULL ORDER BY %s LIMIT %d" % (
                key, q(live_t.name), expr, key, CONVERSION_ROWS_SHOWN + 1)).fetchall()
            if found:
                n = _count(conn, "SELECT count(*) FROM %s WHERE (%s) IS NULL" % (q(live_t.name), expr))
                out.append("table '%s', column '%s': NOT NULL, but the conversion using=%s gives NULL in %d row%s "
                           "(%s %s%s); fix those rows in a data step, or give a using= that never gives NULL" % (
                               t.name, name, using, n, "" if n == 1 else "s", key,
                               ", ".join(str(r[0]) if len(r) == 1 else repr(tuple(r)) for r in found[:CONVERSION_ROWS_SHOWN]),
                               ", ..." if n > CONVERSION_ROWS_SHOWN else ""))
    if ch.conversions and not failing:
        row = ", ".join("%s AS %s" % (e, q(c)) for c, e in ch.copy)
        for check in t.checks:
            try:
                found = conn.execute("SELECT %s FROM (SELECT %s AS _schemagen_key, %s FROM %s) WHERE NOT (%s) "
                                     "LIMIT %d" % ("_schemagen_key", key if not live_t.without_rowid else "rowid", row,
                                                   q(live_t.name), check.expr, CONVERSION_ROWS_SHOWN)).fetchall()
            except sqlite3.Error:
                continue  # not over these columns alone: the copy itself checks it
            if found:
                out.append("table '%s': after the conversion (%s) rows break CHECK (%s) (%s %s); fix those rows in a "
                           "data step or change using=" % (
                               t.name, "; ".join("%s using=%s" % (n, u) for n, _, u, _ in ch.conversions), check.expr,
                               key, ", ".join(str(r[0]) for r in found)))
    return out


def _failing_rows(conn, table, key, expr):
    """The keys (as text) of the first rows on which expr raises (up to CONVERSION_ROWS_SHOWN + 1): one statement
    per row, run only after the whole-table statement failed."""
    found = []
    arity = key.count(",") + 1
    where = "(%s) = (%s)" % (key, ", ".join("?" * arity))
    for k in conn.execute("SELECT %s FROM %s ORDER BY %s" % (key, table, key)):
        try:
            conn.execute("SELECT (%s) FROM %s WHERE %s" % (expr, table, where), tuple(k)).fetchone()
        except sqlite3.Error:
            found.append(str(k[0]) if arity == 1 else repr(tuple(k)))
            if len(found) > CONVERSION_ROWS_SHOWN:
                break
    return found


REPAIR_ROWS_SHOWN = 50   # rows a repair step names in its why


def _fk_text(f):
    from .loss import fk_text  # see check_data
    return fk_text(f)


def _orphan_query(schema, live, live_t, f):
    """(fk columns, parent, parent columns) to ask live_t for the rows that break f, or None when that cannot be
    asked of the file: a column of f is new, or its parent table is (apply's foreign key check covers those)."""
    parent = live.table(f.ref_table)
    if parent is None or any(live_t.column(c) is None for c in f.columns):
        return None
    declared = schema.table(f.ref_table)
    to = list(f.ref_columns) or list(declared.primary_key.columns if declared is not None and declared.primary_key
                                      else ())
    if len(to) != len(f.columns) or any(parent.column(c) is None for c in to):
        return None
    return [live_t.column(c).name for c in f.columns], parent.name, [parent.column(c).name for c in to]


def orphans(conn, schema, live, live_t, f, limit):
    """(how many, the first `limit` as (key text, values)) of the rows of live_t that break foreign key f
    (all its columns non-NULL, no parent row); None when the file cannot be asked (see _orphan_query)."""
    query = _orphan_query(schema, live, live_t, f)
    if query is None:
        return None
    from ..compile import render as r  # see migration_plan
    columns, parent, to = query
    n = _count(conn, r.statement("count_orphan_rows", live_t.name, columns, parent, to))
    if not n:
        return 0, []
    keys = (["rowid"] if not live_t.without_rowid else
            ["%s.%s" % (quote_identifier(live_t.name), quote_identifier(c)) for c in live_t.primary_key.columns])
    label = "rowid" if not live_t.without_rowid else ", ".join(live_t.primary_key.columns)
    rows = conn.execute(r.statement("orphan_rows", live_t.name, keys, columns, parent, to, limit)).fetchall()
    shown = [("%s %s" % (label, ", ".join(repr(v) for v in row[:len(keys)])),
              ", ".join("%s = %r" % (c, v) for c, v in zip(columns, row[len(keys):]))) for row in rows]
    return n, shown


def _same_key(f, g):
    return ([c.lower() for c in f.columns], f.ref_table.lower()) == ([c.lower() for c in g.columns], g.ref_table.lower())


def _introduced_orphans(conn, schema, live, t, live_t):
    """A foreign key the rebuild adds (not one whose actions change: its orphans were already there and are kept)
    with existing rows that break it, and no repair declared: one refusal each, naming the first rows."""
    from .loss import ORPHANS_SHOWN, orphans_refused  # see check_data
    out = []
    for f in t.foreign_keys:
        if f.repair or any(_same_key(f, g) for g in live_t.foreign_keys):
            continue
        found = orphans(conn, schema, live, live_t, f, ORPHANS_SHOWN)
        if not found or not found[0]:
            continue
        out.append(orphans_refused(t.name, f.columns, f.ref_table, *found))
    return out


def _repair_step(conn, schema, live, ch, render):
    """The step that sets NULL (or deletes) exactly the rows that would break a new or changed foreign key, before
    its table is rebuilt, naming them; None when no row does."""
    live_t = live.table(ch.table.name)
    f = ch.foreign_key
    found = orphans(conn, schema, live, live_t, f, REPAIR_ROWS_SHOWN)
    if not found or not found[0]:
        return None
    n, shown = found
    columns, parent, to = _orphan_query(schema, live, live_t, f)
    kind = "repair_set_null" if f.repair == "set null" else "repair_delete"
    what = ("set %s NULL in" % ", ".join(f.columns) if f.repair == "set null" else "delete")
    rows = "; ".join("%s (%s)" % row for row in shown) + ("; ... (%d more)" % (n - len(shown)) if n > len(shown) else "")
    keys = ", ".join(k.split(" ", 1)[1] if k.startswith("rowid ") else k for k, _ in shown[:10])
    return Step("%s %s of '%s' (%s%s): no parent in '%s'" % (what, plural(n, "row"), live_t.name, 
                                                               "rowid " if not live_t.without_rowid else "", keys, f.ref_table)
                + (" ..." if n > 10 else ""),
                "%s (declared repair=%r on %s): the rows that would break it: %s" % (ch.reason, f.repair, _fk_text(f), rows),
                [render.statement(kind, live_t.name, columns, parent, to)], rows=n, table=live_t.name, change=ch)


def rename_steps(first):
    """The steps of the declared renames (diff.renames), in order, each naming the table it touches as the file has
    it before them (quick_check, backups); apply --online commits them first (online.py)."""
    from ..compile import render as r  # see migration_plan
    from . import diff as d  # see check_data
    steps = []
    for ch in first:
        old = ch.old if isinstance(ch, d.RenameTable) else None
        if old is not None:
            steps.append(Step("rename table '%s' to '%s'" % (old, ch.table.name),
                              ch.reason + " (ALTER TABLE RENAME TO keeps every row in place, and rewrites the views, "
                              "triggers, indexes and foreign keys that name it)",
                              [r.statement("rename_table", old, ch.table.name)], table=old, change=ch))
        else:
            steps.append(Step("rename column '%s'.'%s' to '%s'" % (ch.table.name, ch.old, ch.new),
                              ch.reason + " (ALTER TABLE RENAME COLUMN keeps every row in place, and rewrites the "
                              "views, triggers, indexes and foreign keys that name it)",
                              [r.statement("rename_column", ch.table.name, ch.old, ch.new)],
                              table=ch.table.name, change=ch))
    former = {ch.table.name.lower(): ch.old for ch in first if isinstance(ch, d.RenameTable)}
    return [s.replace(table=former.get(s.table.lower(), s.table)) if s.table else s for s in steps]


def _after_renames(conn, target, live, first, prune):
    """Renames first: run them on conn inside a savepoint, plan the rest against the renamed file, undo them, and
    return one plan (the rename steps, then the rest). A read-only connection plans on a copy of the file."""
    from .introspect import read_live  # the renamed file is read again
    steps = rename_steps(first)
    touches = any(_has_rows(conn, s.table) for s in steps)
    former = {ch.table.name.lower(): ch.old for ch in first if type(ch).__name__ == "RenameTable"}
    conn.execute("SAVEPOINT schemagen_renames")
    try:
        try:
            for s in steps:
                for stmt in s.statements:
                    conn.execute(stmt)
        except sqlite3.OperationalError as exc:
            if "readonly" not in str(exc).replace(" ", "").replace("-", ""):
                raise UnsafeMigrationError("refusing to migrate, nothing was changed: %s failed: %s (SQLite checks "
                                           "every view and trigger when it renames)" % (s.title, exc)) from None
            rest = None
        else:
            rest = migration_plan(conn, target, read_live(conn), prune)
    finally:
        conn.execute("ROLLBACK TO schemagen_renames")
        conn.execute("RELEASE schemagen_renames")
    if rest is None:
        rest = _plan_renamed_copy(conn, target, steps, prune)
    later = [s.replace(table=former.get(s.table.lower(), s.table)) if s.table else s for s in rest.steps]
    return rest.replace(steps=steps + later, touches_rows=rest.touches_rows or touches)


def _plan_renamed_copy(conn, target, steps, prune):
    """A read-only file (plan): copy it to a temporary file, rename there, and plan the rest on the copy."""
    from .introspect import read_live  # only a read-only plan with renames needs it
    with dbfile.scratch_copy(conn) as copy:
        for s in steps:
            for stmt in s.statements:
                copy.execute(stmt)
        return migration_plan(copy, target, read_live(copy), prune)


def migration_plan(conn, target, live, prune=None):
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
    check_renames(conn, schema, live)
    first = d.renames(schema, live)
    if first:  # renames run first, so that everything after them is planned against the renamed file
        return _after_renames(conn, target, live, first, prune)
    changes = d.diff(schema, live, prune)
    if any(isinstance(ch, d.RebuildTable) for ch in changes):
        from .dependents import unresolved_in_copy  # a rebuild's RENAME stops at what does not hold already
        fragile = {(kind, name.lower()): what for kind, name, what in unresolved_in_copy(conn) if kind != "schema"}
        if fragile:
            changes = d.diff(schema, live, prune, fragile)
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
        elif isinstance(ch, d.RepairForeignKey):
            step = _repair_step(conn, schema, live, ch, render())
            if step is not None:
                steps.append(step)
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
        elif isinstance(ch, d.Remove):
            n = rows(ch.name) if ch.kind == "table" and live.table(ch.name) is not None else None
            steps.append(Step("drop %s '%s'%s" % (ch.kind, ch.name, " (%s)" % plural(n, "row") if n is not None else ""),
                              ch.reason + ("; weakens: " + ch.weakens if ch.weakens else ""),
                              [render().statement("drop_" + ch.kind, ch.name)], rows=n,
                              table=ch.name if ch.kind == "table" else None, change=ch))
        else:  # pragma: no cover - the set of change kinds is closed
            raise TypeError("unknown change %r" % (ch,))
    steps += setting_steps(target, conn)
    for step in steps:
        if step.table is not None and live.table(step.table) is not None and _has_rows(conn, live.table(step.table).name):
            touches = True
            break
    loss = data_loss(conn, live, changes, rows)
    from .loss import repair_loss  # see check_data
    loss += [x for x in (repair_loss(s.table, s.change, s.rows) for s in steps
                         if isinstance(s.change, d.RepairForeignKey)) if x is not None]
    return Plan(steps=steps, extras=d.extras(schema, live, prune), touches_rows=touches or bool(loss),
                fk_scope=_fk_scope(schema, live, changes), data_loss=loss)


def data_loss(conn, live, changes, rows):
    """What the changes give up, counted now (loss.data_loss: the one count both dialects use)."""
    from . import loss  # see check_data
    return loss.data_loss(lambda sql: _count(conn, sql), live, changes, rows)


def _fk_scope(schema, live, changes):
    from . import diff as d  # see check_data
    dropped = {c.name.lower() for c in changes if isinstance(c, d.Remove) and c.kind == "table"}
    # a child of a dropped table is checked like a child of a rebuilt one: its rows may lose their parent
    rebuilt = {c.table.name.lower() for c in changes if isinstance(c, d.RebuildTable)} | dropped
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
        if schema.table(name) is None and name.lower() not in dropped and \
                {f.ref_table.lower() for f in lt.foreign_keys} & rebuilt:
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
    create = render.create_table_sql(t, name=tmp, extra_columns=ch.extra_columns,
                                     extra_constraints=ch.extra_constraints, if_not_exists=False)
    statements = [
        create,
        # a conflict clause (REPLACE, IGNORE) must never drop or replace a copied row: OR ABORT overrides it
        render.statement("copy_rows", tmp, old, columns, exprs, ch.keep_rowid, or_abort="ON CONFLICT" in create.upper()),
        render.statement("drop_table", old),
        render.statement("rename_table", tmp, t.name),
    ]
    if ch.autoincrement_from and t.primary_key and t.primary_key.autoincrement:
        seq = conn.execute("SELECT max(seq) FROM sqlite_sequence WHERE name = ?", (old,)).fetchone()[0]
        if seq is not None:
            statements += [render.statement("ensure_sequence", t.name),
                           render.statement("keep_sequence", t.name, int(seq))]
    why = "rebuild (SQLite's 12-step procedure, foreign keys off, in the one transaction): " + ch.reason
    return Step("rebuild table '%s' (copies %s)" % (t.name, plural(nrows, "row")), why, statements,
                rows=nrows, table=old, change=ch)


# --- plan's text -------------------------------------------------------------------------

def format_plan(plan):
    """plan's text: the steps, each with why and its statements, what it loses or weakens, and what is kept (with
    the exact ways to drop it)."""
    if plan.up_to_date:
        lines = ["up to date: nothing to do" + (" (%s the declaration does not have %s kept: see below)" % (
            plural(len(plan.extras), "object"), "is" if len(plan.extras) == 1 else "are") if plan.extras else "")]
    else:
        lines = ["%s, %s, in one transaction%s:" % (
            plural(len(plan.steps), "step"), plural(len(plan.statements), "statement"),
            "; a backup is made first" if plan.touches_rows else "")]
        for n, s in enumerate(plan.steps, start=1):
            lines.append("  %d. %s" % (n, s.title))
            reasons = getattr(s.change, "reasons", None)
            if reasons:  # a rebuild: every reason, and the renames and new columns it carries
                lines += ["       - %s" % r.text for r in reasons]
        lines += ["", "Each step, why, and its statements:"]
        for n, s in enumerate(plan.steps, start=1):
            lines.append("")
            lines.append("%d. %s" % (n, s.title))
            lines.append("   why: %s" % s.why)
            for stmt in s.statements:
                lines += ["   " + line for line in stmt.splitlines()]
    if plan.data_loss:
        lines.append("")
        lines.append("loses data (apply makes a backup first and asks; --yes accepts):")
        lines += ["  - %s" % d["text"] for d in plan.data_loss]
    weakens = [(s.change.kind, s.change.name, s.change.weakens) for s in plan.steps
               if getattr(s.change, "weakens", None)]
    if weakens:
        lines.append("")
        lines.append("weakens, although no row goes:")
        lines += ["  - %s '%s': %s" % w for w in weakens]
    if plan.extras:
        lines.append("")
        lines.append("not in the declaration, kept (apply drops only what the declaration removes or --prune names):")
        for e in plan.extras:
            lines.append("  - %s" % e)
            lines.append("      to drop it: %s" % removal_advice(e))
    return "\n".join(lines)


_KEPT = (r"(?P<kind>virtual table|table|index|view|trigger) '(?P<name>(?:[^']|'')*)'"
         r"(?:: column '(?P<column>(?:[^']|'')*)')?")


def removal_advice(kept):
    """The exact ways to drop one kept object (a line of plan.extras): the declaration's removed(...), or --prune
    (with --allow-data-loss for what holds data: a table, a column)."""
    match = re.match(_KEPT, kept)
    if match is None:
        return "declare it removed with removed(...), or apply --prune"
    kind, name, column = match.group("kind"), match.group("name"), match.group("column")
    q = lambda text: '"%s"' % text.replace("''", "'").replace("\\", "\\\\").replace('"', '\\"')
    if column is not None:
        return "removed(\"column\", %s, \"why\", table=%s), or apply --prune --allow-data-loss (its values go; a " \
               "backup is made first)" % (q(column), q(name))
    if kind in ("table", "virtual table"):
        return "removed(\"table\", %s, \"why\"), or apply --prune --allow-data-loss (its rows go; a backup is made " \
               "first)" % q(name)
    return "removed(%s, %s, \"why\"), or apply --prune (no data goes)" % (q(kind), q(name))
