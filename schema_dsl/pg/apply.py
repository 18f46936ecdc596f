"""Apply and validate on PostgreSQL: the rendered statements in one transaction, then the structure checked.

What works so far (README, "PostgreSQL"): a fresh apply to a database that holds none of the declared tables,
an up-to-date apply (nothing to do), and validate. A database holding some of the declared tables but not
matching is refused here, nothing changed: pg/migration.py plans and applies that migration (and calls _apply only
for a database holding none of the declared objects).

The apply runs every statement of generated/postgresql/declaration.json in one transaction (PostgreSQL's DDL is
transactional), under `lock_timeout` and `statement_timeout` set for that transaction only. A lock not granted
in time, a statement that runs too long, or any failing statement rolls everything back: exit 2, nothing
changed. Before COMMIT the structure is read from pg_catalog and compared with the declaration's.

URLs appear in messages only masked (url.mask): a password never reaches a report or an error.
"""
from __future__ import annotations

import json
import time

import psycopg
from psycopg import errors as pgerrors

from ..compile.paths import resource_dir
from ..compile.postgresql import DECLARATION_FILE, OUT_SUBDIR, compile_declaration
from ..compile.project import load_schema, origin, refuse_foreign, stale_reason
from ..errors import ApplyError, SchemagenError, StaleFiles
from ..migrate.steps import ApplyResult, Plan, RunFile, Step
from . import bodies, catalog, notvalid
from ..sqlite.structure import HISTORY_TABLE
from .url import for_libpq, mask, scrub
from ..words import plural

DEFAULT_LOCK_TIMEOUT = "5s"
CONNECT_TIMEOUT_S = 10


# --- the compiled declaration --------------------------------------------------------

