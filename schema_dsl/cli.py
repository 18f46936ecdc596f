"""The schemagen command line: parse, call the library, print.

Exit codes: 0 success, 1 validation failed (or render --check found stale
files), 2 usage or input error. Expected failures are one line on stderr.
"""
from __future__ import annotations

import os
import sys
import time

import click

from . import __version__
from .errors import SchemagenError

DB_PATH = click.Path(dir_okay=True, file_okay=True, path_type=str)


class _Abort(click.ClickException):
    def __init__(self, message, exit_code=2):
        super().__init__(message)
        self.exit_code = exit_code

    def show(self, file=None):
        click.echo("error: %s" % self.format_message(), err=True)


def _fail(exc):
    raise _Abort(" ".join(str(exc).split()), getattr(exc, "exit_code", 2))


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="schemagen")
def main():
    """Keep an SQLite schema as code: render, plan, apply and validate it."""


@main.command()
@click.option("--out", "out_dir", default="generated", show_default=True, type=click.Path(file_okay=False, path_type=str),
              help="Folder the generated files are written to.")
@click.option("--check", is_flag=True, help="Write nothing; exit 1 naming each file that differs from what render would write.")
def render(out_dir, check):
    """Render the DDL files, the validator and the schema docs from the declaration."""
    # each command imports what it needs: apply's start-up time is benchmarked
    from .compile.render import render_files
    from .compile.target import target_for
    SCHEMA = target_for(None).schema
    try:
        files = render_files(SCHEMA)
    except SchemagenError as exc:
        _fail(exc)
    if check:
        stale = []
        for name, text in sorted(files.items()):
            path = os.path.join(out_dir, name)
            try:
                with open(path, encoding="utf-8", newline="") as fh:
                    current = fh.read()
            except OSError:
                current = None
            if current != text:
                stale.append("%s (%s)" % (path, "missing" if current is None else "differs"))
        if os.path.isdir(out_dir):
            for name in sorted(os.listdir(out_dir)):
                path = os.path.join(out_dir, name)
                if name not in files and os.path.isfile(path) and not name.startswith("."):
                    stale.append("%s (no longer rendered: delete it)" % path)
        if stale:
            for line in stale:
                click.echo("stale: %s" % line, err=True)
            raise _Abort("%d generated files are stale; run `schemagen render`" % len(stale), 1)
        click.echo("generated/ is up to date (%d files)" % len(files))
        return
    if os.path.exists(out_dir) and not os.path.isdir(out_dir):
        raise _Abort("--out %r: expected a folder" % out_dir)
    os.makedirs(out_dir, exist_ok=True)
    written = 0
    for name, text in sorted(files.items()):
        path = os.path.join(out_dir, name)
        try:
            with open(path, encoding="utf-8", newline="") as fh:
                if fh.read() == text:
                    continue
        except OSError:
            pass
        with open(path, "w", encoding="utf-8", newline="") as fh:
            fh.write(text)
        written += 1
        click.echo("wrote %s" % path)
    click.echo("%d files rendered, %d changed" % (len(files), written))


def _describe_plan(plan, as_json=False):
    if as_json:
        # each command imports what it needs: apply's start-up time is benchmarked
        import json
        return json.dumps({
            "up_to_date": plan.up_to_date,
            "fresh": plan.fresh,
            "backup_needed": plan.touches_rows,
            "steps": [{"title": s.title, "why": s.why, "rows": s.rows, "statements": list(s.statements)} for s in plan.steps],
            "kept": list(plan.extras),
        }, indent=2)
    if plan.up_to_date:
        lines = ["up to date: nothing to do"]
    else:
        lines = ["%d steps, %d statements, in one transaction%s:" % (
            len(plan.steps), len(plan.statements), "; a backup is made first" if plan.touches_rows else "")]
        lines += ["  %d. %s" % (n, s.title) for n, s in enumerate(plan.steps, start=1)]
        lines += ["", "Each step, why, and its statements:"]
        for n, s in enumerate(plan.steps, start=1):
            lines.append("")
            lines.append("%d. %s" % (n, s.title))
            lines.append("   why: %s" % s.why)
            for stmt in s.statements:
                lines += ["   " + line for line in stmt.splitlines()]
    if plan.extras:
        lines.append("")
        lines.append("kept, not in the declaration (never dropped):")
        lines += ["  - %s" % e for e in plan.extras]
    return "\n".join(lines)


