# Structure of an SQLite database as plain data, read through PRAGMAs.
#
# This module needs only the standard library: its source is embedded verbatim
# in the generated, standalone validate_schema.py (after the SQL tokenizer and
# DDL reader it reads statements with, sqlite/ddl.py), and the library reads live
# databases through the same functions, so the validator and schemagen can
# never disagree about what a database looks like.
#
# A "structure" is a JSON-able dict:
#   {"tables": {name: {"columns": [...], "autoincrement": bool, "fks": [...],
#                      "uniques": [[col, ...], ...], "checks": [expr, ...]}},
#    "indexes": {name: {"table": str, "unique": bool,
#                       "columns": [[col, desc], ...], "where": expr or None}},
#    "views": {name: body}, "triggers": {name: {"table": str, "sql": body}},
#    "virtual_tables": {name: {"module": str, "args": normalized args}}}
# An index key on an expression is ["<expression>", desc, {"expr": its
# normalized text}], the text read from the stored CREATE INDEX (a COLLATE
# written after it included); a key on a column whose collating sequence
# (its own COLLATE, else the column's) is not BINARY is [col, desc,
# {"collate": NAME}]. An expected key ["<expression>", desc] without its
# text matches any expression key (structures written before the text was
# recorded).
# A table's "on_conflict" lists the ON CONFLICT clauses of its stored
# CREATE TABLE (PRAGMAs do not show them), each as [constraint, [column,
# ...], resolution] with constraint "PRIMARY KEY", "UNIQUE" or "NOT NULL";
# ABORT, SQLite's default, is left out.
# Keys that hold their default are left out, so that a structure without
# them reads as before: a column's "collate" (absent: BINARY), a foreign
# key's "deferrable" (absent: not deferrable), a table's "without_rowid",
# "strict" (absent: False) and "on_conflict" (absent: none), and "views",
# "triggers", "virtual_tables" (absent: none). The body of a view or trigger is its normalized CREATE
# statement after the name. The shadow tables of FTS3/4/5 and R*Tree virtual
# tables are left out, like sqlite_sequence and sqlite_stat*.
# SQL text (defaults, CHECK expressions, partial-index WHERE clauses) is kept in
# normalized form (see normalize_sql), so that two spellings of one expression
# compare equal. Column order is not part of the structure: ALTER TABLE ADD
# COLUMN appends, and a migrated table must still match.

# The SQL tokenizer and DDL reader: validate_schema.py embeds ddl.py's source in place of this import
from .ddl import (conflict_clauses, index_key_texts, index_where, is_virtual, normalize_sql, table_options,
                  view_body, virtual_table_parts)

EXPRESSION = "<expression>"  # the column name of an index on an expression
# Settings kept in the database header (32-bit integers): declared persistent, set inside a transaction.
HEADER_PRAGMAS = ("user_version", "application_id")
BUILTIN_COLLATIONS = ("BINARY", "NOCASE", "RTRIM")  # any other is defined by an application on its connections
# schemagen's own record of what apply did (migrate/history.py): never part of the user's structure
HISTORY_TABLE = "_schemagen_history"


# Shadow tables of the virtual table modules SQLite ships (FTS3/4, FTS5, R*Tree): NAME_<suffix>.
SHADOW_SUFFIXES = ("data", "idx", "content", "docsize", "config", "segments", "segdir", "stat", "node", "parent", "rowid")
# Each module's own suffixes, as its xShadowName tells SQLite: a table "docs_stat" beside an FTS5 "docs" is the
# application's. A module not listed has the whole list.
MODULE_SHADOW_SUFFIXES = {
    "fts5": ("data", "idx", "content", "docsize", "config"),
    "fts3": ("content", "segments", "segdir", "docsize", "stat"),
    "fts4": ("content", "segments", "segdir", "docsize", "stat"),
    "rtree": ("node", "parent", "rowid"),
    "rtree_i32": ("node", "parent", "rowid"),
    "geopoly": ("node", "parent", "rowid"),
}


def conflict_label(constraint, columns):
    """How a plan and a comparison name a constraint's ON CONFLICT clause."""
    if constraint == "NOT NULL":
        return "column '%s' NOT NULL" % columns[0]
    return "%s (%s)" % (constraint, ", ".join(columns))


