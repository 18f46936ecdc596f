"""Backups of a database file: made safely, kept a few at a time, put back with restore.

A backup is written under a temporary name in its folder (`.DB.backup-STAMP.PID.tmp`, created 0600 so
that no reader ever sees the data with looser bits), by SQLite's online backup API from a second
connection, then fsynced with its folder, given the database file's own mode, and renamed to its final
name `DB.backup-YYYYmmddTHHMMSS[-n]`. A file under the final name is always complete: a killed process
leaves at most the temporary file, and any failure (a full disk, an error, Ctrl-C) removes it and any
journal beside it.

Retention: `prune` keeps the newest `keep` backups of one database in one folder, and only ever touches
files whose name is that database's backup name.

`restore` puts a backup back into the live file through the backup API, so connections that hold the
file open see the restored data; the state it replaces is backed up first.
"""
from __future__ import annotations

import os
import re
import sqlite3
import stat
import time

from ..errors import ChangedThenFailed, DatabaseFileError
from ..sqlite import dbfile
from ..sqlite.quote import quote_identifier

DEFAULT_KEEP = 3
STAMP = "%Y%m%dT%H%M%S"
_SIDE_FILES = ("-journal", "-wal", "-shm")


def backup_folder(path, backup_dir=None):
    """The folder backups of path go to: backup_dir, or the database's own folder."""
    return os.path.abspath(backup_dir) if backup_dir else os.path.dirname(os.path.abspath(path))


def check_backup_dir(backup_dir):
    """Raise DatabaseFileError unless backup_dir is an existing, writable folder (None: the database's folder)."""
    if backup_dir is None:
        return
    if not os.path.isdir(backup_dir):
        raise DatabaseFileError("--backup-dir %r: no such folder, expected an existing, writable folder; nothing "
                                "was changed" % backup_dir)
    if not os.access(backup_dir, os.W_OK | os.X_OK):
        raise DatabaseFileError("--backup-dir %r: folder is not writable; nothing was changed" % backup_dir)


def check_keep(keep):
    if not isinstance(keep, int) or keep < 1:
        raise DatabaseFileError("--keep-backups must be 1 or more (got %r); nothing was changed" % (keep,))


def _name_pattern(path):
    return re.compile(r"^%s\.backup-(\d{8}T\d{6})(?:-(\d+))?$" % re.escape(os.path.basename(path)))


def list_backups(path, backup_dir=None):
    """The backups of path in its backup folder, oldest first (by the stamp in their names, then their -n)."""
    folder = backup_folder(path, backup_dir)
    pattern = _name_pattern(path)
    found = []
    try:
        names = os.listdir(folder)
    except OSError:
        return []
    for name in names:
        m = pattern.match(name)
        if m and os.path.isfile(os.path.join(folder, name)):
            found.append(((m.group(1), int(m.group(2) or 1)), os.path.join(folder, name)))
    return [p for _, p in sorted(found)]


def backup_path(path, backup_dir=None, now=None):
    """A free final name for a new backup of path: DB.backup-YYYYmmddTHHMMSS, then -2, -3, ... on a clash."""
    now = now or time.localtime()
    name = "%s.backup-%s" % (os.path.basename(path), time.strftime(STAMP, now))
    base = os.path.join(backup_folder(path, backup_dir), name)
    candidate, n = base, 1
    while os.path.lexists(candidate):
        n += 1
        candidate = "%s-%d" % (base, n)
    return candidate


