"""Abathur Milestone 2, derived from the Milestone 1 declaration: what `lint` and `explain` found, acted on.

Milestone 1 (schema_dsl/abathur.py) stays as it is; this file loads it through the same loader as
`--schema` (so a checkout gets the working tree's file) and changes it:

- the seven redundant indexes are dropped from every database (declared removals, with the finding as
  the reason);
- checkpoints.session_id gets an index: deleting a session no longer scans checkpoints (ON DELETE SET NULL);
- the two `LIKE 'user:alice%'` serves-queries become GLOB: SQLite searches a BINARY index by a GLOB prefix,
  never by LIKE while case_sensitive_like is off;
- the two partial indexes whose WHERE their query did not imply term by term lose that WHERE;
- memory_entries.created_by is renamed author (ALTER TABLE RENAME COLUMN: its index follows);
- state rows go with their task: state.task_id gets ON DELETE CASCADE (a rebuild; no row changes).

Use it: `schemagen plan --db abathur.db --schema examples/abathur_m2.py`, then apply.
"""
from schema_dsl.compile.project import load_declaration
from schema_dsl.model import Column, Index, evolve, fk, removed

M1 = load_declaration("../schema_dsl/abathur.py", relative_to=__file__)

REDUNDANT = {
    "idx_sessions_pk": "repeats the PRIMARY KEY (id)",
    "idx_memory_entries_pk": "id is the INTEGER PRIMARY KEY, the rowid",
    "idx_memory_conflict_detection": "identical to idx_memory_namespace_key_version",
    "idx_document_index_pk": "id is the INTEGER PRIMARY KEY, the rowid",
    "idx_document_file_path": "repeats the UNIQUE (file_path) constraint",
    "idx_state_task_key": "repeats the UNIQUE (task_id, key) constraint",
    "idx_checkpoints_task": "repeats the PRIMARY KEY (task_id, iteration)",
}
GLOB = {
    "idx_memory_namespace_prefix": "SELECT * FROM memory_entries WHERE namespace GLOB 'user:alice*' AND is_deleted = 0 "
                                   "ORDER BY updated_at DESC",
    "idx_audit_memory_namespace": "SELECT * FROM audit WHERE memory_namespace GLOB 'user:alice*' "
                                  "ORDER BY timestamp DESC",
}
NOT_IMPLIED = ("idx_sessions_status_updated", "idx_document_sync_status")


def _index(ix):
    if ix.name in GLOB:
        return evolve(ix, serves=(GLOB[ix.name],))
    if ix.name in NOT_IMPLIED:
        return evolve(ix, where=None)
    if ix.name == "idx_memory_created_by":
        return evolve(ix, columns=["author", "created_at DESC"],
                      serves=("SELECT * FROM memory_entries WHERE author = ? ORDER BY created_at DESC",))
    return ix


def _table(t):
    if t.name == "memory_entries":
        return evolve(t, columns=[evolve(c, name="author", renamed_from="created_by", new=True,
                                         comment="Agent or user that created the entry (was created_by).")
                                  if c.name == "created_by" else c for c in t.columns])
    if t.name == "state":
        return evolve(t, foreign_keys=[fk("task_id", "tasks", "id", on_delete="CASCADE")])
    return evolve(t, new=False, columns=[evolve(c, new=False) for c in t.columns])


SCHEMA = evolve(
    M1,
    name="abathur_m2",
    source="examples/abathur_m2.py",
    tables=[_table(t) for t in M1.tables],
    indexes=[_index(ix) for ix in M1.indexes if ix.name not in REDUNDANT] + [
        Index("idx_checkpoints_session", "checkpoints", ["session_id"],
              serves=("SELECT * FROM checkpoints WHERE session_id = ?",),
              comment="Deleting a session sets checkpoints.session_id NULL: this index finds those rows."),
    ],
    removed=[removed("index", name, "redundant (schemagen lint): " + why) for name, why in REDUNDANT.items()],
    lint_resolutions={},
)
