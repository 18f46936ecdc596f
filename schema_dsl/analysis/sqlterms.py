"""The shape of a serves-query, as far as SQLite's index rules care.

Small, conservative readings of SQL text over ddl.tokenize (the one
tokenizer): a query's top-level WHERE split into AND-terms, the comparison
a term makes (column, operator), whether a query term implies a partial
index's WHERE term by SQLite's rule, LIKE 'prefix%' terms, and a check that
a text is exactly one SELECT (or WITH ... SELECT) statement.

SQLite's partial-index rule (sqlite.org/partialindex.html, section 3): the
query may use the index only when every AND-term of the index's WHERE is
implied by some AND-term of the query's WHERE, where "implied" is literal:
the same term (a comparison may have its sides swapped in the query), one
OR-branch of the index term, or, for an index term `c IS NOT NULL`, a
comparison on c other than IS. SQLite does no algebra: `status = 'active'`
does not imply `status IN ('active', 'paused')`.
"""
from __future__ import annotations

import re
import sqlite3

from ..errors import QueryRefused
from ..sqlite.ddl import join_tokens, matching_paren, split_top, token_spans, tokenize

CLAUSE_END = frozenset({"group", "order", "limit", "having", "window", "union", "except", "intersect", "returning"})
COMPARISONS = frozenset({"=", "==", "<", ">", "<=", ">=", "<>", "!="})
# Operators on c that SQLite accepts as implying `c IS NOT NULL` (partialindex.html, 3.).
NOT_NULL_OPERATORS = frozenset(COMPARISONS | {"in", "between", "like", "glob"})
_SWAP = {"=": "=", "==": "==", "<": ">", ">": "<", "<=": ">=", ">=": "<=", "<>": "<>", "!=": "!="}


def _depths(tokens):
    """(token, depth) pairs: depth is the parenthesis depth at the token."""
    depth = 0
    for tok in tokens:
        if tok == ("op", ")"):
            depth -= 1
        yield tok, depth
        if tok == ("op", "("):
            depth += 1


def _is_word(tok, *words):
    return tok[0] == "word" and tok[1].lower() in words


def where_tokens(sql):
    """The tokens of the top-level WHERE clause of a query ([] when it has none)."""
    tokens = tokenize(sql)
    out, inside = [], False
    for tok, depth in _depths(tokens):
        if depth == 0 and tok[0] == "word":
            word = tok[1].lower()
            if not inside and word == "where":
                inside = True
                continue
            if inside and word in CLAUSE_END:
                break
        if inside:
            if depth == 0 and tok == ("op", ";"):
                break
            out.append(tok)
    return out


def strip_parens(tokens):
    while len(tokens) >= 2 and tokens[0] == ("op", "(") and matching_paren(tokens, 0) == len(tokens) - 1:
        tokens = tokens[1:-1]
    return tokens


def split_terms(tokens, conjunction="and"):
    """Top-level AND-terms (or OR-terms) of an expression; BETWEEN x AND y stays one term."""
    terms, cur, between = [], [], False
    for tok, depth in _depths(strip_parens(list(tokens))):
        if depth == 0 and _is_word(tok, "between"):
            between = True
        elif depth == 0 and _is_word(tok, conjunction):
            if conjunction == "and" and between:
                between = False
            else:
                terms.append(strip_parens(cur))
                cur = []
                continue
        cur.append(tok)
    if cur:
        terms.append(strip_parens(cur))
    return [t for t in terms if t]


def query_terms(sql):
    """The AND-terms of a query's top-level WHERE, each a token list."""
    return split_terms(where_tokens(sql))


def expression_terms(sql):
    """The AND-terms of an expression (a partial index's WHERE), each a token list."""
    return split_terms(tokenize(sql or ""))


def text(tokens):
    """Canonical one-line text of tokens (case and spacing folded)."""
    return join_tokens(tokens)


_NOT_CALLS = frozenset({"in", "and", "or", "not", "when", "then", "else", "on", "check", "where", "exists", "as"})


def display(tokens):
    """Tokens written back as they were spelled (case kept), spaced like join_tokens."""
    out = []
    for kind, tok in tokens:
        if kind == "string":
            piece = "'" + tok.replace("'", "''") + "'"
        elif kind == "ident":
            piece = tok if tok.replace("_", "a").isalnum() and not tok[:1].isdigit() else '"' + tok.replace('"', '""') + '"'
        else:
            piece = tok
        if out and not (piece in (")", ",", ".") or out[-1] in ("(", ".")
                        or (piece == "(" and kind == "op" and out[-1][-1:].isalnum() and out[-1].lower() not in _NOT_CALLS)):
            out.append(" ")
        out.append(piece)
    return "".join(out)


