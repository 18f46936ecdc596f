"""The diff: the ALTER-or-rebuild rule, introspection and SQL normalization."""
from __future__ import annotations

import sqlite3

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from schema_dsl.migrate import diff as d
from schema_dsl.sqlite import ddl, structure
from schema_dsl.analysis.compare import table_structure
from schema_dsl.migrate.introspect import read_live
from schema_dsl.model import Check, Column, Expr, ForeignKey, PrimaryKey, Table, Unique, fk
from schema_dsl.sqlite.quote import quote_identifier

BASE = Table("t", file="f.sql", columns=[Column("id", "INTEGER"), Column("a", "TEXT")],
             primary_key=PrimaryKey(("id",)), foreign_keys=[fk("p", "parent", "id")])


@pytest.mark.parametrize("column, blocked_because", [
    (Column("p", "TEXT"), None),                                            # nullable
    (Column("n", "INTEGER", not_null=True, default=0), None),               # NOT NULL, constant default
    (Column("s", "TEXT", default="x"), None),                               # constant text default
    (Column("p", "TEXT", default=None), None),                              # REFERENCES with NULL default
    (Column("n", "TEXT", not_null=True), "NOT NULL with no default"),
    (Column("n", "TEXT", not_null=True, default=Expr("NULL")), "NOT NULL with no default"),
    (Column("c", "TIMESTAMP", default=Expr("CURRENT_TIMESTAMP")), "non-constant default CURRENT_TIMESTAMP"),
    (Column("c", "TEXT", default=Expr("lower('X')")), "non-constant default"),
    (Column("u", "TEXT", unique=True), "is UNIQUE"),
    (Column("id", "INTEGER"), "PRIMARY KEY"),
    (Column("p", "TEXT", default="x"), "REFERENCES with a non-NULL default"),
    (Column("n", "TEXT", not_null=True, default="x", backfill="upper(a)"), "filled from upper(a)"),
])
def test_add_column_blocker(column, blocked_because):
    table = Table("t", file="f.sql", columns=[*BASE.columns, column] if BASE.column(column.name) is None else BASE.columns,
                  primary_key=BASE.primary_key, foreign_keys=BASE.foreign_keys)
    reason = d.add_column_blocker(table, column)
    if blocked_because is None:
        assert reason is None
    else:
        assert reason is not None and blocked_because in reason and column.name in reason


def test_each_allowed_add_column_really_works_on_a_table_with_rows():
    """The rule's 'allowed' side agrees with SQLite on a table that has rows, foreign keys on."""
    from schema_dsl.compile.render import add_column_sql
    for column in (Column("p", "TEXT"), Column("n", "INTEGER", not_null=True, default=0), Column("s", "TEXT", default="x")):
        table = Table("t", file="f.sql", columns=[*BASE.columns, column], primary_key=BASE.primary_key,
                      foreign_keys=[fk("p", "parent", "id")] if column.name == "p" else [])
        assert d.add_column_blocker(table, column) is None
        conn = sqlite3.connect(":memory:")
        conn.execute("PRAGMA foreign_keys = ON")
        conn.execute("CREATE TABLE parent (id TEXT PRIMARY KEY)")
        conn.execute("CREATE TABLE t (id INTEGER PRIMARY KEY, a TEXT)")
        conn.execute("INSERT INTO t (a) VALUES ('row')")
        conn.execute(add_column_sql(table, column))
        assert [r[1] for r in conn.execute("PRAGMA table_info(t)")][-1] == column.name


@pytest.mark.parametrize("column", [
    Column("n", "TEXT", not_null=True),
    Column("c", "TIMESTAMP", default=Expr("CURRENT_TIMESTAMP")),
])
def test_each_blocked_add_column_really_fails_on_a_table_with_rows(column):
    from schema_dsl.compile.render import add_column_sql
    table = Table("t", file="f.sql", columns=[*BASE.columns, column], primary_key=BASE.primary_key)
    assert d.add_column_blocker(table, column) is not None
    conn = sqlite3.connect(":memory:")
    conn.execute("CREATE TABLE t (id INTEGER PRIMARY KEY, a TEXT)")
    conn.execute("INSERT INTO t (a) VALUES ('row')")
    with pytest.raises(sqlite3.OperationalError):
        conn.execute(add_column_sql(table, column))


LIVE_SQL = '''
CREATE TABLE parent (id TEXT PRIMARY KEY, code TEXT UNIQUE);
CREATE TABLE "odd ""name""" (
    id INTEGER PRIMARY KEY AUTOINCREMENT, -- a comment with CHECK (x) in it
    kind TEXT NOT NULL DEFAULT 'a,b' CHECK (kind IN ('a,b', 'c)')),
    n REAL DEFAULT (1.5 * 2),
    parent_id TEXT REFERENCES parent(id) ON DELETE SET NULL,
    code TEXT,
    /* block comment */
    CONSTRAINT positive CHECK (n >= 0),
    UNIQUE (kind, code),
    FOREIGN KEY (code) REFERENCES parent(code) ON UPDATE CASCADE
);
CREATE INDEX odd_kind ON "odd ""name""" (kind DESC, n) WHERE n > 0 AND kind <> 'x';
CREATE VIEW odd_view AS SELECT id FROM "odd ""name""";
CREATE TRIGGER odd_trigger AFTER INSERT ON parent BEGIN SELECT 1; END;
'''