def conflict_keys(table):
    """The (constraint, (column lower, ...)) a table structure has that can carry an ON CONFLICT clause."""
    pk = sorted((c["pk"], name.lower()) for name, c in table["columns"].items() if c["pk"])
    keys = {("NOT NULL", (name.lower(),)) for name, c in table["columns"].items() if c["notnull"]}
    keys |= {("UNIQUE", tuple(c.lower() for c in u)) for u in table["uniques"]}
    return keys | ({("PRIMARY KEY", tuple(name for _, name in pk))} if pk else set())


def conflict_map(table):
    """A table structure's ON CONFLICT clauses as {(constraint, (column lower, ...)): resolution}."""
    return {(kind, tuple(c.lower() for c in columns)): resolution
            for kind, columns, resolution in table.get("on_conflict", ())}


def index_key(name, desc, collate=None, expression=None):
    """One key of an index structure: expression (its text) for a key on an expression, else the column
    name and its collating sequence (None or BINARY: the default, left out)."""
    if expression is not None:
        return [EXPRESSION, bool(desc), {"expr": normalize_sql(expression)}]
    collate = (collate or "BINARY").upper()
    return [name, bool(desc)] + ([{"collate": collate}] if collate != "BINARY" else [])


# schemagen's own objects of an interrupted online apply (sqlite/leftovers.py, migrate/online.py): never the user's
LEFTOVER_PREFIXES = ("_schemagen_new_", "_schemagen_old_", "_schemagen_ix_", "_schemagen_sync_", "_schemagen_online_")


def is_leftover(name):
    return name.lower().startswith(LEFTOVER_PREFIXES)


def read_raw(conn, known=None):
    """Read the schema of the main database of an open sqlite3 connection.

    Returns {"tables": {name: {...}}, "indexes": {name: {...}},
    "views": {name: sql}, "triggers": {name: {"table":, "sql":}}}, with the
    PRAGMA rows as SQLite gives them, and "master": the sqlite_master rows
    it read. sqlite_* tables, schemagen's own
    history table and the automatic indexes of PRIMARY KEY and UNIQUE
    constraints are left out.

    known: what read_raw read from this database earlier on the same
    connection (apply: before its plan, then again before COMMIT). A table
    whose CREATE statement and whose indexes' rows in sqlite_master have the
    same text as then, and an index whose CREATE statement and whose table's
    have, are taken from it instead of read again: SQLite derives all the
    PRAGMAs report from that text, so the result is the one a full read gives.
    """
    raw = {"tables": {}, "indexes": {}, "views": {}, "triggers": {}, "virtual_tables": {}}
    master = conn.execute(
        "SELECT type, name, tbl_name, sql FROM sqlite_master ORDER BY rowid").fetchall()
    raw["master"] = master
    virtual = {name.lower(): virtual_table_parts(sql)[0].lower()
               for kind, name, _, sql in master if kind == "table" and is_virtual(sql)}
    shadow = {"%s_%s" % (v, suffix) for v, module in virtual.items()
              for suffix in MODULE_SHADOW_SUFFIXES.get(module, SHADOW_SUFFIXES)}
    now = before = None
    if known is not None and known.get("master") is not None:
        now, before = _schema_texts(master), _schema_texts(known["master"])
    tables, indexes = [], []  # those read here
    for kind, name, table, sql in master:
        if is_leftover(name):
            continue  # an interrupted online apply's: reported by validate, dropped by the next apply
        if kind == "table" and name.lower() in virtual:
            raw["virtual_tables"][name] = sql
        elif kind == "table" and name.lower() in shadow:
            continue
        elif name.lower() == HISTORY_TABLE or table.lower() == HISTORY_TABLE:  # schemagen's own record
            continue
        elif kind == "table" and not name.startswith("sqlite_"):
            if now is not None and name in known["tables"] and before.get((kind, name)) == now[(kind, name)]:
                raw["tables"][name] = dict(known["tables"][name])
            else:
                raw["tables"][name] = {"sql": sql}
                tables.append(name)
        elif kind == "index" and sql is not None:
            if now is not None and name in known["indexes"] and before.get((kind, name)) == now[(kind, name)]:
                raw["indexes"][name] = dict(known["indexes"][name])
            else:
                raw["indexes"][name] = {"table": table, "sql": sql}
                indexes.append(name)
        elif kind == "view":
            raw["views"][name] = sql
        elif kind == "trigger":
            raw["triggers"][name] = {"table": table, "sql": sql}
    for name in tables:
        info = raw["tables"][name]
        info["xinfo"] = conn.execute("SELECT * FROM pragma_table_xinfo(?)", (name,)).fetchall()
        info["fks"] = conn.execute("SELECT * FROM pragma_foreign_key_list(?)", (name,)).fetchall()
        info["index_list"] = conn.execute("SELECT * FROM pragma_index_list(?)", (name,)).fetchall()
    for name in indexes:
        raw["indexes"][name]["xinfo"] = conn.execute("SELECT * FROM pragma_index_xinfo(?)", (name,)).fetchall()
    for name in tables:
        info = raw["tables"][name]
        info["unique_columns"] = [
            [r[2] for r in conn.execute("SELECT * FROM pragma_index_info(?)", (row[1],))]
            for row in info["index_list"] if row[3] == "u"
        ]
    for name, info in raw["indexes"].items():
        info["unique"] = any(row[1] == name and row[2] for row in raw["tables"].get(info["table"], {}).get("index_list", []))
    return raw


