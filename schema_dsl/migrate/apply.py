"""Apply: bring a database file to the declaration in one transaction.

The whole plan runs inside one BEGIN IMMEDIATE transaction, planned inside it
(so nothing changes between reading and writing), with foreign key
enforcement switched off outside the transaction so that dropping a rebuilt
table never fires another table's ON DELETE action. Before COMMIT the
declared structure is verified and PRAGMA foreign_key_check must show no
violation that the migration introduced; otherwise ROLLBACK and an
ApplyError naming the step and statement. journal_mode=WAL is set after the
COMMIT (it cannot change inside a transaction). A file that did not exist
before a failed apply is removed again.

The fresh and up-to-date paths work from the compiled declaration
(target.py): they import neither Jinja2 nor asyncio and build no model.
"""
from __future__ import annotations

import os
import sqlite3
import time

from ..sqlite import dbfile, structure
from ..sqlite.leftovers import drop_leftovers
from ..errors import ApplyError, ChangedThenFailed, DatabaseFileError, SchemagenError, UnsafeMigrationError
from .plan import check_renames, fresh_plan, migration_plan, setting_steps
from .steps import ApplyResult, Plan, Step
from .dependents import broken_dependents, check_dependents, planned_problems
from .backup import DEFAULT_KEEP, check_backup_dir, check_keep, damage, discard, make_backup, prune
from ..compile.target import target_for
from ..sqlite.data import checkable_foreign_key_violations, describe_violation, foreign_key_violations


DEFAULT_TIMEOUT_S = dbfile.DEFAULT_BUSY_TIMEOUT_MS / 1000.0
KEPT_DESCRIBED = 20  # violations already in the file that apply's report describes one by one


def connection_pragmas(files, include_persistent=False, persistent=None):
    """The PRAGMA statements of the rendered pragmas.sql, per-connection ones only by default.

    persistent: the names of the declaration's persistent PRAGMAs (Target.persistent_pragmas); None: those
    pragmas.sql marks as kept in the file. include_persistent: journal_mode and the like too, which apply sets
    after COMMIT. Never the header settings (user_version, application_id): apply sets those in its
    transaction, as plan steps.
    """
    out = []
    for stmt in dbfile.split_statements(files["pragmas.sql"]):
        name = stmt.split()[1].split("=")[0].lower() if len(stmt.split()) > 1 else ""
        kept = name in persistent if persistent is not None else stmt.endswith("-- kept in the file")
        if kept and (not include_persistent or name in structure.HEADER_PRAGMAS):
            continue
        out.append(stmt)
    return out


def open_for_apply(path, files):
    existed = dbfile.check_path(path, write=True)
    try:
        conn = dbfile.connect(path)
        for stmt in connection_pragmas(files):
            conn.execute(stmt)
        conn.execute("SELECT count(*) FROM sqlite_master").fetchone()
    except sqlite3.Error as exc:
        raise DatabaseFileError(dbfile.describe_sqlite_error(path, exc)) from None
    return conn, existed


def _begin(conn, path):
    try:
        conn.execute("BEGIN IMMEDIATE")
    except sqlite3.Error as exc:
        raise DatabaseFileError(dbfile.describe_sqlite_error(path, exc)) from None


def plan_for(conn, target, guard=None, prune=None, keep=None, tried=True, read=None):
    """The plan for the database behind conn (read inside the caller's transaction).

    A new or empty file gets the fresh plan; a file whose structure already
    matches (and that holds nothing the declaration lacks) is up to date;
    both without building the model. Anything else is read into the model
    and diffed. A declaration with data steps or a history is planned by
    history.py around this (its data steps, and the record of the apply); keep: apply's hook, see
    history.plan_with_history (the data steps then run once, in the caller's transaction, while planned).
    tried: see _plan_structure. read: a dict that gets the structure the plan was made from (see _verify_structure).
    """
    if target.compiled.get("history"):
        from .history import plan_with_history  # only a declaration that keeps a history needs it
        return plan_with_history(conn, target, lambda c: _plan_structure(c, target, guard, prune), keep)
    return _plan_structure(conn, target, guard, prune, tried=tried, read=read)


