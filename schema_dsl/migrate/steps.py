"""The records both engines use: one Step, one Plan, one ApplyResult, and the small change records of the steps that
serve no difference of the declaration (a fresh file run, the history, a data step, what an interrupted online
apply left).

SQLite's planner (migrate/plan.py) and PostgreSQL's (pg/plan.py) build the same Step and Plan; a field one engine
does not use keeps its neutral default (SQLite: lock None, concurrent False, detail and data_step None; database
None, notes ()). Every plan step serves a change record: migrate/diff.py's closed set for a difference of the
declaration, the records below for the rest, and its kind is the record's class name. apply, apply --online and
Database.initialize() return the same ApplyResult on both engines.

Plain classes, not attrs: an attrs class costs about 1.5 ms of start-up to build, and a fresh apply on SQLite
builds its plan from these. Both engines' planners import this module; it names neither engine.
"""
from __future__ import annotations

from ..sqlite.structure import HISTORY_TABLE


class _Record:
    """A small read-only record (plain class, not attrs: an attrs class costs about 1.5 ms of start-up to
    build, and plan and apply are on the fresh-apply path). replace(**changes) makes a changed copy."""

    __slots__ = ()

    def __setattr__(self, name, value):
        raise AttributeError("%s is read-only" % type(self).__name__)

    def _values(self):
        return tuple(getattr(self, n) for n in self.__slots__)

    def __eq__(self, other):
        return type(other) is type(self) and other._values() == self._values()

    def __hash__(self):
        return hash(self._values())

    def __repr__(self):
        return "%s(%s)" % (type(self).__name__, ", ".join("%s=%r" % (n, getattr(self, n)) for n in self.__slots__))

    def replace(self, **changes):
        values = {n: getattr(self, n) for n in self.__slots__}
        values.update(changes)
        return type(self)(**values)

    def _set(self, **values):
        for name, value in values.items():
            object.__setattr__(self, name, value)


class Step(_Record):
    """One step of a plan, on either engine.

    title: what the step does, e.g. "rebuild table 'tasks'"; why: the change it serves and why this way;
    statements; rows: rows copied (rebuild) or filled, exact, or rows indexed (index build), about; table: the
    existing table it touches, if any; change: the change record it serves (kind: its class name); executed:
    already run on apply's connection, in its transaction, while it was planned (SQLite's history.py: expand and
    data steps): apply does not run it again.
    PostgreSQL's: lock (REWRITES or SCANS: the step holds ACCESS EXCLUSIVE while it reads every row), concurrent
    (runs after COMMIT, outside the transaction: CREATE/DROP INDEX CONCURRENTLY), detail (what apply --online
    needs: a conversion, a data step's run), data_step (a RunDataStep's name, for plan --sql's guard).
    An online step of PostgreSQL's apply --online (pg/online.py) is a Step too: mode says how it runs ("short",
    "swap", "validate", "batches", "data", "convert" or "concurrent"; "" for a plan step) and lock the lock it
    takes and for how long.
    """

    __slots__ = ("title", "why", "statements", "rows", "table", "change", "executed", "lock", "concurrent", "detail",
                 "data_step", "mode")

    def __init__(self, title, why, statements, rows=None, table=None, change=None, executed=False, lock=None,
                 concurrent=False, detail=None, data_step=None, mode=""):
        self._set(title=title, why=why, statements=tuple(statements), rows=rows, table=table, change=change,
                  executed=executed, lock=lock, concurrent=concurrent, detail=detail, data_step=data_step, mode=mode)

    @property
    def kind(self):
        """The class name of the change record the step serves (None for apply's own progress notices, which are
        no plan step)."""
        return type(self.change).__name__ if self.change is not None else None

    def __hash__(self):  # detail may be a dict: the hash reads what identifies a step (equal steps hash equal)
        return hash((self.title, self.why, self.statements))


