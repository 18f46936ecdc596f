"""Open a database read-write (never creating it) and build its validation report."""
from __future__ import annotations

import sqlite3

from . import dbfile
from .apply import _uri_path, connection_pragmas
from .errors import DatabaseFileError
from .target import target_for
from .validate import validation_report


def build_report(path, schema=None, files=None, full_integrity=False, findings=None, actual=None, applied=None):
    """The validation report of the database at path, on a connection with the declared PRAGMAs set.

    actual: the structure apply verified before its COMMIT, so that it is not read and parsed twice.
    applied: apply's own foreign key check (ApplyResult.foreign_key_check): the whole-file data checks
    are then left to `schemagen validate` (see validate.validation_report).
    """
    target = target_for(schema, files)
    dbfile.check_path(path, write=False)
    try:
        conn = sqlite3.connect("file:%s?mode=rw" % _uri_path(path), uri=True, isolation_level=None, timeout=5.0)
    except sqlite3.Error as exc:
        # a read-only file still validates
        try:
            conn = sqlite3.connect("file:%s?mode=ro" % _uri_path(path), uri=True, isolation_level=None, timeout=5.0)
        except sqlite3.Error:
            raise DatabaseFileError(dbfile.describe_sqlite_error(path, exc)) from None
    try:
        for stmt in connection_pragmas(target.files):
            conn.execute(stmt)
        if findings is None:
            findings = target.findings(conn)
        return validation_report(conn, target, path=path, full_integrity=full_integrity, findings=findings,
                                 actual=actual, applied=applied)
    except sqlite3.Error as exc:
        raise DatabaseFileError(dbfile.describe_sqlite_error(path, exc)) from None
    finally:
        conn.close()

