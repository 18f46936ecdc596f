"""One durable copy of a database file, the way a side of the backup measure makes it.

    python bench/backup_copy.py locked DB OUTDIR  schemagen's backup as apply makes it (migrate/backup.make_backup
                                                  under BEGIN IMMEDIATE: plain copy of the file and its -wal,
                                                  temporary name, fsync, mode, rename, folder fsync)
    python bench/backup_copy.py api DB OUTDIR     the same through SQLite's online backup API (restore's way)
    python bench/backup_copy.py copy DB OUTDIR    the floor: plain copy of the file, fsync of the copy and the folder
"""
from __future__ import annotations

import os
import shutil
import sqlite3
import sys


def fsync_path(path, directory=False):
    fd = os.open(path, os.O_RDONLY | (getattr(os, "O_DIRECTORY", 0) if directory else 0))
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def main(mode, db, outdir):
    if mode in ("api", "locked"):
        from schema_dsl.migrate.backup import make_backup
        if mode == "api":
            make_backup(db, outdir)
            return 0
        conn = sqlite3.connect(db, isolation_level=None)
        conn.execute("BEGIN IMMEDIATE")
        try:
            make_backup(db, outdir, locked=conn)
        finally:
            conn.execute("ROLLBACK")
            conn.close()
        return 0
    dst = os.path.join(outdir, os.path.basename(db) + ".copy")
    if mode != "copy":
        raise SystemExit("unknown mode %r" % mode)
    shutil.copyfile(db, dst)
    fsync_path(dst)
    fsync_path(outdir, directory=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(*sys.argv[1:4]))
