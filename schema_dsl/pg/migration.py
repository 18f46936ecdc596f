"""Plan, apply and export a migration on PostgreSQL (the steps come from plan.py).

apply runs in one transaction (PostgreSQL's DDL is transactional), under the `lock_timeout` and `statement_timeout`
the user sets, for that transaction only. Inside it: the renames run, the rest is planned against the renamed
tables (so nothing changes between reading and writing), the data-loss guard asks, the tables the steps change are
locked up front, children before parents, retried in short attempts (pg/locks.py: no deadlock with an application's
foreign-key check), the steps run, and the plan is made again: it must find nothing left but the concurrent builds,
or everything is rolled back. A lock not granted in time, a statement that runs too long, or any failing statement
rolls everything back: exit 2, nothing changed.

With concurrently=True an index on a table that has rows is built CREATE INDEX CONCURRENTLY after COMMIT,
outside any transaction, one statement at a time. A failure there exits 3 ("changed, then failed"): the
migration is committed and PostgreSQL leaves the index INVALID; the next plan finds it (pg_index.indisvalid)
and rebuilds it.

PostgreSQL has no file backup, so a plan that loses data (a dropped table or column) always needs
allow_data_loss, and then confirm(plan) must say yes (the CLI: --yes off a terminal).
"""
from __future__ import annotations

import time

import psycopg
from psycopg import errors as pgerrors

from ..compile.postgresql import Compiled, alter_statement
from ..errors import ApplyError, ChangedThenFailed, UnsafeMigrationError
from ..migrate import loss
from ..migrate.steps import ApplyResult
from . import apply as pg_apply
from . import leftovers, locks
from . import plan as pgplan
from .introspect import read_live
from .url import mask, scrub
from ..sqlite.structure import HISTORY_TABLE

DEFAULT_LOCK_TIMEOUT = pg_apply.DEFAULT_LOCK_TIMEOUT


def _set_timeouts(conn, lock_timeout, statement_timeout):
    conn.execute("SELECT set_config('lock_timeout', %s, true)", (str(lock_timeout or "0"),))
    conn.execute("SELECT set_config('statement_timeout', %s, true)", (str(statement_timeout or "0"),))


def _planned(conn, schema, comp, database, prune, concurrently):
    """(the steps that finish an interrupted online apply (pg/leftovers.py) and the rename steps, both already
    run on conn; the plan of the rest), inside the caller's transaction."""
    live = read_live(conn)
    pgplan.check_renames(conn, schema, live, database)
    renames = leftovers.steps(conn, comp.structure) + pgplan.rename_steps(schema, live)
    for step in renames:
        for statement in step.statements:
            conn.execute(statement)
    if renames:
        live = read_live(conn)
    if not (schema.history or schema.data_steps):
        return renames, pgplan.plan_rest(conn, schema, comp, live, database, prune, concurrently)
    from . import history as pg_history  # only a declaration that keeps a history needs it
    fresh = not pg_apply._declared_present(conn, comp.structure)
    todo = [] if fresh else pg_history.pending(conn, schema)
    if todo:
        renames = list(renames) + pg_history.expand_and_run(conn, schema, comp, live, database, todo)
        live = read_live(conn)
    rest = pgplan.plan_rest(conn, schema, comp, live, database, prune, concurrently)
    if todo or rest.steps or not pg_history.has_table(conn):
        before = list(renames) + list(rest.transactional)
        record = pg_history.record_steps(conn, schema, comp, before, [s.name for s in todo if not s.sqlite_only],
                                         [s.name for s in schema.data_steps] if fresh else
                                         [s.name for s in todo if s.sqlite_only])
        rest = rest.replace(steps=list(rest.transactional) + record + list(rest.concurrent))
    return renames, rest


def _errors(url, database, lock_timeout, statement_timeout, where, exc, changed=""):
    """The ApplyError for a psycopg error inside the transaction (everything rolled back)."""
    text = " ".join(scrub(getattr(exc.diag, "message_primary", None) or str(exc), url).split())
    at = "%s: " % where if where else ""
    if isinstance(exc, pgerrors.LockNotAvailable):
        return ApplyError("%s: a lock was not granted within lock_timeout %s (%s%s): another session holds it; rolled "
                          "back, nothing changed" % (database, lock_timeout, at, text))
    if isinstance(exc, pgerrors.QueryCanceled):
        return ApplyError("%s: a statement ran past statement_timeout %s (%s%s); rolled back, nothing changed" % (
            database, statement_timeout, at, text))
    return ApplyError("%s: %s%s; rolled back, nothing changed" % (database, at, text))