def _schema_texts(master):
    """What the PRAGMAs on each table and index derive from, by (type, name): a table's CREATE statement and its
    indexes' rows (the automatic ones included), an index's CREATE statement and its table's."""
    sql = {(kind, name.lower()): text for kind, name, _, text in master}
    on = {}
    for kind, name, table, text in master:
        if kind == "index":
            on.setdefault(table.lower(), []).append((name, text))
    out = {}
    for kind, name, table, text in master:
        if kind == "table":
            out[(kind, name)] = (text, sorted(on.get(name.lower(), []), key=repr))
        elif kind == "index":
            out[(kind, name)] = (text, sql.get(("table", table.lower())))
    return out


def fk_groups(fk_rows):
    """PRAGMA foreign_key_list rows grouped by constraint id, ordered by seq."""
    groups = {}
    for row in fk_rows:
        groups.setdefault(row[0], []).append(row)
    result = []
    for _id, rows in sorted(groups.items()):
        rows.sort(key=lambda r: r[1])
        result.append({
            "columns": [r[3] for r in rows],
            "table": rows[0][2],
            "to": [r[4] for r in rows],
            "on_update": rows[0][5],
            "on_delete": rows[0][6],
        })
    return result


def to_structure(raw, known=None):
    """The comparable structure of a database read by read_raw.

    known: (an earlier read_raw of the same database, its to_structure): a table or index whose rows read_raw
    gives are the ones it gave then keeps the structure made of them then (see read_raw's known).
    """
    before = known[0] if known is not None else {"tables": {}, "indexes": {}}
    tables = {}
    for name, info in raw["tables"].items():
        same = before["tables"].get(name)
        tables[name] = known[1]["tables"][name] if same is not None and same == info and name in known[1]["tables"] \
            else _table_structure(info)
    indexes = {}
    for name, info in raw["indexes"].items():
        same = before["indexes"].get(name)
        indexes[name] = known[1]["indexes"][name] if same is not None and same == info and \
            name in known[1]["indexes"] else _index_structure(info)
    struct = {"tables": tables, "indexes": indexes}
    if raw.get("views"):
        struct["views"] = {name: view_body(sql) for name, sql in raw["views"].items()}
    if raw.get("triggers"):
        struct["triggers"] = {name: {"table": t["table"], "sql": view_body(t["sql"])} for name, t in raw["triggers"].items()}
    if raw.get("virtual_tables"):
        struct["virtual_tables"] = {}
        for name, sql in raw["virtual_tables"].items():
            module, args = virtual_table_parts(sql)
            struct["virtual_tables"][name] = {"module": module.lower(), "args": normalize_sql(args)}
    return struct


def _table_structure(info):
    options = table_options(info["sql"])
    columns = {}
    for r in info["xinfo"]:
        if r[6] in (0, 2, 3):
            columns[r[1]] = {"type": (r[2] or "").upper(), "notnull": bool(r[3]),
                             "default": normalize_sql(r[4]), "pk": r[5]}
            if r[1] in options["collate"]:
                columns[r[1]]["collate"] = options["collate"][r[1]]
    fks = fk_groups(info["fks"])
    for fk in fks:
        key = (tuple(c.lower() for c in fk["columns"]), fk["table"].lower())
        found = next((d for d in options["deferrable"] if d[:2] == key), None)
        if found is not None:
            options["deferrable"].remove(found)
            if found[2]:
                fk["deferrable"] = found[2]
    table = {
        "columns": columns,
        "autoincrement": options["autoincrement"],
        "fks": sorted(fks, key=repr),
        "uniques": sorted(info["unique_columns"]),
        "checks": sorted(normalize_sql(c) for c in options["checks"]),
    }
    for key in ("without_rowid", "strict"):
        if options[key]:
            table[key] = True
    clauses = conflict_clauses(info["sql"])
    if clauses:
        table["on_conflict"] = clauses
    return table


