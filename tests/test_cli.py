"""The schemagen command end to end: click's CliRunner, the installed console script, and `python -m schema_dsl`."""
from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

import legacy
from conftest import GENERATED, ROOT, make_runner
from schema_dsl import __version__
from schema_dsl.cli import main

COMMANDS = ["render", "plan", "apply", "validate"]


def schemagen_script():
    """The console script installed next to the interpreter running the tests (else the one on PATH)."""
    here = Path(sys.executable).parent / ("schemagen.exe" if os.name == "nt" else "schemagen")
    found = str(here) if here.exists() else shutil.which("schemagen")
    assert found, "the schemagen console script is not installed"
    return found


def _env():
    env = dict(os.environ)
    env.pop("PYTHONPATH", None)  # the installed package, not the source tree
    return env


def run(mode, args, cwd=None):
    """(exit code, stdout, stderr) of schemagen ARGS run through `mode`."""
    if mode == "runner":
        result = make_runner().invoke(main, args, prog_name="schemagen")
        if result.exception is not None and not isinstance(result.exception, SystemExit):
            raise result.exception
        return result.exit_code, result.stdout, result.stderr
    cmd = [schemagen_script()] if mode == "script" else [sys.executable, "-m", "schema_dsl"]
    p = subprocess.run(cmd + list(args), capture_output=True, text=True, timeout=120, cwd=cwd, env=_env())
    return p.returncode, p.stdout, p.stderr


MODES = ["runner", "script", "module"]


def sha(path):
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def tree(folder):
    return sorted((str(p.relative_to(folder)), p.read_bytes() if p.is_file() else None) for p in Path(folder).rglob("*"))


def assert_one_line_error(code, stderr, path):
    assert code == 2
    lines = stderr.strip().splitlines()
    assert len(lines) == 1, stderr
    assert lines[0].startswith("error: ")
    assert str(path) in lines[0]
    assert "Traceback" not in stderr


# --- the happy path -----------------------------------------------------------

@pytest.mark.parametrize("mode", MODES)
def test_apply_creates_validates_and_then_is_up_to_date(mode, tmp_path):
    db = tmp_path / "abathur.db"
    code, out, err = run(mode, ["apply", "--verbose", "--db", str(db)], cwd=tmp_path)
    assert code == 0, err
    assert out.startswith("created %s: 42 statements in 3 steps, one transaction" % db)
    assert "validation report for %s: checks that ran passed (1 check not run)" % db in out
    assert "[ok] 9 tables" in out and "[ok] 33 indexes" in out and "[ok] journal_mode = wal" in out
    assert "[ok] foreign_keys" not in out  # a per-connection setting, not a property of the file
    assert "journal_mode=wal, synchronous=1, foreign_keys=1, busy_timeout=5000, wal_autocheckpoint=1000" in out  # declared order
    assert "SEARCH memory_entries USING INDEX" in out
    assert [line for line in err.splitlines() if not line.startswith("note: ")] == [], err  # at most the fallback note
    before = sha(db)
    code, out, err = run(mode, ["apply", "--verbose", "--db", str(db)], cwd=tmp_path)
    assert code == 0, err
    assert out.startswith("up to date: %s already matches the declaration\n" % db)
    assert sha(db) == before


def test_apply_on_an_empty_file(tmp_path, runner):
    db = tmp_path / "empty.db"
    db.write_bytes(b"")
    result = runner.invoke(main, ["apply", "--verbose", "--db", str(db)])
    assert result.exit_code == 0, result.output
    assert result.stdout.startswith("created ")
    conn = sqlite3.connect(str(db))
    try:
        assert conn.execute("SELECT count(*) FROM sqlite_master WHERE type = 'index' AND name NOT LIKE 'sqlite_%'").fetchone() == (33,)
    finally:
        conn.close()


@pytest.mark.parametrize("mode", ["runner", "script"])
def test_validate_json(mode, fresh_db):
    code, out, err = run(mode, ["validate", "--verbose", "--db", str(fresh_db), "--json"])
    assert code == 0, err
    report = json.loads(out)
    assert report["ok"] is True
    assert report["database"] == str(fresh_db)
    assert all(c["ok"] for c in report["checks"])
    assert report["counts"] == {"tables": 9, "expected_tables": 9, "indexes": 33, "expected_indexes": 33}
    assert report["pragmas"]["foreign_keys"] == 1 and report["pragmas"]["journal_mode"] == "wal"


