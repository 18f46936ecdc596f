"""Which tables a migration step locks, in which order, and taking those locks without a deadlock.

An application INSERT into a child table takes ROW EXCLUSIVE on the child, then its foreign-key check takes
ROW SHARE on the parent (SELECT ... FOR KEY SHARE on the parent row). A migration that takes ACCESS EXCLUSIVE on
the parent first and then asks for the child waits for that INSERT while the INSERT waits for it: "deadlock
detected", and PostgreSQL aborts one of the two. So the tables a migration changes are locked up front, in one
fixed order that is the order the foreign-key checks take them: children before parents (a table before every
table it references; a cycle is broken by name).

No fixed order suits every application (one that writes a parent and then its child in one transaction takes
them parent first), so the locks are also taken without ever waiting long while holding one: each attempt runs
under a lock_timeout shorter than the server's deadlock_timeout, in a savepoint; an attempt that is not granted
in time releases whatever it got and is tried again after a backoff, until the caller's own lock_timeout (the
whole budget) runs out. The application's transaction is therefore never the one aborted, and never waits on the
migration for more than one attempt.

Every function takes an open psycopg connection inside the caller's transaction; none imports psycopg at module
level (the error class is looked up when needed).
"""
from __future__ import annotations

import random
import time

from ..compile.postgresql import alter_statement

ATTEMPT_MS = 100          # one attempt's lock_timeout: well under PostgreSQL's default deadlock_timeout (1 s)
BACKOFF_MS = (10, 400)    # the first wait between attempts, and the longest


def children_first(tables, fks):
    """tables in the order their locks are taken: a table before every table it references (fks: {child:
    {parents}}); ties and cycles broken by name."""
    tables = sorted(set(tables))
    refs = {t: {p for p in fks.get(t, ()) if p in tables and p != t} for t in tables}
    out, left = [], list(tables)
    while left:
        # a table nobody left references can go now (every child of it is already placed)
        ready = [t for t in left if not any(t in refs[o] for o in left if o != t)]
        pick = ready[0] if ready else left[0]
        out.append(pick)
        left.remove(pick)
    return out


def live_fks(live):
    """{child: {parents}} from the live structure (introspect.read_live)."""
    return {t: {f["table"].lower() for f in info["fks"]} for t, info in live["tables"].items()}


def plan_tables(steps, live, schema=None):
    """[(table, mode)] the steps change (ACCESS EXCLUSIVE), and the parents a new foreign key names (SHARE ROW
    EXCLUSIVE, what ADD FOREIGN KEY takes on them), children first. Only tables that exist now."""
    existing = set(live["tables"])
    changed, parents = set(), set()
    for s in steps:
        if s.table and s.table.lower() in existing:
            changed.add(s.table.lower())
        if s.kind == "Remove" and s.table and s.title.startswith("drop table"):
            # dropping a table drops the foreign keys that reference it: those children are altered too
            changed |= {c for c, ps in live_fks(live).items() if s.table.lower() in ps and c in existing}
    if schema is not None:
        for s in steps:
            if s.kind in ("AddForeignKey", "CreateTable") and s.table:
                t = schema.table(s.table)
                for f in (t.foreign_keys if t is not None else ()):
                    if f.ref_table.lower() in existing:
                        parents.add(f.ref_table.lower())
    fks = live_fks(live)
    if schema is not None:
        for t in schema.tables:
            fks.setdefault(t.name.lower(), set()).update(f.ref_table.lower() for f in t.foreign_keys)
    order = children_first(changed | parents, fks)
    return [(t, "ACCESS EXCLUSIVE" if t in changed else "SHARE ROW EXCLUSIVE") for t in order]


def lock_statements(tables):
    """The LOCK TABLE statements for [(table, mode)], in that order (one per run of the same mode)."""
    runs = []
    for t, mode in tables:
        if runs and runs[-1][1] == mode:
            runs[-1][0].append(t)
        else:
            runs.append(([t], mode))
    return [alter_statement("lock_tables", names, mode) for names, mode in runs]


def _setting_ms(conn, name):
    row = conn.execute("SELECT setting::bigint FROM pg_settings WHERE name = %s", (name,)).fetchone()
    return int(row[0]) if row else 0


def acquire(conn, tables, budget_ms=None, on_retry=None, attempt_ms=None):
    """Take the locks on [(table, mode)] in the caller's transaction, in that order, retrying as the module
    docstring says. budget_ms: how long in all (None: the transaction's lock_timeout; 0: no limit).
    on_retry(attempt, waited_ms) is called before each new attempt. Raises psycopg's LockNotAvailable when the
    budget runs out (nothing of this call held). Returns the number of attempts."""
    from psycopg import errors as pgerrors  # psycopg only when locks are taken (the module imports none)
    if not tables:
        return 0
    if budget_ms is None:
        budget_ms = _setting_ms(conn, "lock_timeout")
    if attempt_ms is None:
        attempt_ms = max(1, min(ATTEMPT_MS, _setting_ms(conn, "deadlock_timeout") // 2 or ATTEMPT_MS))
    if budget_ms:
        attempt_ms = min(attempt_ms, budget_ms)
    previous = conn.execute("SELECT current_setting('lock_timeout')").fetchone()[0]
    statements = lock_statements(tables)
    started, attempt, backoff = time.monotonic(), 0, BACKOFF_MS[0]
    while True:
        attempt += 1
        try:
            with conn.transaction():  # a savepoint: a failed attempt releases what it took
                conn.execute("SELECT set_config('lock_timeout', %s, true)", ("%dms" % attempt_ms,))
                for statement in statements:
                    conn.execute(statement)
            break
        except pgerrors.LockNotAvailable:
            waited = (time.monotonic() - started) * 1000
            if budget_ms and waited + backoff >= budget_ms:
                raise
            if on_retry is not None:
                on_retry(attempt, waited)
            time.sleep((backoff + random.uniform(0, backoff)) / 1000.0)
            backoff = min(backoff * 2, BACKOFF_MS[1])
    conn.execute("SELECT set_config('lock_timeout', %s, true)", (previous,))
    return attempt
