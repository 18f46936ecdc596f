"""The Abathur Milestone 1 schema, declared.

Source of truth for generated/: edit here, run `schemagen render`, review the
diff of generated/, then `schemagen apply --db PATH`. Columns and tables
marked new=True arrive with Milestone 1 (memory management).
"""
from .model import (Check, Column, Expr, Index, PrimaryKey, Pragma, Schema,
                    Table, Unique, fk)

MEMORY = "ddl-memory-tables.sql"
CORE = "ddl-core-tables.sql"
INDEXES = "ddl-indexes.sql"
NOW = Expr("CURRENT_TIMESTAMP")


def _pk(name="id", type_="INTEGER", autoincrement=False, comment="Primary key."):
    return Column(name, type_, comment=comment), PrimaryKey((name,), autoincrement=autoincrement)


sessions = Table(
    "sessions", file=MEMORY, new=True,
    comment="Conversation sessions: the event history and state of one user's interaction with the swarm.",
    columns=[
        Column("id", "TEXT", comment="Session identifier (UUID).", new=True),
        Column("app_name", "TEXT", not_null=True, comment="Application the session belongs to.", new=True),
        Column("user_id", "TEXT", not_null=True, comment="User who owns the session.", new=True),
        Column("project_id", "TEXT", comment="Project the session is scoped to, if any.", new=True),
        Column("status", "TEXT", not_null=True, default="created",
               comment="Lifecycle: created, active, paused, terminated, archived.", new=True),
        Column("events", "TEXT", not_null=True, default="[]", comment="JSON array of session events.", new=True),
        Column("state", "TEXT", not_null=True, default="{}", comment="JSON object of session state.", new=True),
        Column("metadata", "TEXT", default="{}", comment="JSON object of free-form metadata.", new=True),
        Column("created_at", "TIMESTAMP", not_null=True, default=NOW, comment="When the session was created.", new=True),
        Column("last_update_time", "TIMESTAMP", not_null=True, default=NOW, comment="When the session last changed.", new=True),
        Column("terminated_at", "TIMESTAMP", comment="When the session was terminated.", new=True),
        Column("archived_at", "TIMESTAMP", comment="When the session was archived.", new=True),
    ],
    primary_key=PrimaryKey(("id",)),
    checks=[
        Check("status IN ('created', 'active', 'paused', 'terminated', 'archived')"),
        Check("json_valid(events)"),
        Check("json_valid(state)"),
        Check("json_valid(metadata)"),
    ],
)

memory_entries = Table(
    "memory_entries", file=MEMORY, new=True,
    comment="Long-term memory: versioned key/value entries in namespaces (semantic, episodic, procedural).",
    columns=[
        Column("id", "INTEGER", comment="Row identifier.", new=True),
        Column("namespace", "TEXT", not_null=True, comment="Hierarchical namespace, e.g. 'user:alice:prefs'.", new=True),
        Column("key", "TEXT", not_null=True, comment="Key within the namespace.", new=True),
        Column("value", "TEXT", not_null=True, comment="JSON value of the entry.", new=True),
        Column("memory_type", "TEXT", not_null=True, comment="semantic, episodic or procedural.", new=True),
        Column("version", "INTEGER", not_null=True, default=1, comment="Version of (namespace, key), from 1.", new=True),
        Column("is_deleted", "BOOLEAN", not_null=True, default=0, comment="Soft-delete flag (0 or 1).", new=True),
        Column("metadata", "TEXT", default="{}", comment="JSON object of free-form metadata.", new=True),
        Column("created_by", "TEXT", comment="Agent or user that created the entry.", new=True),
        Column("updated_by", "TEXT", comment="Agent or user that last updated the entry.", new=True),
        Column("created_at", "TIMESTAMP", not_null=True, default=NOW, comment="When the entry was created.", new=True),
        Column("updated_at", "TIMESTAMP", not_null=True, default=NOW, comment="When the entry last changed.", new=True),
    ],
    primary_key=PrimaryKey(("id",), autoincrement=True),
    uniques=[Unique(("namespace", "key", "version"))],
    checks=[
        Check("memory_type IN ('semantic', 'episodic', 'procedural')"),
        Check("json_valid(value)"),
        Check("json_valid(metadata)"),
        Check("version > 0"),
    ],
)

