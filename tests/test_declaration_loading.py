"""Loading a declaration: every failure names file:line in the user's own code; an exit is an error; what the
declaration prints never reaches stdout (issue 17 item 2, issue 15 items 11 and 15)."""
from __future__ import annotations

import json
import subprocess
import sys
import textwrap

import pytest

from conftest import make_runner
from schema_dsl.cli import main


@pytest.fixture
def runner():
    return make_runner()


@pytest.fixture
def here(tmp_path, monkeypatch):
    folder = tmp_path / "app"
    (folder / "bookmarks").mkdir(parents=True)
    monkeypatch.chdir(folder)
    return folder


def _write(folder, text):
    path = folder / "bookmarks" / "schema.py"
    path.write_text(textwrap.dedent(text).lstrip(), encoding="utf-8")
    return "bookmarks/schema.py"


def _one_error(result):
    lines = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert len(lines) == 1, result.stderr
    assert "Traceback" not in result.stderr and "Attribute(" not in result.stderr
    return lines[0]


def test_an_exception_in_the_declaration_names_its_file_line_and_code(runner, here):
    spec = _write(here, """
        from schema_dsl.model import Schema

        SCHEMA = 1/0
    """)
    result = runner.invoke(main, ["lint", "--schema", spec])
    assert result.exit_code == 2
    line = _one_error(result)
    assert "bookmarks/schema.py:3" in line and "SCHEMA = 1/0" in line and "ZeroDivisionError: division by zero" in line


def test_an_attrs_validation_error_is_one_sentence_naming_the_field_and_what_was_expected(runner, here):
    spec = _write(here, """
        from schema_dsl.model import Column, ForeignKey, PrimaryKey, Schema, Table

        users = Table("users", columns=[Column("id", "INTEGER")], primary_key=PrimaryKey(("id",)))
        link = ForeignKey(["owner"], "users", ["id"], on_delete="CASCADEE")
        SCHEMA = Schema(name="b", tables=[users])
    """)
    result = runner.invoke(main, ["lint", "--schema", spec])
    assert result.exit_code == 2
    line = _one_error(result)
    assert "bookmarks/schema.py:4" in line
    assert "ForeignKey.on_delete must be one of" in line and "'CASCADE'" in line and "got 'CASCADEE'" in line


def test_a_syntax_error_names_its_line(runner, here):
    spec = _write(here, """
        from schema_dsl.model import Schema
        SCHEMA = Schema(name="b" tables=[])
    """)
    result = runner.invoke(main, ["lint", "--schema", spec])
    assert result.exit_code == 2
    assert "bookmarks/schema.py:2" in _one_error(result) and "SyntaxError" in result.stderr


@pytest.mark.parametrize("call", ["sys.exit(0)", "sys.exit(3)", "raise SystemExit", "os._exit(0)"])
def test_a_declaration_that_exits_while_loading_is_an_error_with_exit_2(runner, here, call):
    # os._exit(0) ended the process on the spot with exit 0 and nothing said, as if apply had succeeded
    spec = _write(here, """
        import os, sys
        from schema_dsl.model import Schema

        %s
    """ % call)
    for command in (["lint", "--schema", spec], ["apply", "--db", str(here / "x.db"), "--schema", spec]):
        result = runner.invoke(main, command)
        assert result.exit_code == 2, (command, result.output)
        line = _one_error(result)
        assert "bookmarks/schema.py:4" in line and "exited" in line
    assert not (here / "x.db").exists()


def test_an_interrupt_while_loading_stays_an_interrupt(runner, here):
    spec = _write(here, """
        raise KeyboardInterrupt
    """)
    result = runner.invoke(main, ["lint", "--schema", spec])
    assert result.exit_code == 130


def test_what_a_declaration_prints_goes_to_stderr_never_into_json(runner, here):
    spec = _write(here, """
        print("loading my schema")
        from schema_dsl.model import Column, PrimaryKey, Schema, Table

        SCHEMA = Schema(name="b", tables=[Table("users", columns=[Column("id", "INTEGER")],
                                               primary_key=PrimaryKey(("id",)))])
    """)
    result = runner.invoke(main, ["plan", "--db", str(here / "b.db"), "--schema", spec, "--json"])
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["fresh"] is True
    assert "loading my schema" in result.stderr


def test_an_attrs_type_error_names_the_class_field_and_the_type_expected(runner, here):
    spec = _write(here, """
        from schema_dsl.model import Check

        bad = Check(5)
    """)
    result = runner.invoke(main, ["lint", "--schema", spec])
    assert result.exit_code == 2
    line = _one_error(result)
    assert "bookmarks/schema.py:3 (bad = Check(5))" in line and "Check.expr must be a str, got 5 (int)" in line


def test_a_declaration_edited_and_loaded_again_reloads_only_its_own_files(tmp_path):
    """A long-lived process (a test run, a server calling Database) that loads a declaration, sees it edited and
    loads it again must drop only the declaration's own modules: before, every module first imported while the
    declaration loaded was dropped too, schema_dsl.model among them when the declaration was the first to import it,
    so the second load built a second model whose Literal was no Literal to the rest of the package ("default must
    be a Literal or an Expr, got Literal(value=...)"); and third-party or standard-library modules first imported
    there counted as the declaration's source files."""
    helper = tmp_path / "helpers.py"
    helper.write_text("STATUS = 'new'\n")
    decl = tmp_path / "decl.py"
    decl.write_text(
        "import decimal  # a standard-library module first imported here\n"
        "from helpers import STATUS\n"
        "from schema_dsl.model import Column, Literal, PrimaryKey, Schema, Table\n"
        "SCHEMA = Schema(name='d', tables=[Table('t', columns=[Column('id', 'INTEGER'),\n"
        "    Column('status', 'TEXT', default=Literal(STATUS))], primary_key=PrimaryKey(('id',)))])\n")
    code = (
        "import sys, pathlib\n"
        "from schema_dsl.compile import project\n"
        "assert 'schema_dsl.model' not in sys.modules and 'decimal' not in sys.modules\n"
        "p = pathlib.Path(sys.argv[1])\n"
        "first = project.load_declaration(str(p))\n"
        "model = sys.modules['schema_dsl.model']\n"
        "files = sorted(str(f) for f in project._LOADED[next(iter(project._LOADED))][1])\n"
        "p.write_text(p.read_text() + '# edited\\n')\n"
        "second = project.load_declaration(str(p))\n"
        "assert second is not first, 'the edited declaration was not loaded again'\n"
        "assert sys.modules['schema_dsl.model'] is model, 'schema_dsl.model was loaded twice'\n"
        "from schema_dsl.analysis.sqltext import default_sql\n"
        "print(default_sql(second.tables[0].columns[1].default))\n"
        "print('\\n'.join(files))\n")
    out = subprocess.run([sys.executable, "-c", code, str(decl)], capture_output=True, text=True, cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    lines = out.stdout.splitlines()
    assert lines[0] == "'new'"
    assert sorted(lines[1:]) == sorted([str(decl.resolve()), str(helper.resolve())])
