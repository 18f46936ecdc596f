"""What an interrupted `apply --online` can leave behind on PostgreSQL, and the steps that finish it.

An online apply (pg/online.py) commits step by step, so a kill between two steps leaves a state that serves the
application (expand before contract) but is not yet the declared one. The next plan, online or plain, reads the
live catalog and finds most of it as ordinary differences (a missing index, a column still nullable). Three
things it would not finish on its own, found here:

- a CHECK (col IS NOT NULL) named `_schemagen_nn_...`: the helper through which NOT NULL is set without a scan.
  Once the column is NOT NULL (or the declaration no longer asks it) it is dropped; while the column still needs
  NOT NULL, the CHECK is VALIDATEd (when it is not yet, and no row holds NULL), SET NOT NULL runs (no scan: the
  CHECK proves it), then it is dropped; with NULLs left it is dropped and the plan starts NOT NULL over;
- a declared CHECK or foreign key left NOT VALID between its ADD and its VALIDATE: validated, when no existing row
  breaks it. One that rows break (say, `transfer --orphans=not-valid`) is kept NOT VALID and reported, as before;
- an INVALID index (a CREATE INDEX CONCURRENTLY that was killed): pg/plan.py already rebuilds a declared one, and
  an undeclared one is reported by validate; nothing to add here;
- an online type conversion (pg/online.py) stopped before its swap: the new column `_schemagen_new_<column>`, its
  sync trigger and functions (`_schemagen_sync_...`, `_schemagen_conv_...`), its failure log
  (`_schemagen_fail_...`) and the indexes built on the new column. All go (a DROP COLUMN and a few DROPs, catalog
  only); the old column was authoritative all along, and the plan starts the conversion over;
- an online type conversion stopped after its swap: the old column, renamed `_schemagen_old_<column>` (its old
  indexes with it). The conversion is complete: it is dropped, the conversion's own last step.

Every function takes an open psycopg connection and only reads; the steps are migrate/steps.py's Step, each serving a
FinishOnline or ValidateLeftover record.
"""
from __future__ import annotations

from ..compile.postgresql import alter_statement
from . import catalog, notvalid
from ..migrate.steps import FinishOnline, Step, ValidateLeftover
from ..sqlite.quote import quote_identifier

NN_PREFIX = "_schemagen_nn_"
NEW_PREFIX, OLD_PREFIX = "_schemagen_new_", "_schemagen_old_"     # an online conversion's columns (and indexes)
SYNC_PREFIX, CONV_PREFIX, FAIL_PREFIX = "_schemagen_sync_", "_schemagen_conv_", "_schemagen_fail_"


def conversion_names(table, column):
    """The names an online conversion of table.column uses (63 bytes at most each)."""
    tail = "%s_%s" % (table, column)
    return {"new": (NEW_PREFIX + column)[:63], "old": (OLD_PREFIX + column)[:63], "sync": (SYNC_PREFIX + tail)[:63],
            "conv": (CONV_PREFIX + tail)[:63], "fail": (FAIL_PREFIX + tail)[:63]}


def _like(prefix):
    return prefix.replace("_", r"\_") + "%"


def conversion_leftovers(conn, ns):
    """[(table, column, state)]: state 'new' (stopped before the swap) or 'old' (after it), per column."""
    return conn.execute(
        "SELECT c.relname, a.attname, CASE WHEN a.attname LIKE %s THEN 'new' ELSE 'old' END FROM pg_attribute a "
        "JOIN pg_class c ON c.oid = a.attrelid WHERE c.relnamespace = %s AND c.relkind IN ('r', 'p') "
        "AND a.attnum > 0 AND NOT a.attisdropped AND (a.attname LIKE %s OR a.attname LIKE %s) ORDER BY 1, 2",
        (_like(NEW_PREFIX), ns, _like(NEW_PREFIX), _like(OLD_PREFIX))).fetchall()


