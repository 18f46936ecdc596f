"""The application's integration point: an async Database on aiosqlite.

    db = Database("~/.abathur/abathur.db")
    await db.initialize()             # create or migrate, then validate
    async with db.connect() as conn:  # an aiosqlite connection, PRAGMAs set
        await conn.execute("INSERT INTO tasks ...", values)
        await conn.commit()
    await db.close()

`initialize()` goes through the same planner as `schemagen apply`
(schema_dsl.apply.apply, run in a worker thread): there is no second copy of
any DDL or PRAGMA list here. The per-connection PRAGMAs come from the
rendered pragmas.sql (foreign_keys, busy_timeout, synchronous,
wal_autocheckpoint) and are set on every connection `connect()` hands out.

Concurrency: apply takes the write lock with BEGIN IMMEDIATE and waits up to
busy_timeout (5000 ms) for it. When several processes initialize the same
file at once, one migrates while the others wait; one that still finds the
file locked after busy_timeout tries again, until `lock_timeout` seconds
(default 120) have passed since initialize() began, and then raises the
DatabaseFileError ("... is locked ..."). A process that gets the lock after
the migration finds the file up to date and changes nothing.

Connections use Python's default transaction handling (a transaction opens
before INSERT/UPDATE/DELETE; call `await conn.commit()`), as the old code
did. Schema changes belong to initialize(), not to the application's
connections.
"""
from __future__ import annotations

import asyncio
import logging
import os
import time
from pathlib import Path

import aiosqlite

from . import dialects
from .migrate import apply as apply_mod
from .sqlite import dbfile, structure
from .errors import DatabaseFileError, NotOnThisEngine, ValidationFailed
from .analysis.sqlterms import single_select
from .compile import project
from .compile.target import Target, target_for
from .migrate.steps import ApplyResult
from .model import Schema

LOG = logging.getLogger("schema_dsl.database")

DEFAULT_LOCK_TIMEOUT_S = 120.0


def _resolve(schema: "Schema | str | Target | None", where: str) -> "tuple[Target, str | None]":
    """The declaration by the CLI's rule, and apply's guard: a Schema or Target as given; a SPEC, or for None the
    project's [tool.schemagen] declaration found from the current folder, else the shipped Abathur one
    (logged as a warning, and then a file of another application is refused, as the CLI does)."""
    if schema is None or isinstance(schema, str):
        decl = project.resolve(schema)
        if not decl.explicit:
            LOG.warning("%s: %s; pass schema= to name yours", where, project.fallback_notice())
            return target_for(None), "shipped-api"
        project.refuse_dialect(decl, "sqlite", "Database(%r)" % where)
        LOG.info("%s: declaration %s%s", where, decl.label,
                 " ([tool.schemagen] of %s)" % decl.project.root if decl.project is not None else "")
        return project.target(decl), None
    found = target_for(schema)
    LOG.info("%s: declaration schema %r (passed as schema=)", where, found.name)
    return found, None


