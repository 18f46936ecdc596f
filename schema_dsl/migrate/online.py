"""Online apply on SQLite: rebuild tables while the application keeps reading and writing.

A table the plan rebuilds (a CHECK, NOT NULL, a foreign key, a column removal) is not copied inside one long
transaction. Instead:

1. setup (one short transaction): the shadow table `_schemagen_new_<table>` (the declared CREATE TABLE),
   its indexes under temporary names `_schemagen_ix_<n>` (built empty, so that they grow with the copy and
   no CREATE INDEX ever scans a full table under the write lock), the side table `_schemagen_online_rejects`
   and three sync triggers `_schemagen_sync_{ins,upd,del}_<table>` on the old table. The triggers copy
   each written row by rowid with INSERT OR IGNORE and a guard on the declared foreign keys, so a write the
   new constraints would reject is never refused by them: the row is recorded in the side table instead,
   and the old table stays authoritative.
2. copy: batches of rows by rowid, each its own short write transaction sized by time (BATCH_SECONDS),
   with a passive WAL checkpoint between batches.
3. verify: in batches, every row of the old table must be in the shadow (a missing row is one the new
   constraints or foreign keys reject); a missing row stops the apply before the swap, naming the row, with
   the shadow objects removed (OnlineRefused, exit 2).
4. swap (one short transaction, foreign keys off, legacy_alter_table on so that the children's REFERENCES
   keep pointing at the table's name): the rows the triggers recorded and the two row counts are compared,
   the old table is dropped, the shadow renamed, the temporary index names set to the declared ones
   through writable_schema (SQLite has no ALTER INDEX; the schema version is bumped in the same
   transaction), sqlite_sequence carried over as the larger value, and the plan's other steps (the views
   and triggers that lived on the table, the user's too, dropped and recreated) run in plan order.

The declared renames (when no data step is pending) are committed first, together in one short transaction,
before the rest is planned (read-only) against the renamed file. Other steps of the plan that are not rebuilds run
before the copy each in its own transaction (create table, add column, fill, a new index on a table that is
not rebuilt: that one holds the write lock while it indexes the table, and plan --online says how long it
expects) or inside the swap (drops, views, triggers, settings). A WITHOUT ROWID table is copied, kept in step
and compared by its primary key instead of the rowid (batches are primary-key ranges, compared as row values in
the key's own collations); one that would change its primary key columns or stop (or start) being WITHOUT ROWID
is refused, as is a rowid table whose new rowid would differ from the old one. A new index on a table of
INDEX_COPY_ROWS rows or more that is not rebuilt is not built by one CREATE INDEX under the write lock: the table
is copied unchanged the same way into a shadow that has it.

Killed at any point, the database holds either the old table with its shadow objects (the application keeps
working: the triggers never fail a write) or the finished result; drop_leftovers() removes the former and
every apply calls it first.
"""
from __future__ import annotations

import contextlib
import contextvars
import os
import random
import re
import sqlite3
import time

from ..errors import ApplyError, ChangedThenFailed, SchemagenError, UnsafeMigrationError
from ..sqlite import dbfile
from ..sqlite.leftovers import drop_leftovers, leftovers  # noqa: F401 (leftovers: read through this module too)
from ..sqlite.quote import quote_identifier as q, unquote_identifier
from ..sqlite.structure import HISTORY_TABLE
from .apply import (DEFAULT_KEEP, ApplyResult, _finish_connection, _guard_data_loss, _refuse_damaged, _verify_structure,
                    apply, check_backup_dir, check_keep, open_for_apply, plan_database, plan_for)
from .steps import online_facts
from .backup import discard, make_backup, prune as prune_backups
from .dependents import broken_dependents, check_dependents
from ..compile.target import target_for

# a copy, verify or free batch aims at this much lock time. In WAL mode 10 ms: on a loaded machine a batch is
# descheduled while it holds the lock (measured at 1M rows, 2 cores shared: batches of 7-14 ms of CPU held the lock
# 80-140 ms, most of it waiting for a CPU); a process woken from its free window gets about half a scheduler
# period before others preempt it, so a batch of that little work mostly finishes first. In rollback-journal mode
# each COMMIT's two fsyncs cost the same however small the batch, and readers are locked out for each: 20 ms.
BATCH_SECONDS = 0.010
BATCH_SECONDS_ROLLBACK = 0.020
# after each write batch the lock is left free this long: an application writer waiting in SQLite's busy handler
# sleeps 1, 2, 5, 10, 15, 20, 25 ... ms between its tries, so a free window longer than those steps lets it in
# before the next batch (without one, back-to-back batches could keep it waiting past 100 ms)
PAUSE_SECONDS = 0.030
# ... and drawn at random around it: a waiter whose busy handler has reached its 100 ms step retries every 100 ms,
# and with a fixed cycle of batch plus window (about 50 ms) each retry can fall on a batch again, phase-locked:
# measured in rollback-journal mode at 1M rows, a reader waited 2.3 s behind batches that each held the lock 15-30 ms
PAUSE_JITTER = (0.5, 1.8)
# ... but never shorter than this: until it has waited 103 ms, a waiter in SQLite's busy handler retries at most 25 ms
# apart (1, 2, 5, 10, 15, 20, 25, 25, 25 ms), so one of its tries falls in any longer window and it gets in right after
# the batch it met. Measured before (a window of 15-54 ms, WAL, 1M tasks): a writer waited 107 ms while no batch held
# the lock over 62 ms, its tries stepping over short windows.
PAUSE_MIN = 0.026
# in rollback-journal mode a reader is locked out by every commit (journal, fsync: most of a batch) and by every
# commit of the application's writer too: a longer window leaves readers more of the time (measured at 1M rows
# with a 30 ms window: 365 of 13983 reads waited over 100 ms, the longest 1.6 s)
PAUSE_SECONDS_ROLLBACK = 0.080
_RANDOM = random.Random()
FIRST_BATCH = 500
MAX_BATCH = 200000
# a batch is at most this much larger than the one before: the time a row takes varies (pages in the cache or not,
# the disk), and a batch sized on a fast one must not overshoot the target by much
GROWTH = 1.25
SHADOW = "_schemagen_new_"
OLD = "_schemagen_old_"  # the old table after the swap, emptied in batches, then dropped
INDEX = "_schemagen_ix_"
SYNC = "_schemagen_sync_"
REJECTS = "_schemagen_online_rejects"
ROWS_PER_SECOND = 400000  # for plan --online's estimates: rows an index build or a count handles per second
# a new index on a table of at least this many rows (an index build of about 50 ms and more) is not built by one
# CREATE INDEX under the write lock: the table is copied in batches into a shadow that has the index
INDEX_COPY_ROWS = 20000
CACHE_KIB = 65536  # the apply connection's page cache (KiB) at least


class OnlineRefused(SchemagenError):
    """The online apply stopped before its swap: nothing of the declaration's changes was made."""


# --- the plan, split into what runs where ------------------------------------------------------------------

def _kind(step):
    return type(step.change).__name__


BEFORE = ("RenameTable", "RenameColumn", "CreateTable", "CreateVirtualTable", "AddColumn", "Backfill")


def _index_head(sql):
    """(name, table) spans of a CREATE [UNIQUE] INDEX [IF NOT EXISTS] name ON table statement."""
    ident = r'(?:"(?:[^"]|"")*"|`[^`]*`|\[[^\]]*\]|[^\s(]+)'
    m = re.match(r'\s*CREATE\s+(?:UNIQUE\s+)?INDEX\s+(?:IF\s+NOT\s+EXISTS\s+)?(%s)\s+ON\s+(%s)' % (ident, ident),
                 sql, re.I | re.S)
    if m is None:
        raise ApplyError("online apply: cannot read the index statement %r" % sql[:200])
    return m