def _plan_structure(conn, target, guard=None, prune=None, additive=True, tried=True, read=None):
    """additive=False: plan every difference with the diff (tests compare it with additive.py's plan).
    read: a dict that gets "raw" and "structure", what the file was read as (apply's check before COMMIT reads
    again only the objects whose text in sqlite_master changed since: see _verify_structure).

    A plan's statements are tried on an in-memory copy of the schema (planned_problems), so that `plan` refuses
    what apply would roll back, and apply refuses a rebuild before it copies any row. tried=False (apply's own
    planning) skips that for an additive plan (additive.py): it only adds declared tables, plain columns and
    indexes to a file that holds nothing beyond the declaration (no view, trigger or foreign key of its own), and
    apply runs the very same check on the file itself before COMMIT (check_dependents, after the structure is
    verified to be the declared one), rolling back with nothing changed: the copy would only say it earlier.
    """
    if conn.execute("SELECT 1 FROM sqlite_master LIMIT 1").fetchone() is None:
        return fresh_plan(target, conn)  # a new or empty file: nothing to introspect
    raw = structure.read_raw(conn)
    if guard is not None:
        _refuse_foreign_file(conn, raw, target, guard)
    actual = structure.to_structure(raw)
    if read is not None:
        read.update(raw=raw, structure=actual)
    diffs = structure.compare(target.structure, actual)
    if not diffs:  # declared views, triggers and virtual tables are part of the structure: nothing else to read
        return Plan(steps=setting_steps(target, conn))
    from .additive import additive_plan  # only a file that differs is planned: not on the fresh-apply path
    plan = additive_plan(conn, target, actual, diffs, prune) if additive else None
    if plan is not None:  # only declared tables, columns and indexes to add: the diff's plan, without the model
        broken = planned_problems(conn, plan.statements) if tried else []
        if broken:
            raise UnsafeMigrationError("refusing to migrate, nothing was changed: after the plan %s"
                                       % "; ".join(broken[:10]))
        return plan
    from .introspect import read_live  # only a file that differs needs the introspection model
    live = read_live(conn, raw)
    if live.is_empty:
        return fresh_plan(target, conn)
    only_extras = not [m for k, m in diffs if k != "extra"]
    if only_extras and prune is None and not target.compiled.get("removed"):
        from .diff import extras  # as above: only a file that differs needs the diff (here: to list its extras)
        check_renames(conn, target.schema, live)  # an extra may be the old name of a declared rename
        return Plan(steps=setting_steps(target, conn), extras=extras(target.schema, live))
    plan = migration_plan(conn, target, live, prune)
    broken = planned_problems(conn, plan.statements) if plan.steps else []
    if plan.steps and not broken:  # a statement that fails on the scratch copy finds nothing there: a rebuild's
        from .diff import kept_views_on_dropped, removals  # RENAME stopped at a kept view on a dropped table
        broken = kept_views_on_dropped(target.schema, live, removals(target.schema, live, prune)[0].values())
    if broken:
        raise UnsafeMigrationError("refusing to migrate, nothing was changed: after the plan %s" % "; ".join(broken[:10]))
    if plan.up_to_date and only_extras:  # nothing the declaration removes or --prune drops is there
        return Plan(steps=setting_steps(target, conn), extras=plan.extras)
    if plan.up_to_date:
        # structure.compare found a difference the diff has no change for: never call such a file up to date
        raise ApplyError("the database differs from the declaration in a way schemagen cannot plan, nothing was "
                         "changed: " + "; ".join(m for k, m in diffs if k != "extra")[:500])
    return plan


# How a refusal of a plan that loses data names the options that accept it: the CLI's flags, or the API's own
# parameters (database.py passes API_TERMS), so that each refusal says what its reader can pass.
CLI_TERMS = {"no_backup": "--no-backup was given", "allow": "--allow-data-loss is given", "accept": ""}
API_TERMS = {"no_backup": "initialize(backup=False) was asked", "allow": "initialize(allow_data_loss=True) is "
             "passed", "accept": ": pass initialize(allow_data_loss=True) to accept it (a backup is made first)"}


def _guard_data_loss(path, plan, backup, allow_data_loss, confirm, terms=None):
    """A plan that loses data goes ahead only with a backup (or allow_data_loss) and a yes from confirm: the one
    guard of both dialects (loss.guard)."""
    if not plan.data_loss:
        return
    from .loss import guard  # only a plan that loses data needs it (fresh apply never does)
    guard("database %r" % path, plan, backup, allow_data_loss, confirm, terms or CLI_TERMS)


