"""`apply --online` on PostgreSQL: the migration in many short transactions, none holding a lock that stops the
application for longer than one short attempt.

The plan is the ordinary one (pg/plan.py, planned with concurrently=True against the live catalog), cut into
online steps, each committed on its own:

- a step that changes the catalog only (ADD COLUMN, ADD CONSTRAINT ... NOT VALID, SET NOT NULL once a validated
  CHECK proves it, DROP CONSTRAINT, a rename, a new table) takes ACCESS EXCLUSIVE for a moment: its tables are
  locked first, children before parents (pg/locks.py), each attempt under a lock_timeout of ATTEMPT_MS, and an
  attempt not granted in time is rolled back and tried again after a backoff, for at most the `lock_timeout` the
  caller gives (the budget of one step). The application waits at most one attempt, never a whole scan;
- VALIDATE CONSTRAINT runs in its own transaction: a scan under SHARE UPDATE EXCLUSIVE, reads and writes go on;
- NOT NULL goes through a CHECK (col IS NOT NULL) NOT VALID, VALIDATE, SET NOT NULL (no scan on PostgreSQL 12+:
  the validated CHECK proves it), then the CHECK is dropped (its name starts `_schemagen_nn_`: pg/leftovers.py);
- a fill (the NULLs of a column that becomes NOT NULL) runs in batches of FILL_BATCH rows, each its own
  transaction;
- indexes are created and dropped CONCURRENTLY, outside any transaction; a failed build's INVALID index is
  dropped CONCURRENTLY and the build tried again;
- expand before contract: every removal (DROP INDEX / VIEW / TRIGGER / COLUMN / TABLE) runs last, so at every point
  in between the database still serves the code that ran before the change. A rename is the exception: it runs
  in one short step, first, and the plan says so. apply_online commits the renames (and what an interrupted
  apply left: pg/leftovers.py) before it plans the rest: the plan runs them in its own transaction, so as to plan
  against the new names, and would hold their ACCESS EXCLUSIVE locks while it counts rows (`plan --online`
  does, for as long as it plans). A refusal found in the rest then comes after them: exit 3.

A type conversion (Column(..., using=...)) goes through a new column, `_schemagen_new_<column>` of the new type:
one short step adds it with a BEFORE INSERT OR UPDATE trigger that sets it from the declared USING over the row
(an application write the conversion fails on is never failed by the trigger: the new column gets NULL and the
row's key goes to a log, `_schemagen_fail_...`); the rows already there are filled in batches, each a range of
pages in its own short transaction (the trigger off for that UPDATE); the indexes on the column are built again
on the new one CONCURRENTLY; then one short swap checks the logged rows (any the conversion still fails on stop
the apply there, exit 3, naming them: the old column is still the one in use), drops the trigger, renames the old
column away (`_schemagen_old_<column>`, its NOT NULL and default dropped) and the new one into its name, gives
it the declared default and renames the indexes. NOT NULL follows through a validated CHECK, as above; the old
column is dropped last, with the removals. Until the swap the old code reads and writes the old column as
before; the swap is the cut-over (as a rename is). Values the conversion fails on at plan time are refused
before anything is written (pg/plan.py counts them and names the rows). A column a constraint (PRIMARY KEY,
UNIQUE, CHECK, foreign key, either side) or a view uses is not converted online: refused, like an ADD COLUMN
with a volatile default (it rewrites the table under ACCESS EXCLUSIVE), exit 2, nothing changed; a plain apply
makes either in one transaction.

A data step runs in its own transaction with the history record that says it ran (kind 'online data step'),
so it runs exactly once however the apply is stopped; plan --online says how long it held its locks when it was
planned (the plan runs it in a transaction that is rolled back). The history table, when missing, is created
before the first data step.

Failure is safe at every point: each step is committed or not at all, and the next apply (online or plain)
plans against the live catalog, so it picks up where this one stopped (pg/leftovers.py finishes a NOT VALID
constraint or a helper CHECK; pg/plan.py rebuilds an INVALID index). A failure before the first commit exits 2
(nothing changed); after it, 3, and the message says how many steps committed and to run apply again.
"""
from __future__ import annotations

import contextlib
import random
import re
import time

import attrs
import psycopg
from psycopg import errors as pgerrors

from ..compile.postgresql import Compiled, alter_statement
from ..errors import ApplyError, ChangedThenFailed, SchemagenError
from ..sqlite.quote import quote_identifier
from . import apply as pg_apply
from . import history as pg_history
from . import leftovers, locks
from . import migration as pg_migration
from . import plan as pgplan
from ..migrate.diff import SetNotNull
from ..migrate.steps import ApplyResult, Plan, Step, online_facts
from .introspect import read_live
from .url import mask, scrub

DEFAULT_LOCK_TIMEOUT = "5s"   # the budget of one step: how long it keeps retrying
ATTEMPT_MS = 50               # how long one attempt waits for a lock that stops the application (the target: 100 ms)
FILL_BATCH = 5000
LONGEST_KEPT = 10              # stats["longest_locks"]: this many of the longest transactions, as SQLite keeps

