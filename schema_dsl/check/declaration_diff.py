"""`schemagen diff FROM TO`: what a declaration change does, linted before it ships.

Each side is a declaration SPEC (as --schema takes it), `.` (the working
tree's declaration: the project's, else the shipped one), or a git revision
(`HEAD~1`, a tag, a sha). A side names a revision when it is neither an
existing declaration file nor `abathur` and `git rev-parse` knows it.

- A revision side is read as data: that revision's committed compiled
  declaration (`<out>/declaration.json`, <out> from [tool.schemagen], default
  generated) and the rendered DDL files it names. Only when the revision has
  no declaration.json is its project exported (`git archive`) into a
  temporary folder and its declaration file loaded (the result says so).
- The FROM side becomes an in-memory database (its rendered CREATE
  statements, as a fresh apply runs them); it is introspected and the TO
  declaration is planned against it with the planner apply uses
  (migrate.diff.diff, migrate.plan.migration_plan), so the change reads as
  `plan` would print it.
- A TO side that is a revision has no model: it is reconstructed from its
  rendered DDL the way `schemagen inspect` reads a database. A compiled
  declaration does not record `renamed_from` or `backfill`, so there a rename
  reads as a new column (the old one kept) and fills are unknown. The usual
  uses, `diff HEAD~1 .` and `diff HEAD~1 SPEC`, have the full model on the TO
  side.

The lint: what loses data (declared removals, once the planner has them; a
table or column only FROM has is kept, never dropped), what needs a table
rebuild (RebuildTable with its Reason records), and what existing rows may
not fit: a column that becomes NOT NULL, a new UNIQUE, CHECK or foreign key.
With `db`, those are counted in that database (opened read-only) and each
rebuild gets an expected write-lock time: its row count times a rate
measured on the spot (up to SAMPLE_ROWS rows of the table copied into the
declared table, with its indexes, in an in-memory scratch database).
"""
from __future__ import annotations

import json
import os
import re
import sqlite3
import subprocess
import tarfile
import tempfile
import time
from io import BytesIO
from pathlib import Path

import attrs

from ..compile import render
from ..compile.project import DEFAULT_OUT, find_project, load_declaration, load_schema, origin, resolve
from ..compile.target import DECLARATION_FILE, Target
from ..errors import SchemagenError, UnsafeMigrationError
from ..migrate import diff as d
from ..migrate.write_declaration import declaration_text, load_text
from ..migrate.introspect import read_live
from ..migrate.plan import format_plan, fresh_plan, migration_plan
from ..sqlite import dbfile
from ..words import plural

SAMPLE_ROWS = 20000
WORKING_TREE = "."


class Side:
    """One side of a diff: a Target, what it is, and how it was read."""

    __slots__ = ("text", "kind", "label", "target", "note", "reconstructed")

    def __init__(self, text, kind, label, target, note=None, reconstructed=False):
        self.text, self.kind, self.label, self.target = text, kind, label, target
        self.note, self.reconstructed = note, reconstructed

    def as_dict(self):
        source = self.target.compiled.get("source") or {}
        return {"side": self.text, "kind": self.kind, "label": self.label, "declaration": source.get("declaration"),
                "source_sha256": source.get("sha256"), "note": self.note, "reconstructed": self.reconstructed}


# --- the sides ----------------------------------------------------------------------------

def _git(args, cwd, binary=False):
    try:
        done = subprocess.run(["git", *args], cwd=str(cwd), capture_output=True)
    except OSError as exc:
        raise SchemagenError("diff: cannot run git (%s)" % exc) from None
    if done.returncode != 0:
        return None
    return done.stdout if binary else done.stdout.decode("utf-8")


def _is_spec(text, cwd):
    if text == "abathur" or text.startswith("abathur:"):
        return True
    head = text.rpartition(":")[0] if re.search(r":[A-Za-z_]\w*$", text) else text
    return (head.endswith(".py") or "/" in head or os.sep in head) and (Path(cwd) / head).is_file()


def _revision(text, cwd):
    """The full sha of a git revision, or None when text names none."""
    found = _git(["rev-parse", "--verify", "--quiet", text + "^{commit}"], cwd)
    return found.strip() if found else None