def _column_ref(tokens):
    """(column, length) when tokens start with a column reference (optionally table-qualified)."""
    if len(tokens) >= 3 and tokens[0][0] in ("word", "ident") and tokens[1] == ("op", ".") and tokens[2][0] in ("word", "ident"):
        return tokens[2][1].lower(), 3
    if tokens and (tokens[0][0] == "ident" or (tokens[0][0] == "word" and tokens[0][1].lower() not in _KEYWORDS)):
        if len(tokens) == 1 or tokens[1] != ("op", "("):  # not a function call
            return tokens[0][1].lower(), 1
    return None, 0


def _is_constant(tokens):
    """Whether tokens hold no column reference: literals, parameters, function calls, keyword constants."""
    if not tokens:
        return False
    for k, tok in enumerate(tokens):
        if tok[0] == "ident":
            return False
        if tok[0] == "word" and tok[1].lower() not in _KEYWORDS and not (k + 1 < len(tokens) and tokens[k + 1] == ("op", "(")):
            return False
    return True


_KEYWORDS = frozenset({"not", "null", "exists", "case", "select", "cast", "true", "false", "current_timestamp",
                       "current_date", "current_time"})


def comparison(tokens):
    """(column, operator, rest) for a term `column OP rest`, or (None, None, None).

    operator is lower-case: '=', '<', 'in', 'not in', 'between', 'like', 'glob',
    'is', 'is not', 'is null', 'is not null', ... A term written `literal = column`
    is read with its sides swapped, as SQLite's planner does.
    """
    tokens = strip_parens(list(tokens))
    column, n = _column_ref(tokens)
    if column is not None and n < len(tokens):
        op, rest = _operator(tokens[n:])
        if op is not None and not (op in COMPARISONS and _has_top_comparison(rest)):
            return column, op, rest
    # literal OP column
    for k, (tok, depth) in enumerate(_depths(tokens)):
        if depth == 0 and tok[0] == "op" and tok[1] in COMPARISONS and k > 0:
            right = tokens[k + 1:]
            column, n = _column_ref(right)
            if column is not None and n == len(right) and _is_constant(tokens[:k]):
                return column, _SWAP[tok[1]], tokens[:k]
            break
    return None, None, None


def _has_top_comparison(tokens):
    return any(depth == 0 and tok[0] == "op" and tok[1] in COMPARISONS for tok, depth in _depths(tokens))


def _operator(tokens):
    first = tokens[0]
    if first[0] == "op" and first[1] in COMPARISONS:
        return first[1], tokens[1:]
    words = [t[1].lower() if t[0] == "word" else None for t in tokens[:4]]
    if words[:1] == ["notnull"] and len(tokens) == 1:
        return "is not null", []
    if words[:2] == ["not", "null"] and len(tokens) == 2:
        return "is not null", []
    if words[:1] == ["isnull"] and len(tokens) == 1:
        return "is null", []
    if words[:3] == ["is", "not", "null"] and len(tokens) == 3:
        return "is not null", []
    if words[:2] == ["is", "null"] and len(tokens) == 2:
        return "is null", []
    if words[:2] == ["is", "not"]:
        return "is not", tokens[2:]
    if words[:1] == ["is"]:
        return "is", tokens[1:]
    if words[:1] == ["not"] and len(words) > 1 and words[1] in ("in", "like", "glob", "between"):
        return "not " + words[1], tokens[2:]
    if words[:1] and words[0] in ("in", "like", "glob", "between", "match", "regexp"):
        return words[0], tokens[1:]
    return None, tokens


def _canonical(tokens):
    """Text of a term with a `literal OP column` comparison turned around."""
    column, op, rest = comparison(tokens)
    if column is not None and op in COMPARISONS:
        return "%s %s %s" % (column, "=" if op == "==" else op, text(rest))
    if column is not None:
        return "%s %s %s" % (column, op, text(rest)) if rest else "%s %s" % (column, op)
    return text(tokens)


def like_prefix(rest):
    """The literal prefix of a LIKE/GLOB pattern token list, or None when it starts with a wildcard."""
    if len(rest) != 1 or rest[0][0] != "string":
        return None
    pattern = rest[0][1]
    out = []
    for ch in pattern:
        if ch in "%_":
            break
        out.append(ch)
    prefix = "".join(out)
    return prefix or None


def glob_prefix(rest):
    if len(rest) != 1 or rest[0][0] != "string":
        return None
    out = []
    for ch in rest[0][1]:
        if ch in "*?[":
            break
        out.append(ch)
    return "".join(out) or None


