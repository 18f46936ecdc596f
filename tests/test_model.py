"""The frozen model and its validation: one test per rule, each error naming its object."""
from __future__ import annotations

import attrs
import pytest

from schema_dsl import model
from schema_dsl.abathur import SCHEMA
from schema_dsl.errors import DeclarationError
from schema_dsl.model import (Check, Column, ForeignKey, Index, IndexColumn, Literal, PrimaryKey, Schema, Table,
                              Unique, fk)

F1, F2 = "one.sql", "two.sql"


def parent(**changes):
    kw = dict(name="parent", columns=[Column("id", "INTEGER"), Column("code", "TEXT", unique=True),
                                      Column("label", "TEXT")],
              primary_key=PrimaryKey(("id",)), file=F1)
    kw.update(changes)
    return Table(**kw)


def child(**changes):
    kw = dict(name="child", columns=[Column("id", "INTEGER"), Column("parent_id", "INTEGER"),
                                     Column("note", "TEXT", not_null=True)],
              primary_key=PrimaryKey(("id",)), foreign_keys=[fk("parent_id", "parent", "id")], file=F2)
    kw.update(changes)
    return Table(**kw)


def schema(tables=None, indexes=(), **kw):
    return Schema("t", tables=tables if tables is not None else [parent(), child()], indexes=indexes,
                  table_files=(F1, F2), index_file="ix.sql", **kw)


def problems(**kw):
    with pytest.raises(DeclarationError) as info:
        schema(**kw)
    return info.value.problems


def test_a_valid_small_schema_builds():
    s = schema(indexes=[Index("ix_child_note", "child", ["note", "id DESC"])])
    assert [t.name for t in s.ordered_tables()] == ["parent", "child"]
    assert s.indexes[0].columns == (IndexColumn("note"), IndexColumn("id", desc=True))


# --- one test per validation rule -------------------------------------------

def test_fk_to_unknown_table():
    p = problems(tables=[parent(), child(foreign_keys=[fk("parent_id", "parnet", "id")])])
    assert p == ("table 'child', foreign key (parent_id): references unknown table 'parnet'",)


def test_fk_to_unknown_column():
    p = problems(tables=[parent(), child(foreign_keys=[fk("parent_id", "parent", "nope")])])
    assert p == ("table 'child', foreign key (parent_id): references unknown column 'parent.nope'",)


def test_fk_from_unknown_column():
    p = problems(tables=[parent(), child(foreign_keys=[fk("ghost", "parent", "id")])])
    assert p == ("table 'child': foreign key (ghost) names unknown column 'ghost'",)


def test_index_on_unknown_column():
    p = problems(indexes=[Index("ix_bad", "child", ["note", "missing DESC"])])
    assert p == ("index 'ix_bad': names unknown column 'child.missing'",)


def test_index_on_unknown_table():
    p = problems(indexes=[Index("ix_bad", "nowhere", ["id"])])
    assert p == ("index 'ix_bad': on unknown table 'nowhere'",)


def test_unique_on_unknown_column():
    p = problems(tables=[parent(uniques=[Unique(("label", "colour"))]), child()])
    assert p == ("table 'parent': UNIQUE constraint names unknown column 'colour'",)


def test_primary_key_on_unknown_column():
    p = problems(tables=[parent(primary_key=PrimaryKey(("ident",))), child()])
    assert "table 'parent': PRIMARY KEY names unknown column 'ident'" in p


def test_duplicate_table_name_is_case_insensitive():
    p = problems(tables=[parent(), child(), child(name="CHILD", foreign_keys=[])])
    assert p == ("table 'CHILD': duplicate name (already used by a table)",)


def test_duplicate_column_name_is_case_insensitive():
    cols = [Column("id", "INTEGER"), Column("code", "TEXT", unique=True), Column("Label", "TEXT"),
            Column("LABEL", "TEXT")]
    p = problems(tables=[parent(columns=cols), child()])
    assert p == ("table 'parent': duplicate column 'LABEL'",)


def test_duplicate_index_name():
    p = problems(indexes=[Index("ix_a", "child", ["note"]), Index("IX_A", "parent", ["label"])])
    assert p == ("index 'IX_A': duplicate name (already used by a index)",)


def test_index_name_clashing_with_a_table():
    p = problems(indexes=[Index("Parent", "child", ["note"])])
    assert p == ("index 'Parent': duplicate name (already used by a table)",)