def read_side(text, cwd=None):
    """The Side a command-line argument names (see the module docstring)."""
    cwd = Path(cwd or os.getcwd()).resolve()
    if text == WORKING_TREE:
        decl = resolve(None, cwd)
        return Side(text, "working tree", "%s (working tree)" % decl.label,
                    Target.from_schema(load_schema(decl), origin=origin(decl)))
    if not _is_spec(text, cwd):
        sha = _revision(text, cwd)
        if sha is not None:
            return _revision_side(text, sha, cwd)
    decl = resolve(text, cwd)
    return Side(text, "spec", decl.label, Target.from_schema(load_schema(decl), origin=origin(decl)))


def _revision_side(text, sha, cwd):
    top = Path((_git(["rev-parse", "--show-toplevel"], cwd) or "").strip() or cwd).resolve()
    project = find_project(cwd)
    root = project.root.resolve() if project is not None else top
    out = project.out if project is not None else DEFAULT_OUT
    rel = Path(os.path.relpath(root / out, top)).as_posix()
    short = sha[:12]
    compiled_text = _git(["show", "%s:%s/%s" % (sha, rel, DECLARATION_FILE)], top)
    if compiled_text is not None:
        try:
            compiled = json.loads(compiled_text)
        except ValueError as exc:
            raise SchemagenError("diff %s: %s/%s at %s is not JSON (%s)" % (text, rel, DECLARATION_FILE, short, exc)) from None
        files = {}
        for name in (*compiled.get("table_files", ()), compiled.get("index_file"), "pragmas.sql"):
            found = _git(["show", "%s:%s/%s" % (sha, rel, name)], top) if name else None
            if found is not None:
                files[name] = found
        target = Target(files, compiled)
        target._load = lambda: _reconstruct(target)
        source = compiled.get("source") or {}
        return Side(text, "revision", "%s (%s/%s at %s)" % (text, rel, DECLARATION_FILE, short), target,
                    note="read %s/%s committed at %s (declaration %s, source sha256 %s)" % (
                        rel, DECLARATION_FILE, short, source.get("declaration"), (source.get("sha256") or "?")[:16]),
                    reconstructed=True)
    return _fallback_side(text, sha, top, root, rel)


def _fallback_side(text, sha, top, root, rel):
    """No compiled declaration at that revision: export the project at it and load its declaration file."""
    project_rel = Path(os.path.relpath(root, top)).as_posix()
    archive = _git(["archive", "--format=tar", sha, "--", project_rel], top, binary=True)
    if archive is None:
        raise SchemagenError("diff %s: neither %s/%s nor the project is in that revision" % (text, rel, DECLARATION_FILE))
    with tempfile.TemporaryDirectory(prefix="schemagen-diff-") as folder:
        return _load_exported(text, sha, archive, folder, project_rel, rel)


def _load_exported(text, sha, archive, folder, project_rel, rel):
    with tarfile.open(fileobj=BytesIO(archive)) as tar:
        members = [m for m in tar.getmembers() if (m.isfile() or m.isdir()) and not m.name.startswith(("/", ".."))
                   and ".." not in Path(m.name).parts]
        tar.extractall(folder, members=members, filter="data")
    old_root = Path(folder) / project_rel
    project = find_project(old_root)
    if project is None or project.root.resolve() != old_root.resolve():
        raise SchemagenError("diff %s: that revision has no %s/%s and no [tool.schemagen] project to load" % (
            text, rel, DECLARATION_FILE))
    spec = project.declaration
    if not _is_spec(spec, old_root) and all(p.isidentifier() for p in spec.split(":")[0].split(".")):
        module, _, name = spec.partition(":")  # package.module: the exported file, not the working tree's module
        spec = module.replace(".", "/") + ".py" + (":" + name if name else "")
    schema = load_declaration(spec, relative_to=old_root)
    return Side(text, "revision", "%s (%s at %s, loaded)" % (text, project.declaration, sha[:12]),
                Target.from_schema(schema),
                note="%s has no %s/%s: loaded its declaration file %s instead (the old Python ran)" % (
                    sha[:12], rel, DECLARATION_FILE, project.declaration))


