"""Write the declaration of an existing database file: `inspect_database(path) -> str`.

The text is a Python module in the style of schema_dsl/abathur.py: imports
from schema_dsl.model, one Table(...) per table (sqlite_master order), the
named indexes, virtual tables, views and triggers, and `SCHEMA = Schema(...)`.
Every name and SQL text is written with repr(), so quotes, spaces and
keywords are safe. The file is opened read-only; nothing is written to it.

Supported: collations, DEFERRABLE, constraint names, ON CONFLICT clauses of PRIMARY KEY, UNIQUE and NOT
NULL (ABORT, SQLite's default, is written as none), composite and self-referencing foreign keys, foreign key
cycles, AUTOINCREMENT, WITHOUT ROWID and STRICT tables, partial and expression indexes, views, triggers,
virtual tables (their FTS3/4/5 and R*Tree shadow tables are left out).
Refused with a DeclarationError, each item naming its object and what to do: generated columns, a DESC or
COLLATE on a PRIMARY KEY or UNIQUE key column (INTEGER PRIMARY KEY DESC included), collations the application defines, foreign keys to a missing table or column, names
with surrounding white space or control characters. A non-default auto_vacuum, encoding or page_size is
named in a comment. Index keys keep their own COLLATE (where it differs from the column's) and an
expression's text; CHECK, partial-index and expression texts keep the quotes of a "name" that is no column
(SQLite read it as a string), so they mean what they meant.

Before returning, the text is executed and its Schema built: a declaration
that would not load is never written; the error names the object.
"""
from __future__ import annotations

import os
import sqlite3

from ..errors import DatabaseFileError, DeclarationError, SchemagenError
from ..model import Expr, Literal
from ..sqlite import dbfile, ddl, structure
from .introspect import read_live, view_models

HEADER = '''"""Declaration of the SQLite database %s, written by `schemagen inspect`.

Review it, add comments and serves-queries, then render with `schemagen render`.
"""
from schema_dsl.model import (Check, Column, Expr, ForeignKey, Index, IndexColumn, Pragma, PrimaryKey, Schema,
                              Table, Trigger, Unique, View, VirtualTable)

# Per-connection PRAGMAs (foreign_keys, busy_timeout, synchronous, wal_autocheckpoint, ...) are not stored in
# a database file, so they cannot be read from it: declare the ones your application uses by hand, e.g.
# Pragma("foreign_keys", "ON"), Pragma("busy_timeout", 5000).
'''


def _default(dflt):
    """A readable Python value for a stored default where it is exactly a literal, else the SQL as an Expr."""
    if dflt is None:
        return None
    if isinstance(dflt, Expr):
        tokens = ddl.tokenize(dflt.sql)
        if len(tokens) == 1 and tokens[0][0] == "string" and "'" + tokens[0][1].replace("'", "''") + "'" == dflt.sql:
            return Literal(tokens[0][1])
        signed = len(tokens) == 2 and tokens[0] == ("op", "-") and tokens[1][0] == "number"  # DEFAULT -1
        if (len(tokens) == 1 and tokens[0][0] == "number") or signed:
            for kind in (int, float):
                try:
                    value = kind(dflt.sql)
                except ValueError:
                    continue
                if repr(value) == dflt.sql:
                    return Literal(value)
    return dflt


def _args(*positional, **named):
    out = [repr(p) for p in positional]
    out += ["%s=%s" % (k, v) for k, v in named.items()]
    return ", ".join(out)


def _column(c):
    named = {}
    if c.not_null:
        named["not_null"] = "True"
    default = _default(c.default)
    if isinstance(default, Literal):
        named["default"] = repr(default.value)
    elif default is not None:
        named["default"] = "Expr(%r)" % default.sql
    if c.collate:
        named["collate"] = repr(c.collate)
    if c.not_null_on_conflict:
        named["not_null_on_conflict"] = repr(c.not_null_on_conflict)
    return "Column(%s)" % _args(c.name, c.type, **named)


def _foreign_key(f):
    named = {}
    for key in ("on_delete", "on_update"):
        if getattr(f, key) != "NO ACTION":
            named[key] = repr(getattr(f, key))
    if f.deferrable:
        named["deferrable"] = repr(f.deferrable)
    if f.name:
        named["name"] = repr(f.name)
    return "ForeignKey(%s)" % _args(list(f.columns), f.ref_table, list(f.ref_columns), **named)