class TablePlan:
    """One rebuilt table of an online apply: old and declared names, the shadow, its copy and its indexes."""

    same = False  # True: copied unchanged, only to build a new index or to drop one (for_index)
    triggers_sql = ()  # for_index: the table's own triggers, recreated on the new table at the swap

    def __init__(self, conn, step, number):
        ch = step.change
        self.step, self.old, self.name = step, step.table, ch.table.name
        self.rows = step.rows or 0
        self.shadow = SHADOW + ch.table.name
        head = re.match(r'((?:\s*--[^\n]*\n)*\s*CREATE\s+TABLE\s+)("(?:[^"]|"")*"|\S+)', step.statements[0], re.I)
        if head is None:  # the rendered rebuild starts with its CREATE TABLE (after comments)
            raise ApplyError("online apply: unexpected rebuild statement for table '%s'" % self.name)
        self.create = head.group(1) + q(self.shadow) + step.statements[0][head.end(2):]
        self.columns = [c for c, _ in ch.copy]
        self.exprs = [e for _, e in ch.copy]
        pk = ch.table.primary_key
        old_sql = conn.execute("SELECT sql FROM sqlite_master WHERE type = 'table' AND name = ?", (self.old,)).fetchone()
        old_without = _without_rowid(old_sql[0] if old_sql else "")
        if ch.table.without_rowid or old_without:
            self._by_primary_key(conn, ch, old_without)
        else:
            self._by_rowid(conn, ch)
        self.fks = [(f.columns, f.ref_table, f.ref_columns or _primary_key(conn, f.ref_table))
                    for f in ch.table.foreign_keys]
        self.seq = bool(pk is not None and pk.autoincrement)
        self.indexes = []  # (declared name, temporary name, CREATE INDEX on the shadow)
        self.number = number
        self.top = None  # the largest key (a tuple) when the sync triggers were created

    def _by_primary_key(self, conn, ch, old_without):
        """A WITHOUT ROWID table: rows are copied, synced and compared by its primary key, which must be the same
        columns before and after (the copy carries each of them over unchanged)."""
        old_pk = list(_primary_key(conn, self.old))
        new_pk = list(ch.table.primary_key.columns) if ch.table.primary_key is not None else []
        copy = dict((c.lower(), e) for c, e in ch.copy)
        if not (ch.table.without_rowid and old_without) or len(old_pk) != len(new_pk) or any(
                unquote_identifier(copy.get(n.lower(), "")).lower() != o.lower() for n, o in zip(new_pk, old_pk)):
            raise OnlineRefused("table '%s': --online copies a WITHOUT ROWID table by its primary key, which must stay "
                                "WITHOUT ROWID with the same primary key columns (%s before, %s declared, %s); run "
                                "apply without --online" % (
                                    self.name, ", ".join(old_pk) or "rowid", ", ".join(new_pk) or "rowid",
                                    "WITHOUT ROWID" if ch.table.without_rowid else "a rowid table"))
        self.key_old, self.key_new = old_pk, new_pk
        self.insert_columns, self.select = self.columns, self.exprs

    def _by_rowid(self, conn, ch):
        pk = ch.table.primary_key
        self.key_old = self.key_new = ["rowid"]
        ipk = None
        if pk is not None and len(pk.columns) == 1:
            col = next(c for c in ch.table.columns if c.name == pk.columns[0])
            if col.type.upper() == "INTEGER":
                ipk = col.name
        old_ipk = _rowid_alias(conn, self.old)
        if ipk is not None:
            expr = dict(ch.copy).get(ipk)
            if old_ipk is None or expr is None or unquote_identifier(expr).lower() != old_ipk.lower():
                raise OnlineRefused("table '%s': its INTEGER PRIMARY KEY '%s' would not keep the old rowids, which "
                                    "the online copy goes by; run apply without --online" % (self.name, ipk))
            self.insert_columns, self.select = self.columns, self.exprs
        else:
            self.insert_columns, self.select = ["rowid"] + self.columns, ["rowid"] + self.exprs

    @classmethod
    def for_index(cls, conn, step, number, table, rows):
        """The table of a new index (step) copied unchanged into a shadow that has the index, so that no CREATE
        INDEX reads the whole table under the write lock, or of a dropped index into one without it, so that no
        DROP INDEX walks it; None when the table cannot be (WITHOUT ROWID, generated columns): the index is then
        built, or dropped, in one transaction. rows: about how many rows the table has."""
        row = conn.execute("SELECT sql FROM sqlite_master WHERE type = 'table' AND name = ?", (table,)).fetchone()
        head = re.match(r'(\s*CREATE\s+TABLE\s+(?:IF\s+NOT\s+EXISTS\s+)?)("(?:[^"]|"")*"|`[^`]*`|\[[^\]]*\]|[^\s(]+)',
                        row[0] if row else "", re.I)
        info = conn.execute("SELECT name, hidden FROM pragma_table_xinfo(?)", (table,)).fetchall()
        if head is None or any(hidden for _, hidden in info):
            return None
        tp = cls.__new__(cls)
        tp.step, tp.old, tp.name, tp.shadow, tp.number, tp.top = step, table, table, SHADOW + table, number, None
        tp.same, tp.original_sql, tp.rows = True, row[0], rows
        tp.create = head.group(1) + q(tp.shadow) + row[0][head.end(2):]
        tp.columns = [name for name, _ in info]
        tp.exprs = [q(c) for c in tp.columns]
        tp.key_old = tp.key_new = ["rowid"]
        if _without_rowid(row[0]):
            tp.key_old = tp.key_new = list(_primary_key(conn, table))
            tp.insert_columns, tp.select = tp.columns, tp.exprs
        elif _rowid_alias(conn, table) is not None:
            tp.insert_columns, tp.select = tp.columns, tp.exprs
        else:
            tp.insert_columns, tp.select = ["rowid"] + tp.columns, ["rowid"] + tp.exprs
        # the table's own foreign keys guard the shadow as a rebuild's do: a row whose key is broken is recorded,
        # never a reason for the application's write to fail in the sync trigger
        tp.fks = [(tuple(c for _, c, _ in g), g[0][0], tuple(r for _, _, r in g)) for g in _fk_groups(conn, table)]
        tp.seq = "AUTOINCREMENT" in row[0].upper()
        tp.indexes = []
        tp.triggers_sql = [r[0] for r in conn.execute(
            "SELECT sql FROM sqlite_master WHERE type = 'trigger' AND tbl_name = ? AND sql IS NOT NULL ORDER BY rowid",
            (table,))]
        return tp

    def add_index(self, name, sql):
        m = _index_head(sql)
        tmp = "%s%d_%d" % (INDEX, self.number, len(self.indexes))
        text = sql[:m.start(1)] + q(tmp) + sql[m.end(1):m.start(2)] + q(self.shadow) + sql[m.end(2):]
        # the text sqlite_master keeps after the swap: what a plain apply leaves (SQLite drops IF NOT EXISTS)
        final = re.sub(r"\s+IF\s+NOT\s+EXISTS\b", "", sql[:m.start(1)], flags=re.I) + sql[m.start(1):]
        self.indexes.append((name, tmp, text.rstrip().rstrip(";"), final.rstrip().rstrip(";").rstrip()))

    def fk_guard(self, value):
        """SQL true when the declared foreign keys hold for a row whose column c has the SQL value(c)."""
        guard = []
        for columns, parent, refs in self.fks:
            vals = [value(c) for c in columns]
            guard.append("(%s OR EXISTS (SELECT 1 FROM %s AS p WHERE %s))" % (
                " OR ".join("%s IS NULL" % v for v in vals), q(parent),
                " AND ".join("p.%s = %s" % (q(r), v) for r, v in zip(refs, vals))))
        return " AND ".join(guard)

    def new_row(self, where):
        """SELECT rowid and the declared columns of the old table's rows matching where, as subquery n, keeping
        only those whose declared foreign keys hold."""
        cols = ", ".join("%s AS %s" % (e, q("c%d" % i)) for i, e in enumerate(self.select))
        # a column the copy does not fill (a new one) takes its default: NULL for the columns a new foreign key
        # is usually on, which the key does not check
        guard = self.fk_guard(lambda c: "n.%s" % q("c%d" % self.insert_columns.index(c)) if c in self.insert_columns
                              else "NULL")
        return "SELECT * FROM (SELECT %s FROM %s WHERE %s) AS n%s" % (
            cols, q(self.old), where, (" WHERE " + guard) if guard else "")

    def copy_sql(self, where, or_ignore=True):
        return "INSERT %sINTO %s (%s) %s" % ("OR IGNORE " if or_ignore else "", q(self.shadow),
                                             ", ".join(q(c) for c in self.insert_columns), self.new_row(where))

    @property
    def by_rowid(self):
        return self.key_old == ["rowid"]

    def key(self, alias=None, new=False):
        """The key's columns as SQL, comma-separated (rowid, or the primary key of a WITHOUT ROWID table)."""
        prefix = alias + "." if alias else ""
        return ", ".join(prefix + _col(k) for k in (self.key_new if new else self.key_old))

    def key_is(self, alias, values, new=False):
        """SQL: the key of alias (old table, or the shadow when new) equals values (SQL expressions)."""
        prefix = alias + "." if alias else ""
        return " AND ".join("%s%s = %s" % (prefix, _col(k), v) for k, v in zip(self.key_new if new else self.key_old,
                                                                                 values))

    def key_range(self, alias, lo, hi, new=False):
        """(SQL, parameters): the key of alias in (lo, hi] (tuples; None: unbounded on that side)."""
        cols = "(%s)" % self.key(alias, new)
        marks = "(%s)" % ", ".join("?" * len(self.key_old))
        parts, params = [], []
        if lo is not None:
            parts.append("%s > %s" % (cols, marks))
            params += list(lo)
        if hi is not None:
            parts.append("%s <= %s" % (cols, marks))
            params += list(hi)
        return " AND ".join(parts) or "1", params

    def triggers(self):
        name = lambda op: q("%s%s_%s" % (SYNC, op, self.name))
        new_key = ["NEW.%s" % _col(k) for k in self.key_old]
        old_key = ["OLD.%s" % _col(k) for k in self.key_old]
        # a WITHOUT ROWID row is recorded as "some row of the table": the swap then compares the whole key range
        upsert = ("DELETE FROM {s} WHERE {shadow_new}; {copy}; INSERT OR IGNORE INTO {r} (tbl, row_id) "
                  "SELECT {t}, {row_id} WHERE NOT EXISTS (SELECT 1 FROM {s} WHERE {shadow_new});").format(
            s=q(self.shadow), copy=self.copy_sql(self.key_is(None, new_key)), r=q(REJECTS), t=_lit(self.name),
            shadow_new=self.key_is(None, new_key, new=True), row_id="NEW.rowid" if self.by_rowid else "0")
        return [
            "CREATE TRIGGER %s AFTER INSERT ON %s BEGIN %s END" % (name("ins"), q(self.old), upsert),
            "CREATE TRIGGER %s AFTER UPDATE ON %s BEGIN DELETE FROM %s WHERE %s; %s END" % (
                name("upd"), q(self.old), q(self.shadow), self.key_is(None, old_key, new=True), upsert),
            "CREATE TRIGGER %s AFTER DELETE ON %s BEGIN DELETE FROM %s WHERE %s; END" % (
                name("del"), q(self.old), q(self.shadow), self.key_is(None, old_key, new=True)),
        ]


