"""The column, constraint and index differences a dialect with a full ALTER TABLE plans (PostgreSQL) are decided
once, in migrate/diff.py's in_place_changes, on the neutral live structure; the dialect only passes its printing
of the declaration. These pin its decisions with no server: a toy printing that writes types in lower case and a
CHECK as `CHECK ((expr))`, as PostgreSQL prints them."""
from __future__ import annotations

from schema_dsl.migrate import diff as d
from schema_dsl.migrate.introspect import Live
from schema_dsl.model import (Check, Column, Expr, ForeignKey, Index, IndexColumn, PrimaryKey, Schema, Table, Unique,
                              evolve)


class Printed:
    """A dialect's printing: lower-case types, defaults as written, a CHECK wrapped as its catalog prints it, a
    foreign key's parent columns spelled out (the parent's id)."""

    def column(self, table, column):
        return Column(column.name, column.type.lower(), not_null=column.not_null or (
            table.primary_key is not None and column.name in table.primary_key.columns),
            default=Expr(column.default.sql) if isinstance(column.default, Expr) else None)

    def checks(self, table):
        return [(k.name, k.expr, "CHECK ((%s))" % k.expr) for k in table.checks if "json_valid" not in k.expr]

    def foreign_key(self, table, fk):
        return evolve(fk, ref_columns=fk.ref_columns or ("id",), name=None)

    def index(self, ix):
        return ix


def _users(**kw):
    cols = kw.pop("columns", [Column("id", "INTEGER"), Column("email", "TEXT"), Column("age", "INTEGER")])
    return Table("users", cols, primary_key=PrimaryKey(["id"]), **kw)


def _live(*tables, indexes=(), invalid=()):
    return Live(tables={t.name: t for t in tables}, indexes={ix.name: ix for ix in indexes}, invalid_indexes=invalid)


def _live_users(**kw):
    cols = kw.pop("columns", [Column("id", "integer", not_null=True), Column("email", "text"),
                              Column("age", "integer")])
    return Table("users", cols, primary_key=PrimaryKey(["id"]), **kw)


PARENTS = [Table(n, [Column("id", "INTEGER")], primary_key=PrimaryKey(["id"])) for n in ("ages", "teams")]


def _changes(schema, live):
    return d.in_place_changes(schema, live, Printed())


def test_an_unchanged_table_and_what_the_database_has_beyond_the_declaration_make_no_record():
    live = _live(_live_users(columns=[Column("id", "integer", not_null=True), Column("email", "text"),
                                      Column("age", "integer"), Column("mine", "text")],
                             checks=[Check("CHECK ((age > 1))")], uniques=[Unique(["mine"])],
                             foreign_keys=[ForeignKey(["age"], "ages", ["id"], name="users_age_fkey")]),
                 indexes=[Index("mine_idx", "users", ["mine"])])
    assert _changes(Schema(name="s", tables=[_users()]), live) == []


def test_a_table_the_database_lacks_makes_no_in_place_record():
    assert _changes(Schema(name="s", tables=[_users()]), _live()) == []


def test_column_differences_in_column_order_then_type_default_not_null():
    decl = _users(columns=[Column("id", "INTEGER"), Column("email", "TEXT", not_null=True, default=Expr("'x'")),
                           Column("age", "BIGINT"), Column("city", "TEXT")])
    live = _live(_live_users(columns=[Column("id", "integer", not_null=True), Column("email", "text"),
                                      Column("age", "integer", not_null=True, default=Expr("0"))]))
    got = _changes(Schema(name="s", tables=[decl]), live)
    assert got == [d.SetDefault("users", "email", "'x'"), d.SetNotNull("users", "email"),
                   d.AlterColumnType("users", "age", "bigint"), d.DropDefault("users", "age"),
                   d.DropNotNull("users", "age"), d.AddColumn(decl, decl.column("city"))]


def test_a_check_is_compared_in_the_catalogs_printing_and_a_new_one_keeps_its_declared_text_and_name():
    decl = _users(checks=[Check("age > 0"), Check("length(email) > 3", name="email_len"), Check("json_valid(age)")])
    live = _live(_live_users(checks=[Check("CHECK ((age > 0))")]))
    assert _changes(Schema(name="s", tables=[decl]), live) == [d.AddCheck("users", "length(email) > 3", "email_len")]


def test_a_new_unique_in_sorted_order_with_its_declared_name_else_the_dialects():
    decl = _users(columns=[Column("id", "INTEGER"), Column("email", "TEXT", unique=True), Column("age", "INTEGER")],
                  uniques=[Unique(["Age", "email"], name="age_email_key"), Unique(["id", "age"])])
    live = _live(_live_users(uniques=[Unique(["id", "age"])]))
    assert _changes(Schema(name="s", tables=[decl]), live) == [d.AddUnique("users", ["age", "email"], "age_email_key"),
                                                               d.AddUnique("users", ["email"], "")]


def test_a_new_foreign_key_and_one_whose_actions_changed_replaces_the_live_one_by_its_name():
    decl = _users(columns=[Column("id", "INTEGER"), Column("email", "TEXT"), Column("age", "INTEGER"),
                           Column("team", "INTEGER")],
                  foreign_keys=[ForeignKey(["age"], "ages", [], on_delete="CASCADE"),
                                ForeignKey(["team"], "teams", ["id"], name="users_team")])
    live = _live(_live_users(columns=[Column("id", "integer", not_null=True), Column("email", "text"),
                                      Column("age", "integer"), Column("team", "integer")],
                             foreign_keys=[ForeignKey(["age"], "ages", ["id"], name="users_age_fkey")]))
    got = _changes(Schema(name="s", tables=[decl, *PARENTS]), live)
    assert got == [d.AddForeignKey("users", ["age"], "ages", "", "users_age_fkey"),
                   d.AddForeignKey("users", ["team"], "teams", "users_team", None)]
    assert got[0].foreign_key is decl.foreign_keys[0]