def _fsync_dir(folder):
    fd = os.open(folder, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _remove_quietly(path):
    for suffix in ("",) + _SIDE_FILES:
        try:
            os.remove(path + suffix)
        except FileNotFoundError:
            pass
        except OSError:
            pass


CHUNK_BYTES = 64 * 1024 * 1024


def _after_chunk(done, total, progress):
    """Called after each chunk of a copy (progress, and the place tests interrupt a copy)."""
    if progress is not None:
        progress(done, total)


def _copy_pages(source, target, progress):
    """Copy every page of source into target with the online backup API."""
    source.backup(target, pages=max(1, CHUNK_BYTES // 4096),
                  progress=lambda status, remaining, total: _after_chunk(total - remaining, total, progress))


def _copy_bytes(src, tmp, progress):
    """Append the bytes of the file src to the file tmp (sendfile: the kernel copies, no Python buffers)."""
    total = os.path.getsize(src)
    with open(src, "rb") as fin, open(tmp, "r+b") as fout:
        done = 0
        while True:
            n = os.sendfile(fout.fileno(), fin.fileno(), done, CHUNK_BYTES)
            if n == 0:
                break
            done += n
            fout.seek(done)
            _after_chunk(done, total, progress)


def _copy_locked_file(path, tmp, wal, progress):
    """Copy the database file (and, in WAL mode, its -wal) while the caller holds the write lock.

    Under the write lock nothing writes the file but a checkpoint, which only copies committed frames
    of the -wal into it; the -wal itself cannot grow or restart. So the file plus the whole -wal is the
    committed state: opening the copy recovers the -wal (as after a crash) and the checkpoint on close
    folds it into the one file.
    """
    _copy_bytes(path, tmp, progress)
    if wal and os.path.exists(path + "-wal") and os.path.getsize(path + "-wal"):
        os.close(os.open(tmp + "-wal", os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))
        _copy_bytes(path + "-wal", tmp + "-wal", None)
        conn = dbfile.connect(tmp)
        try:
            conn.execute("PRAGMA synchronous = OFF")  # fsynced once, when complete
            conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        finally:
            conn.close()
        _remove_quietly(tmp + "-wal")  # empty after the checkpoint; -shm likewise
        if os.path.exists(tmp + "-wal"):
            raise OSError(0, "could not fold the copied -wal into the backup")


def make_backup(path, backup_dir=None, progress=None, locked=None):
    """Back up the database at path; returns the backup's final path.

    locked: None, or the connection of the caller that holds the write lock (BEGIN IMMEDIATE) and has
    not written yet, as apply does: the file is copied with plain reads (plus its -wal), the fastest
    durable copy. Without it a second connection copies the committed state with SQLite's online
    backup API. progress(done, total) is called between chunks when given. Any failure removes the
    temporary file (and any journal beside it) and raises DatabaseFileError; KeyboardInterrupt is
    cleaned up the same way and re-raised.
    """
    path = os.fspath(path)
    folder = backup_folder(path, backup_dir)
    final = backup_path(path, backup_dir)
    tmp = os.path.join(folder, ".%s.%d.tmp" % (os.path.basename(final), os.getpid()))
    mode = stat.S_IMODE(os.stat(path).st_mode)
    source = target = None
    try:
        # created here, 0600 and exclusive: the data never sits in a file with looser bits than the database's
        os.close(os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))
        if locked is not None:
            wal = locked.execute("PRAGMA journal_mode").fetchone()[0].lower() == "wal"
            _copy_locked_file(path, tmp, wal, progress)
        else:
            source = dbfile.open_existing(path, "ro")
            target = dbfile.connect(tmp)  # through dbfile: a --backup-dir such as "file:x" is a folder, not a URI
            target.execute("PRAGMA journal_mode = OFF")  # a fresh file: no journal to leave behind
            target.execute("PRAGMA synchronous = OFF")  # fsynced once below, when complete
            _copy_pages(source, target, progress)
            target.close()
            target = None
            source.close()
            source = None
        fd = os.open(tmp, os.O_RDONLY)
        try:
            os.fchmod(fd, mode)
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp, final)
        _fsync_dir(folder)
    except BaseException as exc:
        for conn in (target, source):
            if conn is not None:
                conn.close()
        _remove_quietly(tmp)
        if isinstance(exc, (sqlite3.Error, OSError)):
            reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
            raise DatabaseFileError("database %r: backup to %r failed (%s); nothing was changed" % (
                path, folder, reason)) from None
        raise
    return final


def prune(path, backup_dir=None, keep=DEFAULT_KEEP, protect=()):
    """Remove all but the newest `keep` backups of path in its backup folder; returns the removed paths.

    Only files named like this database's backups are considered; paths in protect are never removed.
    Temporary files of this database's backups whose process no longer runs (killed mid-backup) go too.
    """
    check_keep(keep)
    protected = {os.path.abspath(p) for p in protect}
    removed = _remove_stale_temporaries(path, backup_dir)
    for old in list_backups(path, backup_dir)[:-keep]:
        if os.path.abspath(old) in protected:
            continue
        try:
            os.remove(old)
            removed.append(old)
        except OSError:
            pass
    return removed


def _remove_stale_temporaries(path, backup_dir=None):
    """Temporary files of this database's backups left by a killed process (its pid no longer runs)."""
    folder = backup_folder(path, backup_dir)
    pattern = re.compile(r"^\.%s\.backup-\d{8}T\d{6}(?:-\d+)?\.(\d+)\.tmp$" % re.escape(os.path.basename(path)))
    removed = []
    for name in os.listdir(folder):
        m = pattern.match(name)
        if not m or int(m.group(1)) == os.getpid():
            continue
        try:
            os.kill(int(m.group(1)), 0)
            continue  # that process still runs: its backup may be in progress
        except ProcessLookupError:
            pass
        except OSError:
            continue
        _remove_quietly(os.path.join(folder, name))
        removed.append(os.path.join(folder, name))
    return removed


def discard(backup):
    """Remove a backup that is no longer needed (nothing was changed after it was made)."""
    if backup:
        _remove_quietly(backup)


# --------------------------------------------------------------------------- checks and restore

def _quick_check(conn, table=None):
    """The rows of PRAGMA quick_check (of one table and its indexes when given), ['ok'] when sound."""
    sql = "PRAGMA quick_check" if table is None else "PRAGMA quick_check(%s)" % quote_identifier(table)
    try:
        return [r[0] for r in conn.execute(sql).fetchall()]
    except sqlite3.DatabaseError as exc:
        return [str(exc)]


