"""Every view, trigger and foreign key of a database holds against its tables (stdlib only).

A view that names a missing column fails when it is prepared, so each one is
(`SELECT * FROM view LIMIT 0`). A trigger that names a missing column
prepares without error, and its `UPDATE OF` list is never checked by SQLite:
such a trigger silently stops firing, or fails at the first write. So each
trigger's `UPDATE OF` columns and its `NEW.`/`OLD.` references are read with
the tokenizer and compared with `pragma table_xinfo` of its table. A trigger's
body (a column or table another table's trigger names) is checked the way
SQLite checks it when a table is renamed: a scratch table is created and
renamed inside a savepoint, which resolves every view and trigger of the
schema and names the first that does not hold; that one is set aside and the
probe repeated, so every broken one is named.

Every foreign key is checked too: its parent table exists, and its parent key
is the parent's PRIMARY KEY or has a UNIQUE index (else every write to the
child fails with "foreign key mismatch"). `EXPLAIN PRAGMA foreign_key_check`
finds the parent key without reading a row.
"""
from __future__ import annotations

import re
import sqlite3

from .quote import quote_identifier
from .ddl import tokenize

ROWID_NAMES = ("rowid", "oid", "_rowid_")
PROBE = "_schemagen_probe"
_PROBE_ERROR = re.compile(r"^error in (view|trigger) (.+?)(?: after (?:rename|drop column))?: (.*)$", re.S)


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


def trigger_writes(sql):
    """(table, column) for each column a CREATE TRIGGER's body assigns: UPDATE ... SET targets (also an
    upsert's DO UPDATE SET) and an INSERT's column list. SQLite's RENAME probe (unresolved) resolves a body's
    expressions but not these names, so a trigger that only writes a missing column passes it and fails at
    its first firing ("no such column", "table ... has no column named ...")."""
    tokens = tokenize(sql or "")
    low = [(kind, text.lower() if kind == "word" else text) for kind, text in tokens]
    try:
        k = low.index(("word", "begin")) + 1
    except ValueError:
        return []
    out = []
    while k < len(low):
        end = k
        depth = 0
        while end < len(low) and not (low[end] == ("op", ";") and depth == 0):
            depth += (low[end] == ("op", "(")) - (low[end] == ("op", ")"))
            end += 1
        out += _statement_writes(tokens[k:end], low[k:end])
        k = end + 1
    return out


def _statement_writes(tokens, low):
    if not low or low[0] not in (("word", "update"), ("word", "insert"), ("word", "replace")):
        return []
    j = 1
    if j < len(low) and low[j] == ("word", "or"):
        j += 2
    if j < len(low) and low[j] == ("word", "into"):
        j += 1
    if j >= len(low) or low[j][0] not in ("word", "ident"):
        return []
    table = tokens[j][1]
    j += 1
    if j < len(low) and low[j] == ("word", "as"):
        j += 2
    columns = []
    if low[0] == ("word", "update"):
        columns += _set_targets(tokens, low, j)
    elif j < len(low) and low[j] == ("op", "("):
        j += 1
        while j < len(low) and low[j] != ("op", ")"):
            if low[j][0] in ("word", "ident"):
                columns.append(tokens[j][1])
            j += 1
    for i in range(len(low) - 2):  # an upsert: ON CONFLICT ... DO UPDATE SET
        if low[0] != ("word", "update") and low[i] == ("word", "do") and low[i + 1] == ("word", "update"):
            columns += _set_targets(tokens, low, i + 2)
    return [(table, column) for column in columns]


def _set_targets(tokens, low, j):
    """The columns assigned by the SET clause at or after position j (up to FROM, WHERE, RETURNING)."""
    while j < len(low) and low[j] != ("word", "set"):
        j += 1
    out, depth, target = [], 0, True
    for i in range(j + 1, len(low)):
        kind, text = low[i]
        if depth == 0 and kind == "word" and text in ("from", "where", "returning"):
            break
        if (kind, text) == ("op", "("):
            depth += 1
        elif (kind, text) == ("op", ")"):
            depth -= 1
        elif (kind, text) == ("op", "=") and depth == 0:
            target = False
        elif (kind, text) == ("op", ",") and depth == 0:
            target = True
        elif target and kind in ("word", "ident") and depth <= 1:
            out.append(tokens[i][1])
    return out


def broken_dependents(conn, foreign_keys=True, bodies=True):
    """One line per view, trigger or (foreign_keys) foreign key of the main database that does not hold against
    the live tables; bodies=False: a trigger's body is not resolved (see unresolved, trigger_writes)."""
    out, writes = [], []
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
        if bodies:
            for target, column in trigger_writes(sql):
                have = _columns(conn, target)
                if have and column.lower() not in have and column.lower() not in ROWID_NAMES:
                    writes.append("trigger '%s': its body writes '%s'.'%s', which does not exist (it would fail "
                                  "when it fires)" % (name, target, column))
    named = {line.split("'")[1].lower() for line in out}
    if bodies:
        out += [line for line in resolve_probe(conn) if "'" not in line or line.split("'")[1].lower() not in named]
        named = {line.split("'")[1].lower() for line in out if "'" in line}
        out += [line for line in writes if line.split("'")[1].lower() not in named]
    return out + (broken_foreign_keys(conn) if foreign_keys else [])


def resolve_probe(conn):
    """One line per view or trigger whose body SQLite cannot resolve (a missing table or column), found as
    ALTER TABLE RENAME finds it; nothing is changed (a savepoint, rolled back)."""
    return ["%s '%s': %s (it would fail when it %s)" % (kind, name, what, "is read" if kind == "view" else "fires")
            if kind != "schema" else "the schema does not hold: %s" % what for kind, name, what in unresolved(conn)]