@main.command()
@click.option("--db", "db", required=True, type=DB_PATH, help="SQLite database file (need not exist yet).")
@click.option("--json", "as_json", is_flag=True, help="Print the plan as JSON.")
def plan(db, as_json):
    """Show the statements apply would run, and why, without running them."""
    # each command imports what it needs: apply's start-up time is benchmarked
    from .migrate.apply import plan_database
    try:
        result = plan_database(db)
    except SchemagenError as exc:
        _fail(exc)
    click.echo(_describe_plan(result, as_json))


class _Progress:
    """Shows long steps (a rebuild, an index build) with their time on a terminal."""

    def __init__(self, stream):
        self.stream = stream
        self.tty = stream.isatty()
        self.current = None
        self.started = 0.0

    def __call__(self, number, step, statement):
        if step is self.current:
            return
        self.close()
        self.current, self.started = step, time.perf_counter()
        if self.tty and (step.rows or 0) >= 10000:
            self.stream.write("  %d. %s ..." % (number, step.title))
            self.stream.flush()
        else:
            self.current = None

    def close(self):
        if self.current is not None:
            self.stream.write(" %.2fs\n" % (time.perf_counter() - self.started))
            self.stream.flush()
            self.current = None


@main.command()
@click.option("--db", "db", required=True, type=DB_PATH, help="SQLite database file: new, empty, or made by an older version.")
@click.option("--no-backup", is_flag=True, help="Skip the backup made before migrating tables that hold rows.")
@click.option("--check-data", is_flag=True,
              help="Also run the whole-file data checks after COMMIT (PRAGMA quick_check and foreign_key_check), "
                   "as `schemagen validate` does; they read the whole file.")
@click.option("--full-integrity", is_flag=True, help="Like --check-data, with PRAGMA integrity_check instead of quick_check (slow on big files).")
@click.option("--json", "as_json", is_flag=True, help="Print the validation report as JSON.")
@click.option("--report", "report_path", type=click.Path(dir_okay=False, path_type=str), help="Also write the report as Markdown to this file.")
@click.option("--no-validate", is_flag=True,
              help="Print no validation report; the structure and the foreign keys of the changed tables are still "
                   "verified before COMMIT.")
def apply(db, no_backup, check_data, full_integrity, as_json, report_path, no_validate):
    """Create or migrate the database in one transaction, then report on it.

    Before COMMIT apply verifies the declared structure and runs foreign_key_check on every table the
    migration can affect; the report after COMMIT shows that, the settings and the query plans. The
    whole-file data checks (quick_check, a full foreign_key_check) cost the same on every file however
    little changed, so apply leaves them to `schemagen validate` unless --check-data is given.
    """
    # each command imports what it needs: apply's start-up time is benchmarked
    from .migrate.apply import apply as do_apply
    progress = _Progress(sys.stderr)
    try:
        result = do_apply(db, backup=not no_backup, progress=progress)
    except SchemagenError as exc:
        progress.close()
        _fail(exc)
    progress.close()
    if not as_json:
        if not result.applied:
            click.echo("up to date: %s already matches the declaration" % db)
        else:
            click.echo("%s %s: %d statements in %d steps, one transaction, %.2fs" % (
                "created" if result.plan.fresh else "migrated", db, result.statements, len(result.plan.steps), result.seconds))
        if result.backup:
            click.echo("backup: %s" % result.backup)
    if no_validate:
        if as_json:
            # each command imports what it needs: apply's start-up time is benchmarked
            import json
            click.echo(json.dumps({"database": db, "applied": result.applied, "validated": False,
                                   "backup": result.backup, "statements": result.statements}, indent=2))
        else:
            click.echo("validation report skipped (--no-validate): run `schemagen validate --db %s`" % db)
        return
    # the structure apply verified before COMMIT: the report does not read and parse it again
    applied = None if (check_data or full_integrity) else result.foreign_key_check
    _report(db, full_integrity, as_json, report_path, actual=result.structure, applied=applied)


