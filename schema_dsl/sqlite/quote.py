"""Quoting: the one place identifiers and literals become SQL text (standard library only)."""
import math


def quote_identifier(name):
    """Quote an identifier, doubling embedded double quotes: SQLite's rule and PostgreSQL's for a quoted
    identifier (pg/ uses this one; compile/postgresql.quote_ident leaves plain lower-case names bare)."""
    return '"' + str(name).replace('"', '""') + '"'


def unquote_identifier(name):
    """An identifier as SQL text gives it ("a""b", `a`, [a] or bare) back as the name it stands for."""
    if name[:1] in '"`':  # a quote inside is doubled, as in SQL text
        return name[1:-1].replace(name[0] * 2, name[0])
    if name[:1] == "[":
        return name[1:-1]
    return name


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
