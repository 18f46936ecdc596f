"""Backups of a database file: made safely, kept a few at a time, put back with restore.

A backup is written under a temporary name in its folder (`.DB.backup-STAMP.PID.tmp`, created 0600 so
that no reader ever sees the data with looser bits), by SQLite's online backup API from a second
connection, then fsynced with its folder, given the database file's own mode, and renamed to its final
name `DB.backup-YYYYmmddTHHMMSS[-n]`. A file under the final name is always complete: a killed process
leaves at most the temporary file, and any failure (a full disk, an error, Ctrl-C) removes it and any
journal beside it.

Whose backup it is: beside every backup lies its record, `DB.backup-YYYYmmddTHHMMSS[-n].json`, which
names the database it was made from (its real path, symlinks resolved) and when. The record is written
(to a temporary name, fsynced, renamed) before the backup gets its final name, so a backup under its
final name always has its record. A backup is a database's own when its record names that database
(the same real path, or the same file by another path). A backup made by an older schemagen has no
record: it counts as the own backup of the database whose file name it carries only in that database's
own folder (where it was made by default; a folder holds one file of that name); elsewhere, in a shared
--backup-dir, it cannot be told from another database's of the same name, so it is never picked or
pruned for a database, though restore takes it when named with --backup and it carries the database's
file name.

Retention: `prune` keeps the newest `keep` own backups of one database in one folder, and only ever
removes a file that has that database's backup name, is its own backup and starts with the SQLite header
(with its record).

`restore` puts a backup back into the live file through the backup API, so connections that hold the
file open see the restored data; the state it replaces is backed up first. It refuses, unless
other_database is given, a file that is not the database's own backup (another database's, named in
the refusal, or any other SQLite file); a file that is not an SQLite database is always refused.
"""
from __future__ import annotations

import contextlib
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
RECORD = ".json"  # the record beside a backup: which database it was made from


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


def _is_sqlite(path):
    """True when the regular file at path starts with the SQLite header."""
    try:
        if not stat.S_ISREG(os.lstat(path).st_mode):
            return False
        with open(path, "rb") as fh:
            return fh.read(len(dbfile.SQLITE_HEADER)) == dbfile.SQLITE_HEADER
    except OSError:
        return False


def same_database(a, b):
    """True when the paths a and b name one database file: the same real path, or the same file (device, inode)."""
    if os.path.realpath(a) == os.path.realpath(b):
        return True
    try:
        return os.path.samefile(a, b)
    except OSError:
        return False


def read_record(backup):
    """The record beside a backup: a dict with "database" (and "made"), None when there is none, or
    {"unreadable": reason} when it cannot be read."""
    record = os.fspath(backup) + RECORD
    if not os.path.lexists(record):
        return None
    import json  # only backups with a record need it (apply's start-up time is benchmarked)
    try:
        with open(record, encoding="utf-8") as fh:
            data = json.load(fh)
        if not isinstance(data, dict) or not isinstance(data.get("database"), str):
            return {"unreadable": "no database named in it"}
        return data
    except (OSError, ValueError) as exc:
        return {"unreadable": getattr(exc, "strerror", None) or str(exc)}


class BackupInfo:
    """One backup in a backup folder: path, made (the stamp of its name, YYYY-mm-ddTHH:MM:SS, local time),
    bytes, of (the database its record names, else None), recorded (True, False: made by an older
    schemagen, or "unreadable"), own (it is a backup of the database asked about). A plain class: see
    RestoreResult."""

    __slots__ = ("path", "made", "bytes", "of", "recorded", "own", "order")

    def as_dict(self):
        record = {True: "ok", False: "missing"}.get(self.recorded, "unreadable")
        return {"path": self.path, "made": self.made, "bytes": self.bytes, "of": self.of, "record": record,
                "own": self.own}


def _own_folder(path, folder):
    """True when folder is the folder the database at path lies in."""
    return same_database(folder, os.path.dirname(os.path.abspath(path)))