def _col(name):
    return name if name == "rowid" else q(name)


def _lit(text):
    return "'" + text.replace("'", "''") + "'"


def _rowid_alias(conn, table):
    rows = conn.execute("SELECT name, type, pk FROM pragma_table_info(?)", (table,)).fetchall()
    pk = [r for r in rows if r[2]]
    sql = conn.execute("SELECT sql FROM sqlite_master WHERE type = 'table' AND name = ?", (table,)).fetchone()
    if len(pk) == 1 and pk[0][1].upper() == "INTEGER" and sql and "WITHOUT" not in sql[0].upper().split(")")[-1]:
        return pk[0][0]
    return None


def _without_rowid(sql):
    return "WITHOUT" in sql.upper().split(")")[-1]


def _fk_groups(conn, table):
    """The table's foreign keys: [[(parent, column, parent column), ...] per key], by id and seq."""
    groups = {}
    for r in conn.execute("SELECT id, seq, \"table\", \"from\", \"to\" FROM pragma_foreign_key_list(?) ORDER BY id, seq",
                          (table,)):
        groups.setdefault(r[0], []).append((r[2], r[3], r[4] or _primary_key(conn, r[2])[r[1]]))
    return list(groups.values())


def _primary_key(conn, table):
    return tuple(r[0] for r in sorted(conn.execute("SELECT name, pk FROM pragma_table_info(?) WHERE pk > 0",
                                                   (table,)).fetchall(), key=lambda r: r[1]))


def _row_estimate(conn, table):
    """About how many rows table has: max(rowid), one B-tree descent (count(*) reads the whole table); the count of a
    WITHOUT ROWID table."""
    try:
        top = conn.execute("SELECT coalesce(max(rowid), 0) FROM %s" % q(table)).fetchone()[0]
    except sqlite3.OperationalError:
        top = None
    if isinstance(top, int):
        return top
    return conn.execute("SELECT count(*) FROM %s" % q(table)).fetchone()[0]


def _dropped_index(step):
    """The name of the index a step drops (a DropIndex, or a declared removal of an index), else None."""
    kind = _kind(step)
    if kind == "DropIndex" or (kind == "Remove" and step.change.kind == "index"):
        return step.change.name
    return None


class OnlinePlan:
    """The plan split for an online apply: before (own transactions), tables (rebuilt online), swap (the
    steps run inside the swap transaction, in plan order), after (index drops, each its own transaction after
    the swap), plus the plan itself."""

    def __init__(self, conn, plan):
        self.plan = plan
        self.before, self.data, self.swap, self.tables, self.after = [], [], [], [], []
        dropped = {_dropped_index(s).lower() for s in plan.steps if _dropped_index(s)}
        rebuilt = {}
        for step in plan.steps:
            if _kind(step) == "RebuildTable":
                tp = TablePlan(conn, step, len(self.tables))
                self.tables.append(tp)
                rebuilt[tp.name.lower()] = tp
                rebuilt[tp.old.lower()] = tp
        index_table = dict((n.lower(), t) for n, t in conn.execute(
            "SELECT name, tbl_name FROM sqlite_master WHERE type = 'index'"))
        removed = {s.change.name.lower() for s in plan.steps if _kind(s) == "Remove" and s.change.kind == "table"}
        for step in plan.steps:
            # a new index on a big table that is not rebuilt: the table copied with it; an index dropped from one (a
            # DROP INDEX walks every page of the index under the write lock: 90-180 ms at 1M rows, measured): the
            # table copied without it, the old table and its index then emptied in batches
            table = step.table if _kind(step) == "CreateIndex" else index_table.get((_dropped_index(step) or "").lower())
            if not table or table.lower() in rebuilt or table.lower() in removed:
                continue
            if _kind(step) == "CreateIndex":
                rows = step.rows or 0
            elif _dropped_index(step):
                rows = _row_estimate(conn, table)
            else:
                continue
            if rows >= INDEX_COPY_ROWS:
                tp = TablePlan.for_index(conn, step, len(self.tables), table, rows)
                if tp is not None:
                    for name, sql in conn.execute("SELECT name, sql FROM sqlite_master WHERE type = 'index' AND "
                                                  "tbl_name = ? AND sql IS NOT NULL ORDER BY rowid", (tp.old,)):
                        if name.lower() not in dropped:  # the table's indexes the plan keeps
                            tp.add_index(name, sql)
                    self.tables.append(tp)
                    rebuilt[tp.name.lower()] = tp
        user_index_table = dict((n.lower(), t.lower()) for n, t in conn.execute(
            "SELECT name, tbl_name FROM sqlite_master WHERE type = 'index' AND sql IS NOT NULL"))
        # an index the plan drops and creates again under its name (a changed WHERE or columns) on a table that is
        # not rebuilt: the drop runs before the new one is built, in its own transaction, not in the swap
        recreated = {step.change.index.name.lower() for step in plan.steps if _kind(step) == "CreateIndex"
                     and step.change.index.table.lower() not in rebuilt}
        created = {name.lower() for tp in self.tables for name, *_ in tp.indexes} | {
            step.change.index.name.lower() for step in plan.steps if _kind(step) == "CreateIndex"}
        for step in plan.steps:
            kind = _kind(step)
            drops = (_dropped_index(step) or "").lower()
            if kind == "RebuildTable":
                self.swap.append(step)
            elif kind == "CreateIndex" and step.change.index.table.lower() in rebuilt:
                for stmt in step.statements:
                    rebuilt[step.change.index.table.lower()].add_index(step.change.index.name, stmt)
            elif kind == "CreateIndexVerbatim" and step.change.kind == "index" and \
                    user_index_table.get(step.change.name.lower()) in rebuilt:
                rebuilt[user_index_table[step.change.name.lower()]].add_index(step.change.name, step.change.sql)
            elif drops and user_index_table.get(drops) in rebuilt:
                continue  # goes with the old table, emptied in batches
            elif drops and drops in recreated:
                self.before.append(step)
            elif drops and drops not in created:  # contract last, each in its own transaction, not in the swap
                self.after.append(step)
            elif kind in BEFORE or kind == "CreateIndex":
                self.before.append(step)
            elif kind == "RunDataStep":  # each in its own transaction, after the expand steps (history.run_each)
                self.data.append(step)
            else:
                self.swap.append(step)

    def describe(self, conn, renames_first=True):
        """plan --online: [{"step", "lock"}] in the order they run: what holds the write lock and how long.
        renames_first: no data step is pending, so apply --online commits the renames first, alone
        (_renames_first); with one, they commit with the expand steps before it (_data_steps_first)."""
        out = []
        batch_ms = 1000 * _batch_seconds(dbfile.in_wal(conn))
        for step in self.before:  # a new index on a table not rebuilt is built here, in its own transaction
            rows = step.rows or 0
            if renames_first and _kind(step) in ("RenameTable", "RenameColumn"):
                out.append({"step": step.title, "lock": "one short step, committed first (the renames together, in "
                                                        "one transaction: no row is copied), before the rest is "
                                                        "planned against the renamed file"})
                continue
            out.append({"step": step.title, "lock": "one transaction, about %s (it reads every row)" % _ms(rows)
                        if rows else "one short transaction"})
        for step in self.data:
            out.append({"step": step.title, "lock": _data_lock(step)})
        for tp in self.tables:
            n = tp.rows
            why = ""
            if tp.same and _dropped_index(tp.step):
                why = (" (the table is copied unchanged without index '%s': no DROP INDEX walks an index of about %d "
                       "rows under the lock; the old table and the index are emptied in batches)" % (
                           _dropped_index(tp.step), n))
            elif tp.same:
                why = (" (the table is copied unchanged: a new index on about %d rows is built as the copy fills it, "
                       "not by one CREATE INDEX)" % n)
            out.append({"step": "create shadow table '%s' with %d index(es) (empty, under temporary names) and sync "
                                "triggers on '%s'%s" % (tp.shadow, len(tp.indexes), tp.old, why),
                        "lock": "one short transaction"})
            out.append({"step": "copy %d rows of '%s' into '%s' in batches" % (n, tp.old, tp.shadow),
                        "lock": "batches of about %d ms each, a passive WAL checkpoint between them" % (
                            batch_ms)})
            out.append({"step": "check that every row of '%s' is in '%s' (the new constraints and foreign keys)" % (
                tp.old, tp.shadow), "lock": "none (read batches of about %d ms each; in rollback-journal mode they "
                                            "hold writers off that long)" % batch_ms})
        if self.tables or self.swap:
            rebuilds = len([tp for tp in self.tables if not tp.same])
            names = ", ".join("'%s'" % tp.name for tp in self.tables)
            out.append({"step": "swap%s: check the rows written since the copy began, rename the old table%s "
                                "away and the shadow in, set the index names%s" % (
                                    " " + names if names else "", "s" if len(self.tables) > 1 else "",
                                    ", and %d other step(s) of the plan" % (len(self.swap) - rebuilds)
                                    if len(self.swap) > rebuilds else ""),
                        "lock": "one short transaction (no row is copied or counted in full)"})
        for step in self.after:
            out.append({"step": step.title, "lock": "one transaction (it frees the index's pages)"})
        for tp in self.tables:
            out.append({"step": "empty the old table '%s%s' (%d rows) and drop it" % (OLD, tp.name, tp.rows),
                        "lock": "batches of about %d ms each" % batch_ms})
        return out


