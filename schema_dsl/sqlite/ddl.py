# The SQL tokenizer and the DDL reader: SQL text as tokens and back as one canonical line, and what a stored
# CREATE TABLE / INDEX / VIEW / TRIGGER / VIRTUAL TABLE statement says beyond its PRAGMAs.
#
# Standard library only, like the rest of the SQLite ground: compile/, migrate/, pg/ and sqlite/structure.py
# read SQL through it, and its source is embedded verbatim (before structure.py's, in place of structure.py's
# import of it) in the generated, standalone validate_schema.py (compile/render.py). So: no imports but the
# standard library's, and no "from __future__" line.
import functools
import re

_WORD = re.compile(r"[A-Za-z_][A-Za-z0-9_$]*\Z")


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


# SQLite's keywords (sqlite.org/lang_keywords.html): a quoted identifier spelled like one stays quoted.
KEYWORDS = frozenset("""
abort action add after all alter always analyze and as asc attach autoincrement before begin between by cascade
case cast check collate column commit conflict constraint create cross current current_date current_time
current_timestamp database default deferrable deferred delete desc detach distinct do drop each else end escape
except exclude exclusive exists explain fail filter first following for foreign from full generated glob group
groups having if ignore immediate in index indexed initially inner insert instead intersect into is isnull join key
last left like limit match materialized natural no not nothing notnull null nulls of offset on or order others
outer over partition plan pragma preceding primary query raise range recursive references regexp reindex release
rename replace restrict returning right rollback row rows savepoint select set table temp temporary then ties to
transaction trigger unbounded union unique update using vacuum values view virtual when where window with without
""".split())


def _token_text(kind, text, columns=None):
    if kind == "string":
        return "'" + text.replace("'", "''") + "'"
    if kind in ("word", "ident"):
        if kind == "ident" and (not _WORD.match(text) or text.lower() in KEYWORDS
                                or columns is not None and text.lower() not in columns):
            return '"' + text.replace('"', '""') + '"'
        return text.lower()
    return text


def join_tokens(tokens, columns=None):
    """Write tokens back as one canonical line of SQL.

    columns: the lower-cased column names in scope, to write SQL that means what it meant: a quoted
    identifier that names none of them stays quoted (a "string" SQLite took as a literal for want of such a
    column, a qualified "table" name), where canonical text would lose its quotes.
    """
    out = []
    for kind, text in tokens:
        piece = _token_text(kind, text, columns)
        glued = piece in (")", ",", ".") or out and out[-1] in ("(", ".")
        if out and kind == "number" and out[-1] == "." and piece[:1].isdigit():
            glued = False  # "." then "0" written ".0" would read back as one number
        if out and not (glued or (piece == "(" and kind == "op" and out[-1][-1:].isalnum() and _prev_is_func(out))):
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
    names = {item[0][1].lower() for item in split_top(body)
             if item and not (item[0][0] == "word" and item[0][1].lower() in _TABLE_CONSTRAINT)}
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
                checks.append(join_tokens(item[k + 2:close], names))
    return {"columns": columns, "constraints": constraints, "checks": checks,
            "autoincrement": autoincrement}


def _statement_body(tokens, kind):
    """The tokens of a CREATE VIEW / TRIGGER / VIRTUAL TABLE after its (possibly schema-qualified) name."""
    k = next((i for i, t in enumerate(tokens) if t[0] == "word" and t[1].lower() == kind), len(tokens)) + 1
    if [t[1].lower() for t in tokens[k:k + 3]] == ["if", "not", "exists"]:
        k += 3
    k += 1
    if k < len(tokens) and tokens[k] == ("op", "."):
        k += 2
    return k


def view_body(sql):
    """The canonical text of a CREATE VIEW or CREATE TRIGGER after its name (how views and triggers compare)."""
    tokens = tokenize(sql or "")
    kind = "trigger" if any(t[0] == "word" and t[1].lower() == "trigger" for t in tokens[:3]) else "view"
    return join_tokens(tokens[_statement_body(tokens, kind):])


def virtual_table_parts(sql):
    """(module, args verbatim) of a stored CREATE VIRTUAL TABLE statement."""
    spans = token_spans(sql)
    tokens = [(kind, text) for kind, text, _, _ in spans]
    k = next((i for i, t in enumerate(tokens) if t[0] == "word" and t[1].lower() == "using"), len(tokens) - 1) + 1
    module = tokens[k][1] if k < len(tokens) else ""
    if k + 1 < len(tokens) and tokens[k + 1] == ("op", "("):
        close = matching_paren(tokens, k + 1)
        end = spans[close][2] if close > 0 else len(sql)
        return module, sql[spans[k + 1][3]:end].strip()
    return module, ""


def is_virtual(sql):
    return bool(sql) and " ".join(sql[:40].split()).upper().startswith("CREATE VIRTUAL TABLE")


def _deferrable(words):
    """DEFERRABLE's setting from the lower-cased words after REFERENCES: "INITIALLY DEFERRED" / "INITIALLY IMMEDIATE" or None."""
    for k, w in enumerate(words):
        if w == "deferrable":
            if k and words[k - 1] == "not":
                return None
            if words[k + 1:k + 3] == ["initially", "deferred"]:
                return "INITIALLY DEFERRED"
            return "INITIALLY IMMEDIATE"
    return None


