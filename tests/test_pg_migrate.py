"""Migrations on PostgreSQL (schema_dsl/pg/plan.py, pg/migration.py): a design change applied with rows present,
PostgreSQL's own ALTERs (renames, ADD COLUMN with a backfill, NOT VALID then VALIDATE, UNIQUE USING INDEX, a
removed index), the ACCESS EXCLUSIVE steps named, a held lock failing cleanly, CONCURRENTLY after COMMIT with a
failure exiting 3 and the INVALID index rebuilt, the data-loss guard, plan --sql in two parts."""
from __future__ import annotations

import json
import textwrap
import time

import pytest

from pg_cluster import pg_cluster, pg_url  # noqa: F401 (fixtures)

V1 = """
from schema_dsl.model import Column, Index, PrimaryKey, Schema, Table

SCHEMA = Schema(name="shop", tables=[
    Table("owners", columns=[Column("id", "INTEGER"), Column("name", "TEXT", not_null=True)],
          primary_key=PrimaryKey(["id"])),
    Table("items", columns=[Column("id", "INTEGER"), Column("owner_id", "INTEGER"), Column("title", "TEXT"),
                            Column("score", "TEXT"), Column("note", "TEXT")],
          primary_key=PrimaryKey(["id"])),
], indexes=[Index("idx_items_note", "items", ["note"])])
"""

# owners -> people, items.title -> label (several former names), a NOT NULL column filled by a backfill, score's
# type changes, an FK and a CHECK are added, label becomes UNIQUE, idx_items_note is removed
V2 = """
from schema_dsl.model import Check, Column, Index, PrimaryKey, Schema, Table, fk, removed

SCHEMA = Schema(name="shop", tables=[
    Table("people", columns=[Column("id", "INTEGER"), Column("name", "TEXT", not_null=True)],
          primary_key=PrimaryKey(["id"]), renamed_from="owners"),
    Table("items", columns=[Column("id", "INTEGER"), Column("owner_id", "INTEGER"),
                            Column("label", "TEXT", renamed_from=("heading", "title"), unique=True),
                            Column("score", "INTEGER"), Column("note", "TEXT"),
                            Column("status", "TEXT", not_null=True, backfill="'open'")],
          primary_key=PrimaryKey(["id"]), foreign_keys=[fk("owner_id", "people", "id", on_delete="CASCADE")],
          checks=[Check("length(label) > 0")]),
], removed=[removed("index", "idx_items_note", "no query filters on note")])
"""


def _cli(runner, *args):
    from schema_dsl.cli import main
    return runner.invoke(main, list(args), catch_exceptions=False)


def _connect(url):
    import psycopg
    return psycopg.connect(url, autocommit=True)


def _decl(tmp_path, name, text):
    path = tmp_path / ("%s.py" % name)
    path.write_text(textwrap.dedent(text), encoding="utf-8")
    return "%s:SCHEMA" % path


def _structure(url):
    """Tables with their columns, and the indexes: what "nothing changed" compares."""
    with _connect(url) as conn:
        cols = conn.execute("SELECT c.relname, a.attname, format_type(a.atttypid, a.atttypmod), a.attnotnull "
                            "FROM pg_attribute a JOIN pg_class c ON c.oid = a.attrelid "
                            "WHERE c.relnamespace = 'public'::regnamespace AND c.relkind = 'r' AND a.attnum > 0 "
                            "AND NOT a.attisdropped ORDER BY 1, 2").fetchall()
        idx = conn.execute("SELECT indexname, indexdef FROM pg_indexes WHERE schemaname = 'public' ORDER BY 1").fetchall()
        cons = conn.execute("SELECT conname FROM pg_constraint WHERE connamespace = 'public'::regnamespace "
                            "ORDER BY 1").fetchall()
    return cols, idx, cons