def _data_lock(step):
    """plan --online: how long a data step holds the write lock (its own transaction, with its history record)."""
    what = "one transaction, recorded in %s with it: holds the write lock for the step's whole run" % HISTORY_TABLE
    if step.rows is None:
        return what
    return "%s (it changed %d rows when planned: about %s)" % (what, step.rows, _ms(step.rows))


def _ms(rows):
    ms = max(1, int(rows * 1000 / ROWS_PER_SECOND))
    return "%d ms" % ms


# --- running it ----------------------------------------------------------------------------------------------

# The caller's commit_section (apply's argument: the CLI defers Ctrl-C around a COMMIT and records it, so that an
# interrupt after any of the online apply's commits is answered with exit 3), for the run in progress.
_COMMIT_SECTION = contextvars.ContextVar("schemagen_online_commit_section", default=None)


# (id of the connection, perf_counter) when the online apply's last write transaction ended: the next one on that
# connection begins only after a free window (_pause), wherever it comes from. The batch loops leave one after each
# batch; without this the transactions of different steps ran back to back (the shadow's setup and the first copy
# batch, the swap, the index drops after it and the first batch emptying the old table), and a writer that met the
# swap waited through all of them: 80 ms, measured (Milestone 2, 1M tasks)
_RELEASED = contextvars.ContextVar("schemagen_online_released", default=None)
LONGEST_KEPT = 10  # stats["longest_locks"]: this many of the longest write transactions, for apply --json


class _Lock:
    """BEGIN IMMEDIATE ... COMMIT as a context manager; times the write lock it held. stats gets longest_lock (seconds)
    and longest_lock_step, transactions (a count), and longest_locks: the LONGEST_KEPT longest transactions, each
    {"step", "began" (Unix time), "held_ms", "commit_ms" (of it, the COMMIT: journal and fsync), "cpu_ms" (of it, this
    thread on a CPU), "runnable_ms" (of it, this thread ready to run but waiting for a CPU: the machine's load, not
    schemagen's work; Linux only, else null)}: the rest of held_ms is time blocked on the disk. longest_own_lock (and
    its step): the longest held time less its runnable time."""

    def __init__(self, conn, stats, label="batch"):
        self.conn, self.stats, self.label = conn, stats, label

    def __enter__(self):
        last = _RELEASED.get()
        if last is not None and last[0] == id(self.conn) and time.perf_counter() - last[1] < PAUSE_MIN:
            _pause(dbfile.in_wal(self.conn))  # no write transaction right after another: a free window first
        self.conn.execute("BEGIN IMMEDIATE")
        self.began, self.started, self.cpu, self.sched = time.time(), time.perf_counter(), time.process_time(), _sched()
        return self

    def __exit__(self, kind, exc, tb):
        committing = time.perf_counter()
        if kind is None:
            section = _COMMIT_SECTION.get()
            with section() if section is not None else contextlib.nullcontext():
                self.conn.execute("COMMIT")
        elif self.conn.in_transaction:
            self.conn.execute("ROLLBACK")
        ended = time.perf_counter()
        _RELEASED.set((id(self.conn), ended))
        held = self.held = ended - self.started
        self.body = committing - self.started  # without the COMMIT
        if held >= self.stats.get("longest_lock", 0.0):
            self.stats["longest_lock"], self.stats["longest_lock_step"] = held, self.label
        self.stats["transactions"] = self.stats.get("transactions", 0) + 1
        now = _sched() if self.sched else None
        runnable = (now[1] - self.sched[1]) / 1e9 if now else None
        _keep(self.stats, "longest_locks", {
            "step": self.label, "began": round(self.began, 3), "held_ms": round(held * 1000, 1),
            "commit_ms": round((ended - committing) * 1000, 1),
            "cpu_ms": round((time.process_time() - self.cpu) * 1000, 1),
            "runnable_ms": round(runnable * 1000, 1) if runnable is not None else None})
        # the longest hold not counting the time this thread waited for a CPU: schemagen's own work and the disk
        own = held - (runnable or 0.0)
        if own >= self.stats.get("longest_own_lock", 0.0):
            self.stats["longest_own_lock"], self.stats["longest_own_lock_step"] = own, self.label
        return False


def _sched():
    """(ns on a CPU, ns waiting for one) of this thread so far (/proc/thread-self/schedstat), None where unreadable."""
    try:
        with open("/proc/thread-self/schedstat") as f:
            return [int(v) for v in f.read().split()[:2]]
    except (OSError, ValueError):
        return None


def _keep(stats, key, record):
    """stats[key]: the LONGEST_KEPT records of the largest held_ms, longest first."""
    kept = stats.setdefault(key, [])
    if len(kept) < LONGEST_KEPT or record["held_ms"] > kept[-1]["held_ms"]:
        kept.append(record)
        kept.sort(key=lambda r: -r["held_ms"])
        del kept[LONGEST_KEPT:]


def _pause(wal=True):
    """The free window after a write batch: about PAUSE_SECONDS (PAUSE_SECONDS_ROLLBACK in rollback-journal mode),
    never the same twice (PAUSE_JITTER), never under PAUSE_MIN."""
    mean = PAUSE_SECONDS if wal else PAUSE_SECONDS_ROLLBACK
    time.sleep(_RANDOM.uniform(max(PAUSE_MIN, mean * PAUSE_JITTER[0]), mean * PAUSE_JITTER[1]))


