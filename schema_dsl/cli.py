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
import stat
import sys
import time

import click

from . import dialects
from .dialects.several import run_each
from .errors import EXIT_CHANGED_THEN_FAILED, EXIT_INTERRUPTED, EXIT_PROBLEMS, EXIT_REFUSED, Declined, SchemagenError
from .version import __version__
from .words import plural

class _Path(click.ParamType):
    """click.Path, built when a value is converted: click.Path's constructor looks up gettext translations
    (and imports locale), about 1 ms of every command's start-up for a dozen options that are rarely given.
    A path click.Path takes as it is (missing, or of an accepted kind and readable: its only checks for these
    options) is returned without building it: --db is given to every apply."""

    name = "path"

    def __init__(self, **options):
        self.options = dict(options, path_type=str)

    def convert(self, value, param, ctx):
        if isinstance(value, str) and self._taken_as_is(value):
            return value
        return click.Path(**self.options).convert(value, param, ctx)  # its own checks and error messages

    def _taken_as_is(self, value):
        options = self.options
        if any(options.get(k) for k in ("exists", "writable", "executable", "resolve_path")) or \
                options.get("readable") is False:
            return False
        try:
            st = os.stat(value)
        except OSError:
            return True
        if (not options.get("file_okay", True) and stat.S_ISREG(st.st_mode)) or \
                (not options.get("dir_okay", True) and stat.S_ISDIR(st.st_mode)):
            return False
        return os.access(value, os.R_OK)

    def get_metavar(self, *args, **kwargs):
        return "DIRECTORY" if self.options.get("file_okay") is False else \
            "FILE" if self.options.get("dir_okay") is False else "PATH"


DB_PATH = _Path(dir_okay=True, file_okay=True)


def _one_db(ctx, param, values):
    """--db of a command that works on one database: given twice it is refused, not dropped (click keeps only the
    last value of an option, so `plan --db a.db --db b.db` planned b.db alone and said nothing of a.db)."""
    if len(values) > 1:
        raise click.BadParameter("given %d times (%s); %s works on one database: run it once for each" % (
            len(values), ", ".join(dialects.shown(v) for v in values), ctx.info_name))
    return values[0] if values else None


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
        done = [dialects.shown(db) for db in cls.committed]
        if not done:
            return "interrupted; nothing was changed", EXIT_INTERRUPTED
        if at is not None and dialects.shown(at) not in done:
            return ("interrupted at %s, nothing changed there; already committed: %s" % (
                dialects.shown(at), ", ".join(done)), EXIT_CHANGED_THEN_FAILED)
        return ("interrupted after the change to %s was committed; run `schemagen validate --db %s`" % (
            ", ".join(done), done[-1]), EXIT_CHANGED_THEN_FAILED)


class _HelpOption:
    """click's --help option with its text given: click's own looks the text up in gettext's catalogues on every
    command (importing locale and searching the file system: about 2 ms of every start-up)."""

    def get_help_option(self, ctx):
        names = self.get_help_option_names(ctx)
        if not names or not self.add_help_option:
            return None
        if getattr(self, "_own_help_option", None) is None:  # one object per command, as click 8.1.8+ keeps it
            def show_help(ctx, param, value):
                if value and not ctx.resilient_parsing:
                    click.echo(ctx.get_help(), color=ctx.color)
                    ctx.exit()
            storage = getattr(click.core, "_HELP_OPTION_STORAGE_NAME", None)  # click 8.5 keeps it off user names
            self._own_help_option = click.Option(
                [*names, storage] if storage else names, is_flag=True, expose_value=False, is_eager=True,
                help="Show this message and exit.", callback=show_help)
        return self._own_help_option


class _Command(_HelpOption, click.Command):
    pass


