"""The schemagen command line: parse, call the library, print.

Exit codes, the same for every command (errors.py): 0 done, everything valid;
1 done, but checks found problems; 2 refused or usage error, nothing changed;
3 changed, then a later step failed or was interrupted; 130 interrupted
before anything changed. Expected failures are one line on stderr, in one
style ("error: ..."), Click's own usage errors included.
"""
from __future__ import annotations

import contextlib
import os
import sys
import time

import click

from . import __version__
from .errors import EXIT_CHANGED_THEN_FAILED, EXIT_INTERRUPTED, EXIT_PROBLEMS, EXIT_REFUSED, Declined, SchemagenError
from .words import plural

class _Path(click.ParamType):
    """click.Path, built when a value is converted: click.Path's constructor looks up gettext translations
    (and imports locale), about 1 ms of every command's start-up for a dozen options that are rarely given."""

    name = "path"

    def __init__(self, **options):
        self.options = dict(options, path_type=str)

    def convert(self, value, param, ctx):
        return click.Path(**self.options).convert(value, param, ctx)

    def get_metavar(self, *args, **kwargs):
        return "DIRECTORY" if self.options.get("file_okay") is False else \
            "FILE" if self.options.get("dir_okay") is False else "PATH"


DB_PATH = _Path(dir_okay=True, file_okay=True)


class _Abort(click.ClickException):
    def __init__(self, message, exit_code=2):
        super().__init__(message)
        self.exit_code = exit_code

    def show(self, file=None):
        click.echo("error: %s" % self.format_message(), err=True)


def _fail(exc):
    raise _Abort(" ".join(str(exc).split()), getattr(exc, "exit_code", 2))


SEVERITIES = ("info", "warning", "error")


def strict_option(command):
    return click.option(
        "--strict", "strict", is_flag=False, flag_value="warning", default=None, type=click.Choice(SEVERITIES),
        metavar="[SEVERITY]",
        help="For CI: exit 1 when a finding is at or above SEVERITY (info, warning, error; --strict alone: "
             "warning). Without it the command exits 0 whatever it finds.")(command)


def _exit_if_strict(strict, severities):
    if strict is not None:
        floor = SEVERITIES.index(strict)
        over = [s for s in severities if SEVERITIES.index(s) >= floor]
        if over:
            click.echo("error: %s at or above %s (--strict)" % (plural(len(over), "finding"), strict), err=True)
            sys.exit(EXIT_PROBLEMS)


def schema_option(command):
    return click.option(
        "--schema", "schema_spec", default=None, metavar="SPEC",
        help="The declaration: path/to/file.py[:NAME], package.module[:NAME], or abathur (the shipped one); NAME "
             "defaults to SCHEMA. Default: the project's [tool.schemagen] declaration, else abathur.")(command)


def _declaration(spec):
    # the declaration loader and the model: every command needs them, apply only for its project check
    from .compile.project import fallback_notice, resolve
    try:
        decl = resolve(spec)
    except SchemagenError as exc:
        _fail(exc)
    if not decl.explicit:  # said out loud, on stderr (never into --json)
        click.echo("note: %s" % fallback_notice(), err=True)
    return decl


def _refuse_foreign(decl, db):
    """Under the fallback to the shipped declaration, a command that reads a database refuses a file of another
    application (tables, none of them declared): exit 2 before reading it, as plan and apply do."""
    if db is None or _guard(decl) is None:
        return
    try:
        if _is_postgresql(db):
            try:
                from .pg import apply as pg  # psycopg: only the PostgreSQL path imports it
            except ImportError:
                return  # the command itself says PostgreSQL needs psycopg
            pg.refuse_foreign_database(db, pg.compiled_for(decl))
        else:
            from .migrate.apply import refuse_foreign_database  # only the fallback needs the guard
            refuse_foreign_database(db)
    except SchemagenError as exc:
        _fail(exc)


def _target(decl):
    """The Target a command applies or checks against (the project's rendered files must not be stale)."""
    from .compile.project import target  # see _declaration
    try:
        return target(decl)
    except SchemagenError as exc:
        _fail(exc)


def _schema(decl):
    """The declaration as the model (lint, explain, render and docs need it)."""
    from .compile.project import load_schema  # see _declaration
    try:
        return load_schema(decl)
    except SchemagenError as exc:
        _fail(exc)


EXIT_CODES_HELP = ("Exit codes: 0 done, everything valid; 1 done, but checks found problems; 2 refused or usage "
                   "error, nothing changed; 3 changed, then a later step failed or was interrupted; 130 interrupted "
                   "before anything changed.")


def _print_version(ctx):
    # not click.version_option: it looks up gettext translations (and imports locale) on every start-up
    click.echo("schemagen, version %s" % __version__)
    ctx.exit()


class _Interrupts:
    """Ctrl-C, answered with the truth about what was committed.

    The CLI's SIGINT handler raises KeyboardInterrupt once and ignores every later SIGINT, so the answer to the
    first one cannot itself be interrupted (nor the process killed by the signal on its way out). Around a
    COMMIT (commit()) a Ctrl-C is held until COMMIT has returned and the database is recorded in `committed`;
    whatever is interrupted after that exits 3 and names it. After the command has finished, Ctrl-C is ignored:
    the output already says what was done.
    """

    committed = []  # the databases this run has committed a change to, in order
    deferred = False
    pending = False

    @staticmethod
    def _signal():
        # CPython's _signal is loaded at start-up; the signal module over it builds enums (about 0.5 ms of every
        # command's start-up, and apply's is benchmarked)
        try:
            import _signal as signal  # CPython's, already loaded
        except ImportError:  # pragma: no cover - another Python
            import signal  # the public module elsewhere
        return signal

    @classmethod
    def install(cls):
        signal = cls._signal()
        cls.committed, cls.deferred, cls.pending = [], False, False
        try:
            return signal.signal(signal.SIGINT, cls._on_sigint)
        except ValueError:  # not the main thread (an embedding application): leave its handler alone
            return None

    @classmethod
    def restore(cls, previous):
        signal = cls._signal()
        try:
            signal.signal(signal.SIGINT, previous if previous is not None else signal.default_int_handler)
        except ValueError:
            pass

    @classmethod
    def ignore(cls):
        signal = cls._signal()
        try:
            signal.signal(signal.SIGINT, signal.SIG_IGN)
        except ValueError:
            pass

    @classmethod
    def _on_sigint(cls, signum, frame):
        if cls.deferred:
            cls.pending = True
            return
        cls.ignore()
        raise KeyboardInterrupt

    @classmethod
    @contextlib.contextmanager
    def commit(cls, db):
        """The COMMIT of db runs in here: Ctrl-C waits until it has returned (and db is recorded)."""
        cls.deferred = True
        try:
            yield
            if db not in cls.committed:  # an online apply commits many times
                cls.committed.append(db)
        finally:
            cls.deferred = False
            if cls.pending:
                cls.pending = False
                cls.ignore()
                raise KeyboardInterrupt

    @classmethod
    def message(cls, at=None):
        """The one line that answers an interrupt, and its exit code."""
        done = [_shown(db) for db in cls.committed]
        if not done:
            return "interrupted; nothing was changed", EXIT_INTERRUPTED
        if at is not None and _shown(at) not in done:
            return ("interrupted at %s, nothing changed there; already committed: %s" % (_shown(at), ", ".join(done)),
                    EXIT_CHANGED_THEN_FAILED)
        return ("interrupted after the change to %s was committed; run `schemagen validate --db %s`" % (
            ", ".join(done), done[-1]), EXIT_CHANGED_THEN_FAILED)


