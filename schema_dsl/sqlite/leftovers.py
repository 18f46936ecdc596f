"""schemagen's own objects of an interrupted online apply (migrate/online.py): never the user's.

Shadow tables `_schemagen_new_<table>`, a swapped-out old table `_schemagen_old_<table>` being emptied, their indexes `_schemagen_ix_<n>_<m>`, the sync triggers
`_schemagen_sync_{ins,upd,del}_<table>` and the side table `_schemagen_online_rejects`. Every reader of the
schema (structure.read_raw: inspect, plan, --prune) leaves them out, validate reports them, and every apply
drops them first.
"""
from __future__ import annotations

from .quote import quote_identifier
from .structure import is_leftover  # structure.py is embedded whole in the validator


def leftovers(conn):
    """[(type, name, table)] of the objects an interrupted online apply left behind."""
    return [tuple(r) for r in conn.execute("SELECT type, name, tbl_name FROM sqlite_master ORDER BY rowid")
            if is_leftover(r[1])]


def drop_leftovers(conn):
    """Drop them (triggers first, so that no write meets a trigger whose table is gone); in the caller's
    transaction if there is one, else in its own. Returns what was dropped."""
    found = leftovers(conn)
    if not found:
        return []
    own = not conn.in_transaction
    if own:
        conn.execute("BEGIN IMMEDIATE")
    try:
        for kind, name, _ in found:
            if kind == "trigger":
                conn.execute("DROP TRIGGER IF EXISTS %s" % quote_identifier(name))
        for kind, name, _ in found:
            if kind == "table":
                conn.execute("DROP TABLE IF EXISTS %s" % quote_identifier(name))
        if own:
            conn.execute("COMMIT")
    except BaseException:
        if own and conn.in_transaction:
            conn.execute("ROLLBACK")
        raise
    return found
