"""Open a database read-write (never creating it) and build its validation report."""
from __future__ import annotations

import sqlite3

from ..sqlite import dbfile
from ..migrate.apply import connection_pragmas
from ..errors import DatabaseFileError
from ..compile.target import target_for
from .validate import validation_report


def build_report(path, schema=None, files=None, full_integrity=False, findings=None, actual=None, applied=None):
    """The validation report of the database at path, on a connection with the declared PRAGMAs set.

    actual: the structure apply verified before its COMMIT, so that it is not read and parsed twice.
    applied: apply's own foreign key check (ApplyResult.foreign_key_check): the whole-file data checks
    are then left to `schemagen validate` (see validate.validation_report).
    """
    target = target_for(schema, files)
    conn = dbfile.open_existing(path, "rw")  # a read-only file still validates
    try:
        for stmt in connection_pragmas(target.files, persistent=target.persistent_pragmas):
            conn.execute(stmt)
        if findings is None:
            findings = target.findings(conn)
        return validation_report(conn, target, path=path, full_integrity=full_integrity, findings=findings,
                                 actual=actual, applied=applied)
    except sqlite3.Error as exc:
        raise DatabaseFileError(dbfile.describe_sqlite_error(path, exc)) from None
    finally:
        conn.close()

