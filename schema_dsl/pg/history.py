"""The history and the data steps on PostgreSQL: the same record and the same order as on SQLite
(schema_dsl/migrate/history.py), in apply's one transaction.

`_schemagen_history` is created only for a declaration with data steps or history=True and is left out of the
catalog reading (catalog.read_structure), so no comparison or count sees it. A database that holds none of the
declared tables records every step as done without running it. Otherwise, after the renames and before the rest
is planned: the new tables are created as declared (a data step may fill them: INSERT INTO new SELECT ... FROM
old), the new columns of existing tables are added without NOT NULL, UNIQUE, a foreign key or a volatile default
(the rest of the plan adds those), then every pending data step runs (postgresql=, sql= translated, a
python= step given the psycopg connection; sqlite_only steps are recorded without running).
"""
from __future__ import annotations

import contextlib
import json
import re
import sys
import time
from hashlib import sha256

from ..version import __version__
from ..compile.postgresql import Untranslatable, alter_statement, column_type, data_step_statements
from ..errors import ApplyError, UnsafeMigrationError
from ..sqlite.structure import HISTORY_TABLE
from ..sqlite.ddl import tokenize
from ..migrate import diff as d
from ..migrate.steps import RecordHistory, RunDataStep
from .plan import change_step


def wanted(schema):
    return bool(schema.history or schema.data_steps)


def has_table(conn):
    return conn.execute("SELECT to_regclass(%s) IS NOT NULL", (HISTORY_TABLE,)).fetchone()[0]


def done(conn):
    """The data steps this database has run or recorded as done, lower-cased (a name is one name whatever its
    case, as the declaration treats it)."""
    if not has_table(conn):
        return set()
    out = set()
    for run, recorded in conn.execute('SELECT "data_steps_run", "data_steps_recorded" FROM "%s"' % HISTORY_TABLE):
        for text in (run, recorded):
            try:
                found = json.loads(text)
            except (TypeError, ValueError):
                continue
            if isinstance(found, list):
                out.update(name.lower() for name in found if isinstance(name, str))
    return out


def records(conn):
    if not has_table(conn):
        return []
    cur = conn.execute('SELECT * FROM "%s" ORDER BY "id"' % HISTORY_TABLE)
    names = [d.name for d in cur.description]
    return [dict(zip(names, row)) for row in cur.fetchall()]


def record_steps(conn, schema, comp, steps, run, recorded):
    """The steps that create the table (when missing) and write this apply's record."""
    out = []
    if conn is None or not has_table(conn):
        out.append(change_step(RecordHistory(create=True), "create table '%s'" % HISTORY_TABLE, "the declaration keeps "
                               "a history (data steps or history=True): schemagen's own table, not part of the "
                               "declared schema", [alter_statement("create_history", HISTORY_TABLE)]))
    record = {"kind": "apply", "declaration": schema.name,
              "declaration_sha256": sha256(json.dumps(comp.structure, sort_keys=True).encode("utf-8")).hexdigest(),
              "schemagen_version": __version__, "steps": json.dumps([s.title for s in steps], ensure_ascii=False),
              "data_steps_run": json.dumps(list(run), ensure_ascii=False),
              "data_steps_recorded": json.dumps(list(recorded), ensure_ascii=False), "backup": None}
    out.append(change_step(RecordHistory(record), "record this apply in '%s'" % HISTORY_TABLE,
                           "what this apply did, in the same transaction",
                           [alter_statement("insert_history", HISTORY_TABLE, record)]))
    return out


def pending(conn, schema):
    finished = done(conn)
    return [s for s in schema.data_steps if s.name.lower() not in finished]


