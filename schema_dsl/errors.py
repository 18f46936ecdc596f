"""The exceptions schemagen raises for expected failures, and the exit codes every command shares.

Every message is one line that names the object, what was expected and what
was found. The CLI turns SchemagenError into a one-line error and its
exit_code; nothing prints a traceback for these.

Exit codes, the same for every command:
  0  done, everything valid
  1  done, but checks found problems (orphans already in the data, stale files
     for `render --check`, findings under `--strict`)
  2  refused or usage error; nothing changed (a declined confirmation included)
  3  changed, then a later step failed or was interrupted (the change is committed)
  130  interrupted (Ctrl-C) before anything changed
"""

EXIT_OK, EXIT_PROBLEMS, EXIT_REFUSED, EXIT_CHANGED_THEN_FAILED, EXIT_INTERRUPTED = 0, 1, 2, 3, 130


class SchemagenError(Exception):
    """Base of every expected schemagen failure."""

    exit_code = EXIT_REFUSED


class DeclarationError(SchemagenError):
    """The declared schema is impossible; carries every problem found."""

    def __init__(self, problems):
        self.problems = tuple(problems)
        super().__init__("invalid schema declaration: " + "; ".join(self.problems))


class StaleFiles(SchemagenError):
    """The project's rendered files do not match its declaration: run schemagen render."""


class DatabaseFileError(SchemagenError):
    """The database path is not a usable SQLite file (missing folder, directory, not SQLite, read-only, locked)."""


class OutputPathError(SchemagenError):
    """An output path (--out, --report) cannot be written as a regular file; nothing was written."""


class ApplyError(SchemagenError):
    """A statement failed while applying; the transaction was rolled back."""


class UnsafeMigrationError(SchemagenError):
    """The migration would lose or invent data, so nothing was changed."""


class Declined(SchemagenError):
    """A plan that loses data was not confirmed (no --yes off a terminal, or the user said no)."""


class ChangedThenFailed(SchemagenError):
    """The change was committed, then a later step failed or was interrupted."""

    exit_code = EXIT_CHANGED_THEN_FAILED


class ValidationFailed(SchemagenError):
    """The database does not match the declaration."""

    exit_code = EXIT_PROBLEMS


class QueryRefused(SchemagenError):
    """A query given for EXPLAIN is not exactly one SELECT (or WITH ... SELECT) statement."""


class NotOnThisEngine(SchemagenError, NotImplementedError):
    """A Database method that has no meaning on the database's engine (e.g. `files` on PostgreSQL, which has no
    rendered DDL files): one line naming the method, the engine and what to use instead."""
