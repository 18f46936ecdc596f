"""Opening a database file safely: every bad path is a one-line error.

Checks run before SQLite touches the file, so a wrong path never creates or
changes anything: a missing parent folder, a directory, a file that is not
an SQLite database, a read-only file (judged by its permission bits too, since
root may write anyway), and a database locked by another connection (after
waiting busy_timeout).

A database is named by a filesystem path, never by an SQLite URI: every
connection is opened here through a file: URI built from the escaped absolute
path (Debian's SQLite reads a name starting with "file:" as a URI even without
uri=True), so `file:y.db` is the file of that name in the current folder.
A file in a read-only folder (read-only media) is read with immutable=1, which
is safe only while no -wal or hot -journal holds changes the file lacks.
"""
from __future__ import annotations

import functools
import os
import sqlite3
import stat

from ..errors import DatabaseFileError

SQLITE_HEADER = b"SQLite format 3\x00"
DEFAULT_BUSY_TIMEOUT_MS = 5000


def check_name(path):
    """Raise DatabaseFileError for a name that is not the path of a file: a database is never named by a URI."""
    path = os.fspath(path)
    label = "database %r" % path
    if not path:
        raise DatabaseFileError("database '': empty path, expected the path of an SQLite database file")
    if path == ":memory:":
        raise DatabaseFileError("%s: an in-memory database is not a file, expected the path of an SQLite database "
                                "file" % label)
    if path.endswith("/") or (os.altsep and path.endswith(os.altsep)):
        raise DatabaseFileError("%s: ends with '/', expected the path of a file, not a folder" % label)
    if path.lower().startswith(("postgresql://", "postgres://")):  # (not quoted: a URL may carry a password)
        raise DatabaseFileError("a PostgreSQL URL was given where the path of an SQLite database file is expected")
    if path.lower().startswith(("postgresql:", "postgres:")):
        raise DatabaseFileError("%s: looks like a PostgreSQL URL without its '//' (postgresql://HOST/NAME), but is "
                                "read as the path of an SQLite file; write the URL in full, or './%s' for a file of "
                                "that very name" % (label, path))
    if path.startswith("file:") and "?" in path:
        raise DatabaseFileError("%s: looks like an SQLite URI with parameters, but a database is named by its file "
                                "path (URIs and their parameters are not read); name the file itself, or write "
                                "'./%s' for a file of that very name" % (label, path))


def check_path(path, write=True):
    """Raise DatabaseFileError unless path can be opened as an SQLite database.

    Returns True when the file exists (possibly empty), False when it would be created.
    """
    path = os.fspath(path)
    label = "database %r" % path
    check_name(path)
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
    """An autocommit connection (transactions are explicit) with busy_timeout set; creates a missing file."""
    conn = sqlite3.connect(uri(path), uri=True, timeout=busy_timeout_ms / 1000.0, isolation_level=None)
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
    return list(_split_statements(text))


@functools.lru_cache(maxsize=32)
def _split_statements(text):
    # the rendered files are split on every apply (the fresh plan, the PRAGMAs before and after): once per text
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
    return tuple(out)


def split_sql(text):
    """The statements of SQL written on one line or several ("UPDATE ...; DELETE ..."): split at each top-level
    ';' that completes a statement (a trigger's BEGIN ... END stays whole), outside strings and quoted names.
    Each runs from its first token to its last: comments before and after it are left out (a statement that
    ended in a '-- comment' would swallow the ';' written after it), and a piece that is only comments is none."""
    from .ddl import token_spans  # only a data step's SQL is split this way
    out, first, last = [], None, None
    for kind, piece, begin, end in token_spans(text):
        first = begin if first is None else first
        if kind == "op" and piece == ";" and sqlite3.complete_statement(text[first:end]):
            out.append(text[first:last] + ";" if last is not None else "")
            first = last = None
        else:
            last = end
    if first is not None:
        out.append(text[first:last])
    return [s for s in out if s.rstrip(";").strip()]


def uri_path(path):
    """The absolute path of a file, escaped for a file: URI (the one escaping rule)."""
    path = os.path.abspath(os.fspath(path))
    if path.startswith("//"):
        path = "/" + path.lstrip("/")  # "file://x" would name a host
    return path.replace("%", "%25").replace("?", "%3f").replace("#", "%23")


def uri(path, **params):
    """The file: URI of a filesystem path (escaped, absolute), with query parameters such as mode="ro"."""
    query = "&".join("%s=%s" % item for item in params.items())
    return "file:%s%s" % (uri_path(path), "?" + query if query else "")


def read_only_folder(path):
    """True when the folder of path cannot be written (read-only media included): SQLite cannot create -shm there."""
    return not os.access(os.path.dirname(os.path.abspath(os.fspath(path))), os.W_OK)


def _pending_changes(path):
    """The -wal or -journal beside path that holds changes the file itself lacks, or None."""
    for suffix in ("-wal", "-journal"):
        try:
            if os.path.getsize(os.fspath(path) + suffix) > 0:
                return os.fspath(path) + suffix
        except OSError:
            continue
    return None