document_index = Table(
    "document_index", file=MEMORY, new=True,
    comment="Index of documents available to agents, with their embedding and sync status.",
    columns=[
        Column("id", "INTEGER", comment="Row identifier.", new=True),
        Column("file_path", "TEXT", not_null=True, unique=True, comment="Path of the document; one row per path.", new=True),
        Column("title", "TEXT", not_null=True, comment="Document title.", new=True),
        Column("document_type", "TEXT", comment="Kind of document, e.g. 'design'.", new=True),
        Column("content_hash", "TEXT", not_null=True, comment="Hash of the content, to detect changes.", new=True),
        Column("chunk_count", "INTEGER", default=1, comment="Number of chunks the document is split into.", new=True),
        Column("embedding_model", "TEXT", comment="Model that produced the embedding.", new=True),
        Column("embedding_blob", "BLOB", comment="The embedding vector, serialized.", new=True),
        Column("metadata", "TEXT", default="{}", comment="JSON object of free-form metadata.", new=True),
        Column("last_synced_at", "TIMESTAMP", comment="When the document was last synced.", new=True),
        Column("sync_status", "TEXT", default="pending", comment="pending, synced, failed or stale.", new=True),
        Column("created_at", "TIMESTAMP", not_null=True, default=NOW, comment="When the row was created.", new=True),
        Column("updated_at", "TIMESTAMP", not_null=True, default=NOW, comment="When the row last changed.", new=True),
    ],
    primary_key=PrimaryKey(("id",), autoincrement=True),
    checks=[
        Check("sync_status IN ('pending', 'synced', 'failed', 'stale')"),
        Check("json_valid(metadata)"),
    ],
)

tasks = Table(
    "tasks", file=CORE,
    comment="The task queue: every task submitted to the swarm. Enhanced in Milestone 1 with session_id.",
    columns=[
        Column("id", "TEXT", comment="Task identifier (UUID)."),
        Column("prompt", "TEXT", not_null=True, renamed_from="template_name",
               comment="What the task asks; called template_name in template-era databases."),
        Column("agent_type", "TEXT", not_null=True, default="general", comment="Kind of agent to run the task."),
        Column("priority", "INTEGER", not_null=True, default=5, comment="Higher runs first (0-10)."),
        Column("status", "TEXT", not_null=True, comment="pending, running, completed, failed, cancelled, ..."),
        Column("input_data", "TEXT", not_null=True, comment="JSON input of the task."),
        Column("result_data", "TEXT", comment="JSON result, once completed."),
        Column("error_message", "TEXT", comment="Error of the last failed attempt."),
        Column("retry_count", "INTEGER", default=0, comment="Attempts retried so far."),
        Column("max_retries", "INTEGER", default=3, comment="Retries allowed."),
        Column("max_execution_timeout_seconds", "INTEGER", default=3600, comment="Seconds a run may take."),
        Column("submitted_at", "TIMESTAMP", not_null=True, comment="When the task was submitted."),
        Column("started_at", "TIMESTAMP", comment="When the task started running."),
        Column("completed_at", "TIMESTAMP", comment="When the task finished."),
        Column("last_updated_at", "TIMESTAMP", not_null=True,
               backfill="COALESCE(completed_at, started_at, submitted_at)",
               comment="When the task last changed; backfilled from its other timestamps in older databases."),
        Column("created_by", "TEXT", comment="Who submitted the task."),
        Column("parent_task_id", "TEXT", comment="Task that spawned this one."),
        Column("dependencies", "TEXT", comment="JSON array of task ids this task waits for."),
        Column("session_id", "TEXT", new=True, comment="NEW: session the task runs in; NULL when the session is deleted."),
    ],
    primary_key=PrimaryKey(("id",)),
    foreign_keys=[
        fk("parent_task_id", "tasks", "id"),
        fk("session_id", "sessions", "id", on_delete="SET NULL"),
    ],
)

agents = Table(
    "agents", file=CORE,
    comment="Agents spawned to run tasks. Enhanced in Milestone 1 with session_id.",
    columns=[
        Column("id", "TEXT", comment="Agent identifier (UUID)."),
        Column("name", "TEXT", not_null=True, comment="Display name."),
        Column("specialization", "TEXT", not_null=True, comment="What the agent is specialized in."),
        Column("task_id", "TEXT", not_null=True, comment="Task the agent runs."),
        Column("state", "TEXT", not_null=True, comment="idle, working, terminated, ..."),
        Column("model", "TEXT", not_null=True, comment="LLM the agent uses."),
        Column("spawned_at", "TIMESTAMP", not_null=True, comment="When the agent was spawned."),
        Column("terminated_at", "TIMESTAMP", comment="When the agent was terminated."),
        Column("resource_usage", "TEXT", comment="JSON resource usage."),
        Column("session_id", "TEXT", new=True, comment="NEW: session the agent works in; NULL when the session is deleted."),
    ],
    primary_key=PrimaryKey(("id",)),
    foreign_keys=[
        fk("task_id", "tasks", "id"),
        fk("session_id", "sessions", "id", on_delete="SET NULL"),
    ],
)

