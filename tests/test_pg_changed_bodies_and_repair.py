"""Changed bodies and repairs on PostgreSQL (schema_dsl/pg/plan.py, pg/bodies.py): a changed view or trigger body found by
the server's own printing and replaced (CREATE OR REPLACE VIEW when the columns allow it, else DROP + CREATE;
DROP TRIGGER + its body), ForeignKey.repair on PostgreSQL, a replaced foreign key keeping its name, and the
bench's hand-written Milestone 2 reaching the same declaration as schemagen."""
from __future__ import annotations

import json

import pytest

from pg_cluster import pg_cluster, pg_url  # noqa: F401 (fixtures)

BASE = """
from schema_dsl.model import Column, Index, PrimaryKey, Schema, Table, Trigger, View

FUNCTION = ("CREATE OR REPLACE FUNCTION notes_stamp() RETURNS trigger LANGUAGE plpgsql AS $$\\n"
            "BEGIN NEW.stamp := {stamp}; RETURN NEW; END\\n$$")
TRIGGER = "CREATE TRIGGER notes_stamp BEFORE {when} ON notes FOR EACH ROW EXECUTE FUNCTION notes_stamp()"

SCHEMA = Schema(name="n", tables=[
    Table("notes", columns=[Column("id", "INTEGER"), Column("title", "TEXT"), Column("body", "TEXT"),
                            Column("stamp", "TEXT")], primary_key=PrimaryKey(["id"])),
], views=[View("note_titles", "CREATE VIEW note_titles AS SELECT id, title FROM notes",
               postgresql={view!r})],
   triggers=[Trigger("notes_stamp", "notes", "CREATE TRIGGER notes_stamp AFTER UPDATE ON notes BEGIN SELECT 1; END",
                     postgresql=FUNCTION.format(stamp={stamp!r}) + ";\\n" + TRIGGER.format(when={when!r}))])
"""

VIEW = "CREATE VIEW note_titles AS SELECT id, title FROM notes"


from test_pg_migrate import _cli, _connect, _decl  # noqa: E402  (the same helpers)


def _base(tmp_path, name, view=VIEW, stamp="'v1'", when="INSERT OR UPDATE"):
    return _decl(tmp_path, name, BASE.format(view=view, stamp=stamp, when=when))


def _applied(runner, tmp_path, url, **kw):
    v1 = _base(tmp_path, "v1", **kw)
    result = _cli(runner, "apply", "--db", url, "--schema", v1)
    assert result.exit_code == 0, result.output + result.stderr
    with _connect(url) as conn:
        conn.execute("INSERT INTO notes (id, title, body) VALUES (1, 'a', 'x'), (2, 'b', 'y')")
    return v1


def test_an_unchanged_view_and_trigger_are_up_to_date_however_the_body_is_spelled(runner, tmp_path, pg_url):
    _applied(runner, tmp_path, pg_url)
    # the same view, spelled otherwise: the server prints both the same (a plpgsql function's body is kept as
    # written, so that one is compared as text)
    same = _base(tmp_path, "same", view="create   view note_titles as select notes.id, notes.title from notes")
    shown = _cli(runner, "plan", "--db", pg_url, "--schema", same)
    assert shown.exit_code == 0, shown.output + shown.stderr
    assert shown.output.startswith("up to date"), shown.output
    assert _cli(runner, "validate", "--db", pg_url, "--schema", same).exit_code == 0


def test_a_view_whose_columns_stay_is_replaced_in_place(runner, tmp_path, pg_url):
    _applied(runner, tmp_path, pg_url)
    v2 = _base(tmp_path, "v2", view="CREATE VIEW note_titles AS SELECT id, title, body FROM notes WHERE id > 1")
    checked = _cli(runner, "validate", "--db", pg_url, "--schema", v2)
    assert checked.exit_code == 1 and "view 'note_titles': its body differs from the declaration" in checked.output
    shown = _cli(runner, "plan", "--db", pg_url, "--schema", v2)
    assert shown.exit_code == 0, shown.output + shown.stderr
    assert "replace view 'note_titles' (CREATE OR REPLACE VIEW)" in shown.output
    assert "CREATE OR REPLACE VIEW note_titles AS SELECT id, title, body FROM notes WHERE id > 1" in shown.output
    assert "DROP VIEW" not in shown.output
    assert _cli(runner, "apply", "--db", pg_url, "--schema", v2).exit_code == 0
    with _connect(pg_url) as conn:
        assert conn.execute("SELECT * FROM note_titles").fetchall() == [(2, "b", "y")]
    assert _cli(runner, "plan", "--db", pg_url, "--schema", v2).output.startswith("up to date")
    assert _cli(runner, "validate", "--db", pg_url, "--schema", v2).exit_code == 0