def scan_backups(path, backup_dir=None):
    """Every SQLite file with the backup name of path in its backup folder, as BackupInfo, oldest first.

    Files under a backup name that do not start with the SQLite header are not backups and are left out.
    """
    folder = backup_folder(path, backup_dir)
    pattern = _name_pattern(path)
    try:
        names = os.listdir(folder)
    except OSError:
        return []
    found = []
    own_folder = None
    for name in names:
        m = pattern.match(name)
        full = os.path.join(folder, name)
        if not m or not _is_sqlite(full):
            continue
        info = BackupInfo()
        info.path, info.order = full, (m.group(1), int(m.group(2) or 1))
        stamp = m.group(1)
        info.made = "%s-%s-%sT%s:%s:%s" % (stamp[:4], stamp[4:6], stamp[6:8], stamp[9:11], stamp[11:13], stamp[13:15])
        try:
            info.bytes = os.path.getsize(full)
        except OSError:
            continue  # removed meanwhile (another process's retention)
        record = read_record(full)
        if record is None:
            if own_folder is None:
                own_folder = _own_folder(path, folder)
            info.of, info.recorded, info.own = None, False, own_folder
        elif "unreadable" in record:
            info.of, info.recorded, info.own = None, "unreadable", False
        else:
            info.of, info.recorded = record["database"], True
            info.own = same_database(record["database"], path)
        found.append(info)
    return sorted(found, key=lambda i: i.order)


def list_backups(path, backup_dir=None):
    """The backups of path in its backup folder, oldest first (by the stamp in their names, then their -n):
    those whose record names this database, and those without a record in the database's own folder."""
    return [info.path for info in scan_backups(path, backup_dir) if info.own]


def backup_path(path, backup_dir=None, now=None):
    """A free final name for a new backup of path: DB.backup-YYYYmmddTHHMMSS, then -2, -3, ... on a clash."""
    now = now or time.localtime()
    name = "%s.backup-%s" % (os.path.basename(path), time.strftime(STAMP, now))
    base = os.path.join(backup_folder(path, backup_dir), name)
    candidate, n = base, 1
    while os.path.lexists(candidate) or os.path.lexists(candidate + RECORD):
        n += 1
        candidate = "%s-%d" % (base, n)
    return candidate


def _write_record(tmp, path, mode):
    """Write the record of a backup of the database at path to the new file tmp (fsynced, given mode)."""
    import json  # see read_record
    text = json.dumps({"database": os.path.realpath(path), "made": time.strftime("%Y-%m-%dT%H:%M:%S%z")},
                      sort_keys=True) + "\n"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        os.write(fd, text.encode("utf-8"))
        os.fchmod(fd, mode)
        os.fsync(fd)
    finally:
        os.close(fd)


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