def _create_statements(target):
    """The statements a fresh apply of target runs: its rendered DDL files, else the compiled CREATE statements."""
    names = (*target.table_files, target.index_file)
    if all(n in target.files for n in names):
        return fresh_plan(target).statements
    statements = target.compiled.get("statements", {})
    return list(statements.get("create_table", {}).values()) + list(statements.get("create_index", {}).values())


def _database(target):
    conn = dbfile.scratch()
    for stmt in _create_statements(target):
        if stmt.upper().startswith("PRAGMA"):
            continue
        conn.execute(stmt)
    return conn


def _reconstruct(target):
    """A model of a compiled declaration, read back from its CREATE statements (as `schemagen inspect` reads)."""
    conn = _database(target)
    try:
        schema = load_text(declaration_text(conn, target.name), "compiled declaration %r" % target.name)
    finally:
        conn.close()
    return with_carried(schema, target.compiled)


def _one_or_more(names):
    return None if not names else names[0] if len(names) == 1 else tuple(names)


def _from_revision(connection):
    raise SchemagenError("a python= data step read from a committed declaration.json cannot run")


def with_carried(schema, compiled):
    """A model read back from DDL, given what the compiled declaration carries beside it (render.carried): former
    names, backfill=, using=, repair=, the declared removals, the data steps and the history flag."""
    from ..model import DataStep, Removed, evolve, named  # only a revision side needs them
    carried = {name.lower(): entry for name, entry in (compiled.get("carried") or {}).items()}
    tables = []
    for t in schema.tables:
        entry = carried.get(t.name.lower(), {})
        columns = {name.lower(): c for name, c in entry.get("columns", {}).items()}
        cols = [evolve(c, renamed_from=_one_or_more(columns.get(c.name.lower(), {}).get("renamed_from")),
                       backfill=columns.get(c.name.lower(), {}).get("backfill"),
                       using=columns.get(c.name.lower(), {}).get("using"),
                       using_postgresql=columns.get(c.name.lower(), {}).get("using_postgresql"))
                if c.name.lower() in columns else c for c in t.columns]
        repairs = {(tuple(x.lower() for x in r["columns"]), r["ref_table"].lower()): r["repair"]
                   for r in entry.get("repairs", ())}
        fks = [evolve(f, repair=repairs.get((tuple(x.lower() for x in f.columns), f.ref_table.lower())))
               for f in t.foreign_keys]
        tables.append(evolve(t, columns=cols, foreign_keys=fks,
                             renamed_from=_one_or_more(entry.get("renamed_from")) or t.renamed_from))
    removed = [Removed(r["kind"], r["name"], r.get("reason") or "declared removed", r.get("table"))
               for r in compiled.get("removed") or ()
               if not (r["kind"] == "column" and named(tables, r.get("table") or "") is None)]
    steps = [DataStep(x["name"], sql=x.get("sql"), postgresql=x.get("postgresql"), sqlite_only=bool(x.get("sqlite_only")),
                      python=_from_revision if x.get("python") else None) for x in compiled.get("data_steps") or ()]
    return evolve(schema, tables=tables, removed=tuple(schema.removed) + tuple(removed), data_steps=steps,
                  history=bool(compiled.get("history")))


# --- the diff and its lint ----------------------------------------------------------------

@attrs.frozen
class DiffResult:
    source: Side
    dest: Side
    changes: tuple
    plan: object                 # migrate.plan.Plan, None when apply would refuse the change (refused says why)
    refused: object
    loses_data: tuple
    kept: tuple
    rebuilds: tuple
    risks: tuple
    db: object = None
    data_steps: tuple = ()       # the data steps TO adds ({"name", "sql", "python", "text"})

    @property
    def can_lose_data(self):
        """What --strict fails on: a loss not counted (no --db), or counted above 0 (a conversion or repair that
        finds nothing to lose in that database loses nothing there; a removal always does)."""
        return [x for x in self.loses_data if x["kind"] in ("table", "column") or x["rows"] is None or x["rows"] > 0]

    @property
    def violations(self):
        return sum(r["violations"] or 0 for r in self.risks)

    def as_dict(self):
        return {"from": self.source.as_dict(), "to": self.dest.as_dict(), "db": self.db,
                "changes": len(self.changes), "refused": self.refused, "loses_data": list(self.loses_data),
                "kept": list(self.kept), "rebuilds": list(self.rebuilds), "risks": list(self.risks),
                "data_steps": list(self.data_steps),
                "violations": self.violations}


