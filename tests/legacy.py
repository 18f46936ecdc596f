"""Abathur databases as earlier versions wrote them, and the old code's statements.

These are fixtures, written as the old code wrote them (its own SQL text,
unquoted identifiers), not derived from the declaration: schemagen must meet
them as they are in the wild. Used by the tests and by bench/.

Shapes (../shared/spec/abathur-schema.md, "The databases that already exist"):
- "old": the six core tables right before Milestone 1, 12 indexes, WAL.
- "template": the template era: tasks.template_name instead of prompt, no
  agent_type, last_updated_at or max_execution_timeout_seconds.
- "retrofitted": the old code's in-place upgrade: last_updated_at (nullable)
  and max_execution_timeout_seconds appended after dependencies.
"""
from __future__ import annotations

import hashlib
import sqlite3

SHAPES = ("old", "template", "retrofitted")

_TASK_COLUMNS = {
    "old": """
        id TEXT PRIMARY KEY,
        prompt TEXT NOT NULL,
        agent_type TEXT NOT NULL DEFAULT 'general',
        priority INTEGER NOT NULL DEFAULT 5,
        status TEXT NOT NULL,
        input_data TEXT NOT NULL,
        result_data TEXT,
        error_message TEXT,
        retry_count INTEGER DEFAULT 0,
        max_retries INTEGER DEFAULT 3,
        max_execution_timeout_seconds INTEGER DEFAULT 3600,
        submitted_at TIMESTAMP NOT NULL,
        started_at TIMESTAMP,
        completed_at TIMESTAMP,
        last_updated_at TIMESTAMP NOT NULL,
        created_by TEXT,
        parent_task_id TEXT,
        dependencies TEXT,
        FOREIGN KEY (parent_task_id) REFERENCES tasks(id)""",
    "template": """
        id TEXT PRIMARY KEY,
        template_name TEXT NOT NULL,
        priority INTEGER NOT NULL DEFAULT 5,
        status TEXT NOT NULL,
        input_data TEXT NOT NULL,
        result_data TEXT,
        error_message TEXT,
        retry_count INTEGER DEFAULT 0,
        max_retries INTEGER DEFAULT 3,
        submitted_at TIMESTAMP NOT NULL,
        started_at TIMESTAMP,
        completed_at TIMESTAMP,
        created_by TEXT,
        parent_task_id TEXT,
        dependencies TEXT,
        FOREIGN KEY (parent_task_id) REFERENCES tasks(id)""",
}

_OTHER_TABLES = """
CREATE TABLE IF NOT EXISTS agents (
    id TEXT PRIMARY KEY,
    name TEXT NOT NULL,
    specialization TEXT NOT NULL,
    task_id TEXT NOT NULL,
    state TEXT NOT NULL,
    model TEXT NOT NULL,
    spawned_at TIMESTAMP NOT NULL,
    terminated_at TIMESTAMP,
    resource_usage TEXT,
    FOREIGN KEY (task_id) REFERENCES tasks(id)
);
CREATE TABLE IF NOT EXISTS state (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    task_id TEXT NOT NULL,
    key TEXT NOT NULL,
    value TEXT NOT NULL,
    created_at TIMESTAMP NOT NULL,
    updated_at TIMESTAMP NOT NULL,
    FOREIGN KEY (task_id) REFERENCES tasks(id),
    UNIQUE(task_id, key)
);
CREATE TABLE IF NOT EXISTS audit (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    timestamp TIMESTAMP NOT NULL,
    agent_id TEXT,
    task_id TEXT NOT NULL,
    action_type TEXT NOT NULL,
    action_data TEXT,
    result TEXT,
    FOREIGN KEY (agent_id) REFERENCES agents(id),
    FOREIGN KEY (task_id) REFERENCES tasks(id)
);
CREATE TABLE IF NOT EXISTS metrics (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    timestamp TIMESTAMP NOT NULL,
    metric_name TEXT NOT NULL,
    metric_value REAL NOT NULL,
    labels TEXT,
    CHECK(metric_value >= 0)
);
CREATE TABLE IF NOT EXISTS checkpoints (
    task_id TEXT NOT NULL,
    iteration INTEGER NOT NULL,
    state TEXT NOT NULL,
    created_at TIMESTAMP NOT NULL,
    PRIMARY KEY (task_id, iteration),
    FOREIGN KEY (task_id) REFERENCES tasks(id)
);
"""

