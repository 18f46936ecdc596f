"""The exceptions schemagen raises for expected failures.

Every message is one line that names the object, what was expected and what
was found. The CLI turns SchemagenError into a one-line error and exit code 2
(or 1 for a failed validation); nothing prints a traceback for these.
"""


class SchemagenError(Exception):
    """Base of every expected schemagen failure."""

    exit_code = 2


class DeclarationError(SchemagenError):
    """The declared schema is impossible; carries every problem found."""

    def __init__(self, problems):
        self.problems = tuple(problems)
        super().__init__("invalid schema declaration: " + "; ".join(self.problems))


class StaleFiles(SchemagenError):
    """The project's rendered files do not match its declaration: run schemagen render."""


class DatabaseFileError(SchemagenError):
    """The database path is not a usable SQLite file (missing folder, directory, not SQLite, read-only, locked)."""


class ApplyError(SchemagenError):
    """A statement failed while applying; the transaction was rolled back."""


class UnsafeMigrationError(SchemagenError):
    """The migration would lose or invent data, so nothing was changed."""


class ValidationFailed(SchemagenError):
    """The database does not match the declaration."""

    exit_code = 1


class QueryRefused(SchemagenError):
    """A query given for EXPLAIN is not exactly one SELECT (or WITH ... SELECT) statement."""