def expand_steps(schema, comp, live):
    """The steps that make room for the data steps, not run: the new tables (a step may fill them), their late
    foreign keys, then the new columns of existing tables, added loosely (no NOT NULL, UNIQUE, key or default)."""
    out = []
    new_tables = [t.name.lower() for t in schema.ordered_tables() if t.name.lower() not in live["tables"]]
    for kind, name, sql in comp.statements:
        if kind == "table" and name in new_tables:
            out.append(change_step(d.CreateTable(schema.table(name)), "create table '%s' (before the data steps, which may "
                             "fill it)" % name, "table is new", [sql], table=name))
    for kind, name, sql in comp.statements:
        if kind == "foreign key" and name in new_tables:
            out.append(change_step(d.CreateTable(schema.table(name), "its parent is created after it"),
                             "add a foreign key to new table '%s'" % name, "its parent is created after it", [sql],
                             table=name))
    for t in schema.ordered_tables():
        have = live["tables"].get(t.name.lower())
        if have is None:
            continue
        for c in t.columns:
            if c.name.lower() in have["columns"]:
                continue
            try:
                pg_type = column_type(t, c)
            except Untranslatable:
                continue  # the declaration does not compile for PostgreSQL: refused elsewhere
            ctx = {"name": c.name, "type": pg_type, "pk": None, "not_null": False, "unique": False, "default": None,
                   "fk": None, "collate": None, "verbatim": None}
            why = "column is new; added before the data steps, which may fill it"
            out.append(change_step(d.AddColumn(t, c, why), "add column '%s'.'%s' (without its constraints: the plan after "
                             "the data steps adds them)" % (t.name, c.name), why,
                             [alter_statement("add_column", t.name, ctx)], table=t.name))
    return out


def expand_and_run(conn, schema, comp, live, database, steps):
    """Make room for the data steps (expand_steps) and run the pending ones, on conn, as they are planned; returns
    the steps run (their statements, for the plan and plan --sql)."""
    out = []
    for step in expand_steps(schema, comp, live):
        _run(conn, step, database)
        out.append(step)
    tables = {}
    for name, info in _live_tables(conn).items():
        tables[name] = info
    for ds in steps:
        try:
            statements = data_step_statements(ds, tables)
        except Untranslatable as exc:
            raise UnsafeMigrationError("%s: data step '%s' cannot be translated for PostgreSQL (%s): give postgresql= "
                                       "or sqlite_only=True; nothing was changed" % (database, ds.name, exc)) from None
        started = time.perf_counter()
        if statements is None:  # python=
            ch = RunDataStep(ds.name, run=ds.python)
            step = change_step(ch, "run data step '%s' (python)" % ds.name, ch.reason, [])
            try:
                with contextlib.redirect_stdout(sys.stderr):  # stdout is the command's own (--json: only the JSON)
                    result = ds.python(conn)
            except Exception as exc:
                raise ApplyError("%s: data step '%s' failed: %s: %s; rolled back, nothing changed" % (
                    database, ds.name, type(exc).__name__, exc)) from None
            if hasattr(result, "__await__") or (hasattr(result, "__next__") and hasattr(result, "send")):
                result.close()  # an async def or a generator function: its body never ran
                raise ApplyError("%s: data step '%s' returned a %s without running its body: python= must be a plain "
                                 "function that does the work when called with the connection; rolled back, nothing "
                                 "changed" % (database, ds.name, "coroutine" if hasattr(result, "__await__")
                                              else "generator"))
        else:
            ch = RunDataStep(ds.name, sql=statements)
            step = change_step(ch, "run data step '%s'%s" % (ds.name, " (sqlite_only: recorded, not run)"
                                                            if ds.sqlite_only else ""), ch.reason, statements,
                               data_step=ds.name)
            _run(conn, step, database)
        # apply --online runs it in its own transaction: what it is and how long it took when planned
        out.append(step.replace(detail={"data_step": ds, "seconds": time.perf_counter() - started}))
    return out


