# Structure of an SQLite database as plain data, read through PRAGMAs.
#
# This module needs only the standard library: its source is embedded verbatim
# in the generated, standalone validate_schema.py, and the library reads live
# databases through the same functions, so the validator and schemagen can
# never disagree about what a database looks like.
#
# A "structure" is a JSON-able dict:
#   {"tables": {name: {"columns": [...], "autoincrement": bool, "fks": [...],
#                      "uniques": [[col, ...], ...], "checks": [expr, ...]}},
#    "indexes": {name: {"table": str, "unique": bool,
#                       "columns": [[col, desc], ...], "where": expr or None}}}
# SQL text (defaults, CHECK expressions, partial-index WHERE clauses) is kept in
# normalized form (see normalize_sql), so that two spellings of one expression
# compare equal. Column order is not part of the structure: ALTER TABLE ADD
# COLUMN appends, and a migrated table must still match.
import functools
import re

_WORD = re.compile(r"[A-Za-z_][A-Za-z0-9_$]*\Z")
EXPRESSION = "<expression>"  # the column name of an index on an expression


def tokenize(sql):
    """Split SQL text into tokens, dropping comments and whitespace.

    Returns a list of (kind, text) with kind in
    {"word", "ident", "string", "blob", "number", "op"}; quoted identifiers
    are returned unquoted with kind "ident".
    """
    return [(kind, text) for kind, text, _, _ in token_spans(sql)]


_TOKEN = re.compile(r"""
    (?P<skip>\s+|--[^\n]*|/\*.*?(?:\*/|\Z))
  | '(?P<string>(?:[^']|'')*)'?
  | "(?P<dq>(?:[^"]|"")*)"?
  | `(?P<bq>(?:[^`]|``)*)`?
  | \[(?P<br>[^\]]*)\]?
  | (?P<word>(?:[^\W\d]|_)[\w$]*)
  | (?P<number>(?:\d|\.\d)(?:[\w.]|(?<=[eE])[+-])*)
  | (?P<op>->>|<=|>=|<>|!=|==|\|\||<<|>>|->|.)
""", re.S | re.X)


def token_spans(sql):
    """The tokens of tokenize, each as (kind, text, start, end) offsets into sql."""
    tokens = []
    for m in _TOKEN.finditer(sql):
        kind = m.lastgroup
        if kind == "skip":
            continue
        start, end = m.span()
        if kind == "string":
            text = m.group("string").replace("''", "'")
            prev = tokens[-1] if tokens else None
            if prev and prev[0] == "word" and prev[1] in ("x", "X") and prev[3] == start:
                tokens[-1] = ("blob", "x'" + text.lower() + "'", prev[2], end)
                continue
            tokens.append(("string", text, start, end))
        elif kind == "dq":
            tokens.append(("ident", m.group("dq").replace('""', '"'), start, end))
        elif kind == "bq":
            tokens.append(("ident", m.group("bq").replace("``", "`"), start, end))
        elif kind == "br":
            tokens.append(("ident", m.group("br"), start, end))
        else:
            tokens.append((kind, m.group(kind), start, end))
    return tokens


def _token_text(kind, text):
    if kind == "string":
        return "'" + text.replace("'", "''") + "'"
    if kind in ("word", "ident"):
        if kind == "ident" and not _WORD.match(text):
            return '"' + text.replace('"', '""') + '"'
        return text.lower()
    return text


def join_tokens(tokens):
    """Write tokens back as one canonical line of SQL."""
    out = []
    for kind, text in tokens:
        piece = _token_text(kind, text)
        if out and not (piece in (")", ",", ".") or out[-1] in ("(", ".")
                        or (piece == "(" and kind == "op" and out[-1][-1:].isalnum() and _prev_is_func(out))):
            out.append(" ")
        out.append(piece)
    return "".join(out)


def _prev_is_func(out):
    # "json_valid (x)" and "json_valid(x)" are the same call; "IN (..)" keeps its space.
    return out[-1].lower() not in ("in", "and", "or", "not", "when", "then", "else", "on", "check", "where", "exists")


@functools.lru_cache(maxsize=4096)
def normalize_sql(sql):
    """Canonical text of an SQL expression: comments, case and spacing folded.

    A redundant pair of parentheses around the whole expression is removed,
    since SQLite stores "DEFAULT (x)" and "DEFAULT x" differently.
    """
    if sql is None:
        return None
    tokens = tokenize(sql)
    while len(tokens) >= 2 and tokens[0] == ("op", "(") and matching_paren(tokens, 0) == len(tokens) - 1:
        tokens = tokens[1:-1]
    return join_tokens(tokens)