def _clean_step(step):
    """A step planned on an empty database: its row counts are not facts about any real file."""
    return step.replace(rows=None, title=re.sub(r" \((copies )?\d+ rows?\)$", "", step.title))


def diff_declarations(source, dest, db=None):
    """The change from one Side to another, linted; db: a database to check the risks against (only read)."""
    conn = _database(source.target)
    try:
        live = read_live(conn)
        schema = dest.target.schema
        changes = tuple(d.diff(schema, live))
        refused = None
        plan = None
        try:
            plan = migration_plan(conn, dest.target, live)
            plan = plan.replace(steps=[_clean_step(s) for s in plan.steps], touches_rows=False)
            if getattr(plan, "data_loss", None):
                plan = plan.replace(data_loss=())  # counted on an empty database; the lint says what goes
        except UnsafeMigrationError as exc:
            refused = str(exc)
        kept = tuple(d.extras(schema, live))
    finally:
        conn.close()
    loses = _data_loss(changes) + _repair_loss(changes, live)
    type_risks = _type_changes(changes, live)
    data_steps = _new_data_steps(source.target, dest.target)
    rebuilds = [{"table": c.table.name, "reasons": [{"kind": r.kind, "columns": list(r.columns), "text": r.text}
                                                    for r in c.reasons],
                 "rows": None, "lock_seconds": None, "rate_rows_per_second": None, "sampled_rows": None}
                for c in changes if isinstance(c, d.RebuildTable)]
    risks = _risks(changes, schema) + type_risks
    if db is not None:
        _check_against(db, changes, schema, dest.target, loses, rebuilds, risks)
    return DiffResult(source, dest, changes, plan, refused, loses, kept, tuple(rebuilds), tuple(risks),
                      os.fspath(db) if db is not None else None, tuple(data_steps))


def _new_data_steps(source, dest):
    """The data steps TO declares that FROM does not: each runs once on every existing database."""
    had = {x["name"] for x in source.compiled.get("data_steps") or ()}
    return [{"name": x["name"], "sql": x.get("sql"), "python": bool(x.get("python")),
             "text": "data step '%s'%s runs once on each existing database" % (
                 x["name"], " (python=)" if x.get("python") else "")}
            for x in dest.compiled.get("data_steps") or () if x["name"] not in had]


def _repair_loss(changes, live):
    """A foreign key declared with repair='delete' deletes the rows that break it: data loss, counted with --db."""
    out = []
    for c in changes:
        if isinstance(c, d.RepairForeignKey) and c.foreign_key.repair == "delete":
            f = c.foreign_key
            lt = live.table(c.table.name)
            parent = c.table if f.ref_table.lower() == c.table.name.lower() else None
            to = list(f.ref_columns) or list(getattr((parent or live.table(f.ref_table) or c.table).primary_key,
                                                     "columns", ()))
            probe = (["count_orphan_rows", [lt.name, list(f.columns), f.ref_table, to]]
                     if lt is not None and to else None)
            out.append({"kind": "rows", "table": c.table.name, "column": None, "rows": None,
                        "text": "table '%s': repair='delete' on foreign key (%s) -> %s deletes the rows that break it" % (
                            c.table.name, ", ".join(f.columns), f.ref_table), "probe": probe})
    return tuple(out)