def _checkpoint(conn, wal, stats=None):
    """A passive WAL checkpoint (no lock that holds a writer or reader off); with stats, its length is kept in
    stats["longest_checkpoints"] as _Lock keeps write transactions, with the WAL's frames and how many it
    copied ("frames", "copied"): its fsync of the database file shares the disk with the application's commits."""
    if wal:
        began, started = time.time(), time.perf_counter()
        busy, frames, copied = conn.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchone()
        if stats is not None:
            _keep(stats, "longest_checkpoints", {"began": round(began, 3), "held_ms": round(
                (time.perf_counter() - started) * 1000, 1), "frames": frames, "copied": copied})


def _batches(conn, tp, sql_for, between, stats, label, wal, write=True):
    """Run sql_for(lo, hi) over the old table's keys (rowids, or a WITHOUT ROWID table's primary keys; tuples, lo
    None at first) in (lo, hi] ranges up to tp.top (the largest when the sync triggers were created: the triggers
    copy every row written after) in batches sized by time; between(table, label, n) is called after each batch
    (tests write from another connection there)."""
    size, lo, n, floor = FIRST_BATCH, None, 0, None
    phase = _Phase(stats, "%s '%s'" % (label, tp.name))
    while tp.top is not None and lo != tp.top:
        with _Lock(conn, stats, "%s batch of '%s'" % (label, tp.name)) if write else \
                _Read(conn, stats, "%s batch of '%s'" % (label, tp.name)) as batch:
            where, params = tp.key_range(None, lo, tp.top)
            row = conn.execute("SELECT %s FROM %s WHERE %s ORDER BY %s LIMIT 1 OFFSET ?" % (
                tp.key(), q(tp.old), where, tp.key()), params + [size - 1]).fetchone()
            bound = tuple(row) if row is not None else tp.top  # fewer rows than size left: up to the top
            result = sql_for(lo, bound)
        lo, n = bound, n + 1
        floor = min(floor, batch.held - batch.body) if floor is not None else batch.held - batch.body
        size = _next_size(size, batch, wal, floor)
        phase.batches = n
        if write:
            _checkpoint(conn, wal, stats)
            _pause(wal)
        elif not wal:  # a writer's COMMIT waits out a read batch, holding off every new reader meanwhile: read
            _pause(wal)  # batches back to back would put that wait on nearly every commit of the application
        if between is not None:
            between(tp.name, label, n)
        if result:
            phase.end()
            return result
    phase.end()


class _Phase:
    """stats["phases"]: one record per batched phase (a copy, a check, the emptying of a table), in order: its
    "step", "began" (Unix time), "seconds" and "batches", to set the application's waits beside."""

    def __init__(self, stats, label):
        self.record = {"step": label, "began": round(time.time(), 3), "seconds": None, "batches": 0}
        self.started, self.batches = time.perf_counter(), 0
        stats.setdefault("phases", []).append(self.record)

    def end(self):
        self.record["seconds"], self.record["batches"] = round(time.perf_counter() - self.started, 3), self.batches


class _Read:
    """A read transaction (BEGIN ... ROLLBACK); with stats, its length is kept in stats["longest_reads"] as _Lock keeps
    write transactions (in rollback-journal mode a read holds off every writer's COMMIT, and the readers queued
    behind that COMMIT, for as long as it lasts)."""

    def __init__(self, conn, stats=None, label="read", one=True):
        self.conn, self.stats, self.label, self.one = conn, stats, label, one

    def __enter__(self):
        if self.one:  # else every statement reads on its own (autocommit), holding the shared lock only while it runs
            self.conn.execute("BEGIN")
        self.began, self.started = time.time(), time.perf_counter()
        return self

    def __exit__(self, *exc):
        if self.conn.in_transaction:
            self.conn.execute("ROLLBACK")
        self.held = self.body = time.perf_counter() - self.started
        if self.stats is not None:
            _keep(self.stats, "longest_reads", {"step": self.label, "began": round(self.began, 3),
                                                "held_ms": round(self.held * 1000, 1)})
        return False


def _batch_seconds(wal):
    return BATCH_SECONDS if wal else BATCH_SECONDS_ROLLBACK


def _next_size(size, batch, wal, floor=0.0):
    """The next batch's size in rows: the last one's scaled to _batch_seconds(wal) by the time it held its lock,
    growing by GROWTH at most, between 50 and MAX_BATCH rows. In WAL mode the time from BEGIN to the end of its
    COMMIT (which writes the batch's pages to the WAL); in rollback-journal mode less floor, the shortest COMMIT seen
    so far: the part of a COMMIT that is the same for any batch (its two fsyncs). Sized with it, batches shrink toward
    the 50-row minimum once the disk's fsyncs alone take longer than the target (a 2M-row copy on the busy disk was
    still running after 15 minutes); sized without any of the COMMIT, they grow until it writes a journal of many
    pages (a 222 ms hold, measured)."""
    took = batch.held if wal else batch.held - floor
    return max(50, min(MAX_BATCH, int(size * _batch_seconds(wal) / max(took, 1e-4)), int(size * GROWTH) + 1))


@contextlib.contextmanager
def _batch_commits(conn, wal):
    """In WAL mode, the batches (copy, free) commit with synchronous=NORMAL when the connection's setting is FULL or
    EXTRA: their COMMIT then writes the WAL without an fsync, which on a busy disk held the write lock 50-80 ms a batch
    (measured at 1M rows). A power loss can lose the last batches, never corrupt the file (WAL mode at NORMAL stays
    consistent): what is lost is schemagen's own shadow rows or old rows, a leftover the next apply removes, and the
    next COMMIT at the connection's own setting (the swap's, the application's) syncs every batch before it. In
    rollback-journal mode the setting is left alone (NORMAL there can corrupt the file on a power loss on some
    filesystems)."""
    level = conn.execute("PRAGMA synchronous").fetchone()[0] if wal else 0
    if level > 1:
        conn.execute("PRAGMA synchronous = NORMAL")
    try:
        yield
    finally:
        if level > 1:
            conn.execute("PRAGMA synchronous = %d" % level)


def _describe_row(conn, tp, key):
    """Why the shadow does not take the row of the old table with key (a tuple): the constraint SQLite names, or its
    foreign key."""
    marks = ["?"] * len(key)
    row = conn.execute("SELECT * FROM %s WHERE %s" % (q(tp.old), tp.key_is(None, marks)), key).fetchone()
    cols = [r[1] for r in conn.execute("SELECT * FROM pragma_table_info(?)", (tp.old,))]
    shown = ", ".join("%s=%r" % (c, v) for c, v in list(zip(cols, row or ()))[:6])
    conn.execute("SAVEPOINT schemagen_probe_row")
    try:
        conn.execute("DELETE FROM %s WHERE %s" % (q(tp.shadow), tp.key_is(None, marks, new=True)), key)
        conn.execute("INSERT INTO %s (%s) SELECT %s FROM %s WHERE %s" % (
            q(tp.shadow), ", ".join(q(c) for c in tp.insert_columns), ", ".join(tp.select), q(tp.old),
            tp.key_is(None, marks)), key)
        why = "a declared foreign key has no parent row"
    except sqlite3.Error as exc:
        why = str(exc)
    finally:
        conn.execute("ROLLBACK TO schemagen_probe_row")
        conn.execute("RELEASE schemagen_probe_row")
    which = "rowid=%d" % key[0] if tp.by_rowid else "(%s)=(%s)" % (", ".join(tp.key_old), ", ".join(map(repr, key)))
    return "table '%s', row %s (%s): %s" % (tp.name, which, shown, why)


def _missing(conn, tp, lo, hi):
    """Keys (tuples) of the old table's rows in (lo, hi] that the shadow lacks; ApplyError when the shadow has more
    (it never should: its rows only come from the old table's)."""
    where, params = tp.key_range("o", lo, hi)
    missing = [tuple(r) for r in conn.execute(
        "SELECT %s FROM %s AS o WHERE %s AND NOT EXISTS (SELECT 1 FROM %s AS s WHERE %s) LIMIT 5" % (
            tp.key("o"), q(tp.old), where, q(tp.shadow),
            tp.key_is("s", ["o." + _col(k) for k in tp.key_old], new=True)), params)]
    if not missing:
        counts = [conn.execute("SELECT count(*) FROM %s WHERE %s" % (q(t), w), p).fetchone()[0]
                  for t, (w, p) in ((tp.old, tp.key_range(None, lo, hi)), (tp.shadow, tp.key_range(None, lo, hi, new=True)))]
        if counts[0] != counts[1]:
            raise ApplyError("online apply: table '%s' has %d rows with keys in (%r, %r] but its shadow %d; nothing "
                             "was changed" % (tp.name, counts[0], lo, hi, counts[1]))
    return missing