class Plan(_Record):
    """The ordered steps, and what apply needs to know about them.

    fresh: the database holds none of the declaration (it is created). extras: what is kept, not in the
    declaration. data_loss: what the plan gives up, counted before anything runs ({"kind": "table"|"column"|
    "rows", "table", "column", "rows" (a table's rows, a column's non-NULL values), "text"}).
    SQLite's: touches_rows (changes a table that holds rows: back it up first); fk_scope (the child tables whose
    foreign_key_check is compared before and after: a rebuilt or filled table, and every table that references a
    rebuilt or dropped one). PostgreSQL's: database (the URL, masked), notes (what the plan keeps as it is, e.g. a
    NOT VALID constraint).
    """

    __slots__ = ("steps", "fresh", "extras", "touches_rows", "fk_scope", "data_loss", "database", "notes")

    def __init__(self, steps, fresh=False, extras=(), touches_rows=False, fk_scope=(), data_loss=(), database=None,
                 notes=()):
        self._set(steps=tuple(steps), fresh=fresh, extras=tuple(extras), touches_rows=touches_rows,
                  fk_scope=tuple(fk_scope), data_loss=tuple(data_loss), database=database, notes=tuple(notes))

    @property
    def statements(self):
        return [s for step in self.steps for s in step.statements]

    @property
    def up_to_date(self):
        return not self.steps

    @property
    def transactional(self):
        """The steps that run in apply's one transaction (every step on SQLite)."""
        return [s for s in self.steps if not s.concurrent]

    @property
    def concurrent(self):
        """The steps that run after COMMIT, outside the transaction (PostgreSQL's CONCURRENTLY)."""
        return [s for s in self.steps if s.concurrent]

    @property
    def access_exclusive(self):
        """The steps that hold ACCESS EXCLUSIVE while they rewrite or scan their table (PostgreSQL)."""
        return [s for s in self.steps if s.lock]


# --- the change records of the steps that serve no difference of the declaration -----------------------------

class _Change:
    """A plain change record (see the module docstring for why not attrs): its fields, compared and shown."""

    __slots__ = ()

    def __eq__(self, other):
        return type(other) is type(self) and all(getattr(self, n) == getattr(other, n) for n in self.__slots__)

    def __hash__(self):
        return hash(type(self).__name__)

    def __repr__(self):
        return "%s(%s)" % (type(self).__name__, ", ".join("%s=%r" % (n, getattr(self, n)) for n in self.__slots__
                                                          if n != "reason"))


class RunFile(_Change):
    """Run a rendered declaration file on a database that holds none of it (SQLite's DDL files on a new file,
    PostgreSQL's declaration.json on an empty schema)."""

    __slots__ = ("name", "reason")

    def __init__(self, name, reason="the database is empty: create the declared schema"):
        self.name, self.reason = name, reason


class RunDataStep(_Change):
    """Run one declared data step (sql statements, or run(conn) for a python= step)."""

    __slots__ = ("name", "sql", "run", "reason")

    def __init__(self, name, sql=None, run=None, reason="declared data step this database has not run yet"):
        self.name, self.sql, self.run, self.reason = name, sql, run, reason


class RecordHistory(_Change):
    """Create the history table (create=True) or write this apply's record (record: its row)."""

    __slots__ = ("record", "create", "reason")

    def __init__(self, record=None, create=False):
        self.record, self.create = record, create
        self.reason = "schemagen's record of what apply did, in the same transaction (%s)" % HISTORY_TABLE


class FinishOnline(_Change):
    """Finish what an interrupted online apply left on a table (PostgreSQL's pg/leftovers.py): an old column
    renamed away, an unfinished conversion, a helper CHECK of an online SET NOT NULL. column: the column it is
    about."""

    __slots__ = ("table", "column", "reason")

    def __init__(self, table, column, reason="an online apply was interrupted: what it left is finished"):
        self.table, self.column, self.reason = table, column, reason


class ValidateLeftover(_Change):
    """VALIDATE a constraint an interrupted online apply left NOT VALID, which no existing row breaks."""

    __slots__ = ("table", "constraint", "reason")

    def __init__(self, table, constraint, reason="left NOT VALID by an interrupted online apply; no row breaks it"):
        self.table, self.constraint, self.reason = table, constraint, reason


