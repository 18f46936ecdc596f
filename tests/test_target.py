"""The compiled declaration (generated/declaration.json) and the paths that use it instead of the model."""
from __future__ import annotations

import json
import shutil
import sqlite3
import subprocess
import sys

import pytest

import legacy
from conftest import ROOT
from schema_dsl.analysis import lint
from schema_dsl.compile import render
from schema_dsl.sqlite import ddl, structure
from schema_dsl.abathur import SCHEMA
from schema_dsl.analysis.compare import expected_structure, persistent_pragmas
from schema_dsl.migrate.plan import _size_estimate
from schema_dsl.compile.target import Target, shipped_target, target_for


def test_the_shipped_declaration_is_what_the_model_compiles_to():
    from conftest import ROOT
    from schema_dsl.compile.project import origin, resolve
    shipped = shipped_target()
    source = origin(resolve(None, cwd=ROOT))
    compiled = render.compile_declaration(SCHEMA, source, render.ddl_files(SCHEMA, source))
    assert shipped.compiled == json.loads(json.dumps(compiled))
    assert shipped.structure == expected_structure(SCHEMA)
    assert shipped.persistent_pragmas == persistent_pragmas(SCHEMA)
    assert shipped.serves == [(ix.name, list(ix.serves)) for ix in SCHEMA.indexes]
    assert (shipped.table_files, shipped.index_file) == (SCHEMA.table_files, SCHEMA.index_file)
    for table in SCHEMA.tables:
        assert shipped.statement("create_table", table.name) == render.create_table_sql(table)
        for column in table.columns:
            assert shipped.statement("add_column", table.name, column.name) == render.add_column_sql(table, column)
    for ix in SCHEMA.indexes:
        assert shipped.statement("create_index", ix.name) == render.create_index_sql(ix)


class _Probe:
    """A connection whose json_valid(NULL) answers what the test says."""

    def __init__(self, answer):
        self.answer = answer

    def execute(self, sql):
        assert sql == "SELECT json_valid(NULL)"
        return self

    def fetchone(self):
        return (self.answer,)


@pytest.mark.parametrize("answer", [0, None])
def test_the_compiled_findings_are_lints_findings_on_either_kind_of_sqlite(answer):
    found = shipped_target().findings(_Probe(answer))
    expected = [f.as_dict() for f in lint.lint(SCHEMA, json_probe=answer)]
    assert found == expected
    assert any(f["rule"] == "json-valid-nullable" for f in found) is (answer == 0)
    assert all("{sqlite_version}" not in f["message"] for f in found)


def test_the_findings_ask_the_sqlite_that_runs():
    assert shipped_target().findings() == [f.as_dict() for f in lint.lint(SCHEMA)]


def test_target_for_returns_the_shipped_target_or_renders_a_custom_declaration():
    shipped = shipped_target()
    assert target_for() is shipped and target_for(shipped) is shipped
    own = target_for(SCHEMA)
    assert own.compiled is shipped.compiled and own.schema is SCHEMA
    files = dict(shipped.files)
    assert target_for(None, files).files is files
    custom = legacy_free_schema()
    t = target_for(custom)
    assert isinstance(t, Target) and t.schema is custom
    assert t.structure == expected_structure(custom)
    assert set(t.files) >= {"a.sql", "ix.sql", "pragmas.sql"}


def legacy_free_schema():
    from schema_dsl.model import Column, Index, IndexColumn, PrimaryKey, Schema, Table
    t = Table("notes", columns=[Column("id", "INTEGER"), Column("body", "TEXT")], primary_key=PrimaryKey(["id"]),
              file="a.sql")
    return Schema(name="notes", tables=[t], indexes=[Index("idx_notes_body", "notes", [IndexColumn("body")],
                                                           serves=["SELECT id FROM notes WHERE body = ?"])],
                  table_files=("a.sql",), index_file="ix.sql")