class _Group(_HelpOption, click.Group):
    """Every error in one style, Click's usage errors and Ctrl-C included."""

    command_class = _Command

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
    from .compile.project import origin, render_dialects
    decl = _declaration(schema_spec)
    out_dir = _out_dir(decl, out_dir)
    names = render_dialects(decl, out_dir, dialect)
    render_files = dialects.renderer(names)
    try:
        files = render_files(_schema(decl), origin(decl))
    except SchemagenError as exc:
        _fail(exc)
    from . import outfiles  # checking and writing files
    if check:
        stale = outfiles.stale(out_dir, files, dialects.folders(names))
        if stale:
            for line in stale:
                click.echo("stale: %s" % line, err=True)
            raise _Abort("%s stale for %s; run `%s`" % (plural(len(stale), "generated file is", "generated files are"), decl.label, decl.render_command), 1)
        click.echo("%s is up to date (%s)" % (out_dir, plural(len(files), "file")))
        return
    written = 0
    try:
        outfiles.make_folder(out_dir, "--out")
        for folder in dialects.folders(names):
            if folder:
                outfiles.make_folder(os.path.join(out_dir, folder.rstrip("/")), "--out")
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


@main.command()
@click.option("--db", "db", required=True, multiple=True, callback=_one_db, type=DB_PATH,
              help="SQLite database file (need not exist yet).")
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
    if sql_file not in (None, "-"):  # an output path is refused before anything starts, the declaration included
        from . import outfiles  # writing files: only the commands that write need it
        try:
            outfiles.check_file(sql_file, "--sql", databases=dialects.files([db]))
        except SchemagenError as exc:
            _fail(exc)
    if sql_file is not None and online:
        raise _Abort("plan --sql --online: an online migration is many transactions run and retried by schemagen, "
                     "not one script; use plan --online to see its steps")
    _refuse_options([db])
    declared = _declared(schema_spec, [db])
    dialect, prune = dialects.for_db(db), _prune_mode(prune, allow_data_loss)
    try:
        if sql_file is not None:
            text = dialect.export_script(db, declared, prune=prune, concurrently=concurrently)
            if sql_file != "-":
                outfiles.write_text(sql_file, text, "--sql")
        else:
            shown = dialect.plan_online(db, declared, prune=prune) if online else \
                dialect.plan(db, declared, prune=prune, concurrently=concurrently)
    except SchemagenError as exc:
        _fail(exc)
    if sql_file is None:
        click.echo(shown.json() if as_json else shown.text())
    elif sql_file == "-":
        click.echo(text, nl=False)
    else:
        click.echo(dialect.script_written(sql_file))


@main.command(epilog=EXIT_CODES_HELP)
@click.argument("from_side", metavar="FROM")
@click.argument("to_side", metavar="TO")
@click.option("--db", "db", multiple=True, callback=_one_db, type=DB_PATH,
              help="Count the rows the change's new constraints and NOT NULLs would refuse in this database, and "
                   "estimate each rebuild's write-lock time from its rows (only read).")
@click.option("--json", "as_json", is_flag=True, help="Print everything as one JSON object.")
@click.option("--strict", is_flag=True, help="For CI: exit 1 when the change loses data, apply would refuse it, or "
                                              "rows in --db would violate a new constraint.")
