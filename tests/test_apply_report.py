"""The report `apply` prints is built on apply's own connection after COMMIT (check/report.report_after_apply),
from the structure apply verified before COMMIT: the same report `build_report` gives on a connection of its
own, without opening the file again or reading and comparing its structure again."""
from __future__ import annotations

import json
import shutil
import sqlite3

import pytest

import legacy
from conftest import make_runner
from schema_dsl.check import report as report_module
from schema_dsl.check.report import build_report, report_after_apply
from schema_dsl.cli import main
from schema_dsl.compile.target import target_for
from schema_dsl.errors import DatabaseFileError
from schema_dsl.migrate.apply import apply
from schema_dsl.sqlite import dbfile, structure


@pytest.fixture(scope="module")
def old_file(tmp_path_factory):
    return legacy.create(str(tmp_path_factory.mktemp("old") / "old.db"), "old", tasks=50)


def _without_timing(report):
    return json.loads(json.dumps(report, sort_keys=True))


@pytest.mark.parametrize("case", ["migrated", "created", "up to date", "a users own index", "check data"])
def test_the_report_on_applys_connection_is_the_one_build_report_gives(case, old_file, tmp_path):
    target = target_for(None)
    check_data = case == "check data"
    paths = []
    for side in ("on apply's connection", "reopened"):
        path = str(tmp_path / ("%s.db" % side))
        if case != "created":
            shutil.copy(old_file, path)
        if case == "a users own index":
            conn = sqlite3.connect(path)
            conn.execute("CREATE INDEX my_own ON tasks (created_by)")
            conn.close()
        if case == "up to date":
            apply(path, backup=False)
        paths.append(path)
    on_conn, reopened = paths
    result = apply(on_conn, backup=False, check_data=check_data,
                   report=report_after_apply(target, check_data=check_data))
    other = apply(reopened, backup=False, check_data=check_data)
    assert result.report is not None
    applied = None if check_data else other.foreign_key_check
    expected = build_report(reopened, actual=other.structure, applied=applied)
    expected["database"] = on_conn
    assert _without_timing(result.report) == _without_timing(expected)
    if case == "a users own index":
        assert result.report["extras"] == ["extra index 'my_own' on table 'tasks'"]
    if case == "check data":
        assert "quick_check" in result.report["pragmas"]


def test_the_report_reuses_the_structure_and_differences_apply_verified(old_file, tmp_path, monkeypatch):
    path = str(shutil.copy(old_file, tmp_path / "old.db"))
    target = target_for(None)
    calls = []
    real_read, real_raw, real_compare = structure.read_structure, structure.read_raw, structure.compare
    real_report = report_module.report_on_connection
    monkeypatch.setattr(structure, "read_structure", lambda conn: calls.append("read") or real_read(conn))
    monkeypatch.setattr(structure, "read_raw", lambda conn: calls.append("read") or real_raw(conn))
    monkeypatch.setattr(structure, "compare", lambda e, a: calls.append("compare") or real_compare(e, a))
    monkeypatch.setattr(report_module, "report_on_connection",
                        lambda *args, **kwargs: calls.append("report") or real_report(*args, **kwargs))
    result = apply(path, backup=False, report=report_after_apply(target))
    # planning reads and compares, the check before COMMIT too (unless this process verified the same schema
    # text already); the report does neither
    assert "read" in calls and "compare" in calls and calls[-1] == "report", calls
    assert result.report["ok"] is True
    assert result.differences == [] and result.report["differences"] == []


def test_cli_apply_opens_the_file_once(old_file, tmp_path, monkeypatch):
    """Before, the report opened the file a second time after apply had closed it."""
    path = str(shutil.copy(old_file, tmp_path / "old.db"))
    opened = []
    real = dbfile.connect

    def counting(p, *args, **kwargs):
        opened.append(p)
        return real(p, *args, **kwargs)

    monkeypatch.setattr(dbfile, "connect", counting)
    real_existing = dbfile.open_existing
    monkeypatch.setattr(dbfile, "open_existing", lambda p, *a, **k: opened.append(p) or real_existing(p, *a, **k))
    out = make_runner().invoke(main, ["apply", "--db", path, "--no-backup", "--schema", "abathur"])
    assert out.exit_code == 0, out.output + out.stderr
    assert "checks that ran passed" in out.stdout
    assert opened == [path]


def test_a_report_that_fails_on_applys_connection_is_built_again_by_the_cli(old_file, tmp_path, monkeypatch):
    """The callable's own error leaves result.report None; the CLI then builds it as before, on a connection of
    its own (and meets the error there: one line, exit 3 after a committed change)."""
    path = str(shutil.copy(old_file, tmp_path / "old.db"))

    def failing(*args, **kwargs):
        raise DatabaseFileError("database %r: injected" % path)

    monkeypatch.setattr(report_module, "report_on_connection", failing)
    result = apply(path, backup=False, report=report_after_apply(target_for(None)))
    assert result.applied and result.report is None
    second = str(shutil.copy(old_file, tmp_path / "second.db"))
    out = make_runner().invoke(main, ["apply", "--db", second, "--no-backup", "--schema", "abathur"])
    assert out.exit_code == 0, out.output + out.stderr  # built again by build_report, which works
    assert "checks that ran passed" in out.stdout
    monkeypatch.setattr(report_module, "build_report", failing)
    third = str(shutil.copy(old_file, tmp_path / "third.db"))
    out = make_runner().invoke(main, ["apply", "--db", third, "--no-backup", "--schema", "abathur"])
    assert out.exit_code == 3, out.output + out.stderr
    assert "committed" in out.stderr and "injected" in out.stderr


def test_apply_no_validate_imports_no_report_module(old_file, tmp_path):
    """Start-up time: without a report, apply imports none of the report's modules."""
    import subprocess
    import sys
    path = str(shutil.copy(old_file, tmp_path / "old.db"))
    code = ("import sys; from schema_dsl.cli import main\n"
            "try:\n    main(['apply', '--no-backup', '--no-validate', '--schema', 'abathur', '--db', sys.argv[1]])\n"
            "except SystemExit as exc:\n    assert not exc.code, exc.code\n"
            "print(sorted(m for m in sys.modules if m.startswith(('schema_dsl.check', 'schema_dsl.sqlite.eqp'))))")
    out = subprocess.run([sys.executable, "-c", code, path], capture_output=True, text=True, check=True)
    assert out.stdout.strip().splitlines()[-1] == "[]", out.stdout