def _stale_fk(conn, tp, lo, hi):
    """Keys of the shadow's rows in (lo, hi] whose declared foreign keys no longer hold (a parent deleted since)."""
    if not tp.fks:
        return []
    where, params = tp.key_range("s", lo, hi, new=True)
    return [tuple(r) for r in conn.execute("SELECT %s FROM %s AS s WHERE %s AND NOT (%s) LIMIT 5" % (
        tp.key("s", new=True), q(tp.shadow), where, tp.fk_guard(lambda c: "s.%s" % q(c))), params)]


def _refuse(conn, path, tp, rows, when):
    described = "; ".join(_describe_row(conn, tp, r) for r in rows[:3])
    return OnlineRefused("database %r: the new constraints reject %s (%s), stopped before the swap: %s; the "
                         "old table is unchanged and the shadow objects were removed: fix the row and apply again" % (
                             path, "a row" if len(rows) == 1 else "%d rows" % len(rows), when, described))


def run(conn, path, plan, target, between=None, stats=None):
    """Carry out plan online on conn (foreign keys off, autocommit). Returns stats: longest_lock (seconds),
    transactions, batches. OnlineRefused before the swap (nothing changed, shadow objects removed)."""
    stats = {} if stats is None else stats
    wal = dbfile.in_wal(conn)
    conn.execute("PRAGMA legacy_alter_table = ON")
    online = OnlinePlan(conn, plan)
    for step in online.before:
        if step.executed:
            continue
        with _Lock(conn, stats, step.title):
            for stmt in step.statements:
                conn.execute(stmt)
    for step in online.data:
        if not step.executed:
            raise ApplyError("online apply: data step %r was not run before the rebuild (history.run_each runs "
                             "them, each in its own transaction)" % step.change.name)
    try:
        _rebuild_and_swap(conn, path, online, target, between, stats, wal)
    except SchemagenError as exc:
        if online.before:
            raise ChangedThenFailed("%s; the %d step(s) before the copy (%s) are committed: fix the cause and apply "
                                    "again to finish" % (exc, len(online.before), ", ".join(
                                        s.title for s in online.before))) from None
        raise
    return stats


def _rebuild_and_swap(conn, path, online, target, between, stats, wal):
    try:
        for tp in online.tables:
            with _Lock(conn, stats, "create the shadow of '%s'" % tp.name):
                conn.execute("CREATE TABLE IF NOT EXISTS %s (tbl TEXT NOT NULL, row_id INTEGER NOT NULL, PRIMARY KEY "
                             "(tbl, row_id)) WITHOUT ROWID" % q(REJECTS))
                conn.execute(tp.create)
                for _, _, sql, _ in tp.indexes:
                    conn.execute(sql)
                for sql in tp.triggers():
                    conn.execute(sql)
                top = conn.execute("SELECT %s FROM %s ORDER BY %s LIMIT 1" % (tp.key(), q(tp.old), ", ".join(
                    "%s DESC" % _col(k) for k in tp.key_old))).fetchone()
                tp.top = tuple(top) if top is not None else None
            with _batch_commits(conn, wal):
                _batches(conn, tp, lambda lo, hi, tp=tp: _copy(conn, tp, lo, hi), between, stats, "copy", wal)
            missing = _batches(conn, tp, lambda lo, hi, tp=tp: _missing(conn, tp, lo, hi) or _stale_fk(conn, tp, lo, hi),
                               between, stats, "verify", wal, write=False)
            if missing:
                raise _refuse(conn, path, tp, missing, "found by the check before the swap")
        with _Read(conn, stats, "read the broken views and triggers"):  # before the swap, not under its lock
            known = broken_dependents(conn)
        with _Lock(conn, stats, "swap"):
            for tp in online.tables:
                if tp.same:
                    _swap(conn, path, tp)
            for step in online.swap:
                if _kind(step) == "RebuildTable":
                    _swap(conn, path, next(tp for tp in online.tables if tp.step is step))
                else:
                    for stmt in step.statements:
                        conn.execute(stmt)
            conn.execute("DROP TABLE IF EXISTS %s" % q(REJECTS))
            check_dependents(conn, known)
            stats["structure"] = _verify_structure(conn, target)[0]
    except BaseException as exc:
        try:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            if isinstance(exc, SchemagenError):  # refused: the shadow (up to every row) emptied in batches
                _drop_leftovers(conn, stats, wal)
            else:  # interrupted: at once, in one transaction
                drop_leftovers(conn)
        except sqlite3.Error:
            pass  # the next apply removes them
        raise
    for step in online.after:  # committed: the index drops, each in its own transaction (contract last)
        try:
            with _Lock(conn, stats, step.title):
                for stmt in step.statements:
                    conn.execute(stmt)
        except sqlite3.Error as exc:
            raise ChangedThenFailed("database %r: the change is committed, then %s failed: %s; apply again to "
                                    "finish" % (path, step.title, exc)) from None
    for tp in online.tables:  # committed: what is left is the old rows' space (a leftover if killed now)
        _free(conn, OLD + tp.name, stats, wal, between, tp.key())


def _copy(conn, tp, lo, hi):
    where, params = tp.key_range(None, lo, hi)
    conn.execute(tp.copy_sql(where), params)


def _swap(conn, path, tp):
    """In the swap transaction: the recorded rejects and the rows written since the copy began compared (the rows
    before were compared batch by batch), the old table renamed away with its indexes, the shadow renamed
    to the table's name, the declared index names set, sqlite_sequence carried over as the larger value."""
    if tp.by_rowid:
        rejected = [(r[0],) for r in conn.execute(
            "SELECT r.row_id FROM %s AS r WHERE r.tbl = ? AND EXISTS (SELECT 1 FROM %s AS o WHERE o.rowid = r.row_id) "
            "AND NOT EXISTS (SELECT 1 FROM %s AS s WHERE s.rowid = r.row_id) ORDER BY r.row_id LIMIT 5" % (
                q(REJECTS), q(tp.old), q(tp.shadow)), (tp.name,))]
    elif conn.execute("SELECT 1 FROM %s WHERE tbl = ?" % q(REJECTS), (tp.name,)).fetchone():
        rejected = _missing(conn, tp, None, None)  # WITHOUT ROWID: some row was refused; which, the keys tell
    else:
        rejected = []
    if rejected:
        raise _refuse(conn, path, tp, rejected, "written by the application during the copy")
    missing = _missing(conn, tp, tp.top, None)
    if missing:
        raise _refuse(conn, path, tp, missing, "found at the swap")
    has_seq = conn.execute("SELECT 1 FROM sqlite_master WHERE name = 'sqlite_sequence'").fetchone() is not None
    seq = conn.execute("SELECT max(seq) FROM sqlite_sequence WHERE name IN (?, ?)", (tp.old, tp.shadow)).fetchone()[0] \
        if has_seq else None
    for op in ("ins", "upd", "del"):
        conn.execute("DROP TRIGGER %s" % q("%s%s_%s" % (SYNC, op, tp.name)))
    retired = OLD + tp.name
    conn.execute("ALTER TABLE %s RENAME TO %s" % (q(tp.old), q(retired)))
    for (name,) in conn.execute("SELECT name FROM sqlite_master WHERE type = 'trigger' AND tbl_name = ?",
                                (retired,)).fetchall():
        conn.execute("DROP TRIGGER %s" % q(name))  # the plan recreates the table's triggers on the new one
    conn.execute("ALTER TABLE %s RENAME TO %s" % (q(tp.shadow), q(tp.name)))
    for sql in tp.triggers_sql:  # a table copied only for its new index: its own triggers, as they were
        conn.execute(sql)
    renames = []  # the old table's indexes out of the way first, then the shadow's under the declared names
    for n, (name, sql) in enumerate(conn.execute(
            "SELECT name, sql FROM sqlite_master WHERE type = 'index' AND tbl_name = ? AND sql IS NOT NULL",
            (retired,)).fetchall()):
        tmp = "%sold_%d_%d" % (INDEX, tp.number, n)
        m = _index_head(sql)
        renames.append((name, tmp, sql[:m.start(1)] + q(tmp) + sql[m.end(1):]))
    renames += [(tmp, name, final) for name, tmp, _, final in tp.indexes]
    if renames or tp.same:  # SQLite has no ALTER INDEX: the names are set in sqlite_master, the schema version bumped
        version = conn.execute("PRAGMA schema_version").fetchone()[0]
        conn.execute("PRAGMA writable_schema = ON")
        try:
            for old_name, new_name, sql in renames:
                conn.execute("UPDATE sqlite_master SET name = ?, sql = ? WHERE type = 'index' AND name = ?",
                             (new_name, sql, old_name))
            if tp.same:  # the same table: its CREATE TABLE text as it was (the rename quoted the name)
                conn.execute("UPDATE sqlite_master SET sql = ? WHERE type = 'table' AND name = ?",
                             (tp.original_sql, tp.name))
            conn.execute("PRAGMA schema_version = %d" % (version + 1))
        finally:
            conn.execute("PRAGMA writable_schema = OFF")
    if tp.seq:
        conn.execute("INSERT INTO sqlite_sequence (name, seq) SELECT ?, 0 WHERE NOT EXISTS (SELECT 1 FROM "
                     "sqlite_sequence WHERE name = ?)", (tp.name, tp.name))
        top = conn.execute("SELECT max(rowid) FROM %s" % q(tp.name)).fetchone()[0]
        conn.execute("UPDATE sqlite_sequence SET seq = max(seq, ?, ?) WHERE name = ?", (seq or 0, top or 0, tp.name))
    if has_seq:
        conn.execute("DELETE FROM sqlite_sequence WHERE name = ?", (retired,))


