"""The one renderer: every SQL statement schemagen writes or executes.

Builds plain template contexts from the frozen model and renders them with
the macros of templates/statements.sql.j2 (one macro per statement kind).
Nothing here writes files or touches a database: `render_files` returns
{filename: text}; only the CLI writes.

This module imports Jinja2, which costs tens of milliseconds: the fresh-apply
and up-to-date paths never import it (they execute the rendered files in
generated/); only rendering and migration planning do.
"""
from __future__ import annotations

import json
import pprint
import re
from pathlib import Path

from ..analysis import compare, lint
from ..sqlite.data import SQLITE_VERSION_MARK
from ..model import Column, Table, former_names
from .docs import context as docs_context
from .env import default_origin, environment
from .paths import file_sha256, resource_dir
from ..analysis.sqltext import default_sql

def _macros():
    return environment().get_template("statements.sql.j2").module


def statement(kind, *args, **kwargs):
    """Render one statement with the macro `kind` of statements.sql.j2."""
    return str(getattr(_macros(), kind)(*args, **kwargs)).strip()


# --- contexts -----------------------------------------------------------

def _one_line(text):
    return " ".join((text or "").split())


def _fk_context(f):
    return {"kind": "foreign_key", "columns": list(f.columns), "ref_table": f.ref_table,
            "ref_columns": list(f.ref_columns), "on_delete": f.on_delete, "on_update": f.on_update,
            "deferrable": f.deferrable, "name": f.name}


def _inline_fks(table):
    """Single-column foreign keys written on their column (one per column); named ones are table constraints."""
    inline = {}
    for f in table.foreign_keys:
        if len(f.columns) == 1 and f.columns[0].lower() not in inline and not f.name:
            inline[f.columns[0].lower()] = f
    return inline


def column_context(table: Table, column: Column, add=False):
    """add: for ALTER TABLE ADD COLUMN, which can carry a foreign key only on the column itself, so a named
    single-column foreign key is written there too (the diff counts on ADD COLUMN adding it)."""
    pk = table.primary_key
    inline_pk = None
    if pk is not None and len(pk.columns) == 1 and pk.columns[0].lower() == column.name.lower():
        inline_pk = "PRIMARY KEY"
    f = _inline_fks(table).get(column.name.lower())
    if f is None and add:
        f = next((k for k in table.foreign_keys if [c.lower() for c in k.columns] == [column.name.lower()]), None)
    return {
        "name": column.name,
        "type": column.type,
        "pk": inline_pk,
        "pk_on_conflict": pk.on_conflict if inline_pk else None,
        "autoincrement": bool(inline_pk and pk.autoincrement),
        "not_null": column.not_null,
        "not_null_on_conflict": column.not_null_on_conflict,
        "unique": column.unique,
        "unique_on_conflict": column.unique_on_conflict,
        "default": default_sql(column.default),
        "fk": _fk_context(f) if f else None,
        "collate": column.collate,
        "verbatim": None,
    }


def table_context(table: Table, extra_columns=(), extra_constraints=()):
    """Context of a CREATE TABLE.

    extra_columns: (name, definition text) pairs and extra_constraints: SQL
    texts, carried verbatim from a live table through a rebuild.
    """
    items = [{"column": column_context(table, c), "constraint": None, "comment": _one_line(c.comment)}
             for c in table.columns]
    items += [{"column": {"name": name, "verbatim": definition}, "constraint": None, "comment": "kept: not in the declaration"}
              for name, definition in extra_columns]
    pk = table.primary_key
    if pk is not None and len(pk.columns) > 1:
        items.append({"column": None, "constraint": {"kind": "primary_key", "columns": list(pk.columns),
                                                     "on_conflict": pk.on_conflict}, "comment": ""})
    for u in table.uniques:
        items.append({"column": None, "constraint": {"kind": "unique", "columns": list(u.columns), "name": u.name,
                                                     "on_conflict": u.on_conflict}, "comment": ""})
    for ch in table.checks:
        items.append({"column": None, "constraint": {"kind": "check", "expr": ch.expr, "name": ch.name}, "comment": ""})
    inline = set(id(f) for f in _inline_fks(table).values())
    for f in table.foreign_keys:
        if id(f) not in inline:
            items.append({"column": None, "constraint": _fk_context(f), "comment": ""})
    items += [{"column": None, "constraint": {"kind": "verbatim", "sql": sql}, "comment": "kept: not in the declaration"}
              for sql in extra_constraints]
    options = ", ".join(o for o, on in (("WITHOUT ROWID", table.without_rowid), ("STRICT", table.strict)) if on)
    return {"name": table.name, "comment": _one_line(table.comment), "body": items, "options": options}


