"""The floor of a fresh apply: the least a process can do to create the schema.

Imports what every schemagen process needs (click, attrs), sets the PRAGMAs
of generated/pragmas.sql, and executes the three generated DDL files with the
standard sqlite3 module in one transaction. No planning, no verification, no
report.

    python bench/floor_apply.py NEW.db
"""
import sqlite3
import sys
from pathlib import Path

import attrs  # noqa: F401  (the dependencies every schemagen process imports)
import click  # noqa: F401

GENERATED = Path(__file__).resolve().parent.parent / "generated"


def main(path):
    pragmas = (GENERATED / "pragmas.sql").read_text(encoding="utf-8")
    ddl = "".join((GENERATED / name).read_text(encoding="utf-8")
                  for name in ("ddl-memory-tables.sql", "ddl-core-tables.sql", "ddl-indexes.sql"))
    conn = sqlite3.connect(path, isolation_level=None)
    conn.executescript(pragmas)
    conn.executescript("BEGIN IMMEDIATE;\n" + ddl + "\nCOMMIT;")
    conn.close()


if __name__ == "__main__":
    main(sys.argv[1])