def _refuse_foreign_file(conn, raw, target, guard="shipped"):
    """The fallback to the shipped declaration applies only to a new or empty file, or one that already has
    some of its tables: a database of another application is refused, with nothing changed.
    guard "shipped-api": Database's fallback, whose message names its schema= parameter."""
    from ..compile.project import refuse_foreign  # only the fallback needs the guard's rule
    refuse_foreign(sorted(raw["tables"]), target.structure["tables"], target.name, api=guard == "shipped-api")


def refuse_foreign_database(path, schema=None):
    """The guard of the fallback to the shipped declaration, for the commands that only read a file (validate,
    explain, lint --db): an existing file that holds tables, none of them declared, is refused before it is
    read (SchemagenError, exit 2). A missing, empty or non-SQLite file is left to the command itself."""
    path = os.fspath(path)
    if not os.path.isfile(path):
        return
    try:
        dbfile.check_path(path, write=False)
        conn = dbfile.open_existing(path, "ro")
    except SchemagenError:
        return  # the command reports it in its own words
    try:
        _refuse_foreign_file(conn, structure.read_raw(conn), target_for(schema))
    except sqlite3.Error as exc:
        raise DatabaseFileError(dbfile.describe_sqlite_error(path, exc)) from None
    finally:
        conn.close()


def plan_database(path, schema=None, files=None, guard=None, prune=None):
    """What apply would do, without doing it (the database is only read).

    guard: "shipped" when the declaration is the fallback to the shipped one, which refuses a file of
    another application (see _refuse_foreign_file); "shipped-api" for Database's fallback.
    """
    target = target_for(schema, files)
    exists = dbfile.check_path(path, write=False) if os.path.exists(path) else False
    if not exists:
        dbfile.check_path(path, write=True)
        if target.compiled.get("history"):
            from .history import plan_with_history  # see plan_for
            return plan_with_history(None, target, lambda c: fresh_plan(target))
        return fresh_plan(target)
    conn = dbfile.open_existing(path, "ro")
    try:
        conn.execute("BEGIN")
        return plan_for(conn, target, guard, prune)
    except sqlite3.Error as exc:
        raise DatabaseFileError(dbfile.describe_sqlite_error(path, exc)) from None
    finally:
        conn.close()


def apply(path, schema=None, files=None, backup=True, progress=None, guard=None, backup_dir=None,
          keep_backups=DEFAULT_KEEP, check_data=False, prune=None, allow_data_loss=False, confirm=None,
          commit_section=None, terms=None, report=None):
    """Create or migrate the database at path; returns an ApplyResult.

    progress(step_number, step, statement) is called before each statement
    (the CLI shows long steps with it; tests raise from it to inject faults).
    guard: as for plan_database.
    backup_dir: the folder of the backup (default: the database's own; it must exist and be writable);
    keep_backups: how many backups of this database that folder keeps (pruned after a successful COMMIT).
    Before writing, PRAGMA quick_check runs on every table the plan rebuilds or fills (check_data: on
    the whole file); a damaged file is refused with nothing written and no backup left.
    prune: None, "objects" or "all" (diff.removals). A plan that loses data (a removed or pruned table or
    column: Plan.data_loss) needs the backup unless allow_data_loss, and confirm(plan) must return True
    (None: allowed); otherwise it is refused inside the transaction, nothing changed (see _guard_data_loss).
    commit_section: a context manager factory the COMMIT runs in (the CLI defers Ctrl-C there and records the
    COMMIT, so that its answer to an interrupt is the truth). A failure after COMMIT (the WAL switch) raises
    ChangedThenFailed: the change is committed. terms: how a data-loss refusal names the options that accept
    it (CLI_TERMS, the default, or API_TERMS).
    report: report(conn, result), called once the change is committed (or found up to date) and the settings
    are made, on apply's own connection before it closes: the CLI builds its report there
    (check/report.report_after_apply) from what apply already read and verified, instead of opening the file
    again. What it returns is result.report; a SchemagenError or sqlite3.Error it raises leaves result.report
    None (the caller builds the report on its own connection, and meets the error there).
    """
    path = os.fspath(path)
    if backup:
        check_backup_dir(backup_dir)
        check_keep(keep_backups)
    target = target_for(schema, files)
    conn, existed = open_for_apply(path, target.files)
    try:
        result = _apply_locked(conn, path, target, backup and (backup_dir, keep_backups), progress, guard,
                               check_data, (prune, allow_data_loss, confirm, terms), commit_section)
        if report is not None:
            try:
                result.report = report(conn, result)
            except (SchemagenError, sqlite3.Error):
                pass  # see the docstring: the caller's own report meets it
        return result
    except BaseException:
        if not existed:
            _remove_if_still_empty(conn, path)
        raise
    finally:
        conn.close()


