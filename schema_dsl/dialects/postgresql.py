"""PostgreSQL: a database at a postgresql:// URL, migrated by pg/ (ALTER, NOT VALID/VALIDATE, CONCURRENTLY).

Only dialects.for_db imports this module, for a URL; the pg/ modules (and psycopg through them) are imported by
each operation as it runs, through _pg, which turns a missing psycopg into one line naming the extra to install.
URLs are shown masked (pg/url.py) in every message and document.
"""
from __future__ import annotations

import importlib
import time

from ..errors import SchemagenError
from ..words import plural
from . import Applied, Dialect, Shown, shown

NO_BACKUP = "PostgreSQL has no file backup (an option of SQLite only)"


def _pg(*names):
    """The pg/ modules named (psycopg is imported through them); a missing psycopg is one line, exit 2."""
    try:
        return [importlib.import_module("schema_dsl.pg." + name) for name in names]
    except ImportError as exc:
        raise SchemagenError("PostgreSQL needs psycopg (%s): pip install 'schemagen[postgresql]'" % exc) from None


class PostgreSQL(Dialect):
    """A PostgreSQL database (its current schema)."""

    name = "postgresql"
    label = "a PostgreSQL URL"
    refused_options = {"backup_dir": NO_BACKUP, "keep_backups": NO_BACKUP}
    refused_commands = {
        "diff": "diff counts rows and times rebuilds in an SQLite file; on PostgreSQL run `schemagen plan --db URL` "
                "for the change and what it would refuse",
        "inspect": "inspect reads an SQLite file; reading a PostgreSQL database into a declaration is not built",
        "restore": "PostgreSQL has no file backup to restore (schemagen makes none there: apply runs in one "
                   "transaction); use the server's own backups (pg_dump, PITR)",
    }

    folder = "postgresql/"  # compile/postgresql.py's OUT_SUBDIR
    _database_class = None  # (database.py's Database, Database on PostgreSQL): built on first use

    def renderer(self):
        from ..compile import postgresql  # the PostgreSQL renderer: only when that dialect is rendered
        return postgresql.render_files

    def database_class(self, base):
        """Database on PostgreSQL: pg/database.py's PgDatabase (the engine's work, on psycopg) under base, named
        Database. Built on first use: psycopg is imported only for a PostgreSQL URL."""
        if self._database_class is None or self._database_class[0] is not base:
            PgDatabase = _pg("database")[0].PgDatabase  # psycopg: PostgreSQL only (missing: one line)

            class PostgreSQLDatabase(PgDatabase, base):
                __doc__ = PgDatabase.__doc__

                async def validate(self, full_integrity=False):
                    """The validation report, as `schemagen validate --json` gives it (the same keys on both
                    engines); report["ok"] is False when the database does not match the declaration.

                    Example: `report = await db.validate(); assert report["ok"], report["differences"]`.
                    """
                    import asyncio  # PostgreSQL's Database only
                    from ..check import pgcheck  # the design findings and serves-query plans the report carries
                    report = await PgDatabase.validate(self, full_integrity)
                    return await asyncio.to_thread(pgcheck.complete_report, report, self.url, self.compiled,
                                                   self.schema)

            PostgreSQLDatabase.__name__ = PostgreSQLDatabase.__qualname__ = base.__name__
            PostgreSQLDatabase.__module__ = base.__module__
            self._database_class = (base, PostgreSQLDatabase)
        return self._database_class[1]

    def compiled(self, declared):
        """generated/postgresql/declaration.json (refused when stale), built once per command."""
        return declared.once("postgresql", lambda decl: _pg("apply")[0].compiled_for(decl))

    def refuse_foreign(self, db, declared):
        if db is None or declared.guard is None:
            return
        try:
            from ..pg import apply  # psycopg: only the PostgreSQL path imports it
        except ImportError:
            return  # the operation itself says PostgreSQL needs psycopg
        apply.refuse_foreign_database(db, self.compiled(declared))

    # --- plan ---------------------------------------------------------------------------------------------------

    def plan(self, db, declared, prune=None, concurrently=False):
        self.refuse_foreign(db, declared)
        migration, pgplan = _pg("migration", "plan")
        self.compiled(declared)  # refuses a stale generated/postgresql/, as apply does
        result = migration.plan(db, declared.schema(), prune=prune, concurrently=concurrently)
        return Shown(lambda: pgplan.format_plan(result), lambda: _json_plan(result, self.name))

    def plan_online(self, db, declared, prune=None):
        self.refuse_foreign(db, declared)
        online, = _pg("online")  # plan --online: the steps and their locks
        self.compiled(declared)  # see plan
        result = online.plan_online(db, declared.schema(), prune=prune)
        return Shown(lambda: online.format_plan(result), lambda: _dumps(self.online_plan_document(
            result.plan, result.database, [{"step": s.title, "lock": s.lock, "mode": s.mode} for s in result.steps],
            result.refused)))

    def export_script(self, db, declared, prune=None, concurrently=False):
        self.refuse_foreign(db, declared)
        migration, = _pg("migration")
        compiled = self.compiled(declared)  # see plan
        return migration.export_script(db, declared.schema(), prune=prune, concurrently=concurrently,
                                       compiled=compiled)

    def script_written(self, path):
        return "wrote %s: run it with psql -v ON_ERROR_STOP=1 -f %s" % (path, path)

    # --- apply --------------------------------------------------------------------------------------------------

    def apply(self, db, declared, lock_timeout="5s", statement_timeout="0", check_data=False, full_integrity=False,
              prune=None, allow_data_loss=False, confirm=None, concurrently=False, online=False, as_json=False,
              no_validate=False, commit_section=None, **sqlite_only):
        """pg/migration.py's apply (one transaction, then the CONCURRENTLY builds), or under online pg/online.py's
        apply_online (each step its own short transaction). Its --json document and report have SQLite's shape."""
        self.refuse_foreign(db, declared)
        (apply,) = _pg("apply")
        timings = _StepTimes()
        compiled = self.compiled(declared)
        migration, = _pg("migration")  # PostgreSQL's planner (pg/plan.py) and migration
        options = dict(lock_timeout=lock_timeout, statement_timeout=statement_timeout, prune=prune,
                       allow_data_loss=allow_data_loss, confirm=confirm)
        if online:
            pgonline, = _pg("online")  # apply --online: many short transactions (every index CONCURRENTLY)
            result = pgonline.apply_online(db, declared.schema(), compiled, **options)
        else:
            result = migration.apply(db, declared.schema(), compiled, progress=timings, concurrently=concurrently,
                                     **options)
        if result.applied and commit_section is not None:
            with commit_section():  # the caller records the committed database
                pass
        report = result.report
        # From here on the change is committed: a failure says so (exit 3).
        try:
            if (check_data or full_integrity) and not no_validate:
                # validate's data checks after COMMIT, as SQLite's --check-data: rows kept under NOT VALID
                # constraints fail the report as orphans fail SQLite's foreign_key_check (and --full-integrity:
                # every index checked)
                report = apply.validate(db, compiled, full_integrity=full_integrity)
        except SchemagenError as exc:
            raise _after_commit(exc, db, result.applied) from None
        is_online = bool(result.online)  # {} for a plain apply and a database created fresh
        done = None
        if as_json:
            from ..check import documents  # --json only: one document shape on both engines
            # a migration's steps timed here (progress); a fresh apply timed its one step itself; online: not per step
            done = documents.apply(result, result.path, self.name, step_seconds=None if online or result.fresh else
                                   timings.seconds(len(result.plan.steps)))
            lines = []
        elif result.applied and is_online:
            lines = ["migrated %s (PostgreSQL, --online): %s, each its own transaction, %s, %s, %.2fs" % (
                result.path, plural(result.online["transactions"], "step"), plural(result.statements, "statement"),
                plural(result.online["retries"], "lock retry", "lock retries"), result.seconds)]
        elif result.applied:
            lines = ["%s %s (PostgreSQL): %s in one transaction, %.2fs%s" % (
                "created" if result.fresh else "migrated", result.path, plural(result.statements, "statement"),
                result.seconds, "; %s built CONCURRENTLY after COMMIT" % plural(result.concurrent_built, "step")
                if result.concurrent_built else "")]
        else:
            lines = ["up to date: %s already matches the declaration" % result.path]

        def complete(working):
            from ..check import pgcheck  # the design findings and the serves-queries' plans
            try:
                return pgcheck.complete_report(report, db, compiled, declared.schema())
            except SchemagenError as exc:  # after COMMIT: the change stands, the report could not be read
                raise _after_commit(exc, db, result.applied) from None
        return Applied(result.path, result.applied, lines, done, complete)

    # --- checks -------------------------------------------------------------------------------------------------

    def validate(self, db, declared, full_integrity=False, working=None):
        """The report in SQLite's shape (pg/apply.py's check, with check/pgcheck.py's design findings and the
        serves-queries' plans)."""
        self.refuse_foreign(db, declared)
        apply, = _pg("apply")
        from ..check import pgcheck  # the design findings and the serves-queries' plans
        compiled = self.compiled(declared)
        return pgcheck.complete_report(apply.validate(db, compiled, full_integrity=full_integrity), db, compiled,
                                       declared.schema())

    def explain(self, db, declared, sample_rows=None, working=None):
        """EXPLAIN (FORMAT JSON) of each serves-query (check/pgcheck.py)."""
        from ..check import pgcheck  # PostgreSQL only (psycopg through it)
        self.refuse_foreign(db, declared)
        schema = declared.schema()
        report = pgcheck.explain(db, declared.decl, schema, sample=sample_rows)
        return Shown(lambda: pgcheck.format_text(report), lambda: pgcheck.to_json(report),
                     severities=lambda: pgcheck.strict_severities(schema, report))

    def lint(self, db, declared):
        from ..check import pgcheck  # see explain
        self.refuse_foreign(db, declared)
        return pgcheck.lint_url(db, declared.decl, declared.schema())

    # --- the history, and transfer's destination ----------------------------------------------------------------

    def read_history(self, db):
        _, history = _pg("apply", "history")  # pg/history.py connects through pg/apply.py (psycopg)
        return history.read_history(db)

    def record_by_hand(self, db, names, declared=None):
        _, history = _pg("apply", "history")  # see read_history
        return history.record_by_hand(db, names, declared.schema() if declared is not None else None)

    def receives_transfer(self):
        _pg("apply", "transfer")

    def transfer(self, source, url, declared, orphans="refuse", lock_timeout="5s", progress=None):
        """Move the SQLite file's rows into the PostgreSQL database at url (pg/transfer.py)."""
        apply, transfer = _pg("apply", "transfer")
        result = transfer.transfer(source, url, declared.target().structure, self.compiled(declared),
                                   orphans=orphans, lock_timeout=lock_timeout, progress=progress)

        def document():
            import json  # --json only
            from ..check.documents import VERSION  # see above
            return json.dumps(dict(result.as_dict(), version=VERSION), indent=2, sort_keys=True)
        return Shown(lambda: transfer.format_result(result), document)


