"""A declaration in the form apply, plan and the report use: rendered files and the compiled declaration.

`schemagen render` writes, next to the DDL files, `generated/declaration.json`:
what the declaration compiles to for the code that runs against a database.

- structure: what structure.read_structure returns for a matching database
  (compare.expected_structure), the rule apply verifies by before COMMIT.
- serves: each index's serves-queries, for the report's query plans.
- findings: the design findings of lint that depend on the declaration
  alone. findings_when_json_valid_null_is_0 holds those that depend on the
  SQLite that runs; they apply where json_valid(NULL) returns 0.
- statements: CREATE TABLE, CREATE INDEX and ADD COLUMN for each declared
  table, index and column. They are rendered by render.py, the one renderer,
  so a migration to the shipped declaration needs no template engine.

For schemagen's own declaration a Target is read from generated/ (which
`render --check` keeps equal to the declaration), so the fresh and
up-to-date paths build no model, import no Jinja2 and run no lint; the
model (`Target.schema`) is built only when a migration has to diff
against it. For any other declaration the same things are rendered at once
(`Target.from_schema`). A Target is read-only, like the model.
"""
from __future__ import annotations

import importlib
import sqlite3
import sys
from pathlib import Path

try:  # the C scanner json.loads runs, without importing the json package (see _parse_json)
    from _json import make_scanner as _make_scanner
except ImportError:  # pragma: no cover - an interpreter without it
    _make_scanner = None

from ..errors import SchemagenError, StaleFiles
from ..sqlite.data import SQLITE_VERSION_MARK, json_valid_null
from .paths import file_sha256, resource_dir

DECLARATION_FILE = "declaration.json"


class Target:
    __slots__ = ("files", "compiled", "_schema", "_load")

    def __init__(self, files, compiled, schema=None, load=None):
        self.files = files          # {filename: text}: the DDL files and pragmas.sql
        self.compiled = compiled    # the parsed declaration.json
        self._schema = schema       # the model; None: built by load() on first use
        self._load = load

    def with_compiled(self, **entries):
        """The same target with entries of its compiled declaration replaced (migrate/online.py: the history)."""
        return Target(self.files, dict(self.compiled, **entries), self._schema, self._load)

    @classmethod
    def from_schema(cls, schema, files=None, origin=None):
        """Render everything for a declaration now (imports Jinja2)."""
        from .render import compile_declaration, ddl_files  # Jinja2: only a declaration compiled in memory needs it
        return cls(files if files is not None else ddl_files(schema, origin), compile_declaration(schema, origin), schema)

    @property
    def schema(self):
        if self._schema is None:
            self._schema = self._load()
        return self._schema

    @property
    def name(self):
        return self.compiled["name"]

    @property
    def table_files(self):
        return tuple(self.compiled["table_files"])

    @property
    def index_file(self):
        return self.compiled["index_file"]

    @property
    def structure(self):
        return self.compiled["structure"]

    @property
    def persistent_pragmas(self):
        return self.compiled["persistent_pragmas"]

    @property
    def serves(self):
        """[(index name, [serves-queries])] in declaration order."""
        return [(name, queries) for name, queries in self.compiled["serves"]]

    def statement(self, kind, table, name=None):
        """The rendered CREATE TABLE (kind "create_table", table), CREATE INDEX ("create_index", index name)
        or ADD COLUMN ("add_column", table, column) of a declared object."""
        found = self.compiled["statements"][kind][table]
        return found if name is None else found[name]

    def findings(self, conn=None):
        """The design findings (as dicts, in lint's order) on the SQLite this process runs."""
        out = list(self.compiled["findings"])
        if json_valid_null(conn) == 0:
            out += [dict(f, message=f["message"].replace(SQLITE_VERSION_MARK, sqlite3.sqlite_version))
                    for f in self.compiled["findings_when_json_valid_null_is_0"]]
        return out


def read_target(folder, load=None):
    """The Target of rendered files in a folder: declaration.json and the files it names.

    Each file must still have the sha256 declaration.json records for it (when it records them): a
    file edited by hand is refused (StaleFiles), never applied or reported as the declaration.
    """
    folder = Path(folder)
    try:
        compiled = _parse_json((folder / DECLARATION_FILE).read_text(encoding="utf-8"))
        names = (*compiled["table_files"], compiled["index_file"], "pragmas.sql")
        files = {n: (folder / n).read_text(encoding="utf-8") for n in names}
        recorded = compiled.get("file_sha256") or {}
    except (OSError, ValueError, KeyError, TypeError, AttributeError) as exc:
        raise SchemagenError("generated files: cannot read %s or the files it names in %s (%s: %s); run `schemagen "
                             "render`, or reinstall schemagen" % (DECLARATION_FILE, folder, type(exc).__name__, exc)) from None
    for name in names:
        if name in recorded and file_sha256(files[name]) != recorded[name]:
            raise StaleFiles("%s: edited since it was rendered (its sha256 is not the one %s records); nothing was "
                             "changed: run `schemagen render` to write it again, and change the declaration instead"
                             % (folder / name, DECLARATION_FILE))
    return Target(files, compiled, load=load)


class _JsonOptions:
    """json.JSONDecoder's defaults, as the C scanner reads them."""
    strict, object_hook, object_pairs_hook, parse_float, parse_int = True, None, None, float, int
    parse_constant = {"-Infinity": float("-inf"), "Infinity": float("inf"), "NaN": float("nan")}.__getitem__


def _parse_json(text):
    """json.loads(text), through the C scanner json.loads itself runs (_json) without importing the json package,
    whose import compiles its regular expressions: about 1.5 ms of every apply's start-up (as paths.py's _sha256).
    Text the scanner does not take as one whole document goes to json.loads, which says what is wrong with it."""
    if _make_scanner is not None:
        start = len(text) - len(text.lstrip(" \t\n\r"))
        try:
            value, end = _make_scanner(_JsonOptions)(text, start)
        except (StopIteration, ValueError):
            pass
        else:
            if not text[end:].strip(" \t\n\r"):
                return value
    import json  # an interpreter without _json, or text json.loads refuses: its own error
    return json.loads(text)


_SHIPPED = []


def shipped_target():
    """schemagen's own declaration, read from the rendered files it ships (read once per process)."""
    if not _SHIPPED:
        _SHIPPED.append(read_target(resource_dir("generated"), load=_shipped_schema))
    return _SHIPPED[0]


def _shipped_schema():
    # by name, not by an import statement: no engine module imports the declaration
    return importlib.import_module(__package__.rpartition(".")[0] + ".abathur").SCHEMA


def is_shipped_schema(schema):
    """Whether schema is schemagen's own declaration (the object abathur.py builds)."""
    abathur = sys.modules.get("schema_dsl.abathur")
    return abathur is not None and schema is abathur.SCHEMA


def target_for(schema=None, files=None):
    """The Target of a declaration: the shipped one for None or schemagen's own, else rendered now.

    files: rendered files to use instead (tests pass broken ones to inject faults).
    A Target given as schema is returned as it is.
    """
    if isinstance(schema, Target) and files is None:
        return schema
    if schema is None or is_shipped_schema(schema):
        shipped = shipped_target()
        if files is None and (schema is None or shipped._schema is schema):
            return shipped
        return Target(files if files is not None else shipped.files, shipped.compiled, schema, load=_shipped_schema)
    return Target.from_schema(schema, files)