id_column, id_pk = _pk(autoincrement=True)

state = Table(
    "state", file=CORE,
    comment="Per-task key/value state. Deprecated (memory_entries replaces it), kept unchanged for compatibility.",
    columns=[
        id_column,
        Column("task_id", "TEXT", not_null=True, comment="Task the value belongs to."),
        Column("key", "TEXT", not_null=True, comment="State key."),
        Column("value", "TEXT", not_null=True, comment="JSON value."),
        Column("created_at", "TIMESTAMP", not_null=True, comment="When the key was first set."),
        Column("updated_at", "TIMESTAMP", not_null=True, comment="When the value last changed."),
    ],
    primary_key=id_pk,
    uniques=[Unique(("task_id", "key"))],
    foreign_keys=[fk("task_id", "tasks", "id")],
)

audit = Table(
    "audit", file=CORE,
    comment="Audit trail of agent actions. Enhanced in Milestone 1 with three memory columns.",
    columns=[
        id_column,
        Column("timestamp", "TIMESTAMP", not_null=True, comment="When the action happened."),
        Column("agent_id", "TEXT", comment="Agent that acted, if any."),
        Column("task_id", "TEXT", not_null=True, comment="Task the action belongs to."),
        Column("action_type", "TEXT", not_null=True, comment="Kind of action."),
        Column("action_data", "TEXT", comment="JSON details of the action."),
        Column("result", "TEXT", comment="Outcome of the action."),
        Column("memory_operation_type", "TEXT", new=True,
               comment="NEW: create, update, delete, consolidate or publish for memory operations; NULL otherwise."),
        Column("memory_namespace", "TEXT", new=True, comment="NEW: namespace of the memory entry touched."),
        Column("memory_entry_id", "INTEGER", new=True,
               comment="NEW: memory entry touched; NULL when the entry is deleted."),
    ],
    primary_key=id_pk,
    foreign_keys=[
        fk("agent_id", "agents", "id"),
        fk("task_id", "tasks", "id"),
        fk("memory_entry_id", "memory_entries", "id", on_delete="SET NULL"),
    ],
)

metrics = Table(
    "metrics", file=CORE,
    comment="Numeric metrics over time (unchanged in Milestone 1).",
    columns=[
        id_column,
        Column("timestamp", "TIMESTAMP", not_null=True, comment="When the value was measured."),
        Column("metric_name", "TEXT", not_null=True, comment="Metric name."),
        Column("metric_value", "REAL", not_null=True, comment="Measured value, never negative."),
        Column("labels", "TEXT", comment="JSON labels."),
    ],
    primary_key=id_pk,
    checks=[Check("metric_value >= 0")],
)

checkpoints = Table(
    "checkpoints", file=CORE,
    comment="Iteration checkpoints of long-running tasks. Enhanced in Milestone 1 with session_id.",
    columns=[
        Column("task_id", "TEXT", not_null=True, comment="Task checkpointed."),
        Column("iteration", "INTEGER", not_null=True, comment="Iteration number."),
        Column("state", "TEXT", not_null=True, comment="JSON state at this iteration."),
        Column("created_at", "TIMESTAMP", not_null=True, comment="When the checkpoint was taken."),
        Column("session_id", "TEXT", new=True, comment="NEW: session of the checkpoint; NULL when the session is deleted."),
    ],
    primary_key=PrimaryKey(("task_id", "iteration")),
    foreign_keys=[
        fk("task_id", "tasks", "id"),
        fk("session_id", "sessions", "id", on_delete="SET NULL"),
    ],
)


def _ix(name, table, columns, serves, unique=False, where=None, plan_check="info"):
    return Index(name, table, columns, unique=unique, where=where, serves=(serves,), plan_check=plan_check)


