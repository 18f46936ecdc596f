"""The generated SQL files, split into statements (standard library only, cheap to import).

Used by the bare baseline scripts, which must import no more than a schemagen
process needs.
"""
import sqlite3
from pathlib import Path

GENERATED = Path(__file__).resolve().parent.parent / "generated"
TABLE_FILES = ("ddl-memory-tables.sql", "ddl-core-tables.sql")
INDEX_FILE = "ddl-indexes.sql"

# The 12 indexes of the current old schema (spec: "The databases that already exist").
OLD_INDEXES = (
    "idx_tasks_status_priority", "idx_tasks_submitted_at", "idx_tasks_parent", "idx_tasks_running_timeout",
    "idx_agents_task", "idx_agents_state", "idx_state_task_key", "idx_audit_task", "idx_audit_agent",
    "idx_audit_timestamp", "idx_metrics_name_timestamp", "idx_checkpoints_task",
)


def generated_text(name):
    return (GENERATED / name).read_text(encoding="utf-8")


def split_sql(text):
    """The complete statements of a script, comments before a statement dropped."""
    out, buf = [], []
    for line in text.splitlines(keepends=True):
        if not buf and (not line.strip() or line.lstrip().startswith("--")):
            continue
        buf.append(line)
        chunk = "".join(buf)
        if sqlite3.complete_statement(chunk):
            out.append(chunk.strip())
            buf = []
    return out


def pragma_statements(include_journal_mode=True):
    stmts = split_sql(generated_text("pragmas.sql"))
    return [s for s in stmts if include_journal_mode or "journal_mode" not in s]


def index_statements():
    """{index name: CREATE INDEX statement} of generated/ddl-indexes.sql, in file order."""
    out = {}
    for stmt in split_sql(generated_text(INDEX_FILE)):
        name = stmt.split('"')[1]
        out[name] = stmt
    return out


def table_statement(table):
    """The CREATE TABLE statement of one table from generated/."""
    for f in TABLE_FILES:
        for stmt in split_sql(generated_text(f)):
            if stmt.upper().startswith("CREATE TABLE") and ('"%s"' % table) in stmt.split("(")[0]:
                return stmt
    raise KeyError(table)


def index_table(stmt):
    return stmt.split(" ON ")[1].split('"')[1]