SHORT = "ACCESS EXCLUSIVE on %s for a moment (catalog only); each attempt waits at most %d ms, then retries"
SCAN = "SHARE UPDATE EXCLUSIVE on %s while it scans the table: reads and writes go on"
CONCURRENT = "SHARE UPDATE EXCLUSIVE on %s, outside any transaction (CONCURRENTLY): reads and writes go on"
HISTORY = "none on the application's tables (schemagen's own history table only)"
BATCHES = "row locks on one batch of %d rows at a time, each batch its own transaction"
DATA = ("ROW EXCLUSIVE on the tables it writes and a row lock on each row it changes, until it commits: %.0f ms when "
        "planned (an application write to one of those rows waits that long)")
CONVERT = ("row locks on one batch of about %d rows at a time (a range of pages), each batch its own transaction; "
           "the trigger converts every application write meanwhile")


class _Refused(Exception):
    """A step that cannot finish for a reason the user must fix (not a lock): its text is the message."""


# The change records of the online steps that are PostgreSQL's own way of making a change (the other online steps
# carry out a plan step and serve its record): their class names are the kinds plan and apply --json show.

@attrs.frozen
class ValidateCheck:
    """VALIDATE a helper CHECK (column IS NOT NULL) in its own transaction: a scan that lets writes go on."""

    table: str
    constraint: str
    reason: str = "NOT NULL without a scan under ACCESS EXCLUSIVE"


@attrs.frozen
class AddNotNullCheck:
    """Add the helper CHECK (column IS NOT NULL) NOT VALID that, validated, proves SET NOT NULL."""

    table: str
    constraint: str
    reason: str = "NOT NULL without a scan under ACCESS EXCLUSIVE"


@attrs.frozen
class StartConversion:
    """Add a conversion's new column and the trigger that keeps it in step with every write."""

    table: str
    column: str
    reason: str = "a type conversion through a new column"


@attrs.frozen
class ConvertBatches:
    """Fill a conversion's new column (column) from the rows already there, a range of pages per transaction."""

    table: str
    column: str
    reason: str = "a type conversion through a new column"


@attrs.frozen
class ConvertIndex:
    """Build an index that uses the converted column again on the new column, CONCURRENTLY."""

    table: str
    index: str
    reason: str = "an index on a converted column is built again on the new one"


@attrs.frozen
class SwapConversion:
    """The converted column takes the column's name: the cut-over."""

    table: str
    column: str
    reason: str = "a type conversion through a new column"


@attrs.frozen
class DropOldColumn:
    """Drop a conversion's old column (column: its name once renamed away), the conversion's last step."""

    table: str
    column: str
    reason: str = "a type conversion through a new column"


def _online(title, why, statements, mode, lock, table, change, detail=None):
    """An online step: a Step (migrate/steps.py) with how it runs (mode) and the lock it takes and for how long;
    change: the plan step's change record it carries out, or the online one (ValidateCheck, StartConversion...)."""
    return Step(title, why, statements, table=table, change=change, lock=lock, mode=mode, detail=detail)


class OnlinePlan:
    """What apply --online would do: the online steps (Steps, each with its mode and lock), the plan they carry
    out, and why a step of it cannot run online (refused)."""

    __slots__ = ("database", "steps", "plan", "refused")

    def __init__(self, database, steps, plan, refused):
        self.database, self.steps, self.plan, self.refused = database, steps, plan, refused

    @property
    def up_to_date(self):
        return not self.steps and not self.refused

    @property
    def data_loss(self):
        """What the plan beneath the online steps loses (as Plan.data_loss: Database.initialize logs it)."""
        return self.plan.data_loss


# --- the plan cut into online steps --------------------------------------------------------

_COLUMN = re.compile(r"'([^']+)'\.'([^']+)'")


def _column_of(step):
    m = _COLUMN.search(step.title)
    return (m.group(1), m.group(2)) if m else (step.table, None)