def matching_paren(tokens, start):
    """Index of the parenthesis closing the one at tokens[start]."""
    depth = 0
    for k in range(start, len(tokens)):
        if tokens[k] == ("op", "("):
            depth += 1
        elif tokens[k] == ("op", ")"):
            depth -= 1
            if depth == 0:
                return k
    return -1


def split_top(tokens, sep=","):
    parts, depth, cur = [], 0, []
    for tok in tokens:
        if tok == ("op", "("):
            depth += 1
        elif tok == ("op", ")"):
            depth -= 1
        if depth == 0 and tok == ("op", sep):
            parts.append(cur)
            cur = []
        else:
            cur.append(tok)
    if cur:
        parts.append(cur)
    return parts


_TABLE_CONSTRAINT = {"constraint", "primary", "unique", "check", "foreign"}


def parse_create_table(sql):
    """Read what PRAGMAs do not give from a stored CREATE TABLE statement.

    Returns {"columns": {name: definition text}, "constraints": [text, ...],
    "checks": [normalized expr, ...], "autoincrement": bool}. Column
    definitions and table constraints are canonical SQL text, fit to be
    written into a new CREATE TABLE (used to carry a user's own columns
    through a table rebuild).
    """
    tokens = tokenize(sql)
    try:
        start = tokens.index(("op", "("))
    except ValueError:  # CREATE TABLE ... AS SELECT, or a virtual table
        return {"columns": {}, "constraints": [], "checks": [], "autoincrement": False}
    end = matching_paren(tokens, start)
    body = tokens[start + 1:end]
    columns, constraints, checks = {}, [], []
    autoincrement = False
    for item in split_top(body):
        if not item:
            continue
        first = item[0]
        if first[0] == "word" and first[1].lower() in _TABLE_CONSTRAINT:
            constraints.append(join_tokens(item))
        else:
            columns[first[1]] = join_tokens(item[1:])
        for k, tok in enumerate(item):
            if tok[0] == "word" and tok[1].lower() == "autoincrement":
                autoincrement = True
            if tok[0] == "word" and tok[1].lower() == "check" and k + 1 < len(item) and item[k + 1] == ("op", "("):
                close = matching_paren(item, k + 1)
                checks.append(join_tokens(item[k + 2:close]))
    return {"columns": columns, "constraints": constraints, "checks": checks,
            "autoincrement": autoincrement}


def index_where(sql):
    """The normalized WHERE clause of a stored CREATE INDEX, or None."""
    if not sql or "where" not in sql.lower():  # no WHERE token without the word anywhere: skip tokenizing
        return None
    tokens = tokenize(sql)
    start = tokens.index(("op", "("))
    rest = tokens[matching_paren(tokens, start) + 1:]
    if rest and rest[0][0] == "word" and rest[0][1].lower() == "where":
        return normalize_sql(join_tokens(rest[1:]))
    return None


def read_raw(conn):
    """Read the schema of the main database of an open sqlite3 connection.

    Returns {"tables": {name: {...}}, "indexes": {name: {...}},
    "views": {name: sql}, "triggers": {name: {"table":, "sql":}}}, with the
    PRAGMA rows as SQLite gives them. sqlite_* tables and the automatic
    indexes of PRIMARY KEY and UNIQUE constraints are left out.
    """
    raw = {"tables": {}, "indexes": {}, "views": {}, "triggers": {}}
    master = conn.execute(
        "SELECT type, name, tbl_name, sql FROM sqlite_master ORDER BY rowid").fetchall()
    for kind, name, table, sql in master:
        if kind == "table" and not name.startswith("sqlite_"):
            raw["tables"][name] = {
                "sql": sql,
                "xinfo": conn.execute("SELECT * FROM pragma_table_xinfo(?)", (name,)).fetchall(),
                "fks": conn.execute("SELECT * FROM pragma_foreign_key_list(?)", (name,)).fetchall(),
                "index_list": conn.execute("SELECT * FROM pragma_index_list(?)", (name,)).fetchall(),
            }
        elif kind == "index" and sql is not None:
            raw["indexes"][name] = {
                "table": table,
                "sql": sql,
                "xinfo": conn.execute("SELECT * FROM pragma_index_xinfo(?)", (name,)).fetchall(),
            }
        elif kind == "view":
            raw["views"][name] = sql
        elif kind == "trigger":
            raw["triggers"][name] = {"table": table, "sql": sql}
    for info in raw["tables"].values():
        info["unique_columns"] = [
            [r[2] for r in conn.execute("SELECT * FROM pragma_index_info(?)", (row[1],))]
            for row in info["index_list"] if row[3] == "u"
        ]
    for name, info in raw["indexes"].items():
        info["unique"] = any(row[1] == name and row[2] for row in raw["tables"].get(info["table"], {}).get("index_list", []))
    return raw


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