def test_apply_json_prints_only_json_one_object_with_what_was_done_and_the_report(runner, tmp_path):
    result = runner.invoke(main, ["apply", "--db", str(tmp_path / "a.db"), "--json"])
    assert result.exit_code == 0
    out = json.loads(result.stdout)
    assert out["report"]["ok"] is True and out["validated"] is True
    assert out["applied"] is True and out["fresh"] is True and out["statements"] == 42 and out["backup"] is None
    assert [s["kind"] for s in out["steps"]] == ["RunFile"] * 3 and out["seconds"] >= 0
    again = json.loads(runner.invoke(main, ["apply", "--db", str(tmp_path / "a.db"), "--json", "--no-validate"]).stdout)
    assert again["up_to_date"] is True and again["steps"] == [] and again["report"] is None


def test_validate_report_writes_markdown(runner, fresh_db, tmp_path):
    out = tmp_path / "report.md"
    result = runner.invoke(main, ["validate", "--verbose", "--db", str(fresh_db), "--report", str(out)])
    assert result.exit_code == 0, result.output
    assert "report written to %s" % out in result.stdout
    md = out.read_text(encoding="utf-8")
    assert md.startswith("# Validation report\n")
    assert "Result: **OK**" in md
    for section in ("## Checks", "## Tables in sqlite_master", "## Indexes in sqlite_master", "## PRAGMA results",
                    "## EXPLAIN QUERY PLAN samples", "## Issues encountered"):
        assert "\n%s\n" % section in md
    tables = md.split("## Tables in sqlite_master")[1].split("##")[0]
    for name in ("sessions", "memory_entries", "document_index", "tasks", "agents", "state", "audit", "metrics",
                 "checkpoints"):
        assert "- `%s`" % name in tables
    assert "| journal_mode | wal |" in md and "| foreign_keys | 1 |" in md and "| busy_timeout | 5000 |" in md
    assert "| quick_check | ok |" in md and "| foreign_key_check | (no rows) |" in md
    assert "### idx_memory_namespace_key_version" in md and "SEARCH memory_entries USING" in md
    assert "## Issues encountered\n\n- none\n" in md


def test_validate_fails_with_exit_1_and_names_the_problem(runner, fresh_db, tmp_path):
    conn = sqlite3.connect(str(fresh_db))
    conn.execute("DROP INDEX idx_memory_namespace_key_version")
    conn.close()
    report = tmp_path / "r.md"
    result = runner.invoke(main, ["validate", "--verbose", "--db", str(fresh_db), "--report", str(report)])
    assert result.exit_code == 1
    assert "validation report for %s: FAILED" % fresh_db in result.stdout
    assert "missing index 'idx_memory_namespace_key_version'" in result.stdout
    assert "Result: **FAILED**" in report.read_text()


def test_version(runner):
    result = runner.invoke(main, ["--version"])
    assert result.exit_code == 0
    assert result.stdout == "schemagen, version %s\n" % __version__


@pytest.mark.parametrize("command", [None, *COMMANDS])
def test_help(runner, command):
    args = ([command] if command else []) + ["--help"]
    result = runner.invoke(main, args, prog_name="schemagen")
    assert result.exit_code == 0
    assert result.stdout.startswith("Usage: schemagen %s" % (command + " " if command else ""))
    if command in ("plan", "apply", "validate"):
        assert "--db" in result.stdout
    if command is None:
        for c in COMMANDS:
            assert re.search(r"^  %s\s+\S" % c, result.stdout, re.M), c
    assert re.search(r"^  -h, --help\s+Show this message and exit\.$", result.stdout, re.M)  # cli._HelpOption


def test_migrating_through_the_cli_looks_up_no_translation(tmp_path):
    # click's own --help option and click.Path look their texts up in gettext's catalogues (importing locale and
    # searching the file system, about 2 ms of every start-up): apply's path builds neither
    path = legacy.create(str(tmp_path / "old.db"), "old", tasks=20)
    probe = ("import sys\nfrom schema_dsl.cli import main\ntry:\n    main(['apply', '--no-backup', '--db', %r])\n"
             "except SystemExit as e:\n    assert e.code in (0, None), e.code\nprint('locale' in sys.modules)" % path)
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=60, cwd=str(tmp_path))
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip().splitlines()[-1] == "False"
    assert "migrated" in out.stdout