def diff(from_side, to_side, db, as_json, strict):
    """Compare two declarations (SPEC, '.' for the working tree, or a git revision) and lint the change."""
    # diff builds both declarations and plans between them: only this command needs it
    from .check.declaration_diff import diff_declarations, format_text, read_side, strict_failure, to_document
    if db is not None:
        _refuse_command(db, "diff")
    try:
        result = diff_declarations(read_side(from_side), read_side(to_side), db=db)
    except SchemagenError as exc:
        _fail(exc)
    if as_json:
        import json  # see plan
        click.echo(json.dumps(to_document(result), indent=2, sort_keys=True))
    else:
        click.echo(format_text(result))
    failure = strict_failure(result) if strict else None
    if failure:
        click.echo("error: %s" % failure, err=True)
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
    _refuse_options(dbs)
    if no_validate:  # each of these asks for the report --no-validate skips: refused, never silently dropped
        for given, option, what in ((report_path, "--report", "would write"), (verbose, "--verbose", "would show in full"),
                                    (check_data, "--check-data", "would add its checks to"),
                                    (full_integrity, "--full-integrity", "would add its checks to")):
            if given:
                raise _Abort("%s: --no-validate skips the validation report it %s; give one or the other, nothing "
                             "was changed" % (option, what))
    reports = _report_paths(dbs, report_path)  # before anything changes: a bad --report must not fail after COMMIT
    declared = _declared(schema_spec, dbs, prepare=True)
    options = dict(backup=not no_backup, backup_dir=backup_dir, keep_backups=keep_backups, check_data=check_data,
                   full_integrity=full_integrity, lock_timeout=lock_timeout, statement_timeout=statement_timeout,
                   prune=_prune_mode(prune, allow_data_loss), allow_data_loss=allow_data_loss, confirm=_confirm(yes),
                   concurrently=concurrently, online=online, as_json=as_json, no_validate=no_validate)

    def one(db, report_path):
        progress = _Progress(sys.stderr)
        try:
            applied = dialects.for_db(db).apply(db, declared, progress=progress,
                                                commit_section=lambda: _Interrupts.commit(db), **options)
        except SchemagenError as exc:
            progress.close()
            _fail(exc)
        finally:
            progress.close()
        # From here on the change is committed: a failure or Ctrl-C says so and exits 3.
        try:
            for line in applied.lines:
                click.echo(line)
            if no_validate:
                if as_json:
                    from .check.validate import to_json  # --json only
                    _Json.emit(dict(applied.done, validated=False, report=None), to_json)
                else:
                    click.echo("validation skipped (--no-validate): run `schemagen validate --db %s`" %
                               applied.database)
                return
            try:
                report = applied.report(_Working)
            except SchemagenError as exc:
                _fail(exc)
            _show_report(report, as_json, report_path, verbose, applied.done)
        except _Abort as exc:
            if applied.applied and exc.exit_code == EXIT_REFUSED:
                raise _Abort("the change to %s is committed, then: %s" % (applied.database, exc.format_message()),
                             EXIT_CHANGED_THEN_FAILED) from None
            raise
    _for_each_db(dbs, reports, one, as_json)


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


def _refuse_options(dbs):
    """Refuse (exit 2, one line naming it) an option of one engine given on the command line when no --db is of
    that engine (each dialect declares the options it does not take): an option is never silently ignored."""
    ctx = click.get_current_context()
    given = {}
    for param in ctx.command.params:
        source = ctx.get_parameter_source(param.name)
        if source is not None and source.name in ("COMMANDLINE", "ENVIRONMENT"):
            given[param.name] = param.opts[0]
    message = dialects.refused_option(dbs, given)
    if message:
        raise _Abort(message)


def _declared(spec, dbs, prepare=False):
    """The command's declaration, refused on a --db of an engine the project does not list (dialects.declare)."""
    decl = _declaration(spec)
    try:
        return dialects.declare(decl, dbs, prepare=prepare)
    except SchemagenError as exc:
        _fail(exc)


def _refuse_command(db, command):
    """A command that the --db's engine does not run: one line, exit 2."""
    try:
        dialects.for_db(db).refuse(command, db)
    except SchemagenError as exc:
        _fail(exc)


def _check_report_path(report_path, dbs=()):
    """One line and exit 2 before starting when --report cannot be written as a regular file, or is a database."""
    if report_path:
        from . import outfiles  # see render
        try:
            outfiles.check_file(report_path, "--report", databases=dialects.files(dbs))
        except SchemagenError as exc:
            _fail(exc)