def plan(url, schema, prune=None, concurrently=False, lock_timeout=DEFAULT_LOCK_TIMEOUT):
    """What apply would do (a migrate/steps.Plan), planned in a transaction that is always rolled back."""
    return _plan(url, schema, prune, concurrently, lock_timeout)[0]


def _plan(url, schema, prune, concurrently, lock_timeout):
    """(the plan, the fingerprint of the structure it was planned against: plan --sql's guard)."""
    database = mask(url)
    comp = Compiled(schema)
    conn = pg_apply.connect(url)
    try:
        with conn.transaction(force_rollback=True):
            _set_timeouts(conn, lock_timeout, None)
            fingerprint = conn.execute(alter_statement("structure_fingerprint")).fetchone()[0]
            fresh = not pg_apply._declared_present(conn, comp.structure)  # as apply's fresh path (SQLite's fresh)
            renames, rest = _planned(conn, schema, comp, database, prune, concurrently)
        return pgplan.combine(database, renames, rest).replace(fresh=fresh), fingerprint
    except psycopg.Error as exc:
        raise _errors(url, database, lock_timeout, None, "planning", exc) from None
    finally:
        conn.close()


# how the data-loss guard names what the reader can do on PostgreSQL (SQLite's: migrate/apply.CLI_TERMS)
TERMS = {"no_backup": "PostgreSQL has no file backup", "allow": "--allow-data-loss is given", "accept": ""}


def _guard_data_loss(database, plan, allow_data_loss, confirm):
    """The one data-loss guard (migrate/loss.guard), with no backup: allow_data_loss, then confirm."""
    loss.guard(database, plan, False, allow_data_loss, confirm, TERMS)


def apply(url, schema, compiled, lock_timeout=DEFAULT_LOCK_TIMEOUT, statement_timeout=None, prune=None,
          allow_data_loss=False, confirm=None, concurrently=False, progress=None):
    """Create or migrate the PostgreSQL database at url to the declaration (see the module docstring).

    compiled: the declaration as generated/postgresql/declaration.json has it (a fresh database runs its
    statements, as pg/apply.py does). progress(step, statement) is called before each statement.
    """
    database = mask(url)
    comp = Compiled(schema)
    conn = pg_apply.connect(url)
    try:
        if prune is None and not pg_apply._declared_present(conn, compiled["structure"]):
            after = ()
            if schema.history or schema.data_steps:  # a new database: every data step recorded as done, not run
                from . import history as pg_history  # see _planned
                with conn.transaction(force_rollback=True):
                    has = pg_history.has_table(conn)
                after = [s for step in pg_history.record_steps(conn if has else None, schema, comp, [], [],
                                                               [d.name for d in schema.data_steps])
                         for s in step.statements]
            return pg_apply._apply(conn, url, database, compiled, lock_timeout, statement_timeout, after=after)
        return _migrate(conn, url, database, schema, comp, compiled, lock_timeout, statement_timeout, prune,
                        allow_data_loss, confirm, concurrently, progress)
    finally:
        conn.close()


def _migrate(conn, url, database, schema, comp, compiled, lock_timeout, statement_timeout, prune, allow_data_loss,
             confirm, concurrently, progress):
    started = time.perf_counter()
    where = None
    try:
        with conn.transaction():
            _set_timeouts(conn, lock_timeout, statement_timeout)
            where = "waiting for another schemagen apply on this database"
            conn.execute(alter_statement("apply_lock"))
            where = "planning"
            renames, rest = _planned(conn, schema, comp, database, prune, concurrently)
            full = pgplan.combine(database, renames, rest)
            if full.up_to_date:
                where = None
                return ApplyResult(database, full, False, seconds=time.perf_counter() - started,
                                   report=pg_apply.check(conn, compiled, database))
            _guard_data_loss(database, full, allow_data_loss, confirm)
            where = "locking the tables it changes (children before parents)"
            locks.acquire(conn, locks.plan_tables(rest.transactional, read_live(conn), schema))
            for step in rest.transactional:
                for statement in step.statements:
                    where = "%s (%s)" % (step.title, statement)
                    if progress is not None:
                        progress(step, statement)
                    conn.execute(statement)
            where = "checking the result"
            again = pgplan.plan_rest(conn, schema, comp, read_live(conn), database, prune, concurrently)
            left = [s.title for s in again.steps if not s.concurrent]
            if left:
                raise ApplyError("%s: after the migration the plan still finds %s; rolled back, nothing changed" % (
                    database, "; ".join(left[:5])))
    except psycopg.Error as exc:
        raise _errors(url, database, lock_timeout, statement_timeout, where, exc) from None
    statements = len([s for st in full.transactional for s in st.statements])
    built = 0
    if full.concurrent:
        # From here on the migration is committed: a failure exits 3 and leaves an INVALID index to rebuild.
        step = None
        try:
            conn.execute(alter_statement("session_timeouts", str(lock_timeout or "0"), str(statement_timeout or "0")))
            for step in full.concurrent:
                for statement in step.statements:
                    if progress is not None:
                        progress(step, statement)
                    conn.execute(statement)
                    statements += 1
                built += 1
        except (psycopg.Error, KeyboardInterrupt) as exc:
            text = " ".join(scrub(getattr(getattr(exc, "diag", None), "message_primary", None) or str(exc) or
                                  type(exc).__name__, url).split())
            raise ChangedThenFailed(
                "%s: the migration is committed (%d steps), then the concurrent build '%s' failed after COMMIT: %s; "
                "PostgreSQL leaves such an index INVALID: run `schemagen plan` / `schemagen apply --concurrently` "
                "again to rebuild it" % (database, len(full.transactional), step.title if step else "?", text)) from None
    try:
        report = pg_apply.check(conn, compiled, database)
    except psycopg.Error as exc:
        raise ChangedThenFailed("%s: the migration is committed, then reading it back failed: %s" % (
            database, " ".join(scrub(str(exc), url).split()))) from None
    return ApplyResult(database, full, True, seconds=time.perf_counter() - started, statements=statements,
                       report=report, concurrent_built=built)