def _copy_pages(source, target, progress, pages=None):
    """Copy every page of source into target with the online backup API (pages: per step, -1 all in one)."""
    source.backup(target, pages=pages or max(1, CHUNK_BYTES // 4096),
                  progress=lambda status, remaining, total: _after_chunk(total - remaining, total, progress))


def _copy_bytes(src, tmp, progress, src_fd=None):
    """Append the bytes of the file src to the file tmp (sendfile: the kernel copies, no Python buffers).

    src_fd: a descriptor of src to read from instead of opening it (sendfile reads at an offset: its position
    is not moved)."""
    with contextlib.ExitStack() as stack:
        if src_fd is None:
            src_fd = stack.enter_context(open(src, "rb")).fileno()
        total = os.fstat(src_fd).st_size
        fout = stack.enter_context(open(tmp, "r+b"))
        done = 0
        while True:
            n = os.sendfile(fout.fileno(), src_fd, done, CHUNK_BYTES)
            if n == 0:
                break
            done += n
            fout.seek(done)
            _after_chunk(done, total, progress)


# Descriptors of database files copied under a write lock, by (device, inode), never closed. Closing any
# descriptor of a file drops every POSIX lock this process holds on it, SQLite's own included (SQLite itself
# defers such a close while it holds a lock): the copy under apply's BEGIN IMMEDIATE would release apply's write
# lock, and another process could write in the middle of the migration. One descriptor per file, reused.
_HELD = {}


def _held_descriptor(path):
    st = os.stat(path)
    key = (st.st_dev, st.st_ino)
    fd = _HELD.get(key)
    if fd is None:
        # while it is open the inode cannot be freed and its number reused: the key stays this file's
        fd = _HELD[key] = os.open(path, os.O_RDONLY | getattr(os, "O_CLOEXEC", 0))
    return fd


def _copy_locked_file(path, tmp, wal, progress):
    """Copy the database file (and, in WAL mode, its -wal) while the caller holds the write lock.

    Under the write lock nothing writes the file but a checkpoint, which only copies committed frames
    of the -wal into it; the -wal itself cannot grow or restart. So the file plus the whole -wal is the
    committed state: opening the copy recovers the -wal (as after a crash) and the checkpoint on close
    folds it into the one file.
    """
    _copy_bytes(path, tmp, progress, _held_descriptor(path))
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


def make_backup(path, backup_dir=None, progress=None, locked=None, snapshot=False):
    """Back up the database at path; returns the backup's final path.

    locked: None, or the connection of the caller that holds the write lock (BEGIN IMMEDIATE) and has
    not written yet, as apply does: the file is copied with plain reads (plus its -wal), the fastest
    durable copy. Without it a second connection copies the committed state with SQLite's online
    backup API. progress(done, total) is called between chunks when given. Any failure removes the
    temporary file (and any journal beside it) and raises DatabaseFileError; KeyboardInterrupt is
    cleaned up the same way and re-raised. snapshot (apply --online): the backup API copies in chunks inside one
    read transaction held across them, so that every chunk reads the same snapshot: other connections writing
    meanwhile neither wait (in WAL mode; in rollback-journal mode a writer's COMMIT waits for the read lock until
    the copy ends) nor restart the copy, as they restart a copy in chunks that holds no read between them.
    """
    path = os.fspath(path)
    folder = backup_folder(path, backup_dir)
    final = backup_path(path, backup_dir)
    tmp = os.path.join(folder, ".%s.%d.tmp" % (os.path.basename(final), os.getpid()))
    tmp_record = os.path.join(folder, ".%s%s.%d.tmp" % (os.path.basename(final), RECORD, os.getpid()))
    mode = stat.S_IMODE(os.stat(path).st_mode)
    source = target = None
    recorded = False
    try:
        # created here, 0600 and exclusive: the data never sits in a file with looser bits than the database's
        os.close(os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))
        if locked is not None:
            wal = dbfile.in_wal(locked)
            _copy_locked_file(path, tmp, wal, progress)
        else:
            source = dbfile.open_existing(path, "ro")
            target = dbfile.connect(tmp)  # through dbfile: a --backup-dir such as "file:x" is a folder, not a URI
            target.execute("PRAGMA journal_mode = OFF")  # a fresh file: no journal to leave behind
            target.execute("PRAGMA synchronous = OFF")  # fsynced once below, when complete
            if snapshot:  # one read transaction held across the steps: every step reads the same snapshot
                source.execute("BEGIN")
                source.execute("SELECT 1 FROM sqlite_master LIMIT 1").fetchall()
            _copy_pages(source, target, progress)
            if snapshot:
                source.execute("ROLLBACK")
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
        _write_record(tmp_record, path, mode)
        os.replace(tmp_record, final + RECORD)  # the record first: a backup under its final name has one
        recorded = True
        os.replace(tmp, final)
        _fsync_dir(folder)
    except BaseException as exc:
        for conn in (target, source):
            if conn is not None:
                conn.close()
        _remove_quietly(tmp)
        _remove_quietly(tmp_record)
        if recorded and not os.path.lexists(final):
            _remove_quietly(final + RECORD)
        if isinstance(exc, (sqlite3.Error, OSError)):
            reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
            raise DatabaseFileError("database %r: backup to %r failed (%s); nothing was changed" % (
                path, folder, reason)) from None
        raise
    return final