def _v1_with_rows(runner, tmp_path, url):
    v1 = _decl(tmp_path, "v1", V1)
    result = _cli(runner, "apply", "--db", url, "--schema", v1)
    assert result.exit_code == 0, result.output + result.stderr
    with _connect(url) as conn:
        conn.execute("INSERT INTO owners (id, name) VALUES (1, 'ann'), (2, 'bob')")
        conn.execute("INSERT INTO items (id, owner_id, title, score, note) VALUES "
                     "(1, 1, 'lamp', '3', 'a'), (2, 2, 'desk', '5', NULL), (3, NULL, 'chair', NULL, 'c')")
    return v1


def test_a_design_change_with_rows_present_is_planned_with_postgresqls_alters_and_applied(runner, tmp_path, pg_url):
    _v1_with_rows(runner, tmp_path, pg_url)
    v2 = _decl(tmp_path, "v2", V2)
    shown = _cli(runner, "plan", "--db", pg_url, "--schema", v2)
    assert shown.exit_code == 0, shown.output + shown.stderr
    text = shown.output
    assert 'ALTER TABLE "owners" RENAME TO "people";' in text
    assert 'ALTER TABLE "items" RENAME COLUMN "title" TO "label";' in text
    assert 'ALTER TABLE "items" ADD COLUMN "status" text;' in text
    assert 'UPDATE "items" SET "status" = \'open\' WHERE "status" IS NULL;' in text
    assert 'ALTER TABLE "items" ALTER COLUMN "status" SET NOT NULL;' in text
    # the FK: NOT VALID first, then VALIDATE, both shown
    fk_add = text.index('ADD CONSTRAINT "items_owner_id_fkey" FOREIGN KEY ("owner_id") REFERENCES "people" ("id") '
                        'ON DELETE CASCADE NOT VALID;')
    assert fk_add < text.index('ALTER TABLE "items" VALIDATE CONSTRAINT "items_owner_id_fkey";')
    assert "CHECK (length(label) > 0) NOT VALID;" in text
    # UNIQUE: the index first, then the constraint takes it over
    assert text.index('CREATE UNIQUE INDEX "items_label_key" ON "items" ("label");') < \
        text.index('ADD CONSTRAINT "items_label_key" UNIQUE USING INDEX "items_label_key";')
    assert 'DROP INDEX "idx_items_note";' in text
    assert 'ALTER COLUMN "score" TYPE bigint USING "score"::bigint;' in text
    # the steps that hold ACCESS EXCLUSIVE while they read every row are named
    section = text.split("holds ACCESS EXCLUSIVE on its table while it rewrites or scans every row:")[1].split("\n\n")[0]
    assert "change the type of 'items'.'score' from text to bigint: rewrites the table" in section
    assert "set column 'items'.'status' NOT NULL: scans the whole table" in section
    assert "create index" not in section and "rename" not in section
    as_json = json.loads(_cli(runner, "plan", "--db", pg_url, "--schema", v2, "--json").output)
    locked = {s["title"] for s in as_json["access_exclusive"]}
    assert locked == {"change the type of 'items'.'score' from text to bigint", "set column 'items'.'status' NOT NULL"}
    by_title = {s["title"]: s for s in as_json["steps"]}  # each step says its own lock, and which column it changes
    typed = by_title["change the type of 'items'.'score' from text to bigint"]
    assert typed["kind"] == "AlterColumnType" and typed["column"] == "score" and "rewrites" in typed["access_exclusive"]
    assert by_title["set column 'items'.'status' NOT NULL"]["access_exclusive"].startswith("scans the whole table")
    assert not as_json["up_to_date"] and as_json["data_loss"] == []

    applied = _cli(runner, "apply", "--db", pg_url, "--schema", v2)
    assert applied.exit_code == 0, applied.output + applied.stderr
    assert "migrated" in applied.output and ": OK" in applied.output
    with _connect(pg_url) as conn:
        rows = conn.execute("SELECT id, owner_id, label, score, note, status FROM items ORDER BY id").fetchall()
        assert rows == [(1, 1, "lamp", 3, "a", "open"), (2, 2, "desk", 5, None, "open"),
                        (3, None, "chair", None, "c", "open")]
        assert conn.execute("SELECT name FROM people ORDER BY id").fetchall() == [("ann",), ("bob",)]
        assert conn.execute("SELECT count(*) FROM pg_constraint WHERE NOT convalidated").fetchone()[0] == 0
        assert conn.execute("SELECT count(*) FROM pg_indexes WHERE indexname = 'idx_items_note'").fetchone()[0] == 0
        from psycopg import errors
        with pytest.raises(errors.ForeignKeyViolation):
            conn.execute("INSERT INTO items (id, owner_id, label, status) VALUES (9, 42, 'x', 'open')")
        with pytest.raises(errors.UniqueViolation):
            conn.execute("INSERT INTO items (id, label, status) VALUES (9, 'lamp', 'open')")
        with pytest.raises(errors.CheckViolation):
            conn.execute("INSERT INTO items (id, label, status) VALUES (9, '', 'open')")
        conn.execute("DELETE FROM people WHERE id = 1")  # ON DELETE CASCADE as declared
        assert conn.execute("SELECT count(*) FROM items").fetchone()[0] == 2
    again = _cli(runner, "plan", "--db", pg_url, "--schema", v2)
    assert again.exit_code == 0 and again.output.startswith("up to date")
    assert "up to date" in _cli(runner, "apply", "--db", pg_url, "--schema", v2).output
    assert _cli(runner, "validate", "--db", pg_url, "--schema", v2).exit_code == 0


