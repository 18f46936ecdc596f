"""Writing the files a command produces (render, docs, inspect --out, --report): only regular files it creates or replaces.

Every bad output path is an OutputPathError, one line, before anything is
written: a folder that is a file, or lies under one; a destination that is a
symlink (never written through), a folder or another non-regular file; a
folder that cannot be created or written. An output never replaces a
database: not the one the command works on (the same file by any path, a hard
link included: compared by device and inode, or by real path while it does not
exist yet), not any existing file that starts with the SQLite header or has a
-wal or -journal beside it, and not the -wal, -journal or -shm of a database. A file is written to a temporary
file in its own folder and renamed over the destination (os.replace), so a
reader never sees half a file and a failure leaves the old one in place.
"""
from __future__ import annotations

import os
import stat

from .errors import OutputPathError


def _nearest_existing(path):
    """The path itself or its nearest ancestor that exists (as lstat sees it)."""
    path = os.path.abspath(path)
    while not os.path.lexists(path):
        parent = os.path.dirname(path)
        if parent == path:
            break
        path = parent
    return path


def check_folder(folder, label):
    """Raise OutputPathError unless folder is, or can be created as, a writable folder. Creates nothing."""
    folder = os.fspath(folder)
    if os.path.lexists(folder):
        if not os.path.isdir(folder):
            raise OutputPathError("%s %r: exists and is not a folder" % (label, folder))
        if not os.access(folder, os.W_OK | os.X_OK):
            raise OutputPathError("%s %r: folder is not writable" % (label, folder))
        return
    base = _nearest_existing(folder)
    if not os.path.isdir(base):
        raise OutputPathError("%s %r: cannot create the folder, %r is not a folder" % (label, folder, base))
    if not os.access(base, os.W_OK | os.X_OK):
        raise OutputPathError("%s %r: cannot create the folder, %r is not writable" % (label, folder, base))


def make_folder(folder, label):
    """Create folder (and its parents) after check_folder; OutputPathError on any failure."""
    check_folder(folder, label)
    try:
        os.makedirs(folder, exist_ok=True)
    except OSError as exc:
        raise OutputPathError("%s %r: cannot create the folder (%s)" % (label, folder, exc.strerror or exc)) from None


def _same_file(a, b):
    """True when a and b are one file: by device and inode when both exist, else by real path."""
    try:
        return os.path.samestat(os.stat(a), os.stat(b))
    except OSError:
        return os.path.realpath(a) == os.path.realpath(b)


def _is_database(path):
    """True when the file at path starts with the SQLite header; None when it cannot be read."""
    from .sqlite.dbfile import SQLITE_HEADER  # only a command that writes a file needs it
    try:
        with open(path, "rb") as fh:
            return fh.read(len(SQLITE_HEADER)) == SQLITE_HEADER
    except OSError:
        return None


_SIDE_FILES = ("-wal", "-journal", "-shm")


def check_not_database(path, label, databases=()):
    """Raise OutputPathError when writing path would replace a database (see the module docstring).

    databases: the database files the command works on (they may not exist yet: apply creates one).
    """
    refuse = "; refusing to write over it (name another file)"
    for db in databases:
        if _same_file(path, db):
            raise OutputPathError("%s %r: is the database the command works on (--db %r)%s" % (label, path, db, refuse))
        for suffix in _SIDE_FILES:
            if _same_file(path, os.fspath(db) + suffix):
                raise OutputPathError("%s %r: is the %s file of the database %r%s" % (label, path, suffix, db, refuse))
    if os.path.lexists(path):
        found = _is_database(path)
        if found is None:
            raise OutputPathError("%s %r: cannot be read to tell whether it is an SQLite database%s" % (
                label, path, refuse))
        if found:
            raise OutputPathError("%s %r: is an SQLite database%s" % (label, path, refuse))
    for suffix in ("-wal", "-journal"):
        if os.path.lexists(path + suffix):
            raise OutputPathError("%s %r: has %r beside it, so it may be an SQLite database%s" % (
                label, path, os.path.basename(path) + suffix, refuse))
    for suffix in _SIDE_FILES:
        stem = path[:-len(suffix)]
        if path.endswith(suffix) and os.path.isfile(stem) and _is_database(stem):
            raise OutputPathError("%s %r: is the %s file of the SQLite database %r%s" % (label, path, suffix, stem, refuse))