def online_steps(plan, attempt_ms=ATTEMPT_MS, conversions=None):
    """(the online steps in the order they run, [why a step cannot run online]) for a plan (migrate/steps.Plan).
    conversions: {(table, column): _conversion_facts(...)} for the plan's type conversions (plan_online reads them)."""
    expand, contract, last, refused = [], [], [], []
    short = lambda t: SHORT % ("'%s'" % t if t else "its table", attempt_ms)  # noqa: E731
    nn_checked = set()
    steps = list(plan.steps)
    history_first = any(s.kind == "RunDataStep" for s in steps)
    converted = {(s.table, s.detail["column"]) for s in steps if s.kind == "AlterColumnType" and s.detail}
    for n, s in enumerate(steps):
        if s.kind in ("SetDefault", "DropDefault") and _column_of(s) in converted:
            continue  # the swap gives the new column the declared default
        if s.kind == "AlterColumnType" and s.detail is not None:
            facts = (conversions or {}).get((s.table, s.detail["column"]))
            if facts is None or facts["refused"]:
                refused.append("%s: %s" % (s.title, facts["refused"] if facts else s.lock))
                continue
            later_nn = any(x.kind == "SetNotNull" and _column_of(x) == (s.table, s.detail["column"])
                           for x in steps[n + 1:])
            more, removal = _conversion_steps(s, facts, short, later_nn)
            expand += more
            contract.append(removal)
            continue
        if s.lock is not None and s.kind != "SetNotNull":
            refused.append("%s: %s" % (s.title, s.lock))
            continue
        target = contract if s.kind == "Remove" else expand
        if s.kind == "RecordHistory" and history_first and s.title.startswith("create table"):
            # the data steps record themselves, each in its own transaction: the table comes before the first
            first = next((i for i, x in enumerate(expand) if x.kind == "RunDataStep"), len(expand))
            expand.insert(first, _online(s.title, s.why, s.statements, "short", HISTORY, None, s.change))
        elif s.kind == "RecordHistory":  # last: the history records the apply once every step has committed
            last.append(_online(s.title, s.why, s.statements, "short", HISTORY, None, s.change))
        elif s.kind == "RunDataStep":
            ran = s.detail or {}
            lock = DATA % (ran.get("seconds", 0) * 1000)
            expand.append(_online(s.title + ", in its own transaction, recorded in it", s.why, s.statements,
                                  "data", lock, s.table, s.change, detail=s))
        elif s.kind in ("RenameTable", "RenameColumn"):
            target.append(_online(s.title + " (one short step: code that uses the old name stops working here)",
                                  s.why, s.statements, "short", short(s.table), s.table, s.change))
        elif s.kind == "SetNotNull":
            table, column = _column_of(s)
            name = leftovers.nn_name(table, column)
            if (table, column) not in nn_checked:
                expand.append(_nn_check_step(table, column, name, short))
            expand += [
                _online("validate NOT NULL of '%s'.'%s' (CHECK '%s')" % (table, column, name),
                        "a scan that lets reads and writes go on",
                        [alter_statement("validate_constraint", table, name)],
                        "validate", SCAN % ("'%s'" % table), table, ValidateCheck(table, name)),
                _online("set '%s'.'%s' NOT NULL and drop the CHECK" % (table, column),
                        "the validated CHECK proves it: SET NOT NULL needs no scan (PostgreSQL 12+)",
                        [alter_statement("set_not_null", table, column),
                         alter_statement("drop_constraint", table, name)], "short", short(table), table,
                        s.change)]
        elif s.kind == "Backfill":
            table, column = _column_of(s)
            later = next((x for x in steps[n + 1:]
                          if x.kind == "SetNotNull" and _column_of(x) == (table, column)), None)
            if later is not None:  # new rows must not bring NULLs while the old ones are filled
                expand.append(_nn_check_step(table, column, leftovers.nn_name(table, column), short))
                nn_checked.add((table, column))
            fill = s.statements[0]
            expr = fill.split(" SET ", 1)[1].split(" = ", 1)[1].rsplit(" WHERE ", 1)[0]
            expand.append(_online(s.title + " in batches of %d" % FILL_BATCH, s.why,
                                  [alter_statement("fill_column_batch", table, column, expr, FILL_BATCH)],
                                  "batches", BATCHES % FILL_BATCH, table, s.change))
        else:
            tx = []
            title = s.title.replace(", after COMMIT", "")
            s = s.replace(title=title.split(", then VALIDATE")[0])
            for statement in s.statements:
                if "CONCURRENTLY" in statement:
                    if tx:
                        target.append(_online(s.title, s.why, tx, "short", short(s.table), s.table, s.change))
                        tx = []
                    target.append(_online(s.title, s.why, [statement], "concurrent",
                                          CONCURRENT % ("'%s'" % s.table), s.table, s.change))
                elif statement.startswith("ALTER TABLE") and " VALIDATE CONSTRAINT " in statement:
                    if tx:
                        target.append(_online(s.title, s.why, tx, "short", short(s.table), s.table, s.change))
                        tx = []
                    target.append(_online("VALIDATE: " + s.title, s.why, [statement], "validate",
                                          SCAN % ("'%s'" % s.table), s.table, s.change))
                elif s.kind == "Remove" and statement.startswith("DROP INDEX "):
                    target.append(_online(s.title + " CONCURRENTLY", s.why,
                                          [statement.replace("DROP INDEX ", "DROP INDEX CONCURRENTLY ", 1)],
                                          "concurrent", CONCURRENT % ("'%s'" % s.table), s.table, s.change))
                else:
                    tx.append(statement)
            if tx:
                target.append(_online(s.title, s.why, tx, "short", short(s.table), s.table, s.change))
    return expand + contract + last, refused