def _type_changes(changes, live):
    """A declared type change of another affinity without using=: apply refuses it when the column holds values
    (the risk is counted with --db)."""
    from ..model import type_affinity  # see with_carried
    out = []
    for c in changes:
        if not isinstance(c, d.RebuildTable):
            continue
        lt = live.table(c.table.name)
        converted = {name.lower() for name, *_ in c.conversions}
        for col in c.table.columns:
            source = dict(c.copy).get(col.name)
            lc = lt.column(col.name) if lt is not None else None
            if lc is None or col.name.lower() in converted or source is None:
                continue
            if type_affinity(lc.type) != type_affinity(col.type):
                out.append(_risk("type-change", c.table.name, [col.name], "column '%s': type %s -> %s changes affinity "
                                 "without using=: stored values make apply refuse it" % (col.name, lc.type or "(none)",
                                                                                           col.type),
                                 "count_values", (c.table.name, lc.name)))
    return out


def _data_loss(changes):
    """What the change drops with its data: removed tables (their rows) and removed columns (their values).
    Removed indexes, views and triggers lose no data."""
    out = []
    for c in changes:
        if type(c).__name__ == "Remove" and getattr(c, "kind", None) == "table":
            out.append({"kind": "table", "table": c.name, "column": None, "rows": None,
                        "text": "table '%s' is dropped with its rows (%s)" % (c.name, c.reason),
                        "probe": ["count_rows", [c.name]]})
        elif isinstance(c, d.RebuildTable):
            for r in c.reasons:
                if r.kind == "column-removed":
                    out += [{"kind": "column", "table": c.table.name, "column": col, "rows": None,
                             "text": "table '%s': %s" % (c.table.name, r.text),
                             "probe": ["count_values", [c.table.name, col]]} for col in r.columns]
            for name, source, using, expr in c.conversions:
                out.append({"kind": "conversion", "table": c.table.name, "column": name, "rows": None,
                            "text": "table '%s': column '%s' converted with %s: the non-NULL values it gives NULL for "
                                    "are lost" % (c.table.name, name, using),
                            "probe": ["count_converted_nulls", [c.table.name, source, expr]]})
    return tuple(out)


def _risks(changes, schema):
    """What existing rows may not fit, per rebuilt table: the probe to count them comes with each."""
    out = []
    for c in changes:
        if not isinstance(c, d.RebuildTable):
            continue
        t = c.table
        copy = dict(c.copy)
        for name, source in c.not_null_checks:
            out.append(_risk("not-null", t.name, [name], "column '%s' becomes NOT NULL with no fill or default: a NULL "
                             "in '%s' refuses the migration" % (name, source), "count_nulls", (t.name, source)))
        for r in c.reasons:
            if r.kind == "unique-new":
                exprs = [copy.get(col) for col in r.columns]
                out.append(_risk("unique-new", t.name, r.columns, r.text + ": rows that share a value refuse the "
                                 "migration", "count_duplicate_groups", (t.name, exprs) if all(exprs) else None))
            elif r.kind == "check-new":
                expr = r.text[len("CHECK ("):-len(") is new")] if r.text.startswith("CHECK (") else None
                out.append(_risk("check-new", t.name, r.columns, r.text + ": rows that fail it roll the migration back",
                                 "count_check_failures", (t.name, _declared_columns(c), expr) if expr else None))
            elif r.kind == "foreign-key-new":
                found = next((f for f in t.foreign_keys if [x.lower() for x in f.columns] ==
                              [x.lower() for x in r.columns]), None)
                probe = None
                if found is not None:
                    parent = schema.table(found.ref_table)
                    to = list(found.ref_columns) or (list(parent.primary_key.columns)
                                                     if parent is not None and parent.primary_key else [])
                    if to:
                        probe = (t.name, _declared_columns(c), list(found.columns), found.ref_table, to)
                out.append(_risk("foreign-key-new", t.name, r.columns, r.text + ": orphan rows would be new "
                                 "violations, which roll the migration back", "count_orphans", probe))
    return out


def _risk(kind, table, columns, text, probe, args):
    return {"kind": kind, "table": table, "columns": list(columns), "text": "table '%s': %s" % (table, text),
            "probe": [probe, args] if args is not None else None, "violations": None, "checked": None}


