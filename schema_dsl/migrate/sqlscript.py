"""`schemagen plan --db PATH --sql`: the exact migration apply would run, as one standalone .sql file.

An application in another language (Rust with sqlx, Go, Node) can review the
file and ship it among its plain SQL migrations. It is plain SQL, no shell
dot-commands, and safe under any runner that stops at the first error
(`sqlite3 -bail`, Python's `executescript`, sqlx):

1. `PRAGMA foreign_keys = OFF; BEGIN IMMEDIATE;` The script opens its own
   transaction: inside a runner's transaction PRAGMA foreign_keys does
   nothing and a DROP would fire ON DELETE actions, so there `BEGIN` itself
   fails first (sqlx users mark the file `-- no-transaction`).
2. Guards, each an INSERT into a TEMP table whose named CHECK fails: the
   database's sqlite_master (type, name, tbl_name, sql of every object but
   sqlite_*) is exactly the one it was planned against, and foreign_keys is
   off. A failing guard stops the runner before anything changed.
3. The plan's statements (plan.statements: the one renderer).
4. apply's checks before COMMIT, as guards: sqlite_master is exactly what the
   plan gave on a scratch copy made with the backup API at export time, and
   PRAGMA foreign_key_check over plan.fk_scope shows no violation that was
   not there before the plan (counted at run time, so the script stays right
   on another file with the same structure and other rows).
5. COMMIT, then `PRAGMA foreign_keys = ON` and the persistent settings
   (journal_mode), which cannot change inside a transaction.

The export runs the finished script on a second scratch copy and refuses
(nothing written) if it does not succeed there.
"""
from __future__ import annotations

import json
import os
import sqlite3
import tempfile
from hashlib import sha256

from ..compile import render
from ..compile.target import target_for
from ..errors import ApplyError, DatabaseFileError, UnsafeMigrationError
from ..sqlite import dbfile, structure
from ..sqlite.data import foreign_key_violations
from .apply import plan_for


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


def script_text(target, plan, planned_against, before_rows, after_rows, before_sha, scope_before, scope_after):
    """The script, from the plan and what the export measured (see the module docstring)."""
    source = target.compiled.get("source") or {}
    lines = [render.statement(
        "migration_script_header", name=target.name, declaration=source.get("declaration") or target.name,
        source_sha256=source.get("sha256") or "unknown", planned_against=planned_against,
        structure_sha256=before_sha, steps=len(plan.steps), statements=len(plan.statements))]
    lines += [_comment("LOSES DATA (declared removal): %s" % loss["text"]) for loss in getattr(plan, "data_loss", ())]
    lines.append("")
    lines.append(render.statement("pragma", "foreign_keys", "OFF"))
    lines.append(render.statement("begin_immediate"))
    lines.append(render.statement("guard_table"))
    lines.append(_comment("guard: the structure this script was planned against"))
    lines.append(render.statement("guard_structure", "structure before", before_rows))
    lines.append(_comment("guard: foreign keys off, in the transaction this script opened (no ON DELETE fires)"))
    lines.append(render.statement("guard_foreign_keys_off"))
    if scope_after:
        lines.append(_comment("foreign key violations already in the data, kept and told apart from new ones"))
        lines.append(render.statement("keep_foreign_key_violations", scope_before))
    for number, step in enumerate(plan.steps, start=1):
        lines.append("")
        lines.append(_comment("step %d of %d: %s" % (number, len(plan.steps), step.title)))
        lines.append(_comment("why: %s" % step.why))
        lines += list(step.statements)
    lines.append("")
    lines.append(_comment("check before COMMIT: the structure the plan gives"))
    lines.append(render.statement("guard_structure", "structure after", after_rows))
    if scope_after:
        lines.append(_comment("check before COMMIT: no foreign key violation the migration introduced"))
        lines.append(render.statement("guard_foreign_keys", scope_after))
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
        conn = sqlite3.connect(":memory:", isolation_level=None)
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