def table_options(sql):
    """What a stored CREATE TABLE says beyond its PRAGMAs: CHECKs, AUTOINCREMENT, collations, DEFERRABLE, options.

    Returns {"checks", "autoincrement", "collate": {column: NAME}, "deferrable": [(columns lower, parent lower,
    setting)], "without_rowid", "strict"}. Text without any of the words these need is not tokenized.
    """
    checks, autoincrement = checks_and_autoincrement(sql)
    out = {"checks": checks, "autoincrement": autoincrement, "collate": {}, "deferrable": [],
           "without_rowid": False, "strict": False}
    low = (sql or "").lower()
    if "collate" not in low and "deferrable" not in low and "rowid" not in low and "strict" not in low:
        return out
    tokens = tokenize(sql)
    try:
        start = tokens.index(("op", "("))
    except ValueError:
        return out
    end = matching_paren(tokens, start)
    tail = [t[1].lower() for t in tokens[end + 1:] if t[0] == "word"]
    out["without_rowid"] = "without" in tail and "rowid" in tail
    out["strict"] = "strict" in tail
    for item in split_top(tokens[start + 1:end]):
        if not item:
            continue
        words = [t[1].lower() if t[0] == "word" else None for t in item]
        is_constraint = item[0][0] == "word" and words[0] in _TABLE_CONSTRAINT
        if not is_constraint:  # the column's own COLLATE (the last one wins), not one inside a CHECK or DEFAULT
            name, depth = "BINARY", 0
            for k, w in enumerate(words[:-1]):
                depth += item[k] == ("op", "(") and 1 or item[k] == ("op", ")") and -1 or 0
                if w == "collate" and depth == 0 and item[k + 1][0] in ("word", "ident", "string"):
                    name = item[k + 1][1].upper()
            if name != "BINARY":
                out["collate"][item[0][1]] = name
        if "references" not in words:
            continue
        r = words.index("references")
        if is_constraint:
            open_ = words.index("foreign") + 2 if "foreign" in words else None
            cols = [t[1].lower() for t in item[open_:r] if t[0] in ("word", "ident", "string")] if open_ else []
        else:
            cols = [item[0][1].lower()]
        parent = item[r + 1][1].lower() if r + 1 < len(item) else ""
        out["deferrable"].append((tuple(cols), parent, _deferrable([w for w in words[r:] if w])))
    return out


CONFLICT_WORDS = ("rollback", "abort", "fail", "ignore", "replace")
# words that start a column constraint: an ON CONFLICT after one of them is not the previous constraint's
_COLUMN_CONSTRAINT = {"constraint", "primary", "unique", "check", "default", "collate", "references", "generated", "as",
                      "null", "not"}


def conflict_clauses(sql):
    """The ON CONFLICT clauses of a stored CREATE TABLE other than SQLite's default ABORT, sorted, each as
    [constraint, [column, ...], resolution]: constraint "PRIMARY KEY", "UNIQUE" or "NOT NULL" (a column's), the
    resolution upper-case. Text without the word "conflict" anywhere has none, and is not tokenized."""
    if "conflict" not in (sql or "").lower():
        return []
    tokens = tokenize(sql)
    try:
        start = tokens.index(("op", "("))
    except ValueError:
        return []
    out = []
    for item in split_top(tokens[start + 1:matching_paren(tokens, start)]):
        words = [t[1].lower() if t[0] == "word" else None for t in item]
        if not item:
            continue
        table_level = words[0] in _TABLE_CONSTRAINT
        kind, columns, depth = None, [], 0
        for k in range(0 if table_level else 1, len(item)):
            if item[k] == ("op", "("):
                if depth == 0 and table_level and kind in ("PRIMARY KEY", "UNIQUE") and not columns:
                    close = matching_paren(item, k)
                    columns = [part[0][1] for part in split_top(item[k + 1:close]) if part]
                depth += 1
                continue
            if item[k] == ("op", ")"):
                depth -= 1
                continue
            w = words[k]
            if depth or w is None:
                continue
            if w == "on" and k + 2 < len(item) and words[k + 1] == "conflict":
                if kind is not None and words[k + 2] in CONFLICT_WORDS and words[k + 2] != "abort":
                    out.append([kind, columns if table_level else [item[0][1]], words[k + 2].upper()])
                kind = None
            elif w in _COLUMN_CONSTRAINT or w in _TABLE_CONSTRAINT:
                if w == "primary":
                    kind = "PRIMARY KEY"
                elif w == "unique":
                    kind = "UNIQUE"
                elif w == "null" and k and words[k - 1] == "not":
                    kind = "NOT NULL"
                else:
                    kind = None
                if table_level and w in ("primary", "unique"):
                    columns = []
    return sorted(out)


def index_where(sql, columns=None):
    """The normalized WHERE clause of a stored CREATE INDEX, or None.

    columns: the table's lower-cased column names: the clause as SQL to write, not normalized (see join_tokens).
    """
    if not sql or "where" not in sql.lower():  # no WHERE token without the word anywhere: skip tokenizing
        return None
    tokens = tokenize(sql)
    start = tokens.index(("op", "("))
    rest = tokens[matching_paren(tokens, start) + 1:]
    if rest and rest[0][0] == "word" and rest[0][1].lower() == "where":
        text = join_tokens(rest[1:], columns)
        return text if columns is not None else normalize_sql(text)
    return None


def index_key_texts(sql, columns=None):
    """The keys of a stored CREATE INDEX in order, each as (canonical SQL text, desc).

    The text is the key without a trailing ASC or DESC; a COLLATE written after it stays in it. columns: see
    join_tokens.
    """
    tokens = tokenize(sql or "")
    start = tokens.index(("op", "("))
    out = []
    for item in split_top(tokens[start + 1:matching_paren(tokens, start)]):
        desc = False
        if item and item[-1][0] == "word" and item[-1][1].lower() in ("asc", "desc"):
            desc = item[-1][1].lower() == "desc"
            item = item[:-1]
        out.append((join_tokens(item, columns), desc))
    return out


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