def test_a_path_option_click_refuses_keeps_its_message(runner, tmp_path):
    # cli._Path takes a usable path as it is; anything else is click.Path's to refuse, in its words
    not_a_folder = tmp_path / "file.txt"
    not_a_folder.write_text("x")
    result = runner.invoke(main, ["apply", "--db", str(tmp_path / "a.db"), "--backup-dir", str(not_a_folder)])
    assert result.exit_code == 2
    assert "is a file" in result.output and not (tmp_path / "a.db").exists()


@pytest.mark.parametrize("mode", ["script", "module"])
def test_version_and_help_of_the_installed_entry_points(mode, tmp_path):
    code, out, _ = run(mode, ["--version"], cwd=tmp_path)
    assert (code, out) == (0, "schemagen, version %s\n" % __version__)
    code, out, _ = run(mode, ["apply", "--help"], cwd=tmp_path)
    assert code == 0 and out.startswith("Usage: schemagen apply")


def test_usage_errors_exit_2(runner):
    assert runner.invoke(main, ["apply"]).exit_code == 2
    assert runner.invoke(main, ["nonsense"]).exit_code == 2
    assert runner.invoke(main, ["validate", "--verbose", "--db"]).exit_code == 2


# --- bad inputs: exit 2, one line naming the path, nothing changed -------------

@pytest.mark.parametrize("command", ["apply", "validate", "plan"])
@pytest.mark.parametrize("mode", ["runner", "script"])
def test_a_directory(mode, command, tmp_path):
    folder = tmp_path / "adir"
    folder.mkdir()
    (folder / "inside.txt").write_text("x")
    before = tree(folder)
    code, _, err = run(mode, [command, "--db", str(folder)])
    assert_one_line_error(code, err, folder)
    assert "directory" in err
    assert tree(folder) == before


@pytest.mark.parametrize("command", ["apply", "plan"])
@pytest.mark.parametrize("mode", ["runner", "script"])
def test_a_missing_parent_folder(mode, command, tmp_path):
    db = tmp_path / "no" / "such" / "abathur.db"
    code, _, err = run(mode, [command, "--db", str(db)])
    assert_one_line_error(code, err, db)
    assert "parent folder" in err
    assert not (tmp_path / "no").exists()


@pytest.mark.parametrize("command", ["apply", "validate", "plan"])
@pytest.mark.parametrize("mode", ["runner", "script"])
def test_a_text_file(mode, command, tmp_path):
    text = tmp_path / "notes.txt"
    text.write_text("Dear diary,\nthis is not an SQLite database.\n" * 50)
    before = sha(text)
    code, _, err = run(mode, [command, "--db", str(text)])
    assert_one_line_error(code, err, text)
    assert "not an SQLite database" in err
    assert sha(text) == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["notes.txt"]


@pytest.mark.parametrize("mode", ["runner", "script"])
def test_validate_a_missing_file_creates_nothing(mode, tmp_path):
    db = tmp_path / "missing.db"
    code, _, err = run(mode, ["validate", "--verbose", "--db", str(db)])
    assert_one_line_error(code, err, db)
    assert not db.exists() and list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("mode", ["runner", "script"])
def test_a_read_only_file(mode, tmp_path):
    db = legacy.create(str(tmp_path / "old.db"), "old", tasks=5)
    os.chmod(db, 0o444)
    try:
        before = sha(db)
        code, _, err = run(mode, ["apply", "--verbose", "--db", db])
        assert_one_line_error(code, err, db)
        assert "read-only" in err
        assert sha(db) == before
        assert not [p for p in tmp_path.iterdir() if ".backup-" in p.name]
    finally:
        os.chmod(db, 0o644)


def test_a_read_only_file_still_validates(runner, fresh_db):
    os.chmod(fresh_db, 0o444)
    try:
        result = runner.invoke(main, ["validate", "--verbose", "--db", str(fresh_db)])
    finally:
        os.chmod(fresh_db, 0o644)
    assert result.exit_code == 0, result.output


def test_a_locked_database(tmp_path):
    # The tool waits busy_timeout (5 s) for the lock before it gives up: the one slow test.
    db = legacy.create(str(tmp_path / "old.db"), "old", tasks=5)
    before = sha(db)
    holder = sqlite3.connect(db, isolation_level=None)
    try:
        holder.execute("BEGIN IMMEDIATE")
        code, _, err = run("script", ["apply", "--verbose", "--db", db])
        assert sha(db) == before
    finally:
        holder.execute("ROLLBACK")
        holder.close()
    assert_one_line_error(code, err, db)
    assert "locked" in err
    assert sha(db) == before
    conn = sqlite3.connect(db)
    try:
        assert conn.execute("SELECT count(*) FROM sqlite_master WHERE name = 'sessions'").fetchone() == (0,)
    finally:
        conn.close()


