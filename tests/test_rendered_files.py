"""The rendered files are what the declaration says, or they are refused: declaration.json records each rendered
file's sha256, and a file edited by hand is never applied or reported as matching (issue 15 item 12)."""
from __future__ import annotations

import json
import shutil
import sqlite3

import pytest

from conftest import GENERATED, make_runner
from schema_dsl.cli import main
from schema_dsl.compile.paths import file_sha256
from schema_dsl.compile.target import read_target
from schema_dsl.errors import StaleFiles
from test_project import project  # noqa: F401  (the notes project fixture)


@pytest.fixture
def runner():
    return make_runner()


def test_declaration_json_records_the_sha256_of_every_file_apply_runs():
    compiled = json.loads((GENERATED / "declaration.json").read_text(encoding="utf-8"))
    names = [*compiled["table_files"], compiled["index_file"], "pragmas.sql"]
    assert sorted(compiled["file_sha256"]) == sorted(names)
    for name in names:
        assert compiled["file_sha256"][name] == file_sha256((GENERATED / name).read_text(encoding="utf-8"))


def test_a_hand_edited_rendered_file_is_refused_by_read_target(tmp_path):
    copy = tmp_path / "generated"
    shutil.copytree(GENERATED, copy)
    assert read_target(copy).files  # as rendered: accepted
    table_file = json.loads((copy / "declaration.json").read_text())["table_files"][0]
    path = copy / table_file
    path.write_text(path.read_text().replace("CREATE TABLE IF NOT EXISTS", "CREATE TABLE IF NOT EXISTS\n", 1))
    with pytest.raises(StaleFiles, match="edited since it was rendered"):
        read_target(copy)


def test_a_hand_edited_ddl_file_in_a_project_is_refused_by_every_command_nothing_changed(runner, project):
    assert runner.invoke(main, ["render"]).exit_code == 0
    db = project / "n.db"
    assert runner.invoke(main, ["apply", "--db", str(db)]).exit_code == 0
    ddl = project / "sql" / "ddl-tables.sql"
    ddl.write_text(ddl.read_text().replace('"name" TEXT NOT NULL', '"name" TEXT'), encoding="utf-8")
    fresh = project / "fresh.db"
    before = db.read_bytes()
    for command in (["apply", "--db", str(fresh)], ["apply", "--db", str(db)], ["plan", "--db", str(db)],
                    ["validate", "--db", str(db)]):
        result = runner.invoke(main, command)
        assert result.exit_code == 2, (command, result.output)
        assert "ddl-tables.sql: edited since it was rendered" in result.stderr and "schemagen render" in result.stderr
    assert not fresh.exists() and db.read_bytes() == before
    assert runner.invoke(main, ["render"]).exit_code == 0
    result = runner.invoke(main, ["apply", "--db", str(fresh)])
    assert result.exit_code == 0, result.output
    conn = sqlite3.connect(str(fresh))
    assert [r[3] for r in conn.execute("PRAGMA table_info(authors)") if r[1] == "name"] == [1]  # NOT NULL as declared
    conn.close()


def test_rendered_files_without_recorded_hashes_are_stale_for_the_project(runner, project):
    assert runner.invoke(main, ["render"]).exit_code == 0
    path = project / "sql" / "declaration.json"
    compiled = json.loads(path.read_text())
    del compiled["file_sha256"]
    path.write_text(json.dumps(compiled))
    result = runner.invoke(main, ["apply", "--db", str(project / "n.db")])
    assert result.exit_code == 2
    assert "records no hash of its rendered files" in result.stderr
