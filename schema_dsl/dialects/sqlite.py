"""SQLite: a database file, migrated by migrate/ (ALTER where it can, else the rebuild), checked by check/.

Each operation imports what it needs when it runs: apply's start-up time is benchmarked against bare
python+sqlite3, and a fresh apply reads the rendered declaration.json without building the model.
"""
from __future__ import annotations

import contextlib

from ..words import plural
from . import Applied, Dialect, Shown

PG_ONLY = "an option of PostgreSQL only"


class SQLite(Dialect):
    """A database file (it need not exist yet for plan and apply)."""

    name = "sqlite"
    label = "an SQLite file"
    refused_options = {"lock_timeout": PG_ONLY, "statement_timeout": PG_ONLY, "concurrently": PG_ONLY}

    def renderer(self):
        from ..compile.render import render_files  # Jinja2: render only
        return render_files

    def prepare(self, declared):
        declared.target()

    def refuse_foreign(self, db, declared):
        if db is None or declared.guard is None:
            return
        from ..migrate.apply import refuse_foreign_database  # only the fallback needs the guard
        refuse_foreign_database(db)

    # --- plan ---------------------------------------------------------------------------------------------------

    def plan(self, db, declared, prune=None, concurrently=False):
        from ..migrate.apply import plan_database  # plan only
        result = plan_database(db, schema=declared.target(), guard=declared.guard, prune=prune)
        return Shown(lambda: _format_plan(result), lambda: _json_plan(result, db, self.name))

    def plan_online(self, db, declared, prune=None):
        from ..migrate import online  # only --online imports it
        plan, steps = online.plan_online(db, declared.target(), guard=declared.guard, prune=prune)

        def text():
            if plan.up_to_date:
                return "up to date: nothing to do"
            return "\n".join(["apply --online would run %s:" % plural(len(steps), "step")] + [
                "  %d. %s\n     write lock: %s" % (n, s["step"], s["lock"]) for n, s in enumerate(steps, start=1)])
        return Shown(text, lambda: _dumps(self.online_plan_document(plan, db, steps)))

    def export_script(self, db, declared, prune=None, concurrently=False):
        from ..migrate.sqlscript import export_script  # only --sql needs the script export
        return export_script(db, schema=declared.target(), guard=declared.guard)

    def script_written(self, path):
        return ("wrote %s: run it whole with a runner that stops at the first error (sqlite3 -bail, executescript, "
                "sqlx with -- no-transaction)" % path)

    # --- apply --------------------------------------------------------------------------------------------------

    def apply(self, db, declared, backup=True, backup_dir=None, keep_backups=3, check_data=False,
              full_integrity=False, prune=None, allow_data_loss=False, confirm=None, online=False, as_json=False,
              progress=None, commit_section=None, no_validate=False, **postgresql_only):
        """apply (migrate/apply.py), or under online migrate/online.py's apply_online."""
        target = declared.target()
        if online:
            from ..migrate.online import apply_online  # only --online imports it
            result = apply_online(db, schema=target, backup=backup, guard=declared.guard, backup_dir=backup_dir,
                                  keep_backups=keep_backups, prune=prune, allow_data_loss=allow_data_loss,
                                  confirm=confirm, commit_section=commit_section)
        else:
            from ..migrate.apply import apply  # the planner and the one transaction
            # the report, built on apply's connection after COMMIT; the whole-file data checks (--check-data) run
            # after apply, under the report's "checking" notice
            built = None
            if not (no_validate or check_data or full_integrity):
                from ..check.report import report_after_apply  # only when a report is printed (start-up time)
                built = report_after_apply(target)
            result = apply(db, schema=target, backup=backup, progress=progress, guard=declared.guard,
                           backup_dir=backup_dir, keep_backups=keep_backups, check_data=check_data or full_integrity,
                           prune=prune, allow_data_loss=allow_data_loss, confirm=confirm,
                           commit_section=commit_section, report=built)
        done = None
        if as_json:
            from ..check import documents  # --json only: one document shape on both engines
            done = documents.apply(result, db, self.name)

        def report(working):
            if result.report is not None:  # apply built it on its own connection
                return result.report
            # the structure apply verified before COMMIT: the report does not read and parse it again
            applied = None if (check_data or full_integrity) else result.foreign_key_check
            return self._report(target, db, full_integrity, working if applied is None else None,
                                actual=result.structure, applied=applied)
        return Applied(db, result.applied, [] if as_json else _applied_lines(result, db), done, report)

    # --- checks -------------------------------------------------------------------------------------------------

    def validate(self, db, declared, full_integrity=False, working=None):
        self.refuse_foreign(db, declared)
        return self._report(declared.target(), db, full_integrity, working)

    @staticmethod
    def _report(target, db, full_integrity, working, actual=None, applied=None):
        from ..check.report import build_report  # the report: validate, and apply after COMMIT
        label = "checking %s (%s, foreign_key_check)" % (db, "integrity_check" if full_integrity else "quick_check")
        with working(label) if working is not None else contextlib.nullcontext():
            return build_report(db, schema=target, full_integrity=full_integrity, actual=actual, applied=applied)

    def explain(self, db, declared, sample_rows=None, working=None):
        from ..check.explain import explain_database, format_text, strict_severities, to_json  # explain only
        self.refuse_foreign(db, declared)
        schema = declared.schema()
        label = "loading %d sample rows per table into a scratch copy, then ANALYZE" % (sample_rows or 0)
        with working(label) if sample_rows and working is not None else contextlib.nullcontext():
            report = explain_database(db, schema, sample_rows=sample_rows)
        return Shown(lambda: format_text(report), lambda: to_json(report),
                     severities=lambda: strict_severities(schema, report))

    def lint(self, db, declared):
        from ..check.lintdb import lint_path  # lint only
        self.refuse_foreign(db, declared)
        return lint_path(declared.schema(), db_path=db)

    # --- the history, backups and inspect: SQLite files ---------------------------------------------------------

    def read_history(self, db):
        from ..migrate import history  # only the history command reads it
        return history.read_history(db)

    def record_by_hand(self, db, names, declared=None):
        from ..migrate import history  # see read_history
        return history.record_by_hand(db, names, declared.target() if declared is not None else None)

    def inspect(self, db, name=None, keep_versions=False):
        from ..migrate.write_declaration import inspect_file  # inspect reads the file into the model
        return inspect_file(db, name=name, keep_versions=keep_versions)

    def list_backups(self, db, backup_dir=None):
        from ..migrate import backup  # restore is rare: its module loads only here
        return backup.listing(db, backup_dir)

    def restore(self, db, backup=None, backup_dir=None, keep=3, other_database=False, commit_section=None):
        from ..migrate import backup as backups  # see list_backups
        return backups.restore(db, backup=backup, backup_dir=backup_dir, keep=keep, other_database=other_database,
                               commit_section=commit_section)