def check_file(path, label, make_parent=False, databases=()):
    """Raise OutputPathError unless path can be written as a regular file. Creates nothing.

    make_parent: the parent folder may be missing (it is created before writing); otherwise it must exist.
    databases: the database files the command works on; path must not be one of them (check_not_database).
    """
    path = os.fspath(path)
    if not path or path.endswith("/"):
        raise OutputPathError("%s %r: expected the path of a file" % (label, path))
    if os.path.islink(path):
        raise OutputPathError("%s %r: is a symbolic link; refusing to write through it (remove it, or name "
                              "another file)" % (label, path))
    if os.path.lexists(path) and not stat.S_ISREG(os.lstat(path).st_mode):
        raise OutputPathError("%s %r: exists and is not a regular file" % (label, path))
    check_not_database(path, label, databases)
    parent = os.path.dirname(os.path.abspath(path))
    if make_parent:
        check_folder(parent, label)
        return
    if not os.path.isdir(parent):
        raise OutputPathError("%s %r: folder %r %s" % (
            label, path, parent, "is not a folder" if os.path.lexists(parent) else "does not exist"))
    if not os.access(parent, os.W_OK | os.X_OK):
        raise OutputPathError("%s %r: folder %r is not writable" % (label, path, parent))


def read_text(path):
    """The text of a regular file at path, or None (missing, a symlink, not a regular file, unreadable)."""
    try:
        if not stat.S_ISREG(os.lstat(path).st_mode):
            return None
        with open(path, encoding="utf-8", newline="") as fh:
            return fh.read()
    except (OSError, UnicodeDecodeError):
        return None


def write_text(path, text, label):
    """Write text to path as a regular file: a temporary file in the same folder, then os.replace.

    A file that is replaced keeps its permission bits; a new one gets the usual bits (0666 less the umask).
    """
    path = os.fspath(path)
    check_file(path, label)
    folder = os.path.dirname(os.path.abspath(path))
    try:
        mode = stat.S_IMODE(os.lstat(path).st_mode)
    except FileNotFoundError:
        umask = os.umask(0)
        os.umask(umask)
        mode = 0o666 & ~umask
    except OSError as exc:
        raise OutputPathError("%s %r: cannot write (%s)" % (label, path, exc.strerror or exc)) from None
    import tempfile  # only a command that writes a file needs it (apply's start-up time is benchmarked)
    tmp = None
    try:
        fd, tmp = tempfile.mkstemp(dir=folder, prefix="." + os.path.basename(path) + ".", suffix=".tmp")
        with os.fdopen(fd, "w", encoding="utf-8", newline="") as fh:
            fh.write(text)
            fh.flush()
            os.fchmod(fh.fileno(), mode)
        os.replace(tmp, path)
        tmp = None
    except OSError as exc:
        raise OutputPathError("%s %r: cannot write (%s)" % (label, path, exc.strerror or exc)) from None
    finally:
        if tmp is not None:
            try:
                os.remove(tmp)
            except OSError:
                pass


def stale(out_dir, files, folders):
    """render --check: each rendered file that differs from what is on disk ("PATH (missing)", "PATH (differs)"),
    then each regular file in one of the rendered folders (out_dir/SUB, SUB "" or "postgresql/") that is no longer
    rendered ("PATH (no longer rendered: delete it)"). files: {name relative to out_dir: text}."""
    out = []
    for name, text in sorted(files.items()):
        path = os.path.join(out_dir, name)
        try:
            with open(path, encoding="utf-8", newline="") as fh:
                current = fh.read()
        except OSError:
            current = None
        if current != text:
            out.append("%s (%s)" % (path, "missing" if current is None else "differs"))
    for sub in folders:
        folder = os.path.join(out_dir, sub)
        for name in sorted(os.listdir(folder)) if os.path.isdir(folder) else ():
            path = os.path.join(folder, name)
            if sub + name not in files and os.path.isfile(path) and not name.startswith("."):
                out.append("%s (no longer rendered: delete it)" % path)
    return out