def compiled_for(decl):
    """What apply and validate run on PostgreSQL: the project's generated/postgresql/declaration.json (refused
    when stale), the shipped one, or the declaration compiled now."""
    if decl.project is not None:
        folder = decl.project.out_dir / OUT_SUBDIR
        label = "%s/%s/" % (decl.project.out, OUT_SUBDIR)
        try:
            compiled = json.loads((folder / DECLARATION_FILE).read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            raise StaleFiles("%s is stale for %s: run `%s --dialect postgresql` (%s)" % (
                label, decl.label, decl.render_command, type(exc).__name__)) from None
        reason = stale_reason(decl, compiled)
        if reason:
            raise StaleFiles("%s is stale for %s: run `%s --dialect postgresql` (%s)" % (
                label, decl.label, decl.render_command, reason))
        return compiled
    if decl.shipped:
        shipped = resource_dir("generated") / OUT_SUBDIR / DECLARATION_FILE
        if shipped.is_file():
            return json.loads(shipped.read_text(encoding="utf-8"))
    return compile_declaration(load_schema(decl), origin(decl))


# --- connecting ------------------------------------------------------------------------

def connect(url):
    """An autocommit connection (transactions are explicit); errors name the masked URL only."""
    try:
        return psycopg.connect(for_libpq(url), autocommit=True, connect_timeout=CONNECT_TIMEOUT_S)
    except psycopg.Error as exc:
        raise SchemagenError("cannot connect to %s: %s" % (mask(url), _one_line(scrub(str(exc), url)))) from None
    except Exception as exc:  # a URL libpq cannot parse
        raise SchemagenError("cannot connect to %s: %s: %s" % (mask(url), type(exc).__name__,
                                                              _one_line(scrub(str(exc), url)))) from None


def _one_line(text):
    return " ".join(str(text).split())


# --- validate --------------------------------------------------------------------------

def check(conn, compiled, database, full_integrity=False, orphans_fail=False):
    """The validation report of a connected database against the compiled declaration, in the shape SQLite's
    report has (check/validate.py's validation_report: the same keys and JSON types, so that --json, --verbose and
    --report read one shape). What only PostgreSQL has: `notes` and `not_valid_violations` (both [] on SQLite);
    what only SQLite has is empty here: `pragmas` {}, `settings` []; `explain` and `findings` are [] here and
    filled by check/pgcheck.py's complete_report (the CLI's report, Database.validate()).

    What the database has beyond the declaration (a column, index, table, UNIQUE, CHECK or foreign key of the
    user's own) is kept, as apply keeps it: listed under `extras`, not a difference (as on SQLite).
    full_integrity: also amcheck's bt_index_check on every B-tree index (or every table read once, without
    amcheck), as Database.integrity_check(full=True).
    orphans_fail: rows that break a NOT VALID constraint fail the report, as orphans fail SQLite's
    foreign_key_check (validate, and the report apply prints); without it (the structure checks inside apply and
    transfer, which keep such rows on purpose) they are listed and noted only.
    """
    expected = catalog.canonical_expected(conn, compiled["structure"])
    actual = catalog.read_structure(conn)
    diffs, notes = catalog.compare(expected, actual)
    extras = [n[:-len(catalog.KEPT)] for n in notes if n.endswith(catalog.KEPT)]
    notes = [n for n in notes if not n.endswith(catalog.KEPT)]
    diffs += body_differences(conn, compiled, actual)
    # rows already there that a NOT VALID constraint does not check (notvalid.py): reported, not a failure
    broken = notvalid.violations(conn) if actual["not_valid"] else []
    notes = notes + [notvalid.describe(v) for v in broken]
    from .leftovers import NN_PREFIX  # validate names what an interrupted `apply --online` left
    notes += ["constraint %s.%s: the NOT NULL helper of an interrupted `apply --online`; run apply again to finish" % (
        t, n) for t, n in conn.execute(
            "SELECT c.relname, k.conname FROM pg_constraint k JOIN pg_class c ON c.oid = k.conrelid "
            "WHERE c.relnamespace = %s AND k.contype = 'c' AND k.conname LIKE %s ORDER BY 1, 2",
            (catalog.current_namespace(conn), NN_PREFIX.replace("_", r"\_") + "%")).fetchall()]
    from .leftovers import conversion_leftovers  # and what an interrupted online conversion left
    notes += ["column %s.%s: the %s column of an interrupted online type conversion; run apply again to finish" % (
        t, c, state) for t, c, state in conversion_leftovers(conn, catalog.current_namespace(conn))]
    want_t, want_i = compiled["structure"]["tables"], compiled["structure"]["indexes"]
    tables_found = sum(1 for t in want_t if t in actual["tables"])
    indexes_found = sum(1 for i in want_i if i in actual["indexes"])
    integrity = integrity_problems(conn, full_integrity)
    integrity_name = "integrity (%s)" % ("every index checked: amcheck, else every table read" if full_integrity
                                         else "indexes valid and ready")
    checks = [
        ("structure matches the declaration", not diffs, plural(len(diffs), "difference") if diffs else "ok"),
        (plural(len(want_t), "table"), tables_found == len(want_t),
         "%d of %d declared tables present" % (tables_found, len(want_t))),
        (plural(len(want_i), "index", "indexes"), indexes_found == len(want_i),
         "%d of %d declared indexes present" % (indexes_found, len(want_i))),
        (integrity_name, not integrity, "; ".join(integrity[:5]) or "ok"),
        ("rows under NOT VALID constraints (the constraint checks new rows only)", not (broken and orphans_fail),
         "%s that break one, kept" % plural(sum(v["rows"] for v in broken), "existing row") if broken else
         "no violations"),
    ]
    issues = list(diffs) + ["%s: %s" % (c[0], c[2]) for c in checks[3:] if not c[1]]
    history_table = conn.execute("SELECT to_regclass(%s) IS NOT NULL", (HISTORY_TABLE,)).fetchone()[0]
    return {
        "database": database, "dialect": "postgresql",
        "ok": all(c[1] for c in checks),
        "checks": [{"check": c[0], "ok": bool(c[1]), "detail": c[2]} for c in checks],
        "violations": [notvalid.describe(v) for v in broken],
        "tables": [{"name": n, "type": "table"} for n in sorted(actual["tables"]) if n != HISTORY_TABLE],
        "indexes": sorted([{"name": n, "table": ix["table"], "automatic": False} for n, ix in actual["indexes"].items()]
                          + [{"name": n, "table": t, "automatic": True}
                             for n, t in actual["constraint_indexes"].items() if t != HISTORY_TABLE],
                          key=lambda i: (i["table"], i["name"])),
        "counts": {"tables": len([t for t in actual["tables"] if t != HISTORY_TABLE]),
                   "expected_tables": len(want_t), "indexes": len(actual["indexes"]), "expected_indexes": len(want_i)},
        "pragmas": {}, "settings": [], "explain": [], "findings": [],
        "differences": diffs, "history": last_design(conn) if history_table else None,
        "extras": extras, "issues": issues, "notes": notes,
        "not_valid_violations": [{k: v[k] for k in ("table", "constraint", "kind", "parent", "rows", "examples")}
                                 for v in broken],
    }


def integrity_problems(conn, full=False):
    """[] when sound, else the problems: indexes left INVALID or not ready (a failed CREATE INDEX CONCURRENTLY);
    with full, also every B-tree index checked with amcheck's bt_index_check when the amcheck extension is
    installed, else every table read once (the server verifies each page it reads)."""
    problems = ["index %s on %s is %s" % (name, table, "INVALID" if not valid else "not ready")
                for name, table, valid, ready in conn.execute(
                    "SELECT ic.relname, c.relname, i.indisvalid, i.indisready FROM pg_index i "
                    "JOIN pg_class ic ON ic.oid = i.indexrelid JOIN pg_class c ON c.oid = i.indrelid "
                    "WHERE c.relnamespace = current_schema()::regnamespace AND NOT (i.indisvalid AND i.indisready) "
                    "ORDER BY 1").fetchall()]
    if not full:
        return problems
    if conn.execute("SELECT 1 FROM pg_extension WHERE extname = 'amcheck'").fetchone():
        for (oid, name) in conn.execute(
                "SELECT i.indexrelid, ic.relname FROM pg_index i JOIN pg_class ic ON ic.oid = i.indexrelid "
                "JOIN pg_class c ON c.oid = i.indrelid JOIN pg_am a ON a.oid = ic.relam "
                "WHERE c.relnamespace = current_schema()::regnamespace AND a.amname = 'btree' "
                "AND i.indisvalid AND i.indisready ORDER BY 2").fetchall():
            try:
                with conn.transaction():
                    conn.execute("SELECT bt_index_check(%s)", (oid,))
            except psycopg.Error as exc:
                problems.append("index %s: %s" % (name, _one_line(exc)))
    else:
        for (table,) in conn.execute(
                "SELECT quote_ident(relname) FROM pg_class WHERE relnamespace = current_schema()::regnamespace "
                "AND relkind IN ('r', 'p') ORDER BY 1").fetchall():
            try:
                with conn.transaction():
                    conn.execute("SELECT count(*) FROM %s" % table)
            except psycopg.Error as exc:
                problems.append("table %s: %s" % (table, _one_line(exc)))
    return problems


def last_design(conn):
    """The last apply's record in schemagen's history table (pg/history.py), or None: which design the database
    was last brought to."""
    if not conn.execute("SELECT to_regclass(%s) IS NOT NULL", (HISTORY_TABLE,)).fetchone()[0]:
        return None
    keys = ("declaration", "declaration_sha256", "applied_at", "schemagen_version")
    try:
        with conn.transaction():  # a savepoint: a table of that name that is not schemagen's must not end the caller's
            row = conn.execute('SELECT %s FROM "%s" WHERE kind = \'apply\' ORDER BY id DESC LIMIT 1' % (
                ", ".join('"%s"' % k for k in keys), HISTORY_TABLE)).fetchone()
    except psycopg.Error as exc:
        return {"unreadable": " ".join((getattr(exc.diag, "message_primary", None) or str(exc)).split())}
    if row is not None and not all(isinstance(v, str) for v in row):
        return {"unreadable": "its last record of an apply has a value that is not text"}
    return None if row is None else dict(zip(keys, row))


def body_differences(conn, compiled, actual):
    """The declared views and triggers that are there with another body (pg/bodies.py: both printed by the
    server)."""
    statements = [(st["kind"], st["name"], st["sql"]) for st in compiled["statements"] if st["kind"] in ("view", "trigger")]
    if not statements:
        return []
    views, triggers = bodies.declared_bodies(statements, compiled["structure"])
    ns = catalog.current_namespace(conn)
    out = ["view '%s': %s" % (n, c["why"]) for n, c in sorted(bodies.changed_views(
        conn, ns, {n: b for n, b in views.items() if n in actual["views"]}).items())]
    out += ["trigger '%s': %s" % (n, why) for n, why in sorted(bodies.changed_triggers(
        conn, ns, {n: v for n, v in triggers.items() if n in actual["triggers"]}).items())]
    return out


def validate(url, compiled, full_integrity=False):
    """Check a PostgreSQL database against the declaration; the report (ok False: it does not match, or rows
    break a NOT VALID constraint, as orphans fail SQLite's validate)."""
    conn = connect(url)
    try:
        return check(conn, compiled, mask(url), full_integrity, orphans_fail=True)
    except psycopg.Error as exc:
        raise SchemagenError("validate %s: %s" % (mask(url), _one_line(scrub(str(exc), url)))) from None
    finally:
        conn.close()


# --- apply -----------------------------------------------------------------------------

def apply(url, compiled, lock_timeout=DEFAULT_LOCK_TIMEOUT, statement_timeout=None):
    """Create the declared schema in a database that holds none of it, in one transaction; or find it up to date."""
    database = mask(url)
    conn = connect(url)
    try:
        return _apply(conn, url, database, compiled, lock_timeout, statement_timeout)
    finally:
        conn.close()


def apply_in(conn, url, compiled, lock_timeout=DEFAULT_LOCK_TIMEOUT, statement_timeout=None):
    """apply on an open connection, inside the caller's transaction (pg/transfer.py: its own step is a savepoint,
    committed only with the caller's)."""
    return _apply(conn, url, mask(url), compiled, lock_timeout, statement_timeout)


def _apply(conn, url, database, compiled, lock_timeout, statement_timeout, after=()):
    """after: statements run after the declaration's, in the same transaction (the history record, pg/history.py)."""
    started = time.perf_counter()
    expected = compiled["structure"]
    present = _declared_present(conn, expected)
    if present:
        report = check(conn, compiled, database)
        if report["ok"]:
            return ApplyResult(database, Plan((), database=database), False, seconds=time.perf_counter() - started,
                               report=report)
        raise ApplyError("%s already holds %s of the declared objects (%s) but does not match the declaration (%s); "
                         "migrating a PostgreSQL database is not built yet: nothing was changed" % (
                             database, len(present), ", ".join(present[:5]) + (", ..." if len(present) > 5 else ""),
                             "; ".join(report["differences"][:3])))
    statements = list(compiled["statements"]) + [{"kind": "history", "name": "record", "sql": sql} for sql in after]
    current = None
    try:
        with conn.transaction():
            conn.execute("SELECT set_config('lock_timeout', %s, true)", (str(lock_timeout or "0"),))
            conn.execute("SELECT set_config('statement_timeout', %s, true)", (str(statement_timeout or "0"),))
            for current in statements:
                conn.execute(current["sql"])
            current = None
            report = check(conn, compiled, database)
            if not report["ok"]:
                raise ApplyError("%s: the structure after the statements does not match the declaration, rolled back, "
                                 "nothing changed: %s" % (database, "; ".join(report["differences"][:5])))
    except pgerrors.LockNotAvailable as exc:
        raise ApplyError("%s: a lock was not granted within lock_timeout %s (%s%s): another session holds it; rolled "
                         "back, nothing changed" % (database, lock_timeout, _where(current),
                                                    _one_line(scrub(exc.diag.message_primary or str(exc), url)))) from None
    except pgerrors.QueryCanceled as exc:
        raise ApplyError("%s: a statement ran past statement_timeout %s (%s%s); rolled back, nothing changed" % (
            database, statement_timeout, _where(current), _one_line(scrub(str(exc), url)))) from None
    except pgerrors.InvalidParameterValue as exc:
        raise ApplyError("%s: %s (a timeout is e.g. 5s, 500ms or 0 for none); nothing changed" % (
            database, _one_line(scrub(str(exc), url)))) from None
    except psycopg.Error as exc:
        raise ApplyError("%s: %s%s; rolled back, nothing changed" % (
            database, _where(current), _one_line(scrub(str(exc), url)))) from None
    seconds = time.perf_counter() - started
    return ApplyResult(database, Plan([fresh_step(compiled)], fresh=True, database=database), True, seconds=seconds,
                       statements=len(statements), report=report, step_seconds=[seconds])


def fresh_step(compiled):
    """A fresh apply as its one plan step: the compiled declaration's statements, in one transaction (as SQLite's
    fresh apply runs its DDL files; the history's record, when one is written, is not listed)."""
    change = RunFile("postgresql/declaration.json", "a new database: the declaration is created in one transaction")
    return Step("run postgresql/declaration.json (%d statements)" % len(compiled["statements"]), change.reason,
                [st["sql"] for st in compiled["statements"]], change=change)


def _where(statement):
    return "%s %s: " % (statement["kind"], statement["name"]) if statement else ""


def refuse_foreign_database(url, compiled, api=False):
    """The guard of the fallback to the shipped declaration on PostgreSQL: a database whose current schema holds
    tables, none of them declared, is another application's: refused before anything is read or changed.
    api: for Database (the message names schema=)."""
    conn = connect(url)
    try:
        rows = conn.execute("SELECT relname FROM pg_class WHERE relnamespace = %s AND relkind IN ('r', 'p') "
                            "ORDER BY relname", (catalog.current_namespace(conn),)).fetchall()
    except psycopg.Error as exc:
        raise SchemagenError("%s: %s" % (mask(url), _one_line(scrub(str(exc), url)))) from None
    finally:
        conn.close()
    refuse_foreign([r[0] for r in rows], compiled["structure"]["tables"], compiled["name"], api=api)


def _declared_present(conn, expected):
    """The declared tables and indexes (and views) that already exist in the current schema."""
    names = [*expected["tables"], *expected["indexes"], *expected.get("views", {}), *expected.get("virtual_tables", {})]
    rows = conn.execute("SELECT relname FROM pg_class WHERE relnamespace = %s AND relname = ANY(%s)",
                        (catalog.current_namespace(conn), names)).fetchall()
    found = {r[0] for r in rows}
    return [n for n in names if n in found]
