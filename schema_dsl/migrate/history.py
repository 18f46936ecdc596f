"""The history in the database, and the data steps it makes run once per database.

`_schemagen_history` (structure.HISTORY_TABLE) is schemagen's own table: one row per apply that changed the
file (and per `schemagen history --record`), written in apply's transaction, saying when, which declaration
(name and sha256 of its source), which schemagen, the titles of the steps it ran, the data steps it ran, the
data steps it recorded as done without running, and the backup it made. It is created only for a declaration
that has data steps or sets `Schema(history=True)`; the structure reader leaves it out, so no comparison,
count, inspect, --prune or the standalone validator ever sees it.

A declaration with data steps is planned in three parts (`plan_with_history`), all in apply's one transaction:

1. expand: the renames, the new tables, the new columns (added without the NOT NULL, UNIQUE or non-constant
   DEFAULT a step will satisfy; the rebuild of part 3 adds those) and their backfills;
2. every declared data step this database has not run yet, in declaration order;
3. the rest, planned by the ordinary planner against the file as parts 1 and 2 leave it: conversions, new
   NOT NULL and CHECK constraints, rebuilds, removals.

Parts 1 and 2 run while planning, so that part 3 is planned, and its data counted, against what the steps
have done. In apply (plan_for's keep) they run once: inside apply's own write transaction, kept there, and
their steps marked executed so that apply does not run them again (a big UPDATE runs once under the write lock,
a python= step is called once). `plan` runs them in a savepoint that is rolled back (on a scratch copy when
the file is only read). A step that fails refuses the whole apply with nothing changed, naming the step and
the statement.
A new or empty database records every step as done without running it: there is no old data to move.
"""
from __future__ import annotations

import contextlib
import json
import os
import sqlite3
import sys

from ..version import __version__
from ..errors import ApplyError, SchemagenError, UnsafeMigrationError
from ..sqlite.data import checkable_foreign_key_violations, describe_violation
from ..sqlite import dbfile
from ..sqlite.quote import quote_identifier
from ..sqlite.structure import HISTORY_TABLE
from .steps import RecordHistory, RunDataStep, Step

COLUMNS = ("id", "applied_at", "kind", "declaration", "declaration_sha256", "schemagen_version", "steps",
           "data_steps_run", "data_steps_recorded", "backup")


def wanted(target):
    """Whether the declaration keeps a history (it has data steps, or sets history=True)."""
    return bool(target.compiled.get("history") or target.compiled.get("data_steps"))


def has_table(conn):
    return conn is not None and conn.execute(
        "SELECT 1 FROM sqlite_master WHERE type = 'table' AND lower(name) = ?", (HISTORY_TABLE,)).fetchone() is not None


def records(conn):
    """Every record, oldest first, as dicts (steps and data step lists decoded); [] when there is no history."""
    if not has_table(conn):
        return []
    out = []
    # each column by name first: a double-quoted name SQLite does not find is read as a string ("backup")
    have = {r[0].lower() for r in conn.execute("SELECT name FROM pragma_table_info(?)", (HISTORY_TABLE,))}
    missing = [c for c in COLUMNS if c not in have]
    if missing:
        raise SchemagenError("table %r is not schemagen's history (it has no column %s; expected the columns %s); "
                             "nothing was changed: rename or drop that table" % (
                                 HISTORY_TABLE, ", ".join(missing), ", ".join(COLUMNS)))
    try:
        found = conn.execute("SELECT %s FROM %s ORDER BY id" % (", ".join(quote_identifier(c) for c in COLUMNS),
                                                               quote_identifier(HISTORY_TABLE))).fetchall()
    except sqlite3.Error as exc:  # a table of that name made by hand, not schemagen's record
        raise SchemagenError("table %r is not schemagen's history (%s; expected the columns %s); nothing was "
                             "changed: rename or drop that table" % (HISTORY_TABLE, exc, ", ".join(COLUMNS)))
    for row in found:
        r = dict(zip(COLUMNS, row))
        for key in ("steps", "data_steps_run", "data_steps_recorded"):
            try:
                r[key] = json.loads(r[key])
            except (TypeError, ValueError):
                r[key] = []
            if not isinstance(r[key], list) or not all(isinstance(x, str) for x in r[key]):
                raise SchemagenError("table %r is not schemagen's history: record %s has %s = %r, expected a JSON "
                                     "list of names; nothing was changed" % (HISTORY_TABLE, r["id"], key, row[
                                         COLUMNS.index(key)]))
        out.append(r)
    return out


