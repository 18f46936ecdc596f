"""Writing the files a command produces (render, docs, inspect --out, --report): only regular files it creates or replaces.

Every bad output path is an OutputPathError, one line, before anything is
written: a folder that is a file, or lies under one; a destination that is a
symlink (never written through), a folder or another non-regular file; a
folder that cannot be created or written. A file is written to a temporary
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


def check_file(path, label, make_parent=False):
    """Raise OutputPathError unless path can be written as a regular file. Creates nothing.

    make_parent: the parent folder may be missing (it is created before writing); otherwise it must exist.
    """
    path = os.fspath(path)
    if not path or path.endswith("/"):
        raise OutputPathError("%s %r: expected the path of a file" % (label, path))
    if os.path.islink(path):
        raise OutputPathError("%s %r: is a symbolic link; refusing to write through it (remove it, or name "
                              "another file)" % (label, path))
    if os.path.lexists(path) and not stat.S_ISREG(os.lstat(path).st_mode):
        raise OutputPathError("%s %r: exists and is not a regular file" % (label, path))
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
