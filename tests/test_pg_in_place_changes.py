"""PostgreSQL's planner takes its column, constraint and index changes from the neutral diff
(migrate/diff.in_place_changes) and only says how: with the neutral function silenced it plans none of them, and
a record it returns alone is planned alone, with the data checks and statements PostgreSQL needs."""
from __future__ import annotations

import pytest

from pg_cluster import pg_cluster, pg_url  # noqa: F401 (fixtures)
from schema_dsl.compile.postgresql import compile_declaration
from schema_dsl.migrate import diff as d
from schema_dsl.model import Check, Column, Expr, Index, PrimaryKey, Schema, Table, Trigger, View, fk
from schema_dsl.pg import apply as pg_apply
from schema_dsl.pg.migration import plan


def _view(columns):
    sql = "CREATE VIEW user_list AS SELECT %s FROM users" % columns
    return View("user_list", sql, postgresql=sql)


TOUCH = Trigger("users_touch", "users", "CREATE TRIGGER users_touch AFTER UPDATE ON users BEGIN SELECT 1; END",
                postgresql="CREATE OR REPLACE FUNCTION users_touch() RETURNS trigger LANGUAGE plpgsql AS $$ "
                           "BEGIN RETURN NEW; END $$;\nCREATE TRIGGER users_touch BEFORE UPDATE ON users FOR EACH ROW EXECUTE FUNCTION "
                           "users_touch()")


def _teams():
    return Table("teams", [Column("id", "INTEGER")], primary_key=PrimaryKey(["id"]))


V1 = Schema(name="club", tables=[
    _teams(),
    Table("users", [Column("id", "INTEGER"), Column("email", "TEXT", not_null=True), Column("age", "TEXT", default="1"),
                    Column("nick", "TEXT"), Column("team_id", "INTEGER"), Column("city", "TEXT"),
                    Column("note", "TEXT", default="n")],
          primary_key=PrimaryKey(["id"]), foreign_keys=[fk("team_id", "teams", "id")]),
], indexes=[Index("users_nick", "users", ["nick"])], views=[_view("id")], triggers=[TOUCH])

# every in-place difference at once: NOT NULL dropped and set (its NULLs filled from the default), a type change,
# a default set and one dropped, a foreign key whose action changes, a new UNIQUE, CHECK, column and index, and
# an index whose keys change; a view that gains a column (replaced in place)
V2 = Schema(name="club", tables=[
    _teams(),
    Table("users", [Column("id", "INTEGER"), Column("email", "TEXT"), Column("age", "INTEGER", default=Expr("2")),
                    Column("nick", "TEXT", not_null=True, default="x"), Column("team_id", "INTEGER"),
                    Column("city", "TEXT", unique=True, default="here"), Column("note", "TEXT"),
                    Column("score", "INTEGER")],
          primary_key=PrimaryKey(["id"]), foreign_keys=[fk("team_id", "teams", "id", on_delete="CASCADE")],
          checks=[Check("length(email) > 0")]),
], indexes=[Index("users_nick", "users", ["nick", "city"]), Index("users_city", "users", ["city"])],
    views=[_view("id, email")], triggers=[TOUCH])

IN_PLACE = {k.__name__ for k in (*d.IN_PLACE_KINDS, d.AddColumn, d.CreateIndex)}


@pytest.fixture
def v1(pg_url):
    pg_apply.apply(pg_url, compile_declaration(V1))
    import psycopg
    with psycopg.connect(pg_url, autocommit=True) as conn:
        conn.execute("INSERT INTO teams (id) VALUES (1)")
        conn.execute("ALTER TABLE users ADD CONSTRAINT mine CHECK (id > 0)")  # the user's own: kept
        conn.execute("INSERT INTO users (id, email, age, nick, team_id, city) VALUES (1, 'a@b', '30', NULL, 1, 'x'), "
                     "(2, 'c@d', '40', 'bo', NULL, 'y')")
    return pg_url


def test_every_in_place_difference_comes_from_the_neutral_diff(v1, monkeypatch):
    planned = plan(v1, V2)
    kinds = [s.kind for s in planned.steps]
    assert [e for e in planned.extras if e.startswith("table 'users': ")] == [
        "table 'users': CHECK ((id > 0)) (constraint 'mine')"]  # the foreign key it replaces is not kept
    assert {"DropNotNull", "AlterColumnType", "SetDefault", "DropDefault", "Backfill", "SetNotNull", "AddForeignKey",
            "AddUnique", "AddCheck", "AddColumn", "RecreateIndex", "CreateIndex", "ReplaceView"} <= set(kinds), kinds
    monkeypatch.setattr(d, "in_place_changes", lambda schema, live, printed: [])
    monkeypatch.setattr(d, "view_changes", lambda schema, live, printed: [])
    monkeypatch.setattr(d, "kept_constraints", lambda decl, live, printed: {})
    silenced = plan(v1, V2)
    assert not IN_PLACE & {s.kind for s in silenced.steps}, [s.title for s in silenced.steps]
    assert not [e for e in silenced.extras if "constraint" in e], silenced.extras


def test_a_record_the_neutral_diff_returns_alone_is_planned_alone_with_its_data_check(v1, monkeypatch):
    monkeypatch.setattr(d, "in_place_changes", lambda schema, live, printed: [d.SetNotNull("users", "nick")])
    monkeypatch.setattr(d, "view_changes", lambda schema, live, printed: [])
    steps = plan(v1, V2).steps
    assert [(s.kind, s.title) for s in steps] == [
        ("Backfill", "fill column 'users'.'nick' (1 NULLs)"), ("SetNotNull", "set column 'users'.'nick' NOT NULL")]
    assert steps[0].statements == ("UPDATE \"users\" SET \"nick\" = 'x'::text WHERE \"nick\" IS NULL;",)


def test_a_view_the_neutral_diff_says_to_recreate_is_dropped_and_created_again(v1, monkeypatch):
    why = "told so"
    monkeypatch.setattr(d, "in_place_changes", lambda schema, live, printed: [])
    monkeypatch.setattr(d, "view_changes", lambda schema, live, printed: [
        d.DropViewOrTrigger("user_list", "view", why), d.CreateViewOrTrigger("user_list", "", "view", why)])
    steps = plan(v1, V2).steps
    assert [(s.kind, s.title, s.why) for s in steps] == [
        ("DropViewOrTrigger", "drop view 'user_list' (its body changed; created again below)", why),
        ("CreateViewOrTrigger", "create view 'user_list' again", why)]


def test_a_trigger_is_recreated_when_and_only_when_the_neutral_diff_says_so(v1, monkeypatch):
    monkeypatch.setattr(d, "in_place_changes", lambda schema, live, printed: [])
    monkeypatch.setattr(d, "view_changes", lambda schema, live, printed: [])
    assert plan(v1, V2).steps == ()  # the trigger is as declared
    monkeypatch.setattr(d, "trigger_changes", lambda schema, live, printed: [
        d.CreateViewOrTrigger("users_touch", "", "trigger", "told so")])
    steps = plan(v1, V2).steps
    assert [(s.kind, s.title, s.why) for s in steps] == [
        ("CreateViewOrTrigger", "recreate trigger 'users_touch' on 'users'", "told so")]
    assert steps[0].statements[0] == 'DROP TRIGGER "users_touch" ON "users";'