def _conversion_steps(conn, ns):
    out = []
    for table, name, state in conversion_leftovers(conn, ns):
        if state == "old":
            out.append(Step("drop column '%s'.'%s' left by an interrupted online conversion" % (table, name),
                            "the conversion's swap committed: this is the old column, renamed away; it goes",
                            [alter_statement("drop_column", table, name)], table=table,
                            change=FinishOnline(table, name)))
            continue
        column = name[len(NEW_PREFIX):]
        n = conversion_names(table, column)
        out.append(Step("drop the unfinished online conversion of '%s'.'%s'" % (table, column),
                        "an online conversion stopped before its swap: its new column '%s', sync trigger and "
                        "functions go (the old column was authoritative all along); the plan starts it over" % name,
                        alter_statement("drop_conversion", table, n).split("\n"), table=table,
                        change=FinishOnline(table, column)))
    return out


_q = quote_identifier  # the one quoter: a quoted identifier doubles its '"' on both engines


def nn_name(table, column):
    """The name of the helper CHECK (column IS NOT NULL) of table.column (63 bytes at most)."""
    return (NN_PREFIX + table + "_" + column)[:63]


def _nn_checks(conn, ns):
    """[(table, constraint, column, validated, column is NOT NULL)] for the helper CHECKs in the namespace."""
    return conn.execute(
        "SELECT c.relname, k.conname, a.attname, k.convalidated, a.attnotnull FROM pg_constraint k "
        "JOIN pg_class c ON c.oid = k.conrelid JOIN pg_attribute a ON a.attrelid = k.conrelid "
        "AND a.attnum = k.conkey[1] WHERE c.relnamespace = %s AND k.contype = 'c' AND k.conname LIKE %s "
        "ORDER BY 1, 2", (ns, NN_PREFIX.replace("_", r"\_") + "%")).fetchall()


def steps(conn, expected):
    """The steps that finish an interrupted online apply (module docstring); expected: the compiled structure."""
    ns = catalog.current_namespace(conn)
    out = _conversion_steps(conn, ns)
    helpers = set()
    for table, name, column, valid, notnull in _nn_checks(conn, ns):
        helpers.add((table, name))
        want = expected["tables"].get(table, {}).get("columns", {}).get(column, {}).get("notnull")
        statements = []
        if want and not notnull and not valid and not conn.execute(
                "SELECT EXISTS (SELECT 1 FROM %s WHERE %s IS NULL)" % (_q(table), _q(column))).fetchone()[0]:
            statements.append(alter_statement("validate_constraint", table, name))
            valid = True
        if want and not notnull and valid:
            statements.append(alter_statement("set_not_null", table, column))
        statements.append(alter_statement("drop_constraint", table, name))
        out.append(Step("finish NOT NULL of '%s'.'%s' left by an interrupted online apply" % (table, column),
                        "the CHECK '%s' is the helper of an online SET NOT NULL%s; it goes" % (
                            name, ": validated, so SET NOT NULL needs no scan" if len(statements) > 1 else ""),
                        statements, table=table, change=FinishOnline(table, column)))
    for k in notvalid.not_valid_constraints(conn, ns):
        if (k["table"], k["constraint"]) in helpers or k["table"] not in expected["tables"]:
            continue
        _, broken = notvalid.violating_rows(conn, k, limit=0)
        if broken:
            continue  # kept NOT VALID and reported (validate's notes), as before
        out.append(Step("validate %s '%s' on '%s' (left NOT VALID)" % (k["kind"], k["constraint"], k["table"]),
                        "the constraint is NOT VALID (an online apply stopped between ADD and VALIDATE) and no "
                        "existing row breaks it: VALIDATE scans under SHARE UPDATE EXCLUSIVE, writes go on",
                        [alter_statement("validate_constraint", k["table"], k["constraint"])], table=k["table"],
                        change=ValidateLeftover(k["table"], k["constraint"])))
    return out