def done(conn):
    """The names of the data steps this database has run or recorded as done, lower-cased: a name is one name
    whatever its case, as the declaration treats it (two steps whose names differ only in case are refused)."""
    return {name.lower() for r in records(conn) for name in (*r["data_steps_run"], *r["data_steps_recorded"])}


def check_record_names(names):
    """history --record: SchemagenError for a name no data step can have (empty, surrounding white space)."""
    bad = [n for n in names if not n.strip() or n != n.strip()]
    if bad:
        raise SchemagenError("history --record: %s is not a data step's name (expected a non-empty name without "
                             "surrounding white space); nothing was changed" % ", ".join(repr(n) for n in bad))


def last_design(conn):
    """The record of the last apply (not a by-hand --record) or None: which design the file was brought to."""
    applied = [r for r in records(conn) if r["kind"] == "apply"]
    return applied[-1] if applied else None


def _record(target, kind, steps, run, recorded, backup=None):
    """A record's values (target None: `history --record` without a declaration)."""
    source = (target.compiled.get("source") or {}) if target is not None else {}
    digest = source.get("sha256")
    if digest is None and target is not None:  # a declaration outside a project: the hash of what it compiles to
        from hashlib import sha256  # only then
        digest = sha256(json.dumps(target.structure, sort_keys=True).encode("utf-8")).hexdigest()
    return {"kind": kind, "declaration": target.name if target is not None else "(not given)",
            "declaration_sha256": digest or "unknown",
            "schemagen_version": __version__, "steps": json.dumps(list(steps), ensure_ascii=False),
            "data_steps_run": json.dumps(list(run), ensure_ascii=False),
            "data_steps_recorded": json.dumps(list(recorded), ensure_ascii=False), "backup": backup}


def _record_steps(target, conn, steps, run, recorded, backup=None):
    from ..compile import render  # only a declaration with a history renders its record
    out = []
    if not has_table(conn):
        out.append(Step("create table '%s'" % HISTORY_TABLE, "the declaration keeps a history (data steps or "
                        "history=True): schemagen's own table, not part of the declared schema",
                        [render.statement("create_history", HISTORY_TABLE)], change=RecordHistory(create=True)))
    record = _record(target, "apply", [s.title for s in steps], run, recorded, backup)
    why = "what this apply did: the declaration, its steps, %s" % (
        "the data steps it ran (%s)" % ", ".join(run) if run else "no data step run")
    if recorded:
        why += "; recorded as done without running: %s" % ", ".join(recorded)
    out.append(Step("record this apply in '%s'" % HISTORY_TABLE, why,
                    [render.statement("insert_history", HISTORY_TABLE, record)], change=RecordHistory(record)))
    return out


def with_backup(plan, backup, every_step=False):
    """The plan with its record step naming the backup apply made (the backup is made after planning).
    every_step: the record also lists every step of plan (apply --online commits its renames, or its expand and data
    steps, before it plans the rest, whose record would otherwise list the rest only)."""
    from ..compile import render  # Jinja2: only a declaration that keeps a history renders its record
    steps = []
    for s in plan.steps:
        ch = s.change
        if isinstance(ch, RecordHistory) and ch.record is not None:
            record = dict(ch.record, backup=backup)
            if every_step:
                record["steps"] = json.dumps([t.title for t in plan.steps if not isinstance(t.change, RecordHistory)],
                                             ensure_ascii=False)
            s = s.replace(statements=[render.statement("insert_history", HISTORY_TABLE, record)],
                          change=RecordHistory(record))
        steps.append(s)
    return plan.replace(steps=steps)


def _declared_steps(target):
    return list(target.compiled.get("data_steps") or ())


