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
    monkeypatch.setattr(structure, "read_raw", lambda conn, **k: calls.append("read") or real_raw(conn, **k))
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


def test_the_check_before_commit_reads_again_only_what_the_plan_changed(old_file, tmp_path, monkeypatch):
    """apply's read-back before COMMIT runs the PRAGMAs only on the tables and indexes whose text in sqlite_master
    the plan changed (structure.read_raw's known); what it gives is what a full read gives."""
    path = str(shutil.copy(old_file, tmp_path / "old.db"))
    statements = []
    real = dbfile.connect

    def traced(*args, **kwargs):
        conn = real(*args, **kwargs)
        conn.set_trace_callback(statements.append)
        return conn
    monkeypatch.setattr(dbfile, "connect", traced)
    from schema_dsl.migrate import apply as apply_module
    monkeypatch.setattr(apply_module, "_VERIFIED", {})  # not the schema an earlier test of this process verified
    result = apply(path, backup=False)

    def read(pragma):  # the objects each structure read ran PRAGMA pragma on: one list per read
        reads, names = [], None
        for stmt in statements:
            if stmt.startswith("SELECT type, name, tbl_name, sql FROM sqlite_master"):
                names = []
                reads.append(names)
            elif stmt.startswith("SELECT * FROM pragma_%s(" % pragma) and names is not None:
                names.append(stmt.split("'")[1])
        return [r for r in reads if r]
    tables_read, indexes_read = read("table_xinfo"), read("index_xinfo")
    assert len(tables_read) == 2, statements  # planning, then the check before COMMIT
    assert "metrics" in tables_read[0] and "tasks" in tables_read[0]
    # metrics and state are not changed by this migration (nor are their indexes): not read again
    assert "tasks" in tables_read[1] and "metrics" not in tables_read[1] and "state" not in tables_read[1]
    assert "idx_metrics_name_timestamp" in indexes_read[0] and "idx_metrics_name_timestamp" not in indexes_read[1]
    assert "idx_tasks_session" in indexes_read[1]
    conn = sqlite3.connect(path)
    try:
        assert result.structure == structure.read_structure(conn)
    finally:
        conn.close()


@pytest.mark.parametrize("wrong", [
    # an unchanged table and an unchanged index, which the check before COMMIT would not read again had the
    # plan left them alone
    ["ALTER TABLE metrics RENAME COLUMN labels TO labels_wrong"],
    ["DROP INDEX idx_metrics_name_timestamp", "CREATE INDEX idx_metrics_name_timestamp ON metrics(metric_name, timestamp)"],
    # a table the plan changed, and an index it created
    ["DROP INDEX {tasks_index}", "CREATE INDEX {tasks_index} ON tasks(id)"],
])
def test_a_wrong_object_after_the_plan_is_still_caught_before_commit(wrong, old_file, tmp_path, monkeypatch):
    """A plan that leaves a wrong object (injected after its statements, in its transaction) is rolled back by the
    scoped read-back as by a full one: exit 2, one line naming the difference, the file unchanged."""
    from schema_dsl.migrate import apply as apply_module
    path = str(shutil.copy(old_file, tmp_path / "old.db"))
    before = open(path, "rb").read()
    real = apply_module._run_steps

    def run_then_break(conn, plan, progress):
        done = real(conn, plan, progress)
        tasks_index = next(s.change.index.name for s in plan.steps
                           if type(s.change).__name__ == "CreateIndex" and s.table == "tasks")
        for stmt in wrong:
            conn.execute(stmt.format(tasks_index=tasks_index))
        return done
    monkeypatch.setattr(apply_module, "_run_steps", run_then_break)
    out = make_runner().invoke(main, ["apply", "--db", path, "--no-backup", "--schema", "abathur"])
    assert out.exit_code == 2, out.output + out.stderr
    lines = out.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: after the plan the structure still differs, rolled back")
    assert ("metrics" if "metrics" in wrong[0] else "idx_") in lines[0]
    assert open(path, "rb").read() == before