def test_introspection_reads_checks_autoincrement_fks_uniques_indexes_views_triggers():
    conn = sqlite3.connect(":memory:")
    conn.executescript(LIVE_SQL)
    live = read_live(conn)
    t = live.table('odd "name"')
    assert t.column_names == ("id", "kind", "n", "parent_id", "code")
    assert t.primary_key == PrimaryKey(("id",), autoincrement=True)
    assert sorted(c.expr for c in t.checks) == ["kind in ('a,b', 'c)')", "n >= 0"]
    assert t.column("kind").not_null and t.column("kind").default == Expr("'a,b'")
    assert sorted(t.foreign_keys, key=repr) == sorted([
        ForeignKey(("parent_id",), "parent", ("id",), on_delete="SET NULL"),
        ForeignKey(("code",), "parent", ("code",), on_update="CASCADE")], key=repr)
    assert t.uniques == (Unique(("kind", "code")),)
    ix = live.indexes["odd_kind"]
    assert [(c.name, c.desc) for c in ix.columns] == [("kind", True), ("n", False)]
    assert ix.where == "n > 0 and kind <> 'x'"
    assert set(live.views) == {"odd_view"} and live.triggers["odd_trigger"]["table"] == "parent"
    assert live.table("parent").uniques == (Unique(("code",)),)
    assert structure.read_structure(conn) == live.structure


def test_introspected_table_has_the_structure_of_its_declaration():
    declared = Table("x", file="f.sql", columns=[
        Column("id", "INTEGER"), Column("name", "TEXT", not_null=True, default="n'1"),
        Column("at", "TIMESTAMP", not_null=True, default=Expr("CURRENT_TIMESTAMP")),
        Column("p", "TEXT", unique=True)],
        primary_key=PrimaryKey(("id",), autoincrement=True), checks=[Check("length(name) > 0")],
        uniques=[Unique(("name", "at"))])
    from schema_dsl.compile.render import create_table_sql
    conn = sqlite3.connect(":memory:")
    conn.execute(create_table_sql(declared))
    assert table_structure(read_live(conn).table("x")) == table_structure(declared)


EXPRESSIONS = ["status IN ('active', 'paused')", "json_valid(events)", "a >= 0 AND b <> 'xy'",
               "(a + b) * 2 > c", "x IS NOT NULL", "name LIKE 'user:%'", "coalesce(a, b, 'it''s')"]


@pytest.mark.parametrize("expr", EXPRESSIONS)
def test_normalization_folds_space_comments_and_outer_parens(expr):
    norm = ddl.normalize_sql(expr)
    assert ddl.normalize_sql(" ( %s ) " % expr) == norm
    assert ddl.normalize_sql(expr.replace(" ", " /* c */\n  ")) == norm
    assert ddl.normalize_sql(norm) == norm
    assert ddl.normalize_sql(expr.replace("IN", "in").replace("AND", "and").replace("LIKE", "like")) == norm


def test_normalization_keeps_string_literals_and_quoted_names_apart():
    assert ddl.normalize_sql("a = 'X'") != ddl.normalize_sql("a = 'x'")
    assert ddl.normalize_sql('"A" = 1') == ddl.normalize_sql("a = 1")
    assert ddl.normalize_sql('"a b" = 1') != ddl.normalize_sql("a = 1")


identifiers = st.text(alphabet=st.characters(blacklist_categories=("Cs", "Cc")), min_size=1, max_size=12).filter(
    lambda s: s == s.strip() and not s.lower().startswith("sqlite_"))


@settings(max_examples=60, deadline=None)
@given(table=identifiers, column=identifiers)
def test_any_quoted_identifier_round_trips_through_sqlite(table, column):
    conn = sqlite3.connect(":memory:")
    conn.execute("CREATE TABLE %s (%s TEXT CHECK (%s <> ''))" % (
        quote_identifier(table), quote_identifier(column), quote_identifier(column)))
    live = read_live(conn)
    assert list(live.tables) == [table]
    assert live.tables[table].column_names == (column,)
    assert len(live.tables[table].checks) == 1


@settings(max_examples=80, deadline=None)
@given(st.text(max_size=40))
def test_normalize_is_idempotent_on_arbitrary_text(text):
    once = ddl.normalize_sql(text)
    assert ddl.normalize_sql(once) == once