# --- plan --sql ------------------------------------------------------------------------

def _comment(text):
    return "-- " + " ".join(str(text).split())


def export_script(url, schema, prune=None, concurrently=False, lock_timeout=DEFAULT_LOCK_TIMEOUT,
                  statement_timeout="0", compiled=None):
    """The migration as one .sql file for psql: part 1 in one transaction (BEGIN ... COMMIT, with the timeouts set
    for it), part 2 (when there are concurrent builds) after COMMIT. The URL in its header is masked."""
    p, fingerprint = _plan(url, schema, prune, concurrently, lock_timeout)
    python = [s.title for s in p.steps if s.kind == "RunDataStep" and s.title.endswith("(python)")]
    if python:
        raise UnsafeMigrationError("plan --sql: %s is python=, which a standalone SQL script cannot carry; run "
                                   "`schemagen apply`, or give the step postgresql=" % "; ".join(python))
    source = (compiled or {}).get("source") or {}
    lines = [alter_statement("script_header", source.get("declaration") or schema.source or schema.name, schema.name,
                             source.get("sha256") or "unknown", p.database, len(p.steps),
                             len(p.statements), 2 if p.concurrent else 1)]
    lines += [_comment("LOSES DATA: %s" % d["text"]) for d in p.data_loss]
    lines += [_comment("kept, not in the declaration: %s" % e) for e in p.extras]
    if p.up_to_date:
        lines.append(_comment("up to date: nothing to do"))
        return "\n".join(lines) + "\n"
    lines += ["", _comment("part 1: in one transaction") if p.concurrent else "",
              alter_statement("begin", str(lock_timeout or "0"), str(statement_timeout or "0")),
              "", _comment("guard: the structure this script was planned against (an md5 over pg_catalog's rows of the "
                           "current schema, as the server prints them); on any other, it raises and nothing changes"),
              alter_statement("guard_structure", fingerprint)]
    number = 0
    # the history existed when planned (the structure guard holds it to that): each data step's guard reads it
    history = not any(s.kind == "RecordHistory" and s.title.startswith("create table") for s in p.steps)
    for step in p.transactional:
        number += 1
        lines += ["", _comment("step %d of %d: %s" % (number, len(p.steps), step.title)), _comment("why: %s" % step.why)]
        if step.lock:
            lines.append(_comment("lock: %s" % step.lock))
        if history and step.data_step is not None and step.statements:
            lines += [_comment("guard: the history does not record this data step yet"),
                      alter_statement("guard_data_step", HISTORY_TABLE, step.data_step)]
        lines += list(step.statements)
    lines += ["", alter_statement("commit")]
    if p.concurrent:
        lines += ["", _comment("part 2: after COMMIT, outside any transaction, one statement at a time; a failure "
                               "here leaves an INVALID index, which the next plan rebuilds"),
                  alter_statement("session_timeouts", str(lock_timeout or "0"), str(statement_timeout or "0"))]
        for step in p.concurrent:
            number += 1
            lines += ["", _comment("step %d of %d: %s" % (number, len(p.steps), step.title)),
                      _comment("why: %s" % step.why)]
            lines += list(step.statements)
    return "\n".join(lines) + "\n"
