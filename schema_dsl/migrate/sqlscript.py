"""`schemagen plan --db PATH --sql`: the exact migration apply would run, as one standalone .sql file.

An application in another language (Rust with sqlx, Go, Node) can review the
file and ship it among its plain SQL migrations. It is plain SQL, no shell
dot-commands, and safe under any runner that stops at the first error
(`sqlite3 -bail`, Python's `executescript`, sqlx):

1. `PRAGMA foreign_keys = OFF`, the TEMP guard table, `BEGIN IMMEDIATE`. The
   script opens its own transaction: inside a runner's transaction PRAGMA
   foreign_keys does nothing and a DROP would fire ON DELETE actions, so there
   `BEGIN` itself fails first (sqlx users mark the file `-- no-transaction`).
2. Guards, each an INSERT OR ROLLBACK into the TEMP table whose named CHECK
   fails: the database's sqlite_master (type, name, tbl_name, sql of every
   object but sqlite_*) is exactly the one it was planned against, and
   foreign_keys is off.
3. The plan's statements (plan.statements: the one renderer). A statement that
   can fail on the data cannot fail alone: a CREATE UNIQUE INDEX is preceded by
   a guard that its keys hold no duplicate, and an INSERT or UPDATE (a rebuild
   copy, a fill) runs as INSERT/UPDATE OR ROLLBACK, so a UNIQUE, NOT NULL or
   CHECK it breaks ends the transaction; after a rebuild copy a guard checks that
   the copy holds every row of its source, since an error that is not a
   constraint (a using= expression that raises) fails the copy without ending
   the transaction. For the same reason every statement that changes rows (a
   data step's, a fill, a repair, a copy) runs as the body of a TEMP trigger
   fired by one row of temp._schemagen_run: such an error aborts the firing
   INSERT, its row is missing, and the guard after it ends the transaction.
   (A statement SQLite does not take as a trigger body, a WITH or a qualified
   table name, runs bare.) (ALTER TABLE ADD COLUMN never fails
   on the data: the planner adds a column that way only where SQLite takes it
   on any rows, diff.add_column_blocker; a new CHECK is a rebuild.)
4. apply's checks before COMMIT, as guards: sqlite_master is exactly what the
   plan gave on a scratch copy made with the backup API at export time, and
   PRAGMA foreign_key_check over plan.fk_scope shows no violation that was
   not there before the plan (counted at run time, so the script stays right
   on another file with the same structure and other rows).
5. COMMIT, then `PRAGMA foreign_keys = ON` and the persistent settings
   (journal_mode), which cannot change inside a transaction.

No runner can commit a part. A failing guard or statement that rolls back ends
the transaction; a runner that goes on after an error (sqlite3 without -bail)
then meets `SAVEPOINT schemagen`, which opens a new transaction for what follows,
and the last guard before COMMIT ('still open': the row inserted right after
BEGIN is still there) rolls that one back too, so the COMMIT finds no
transaction. Python's executescript, run again after a failure, finds no open
transaction to commit, except after an error that is not a constraint (such an
error never ends an SQLite transaction, and executescript stops at it): a
runner must roll back or close the connection after an error, never commit. An up-to-date database gets a script of a few comment
lines that changes nothing.

The export runs the finished script on a second scratch copy and refuses
(nothing written) if it does not succeed there.
"""
from __future__ import annotations

import json
import os
import re
import sqlite3
import tempfile
from hashlib import sha256

from ..compile import render
from ..compile.target import target_for
from ..errors import ApplyError, DatabaseFileError, UnsafeMigrationError
from ..sqlite import dbfile, ddl, structure
from ..sqlite.quote import quote_identifier
from ..sqlite.structure import HISTORY_TABLE
from ..sqlite.data import foreign_key_violations
from .apply import plan_for
from ..words import plural


def schema_rows(conn):
    """(type, name, tbl_name, sql) of every object in sqlite_master but sqlite_*, sorted: what the guards compare."""
    return sorted(tuple(r) for r in conn.execute(render.statement("schema_rows")).fetchall())