class _Group(click.Group):
    """Every error in one style, Click's usage errors and Ctrl-C included."""

    def main(self, args=None, prog_name=None, complete_var=None, standalone_mode=True, **extra):
        previous = _Interrupts.install()
        try:
            try:
                rv = super().main(args, prog_name, complete_var, standalone_mode=False, **extra)
            except click.UsageError as exc:
                hint = " (see `%s --help`)" % exc.ctx.command_path if exc.ctx is not None else ""
                click.echo("error: %s%s" % (" ".join(exc.format_message().split()), hint), err=True)
                _Interrupts.ignore()
                sys.exit(EXIT_REFUSED)
            except click.ClickException as exc:
                exc.show()
                _Interrupts.ignore()
                sys.exit(exc.exit_code)
            except SystemExit:
                _Interrupts.ignore()
                raise
            _Interrupts.ignore()
        except (click.exceptions.Abort, KeyboardInterrupt):
            _Interrupts.ignore()
            text, code = _Interrupts.message()
            click.echo("error: %s" % text, err=True)
            sys.exit(code)
        finally:
            if args is not None:  # called as a function (tests, an embedding program): its handler back
                _Interrupts.restore(previous)
        if not standalone_mode:
            return rv
        sys.exit(rv if isinstance(rv, int) else 0)


def _styler(stream=None):
    """Colour status words only on a terminal, and never when NO_COLOR is set (no-color.org)."""
    stream = stream or sys.stdout
    if os.environ.get("NO_COLOR") or not stream.isatty():
        return lambda text, ok: text
    return lambda text, ok: click.style(text, fg="green" if ok else "yellow" if ok is None else "red")


@click.group(cls=_Group, context_settings={"help_option_names": ["-h", "--help"]}, epilog=EXIT_CODES_HELP)
@click.option("--version", is_flag=True, expose_value=False, is_eager=True, callback=lambda ctx, param, value:
              _print_version(ctx) if value and not ctx.resilient_parsing else None, help="Show the version and exit.")
def main():
    """Keep an SQLite schema as code: render, plan, apply and validate it."""


@main.command()
@click.option("--out", "out_dir", default=None, type=_Path(file_okay=False),
              help="Folder the generated files are written to. Default: the project's out folder "
                   "([tool.schemagen] out, \"generated\"), else generated/ here.")
@click.option("--check", is_flag=True, help="Write nothing; exit 1 naming each file that differs from what render would write.")
@click.option("--dialect", type=click.Choice(["sqlite", "postgresql"]), default=None,
              help="Render only this dialect (PostgreSQL's files go to OUT/postgresql/). Default: the project's "
                   "[tool.schemagen] dialects, else sqlite, and postgresql too where OUT/postgresql/ exists.")
@schema_option
def render(out_dir, check, dialect, schema_spec):
    """Render the DDL files, the validator and the schema docs from the declaration."""
    # rendering needs Jinja2 and the declaration's origin (its source hash)
    from .compile.project import origin
    from .compile.render import render_files
    decl = _declaration(schema_spec)
    out_dir = _out_dir(decl, out_dir)
    dialects = _dialects(decl, out_dir, dialect)
    files = {}
    try:
        if "sqlite" in dialects:
            files.update(render_files(_schema(decl), origin(decl)))
        if "postgresql" in dialects:
            from .compile import postgresql  # the PostgreSQL renderer: only when that dialect is rendered
            files.update({postgresql.OUT_SUBDIR + "/" + name: text
                          for name, text in postgresql.render_files(_schema(decl), origin(decl)).items()})
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
        for sub in [""] * ("sqlite" in dialects) + ["postgresql/"] * ("postgresql" in dialects):
            folder = os.path.join(out_dir, sub)
            for name in sorted(os.listdir(folder)) if os.path.isdir(folder) else ():
                path = os.path.join(folder, name)
                if sub + name not in files and os.path.isfile(path) and not name.startswith("."):
                    stale.append("%s (no longer rendered: delete it)" % path)
        if stale:
            for line in stale:
                click.echo("stale: %s" % line, err=True)
            raise _Abort("%s stale for %s; run `%s`" % (plural(len(stale), "generated file is", "generated files are"), decl.label, decl.render_command), 1)
        click.echo("%s is up to date (%s)" % (out_dir, plural(len(files), "file")))
        return
    from . import outfiles  # writing files: only the commands that write need it
    written = 0
    try:
        outfiles.make_folder(out_dir, "--out")
        if "postgresql" in dialects:
            outfiles.make_folder(os.path.join(out_dir, "postgresql"), "--out")
        for name in files:
            outfiles.check_file(os.path.join(out_dir, name), "--out")
        for name, text in sorted(files.items()):
            path = os.path.join(out_dir, name)
            if outfiles.read_text(path) == text:
                continue
            outfiles.write_text(path, text, "--out")
            written += 1
            click.echo("wrote %s" % path)
    except SchemagenError as exc:
        _fail(exc)
    click.echo("%s rendered for %s, %d changed" % (plural(len(files), "file"), decl.label, written))


def _dialects(decl, out_dir, dialect):
    """Which dialects render writes or checks: --dialect, the project's dialects, else sqlite (and postgresql
    where OUT/postgresql/ exists)."""
    if dialect is not None:
        return (dialect,)
    if decl.project is not None and decl.project.dialects:
        return decl.project.dialects
    return ("sqlite", "postgresql") if os.path.isdir(os.path.join(out_dir, "postgresql")) else ("sqlite",)


def _out_dir(decl, out_dir):
    """Where render and docs write: --out, the project's out folder, or generated/ here.

    A declaration that is not the project's never lands in the project's folder by default.
    """
    if out_dir is not None:
        return out_dir
    if decl.project is not None:
        return str(decl.project.out_dir)
    from .compile.project import find_project  # see _declaration
    project = find_project()
    here = os.path.abspath("generated")
    if project is not None and os.path.abspath(str(project.out_dir)) == here:
        raise _Abort("--schema %s is not this project's declaration (%s): pass --out to say where its files go" % (
            decl.spec, project.declaration))
    return "generated"


def _describe_plan(plan, as_json=False, database=None):
    if as_json:
        # each command imports what it needs: apply's start-up time is benchmarked
        import json
        from .check import documents  # --json only: one document shape on both engines
        return json.dumps(documents.plan(plan, database, "sqlite"), indent=2)
    if plan.up_to_date:
        lines = ["up to date: nothing to do" + (" (%s the declaration does not have %s kept: see below)" % (
            plural(len(plan.extras), "object"), "is" if len(plan.extras) == 1 else "are") if plan.extras else "")]
    else:
        lines = ["%s, %s, in one transaction%s:" % (
            plural(len(plan.steps), "step"), plural(len(plan.statements), "statement"),
            "; a backup is made first" if plan.touches_rows else "")]
        for n, s in enumerate(plan.steps, start=1):
            lines.append("  %d. %s" % (n, s.title))
            reasons = getattr(s.change, "reasons", None)
            if reasons:  # a rebuild: every reason, and the renames and new columns it carries
                lines += ["       - %s" % r.text for r in reasons]
        lines += ["", "Each step, why, and its statements:"]
        for n, s in enumerate(plan.steps, start=1):
            lines.append("")
            lines.append("%d. %s" % (n, s.title))
            lines.append("   why: %s" % s.why)
            for stmt in s.statements:
                lines += ["   " + line for line in stmt.splitlines()]
    if plan.data_loss:
        lines.append("")
        lines.append("loses data (apply makes a backup first and asks; --yes accepts):")
        lines += ["  - %s" % d["text"] for d in plan.data_loss]
    weakens = [(s.change.kind, s.change.name, s.change.weakens) for s in plan.steps if getattr(s.change, "weakens", None)]
    if weakens:
        lines.append("")
        lines.append("weakens, although no row goes:")
        lines += ["  - %s '%s': %s" % w for w in weakens]
    if plan.extras:
        lines.append("")
        lines.append("not in the declaration, kept (apply drops only what the declaration removes or --prune names):")
        for e in plan.extras:
            lines.append("  - %s" % e)
            lines.append("      to drop it: %s" % _removal_advice(e))
    return "\n".join(lines)


_KEPT = r"(?P<kind>virtual table|table|index|view|trigger) '(?P<name>(?:[^']|'')*)'(?:: column '(?P<column>(?:[^']|'')*)')?"