def _show_report(report, as_json, report_path, verbose=False, done=None):
    """The validation report of either engine (one shape: check/validate.py): the summary, the full text
    (--verbose), --json (with apply's `done`: its document), and the --report Markdown file; exit 1 unless ok."""
    from .check.validate import format_markdown, format_summary, format_text, to_json  # the report's text and JSON
    if as_json:
        from .check import documents  # --json only: one document shape on both engines
        _Json.emit(documents.validate(report) if done is None else dict(done, validated=True, report=report), to_json)
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
    _refuse_options(dbs)
    reports = _report_paths(dbs, report_path)
    declared = _declared(schema_spec, dbs, prepare=True)

    def one(db, path):
        try:
            report = dialects.for_db(db).validate(db, declared, full_integrity=full_integrity, working=_Working)
        except SchemagenError as exc:
            _fail(exc)
        _show_report(report, as_json, path, verbose)
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


class _Json:
    """A command's --json document: printed, or with several --db handed to the runner, which prints them as one
    list (collected: the documents of the database being run)."""

    collected = None

    @classmethod
    def emit(cls, document, dumps):
        if cls.collected is not None:
            cls.collected.append(document)
        else:
            click.echo(dumps(document))

    @classmethod
    def start(cls, as_json):
        cls.collected = [] if as_json else None

    @classmethod
    def take(cls):
        collected, cls.collected = cls.collected, None
        return collected


def _for_each_db(dbs, reports, run_one, as_json):
    """Run one command per database (dialects/several.py): one file, exactly the single-file behaviour; several,
    each file's output, then the summary table or the --json list, and the worst exit code."""
    ran = run_each(dbs, reports, run_one, as_json=as_json, echo=click.echo, documents=_Json,
                   committed=_Interrupts.committed, expected=(click.ClickException,),
                   interrupts=(KeyboardInterrupt, click.exceptions.Abort), on_interrupt=_Interrupts.ignore)
    if ran is None:
        return
    click.echo(ran.json() if as_json else ran.summary())
    if ran.interrupted is not None:  # the run's answer: 3 when any file was committed, else 130
        text, code = _Interrupts.message(at=ran.interrupted)
        click.echo("error: %s" % text, err=True)
        sys.exit(code)
    sys.exit(ran.exit_code())


@main.command()
@click.option("--db", "db", required=True, multiple=True, callback=_one_db, type=DB_PATH,
              help="SQLite database file to explain the queries on (only read).")
@click.option("--json", "as_json", is_flag=True, help="Print a JSON list, one object per serves-query.")
@click.option("--sample-rows", type=click.IntRange(min=1), default=None, metavar="N",
              help="Explain on a scratch copy with N generated rows per table and ANALYZE; the database is not changed.")
@strict_option
@schema_option
def explain(db, as_json, sample_rows, strict, schema_spec):
    """Show, by EXPLAIN QUERY PLAN, whether each declared index serves its query."""
    _refuse_options([db])
    declared = _declared(schema_spec, [db])
    try:
        shown = dialects.for_db(db).explain(db, declared, sample_rows=sample_rows, working=_Working)
        click.echo(shown.json() if as_json else shown.text())
        if strict is not None:
            _exit_if_strict(strict, shown.severities())
    except SchemagenError as exc:
        _fail(exc)


@main.command()
@click.option("--db", "db", multiple=True, callback=_one_db, type=DB_PATH,
              help="Also report what this database shows: missing statistics, plans that skip their index (only read).")
@click.option("--json", "as_json", is_flag=True, help="Print a JSON list of findings.")
@strict_option
@schema_option
def lint(db, as_json, strict, schema_spec):
    """Report design findings in the declaration; never changes an index."""
    from .analysis.lint import format_text, to_json  # the findings' text and JSON, on both engines
    dbs = [db] if db is not None else []
    _refuse_options(dbs)
    declared = _declared(schema_spec, dbs)
    try:
        findings = dialects.for_db(db).lint(db, declared)
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
@click.option("--db", "db", required=True, multiple=True, callback=_one_db, type=DB_PATH,
              help="SQLite database file to read (only read).")