def sqlite_implies(query_term, index_term):
    """Whether SQLite's planner takes query_term as implying index_term (partialindex.html, 3.)."""
    if _canonical(query_term) == _canonical(index_term):
        return True
    branches = split_terms(index_term, "or")
    if len(branches) > 1:
        return any(sqlite_implies(query_term, b) for b in branches)
    column, op, _ = comparison(index_term)
    if column is not None and op == "is not null":
        q_column, q_op, rest = comparison(query_term)
        if q_column != column or q_op not in NOT_NULL_OPERATORS:
            return False
        if q_op == "like":
            return like_prefix(rest) is not None
        if q_op == "glob":
            return glob_prefix(rest) is not None
        return True
    return False


def literal_list(rest):
    """The literals of `(a, b, c)` as canonical texts, or None."""
    rest = list(rest)
    if not rest or rest[0] != ("op", "(") or matching_paren(rest, 0) != len(rest) - 1:
        return None
    items = split_top(rest[1:-1])
    if not all(len(i) == 1 and i[0][0] in ("string", "number") for i in items):
        return None
    return [text(i) for i in items]


def logically_implies(query_term, index_term):
    """Whether query_term implies index_term in logic, even where SQLite does not see it.

    Knows `c = v` => `c IN (.., v, ..)`, `c IN (subset)` => `c IN (set)`, and
    any non-NULL comparison on c => `c IS NOT NULL`.
    """
    if sqlite_implies(query_term, index_term):
        return True
    column, op, rest = comparison(index_term)
    q_column, q_op, q_rest = comparison(query_term)
    if column is None or q_column != column:
        return False
    if op == "in":
        allowed = literal_list(rest)
        if allowed is None:
            return False
        if q_op in ("=", "==") and len(q_rest) == 1 and q_rest[0][0] in ("string", "number"):
            return text(q_rest) in allowed
        if q_op == "in":
            wanted = literal_list(q_rest)
            return wanted is not None and set(wanted) <= set(allowed)
    if op == "is not null":
        return q_op in ("is not null",) or q_op in NOT_NULL_OPERATORS
    return False


def unimplied_terms(query_sql, index_where):
    """The AND-terms of a partial index's WHERE that no term of the query implies (SQLite's rule)."""
    q_terms = query_terms(query_sql)
    missing = []
    for term in expression_terms(index_where):
        if not any(sqlite_implies(q, term) for q in q_terms):
            missing.append(term)
    return missing


def like_terms(sql):
    """(column, prefix, term tokens) for each `column LIKE 'prefix...'` AND-term of a query's WHERE."""
    out = []
    for term in query_terms(sql):
        column, op, rest = comparison(term)
        if op == "like":
            prefix = like_prefix(rest)
            if prefix is not None:
                out.append((column, prefix, term))
    return out


def constrained_columns(sql):
    """Columns that a query's WHERE compares in a way an index can search (=, IN, ranges, IS)."""
    cols = set()
    for term in query_terms(sql):
        column, op, rest = comparison(term)
        if column is None:
            continue
        if op in COMPARISONS or op in ("in", "between", "is", "is null", "is not null"):
            cols.add(column)
        elif op == "glob" and glob_prefix(rest) is not None:
            cols.add(column)
    return cols


def order_columns(sql):
    """The columns of a query's top-level ORDER BY or GROUP BY, in order (lower-case)."""
    tokens = tokenize(sql)
    out, inside = [], False
    for k, (tok, depth) in enumerate(_depths(tokens)):
        if depth != 0:
            continue
        if tok[0] == "word" and tok[1].lower() in ("order", "group") and k + 1 < len(tokens) and _is_word(tokens[k + 1], "by"):
            inside = True
            continue
        if inside and tok[0] == "word" and tok[1].lower() in ("limit", "having", "window", "order"):
            inside = False
        if inside and tok[0] in ("word", "ident") and tok[1].lower() not in ("by", "asc", "desc", "collate", "nulls", "first", "last"):
            out.append(tok[1].lower())
    return out


# --- one SELECT statement -------------------------------------------------