# --- what apply did -------------------------------------------------------------------------------------------

# apply --online's facts (ApplyResult.online, apply --json's "online"): one set of keys with one JSON type each on
# both engines (issue 16), each given this value where the engine has no such fact. SQLite never retries a lock
# attempt (BEGIN IMMEDIATE waits in its busy handler): retries 0. PostgreSQL holds no read transaction of its own
# across a step, has no WAL checkpoints to run and no held time apart from CPU waits: longest_reads and
# longest_checkpoints [], longest_own_lock its longest_lock. Records in longest_locks: step, began, held_ms and
# commit_ms on both; SQLite's also cpu_ms and runnable_ms.
ONLINE_FACTS = (("transactions", 0), ("retries", 0), ("longest_lock", 0.0), ("longest_lock_step", ""),
                ("longest_locks", []), ("longest_reads", []), ("longest_own_lock", 0.0),
                ("longest_own_lock_step", ""), ("phases", []), ("longest_checkpoints", []))


def online_facts(stats):
    """stats (what an online apply measured) as ApplyResult.online: every ONLINE_FACTS key, its default where stats
    has none; keys outside ONLINE_FACTS (SQLite's structure) left out."""
    facts = {}
    for key, default in ONLINE_FACTS:
        value = stats.get(key, default)
        facts[key] = list(value) if isinstance(default, list) else value
    return facts


class ApplyResult:
    """What apply did, on either engine, plain or online (Database.initialize() returns it on both).

    path: the database (PostgreSQL: its URL, the password masked); plan: the plan it carried out (a fresh
    PostgreSQL database: one step, the declaration run in one transaction); applied (False when already up to
    date); backup (SQLite: the backup's path, if one was kept; None on PostgreSQL, which has no file backup);
    seconds; statements; report (the validation report apply built, else None); step_seconds (what each plan
    step took, in plan order, where measured); online: what an online apply did ({} for a plain apply and a
    fresh database; else online_facts(): the same keys on both engines, see ONLINE_FACTS).
    SQLite's: structure (verified before COMMIT: the CLI's report reuses it) and differences (structure.compare of
    the declaration and that structure: only what the file has beyond the declaration, as anything else rolls
    back); kept_violations and kept_described (foreign_key_check before COMMIT over plan.fk_scope: violations
    that were already there, counted, the first ones described). PostgreSQL's: concurrent_built (the CONCURRENTLY
    builds run after COMMIT).

    A plain class, not attrs: every attrs class costs about 1.5 ms of start-up to build, and this one is on the
    fresh-apply path.
    """

    __slots__ = ("path", "plan", "applied", "backup", "seconds", "statements", "structure", "kept_violations",
                 "kept_described", "step_seconds", "differences", "report", "concurrent_built", "online")

    def __init__(self, path, plan, applied, backup=None, seconds=0.0, statements=0, structure=None,
                 kept_violations=0, kept_described=(), step_seconds=(), differences=None, report=None,
                 concurrent_built=0, online=None):
        self.path, self.plan, self.applied, self.backup = path, plan, applied, backup
        self.seconds, self.statements, self.structure = seconds, statements, structure
        self.kept_violations, self.kept_described, self.step_seconds = kept_violations, tuple(kept_described), \
            tuple(step_seconds)
        self.differences, self.report, self.concurrent_built = differences, report, concurrent_built
        self.online = dict(online or {})

    def __repr__(self):
        return "ApplyResult(path=%r, applied=%r, statements=%r, backup=%r)" % (
            self.path, self.applied, self.statements, self.backup)

    @property
    def fresh(self):
        """Whether the database was created (it held none of the declaration)."""
        return bool(self.plan.fresh) and bool(self.applied)

    @property
    def foreign_key_check(self):
        """What apply's own foreign key check found, in the form validation_report(applied=...) takes."""
        return {"tables": list(self.plan.fk_scope), "count": self.kept_violations, "kept": list(self.kept_described)}
