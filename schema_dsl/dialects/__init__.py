"""The dialect registry: one rule picks the engine of a --db value, and each engine answers the same operations.

    dialect = for_db(db)    # SQLite for a file path, PostgreSQL for a postgresql:// or postgres:// URL

`Dialect` is the interface (Atlas's Driver, Alembic's DefaultImpl): plan, plan_online, export_script, apply
(plain and online), validate, explain, lint, read_history and record_by_hand, refuse_foreign, and what the
engine does not take (`refused_options`, `refused_commands`: an option or command the engine has no meaning for
is refused in one line naming it, never silently ignored). dialects/sqlite.py and dialects/postgresql.py override
what differs. Every operation takes the command's `Declared`: the declaration resolved once, its Target,
model and compiled forms built at most once for every --db of the command.

Import time: this module needs the standard library only, and for_db imports the one dialect a value names;
PostgreSQL's (and through it pg/ and psycopg) is imported only for a URL, so apply on SQLite loads none of it.
"""
from __future__ import annotations

from ..errors import SchemagenError

SCHEMES = ("postgresql://", "postgres://")


def is_postgresql(db):
    """Whether a --db value (or Database's db_path) selects PostgreSQL: a postgresql:// or postgres:// URL."""
    return isinstance(db, str) and db.lower().startswith(SCHEMES)


def name_of(db):
    """The dialect's name for a --db value: "postgresql" or "sqlite"."""
    return "postgresql" if is_postgresql(db) else "sqlite"


def shown(db):
    """A --db value as output shows it: a PostgreSQL URL with its password masked."""
    if not is_postgresql(db):
        return db
    from ..pg.url import mask  # standard library only; PostgreSQL URLs only
    return mask(db)


def files(dbs):
    """The --db values that name files (not PostgreSQL URLs): an output path must not be one of them."""
    return [db for db in dbs if not is_postgresql(db)]


_DIALECTS = {}


def for_db(db):
    """The dialect of a --db value (None: a command without a database, which works on the declaration alone,
    gets SQLite's, the default engine). One instance per dialect."""
    return _named(name_of(db))


def _named(name):
    if name not in _DIALECTS:
        if name == "postgresql":
            from .postgresql import PostgreSQL as dialect  # pg/ and psycopg: only for a PostgreSQL URL
        else:
            from .sqlite import SQLite as dialect  # SQLite's operations (migrate/, check/)
        _DIALECTS[name] = dialect()
    return _DIALECTS[name]


def renderer(names=("sqlite",)):
    """render(schema, origin) for these dialects: every file render writes, {path relative to the out folder: text},
    each dialect's renderer writing into its folder (SQLite's at the top, PostgreSQL's under postgresql/). The
    renderers are imported here, before the declaration is loaded: what loading imports first counts as the
    declaration's source (compile/project.py's source hash)."""
    chosen = [_named(name) for name in ("sqlite", "postgresql") if name in names]
    for dialect in chosen:
        dialect.renderer()

    def render(schema, origin=None):
        files = {}
        for dialect in chosen:
            files.update({dialect.folder + path: text for path, text in dialect.renderer()(schema, origin).items()})
        return files
    return render


def folders(names):
    """The folders, relative to the out folder, render writes for these dialects ("" is the out folder itself)."""
    return [_named(name).folder for name in ("sqlite", "postgresql") if name in names]


def refused_option(dbs, given):
    """The one line refusing an option that no --db's engine takes (an option of one engine, given when every
    --db is of the other), or None. given: the names of the options given on the command line, as click names
    its parameters, mapped to how the user spelled them."""
    engines = [for_db(db) for db in dbs]
    for name, spelled in given.items():
        reasons = [d.refused_options.get(name) for d in engines]
        if reasons and all(reasons):
            return "%s: %s; --db %s is %s, nothing was changed" % (spelled, reasons[0], shown(dbs[0]),
                                                                   engines[0].label)
    return None


class Declared:
    """The command's declaration (compile/project.py's resolved Declaration), with what the dialects build from it,
    each at most once per command: the SQLite Target, the model, PostgreSQL's compiled declaration."""

    def __init__(self, decl):
        self.decl = decl
        self._built = {}

    @property
    def guard(self):
        """The fallback to the shipped declaration never lands on another application's database."""
        return "shipped" if self.decl.shipped and not self.decl.explicit else None

    def once(self, what, build):
        """build(decl), the first time `what` is asked for in this command; the same value after that."""
        if what not in self._built:
            self._built[what] = build(self.decl)
        return self._built[what]

    def target(self):
        """The Target SQLite applies and checks against (the project's rendered files must not be stale)."""
        from ..compile.project import target  # the rendered files: SQLite's commands only
        return self.once("target", target)

    def schema(self):
        """The declaration as the model (lint, explain, PostgreSQL's planner)."""
        from ..compile.project import load_schema  # builds the model: not on a fresh apply's path
        return self.once("schema", load_schema)


def declare(decl, dbs, prepare=False):
    """The command's Declared, after refusing a --db of an engine the project does not list ([tool.schemagen]
    dialects). prepare: build what each engine of dbs needs before the first database is touched (apply and
    validate: a stale generated/ refuses the whole run, once)."""
    from ..compile.project import refuse_dialect  # the project's dialects
    for db in dbs:
        refuse_dialect(decl, name_of(db), "--db %s" % shown(db))
    declared = Declared(decl)
    if prepare:
        for name in sorted({name_of(db) for db in dbs}, reverse=True):  # sqlite first, as before
            _named(name).prepare(declared)
    return declared