def index_context(index):
    return {"name": index.name, "table": index.table, "unique": index.unique,
            "columns": [{"name": c.name, "desc": c.desc, "expression": c.expression, "collate": c.collate}
                        for c in index.columns],
            "where": index.where, "serves": list(index.serves), "comment": _one_line(index.comment)}


# --- statements ---------------------------------------------------------

def create_table_sql(table, name=None, extra_columns=(), extra_constraints=(), if_not_exists=True):
    return statement("create_table", table_context(table, extra_columns, extra_constraints),
                     name=name, if_not_exists=if_not_exists)


def create_index_sql(index, if_not_exists=True):
    return statement("create_index", index_context(index), if_not_exists=if_not_exists)


def add_column_sql(table, column):
    return statement("add_column", table.name, column_context(table, column, add=True))


def create_virtual_table_sql(vt, if_not_exists=True):
    return statement("create_virtual_table", {"name": vt.name, "module": vt.module, "args": vt.args.strip()},
                     if_not_exists=if_not_exists)


def verbatim_sql(sql):
    """A declared view's or trigger's CREATE statement, ending in one semicolon."""
    return statement("verbatim", sql)


# --- the compiled declaration ---------------------------------------------

def compile_declaration(schema, origin=None, files=None):
    """What apply, plan and the report need from a declaration, as plain data (see target.py).

    Everything in it depends on the declaration alone, so it is deterministic
    and can be shipped in generated/declaration.json.
    files: the rendered DDL files and pragmas.sql written beside it; their sha256 is recorded
    ("file_sha256"), so a file edited by hand is refused before it is used (target.read_target).
    """

    engine_dependent = lint.json_valid_nullable(schema, probe=0, version=SQLITE_VERSION_MARK)
    origin = origin or default_origin(schema)
    header = environment().get_template("header.j2").module.header(
        "", schema, origin, "What apply, plan and the validation report read from the declaration (schema_dsl/compile/target.py).")
    return {
        "_generated": [line.strip() for line in str(header).splitlines()],
        "name": schema.name,
        "table_files": list(schema.table_files),
        "index_file": schema.index_file,
        "structure": compare.expected_structure(schema),
        "persistent_pragmas": compare.persistent_pragmas(schema),
        "source": {"declaration": origin["declaration"], "files": list(origin["files"]), "sha256": origin["sha256"]},
        "file_sha256": {name: file_sha256(text) for name, text in sorted(files.items())} if files else None,
        "serves": [[ix.name, list(ix.serves)] for ix in schema.indexes],
        "plan_checks": plan_checks(schema),
        "removed": [{"kind": x.kind, "name": x.name, "table": x.table, "reason": x.reason} for x in schema.removed],
        "carried": carried(schema),
        "findings": [f.as_dict() for f in lint.lint(schema, json_probe=None)],
        "findings_when_json_valid_null_is_0": [
            f.as_dict() for f in lint.resolve(engine_dependent, lint.declared_resolutions(schema))],
        "statements": {
            "create_table": {t.name: create_table_sql(t) for t in schema.tables},
            "create_index": {ix.name: create_index_sql(ix) for ix in schema.indexes},
            "add_column": {t.name: {c.name: add_column_sql(t, c) for c in t.columns} for t in schema.tables},
        },
        **history_declaration(schema),
    }


def carried(schema):
    """What the rendered DDL cannot say and a diff from a revision needs (check/declaration_diff.py): per table its
    former names, its foreign keys' repair=, and per column its former names, backfill= and using=. Only what is
    declared; {} when nothing is."""
    out = {}
    for t in schema.tables:
        entry = {}
        if t.renamed_from:
            entry["renamed_from"] = list(former_names(t))
        repairs = [{"columns": list(f.columns), "ref_table": f.ref_table, "repair": f.repair}
                   for f in t.foreign_keys if f.repair]
        if repairs:
            entry["repairs"] = repairs
        columns = {}
        for c in t.columns:
            kept = {k: v for k, v in (("renamed_from", list(former_names(c))), ("backfill", c.backfill),
                                       ("using", c.using), ("using_postgresql", c.using_postgresql)) if v}
            if kept:
                columns[c.name] = kept
        if columns:
            entry["columns"] = columns
        if entry:
            out[t.name] = entry
    return out


def history_declaration(schema):
    """The compiled declaration's entries for the history and the data steps (migrate/history.py), only when the
    declaration has them: a declaration without keeps its declaration.json as before."""
    if not schema.history and not schema.data_steps:
        return {}
    return {"history": True,
            "data_steps": [{"name": s.name, "sql": s.sql, "python": s.python is not None, "postgresql": s.postgresql,
                            "sqlite_only": s.sqlite_only} for s in schema.data_steps]}