def damage(conn, tables=None):
    """A one-line description of what PRAGMA quick_check finds wrong, or None when it answers ok.

    tables: check only these tables (with their indexes); None: the whole file.
    """
    for table in ([None] if tables is None else tables):
        rows = _quick_check(conn, table)
        if rows != ["ok"]:
            where = "the file" if table is None else "table %r" % table
            lines = [" ".join(r.replace("*** in database main ***", "").split()) for r in rows]
            shown = "; ".join(line for line in lines[:3] if line) + ("; ..." if len(rows) > 3 else "")
            return "%s is damaged (PRAGMA quick_check: %s)" % (where, shown)
    return None


class RestoreResult:
    """What restore did. A plain class: apply imports this module, and an attrs class costs its start-up time."""

    __slots__ = ("path", "restored_from", "backup", "seconds")

    def __init__(self, path, restored_from, backup=None, seconds=0.0):
        self.path, self.restored_from, self.backup, self.seconds = path, restored_from, backup, seconds


def _open_backup(backup):
    """Open a backup file read-only without creating anything beside it; DatabaseFileError when unusable."""
    label = "backup %r" % backup
    if not os.path.isfile(backup):
        raise DatabaseFileError("%s: no such file; nothing was changed" % label)
    with open(backup, "rb") as fh:
        head = fh.read(len(dbfile.SQLITE_HEADER))
    if head != dbfile.SQLITE_HEADER:
        raise DatabaseFileError("%s: not an SQLite database (the file does not start with the SQLite header); "
                                "nothing was changed" % label)
    if os.path.exists(backup + "-wal") and os.path.getsize(backup + "-wal"):
        raise DatabaseFileError("%s: has a non-empty %s-wal beside it, so it is in use; nothing was changed" % (
            label, os.path.basename(backup)))
    try:
        # immutable: nothing is written beside the backup (no -wal or -shm); safe since no -wal holds data
        conn = sqlite3.connect("file:%s?mode=ro&immutable=1" % dbfile.uri_path(backup), uri=True, isolation_level=None)
        problem = damage(conn)
    except sqlite3.Error as exc:
        raise DatabaseFileError("%s: not a usable SQLite database (%s); nothing was changed" % (label, exc)) from None
    if problem:
        conn.close()
        raise DatabaseFileError("%s: %s; nothing was changed" % (label, problem))
    return conn


def restore(path, backup=None, backup_dir=None, keep=DEFAULT_KEEP):
    """Put a backup back into the database at path; returns a RestoreResult.

    backup: the file to restore (default: the newest backup of path in its backup folder). The backup
    is checked first (an SQLite file that passes quick_check, else DatabaseFileError, nothing changed);
    the live file's WAL is checkpointed and its current state backed up under its write lock (same
    policy as apply); then the backup API copies the backup INTO the live file, taking its write lock
    again (it cannot start inside a transaction of the destination), so that connections holding the
    file open see the restored data. quick_check verifies the result.
    """
    path = os.fspath(path)
    start = time.perf_counter()
    check_backup_dir(backup_dir)
    check_keep(keep)
    dbfile.check_path(path, write=True)
    if not os.path.exists(path):
        raise DatabaseFileError("database %r: no such file, expected the database to restore into" % path)
    if backup is None:
        found = list_backups(path, backup_dir)
        if not found:
            raise DatabaseFileError("database %r: no backup of it in %r; pass --backup FILE; nothing was changed" % (
                path, backup_folder(path, backup_dir)))
        backup = found[-1]
    backup = os.fspath(backup)
    if os.path.abspath(backup) == os.path.abspath(path):
        raise DatabaseFileError("backup %r is the database itself; nothing was changed" % backup)
    source = _open_backup(backup)
    saved = None
    try:
        live = dbfile.connect(path)
        try:
            try:
                live.execute("PRAGMA wal_checkpoint(TRUNCATE)")
            except sqlite3.Error as exc:
                raise DatabaseFileError(dbfile.describe_sqlite_error(path, exc)) from None
            try:
                live.execute("BEGIN IMMEDIATE")
            except sqlite3.Error as exc:
                raise DatabaseFileError(dbfile.describe_sqlite_error(path, exc)) from None
            try:
                saved = make_backup(path, backup_dir, locked=live)  # the current state, under its write lock
            finally:
                live.execute("ROLLBACK")
            try:
                source.backup(live)
            except BaseException as exc:
                # the backup API writes in one transaction of the destination: a failure leaves it unchanged
                discard(saved)
                saved = None
                if not isinstance(exc, sqlite3.Error):
                    raise
                raise DatabaseFileError("database %r: restore from %r failed (%s); nothing was changed" % (
                    path, backup, exc)) from None
            problem = damage(live)
            if problem:
                raise ChangedThenFailed("database %r: restored from %r, but then %s; the state before the restore "
                                        "is in %s" % (path, backup, problem, saved))
        finally:
            live.close()
    finally:
        source.close()
    prune(path, backup_dir, keep, protect=(backup, saved))
    return RestoreResult(path, backup, saved, time.perf_counter() - start)