def _conversion_steps(s, facts, short, later_nn):
    """(the expand steps, the contract step) of one type conversion through a new column (module docstring)."""
    table, d = s.table, s.detail
    column, n = d["column"], facts["names"]
    detail = {"table": table, "column": column, "names": n, "using": d["using"], "type": d["type"], "pk": facts["pk"]}
    steps = [_online("start converting '%s'.'%s' to %s: new column '%s', kept in step by a trigger" % (
        table, column, d["type"], n["new"]),
        "a type conversion without a rewrite under ACCESS EXCLUSIVE: every INSERT and UPDATE from here on sets the new "
        "column from USING %s; a write the conversion fails on is kept (NULL in the new column, its key logged)" %
        d["using"], [alter_statement("start_conversion", table, n, d["type"], d["using"], facts["key"])],
        "short", short(table), table, StartConversion(table, column)),
        _online("fill '%s'.'%s' with the converted values, in batches" % (table, n["new"]),
                "the rows written before the trigger: USING %s, a range of pages per transaction" % d["using"],
                [alter_statement("conversion_batch", table, n, d["using"], 0, FILL_BATCH)], "convert",
                CONVERT % FILL_BATCH, table, ConvertBatches(table, n["new"]), detail=detail)]
    renames = []
    for index, definition in facts["indexes"]:
        temp = (leftovers.NEW_PREFIX + index)[:63]
        steps.append(_online("build index '%s' on the new column CONCURRENTLY (becomes '%s')" % (temp, index),
                             "index '%s' uses '%s': built again on the new column before the swap" % (index, column),
                             [definition], "concurrent", CONCURRENT % ("'%s'" % table), table,
                             ConvertIndex(table, index)))
        renames += [alter_statement("rename_index", index, (leftovers.OLD_PREFIX + index)[:63]),
                    alter_statement("rename_index", temp, index)]
    swap = [line for line in alter_statement("swap_conversion", table, column, n, d["default"]).split("\n") if line]
    nn = leftovers.nn_name(table, column)
    if d["notnull"] and not later_nn:
        swap += [alter_statement("drop_constraint_if_exists", table, nn),
                 alter_statement("add_not_null_check", table, nn, column)]
    steps.append(_online("swap '%s'.'%s': the converted column takes its name (one short step: code that writes "
                         "the old type stops working here)" % (table, column),
                         "the rows the application wrote that the conversion failed on are checked first; the old "
                         "column stays, renamed '%s', until the end" % n["old"], swap + renames, "swap",
                         short(table), table, SwapConversion(table, column), detail=detail))
    if d["notnull"] and not later_nn:
        steps += [_online("validate NOT NULL of '%s'.'%s' (CHECK '%s')" % (table, column, nn),
                          "a scan that lets reads and writes go on",
                          [alter_statement("validate_constraint", table, nn)], "validate", SCAN % ("'%s'" % table),
                          table, ValidateCheck(table, nn)),
                  _online("set '%s'.'%s' NOT NULL and drop the CHECK" % (table, column),
                          "the validated CHECK proves it: SET NOT NULL needs no scan (PostgreSQL 12+)",
                          [alter_statement("set_not_null", table, column),
                           alter_statement("drop_constraint", table, nn)], "short", short(table), table,
                          SetNotNull(table, column))]
    removal = _online("drop the old column '%s'.'%s' (the conversion's last step)" % (table, n["old"]),
                      "the conversion is swapped in: the old values go (their old indexes with them)",
                      [alter_statement("drop_column", table, n["old"])], "short", short(table), table,
                      DropOldColumn(table, n["old"]))
    return steps, removal


def _conversion_facts(conn, plan):
    """{(table, column): {"names", "key", "indexes": [(index, CREATE INDEX CONCURRENTLY on the new column)],
    "refused": why it cannot run online, or None}} for the plan's type conversions."""
    out = {}
    for s in plan.steps:
        if s.kind != "AlterColumnType" or s.detail is None:
            continue
        table, column = s.table, s.detail["column"]
        n = leftovers.conversion_names(table, column)
        rel = conn.execute("SELECT %s::regclass::oid", (quote_identifier(table),)).fetchone()[0]
        num = conn.execute("SELECT attnum FROM pg_attribute WHERE attrelid = %s AND attname = %s",
                           (rel, column)).fetchone()[0]
        users = ["constraint %s" % r[0] for r in conn.execute(
            "SELECT conname FROM pg_constraint WHERE (conrelid = %s AND %s = ANY(conkey)) OR "
            "(confrelid = %s AND %s = ANY(confkey)) ORDER BY 1", (rel, num, rel, num))]
        users += ["view %s" % r[0] for r in conn.execute(
            "SELECT DISTINCT v.relname FROM pg_depend d JOIN pg_rewrite w ON w.oid = d.objid "
            "JOIN pg_class v ON v.oid = w.ev_class WHERE d.classid = 'pg_rewrite'::regclass AND d.refobjid = %s "
            "AND d.refobjsubid = %s AND v.oid <> %s ORDER BY 1", (rel, num, rel))]
        refused = None
        if users:
            refused = ("an online conversion of a column that %s uses is not built (the key, constraint or view "
                       "would have to move to the new column): use a plain apply" % ", ".join(users))
        pk = conn.execute("SELECT ARRAY(SELECT a.attname::text FROM unnest(k.conkey) WITH ORDINALITY u(n, o) "
                          "JOIN pg_attribute a ON a.attrelid = k.conrelid AND a.attnum = u.n ORDER BY u.o) "
                          "FROM pg_constraint k WHERE k.conrelid = %s AND k.contype = 'p'", (rel,)).fetchone()
        key = ("concat_ws(', ', %s)" % ", ".join("NEW.%s::text" % quote_identifier(c) for c in pk[0]) if pk and pk[0]
               else "row_to_json(NEW)::text")
        indexes = []
        for index, definition in conn.execute(
                "SELECT c.relname, pg_get_indexdef(c.oid) FROM pg_depend d JOIN pg_class c ON c.oid = d.objid "
                "WHERE d.classid = 'pg_class'::regclass AND d.refobjid = %s AND d.refobjsubid = %s "
                "AND c.relkind = 'i' ORDER BY 1", (rel, num)):
            indexes.append((index, _index_on(definition, (leftovers.NEW_PREFIX + index)[:63], column, n["new"])))
        out[(table, column)] = {"names": n, "key": key, "indexes": indexes, "refused": refused,
                                "pk": list(pk[0]) if pk and pk[0] else []}
    return out