def test_a_lock_held_by_another_session_fails_the_migration_within_lock_timeout_and_changes_nothing(
        runner, tmp_path, pg_url):
    _v1_with_rows(runner, tmp_path, pg_url)
    v2 = _decl(tmp_path, "v2", V2)
    before = _structure(pg_url)
    holder = _connect(pg_url)
    try:
        holder.execute("BEGIN")
        holder.execute("SELECT count(*) FROM items")  # ACCESS SHARE until it ends: every ALTER of items waits
        started = time.perf_counter()
        result = _cli(runner, "apply", "--db", pg_url, "--schema", v2, "--lock-timeout", "300ms")
        elapsed = time.perf_counter() - started
    finally:
        holder.execute("ROLLBACK")
        holder.close()
    assert result.exit_code == 2, result.output + result.stderr
    assert "lock_timeout 300ms" in result.stderr and "nothing changed" in result.stderr
    assert elapsed < 15
    assert _structure(pg_url) == before  # the rename of owners, which got its lock, was rolled back too


def test_a_refused_change_names_the_rows_and_changes_nothing(runner, tmp_path, pg_url):
    _v1_with_rows(runner, tmp_path, pg_url)
    with _connect(pg_url) as conn:
        conn.execute("INSERT INTO items (id, owner_id, title) VALUES (4, 99, 'orphan'), (5, 1, 'lamp')")
    before = _structure(pg_url)
    result = _cli(runner, "apply", "--db", pg_url, "--schema", _decl(tmp_path, "v2", V2))
    assert result.exit_code == 2
    assert "new foreign key (owner_id) -> people: 1 existing row has no parent row in 'people' (id 4: owner_id = 99)" \
        in result.stderr
    assert "new UNIQUE (label) but 1 group of existing rows shares a value" in result.stderr
    assert _structure(pg_url) == before