def declaration_json(schema, origin=None, files=None):
    return json.dumps(compile_declaration(schema, origin, files), indent=1, sort_keys=True, ensure_ascii=False) + "\n"


def plan_checks(schema):
    """Per index: whether its serves-queries are required plan checks, and the declared indexes identical to it
    (same table, columns, order, uniqueness and WHERE), whose use counts as its own."""
    out = {}
    for ix in schema.indexes:
        key = compare.index_structure(ix, schema.table(ix.table))
        same = [o.name for o in schema.indexes if o is not ix and compare.index_structure(o, schema.table(o.table)) == key]
        out[ix.name] = {"required": ix.plan_check == "required", "identical": same}
    return out


# --- files --------------------------------------------------------------

def render_files(schema, origin=None):
    """Every generated file, as {filename: text}; deterministic, no side effects.

    origin: what the headers say of the source (project.origin: the declaration's path relative to the
    project root, its hash, and the command that regenerates the files).
    """
    origin = origin or default_origin(schema)
    env = environment()
    files = ddl_files(schema, origin)
    check_declared_dependents(schema, files)
    files["declaration.json"] = declaration_json(schema, origin, files)
    files["validate_schema.py"] = env.get_template("validate_schema.py.j2").render(
        schema=schema, origin=origin,
        expected=pprint.pformat(compare.expected_structure(schema), width=100, sort_dicts=True),
        persistent_pragmas=pprint.pformat(compare.persistent_pragmas(schema), sort_dicts=True),
        structure_source=structure_source(),
    )
    if (resource_dir("templates") / "SCHEMA.md.j2").exists():
        files["SCHEMA.md"] = env.get_template("SCHEMA.md.j2").render(origin=origin, **docs_context(schema))
    return files


def structure_source():
    """What validate_schema.py embeds to read a database's structure: sqlite/ddl.py (the SQL tokenizer and DDL
    reader), then sqlite/structure.py without its import of ddl.py (the names are already defined above it)."""
    ground = Path(__file__).resolve().parent.parent / "sqlite"
    structure = (ground / "structure.py").read_text(encoding="utf-8")
    imported = re.search(r"^from \.ddl import \([^)]*\)\n", structure, re.M)
    if imported is None:
        raise RuntimeError("sqlite/structure.py: expected its one `from .ddl import (...)` to embed in its place")
    return "%s\n\n\n%s%s" % ((ground / "ddl.py").read_text(encoding="utf-8").rstrip("\n"),
                             structure[:imported.start()], structure[imported.end():])


def ddl_files(schema, origin=None):
    """The files apply runs: the table files, the index file and pragmas.sql (a declaration compiled in memory
    needs only these, not the validator or the docs)."""
    origin = origin or default_origin(schema)
    env = environment()
    files = {}
    total = len(schema.table_files) + 1
    for position, filename in enumerate(schema.table_files, start=1):
        files[filename] = env.get_template("ddl_tables.sql.j2").render(
            schema=schema, origin=origin, filename=filename, position=position, total=total,
            previous=list(schema.table_files[:position - 1]),
            tables=[table_context(t) for t in schema.tables_in_file(filename)])
    files[schema.index_file] = env.get_template("ddl_indexes.sql.j2").render(
        schema=schema, origin=origin, filename=schema.index_file, position=total, total=total,
        indexes=[index_context(ix) for ix in schema.indexes])
    files["pragmas.sql"] = env.get_template("pragmas.sql.j2").render(schema=schema, origin=origin, pragmas=schema.pragmas)
    return files


def check_declared_dependents(schema, files=None):
    """DeclarationError naming each declared view or trigger that does not hold against the declared tables (a
    column or table it names that the declaration does not have: a view fails when it is read, a trigger when it
    fires), found by building the rendered DDL in an in-memory database (sqlite/dependents.py). A module or
    function only the application has is not the declaration's fault: such a build is not judged here."""
    # only render and lint build the declaration in memory
    import sqlite3
    from ..errors import DeclarationError
    from ..sqlite.dbfile import split_statements
    from ..sqlite.dependents import broken_dependents
    if not (schema.views or schema.triggers):
        return
    files = files if files is not None else ddl_files(schema)
    scratch = sqlite3.connect(":memory:", isolation_level=None)
    try:
        try:
            for name in (*schema.table_files, schema.index_file):
                for stmt in split_statements(files[name]):
                    if not stmt.lstrip().upper().startswith("PRAGMA"):
                        scratch.execute(stmt)
        except sqlite3.Error:
            return  # a statement the scratch cannot run (a module the application loads): apply judges the file
        problems = [line for line in broken_dependents(scratch, foreign_keys=False)
                    if line.startswith(("view '", "trigger '"))]
    finally:
        scratch.close()
    if problems:
        raise DeclarationError(["declared " + line for line in problems])