def test_an_unchanged_foreign_key_is_no_record_whatever_its_live_name():
    decl = _users(foreign_keys=[ForeignKey(["age"], "ages", [])])
    live = _live(_live_users(foreign_keys=[ForeignKey(["age"], "ages", ["id"], name="whatever")]))
    assert _changes(Schema(name="s", tables=[decl, *PARENTS]), live) == []


def test_indexes_missing_invalid_and_changed_in_declared_order():
    new, bad, changed, same = (Index("a_new", "users", ["email"]), Index("b_bad", "users", ["age"]),
                               Index("c_changed", "users", ["email", "age"], where="age > 0"),
                               Index("d_same", "users", [IndexColumn("age", desc=True)]))
    live = _live(_live_users(), indexes=[bad, evolve(changed, where=None), same, Index("mine", "users", ["age"])],
                 invalid={"b_bad"})
    got = _changes(Schema(name="s", tables=[_users()], indexes=[new, bad, changed, same]), live)
    assert got == [d.CreateIndex(new), d.RebuildInvalidIndex(bad), d.RecreateIndex(changed)]


def test_a_changed_view_is_replaced_when_its_old_columns_lead_the_new_ones_else_dropped_and_created_again():
    old = ("SELECT id FROM users", [("id", "bigint")])
    assert d.view_change(old, old) is None
    replace, why = d.view_change(("SELECT id, email FROM users", [("id", "bigint"), ("email", "text")]), old)
    assert replace is True and "differs" in why
    replace, why = d.view_change(("SELECT email FROM users", [("email", "text")]), old)
    assert replace is False and "its columns change (id -> email)" in why
    replace, why = d.view_change('column "nope" does not exist', old)
    assert replace is False and 'does not run against the tables as they are before this migration (column "nope"' in why


def test_view_changes_makes_the_records_in_declared_order_and_leaves_what_the_dialect_cannot_compare():
    from schema_dsl.model import View
    same, wider, other, unknown, new = (View(n, "CREATE VIEW %s AS SELECT 1" % n) for n in ("a", "b", "c", "d", "e"))
    old = ("SELECT 1", [("x", "int")])
    shown = {"a": (old, old), "b": (("SELECT 1, 2", [("x", "int"), ("y", "int")]), old),
             "c": (("SELECT 2", [("z", "int")]), old)}

    class Views:
        def view(self, view):
            return shown.get(view.name)

    live = Live(views={n: "" for n in "abcd"})
    got = d.view_changes(Schema(name="s", tables=[_users()], views=[same, wider, other, unknown, new]), live, Views())
    assert [type(ch).__name__ + " " + ch.name for ch in got] == [
        "ReplaceView b", "DropViewOrTrigger c", "CreateViewOrTrigger c"]


def test_the_users_own_constraints_are_kept_in_the_live_order_and_a_replaced_foreign_key_is_not():
    decl = _users(checks=[Check("age > 0")], uniques=[Unique(["email"])],
                  foreign_keys=[ForeignKey(["age"], "ages", [], on_delete="CASCADE")])
    live = _live_users(columns=[Column("id", "integer", not_null=True), Column("email", "text"),
                                Column("age", "integer"), Column("team", "integer")],
                       uniques=[Unique(["email"]), Unique(["team", "age"])],
                       checks=[Check("CHECK ((age > 0))", name="a"), Check("CHECK ((team > 0))", name="mine")],
                       foreign_keys=[ForeignKey(["age"], "ages", ["id"], name="users_age_fkey"),
                                     ForeignKey(["team"], "teams", ["id"], name="users_team_fkey")])
    assert d.kept_constraints(decl, live, Printed()) == {
        "unique": ["table 'users': UNIQUE (team, age)"],
        "check": ["table 'users': CHECK ((team > 0)) (constraint 'mine')"],
        "foreign key": ["table 'users': foreign key (team) -> teams"]}


def test_a_trigger_differs_by_its_definition_then_its_function_and_one_that_cannot_be_printed_is_recreated():
    have = ("CREATE TRIGGER t BEFORE UPDATE ON users ...", "CREATE FUNCTION f() ... v1")
    assert d.trigger_change("t", "users", have, have) is None
    assert "its definition differs" in d.trigger_change("t", "users", ("CREATE TRIGGER t AFTER ...", have[1]), have)
    assert "the function it runs differs" in d.trigger_change("t", "users", (have[0], "... v2"), have)
    assert d.trigger_change("t", "users", None, have) == "the declared body does not create trigger 't' on 'users'"
    assert "does not run against the table as it is before this migration (boom)" in d.trigger_change(
        "t", "users", "boom", have)


def test_trigger_changes_recreates_each_changed_trigger_in_declared_order():
    from schema_dsl.model import Trigger
    a, b, c = (Trigger(n, "users", "CREATE TRIGGER %s AFTER UPDATE ON users BEGIN SELECT 1; END" % n) for n in "abc")
    have = ("def", "fn")
    shown = {"a": (("def", "fn2"), have), "b": (have, have)}

    class Triggers:
        def trigger(self, trigger):
            return shown.get(trigger.name)

    live = Live(triggers={n: {"table": "users", "sql": ""} for n in "abc"})
    got = d.trigger_changes(Schema(name="s", tables=[_users()], triggers=[c, b, a]), live, Triggers())
    assert got == [d.CreateViewOrTrigger("a", a.sql, "trigger", "the function it runs differs from the declaration's "
                                                                 "(as the server prints both): dropped and created again")]