def _table(t):
    lines = ["    Table(", "        %r," % t.name, "        columns=["]
    lines += ["            %s," % _column(c) for c in t.columns]
    lines.append("        ],")
    if t.primary_key is not None:
        auto = ", autoincrement=True" if t.primary_key.autoincrement else ""
        if t.primary_key.on_conflict:
            auto += ", on_conflict=%r" % t.primary_key.on_conflict
        lines.append("        primary_key=PrimaryKey(%r%s)," % (list(t.primary_key.columns), auto))
    if t.uniques:
        lines.append("        uniques=[%s]," % ", ".join(
            "Unique(%s)" % _args(list(u.columns), **({"name": repr(u.name)} if u.name else {}),
                                 **({"on_conflict": repr(u.on_conflict)} if u.on_conflict else {})) for u in t.uniques))
    if t.checks:
        lines.append("        checks=[")
        lines += ["            Check(%s)," % _args(ch.expr, **({"name": repr(ch.name)} if ch.name else {}))
                  for ch in t.checks]
        lines.append("        ],")
    if t.foreign_keys:
        lines.append("        foreign_keys=[")
        lines += ["            %s," % _foreign_key(f) for f in t.foreign_keys]
        lines.append("        ],")
    if t.without_rowid:
        lines.append("        without_rowid=True,")
    if t.strict:
        lines.append("        strict=True,")
    lines.append("    ),")
    return lines


def _index(ix):
    cols = ", ".join(
        "IndexColumn(%s)" % _args(c.name, **({"desc": "True"} if c.desc else {}),
                                  **({"expression": "True"} if c.expression else {}),
                                  **({"collate": repr(c.collate)} if c.collate else {}))
        if (c.desc or c.expression or c.collate or len(c.name.split()) != 1) else repr(c.name) for c in ix.columns)
    named = {}
    if ix.unique:
        named["unique"] = "True"
    if ix.where:
        named["where"] = repr(ix.where)
    return "    Index(%s, %s, [%s]%s)," % (repr(ix.name), repr(ix.table), cols,
                                          "".join(", %s=%s" % kv for kv in named.items()))


def _odd_keys(conn, name, info):
    """The PRIMARY KEY and UNIQUE constraints with a key the model cannot hold: DESC, or a COLLATE other than the
    column's. Each as (constraint text, whether it is an INTEGER PRIMARY KEY DESC, which by an SQLite quirk is no
    rowid alias)."""
    collations = {c.lower(): v for c, v in ddl.table_options(info["sql"])["collate"].items()}
    types = {r[1].lower(): (r[2] or "").upper() for r in info["xinfo"]}
    out = []
    for row in info["index_list"]:  # seq, name, unique, origin, partial
        if row[3] not in ("pk", "u"):
            continue
        keys = [k for k in conn.execute("SELECT * FROM pragma_index_xinfo(?)", (row[1],)) if k[5] and k[2] is not None]
        texts, odd = [], False
        for _, _, column, desc, coll, _ in keys:
            coll, own = (coll or "BINARY").upper(), collations.get(column.lower(), "BINARY")
            odd = odd or bool(desc) or coll != own
            texts.append(column + (" COLLATE " + coll if coll != own else "") + (" DESC" if desc else ""))
        if odd:
            quirk = row[3] == "pk" and len(keys) == 1 and types.get(keys[0][2].lower()) == "INTEGER"
            out.append(("%s (%s)" % ("PRIMARY KEY" if row[3] == "pk" else "UNIQUE", ", ".join(texts)), quirk))
    return out