def _index_on(definition, name, column, new):
    """pg_get_indexdef's CREATE INDEX, built CONCURRENTLY under `name`, with `column` replaced by `new` in its keys,
    expressions and WHERE (identifiers outside string literals)."""
    head, rest = definition.split(" ON ", 1)
    words = head.split(" ")  # CREATE [UNIQUE] INDEX name
    head = " ".join(words[:-1] + ["CONCURRENTLY", quote_identifier(name)])
    table, body = rest.split(" USING ", 1)
    parts = re.split(r"('(?:[^']|'')*')", body)
    bare = re.escape(column) if re.fullmatch(r"[a-z_][a-z0-9_$]*", column) else "(?!)"  # printed unquoted
    pattern = re.compile(r'(?<![\w."])(?:"%s"|%s)(?![\w"])' % (re.escape(column.replace('"', '""')), bare))
    body = "".join(p if i % 2 else pattern.sub(quote_identifier(new), p) for i, p in enumerate(parts))
    return "%s ON %s USING %s;" % (head, table, body)


def _nn_check_step(table, column, name, short):
    return _online("add CHECK ('%s' IS NOT NULL) NOT VALID to '%s'" % (column, table),
                   "NOT NULL without a scan under ACCESS EXCLUSIVE: the CHECK is added NOT VALID (new rows are "
                   "checked), validated in its own transaction, then proves SET NOT NULL",
                   [alter_statement("drop_constraint_if_exists", table, name),
                    alter_statement("add_not_null_check", table, name, column)], "short", short(table), table,
                   AddNotNullCheck(table, name))


def with_history(schema):
    """The declaration as --online plans it: with schemagen's history kept even when it declares none, so that the
    database records the online change (issue 19); a database with nothing else to change gets none."""
    return schema if schema.history else attrs.evolve(schema, history=True)


def plan_online(url, schema, prune=None, lock_timeout=DEFAULT_LOCK_TIMEOUT):
    """What apply --online would do: OnlinePlan (its steps, each with the lock it takes and for how long; refused:
    the steps that cannot run online)."""
    p = pg_migration.plan(url, with_history(schema), prune=prune, concurrently=True, lock_timeout=lock_timeout)
    if not schema.history and all(s.kind == "RecordHistory" for s in p.steps):
        # nothing of the declaration's to change: an up-to-date database gets no history table for it
        p = pg_migration.plan(url, schema, prune=prune, concurrently=True, lock_timeout=lock_timeout)
    conversions = None
    if any(s.kind == "AlterColumnType" for s in p.steps):
        conn = pg_apply.connect(url)
        try:
            conversions = _conversion_facts(conn, p)
        finally:
            conn.close()
    steps, refused = online_steps(p, conversions=conversions)
    return OnlinePlan(p.database, steps, p, refused)


# --- running ---------------------------------------------------------------------------------

def _ms(conn, text):
    return int(conn.execute("SELECT EXTRACT(epoch FROM %s::interval) * 1000", (str(text or "0"),)).fetchone()[0])