def test_a_view_whose_columns_change_is_dropped_first_and_created_after_the_tables(runner, tmp_path, pg_url):
    _applied(runner, tmp_path, pg_url)
    # title is no longer the second column: CREATE OR REPLACE VIEW would fail
    v2 = _base(tmp_path, "v2", view="CREATE VIEW note_titles AS SELECT id, upper(body) AS loud FROM notes")
    shown = _cli(runner, "plan", "--db", pg_url, "--schema", v2, "--json")
    assert shown.exit_code == 0, shown.output + shown.stderr
    steps = json.loads(shown.output)["steps"]
    kinds = [s["kind"] for s in steps]
    assert kinds == ["DropViewOrTrigger", "CreateViewOrTrigger"], steps
    assert steps[0]["statements"] == ['DROP VIEW "note_titles";']
    assert "its columns change (id, title -> id, loud)" in steps[0]["why"]
    assert _cli(runner, "apply", "--db", pg_url, "--schema", v2).exit_code == 0
    with _connect(pg_url) as conn:
        assert conn.execute("SELECT * FROM note_titles ORDER BY id").fetchall() == [(1, "X"), (2, "Y")]
    assert _cli(runner, "plan", "--db", pg_url, "--schema", v2).output.startswith("up to date")


def test_a_trigger_whose_function_or_definition_changed_is_dropped_and_created_again(runner, tmp_path, pg_url):
    _applied(runner, tmp_path, pg_url)
    v2 = _base(tmp_path, "v2", stamp="'v2'")  # only the function's body changes
    checked = _cli(runner, "validate", "--db", pg_url, "--schema", v2)
    assert checked.exit_code == 1
    assert "trigger 'notes_stamp': the function it runs differs from the declaration's" in checked.output
    shown = _cli(runner, "plan", "--db", pg_url, "--schema", v2)
    assert "recreate trigger 'notes_stamp' on 'notes'" in shown.output
    assert shown.output.index('DROP TRIGGER "notes_stamp" ON "notes";') < shown.output.index("CREATE TRIGGER notes_stamp")
    assert _cli(runner, "apply", "--db", pg_url, "--schema", v2).exit_code == 0
    with _connect(pg_url) as conn:
        conn.execute("UPDATE notes SET title = 'c' WHERE id = 1")
        assert conn.execute("SELECT stamp FROM notes WHERE id = 1").fetchone()[0] == "v2"
    assert _cli(runner, "plan", "--db", pg_url, "--schema", v2).output.startswith("up to date")

    v3 = _base(tmp_path, "v3", stamp="'v2'", when="INSERT")  # the trigger's definition changes
    shown = _cli(runner, "plan", "--db", pg_url, "--schema", v3)
    assert "recreate trigger 'notes_stamp' on 'notes'" in shown.output
    assert "its definition differs from the declaration" in shown.output
    assert _cli(runner, "apply", "--db", pg_url, "--schema", v3).exit_code == 0
    with _connect(pg_url) as conn:
        conn.execute("UPDATE notes SET stamp = 'kept' WHERE id = 2")  # no longer stamped on UPDATE
        assert conn.execute("SELECT stamp FROM notes WHERE id = 2").fetchone()[0] == "kept"
    assert _cli(runner, "plan", "--db", pg_url, "--schema", v3).output.startswith("up to date")


def test_plan_of_a_changed_body_changes_nothing(runner, tmp_path, pg_url):
    _applied(runner, tmp_path, pg_url)
    v2 = _base(tmp_path, "v2", view="CREATE VIEW note_titles AS SELECT id, upper(body) AS loud FROM notes",
               stamp="'v2'")
    with _connect(pg_url) as conn:
        before = (conn.execute("SELECT pg_get_viewdef('note_titles'::regclass, true)").fetchone(),
                  conn.execute("SELECT pg_get_functiondef('notes_stamp'::regproc)").fetchone())
    assert _cli(runner, "plan", "--db", pg_url, "--schema", v2).exit_code == 0
    with _connect(pg_url) as conn:
        after = (conn.execute("SELECT pg_get_viewdef('note_titles'::regclass, true)").fetchone(),
                 conn.execute("SELECT pg_get_functiondef('notes_stamp'::regproc)").fetchone())
        assert conn.execute("SELECT count(*) FROM pg_class WHERE relpersistence = 't'").fetchone()[0] == 0
    assert after == before


# --- ForeignKey.repair ------------------------------------------------------------------