def _removal_advice(kept):
    """The exact ways to drop one kept object (a line of plan.extras): the declaration's removed(...), or --prune
    (with --allow-data-loss for what holds data: a table, a column)."""
    import re  # plan's text only (click has loaded it already)
    match = re.match(_KEPT, kept)
    if match is None:
        return "declare it removed with removed(...), or apply --prune"
    kind, name, column = match.group("kind"), match.group("name"), match.group("column")
    q = lambda text: '"%s"' % text.replace("''", "'").replace("\\", "\\\\").replace('"', '\\"')
    if column is not None:
        return "removed(\"column\", %s, \"why\", table=%s), or apply --prune --allow-data-loss (its values go; a " \
               "backup is made first)" % (q(column), q(name))
    if kind in ("table", "virtual table"):
        return "removed(\"table\", %s, \"why\"), or apply --prune --allow-data-loss (its rows go; a backup is made " \
               "first)" % q(name)
    return "removed(%s, %s, \"why\"), or apply --prune (no data goes)" % (q(kind), q(name))


@main.command()
@click.option("--db", "db", required=True, type=DB_PATH, help="SQLite database file (need not exist yet).")
@click.option("--json", "as_json", is_flag=True, help="Print the plan as JSON.")
@click.option("--sql", "sql_file", is_flag=False, flag_value="-", default=None, metavar="[FILE]",
              type=_Path(dir_okay=False, allow_dash=True),
              help="Write the exact script apply would run as one standalone .sql file (guarded: it changes "
                   "nothing on another structure); to stdout when FILE is omitted or '-'.")
@click.option("--prune", is_flag=True, help="Show what apply --prune would drop (with --allow-data-loss: columns and "
                                            "tables too).")
@click.option("--allow-data-loss", is_flag=True, help="With --prune: as apply --prune --allow-data-loss.")
@click.option("--concurrently", is_flag=True, help="PostgreSQL: as apply --concurrently (indexes on tables that have "
                                                   "rows are built CONCURRENTLY after COMMIT).")
@click.option("--online", is_flag=True, help="The steps apply --online runs, each with the lock it takes and for how "
                                             "long it expects to hold it.")
@schema_option
def plan(db, as_json, sql_file, prune, allow_data_loss, concurrently, online, schema_spec):
    """Show the statements apply would run, and why, without running them."""
    # each command imports what it needs: apply's start-up time is benchmarked
    from .migrate.apply import plan_database
    if sql_file not in (None, "-"):  # an output path is refused before anything starts, the declaration included
        from . import outfiles  # see render
        try:
            outfiles.check_file(sql_file, "--sql", databases=[] if _is_postgresql(db) else [db])
        except SchemagenError as exc:
            _fail(exc)
    if sql_file is not None and online:
        raise _Abort("plan --sql --online: an online migration is many transactions run and retried by schemagen, "
                     "not one script; use plan --online to see its steps")
    _only_on("postgresql", [db], "concurrently")
    decl = _declaration(schema_spec)
    _check_dialects(decl, [db])
    if _is_postgresql(db):
        _refuse_foreign(decl, db)
        return _pg_plan(db, decl, as_json, sql_file, _prune_mode(prune, allow_data_loss), concurrently, online)
    if online:
        return _online_plan(db, decl, as_json, _prune_mode(prune, allow_data_loss))
    if sql_file is not None:
        from .migrate.sqlscript import export_script  # only --sql needs the script export
        from . import outfiles  # see render
        try:
            text = export_script(db, schema=_target(decl), guard=_guard(decl))
            if sql_file != "-":
                outfiles.write_text(sql_file, text, "--sql")
        except SchemagenError as exc:
            _fail(exc)
        if sql_file == "-":
            click.echo(text, nl=False)
        else:
            click.echo("wrote %s: run it whole with a runner that stops at the first error (sqlite3 -bail, "
                       "executescript, sqlx with -- no-transaction)" % sql_file)
        return
    try:
        result = plan_database(db, schema=_target(decl), guard=_guard(decl), prune=_prune_mode(prune, allow_data_loss))
    except SchemagenError as exc:
        _fail(exc)
    click.echo(_describe_plan(result, as_json, db))


@main.command(epilog=EXIT_CODES_HELP)
@click.argument("from_side", metavar="FROM")
@click.argument("to_side", metavar="TO")
@click.option("--db", "db", default=None, type=DB_PATH,
              help="Count the rows the change's new constraints and NOT NULLs would refuse in this database, and "
                   "estimate each rebuild's write-lock time from its rows (only read).")
@click.option("--json", "as_json", is_flag=True, help="Print everything as one JSON object.")
@click.option("--strict", is_flag=True, help="For CI: exit 1 when the change loses data, apply would refuse it, or "
                                              "rows in --db would violate a new constraint.")
def diff(from_side, to_side, db, as_json, strict):
    """Compare two declarations (SPEC, '.' for the working tree, or a git revision) and lint the change."""
    # diff builds both declarations and plans between them: only this command needs it
    from .check.declaration_diff import diff_declarations, format_lint, read_side
    if db is not None and _is_postgresql(db):
        raise _Abort("--db %s: diff counts rows and times rebuilds in an SQLite file; on PostgreSQL run `schemagen "
                     "plan --db URL` for the change and what it would refuse" % _shown(db))
    try:
        result = diff_declarations(read_side(from_side), read_side(to_side), db=db)
    except SchemagenError as exc:
        _fail(exc)
    if as_json:
        import json  # see _describe_plan
        out = result.as_dict()
        from .check import documents  # see _describe_plan
        out["steps"] = [documents.step(s) for s in result.plan.steps] if result.plan is not None else None
        out["version"] = documents.VERSION
        click.echo(json.dumps(out, indent=2, sort_keys=True))
    else:
        click.echo("diff %s -> %s" % (result.source.label, result.dest.label))
        for side in (result.source, result.dest):
            if side.note:
                click.echo("note: %s" % side.note)
        if result.plan is not None:
            click.echo("no change between the declarations" if result.plan.up_to_date and not result.plan.extras
                       else _describe_plan(result.plan))
            if result.data_steps and not any(type(s.change).__name__ == "RunDataStep" for s in result.plan.steps):
                click.echo("note: these are the steps on a new database; on one with rows, apply first makes the "
                           "additions without the constraints the data steps below satisfy, runs the steps, then "
                           "the rest")
        click.echo("")
        click.echo(format_lint(result))
    if strict and (result.can_lose_data or result.refused or result.violations):
        click.echo("error: the change %s (--strict)" % ("loses data" if result.can_lose_data else "would be refused"
                                                        if result.refused else "does not fit the rows in %s" % db),
                   err=True)
        sys.exit(EXIT_PROBLEMS)


class _Working:
    """On a terminal, says what a long read is doing and how long it took (a whole-file check, a sample load)."""

    def __init__(self, label, stream=None):
        self.label, self.stream = label, stream or sys.stderr

    def __enter__(self):
        self.started = time.perf_counter()
        self.tty = self.stream.isatty()
        if self.tty:
            self.stream.write("  %s ..." % self.label)
            self.stream.flush()
        return self

    def __exit__(self, *exc):
        if self.tty:
            self.stream.write(" %.2fs\n" % (time.perf_counter() - self.started))
            self.stream.flush()


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


@main.command(epilog=EXIT_CODES_HELP)
@click.option("--db", "dbs", required=True, multiple=True, type=DB_PATH,
              help="SQLite database file: new, empty, or made by an older version. Repeat it for several files: each "
                   "gets its own transaction and backup, one failure does not stop the others.")
@click.option("--no-backup", is_flag=True, help="Skip the backup made before migrating tables that hold rows.")
@click.option("--backup-dir", default=None, type=_Path(file_okay=False), metavar="DIR",
              help="Folder for the backup (default: the database's folder); it must exist and be writable.")
@click.option("--keep-backups", default=3, show_default=True, type=click.IntRange(min=1), metavar="N",
              help="Keep the newest N backups of this database in the backup folder (older ones are removed after COMMIT).")
@click.option("--check-data", is_flag=True,
              help="Also run the whole-file data checks after COMMIT (PRAGMA quick_check and foreign_key_check), "
                   "as `schemagen validate` does; they read the whole file.")
@click.option("--full-integrity", is_flag=True, help="Like --check-data, with PRAGMA integrity_check instead of quick_check (slow on big files).")
@click.option("--json", "as_json", is_flag=True,
              help="Print one JSON object: what was done (steps, statements, rows, timings, backup) and the report.")