def _report(db, full_integrity, as_json, report_path, actual=None, applied=None):
    # each command imports what it needs: apply's start-up time is benchmarked
    from .check.validate import format_markdown, format_text, to_json
    from .check.report import build_report
    try:
        report = build_report(db, full_integrity=full_integrity, actual=actual, applied=applied)
    except SchemagenError as exc:
        _fail(exc)
    click.echo(to_json(report) if as_json else format_text(report))
    if report_path:
        try:
            with open(report_path, "w", encoding="utf-8") as fh:
                fh.write(format_markdown(report))
        except OSError as exc:
            raise _Abort("--report %r: cannot write (%s)" % (report_path, exc.strerror))
        if not as_json:
            click.echo("report written to %s" % report_path)
    if not report["ok"]:
        sys.exit(1)


@main.command()
@click.option("--db", "db", required=True, type=DB_PATH, help="SQLite database file to check.")
@click.option("--full-integrity", is_flag=True, help="Use PRAGMA integrity_check instead of quick_check (slow on big files).")
@click.option("--json", "as_json", is_flag=True, help="Print the report as JSON.")
@click.option("--report", "report_path", type=click.Path(dir_okay=False, path_type=str), help="Also write the report as Markdown to this file.")
def validate(db, full_integrity, as_json, report_path):
    """Check a database against the declaration and print the validation report."""
    _report(db, full_integrity, as_json, report_path)


@main.command()
@click.option("--db", "db", required=True, type=DB_PATH, help="SQLite database file to explain the queries on (only read).")
@click.option("--json", "as_json", is_flag=True, help="Print a JSON list, one object per serves-query.")
@click.option("--sample-rows", type=click.IntRange(min=1), default=None, metavar="N",
              help="Explain on a scratch copy with N generated rows per table and ANALYZE; the database is not changed.")
def explain(db, as_json, sample_rows):
    """Show, by EXPLAIN QUERY PLAN, whether each declared index serves its query."""
    # each command imports what it needs: apply's start-up time is benchmarked
    from .check.explain import explain_database, format_text, to_json
    from .compile.target import target_for
    try:
        report = explain_database(db, target_for(None).schema, sample_rows=sample_rows)
    except SchemagenError as exc:
        _fail(exc)
    click.echo(to_json(report) if as_json else format_text(report))


@main.command()
@click.option("--db", "db", default=None, type=DB_PATH,
              help="Also report what this database shows: missing statistics, plans that skip their index (only read).")
@click.option("--json", "as_json", is_flag=True, help="Print a JSON list of findings.")
def lint(db, as_json):
    """Report design findings in the declaration; never changes an index."""
    # each command imports what it needs: apply's start-up time is benchmarked
    from .analysis.lint import format_text, to_json
    from .check.lintdb import lint_path
    from .compile.target import target_for
    try:
        findings = lint_path(target_for(None).schema, db_path=db)
    except SchemagenError as exc:
        _fail(exc)
    click.echo(to_json(findings) if as_json else format_text(findings))


@main.command()
@click.option("--out", "out_dir", default="generated", show_default=True, type=click.Path(file_okay=False, path_type=str),
              help="Folder SCHEMA.md is written to.")
def docs(out_dir):
    """Write SCHEMA.md: every table, column, foreign key and index, with an ER diagram."""
    # each command imports what it needs: apply's start-up time is benchmarked
    from .compile.docs import render as render_docs
    from .compile.target import target_for
    SCHEMA = target_for(None).schema
    try:
        text = render_docs(SCHEMA)
    except SchemagenError as exc:
        _fail(exc)
    if os.path.exists(out_dir) and not os.path.isdir(out_dir):
        raise _Abort("--out %r: expected a folder" % out_dir)
    os.makedirs(out_dir, exist_ok=True)
    path = os.path.join(out_dir, "SCHEMA.md")
    try:
        with open(path, encoding="utf-8", newline="") as fh:
            if fh.read() == text:
                click.echo("%s is up to date" % path)
                return
    except OSError:
        pass
    with open(path, "w", encoding="utf-8", newline="") as fh:
        fh.write(text)
    click.echo("wrote %s" % path)


if __name__ == "__main__":  # pragma: no cover
    main()
