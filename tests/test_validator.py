"""The generated, standalone validator: generated/validate_schema.py run with the plain interpreter."""
from __future__ import annotations

import ast
import json
import sqlite3
import subprocess
import sys

import pytest

import legacy
from conftest import GENERATED, build_db
from schema_dsl.abathur import SCHEMA
from schema_dsl.migrate.apply import apply
from schema_dsl.model import evolve

VALIDATOR = GENERATED / "validate_schema.py"


def run(db, *args, isolation=("-I", "-S")):
    """Run the validator with the standard library only (-S: no site-packages, -I: isolated)."""
    return subprocess.run([sys.executable, *isolation, str(VALIDATOR), str(db), *args],
                          capture_output=True, text=True, timeout=60)


def alter_column(schema, table, column, **changes):
    t = schema.table(table)
    assert t.column(column) is not None
    new = evolve(t, columns=[evolve(c, **changes) if c.name == column else c for c in t.columns])
    return evolve(schema, tables=[new if x is t else x for x in schema.tables])


def alter_fk(schema, table, column, **changes):
    t = schema.table(table)
    assert any(f.columns == (column,) for f in t.foreign_keys)
    new = evolve(t, foreign_keys=[evolve(f, **changes) if f.columns == (column,) else f for f in t.foreign_keys])
    return evolve(schema, tables=[new if x is t else x for x in schema.tables])


def sql(path, *statements):
    conn = sqlite3.connect(str(path), isolation_level=None)
    try:
        for s in statements:
            conn.execute(s)
    finally:
        conn.close()


def test_the_validator_imports_only_the_standard_library():
    tree = ast.parse(VALIDATOR.read_text(encoding="utf-8"))
    imported = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            imported |= {a.name.split(".")[0] for a in node.names}
        elif isinstance(node, ast.ImportFrom):
            assert node.level == 0, "relative import in a standalone module"
            imported.add(node.module.split(".")[0])
    assert imported and imported <= set(sys.stdlib_module_names), imported - set(sys.stdlib_module_names)
    assert "schema_dsl" not in VALIDATOR.read_text(encoding="utf-8").replace("schema_dsl/abathur.py", "")


def test_the_validator_embeds_the_ddl_reader_and_the_structure_reader_each_function_once():
    """validate_schema.py stands alone: every top-level function of sqlite/ddl.py (the SQL tokenizer and DDL
    reader) and of sqlite/structure.py is defined in it exactly once, the reader's before structure.py's."""
    import schema_dsl.sqlite as ground
    folder = __import__("pathlib").Path(ground.__file__).parent

    def functions(text):
        return [n.name for n in ast.parse(text).body if isinstance(n, ast.FunctionDef)]

    embedded = functions(VALIDATOR.read_text(encoding="utf-8"))
    reader = functions((folder / "ddl.py").read_text(encoding="utf-8"))
    structure = functions((folder / "structure.py").read_text(encoding="utf-8"))
    assert "tokenize" in reader and "read_structure" in structure and not set(reader) & set(structure)
    assert all(embedded.count(name) == 1 for name in reader + structure)
    assert embedded.index(reader[-1]) < embedded.index(structure[0])


def test_exit_0_on_a_good_file(fresh_db):
    result = run(fresh_db)
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout == "ok: 9 tables and 33 indexes match the declaration\n"
    assert result.stderr == ""


def test_it_also_runs_isolated_with_site_packages(fresh_db):
    assert run(fresh_db, isolation=("-I",)).returncode == 0


def test_the_counts_come_from_the_declaration():
    text = VALIDATOR.read_text(encoding="utf-8")
    namespace = {}
    exec(compile(text.split("\nif __name__ ==")[0], str(VALIDATOR), "exec"), namespace)
    assert sorted(namespace["EXPECTED"]["tables"]) == sorted(t.name for t in SCHEMA.tables)
    assert sorted(namespace["EXPECTED"]["indexes"]) == sorted(ix.name for ix in SCHEMA.indexes)
    assert namespace["EXPECTED_PRAGMAS"] == {"journal_mode": "wal"}


def test_names_a_dropped_index(fresh_db):
    sql(fresh_db, "DROP INDEX idx_agents_state")
    result = run(fresh_db)
    assert result.returncode == 1
    assert result.stdout.splitlines() == [
        "missing index 'idx_agents_state' on agents(state)",
        "expected 33 indexes, found 32 of them",
    ]


def test_names_a_missing_column(fresh_db):
    sql(fresh_db, "ALTER TABLE sessions DROP COLUMN archived_at")
    result = run(fresh_db)
    assert result.returncode == 1
    assert result.stdout.splitlines() == ["table 'sessions': missing column 'archived_at'"]