def unresolved(conn):
    """(kind, name, what SQLite says) of each view or trigger that a RENAME of any table would stop at: a
    scratch table is created and renamed in a savepoint; the view or trigger it names is set aside (dropped
    in the savepoint) and the probe repeated. Nothing is changed."""
    out = []
    objects = conn.execute("SELECT count(*) FROM sqlite_master WHERE type IN ('view', 'trigger')").fetchone()[0]
    if not objects:
        return out  # nothing to resolve (and the RENAME re-reads the whole schema: milliseconds)
    conn.execute("SAVEPOINT schemagen_probe")
    try:
        for _ in range(1 + objects):
            try:
                conn.execute("CREATE TABLE %s (x)" % PROBE)
                conn.execute("ALTER TABLE %s RENAME TO %s" % (PROBE, PROBE + "_renamed"))
                break
            except sqlite3.Error as exc:
                found = _PROBE_ERROR.match(str(exc))
                if found is None:  # not one object's fault: said as it is
                    out.append(("schema", "", str(exc)))
                    break
                kind, name, what = found.groups()
                out.append((kind, name, what))
                conn.execute("DROP %s %s" % (kind.upper(), quote_identifier(name)))
                conn.execute("DROP TABLE IF EXISTS %s" % PROBE)
    finally:
        conn.execute("ROLLBACK TO schemagen_probe")
        conn.execute("RELEASE schemagen_probe")
    return out


def broken_foreign_keys(conn):
    """One line per foreign key of the main database whose parent table is missing, or whose parent key is
    neither the parent's PRIMARY KEY nor covered by a UNIQUE index ("foreign key mismatch")."""
    out = []
    tables = {r[0].lower(): r[0] for r in conn.execute(
        "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite\\_%' ESCAPE '\\'")}
    # the schema's version in the text: a statement prepared before a schema change (sqlite3 caches them by
    # text) is re-prepared on its step, where a mismatch is not reported; a new text is prepared now
    version = conn.execute("PRAGMA schema_version").fetchone()[0]
    for key, table in sorted(tables.items()):
        rows = conn.execute("SELECT id, seq, \"table\", \"from\", \"to\" FROM pragma_foreign_key_list(?) ORDER BY id, seq",
                            (table,)).fetchall()
        if not rows:
            continue
        groups = {}
        for fid, _, parent, column, to in rows:
            groups.setdefault(fid, [parent, [], []])
            groups[fid][1].append(column)
            groups[fid][2].append(to)
        missing = [(parent, cols) for parent, cols, _ in groups.values() if parent.lower() not in tables]
        for parent, cols in missing:
            out.append("table '%s': its foreign key (%s) references table '%s', which does not exist (every write "
                       "to '%s' would fail)" % (table, ", ".join(cols), parent, table))
        if len(missing) == len(groups):
            continue
        try:
            conn.execute("EXPLAIN PRAGMA foreign_key_check('%s') -- schema %d" % (table.replace("'", "''"),
                                                                                    version)).fetchall()
        except sqlite3.Error as exc:
            if "mismatch" not in str(exc):
                raise
            before = len(out)
            for parent, cols, to in groups.values():
                if parent.lower() not in tables or _has_parent_key(conn, tables[parent.lower()], to):
                    continue
                out.append("table '%s': its foreign key (%s) references '%s' (%s), which is neither its PRIMARY KEY "
                           "nor UNIQUE (every write to '%s' would fail with \"foreign key mismatch\")" % (
                               table, ", ".join(cols), parent, ", ".join(c or "its primary key" for c in to), table))
            if len(out) == before:  # a parent key SQLite refuses for another reason (a collation, say)
                out.append("table '%s': %s" % (table, exc))
    return out


def _has_parent_key(conn, parent, to):
    """Whether parent's columns `to` (None: its primary key) are its PRIMARY KEY or have a UNIQUE index."""
    info = conn.execute("SELECT name, pk FROM pragma_table_info(?)", (parent,)).fetchall()
    pk = [n.lower() for n, p in sorted(info, key=lambda r: r[1]) if p]
    wanted = sorted(pk) if all(c is None for c in to) else sorted((c or "").lower() for c in to)
    if not wanted or any(w not in {n.lower() for n, _ in info} for w in wanted):
        return False
    if wanted == sorted(pk):
        return True
    for _, index, unique, _, partial in conn.execute("SELECT seq, name, \"unique\", origin, partial FROM pragma_index_list(?)",
                                                     (parent,)):
        if unique and not partial:
            cols = sorted((r[0] or "").lower() for r in conn.execute("SELECT name FROM pragma_index_info(?)", (index,)))
            if cols == wanted:
                return True
    return False


def copy_schema(conn, scratch):
    """Build the schema of conn's main database (no rows) on the empty scratch connection; False when it cannot
    be built there (a virtual-table module only the application has, say)."""
    rows = conn.execute("SELECT type, name, sql FROM sqlite_master WHERE sql IS NOT NULL ORDER BY rowid").fetchall()
    virtual = [r for r in rows if r[0] == "table" and r[2].lstrip()[:14].upper().replace(" ", "") == "CREATEVIRTUAL"]
    order = {"table": 1, "index": 2, "view": 3, "trigger": 4}
    try:
        for _, _, sql in virtual:
            scratch.execute(sql)
        for kind, name, sql in sorted((r for r in rows if r not in virtual), key=lambda r: order.get(r[0], 5)):
            if name.lower().startswith("sqlite_") or kind not in order:
                continue
            if kind == "table" and scratch.execute("SELECT 1 FROM sqlite_master WHERE name = ? COLLATE NOCASE",
                                                   (name,)).fetchone():
                continue  # a virtual table's shadow table, made by its CREATE VIRTUAL TABLE
            scratch.execute(sql)
    except sqlite3.Error:
        return False
    return True