@click.option("--report", "report_path", type=_Path(), help="Also write the report as Markdown to this file (with several --db: into this folder, one file each).")
@click.option("--no-validate", is_flag=True,
              help="Print no validation report; the structure and the foreign keys of the changed tables are still "
                   "verified before COMMIT.")
@click.option("--verbose", "-v", is_flag=True, help="Print the full validation report instead of the summary.")
@click.option("--lock-timeout", default="5s", show_default=True, metavar="DURATION",
              help="PostgreSQL: how long a statement waits for a lock before the whole apply is rolled back (exit 2).")
@click.option("--statement-timeout", default="0", show_default=True, metavar="DURATION",
              help="PostgreSQL: how long one statement may run before the whole apply is rolled back (0: no limit).")
@click.option("--prune", is_flag=True,
              help="Also drop the database's indexes, views and triggers that the declaration does not have; with "
                   "--allow-data-loss also its undeclared columns and tables.")
@click.option("--allow-data-loss", is_flag=True,
              help="Let --prune drop undeclared columns and tables, and let a plan that loses data run with "
                   "--no-backup.")
@click.option("--yes", "-y", is_flag=True, help="Accept a plan that loses data without asking (needed off a terminal).")
@click.option("--concurrently", is_flag=True,
              help="PostgreSQL: build indexes on tables that have rows with CREATE INDEX CONCURRENTLY after COMMIT "
                   "(a failure there exits 3; the next apply rebuilds the INVALID index).")
@click.option("--online", is_flag=True,
              help="Let the application keep reading and writing. SQLite: rebuild tables through a shadow table kept "
                   "in step by triggers, copied in short batches and swapped in one short transaction. PostgreSQL: "
                   "each step in its own short transaction, retried while a lock is busy (--lock-timeout: how long "
                   "one step keeps retrying). A failure after a commit exits 3: apply again finishes.")
@schema_option
def apply(dbs, no_backup, backup_dir, keep_backups, check_data, full_integrity, as_json, report_path, no_validate, verbose,
          lock_timeout, statement_timeout, prune, allow_data_loss, yes, concurrently, online, schema_spec):
    """Create or migrate the database in one transaction, then report on it.

    Before COMMIT apply verifies the declared structure and runs foreign_key_check on every table the
    migration can affect; the report after COMMIT shows that, the settings and the query plans. The
    whole-file data checks (quick_check, a full foreign_key_check) cost the same on every file however
    little changed, so apply leaves them to `schemagen validate` unless --check-data is given.
    """
    _only_on("postgresql", dbs, "lock_timeout", "statement_timeout", "concurrently")
    _only_on("sqlite", dbs, "backup_dir", "keep_backups")
    reports = _report_paths(dbs, report_path)  # before anything changes: a bad --report must not fail after COMMIT
    decl = _declaration(schema_spec)
    _check_dialects(decl, dbs)
    target = _target(decl) if _files(dbs) else None  # a PostgreSQL-only run needs no SQLite target

    def one(db, report_path):
        if _is_postgresql(db):
            _refuse_foreign(decl, db)
            return _pg_apply(db, decl, as_json, report_path, no_validate, verbose, check_data, full_integrity,
                             lock_timeout=lock_timeout, statement_timeout=statement_timeout, prune=loss[0],
                             allow_data_loss=loss[1], confirm=loss[2], concurrently=concurrently, online=online)
        _apply_one(db, decl, target, no_backup, backup_dir, keep_backups, check_data, full_integrity, as_json,
                   report_path, no_validate, verbose, loss, online)
    loss = (_prune_mode(prune, allow_data_loss), allow_data_loss, _confirm(yes))
    _for_each_db(dbs, reports, one, as_json)


def _online_plan(db, decl, as_json, prune):
    """plan --online (migrate/online.py): the steps, each with the write lock it holds."""
    from .migrate import online  # only --online imports it
    try:
        plan, steps = online.plan_online(db, _target(decl), guard=_guard(decl), prune=prune)
    except SchemagenError as exc:
        _fail(exc)
    if as_json:
        import json  # see _describe_plan
        click.echo(json.dumps(_online_document(plan, db, "sqlite", steps), indent=2))
    elif plan.up_to_date:
        click.echo("up to date: nothing to do")
    else:
        click.echo("apply --online would run %s:" % plural(len(steps), "step"))
        for n, s in enumerate(steps, start=1):
            click.echo("  %d. %s\n     write lock: %s" % (n, s["step"], s["lock"]))


def _online_document(plan, database, dialect, online_steps, refused=()):
    """plan --online --json, one shape on both engines: the online steps (each with the lock it takes), the plan's
    steps beneath them (check/documents.py), and what cannot run online (PostgreSQL; [] on SQLite)."""
    from .check import documents  # see _describe_plan
    out = documents.plan(plan, database, dialect)
    out.update(online=True, online_steps=[{"step": s["step"], "lock": s["lock"], "mode": s.get("mode", "")}
                                          for s in online_steps],
               refused=list(refused), up_to_date=out["up_to_date"] and not online_steps and not refused)
    return out


def _prune_mode(prune, allow_data_loss):
    return None if not prune else "all" if allow_data_loss else "objects"


def _confirm(yes):
    """Asks before a plan that loses data: --yes accepts, a terminal asks, anything else refuses (exit 2)."""
    def confirm(plan):
        if yes:
            return True
        if not sys.stdin.isatty():
            raise Declined("the plan loses data (%s); off a terminal pass --yes to accept it; nothing was changed" % (
                "; ".join(d["text"] for d in plan.data_loss)))
        click.echo("This plan loses data (on SQLite a backup is made first; PostgreSQL has none):", err=True)
        for d in plan.data_loss:
            click.echo("  - %s" % d["text"], err=True)
        return click.confirm("Apply it?", default=False, err=True)
    return confirm


def _apply_one(db, decl, target, no_backup, backup_dir, keep_backups, check_data, full_integrity, as_json, report_path,
               no_validate, verbose, loss=(None, False, None), online=False):
    # each command imports what it needs: apply's start-up time is benchmarked
    from .migrate.apply import apply as do_apply
    progress = _Progress(sys.stderr)
    try:
        if online:
            from .migrate.online import apply_online  # only --online imports it
            result = apply_online(db, schema=target, backup=not no_backup, guard=_guard(decl), backup_dir=backup_dir,
                                  keep_backups=keep_backups, prune=loss[0], allow_data_loss=loss[1], confirm=loss[2],
                                  commit_section=lambda: _Interrupts.commit(db))
        else:
            # the report, built on apply's connection after COMMIT; the whole-file data checks (--check-data) run
            # after apply, under _report's "checking" notice
            report = None
            if not (no_validate or check_data or full_integrity):
                from .check.report import report_after_apply  # only when a report is printed (start-up time)
                report = report_after_apply(target)
            result = do_apply(db, schema=target, backup=not no_backup, progress=progress, guard=_guard(decl),
                              backup_dir=backup_dir, keep_backups=keep_backups, check_data=check_data or full_integrity,
                              prune=loss[0], allow_data_loss=loss[1], confirm=loss[2],
                              commit_section=lambda: _Interrupts.commit(db), report=report)
    except SchemagenError as exc:
        progress.close()
        _fail(exc)
    finally:
        progress.close()
    # From here on the change is committed: a failure or Ctrl-C says so and exits 3.
    try:
        _after_commit(result, db, target, check_data, full_integrity, as_json, report_path, no_validate, verbose)
    except _Abort as exc:
        if result.applied and exc.exit_code == EXIT_REFUSED:
            raise _Abort("the change to %s is committed, then: %s" % (db, exc.format_message()),
                         EXIT_CHANGED_THEN_FAILED) from None
        raise