def _declared_columns(change):
    """(declared name, SQL over the old row) for every column the rebuilt table gets from the copy or a default."""
    pairs = list(change.copy)
    named = {n.lower() for n, _ in pairs}
    for col in change.table.columns:
        if col.name.lower() not in named and col.default is not None:
            pairs.append((col.name, render.column_context(change.table, col)["default"]))
    return pairs


def _check_against(db, changes, schema, target, loses, rebuilds, risks):
    conn = dbfile.open_existing(db, "ro")
    try:
        tables = {r[0].lower(): r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
        for loss in loses:
            if loss["probe"] is None:
                loss["checked"] = "no probe for this change: not counted"
                continue
            try:
                loss["rows"] = conn.execute(render.statement(loss["probe"][0], *loss["probe"][1])).fetchone()[0]
            except sqlite3.Error as exc:  # not in that database: nothing of it goes there
                loss["checked"] = "not checked in %s (%s)" % (db, exc)
        for risk in risks:
            if risk["table"].lower() not in tables:
                risk["checked"] = "table '%s' is not in %s: not checked" % (risk["table"], db)
                continue
            if risk["probe"] is None:
                risk["checked"] = "no probe for this change: not checked"
                continue
            kind, args = risk["probe"]
            args = list(args)
            args[0] = tables[args[0].lower()]
            try:
                row = conn.execute(render.statement(kind, *args)).fetchone()
            except sqlite3.Error as exc:
                risk["checked"] = "could not be checked in %s (%s)" % (db, exc)
                continue
            risk["violations"] = row[0]
            if kind == "count_duplicate_groups":
                risk["checked"] = "%s (%s) share a value" % (plural(row[0], "group"), plural(row[1], "row"))
            elif kind == "count_nulls":
                risk["checked"] = "%s NULL" % plural(row[0], "row holds", "rows hold")
            elif kind == "count_values":
                risk["checked"] = "%s a value: declare using=" % plural(row[0], "row holds", "rows hold")
            elif kind == "count_orphans":
                risk["checked"] = "%s no parent row" % plural(row[0], "row has", "rows have")
            else:
                risk["checked"] = "%s it" % plural(row[0], "row fails", "rows fail")
        by_table = {c.table.name.lower(): c for c in changes if isinstance(c, d.RebuildTable)}
        for rebuild in rebuilds:
            name = tables.get(rebuild["table"].lower())
            if name is None:
                continue
            rebuild["rows"] = conn.execute(render.statement("count_rows", name)).fetchone()[0]
            try:
                rate, sampled = _measure(db, by_table[rebuild["table"].lower()], name, rebuild["rows"], schema, target)
            except sqlite3.Error as exc:
                rebuild["estimate_error"] = "could not measure a copy rate (%s)" % exc
                continue
            rebuild["sampled_rows"] = sampled
            if rate:
                rebuild["rate_rows_per_second"] = round(rate)
                rebuild["lock_seconds"] = rebuild["rows"] / rate
    finally:
        conn.close()


def _measure(db, change, live_name, rows, schema, target):
    """(rows per second, rows sampled) of a rebuild of this table: up to SAMPLE_ROWS of its rows copied into the
    declared table with its indexes, then dropped, in an in-memory scratch database."""
    if not rows:
        return None, 0
    t = change.table
    sampled = min(rows, SAMPLE_ROWS)  # rows that break a new constraint are read and skipped (INSERT OR IGNORE)
    scratch = sqlite3.connect("file::memory:", uri=True, isolation_level=None)
    try:
        scratch.execute("ATTACH DATABASE ? AS src", (dbfile.uri(db, mode="ro"),))
        scratch.execute(render.create_table_sql(t, extra_columns=change.extra_columns,
                                                extra_constraints=change.extra_constraints, if_not_exists=False))
        indexes = [target.statement("create_index", ix.name) for ix in schema.indexes if ix.table.lower() == t.name.lower()]
        indexes += [sql for _, sql in change.user_indexes]
        started = time.perf_counter()
        scratch.execute("BEGIN")
        scratch.execute(render.statement("copy_sample", t.name, "src", live_name, [c for c, _ in change.copy],
                                         [e for _, e in change.copy], change.keep_rowid, SAMPLE_ROWS))
        for stmt in indexes:
            scratch.execute(stmt)
        scratch.execute(render.statement("drop_table", t.name))
        scratch.execute("COMMIT")
        elapsed = time.perf_counter() - started
    finally:
        scratch.close()
    return (sampled / elapsed if sampled and elapsed > 0 else None), sampled


# --- text ---------------------------------------------------------------------------------

def _seconds(s):
    return "%.1f ms" % (s * 1000) if s < 0.1 else "%.2f s" % s




def to_document(result):
    """diff --json: the result, its plan's steps (check/documents.py's step shape) and the document version."""
    from . import documents  # --json only
    out = result.as_dict()
    out["steps"] = [documents.step(s) for s in result.plan.steps] if result.plan is not None else None
    out["version"] = documents.VERSION
    return out


def format_text(result):
    """diff's text: the two sides, the plan between them (migrate/plan.py's format_plan) and the lint."""
    lines = ["diff %s -> %s" % (result.source.label, result.dest.label)]
    lines += ["note: %s" % side.note for side in (result.source, result.dest) if side.note]
    if result.plan is not None:
        lines.append("no change between the declarations" if result.plan.up_to_date and not result.plan.extras
                     else format_plan(result.plan))
        if result.data_steps and not any(type(s.change).__name__ == "RunDataStep" for s in result.plan.steps):
            lines.append("note: these are the steps on a new database; on one with rows, apply first makes the "
                         "additions without the constraints the data steps below satisfy, runs the steps, then the "
                         "rest")
    return "\n".join(lines + ["", format_lint(result)])


def strict_failure(result):
    """diff --strict's reason to exit 1 (the change loses data, apply would refuse it, or rows in --db would
    violate a new constraint), or None."""
    if result.can_lose_data or result.refused or result.violations:
        return "the change %s (--strict)" % ("loses data" if result.can_lose_data else "would be refused"
                                             if result.refused else "does not fit the rows in %s" % result.db)
    return None


def format_lint(result):
    """The lint of a diff, one finding a line."""
    lines = ["lint:"]
    if result.refused:
        lines.append("  apply would refuse this change: %s" % result.refused)
    if result.loses_data:
        lines.append("  loses data:")
        for x in result.loses_data:
            counted = "" if x["rows"] is None else ": %s in %s" % (
                plural(x["rows"], "row") if x["kind"] in ("table", "rows") else plural(x["rows"], "non-NULL value"), result.db)
            lines.append("    - %s%s" % (x["text"], counted))
    else:
        lines.append("  loses data: none%s" % (
            " (%s only FROM has %s kept, never dropped)" % (plural(len(result.kept), "object"),
                                                            "is" if len(result.kept) == 1 else "are") if result.kept else ""))
    if result.data_steps:
        lines.append("  data steps (run once per database, between the additions and the rebuilds):")
        lines += ["    - %s" % x["text"] for x in result.data_steps]
    if result.rebuilds:
        lines.append("  rebuilds (the table is copied under the write lock):")
        for r in result.rebuilds:
            lock = ""
            if r["lock_seconds"] is not None:
                lock = "; expected write lock %s (%s at %d rows/s, measured on %d)" % (
                    _seconds(r["lock_seconds"]), plural(r["rows"], "row"), r["rate_rows_per_second"], r["sampled_rows"])
            elif r["rows"] is not None:
                lock = "; %d rows%s" % (r["rows"], " (%s)" % r["estimate_error"] if r.get("estimate_error") else "")
            lines.append("    - table '%s'%s" % (r["table"], lock))
            lines += ["        %s: %s" % (x["kind"], x["text"]) for x in r["reasons"]]
    else:
        lines.append("  rebuilds: none")
    if result.risks:
        lines.append("  existing rows may not fit%s:" % (" (checked in %s)" % result.db if result.db else
                                                        " (give --db to count them)"))
        for r in result.risks:
            lines.append("    - %s%s" % (r["text"], ": %s" % r["checked"] if r["checked"] else ""))
    else:
        lines.append("  new constraints existing rows may violate: none")
    return "\n".join(lines)

