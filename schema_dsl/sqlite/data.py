"""Reading data facts through PRAGMAs and probes (standard library only)."""
import sqlite3

# written in place of the SQLite version in compiled lint findings, filled in where they are shown
SQLITE_VERSION_MARK = "{sqlite_version}"


def foreign_key_violations(conn, tables=None):
    """PRAGMA foreign_key_check rows as dicts (table, rowid, parent, fkid).

    tables: check only the foreign keys of these (child) tables.
    """
    if tables is None:
        rows = conn.execute("PRAGMA foreign_key_check").fetchall()
    else:
        rows = [r for t in tables for r in conn.execute("SELECT * FROM pragma_foreign_key_check(?)", (t,))]
    return [{"table": r[0], "rowid": r[1], "parent": r[2], "fkid": r[3]} for r in rows]


def checkable_foreign_key_violations(conn):
    """foreign_key_violations of every table whose foreign keys can be checked: a table with a foreign key that has
    no parent key (PRAGMA foreign_key_check fails "foreign key mismatch") is left out, broken before anything
    ran (the removal checks name such breakage where a change causes it)."""
    out = []
    for (name,) in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite\\_%' "
                                "ESCAPE '\\' ORDER BY name").fetchall():
        try:
            out += foreign_key_violations(conn, [name])
        except sqlite3.OperationalError:
            continue
    return out


def describe_violation(conn, v):
    """'audit rowid 7: task_id = 'x' has no row in tasks'."""
    try:
        fks = [r for r in conn.execute("SELECT * FROM pragma_foreign_key_list(?)", (v["table"],)) if r[0] == v["fkid"]]
        cols = [r[3] for r in sorted(fks, key=lambda r: r[1])]
        values = conn.execute("SELECT %s FROM %s WHERE rowid = ?" % (
            ", ".join('"%s"' % c.replace('"', '""') for c in cols), '"%s"' % v["table"].replace('"', '""')),
            (v["rowid"],)).fetchone() if cols and v["rowid"] is not None else None
        what = ", ".join("%s = %r" % (c, x) for c, x in zip(cols, values or ())) or "foreign key %d" % v["fkid"]
    except Exception:  # a WITHOUT ROWID table or a broken definition: say what PRAGMA said
        what = "foreign key %d" % v["fkid"]
    return "table '%s' rowid %s: %s has no parent row in '%s'" % (v["table"], v["rowid"], what, v["parent"])


def json_valid_null(conn=None):
    """What this SQLite returns for json_valid(NULL): 0, None (NULL), or 'unavailable'.

    The one probe: lint's json-valid-nullable rule asks it too.
    """
    own = conn is None
    conn = sqlite3.connect(":memory:") if own else conn
    try:
        return conn.execute("SELECT json_valid(NULL)").fetchone()[0]
    except sqlite3.Error:
        return "unavailable"
    finally:
        if own:
            conn.close()