@pytest.mark.parametrize("kind", ["table", "column", "index"])
@pytest.mark.parametrize("bad, why", [
    ("", "non-empty"),
    ("sqlite_stuff", "reserved by SQLite"),
    ("SQLite_Stuff", "reserved by SQLite"),
    ("SQLITE_X", "reserved by SQLite"),
    ("bad\x00name", "control character"),
    ("bad\nname", "control character"),
    ("tab\tname", "control character"),
    ("del\x7fname", "control character"),
    (" padded", "white space"),
])
def test_identifier_rejected(kind, bad, why):
    tables, indexes = [parent(), child()], []
    if kind == "table":
        tables.append(Table(bad, [Column("x", "TEXT")], file=F1))
    elif kind == "column":
        tables[0] = parent(columns=[*parent().columns, Column(bad, "TEXT")])
    else:
        indexes.append(Index(bad, "child", ["note"]))
    p = problems(tables=tables, indexes=indexes)
    assert len(p) == 1 and why in p[0], p
    assert repr(bad) in p[0]
    if kind == "column":
        assert p[0].startswith("table 'parent': column ")
    else:
        assert p[0].startswith(kind + " ")


def test_invalid_type_name():
    p = problems(tables=[parent(columns=[*parent().columns, Column("x", "TEXT; DROP")]), child()])
    assert p == ("table 'parent', column 'x': type 'TEXT; DROP' is not a valid SQLite type name",)


def test_autoincrement_on_a_non_integer_primary_key():
    t = Table("seq", [Column("id", "TEXT")], primary_key=PrimaryKey(("id",), autoincrement=True), file=F1)
    p = problems(tables=[parent(), child(), t])
    assert p == ("table 'seq': AUTOINCREMENT needs a single INTEGER PRIMARY KEY column, got id TEXT",)


def test_autoincrement_on_int_is_not_integer():
    # SQLite accepts AUTOINCREMENT only on the exact type INTEGER (a rowid alias), not INT.
    t = Table("seq", [Column("id", "INT")], primary_key=PrimaryKey(("id",), autoincrement=True), file=F1)
    p = problems(tables=[parent(), child(), t])
    assert p == ("table 'seq': AUTOINCREMENT needs a single INTEGER PRIMARY KEY column, got id INT",)


def test_autoincrement_on_a_composite_primary_key():
    t = Table("pair", [Column("a", "INTEGER"), Column("b", "INTEGER")],
              primary_key=PrimaryKey(("a", "b"), autoincrement=True), file=F1)
    p = problems(tables=[parent(), child(), t])
    assert p == ("table 'pair': AUTOINCREMENT needs a single INTEGER PRIMARY KEY column, got a INTEGER, b INTEGER",)


def test_on_delete_set_null_on_a_not_null_column():
    cols = [Column("id", "INTEGER"), Column("parent_id", "INTEGER", not_null=True), Column("note", "TEXT")]
    p = problems(tables=[parent(), child(columns=cols, foreign_keys=[fk("parent_id", "parent", "id", on_delete="SET NULL")])])
    assert p == ("table 'child', foreign key (parent_id): ON DELETE SET NULL on NOT NULL column 'parent_id'",)


def test_on_delete_set_null_on_a_nullable_column_is_fine():
    s = schema(tables=[parent(), child(foreign_keys=[fk("parent_id", "parent", "id", on_delete="SET NULL")])])
    assert s.table("child").foreign_keys[0].on_delete == "SET NULL"


def test_table_in_a_file_before_a_table_it_references_in_a_later_file():
    p = problems(tables=[parent(file=F2), child(file=F1)])
    assert p == ("table 'child', foreign key (parent_id): placed in one.sql, before the referenced table "
                 "'parent' in the later file two.sql",)


def test_table_in_an_undeclared_file():
    p = problems(tables=[parent(), child(file="three.sql")])
    assert p == ("table 'child': file 'three.sql' is not one of the table files ['one.sql', 'two.sql']",)


def test_references_within_one_file_are_ordered_whatever_the_declaration_order():
    s = schema(tables=[child(file=F1), parent()])
    assert [t.name for t in s.tables_in_file(F1)] == ["parent", "child"]