def _index_structure(info):
    keys = [r for r in info["xinfo"] if r[5]]  # index_xinfo: seqno, cid, name, desc, coll, key
    texts = index_key_texts(info["sql"]) if any(r[2] is None for r in keys) else ()
    return {
        "table": info["table"],
        "unique": bool(info["unique"]),
        "columns": [index_key(r[2], r[3], r[4]) if r[2] is not None else
                    index_key(None, r[3], expression=texts[k][0]) if k < len(texts) else [EXPRESSION, bool(r[3])]
                    for k, r in enumerate(keys)],
        "where": index_where(info["sql"]),
    }


def read_structure(conn):
    """The comparable structure of the main database of an open connection."""
    return to_structure(read_raw(conn))


def _cols(columns):
    def key(item):
        extra = item[2] if len(item) > 2 else {}
        text = extra.get("expr", item[0]) + (" COLLATE " + extra["collate"] if "collate" in extra else "")
        return text + (" DESC" if item[1] else "")
    return "(" + ", ".join(key(item) for item in columns) + ")"


def _same_keys(expected, actual):
    """Index keys equal; an expected ["<expression>", desc] without its text matches any expression key."""
    return len(expected) == len(actual) and all(
        e == a or (len(e) == 2 and e[0] == EXPRESSION and list(a[:2]) == list(e)) for e, a in zip(expected, actual))


def _fk_text(fk):
    return "(%s) -> %s(%s) ON DELETE %s ON UPDATE %s%s" % (
        ", ".join(fk["columns"]), fk["table"], ", ".join(str(c) for c in fk["to"]),
        fk["on_delete"], fk["on_update"], " DEFERRABLE " + fk["deferrable"] if fk.get("deferrable") else "")


def fold_case(struct):
    """The structure with every identifier lower-cased: SQLite compares names case-insensitively."""
    def low(names):
        return [n.lower() if isinstance(n, str) else n for n in names]
    tables = {}
    for name, t in struct["tables"].items():
        tables[name.lower()] = dict(
            t,
            columns={c.lower(): v for c, v in t["columns"].items()},
            fks=sorted((dict(f, columns=low(f["columns"]), table=f["table"].lower(), to=low(f["to"])) for f in t["fks"]), key=repr),
            uniques=sorted(low(u) for u in t["uniques"]),
        )
        if t.get("on_conflict"):
            tables[name.lower()]["on_conflict"] = sorted([k, low(c), r] for k, c, r in t["on_conflict"])
    indexes = {name.lower(): dict(ix, table=ix["table"].lower(), columns=[[c.lower(), *rest] for c, *rest in ix["columns"]])
               for name, ix in struct["indexes"].items()}
    out = {"tables": tables, "indexes": indexes}
    if struct.get("views"):
        out["views"] = {name.lower(): v for name, v in struct["views"].items()}
    if struct.get("triggers"):
        out["triggers"] = {name.lower(): dict(t, table=t["table"].lower()) for name, t in struct["triggers"].items()}
    if struct.get("virtual_tables"):
        out["virtual_tables"] = {name.lower(): v for name, v in struct["virtual_tables"].items()}
    return out