def test_names_missing_columns_of_an_old_shape_database(tmp_path):
    db = legacy.create(str(tmp_path / "old.db"), "old", tasks=3)
    result = run(db)
    assert result.returncode == 1
    lines = result.stdout.splitlines()
    for line in ("missing table 'sessions'", "table 'tasks': missing column 'session_id'",
                 "table 'audit': missing column 'memory_entry_id'", "missing index 'idx_tasks_session' on "
                 "tasks(session_id, submitted_at DESC)", "expected 9 tables, found 6 of them",
                 "expected 33 indexes, found 12 of them"):
        assert line in lines, result.stdout


def test_names_a_changed_partial_where(fresh_db):
    sql(fresh_db, "DROP INDEX idx_tasks_running_timeout",
        "CREATE INDEX idx_tasks_running_timeout ON tasks (status, last_updated_at) WHERE status = 'pending'")
    result = run(fresh_db)
    assert result.returncode == 1
    assert result.stdout.splitlines() == [
        "index 'idx_tasks_running_timeout': partial WHERE is \"status = 'pending'\", expected \"status = 'running'\""]


def test_a_partial_where_spelled_differently_still_matches(fresh_db):
    sql(fresh_db, "DROP INDEX idx_tasks_running_timeout",
        "CREATE INDEX idx_tasks_running_timeout ON tasks (status, last_updated_at) WHERE (Status='running')")
    assert run(fresh_db).returncode == 0


def test_names_a_partial_index_made_whole(fresh_db):
    sql(fresh_db, "DROP INDEX idx_tasks_session", "CREATE INDEX idx_tasks_session ON tasks (session_id, submitted_at DESC)")
    result = run(fresh_db)
    assert result.returncode == 1
    assert "index 'idx_tasks_session': partial WHERE is None, expected 'session_id is not null'" in result.stdout


def test_names_a_changed_index_column_order(fresh_db):
    sql(fresh_db, "DROP INDEX idx_audit_task", "CREATE INDEX idx_audit_task ON audit (task_id, timestamp)")
    result = run(fresh_db)
    assert result.returncode == 1
    assert result.stdout.splitlines() == [
        "index 'idx_audit_task': columns are (task_id, timestamp), expected (task_id, timestamp DESC)"]


def test_names_a_lost_uniqueness(fresh_db):
    sql(fresh_db, "DROP INDEX idx_document_file_path", "CREATE INDEX idx_document_file_path ON document_index (file_path)")
    result = run(fresh_db)
    assert result.stdout.splitlines() == ["index 'idx_document_file_path': UNIQUE is False, expected True"]


@pytest.mark.parametrize("table, column, changes, line", [
    ("metrics", "metric_value", {"type": "NUMERIC"},
     "table 'metrics', column 'metric_value': type is 'NUMERIC', expected 'REAL'"),
    ("tasks", "created_by", {"not_null": True},
     "table 'tasks', column 'created_by': NOT NULL is True, expected False"),
    ("sessions", "app_name", {"not_null": False},
     "table 'sessions', column 'app_name': NOT NULL is False, expected True"),
    ("tasks", "priority", {"default": 6},
     "table 'tasks', column 'priority': default is '6', expected '5'"),
    ("document_index", "sync_status", {"default": None},
     "table 'document_index', column 'sync_status': default is None, expected \"'pending'\""),
])
def test_names_a_wrong_column_definition(tmp_path, table, column, changes, line):
    db = build_db(tmp_path / "wrong.db", alter_column(SCHEMA, table, column, **changes))
    result = run(db)
    assert result.returncode == 1
    assert result.stdout.splitlines() == [line]


def test_names_a_changed_fk_action(tmp_path):
    db = build_db(tmp_path / "fk.db", alter_fk(SCHEMA, "audit", "memory_entry_id", on_delete="CASCADE"))
    result = run(db)
    assert result.returncode == 1
    assert result.stdout.splitlines() == [
        "table 'audit': missing foreign key (memory_entry_id) -> memory_entries(id) ON DELETE SET NULL ON UPDATE NO ACTION",
        "table 'audit': extra foreign key (memory_entry_id) -> memory_entries(id) ON DELETE CASCADE ON UPDATE NO ACTION",
    ]


def test_names_a_wrong_journal_mode(tmp_path):
    db = build_db(tmp_path / "delete.db", SCHEMA, wal=False)
    result = run(db)
    assert result.returncode == 1
    assert result.stdout.splitlines() == ["pragma journal_mode is 'delete', expected 'wal'"]