def _only_on(dialect, dbs, *names):
    """Refuse (exit 2, one line naming it) an option of one engine given on the command line when no --db is of
    that engine: an option is never silently ignored."""
    if any(_is_postgresql(db) == (dialect == "postgresql") for db in dbs):
        return
    ctx = click.get_current_context()
    for param in ctx.command.params:
        source = ctx.get_parameter_source(param.name)
        if param.name in names and source is not None and source.name in ("COMMANDLINE", "ENVIRONMENT"):
            raise _Abort("%s: %s; --db %s is %s, nothing was changed" % (
                param.opts[0], "an option of PostgreSQL only" if dialect == "postgresql" else
                "PostgreSQL has no file backup (an option of SQLite only)", _shown(dbs[0]),
                "an SQLite file" if dialect == "postgresql" else "a PostgreSQL URL"))


def _check_dialects(decl, dbs):
    """A project that lists its dialects ([tool.schemagen] dialects) is refused on another engine: exit 2, one line."""
    from .compile.project import refuse_dialect  # see _declaration
    try:
        for db in dbs:
            refuse_dialect(decl, "postgresql" if _is_postgresql(db) else "sqlite", "--db %s" % _shown(db))
    except SchemagenError as exc:
        _fail(exc)


def _is_postgresql(db):
    """A postgresql:// or postgres:// URL selects PostgreSQL (pg/url.py's SCHEMES; no import on SQLite's path)."""
    return db.lower().startswith(("postgresql://", "postgres://"))


def _shown(db):
    """A --db value as output shows it: a PostgreSQL URL with its password masked."""
    if not _is_postgresql(db):
        return db
    from .pg.url import mask  # standard library only; PostgreSQL URLs only
    return mask(db)


def _pg():
    """PostgreSQL's apply and validate (pg/apply.py); psycopg is imported only on the PostgreSQL path."""
    try:
        from .pg import apply as pg  # psycopg: only the PostgreSQL path imports it
    except ImportError as exc:
        raise _Abort("PostgreSQL needs psycopg (%s): pip install 'schemagen[postgresql]'" % exc) from None
    return pg


def _pg_validate(db, decl, as_json, report_path, verbose, full_integrity):
    """validate on PostgreSQL: the report in SQLite's shape (pg/apply.py's check), shown as SQLite's is."""
    pg = _pg()
    from .check import pgcheck  # the design findings and the serves-queries' plans, as SQLite's report has them
    try:
        compiled = pg.compiled_for(decl)
        report = pgcheck.complete_report(pg.validate(db, compiled, full_integrity=full_integrity), db, compiled,
                                         _schema(decl))
    except SchemagenError as exc:
        _fail(exc)
    _show_report(report, as_json, report_path, verbose)


def _pg_apply(db, decl, as_json, report_path, no_validate, verbose, check_data, full_integrity, **options):
    """apply on PostgreSQL (pg/migrate.py, or pg/online.py's entry point under --online); URLs are printed
    masked. Its --json document and report have SQLite's shape (check/documents.py)."""
    pg = _pg()
    timings = _StepTimes()
    try:
        compiled = pg.compiled_for(decl)
        from .pg import migrate  # PostgreSQL's planner (pg/plan.py) and migration
        if options.pop("online", False):
            from .pg import online  # apply --online: many short transactions
            options.pop("concurrently", None)  # online builds every index CONCURRENTLY
            result = online.apply_online(db, _schema(decl), compiled, **options)
        else:
            result = migrate.apply(db, _schema(decl), compiled, progress=timings, **options)
        if result.applied:
            _Interrupts.committed.append(db)
        report = result.report
    except SchemagenError as exc:
        _fail(exc)
    # From here on the change is committed: a failure says so (exit 3).
    try:
        if (check_data or full_integrity) and not no_validate:
            # validate's data checks after COMMIT, as SQLite's --check-data: rows kept under NOT VALID constraints
            # fail the report as orphans fail SQLite's foreign_key_check (and --full-integrity: every index checked)
            report = pg.validate(db, compiled, full_integrity=full_integrity)
    except SchemagenError as exc:
        raise _Abort(("the change to %s is committed, then: %s" if result.applied else "%s: %s") % (
            _shown(db), " ".join(str(exc).split())), EXIT_CHANGED_THEN_FAILED if result.applied else 2) from None
    done = None
    online = getattr(result, "online", False)
    if as_json:
        from .check import documents  # see _describe_plan
        plan = getattr(result, "plan", None)
        steps = list(getattr(plan, "steps", ())) if plan is not None else \
            [documents.FreshStep(compiled)] if result.applied else []
        done = documents.apply(result, result.database, "postgresql", steps=steps,
                               step_seconds=[result.seconds] if plan is None else
                               timings.seconds(len(steps)) if not online else (),
                               online={"transactions": result.steps, "retries": result.retries} if online else None)
        if no_validate:
            import json  # see _describe_plan
            click.echo(json.dumps(dict(done, validated=False, report=None), indent=2, sort_keys=True))
            return
    elif result.applied and online:
        click.echo("migrated %s (PostgreSQL, --online): %s, each its own transaction, %s, %s, %.2fs" % (
            result.database, plural(result.steps, "step"), plural(result.statements, "statement"),
            plural(result.retries, "lock retry", "lock retries"), result.seconds))
    elif result.applied:
        click.echo("%s %s (PostgreSQL): %s in one transaction, %.2fs%s" % (
            "created" if result.fresh else "migrated", result.database, plural(result.statements, "statement"),
            result.seconds, "; %s built CONCURRENTLY after COMMIT" % plural(result.concurrent_built, "step")
            if result.concurrent_built else ""))
    else:
        click.echo("up to date: %s already matches the declaration" % result.database)
    if no_validate:
        click.echo("validation skipped (--no-validate): run `schemagen validate --db %s`" % result.database)
        return
    from .check import pgcheck  # see _pg_validate
    try:
        report = pgcheck.complete_report(report, db, compiled, _schema(decl))
    except SchemagenError as exc:  # after COMMIT: the change stands, the report could not be read
        raise _Abort(("the change to %s is committed, then: %s" if result.applied else "%s: %s") % (
            _shown(db), " ".join(str(exc).split())), EXIT_CHANGED_THEN_FAILED if result.applied else 2) from None
    _show_report(report, as_json, report_path, verbose, done)


class _StepTimes:
    """pg/migrate.py's progress(step, statement): what each step took, in the order they ran."""

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


def _pg_plan(db, decl, as_json, sql_file, prune, concurrently, online=False):
    """plan on PostgreSQL: the steps (pg/plan.py), --json, or the --sql script in one or two parts."""
    try:
        from .pg import migrate, plan as pgplan  # psycopg: only the PostgreSQL path imports it
    except ImportError as exc:
        raise _Abort("PostgreSQL needs psycopg (%s): pip install 'schemagen[postgresql]'" % exc) from None
    from . import outfiles  # see render
    try:
        compiled = migrate.pg_apply.compiled_for(decl)  # refuses a stale generated/postgresql/, as apply does
        if sql_file is not None and online:
            raise _Abort("plan --sql --online: an online migration is many transactions run and retried by "
                         "schemagen, not one script; use plan --online to see its steps")
        if sql_file is not None:
            if sql_file != "-":
                outfiles.check_file(sql_file, "--sql")
            text = migrate.export_script(db, _schema(decl), prune=prune, concurrently=concurrently, compiled=compiled)
            if sql_file == "-":
                click.echo(text, nl=False)
            else:
                outfiles.write_text(sql_file, text, "--sql")
                click.echo("wrote %s: run it with psql -v ON_ERROR_STOP=1 -f %s" % (sql_file, sql_file))
            return
        if online:
            from .pg import online as pgonline  # plan --online: the steps and their locks
            result = pgonline.plan_online(db, _schema(decl), prune=prune)
            pgplan = pgonline
        else:
            result = migrate.plan(db, _schema(decl), prune=prune, concurrently=concurrently)
    except SchemagenError as exc:
        _fail(exc)
    if as_json:
        import json  # see _describe_plan
        from .check import documents  # see _describe_plan
        click.echo(json.dumps(_online_document(result.plan, result.database, "postgresql", [
            {"step": s.title, "lock": s.lock, "mode": s.mode} for s in result.steps], result.refused) if online else
            documents.plan(result, result.database, "postgresql"), indent=2))
    else:
        click.echo(pgplan.format_plan(result))