class _Runner:
    def __init__(self, conn, schema, budget_ms, attempt_ms, statement_timeout):
        self.conn, self.schema, self.budget_ms, self.attempt_ms = conn, schema, budget_ms, attempt_ms
        self.statement_timeout = str(statement_timeout or "0")
        self.retries = 0
        self.stats = {}  # what apply --online --json reports (migrate/steps.ONLINE_FACTS): _held and run fill it
        self.label = ""  # the step being run, for the records in stats

    @contextlib.contextmanager
    def _held(self):
        """conn.transaction() timed: a committed one counts in stats as SQLite's _Lock counts its write
        transactions (longest_lock and its step, longest_own_lock the same: no CPU wait is split out here, and
        longest_locks: step, began, held_ms, commit_ms), from BEGIN to the end of its COMMIT. An attempt that
        fails (a lock not granted in time) holds nothing afterwards and is not counted."""
        began, started = time.time(), time.perf_counter()
        with self.conn.transaction():
            yield
            committing = time.perf_counter()
        ended = time.perf_counter()
        held, stats = ended - started, self.stats
        if held >= stats.get("longest_lock", 0.0):
            stats["longest_lock"] = stats["longest_own_lock"] = held
            stats["longest_lock_step"] = stats["longest_own_lock_step"] = self.label
        kept = stats.setdefault("longest_locks", [])
        kept.append({"step": self.label, "began": round(began, 3), "held_ms": round(held * 1000, 1),
                     "commit_ms": round((ended - committing) * 1000, 1)})
        kept.sort(key=lambda r: -r["held_ms"])
        del kept[LONGEST_KEPT:]

    def _retrying(self, attempt):
        """attempt() until it runs without a lock timeout, or the budget runs out (then the error is raised)."""
        started, backoff = time.monotonic(), locks.BACKOFF_MS[0]
        while True:
            try:
                return attempt()
            except pgerrors.LockNotAvailable:
                waited = (time.monotonic() - started) * 1000
                if self.budget_ms and waited + backoff >= self.budget_ms:
                    raise
                self.retries += 1
                time.sleep((backoff + random.uniform(0, backoff)) / 1000.0)
                backoff = min(backoff * 2, locks.BACKOFF_MS[1])

    def _timeouts(self, lock_ms):
        self.conn.execute("SELECT set_config('lock_timeout', %s, true), set_config('statement_timeout', %s, true)",
                          ("%dms" % lock_ms, self.statement_timeout))

    def run(self, step):
        conn = self.conn
        self.label = step.title
        if step.mode in ("short", "swap"):
            tables = locks.plan_tables([step], read_live(conn), self.schema)  # its table, and a new key's parents
            lock_first = locks.lock_statements(tables)  # children before parents, then the step

            def attempt():
                with self._held():
                    self._timeouts(self.attempt_ms)
                    for statement in lock_first:
                        conn.execute(statement)
                    if step.mode == "swap":
                        self._failed_conversions(step.detail)
                    for statement in step.statements:
                        conn.execute(statement)
            self._retrying(attempt)
        elif step.mode == "data":  # the data step and its record, in one transaction: run exactly once
            ds = step.detail.detail["data_step"]
            record = pg_history.step_record(self.schema, self.comp, step.detail)

            def attempt():
                with self._held():
                    self._timeouts(self.attempt_ms)
                    if ds.python is not None and not ds.sqlite_only:
                        try:
                            ds.python(conn)
                        except psycopg.errors.LockNotAvailable:
                            raise
                        except Exception as exc:
                            raise _Refused("data step '%s' failed: %s: %s" % (ds.name, type(exc).__name__, exc))
                    for statement in step.statements:
                        conn.execute(statement)
                    conn.execute(record)
            self._retrying(attempt)
        elif step.mode == "convert":
            self._convert(step.detail)
        elif step.mode == "validate":  # SHARE UPDATE EXCLUSIVE: waiting for it stops nobody's reads or writes
            def attempt():
                with self._held():
                    self._timeouts(self.budget_ms)
                    for statement in step.statements:
                        conn.execute(statement)
            self._retrying(attempt)
        elif step.mode == "batches":  # a batched phase: one record in stats["phases"], as SQLite's _Phase keeps
            def attempt():
                with self._held():
                    self._timeouts(self.attempt_ms)
                    return conn.execute(step.statements[0]).rowcount
            phase = {"step": step.title, "began": round(time.time(), 3), "seconds": None, "batches": 0}
            self.stats.setdefault("phases", []).append(phase)
            started = time.perf_counter()
            while True:
                more = self._retrying(attempt)
                phase["batches"] += 1
                if not more:
                    break
            phase["seconds"] = round(time.perf_counter() - started, 3)
        else:  # CONCURRENTLY: outside any transaction
            statement = step.statements[0]
            index = _index_name(statement)

            def attempt():
                conn.execute(alter_statement("session_timeouts", "%dms" % self.budget_ms, self.statement_timeout))
                try:
                    conn.execute(statement)
                except psycopg.Error:
                    if statement.startswith("CREATE") and index and _invalid(conn, index):
                        conn.execute(alter_statement("drop_index_concurrently_if_exists", index))
                    raise
            try:
                self._retrying(attempt)
            finally:
                conn.execute(alter_statement("session_timeouts", "0", "0"))


    def _convert(self, d):
        """The backfill of a conversion: the table's pages as they were when it started (rows written since are the
        trigger's), a range per transaction sized to about FILL_BATCH rows. A batch the conversion fails on (a
        value written since the plan) is done again through the trigger, which logs the rows for the swap."""
        conn, table, n = self.conn, d["table"], d["names"]
        pages, per_page = conn.execute(
            "SELECT pg_relation_size(%s::regclass) / current_setting('block_size')::int, "
            "CASE WHEN relpages > 0 AND reltuples > 0 THEN reltuples / relpages ELSE 100 END "
            "FROM pg_class WHERE oid = %s::regclass", (quote_identifier(table), quote_identifier(table))).fetchone()
        step = max(1, int(FILL_BATCH / max(per_page, 1)))
        phase = {"step": self.label, "began": round(time.time(), 3), "seconds": None, "batches": 0}
        self.stats.setdefault("phases", []).append(phase)  # a batched phase, as the "batches" steps' (run)
        started = time.perf_counter()
        for first in range(0, pages, step):
            phase["batches"] += 1
            batch = alter_statement("conversion_batch", table, n, d["using"], first, first + step)

            def attempt(sync_off=True, statement=batch):
                with self._held():
                    self._timeouts(self.attempt_ms)
                    if sync_off:
                        conn.execute("SELECT set_config('schemagen.sync', 'off', true)")
                    conn.execute(statement)
            try:
                self._retrying(attempt)
            except psycopg.errors.LockNotAvailable:
                raise
            except psycopg.Error:
                slow = alter_statement("conversion_batch", table, n, d["using"], first, first + step, sync_off=False)
                self._retrying(lambda: attempt(False, slow))
        phase["seconds"] = round(time.perf_counter() - started, 3)

    def _failed_conversions(self, d):
        """Inside the swap's transaction: the rows the trigger logged that the conversion still fails on; refused
        (_Refused) naming them, the old column still authoritative."""
        conn, n = self.conn, d["names"]
        keys = [r[0] for r in conn.execute("SELECT key FROM %s ORDER BY 1" % quote_identifier(n["fail"]))]
        if not keys:
            return
        pk = d.get("pk") or []
        bad = []
        for k in keys:
            if not pk:
                bad.append(k)
                continue
            try:
                with conn.transaction():
                    conn.execute("SELECT %s(t) FROM %s t WHERE concat_ws(', ', %s) = %%s" % (
                        quote_identifier(n["conv"]), quote_identifier(d["table"]), ", ".join("t.%s::text" % quote_identifier(c) for c in pk)), (k,))
            except psycopg.Error:
                bad.append(k)
        if bad:
            raise _Refused("'%s'.'%s': the application wrote %d value%s that USING %s cannot convert to %s since the "
                           "plan (rows (%s) %s%s); the old column stays authoritative and the application goes on: "
                           "fix those rows, then run apply again" % (
                               d["table"], d["column"], len(bad), "" if len(bad) == 1 else "s", d["using"], d["type"],
                               ", ".join(pk) or "as JSON", ", ".join(bad[:5]), ", ..." if len(bad) > 5 else ""))