V3_INDEX = """
from schema_dsl.model import Column, Index, PrimaryKey, Schema, Table

SCHEMA = Schema(name="shop", tables=[
    Table("owners", columns=[Column("id", "INTEGER"), Column("name", "TEXT", not_null=True)],
          primary_key=PrimaryKey(["id"])),
    Table("items", columns=[Column("id", "INTEGER"), Column("owner_id", "INTEGER"), Column("title", "TEXT"),
                            Column("score", "TEXT"), Column("note", "TEXT")],
          primary_key=PrimaryKey(["id"])),
    Table("tags", columns=[Column("id", "INTEGER"), Column("name", "TEXT")], primary_key=PrimaryKey(["id"])),
], indexes=[Index("idx_items_note", "items", ["note"]), Index("idx_items_title", "items", ["title", "id"], where="title IS NOT NULL"),
            Index("idx_tags_name", "tags", ["name"])])
"""


def _index_valid(url, name):
    with _connect(url) as conn:
        row = conn.execute("SELECT i.indisvalid FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid "
                           "WHERE c.relname = %s", (name,)).fetchone()
    return None if row is None else row[0]


def test_concurrently_builds_after_commit_a_failure_exits_3_and_the_next_plan_rebuilds_the_invalid_index(
        runner, tmp_path, pg_url):
    _v1_with_rows(runner, tmp_path, pg_url)
    v3 = _decl(tmp_path, "v3", V3_INDEX)
    shown = _cli(runner, "plan", "--db", pg_url, "--schema", v3, "--concurrently")
    assert shown.exit_code == 0, shown.output + shown.stderr
    assert "then 1 built CONCURRENTLY after COMMIT" in shown.output
    assert 'CREATE INDEX CONCURRENTLY "idx_items_title" ON "items" ("title", "id") WHERE title is not null;' in shown.output
    assert 'CREATE INDEX "idx_tags_name" ON "tags" ("name");' in shown.output  # a new table has no rows: in the transaction

    # plan --sql: the transactional part, then the concurrent part; the password masked in the header
    secret_url = pg_url.replace("user=postgres", "user=postgres&password=hunter2-secret")
    script = _cli(runner, "plan", "--db", secret_url, "--schema", v3, "--concurrently", "--sql")
    assert script.exit_code == 0, script.output + script.stderr
    sql = script.output
    assert "hunter2-secret" not in sql and "password=***" in sql
    part1, part2 = sql.split("-- part 2:")
    assert "BEGIN;" in part1 and "COMMIT;" in part1 and 'CREATE TABLE "tags"' in part1
    assert "CONCURRENTLY" not in part1.split("BEGIN;")[1]
    assert 'CREATE INDEX CONCURRENTLY "idx_items_title"' in part2 and "BEGIN;" not in part2

    # a session with an open write on items: the concurrent build waits for it, past lock_timeout, and fails
    holder = _connect(pg_url)
    try:
        holder.execute("BEGIN")
        holder.execute("UPDATE items SET note = note WHERE id = 1")
        failed = _cli(runner, "apply", "--db", pg_url, "--schema", v3, "--concurrently", "--lock-timeout", "500ms")
    finally:
        holder.execute("ROLLBACK")
        holder.close()
    assert failed.exit_code == 3, failed.output + failed.stderr
    assert "committed" in failed.stderr and "idx_items_title" in failed.stderr
    assert _index_valid(pg_url, "idx_tags_name") is True      # the transactional part is committed
    assert _index_valid(pg_url, "idx_items_title") is False   # PostgreSQL left it INVALID

    again = _cli(runner, "plan", "--db", pg_url, "--schema", v3)
    assert again.exit_code == 0
    assert "rebuild INVALID index 'idx_items_title' on 'items' CONCURRENTLY" in again.output
    assert again.output.index('DROP INDEX CONCURRENTLY "idx_items_title";') < \
        again.output.index('CREATE INDEX CONCURRENTLY "idx_items_title"')
    fixed = _cli(runner, "apply", "--db", pg_url, "--schema", v3, "--concurrently")
    assert fixed.exit_code == 0, fixed.output + fixed.stderr
    assert "built CONCURRENTLY after COMMIT" in fixed.output
    assert _index_valid(pg_url, "idx_items_title") is True
    assert _cli(runner, "plan", "--db", pg_url, "--schema", v3).output.startswith("up to date")