def checks_and_autoincrement(sql):
    """The normalized CHECK expressions of a stored CREATE TABLE and whether it uses AUTOINCREMENT.

    The part of parse_create_table that structure comparison needs. Text
    without the words "check" and "autoincrement" anywhere (comments and
    strings included) has neither, and is not tokenized.
    """
    low = (sql or "").lower()
    if "check" not in low and "autoincrement" not in low:
        return [], False
    tokens = tokenize(sql)
    checks, autoincrement = [], False
    for k, tok in enumerate(tokens):
        if tok[0] != "word":
            continue
        word = tok[1].lower()
        if word == "autoincrement":
            autoincrement = True
        elif word == "check" and k + 1 < len(tokens) and tokens[k + 1] == ("op", "("):
            checks.append(join_tokens(tokens[k + 2:matching_paren(tokens, k + 1)]))
    return checks, autoincrement


def to_structure(raw):
    """The comparable structure of a database read by read_raw."""
    tables = {}
    for name, info in raw["tables"].items():
        checks, autoincrement = checks_and_autoincrement(info["sql"])
        tables[name] = {
            "columns": {
                r[1]: {"type": (r[2] or "").upper(), "notnull": bool(r[3]),
                       "default": normalize_sql(r[4]), "pk": r[5]}
                for r in info["xinfo"] if r[6] in (0, 2, 3)
            },
            "autoincrement": autoincrement,
            "fks": sorted(fk_groups(info["fks"]), key=repr),
            "uniques": sorted(info["unique_columns"]),
            "checks": sorted(normalize_sql(c) for c in checks),
        }
    indexes = {}
    for name, info in raw["indexes"].items():
        indexes[name] = {
            "table": info["table"],
            "unique": bool(info["unique"]),
            "columns": [[r[2] if r[2] is not None else EXPRESSION, bool(r[3])] for r in info["xinfo"] if r[5]],
            "where": index_where(info["sql"]),
        }
    return {"tables": tables, "indexes": indexes}


def read_structure(conn):
    """The comparable structure of the main database of an open connection."""
    return to_structure(read_raw(conn))


def _cols(columns):
    return "(" + ", ".join(c + (" DESC" if d else "") for c, d in columns) + ")"


def _fk_text(fk):
    return "(%s) -> %s(%s) ON DELETE %s ON UPDATE %s" % (
        ", ".join(fk["columns"]), fk["table"], ", ".join(str(c) for c in fk["to"]),
        fk["on_delete"], fk["on_update"])


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
    indexes = {name.lower(): dict(ix, table=ix["table"].lower(), columns=[[c.lower(), d] for c, d in ix["columns"]])
               for name, ix in struct["indexes"].items()}
    return {"tables": tables, "indexes": indexes}


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
            for key, label in (("type", "type"), ("notnull", "NOT NULL"), ("default", "default"), ("pk", "primary key position")):
                if ec[key] != ac[key]:
                    out.append(("differs", "%s, column '%s': %s is %r, expected %r" % (where, col, label, ac[key], ec[key])))
        for col in act["columns"]:
            if col not in exp["columns"]:
                out.append(("extra", "%s: extra column '%s'" % (where, col)))
        if exp["autoincrement"] != act["autoincrement"]:
            out.append(("differs", "%s: AUTOINCREMENT is %s, expected %s" % (where, act["autoincrement"], exp["autoincrement"])))
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
        if act["columns"] != exp["columns"]:
            out.append(("differs", "%s: columns are %s, expected %s" % (where, _cols(act["columns"]), _cols(exp["columns"]))))
        if act["unique"] != exp["unique"]:
            out.append(("differs", "%s: UNIQUE is %s, expected %s" % (where, act["unique"], exp["unique"])))
        if act["where"] != exp["where"]:
            out.append(("differs", "%s: partial WHERE is %r, expected %r" % (where, act["where"], exp["where"])))
    for name in act_i:
        if name not in exp_i:
            out.append(("extra", "extra index '%s' on table '%s'" % (name, act_i[name]["table"])))
    for key, label in (("tables", "tables"), ("indexes", "indexes")):
        found = sum(1 for name in expected[key] if name in actual[key])
        extra = sum(1 for name in actual[key] if name not in expected[key])
        if found != len(expected[key]):
            out.append(("missing", "expected %d %s, found %d of them" % (len(expected[key]), label, found)))
        if extra:
            out.append(("extra", "%d %s beyond the declared %d" % (extra, label, len(expected[key]))))
    return out