def _index_name(statement):
    m = re.search(r'INDEX CONCURRENTLY (?:IF (?:NOT )?EXISTS )?("(?:[^"]|"")+"|\w+)', statement)
    return m.group(1).strip('"').replace('""', '"') if m else None


def _invalid(conn, name):
    row = conn.execute("SELECT NOT i.indisvalid FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid "
                       "WHERE c.relname = %s AND c.relnamespace = current_schema()::regnamespace", (name,)).fetchone()
    return bool(row and row[0])


def apply_online(url, schema, compiled, lock_timeout=DEFAULT_LOCK_TIMEOUT, statement_timeout=None, prune=None,
                 allow_data_loss=False, confirm=None, progress=None, attempt_ms=ATTEMPT_MS):
    """Migrate the PostgreSQL database at url to the declaration online (module docstring). A database holding
    none of the declared objects is created as plain apply does (nothing there to keep serving).
    progress(number, total, step) is called before each step. Returns an ApplyResult (migrate/steps.py) whose
    online is migrate/steps.online_facts(): transactions (the online steps committed), retries (lock attempts
    retried), the held time of each committed transaction (_Runner._held) and the batched phases."""
    database = mask(url)
    started = time.perf_counter()
    conn = pg_apply.connect(url)
    try:
        try:
            budget_ms = _ms(conn, lock_timeout)
        except psycopg.Error:
            raise ApplyError("%s: lock_timeout %r is not a duration (e.g. 5s, 500ms); nothing changed" % (
                database, lock_timeout)) from None
        _one_apply_at_a_time(conn, database, lock_timeout, budget_ms)
        if prune is None and not pg_apply._declared_present(conn, compiled["structure"]):
            # created in one transaction, as plain apply does: no online facts
            return pg_apply._apply(conn, url, database, compiled, lock_timeout, statement_timeout)
        runner = _Runner(conn, schema, budget_ms, min(attempt_ms, budget_ms) if budget_ms else attempt_ms,
                         statement_timeout)
        runner.comp = Compiled(schema)
        done, statements, step, total = 0, 0, None, 0
        try:
            # the renames (and what an interrupted apply left) first, each its own short step: planned inside
            # one transaction they would hold ACCESS EXCLUSIVE on their tables while the rest is planned
            first = _first_steps(conn, schema, compiled, database)
            total = len(first)
            for step in first:
                if progress is not None:
                    progress(done + 1, total, step)
                runner.run(step)
                done += 1
                statements += len(step.statements)
            step = None
            p = plan_online(url, schema, prune=prune, lock_timeout=lock_timeout)
            if p.refused:
                raise ApplyError("%s: --online cannot make %s without stopping the application (it rewrites or scans "
                                 "the table under ACCESS EXCLUSIVE): run a plain apply for it; nothing changed" % (
                                     database, "; ".join(p.refused)))
            if p.up_to_date and not done:
                nothing = Plan((), database=database, extras=p.plan.extras, notes=p.plan.notes)
                return ApplyResult(database, nothing, False, seconds=time.perf_counter() - started,
                                   report=pg_apply.check(conn, compiled, database),
                                   online=online_facts({"retries": runner.retries}))
            pg_migration._guard_data_loss(database, p.plan, allow_data_loss, confirm)
            total = done + len(p.steps)
            for step in p.steps:
                if progress is not None:
                    progress(done + 1, total, step)
                runner.run(step)
                done += 1
                statements += len(step.statements)
        except (psycopg.Error, KeyboardInterrupt, _Refused) as exc:
            text = " ".join(scrub(getattr(getattr(exc, "diag", None), "message_primary", None) or str(exc) or
                                  type(exc).__name__, url).split())
            if isinstance(exc, pgerrors.LockNotAvailable):
                text = "a lock was not granted within lock_timeout %s, retrying (%s)" % (lock_timeout, text)
            if not done:
                raise ApplyError("%s: online step 1 of %d (%s) failed: %s; nothing changed" % (
                    database, total, step.title if step else "planning", text)) from None
            raise ChangedThenFailed(
                "%s: %d of %d online steps committed, then '%s' failed: %s; the database still serves the "
                "application as before; run `schemagen apply --online` (or apply) again to finish" % (
                    database, done, total, step.title if step else "planning the rest", text)) from None
        except SchemagenError as exc:
            if not done:
                raise
            text = str(exc).replace("nothing was changed", "nothing more changed").replace(
                "nothing changed", "nothing more changed")
            raise ChangedThenFailed("%s: %d online steps committed first (the renames, what an interrupted apply left, "
                                    "the new tables and columns, each one short step), then the rest was refused: "
                                    "%s" % (
                                        database, done, text)) from None
        try:
            report = pg_apply.check(conn, compiled, database)
        except psycopg.Error as exc:
            raise ChangedThenFailed("%s: the online migration is committed, then reading it back failed: %s" % (
                database, " ".join(scrub(str(exc), url).split()))) from None
        # the plan carried out: the online steps run first (the renames, what an interrupted apply left), then the rest
        carried = Plan(list(first) + list(p.steps), database=database, extras=p.plan.extras,
                       data_loss=p.plan.data_loss, notes=p.plan.notes)
        return ApplyResult(database, carried, True, seconds=time.perf_counter() - started, statements=statements,
                           report=report, online=online_facts(dict(runner.stats, transactions=done, retries=runner.retries)))
    finally:
        conn.close()