def step_record(schema, comp, step):
    """apply --online: the statement that records one data step as run, in the data step's own transaction (so a
    kill after its COMMIT never runs it again, and one before leaves no trace of it)."""
    record = {"kind": "online data step", "declaration": schema.name,
              "declaration_sha256": sha256(json.dumps(comp.structure, sort_keys=True).encode("utf-8")).hexdigest(),
              "schemagen_version": __version__, "steps": json.dumps([step.title], ensure_ascii=False),
              "data_steps_run": "[]", "data_steps_recorded": "[]", "backup": None}
    ds = step.detail["data_step"]  # a sqlite_only step is recorded as done without running, as plain apply does
    record["data_steps_recorded" if ds.sqlite_only else "data_steps_run"] = json.dumps([ds.name], ensure_ascii=False)
    return alter_statement("insert_history", HISTORY_TABLE, record)


def _live_tables(conn):
    """{table: {column: type}} of the current schema as it is now (after the renames and additions)."""
    out = {}
    for table, column, type_ in conn.execute(
            "SELECT c.relname, a.attname, format_type(a.atttypid, a.atttypmod) FROM pg_attribute a "
            "JOIN pg_class c ON c.oid = a.attrelid WHERE c.relnamespace = current_schema()::regnamespace "
            "AND c.relkind IN ('r', 'p') AND a.attnum > 0 AND NOT a.attisdropped"):
        out.setdefault(table.lower(), {})[column.lower()] = type_
    return out


_DOLLAR_QUOTED = re.compile(r"\$([A-Za-z_]\w*|)\$.*?\$\1\$", re.S)
_TRANSACTION_WORDS = {"begin", "start", "commit", "end", "rollback", "abort", "savepoint", "release", "prepare"}


def _ends_transaction(statement):
    """True when a statement of the text (outside dollar-quoted bodies) is transaction control, as its first word:
    run inside apply's transaction, a COMMIT would commit half an apply and leave the rest outside any
    transaction. (PREPARE counts only as PREPARE TRANSACTION.)"""
    tokens = tokenize(_DOLLAR_QUOTED.sub("''", statement))
    starts = [0] + [i + 1 for i, t in enumerate(tokens) if t == ("op", ";")]
    for i in starts:
        if i < len(tokens) and tokens[i][0] == "word" and tokens[i][1].lower() in _TRANSACTION_WORDS:
            if tokens[i][1].lower() != "prepare" or (i + 1 < len(tokens) and tokens[i + 1][1].lower() == "transaction"):
                return True
    return False


def _own_table(statement):
    """The first of schemagen's own tables (the _schemagen_ prefix) that a statement names, or None."""
    for kind, text in tokenize(_DOLLAR_QUOTED.sub("''", statement)):
        if kind in ("word", "ident") and text.lower().startswith("_schemagen_"):
            return text
    return None


def _run(conn, step, database):
    import psycopg  # the PostgreSQL path imports it anyway
    for statement in step.statements:
        if _ends_transaction(statement):
            raise ApplyError("%s: %s: a data step runs inside apply's one transaction and must not end it or open "
                             "another (COMMIT, ROLLBACK, BEGIN, END, SAVEPOINT, RELEASE); statement: %s; rolled "
                             "back, nothing changed" % (database, step.title, " ".join(statement.split())[:300]))
        if _own_table(statement):
            raise ApplyError("%s: %s names schemagen's own table '%s' (the _schemagen_ prefix is reserved: the history "
                             "is what makes each data step run once); statement: %s; rolled back, nothing changed" % (
                                 database, step.title, _own_table(statement), " ".join(statement.split())[:300]))
    for statement in step.statements:
        try:
            conn.execute(statement)
        except psycopg.Error as exc:
            text = " ".join((getattr(exc.diag, "message_primary", None) or str(exc)).split())
            raise ApplyError("%s: %s failed: %s; statement: %s; rolled back, nothing changed" % (
                database, step.title, text, " ".join(statement.split())[:300])) from None


COLUMNS = ("applied_at", "kind", "declaration", "declaration_sha256", "schemagen_version", "steps", "data_steps_run",
           "data_steps_recorded", "backup")