def _after_commit(result, db, target, check_data, full_integrity, as_json, report_path, no_validate, verbose):
    done = _apply_json(result, db) if as_json else None
    if not as_json:
        if not result.applied:
            click.echo("up to date: %s already matches the declaration" % db)
        else:
            online = getattr(result, "online", None)  # apply --online: many short transactions
            click.echo("%s %s: %s in %s, %s, %.2fs" % (
                "created" if result.plan.fresh else "migrated", db, plural(result.statements, "statement"),
                plural(len(result.plan.steps), "step"), "one transaction" if online is None else
                "online: %s, the longest held the write lock %.0f ms" % (
                    plural(online.get("transactions", 0), "transaction"), 1000 * online.get("longest_lock", 0)),
                result.seconds))
            dropped = [s.change for s in result.plan.steps if type(s.change).__name__ == "Remove"]
            if dropped:
                click.echo("dropped: " + ", ".join("%s '%s'%s" % (c.kind, c.name, " on '%s'" % c.table if c.table else "")
                                                   for c in dropped))
        if result.backup:
            click.echo("backup: %s" % result.backup)
    if no_validate:
        if as_json:
            # each command imports what it needs: apply's start-up time is benchmarked
            import json
            click.echo(json.dumps(dict(done, validated=False, report=None), indent=2, sort_keys=True))
        else:
            click.echo("validation skipped (--no-validate): run `schemagen validate --db %s`" % db)
        return
    # the structure apply verified before COMMIT: the report does not read and parse it again
    applied = None if (check_data or full_integrity) else result.foreign_key_check
    _report(target, db, full_integrity, as_json, report_path, actual=result.structure, applied=applied,
            verbose=verbose, done=done, built=getattr(result, "report", None))




def _apply_json(result, db):
    """What apply did, for --json: steps, statements, rows, timings and the backup (check/documents.py)."""
    from .check import documents  # see _describe_plan
    return documents.apply(result, db, "sqlite", step_seconds=result.step_seconds, backup=result.backup,
                           online=getattr(result, "online", None))


def _guard(decl):
    """The fallback to the shipped declaration never lands on another application's database."""
    return "shipped" if decl.shipped and not decl.explicit else None


def _files(dbs):
    """The --db values that name files (not PostgreSQL URLs): an output path must not be one of them."""
    return [db for db in dbs if not _is_postgresql(db)]


def _check_report_path(report_path, dbs=()):
    """One line and exit 2 before starting when --report cannot be written as a regular file, or is a database."""
    if report_path:
        from . import outfiles  # see render
        try:
            outfiles.check_file(report_path, "--report", databases=_files(dbs))
        except SchemagenError as exc:
            _fail(exc)


def _report(target, db, full_integrity, as_json, report_path, actual=None, applied=None, verbose=False, done=None,
            built=None):
    # each command imports what it needs: apply's start-up time is benchmarked
    from .check.report import build_report
    if built is not None:  # apply built it on its own connection (check/report.report_after_apply)
        return _show_report(built, as_json, report_path, verbose, done)
    try:
        label = "checking %s (%s, foreign_key_check)" % (db, "integrity_check" if full_integrity else "quick_check")
        with _Working(label) if applied is None else contextlib.nullcontext():
            report = build_report(db, schema=target, full_integrity=full_integrity, actual=actual, applied=applied)
    except SchemagenError as exc:
        _fail(exc)
    _show_report(report, as_json, report_path, verbose, done)


def _show_report(report, as_json, report_path, verbose=False, done=None):
    """The validation report of either engine (one shape: check/validate.py): the summary, the full text
    (--verbose), --json (with apply's `done`: its document), and the --report Markdown file; exit 1 unless ok."""
    from .check.validate import format_markdown, format_summary, format_text, to_json  # see _report
    if as_json:
        from .check import documents  # see _describe_plan
        click.echo(to_json(documents.validate(report)) if done is None else
                   to_json(dict(done, validated=True, report=report)))
    else:
        click.echo(format_text(report) if verbose else format_summary(report, _styler()))
    if report_path:
        from . import outfiles  # see render
        try:
            outfiles.write_text(report_path, format_markdown(report), "--report")
        except SchemagenError as exc:
            _fail(exc)
        if not as_json:
            click.echo("report written to %s" % report_path)
    if not report["ok"]:
        sys.exit(EXIT_PROBLEMS)


@main.command()
@click.option("--db", "dbs", required=True, multiple=True, type=DB_PATH,
              help="SQLite database file to check; repeat it for several files.")
@click.option("--full-integrity", is_flag=True, help="Use PRAGMA integrity_check instead of quick_check (slow on big files).")
@click.option("--json", "as_json", is_flag=True, help="Print the report as JSON.")
@click.option("--report", "report_path", type=_Path(), help="Also write the report as Markdown to this file (with several --db: into this folder, one file each).")
@click.option("--full", "--verbose", "-v", "verbose", is_flag=True, help="Print the full validation report instead of the summary.")
@schema_option
def validate(dbs, full_integrity, as_json, report_path, verbose, schema_spec):
    """Check a database against the declaration and print the validation report."""
    reports = _report_paths(dbs, report_path)
    decl = _declaration(schema_spec)
    _check_dialects(decl, dbs)
    target = _target(decl) if _files(dbs) else None  # a PostgreSQL-only run needs no SQLite target

    def one(db, path):
        _refuse_foreign(decl, db)
        if _is_postgresql(db):
            return _pg_validate(db, decl, as_json, path, verbose, full_integrity)
        _report(target, db, full_integrity, as_json, path, verbose=verbose)
    _for_each_db(dbs, reports, one, as_json)


def _report_paths(dbs, report_path):
    """--report per file: the file itself for one database, a folder (DB-NAME.md in it) for several."""
    if len(dbs) == 1:
        _check_report_path(report_path, dbs)
        return [report_path]
    if report_path is None:
        return [None] * len(dbs)
    if not os.path.isdir(report_path):
        raise _Abort("--report %r: with several --db, expected an existing folder for one report per file" % report_path)
    names, out = set(), []
    for db in dbs:
        stem = os.path.basename(os.path.normpath(db)) or "database"
        name, n = stem + ".md", 1
        while name in names:
            n += 1
            name = "%s-%d.md" % (stem, n)
        names.add(name)
        out.append(os.path.join(report_path, name))
        _check_report_path(out[-1], dbs)
    return out


_WORST = (EXIT_CHANGED_THEN_FAILED, EXIT_REFUSED, EXIT_PROBLEMS, 0)  # the run's exit code: the worst, in this order


def _for_each_db(dbs, reports, run_one, as_json):
    """Run one command per database, one after another; one failure does not stop the others.

    One file: exactly the single-file behaviour. Several: each file's output, then a summary table
    (--json: a list, one object per file, each with its exit_code and error); the exit code is the worst.
    """
    if len(dbs) == 1:
        run_one(dbs[0], reports[0])
        return
    import contextlib  # several files only
    import io  # see above
    import json  # see above
    results, interrupted = [], None
    for db, report_path in zip(dbs, reports):
        out = io.StringIO() if as_json else None
        code, error = 0, None
        try:
            with contextlib.redirect_stdout(out) if as_json else contextlib.nullcontext():
                if not as_json:
                    click.echo("== %s" % _shown(db))
                run_one(db, report_path)
        except click.ClickException as exc:
            code, error = exc.exit_code, " ".join(exc.format_message().split())
            if not as_json:
                click.echo("error: %s" % error, err=True)
        except SystemExit as exc:
            code = exc.code if isinstance(exc.code, int) else 1
        except (KeyboardInterrupt, click.exceptions.Abort):  # Ctrl-C, at the data-loss question too
            _Interrupts.ignore()
            interrupted = db
        if interrupted is not None:
            committed = db in _Interrupts.committed
            results.append({"database": _shown(db), "result": {"database": _shown(db)},
                            "exit_code": EXIT_CHANGED_THEN_FAILED if committed else EXIT_INTERRUPTED,
                            "error": "interrupted after COMMIT" if committed else "interrupted; nothing changed here"})
            results += [{"database": _shown(d), "result": {"database": _shown(d)}, "exit_code": EXIT_INTERRUPTED,
                         "error": "not started (interrupted)"} for d in dbs[len(results):]]
            break
        text = out.getvalue() if as_json else ""
        obj = json.loads(text) if text.strip() else {"database": _shown(db)}
        results.append({"database": _shown(db), "exit_code": code, "error": error, "result": obj})
    if as_json:
        click.echo(json.dumps([dict(r["result"], database=r["database"], exit_code=r["exit_code"], error=r["error"])
                               for r in results], indent=2, sort_keys=True))
    else:
        click.echo("")
        click.echo("%s:" % plural(len(results), "file"))
        width = max(len(r["database"]) for r in results)
        for r in results:
            what = {0: "ok", 1: "problems found", 2: "refused, nothing changed", 3: "changed, then failed",
                    130: "interrupted"}.get(r["exit_code"], "exit %d" % r["exit_code"])
            click.echo("  %s  %d  %s%s" % (r["database"].ljust(width), r["exit_code"], what,
                                           (": " + r["error"]) if r["error"] else ""))
    if interrupted is not None:  # the run's answer: 3 when any file was committed, else 130
        text, code = _Interrupts.message(at=interrupted)
        click.echo("error: %s" % text, err=True)
        sys.exit(code)
    codes = {r["exit_code"] for r in results}
    sys.exit(next((c for c in _WORST if c in codes), max(codes)))