def _data_step(target, step):
    """The plan step that runs one declared data step."""
    if step["python"]:
        declared = next(s for s in target.schema.data_steps if s.name == step["name"])
        return Step("run data step '%s' (python)" % step["name"], "declared data step this database has not run "
                    "yet: %s" % getattr(declared.python, "__qualname__", repr(declared.python)), [],
                    change=RunDataStep(step["name"], run=declared.python))
    from ..compile import render  # each statement ends in one semicolon, as every statement of a plan does
    return Step("run data step '%s'" % step["name"], "declared data step this database has not run yet",
                [render.statement("verbatim", stmt) for stmt in dbfile.split_sql(step["sql"])],
                change=RunDataStep(step["name"], sql=step["sql"]))


def _is_empty(conn):
    return conn is None or conn.execute(
        "SELECT count(*) FROM sqlite_master WHERE name NOT LIKE 'sqlite\\_%' ESCAPE '\\' AND lower(tbl_name) != ?",
        (HISTORY_TABLE,)).fetchone()[0] == 0


def plan_with_history(conn, target, structural, keep=None):
    """The plan of a declaration that keeps a history (see the module docstring).

    conn: the database (None: a new file); structural(conn): the ordinary plan of the file behind conn.
    keep: apply's hook, called before the first write of parts 1 and 2; given, what they do is kept in the
    caller's transaction and their steps are marked executed (None: plan, rolled back).
    """
    declared = _declared_steps(target)
    if _is_empty(conn):
        plan = structural(conn)
        names = [s["name"] for s in declared]
        return plan.replace(steps=list(plan.steps) + _record_steps(target, conn, plan.steps, [], names))
    finished = done(conn)
    pending = [s for s in declared if s["name"].lower() not in finished]
    if not pending:
        plan = structural(conn)
        if plan.up_to_date and has_table(conn):
            return plan
        return plan.replace(steps=list(plan.steps) + _record_steps(target, conn, plan.steps, [], []))
    try:
        first, rest = _plan_parts(conn, target, pending, structural, keep)
    except _ReadOnly:
        first, rest = _plan_on_copy(conn, target, pending, structural)
    steps = first + list(rest.steps)
    scope = list(rest.fk_scope) + [t.name for t in target.schema.ordered_tables() if t.name not in rest.fk_scope]
    return rest.replace(steps=steps + _record_steps(target, conn, steps, [s["name"] for s in pending], []),
                        touches_rows=True, fk_scope=scope, fresh=False)


class _ReadOnly(Exception):
    pass


def _plan_parts(conn, target, pending, structural, keep=None):
    """Run the expand steps and the pending data steps on conn in a savepoint, plan the rest against what they
    leave; (the steps of parts 1 and 2, the plan of part 3). Rolled back, unless keep is given and all went
    well: then released, and the steps marked executed (see plan_with_history)."""
    if keep is not None:
        keep()
    conn.execute("SAVEPOINT schemagen_data_steps")
    kept = False
    try:
        first = _expand(conn, target)
        # plan: the foreign key violations the steps leave (apply checks the whole result before COMMIT instead)
        violations = checkable_foreign_key_violations(conn) if keep is None else None
        for step in pending:
            s = _data_step(target, step)
            before = conn.total_changes
            run_step(conn, s, s.title)
            first.append(s.replace(rows=conn.total_changes - before))
        rest = structural(conn)
        if violations is not None:
            _refuse_orphans(conn, pending, rest, violations)
        kept = keep is not None
    finally:
        if conn.in_transaction:  # else SQLite ended the whole transaction itself (a full disk): nothing to undo here
            if not kept:
                conn.execute("ROLLBACK TO schemagen_data_steps")
            conn.execute("RELEASE schemagen_data_steps")
    if kept:
        first = [s.replace(executed=True) for s in first]
    return first, rest