REPAIR_V1 = """
from schema_dsl.model import Column, PrimaryKey, Schema, Table

SCHEMA = Schema(name="shop", tables=[
    Table("owners", columns=[Column("id", "INTEGER"), Column("name", "TEXT")], primary_key=PrimaryKey(["id"])),
    Table("items", columns=[Column("id", "INTEGER"), Column("owner_id", "INTEGER"), Column("title", "TEXT")],
          primary_key=PrimaryKey(["id"])),
])
"""

REPAIR_V2 = """
from schema_dsl.model import Column, ForeignKey, PrimaryKey, Schema, Table

SCHEMA = Schema(name="shop", tables=[
    Table("owners", columns=[Column("id", "INTEGER"), Column("name", "TEXT")], primary_key=PrimaryKey(["id"])),
    Table("items", columns=[Column("id", "INTEGER"), Column("owner_id", "INTEGER"{not_null}), Column("title", "TEXT")],
          primary_key=PrimaryKey(["id"]), foreign_keys=[ForeignKey(["owner_id"], "owners", ["id"]{repair})]),
])
"""


def _repair_v1(runner, tmp_path, url):
    assert _cli(runner, "apply", "--db", url, "--schema", _decl(tmp_path, "r1", REPAIR_V1)).exit_code == 0
    with _connect(url) as conn:
        conn.execute("INSERT INTO owners (id, name) VALUES (1, 'ann'), (2, 'bob')")
        conn.execute("INSERT INTO items (id, owner_id, title) VALUES (1, 1, 'lamp'), (2, 7, 'desk'), (3, NULL, 'chair'), "
                     "(4, 2, 'rug'), (5, 9, 'bed')")


def _repair_v2(tmp_path, name, repair=None, not_null=False):
    return _decl(tmp_path, name, REPAIR_V2.format(repair=", repair=%r" % repair if repair else "",
                                                  not_null=", not_null=True" if not_null else ""))


def test_orphans_without_a_repair_refuse_the_plan(runner, tmp_path, pg_url):
    _repair_v1(runner, tmp_path, pg_url)
    refused = _cli(runner, "plan", "--db", pg_url, "--schema", _repair_v2(tmp_path, "none"))
    assert refused.exit_code == 2
    assert "new foreign key (owner_id) -> owners: 2 existing rows have no parent row" in refused.stderr


def test_repair_set_null_sets_exactly_the_orphans_null_before_the_foreign_key_is_added(runner, tmp_path, pg_url):
    _repair_v1(runner, tmp_path, pg_url)
    v2 = _repair_v2(tmp_path, "setnull", "set null")
    shown = _cli(runner, "plan", "--db", pg_url, "--schema", v2, "--json")
    assert shown.exit_code == 0, shown.output + shown.stderr
    plan = json.loads(shown.output)
    repair, add = plan["steps"]
    assert repair["kind"] == "RepairForeignKey" and repair["rows"] == 2
    assert repair["title"] == "set owner_id NULL in 2 rows of 'items' (id 2, 5): no parent in 'owners'"
    assert "id 2 (owner_id = 7); id 5 (owner_id = 9)" in repair["why"]
    assert repair["statements"][0].startswith('UPDATE "items" SET "owner_id" = NULL WHERE "items"."owner_id" IS NOT NULL')
    assert add["kind"] == "AddForeignKey"
    assert plan["data_loss"] == []  # a set null keeps every row
    done = _cli(runner, "apply", "--db", pg_url, "--schema", v2)
    assert done.exit_code == 0, done.output + done.stderr
    with _connect(pg_url) as conn:
        assert conn.execute("SELECT id, owner_id FROM items ORDER BY id").fetchall() == [
            (1, 1), (2, None), (3, None), (4, 2), (5, None)]
        assert conn.execute("SELECT count(*) FROM pg_constraint WHERE contype = 'f' AND convalidated").fetchone()[0] == 1
    assert _cli(runner, "plan", "--db", pg_url, "--schema", v2).output.startswith("up to date")


def test_repair_delete_is_data_loss_and_deletes_exactly_the_orphans(runner, tmp_path, pg_url):
    _repair_v1(runner, tmp_path, pg_url)
    v2 = _repair_v2(tmp_path, "delete", "delete")
    shown = _cli(runner, "plan", "--db", pg_url, "--schema", v2)
    assert "delete 2 rows of 'items' (id 2, 5): no parent in 'owners'" in shown.output
    assert "table 'items': 2 rows deleted, which break foreign key (owner_id) -> owners (declared repair='delete')" \
        in shown.output
    refused = _cli(runner, "apply", "--db", pg_url, "--schema", v2, "--yes")
    assert refused.exit_code == 2 and "--allow-data-loss" in refused.stderr
    with _connect(pg_url) as conn:
        assert conn.execute("SELECT count(*) FROM items").fetchone()[0] == 5
    done = _cli(runner, "apply", "--db", pg_url, "--schema", v2, "--allow-data-loss", "--yes")
    assert done.exit_code == 0, done.output + done.stderr
    with _connect(pg_url) as conn:
        assert [r[0] for r in conn.execute("SELECT id FROM items ORDER BY id")] == [1, 3, 4]