def test_foreign_key_cycle_within_one_file_is_accepted_and_linted():
    # SQLite creates the tables in any order (real files have cycles): lint reports it, the model accepts it
    from schema_dsl.analysis import lint
    a = Table("a", [Column("id", "INTEGER"), Column("b_id", "INTEGER")], primary_key=PrimaryKey(("id",)),
              foreign_keys=[fk("b_id", "b", "id")], file=F1)
    b = Table("b", [Column("id", "INTEGER"), Column("a_id", "INTEGER")], primary_key=PrimaryKey(("id",)),
              foreign_keys=[fk("a_id", "a", "id")], file=F1)
    s = schema(tables=[a, b])
    assert [t.name for t in s.tables_in_file(F1)] == ["a", "b"]
    found = [(f.rule, f.object) for f in lint.lint(s, json_probe=None) if f.rule == "fk-cycle"]
    assert found == [("fk-cycle", "a"), ("fk-cycle", "b")]


def test_a_self_reference_is_fine():
    t = parent(columns=[*parent().columns, Column("up", "INTEGER")], foreign_keys=[fk("up", "parent", "id")])
    assert schema(tables=[t, child()]).table("parent").foreign_keys[0].ref_table == "parent"


def test_fk_parent_columns_not_primary_key_or_unique_is_accepted_and_linted():
    from schema_dsl.analysis import lint
    s = schema(tables=[parent(), child(foreign_keys=[fk("parent_id", "parent", "label")])])
    found = [f for f in lint.lint(s, json_probe=None) if f.rule == "fk-parent-not-unique"]
    assert [(f.object, f.severity) for f in found] == [("child(parent_id)", "warning")]
    assert "parent(label)" in found[0].message and found[0].resolution.startswith("open:")


def test_fk_parent_column_with_column_level_unique_is_fine():
    s = schema(tables=[parent(), child(foreign_keys=[fk("parent_id", "parent", "code")])])
    assert s.table("child").foreign_keys[0].ref_columns == ("code",)


def test_fk_column_count_mismatch():
    bad = ForeignKey(("parent_id",), "parent", ("id", "code"))
    p = problems(tables=[parent(), child(foreign_keys=[bad])])
    assert "table 'child', foreign key (parent_id): 1 columns reference 2" in p


@pytest.mark.parametrize("field", ["on_delete", "on_update"])
def test_invalid_fk_action_rejected_by_the_attrs_validator(field):
    with pytest.raises(ValueError) as info:
        ForeignKey(("parent_id",), "parent", ("id",), **{field: "DROP EVERYTHING"})
    assert field in str(info.value) and "DROP EVERYTHING" in str(info.value)


def test_invalid_pragma_name_rejected():
    with pytest.raises(ValueError):
        model.Pragma("page_size", 4096)


def test_several_problems_are_reported_at_once():
    bad_child = child(columns=[*child().columns, Column("sqlite_x", "TEXT")],
                      foreign_keys=[fk("parent_id", "nowhere", "id"), fk("note", "parent", "label")])
    with pytest.raises(DeclarationError) as info:
        schema(tables=[parent(), bad_child, child(name="Child", foreign_keys=[])],
               indexes=[Index("ix", "parent", ["colour"])])
    p = info.value.problems
    assert p == (
        "table 'Child': duplicate name (already used by a table)",
        "table 'child': column 'sqlite_x': names starting with 'sqlite_' are reserved by SQLite",
        "table 'child', foreign key (parent_id): references unknown table 'nowhere'",
        "index 'ix': names unknown column 'parent.colour'",
    )
    message = str(info.value)
    assert message.startswith("invalid schema declaration: ")
    assert all(item in message for item in p)


# --- frozen data ------------------------------------------------------------

@pytest.mark.parametrize("obj, field", [
    (Column("a", "TEXT"), "name"),
    (PrimaryKey(("a",)), "autoincrement"),
    (fk("a", "b", "c"), "on_delete"),
    (Index("ix", "t", ["a"]), "where"),
    (Check("a > 0"), "expr"),
    (SCHEMA.tables[0], "name"),
    (SCHEMA, "tables"),
])
def test_models_are_frozen(obj, field):
    before = getattr(obj, field)
    with pytest.raises(attrs.exceptions.FrozenInstanceError):
        setattr(obj, field, "changed")
    assert getattr(obj, field) == before


def test_collections_are_tuples():
    t = Table("x", columns=[Column("a", "TEXT")], uniques=[Unique(["a"])], file=F1)
    assert isinstance(t.columns, tuple) and isinstance(t.uniques, tuple) and isinstance(t.uniques[0].columns, tuple)


