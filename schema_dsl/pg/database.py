"""`Database("postgresql://...")`: the same integration class on PostgreSQL, on psycopg 3's async connections.

    db = Database("postgresql://app@db/abathur")   # a Database on PostgreSQL: this class, under Database
    await db.initialize()                          # the same planner as `schemagen apply --db postgresql://...`
    async with db.connect() as conn:               # a psycopg.AsyncConnection, session settings applied
        await conn.execute("INSERT INTO tasks (id, ...) VALUES (%s, ...)", values)   # placeholders are %s
        await conn.commit()
    await db.close()

`initialize()` runs pg/migration.py's apply, the planner `schemagen apply` uses (one transaction, lock_timeout,
the structure read back and compared before COMMIT), in a worker thread. When another node holds the lock or creates the same tables at the same
moment, it tries again until `lock_timeout` seconds have passed, as on SQLite; then it finds the database up
to date.

Each connection gets the session settings that stand for SQLite's PRAGMAs (SESSION_SETTINGS): foreign keys
are always enforced on PostgreSQL; busy_timeout (5000 ms) becomes lock_timeout = 5s; SQLite has no statement
or idle-transaction limit, so statement_timeout and idle_in_transaction_session_timeout are 0 unless given;
TimeZone = UTC, since timestamps hold UTC (CURRENT_TIMESTAMP and localtimestamp then agree with SQLite's).
synchronous_commit keeps the server's setting (on: no committed transaction is lost).

Connections are psycopg's, not autocommit: a transaction opens with the first statement; commit it yourself, as
with the SQLite Database. Leaving `async with db.connect()` closes the connection (an uncommitted transaction
is rolled back).
"""
from __future__ import annotations

import asyncio
import json
import logging
import time

import psycopg

from ..analysis.sqlterms import single_select
from ..compile.paths import resource_dir
from ..compile.postgresql import DECLARATION_FILE, OUT_SUBDIR, compile_declaration
from ..errors import ApplyError, Declined, NotOnThisEngine, SchemagenError
from . import apply as pg_apply
from . import notvalid
from .url import for_libpq, mask, scrub

LOG = logging.getLogger("schema_dsl.database")

DEFAULT_LOCK_TIMEOUT_S = 120.0
SESSION_SETTINGS = {
    "lock_timeout": "5s",                           # PRAGMA busy_timeout = 5000
    "statement_timeout": "0",                       # SQLite has none
    "idle_in_transaction_session_timeout": "0",     # SQLite has none
    "TimeZone": "UTC",                              # timestamps hold UTC
}


def compiled_for_schema(schema):
    """The compiled PostgreSQL declaration of what Database takes as schema: None (the shipped one, read from
    generated/postgresql/), a SPEC string, a Target or a Schema."""
    from ..compile import project, target as target_mod  # the declaration loader: only when a schema is given
    if isinstance(schema, str):
        return pg_apply.compiled_for(project.resolve(schema))
    if isinstance(schema, target_mod.Target):
        schema = schema.schema
    if schema is None or target_mod.is_shipped_schema(schema):
        return json.loads((resource_dir("generated") / OUT_SUBDIR / DECLARATION_FILE).read_text(encoding="utf-8"))
    return compile_declaration(schema)