@main.command()
@click.option("--db", "db", required=True, type=DB_PATH, help="SQLite database file to explain the queries on (only read).")
@click.option("--json", "as_json", is_flag=True, help="Print a JSON list, one object per serves-query.")
@click.option("--sample-rows", type=click.IntRange(min=1), default=None, metavar="N",
              help="Explain on a scratch copy with N generated rows per table and ANALYZE; the database is not changed.")
@strict_option
@schema_option
def explain(db, as_json, sample_rows, strict, schema_spec):
    """Show, by EXPLAIN QUERY PLAN, whether each declared index serves its query."""
    if _is_postgresql(db):  # PostgreSQL: EXPLAIN (FORMAT JSON), check/pgcheck.py (psycopg only on this path)
        from .check import pgcheck  # PostgreSQL only (psycopg)
        decl = _declaration(schema_spec)
        _check_dialects(decl, [db])
        _refuse_foreign(decl, db)
        schema = _schema(decl)
        try:
            report = pgcheck.explain(db, decl, schema, sample=sample_rows)
            click.echo(pgcheck.to_json(report) if as_json else pgcheck.format_text(report))
        except SchemagenError as exc:
            _fail(exc)
        return _exit_if_strict(strict, pgcheck.strict_severities(schema, report))
    # each command imports what it needs: apply's start-up time is benchmarked
    from .check.explain import explain_database, format_text, to_json
    decl = _declaration(schema_spec)
    _check_dialects(decl, [db])
    _refuse_foreign(decl, db)
    schema = _schema(decl)
    try:
        with _Working("loading %d sample rows per table into a scratch copy, then ANALYZE" % sample_rows) \
                if sample_rows else contextlib.nullcontext():
            report = explain_database(db, schema, sample_rows=sample_rows)
    except SchemagenError as exc:
        _fail(exc)
    click.echo(to_json(report) if as_json else format_text(report))
    if strict is not None:
        # a serves-query whose plan uses neither its index nor an identical one is a warning; an error when the
        # declaration requires that plan (the rule of the validation report)
        from .compile.render import plan_checks  # --strict only: the same rule the report compiles
        from .sqlite.eqp import indexes_used  # see above
        checks = plan_checks(schema)
        severities = []
        for r in report.results:
            accepted = {r.index.lower(), *(n.lower() for n in checks[r.index]["identical"])}
            if not accepted & {n.lower() for n in indexes_used(r.plan)}:
                severities.append("error" if checks[r.index]["required"] else "warning")
        _exit_if_strict(strict, severities)


@main.command()
@click.option("--db", "db", default=None, type=DB_PATH,
              help="Also report what this database shows: missing statistics, plans that skip their index (only read).")
@click.option("--json", "as_json", is_flag=True, help="Print a JSON list of findings.")
@strict_option
@schema_option
def lint(db, as_json, strict, schema_spec):
    """Report design findings in the declaration; never changes an index."""
    # each command imports what it needs: apply's start-up time is benchmarked
    from .analysis.lint import format_text, to_json
    from .check.lintdb import lint_path
    if db is not None and _is_postgresql(db):  # PostgreSQL: check/pgcheck.py, through which psycopg is imported
        from .check import pgcheck  # PostgreSQL only (psycopg)
        decl = _declaration(schema_spec)
        _check_dialects(decl, [db])
        _refuse_foreign(decl, db)
        try:
            findings = pgcheck.lint_url(db, decl, _schema(decl))
        except SchemagenError as exc:
            _fail(exc)
        click.echo(to_json(findings) if as_json else format_text(findings))
        return _exit_if_strict(strict, [f.severity for f in findings])
    decl = _declaration(schema_spec)
    _check_dialects(decl, [db] if db is not None else [])
    _refuse_foreign(decl, db)
    schema = _schema(decl)
    try:
        findings = lint_path(schema, db_path=db)
    except SchemagenError as exc:
        _fail(exc)
    click.echo(to_json(findings) if as_json else format_text(findings))
    _exit_if_strict(strict, [f.severity for f in findings])


@main.command()
@click.option("--out", "out_dir", default=None, type=_Path(file_okay=False),
              help="Folder SCHEMA.md is written to (default: as for render).")
@schema_option
def docs(out_dir, schema_spec):
    """Write SCHEMA.md: every table, column, foreign key and index, with an ER diagram."""
    # docs needs Jinja2 and the declaration's origin
    from .compile.docs import render as render_docs
    from .compile.project import origin
    decl = _declaration(schema_spec)
    out_dir = _out_dir(decl, out_dir)
    try:
        text = render_docs(_schema(decl), origin(decl))
    except SchemagenError as exc:
        _fail(exc)
    from . import outfiles  # see render
    path = os.path.join(out_dir, "SCHEMA.md")
    try:
        outfiles.make_folder(out_dir, "--out")
        if outfiles.read_text(path) == text:
            outfiles.check_file(path, "--out")
            click.echo("%s is up to date" % path)
            return
        outfiles.write_text(path, text, "--out")
    except SchemagenError as exc:
        _fail(exc)
    click.echo("wrote %s" % path)


@main.command()
@click.option("--db", "db", required=True, type=DB_PATH, help="SQLite database file to read (only read).")
@click.option("--out", "out_file", default=None, type=_Path(dir_okay=False),
              help="Write the declaration to this .py file (default: print it).")
@click.option("--name", "schema_name", default=None, help="The schema's name (default: the file's stem).")
@click.option("--keep-user-version", "keep_versions", is_flag=True,
              help="Declare the file's user_version and application_id, so apply and validate hold them at these "
                   "values. Default: leave them to the application (written as comments).")
def inspect(db, out_file, schema_name, keep_versions):
    """Write a declaration (a Python file) of an existing database's structure."""
    # inspect reads the database into the model and writes Python
    from .migrate.inspect import inspect_file
    if _is_postgresql(db):
        raise _Abort("--db %s: inspect reads an SQLite file; reading a PostgreSQL database into a declaration is "
                     "not built" % _shown(db))
    from . import outfiles  # see render
    try:
        if out_file is not None:
            outfiles.check_file(out_file, "--out", databases=[db])
        text, settings = inspect_file(db, name=schema_name, keep_versions=keep_versions)
        if out_file is not None:
            outfiles.write_text(out_file, text, "--out")
    except SchemagenError as exc:
        _fail(exc)
    if settings:  # which it did, on stderr: stdout may be the declaration itself
        shown = " and ".join("%s %s" % pair for pair in settings)
        click.echo("%s: %s" % (shown, "declared (--keep-user-version): apply holds the file at these values"
                               if keep_versions else "left to the application, not declared (--keep-user-version "
                               "declares them)"), err=True)
    if out_file is None:
        click.echo(text, nl=False)
        return
    click.echo("wrote %s: load it with --schema %s" % (out_file, out_file))