def _format_plan(result):
    from ..migrate.plan import format_plan  # loaded by plan_database already
    return format_plan(result)


def _json_plan(result, db, dialect):
    from ..check import documents  # --json only: one document shape on both engines
    return _dumps(documents.plan(result, db, dialect))


def _dumps(document):
    import json  # --json only
    return json.dumps(document, indent=2)


def _applied_lines(result, db):
    """What apply says it did: created or migrated (steps, statements, time), what it dropped, the backup."""
    lines = []
    if not result.applied:
        lines.append("up to date: %s already matches the declaration" % db)
    else:
        online = result.online  # apply --online: many short transactions ({} for a plain apply)
        lines.append("%s %s: %s in %s, %s, %.2fs" % (
            "created" if result.plan.fresh else "migrated", db, plural(result.statements, "statement"),
            plural(len(result.plan.steps), "step"), "one transaction" if not online else
            "online: %s, the longest held the write lock %.0f ms" % (
                plural(online.get("transactions", 0), "transaction"), 1000 * online.get("longest_lock", 0)),
            result.seconds))
        dropped = [s.change for s in result.plan.steps if type(s.change).__name__ == "Remove"]
        if dropped:
            lines.append("dropped: " + ", ".join("%s '%s'%s" % (c.kind, c.name, " on '%s'" % c.table if c.table else "")
                                                 for c in dropped))
    if result.backup:
        lines.append("backup: %s" % result.backup)
    return lines