def _remove_if_still_empty(conn, path):
    """Remove a file this apply created and failed to fill.

    Only while it holds no schema: a failure after COMMIT, or a file another
    process filled in the meantime, is left alone.
    """
    try:
        if conn.in_transaction:
            conn.execute("ROLLBACK")
        if conn.execute("SELECT count(*) FROM sqlite_master").fetchone()[0]:
            return
    except sqlite3.Error:
        return
    conn.close()
    for suffix in ("", "-wal", "-shm", "-journal"):
        if os.path.exists(path + suffix):
            os.remove(path + suffix)


def _apply_locked(conn, path, target, backup, progress, guard, check_data=False, loss=(None, False, None, None),
                  commit_section=None):
    """backup: (backup_dir, keep) when a backup is wanted, else a false value."""
    files = target.files
    start = time.perf_counter()
    conn.execute("PRAGMA foreign_keys = OFF")  # outside the transaction: no ON DELETE fires during a rebuild
    _begin(conn, path)
    backup_to = None
    known = None
    before_steps = None
    committing = False
    read = {}  # the structure the plan was made from: _verify_structure reads again only what changed since

    def before_data_steps():
        # history.py keeps what its expand and data steps do (they run once): before their first write, the backup
        # (make_backup copies the file under this lock while it is unwritten), the dependents already broken and
        # the foreign key violations already in the data (a step may write any table: the whole file; the
        # savepoint below is taken after the steps, so it cannot tell their violations from older ones)
        nonlocal backup_to, known, before_steps
        known = broken_dependents(conn)
        before_steps = checkable_foreign_key_violations(conn)
        if backup:
            _announce(progress, Plan(steps=()), "back up the database")
            backup_to = make_backup(path, backup[0], locked=conn)

    try:
        cleaned = bool(drop_leftovers(conn))  # an interrupted online apply's objects (migrate/online.py)
        plan = plan_for(conn, target, guard, loss[0], keep=before_data_steps, tried=False, read=read)  # see below
        if plan.up_to_date:
            conn.execute("COMMIT" if cleaned else "ROLLBACK")
            _finish_connection(conn, files)
            return ApplyResult(path, plan, applied=False, seconds=time.perf_counter() - start)
        if not plan.fresh:
            _refuse_damaged(conn, path, plan, whole_file=check_data)
        _guard_data_loss(path, plan, bool(backup), *loss[1:])
        if backup and plan.touches_rows and backup_to is None:
            _announce(progress, plan, "back up the database")
            backup_to = make_backup(path, backup[0], locked=conn)  # under this write lock: a plain file copy
        if backup_to and target.compiled.get("history"):
            from .history import with_backup  # the record names the backup
            plan = with_backup(plan, backup_to)
        # A savepoint marks the data as it was, so that foreign key violations
        # found after the plan can be told apart from those already there
        # without scanning the child tables twice when there are none (the
        # usual case): only then roll back to it, look, and run the plan again.
        if known is None:  # broken before the plan: not its doing
            known = broken_dependents(conn) if not plan.fresh else ()
        conn.execute("SAVEPOINT schemagen_plan")
        count, timings = _run_steps(conn, plan, progress)
        _announce(progress, plan, "verify the structure and the foreign keys of the changed tables")
        verified, differences = _verify_structure(conn, target, read)
        # every view prepares, every trigger resolves, every foreign key has its parent key (dependents.py):
        # before foreign_key_check, which a foreign key without its parent key makes fail
        check_dependents(conn, known, fresh=plan.fresh)
        after = foreign_key_violations(conn, plan.fk_scope)
        kept = []
        if after and before_steps is not None:
            _refuse_introduced(conn, plan, after, before_steps)
            kept = [describe_violation(conn, v) for v in after[:KEPT_DESCRIBED]]
        elif after:
            conn.execute("ROLLBACK TO schemagen_plan")
            before = {_key(v) for v in foreign_key_violations(conn, sorted({v["table"] for v in after}))}
            count, timings = _run_steps(conn, plan, progress)
            verified, differences = _verify_structure(conn, target, read)
            after = foreign_key_violations(conn, plan.fk_scope)
            introduced = [v for v in after if _key(v) not in before]
            if introduced:
                raise ApplyError("the migration would introduce %d foreign key violations, rolled back: %s" % (
                    len(introduced), "; ".join(describe_violation(conn, v) for v in introduced[:5])))
            kept = [describe_violation(conn, v) for v in after[:KEPT_DESCRIBED]]
        conn.execute("RELEASE schemagen_plan")
        _announce(progress, plan, "commit")
        committing = True
        try:
            if commit_section is None:
                conn.execute("COMMIT")
            else:
                with commit_section():
                    conn.execute("COMMIT")
        except sqlite3.Error as exc:  # a COMMIT that fails (a full disk) did not commit: SQLite rolls it back
            committing = False
            raise DatabaseFileError("database %r: COMMIT failed (%s); rolled back, nothing was changed" % (
                path, exc)) from None
    except BaseException:
        rolled_back = conn.in_transaction or not committing  # else COMMIT ran (Ctrl-C right after it): keep the backup
        if conn.in_transaction:
            conn.execute("ROLLBACK")
        if rolled_back:
            discard(backup_to)  # nothing changed: the backup of the unchanged file is not kept
        raise
    if backup_to:
        try:
            prune(path, backup[0], backup[1], protect=(backup_to,))
        except OSError:
            pass  # committed: older backups left in place are no reason to fail
    try:
        _finish_connection(conn, files)
    except SchemagenError as exc:
        raise ChangedThenFailed("database %r: the change is committed, then: %s" % (path, exc)) from None
    return ApplyResult(path, plan, applied=True, backup=backup_to, seconds=time.perf_counter() - start,
                       statements=count, structure=verified, kept_violations=len(after), kept_described=tuple(kept),
                       step_seconds=tuple(timings), differences=differences)