def _one_apply_at_a_time(conn, database, lock_timeout, budget_ms):
    """schemagen's advisory lock for the whole online apply (released when conn closes): waited for up to
    lock_timeout (0: for as long as it takes), as a plain apply waits for it; a killed apply's server session
    holds it until the server notices the client is gone."""
    deadline = time.monotonic() + budget_ms / 1000.0
    while not conn.execute(alter_statement("online_apply_lock")).fetchone()[0]:
        if budget_ms and time.monotonic() >= deadline:
            raise ApplyError("%s: another schemagen apply is running on this database (waited lock_timeout %s); "
                             "nothing changed: apply again when it has finished" % (database, lock_timeout))
        time.sleep(0.05)


def _first_steps(conn, schema, compiled, database):
    """The online steps of the renames and of what an interrupted online apply left (pg/leftovers.py), read from
    the live catalog (the renames checked first: pg/plan.check_renames refuses, nothing changed); with data steps
    to run, then the new tables and the new columns they may fill (pg/history.expand_steps), so that planning,
    which runs the data steps, holds no ACCESS EXCLUSIVE lock while they run."""
    with conn.transaction(force_rollback=True):
        live = read_live(conn)
        pgplan.check_renames(conn, schema, live, database)
        renames = pgplan.rename_steps(schema, live)
        steps = leftovers.steps(conn, compiled["structure"]) + renames
        if (schema.history or schema.data_steps) and pg_history.pending(conn, schema):
            for step in renames:  # the new names, for a moment, in this transaction that is rolled back
                for statement in step.statements:
                    conn.execute(statement)
            steps += pg_history.expand_steps(schema, Compiled(schema), read_live(conn) if renames else live)
    if not steps:
        return []
    out, _ = online_steps(Plan(steps, database=database))  # none of these is refused online
    return out


# --- text ------------------------------------------------------------------------------------

def format_plan(p):
    """plan --online for a person: each step, the lock it takes and for how long."""
    if p.up_to_date:
        return "up to date: nothing to do (%s, PostgreSQL)" % p.database
    lines = ["%s (PostgreSQL, --online): %d steps, each its own transaction (CONCURRENTLY: outside one):" % (
        p.database, len(p.steps))]
    for n, s in enumerate(p.steps, start=1):
        lines += ["  %d. %s" % (n, s.title), "     lock: %s" % s.lock]
    if p.refused:
        lines += ["", "cannot run --online (they rewrite or scan a table under ACCESS EXCLUSIVE; use a plain apply):"]
        lines += ["  - %s" % r for r in p.refused]
    if p.plan.data_loss:
        lines += ["", "loses data (apply needs --allow-data-loss, and --yes off a terminal):"]
        lines += ["  - %s" % d["text"] for d in p.plan.data_loss]
    lines += ["  note: %s" % n for n in p.plan.notes]
    return "\n".join(lines)