def carry_over(source, target):
    """transfer: the SQLite file's history records into PostgreSQL's (created when missing), so that a data step
    that ran on the file does not run again there; the number of records carried (0: the file has none)."""
    if source.execute("SELECT 1 FROM sqlite_master WHERE type = 'table' AND lower(name) = ?",
                      (HISTORY_TABLE,)).fetchone() is None:
        return 0
    # each column by name first: a double-quoted name SQLite does not find is read as a string ("backup")
    have = {r[0].lower() for r in source.execute("SELECT name FROM pragma_table_info(?)", (HISTORY_TABLE,))}
    missing = [c for c in ("id",) + COLUMNS if c not in have]
    if missing:
        raise UnsafeMigrationError("the file's table %r is not schemagen's history (it has no column %s); rolled back, "
                                   "nothing was changed: rename or drop that table in the file" % (
                                       HISTORY_TABLE, ", ".join(missing)))
    rows = source.execute("SELECT %s FROM \"%s\" ORDER BY id" % (", ".join('"%s"' % c for c in COLUMNS),
                                                                HISTORY_TABLE)).fetchall()
    if not has_table(target):
        target.execute(alter_statement("create_history", HISTORY_TABLE))
    for row in rows:
        target.execute('INSERT INTO "%s" (%s) VALUES (%s)' % (HISTORY_TABLE, ", ".join('"%s"' % c for c in COLUMNS),
                                                              ", ".join(["%s"] * len(COLUMNS))), row)
    return len(rows)


def read_history(url):
    """`schemagen history --db postgresql://...`: the records, oldest first (the step lists decoded)."""
    from . import apply as pg_apply  # the connection helper: only this command needs it here
    import psycopg  # see _run
    conn = pg_apply.connect(url)
    try:
        out = []
        for r in records(conn):
            for key in ("steps", "data_steps_run", "data_steps_recorded"):
                try:
                    r[key] = json.loads(r[key])
                except (TypeError, ValueError):
                    r[key] = []
            out.append(r)
        return out
    except psycopg.Error as exc:
        raise ApplyError("%s: cannot read the history: %s" % (pg_apply.mask(url), " ".join(str(exc).split()))) from None
    finally:
        conn.close()


def record_by_hand(url, names, schema):
    """`schemagen history --record NAME` on PostgreSQL: mark data steps done without running them."""
    from . import apply as pg_apply  # see read_history
    bad = [n for n in names if not n.strip() or n != n.strip()]
    if bad:
        raise UnsafeMigrationError("history --record: %s is not a data step's name (expected a non-empty name without "
                                   "surrounding white space); nothing was changed" % ", ".join(repr(n) for n in bad))
    names = list(dict.fromkeys(names))
    if schema is not None:
        declared = {s.name.lower() for s in schema.data_steps}
        unknown = [n for n in names if n.lower() not in declared]
        if unknown:
            raise UnsafeMigrationError("history --record: the declaration '%s' has no data step %s (it declares: %s); "
                                       "nothing was changed" % (schema.name, ", ".join(repr(n) for n in unknown),
                                                                ", ".join(s.name for s in schema.data_steps)
                                                                or "none"))
    conn = pg_apply.connect(url)
    try:
        with conn.transaction():
            already = done(conn)
            fresh = [n for n in names if n.lower() not in already]
            if fresh:
                if not has_table(conn):
                    conn.execute(alter_statement("create_history", HISTORY_TABLE))
                record = {"kind": "record", "declaration": schema.name if schema is not None else "(not given)",
                          "declaration_sha256": "unknown", "schemagen_version": __version__, "steps": "[]",
                          "data_steps_run": "[]", "data_steps_recorded": json.dumps(fresh, ensure_ascii=False),
                          "backup": None}
                conn.execute(alter_statement("insert_history", HISTORY_TABLE, record))
        return fresh
    finally:
        conn.close()