def _refuse_unsupported(raw, conn=None):
    """DeclarationError listing what the model cannot declare, each naming its table: never a silently different
    schema."""
    problems = []
    for name, info in raw["tables"].items():
        generated = [r[1] for r in info["xinfo"] if r[6] in (2, 3)]
        if generated:
            problems.append(
                "table '%s': generated columns (%s) are not supported by schemagen yet; declare the table by hand "
                "without them (for example as a view that computes them), or leave it out of the declaration"
                % (name, ", ".join(generated)))
        for g in structure.fk_groups(info["fks"]):
            parent = next((t for n, t in raw["tables"].items() if n.lower() == g["table"].lower()), None)
            have = {r[1].lower() for r in parent["xinfo"]} if parent is not None else set()
            missing = [c for c in g["to"] if c is not None and c.lower() not in have]
            if parent is None or missing:
                problems.append(
                    "table '%s', foreign key (%s): references %s, which the database does not have (SQLite accepts "
                    "that, and fails every write the key checks); rebuild the table without the foreign key, or create "
                    "what it references, then inspect again" % (
                        name, ", ".join(g["columns"]), "table '%s'" % g["table"] if parent is None else
                        ", ".join("column '%s.%s'" % (g["table"], c) for c in missing)))
        for key, quirk in _odd_keys(conn, name, info) if conn is not None else ():
            problems.append(
                "table '%s': %s: schemagen cannot declare a DESC or COLLATE on a PRIMARY KEY or UNIQUE key column%s; "
                "rebuild the table without it (give the column itself the COLLATE), or leave the table out of the "
                "declaration" % (name, key, " (and by an SQLite quirk this INTEGER PRIMARY KEY DESC is no rowid alias)"
                                 if quirk else ""))
    for what in _unfit_names(raw):
        problems.append("%s: the name has surrounding white space or a control character, which a declaration does "
                        "not accept; rename it in the database, then inspect again" % what)
    for what, collation in _application_collations(raw):
        problems.append(
            "%s: COLLATE %s is a collating sequence the application defines itself (SQLite has BINARY, NOCASE and "
            "RTRIM), so schemagen can neither create nor check it; use one of those, or leave the %s out of the "
            "declaration" % (what, collation, what.split()[0]))
    if problems:
        raise DeclarationError(problems)


def _unfit_names(raw):
    """The objects and columns whose names the model refuses for white space around them or a control character."""
    def unfit(name):
        return name != name.strip() or any(ord(ch) < 32 or 127 <= ord(ch) < 160 for ch in name)
    out = []
    for name, info in raw["tables"].items():
        out += ["table %r" % name] if unfit(name) else []
        out += ["table %r, column %r" % (name, r[1]) for r in info["xinfo"] if unfit(r[1])]
    for kind, key in (("index", "indexes"), ("view", "views"), ("trigger", "triggers"),
                      ("virtual table", "virtual_tables")):
        out += ["%s %r" % (kind, name) for name in raw.get(key, {}) if unfit(name)]
    return out


def _application_collations(raw):
    """(object, collation) for each column and index key whose collating sequence SQLite does not have built in."""
    out, tables = [], set()
    for name, info in raw["tables"].items():
        for column, coll in ddl.table_options(info["sql"])["collate"].items():
            if coll not in structure.BUILTIN_COLLATIONS:
                out.append(("table '%s', column '%s'" % (name, column), coll))
                tables.add(name.lower())
    for name, info in raw["indexes"].items():
        for row in info["xinfo"] if info["table"].lower() not in tables else ():  # seqno, cid, name, desc, coll, key
            if row[5] and (row[4] or "BINARY").upper() not in structure.BUILTIN_COLLATIONS:
                out.append(("index '%s'" % name, row[4]))
                break
    return out


def header_settings(conn):
    """The file's user_version and application_id where not 0, as (name, value as a declaration writes it)."""
    out = []
    for name in structure.HEADER_PRAGMAS:
        value = conn.execute("PRAGMA %s" % name).fetchone()[0]
        if value:  # application_id names a file format: written in hex, as such ids are published
            out.append((name, hex(value) if name == "application_id" else str(value)))
    return out


def _pragmas(conn, keep_versions=True):
    """The file's persistent settings: journal_mode, and (keep_versions) user_version and application_id where
    not 0. Without keep_versions they stay the application's: a declared user_version would be pinned, and
    the next version of the application (75 -> 76) would fail validate and be planned back to 75."""
    mode = str(conn.execute("PRAGMA journal_mode").fetchone()[0]).lower()
    out = ["    Pragma('journal_mode', %r, persistent=True)," % mode]
    for name, value in header_settings(conn):
        if keep_versions:
            out.append("    Pragma(%r, %s, persistent=True)," % (name, value))
        else:
            out.append("    # Pragma(%r, %s, persistent=True),  # left to the application (inspect --keep-user-version "
                       "declares it)" % (name, value))
    return out


# File settings a declaration cannot hold, with SQLite's defaults (what a file apply creates gets)
UNDECLARED_SETTINGS = (("auto_vacuum", 0, {0: "NONE", 1: "FULL", 2: "INCREMENTAL"}), ("encoding", "UTF-8", {}),
                       ("page_size", 4096, {}))