def test_an_extra_table_fails_unless_allowed(fresh_db):
    sql(fresh_db, "CREATE TABLE notes (id INTEGER PRIMARY KEY, body TEXT)", "CREATE INDEX ix_notes ON notes (body)")
    strict = run(fresh_db)
    assert strict.returncode == 1
    assert "extra table 'notes'" in strict.stdout.splitlines()
    assert "extra index 'ix_notes' on table 'notes'" in strict.stdout.splitlines()
    allowed = run(fresh_db, "--allow-extra")
    assert allowed.returncode == 0, allowed.stdout
    assert "note: extra table 'notes'" in allowed.stderr
    assert allowed.stdout.startswith("ok: ")


def test_allow_extra_does_not_excuse_a_missing_object(fresh_db):
    sql(fresh_db, "CREATE TABLE notes (id INTEGER PRIMARY KEY)", "DROP INDEX idx_agents_state")
    assert run(fresh_db, "--allow-extra").returncode == 1


def test_exit_2_on_a_missing_file(tmp_path):
    result = run(tmp_path / "nope.db")
    assert result.returncode == 2
    assert "nope.db" in result.stderr and "Traceback" not in result.stderr
    assert not (tmp_path / "nope.db").exists()


def test_exit_2_on_a_text_file(tmp_path):
    text = tmp_path / "notes.txt"
    text.write_text("just some text, clearly not a database\n" * 10)
    before = text.read_bytes()
    result = run(text)
    assert result.returncode == 2
    assert "notes.txt" in result.stderr and "Traceback" not in result.stderr
    assert text.read_bytes() == before


def test_exit_2_on_a_directory(tmp_path):
    result = run(tmp_path)
    assert result.returncode == 2 and "Traceback" not in result.stderr


def test_exit_2_without_arguments():
    result = subprocess.run([sys.executable, "-I", "-S", str(VALIDATOR)], capture_output=True, text=True, timeout=60)
    assert result.returncode == 2 and result.stderr.startswith("usage:")


def test_json_output(fresh_db):
    good = json.loads(run(fresh_db, "--json").stdout)
    assert good == {"ok": True, "problems": [], "extras": []}
    sql(fresh_db, "DROP INDEX idx_agents_state", "CREATE TABLE notes (id INTEGER PRIMARY KEY)")
    result = run(fresh_db, "--json", "--allow-extra")
    assert result.returncode == 1
    bad = json.loads(result.stdout)
    assert bad["ok"] is False
    assert "missing index 'idx_agents_state' on agents(state)" in bad["problems"]
    assert "extra table 'notes'" in bad["extras"]


def test_the_validator_does_not_write_to_the_database(fresh_db):
    before = fresh_db.read_bytes()
    assert run(fresh_db).returncode == 0
    assert fresh_db.read_bytes() == before


def test_a_database_migrated_with_alter_table_add_column_passes(tmp_path):
    db = legacy.create(str(tmp_path / "old.db"), "old", tasks=20)
    result = apply(db, backup=False)
    assert result.applied and not result.plan.fresh
    statements = " ".join(result.plan.statements)
    assert 'ALTER TABLE "tasks" ADD COLUMN "session_id"' in statements
    assert 'ALTER TABLE "audit" ADD COLUMN "memory_entry_id"' in statements
    conn = sqlite3.connect(db)
    try:
        tasks_sql = conn.execute("SELECT sql FROM sqlite_master WHERE name = 'tasks'").fetchone()[0]
        assert tasks_sql.startswith("CREATE TABLE tasks (")  # kept the old text, appended by ALTER TABLE
        assert conn.execute("SELECT count(*) FROM tasks").fetchone() == (20,)
    finally:
        conn.close()
    validated = run(db)
    assert validated.returncode == 0, validated.stdout


@pytest.mark.parametrize("name", ["p%41.db", "q?x#y.db", "with space.db"])
def test_a_path_with_uri_characters(fresh_db, tmp_path, name):
    db = tmp_path / name
    db.write_bytes(fresh_db.read_bytes())
    result = run(db)
    assert result.returncode == 0, result.stderr


def test_an_unknown_option_is_a_usage_error(fresh_db):
    result = run(fresh_db, "--jsno")
    assert result.returncode == 2 and result.stderr.startswith("usage:")


def test_an_expression_index_under_a_declared_name_is_reported(fresh_db):
    sql(fresh_db, "DROP INDEX idx_agents_state", "CREATE INDEX idx_agents_state ON agents (lower(state))")
    result = run(fresh_db)
    assert "Traceback" not in result.stderr
    assert result.returncode == 1
    assert "index 'idx_agents_state': columns are" in result.stdout


def test_names_differing_only_in_case_match(fresh_db):
    sql(fresh_db, "DROP INDEX idx_agents_state", "CREATE INDEX IDX_Agents_State ON agents (State)",
        "ALTER TABLE sessions RENAME COLUMN archived_at TO Archived_At")
    result = run(fresh_db)
    assert result.returncode == 0, result.stdout
