"""Views and triggers on PostgreSQL: is the live body the declared one?

Both sides are printed by the server, never compared as SQL text (the technique pg/catalog.py uses for
expressions). In a transaction that is always rolled back (a savepoint inside the caller's), for each declared
object that exists:

- a view: the declared body is run as `CREATE TEMPORARY VIEW` of the same name (so it shadows nothing and
  replaces nothing) and `pg_get_viewdef(oid, true)` of it is compared with the live view's; so are its output
  columns (name and type, in order), which decide whether `CREATE OR REPLACE VIEW` may replace it (PostgreSQL
  allows that only when the old columns are a prefix of the new ones);
- a trigger on a table: a temporary table `(LIKE the table)` of the same name shadows it, the declared body runs
  (its `CREATE OR REPLACE FUNCTION`, rolled back with the rest, and its `CREATE TRIGGER ... ON table`, which
  lands on the temporary table), and `pg_get_triggerdef(oid, true)` plus `pg_get_functiondef` of the function it
  calls are compared with the live trigger's.

A declared body that does not run against the tables as they are now (it names a column this migration adds,
say) is "changed": it is recreated after the tables. This module only has the server print both sides
(view_printings, trigger_printings); whether they differ, and whether a view is replaced in place, is decided
once in migrate/diff.py (view_change, trigger_change), which the planner and validate both consume. One whose form cannot be put on a temporary object (a
materialized view, a trigger on a view) is not compared. Every function takes an open psycopg connection; none
imports psycopg.
"""
from __future__ import annotations

import re

from ..migrate.diff import trigger_change, view_change
from ..sqlite.quote import quote_identifier

VIEW_HEAD = re.compile(r"^\s*CREATE\s+(?:OR\s+REPLACE\s+)?(?:TEMP(?:ORARY)?\s+)?(RECURSIVE\s+)?VIEW\s+"
                       r"(?:(?:\"[^\"]+\"|[A-Za-z_][A-Za-z0-9_$]*)\s*\.\s*)?(\"[^\"]+\"|[A-Za-z_][A-Za-z0-9_$]*)",
                       re.IGNORECASE)


_q = quote_identifier  # the one quoter: a quoted identifier doubles its '"' on both engines


def replace_view_sql(body):
    """The declared view body as CREATE OR REPLACE VIEW (None when it is not a plain CREATE VIEW)."""
    m = VIEW_HEAD.match(body)
    if m is None:
        return None
    return "CREATE OR REPLACE %sVIEW %s%s" % (m.group(1) or "", m.group(2), body[m.end():])


def _temporary_view_sql(body):
    m = VIEW_HEAD.match(body)
    if m is None:
        return None
    return "CREATE TEMPORARY %sVIEW %s%s" % (m.group(1) or "", m.group(2), body[m.end():])


def _view_columns(conn, oid):
    return [tuple(r) for r in conn.execute(
        "SELECT attname, format_type(atttypid, atttypmod) FROM pg_attribute WHERE attrelid = %s AND attnum > 0 "
        "AND NOT attisdropped ORDER BY attnum", (oid,))]


def _live_view(conn, ns, name):
    row = conn.execute("SELECT oid FROM pg_class WHERE relnamespace = %s AND relname = %s AND relkind = 'v'",
                       (ns, name)).fetchone()
    if row is None:
        return None
    return conn.execute("SELECT pg_get_viewdef(%s, true)", (row[0],)).fetchone()[0], _view_columns(conn, row[0])


def changed_views(conn, ns, declared):
    """{name: {"replace": CREATE OR REPLACE VIEW text or None (DROP + CREATE needed), "why": text}} for the
    declared views (declared: {name: body}) whose live definition differs (diff.view_change decides, on
    view_printings); views not there are left out."""
    out = {}
    for name, (want, have) in view_printings(conn, ns, declared).items():
        change = view_change(want, have)
        if change is not None:
            out[name] = {"replace": replace_view_sql(declared[name]) if change[0] else None, "why": change[1]}
    return out


