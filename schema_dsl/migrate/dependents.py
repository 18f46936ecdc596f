"""Before COMMIT: every view and trigger of the file still holds against the live columns.

A view that names a missing column fails when it is prepared, so each one is
(`SELECT * FROM view LIMIT 0`). A trigger that names a missing column
prepares without error, and its `UPDATE OF` list is never checked by SQLite:
such a trigger silently stops firing, or fails at the first write. So each
trigger's `UPDATE OF` columns and its `NEW.`/`OLD.` references are read with
the tokenizer and compared with `pragma table_xinfo` of its table.
"""
from __future__ import annotations

import sqlite3

from ..errors import ApplyError
from ..sqlite.quote import quote_identifier
from ..sqlite.structure import tokenize

ROWID_NAMES = ("rowid", "oid", "_rowid_")


def _columns(conn, table):
    return {r[1].lower() for r in conn.execute("SELECT * FROM pragma_table_xinfo(?)", (table,))}


def trigger_columns(sql):
    """(the UPDATE OF columns, the columns named as NEW.x or OLD.x) of a CREATE TRIGGER statement."""
    tokens = [(kind, text) for kind, text in tokenize(sql or "")]
    low = [(kind, text.lower() if kind == "word" else text) for kind, text in tokens]
    update_of = []
    for k, (kind, text) in enumerate(low):
        if kind == "word" and text in ("delete", "insert"):
            break
        if kind == "word" and text == "update" and k + 1 < len(low) and low[k + 1] == ("word", "of"):
            j = k + 2
            while j < len(low) and low[j] != ("word", "on"):
                if low[j][0] in ("word", "ident"):
                    update_of.append(tokens[j][1])
                j += 1
            break
        if kind == "word" and text == "update":
            break
    refs = [tokens[k + 2][1] for k in range(len(low) - 2)
            if low[k][0] == "word" and low[k][1] in ("new", "old") and low[k + 1] == ("op", ".")
            and low[k + 2][0] in ("word", "ident")]
    return update_of, refs


def broken_dependents(conn):
    """One line per view or trigger of the main database that does not hold against the live columns."""
    out = []
    objects = conn.execute("SELECT type, name, tbl_name, sql FROM sqlite_master WHERE type IN ('view', 'trigger') "
                           "ORDER BY type DESC, name").fetchall()
    for kind, name, table, sql in objects:
        if kind == "view":
            try:
                conn.execute("SELECT * FROM %s LIMIT 0" % quote_identifier(name)).fetchall()
            except sqlite3.Error as exc:
                # a function or collation the application registers on its own connections is not the file's
                if not str(exc).startswith(("no such function:", "no such collation sequence:")):
                    out.append("view '%s': %s" % (name, exc))
            continue
        columns = _columns(conn, table)
        if not columns:
            out.append("trigger '%s': its table '%s' is missing" % (name, table))
            continue
        update_of, refs = trigger_columns(sql)
        missing = [c for c in update_of if c.lower() not in columns]
        if missing:
            out.append("trigger '%s': UPDATE OF names %s, which '%s' does not have (it would never fire)" % (
                name, ", ".join("'%s'" % c for c in missing), table))
        missing = sorted({c for c in refs if c.lower() not in columns and c.lower() not in ROWID_NAMES})
        if missing:
            out.append("trigger '%s': NEW./OLD. names %s, which '%s' does not have (it would fail when it fires)" % (
                name, ", ".join("'%s'" % c for c in missing), table))
    return out


def check_dependents(conn):
    """ApplyError naming every view and trigger that no longer holds (apply then rolls back)."""
    problems = broken_dependents(conn)
    if problems:
        raise ApplyError("after the plan a view or trigger no longer works, rolled back: " + "; ".join(problems[:10]))