@pytest.mark.parametrize("mode", ["runner", "script"])
def test_a_file_holding_other_tables_is_migrated_and_keeps_them(mode, tmp_path):
    db = tmp_path / "mine.db"
    conn = sqlite3.connect(str(db))
    conn.executescript("CREATE TABLE notes (id INTEGER PRIMARY KEY, body TEXT NOT NULL);"
                       "CREATE INDEX ix_notes_body ON notes (body);"
                       "INSERT INTO notes (body) VALUES ('first'), ('second');")
    conn.close()
    code, out, err = run(mode, ["apply", "--verbose", "--db", str(db)])
    assert code == 0, out + err
    assert "validation report for %s: checks that ran passed" % db in out
    assert "notes" in out.split("kept, not in the declaration")[1]
    conn = sqlite3.connect(str(db))
    try:
        assert conn.execute("SELECT id, body FROM notes ORDER BY id").fetchall() == [(1, "first"), (2, "second")]
        assert conn.execute("SELECT count(*) FROM sqlite_master WHERE name = 'ix_notes_body'").fetchone() == (1,)
        assert conn.execute("SELECT count(*) FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%'").fetchone() == (10,)
    finally:
        conn.close()
    code, out, err = run(mode, ["apply", "--verbose", "--db", str(db)])
    assert code == 0 and out.startswith("up to date")
    code, out, err = run(mode, ["validate", "--verbose", "--db", str(db), "--json"])
    report = json.loads(out)
    assert code == 0 and report["ok"] is True and "extra table 'notes'" in report["extras"]


def _broken_files(monkeypatch):
    """The CLI (inside this checkout: the project's rendered files, else the shipped ones) gets a broken index file."""
    import schema_dsl.compile.project as project_module
    import schema_dsl.compile.target as target_module
    real = target_module.shipped_target()
    files = dict(real.files)
    good = 'CREATE INDEX IF NOT EXISTS "idx_agents_state" ON "agents" ("state");'
    assert good in files["ddl-indexes.sql"]
    files["ddl-indexes.sql"] = files["ddl-indexes.sql"].replace(good, good.replace('"agents"', '"agentz"'))
    broken = target_module.Target(files, real.compiled)
    monkeypatch.setattr(target_module, "_SHIPPED", [broken])
    monkeypatch.setattr(project_module, "read_target", lambda folder, load=None: broken)


def test_a_failed_apply_on_a_new_path_leaves_no_file(runner, tmp_path, monkeypatch):
    _broken_files(monkeypatch)
    db = tmp_path / "new.db"
    result = runner.invoke(main, ["apply", "--verbose", "--db", str(db)])
    assert result.exit_code == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: step 3 of 3 (run ddl-indexes.sql) failed: no such table: ")
    assert lines[0].endswith('statement: CREATE INDEX IF NOT EXISTS "idx_agents_state" ON "agentz" ("state");')
    assert list(tmp_path.iterdir()) == []


def test_a_failed_apply_on_an_empty_file_leaves_it_empty(runner, tmp_path, monkeypatch):
    _broken_files(monkeypatch)
    db = tmp_path / "empty.db"
    db.write_bytes(b"")
    result = runner.invoke(main, ["apply", "--verbose", "--db", str(db)])
    assert result.exit_code == 2
    assert db.read_bytes() == b""
    assert sorted(p.name for p in tmp_path.iterdir()) == ["empty.db"]


# --- packaging ----------------------------------------------------------------