V4_LOSS = """
from schema_dsl.model import Column, Index, PrimaryKey, Schema, Table, removed

SCHEMA = Schema(name="shop", tables=[
    Table("owners", columns=[Column("id", "INTEGER"), Column("name", "TEXT", not_null=True)],
          primary_key=PrimaryKey(["id"])),
    Table("items", columns=[Column("id", "INTEGER"), Column("owner_id", "INTEGER"), Column("title", "TEXT"),
                            Column("score", "TEXT")],
          primary_key=PrimaryKey(["id"])),
], removed=[removed("column", "note", "notes moved elsewhere", table="items"),
            removed("index", "idx_items_note", "its column goes")])
"""


def test_data_loss_needs_allow_data_loss_even_with_yes_since_postgresql_has_no_backup(runner, tmp_path, pg_url):
    _v1_with_rows(runner, tmp_path, pg_url)
    v4 = _decl(tmp_path, "v4", V4_LOSS)
    shown = _cli(runner, "plan", "--db", pg_url, "--schema", v4)
    assert "column 'items'.'note': 2 non-NULL values go" in shown.output
    drop = next(s for s in json.loads(_cli(runner, "plan", "--db", pg_url, "--schema", v4, "--json").output)["steps"]
                if s["title"].startswith("drop column"))
    assert (drop["kind"], drop["table"], drop["column"], drop["drops"]) == (
        "Remove", "items", "note", {"kind": "column", "name": "note", "table": "items"})
    assert "apply needs --allow-data-loss" in shown.output
    before = _structure(pg_url)
    refused = _cli(runner, "apply", "--db", pg_url, "--schema", v4, "--yes")
    assert refused.exit_code == 2
    assert "--allow-data-loss" in refused.stderr and "nothing was changed" in refused.stderr
    assert _structure(pg_url) == before
    unconfirmed = _cli(runner, "apply", "--db", pg_url, "--schema", v4, "--allow-data-loss")  # not a terminal, no --yes
    assert unconfirmed.exit_code == 2 and _structure(pg_url) == before
    done = _cli(runner, "apply", "--db", pg_url, "--schema", v4, "--allow-data-loss", "--yes")
    assert done.exit_code == 0, done.output + done.stderr
    with _connect(pg_url) as conn:
        cols = [r[0] for r in conn.execute("SELECT column_name FROM information_schema.columns "
                                           "WHERE table_name = 'items' ORDER BY ordinal_position")]
        assert cols == ["id", "owner_id", "title", "score"]
        assert conn.execute("SELECT count(*) FROM items").fetchone()[0] == 3
    assert _cli(runner, "plan", "--db", pg_url, "--schema", v4).output.startswith("up to date")


def test_abathur_applied_fresh_is_up_to_date_for_the_planner(runner, pg_url):
    """The planner and the fresh apply agree: every default, CHECK, FK, UNIQUE and index predicate of Abathur, as
    the server prints it, matches the declaration's."""
    assert _cli(runner, "apply", "--db", pg_url).exit_code == 0
    shown = _cli(runner, "plan", "--db", pg_url, "--json")
    assert shown.exit_code == 0, shown.output + shown.stderr
    plan = json.loads(shown.output)
    assert plan["up_to_date"] and plan["steps"] == [] and plan["kept"] == []
    with _connect(pg_url) as conn:
        conn.execute("DROP INDEX idx_memory_type_updated")
        conn.execute("ALTER TABLE sessions ALTER COLUMN status DROP DEFAULT")
    shown = _cli(runner, "plan", "--db", pg_url)
    assert "create index 'idx_memory_type_updated' on 'memory_entries'" in shown.output
    assert "set the default of 'sessions'.'status' to 'created'" in shown.output
    assert _cli(runner, "apply", "--db", pg_url).exit_code == 0
    assert _cli(runner, "plan", "--db", pg_url).output.startswith("up to date")