def structure_sha256(conn):
    """sha256 of the structure (structure.read_structure) as canonical JSON."""
    text = json.dumps(structure.read_structure(conn), sort_keys=True, ensure_ascii=False)
    return sha256(text.encode("utf-8")).hexdigest()


def _scratch_copy(conn, folder, name):
    """A copy of conn's main database made with the backup API, in a file in folder."""
    path = os.path.join(folder, name)
    copy = sqlite3.connect(path, isolation_level=None)
    conn.backup(copy)
    return copy


def _existing(conn, tables):
    found = {r[0].lower() for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
    return [t for t in tables if t.lower() in found]


def _persistent_settings(target):
    """The persistent settings of pragmas.sql set after COMMIT (journal_mode); never the header ones, which
    the plan sets in its transaction."""
    out = []
    for stmt in dbfile.split_statements(target.files["pragmas.sql"]):
        words = stmt.split()
        name = words[1].split("=")[0].lower() if len(words) > 1 else ""
        if name in target.persistent_pragmas and name not in structure.HEADER_PRAGMAS:
            out.append(stmt[:stmt.index(";") + 1] if ";" in stmt else stmt + ";")
    return out


def _comment(text):
    return "-- " + " ".join(str(text).split())




_ROLLING = re.compile(r"(INSERT|UPDATE)(\s+OR\s+(?:ABORT|FAIL|ROLLBACK))?\s", re.I)


def _or_rollback(stmt):
    """An INSERT or UPDATE of a step as INSERT OR ROLLBACK / UPDATE OR ROLLBACK (a rebuild copy, a fill): a
    UNIQUE, NOT NULL or CHECK it breaks ends the whole transaction instead of the statement alone. None for
    any other statement (an OR IGNORE or OR REPLACE, which the planner never writes, keeps its meaning). OR
    ROLLBACK replaces OR ABORT, which the copy carries only to override a declared ON CONFLICT clause; a
    ROLLBACK keeps every row just the same, or none."""
    match = _ROLLING.match(stmt)
    if match is None:
        return None
    return "%s OR ROLLBACK %s" % (match.group(1).upper(), stmt[match.end():])


def _span_text(sql, spans):
    return sql[spans[0][2]:spans[-1][3]] if spans else ""


def _unique_index_guard(stmt):
    """(what, message, condition) for a CREATE UNIQUE INDEX: its keys (as written) hold no duplicate among the
    rows it covers; None for any other statement."""
    spans = ddl.token_spans(stmt)
    words = [t[1].lower() if t[0] == "word" else None for t in spans[:3]]
    if words[:3] != ["create", "unique", "index"]:
        return None
    tokens = [(k, t) for k, t, _, _ in spans]
    on = next(i for i, t in enumerate(tokens) if t[0] == "word" and t[1].lower() == "on")
    name = tokens[on - 1][1]
    table = _span_text(stmt, spans[on + 1:on + 2])
    start = next(i for i in range(on, len(tokens)) if tokens[i] == ("op", "("))
    close = ddl.matching_paren(tokens, start)
    keys, item = [], []
    for i in range(start + 1, close + 1):
        if i == close or (tokens[i] == ("op", ",") and not _depth(tokens, start + 1, i)):
            if item and item[-1][0] == "word" and item[-1][1].lower() in ("asc", "desc"):
                item = item[:-1]
            keys.append(_span_text(stmt, item))
            item = []
        else:
            item.append(spans[i])
    rest = spans[close + 1:]
    if rest and rest[-1][1] == ";":
        rest = rest[:-1]
    where = _span_text(stmt, rest[1:]) if rest and rest[0][0] == "word" and rest[0][1].lower() == "where" else None
    what = "unique index %s" % name
    message = "unique index %s cannot be built: rows of %s share its key" % (quote_identifier(name), table)
    return what, message, render.statement("no_duplicate_keys", table, keys, where)


_COPY = re.compile(r'INSERT\s+(?:OR\s+\w+\s+)?INTO\s+"((?:[^"]|"")*)"\s*\(.*\bFROM\s+"((?:[^"]|"")*)"\s*;?\s*$', re.S | re.I)


def _copy_guard(stmt):
    """(what, message, condition) for a rebuild copy (INSERT INTO "_schemagen_new_t" ... SELECT ... FROM "t"):
    afterwards the copy holds every row of its source. An error that is not a constraint (a using= expression
    that raises, "malformed JSON") fails the copy without ending the transaction, whatever OR ROLLBACK says; a
    runner that goes on (sqlite3 without -bail) would then drop the source and rename the empty copy into
    its place, and every later guard would pass. None for any other statement."""
    match = _COPY.match(stmt)
    if match is None or not match.group(1).startswith("_schemagen_new_"):
        return None
    copy, source = (name.replace('""', '"') for name in match.groups())
    what = "copy of %s" % source
    message = "the copy of table %s does not hold every row (a statement before failed)" % quote_identifier(source)
    return what, message, render.statement("same_row_count", copy, source)


_WRITES = re.compile(r"\s*(INSERT|UPDATE|DELETE|REPLACE)\s", re.I)


def _in_trigger(stmt, _probe=[]):
    """Whether stmt changes rows and SQLite takes it as a trigger's body (no WITH, DEFAULT VALUES, qualified
    table name, ORDER BY/LIMIT or RETURNING there): such a statement runs in a TEMP trigger (run_statement),
    so that an error that is not a constraint is seen by the guard after it."""
    if not _WRITES.match(stmt):
        return False
    if not _probe:
        _probe.append(dbfile.scratch())
        _probe[0].execute("CREATE TEMP TABLE _schemagen_run (n INTEGER PRIMARY KEY)")
    conn = _probe[0]
    try:
        conn.execute(render.statement("run_statement", 0, stmt).split("\nINSERT INTO temp._schemagen_run")[0])
    except sqlite3.Error:
        return False
    conn.execute('DROP TRIGGER "_schemagen_run_0"')
    return True


def _depth(tokens, start, stop):
    depth = 0
    for tok in tokens[start:stop]:
        depth += tok == ("op", "(")
        depth -= tok == ("op", ")")
    return depth


def _guarded_steps(plan):
    """The script's steps: (number, step, [(guard or None, statement, reopens)]) and the data guards' (what,
    message) pairs for the guard table. A statement that can fail on the data is preceded by a guard that
    tests its precondition (a UNIQUE index), or is itself made to roll back (INSERT and UPDATE: OR ROLLBACK);
    after either, SAVEPOINT reopens a transaction for a runner that goes on after an error."""
    out, data_guards, seen, ran = [], [], {}, 0
    # the history existed when planned (the structure guard holds it to that): each data step's guard reads it
    history = not any(type(s.change).__name__ == "RecordHistory" and s.change.create for s in plan.steps)
    for number, step in enumerate(plan.steps, start=1):
        items = []
        if history and type(step.change).__name__ == "RunDataStep":
            what = "data step %d" % number
            data_guards.append((what, "data step '%s' is already recorded as run in %s (by apply, or by this script "
                                      "run before)" % (step.change.name, HISTORY_TABLE)))
            items.append((render.statement("guard_data", what, render.statement(
                "data_step_not_recorded", HISTORY_TABLE, step.change.name)), None, False))
        statements = list(step.statements)
        if type(step.change).__name__ == "RunDataStep" and len(statements) > 1 and all(
                _in_trigger(_or_rollback(x) or x) for x in statements):
            # a data step's statements in one trigger body: last_insert_rowid() and changes() carry from one to the
            # next as they do when apply runs them (a trigger restores both when it ends)
            statements = ["\n".join(_or_rollback(x) or x for x in statements)]
        for stmt in statements:
            guard = _unique_index_guard(stmt)
            if guard is not None:
                what, message, condition = guard
                seen[what] = seen.get(what, 0) + 1
                if seen[what] > 1:
                    what = "%s (%d)" % (what, seen[what])
                data_guards.append((what, message))
                items.append((render.statement("guard_data", what, condition), stmt, False))
                continue
            rolling = _or_rollback(stmt)
            if _in_trigger(rolling or stmt):
                # an error that is not a constraint aborts the firing INSERT: its row is missing, and the guard
                # after it ends the transaction (a constraint under OR ROLLBACK already has)
                ran += 1
                what = "statement %d" % ran
                data_guards.append((what, "step %d of %d (%s) failed" % (number, len(plan.steps), step.title)))
                items.append((None, render.statement("run_statement", ran, rolling or stmt), True))
                items.append((render.statement("guard_data", what, render.statement("ran_statement", ran)), None,
                              False))
            else:
                items.append((None, rolling, True) if rolling is not None else (None, stmt, False))
            copied = _copy_guard(stmt)
            if copied is not None:  # right after the copy, before the DROP of its source: a guard alone
                what, message, condition = copied
                data_guards.append((what, message))
                items.append((render.statement("guard_data", what, condition), None, False))
        out.append((number, step, items))
    return out, data_guards


def script_text(target, plan, planned_against, before_rows, after_rows, before_sha, scope_before, scope_after):
    """The script, from the plan and what the export measured (see the module docstring)."""
    source = target.compiled.get("source") or {}
    lines = [render.statement(
        "migration_script_header", name=target.name, declaration=source.get("declaration") or target.name,
        source_sha256=source.get("sha256") or "unknown", planned_against=planned_against,
        structure_sha256=before_sha, steps=plural(len(plan.steps), "step"),
        statements=plural(len(plan.statements), "statement"))]
    if not plan.steps:
        # up to date: nothing to guard, nothing to run (the structure guards alone would list every object twice)
        lines.append(_comment("up to date: the database already matches the declaration; this script changes nothing"))
        lines += _persistent_settings(target)
        return "\n".join(lines) + "\n"
    lines += [_comment("LOSES DATA (declared removal): %s" % loss["text"]) for loss in getattr(plan, "data_loss", ())]
    steps, data_guards = _guarded_steps(plan)
    reopen = render.statement("reopen")
    lines.append("")
    lines.append(render.statement("pragma", "foreign_keys", "OFF"))
    lines.append(render.statement("guard_table", data_guards))
    lines.append(render.statement("begin_immediate"))
    lines.append(render.statement("guard_opened"))
    lines.append(_comment("guard: the structure this script was planned against"))
    lines.append(render.statement("guard_structure", "structure before", before_rows))
    lines.append(reopen)
    lines.append(_comment("guard: foreign keys off, in the transaction this script opened (no ON DELETE fires)"))
    lines.append(render.statement("guard_foreign_keys_off"))
    lines.append(reopen)
    if scope_after:
        lines.append(_comment("foreign key violations already in the data, kept and told apart from new ones"))
        lines.append(render.statement("keep_foreign_key_violations", scope_before))
    for number, step, items in steps:
        lines.append("")
        lines.append(_comment("step %d of %d: %s" % (number, len(plan.steps), step.title)))
        lines.append(_comment("why: %s" % step.why))
        for guard, stmt, reopens in items:
            if guard is not None and stmt is None:
                lines.append(_comment("guard: the statement above ran" if "_schemagen_run" in guard else
                                      "guard: the history does not record this data step yet" if "json_each" in guard
                                      else "guard: the copy holds every row"))
                lines.append(guard)
                lines.append(reopen)
                continue
            if guard is not None:
                lines.append(_comment("guard: the data allows the next statement"))
                lines.append(guard)
                lines.append(reopen)
            lines.append(stmt)
            if reopens:
                lines.append(reopen)
    lines.append("")
    lines.append(_comment("check before COMMIT: the structure the plan gives"))
    lines.append(render.statement("guard_structure", "structure after", after_rows))
    lines.append(reopen)
    if scope_after:
        lines.append(_comment("check before COMMIT: no foreign key violation the migration introduced"))
        lines.append(render.statement("guard_foreign_keys", scope_after))
        lines.append(reopen)
    lines.append(_comment("check before COMMIT: no statement above ended the transaction"))
    lines.append(render.statement("guard_still_open"))
    lines.append(render.statement("drop_guards"))
    lines.append(render.statement("commit"))
    lines.append(_comment("after COMMIT: settings that cannot change inside a transaction"))
    lines.append(render.statement("pragma", "foreign_keys", "ON"))
    lines += _persistent_settings(target)
    return "\n".join(lines) + "\n"


def export_script(path, schema=None, files=None, guard=None):
    """The migration script for the database at path (only read), as text.

    schema, files, guard: as for apply.plan_database. UnsafeMigrationError or ApplyError when apply would
    refuse or fail (nothing to export).
    """
    path = os.fspath(path)
    target = target_for(schema, files)
    if os.path.exists(path):
        dbfile.check_path(path, write=False)
        conn = dbfile.open_existing(path, "ro")
        planned_against = os.path.basename(path)
    else:
        dbfile.check_path(path, write=True)
        conn = dbfile.scratch()
        planned_against = "%s (a new file)" % os.path.basename(path)
    try:
        with tempfile.TemporaryDirectory(prefix="schemagen-sql-") as folder:
            try:
                conn.execute("BEGIN")
                plan = plan_for(conn, target, guard)
                if target.compiled.get("history"):
                    from .history import refuse_python_steps  # only a declaration with data steps has any
                    refuse_python_steps(plan)
                before_rows = schema_rows(conn)
                before_sha = structure_sha256(conn)
                first = _scratch_copy(conn, folder, "plan.db")
                second = _scratch_copy(conn, folder, "script.db")
                conn.execute("ROLLBACK")
            except sqlite3.Error as exc:
                raise DatabaseFileError(dbfile.describe_sqlite_error(path, exc)) from None
            try:
                scope = list(plan.fk_scope)
                after_rows = _run_plan(first, target, plan, scope)
                text = script_text(target, plan, planned_against, before_rows, after_rows, before_sha,
                                   _existing(first, scope), scope)
                _try_script(second, text)
            finally:
                first.close()
                second.close()
    finally:
        conn.close()
    return text


def _run_plan(conn, target, plan, scope):
    """Run the plan on a scratch copy as apply does; the sqlite_master rows it gives."""
    conn.execute("PRAGMA foreign_keys = OFF")
    conn.execute("BEGIN IMMEDIATE")
    try:
        existing = _existing(conn, scope)
        before = {(v["table"], v["rowid"], v["parent"]) for v in foreign_key_violations(conn, existing)}
        for number, step in enumerate(plan.steps, start=1):
            for stmt in step.statements:
                try:
                    conn.execute(stmt)
                except sqlite3.Error as exc:
                    raise ApplyError("step %d of %d (%s) failed on a scratch copy: %s; statement: %s" % (
                        number, len(plan.steps), step.title, exc, " ".join(stmt.split())[:300])) from None
        problems = [m for k, m in structure.compare(target.structure, structure.read_structure(conn)) if k != "extra"]
        if problems:
            raise ApplyError("after the plan the structure still differs (on a scratch copy): " + "; ".join(problems[:10]))
        introduced = [v for v in foreign_key_violations(conn, scope) if (v["table"], v["rowid"], v["parent"]) not in before]
        if introduced:
            raise UnsafeMigrationError("the migration would introduce %d foreign key violations (on a scratch copy); no "
                                       "script written" % len(introduced))
        return schema_rows(conn)
    finally:
        conn.execute("ROLLBACK")


def _try_script(conn, text):
    """Run the finished script on a scratch copy; ApplyError when it does not run through."""
    try:
        conn.executescript(text)
    except sqlite3.Error as exc:
        raise ApplyError("the exported script fails on a copy of the database it was planned against (%s); no "
                         "script written" % exc) from None