def _drop_leftovers(conn, stats, wal):
    """drop_leftovers without a long write lock: the sync triggers first, in one short transaction (no write meets a
    trigger whose table is gone), then each leftover table (a shadow or an old table of an interrupted apply, or of
    this one refused before its swap: up to the whole table's rows) emptied in batches and dropped (_free)."""
    found = leftovers(conn)
    if not found:
        return
    with _Lock(conn, stats, "drop the sync triggers of an interrupted online apply"):
        for kind, name, _ in found:
            if kind == "trigger":
                conn.execute("DROP TRIGGER IF EXISTS %s" % q(name))
    for kind, name, _ in found:
        if kind == "table":
            sql = conn.execute("SELECT sql FROM sqlite_master WHERE type = 'table' AND name = ?", (name,)).fetchone()
            if sql is not None:
                key = ", ".join(q(c) for c in _primary_key(conn, name)) if _without_rowid(sql[0]) else "rowid"
                _free(conn, name, stats, wal, key=key, label="empty the leftover table '%s'" % name)
    drop_leftovers(conn)  # anything else (none is expected)


def _free(conn, table, stats, wal, between=None, key="rowid", label="free the old table's pages"):
    """Empty the retired old table in batches sized by time (its pages freed a batch at a time), then drop it:
    a DROP TABLE of a big table holds the write lock for as long as it walks every page."""
    size, n, floor = FIRST_BATCH, 0, None
    phase = _Phase(stats, "%s ('%s')" % (label, table))
    with _batch_commits(conn, wal):
        while True:
            with _Lock(conn, stats, label) as batch:
                done = conn.execute("DELETE FROM %s WHERE (%s) IN (SELECT %s FROM %s ORDER BY %s LIMIT ?)" % (
                    q(table), key, key, q(table), key), (size,)).rowcount
            if not done:
                break
            floor = min(floor, batch.held - batch.body) if floor is not None else batch.held - batch.body
            size = _next_size(size, batch, wal, floor)
            _checkpoint(conn, wal, stats)
            _pause(wal)
            n += 1
            phase.batches = n
            if between is not None:
                between(table, "free", n)
    phase.end()
    with _Lock(conn, stats, "drop the emptied table '%s'" % table):  # at the connection's own synchronous setting
        conn.execute("DROP TABLE %s" % q(table))


def apply_online(path, schema=None, files=None, backup=True, backup_dir=None, keep_backups=DEFAULT_KEEP, guard=None,
                 prune=None, allow_data_loss=False, confirm=None, between=None, commit_section=None, terms=None):
    """apply --online: as apply.apply (same arguments), with every table rebuild done online (see the module
    docstring). A new or empty file takes apply's one-transaction path (nothing to keep online). The backup
    is made with the online backup API, without holding the write lock. between(table, phase, batch) is
    called after each copy ("copy") or check ("verify") batch, after each expand or data step's commit (table:
    the step's title, phase "data") and after each step of the backup (table None, phase "backup"): tests write
    from another connection there.
    A declaration with pending data steps: the backup, then its expand steps and data steps each in their own
    transaction (a data step with its record in the history), then the rest planned against what they did and
    carried out online; anything refused after them is exit 3 (they are committed: apply again to finish).
    commit_section and terms: as for apply.apply (every one of the online apply's COMMITs runs in commit_section).
    """
    path = os.fspath(path)
    if backup:
        check_backup_dir(backup_dir)
        check_keep(keep_backups)
    if not os.path.isfile(path) or not os.path.getsize(path):
        return apply(path, schema, files, backup=backup, guard=guard, backup_dir=backup_dir, keep_backups=keep_backups,
                     prune=prune, allow_data_loss=allow_data_loss, confirm=confirm, commit_section=commit_section,
                     terms=terms)
    target, declared = keeping_history(target_for(schema, files))
    backup = backup and (backup_dir, keep_backups)
    loss = (prune, allow_data_loss, confirm)
    start = time.perf_counter()
    conn, _ = open_for_apply(path, target.files)
    backup_to = None
    stats = {}
    token = _COMMIT_SECTION.set(commit_section)
    try:
        conn.execute("PRAGMA foreign_keys = OFF")  # outside any transaction: no ON DELETE fires in the swap
        wal = dbfile.in_wal(conn)
        # a batch's pages stay in the cache until its COMMIT: a spill in the middle of a batch takes the exclusive
        # lock early in rollback-journal mode (readers locked out for the rest of the batch) and writes twice in WAL
        cache = conn.execute("PRAGMA cache_size").fetchone()[0]  # pages when positive, KiB when negative
        cache = cache * conn.execute("PRAGMA page_size").fetchone()[0] // 1024 if cache > 0 else -cache
        conn.execute("PRAGMA cache_size = %d" % -max(cache, CACHE_KIB))
        if wal:  # the write batches checkpoint after themselves (_checkpoint), with the write lock free; an automatic
            # checkpoint would run inside the COMMIT statement, after the lock is released but timed as part of it
            conn.execute("PRAGMA wal_autocheckpoint = 0")
        _drop_leftovers(conn, stats, wal)
        # pending data steps: they and the expand steps before them (the renames among them) commit first; else
        # the renames alone do (the target keeps a history under --online: keeping_history)
        backup_to, first = _data_steps_first(conn, path, target, guard, backup, between, stats)
        if not first:
            backup_to, first = _renames_first(conn, path, target, guard, backup, between, stats)
        # a read transaction, and query_only: planning and checking never take the write lock (the renames are
        # committed above, so nothing is planned on a scratch copy of the file; a write here would also fail at
        # once with "database is locked" after any application commit)
        conn.execute("PRAGMA query_only = ON")
        # in rollback-journal mode a read transaction holds off every writer's COMMIT, and every reader queued behind
        # that COMMIT, for as long as it lasts: planning (its row counts, its checks of the rows the new constraints
        # would reject, quick_check of the rebuilt tables: hundreds of ms at 1M rows) then reads statement by
        # statement, each its own short read; the copy and its checks compare every row again, and the swap checks
        # the structure, so nothing depends on the plan's reads being one snapshot
        reading = _Read(conn, stats, "plan" if wal else "plan (each statement its own read)", one=wal)
        reading.__enter__()
        try:
            plan = _unless_only_history(plan_for(conn, target, guard, loss[0]), declared)
            if not plan.up_to_date and not plan.fresh:
                _refuse_damaged(conn, path, plan)
                _guard_data_loss(path, plan, bool(backup), *loss[1:], terms=terms)
                OnlinePlan(conn, plan)  # refuses what --online cannot do before anything is written
        except SchemagenError as exc:
            if first:
                raise _committed(exc, first) from None
            raise
        finally:
            reading.__exit__(None, None, None)
            conn.execute("PRAGMA query_only = OFF")
        if first:  # the renames, or the data steps and the expand steps before them: part of what this apply did
            plan = plan.replace(steps=first + list(plan.steps), touches_rows=True)
        if plan.up_to_date:
            _finish_connection(conn, target.files)
            return ApplyResult(path, plan, applied=False, seconds=time.perf_counter() - start,
                               online=online_facts(stats))
        if plan.fresh:  # an empty file (only settings): the one-transaction path
            conn.close()
            return apply(path, schema, files, backup=bool(backup), guard=guard, prune=prune,
                         commit_section=commit_section, terms=terms)
        if backup and plan.touches_rows and backup_to is None:
            backup_to = _backup(path, backup[0], between)
        from .history import with_backup  # the record names the backup and every step, those committed first too
        plan = with_backup(plan, backup_to, every_step=True)
        try:
            run(conn, path, plan, target, between, stats)
        except ChangedThenFailed:
            raise  # steps before the copy committed: the backup of the file before them is kept
        except SchemagenError as exc:
            if first:
                raise _committed(exc, first) from None
            discard(backup_to)  # nothing of the declaration's change committed
            backup_to = None
            raise
        except BaseException:
            if not first:
                discard(backup_to)
                backup_to = None
            raise
        if backup_to:
            try:
                prune_backups(path, backup[0], backup[1], protect=(backup_to,))
            except OSError:
                pass
        _finish_connection(conn, target.files)
        # online: what the online steps did (steps.ONLINE_FACTS: the same keys as PostgreSQL's), the structure aside
        return ApplyResult(path, plan, applied=True, backup=backup_to, seconds=time.perf_counter() - start,
                           statements=len(plan.statements), structure=stats.get("structure"),
                           online=online_facts(stats))
    except sqlite3.Error as exc:
        raise ApplyError("online apply of %r failed: %s" % (path, exc)) from None
    finally:
        _COMMIT_SECTION.reset(token)
        conn.close()