def _refuse_orphans(conn, pending, rest, before):
    """plan: UnsafeMigrationError when the data steps left rows without their parent (foreign keys are off in apply's
    transaction, so a DELETE fires no ON DELETE action), in a table the rest of the plan does not drop."""
    seen = {(v["table"], v["rowid"], v["parent"]) for v in before}
    dropped = {s.change.name.lower() for s in rest.steps if type(s.change).__name__ == "Remove" and s.change.kind == "table"}
    new = [v for v in checkable_foreign_key_violations(conn) if (v["table"], v["rowid"], v["parent"]) not in seen
           and v["table"].lower() not in dropped]
    if new:
        raise UnsafeMigrationError(
            "refusing to migrate, nothing was changed: the data steps would leave %d foreign key violations: %s; "
            "foreign keys are off in apply's transaction, so no ON DELETE or ON UPDATE action fires for data step %s: "
            "delete or update the child rows in the step itself" % (
                len(new), "; ".join(describe_violation(conn, v) for v in new[:5]),
                ", ".join("'%s'" % s["name"] for s in pending)))


def _plan_on_copy(conn, target, pending, structural):
    """A read-only file (plan): the same on a scratch copy made with the backup API."""
    with dbfile.scratch_copy(conn) as copy:
        return _plan_parts(copy, target, pending, structural)


_TRANSACTION_CONTROL = (getattr(sqlite3, "SQLITE_TRANSACTION", 22), getattr(sqlite3, "SQLITE_SAVEPOINT", 32))
# actions that write a table, and the argument naming it (ALTER TABLE: the second, after the database's name)
_WRITES = {getattr(sqlite3, "SQLITE_INSERT", 18): 0, getattr(sqlite3, "SQLITE_UPDATE", 23): 0,
           getattr(sqlite3, "SQLITE_DELETE", 9): 0, getattr(sqlite3, "SQLITE_DROP_TABLE", 11): 0,
           getattr(sqlite3, "SQLITE_ALTER_TABLE", 26): 1}


def run_step(conn, step, label):
    """Execute one step's statements (or its python callable); ApplyError names the step and the statement.

    While it runs, an authorizer denies BEGIN, COMMIT, ROLLBACK, SAVEPOINT and RELEASE: a data step runs inside
    apply's transaction (and, when planned, inside its savepoint), and a COMMIT there would commit half an apply
    before its backup and checks; a denied statement fails the step, and the whole apply rolls back. It denies
    too any write to schemagen's own tables (_schemagen_history: a step that erased it would make the steps
    recorded there run again)."""
    denied = []

    def authorize(action, *args):
        if action in _TRANSACTION_CONTROL:
            denied.append(None)
            return sqlite3.SQLITE_DENY
        table = args[_WRITES[action]] if action in _WRITES else None
        if isinstance(table, str) and table.lower().startswith("_schemagen_"):
            denied.append(table)
            return sqlite3.SQLITE_DENY
        return sqlite3.SQLITE_OK

    conn.set_authorizer(authorize)
    try:
        _run_step(conn, step, label, denied)
    finally:
        conn.set_authorizer(None)


def _refuse_unrun(result, label):
    """A python= step that is an async def or a generator function returned without running its body (a coroutine
    or a generator): ApplyError, so that the history never says it ran."""
    if hasattr(result, "__await__") or (hasattr(result, "__next__") and hasattr(result, "send")):
        result.close()
        raise ApplyError("%s returned a %s without running its body: python= must be a plain function that does the "
                         "work when called with the connection (not async def, not a generator); nothing was changed" % (
                             label, "coroutine" if hasattr(result, "__await__") else "generator"))