def view_printings(conn, ns, declared):
    """{name: (the declared view's (definition, [(column, type)]) as the server prints it, or why its body does
    not run (text); the live view's)} for the declared views (declared: {name: body}) the database has whose
    body can be put on a temporary view."""
    out = {}
    for name, body in declared.items():
        live = _live_view(conn, ns, name)
        temporary = _temporary_view_sql(body)
        if live is None or temporary is None:
            continue
        live_def, live_cols = live
        try:
            with conn.transaction(force_rollback=True):
                conn.execute(temporary)
                oid = conn.execute("SELECT %s::regclass::oid", ("pg_temp.%s" % _q(name),)).fetchone()[0]
                want_def = conn.execute("SELECT pg_get_viewdef(%s, true)", (oid,)).fetchone()[0]
                want_cols = _view_columns(conn, oid)
        except Exception as exc:  # psycopg.Error: the declared body does not run against the tables as they are
            if not type(exc).__module__.startswith("psycopg"):
                raise
            out[name] = (" ".join(str(exc).split()), live)
            continue
        out[name] = ((want_def, want_cols), (live_def, live_cols))
    return out


def _trigger_def(conn, oid):
    return conn.execute("SELECT pg_get_triggerdef(t.oid, true), pg_get_functiondef(t.tgfoid) FROM pg_trigger t "
                        "WHERE t.oid = %s", (oid,)).fetchone()


def changed_triggers(conn, ns, declared):
    """{name: why} for the declared triggers (declared: {name: (table, body)}) whose live definition or function
    differs (diff.trigger_change decides, on trigger_printings); triggers not there, or on something other than
    a table, are left out."""
    out = {}
    for name, (want, have) in trigger_printings(conn, ns, declared).items():
        why = trigger_change(name, declared[name][0], want, have)
        if why is not None:
            out[name] = why
    return out


def trigger_printings(conn, ns, declared):
    """{name: (the declared trigger's (definition, function) as the server prints them, None when its body
    creates no such trigger, or why the body does not run (text); the live trigger's)} for the declared triggers
    (declared: {name: (table, body)}) the database has on a table."""
    out = {}
    for name, (table, body) in declared.items():
        row = conn.execute(
            "SELECT t.oid FROM pg_trigger t JOIN pg_class c ON c.oid = t.tgrelid WHERE c.relnamespace = %s AND "
            "c.relname = %s AND t.tgname = %s AND NOT t.tgisinternal AND c.relkind IN ('r', 'p')",
            (ns, table, name)).fetchone()
        if row is None:
            continue
        live = tuple(_trigger_def(conn, row[0]))
        try:
            with conn.transaction(force_rollback=True):
                conn.execute("CREATE TEMPORARY TABLE %s (LIKE %s.%s)" % (
                    _q(table), _q(conn.execute("SELECT nspname FROM pg_namespace WHERE oid = %s", (ns,)).fetchone()[0]),
                    _q(table)))
                conn.execute(body)
                new = conn.execute("SELECT t.oid FROM pg_trigger t WHERE t.tgrelid = %s::regclass AND t.tgname = %s",
                                   ("pg_temp.%s" % _q(table), name)).fetchone()
                want = tuple(_trigger_def(conn, new[0])) if new is not None else None
        except Exception as exc:  # psycopg.Error
            if not type(exc).__module__.startswith("psycopg"):
                raise
            out[name] = (" ".join(str(exc).split()), live)
            continue
        out[name] = (want, live)
    return out


def declared_bodies(statements, structure):
    """({view: body}, {trigger: (table, body)}) from the compiled statements [(kind, name, sql)]."""
    views = {n: s for k, n, s in statements if k == "view"}
    triggers = {n: (structure.get("triggers", {}).get(n), s) for k, n, s in statements if k == "trigger"}
    return views, {n: v for n, v in triggers.items() if v[0]}