def _announce(progress, plan, title):
    """The checks before COMMIT and the COMMIT are steps of their own for progress, timed apart from the last
    statement (their rows: what the plan touched, so that progress shows them when it shows the plan's steps)."""
    if progress is not None:
        rows = sum(s.rows or 0 for s in plan.steps)
        number = {"back up the database": 0, "commit": len(plan.steps) + 2}.get(title, len(plan.steps) + 1)
        progress(number, Step(title, "", (), rows=rows), None)


def _refuse_damaged(conn, path, plan, whole_file=False):
    """PRAGMA quick_check before writing: on the tables the plan rebuilds or fills (their rows are
    copied or rewritten), or on the whole file; a damaged one is refused with nothing written."""
    if whole_file:
        problem = damage(conn)
    else:
        tables, old_names = [], {}
        for step in plan.steps:
            kind = type(step.change).__name__
            if kind == "RenameTable" and not step.executed:  # a later step names the new name; the file has the old
                old_names[step.change.table.name.lower()] = old_names.get(step.change.old.lower(), step.change.old)
            table = old_names.get((step.table or "").lower(), step.table)
            if table is not None and kind in ("RebuildTable", "Backfill") and table not in tables:
                tables.append(table)
        problem = damage(conn, tables) if tables else None
    if problem:
        raise DatabaseFileError("database %r: %s; refusing to migrate a damaged file, nothing was changed: restore "
                                "a backup (schemagen restore) or recover the data (sqlite3 .recover)" % (path, problem))


def _key(violation):
    return violation["table"], violation["rowid"], violation["parent"]


def _refuse_introduced(conn, plan, after, before):
    """ApplyError when a violation in after was not in before (taken before the renames and data steps ran: the
    names of renamed tables are mapped). Foreign keys are off in apply's transaction, so a data step that deletes
    or changes parent rows fires no ON DELETE or ON UPDATE action: the refusal says so."""
    renamed = {}
    for step in plan.steps:
        if type(step.change).__name__ == "RenameTable":
            renamed[step.change.old.lower()] = step.change.table.name
    before = {(renamed.get(t.lower(), t), rowid, renamed.get(p.lower(), p)) for t, rowid, p in map(_key, before)}
    introduced = [v for v in after if _key(v) not in before]
    if not introduced:
        return
    steps = [s.change.name for s in plan.steps if type(s.change).__name__ == "RunDataStep"]
    why = ("; foreign keys are off in apply's transaction, so no ON DELETE or ON UPDATE action fires for data step "
           "%s: delete or update the child rows in the step itself" % ", ".join("'%s'" % n for n in steps)
           if steps else "")
    raise ApplyError("the migration would introduce %d foreign key violations, rolled back: %s%s" % (
        len(introduced), "; ".join(describe_violation(conn, v) for v in introduced[:5]), why))