def _run_step(conn, step, label, denied):
    def ended():
        if denied and denied[0] is not None:
            return ("%s writes schemagen's own table '%s' (the _schemagen_ prefix is reserved: the history is what "
                    "makes each data step run once); nothing was changed" % (label, denied[0]))
        return ("%s tried to end or open a transaction or savepoint (COMMIT, ROLLBACK, BEGIN, SAVEPOINT or RELEASE): "
                "a data step runs inside apply's one transaction and must not; nothing was changed" % label)
    run = getattr(step.change, "run", None)
    if run is not None:
        try:
            with contextlib.redirect_stdout(sys.stderr):  # stdout is the command's own (--json: only the JSON)
                result = run(conn)
            _refuse_unrun(result, label)
        except ApplyError:
            raise
        except Exception as exc:
            if isinstance(exc, sqlite3.OperationalError) and "readonly" in str(exc).replace(" ", "").replace("-", ""):
                raise _ReadOnly() from None  # plan on a read-only file: the caller plans on a copy
            if denied:
                raise ApplyError(ended()) from None
            raise ApplyError("%s failed: %s: %s; nothing was changed" % (label, type(exc).__name__, exc)) from None
        if not conn.in_transaction:
            raise ApplyError("%s ended apply's transaction (a python= data step must not commit or roll back)" % label)
        if denied:  # the step caught the denial and went on: it still tried
            raise ApplyError(ended())
        return
    for stmt in step.statements:
        try:
            conn.execute(stmt)
        except sqlite3.OperationalError as exc:
            if "readonly" in str(exc).replace(" ", "").replace("-", ""):
                raise _ReadOnly() from None
            if denied:
                raise ApplyError("%s; statement: %s" % (ended(), " ".join(stmt.split()).rstrip(";")[:300])) from None
            raise ApplyError("%s failed: %s; statement: %s; nothing was changed" % (
                label, exc, " ".join(stmt.split()).rstrip(";")[:300])) from None
        except sqlite3.Error as exc:
            if denied:
                raise ApplyError("%s; statement: %s" % (ended(), " ".join(stmt.split()).rstrip(";")[:300])) from None
            raise ApplyError("%s failed: %s; statement: %s; nothing was changed" % (
                label, exc, " ".join(stmt.split()).rstrip(";")[:300])) from None


def run_each(conn, target, transaction):
    """apply --online: parts 1 and 2 carried out for real before the rest is planned, each step in its own
    transaction (transaction(title): a context manager, BEGIN IMMEDIATE ... COMMIT), and each data step's
    transaction also writes its own record (kind "data step"), so that a data step runs exactly once even when the
    apply is killed after it: the next apply finds it done. conn: autocommit. Returns the steps run (with the
    rows each changed); [] when the declaration keeps no history, the file is empty or no data step is pending.
    A failing step rolls back its own transaction only (ApplyError naming it)."""
    if not wanted(target) or _is_empty(conn):
        return []
    from ..compile import render  # only a declaration with data steps renders them
    pending = [s for s in _declared_steps(target) if s["name"] not in done(conn)]
    if not pending:
        return []
    steps = _expand(conn, target, transaction)
    for declared in pending:
        step = _data_step(target, declared)
        with transaction(step.title):
            if not has_table(conn):
                conn.execute(render.statement("create_history", HISTORY_TABLE))
            before = conn.total_changes
            run_step(conn, step, step.title)
            rows = conn.total_changes - before
            conn.execute(render.statement("insert_history", HISTORY_TABLE, _record(
                target, "data step", [step.title], [declared["name"]], [])))
        steps.append(step.replace(rows=rows, executed=True))
    return steps


