"""The one reader of query plans: EXPLAIN QUERY PLAN lines and what they say (standard library only).

The number of parameters a query needs comes from SQLite (the statement is
prepared, and Python's sqlite3 reports how many bindings it uses), never from
counting `?` characters, which also occur inside string literals. Every
parameter is bound to NULL; the query itself is never run.
"""
import re
import sqlite3

USING = re.compile(r"^(SEARCH|SCAN) (\S+)(?: AS \S+)? USING (COVERING )?INDEX (\S+)")
ROWID = re.compile(r"^(SEARCH|SCAN) (\S+)(?: AS \S+)? USING INTEGER PRIMARY KEY")
AUTOMATIC = re.compile(r"^(SEARCH|SCAN) (\S+)(?: AS \S+)? USING AUTOMATIC")
FULL_SCAN = re.compile(r"^SCAN (\S+)(?: AS \S+)?$")
TEMP = re.compile(r"USE TEMP B-TREE FOR (.+)$")
_BINDINGS = re.compile(r"statement uses (\d+)")


class _NullNames(dict):
    """Binds every named parameter (:name, @name, $name) to NULL."""

    def __missing__(self, key):
        return None


def explain_lines(conn, query):
    """The detail lines of EXPLAIN QUERY PLAN for query, every parameter bound to NULL; raises sqlite3.Error."""
    sql = "EXPLAIN QUERY PLAN " + query
    try:
        rows = conn.execute(sql).fetchall()
    except sqlite3.ProgrammingError as exc:
        found = _BINDINGS.search(str(exc))
        if found is None:
            raise
        try:
            rows = conn.execute(sql, _NullNames()).fetchall()   # named parameters
        except sqlite3.ProgrammingError:
            rows = conn.execute(sql, (None,) * int(found.group(1))).fetchall()  # positional ones
    return [row[3] for row in rows]


def try_explain(conn, query):
    """(lines, None), or (None, SQLite's message) when the query cannot be prepared."""
    try:
        return explain_lines(conn, query), None
    except sqlite3.Error as exc:
        return None, str(exc)


def indexes_used(lines):
    """The indexes a plan searches or scans, in plan order."""
    return [m.group(4) for m in (USING.match(line) for line in lines) if m]


def plan_uses_index(lines, index_name):
    """Whether the plan searches or scans the named index (compared case-insensitively)."""
    return index_name.lower() in (name.lower() for name in indexes_used(lines))


def index_access(lines, index):
    """How a plan uses an index: 'search', 'scan', 'covering search', 'covering scan' (None when it does not)."""
    for line in lines:
        m = USING.match(line)
        if m and m.group(4).lower() == index.lower():
            return ("covering " if m.group(3) else "") + ("search" if m.group(1) == "SEARCH" else "scan")
    return None


def temp_btrees(lines):
    """What the plan sorts in a temporary B-tree ('ORDER BY', 'GROUP BY', ...)."""
    return [m.group(1) for m in (TEMP.search(line) for line in lines) if m]


def describe_plan(lines):
    """What a plan does, in words: 'full table scan of sessions; ORDER BY sorted in a temp B-tree'."""
    parts = []
    for line in lines:
        m = USING.match(line)
        if m:
            kind, table, covering, index = m.groups()
            detail = line[m.end():].strip()
            what = "searches" if kind == "SEARCH" else "scans all of"
            parts.append("%s %sindex %s%s" % (what, "covering " if covering else "", index, (" " + detail) if detail else ""))
            continue
        m = ROWID.match(line)
        if m:
            parts.append("reads %s by rowid (INTEGER PRIMARY KEY)" % m.group(2))
            continue
        m = AUTOMATIC.match(line)
        if m:
            parts.append("builds a temporary automatic index on %s" % m.group(2))
            continue
        m = FULL_SCAN.match(line)
        if m:
            parts.append("full table scan of %s" % m.group(1))
            continue
        m = TEMP.search(line)
        if m:
            parts.append("%s sorted in a temp B-tree" % m.group(1))
            continue
        parts.append(line)
    return "; ".join(parts) if parts else "no plan lines"


def has_stat1(conn):
    """Whether the database has an sqlite_stat1 table with rows (ANALYZE has run)."""
    if not conn.execute("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'sqlite_stat1'").fetchone():
        return False
    return bool(conn.execute("SELECT EXISTS (SELECT 1 FROM sqlite_stat1)").fetchone()[0])