def compare(expected, actual):
    """Differences between two structures, as (kind, message) pairs.

    kind is "extra" for what the database has beyond the expected structure
    (a user's own table, column or index), "missing" for what it lacks, and
    "differs" for an object present in both whose definition differs.
    """
    out = []
    expected, actual = fold_case(expected), fold_case(actual)
    exp_t, act_t = expected["tables"], actual["tables"]
    for name, exp in exp_t.items():
        act = act_t.get(name)
        if act is None:
            out.append(("missing", "missing table '%s'" % name))
            continue
        where = "table '%s'" % name
        for col, ec in exp["columns"].items():
            ac = act["columns"].get(col)
            if ac is None:
                out.append(("missing", "%s: missing column '%s'" % (where, col)))
                continue
            for key, label in (("type", "type"), ("notnull", "NOT NULL"), ("default", "default"), ("pk", "primary key position"),
                               ("collate", "COLLATE")):
                if ec.get(key) != ac.get(key):
                    out.append(("differs", "%s, column '%s': %s is %r, expected %r" % (where, col, label, ac.get(key), ec.get(key))))
        for col in act["columns"]:
            if col not in exp["columns"]:
                out.append(("extra", "%s: extra column '%s'" % (where, col)))
        if exp["autoincrement"] != act["autoincrement"]:
            out.append(("differs", "%s: AUTOINCREMENT is %s, expected %s" % (where, act["autoincrement"], exp["autoincrement"])))
        for key, label in (("without_rowid", "WITHOUT ROWID"), ("strict", "STRICT")):
            if bool(exp.get(key)) != bool(act.get(key)):
                out.append(("differs", "%s: %s is %s, expected %s" % (where, label, bool(act.get(key)), bool(exp.get(key)))))
        exp_c, act_c = conflict_map(exp), conflict_map(act)
        for key in sorted((set(exp_c) | set(act_c)) & conflict_keys(exp) & conflict_keys(act)):
            if exp_c.get(key, "ABORT") != act_c.get(key, "ABORT"):  # a missing or extra constraint is said apart
                out.append(("differs", "%s: %s: ON CONFLICT is %s, expected %s" % (
                    where, conflict_label(*key), act_c.get(key, "ABORT"), exp_c.get(key, "ABORT"))))
        for fk in exp["fks"]:
            if fk not in act["fks"]:
                out.append(("missing", "%s: missing foreign key %s" % (where, _fk_text(fk))))
        for fk in act["fks"]:
            if fk not in exp["fks"]:
                out.append(("extra", "%s: extra foreign key %s" % (where, _fk_text(fk))))
        for key, label in (("uniques", "UNIQUE"), ("checks", "CHECK")):
            for item in exp[key]:
                if item not in act[key]:
                    out.append(("missing", "%s: missing %s %s" % (where, label, item)))
            for item in act[key]:
                if item not in exp[key]:
                    out.append(("extra", "%s: extra %s %s" % (where, label, item)))
    for name in act_t:
        if name not in exp_t:
            out.append(("extra", "extra table '%s'" % name))
    exp_i, act_i = expected["indexes"], actual["indexes"]
    for name, exp in exp_i.items():
        act = act_i.get(name)
        if act is None:
            out.append(("missing", "missing index '%s' on %s%s" % (name, exp["table"], _cols(exp["columns"]))))
            continue
        where = "index '%s'" % name
        if act["table"] != exp["table"]:
            out.append(("differs", "%s: on table '%s', expected '%s'" % (where, act["table"], exp["table"])))
        if not _same_keys(exp["columns"], act["columns"]):
            out.append(("differs", "%s: columns are %s, expected %s" % (where, _cols(act["columns"]), _cols(exp["columns"]))))
        if act["unique"] != exp["unique"]:
            out.append(("differs", "%s: UNIQUE is %s, expected %s" % (where, act["unique"], exp["unique"])))
        if act["where"] != exp["where"]:
            out.append(("differs", "%s: partial WHERE is %r, expected %r" % (where, act["where"], exp["where"])))
    for name in act_i:
        if name not in exp_i:
            out.append(("extra", "extra index '%s' on table '%s'" % (name, act_i[name]["table"])))
    out += _compare_named(expected, actual)
    for key, label in (("tables", "tables"), ("indexes", "indexes")):
        found = sum(1 for name in expected[key] if name in actual[key])
        extra = sum(1 for name in actual[key] if name not in expected[key])
        if found != len(expected[key]):
            out.append(("missing", "expected %d %s, found %d of them" % (len(expected[key]), label, found)))
        if extra:
            out.append(("extra", "%d %s beyond the declared %d" % (extra, label, len(expected[key]))))
    return out


def _compare_named(expected, actual):
    """Differences in views, triggers and virtual tables (compared by name, then by their normalized SQL)."""
    out = []
    for key, label in (("virtual_tables", "virtual table"), ("views", "view"), ("triggers", "trigger")):
        exp, act = expected.get(key) or {}, actual.get(key) or {}
        for name, e in exp.items():
            if name not in act:
                out.append(("missing", "missing %s '%s'" % (label, name)))
            elif act[name] != e:
                out.append(("differs", "%s '%s': definition is %r, expected %r" % (label, name, act[name], e)))
        for name in act:
            if name not in exp:
                out.append(("extra", "extra %s '%s'" % (label, name)))
    return out