INDEX_LIST = [
    _ix("idx_sessions_pk", "sessions", ["id"], "SELECT * FROM sessions WHERE id = ?", unique=True),
    _ix("idx_sessions_status_updated", "sessions", ["status", "last_update_time DESC"],
        "SELECT * FROM sessions WHERE status = 'active' ORDER BY last_update_time DESC",
        where="status IN ('active', 'paused')"),
    _ix("idx_sessions_user_created", "sessions", ["user_id", "created_at DESC"],
        "SELECT * FROM sessions WHERE user_id = ? ORDER BY created_at DESC LIMIT 10"),
    _ix("idx_sessions_project", "sessions", ["project_id", "created_at DESC"],
        "SELECT * FROM sessions WHERE project_id = ? ORDER BY created_at DESC",
        where="project_id IS NOT NULL"),
    _ix("idx_memory_entries_pk", "memory_entries", ["id"], "SELECT * FROM memory_entries WHERE id = ?", unique=True),
    _ix("idx_memory_namespace_key_version", "memory_entries", ["namespace", "key", "is_deleted", "version DESC"],
        "SELECT * FROM memory_entries WHERE namespace = ? AND key = ? AND is_deleted = 0 ORDER BY version DESC LIMIT 1",
        plan_check="required"),  # the milestone's acceptance check (spec): this query must use its index
    _ix("idx_memory_type_updated", "memory_entries", ["memory_type", "updated_at DESC"],
        "SELECT * FROM memory_entries WHERE memory_type = 'episodic' AND is_deleted = 0 ORDER BY updated_at DESC LIMIT 20",
        where="is_deleted = 0"),
    _ix("idx_memory_namespace_prefix", "memory_entries", ["namespace", "updated_at DESC"],
        "SELECT * FROM memory_entries WHERE namespace LIKE 'user:alice%' AND is_deleted = 0 ORDER BY updated_at DESC",
        where="is_deleted = 0"),
    _ix("idx_memory_conflict_detection", "memory_entries", ["namespace", "key", "is_deleted", "version DESC"],
        "SELECT namespace, key, COUNT(*) FROM memory_entries WHERE is_deleted = 0 GROUP BY namespace, key HAVING COUNT(*) > 1"),
    _ix("idx_memory_episodic_ttl", "memory_entries", ["memory_type", "updated_at"],
        "SELECT * FROM memory_entries WHERE memory_type = 'episodic' AND updated_at < datetime('now', '-90 days') AND is_deleted = 0",
        where="memory_type = 'episodic' AND is_deleted = 0"),
    _ix("idx_memory_created_by", "memory_entries", ["created_by", "created_at DESC"],
        "SELECT * FROM memory_entries WHERE created_by = ? ORDER BY created_at DESC"),
    _ix("idx_document_index_pk", "document_index", ["id"], "SELECT * FROM document_index WHERE id = ?", unique=True),
    _ix("idx_document_file_path", "document_index", ["file_path"],
        "SELECT * FROM document_index WHERE file_path = ?", unique=True),
    _ix("idx_document_type_created", "document_index", ["document_type", "created_at DESC"],
        "SELECT * FROM document_index WHERE document_type = 'design' ORDER BY created_at DESC",
        where="document_type IS NOT NULL"),
    _ix("idx_document_sync_status", "document_index", ["sync_status", "last_synced_at"],
        "SELECT * FROM document_index WHERE sync_status = 'pending' ORDER BY created_at ASC",
        where="sync_status IN ('pending', 'stale')"),
    _ix("idx_document_content_hash", "document_index", ["content_hash"],
        "SELECT COUNT(*) FROM document_index WHERE content_hash = ?"),
    _ix("idx_tasks_status_priority", "tasks", ["status", "priority DESC", "submitted_at ASC"],
        "SELECT * FROM tasks WHERE status = 'pending' ORDER BY priority DESC, submitted_at ASC LIMIT 1"),
    _ix("idx_tasks_submitted_at", "tasks", ["submitted_at"],
        "SELECT * FROM tasks WHERE submitted_at > datetime('now', '-1 day')"),
    _ix("idx_tasks_parent", "tasks", ["parent_task_id"], "SELECT * FROM tasks WHERE parent_task_id = ?"),
    _ix("idx_tasks_running_timeout", "tasks", ["status", "last_updated_at"],
        "SELECT * FROM tasks WHERE status = 'running' AND (julianday('now') - julianday(last_updated_at)) * 86400 > max_execution_timeout_seconds",
        where="status = 'running'"),
    _ix("idx_tasks_session", "tasks", ["session_id", "submitted_at DESC"],
        "SELECT * FROM tasks WHERE session_id = ? ORDER BY submitted_at DESC",
        where="session_id IS NOT NULL"),
    _ix("idx_agents_task", "agents", ["task_id"], "SELECT * FROM agents WHERE task_id = ?"),
    _ix("idx_agents_state", "agents", ["state"], "SELECT * FROM agents WHERE state = 'working'"),
    _ix("idx_agents_session", "agents", ["session_id", "spawned_at DESC"],
        "SELECT * FROM agents WHERE session_id = ? ORDER BY spawned_at DESC",
        where="session_id IS NOT NULL"),
    _ix("idx_audit_task", "audit", ["task_id", "timestamp DESC"],
        "SELECT * FROM audit WHERE task_id = ? ORDER BY timestamp DESC"),
    _ix("idx_audit_agent", "audit", ["agent_id", "timestamp DESC"],
        "SELECT * FROM audit WHERE agent_id = ? ORDER BY timestamp DESC"),
    _ix("idx_audit_timestamp", "audit", ["timestamp DESC"], "SELECT * FROM audit ORDER BY timestamp DESC LIMIT 100"),
    _ix("idx_audit_memory_operations", "audit", ["memory_operation_type", "timestamp DESC"],
        "SELECT * FROM audit WHERE memory_operation_type IS NOT NULL AND timestamp > datetime('now', '-1 day') ORDER BY timestamp DESC",
        where="memory_operation_type IS NOT NULL"),
    _ix("idx_audit_memory_namespace", "audit", ["memory_namespace", "timestamp DESC"],
        "SELECT * FROM audit WHERE memory_namespace LIKE 'user:alice%' ORDER BY timestamp DESC",
        where="memory_namespace IS NOT NULL"),
    _ix("idx_audit_memory_entry", "audit", ["memory_entry_id", "timestamp DESC"],
        "SELECT * FROM audit WHERE memory_entry_id = ? ORDER BY timestamp DESC",
        where="memory_entry_id IS NOT NULL"),
    _ix("idx_state_task_key", "state", ["task_id", "key"], "SELECT value FROM state WHERE task_id = ? AND key = ?"),
    _ix("idx_metrics_name_timestamp", "metrics", ["metric_name", "timestamp DESC"],
        "SELECT * FROM metrics WHERE metric_name = ? AND timestamp > datetime('now', '-1 hour') ORDER BY timestamp DESC"),
    _ix("idx_checkpoints_task", "checkpoints", ["task_id", "iteration DESC"],
        "SELECT * FROM checkpoints WHERE task_id = ? ORDER BY iteration DESC"),
]