def _undeclared_settings(conn):
    """Comment lines naming the file's settings that differ from SQLite's defaults and that no declaration holds."""
    found = []
    for pragma, default, names in UNDECLARED_SETTINGS:
        value = conn.execute("PRAGMA %s" % pragma).fetchone()[0]
        if value != default:
            found.append("%s = %s" % (pragma, names.get(value, value)))
    if not found:
        return []
    return ["# Not declared (a declaration has no place for them): this file has %s." % ", ".join(found),
            "# A file `schemagen apply` creates gets SQLite's defaults: set them yourself before its first table.", ""]


def declaration_text(conn, name, keep_versions=True):
    """The declaration text of the main database of an open connection.

    keep_versions: declare user_version and application_id (see _pragmas); inspect_database leaves them out
    by default."""
    raw = structure.read_raw(conn)
    _refuse_unsupported(raw, conn)
    live = read_live(conn, raw)
    views, triggers = view_models(live)
    pragmas = _pragmas(conn, keep_versions)
    lines = [HEADER % repr(name)] + _undeclared_settings(conn)
    lines.append("TABLES = [")
    for t in live.tables.values():
        lines += _table(t)
    lines.append("]")
    lines.append("")
    lines.append("INDEXES = [")
    lines += [_index(ix) for ix in live.indexes.values()]
    lines.append("]")
    lines.append("")
    lines.append("VIRTUAL_TABLES = [")
    lines += ["    VirtualTable(%s)," % _args(v.name, v.module, v.args) for v in live.virtual_tables.values()]
    lines.append("]")
    lines.append("")
    lines.append("VIEWS = [")
    lines += ["    View(%s)," % _args(v.name, v.sql) for v in views]
    lines.append("]")
    lines.append("")
    lines.append("TRIGGERS = [")
    lines += ["    Trigger(%s)," % _args(t.name, t.table, t.sql) for t in triggers]
    lines.append("]")
    lines.append("")
    lines.append("SCHEMA = Schema(")
    lines.append("    name=%r," % name)
    lines.append("    tables=TABLES,")
    lines.append("    indexes=INDEXES,")
    lines.append("    virtual_tables=VIRTUAL_TABLES,")
    lines.append("    views=VIEWS,")
    lines.append("    triggers=TRIGGERS,")
    lines.append("    pragmas=[")
    lines += pragmas
    lines.append("    ],")
    lines.append(")")
    return "\n".join(lines) + "\n"


def load_text(text, label="<inspect>"):
    """Execute declaration text and return its SCHEMA; DeclarationError naming the object when it does not load."""
    namespace = {"__name__": "schemagen_inspected"}
    try:
        exec(compile(text, label, "exec"), namespace)
    except DeclarationError as exc:
        raise DeclarationError(["%s: the written declaration does not load: %s" % (label, p) for p in exc.problems]) from None
    except SchemagenError:
        raise
    except Exception as exc:  # an attrs validator (ValueError, TypeError) or a syntax error names its object
        raise DeclarationError(["%s: the written declaration does not load: %s: %s" % (
            label, type(exc).__name__, exc)]) from None
    return namespace["SCHEMA"]


def inspect_database(path, name=None, keep_versions=False):
    """The text of a Python declaration file that declares the database at path (opened read-only).

    name: the schema's name (default: the file's stem). keep_versions: declare the file's user_version and
    application_id too; by default they are left to the application (written as comments), since a declared
    user_version is pinned: apply would set it back after the application moves it on.
    """
    return inspect_file(path, name, keep_versions)[0]


def inspect_file(path, name=None, keep_versions=False):
    """(inspect_database's text, header_settings of the file): what inspect wrote, and the settings it kept
    (keep_versions) or left to the application."""
    conn = dbfile.open_existing(path, "ro")
    try:
        name = name or os.path.splitext(os.path.basename(os.fspath(path)))[0] or "database"
        text = declaration_text(conn, name, keep_versions)
        settings = header_settings(conn)
    except sqlite3.DatabaseError as exc:  # an SQLite header over garbage: the first read finds it out
        raise DatabaseFileError(dbfile.describe_sqlite_error(path, exc)) from None
    finally:
        conn.close()
    load_text(text, "declaration of %r" % os.fspath(path))
    return text, settings