class PgDatabase:
    """A PostgreSQL database kept at the declared schema, used through psycopg's AsyncConnection.

    What `Database("postgresql://...")` is made of: database.py puts this class under Database (isinstance(db,
    Database) holds), so both engines have the same methods; this class says how each is done on PostgreSQL.

    url: a postgresql:// or postgres:// URL (shown masked in every message). schema: as for Database.
    lock_timeout: seconds initialize() keeps retrying while another session holds a lock it needs.
    statement_timeout, settings: session settings for every connection, over SESSION_SETTINGS.
    backup: accepted for the same signature; PostgreSQL has no file backup (the apply is one transaction).

    Example::

        db = Database("postgresql://app@db/bookmarks", schema=SCHEMA, statement_timeout="30s")   # a PgDatabase
        await db.initialize()
        async with db.connect() as conn:
            await conn.execute("INSERT INTO users (email, name) VALUES (%s, %s)", ("ann@example.org", "Ann"))
            await conn.commit()
        await db.close()
    """

    def __init__(self, url, *, schema=None, backup=True, lock_timeout=DEFAULT_LOCK_TIMEOUT_S,
                 statement_timeout=None, settings=None):
        self.url = url
        self.database = mask(url)
        self.lock_timeout = float(lock_timeout)
        self.backup = backup
        self.settings = dict(SESSION_SETTINGS)
        if statement_timeout is not None:
            self.settings["statement_timeout"] = str(statement_timeout)
        self.settings.update({k: str(v) for k, v in (settings or {}).items()})
        self._decl, self._fallback = None, False
        if schema is None:  # as Database resolves it: the [tool.schemagen] project from here, else the shipped one
            from ..compile import project  # the declaration loader
            decl = project.resolve(None)
            if decl.explicit:
                project.refuse_dialect(decl, "postgresql", "Database(%r)" % self.database)
                LOG.info("%s: declaration %s ([tool.schemagen] of %s)", self.database, decl.label, decl.project.root)
                self._decl = decl
            else:
                LOG.warning("%s: %s; pass schema= to name yours", self.database, project.fallback_notice())
                self._fallback = True  # initialize() refuses another application's database, as the CLI does
        self.compiled = pg_apply.compiled_for(self._decl) if self._decl is not None else compiled_for_schema(schema)
        self._schema_arg = schema
        self.last_apply = None
        self._open = set()

    def __repr__(self):
        return "Database(%r)" % self.database

    # --- schema ---------------------------------------------------------------

    async def __aenter__(self):
        await self.initialize()
        return self

    async def __aexit__(self, *exc_info):
        await self.close()

    async def initialize(self, allow_data_loss=False, backup=None, online=False):
        """Create or migrate the schema (or find it up to date) with pg/migration.py's apply, as `schemagen apply`
        does; returns its ApplyResult (migrate/steps.py, the same class as on SQLite). A plan that loses data is
        refused unless allow_data_loss: Declined, as on SQLite (whose default backup then stands in for no
        backup: the refusal is the missing yes, not the missing backup). backup: accepted for the same signature as
        on SQLite; PostgreSQL has no file backup (the apply is one transaction).

        online: migrate as `schemagen apply --online` does (pg/online.py: each step its own short transaction,
        retried while a lock is busy), so that the application keeps reading and writing meanwhile.

        Foreign keys added NOT VALID whose existing rows have no parent are logged as warnings
        (validate_foreign_keys() returns them).

        Example: `result = await db.initialize()`; `await db.initialize(allow_data_loss=True)` for a declaration
        that removes a column or table.
        """
        result = await asyncio.to_thread(self._initialize_sync, allow_data_loss, online)
        self.last_apply = result
        for loss in result.plan.data_loss if result.applied and result.plan is not None else ():
            LOG.warning("%s: removed by the declaration: %s", self.database, loss["text"])  # as on SQLite
        for note in result.report.get("notes", ()):
            if "existing row" in note:
                LOG.warning("%s: %s", self.database, note)
        return result

    @property
    def schema(self):
        """The declaration, as the model. Example: `[t.name for t in db.schema.tables]`."""
        from ..compile import project, target as target_mod  # the declaration loader: only when asked
        s = self._schema_arg
        if self._decl is not None:
            return project.load_schema(self._decl)
        if isinstance(s, str):
            return project.load_schema(project.resolve(s))
        if isinstance(s, target_mod.Target):
            return s.schema
        return target_mod.shipped_target().schema if s is None else s

    def _initialize_sync(self, allow_data_loss=False, online=False):
        from . import migration  # PostgreSQL's planner (pg/plan.py) and migration, as `schemagen apply` runs it
        run = migration.apply
        if online:
            from .online import apply_online as run  # online=True only: many short transactions
        schema = self.schema
        if self._fallback:
            pg_apply.refuse_foreign_database(self.url, self.compiled, api=True)
        deadline = time.monotonic() + self.lock_timeout
        delay = 0.05
        lock_timeout = self.settings.get("lock_timeout", pg_apply.DEFAULT_LOCK_TIMEOUT)
        while True:
            try:
                # allow_data_loss=True past the backup rule (no backup here, nor asked for): the loss then waits
                # for confirm, which says allow_data_loss; no is Declined (migrate/loss.guard), as on SQLite
                return run(self.url, schema, self.compiled, lock_timeout=lock_timeout,
                           statement_timeout=self.settings.get("statement_timeout"),
                           allow_data_loss=True, confirm=lambda plan: allow_data_loss)
            except Declined as exc:
                raise Declined("%s: pass initialize(allow_data_loss=True) to accept it" % exc) from None
            except ApplyError as exc:
                # another node's apply holds the lock, or created the same tables first: try again
                retry = "lock was not granted" in str(exc) or "already exists" in str(exc)
                if not retry or time.monotonic() + delay >= deadline:
                    raise
                LOG.info("%s: another session is applying the schema, trying again", self.database)
                time.sleep(delay)
                delay = min(delay * 2, 1.0)

    async def validate(self, full_integrity=False):
        """The validation report, as `schemagen validate --json` gives it (the same keys on both engines:
        docs/reference.md); report["ok"] is False when the database does not match the declaration.

        Example: `report = await db.validate(); assert report["ok"], report["differences"]`.
        """
        return await asyncio.to_thread(pg_apply.validate, self.url, self.compiled, full_integrity)

    @property
    def files(self):
        """SQLite's rendered DDL files: PostgreSQL has none (its statements come from declaration.json).

        Example: `db.files` raises NotOnThisEngine on PostgreSQL; use `db.statements`.
        """
        raise NotOnThisEngine("Database.files: PostgreSQL has no rendered DDL files; use Database.statements")

    async def create_file(self, conn, name):
        """SQLite's one rendered DDL file: PostgreSQL has none.

        Example: `await db.create_file(conn, name)` raises NotOnThisEngine; use `await db.create_tables(conn)`.
        """
        raise NotOnThisEngine("Database.create_file(%r): PostgreSQL has no rendered DDL files; use create_tables() "
                              "and create_indexes()" % (name,))

    async def _create_memory_tables(self, conn):
        """The Abathur spec's SQLite helper (its first table file). Example: raises NotOnThisEngine here."""
        raise NotOnThisEngine("Database._create_memory_tables: an SQLite helper (the first rendered table file); "
                              "use create_tables() on PostgreSQL")

    async def _create_core_tables(self, conn):
        """The Abathur spec's SQLite helper (the later table files). Example: raises NotOnThisEngine here."""
        raise NotOnThisEngine("Database._create_core_tables: an SQLite helper (the later rendered table files); "
                              "use create_tables() on PostgreSQL")

    async def _create_core_indexes(self, conn):
        """The Abathur spec's SQLite helper (the index file). Example: `await db.create_indexes(conn)` instead."""
        raise NotOnThisEngine("Database._create_core_indexes: an SQLite helper (the rendered index file); use "
                              "create_indexes() on PostgreSQL")

    @property
    def statements(self):
        """The rendered statements, in the order initialize() runs them on a fresh database.

        Example: `for sql in db.statements: print(sql)`.
        """
        return tuple(s["sql"] for s in self.compiled["statements"])

    async def create_tables(self, conn):
        """Run the rendered CREATE TABLE statements on a connection you manage. Example: `await db.create_tables(conn)`."""
        for s in self.compiled["statements"]:
            if s["kind"] == "table":
                await conn.execute(s["sql"])

    async def create_indexes(self, conn):
        """Run the rendered CREATE INDEX statements on a connection you manage. Example: `await db.create_indexes(conn)`."""
        for s in self.compiled["statements"]:
            if s["kind"] == "index":
                await conn.execute(s["sql"])

    # --- connections ----------------------------------------------------------

    async def _open_connection(self):
        try:
            conn = await psycopg.AsyncConnection.connect(for_libpq(self.url), connect_timeout=pg_apply.CONNECT_TIMEOUT_S)
        except psycopg.Error as exc:
            raise SchemagenError("cannot connect to %s: %s" % (self.database, " ".join(scrub(str(exc), self.url).split()))) from None
        try:
            for name, value in self.settings.items():
                await conn.execute("SELECT set_config(%s, %s, false)", (name, value))
            await conn.commit()
        except BaseException:
            await conn.close()
            raise
        self._open.add(conn)
        return conn

    def connect(self):
        """A psycopg AsyncConnection with the session settings applied; placeholders are %s.

        `async with db.connect() as conn:` (closed at the end) or `conn = await db.connect()` (close it yourself,
        or let close() do it).

        Example::

            async with db.connect() as conn:
                cur = await conn.execute("SELECT count(*) FROM users WHERE email = %s", ("ann@example.org",))
                (n,) = await cur.fetchone()
        """
        return _Connecting(self)

    async def close(self):
        """Close every connection this Database handed out that is still open. Idempotent.

        Example: `await db.close()` at shutdown (`async with Database(...)` does it for you).
        """
        while self._open:
            conn = self._open.pop()
            await conn.close()

    # --- checks ---------------------------------------------------------------

    async def validate_foreign_keys(self):
        """Rows that break a NOT VALID foreign key: (table, row key, parent table, constraint) tuples; [] when none.

        The row key is the child's PRIMARY KEY value (a tuple for a composite one), else its ctid. A validated
        foreign key holds for every row, so only NOT VALID ones are read.

        Example: `assert await db.validate_foreign_keys() == []`.
        """
        return await asyncio.to_thread(self._foreign_keys_sync)

    def _foreign_keys_sync(self):
        conn = pg_apply.connect(self.url)
        try:
            out = []
            for c in notvalid.not_valid_constraints(conn):
                if c["kind"] == "foreign key":
                    keys, _ = notvalid.violating_rows(conn, c)
                    out += [(c["table"], key, c["parent"], c["constraint"]) for key in keys]
            return out
        finally:
            conn.close()

    async def explain_query_plan(self, query, params=()):
        """EXPLAIN's text lines for one SELECT (or WITH ... SELECT) statement; `%s` placeholders take params.

        Anything else raises QueryRefused; the query is never run (EXPLAIN without ANALYZE).

        Example: `await db.explain_query_plan("SELECT * FROM users WHERE email = %s", ("a@b.c",))` gives lines
        such as ['Index Scan using users_email_key on users  (cost=...)', ...].
        """
        query = single_select(query)
        async with self.connect() as conn:
            cur = await conn.execute("EXPLAIN " + query, tuple(params) if params else None)
            lines = [row[0] for row in await cur.fetchall()]
            await conn.rollback()
            return lines

    async def integrity_check(self, full=False):
        """['ok'], or the problems found: indexes left INVALID or not ready (a failed CREATE INDEX
        CONCURRENTLY), and rows that break a NOT VALID constraint. With full=True also every B-tree index with
        amcheck's bt_index_check when the amcheck extension is installed, else every table read once (the server
        verifies each page it reads, and its checksum when data checksums are on).

        Example: `assert await db.integrity_check(full=True) == ["ok"]`.
        """
        return await asyncio.to_thread(self._integrity_sync, full)

    def _integrity_sync(self, full):
        conn = pg_apply.connect(self.url)
        try:  # the checks validate's integrity row runs (pg/apply.py), and the rows NOT VALID constraints let by
            problems = pg_apply.integrity_problems(conn)
            problems += [notvalid.describe(v) for v in notvalid.violations(conn)]
            if full:
                problems += [p for p in pg_apply.integrity_problems(conn, full=True) if p not in problems]
            return problems or ["ok"]
        finally:
            conn.close()


class _Connecting:
    """What PgDatabase.connect() returns: awaitable (a connection you close) and an async context manager."""

    def __init__(self, db):
        self._db = db
        self._conn = None

    def __await__(self):
        return self._db._open_connection().__await__()

    async def __aenter__(self):
        self._conn = await self._db._open_connection()
        return self._conn

    async def __aexit__(self, *exc_info):
        self._db._open.discard(self._conn)
        await self._conn.close()