def _after_commit(exc, db, applied):
    """A failure after apply: exit 3 saying the change is committed, or (nothing committed) exit 2."""
    from ..errors import ChangedThenFailed  # failures only
    text = " ".join(str(exc).split())
    if applied:
        return ChangedThenFailed("the change to %s is committed, then: %s" % (shown(db), text))
    return SchemagenError("%s: %s" % (shown(db), text))


def _json_plan(result, dialect):
    from ..check import documents  # --json only: one document shape on both engines
    return _dumps(documents.plan(result, result.database, dialect))


def _dumps(document):
    import json  # --json only
    return json.dumps(document, indent=2)


class _StepTimes:
    """pg/migration.py's progress(step, statement): what each step took, in the order they ran."""

    def __init__(self):
        self.starts, self.steps = [], []

    def __call__(self, step, statement):
        if not self.steps or self.steps[-1] is not step:
            self.steps.append(step)
            self.starts.append(time.perf_counter())

    def seconds(self, count):
        """Seconds per step (None where a step did not run here: its statements ran while planning)."""
        if not self.starts:
            return ()
        ends = self.starts[1:] + [time.perf_counter()]
        return [b - a for a, b in zip(self.starts, ends)][-count:] if len(self.starts) >= count else \
            [None] * (count - len(self.starts)) + [b - a for a, b in zip(self.starts, ends)]