_OLD_INDEXES = """
CREATE INDEX IF NOT EXISTS idx_tasks_status_priority ON tasks(status, priority DESC, submitted_at ASC);
CREATE INDEX IF NOT EXISTS idx_tasks_submitted_at ON tasks(submitted_at);
CREATE INDEX IF NOT EXISTS idx_tasks_parent ON tasks(parent_task_id);
CREATE INDEX IF NOT EXISTS idx_agents_task ON agents(task_id);
CREATE INDEX IF NOT EXISTS idx_agents_state ON agents(state);
CREATE INDEX IF NOT EXISTS idx_state_task_key ON state(task_id, key);
CREATE INDEX IF NOT EXISTS idx_audit_task ON audit(task_id, timestamp DESC);
CREATE INDEX IF NOT EXISTS idx_audit_agent ON audit(agent_id, timestamp DESC);
CREATE INDEX IF NOT EXISTS idx_audit_timestamp ON audit(timestamp DESC);
CREATE INDEX IF NOT EXISTS idx_metrics_name_timestamp ON metrics(metric_name, timestamp DESC);
CREATE INDEX IF NOT EXISTS idx_checkpoints_task ON checkpoints(task_id, iteration DESC);
"""
_RUNNING_TIMEOUT_INDEX = ("CREATE INDEX IF NOT EXISTS idx_tasks_running_timeout ON tasks(status, last_updated_at) "
                          "WHERE status = 'running';")


def schema_sql(shape):
    """The DDL an earlier version of Abathur ran, for one shape."""
    if shape not in SHAPES:
        raise ValueError("unknown shape %r" % shape)
    tasks = _TASK_COLUMNS["template" if shape in ("template", "retrofitted") else "old"]
    sql = "CREATE TABLE IF NOT EXISTS tasks (%s\n);\n" % tasks + _OTHER_TABLES + _OLD_INDEXES
    if shape == "retrofitted":
        # the old code's in-place upgrade of a template-era file
        sql = sql.replace("template_name TEXT NOT NULL", "prompt TEXT NOT NULL")
        sql += ("ALTER TABLE tasks ADD COLUMN agent_type TEXT NOT NULL DEFAULT 'general';\n"
                "ALTER TABLE tasks ADD COLUMN last_updated_at TIMESTAMP;\n"
                "ALTER TABLE tasks ADD COLUMN max_execution_timeout_seconds INTEGER DEFAULT 3600;\n")
    if shape != "template":
        sql += _RUNNING_TIMEOUT_INDEX + "\n"
    return sql


def task_columns(shape):
    """The task columns the old code of a shape names in its INSERT."""
    if shape == "template":
        return ["id", "template_name", "priority", "status", "input_data", "result_data", "error_message",
                "retry_count", "max_retries", "submitted_at", "started_at", "completed_at", "created_by",
                "parent_task_id", "dependencies"]
    return ["id", "prompt", "agent_type", "priority", "status", "input_data", "result_data", "error_message",
            "retry_count", "max_retries", "max_execution_timeout_seconds", "submitted_at", "started_at",
            "completed_at", "last_updated_at", "created_by", "parent_task_id", "dependencies"]


def _ts(i):
    return "2025-%02d-%02d %02d:%02d:%02d" % (1 + i % 12, 1 + i % 28, i % 24, i % 60, (i * 7) % 60)