def prune(path, backup_dir=None, keep=DEFAULT_KEEP, protect=()):
    """Remove all but the newest `keep` backups of path in its backup folder; returns the removed paths.

    Only this database's own backups are considered (list_backups: SQLite files under its backup name whose
    record names it, or without a record in its own folder); paths in protect are never removed. A backup
    goes with its record. Temporary files of this database's backups whose process no longer runs (killed
    mid-backup) go too.
    """
    check_keep(keep)
    protected = {os.path.abspath(p) for p in protect if p}
    removed = _remove_stale_temporaries(path, backup_dir)
    for old in list_backups(path, backup_dir)[:-keep]:
        if os.path.abspath(old) in protected:
            continue
        try:
            os.remove(old)
            removed.append(old)
        except OSError:
            continue
        _remove_quietly(old + RECORD)
    return removed


def _remove_stale_temporaries(path, backup_dir=None):
    """Temporary files of this database's backups left by a killed process (its pid no longer runs)."""
    folder = backup_folder(path, backup_dir)
    pattern = re.compile(r"^\.%s\.backup-\d{8}T\d{6}(?:-\d+)?(?:%s)?\.(\d+)\.tmp$" % (
        re.escape(os.path.basename(path)), re.escape(RECORD)))
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
        _remove_quietly(backup + RECORD)


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
    """What restore did. A plain class: apply imports this module, and an attrs class costs its start-up time.

    whose: "own" (the record names this database), "unrecorded" (an older backup without a record, taken
    as this database's by its name and place), or "other" (restored with other_database); of: the database
    the record names, if any.
    """

    __slots__ = ("path", "restored_from", "backup", "seconds", "whose", "of")

    def __init__(self, path, restored_from, backup=None, seconds=0.0, whose="own", of=None):
        self.path, self.restored_from, self.backup, self.seconds = path, restored_from, backup, seconds
        self.whose, self.of = whose, of


def _tables(conn):
    """What an SQLite file holds, in words: its first tables."""
    try:
        names = [r[0] for r in conn.execute(
            "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%' ORDER BY name")]
    except sqlite3.Error:
        return "an SQLite database"
    if not names:
        return "an SQLite database with no tables"
    return "an SQLite database with %d table%s (%s%s)" % (
        len(names), "" if len(names) == 1 else "s", ", ".join(names[:5]), ", ..." if len(names) > 5 else "")


def _whose(backup, path, conn, other_database):
    """(whose, of) for restore: the backup is this database's, or other_database allows another file;
    otherwise DatabaseFileError naming whose backup, or what file, it is."""
    record = read_record(backup)
    hint = "pass --other-database to restore it into %r anyway; nothing was changed" % path
    if record is not None and "unreadable" not in record:
        if same_database(record["database"], path):
            return "own", record["database"]
        if other_database:
            return "other", record["database"]
        raise DatabaseFileError("backup %r: is a backup of %r (made %s), not of %r; %s" % (
            backup, record["database"], record.get("made", "at an unknown time"), path, hint))
    if record is None and _name_pattern(path).match(os.path.basename(backup)):
        return "unrecorded", None  # made by an older schemagen: its name says whose it is
    if other_database:
        return "other", None
    why = ("its record %r cannot be read (%s)" % (backup + RECORD, record["unreadable"]) if record is not None
           else "no record says which database it was made from, and its name is not %s.backup-..." % (
               os.path.basename(path)))
    raise DatabaseFileError("backup %r: not a backup of %r: %s; it is %s; %s" % (backup, path, why, _tables(conn), hint))


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


