"""The SQL text of a declared column default, and whether ALTER TABLE ADD COLUMN accepts it.

Plain functions (no Jinja2), so that the apply path can use them without
importing the template engine.
"""
from ..model import Expr, Literal
from ..sqlite.quote import quote_literal
from ..sqlite.ddl import matching_paren, tokenize


def default_sql(default):
    """The SQL text after DEFAULT for a column default (None when it has none).

    A constant is written as a literal; an expression that is not a bare
    keyword (CURRENT_TIMESTAMP, ...) is wrapped in parentheses, as SQLite
    requires for DEFAULT.
    """
    if default is None:
        return None
    if isinstance(default, Literal):
        return quote_literal(default.value)
    if isinstance(default, Expr):
        sql = default.sql.strip()
        if sql.upper() in ("CURRENT_TIMESTAMP", "CURRENT_DATE", "CURRENT_TIME", "NULL", "TRUE", "FALSE"):
            return sql
        tokens = tokenize(sql)
        if len(tokens) == 1 and tokens[0][0] != "op":
            # one literal, as a stored default reads: a number, 'string', x'blob', or a bare or double-quoted
            # name, which SQLite takes as a string after DEFAULT but as a column (not constant) in parentheses
            return sql
        if tokens and tokens[0] == ("op", "(") and matching_paren(tokens, 0) == len(tokens) - 1:
            return sql  # already one parenthesized expression; "(a) + (b)" is not
        return "(" + sql + ")"
    raise TypeError("default must be a Literal or an Expr, got %r" % (default,))


def is_constant_default(default):
    """Whether ALTER TABLE ADD COLUMN accepts this default on a table with rows."""
    return default is None or isinstance(default, Literal) or default.sql.strip().upper() in ("NULL", "TRUE", "FALSE")