def _modules_after(code):
    probe = ("import sys\n" + code + "\nprint(sorted(m for m in ('jinja2', 'schema_dsl.model', 'schema_dsl.analysis.lint', "
             "'schema_dsl.migrate.introspect', 'schema_dsl.migrate.diff', 'schema_dsl.compile.render', 'schema_dsl.abathur', 'asyncio') "
             "if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=60, cwd=str(ROOT))
    assert out.returncode == 0, out.stderr
    return out.stdout.strip().splitlines()[-1]


def test_fresh_and_up_to_date_apply_with_the_report_build_no_model(tmp_path):
    db = tmp_path / "a.db"
    code = ("from schema_dsl.cli import main\n"
            "for _ in range(2):\n"
            "    try:\n"
            "        main(['apply', '--db', %r])\n"
            "    except SystemExit as e:\n"
            "        assert e.code in (0, None), e.code\n") % str(db)
    assert _modules_after(code) == "[]"
    conn = sqlite3.connect(db)
    assert structure.compare(expected_structure(SCHEMA), structure.read_structure(conn)) == []
    conn.close()


def test_migrating_the_old_shape_needs_neither_the_model_nor_the_template_engine(tmp_path):
    # only declared tables, columns and indexes to add: planned from declaration.json (migrate/additive.py)
    path = legacy.create(str(tmp_path / "old.db"), "old", tasks=20)
    code = "from schema_dsl.migrate.apply import apply\nassert apply(%r, backup=False).applied" % path
    assert _modules_after(code) == "[]"


def test_a_rebuild_renders_its_statements(tmp_path):
    path = legacy.create(str(tmp_path / "r.db"), "retrofitted", tasks=20)
    code = "from schema_dsl.migrate.apply import apply\nassert apply(%r, backup=False).applied" % path
    assert "'jinja2'" in _modules_after(code)


def test_the_size_estimate_of_an_index_build(tmp_path):
    conn = sqlite3.connect(":memory:")
    conn.execute("CREATE TABLE t (a)")
    conn.executemany("INSERT INTO t VALUES (?)", [(i,) for i in range(50)])
    conn.execute("DELETE FROM t WHERE a < 10")
    assert _size_estimate(conn, "t") == 50  # max(rowid): an upper bound once rows were deleted
    conn.execute("CREATE TABLE w (k TEXT PRIMARY KEY, v) WITHOUT ROWID")
    conn.executemany("INSERT INTO w VALUES (?, 1)", [("k%d" % i,) for i in range(7)])
    assert _size_estimate(conn, "w") == 7
    conn.execute("CREATE TABLE odd (rowid TEXT)")  # a column that hides the rowid
    conn.executemany("INSERT INTO odd VALUES (?)", [("x",), ("y",)])
    assert _size_estimate(conn, "odd") == 2
    conn.execute("CREATE TABLE empty (a)")
    assert _size_estimate(conn, "empty") == 0


@pytest.mark.parametrize("sql", [
    'CREATE TABLE t (a TEXT CHECK (json_valid(a)), b INTEGER PRIMARY KEY AUTOINCREMENT)',
    'CREATE TABLE t (a TEXT, -- no check here\n b INT) ',
    'CREATE TABLE t (a TEXT, CONSTRAINT c CHECK (a IN (\'check\', \'x\')), CHECK(length(a) > 1))',
    'CREATE TABLE "check" ("check" TEXT, "autoincrement" INT)',
    'CREATE TABLE t (a INTEGER PRIMARY KEY /* autoincrement */, b)',
    'CREATE TABLE t (a)',
])
def test_the_structure_reads_checks_and_autoincrement_as_the_full_parse_does(sql):
    parsed = ddl.parse_create_table(sql)
    assert ddl.checks_and_autoincrement(sql) == (parsed["checks"], parsed["autoincrement"])


@pytest.mark.parametrize("text", ["{not json", '{"name": "x"}', ""])
def test_a_damaged_compiled_declaration_is_one_clear_error(monkeypatch, tmp_path, text):
    from click.testing import CliRunner
    from schema_dsl.compile import target as target_module
    from schema_dsl.cli import main
    # outside any project: the shipped files, here a copy with a damaged declaration.json
    shipped = tmp_path / "pkg" / "generated"
    shutil.copytree(target_module.resource_dir("generated"), shipped)
    (shipped / target_module.DECLARATION_FILE).write_text(text, encoding="utf-8")
    monkeypatch.setattr(target_module, "_SHIPPED", [])
    monkeypatch.setattr(target_module, "resource_dir", lambda name: shipped)
    monkeypatch.chdir(tmp_path)
    result = CliRunner().invoke(main, ["apply", "--db", str(tmp_path / "a.db")])
    assert result.exit_code == 2
    lines = [line for line in result.stderr.strip().splitlines() if not line.startswith("note: ")]  # the fallback note
    assert len(lines) == 1 and lines[0].startswith("error: generated files: cannot read declaration.json")
    assert "schemagen render" in lines[0]
    assert not (tmp_path / "a.db").exists()


def test_a_structure_verified_once_is_not_taken_for_another_declaration(tmp_path):
    # apply remembers a schema it read and verified (one query instead of the PRAGMAs for the next new file);
    # the same schema text must still be compared against any other declaration's structure
    import copy
    from schema_dsl.errors import ApplyError
    from schema_dsl.migrate import apply as apply_mod
    shipped = shipped_target()
    first = apply_mod.apply(str(tmp_path / "a.db"), backup=False)
    assert apply_mod.apply(str(tmp_path / "b.db"), backup=False).structure is first.structure  # remembered
    compiled = copy.deepcopy(shipped.compiled)
    name, index = next(iter(compiled["structure"]["indexes"].items()))
    compiled["structure"]["indexes"]["idx_expected_elsewhere"] = dict(index)
    other = Target(shipped.files, compiled)
    with pytest.raises(ApplyError, match="structure still differs.*idx_expected_elsewhere"):
        apply_mod.apply(str(tmp_path / "c.db"), schema=other, backup=False)


def test_the_compiled_declaration_is_read_without_importing_json(tmp_path):
    # read_target parses declaration.json with the C scanner json.loads itself runs: importing the json package
    # (its regular expressions compiled) was about 1.5 ms of every apply's start-up; a fresh apply and a migration
    # through the CLI, in the project (its staleness check included), import it nowhere
    from schema_dsl.compile.target import _parse_json
    old = legacy.create(str(tmp_path / "old.db"), "old", tasks=20)
    code = ("import sys\nfrom schema_dsl.cli import main\nfor db in (%r, %r):\n    try:\n        main(['apply', '--no-backup', "
            "'--db', db])\n    except SystemExit as e:\n        assert e.code in (0, None), e.code\n"
            "print('json' in sys.modules)") % (str(tmp_path / "new.db"), old)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, cwd=str(ROOT))
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip().splitlines()[-1] == "False"
    text = (ROOT / "generated" / "declaration.json").read_text(encoding="utf-8")
    assert _parse_json(text) == json.loads(text) and _parse_json(" [1, 2.5, null]\n") == [1, 2.5, None]
    for bad in ('{"a": 1} x', '{"a": }', "", '"\x01"'):  # json's own error, word for word
        with pytest.raises(json.JSONDecodeError) as found:
            _parse_json(bad)
        with pytest.raises(json.JSONDecodeError) as expected:
            json.loads(bad)
        assert str(found.value) == str(expected.value)