def restore(path, backup=None, backup_dir=None, keep=DEFAULT_KEEP, other_database=False, commit_section=None):
    """Put a backup back into the database at path; returns a RestoreResult.

    backup: the file to restore (default: the newest backup of path in its backup folder, list_backups).
    The backup is checked first (an SQLite file that passes quick_check, else DatabaseFileError, nothing
    changed), then whose it is: a file that is not this database's own backup (another database's, or
    any other SQLite file) is refused, naming whose backup or what file it is, unless other_database;
    the live file's WAL is checkpointed and its current state backed up under its write lock (same
    policy as apply); then the backup API copies the backup INTO the live file, taking its write lock
    again (it cannot start inside a transaction of the destination), so that connections holding the
    file open see the restored data. quick_check verifies the result.

    commit_section: a context manager factory the copy runs in (the CLI's holds Ctrl-C until it has
    returned). The copy runs in C, so an interrupt during it is raised after it, with the file restored:
    the backup of the state before is then kept, and is discarded only when the copy never began.
    """
    path = os.fspath(path)
    start = time.perf_counter()
    check_backup_dir(backup_dir)
    check_keep(keep)
    dbfile.check_path(path, write=True)
    if not os.path.exists(path):
        raise DatabaseFileError("database %r: no such file, expected the database to restore into" % path)
    if backup is None:
        found = scan_backups(path, backup_dir)
        own = [info.path for info in found if info.own]
        if not own:
            others = ("; %d backup%s there %s the same file name but %s not this database's (see `schemagen restore "
                      "--list`)" % (len(found), "" if len(found) == 1 else "s", "has" if len(found) == 1 else "have",
                                    "is" if len(found) == 1 else "are")) if found else ""
            raise DatabaseFileError("database %r: no backup of it in %r%s; pass --backup FILE; nothing was changed" % (
                path, backup_folder(path, backup_dir), others))
        backup = own[-1]
    backup = os.fspath(backup)
    if same_database(backup, path):
        raise DatabaseFileError("backup %r is the database itself; nothing was changed" % backup)
    source = _open_backup(backup)
    saved = None
    try:
        whose, of = _whose(backup, path, source, other_database)
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
            began = False
            try:
                with (commit_section or contextlib.nullcontext)():
                    began = True
                    source.backup(live)
            except sqlite3.Error as exc:
                # the backup API writes in one transaction of the destination: a failure leaves it unchanged
                discard(saved)
                saved = None
                raise DatabaseFileError("database %r: restore from %r failed (%s); nothing was changed" % (
                    path, backup, exc)) from None
            except BaseException:
                if not began:  # interrupted before the copy: nothing changed, the state-before backup is stray
                    discard(saved)
                    saved = None
                raise
            problem = damage(live)
            if problem:
                raise ChangedThenFailed("database %r: restored from %r, but then %s; the state before the restore "
                                        "is in %s" % (path, backup, problem, saved))
        finally:
            live.close()
    finally:
        source.close()
    prune(path, backup_dir, keep, protect=(backup, saved))
    return RestoreResult(path, backup, saved, time.perf_counter() - start, whose, of)


def _size(n):
    for unit in ("bytes", "KB", "MB", "GB"):
        if n < 1024 or unit == "GB":
            return "%d %s" % (n, unit) if unit == "bytes" else "%.1f %s" % (n, unit)
        n /= 1024.0


def listing(path, backup_dir=None):
    """restore --list: every backup under the database's backup name in its backup folder, newest first, as a
    dict for --json (database, folder, backups: BackupInfo.as_dict) and the text a person reads."""
    found = list(reversed(scan_backups(path, backup_dir)))
    folder = backup_folder(path, backup_dir)
    data = {"database": os.path.realpath(path), "folder": folder, "backups": [i.as_dict() for i in found]}
    own = [i for i in found if i.own]
    lines = ["%s of %s in %s%s" % (
        "%d backup%s" % (len(own), "" if len(own) == 1 else "s") if own else "no backups", path, folder,
        ", newest first:" if own else "")]
    for i in own:
        lines.append("  %s  %9s  %s%s" % (i.made.replace("T", " "), _size(i.bytes), i.path,
                                          "" if i.recorded else "  (no record: an older backup, this database's by its name and folder)"))
    others = [i for i in found if not i.own]
    if others:
        lines.append("not of this database, under the same name:")
        for i in others:
            whose = ("of %s" % i.of if i.recorded is True else "record unreadable" if i.recorded else
                     "no record (an older backup; restore takes it only with --backup FILE)")
            lines.append("  %s  %9s  %s  %s" % (i.made.replace("T", " "), _size(i.bytes), i.path, whose))
    return data, "\n".join(lines)