def single_select(query):
    """The query without trailing semicolons when it is exactly one SELECT (or WITH ... SELECT).

    Raises QueryRefused otherwise: more than one statement, an incomplete
    statement, or any other kind of statement (a WITH that ends in INSERT,
    UPDATE or DELETE included).
    """
    if not isinstance(query, str) or not query.strip():
        raise QueryRefused("query: expected one SELECT or WITH statement, got an empty text")
    tokens = tokenize(query)
    while tokens and tokens[-1] == ("op", ";"):
        tokens.pop()
    if not tokens:
        raise QueryRefused("query: expected one SELECT or WITH statement, got only comments or semicolons")
    if any(tok == ("op", ";") for tok in tokens):
        raise QueryRefused("query: expected exactly one statement, got several (separated by ';'): %s" % _short(query))
    body = query.rstrip().rstrip(";").rstrip()
    while body.endswith(";"):
        body = body.rstrip(";").rstrip()
    if not sqlite3.complete_statement(body + "\n;"):
        raise QueryRefused("query: expected one complete statement (an unclosed string, comment or parenthesis?): %s" % _short(query))
    first = tokens[0][1].lower() if tokens[0][0] == "word" else tokens[0][1]
    if first == "select":
        return body
    if first == "with":
        main = _with_main_keyword(tokens)
        if main == "select":
            return body
        raise QueryRefused("query: expected a SELECT after WITH, got %s: %s" % ((main or "nothing").upper(), _short(query)))
    raise QueryRefused("query: expected a SELECT or WITH statement, got %s: %s" % (first.upper(), _short(query)))


def _with_main_keyword(tokens):
    for tok, depth in _depths(tokens[1:]):
        if depth == 0 and tok[0] == "word" and tok[1].lower() in ("select", "values", "insert", "update", "delete", "replace"):
            return tok[1].lower()
    return None


def _short(query):
    one = " ".join(query.split())
    return one if len(one) <= 120 else one[:117] + "..."


# --- positions, for rewriting a query -------------------------------------

def top_level_words(sql):
    """(word lower-case, start, end) of the words and quoted names at parenthesis depth 0, outside strings and comments."""
    out, depth = [], 0
    for kind, text, start, end in token_spans(sql):
        if (kind, text) == ("op", "("):
            depth += 1
        elif (kind, text) == ("op", ")"):
            depth -= 1
        elif kind in ("word", "ident") and depth == 0:
            out.append((text.lower(), start, end))
    return out


def _clause_end(sql, words, after):
    """Where the clause that starts at offset `after` ends: the next top-level GROUP/ORDER/LIMIT/... or the end."""
    for word, start, _ in words:
        if start >= after and word in CLAUSE_END:
            return start
    return len(sql.rstrip().rstrip(";").rstrip())


def add_where_terms(sql, terms):
    """The query with `AND term` appended to its top-level WHERE (or a WHERE added)."""
    words = top_level_words(sql)
    where = next((w for w in words if w[0] == "where"), None)
    addition = " AND ".join(terms)
    if where is not None:
        end = _clause_end(sql, words, where[2])
        head = sql[:end].rstrip()
        if any(w[0] == "or" and where[2] <= w[1] < end for w in words):  # keep `a OR b` together
            head = sql[:where[2]] + " (" + sql[where[2]:end].strip() + ")"
        return head + " AND " + addition + (" " + sql[end:].lstrip() if sql[end:].strip() else "")
    frm = next((w for w in words if w[0] == "from"), None)
    if frm is None:
        return None
    end = _clause_end(sql, words, frm[2])
    head = sql[:end].rstrip()
    return head + " WHERE " + addition + (" " + sql[end:].lstrip() if sql[end:].strip() else "")


_NOT_ALIAS = frozenset({"where", "group", "order", "limit", "join", "inner", "left", "right", "full", "cross",
                        "natural", "on", "using", "having", "window", "union", "except", "intersect", "indexed", "not"})


def with_indexed_by(sql, table, index):
    """The query with `INDEXED BY index` after the first top-level FROM table (and its alias), or None."""
    words = top_level_words(sql)
    for k, (word, start, end) in enumerate(words):
        if word != "from" or k + 1 >= len(words) or words[k + 1][0] != table.lower():
            continue
        pos = words[k + 1][2]
        rest = words[k + 2:k + 4]
        if rest and rest[0][0] == "as" and len(rest) > 1:
            pos = rest[1][2]
        elif rest and rest[0][0] not in _NOT_ALIAS and rest[0][1] == _next_nonspace(sql, pos):
            pos = rest[0][2]
        return sql[:pos] + ' INDEXED BY "%s"' % index.replace('"', '""') + sql[pos:]
    return None


def _next_nonspace(sql, pos):
    while pos < len(sql) and sql[pos].isspace():
        pos += 1
    return pos


def replace_like(sql, column, prefix, replacement):
    """The query with its `column LIKE 'prefix...'` term replaced by replacement, or None when not found."""
    for match in re.finditer(r"(?i)(?<![\w.])(?:\w+\.)?\"?%s\"?\s+LIKE\s+'((?:[^']|'')*)'" % re.escape(column), sql):
        if match.group(1).replace("''", "'").startswith(prefix):
            return sql[:match.start()] + replacement + sql[match.end():]
    return None