# How each design finding of `schemagen lint` is resolved, or why it stays as
# designed; the validation report prints it with the finding. Keys are a lint
# rule, or (rule, object) for a single finding.
LINT_RESOLUTIONS = {
    "redundant-index": "kept: the milestone counts 33 indexes (spec, \"Known defects of the design\"); schemagen never "
                       "removes an index, a later milestone may drop it from the declaration",
    "unindexed-foreign-key": "left as designed: the design's 33 indexes have none for it and the milestone counts exactly "
                             "33; a parent delete scans the child table, cheap while it is small; declare the suggested "
                             "index in a later milestone if it grows",
    "like-prefix-binary": "left as designed: the index stays as declared; the application should query the prefix as in "
                          "the suggestion (`schemagen explain` verifies that plan)",
    "partial-index-not-implied": "left as designed: the index stays as declared; the application should query as in the "
                                 "suggestion (`schemagen explain` verifies that plan)",
    "json-valid-nullable": "kept as designed (spec: JSON columns carry CHECK(json_valid(col))): the column defaults to "
                           "'{}', so writers omit it or write JSON; NULL is refused",
    "index-not-used": "reported, not changed: the design's claim does not hold for this query here; `schemagen explain` "
                      "shows the plan and any suggestion",
    "no-statistics": "left to the application: run ANALYZE (or PRAGMA optimize) once the tables hold representative data",
}

SCHEMA = Schema(
    name="abathur",
    source="schema_dsl/abathur.py",
    table_files=(MEMORY, CORE),
    index_file=INDEXES,
    tables=[sessions, memory_entries, document_index, tasks, agents, state, audit, metrics, checkpoints],
    indexes=INDEX_LIST,
    pragmas=[
        Pragma("journal_mode", "WAL", persistent=True),
        Pragma("synchronous", "NORMAL"),
        Pragma("foreign_keys", "ON"),
        Pragma("busy_timeout", 5000),
        Pragma("wal_autocheckpoint", 1000),
    ],
    lint_resolutions=LINT_RESOLUTIONS,
)