def _task_row(shape, i):
    status = ("pending", "running", "completed", "failed")[i % 4]
    started = _ts(i + 1) if status != "pending" else None
    completed = _ts(i + 2) if status in ("completed", "failed") else None
    parent = "task-%d" % (i // 2) if i % 5 == 1 and i > 0 else None
    row = {
        "id": "task-%d" % i, "prompt": "prompt %d" % i, "template_name": "prompt %d" % i,
        "agent_type": ("general", "coder", "reviewer")[i % 3], "priority": i % 11, "status": status,
        "input_data": '{"n": %d}' % i, "result_data": '{"ok": true}' if completed else None,
        "error_message": "boom" if status == "failed" else None, "retry_count": i % 3, "max_retries": 3,
        "max_execution_timeout_seconds": 3600, "submitted_at": _ts(i), "started_at": started,
        "completed_at": completed, "last_updated_at": completed or started or _ts(i),
        "created_by": "user-%d" % (i % 7), "parent_task_id": parent, "dependencies": "[]",
    }
    return [row[c] for c in task_columns(shape)]


def create(path_or_conn, shape="old", tasks=1000, agents=None, rows=None, wal=True, orphans=0):
    """Create a database of `shape` with data; returns the path or the connection given.

    agents defaults to tasks // 2; rows (state, audit, metrics, checkpoints
    each) defaults to tasks. orphans > 0 adds audit rows whose task_id has no
    task (violations that exist before any migration).
    """
    agents = tasks // 2 if agents is None else agents
    rows = tasks if rows is None else rows
    conn = sqlite3.connect(path_or_conn, isolation_level=None) if isinstance(path_or_conn, str) else path_or_conn
    if wal:
        conn.execute("PRAGMA journal_mode = WAL")
    conn.execute("BEGIN")
    for stmt in _statements(schema_sql(shape)):
        conn.execute(stmt)
    cols = task_columns(shape)
    conn.executemany("INSERT INTO tasks (%s) VALUES (%s)" % (", ".join(cols), ", ".join("?" * len(cols))),
                     (_task_row(shape, i) for i in range(tasks)))
    if shape == "retrofitted":
        conn.execute("UPDATE tasks SET last_updated_at = COALESCE(completed_at, started_at, submitted_at)")
    conn.executemany("INSERT INTO agents (id, name, specialization, task_id, state, model, spawned_at, terminated_at, "
                     "resource_usage) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                     (("agent-%d" % i, "agent %d" % i, "spec", "task-%d" % (i % max(tasks, 1)),
                       ("idle", "working", "terminated")[i % 3], "model-x", _ts(i),
                       _ts(i + 3) if i % 3 == 2 else None, '{"tokens": %d}' % i) for i in range(agents)))
    if tasks:
        conn.executemany("INSERT INTO state (task_id, key, value, created_at, updated_at) VALUES (?, ?, ?, ?, ?)",
                         (("task-%d" % (i % tasks), "k%d" % (i // tasks), '"v%d"' % i, _ts(i), _ts(i + 1))
                          for i in range(rows)))
        conn.executemany("INSERT INTO audit (timestamp, agent_id, task_id, action_type, action_data, result) "
                         "VALUES (?, ?, ?, ?, ?, ?)",
                         ((_ts(i), "agent-%d" % (i % agents) if agents and i % 4 else None, "task-%d" % (i % tasks),
                           "act", '{"i": %d}' % i, "ok") for i in range(rows)))
        conn.executemany("INSERT INTO checkpoints (task_id, iteration, state, created_at) VALUES (?, ?, ?, ?)",
                         (("task-%d" % (i % tasks), i // tasks, '{"it": %d}' % i, _ts(i)) for i in range(rows)))
    conn.executemany("INSERT INTO metrics (timestamp, metric_name, metric_value, labels) VALUES (?, ?, ?, ?)",
                     ((_ts(i), "m%d" % (i % 10), float(i % 1000), None) for i in range(rows)))
    for i in range(orphans):
        conn.execute("INSERT INTO audit (timestamp, agent_id, task_id, action_type) VALUES (?, NULL, ?, 'orphan')",
                     (_ts(i), "missing-task-%d" % i))
    # deleted rows leave the AUTOINCREMENT high-water mark above max(id)
    conn.execute("DELETE FROM metrics WHERE id IN (SELECT max(id) FROM metrics)")
    conn.execute("COMMIT")
    if isinstance(path_or_conn, str):
        conn.close()
        return path_or_conn
    return conn


def _statements(sql):
    out, buf = [], ""
    for line in sql.splitlines(keepends=True):
        buf += line
        if sqlite3.complete_statement(buf):
            out.append(buf.strip())
            buf = ""
    return out


RENAMES = {"tasks": {"template_name": "prompt"}}


def row_digest(conn, table, columns, rename=None):
    """sha256 over (rowid, columns...) of every row; columns named as in this database."""
    h = hashlib.sha256()
    n = 0
    for row in conn.execute("SELECT rowid, %s FROM \"%s\" ORDER BY rowid" % (
            ", ".join('"%s"' % c for c in columns), table)):
        h.update(repr(row).encode())
        n += 1
    return n, h.hexdigest()


def old_code_statements(conn, shape="old"):
    """Run the old code's statements (spec: "The old code runs, among others") on conn.

    Returns the rows its selects read, so a caller can assert on them.
    """
    cols = task_columns("old")
    values = ["task-new-1", "do it", "general", 7, "pending", "{}", None, None, 0, 3, 3600,
              "2025-06-01 00:00:00", None, None, "2025-06-01 00:00:00", "me", None, "[]"]
    conn.execute("INSERT INTO tasks (%s) VALUES (%s)" % (", ".join(cols), ", ".join("?" * len(cols))), values)
    conn.execute("UPDATE tasks SET status=?, started_at=?, last_updated_at=? WHERE id=?",
                 ("running", "2025-06-01 00:00:01", "2025-06-01 00:00:01", "task-new-1"))
    conn.execute("UPDATE tasks SET retry_count = retry_count + 1 WHERE id = ?", ("task-new-1",))
    by_id = conn.execute("SELECT * FROM tasks WHERE id = ?", ("task-new-1",)).fetchall()
    by_status = conn.execute("SELECT * FROM tasks WHERE status = ? ORDER BY priority DESC, submitted_at ASC",
                             ("pending",)).fetchall()
    timed_out = conn.execute("SELECT * FROM tasks WHERE status = 'running' AND (julianday('now') - "
                             "julianday(last_updated_at)) * 86400 > max_execution_timeout_seconds").fetchall()
    conn.execute("INSERT INTO agents (id, name, specialization, task_id, state, model, spawned_at, terminated_at, "
                 "resource_usage) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                 ("agent-new-1", "a", "s", "task-new-1", "idle", "m", "2025-06-01 00:00:02", None, None))
    conn.execute("UPDATE agents SET state=?, terminated_at=? WHERE id=?", ("terminated", "2025-06-01 00:01:00", "agent-new-1"))
    for value in ('"one"', '"two"'):
        conn.execute("INSERT INTO state (task_id, key, value, created_at, updated_at) VALUES (?, ?, ?, ?, ?) "
                     "ON CONFLICT(task_id, key) DO UPDATE SET value=excluded.value, updated_at=excluded.updated_at",
                     ("task-new-1", "k", value, "2025-06-01", "2025-06-02"))
    state_value = conn.execute("SELECT value FROM state WHERE task_id=? AND key=?", ("task-new-1", "k")).fetchall()
    conn.execute("INSERT INTO audit (timestamp, agent_id, task_id, action_type, action_data, result) "
                 "VALUES (?, ?, ?, ?, ?, ?)", ("2025-06-01", "agent-new-1", "task-new-1", "spawn", "{}", "ok"))
    return {"by_id": by_id, "by_status": by_status, "timed_out": timed_out, "state_value": state_value}