def test_the_installed_package_carries_its_templates_and_generated_files(tmp_path):
    # Run from an unrelated cwd so the source tree is not on sys.path: with a regular install (as CI does,
    # `pip install '.[test]'`) this exercises the wheel's schema_dsl/templates and schema_dsl/generated.
    out = tmp_path / "out"
    work = tmp_path / "cwd"
    work.mkdir()
    code, stdout, err = run("script", ["render", "--out", str(out)], cwd=work)
    assert code == 0, err
    expected = sorted(p.name for p in GENERATED.iterdir() if p.is_file())
    assert sorted(p.name for p in out.iterdir()) == expected
    for name in expected:
        assert (out / name).read_bytes() == (GENERATED / name).read_bytes(), name
    probe = subprocess.run(
        [sys.executable, "-c", "import schema_dsl.compile.paths as p; print(p.resource_dir('templates')); "
                               "print(p.resource_dir('generated'))"],
        capture_output=True, text=True, cwd=work, env=_env(), timeout=60)
    templates, generated = (Path(line) for line in probe.stdout.splitlines())
    assert (templates / "statements.sql.j2").is_file()
    for name in expected:  # every rendered file ships (apply reads declaration.json, the DDL files, pragmas.sql)
        assert (generated / name).read_bytes() == (GENERATED / name).read_bytes(), name
    code, stdout, err = run("script", ["apply", "--verbose", "--db", str(tmp_path / "x.db")], cwd=work)
    assert code == 0, err


# --- README -------------------------------------------------------------------

def _quick_start_commands():
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    section = readme.split("\n## Quick start\n", 1)[1]
    block = re.search(r"```sh\n(.*?)```", section, re.S)
    return [line for line in block.group(1).splitlines() if line.strip()]


def test_the_readme_has_two_quick_start_commands():
    commands = _quick_start_commands()
    assert len(commands) == 2
    assert "pip install '.[test,postgresql]'" in commands[0] and "schemagen apply --db" in commands[0]
    assert commands[1] == ".venv/bin/python -m pytest"


@pytest.mark.parametrize("n", [
    pytest.param(0, id="install-and-apply"),
    pytest.param(1, id="tests"),
])
def test_ci_runs_the_readme_quick_start_verbatim(n):
    ci_lines = [line.strip() for line in (ROOT / ".ci" / "run").read_text(encoding="utf-8").splitlines()]
    assert _quick_start_commands()[n] in ci_lines


# --- more inputs --------------------------------------------------------------

@pytest.mark.parametrize("content", [b"SQLite format 3\x00", b"SQLite format 3\x00" + b"\xff" * 4000])
@pytest.mark.parametrize("command", ["apply", "validate"])
def test_a_file_with_the_sqlite_header_but_no_database(runner, tmp_path, command, content):
    db = tmp_path / "broken.db"
    db.write_bytes(content)
    result = runner.invoke(main, [command, "--db", str(db)])
    assert_one_line_error(result.exit_code, result.stderr, db)
    assert db.read_bytes() == content
    assert sorted(p.name for p in tmp_path.iterdir()) == ["broken.db"]


def test_plan_on_a_new_path_creates_nothing(runner, tmp_path):
    db = tmp_path / "new.db"
    result = runner.invoke(main, ["plan", "--db", str(db)])
    assert result.exit_code == 0, result.output
    assert "3 steps, 42 statements" in result.stdout
    assert list(tmp_path.iterdir()) == []


def test_plan_json_on_an_applied_database_is_up_to_date(runner, fresh_db):
    before = sha(fresh_db)
    result = runner.invoke(main, ["plan", "--db", str(fresh_db), "--json"])
    assert result.exit_code == 0
    assert json.loads(result.stdout)["up_to_date"] is True
    assert sha(fresh_db) == before


def test_report_to_an_unwritable_place_is_an_input_error(runner, fresh_db, tmp_path):
    target = tmp_path / "no" / "report.md"
    result = runner.invoke(main, ["validate", "--verbose", "--db", str(fresh_db), "--report", str(target)])
    assert result.exit_code == 2
    assert result.stderr.strip().splitlines()[-1].startswith("error: --report %r" % str(target))


def test_validate_reports_an_expression_index_without_a_traceback(fresh_db):
    conn = sqlite3.connect(str(fresh_db))
    conn.executescript("DROP INDEX idx_agents_state; CREATE INDEX idx_agents_state ON agents (lower(state));")
    conn.close()
    code, out, err = run("script", ["validate", "--verbose", "--db", str(fresh_db)])
    assert "Traceback" not in err
    assert code == 1 and "idx_agents_state" in out


def test_apply_and_validate_agree_on_names_differing_in_case(runner, fresh_db):
    conn = sqlite3.connect(str(fresh_db))
    conn.executescript("DROP INDEX idx_agents_state; CREATE INDEX IDX_Agents_State ON agents (state);")
    conn.close()
    result = runner.invoke(main, ["apply", "--verbose", "--db", str(fresh_db)])
    assert result.exit_code == 0, result.output
