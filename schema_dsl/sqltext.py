"""Quoting helpers: the one place identifiers and literals become SQL text.

These are plain functions (no Jinja2) so that the apply path can use them
without importing the template engine; the renderer registers them as the
`ident` and `literal` filters.
"""
import math

from .structure import matching_paren, tokenize


def quote_identifier(name):
    """Quote an identifier for SQLite, doubling embedded double quotes."""
    return '"' + str(name).replace('"', '""') + '"'


def quote_literal(value):
    """An SQL literal for a Python value: NULL, 0/1, numbers, 'text', X'blob'."""
    if value is None:
        return "NULL"
    if isinstance(value, bool):
        return "1" if value else "0"
    if isinstance(value, float) and not math.isfinite(value):
        if math.isnan(value):
            raise ValueError("NaN has no SQL literal (SQLite stores it as NULL)")
        return "1e999" if value > 0 else "-1e999"  # SQLite reads these as +/-Inf; "inf" would be a column name
    if isinstance(value, (int, float)):
        return repr(value)
    if isinstance(value, bytes):
        return "X'" + value.hex().upper() + "'"
    return "'" + str(value).replace("'", "''") + "'"


def default_sql(default):
    """The SQL text after DEFAULT for a column default (None when it has none).

    A constant is written as a literal; an expression that is not a bare
    keyword (CURRENT_TIMESTAMP, ...) is wrapped in parentheses, as SQLite
    requires for DEFAULT.
    """
    from .model import Expr, Literal  # here: quoting alone (the apply path) needs no model

    if default is None:
        return None
    if isinstance(default, Literal):
        return quote_literal(default.value)
    if isinstance(default, Expr):
        sql = default.sql.strip()
        if sql.upper() in ("CURRENT_TIMESTAMP", "CURRENT_DATE", "CURRENT_TIME", "NULL", "TRUE", "FALSE"):
            return sql
        tokens = tokenize(sql)
        if tokens and tokens[0] == ("op", "(") and matching_paren(tokens, 0) == len(tokens) - 1:
            return sql  # already one parenthesized expression; "(a) + (b)" is not
        return "(" + sql + ")"
    raise TypeError("default must be a Literal or an Expr, got %r" % (default,))


def is_constant_default(default):
    """Whether ALTER TABLE ADD COLUMN accepts this default on a table with rows."""
    from .model import Literal

    return default is None or isinstance(default, Literal) or default.sql.strip().upper() in ("NULL", "TRUE", "FALSE")