def _run_steps(conn, plan, progress):
    """Execute every statement of the plan; an error names the step and the statement.

    Returns the number of statements and the seconds each step took."""
    count, timings = 0, []
    for number, step in enumerate(plan.steps, start=1):
        started = time.perf_counter()
        if step.executed:  # run while it was planned, kept in this transaction (history.py): not again
            count += len(step.statements)
            timings.append(0.0)
            continue
        if getattr(step.change, "run", None) is not None:  # a python= data step (history.py)
            from .history import run_step  # only a declaration with data steps has one
            if progress is not None:
                progress(number, step, None)
            run_step(conn, step, "step %d of %d (%s)" % (number, len(plan.steps), step.title))
        for stmt in step.statements:
            if progress is not None:
                progress(number, step, stmt)
            try:
                conn.execute(stmt)
            except sqlite3.Error as exc:
                raise ApplyError("step %d of %d (%s) failed: %s; statement: %s" % (
                    number, len(plan.steps), step.title, exc, " ".join(stmt.split())[:300])) from None
            count += 1
        timings.append(time.perf_counter() - started)
    return count, timings


# The structure is a function of the schema text in sqlite_master (the PRAGMAs that read_structure runs report
# what this SQLite parsed from it), so a schema already read and found to match a Target in this process needs
# neither the PRAGMAs nor the comparison again: sqlite_master's rows -> (structure, [(a Target it matched, the
# differences compare found: extras only)]).
# Many files created in one process (a test suite, one file per tenant) each cost one query instead of ~70.
_VERIFIED = {}
_VERIFIED_MAX = 8


def _verify_structure(conn, target, read=None):
    """(the structure after the plan, structure.compare's differences: extras only); ApplyError when it is not
    the declared one.

    This is what protects the file from a plan that does not make the declared structure (a wrong statement, a
    diff or renderer bug, SQLite taking a statement otherwise than meant): the structure is read back inside the
    transaction and compared, as a whole, with the declaration, and any difference but an extra rolls back.
    read: the raw read and the structure the plan was made from ({"raw", "structure"}, as _plan_structure
    fills it): the PRAGMAs are run again only on the tables and indexes whose text in sqlite_master changed
    (structure.read_raw's known), which gives the structure a full read would; the comparison is never scoped.
    """
    master = tuple(conn.execute("SELECT type, name, tbl_name, sql FROM sqlite_master ORDER BY rowid").fetchall())
    known = _VERIFIED.get(master)
    if known is not None:
        for t, differences in known[1]:
            if t is target:
                return known[0], differences
    if read and read.get("raw") is not None:
        verified = structure.to_structure(structure.read_raw(conn, known=read["raw"]),
                                          known=(read["raw"], read["structure"]))
    else:
        verified = structure.read_structure(conn)
    differences = structure.compare(target.structure, verified)
    problems = [m for k, m in differences if k != "extra"]
    if problems:
        raise ApplyError("after the plan the structure still differs, rolled back: " + "; ".join(problems[:10]))
    if known is None:
        if len(_VERIFIED) >= _VERIFIED_MAX:
            _VERIFIED.pop(next(iter(_VERIFIED)))
        known = _VERIFIED[master] = (verified, [])
    known[1].append((target, differences))
    del known[1][:-4]  # a Target per call (a declaration compiled each time) must not pile up
    # the same schema text reads as the same structure: one object for it, whichever call read it
    return known[0], differences


def _finish_connection(conn, files):
    """After COMMIT: the persistent settings (journal_mode) and foreign keys back on.

    Switching to WAL needs the file to itself for a moment. SQLite can answer
    "database is locked" at once, without waiting out busy_timeout, while
    another connection is opening or reading the file (several processes
    starting at once on a new file), so a locked answer is retried for up to
    the busy timeout.
    """
    deadline = time.monotonic() + DEFAULT_TIMEOUT_S
    delay = 0.005
    for stmt in connection_pragmas(files, include_persistent=True):
        while True:
            try:
                conn.execute(stmt)
                break
            except sqlite3.OperationalError as exc:
                if "locked" not in str(exc) or time.monotonic() + delay >= deadline:
                    raise SchemagenError("database: could not set connection settings after apply: %s" % exc) from None
                time.sleep(delay)
                delay = min(delay * 2, 0.2)
            except sqlite3.Error as exc:
                raise SchemagenError("database: could not set connection settings after apply: %s" % exc) from None
