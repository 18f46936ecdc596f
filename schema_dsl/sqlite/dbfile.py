"""Opening a database file safely: every bad path is a one-line error.

Checks run before SQLite touches the file, so a wrong path never creates or
changes anything: a missing parent folder, a directory, a file that is not
an SQLite database, a read-only file (judged by its permission bits too, since
root may write anyway), and a database locked by another connection (after
waiting busy_timeout).
"""
from __future__ import annotations

import os
import sqlite3
import stat

from ..errors import DatabaseFileError

SQLITE_HEADER = b"SQLite format 3\x00"
DEFAULT_BUSY_TIMEOUT_MS = 5000


def check_path(path, write=True):
    """Raise DatabaseFileError unless path can be opened as an SQLite database.

    Returns True when the file exists (possibly empty), False when it would be created.
    """
    path = os.fspath(path)
    label = "database %r" % path
    if os.path.isdir(path):
        raise DatabaseFileError("%s: is a directory, expected an SQLite database file" % label)
    if not os.path.exists(path):
        if not write:
            raise DatabaseFileError("%s: no such file, expected an existing SQLite database" % label)
        parent = os.path.dirname(os.path.abspath(path))
        if not os.path.isdir(parent):
            raise DatabaseFileError("%s: parent folder %r does not exist" % (label, parent))
        if not os.access(parent, os.W_OK):
            raise DatabaseFileError("%s: parent folder %r is not writable" % (label, parent))
        return False
    if not os.path.isfile(path):
        raise DatabaseFileError("%s: expected a regular file" % label)
    try:
        with open(path, "rb") as fh:
            head = fh.read(len(SQLITE_HEADER))
    except OSError as exc:
        raise DatabaseFileError("%s: cannot be read (%s)" % (label, exc.strerror)) from None
    if head and head != SQLITE_HEADER:
        raise DatabaseFileError("%s: not an SQLite database (the file does not start with the SQLite header)" % label)
    if write:
        mode = os.stat(path).st_mode
        if not os.access(path, os.W_OK) or not mode & (stat.S_IWUSR | stat.S_IWGRP | stat.S_IWOTH):
            raise DatabaseFileError("%s: file is read-only, expected a writable file" % label)
    return True


def connect(path, busy_timeout_ms=DEFAULT_BUSY_TIMEOUT_MS):
    """An autocommit connection (transactions are explicit) with busy_timeout set."""
    conn = sqlite3.connect(os.fspath(path), timeout=busy_timeout_ms / 1000.0, isolation_level=None)
    conn.execute("PRAGMA busy_timeout = %d" % int(busy_timeout_ms))
    return conn


def describe_sqlite_error(path, exc, busy_timeout_ms=DEFAULT_BUSY_TIMEOUT_MS):
    """A one-line message for an sqlite3 error met while opening or locking."""
    text = str(exc)
    if "locked" in text or "busy" in text:
        return "database %r is locked by another connection (waited %d ms): %s" % (os.fspath(path), busy_timeout_ms, text)
    if "not a database" in text or "malformed" in text:
        return "database %r: not a usable SQLite database (%s)" % (os.fspath(path), text)
    if "readonly" in text or "read-only" in text:
        return "database %r: cannot write (%s)" % (os.fspath(path), text)
    return "database %r: %s" % (os.fspath(path), text)


def split_statements(text):
    """The statements of an SQL script, each complete, comments and blank lines dropped."""
    out, buf = [], []
    for line in text.splitlines(keepends=True):
        if not buf and (not line.strip() or line.lstrip().startswith("--")):
            continue
        buf.append(line)
        chunk = "".join(buf)
        if sqlite3.complete_statement(chunk):
            out.append(chunk.strip())
            buf = []
    if "".join(buf).strip():
        out.append("".join(buf).strip())
    return out


def uri_path(path):
    """The absolute path of a file, escaped for a file: URI (the one escaping rule)."""
    return os.path.abspath(os.fspath(path)).replace("%", "%25").replace("?", "%3f").replace("#", "%23")


def open_existing(path, mode="ro", busy_timeout_ms=DEFAULT_BUSY_TIMEOUT_MS):
    """Open an existing database file without ever creating it: the one place that opens a file by URI.

    mode "ro" opens it read-only; "rw" read-write, falling back to read-only
    when the file or its folder cannot be written. Every failure is a
    DatabaseFileError naming the path.
    """
    check_path(path, write=False)
    modes = ("ro",) if mode == "ro" else ("rw", "ro")
    for attempt in modes:
        try:
            conn = sqlite3.connect("file:%s?mode=%s" % (uri_path(path), attempt), uri=True,
                                   timeout=busy_timeout_ms / 1000.0, isolation_level=None)
            return conn
        except sqlite3.Error as exc:
            error = exc
    raise DatabaseFileError(describe_sqlite_error(path, error))