# --- a replaced foreign key keeps its name; the bench's hand-written Milestone 2 ------------

def test_a_foreign_key_whose_actions_change_keeps_its_name_and_is_not_listed_as_kept(runner, tmp_path, pg_url):
    _repair_v1(runner, tmp_path, pg_url)
    with _connect(pg_url) as conn:
        conn.execute("DELETE FROM items WHERE id IN (2, 5)")
    assert _cli(runner, "apply", "--db", pg_url, "--schema", _repair_v2(tmp_path, "plain")).exit_code == 0
    cascade = _decl(tmp_path, "cascade", REPAIR_V2.format(repair=", on_delete='CASCADE'", not_null=""))
    plan = json.loads(_cli(runner, "plan", "--db", pg_url, "--schema", cascade, "--json").output)
    assert [s["statements"] for s in plan["steps"]] == [[
        'ALTER TABLE "items" DROP CONSTRAINT "items_owner_id_fkey";',
        'ALTER TABLE "items" ADD CONSTRAINT "items_owner_id_fkey" FOREIGN KEY ("owner_id") REFERENCES "owners" ("id") '
        'ON DELETE CASCADE NOT VALID;',
        'ALTER TABLE "items" VALIDATE CONSTRAINT "items_owner_id_fkey";']]
    assert plan["kept"] == []


def test_the_benchs_hand_written_milestone_2_reaches_the_same_declaration_as_schemagen(runner, tmp_path, pg_cluster):
    """bench/handwritten_pg_m2.py is the baseline of the pg_migration measure: it must do the same change."""
    import subprocess
    import sys
    from pathlib import Path

    import psycopg
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    import legacy

    root = Path(__file__).resolve().parents[1]
    m2 = str(root / "examples" / "abathur_m2.py")
    src = tmp_path / "old.db"
    legacy.create(str(src), "old", tasks=60)
    assert _cli(runner, "apply", "--db", str(src), "--no-backup").exit_code == 0
    with psycopg.connect(pg_cluster.base, autocommit=True) as conn:
        for db in ("bm1", "bsg", "bhand"):
            conn.execute('DROP DATABASE IF EXISTS "%s" WITH (FORCE)' % db)
        conn.execute('CREATE DATABASE "bm1"')
    try:
        moved = _cli(runner, "transfer", "--from", str(src), "--to", pg_cluster.url("bm1"))
        assert moved.exit_code == 0, moved.output + moved.stderr
        with psycopg.connect(pg_cluster.base, autocommit=True) as conn:
            conn.execute('CREATE DATABASE "bsg" TEMPLATE "bm1"')
            conn.execute('CREATE DATABASE "bhand" TEMPLATE "bm1"')
        assert _cli(runner, "validate", "--db", pg_cluster.url("bhand"), "--schema", m2).exit_code == 1
        hand = subprocess.run([sys.executable, str(root / "bench" / "handwritten_pg_m2.py"), pg_cluster.url("bhand")],
                              capture_output=True, text=True)
        assert hand.returncode == 0, hand.stderr
        done = _cli(runner, "apply", "--db", pg_cluster.url("bsg"), "--schema", m2)
        assert done.exit_code == 0, done.output + done.stderr
        for db in ("bsg", "bhand"):
            checked = _cli(runner, "validate", "--db", pg_cluster.url(db), "--schema", m2)
            assert checked.exit_code == 0, checked.output
            assert _cli(runner, "plan", "--db", pg_cluster.url(db), "--schema", m2).output.startswith("up to date")
    finally:
        with psycopg.connect(pg_cluster.base, autocommit=True) as conn:
            for db in ("bm1", "bsg", "bhand"):
                conn.execute('DROP DATABASE IF EXISTS "%s" WITH (FORCE)' % db)


# --- plan --sql: the structure guard ------------------------------------------------------