class Database:
    """An SQLite database file kept at the declared schema, used through aiosqlite.

    db_path: the database file (its parent folder is created by initialize).
    schema: the declaration: a Schema, a SPEC as `schemagen --schema` takes it ("myapp/schema.py:SCHEMA",
    "myapp.schema", "abathur"), or None: as the CLI resolves it, the [tool.schemagen] project found from the
    current folder, else the shipped Abathur schema (logged as a warning; a file that holds tables, none of
    them Abathur's, is then refused). Pass it explicitly: a library should not depend on the folder a
    service starts in. The project's own declaration works from its rendered files, which must not be stale.
    Which declaration was resolved is logged (logger "schema_dsl.database").
    backup: make a backup next to the file before a migration that touches
    rows (as `schemagen apply` does).
    lock_timeout: seconds initialize() keeps retrying while another process
    holds the write lock (each try itself waits busy_timeout, 5 s).
    statement_timeout, settings: PostgreSQL session settings (a postgresql:// URL only; see
    pg/database.py); an SQLite file refuses them with a TypeError that names them.

    Every parameter after db_path is keyword-only. The database holds its dialect (`db.dialect`), which the
    registry picks by the CLI's rule (dialects.for_db): a postgresql:// or postgres:// URL as db_path gives a
    Database on PostgreSQL (`isinstance(db, Database)` holds; the dialect supplies it, and the engine's work is
    pg/database.py's PgDatabase, on psycopg): the same methods, and a method that has no meaning on one engine raises
    NotOnThisEngine naming it (`files` and `create_file` on PostgreSQL: it has no rendered DDL files).

    Example (pass schema= explicitly in an application: it should not depend on the folder it starts from)::

        from schema_dsl import Database

        db = Database("data/app.db", schema="myapp/schema.py:SCHEMA")
        await db.initialize()                    # create or migrate, then validate
        async with db.connect() as conn:         # an aiosqlite connection, PRAGMAs set
            await conn.execute("INSERT INTO users (email) VALUES (?)", ("ann@example.org",))
            await conn.commit()
        await db.close()

        async with Database("data/app.db", schema=SCHEMA, lock_timeout=30) as db:   # initialize(), then close()
            ...
    """

    def __new__(cls, db_path: str | os.PathLike[str], *, schema: Schema | str | Target | None = None,
                backup: bool = True, lock_timeout: float = DEFAULT_LOCK_TIMEOUT_S,
                statement_timeout: str | int | None = None, settings: dict | None = None) -> Database:
        dialect = dialects.for_db(db_path)  # the registry's one rule, as the CLI's --db
        engine = dialect.database_class(Database)
        if engine is Database:
            given = [n for n, v in (("statement_timeout", statement_timeout), ("settings", settings)) if v is not None]
            if given:
                raise TypeError("Database(%r): %s: PostgreSQL session settings, which an SQLite file does not take" % (
                    str(db_path), " and ".join(given)))
        database = super().__new__(engine if cls is Database else cls)
        database.dialect = dialect
        return database

    def __init__(self, db_path: "str | os.PathLike[str]", *, schema: "Schema | str | Target | None" = None,
                 backup: bool = True, lock_timeout: float = DEFAULT_LOCK_TIMEOUT_S,
                 statement_timeout: "str | int | None" = None, settings: "dict | None" = None) -> None:
        if str(db_path) == ":memory:" or str(db_path).startswith("file::memory:"):
            raise DatabaseFileError("database ':memory:': Database needs a file (every connection to ':memory:' is a "
                                    "new, empty database); run the _create_* helpers on your own connection instead")
        self.db_path = Path(os.path.expanduser(os.fspath(db_path)))
        # the project's or the shipped declaration is read from its rendered files, not rebuilt
        self._target, self._guard = _resolve(schema, str(self.db_path))
        self.backup = backup
        self.lock_timeout = float(lock_timeout)
        self.last_apply = None           # the ApplyResult of the last initialize()
        self._files = self._target.files
        self._pragmas = apply_mod.connection_pragmas(self._files, persistent=self._target.persistent_pragmas)
        self._open = set()

    @property
    def schema(self) -> "Schema":
        """The declaration, as the model (built on first use for the shipped one).

        Example: `[t.name for t in db.schema.tables]`.
        """
        return self._target.schema

    def __repr__(self) -> str:
        return "Database(%r)" % str(self.db_path)

    # --- schema ---------------------------------------------------------------

    async def __aenter__(self) -> "Database":
        """`async with Database(path, schema=SCHEMA) as db:` initializes the file, and closes every connection on
        the way out."""
        await self.initialize()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()

    async def initialize(self, allow_data_loss: bool = False, backup: "bool | None" = None,
                         online: bool = False) -> "ApplyResult":
        """Create or migrate the file to the declaration, then validate it; returns the ApplyResult
        (schema_dsl.migrate.steps.ApplyResult, the same class on PostgreSQL).

        Idempotent: on a file already at the declaration nothing changes
        (result.applied is False). Foreign key violations that were already
        in the data are kept and logged as warnings (validate_foreign_keys()
        returns them); a structure that still differs raises ValidationFailed.

        A plan that loses data (a column or table the declaration removes) follows `schemagen apply`'s
        rules: it is refused (Declined, nothing changed) unless allow_data_loss, and the backup (backup:
        default the Database's own setting) is mandatory unless allow_data_loss; every count of what goes
        is logged as a warning.

        online: rebuild changed tables as `schemagen apply --online` does (schema_dsl/migrate/online.py), so that
        other connections keep reading and writing meanwhile; one online apply per file at a time.

        Example::

            result = await db.initialize()
            if result.applied:
                print([step.title for step in result.plan.steps])   # what changed
            await db.initialize(allow_data_loss=True)        # a declaration that removes a column or table
        """
        backup = self.backup if backup is None else backup
        result, violations = await asyncio.to_thread(self._initialize_sync, allow_data_loss, backup, online)
        self.last_apply = result
        for loss in result.plan.data_loss if result.applied else ():
            LOG.warning("%s: removed by the declaration: %s", self.db_path, loss["text"])
        for row in violations:
            LOG.warning("%s: foreign key violation kept in the data: table %r rowid %s has no parent row in %r",
                        self.db_path, row[0], row[1], row[2])
        return result

    def _initialize_sync(self, allow_data_loss=False, backup=True, online=False):
        dbfile.check_name(self.db_path)  # before its folder is made: a refused name leaves no folder behind
        self.db_path.parent.mkdir(parents=True, exist_ok=True)
        deadline = time.monotonic() + self.lock_timeout
        delay = 0.05
        do_apply = apply_mod.apply
        if online:
            from .migrate.online import apply_online as do_apply  # only online=True imports it
        while True:
            try:
                result = do_apply(str(self.db_path), schema=self._target, backup=backup, guard=self._guard,
                                  allow_data_loss=allow_data_loss, confirm=lambda plan: allow_data_loss,
                                  terms=apply_mod.API_TERMS)
                break
            except DatabaseFileError as exc:
                if "locked" not in str(exc) or time.monotonic() + delay >= deadline:
                    raise
                LOG.info("%s: locked by another connection, trying again", self.db_path)
                time.sleep(delay)
                delay = min(delay * 2, 1.0)
        # A file found up to date was just compared with the declaration by
        # apply: the start-up path stays O(schema), not O(rows). After a
        # change, the whole-file checks run once.
        return result, self._validate_sync() if result.applied else []

    def _validate_sync(self):
        """Raise ValidationFailed unless the structure and persistent PRAGMAs match; returns foreign_key_check rows."""
        conn = dbfile.connect(self.db_path)
        try:
            violations = [tuple(r) for r in conn.execute("PRAGMA foreign_key_check")]
            problems = [m for k, m in structure.compare(self._target.structure, structure.read_structure(conn))
                        if k != "extra"]
            for name, value in sorted(self._target.persistent_pragmas.items()):
                found = conn.execute("PRAGMA %s" % name).fetchone()[0]
                if str(found).lower() != value:
                    problems.append("pragma %s is %r, expected %r" % (name, found, value))
        finally:
            conn.close()
        if problems:
            raise ValidationFailed("database %r does not match the declaration after initialize: %s" % (
                str(self.db_path), "; ".join(problems[:10])))
        return violations

    async def validate(self, full_integrity: bool = False) -> dict:
        """The validation report, as `schemagen validate --json` gives it (the same keys on both engines:
        docs/reference.md); report["ok"] is False when the file does not match the declaration.

        Example: `report = await db.validate(); assert report["ok"], report["differences"]`.
        """
        from .check.report import build_report  # validate only: the report's checks are not on the start-up path
        return await asyncio.to_thread(build_report, str(self.db_path), schema=self._target,
                                       full_integrity=full_integrity)

    @property
    def statements(self) -> "tuple[str, ...]":
        """The rendered statements, in the order initialize() runs them on a new file (the table files, then the
        index file).

        Example: `for sql in db.statements: print(sql)`.
        """
        return tuple(stmt for name in self.files for stmt in dbfile.split_statements(self._files[name]))

    @property
    def files(self) -> "tuple[str, ...]":
        """The names of the rendered DDL files, in the order they run: the table files, then the index file.

        Example: `db.files` gives ('ddl-tables.sql', 'ddl-indexes.sql') for a declaration with one table file.
        """
        return (*self._target.table_files, self._target.index_file)

    async def create_file(self, conn: aiosqlite.Connection, name: str) -> None:
        """Run one rendered DDL file (a name from `files`) on a connection you manage.

        Example: `await db.create_file(conn, "ddl-indexes.sql")`.
        """
        if name not in self.files:
            raise ValueError("rendered file %r: expected one of %s" % (name, ", ".join(self.files)))
        for stmt in dbfile.split_statements(self._files[name]):
            await conn.execute(stmt)

    async def create_tables(self, conn: aiosqlite.Connection) -> None:
        """Run every rendered table file, in order, on conn (e.g. a test's own `aiosqlite.connect(...)`).

        Example: `await db.create_tables(conn); await db.create_indexes(conn)`.
        """
        for name in self._target.table_files:
            await self.create_file(conn, name)

    async def create_indexes(self, conn: aiosqlite.Connection) -> None:
        """Run the rendered index file on conn. Example: `await db.create_indexes(conn)`."""
        await self.create_file(conn, self._target.index_file)

    # The spec's names for the same helpers (Abathur: the first table file holds the memory tables).
    async def _create_memory_tables(self, conn: aiosqlite.Connection) -> None:
        """Run the first rendered table file (Abathur: ddl-memory-tables.sql) on conn.

        Example: `await db._create_memory_tables(conn)`.
        """
        await self.create_file(conn, self._target.table_files[0])

    async def _create_core_tables(self, conn: aiosqlite.Connection) -> None:
        """Run the table files after the first (Abathur: ddl-core-tables.sql) on conn.

        Example: `await db._create_core_tables(conn)`.
        """
        for name in self._target.table_files[1:]:
            await self.create_file(conn, name)

    async def _create_core_indexes(self, conn: aiosqlite.Connection) -> None:
        """Run the rendered index file (Abathur: ddl-indexes.sql) on conn. Example: `await db._create_core_indexes(conn)`."""
        await self.create_indexes(conn)

    # --- connections ----------------------------------------------------------

    async def _open_connection(self) -> aiosqlite.Connection:
        try:  # never create the file here: that is initialize()'s job
            dbfile.check_path(self.db_path, write=False)
        except DatabaseFileError as exc:
            raise DatabaseFileError("%s; call initialize() first" % exc) from None
        conn = await aiosqlite.connect(dbfile.uri(self.db_path), uri=True, timeout=dbfile.DEFAULT_BUSY_TIMEOUT_MS / 1000.0)
        try:
            for stmt in self._pragmas:
                await conn.execute(stmt)
        except BaseException:
            await conn.close()
            raise
        self._open.add(conn)
        return conn

    def connect(self) -> _Connecting:
        """An aiosqlite connection with foreign_keys=ON, busy_timeout, synchronous and wal_autocheckpoint set.

        Use it as aiosqlite's own: `async with db.connect() as conn:` (closed at the end), or
        `conn = await db.connect()` (close it yourself, or let close() do it). The file must exist:
        initialize() creates it; connect() never creates an empty file.

        Example::

            async with db.connect() as conn:
                async with conn.execute("SELECT count(*) FROM users") as cursor:
                    (n,) = await cursor.fetchone()
        """
        return _Connecting(self)

    async def close(self) -> None:
        """Close every connection this Database handed out that is still open. Idempotent.

        The Database stays usable: connect() opens new connections afterwards.

        Example: `await db.close()` at shutdown (`async with Database(...)` does it for you).
        """
        while self._open:
            conn = self._open.pop()
            await conn.close()

    # --- checks ---------------------------------------------------------------

    async def validate_foreign_keys(self) -> "list[tuple]":
        """The rows of PRAGMA foreign_key_check: (table, rowid, parent, fkid) tuples; [] when none.

        Example: `assert await db.validate_foreign_keys() == []`.
        """
        async with self.connect() as conn:
            async with conn.execute("PRAGMA foreign_key_check") as cursor:
                return [tuple(row) for row in await cursor.fetchall()]

    async def explain_query_plan(self, query: str, params: "tuple | list" = ()) -> "list[str]":
        """The detail lines of EXPLAIN QUERY PLAN for one SELECT (or WITH ... SELECT) statement.

        Anything else (several statements, INSERT/UPDATE/DELETE, PRAGMA, a WITH
        that ends in a write) raises QueryRefused; the query is never run.

        Example: `await db.explain_query_plan("SELECT * FROM users WHERE email = ?", ("a@b.c",))` gives
        ['SEARCH users USING INDEX sqlite_autoindex_users_1 (email=?)'].
        """
        query = single_select(query)
        async with self.connect() as conn:
            async with conn.execute("EXPLAIN QUERY PLAN " + query, tuple(params)) as cursor:
                return [row[3] for row in await cursor.fetchall()]

    async def integrity_check(self, full: bool = False) -> "list[str]":
        """PRAGMA quick_check (or integrity_check with full=True): ['ok'] when the file is sound.

        Example: `assert await db.integrity_check(full=True) == ["ok"]`.
        """
        async with self.connect() as conn:
            async with conn.execute("PRAGMA %s" % ("integrity_check" if full else "quick_check")) as cursor:
                return [row[0] for row in await cursor.fetchall()]


class _Connecting:
    """What Database.connect() returns: awaitable (a connection you close) and an async context manager."""

    def __init__(self, db: Database) -> None:
        self._db = db
        self._conn = None

    def __await__(self):
        return self._db._open_connection().__await__()

    async def __aenter__(self) -> aiosqlite.Connection:
        self._conn = await self._db._open_connection()
        return self._conn

    async def __aexit__(self, *exc_info: object) -> None:
        self._db._open.discard(self._conn)
        await self._conn.close()


__all__ = ["Database", "DEFAULT_LOCK_TIMEOUT_S", "NotOnThisEngine"]
