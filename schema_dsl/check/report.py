"""Open a database read-write (never creating it) and build its validation report; or build the report `apply`
prints on apply's own connection (report_after_apply)."""
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


def report_after_apply(target, full_integrity=False, check_data=False):
    """The report `schemagen apply` prints, as migrate.apply's report= callable: built on apply's own connection
    once the change is committed, before it closes, from what apply read and verified in its transaction.

    The committed schema is known: the structure apply read back and compared with the declaration before COMMIT
    (ApplyResult.structure and .differences; nothing else writes to the file under apply's write lock, and the
    connection reads what was committed), so the report neither opens the file again nor reads or compares the
    structure again. What it still reads on the file: the leftovers, the counts of tables and indexes in
    sqlite_master, the persistent settings (journal_mode, set after COMMIT), the history record and the query
    plans of the serves-queries. The whole-file data checks (quick_check, a full foreign_key_check) are left to
    `schemagen validate`, unless check_data or full_integrity (apply --check-data, --full-integrity): see
    validate.validation_report's applied. `schemagen validate` reads and checks everything itself, always.
    """
    def build(conn, result):
        return report_on_connection(conn, target, result, full_integrity, check_data)
    return build


def report_on_connection(conn, target, result, full_integrity=False, check_data=False):
    """report_after_apply's report, on apply's connection (its per-connection PRAGMAs are the declared ones)."""
    applied = None if (check_data or full_integrity) else result.foreign_key_check
    return validation_report(conn, target, path=result.path, full_integrity=full_integrity,
                             findings=target.findings(conn), actual=result.structure, applied=applied,
                             differences=result.differences)