class Dialect:
    """One engine's operations, each on one database (a path or a URL) and the command's Declared. The base says
    what every engine shares; an engine that has no meaning for an operation refuses it in one line."""

    name = ""
    label = ""  # how a --db of this engine is named in a message
    refused_options = {}  # a command-line option (click's parameter name) this engine does not take -> why
    refused_commands = {}  # a command this engine does not run -> what to do instead
    folder = ""  # where render writes this engine's files, relative to the out folder

    def renderer(self):
        """This engine's render_files(schema, origin) -> {name: text} (compile/: no side effects)."""
        raise NotImplementedError

    def database_class(self, base):
        """The class of `Database(path_or_url)` on this engine, given database.py's Database (base): base itself
        (SQLite's, which does the work in database.py), or a subclass of it doing this engine's work, so that
        isinstance(db, Database) holds and both engines answer the same methods."""
        return base

    def refuse(self, command, db):
        """Refuse (SchemagenError, exit 2, one line naming the database) a command this engine does not run."""
        why = self.refused_commands.get(command)
        if why is not None:
            raise SchemagenError("--db %s: %s" % (shown(db), why))

    def prepare(self, declared):
        """Build, before the first database, what every database of the command needs (see declare)."""

    def refuse_foreign(self, db, declared):
        """Under the fallback to the shipped declaration, refuse a database of another application (exit 2)."""
        raise NotImplementedError

    # The operations every engine answers (each returns what the CLI prints; a SchemagenError carries its exit code)

    def plan(self, db, declared, prune=None, concurrently=False):
        """What apply would do, only read: a Shown (the steps, why, their statements; --json: the plan document)."""
        raise NotImplementedError

    def plan_online(self, db, declared, prune=None):
        """What apply --online would do: a Shown (each step with the lock it takes)."""
        raise NotImplementedError

    def export_script(self, db, declared, prune=None, concurrently=False):
        """plan --sql: the script apply would run, as one text that changes nothing on another structure."""
        raise NotImplementedError

    def script_written(self, path):
        """The line that says the script was written to path and how to run it on this engine."""
        raise NotImplementedError

    def apply(self, db, declared, **options):
        """Create or migrate the database (online=True: the engine's online way); an Applied."""
        raise NotImplementedError

    def validate(self, db, declared, full_integrity=False, working=None):
        """The validation report (check/validate.py's shape, the same keys on both engines)."""
        raise NotImplementedError

    def explain(self, db, declared, sample_rows=None, working=None):
        """Whether each serves-query uses its index: a Shown with the severities explain --strict weighs."""
        raise NotImplementedError

    def lint(self, db, declared):
        """The declaration's design findings, with what the database itself shows (None: the declaration alone)."""
        raise NotImplementedError

    def read_history(self, db):
        """The records of _schemagen_history, oldest first (the same keys on both engines)."""
        raise NotImplementedError

    def record_by_hand(self, db, names, declared=None):
        """Mark data steps done without running them; returns the names newly recorded."""
        raise NotImplementedError

    def inspect(self, db, name=None, keep_versions=False):
        """(the declaration of the database as Python text, the header settings kept or left out)."""
        self.refuse("inspect", db)
        raise NotImplementedError

    def list_backups(self, db, backup_dir=None):
        """restore --list: (the document, the text)."""
        self.refuse("restore", db)
        raise NotImplementedError

    def restore(self, db, **options):
        """Put a backup back into the database."""
        self.refuse("restore", db)
        raise NotImplementedError

    def transfer(self, source, url, declared, **options):
        """Move an SQLite file's rows into this engine (schemagen transfer --to)."""
        raise SchemagenError("--to must be a postgresql:// or postgres:// URL")

    def receives_transfer(self):
        """Refuse (one line) before anything is read when transfer cannot write into this engine."""
        raise SchemagenError("--to must be a postgresql:// or postgres:// URL")

    def online_plan_document(self, plan, database, online_steps, refused=()):
        """plan --online --json, one shape on both engines: the online steps (each with the lock it takes), the
        plan's steps beneath them (check/documents.py), and what cannot run online ([] where all can)."""
        from ..check import documents  # --json only
        out = documents.plan(plan, database, self.name)
        out.update(online=True, online_steps=[{"step": s["step"], "lock": s["lock"], "mode": s.get("mode", "")}
                                              for s in online_steps],
                   refused=list(refused), up_to_date=out["up_to_date"] and not online_steps and not refused)
        return out


class Shown:
    """What an operation found or did, as a person reads it (text()) and as --json gives it (json()); explain's
    severities() are what --strict weighs. Each is built only when asked for."""

    def __init__(self, text, json, severities=list):
        self._text, self._json, self._severities = text, json, severities

    def text(self):
        return self._text()

    def json(self):
        return self._json()

    def severities(self):
        return self._severities()


class Applied:
    """What apply did on one database: the lines a person reads (lines), its --json document (done, None without
    --json), and report(working): the validation report after COMMIT (a failure there after a committed change
    raises ChangedThenFailed or exits 3 in the caller)."""

    def __init__(self, database, applied, lines, done, report):
        self.database, self.applied, self.lines, self.done, self._report = database, applied, lines, done, report

    def report(self, working):
        return self._report(working)