@main.command(epilog=EXIT_CODES_HELP)
@click.option("--db", "db", required=True, type=DB_PATH, help="SQLite database file to put the backup back into.")
@click.option("--backup", "backup_file", default=None, type=_Path(dir_okay=False), metavar="FILE",
              help="The backup to restore (default: the newest backup of --db in the backup folder).")
@click.option("--backup-dir", default=None, type=_Path(file_okay=False), metavar="DIR",
              help="Folder of the backups (default: the database's folder); the current state is backed up there first.")
@click.option("--keep-backups", default=3, show_default=True, type=click.IntRange(min=1), metavar="N",
              help="Keep the newest N backups of this database in the backup folder.")
@click.option("--other-database", is_flag=True,
              help="Restore --backup FILE although it is not a backup of --db (another database's backup, or any "
                   "SQLite file); without it such a file is refused, naming whose it is.")
@click.option("--list", "list_only", is_flag=True,
              help="Restore nothing: list the backups of --db in the backup folder, newest first (time, size, "
                   "whose), and the other database's backups there under the same name.")
@click.option("--json", "as_json", is_flag=True, help="With --list: print the list as JSON.")
def restore(db, backup_file, backup_dir, keep_backups, other_database, list_only, as_json):
    """Put a backup back into the database, after backing up its current state."""
    # restore is rare: its module loads only here
    from .migrate import backup as backups
    if _is_postgresql(db):
        raise _Abort("--db %s: PostgreSQL has no file backup to restore (schemagen makes none there: apply runs in "
                     "one transaction); use the server's own backups (pg_dump, PITR)" % _shown(db))
    if list_only or as_json:
        if not list_only or backup_file is not None or other_database:
            raise _Abort("--list lists the backups and restores nothing: it takes --db and --backup-dir (and --json) "
                         "only" if list_only else "--json goes with --list")
        if backup_dir is not None and not os.path.isdir(backup_dir):
            raise _Abort("--backup-dir %r: no such folder" % backup_dir)
        data, text = backups.listing(db, backup_dir)
        if as_json:
            import json  # see _describe_plan
            from .check.documents import VERSION  # see _describe_plan
            click.echo(json.dumps(dict(data, version=VERSION), indent=2, sort_keys=True))
        else:
            click.echo(text)
        return
    try:
        result = backups.restore(db, backup=backup_file, backup_dir=backup_dir, keep=keep_backups,
                                 other_database=other_database, commit_section=lambda: _Interrupts.commit(db))
    except SchemagenError as exc:
        _fail(exc)
    whose = {"own": "", "unrecorded": " (an older backup with no record, taken as this database's by its name)",
             "other": " (not a backup of %s: %s; --other-database)" % (
                 db, "a backup of %s" % result.of if result.of else "no record of its database")}[result.whose]
    click.echo("restored %s from %s%s; its state before the restore is in %s" % (
        db, result.restored_from, whose, result.backup))


@main.command(epilog=EXIT_CODES_HELP)
@click.option("--from", "source", required=True, type=DB_PATH, metavar="SQLITE_PATH",
              help="SQLite database file that matches the declaration (only read, in one snapshot).")
@click.option("--to", "url", required=True, metavar="POSTGRES_URL",
              help="postgresql:// URL of the target: its declared tables must be empty, or absent (then the "
                   "declaration is applied first, in the same transaction).")
@click.option("--orphans", type=click.Choice(["refuse", "not-valid"]), default="refuse", show_default=True,
              help="Rows breaking a foreign key in the source: refuse (name them, change nothing) or keep them and "
                   "leave that key NOT VALID.")
@click.option("--lock-timeout", default="5s", show_default=True, metavar="DURATION",
              help="How long to wait for a lock on the target before the transfer is rolled back (exit 2).")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object: counts, checksums and timings.")
@schema_option
def transfer(source, url, orphans, lock_timeout, as_json, schema_spec):
    """Move an SQLite database's rows into PostgreSQL, all or nothing, verified by counts and checksums."""
    if not _is_postgresql(url):
        raise _Abort("--to must be a postgresql:// or postgres:// URL")
    try:
        from .pg import apply as pg, transfer as pg_transfer  # psycopg: only the PostgreSQL path imports it
    except ImportError as exc:
        raise _Abort("PostgreSQL needs psycopg (%s): pip install 'schemagen[postgresql]'" % exc) from None
    decl = _declaration(schema_spec)
    _refuse_foreign(decl, source)
    target = _target(decl)
    tty = sys.stderr.isatty()

    def progress(event, table, rows=0, total=0, seconds=0.0):
        if not tty:
            return
        if event == "phase":
            click.echo("  %s ..." % table, err=True)
        elif event in ("copy", "done"):
            click.echo("  %-16s %9d / %d rows  %6.2fs  %s rows/s%s" % (
                table, rows, total, seconds, int(rows / seconds) if seconds > 0 else "-",
                "  done" if event == "done" else ""), err=True)
    try:
        result = pg_transfer.transfer(source, url, target.structure, pg.compiled_for(decl), orphans=orphans,
                                      lock_timeout=lock_timeout, progress=progress)
    except SchemagenError as exc:
        _fail(exc)
    if as_json:
        import json  # see _describe_plan
        from .check.documents import VERSION  # see _describe_plan
        click.echo(json.dumps(dict(result.as_dict(), version=VERSION), indent=2, sort_keys=True))
    else:
        click.echo(pg_transfer.format_result(result))


@main.command(epilog=EXIT_CODES_HELP)
@click.option("--db", "db", required=True, type=DB_PATH, help="SQLite database file (only read, unless --record).")
@click.option("--record", "names", multiple=True, metavar="NAME",
              help="Mark the data step NAME done without running it (repeat for several); with --schema, a name "
                   "the declaration does not declare is refused.")
@click.option("--json", "as_json", is_flag=True, help="Print the records as a JSON list.")
@click.option("--schema", "schema_spec", default=None, metavar="SPEC",
              help="With --record: the declaration whose data steps are marked (its name goes in the record).")
def history(db, names, as_json, schema_spec):
    """Show what apply recorded in the database (_schemagen_history); it needs no declaration."""
    from .migrate import history as h  # only this command reads the history
    try:
        if _is_postgresql(db):
            from .pg import history as h  # noqa: F811 (the same two functions, on PostgreSQL)
        if names:
            if _is_postgresql(db):
                target = _schema(_declaration(schema_spec)) if schema_spec is not None else None
            else:
                target = _target(_declaration(schema_spec)) if schema_spec is not None else None
            marked = h.record_by_hand(db, list(names), target)
            click.echo("%s: recorded as done without running: %s" % (_shown(db), ", ".join(marked)) if marked else
                       "%s: already done: %s; nothing was changed" % (_shown(db), ", ".join(names)))
            return
        records = h.read_history(db)
    except ImportError as exc:
        raise _Abort("PostgreSQL needs psycopg (%s): pip install 'schemagen[postgresql]'" % exc) from None
    except SchemagenError as exc:
        _fail(exc)
    if as_json:
        import json  # see _describe_plan
        click.echo(json.dumps(records, indent=2, sort_keys=True))
        return
    if not records:
        click.echo("%s: no history (schemagen records one for a declaration with data steps or history=True)" %
                   _shown(db))
        return
    for r in records:
        what = ("%s: %s" % (r["kind"], plural(len(r["steps"]), "step")) if r["kind"] == "apply" else r["kind"])
        click.echo("%s  %s  '%s' (sha256 %s, schemagen %s)" % (r["applied_at"], what, r["declaration"],
                                                              r["declaration_sha256"][:12], r["schemagen_version"]))
        if r["data_steps_run"]:
            click.echo("    data steps run: %s" % ", ".join(r["data_steps_run"]))
        if r["data_steps_recorded"]:
            click.echo("    data steps recorded as done without running: %s" % ", ".join(r["data_steps_recorded"]))
        if r["backup"]:
            click.echo("    backup: %s" % r["backup"])


if __name__ == "__main__":  # pragma: no cover
    main()