def test_evolve_makes_a_changed_copy():
    c = Column("a", "TEXT")
    d = model.evolve(c, not_null=True, default="x")
    assert (c.not_null, c.default) == (False, None)
    assert (d.not_null, d.default, d.name) == (True, Literal("x"), "a")


def test_evolve_revalidates_a_schema():
    s = schema()
    with pytest.raises(DeclarationError) as info:
        model.evolve(s, indexes=[Index("ix", "child", ["nope"])])
    assert info.value.problems == ("index 'ix': names unknown column 'child.nope'",)
    assert s.indexes == ()


# --- the Abathur declaration ------------------------------------------------

# The spec's index table: (name, table, columns, unique, partial WHERE), in order 1..33.
SPEC_INDEXES = [
    ("idx_sessions_pk", "sessions", "id", True, None),
    ("idx_sessions_status_updated", "sessions", "status, last_update_time DESC", False, "status IN ('active', 'paused')"),
    ("idx_sessions_user_created", "sessions", "user_id, created_at DESC", False, None),
    ("idx_sessions_project", "sessions", "project_id, created_at DESC", False, "project_id IS NOT NULL"),
    ("idx_memory_entries_pk", "memory_entries", "id", True, None),
    ("idx_memory_namespace_key_version", "memory_entries", "namespace, key, is_deleted, version DESC", False, None),
    ("idx_memory_type_updated", "memory_entries", "memory_type, updated_at DESC", False, "is_deleted = 0"),
    ("idx_memory_namespace_prefix", "memory_entries", "namespace, updated_at DESC", False, "is_deleted = 0"),
    ("idx_memory_conflict_detection", "memory_entries", "namespace, key, is_deleted, version DESC", False, None),
    ("idx_memory_episodic_ttl", "memory_entries", "memory_type, updated_at", False,
     "memory_type = 'episodic' AND is_deleted = 0"),
    ("idx_memory_created_by", "memory_entries", "created_by, created_at DESC", False, None),
    ("idx_document_index_pk", "document_index", "id", True, None),
    ("idx_document_file_path", "document_index", "file_path", True, None),
    ("idx_document_type_created", "document_index", "document_type, created_at DESC", False, "document_type IS NOT NULL"),
    ("idx_document_sync_status", "document_index", "sync_status, last_synced_at", False,
     "sync_status IN ('pending', 'stale')"),
    ("idx_document_content_hash", "document_index", "content_hash", False, None),
    ("idx_tasks_status_priority", "tasks", "status, priority DESC, submitted_at", False, None),
    ("idx_tasks_submitted_at", "tasks", "submitted_at", False, None),
    ("idx_tasks_parent", "tasks", "parent_task_id", False, None),
    ("idx_tasks_running_timeout", "tasks", "status, last_updated_at", False, "status = 'running'"),
    ("idx_tasks_session", "tasks", "session_id, submitted_at DESC", False, "session_id IS NOT NULL"),
    ("idx_agents_task", "agents", "task_id", False, None),
    ("idx_agents_state", "agents", "state", False, None),
    ("idx_agents_session", "agents", "session_id, spawned_at DESC", False, "session_id IS NOT NULL"),
    ("idx_audit_task", "audit", "task_id, timestamp DESC", False, None),
    ("idx_audit_agent", "audit", "agent_id, timestamp DESC", False, None),
    ("idx_audit_timestamp", "audit", "timestamp DESC", False, None),
    ("idx_audit_memory_operations", "audit", "memory_operation_type, timestamp DESC", False,
     "memory_operation_type IS NOT NULL"),
    ("idx_audit_memory_namespace", "audit", "memory_namespace, timestamp DESC", False, "memory_namespace IS NOT NULL"),
    ("idx_audit_memory_entry", "audit", "memory_entry_id, timestamp DESC", False, "memory_entry_id IS NOT NULL"),
    ("idx_state_task_key", "state", "task_id, key", False, None),
    ("idx_metrics_name_timestamp", "metrics", "metric_name, timestamp DESC", False, None),
    ("idx_checkpoints_task", "checkpoints", "task_id, iteration DESC", False, None),
]


def test_abathur_has_9_tables_in_two_files_in_order():
    assert [t.name for t in SCHEMA.ordered_tables()] == [
        "sessions", "memory_entries", "document_index",
        "tasks", "agents", "state", "audit", "metrics", "checkpoints"]
    assert SCHEMA.table_files == ("ddl-memory-tables.sql", "ddl-core-tables.sql")
    assert SCHEMA.index_file == "ddl-indexes.sql"
    assert [t.name for t in SCHEMA.tables_in_file("ddl-memory-tables.sql")] == ["sessions", "memory_entries", "document_index"]


