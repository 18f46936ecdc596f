"""Schema evolution: declared removals and --prune, with the data-loss guard."""
from __future__ import annotations

import asyncio
import sqlite3
import textwrap

import pytest

from conftest import make_runner
from schema_dsl import Database
from schema_dsl.cli import main
from schema_dsl.errors import DeclarationError, Declined, UnsafeMigrationError
from schema_dsl.migrate.apply import apply, plan_database
from schema_dsl.model import Column, Index, PrimaryKey, Schema, Table, View, evolve, fk, removed

PARENT = Table("parent", [Column("id", "INTEGER"), Column("name", "TEXT")], primary_key=PrimaryKey(("id",)))
CHILD = Table("child", [Column("id", "INTEGER"), Column("parent_id", "INTEGER"), Column("note", "TEXT"),
                        Column("extra", "TEXT")],
              primary_key=PrimaryKey(("id",)), foreign_keys=[fk("parent_id", "parent", "id", "CASCADE")])
OLD = Schema("app", [PARENT, CHILD], indexes=[Index("idx_child_parent", "child", ["parent_id"]),
                                            Index("idx_child_note", "child", ["note"])],
             views=[View("v_names", "CREATE VIEW v_names AS SELECT name FROM parent")])


@pytest.fixture
def runner():
    return make_runner()


@pytest.fixture
def full(tmp_path):
    """An OLD database with rows: 3 parents, 6 children (4 with an extra value)."""
    path = tmp_path / "app.db"
    apply(str(path), schema=OLD, backup=False)
    conn = sqlite3.connect(str(path))
    conn.executemany("INSERT INTO parent (id, name) VALUES (?, ?)", [(1, "a"), (2, "b"), (3, "c")])
    conn.executemany("INSERT INTO child (id, parent_id, note, extra) VALUES (?, ?, ?, ?)",
                     [(i, 1 + i % 3, "n%d" % i, "x" if i <= 4 else None) for i in range(1, 7)])
    conn.commit()
    conn.close()
    return path


def _count(path, sql):
    conn = sqlite3.connect(str(path))
    try:
        return conn.execute(sql).fetchone()[0]
    finally:
        conn.close()


