"""What a plan gives up, counted before anything runs, the guard that asks before it, and the refusals of the
renames a plan cannot run and of a new foreign key over orphan rows: once, for both dialects.

Both planners (migrate/plan.py on SQLite, pg/plan.py on PostgreSQL) hand the neutral change records of
migrate/diff.py to these functions, with `count(sql)`: a function that runs one counting query on the database
and returns the number. The queries are plain SQL over identifiers quoted by the one quoter, which both engines
read alike; what is counted, and the sentence each count is told in, are decided here only.

A data-loss entry is {"kind": "table" | "column" | "rows" | "conversion", "table", "column", "rows" (a table's
rows, a column's non-NULL values, the rows a repair deletes or a conversion turns NULL), "text"}.
"""
from __future__ import annotations

from ..errors import Declined, UnsafeMigrationError
from ..sqlite.quote import quote_identifier
from ..words import plural
from . import diff as d


def data_loss(count, live, changes, rows):
    """What the changes give up: a dropped table's rows (Remove "table"), a dropped column's non-NULL values
    (Remove "column", where the dialect drops it in place; a RebuildTable's "column-removed" Reason, where it
    rebuilds) and the values a rebuild's conversion (using=) turns NULL. rows(table): the table's row count
    (the planner's own cache)."""
    q = quote_identifier
    out = []
    for ch in changes:
        if isinstance(ch, d.Remove) and ch.kind == "table":
            n = rows(ch.name) if live.table(ch.name) is not None else count("SELECT count(*) FROM %s" % q(ch.name))
            out.append({"kind": "table", "table": ch.name, "column": None, "rows": n,
                        "text": "table '%s': %s %s (%s)" % (ch.name, plural(n, "row"), _go(n), ch.reason)})
        elif isinstance(ch, d.Remove) and ch.kind == "column":
            out.append(column_loss(count, ch.table, ch.name, ch.reason))
        elif isinstance(ch, d.RebuildTable):
            old = live.table(ch.table.name).name
            for name, source, using, expr in ch.conversions:
                n = count("SELECT count(*) FROM %s WHERE %s IS NOT NULL AND (%s) IS NULL" % (q(old), q(source), expr))
                if n:
                    out.append(conversion_loss(old, name, n, using))
            for r in ch.reasons:
                if r.kind == "column-removed":
                    out.append(column_loss(count, old, r.columns[0], r.text))
    return out


def column_loss(count, table, column, why):
    n = count("SELECT count(*) FROM %s WHERE %s IS NOT NULL" % (quote_identifier(table), quote_identifier(column)))
    return {"kind": "column", "table": table, "column": column, "rows": n,
            "text": "column '%s'.'%s': %s %s (%s)" % (table, column, plural(n, "non-NULL value"), _go(n), why)}


def _go(n):
    return "goes" if n == 1 else "go"


def conversion_loss(table, column, n, using):
    """n non-NULL values of table.column that the conversion (using) turns NULL."""
    return {"kind": "conversion", "table": table, "column": column, "rows": n,
            "text": "column '%s'.'%s': %d non-NULL value%s NULL (converted with %s)" % (
                table, column, n, " becomes" if n == 1 else "s become", using)}


def fk_text(f):
    return "foreign key (%s) -> %s" % (", ".join(f.columns), f.ref_table)


def repair_loss(table, change, n):
    """The rows a RepairForeignKey deletes (repair="delete"; "set null" keeps every row), or None."""
    if change.foreign_key.repair != "delete":
        return None
    return {"kind": "rows", "table": table, "column": None, "rows": n,
            "text": "table '%s': %s deleted, which break %s (declared repair='delete')" % (
                table, plural(n, "row"), fk_text(change.foreign_key))}


ORPHANS_SHOWN = 5  # rows a refusal names


def orphans_refused(table, columns, ref_table, n, shown):
    """The refusal of a new foreign key whose existing rows break it (n of them, the first as (key, values) text
    pairs) when it declares no repair: with a repair they are set NULL or deleted (RepairForeignKey) instead."""
    return ("table '%s': new foreign key (%s) -> %s: %d existing row%s %s no parent row in '%s' (%s%s); fix or "
            "delete them, or declare repair='set null' or repair='delete' on the foreign key" % (
                table, ", ".join(columns), ref_table, n, "s" if n != 1 else "", "have" if n != 1 else "has", ref_table,
                "; ".join("%s: %s" % row for row in shown), "; ..." if n > len(shown) else ""))


def rename_problems(count, schema, live):
    """One sentence for each declared rename whose old and new names both exist while the old one holds rows (a
    table) or non-NULL values (a column), from diff.rename_conflicts: the rename cannot run, and those would be
    left behind under the old name while the plan said "up to date". An empty old one is kept as the user's own."""
    q = quote_identifier
    problems = []
    for kind, table, new, old in d.rename_conflicts(schema, live):
        if kind == "table":
            n_old, n_new = (count("SELECT count(*) FROM %s" % q(t)) for t in (old, new))
            what, where, unit = "table '%s'" % new, "the database", "row"
            fix = ("move the rows into '%s' and drop '%s' (or declare removed('table', '%s', ...))" % (new, old, old))
        else:
            n_old, n_new = (count("SELECT count(*) FROM %s WHERE %s IS NOT NULL" % (q(table), q(c))) for c in (old, new))
            what, where, unit = "table '%s', column '%s'" % (table, new), "table '%s'" % table, "non-NULL value"
            fix = ("copy the values into '%s' and drop the column '%s' (then declare it removed instead of "
                   "renamed_from)" % (new, old))
        if not n_old:
            continue
        problems.append("%s is declared renamed_from '%s', but %s has both: '%s' holds %d %s%s, '%s' holds %s; the "
                        "rename cannot run and those would stay behind under '%s': %s%s" % (
                            what, old, where, old, n_old, unit, "s" if n_old != 1 else "", new,
                            "%d" % n_new if n_new else "none", old, fix,
                            ", or drop the empty '%s' so that the rename runs" % new if not n_new else ""))
    return problems


def guard(where, plan, backup, allow_data_loss, confirm, terms):
    """The one data-loss guard, for both dialects: a plan that loses data (plan.data_loss) goes ahead only with a
    backup made first or allow_data_loss, and then only with a yes from confirm(plan) (None: allowed).

    where: how the refusal names the database. terms: how it names what its reader can do: {"no_backup": why no
    backup is made, "allow": what accepts the loss without one, "accept": what to add when confirm said no}.
    """
    if not plan.data_loss:
        return
    what = "; ".join(x["text"] for x in plan.data_loss)
    if not backup and not allow_data_loss:
        raise UnsafeMigrationError("%s: the plan loses data (%s) and %s: without a backup it runs only if %s; nothing "
                                   "was changed" % (where, what, terms["no_backup"], terms["allow"]))
    if confirm is not None and not confirm(plan):
        raise Declined("%s: the plan loses data (%s) and was not confirmed; nothing was changed%s" % (
            where, what, terms["accept"]))