def in_wal(conn):
    """Whether the database behind conn is in WAL mode (PRAGMA journal_mode)."""
    return str(conn.execute("PRAGMA journal_mode").fetchone()[0]).lower() == "wal"


def header_journal_mode(path):
    """"wal" or "delete" as the file's header records it (an immutable connection always answers "delete")."""
    with open(os.fspath(path), "rb") as fh:
        head = fh.read(20)
    return "wal" if len(head) == 20 and head[18] == 2 and head[19] == 2 else "delete"


class ImmutableConnection(sqlite3.Connection):
    """A connection open_existing opened with immutable=1 (a file in a read-only folder).

    SQLite answers "delete" to PRAGMA journal_mode on such a connection whatever the file holds; this
    one answers what the file's header records, so that validate and inspect report the file.
    """

    header_mode = "delete"

    def execute(self, sql, *args):
        if " ".join(sql.lower().replace(";", " ").split()) in ("pragma journal_mode", "pragma main.journal_mode"):
            return super().execute("SELECT ? AS journal_mode", (self.header_mode,))
        return super().execute(sql, *args)


def _open_immutable(path, check_same_thread=True):
    """A read-only, immutable connection that has read sqlite_master (it never creates -wal or -shm)."""
    conn = None
    try:
        conn = sqlite3.connect(uri(path, mode="ro", immutable=1), uri=True, isolation_level=None,
                               factory=ImmutableConnection, check_same_thread=check_same_thread)
        conn.header_mode = header_journal_mode(path)
        conn.execute("SELECT count(*) FROM sqlite_master").fetchone()
    except sqlite3.Error as exc:
        if conn is not None:
            conn.close()
        raise DatabaseFileError(describe_sqlite_error(path, exc)) from None
    return conn


def open_existing(path, mode="ro", busy_timeout_ms=DEFAULT_BUSY_TIMEOUT_MS, check_same_thread=True):
    """Open an existing database file without ever creating it: the one place that opens a file by URI.

    mode "ro" opens it read-only; "rw" read-write, falling back to read-only
    when the file or its folder cannot be written. In a read-only folder the
    file is opened read-only and immutable (see the module docstring), or
    refused when a non-empty -wal or -journal lies beside it. Every failure
    is a DatabaseFileError naming the path. check_same_thread=False: the caller hands the connection to
    another thread (transfer reads ahead in one), one thread at a time.
    """
    check_path(path, write=False)
    if read_only_folder(path):
        # SQLite cannot create -shm here: read the file as immutable, safe only when nothing is pending beside it
        pending = _pending_changes(path)
        if pending is not None:
            raise DatabaseFileError("database %r: its folder is read-only and %r holds changes the file itself lacks, "
                                    "so it cannot be read safely here; copy the database with its %s to a writable "
                                    "folder, or open it once where the folder is writable" % (
                                        os.fspath(path), pending, pending[len(os.fspath(path)):]))
        return _open_immutable(path, check_same_thread)
    if header_journal_mode(path) == "wal" and not any(os.path.exists(os.fspath(path) + s) for s in ("-wal", "-shm")):
        # SQLite creates -wal and -shm before it finds that a file only looks like a database: look first
        _open_immutable(path).close()
    modes = ("ro",) if mode == "ro" else ("rw", "ro")
    for attempt in modes:
        try:
            conn = sqlite3.connect(uri(path, mode=attempt), uri=True, timeout=busy_timeout_ms / 1000.0,
                                   isolation_level=None, check_same_thread=check_same_thread)
            return conn
        except sqlite3.Error as exc:
            error = exc
    raise DatabaseFileError(describe_sqlite_error(path, error))


def scratch():
    """An empty in-memory database in autocommit mode, for work that must not touch a file (a structure copied to
    check what a plan would break, a probe of this SQLite's behaviour)."""
    return sqlite3.connect(":memory:", isolation_level=None)


class scratch_copy:
    """`with scratch_copy(conn) as copy:` a copy of the database behind conn in a temporary folder (the backup
    API), foreign keys off, inside an open transaction; removed on leaving. For planning what needs the file
    changed (renames, data steps) when the file itself may only be read."""

    def __init__(self, conn):
        self.conn = conn

    def __enter__(self):
        import tempfile  # only a plan that needs a changed copy of the file gets here
        self._folder = tempfile.TemporaryDirectory(prefix="schemagen-plan-")
        self.copy = sqlite3.connect(os.path.join(self._folder.name, "copy.db"), isolation_level=None)
        try:
            self.conn.backup(self.copy)
            self.copy.execute("PRAGMA foreign_keys = OFF")
            self.copy.execute("BEGIN")
        except BaseException:
            self.__exit__(None, None, None)
            raise
        return self.copy

    def __exit__(self, *exc):
        self.copy.close()
        self._folder.cleanup()
        return False