def _objects(path):
    conn = sqlite3.connect(str(path))
    try:
        return {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE name NOT LIKE 'sqlite_%'")}
    finally:
        conn.close()


def test_removing_an_index_view_or_trigger_simply_happens(full):
    new = evolve(OLD, indexes=OLD.indexes[:1], views=(),
                 removed=[removed("index", "idx_child_note", "nobody searches notes"),
                          removed("view", "v_names", "replaced by the API")])
    plan = plan_database(str(full), schema=new)
    assert [s.title for s in plan.steps] == ["drop view 'v_names'", "drop index 'idx_child_note'"]
    assert plan.data_loss == ()
    result = apply(str(full), schema=new, confirm=lambda p: pytest.fail("asked although no data goes"))
    assert result.applied and result.backup is None  # no rows touched: no backup needed
    assert {"idx_child_note", "v_names"}.isdisjoint(_objects(full))
    assert _count(full, "SELECT count(*) FROM child") == 6
    assert plan_database(str(full), schema=new).up_to_date


def test_removing_a_column_counts_its_values_asks_and_keeps_every_row(full):
    new = evolve(OLD, tables=[PARENT, evolve(CHILD, columns=CHILD.columns[:3])],
                 removed=[removed("column", "extra", "never read", table="child")])
    plan = plan_database(str(full), schema=new)
    assert [(d["kind"], d["table"], d["column"], d["rows"]) for d in plan.data_loss] == [("column", "child", "extra", 4)]
    before = _count(full, "SELECT count(*) FROM child")
    with pytest.raises(Declined, match="not confirmed"):
        apply(str(full), schema=new, confirm=lambda p: False)
    assert "extra" in [r[1] for r in sqlite3.connect(str(full)).execute("PRAGMA table_info(child)")]
    assert not [p for p in full.parent.iterdir() if ".backup-" in p.name]  # refused: no backup left behind
    result = apply(str(full), schema=new, confirm=lambda p: True)
    assert result.applied and result.backup is not None  # the backup is mandatory
    assert "extra" not in [r[1] for r in sqlite3.connect(str(full)).execute("PRAGMA table_info(child)")]
    assert _count(full, "SELECT count(*) FROM child") == before
    assert _count(full, "SELECT count(*) FROM child WHERE note IS NOT NULL") == before


def test_removing_a_table_with_no_backup_needs_allow_data_loss_and_fires_no_on_delete(full, tmp_path):
    grand = Table("grand", [Column("id", "INTEGER"), Column("child_id", "INTEGER")], primary_key=PrimaryKey(("id",)),
                  foreign_keys=[fk("child_id", "child", "id", "CASCADE")])
    with_grand = evolve(OLD, tables=[PARENT, CHILD, grand])
    apply(str(full), schema=with_grand, backup=False)
    conn = sqlite3.connect(str(full))
    conn.execute("INSERT INTO grand (id, child_id) VALUES (1, 1)")
    conn.commit()
    conn.close()
    new = evolve(with_grand, tables=[PARENT, CHILD], removed=[removed("table", "grand", "superseded")])
    plan = plan_database(str(full), schema=new)
    assert [d["rows"] for d in plan.data_loss] == [1]
    with pytest.raises(UnsafeMigrationError, match="--allow-data-loss"):
        apply(str(full), schema=new, backup=False, confirm=lambda p: True)
    assert "grand" in _objects(full)
    apply(str(full), schema=new, backup=False, allow_data_loss=True, confirm=lambda p: True)
    assert "grand" not in _objects(full)
    assert _count(full, "SELECT count(*) FROM child") == 6 and _count(full, "SELECT count(*) FROM parent") == 3


def test_declaration_errors_for_removals():
    with pytest.raises(DeclarationError, match="removed index 'idx_child_parent': it is also declared"):
        evolve(OLD, removed=[removed("index", "idx_child_parent", "x")])
    with pytest.raises(DeclarationError, match="table 'child' still declares a foreign key"):
        evolve(OLD, tables=[CHILD, Table("other", [Column("id", "INTEGER")])], indexes=[], views=[],
               removed=[removed("table", "parent", "x")])
    with pytest.raises(DeclarationError, match="the column is still declared"):
        evolve(OLD, removed=[removed("column", "note", "x", table="child")])


def test_prune_drops_undeclared_objects_and_flags_what_it_weakens(full, runner, tmp_path, monkeypatch):
    conn = sqlite3.connect(str(full))
    conn.executescript("""
        CREATE UNIQUE INDEX my_unique ON parent (name);
        CREATE TABLE audit_log (at TEXT, what TEXT);
        CREATE TRIGGER my_audit AFTER UPDATE ON parent BEGIN INSERT INTO audit_log VALUES (datetime('now'), new.name); END;
        CREATE VIRTUAL TABLE parent_fts USING fts5(name);
        CREATE TRIGGER my_fts AFTER INSERT ON parent BEGIN INSERT INTO parent_fts (rowid, name) VALUES (new.id, new.name); END;
        INSERT INTO audit_log VALUES ('t', 'w');
    """)
    conn.close()
    decl = tmp_path / "decl.py"
    decl.write_text(textwrap.dedent('''
        from schema_dsl.model import *
        PARENT = Table("parent", [Column("id", "INTEGER"), Column("name", "TEXT")], primary_key=PrimaryKey(("id",)))
        CHILD = Table("child", [Column("id", "INTEGER"), Column("parent_id", "INTEGER"), Column("note", "TEXT"),
                                Column("extra", "TEXT")], primary_key=PrimaryKey(("id",)),
                      foreign_keys=[fk("parent_id", "parent", "id", "CASCADE")])
        SCHEMA = Schema("app", [PARENT, CHILD], indexes=[Index("idx_child_parent", "child", ["parent_id"]),
                        Index("idx_child_note", "child", ["note"])],
                        views=[View("v_names", "CREATE VIEW v_names AS SELECT name FROM parent")])
    '''), encoding="utf-8")
    monkeypatch.chdir(tmp_path)
    shown = runner.invoke(main, ["plan", "--db", str(full), "--schema", str(decl), "--prune"])
    assert shown.exit_code == 0, shown.output
    assert "drop index 'my_unique'" in shown.output and "drop trigger 'my_audit'" in shown.output
    assert "a UNIQUE index: nothing will keep its columns unique" in shown.output
    assert "it maintains the full-text index 'parent_fts'" in shown.output
    assert "it writes to 'audit_log'" in shown.output
    assert "drop table" not in shown.output  # tables and columns need --allow-data-loss
    result = runner.invoke(main, ["apply", "--db", str(full), "--schema", str(decl), "--prune", "--no-validate"])
    assert result.exit_code == 0, result.output
    left = _objects(full)
    assert {"my_unique", "my_audit", "my_fts"}.isdisjoint(left) and {"audit_log", "parent_fts"} <= left
    assert "parent_fts_data" in left  # a virtual table's shadow tables are never touched on their own
    # with --allow-data-loss, undeclared tables go too; off a terminal it needs --yes
    refused = runner.invoke(main, ["apply", "--db", str(full), "--schema", str(decl), "--prune", "--allow-data-loss"])
    assert refused.exit_code == 2 and "--yes" in refused.stderr
    assert len(refused.stderr.strip().splitlines()) == 1 and "audit_log" in refused.stderr  # one line, what goes
    assert "audit_log" in _objects(full)
    done = runner.invoke(main, ["apply", "--db", str(full), "--schema", str(decl), "--prune", "--allow-data-loss",
                                "--yes", "--no-validate"])
    assert done.exit_code == 0, done.output
    assert {"audit_log", "parent_fts", "parent_fts_data"}.isdisjoint(_objects(full))
    assert _count(full, "SELECT count(*) FROM child") == 6


def test_database_initialize_follows_the_same_rules_and_logs_the_counts(full, caplog):
    new = evolve(OLD, tables=[PARENT, evolve(CHILD, columns=CHILD.columns[:3])],
                 removed=[removed("column", "extra", "never read", table="child")])

    async def go(**kw):
        db = Database(full, schema=new)
        try:
            return await db.initialize(**kw)
        finally:
            await db.close()

    with pytest.raises(Declined):
        asyncio.run(go())
    assert "extra" in [r[1] for r in sqlite3.connect(str(full)).execute("PRAGMA table_info(child)")]
    with caplog.at_level("WARNING", logger="schema_dsl.database"):
        result = asyncio.run(go(allow_data_loss=True))
    assert result.applied
    assert "column 'child'.'extra': 4 non-NULL values go" in caplog.text


def test_a_removal_never_fires_on_delete_and_never_orphans_a_users_rows_silently(full):
    conn = sqlite3.connect(str(full))
    conn.executescript("CREATE TABLE memo (id INTEGER PRIMARY KEY, parent_id INTEGER REFERENCES parent (id) "
                       "ON DELETE CASCADE); INSERT INTO memo VALUES (1, 1), (2, 2);")
    conn.close()
    new = Schema("app", [Table("other", [Column("id", "INTEGER")], primary_key=PrimaryKey(("id",)))],
                 removed=[removed("table", "child", "gone"), removed("table", "parent", "gone")])
    # refused when planned: memo's foreign key would name a table that no longer exists (and the kept view
    # v_names would read one)
    with pytest.raises(UnsafeMigrationError, match="table 'memo': its foreign key .parent_id. references table 'parent'"):
        apply(str(full), schema=new, allow_data_loss=True, confirm=lambda p: True, backup=False)
    assert _count(full, "SELECT count(*) FROM memo") == 2 and _count(full, "SELECT count(*) FROM parent") == 3