def keeping_history(target):
    """(the target as --online applies it, whether its declaration keeps a history): schemagen's history is kept
    even when the declaration keeps none (issue 19: the database records the online change, and each data step)."""
    if target.compiled.get("history"):
        return target, True
    return target.with_compiled(history=True, data_steps=list(target.compiled.get("data_steps") or ())), False


def _unless_only_history(plan, declared):
    """An up-to-date database gets no history table from an online apply whose declaration keeps none."""
    if not declared and plan.steps and all(_kind(s) == "RecordHistory" for s in plan.steps):
        return plan.replace(steps=())
    return plan


def _backup(path, backup_dir, between):
    """The backup before the first write, with the online backup API in steps over one read snapshot (backup.py's
    snapshot): in WAL mode the application's writers never wait for it; between(None, "backup", n) after each step."""
    progress = None
    if between is not None:
        calls = iter(range(1, 1 << 62))
        progress = lambda done, total: between(None, "backup", next(calls))
    return make_backup(path, backup_dir, progress=progress, snapshot=True)


def _committed(exc, first):
    recorded = ", the data steps recorded in %s" % HISTORY_TABLE if any(
        _kind(s) == "RunDataStep" for s in first) else ""
    return ChangedThenFailed("%s; the %d step(s) before it (%s) are committed%s: fix the cause and apply again to "
                             "finish" % (exc, len(first), ", ".join(s.title for s in first), recorded))


def _renames_first(conn, path, target, guard, backup, between, stats):
    """A declaration with pending renames and no pending data step: the backup (when a renamed table holds rows), then
    the rename steps exactly as the plan renders them (plan.rename_steps), checked as the plan checks them
    (check_renames, and SQLite's own check of every view and trigger when it renames: a failure rolls back, nothing
    changed, exit 2), all in one short write transaction (ALTER TABLE RENAME copies no row), committed before the
    rest is planned read-only against the renamed file, so that no rename is planned on a scratch copy of the whole
    file. between(title, "rename", 1) after the commit. Returns (backup, the rename steps, marked executed)."""
    from ..sqlite import structure  # only a file that differs from the declaration is read further
    conn.execute("PRAGMA query_only = ON")
    reading = _Read(conn, stats, "plan the renames")
    reading.__enter__()
    try:
        if conn.execute("SELECT 1 FROM sqlite_master LIMIT 1").fetchone() is None:
            return None, []
        raw = structure.read_raw(conn)
        if guard is not None:
            from .apply import _refuse_foreign_file  # as planning does, before anything is written
            _refuse_foreign_file(conn, raw, target, guard)
        if not structure.compare(target.structure, structure.to_structure(raw)):
            return None, []  # up to date: no rename pending
        from . import diff as d  # only a file that differs: the renames are read from the diff
        from .introspect import read_live  # as above: the model of the live file
        from .plan import _has_rows, check_renames, rename_steps  # the plan's own rename steps and checks
        live = read_live(conn, raw)
        if live.is_empty:
            return None, []
        check_renames(conn, target.schema, live)
        changes = d.renames(target.schema, live)
        if not changes:
            return None, []
        steps = rename_steps(changes)
        touches = any(_has_rows(conn, s.table) for s in steps)
    finally:
        reading.__exit__(None, None, None)
        conn.execute("PRAGMA query_only = OFF")
    backup_to = _backup(path, backup[0], between) if backup and touches else None
    title = ", ".join(s.title for s in steps)
    conn.execute("PRAGMA legacy_alter_table = OFF")  # as a plain apply renames: views and triggers rewritten
    try:
        with _Lock(conn, stats, title):
            check_renames(conn, target.schema, read_live(conn))  # again: the application may have written since
            for step in steps:
                try:
                    for stmt in step.statements:
                        conn.execute(stmt)
                except sqlite3.OperationalError as exc:
                    raise UnsafeMigrationError("refusing to migrate, nothing was changed: %s failed: %s (SQLite "
                                               "checks every view and trigger when it renames)" % (
                                                   step.title, exc)) from None
    except BaseException:
        discard(backup_to)
        raise
    if between is not None:
        between(title, "rename", 1)
    return backup_to, [s.replace(executed=True) for s in steps]


def _data_steps_first(conn, path, target, guard, backup, between, stats):
    """A declaration with pending data steps: the backup, then the expand steps and the data steps, each in its own
    transaction (history.run_each), before the rest is planned against what they did: each data step runs
    exactly once (a python= step is called once), recorded with its commit. Returns (backup, steps run)."""
    from . import history  # only a declaration that keeps a history
    from ..sqlite import structure  # the guard below reads the raw schema
    conn.execute("BEGIN")
    try:
        if guard is not None and conn.execute("SELECT 1 FROM sqlite_master LIMIT 1").fetchone() is not None:
            from .apply import _refuse_foreign_file  # the shipped declaration's guard, before any data step runs
            _refuse_foreign_file(conn, structure.read_raw(conn), target, guard)
        pending = not history._is_empty(conn) and any(
            s["name"] not in history.done(conn) for s in history._declared_steps(target))
    finally:
        conn.execute("ROLLBACK")
    if not pending:
        return None, []
    backup_to = _backup(path, backup[0], between) if backup else None
    steps = []

    @contextlib.contextmanager
    def transaction(title):  # between(title, "data", n) after each commit: tests look (or kill) there
        steps.append(title)
        with _Lock(conn, stats, title):
            yield
        if between is not None:
            between(title, "data", len(steps))
    try:
        first = history.run_each(conn, target, transaction)
    except SchemagenError as exc:
        if len(steps) > 1:  # the failing step rolled back; those before it committed
            raise ChangedThenFailed("%s; the %d step(s) before it (%s) are committed: fix the cause and apply again "
                                    "to finish" % (exc, len(steps) - 1, ", ".join(steps[:-1]))) from None
        discard(backup_to)
        raise
    except BaseException:
        if len(steps) <= 1:
            discard(backup_to)
        raise
    return backup_to, first


def plan_online(path, target, guard=None, prune=None):
    """plan --online: (plan, [{"step", "lock"}]) for the SQLite file at path (only read)."""
    if not os.path.isfile(path) or not os.path.getsize(path):
        plan = plan_database(path, schema=target, guard=guard, prune=prune)
        return plan, [{"step": "create the declared schema (a new file: nothing to keep online)",
                       "lock": "one transaction"}] if not plan.up_to_date else []
    conn = dbfile.open_existing(path, "ro")
    try:
        conn.execute("BEGIN")
        target, declared = keeping_history(target)
        plan = _unless_only_history(plan_for(conn, target, guard, prune), declared)
        if plan.up_to_date:
            return plan, []
        if plan.fresh:
            return plan, [{"step": "create the declared schema (an empty file: nothing to keep online)",
                           "lock": "one transaction"}]
        return plan, OnlinePlan(conn, plan).describe(conn, renames_first=not any(
            _kind(s) == "RunDataStep" for s in plan.steps))
    except sqlite3.Error as exc:
        raise ApplyError("database %r: %s" % (path, exc)) from None
    finally:
        conn.close()
