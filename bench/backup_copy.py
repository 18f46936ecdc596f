"""One durable copy of a database file, the way a side of the backup measure makes it.

    python bench/backup_copy.py api DB OUTDIR     schemagen's backup (migrate/backup.make_backup: backup API,
                                                  temporary name, fsync, mode, rename, folder fsync)
    python bench/backup_copy.py copy DB OUTDIR    the floor: plain copy of the file, fsync of the copy and the folder
    python bench/backup_copy.py reads DB OUTDIR   plain reads of the file under BEGIN IMMEDIATE (WAL checkpointed
                                                  first), then the same fsyncs: the alternative to the backup API
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
    if mode == "api":
        from schema_dsl.migrate.backup import make_backup
        make_backup(db, outdir)
        return 0
    dst = os.path.join(outdir, os.path.basename(db) + ".copy")
    if mode == "copy":
        shutil.copyfile(db, dst)
    elif mode == "reads":
        conn = sqlite3.connect(db, isolation_level=None)
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        conn.execute("BEGIN IMMEDIATE")
        try:
            shutil.copyfile(db, dst)
        finally:
            conn.execute("ROLLBACK")
            conn.close()
    else:
        raise SystemExit("unknown mode %r" % mode)
    fsync_path(dst)
    fsync_path(outdir, directory=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(*sys.argv[1:4]))