def _run_script(pg_cluster, url, script, stop=True):
    """Run a plan --sql script as a person would: psql -v ON_ERROR_STOP=1 -f FILE (stop=False: psql's default,
    which goes on after an error). (returncode, stderr)."""
    import os
    import subprocess
    import tempfile
    psql = os.path.join(pg_cluster.bindir, "psql")
    if not os.access(psql, os.X_OK):
        pytest.skip("psql is missing")
    with tempfile.NamedTemporaryFile("w", suffix=".sql", delete=False) as fh:
        fh.write(script)
    try:
        out = subprocess.run([psql, "-X", "-q"] + (["-v", "ON_ERROR_STOP=1"] if stop else []) + ["-d", url, "-f", fh.name],
                             capture_output=True, text=True, timeout=120)
    finally:
        os.remove(fh.name)
    return out.returncode, out.stderr


def _psql_url(url):
    from urllib.parse import parse_qs, urlparse
    u = urlparse(url)
    q = {k: v[0] for k, v in parse_qs(u.query).items()}
    return "host=%s port=%s user=%s dbname=%s" % (q["host"], q["port"], q["user"], u.path.lstrip("/"))


def test_plan_sql_starts_with_a_guard_that_refuses_a_database_whose_structure_changed(runner, tmp_path, pg_cluster,
                                                                                        pg_url):
    _repair_v1(runner, tmp_path, pg_url)
    v2 = _repair_v2(tmp_path, "setnull", "set null")
    script = _cli(runner, "plan", "--db", pg_url, "--schema", v2, "--sql")
    assert script.exit_code == 0, script.output + script.stderr
    sql = script.output
    assert sql.index("BEGIN;") < sql.index("DO $schemagen_guard$") < sql.index('UPDATE "items"')

    # another session changes the structure after the plan: the script refuses it, nothing changed
    with _connect(pg_url) as conn:
        conn.execute("CREATE INDEX idx_items_title ON items (title)")
        rows = conn.execute("SELECT id, owner_id FROM items ORDER BY id").fetchall()
    code, err = _run_script(pg_cluster, _psql_url(pg_url), sql)
    assert code != 0 and "schemagen guard: the structure of this database is not the one" in err
    with _connect(pg_url) as conn:
        assert conn.execute("SELECT id, owner_id FROM items ORDER BY id").fetchall() == rows
        assert conn.execute("SELECT count(*) FROM pg_constraint WHERE contype = 'f'").fetchone()[0] == 0
    # psql without ON_ERROR_STOP goes on after the guard: PostgreSQL has aborted the transaction, every later
    # statement fails and the COMMIT rolls back, so no part is committed either (issue 15.3, PostgreSQL side)
    code, err = _run_script(pg_cluster, _psql_url(pg_url), sql, stop=False)
    assert "schemagen guard" in err and "current transaction is aborted" in err
    with _connect(pg_url) as conn:
        assert conn.execute("SELECT id, owner_id FROM items ORDER BY id").fetchall() == rows
        assert conn.execute("SELECT count(*) FROM pg_constraint WHERE contype = 'f'").fetchone()[0] == 0

    # on the structure it was planned against it runs, and the database is then up to date
    with _connect(pg_url) as conn:
        conn.execute("DROP INDEX idx_items_title")
    code, err = _run_script(pg_cluster, _psql_url(pg_url), sql)
    assert code == 0, err
    with _connect(pg_url) as conn:
        assert conn.execute("SELECT id FROM items WHERE owner_id IS NULL ORDER BY id").fetchall() == [(2,), (3,), (5,)]
    assert _cli(runner, "plan", "--db", pg_url, "--schema", v2).output.startswith("up to date")


def test_the_guard_also_sees_a_changed_column_default_or_view(runner, tmp_path, pg_cluster, pg_url):
    _applied(runner, tmp_path, pg_url)
    v2 = _base(tmp_path, "v2", view="CREATE VIEW note_titles AS SELECT id, title, body FROM notes")
    sql = _cli(runner, "plan", "--db", pg_url, "--schema", v2, "--sql").output
    for change, undo in (("ALTER TABLE notes ALTER COLUMN body SET DEFAULT 'x'", "ALTER TABLE notes ALTER COLUMN body DROP DEFAULT"),
                         ("CREATE OR REPLACE VIEW note_titles AS SELECT id, title FROM notes WHERE id > 0",
                          "CREATE OR REPLACE VIEW note_titles AS SELECT id, title FROM notes")):
        with _connect(pg_url) as conn:
            conn.execute(change)
        code, err = _run_script(pg_cluster, _psql_url(pg_url), sql)
        assert code != 0 and "schemagen guard" in err, change
        with _connect(pg_url) as conn:
            conn.execute(undo)
    code, err = _run_script(pg_cluster, _psql_url(pg_url), sql)
    assert code == 0, err
    assert _cli(runner, "plan", "--db", pg_url, "--schema", v2).output.startswith("up to date")