def test_abathur_has_the_33_indexes_of_the_spec_in_order():
    assert len(SCHEMA.indexes) == 33
    assert [ix.name for ix in SCHEMA.indexes] == [row[0] for row in SPEC_INDEXES]
    for ix, (name, table, columns, unique, where) in zip(SCHEMA.indexes, SPEC_INDEXES):
        got = ", ".join(c.name + (" DESC" if c.desc else "") for c in ix.columns)
        assert (ix.table, got, ix.unique, ix.where) == (table, columns, unique, where), name


def test_every_abathur_index_serves_a_query_on_its_table():
    for ix in SCHEMA.indexes:
        assert ix.serves, ix.name
        for q in ix.serves:
            assert q.startswith("SELECT ") and (" FROM %s " % ix.table) in q + " ", (ix.name, q)


def test_the_new_flags_are_exactly_the_milestone_additions():
    flagged = {(t.name, c.name) for t in SCHEMA.tables for c in t.columns if c.new}
    new_tables = {"sessions", "memory_entries", "document_index"}
    expected = {(t.name, c.name) for t in SCHEMA.tables if t.name in new_tables for c in t.columns}
    expected |= {("tasks", "session_id"), ("agents", "session_id"), ("checkpoints", "session_id"),
                 ("audit", "memory_operation_type"), ("audit", "memory_namespace"), ("audit", "memory_entry_id")}
    assert flagged == expected
    assert len(expected) == 12 + 12 + 13 + 6
    assert {t.name for t in SCHEMA.tables if t.new} == new_tables


def test_every_abathur_table_and_column_has_a_comment():
    for t in SCHEMA.tables:
        assert t.comment, t.name
        for c in t.columns:
            assert c.comment, (t.name, c.name)


def test_abathur_pragmas():
    assert [(p.name, p.value, p.persistent) for p in SCHEMA.pragmas] == [
        ("journal_mode", "WAL", True), ("synchronous", "NORMAL", False), ("foreign_keys", "ON", False),
        ("busy_timeout", 5000, False), ("wal_autocheckpoint", 1000, False)]


def test_set_null_foreign_keys_of_abathur():
    set_null = {(t.name, f.columns, f.ref_table) for t in SCHEMA.tables for f in t.foreign_keys if f.on_delete == "SET NULL"}
    assert set_null == {("tasks", ("session_id",), "sessions"), ("agents", ("session_id",), "sessions"),
                        ("checkpoints", ("session_id",), "sessions"), ("audit", ("memory_entry_id",), "memory_entries")}


def test_type_affinity():
    assert [model.type_affinity(t) for t in ("INTEGER", "TEXT", "BLOB", "", "REAL", "TIMESTAMP", "BOOLEAN", "VARCHAR(10)")] == [
        "INTEGER", "TEXT", "BLOB", "BLOB", "REAL", "NUMERIC", "NUMERIC", "TEXT"]


# --- issue 15.15 ---------------------------------------------------------------------------------------------------

def test_a_without_rowid_primary_key_column_is_not_null_as_sqlite_makes_it(tmp_path):
    """Declared without not_null, it could never be applied ("NOT NULL is True, expected False")."""
    from schema_dsl.migrate.apply import apply, plan_database
    from schema_dsl.model import Column, PrimaryKey, Schema, Table
    kv = Table("kv", [Column("k", "TEXT"), Column("v", "TEXT")], primary_key=PrimaryKey(("k",)), without_rowid=True)
    assert kv.column("k").not_null and not kv.column("v").not_null
    schema = Schema("wr", [kv])
    path = str(tmp_path / "wr.db")
    assert apply(path, schema=schema, backup=False).applied
    assert plan_database(path, schema=schema).up_to_date


@pytest.mark.parametrize("kind, name", [("table", "sqlite_sequence"), ("table", "sqlite_stat1"),
                                        ("index", "sqlite_autoindex_tasks_1")])
def test_removing_an_sqlite_internal_object_is_a_declaration_error(kind, name):
    from schema_dsl.model import Column, Schema, Table, removed
    with pytest.raises(DeclarationError) as caught:
        Schema("s", [Table("t", [Column("a", "TEXT")])], removed=[removed(kind, name, "tidy up")])
    assert "removed %s '%s': an SQLite internal object" % (kind, name) in str(caught.value)