@click.option("--out", "out_file", default=None, type=_Path(dir_okay=False),
              help="Write the declaration to this .py file (default: print it).")
@click.option("--name", "schema_name", default=None, help="The schema's name (default: the file's stem).")
@click.option("--keep-user-version", "keep_versions", is_flag=True,
              help="Declare the file's user_version and application_id, so apply and validate hold them at these "
                   "values. Default: leave them to the application (written as comments).")
def inspect(db, out_file, schema_name, keep_versions):
    """Write a declaration (a Python file) of an existing database's structure."""
    _refuse_command(db, "inspect")
    from . import outfiles  # see render
    try:
        if out_file is not None:
            outfiles.check_file(out_file, "--out", databases=[db])
        text, settings = dialects.for_db(db).inspect(db, name=schema_name, keep_versions=keep_versions)
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
@click.option("--db", "db", required=True, multiple=True, callback=_one_db, type=DB_PATH,
              help="SQLite database file to put the backup back into.")
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
    _refuse_command(db, "restore")
    if list_only or as_json:
        if not list_only or backup_file is not None or other_database:
            raise _Abort("--list lists the backups and restores nothing: it takes --db and --backup-dir (and --json) "
                         "only" if list_only else "--json goes with --list")
        if backup_dir is not None and not os.path.isdir(backup_dir):
            raise _Abort("--backup-dir %r: no such folder" % backup_dir)
        data, text = dialects.for_db(db).list_backups(db, backup_dir)
        if as_json:
            import json  # --json only
            from .check.documents import VERSION  # --json only
            click.echo(json.dumps(dict(data, version=VERSION), indent=2, sort_keys=True))
        else:
            click.echo(text)
        return
    try:
        result = dialects.for_db(db).restore(db, backup=backup_file, backup_dir=backup_dir, keep=keep_backups,
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
    destination = dialects.for_db(url)
    try:
        destination.receives_transfer()
    except SchemagenError as exc:
        _fail(exc)
    declared = _declared(schema_spec, [])
    try:
        dialects.for_db(source).refuse_foreign(source, declared)
        declared.target()
    except SchemagenError as exc:
        _fail(exc)
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
        shown = destination.transfer(source, url, declared, orphans=orphans, lock_timeout=lock_timeout,
                                     progress=progress)
    except SchemagenError as exc:
        _fail(exc)
    click.echo(shown.json() if as_json else shown.text())


@main.command(epilog=EXIT_CODES_HELP)
@click.option("--db", "db", required=True, multiple=True, callback=_one_db, type=DB_PATH,
              help="SQLite database file (only read, unless --record).")
@click.option("--record", "names", multiple=True, metavar="NAME",
              help="Mark the data step NAME done without running it (repeat for several); with --schema, a name "
                   "the declaration does not declare is refused.")
@click.option("--json", "as_json", is_flag=True, help="Print the records as a JSON list.")
@click.option("--schema", "schema_spec", default=None, metavar="SPEC",
              help="With --record: the declaration whose data steps are marked (its name goes in the record).")
def history(db, names, as_json, schema_spec):
    """Show what apply recorded in the database (_schemagen_history); it needs no declaration."""
    dialect = dialects.for_db(db)
    try:
        if names:
            declared = _declared(schema_spec, []) if schema_spec is not None else None
            marked = dialect.record_by_hand(db, list(names), declared)
            click.echo("%s: recorded as done without running: %s" % (dialects.shown(db), ", ".join(marked)) if marked
                       else "%s: already done: %s; nothing was changed" % (dialects.shown(db), ", ".join(names)))
            return
        records = dialect.read_history(db)
    except SchemagenError as exc:
        _fail(exc)
    if as_json:
        import json  # --json only
        click.echo(json.dumps(records, indent=2, sort_keys=True))
        return
    if not records:
        click.echo("%s: no history (schemagen records one for a declaration with data steps or history=True)" %
                   dialects.shown(db))
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