def _expand(conn, target, transaction=None):
    """Part 1, executed on conn as it is planned: renames, new tables, new columns without the constraints a data
    step will satisfy, and their backfills (transaction given: each step in its own, see run_each)."""
    # only a pending data step needs the model, the diff and the renderer
    from ..compile import render
    from ..model import evolve
    from ..analysis.sqltext import is_constant_default
    from . import diff as d
    from .introspect import read_live
    schema = target.schema
    steps = []

    def run(step):
        if transaction is None:
            run_step(conn, step, step.title)
        else:
            with transaction(step.title):
                run_step(conn, step, step.title)
        steps.append(step if transaction is None else step.replace(executed=True))

    live = read_live(conn)
    for ch in d.renames(schema, live):
        if isinstance(ch, d.RenameTable):
            run(Step("rename table '%s' to '%s'" % (ch.old, ch.table.name), ch.reason,
                     [render.statement("rename_table", ch.old, ch.table.name)], table=ch.old, change=ch))
        else:
            run(Step("rename column '%s'.'%s' to '%s'" % (ch.table.name, ch.old, ch.new), ch.reason,
                     [render.statement("rename_column", ch.table.name, ch.old, ch.new)], table=ch.table.name, change=ch))
    live = read_live(conn)
    for t in schema.ordered_tables():
        lt = live.table(t.name)
        if lt is None:
            run(Step("create table '%s'" % t.name, "table is new (created before the data steps, which may fill it)",
                     [target.statement("create_table", t.name)], change=d.CreateTable(t)))
            continue
        pk = {c.lower() for c in t.primary_key.columns} if t.primary_key else set()
        for c in t.columns:
            if lt.column(c.name) is not None or c.name.lower() in pk:
                continue
            if d.add_column_blocker(t, c) is None:
                stmt, note = target.statement("add_column", t.name, c.name), ""
            else:
                loose = evolve(c, not_null=False, unique=False, not_null_on_conflict=None, unique_on_conflict=None,
                               backfill=None, default=c.default if is_constant_default(c.default) else None)
                stmt = render.add_column_sql(evolve(t, foreign_keys=[f for f in t.foreign_keys if len(f.columns) == 1]),
                                             loose)
                note = " (without its constraints: the rebuild after the data steps adds them)"
            run(Step("add column '%s'.'%s'%s" % (t.name, c.name, note), "column is new; added before the data steps, "
                     "which may fill it", [stmt], table=lt.name, change=d.AddColumn(t, c)))
            if c.backfill:
                run(Step("fill column '%s'.'%s'" % (t.name, c.name), "fill the new column for existing rows with "
                         + c.backfill, [render.statement("fill_column", t.name, c.name, c.backfill)], table=lt.name,
                         change=d.Backfill(t, c.name, c.backfill)))
    return steps


def read_history(path):
    """The records of the database at path (only read); SchemagenError for a missing or unusable file."""
    dbfile.check_path(path, write=False)
    conn = dbfile.open_existing(path, "ro")
    try:
        return records(conn)
    except sqlite3.Error as exc:
        raise SchemagenError(dbfile.describe_sqlite_error(path, exc)) from None
    finally:
        conn.close()


def record_by_hand(path, names, target):
    """`schemagen history --record NAME`: mark data steps done without running them, in one transaction.

    target: the declaration (its name and hash go in the record), or None; a name the declaration does not
    declare is refused when the declaration is known.
    """
    from ..compile import render  # see with_backup
    check_record_names(names)
    names = list(dict.fromkeys(names))
    if target is not None:
        declared = {s["name"].lower() for s in _declared_steps(target)}
        unknown = [n for n in names if n.lower() not in declared]
        if unknown:
            raise SchemagenError("history --record: the declaration '%s' has no data step %s (it declares: %s); "
                                 "nothing was changed" % (target.name, ", ".join(repr(n) for n in unknown),
                                                          ", ".join(s["name"] for s in _declared_steps(target))
                                                          or "none"))
    dbfile.check_path(path, write=True)
    if not os.path.exists(path):
        raise SchemagenError("database %r does not exist; nothing was changed" % path)
    conn = dbfile.connect(path)
    try:
        conn.execute("BEGIN IMMEDIATE")
        already = done(conn)
        fresh = [n for n in names if n.lower() not in already]
        if fresh:
            if not has_table(conn):
                conn.execute(render.statement("create_history", HISTORY_TABLE))
            conn.execute(render.statement("insert_history", HISTORY_TABLE, _record(target, "record", [], [], fresh)))
        conn.execute("COMMIT")
        return fresh
    except sqlite3.Error as exc:
        if conn.in_transaction:
            conn.execute("ROLLBACK")
        raise SchemagenError(dbfile.describe_sqlite_error(path, exc)) from None
    finally:
        conn.close()


def refuse_python_steps(plan):
    """plan --sql cannot carry a python= data step: SchemagenError naming it."""
    names = [s.change.name for s in plan.steps if isinstance(s.change, RunDataStep) and s.change.run is not None]
    if names:
        raise SchemagenError("plan --sql: data step %s is python=, which a standalone SQL script cannot carry; run "
                             "`schemagen apply`, or declare it with sql=" % ", ".join("'%s'" % n for n in names))
